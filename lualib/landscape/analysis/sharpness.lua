--- landscape.sharpness: sharpness measures of a trained model, reached as ls.sharpness.
--
--   local s = ls.sharpness.worst_case(model, train, {rho = 0.05, p = 2, n = 1024})
--   print(s.value, s.loss, s.perturbed_loss)           -- plus every setting, flat (a CSV row)
--   ls.sharpness.keskar(model, train, {epsilon = 5e-4})   -- Keskar et al. 2017, in percent
--   ls.sharpness.average_case(model, train, {sigma = 0.01, samples = 20, seed = 1})
--   ls.sharpness.worst_case(model, train, {rho = 2e-3, p = math.huge, adaptive = true, m = 128})
--
-- Every measure evaluates the loss at perturbed weights w + delta and puts the model back exactly
-- as it was (parameters and buffers bit for bit, mode, batch-norm freeze flags), also on error.
-- Each returns one flat table: the value, the unperturbed loss, and every setting used, so it can
-- be written as a tidy CSV row. docs/sharpness-landscape.md has the formulas and the references.
--
-- The helpers under M.util (data handling, parameter selection, perturbation, loss and gradient
-- over a data set) are shared with landscape.landscape.
local ls = require "landscape"

local M = {}
local U = {}
M.util = U

---------------------------------------------------------------------------------------------------
-- Errors: raised without a position inside, re-raised at the caller's line by `public`.
---------------------------------------------------------------------------------------------------
local util = require "landscape.util"
local fail, public, shape_str = util.fail, util.public, util.shape_str
U.fail, U.public, U.check_options = fail, public, util.check_options

function U.posint(v, key, who)
    if math.type(v) ~= "integer" or v < 1 then
        fail("%s: option '%s' must be a positive integer, got %s", who, key, tostring(v))
    end
    return v
end

function U.posnum(v, key, who)
    if type(v) ~= "number" or not (v > 0) then
        fail("%s: option '%s' must be a positive number, got %s", who, key, tostring(v))
    end
    return v
end

U.shape_str = shape_str

---------------------------------------------------------------------------------------------------
-- Data: a Dataset or a table {x = [N, ...], y = [N, ...]} (y may be float targets for a custom
-- loss). Batches are consecutive narrow() views, in order.
---------------------------------------------------------------------------------------------------
function U.as_data(d, n, who)
    if type(d) ~= "table" or not ls.is_tensor(d.x) or not ls.is_tensor(d.y) then
        fail("%s: data must be a dataset or a table {x = tensor, y = tensor}, got %s", who,
             type(d) == "table" and "a table without x and y tensors" or type(d))
    end
    local N = d.x:size(1)
    if d.y:size(1) ~= N then
        fail("%s: data has %d inputs (x %s) but %d targets (y %s)", who, N, shape_str(d.x),
             d.y:size(1), shape_str(d.y))
    end
    if N == 0 then fail("%s: empty data set", who) end
    if n ~= nil then
        U.posint(n, "n", who)
        if n < N then return {x = d.x:narrow(1, 1, n), y = d.y:narrow(1, 1, n), n = n} end
    end
    return {x = d.x, y = d.y, n = N}
end

-- The chunks of size m (the last one may be smaller), as data tables.
function U.chunks(d, m)
    local out = {}
    for s = 1, d.n, m do
        local len = math.min(m, d.n - s + 1)
        out[#out + 1] = {x = d.x:narrow(1, s, len), y = d.y:narrow(1, s, len), n = len}
    end
    return out
end

local function forward(model, x)
    if type(model) == "table" and type(model.forward) == "function" then return model:forward(x) end
    return model(x)
end
U.forward = forward

-- loss option -> (fn(logits, y) returning the SUM of the batch's losses as a 0-d tensor, name).
-- "cross_entropy" (default) sums exactly as ls.evaluate does, so the same batches give the same bits.
function U.loss_fn(loss, who)
    if loss == nil or loss == "cross_entropy" then
        return function(logits, y) return ls.cross_entropy(logits, y, "sum") end, "cross_entropy"
    end
    if loss == "mse" then
        return function(out, y) return ls.mse_loss(out, y, "sum") / (out:numel() / out:size(1)) end,
               "mse"
    end
    if type(loss) == "function" then
        return function(logits, y) return loss(logits, y) * logits:size(1) end, "custom"
    end
    fail("%s: option 'loss' must be \"cross_entropy\", \"mse\" or a function(output, y) returning " ..
         "the batch mean, got %s", who, tostring(loss))
end

-- Mean loss (and accuracy when y holds labels and the output is [B x C]) over d, no graph.
function U.eval_loss(model, d, lossf, batch)
    return ls.no_grad(function()
        local total, hits, labels = 0.0, 0, d.y.dtype == "i64"
        for s = 1, d.n, batch do
            local len = math.min(batch, d.n - s + 1)
            local xb, yb = d.x:narrow(1, s, len), d.y:narrow(1, s, len)
            local out = forward(model, xb)
            total = total + lossf(out, yb):item()
            if labels and out:dim() == 2 then
                hits = hits + math.tointeger(out:argmax(2):double():eq(yb:double()):sum():item())
            else
                labels = false
            end
        end
        return total / d.n, labels and hits / d.n or nil
    end)
end

-- Mean loss and its gradient w.r.t. the tensors in `ts` (a list), summed over batches.
function U.loss_grad(model, d, lossf, batch, ts)
    local total, g = 0.0, nil
    for s = 1, d.n, batch do
        local len = math.min(batch, d.n - s + 1)
        local xb, yb = d.x:narrow(1, s, len), d.y:narrow(1, s, len)
        local l = lossf(forward(model, xb), yb) / d.n
        local gb = ls.grad(l, ts, {allow_unused = true})
        total = total + l:item()
        if g == nil then
            g = {}
            for i, t in ipairs(ts) do g[i] = gb[i] or ls.zeros_like(t) end
        else
            for i = 1, #ts do if gb[i] then g[i] = g[i] + gb[i] end end
        end
    end
    return total, g
end

---------------------------------------------------------------------------------------------------
-- Parameters: the list {name, t (the parameter), mtype (its module's type), bn (in a batch norm)}
-- in state-dict order. spec: nil or "all"; "weights" (ndim > 1: no biases, no batch norm); "no_bn";
-- a Lua pattern or a list of patterns matched against the names; or a function(name, t, mtype).
---------------------------------------------------------------------------------------------------
local function collect(model)
    local out = {}
    local function walk(m, prefix)
        for _, n in ipairs(m._params or {}) do
            local t = m[n]
            out[#out + 1] = {name = prefix .. n, t = t, mtype = m._type,
                             bn = m.running_mean ~= nil or (m._type or ""):find("BatchNorm") ~= nil}
        end
        for _, c in ipairs(m._children or {}) do walk(c[2], prefix .. c[1] .. ".") end
    end
    if type(model) == "table" and model._params then
        walk(model, "")
    elseif type(model) == "table" and type(model.parameters) == "function" then
        for i, t in ipairs(model:parameters()) do out[i] = {name = tostring(i), t = t} end
    else
        fail("model must be an ls.nn module or have a parameters() method")
    end
    return out
end

function U.select_params(model, spec, who)
    local all = collect(model)
    local keep
    if spec == nil or spec == "all" then
        keep = function() return true end
    elseif spec == "weights" then
        keep = function(e) return e.t:dim() > 1 end
    elseif spec == "no_bn" then
        keep = function(e) return not e.bn end
    elseif type(spec) == "string" then
        keep = function(e) return e.name:find(spec) ~= nil end
    elseif type(spec) == "table" then
        keep = function(e)
            for _, p in ipairs(spec) do if e.name:find(p) then return true end end
            return false
        end
    elseif type(spec) == "function" then
        keep = function(e) return spec(e.name, e.t, e.mtype) and true or false end
    else
        fail("%s: option 'params' must be \"all\", \"weights\", \"no_bn\", a pattern, a list of " ..
             "patterns or a function, got %s", who, type(spec))
    end
    local out = {}
    for _, e in ipairs(all) do if keep(e) then out[#out + 1] = e end end
    if #out == 0 then fail("%s: option 'params' selects no parameters", who) end
    return out
end

function U.params_label(spec)
    if spec == nil then return "all" end
    if type(spec) == "string" then return spec end
    if type(spec) == "table" then return table.concat(spec, "|") end
    return "custom"
end

---------------------------------------------------------------------------------------------------
-- Lists of tensors as vectors (detached, no graph).
---------------------------------------------------------------------------------------------------
function U.snapshot(ts)
    return ls.no_grad(function()
        local out = {}
        for i, t in ipairs(ts) do out[i] = t:detach():clone() end
        return out
    end)
end

function U.dot(a, b)
    local s = 0.0
    for i = 1, #a do s = s + (a[i] * b[i]):sum():item() end
    return s
end

function U.norm(a) return math.sqrt(U.dot(a, a)) end

-- Set each t[i] = base[i] + sum_k coef_k * dirs_k[i] (dirs entries may be nil: zero).
function U.set_to(ts, base, terms)
    ls.no_grad(function()
        for i, t in ipairs(ts) do
            local v = base[i]
            for _, term in ipairs(terms) do
                local c, d = term[1], term[2][i]
                if d ~= nil and c ~= 0 then v = v + d * c end
            end
            t:detach():copy(v)
        end
    end)
end

function U.restore(ts, base)
    ls.no_grad(function()
        for i, t in ipairs(ts) do t:detach():copy(base[i]) end
    end)
end

-- Run fn() with the model in `mode` ("eval" or "train"; train mode freezes batch-norm running
-- statistics) and put back the parameters, the buffers, the mode and the freeze flags afterwards,
-- also when fn raises.
function U.guarded(model, mode, who, fn)
    if mode ~= "eval" and mode ~= "train" then
        fail("%s: option 'mode' must be \"eval\" or \"train\", got %s", who, tostring(mode))
    end
    local ps = {}
    for i, e in ipairs(collect(model)) do ps[i] = e.t end
    local bufs = (type(model.buffers) == "function") and model:buffers() or {}
    local p0, b0 = U.snapshot(ps), U.snapshot(bufs)
    local was_training = model.training
    local frozen = {}
    if type(model.modules) == "function" then
        for _, m in ipairs(model:modules()) do frozen[m] = m.frozen_stats or false end
    end
    if mode == "eval" then
        if type(model.eval) == "function" then model:eval() end
    else
        if type(model.train) == "function" then model:train() end
        if type(model.freeze_running_stats) == "function" then model:freeze_running_stats(true) end
    end
    local res = table.pack(pcall(fn))
    U.restore(ps, p0)
    U.restore(bufs, b0)
    for m, f in pairs(frozen) do m.frozen_stats = f or nil end
    if type(model.train) == "function" then
        if was_training == false then model:eval() elseif was_training then model:train() end
    end
    for m, f in pairs(frozen) do m.frozen_stats = f or nil end
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
end

-- A stream seed for draw (a, b) of a run with seed s: distinct, deterministic, < 2^53.
function U.subseed(s, a, b)
    return ((s * 1000003 + a) * 8191 + b) % 9007199254740881
end

---------------------------------------------------------------------------------------------------
-- The ascent (worst-case search). Perturbations are delta = c .* u with u in the p-ball of radius
-- rho (c = 1, |w| + adaptive_eta, or Keskar's eps (|w| + 1)). Ascent runs in u: the gradient in u
-- is c .* g; l2 steps along its normalised direction and projects onto the ball by scaling; linf
-- steps along its sign and clamps to [-rho, rho]. A step that does not raise the loss above the best
-- so far is rejected and halves the step (the search starts again from the best point), so the
-- reported maximum is the best loss actually evaluated. One loss-and-gradient evaluation per step.
---------------------------------------------------------------------------------------------------
local function ascend(model, d, lossf, batch, sel, w0, c, rho, p, steps, eta)
    local ts = {}
    for i, e in ipairs(sel) do ts[i] = e.t end
    local zero = {}
    for i, w in ipairs(w0) do zero[i] = ls.zeros_like(w) end
    U.set_to(ts, w0, {})
    local L0, g = U.loss_grad(model, d, lossf, batch, ts)
    local u, best, evals, accepted = zero, L0, 1, 0
    for _ = 1, steps do
        local gu = {}
        for i = 1, #g do gu[i] = g[i] * c[i] end
        local un
        if p == 2 then
            local nrm = U.norm(gu)
            if nrm == 0 then break end
            un = {}
            for i = 1, #u do un[i] = u[i] + gu[i] * (eta / nrm) end
            local r = U.norm(un)
            if r > rho then for i = 1, #un do un[i] = un[i] * (rho / r) end end
        else
            un = {}
            for i = 1, #u do un[i] = (u[i] + gu[i]:sign() * eta):clamp(-rho, rho) end
        end
        local delta = {}
        for i = 1, #un do delta[i] = un[i] * c[i] end
        U.set_to(ts, w0, {{1, delta}})
        local L, gn = U.loss_grad(model, d, lossf, batch, ts)
        evals = evals + 1
        if L > best then
            u, best, g, accepted = un, L, gn, accepted + 1
        else
            eta = eta / 2
        end
    end
    U.restore(ts, w0)
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

local COMMON = {n = true, batch = true, mode = true, params = true, loss = true}
local function known(extra)
    local k = {}
    for key in pairs(COMMON) do k[key] = true end
    for key in pairs(extra) do k[key] = true end
    return k
end

local function setup(model, data, opts, who)
    local d = U.as_data(data, opts.n, who)
    local batch = U.posint(opts.batch or 1000, "batch", who)
    local lossf, lname = U.loss_fn(opts.loss, who)
    local mode = opts.mode or "eval"
    local sel = U.select_params(model, opts.params, who)
    local base = {n = d.n, batch = batch, mode = mode, params = U.params_label(opts.params),
                  loss_fn = lname, num_perturbed = 0}
    for _, e in ipairs(sel) do base.num_perturbed = base.num_perturbed + e.t:numel() end
    return d, batch, lossf, mode, sel, base
end

-- Worst-case search on each chunk of size m (or on all of d), averaged.
local function worst(model, d, lossf, batch, sel, kind, karg, rho, p, steps, eta, m)
    local parts = m and U.chunks(d, m) or {d}
    local ts = {}
    for i, e in ipairs(sel) do ts[i] = e.t end
    local w0 = U.snapshot(ts)
    local c = scales(w0, kind, karg)
    local sL0, sbest, evals, acc = 0.0, 0.0, 0, 0
    for _, part in ipairs(parts) do
        local L0, best, e, a = ascend(model, part, lossf, math.min(batch, part.n), sel, w0, c, rho,
                                      p, steps, eta)
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
--   n = nil            use the first n examples; batch = 1000; loss = "cross_entropy" | "mse" | fn
--   mode = "eval"      or "train" (batch statistics; running statistics frozen)
--   params = "all"     which parameters are perturbed (see U.select_params)
-- row: value, loss (L(w)), perturbed_loss (max found), and every setting.
local function worst_case(model, data, opts)
    local who = "worst_case"
    opts = U.check_options(opts, known{rho = true, p = true, adaptive = true, adaptive_eta = true,
                                       steps = true, step_size = true, m = true}, who)
    local d, batch, lossf, mode, sel, row = setup(model, data, opts, who)
    local rho = U.posnum(opts.rho or 0.05, "rho", who)
    local p = norm_p(opts.p, who)
    local steps = U.posint(opts.steps or 20, "steps", who)
    local step_size = U.posnum(opts.step_size or 2, "step_size", who)
    local m = opts.m and U.posint(opts.m, "m", who)
    local aeta = opts.adaptive_eta or 0
    if type(aeta) ~= "number" or aeta < 0 then
        fail("%s: option 'adaptive_eta' must be a number >= 0, got %s", who, tostring(aeta))
    end
    local L0, best, evals, acc, nparts = U.guarded(model, mode, who, function()
        return worst(model, d, lossf, batch, sel, opts.adaptive and "adaptive" or "plain", aeta,
                     rho, p, steps, step_size * rho, m)
    end)
    row.measure = "worst_case"
    row.value, row.loss, row.perturbed_loss = best - L0, L0, best
    row.rho, row.p, row.adaptive = rho, p == 2 and "2" or "inf", opts.adaptive and true or false
    row.adaptive_eta, row.steps, row.step_size, row.m = aeta, steps, step_size, m or d.n
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
local function keskar(model, data, opts)
    local who = "keskar"
    opts = U.check_options(opts, known{epsilon = true, steps = true, step_size = true, m = true},
                           who)
    local d, batch, lossf, mode, sel, row = setup(model, data, opts, who)
    local eps = U.posnum(opts.epsilon or 5e-4, "epsilon", who)
    local steps = U.posint(opts.steps or 20, "steps", who)
    local step_size = U.posnum(opts.step_size or 2, "step_size", who)
    local m = opts.m and U.posint(opts.m, "m", who)
    local L0, best, evals, acc, nparts = U.guarded(model, mode, who, function()
        return worst(model, d, lossf, batch, sel, "keskar", eps, 1, math.huge, steps, step_size, m)
    end)
    row.measure = "keskar"
    row.value = 100 * (best - L0) / (1 + L0)
    row.loss, row.perturbed_loss = L0, best
    row.epsilon, row.steps, row.step_size, row.m = eps, steps, step_size, m or d.n
    row.chunks, row.evaluations, row.accepted_steps = nparts, evals, acc
    return row
end
M.keskar = public(keskar)

--- ls.sharpness.average_case(model, data [, opts]) -> row
-- mean over `samples` draws of L(w + delta) - L(w), delta = sigma * c .* z, z ~ N(0, I)
-- ("gaussian") or U[-1, 1] ("uniform"), c = 1 or |w| + adaptive_eta (adaptive).
-- opts: sigma = 0.01, samples = 10, seed = 1, distribution = "gaussian", adaptive = false,
-- adaptive_eta = 0, and the common ones. row: value, stderr (of the mean), loss, and the settings.
-- Draw k of parameter i comes from the stream U.subseed(seed, k, i).
local function average_case(model, data, opts)
    local who = "average_case"
    opts = U.check_options(opts, known{sigma = true, samples = true, seed = true,
                                       distribution = true, adaptive = true, adaptive_eta = true},
                           who)
    local d, batch, lossf, mode, sel, row = setup(model, data, opts, who)
    local sigma = U.posnum(opts.sigma or 0.01, "sigma", who)
    local samples = U.posint(opts.samples or 10, "samples", who)
    local seed = opts.seed or 1
    if math.type(seed) ~= "integer" then fail("%s: option 'seed' must be an integer", who) end
    local dist = opts.distribution or "gaussian"
    if dist ~= "gaussian" and dist ~= "uniform" then
        fail("%s: option 'distribution' must be \"gaussian\" or \"uniform\", got %s", who,
             tostring(dist))
    end
    local aeta = opts.adaptive_eta or 0
    local L0, mean, se = U.guarded(model, mode, who, function()
        local ts = {}
        for i, e in ipairs(sel) do ts[i] = e.t end
        local w0 = U.snapshot(ts)
        local c = scales(w0, opts.adaptive and "adaptive" or "plain", aeta)
        local L0 = U.eval_loss(model, d, lossf, batch)
        local s, s2 = 0.0, 0.0
        for k = 1, samples do
            local delta = ls.no_grad(function()
                local out = {}
                for i, w in ipairs(w0) do
                    local z
                    if dist == "gaussian" then
                        z = ls.randn(w:size(), {seed = U.subseed(seed, k, i), dtype = w.dtype})
                    else
                        z = ls.rand(w:size(), {seed = U.subseed(seed, k, i), dtype = w.dtype,
                                                lo = -1, hi = 1})
                    end
                    out[i] = z * c[i] * sigma
                end
                return out
            end)
            U.set_to(ts, w0, {{1, delta}})
            local diff = U.eval_loss(model, d, lossf, batch) - L0
            s, s2 = s + diff, s2 + diff * diff
        end
        local mean = s / samples
        local var = samples > 1 and math.max(0, (s2 - samples * mean * mean) / (samples - 1)) or 0
        return L0, mean, math.sqrt(var / samples)
    end)
    row.measure = "average_case"
    row.value, row.stderr, row.loss = mean, se, L0
    row.sigma, row.samples, row.seed, row.distribution = sigma, samples, seed, dist
    row.adaptive, row.adaptive_eta = opts.adaptive and true or false, aeta
    return row
end
M.average_case = public(average_case)

--- ls.sharpness.m_sharpness(model, data, opts): worst_case with opts.m required (default 128).
M.m_sharpness = public(function(model, data, opts)
    opts = opts or {}
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.m = o.m or 128
    local row = worst_case(model, data, o)
    row.measure = "m_sharpness"
    return row
end)

return M
