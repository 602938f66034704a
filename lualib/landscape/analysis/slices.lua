--- landscape.analysis.slices: loss-landscape slices (lines, planes, interpolations between two
-- models) and batch-norm smoothness probes, reached as ls.landscape.
--
--   local rows = ls.landscape.line(model, train, {direction = "random", points = 51, seed = 1})
--   local grid = ls.landscape.plane(model, train, {grid = {21, 21}, n = 1000})
--   ls.csv.write("out/plane.csv", grid)
--   ls.plot.contour(grid, {out = "out/plane.png"})
--   local path = ls.landscape.interpolate(model_a, model_b, test, {points = 21})
--   local row = ls.landscape.bn_probe(model, xb, yb, {etas = {0.05, 0.1, 0.2, 0.4}})
--
-- Directions follow Li et al. (2018, tomgoldstein/loss-landscape net_plotter.py) with the paper's
-- settings as defaults (norm = "filter", ignore = "biasbn"): one Gaussian tensor per parameter,
-- each dim-0 slice (a linear layer's output row, a convolution's output channel) rescaled to the
-- norm of the same slice of the weights; parameters of dim <= 1 (biases, batch-norm weight and
-- bias) are zeroed with ignore = "biasbn" and set equal to the weights otherwise. Every function
-- takes an objective (ls.objective) or (model, data, opts) with the objective's options (loss,
-- mode = "eval", batch = 1000, params = "all": the parameters the directions span, n). Points are
-- evaluated with obj:value(), the loss summed per batch as ls.evaluate does, so alpha = 0 gives
-- ls.evaluate's loss bit for bit; the model is restored exactly afterwards (the objective's guard).
-- docs/sharpness-landscape.md is the reference.
local ls = require "landscape"
local util = require "landscape.util"
local O = require "landscape.train.objective"
local P = require "landscape.train.params"
local fail, public, check_options, posint, posnum = util.fail, util.public, util.check_options,
    util.posint, util.posnum

local M = {}

local NORMS = {filter = true, layer = true, weight = true, dfilter = true, dlayer = true,
               none = true}

local function check_norm(norm, who)
    norm = norm or "filter"
    if norm == "" then norm = "none" end
    if not NORMS[norm] then
        fail("%s: unknown norm '%s' (known: filter, layer, weight, dfilter, dlayer, none)", who,
             tostring(norm))
    end
    return norm
end

local function check_ignore(ignore, who)
    if ignore == nil then return "biasbn" end
    if ignore == "biasbn" or ignore == "none" or ignore == "" or ignore == false then
        return ignore == "biasbn" and "biasbn" or "none"
    end
    fail("%s: option 'ignore' must be \"biasbn\" or \"none\", got %s", who, tostring(ignore))
end

-- Li et al.'s normalisation of direction d against weights w (both one parameter's tensors).
local function normalize_one(d, w, norm, ignore)
    if w:dim() <= 1 then
        if ignore == "biasbn" then return ls.zeros_like(w) end
        return w:clone()
    end
    if norm == "none" then return d end
    if norm == "layer" then return d * (w:norm() / d:norm()) end
    if norm == "weight" then return d * w end
    if norm == "dlayer" then return d / d:norm() end
    -- per dim-0 slice: filter / dfilter
    local rows = w:size(1)
    local d2, w2 = d:reshape(rows, -1), w:reshape(rows, -1)
    local dn = d2:norm(2, 2, true)
    local scale
    if norm == "filter" then
        scale = w2:norm(2, 2, true) / (dn + 1e-10)
    else
        scale = 1 / (dn + 1e-10)
    end
    return (d2 * scale):reshape(w:size())
end

--- ls.landscape.normalize_direction(model, d [, {norm = "filter", ignore = "biasbn"}]) -> list
-- d: a list of tensors, one per parameter (state-dict order), or a flat tensor over all of them.
-- e.g. local d = ls.landscape.normalize_direction(model, dirs, {norm = "filter"})
function M.normalize_direction(model, d, opts)
    local who = "normalize_direction"
    opts = check_options(opts, {norm = true, ignore = true}, who)
    local norm, ignore = check_norm(opts.norm, who), check_ignore(opts.ignore, who)
    local sel = P.select(model, nil, who)
    local ds = M._as_list(sel, d, who)
    return ls.no_grad(function()
        local out = {}
        for i, e in ipairs(sel) do out[i] = normalize_one(ds[i], e.t:detach(), norm, ignore) end
        return out
    end)
end
M.normalize_direction = public(M.normalize_direction)

-- A direction given by the user: a flat tensor over the parameters (numel must match) or a list of
-- tensors shaped like them.
function M._as_list(sel, d, who)
    local total = 0
    for _, e in ipairs(sel) do total = total + e.t:numel() end
    if ls.is_tensor(d) then
        if d:numel() ~= total then
            fail("%s: a flat direction must have %d elements (the parameters, state-dict order), " ..
                 "got %s", who, total, util.shape_str(d))
        end
        local out, off = {}, 1
        local flat = d:detach():reshape(-1)
        for i, e in ipairs(sel) do
            local n = e.t:numel()
            out[i] = flat:narrow(1, off, n):reshape(e.t:size()):cast(e.t.dtype)
            off = off + n
        end
        return out
    end
    if type(d) == "table" and #d == #sel then
        local out = {}
        for i, e in ipairs(sel) do
            if not ls.is_tensor(d[i]) or d[i]:numel() ~= e.t:numel() then
                fail("%s: direction entry %d must be a tensor of shape %s", who, i,
                     util.shape_str(e.t))
            end
            out[i] = d[i]:detach():reshape(e.t:size()):cast(e.t.dtype)
        end
        return out
    end
    fail("%s: a direction must be \"random\", \"gradient\", a flat tensor of %d elements or a " ..
         "list of %d tensors, got %s", who, total, #sel, type(d))
end

local function random_dir(sel, seed, which)
    local out = {}
    for i, e in ipairs(sel) do
        out[i] = ls.randn(e.t:size(), {seed = util.subseed(seed, which, i), dtype = e.t.dtype})
    end
    return out
end

-- Build one direction over the objective's parameters: returns the list and a label for the rows.
local function make_direction(obj, spec, norm, ignore, seed, which, who)
    local sel = obj.entries
    local raw, label, normalise
    if spec == nil or spec == "random" then
        raw, label, normalise = random_dir(sel, seed, which), "random", true
    elseif spec == "gradient" then
        raw, label, normalise = (obj:grad{flat = false}), "gradient", true
    elseif spec == "eigen" then
        local res = ls.curvature.hessian(obj):eigs{k = which}
        local v = res.vectors and res.vectors[which]
        if not ls.is_tensor(v) then fail("%s: ls.curvature returned no eigenvector %d", who, which) end
        raw, label, normalise = M._as_list(sel, v, who), "eigen" .. which, false
    else
        raw, label, normalise = M._as_list(sel, spec, who), "given", false
    end
    if not normalise then return raw, label, "none" end
    return ls.no_grad(function()
        local out = {}
        for i, e in ipairs(sel) do out[i] = normalize_one(raw[i], e.t:detach(), norm, ignore) end
        return out
    end), label, norm
end

local function linspace(lo, hi, n)
    local out = {}
    if n == 1 then return {lo} end
    for i = 1, n do out[i] = lo + (hi - lo) * (i - 1) / (n - 1) end
    out[n] = hi
    return out
end

local function check_range(r, key, who, default)
    r = r or default
    if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number" or not (r[1] < r[2])
    then
        fail("%s: option '%s' must be {lo, hi} with lo < hi", who, key)
    end
    return r
end

local SLICE_OPTS = {seed = true, norm = true, ignore = true}

local function common(a, b, c, who, extra)
    local obj, opts = O.resolve(who, a, b, c)
    opts = check_options(opts, util.options(SLICE_OPTS, extra), who)
    local norm, ignore = check_norm(opts.norm, who), check_ignore(opts.ignore, who)
    local seed = util.integer(opts.seed or 1, who, "option 'seed'")
    return obj, opts, norm, ignore, seed
end

--- ls.landscape.line(model, data [, opts]) or (objective [, opts]) -> rows {alpha, loss, accuracy,
-- settings...}: the loss at w + alpha d for `points` values of alpha evenly spaced over `range`.
-- opts: direction = "random" | "gradient" | "eigen" | flat tensor | list of tensors;
--   norm = "filter" (random and gradient directions only; given ones are used as they are),
--   ignore = "biasbn", range = {-1, 1}, points = 51, seed = 1, and the objective's options.
-- e.g. local rows = ls.landscape.line(model, train, {points = 21, range = {-1, 1}})
local function line(a, b, c)
    local who = "line"
    local obj, opts, norm, ignore, seed = common(a, b, c, who, {direction = true, range = true,
                                                                points = true})
    local range = check_range(opts.range, "range", who, {-1, 1})
    local points = posint(opts.points or 51, who, "option 'points'")
    return obj:guard(function()
        local w0 = obj:snapshot()
        local dir, label, used = make_direction(obj, opts.direction, norm, ignore, seed, 1, who)
        local rows = {}
        for i, x in ipairs(linspace(range[1], range[2], points)) do
            obj:set(w0, {{x, dir}})
            local r = obj:evaluate()
            rows[i] = {alpha = x, loss = r.loss, accuracy = r.accuracy, direction = label,
                       norm = used, ignore = ignore, seed = seed, n = obj.N, mode = obj.mode,
                       loss_fn = obj.loss, dir_norm = O.norm(dir)}
        end
        return rows
    end, {params = true})
end
M.line = public(line)

--- ls.landscape.plane(model, data [, opts]) or (objective [, opts]) -> rows {alpha, beta, i, j,
-- loss, accuracy, settings}: the loss at w + alpha d1 + beta d2 on a grid[1] x grid[2] grid over
-- xrange x yrange. Rows are in Li et al.'s order: alpha varies fastest (row k has
-- alpha_{k mod nx}, beta_{k div nx}).
-- opts: directions = "random" | {d1, d2} (each as line's direction), norm, ignore, grid = {21, 21},
--   xrange = {-1, 1}, yrange = {-1, 1}, seed = 1 (d1 and d2 are drawn independently, not
--   orthogonalised; their cosine is in the rows), and the objective's options.
-- e.g. ls.plot.contour(ls.landscape.plane(model, train, {grid = {21, 21}}),
--          {out = "out/plane.png"})
local function plane(a, b, c)
    local who = "plane"
    local obj, opts, norm, ignore, seed = common(a, b, c, who, {directions = true, grid = true,
                                                                xrange = true, yrange = true})
    local grid = opts.grid or {21, 21}
    if type(grid) ~= "table" or math.type(grid[1]) ~= "integer" or math.type(grid[2]) ~= "integer"
        or grid[1] < 1 or grid[2] < 1 then
        fail("%s: option 'grid' must be {nx, ny} with positive integers, got %s", who,
             type(grid) == "table" and ("{" .. tostring(grid[1]) .. ", " .. tostring(grid[2]) .. "}")
             or tostring(grid))
    end
    local xr = check_range(opts.xrange, "xrange", who, {-1, 1})
    local yr = check_range(opts.yrange, "yrange", who, {-1, 1})
    local dirs = opts.directions or "random"
    local s1, s2
    if dirs == "random" then
        s1, s2 = "random", "random"
    elseif type(dirs) == "table" and dirs[1] ~= nil and dirs[2] ~= nil then
        s1, s2 = dirs[1], dirs[2]
    else
        fail("%s: option 'directions' must be \"random\" or {d1, d2}", who)
    end
    return obj:guard(function()
        local w0 = obj:snapshot()
        local d1, l1, u1 = make_direction(obj, s1, norm, ignore, seed, 1, who)
        local d2, l2, u2 = make_direction(obj, s2, norm, ignore, seed, 2, who)
        local n1, n2 = O.norm(d1), O.norm(d2)
        local cos = (n1 > 0 and n2 > 0) and O.dot(d1, d2) / (n1 * n2) or 0
        local xs, ys = linspace(xr[1], xr[2], grid[1]), linspace(yr[1], yr[2], grid[2])
        local rows = {}
        for j, y in ipairs(ys) do
            for i, x in ipairs(xs) do
                obj:set(w0, {{x, d1}, {y, d2}})
                local r = obj:evaluate()
                rows[#rows + 1] = {alpha = x, beta = y, i = i, j = j, loss = r.loss,
                                   accuracy = r.accuracy, direction_x = l1, direction_y = l2,
                                   norm = u1 == u2 and u1 or (u1 .. "/" .. u2), ignore = ignore,
                                   seed = seed, n = obj.N, nx = grid[1], ny = grid[2],
                                   cosine = cos, mode = obj.mode, loss_fn = obj.loss}
            end
        end
        return rows
    end, {params = true})
end
M.plane = public(plane)

--- ls.landscape.interpolate(model_a, model_b, data [, opts]) -> rows {alpha, loss, accuracy, ...}
-- theta(alpha) = (1 - alpha) theta_a + alpha theta_b for every parameter AND every float buffer
-- (batch-norm running mean and variance; Li et al.'s dir_type = "states"); running_var is clamped
-- at 0 when extrapolation makes it negative; num_batches_tracked is model_a's. Evaluated on a clone
-- of model_a in eval mode; neither model is changed.
-- opts: points = 21, range = {-0.5, 1.5}, and the objective's n, batch, loss (the mode is eval).
-- e.g. local rows = ls.landscape.interpolate(model_a, model_b, train, {points = 11})
local function interpolate(ma, mb, data, opts)
    local who = "interpolate"
    opts = check_options(opts, {points = true, range = true, n = true, batch = true,
                                loss = true}, who)
    for _, m in ipairs{ma, mb} do
        if type(m) ~= "table" or type(m.state_dict) ~= "function" then
            fail("%s: both models must be ls.nn modules (with state_dict)", who)
        end
    end
    local range = check_range(opts.range, "range", who, {-0.5, 1.5})
    local points = posint(opts.points or 21, who, "option 'points'")
    local sa, sb = ma:state_dict(), mb:state_dict()
    if #sa ~= #sb then
        fail("%s: the models have different architectures (%d and %d state-dict entries)", who,
             #sa, #sb)
    end
    for k, e in ipairs(sa) do
        local name, ta = e[1], e[2]
        local tb = sb[name]
        if tb == nil or sb[k][1] ~= name then
            fail("%s: the models have different architectures: '%s' of model_a is not in model_b " ..
                 "at the same position", who, name)
        end
        if util.shape_str(ta) ~= util.shape_str(tb) or ta.dtype ~= tb.dtype then
            fail("%s: the models have different architectures: '%s' is %s %s in model_a and %s %s " ..
                 "in model_b", who, name, ta.dtype, util.shape_str(ta), tb.dtype,
                 util.shape_str(tb))
        end
    end
    local work = ma:clone()
    local obj = O.resolve(who, work, data, {n = opts.n, batch = opts.batch, loss = opts.loss,
                                            mode = "eval"})
    local sw = work:state_dict()
    local rows = {}
    for i, a in ipairs(linspace(range[1], range[2], points)) do
        ls.no_grad(function()
            for k, e in ipairs(sw) do
                local name, t = e[1], e[2]
                if t.dtype == "f32" or t.dtype == "f64" then
                    local v
                    if a == 0 then v = sa[k][2]
                    elseif a == 1 then v = sb[k][2]
                    else v = sa[k][2] * (1 - a) + sb[k][2] * a end
                    if name:find("running_var$") then v = v:clamp(0) end
                    t:copy(v)
                end
            end
        end)
        local r = obj:evaluate()
        rows[i] = {alpha = a, loss = r.loss, accuracy = r.accuracy, n = obj.N, mode = "eval",
                   loss_fn = obj.loss, buffers = "interpolated"}
    end
    return rows
end
M.interpolate = public(interpolate)

local DEFAULT_ETAS = {0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4}

--- ls.landscape.bn_probe(model, x, y [, opts]) -> row
-- Santurkar et al. (2018, Fig. 4) at the current weights w: g = grad L_B(w) on the batch (x, y);
-- for each eta, L(w - eta g) and ||grad L(w - eta g) - g||. The row has
--   loss_range = max - min of the losses over the etas (the "loss landscape" variation),
--   grad_range = max - min of the gradient changes ("gradient predictiveness"),
--   beta = max over eta of ||grad L(w - eta g) - g|| / ||eta g|| ("effective beta-smoothness"),
-- plus loss (at w), grad_norm, loss_min/max, grad_change_min/max. The model is evaluated in its
-- current mode (train mode: batch statistics, as during training; running statistics frozen) and
-- is left exactly as it was.
-- opts: etas = {0.05, 0.1, ..., 0.4} (step sizes; scale multiplies them, e.g. by the current lr),
--   scale = 1, loss = "cross_entropy" | "mse" | fn, params = "all".
-- e.g. local row = ls.landscape.bn_probe(model, x, y, {scale = 0.1})
local function bn_probe(model, x, y, opts)
    local who = "bn_probe"
    opts = check_options(opts, {etas = true, scale = true, loss = true, params = true}, who)
    local etas = opts.etas or DEFAULT_ETAS
    if type(etas) ~= "table" or #etas == 0 then
        fail("%s: option 'etas' must be a non-empty list", who)
    end
    local scale = opts.scale or 1
    for _, e in ipairs(etas) do posnum(e, who, "option 'etas'") end
    posnum(scale, who, "option 'scale'")
    local mode = model.training == false and "eval" or "train"
    local obj = O.resolve(who, model, {x = x, y = y}, {loss = opts.loss, params = opts.params,
                                                       mode = mode, batch = ls.is_tensor(x) and
                                                       x:dim() > 0 and x:size(1) or nil})
    return obj:guard(function()
        local w0 = obj:snapshot()
        local g, L0 = obj:grad{flat = false}
        local gn = O.norm(g)
        local lmin, lmax, cmin, cmax, beta = math.huge, -math.huge, math.huge, -math.huge, 0
        for _, e in ipairs(etas) do
            local eta = e * scale
            obj:set(w0, {{-eta, g}})
            local gn2, L = obj:grad{flat = false}
            local diff = {}
            for i = 1, #g do diff[i] = gn2[i] - g[i] end
            local ch = O.norm(diff)
            lmin, lmax = math.min(lmin, L), math.max(lmax, L)
            cmin, cmax = math.min(cmin, ch), math.max(cmax, ch)
            if gn > 0 then beta = math.max(beta, ch / (eta * gn)) end
        end
        return {loss = L0, grad_norm = gn, loss_min = lmin, loss_max = lmax,
                loss_range = lmax - lmin, grad_change_min = cmin, grad_change_max = cmax,
                grad_range = cmax - cmin, beta = beta, n_etas = #etas, eta_min = etas[1] * scale,
                eta_max = etas[#etas] * scale, mode = mode, loss_fn = obj.loss, n = obj.N}
    end, {params = true})
end
M.bn_probe = public(bn_probe)

return M
