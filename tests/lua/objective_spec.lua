-- ls.objective: value, gradient and Hessian-vector products against finite differences (float64),
-- the parameter-selection language (the same spec selects the same parameters in every module;
-- scale_invariant really is scale-invariant), and the mode guard: every analysis leaves flags,
-- buffers, dropout counters, the global stream and the parameters exactly as they were, also when
-- it raises.
local ls = require "landscape"
local nn = ls.nn

local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

local function blobs(n, seed, dim, classes)
    local x = ls.randn({n, dim or 8}, {seed = seed, dtype = "f64"})
    local y = x:narrow(2, 1, classes or 3):argmax(2)
    return ls.dataset(x, y)
end

-- flatten, linear (no bias) -> BN -> relu, linear -> BN -> relu, linear: 9 parameter tensors.
local function bn_model(eps)
    return nn.sequential{nn.flatten(), nn.linear(8, 6, {seed = 1, bias = false, dtype = "f64"}),
                         nn.batchnorm1d(6, {dtype = "f64", eps = eps}), nn.relu(),
                         nn.linear(6, 5, {seed = 2, dtype = "f64"}),
                         nn.batchnorm1d(5, {dtype = "f64", eps = eps}), nn.relu(),
                         nn.linear(5, 3, {seed = 3, dtype = "f64"})}
end

describe("ls.objective", function()
    local model = nn.mlp{input = 8, hidden = {6}, classes = 3, activation = "tanh", seed = 4,
                         dtype = "f64"}
    local d = blobs(30, 1)

    it("value is the mean loss; grad and hvp match central differences", function()
        local obj = ls.objective(model, d, {batch = 7})
        local full = ls.no_grad(function() return ls.cross_entropy(model(d.x), d.y):item() end)
        assert.is_true(math.abs(obj:value() - full) < 1e-14)
        local g, L = obj:grad()
        assert.is_true(math.abs(L - full) < 1e-14)
        assert.are.equal(obj.n, g:numel())
        local w0 = model:flatten_parameters()
        local function value_at(w)
            model:set_flat_parameters(w)
            return obj:value()
        end
        local function grad_at(w)
            model:set_flat_parameters(w)
            return (obj:grad())
        end
        local v = ls.randn({obj.n}, {seed = 5, dtype = "f64"})
        local h = 1e-6
        local fd = (value_at(w0 + v * h) - value_at(w0 - v * h)) / (2 * h)
        model:set_flat_parameters(w0)
        assert.is_true(math.abs(fd - (g * v):sum():item()) < 1e-8)
        local hv = obj:hvp(v)
        local fdh = (grad_at(w0 + v * h) - grad_at(w0 - v * h)) / (2 * h)
        model:set_flat_parameters(w0)
        assert.is_true((hv - fdh):abs():max():item() < 1e-7)
        -- a list in, a list out; with create_graph the product is differentiable again:
        -- d<v, H v>/dw against differences of <v, H(w) v>
        local vl = obj:unflatten(v)
        local hl = obj:hvp(vl, {create_graph = true})
        local q = 0
        for i = 1, #hl do q = (hl[i] * vl[i]):sum() + q end
        local dq = ls.grad(q, obj.tensors)
        local u = ls.randn({obj.n}, {seed = 6, dtype = "f64"})
        local function quad_at(w)
            model:set_flat_parameters(w)
            return (obj:hvp(v) * v):sum():item()
        end
        local fdq = (quad_at(w0 + u * h) - quad_at(w0 - u * h)) / (2 * h)
        model:set_flat_parameters(w0)
        assert.is_true(math.abs(fdq - (obj:flatten(dq) * u):sum():item()) < 1e-6)
        has(errmsg(obj.hvp, obj, v, {create_graph = true}), "create_graph needs v as a list")
        has(errmsg(obj.hvp, obj, v, {create_grpah = true}),
            "hvp: unknown option 'create_grpah' (did you mean 'create_graph'?)")
    end)

    it("is accepted by every analysis in place of (model, data, opts)", function()
        local obj = ls.objective(model, d, {batch = 10, params = "3.*"})
        local a = ls.curvature.hessian(obj):dense()
        local b = ls.curvature.hessian(model, d, {batch = 10, params = "3.*"}):dense()
        assert.is_true(a:equal(b))
        assert.are.same(ls.evaluate(model, d), ls.evaluate(ls.objective(model, d)))
        local r1 = ls.sharpness.worst_case(obj, {rho = 0.1, steps = 3})
        local r2 = ls.sharpness.worst_case(model, d, {rho = 0.1, steps = 3, batch = 10,
                                                      params = "3.*"})
        assert.are.equal(r1.value, r2.value)
        has(errmsg(ls.sharpness.worst_case, obj, {batch = 5}),
            "worst_case: option 'batch' belongs to the objective")
        has(errmsg(ls.objective, model, d, {bacth = 5}),
            "objective: unknown option 'bacth' (did you mean 'batch'?)")
        has(errmsg(ls.objective, model, d, {loss = "crossentropy"}),
            "unknown loss 'crossentropy' (did you mean 'cross_entropy'?)")
    end)
end)

describe("the parameter-selection language", function()
    local ALL = {"1.weight", "2.weight", "2.bias", "4.weight", "4.bias", "5.weight", "5.bias",
                 "7.weight", "7.bias"}
    local CASES = {
        {nil, ALL},
        {"all", ALL},
        {"weights", {"1.weight", "4.weight", "7.weight"}},
        {"no_bn", {"1.weight", "4.weight", "4.bias", "7.weight", "7.bias"}},
        {"scale_invariant", {"1.weight", "4.weight"}},
        {"?.bias", {"2.bias", "4.bias", "5.bias", "7.bias"}},
        {"%d%.weight", {"1.weight", "2.weight", "4.weight", "5.weight", "7.weight"}},
        {{"7.*", "1.weight"}, {"1.weight", "7.weight", "7.bias"}},
        {function(_, _, m) return m._type == "Linear" end,
         {"1.weight", "4.weight", "4.bias", "7.weight", "7.bias"}},
    }

    it("selects the same parameters in every module", function()
        local model, d = bn_model(), blobs(12, 2)
        for _, c in ipairs(CASES) do
            local spec, want = c[1], c[2]
            local label = type(spec) == "table" and table.concat(spec, ",") or tostring(spec)
            local numel = 0
            for _, name in ipairs(want) do numel = numel + model:named_parameters()[name]:numel() end
            local obj = ls.objective(model, d, {params = spec})
            assert.are.same(want, obj.names, label)
            assert.are.same(want, ls.curvature.hessian(model, d, {params = spec}).params, label)
            assert.are.same(want, ls.curvature.ggn(model, d, {params = spec}).params, label)
            assert.are.same(want, ls.curvature.grad_norm(model, d, {params = spec}).params, label)
            assert.are.equal(numel, ls.sharpness.worst_case(model, d, {params = spec, steps = 1})
                                        .num_perturbed, label)
            assert.are.equal(numel, ls.sharpness.average_case(model, d, {params = spec,
                                                                         samples = 1})
                                        .num_perturbed, label)
            -- a slice's flat direction spans exactly the selection
            ls.landscape.line(model, d, {params = spec, points = 2,
                                         direction = ls.zeros({numel}, {dtype = "f64"})})
            has(errmsg(ls.landscape.line, model, d, {params = spec, points = 2,
                                                     direction = ls.zeros({numel + 1}, {dtype = "f64"})}),
                "a flat direction must have " .. numel .. " elements")
            -- a training method sees the selection as its batch view's parameters
            local seen
            local spy = {name = "spy", step = function(_, b)
                seen = b.names
                b:backward()
            end}
            local tobj = ls.objective(model, d, {params = spec, mode = "train"})
            ls.train(tobj, {optimizer = ls.optim.sgd(model, {lr = 0}), batch = 12, method = spy,
                            progress = false})
            assert.are.same(want, seen, label)
        end
    end)

    it("scale_invariant weights leave the train-mode loss unchanged when scaled", function()
        local model, d = bn_model(0), blobs(16, 3)        -- eps = 0: exactly invariant
        local obj = ls.objective(model, d, {mode = "train", params = "scale_invariant"})
        local w = obj:snapshot()
        local l0 = obj:value()
        obj:set(w, {{2.5, w}})                        -- w -> 3.5 w
        assert.is_true(math.abs(obj:value() - l0) < 1e-12)
        obj:restore(w)
        local other = obj:select("7.weight")
        local w7 = other:snapshot()
        other:set(w7, {{2.5, w7}})
        assert.is_true(math.abs(obj:value() - l0) > 1e-6)
        other:restore(w7)
        -- every convolution of a ResNet with batch norm feeds one
        local r = nn.resnet{widths = {4, 8}, seed = 1}
        local si = ls.objective(r, {x = ls.randn({2, 1, 28, 28}), y = ls.tensor({1, 2}, {dtype = "i64"})},
                                {params = "scale_invariant"}).names
        assert.are.same({"0.weight", "3.conv1.weight", "3.conv2.weight", "4.conv1.weight",
                         "4.conv2.weight", "4.shortcut.0.weight"}, si)
    end)

    it("reports a selection of nothing with the model's names", function()
        local model, d = bn_model(), blobs(12, 2)
        has(errmsg(ls.objective, model, d, {params = "9.*"}),
            'objective: no parameters match "9.*"; parameters are 1.weight, 2.weight')
        has(errmsg(ls.objective, model, d, {params = {}}), "option 'params' is an empty list")
        has(errmsg(ls.objective, model, d, {params = "[x"}), "bad parameter pattern '[x'")
        has(errmsg(ls.objective, model, d, {params = 3}), "option 'params' must be a name")
    end)
end)

describe("the mode guard", function()
    -- everything an analysis could change on the model
    local function state(m)
        local s = {flags = {}, bufs = {}, params = m:flatten_parameters():totable(),
                   rng = ls.get_rng_state()}
        for i, mod in ipairs(m:modules()) do
            s.flags[i] = {mod.training, mod.frozen_stats or false, mod.calls or false}
        end
        for i, b in ipairs(m:buffers()) do s.bufs[i] = b:double():reshape(-1):totable() end
        return s
    end

    local function model_mixed()
        local m = nn.sequential{nn.flatten(), nn.linear(8, 6, {seed = 1, dtype = "f64"}),
                                nn.batchnorm1d(6, {dtype = "f64"}), nn.relu(),
                                nn.dropout(0.2, {seed = 3}), nn.linear(6, 6, {seed = 2, dtype = "f64"}),
                                nn.batchnorm1d(6, {dtype = "f64"}), nn.relu(),
                                nn.linear(6, 3, {seed = 4, dtype = "f64"})}
        m:train()
        m(ls.randn({10, 8}, {seed = 9, dtype = "f64"}))     -- running statistics and a dropout call
        m:get(4).training = false                            -- mixed flags
        m:get(3).frozen_stats = true                         -- one batch norm frozen, one not
        return m
    end

    local ANALYSES = {
        {"objective:value", function(m, d, o) return ls.objective(m, d, o):value() end},
        {"objective:grad", function(m, d, o) return ls.objective(m, d, o):grad() end},
        {"objective:hvp", function(m, d, o)
            local obj = ls.objective(m, d, o)
            return obj:hvp(ls.ones({obj.n}, {dtype = "f64"}))
        end},
        {"evaluate", function(m, d, o) return ls.evaluate(m, d, {loss = o.loss, batch = o.batch}) end},
        {"hessian", function(m, d, o) return ls.curvature.hessian(m, d, o):eigs{k = 1} end},
        {"ggn", function(m, d, o) return ls.curvature.ggn(m, d, o):trace{probes = 2} end},
        {"fisher", function(m, d, o) return ls.curvature.fisher(m, d, o):power{k = 1, max_iter = 3} end},
        {"grad_norm", function(m, d, o) return ls.curvature.grad_norm(m, d, o) end},
        {"worst_case", function(m, d, o) o.steps = 2; return ls.sharpness.worst_case(m, d, o) end},
        {"keskar", function(m, d, o) o.steps = 2; return ls.sharpness.keskar(m, d, o) end},
        {"average_case", function(m, d, o) o.samples = 2; return ls.sharpness.average_case(m, d, o) end},
        {"m_sharpness", function(m, d, o)
            o.steps, o.m = 1, 5
            return ls.sharpness.m_sharpness(m, d, o)
        end},
        {"line", function(m, d, o) o.points = 3; return ls.landscape.line(m, d, o) end},
        {"plane", function(m, d, o) o.grid = {2, 2}; return ls.landscape.plane(m, d, o) end},
        {"bn_probe", function(m, d, o) return ls.landscape.bn_probe(m, d.x, d.y, {loss = o.loss}) end},
        {"margins", function(m, d, o)
            return ls.margins(m, d, {mode = o.mode, batch = o.batch, layers = {"output"}})
        end},
        {"input_geometry", function(m, d, o)
            return ls.margins.input_geometry(m, d, {mode = "eval", batch = o.batch})
        end},
    }

    it("restores flags, buffers, dropout counters, the stream and parameters after every analysis", function()
        local d = blobs(15, 4)
        for _, a in ipairs(ANALYSES) do
            for _, mode in ipairs({"eval", "train"}) do
                local m = model_mixed()
                local before = state(m)
                local ok, err = pcall(a[2], m, d, {mode = mode})
                -- train mode with active dropout is refused by the curvature operators
                assert(ok or tostring(err):find("dropout"), a[1] .. " " .. mode .. ": " .. tostring(err))
                assert.are.same(before, state(m), a[1] .. " in " .. mode .. " mode")
            end
        end
    end)

    it("restores them when the analysis raises in the middle of a pass", function()
        local d = blobs(15, 4)
        for _, a in ipairs(ANALYSES) do
            local m = model_mixed()
            local before = state(m)
            local calls, last = 0, m:get(9)
            last.forward = function(self, x)      -- the third forward of the last layer fails
                calls = calls + 1
                if calls >= 3 then error("boom") end
                return nn.Linear.forward(self, x)
            end
            local ok, err = pcall(a[2], m, d, {mode = "eval", batch = 5})
            last.forward = nil
            assert.is_false(ok, a[1])
            has(tostring(err), "boom")
            assert.are.same(before, state(m), a[1] .. " after an error")
        end
    end)
end)
