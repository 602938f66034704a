-- ls.sharpness: worst-case, Keskar, average-case and m-sharpness on a linear least-squares model
-- whose loss is exactly quadratic (known gradient and Hessian), exact restoration of the weights,
-- determinism and bad input.
local ls = require "landscape"
local nn = ls.nn

-- L(w) = (1/3) sum_i (a_i w_i - 1)^2 with x = diag(a): H = (2/3) diag(a^2), g_i = (2/3) a_i (a_i w_i - 1).
local A = {2, 1, 0.5}
local function quad(w)
    local m = nn.linear(3, 1, {bias = false, dtype = "f64"})
    ls.no_grad(function() m.weight:detach():copy(ls.tensor({w}, {dtype = "f64"})) end)
    local x = ls.tensor({{A[1], 0, 0}, {0, A[2], 0}, {0, 0, A[3]}}, {dtype = "f64"})
    local y = ls.ones({3, 1}, {dtype = "f64"})
    return m, {x = x, y = y}
end
local H = {}
for i = 1, 3 do H[i] = 2 / 3 * A[i] ^ 2 end
local function grad_at(w)
    local g = {}
    for i = 1, 3 do g[i] = 2 / 3 * A[i] * (A[i] * w[i] - 1) end
    return g
end

-- max over ||d|| <= rho of g.d + d'Hd/2 (H diagonal): d_i = g_i / (mu - h_i), mu > max h, ||d|| = rho.
local function trust_region_max(g, rho)
    local hmax = math.max(H[1], H[2], H[3])
    local function dnorm(mu)
        local s = 0
        for i = 1, 3 do s = s + (g[i] / (mu - H[i])) ^ 2 end
        return math.sqrt(s)
    end
    local lo, hi = hmax + 1e-12, hmax + 1e6
    for _ = 1, 200 do
        local mid = (lo + hi) / 2
        if dnorm(mid) > rho then lo = mid else hi = mid end
    end
    local v = 0
    for i = 1, 3 do
        local d = g[i] / (hi - H[i])
        v = v + g[i] * d + 0.5 * H[i] * d * d
    end
    return v
end

local function flat_state(m)
    local parts = {}
    for _, e in ipairs(m:state_dict()) do parts[#parts + 1] = e[2]:double():reshape(-1) end
    return parts
end
local function same_bits(a, b)
    for i = 1, #a do
        if (a[i] - b[i]):abs():max():item() ~= 0 then return false end
    end
    return true
end

describe("worst-case sharpness", function()
    it("reaches the exact trust-region maximum on a quadratic as steps grow", function()
        local w = {0.3, -0.2, 0.9}
        local m, d = quad(w)
        local rho = 0.2
        local exact = trust_region_max(grad_at(w), rho)
        local few = ls.sharpness.worst_case(m, d, {loss = "mse", rho = rho, steps = 3})
        local many = ls.sharpness.worst_case(m, d, {loss = "mse", rho = rho, steps = 200})
        assert.is_true(few.value <= many.value + 1e-15)
        assert.is_true(many.value <= exact + 1e-12)
        assert.near(exact, many.value, 1e-6 * exact)
        -- the settings are in the row
        assert.equal(rho, many.rho); assert.equal("2", many.p); assert.equal(200, many.steps)
        assert.equal("eval", many.mode); assert.equal("worst_case", many.measure)
        assert.near(many.loss + many.value, many.perturbed_loss, 1e-14)
    end)

    it("linf: the box corner along sign(g) is optimal for a small radius", function()
        local w = {0.3, -0.2, 0.9}
        local m, d = quad(w)
        local g, rho = grad_at(w), 1e-3
        local expect = 0
        for i = 1, 3 do
            local s = g[i] > 0 and rho or -rho
            expect = expect + g[i] * s + 0.5 * H[i] * rho * rho
        end
        local r = ls.sharpness.worst_case(m, d, {loss = "mse", rho = rho, p = math.huge, steps = 5})
        assert.near(expect, r.value, 1e-12)
    end)

    it("m-sharpness averages per-chunk maxima; adaptive runs", function()
        local m, d = quad({0.3, -0.2, 0.9})
        local r = ls.sharpness.m_sharpness(m, d, {loss = "mse", m = 1, rho = 0.05, steps = 10})
        assert.equal(3, r.chunks); assert.equal(1, r.m)
        assert.is_true(r.value > 0)
        local a = ls.sharpness.worst_case(m, d, {loss = "mse", rho = 0.05, adaptive = true})
        assert.is_true(a.value > 0); assert.is_true(a.adaptive)
    end)
end)

describe("average-case sharpness", function()
    it("is sigma^2 tr(H) / 2 at a minimum, within sampling error", function()
        local m, d = quad({1 / A[1], 1 / A[2], 1 / A[3]})
        local sigma = 0.01
        local r = ls.sharpness.average_case(m, d, {loss = "mse", sigma = sigma, samples = 400,
                                                   seed = 3})
        local tr, h2 = 0, 0
        for i = 1, 3 do tr, h2 = tr + H[i], h2 + H[i] ^ 2 end
        local expect = sigma ^ 2 * tr / 2
        local se = math.sqrt(sigma ^ 4 * h2 / 2 / 400)    -- Var(z'Hz/2) = sum h_i^2 / 2
        assert.is_true(math.abs(r.value - expect) < 4 * se)
        assert.near(se, r.stderr, 0.3 * se)
        assert.near(0, r.loss, 1e-15)
    end)

    it("is deterministic for a seed and changes with it", function()
        local m, d = quad({0.3, -0.2, 0.9})
        local a = ls.sharpness.average_case(m, d, {loss = "mse", seed = 5, samples = 4})
        local b = ls.sharpness.average_case(m, d, {loss = "mse", seed = 5, samples = 4})
        local c = ls.sharpness.average_case(m, d, {loss = "mse", seed = 6, samples = 4})
        assert.equal(a.value, b.value)
        assert.are_not.equal(a.value, c.value)
    end)
end)

describe("Keskar sharpness", function()
    it("is non-negative and grows with epsilon", function()
        local m, d = quad({0.3, -0.2, 0.9})
        local prev = -1
        for _, eps in ipairs{1e-4, 1e-3, 1e-2, 1e-1} do
            local r = ls.sharpness.keskar(m, d, {loss = "mse", epsilon = eps})
            assert.is_true(r.value >= 0)
            assert.is_true(r.value > prev)
            assert.equal(eps, r.epsilon)
            prev = r.value
        end
    end)
end)

describe("restoration", function()
    it("leaves parameters, buffers, mode and freeze flags bit for bit", function()
        local m = nn.mlp{input = 12, hidden = {8}, classes = 3, batchnorm = true, seed = 2}
        local x = ls.randn({20, 12}, {seed = 1})
        local y = ls.randint(1, 4, {20}, {seed = 2})
        m:train(); m(x)                                  -- non-trivial running statistics
        local d = ls.dataset(x, y)
        local before = flat_state(m)
        for _, mode in ipairs{"eval", "train"} do
            ls.sharpness.worst_case(m, d, {rho = 0.5, steps = 3, mode = mode})
            ls.sharpness.keskar(m, d, {steps = 3, mode = mode})
            ls.sharpness.average_case(m, d, {samples = 2, mode = mode, adaptive = true})
            ls.sharpness.m_sharpness(m, d, {m = 7, steps = 2, mode = mode})
        end
        assert.is_true(same_bits(before, flat_state(m)))
        assert.is_true(m.training)
        assert.is_nil(m:get(3).frozen_stats)
        -- also after an error raised inside the measurement
        local bad = function() error("boom") end
        assert.has_error(function() ls.sharpness.worst_case(m, d, {loss = bad}) end)
        assert.is_true(same_bits(before, flat_state(m)))
    end)
end)

describe("bad input", function()
    local m, d = quad({0.3, -0.2, 0.9})
    local function msg(fn) local ok, e = pcall(fn); assert.is_false(ok); return tostring(e) end
    it("raises clear errors", function()
        assert.truthy(msg(function() ls.sharpness.worst_case(m, d, {rh = 1}) end)
            :find("worst_case: unknown option 'rh'", 1, true))
        assert.truthy(msg(function() ls.sharpness.worst_case(m, d, {p = 3}) end)
            :find("option 'p' must be 2 or math.huge", 1, true))
        assert.truthy(msg(function() ls.sharpness.keskar(m, d, {epsilon = -1}) end)
            :find("keskar: option 'epsilon' must be a positive number", 1, true))
        assert.truthy(msg(function() ls.sharpness.average_case(m, d, {mode = "test"}) end)
            :find("option 'mode' must be", 1, true))
        assert.truthy(msg(function() ls.sharpness.worst_case(m, {x = 1}) end)
            :find("data must be a dataset", 1, true))
        assert.truthy(msg(function() ls.sharpness.worst_case(m, d, {params = "nomatch"}) end)
            :find("selects no parameters", 1, true))
    end)
end)
