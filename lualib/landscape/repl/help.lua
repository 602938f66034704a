--- landscape.repl.help: help(f) and ?f in the REPL, summaries of modules, and "did you mean"
-- for misspelt names in error messages. Reached as ls.help; the REPL also sets the global `help`.
--
--   help(ls.randn)        the signature, a paragraph and an example
--   ?ls.nn.mlp            the same (the REPL turns "?expr" into "help(expr)")
--   help(ls.nn)           a module's summary: what it is and its functions
--   help("ls.plot.lines") by name (also for names not loaded yet)
--   help()                where to start
--
-- Where the text comes from (kept next to each function):
--   * C functions (the module `landscape` and Tensor methods): the entries each binding file
--     registers beside its function table (engine/lua/lx_*.c), gathered in ls._help by name;
--   * Lua functions: the comment block right above the function's definition in its source
--     file. Its lines starting with "---" are signatures (the one naming the function is taken),
--     the other lines the description, and the lines after a line "-- e.g." the example.
-- lookup(f) returns that entry; tests/lua/help_spec.lua checks that every public function has
-- a signature, a description and an example.
local ls = require "landscape"
local util = require "landscape.util"

local M = {}

-- The public tables, by name: the C module, its Lua modules and the objects' method tables. A
-- name maps to the table; `order` keeps them in a stable order.
local MODULES = {"nn", "optim", "data", "curvature", "sharpness", "landscape", "margins",
                 "methods", "csv", "fs", "plot", "stats", "table", "io", "linalg"}
M.MODULES = MODULES

local function is_callable(v)
    if type(v) == "function" then return true end
    local mt = debug.getmetatable(v)
    return mt ~= nil and rawget(mt, "__call") ~= nil
end

--- M.public() -> list of {name, value}: the public functions of landscape (the C module's, the
-- Tensor methods, and those of every module in MODULES and ls.optim.schedule; the lazily
-- exported functions such as ls.objective). Loads every module.
function M.public()
    local out, seen = {}, {}
    local function add(name, v)
        if not seen[name] then
            seen[name] = true
            out[#out + 1] = {name, v}
        end
    end
    local methods = getmetatable(ls.zeros(1)).methods
    for k, v in pairs(methods) do
        if type(v) == "function" and k:sub(1, 1) ~= "_" then add("Tensor:" .. k, v) end
    end
    local names = getmetatable(ls).__names
    for _, k in ipairs(names) do local _ = ls[k] end   -- load the lazy fields
    for k, v in pairs(ls) do
        if type(k) == "string" and k:sub(1, 1) ~= "_" and is_callable(v) and methods[k] ~= v then
            add("ls." .. k, v)
        end
    end
    local function walk(t, prefix)
        for k, v in pairs(t) do
            if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" then
                add(prefix .. k, v)
            end
        end
    end
    for _, m in ipairs(MODULES) do walk(ls[m], "ls." .. m .. ".") end
    walk(ls.optim.schedule, "ls.optim.schedule.")
    table.sort(out, function(a, b) return a[1] < b[1] end)
    return out
end

local by_value   -- function -> its public name (the first in sorted order), built on demand
--- M.name_of(f) -> "ls.plot.lines" (the public name of a function), or nil.
function M.name_of(f)
    if not by_value then
        by_value = {}
        for _, e in ipairs(M.public()) do
            if by_value[e[2]] == nil then by_value[e[2]] = e[1] end
        end
    end
    return by_value[f]
end

-- The value of a dotted public name ("ls.nn.mlp", "Tensor:size"), or nil.
local function resolve(name)
    local cls, meth = name:match("^Tensor[:.]([%w_]+)$")
    if cls then return getmetatable(ls.zeros(1)).methods[meth] end
    local path = name:gsub("^ls%.", "")
    local v = ls
    for part in path:gmatch("[^.:]+") do
        if type(v) ~= "table" then return nil end
        local ok, x = pcall(function() return v[part] end)
        if not ok then return nil end
        v = x
    end
    return v
end

-- Source lines of Lua files, cached.
local sources = {}
local function source_lines(path)
    if sources[path] == nil then
        local lines = {}
        local f = io.open(path)
        if f then
            for l in f:lines() do lines[#lines + 1] = l end
            f:close()
        end
        sources[path] = lines
    end
    return sources[path]
end

-- A one-line definition or assignment of a field ("function M.tanh() ... end",
-- "M.heatmap = public(function ... end)", "function Table:kind(n) ... end"): consecutive ones
-- share the comment block above them.
local function one_liner(l)
    return l:match("^%s*function [%w_]+[.:][%w_]+%b().*end%s*$") or
           (l:match("^%s*[%w_]+%.[%w_]+%s*=") and (not l:find("function", 1, true) or
                                                   l:match("end%)?%s*$")))
end

-- The comment lines right above line i (skipping a run of one-line definitions), or nil.
local function block_above(lines, i)
    i = i - 1
    while i >= 1 and one_liner(lines[i]) do i = i - 1 end
    local block = {}
    while i >= 1 and lines[i]:match("^%s*%-%-") do
        table.insert(block, 1, lines[i])
        i = i - 1
    end
    return #block > 0 and block or nil
end

-- Where a function is documented: the comment block above its public assignment (M.name = ...,
-- function M.name), above its local definition (local function name), or above the line where
-- the function value is defined; the first block with a "---" signature wins.
local function doc_block(lines, linedefined, short, method)
    local anchors = {}
    if short and method then   -- an object's method: its own definition first
        anchors[1] = linedefined
        local pats = {"^%s*[%w_]+[.:]" .. short .. "%s*=", "^%s*function%s+[%w_]+[.:]" .. short ..
                      "%s*%("}
        for _, pat in ipairs(pats) do
            for i, l in ipairs(lines) do
                if l:match(pat) then anchors[#anchors + 1] = i; break end
            end
        end
    elseif short then
        local pats = {"^%s*M%." .. short .. "%s*=", "^%s*function%s+M%." .. short .. "%s*%(",
                      "^%s*local%s+function%s+" .. short .. "%s*%("}
        for _, pat in ipairs(pats) do
            for i, l in ipairs(lines) do
                if l:match(pat) then anchors[#anchors + 1] = i; break end
            end
        end
    end
    anchors[#anchors + 1] = linedefined
    for _, a in ipairs(anchors) do
        local b = block_above(lines, a)
        if b then
            for _, l in ipairs(b) do
                if l:match("^%s*%-%-%-") then return b end
            end
        end
    end
    return nil
end

-- The entry of a Lua function from the comment block that documents it (doc_block).
local function from_comments(f, short, method)
    if type(f) ~= "function" then f = getmetatable(f).__call end   -- a callable table
    local info = debug.getinfo(util.unwrap(f), "S")
    if not info or info.what ~= "Lua" or info.source:sub(1, 1) ~= "@" then return nil end
    local block = doc_block(source_lines(info.source:sub(2)), info.linedefined, short, method)
    if not block then return nil end
    local sigs, text, example, in_example = {}, {}, {}, false
    for _, l in ipairs(block) do
        local sig = l:match("^%s*%-%-%-%s*(.-)%s*$")
        if sig and not in_example then
            sigs[#sigs + 1] = sig
        elseif l:match("^%s*%-%-%s*e%.g%.") then
            in_example = true
            local rest = l:match("^%s*%-%-%s*e%.g%.%s*(.-)%s*$")
            if rest ~= "" then example[#example + 1] = rest end
        else
            local body = l:gsub("^%s*%-%-+ ?", "")
            if in_example then example[#example + 1] = body else text[#text + 1] = body end
        end
    end
    local signature = sigs[1]
    for _, s in ipairs(sigs) do
        if short and s:find(short, 1, true) then signature = s; break end
    end
    return {signature = signature, description = table.concat(text, "\n"),
            example = table.concat(example, "\n")}
end

--- M.lookup(f) -> {name, signature, description, example} or nil and the reason. f is a function
-- or a public name ("ls.nn.mlp").
function M.lookup(f)
    local name
    if type(f) == "string" then
        name = f
        f = resolve(name)
        if f == nil then return nil, "no such function: " .. name end
    else
        name = M.name_of(f)
    end
    if not is_callable(f) then return nil, "not a function" end
    if not name and type(f) == "function" then   -- an object's method: find its name
        for k, v in pairs(package.loaded) do
            if type(k) == "string" and k:match("^landscape") and type(v) == "table" then
                for _, cls in pairs(v) do
                    if type(cls) == "table" and rawget(cls, "__index") ~= nil then
                        for mk, mv in pairs(cls) do
                            if mv == f and type(mk) == "string" then return M.lookup_method(f, mk) end
                        end
                    end
                end
            end
        end
    end
    local e
    local info = type(f) == "function" and debug.getinfo(f, "S")
    if info and info.what == "C" then
        local help = rawget(ls, "_help") or {}
        local key = name and (name:gsub("^ls%.", ""):gsub("^Tensor:", ""))
        e = key and help[key]
        if e then e = {signature = e[1], description = e[2], example = e[3]} end
    else
        e = from_comments(f, name and name:match("[%w_]+$"))
    end
    if not e then return nil, "no help text for " .. (name or tostring(f)) end
    e.name = name
    return e
end

--- M.lookup_method(f, name) -> entry or nil: the entry of an object's method (f the function,
-- name its method name), from the comment block above its definition.
function M.lookup_method(f, name)
    if type(f) ~= "function" then return nil end
    local e = from_comments(f, name, true)
    if e then e.name = name end
    return e
end

--- M.text(f) -> string: what help(f) prints.
function M.text(f)
    if f == nil then
        return "help(f) or ?f: a function's signature, description and example (e.g. ?ls.randn).\n" ..
               "help(ls) and help(ls.nn) summarise a module; typing a module shows the same.\n" ..
               "Tab completes names; errors suggest close names for misspelt ones.\n" ..
               "Documentation: docs/ in the source tree (README.md lists it)."
    end
    if type(f) == "table" and M.module_name(f) then return M.summary(f) end
    local e, why = M.lookup(f)
    if not e then return "help: " .. why end
    local parts = {e.signature or e.name or "?"}
    if e.description ~= "" then parts[#parts + 1] = e.description end
    if e.example ~= "" then
        parts[#parts + 1] = "Example:\n  " .. e.example:gsub("\n", "\n  ")
    end
    return table.concat(parts, "\n")
end

--- M.help(f): prints M.text(f).
-- Prints the signature, description and example of a function, or a module's summary; help()
-- says where to start. The REPL's global help and ?f are this function.
-- e.g. ls.help(ls.randn)
function M.help(f) print(M.text(f)) end

-- The C module's tables of functions, which have no source file to take a headline from.
local C_TABLES = {io = "ls.io: the file formats in C (IDX, CSV through libcsv, safetensors)",
                  linalg = "ls.linalg: linear systems through LAPACK",
                  Tensor = "ls.Tensor: the methods of every tensor (x:name(...))"}

--- M.module_name(t) -> "landscape.nn" when t is a loaded landscape module (or one of the C
-- module's tables of functions, "landscape.io"), else nil.
function M.module_name(t)
    if t == ls then return "landscape" end
    if type(t) ~= "table" then return nil end
    for k, v in pairs(package.loaded) do
        if v == t and type(k) == "string" and k:match("^landscape%.") then return k end
    end
    for k in pairs(C_TABLES) do
        if rawget(ls, k) == t then return "landscape." .. k end
    end
    return nil
end

--- M.summary(t) -> string: a module in a few lines (what it is, its functions and submodules).
-- For ls itself the tensor ops (also Tensor methods) are counted, not listed.
function M.summary(t)
    local modname = M.module_name(t)
    local fns, subs, nops = {}, {}, 0
    local methods = getmetatable(ls.zeros(1)).methods
    if t == ls then
        local mt = getmetatable(ls)
        for _, k in ipairs(mt and mt.__names or {}) do local _ = ls[k] end   -- load lazy fields
    end
    for k, v in pairs(t) do
        if type(k) == "string" and k:sub(1, 1) ~= "_" then
            if t == ls and methods[k] ~= nil and methods[k] == v then nops = nops + 1
            elseif is_callable(v) then fns[#fns + 1] = k
            elseif type(v) == "table" and M.module_name(v) then subs[#subs + 1] = k end
        end
    end
    local head
    if t == ls then
        head = "landscape (ls): tensors, autodiff, curvature, training and figures for " ..
               "loss landscapes"
    else
        local path = package.searchpath(modname, package.path)
        local line = path and source_lines(path)[1] or ""
        head = C_TABLES[modname:match("[%w_]+$")] or line:gsub("^%-%-%-%s*", "")
        if head == "" then head = modname end
    end
    table.sort(fns)
    table.sort(subs)
    local lines = {head}
    local function wrap(label, list)
        if #list == 0 then return end
        local cur = label
        for i, k in ipairs(list) do
            local item = k .. (i < #list and ", " or "")
            if #cur + #item > 96 then lines[#lines + 1] = cur; cur = "    " end
            cur = cur .. item
        end
        lines[#lines + 1] = cur
    end
    wrap(string.format("  %d functions: ", #fns), fns)
    if nops > 0 then
        lines[#lines + 1] = string.format("  %d tensor ops, also methods: ls.exp(x) is x:exp(); " ..
                                          "help(ls.Tensor) lists them", nops)
    end
    wrap("  modules: ", subs)
    lines[#lines + 1] = "  help(f) or ?f for one of them"
    return table.concat(lines, "\n")
end

-- Names a misspelt one may have meant, by the kind of name in a Lua error message.
local function candidates(kind)
    local set = {}
    local function add_keys(t)
        if type(t) ~= "table" then return end
        for k in pairs(t) do
            if type(k) == "string" and k:sub(1, 1) ~= "_" then set[k] = true end
        end
        local mt = getmetatable(t)
        if type(mt) == "table" and type(rawget(mt, "__names")) == "table" then
            for _, k in ipairs(mt.__names) do set[k] = true end
        end
    end
    if kind == "global" then
        add_keys(_G)
        return set
    end
    if kind == "method" then
        add_keys(getmetatable(ls.zeros(1)).methods)
        add_keys(string)
    else
        add_keys(ls)
        for _, lib in ipairs({string, table, math, io, os, debug, utf8, coroutine}) do
            add_keys(lib)
        end
    end
    -- every loaded landscape module, and the classes inside it (tables of functions)
    for k, v in pairs(package.loaded) do
        if type(k) == "string" and k:match("^landscape") and type(v) == "table" then
            if kind ~= "method" then add_keys(v) end
            for _, c in pairs(v) do
                if type(c) == "table" and (kind == "method") == (rawget(c, "__index") ~= nil) then
                    add_keys(c)
                end
            end
        end
    end
    return set
end

--- M.explain(msg) -> msg with " (did you mean 'x'?)" added when it is Lua's complaint about a nil
-- field, method or global whose name is close to a known one; else msg unchanged.
function M.explain(msg)
    if type(msg) ~= "string" then return msg end
    local kind, name = msg:match("attempt to %a+ a nil value %((%a+) '([%w_]+)'%)")
    if not kind or kind == "local" or kind == "upvalue" or kind == "constant" then return msg end
    local near = ls._suggest(name, util.sorted_keys(candidates(kind)))
    if not near or near == name then return msg end
    local at = msg:find("attempt to %a+ a nil value %(")
    local close = msg:find(")", at, true)
    return msg:sub(1, close) .. " (did you mean '" .. near .. "'?)" .. msg:sub(close + 1)
end

return M
