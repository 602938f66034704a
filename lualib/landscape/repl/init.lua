--- landscape.repl: the pure-Lua half of the `landscape` REPL.
--
-- The C front end (engine/lua/cli/repl.c) reads lines and runs chunks; it calls two functions of
-- this module: M.show(...) to turn the results of a chunk into text, and M.complete_line(text,
-- width) when the user presses Tab. Everything here is a plain function that can be used and tested
-- on its own:
--
--   local repl = require "landscape.repl"
--   print(repl.pretty({1, 2, x = {y = "z"}}))   --> {1, 2, x = {y = "z"}}
--   repl.complete("string.fo")                 --> 1, {"string.format"}
--
-- Nothing here calls a metamethod other than __tostring (to show userdata and objects): completion
-- follows metatables' __index only when it is a table (or their `methods` table, see M.complete)
-- and reads tables with rawget/next, so pressing Tab never runs user code.
local M = {}

local KEYWORDS = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}
local IS_KEYWORD = {}
for _, k in ipairs(KEYWORDS) do IS_KEYWORD[k] = true end

-- How many __index hops completion follows (guards against __index cycles).
local MAX_INDEX_CHAIN = 16

local function is_identifier(s)
    return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil and not IS_KEYWORD[s]
end

---------------------------------------------------------------------------------------------------
-- Pretty-printing
---------------------------------------------------------------------------------------------------

-- Escapes used by M.quote; other control bytes become \ddd (three digits, so a following digit is
-- never read as part of the escape).
local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\", ['"'] = '\\"' }

--- A double-quoted Lua string literal for s that reads back as s and stays on one line.
-- Bytes >= 128 (UTF-8 text) are kept as they are.
function M.quote(s)
    local body = s:gsub('[%c"\\]', function(c)
        return ESCAPES[c] or string.format("\\%03d", c:byte())
    end)
    return '"' .. body .. '"'
end

-- tostring that never raises: a failing __tostring becomes a readable placeholder.
local function safe_tostring(v)
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then return s end
    return string.format("<%s: __tostring failed: %s>", type(v), tostring(s))
end

local function has_tostring(v)
    local mt = debug.getmetatable(v)
    return mt ~= nil and rawget(mt, "__tostring") ~= nil
end

-- Order of non-array keys: numbers ascending, then strings ascending, then the rest by tostring.
local TYPE_RANK = { number = 1, string = 2, boolean = 3 }
local function key_less(a, b)
    local ta, tb = TYPE_RANK[type(a)] or 4, TYPE_RANK[type(b)] or 4
    if ta ~= tb then return ta < tb end
    if ta == 1 or ta == 2 then return a < b end
    return safe_tostring(a) < safe_tostring(b)
end

local DEFAULTS = { depth = 3, items = 100, width = 80, indent = "  ", string = 200 }

local render -- forward declaration: render(v, opts, level, path) -> string (may span lines)

-- landscape.repl.help when t is a landscape module (it then prints the module's summary).
local function module_help(t)
    if not package.loaded.landscape then return nil end
    local ok, help = pcall(require, "landscape.repl.help")
    return ok and help.module_name(t) and help or nil
end

local function render_key(k, opts)
    if is_identifier(k) then return k end
    if type(k) == "string" then return "[" .. M.quote(k) .. "]" end
    if type(k) == "number" then return "[" .. safe_tostring(k) .. "]" end
    return "[" .. safe_tostring(k) .. "]"
end

-- Renders one table. `path` holds the tables being rendered above this one, so a reference back to
-- an ancestor prints as <cycle> instead of recursing forever; a table that is merely shared
-- (reached twice, not through itself) is printed each time, bounded by the depth limit. The entries
-- are rendered once, then laid out on one line if they fit in the width left at this level, else
-- one entry per line.
local function render_table(t, opts, level, path)
    if path[t] then return "<cycle>" end
    if next(t) == nil then return "{}" end
    if level >= opts.depth then return "{...}" end
    path[t] = true
    local entries, shown, total = {}, 0, 0
    local n = 0
    while rawget(t, n + 1) ~= nil do n = n + 1 end
    for i = 1, n do
        total = total + 1
        if shown < opts.items then
            shown = shown + 1
            entries[shown] = render(rawget(t, i), opts, level + 1, path)
        end
    end
    local keys = {}
    for k in next, t do
        if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_less)
    for _, k in ipairs(keys) do
        total = total + 1
        if shown < opts.items then
            shown = shown + 1
            local value = render(rawget(t, k), opts, level + 1, path)
            entries[shown] = render_key(k, opts) .. " = " .. value
        end
    end
    path[t] = nil
    if total > shown then entries[#entries + 1] = string.format("... (%d more)", total - shown) end

    local one_line = "{" .. table.concat(entries, ", ") .. "}"
    local room = opts.width - level * #opts.indent
    if #one_line <= room and not one_line:find("\n", 1, true) then return one_line end
    -- Multi-line layout: short entries are packed several to a line (a long array of numbers takes
    -- a few lines, not one per number); an entry that spans lines gets lines of its own.
    local lines, cur = { "{" }, nil
    for _, e in ipairs(entries) do
        local item = e .. ","
        if e:find("\n", 1, true) then
            if cur then lines[#lines + 1] = cur end
            lines[#lines + 1] = opts.indent .. item:gsub("\n", "\n" .. opts.indent)
            cur = nil
        elseif cur and #cur + 1 + #item <= room then
            cur = cur .. " " .. item
        else
            if cur then lines[#lines + 1] = cur end
            cur = opts.indent .. item
        end
    end
    if cur then lines[#lines + 1] = cur end
    lines[#lines + 1] = "}"
    return table.concat(lines, "\n")
end

render = function(v, opts, level, path)
    local tv = type(v)
    if tv == "string" then
        if level > 0 and #v > opts.string then
            return M.quote(v:sub(1, opts.string)) .. string.format("...(%d bytes)", #v)
        end
        return M.quote(v)
    elseif tv == "table" then
        if has_tostring(v) then return safe_tostring(v) end
        local help = level == 0 and module_help(v)
        if help then return help.summary(v) end   -- a landscape module: a summary, not its contents
        return render_table(v, opts, level, path)
    else
        return safe_tostring(v)
    end
end

--- M.pretty(v, opts) -> string: a readable rendering of any value.
-- Strings are quoted, tables are shown with their contents (array part first, then the other keys
-- sorted), values with a __tostring metamethod (tensors, objects) through it.
-- opts (all optional):
--   depth  = 3     table nesting levels shown; deeper non-empty tables print as {...}
--   items  = 100   entries shown per table, the rest summarised as "... (N more)"
--   width  = 80    a table whose one-line form fits in this many columns stays on one line
--   indent = "  "  indentation of nested multi-line tables
--   string = 200   strings inside tables longer than this are cut, with their length shown
-- A table that contains itself (directly or through other tables) prints the back reference as
-- <cycle>.
function M.pretty(v, opts)
    local o = {}
    for k, d in pairs(DEFAULTS) do
        local x = opts and opts[k]
        if x == nil then x = d end
        o[k] = x
    end
    return render(v, o, 0, {})
end

--- M.show(...) -> string: the results of a REPL chunk as printed by the REPL (no trailing newline).
-- Each value goes through M.pretty; values are separated by tabs, or by newlines when one of them
-- spans several lines. No values gives the empty string.
function M.show(...)
    local n = select("#", ...)
    local parts, multi = {}, false
    for i = 1, n do
        parts[i] = M.pretty((select(i, ...)))
        if parts[i]:find("\n", 1, true) then multi = true end
    end
    return table.concat(parts, multi and "\n" or "\t")
end

---------------------------------------------------------------------------------------------------
-- Completion
---------------------------------------------------------------------------------------------------

-- Whether the end of `text` lies inside a string literal or a comment, where identifiers are not
-- code. Short strings with escapes, long brackets ([[ ]], [==[ ]==]) and -- comments are
-- recognised.
local function in_string_or_comment(text)
    local i, n = 1, #text
    while i <= n do
        local c = text:sub(i, i)
        if c == '"' or c == "'" then
            local j = i + 1
            while j <= n do
                local d = text:sub(j, j)
                if d == "\\" then
                    j = j + 2
                elseif d == c then
                    break
                else
                    j = j + 1
                end
            end
            if j > n then return true end
            i = j + 1
        elseif c == "[" and text:match("^%[=*%[", i) then
            local eqs = text:match("^%[(=*)%[", i)
            local close = text:find("]" .. eqs .. "]", i, true)
            if not close then return true end
            i = close + #eqs + 2
        elseif c == "-" and text:sub(i + 1, i + 1) == "-" then
            local eqs = text:match("^%-%-%[(=*)%[", i)
            if eqs then
                local close = text:find("]" .. eqs .. "]", i, true)
                if not close then return true end
                i = close + #eqs + 2
            else
                local eol = text:find("\n", i, true)
                if not eol then return true end
                i = eol + 1
            end
        else
            i = i + 1
        end
    end
    return false
end

-- Where completion looks after obj's own fields: its metatable's __index when that is a table, else
-- the metatable's `methods` table (the binding's convention when __index is a function that serves
-- both properties and methods, as for landscape.Tensor). nil when there is neither.
local function next_scope(obj)
    local mt = debug.getmetatable(obj)
    if mt == nil then return nil end
    local index = rawget(mt, "__index")
    if type(index) == "table" then return index end
    local methods = rawget(mt, "methods")
    if type(methods) == "table" then return methods end
    return nil
end

-- A field that the metatable lists in __names and can load with __load(obj, key) (the landscape
-- module's lazily loaded Lua modules: loading one runs only the library's own code).
local function load_lazy(obj, key)
    local mt = debug.getmetatable(obj)
    local names, load = mt and rawget(mt, "__names"), mt and rawget(mt, "__load")
    if type(names) ~= "table" or type(load) ~= "function" then return nil end
    for _, k in ipairs(names) do
        if k == key then
            local ok, v = pcall(load, obj, key)
            return ok and v or nil
        end
    end
    return nil
end

-- The value named by the raw field `key` of `obj`, following next_scope (never calling __index,
-- but loading a lazy module field, see load_lazy).
local function lookup(obj, key)
    for _ = 1, MAX_INDEX_CHAIN do
        if type(obj) == "table" then
            local v = rawget(obj, key)
            if v == nil then v = load_lazy(obj, key) end
            if v ~= nil then return v end
        end
        obj = next_scope(obj)
        if obj == nil then return nil end
    end
    return nil
end

local function is_callable(v)
    if type(v) == "function" then return true end
    local mt = debug.getmetatable(v)
    return mt ~= nil and rawget(mt, "__call") ~= nil
end

-- Adds to `set` the identifier keys of obj and of the tables reachable through next_scope. A
-- metatable may also list names that its __index function provides (e.g. lazily loaded submodules)
-- in a table `__names`, as an array of strings; those count as fields (and, not being resolvable,
-- as methods).
local function collect_fields(obj, set, methods_only)
    local visited = {}
    for _ = 1, MAX_INDEX_CHAIN do
        if type(obj) == "table" then
            if visited[obj] then break end
            visited[obj] = true
            for k, v in next, obj do
                if is_identifier(k) and (not methods_only or is_callable(v)) then set[k] = true end
            end
        end
        local mt = debug.getmetatable(obj)
        local names = mt and rawget(mt, "__names")
        if type(names) == "table" then
            for _, k in ipairs(names) do
                if is_identifier(k) then set[k] = true end
            end
        end
        obj = next_scope(obj)
        if obj == nil then break end
    end
end

-- Splits "a.b.c:pa" into the names {"a", "b", "c"}, the separator ":" and the partial name "pa".
-- Returns nil if the word is not such a path (e.g. ".x", "1.5", "a:b.c").
local function split_path(word)
    local names, pos = {}, 1
    while true do
        local name, sep, nextpos = word:match("^([%w_]*)([%.:]?)()", pos)
        if sep == "" then
            if name:match("^%d") then return nil end
            return names, names.sep, name
        end
        if not is_identifier(name) or names.sep == ":" then return nil end
        names[#names + 1] = name
        names.sep = sep
        pos = nextpos
    end
end

--- M.complete(text, env) -> start, candidates
-- text: the line up to the cursor; env: where global names are looked up (default _G).
-- Completes the identifier path that ends `text`: a global or keyword (`pri` -> `print`), a field
-- (`ls.ra` -> `ls.randn`) or a method (`x:su` -> `x:sum`, callable fields only). Fields of tables
-- and of their metatables' __index tables count, so userdata methods complete; when __index is a
-- function, the metatable's `methods` table and `__names` list stand in for it. Names starting with
-- "_" are offered only once the partial name starts with "_".
-- start is the 1-based index in text where the word begins; candidates is the sorted list of
-- complete words (each starting with text:sub(start)). Nothing to complete gives start = #text + 1
-- and {}.
function M.complete(text, env)
    env = env or _G
    local none = #text + 1
    local start = text:find("[%w_%.:]*$")
    local word = text:sub(start)
    if word == "" or in_string_or_comment(text) then return none, {} end
    local names, sep, partial = split_path(word)
    if not names then return none, {} end

    local set = {}
    if #names == 0 then
        collect_fields(env, set, false)
        for _, k in ipairs(KEYWORDS) do set[k] = true end
    else
        local obj = lookup(env, names[1])
        for i = 2, #names do
            if obj == nil then break end
            obj = lookup(obj, names[i])
        end
        if obj == nil then return none, {} end
        collect_fields(obj, set, sep == ":")
    end

    local head = word:sub(1, #word - #partial)
    local hidden = partial:sub(1, 1) ~= "_"
    local out = {}
    for k in pairs(set) do
        if k:sub(1, #partial) == partial and not (hidden and k:sub(1, 1) == "_") then
            out[#out + 1] = head .. k
        end
    end
    table.sort(out)
    return start, out
end

--- M.common_prefix(list) -> the longest string every element of list starts with ("" for {}).
function M.common_prefix(list)
    local p = list[1] or ""
    for i = 2, #list do
        local s = list[i]
        local n = 0
        while n < #p and n < #s and p:byte(n + 1) == s:byte(n + 1) do n = n + 1 end
        p = p:sub(1, n)
    end
    return p
end

--- M.columns(items, width) -> string: items laid out in columns down then across (like ls), each
-- line ending in "\n", no line wider than width (default 80) unless a single item is.
function M.columns(items, width)
    width = width or 80
    if #items == 0 then return "" end
    local w = 0
    for _, s in ipairs(items) do w = math.max(w, #s) end
    local colw = w + 2
    local ncols = math.max(1, (width + 2) // colw)
    local nrows = (#items + ncols - 1) // ncols
    local lines = {}
    for r = 1, nrows do
        local cells = {}
        for c = 0, ncols - 1 do
            local s = items[c * nrows + r]
            if s then cells[#cells + 1] = s .. string.rep(" ", colw - #s) end
        end
        lines[r] = (table.concat(cells):gsub("%s+$", ""))
    end
    return table.concat(lines, "\n") .. "\n"
end

--- M.complete_line(text, width, env) -> start, replacement, listing
-- What Tab does for the line `text` (up to the cursor) in a terminal `width` columns wide:
--   one candidate                    -> start, the candidate (replaces text:sub(start)), nil
--   several sharing a longer prefix  -> start, that prefix, nil
--   several otherwise                -> start, nil, the candidates' last names in columns
--   none                             -> nil
function M.complete_line(text, width, env)
    local start, cands = M.complete(text, env)
    if #cands == 0 then return nil end
    if #cands == 1 then return start, cands[1], nil end
    local prefix = M.common_prefix(cands)
    if #prefix > #text - start + 1 then return start, prefix, nil end
    local labels = {}
    for i, c in ipairs(cands) do labels[i] = c:match("[%w_]*$") end
    return start, nil, M.columns(labels, width)
end

return M
