--- landscape.analysis.curvature (ls.curvature): the curvature front. Estimators on any symmetric
-- linear operator (landscape.analysis.operator: operator, dense, and the methods eigs, power, trace,
-- diag, density, moments) and the operators of a model on data (landscape.analysis.hessian:
-- hessian, ggn, fisher, grad_norm), in one table. docs/curvature.md and docs/hessian.md.
local M = {}
local operator = require "landscape.analysis.operator"
local hessian = require "landscape.analysis.hessian"
for _, part in ipairs({operator, hessian}) do
    for k, v in pairs(part) do M[k] = v end
end
return M
