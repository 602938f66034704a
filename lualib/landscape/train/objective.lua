--- landscape.train.objective (ls.objective): the one home of "a model on a dataset with a loss, a
-- mode, a parameter selection and batching". Every analysis (ls.curvature.hessian/ggn/fisher/
-- grad_norm, ls.sharpness.*, ls.landscape.*, ls.margins, ls.evaluate) and the training loop take
-- an objective, or build one from (model, data, opts). docs/objective.md is the reference.
--
--   local obj = ls.objective(model, train, {loss = "cross_entropy", mode = "eval", batch = 1000,
--                                           params = "scale_invariant"})
--   obj:value()                       -- mean loss over the data (no graph)
--   obj:evaluate()                    -- {loss, accuracy, n}
--   local g, L = obj:grad()           -- flat gradient of the mean loss over the selected params
--   obj:hvp(v [, {create_graph = true}])        -- exact Hessian-vector product, flat
--   local b = obj:batch_view(xb, yb)  -- a batch view: what a training method's step evaluates
--   obj:guard(fn [, {params = true}]) -- fn() in the objective's mode; everything restored after
--
-- Options (ls.objective(model, data, opts)):
--   loss = "cross_entropy"  "cross_entropy", "mse" (mean over output elements per example), or a
--                           function(output, y, reduction) returning the batch mean for reduction
--                           "mean" (the default; a function may ignore the argument) and the
--                           per-example losses [B] for "none" (needed only by ls.curvature.fisher)
--   mode = "eval"           "eval": batch norm uses its running statistics and dropout is off;
--                           "train": batch statistics (running statistics frozen by analyses,
--                           updated by training), dropout on
--   batch = 1000            examples per pass, in order (clamped to N; the last batch may be shorter)
--   params = "all"          which parameters: the language of landscape.train.params (names,
--                           anchored globs, Lua patterns, predicates, the sets all, weights, no_bn,
--                           scale_invariant)
--   n = nil                 use only the first n examples
--
-- Conventions. The full-data loss is the MEAN over the N examples: batch b contributes B_b / N times
-- its own mean loss (exact for per-example losses in eval mode; PyHessian's and curvlinops'
-- weighting). value() sums each batch's summed loss (as ls.evaluate always has, so the two agree
-- bit for bit) and divides by N. Vectors are flat over the selected parameters in state-dict order,
-- each parameter flattened row-major (obj:flatten / obj:unflatten convert); obj.names, obj.shapes,
-- obj.numels and obj.offsets describe the layout.
--
-- The mode guard (obj:guard) sets the model's mode for the duration of fn and then restores every
-- module's training flag and batch-norm freeze flag, every buffer (running statistics, counters)
-- bit for bit, the dropout counters and the global random stream, also when fn raises; with
-- {params = true} it restores the parameters too (for analyses that move them). Every analysis
-- runs its passes inside it, so none leaves a trace on the model.
local ls = require "landscape"
local util = require "landscape.util"
local P = require "landscape.train.params"
local autograd = require "landscape.autograd"
local data = require "landscape.data"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options,
    util.shape_str

local M = {}

local Objective = {}
Objective.__index = Objective
Objective.__name = "landscape.Objective"
M.Objective = Objective

M.KNOWN = {loss = true, mode = true, batch = true, params = true, n = true}

function M.is_objective(v) return getmetatable(v) == Objective end

---------------------------------------------------------------------------------------------------
-- Pieces
---------------------------------------------------------------------------------------------------

local function forward(model, x)
    if type(model.forward) == "function" then return model:forward(x) end
    return model(x)
end
M.forward = forward

local function check_model(model, who)
    local t = type(model)
    if t ~= "table" and t ~= "userdata" then
        fail("%s: model must be a module (with forward and parameters), got %s", who, t)
    end
    local mt = getmetatable(model)
    if type(model.forward) ~= "function" and not (mt and mt.__call) then
        fail("%s: model has no forward method and is not callable", who)
    end
end

-- The data as {x, y, n} (a Dataset is kept as it is): x a tensor [N, ...] with N >= 1, y a tensor
-- with N rows (labels, or float targets for "mse" and custom losses) or, through ls.dataset, a list.
local function as_data(d, who)
    if data.is_dataset(d) then return d end
    if type(d) == "table" and ls.is_tensor(d.x) then
        local x, y = d.x, d.y
        if y ~= nil and not ls.is_tensor(y) then
            local ok, ds = pcall(data.dataset, d)
            if not ok then
                fail("%s: %s", who, (tostring(ds):gsub("^[^\n]-:%d+: ", ""):gsub("^dataset: ", "")))
            end
            return ds
        end
        if x:dim() < 1 or x:size(1) == 0 then
            fail("%s: empty dataset (x has shape %s)", who, shape_str(x))
        end
        local N = x:size(1)
        if y ~= nil and (y:dim() < 1 or y:size(1) ~= N) then
            fail("%s: x has %d examples (shape %s) but y has shape %s", who, N, shape_str(x),
                 shape_str(y))
        end
        return {x = x, y = y, n = N}
    end
    fail("%s: data must be a dataset (ls.dataset(x, y)) or a table {x = ..., y = ...}, got %s", who,
         type(d) == "table" and "a table without an x tensor" or type(d))
end
M.as_data = as_data

-- name -> {mean = fn(out, y), sum = fn(out, y), none = fn(out, y)}, each a recorded tensor.
local LOSSES = {
    cross_entropy = {
        mean = function(out, y) return ls.cross_entropy(out, y) end,
        sum = function(out, y) return ls.cross_entropy(out, y, "sum") end,
        none = function(out, y) return ls.cross_entropy(out, y, "none") end,
    },
    mse = {
        mean = function(out, y) return ls.mse_loss(out, y) end,
        sum = function(out, y) return ls.mse_loss(out, y, "sum") / (out:numel() / out:size(1)) end,
        none = function(out, y)
            local d = out - y
            return (d * d):reshape(out:size(1), -1):mean(2)
        end,
    },
}

local function resolve_loss(loss, who)
    if loss == nil then loss = "cross_entropy" end
    if type(loss) == "function" then
        return {
            mean = function(out, y) return loss(out, y, "mean") end,
            sum = function(out, y) return loss(out, y, "mean") * out:size(1) end,
            none = function(out, y) return loss(out, y, "none") end,
        }, "custom"
    end
    local f = LOSSES[loss]
    if not f then
        fail("%s; known: cross_entropy, mse, or a function(output, y, reduction) that returns the " ..
             "batch mean for reduction 'mean' and per-example losses for 'none'",
             util.unknown(who, "loss", tostring(loss), LOSSES))
    end
    return f, loss
end

-- The loss value of a one-element tensor, or an error naming what the loss returned.
local function loss_item(l, who)
    if not ls.is_tensor(l) or l:numel() ~= 1 then
        fail("%s: the loss function must return a one-element tensor, got %s", who,
             ls.is_tensor(l) and shape_str(l) or type(l))
    end
    return l:item()
end

local function dropouts(model)
    local out = {}
    if type(model) == "table" and type(model.modules) == "function" then
        for _, m in ipairs(model:modules()) do
            if m.calls ~= nil and m.p ~= nil then out[#out + 1] = m end
        end
    end
    return out
end
M.dropouts = dropouts

---------------------------------------------------------------------------------------------------
-- Construction
---------------------------------------------------------------------------------------------------

local function new(model, d, opts, who)
    check_model(model, who)
    opts = check_options(opts, M.KNOWN, who)
    d = as_data(d, who)
    local N = d.n
    if opts.n ~= nil then
        local n = util.posint(opts.n, who, "option 'n'")
        if n < N then
            d = {x = d.x:narrow(1, 1, n), y = d.y and d.y:narrow(1, 1, n), n = n}
            N = n
        end
    end
    local mode = opts.mode or "eval"
    if mode ~= "eval" and mode ~= "train" then
        fail("%s: option 'mode' must be \"eval\" or \"train\", got %s", who,
             type(mode) == "string" and string.format("%q", mode) or tostring(mode))
    end
    local batch = math.min(util.posint(opts.batch or 1000, who, "option 'batch'"), N)
    local lossfn, loss_name = resolve_loss(opts.loss, who)
    local sel = P.select(model, opts.params, who)
    local self = setmetatable({model = model, data = d, x = d.x, y = d.y, N = N, batch = batch,
                               mode = mode, loss = loss_name, params_spec = opts.params,
                               params_label = P.label(opts.params), _loss = lossfn,
                               _loss_opt = opts.loss, who = who}, Objective)
    self:_set_selection(sel)
    if self.dtype and (d.x.dtype == "f32" or d.x.dtype == "f64") and d.x.dtype ~= self.dtype then
        fail("%s: the data x is %s but the parameters are %s (cast the data with x:cast(%q) or the " ..
             "model with model:to(%q))", who, d.x.dtype, self.dtype, self.dtype, d.x.dtype)
    end
    return self
end

function Objective:_set_selection(sel)
    self.entries, self.names, self.tensors = sel, {}, {}
    self.shapes, self.numels, self.offsets = {}, {}, {}
    local n, dtype = 0, sel[1].t.dtype
    for i, e in ipairs(sel) do
        self.names[i], self.tensors[i] = e.name, e.t
        self.shapes[i], self.numels[i], self.offsets[i] = e.t:size(), e.t:numel(), n + 1
        n = n + e.t:numel()
        if e.t.dtype ~= dtype then dtype = nil end
    end
    self.n, self.dtype = n, dtype
end

--- ls.objective(model, data [, opts]) -> objective (options in the header).
-- Model + data + loss + mode + parameter selection + batching, in one object that every
-- analysis and training method takes (value, grad, hvp, batch views).
-- e.g. local obj = ls.objective(model, train, {batch = 500, mode = "eval"}); print(obj:value())
M.objective = public(function(model, d, opts) return new(model, d, opts, "objective") end)

--- objective.resolve(who, a, b, c [, defaults]) -> obj, opts: the two ways every analysis is
-- called, f(obj [, opts]) and f(model, data [, opts]). In the second form the objective's keys
-- (loss, mode, batch, params, n) are taken out of opts to build the objective (`defaults` fills
-- the ones not given: margins use batch = 500); the rest of opts is returned for the analysis
-- itself. In the first form opts holds only the analysis' own keys.
function M.resolve(who, a, b, c, defaults)
    if M.is_objective(a) then
        if c ~= nil then
            fail("%s: called with an objective, the options come second: %s(obj, opts)", who, who)
        end
        if type(b) == "table" then
            for k in pairs(b) do
                if M.KNOWN[k] then
                    fail("%s: option '%s' belongs to the objective; give it to ls.objective", who, k)
                end
            end
        end
        return a, b
    end
    local mine, rest = {}, {}
    if c ~= nil and type(c) ~= "table" then
        fail("%s: expected an options table, got %s", who, type(c))
    end
    for k, v in pairs(defaults or {}) do mine[k] = v end
    for k, v in pairs(c or {}) do
        if M.KNOWN[k] then mine[k] = v else rest[k] = v end
    end
    return new(a, b, mine, who), rest
end

--- obj:select(spec) -> a new objective like obj with another parameter selection.
-- A new objective like this one with another parameter selection (the params language of the
-- objective).
-- e.g. local last = obj:select("3.weight")
function Objective:select(spec)
    local o = setmetatable({}, Objective)
    for k, v in pairs(self) do o[k] = v end
    o.params_spec, o.params_label = spec, P.label(spec)
    o:_set_selection(P.select(self.model, spec, self.who))
    return o
end

--- obj:subset(start, len) -> a new objective like obj on the examples start .. start + len - 1
-- (views; the batch is clamped to len). m-sharpness evaluates chunks this way.
-- e.g. local small = obj:subset(1, 1000)
function Objective:subset(start, len)
    local o = setmetatable({}, Objective)
    for k, v in pairs(self) do o[k] = v end
    o.x = self.x:narrow(1, start, len)
    o.y = self.y and self.y:narrow(1, start, len)
    o.data = {x = o.x, y = o.y, n = len}
    o.N, o.batch, o._lo, o._hi = len, math.min(self.batch, len), nil, nil
    return o
end

--- obj:settings() -> the configuration as flat key/value pairs (tidy CSV columns).
-- The objective's settings as a flat table (loss, mode, batch, N, params), for the columns of a
-- CSV row.
-- e.g. local row = obj:settings()
function Objective:settings()
    return {mode = self.mode, batch = self.batch, n_data = self.N, n_params = self.n,
            loss = self.loss, params = self.params_label}
end

---------------------------------------------------------------------------------------------------
-- Checks of the model's output
---------------------------------------------------------------------------------------------------

-- The smallest and largest label (cached; labels only).
function Objective:_label_range()
    if self._lo == nil then
        local yd = self.y:double()
        self._lo, self._hi = math.tointeger(yd:min():item()), math.tointeger(yd:max():item())
    end
    return self._lo, self._hi
end

--- obj:check_output(out, B [, what]): with the cross-entropy loss, the model's output for a batch
-- of B must be scores [B x C] with C >= every label ("<who>: the data has label 12 but the model
-- outputs 10 classes (labels must lie in 1..10)"). `what` names the data in messages.
-- e.g. obj:check_output(model(x), "myanalysis")
function Objective:check_output(out, B, what, who)
    who, what = who or self.who, what or "the dataset"
    if not ls.is_tensor(out) then
        fail("%s: the model returned %s, expected a tensor of scores [B x classes]", who, type(out))
    end
    if self.loss ~= "cross_entropy" or self.y == nil then return end
    if out:dim() ~= 2 or out:size(1) ~= B then
        fail("%s: the model returned scores of shape %s for a batch of %d; expected [%d x classes]",
             who, shape_str(out), B, B)
    end
    if self.y.dtype ~= "i64" then
        fail("%s: cross_entropy needs i64 class labels, %s has a %s y", who, what, self.y.dtype)
    end
    local C = out:size(2)
    local lo, hi = self:_label_range()
    if hi > C or lo < 1 then
        fail("%s: %s has label %d but the model outputs %d classes (labels must lie in 1..%d)", who,
             what, hi > C and hi or lo, C, C)
    end
end

--- obj:probe(): one eval-mode forward of the first examples (no graph, model restored), so that a
-- model that rejects the data, or labels it cannot score, are reported when an analysis is built
-- rather than in its first pass.
-- e.g. local p = obj:probe()
function Objective:probe()
    local k = math.min(self.N, 2)
    local xb = self.x:narrow(1, 1, k)
    local ok, out = pcall(function()
        return self:guard(function()
            return ls.no_grad(function() return forward(self.model, xb) end)
        end, {mode = "eval"})
    end)
    if not ok then
        fail("%s: the model rejects the data (x has shape %s): %s", self.who, shape_str(self.x),
             tostring(out))
    end
    self:check_output(out, k)
    if self.y ~= nil then
        local yb = self.y:narrow(1, 1, k)
        local okl, err = pcall(ls.no_grad, function() return self._loss.mean(out, yb) end)
        if not okl then
            fail("%s: the loss %s rejects the model's output %s for targets %s: %s", self.who,
                 self.loss, shape_str(out), shape_str(yb), tostring(err))
        end
    end
    return self
end

---------------------------------------------------------------------------------------------------
-- The mode guard
---------------------------------------------------------------------------------------------------

-- Snapshot of everything a pass may change on the model besides the parameters.
local function model_state(model)
    local st = {training = model.training, mods = {}, bufs = {}, drops = {},
                rng = ls.get_rng_state()}
    if type(model.modules) == "function" then
        for i, m in ipairs(model:modules()) do st.mods[i] = {m, m.training, m.frozen_stats, m.calls} end
    end
    if type(model.buffers) == "function" then
        ls.no_grad(function()
            for i, b in ipairs(model:buffers()) do st.bufs[i] = {b, b:clone()} end
        end)
    end
    return st
end

local function restore_model_state(model, st)
    for _, s in ipairs(st.mods) do
        s[1].training, s[1].frozen_stats, s[1].calls = s[2], s[3], s[4]
    end
    if #st.mods == 0 then   -- a model without modules(): its own methods
        if st.training == false and type(model.eval) == "function" then model:eval()
        elseif st.training ~= false and type(model.train) == "function" then model:train() end
    end
    ls.no_grad(function()
        for _, b in ipairs(st.bufs) do b[1]:copy(b[2]) end
    end)
    ls.set_rng_state(st.rng)
end

-- Put the model in `mode`: eval, or train with (freeze) or without frozen running statistics.
local function set_mode(model, mode, freeze)
    if mode == "eval" then
        if type(model.eval) == "function" then model:eval() end
    else
        if type(model.train) == "function" then model:train() end
        if freeze and type(model.freeze_running_stats) == "function" then
            model:freeze_running_stats(true)
        end
    end
end
M.set_mode = set_mode

--- obj:guard(fn [, {params = false, mode = obj.mode}]) -> fn's results
-- fn() runs with the model in the objective's mode (train mode with the running statistics
-- frozen); afterwards every module's training and freeze flags, every buffer, the dropout counters
-- and the global random stream are restored exactly, and with params = true the selected
-- parameters too, also when fn raises (the error is passed on).
-- e.g. obj:guard(function() return obj:value() end)
function Objective:guard(fn, opts)
    opts = check_options(opts, {params = true, mode = true}, "guard")
    if type(fn) ~= "function" then fail("guard: expected a function, got %s", type(fn)) end
    local model = self.model
    local st = model_state(model)
    local p0 = opts.params and self:snapshot() or nil
    set_mode(model, opts.mode or self.mode, true)
    local res = table.pack(pcall(fn))
    if p0 then self:restore(p0) end
    restore_model_state(model, st)
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
end

--- obj:refuses_dropout(): an error when the objective is in train mode and the model has active
-- dropout (an operator in that mode would be random).
-- e.g. obj:refuses_dropout("hessian")
function Objective:refuses_dropout()
    if self.mode ~= "train" then return end
    for _, m in ipairs(dropouts(self.model)) do
        if m.p > 0 then
            fail("%s: mode \"train\" with dropout layers would give a random operator; use mode = " ..
                 "\"eval\"", self.who)
        end
    end
end

---------------------------------------------------------------------------------------------------
-- Vectors over the selected parameters
---------------------------------------------------------------------------------------------------

--- obj:flatten(list) -> a new flat tensor (dtype obj.dtype) from tensors shaped like the selected
-- parameters: a list in obj.names order or a map name -> tensor; missing entries are zeros.
-- e.g. local g = obj:flatten(obj:grad())
function Objective:flatten(list)
    if not self.dtype then fail("%s: the selected parameters mix dtypes", self.who) end
    local out = ls.zeros({self.n}, {dtype = self.dtype})
    for i, name in ipairs(self.names) do
        local t = list[name]
        if t == nil then t = list[i] end
        if t ~= nil then
            if not ls.is_tensor(t) or t:numel() ~= self.numels[i] then
                fail("%s: entry for %s should have shape [%s], got %s", self.who, name,
                     table.concat(self.shapes[i], "x"), ls.is_tensor(t) and shape_str(t) or type(t))
            end
            out:narrow(1, self.offsets[i], self.numels[i]):copy(t:detach():reshape(-1))
        end
    end
    return out
end

--- obj:check_vector(v, who): v must be a 1-D tensor of length obj.n and dtype obj.dtype.
-- Checks that v is a flat f64/f32 vector over the selected parameters (obj.n elements); errors
-- name `who`.
-- e.g. obj:check_vector(v, "myanalysis")
function Objective:check_vector(v, who)
    if not ls.is_tensor(v) then
        fail("%s: expected a 1-D tensor of length %d, got %s", who, self.n, type(v))
    end
    if v:dim() ~= 1 or v:size(1) ~= self.n then
        fail("%s: expected a 1-D tensor of length %d, got shape %s", who, self.n, shape_str(v))
    end
    if v.dtype ~= self.dtype then
        fail("%s: the vector is %s but the operator is %s", who, v.dtype, self.dtype)
    end
end

--- obj:split(v) -> views of the flat v shaped like the selected parameters (detached; they share
-- v's storage). obj:unflatten(v) -> copies, as a list that is also a map name -> tensor.
-- e.g. local parts = obj:split(v)
function Objective:split(v)
    local vd = v:detach():contiguous()
    local out = {}
    for i = 1, #self.tensors do
        out[i] = vd:narrow(1, self.offsets[i], self.numels[i]):reshape(self.shapes[i])
    end
    return out
end

--- obj:unflatten(flat) -> list of tensors
-- A flat vector over the selected parameters as a list of tensors shaped like them.
-- e.g. local dirs = obj:unflatten(v)
function Objective:unflatten(v)
    self:check_vector(v, self.who .. ":unflatten")
    local out = {}
    for i, t in ipairs(self:split(v)) do
        out[i] = t:clone()
        out[self.names[i]] = out[i]
    end
    return out
end

--- obj:snapshot() -> detached copies of the selected parameters (a list); obj:restore(snap) copies
-- them back; obj:set(base, {{c1, d1}, {c2, d2}, ...}) sets each parameter to base + sum c_k d_k
-- (d_k lists aligned with the parameters; nil entries are zero).
-- e.g. local s = obj:snapshot()
function Objective:snapshot()
    return ls.no_grad(function()
        local out = {}
        for i, t in ipairs(self.tensors) do out[i] = t:detach():clone() end
        return out
    end)
end

--- obj:restore(snapshot) -> nil
-- Copies a snapshot (obj:snapshot()) back into the selected parameters.
-- e.g. local s = obj:snapshot(); obj:restore(s)
function Objective:restore(snap)
    ls.no_grad(function()
        for i, t in ipairs(self.tensors) do t:detach():copy(snap[i]) end
    end)
end

--- obj:set(flat) -> nil
-- Sets the selected parameters from a flat vector over them (in place, not recorded).
-- e.g. obj:set(ls.zeros({obj.n}, {dtype = obj.dtype}))
function Objective:set(base, terms)
    ls.no_grad(function()
        for i, t in ipairs(self.tensors) do
            local v = base[i]
            for _, term in ipairs(terms) do
                local c, d = term[1], term[2][i]
                if d ~= nil and c ~= 0 then v = v + d * c end
            end
            t:detach():copy(v)
        end
    end)
end

--- M.dot(a, b), M.norm(a): inner product and 2-norm of lists of tensors, as numbers.
function M.dot(a, b)
    local s = 0.0
    for i = 1, #a do s = s + (a[i] * b[i]):sum():item() end
    return s
end
function M.norm(a) return math.sqrt(M.dot(a, a)) end

---------------------------------------------------------------------------------------------------
-- Passes over the data (in order, in the objective's mode, under the guard)
---------------------------------------------------------------------------------------------------

--- obj:batches() -> list of {x, y, B, start}: consecutive narrow() views covering the data in order.
-- The batches the objective averages over: consecutive views of its data of its batch size, as
-- {x, y, B, start} entries.
-- e.g. for _, b in ipairs(obj:batches()) do print(b.start, b.B) end
function Objective:batches()
    local out, s = {}, 1
    while s <= self.N do
        local len = math.min(self.batch, self.N - s + 1)
        out[#out + 1] = {x = self.x:narrow(1, s, len), y = self.y and self.y:narrow(1, s, len),
                         B = len, start = s}
        s = s + len
    end
    return out
end

-- Mean loss of one batch (recorded), with the first batch's output checked.
function Objective:_batch_mean(b, out)
    if b.start == 1 then self:check_output(out, b.B) end
    return self._loss.mean(out, b.y)
end

--- obj:evaluate() -> {loss = mean loss, accuracy = fraction correct (labels and [B x C] outputs
-- only; else nil), n}: one pass without a graph, in the objective's mode.
-- e.g. local r = obj:evaluate(); print(r.loss, r.accuracy)
function Objective:evaluate()
    return self:guard(function()
        return ls.no_grad(function()
            local total, hits, labels = 0.0, 0, self.y ~= nil and self.y.dtype == "i64"
            for _, b in ipairs(self:batches()) do
                local out = forward(self.model, b.x)
                if b.start == 1 then self:check_output(out, b.B) end
                total = total + loss_item(self._loss.sum(out, b.y), self.who)
                if labels and out:dim() == 2 then
                    hits = hits + math.tointeger(out:argmax(2):double():eq(b.y:double()):sum():item())
                else
                    labels = false
                end
            end
            return {loss = total / self.N, accuracy = labels and hits / self.N or nil, n = self.N}
        end)
    end)
end

--- obj:value() -> the mean loss over the data (a number).
-- The objective's loss over its data (batches averaged by size), in its mode, under its guard.
-- e.g. print(obj:value())
function Objective:value() return self:evaluate().loss end

--- obj:grad([{flat = true}]) -> g, L: the gradient of the mean loss over the selected parameters
-- (a flat tensor, or with flat = false a list aligned with obj.tensors) and the loss L.
-- e.g. local g = obj:grad(); print(g:norm():item())
function Objective:grad(opts)
    opts = check_options(opts, {flat = true}, "grad")
    local acc, total = {}, 0.0
    self:guard(function()
        for _, b in ipairs(self:batches()) do
            local l = self:_batch_mean(b, forward(self.model, b.x))
            local w = b.B / self.N
            total = total + loss_item(l, self.who) * w
            local g = ls.grad(l, self.tensors, {allow_unused = true})
            for i = 1, #self.tensors do
                if g[i] ~= nil then
                    local gw = g[i] * w
                    acc[i] = acc[i] and (acc[i] + gw) or gw
                end
            end
        end
    end)
    if opts.flat == false then
        for i, t in ipairs(self.tensors) do acc[i] = acc[i] or ls.zeros_like(t) end
        return acc, total
    end
    return self:flatten(acc), total
end

--- obj:hvp(v [, {create_graph = false}]) -> H v: the exact Hessian of the mean loss times v, one
-- double backward per batch (autograd.hvp_from_grad). v is flat (a 1-D tensor of length obj.n;
-- the result is flat) or a list of tensors shaped like the selected parameters (the result is such
-- a list). With create_graph the product is recorded, for a derivative of it (a third derivative
-- of the loss); v must then be a list, since a flat result would be assembled outside the graph.
-- graph_cache (a table; the Hessian operator's): per-batch gradient graphs kept between calls.
-- e.g. local hv = obj:hvp(ls.randn({obj.n}, {seed = 1, dtype = "f64"}))
function Objective:hvp(v, opts)
    opts = check_options(opts, {create_graph = true, graph_cache = true}, "hvp")
    local who = self.who .. ":hvp"
    local vs, flat = v, ls.is_tensor(v)
    if flat then
        self:check_vector(v, who)
        vs = self:split(v)
    elseif type(v) ~= "table" or #v ~= #self.tensors then
        fail("%s: v must be a flat tensor of length %d or a list of %d tensors", who, self.n,
             #self.tensors)
    end
    if flat and opts.create_graph then
        fail("%s: create_graph needs v as a list of tensors (a flat result is not recorded)", who)
    end
    local cache, acc = opts.graph_cache, {}
    self:guard(function()
        for bi, b in ipairs(self:batches()) do
            local g = cache and cache[bi]
            if g == nil then
                local l = self:_batch_mean(b, forward(self.model, b.x))
                g = ls.grad(l, self.tensors, {create_graph = true, allow_unused = true})
                if cache then cache[bi] = g end
            end
            local hv = autograd.hvp_from_grad(g, self.tensors, vs,
                                              {create_graph = opts.create_graph,
                                               retain_graph = cache ~= nil or opts.create_graph})
            local w = b.B / self.N
            for i = 1, #self.tensors do
                if hv[i] ~= nil then
                    local t = hv[i] * w
                    acc[i] = acc[i] and (acc[i] + t) or t
                end
            end
        end
    end)
    if flat then return self:flatten(acc) end
    for i, t in ipairs(self.tensors) do acc[i] = acc[i] or ls.zeros_like(t) end
    return acc
end

---------------------------------------------------------------------------------------------------
-- The batch view: what a training method's step evaluates
---------------------------------------------------------------------------------------------------

local Batch = {}
Batch.__index = Batch
Batch.__name = "landscape.Objective.Batch"
M.Batch = Batch

--- obj:batch_view(x, y [, opts]) -> a batch view b on the examples (x, y), the closure a
-- training method evaluates as often as it needs (Torch7's opfunc):
--   b:loss([opts]) -> loss (0-d, recorded), output
--   b:grad([opts]) -> loss, grads (a list aligned with b.params; zeros for unused parameters)
--   b:backward([opts]) -> loss, output: loss:backward(), accumulating into the parameters' .grad
--   b:set_grad(list): set each parameter's .grad (detached copies of list)
--   b:split(m) -> views on consecutive chunks of m examples (m-sharpness)
-- opts: create_graph = false (grad: gradients with a graph, for penalties on them), update_stats
-- (default: only the view's first evaluation lets batch norm update its running statistics; later
-- ones use batch statistics and leave them alone, SAM's rule).
-- Every evaluation replays the same randomness: the dropout counters and the global random
-- stream are put back to where they were at the view's first evaluation, so each sees the same
-- dropout masks, and the model is a deterministic function of its parameters on the batch. (After
-- a replayed forward the global stream continues from where the method had left it, so draws the
-- method makes itself are not repeated.)
-- Fields: x, y, B, params (the selected tensors), names, objective, evaluations (count),
-- first = {loss = number, hits = correct count or nil} of the first evaluation.
-- opts of obj:batch_view: check(output, B) is called on the first evaluation's output (the training
-- loop checks the first step's scores); on_first(loss_value) with the first evaluation's loss
-- before anything else happens (the loop's divergence check raises from it).
-- e.g. local b = obj:batch_view(x, y); local loss = b:loss()
function Objective:batch_view(x, y, opts)
    opts = check_options(opts, {on_first = true, check = true}, "batch_view")
    if not ls.is_tensor(x) or x:dim() < 1 then
        fail("batch_view: x must be a tensor [B, ...], got %s",
             ls.is_tensor(x) and shape_str(x) or type(x))
    end
    return setmetatable({objective = self, x = x, y = y, B = x:size(1), params = self.tensors,
                         names = self.names, evaluations = 0, on_first = opts.on_first,
                         check = opts.check, _subs = {}}, Batch)
end

local BATCH_OPTS = {create_graph = true, update_stats = true, retain_graph = true}

function Batch:_forward(opts)
    local obj, model = self.objective, self.objective.model
    local drops = dropouts(model)
    local resume_rng   -- a replayed evaluation puts the stream back where the method left it
    if self._replay == nil then
        local calls = {}
        for i, m in ipairs(drops) do calls[i] = m.calls end
        self._replay = {calls = calls, rng = ls.get_rng_state()}
    else
        for i, m in ipairs(drops) do m.calls = self._replay.calls[i] end
        resume_rng = ls.get_rng_state()
        ls.set_rng_state(self._replay.rng)
    end
    local update = opts.update_stats
    if update == nil then update = self.evaluations == 0 end
    local frozen
    if not update and type(model.modules) == "function" then
        frozen = {}
        for _, m in ipairs(model:modules()) do
            if m.running_mean ~= nil then
                frozen[#frozen + 1] = {m, m.frozen_stats}
                m.frozen_stats = true
            end
        end
    end
    local ok, out = pcall(forward, model, self.x)
    if frozen then for _, f in ipairs(frozen) do f[1].frozen_stats = f[2] end end
    if resume_rng then ls.set_rng_state(resume_rng) end
    if not ok then error(out, 0) end
    local first = self.evaluations == 0
    self.evaluations = self.evaluations + 1
    if first and self.check then self.check(out, self.B) end
    local loss = obj._loss.mean(out, self.y)
    if first then
        local lv = loss_item(loss, obj.who)
        self.first = {loss = lv, B = self.B}
        if obj.loss == "cross_entropy" and ls.is_tensor(out) and out:dim() == 2 then
            self.first.hits = math.tointeger(out:detach():argmax(2):double()
                                                :eq(self.y:double()):sum():item())
        end
        if self.on_first then self.on_first(lv) end
    end
    return loss, out
end

function Batch:loss(opts)
    return self:_forward(check_options(opts, BATCH_OPTS, "batch:loss"))
end

function Batch:grad(opts)
    opts = check_options(opts, BATCH_OPTS, "batch:grad")
    local loss = self:_forward(opts)
    local g = ls.grad(loss, self.params, {create_graph = opts.create_graph, allow_unused = true,
                                          retain_graph = opts.retain_graph})
    for i, t in ipairs(self.params) do
        if g[i] == nil then g[i] = ls.zeros_like(t) end
    end
    return loss, g
end

function Batch:backward(opts)
    opts = check_options(opts, BATCH_OPTS, "batch:backward")
    local loss, out = self:_forward(opts)
    loss:backward()
    return loss, out
end

function Batch:set_grad(list)
    ls.no_grad(function()
        for i, p in ipairs(self.params) do
            local g = list[i]
            p.grad = g ~= nil and g:detach():clone() or nil
        end
    end)
end

function Batch:split(m)
    m = util.posint(m, "batch:split", "m")
    local out = {}
    for s = 1, self.B, m do
        local len = math.min(m, self.B - s + 1)
        local sub = self.objective:batch_view(self.x:narrow(1, s, len), self.y:narrow(1, s, len),
                                         {on_first = self.on_first, check = self.check})
        out[#out + 1] = sub
        self._subs[#self._subs + 1] = sub
    end
    return out
end

--- b:stats() -> {loss, hits, B} of the step for the log: the first evaluation of this view, or the
-- example-weighted mean of its sub-views' first evaluations when only those were evaluated; nil
-- when nothing was evaluated.
function Batch:stats()
    if self.first then return self.first end
    local loss, hits, n = 0.0, 0, 0
    for _, s in ipairs(self._subs) do
        local st = s:stats()
        if st then
            loss, n = loss + st.loss * st.B, n + st.B
            hits = st.hits and hits and hits + st.hits or nil
        end
    end
    if n == 0 then return nil end
    return {loss = loss / n, hits = hits, B = n}
end

-- The methods users call are public (errors at the caller's line); the library calls them too
-- (util.public adds the position once, at the outermost call).
for _, name in ipairs({"select", "subset", "check_output", "probe", "guard", "refuses_dropout",
                       "flatten", "unflatten", "snapshot", "restore", "set", "batches",
                       "evaluate", "value", "grad", "hvp", "batch_view"}) do
    Objective[name] = public(Objective[name])
end
for _, name in ipairs({"loss", "grad", "backward", "set_grad", "split"}) do
    Batch[name] = public(Batch[name])
end

M.check_model = check_model
return M
