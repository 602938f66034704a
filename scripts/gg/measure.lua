--- gg.measure: one job of the generalization-gap study (scripts/gg_study.lua): train one MLP on a
-- Fashion-MNIST subset for a fixed budget of example passes and measure it at five checkpoints.
-- docs/study.md is the guide; /work/shared/reference/generalization-gap.md §6.3-6.4 the design.
--
--   local measure = require "gg.measure"
--   local rows = measure.run(cfg)          -- one row per checkpoint (a list of flat tables)
--
-- cfg (a cell of the study's grid): n, noise, width, depth, bn (0/1), wd, lr (per 256 examples),
-- batch, replicate, budget (example passes), lr_scaling ("linear", "sqrt" or "none").
--
-- Seeds (all logged in every row): the class-balanced subset and the corrupted labels depend on
-- (n, replicate) only, so every configuration sharing them trains on the same examples with the
-- same noisy labels (§6.2); the initialisation and the minibatch order are derived from the whole
-- cell (ls.study.derive_seed), so that no two networks share them.
--
-- A row (every column is documented in docs/study.md, "models.csv"):
--   frac, step                          the checkpoint: 0.1, 0.25, 0.5, 0.75, 1 of the steps
--   train_acc, train_loss               on the training labels (noisy ones included), eval mode
--   clean_train_acc                     the same examples with their clean labels
--   test_acc, test_loss                 the full 10 000-image test set
--   gap                                 100 (train_acc - test_acc): GG in percentage points
--   kept                                the fraction of training examples with a positive margin
--   p5p95.<slot>.<stat>                 log of P5, Q1, Q2, Q3, P95 of the normalised positive
--                                       margins at slot input, first, last, output (§6.4 main)
--   fences.<slot>.<stat>, .n_clipped    log of Q1, Q2, Q3 and the Tukey fences, a value <= 0
--                                       clipped to log(1e-12) and counted (the paper's variant)
--   unnorm.<slot>.<stat>                log P5 ... P95 of the margins before the division by nu
--   nu.<slot>                           the total variation nu of the slot's activations
--   out_margin_p10                      10th percentile of f_y - f_j over all training examples
--   l2_sq, log_prod_fro, log_prod_spec  sum of ||W||_F^2, sum of log ||W||_F^2, sum of
--                                       log ||W||_2^2 over the linear layers' weights
--   dist_init                           ||w - w_0||_2 over every parameter
--   sharpness                           Keskar's epsilon-sharpness (eps 1e-4, 20 ascent steps, the
--                                       first 1024 training examples); final checkpoint only
--   status, diverged_at, steps, lr_step, params, and the four seeds
local ls = require "landscape"
local grid = require "landscape.study.grid"

local M = {}

M.FRACTIONS = {0.1, 0.25, 0.5, 0.75, 1.0}
M.SLOTS = {"input", "first", "last", "output"}
M.P5P95 = {"p5", "q1", "q2", "q3", "p95"}
M.FENCES = {"q1", "q2", "q3", "fence_lo", "fence_hi"}
M.MOMENTUM = 0.9
M.SHARPNESS = {epsilon = 1e-4, steps = 20, n = 1024}

--- The learning rate of one step: cfg.lr is given per 256 examples and scaled to the batch by the
-- rule (linear: Goyal et al. 2017; sqrt: Krizhevsky 2014, Hoffer et al. 2017; none: as given).
function M.lr_step(lr, batch, rule)
    if rule == "linear" then return lr * batch / 256 end
    if rule == "sqrt" then return lr * math.sqrt(batch / 256) end
    if rule == "none" then return lr end
    error("gg.measure: unknown lr_scaling '" .. tostring(rule) .. "' (linear, sqrt, none)", 0)
end

--- The optimizer steps of a budget of example passes, and the checkpoint steps.
function M.schedule(budget, batch)
    local steps = math.max(1, math.floor(budget / batch + 0.5))
    local marks = {}
    for i, f in ipairs(M.FRACTIONS) do
        marks[i] = {frac = f, step = math.max(1, math.floor(f * steps + 0.5))}
    end
    return steps, marks
end

-- Data, loaded once per process and shared by the jobs it runs: the test set and one training
-- subset per (n, noise, replicate). Only the chosen images are converted to f32, so a worker holds
-- the 10 000 test images and the subsets it has met (a few tens of MB), never the 60 000.
local cache = {}
-- The loader reads the whole IDX file (47 MB of training images) and converts; Lua's collector
-- does not see the size of those temporary tensors, so collect them at once (the worker's peak RSS
-- would otherwise hold several of them).
local function loaded(ds)
    collectgarbage("collect")
    return ds
end

function M.test_set()
    if not cache.test then cache.test = loaded(ls.data.fashion_mnist{split = "test"}) end
    return cache.test
end

function M.train_set(n, noise, replicate)
    local key = string.format("%d/%s/%d", n, tostring(noise), replicate)
    if not cache[key] then
        local clean_key = string.format("%d/clean/%d", n, replicate)
        if not cache[clean_key] then
            cache[clean_key] = loaded(ls.data.fashion_mnist{split = "train", n = n,
                                                            seed = replicate})
        end
        local ds = cache[clean_key]
        if noise > 0 then ds = ds:with_label_noise(noise, {seed = replicate}) end
        cache[key] = ds
    end
    return cache[key]
end

--- The seeds of a cell: data subset and label noise from the replicate, init and order derived
-- from the whole cell.
function M.seeds(cfg)
    return {data_seed = cfg.replicate, noise_seed = cfg.replicate,
            init_seed = grid.derive_seed(cfg, "init"), order_seed = grid.derive_seed(cfg, "order")}
end

-- The largest singular value of a matrix W [m x k] by power iteration on W^T W (f64), to a
-- relative change below 1e-6 or 200 iterations, from a fixed start.
local function spectral_norm(W)
    W = W:double()
    local v = ls.ones({W:size(2)}, {dtype = "f64"})
    v = v / v:norm()
    local s = 0
    for _ = 1, 200 do
        local u = W:matmul(v)
        local w = W:t():matmul(u)
        local nw = w:norm():item()
        if nw == 0 then return 0 end
        local s_new = math.sqrt(nw)
        v = w / nw
        if math.abs(s_new - s) <= 1e-6 * s_new then return s_new end
        s = s_new
    end
    return s
end

--- Norm baselines of a model: l2_sq, log_prod_fro, log_prod_spec over the weight matrices (dim 2),
-- dist_init over every parameter against the list w0 (same order), params (the count).
function M.norms(model, w0)
    local out = {l2_sq = 0, log_prod_fro = 0, log_prod_spec = 0, params = 0}
    local d2 = 0
    ls.no_grad(function()
        for i, p in ipairs(model:parameters()) do
            out.params = out.params + p:numel()
            local diff = p:double() - w0[i]
            d2 = d2 + (diff * diff):sum():item()
            if p:dim() == 2 then
                local f2 = (p:double() * p:double()):sum():item()
                out.l2_sq = out.l2_sq + f2
                out.log_prod_fro = out.log_prod_fro + math.log(f2)
                out.log_prod_spec = out.log_prod_spec + 2 * math.log(spectral_norm(p))
            end
        end
    end)
    out.dist_init = math.sqrt(d2)
    return out
end

local function put_signature(row, prefix, sig, with_clipped)
    for name, v in pairs(sig:features()) do
        if with_clipped or not name:match("%.n_clipped$") then row[prefix .. "." .. name] = v end
    end
end

--- The measurements of one checkpoint (the model is evaluated in eval mode and left as it was).
function M.checkpoint(model, train, test, w0)
    local row = {}
    local tr = ls.evaluate(model, train)
    local te = ls.evaluate(model, test)
    row.train_acc, row.train_loss = tr.accuracy, tr.loss
    row.test_acc, row.test_loss = te.accuracy, te.loss
    row.clean_train_acc = tr.accuracy
    if train.clean_y then
        row.clean_train_acc = ls.evaluate(model, ls.dataset(train.x, train.clean_y)).accuracy
    end
    row.gap = 100 * (tr.accuracy - te.accuracy)
    local m = ls.margins(model, train, {layers = M.SLOTS, positive_only = true})
    row.kept = m.kept_fraction.output
    put_signature(row, "p5p95", ls.margins.signature(m, {stats = "quartiles+p5p95", log = true}))
    put_signature(row, "fences", ls.margins.signature(m, {stats = "quartiles+fences", log = true}),
                  true)
    put_signature(row, "unnorm", ls.margins.signature(m, {stats = "quartiles+p5p95", log = true,
                                                          raw = true}))
    for _, s in ipairs(M.SLOTS) do row["nu." .. s] = m.nu[s] end
    row.out_margin_p10 = ls.stats.percentile(m.output, 10)    -- m.output: f_y - f_j, every sample
    for k, v in pairs(M.norms(model, w0)) do row[k] = v end
    return row
end

--- Train the network of cell cfg and measure it at every checkpoint; returns the rows.
-- opts.progress(frac) is called as training advances (job:progress).
function M.run(cfg, opts)
    opts = opts or {}
    local train = M.train_set(cfg.n, cfg.noise, cfg.replicate)
    local test = M.test_set()
    local seeds = M.seeds(cfg)
    local hidden = {}
    for i = 1, cfg.depth do hidden[i] = cfg.width end
    local model = ls.nn.mlp{hidden = hidden, batchnorm = cfg.bn == 1, seed = seeds.init_seed}
    local w0 = {}
    for i, p in ipairs(model:parameters()) do w0[i] = p:double() end
    local lr = M.lr_step(cfg.lr, cfg.batch, cfg.lr_scaling)
    local opt = ls.optim.sgd(model, {lr = lr, momentum = M.MOMENTUM, weight_decay = cfg.wd})
    local steps, marks = M.schedule(cfg.budget, cfg.batch)
    local at = {}
    for _, mk in ipairs(marks) do at[mk.step] = mk.frac end
    local per_epoch = train:num_batches(cfg.batch)
    local rows = {}
    local log = ls.train(model, train, {
        optimizer = opt, batch = cfg.batch, seed = seeds.order_seed,
        epochs = (steps + per_epoch - 1) // per_epoch, progress = false, log_every = false,
        every = 1,
        callback = function(s)
            local f = at[s.step]
            if f then
                local row = M.checkpoint(model, train, test, w0)
                row.frac, row.step, row.epoch = f, s.step, s.epoch
                if f == 1.0 then
                    local sh = ls.sharpness.keskar(model, train, M.SHARPNESS)
                    row.sharpness = sh.value
                end
                rows[#rows + 1] = row
                if opts.progress then opts.progress(s.step / steps) end
            end
            if s.step >= steps then return false end
        end})
    local status = log.status == "stopped" and "ok" or log.status
    for i = #rows + 1, #marks do          -- checkpoints a diverged run never reached
        rows[i] = {frac = marks[i].frac, step = marks[i].step}
    end
    for _, row in ipairs(rows) do
        row.status, row.diverged_at = status, log.diverged_at or 0
        row.steps, row.lr_step = steps, lr
        for k, v in pairs(seeds) do row[k] = v end
        if row.sharpness == nil then row.sharpness = 0 / 0 end
    end
    return rows, log
end

return M
