--- landscape.sharpness: sharpness measures of a trained model, reached as ls.sharpness.
--
--   local s = ls.sharpness.worst_case(model, train, {rho = 0.05, p = 2, n = 1024})
--   print(s.value, s.loss, s.perturbed_loss)           -- plus every setting, flat (a CSV row)
--   ls.sharpness.keskar(model, train, {epsilon = 5e-4})   -- Keskar et al. 2017, in percent
--   ls.sharpness.average_case(model, train, {sigma = 0.01, samples = 20, seed = 1})
--   ls.sharpness.worst_case(model, train, {rho = 2e-3, p = math.huge, adaptive = true, m = 128})
--
-- Every measure takes an objective (ls.objective) or (model, data, opts) with the objective's
-- options (loss = "cross_entropy" | "mse" | fn, mode = "eval", batch = 1000, params = "all", n),
-- evaluates the loss at perturbed weights w + delta (delta over the objective's parameters) and
-- puts the model back exactly as it was (the objective's guard: parameters and buffers bit for
-- bit, mode, batch-norm freeze flags), also on error. Each returns one flat table: the value, the
-- unperturbed loss, and every setting used, so it can be written as a tidy CSV row.
-- docs/sharpness-landscape.md has the formulas and the references.
local ls = require "landscape"
local util = require "landscape.util"
local O = require "landscape.train.objective"
local fail, public, check_options, posint, posnum = util.fail, util.public, util.check_options,
    util.posint, util.posnum

local M = {}

---------------------------------------------------------------------------------------------------
-- The ascent (worst-case search). Perturbations are delta = c .* u with u in the p-ball of radius
-- rho (c = 1, |w| + adaptive_eta, or Keskar's eps (|w| + 1)). Ascent runs in u: the gradient in u
-- is c .* g; l2 steps along its normalised direction and projects onto the ball by scaling; linf
-- steps along its sign and clamps to [-rho, rho]. A step that does not raise the loss above the best
-- so far is rejected and halves the step (the search starts again from the best point), so the
-- reported maximum is the best loss actually evaluated. One loss-and-gradient evaluation per step.
---------------------------------------------------------------------------------------------------
local function ascend(obj, w0, c, rho, p, steps, eta)
    obj:set(w0, {})
    local g, L0 = obj:grad{flat = false}
    local u = {}
    for i, w in ipairs(w0) do u[i] = ls.zeros_like(w) end
    local best, evals, accepted = L0, 1, 0
    for _ = 1, steps do
        local gu = {}
        for i = 1, #g do gu[i] = g[i] * c[i] end
        local un
        if p == 2 then
            local nrm = O.norm(gu)
            if nrm == 0 then break end
            un = {}
            for i = 1, #u do un[i] = u[i] + gu[i] * (eta / nrm) end
            local r = O.norm(un)
            if r > rho then for i = 1, #un do un[i] = un[i] * (rho / r) end end
        else
            un = {}
            for i = 1, #u do un[i] = (u[i] + gu[i]:sign() * eta):clamp(-rho, rho) end
        end
        local delta = {}
        for i = 1, #un do delta[i] = un[i] * c[i] end
        obj:set(w0, {{1, delta}})
        local gn, L = obj:grad{flat = false}
        evals = evals + 1
        if L > best then
            u, best, g, accepted = un, L, gn, accepted + 1
        else
            eta = eta / 2
        end
    end
    obj:restore(w0)
    return L0, best, evals, accepted
end

local function scales(w0, kind, arg)
    return ls.no_grad(function()
        local c = {}
        for i, w in ipairs(w0) do
            if kind == "keskar" then
                c[i] = (w:abs() + 1) * arg
            elseif kind == "adaptive" then
                c[i] = w:abs() + arg
            else
                c[i] = ls.ones_like(w)
            end
        end
        return c
    end)
end

local function norm_p(p, who)
    if p == nil or p == 2 or p == "2" or p == "l2" then return 2 end
    if p == math.huge or p == "inf" or p == "linf" then return math.huge end
    fail("%s: option 'p' must be 2 or math.huge (\"inf\"), got %s", who, tostring(p))
end

local function setup(a, b, c, who, known)
    local obj, opts = O.resolve(who, a, b, c)
    opts = check_options(opts, known, who)
    local row = {n = obj.N, batch = obj.batch, mode = obj.mode, params = obj.params_label,
                 loss_fn = obj.loss, num_perturbed = obj.n}
    return obj, opts, row
end

-- Worst-case search on each chunk of m examples (or on all the data), averaged.
local function worst(obj, kind, karg, rho, p, steps, eta, m)
    local parts = {obj}
    if m then
        parts = {}
        for s = 1, obj.N, m do parts[#parts + 1] = obj:subset(s, math.min(m, obj.N - s + 1)) end
    end
    local w0 = obj:snapshot()
    local c = scales(w0, kind, karg)
    local sL0, sbest, evals, acc = 0.0, 0.0, 0, 0
    for _, part in ipairs(parts) do
        local L0, best, e, a = ascend(part, w0, c, rho, p, steps, eta)
        sL0, sbest, evals, acc = sL0 + L0, sbest + best, evals + e, acc + a
    end
    return sL0 / #parts, sbest / #parts, evals, acc, #parts
end

--- ls.sharpness.worst_case(model, data [, opts]) -> row
-- max over ||delta ./ c||_p <= rho of L(w + delta) - L(w), by projected (normalised-)gradient ascent
-- (Andriushchenko et al. 2023); with m, computed per chunk of m examples and averaged (m-sharpness).
-- opts:
--   rho = 0.05         radius
--   p = 2              2 or math.huge ("inf")
--   adaptive = false   c = |w| + adaptive_eta (ASAM-style, scale-invariant) instead of c = 1
--   adaptive_eta = 0   added to |w| (Andriushchenko et al. use 0; ASAM uses 0.01)
--   steps = 20         ascent steps (each one loss-and-gradient pass over the data)
--   step_size = 2      first step is step_size * rho (in u; halved on each rejected step)
--   m = nil            chunk size for m-sharpness (consecutive chunks, equal weights); nil: all data
--   and the objective's options (n, batch = 1000, loss, mode = "eval", params = "all": which
--   parameters are perturbed; train mode uses batch statistics with frozen running statistics)
-- row: value, loss (L(w)), perturbed_loss (max found), and every setting.
-- e.g. local r = ls.sharpness.worst_case(model, train, {rho = 0.05})
local function worst_case(a, b, c)
    local who = "worst_case"
    local obj, opts, row = setup(a, b, c, who, {rho = true, p = true, adaptive = true,
                                                adaptive_eta = true, steps = true,
                                                step_size = true, m = true})
    local rho = posnum(opts.rho or 0.05, who, "option 'rho'")
    local p = norm_p(opts.p, who)
    local steps = posint(opts.steps or 20, who, "option 'steps'")
    local step_size = posnum(opts.step_size or 2, who, "option 'step_size'")
    local m = opts.m and posint(opts.m, who, "option 'm'")
    local aeta = opts.adaptive_eta or 0
    if type(aeta) ~= "number" or aeta < 0 then
        fail("%s: option 'adaptive_eta' must be a number >= 0, got %s", who, tostring(aeta))
    end
    local L0, best, evals, acc, nparts = obj:guard(function()
        return worst(obj, opts.adaptive and "adaptive" or "plain", aeta, rho, p, steps,
                     step_size * rho, m)
    end, {params = true})
    row.measure = "worst_case"
    row.value, row.loss, row.perturbed_loss = best - L0, L0, best
    row.rho, row.p, row.adaptive = rho, p == 2 and "2" or "inf", opts.adaptive and true or false
    row.adaptive_eta, row.steps, row.step_size, row.m = aeta, steps, step_size, m or obj.N
    row.chunks, row.evaluations, row.accepted_steps = nparts, evals, acc
    return row
end
M.worst_case = public(worst_case)

--- ls.sharpness.keskar(model, data [, opts]) -> row
-- Keskar et al. (2017) epsilon-sharpness in the full space (A = I), in percent:
--   100 * (max_{|delta_i| <= eps (|w_i| + 1)} L(w + delta) - L(w)) / (1 + L(w)).
-- The box maximum is searched by projected sign-gradient ascent (the linf ascent above with
-- c = eps (|w| + 1), rho = 1), not L-BFGS-B as in the paper; the first step goes to the box corner
-- sign(g) (the maximiser of the linearised loss).
-- opts: epsilon = 5e-4, steps = 20, step_size = 2 (in units of the box half-width), m, and the
-- common ones (n, batch, loss, mode = "eval", params = "all").
-- e.g. local r = ls.sharpness.keskar(model, train, {epsilon = 1e-3})
local function keskar(a, b, c)
    local who = "keskar"
    local obj, opts, row = setup(a, b, c, who, {epsilon = true, steps = true, step_size = true,
                                                m = true})
    local eps = posnum(opts.epsilon or 5e-4, who, "option 'epsilon'")
    local steps = posint(opts.steps or 20, who, "option 'steps'")
    local step_size = posnum(opts.step_size or 2, who, "option 'step_size'")
    local m = opts.m and posint(opts.m, who, "option 'm'")
    local L0, best, evals, acc, nparts = obj:guard(function()
        return worst(obj, "keskar", eps, 1, math.huge, steps, step_size, m)
    end, {params = true})
    row.measure = "keskar"
    row.value = 100 * (best - L0) / (1 + L0)
    row.loss, row.perturbed_loss = L0, best
    row.epsilon, row.steps, row.step_size, row.m = eps, steps, step_size, m or obj.N
    row.chunks, row.evaluations, row.accepted_steps = nparts, evals, acc
    return row
end
M.keskar = public(keskar)

--- ls.sharpness.average_case(model, data [, opts]) -> row
-- mean over `samples` draws of L(w + delta) - L(w), delta = sigma * c .* z, z ~ N(0, I)
-- ("gaussian") or U[-1, 1] ("uniform"), c = 1 or |w| + adaptive_eta (adaptive).
-- opts: sigma = 0.01, samples = 10, seed = 1, distribution = "gaussian", adaptive = false,
-- adaptive_eta = 0, and the common ones. row: value, stderr (of the mean), loss, and the settings.
-- Draw k of parameter i comes from the stream util.subseed(seed, k, i).
-- e.g. local r = ls.sharpness.average_case(model, train, {sigma = 0.01, samples = 10})
local function average_case(a, b, c)
    local who = "average_case"
    local obj, opts, row = setup(a, b, c, who, {sigma = true, samples = true, seed = true,
                                                distribution = true, adaptive = true,
                                                adaptive_eta = true})
    local sigma = posnum(opts.sigma or 0.01, who, "option 'sigma'")
    local samples = posint(opts.samples or 10, who, "option 'samples'")
    local seed = util.integer(opts.seed or 1, who, "option 'seed'")
    local dist = opts.distribution or "gaussian"
    if dist ~= "gaussian" and dist ~= "uniform" then
        fail("%s: option 'distribution' must be \"gaussian\" or \"uniform\", got %s", who,
             tostring(dist))
    end
    local aeta = opts.adaptive_eta or 0
    local L0, mean, se = obj:guard(function()
        local w0 = obj:snapshot()
        local c = scales(w0, opts.adaptive and "adaptive" or "plain", aeta)
        local L0 = obj:value()
        local s, s2 = 0.0, 0.0
        for k = 1, samples do
            local delta = ls.no_grad(function()
                local out = {}
                for i, w in ipairs(w0) do
                    local z
                    if dist == "gaussian" then
                        z = ls.randn(w:size(), {seed = util.subseed(seed, k, i), dtype = w.dtype})
                    else
                        z = ls.rand(w:size(), {seed = util.subseed(seed, k, i), dtype = w.dtype,
                                                lo = -1, hi = 1})
                    end
                    out[i] = z * c[i] * sigma
                end
                return out
            end)
            obj:set(w0, {{1, delta}})
            local diff = obj:value() - L0
            s, s2 = s + diff, s2 + diff * diff
        end
        local mean = s / samples
        local var = samples > 1 and math.max(0, (s2 - samples * mean * mean) / (samples - 1)) or 0
        return L0, mean, math.sqrt(var / samples)
    end, {params = true})
    row.measure = "average_case"
    row.value, row.stderr, row.loss = mean, se, L0
    row.sigma, row.samples, row.seed, row.distribution = sigma, samples, seed, dist
    row.adaptive, row.adaptive_eta = opts.adaptive and true or false, aeta
    return row
end
M.average_case = public(average_case)

--- ls.sharpness.m_sharpness(model, data, opts): worst_case with opts.m required (default 128).
-- The worst-case sharpness averaged over disjoint batches of m examples (the m of SAM); options
-- as worst_case.
-- e.g. local r = ls.sharpness.m_sharpness(model, train, {m = 64, rho = 0.05})
M.m_sharpness = public(function(a, b, c)
    local o = {}
    local given = O.is_objective(a) and b or c
    if given ~= nil and type(given) ~= "table" then
        fail("m_sharpness: expected an options table, got %s", type(given))
    end
    for k, v in pairs(given or {}) do o[k] = v end
    o.m = o.m or 128
    local row
    if O.is_objective(a) then row = worst_case(a, o) else row = worst_case(a, b, o) end
    row.measure = "m_sharpness"
    return row
end)

return M
