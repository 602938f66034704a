-- Specs of the Tensor API seen from Lua (engine/lua/lx_tensor.c, lx_ops.c, lx_random.c,
-- lx_system.c).
--
-- Values are checked against independent computations in plain Lua: the reference helpers below
-- walk x:totable() with loops; the engine never checks itself. Most inputs are f64 so tolerances can
-- be tight; f32 cases use f32-sized tolerances. The error paths live in errors_spec.lua.
local ls = require "landscape"

-- ---------------------------------------------------------------------------------------------
-- plain-Lua reference helpers
-- ---------------------------------------------------------------------------------------------

local function shape_of(t)
    local s = {}
    while type(t) == "table" do
        s[#s + 1] = #t
        t = t[1]
    end
    return s
end

local function flat(t, out)
    out = out or {}
    if type(t) ~= "table" then
        out[#out + 1] = t
        return out
    end
    for i = 1, #t do flat(t[i], out) end
    return out
end

-- Every 1-based multi-index of `shape`, in row-major order.
local function indices(shape)
    local out, idx = {}, {}
    local function rec(d)
        if d > #shape then
            out[#out + 1] = { table.unpack(idx) }
            return
        end
        for i = 1, shape[d] do
            idx[d] = i
            rec(d + 1)
        end
    end
    rec(1)
    return out
end

local function get(t, idx)
    for _, i in ipairs(idx) do t = t[i] end
    return t
end

-- A nested table of `shape` with element f(idx); a number for an empty shape.
local function build(shape, f)
    if #shape == 0 then return f({}) end
    local root = {}
    for _, idx in ipairs(indices(shape)) do
        local t = root
        for d = 1, #idx - 1 do
            t[idx[d]] = t[idx[d]] or {}
            t = t[idx[d]]
        end
        t[idx[#idx]] = f(idx)
    end
    return root
end

-- Element of t (shape ts) at a broadcast output index (NumPy rules: align right, size 1 repeats).
local function bget(t, ts, idx)
    if type(t) ~= "table" then return t end
    local off = #idx - #ts
    for k = 1, #ts do
        t = t[ts[k] == 1 and 1 or idx[k + off]]
    end
    return t
end

local function bshape(a, b)
    local n = math.max(#a, #b)
    local out = {}
    for i = 1, n do
        local x, y = a[i - (n - #a)] or 1, b[i - (n - #b)] or 1
        out[i] = x == 1 and y or x
    end
    return out
end

-- Reduce nested table t over 1-based `dims` (nil: all; negative from the end) with fn(list).
local function ref_reduce(t, dims, keepdim, fn)
    local shape = shape_of(t)
    local nd = #shape
    local red = {}
    if dims == nil then
        for d = 1, nd do red[d] = true end
    else
        for _, d in ipairs(dims) do red[d < 0 and d + nd + 1 or d] = true end
    end
    local groups = {}
    for _, idx in ipairs(indices(shape)) do
        local key = {}
        for d = 1, nd do if not red[d] then key[#key + 1] = idx[d] end end
        local k = table.concat(key, ",")
        groups[k] = groups[k] or {}
        table.insert(groups[k], get(t, idx))
    end
    local oshape = {}
    for d = 1, nd do
        if not red[d] then oshape[#oshape + 1] = shape[d]
        elseif keepdim then oshape[#oshape + 1] = 1 end
    end
    return build(oshape, function(oidx)
        local key, j = {}, 1
        for d = 1, nd do
            if not red[d] then
                key[#key + 1] = oidx[j]
                j = j + 1
            elseif keepdim then
                j = j + 1
            end
        end
        return fn(groups[table.concat(key, ",")])
    end)
end

local R = {}
function R.sum(v) local s = 0 for _, x in ipairs(v) do s = s + x end return s end
function R.mean(v) return R.sum(v) / #v end
function R.var(corr)
    return function(v)
        local m, s = R.mean(v), 0
        for _, x in ipairs(v) do s = s + (x - m) ^ 2 end
        return s / (#v - corr)
    end
end
function R.std(corr) local f = R.var(corr) return function(v) return math.sqrt(f(v)) end end
function R.max(v) local m = -math.huge for _, x in ipairs(v) do m = math.max(m, x) end return m end
function R.min(v) local m = math.huge for _, x in ipairs(v) do m = math.min(m, x) end return m end
function R.argmax(v)
    local b = 1
    for i, x in ipairs(v) do if x > v[b] then b = i end end
    return b
end
function R.argmin(v)
    local b = 1
    for i, x in ipairs(v) do if x < v[b] then b = i end end
    return b
end
function R.lse(v)
    local m, s = R.max(v), 0
    for _, x in ipairs(v) do s = s + math.exp(x - m) end
    return m + math.log(s)
end
function R.norm1(v) local s = 0 for _, x in ipairs(v) do s = s + math.abs(x) end return s end
function R.norm2(v) local s = 0 for _, x in ipairs(v) do s = s + x * x end return math.sqrt(s) end
function R.norminf(v)
    local m = 0
    for _, x in ipairs(v) do m = math.max(m, math.abs(x)) end
    return m
end

-- Deep comparison of numbers / nested tables with a relative-and-absolute tolerance.
local function close(actual, expected, tol, path)
    tol = tol or 1e-12
    path = path or "value"
    if type(expected) == "table" then
        assert(type(actual) == "table", path .. ": expected a table, got " .. tostring(actual))
        assert(#actual == #expected,
               string.format("%s: length %d, expected %d", path, #actual, #expected))
        for i = 1, #expected do close(actual[i], expected[i], tol, path .. "[" .. i .. "]") end
        return
    end
    assert(type(actual) == "number", path .. ": expected a number, got " .. type(actual))
    if expected ~= expected then
        assert(actual ~= actual, path .. ": expected NaN, got " .. actual)
    elseif expected == math.huge or expected == -math.huge then
        assert(actual == expected, path .. ": expected " .. expected .. ", got " .. actual)
    else
        assert(math.abs(actual - expected) <= tol * (1 + math.abs(expected)),
               string.format("%s: got %.17g, expected %.17g (tol %g)", path, actual, expected, tol))
    end
end

local function f64(t) return ls.tensor(t, { dtype = "f64" }) end
local function i64(t) return ls.tensor(t, { dtype = "i64" }) end

-- A fixed f64 test tensor [2x3x4] and its table.
local X = ls.randn({ 2, 3, 4 }, { seed = 11, dtype = "f64" })
local XT = X:totable()

-- ---------------------------------------------------------------------------------------------

describe("creation", function()
    it("builds from nested tables, with the shape and values given", function()
        local x = ls.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
        assert.are.same({ 2, 3 }, x.shape)
        assert.are.same({ 2, 3 }, x:size())
        assert.are.equal(3, x:size(2))
        assert.are.equal(3, x:size(-1))
        assert.are.equal(2, x.ndim)
        assert.are.equal(2, x:dim())
        assert.are.equal(6, x:numel())
        assert.are.equal(2, #x)
        assert.are.equal("f32", x.dtype)
        assert.are.equal("f32", x:type())
        assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, x:totable())
    end)

    it("makes a 0-d tensor from a number, and item()/totable() return the number", function()
        local s = ls.tensor(2.5, { dtype = "f64" })
        assert.are.same({}, s.shape)
        assert.are.equal(0, s.ndim)
        assert.are.equal(1, s:numel())
        assert.are.equal(2.5, s:item())
        assert.are.equal(2.5, s:totable())
    end)

    it("copies a tensor given to ls.tensor (no shared storage)", function()
        local a = ls.tensor({ 1, 2 })
        local b = ls.tensor(a, { dtype = "f32" })
        b[1] = 7
        assert.are.equal(1, a[1])
        assert.are.equal(7, b[1])
        assert.are.equal("f64", ls.tensor(a, { dtype = "f64" }).dtype)
    end)

    it("rejects ragged tables, including ragged empty rows", function()
        local ok, err = pcall(ls.tensor, { { 1, 2 }, { 3 } })
        assert.is_false(ok)
        assert.matches("ragged", err)
        ok, err = pcall(ls.tensor, { {}, { 1 } })
        assert.is_false(ok)
        assert.matches("ragged", err)
    end)

    it("makes empty tensors from empty tables", function()
        assert.are.same({ 0 }, ls.tensor({}).shape)
        assert.are.same({ 2, 0 }, ls.tensor({ {}, {} }).shape)
    end)

    it("zeros/ones/full take a shape table or integers, and a dtype", function()
        assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, ls.zeros(2, 3):totable())
        assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, ls.zeros({ 2, 3 }):totable())
        assert.are.same({ 1, 1 }, ls.ones(2, { dtype = "i64" }):totable())
        assert.are.equal("i64", ls.ones(2, { dtype = "i64" }).dtype)
        assert.are.same({ { 2.5, 2.5 } }, ls.full({ 1, 2 }, 2.5, { dtype = "f64" }):totable())
        assert.are.equal("f64", ls.full({ 1 }, 1, { dtype = "f64" }).dtype)
        assert.are.same({}, ls.zeros().shape)   -- no sizes: a 0-d tensor
    end)

    it("arange is PyTorch's half-open range", function()
        assert.are.same({ 0, 1, 2, 3 }, ls.arange(4):totable())
        assert.are.same({ 2, 3, 4 }, ls.arange(2, 5):totable())
        assert.are.same({ 1, 1.5, 2, 2.5 }, ls.arange(1, 3, 0.5, { dtype = "f64" }):totable())
        assert.are.same({ 5, 3 }, ls.arange(5, 1, -2):totable())
        assert.are.same({ 0 }, ls.arange(0, 1, 2):totable())
        assert.are.same({ 0 }, ls.arange(3, 1).shape)
        assert.are.equal("i64", ls.arange(3, { dtype = "i64" }).dtype)
    end)

    it("eye(n) and eye(n, m)", function()
        assert.are.same({ { 1, 0 }, { 0, 1 } }, ls.eye(2):totable())
        assert.are.same({ { 1, 0, 0 }, { 0, 1, 0 } }, ls.eye(2, 3):totable())
        assert.are.equal("f64", ls.eye(2, { dtype = "f64" }).dtype)
    end)

    it("zeros_like/ones_like keep shape and dtype unless told otherwise", function()
        local x = ls.tensor({ { 1, 2, 3 } }, { dtype = "f64" })
        local z = ls.zeros_like(x)
        assert.are.same({ 1, 3 }, z.shape)
        assert.are.equal("f64", z.dtype)
        assert.are.same({ { 0, 0, 0 } }, z:totable())
        local o = ls.ones_like(x, { dtype = "i64" })
        assert.are.equal("i64", o.dtype)
        assert.are.same({ { 1, 1, 1 } }, o:totable())
    end)

    it("is_tensor tells tensors from other values", function()
        assert.is_true(ls.is_tensor(ls.zeros(1)))
        assert.is_false(ls.is_tensor({}))
        assert.is_false(ls.is_tensor(3))
        local z
        do
            local c <close> = ls.zeros(1)
            z = c
        end
        assert.is_true(ls.is_tensor(z))   -- a closed tensor is still a Tensor
    end)

    it("views made from a tensor outlive its <close> scope", function()
        local v
        do
            local c <close> = ls.tensor({ 1, 2, 3 })
            v = c:narrow(1, 2, 2)
        end
        assert.are.same({ 2, 3 }, v:totable())
    end)

    it("ls.Tensor is the method table: functions added there become methods", function()
        ls.Tensor.spec_sumsq = function(x) return (x * x):sum() end
        assert.are.equal(25, ls.tensor({ 3, 4 }):spec_sumsq():item())
        ls.Tensor.spec_sumsq = nil
    end)

    it("requires_grad option and the autograd properties", function()
        local w = ls.tensor({ 1, 2 }, { requires_grad = true })
        assert.is_true(w.needs_grad)
        assert.is_true(w.is_leaf)
        assert.is_nil(w.grad_fn)
        assert.is_nil(w.grad)
        local y = (w * w):sum()
        assert.is_false(y.is_leaf)
        assert.are.equal("sum", y.grad_fn)
        y:backward()
        close(w.grad:totable(), { 2, 4 }, 1e-6)
    end)
end)

describe("dtypes and casts", function()
    it("f32 rounds to single precision, f64 keeps doubles", function()
        local v32 = ls.tensor({ 0.1 })[1]
        assert.are_not.equal(0.1, v32)
        assert.is_true(math.abs(v32 - 0.1) < 1e-8)
        assert.are.equal(0.1, f64({ 0.1 })[1])
    end)

    it("integer dtypes give Lua integers, float dtypes Lua floats", function()
        assert.are.equal("integer", math.type(i64({ 3 })[1]))
        assert.are.equal("integer", math.type(ls.tensor({ 3 }, { dtype = "u8" }):item()))
        assert.are.equal("float", math.type(ls.tensor({ 3 })[1]))
        assert.are.equal("integer", math.type(i64({ { 4 } }):totable()[1][1]))
    end)

    it("casts between f32, f64, i64 and u8 convert values (toward zero for integers)", function()
        local x = f64({ 3.7, -3.7, 200 })
        assert.are.same({ 3, -3, 200 }, x:long():totable())
        assert.are.equal("i64", x:long().dtype)
        assert.are.same({ 3, 200 }, f64({ 3.7, 200 }):byte():totable())
        assert.are.equal("u8", x:byte().dtype)
        assert.are.equal("f32", x:float().dtype)
        assert.are.equal("f64", i64({ 1 }):double().dtype)
        assert.are.same({ 1, 2 }, i64({ 1, 2 }):cast("f64"):totable())
        assert.are.equal("f64", i64({ 1 }):cast("f64").dtype)
    end)

    it("a cast to a new dtype is a copy; a cast to the same dtype shares storage", function()
        local x = ls.tensor({ 1, 2 })
        local d = x:double()
        d[1] = 9
        assert.are.equal(1, x[1])
        local same = x:float()
        same[1] = 5
        assert.are.equal(5, x[1])
    end)
end)

describe("indexing", function()
    it("x[i] is 1-based; negative counts from the end; 1-d gives numbers", function()
        local v = ls.tensor({ 10, 20, 30 })
        assert.are.equal(10, v[1])
        assert.are.equal(30, v[3])
        assert.are.equal(30, v[-1])
        assert.are.equal(10, v[-3])
    end)

    it("x[i] of a matrix is a row view; assignment writes through", function()
        local m = ls.tensor({ { 1, 2 }, { 3, 4 } })
        local row = m[2]
        assert.are.same({ 2 }, row.shape)
        assert.are.same({ 3, 4 }, row:totable())
        row[1] = 30
        assert.are.equal(30, m[2][1])
        m[1] = 7                        -- a number fills the row
        assert.are.same({ { 7, 7 }, { 30, 4 } }, m:totable())
        m[1] = ls.tensor({ 5, 6 })      -- a tensor is copied in
        assert.are.same({ 5, 6 }, m[1]:totable())
        m[2][2] = 0
        assert.are.same({ { 5, 6 }, { 30, 0 } }, m:totable())
    end)

    it("fill, zero and copy work in place and return the tensor", function()
        local x = ls.zeros(2, 2)
        assert.are.equal(x, x:fill(3))
        assert.are.same({ { 3, 3 }, { 3, 3 } }, x:totable())
        assert.are.equal(x, x:zero())
        assert.are.same({ { 0, 0 }, { 0, 0 } }, x:totable())
        assert.are.equal(x, x:copy(f64({ 1.5, 2 })))   -- broadcast and converted to f32
        assert.are.same({ { 1.5, 2 }, { 1.5, 2 } }, x:totable())
        assert.are.equal("f32", x.dtype)
    end)

    it("item() reads any one-element tensor", function()
        assert.are.equal(4, ls.tensor({ { 4 } }):item())
        assert.are.equal(-2, i64({ -2 }):item())
    end)

    it("clone() is an independent contiguous copy", function()
        local x = ls.tensor({ { 1, 2 }, { 3, 4 } }):t()
        local c = x:clone()
        assert.is_true(c:is_contiguous())
        assert.are.same(x:totable(), c:totable())
        c[1][1] = 99
        assert.are.equal(1, x[1][1])
    end)
end)

describe("equal", function()
    it("follows torch.equal", function()
        local a = ls.tensor({{1, 2, 3}, {4, 5, 6}})
        assert.is_true(a:equal(a:clone()))
        assert.is_true(a:equal(a:double()))                 -- dtypes may differ
        assert.is_false(a:equal(a:reshape({3, 2})))         -- same values, other shape
        assert.is_true(a:t():equal(a:clone():t()))          -- views
        local b = a:clone()
        b[2][3] = 7
        assert.is_false(a:equal(b))
        assert.is_false(ls.tensor({0 / 0}):equal(ls.tensor({0 / 0})))   -- NaN equals nothing
        assert.is_true(ls.tensor({-0.0}):equal(ls.tensor({0.0})))
        assert.has_error(function() a:equal(5) end)
    end)
end)

describe("views share storage", function()
    local function base() return ls.arange(6, { dtype = "f64" }):reshape(2, 3) end

    it("reshape / view of a contiguous tensor, -1 inferred", function()
        local x = base()
        local y = x:reshape(3, 2)
        assert.are.same({ { 0, 1 }, { 2, 3 }, { 4, 5 } }, y:totable())
        assert.are.same({ 6 }, x:reshape(-1).shape)
        assert.are.same({ 3, 2 }, x:view({ 3, -1 }).shape)
        y[1][1] = 42
        assert.are.equal(42, x[1][1])
        local v = x:view(6)
        v[6] = -1
        assert.are.equal(-1, x[2][3])
    end)

    it("t() and transpose swap dims as strided views", function()
        local x = base()
        local t = x:t()
        assert.are.same({ { 0, 3 }, { 1, 4 }, { 2, 5 } }, t:totable())
        assert.are.same({ 1, 3 }, t:stride())
        assert.is_false(t:is_contiguous())
        t[3][1] = 20
        assert.are.equal(20, x[1][3])
        local z = X:transpose(1, 3)
        assert.are.same({ 4, 3, 2 }, z.shape)
        assert.are.equal(XT[2][3][4], z[4][3][2])
        assert.are.same(z.shape, X:transpose(-1, 1).shape)
    end)

    it("permute reorders dims", function()
        local p = X:permute(3, 1, 2)
        assert.are.same({ 4, 2, 3 }, p.shape)
        for _, idx in ipairs({ { 1, 1, 1 }, { 4, 2, 3 }, { 2, 1, 3 } }) do
            assert.are.equal(XT[idx[2]][idx[3]][idx[1]], p[idx[1]][idx[2]][idx[3]])
        end
        assert.are.same({ 4, 2, 3 }, X:permute({ -1, 1, 2 }).shape)
        local x = base()
        x:permute(2, 1)[2][1] = 77
        assert.are.equal(77, x[1][2])
    end)

    it("narrow(dim, start, length) with a 1-based start", function()
        local x = base()
        local n = x:narrow(2, 2, 2)
        assert.are.same({ { 1, 2 }, { 4, 5 } }, n:totable())
        n:fill(9)
        assert.are.same({ { 0, 9, 9 }, { 3, 9, 9 } }, x:totable())
        assert.are.same({ { 3, 9, 9 } }, x:narrow(1, 2, 1):totable())
        assert.are.same({ { 9 }, { 9 } }, x:narrow(-1, 3, 1):totable())
    end)

    it("select(dim, index) drops the dim", function()
        local x = base()
        assert.are.same({ 1, 4 }, x:select(2, 2):totable())
        assert.are.same({ 3, 4, 5 }, x:select(1, 2):totable())
        assert.are.same({ 2, 5 }, x:select(-1, 3):totable())
        x:select(2, 1):fill(-5)
        assert.are.same({ { -5, 1, 2 }, { -5, 4, 5 } }, x:totable())
    end)

    it("squeeze and unsqueeze", function()
        local x = ls.zeros(1, 3, 1)
        assert.are.same({ 3 }, x:squeeze().shape)
        assert.are.same({ 3, 1 }, x:squeeze(1).shape)
        assert.are.same({ 1, 3 }, x:squeeze(-1).shape)
        assert.are.same({ 1, 3, 1 }, x:squeeze(2).shape)   -- size 3: left alone
        local v = ls.tensor({ 1, 2, 3 })
        assert.are.same({ 1, 3 }, v:unsqueeze(1).shape)
        assert.are.same({ 3, 1 }, v:unsqueeze(2).shape)
        assert.are.same({ 3, 1 }, v:unsqueeze(-1).shape)
        v:unsqueeze(1)[1][2] = 20
        assert.are.equal(20, v[2])
    end)

    it("expand repeats size-1 dims with stride 0", function()
        local v = ls.tensor({ 1, 2, 3 })
        local e = v:expand(2, 3)
        assert.are.same({ { 1, 2, 3 }, { 1, 2, 3 } }, e:totable())
        assert.are.same({ 0, 1 }, e:stride())
        local c = ls.tensor({ { 1 }, { 2 } }):expand({ 2, -1, 4 })
        assert.are.same({ 2, 2, 4 }, c.shape)
        assert.are.same({ 2, 2, 2, 2 }, c[2][2]:totable())
        v[2] = 7
        assert.are.equal(7, e[2][2])
    end)

    it("contiguous copies a strided view and aliases a contiguous tensor", function()
        local x = base()
        local t = x:t()
        local c = t:contiguous()
        assert.is_true(c:is_contiguous())
        assert.are.same(t:totable(), c:totable())
        c[1][1] = 100
        assert.are.equal(0, x[1][1])
        local a = x:contiguous()
        a[1][1] = 100
        assert.are.equal(100, x[1][1])
    end)

    it("reshape of a non-contiguous view copies", function()
        local x = base()
        local r = x:t():reshape(6)
        assert.are.same({ 0, 3, 1, 4, 2, 5 }, r:totable())
        r[1] = 50
        assert.are.equal(0, x[1][1])
    end)
end)

describe("elementwise ops", function()
    local P = ls.rand({ 2, 3 }, { seed = 3, dtype = "f64", lo = 0.5, hi = 2 })
    local PT = P:totable()
    local function map(t, f) return build(shape_of(t), function(i) return f(get(t, i)) end) end
    local function tanh(x) local e = math.exp(2 * x) return (e - 1) / (e + 1) end
    local unary = {
        neg = function(x) return -x end,
        exp = math.exp,
        abs = math.abs,
        sign = function(x) return x > 0 and 1 or (x < 0 and -1 or 0) end,
        relu = function(x) return x > 0 and x or 0 end,
        tanh = tanh,
        sigmoid = function(x) return 1 / (1 + math.exp(-x)) end,
        softplus = function(x) return math.log(1 + math.exp(x)) end,
    }
    for name, f in pairs(unary) do
        it(name .. " as method and module function", function()
            close(X[name](X):totable(), map(XT, f))
            close(ls[name](X):totable(), map(XT, f))
            assert.are.same(X.shape, X[name](X).shape)
        end)
    end

    it("log and sqrt on positive inputs", function()
        close(P:log():totable(), map(PT, math.log))
        close(P:sqrt():totable(), map(PT, math.sqrt))
    end)

    it("f32 inputs give f32 results within f32 precision", function()
        local x = ls.tensor({ -1.5, 0.25, 2 })
        local e = x:exp()
        assert.are.equal("f32", e.dtype)
        close(e:totable(), { math.exp(-1.5), math.exp(0.25), math.exp(2) }, 1e-6)
    end)

    local binary = {
        add = function(a, b) return a + b end,
        sub = function(a, b) return a - b end,
        mul = function(a, b) return a * b end,
        div = function(a, b) return a / b end,
        pow = function(a, b) return a ^ b end,
        minimum = math.min,
        maximum = math.max,
    }
    -- [2x3x1] with [4] broadcasts to [2x3x4]; for pow the base must be positive.
    local A = ls.rand({ 2, 3, 1 }, { seed = 4, dtype = "f64", lo = 0.5, hi = 2 })
    local B = ls.randn({ 4 }, { seed = 5, dtype = "f64" })
    local AT, BT = A:totable(), B:totable()
    for name, f in pairs(binary) do
        it(name .. " broadcasts [2x3x1] with [4]", function()
            local got = A[name](A, B)
            assert.are.same({ 2, 3, 4 }, got.shape)
            local want = build({ 2, 3, 4 }, function(i)
                return f(bget(AT, { 2, 3, 1 }, i), bget(BT, { 4 }, i))
            end)
            close(got:totable(), want)
            close(ls[name](A, B):totable(), want)
        end)
    end

    it("numbers stand in for tensors on either side", function()
        close(ls.sub(2, B):totable(), map(BT, function(b) return 2 - b end))
        close(B:div(4):totable(), map(BT, function(b) return b / 4 end))
        close(ls.maximum(B, 0):totable(), map(BT, function(b) return math.max(b, 0) end))
    end)

    it("metamethods + - * / ^ and unary minus, numbers on either side", function()
        local b = function(f) return map(BT, f) end
        close((B + 1):totable(), b(function(v) return v + 1 end))
        close((1 + B):totable(), b(function(v) return 1 + v end))
        close((B - 1):totable(), b(function(v) return v - 1 end))
        close((1 - B):totable(), b(function(v) return 1 - v end))
        close((B * 3):totable(), b(function(v) return v * 3 end))
        close((3 * B):totable(), b(function(v) return 3 * v end))
        close((B / 2):totable(), b(function(v) return v / 2 end))
        close((2 / B):totable(), b(function(v) return 2 / v end))
        close((B ^ 2):totable(), b(function(v) return v * v end))
        close((2 ^ B):totable(), b(function(v) return 2 ^ v end))
        close((-B):totable(), b(function(v) return -v end))
        assert.are.equal("f64", (B + 1).dtype)   -- the number takes the tensor's dtype
        local m = ls.tensor({ { 1 }, { 2 } }) * ls.tensor({ 10, 20, 30 })
        assert.are.same({ { 10, 20, 30 }, { 20, 40, 60 } }, m:totable())
    end)

    it("clamp / clip with both bounds, one bound, and the other", function()
        local x = f64({ -2, -0.5, 0, 0.5, 2 })
        assert.are.same({ -1, -0.5, 0, 0.5, 1 }, x:clamp(-1, 1):totable())
        assert.are.same({ 0, 0, 0, 0.5, 2 }, x:clamp(0):totable())
        assert.are.same({ -2, -0.5, 0, 0.25, 0.25 }, x:clamp(nil, 0.25):totable())
        assert.are.same({ -1, -0.5, 0, 0.5, 1 }, ls.clip(x, -1, 1):totable())
    end)

    it("comparisons give 1/0 in the inputs' dtype, with broadcasting", function()
        local a, b = f64({ 1, 2, 3 }), f64({ 2, 2, 2 })
        assert.are.same({ 0, 1, 0 }, a:eq(b):totable())
        assert.are.same({ 1, 0, 1 }, a:ne(b):totable())
        assert.are.same({ 1, 0, 0 }, a:lt(b):totable())
        assert.are.same({ 1, 1, 0 }, a:le(b):totable())
        assert.are.same({ 0, 0, 1 }, a:gt(2):totable())
        assert.are.same({ 0, 1, 1 }, a:ge(2):totable())
        assert.are.equal("f64", a:lt(b).dtype)
        assert.are.same({ { 1, 0, 0 }, { 1, 1, 0 } }, a:le(f64({ { 1 }, { 2 } })):totable())
    end)

    it("where(cond, a, b) selects and broadcasts", function()
        local cond = f64({ { 1, 0, 1 }, { 0, 0, 1 } })
        local got = ls.where(cond, f64({ 1, 2, 3 }), -1)
        assert.are.same({ { 1, -1, 3 }, { -1, -1, 3 } }, got:totable())
        local relu = ls.where(X:gt(0), X, 0)
        close(relu:totable(), map(XT, function(v) return v > 0 and v or 0 end))
    end)
end)

describe("reductions", function()
    local cases = {
        { nil, false }, { { 2 }, false }, { { -1 }, false }, { { 1, 3 }, false },
        { { 2 }, true }, { { 1, 3 }, true }, { nil, true },
    }
    local function label(dims, keep)
        local d = dims and "{" .. table.concat(dims, ",") .. "}" or "all"
        return d .. (keep and " keepdim" or "")
    end
    local ops = {
        sum = R.sum, mean = R.mean, max = R.max, min = R.min, logsumexp = R.lse,
    }
    for name, f in pairs(ops) do
        for _, c in ipairs(cases) do
            it(name .. " over " .. label(c[1], c[2]), function()
                local got = X[name](X, c[1], c[2])
                close(got:totable(), ref_reduce(XT, c[1], c[2], f))
            end)
        end
    end

    it("dims may be given as consecutive integers", function()
        close(X:sum(1, 3):totable(), ref_reduce(XT, { 1, 3 }, false, R.sum))
        close(ls.mean(X, 3, 2):totable(), ref_reduce(XT, { 2, 3 }, false, R.mean))
    end)

    it("a reduction over all dims is 0-d; keepdim keeps every dim as 1", function()
        assert.are.same({}, X:sum().shape)
        assert.are.same({ 1, 1, 1 }, X:sum(nil, true).shape)
        assert.are.same({ 2, 1, 4 }, X:max(2, true).shape)
        assert.are.same({ 3 }, X:min({ 1, -1 }).shape)
    end)

    it("var and std: Bessel's correction by default, any correction given", function()
        for _, c in ipairs(cases) do
            close(X:var(c[1], c[2]):totable(), ref_reduce(XT, c[1], c[2], R.var(1)))
            close(X:std(c[1], c[2]):totable(), ref_reduce(XT, c[1], c[2], R.std(1)))
        end
        close(X:var(2, false, 0):totable(), ref_reduce(XT, { 2 }, false, R.var(0)))
        close(X:std(nil, false, 0):item(), ref_reduce(XT, nil, false, R.std(0)))
        close(X:var({ 1, 2 }, true, 2):totable(), ref_reduce(XT, { 1, 2 }, true, R.var(2)))
        assert.are.equal(2.5, f64({ 1, 2, 3, 4, 5 }):var():item())
        assert.are.equal(2, f64({ 1, 2, 3, 4, 5 }):var(1, false, 0):item())
    end)

    it("norm with p = 1, 2 and inf, over dims", function()
        close(X:norm(1):item(), ref_reduce(XT, nil, false, R.norm1))
        close(X:norm():item(), ref_reduce(XT, nil, false, R.norm2))
        close(X:norm(2):item(), ref_reduce(XT, nil, false, R.norm2))
        close(X:norm(math.huge):item(), ref_reduce(XT, nil, false, R.norminf))
        close(X:norm(1, 3):totable(), ref_reduce(XT, { 3 }, false, R.norm1))
        close(X:norm(2, { 1, 2 }, true):totable(), ref_reduce(XT, { 1, 2 }, true, R.norm2))
        close(X:norm(math.huge, -1):totable(), ref_reduce(XT, { -1 }, false, R.norminf))
    end)

    it("f32 reductions accumulate accurately", function()
        local n = 100000
        local x = ls.full({ n }, 0.1)
        local f32_tenth = ls.tensor({ 0.1 })[1]
        close(x:sum():item(), n * f32_tenth, 1e-6)
        close(x:mean():item(), f32_tenth, 1e-6)
    end)

    it("argmax / argmin return 1-based positions as i64", function()
        local am = X:argmax(3)
        assert.are.equal("i64", am.dtype)
        assert.are.same(ref_reduce(XT, { 3 }, false, R.argmax), am:totable())
        assert.are.same(ref_reduce(XT, { 2 }, false, R.argmin), X:argmin(2):totable())
        assert.are.same(ref_reduce(XT, { -1 }, true, R.argmax), X:argmax(-1, true):totable())
        -- no dim: the 1-based flat position in row-major order
        assert.are.equal(R.argmax(flat(XT)), X:argmax():item())
        assert.are.equal(R.argmin(flat(XT)), X:argmin():item())
        assert.are.equal(3, ls.tensor({ 1, 5, 9, 9 }):argmax():item())   -- the first of ties
    end)
end)

describe("linear algebra", function()
    local function mm(a, b)
        local n, k, m = #a, #b, #b[1]
        return build({ n, m }, function(i)
            local s = 0
            for j = 1, k do s = s + a[i[1]][j] * b[j][i[2]] end
            return s
        end)
    end
    local A = ls.randn({ 3, 4 }, { seed = 21, dtype = "f64" })
    local B = ls.randn({ 4, 2 }, { seed = 22, dtype = "f64" })
    local AT, BT = A:totable(), B:totable()

    it("matmul of matrices, and its alias mm", function()
        local c = A:matmul(B)
        assert.are.same({ 3, 2 }, c.shape)
        close(c:totable(), mm(AT, BT))
        close(ls.mm(A, B):totable(), mm(AT, BT))
    end)

    it("matmul of transposed views matches the product of the copies", function()
        close(B:t():matmul(A:t()):totable(), mm(B:t():totable(), A:t():totable()))
    end)

    it("batched matmul broadcasts batch dims", function()
        local a = ls.randn({ 2, 1, 3, 4 }, { seed = 23, dtype = "f64" })
        local b = ls.randn({ 5, 4, 2 }, { seed = 24, dtype = "f64" })
        local c = ls.matmul(a, b)
        assert.are.same({ 2, 5, 3, 2 }, c.shape)
        local at, bt, ct = a:totable(), b:totable(), c:totable()
        for i = 1, 2 do
            for j = 1, 5 do close(ct[i][j], mm(at[i][1], bt[j])) end
        end
        local d = ls.matmul(a:select(2, 1), B)   -- [2x3x4] @ [4x2]
        close(d:totable()[2], mm(at[2][1], BT))
    end)

    it("1-D operands: vector @ vector is 0-d, matrix @ vector, vector @ matrix", function()
        local v = f64({ 1, 2, 3, 4 })
        local d = v:matmul(v)
        assert.are.same({}, d.shape)
        assert.are.equal(30, d:item())
        local mv = A:matmul(v)
        assert.are.same({ 3 }, mv.shape)
        close(mv:totable(), flat(mm(AT, { { 1 }, { 2 }, { 3 }, { 4 } })))
        local vm = v:matmul(B)
        assert.are.same({ 2 }, vm.shape)
        close(vm:totable(), mm({ { 1, 2, 3, 4 } }, BT)[1])
    end)

    it("dot and outer", function()
        local a, b = f64({ 1, 2, 3 }), f64({ 4, -5, 6 })
        assert.are.equal(12, a:dot(b):item())
        assert.are.equal(12, ls.dot(a, b):item())
        assert.are.same({ { 4, -5 }, { 8, -10 }, { 12, -15 } },
                        ls.outer(a, b:narrow(1, 1, 2)):totable())
    end)
end)

describe("index ops take 1-based indices", function()
    local M = f64({ { 1, 2, 3 }, { 4, 5, 6 } })

    it("gather along a dim", function()
        assert.are.same({ { 3, 1 }, { 5, 5 } }, M:gather(2, i64({ { 3, 1 }, { 2, 2 } })):totable())
        assert.are.same({ { 4, 2, 6 } }, M:gather(1, i64({ { 2, 1, 2 } })):totable())
    end)

    it("index_select with an index tensor or a Lua list", function()
        assert.are.same({ { 3, 1 }, { 6, 4 } }, M:index_select(2, i64({ 3, 1 })):totable())
        assert.are.same({ { 4, 5, 6 }, { 4, 5, 6 } }, M:index_select(1, { 2, 2 }):totable())
    end)

    it("scatter_add and index_add accumulate repeated indices", function()
        local z = ls.zeros(2, 3, { dtype = "f64" })
        local s = z:scatter_add(2, i64({ { 1, 1, 3 } }), f64({ { 1, 2, 3 } }))
        assert.are.same({ { 3, 0, 3 }, { 0, 0, 0 } }, s:totable())
        local a = z:index_add(1, i64({ 2, 2 }), f64({ { 1, 2, 3 }, { 10, 20, 30 } }))
        assert.are.same({ { 0, 0, 0 }, { 11, 22, 33 } }, a:totable())
        assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, z:totable())   -- not in place
    end)
end)

describe("softmax family and losses", function()
    local S = ls.randn({ 3, 4 }, { seed = 31, dtype = "f64" })
    local ST = S:totable()
    local function softmax_row(r)
        local l = R.lse(r)
        local o = {}
        for i, v in ipairs(r) do o[i] = math.exp(v - l) end
        return o
    end

    it("softmax and log_softmax over the last dim by default, or a given dim", function()
        local want = {}
        for i = 1, 3 do want[i] = softmax_row(ST[i]) end
        close(S:softmax():totable(), want)
        close(S:softmax(-1):totable(), want)
        close(S:log_softmax(2):exp():totable(), want)
        local col = S:softmax(1):totable()
        local c1 = softmax_row({ ST[1][1], ST[2][1], ST[3][1] })
        close({ col[1][1], col[2][1], col[3][1] }, c1)
    end)

    it("cross_entropy and nll_loss take 1-based class labels", function()
        local y = { 2, 4, 1 }
        local per = {}
        for i = 1, 3 do per[i] = R.lse(ST[i]) - ST[i][y[i]] end
        close(S:cross_entropy(i64(y), "none"):totable(), per)
        close(ls.cross_entropy(S, y):item(), R.mean(per))               -- a Lua list works too
        close(ls.cross_entropy(S, i64(y), { reduction = "sum" }):item(), R.sum(per))
        close(ls.nll_loss(S:log_softmax(), i64(y)):item(), R.mean(per))
    end)

    it("mse_loss", function()
        local a, b = f64({ 1, 2, 3 }), f64({ 1, 0, 0 })
        assert.are.equal(13 / 3, a:mse_loss(b):item())
        assert.are.equal(13, a:mse_loss(b, "sum"):item())
        assert.are.same({ 0, 4, 9 }, a:mse_loss(b, "none"):totable())
    end)

    it("one_hot(labels, C) with 1-based labels", function()
        local o = ls.one_hot(i64({ 1, 3 }), 3)
        assert.are.equal("f32", o.dtype)
        assert.are.same({ { 1, 0, 0 }, { 0, 0, 1 } }, o:totable())
        assert.are.same({ { 0, 1 } }, ls.one_hot({ 2 }, 2):totable())
    end)
end)

describe("tostring", function()
    it("shows values, dtype and shape", function()
        local s = tostring(f64({ { 1, 2 }, { 3, 4.5 } }))
        assert.truthy(s:find("dtype=f64", 1, true))
        assert.truthy(s:find("shape=[2x2]", 1, true))
        assert.truthy(s:find("4.5000", 1, true))
        assert.falsy(s:find("...", 1, true))
        assert.truthy(tostring(i64({ 7 })):find("[ 7]", 1, true))
        assert.truthy(tostring(ls.tensor(1)):find("shape=[]", 1, true))
    end)

    it("summarises big tensors with '...'", function()
        local s = tostring(ls.arange(5000, { dtype = "f64" }))
        assert.truthy(s:find("...", 1, true))
        assert.truthy(s:find("4999", 1, true))
        assert.falsy(s:find("2500", 1, true))
        assert.truthy(s:find("shape=[5000]", 1, true))
        assert.is_true(#s < 400)
    end)

    it("marks tensors that require grad, and closed tensors", function()
        assert.truthy(tostring(ls.zeros(1):requires_grad()):find("requires_grad", 1, true))
        local t
        do
            local x <close> = ls.zeros(1)
            t = x
        end
        assert.are.equal("tensor(closed)", tostring(t))
    end)
end)

describe("randomness", function()
    it("the same seed gives the same numbers; another seed others", function()
        ls.manual_seed(123)
        assert.are.equal(123, ls.initial_seed())
        local a = ls.randn({ 50 }):totable()
        local a2 = ls.randn({ 50 }):totable()
        ls.manual_seed(123)
        assert.are.same(a, ls.randn({ 50 }):totable())
        assert.are_not.same(a, a2)
        ls.manual_seed(124)
        assert.are_not.same(a, ls.randn({ 50 }):totable())
    end)

    it("{seed =} is reproducible on its own and leaves the global stream alone", function()
        local p = ls.rand({ 20 }, { seed = 7 }):totable()
        assert.are.same(p, ls.rand({ 20 }, { seed = 7 }):totable())
        ls.manual_seed(5)
        local g1 = ls.rand({ 10 }):totable()
        ls.manual_seed(5)
        ls.rand({ 10 }, { seed = 99 })
        ls.randn({ 3 }, { seed = 98 })
        ls.randperm(10, { seed = 97 })
        ls.randint(0, 5, { 4 }, { seed = 96 })
        assert.are.same(g1, ls.rand({ 10 }):totable())
    end)

    it("rand is uniform in [lo, hi)", function()
        local v = flat(ls.rand({ 5000 }, { seed = 1, dtype = "f64", lo = -2, hi = 3 }):totable())
        local lo, hi = R.min(v), R.max(v)
        assert.is_true(lo >= -2 and hi < 3)
        assert.is_true(lo < -1.9 and hi > 2.9)
        close(R.mean(v), 0.5, 0.1)
    end)

    it("randn has the requested mean and std; f32 is the f64 draw rounded", function()
        local opts = { seed = 2, dtype = "f64", mean = 3, std = 2 }
        local v = flat(ls.randn({ 20000 }, opts):totable())
        assert.is_true(math.abs(R.mean(v) - 3) < 0.1)
        assert.is_true(math.abs(math.sqrt(R.var(1)(v)) - 2) < 0.1)
        close(ls.randn({ 8 }, { seed = 4 }):totable(),
              ls.randn({ 8 }, { seed = 4, dtype = "f64" }):totable(), 1e-6)
    end)

    it("rademacher gives +-1", function()
        local v = flat(ls.rademacher({ 200 }, { seed = 3 }):totable())
        local seen = {}
        for _, x in ipairs(v) do seen[x] = true end
        assert.are.same({ [1] = true, [-1] = true }, seen)
    end)

    it("randint draws i64 integers in [lo, hi)", function()
        local r = ls.randint(-2, 3, { 500 }, { seed = 8 })
        assert.are.equal("i64", r.dtype)
        local seen = {}
        for _, x in ipairs(r:totable()) do seen[x] = true end
        assert.are.same({ [-2] = true, [-1] = true, [0] = true, [1] = true, [2] = true }, seen)
        assert.are.equal("f64", ls.randint(0, 2, { 2 }, { dtype = "f64" }).dtype)
    end)

    it("randperm(n) is a permutation of 1..n", function()
        local p = ls.randperm(50, { seed = 9 })
        assert.are.equal("i64", p.dtype)
        local v = p:totable()
        local identity = true
        for i = 1, 50 do if v[i] ~= i then identity = false end end
        assert.is_false(identity)
        table.sort(v)
        for i = 1, 50 do assert.are.equal(i, v[i]) end
        assert.are.same({ 0 }, ls.randperm(0).shape)
    end)
end)

describe("threads", function()
    it("set_threads(1) and set_threads(2) give identical random draws and reductions", function()
        local saved = ls.get_threads()
        local function run()
            local r = ls.randn({ 300000 }, { seed = 12, dtype = "f32" })
            local m = r:reshape(300, 1000)
            return {
                r:sum():item(), r:var():item(), r:norm():item(), r:max():item(),
                m:sum(2):totable(), m:logsumexp(1):totable(), r:dot(r):item(),
                flat(ls.rand({ 70000 }, { seed = 13 }):totable()),
            }
        end
        ls.set_threads(1)
        assert.are.equal(1, ls.get_threads())
        local one = run()
        ls.set_threads(2)
        assert.are.equal(2, ls.get_threads())
        local two = run()
        ls.set_threads(saved)
        assert.are.same(one, two)
        assert.are.equal(saved, ls.get_threads())
    end)

    it("system_info reports the thread setting, the BLAS and the GEMM path", function()
        local saved = ls.get_threads()
        ls.set_threads(1)
        local i = ls.system_info()
        ls.set_threads(saved)
        assert.are.equal(1, i.threads)
        assert.are.equal(ls.available_cores(), i.cores)
        assert.is_true(i.blas_threads >= 1 and i.blas_threads <= i.cores)
        assert.matches("OpenBLAS", i.blas)
        assert.is_true(#i.blas_kernel > 0)
        assert.is_true(i.gemm == "avx512" or i.gemm == "blas")
    end)
end)

describe("the module", function()
    it("require 'landscape' sets no globals", function()
        local lua = (arg and arg[-1]) or "lua5.4"
        local code = [[
            local before = {}
            for k in pairs(_G) do before[k] = true end
            local ls = require "landscape"
            local x = ls.randn({2, 3}) + 1
            local _ = x:sum(), x:t():matmul(x), tostring(x), ls.version
            for k in pairs(_G) do if not before[k] then io.write(k, " ") end end
            io.write("END")
        ]]
        local f = assert(io.popen(string.format("%s -e %q 2>&1", lua, code:gsub("\n", " "))))
        local out = f:read("a")
        f:close()
        assert.are.equal("END", out)
    end)

    it("has a version string and memory accounting", function()
        assert.are.equal("string", type(ls.version))
        assert.truthy(ls.version:match("^%d+%.%d+%.%d+"))
        local before = ls.memory()
        local big = ls.zeros(1000, { dtype = "f64" })
        assert.is_true(ls.memory() >= before + 8000)
        assert.are.equal(1000, big:numel())
    end)
end)
