-- ls.stats.cross_validate, transfer, permutation_test and bootstrap. Out-of-fold predictions are
-- compared, to 1e-10, with scikit-learn pipelines fitted in Python on the same folds (the fold ids
-- cross_validate reports), and the pooled and per-repeat scores with sklearn.metrics and SciPy;
-- KFold's fold sizes, leave-one-group-out and 90/10 splits likewise. Determinism (same seed, same
-- bits), the permutation p-value formula, the bootstrap's percentile interval (NumPy quantiles of
-- its own samples) and the error paths are checked in Lua.
local ls = require "landscape"
local py = require "sklearn_oracle"

local TOL = 1e-10

local errmsg = py.errmsg

local function problem(n, p, seed, noise) return py.problem(n, p, seed, {noise = noise}) end

-- Python that refits `model` (a sklearn expression of X) fold by fold for each row of F and prints
-- per row: the out-of-fold predictions (untested rows NaN), then r2, rmse, mae, tau of the tested
-- rows; it returns the list of the predictions.
local REFIT = [[
def refit(make, X, y, F):
    preds = []
    for f in F:
        pred = np.full(len(y), np.nan)
        for k in sorted(set(int(v) for v in f if v > 0)):
            tr, te = f != k, f == k
            pred[te] = make().fit(X[tr], y[tr]).predict(X[te])
        t = f > 0
        show(pred)
        show(r2_score(y[t], pred[t]), np.sqrt(mean_squared_error(y[t], pred[t])),
             mean_absolute_error(y[t], pred[t]), scipy.stats.kendalltau(pred[t], y[t])[0])
        preds.append(pred)
    return preds
]]

describe("cross_validate against scikit-learn on the same folds", function()
    before_each(function()
        if not py.available() then pending(py.MISSING) end
    end)

    it("repeated k-fold: OOF predictions, pooled R², RMSE, MAE, tau per repeat, mean, sd", function()
        local X, y = problem(53, 4, 5)
        local strata = {}
        for i = 1, 53 do strata[i] = i % 3 == 0 and "noisy" or "clean" end
        local cv = ls.stats.cross_validate(ls.stats.ols{standardize = true}, X, y,
                                           {folds = 5, repeats = 3, seed = 7, strata = strata})
        assert.are.same({3, 53}, cv.folds.shape)
        local data = py.arrays({"X", X}, {"y", y}, {"F", cv.folds:double()}, {"S", strata})
        local out = py.lines(py.PRELUDE .. REFIT .. data .. [[
P = refit(lambda: make_pipeline(StandardScaler(), LinearRegression()), X, y, F)
sizes = [sorted(np.bincount(f.astype(int))[1:].tolist()) for f in F]
from sklearn.model_selection import KFold
want = sorted(len(te) for _, te in KFold(5).split(X))
print(all(s == want for s in sizes))
for v in ("clean", "noisy"):
    t = S == v
    r2 = [r2_score(y[t], p[t]) for p in P]
    show(t.sum(), np.mean(r2), np.std(r2, ddof=1), np.mean([mean_absolute_error(y[t], p[t]) for p in P]))
]])
        local r2s = {}
        for r = 1, 3 do
            py.near(cv.oof_repeats[r], py.nums(out[2 * r - 1]), TOL, "oof repeat " .. r)
            local s = py.nums(out[2 * r])
            local e = cv.each[r]
            py.near({e.r2, e.rmse, e.mae, e.kendall_tau}, s, TOL, "scores repeat " .. r)
            r2s[r] = s[1]
        end
        assert.are.equal("True", out[7])   -- KFold's fold sizes
        local m = (r2s[1] + r2s[2] + r2s[3]) / 3
        local sd = math.sqrt(((r2s[1] - m) ^ 2 + (r2s[2] - m) ^ 2 + (r2s[3] - m) ^ 2) / 2)
        py.near({cv.r2, cv.r2_sd}, {m, sd}, TOL, "r2 mean sd")
        -- oof is the mean of the repeats
        local avg = (cv.oof_repeats[1] + cv.oof_repeats[2] + cv.oof_repeats[3]) / 3
        py.near(cv.oof, avg:totable(), 1e-14, "oof mean")
        assert.matches("R2 = ", tostring(cv))
        assert.matches("5%-fold x 3 repeats %(seed 7%)", tostring(cv))
        -- within each stratum, per repeat, then mean and sd
        for g, name in ipairs({"clean", "noisy"}) do
            local s = cv.strata[g]
            assert.are.equal(name, s.group)
            py.near({s.n, s.r2, s.r2_sd, s.mae}, py.nums(out[7 + g]), TOL, "stratum " .. name)
        end
        assert.matches("stratum", tostring(cv))
    end)

    it("ridge with fixed lambda, and folds given back as fold_ids", function()
        local X, y = problem(40, 6, 15)
        local model = ls.stats.ridge{lambda = 3.5}
        local a = ls.stats.cross_validate(model, X, y, {folds = 4, seed = 2})
        local b = ls.stats.cross_validate(model, X, y, {fold_ids = a.folds})
        assert.is_true(a.oof:equal(b.oof))
        local data = py.arrays({"X", X}, {"y", y}, {"F", a.folds:double()})
        local out = py.lines(py.PRELUDE .. REFIT .. data ..
                             "refit(lambda: make_pipeline(StandardScaler(), " ..
                             "Ridge(alpha=3.5, solver='svd')), X, y, F)\n")
        py.near(a.oof, py.nums(out[1]), TOL, "oof")
        py.near({a.r2}, {py.nums(out[2])[1]}, TOL, "r2")
        assert.is_true(a.r2_sd ~= a.r2_sd)   -- one repeat: no sd
    end)

    it("leave one group out: pooled and per-group scores", function()
        local X, y = problem(45, 3, 25)
        local g = {}
        for i = 1, 45 do g[i] = ({500, 2000, 8000})[(i * 7) % 3 + 1] end
        local cv = ls.stats.cross_validate(ls.stats.ols{}, X, y,
                                           {groups = ls.tensor(g, {dtype = "f64"})})
        assert.are.equal("groups", cv.method)
        assert.are.equal(3, cv.k)
        local out = py.lines(py.PRELUDE .. py.arrays({"X", X}, {"y", y}, {"g", g}) .. [[
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
pred = cross_val_predict(LinearRegression(), X, y, groups=g, cv=LeaveOneGroupOut())
show(pred)
show(r2_score(y, pred))
for v in sorted(set(g)):
    t = g == v
    show(v, t.sum(), r2_score(y[t], pred[t]), np.sqrt(mean_squared_error(y[t], pred[t])),
         np.mean(pred[t] - y[t]))
]])
        py.near(cv.oof, py.nums(out[1]), TOL, "oof")
        py.near({cv.r2}, py.nums(out[2]), TOL, "pooled r2")
        for i = 1, 3 do
            local s, grp = py.nums(out[2 + i]), cv.groups[i]
            py.near({grp.group, grp.n, grp.r2, grp.rmse, grp.bias}, s, TOL, "group " .. i)
        end
        assert.matches("leave one group out, 3 groups", tostring(cv))
        -- string labels work the same, groups sorted
        local sg = {}
        for i = 1, 45 do sg[i] = "n" .. g[i] end
        local cs = ls.stats.cross_validate(ls.stats.ols{}, X, y, {groups = sg})
        assert.is_true(cs.oof:equal(cv.oof))
        assert.are.same({"n2000", "n500", "n8000"},
                        {cs.groups[1].group, cs.groups[2].group, cs.groups[3].group})
    end)

    it("random 90/10 splits: R² on each held-out set", function()
        local X, y = problem(50, 3, 35)
        local cv = ls.stats.cross_validate(ls.stats.ols{}, X, y, {splits = 6, seed = 4})
        assert.are.same({6, 50}, cv.folds.shape)
        for r = 1, 6 do assert.are.equal(5, cv.folds[r]:double():sum():item()) end  -- ceil(0.1 * 50)
        local data = py.arrays({"X", X}, {"y", y}, {"F", cv.folds:double()})
        local out = py.lines(py.PRELUDE .. REFIT .. data ..
                             "refit(lambda: LinearRegression(), X, y, F)\n")
        local r2s, s = {}, 0
        for r = 1, 6 do
            py.near(cv.oof_repeats[r], py.nums(out[2 * r - 1]), TOL, "split " .. r)
            r2s[r] = py.nums(out[2 * r])[1]
            s = s + r2s[r]
        end
        py.near({cv.r2}, {s / 6}, TOL, "mean r2")
        local c = ls.stats.cross_validate(ls.stats.ols{}, X, y, {splits = 3, test_fraction = 0.3})
        assert.are.equal(15, c.folds[1]:double():sum():item())
    end)

    it("transfer: fit on A, score on B", function()
        local XA, yA = problem(40, 3, 45)
        local XB, yB = problem(20, 3, 55, 2)
        local s = ls.stats.transfer(ls.stats.ols{}, XA, yA, XB, yB)
        local data = py.arrays({"XA", XA}, {"yA", yA}, {"XB", XB}, {"yB", yB})
        local out = py.lines(py.PRELUDE .. data .. [[
p = LinearRegression().fit(XA, yA).predict(XB)
show(r2_score(yB, p), np.sqrt(mean_squared_error(yB, p)), mean_absolute_error(yB, p),
     scipy.stats.kendalltau(p, yB)[0], scipy.stats.spearmanr(p, yB)[0])
]])
        py.near({s.r2, s.rmse, s.mae, s.kendall_tau, s.spearman}, py.nums(out[1]), TOL, "transfer")
        assert.are.equal(20, s.n)
        assert.are.equal(40, s.fit.n)
    end)
end)

describe("cross_validate: determinism, permutation test, bootstrap, errors", function()
    it("the same seed gives the same bits; the folds do not depend on the model", function()
        local X, y = problem(60, 5, 65)
        local m = ls.stats.ridge{lambda = "cv"}
        local a = ls.stats.cross_validate(m, X, y, {folds = 5, repeats = 2, seed = 9})
        local b = ls.stats.cross_validate(m, X, y, {folds = 5, repeats = 2, seed = 9})
        assert.is_true(a.oof_repeats:equal(b.oof_repeats))
        assert.are.equal(a.r2, b.r2)
        local o = ls.stats.cross_validate(ls.stats.ols{}, X:narrow(2, 1, 2), y,
                                          {folds = 5, repeats = 2, seed = 9})
        assert.is_true(o.folds:equal(a.folds))
        local c = ls.stats.cross_validate(m, X, y, {folds = 5, repeats = 2, seed = 10})
        assert.is_false(c.folds:equal(a.folds))
        -- each repeat draws fresh folds from the stream
        assert.is_false(a.folds[1]:equal(a.folds[2]))
    end)

    it("permutation test: observed CV R², the null, p = (1 + #{null >= obs}) / (1 + B)", function()
        local X, y = problem(40, 3, 75)
        local m = ls.stats.ols{}
        local t = ls.stats.permutation_test(m, X, y, {permutations = 50, folds = 5, seed = 3})
        local cv = ls.stats.cross_validate(m, X, y, {folds = 5, seed = 3})
        assert.are.equal(cv.r2, t.r2)
        assert.are.equal(50, t.null:size(1))
        local above = 0
        for _, v in ipairs(t.null:totable()) do if v >= t.r2 then above = above + 1 end end
        assert.are.equal((1 + above) / 51, t.p_value)
        assert.are.equal(1 / 51, t.p_value)         -- a real signal beats every shuffle
        assert.is_true(t.null_mean < 0.2)
        -- no signal: y unrelated to X
        local noise = ls.randn({40}, {seed = 5, dtype = "f64"})
        local tn = ls.stats.permutation_test(m, X, noise, {permutations = 50, folds = 5})
        assert.is_true(tn.p_value > 0.05)
        assert.is_true(tn.r2 <= 0.1)
        local ti = ls.stats.permutation_test(m, X, y, {permutations = 20, in_sample = true})
        assert.are.equal(ls.stats.ols(X, y).r2, ti.r2)
        assert.are.equal("r2", ti.statistic)
        assert.matches("permutation test of ols{}", tostring(t))
    end)

    it("bootstrap: percentile interval of its own samples, se, determinism", function()
        if not py.available() then return pending(py.MISSING) end
        local x = ls.randn({200}, {seed = 8, dtype = "f64"}) * 2 + 1
        local function mean_of(idx) return x:index_select(1, idx):mean():item() end
        local b = ls.stats.bootstrap(mean_of, 200, {samples = 400, seed = 2, level = 0.9})
        assert.are.equal(x:mean():item(), b.estimate)
        assert.are.same({400}, b.samples.shape)
        local out = py.lines(py.PRELUDE .. py.arrays({"s", b.samples}) ..
                             "show(np.quantile(s, [0.05, 0.95]), s.std(ddof=1))\n")
        py.near({b.lo, b.hi, b.se}, py.nums(out[1]), 1e-12, "interval")
        -- the standard error of a mean is sd / sqrt(n), within bootstrap noise
        local want = x:std():item() / math.sqrt(200)
        assert.is_true(math.abs(b.se - want) < 0.15 * want)
        local again = ls.stats.bootstrap(mean_of, 200, {samples = 400, seed = 2, level = 0.9})
        assert.is_true(again.samples:equal(b.samples))
        -- a list-valued statistic
        local l = ls.stats.bootstrap(function(idx)
            local v = x:index_select(1, idx)
            return {v:mean():item(), v:std():item()}
        end, 200, {samples = 50})
        assert.are.same({50, 2}, l.samples.shape)
        assert.are.equal(2, #l.lo)
        -- cross_validate's interval of R²
        local X, y = problem(60, 3, 85)
        local cv = ls.stats.cross_validate(ls.stats.ols{}, X, y,
                                           {folds = 5, repeats = 2, ci = 0.9, boot = 200})
        assert.is_true(cv.ci.lo < cv.r2 and cv.r2 < cv.ci.hi)
        assert.matches("R2 90%% bootstrap interval", tostring(cv))
    end)

    it("raises clear errors naming the function", function()
        local X, y = problem(20, 2, 95)
        local m = ls.stats.ols{}
        local cv = ls.stats.cross_validate
        assert.matches("cross_validate: groups has one distinct value %(3%); " ..
                       "leave%-one%-group%-out needs at least two",
                       errmsg(cv, m, X, y, {groups = ls.full({20}, 3, {dtype = "f64"})}))
        assert.matches("cross_validate: groups has 19 entries but there are 20 rows",
                       errmsg(cv, m, X, y, {groups = ls.zeros({19}, {dtype = "f64"})}))
        assert.matches("cross_validate: 30 folds but only 20 rows", errmsg(cv, m, X, y, {folds = 30}))
        assert.matches("cross_validate: options 'groups' and 'splits' choose different designs",
                       errmsg(cv, m, X, y, {groups = {}, splits = 3}))
        assert.matches("cross_validate: option 'repeats' does not apply to leave%-one%-group%-out",
                       errmsg(cv, m, X, y, {groups = ls.arange(20, {dtype = "f64"}), repeats = 2}))
        assert.matches("cross_validate: the first argument must be a model", errmsg(cv, X, X, y))
        assert.matches("cross_validate: X has 20 rows but y has 19",
                       errmsg(cv, m, X, y:narrow(1, 1, 19)))
        local Xn = X:clone()
        Xn[3][1] = 0 / 0
        assert.matches("cross_validate: X has a NaN at row 3, column 1", errmsg(cv, m, Xn, y))
        assert.matches("cross_validate: 'ci' applies to pooled designs",
                       errmsg(cv, m, X, y, {splits = 2, ci = 0.9}))
        assert.matches("cross_validate: 'strata' applies to pooled designs",
                       errmsg(cv, m, X, y, {splits = 2, strata = ls.zeros({20}, {dtype = "f64"})}))
        assert.matches("cross_validate: unknown option 'fold'", errmsg(cv, m, X, y, {fold = 3}))
        assert.matches("cross_validate: option 'folds' must be >= 2",
                       errmsg(cv, m, X, y, {folds = 1}))
        assert.matches("transfer: A has 2 features but B has 1",
                       errmsg(ls.stats.transfer, m, X, y, X:narrow(2, 1, 1), y))
        assert.matches("bootstrap: n must be an integer >= 1",
                       errmsg(ls.stats.bootstrap, function() return 1 end, 0))
        local ok, err = pcall(function() cv(m, Xn, y) end)
        assert.is_false(ok)
        assert.matches("stats_cv_spec.lua:%d+: cross_validate:", err)
    end)
end)
