-- ls.methods and the method protocol of ls.train: the built-in plain step, a method that evaluates
-- the batch twice (ls.methods.sam) and one that differentiates through its gradient
-- (ls.methods.grad_norm, exact), the batch view's rules (same dropout masks at every evaluation,
-- running statistics updated once), a method's own update, and divergence. The methods against
-- their oracles: sam_torch_spec.lua (PyTorch), penalty_spec.lua, rsam_spec.lua.
local ls = require "landscape"
local nn = ls.nn

local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

-- 8x8 one-channel images; class = the quadrant holding the brightest blob
local function images(n, seed, dtype)
    local x = ls.randn({n, 1, 8, 8}, {seed = seed, std = 0.3, dtype = dtype})
    local y = ls.randint(1, 5, {n}, {seed = seed + 1})
    local yl = y:totable()
    for i = 1, n do
        local r, c = (yl[i] - 1) // 2, (yl[i] - 1) % 2
        local q = x[i][1]:narrow(1, 4 * r + 1, 4):narrow(2, 4 * c + 1, 4)
        q:copy(q + 1)
    end
    return ls.dataset(x, y)
end

local function bits(model) return model:flatten_parameters():totable() end

local function sam(rho) return ls.methods.sam{rho = rho} end
local function gnorm(lambda) return ls.methods.grad_norm{lambda = lambda, squared = true} end

describe("ls.methods.plain", function()
    it("is the default and equals the loop it replaced: forward, backward, step", function()
        local function run(method)
            local model = nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
            local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9})
            local log = ls.train(model, images(96, 11), {optimizer = opt, epochs = 2, batch = 16,
                                                          method = method, progress = false})
            return bits(model), log
        end
        local w1, log1 = run(nil)
        local w2 = run(ls.methods.plain())
        assert.are.same(w1, w2)
        assert.are.equal("ok", log1.status)
        -- by hand: the same steps written out
        local model = nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9})
        local d = images(96, 11)
        for e = 1, 2 do
            for xb, yb in d:batches(16, {seed = 1, epoch = e}) do
                opt:zero_grad()
                ls.cross_entropy(model(xb), yb):backward()
                opt:step()
            end
        end
        assert.are.same(w1, bits(model))
        has(errmsg(ls.methods.plain, {rho = 1}), "methods.plain: unknown option 'rho'")
    end)
end)

describe("a method that evaluates the batch twice (SAM-style)", function()
    local function model_bn_dropout()
        local n = nn
        return n.sequential{n.flatten(), n.linear(64, 16, {seed = 1, bias = false}),
                            n.batchnorm1d(16), n.relu(), n.dropout(0.3, {seed = 5}),
                            n.linear(16, 4, {seed = 2})}
    end

    it("with rho = 0 equals the plain step bit for bit (same dropout masks, stats updated once)", function()
        local function run(method)
            local model = model_bn_dropout()
            local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9, weight_decay = 5e-4})
            local log = ls.train(model, images(64, 3), {optimizer = opt, epochs = 2, batch = 16,
                                                         method = method, progress = false})
            local sd = model:state_dict()
            return bits(model), log, sd["2.running_mean"]:totable(),
                   sd["2.num_batches_tracked"]:item()
        end
        local w1, log1, rm1, nbt1 = run(ls.methods.plain())
        local m, evals = sam(0), {}
        function m:step(b, ...)   -- count the evaluations of each step's batch view
            getmetatable(self).step(self, b, ...)
            evals[#evals + 1] = b.evaluations
        end
        local w2, log2, rm2, nbt2 = run(m)
        assert.are.same(w1, w2)
        assert.are.same(rm1, rm2)
        assert.are.equal(8, nbt1)                       -- one update per step (2 x 4 steps)
        assert.are.equal(nbt1, nbt2)
        assert.are.same({2, 2, 2, 2, 2, 2, 2, 2}, evals)
        assert.are.equal(log1.epochs[2].train_loss, log2.epochs[2].train_loss)
        -- a real radius changes the weights and keeps the statistics updated once per step
        local w3, _, _, nbt3 = run(sam(0.05))
        assert.are_not.same(w1, w3)
        assert.are.equal(8, nbt3)
    end)

    it("restores the weights exactly before the optimizer step: weight decay at the clean point", function()
        local model = nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3, dtype = "f64"}
        local d = images(16, 5, "f64")
        local w0 = model:flatten_parameters()
        local opt = ls.optim.sgd(model, {lr = 0.1, weight_decay = 0.01})
        ls.train(model, d, {optimizer = opt, batch = 16, shuffle = false, method = sam(0.1),
                            progress = false})
        -- oracle: g~ at w0 + 0.1 g/||g||, then w1 = w0 - lr (g~ + wd w0)
        local m2 = nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3, dtype = "f64"}
        local ps = m2:parameters()
        local g = ls.grad(ls.cross_entropy(m2(d.x), d.y), ps)
        local n = 0
        for _, t in ipairs(g) do n = n + (t * t):sum():item() end
        ls.no_grad(function()
            for i, p in ipairs(ps) do p:detach():copy(p + g[i] * (0.1 / (math.sqrt(n) + 1e-12))) end
        end)
        local g2 = ls.grad(ls.cross_entropy(m2(d.x), d.y), ps)
        local flat = {}
        for i, t in ipairs(g2) do flat[i] = t:reshape(-1) end
        local off, expect = 1, w0:clone()
        for _, t in ipairs(flat) do
            local k = t:numel()
            local seg = expect:narrow(1, off, k)
            seg:copy(seg - (t + seg * 0.01) * 0.1)
            off = off + k
        end
        assert.is_true((model:flatten_parameters() - expect):abs():max():item() < 1e-14)
    end)
end)

describe("the batch view's randomness", function()
    it("replays unseeded dropout masks but not the method's own draws", function()
        local model = nn.sequential{nn.flatten(), nn.linear(64, 8, {seed = 1}), nn.dropout(0.5),
                                    nn.linear(8, 4, {seed = 2})}
        local d = images(8, 2)
        local outs, draws = {}, {}
        local m = {name = "draws"}
        function m:step(b)
            for k = 1, 2 do
                local _, out = b:loss()
                outs[k] = out:detach():clone()
                draws[k] = ls.rand({3}):totable()           -- the global stream, as a method may
            end
            b:backward()
        end
        ls.manual_seed(3)
        model:train()
        ls.train(model, d, {optimizer = ls.optim.sgd(model, {lr = 0}), batch = 8, method = m,
                            shuffle = false, progress = false})
        assert.is_true(outs[1]:equal(outs[2]))                 -- the same dropout mask
        assert.are_not.same(draws[1], draws[2])                -- the method's draws go on
        -- and the stream ends where one forward and the method's two draws leave it
        ls.manual_seed(3)
        ls.rand({8, 8})
        ls.rand({3}); ls.rand({3})
        assert.are.same(ls.get_rng_state(), (function()
            ls.manual_seed(3)
            model:train()
            ls.train(model, d, {optimizer = ls.optim.sgd(model, {lr = 0}), batch = 8, method = m,
                                shuffle = false, progress = false})
            return ls.get_rng_state()
        end)())
    end)
end)

describe("the method protocol", function()
    it("lets a method make the update in place of opt:step(), after clipping, with its state",
       function()
        local order = {}
        local m = {name = "spy"}
        function m:init(obj, opt)
            assert.are.equal("train", obj.mode)
            assert.is_truthy(opt.step)
            return {n = 0}
        end
        function m:step(b, _, st)
            order[#order + 1] = "step"
            st.n = st.n + 1
            b:backward()
        end
        function m:update(b, opt, st)
            local n = 0
            for _, p in ipairs(b.params) do n = n + p.grad:norm():item() ^ 2 end
            order[#order + 1] = string.format("update %d %.6f", st.n, math.sqrt(n))
            opt:step()
        end
        local function run(method)
            local model = nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3}
            ls.train(model, images(32, 5), {optimizer = ls.optim.sgd(model, {lr = 0.1}), batch = 16,
                                             method = method, progress = false,
                                             clip_grad_norm = 1e-3})
            return bits(model)
        end
        local w = run(m)
        assert.are.same({"step", "update 1 0.001000", "step", "update 2 0.001000"}, order)
        assert.are.same(run(nil), w)   -- an update that calls opt:step() is the default
        -- an update that does nothing leaves the weights alone
        local idle = {name = "idle", step = function(_, b) b:backward() end, update = function() end}
        local model = nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3}
        local w0 = bits(model)
        ls.train(model, images(32, 5), {optimizer = ls.optim.sgd(model, {lr = 0.1}), batch = 16,
                                         method = idle, progress = false})
        assert.are.same(w0, bits(model))
        has(errmsg(ls.train, model, images(16, 1), {optimizer = ls.optim.sgd(model),
                                                    method = {name = "u", step = print, update = 1}}),
            "train: the method's update must be a function")
    end)

    it("splits a batch into sub-batch views (m-sharpness) and logs their mean loss", function()
        local seen = {}
        local m = {name = "chunks"}
        function m:step(b)
            local acc
            for _, sub in ipairs(b:split(5)) do
                seen[#seen + 1] = sub.B
                local _, g = sub:grad()
                for i, t in ipairs(g) do g[i] = t * (sub.B / b.B) end
                if acc then for i = 1, #g do acc[i] = acc[i] + g[i] end else acc = g end
            end
            b:set_grad(acc)
        end
        local model = nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3, dtype = "f64"}
        local d = images(12, 5, "f64")
        local log = ls.train(model, d, {optimizer = ls.optim.sgd(model, {lr = 0.1}), batch = 12,
                                        shuffle = false, method = m, progress = false})
        assert.are.same({5, 5, 2}, seen)
        local m0 = nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3, dtype = "f64"}
        local l0 = ls.cross_entropy(m0(d.x), d.y):item()
        assert.is_true(math.abs(log.epochs[1].train_loss - l0) < 1e-13)
        -- the chunk gradients weighted by size are the full-batch gradient: same step as plain
        ls.train(m0, d, {optimizer = ls.optim.sgd(m0, {lr = 0.1}), batch = 12, shuffle = false,
                         progress = false})
        assert.is_true((m0:flatten_parameters() - model:flatten_parameters()):abs():max():item() < 1e-14)
    end)

    it("refuses a method without a step or a name, and a method that never evaluates", function()
        local model = nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3}
        local opt = ls.optim.sgd(model, {lr = 0.1})
        has(errmsg(ls.train, model, images(16, 1), {optimizer = opt, method = {name = "x"}}),
            "train: option 'method' must be a training method")
        has(errmsg(ls.train, model, images(16, 1), {optimizer = opt, method = {step = print}}),
            "train: the method has no name")
        has(errmsg(ls.train, model, images(16, 1), {optimizer = opt, progress = false,
                                                    method = {name = "idle", step = function() end}}),
            "train: the method 'idle' did not evaluate the batch (step 1)")
    end)
end)

describe("divergence", function()
    it("is declared for Adam at lr 1e6, by the bound on the loss", function()
        local model = nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local opt = ls.optim.adam(model, {lr = 1e6})
        local log = ls.train(model, images(200, 11), {optimizer = opt, epochs = 5, batch = 16,
                                                      progress = false})
        assert.are.equal("diverged", log.status)
        assert.is_true(log.diverged_at >= 2 and log.diverged_at < 5 * 13)
        has(log.diverged_reason, "above 1000 x the first loss")
        -- without the bound the same run ends "ok" with an absurd loss (what the bound is for)
        local m2 = nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local l2 = ls.train(m2, images(200, 11), {optimizer = ls.optim.adam(m2, {lr = 1e6}),
                                                  epochs = 5, batch = 16, progress = false,
                                                  max_loss_ratio = false})
        assert.are.equal("ok", l2.status)
        assert.is_true(l2.epochs[1].train_loss > 1e6)
    end)

    it("does not fire on a normal run, with any method", function()
        for _, method in ipairs({ls.methods.plain(), sam(0.05), gnorm(0.01)}) do
            local model = nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
            local log = ls.train(model, images(200, 11), {optimizer = ls.optim.adam(model, {lr = 1e-3}),
                                                          epochs = 3, batch = 16, method = method,
                                                          progress = false, max_loss_ratio = 1.5})
            assert.are.equal("ok", log.status)
        end
    end)

    it("is declared when a step makes the parameters non-finite", function()
        local model = nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local bad = {name = "inf", n = 0}
        function bad:step(b)
            b:backward()
            self.n = self.n + 1
            if self.n == 3 then b.params[1].grad = b.params[1].grad * math.huge end
        end
        local log = ls.train(model, images(64, 1), {optimizer = ls.optim.sgd(model, {lr = 0.1}),
                                                    batch = 16, method = bad, progress = false})
        assert.are.equal("diverged", log.status)
        assert.are.equal(3, log.diverged_at)
        has(log.diverged_reason, "non-finite parameters")
        has(errmsg(ls.train, model, images(16, 1), {optimizer = ls.optim.sgd(model),
                                                    max_loss_ratio = -1}),
            "train: option 'max_loss_ratio' must be a positive number or false")
    end)

    it("is declared at the step that makes them non-finite, whoever makes the update", function()
        -- the optimizer's own report (SGD, Adam, AdamW), a method's own update (checked in full),
        -- and a parameter without a gradient made non-finite in the first step (the first step's
        -- full check); the NaN is placed in the given step's gradient of the last parameter
        local function run(kind, nan_at, opts)
            local model = nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
            local m = {name = "nan", n = 0}
            function m:step(b)
                b:backward()
                self.n = self.n + 1
                local ps = b.params
                if self.n == nan_at then ps[#ps].grad = ps[#ps].grad * (0 / 0) end
            end
            if opts and opts.update then function m:update(_, opt) opt:step() end end
            if opts and opts.frozen_nan then   -- written by the step, after the loss
                function m:step(b)
                    b:backward()
                    b.params[1].grad = nil
                    ls.no_grad(function() b.params[1]:detach():fill(0 / 0) end)
                end
            end
            local opt = ls.optim[kind](model, {lr = 1e-3})
            return ls.train(model, images(64, 1), {optimizer = opt, batch = 16, epochs = 2,
                                                   method = m, progress = false})
        end
        for _, kind in ipairs({"sgd", "adam", "adamw"}) do
            for _, at in ipairs({1, 2, 6}) do
                local log = run(kind, at)
                assert.are.equal("diverged", log.status)
                assert.are.equal(at, log.diverged_at)
                has(log.diverged_reason, "non-finite parameters")
            end
            assert.are.equal(5, run(kind, 5, {update = true}).diverged_at)
            assert.are.equal("ok", run(kind, 99).status)
        end
        local log = run("sgd", 99, {frozen_nan = true})
        assert.are.equal(1, log.diverged_at)
        has(log.diverged_reason, "non-finite parameters")
    end)
end)
