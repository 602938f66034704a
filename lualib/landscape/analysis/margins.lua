--- landscape.margins (ls.margins): training-set margin distributions and input geometry, after
-- Jiang, Krishnan, Mobahi, Bengio, "Predicting the generalization gap in deep networks with margin
-- distributions", ICLR 2019. docs/margins.md is the reference (definitions, conventions, examples).
--
--   local m = ls.margins(model, train, {layers = {"input", "first", "last", "output"}})
--   m.output                 [N] f_y - f_j (negative when misclassified)
--   m.layers[k]              [N] normalised margins at layer k (k as given: "input", 3, "last", ...)
--   m.raw[k], m.nu[k]        the margins before the normalisation and the normalising scale
--   m.pairs.y, m.pairs.j     [N] i64: the label and the best other class
--   local sig = ls.margins.signature(m, {stats = "quartiles+fences", log = true})
--   ls.csv.write("sig.csv", sig:rows())          -- tidy: one row per (layer, statistic)
--   local f = sig:features()                      -- "input.q1" -> value, ... (one row per model)
--   local g = ls.margins.input_geometry(model, train)
--
-- Layers. A layer is named by a spec:
--   "input"   z_0 = x
--   k         the output of the k-th child (1-based) of the top-level sequential, 1 <= k < #children
--   "first"   the first hidden pre-activation: the output of the first child with parameters (a
--             linear, conv2d or basic_block), or of the batch norm right after it
--   "last"    the last hidden pre-activation: the same rule for the last child with parameters
--             before the final one (the reference's z^D, after BN and before the activation)
--   "output"  the logits: d = (f_y - f_j) / sqrt(eps + 2) (the gradient of f_y - f_j w.r.t. the
--             logits is e_y - e_j), normalised by the logits' total variance like any other layer
--             (opts.output = "raw" gives f_y - f_j unnormalised instead)
local ls = require "landscape"
local util = require "landscape.util"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options, util.shape_str
local stats = require "landscape.stats"
local O = require "landscape.train.objective"

local M = {}





local function is_module(m)
    return type(m) == "table" and type(m.forward) == "function" and m._children ~= nil
end

local function is_sequential(m)
    local nn = ls.nn
    return is_module(m) and getmetatable(m) == nn.Sequential
end

local function has_batchnorm(model)
    for _, m in ipairs(model:modules()) do
        if m.running_mean ~= nil then return true end
    end
    return false
end

-- A child with parameters that is not a batch norm: linear, conv2d, basic_block, a sub-sequential.
local function is_parametric(c)
    return c.running_mean == nil and #c:parameters() > 0
end

local function spec_name(s)
    if math.type(s) == "integer" then return "layer" .. s end
    return s
end

-- Resolve a layer spec to a child position: 0 for the input, 1..n-1 for a child, "output".
local function resolve_layer(model, spec, who)
    if spec == "output" then return "output" end
    if spec == "input" then return 0 end
    if not is_sequential(model) then
        fail("%s: layer '%s' needs an ls.nn.sequential model (layer margins capture the outputs " ..
             "of its children); this model supports only \"input\" and \"output\"", who,
             tostring(spec))
    end
    local ch = model:children()
    local n = #ch
    if type(spec) == "number" then
        local k = math.tointeger(spec)
        if not k or k < 1 or k >= n then
            fail("%s: layer index %s is out of range: the sequential has %d children, so hidden " ..
                 "layers are 1..%d (use \"output\" for the logits, \"input\" for x)", who,
                 tostring(spec), n, n - 1)
        end
        return k
    end
    if spec == "first" or spec == "last" then
        local par = {}
        for i, c in ipairs(ch) do if is_parametric(c) then par[#par + 1] = i end end
        if #par < 2 then
            fail("%s: layer '%s': the model has no hidden layer (%d child(ren) with parameters " ..
                 "besides batch norm)", who, spec, #par)
        end
        local i = spec == "first" and par[1] or par[#par - 1]
        if ch[i + 1] and ch[i + 1].running_mean ~= nil and i + 1 < n then i = i + 1 end
        return i
    end
    fail("%s: unknown layer '%s' (known: \"input\", \"first\", \"last\", \"output\", or a child " ..
         "index 1..%d)", who, tostring(spec), n - 1)
end

-- Streaming total variance of a layer: sum over units of the population variance over samples.
-- Sums of (z - K) and (z - K)^2 in f64, K = the first batch's per-unit mean (a shift that keeps the
-- one-pass formula accurate).
local function tv_new() return {n = 0} end

local function tv_add(acc, z)
    local b = z:size(1)
    local a = z:detach():reshape(b, -1):double()
    if not acc.shift then
        acc.shift = a:mean(1)
        acc.s1 = ls.zeros_like(acc.shift)
        acc.s2 = ls.zeros_like(acc.shift)
    end
    local d = a - acc.shift
    acc.s1 = acc.s1 + d:sum(1)
    acc.s2 = acc.s2 + (d * d):sum(1)
    acc.n = acc.n + b
end

local function tv_total(acc)
    local n = acc.n
    local var = (acc.s2 - acc.s1 * acc.s1 / n) / n
    return var:clamp(0):sum():item()
end

-- Per-sample squared l2 norm of g [B, ...] -> [B] (f64).
local function sq_norm(g)
    local b = g:size(1)
    local a = g:reshape(b, -1):double()
    return (a * a):sum(2)
end

-- The best other class j for logits f [B, C] (detached) and labels y [B] i64.
local function best_other(f, y, C)
    local oh = ls.one_hot(y, C):cast(f.dtype)
    local masked = f - oh * 1e30
    return masked:argmax(2)
end

local function check_data(data, who)
    if type(data) ~= "table" or not ls.is_tensor(data.x) then
        fail("%s: expected a dataset {x = tensor, y = tensor}, got %s", who, type(data))
    end
    return data.x, data.x:size(1)
end

local function check_labels(y, N, who)
    if not ls.is_tensor(y) then fail("%s: labels must be an i64 tensor, got %s", who, type(y)) end
    if y.dtype ~= "i64" or y.ndim ~= 1 then
        fail("%s: labels must be a 1-D i64 tensor, got %s %s", who, y.dtype, shape_str(y))
    end
    if y:size(1) ~= N then
        fail("%s: %d labels for %d samples", who, y:size(1), N)
    end
    return y
end

-- Forward a batch, checking the logits and the labels' range, with a readable error when the model
-- rejects the input.
local function check_logits(f, y, xb, who)
    if not ls.is_tensor(f) or f.ndim ~= 2 or f:size(1) ~= xb:size(1) then
        fail("%s: the model should map %s to logits [B x C], got %s", who, shape_str(xb),
             ls.is_tensor(f) and shape_str(f) or type(f))
    end
    local C = f:size(2)
    if C < 2 then fail("%s: margins need at least 2 classes, the logits are %s", who, shape_str(f)) end
    local yd = y:double()
    local lo, hi = math.tointeger(yd:min():item()), math.tointeger(yd:max():item())
    if lo < 1 or hi > C then
        fail("%s: labels span %d..%d but the model has %d classes", who, lo, hi, C)
    end
    return C
end

local function model_error(who, xb, err)
    fail("%s: the model rejected input %s: %s", who, shape_str(xb), tostring(err))
end

-- The 1-D tensors of a pass's batches, end to end (one batch: itself).
local function cat(parts)
    if #parts == 1 then return parts[1] end
    local total = 0
    for _, p in ipairs(parts) do total = total + p:size(1) end
    local out = ls.zeros({total}, {dtype = parts[1].dtype})
    local off = 1
    for _, p in ipairs(parts) do
        out:narrow(1, off, p:size(1)):copy(p)
        off = off + p:size(1)
    end
    return out
end

-- The objective (given, or built from model and data with the objective's mode, batch and n) and
-- the labels defining the margins (opts.labels, checked against the data's size, or the data's y).
local function setup(who, a, b, c, known)
    local obj, opts, y
    if O.is_objective(a) then
        obj, opts = O.resolve(who, a, b)
        opts = check_options(opts, known, who)
        if not is_module(obj.model) then
            fail("%s: expected an ls.nn module, got %s", who, type(obj.model))
        end
        y = check_labels(opts.labels or obj.y, obj.N, who)
        if opts.labels then   -- the same objective on the given labels
            obj = O.resolve(who, obj.model, {x = obj.x, y = y}, {mode = obj.mode, batch = obj.batch})
        end
    else
        if not is_module(a) then fail("%s: expected an ls.nn module, got %s", who, type(a)) end
        c = check_options(c, util.options(known, {mode = true, batch = true, n = true}), who)
        local X, N = check_data(b, who)
        y = check_labels(c.labels or b.y, N, who)
        obj, opts = O.resolve(who, a, {x = X, y = y}, c, {batch = 500})
    end
    return obj, opts, obj.x, obj.N, obj.y
end

local MARGIN_OPTS = {layers = true, labels = true, positive_only = true, eps = true, output = true}

--- ls.margins(model, data [, opts]) or ls.margins(objective [, opts]) -> m
-- opts (defaults):
--   layers = {"input", "first", "last", "output"}   layer specs (see the header); {} for the output
--            margin only
--   mode = "eval"        (the objective's) "eval" (batch norm uses running statistics, dropout off)
--                        or "train". Layer margins in train mode are refused when the model has
--                        batch norm: batch statistics couple the samples, so the gradient of the
--                        batch sum is no longer the per-sample gradient. The model is restored
--                        afterwards (ls.objective's guard).
--   batch = 500          (the objective's) samples per forward/backward pass; n = nil: the first n
--   labels = data.y      the labels defining the margin (the training labels, noisy ones included)
--   positive_only = false  keep only positive margins in m.layers (m.kept_fraction[k], m.keep)
--   eps = 1e-6           d = (f_y - f_j) / sqrt(eps + |grad|^2)
--   output = "normalised"  the "output" slot: (f_y - f_j)/sqrt(eps + 2)/nu(logits), or "raw": f_y - f_j
-- Result fields: output, layers, raw, nu, pairs = {y, j}, correct (f64 0/1 [N]),
-- kept_fraction, keep (i64 positions kept, when positive_only), names (ordered slot names),
-- specs (the specs as given), index (spec name -> child position or "output"), n.
-- e.g. local m = ls.margins(model, train); print(ls.stats.quantile(m.output, 0.5))
local function margins(a, b, c)
    local who = "margins"
    local obj, opts, X, N, y = setup(who, a, b, c, MARGIN_OPTS)
    local model, mode = obj.model, obj.mode
    local eps = opts.eps or 1e-6
    local out_mode = opts.output or "normalised"
    if out_mode ~= "normalised" and out_mode ~= "raw" then
        fail("%s: output must be \"normalised\" or \"raw\", got %s", who, tostring(out_mode))
    end
    local specs = opts.layers or {"input", "first", "last", "output"}
    if type(specs) ~= "table" then fail("%s: layers must be a list of layer specs", who) end

    -- resolve the specs
    local slots, need_grad = {}, false
    local capture = {}                       -- child position -> true
    for i, s in ipairs(specs) do
        local pos = resolve_layer(model, s, who)
        slots[i] = {spec = s, name = spec_name(s), pos = pos}
        if pos ~= "output" then
            need_grad = true
            capture[pos] = true
        end
    end
    if need_grad and mode == "train" and has_batchnorm(model) then
        fail("%s: layer margins in train mode are undefined for a model with batch norm (batch " ..
             "statistics couple the samples); use mode = \"eval\" or layers = {\"output\"}", who)
    end
    local children = is_sequential(model) and model:children() or nil

    local out_parts, j_parts = {}, {}
    local raw_parts, tv = {}, {}
    for i = 1, #slots do raw_parts[i], tv[i] = {}, tv_new() end
    local tv_logits = tv_new()

    obj:guard(function()
        for bi, bt in ipairs(obj:batches()) do
            local b, xb, yb = bt.B, bt.x, bt.y
            local acts = {}
            local f
            if need_grad then
                local x0 = xb
                if capture[0] then x0 = ls.no_grad(function() return xb:clone() end):requires_grad() end
                acts[0] = x0
                local ok, err = pcall(function()
                    ls.enable_grad(function()
                        local h = x0
                        if children then
                            for k, c in ipairs(children) do
                                h = c:forward(h)
                                if capture[k] then acts[k] = h end
                            end
                        else                          -- any module: only "input" is captured
                            h = model:forward(h)
                        end
                        f = h
                    end)
                end)
                if not ok then model_error(who, xb, err) end
            else
                local ok, err = pcall(function()
                    f = ls.no_grad(function() return model:forward(xb) end)
                end)
                if not ok then model_error(who, xb, err) end
            end
            local C = check_logits(f, yb, xb, who)
            local fd = f:detach()
            local jb = ls.no_grad(function() return best_other(fd, yb, C) end)
            local y2, j2 = yb:view(b, 1), jb:view(b, 1)
            local mb = ls.no_grad(function()
                return (fd:gather(2, y2) - fd:gather(2, j2)):view(b):double()
            end)
            out_parts[#out_parts + 1] = mb
            j_parts[#j_parts + 1] = jb
            tv_add(tv_logits, fd)
            if need_grad then
                -- one gradient per distinct position ("first" and "last" can coincide; ls.grad
                -- credits a tensor listed twice only once)
                local inputs, idx, at = {}, {}, {}
                for i, sl in ipairs(slots) do
                    if sl.pos ~= "output" then
                        if not at[sl.pos] then
                            local t = acts[sl.pos]
                            for q, u in ipairs(inputs) do   -- a child that returns its input
                                if rawequal(u, t) then at[sl.pos] = q end
                            end
                            if not at[sl.pos] then
                                inputs[#inputs + 1] = t
                                at[sl.pos] = #inputs
                            end
                        end
                        idx[i] = at[sl.pos]
                    end
                end
                local obj = (f:gather(2, y2) - f:gather(2, j2)):sum()
                local grads = ls.grad(obj, inputs, {allow_unused = true})
                ls.no_grad(function()
                    for i, sl in ipairs(slots) do
                        if sl.pos ~= "output" then
                            local g = grads[idx[i]]
                            local nrm
                            if g == nil then nrm = ls.zeros({b}, {dtype = "f64"})
                            else nrm = sq_norm(g) end
                            raw_parts[i][#raw_parts[i] + 1] = mb / (nrm + eps):sqrt()
                            tv_add(tv[i], acts[sl.pos])
                        end
                    end
                end)
            end
            if bi % 8 == 1 then collectgarbage() end
        end
    end)

    local res = {n = N, specs = specs, names = {}, layers = {}, raw = {}, nu = {}, index = {},
                 kept_fraction = {}}
    ls.no_grad(function()
        res.output = cat(out_parts)
        res.pairs = {y = y, j = cat(j_parts)}
        res.correct = res.output:gt(0)
        local keep
        if opts.positive_only then
            local pos = {}
            for i, v in ipairs(res.output:totable()) do if v > 0 then pos[#pos + 1] = i end end
            keep = ls.tensor(pos, {dtype = "i64"})
            res.keep = keep
        end
        local nu_logits = math.sqrt(tv_total(tv_logits))
        for i, sl in ipairs(slots) do
            local raw, nu
            if sl.pos == "output" then
                if out_mode == "raw" then
                    raw, nu = res.output, 1.0
                else
                    raw, nu = res.output / math.sqrt(eps + 2), nu_logits
                end
            else
                raw = cat(raw_parts[i])
                nu = math.sqrt(tv_total(tv[i]))
            end
            local d = raw / nu
            if keep then
                d = keep:numel() > 0 and d:index_select(1, keep) or ls.zeros({0}, {dtype = "f64"})
                res.kept_fraction[sl.spec] = keep:numel() / N
            end
            res.names[i] = sl.name
            res.index[sl.spec] = sl.pos
            res.layers[sl.spec] = d
            res.raw[sl.spec] = raw
            res.nu[sl.spec] = nu
        end
    end)
    return res
end

---------------------------------------------------------------------------------------------------
-- Signature
---------------------------------------------------------------------------------------------------
local Signature = {}
Signature.__index = Signature
Signature.__name = "landscape.margins.Signature"

local LOG_FLOOR = 1e-12

--- sig:features() -> a flat map "slot.stat" -> value (and "slot.n_clipped" when log = true),
-- for one row of features per model: ls.csv.write(path, {sig:features()}).
function Signature:features()
    local out = {}
    for _, name in ipairs(self.layers) do
        for _, st in ipairs(self.stats) do out[name .. "." .. st] = self.values[name][st] end
        if self.log then out[name .. ".n_clipped"] = self.clipped[name] end
    end
    return out
end

--- sig:feature_names() -> the keys of sig:features(), in layer then statistic order.
function Signature:feature_names()
    local out = {}
    for _, name in ipairs(self.layers) do
        for _, st in ipairs(self.stats) do out[#out + 1] = name .. "." .. st end
        if self.log then out[#out + 1] = name .. ".n_clipped" end
    end
    return out
end

--- sig:rows([extra]) -> tidy rows {layer, stat, value, log [, raw, clipped]} (one per layer and
-- statistic); `extra` (a table) is copied into every row (e.g. {model = "w64_s1"}).
function Signature:rows(extra)
    local out = {}
    for _, name in ipairs(self.layers) do
        for _, st in ipairs(self.stats) do
            local r = {layer = name, stat = st, value = self.values[name][st],
                       log = self.log}
            if self.log then
                r.raw = self.raw_values[name][st]
                r.clipped = self.clipped_at[name][st]
            end
            for k, v in pairs(extra or {}) do r[k] = v end
            out[#out + 1] = r
        end
    end
    return out
end

local SIG_OPTS = {stats = true, log = true, layers = true, raw = true}

--- ls.margins.signature(m [, opts]) -> sig
-- opts (defaults):
--   stats = "quartiles+fences"   a set of ls.stats ("quartiles+fences", "quartiles+p5p95",
--                                "moments", "all") or a list of statistic names (ls.stats.STATS)
--   log = false                  take log of every statistic; a value <= 0 (or NaN) becomes
--                                log(1e-12) and is counted in "<slot>.n_clipped"
--   layers = m.specs             which slots to summarise
--   raw = false                  summarise m.raw (the margins before the division by nu)
--                                instead of m.layers, over the same samples (m.keep's)
-- sig.values[slot][stat], sig.raw_values (before the log), sig.layers (slot names), sig.stats.
-- e.g. local sig = ls.margins.signature(ls.margins(model, train))
local function signature(m, opts)
    local who = "signature"
    opts = check_options(opts, SIG_OPTS, who)
    if type(m) ~= "table" or type(m.layers) ~= "table" or m.specs == nil then
        fail("%s: expected the result of ls.margins, got %s", who, type(m))
    end
    local names = stats.resolve(opts.stats or "quartiles+fences", who)
    local specs = opts.layers or m.specs
    local source = opts.raw and m.raw or m.layers
    if type(source) ~= "table" then fail("%s: the margins hold no raw (unnormalised) values", who) end
    local sig = setmetatable({stats = names, layers = {}, values = {}, raw_values = {},
                              clipped = {}, clipped_at = {}, log = opts.log and true or false,
                              raw = opts.raw and true or false}, Signature)
    for _, spec in ipairs(specs) do
        local d = source[spec]
        if d == nil then
            fail("%s: layer '%s' is not in the margins (computed: %s)", who, tostring(spec),
                 table.concat(m.names, ", "))
        end
        if opts.raw and m.keep then
            d = m.keep:numel() > 0 and d:index_select(1, m.keep) or ls.zeros({0}, {dtype = "f64"})
        end
        local name = spec_name(spec)
        sig.layers[#sig.layers + 1] = name
        local s = stats.summary(d, names)
        local raw, vals, cl, clat = {}, {}, 0, {}
        for _, st in ipairs(names) do
            local v = s[st]
            raw[st] = v
            if sig.log then
                if v > 0 then
                    vals[st], clat[st] = math.log(v), false
                else
                    vals[st], clat[st] = math.log(LOG_FLOOR), true
                    cl = cl + 1
                end
            else
                vals[st] = v
            end
        end
        sig.values[name], sig.raw_values[name] = vals, raw
        sig.clipped[name], sig.clipped_at[name] = cl, clat
    end
    return sig
end

---------------------------------------------------------------------------------------------------
-- Input geometry
---------------------------------------------------------------------------------------------------
local GEOM_OPTS = {labels = true, stats = true}

--- ls.margins.input_geometry(model, data [, opts]) -> {loss_grad_norm [N], margin_grad_norm [N],
-- margin [N], summary = {loss_grad_norm = ls.stats.summary, margin_grad_norm = ...}}
-- Per sample: |d CE(f(x), y) / dx|_2 and |d (f_y - f_j) / dx|_2 (the Jacobian norm along e_y - e_j,
-- j the best other class). opts: batch = 500, mode = "eval" (train mode is refused for a model with
-- batch norm, as in ls.margins), labels = data.y, stats = "all" (the summary's statistics).
-- Any module works (no sequential needed).
-- e.g. local g = ls.margins.input_geometry(model, test, {n = 500})
local function input_geometry(a, b, c)
    local who = "input_geometry"
    local obj, opts, X, N, y = setup(who, a, b, c, GEOM_OPTS)
    local model, mode = obj.model, obj.mode
    if mode == "train" and has_batchnorm(model) then
        fail("%s: per-sample input gradients in train mode are undefined for a model with batch " ..
             "norm (batch statistics couple the samples); use mode = \"eval\"", who)
    end
    local statset = stats.resolve(opts.stats or "all", who)
    local lg, mg, mm = {}, {}, {}
    obj:guard(function()
        for _, bt in ipairs(obj:batches()) do
            local b, xb, yb = bt.B, bt.x, bt.y
            local x0 = ls.no_grad(function() return xb:clone() end):requires_grad()
            local f
            local ok, err = pcall(function()
                f = ls.enable_grad(function() return model:forward(x0) end)
            end)
            if not ok then model_error(who, xb, err) end
            local C = check_logits(f, yb, xb, who)
            local fd = f:detach()
            local jb = ls.no_grad(function() return best_other(fd, yb, C) end)
            local y2, j2 = yb:view(b, 1), jb:view(b, 1)
            local loss = f:cross_entropy(yb, "sum")
            local gl = ls.grad(loss, {x0}, {retain_graph = true})[1]
            local marg = f:gather(2, y2) - f:gather(2, j2)
            local gm = ls.grad(marg:sum(), {x0})[1]
            ls.no_grad(function()
                lg[#lg + 1] = sq_norm(gl):sqrt()
                mg[#mg + 1] = sq_norm(gm):sqrt()
                mm[#mm + 1] = marg:detach():view(b):double()
            end)
        end
    end)
    local res = {}
    ls.no_grad(function()
        res.loss_grad_norm, res.margin_grad_norm, res.margin = cat(lg), cat(mg), cat(mm)
    end)
    res.summary = {loss_grad_norm = stats.summary(res.loss_grad_norm, statset),
                   margin_grad_norm = stats.summary(res.margin_grad_norm, statset)}
    return res
end

M.signature = public(signature)
M.input_geometry = public(input_geometry)
M.Signature = Signature
M._resolve_layer = resolve_layer

return setmetatable(M, {__call = function(_, ...)
    local res = table.pack(pcall(margins, ...))
    if not res[1] then error(res[2], 2) end
    return table.unpack(res, 2, res.n)
end})
