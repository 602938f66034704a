--- landscape.analysis.hessian: curvature operators of an objective (a model on data), reached as
-- ls.curvature.hessian, ls.curvature.ggn, ls.curvature.fisher and ls.curvature.grad_norm.
-- docs/hessian.md is the guide.
--
--   local H = ls.curvature.hessian(model, data, {batch = 1000, mode = "eval", params = {"0.*"}})
--   local H = ls.curvature.hessian(ls.objective(model, data, {...}))   -- the same
--   local hv = H:matvec(v)               -- v: 1-D tensor of length H.n, dtype H.dtype
--   local top = H:eigs{k = 3}            -- every estimator of landscape.analysis.operator
--   for _, row in ipairs(H:trace_per_layer{probes = 100, seed = 1}) do ... end
--
-- Each operator is a curvature operator (landscape.analysis.operator) whose product is a pass over
-- the objective's data. The objective fixes the conventions (ls.objective): the loss is the MEAN
-- over the dataset, batches weighted by B/N; the mode is explicit and recorded (op.mode), and each
-- product runs under the objective's guard, which restores every flag and buffer afterwards (in
-- train mode batch norm uses batch statistics and its running statistics stay frozen; train mode
-- with active dropout is refused: the operator would be random); vectors are flat over the
-- selected parameters in state-dict order (op:unflatten / op:flatten convert).
--
-- Operator kinds (matvec cost per batch, in forward+backward passes of that batch):
--   hessian  exact H v by double backward (obj:hvp)                                 ~ 1 fwd + 3 bwd
--   ggn      G v = J^T H_out J v, H_out = diag(p) - p p^T per sample (cross-entropy) ~ 1 fwd + 4 bwd
--            J v by the double-vjp trick (a dummy u with requires_grad: d<J^T u, v>/du = J v)
--   fisher   empirical Fisher F v = (1/N) sum_i g_i (g_i . v), g_i = grad of sample i's loss;
--            batched exactly as J_l^T (J_l v) with J_l the Jacobian of the per-sample loss vector
--            (no per-sample loop)                                                    ~ 1 fwd + 4 bwd
local ls = require "landscape"
local util = require "landscape.util"
local O = require "landscape.train.objective"
local operator = require "landscape.analysis.operator"
local autograd = require "landscape.autograd"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options,
    util.shape_str

local M = {}

local ModelOp = setmetatable({}, {__index = operator.Operator})
ModelOp.__index = ModelOp
ModelOp.__name = "landscape.curvature.ModelOperator"
ModelOp.__tostring = function(self)
    return string.format("%s operator: n = %d, %s, mode = %s, batch = %d, N = %d, %d parameter " ..
                         "tensor(s)", self.kind, self.n, self.dtype, self.mode, self.batch, self.N,
                         #self.params)
end

-- J^T u as a function of a dummy u, then J v = d<J^T u, v>/du (retain_graph: out's graph is used
-- again by the final vjp).
local function jvp_of(ps, out, vs)
    local u = ls.zeros_like(out):requires_grad()
    local gu = ls.grad(out, ps, {grad_outputs = u, create_graph = true, allow_unused = true})
    local d = autograd.inner(gu, vs)
    if d == nil then return nil end
    return ls.grad(d, u, {retain_graph = true, allow_unused = true})
end

-- Per-batch products of the Gauss-Newton kinds, each returning per-parameter tensors of the batch's
-- (already weighted) contribution.
local PRODUCTS = {}

function PRODUCTS.ggn(obj, b, vs)
    local z = O.forward(obj.model, b.x)
    if z:dim() ~= 2 then fail("ggn: expected logits [B, C] from the model, got %s", shape_str(z)) end
    local jv = jvp_of(obj.tensors, z, vs)
    if jv == nil then return {} end
    local p = z:detach():softmax(2)
    local pj = p * jv
    local r = (pj - p * pj:sum(2, true)) * (1 / obj.N)
    return ls.grad(z, obj.tensors, {grad_outputs = r, allow_unused = true})
end

function PRODUCTS.fisher(obj, b, vs)
    local z = O.forward(obj.model, b.x)
    local l = obj._loss.none(z, b.y)
    if not ls.is_tensor(l) or l:dim() ~= 1 or l:size(1) ~= b.B then
        fail("fisher: the loss with reduction 'none' must return per-sample losses [%d], got %s",
             b.B, ls.is_tensor(l) and shape_str(l) or type(l))
    end
    local jv = jvp_of(obj.tensors, l, vs)   -- [B]: g_i . v
    if jv == nil then return {} end
    return ls.grad(l, obj.tensors, {grad_outputs = jv * (1 / obj.N), allow_unused = true})
end

-- The graph cache is valid while the selected parameters hold the values they had when it was
-- built: compare with a snapshot (x:equal, one read of the parameters and no temporaries). A NaN
-- parameter never equals its snapshot, so such a cache is rebuilt each time: harmless.
local function check_cache(self)
    if self._gcache then
        for i, p in ipairs(self.objective.tensors) do
            if not p:equal(self._snap[i]) then
                self._gcache = nil
                break
            end
        end
    end
    if not self._gcache then
        self._gcache, self._snap = {}, self.objective:snapshot()
    end
end

local function product(self, v)
    local obj = self.objective
    if self.kind == "hessian" then
        if self.cache_graph then check_cache(self) end
        return obj:hvp(v, {graph_cache = self.cache_graph and self._gcache or nil})
    end
    local who = self.kind .. ":matvec"
    obj:check_vector(v, who)
    local vs, acc = obj:split(v), {}
    obj:guard(function()
        for _, b in ipairs(obj:batches()) do
            local part = PRODUCTS[self.kind](obj, b, vs)
            for i = 1, #obj.tensors do
                if part[i] ~= nil then acc[i] = acc[i] and (acc[i] + part[i]) or part[i] end
            end
        end
    end)
    return obj:flatten(acc)
end

--- op:matvec(v) -> the product (a new 1-D tensor of length op.n, dtype op.dtype): one pass over the
-- data in batches.
-- e.g. local hv = H:matvec(ls.randn({H.n}, {seed = 1, dtype = "f64"}))
ModelOp.matvec = public(function(self, v)
    local r = product(self, v)
    self.matvecs = self.matvecs + 1
    return r
end)

-- An operator of `kind` on the objective (checked by setup).
local function make_op(kind, obj, cache)
    local op = setmetatable({kind = kind, objective = obj, model = obj.model, mode = obj.mode,
                             batch = obj.batch, N = obj.N, loss = obj.loss, dtype = obj.dtype,
                             params = obj.names, shapes = obj.shapes, numels = obj.numels,
                             offsets = obj.offsets, n = obj.n, matvecs = 0, name = kind,
                             cache_graph = cache}, ModelOp)
    op._mv = function(v) return ModelOp.matvec(op, v) end
    return op
end

--- op:refresh(): drop the cached gradient graphs (they are rebuilt at the next product).
-- Drops the operator's cached per-batch graphs (they are rebuilt at the next product); needed
-- only after changing the model behind its back.
-- e.g. H:refresh()
function ModelOp:refresh()
    self._gcache, self._snap = nil, nil
    return self
end

--- op:unflatten(v) -> map name -> tensor shaped like that parameter (copies), also a list in order.
-- A flat vector over the selected parameters as tensors shaped like them (by name and as a
-- list; the inverse of flatten).
-- e.g. local dirs = H:unflatten(H:eigs{k = 1}.vectors[1])
ModelOp.unflatten = public(function(self, v) return self.objective:unflatten(v) end)

--- op:flatten(list) -> a flat tensor. list: tensors in op.params order, or a map name -> tensor
-- (missing names are zeros). Shapes must match the parameters' (numel is checked).
-- e.g. local v = H:flatten(H:unflatten(ls.ones({H.n}, {dtype = H.dtype})))
ModelOp.flatten = public(function(self, list)
    if type(list) ~= "table" then fail("%s:flatten: expected a table of tensors", self.kind) end
    return self.objective:flatten(list)
end)

--- op:dense() -> the [n x n] matrix, column j = op:matvec(e_j): n passes over the data. For small
-- models and tests.
-- e.g. local Hd = ls.curvature.hessian(model, train):dense()
function ModelOp:dense()
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
-- The operator's settings as a flat table (mode, batch, loss, N, params), for the columns of a
-- CSV row.
-- e.g. local row = H:settings(); row.trace = H:trace().estimate
function ModelOp:settings()
    return {operator = self.kind, mode = self.mode, batch = self.batch, n_data = self.N,
            n_params = self.n, dtype = self.dtype, loss = self.loss,
            params = table.concat(self.params, " ")}
end

--- op:per_layer() -> list of operators, one per selected parameter tensor (the diagonal blocks),
-- each with .name; same kind, data, mode and batch.
-- e.g. for _, l in ipairs(H:per_layer()) do print(l.name, l.n) end
function ModelOp:per_layer()
    local out = {}
    for i, name in ipairs(self.params) do
        local sub = make_op(self.kind, self.objective:select(function(n) return n == name end),
                            self.cache_graph)
        sub.name = name
        out[i] = sub
    end
    return out
end

--- op:trace_per_layer{probes = 100, seed = 1, method = nil} -> tidy rows, one per parameter tensor:
-- {param, numel, trace, stderr, probes, seed, method, operator, mode, batch, n_data}. The sum of
-- the per-layer traces estimates the full trace (the trace of a matrix is the sum of its diagonal
-- blocks' traces).
-- e.g. for _, r in ipairs(H:trace_per_layer{probes = 50}) do print(r.name, r.estimate) end
ModelOp.trace_per_layer = public(function(self, opts)
    opts = check_options(opts, {probes = true, seed = true, method = true},
                         self.kind .. ":trace_per_layer")
    local probes, seed = opts.probes or 100, opts.seed or 1
    local rows = {}
    for i, sub in ipairs(self:per_layer()) do
        local r = sub:trace{probes = probes, seed = seed, method = opts.method}
        rows[i] = {param = sub.name, numel = sub.n, trace = r.estimate, stderr = r.stderr,
                   probes = probes, seed = seed, method = r.method, operator = self.kind,
                   mode = self.mode, batch = self.batch, n_data = self.N}
    end
    return rows
end)

---------------------------------------------------------------------------------------------------
-- Constructors
---------------------------------------------------------------------------------------------------

local KNOWN = {dtype = true, cache_graph = true}

-- The objective (given, or built from model, data, opts) checked for `kind`, and the options.
local function setup(kind, a, b, c)
    local who = kind
    if not O.is_objective(a) and (type(a) ~= "table" or type(a.named_parameters) ~= "function") then
        fail("%s: expected an objective or an ls.nn model as argument 1, got %s", who, type(a))
    end
    local obj, opts = O.resolve(who, a, b, c)
    opts = check_options(opts, KNOWN, who)
    if obj.y == nil then fail("%s: the data has no labels or targets (y)", who) end
    if not obj.dtype then
        fail("%s: the selected parameters mix dtypes (%s ...)", who, table.concat(obj.names, ", "))
    end
    if opts.dtype ~= nil and opts.dtype ~= obj.dtype then
        fail("%s: dtype %s requested but the model's parameters are %s (convert with model:to(%q))",
             who, tostring(opts.dtype), obj.dtype, tostring(opts.dtype))
    end
    if kind == "ggn" and obj.loss ~= "cross_entropy" then
        fail("ggn: only loss = \"cross_entropy\" is supported (the output Hessian is diag(p) - p p^T)")
    end
    obj:refuses_dropout()
    if obj.mode == "train" and obj.batch == 1 then
        for _, m in ipairs(obj.model:modules()) do
            if m.running_mean ~= nil then
                fail("%s: mode \"train\" with batch norm needs batch >= 2, got batch = 1", who)
            end
        end
    end
    obj:probe()
    local cache = opts.cache_graph
    if cache == nil then cache = obj.batch == obj.N end
    if type(cache) ~= "boolean" then
        fail("%s: option 'cache_graph' must be a boolean, got %s", who, type(cache))
    end
    return obj, cache
end

--- ls.curvature.hessian(objective [, opts]) or (model, data [, opts]) -> operator for the Hessian
-- of the objective's mean loss. model: an ls.nn model; data: {x = Tensor [N, ...], y = labels [N]}
-- (a Dataset works). opts: the objective's (loss, mode = "eval", batch = 1000, params, n; see
-- ls.objective) when called with a model, and
--   dtype = nil       the parameters' dtype; if given it must equal it (no conversion is done)
--   cache_graph = (one batch)  hessian only: keep each batch's gradient graph (built with
--                     create_graph) between products, as PyHessian does, so a product costs one double
--                     backward instead of a forward and two backwards. Default true when the data is
--                     one batch, false otherwise (memory: one graph per batch). The cache is dropped
--                     when the parameters change (checked exactly at every product) or by op:refresh().
-- Fields: n, dtype, mode, batch, N, loss, kind, objective, params (names), shapes, numels, offsets
-- (1-based start of each parameter in the flat vector), matvecs (count). Methods: matvec,
-- unflatten, flatten, dense, per_layer, trace_per_layer, settings, refresh, and the estimators
-- (eigs, power, trace, diag, density, moments).
-- e.g. local H = ls.curvature.hessian(model, train, {batch = 1000}); print(H:eigs{k = 3})
M.hessian = public(function(a, b, c) return make_op("hessian", setup("hessian", a, b, c)) end)

--- ls.curvature.ggn(...) -> operator for the generalized Gauss-Newton matrix
-- (1/N) sum_i J_i^T (diag(p_i) - p_i p_i^T) J_i of the cross-entropy loss, J_i the Jacobian of sample
-- i's logits. Positive semi-definite. Arguments as for hessian (loss must be "cross_entropy"). In
-- train mode with batch norm, J is the Jacobian of the whole batch's logits.
-- e.g. local G = ls.curvature.ggn(model, train); print(G:trace{probes = 50})
M.ggn = public(function(a, b, c) return make_op("ggn", setup("ggn", a, b, c)) end)

--- ls.curvature.fisher(...) -> operator for the empirical Fisher (1/N) sum_i g_i g_i^T, g_i the
-- gradient of sample i's loss (at its label). Arguments as for hessian. Computed per batch as
-- J_l^T (J_l v) / N, J_l the [B x n] Jacobian of the per-sample losses, without a per-sample loop.
-- e.g. local F = ls.curvature.fisher(model, train); print(F:eigs{k = 1})
M.fisher = public(function(a, b, c) return make_op("fisher", setup("fisher", a, b, c)) end)

--- ls.curvature.grad_norm(objective) or (model, data [, opts]) -> {norm = ||grad L||, grad = flat
-- tensor, loss = L, mode, batch, n_data, params}: the gradient of the mean loss over the whole
-- dataset (obj:grad()), flat over the selected parameters.
-- e.g. print(ls.curvature.grad_norm(model, train).norm)
M.grad_norm = public(function(a, b, c)
    local obj = setup("grad_norm", a, b, c)
    local g, L = obj:grad()
    return {norm = g:norm():item(), grad = g, loss = L, mode = obj.mode, batch = obj.batch,
            n_data = obj.N, params = obj.names}
end)

M.ModelOperator = ModelOp

return M
