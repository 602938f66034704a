--- gg.analysis: the statistics of the generalization-gap study (reference §6.5) on a table of
-- models (one row per network and checkpoint, the columns of gg/measure.lua and the grid's
-- factors). No files are read or written here (gg/report.lua does that), so the spec runs it on
-- synthetic tables with a planted relation.
--
--   local A = require "gg.analysis"
--   local res = A.run(t, {factors = {"n", "noise", ...}, target_n = 377, permutations = 1000})
--   res.selection, res.sets, res.main, res.by_t, res.transfer, res.lolo, res.granulated,
--   res.noise_floor, res.factors_by_t, res.claims
--
-- Options (defaults): factors (required: the grid's factor columns), target_n (nil: keep every
-- network that trained; a number: draw that many of them, seeded, as the abstract's 377 of the
-- 384), folds (10), repeats (10), splits (100), permutations (1000), boot (1000), seed (1),
-- min_train_acc (0.2: a final train accuracy below it is a collapsed run, left out like a
-- diverged one).
--
-- The target is the gap in percentage points (column gap). Every feature set is evaluated on the
-- same folds (the same seed gives the same folds whatever the features; the main fit's folds are
-- also passed explicitly as fold_ids).
local ls = require "landscape"

local M = {}

M.SLOTS = {"input", "first", "last", "output"}
M.P5P95 = {"p5", "q1", "q2", "q3", "p95"}
M.FENCES = {"q1", "q2", "q3", "fence_lo", "fence_hi"}
M.FRACTIONS = {0.1, 0.25, 0.5, 0.75, 1.0}
M.MAIN = "margins"

local NAN = 0 / 0
local function finite(v) return type(v) == "number" and v == v and v ~= math.huge
    and v ~= -math.huge end

local function cols(prefix, slots, stats)
    local out = {}
    for _, s in ipairs(slots) do
        for _, q in ipairs(stats) do out[#out + 1] = prefix .. "." .. s .. "." .. q end
    end
    return out
end

-- Columns the feature sets need that models.csv does not hold as such: the hyperparameters as
-- numbers (log n, the two-level factors as 0/1 or their log), the signature without the log, and
-- the logs of the single-number baselines.
local function derive_features(t, factors)
    local have = {}
    for _, f in ipairs(factors) do have[f] = true end
    local function lg(v) return v > 0 and math.log(v) or math.log(1e-12) end
    local H = {}
    for _, f in ipairs(factors) do
        local name = "h." .. f
        local levels = t:unique(f)
        local positive = true
        for _, v in ipairs(levels) do if type(v) ~= "number" or v <= 0 then positive = false end end
        local logged = positive and f ~= "depth"
        t = t:derive(name, function(r)
            local v = r[f]
            if type(v) ~= "number" then return NAN end
            return logged and math.log(v) or v
        end)
        H[#H + 1] = name
    end
    for _, c in ipairs(cols("p5p95", M.SLOTS, M.P5P95)) do
        if t:has(c) then
            t = t:derive("lin." .. c:sub(7), function(r) return math.exp(r[c]) end)
        end
    end
    t = t:derive("log_train_loss", function(r) return lg(r.train_loss) end)
    if t:has("sharpness") then
        t = t:derive("log_sharpness", function(r) return lg(r.sharpness) end)
    end
    if t:has("l2_sq") then t = t:derive("log_l2_sq", function(r) return lg(r.l2_sq) end) end
    if t:has("dist_init") then
        t = t:derive("log_dist_init", function(r) return lg(r.dist_init) end)
    end
    return t, H
end

--- The feature sets: {name, label, columns, kind = "margins" | "baseline"}. Only the sets whose
-- columns are all in t are returned.
function M.feature_sets(t, H)
    local clipped = {}
    for _, s in ipairs(M.SLOTS) do clipped[#clipped + 1] = "fences." .. s .. ".n_clipped" end
    local fences = cols("fences", M.SLOTS, M.FENCES)
    for _, c in ipairs(clipped) do fences[#fences + 1] = c end
    local main = cols("p5p95", M.SLOTS, M.P5P95)
    local with_acc = {table.unpack(main)}
    with_acc[#with_acc + 1] = "train_acc"
    local with_h = {table.unpack(main)}
    for _, h in ipairs(H) do with_h[#with_h + 1] = h end
    local sets = {
        {name = M.MAIN, kind = "margins", columns = main,
         label = "margin signature: log P5, Q1, Q2, Q3, P95 at 4 slots (main)"},
        {name = "margins_fences", kind = "margins", columns = fences,
         label = "log Q1, Q2, Q3, Tukey fences (clipped at 1e-12) + clip counts (paper)"},
        {name = "margins_hidden", kind = "margins",
         columns = cols("p5p95", {"input", "first", "last"}, M.P5P95),
         label = "input and hidden slots only (Jiang's layout, no logits)"},
        {name = "margins_output", kind = "margins", columns = cols("p5p95", {"output"}, M.P5P95),
         label = "output slot only"},
        {name = "margins_unnormalised", kind = "margins",
         columns = cols("unnorm", M.SLOTS, M.P5P95), label = "signature without nu normalisation"},
        {name = "margins_nolog", kind = "margins", columns = cols("lin", M.SLOTS, M.P5P95),
         label = "signature without the log"},
        {name = "margins_train_acc", kind = "margins", columns = with_acc,
         label = "main signature + train accuracy"},
        {name = "margins_hyper", kind = "margins", columns = with_h,
         label = "main signature + hyperparameters"},
        {name = "hyperparameters", kind = "baseline", columns = H,
         label = "hyperparameters (log n, noise, log width, depth, bn, wd, log lr, log batch)"},
        {name = "train_loss", kind = "baseline", columns = {"log_train_loss"},
         label = "log train cross-entropy"},
        {name = "train_acc", kind = "baseline", columns = {"train_acc"}, label = "train accuracy"},
        {name = "output_margin_p10", kind = "baseline", columns = {"out_margin_p10"},
         label = "10th percentile of the output margin (Fantastic's gamma)"},
        {name = "sharpness", kind = "baseline", columns = {"log_sharpness"},
         label = "log Keskar sharpness (eps 1e-4)"},
        {name = "norms", kind = "baseline",
         columns = {"log_l2_sq", "log_prod_fro", "log_prod_spec", "log_dist_init"},
         label = "parameter norms (log sum F^2, sum log F^2, sum log spectral^2, "
             .. "log dist. to init)"},
    }
    local out = {}
    for _, s in ipairs(sets) do
        local ok = true
        for _, c in ipairs(s.columns) do if not t:has(c) then ok = false end end
        if ok then out[#out + 1] = s end
    end
    return out
end

--- The networks of the analysis: at the final checkpoint, replicate 1, every network whose run
-- finished ("ok"), did not collapse (train_acc >= min_train_acc) and has finite features; then,
-- with target_n, a seeded draw of that many. Returns the selection rows {job, kept, reason} and
-- the set of kept job keys.
function M.select(t, opts)
    local final = t:filter(function(r) return r.frac == 1 and (r.replicate or 1) == 1 end)
    local needed = cols("p5p95", M.SLOTS, M.P5P95)
    local rows, ok_jobs = {}, {}
    for _, r in final:rows() do
        local reason = ""
        if r.status ~= "ok" then
            reason = "status " .. tostring(r.status)
        elseif not (r.train_acc >= opts.min_train_acc) then
            reason = string.format("collapsed: train acc %.3f", r.train_acc)
        else
            for _, c in ipairs(needed) do
                if not finite(r[c]) then reason = "non-finite " .. c break end
            end
        end
        rows[#rows + 1] = {job = r.job, kept = reason == "" and 1 or 0, reason = reason}
        if reason == "" then ok_jobs[#ok_jobs + 1] = #rows end
    end
    local target = opts.target_n
    if target and #ok_jobs > target then
        local perm = ls.randperm(#ok_jobs, {seed = opts.seed + 376}):totable()
        for i = target + 1, #perm do
            local r = rows[ok_jobs[perm[i]]]
            r.kept, r.reason = 0, string.format("seeded draw to %d", target)
        end
    end
    local kept = {}
    for _, r in ipairs(rows) do if r.kept == 1 then kept[r.job] = true end end
    return rows, kept
end

-- The rows of the kept networks at checkpoint frac, sorted by job key (so the checkpoints align).
local function at(t, kept, frac, replicate)
    return t:filter(function(r)
        return r.frac == frac and (r.replicate or 1) == (replicate or 1) and kept[r.job]
    end):sort_by("job")
end

local function has_nan(X)
    local s = X:sum():item()
    return s ~= s
end

local function tensor_rows(X, idx)
    return X:index_select(1, ls.tensor(idx, {dtype = "i64"}))
end

--- Every protocol of §6.5 for one feature matrix: in-sample OLS (R², adjusted R²), repeated k-fold
-- (R²_cv ± sd, bootstrap CI, RMSE, MAE, Kendall tau of the out-of-fold predictions, R² within
-- each stratum), random 90/10 splits.
function M.evaluate(X, y, opts)
    local n = y:size(1)
    local folds = math.min(opts.folds, n)
    local ols = ls.stats.ols{standardize = true}
    local fit = ls.stats.ols(X, y, {standardize = true})
    local design = {ci = 0.95, boot = opts.boot, strata = opts.strata, seed = opts.seed}
    if opts.fold_ids then
        design.fold_ids = opts.fold_ids
    else
        design.folds, design.repeats = folds, opts.repeats
    end
    local cv = ls.stats.cross_validate(ols, X, y, design)
    local res = {n = n, p = X:size(2), r2 = fit.r2, adj_r2 = fit.adj_r2, rank = fit.rank,
                 cv_r2 = cv.r2, cv_r2_sd = cv.r2_sd, cv_lo = cv.ci and cv.ci.lo or NAN,
                 cv_hi = cv.ci and cv.ci.hi or NAN, rmse = cv.rmse, mae = cv.mae,
                 tau = ls.stats.kendall_tau(cv.oof, y), cv = cv, fit = fit}
    if n >= 20 then
        local sp = ls.stats.cross_validate(ols, X, y, {splits = opts.splits, test_fraction = 0.1,
                                                       seed = opts.seed})
        res.split_r2, res.split_r2_sd = sp.r2, sp.r2_sd
    else
        res.split_r2, res.split_r2_sd = NAN, NAN
    end
    if opts.ridge then
        local rcv = ls.stats.cross_validate(ls.stats.ridge{lambda = "cv", seed = opts.seed}, X, y,
                                            {fold_ids = cv.folds})
        res.ridge_cv_r2, res.ridge_cv_r2_sd = rcv.r2, rcv.r2_sd
    end
    res.strata = cv.strata
    return res
end

-- One-way share of the variance of y explained by factor f's levels (eta², the between-level sum
-- of squares over the total).
local function eta2(tt, f, y)
    local ys = y:totable()
    local lv = tt:values(f)
    local mean = 0
    for _, v in ipairs(ys) do mean = mean + v end
    mean = mean / #ys
    local sums, counts = {}, {}
    for i, v in ipairs(ys) do
        local k = tostring(lv[i])
        sums[k] = (sums[k] or 0) + v
        counts[k] = (counts[k] or 0) + 1
    end
    local between, total = 0, 0
    for k, s in pairs(sums) do between = between + counts[k] * (s / counts[k] - mean) ^ 2 end
    for _, v in ipairs(ys) do total = total + (v - mean) ^ 2 end
    return total > 0 and between / total or NAN
end

--- The analysis. See the header for the options.
function M.run(t, opts)
    opts = opts or {}
    assert(opts.factors, "gg.analysis: opts.factors is required")
    local o = {factors = opts.factors, target_n = opts.target_n, folds = opts.folds or 10,
               repeats = opts.repeats or 10, splits = opts.splits or 100,
               permutations = opts.permutations or 1000, boot = opts.boot or 1000,
               seed = opts.seed or 1, min_train_acc = opts.min_train_acc or 0.2}
    local H
    t, H = derive_features(t, o.factors)
    local res = {options = o}
    local selection, kept = M.select(t, o)
    res.selection = selection
    local final = at(t, kept, 1.0)
    res.n = final.nrows
    if final.nrows < 4 then error("gg.analysis: fewer than 4 networks to analyse", 0) end
    local sets = M.feature_sets(final, H)
    res.sets = sets
    local y = final:column("gap")
    local noise_levels = final:values("noise")

    -- every feature set at t = 100 %, on the main fit's folds
    local main_set = sets[1]
    local main = M.evaluate(final:matrix(main_set.columns), y,
                            {folds = o.folds, repeats = o.repeats, seed = o.seed, boot = o.boot,
                             splits = o.splits, strata = noise_levels, ridge = true})
    res.main = main
    res.set_results = {}
    for _, s in ipairs(sets) do
        local r = s == main_set and main or
            M.evaluate(final:matrix(s.columns), y, {folds = o.folds, repeats = o.repeats,
                                                    seed = o.seed, boot = o.boot,
                                                    splits = o.splits, strata = noise_levels,
                                                    fold_ids = main.cv.folds})
        r.set = s
        res.set_results[#res.set_results + 1] = r
    end

    -- separate fits within each label-noise level (the pooled fit's scores within a level are in
    -- the strata above): how much of the pooled R² is the contrast between the levels
    res.within = {}
    for _, level in ipairs(final:unique("noise")) do
        local sub = final:filter(function(r) return r.noise == level end)
        if sub.nrows >= 20 then
            for _, s in ipairs(sets) do
                if s.name == M.MAIN or s.name == "hyperparameters" then
                    local r = M.evaluate(sub:matrix(s.columns), sub:column("gap"),
                                         {folds = o.folds, repeats = o.repeats, seed = o.seed,
                                          boot = o.boot, splits = o.splits})
                    res.within[#res.within + 1] = {noise = level, set = s.name, n = r.n,
                                                   r2 = r.r2, cv_r2 = r.cv_r2,
                                                   cv_r2_sd = r.cv_r2_sd, cv_lo = r.cv_lo,
                                                   cv_hi = r.cv_hi, rmse = r.rmse,
                                                   split_r2 = r.split_r2, kendall_tau = r.tau}
                end
            end
        end
    end

    -- the permutation test of the main fit (shuffled targets, the folds held fixed)
    if o.permutations > 0 then
        res.permutation = ls.stats.permutation_test(ls.stats.ols{standardize = true},
                                                    final:matrix(main_set.columns), y,
                                                    {permutations = o.permutations,
                                                     folds = math.min(o.folds, final.nrows),
                                                     seed = o.seed})
    end

    -- leave one level out per factor: the margins against the hyperparameters
    res.lolo = {}
    for _, f in ipairs(o.factors) do
        if #final:unique(f) >= 2 then
            local g = final:values(f)
            for _, name in ipairs({M.MAIN, "hyperparameters"}) do
                local s
                for _, c in ipairs(sets) do if c.name == name then s = c end end
                local cv = ls.stats.cross_validate(ls.stats.ols{standardize = true},
                                                   final:matrix(s.columns), y, {groups = g})
                for _, gr in ipairs(cv.groups) do
                    res.lolo[#res.lolo + 1] = {factor = f, level = gr.group, set = name,
                                               n = gr.n, r2 = gr.r2, rmse = gr.rmse,
                                               bias = gr.bias, kendall_tau = gr.kendall_tau,
                                               pooled_r2 = cv.r2}
                end
            end
        end
    end

    -- granulated Kendall Psi of the out-of-fold prediction (main) and of single baselines
    local gt = final:derive("pred_main", main.cv.oof)
    local varying = {}
    for _, f in ipairs(o.factors) do if #final:unique(f) >= 2 then varying[#varying + 1] = f end end
    res.granulated = {}
    local function granulated(measure, label, sign)
        if not gt:has(measure) then return end
        local col = measure
        if sign < 0 then
            col = "neg_" .. measure
            gt = gt:derive(col, function(r) return -r[measure] end)
        end
        local psi, detail = ls.stats.granulated_tau(gt, {factors = varying, measure = col,
                                                         target = "gap"})
        local row = {measure = label, psi = psi,
                     tau = ls.stats.kendall_tau(gt:column(col), gt:column("gap"))}
        for _, d in pairs(detail.factors) do row["psi_" .. d.factor] = d.psi end
        res.granulated[#res.granulated + 1] = row
    end
    if #varying > 0 then
        granulated("pred_main", "margins (out-of-fold prediction)", 1)
        granulated("out_margin_p10", "-output margin P10 (-gamma)", -1)
        granulated("log_sharpness", "log sharpness", 1)
        granulated("log_train_loss", "-log train loss", -1)
        granulated("log_l2_sq", "log sum ||W||_F^2", 1)
    end

    -- R²_cv per checkpoint and the transfer of the final predictor to earlier checkpoints
    res.by_t, res.transfer, res.factors_by_t = {}, {}, {}
    local X1 = final:matrix(main_set.columns)
    local folds = main.cv.folds
    local R, n = folds:size(1), folds:size(2)
    local fold_tab = folds:totable()
    for _, frac in ipairs(M.FRACTIONS) do
        local tt = at(t, kept, frac)
        local ok = tt.nrows == final.nrows
        if ok then
            local a, b = tt:values("job"), final:values("job")
            for i = 1, #a do if a[i] ~= b[i] then ok = false end end
        end
        if ok then
            local yt = tt:column("gap")
            local fin = true
            local Xt = tt:matrix(main_set.columns, {nan = "keep"})
            if has_nan(Xt) then fin = false end
            for _, name in ipairs({M.MAIN, "hyperparameters", "train_loss"}) do
                local s
                for _, c in ipairs(sets) do if c.name == name then s = c end end
                local X = tt:matrix(s.columns, {nan = "keep"})
                if not has_nan(X) then
                    local r = M.evaluate(X, yt, {folds = o.folds, repeats = o.repeats,
                                                 seed = o.seed, boot = o.boot, splits = o.splits,
                                                 strata = tt:values("n"), fold_ids = folds})
                    local row = {frac = frac, set = name, r2 = r.r2, cv_r2 = r.cv_r2,
                                 cv_r2_sd = r.cv_r2_sd, cv_lo = r.cv_lo, cv_hi = r.cv_hi,
                                 split_r2 = r.split_r2, tau = r.tau}
                    for _, st in ipairs(r.strata or {}) do
                        row["cv_r2_n" .. tostring(st.group)] = st.r2
                    end
                    res.by_t[#res.by_t + 1] = row
                end
            end
            -- the final predictor on the same networks at frac: fitted on all final rows, and on
            -- the training folds' final rows predicting the held-out networks at frac
            if fin then
                local tr = ls.stats.transfer(ls.stats.ols{standardize = true}, X1, y, Xt, yt)
                local per = {}
                for rr = 1, R do
                    local pred = {}
                    local k = 0
                    for i = 1, n do k = math.max(k, fold_tab[rr][i]) end
                    for f = 1, k do
                        local train, test = {}, {}
                        for i = 1, n do
                            if fold_tab[rr][i] == f then test[#test + 1] = i
                            else train[#train + 1] = i end
                        end
                        local fit = ls.stats.ols(tensor_rows(X1, train), tensor_rows(y, train),
                                                 {standardize = true})
                        local p = fit:predict(tensor_rows(Xt, test)):totable()
                        for q, i in ipairs(test) do pred[i] = p[q] end
                    end
                    per[rr] = ls.stats.r2(yt, ls.tensor(pred, {dtype = "f64"}))
                end
                local m, s2 = 0, 0
                for _, v in ipairs(per) do m = m + v end
                m = m / #per
                for _, v in ipairs(per) do s2 = s2 + (v - m) ^ 2 end
                res.transfer[#res.transfer + 1] = {
                    frac = frac, r2_same = tr.r2, r2_heldout = m,
                    r2_heldout_sd = #per > 1 and math.sqrt(s2 / (#per - 1)) or NAN,
                    bias = tr.bias, rmse = tr.rmse, kendall_tau = tr.kendall_tau}
            end
            -- what drives the gap at frac: each factor's share of its variance, its mean, and
            -- how many networks fit their training labels
            local fr = {frac = frac, gap_mean = 0, gap_sd = 0, train_acc_mean = 0, fitted = 0}
            local ys = yt:totable()
            local ta = tt:values("train_acc")
            for i, v in ipairs(ys) do
                fr.gap_mean = fr.gap_mean + v / #ys
                fr.train_acc_mean = fr.train_acc_mean + ta[i] / #ys
                if ta[i] >= 0.99 then fr.fitted = fr.fitted + 1 / #ys end
            end
            for _, v in ipairs(ys) do fr.gap_sd = fr.gap_sd + (v - fr.gap_mean) ^ 2 end
            fr.gap_sd = math.sqrt(fr.gap_sd / math.max(1, #ys - 1))
            for _, f in ipairs(o.factors) do fr["eta2_" .. f] = eta2(tt, f, yt) end
            res.factors_by_t[#res.factors_by_t + 1] = fr
        end
    end

    res.noise_floor = M.noise_floor(t, final, y, main)
    return res
end

--- The noise floor: the test-set sampling sd of each gap (binomial, 10 000 test images), the seed
-- sd from the networks trained twice (replicate 2 against replicate 1 at the final checkpoint),
-- and the R² ceiling that seed noise leaves, 1 - seed variance / gap variance.
function M.noise_floor(t, final, y, main)
    local nf = {}
    local ta = final:values("test_acc")
    local s = 0
    local n_test = 10000
    for _, p in ipairs(ta) do s = s + 100 * math.sqrt(p * (1 - p) / n_test) end
    nf.test_sampling_sd = s / #ta
    local by_noise, yv = {}, y:totable()
    for i, v in ipairs(final:values("noise")) do
        by_noise[v] = by_noise[v] or {}
        table.insert(by_noise[v], yv[i])
    end
    for level, g in pairs(by_noise) do
        local m, s2 = 0, 0
        for _, v in ipairs(g) do m = m + v / #g end
        for _, v in ipairs(g) do s2 = s2 + (v - m) ^ 2 / math.max(1, #g - 1) end
        nf["gap_sd_noise" .. tostring(level)] = math.sqrt(s2)
    end
    local gvar = 0
    local ys = y:totable()
    local mean = 0
    for _, v in ipairs(ys) do mean = mean + v / #ys end
    for _, v in ipairs(ys) do gvar = gvar + (v - mean) ^ 2 / (#ys - 1) end
    nf.gap_sd = math.sqrt(gvar)
    -- replicate pairs: same configuration (every column but the seeds, job and measurements)
    local second = t:filter(function(r) return r.frac == 1 and r.replicate == 2 end)
    nf.pairs = 0
    if second.nrows > 0 then
        local firsts = t:filter(function(r) return r.frac == 1 and (r.replicate or 1) == 1 end)
        local key_cols = {}
        for _, c in ipairs({"n", "noise", "width", "depth", "bn", "wd", "lr", "batch", "budget",
                            "lr_scaling"}) do
            if t:has(c) then key_cols[#key_cols + 1] = c end
        end
        local function key(r)
            local parts = {}
            for i, c in ipairs(key_cols) do parts[i] = tostring(r[c]) end
            return table.concat(parts, "|")
        end
        local by = {}
        for _, r in firsts:rows() do by[key(r)] = r end
        local d2, a, b = 0, {}, {}
        for _, r in second:rows() do
            local f = by[key(r)]
            if f and r.status == "ok" and f.status == "ok" then
                d2 = d2 + (r.gap - f.gap) ^ 2
                a[#a + 1], b[#b + 1] = f.gap, r.gap
            end
        end
        nf.pairs = #a
        if #a >= 2 then
            nf.seed_sd = math.sqrt(d2 / #a / 2)
            nf.r2_ceiling = 1 - nf.seed_sd ^ 2 / gvar
            nf.replicate_r2 = ls.stats.r2(ls.tensor(b, {dtype = "f64"}),
                                          ls.tensor(a, {dtype = "f64"}))
        end
    end
    nf.model_rmse = main.rmse
    return nf
end

return M
