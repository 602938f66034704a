--- landscape.nn.layers: the layers of ls.nn (linear, conv2d, batch norm, activations, pooling,
-- flatten, dropout, sequential, the residual basic block), built on the protocol of
-- nn/module.lua. The constructors raise without a position; nn/init.lua makes them public.
local ls = require "landscape"
local util = require "landscape.util"
local base = require "landscape.nn.module"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options,
    util.shape_str
local check_posint = util.posint
local Module, class = base.Module, base.class
local check_dtype, check_seed, check_input, check_input_dtype, fmt_num, init_uniform =
    base.check_dtype, base.check_seed, base.check_input, base.check_input_dtype, base.fmt_num,
    base.init_uniform

local M = {}

local function check_nonneg_int(v, who, what)
    local n = type(v) == "number" and math.tointeger(v) or nil
    if not n or n < 0 then
        fail("%s: %s must be a non-negative integer, got %s", who, what, tostring(v))
    end
    return n
end

---------------------------------------------------------------------------------------------------
-- Layers
---------------------------------------------------------------------------------------------------

-- Linear -----------------------------------------------------------------------------------------
local Linear = class("Linear")
M.Linear = Linear

--- nn.linear(in_features, out_features [, {bias = true, seed, dtype = "f32"}])
-- y = x W^T + b; weight [out, in], bias [out]; x [..., in] -> [..., out].
-- e.g. local fc = ls.nn.linear(784, 128, {seed = 1})
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
    if self.bias then return x:linear(self.weight, self.bias) end
    return x:matmul(self.weight:t())
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
-- e.g. local conv = ls.nn.conv2d(1, 32, 3, {padding = 1, bias = false})
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
-- Train mode is the fused op `batchnorm` (engine/ops/batchnorm.c: 2 passes over x forward, 2 over
-- (g, x) backward, exact double backward); ls._batchnorm_train also hands back the batch mean and
-- variance it used, for the running statistics. Eval mode: the same formula with running_mean and
-- running_var (constants), as composed ops. Both modes are recorded ops, so gradients and
-- Hessian-vector products go through the normalisation.
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
    if self.training then
        local count = x:numel() // self.num_features
        if count <= 1 then
            fail("%s(%d): expected more than 1 value per channel when training, got input %s",
                 self._type, self.num_features, shape_str(x))
        end
        local weight, bias = self.weight, self.bias
        if not self.affine then
            weight = ls.ones({self.num_features}, {dtype = x.dtype})
            bias = ls.zeros({self.num_features}, {dtype = x.dtype})
        end
        local y, mean, var = ls._batchnorm_train(x, weight, bias, self.eps)
        if not self.frozen_stats then
            local mom = self.momentum
            ls.no_grad(function()
                local bv = var * (count / (count - 1))
                self.running_mean:copy(self.running_mean * (1 - mom) + mean * mom)
                self.running_var:copy(self.running_var * (1 - mom) + bv * mom)
                self.num_batches_tracked:fill(self.num_batches_tracked:item() + 1)
            end)
        end
        return y
    end
    local bshape = {1, self.num_features}
    for d = 3, nd do bshape[d] = 1 end
    local mean = self.running_mean:reshape(bshape)
    local var = self.running_var:reshape(bshape)
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
-- e.g. local bn = ls.nn.batchnorm1d(64)
function M.batchnorm1d(n, opts) return make_batchnorm(BatchNorm1d, "batchnorm1d", n, opts) end
--- nn.batchnorm2d(num_features [, opts as batchnorm1d]): x [N, C, H, W].
-- Batch normalisation over the channels of [N, C, H, W] inputs; options as batchnorm1d.
-- e.g. local bn = ls.nn.batchnorm2d(32, {momentum = 0.1})
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
-- Activation modules without parameters: relu, tanh, sigmoid and identity (their torch twins
-- are nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity).
-- e.g. local m = ls.nn.sequential{ls.nn.linear(4, 8), ls.nn.relu(), ls.nn.linear(8, 2),
--          ls.nn.tanh()}
function M.relu() return Module.init(setmetatable({}, ReLU)) end
function M.tanh() return Module.init(setmetatable({}, Tanh)) end
function M.sigmoid() return Module.init(setmetatable({}, Sigmoid)) end
function M.identity() return Module.init(setmetatable({}, Identity)) end

-- leaky_relu(x) = x where x > 0, slope * x elsewhere: torch's gradient, slope at x = 0 included.
local LeakyReLU = simple("LeakyReLU", function(self, x)
    return ls.where(x:gt(0), x, x * self.negative_slope)
end, function(self) return "negative_slope=" .. fmt_num(self.negative_slope) end)

--- nn.leaky_relu([negative_slope = 0.01])
-- x where x > 0, negative_slope * x elsewhere (torch.nn.LeakyReLU).
-- e.g. local act = ls.nn.leaky_relu(0.1)
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
-- log(1 + exp(beta x)) / beta, linear above threshold (torch.nn.Softplus).
-- e.g. local act = ls.nn.softplus{beta = 2}
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
-- x * Phi(x) (exact, with erf) or its tanh approximation (torch.nn.GELU).
-- e.g. local act = ls.nn.gelu{approximate = "tanh"}
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
-- e.g. local pool = ls.nn.maxpool2d(2)
--      local avg = ls.nn.avgpool2d(2, 1)
function M.maxpool2d(k, stride) return make_pool(MaxPool2d, "maxpool2d", k, stride) end
function M.avgpool2d(k, stride) return make_pool(AvgPool2d, "avgpool2d", k, stride) end

local GlobalAvgPool = simple("GlobalAvgPool", function(_, x)
    if x.ndim ~= 4 then fail("GlobalAvgPool: input %s should be [N x C x H x W]", shape_str(x)) end
    return x:mean({3, 4})
end)
--- nn.global_avgpool(): [N, C, H, W] -> [N, C], the mean over H and W (torch:
-- AdaptiveAvgPool2d(1) followed by Flatten, as one module).
-- e.g. local head = ls.nn.sequential{ls.nn.global_avgpool(), ls.nn.linear(64, 10)}
function M.global_avgpool() return Module.init(setmetatable({}, GlobalAvgPool)) end

local Flatten = simple("Flatten", function(_, x)
    if x.ndim < 1 then fail("Flatten: input %s should have a batch dim", shape_str(x)) end
    return x:reshape(x:size(1), -1)
end)
--- nn.flatten(): [N, ...] -> [N, prod(...)] (torch.nn.Flatten(): dim 1 kept).
-- [N, d1, d2, ...] -> [N, d1 * d2 * ...] (torch.nn.Flatten).
-- e.g. local m = ls.nn.sequential{ls.nn.flatten(), ls.nn.linear(784, 10)}
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
-- Zeroes each element with probability p in training mode and scales the rest by 1 / (1 - p);
-- the identity in eval mode. Seeded masks replay bit for bit.
-- e.g. local drop = ls.nn.dropout(0.5, {seed = 1})
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
-- The modules applied in order; their parameters are named "<index>.<name>" from 0 as
-- torch.nn.Sequential's state dict.
-- e.g. local m = ls.nn.sequential{ls.nn.linear(4, 8), ls.nn.relu(), ls.nn.linear(8, 3)}
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
-- Appends a module to a sequential container (its parameters are named after its position).
-- e.g. local m = ls.nn.sequential{}; m:add(ls.nn.linear(4, 2))
function Sequential:add(m)
    check_module(m, "add", #self._children + 1)
    self._children[#self._children + 1] = {tostring(#self._children), m}
    return self
end

--- s:get(i): the i-th child (1-based, as Lua indexes; its state-dict name is i - 1).
-- The i-th module of a container (1-based).
-- e.g. local first = model:get(1)
function Sequential:get(i)
    local c = self._children[i]
    if not c then fail("get: index %s out of range (the Sequential has %d modules)", tostring(i),
                       #self._children) end
    return c[2]
end

--- module:size() -> integer
-- The number of modules in a container.
-- e.g. print(model:size())
function Sequential:size() return #self._children end
Sequential.__len = Sequential.size

--- module:forward(x) -> Tensor
-- Runs the model on x (also model(x)): each module of the container in turn.
-- e.g. local scores = model:forward(x)
function Sequential:forward(x)
    for _, c in ipairs(self._children) do x = c[2]:forward(x) end
    return x
end
Sequential.add = public(Sequential.add)
Sequential.get = public(Sequential.get)

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
-- e.g. local block = ls.nn.basic_block(16, 32, {stride = 2})
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
    b:add_child("conv1", M.conv2d(cin, cout, 3, {stride = stride, padding = 1, bias = not bn,
                                                 seed = s(0), dtype = dtype}))
    if bn then b:add_child("bn1", M.batchnorm2d(cout, {dtype = dtype})) end
    b:add_child("conv2", M.conv2d(cout, cout, 3, {padding = 1, bias = not bn, seed = s(1),
                                                  dtype = dtype}))
    if bn then b:add_child("bn2", M.batchnorm2d(cout, {dtype = dtype})) end
    if skip then
        local sc = M.sequential{}
        if stride ~= 1 or cin ~= cout then
            sc:add(M.conv2d(cin, cout, 1, {stride = stride, bias = not bn, seed = s(2),
                                           dtype = dtype}))
            if bn then sc:add(M.batchnorm2d(cout, {dtype = dtype})) end
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

return M
