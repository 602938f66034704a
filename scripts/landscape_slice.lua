--- A 2-D loss-landscape slice (Li et al. 2018) of a Fashion-MNIST classifier: CSV + figures.
--
-- usage: landscape scripts/landscape_slice.lua [options]
--   --model FILE       a safetensors state dict to load (default: train a small MLP first)
--   --arch mlp|cnn     the architecture FILE holds (mlp: ls.nn.mlp{hidden = {64}}; cnn:
--                      ls.nn.cnn{}; default mlp). --hidden 64 sets the MLP widths
--   --n N              training examples the loss is evaluated on (default 1000)
--   --grid NXxNY       grid points (default 21x21), over --range LO,HI in both directions (-1,1)
--   --norm filter      direction normalisation (filter, layer, weight, dfilter, dlayer, none)
--   --ignore biasbn    biasbn (zero bias/BN directions) or none (Li et al.'s own default)
--   --seed S           seeds the directions (and the quick training) (default 1)
--   --epochs E         epochs of the quick training when no model is given (default 2)
--   --threads T        engine and BLAS threads
--   --out DIR          output directory (default out/)
-- Writes DIR/slice_<arch>_s<seed>.csv (one row per grid point: alpha, beta, loss, accuracy and the
-- settings), DIR/slice_<arch>_s<seed>_contour.png and _surface.png (with their .gp and .dat files),
-- and prints the centre loss, the grid's min/max and the time taken.
local ls = require "landscape"
local fs = ls.fs

local P = require("landscape.study.args").parser{
    name = "landscape_slice", usage = "landscape scripts/landscape_slice.lua [options]", options = {
    {"model", nil, "a safetensors state dict to load (default: train a small MLP first)",
     type = "string"},
    {"arch", "mlp", "the architecture the model holds", choices = {"mlp", "cnn"}},
    {"hidden", "64", "MLP hidden widths"},
    {"n", 1000, "training examples the loss is evaluated on"},
    {"grid", "21x21", "grid points NXxNY"},
    {"range", "-1,1", "LO,HI of the grid in both directions"},
    {"norm", "filter", "direction normalisation (filter, layer, weight, dfilter, dlayer, none)"},
    {"ignore", "biasbn", "biasbn (zero bias/BN directions) or none"},
    {"seed", 1, "seeds the directions (and the quick training)"},
    {"epochs", 2, "epochs of the quick training when no model is given"},
    {"threads", nil, "engine and BLAS threads", type = "integer"},
    {"out", "out", "output directory", type = "dir", column = false}}}
local cfg = P:parse(arg)
local function usage(msg)
    io.stderr:write("landscape_slice: ", msg, "\n", P:usage())
    os.exit(2)
end
local nx, ny = cfg.grid:match("^(%d+)x(%d+)$")
if not nx then usage("--grid must look like 21x21, got " .. cfg.grid) end
local lo, hi = cfg.range:match("^([^,]+),([^,]+)$")
lo, hi = tonumber(lo), tonumber(hi)
if not lo or not hi then usage("--range must look like -1,1") end

local function main()
    if cfg.threads then ls.set_threads(cfg.threads) end
    local t0 = ls.clock()
    local hidden = {}
    for h in cfg.hidden:gmatch("%d+") do hidden[#hidden + 1] = math.tointeger(tonumber(h)) end
    local model
    if cfg.arch == "mlp" then
        model = ls.nn.mlp{hidden = hidden, seed = cfg.seed}
    elseif cfg.arch == "cnn" then
        model = ls.nn.cnn{seed = cfg.seed}
    else
        usage("--arch must be mlp or cnn")
    end
    local train = ls.data.fashion_mnist{split = "train", n = cfg.n, seed = cfg.seed}
    if cfg.model then
        ls.nn.load_into(model, cfg.model)
        print(string.format("loaded %s (%s, %d parameters)", cfg.model, cfg.arch,
                            model:num_parameters()))
    else
        local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9})
        local log = ls.train(model, train, {optimizer = opt, epochs = cfg.epochs, batch = 64,
                                            seed = cfg.seed, progress = false})
        print(string.format("trained %s (%d parameters) for %d epochs on %d images: train loss " ..
                            "%.4f (%.1fs)", cfg.arch, model:num_parameters(), cfg.epochs, train.n,
                            log.epochs[#log.epochs].train_loss, log.seconds))
    end
    local t1 = ls.clock()
    local rows = ls.landscape.plane(model, train, {grid = {tonumber(nx), tonumber(ny)},
                                                   xrange = {lo, hi}, yrange = {lo, hi},
                                                   norm = cfg.norm, ignore = cfg.ignore,
                                                   seed = cfg.seed})
    local t2 = ls.clock()
    assert(fs.mkdir_p(cfg.out))
    local stem = string.format("%s/slice_%s_s%d", cfg.out, cfg.arch, cfg.seed)
    for _, r in ipairs(rows) do r.arch = cfg.arch; r.model = cfg.model or "trained" end
    ls.csv.write(stem .. ".csv", rows)
    local lmin, lmax, centre = math.huge, -math.huge, nil
    for _, r in ipairs(rows) do
        lmin, lmax = math.min(lmin, r.loss), math.max(lmax, r.loss)
        if r.alpha == 0 and r.beta == 0 then centre = r.loss end
    end
    ls.plot.contour(rows, {out = stem .. "_contour.png", title = "loss, " .. cfg.arch ..
                           " (" .. cfg.norm .. "-normalised directions)"})
    ls.plot.surface(rows, {out = stem .. "_surface.png", title = "loss, " .. cfg.arch})
    print(string.format("grid %sx%s over [%g, %g]^2, %d images: centre loss %s, min %.4f, max " ..
                        "%.4f, cosine(d1, d2) %.4f", nx, ny, lo, hi, train.n, tostring(centre),
                        lmin, lmax, rows[1].cosine))
    print(string.format("slice %.1fs (%.3fs per point), total %.1fs; wrote %s.csv, " ..
                        "%s_contour.png, %s_surface.png", t2 - t1, (t2 - t1) / #rows,
                        ls.clock() - t0, stem, stem, stem))
end

local ok, err = xpcall(main, debug.traceback)
if not ok then io.stderr:write(tostring(err), "\n"); os.exit(1) end
