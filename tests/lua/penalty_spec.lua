-- ls.methods.grad_norm and ls.methods.trace_penalty: the step of the exact forms is the gradient of
-- the penalised batch loss F, checked by central differences of F (float64, fixed probes) on a
-- smooth MLP with batch norm and on a small ReLU CNN with batch norm (so the third derivatives run
-- through linear, conv2d, batch norm, max pooling and the activations); the finite-difference forms
-- approach the exact step at their order in r on the smooth model; options are checked.
local ls = require "landscape"
local nn = ls.nn
local util = require "landscape.util"
local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

local images = su.random_images

local MODELS = {
    mlp_tanh_bn = function()
        return nn.mlp{input = 64, hidden = {6}, classes = 4, activation = "tanh", batchnorm = true,
                      seed = 4, dtype = "f64"}
    end,
    cnn_relu_bn = function()
        return nn.cnn{channels = {2, 3}, hidden = 5, classes = 4, input_size = 8, seed = 2,
                      dtype = "f64"}
    end,
}

-- The direction of one full-batch step of the method (SGD, lr 1, no momentum): w0 - w1.
local function direction(make, d, method)
    local model = make()
    local w0 = model:flatten_parameters()
    ls.train(model, d, {optimizer = ls.optim.sgd(model, {lr = 1}), method = method, batch = d.n,
                        shuffle = false, progress = false})
    return w0 - model:flatten_parameters(), w0
end

-- F(w) for a penalty: the loss and its gradient by ls.grad, Hessian-vector products by ls.hvp, in
-- train mode (batch statistics), on a fresh copy of the model.
local function penalised(make, d, pen)
    local m = make()
    m:train()
    return function(w)
        m:set_flat_parameters(w)
        local ps = m:parameters()
        local function loss() return ls.cross_entropy(m(d.x), d.y) end
        local L = loss():item()
        return L + pen(m, ps, loss)
    end
end

local function grad_norm_penalty(lambda, squared)
    return function(_, ps, loss)
        local s = 0
        for _, t in ipairs(ls.grad(loss(), ps)) do s = s + (t * t):sum():item() end
        return lambda * (squared and s or math.sqrt(s))
    end
end

-- The probes of the method's first step (the rule in the header of methods/penalty.lua).
local function probes(n, k, seed, shapes_of)
    local out = {}
    for j = 1, k do
        local v = ls.rademacher({n}, {seed = util.subseed(seed, 1, j), dtype = "f64"})
        out[j] = shapes_of(v)
    end
    return out
end

local function trace_penalty(lambda, k, seed)
    return function(m, ps, loss)
        local n = m:flatten_parameters():numel()
        local vs = probes(n, k, seed, function(v)
            local out, off = {}, 1
            for i, p in ipairs(ps) do
                out[i] = v:narrow(1, off, p:numel()):reshape(p:size())
                off = off + p:numel()
            end
            return out
        end)
        local s = 0
        for _, v in ipairs(vs) do
            local hv = ls.hvp(loss, ps, v)
            for i = 1, #ps do s = s + (hv[i] * v[i]):sum():item() end
        end
        return lambda * s / k
    end
end

-- <step, u> against (F(w0 + h u) - F(w0 - h u)) / 2h along three random directions.
local function check_fd(step, w0, F, label)
    for k = 1, 3 do
        local u = ls.randn({w0:numel()}, {seed = 70 + k, dtype = "f64"})
        local h = 1e-6
        local fd = (F(w0 + u * h) - F(w0 - u * h)) / (2 * h)
        local an = (step * u):sum():item()
        assert.is_true(math.abs(fd - an) < 1e-6 * math.max(1, math.abs(fd)),
                       string.format("%s, direction %d: fd %.12g, step %.12g", label, k, fd, an))
    end
end

local function rel(a, b) return (a - b):norm():item() / b:norm():item() end

describe("exact penalties: the step is the gradient of the penalised loss", function()
    for name, make in pairs(MODELS) do
        it(name .. ": grad_norm, lambda ||grad L|| and lambda ||grad L||^2", function()
            local d = images(12, 9)
            for _, squared in ipairs({false, true}) do
                local lambda = 0.3
                local step, w0 = direction(make, d, ls.methods.grad_norm{lambda = lambda,
                                                                          squared = squared})
                check_fd(step, w0, penalised(make, d, grad_norm_penalty(lambda, squared)),
                         name .. (squared and " squared" or ""))
                local plain = direction(make, d, nil)
                assert.is_true(rel(step, plain) > 1e-3)   -- the penalty matters
            end
        end)

        it(name .. ": trace_penalty, Hutchinson, 1 and 3 fixed probes (third derivatives)",
           function()
            local d = images(12, 9)
            for _, k in ipairs({1, 3}) do
                local lambda, seed = 0.05, 11
                local step, w0 = direction(make, d, ls.methods.trace_penalty{lambda = lambda,
                                                                              probes = k, seed = seed})
                check_fd(step, w0, penalised(make, d, trace_penalty(lambda, k, seed)),
                         string.format("%s, %d probes", name, k))
                local plain = direction(make, d, nil)
                assert.is_true(rel(step, plain) > 1e-3)
            end
        end)
    end
end)

describe("finite-difference penalties approach the exact step", function()
    local make, d = MODELS.mlp_tanh_bn, images(12, 9)

    -- the relative error of the FD form at three radii, each half (or a quarter) of the previous;
    -- the error must shrink by 2^order per halving
    local function converges(method, rs, order)
        local exact = direction(make, d, method(nil))
        local errs = {}
        for i, r in ipairs(rs) do errs[i] = rel(direction(make, d, method(r)), exact) end
        assert.is_true(errs[3] < 1e-2, tostring(errs[3]))
        for i = 2, 3 do
            local ratio = errs[i - 1] / errs[i]
            assert.is_true(math.abs(ratio / 2 ^ order - 1) < 0.125, string.format("ratio %.3f", ratio))
        end
    end

    it("grad_norm (Zhao et al.): error O(r)", function()
        for _, squared in ipairs({false, true}) do
            converges(function(r)
                return ls.methods.grad_norm{lambda = 0.05, squared = squared, r = r,
                                            exact = r == nil}
            end, {1e-2, 5e-3, 2.5e-3}, 1)
        end
    end)

    it("trace_penalty (central differences): error O(r^2), same probes", function()
        converges(function(r)
            return ls.methods.trace_penalty{lambda = 0.01, probes = 2, r = r, exact = r == nil}
        end, {0.2, 0.1, 0.05}, 2)
    end)

    it("draws new probes every step, the same ones in a rerun", function()
        local function run(seed)
            local model = make()
            ls.train(model, d, {optimizer = ls.optim.sgd(model, {lr = 0.1}), batch = 4, epochs = 2,
                                shuffle = false, progress = false,
                                method = ls.methods.trace_penalty{lambda = 0.01, seed = seed}})
            return model:flatten_parameters()
        end
        assert.are.same(run(1):totable(), run(1):totable())
        assert.is_true((run(1) - run(2)):abs():max():item() > 1e-8)
        -- a resumed run draws the probes of the uninterrupted one (the step count is the state)
        local path = os.tmpname()
        local function ck(epochs)
            local model = make()
            ls.train(model, d, {optimizer = ls.optim.sgd(model, {lr = 0.1}), batch = 4,
                                epochs = epochs, shuffle = false, progress = false,
                                checkpoint = {path = path}, resume = epochs > 1,
                                method = ls.methods.trace_penalty{lambda = 0.01, seed = 1}})
            return model:flatten_parameters()
        end
        os.remove(path)
        ck(1)
        assert.are.same(run(1):totable(), ck(2):totable())
        os.remove(path)
    end)
end)

describe("penalty options", function()
    it("are checked", function()
        has(errmsg(ls.methods.grad_norm, {lambda = -1}),
            "methods.grad_norm: option 'lambda' must be a finite non-negative number, got -1")
        has(errmsg(ls.methods.grad_norm, {r = 0}), "option 'r' must be a positive number")
        has(errmsg(ls.methods.grad_norm, {exact = "yes"}), "option 'exact' must be a boolean")
        has(errmsg(ls.methods.trace_penalty, {probes = 0}),
            "methods.trace_penalty: option 'probes' must be a positive integer, got 0")
        has(errmsg(ls.methods.trace_penalty, {prob = 1}),
            "methods.trace_penalty: unknown option 'prob' (did you mean 'probes'?)")
        local s = ls.methods.trace_penalty{lambda = 0.5, exact = false}:settings()
        assert.are.same({method = "trace_penalty", lambda = 0.5, probes = 1, exact = false, r = 0.1,
                         seed = 1}, s)
    end)
end)
