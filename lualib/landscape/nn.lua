--- landscape.nn (ls.nn): neural-network modules in the style of Torch7's `nn`, with the parameter
-- and buffer names of torch.nn, so weights move both ways through safetensors files.
--
--   local nn = ls.nn
--   local model = nn.sequential{
--     nn.flatten(), nn.linear(784, 128, {seed = 1}), nn.relu(), nn.linear(128, 10, {seed = 2}),
--   }
--   local loss = ls.cross_entropy(model(x), y)          -- model(x) == model:forward(x)
--   local g = ls.grad(loss, model:parameters())
--   model:save("m.safetensors")                          -- keys "1.weight", "1.bias", "3.weight", ...
--
-- Layers compute with registered C ops (matmul, add, conv2d, maxpool2d, var, ...), so the autograd
-- records every step and gradients of gradients (Hessian-vector products) go through every layer,
-- batch norm included. The containers are Lua tables; docs/nn.md is the reference.
--
-- The module protocol (every module):
--   m(x), m:forward(x)        the output; records the graph when grad mode is on
--   m:parameters()            list of parameter tensors (leaves with requires_grad), state-dict order
--   m:named_parameters()      ordered list of {name, tensor}, plus name -> tensor in the same table
--   m:buffers(), m:named_buffers()   the same for buffers (batch-norm running statistics)
--   m:state_dict()            parameters and buffers, torch's order and names, as detached aliases
--   m:load_state_dict(sd [, {strict = true, cast = false}])
--   m:save(path [, metadata]), ls.nn.load_into(m, path [, opts])   safetensors
--   m:train([on = true]), m:eval(), m.training, m:freeze_running_stats([on = true])
--   m:zero_grad(), m:num_parameters(), m:clone(), m:to(dtype)
--   m:flatten_parameters(), m:set_flat_parameters(v)
--   m:children(), m:named_children(), m:modules(), m:apply(fn), tostring(m)
local ls = require "landscape"
local util = require "landscape.util"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options, util.shape_str

local M = {}

---------------------------------------------------------------------------------------------------
-- Errors. Inside this module errors are raised without a position (level 0); public functions run
-- under `public`, which re-raises at level 2, so the message points at the caller's line:
-- "train.lua:12: linear: in_features must be a positive integer, got 0".
---------------------------------------------------------------------------------------------------



local function check_posint(v, who, what)
    local n = type(v) == "number" and math.tointeger(v) or nil
    if not n or n < 1 then fail("%s: %s must be a positive integer, got %s", who, what, tostring(v)) end
    return n
end

local function check_nonneg_int(v, who, what)
    local n = type(v) == "number" and math.tointeger(v) or nil
    if not n or n < 0 then
        fail("%s: %s must be a non-negative integer, got %s", who, what, tostring(v))
    end
    return n
end

local function check_dtype(d, who)
    if d ~= "f32" and d ~= "f64" then
        fail("%s: dtype must be \"f32\" or \"f64\", got %s", who, tostring(d))
    end
    return d
end

local function check_seed(s, who)
    if s ~= nil and math.type(s) ~= "integer" then
        fail("%s: option 'seed' must be an integer, got %s", who, tostring(s))
    end
    return s
end


local function check_input(x, who)
    if not ls.is_tensor(x) then fail("%s: expected a tensor input, got %s", who, type(x)) end
    return x
end

-- A layer with parameters of dtype `dt` refuses an input of another dtype with a useful message.
local function check_input_dtype(x, dt, who)
    if x.dtype ~= dt then
        fail("%s: input is %s but the layer is %s (convert one: x:cast(\"%s\") or model:to(\"%s\"))",
             who, x.dtype, dt, dt, x.dtype)
    end
end

local function fmt_num(v)
    if math.type(v) == "integer" then return tostring(v) end
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%.1f", v) end
    return string.format("%g", v)
end

---------------------------------------------------------------------------------------------------
-- Initialisation. PyTorch's defaults for Linear and Conv2d: weight and bias uniform on
-- [-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform_ with a = sqrt(5) gives exactly this bound for
-- the weight). One draw of numel(weight) + numel(bias) values: the weight takes the first ones in
-- row-major order, the bias the rest. With a seed the draw comes from a fresh stream (the global
-- stream does not move); without one, from the global stream (ls.manual_seed).
---------------------------------------------------------------------------------------------------
local function init_uniform(shapes, bound, dtype, seed)
    local total, sizes = 0, {}
    for i, s in ipairs(shapes) do
        local n = 1
        for _, d in ipairs(s) do n = n * d end
        sizes[i] = n
        total = total + n
    end
    local u = ls.rand({total}, {seed = seed, dtype = dtype, lo = -bound, hi = bound})
    local out, off = {}, 1
    for i, s in ipairs(shapes) do
        out[i] = u:narrow(1, off, sizes[i]):reshape(s):clone():requires_grad()
        off = off + sizes[i]
    end
    return out
end

---------------------------------------------------------------------------------------------------
-- Module: the base class. An instance holds
--   training       boolean
--   _params        ordered list of the names of its own parameters (fields of the instance)
--   _buffers       ordered list of the names of its own buffers (fields of the instance)
--   _children      ordered list of {name, module}
-- Every class is its own metatable (__index = class, __call = forward, __tostring = repr).
---------------------------------------------------------------------------------------------------
local Module = {}
Module.__index = Module
M.Module = Module

local function module_call(self, ...) return self:forward(...) end
local function module_tostring(self) return self:repr("") end

--- nn.class(name [, parent = nn.Module]) -> a new module class. Define `cls.new(...)` (or use
-- nn.Module.init(self)) and `cls:forward(x)`; see docs/nn.md "Custom modules".
function M.class(name, parent)
    parent = parent or Module
    local cls = {}
    cls.__index = cls
    cls.__call = module_call
    cls.__tostring = module_tostring
    cls.__name = "landscape.nn." .. name
    cls._type = name
    return setmetatable(cls, {__index = parent})
end
local class = M.class

--- Module.init(self): the fields every module has. Returns self.
function Module.init(self)
    self.training = true
    self._params = {}
    self._buffers = {}
    self._children = {}
    return self
end

function Module:add_parameter(name, t)
    self._params[#self._params + 1] = name
    self[name] = t
end

function Module:add_buffer(name, t)
    self._buffers[#self._buffers + 1] = name
    self[name] = t
end

-- A named child: also reachable as self[name].
function Module:add_child(name, m)
    self._children[#self._children + 1] = {name, m}
    self[name] = m
end

function Module:forward()
    fail("%s: this module has no forward(x); a custom module (ls.nn.class) must define one", self._type)
end

function Module:extra_repr() return "" end

-- torch's repr: "Name(extra)" for a leaf, children indented on their own lines otherwise.
function Module:repr(indent)
    local head = self._type .. "(" .. self:extra_repr()
    if #self._children == 0 then return head .. ")" end
    local lines = {head}
    local inner = indent .. "  "
    for _, c in ipairs(self._children) do
        lines[#lines + 1] = inner .. "(" .. c[1] .. "): " .. c[2]:repr(inner)
    end
    lines[#lines + 1] = indent .. ")"
    return table.concat(lines, "\n")
end

-- Pre-order walk: fn(module, prefix) with prefix "" for self and "3.conv1." for a grandchild.
local function walk(m, prefix, fn)
    fn(m, prefix)
    for _, c in ipairs(m._children) do walk(c[2], prefix .. c[1] .. ".", fn) end
end

-- An ordered list of {name, tensor} that also maps name -> tensor: named_add(list, name, t).
local function named_list() return {} end
local function named_add(list, name, t)
    list[#list + 1] = {name, t}
    list[name] = t
end

function Module:named_parameters()
    local out = named_list()
    walk(self, "", function(m, prefix)
        for _, n in ipairs(m._params) do named_add(out, prefix .. n, m[n]) end
    end)
    return out
end

function Module:parameters()
    local out = {}
    for i, e in ipairs(self:named_parameters()) do out[i] = e[2] end
    return out
end

function Module:named_buffers()
    local out = named_list()
    walk(self, "", function(m, prefix)
        for _, n in ipairs(m._buffers) do named_add(out, prefix .. n, m[n]) end
    end)
    return out
end

function Module:buffers()
    local out = {}
    for i, e in ipairs(self:named_buffers()) do out[i] = e[2] end
    return out
end

-- (module, parameter-or-buffer name, full key, is_param) for every entry, torch's state-dict order:
-- each module's parameters, then its buffers, then its children.
local function entries(self)
    local out = {}
    walk(self, "", function(m, prefix)
        for _, n in ipairs(m._params) do out[#out + 1] = {m, n, prefix .. n, true} end
        for _, n in ipairs(m._buffers) do out[#out + 1] = {m, n, prefix .. n, false} end
    end)
    return out
end

--- m:state_dict() -> ordered list of {name, tensor} plus name -> tensor. The tensors are detached
-- aliases: they share storage with the parameters and buffers (a later training step shows in
-- them; clone them to keep a snapshot).
function Module:state_dict()
    local out = named_list()
    for _, e in ipairs(entries(self)) do named_add(out, e[3], e[1][e[2]]:detach()) end
    return out
end

local LOAD_OPTS = {strict = true, cast = true}

--- m:load_state_dict(sd [, {strict = true, cast = false}]) -> {missing_keys, unexpected_keys}.
-- sd maps names to tensors (a state_dict(), or the table ls.io.load_safetensors returns). Values
-- are copied into the existing tensors (so optimizers holding them stay valid). Shapes must match
-- exactly; dtypes too, unless cast = true (then float values convert to the parameter's dtype).
-- strict: every key of the model must be in sd and every key of sd in the model. Nothing is
-- written unless every check passes.
function Module:load_state_dict(sd, opts)
    opts = check_options(opts, LOAD_OPTS, "load_state_dict")
    if type(sd) ~= "table" then
        fail("load_state_dict: expected a table of name -> tensor, got %s", type(sd))
    end
    local strict = opts.strict ~= false
    local want, plan, missing, unexpected = {}, {}, {}, {}
    for _, e in ipairs(entries(self)) do
        local m, n, key = e[1], e[2], e[3]
        want[key] = true
        local src = sd[key]
        if src == nil then
            missing[#missing + 1] = key
        else
            if not ls.is_tensor(src) then
                fail("load_state_dict: '%s' is a %s, not a tensor", key, type(src))
            end
            local dst = m[n]
            local ds, ss = dst:size(), src:size()
            local same = #ds == #ss
            for i = 1, #ds do same = same and ds[i] == ss[i] end
            if not same then
                fail("load_state_dict: size mismatch for '%s': the model has %s, the state dict %s",
                     key, shape_str(dst), shape_str(src))
            end
            if dst.dtype ~= src.dtype then
                local floats = (dst.dtype == "f32" or dst.dtype == "f64") and
                               (src.dtype == "f32" or src.dtype == "f64")
                if not (opts.cast and floats) then
                    fail("load_state_dict: dtype mismatch for '%s': the model has %s, the state " ..
                         "dict %s%s", key, dst.dtype, src.dtype,
                         floats and " (pass {cast = true} to convert, or call model:to first)" or "")
                end
            end
            plan[#plan + 1] = {dst, src}
        end
    end
    for k, v in pairs(sd) do
        -- entries of a state_dict()'s ordered part are {name, tensor} pairs under integer keys
        if type(k) == "string" and not want[k] then unexpected[#unexpected + 1] = k end
        if type(k) ~= "string" and not (type(v) == "table" and type(v[1]) == "string") then
            fail("load_state_dict: keys must be strings, got a %s key", type(k))
        end
    end
    table.sort(unexpected)
    if strict and (#missing > 0 or #unexpected > 0) then
        local parts = {}
        if #missing > 0 then
            parts[#parts + 1] = "missing key(s): " .. table.concat(missing, ", ")
        end
        if #unexpected > 0 then
            parts[#parts + 1] = "unexpected key(s): " .. table.concat(unexpected, ", ")
        end
        fail("load_state_dict: %s", table.concat(parts, "; "))
    end
    ls.no_grad(function()
        for _, p in ipairs(plan) do p[1]:detach():copy(p[2]) end
    end)
    return {missing_keys = missing, unexpected_keys = unexpected}
end

--- m:save(path [, metadata]): the state dict as a safetensors file. metadata maps strings to
-- strings (numbers and booleans are converted); "format" defaults to "pt", as torch writers do.
function Module:save(path, metadata)
    if type(path) ~= "string" then fail("save: expected a path string, got %s", type(path)) end
    if metadata ~= nil and type(metadata) ~= "table" then
        fail("save: metadata must be a table, got %s", type(metadata))
    end
    local map = {}
    for _, e in ipairs(self:state_dict()) do map[e[1]] = e[2] end
    local meta = {format = "pt"}
    for k, v in pairs(metadata or {}) do meta[k] = v end
    ls.io.save_safetensors(path, map, meta)
end

--- ls.nn.load_into(model, path [, {strict = true, cast = false}]) -> model, metadata
function M.load_into(model, path, opts)
    if type(model) ~= "table" or getmetatable(model) == nil or model.load_state_dict == nil then
        fail("load_into: expected a module, got %s", type(model))
    end
    if type(path) ~= "string" then fail("load_into: expected a path string, got %s", type(path)) end
    local tensors, meta = ls.io.load_safetensors(path)
    local ok, err = pcall(model.load_state_dict, model, tensors, opts)
    if not ok then fail("load_into: %s: %s", path, (tostring(err):gsub("^load_state_dict: ", ""))) end
    return model, meta
end

--- m:train([on = true]) / m:eval(): set .training on m and every descendant; return m.
function Module:train(on)
    if on == nil then on = true end
    local flag = on and true or false
    walk(self, "", function(m) m.training = flag end)
    return self
end

function Module:eval() return self:train(false) end

--- m:freeze_running_stats([on = true]): while on, train-mode forwards of every batch-norm module
-- in m still normalise with batch statistics but leave running_mean, running_var and
-- num_batches_tracked alone (for curvature probes in train mode that must not move the statistics
-- eval mode uses). Not a torch feature; not saved in the state dict. Returns m.
function Module:freeze_running_stats(on)
    if on == nil then on = true end
    walk(self, "", function(m)
        if m.running_mean ~= nil then m.frozen_stats = on and true or nil end
    end)
    return self
end

--- m:zero_grad(): drop the accumulated .grad of every parameter.
function Module:zero_grad()
    for _, p in ipairs(self:parameters()) do p:zero_grad() end
    return self
end

--- m:num_parameters() -> number of scalar parameters (buffers not counted).
function Module:num_parameters()
    local n = 0
    for _, p in ipairs(self:parameters()) do n = n + p:numel() end
    return n
end

function Module:children()
    local out = {}
    for i, c in ipairs(self._children) do out[i] = c[2] end
    return out
end

function Module:named_children()
    local out = named_list()
    for _, c in ipairs(self._children) do named_add(out, c[1], c[2]) end
    return out
end

--- m:modules() -> every module, m first, in pre-order.
function Module:modules()
    local out = {}
    walk(self, "", function(m) out[#out + 1] = m end)
    return out
end

--- m:apply(fn): fn(module) for every module in pre-order; returns m.
function Module:apply(fn)
    walk(self, "", function(m) fn(m) end)
    return self
end

-- Deep copy: tables and their metatables' identity; tensors as new storage; a leaf that requires
-- grad stays one. Shared references (a child reachable as a field and from _children) stay shared.
local function deepcopy(v, memo)
    local tv = type(v)
    if tv == "userdata" and ls.is_tensor(v) then
        if memo[v] then return memo[v] end
        local c = ls.no_grad(function() return v:detach():clone() end)
        if v.needs_grad then c:requires_grad() end
        memo[v] = c
        return c
    end
    if tv ~= "table" then return v end
    if memo[v] then return memo[v] end
    local c = {}
    memo[v] = c
    for k, x in pairs(v) do c[deepcopy(k, memo)] = deepcopy(x, memo) end
    return setmetatable(c, getmetatable(v))
end

--- m:clone() -> an independent deep copy (parameters, buffers, options, training flag).
function Module:clone() return deepcopy(self, {}) end

local function param_dtype(self, who)
    local ps = self:parameters()
    if #ps == 0 then fail("%s: the module has no parameters", who) end
    local dt = ps[1].dtype
    for _, p in ipairs(ps) do
        if p.dtype ~= dt then fail("%s: parameters have mixed dtypes (%s and %s)", who, dt, p.dtype) end
    end
    return ps, dt
end

--- m:flatten_parameters() -> a new 1-D tensor: every parameter, flattened row-major and
-- concatenated in state-dict order (buffers excluded). Not recorded: a snapshot.
function Module:flatten_parameters()
    local ps, dt = param_dtype(self, "flatten_parameters")
    return ls.no_grad(function()
        local v = ls.zeros({self:num_parameters()}, {dtype = dt})
        local off = 1
        for _, p in ipairs(ps) do
            local n = p:numel()
            v:narrow(1, off, n):copy(p:detach():reshape(-1))
            off = off + n
        end
        return v
    end)
end

--- m:set_flat_parameters(v): the inverse of flatten_parameters, in place. v is 1-D with
-- num_parameters() elements (its dtype is converted to the parameters').
function Module:set_flat_parameters(v)
    local ps = param_dtype(self, "set_flat_parameters")
    if not ls.is_tensor(v) then fail("set_flat_parameters: expected a tensor, got %s", type(v)) end
    local total = self:num_parameters()
    if v.ndim ~= 1 or v:numel() ~= total then
        fail("set_flat_parameters: expected a 1-D tensor of %d elements, got %s", total, shape_str(v))
    end
    ls.no_grad(function()
        local src = v:detach()
        local off = 1
        for _, p in ipairs(ps) do
            local n = p:numel()
            p:detach():copy(src:narrow(1, off, n):reshape(p:size()))
            off = off + n
        end
    end)
    return self
end

--- m:to(dtype): convert every parameter and float buffer to "f32" or "f64", in place (new tensors
-- replace the old ones, so build optimizers after calling it). Returns m.
function Module:to(dtype)
    check_dtype(dtype, "to")
    walk(self, "", function(m)
        for _, n in ipairs(m._params) do
            local p = m[n]
            if p.dtype ~= dtype then
                m[n] = ls.no_grad(function() return p:detach():cast(dtype) end):requires_grad()
            end
        end
        for _, n in ipairs(m._buffers) do
            local b = m[n]
            if (b.dtype == "f32" or b.dtype == "f64") and b.dtype ~= dtype then
                m[n] = b:cast(dtype)
            end
        end
        if m.dtype ~= nil then m.dtype = dtype end
    end)
    return self
end

-- Public entry points of the protocol: errors point at the caller's line.
for _, name in ipairs({"load_state_dict", "save", "train", "to", "flatten_parameters",
                       "set_flat_parameters", "apply"}) do
    Module[name] = public(Module[name])
end
M.load_into = public(M.load_into)

---------------------------------------------------------------------------------------------------
-- Layers
---------------------------------------------------------------------------------------------------

-- Linear -----------------------------------------------------------------------------------------
local Linear = class("Linear")
M.Linear = Linear

--- nn.linear(in_features, out_features [, {bias = true, seed, dtype = "f32"}])
-- y = x W^T + b; weight [out, in], bias [out]; x [..., in] -> [..., out].
function M.linear(nin, nout, opts)
    opts = check_options(opts, {bias = true, seed = true, dtype = true}, "linear")
    nin = check_posint(nin, "linear", "in_features")
    nout = check_posint(nout, "linear", "out_features")
    local dtype = check_dtype(opts.dtype or "f32", "linear")
    local bias = opts.bias ~= false
    local m = Module.init(setmetatable({}, Linear))
    m.in_features, m.out_features, m.dtype = nin, nout, dtype
    local shapes = {{nout, nin}}
    if bias then shapes[2] = {nout} end
    local t = init_uniform(shapes, 1 / math.sqrt(nin), dtype, check_seed(opts.seed, "linear"))
    m:add_parameter("weight", t[1])
    if bias then m:add_parameter("bias", t[2]) end
    return m
end

function Linear:forward(x)
    check_input(x, "Linear")
    check_input_dtype(x, self.weight.dtype, "Linear")
    if x.ndim < 1 or x:size(x.ndim) ~= self.in_features then
        fail("Linear(%d -> %d): input %s should have %d features in its last dim",
             self.in_features, self.out_features, shape_str(x), self.in_features)
    end
    local y = x:matmul(self.weight:t())
    if self.bias then y = y + self.bias end
    return y
end

function Linear:extra_repr()
    return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features,
                         self.out_features, self.bias and "True" or "False")
end

-- Conv2d -----------------------------------------------------------------------------------------
local Conv2d = class("Conv2d")
M.Conv2d = Conv2d

--- nn.conv2d(in_channels, out_channels, kernel [, {stride = 1, padding = 0, bias = true, seed,
-- dtype = "f32"}]). kernel is k or {kh, kw}. Weight [out, in, kh, kw], bias [out];
-- x [N, in, H, W] -> [N, out, (H + 2p - kh) / s + 1, (W + 2p - kw) / s + 1].
function M.conv2d(cin, cout, k, opts)
    local who = "conv2d"
    opts = check_options(opts, {stride = true, padding = true, bias = true, seed = true,
                                dtype = true}, who)
    cin = check_posint(cin, who, "in_channels")
    cout = check_posint(cout, who, "out_channels")
    local kh, kw
    if type(k) == "table" then
        kh, kw = check_posint(k[1], who, "kernel height"), check_posint(k[2], who, "kernel width")
    else
        kh = check_posint(k, who, "kernel_size")
        kw = kh
    end
    local dtype = check_dtype(opts.dtype or "f32", who)
    local bias = opts.bias ~= false
    local m = Module.init(setmetatable({}, Conv2d))
    m.in_channels, m.out_channels, m.kh, m.kw, m.dtype = cin, cout, kh, kw, dtype
    m.stride = check_posint(opts.stride or 1, who, "stride")
    m.padding = check_nonneg_int(opts.padding or 0, who, "padding")
    local shapes = {{cout, cin, kh, kw}}
    if bias then shapes[2] = {cout} end
    local t = init_uniform(shapes, 1 / math.sqrt(cin * kh * kw), dtype, check_seed(opts.seed, who))
    m:add_parameter("weight", t[1])
    if bias then m:add_parameter("bias", t[2]) end
    return m
end

function Conv2d:forward(x)
    check_input(x, "Conv2d")
    check_input_dtype(x, self.weight.dtype, "Conv2d")
    if x.ndim ~= 4 or x:size(2) ~= self.in_channels then
        fail("Conv2d(%d -> %d): input %s should be [N x %d x H x W]", self.in_channels,
             self.out_channels, shape_str(x), self.in_channels)
    end
    if ls.conv2d == nil then fail("Conv2d: the conv2d op is not available in this build") end
    local y = ls.conv2d(x, self.weight, self.stride, self.padding)
    if self.bias then y = y + self.bias:reshape(1, self.out_channels, 1, 1) end
    return y
end

function Conv2d:extra_repr()
    local s = string.format("%d, %d, kernel_size=(%d, %d), stride=(%d, %d)", self.in_channels,
                            self.out_channels, self.kh, self.kw, self.stride, self.stride)
    if self.padding ~= 0 then
        s = s .. string.format(", padding=(%d, %d)", self.padding, self.padding)
    end
    if not self.bias then s = s .. ", bias=False" end
    return s
end

-- BatchNorm --------------------------------------------------------------------------------------
-- Train mode: y = (x - mean) / sqrt(var + eps) * weight + bias with the batch mean and the biased
-- batch variance over every dim but the channel dim 2; then, outside the graph,
--   running_mean = (1 - momentum) running_mean + momentum mean
--   running_var  = (1 - momentum) running_var  + momentum var * n / (n - 1)   (unbiased, as torch)
--   num_batches_tracked += 1
-- Eval mode: the same formula with running_mean and running_var (constants). Both modes are recorded
-- ops, so gradients and Hessian-vector products go through the normalisation.
local BatchNorm = class("BatchNorm")

local function make_batchnorm(cls, who, n, opts)
    opts = check_options(opts, {eps = true, momentum = true, affine = true, dtype = true}, who)
    n = check_posint(n, who, "num_features")
    local dtype = check_dtype(opts.dtype or "f32", who)
    local m = Module.init(setmetatable({}, cls))
    m.num_features, m.dtype = n, dtype
    m.eps = opts.eps or 1e-5
    m.momentum = opts.momentum or 0.1
    if type(m.eps) ~= "number" or m.eps < 0 then
        fail("%s: eps must be a number >= 0, got %s", who, tostring(m.eps))
    end
    if type(m.momentum) ~= "number" or m.momentum < 0 or m.momentum > 1 then
        fail("%s: momentum must be a number in [0, 1], got %s", who, tostring(m.momentum))
    end
    m.affine = opts.affine ~= false
    if m.affine then
        m:add_parameter("weight", ls.ones({n}, {dtype = dtype}):requires_grad())
        m:add_parameter("bias", ls.zeros({n}, {dtype = dtype}):requires_grad())
    end
    m:add_buffer("running_mean", ls.zeros({n}, {dtype = dtype}))
    m:add_buffer("running_var", ls.ones({n}, {dtype = dtype}))
    m:add_buffer("num_batches_tracked", ls.tensor(0, {dtype = "i64"}))
    return m
end

function BatchNorm:forward(x)
    check_input(x, self._type)
    check_input_dtype(x, self.running_mean.dtype, self._type)
    local nd = x.ndim
    if not self._ndims[nd] or x:size(2) ~= self.num_features then
        fail("%s(%d): input %s should be %s", self._type, self.num_features, shape_str(x),
             self._expect:gsub("C", tostring(self.num_features)))
    end
    local dims, bshape = {1}, {1, self.num_features}
    for d = 3, nd do
        dims[#dims + 1] = d
        bshape[d] = 1
    end
    local mean, var
    if self.training then
        local count = x:numel() // self.num_features
        if count <= 1 then
            fail("%s(%d): expected more than 1 value per channel when training, got input %s",
                 self._type, self.num_features, shape_str(x))
        end
        mean = x:mean(dims, true)
        var = x:var(dims, true, 0)
        if not self.frozen_stats then
            local mom = self.momentum
            ls.no_grad(function()
                local bm = mean:detach():reshape(self.num_features)
                local bv = var:detach():reshape(self.num_features) * (count / (count - 1))
                self.running_mean:copy(self.running_mean * (1 - mom) + bm * mom)
                self.running_var:copy(self.running_var * (1 - mom) + bv * mom)
                self.num_batches_tracked:fill(self.num_batches_tracked:item() + 1)
            end)
        end
    else
        mean = self.running_mean:reshape(bshape)
        var = self.running_var:reshape(bshape)
    end
    -- (x - mean) * scale + bias with scale = weight / sqrt(var + eps) formed on the [C] statistics
    -- first: three passes over x instead of four. (x * scale + (bias - mean * scale) would save
    -- one more, but loses precision when |mean| >> std.)
    local scale = (var + self.eps):sqrt()
    if self.affine then
        scale = self.weight:reshape(bshape) / scale
    else
        scale = 1 / scale
    end
    local y = (x - mean) * scale
    if self.affine then y = y + self.bias:reshape(bshape) end
    return y
end

function BatchNorm:extra_repr()
    return string.format("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=True",
                         self.num_features, fmt_num(self.eps), fmt_num(self.momentum),
                         self.affine and "True" or "False")
end

local BatchNorm1d = class("BatchNorm1d", BatchNorm)
BatchNorm1d._ndims = {[2] = true, [3] = true}
BatchNorm1d._expect = "[N x C] or [N x C x L]"
M.BatchNorm1d = BatchNorm1d
local BatchNorm2d = class("BatchNorm2d", BatchNorm)
BatchNorm2d._ndims = {[4] = true}
BatchNorm2d._expect = "[N x C x H x W]"
M.BatchNorm2d = BatchNorm2d

--- nn.batchnorm1d(num_features [, {eps = 1e-5, momentum = 0.1, affine = true, dtype = "f32"}])
-- x [N, C] or [N, C, L]; statistics over every dim but dim 2.
function M.batchnorm1d(n, opts) return make_batchnorm(BatchNorm1d, "batchnorm1d", n, opts) end
--- nn.batchnorm2d(num_features [, opts as batchnorm1d]): x [N, C, H, W].
function M.batchnorm2d(n, opts) return make_batchnorm(BatchNorm2d, "batchnorm2d", n, opts) end

-- Activations and parameter-free layers ------------------------------------------------------------
local function simple(name, fwd, repr)
    local cls = class(name)
    cls.forward = function(self, x) return fwd(self, check_input(x, name)) end
    if repr then cls.extra_repr = repr end
    M[name] = cls
    return cls
end

local ReLU = simple("ReLU", function(_, x) return x:relu() end)
local Tanh = simple("Tanh", function(_, x) return x:tanh() end)
local Sigmoid = simple("Sigmoid", function(_, x) return x:sigmoid() end)
local Identity = simple("Identity", function(_, x) return x end)

--- nn.relu(), nn.tanh(), nn.sigmoid(), nn.identity()
function M.relu() return Module.init(setmetatable({}, ReLU)) end
function M.tanh() return Module.init(setmetatable({}, Tanh)) end
function M.sigmoid() return Module.init(setmetatable({}, Sigmoid)) end
function M.identity() return Module.init(setmetatable({}, Identity)) end

-- leaky_relu(x) = x where x > 0, slope * x elsewhere: torch's gradient, slope at x = 0 included.
local LeakyReLU = simple("LeakyReLU", function(self, x)
    return ls.where(x:gt(0), x, x * self.negative_slope)
end, function(self) return "negative_slope=" .. fmt_num(self.negative_slope) end)

--- nn.leaky_relu([negative_slope = 0.01])
function M.leaky_relu(slope)
    if slope ~= nil and type(slope) ~= "number" then
        fail("leaky_relu: negative_slope must be a number, got %s", type(slope))
    end
    local m = Module.init(setmetatable({}, LeakyReLU))
    m.negative_slope = slope or 0.01
    return m
end

-- torch.nn.Softplus(beta, threshold): log(1 + e^(beta x)) / beta, and x itself where
-- beta x > threshold (so the values and gradients match torch's exactly there too).
local Softplus = simple("Softplus", function(self, x)
    local bx = self.beta == 1 and x or x * self.beta
    local sp = bx:softplus()
    if self.beta ~= 1 then sp = sp / self.beta end
    return ls.where(bx:gt(self.threshold), x, sp)
end, function(self)
    return string.format("beta=%s, threshold=%s", fmt_num(self.beta), fmt_num(self.threshold))
end)

--- nn.softplus([{beta = 1, threshold = 20}])
function M.softplus(opts)
    opts = check_options(opts, {beta = true, threshold = true}, "softplus")
    local m = Module.init(setmetatable({}, Softplus))
    m.beta, m.threshold = opts.beta or 1, opts.threshold or 20
    if type(m.beta) ~= "number" or m.beta <= 0 then
        fail("softplus: beta must be a positive number, got %s", tostring(m.beta))
    end
    return m
end

-- GELU. Exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), torch's default; needs an `erf` op, which
-- the engine does not have yet (ls.erf): until it lands, gelu() raises and gelu{approximate = "tanh"}
-- (torch's GELU(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))) works.
local GELU = simple("GELU", function(self, x)
    if self.approximate == "tanh" then
        local inner = (x + (x ^ 3) * 0.044715) * math.sqrt(2 / math.pi)
        return x * (inner:tanh() + 1) * 0.5
    end
    if ls.erf == nil then
        fail("GELU: exact GELU needs the erf op, which this build lacks; use " ..
             "nn.gelu{approximate = \"tanh\"}")
    end
    return x * ((x * (1 / math.sqrt(2))):erf() + 1) * 0.5
end, function(self) return "approximate='" .. self.approximate .. "'" end)

--- nn.gelu([{approximate = "none"}]): "none" (exact, needs the erf op) or "tanh".
function M.gelu(opts)
    opts = check_options(opts, {approximate = true}, "gelu")
    local a = opts.approximate or "none"
    if a ~= "none" and a ~= "tanh" then
        fail("gelu: approximate must be \"none\" or \"tanh\", got %s", tostring(a))
    end
    if a == "none" and ls.erf == nil then
        fail("gelu: exact GELU needs the erf op, which this build lacks; use " ..
             "nn.gelu{approximate = \"tanh\"}")
    end
    local m = Module.init(setmetatable({}, GELU))
    m.approximate = a
    return m
end

-- Pooling ------------------------------------------------------------------------------------------
local MaxPool2d = simple("MaxPool2d", function(self, x)
    if x.ndim ~= 4 then fail("MaxPool2d: input %s should be [N x C x H x W]", shape_str(x)) end
    return ls.maxpool2d(x, self.kernel_size, self.stride)
end, function(self)
    return string.format("kernel_size=%d, stride=%d, padding=0, dilation=1, ceil_mode=False",
                         self.kernel_size, self.stride)
end)

local AvgPool2d = simple("AvgPool2d", function(self, x)
    if x.ndim ~= 4 then fail("AvgPool2d: input %s should be [N x C x H x W]", shape_str(x)) end
    return ls.avgpool2d(x, self.kernel_size, self.stride)
end, function(self)
    return string.format("kernel_size=%d, stride=%d, padding=0", self.kernel_size, self.stride)
end)

local function make_pool(cls, who, k, stride)
    local m = Module.init(setmetatable({}, cls))
    m.kernel_size = check_posint(k, who, "kernel_size")
    m.stride = stride == nil and m.kernel_size or check_posint(stride, who, "stride")
    return m
end

--- nn.maxpool2d(kernel [, stride = kernel]), nn.avgpool2d(kernel [, stride = kernel]): square
-- windows, no padding; [N, C, H, W] -> [N, C, (H - k) / s + 1, (W - k) / s + 1].
function M.maxpool2d(k, stride) return make_pool(MaxPool2d, "maxpool2d", k, stride) end
function M.avgpool2d(k, stride) return make_pool(AvgPool2d, "avgpool2d", k, stride) end

local GlobalAvgPool = simple("GlobalAvgPool", function(_, x)
    if x.ndim ~= 4 then fail("GlobalAvgPool: input %s should be [N x C x H x W]", shape_str(x)) end
    return x:mean({3, 4})
end)
--- nn.global_avgpool(): [N, C, H, W] -> [N, C], the mean over H and W (torch:
-- AdaptiveAvgPool2d(1) followed by Flatten, as one module).
function M.global_avgpool() return Module.init(setmetatable({}, GlobalAvgPool)) end

local Flatten = simple("Flatten", function(_, x)
    if x.ndim < 1 then fail("Flatten: input %s should have a batch dim", shape_str(x)) end
    return x:reshape(x:size(1), -1)
end)
--- nn.flatten(): [N, ...] -> [N, prod(...)] (torch.nn.Flatten(): dim 1 kept).
function M.flatten() return Module.init(setmetatable({}, Flatten)) end

-- Dropout ----------------------------------------------------------------------------------------
-- Train mode: y = x * mask / (1 - p) with mask[i] = (u[i] >= p), u uniform on [0, 1) in x's dtype,
-- so each element is kept with probability 1 - p. With a seed, the k-th training forward (k = 0,
-- 1, ...; m.calls) draws u from a fresh stream with seed  seed * 2^32 + k: the masks are a function
-- of (seed, k) only. Without a seed, from the global stream. Eval mode: the identity.
local Dropout = simple("Dropout", function(self, x)
    if not self.training or self.p == 0 then return x end
    if self.p == 1 then return x * 0 end
    local opts = {dtype = x.dtype}
    if self.seed then opts.seed = (self.seed << 32) + self.calls end
    self.calls = self.calls + 1
    local keep = ls.rand(x:size(), opts):ge(self.p) * (1 / (1 - self.p))
    return x * keep
end, function(self) return "p=" .. fmt_num(self.p) .. ", inplace=False" end)

--- nn.dropout([p = 0.5] [, {seed}])
function M.dropout(p, opts)
    if type(p) == "table" and opts == nil then p, opts = nil, p end
    opts = check_options(opts, {seed = true}, "dropout")
    p = p or 0.5
    if type(p) ~= "number" or p < 0 or p > 1 then
        fail("dropout: p must be a probability in [0, 1], got %s", tostring(p))
    end
    local m = Module.init(setmetatable({}, Dropout))
    m.p, m.seed, m.calls = p, check_seed(opts.seed, "dropout"), 0
    return m
end

-- Sequential -------------------------------------------------------------------------------------
local Sequential = class("Sequential")
M.Sequential = Sequential

local function check_module(m, who, i)
    if type(m) ~= "table" or type(m.forward) ~= "function" or m._children == nil then
        fail("%s: element %d is not a module (got %s)", who, i, type(m))
    end
end

--- nn.sequential{m1, m2, ...}: children named "0", "1", ... (torch.nn.Sequential's names).
function M.sequential(list)
    list = list or {}
    if type(list) ~= "table" or getmetatable(list) ~= nil then
        fail("sequential: expected a list of modules")
    end
    local s = Module.init(setmetatable({}, Sequential))
    for i, m in ipairs(list) do
        check_module(m, "sequential", i)
        s._children[i] = {tostring(i - 1), m}
    end
    return s
end

--- s:add(m): append m (named by its 0-based position); returns s.
function Sequential:add(m)
    check_module(m, "add", #self._children + 1)
    self._children[#self._children + 1] = {tostring(#self._children), m}
    return self
end

--- s:get(i): the i-th child (1-based, as Lua indexes; its state-dict name is i - 1).
function Sequential:get(i)
    local c = self._children[i]
    if not c then fail("get: index %s out of range (the Sequential has %d modules)", tostring(i),
                       #self._children) end
    return c[2]
end

function Sequential:size() return #self._children end
Sequential.__len = Sequential.size

function Sequential:forward(x)
    for _, c in ipairs(self._children) do x = c[2]:forward(x) end
    return x
end
Sequential.add = public(Sequential.add)
Sequential.get = public(Sequential.get)

-- The unwrapped constructors, for use inside this module and by models.lua (filled at the end).
local raw = {}

-- BasicBlock -------------------------------------------------------------------------------------
-- The ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), conv 3x3 (padding
-- 1, the first with the block's stride). The shortcut is the identity (an empty Sequential, no
-- parameters) when the shape is kept, else a 1x1 convolution with the stride followed by batch
-- norm (shortcut.0, shortcut.1). Convolutions followed by batch norm have no bias. batchnorm = false
-- drops bn1, bn2 and shortcut.1 and gives the convolutions a bias; skip = false drops the shortcut.
local BasicBlock = class("BasicBlock")
M.BasicBlock = BasicBlock

--- nn.basic_block(in_channels, out_channels [, {stride = 1, batchnorm = true, skip = true, seed,
-- dtype = "f32"}]). With a seed s, conv1, conv2 and the shortcut convolution are initialised with
-- seeds s, s + 1, s + 2; without one, from the global stream in that order.
function M.basic_block(cin, cout, opts)
    local who = "basic_block"
    opts = check_options(opts, {stride = true, batchnorm = true, skip = true, seed = true,
                                dtype = true}, who)
    cin = check_posint(cin, who, "in_channels")
    cout = check_posint(cout, who, "out_channels")
    local stride = check_posint(opts.stride or 1, who, "stride")
    local bn = opts.batchnorm ~= false
    local skip = opts.skip ~= false
    local dtype = check_dtype(opts.dtype or "f32", who)
    local seed = check_seed(opts.seed, who)
    local function s(k) return seed and seed + k or nil end
    local b = Module.init(setmetatable({}, BasicBlock))
    b.in_channels, b.out_channels, b.stride = cin, cout, stride
    b.batchnorm, b.skip = bn, skip
    b:add_child("conv1", raw.conv2d(cin, cout, 3, {stride = stride, padding = 1, bias = not bn,
                                                 seed = s(0), dtype = dtype}))
    if bn then b:add_child("bn1", raw.batchnorm2d(cout, {dtype = dtype})) end
    b:add_child("conv2", raw.conv2d(cout, cout, 3, {padding = 1, bias = not bn, seed = s(1),
                                                  dtype = dtype}))
    if bn then b:add_child("bn2", raw.batchnorm2d(cout, {dtype = dtype})) end
    if skip then
        local sc = raw.sequential{}
        if stride ~= 1 or cin ~= cout then
            sc:add(raw.conv2d(cin, cout, 1, {stride = stride, bias = not bn, seed = s(2),
                                           dtype = dtype}))
            if bn then sc:add(raw.batchnorm2d(cout, {dtype = dtype})) end
        end
        b:add_child("shortcut", sc)
    end
    return b
end

function BasicBlock:forward(x)
    local out = self.conv1:forward(x)
    if self.bn1 then out = self.bn1:forward(out) end
    out = out:relu()
    out = self.conv2:forward(out)
    if self.bn2 then out = self.bn2:forward(out) end
    if self.shortcut then out = out + self.shortcut:forward(x) end
    return out:relu()
end

-- Public constructors: errors point at the caller's line.
for _, name in ipairs({"linear", "conv2d", "batchnorm1d", "batchnorm2d", "leaky_relu", "softplus",
                       "gelu", "maxpool2d", "avgpool2d", "dropout", "sequential", "basic_block"}) do
    raw[name] = M[name]
    M[name] = public(M[name])
end

-- Helpers shared with lualib/landscape/models.lua (internal).
M._util = {fail = fail, public = public, check_options = check_options, check_posint = check_posint,
           check_dtype = check_dtype, check_seed = check_seed, raw = raw}

---------------------------------------------------------------------------------------------------
-- Model builders (lualib/landscape/models.lua): nn.mlp{...}, nn.cnn{...}, nn.resnet{...}
---------------------------------------------------------------------------------------------------
local models = require "landscape.models"
M.mlp = models.mlp
M.cnn = models.cnn
M.resnet = models.resnet

return M
