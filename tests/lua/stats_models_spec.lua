-- ls.stats linear models against NumPy and scikit-learn on the same data, to 1e-10: OLS
-- coefficients, intercept, R², adjusted R², RMSE, MAE, standard errors (from an explicit inverse of
-- Z^T Z), standardised fits (StandardScaler + LinearRegression), ridge for fixed lambda (Ridge with
-- the SVD solver), ridge's inner-CV error curve and choice (refitted fold by fold in Python on the
-- same inner folds), predictions; the edge cases (collinear columns, a constant column, n <= p:
-- NumPy's minimum-norm lstsq on the centred design) and the error paths.
local ls = require "landscape"
local py = require "sklearn_oracle"

local TOL = 1e-10

local errmsg = py.errmsg

-- X [n x p] with column p nearly equal to column p - 1, and a linear y + noise.
local function problem(n, p, seed) return py.problem(n, p, seed, {collinear = true}) end

describe("ls.stats.ols and ridge against NumPy / scikit-learn", function()
    local X, y, X2, out
    setup(function()
        if not py.available() then return end
        X, y = problem(80, 6, 11)
        X2 = ls.randn({7, 6}, {seed = 99, dtype = "f64"})
        out = py.lines(py.PRELUDE .. py.arrays({"X", X}, {"y", y}, {"X2", X2}) .. [[
n, p = X.shape
Z = np.column_stack([np.ones(n), X])
beta = np.linalg.lstsq(Z, y, rcond=None)[0]
lr = LinearRegression().fit(X, y)
pred = lr.predict(X)
rss = ((y - pred) ** 2).sum()
r2 = r2_score(y, pred)
sigma2 = rss / (n - p - 1)
se = np.sqrt(np.diag(sigma2 * np.linalg.inv(Z.T @ Z)))
show(lr.intercept_, lr.coef_)                                  # 1
show(beta)                                                     # 2
show(r2, 1 - (1 - r2) * (n - 1) / (n - p - 1),
     np.sqrt(mean_squared_error(y, pred)), mean_absolute_error(y, pred), np.sqrt(sigma2))  # 3
show(se)                                                       # 4
show(lr.predict(X2))                                           # 5
sc = StandardScaler().fit(X)
Xs = sc.transform(X)
lrs = LinearRegression().fit(Xs, y)
Zs = np.column_stack([np.ones(n), Xs])
show(lrs.intercept_, lrs.coef_, sc.scale_)                     # 6
show(np.sqrt(np.diag(sigma2 * np.linalg.inv(Zs.T @ Zs))))      # 7
for alpha in (0.3, 25.0):
    rs = make_pipeline(StandardScaler(), Ridge(alpha=alpha, solver="svd")).fit(X, y)
    show(rs[-1].intercept_, rs[-1].coef_, rs.predict(X2), r2_score(y, rs.predict(X)))  # 8, 10
    ru = Ridge(alpha=alpha, solver="svd").fit(X, y)
    show(ru.intercept_, ru.coef_)                              # 9, 11
]])
    end)

    before_each(function()
        if not py.available() then pending(py.MISSING) end
    end)

    it("OLS: coefficients, R², adjusted R², RMSE, MAE, sigma, standard errors, predict", function()
        local fit = ls.stats.ols(X, y)
        local lr, beta = py.nums(out[1]), py.nums(out[2])
        py.near({fit.intercept_raw}, {lr[1]}, TOL, "intercept")
        py.near(fit.coef_raw, {table.unpack(lr, 2)}, TOL, "coef (sklearn)")
        py.near(fit.coef, {table.unpack(beta, 2)}, TOL, "coef (numpy lstsq)")
        py.near({fit.intercept}, {beta[1]}, TOL, "intercept (numpy)")
        local s = py.nums(out[3])
        py.near({fit.r2, fit.adj_r2, fit.rmse, fit.mae, fit.sigma}, s, TOL, "r2 .. sigma")
        local se = py.nums(out[4])
        py.near({fit.intercept_stderr}, {se[1]}, TOL, "intercept stderr")
        py.near(fit.stderr, {table.unpack(se, 2)}, TOL, "stderr")
        py.near(fit:predict(X2), py.nums(out[5]), TOL, "predict")
        assert.are.equal(6, fit.rank)
        assert.is_false(fit.rank_deficient)
        assert.are.same({}, fit.aliased)
        assert.are.equal(80, fit.n)
        assert.are.equal(73, fit.df_resid)
    end)

    it("OLS with standardize: StandardScaler + LinearRegression coefficients, errors", function()
        local fit = ls.stats.ols(X, y, {standardize = true})
        local s = py.nums(out[6])
        py.near({fit.intercept}, {s[1]}, TOL, "intercept")
        py.near(fit.coef, {table.unpack(s, 2, 7)}, TOL, "coef")
        py.near(fit.scale, {table.unpack(s, 8, 13)}, TOL, "scale")
        local se = py.nums(out[7])
        py.near({fit.intercept_stderr}, {se[1]}, TOL, "intercept stderr")
        py.near(fit.stderr, {table.unpack(se, 2)}, TOL, "stderr")
        -- the raw-scale view equals the unstandardised fit
        local plain = ls.stats.ols(X, y)
        py.near(fit.coef_raw, plain.coef:totable(), TOL, "coef_raw")
        py.near(fit.stderr_raw, plain.stderr:totable(), TOL, "stderr_raw")
        py.near({fit.intercept_raw_stderr}, {plain.intercept_stderr}, TOL, "intercept_raw_stderr")
        py.near(fit:predict(X2), py.nums(out[5]), TOL, "predict")
    end)

    it("ridge for fixed lambda: Ridge(solver = 'svd'), standardised or not", function()
        for i, alpha in ipairs({0.3, 25.0}) do
            local rs = py.nums(out[8 + 2 * (i - 1)])
            local fit = ls.stats.ridge(X, y, {lambda = alpha})          -- standardize by default
            py.near({fit.intercept}, {rs[1]}, TOL, "std intercept")
            py.near(fit.coef, {table.unpack(rs, 2, 7)}, TOL, "std coef")
            py.near(fit:predict(X2), {table.unpack(rs, 8, 14)}, TOL, "std predict")
            py.near({fit.r2}, {rs[15]}, TOL, "r2")
            assert.is_true(fit.stderr[1] ~= fit.stderr[1])               -- NaN: not defined for ridge
            local ru = py.nums(out[9 + 2 * (i - 1)])
            local fu = ls.stats.ridge(X, y, {lambda = alpha, standardize = false})
            py.near({fu.intercept}, {ru[1]}, TOL, "intercept")
            py.near(fu.coef, {table.unpack(ru, 2)}, TOL, "coef")
        end
    end)
end)

describe("ridge with lambda = 'cv'", function()
    before_each(function()
        if not py.available() then pending(py.MISSING) end
    end)

    it("has the inner-CV error of every grid value and refits at the best one", function()
        local X, y = problem(60, 5, 21)
        local grid = {0.01, 0.1, 1, 10, 100}
        local fit = ls.stats.ridge(X, y, {lambda = "cv", lambdas = grid, inner_folds = 4, seed = 3})
        -- the inner folds are those of the documented stream: k-fold draw from seed 3
        local folds = ls._stats.draw("kfold", 60, 4, 3, 1)[1]
        local out = py.lines(py.PRELUDE .. py.arrays({"X", X}, {"y", y}, {"f", folds:double()}) .. [[
grid = [0.01, 0.1, 1, 10, 100]
mse = []
for a in grid:
    sse = 0.0
    for k in range(1, 5):
        tr, te = f != k, f == k
        m = make_pipeline(StandardScaler(), Ridge(alpha=a, solver="svd")).fit(X[tr], y[tr])
        sse += ((y[te] - m.predict(X[te])) ** 2).sum()
    mse.append(sse / len(y))
show(mse)
best = grid[int(np.argmin(mse))]
m = make_pipeline(StandardScaler(), Ridge(alpha=best, solver="svd")).fit(X, y)
show(best, m[-1].intercept_, m[-1].coef_)
show(len(y) * 10.0 ** (np.arange(33) / 4 - 6))
]])
        py.near(fit.cv.mse, py.nums(out[1]), TOL, "inner mse")
        py.near(fit.cv.lambdas, grid, 0, "grid")
        local b = py.nums(out[2])
        assert.are.equal(b[1], fit.lambda)
        py.near({fit.intercept}, {b[2]}, TOL, "intercept")
        py.near(fit.coef, {table.unpack(b, 3)}, TOL, "coef")
        -- the default grid: 33 values, n * 10^(-6 .. 2) for standardised features
        local def = ls.stats.ridge(X, y, {lambda = "cv"})
        py.near(def.cv.lambdas, py.nums(out[3]), 1e-12, "default grid")
        assert.are.equal(33, def.cv.mse:size(1))
        -- same seed, same bits; another seed, other inner folds
        local again = ls.stats.ridge(X, y, {lambda = "cv", lambdas = grid, inner_folds = 4, seed = 3})
        assert.is_true(again.cv.mse:equal(fit.cv.mse))
        local other = ls.stats.ridge(X, y, {lambda = "cv", lambdas = grid, inner_folds = 4, seed = 4})
        assert.is_false(other.cv.mse:equal(fit.cv.mse))
    end)
end)

describe("edge cases against NumPy's minimum-norm lstsq on the centred design", function()
    before_each(function()
        if not py.available() then pending(py.MISSING) end
    end)

    -- numpy: rank and coefficients of lstsq(Xc, yc) with the default rcond
    local function numpy_centred(X, y)
        local out = py.lines(py.PRELUDE .. py.arrays({"X", X}, {"y", y}) .. [[
Xc, yc = X - X.mean(0), y - y.mean()
b, _, rank, _ = np.linalg.lstsq(Xc, yc, rcond=None)
show(rank, y.mean() - X.mean(0) @ b, b)
]])
        local v = py.nums(out[1])
        return v[1], v[2], {table.unpack(v, 3)}
    end

    it("collinear columns: the rank, the aliased columns, the minimum-norm coefficients", function()
        local X, y = problem(40, 5, 31)
        X:select(2, 3):copy(X:select(2, 1) * 2 - X:select(2, 2))      -- x3 = 2 x1 - x2
        local fit = ls.stats.ols(X, y)
        local rank, b0, b = numpy_centred(X, y)
        assert.are.equal(rank, fit.rank)
        assert.are.equal(4, fit.rank)
        assert.is_true(fit.rank_deficient)
        assert.are.same({1, 2, 3}, fit.aliased)
        py.near({fit.intercept_raw}, {b0}, TOL, "intercept")
        py.near(fit.coef_raw, b, TOL, "coef")
        assert.is_true(fit.stderr[1] ~= fit.stderr[1])
        assert.matches("RANK DEFICIENT", tostring(fit))
        assert.matches("aliased", tostring(fit))
    end)

    it("a constant column is aliased with the intercept, its coefficient 0", function()
        local X, y = problem(30, 4, 41)
        X:select(2, 2):fill(7.5)
        local fit = ls.stats.ols(X, y, {standardize = true})
        local rank, b0, b = numpy_centred(X, y)
        assert.are.equal(rank, fit.rank)
        assert.are.same({2}, fit.aliased)
        assert.are.equal(0, fit.coef[2])
        assert.are.equal(1, fit.scale[2])
        py.near({fit.intercept_raw}, {b0}, TOL, "intercept")
        py.near(fit.coef_raw, b, TOL, "coef")
    end)

    it("n <= p: the minimum-norm interpolant, adjusted R² and standard errors NaN", function()
        local X, y = problem(5, 8, 51)
        local fit = ls.stats.ols(X, y)
        local rank, b0, b = numpy_centred(X, y)
        assert.are.equal(rank, fit.rank)
        assert.are.equal(4, fit.rank)
        py.near({fit.intercept_raw}, {b0}, TOL, "intercept")
        py.near(fit.coef_raw, b, TOL, "coef")
        assert.is_true(math.abs(fit.r2 - 1) < 1e-12)
        assert.is_true(fit.adj_r2 ~= fit.adj_r2 and fit.sigma ~= fit.sigma)
        -- ridge is well defined there
        local r = ls.stats.ridge(X, y, {lambda = 1})
        assert.is_true(r.r2 < 1 and r.r2 > 0)
    end)
end)

describe("ls.stats models: API and errors", function()
    it("ols{} / ridge{} are models with fit(); X may be a list of rows", function()
        local m = ls.stats.ridge{lambda = 2, standardize = false}
        assert.is_true(ls.stats.is_model(m))
        assert.are.equal('ridge{lambda = 2, standardize = false}', tostring(m))
        assert.are.equal("ols{}", tostring(ls.stats.ols{}))
        local X = {{1, 2}, {2, 1}, {3, 5}, {4, 3}, {5, 6}}
        local y = {1.5, 1.9, 4.1, 3.6, 6.2}
        local a = m:fit(X, y)
        local b = ls.stats.ridge(ls.tensor(X, {dtype = "f64"}), ls.tensor(y, {dtype = "f64"}),
                                 {lambda = 2, standardize = false})
        assert.is_true(a.coef:equal(b.coef))
        local o = ls.stats.ols(X, y, {intercept = false})
        assert.are.equal(0, o.intercept_raw)
        local s = o:score(X, y)
        assert.are.equal(o.rmse, s.rmse)
        assert.are.equal(5, s.n)
        -- p = 0: the mean
        local mean = ls.stats.ols(ls.zeros({5, 0}, {dtype = "f64"}), y)
        assert.is_true(math.abs(mean.intercept - 3.46) < 1e-12)
    end)

    it("raises clear errors naming the function", function()
        local X = ls.randn({10, 3}, {seed = 1, dtype = "f64"})
        local y = ls.randn({10}, {seed = 2, dtype = "f64"})
        local Xn = X:clone()
        Xn[4][2] = 0 / 0
        assert.matches("ols: X has a NaN at row 4, column 2", errmsg(ls.stats.ols, Xn, y))
        local yn = y:clone()
        yn[7] = 1 / 0
        assert.matches("ridge: y has an infinity at row 7",
                       errmsg(ls.stats.ridge, X, yn, {lambda = 1}))
        assert.matches("ols: X has 10 rows but y has 9", errmsg(ls.stats.ols, X, y:narrow(1, 1, 9)))
        assert.matches("ols: X must be a 2%-D tensor", errmsg(ls.stats.ols, y, y))
        assert.matches("ols: y%[2%] is a string %('n/a'%), not a number",
                       errmsg(ls.stats.ols, {{1}, {2}}, {1, "n/a"}))
        assert.matches("ols: unknown option 'lamda'", errmsg(ls.stats.ols, X, y, {lamda = 1}))
        assert.matches("ridge: lambda must be a number >= 0 or \"cv\"",
                       errmsg(ls.stats.ridge, {lambda = -1}))
        assert.matches("ridge: lambda = \"cv\" with 5 inner folds needs at least 5 rows, got 3",
                       errmsg(ls.stats.ridge, X:narrow(1, 1, 3), y:narrow(1, 1, 3)))
        assert.matches("ols: 2 names for 3 features",
                       errmsg(ls.stats.ols, X, y, {names = {"a", "b"}}))
        local fit = ls.stats.ols(X, y)
        assert.matches("predict: the model has 3 features but X is %[4x2%]",
                       errmsg(fit.predict, fit, ls.zeros({4, 2}, {dtype = "f64"})))
        -- the position is the caller's
        local ok, err = pcall(function() ls.stats.ols(Xn, y) end)
        assert.is_false(ok)
        assert.matches("stats_models_spec.lua:%d+: ols:", err)
    end)
end)
