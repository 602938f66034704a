--- landscape.study.args: the one command-line parser of the scripts, and their settings columns.
--
--   local args = require "landscape.study.args"          -- also ls.study.args
--   local p = args.parser{name = "train_fashion_mnist",
--                         usage = "landscape scripts/train_fashion_mnist.lua [options]",
--                         options = {
--       {"model", "mlp", "architecture", choices = {"mlp", "cnn", "resnet"}},
--       {"hidden", nil, "MLP hidden widths", type = "list"},       -- --hidden 256,256 -> {256, 256}
--       {"epochs", 10, "passes over the training set", min = 1},
--       {"lr", nil, "learning rate (default by optimizer)", type = "number"},
--       {"augment", false, "random crops and flips"},          -- a flag: --augment, --no-augment
--       {"out", "out", "output directory", column = false},
--   }}
--   local opts, given = p:parse(arg)   -- opts.epochs == 10 unless given (then given.epochs)
--   rows[#rows + 1] = p:row(opts, {epoch = 1, loss = 0.3})   -- the settings columns, then measures
--   csv.write(path, rows, {columns = p:columns{"epoch", "loss"}})
--
-- args.parser(spec): spec.name (the prefix of messages), spec.usage (the usage line; default
-- "landscape <name>.lua [options]"), spec.options: a list of {name, default, help, key = value...}:
--   type     "integer" | "number" | "string" | "boolean" | "list" | "dir"; default: the default's
--            type (an integer default makes an integer option: write 0.0 for a number). "dir" is
--            an output directory: a string, created when missing and checked to be writable when
--            the arguments are parsed, so a bad path fails before any work is done
--   choices  a list of the allowed values
--   min      the smallest allowed value (numbers)
--   column   false: not a settings column (paths, verbosity); default true
-- Names use '_' ('--array-limit' and '--array_limit' are the same option). Values follow the name
-- (`--epochs 5`) or an '=' (`--epochs=5`); a boolean is set by `--flag` and cleared by `--no-flag`; a
-- list is comma-separated (numbers where they read as numbers). `-h`/`--help` prints the usage.
--
-- p:parse(argv) exits the process on a bad argument (the message and the usage on stderr, status 2)
-- and on --help (the usage on stdout, status 0); p:try(argv) returns nil, message instead (and
-- nil, "help" for --help). argv is Lua's `arg` (entries 1..n).
local util = require "landscape.util"

local M = {}

local fail = util.fail

local Parser = {}
Parser.__index = Parser
Parser.__name = "landscape.study.ArgParser"

local TYPES = {integer = true, number = true, string = true, boolean = true, list = true,
               dir = true}

local function typeof(default)
    local t = type(default)
    if t == "number" then return math.type(default) == "integer" and "integer" or "number" end
    if t == "string" or t == "boolean" then return t end
    if t == "table" then return "list" end
    return nil
end

--- args.parser(spec) -> parser (see the header).
function M.parser(spec)
    if type(spec) ~= "table" then fail("args.parser: expected a spec table") end
    util.check_options(spec, {name = true, usage = true, options = true}, "args.parser")
    local name = spec.name or "script"
    local p = setmetatable({name = name, usage_line = spec.usage or
                               ("landscape " .. name .. ".lua [options]"),
                           list = {}, by_name = {}}, Parser)
    for _, o in ipairs(spec.options or {}) do p:add(o) end
    return p
end

--- p:add(option): one more option (the same table form as in spec.options).
function Parser:add(o)
    if type(o) ~= "table" or type(o[1]) ~= "string" then
        fail("args.parser: an option is {name, default, help, ...}, got %s", tostring(o))
    end
    local name = o[1]:gsub("-", "_")
    if not name:match("^[%a_][%w_]*$") then fail("args.parser: bad option name '%s'", o[1]) end
    if self.by_name[name] then fail("args.parser: option '%s' given twice", name) end
    local keys = {}
    for k, v in pairs(o) do if math.type(k) ~= "integer" then keys[k] = v end end
    util.check_options(keys, {type = true, choices = true, min = true, column = true},
                       "args.parser: option '" .. name .. "'")
    local ty = o.type or typeof(o[2])
    if ty == nil then fail("args.parser: option '%s' has no default: give its type", name) end
    if not TYPES[ty] then fail("args.parser: option '%s': unknown type '%s'", name, tostring(ty)) end
    local opt = {name = name, default = o[2], help = o[3] or "", type = ty, choices = o.choices,
                 min = o.min, column = o.column ~= false}
    self.list[#self.list + 1] = opt
    self.by_name[name] = opt
    return self
end

local function convert(opt, text)
    local function bad(what)
        fail("--%s needs %s, got '%s'", opt.name:gsub("_", "-"), what, text)
    end
    local v
    if opt.type == "integer" then
        v = math.tointeger(tonumber(text))
        if v == nil then bad("a whole number") end
    elseif opt.type == "number" then
        v = tonumber(text)
        if v == nil then bad("a number") end
    elseif opt.type == "list" then
        v = {}
        for item in text:gmatch("[^,]+") do v[#v + 1] = tonumber(item) or item end
        if #v == 0 then bad("a comma-separated list") end
    elseif opt.type == "boolean" then
        if text == "true" or text == "1" then v = true
        elseif text == "false" or text == "0" then v = false
        else bad("true or false") end
    else
        v = text
    end
    if opt.min and type(v) == "number" and v < opt.min then
        bad(string.format("a value >= %s", tostring(opt.min)))
    end
    if opt.choices then
        local ok = false
        for _, c in ipairs(opt.choices) do if c == v then ok = true end end
        if not ok then
            local names = {}
            for i, c in ipairs(opt.choices) do names[i] = tostring(c) end
            bad("one of " .. table.concat(names, ", "))
        end
    end
    return v
end

local function copy(v)
    if type(v) ~= "table" then return v end
    local c = {}
    for k, x in pairs(v) do c[k] = x end
    return c
end

--- p:try(argv) -> opts, given | nil, message | nil, "help".
function Parser:try(argv)
    local opts, given = {}, {}
    for _, o in ipairs(self.list) do opts[o.name] = copy(o.default) end
    local ok, err = pcall(function()
        local i = 1
        local n = #argv
        while i <= n do
            local a = argv[i]
            if a == "-h" or a == "--help" then error({help = true}) end
            local key, val = a:match("^%-%-([%w_-]+)=(.*)$")
            if not key then key = a:match("^%-%-([%w_-]+)$") end
            if not key then fail("unexpected argument '%s'", a) end
            local name = key:gsub("-", "_")
            local opt = self.by_name[name]
            local negated = false
            if not opt and name:sub(1, 3) == "no_" and self.by_name[name:sub(4)]
                and self.by_name[name:sub(4)].type == "boolean" and val == nil then
                opt, negated = self.by_name[name:sub(4)], true
            end
            if not opt then fail("unknown option --%s", key) end
            if opt.type == "boolean" and val == nil then
                opts[opt.name] = not negated
                i = i + 1
            else
                if val == nil then
                    val = argv[i + 1]
                    if val == nil then fail("--%s needs a value", key) end
                    i = i + 2
                else
                    i = i + 1
                end
                opts[opt.name] = convert(opt, val)
            end
            given[opt.name] = true
        end
        for _, o in ipairs(self.list) do
            if o.type == "dir" and opts[o.name] ~= nil then
                local okd, derr = require("landscape.io.fs").check_writable_dir(opts[o.name])
                if not okd then fail("--%s %s: %s", o.name:gsub("_", "-"), opts[o.name], derr) end
            end
        end
    end)
    if not ok then
        if type(err) == "table" and err.help then return nil, "help" end
        return nil, tostring(err)
    end
    return opts, given
end

--- p:parse(argv) -> opts, given; exits on a bad argument (status 2) or --help (status 0).
function Parser:parse(argv)
    local opts, given = self:try(argv)
    if opts then return opts, given end
    if given == "help" then
        io.stdout:write(self:usage())
        io.stdout:flush()
        os.exit(0)
    end
    io.stderr:write(self.name, ": ", given, "\n", self:usage())
    io.stderr:flush()
    os.exit(2)
end

local function metavar(o)
    if o.choices then
        local names = {}
        for i, c in ipairs(o.choices) do names[i] = tostring(c) end
        return " " .. table.concat(names, "|")
    end
    return ({integer = " N", number = " X", string = " S", list = " A,B,..", boolean = "",
             dir = " DIR"})[o.type]
end

--- A value as command-line text (lists comma-joined, numbers exact).
function M.format(v)
    if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = M.format(x) end
        return table.concat(parts, ",")
    end
    if math.type(v) == "float" then
        for digits = 15, 17 do
            local s = string.format("%." .. digits .. "g", v)
            if tonumber(s) == v then return s end
        end
    end
    return tostring(v)
end

--- The usage text: the usage line, then one line per option with its default.
function Parser:usage()
    local lines = {"usage: " .. self.usage_line}
    local width = 0
    local heads = {}
    for i, o in ipairs(self.list) do
        heads[i] = "--" .. o.name:gsub("_", "-") .. metavar(o)
        width = math.max(width, #heads[i])
    end
    for i, o in ipairs(self.list) do
        local line = string.format("  %-" .. width .. "s  %s", heads[i], o.help)
        if o.default ~= nil and o.type ~= "boolean" then
            line = line .. " (default " .. M.format(o.default) .. ")"
        end
        lines[#lines + 1] = line
    end
    return table.concat(lines, "\n") .. "\n"
end

--- The arguments that reproduce opts, as a list of strings ({"--epochs", "5", "--augment"}): for
-- the options named in `names` (a list), or by default for every option whose value differs from
-- its default.
function Parser:argv(opts, names)
    local list = self.list
    if names then
        list = {}
        for i, n in ipairs(names) do
            list[i] = self.by_name[n:gsub("-", "_")] or fail("args: no option '%s'", n)
        end
    end
    local out = {}
    for _, o in ipairs(list) do
        local v = opts[o.name]
        local default = o.default == nil and "" or M.format(o.default)
        if v ~= nil and (names or M.format(v) ~= default) then
            local flag = o.name:gsub("_", "-")
            if o.type == "boolean" then
                out[#out + 1] = (v and "--" or "--no-") .. flag
            else
                out[#out + 1] = "--" .. flag
                out[#out + 1] = M.format(v)
            end
        end
    end
    return out
end

--- The settings columns: the names of the options that are columns, in declaration order, then the
-- names in `extra` (a list, optional).
function Parser:columns(extra)
    local out = {}
    for _, o in ipairs(self.list) do if o.column then out[#out + 1] = o.name end end
    for _, k in ipairs(extra or {}) do out[#out + 1] = k end
    return out
end

--- A row for a tidy CSV: every settings column of opts (a list as "a,b", nil as an empty cell),
-- then the fields of `measures` (a table, optional; a measure may not reuse a settings name).
function Parser:row(opts, measures)
    local row = {}
    for _, o in ipairs(self.list) do
        if o.column then
            local v = opts[o.name]
            if type(v) == "table" then v = M.format(v) end
            row[o.name] = v == nil and "" or v
        end
    end
    for k, v in pairs(measures or {}) do
        if self.by_name[k] and self.by_name[k].column then
            fail("args: measure '%s' has the name of a settings column", k)
        end
        row[k] = v
    end
    return row
end

-- Errors point at the caller's line (util.public).
M.parser = util.public(M.parser)
Parser.argv = util.public(Parser.argv)
Parser.row = util.public(Parser.row)

return M
