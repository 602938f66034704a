--- landscape.stats.args: argument conversion shared by the ls.stats modules (internal).
--
-- Vectors are 1-D Tensors (any dtype, read as f64 by the kernels) or Lua lists of numbers;
-- matrices are 2-D Tensors or Lua lists of equal-length rows. Errors name the public function
-- (`who`) and the argument (`what`), and carry no position: the public wrappers (util.public) add
-- the caller's.
local ls = require "landscape"
local util = require "landscape.util"

local fail = util.fail

local M = {}

local function describe(v)
    if type(v) == "string" then return string.format("a string ('%s')", v) end
    if ls.is_tensor(v) then return "a Tensor" end
    return "a " .. type(v)
end

--- vector(x, who, what) -> a 1-D Tensor.
function M.vector(x, who, what)
    if ls.is_tensor(x) then
        if x.ndim ~= 1 then
            fail("%s: %s must be a 1-D tensor or a list of numbers, got a tensor of shape %s", who,
                 what, util.shape_str(x))
        end
        return x
    end
    if type(x) ~= "table" then
        fail("%s: %s must be a 1-D tensor or a list of numbers, got %s", who, what, describe(x))
    end
    for i = 1, #x do
        if type(x[i]) ~= "number" then
            fail("%s: %s[%d] is %s, not a number", who, what, i, describe(x[i]))
        end
    end
    return ls.tensor(x, {dtype = "f64"})
end

--- matrix(X, who, what) -> a 2-D Tensor.
function M.matrix(X, who, what)
    what = what or "X"
    if ls.is_tensor(X) then
        if X.ndim ~= 2 then
            fail("%s: %s must be a 2-D tensor (rows x features), got shape %s", who, what,
                 util.shape_str(X))
        end
        return X
    end
    if type(X) ~= "table" then
        fail("%s: %s must be a 2-D tensor or a list of rows, got %s", who, what, describe(X))
    end
    local p
    for i = 1, #X do
        local row = X[i]
        if type(row) ~= "table" or ls.is_tensor(row) then
            fail("%s: %s[%d] must be a list of numbers, got %s", who, what, i, describe(row))
        end
        p = p or #row
        if #row ~= p then fail("%s: %s[%d] has %d entries, row 1 has %d", who, what, i, #row, p) end
        for j = 1, p do
            if type(row[j]) ~= "number" then
                fail("%s: %s[%d][%d] is %s, not a number", who, what, i, j, describe(row[j]))
            end
        end
    end
    if #X == 0 then fail("%s: %s has no rows", who, what) end
    return ls.tensor(X, {dtype = "f64"})
end

--- labels(g, n, who, what) -> a Lua list of n numbers or strings (group labels).
function M.labels(g, n, who, what)
    local out
    if ls.is_tensor(g) then
        if g.ndim ~= 1 then
            fail("%s: %s must be a 1-D tensor or a list, got shape %s", who, what,
                 util.shape_str(g))
        end
        out = g:totable()
    elseif type(g) == "table" then
        out = {}
        for i = 1, #g do
            local v = g[i]
            if type(v) ~= "number" and type(v) ~= "string" then
                fail("%s: %s[%d] is %s (labels are numbers or strings)", who, what, i, describe(v))
            end
            if v ~= v then fail("%s: %s[%d] is NaN", who, what, i) end
            out[i] = v
        end
    else
        fail("%s: %s must be a 1-D tensor or a list, got %s", who, what, describe(g))
    end
    if #out ~= n then fail("%s: %s has %d entries but there are %d rows", who, what, #out, n) end
    for i, v in ipairs(out) do
        if v ~= v then fail("%s: %s[%d] is NaN", who, what, i) end
        if type(v) == "number" then out[i] = math.tointeger(v) or v end   -- 500.0 prints as 500
    end
    return out
end

--- The distinct values of a list of labels, sorted (numbers before strings, each in natural order),
-- and a map value -> position in that order.
function M.levels(list)
    local seen, out = {}, {}
    for _, v in ipairs(list) do
        if not seen[v] then
            seen[v] = true
            out[#out + 1] = v
        end
    end
    table.sort(out, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then return ta == "number" end
        return a < b
    end)
    local pos = {}
    for i, v in ipairs(out) do pos[v] = i end
    return out, pos
end

--- Integer option check: opts[key] (default def) must be an integer >= lo.
function M.int(opts, key, def, lo, who)
    local v = opts[key]
    if v == nil then return def end
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
        fail("%s: option '%s' must be an integer, got %s", who, key, describe(v))
    end
    v = math.tointeger(v)
    if v < lo then fail("%s: option '%s' must be >= %d, got %d", who, key, lo, v) end
    return v
end

--- Mean and sample sd (ddof = 1; NaN for fewer than two values) of a list of numbers.
function M.mean_sd(list)
    local n = #list
    if n == 0 then return 0 / 0, 0 / 0 end
    local s = 0.0
    for _, v in ipairs(list) do s = s + v end
    local m = s / n
    if n < 2 then return m, 0 / 0 end
    local ss = 0.0
    for _, v in ipairs(list) do ss = ss + (v - m) ^ 2 end
    return m, math.sqrt(ss / (n - 1))
end

--- "%.4g" for numbers, "nan" for NaN (for the printed summaries).
function M.fmt(v, f)
    if type(v) ~= "number" then return tostring(v) end
    if v ~= v then return "nan" end
    return string.format(f or "%.4g", v)
end

return M
