--- landscape.stats (ls.stats): statistics for studies. One table gathering its parts:
--
--   describe.lua  quantile, percentile, mean, var, sd, skewness, kurtosis, iqr, fences, summary,
--                 resolve, STATS, SETS               (descriptive statistics of 1-D samples)
--   linear.lua    ols, ridge, is_model                (linear models in C over LAPACK; fits, specs)
--   cv.lua        cross_validate, transfer, permutation_test, bootstrap
--   rank.lua      kendall_tau, spearman, pearson, rank, granulated_tau
--   and here      scores, r2, rmse, mae               (predictions against targets)
--
-- Each part's header documents its functions and options; docs/stats.md has the formulas, the
-- oracles the tests compare against, and timings. Column tables (read a study's CSV, select,
-- filter, group, matrix) are ls.table.
local ls = require "landscape"
local util = require "landscape.util"
local args = require "landscape.stats.args"

local M = {}

for _, part in ipairs({"describe", "linear", "cv", "rank"}) do
    for k, v in pairs(require("landscape.stats." .. part)) do
        assert(M[k] == nil, "landscape.stats: two parts define " .. k)
        M[k] = v
    end
end
M.scores_of = nil   -- internal to linear/cv

local function pair(y, pred, who)
    y = args.vector(y, who, "y")
    pred = args.vector(pred, who, "pred")
    return y, pred
end

--- ls.stats.scores(y, pred) -> {n, r2, rmse, mae, bias, kendall_tau, spearman}: predictions against
-- targets; r2 = 1 - SS_res / SS_tot about the mean of y (NaN when y is constant), bias =
-- mean(pred - y), kendall_tau (tau-b) and spearman of pred against y.
-- e.g. local s = ls.stats.scores(y, fit:predict(X)); print(s.r2, s.spearman)
M.scores = util.public(function(y, pred)
    y, pred = pair(y, pred, "scores")
    return require("landscape.stats.linear").scores_of(y, pred, "scores")
end)

--- ls.stats.r2(y, pred), ls.stats.rmse(y, pred), ls.stats.mae(y, pred)
-- R² = 1 - SS_res / SS_tot of predictions against targets (about the mean of y); NaN when y is
-- constant.
-- e.g. ls.stats.r2({1, 2, 3}, {1, 2, 4})   --> 0.5
M.r2 = util.public(function(y, pred)
    y, pred = pair(y, pred, "r2")
    return (ls._stats.scores(y, pred, "r2"))
end)

--- ls.stats.rmse(y, pred) -> number
-- The root mean squared error of predictions against targets.
-- e.g. ls.stats.rmse({1, 2, 3}, {1, 2, 4})
M.rmse = util.public(function(y, pred)
    y, pred = pair(y, pred, "rmse")
    return select(2, ls._stats.scores(y, pred, "rmse"))
end)

--- ls.stats.mae(y, pred) -> number
-- The mean absolute error of predictions against targets.
-- e.g. ls.stats.mae({1, 2, 3}, {1, 2, 4})
M.mae = util.public(function(y, pred)
    y, pred = pair(y, pred, "mae")
    return select(3, ls._stats.scores(y, pred, "mae"))
end)

return M
