-- ls.train and ls.evaluate (landscape.train.loop) and landscape.train.progress: the loop with a minimal
-- stand-in model and optimizer (the protocol), then with ls.nn and ls.optim: logs, callbacks,
-- schedules, clipping, divergence, determinism bit for bit, evaluation modes, bad input, and a short
-- real training on Fashion-MNIST.
local ls = require "landscape"
local progress = require "landscape.train.progress"

local FMNIST = os.getenv("LANDSCAPE_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
local have_nn = pcall(require, "landscape.nn") and pcall(require, "landscape.train.optim")

local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

-- A separable 3-class problem: x [n, 4] (f64), label = 1 + the index of the largest of the first
-- three features.
local function blobs(n, seed, dtype)
    local x = ls.randn({n, 4}, {seed = seed, dtype = dtype or "f64"})
    local y = x:narrow(2, 1, 3):argmax(2)
    return ls.dataset(x, y)
end

-- The smallest model and optimizer the loop accepts: forward + parameters, and step + zero_grad
-- (plain SGD written with ls.no_grad and detach():copy()).
local function standin(seed)
    local w = ls.randn({4, 3}, {seed = seed, dtype = "f64", std = 0.1}):requires_grad()
    local model = {w = w}
    function model:forward(x) return x:matmul(self.w) end
    function model:parameters() return {self.w} end
    local opt = {lr = 0.5, steps = 0}
    function opt:zero_grad() w.grad = nil end
    function opt:step()
        self.steps = self.steps + 1
        ls.no_grad(function() w:detach():copy(w - w.grad * (self.lr or 0.5)) end)
    end
    return model, opt
end

describe("ls.train with a stand-in model and optimizer", function()
    it("trains and logs one row per epoch", function()
        local model, opt = standin(1)
        local train, test = blobs(300, 1), blobs(200, 2)
        local log = ls.train(model, train, {optimizer = opt, epochs = 3, batch = 32, eval = test,
                                            progress = false})
        assert.are.equal("ok", log.status)
        assert.are.equal(30, log.steps)                     -- 3 x ceil(300 / 32)
        assert.are.equal(30, opt.steps)
        assert.is_nil(log.diverged_at)
        assert.are.equal(3, #log.epochs)
        for e, row in ipairs(log.epochs) do
            assert.are.equal(e, row.epoch)
            assert.are.equal(10 * e, row.steps)
            assert.are.equal(0.5, row.lr)
            assert.is_true(row.seconds >= row.train_seconds and row.train_seconds > 0)
            assert.are.equal(200, row.eval_n)
        end
        assert.is_true(log.epochs[3].train_loss < log.epochs[1].train_loss)
        assert.is_true(log.epochs[3].eval_accuracy > 0.9)
        -- the eval row is ls.evaluate of the final model
        local r = ls.evaluate(model, test)
        assert.are.equal(log.epochs[3].eval_accuracy, r.accuracy)
        assert.near(log.epochs[3].eval_loss, r.loss, 1e-12)
    end)

    it("accepts a table {x, y} and a loss function", function()
        local model, opt = standin(2)
        local calls = 0
        local function loss(logits, y)
            calls = calls + 1
            return ls.cross_entropy(logits, y) * 2
        end
        local d = blobs(64, 3)
        local log = ls.train(model, {x = d.x, y = d.y},
                             {optimizer = opt, batch = 16, loss = loss, progress = false})
        assert.are.equal(4, calls)
        assert.are.equal("ok", log.status)
    end)
end)

describe("ls.evaluate", function()
    it("computes the mean loss and accuracy without recording, in eval mode", function()
        local model = standin(3)
        local d = blobs(250, 4)
        local modes, grad_on = {}, {}
        model.training = true
        function model:train() self.training = true; modes[#modes + 1] = "train" end
        function model:eval() self.training = false; modes[#modes + 1] = "eval" end
        local fwd = model.forward
        function model:forward(x)
            grad_on[#grad_on + 1] = ls.is_grad_enabled()
            assert.is_false(self.training)
            return fwd(self, x)
        end
        local r = ls.evaluate(model, d, {batch = 100})
        assert.are.same({false, false, false}, grad_on)      -- 3 batches: 100, 100, 50
        assert.are.same({"eval", "train"}, modes)
        local logits = d.x:matmul(model.w)
        assert.near(ls.cross_entropy(logits, d.y):item(), r.loss, 1e-12)
        local hits = logits:argmax(2):double():eq(d.y:double()):sum():item()
        assert.are.equal(hits / 250, r.accuracy)
        assert.are.equal(250, r.n)
        -- a model in eval mode stays in eval mode
        model:eval()
        modes = {}
        ls.evaluate(model, d)
        assert.is_false(model.training)
        -- and the mode comes back after an error too
        model:train()
        function model:forward() error("boom") end
        has(errmsg(ls.evaluate, model, d), "boom")
        assert.is_true(model.training)
    end)
end)

describe("ls.train and ls.evaluate reject bad input", function()
    it("names the function and the problem", function()
        local model, opt = standin(1)
        local d = blobs(20, 1)
        has(errmsg(ls.train, model, d), "train: an options table with an optimizer is required")
        has(errmsg(ls.train, model, d, {epochs = 1}), "train: option 'optimizer' is required")
        has(errmsg(ls.train, model, d, {optimizer = {}}),
            "train: option 'optimizer' must have step() and zero_grad()")
        has(errmsg(ls.train, model, d, {optimizer = opt, epocs = 2}), "train: unknown option 'epocs'")
        has(errmsg(ls.train, model, d, {optimizer = opt, batch = 0}),
            "train: option 'batch' must be a positive integer, got 0")
        has(errmsg(ls.train, model, {x = ls.zeros({0, 4}, {dtype = "f64"}), y = {}},
                   {optimizer = opt}), "train: empty dataset (x has shape [0x4])")
        has(errmsg(ls.train, model, {x = d.x, y = {1, 2, 3}}, {optimizer = opt}),
            "train: x has 20 examples (shape [20x4]) but y has 3 labels")
        has(errmsg(ls.train, model, ls.dataset(d.x, ls.full({20}, 4, {dtype = "i64"})),
                   {optimizer = opt, progress = false}),
            "train: the training data has label 4 but the model outputs 3 classes")
        has(errmsg(ls.train, model, d, {optimizer = opt, progress = false,
                                        eval = ls.dataset(d.x, ls.full({20}, 9, {dtype = "i64"}))}),
            "train: the eval dataset has label 9 but the model outputs 3 classes")
        has(errmsg(ls.train, model, d, {optimizer = opt, augment = {flip = true}}),
            "train: augmentation needs images [N, C, H, W]")
        has(errmsg(ls.train, model, "data", {optimizer = opt}), "train: data must be a dataset")
        has(errmsg(ls.train, 42, d, {optimizer = opt}), "train: model must be a module")
        has(errmsg(ls.train, model, d, {optimizer = opt, progress = "fancy"}),
            "train: option 'progress' must be")
        has(errmsg(ls.evaluate, model, ls.dataset(d.x, ls.full({20}, 5, {dtype = "i64"}))),
            "evaluate: the dataset has label 5 but the model outputs 3 classes")
        has(errmsg(ls.evaluate, model, {x = d.x, y = {1}}),
            "evaluate: x has 20 examples (shape [20x4]) but y has 1 labels")
        has(errmsg(ls.evaluate, model, d, {batch = -1}), "evaluate: option 'batch' must be")
        -- the position is the caller's line
        has(errmsg(function() local r = ls.train(model, d); return r end), "train_spec.lua:")
    end)
end)

describe("the training log", function()
    local function capture(fn)
        local lines = {}
        local fake = {write = function(self, ...)
            for _, s in ipairs({...}) do lines[#lines + 1] = tostring(s) end
            return self
        end, flush = function() end}
        local real = io.stdout
        io.stdout = fake
        local ok, err = pcall(fn)
        io.stdout = real
        assert(ok, err)
        return table.concat(lines)
    end

    it("writes plain lines every log_every steps and per epoch", function()
        local model, opt = standin(1)
        local out = capture(function()
            ls.train(model, blobs(100, 1), {optimizer = opt, epochs = 2, batch = 10, log_every = 4,
                                            progress = "log"})
        end)
        local steps = {}
        for s in out:gmatch("step %d+/10 %((%d+)%)") do steps[#steps + 1] = tonumber(s) end
        assert.are.same({4, 8, 12, 16, 20}, steps)
        assert.truthy(out:find("epoch 1/2  train_loss %d%.%d+  train_acc %d%.%d+  lr 0.5"))
        assert.truthy(out:find("epoch 2/2  train_loss"))
        local m2, o2 = standin(2)
        o2.lr = nil                                     -- an optimizer without an lr field
        local out2 = capture(function()
            ls.train(m2, blobs(20, 1), {optimizer = o2, batch = 10, log_every = 1, progress = "log"})
        end)
        assert.truthy(out2:find("step 2/2 (2)  loss", 1, true))
        assert.falsy(out2:find("lr", 1, true))
        local silent = capture(function()
            ls.train(model, blobs(100, 1), {optimizer = opt, batch = 10, progress = false})
        end)
        assert.are.equal("", silent)
    end)

    it("draws a progress bar", function()
        local model, opt = standin(1)
        local out = capture(function()
            ls.train(model, blobs(100, 1), {optimizer = opt, epochs = 1, batch = 10,
                                            progress = "bar"})
        end)
        assert.truthy(out:find("\repoch 1/1 [==============================] 10/10", 1, true))
        assert.truthy(out:find("\n$"))
        local bar = progress.bar{total = 4, label = "x", width = 8, out = {write = function() end,
                                                                             flush = function() end}}
        assert.truthy(bar:render(2, "loss 1"):find("^x %[====>   %] 2/4 .* eta .*  loss 1$"))
        assert.are.equal("boolean", type(progress.is_tty()))
        assert.are.equal("1m05s", progress.format_time(65))
    end)
end)

describe("ls.train with ls.nn and ls.optim", function()
    local function images(n, seed)
        -- 8x8 one-channel images; class = the quadrant holding the brightest blob
        local x = ls.randn({n, 1, 8, 8}, {seed = seed, std = 0.3})
        local y = ls.randint(1, 5, {n}, {seed = seed + 1})
        local yl = y:totable()
        for i = 1, n do
            local r, c = (yl[i] - 1) // 2, (yl[i] - 1) % 2
            x[i][1]:narrow(1, 4 * r + 1, 4):narrow(2, 4 * c + 1, 4):copy(
                x[i][1]:narrow(1, 4 * r + 1, 4):narrow(2, 4 * c + 1, 4) + 1)
        end
        return ls.dataset(x, y)
    end

    local function run(seed, opts)
        local model = ls.nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9})
        local o = {optimizer = opt, epochs = 2, batch = 16, seed = seed, progress = false}
        for k, v in pairs(opts or {}) do o[k] = v end
        local log = ls.train(model, images(200, 11), o)
        return model:flatten_parameters():totable(), log, model, opt
    end

    it("is deterministic: same seed, same weights bit for bit", function()
        if not have_nn then return pending("landscape.nn or landscape.optim missing") end
        local aug = {crop = 2, flip = true}
        local w1, log1 = run(5, {augment = aug})
        local w2, log2 = run(5, {augment = aug})
        local w3 = run(6, {augment = aug})
        local w4 = run(5)
        assert.are.equal("ok", log1.status)
        assert.are.same(w1, w2)                         -- exact equality of every float
        assert.are.same(log1.epochs[2].train_loss, log2.epochs[2].train_loss)
        assert.are_not.same(w1, w3)
        assert.are_not.same(w1, w4)
    end)

    it("learns, calls the callback and the schedule, and can be stopped", function()
        if not have_nn then return pending("landscape.nn or landscape.optim missing") end
        local seen = {}
        local _, log, model = run(1, {epochs = 3, eval = images(100, 21), every = 5,
                                      callback = function(st)
                                          seen[#seen + 1] = st.step
                                          assert.are.equal("number", type(st.loss))
                                          assert.is_true(st.model ~= nil and st.epoch >= 1)
                                      end})
        assert.are.equal(39, log.steps)                  -- 3 x ceil(200 / 16)
        assert.are.same({5, 10, 15, 20, 25, 30, 35}, seen)
        assert.is_true(log.epochs[3].eval_accuracy > 0.9)
        assert.is_true(model.training)                   -- back in training mode after eval
        -- an epoch schedule steps once per epoch and the log shows each epoch's rate
        local m2 = ls.nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local opt = ls.optim.sgd(m2, {lr = 0.1})
        local sched = ls.optim.schedule.step(opt, {step_size = 1, gamma = 0.5})
        local l2 = ls.train(m2, images(64, 1), {optimizer = opt, epochs = 3, batch = 16,
                                                schedule = sched, progress = false})
        assert.are.same({0.1, 0.05, 0.025}, {l2.epochs[1].lr, l2.epochs[2].lr, l2.epochs[3].lr})
        -- a per-step schedule steps after every optimizer step
        local opt2 = ls.optim.sgd(m2, {lr = 0.1})
        local count = {n = 0, step = function(self) self.n = self.n + 1 end}
        ls.train(m2, images(64, 1), {optimizer = opt2, epochs = 2, batch = 16, schedule = count,
                                     schedule_every = "step", progress = false})
        assert.are.equal(8, count.n)
        -- epoch-end callback; returning false stops
        local ends = {}
        local l3 = ls.train(m2, images(64, 1), {optimizer = opt2, epochs = 5, batch = 16,
                                                progress = false, callback = function(st)
                                                    ends[#ends + 1] = st.row.epoch
                                                    if st.epoch == 2 then return false end
                                                end})
        assert.are.equal("stopped", l3.status)
        assert.are.same({1, 2}, ends)
        assert.are.equal(2, #l3.epochs)
    end)

    it("clips the gradient norm", function()
        if not have_nn then return pending("landscape.nn or landscape.optim missing") end
        local model = ls.nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local before = model:flatten_parameters()
        local opt = ls.optim.sgd(model, {lr = 1})
        local d = images(16, 3)
        ls.train(model, d, {optimizer = opt, batch = 16, clip_grad_norm = 1e-3, progress = false})
        local moved = (model:flatten_parameters() - before):norm():item()
        assert.is_true(moved > 0 and moved <= 1e-3 * (1 + 1e-5), "moved " .. moved)
    end)

    it("stops a diverging run with status 'diverged' instead of an error", function()
        if not have_nn then return pending("landscape.nn or landscape.optim missing") end
        local model = ls.nn.mlp{input = 64, hidden = {16}, classes = 4, seed = 7}
        local opt = ls.optim.sgd(model, {lr = 1e10})
        local log = ls.train(model, images(200, 11), {optimizer = opt, epochs = 5, batch = 16,
                                                      progress = false})
        assert.are.equal("diverged", log.status)
        assert.are.equal("integer", math.type(log.diverged_at))
        assert.is_true(log.diverged_at > 1 and log.diverged_at < 5 * 13)
        assert.are.equal(log.diverged_at, log.steps)
        assert.is_true(#log.epochs < 5)
        -- the weights are those that gave the non-finite loss (not changed by a later step)
        local loss = ls.no_grad(function()
            return ls.cross_entropy(model(images(200, 11).x), images(200, 11).y):item()
        end)
        assert.is_true(loss ~= loss or loss == math.huge or loss > 1e6)
    end)
end)

describe("a real training on Fashion-MNIST", function()
    local f = io.open(FMNIST .. "/train-images-idx3-ubyte.gz", "rb")
    local have = f ~= nil
    if f then f:close() end

    it("reaches 80 % test accuracy with an MLP in 2 epochs on 10k images", function()
        if not have then return pending("no Fashion-MNIST in " .. FMNIST) end
        if not have_nn then return pending("landscape.nn or landscape.optim missing") end
        local train = ls.data.fashion_mnist{split = "train", n = 10000, seed = 1}
        local test = ls.data.fashion_mnist{split = "test"}
        local model = ls.nn.mlp{hidden = {256}, seed = 1}
        local opt = ls.optim.adam(model, {lr = 1e-3})
        local log = ls.train(model, train, {optimizer = opt, epochs = 2, batch = 64, seed = 1,
                                            eval = test, progress = false})
        assert.are.equal("ok", log.status)
        local acc = log.epochs[2].eval_accuracy
        assert.is_true(acc >= 0.80, string.format("test accuracy %.4f", acc))
        assert.is_true(log.epochs[2].train_loss < log.epochs[1].train_loss)
        assert.are.equal(10000, log.epochs[2].eval_n)
    end)
end)
