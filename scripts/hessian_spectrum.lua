--- Hessian spectrum of a network on Fashion-MNIST: extreme eigenvalues, trace (total and per layer)
-- and the spectral density by stochastic Lanczos quadrature; tidy CSVs and a gnuplot figure.
--
-- usage: landscape scripts/hessian_spectrum.lua [options]
--   --model FILE.safetensors  weights to analyse (default: train a small MLP first, see below)
--   --arch mlp|cnn            architecture of --model: mlp = ls.nn.mlp{hidden = --hidden},
--                             cnn = ls.nn.cnn{} (default mlp)
--   --hidden 32               MLP hidden widths, comma-separated (default 32)
--   --n 1000                  Fashion-MNIST training images the Hessian averages over (a seeded
--                             class-balanced subset)
--   --batch 1000              batch of the Hessian operator (batches are weighted by size)
--   --mode eval|train         batch-norm/dropout mode of the operator (default eval)
--   --k 3                     number of top and of bottom eigenvalues
--   --probes 100              Hutchinson probes for the trace and for each per-layer trace
--   --steps 100 --runs 10     SLQ Lanczos steps and runs
--   --seed 1                  seeds the data subset, the training and every estimator
--   --train-steps 300         steps of the quick training run when no --model is given (SGD,
--                             lr 0.05, momentum 0.9, batch 100, on 5000 other training images)
--   --threads T               engine and BLAS threads (default: all cores)
--   --out out/                output directory
-- Writes, in DIR, with every setting in columns:
--   hessian_eigs.csv     which (top|bottom), rank, eigenvalue, residual, converged
--   hessian_trace.csv    param (all or a parameter name), numel, trace, stderr, probes
--   hessian_density.csv  grid, density (Gaussian smoothing of the SLQ nodes, standard deviation
--                        sigma = (max - min) / steps, on [min - 5 sigma, max + 5 sigma], 1000 points)
--   hessian_density.png  the density on a log scale (skipped with a warning without gnuplot)
-- The estimators are those of landscape.curvature (op:eigs, op:trace, op:density).
local ls = require "landscape"
local fs = ls.fs
local curvature = ls.curvature

local P = require("landscape.study.args").parser{
    name = "hessian_spectrum", usage = "landscape scripts/hessian_spectrum.lua [options]", options = {
    {"model", nil, "weights to analyse (default: train a small MLP first)", type = "string"},
    {"arch", "mlp", "architecture of --model", choices = {"mlp", "cnn"}},
    {"hidden", "32", "MLP hidden widths, comma-separated"},
    {"n", 1000, "training images the Hessian averages over", min = 1},
    {"batch", 1000, "batch of the Hessian operator", min = 1},
    {"mode", "eval", "batch-norm/dropout mode of the operator", choices = {"eval", "train"}},
    {"k", 3, "number of top and of bottom eigenvalues", min = 1},
    {"probes", 100, "Hutchinson probes", min = 1},
    {"steps", 100, "SLQ Lanczos steps", min = 1},
    {"runs", 10, "SLQ runs", min = 1},
    {"seed", 1, "seeds the data subset, the training and every estimator", min = 1},
    {"train_steps", 300, "steps of the quick training run without --model", min = 1},
    {"threads", nil, "engine and BLAS threads (default: all cores)", type = "integer", min = 1},
    {"out", "out", "output directory", type = "dir", column = false}}}
local cfg = P:parse(arg)
local function usage(msg)
    io.stderr:write("hessian_spectrum: ", msg, "\n", P:usage())
    os.exit(2)
end
if cfg.threads then ls.set_threads(cfg.threads) end
cfg.threads = ls.get_threads()

local timings = {}
local function timed(name, fn)
    local t = ls.clock()
    local r = table.pack(fn())
    timings[#timings + 1] = {name, ls.clock() - t}
    return table.unpack(r, 1, r.n)
end

---------------------------------------------------------------------------------------------------
-- model and data
---------------------------------------------------------------------------------------------------
local hidden = {}
for w in cfg.hidden:gmatch("[^,]+") do
    hidden[#hidden + 1] = math.tointeger(tonumber(w)) or usage("bad --hidden " .. cfg.hidden)
end
local model = cfg.arch == "mlp" and ls.nn.mlp{hidden = hidden, seed = cfg.seed} or ls.nn.cnn{seed = cfg.seed}
local data = timed("load", function()
    return ls.data.fashion_mnist{split = "train", n = cfg.n, seed = cfg.seed}
end)

if cfg.model then
    ls.nn.load_into(model, cfg.model)
    cfg.source = cfg.model
else
    -- a quick training run on a different subset (seed + 1000), so the analysed point is not random
    local train = ls.data.fashion_mnist{split = "train", n = 5000, seed = cfg.seed + 1000}
    local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9})
    local epochs = math.ceil(cfg.train_steps * 100 / train.n)
    local log = timed("train", function()
        return ls.train(model, train, {optimizer = opt, epochs = epochs, batch = 100, seed = cfg.seed,
                                       progress = false,
                                       callback = function(s) return s.step < cfg.train_steps end,
                                       every = 1})
    end)
    cfg.source = string.format("trained %d steps", log.steps)
end
local ev = ls.evaluate(model:eval(), data)
print(string.format("%s, %d parameters; %s; loss %.4f, accuracy %.2f %% on the %d analysed images",
                    cfg.arch, model:num_parameters(), cfg.source, ev.loss, 100 * ev.accuracy, data.n))

local H = curvature.hessian(model, data, {batch = cfg.batch, mode = cfg.mode})

---------------------------------------------------------------------------------------------------
-- estimators (landscape.curvature)
---------------------------------------------------------------------------------------------------
cfg.estimator = "ls.curvature"

-- top and bottom k eigenpairs: lists of {value, residual, converged}
local function eigs(op, k, seed)
    local function get(which)
        local r = op:eigs{k = k, which = which, seed = seed}
        local out = {}
        for j = 1, k do
            out[j] = {value = r.values[j], residual = r.residuals and r.residuals[j],
                      converged = r.converged_each and r.converged_each[j]}
        end
        return out
    end
    return get("largest"), get("smallest")
end

local function trace(op, probes, seed)
    local r = op:trace{probes = probes, seed = seed, method = "hutchinson"}
    return {estimate = r.estimate, stderr = r.stderr}
end

-- The smoothed SLQ density: {grid = list, density = list, sigma} (op:density's default kernel).
local function density(op, steps, runs, seed)
    local d = op:density{steps = steps, runs = runs, seed = seed}
    return {grid = d.grid:totable(), density = d.density:totable(), sigma = d.sigma}
end

---------------------------------------------------------------------------------------------------
-- measurements
---------------------------------------------------------------------------------------------------
local settings = H:settings()
settings.params = nil   -- all of them; per-layer rows name theirs
for _, key in ipairs({"arch", "source", "seed", "estimator", "threads"}) do settings[key] = cfg[key] end
settings.hidden = cfg.arch == "mlp" and cfg.hidden or ""
local function row(t)
    for key, v in pairs(settings) do if t[key] == nil then t[key] = v end end
    return t
end
local SETTING_COLS = {"operator", "mode", "batch", "n_data", "n_params", "dtype", "loss", "arch",
                      "hidden", "source", "seed", "estimator", "threads"}
local function columns(extra)
    local out = {}
    for _, c in ipairs(SETTING_COLS) do out[#out + 1] = c end
    for _, c in ipairs(extra) do out[#out + 1] = c end
    return out
end

local gn = timed("grad_norm", function() return curvature.grad_norm(model, data, {batch = cfg.batch, mode = cfg.mode}) end)
local top, bottom = timed("eigs", function() return eigs(H, cfg.k, cfg.seed) end)
local tr = timed("trace", function() return trace(H, cfg.probes, cfg.seed) end)
local layers = timed("trace_per_layer", function()
    local out = {}
    for j, sub in ipairs(H:per_layer()) do local r = trace(sub, cfg.probes, cfg.seed)
        out[j] = {name = sub.name, n = sub.n, r = r, matvecs = sub.matvecs}
    end
    return out
end)
local dens = timed("density", function() return density(H, cfg.steps, cfg.runs, cfg.seed) end)

-- eigenvalue rows
local eig_rows = {}
for r = 1, cfg.k do
    for _, e in ipairs({{"top", top[r]}, {"bottom", bottom[r]}}) do
        eig_rows[#eig_rows + 1] = row{which = e[1], rank = r, eigenvalue = e[2].value,
                                      residual = e[2].residual, converged = e[2].converged,
                                      grad_norm = gn.norm, mean_loss = gn.loss}
    end
end
-- trace rows
local tr_rows = {row{param = "all", numel = H.n, trace = tr.estimate, stderr = tr.stderr,
                     probes = cfg.probes, method = "hutchinson"}}
for _, l in ipairs(layers) do
    tr_rows[#tr_rows + 1] = row{param = l.name, numel = l.n, trace = l.r.estimate, stderr = l.r.stderr,
                                probes = cfg.probes, method = "hutchinson"}
end
-- density rows
local sigma = dens.sigma
local dens_rows = {}
for j, x in ipairs(dens.grid) do
    dens_rows[j] = row{grid = x, density = dens.density[j], steps = cfg.steps, runs = cfg.runs,
                       sigma = sigma}
end

assert(fs.mkdir_p(cfg.out))
local p_eigs, p_tr = cfg.out .. "/hessian_eigs.csv", cfg.out .. "/hessian_trace.csv"
local p_dens, p_png = cfg.out .. "/hessian_density.csv", cfg.out .. "/hessian_density.png"
ls.csv.write(p_eigs, eig_rows, {columns = columns({"which", "rank", "eigenvalue", "residual",
                                                   "converged", "grad_norm", "mean_loss"})})
ls.csv.write(p_tr, tr_rows, {columns = columns({"param", "numel", "trace", "stderr", "probes", "method"})})
ls.csv.write(p_dens, dens_rows, {columns = columns({"grid", "density", "steps", "runs", "sigma"})})

-- the figure: the density on a log scale down to 1e-6 of its peak (SLQ's Gaussian tails fall far
-- below anything meaningful), values under that floor drawn at it
local peak = 0
for _, r in ipairs(dens_rows) do peak = math.max(peak, r.density) end
local floor = peak > 0 and peak * 1e-6 or 1e-12
local plot_rows = {}
for j, r in ipairs(dens_rows) do plot_rows[j] = {grid = r.grid, density = math.max(r.density, floor)} end
local plotted, perr = pcall(ls.plot.lines, plot_rows, {
    out = p_png, x = "grid", y = "density", logy = true, yrange = {floor, nil},
    xlabel = "eigenvalue", ylabel = "density", size = "page",
    title = string.format("Hessian spectral density (%s mode, N = %d, SLQ %d steps × %d runs, " ..
                          "σ = %.3g)", cfg.mode, data.n, cfg.steps, cfg.runs, sigma)})
if not plotted then io.stderr:write("hessian_spectrum: no figure: ", tostring(perr), "\n") end

-- summary
local function list(es)
    local parts = {}
    for j, e in ipairs(es) do parts[j] = string.format("%.6g", e.value) end
    return table.concat(parts, ", ")
end
print(string.format("gradient norm %.4g; top eigenvalues %s; bottom %s", gn.norm, list(top), list(bottom)))
print(string.format("trace %.6g +- %.3g (Hutchinson, %d probes)", tr.estimate, tr.stderr, cfg.probes))
for _, l in ipairs(layers) do
    print(string.format("  %-12s %8d  trace %.6g +- %.3g", l.name, l.n, l.r.estimate, l.r.stderr))
end
local parts = {}
for _, t in ipairs(timings) do parts[#parts + 1] = string.format("%s %.1f s", t[1], t[2]) end
local matvecs = H.matvecs
for _, l in ipairs(layers) do matvecs = matvecs + l.matvecs end
print(string.format("%d Hessian-vector products over %d images (%d threads); %s", matvecs, data.n,
                    cfg.threads, table.concat(parts, ", ")))
print("wrote " .. table.concat({p_eigs, p_tr, p_dens, plotted and p_png or nil}, " "))
