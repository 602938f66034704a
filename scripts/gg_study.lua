--- The generalization-gap study: 384 MLPs on Fashion-MNIST (a full factorial of training-set size,
-- label noise, width, depth, batch norm, weight decay, learning rate and batch size), each measured
-- at 10, 25, 50, 75 and 100 % of a fixed budget of example passes; their training-set margin
-- signatures; and the linear predictor of the generalization gap with the abstract's claims checked
-- (../shared/seed/README.md). docs/study.md is the guide and holds the results.
--
-- usage: landscape scripts/gg_study.lua --out out/gg [runner options] [study options]
--   landscape scripts/gg_study.lua --out out/gg --jobs 2           # 2 local workers (resumable)
--   landscape scripts/gg_study.lua --out out/gg --shard 3/16       # one shard of 16
--   landscape scripts/gg_study.lua --out out/gg --slurm --shards 16   # a Slurm job array
--   landscape scripts/gg_study.lua --out out/gg --status | --merge
--   landscape scripts/gg_study.lua --out out/gg --analyze          # claims, tables, figures
--   ./run.sh [--quick]                                             # all of it, then the claims
-- Study options (each is recorded in OUT/study.lua; another value needs another --out):
--   --grid full | quick | tiny    full: the 384 cells of reference §6.2 (+ 24 second-seed reruns);
--                                 quick: 128 smaller cells (about two minutes with analysis);
--                                 tiny: 8 cells of seconds (the spec's)             (full)
--   --lr-scaling sqrt | linear | none   the lr levels are per 256 examples; the rule scales them
--                                 to the batch (sqrt: lr sqrt(B/256); linear: lr B/256)   (sqrt)
--   --budget P                    example passes per network (full 150000, quick 40000,
--                                 tiny 3000)
--   --replicates R                configurations rerun with a second seed (full 24, quick 8,
--                                 tiny 2)
--   --analyze: --permutations B (1000), --no-figures
--
-- Writes OUT/models.csv (one row per network and checkpoint: the configuration, every measurement
-- of gg/measure.lua), OUT/models.manifest.json, and with --analyze OUT/claims.csv, OUT/claims.md,
-- OUT/analysis/*.csv and OUT/figures/*.{png,pdf}.
local ls = require "landscape"

-- the study's own modules live in scripts/gg/
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local measure = require "gg.measure"

local GRIDS = {
    full = {levels = {n = {500, 2000, 8000}, noise = {0, 0.3}, width = {64, 256}, depth = {1, 3},
                      bn = {0, 1}, wd = {0, 1e-3}, lr = {0.01, 0.1}, batch = {32, 256}},
            budget = 150000, replicates = 24},
    quick = {levels = {n = {500, 2000}, noise = {0, 0.3}, width = {32, 128}, depth = {1, 2},
                       bn = {0, 1}, wd = {0, 1e-3}, lr = {0.01, 0.1}, batch = {128}},
             budget = 40000, replicates = 8},
    tiny = {levels = {n = {200}, noise = {0, 0.3}, width = {16}, depth = {1, 2}, bn = {0, 1},
                      wd = {0}, lr = {0.1}, batch = {64}},
            budget = 3000, replicates = 2},
}
local FACTORS = {"n", "noise", "width", "depth", "bn", "wd", "lr", "batch"}
local ORDER = {"n", "noise", "width", "depth", "bn", "wd", "lr", "batch", "replicate", "budget",
               "lr_scaling"}

--- The grid of the options: the full factorial with replicate 1, then `replicates` of its cells
-- (a seeded draw, the same for every run) again with replicate 2.
local function make_grid(opts)
    local spec = GRIDS[opts.grid]
    local levels = {}
    for k, v in pairs(spec.levels) do levels[k] = v end
    levels.replicate = 1
    levels.budget = opts.budget or spec.budget
    levels.lr_scaling = opts.lr_scaling
    local g = ls.study.grid(levels, {order = ORDER})
    local cells = g:cells()
    local r = math.min(opts.replicates or spec.replicates, #cells)
    if r > 0 then
        local perm = ls.randperm(#cells, {seed = 20240616}):totable()
        local picked = {}
        for i = 1, r do picked[i] = perm[i] end
        table.sort(picked)
        local again = {}
        for i, k in ipairs(picked) do
            again[i] = cells[k]
            again[i].replicate = 2
        end
        g = g + ls.study.grid(again, {order = ORDER})
    end
    return g
end

-- Relative cost of a job (multiply-adds): training (forward + backward ~ 3 forward passes per
-- example, plus a per-step overhead), five checkpoint evaluations (train, test, margins) and the
-- final sharpness search.
local function cost(cfg)
    local macs = 784 * cfg.width + (cfg.depth - 1) * cfg.width * cfg.width + 10 * cfg.width
    local steps = cfg.budget / cfg.batch
    return 3 * cfg.budget * macs + 3e4 * steps * 3
        + 5 * (5 * cfg.n + 10000) * macs + 21 * 1024 * 3 * macs
end

local study = ls.study{
    name = "models",
    grid = make_grid,
    cost = cost,
    options = {
        {"grid", "full", "the grid: full (384 + replicates), quick (128), tiny (8, the spec's)",
         choices = {"full", "quick", "tiny"}},
        {"lr_scaling", "sqrt", "how the lr levels (per 256 examples) scale to the batch",
         choices = {"linear", "sqrt", "none"}},
        {"budget", nil, "example passes per network (grid default)", type = "integer", min = 1},
        {"replicates", nil, "configurations rerun with a second seed (grid default)",
         type = "integer", min = 0},
        {"permutations", 1000, "--analyze: permutations of the permutation test", min = 0,
         column = false},
        {"figures", true, "--analyze: draw the figures (--no-figures: tables only)",
         column = false},
    },
    columns = {"frac", "step", "status", "train_acc", "clean_train_acc", "test_acc", "gap",
               "train_loss", "test_loss", "kept"},
    run = function(cfg, job)
        local rows, log = measure.run(cfg, {progress = function(f) job:progress(f) end})
        for _, row in ipairs(rows) do job:row(row) end
        job:log("%s after %d steps, final gap %.2f", rows[#rows] and rows[#rows].status
                or log.status, log.steps, rows[#rows] and rows[#rows].gap or 0 / 0)
    end,
    actions = {
        analyze = function(s, opts)
            local report = require "gg.report"
            return report.main(s, opts, {factors = FACTORS})
        end,
    },
}

study:main(arg)
