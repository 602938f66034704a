-- A random tester for the Lua API surface (docs/hardening.md): it calls the functions of `ls`,
-- `ls.io`, `ls.nn`, `ls.optim`, `ls.curvature` and every Tensor method with random arguments (odd
-- shapes and views, empty tensors, every dtype, huge and negative integers, NaN and infinities,
-- strings with NUL bytes, nested tables, closed tensors, functions) under pcall. A call may succeed
-- or raise; what it may not do is crash, abort, trip a sanitizer, or raise something that is not a
-- message naming a function. Deterministic for a seed.
--
--   lua5.4 tests/fuzz/api_fuzz.lua [calls = 3000] [seed = 1] [verbose]
-- (with LUA_PATH/LUA_CPATH as ctest sets them). `verbose` prints each call before making it, which
-- pins down a crash. Files are only written inside a fresh temporary directory.
local ls = require "landscape"

local ncalls = tonumber(arg and arg[1]) or 3000
local seed = tonumber(arg and arg[2]) or 1
local verbose = arg and arg[3] == "verbose"

-- our own generator (Lua's math.random would be shared with the code under test)
local state = seed * 2654435761 % 4294967296 + 1
local function rnd(n)   -- 1..n
    state = (state * 1103515245 + 12345) % 2147483648
    return state % n + 1
end
local function pick(list) return list[rnd(#list)] end

local dir = (io.open("/dev/shm") and "/dev/shm/" or "/tmp/") .. "ls_api_fuzz_" ..
            tostring({}):match("(%x+)$")
os.execute("mkdir -p '" .. dir .. "'")

local SIZES = {0, 1, 1, 2, 2, 3, 3, 4, 5}
local NUMBERS = {0, 1, -1, 2, 3, -2, 0.5, -0.0, 1e-300, 1e300, 2 ^ 31, 2 ^ 32 + 1, 2 ^ 40, 2 ^ 53,
                 math.maxinteger, math.mininteger, 0 / 0, 1 / 0, -1 / 0, 7, 10, 100}
local STRINGS = {"", "f32", "f64", "i64", "u8", "mean", "sum", "none", "largest", "hutch++",
                 "a\0b", "f32\0", "x", string.rep("z", 300), dir .. "/f.csv", dir .. "/f.idx",
                 dir .. "/f.idx.gz", dir .. "/f.safetensors", dir .. "/no/such/f", dir,
                 dir .. "/f\0.csv", "relu", "weight", "1.weight"}
local DTYPES = {"f32", "f64", "f64", "i64", "u8"}

local tensor, value, plausible

function tensor(depth)
    local nd = rnd(4) - 1
    local shape = {}
    for i = 1, nd do shape[i] = pick(SIZES) end
    local dt = pick(DTYPES)
    local ok, t = pcall(function()
        local x = ls.randn(shape, {seed = rnd(1000), dtype = dt == "i64" and "f64" or dt == "u8" and "f32" or dt})
        if dt == "i64" or dt == "u8" then x = (x * 3):abs():cast(dt) end
        local how = rnd(8)
        if how == 1 and nd >= 2 then x = x:t() end
        if how == 2 and nd >= 1 and shape[1] > 1 then x = x:narrow(1, 2, shape[1] - 1) end
        if how == 3 then x = x:reshape(-1):expand(2, x:numel()) end
        if how == 4 and nd >= 1 then x = x:unsqueeze(1) end
        if how == 5 and (dt == "f32" or dt == "f64") then x = x:requires_grad() end
        if how == 6 then
            local c = x:clone()
            local y <close> = c   -- closed at the end of this scope: a dead Tensor
            x = y
        end
        return x
    end)
    return ok and t or ls.zeros(2, 3)
end

function value(depth)
    depth = depth or 0
    local kind = rnd(depth > 1 and 7 or 10)
    if kind <= 3 then return tensor(depth) end
    if kind == 4 then return pick(NUMBERS) end
    if kind == 5 then return pick(STRINGS) end
    if kind == 6 then return pick({true, false, nil}) end
    if kind == 7 then return pick(SIZES) end
    if kind == 8 then   -- a list (shape-like or of values)
        local t = {}
        for i = 1, rnd(4) - 1 do t[i] = rnd(3) == 1 and pick(NUMBERS) or pick(SIZES) end
        return t
    end
    if kind == 9 then   -- an options-like table
        local keys = {"dtype", "seed", "k", "probes", "steps", "runs", "create_graph", "lr",
                      "batch", "epochs", "reduction", "which", "n", "matvec", "columns", "append",
                      "retain_graph", "allow_unused", "grad_outputs", "requires_grad"}
        local t = {}
        for _ = 1, rnd(3) do t[pick(keys)] = value(depth + 1) end
        return t
    end
    return function(...) return value(depth + 1) end
end

-- An argument that fits the tensor x: a tensor of its shape (or broadcastable, or an index tensor),
-- a dim of x, a size or shape drawn from x, a small count.
function plausible(x)
    local ok, shape = pcall(function() return x:size() end)
    if not ok then return value(0) end
    local nd = #shape
    local kind = rnd(9)
    if kind == 1 then return ls.randn(shape, {seed = rnd(100), dtype = pick({"f32", "f64"})}) end
    if kind == 2 then return rnd(2 * nd + 3) - nd - 2 end              -- a dim, maybe out of range
    if kind == 3 then return rnd(4) end                                -- a small count or index
    if kind == 4 then                                                  -- a permutation of the shape
        local t = {}
        for i = nd, 1, -1 do t[#t + 1] = shape[i] end
        if rnd(3) == 1 then t[#t + 1] = -1 end
        return t
    end
    if kind == 5 then                                                  -- an index tensor
        local n = nd > 0 and shape[1] or 1
        local idx = {}
        for i = 1, rnd(4) do idx[i] = rnd(n + 2) - 1 end
        return ls.tensor(idx, {dtype = "i64"})
    end
    if kind == 6 and nd > 0 then                                       -- a broadcastable tensor
        local t = {}
        for i = 1, nd do t[i] = rnd(2) == 1 and 1 or shape[i] end
        return ls.randn(t, {seed = rnd(100)})
    end
    if kind == 7 then return x end
    if kind == 8 then return {dtype = pick(DTYPES), keepdim = rnd(2) == 1, reduction = pick(STRINGS)} end
    return value(0)
end

-- the targets: name -> function, and method names of Tensor
local targets = {}
local SKIP = {set_threads = true, train = true, data = true, repl = true, plot = true, clock = true,
              _alloc_fail_after = true, manual_seed = false}
local function add_table(prefix, t)
    for k, f in pairs(t) do
        if type(k) == "string" and type(f) == "function" and not SKIP[k] then
            targets[#targets + 1] = {prefix .. k, f}
        end
    end
end
for _, k in ipairs({"margins", "stats", "sharpness", "landscape", "hvp", "jvp", "vjp", "gradcheck",
                    "evaluate", "dataset"}) do
    local _ = ls[k]   -- load the lazy fields
end
add_table("ls.", ls)
add_table("ls.io.", ls.io)
add_table("ls.optim.", ls.optim)
add_table("ls.curvature.", ls.curvature)
add_table("ls.nn.", ls.nn)
table.sort(targets, function(a, b) return a[1] < b[1] end)
local methods = {}
for k, f in pairs(ls.Tensor) do
    if type(f) == "function" then methods[#methods + 1] = k end
end
table.sort(methods)

local function describe(v)
    if ls.is_tensor(v) then
        local ok, s = pcall(function() return v:type() .. "[" .. table.concat(v:size(), "x") .. "]" end)
        return ok and s or "closed tensor"
    end
    if type(v) == "string" then return string.format("%q", v) end
    if type(v) == "table" then
        local parts = {}
        for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. "=" .. describe(x) end
        return "{" .. table.concat(parts, ", ") .. "}"
    end
    return tostring(v)
end

local bad, raised, calls = 0, 0, 0
for i = 1, ncalls do
    local name, fn, args
    local nargs = pick({0, 1, 1, 1, 2, 2, 3, 4})
    args = {n = nargs}
    if rnd(2) == 1 then
        local m = pick(methods)
        name = "Tensor:" .. m
        args[1] = tensor(0)
        -- half the time, arguments that fit self (same shape, its dims, 1-based indices), which get
        -- past the argument checks into the kernels
        local near = rnd(2) == 1
        for j = 2, nargs + 1 do args[j] = near and plausible(args[1]) or value(0) end
        args.n = nargs + 1
        fn = ls.Tensor[m]
    else
        local t = pick(targets)
        name, fn = t[1], t[2]
        local near = rnd(2) == 1   -- a tensor first, then arguments that fit it
        for j = 1, nargs do args[j] = (near and j == 1) and tensor(0) or
                                      (near and plausible(args[1]) or value(0)) end
    end
    if verbose then
        local d = {}
        for j = 1, args.n do d[j] = describe(args[j]) end
        io.stderr:write(string.format("%d %s(%s)\n", i, name, table.concat(d, ", ")))
        io.stderr:flush()
    end
    local ok, err = pcall(fn, table.unpack(args, 1, args.n))
    calls = calls + 1
    if not ok then
        raised = raised + 1
        if os.getenv("API_FUZZ_ERRORS") then io.stderr:write(tostring(err), "\n") end
        if type(err) ~= "string" or err:find("unknown engine error", 1, true) or
           err:find("engine bug", 1, true) then
            bad = bad + 1
            io.stderr:write(string.format("call %d %s: unclear error: %s\n", i, name, tostring(err)))
        end
    end
    if i % 200 == 0 then collectgarbage() end
end
os.execute("rm -rf '" .. dir .. "'")
print(string.format("api_fuzz: %d calls (seed %d), %d raised, %d unclear errors", calls, seed,
                    raised, bad))
os.exit(bad == 0 and 0 or 1)
