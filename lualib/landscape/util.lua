--- landscape.util: the one error and option idiom of the Lua layer, and small argument checks.
--
-- Inside a module, errors are raised without a position (fail, level 0); each public function is
-- wrapped by `public`, which runs it under pcall and re-raises at level 2, so the message names
-- the function and points at the user's line: "train.lua:12: fashion_mnist: ..." (once: a public
-- function called by another passes the error on untouched). Every function
-- that takes an options table checks it with check_options: an unknown key is an error with a
-- suggestion, "<who>: unknown option 'probs' (did you mean 'probes'?)" (the suggestion is left out
-- when no known key is close). The suggestion rule (edit distance) is the C binding's
-- (ls._suggest, engine/lua/lx_util.c), so options read in C and in Lua are refused alike.
local ls = require "landscape"

local M = {}

--- Raise a formatted error without position information.
function M.fail(fmt, ...) error(string.format(fmt, ...), 0) end
local fail = M.fail

-- How many public functions are running (nested calls: ls.train calling obj:grad, ...). Only the
-- outermost one adds a position, so a message carries exactly one: the user's line.
local depth = 0

-- The folder of the library's Lua files ("/.../lualib/landscape/"): an error raised by a C function
-- called from a library line carries that line's position ("/.../nn/module.lua:311: save: ..."),
-- which says nothing to the user; the outermost public function drops it before adding the user's.
local LIBDIR = (debug.getinfo(1, "S").source:match("^@(.*/)util%.lua$") or "")
local LIBPOS = "^" .. LIBDIR:gsub("%p", "%%%0") .. "[^:]*%.lua:%d+: "

-- wrapper -> the function it wraps (for help: the wrapped function's source holds its doc)
local inner = setmetatable({}, {__mode = "k"})

--- Wrap fn so that its errors are re-raised at the caller's line; all results are passed through.
-- A public function called by another one (inside the library) passes errors on unchanged.
function M.public(fn)
    local w = function(...)
        depth = depth + 1
        local res = table.pack(pcall(fn, ...))
        depth = depth - 1
        if not res[1] then
            local err = res[2]
            if depth == 0 and type(err) == "string" and LIBDIR ~= "" then
                err = err:gsub(LIBPOS, "", 1)
            end
            error(err, depth == 0 and 2 or 0)
        end
        return table.unpack(res, 2, res.n)
    end
    inner[w] = fn
    return w
end

--- The function a public() wrapper wraps (f itself when it is not one).
function M.unwrap(f) return inner[f] or f end

--- The sorted names of a set {name = true, ...}.
function M.sorted_keys(set)
    local names = {}
    for k in pairs(set) do names[#names + 1] = k end
    table.sort(names)
    return names
end

--- "<who>: unknown <what> 'x' (did you mean 'y'?)": the message for a name not in `known` (a set),
-- with the closest known name when one is close.
function M.unknown(who, what, name, known)
    local near = type(name) == "string" and ls._suggest(name, M.sorted_keys(known)) or nil
    if near then
        return string.format("%s: unknown %s '%s' (did you mean '%s'?)", who, what, tostring(name),
                             near)
    end
    return string.format("%s: unknown %s '%s'", who, what, tostring(name))
end

--- opts (nil -> {}) must be a table whose keys are all in the set `known`; errors name `who`.
function M.check_options(opts, known, who)
    if opts == nil then return {} end
    if type(opts) ~= "table" then fail("%s: expected an options table, got %s", who, type(opts)) end
    for k in pairs(opts) do
        if known[k] == nil then error(M.unknown(who, "option", k, known), 0) end
    end
    return opts
end

--- The union of option sets (for functions that share a common set).
function M.options(...)
    local out = {}
    for i = 1, select("#", ...) do
        for k in pairs(select(i, ...)) do out[k] = true end
    end
    return out
end

--- "[3x4]" for a tensor's shape ("[]" for a 0-d tensor).
function M.shape_str(t)
    local s = t:size()
    if #s == 0 then return "[]" end
    return "[" .. table.concat(s, "x") .. "]"
end

--- v as an integer >= 1 (an integral float is accepted), else "<who>: <what> must be a positive
-- integer, got v". `what` names the argument: "option 'batch'", "in_features".
function M.posint(v, who, what)
    local n = type(v) == "number" and math.tointeger(v) or nil
    if not n or n < 1 then fail("%s: %s must be a positive integer, got %s", who, what, tostring(v)) end
    return n
end

--- v as a number > 0 (finite or not), else an error as posint's.
function M.posnum(v, who, what)
    if type(v) ~= "number" or not (v > 0) then
        fail("%s: %s must be a positive number, got %s", who, what, tostring(v))
    end
    return v
end

--- v as an integer (Lua integer type), else an error as posint's; nil passes when `optional`.
function M.integer(v, who, what, optional)
    if v == nil and optional then return nil end
    if math.type(v) ~= "integer" then
        fail("%s: %s must be an integer, got %s", who, what, tostring(v))
    end
    return v
end

--- A stream seed for draw (a, b) of a run with seed s (random directions, perturbations):
-- distinct for distinct (a, b), deterministic, below 2^53.
function M.subseed(s, a, b)
    return ((s * 1000003 + a) * 8191 + b) % 9007199254740881
end

--- True when v is a finite number.
function M.is_finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

return M
