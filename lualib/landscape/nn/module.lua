--- landscape.nn.module: the module protocol of ls.nn (the base class Module, nn.class, state dicts,
-- safetensors, modes) and the kit the layers are built with (initialisation, input checks). The
-- layers (nn/layers.lua) and builders (nn/models.lua) import it; nn/init.lua puts the public face
-- together. The protocol (every module):
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

-- Errors are raised without a position (util.fail); nn/init.lua wraps the public entry points so
-- that a message points at the caller's line: "train.lua:12: linear: in_features must be ...".
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
-- e.g. local Scale = ls.nn.class("Scale"); function Scale:forward(x) return x * 2 end
function M.class(name, parent)
    parent = parent or Module
    local cls = {}
    cls.__index = cls
    cls.__call = module_call
    cls.__tostring = module_tostring
    cls.__name = "landscape.nn." .. name
    cls._type = name
    -- m.forward(x), a dot for a colon, passes x as self: each forward defined on the class first
    -- checks that self is a module, so the error says so instead of "attempt to index a nil value".
    return setmetatable(cls, {__index = parent, __newindex = function(c, k, v)
        if k == "forward" and type(v) == "function" then
            local fwd = v
            v = function(self, ...)
                if type(self) ~= "table" or self._children == nil then
                    error(string.format("%s.forward: self is a %s, not a module (a method call "
                                        .. "needs a colon: m:forward(x))", name,
                                        ls.is_tensor(self) and "Tensor" or type(self)), 2)
                end
                return fwd(self, ...)
            end
        end
        rawset(c, k, v)
    end})
end
local class = M.class

--- Module.init(self): the fields every module has. Returns self.
-- Initialises the fields every module has (parameters, buffers, children, training flag); a
-- custom module's constructor calls it.
-- e.g. function Scale.new() return ls.nn.Module.init(setmetatable({}, Scale)) end
function Module.init(self)
    self.training = true
    self._params = {}
    self._buffers = {}
    self._children = {}
    return self
end

--- module:add_parameter(name, tensor)
-- Registers a tensor as a parameter under a name (self[name], and in the state dict, the
-- optimizers' lists and the objective's selection); for custom modules.
-- e.g. self:add_parameter("weight", ls.randn({3, 4}, {seed = 1}))
function Module:add_parameter(name, t)
    self._params[#self._params + 1] = name
    self[name] = t
end

--- module:add_buffer(name, tensor)
-- Registers a tensor that is part of the state dict but not a parameter (running statistics);
-- for custom modules.
-- e.g. self:add_buffer("running_mean", ls.zeros(n))
function Module:add_buffer(name, t)
    self._buffers[#self._buffers + 1] = name
    self[name] = t
end

-- A named child: also reachable as self[name].
--- module:add_child(name, module)
-- Registers a submodule under a name (its parameters are prefixed with it); for custom modules.
-- e.g. self:add_child("fc", ls.nn.linear(4, 2))
function Module:add_child(name, m)
    self._children[#self._children + 1] = {name, m}
    self[name] = m
end

--- module:forward(x) -> output
-- The module's output for x (also m(x)); records the graph when grad mode is on. Every layer and
-- container defines it; a custom module (ls.nn.class) must define its own.
-- e.g. local y = ls.nn.linear(4, 2):forward(ls.randn({3, 4}))
function Module:forward()
    fail("%s: this module has no forward(x); a custom module (ls.nn.class) must define one", self._type)
end

--- module:extra_repr() -> string
-- The text between the parentheses of a module's printed form (override it in custom modules).
-- e.g. print(ls.nn.linear(4, 2):extra_repr())
function Module:extra_repr() return "" end

-- torch's repr: "Name(extra)" for a leaf, children indented on their own lines otherwise.
--- module:repr() -> string
-- The module's printed form, nested like torch's (also tostring(module)).
-- e.g. print(model:repr())
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

--- module:named_parameters() -> list of {name, tensor}
-- The parameters with their state-dict names (torch's: "0.weight", ...), as {name, tensor}
-- pairs.
-- e.g. for _, e in ipairs(model:named_parameters()) do print(e[1], e[2]:numel()) end
function Module:named_parameters()
    local out = named_list()
    walk(self, "", function(m, prefix)
        for _, n in ipairs(m._params) do named_add(out, prefix .. n, m[n]) end
    end)
    return out
end

--- module:parameters() -> list of tensors
-- The parameters of the module and its children, in state-dict order.
-- e.g. local opt = ls.optim.sgd(model:parameters(), {lr = 0.1})
function Module:parameters()
    local out = {}
    for i, e in ipairs(self:named_parameters()) do out[i] = e[2] end
    return out
end

--- module:named_buffers() -> list of {name, tensor}
-- The buffers with their state-dict names, as {name, tensor} pairs.
-- e.g. for _, e in ipairs(model:named_buffers()) do print(e[1]) end
function Module:named_buffers()
    local out = named_list()
    walk(self, "", function(m, prefix)
        for _, n in ipairs(m._buffers) do named_add(out, prefix .. n, m[n]) end
    end)
    return out
end

--- module:buffers() -> list of tensors
-- The buffers (running statistics) of the module and its children, in state-dict order.
-- e.g. for _, b in ipairs(model:buffers()) do print(b:size()) end
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
-- e.g. for _, e in ipairs(model:state_dict()) do print(e[1], e[2]:size()) end
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
-- e.g. model:load_state_dict(other:state_dict())
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
-- e.g. model:save("out/model.safetensors", {epoch = 10})
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
-- Loads a safetensors state dict (torch's names) into model's parameters and buffers; strict =
-- true refuses missing or extra names, cast = true converts dtypes.
-- e.g. local m, meta = ls.nn.load_into(ls.nn.mlp{}, "out/mlp_s1.safetensors")
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
-- Switches the module and its children to training mode (or evaluation mode with false);
-- returns the module.
-- e.g. model:train()
function Module:train(on)
    if on == nil then on = true end
    local flag = on and true or false
    walk(self, "", function(m) m.training = flag end)
    return self
end

--- module:eval() -> module
-- Switches the module and its children to evaluation mode (batch norm uses running statistics,
-- dropout is off); returns the module.
-- e.g. model:eval()
function Module:eval() return self:train(false) end

--- m:freeze_running_stats([on = true]): while on, train-mode forwards of every batch-norm module
-- in m still normalise with batch statistics but leave running_mean, running_var and
-- num_batches_tracked alone (for curvature probes in train mode that must not move the statistics
-- eval mode uses). Not a torch feature; not saved in the state dict. Returns m.
-- e.g. model:freeze_running_stats(true)
function Module:freeze_running_stats(on)
    if on == nil then on = true end
    walk(self, "", function(m)
        if m.running_mean ~= nil then m.frozen_stats = on and true or nil end
    end)
    return self
end

--- m:zero_grad(): drop the accumulated .grad of every parameter.
-- Clears the .grad of every parameter.
-- e.g. model:zero_grad()
function Module:zero_grad()
    for _, p in ipairs(self:parameters()) do p:zero_grad() end
    return self
end

--- m:num_parameters() -> number of scalar parameters (buffers not counted).
-- The number of scalar parameters.
-- e.g. print(model:num_parameters())
function Module:num_parameters()
    local n = 0
    for _, p in ipairs(self:parameters()) do n = n + p:numel() end
    return n
end

--- module:children() -> list
-- The direct submodules, in order.
-- e.g. for _, c in ipairs(model:children()) do print(c) end
function Module:children()
    local out = {}
    for i, c in ipairs(self._children) do out[i] = c[2] end
    return out
end

--- module:named_children() -> list of {name, module}
-- The direct submodules with their names, as {name, module} pairs.
-- e.g. for _, e in ipairs(model:named_children()) do print(e[1]) end
function Module:named_children()
    local out = named_list()
    for _, c in ipairs(self._children) do named_add(out, c[1], c[2]) end
    return out
end

--- m:modules() -> every module, m first, in pre-order.
-- The module and all its descendants, depth first.
-- e.g. for _, m in ipairs(model:modules()) do print(m) end
function Module:modules()
    local out = {}
    walk(self, "", function(m) out[#out + 1] = m end)
    return out
end

--- m:apply(fn): fn(module) for every module in pre-order; returns m.
-- Calls fn on the module and every descendant (depth first), e.g. to change initialisations.
-- e.g. model:apply(function(m) if m.weight then m.weight:fill(0) end end)
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
-- A deep copy: the same architecture with copies of the parameters and buffers.
-- e.g. local m2 = model:clone()
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
-- e.g. local w = model:flatten_parameters()
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
-- e.g. model:set_flat_parameters(model:flatten_parameters() * 0.5)
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
-- e.g. local m64 = model:to("f64")
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

-- The kit of nn/layers.lua and nn/models.lua.
M.check_dtype, M.check_seed, M.check_input, M.check_input_dtype = check_dtype, check_seed,
    check_input, check_input_dtype
M.fmt_num, M.init_uniform = fmt_num, init_uniform

return M
