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

--- n random float64 images [n, 1, 8, 8] (N(0, 1)) with random labels 1..4, as a dataset.
function M.random_images(n, seed)
    local ls = require "landscape"
    local x = ls.randn({n, 1, 8, 8}, {seed = seed, dtype = "f64"})
    return ls.dataset(x, ls.randint(1, 5, {n}, {seed = seed + 1}))
end

return M
