--- landscape.optim (ls.optim): optimizers, learning-rate schedules and gradient clipping.
--
--   local opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9, weight_decay = 5e-4})
--   local sched = ls.optim.schedule.cosine(opt, {t_max = epochs})
--   for epoch = 1, epochs do
--     for x, y in batches do
--       opt:zero_grad()
--       ls.cross_entropy(model:forward(x), y):backward()
--       ls.optim.clip_grad_norm(model, 5)      -- optional
--       opt:step()
--     end
--     sched:step()
--   end
--
-- The updates are PyTorch's (torch.optim.SGD, Adam, AdamW, 1.13 single-tensor path) operation for
-- operation; in float64 they agree with torch to rounding. The arithmetic runs in C
-- (engine/optim/optim.c) on the parameters' storage, outside the autograd graph (like torch's
-- no_grad): a leaf parameter stays a leaf, and nothing is recorded.
--
-- `params` everywhere is a list of tensors that require grad (leaves), a single such tensor, or any
-- object with a `parameters()` method returning such a list (a model). One parameter group per
-- optimizer: every hyperparameter is a field of the optimizer (opt.lr, opt.momentum, ...) read at
-- each step, so changing a field changes the following steps, as editing torch's param_groups does.
--
-- Errors (a wrong option type, a negative learning rate, an empty parameter list, a tensor without
-- requires_grad, a gradient whose shape does not match its parameter) are raised as Lua errors that
-- name the optimizer and point at the caller's line.
local ls = require "landscape"
local util = require "landscape.util"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options, util.shape_str

local C = ls._optim

local M = {}

-- Errors inside this module are raised without a position (level 0); each public function runs its
-- body under pcall and re-raises at level 2, so the message points at the user's call:
-- "train.lua:12: sgd: invalid learning rate -1 (must be >= 0)".



local function is_finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

local function check_number(v, key, who)
    if type(v) ~= "number" then
        fail("%s: option '%s' must be a number, got %s", who, key, type(v))
    end
    return v
end

local function check_nonneg(v, key, who, what)
    check_number(v, key, who)
    if not is_finite(v) or v < 0 then
        fail("%s: invalid %s %s (must be finite and >= 0)", who, what or key, tostring(v))
    end
    return v
end

local function check_boolean(v, key, who)
    if type(v) ~= "boolean" then
        fail("%s: option '%s' must be a boolean, got %s", who, key, type(v))
    end
    return v
end

local function check_integer(v, key, who, min)
    if math.type(v) ~= "integer" then
        fail("%s: option '%s' must be an integer, got %s", who, key,
             type(v) == "number" and tostring(v) or type(v))
    end
    if v < min then fail("%s: option '%s' must be >= %d, got %d", who, key, min, v) end
    return v
end


-- params -> a fresh list of tensors, checked: non-empty, tensors, requiring grad, leaves, distinct.
local function param_list(params, who)
    local list
    if ls.is_tensor(params) then
        list = {params}
    elseif type(params) == "table" or type(params) == "userdata" then
        local get = params.parameters
        if type(get) == "function" then
            list = get(params)
            if type(list) ~= "table" then
                fail("%s: parameters() returned %s, expected a list of tensors", who, type(list))
            end
        elseif type(params) == "table" then
            list = params
        end
    end
    if list == nil then
        fail("%s: params must be a list of tensors or an object with a parameters() method, got %s",
             who, type(params))
    end
    local out, seen = {}, {}
    for i = 1, #list do
        local p = list[i]
        if not ls.is_tensor(p) then
            fail("%s: params[%d] is not a tensor (got %s)", who, i, type(p))
        end
        if not p.needs_grad then
            fail("%s: params[%d] %s does not require grad (call :requires_grad() on it)", who, i,
                 shape_str(p))
        end
        if not p.is_leaf then
            fail("%s: params[%d] is not a leaf tensor (it has a grad_fn)", who, i)
        end
        local id = C.id(p)
        if seen[id] then fail("%s: params[%d] is the same tensor as params[%d]", who, i, seen[id]) end
        seen[id] = i
        out[i] = p
    end
    if #out == 0 then fail("%s: got an empty parameter list", who) end
    return out
end

-- ================================================================================================
-- Optimizers
-- ================================================================================================

local Optimizer = {}
Optimizer.__index = Optimizer
Optimizer.__name = "landscape.Optimizer"

-- Per kind: the option names with their defaults, and a validator that checks the values held in a
-- table (the options at construction, the optimizer itself before each step, a loaded config).
local KINDS = {}

KINDS.sgd = {
    defaults = {lr = 1e-3, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false},
    validate = function(c, who)
        check_nonneg(c.lr, "lr", who, "learning rate")
        check_nonneg(c.momentum, "momentum", who)
        check_number(c.dampening, "dampening", who)
        if not is_finite(c.dampening) then
            fail("%s: invalid dampening %s", who, tostring(c.dampening))
        end
        check_nonneg(c.weight_decay, "weight_decay", who)
        check_boolean(c.nesterov, "nesterov", who)
        if c.nesterov and (c.momentum <= 0 or c.dampening ~= 0) then
            fail("%s: Nesterov momentum requires a momentum and zero dampening", who)
        end
    end,
}

local function validate_adam(c, who)
    check_nonneg(c.lr, "lr", who, "learning rate")
    if type(c.betas) ~= "table" or #c.betas ~= 2 then
        fail("%s: option 'betas' must be a list of two numbers, got %s", who, type(c.betas))
    end
    for i = 1, 2 do
        local b = c.betas[i]
        if type(b) ~= "number" then
            fail("%s: betas[%d] must be a number, got %s", who, i, type(b))
        end
        if not (b >= 0 and b < 1) then
            fail("%s: invalid beta parameter at index %d: %s (must be in [0, 1))", who, i,
                 tostring(b))
        end
    end
    check_nonneg(c.eps, "eps", who, "epsilon value")
    check_nonneg(c.weight_decay, "weight_decay", who, "weight_decay value")
    check_boolean(c.amsgrad, "amsgrad", who)
end

KINDS.adam = {
    defaults = {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, amsgrad = false},
    validate = validate_adam,
}
KINDS.adamw = {
    defaults = {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 1e-2, amsgrad = false},
    validate = validate_adam,
}

local function copy_value(v)
    if type(v) == "table" then return {table.unpack(v)} end
    return v
end

local function new_optimizer(kind, params, opts)
    local spec = KINDS[kind]
    local list = param_list(params, kind)
    check_options(opts, spec.defaults, kind)
    local self = setmetatable({kind = kind, params = list, state = {}}, Optimizer)
    for k, def in pairs(spec.defaults) do
        local v = opts and opts[k]
        if v == nil then v = def end
        self[k] = copy_value(v)
    end
    spec.validate(self, kind)
    return self
end

--- ls.optim.sgd(params, {lr, momentum, dampening, weight_decay, nesterov}) -> optimizer
-- Stochastic gradient descent with momentum, as torch.optim.SGD.
--   lr           = 1e-3   learning rate (>= 0)
--   momentum     = 0      momentum factor (>= 0); 0 keeps no buffer
--   dampening    = 0      dampening of the momentum: buf = momentum*buf + (1 - dampening)*d
--   weight_decay = 0      L2 penalty: d = grad + weight_decay*p
--   nesterov     = false  Nesterov momentum (needs momentum > 0 and dampening == 0)
-- Each step, for every parameter p with a gradient g:
--   d = g + weight_decay*p
--   buf = d on the first step, else momentum*buf + (1 - dampening)*d   (when momentum ~= 0)
--   d = d + momentum*buf (nesterov) or buf                            (when momentum ~= 0)
--   p = p - lr*d
-- State per parameter: momentum_buffer (when momentum ~= 0).
-- e.g. local opt = ls.optim.sgd(model, {lr = 0.1, momentum = 0.9, weight_decay = 5e-4})
M.sgd = public(function(params, opts) return new_optimizer("sgd", params, opts) end)

--- ls.optim.adam(params, {lr, betas, eps, weight_decay, amsgrad}) -> optimizer
-- Adam, as torch.optim.Adam.
--   lr           = 1e-3          learning rate (>= 0)
--   betas        = {0.9, 0.999}  decay rates of the first and second moment averages, in [0, 1)
--   eps          = 1e-8          added to the denominator, outside the square root
--   weight_decay = 0             L2 penalty added to the gradient: g = g + weight_decay*p
--   amsgrad      = false         use the running maximum of the second moment (AMSGrad)
-- Each step t (counted per parameter, from 1), with g = grad + weight_decay*p:
--   m = beta1*m + (1 - beta1)*g;   v = beta2*v + (1 - beta2)*g*g;   vmax = max(vmax, v) (amsgrad)
--   p = p - lr/(1 - beta1^t) * m / (sqrt(v or vmax)/sqrt(1 - beta2^t) + eps)
-- State per parameter: step, exp_avg (m), exp_avg_sq (v), max_exp_avg_sq (amsgrad).
-- e.g. local opt = ls.optim.adam(model, {lr = 1e-3})
M.adam = public(function(params, opts) return new_optimizer("adam", params, opts) end)

--- ls.optim.adamw(params, {lr, betas, eps, weight_decay, amsgrad}) -> optimizer
-- Adam with decoupled weight decay, as torch.optim.AdamW. Keys as for adam, except:
--   weight_decay = 1e-2   decoupled decay: p = p*(1 - lr*weight_decay) before the Adam update, and
--                         the gradient itself is not changed
-- e.g. local opt = ls.optim.adamw(model, {lr = 1e-3, weight_decay = 0.01})
M.adamw = public(function(params, opts) return new_optimizer("adamw", params, opts) end)

-- Each step function returns whether every parameter it updated is finite (the kernels check each
-- entry as they write it).
local function step_sgd(self)
    local mom = self.momentum
    local finite = true
    for i, p in ipairs(self.params) do
        local g = p.grad
        if g ~= nil then
            local buf, first = nil, false
            if mom ~= 0 then
                local st = self.state[i]
                if st == nil then
                    st = {}
                    self.state[i] = st
                end
                buf = st.momentum_buffer
                if buf == nil then   -- torch clones the first (decayed) gradient; the kernel fills it
                    buf = ls.zeros_like(p)
                    first = true
                end
            end
            local ok = C.sgd_step(p, g, buf, first, self.lr, mom, self.dampening,
                                  self.weight_decay, self.nesterov)
            finite = finite and ok
            if first then self.state[i].momentum_buffer = buf end   -- kept only once filled
        end
    end
    return finite
end

local function step_adam(self)
    local decoupled = self.kind == "adamw"
    local finite = true
    for i, p in ipairs(self.params) do
        local g = p.grad
        if g ~= nil then
            local st = self.state[i]
            if st == nil then
                st = {step = 0, exp_avg = ls.zeros_like(p), exp_avg_sq = ls.zeros_like(p)}
                self.state[i] = st
            end
            if self.amsgrad and st.max_exp_avg_sq == nil then st.max_exp_avg_sq = ls.zeros_like(p) end
            local t = st.step + 1
            local ok = C.adam_step(p, g, st.exp_avg, st.exp_avg_sq,
                                   self.amsgrad and st.max_exp_avg_sq or nil, t, self.lr,
                                   self.betas[1], self.betas[2], self.eps, self.weight_decay,
                                   self.amsgrad, decoupled)
            finite = finite and ok
            st.step = t   -- counted only once the update succeeded
        end
    end
    return finite
end

local function step_impl(self)
    KINDS[self.kind].validate(self, self.kind)
    self.last_step_finite = nil   -- unknown if the step fails part-way
    if self.kind == "sgd" then
        self.last_step_finite = step_sgd(self)
    else
        self.last_step_finite = step_adam(self)
    end
end

--- opt:step([closure]) -> closure's result or nil
-- One update of every parameter that has a .grad (parameters without one are skipped and keep
-- their state, as in torch). With a closure (a function that clears the gradients, computes the
-- loss, calls backward and returns the loss), it is called first and its result returned.
-- Afterwards opt.last_step_finite says whether every entry the step wrote is finite (false: some
-- parameter now holds a NaN or an infinity); the kernels check each entry as they write it, so
-- ls.train detects a diverged update without another pass over the parameters.
-- e.g. loss:backward(); opt:step(); opt:zero_grad()
Optimizer.step = public(function(self, closure)
    if getmetatable(self) ~= Optimizer then fail("step: call it as opt:step()") end
    local loss
    if closure ~= nil then
        if type(closure) ~= "function" then
            fail("%s: step's closure must be a function, got %s", self.kind, type(closure))
        end
        loss = closure()
    end
    step_impl(self)
    return loss
end)

--- opt:zero_grad(): drop every parameter's .grad (torch's zero_grad(set_to_none=True)); the next
-- backward starts the gradients afresh.
-- e.g. opt:zero_grad()
Optimizer.zero_grad = public(function(self)
    if getmetatable(self) ~= Optimizer then fail("zero_grad: call it as opt:zero_grad()") end
    for _, p in ipairs(self.params) do p.grad = nil end
end)

--- opt:parameters() -> the list of parameters (the optimizer's own list; do not modify it)
-- The tensors the optimizer updates.
-- e.g. print(#opt:parameters())
function Optimizer:parameters() return self.params end

local STATE_KEYS = {
    sgd = {"momentum_buffer"},
    adam = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    adamw = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
}

local function config_of(self)
    local cfg = {}
    for k in pairs(KINDS[self.kind].defaults) do cfg[k] = copy_value(self[k]) end
    cfg.initial_lr = self.initial_lr   -- set by a schedule, as torch's param_groups carry it
    return cfg
end

--- opt:state_dict() -> {kind, n_params, config = {lr, ...}, state = {[i] = {step, tensors...}}}
-- A snapshot: the hyperparameters (including initial_lr when a schedule set it) and, for each
-- parameter index i that has state, its step count and state tensors, cloned. Loading it into an
-- optimizer of the same kind over parameters of the same shapes continues bit for bit.
-- e.g. local saved = opt:state_dict()
function Optimizer:state_dict()
    local st = {}
    for i, s in pairs(self.state) do
        local c = {step = s.step}
        for _, k in ipairs(STATE_KEYS[self.kind]) do
            if s[k] ~= nil then c[k] = s[k]:clone() end
        end
        st[i] = c
    end
    return {kind = self.kind, n_params = #self.params, config = config_of(self), state = st}
end

local function load_state_dict(self, sd)
    local who = self.kind .. ": load_state_dict"
    if type(sd) ~= "table" then fail("%s: expected a table, got %s", who, type(sd)) end
    if sd.kind ~= self.kind then
        fail("%s: the state belongs to an optimizer of kind '%s'", who, tostring(sd.kind))
    end
    if sd.n_params ~= #self.params then
        fail("%s: the state has %s parameters, this optimizer %d", who, tostring(sd.n_params),
             #self.params)
    end
    if type(sd.config) ~= "table" or type(sd.state) ~= "table" then
        fail("%s: the state needs 'config' and 'state' tables", who)
    end
    -- check everything before changing anything
    local defaults = KINDS[self.kind].defaults
    local cfg = {}
    for k, def in pairs(defaults) do
        local v = sd.config[k]
        if v == nil then v = def end
        cfg[k] = copy_value(v)
    end
    KINDS[self.kind].validate(cfg, who)
    if sd.config.initial_lr ~= nil then check_nonneg(sd.config.initial_lr, "initial_lr", who) end
    local state = {}
    for i, s in pairs(sd.state) do
        local p = math.type(i) == "integer" and self.params[i]
        if not p then fail("%s: state for parameter %s, which does not exist", who, tostring(i)) end
        local c = {}
        if self.kind ~= "sgd" then
            if math.type(s.step) ~= "integer" or s.step < 0 then
                fail("%s: parameter %d: step must be a non-negative integer", who, i)
            end
            c.step = s.step
        end
        for _, k in ipairs(STATE_KEYS[self.kind]) do
            local t = s[k]
            if t ~= nil then
                if not ls.is_tensor(t) then
                    fail("%s: parameter %d: %s is not a tensor", who, i, k)
                end
                if shape_str(t) ~= shape_str(p) or t.dtype ~= p.dtype then
                    fail("%s: parameter %d: %s is %s %s but the parameter is %s %s", who, i, k,
                         shape_str(t), t.dtype, shape_str(p), p.dtype)
                end
                c[k] = t:clone()
            end
        end
        if self.kind ~= "sgd" and (c.exp_avg == nil or c.exp_avg_sq == nil) then
            fail("%s: parameter %d: exp_avg and exp_avg_sq are required", who, i)
        end
        state[i] = c
    end
    for k, v in pairs(cfg) do self[k] = v end
    self.initial_lr = sd.config.initial_lr
    self.state = state
end

--- opt:load_state_dict(sd): restore a state_dict (tensors cloned, so sd stays independent). Checks
-- the kind, the parameter count and every state tensor's shape and dtype before changing anything.
-- e.g. opt:load_state_dict(saved)
Optimizer.load_state_dict = public(load_state_dict)

function Optimizer:__tostring()
    local cfg = config_of(self)
    local keys = {}
    for k in pairs(cfg) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
        local v = cfg[k]
        if type(v) == "table" then v = "{" .. table.concat(v, ", ") .. "}" end
        parts[#parts + 1] = k .. " = " .. tostring(v)
    end
    return string.format("%s(%d params; %s)", self.kind, #self.params, table.concat(parts, ", "))
end

M.Optimizer = Optimizer

-- ================================================================================================
-- Gradient clipping
-- ================================================================================================

local function clip_grad_norm(params, max_norm, opts)
    local who = "clip_grad_norm"
    local list
    if ls.is_tensor(params) then
        list = {params}
    elseif (type(params) == "table" or type(params) == "userdata")
        and type(params.parameters) == "function" then
        list = params:parameters()
    elseif type(params) == "table" then
        list = params
    else
        fail("%s: params must be a tensor, a list of tensors or an object with parameters(), got %s",
             who, type(params))
    end
    if type(max_norm) ~= "number" then
        fail("%s: max_norm must be a number, got %s", who, type(max_norm))
    end
    if type(opts) == "number" or type(opts) == "string" then opts = {norm_type = opts} end
    opts = check_options(opts, {norm_type = true, error_if_nonfinite = true}, who)
    local norm_type = opts.norm_type
    if norm_type == nil then norm_type = 2 end
    if norm_type == "inf" then norm_type = math.huge end
    if type(norm_type) ~= "number" then
        fail("%s: option 'norm_type' must be a number or 'inf', got %s", who, type(norm_type))
    end
    local nonfinite = opts.error_if_nonfinite
    if nonfinite == nil then nonfinite = false end
    check_boolean(nonfinite, "error_if_nonfinite", who)
    local grads = {}
    for i = 1, #list do
        local p = list[i]
        if not ls.is_tensor(p) then
            fail("%s: params[%d] is not a tensor (got %s)", who, i, type(p))
        end
        local g = p.grad
        if g ~= nil then grads[#grads + 1] = g end
    end
    return C.clip_grad_norm(grads, max_norm, norm_type, nonfinite)
end

--- ls.optim.clip_grad_norm(params, max_norm [, opts]) -> total norm (a number)
-- torch.nn.utils.clip_grad_norm_: the norm of all the parameters' gradients taken together as one
-- vector is computed; if it exceeds max_norm, every gradient is scaled in place by
-- max_norm / (total + 1e-6). Parameters without .grad are ignored; none at all gives 0.
--   opts.norm_type          = 2      the p of the p-norm (> 0), or math.huge / "inf" for max |g|
--   opts.error_if_nonfinite = false  raise an error (and scale nothing) if the total is NaN or inf
-- opts may also be the norm_type itself. The sum is taken in double over fixed chunks, in the same
-- order for any thread count.
-- e.g. local norm = ls.optim.clip_grad_norm(model, 1.0)
M.clip_grad_norm = public(clip_grad_norm)

-- ================================================================================================
-- Learning-rate schedules
-- ================================================================================================
-- A schedule sets opt.lr. Like torch's, it is created after the optimizer, applies its epoch-0
-- rate on creation, and advances one epoch (or one iteration, as you choose to call it) per
-- sched:step(), called after opt:step(). The formulas are torch's recursive ("chainable") forms, so
-- the rates equal torch's to the last bit; the closed forms are given for reading.
-- The first schedule attached to an optimizer records opt.initial_lr = opt.lr; every schedule's base
-- rate is opt.initial_lr.

local S = {}
M.schedule = S

local Schedule = {}
Schedule.__index = Schedule
Schedule.__name = "landscape.Schedule"
Schedule._is_schedule = true

local function attach(opt, who)
    if type(opt) ~= "table" or type(opt.lr) ~= "number" then
        fail("%s: expected an optimizer (a table with a numeric lr), got %s", who, type(opt))
    end
    if opt.initial_lr == nil then opt.initial_lr = opt.lr end
end

-- torch's _LRScheduler.__init__ + _initial_step with last_epoch = -1
local function start(self)
    self.base_lr = self.optimizer.initial_lr
    self.last_epoch = -1
    self._step_count = 0
    self:step()
    return self
end

local function apply(self, lr)
    self.optimizer.lr = lr
    self._last_lr = lr
end

--- sched:step(): advance one epoch and set opt.lr.
function Schedule:step()
    self._step_count = self._step_count + 1
    self.last_epoch = self.last_epoch + 1
    apply(self, self:_get_lr())
end

-- torch's step(epoch): jump to an epoch using the closed form (used by sequential at milestones)
function Schedule:_step_to(epoch)
    self._step_count = self._step_count + 1
    self.last_epoch = epoch
    apply(self, self:_closed_form_lr())
end

--- sched:get_last_lr() -> the rate the schedule set last
function Schedule:get_last_lr() return self._last_lr end

local SCHEDULE_FIELDS = {"kind", "base_lr", "last_epoch", "_step_count", "_last_lr", "step_size",
                         "gamma", "t_max", "eta_min", "steps", "start_factor", "end_factor",
                         "milestones"}

--- sched:state_dict() -> a table of the schedule's numbers (nested for sequential)
function Schedule:state_dict()
    local sd = {}
    for _, k in ipairs(SCHEDULE_FIELDS) do sd[k] = copy_value(self[k]) end
    if self.schedulers then
        sd.schedulers = {}
        for i, s in ipairs(self.schedulers) do sd.schedulers[i] = s:state_dict() end
    end
    return sd
end

--- sched:load_state_dict(sd): restore it (the optimizer's lr comes from the optimizer's own state)
local function schedule_check(self, sd)
    if type(sd) ~= "table" or sd.kind ~= self.kind then
        fail("schedule: load_state_dict: expected the state of a '%s' schedule", self.kind)
    end
    if self.schedulers then
        if type(sd.schedulers) ~= "table" or #sd.schedulers ~= #self.schedulers then
            fail("schedule: load_state_dict: expected %d nested schedules", #self.schedulers)
        end
        for i, s in ipairs(self.schedulers) do schedule_check(s, sd.schedulers[i]) end
    end
    if math.type(sd.last_epoch) ~= "integer" or type(sd._last_lr) ~= "number" then
        fail("schedule: load_state_dict: the state has no integer last_epoch and numeric _last_lr")
    end
end

local function schedule_load(self, sd)
    for _, k in ipairs(SCHEDULE_FIELDS) do
        if sd[k] ~= nil then self[k] = copy_value(sd[k]) end
    end
    if self.schedulers then
        for i, s in ipairs(self.schedulers) do schedule_load(s, sd.schedulers[i]) end
    end
end

Schedule.load_state_dict = public(function(self, sd)
    schedule_check(self, sd)   -- everything first, so a bad state changes nothing
    schedule_load(self, sd)
end)

function Schedule:__tostring()
    return string.format("schedule.%s(epoch %d, lr %.6g)", self.kind, self.last_epoch, self._last_lr)
end

local function new_schedule(kind, opt)
    return setmetatable({kind = kind, optimizer = opt}, Schedule)
end

-- StepLR ---------------------------------------------------------------------------------------

-- A schedule kind: its own methods, Schedule's for the rest.
local function schedule_class()
    local C = setmetatable({}, {__index = Schedule})
    C.__index, C.__name, C.__tostring = C, Schedule.__name, Schedule.__tostring
    return C
end

local StepSchedule = schedule_class()

function StepSchedule:_get_lr()
    local e = self.last_epoch
    if e == 0 or e % self.step_size ~= 0 then return self.optimizer.lr end
    return self.optimizer.lr * self.gamma
end

function StepSchedule:_closed_form_lr()
    return self.base_lr * self.gamma ^ (self.last_epoch // self.step_size)
end

--- ls.optim.schedule.step(opt, {step_size, gamma}) -> schedule
-- torch.optim.lr_scheduler.StepLR: multiply the rate by gamma every step_size epochs.
--   step_size  (required)  period of the decay in epochs, an integer >= 1
--   gamma      = 0.1       the factor
-- Closed form: lr = initial_lr * gamma^floor(epoch / step_size).
-- e.g. local sched = ls.optim.schedule.step(opt, {step_size = 30, gamma = 0.1})
S.step = public(function(opt, opts)
    local who = "schedule.step"
    opts = check_options(opts, {step_size = true, gamma = true}, who)
    attach(opt, who)
    if opts.step_size == nil then fail("%s: option 'step_size' is required", who) end
    local self = setmetatable(new_schedule("step", opt), StepSchedule)
    self.step_size = check_integer(opts.step_size, "step_size", who, 1)
    self.gamma = check_number(opts.gamma == nil and 0.1 or opts.gamma, "gamma", who)
    return start(self)
end)

-- CosineAnnealingLR ----------------------------------------------------------------------------

local CosineSchedule = schedule_class()

-- torch's CosineAnnealingLR.get_lr, expression for expression
function CosineSchedule:_get_lr()
    local e, T, eta_min, lr = self.last_epoch, self.t_max, self.eta_min, self.optimizer.lr
    if e == 0 then return lr end
    if self._step_count == 1 and e > 0 then
        return eta_min + (self.base_lr - eta_min) * (1 + math.cos(e * math.pi / T)) / 2
    end
    if (e - 1 - T) % (2 * T) == 0 then
        return lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
    end
    return (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - eta_min)
        + eta_min
end

function CosineSchedule:_closed_form_lr()
    return self.eta_min + (self.base_lr - self.eta_min)
        * (1 + math.cos(math.pi * self.last_epoch / self.t_max)) / 2
end

--- ls.optim.schedule.cosine(opt, {t_max, eta_min}) -> schedule
-- torch.optim.lr_scheduler.CosineAnnealingLR: anneal from initial_lr to eta_min over t_max epochs
-- (and back up again over the next t_max, as torch does if you keep stepping).
--   t_max    (required)  half-period in epochs, an integer >= 1
--   eta_min  = 0         the lowest rate
-- Closed form: lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2.
-- e.g. local sched = ls.optim.schedule.cosine(opt, {t_max = 100})
S.cosine = public(function(opt, opts)
    local who = "schedule.cosine"
    opts = check_options(opts, {t_max = true, eta_min = true}, who)
    attach(opt, who)
    if opts.t_max == nil then fail("%s: option 't_max' is required", who) end
    local self = setmetatable(new_schedule("cosine", opt), CosineSchedule)
    self.t_max = check_integer(opts.t_max, "t_max", who, 1)
    self.eta_min = check_nonneg(opts.eta_min == nil and 0 or opts.eta_min, "eta_min", who)
    return start(self)
end)

-- LinearLR (warmup) ----------------------------------------------------------------------------

local WarmupSchedule = schedule_class()

-- torch's LinearLR.get_lr, expression for expression
function WarmupSchedule:_get_lr()
    local e, n, s, f, lr = self.last_epoch, self.steps, self.start_factor, self.end_factor,
        self.optimizer.lr
    if e == 0 then return lr * s end
    if e > n then return lr end
    return lr * (1. + (f - s) / (n * s + (e - 1) * (f - s)))
end

function WarmupSchedule:_closed_form_lr()
    local n, s, f = self.steps, self.start_factor, self.end_factor
    return self.base_lr * (s + (f - s) * math.min(n, self.last_epoch) / n)
end

--- ls.optim.schedule.warmup(opt, {steps, start_factor, end_factor}) -> schedule
-- torch.optim.lr_scheduler.LinearLR(total_iters = steps): the factor on initial_lr goes linearly
-- from start_factor at epoch 0 to end_factor at epoch `steps`, and stays there.
--   steps         = 5     length of the ramp, an integer >= 1 (torch's total_iters)
--   start_factor  = 1/3   first factor, in (0, 1]
--   end_factor    = 1     last factor, in [0, 1]
-- Closed form: lr = initial_lr * (start + (end - start) * min(steps, epoch) / steps).
-- e.g. local sched = ls.optim.schedule.warmup(opt, {steps = 500})
S.warmup = public(function(opt, opts)
    local who = "schedule.warmup"
    opts = check_options(opts, {steps = true, start_factor = true, end_factor = true}, who)
    attach(opt, who)
    local self = setmetatable(new_schedule("warmup", opt), WarmupSchedule)
    self.steps = check_integer(opts.steps == nil and 5 or opts.steps, "steps", who, 1)
    self.start_factor = check_number(opts.start_factor == nil and 1 / 3 or opts.start_factor,
                                     "start_factor", who)
    self.end_factor = check_number(opts.end_factor == nil and 1 or opts.end_factor, "end_factor", who)
    if not (self.start_factor > 0 and self.start_factor <= 1) then
        fail("%s: start_factor must be in (0, 1], got %s", who, tostring(self.start_factor))
    end
    if not (self.end_factor >= 0 and self.end_factor <= 1) then
        fail("%s: end_factor must be in [0, 1], got %s", who, tostring(self.end_factor))
    end
    return start(self)
end)

-- SequentialLR ---------------------------------------------------------------------------------

local SequentialSchedule = schedule_class()

-- torch's SequentialLR.step: the schedule whose interval holds the epoch steps; at its milestone it
-- restarts from its epoch 0 (closed form), otherwise it takes a recursive step.
function SequentialSchedule:step()
    self.last_epoch = self.last_epoch + 1
    local idx = 0   -- bisect_right: the number of milestones <= last_epoch
    while idx < #self.milestones and self.milestones[idx + 1] <= self.last_epoch do idx = idx + 1 end
    local s = self.schedulers[idx + 1]
    if idx > 0 and self.milestones[idx] == self.last_epoch then
        s:_step_to(0)
    else
        s:step()
    end
    self._last_lr = s:get_last_lr()
end

--- ls.optim.schedule.sequential(opt, {schedulers, milestones}) -> schedule
-- torch.optim.lr_scheduler.SequentialLR: run schedulers[1] until epoch milestones[1], then
-- schedulers[2] (restarted at its own epoch 0) until milestones[2], and so on.
--   schedulers  (required)  a list of schedules created on the same optimizer
--   milestones  (required)  increasing epochs, one fewer than schedulers
-- Warmup then cosine (500 warmup steps out of 10000):
--   local w = ls.optim.schedule.warmup(opt, {steps = 500, start_factor = 0.1})
--   local c = ls.optim.schedule.cosine(opt, {t_max = 9500})
--   local sched = ls.optim.schedule.sequential(opt, {schedulers = {w, c}, milestones = {500}})
-- Step only `sched` from then on.
-- e.g. local sched = ls.optim.schedule.sequential(opt, {schedulers = {warm, cos},
--          milestones = {500}})
S.sequential = public(function(opt, opts)
    local who = "schedule.sequential"
    opts = check_options(opts, {schedulers = true, milestones = true}, who)
    attach(opt, who)
    local list, ms = opts.schedulers, opts.milestones
    if type(list) ~= "table" or #list == 0 then
        fail("%s: option 'schedulers' must be a non-empty list of schedules", who)
    end
    if type(ms) ~= "table" then fail("%s: option 'milestones' must be a list of integers", who) end
    for i, s in ipairs(list) do
        if type(s) ~= "table" or not s._is_schedule then
            fail("%s: schedulers[%d] is not a schedule", who, i)
        end
        if s.optimizer ~= opt then
            fail("%s: schedulers[%d] belongs to a different optimizer", who, i)
        end
        if s.schedulers then fail("%s: schedulers[%d] is itself sequential", who, i) end
    end
    if #ms ~= #list - 1 then
        fail("%s: expected %d milestones for %d schedulers, got %d", who, #list - 1, #list, #ms)
    end
    for i, m in ipairs(ms) do
        check_integer(m, "milestones", who, 1)
        if i > 1 and m <= ms[i - 1] then fail("%s: milestones must increase", who) end
    end
    local self = setmetatable(new_schedule("sequential", opt), SequentialSchedule)
    self.schedulers = {table.unpack(list)}
    self.milestones = {table.unpack(ms)}
    self.last_epoch = 0
    -- as torch: back to the initial rate, undo the constructors' steps, restart the first schedule
    opt.lr = opt.initial_lr
    for _, s in ipairs(self.schedulers) do s.last_epoch = s.last_epoch - 1 end
    local first = self.schedulers[1]
    first._step_count = 0
    first:step()
    self._step_count = 0
    self._last_lr = first:get_last_lr()
    return self
end)

return M
