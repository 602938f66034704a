--- landscape.hessian: curvature operators of a model on a dataset, reached as ls.curvature.hessian,
-- ls.curvature.ggn, ls.curvature.fisher and ls.curvature.grad_norm (landscape.curvature re-exports
-- this module's fields). docs/hessian.md is the guide.
--
--   local H = ls.curvature.hessian(model, data, {batch = 1000, mode = "eval", params = {"0.*"}})
--   local hv = H:matvec(v)               -- v: 1-D tensor of length H.n, dtype H.dtype
--   local top = H:eigs{k = 3}            -- estimators of landscape.curvature, when installed
--   for _, row in ipairs(H:trace_per_layer{probes = 100, seed = 1}) do ... end
--
-- Conventions, the same for every operator here:
--   * The loss is the MEAN over the whole dataset, L = (1/N) sum_i l_i. The data are cut into
--     batches in order (x:narrow(1, start, batch), the last one shorter); batch b contributes
--     (B_b / N) times the curvature of its own mean loss. This is exact for per-sample losses in
--     eval mode, and it is PyHessian's and curvlinops' weighting (hessian-eigenthings weights
--     batches uniformly, which is wrong for an uneven last batch).
--   * mode = "eval" (default) or "train" is explicit and recorded (op.mode). Each matvec sets the
--     model's mode itself and restores every module's previous mode (and batch-norm freeze flag)
--     afterwards, also on error. In train mode batch norm normalises with the batch statistics of
--     each batch (so the operator depends on `batch` and on the data order) and running statistics
--     are frozen (model:freeze_running_stats) so probing never moves them. Train mode with active
--     dropout is refused: the operator would be random.
--   * Vectors are flat, over the selected parameters in state-dict order, each parameter
--     flattened row-major (op:unflatten / op:flatten convert).
--
-- Operator kinds (matvec cost per batch, in forward+backward passes of that batch):
--   hessian  exact H v by double backward                                           ~ 1 fwd + 3 bwd
--   ggn      G v = J^T H_out J v, H_out = diag(p) - p p^T per sample (cross-entropy) ~ 1 fwd + 4 bwd
--            J v by the double-vjp trick (a dummy u with requires_grad: d<J^T u, v>/du = J v)
--   fisher   empirical Fisher F v = (1/N) sum_i g_i (g_i . v), g_i = grad of sample i's loss;
--            batched exactly as J_l^T (J_l v) with J_l the Jacobian of the per-sample loss vector
--            (no per-sample loop)                                                    ~ 1 fwd + 4 bwd
local ls = require "landscape"
local util = require "landscape.util"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options, util.shape_str

local M = {}

-- Errors inside this module are raised without a position (level 0); each public function re-raises
-- at level 2 so the message points at the user's call.




-- <a, b> summed over lists of tensors, recorded when an input requires grad.
local function inner(as, bs)
    local total
    for i = 1, #as do
        if as[i] ~= nil then
            local term = (as[i] * bs[i]):sum()
            total = total and (total + term) or term
        end
    end
    return total
end

---------------------------------------------------------------------------------------------------
-- Parameter selection
---------------------------------------------------------------------------------------------------

-- A name matcher from a pattern: an exact name; a glob when the pattern holds * or ? and none of
-- Lua's pattern characters %[]()^$+- (then * = any run, ? = one character); otherwise a Lua
-- pattern. Globs and Lua patterns are anchored at both ends, so "0.*" selects 0.weight and 0.bias
-- but not 10.weight.
local function matcher(pat, who)
    if type(pat) == "function" then return pat end
    if type(pat) ~= "string" then
        fail("%s: parameter patterns must be strings or functions, got %s", who, type(pat))
    end
    local lua_pat
    if pat:find("[%*%?]") and not pat:find("[%%%[%]%(%)%^%$%+%-]") then
        lua_pat = "^" .. pat:gsub("[%.]", "%%."):gsub("%*", ".*"):gsub("%?", ".") .. "$"
    else
        lua_pat = "^" .. pat .. "$"
        local ok, err = pcall(string.find, "", lua_pat)
        if not ok then fail("%s: bad parameter pattern '%s': %s", who, pat, tostring(err)) end
    end
    return function(name) return name == pat or name:find(lua_pat) ~= nil end
end

local function pattern_list_str(pats)
    local parts = {}
    for i, p in ipairs(pats) do
        parts[i] = type(p) == "string" and string.format("%q", p) or tostring(p)
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end

-- The selected {name, tensor} entries in state-dict order.
local function select_params(model, pats, who)
    local named = model:named_parameters()
    local all = {}
    for i, e in ipairs(named) do all[i] = e[1] end
    if #named == 0 then fail("%s: the model has no parameters", who) end
    if pats == nil then
        local out = {}
        for i, e in ipairs(named) do out[i] = {e[1], e[2]} end
        return out
    end
    if type(pats) == "string" or type(pats) == "function" then pats = {pats} end
    if type(pats) ~= "table" or #pats == 0 then
        fail("%s: option 'params' must be a pattern or a non-empty list of patterns", who)
    end
    local ms = {}
    for i, p in ipairs(pats) do ms[i] = matcher(p, who) end
    local out = {}
    for _, e in ipairs(named) do
        for _, m in ipairs(ms) do
            if m(e[1]) then
                out[#out + 1] = {e[1], e[2]}
                break
            end
        end
    end
    if #out == 0 then
        fail("%s: no parameters match %s; parameters are %s", who, pattern_list_str(pats),
             table.concat(all, ", "))
    end
    return out
end

---------------------------------------------------------------------------------------------------
-- Mode handling
---------------------------------------------------------------------------------------------------

-- Run fn() with every module of model in `mode` ("train" freezes batch-norm running statistics),
-- then restore each module's training flag and freeze flag, also when fn raises.
local function with_mode(model, mode, fn)
    local saved = {}
    for i, m in ipairs(model:modules()) do saved[i] = {m, m.training, m.frozen_stats} end
    model:train(mode == "train")
    if mode == "train" then model:freeze_running_stats(true) end
    local res = table.pack(pcall(fn))
    for _, s in ipairs(saved) do
        s[1].training = s[2]
        s[1].frozen_stats = s[3]
    end
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
end

local function has_active_dropout(model)
    for _, m in ipairs(model:modules()) do
        local mt = getmetatable(m)
        if mt and mt.__name == "landscape.nn.Dropout" and m.p and m.p > 0 then return true end
    end
    return false
end

---------------------------------------------------------------------------------------------------
-- Losses
---------------------------------------------------------------------------------------------------

-- loss(z, y, reduction) with reduction "mean" or "none".
local LOSSES = {
    cross_entropy = function(z, y, reduction) return ls.cross_entropy(z, y, reduction or "mean") end,
}

local function resolve_loss(loss, who)
    if loss == nil then loss = "cross_entropy" end
    if type(loss) == "function" then return loss, "custom" end
    local f = LOSSES[loss]
    if not f then
        fail("%s: unknown loss '%s' (known: cross_entropy, or a function(logits, y, reduction) that " ..
             "returns the batch mean for reduction 'mean' and per-sample losses for 'none')", who,
             tostring(loss))
    end
    return f, loss
end

---------------------------------------------------------------------------------------------------
-- The operator object
---------------------------------------------------------------------------------------------------

local Op = {}
Op.__name = "landscape.curvature.ModelOperator"

-- Estimator methods provided by landscape.curvature (delegated to an operator built there).
local ESTIMATORS = {trace = true, diag = true, eigs = true, power = true, density = true,
                    hutchinson = true, hutchpp = true, lanczos = true}

local function estimator_module() return require "landscape.analysis.operator" end

-- The landscape.curvature operator wrapping this one (built on first use), or nil.
local function base_operator(self)
    local base = rawget(self, "_base")
    if base then return base end
    local C = estimator_module()
    if not C or type(C.operator) ~= "function" then return nil end
    base = C.operator{n = self.n, dtype = self.dtype, matvec = function(v) return self:matvec(v) end}
    rawset(self, "_base", base)
    return base
end

Op.__index = function(self, k)
    local m = Op[k]
    if m ~= nil then return m end
    if type(k) ~= "string" or k:sub(1, 1) == "_" then return nil end
    local base = base_operator(self)
    if base == nil then
        if ESTIMATORS[k] then
            return function()
                error(string.format("%s: op:%s needs the estimator module landscape.curvature, " ..
                                    "which is not installed", self.kind, k), 2)
            end
        end
        return nil
    end
    local f = base[k]
    if type(f) == "function" then
        return function(_, ...) return f(base, ...) end
    end
    return f
end

Op.__tostring = function(self)
    return string.format("%s operator: n = %d, %s, mode = %s, batch = %d, N = %d, %d parameter " ..
                         "tensor(s)", self.kind, self.n, self.dtype, self.mode, self.batch, self.N,
                         #self.params)
end

-- cfg: {kind, model, x, y, N, batch, mode, loss_fn, loss, who}; sel: selected {name, tensor}.
local function make_op(cfg, sel)
    local op = {
        kind = cfg.kind, model = cfg.model, mode = cfg.mode, batch = cfg.batch, N = cfg.N,
        loss = cfg.loss, dtype = cfg.dtype, params = {}, shapes = {}, numels = {}, offsets = {},
        matvecs = 0, _cfg = cfg, _ps = {}, _x = cfg.x, _y = cfg.y, _lossfn = cfg.loss_fn,
        cache_graph = cfg.cache_graph,
    }
    local n = 0
    for i, e in ipairs(sel) do
        op.params[i] = e[1]
        op._ps[i] = e[2]
        op.shapes[i] = e[2]:size()
        op.numels[i] = e[2]:numel()
        op.offsets[i] = n + 1
        n = n + e[2]:numel()
    end
    op.n = n
    return setmetatable(op, Op)
end

-- Batches {start, len} covering 1..N in order.
local function batches(self)
    local out, s = {}, 1
    while s <= self.N do
        local len = math.min(self.batch, self.N - s + 1)
        out[#out + 1] = {s, len}
        s = s + len
    end
    return out
end

local function check_vector(self, v, who)
    if not ls.is_tensor(v) then fail("%s: expected a 1-D tensor of length %d, got %s", who, self.n, type(v)) end
    if v:dim() ~= 1 or v:size(1) ~= self.n then
        fail("%s: expected a 1-D tensor of length %d, got shape %s", who, self.n, shape_str(v))
    end
    if v.dtype ~= self.dtype then
        fail("%s: the vector is %s but the operator is %s", who, v.dtype, self.dtype)
    end
end

-- Views of the flat v shaped like the selected parameters (detached, no grad).
local function split(self, v)
    local vd = v:detach():contiguous()
    local out = {}
    for i = 1, #self._ps do
        out[i] = vd:narrow(1, self.offsets[i], self.numels[i]):reshape(self.shapes[i])
    end
    return out
end

-- A new flat tensor from a list of tensors shaped like the parameters (nil entries are zeros).
local function join(self, list)
    local out = ls.zeros({self.n}, {dtype = self.dtype})
    for i = 1, #self._ps do
        local t = list[i]
        if t ~= nil then out:narrow(1, self.offsets[i], self.numels[i]):copy(t:detach():reshape(-1)) end
    end
    return out
end

-- Per-batch products, each returning per-parameter tensors of its contribution to the full product
-- (already weighted: B/N times the batch quantity of the mean loss).
local PRODUCTS = {}

function PRODUCTS.hessian(self, xb, yb, vs, w, bi)
    local g = self._gcache and self._gcache[bi]
    if g == nil then
        local z = self.model(xb)
        local loss = self._lossfn(z, yb, "mean")
        g = ls.grad(loss, self._ps, {create_graph = true, allow_unused = true})
        if self._gcache then self._gcache[bi] = g end
    end
    local d = inner(g, vs)
    if d == nil then return {} end
    local hv = ls.grad(d, self._ps, {allow_unused = true, retain_graph = self._gcache ~= nil})
    for i = 1, #self._ps do if hv[i] ~= nil then hv[i] = hv[i] * w end end
    return hv
end

-- J^T u as a function of a dummy u, then J v = d<J^T u, v>/du (retain_graph: z's graph is used
-- again by the final vjp).
local function jvp_of(self, out, vs)
    local u = ls.zeros_like(out):requires_grad()
    local gu = ls.grad(out, self._ps, {grad_outputs = u, create_graph = true, allow_unused = true})
    local d = inner(gu, vs)
    if d == nil then return nil end
    return ls.grad(d, u, {retain_graph = true, allow_unused = true})
end

function PRODUCTS.ggn(self, xb, yb, vs, _)
    local z = self.model(xb)
    if z:dim() ~= 2 then fail("ggn: expected logits [B, C] from the model, got %s", shape_str(z)) end
    local jv = jvp_of(self, z, vs)
    if jv == nil then return {} end
    local p = z:detach():softmax(2)
    local pj = p * jv
    local r = (pj - p * pj:sum(2, true)) * (1 / self.N)
    return ls.grad(z, self._ps, {grad_outputs = r, allow_unused = true})
end

function PRODUCTS.fisher(self, xb, yb, vs, _)
    local z = self.model(xb)
    local l = self._lossfn(z, yb, "none")
    if not ls.is_tensor(l) or l:dim() ~= 1 or l:size(1) ~= xb:size(1) then
        fail("fisher: the loss with reduction 'none' must return per-sample losses [%d], got %s",
             xb:size(1), ls.is_tensor(l) and shape_str(l) or type(l))
    end
    local jv = jvp_of(self, l, vs)   -- [B]: g_i . v
    if jv == nil then return {} end
    return ls.grad(l, self._ps, {grad_outputs = jv * (1 / self.N), allow_unused = true})
end

--- op:matvec(v) -> the product (a new 1-D tensor of length op.n, dtype op.dtype).
-- One pass over the dataset in batches; see the module header for mode and weighting.
function Op:matvec(v)
    local who = self.kind .. ":matvec"
    local ok, res = pcall(function()
        check_vector(self, v, who)
        local vs = split(self, v)
        local acc = {}
        local product = PRODUCTS[self.kind]
        if self.cache_graph and self.kind == "hessian" then self:_check_cache() end
        with_mode(self.model, self.mode, function()
            for bi, b in ipairs(batches(self)) do
                local xb, yb = self._x:narrow(1, b[1], b[2]), self._y:narrow(1, b[1], b[2])
                local part = product(self, xb, yb, vs, b[2] / self.N, bi)
                for i = 1, #self._ps do
                    if part[i] ~= nil then acc[i] = acc[i] and (acc[i] + part[i]) or part[i] end
                end
            end
        end)
        self.matvecs = self.matvecs + 1
        return join(self, acc)
    end)
    if not ok then error(res, 2) end
    return res
end

-- The graph cache is valid while the selected parameters hold the values they had when it was
-- built: compare with a snapshot (x:equal, one read of the parameters and no temporaries). A NaN
-- parameter never equals its snapshot, so such a cache is rebuilt each time: harmless.
function Op:_check_cache()
    if self._gcache then
        for i, p in ipairs(self._ps) do
            if not p:equal(self._snap[i]) then
                self._gcache = nil
                break
            end
        end
    end
    if not self._gcache then
        self._gcache, self._snap = {}, {}
        for i, p in ipairs(self._ps) do self._snap[i] = p:detach():clone() end
    end
end

--- op:refresh(): drop the cached gradient graphs (they are rebuilt at the next product).
function Op:refresh()
    self._gcache, self._snap = nil, nil
    return self
end

--- op:unflatten(v) -> map name -> tensor shaped like that parameter (copies), also a list in order.
function Op:unflatten(v)
    local ok, res = pcall(function()
        check_vector(self, v, self.kind .. ":unflatten")
        local parts, out = split(self, v), {}
        for i, name in ipairs(self.params) do
            local t = parts[i]:clone()
            out[i] = t
            out[name] = t
        end
        return out
    end)
    if not ok then error(res, 2) end
    return res
end

--- op:flatten(list) -> a flat tensor. list: tensors in op.params order, or a map name -> tensor
-- (missing names are zeros). Shapes must match the parameters' (numel is checked).
function Op:flatten(list)
    local ok, res = pcall(function()
        if type(list) ~= "table" then fail("%s:flatten: expected a table of tensors", self.kind) end
        local ordered = {}
        for i, name in ipairs(self.params) do
            local t = list[name]
            if t == nil then t = list[i] end
            if t ~= nil then
                if not ls.is_tensor(t) or t:numel() ~= self.numels[i] then
                    fail("%s:flatten: entry for %s should have shape [%s], got %s", self.kind, name,
                         table.concat(self.shapes[i], "x"), ls.is_tensor(t) and shape_str(t) or type(t))
                end
                ordered[i] = t
            end
        end
        return join(self, ordered)
    end)
    if not ok then error(res, 2) end
    return res
end

--- op:dense() -> the [n x n] matrix, column j = op:matvec(e_j): n passes over the data. For small
-- models and tests.
function Op:dense()
    local A = ls.zeros({self.n, self.n}, {dtype = self.dtype})
    local e = ls.zeros({self.n}, {dtype = self.dtype})
    for j = 1, self.n do
        e[j] = 1
        A:select(2, j):copy(self:matvec(e))
        e[j] = 0
    end
    return A
end

--- op:settings() -> the operator's configuration as flat key/value pairs for tidy CSV columns.
function Op:settings()
    return {operator = self.kind, mode = self.mode, batch = self.batch, n_data = self.N,
            n_params = self.n, dtype = self.dtype, loss = self.loss,
            params = table.concat(self.params, " ")}
end

--- op:per_layer() -> list of operators, one per selected parameter tensor (the diagonal blocks),
-- each with .name; same kind, data, mode and batch.
function Op:per_layer()
    local out = {}
    for i, name in ipairs(self.params) do
        local sub = make_op(self._cfg, {{name, self._ps[i]}})
        sub.name = name
        out[i] = sub
    end
    return out
end

-- Pull the estimate and its standard error out of a trace result, whatever its exact shape.
local function trace_fields(r)
    if type(r) == "number" then return r, nil end
    if type(r) ~= "table" then return nil, nil end
    local est = r.estimate or r.trace or r.value or r.mean or r[1]
    local se = r.stderr or r.std_error or r.se
    return est, se
end

--- op:trace_per_layer{probes = 100, seed = 1, method = nil} -> tidy rows, one per parameter tensor:
-- {param, numel, trace, stderr, probes, seed, method, operator, mode, batch, n_data}. Each block's
-- trace comes from op:trace of that block (landscape.curvature); the sum of the per-layer traces
-- estimates the full trace (the trace of a matrix is the sum of its diagonal blocks' traces).
function Op:trace_per_layer(opts)
    local ok, res = pcall(function()
        opts = check_options(opts, {probes = true, seed = true, method = true},
                             self.kind .. ":trace_per_layer")
        local probes, seed = opts.probes or 100, opts.seed or 1
        local rows = {}
        for i, sub in ipairs(self:per_layer()) do
            local r = sub:trace{probes = probes, seed = seed, method = opts.method}
            local est, se = trace_fields(r)
            rows[i] = {param = sub.name, numel = sub.n, trace = est, stderr = se, probes = probes,
                       seed = seed, method = opts.method or (type(r) == "table" and r.method) or "default",
                       operator = self.kind, mode = self.mode, batch = self.batch, n_data = self.N}
        end
        return rows
    end)
    if not ok then error(res, 2) end
    return res
end

---------------------------------------------------------------------------------------------------
-- Constructors
---------------------------------------------------------------------------------------------------

local KNOWN = {batch = true, mode = true, params = true, loss = true, dtype = true, cache_graph = true}

-- Check model, data and options; return the cfg and the selected parameters.
local function setup(kind, model, data, opts, who)
    opts = check_options(opts, KNOWN, who)
    if type(model) ~= "table" or type(model.named_parameters) ~= "function" then
        fail("%s: expected an ls.nn model as argument 1, got %s", who, type(model))
    end
    if type(data) ~= "table" or not ls.is_tensor(data.x) or not ls.is_tensor(data.y) then
        fail("%s: expected a dataset {x = Tensor [N, ...], y = labels [N]} as argument 2", who)
    end
    local x, y = data.x, data.y
    if x:dim() < 1 or x:size(1) == 0 then fail("%s: empty dataset (x has shape %s)", who, shape_str(x)) end
    local N = x:size(1)
    if y:dim() ~= 1 or y:size(1) ~= N then
        fail("%s: x has %d examples (shape %s) but y has shape %s", who, N, shape_str(x), shape_str(y))
    end
    local mode = opts.mode or "eval"
    if mode ~= "eval" and mode ~= "train" then
        fail("%s: mode must be \"eval\" or \"train\", got %s", who,
             type(mode) == "string" and string.format("%q", mode) or tostring(mode))
    end
    if mode == "train" and has_active_dropout(model) then
        fail("%s: mode \"train\" with dropout layers would give a random operator; use mode = \"eval\"", who)
    end
    local batch = opts.batch or 1000
    if math.type(batch) ~= "integer" and not (type(batch) == "number" and batch == batch // 1) or batch < 1 then
        fail("%s: option 'batch' must be a positive integer, got %s", who, tostring(batch))
    end
    batch = math.min(math.tointeger(batch), N)
    local sel = select_params(model, opts.params, who)
    local dtype = sel[1][2].dtype
    for _, e in ipairs(sel) do
        if e[2].dtype ~= dtype then
            fail("%s: selected parameters mix dtypes (%s is %s, %s is %s)", who, sel[1][1], dtype, e[1],
                 e[2].dtype)
        end
    end
    if opts.dtype ~= nil and opts.dtype ~= dtype then
        fail("%s: dtype %s requested but the model's parameters are %s (convert with model:to(%q))",
             who, tostring(opts.dtype), dtype, tostring(opts.dtype))
    end
    if x.dtype ~= dtype then
        fail("%s: the data x is %s but the parameters are %s (cast the data with x:cast(%q) or the " ..
             "model with model:to(%q))", who, x.dtype, dtype, dtype, x.dtype)
    end
    local loss_fn, loss_name = resolve_loss(opts.loss, who)
    if kind == "ggn" and loss_name ~= "cross_entropy" then
        fail("ggn: only loss = \"cross_entropy\" is supported (the output Hessian is diag(p) - p p^T)")
    end
    if mode == "train" and batch == 1 then
        for _, m in ipairs(model:modules()) do
            if m.running_mean ~= nil then
                fail("%s: mode \"train\" with batch norm needs batch >= 2, got batch = 1", who)
            end
        end
    end
    -- One eval-mode forward on the first examples: shape errors surface here, with the data's shape.
    local probe = math.min(N, 2)
    local ok, z = pcall(function()
        return with_mode(model, "eval", function()
            return ls.no_grad(function() return model(x:narrow(1, 1, probe)) end)
        end)
    end)
    if not ok then
        fail("%s: the model rejects the data (x has shape %s): %s", who, shape_str(x), tostring(z))
    end
    if loss_name == "cross_entropy" then
        if z:dim() ~= 2 then
            fail("%s: cross_entropy needs logits [B, C] from the model, got %s for input %s", who,
                 shape_str(z), shape_str(x:narrow(1, 1, probe)))
        end
        local ymax = y:double():max():item()
        local ymin = y:double():min():item()
        if ymin < 1 or ymax > z:size(2) then
            fail("%s: labels must lie in 1..%d (the model has %d outputs), got %d..%d", who, z:size(2),
                 z:size(2), math.tointeger(ymin), math.tointeger(ymax))
        end
    end
    local cache = opts.cache_graph
    if cache == nil then cache = batch == N end
    if type(cache) ~= "boolean" then
        fail("%s: option 'cache_graph' must be a boolean, got %s", who, type(cache))
    end
    local cfg = {kind = kind, model = model, x = x, y = y, N = N, batch = batch, mode = mode,
                 loss_fn = loss_fn, loss = loss_name, dtype = dtype, who = who, cache_graph = cache}
    return cfg, sel
end

--- ls.curvature.hessian(model, data, opts) -> operator for the Hessian of the mean loss.
-- model: an ls.nn model; data: {x = Tensor [N, ...], y = i64 labels [N]} (a Dataset works).
-- opts:
--   batch = 1000      examples per batch (clamped to N); the last batch may be shorter
--   mode = "eval"     "eval" (running statistics, no dropout) or "train" (batch statistics, frozen
--                     running statistics); recorded as op.mode
--   params = nil      all parameters; or a pattern or list of patterns over state-dict names (exact
--                     names, globs with * and ?, or anchored Lua patterns; a function(name) -> bool)
--   loss = "cross_entropy"  or a function(logits, y, reduction) returning the batch mean for
--                     reduction "mean" (and per-sample losses for "none", needed by fisher)
--   dtype = nil       the parameters' dtype; if given it must equal it (no conversion is done)
--   cache_graph = (one batch)  hessian only: keep each batch's gradient graph (built with
--                     create_graph) between products, as PyHessian does, so a product costs one double
--                     backward instead of a forward and two backwards. Default true when the data is
--                     one batch, false otherwise (memory: one graph per batch). The cache is dropped
--                     when the parameters change (checked exactly at every product) or by op:refresh().
-- Fields: n, dtype, mode, batch, N, loss, kind, params (names), shapes, numels, offsets (1-based
-- start of each parameter in the flat vector), matvecs (count). Methods: matvec, unflatten, flatten,
-- dense, per_layer, trace_per_layer, settings, and the estimators of landscape.curvature (trace,
-- diag, eigs, power, density) when that module is installed.
M.hessian = public(function(model, data, opts)
    return make_op(setup("hessian", model, data, opts, "hessian"))
end)

--- ls.curvature.ggn(model, data, opts) -> operator for the generalized Gauss-Newton matrix
-- (1/N) sum_i J_i^T (diag(p_i) - p_i p_i^T) J_i of the cross-entropy loss, J_i the Jacobian of sample
-- i's logits. Positive semi-definite. Options as for hessian (loss must be "cross_entropy"). In train
-- mode with batch norm, J is the Jacobian of the whole batch's logits (samples coupled by the batch
-- statistics).
M.ggn = public(function(model, data, opts)
    return make_op(setup("ggn", model, data, opts, "ggn"))
end)

--- ls.curvature.fisher(model, data, opts) -> operator for the empirical Fisher (1/N) sum_i g_i g_i^T,
-- g_i the gradient of sample i's loss (at its label). Options as for hessian. Computed per batch as
-- J_l^T (J_l v) / N, J_l the [B x n] Jacobian of the per-sample losses, without a per-sample loop. In
-- train mode with batch norm, g_i is the gradient of l_i of the batch forward (which depends on the
-- batch's other samples through the batch statistics).
M.fisher = public(function(model, data, opts)
    return make_op(setup("fisher", model, data, opts, "fisher"))
end)

--- ls.curvature.grad_norm(model, data, {batch, mode, params, loss, dtype}) ->
-- {norm = ||grad L||, grad = flat tensor, loss = L, mode, batch, n_data, params}: the gradient of the
-- mean loss over the whole dataset (batches weighted by B/N), flat over the selected parameters.
M.grad_norm = public(function(model, data, opts)
    local cfg, sel = setup("grad_norm", model, data, opts, "grad_norm")
    local op = make_op(cfg, sel)
    local acc, total = {}, 0
    with_mode(model, cfg.mode, function()
        for _, b in ipairs(batches(op)) do
            local xb, yb = cfg.x:narrow(1, b[1], b[2]), cfg.y:narrow(1, b[1], b[2])
            local loss = cfg.loss_fn(model(xb), yb, "mean")
            local w = b[2] / cfg.N
            total = total + loss:item() * w
            local g = ls.grad(loss, op._ps, {allow_unused = true})
            for i = 1, #op._ps do
                if g[i] ~= nil then
                    local gw = g[i] * w
                    acc[i] = acc[i] and (acc[i] + gw) or gw
                end
            end
        end
    end)
    local g = join(op, acc)
    return {norm = g:norm():item(), grad = g, loss = total, mode = cfg.mode, batch = cfg.batch,
            n_data = cfg.N, params = op.params}
end)

M._select_params = select_params

return M
