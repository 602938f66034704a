--- landscape.nn.models: the model builders, reached as ls.nn.mlp{...}, ls.nn.cnn{...} and
-- ls.nn.resnet{...}. Each returns an nn.sequential whose state-dict names are those of the
-- equivalent torch.nn.Sequential (docs/nn.md lists them, and tests/lua/nn_torch_spec.lua builds the
-- torch twins).
--
-- Conventions shared by the builders:
--   * A linear or convolution layer followed by batch norm has no bias (batch norm's shift makes it
--     redundant, and a redundant bias would add an exactly flat direction to the loss landscape).
--   * Seeds: the k-th random draw of a builder called with seed s (k = 1, 2, ... in construction
--     order: each linear, conv2d and dropout layer takes one, a basic block three) uses the seed
--     1000 * s + k, so nn.linear(784, 512, {seed = 1001}) is the first layer of nn.mlp{seed = 1}.
--     seed = false draws from the global stream (ls.manual_seed) instead.
local util = require "landscape.util"
local base = require "landscape.nn.module"
local n = require "landscape.nn.layers"
local fail, check_options, check_posint = util.fail, util.check_options, util.posint

local M = {}

-- seeds(s)(n) -> the next seed, reserving n consecutive ones (nil when s is false).
local function seeds(s)
    local k = 0
    return function(n)
        if s == false then return nil end
        local out = 1000 * s + k + 1
        k = k + (n or 1)
        return out
    end
end

local ACTIVATIONS = {relu = n.relu, leaky_relu = n.leaky_relu, tanh = n.tanh, sigmoid = n.sigmoid,
                     softplus = n.softplus, gelu = n.gelu, identity = n.identity}

-- A function returning a fresh activation module, from a name or a constructor.
local function activation(a, who)
    if type(a) == "function" then return function() return a() end end
    local make = ACTIVATIONS[a]
    if not make then
        fail("%s; known: %s, or a function returning a module",
             util.unknown(who, "activation", a, ACTIVATIONS),
             table.concat(util.sorted_keys(ACTIVATIONS), ", "))
    end
    return function() return make() end
end

local function common(opts, known, who)
    opts = check_options(opts, known, who)
    local seed = opts.seed
    if seed == nil then seed = 1 end
    if seed ~= false then base.check_seed(seed, who) end
    return opts, seeds(seed), base.check_dtype(opts.dtype or "f32", who)
end

local function int_list(v, who, what)
    if type(v) == "number" then v = {v} end
    if type(v) ~= "table" then fail("%s: %s must be a list of positive integers", who, what) end
    local out = {}
    for i, x in ipairs(v) do out[i] = check_posint(x, who, what .. "[" .. i .. "]") end
    return out
end

--- nn.mlp{input = 784, hidden = {512, 512}, classes = 10, activation = "relu", batchnorm = false,
--- dropout = 0, seed = 1, dtype = "f32"}
-- flatten, then per hidden width h: linear(d, h) [, batchnorm1d(h)], activation [, dropout(p)];
-- then linear(d, classes). Input [N, ...] with prod(...) = input ([N, 1, 28, 28] for 784).
-- activation: "relu", "leaky_relu", "tanh", "sigmoid", "softplus", "gelu", "identity", or a
-- function returning a module.
-- e.g. local m = ls.nn.mlp{hidden = {512, 512}, seed = 1}
function M.mlp(opts)
    local who = "mlp"
    local nxt, dtype
    opts, nxt, dtype = common(opts, {input = true, hidden = true, classes = true, activation = true,
                                     batchnorm = true, dropout = true, seed = true, dtype = true}, who)
    local input = check_posint(opts.input or 784, who, "input")
    local hidden = int_list(opts.hidden or {512, 512}, who, "hidden")
    local classes = check_posint(opts.classes or 10, who, "classes")
    local act = activation(opts.activation or "relu", who)
    local bn = opts.batchnorm == true
    local p = opts.dropout or 0
    if type(p) ~= "number" or p < 0 or p >= 1 then
        fail("%s: dropout must be a probability in [0, 1), got %s", who, tostring(p))
    end
    local layers = {n.flatten()}
    local d = input
    for _, h in ipairs(hidden) do
        layers[#layers + 1] = n.linear(d, h, {bias = not bn, seed = nxt(), dtype = dtype})
        if bn then layers[#layers + 1] = n.batchnorm1d(h, {dtype = dtype}) end
        layers[#layers + 1] = act()
        if p > 0 then layers[#layers + 1] = n.dropout(p, {seed = nxt()}) end
        d = h
    end
    layers[#layers + 1] = n.linear(d, classes, {seed = nxt(), dtype = dtype})
    return n.sequential(layers)
end

--- nn.cnn{channels = {32, 64}, hidden = 128, classes = 10, batchnorm = true, bias = nil,
--- pool = "max", global_pool = false, seed = 1, input_channels = 1, input_size = 28, dtype = "f32"}
-- Per stage c: conv2d(3x3, padding 1) [, batchnorm2d], relu and pool(2) (max pooling runs
-- before relu: the same values, see below); then flatten,
-- linear(c_last * s * s, hidden), relu, linear(hidden, classes), s = input_size halved per stage
-- (rounded down). hidden = 0 leaves out the hidden layer. The project's CNN benchmark is the
-- default: 28x28 -> 14x14 -> 7x7, 3136 -> 128 -> 10.
--   bias        nil     the convolutions' bias: default true without batch norm, false with it;
--                       true keeps it before batch norm too (as many published CNNs do)
--   pool        "max"   the pooling after each stage: "max" (maxpool2d(2)), "avg" (avgpool2d(2)) or
--                       "none" (the size is then kept)
--   global_pool false   true: global average pooling after the last stage instead of flatten, so
--                       the head sees c_last features whatever the input size
-- e.g. local m = ls.nn.cnn{channels = {32, 64}, pool = "avg", global_pool = true}
function M.cnn(opts)
    local who = "cnn"
    local nxt, dtype
    opts, nxt, dtype = common(opts, {channels = true, hidden = true, classes = true,
                                     batchnorm = true, bias = true, pool = true,
                                     global_pool = true, seed = true, input_channels = true,
                                     input_size = true, dtype = true}, who)
    local channels = int_list(opts.channels or {32, 64}, who, "channels")
    local hidden = opts.hidden
    if hidden == nil then hidden = 128 end
    if hidden ~= 0 then hidden = check_posint(hidden, who, "hidden") end
    local classes = check_posint(opts.classes or 10, who, "classes")
    local cin = check_posint(opts.input_channels or 1, who, "input_channels")
    local size = check_posint(opts.input_size or 28, who, "input_size")
    local bn = opts.batchnorm ~= false
    local bias = opts.bias
    if bias == nil then bias = not bn end
    if type(bias) ~= "boolean" then fail("%s: bias must be a boolean, got %s", who, tostring(bias)) end
    local POOLS = {max = n.maxpool2d, avg = n.avgpool2d, none = false}
    local pool = POOLS[opts.pool or "max"]
    if pool == nil then fail("%s", util.unknown(who, "pool", opts.pool, POOLS)) end
    local layers = {}
    for _, c in ipairs(channels) do
        layers[#layers + 1] = n.conv2d(cin, c, 3, {padding = 1, bias = bias, seed = nxt(),
                                                   dtype = dtype})
        if bn then layers[#layers + 1] = n.batchnorm2d(c, {dtype = dtype}) end
        if pool == n.maxpool2d then
            -- pool, then relu: the same values and gradients as relu then pool (max commutes with
            -- relu), with relu and its gradient on the pooled map, a quarter of the elements
            layers[#layers + 1] = n.maxpool2d(2)
            layers[#layers + 1] = n.relu()
        else   -- average pooling does not commute with relu: relu first, as written
            layers[#layers + 1] = n.relu()
            if pool then layers[#layers + 1] = pool(2) end
        end
        if pool then size = size // 2 end
        cin = c
        if size < 1 then fail("%s: input_size %d is too small for %d stages", who,
                                opts.input_size or 28, #channels) end
    end
    local d = cin * size * size
    if opts.global_pool then
        layers[#layers + 1] = n.global_avgpool()
        d = cin
    else
        layers[#layers + 1] = n.flatten()
    end
    if hidden ~= 0 then
        layers[#layers + 1] = n.linear(d, hidden, {seed = nxt(), dtype = dtype})
        layers[#layers + 1] = n.relu()
        d = hidden
    end
    layers[#layers + 1] = n.linear(d, classes, {seed = nxt(), dtype = dtype})
    return n.sequential(layers)
end

--- nn.resnet{widths = {16, 32, 64}, blocks = 1, batchnorm = true, skip = true, classes = 10,
--- seed = 1, input_channels = 1, dtype = "f32"}
-- A small residual network for 28x28 inputs: stem conv2d(3x3, padding 1) [, batchnorm2d], relu;
-- then for each width w_i, `blocks` basic blocks (blocks may be a list, one count per stage), the
-- first of stage i > 1 with stride 2; then global_avgpool and linear(w_last, classes).
-- skip = false gives the same network without shortcuts (a plain CNN of the same depth).
-- e.g. local m = ls.nn.resnet{widths = {16, 32}, blocks = 2}
function M.resnet(opts)
    local who = "resnet"
    local nxt, dtype
    opts, nxt, dtype = common(opts, {widths = true, blocks = true, batchnorm = true, skip = true,
                                     classes = true, seed = true, input_channels = true,
                                     dtype = true}, who)
    local widths = int_list(opts.widths or {16, 32, 64}, who, "widths")
    if #widths == 0 then fail("%s: widths must not be empty", who) end
    local blocks = opts.blocks or 1
    if type(blocks) == "number" then
        local b = check_posint(blocks, who, "blocks")
        blocks = {}
        for i = 1, #widths do blocks[i] = b end
    else
        blocks = int_list(blocks, who, "blocks")
        if #blocks ~= #widths then
            fail("%s: blocks has %d entries for %d widths", who, #blocks, #widths)
        end
    end
    local classes = check_posint(opts.classes or 10, who, "classes")
    local cin = check_posint(opts.input_channels or 1, who, "input_channels")
    local bn = opts.batchnorm ~= false
    local skip = opts.skip ~= false
    local layers = {n.conv2d(cin, widths[1], 3, {padding = 1, bias = not bn, seed = nxt(),
                                                 dtype = dtype})}
    if bn then layers[#layers + 1] = n.batchnorm2d(widths[1], {dtype = dtype}) end
    layers[#layers + 1] = n.relu()
    local c = widths[1]
    for i, w in ipairs(widths) do
        for j = 1, blocks[i] do
            local stride = (i > 1 and j == 1) and 2 or 1
            layers[#layers + 1] = n.basic_block(c, w, {stride = stride, batchnorm = bn, skip = skip,
                                                        seed = nxt(3), dtype = dtype})
            c = w
        end
    end
    layers[#layers + 1] = n.global_avgpool()
    layers[#layers + 1] = n.linear(c, classes, {seed = nxt(), dtype = dtype})
    return n.sequential(layers)
end

return M
