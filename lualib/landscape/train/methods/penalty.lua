--- landscape.train.methods.penalty: curvature penalties as training methods, ls.methods.grad_norm
-- and ls.methods.trace_penalty. Each step descends the penalised batch loss F; with exact = true
-- by the engine's higher-order autodiff, with exact = false by finite differences of gradients
-- (no second-order autodiff). docs/training.md has the formulas and costs.
--
--   ls.methods.grad_norm{lambda = 0.1, exact = true, r = 0.1, squared = false}
--     F = L + lambda ||grad L||        (squared = true: L + lambda ||grad L||^2)
--     exact: g = grad L with a graph, then grad F by a double backward (d = g + lambda H g/||g||)
--     exact = false: Zhao et al. (ICML 2022), one gradient more at the point r g/||g|| away:
--       g~ = grad L(w + r g/(||g|| + 1e-12)),  d = (1 - a) g + a g~,  a = lambda / r
--       (squared: d = g + (2 lambda (||g|| + 1e-12) / r) (g~ - g)); r = 0.1 and a = 0.8 is their
--       recipe (lambda = 0.08); a = 1 is SAM with rho = r
--   ls.methods.trace_penalty{lambda = 1e-3, probes = 1, exact = true, r = 0.1, seed = 1}
--     F = L + lambda (1/k) sum_j v_j' H v_j   (Hutchinson, k = probes Rademacher vectors v_j,
--                                              fresh every step)
--     exact: g with a graph, h_j = H v_j with a graph, s = sum <v_j, h_j>, then grad F: third
--       derivatives of L, one backward through all three graphs
--     exact = false: central differences of gradients, two more gradients per probe:
--       grad (v'Hv) ~ (grad L(w + s v) + grad L(w - s v) - 2 g) / s^2,  s = r / ||v||
--       (r is the length of the displacement; error O(r^2); in float32 the rounding of the
--       gradients is amplified by ||v||^2 / r^2)
--     The probes of step t (t counted from 1 by the method's state, so a resumed run draws the
--     same ones) are ls.rademacher({n}, {seed = util.subseed(seed, t, j)}), j = 1..k.
-- Every evaluation is of the same batch view: the same dropout masks, and only the first pass
-- moves the batch-norm running statistics. The optimizer's weight decay applies at w as usual.
local ls = require "landscape"
local util = require "landscape.util"
local C = require "landscape.train.methods.common"
local public, check_options = util.public, util.check_options

local M = {}

---------------------------------------------------------------------------------------------------
-- Gradient norm
---------------------------------------------------------------------------------------------------

local GradNorm = {}
GradNorm.__index = GradNorm
GradNorm.__name = "landscape.methods.GradNorm"

-- sum of squares of a list of tensors, recorded (0-d)
local function recorded_sqnorm(g)
    local s
    for _, t in ipairs(g) do
        local term = (t * t):sum()
        s = s and s + term or term
    end
    return s
end

function GradNorm:step(b)
    local lambda = self.lambda
    if self.exact then
        local loss, g = b:grad{create_graph = true}
        local sq = recorded_sqnorm(g)
        local F = loss + (self.squared and sq or sq:sqrt()) * lambda
        b:set_grad(ls.grad(F, b.params, {allow_unused = true}))
        return
    end
    local w = b.objective:snapshot()
    local _, g = b:grad()
    local n = C.norm(g) + 1e-12
    local g2 = C.grad_at(b, w, C.axpy(w, self.r / n, g))
    local d = {}
    if self.squared then
        local c = 2 * lambda * n / self.r
        for i = 1, #g do d[i] = g[i] + (g2[i] - g[i]) * c end
    else
        local a = lambda / self.r
        for i = 1, #g do d[i] = g[i] * (1 - a) + g2[i] * a end
    end
    b:set_grad(d)
end

function GradNorm:settings()
    return {method = "grad_norm", lambda = self.lambda, exact = self.exact,
            r = not self.exact and self.r or nil, squared = self.squared}
end

--- ls.methods.grad_norm{lambda = 0.1, exact = true, r = 0.1, squared = false} (header).
-- The gradient-norm penalty: trains on L + lambda ||grad L|| (squared: ||grad L||^2), the gradient
-- of the penalty exact by double backward or, with exact = false, Zhao et al.'s finite difference
-- with step r.
-- e.g. ls.train(model, train, {optimizer = opt, method = ls.methods.grad_norm{lambda = 0.1}})
M.grad_norm = public(function(opts)
    local who = "methods.grad_norm"
    opts = check_options(opts, {lambda = true, exact = true, r = true, squared = true}, who)
    return setmetatable({name = "grad_norm", lambda = C.number(opts.lambda, 0.1, who, "lambda"),
                         exact = C.boolean(opts.exact, true, who, "exact"),
                         r = C.number(opts.r, 0.1, who, "r", true),
                         squared = C.boolean(opts.squared, false, who, "squared")}, GradNorm)
end)

---------------------------------------------------------------------------------------------------
-- Hessian trace
---------------------------------------------------------------------------------------------------

local Trace = {}
Trace.__index = Trace
Trace.__name = "landscape.methods.TracePenalty"

function Trace:init(obj)
    self._dtype = C.dtype(obj, "methods.trace_penalty")
    return {step = 0}
end

-- The probes of step t: lists aligned with b.params, and ||v||^2 (= the number of parameters).
local function probes(self, b, t)
    local obj, out = b.objective, {}
    for j = 1, self.probes do
        local v = ls.rademacher({obj.n}, {seed = util.subseed(self.seed, t, j), dtype = self._dtype})
        out[j] = obj:split(v)
    end
    return out, obj.n
end

function Trace:step(b, _, state)
    state.step = state.step + 1
    local vs, vv = probes(self, b, state.step)
    local c = self.lambda / self.probes
    if self.exact then
        local loss, g = b:grad{create_graph = true}
        local s
        for _, v in ipairs(vs) do
            local gv
            for i, t in ipairs(g) do
                local term = (t * v[i]):sum()
                gv = gv and gv + term or term
            end
            local hv = ls.grad(gv, b.params, {create_graph = true, retain_graph = true,
                                              allow_unused = true})
            for i, h in ipairs(hv) do
                if h ~= nil then
                    local term = (h * v[i]):sum()
                    s = s and s + term or term
                end
            end
        end
        local F = s and loss + s * c or loss
        b:set_grad(ls.grad(F, b.params, {allow_unused = true}))
        return
    end
    local w = b.objective:snapshot()
    local _, g = b:grad()
    local step = self.r / math.sqrt(vv)
    local acc
    for _, v in ipairs(vs) do
        local gp = C.grad_at(b, w, C.axpy(w, step, v))
        local gm = C.grad_at(b, w, C.axpy(w, -step, v))
        for i = 1, #g do
            local t = gp[i] + gm[i]
            acc = acc or {}
            acc[i] = acc[i] and acc[i] + t or t
        end
    end
    local k2 = 2 * self.probes
    local scale = c / (step * step)
    local d = {}
    for i = 1, #g do d[i] = g[i] + (acc[i] - g[i] * k2) * scale end
    b:set_grad(d)
end

function Trace:settings()
    return {method = "trace_penalty", lambda = self.lambda, probes = self.probes,
            exact = self.exact, r = not self.exact and self.r or nil, seed = self.seed}
end

--- ls.methods.trace_penalty{lambda = 1e-3, probes = 1, exact = true, r = 0.1, seed = 1} (header).
-- The Hessian-trace penalty: trains on L + lambda tr(H), the trace by Hutchinson with `probes`
-- Rademacher probes per step, its gradient exact (third-order products) or, with exact = false, by
-- central differences with step r.
-- e.g. ls.train(model, train, {optimizer = opt, method = ls.methods.trace_penalty{lambda = 1e-3}})
M.trace_penalty = public(function(opts)
    local who = "methods.trace_penalty"
    opts = check_options(opts, {lambda = true, probes = true, exact = true, r = true, seed = true},
                         who)
    return setmetatable({name = "trace_penalty",
                         lambda = C.number(opts.lambda, 1e-3, who, "lambda"),
                         probes = util.posint(opts.probes or 1, who, "option 'probes'"),
                         exact = C.boolean(opts.exact, true, who, "exact"),
                         r = C.number(opts.r, 0.1, who, "r", true),
                         seed = util.integer(opts.seed or 1, who, "option 'seed'")}, Trace)
end)

return M
