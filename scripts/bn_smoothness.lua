--- Batch norm and the smoothness of the loss along training (Santurkar et al. 2018, Fig. 4).
--
-- usage: landscape scripts/bn_smoothness.lua [options]
--   --steps N        SGD steps per network (default 300)
--   --every K        probe every K steps (default 10)
--   --arch mlp|cnn   mlp: ls.nn.mlp{hidden = {256, 256}}; cnn: ls.nn.cnn{channels = {8, 16},
--                    hidden = 64} (default mlp); each with and without batch norm
--   --lr L           SGD learning rate, no momentum, the same for both networks (default 0.1)
--   --batch B        (default 128)   --n N   Fashion-MNIST training subset (default 5000)
--   --eta-scale S    the probe's step sizes are S * {0.05, 0.1, ..., 0.4} (default 1)
--   --seed S         model initialisation and batch order, the same for both (default 1)
--   --threads T      --out DIR (default out/)
-- The two networks differ only in batch norm: same seed, same data order, same lr. Every K steps,
-- before the update, ls.landscape.bn_probe runs on the current batch along the current gradient,
-- in train mode (batch statistics; running statistics left alone). Writes DIR/bn_smoothness.csv
-- (step, bn, loss, loss_range, grad_range, beta, ...) and DIR/bn_smoothness.png (three panels,
-- with and without batch norm), and prints the mean of each measure per network.
local ls = require "landscape"
local fs = ls.fs

local P = require("landscape.study.args").parser{
    name = "bn_smoothness", usage = "landscape scripts/bn_smoothness.lua [options]", options = {
    {"steps", 300, "SGD steps per network", min = 1},
    {"every", 10, "probe every K steps", min = 1},
    {"arch", "mlp", "each with and without batch norm", choices = {"mlp", "cnn"}},
    {"lr", 0.1, "SGD learning rate", min = 0},
    {"batch", 128, "batch size", min = 1},
    {"n", 5000, "Fashion-MNIST training subset", min = 1},
    {"eta_scale", 1.0, "the probe's step sizes are S * {0.05, ..., 0.4}", min = 0},
    {"seed", 1, "model initialisation and batch order", min = 1},
    {"threads", nil, "engine and BLAS threads", type = "integer", min = 1},
    {"out", "out", "output directory", type = "dir", column = false}}}
local cfg = P:parse(arg)
local function usage(msg)
    io.stderr:write("bn_smoothness: ", msg, "\n", P:usage())
    os.exit(2)
end

local function build(bn)
    if cfg.arch == "mlp" then
        return ls.nn.mlp{hidden = {256, 256}, batchnorm = bn, seed = cfg.seed}
    elseif cfg.arch == "cnn" then
        return ls.nn.cnn{channels = {8, 16}, hidden = 64, batchnorm = bn, seed = cfg.seed}
    end
    usage("--arch must be mlp or cnn")
end

local function run(train, bn, rows)
    local model = build(bn)
    model:train()
    local opt = ls.optim.sgd(model, {lr = cfg.lr})
    local etas = {}
    for k = 1, 8 do etas[k] = 0.05 * k end
    local step, epoch = 0, 0
    while step < cfg.steps do
        epoch = epoch + 1
        for xb, yb in train:batches(cfg.batch, {seed = cfg.seed, epoch = epoch, drop_last = true}) do
            step = step + 1
            if (step - 1) % cfg.every == 0 or step == cfg.steps then
                local r = ls.landscape.bn_probe(model, xb, yb, {etas = etas, scale = cfg.eta_scale})
                r.step, r.bn, r.arch, r.lr, r.seed, r.batch = step, bn and 1 or 0, cfg.arch, cfg.lr,
                                                              cfg.seed, cfg.batch
                rows[#rows + 1] = r
            end
            opt:zero_grad()
            local loss = ls.cross_entropy(model(xb), yb)
            loss:backward()
            opt:step()
            if step >= cfg.steps then break end
        end
    end
    return model
end

local function main()
    if cfg.threads then ls.set_threads(cfg.threads) end
    local t0 = ls.clock()
    local train = ls.data.fashion_mnist{split = "train", n = cfg.n, seed = cfg.seed}
    local rows = {}
    local times = {}
    for _, bn in ipairs{false, true} do
        local t = ls.clock()
        local model = run(train, bn, rows)
        times[bn] = ls.clock() - t
        local ev = ls.evaluate(model, train)
        print(string.format("%-8s %d steps, train-subset loss %.4f acc %.4f (%.1fs)",
                            bn and "bn" or "no-bn", cfg.steps, ev.loss, ev.accuracy, times[bn]))
    end
    assert(fs.mkdir_p(cfg.out))
    local csv = cfg.out .. "/bn_smoothness.csv"
    ls.csv.write(csv, rows)
    local png = cfg.out .. "/bn_smoothness.png"
    ls.plot.lines(rows, {x = "step", y = {"loss_range", "grad_range", "beta"}, group = "bn",
                         panels = true, out = png, logy = true,
                         title = "Santurkar et al. Fig. 4: " .. cfg.arch .. ", lr " .. cfg.lr})
    for _, bn in ipairs{0, 1} do
        local s, c = {loss_range = 0, grad_range = 0, beta = 0}, 0
        for _, r in ipairs(rows) do
            if r.bn == bn then
                c = c + 1
                for k in pairs(s) do s[k] = s[k] + r[k] end
            end
        end
        print(string.format("bn=%d  %d probes: mean loss_range %.4f  grad_range %.4f  beta %.3f", bn,
                            c, s.loss_range / c, s.grad_range / c, s.beta / c))
    end
    print(string.format("wrote %s and %s in %.1fs", csv, png, ls.clock() - t0))
end

local ok, err = xpcall(main, debug.traceback)
if not ok then io.stderr:write(tostring(err), "\n"); os.exit(1) end
