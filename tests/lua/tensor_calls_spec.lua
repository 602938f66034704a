-- The everyday tensor calls of issue #19: ls.cat / ls.stack, diag / trace, ls.linalg.solve / lstsq
-- (against NumPy, gradients against PyTorch and finite differences, second order through the
-- recorded backward), integer arithmetic and its dtype rules, and nn.cnn's variants. The
-- registry-driven first- and second-order gradient check of cat, diag, trace, linalg.solve and
-- linalg.lstsq is in tests/c/test_gradcheck.c.
local ls = require "landscape"
local torch = require "torch_oracle"
local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

local function f64(t) return ls.tensor(t, {dtype = "f64"}) end
local function randn(shape, seed) return ls.randn(shape, {seed = seed, dtype = "f64"}) end
local function max_abs(a, b) return (a - b):abs():max():item() end

-- sum_k <d/dx_k sum(f(x) * r), v_k> through create_graph, against central differences of the first
-- derivative (the same check as the C registry's, from Lua).
local function second_order_ok(f, xs)
    local y = f(table.unpack(xs))
    local r = ls.rand(y:size(), {seed = 7, dtype = "f64", lo = -1, hi = 1})
    local vs = {}
    for i, x in ipairs(xs) do vs[i] = ls.rand(x:size(), {seed = 10 + i, dtype = "f64", lo = -1, hi = 1}) end
    local g = ls.grad((f(table.unpack(xs)) * r):sum(), xs, {create_graph = true})
    local m = 0
    for i = 1, #xs do m = (g[i] * vs[i]):sum() + m end
    local h = ls.grad(m, xs)
    local function first(i, j, delta)
        local flat = xs[i]:detach():reshape(-1)
        local x0 = flat[j]
        flat[j] = x0 + delta
        local gg = ls.grad((f(table.unpack(xs)) * r):sum(), xs)
        flat[j] = x0
        local s = 0
        for k = 1, #xs do s = s + (gg[k] * vs[k]):sum():item() end
        return s
    end
    for i, x in ipairs(xs) do
        for j = 1, x:numel() do
            local num = (first(i, j, 1e-6) - first(i, j, -1e-6)) / 2e-6
            local ana = h[i]:reshape(-1)[j]
            if math.abs(ana - num) > 1e-6 + 1e-5 * math.abs(num) then
                return false, string.format("input %d element %d: %.10g vs %.10g", i, j, ana, num)
            end
        end
    end
    return true
end

describe("cat and stack", function()
    it("join along any dim, keep the dtype, and give each input its slice of the gradient", function()
        local a, b = f64({{1, 2}, {3, 4}}), f64({{5, 6}})
        assert.same({{1, 2}, {3, 4}, {5, 6}}, ls.cat({a, b}):totable())
        assert.same({{1, 2, 5}, {3, 4, 6}}, ls.cat({a, b:t()}, 2):totable())
        assert.same({{1, 2, 5}, {3, 4, 6}}, ls.cat({a, b:t()}, -1):totable())
        local y = ls.tensor({1, 2}, {dtype = "i64"})
        local c = ls.cat({y, y})
        assert.equal("i64", c:type())
        assert.same({1, 2, 1, 2}, c:totable())
        assert.same({{1, 2}, {1, 2}}, ls.stack({y, y}):totable())
        assert.same({{1, 1}, {2, 2}}, ls.stack({y, y}, 2):totable())
        assert.same({2, 2, 2}, ls.stack({a, a}, -1):size())
        -- gradients, first and second order
        local x1, x2, x3 = randn({2, 3}, 1):requires_grad(), randn({1, 3}, 2):requires_grad(),
                           randn({2, 3}, 3):requires_grad()
        local function cat3(p, q, r) return ls.cat({p, q, r}) * ls.cat({p, q, r}) end
        assert.is_true(ls.gradcheck(cat3, {x1, x2, x3}))
        assert.is_true(second_order_ok(cat3, {x1, x2, x3}))
        local function st(p, q) return ls.stack({p, q}, 2):exp() end
        assert.is_true(ls.gradcheck(st, {x1, x3}))
        assert.is_true(second_order_ok(st, {x1, x3}))
        -- many inputs (more than an op's fixed input slots)
        local parts = {}
        for i = 1, 40 do parts[i] = randn({1, 2}, i):requires_grad() end
        local g = ls.grad((ls.cat(parts) * ls.arange(80, {dtype = "f64"}):reshape(40, 2)):sum(),
                          parts)
        assert.same({{(39 - 1) * 2, (39 - 1) * 2 + 1}}, g[39]:totable())
    end)

    it("refuse mismatched shapes and dtypes, and lists that are not of tensors", function()
        local a = f64({{1, 2}, {3, 4}})
        has(errmsg(ls.cat, {a, f64({1, 2, 3})}), "cat: tensor 2 has shape [3], tensor 1 has [2x2]")
        has(errmsg(ls.cat, {a, ls.ones({2, 2})}), "cat: dtype mismatch: tensor 1 is f64, tensor 2 is f32")
        has(errmsg(ls.cat, {a, 3}), "cat: entry 2 of the list is a number, not a tensor")
        has(errmsg(ls.cat, {}), "cat: expected a non-empty list of tensors")
        has(errmsg(ls.cat, {a}, 3), "cat: dimension 3 out of range for a 2-d tensor")
        has(errmsg(ls.cat, {a}, 0), "dims are 1-based")
        has(errmsg(ls.stack, {a, f64({1})}), "stack: tensor 2 has shape [1], tensor 1 has [2x2]")
        has(errmsg(ls.stack, {a}, 4), "stack: dimension 4 out of range")
    end)
end)

describe("diag and trace", function()
    it("take and build diagonals (any offset) with gradients of every order", function()
        local m = f64({{1, 2, 3}, {4, 5, 6}})
        assert.same({1, 5}, m:diag():totable())
        assert.same({2, 6}, m:diag(1):totable())
        assert.same({4}, m:diag(-1):totable())
        assert.same({}, m:diag(3):totable())
        assert.same({{0, 1, 0}, {0, 0, 2}, {0, 0, 0}}, f64({1, 2}):diag(1):totable())
        assert.same({{0, 0}, {7, 0}}, ls.diag(f64({7}), -1):totable())
        assert.equal(6, m:trace():item())
        assert.equal(15, ls.eye(3, {dtype = "f64"}):mul(5):trace():item())
        local x = randn({3, 4}, 4):requires_grad()
        assert.is_true(ls.gradcheck(function(t) return t:diag(1) * t:diag(1) end, {x}))
        assert.is_true(second_order_ok(function(t) return t:diag(-1):exp() end, {x}))
        local v = randn({3}, 5):requires_grad()
        assert.is_true(second_order_ok(function(t) return t:diag(1):matmul(t:diag(1)) end, {v}))
        local g = ls.grad(x:trace(), {x})[1]
        assert.same({{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}, g:totable())
        assert.is_true(second_order_ok(function(t) return (t:matmul(t:t())):trace() end, {x}))
        has(errmsg(function() return randn({2, 2, 2}, 1):diag() end),
            "diag: expected a 1-D or 2-D tensor, got [2x2x2]")
        has(errmsg(function() return randn({3}, 1):trace() end), "trace: expected a 2-D tensor")
    end)
end)

describe("linalg", function()
    local A = f64({{4, 1, 0}, {1, 3, 1}, {0, 1, 2}})
    it("solve and lstsq agree with NumPy; lstsq is minimum-norm on a rank-deficient A", function()
        if not torch.available() then return pending(torch.MISSING) end
        local B = randn({3, 2}, 6)
        local T = randn({5, 3}, 7)
        local y = randn({5}, 8)
        local D = f64({{1, 2, 3}, {2, 4, 6}, {1, 0, 1}, {0, 1, 1}})   -- rank 2
        local z = randn({4}, 9)
        local W = randn({2, 4}, 10)
        local wb = randn({2}, 11)
        local out = torch.lines("import numpy as np\n" ..
            "def show(a): print(' '.join(repr(float(v)) for v in np.ravel(a)))\n" ..
            "show(np.linalg.solve(np.array(" .. torch.lit(A) .. "), np.array(" .. torch.lit(B) .. ")))\n" ..
            "show(np.linalg.lstsq(np.array(" .. torch.lit(T) .. "), np.array(" .. torch.lit(y) .. "), rcond=None)[0])\n" ..
            "show(np.linalg.lstsq(np.array(" .. torch.lit(D) .. "), np.array(" .. torch.lit(z) .. "), rcond=None)[0])\n" ..
            "show(np.linalg.lstsq(np.array(" .. torch.lit(W) .. "), np.array(" .. torch.lit(wb) .. "), rcond=None)[0])\n")
        local function nums(line)
            local t = {}
            for v in line:gmatch("%S+") do t[#t + 1] = tonumber(v) end
            return f64(t)
        end
        assert.is_true(max_abs(ls.linalg.solve(A, B):reshape(-1), nums(out[1])) < 1e-13)
        assert.is_true(max_abs(ls.linalg.lstsq(T, y), nums(out[2])) < 1e-13)
        assert.is_true(max_abs(ls.linalg.lstsq(D, z), nums(out[3])) < 1e-12)
        assert.is_true(max_abs(ls.linalg.lstsq(W, wb), nums(out[4])) < 1e-13)
        -- f32 runs in single precision
        local x32 = ls.linalg.solve(A:float(), B:float())
        assert.equal("f32", x32:type())
        assert.is_true(max_abs(x32:double(), ls.linalg.solve(A, B)) < 1e-5)
    end)

    it("gradients match PyTorch's and finite differences, to second order", function()
        local B = randn({3, 2}, 12)
        local a = A:clone():requires_grad()
        local b = B:clone():requires_grad()
        assert.is_true(ls.gradcheck(function(p, q) return ls.linalg.solve(p, q) end, {a, b}))
        assert.is_true(second_order_ok(function(p, q) return ls.linalg.solve(p, q) end, {a, b}))
        local v = randn({3}, 13):requires_grad()
        assert.is_true(second_order_ok(function(p, q) return ls.linalg.solve(p, q) end, {a, v}))
        local T = (randn({5, 3}, 14) + ls.eye(5, {dtype = "f64"}):narrow(2, 1, 3) * 2):requires_grad()
        local y = randn({5, 2}, 15):requires_grad()
        assert.is_true(second_order_ok(function(p, q) return ls.linalg.lstsq(p, q) end, {T, y}))
        local W = (randn({2, 4}, 16) + ls.eye(4, {dtype = "f64"}):narrow(1, 1, 2) * 2):requires_grad()
        local wb = randn({2}, 17):requires_grad()
        assert.is_true(second_order_ok(function(p, q) return ls.linalg.lstsq(p, q) end, {W, wb}))
        if not torch.available() then return pending(torch.MISSING) end
        local ga = ls.grad((ls.linalg.lstsq(T, y) * ls.arange(6, {dtype = "f64"}):reshape(3, 2)):sum(),
                           {T, y})
        local out = torch.lines("import torch\ntorch.set_default_dtype(torch.float64)\n" ..
            "A = torch.tensor(" .. torch.lit(T:detach()) .. ", requires_grad=True)\n" ..
            "B = torch.tensor(" .. torch.lit(y:detach()) .. ", requires_grad=True)\n" ..
            "X = torch.linalg.lstsq(A, B, driver='gelsd').solution\n" ..
            "(X * torch.arange(6.).reshape(3, 2)).sum().backward()\n" ..
            "print(' '.join(repr(float(v)) for v in A.grad.flatten()))\n" ..
            "print(' '.join(repr(float(v)) for v in B.grad.flatten()))\n")
        for k = 1, 2 do
            local t = {}
            for s in out[k]:gmatch("%S+") do t[#t + 1] = tonumber(s) end
            assert.is_true(max_abs(ga[k]:reshape(-1), f64(t)) < 1e-12)
        end
    end)

    it("name the shapes in their errors", function()
        has(errmsg(ls.linalg.solve, f64({{1, 2}, {2, 4}}), f64({1, 1})),
            "linalg.solve: A [2x2] is singular")
        has(errmsg(ls.linalg.solve, randn({2, 3}, 1), randn({2}, 1)),
            "linalg.solve: A must be a square matrix, got [2x3]")
        has(errmsg(ls.linalg.solve, A, randn({2}, 1)), "linalg.solve: B must be [3] or [3xk] for A [3x3], got [2]")
        has(errmsg(ls.linalg.lstsq, A, ls.ones({3})), "linalg.lstsq: dtype mismatch: f64 and f32")
    end)
end)

describe("integer arithmetic", function()
    it("add, sub, mul, neg stay integer; u8 widens to i64; overflow wraps", function()
        local y = ls.tensor({0, 1, 9}, {dtype = "i64"})
        local z = y + 1
        assert.equal("i64", z:type())
        assert.same({1, 2, 10}, z:totable())
        assert.same({0, 1, 81}, (y * y):totable())
        assert.same({3, 2, -6}, (3 - y):totable())
        assert.same({0, -1, -9}, (-y):totable())
        assert.same({{0, 1, 9}, {1, 2, 10}}, (y + ls.tensor({{0}, {1}}, {dtype = "i64"})):totable())
        local u = ls.tensor({200, 100}, {dtype = "u8"})
        local s = u + u
        assert.equal("i64", s:type())
        assert.same({400, 200}, s:totable())
        assert.same({-200, -100}, (-u):totable())
        local big = ls.tensor({math.maxinteger}, {dtype = "i64"})
        assert.equal(math.mininteger, (big + 1):item())              -- as Lua's integers wrap
        assert.equal(math.maxinteger * 3, (big * 3):item())
    end)

    it("compare exactly (beyond 2^53) into an f64 mask", function()
        local p = 1 << 53   -- 2^53 + 1 has no double
        local a = ls.tensor({p, p + 1, 5}, {dtype = "i64"})
        local b = ls.tensor({p + 1, p + 1, 4}, {dtype = "i64"})
        assert.equal(p + 1, a[2])                                    -- read back exactly
        assert.same({p + 2, p + 2}, (b:narrow(1, 1, 2) + 1):totable())
        local eq = a:eq(b)
        assert.equal("f64", eq:type())
        assert.same({0, 1, 0}, eq:totable())
        assert.same({1, 0, 0}, a:lt(b):totable())
        assert.same({0, 0, 1}, a:gt(b):totable())
        assert.same({1, 1, 0}, a:le(b):totable())
        assert.same({1, 0, 1}, a:ne(b):totable())
        assert.same({0, 1, 1}, a:ge(b):totable())
        assert.equal(1 / 3, ls.tensor({1, 2, 3}, {dtype = "i64"}):eq(2):mean():item())
    end)

    it("never mix with floats implicitly, and refuse fractional numbers", function()
        local y = ls.tensor({1, 2}, {dtype = "i64"})
        has(errmsg(function() return y + ls.ones({2}) end),
            "add: cannot mix i64 and f32 tensors (convert one with :double(), :float() or :long())")
        has(errmsg(function() return y + 0.5 end),
            "add: 0.5 is not an integer, and the other operand is i64")
        has(errmsg(function() return y:mul(1.5) end), "mul: 1.5 is not an integer")
        has(errmsg(function() return y / 2 end), "div: expected a float tensor (f32 or f64), got i64")
        has(errmsg(function() return y:exp() end), "exp: expected a float tensor")
        assert.same({2, 4}, (y * 2.0):totable())                     -- an integral float is fine
        has(errmsg(function() return y:requires_grad() end), "only float tensors can require gradients")
    end)
end)

describe("nn.cnn variants", function()
    local x = ls.randn({2, 1, 12, 12}, {seed = 3})
    it("express conv bias before batch norm, average pooling and global pooling", function()
        local nn = ls.nn
        local m = nn.cnn{channels = {4, 6}, hidden = 0, bias = true, pool = "avg",
                         global_pool = true, input_size = 12, seed = 2}
        local ref = nn.sequential{
            nn.conv2d(1, 4, 3, {padding = 1, bias = true, seed = 2001}), nn.batchnorm2d(4),
            nn.relu(), nn.avgpool2d(2),
            nn.conv2d(4, 6, 3, {padding = 1, bias = true, seed = 2002}), nn.batchnorm2d(6),
            nn.relu(), nn.avgpool2d(2), nn.global_avgpool(), nn.linear(6, 10, {seed = 2003})}
        local names, rnames = {}, {}
        for i, e in ipairs(m:state_dict()) do names[i] = e[1] end
        for i, e in ipairs(ref:state_dict()) do rnames[i] = e[1] end
        assert.same(rnames, names)
        assert.truthy(names[2] == "0.bias")
        assert.equal(0, max_abs(m(x):double(), ref(x):double()))
        -- global pooling makes the head independent of the input size
        assert.same({2, 10}, m(ls.randn({2, 1, 20, 20}, {seed = 4})):size())
        local nopool = nn.cnn{channels = {3}, hidden = 5, pool = "none", input_size = 12}
        assert.same({2, 10}, nopool(x):size())
        local w
        for _, e in ipairs(nopool:state_dict()) do if e[1] == "4.weight" then w = e[2] end end
        assert.same({5, 3 * 12 * 12}, w:size())                      -- linear(432, 5)
        has(errmsg(nn.cnn, {pool = "average"}), "cnn: unknown pool 'average'")
        has(errmsg(nn.cnn, {pool = "mxa"}), "(did you mean 'max'?)")
        has(errmsg(nn.cnn, {bias = 1}), "cnn: bias must be a boolean")
    end)
end)
