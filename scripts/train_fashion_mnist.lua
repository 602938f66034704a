--- Train one network on Fashion-MNIST with ls.train; write a tidy per-epoch CSV and the weights.
--
-- usage: landscape scripts/train_fashion_mnist.lua [options]
--   --model mlp|cnn|resnet   architecture (default mlp): ls.nn.mlp{hidden = ...}, ls.nn.cnn{},
--                            ls.nn.resnet{}
--   --hidden 256,256         MLP hidden widths (default 512,512, ls.nn.mlp's)
--   --epochs E               passes over the training set (default 10)
--   --batch B                batch size (default 128)
--   --optimizer sgd|adam|adamw   (default sgd)
--   --lr L                   learning rate (default 0.05 for sgd, 1e-3 for adam/adamw)
--   --momentum M             SGD momentum (default 0.9)
--   --wd W                   weight decay (default 0 for sgd/adam, 1e-2 for adamw)
--   --schedule none|cosine   learning-rate schedule over the epochs (default cosine)
--   --augment                random crops (padding 4) and horizontal flips
--   --noise P                symmetric label noise on a fraction P of the training labels
--   --n N                    training images: a seeded class-balanced subset (default all 60000)
--   --seed S                 seeds the model, the subset, the noise and the batches (default 1)
--   --threads T              engine and BLAS threads (default: all cores)
--   --out DIR                output directory (default out/)
--   --name NAME              file stem (default <model>_s<seed>)
--   --quiet                  no per-step output
--   --checkpoint PATH        write the run's state to PATH after every epoch and, when PATH
--                            exists, resume from it (rerun the same command after a crash)
-- Writes DIR/NAME.csv (one row per epoch, the configuration in columns: train and test loss and
-- accuracy, learning rate, seconds) and DIR/NAME.safetensors (the state dict, torch's names; the
-- configuration in its metadata). Prints the final test accuracy. Exits with status 3 if the run
-- diverged.
local ls = require "landscape"

local P = require("landscape.study.args").parser{
    name = "train_fashion_mnist", usage = "landscape scripts/train_fashion_mnist.lua [options]",
    options = {
    {"model", "mlp", "architecture", choices = {"mlp", "cnn", "resnet"}},
    {"hidden", nil, "MLP hidden widths, comma-separated (default 512,512)", type = "string"},
    {"epochs", 10, "passes over the training set", min = 1},
    {"batch", 128, "batch size", min = 1},
    {"optimizer", "sgd", "optimizer", choices = {"sgd", "adam", "adamw"}},
    {"lr", nil, "learning rate (default 0.05 for sgd, 1e-3 for adam/adamw)", type = "number"},
    {"momentum", 0.9, "SGD momentum"},
    {"wd", nil, "weight decay (default 0 for sgd/adam, 1e-2 for adamw)", type = "number"},
    {"schedule", "cosine", "learning-rate schedule over the epochs", choices = {"none", "cosine"}},
    {"augment", false, "random crops (padding 4) and horizontal flips"},
    {"noise", 0.0, "symmetric label noise on a fraction of the training labels", min = 0},
    {"n", nil, "training images: a seeded class-balanced subset (default all)", type = "integer",
     min = 1},
    {"seed", 1, "seeds the model, the subset, the noise and the batches"},
    {"threads", nil, "engine and BLAS threads (default: all cores)", type = "integer", min = 1},
    {"out", "out", "output directory", type = "dir", column = false},
    {"name", nil, "file stem (default <model>_s<seed>)", type = "string", column = false},
    {"quiet", false, "no per-step output", column = false},
    {"checkpoint", nil, "checkpoint file (resumed from when it exists)", type = "string",
     column = false}}}
local cfg = P:parse(arg)
local function usage(msg)
    io.stderr:write("train_fashion_mnist: ", msg, "\n", P:usage())
    os.exit(2)
end
if cfg.threads then ls.set_threads(cfg.threads) end
cfg.threads = ls.get_threads()
cfg.lr = cfg.lr or (cfg.optimizer == "sgd" and 0.05 or 1e-3)
cfg.wd = cfg.wd or (cfg.optimizer == "adamw" and 1e-2 or 0)
cfg.name = cfg.name or string.format("%s_s%d", cfg.model, cfg.seed)

local t0 = ls.clock()
local train = ls.data.fashion_mnist{split = "train", n = cfg.n, seed = cfg.seed}
local test = ls.data.fashion_mnist{split = "test"}
if cfg.noise > 0 then train = train:with_label_noise(cfg.noise, {seed = cfg.seed}) end
cfg.n = train.n
local t_load = ls.clock() - t0

local model
if cfg.model == "mlp" then
    local hidden
    if cfg.hidden then
        hidden = {}
        for w in cfg.hidden:gmatch("[^,]+") do
            hidden[#hidden + 1] = math.tointeger(tonumber(w)) or usage("bad --hidden " .. cfg.hidden)
        end
    end
    model = ls.nn.mlp{hidden = hidden, seed = cfg.seed}
    cfg.hidden = table.concat(hidden or {512, 512}, ",")
elseif cfg.model == "cnn" then
    model = ls.nn.cnn{seed = cfg.seed}
else
    model = ls.nn.resnet{seed = cfg.seed}
end

local opt
if cfg.optimizer == "sgd" then
    opt = ls.optim.sgd(model, {lr = cfg.lr, momentum = cfg.momentum, weight_decay = cfg.wd})
else
    opt = ls.optim[cfg.optimizer](model, {lr = cfg.lr, weight_decay = cfg.wd})
end
local sched
if cfg.schedule == "cosine" then sched = ls.optim.schedule.cosine(opt, {t_max = cfg.epochs}) end

print(string.format("%s (%d parameters) on %d training images, %d threads; load %.1f s",
                    cfg.model, model:num_parameters(), train.n, cfg.threads, t_load))
local log = ls.train(model, train, {
    optimizer = opt, epochs = cfg.epochs, batch = cfg.batch, seed = cfg.seed, schedule = sched,
    augment = cfg.augment and {crop = 4, flip = true} or nil, eval = test,
    progress = cfg.quiet and "log" or nil, log_every = (not cfg.quiet) and 100 or false,
    checkpoint = cfg.checkpoint and {path = cfg.checkpoint} or nil,
    resume = cfg.checkpoint and true or nil,
})
if log.resumed_at then print(string.format("resumed at step %d from %s", log.resumed_at,
                                           cfg.checkpoint)) end
if log.checkpoints > 0 then
    print(string.format("%d checkpoints written in %.3f s (%.1f ms each)", log.checkpoints,
                        log.checkpoint_seconds, 1000 * log.checkpoint_seconds / log.checkpoints))
end

-- one tidy row per epoch: the configuration, then the epoch's measurements
local CONFIG = {"model", "hidden", "optimizer", "lr", "momentum", "wd", "schedule", "batch",
                "epochs", "augment", "noise", "n", "seed", "threads"}
local MEASURES = {"epoch", "status", "lr_epoch", "train_loss", "train_accuracy", "test_loss",
                  "test_accuracy", "seconds", "train_seconds"}
local rows = {}
for _, r in ipairs(log.epochs) do
    local row = {}
    for _, k in ipairs(CONFIG) do row[k] = cfg[k] end
    row.hidden = cfg.model == "mlp" and cfg.hidden or ""
    row.momentum = cfg.optimizer == "sgd" and cfg.momentum or ""
    row.epoch, row.status, row.lr_epoch = r.epoch, log.status, r.lr
    row.train_loss, row.train_accuracy = r.train_loss, r.train_accuracy
    row.test_loss, row.test_accuracy = r.eval_loss, r.eval_accuracy
    row.seconds, row.train_seconds = r.seconds, r.train_seconds
    rows[#rows + 1] = row
end
local columns = {}
for _, k in ipairs(CONFIG) do columns[#columns + 1] = k end
for _, k in ipairs(MEASURES) do columns[#columns + 1] = k end

local csv_path = cfg.out .. "/" .. cfg.name .. ".csv"
local st_path = cfg.out .. "/" .. cfg.name .. ".safetensors"
ls.csv.write(csv_path, rows, {columns = columns})
local meta = {status = log.status, steps = log.steps}
for _, k in ipairs(CONFIG) do meta[k] = cfg[k] end
model:save(st_path, meta)

local last = log.epochs[#log.epochs]
if log.status == "diverged" then
    print(string.format("diverged at step %d; %s, %s", log.diverged_at, csv_path, st_path))
    os.exit(3)
end
local epoch_seconds = 0
for _, r in ipairs(log.epochs) do epoch_seconds = epoch_seconds + r.seconds end
print(string.format("final test accuracy: %.2f %%  (test loss %.4f, train accuracy %.2f %%, "
                    .. "%d epochs in %.1f s, %.1f s per epoch)", 100 * last.eval_accuracy,
                    last.eval_loss, 100 * last.train_accuracy, #log.epochs, log.seconds,
                    epoch_seconds / #log.epochs))
print("per-epoch table: " .. csv_path .. "   weights: " .. st_path)
