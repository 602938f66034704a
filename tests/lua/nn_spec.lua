-- ls.nn: the module protocol, every layer's shapes and values, state dicts, save/load, batch norm's
-- train/eval behaviour checked by hand, dropout, clone, flat parameters, and gradients and
-- Hessian-vector products through modules against finite differences in float64.
-- The PyTorch comparisons are in nn_torch_spec.lua.
local ls = require "landscape"
local nn = ls.nn

local HAS_CONV = ls.conv2d ~= nil and ls.maxpool2d ~= nil and ls.avgpool2d ~= nil

local function conv_it(name, fn)
    it(name, function()
        if not HAS_CONV then return pending("conv2d/maxpool2d/avgpool2d ops not registered yet") end
        fn()
    end)
end

local function maxdiff(a, b)
    local ta, tb = a:reshape(-1):totable(), b:reshape(-1):totable()
    assert.are.equal(#ta, #tb)
    local d = 0
    for i = 1, #ta do d = math.max(d, math.abs(ta[i] - tb[i])) end
    return d
end

local function names(list)
    local out = {}
    for i, e in ipairs(list) do out[i] = e[1] end
    return out
end

local function errmsg(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

local function tmpname()
    local p = os.tmpname()
    os.remove(p)
    return p .. ".safetensors"
end

describe("layers", function()
    it("linear: shapes, y = x W^T + b, PyTorch's init bound, seeds", function()
        local l = nn.linear(4, 3, {seed = 7, dtype = "f64"})
        assert.are.same({3, 4}, l.weight:size())
        assert.are.same({3}, l.bias:size())
        assert.is_true(l.weight.needs_grad and l.weight.is_leaf)
        local bound = 1 / math.sqrt(4)
        for _, p in ipairs(l:parameters()) do
            assert.is_true(p:abs():max():item() < bound)
        end
        -- weight then bias from one stream: the seed's first 12 draws, then 3 more
        local u = ls.rand({15}, {seed = 7, dtype = "f64", lo = -bound, hi = bound})
        assert.are.equal(0, maxdiff(l.weight, u:narrow(1, 1, 12):reshape(3, 4)))
        assert.are.equal(0, maxdiff(l.bias, u:narrow(1, 13, 3)))
        local x = ls.randn({2, 5, 4}, {seed = 1, dtype = "f64"})
        local y = l(x)
        assert.are.same({2, 5, 3}, y:size())
        local want = x:matmul(l.weight:t()) + l.bias
        assert.are.equal(0, maxdiff(y, want))
        assert.is_nil(nn.linear(4, 3, {bias = false}).bias)
        assert.are.equal(12, nn.linear(4, 3, {bias = false}):num_parameters())
        -- without a seed: the global stream
        ls.manual_seed(5)
        local a = nn.linear(4, 3)
        ls.manual_seed(5)
        local b = nn.linear(4, 3)
        assert.are.equal(0, maxdiff(a.weight, b.weight))
        assert.matches("should have 4 features", errmsg(l.forward, l, ls.zeros({2, 5}, {dtype = "f64"})))
        assert.matches("Linear: input is f32 but the layer is f64",
                       errmsg(l.forward, l, ls.zeros({2, 4})))
    end)

    conv_it("conv2d: shapes with stride and padding, bias broadcast, fan-in bound", function()
        local c = nn.conv2d(3, 5, 3, {stride = 2, padding = 1, seed = 3, dtype = "f64"})
        assert.are.same({5, 3, 3, 3}, c.weight:size())
        assert.is_true(c.weight:abs():max():item() < 1 / math.sqrt(27))
        local x = ls.randn({2, 3, 9, 8}, {seed = 2, dtype = "f64"})
        local y = c(x)
        assert.are.same({2, 5, 5, 4}, y:size())   -- (9 + 2 - 3) // 2 + 1, (8 + 2 - 3) // 2 + 1
        local want = ls.conv2d(x, c.weight, 2, 1) + c.bias:reshape(1, 5, 1, 1)
        assert.are.equal(0, maxdiff(y, want))
        local r = nn.conv2d(2, 4, {3, 1})
        assert.are.same({4, 2, 3, 1}, r.weight:size())
        assert.are.same({1, 4, 3, 5}, r(ls.zeros({1, 2, 5, 5})):size())
        assert.matches("should be %[N x 3 x H x W%]",
                       errmsg(c.forward, c, ls.zeros({2, 4, 9, 8}, {dtype = "f64"})))
    end)

    it("activations: values", function()
        local x = ls.tensor({-30, -2, 0, 0.5, 25}, {dtype = "f64"})
        assert.are.same({0, 0, 0, 0.5, 25}, nn.relu()(x):totable())
        assert.are.same({-0.3, -0.02, 0, 0.5, 25}, nn.leaky_relu()(x):totable())
        assert.are.equal(0, maxdiff(nn.leaky_relu(0.2)(x), ls.tensor({-6, -0.4, 0, 0.5, 25},
                                                                   {dtype = "f64"})))
        assert.are.equal(0, maxdiff(nn.tanh()(x), x:tanh()))
        assert.are.equal(0, maxdiff(nn.sigmoid()(x), x:sigmoid()))
        assert.are.equal(0, maxdiff(nn.identity()(x), x))
        local sp = nn.softplus()(x):totable()
        assert.are.equal(25, sp[5])                         -- torch's threshold: x itself above 20
        assert.near(math.log(1 + math.exp(0.5)), sp[4], 1e-15)
        local sp2 = nn.softplus{beta = 2}(x):totable()
        assert.near(math.log(1 + math.exp(1)) / 2, sp2[4], 1e-15)
        local g = nn.gelu{approximate = "tanh"}(x):totable()
        local function gt(v) return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) *
                                                             (v + 0.044715 * v ^ 3))) end
        for i, v in ipairs(x:totable()) do assert.near(gt(v), g[i], 1e-14) end
    end)

    it("leaky_relu has torch's gradient, slope at 0", function()
        local x = ls.tensor({-1, 0, 2}, {dtype = "f64"}):requires_grad()
        local g = ls.grad(nn.leaky_relu(0.1)(x):sum(), x)
        assert.are.same({0.1, 0.1, 1}, g:totable())
    end)

    it("exact gelu works when the erf op exists, else says what is missing", function()
        if ls.erf then
            local x = ls.tensor({-1, 0.5}, {dtype = "f64"})
            local y = nn.gelu()(x):totable()
            assert.near(-0.15865525393145707, y[1], 1e-15)
            assert.near(0.34573123063700656, y[2], 1e-15)
        else
            assert.matches("needs the erf op", errmsg(nn.gelu))
        end
    end)

    conv_it("pooling, flatten, global average pool", function()
        local x = ls.arange(2 * 3 * 4 * 6, {dtype = "f64"}):reshape(2, 3, 4, 6)
        local mp = nn.maxpool2d(2)
        assert.are.equal(2, mp.stride)
        local y = mp(x)
        assert.are.same({2, 3, 2, 3}, y:size())
        assert.are.equal(7, y[1][1][1][1])                   -- max of {0, 1, 6, 7}
        local a = nn.avgpool2d(2, 1)(x)
        assert.are.same({2, 3, 3, 5}, a:size())
        assert.are.equal(3.5, a[1][1][1][1])
        local gp = nn.global_avgpool()(x)
        assert.are.same({2, 3}, gp:size())
        assert.are.equal(11.5, gp[1][1])                     -- mean of 0..23
        assert.are.same({2, 72}, nn.flatten()(x):size())
    end)

    it("sequential: names, get, add, length", function()
        local s = nn.sequential{nn.linear(2, 3), nn.relu()}
        s:add(nn.linear(3, 1))
        assert.are.equal(3, #s)
        assert.are.equal("Linear", s:get(3)._type)
        assert.are.same({"0.weight", "0.bias", "2.weight", "2.bias"}, names(s:named_parameters()))
        assert.matches("out of range", errmsg(s.get, s, 4))
        assert.matches("element 2 is not a module", errmsg(nn.sequential, {nn.relu(), 5}))
        assert.are.same({4, 1}, s(ls.zeros({4, 2})):size())
    end)

    conv_it("basic block: identity and projection shortcuts, names", function()
        local b = nn.basic_block(4, 4, {seed = 1, dtype = "f64"})
        assert.are.same({"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight",
                         "bn2.bias"}, names(b:named_parameters()))
        assert.are.same({2, 4, 6, 6}, b(ls.randn({2, 4, 6, 6}, {seed = 1, dtype = "f64"})):size())
        local p = nn.basic_block(4, 8, {stride = 2, seed = 1})
        assert.are.same({"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                         "bn1.running_var", "bn1.num_batches_tracked", "conv2.weight", "bn2.weight",
                         "bn2.bias", "bn2.running_mean", "bn2.running_var",
                         "bn2.num_batches_tracked", "shortcut.0.weight", "shortcut.1.weight",
                         "shortcut.1.bias", "shortcut.1.running_mean", "shortcut.1.running_var",
                         "shortcut.1.num_batches_tracked"}, names(p:state_dict()))
        assert.are.same({2, 8, 3, 3}, p(ls.randn({2, 4, 6, 6}, {seed = 1})):size())
        local plain = nn.basic_block(4, 8, {stride = 2, batchnorm = false, skip = false})
        assert.are.same({"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"},
                        names(plain:state_dict()))
        -- the value: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)), here checked in eval mode
        b:eval()
        local x = ls.randn({2, 4, 5, 5}, {seed = 4, dtype = "f64"})
        local h = b.bn1(b.conv1(x)):relu()
        local want = (b.bn2(b.conv2(h)) + x):relu()
        assert.are.equal(0, maxdiff(b(x), want))
    end)
end)

describe("builders", function()
    it("mlp: parameter count, names, seeds, forward on [N, 1, 28, 28]", function()
        local m = nn.mlp{}
        assert.are.equal(784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10, m:num_parameters())
        assert.are.same({"1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"},
                        names(m:state_dict()))
        assert.are.equal(0, maxdiff(m:get(2).weight, nn.linear(784, 512, {seed = 1001}).weight))
        assert.are.equal(0, maxdiff(m:get(6).weight, nn.linear(512, 10, {seed = 1003}).weight))
        assert.are.same({3, 10}, m(ls.zeros({3, 1, 28, 28})):size())
        local b = nn.mlp{input = 6, hidden = {5}, classes = 2, batchnorm = true, dropout = 0.1,
                         activation = "tanh"}
        assert.are.same({"1.weight", "2.weight", "2.bias", "2.running_mean", "2.running_var",
                         "2.num_batches_tracked", "5.weight", "5.bias"}, names(b:state_dict()))
        assert.are.equal("Tanh", b:get(4)._type)
        assert.are.equal("Dropout", b:get(5)._type)
        assert.matches("unknown activation 'swish'", errmsg(nn.mlp, {activation = "swish"}))
        assert.matches("unknown option 'hiden'", errmsg(nn.mlp, {hiden = {3}}))
    end)

    it("cnn: the benchmark net's parameter count and names", function()
        local m = nn.cnn{}
        local want = 1 * 32 * 9 + 2 * 32 + 32 * 64 * 9 + 2 * 64 + 64 * 7 * 7 * 128 + 128
                     + 128 * 10 + 10
        assert.are.equal(want, m:num_parameters())
        assert.are.same({"0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                         "1.num_batches_tracked", "4.weight", "5.weight", "5.bias",
                         "5.running_mean", "5.running_var", "5.num_batches_tracked", "9.weight",
                         "9.bias", "11.weight", "11.bias"}, names(m:state_dict()))
        local plain = nn.cnn{batchnorm = false, channels = {4}, hidden = 0}
        assert.are.same({"0.weight", "0.bias", "4.weight", "4.bias"}, names(plain:state_dict()))
        assert.are.equal(4 * 9 + 4 + 4 * 14 * 14 * 10 + 10, plain:num_parameters())
    end)

    it("resnet: parameter count by the formula", function()
        local m = nn.resnet{}
        local function bn(c) return 2 * c end
        local function block(cin, cout)
            local n = cin * cout * 9 + bn(cout) + cout * cout * 9 + bn(cout)
            if cin ~= cout then n = n + cin * cout + bn(cout) end
            return n
        end
        local want = 9 * 16 + bn(16) + block(16, 16) + block(16, 32) + block(32, 64) + 64 * 10 + 10
        assert.are.equal(want, m:num_parameters())
        local two = nn.resnet{widths = {4, 8}, blocks = {2, 1}, skip = false, batchnorm = false}
        assert.are.equal(7, #two)             -- stem conv, relu, 3 blocks, pool, linear
        local n = 9 * 4 + 4 + 2 * (4 * 4 * 9 + 4 + 4 * 4 * 9 + 4) + (4 * 8 * 9 + 8 + 8 * 8 * 9 + 8)
                  + 8 * 10 + 10
        assert.are.equal(n, two:num_parameters())
    end)
end)

describe("state dicts", function()
    local function small()
        return nn.sequential{nn.linear(3, 4, {seed = 1, dtype = "f64"}),
                             nn.batchnorm1d(4, {dtype = "f64"}), nn.relu(),
                             nn.linear(4, 2, {seed = 2, dtype = "f64"})}
    end

    it("lists parameters then buffers per module, with a name map", function()
        local m = small()
        local sd = m:state_dict()
        assert.are.same({"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                         "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"}, names(sd))
        assert.are.equal("i64", sd["1.num_batches_tracked"].dtype)
        assert.are.equal(0, sd["1.num_batches_tracked"].ndim)
        assert.is_false(sd["0.weight"].needs_grad)            -- detached aliases
        sd["0.weight"][1][1] = 42
        assert.are.equal(42, m:get(1).weight[1][1])
        assert.are.same({"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"},
                        names(m:named_parameters()))
        assert.are.same({"1.running_mean", "1.running_var", "1.num_batches_tracked"},
                        names(m:named_buffers()))
        assert.are.equal(#m:parameters(), 6)
    end)

    it("load_state_dict copies values in place and refuses bad input, writing nothing", function()
        local a, b = small(), small()
        ls.no_grad(function() b:get(1).weight:detach():fill(0.5) end)
        local w = a:get(1).weight
        a:load_state_dict(b:state_dict())
        assert.are.equal(w, a:get(1).weight)                    -- same tensor object, new values
        assert.are.equal(0.5, w[2][3])

        local sd = {}
        for _, e in ipairs(b:state_dict()) do sd[e[1]] = e[2]:clone() end
        sd["3.bias"] = nil
        sd["9.weight"] = ls.zeros({1}, {dtype = "f64"})
        local err = errmsg(a.load_state_dict, a, sd)
        assert.matches("missing key%(s%): 3.bias", err)
        assert.matches("unexpected key%(s%): 9.weight", err)
        local r = a:load_state_dict(sd, {strict = false})
        assert.are.same({"3.bias"}, r.missing_keys)
        assert.are.same({"9.weight"}, r.unexpected_keys)

        sd["3.bias"] = ls.zeros({2}, {dtype = "f64"})
        sd["9.weight"] = nil
        sd["0.weight"] = ls.zeros({3, 4}, {dtype = "f64"})
        local before = a:get(4).bias:clone()
        assert.matches("size mismatch for '0.weight': the model has %[4x3%], the state dict %[3x4%]",
                       errmsg(a.load_state_dict, a, sd))
        assert.are.equal(0, maxdiff(a:get(4).bias, before))     -- nothing written
        sd["0.weight"] = ls.zeros({4, 3})
        assert.matches("dtype mismatch for '0.weight': the model has f64, the state dict f32",
                       errmsg(a.load_state_dict, a, sd))
        a:load_state_dict(sd, {cast = true})
        assert.are.equal(0, a:get(1).weight:abs():sum():item())
        sd["1.num_batches_tracked"] = ls.tensor(3.0, {dtype = "f64"})
        assert.matches("dtype mismatch for '1.num_batches_tracked'",
                       errmsg(a.load_state_dict, a, sd, {cast = true}))
        assert.matches("expected a table", errmsg(a.load_state_dict, a, 5))
    end)

    it("save and load_into round-trip exactly, buffers and metadata included", function()
        for _, dtype in ipairs({"f32", "f64"}) do
            local a = nn.mlp{input = 5, hidden = {4}, classes = 3, batchnorm = true, dtype = dtype}
            a(ls.randn({6, 5}, {seed = 2, dtype = dtype}))      -- moves the running statistics
            local path = tmpname()
            a:save(path, {epoch = 3})
            local b = nn.mlp{input = 5, hidden = {4}, classes = 3, batchnorm = true, dtype = dtype,
                             seed = 9}
            local _, meta = nn.load_into(b, path)
            os.remove(path)
            assert.are.equal("3", meta.epoch)
            assert.are.equal("pt", meta.format)
            local sa, sb = a:state_dict(), b:state_dict()
            for _, e in ipairs(sa) do
                assert.are.equal(e[2].dtype, sb[e[1]].dtype)
                assert.are.same(e[2]:totable(), sb[e[1]]:totable(), e[1])
            end
            assert.are.equal(1, sb["2.num_batches_tracked"]:item())
        end
        local m = nn.linear(2, 2)
        local path = tmpname()
        nn.linear(3, 2):save(path)
        assert.matches("size mismatch for 'weight'", errmsg(nn.load_into, m, path))
        os.remove(path)
    end)
end)

describe("batch norm", function()
    -- x [4, 2]: channel 1 = {1, 2, 3, 6}, channel 2 = {0, 0, 4, 4}
    local x = ls.tensor({{1, 0}, {2, 0}, {3, 4}, {6, 4}}, {dtype = "f64"})

    it("train mode: batch statistics, biased variance; running stats with unbiased variance", function()
        local bn = nn.batchnorm1d(2, {dtype = "f64", momentum = 0.25})
        ls.no_grad(function()
            bn.weight:detach():copy(ls.tensor({2, 1}, {dtype = "f64"}))
            bn.bias:detach():copy(ls.tensor({0, 1}, {dtype = "f64"}))
        end)
        local y = bn(x)
        -- channel 1: mean 3, biased var (4 + 1 + 0 + 9) / 4 = 3.5, unbiased 14 / 3
        -- channel 2: mean 2, biased var 4, unbiased 16 / 3
        local eps = 1e-5
        local want = {}
        for i, row in ipairs({{1, 0}, {2, 0}, {3, 4}, {6, 4}}) do
            want[i] = {2 * (row[1] - 3) / math.sqrt(3.5 + eps), (row[2] - 2) / math.sqrt(4 + eps) + 1}
        end
        assert.is_true(maxdiff(y, ls.tensor(want, {dtype = "f64"})) < 1e-15)
        assert.is_true(maxdiff(bn.running_mean, ls.tensor({0.75, 0.5}, {dtype = "f64"})) < 1e-15)
        assert.is_true(maxdiff(bn.running_var, ls.tensor({0.75 + 0.25 * 14 / 3, 0.75 + 0.25 * 16 / 3},
                                                         {dtype = "f64"})) < 1e-15)
        assert.are.equal(1, bn.num_batches_tracked:item())
        bn(x)
        assert.are.equal(2, bn.num_batches_tracked:item())
        assert.is_true(maxdiff(bn.running_mean, ls.tensor({0.75 * 0.75 + 0.75, 0.75 * 0.5 + 0.5},
                                                          {dtype = "f64"})) < 1e-15)
        assert.matches("more than 1 value per channel",
                       errmsg(bn.forward, bn, ls.zeros({1, 2}, {dtype = "f64"})))
    end)

    it("eval mode: running statistics, nothing updated", function()
        local bn = nn.batchnorm1d(2, {dtype = "f64", affine = false})
        assert.are.equal(0, #bn:parameters())
        bn:eval()
        ls.no_grad(function()
            bn.running_mean:copy(ls.tensor({1, -1}, {dtype = "f64"}))
            bn.running_var:copy(ls.tensor({4, 0.25}, {dtype = "f64"}))
        end)
        local y = bn(x)
        local eps = 1e-5
        assert.near((6 - 1) / math.sqrt(4 + eps), y[4][1], 1e-15)
        assert.near((4 + 1) / math.sqrt(0.25 + eps), y[4][2], 1e-14)
        assert.are.equal(0, bn.num_batches_tracked:item())
        assert.are.same({1, -1}, bn.running_mean:totable())
    end)

    it("freeze_running_stats: batch statistics, buffers untouched", function()
        local m = nn.sequential{nn.linear(2, 2, {dtype = "f64"}), nn.batchnorm1d(2, {dtype = "f64"})}
        local free = m(x)
        m:get(2).running_mean:zero()
        m:get(2).num_batches_tracked:fill(0)
        assert.are.equal(m, m:freeze_running_stats())
        assert.are.equal(0, maxdiff(m(x), free))
        assert.are.same({0, 0}, m:get(2).running_mean:totable())
        assert.are.equal(0, m:get(2).num_batches_tracked:item())
        m:freeze_running_stats(false)
        m(x)
        assert.are.equal(1, m:get(2).num_batches_tracked:item())
    end)

    conv_it("batchnorm2d normalises over N, H, W; batchnorm1d over N and L", function()
        local bn = nn.batchnorm2d(3, {dtype = "f64"})
        local z = ls.randn({4, 3, 5, 5}, {seed = 1, dtype = "f64", mean = 2, std = 3})
        local y = bn(z)
        local m = y:mean({1, 3, 4}):totable()
        local v = y:var({1, 3, 4}, false, 0):totable()
        for c = 1, 3 do
            assert.is_true(math.abs(m[c]) < 1e-14)
            assert.near(1, v[c], 1e-5)
        end
        local b1 = nn.batchnorm1d(3, {dtype = "f64"})
        local y1 = b1(z:reshape(4, 3, 25))
        assert.is_true(maxdiff(y1:reshape(4, 3, 5, 5), y) < 1e-14)
    end)
end)

describe("dropout", function()
    it("is seeded, scales by 1 / (1 - p), differs between calls, and is the identity in eval", function()
        local x = ls.ones({200, 50}, {dtype = "f64"})
        local a, b = nn.dropout(0.3, {seed = 4}), nn.dropout(0.3, {seed = 4})
        local ya, yb = a(x), b(x)
        assert.are.equal(0, maxdiff(ya, yb))
        local kept = ya:gt(0):sum():item()
        assert.is_true(math.abs(kept / 10000 - 0.7) < 0.02)
        assert.is_true(maxdiff(ya:maximum(0), ya) == 0)
        assert.near(1 / 0.7, ya:max():item(), 1e-15)
        assert.is_true(maxdiff(a(x), ya) > 0)                     -- the next call, another mask
        a:eval()
        assert.are.equal(x, a(x))
        assert.are.equal(0, nn.dropout(1)(x):abs():sum():item())
        assert.matches("p must be a probability", errmsg(nn.dropout, 1.5))
        local c = nn.dropout{seed = 2}
        assert.are.equal(0.5, c.p)
    end)
end)

describe("the protocol", function()
    it("train/eval, zero_grad, tostring", function()
        local m = nn.mlp{input = 4, hidden = {3}, classes = 2, batchnorm = true}
        assert.is_true(m.training)
        assert.are.equal(m, m:eval())
        for _, sub in ipairs(m:modules()) do assert.is_false(sub.training) end
        m:train()
        assert.is_true(m:get(3).training)
        ls.cross_entropy(m(ls.randn({5, 4}, {seed = 1})), {1, 2, 1, 2, 2}):backward()
        assert.is_not_nil(m:get(2).weight.grad)
        m:zero_grad()
        for _, p in ipairs(m:parameters()) do assert.is_nil(p.grad) end
        assert.are.equal(table.concat({
            "Sequential(",
            "  (0): Flatten()",
            "  (1): Linear(in_features=4, out_features=3, bias=False)",
            "  (2): BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)",
            "  (3): ReLU()",
            "  (4): Linear(in_features=3, out_features=2, bias=True)",
            ")"}, "\n"), tostring(m))
    end)

    it("clone is independent", function()
        local m = nn.mlp{input = 4, hidden = {3}, classes = 2, batchnorm = true, dtype = "f64"}
        local c = m:clone()
        assert.are_not.equal(m:get(2).weight, c:get(2).weight)
        assert.is_true(c:get(2).weight.needs_grad and c:get(2).weight.is_leaf)
        assert.are.equal(0, maxdiff(m:flatten_parameters(), c:flatten_parameters()))
        ls.no_grad(function() c:get(2).weight:detach():fill(7) end)
        c(ls.randn({5, 4}, {seed = 1, dtype = "f64"}))          -- moves c's running stats only
        assert.is_true(m:get(2).weight:max():item() < 1)
        assert.are.same({0, 0, 0}, m:get(3).running_mean:totable())
        assert.are.equal(0, m:get(3).num_batches_tracked:item())
        assert.are.equal(1, c:get(3).num_batches_tracked:item())
        c:eval()
        assert.is_true(m.training)
    end)

    it("flatten_parameters / set_flat_parameters round trip in state-dict order", function()
        local m = nn.mlp{input = 3, hidden = {2}, classes = 2, dtype = "f64"}
        local v = m:flatten_parameters()
        assert.are.same({m:num_parameters()}, v:size())
        assert.are.equal(m:get(2).weight[1][2], v[2])
        assert.are.equal(m:get(2).bias[1], v[7])                 -- after the 2x3 weight
        local w = v * 2
        m:set_flat_parameters(w)
        assert.are.equal(0, maxdiff(m:flatten_parameters(), w))
        assert.are.equal(0, maxdiff(m:get(4).bias, w:narrow(1, 13, 2)))
        assert.is_true(m:get(2).weight.is_leaf)
        assert.matches("expected a 1%-D tensor of 14 elements",
                       errmsg(m.set_flat_parameters, m, ls.zeros({13}, {dtype = "f64"})))
    end)

    it("custom modules: nn.class, add_parameter, add_child", function()
        local Scale = nn.class("Scale")
        function Scale.new(n)
            local m = nn.Module.init(setmetatable({}, Scale))
            m:add_parameter("weight", ls.ones({n}, {dtype = "f64"}):requires_grad())
            m:add_child("inner", nn.linear(n, n, {bias = false, seed = 1, dtype = "f64"}))
            return m
        end
        function Scale:forward(x) return self.inner(x) * self.weight end
        local model = nn.sequential{Scale.new(3), nn.relu()}
        assert.are.same({"0.weight", "0.inner.weight"}, names(model:state_dict()))
        assert.are.equal("Sequential(\n  (0): Scale(\n    (inner): Linear(in_features=3, " ..
                         "out_features=3, bias=False)\n  )\n  (1): ReLU()\n)", tostring(model))
        local x = ls.randn({2, 3}, {seed = 1, dtype = "f64"})
        assert.is_true((ls.gradcheck(function() return model(x) end, model:parameters())))
        assert.are.equal(12, model:clone():num_parameters())
    end)

    it("to(dtype) converts parameters and float buffers", function()
        local m = nn.mlp{input = 3, hidden = {2}, classes = 2, batchnorm = true}
        local v32 = m:flatten_parameters()
        m:to("f64")
        for _, e in ipairs(m:state_dict()) do
            assert.are.equal(e[1]:match("num_batches") and "i64" or "f64", e[2].dtype)
        end
        assert.is_true(m:get(2).weight.needs_grad)
        assert.are.equal(0, maxdiff(m:flatten_parameters(), v32:double()))
        assert.are.same({2, 2}, m(ls.zeros({2, 3}, {dtype = "f64"})):size())
        assert.matches("dtype must be", errmsg(m.to, m, "f16"))
    end)
end)

describe("derivatives through modules (float64)", function()
    it("gradients of an MLP equal finite differences (ls.gradcheck)", function()
        local m = nn.mlp{input = 4, hidden = {5, 3}, classes = 3, activation = "tanh",
                         dtype = "f64"}
        local x = ls.randn({6, 4}, {seed = 1, dtype = "f64"})
        local y = ls.tensor({1, 2, 3, 1, 2, 3}, {dtype = "i64"})
        local ok, msg = ls.gradcheck(function() return ls.cross_entropy(m(x), y) end,
                                     m:parameters())
        assert.is_true(ok, msg)
        local s = nn.mlp{input = 4, hidden = {5}, classes = 3, activation = "softplus",
                         batchnorm = true, dtype = "f64"}
        ok, msg = ls.gradcheck(function() return s(x) end, s:parameters())
        assert.is_true(ok, msg)
    end)

    local function hvp_vs_fd(m, x, y, tol)
        local ps = m:parameters()
        local vs = {}
        for i, p in ipairs(ps) do vs[i] = ls.randn(p:size(), {seed = 100 + i, dtype = "f64"}) end
        local function f() return ls.cross_entropy(m(x), y) end
        local hv = ls.hvp(f, ps, vs)
        -- central differences of the gradient along v
        local h = 1e-6   -- the error is O(h^2) truncation down to here (measured)
        local function grad_at(sign)
            ls.no_grad(function()
                for i, p in ipairs(ps) do p:detach():copy(p:detach() + vs[i] * (sign * h)) end
            end)
            local g = ls.grad(f(), ps)
            ls.no_grad(function()
                for i, p in ipairs(ps) do p:detach():copy(p:detach() - vs[i] * (sign * h)) end
            end)
            return g
        end
        local gp, gm = grad_at(1), grad_at(-1)
        local worst, scale = 0, 0
        for i = 1, #ps do
            local fd = (gp[i] - gm[i]) / (2 * h)
            worst = math.max(worst, maxdiff(hv[i], fd))
            scale = math.max(scale, hv[i]:abs():max():item())
        end
        assert.is_true(scale > 1e-3)
        assert.is_true(worst < tol * scale, string.format("worst %.3g, scale %.3g", worst, scale))
    end

    it("Hessian-vector products through batch norm in train mode equal finite differences", function()
        local m = nn.mlp{input = 4, hidden = {6, 5}, classes = 3, batchnorm = true,
                         activation = "tanh", dtype = "f64", seed = 3}
        local x = ls.randn({8, 4}, {seed = 2, dtype = "f64"})
        local y = ls.tensor({1, 2, 3, 1, 2, 3, 3, 1}, {dtype = "i64"})
        hvp_vs_fd(m, x, y, 1e-8)
        m:eval()
        hvp_vs_fd(m, x, y, 1e-8)
    end)

    conv_it("Hessian-vector products through a small CNN with batch norm", function()
        local m = nn.cnn{channels = {2, 3}, hidden = 4, classes = 3, input_size = 8,
                         dtype = "f64"}
        local x = ls.randn({4, 1, 8, 8}, {seed = 2, dtype = "f64"})
        hvp_vs_fd(m, x, ls.tensor({1, 2, 3, 1}, {dtype = "i64"}), 1e-8)
    end)
end)
