--- landscape.study.serial: the text forms of the study runner's values, and its hash.
--
--   serial.canonical(cfg)   one canonical string per configuration: keys sorted, a float with an
--                           integral value written as that integer (so 1 and 1.0 are the same
--                           config), floats in the shortest form that reads back exactly
--   serial.hash(s)          64-bit FNV-1a of a string, finished with the splitmix64 mixer: an integer
--   serial.hex(h)           that integer as 16 hex digits
--   serial.encode(v)        a Lua literal that reads back to an equal value (integer/float subtype,
--                           NaN and infinities included); used for the job records on disk
--   serial.decode(s, name)  the value of such a literal, read with load() in an empty environment
--   serial.json(v)          JSON text (2-space indent; keys sorted; NaN and infinities as null);
--                           a table marked with serial.array(t) is always an array, even when empty
-- Values: nil, booleans, numbers, strings and tables of them with string keys or as lists.
local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

-- The shortest "%.Ng" that reads back to x (x finite).
local function shortest(x)
    for digits = 15, 17 do
        local s = string.format("%." .. digits .. "g", x)
        if tonumber(s) == x then return s end
    end
    return string.format("%.17g", x)
end

-- The keys of t sorted: a list 1..n keeps its order; otherwise every key must be a string.
local function keys_of(t, who)
    local n = #t
    local count = 0
    for _ in pairs(t) do count = count + 1 end
    if count == n then return nil end   -- a list (or empty)
    local keys = {}
    for k in pairs(t) do
        if type(k) ~= "string" then
            fail("%s: table keys must be strings or a list 1..n, got a %s key", who, type(k))
        end
        keys[#keys + 1] = k
    end
    table.sort(keys)
    return keys
end

local function canonical(v, seen)
    local tv = type(v)
    if tv == "number" then
        if v ~= v then return "nan" end
        if v == math.huge then return "inf" end
        if v == -math.huge then return "-inf" end
        if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 63 then
            return string.format("%d", math.tointeger(v))
        end
        return math.type(v) == "integer" and string.format("%d", v) or shortest(v)
    elseif tv == "string" then
        return string.format("%q", v)
    elseif tv == "boolean" then
        return tostring(v)
    elseif tv == "table" then
        if seen[v] then fail("canonical: a table contains itself") end
        seen[v] = true
        local keys = keys_of(v, "canonical")
        local parts = {}
        if keys then
            for i, k in ipairs(keys) do parts[i] = k .. "=" .. canonical(v[k], seen) end
        else
            for i, x in ipairs(v) do parts[i] = canonical(x, seen) end
        end
        seen[v] = nil
        return "{" .. table.concat(parts, ",") .. "}"
    end
    fail("canonical: values must be numbers, strings, booleans or tables of them, got a %s", tv)
end

--- The canonical text of a configuration (a table of numbers, strings, booleans, lists).
function M.canonical(cfg) return canonical(cfg, {}) end

--- 64-bit FNV-1a of s, then the splitmix64 finaliser (so that nearby strings give unrelated bits).
function M.hash(s)
    local h = -3750763034362895579   -- 0xcbf29ce484222325 (FNV offset basis)
    for i = 1, #s do
        h = (h ~ s:byte(i)) * 1099511628211   -- FNV prime 0x100000001b3, wrapping mod 2^64
    end
    h = (h ~ (h >> 30)) * -4658895280553007687   -- 0xbf58476d1ce4e5b9
    h = (h ~ (h >> 27)) * -7723592293110705685   -- 0x94d049bb133111eb
    return h ~ (h >> 31)
end

function M.hex(h) return string.format("%016x", h) end

local function encode(v, out, seen)
    local tv = type(v)
    if tv == "nil" then
        out[#out + 1] = "nil"
    elseif tv == "number" then
        if math.type(v) == "integer" then
            -- math.mininteger has no decimal literal that reads back as an integer
            out[#out + 1] = v == math.mininteger and "math.mininteger" or string.format("%d", v)
        elseif v ~= v then
            out[#out + 1] = "(0/0)"
        elseif v == math.huge or v == -math.huge then
            out[#out + 1] = v > 0 and "1e999" or "-1e999"
        else
            local s = shortest(v)
            if not s:find("[%.eEn]") then s = s .. ".0" end   -- reads back as a float
            out[#out + 1] = s
        end
    elseif tv == "string" then
        out[#out + 1] = string.format("%q", v)
    elseif tv == "boolean" then
        out[#out + 1] = tostring(v)
    elseif tv == "table" then
        if seen[v] then fail("encode: a table contains itself") end
        seen[v] = true
        local keys = keys_of(v, "encode")
        out[#out + 1] = "{"
        if keys then
            for i, k in ipairs(keys) do
                if i > 1 then out[#out + 1] = ", " end
                if k:match("^[%a_][%w_]*$") then
                    out[#out + 1] = k
                else
                    out[#out + 1] = string.format("[%q]", k)
                end
                out[#out + 1] = " = "
                encode(v[k], out, seen)
            end
        else
            for i, x in ipairs(v) do
                if i > 1 then out[#out + 1] = ", " end
                encode(x, out, seen)
            end
        end
        out[#out + 1] = "}"
        seen[v] = nil
    else
        fail("encode: cannot write a %s", tv)
    end
end

--- A Lua literal for v that reads back (serial.decode) to an equal value.
function M.encode(v)
    local out = {}
    encode(v, out, {})
    return table.concat(out)
end

--- The value of a literal written by serial.encode; name is used in error messages (a path).
function M.decode(s, name)
    local chunk, err = load("return " .. s, "=" .. (name or "record"), "t", {math = {
        mininteger = math.mininteger}})
    if not chunk then return nil, err end
    local ok, v = pcall(chunk)
    if not ok then return nil, v end
    return v
end

local array_mt = {}
--- Mark t as a JSON array (so that an empty t is written [] rather than {}); returns t.
function M.array(t) return setmetatable(t or {}, array_mt) end

local json_escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                      ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}

local function json(v, indent, out)
    local tv = type(v)
    if tv == "nil" then
        out[#out + 1] = "null"
    elseif tv == "boolean" then
        out[#out + 1] = tostring(v)
    elseif tv == "number" then
        if math.type(v) == "integer" then
            out[#out + 1] = string.format("%d", v)
        elseif v ~= v or v == math.huge or v == -math.huge then
            out[#out + 1] = "null"
        else
            out[#out + 1] = shortest(v)
        end
    elseif tv == "string" then
        out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c)
            return json_escapes[c] or string.format("\\u%04x", c:byte())
        end) .. '"'
    elseif tv == "table" then
        local keys = keys_of(v, "json")
        local inner = indent .. "  "
        if keys and getmetatable(v) == array_mt then fail("json: an array with string keys") end
        if not keys and #v == 0 then
            out[#out + 1] = getmetatable(v) == array_mt and "[]" or "{}"
            return
        end
        out[#out + 1] = keys and "{\n" or "[\n"
        local n = keys and #keys or #v
        for i = 1, n do
            out[#out + 1] = inner
            if keys then
                json(keys[i], inner, out)
                out[#out + 1] = ": "
                json(v[keys[i]], inner, out)
            else
                json(v[i], inner, out)
            end
            out[#out + 1] = i < n and ",\n" or "\n"
        end
        out[#out + 1] = indent .. (keys and "}" or "]")
    else
        fail("json: cannot write a %s", tv)
    end
end

--- JSON text for v, ending with a newline.
function M.json(v)
    local out = {}
    json(v, "", out)
    out[#out + 1] = "\n"
    return table.concat(out)
end

return M
