--- landscape.stats.rank: rank and correlation measures (part of ls.stats). The counts run in C
-- (engine/stats/rank.c); docs/stats.md has the formulas.
--
--   ls.stats.kendall_tau(a, b)                  -- tau-b (ties corrected), SciPy's kendalltau
--   ls.stats.kendall_tau(a, b, {variant = "a"}) -- tau-a: (concordant - discordant) / (n(n-1)/2)
--   ls.stats.spearman(a, b), ls.stats.pearson(a, b), ls.stats.rank(x)   -- average ranks
--   local psi, detail = ls.stats.granulated_tau(t, {factors = {"lr", "width"}, measure = "pred",
--                                                   target = "gap"})     -- Jiang et al.'s Psi
--
-- a, b, x are 1-D Tensors or lists of numbers of equal length; NaN is an error. A coefficient
-- that is undefined (fewer than two values; a constant sample for tau-b, Spearman and Pearson) is
-- NaN.
--
-- granulated_tau(t, opts): t is an ls.table (anything with :column(name) and .nrows) with one row
-- per model. Options:
--   factors  (required)  the hyperparameter columns (numbers or strings), each with >= 2 levels
--   measure  (required)  the column of the measure (or prediction) being ranked
--   target   (required)  the column it should rank like (the generalization gap)
--   tau      = "a"       the per-slice coefficient: "a" is the formula of Jiang et al. (2020),
--                        (1 / (|T| (|T| - 1))) sum over ordered pairs of sign(dmu) sign(dg); "b"
--                        corrects for ties
-- For factor i, a slice is the set of rows sharing the values of every other factor; it is complete
-- when it holds every level of factor i that occurs in t (rows may repeat a level, e.g. seeds).
-- psi_i is the mean of the slice coefficients over the complete slices (incomplete ones are left
-- out and counted, as are complete ones whose coefficient is undefined), and Psi the mean of the
-- psi_i; Psi is NaN when some factor has no usable slice. Returns Psi and a detail table
-- {psi, tau, factors = {{factor, psi, slices, incomplete, undefined, levels}, ...}} that prints
-- as a table.
local ls = require "landscape"
local util = require "landscape.util"
local args = require "landscape.stats.args"

local fail, public = util.fail, util.public
local K = ls._stats

local M = {}

local function pair(a, b, who)
    a = args.vector(a, who, "the first sample")
    b = args.vector(b, who, "the second sample")
    return a, b
end

--- ls.stats.kendall_tau(a, b [, {variant = "b"}])
-- Kendall's rank correlation of two samples (tau-b by default, tau-a or tau-c on request), in
-- O(n log n), as scipy.stats.kendalltau.
-- e.g. ls.stats.kendall_tau({1, 2, 3}, {1, 3, 2})   --> 0.3333
M.kendall_tau = public(function(a, b, opts)
    local who = "kendall_tau"
    opts = util.check_options(opts, {variant = true}, who)
    local variant = opts.variant or "b"
    if variant ~= "a" and variant ~= "b" then
        fail("%s: variant must be \"a\" or \"b\", got %s", who, tostring(variant))
    end
    a, b = pair(a, b, who)
    return K.kendall(a, b, variant, who)
end)

--- ls.stats.spearman(a, b): Pearson's r of the average ranks (scipy.stats.spearmanr).
-- Spearman's rank correlation (Pearson's of the average ranks), as scipy.stats.spearmanr.
-- e.g. ls.stats.spearman({1, 2, 3}, {10, 30, 20})   --> 0.5
M.spearman = public(function(a, b)
    a, b = pair(a, b, "spearman")
    return K.spearman(a, b, "spearman")
end)

--- ls.stats.pearson(a, b) (scipy.stats.pearsonr's r).
-- Pearson's correlation coefficient of two samples.
-- e.g. ls.stats.pearson({1, 2, 3}, {2, 4, 7})
M.pearson = public(function(a, b)
    a, b = pair(a, b, "pearson")
    return K.pearson(a, b, "pearson")
end)

--- ls.stats.rank(x) -> Tensor f64 of average ranks 1..n (scipy.stats.rankdata).
-- The ranks of a sample, ties given their average rank (scipy.stats.rankdata).
-- e.g. ls.stats.rank({10, 30, 20, 20})   --> {1, 4, 2.5, 2.5}
M.rank = public(function(x)
    return K.rank(args.vector(x, "rank", "x"), "rank")
end)

local Detail = {}
Detail.__index = Detail
Detail.__name = "landscape.stats.GranulatedTau"

function Detail:__tostring()
    local lines = {string.format("granulated Kendall (tau-%s) of %s against %s: Psi = %s", self.tau,
                                 self.measure, self.target, args.fmt(self.psi))}
    lines[2] = string.format("  %-16s %9s %7s %7s %11s %10s", "factor", "psi", "levels", "slices",
                             "incomplete", "undefined")
    for _, f in ipairs(self.factors) do
        lines[#lines + 1] = string.format("  %-16s %9s %7d %7d %11d %10d", f.factor,
                                          args.fmt(f.psi), f.levels, f.slices, f.incomplete,
                                          f.undefined)
    end
    return table.concat(lines, "\n")
end

local GT_KEYS = {factors = true, measure = true, target = true, tau = true}

local function key_of(v)
    if type(v) == "number" then return string.format("n%.17g", v) end
    return "s" .. v
end

--- ls.stats.granulated_tau(t, opts) -> Psi, detail. See the header.
-- Jiang et al.'s granulated Kendall coefficient Psi: Kendall's tau of a measure against the gap
-- within groups that differ in one hyperparameter, averaged per hyperparameter.
-- e.g. local psi = ls.stats.granulated_tau(tbl, {measure = "margin_q50", target = "gap",
--          factors = {"depth", "width"}})
M.granulated_tau = public(function(t, opts)
    local who = "granulated_tau"
    if type(t) ~= "table" or type(t.column) ~= "function" then
        fail("%s: the first argument must be a table of models (ls.table), got %s", who, type(t))
    end
    opts = util.check_options(opts, GT_KEYS, who)
    local factors, variant = opts.factors, opts.tau or "a"
    if variant ~= "a" and variant ~= "b" then
        fail("%s: tau must be \"a\" or \"b\", got %s", who, tostring(variant))
    end
    if type(factors) ~= "table" or #factors == 0 then
        fail("%s: option 'factors' must be a non-empty list of column names", who)
    end
    for _, key in ipairs({"measure", "target"}) do
        if type(opts[key]) ~= "string" then
            fail("%s: option '%s' must be a column name, got %s", who, key, type(opts[key]))
        end
    end
    local n = t.nrows
    local function numbers(name)
        local v = args.vector(t:column(name), who, "column '" .. name .. "'"):double():totable()
        for i = 1, n do
            if v[i] ~= v[i] then fail("%s: column '%s' has a NaN at row %d", who, name, i) end
        end
        return v
    end
    local measure, target = numbers(opts.measure), numbers(opts.target)
    local keys = {}
    for f, name in ipairs(factors) do
        if type(name) ~= "string" then fail("%s: factors[%d] is not a column name", who, f) end
        local col = args.labels(t:column(name), n, who, "column '" .. name .. "'")
        keys[f] = {}
        for i = 1, n do keys[f][i] = key_of(col[i]) end
    end
    local detail = setmetatable({tau = variant, measure = opts.measure, target = opts.target,
                                 factors = {}}, Detail)
    local total, defined = 0.0, true
    for f, name in ipairs(factors) do
        local levels, nlev = {}, 0
        for i = 1, n do
            if not levels[keys[f][i]] then levels[keys[f][i]] = true; nlev = nlev + 1 end
        end
        if nlev < 2 then
            fail("%s: factor '%s' has one level; it cannot vary in a slice", who, name)
        end
        local slices, order = {}, {}
        for i = 1, n do
            local parts = {}
            for g = 1, #factors do
                if g ~= f then parts[#parts + 1] = keys[g][i] end
            end
            local sk = table.concat(parts, "\0")
            local s = slices[sk]
            if not s then
                s = {rows = {}, seen = {}, nseen = 0}
                slices[sk] = s
                order[#order + 1] = sk
            end
            s.rows[#s.rows + 1] = i
            if not s.seen[keys[f][i]] then s.seen[keys[f][i]] = true; s.nseen = s.nseen + 1 end
        end
        local sum, used, incomplete, undefined = 0.0, 0, 0, 0
        for _, sk in ipairs(order) do
            local s = slices[sk]
            if s.nseen < nlev then
                incomplete = incomplete + 1
            else
                local a, b = {}, {}
                for j, i in ipairs(s.rows) do a[j], b[j] = measure[i], target[i] end
                local tau = K.kendall(ls.tensor(a, {dtype = "f64"}), ls.tensor(b, {dtype = "f64"}),
                                      variant, who)
                if tau == tau then
                    sum, used = sum + tau, used + 1
                else
                    undefined = undefined + 1
                end
            end
        end
        local psi = used > 0 and sum / used or 0 / 0
        if psi ~= psi then defined = false end
        total = total + psi
        detail.factors[f] = {factor = name, psi = psi, slices = used, incomplete = incomplete,
                             undefined = undefined, levels = nlev}
    end
    detail.psi = defined and total / #factors or 0 / 0
    return detail.psi, detail
end)

return M
