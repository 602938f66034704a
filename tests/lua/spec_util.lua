--- Helpers shared by the specs (tests/lua is on LUA_PATH; only *_spec.lua files are tests).
local M = {}

--- The error message of fn(...), which must fail. (Plain Lua: busted's luassert is in the specs'
-- environment only, not in modules they require.)
function M.errmsg(fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then error("expected an error, the call succeeded", 2) end
    return tostring(err)
end

--- msg must contain text (plain).
function M.has(msg, text)
    if not msg:find(text, 1, true) then error("expected '" .. text .. "' in: " .. msg, 2) end
end

return M
