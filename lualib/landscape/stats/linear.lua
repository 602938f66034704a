--- landscape.stats.linear: linear models (part of ls.stats). The fits run in C over LAPACK
-- (engine/stats/lm.c); docs/stats.md has the formulas.
--
--   local fit = ls.stats.ols(X, y, {standardize = true})     -- X [n x p] or a list of rows, y [n]
--   print(fit.r2, fit.adj_r2, fit.coef, fit.stderr); fit:predict(X2); print(fit)
--   local fit = ls.stats.ridge(X, y, {lambda = "cv"})        -- lambda by inner k-fold CV
--   local model = ls.stats.ridge{lambda = "cv"}              -- a model specification, no data yet:
--   model:fit(X, y)                                          -- what cross_validate takes
--
-- Options of ols (all optional):
--   intercept   = true    fit an unpenalised intercept (features and y are centred on the rows
--                         fitted)
--   standardize = false   divide each feature by its population sd on the rows fitted (a constant
--                         column keeps scale 1); coef and stderr are then per sd of the feature
--   names       = nil     feature names, for printing (default x1, x2, ...)
--   rcond       = nil     singular values <= rcond * s_max count as zero (default max(n, p) * eps)
-- ridge takes the same, with standardize = true by default (a penalty on unscaled features is
-- rarely meant), and
--   lambda      = "cv"    the penalty (a number >= 0) or "cv": chosen by inner k-fold CV, the
--                         smallest mean squared error over the grid (the largest lambda on ties)
--   lambdas     = nil     the grid for "cv" (numbers > 0); default 33 values 10^-6 .. 10^2 times
--                         ||A||_F^2 / p of the design A the solver sees (times n when standardised)
--   inner_folds = 5       folds of the inner CV
--   seed        = 1       seed of the inner folds (inside cross_validate each outer fold derives
--                         its own)
--
-- A fit has: n, p, kind, rank (of the centred design over the p features), rank_deficient,
-- aliased (1-based columns touching the null space), coef, stderr (Tensors [p], on the solver's
-- scale), intercept, intercept_stderr, coef_raw, stderr_raw, intercept_raw, intercept_raw_stderr
-- (on the features as given), mean, scale (Tensors [p]), lambda, edf, df_model, df_resid, rss, tss,
-- r2, adj_r2, rmse, mae, sigma, and cv = {lambdas, mse} when lambda was chosen by CV. Standard
-- errors are NaN when the design is rank deficient, when df_resid <= 0, and for ridge.
-- Methods: fit:predict(X) -> Tensor [n]; fit:score(X, y) -> {n, r2, rmse, mae, bias, kendall_tau,
-- spearman, pred} (R² about the mean of this y); fit:summary() (also tostring(fit)).
local ls = require "landscape"
local util = require "landscape.util"
local args = require "landscape.stats.args"

local fail, public = util.fail, util.public
local K = ls._stats

local M = {}

local COMMON = {intercept = true, standardize = true, names = true, rcond = true}
local RIDGE = {lambda = true, lambdas = true, inner_folds = true, seed = true}
for k in pairs(COMMON) do RIDGE[k] = true end

local Spec = {}
Spec.__index = Spec
Spec.__name = "landscape.stats.Model"

local Fit = {}
Fit.__index = Fit
Fit.__name = "landscape.stats.Fit"

local function check_type(opts, key, ty, who)
    local v = opts[key]
    if v ~= nil and type(v) ~= ty then
        fail("%s: option '%s' must be a %s, got %s", who, key, ty, type(v))
    end
end

-- A model specification from options: a flat table that the C kernels read as their spec.
local function make_spec(kind, opts, who)
    opts = util.check_options(opts, kind == "ols" and COMMON or RIDGE, who)
    check_type(opts, "intercept", "boolean", who)
    check_type(opts, "standardize", "boolean", who)
    check_type(opts, "rcond", "number", who)
    local s = setmetatable({kind = kind, who = who}, Spec)
    s.intercept = opts.intercept ~= false
    s.standardize = opts.standardize
    if s.standardize == nil then s.standardize = kind == "ridge" end
    s.rcond = opts.rcond
    if opts.names ~= nil then
        if type(opts.names) ~= "table" then
            fail("%s: option 'names' must be a list of strings", who)
        end
        for i, n in ipairs(opts.names) do
            if type(n) ~= "string" then
                fail("%s: names[%d] is a %s, not a string", who, i, type(n))
            end
        end
        s.names = opts.names
    end
    if kind == "ridge" then
        local lambda = opts.lambda
        if lambda == nil then lambda = "cv" end
        local ok = type(lambda) == "number" and lambda >= 0 and lambda < math.huge
        if lambda ~= "cv" and not ok then
            fail("%s: lambda must be a number >= 0 or \"cv\", got %s", who, tostring(lambda))
        end
        s.lambda = lambda
        if opts.lambdas ~= nil then
            if type(opts.lambdas) ~= "table" or #opts.lambdas == 0 then
                fail("%s: option 'lambdas' must be a non-empty list of numbers > 0", who)
            end
            for i, v in ipairs(opts.lambdas) do
                if type(v) ~= "number" or not (v > 0 and v < math.huge) then
                    fail("%s: lambdas[%d] must be a number > 0, got %s", who, i, tostring(v))
                end
            end
            if lambda ~= "cv" then fail("%s: 'lambdas' is the grid of lambda = \"cv\"", who) end
            s.lambdas = opts.lambdas
        end
        s.inner_folds = args.int(opts, "inner_folds", 5, 2, who)
        s.seed = args.int(opts, "seed", 1, 0, who)
    end
    return s
end

--- spec:with(changes) -> a copy with some fields replaced (cross_validate derives inner seeds).
function Spec:with(changes)
    local c = setmetatable({}, Spec)
    for k, v in pairs(self) do c[k] = v end
    for k, v in pairs(changes) do c[k] = v end
    return c
end

function Spec:__tostring()
    local parts = {}
    if self.kind == "ridge" then
        parts[#parts + 1] = "lambda = " .. (self.lambda == "cv" and '"cv"' or args.fmt(self.lambda))
    end
    if not self.intercept then parts[#parts + 1] = "intercept = false" end
    if self.standardize ~= (self.kind == "ridge") then
        parts[#parts + 1] = "standardize = " .. tostring(self.standardize)
    end
    return self.kind .. "{" .. table.concat(parts, ", ") .. "}"
end

local function fit_with(spec, X, y, who)
    X = args.matrix(X, who, "X")
    y = args.vector(y, who, "y")
    local p = X:size(2)
    if spec.names and #spec.names ~= p then
        fail("%s: %d names for %d features", who, #spec.names, p)
    end
    local f = K.lm_fit(X, y, spec, who)
    f.spec = spec
    f.names = spec.names
    f.rank_deficient = f.rank < p
    f.stderr, f.coef_se = f.coef_se, nil
    f.stderr_raw, f.coef_raw_se = f.coef_raw_se, nil
    f.intercept_stderr, f.intercept_se = f.intercept_se, nil
    f.intercept_raw_stderr, f.intercept_raw_se = f.intercept_raw_se, nil
    return setmetatable(f, Fit)
end

--- model:fit(X, y) -> a fit.
Spec.fit = public(function(self, X, y) return fit_with(self, X, y, self.kind) end)

-- ols(X, y [, opts]) fits; ols([opts]) returns a model specification.
local function entry(kind)
    return public(function(X, y, opts)
        local is_data = ls.is_tensor(X) or (type(X) == "table" and X[1] ~= nil)
        if not is_data then
            if y ~= nil then fail("%s: expected (X, y [, options]) or ([options])", kind) end
            return make_spec(kind, X, kind)
        end
        return fit_with(make_spec(kind, opts, kind), X, y, kind)
    end)
end

--- ls.stats.ols(X, y [, opts]) -> fit, or ls.stats.ols([opts]) -> model. See the header.
-- Ordinary least squares over LAPACK (QR or SVD when rank deficient), with standard errors, R²
-- and adjusted R²; without data, the model specification cross_validate takes.
-- e.g. local fit = ls.stats.ols(X, y, {standardize = true}); print(fit)
M.ols = entry("ols")
--- ls.stats.ridge(X, y [, opts]) -> fit, or ls.stats.ridge([opts]) -> model. See the header.
-- Ridge regression with an unpenalised intercept, lambda given or chosen by inner k-fold CV;
-- without data, a model specification.
-- e.g. local fit = ls.stats.ridge(X, y, {lambda = "cv"}); print(fit.lambda)
M.ridge = entry("ridge")

--- ls.stats.is_model(v): whether v is a model specification (ols{...} or ridge{...}).
-- Whether v is a model specification (ls.stats.ols{...} or ls.stats.ridge{...}).
-- e.g. ls.stats.is_model(ls.stats.ols())   --> true
function M.is_model(v) return getmetatable(v) == Spec end

--- fit:predict(X) -> Tensor f64 [n].
-- The fitted model's predictions for the rows of X (the features as given to the fit).
-- e.g. local pred = fit:predict(X)
Fit.predict = public(function(self, X)
    X = args.matrix(X, "predict", "X")
    return K.lm_predict(X, self.coef, self.mean, self.scale, self.offset, "predict")
end)

--- Scores of predictions against targets: {n, r2, rmse, mae, bias, kendall_tau, spearman}.
-- R² is 1 - SS_res / SS_tot about the mean of y (NaN when y is constant).
function M.scores_of(y, pred, who)
    local r2, rmse, mae, bias = K.scores(y, pred, who)
    return {n = y:size(1), r2 = r2, rmse = rmse, mae = mae, bias = bias,
            kendall_tau = K.kendall(pred, y, "b", who), spearman = K.spearman(pred, y, who)}
end

--- fit:score(X, y) -> scores on (X, y) plus pred, the predictions.
-- R², RMSE, MAE, bias and rank correlations of the predictions for X against y (R² about the
-- mean of this y).
-- e.g. print(fit:score(X_test, y_test).r2)
Fit.score = public(function(self, X, y)
    X = args.matrix(X, "score", "X")
    y = args.vector(y, "score", "y")
    if X:size(1) ~= y:size(1) then
        fail("score: X has %d rows but y has %d", X:size(1), y:size(1))
    end
    local pred = K.lm_predict(X, self.coef, self.mean, self.scale, self.offset, "score")
    local s = M.scores_of(y, pred, "score")
    s.pred = pred
    return s
end)

--- fit:summary() -> a printable table of the coefficients and the fit statistics.
-- A printable table of the coefficients, standard errors and t values, with R² and the residual
-- sd (also tostring(fit)).
-- e.g. print(fit:summary())
function Fit:summary()
    local f = args.fmt
    local lines = {}
    local head = string.format("%s (%s), n = %d, p = %d, rank %d%s", tostring(self.spec),
                               self.has_intercept and "with intercept" or "no intercept", self.n,
                               self.p, self.rank, self.rank_deficient and " (RANK DEFICIENT)" or "")
    lines[1] = head
    if self.kind == "ridge" then
        lines[#lines + 1] = string.format("lambda = %s, effective df = %s%s", f(self.lambda),
                                          f(self.edf), self.cv and " (chosen by inner CV)" or "")
    end
    lines[#lines + 1] = string.format("R2 = %s, adjusted R2 = %s, RMSE = %s, MAE = %s, sigma = %s",
                                      f(self.r2), f(self.adj_r2), f(self.rmse), f(self.mae),
                                      f(self.sigma))
    local aliased = {}
    for _, j in ipairs(self.aliased) do aliased[j] = true end
    local raw = self.standardize
    lines[#lines + 1] = string.format("%-16s %12s %12s %9s%s", "term", "coef", "stderr", "t",
                                      raw and string.format(" %12s", "coef_raw") or "")
    local function row(name, c, se, cr, note)
        lines[#lines + 1] = string.format("%-16s %12s %12s %9s%s%s", name, f(c, "%.6g"),
                                          f(se, "%.4g"), f(c / se, "%.3f"),
                                          raw and string.format(" %12s", f(cr, "%.6g")) or "",
                                          note or "")
    end
    if self.has_intercept then
        row("(intercept)", self.intercept, self.intercept_stderr, self.intercept_raw)
    end
    for j = 1, self.p do
        local name = self.names and self.names[j] or ("x" .. j)
        row(name, self.coef[j], self.stderr[j], self.coef_raw[j], aliased[j] and "  aliased" or nil)
    end
    return table.concat(lines, "\n")
end

Fit.__tostring = Fit.summary

return M
