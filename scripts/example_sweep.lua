--- A small study with ls.study: MLPs of two widths on a Fashion-MNIST subset, with and without label
-- noise, three seeds (12 jobs of well under a second each). docs/study-runner.md explains the runner.
--
-- usage: landscape scripts/example_sweep.lua --out out/sweep [runner options] [--epochs E] [--n N]
--   landscape scripts/example_sweep.lua --out out/sweep --jobs 2          # two local workers
--   landscape scripts/example_sweep.lua --out out/sweep --shard 1/4       # one shard of four
--   landscape scripts/example_sweep.lua --out out/sweep --slurm --shards 4   # a Slurm job array
--   landscape scripts/example_sweep.lua --out out/sweep --status | --merge
-- Writes out/sweep/sweep.csv (one row per epoch and network: width, noise, seed, then the epoch's
-- train and test accuracy and loss) and out/sweep/sweep.manifest.json.
local ls = require "landscape"

local data = {}
local function dataset(n)
    if not data[n] then   -- loaded once per process, shared by the jobs it runs
        data[n] = {train = ls.data.fashion_mnist{split = "train", n = n, seed = 1},
                   test = ls.data.fashion_mnist{split = "test", n = 2000, seed = 1}}
    end
    return data[n]
end

local study = ls.study{
    name = "sweep",
    grid = ls.study.grid({width = {64, 256}, noise = {0, 0.3}, seed = {1, 2, 3}},
                         {order = {"width", "noise", "seed"}}),
    options = {{"epochs", 3, "passes over the training subset", min = 1},
               {"n", 2000, "training images (a class-balanced subset)", min = 10}},
    cost = function(cfg) return cfg.width end,   -- wider networks take longer: start them first
    columns = {"epoch", "train_accuracy", "test_accuracy", "train_loss", "test_loss"},
    run = function(cfg, job)
        local d = dataset(job.opts.n)
        local train = d.train
        if cfg.noise > 0 then train = train:with_label_noise(cfg.noise, {seed = cfg.seed}) end
        local model = ls.nn.mlp{hidden = {cfg.width}, seed = cfg.seed}
        local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9})
        local log = ls.train(model, train, {optimizer = opt, epochs = job.opts.epochs, batch = 64,
                                            seed = cfg.seed, eval = d.test, progress = false})
        if log.status ~= "ok" then job:fail("training " .. log.status) end
        for _, e in ipairs(log.epochs) do
            job:row{epoch = e.epoch, train_accuracy = e.train_accuracy, train_loss = e.train_loss,
                    test_accuracy = e.eval_accuracy, test_loss = e.eval_loss}
        end
    end}

study:main(arg)
