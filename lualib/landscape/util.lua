--- Shared helpers of the Lua modules: error raising at the caller's line, option checking, shapes.
-- Errors inside a module are raised without a position (fail, level 0); each public function runs
-- its body under pcall and re-raises at level 2 (public), so the message points at the user's call:
-- "train.lua:12: fashion_mnist: ...".
local M = {}

--- Raise a formatted error without position information.
function M.fail(fmt, ...) error(string.format(fmt, ...), 0) end

--- Wrap fn so that its errors are re-raised at the caller's line; all results are passed through.
function M.public(fn)
    return function(...)
        local res = table.pack(pcall(fn, ...))
        if not res[1] then error(res[2], 2) end
        return table.unpack(res, 2, res.n)
    end
end

--- opts (nil -> {}) must be a table whose keys are all in the set `known`; errors name `who`.
function M.check_options(opts, known, who)
    if opts == nil then return {} end
    if type(opts) ~= "table" then M.fail("%s: expected an options table, got %s", who, type(opts)) end
    for k in pairs(opts) do
        if known[k] == nil then
            local names = {}
            for name in pairs(known) do names[#names + 1] = name end
            table.sort(names)
            M.fail("%s: unknown option '%s' (known: %s)", who, tostring(k), table.concat(names, ", "))
        end
    end
    return opts
end

--- "[3x4]" for a tensor's shape ("[]" for a 0-d tensor).
function M.shape_str(t)
    local s = t:size()
    if #s == 0 then return "[]" end
    return "[" .. table.concat(s, "x") .. "]"
end

return M
