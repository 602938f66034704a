--- Curvature-aware training compared: SGD (and SGD with twice the epochs), SAM, ASAM, Riemannian
-- SAM, the gradient-norm penalty and the Hessian-trace penalty on a batch-normed CNN on
-- Fashion-MNIST, each method's rho / lambda chosen on a validation split, then several seeds, and
-- per run the accuracy, the loss and the curvature of the solution. docs/methods.md has the results.
--
-- usage: landscape scripts/compare_methods.lua --out out/methods [--jobs 2] [--quick] [options]
--   landscape scripts/compare_methods.lua --out out/methods --seeds 5 --jobs 2   # the default
--   landscape scripts/compare_methods.lua --out out/methods --quick --jobs 2     # a few minutes
--   landscape scripts/compare_methods.lua --out out/methods --status             # both studies
-- The run has three phases (--phase all, the default, runs them in turn; each one alone with
-- --phase tune|final|report):
--   tune    a study (ls.study, docs/study-runner.md) in OUT/tune: every method with every value of
--           its grid, seed 1, trained on 90 % of the training subset, scored on the other 10 %
--   final   a study in OUT/final: every method with its best value (highest validation accuracy;
--           ties to the smaller value) and seeds 1..S, trained on the whole training subset; SGD
--           once with the epochs and once with twice the epochs (as the SAM paper allows the
--           baselines); per run the measures below
--   report  OUT/methods_summary.csv (tidy: method, value, measure, n, mean, sd, ci95), OUT/
--           methods_table.md (mean +- 95 % CI per method, Student t), OUT/methods_report.md (the
--           table with the command, commit, machine and times: ready for docs/methods.md),
--           OUT/accuracy_vs_trace.png and OUT/accuracy_vs_scaled_trace.png (one point per run, a
--           colour per method; with .gp/.dat/.pdf)
-- Every runner option (--jobs, --threads, --shard, --slurm, --status, --merge, --retry-failed)
-- applies to the tune and final studies; a killed run continues where it stopped (each job resumes
-- its training from its checkpoint).
--
-- Options (defaults; --quick's in brackets):
--   --seeds S (5 [3])         seeds of the final runs
--   --epochs E (10 [2])       epochs of every method (SGD x2: 2E); cosine schedule over them
--   --n-train N (10000 [1000]) a class-balanced subset of the training split (seed 1)
--   --n-test N (10000 [2000]) test images (the test split's first N)
--   --n-curv N (512 [128])    training images the curvature is measured on (eval mode)
--   --probes P (16 [4])       Hutchinson probes of the traces (per layer for the scaled trace)
--   --channels 16,32 --hidden 64   the CNN: ls.nn.cnn{channels, hidden} (batch norm after each conv)
--   --lr 0.05 --momentum 0.9 --wd 5e-4 --batch 128   SGD for every method
-- The methods and their grids (default [quick]):
--   sgd, sgd_2x      ls.methods.plain()
--   sam              ls.methods.sam{rho}              rho {0.02, 0.05, 0.1, 0.2} [{0.05, 0.2}]
--   asam             ls.methods.asam{rho, eta = 0.01} rho {0.25, 0.5, 1, 2} [{0.5, 2}]
--   rsam             ls.methods.rsam{rho, follow_lr = true}  (ELR lr/R_g^2 at the start, following
--                    the cosine schedule)       rho {0.02, 0.05, 0.1, 0.2} [{0.05, 0.2}]
--   grad_norm        ls.methods.grad_norm{lambda}  exact  lambda {0.01, 0.03, 0.1, 0.3} [{0.03, 0.3}]
--   trace_penalty    ls.methods.trace_penalty{lambda, probes = 1}  exact
--                                                    lambda {1e-4, 1e-3, 1e-2} [{1e-4, 1e-3}]
-- Measures per final run (columns of OUT/final/final.csv): status, steps, train_seconds,
-- test_accuracy, test_loss, train_accuracy, train_loss (ls.evaluate, eval mode, the whole training
-- subset), hessian_trace and hessian_trace_se (Hutchinson, P probes, the Hessian of the mean loss
-- over n-curv training images, eval mode), lambda_max (Lanczos, tol 1e-3), scaled_trace and
-- scaled_trace_se (sum over the scale-invariant weights w_g of tr(H_gg) ||w_g||^2, the trace
-- corrected for their arbitrary scale, P probes per layer), grad_norm (of the mean loss over the
-- training subset), norm_all, norm_si, norm_rest (parameter 2-norms: all, scale-invariant, others).
local ls = require "landscape"
local fs = require "landscape.io.fs"
local csv = require "landscape.io.csv"
local P = require "landscape.train.params"

local M = {}   -- the helpers, also for tests/lua/compare_methods_spec.lua (require with a table arg)

M.METHODS = {"sgd", "sgd_2x", "sam", "asam", "rsam", "grad_norm", "trace_penalty"}
local GRIDS = {
    sam = {{0.02, 0.05, 0.1, 0.2}, {0.05, 0.2}},
    asam = {{0.25, 0.5, 1, 2}, {0.5, 2}},
    rsam = {{0.02, 0.05, 0.1, 0.2}, {0.05, 0.2}},
    grad_norm = {{0.01, 0.03, 0.1, 0.3}, {0.03, 0.3}},
    trace_penalty = {{1e-4, 1e-3, 1e-2}, {1e-4, 1e-3}},
}
M.GRIDS = GRIDS
-- relative cost of a run (gradients per step times epochs), for the runner's order and shards
local COST = {sgd = 1, sgd_2x = 2, sam = 2, asam = 2, rsam = 2, grad_norm = 3.5, trace_penalty = 10}

local OPTIONS = {
    {"phase", "all", "tune, final, report or all (in turn)",
     choices = {"all", "tune", "final", "report"}, column = false},
    {"quick", false, "a small version that runs in a few minutes"},
    {"seeds", nil, "seeds of the final runs (default 5; quick 3)", type = "integer", min = 2},
    {"epochs", nil, "epochs per run (default 10; quick 2)", type = "integer", min = 1},
    {"n_train", nil, "training images (default 10000; quick 1000)", type = "integer", min = 100},
    {"n_test", nil, "test images (default 10000; quick 2000)", type = "integer", min = 10},
    {"n_curv", nil, "images for the curvature (default 512; quick 128)", type = "integer", min = 2},
    {"probes", nil, "Hutchinson probes (default 16; quick 4)", type = "integer", min = 2},
    {"channels", {16, 32}, "CNN channels per stage", type = "list"},
    {"hidden", 64, "CNN hidden width", min = 0},
    {"lr", 0.05, "SGD learning rate"},
    {"momentum", 0.9, "SGD momentum"},
    {"wd", 5e-4, "SGD weight decay"},
    {"batch", 128, "batch size", min = 1},
}

--- The sizes after the defaults (quick or not).
function M.settings(o)
    local q = o.quick
    return {seeds = o.seeds or (q and 3 or 5), epochs = o.epochs or (q and 2 or 10),
            n_train = o.n_train or (q and 1000 or 10000), n_test = o.n_test or (q and 2000 or 10000),
            n_curv = o.n_curv or (q and 128 or 512), probes = o.probes or (q and 4 or 16),
            channels = o.channels, hidden = o.hidden, lr = o.lr, momentum = o.momentum, wd = o.wd,
            batch = o.batch}
end

local cache = {}
local function data(s)
    local key = s.n_train .. "/" .. s.n_test
    if not cache[key] then
        local train = ls.data.fashion_mnist{split = "train", n = s.n_train, seed = 1}
        local fit, val = train:random_split(0.9, {seed = 1})
        cache[key] = {train = train, fit = fit, val = val,
                      test = ls.data.fashion_mnist{split = "test", n = s.n_test, seed = 1}}
    end
    return cache[key]
end

local function method_of(cfg)
    local m, v = cfg.method, cfg.value
    if m == "sgd" or m == "sgd_2x" then return ls.methods.plain() end
    if m == "sam" then return ls.methods.sam{rho = v} end
    if m == "asam" then return ls.methods.asam{rho = v, eta = 0.01} end
    if m == "rsam" then return ls.methods.rsam{rho = v, follow_lr = true} end
    if m == "grad_norm" then return ls.methods.grad_norm{lambda = v} end
    if m == "trace_penalty" then
        return ls.methods.trace_penalty{lambda = v, probes = 1, seed = cfg.seed}
    end
    error("compare_methods: unknown method " .. tostring(m))
end

local function sq(t) return t:norm():item() ^ 2 end

-- Train one configuration; returns the model, the log and the epochs run.
local function train(cfg, job, s, set)
    local model = ls.nn.cnn{channels = s.channels, hidden = s.hidden, seed = cfg.seed}
    local epochs = cfg.method == "sgd_2x" and 2 * s.epochs or s.epochs
    local opt = ls.optim.sgd(model, {lr = s.lr, momentum = s.momentum, weight_decay = s.wd})
    local sched = ls.optim.schedule.cosine(opt, {t_max = epochs})
    local log = ls.train(model, set, {optimizer = opt, method = method_of(cfg), epochs = epochs,
                                      batch = s.batch, seed = cfg.seed, schedule = sched,
                                      progress = false, checkpoint = {path = job.checkpoint},
                                      resume = job.resume,
                                      callback = function(st)
                                          job:progress(st.epoch / epochs)
                                      end})
    return model, log, epochs
end

local function train_seconds(log)
    local t = 0
    for _, e in ipairs(log.epochs) do t = t + e.seconds end
    return t
end

-- The curvature and norms of a trained model (see the header).
local function measures(model, d, s, seed)
    local curv = {x = d.train.x:narrow(1, 1, s.n_curv), y = d.train.y:narrow(1, 1, s.n_curv)}
    local H = ls.curvature.hessian(model, curv, {mode = "eval", batch = 256})
    local tr = H:trace{probes = s.probes, seed = seed}
    local top = H:eigs{k = 1, tol = 1e-3, max_iter = 100, seed = seed, vectors = false}
    local sd = model:state_dict()
    local si = {}
    local Hs = ls.curvature.hessian(model, curv, {mode = "eval", batch = 256,
                                                  params = "scale_invariant"})
    local scaled, var = 0, 0
    for _, r in ipairs(Hs:trace_per_layer{probes = s.probes, seed = seed}) do
        local w2 = sq(sd[r.param])
        si[r.param] = true
        scaled, var = scaled + r.trace * w2, var + (r.stderr * w2) ^ 2
    end
    local g = ls.curvature.grad_norm(model, d.train, {mode = "eval", batch = 1000})
    local all, nsi = 0, 0
    for _, e in ipairs(P.entries(model, "compare_methods")) do
        local w2 = sq(e.t)
        all = all + w2
        if si[e.name] then nsi = nsi + w2 end
    end
    return {hessian_trace = tr.estimate, hessian_trace_se = tr.stderr, lambda_max = top.values[1],
            scaled_trace = scaled, scaled_trace_se = math.sqrt(var), grad_norm = g.norm,
            norm_all = math.sqrt(all), norm_si = math.sqrt(nsi), norm_rest = math.sqrt(all - nsi)}
end

local NAN = 0 / 0

local function run_tune(cfg, job)
    local s = M.settings(job.opts)
    local d = data(s)
    local model, log = train(cfg, job, s, d.fit)
    local row = {status = log.status, steps = log.steps, train_seconds = train_seconds(log),
                 val_accuracy = NAN, val_loss = NAN, train_loss = NAN}
    if log.status == "ok" then
        local v = ls.evaluate(model, d.val)
        row.val_accuracy, row.val_loss = v.accuracy, v.loss
        row.train_loss = log.epochs[#log.epochs].train_loss
    end
    job:row(row)
end

local function run_final(cfg, job)
    local s = M.settings(job.opts)
    local d = data(s)
    local model, log, epochs = train(cfg, job, s, d.train)
    local row = {status = log.status, steps = log.steps, epochs = epochs,
                 train_seconds = train_seconds(log)}
    for _, k in ipairs({"test_accuracy", "test_loss", "train_accuracy", "train_loss",
                        "hessian_trace", "hessian_trace_se", "lambda_max", "scaled_trace",
                        "scaled_trace_se", "grad_norm", "norm_all", "norm_si", "norm_rest"}) do
        row[k] = NAN
    end
    if log.status == "ok" then
        local te, tr = ls.evaluate(model, d.test), ls.evaluate(model, d.train)
        row.test_accuracy, row.test_loss = te.accuracy, te.loss
        row.train_accuracy, row.train_loss = tr.accuracy, tr.loss
        for k, v in pairs(measures(model, d, s, cfg.seed)) do row[k] = v end
    end
    job:row(row)
end

--- The best value per method from the tune study's rows: the highest validation accuracy of a run
-- that finished; ties go to the smaller value. Returns {method = value}.
function M.best_values(rows)
    local best = {}
    for _, r in ipairs(rows) do
        local acc = tonumber(r.val_accuracy)
        if r.status == "ok" and acc == acc then
            local b, v = best[r.method], tonumber(r.value)
            if not b or acc > b.acc or (acc == b.acc and v < b.value) then
                best[r.method] = {acc = acc, value = v}
            end
        end
    end
    local out = {}
    for m, b in pairs(best) do out[m] = b.value end
    return out
end

local function tune_grid(opts)
    local q = opts.quick and 2 or 1
    local cells = {}
    for _, m in ipairs(M.METHODS) do
        for _, v in ipairs(GRIDS[m] and GRIDS[m][q] or {}) do
            cells[#cells + 1] = {method = m, value = v, seed = 1}
        end
    end
    return ls.study.grid(cells, {order = {"method", "value", "seed"}})
end

local function final_grid(opts)
    local path = fs.join(fs.dirname(opts.out), "tune", "tune.csv")
    if not fs.isfile(path) then
        error("compare_methods: no tuning results at " .. path .. " (run --phase tune first)", 0)
    end
    local best = M.best_values(csv.read_rows(path))
    local s = M.settings(opts)
    local cells = {}
    for _, m in ipairs(M.METHODS) do
        local v = GRIDS[m] and best[m] or 0
        if v == nil then
            error("compare_methods: no finished tuning run of " .. m .. " in " .. path, 0)
        end
        for seed = 1, s.seeds do cells[#cells + 1] = {method = m, value = v, seed = seed} end
    end
    return ls.study.grid(cells, {order = {"method", "value", "seed"}})
end

local function study(phase)
    return ls.study{
        name = phase,
        grid = phase == "tune" and tune_grid or final_grid,
        options = OPTIONS,
        cost = function(cfg) return COST[cfg.method] end,
        columns = phase == "tune" and {"val_accuracy", "val_loss", "train_loss", "status"}
                  or {"test_accuracy", "train_accuracy", "test_loss", "train_loss",
                      "hessian_trace", "hessian_trace_se", "lambda_max", "scaled_trace",
                      "scaled_trace_se", "grad_norm", "status"},
        run = phase == "tune" and run_tune or run_final}
end

---------------------------------------------------------------------------------------------------
-- The report
---------------------------------------------------------------------------------------------------

-- Student t quantiles t_{0.975, df}, df = 1..30 (beyond: the normal's 1.96 is within 2 %).
local T975 = {12.7062047, 4.30265273, 3.18244631, 2.77644511, 2.57058184, 2.44691185, 2.36462425,
              2.30600414, 2.26215716, 2.22813885, 2.20098516, 2.17881283, 2.16036866, 2.14478669,
              2.13144955, 2.11990530, 2.10981558, 2.10092204, 2.09302405, 2.08596345, 2.07961384,
              2.07387307, 2.06865761, 2.06389856, 2.05953855, 2.05552944, 2.05183052, 2.04840714,
              2.04522964, 2.04227246}
function M.t975(df) return T975[df] or 1.959964 end

M.MEASURES = {"test_accuracy", "train_accuracy", "test_loss", "train_loss", "hessian_trace",
              "lambda_max", "scaled_trace", "grad_norm", "norm_all", "norm_si", "train_seconds"}

--- Summary rows {method, value, measure, n, mean, sd, ci95} of the final study's rows (finished
-- runs only; n_runs and n_ok count them).
function M.summarize(rows)
    local by = {}
    for _, r in ipairs(rows) do
        local b = by[r.method]
        if not b then
            b = {value = tonumber(r.value), runs = 0, ok = {}}
            by[r.method] = b
        end
        b.runs = b.runs + 1
        if r.status == "ok" then b.ok[#b.ok + 1] = r end
    end
    local out = {}
    for _, m in ipairs(M.METHODS) do
        local b = by[m]
        if b then
            out[#out + 1] = {method = m, value = b.value, measure = "runs", n = b.runs,
                             mean = #b.ok, sd = NAN, ci95 = NAN}
            for _, k in ipairs(M.MEASURES) do
                local xs = {}
                for _, r in ipairs(b.ok) do
                    local v = tonumber(r[k])
                    if v and v == v then xs[#xs + 1] = v end
                end
                local n, mean, sd = #xs, NAN, NAN
                if n > 0 then
                    mean = 0
                    for _, x in ipairs(xs) do mean = mean + x end
                    mean = mean / n
                end
                if n > 1 then
                    local ss = 0
                    for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
                    sd = math.sqrt(ss / (n - 1))
                end
                out[#out + 1] = {method = m, value = b.value, measure = k, n = n, mean = mean,
                                 sd = sd, ci95 = n > 1 and M.t975(n - 1) * sd / math.sqrt(n) or NAN}
            end
        end
    end
    return out
end

local function fmt(mean, ci, scale, digits)
    if mean ~= mean then return "–" end
    local f = "%." .. digits .. "f"
    if ci ~= ci then return string.format(f, mean * scale) end
    return string.format(f .. " ± " .. f, mean * scale, ci * scale)
end

--- The markdown table of a summary (M.summarize).
function M.table_md(summary)
    local get = {}
    for _, r in ipairs(summary) do
        get[r.method] = get[r.method] or {value = r.value}
        get[r.method][r.measure] = r
    end
    local cols = {{"test_accuracy", "test acc (%)", 100, 2},
                  {"train_accuracy", "train acc (%)", 100, 2},
                  {"test_loss", "test loss", 1, 3}, {"hessian_trace", "tr H", 1, 1},
                  {"lambda_max", "λ_max", 1, 2}, {"scaled_trace", "Σ tr(H_g)‖w_g‖²", 1, 1},
                  {"grad_norm", "‖∇L‖", 1, 4}, {"norm_si", "‖w_SI‖", 1, 2},
                  {"train_seconds", "train s", 1, 0}}
    local head = {"method", "ρ / λ", "runs"}
    for _, c in ipairs(cols) do head[#head + 1] = c[2] end
    local lines = {"| " .. table.concat(head, " | ") .. " |",
                   "|" .. string.rep("---|", 3) .. string.rep("---:|", #cols)}
    for _, m in ipairs(M.METHODS) do
        local g = get[m]
        if g then
            local runs = g.runs
            local cells = {m, (m == "sgd" or m == "sgd_2x") and "–" or string.format("%g", g.value),
                           string.format("%d/%d", runs.mean, runs.n)}
            for _, c in ipairs(cols) do
                local r = g[c[1]]
                cells[#cells + 1] = r and fmt(r.mean, r.ci95, c[3], c[4]) or "–"
            end
            lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
        end
    end
    return table.concat(lines, "\n") .. "\n"
end

local function write_whole(path, text)
    local tmp = fs.join(fs.dirname(path), "." .. fs.basename(path) .. ".tmp")
    local f = assert(io.open(tmp, "w"))
    f:write(text)
    f:close()
    assert(os.rename(tmp, path))
end

-- started, ended (ISO times), the commit and whether the tree had local changes, from a study's
-- manifest; nil when there is none.
local function span(out, phase)
    local s = fs.read(fs.join(out, phase, phase .. ".manifest.json"))
    if not s then return nil end
    return s:match('"started":%s*"([^"]+)"'), s:match('"ended":%s*"([^"]+)"'),
           s:match('"commit":%s*"(%x+)"'), s:match('"dirty":%s*true') ~= nil
end

-- The table with what produced it: the command, the commit, the machine, the times (markdown).
local function report_md(out, table_text, opts)
    local store = require "landscape.study.store"
    local m = store.machine()
    local t0 = span(out, "tune")
    local _, t1, commit, dirty = span(out, "final")
    local lines = {
        "Command: `" .. ((opts and opts.command)
                         or "landscape scripts/compare_methods.lua --out " .. out) .. "`",
        string.format("Commit (of the final runs, from their manifest): %s%s; engine %s",
                      commit or "unknown", dirty and " (with local changes)" or "", ls.version),
        string.format("Machine: %s, %d cores, GEMM %s, BLAS kernel %s", m.cpu, m.cores,
                      tostring(m.gemm), tostring(m.blas_kernel or "-")),
        string.format("Runs: tuning started %s, last final run ended %s; report written %s",
                      t0 or "?", t1 or "?", store.iso()),
        "", table_text, "",
        "Mean ± 95 % confidence interval (Student t) over the seeds that finished; `runs` = " ..
        "finished / all. Figures: `accuracy_vs_trace.png`, `accuracy_vs_scaled_trace.png`; " ..
        "per-run rows: `final/final.csv`; tuning: `tune/tune.csv`.", ""}
    return table.concat(lines, "\n")
end

--- Writes the report of OUT/final/final.csv into OUT (see the header); returns the summary.
function M.report(out, opts)
    local path = fs.join(out, "final", "final.csv")
    if not fs.isfile(path) then
        error("compare_methods: no final results at " .. path .. " (run --phase final first)", 0)
    end
    local rows = csv.read_rows(path)
    local summary = M.summarize(rows)
    csv.write(fs.join(out, "methods_summary.csv"), summary,
              {columns = {"method", "value", "measure", "n", "mean", "sd", "ci95"}})
    local md = M.table_md(summary)
    write_whole(fs.join(out, "methods_table.md"), md)
    write_whole(fs.join(out, "methods_report.md"), report_md(out, md, opts))
    io.stdout:write(md)
    if opts and opts.plots == false then return summary end
    local pts, all_pos = {}, {hessian_trace = true, scaled_trace = true}
    for _, r in ipairs(rows) do
        local acc = tonumber(r.test_accuracy)
        if r.status == "ok" and acc == acc then
            local p = {method = r.method, test_accuracy = 100 * acc,
                       hessian_trace = tonumber(r.hessian_trace),
                       scaled_trace = tonumber(r.scaled_trace)}
            for k in pairs(all_pos) do if not (p[k] > 0) then all_pos[k] = false end end
            pts[#pts + 1] = p
        end
    end
    if #pts > 0 then
        for _, x in ipairs({{"hessian_trace", "accuracy_vs_trace", "Hessian trace"},
                            {"scaled_trace", "accuracy_vs_scaled_trace",
                             "Σ_g tr(H_g) ‖w_g‖^2 (scale-invariant weights)"}}) do
            ls.plot.scatter(pts, {x = x[1], y = "test_accuracy", group = "method",
                                  logx = all_pos[x[1]], xlabel = x[3], ylabel = "test accuracy (%)",
                                  size = "page",
                                  out = fs.join(out, x[2]), formats = {"png", "pdf"}})
        end
    end
    return summary
end

---------------------------------------------------------------------------------------------------
-- The command line
---------------------------------------------------------------------------------------------------

-- arg with --phase and --out replaced (the interpreter's and the script's entries kept).
local function argv_for(argv, phase, out)
    local a = {}
    for k, v in pairs(argv) do if k <= 0 then a[k] = v end end
    local i, n = 1, 0
    while i <= #argv do
        local w = argv[i]
        local name = w:match("^%-%-([%w_-]+)")
        local key = name and name:gsub("-", "_")
        if key == "phase" or key == "out" then
            if not w:find("=", 1, true) then i = i + 1 end
        else
            n = n + 1
            a[n] = w
        end
        i = i + 1
    end
    for _, w in ipairs({"--phase", phase, "--out", out}) do
        n = n + 1
        a[n] = w
    end
    return a
end

local function command_line(argv)
    local words = {"landscape", argv[0]}
    for i = 1, #argv do words[#words + 1] = argv[i] end
    return table.concat(words, " ")
end

local function main(argv)
    -- the runner's options are the studies' business; only --phase and --out are read here
    local phase, out = "all", nil
    for i = 1, #argv do
        local w, v = argv[i], argv[i + 1]
        local name, eq = w:match("^%-%-([%w_-]+)=?(.*)$")
        if name then
            local key = name:gsub("-", "_")
            if key == "phase" then phase = eq ~= "" and eq or v end
            if key == "out" then out = eq ~= "" and eq or v end
        end
    end
    if phase == "tune" or phase == "final" then
        return study(phase):main(argv)
    end
    if not out then
        io.stderr:write("compare_methods: --out DIR is required\n")
        os.exit(2)
    end
    if phase == "report" then
        M.report(out, {command = command_line(argv)})
        return
    end
    if phase ~= "all" then
        io.stderr:write("compare_methods: --phase must be all, tune, final or report\n")
        os.exit(2)
    end
    local report_only = false
    for i = 1, #argv do
        if argv[i] == "--status" or argv[i] == "--merge" then report_only = true end
    end
    for _, p in ipairs({"tune", "final"}) do
        if p == "final" and report_only and not fs.isfile(fs.join(out, "tune", "tune.csv")) then
            print("final: waits for the tuning study's merged results")
        else
            local code = study(p):command(argv_for(argv, p, fs.join(out, p)))
            if code ~= 0 then os.exit(code) end
        end
    end
    if not report_only or fs.isfile(fs.join(out, "final", "final.csv")) then
        M.report(out, {command = command_line(argv)})
    end
end

if type(select(1, ...)) == "table" then return M end   -- required by a test: the helpers only
main(arg)
