--- landscape.analysis.operator: curvature estimators on a symmetric linear operator (the part of
-- ls.curvature that knows nothing of models; landscape.analysis.hessian builds model operators on it).
--
--   local cv = ls.curvature
--   local op = cv.operator{n = 10, dtype = "f64", matvec = function(v) return A:matmul(v) end}
--   local op = cv.dense(A)                   -- the same, with the product in C
--   op:eigs{k = 3, which = "largest"}        -- Lanczos, partial reorthogonalisation, thick restart
--   op:power{k = 1}                          -- PyHessian's deflated power iteration
--   op:trace{probes = 100, method = "hutch++"}
--   op:diag{probes = 100}
--   op:density{steps = 100, runs = 10}       -- stochastic Lanczos quadrature
--   op:moments{p = {1, 2, 3}}                -- SLQ estimates of tr(A^p) / n
--
-- The algorithms run in C (engine/curvature) in f64 whatever the operator dtype; every stochastic one
-- takes a seed (default 1) and is bit-for-bit repeatable for a fixed seed and thread count. Every
-- result records its settings. docs/curvature.md has the algorithms, references and defaults.
local ls = require "landscape"
local C = ls._curvature

local util = require "landscape.util"
local fail, public, check_options = util.fail, util.public, util.check_options

local M = {}

local Operator = {}
Operator.__index = Operator
Operator.__name = "landscape.curvature.Operator"
Operator._is_operator = true   -- also true for subclasses (landscape.hessian's model operators)

local function check_int(v, name, who, min)
    if math.type(v) ~= "integer" then
        if type(v) == "number" and v == math.floor(v) then return math.tointeger(v) end
        fail("%s: option '%s' must be an integer, got %s", who, name,
             type(v) == "number" and tostring(v) or type(v))
    end
    if min and v < min then fail("%s: option '%s' must be >= %d, got %d", who, name, min, v) end
    return v
end

local function check_num(v, name, who)
    if type(v) ~= "number" then fail("%s: option '%s' must be a number, got %s", who, name, type(v)) end
    return v
end

local function check_op(op, who)
    if type(op) ~= "table" or not op._is_operator then
        fail("%s: expected a curvature operator (ls.curvature.operator), got %s", who, type(op))
    end
end

-- The estimator methods: checked self and options, errors at the caller's line.
local function method(who, known, fn)
    return public(function(self, opts)
        check_op(self, who)
        return fn(self, check_options(opts, known, who))
    end)
end

--- An operator from a Lua matvec.
-- opts:
--   n       (required) size of the operator
--   dtype = "f64"      dtype of the vectors passed to and returned by matvec ("f32" or "f64")
--   matvec  (required) function(v) -> A v: v is a fresh 1-D tensor of length n; must return a 1-D
--           tensor of length n and the operator dtype. Errors it raises propagate unchanged.
--   name = "operator"  a label recorded in results
-- e.g. local A = ls.curvature.operator{n = 3, matvec = function(v) return v * 2 end}
local function new_operator(opts, cls)
    local who = "curvature.operator"
    if type(opts) ~= "table" then fail("%s: expected an options table {n = , matvec = }", who) end
    check_options(opts, {n = true, dtype = true, matvec = true, name = true}, who)
    local n = opts.n
    if math.type(n) ~= "integer" or n < 1 then
        fail("%s: 'n' must be a positive integer, got %s", who, tostring(n))
    end
    if type(opts.matvec) ~= "function" then
        fail("%s: 'matvec' must be a function, got %s", who, type(opts.matvec))
    end
    local dtype = opts.dtype or "f64"
    if dtype ~= "f32" and dtype ~= "f64" then
        fail("%s: 'dtype' must be \"f32\" or \"f64\", got %s", who, tostring(dtype))
    end
    return setmetatable({n = n, dtype = dtype, matvec = opts.matvec, _mv = opts.matvec,
                         name = opts.name or "operator"}, cls or Operator)
end
M.operator = public(new_operator)
-- For subclasses (model operators): an operator of class cls whose product is matvec.
M._new_operator = new_operator

--- An operator from a dense symmetric matrix A ([n x n], f32 or f64); the product runs in C.
-- Symmetry is not checked. op.matrix is A.
-- e.g. local A = ls.curvature.dense(ls.eye(4, {dtype = "f64"})); print(A:trace().estimate)
M.dense = public(function(A, opts)
    local who = "curvature.dense"
    if not ls.is_tensor(A) or A:dim() ~= 2 or A:size(1) ~= A:size(2) then
        fail("%s: expected a square matrix tensor", who)
    end
    local dtype = A:type()
    if dtype ~= "f32" and dtype ~= "f64" then
        fail("%s: matrix dtype must be f32 or f64, got %s", who, dtype)
    end
    opts = check_options(opts, {name = true}, who)
    return setmetatable({n = A:size(1), dtype = dtype, matrix = A, _mv = A,
                         matvec = function(v) return A:matmul(v) end,
                         name = opts.name or "dense"}, Operator)
end)

--- ls.curvature.is_operator(v) -> boolean
-- Whether v is a linear operator of ls.curvature (dense, operator, hessian, ggn, fisher).
-- e.g. ls.curvature.is_operator(ls.curvature.dense(ls.eye(3, {dtype = "f64"})))   --> true
M.Operator = Operator
function M.is_operator(x) return type(x) == "table" and x._is_operator == true end

--- Extreme eigenpairs by Lanczos with partial reorthogonalisation and thick restart.
-- opts:
--   k = 1              number of eigenpairs (1 <= k <= n)
--   which = "largest"  "largest" (algebraic; largest first), "smallest" (most negative first),
--                      "both" (ceil(k/2) largest, largest first, then floor(k/2) smallest, most
--                      negative first), "magnitude" (largest |lambda| first)
--   tol = 1e-6         converged when |beta_m s_{m,i}| <= tol * |theta_i| for every wanted pair
--   max_iter = min(n, 300)  cap on matvecs (= Lanczos steps)
--   ncv = max(2k + 1, 64)   basis size (capped at n): memory 8 n (ncv + 1) bytes; a full basis
--                      restarts from its k + (ncv - k) / 2 best Ritz vectors
--   seed = 1           Rademacher start vector
--   vectors = true     return eigenvectors (1-D tensors of the operator dtype, unit norm)
-- Returns {values, vectors, residuals, converged (all pairs), converged_each, iterations, matvecs,
-- k, which, tol, max_iter, seed, method = "lanczos"}. Not converging within max_iter is not an error.
-- e.g. local r = H:eigs{k = 3, which = "largest"}; print(r.values[1])
Operator.eigs = method("eigs", {k = true, which = true, tol = true, max_iter = true, seed = true,
                                 vectors = true, ncv = true}, function(self, opts)
    local k = check_int(opts.k or 1, "k", "eigs")
    local which = opts.which or "largest"
    local tol = check_num(opts.tol or 1e-6, "tol", "eigs")
    local max_iter = check_int(opts.max_iter or math.min(self.n, 300), "max_iter", "eigs", 1)
    local seed = check_int(opts.seed or 1, "seed", "eigs")
    local want = opts.vectors ~= false
    local ncv = opts.ncv and check_int(opts.ncv, "ncv", "eigs", 1) or 0
    local values, vectors, iters, matvecs, conv, res, all =
        C.eigs(self.n, self.dtype, self._mv, k, which, tol, max_iter, seed, want, ncv)
    return {values = values, vectors = vectors, residuals = res, converged = all,
            converged_each = conv, iterations = iters, matvecs = matvecs, k = k, which = which,
            tol = tol, max_iter = max_iter, seed = seed, method = "lanczos"}
end)

--- PyHessian-compatible power iteration with deflation (eigenvalues(maxIter, tol, top_n)).
-- opts: k = 1, max_iter = 100 (per eigenpair), tol = 1e-3 (relative change of the Rayleigh quotient,
-- PyHessian's rule), seed = 1 (normal start vectors). Values in the order found: largest |lambda|
-- first, sign kept. Returns the same fields as eigs with method = "power".
-- e.g. local r = H:power{k = 1, max_iter = 100}
Operator.power = method("power", {k = true, max_iter = true, tol = true, seed = true},
                        function(self, opts)
    local k = check_int(opts.k or 1, "k", "power")
    local max_iter = check_int(opts.max_iter or 100, "max_iter", "power", 1)
    local tol = check_num(opts.tol or 1e-3, "tol", "power")
    local seed = check_int(opts.seed or 1, "seed", "power")
    local values, vectors, iters, matvecs, conv, res, all =
        C.power(self.n, self.dtype, self._mv, k, max_iter, tol, seed)
    return {values = values, vectors = vectors, residuals = res, converged = all,
            converged_each = conv, iterations = iters, matvecs = matvecs, k = k, tol = tol,
            max_iter = max_iter, seed = seed, method = "power"}
end)

--- Stochastic trace estimate.
-- opts: probes = 100 (matvecs), seed = 1, method = "hutchinson" | "hutch++".
-- Returns {estimate, stderr, probes, method, seed, sketch}. stderr: sample standard deviation
-- (n - 1 denominator) of the Hutchinson samples / sqrt(#samples); for Hutch++ that of its residual
-- Hutchinson part (probes - 2 * floor(probes / 3) samples), sketch = floor(probes / 3).
-- e.g. local r = H:trace{probes = 100, method = "hutch++"}; print(r.estimate, r.stderr)
Operator.trace = method("trace", {probes = true, seed = true, method = true}, function(self, opts)
    local probes = check_int(opts.probes or 100, "probes", "trace")
    local seed = check_int(opts.seed or 1, "seed", "trace")
    local method = opts.method or "hutchinson"
    local est, se, used, sketch = C.trace(self.n, self.dtype, self._mv, method, probes, seed)
    return {estimate = est, stderr = se, probes = used, method = method, seed = seed, sketch = sketch}
end)

--- Diagonal estimate (Bekas et al.): mean of z .* A z over Rademacher probes.
-- opts: probes = 100, seed = 1. Returns {estimate = tensor, stderr = tensor (per entry), probes, seed}.
-- e.g. local d = H:diag{probes = 50}
Operator.diag = method("diag", {probes = true, seed = true}, function(self, opts)
    local probes = check_int(opts.probes or 100, "probes", "diag")
    local seed = check_int(opts.seed or 1, "seed", "diag")
    local est, se = C.diag(self.n, self.dtype, self._mv, probes, seed)
    return {estimate = est, stderr = se, probes = probes, seed = seed, method = "hutchinson-diag"}
end)

local function density_rows(d)
    local rows = {}
    local g, y = d.grid:totable(), d.density:totable()
    for i = 1, #g do
        rows[i] = {x = g[i], density = y[i], steps = d.steps, runs = d.runs, seed = d.seed,
                   sigma = d.sigma, operator = d.operator}
    end
    return rows
end

--- Spectral density by stochastic Lanczos quadrature (Ubaru et al. 2017).
-- opts:
--   steps = 100   Lanczos steps per run (capped at n), full reorthogonalisation
--   runs = 10     independent Rademacher start vectors
--   seed = 1      run r uses the Philox stream of `seed` at counter offset (r - 1) * n
--   sigma         standard deviation of the Gaussian kernel. Default: (max node - min node) / steps,
--                 or 1e-3 * max(1, |node|) when all nodes coincide. "pyhessian": PyHessian's kernel,
--                 variance 1e-5 * max(1, lambda_max - lambda_min) (PyHessian's range).
--   grid = 1000   number of grid points on [min node - 5 sigma, max node + 5 sigma], or a 1-D tensor
-- Returns {grid, density (tensors, f64), nodes, weights (per run: lists; each run's weights sum to 1),
-- sigma, steps, runs, seed, matvecs, rows = function() -> tidy rows {x, density, steps, runs, seed,
-- sigma, operator}}. density(x) = mean over runs of sum_j w_j N(x; theta_j, sigma^2); not renormalised.
-- e.g. local dens = H:density{steps = 80, runs = 10}
Operator.density = method("density", {steps = true, runs = true, seed = true, sigma = true,
                                       grid = true}, function(self, opts)
    local steps = check_int(opts.steps or 100, "steps", "density", 1)
    local runs = check_int(opts.runs or 10, "runs", "density", 1)
    local seed = check_int(opts.seed or 1, "seed", "density")
    local nodes, weights, matvecs = C.slq(self.n, self.dtype, self._mv, steps, runs, seed)
    local lo, hi = math.huge, -math.huge
    local sum_lo, sum_hi = 0, 0
    for r = 1, #nodes do
        local rlo, rhi = math.huge, -math.huge
        for _, x in ipairs(nodes[r]) do
            rlo, rhi = math.min(rlo, x), math.max(rhi, x)
        end
        lo, hi = math.min(lo, rlo), math.max(hi, rhi)
        sum_lo, sum_hi = sum_lo + rlo, sum_hi + rhi
    end
    local sigma = opts.sigma
    local sigma_rule
    if sigma == nil then
        sigma_rule = "range/steps"
        sigma = (hi - lo) / math.min(steps, self.n)
        if not (sigma > 0) then sigma = 1e-3 * math.max(1, math.abs(hi)) end
    elseif sigma == "pyhessian" then
        sigma_rule = "pyhessian"
        local pmax, pmin = sum_hi / #nodes + 0.01, sum_lo / #nodes - 0.01
        sigma = math.sqrt(1e-5 * math.max(1, pmax - pmin))
    else
        sigma_rule = "given"
        check_num(sigma, "sigma", "density")
        if not (sigma > 0) then fail("density: option 'sigma' must be > 0") end
    end
    local grid = opts.grid or 1000
    if not ls.is_tensor(grid) then
        local npts = check_int(grid, "grid", "density", 2)
        local a, b = lo - 5 * sigma, hi + 5 * sigma
        local t = {}
        for i = 1, npts do t[i] = a + (b - a) * (i - 1) / (npts - 1) end
        grid = ls.tensor(t, {dtype = "f64"})
    end
    local dens = C.density(nodes, weights, sigma, grid)
    local d = {grid = grid, density = dens, nodes = nodes, weights = weights, sigma = sigma,
               sigma_rule = sigma_rule, steps = math.min(steps, self.n), runs = runs, seed = seed,
               matvecs = matvecs, operator = self.name, method = "slq"}
    d.rows = function() return density_rows(d) end
    return d
end)

--- SLQ estimates of tr(A^p) / n. opts: p = {1, 2, 3} (list or a single integer), steps = 20, runs = 10,
-- seed = 1. Returns {moments = {[p] = estimate}, stderr = {[p] = se over runs}, steps, runs, seed}.
-- With steps >= ceil((p + 1) / 2) the quadrature is exact for x^p per run, so the error is purely
-- statistical (that of Hutchinson with normalised Rademacher probes).
-- e.g. local m = H:moments{p = {1, 2}}
Operator.moments = method("moments", {p = true, steps = true, runs = true, seed = true},
                          function(self, opts)
    local ps = opts.p or {1, 2, 3}
    if type(ps) == "number" then ps = {ps} end
    local steps = check_int(opts.steps or 20, "steps", "moments", 1)
    local runs = check_int(opts.runs or 10, "runs", "moments", 1)
    local seed = check_int(opts.seed or 1, "seed", "moments")
    local nodes, weights, matvecs = C.slq(self.n, self.dtype, self._mv, steps, runs, seed)
    local out, se = {}, {}
    for _, p in ipairs(ps) do
        p = check_int(p, "p", "moments", 0)
        local s, s2 = 0, 0
        for r = 1, runs do
            local m = 0
            for j, x in ipairs(nodes[r]) do m = m + weights[r][j] * x ^ p end
            s, s2 = s + m, s2 + m * m
        end
        local mean = s / runs
        out[p] = mean
        se[p] = runs > 1 and math.sqrt(math.max(0, (s2 / runs - mean * mean) / (runs - 1))) or 0
    end
    return {moments = out, stderr = se, steps = math.min(steps, self.n), runs = runs, seed = seed,
            matvecs = matvecs, method = "slq"}
end)

return M
