--- landscape.stats.cv: honest evaluation of a linear model (part of ls.stats): cross-validation,
-- transfer, permutation tests and bootstrap intervals. The fits of each fold run in C
-- (engine/stats/cv.c); every fit sees only its training rows (standardisation and ridge's inner CV
-- included). Formulas and timings: docs/stats.md.
--
--   local model = ls.stats.ridge{lambda = "cv"}
--   local cv = ls.stats.cross_validate(model, X, y, {folds = 10, repeats = 10, seed = 1})
--   print(cv)                     -- R² = mean ± sd over the repeats, RMSE, MAE, Kendall tau
--   cv.r2, cv.r2_sd, cv.oof, cv.folds
--   ls.stats.cross_validate(model, X, y, {groups = t:column("n_train")})   -- leave one group out
--   ls.stats.cross_validate(model, X, y, {splits = 100, test_fraction = 0.1})  -- Jiang's 90/10
--   ls.stats.transfer(model, XA, yA, XB, yB)            -- fit on A, score on B
--   ls.stats.permutation_test(model, X, y, {permutations = 1000})
--   ls.stats.bootstrap(function(idx) return ... end, n, {samples = 1000, level = 0.95})
--
-- cross_validate(model, X, y [, opts]); model is ls.stats.ols{...} or ls.stats.ridge{...}. One of
-- four designs, by the options given (all optional):
--   k-fold (default)  folds = 10, repeats = 1, seed = 1: each repeat is a fresh seeded k-fold split
--                     (scikit-learn's KFold(shuffle) sizes); R² = 1 - SS_res/SS_tot over the
--                     repeat's pooled out-of-fold predictions; r2 is the mean over the repeats and
--                     r2_sd their sample sd (NaN for one repeat); the same for rmse, mae and
--                     kendall_tau.
--   groups = labels   leave one group out (a Tensor or list of numbers or strings, one per row; at
--                     least two distinct values): pooled R² over all rows, and per group
--                     cv.groups = {{group, n, r2, rmse, mae, bias, kendall_tau, spearman}, ...} in
--                     sorted group order, r2 there about the group's own mean (a transfer score).
--   splits = S        S random holdouts, test_fraction = 0.1 of the rows (ceil) held out each time,
--                     seed = 1; R² per split on its held-out rows (about their own mean); r2 and
--                     r2_sd are the mean and sd over the splits, cv.each the per-split scores.
--   fold_ids = ids    given folds: a Tensor [n] or [R x n] (or a list) of fold numbers 1..k, 0 for
--                     a row that is never tested; pooled scores per row of ids, as for k-fold.
-- and for any design
--   ci = nil          a level (e.g. 0.95) for a percentile bootstrap interval of r2 (rows
--                     resampled, every repeat's out-of-fold R² recomputed on the resample, then
--                     averaged);
--                     pooled designs only (not splits), every row must be tested
--   boot = 1000       bootstrap samples for ci (drawn from seed)
--   strata = nil      labels (one per row): scores within each stratum of the out-of-fold
--                     predictions, cv.strata = {{group, n, r2, r2_sd, rmse, ..., bias}, ...} in
--                     sorted order, R² about the stratum's own mean, per repeat then mean and sd
--                     (e.g. R² within each label-noise level); pooled designs only
-- Results: method, model (its description), n, p, k (folds), r2, r2_sd, rmse, rmse_sd, mae,
-- mae_sd, bias, bias_sd, kendall_tau, kendall_tau_sd, each (per repeat / split scores), oof
-- (Tensor [n]: each row's prediction averaged over the repeats or splits that tested it, NaN if
-- none), oof_repeats (Tensor [R x n], NaN where untested), folds (the i64 Tensor [R x n] of fold
-- ids used: pass it as fold_ids to compare models on identical splits), deficient (fits whose
-- design was rank deficient), groups (leave-one-group-out), strata and ci when asked.
-- tostring(cv) prints a summary.
--
-- Determinism: folds come from one Philox stream seeded with `seed` (the same seed gives the same
-- folds for any model and feature set); ridge's inner CV in repeat r uses seed
-- model.seed + 1000003 (r - 1), then a derived seed per outer fold.
local ls = require "landscape"
local util = require "landscape.util"
local args = require "landscape.stats.args"
local describe = require "landscape.stats.describe"
local linear = require "landscape.stats.linear"

local fail, public = util.fail, util.public
local K = ls._stats

local M = {}

local CV_KEYS = {folds = true, repeats = true, seed = true, groups = true, splits = true,
                 test_fraction = true, fold_ids = true, ci = true, boot = true, strata = true}

local Result = {}
Result.__index = Result
Result.__name = "landscape.stats.CV"

local function check_model(model, who)
    if not linear.is_model(model) then
        fail("%s: the first argument must be a model (ls.stats.ols{...} or ls.stats.ridge{...}), " ..
             "got %s", who, type(model))
    end
end

local function check_xy(X, y, who)
    X = args.matrix(X, who, "X")
    y = args.vector(y, who, "y")
    if X:size(1) ~= y:size(1) then
        fail("%s: X has %d rows but y has %d", who, X:size(1), y:size(1))
    end
    return X, y, X:size(1)
end

-- The checked arguments of a function taking (model, X, y, opts): opts, X, y, n.
local function check_call(model, X, y, opts, keys, who)
    check_model(model, who)
    opts = util.check_options(opts, keys, who)
    local n
    X, y, n = check_xy(X, y, who)
    return opts, X, y, n
end

-- The fold assignment of a design: an i64 Tensor [R x n] of ids (0 = never tested), the number of
-- folds k, the method name and, for groups, the sorted levels.
local function assignment(opts, n, who)
    local given = {}
    for _, key in ipairs({"groups", "splits", "fold_ids"}) do
        if opts[key] ~= nil then given[#given + 1] = key end
    end
    if #given > 1 then
        fail("%s: options '%s' and '%s' choose different designs; give one", who, given[1],
             given[2])
    end
    local function forbid(keys, design)
        for _, key in ipairs(keys) do
            if opts[key] ~= nil then
                fail("%s: option '%s' does not apply to %s", who, key, design)
            end
        end
    end
    local seed = args.int(opts, "seed", 1, 0, who)
    if opts.groups ~= nil then
        forbid({"folds", "repeats", "test_fraction"}, "leave-one-group-out (groups)")
        local labels = args.labels(opts.groups, n, who, "groups")
        local levels, pos = args.levels(labels)
        if #levels < 2 then
            fail("%s: groups has one distinct value (%s); leave-one-group-out needs at least two",
                 who, tostring(levels[1]))
        end
        local ids = {}
        for i, v in ipairs(labels) do ids[i] = pos[v] end
        return ls.tensor({ids}, {dtype = "i64"}), #levels, "groups", levels
    elseif opts.splits ~= nil then
        forbid({"folds", "repeats"}, "random splits (splits)")
        local splits = args.int(opts, "splits", 1, 1, who)
        local tf = opts.test_fraction or 0.1
        if type(tf) ~= "number" or not (tf > 0 and tf < 1) then
            fail("%s: test_fraction must be a number in (0, 1), got %s", who, tostring(tf))
        end
        local ntest = math.ceil(tf * n - 1e-9)
        if ntest < 1 or ntest >= n then
            fail("%s: test_fraction %g of %d rows leaves %d test rows; need 1 .. %d", who, tf, n,
                 ntest, n - 1)
        end
        return K.draw("holdout", n, ntest, seed, splits), 1, "splits"
    elseif opts.fold_ids ~= nil then
        forbid({"folds", "repeats", "test_fraction"}, "given folds (fold_ids)")
        local f = opts.fold_ids
        if not ls.is_tensor(f) then f = ls.tensor(f, {dtype = "i64"}) end
        if f.ndim == 1 then f = f:reshape(1, -1) end
        if f.ndim ~= 2 or f:size(2) ~= n then
            fail("%s: fold_ids must be [n] or [repeats x n] with n = %d, got %s", who, n,
                 util.shape_str(f))
        end
        local k = f:double():max():item()
        if k < 1 then fail("%s: fold_ids tests no row", who) end
        return f:long(), math.tointeger(k) or k, "fold_ids"
    end
    forbid({"test_fraction"}, "k-fold")
    local folds = args.int(opts, "folds", 10, 2, who)
    local repeats = args.int(opts, "repeats", 1, 1, who)
    if folds > n then fail("%s: %d folds but only %d rows", who, folds, n) end
    return K.draw("kfold", n, folds, seed, repeats), folds, "kfold"
end

-- Rows (1-based list and i64 Tensor, nil when none) whose id in `ids` (a Lua list) satisfies
-- keep(id, row).
local function rows_where(ids, keep)
    local list = {}
    for i, v in ipairs(ids) do
        if keep(v, i) then list[#list + 1] = i end
    end
    return list, #list > 0 and ls.tensor(list, {dtype = "i64"}) or nil
end

-- Out-of-fold predictions of model for each row of the assignment: the list of prediction
-- tensors and the number of rank-deficient fits.
local function predict_all(model, X, y, folds, k, who)
    local preds, deficient = {}, 0
    local base = model.seed or 1
    for r = 1, folds:size(1) do
        local spec = model:with({seed = base + 1000003 * (r - 1)})
        local pred, d = K.cv_predict(X, y, folds[r], k, spec, who)
        preds[r] = pred
        deficient = deficient + d
    end
    return preds, deficient
end

-- Scores per assignment row over its tested rows (those with in_rows(row) too, when given).
local function score_each(y, preds, folds, who, in_rows)
    local each = {}
    for r, pred in ipairs(preds) do
        local _, idx = rows_where(folds[r]:totable(), function(v, i)
            return v > 0 and (not in_rows or in_rows(i))
        end)
        if idx then
            each[r] = linear.scores_of(y:index_select(1, idx), pred:index_select(1, idx), who)
        else
            each[r] = {n = 0, r2 = 0 / 0, rmse = 0 / 0, mae = 0 / 0, bias = 0 / 0,
                       kendall_tau = 0 / 0, spearman = 0 / 0}
        end
    end
    return each
end

local function summarise(res, each)
    for _, key in ipairs({"r2", "rmse", "mae", "bias", "kendall_tau"}) do
        local list = {}
        for r, s in ipairs(each) do list[r] = s[key] end
        res[key], res[key .. "_sd"] = args.mean_sd(list)
    end
end

--- ls.stats.cross_validate(model, X, y [, opts]) -> result. See the header.
-- Refits model on each training part of the folds (k-fold, repeated, stratified, grouped or
-- explicit splits) and scores its predictions on the held-out part: R², RMSE, MAE, bias and
-- rank correlations per fold and their mean and sd.
-- e.g. local cv = ls.stats.cross_validate(ls.stats.ols(), X, y, {folds = 5,
--          seed = 1}); print(cv.r2)
M.cross_validate = public(function(model, X, y, opts)
    local who = "cross_validate"
    local n
    opts, X, y, n = check_call(model, X, y, opts, CV_KEYS, who)
    local folds, k, method, levels = assignment(opts, n, who)
    local R = folds:size(1)
    local preds, deficient = predict_all(model, X, y, folds, k, who)
    local res = setmetatable({method = method, model = tostring(model), n = n, p = X:size(2), k = k,
                              folds = folds, deficient = deficient,
                              seed = args.int(opts, "seed", 1, 0, who)}, Result)
    res.each = score_each(y, preds, folds, who)
    summarise(res, res.each)
    res.oof_repeats = ls.full({R, n}, 0 / 0, {dtype = "f64"})
    local sum, cnt = {}, {}
    for i = 1, n do sum[i], cnt[i] = 0.0, 0 end
    for r, pred in ipairs(preds) do
        res.oof_repeats[r]:copy(pred)
        local pv = pred:totable()
        for i = 1, n do
            if pv[i] == pv[i] then sum[i], cnt[i] = sum[i] + pv[i], cnt[i] + 1 end
        end
    end
    for i = 1, n do sum[i] = cnt[i] > 0 and sum[i] / cnt[i] or 0 / 0 end
    res.oof = ls.tensor(sum, {dtype = "f64"})
    if method == "groups" then
        local ids = folds[1]:totable()
        res.groups = {}
        for g, level in ipairs(levels) do
            local _, idx = rows_where(ids, function(v) return v == g end)
            local s = linear.scores_of(y:index_select(1, idx), preds[1]:index_select(1, idx), who)
            s.group = level
            res.groups[g] = s
        end
    end
    if opts.strata ~= nil then
        if method == "splits" then
            fail("%s: 'strata' applies to pooled designs (k-fold, groups, fold_ids)", who)
        end
        local labels = args.labels(opts.strata, n, who, "strata")
        res.strata = {}
        for g, level in ipairs((args.levels(labels))) do
            local function in_stratum(i) return labels[i] == level end
            local s = {group = level, n = #rows_where(labels, function(_, i) return in_stratum(i) end)}
            summarise(s, score_each(y, preds, folds, who, in_stratum))
            res.strata[g] = s
        end
    end
    if opts.ci ~= nil then
        local level = opts.ci
        if type(level) ~= "number" or not (level > 0 and level < 1) then
            fail("%s: ci must be a level in (0, 1), got %s", who, tostring(level))
        end
        if method == "splits" then
            fail("%s: 'ci' applies to pooled designs (k-fold, groups, fold_ids); random splits " ..
                 "report r2_sd and the per-split scores in cv.each", who)
        end
        for r = 1, R do
            if folds[r]:double():min():item() < 1 then
                fail("%s: 'ci' needs every row tested, but fold_ids row %d has untested rows",
                     who, r)
            end
        end
        local boot = M.bootstrap(function(idx)
            local yb, s = y:index_select(1, idx), 0.0
            for r = 1, R do s = s + (K.scores(yb, preds[r]:index_select(1, idx), who)) end
            return s / R
        end, n, {samples = args.int(opts, "boot", 1000, 1, who), seed = res.seed, level = level})
        res.ci = {level = level, lo = boot.lo, hi = boot.hi, se = boot.se, dropped = boot.dropped}
    elseif opts.boot ~= nil then
        fail("%s: option 'boot' is the sample count of 'ci'; give ci too", who)
    end
    return res
end)

function Result:__tostring()
    local f = args.fmt
    local design
    if self.method == "kfold" then
        design = string.format("%d-fold x %d repeat%s (seed %d)", self.k, self.folds:size(1),
                               self.folds:size(1) == 1 and "" or "s", self.seed)
    elseif self.method == "splits" then
        local ntest = 0
        for _, v in ipairs(self.folds[1]:totable()) do ntest = ntest + v end
        design = string.format("%d random splits, %d of %d rows held out (seed %d)",
                               self.folds:size(1), ntest, self.n, self.seed)
    elseif self.method == "groups" then
        design = string.format("leave one group out, %d groups", self.k)
    else
        design = string.format("given folds, %d folds x %d", self.k, self.folds:size(1))
    end
    local lines = {string.format("cross_validate: %s, %s, n = %d, p = %d", self.model, design,
                                 self.n, self.p)}
    local function pm(key)
        local sd = self[key .. "_sd"]
        return f(self[key]) .. (sd == sd and " +- " .. f(sd, "%.2g") or "")
    end
    lines[2] = string.format("  R2 = %s  RMSE = %s  MAE = %s  Kendall tau = %s", pm("r2"),
                             pm("rmse"), pm("mae"), pm("kendall_tau"))
    if self.ci then
        lines[#lines + 1] = string.format("  R2 %g%% bootstrap interval [%s, %s]",
                                          100 * self.ci.level, f(self.ci.lo), f(self.ci.hi))
    end
    if self.deficient > 0 then
        lines[#lines + 1] = string.format("  %d fits were rank deficient", self.deficient)
    end
    for _, part in ipairs({"groups", "strata"}) do
        if self[part] then
            lines[#lines + 1] = string.format("  %-12s %6s %9s %9s %9s %9s", part == "groups" and
                                              "group" or "stratum", "n", "R2", "RMSE", "MAE", "bias")
            for _, g in ipairs(self[part]) do
                lines[#lines + 1] = string.format("  %-12s %6d %9s %9s %9s %9s", tostring(g.group),
                                                  g.n, f(g.r2), f(g.rmse), f(g.mae), f(g.bias))
            end
        end
    end
    return table.concat(lines, "\n")
end

--- ls.stats.transfer(model, XA, yA, XB, yB) -> scores on B of the model fitted on A:
-- {n, r2, rmse, mae, bias, kendall_tau, spearman, pred, fit}; r2 about the mean of yB.
-- e.g. local res = ls.stats.transfer(ls.stats.ols(), Xa, ya, Xb, yb)
M.transfer = public(function(model, XA, yA, XB, yB)
    local who = "transfer"
    check_model(model, who)
    XA, yA = check_xy(XA, yA, who)
    XB, yB = check_xy(XB, yB, who)
    if XA:size(2) ~= XB:size(2) then
        fail("%s: A has %d features but B has %d", who, XA:size(2), XB:size(2))
    end
    local fit = model:fit(XA, yA)
    local s = fit:score(XB, yB)
    s.fit = fit
    return s
end)

local PERM_KEYS = {permutations = true, seed = true, folds = true, groups = true, fold_ids = true,
                   in_sample = true}

local Perm = {}
Perm.__index = Perm
Perm.__name = "landscape.stats.PermutationTest"

function Perm:__tostring()
    return string.format("permutation test of %s: %s = %s, %d permutations, null mean %s, " ..
                         "p = %s", self.model, self.statistic, args.fmt(self.r2), self.permutations,
                         args.fmt(self.null_mean), args.fmt(self.p_value))
end

--- ls.stats.permutation_test(model, X, y [, opts]) -> {statistic, r2, null, null_mean, p_value,
-- permutations, model}. The statistic is the pooled out-of-fold R² of one cross-validation
-- (statistic = "r2_cv"), or with in_sample = true the R² of the fit on all rows ("r2"); y is
-- permuted `permutations` times (default 1000; permutations drawn from a stream derived from
-- seed) with the folds held fixed, and p = (1 + #{null >= observed}) / (1 + permutations).
-- Options: permutations = 1000, seed = 1, in_sample = false, and the design of cross_validate:
-- folds = 10, groups or fold_ids (one repeat).
-- e.g. local p = ls.stats.permutation_test(ls.stats.ols(), X, y, {permutations = 999}).p_value
M.permutation_test = public(function(model, X, y, opts)
    local who = "permutation_test"
    local n
    opts, X, y, n = check_call(model, X, y, opts, PERM_KEYS, who)
    local B = args.int(opts, "permutations", 1000, 1, who)
    local seed = args.int(opts, "seed", 1, 0, who)
    local in_sample = opts.in_sample
    if in_sample ~= nil and type(in_sample) ~= "boolean" then
        fail("%s: option 'in_sample' must be a boolean", who)
    end
    local stat
    if in_sample then
        if opts.folds or opts.groups or opts.fold_ids then
            fail("%s: in_sample = true takes no cross-validation design", who)
        end
        stat = function(yy) return model:fit(X, yy).r2 end
    else
        local folds, k = assignment({folds = opts.folds, groups = opts.groups,
                                     fold_ids = opts.fold_ids, seed = seed}, n, who)
        if folds:size(1) ~= 1 then fail("%s: fold_ids must have one row", who) end
        local _, idx = rows_where(folds[1]:totable(), function(v) return v > 0 end)
        stat = function(yy)
            local pred = predict_all(model, X, yy, folds, k, who)[1]
            return (K.scores(yy:index_select(1, idx), pred:index_select(1, idx), who))
        end
    end
    local observed = stat(y)
    local perms = K.draw("permutation", n, 0, K.seed(seed, 1), B)
    local null = {}
    local above, s = 0, 0.0
    for b = 1, B do
        null[b] = stat(y:index_select(1, perms[b]))
        if null[b] >= observed then above = above + 1 end
        s = s + null[b]
    end
    return setmetatable({statistic = in_sample and "r2" or "r2_cv", r2 = observed,
                         null = ls.tensor(null, {dtype = "f64"}), null_mean = s / B,
                         p_value = (1 + above) / (1 + B), permutations = B,
                         model = tostring(model)}, Perm)
end)

local BOOT_KEYS = {samples = true, seed = true, level = true}

--- ls.stats.bootstrap(fn, n [, opts]) -> {estimate, lo, hi, se, level, samples, dropped}.
-- fn(idx) gets an i64 Tensor of n row indices (1-based, drawn with replacement; the identity for
-- the estimate) and returns a number or a list of numbers; lo and hi are the percentile interval
-- at `level` (NumPy's linear quantiles of the bootstrap values), se their sample sd. Values that
-- are NaN (a statistic undefined on a resample) are left out and counted in dropped (per entry).
-- Options: samples = 1000, seed = 1, level = 0.95. samples is a Tensor [B] (or [B x m]).
-- e.g. local b = ls.stats.bootstrap(function(idx) return mean_of(idx) end, n, {samples = 1000})
M.bootstrap = public(function(fn, n, opts)
    local who = "bootstrap"
    if type(fn) ~= "function" then
        fail("%s: the first argument must be a function of the row indices", who)
    end
    if math.type(n) ~= "integer" or n < 1 then
        fail("%s: n must be an integer >= 1, got %s", who, tostring(n))
    end
    opts = util.check_options(opts, BOOT_KEYS, who)
    local B = args.int(opts, "samples", 1000, 1, who)
    local seed = args.int(opts, "seed", 1, 0, who)
    local level = opts.level or 0.95
    if type(level) ~= "number" or not (level > 0 and level < 1) then
        fail("%s: level must be in (0, 1), got %s", who, tostring(level))
    end
    local function call(idx)
        local v = fn(idx)
        if type(v) == "number" then return {v}, false end
        if type(v) ~= "table" then
            fail("%s: fn must return a number or a list of numbers, got %s", who, type(v))
        end
        for i = 1, #v do
            if type(v[i]) ~= "number" then
                fail("%s: fn's result[%d] is a %s, not a number", who, i, type(v[i]))
            end
        end
        return v, true
    end
    local all = {}
    for i = 1, n do all[i] = i end
    local est, is_list = call(ls.tensor(all, {dtype = "i64"}))
    local m = #est
    local draws = K.draw("bootstrap", n, 0, seed, B)
    local cols, samples = {}, {}
    for j = 1, m do cols[j] = {} end
    for b = 1, B do
        local v = call(draws[b])
        if #v ~= m then fail("%s: fn returned %d values, %d for the estimate", who, #v, m) end
        samples[b] = v
        for j = 1, m do
            if v[j] == v[j] then cols[j][#cols[j] + 1] = v[j] end
        end
    end
    local lo, hi, se, dropped = {}, {}, {}, {}
    for j = 1, m do
        local q = describe.quantile(cols[j], {(1 - level) / 2, (1 + level) / 2})
        lo[j], hi[j] = q[1], q[2]
        local _, sd = args.mean_sd(cols[j])
        se[j] = sd
        dropped[j] = B - #cols[j]
    end
    local t = ls.tensor(samples, {dtype = "f64"})
    if not is_list then
        return {estimate = est[1], lo = lo[1], hi = hi[1], se = se[1], level = level,
                samples = t:reshape(B), dropped = dropped[1]}
    end
    return {estimate = est, lo = lo, hi = hi, se = se, level = level, samples = t,
            dropped = dropped}
end)

return M
