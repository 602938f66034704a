--- landscape.study.grid: the cells of an experiment, and each cell's stable job key.
--
--   local grid = ls.study.grid
--   local g = grid{width = {64, 256}, noise = {0, 0.3}, seed = {1, 2, 3}}      -- full factorial: 12
--   local h = grid{{width = 64, depth = 2}, {width = 512, depth = 4}}            -- explicit list: 2
--   g = g:exclude(function(c) return c.width == 256 and c.noise > 0 end)        -- drop cells
--   g = g:filter(function(c) return c.seed <= 2 end)                             -- keep cells
--   g = g:derive_seed("init_seed")           -- a stable seed column derived from the other columns
--   g = g:derive("lr", function(c) return 0.1 / c.width end)                     -- a computed column
--   g = g * grid{wd = {0, 5e-4}}    g = g + h                 -- product and concatenation
--   #g, g:cells(), g:jobs()   grid.key(cfg)
--
-- grid(spec [, opts]): spec is either a table of factors, name -> list of levels (a value that is not
-- a table is a single level, so `epochs = 5` is a constant column), or a list of cells (tables). Every
-- cell of a factorial grid is one combination of levels. Cells are ordered with the first factor of
-- the column order varying slowest. opts (optional):
--   order = nil   the column order: a list of names, which come first in this order; the other
--                 columns follow sorted by name. The merged CSV's config columns use it too.
-- Column names are identifiers (letters, digits, '_'; not starting with a digit), and "job" is
-- reserved for the job key. Values are numbers, strings, booleans, or lists of them.
--
-- The job key of a cell is serial.canonical(cell) hashed to 16 hex digits: it depends only on the
-- configuration (not on the grid, its order, the machine or the run), so a job is the same job in a
-- resumed run, on another machine, or in a grid that gained cells. Two cells with the same
-- configuration are an error (g:jobs()).
local util = require "landscape.util"
local serial = require "landscape.study.serial"

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
    return c
end

local function check_value(v, where)
    local tv = type(v)
    if tv == "number" or tv == "string" or tv == "boolean" then return end
    if tv == "table" then
        for k, x in pairs(v) do
            if math.type(k) ~= "integer" then fail("%s: a list value must be a list", where) end
            check_value(x, where)
        end
        return
    end
    fail("%s: values must be numbers, strings, booleans or lists of them, got a %s", where, tv)
end

local function check_name(k, who)
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
        fail("%s: column names must be identifiers, got %s", who, tostring(k))
    end
    if k == "job" then fail("%s: the column name 'job' is reserved for the job key", who) end
end

local Grid = {}
Grid.__index = Grid
Grid.__name = "landscape.study.Grid"

local function make(cells, order)
    return setmetatable({_cells = cells, _order = order or {}}, Grid)
end

--- The grid constructor (called as ls.study.grid{...}).
local function new(spec, opts)
    if type(spec) ~= "table" then fail("grid: expected a table of factors or a list of cells") end
    if getmetatable(spec) == Grid then return spec end
    opts = util.check_options(opts, {order = true}, "grid")
    local order = {}
    if opts.order ~= nil then
        if type(opts.order) ~= "table" then fail("grid: option 'order' must be a list of names") end
        for i, k in ipairs(opts.order) do
            check_name(k, "grid")
            order[i] = k
        end
    end
    local n = #spec
    local count = 0
    for _ in pairs(spec) do count = count + 1 end
    if n > 0 and count == n then                      -- an explicit list of cells
        local cells = {}
        for i, cell in ipairs(spec) do
            if type(cell) ~= "table" then fail("grid: cell %d is a %s, not a table", i, type(cell)) end
            local c = {}
            for k, v in pairs(cell) do
                check_name(k, "grid")
                check_value(v, string.format("grid: cell %d, column '%s'", i, k))
                c[k] = type(v) == "table" and copy(v) or v
            end
            cells[i] = c
        end
        return make(cells, order)
    end
    if n > 0 then fail("grid: give either factors (name = levels) or a list of cells, not both") end
    local names = {}
    for k in pairs(spec) do
        check_name(k, "grid")
        names[#names + 1] = k
    end
    table.sort(names)
    local ranked = {}
    for i, k in ipairs(order) do ranked[k] = i end
    table.sort(names, function(a, b)
        local ra, rb = ranked[a] or math.huge, ranked[b] or math.huge
        if ra ~= rb then return ra < rb end
        return a < b
    end)
    local levels = {}
    for i, k in ipairs(names) do
        local v = spec[k]
        if type(v) ~= "table" then v = {v} end
        if #v == 0 then fail("grid: factor '%s' has no levels", k) end
        for j, x in ipairs(v) do check_value(x, string.format("grid: factor '%s', level %d", k, j)) end
        levels[i] = v
    end
    local cells = {{}}
    for i, k in ipairs(names) do                      -- the first name varies slowest
        local out = {}
        for _, c in ipairs(cells) do
            for _, x in ipairs(levels[i]) do
                local d = copy(c)
                d[k] = type(x) == "table" and copy(x) or x
                out[#out + 1] = d
            end
        end
        cells = out
    end
    return make(cells, order)
end

function Grid.__len(g) return #g._cells end

--- The cells, as fresh copies (changing them does not change the grid).
function Grid:cells()
    local out = {}
    for i, c in ipairs(self._cells) do out[i] = copy(c) end
    return out
end

--- The column names: the `order` ones first, then the others sorted.
function Grid:columns()
    local seen, rest = {}, {}
    for _, c in ipairs(self._cells) do
        for k in pairs(c) do
            if not seen[k] then
                seen[k] = true
                rest[#rest + 1] = k
            end
        end
    end
    local out, placed = {}, {}
    for _, k in ipairs(self._order) do
        if seen[k] and not placed[k] then
            out[#out + 1] = k
            placed[k] = true
        end
    end
    table.sort(rest)
    for _, k in ipairs(rest) do if not placed[k] then out[#out + 1] = k end end
    return out
end

local function check_pred(fn, who)
    if type(fn) ~= "function" then fail("grid:%s: expected a function(cell) -> boolean", who) end
end

--- The cells for which pred(cell) is true.
function Grid:filter(pred)
    check_pred(pred, "filter")
    local out = {}
    for _, c in ipairs(self._cells) do if pred(copy(c)) then out[#out + 1] = c end end
    return make(out, self._order)
end

--- The cells for which pred(cell) is false.
function Grid:exclude(pred)
    check_pred(pred, "exclude")
    local out = {}
    for _, c in ipairs(self._cells) do if not pred(copy(c)) then out[#out + 1] = c end end
    return make(out, self._order)
end

--- A grid with a new column `name` = fn(cell) in every cell.
local function derive(self, name, fn)
    check_name(name, "grid:derive")
    if type(fn) ~= "function" then fail("grid:derive: expected a function(cell) -> value") end
    local out = {}
    for i, c in ipairs(self._cells) do
        if c[name] ~= nil then fail("grid:derive: cell %d already has a column '%s'", i, name) end
        local v = fn(copy(c))
        check_value(v, string.format("grid:derive: '%s' of cell %d", name, i))
        local d = copy(c)
        d[name] = v
        out[i] = d
    end
    return make(out, self._order)
end

--- The seed derived from a configuration and a name: an integer in 1 .. 2^31 - 1 that depends only on
-- the cell's other columns and on `name` (so two derived seeds of one cell differ).
local function seed_of(cfg, name)
    local h = serial.hash(serial.canonical(cfg) .. "\0seed\0" .. name)
    return (h & 0x7fffffff) % 2147483646 + 1
end
M.derive_seed = seed_of

--- A grid with a column `name` holding grid.derive_seed(cell, name).
function Grid:derive_seed(name)
    check_name(name, "grid:derive_seed")
    return derive(self, name, function(c) return seed_of(c, name) end)
end

--- Every cell of self merged with every cell of other (self's cells vary slowest).
local function product(self, other)
    other = new(other)
    local out = {}
    for _, a in ipairs(self._cells) do
        for _, b in ipairs(other._cells) do
            local d = copy(a)
            for k, v in pairs(b) do
                if d[k] ~= nil then fail("grid: product of grids that share the column '%s'", k) end
                d[k] = type(v) == "table" and copy(v) or v
            end
            out[#out + 1] = d
        end
    end
    local order = {table.unpack(self._order)}
    for _, k in ipairs(other._order) do order[#order + 1] = k end
    return make(out, order)
end

--- The cells of self, then those of other.
local function concat(self, other)
    other = new(other)
    local out = {}
    for _, c in ipairs(self._cells) do out[#out + 1] = c end
    for _, c in ipairs(other._cells) do out[#out + 1] = c end
    local order = {table.unpack(self._order)}
    for _, k in ipairs(other._order) do order[#order + 1] = k end
    return make(out, order)
end

Grid.product, Grid.concat = product, concat
Grid.__mul = function(a, b) return product(new(a), b) end
Grid.__add = function(a, b) return concat(new(a), b) end

--- The job key of a configuration: 16 hex digits.
local function key(cfg)
    if type(cfg) ~= "table" then fail("grid.key: expected a configuration table") end
    return serial.hex(serial.hash(serial.canonical(cfg)))
end
M.key = key

--- The jobs: a list of {index = i, key = grid.key(cell), config = cell (a copy)}; an error names the
-- two cells when two have the same configuration.
function Grid:jobs()
    local out, seen = {}, {}
    for i, c in ipairs(self._cells) do
        local k = key(c)
        if seen[k] then
            fail("grid: cells %d and %d have the same configuration %s", seen[k], i,
                 serial.canonical(c))
        end
        seen[k] = i
        out[i] = {index = i, key = k, config = copy(c)}
    end
    return out
end

-- Errors point at the caller's line (util.public).
Grid.derive = derive
for _, name in ipairs({"cells", "columns", "filter", "exclude", "derive", "derive_seed", "product",
                       "concat", "jobs"}) do
    Grid[name] = util.public(Grid[name])
end
M.key = util.public(M.key)
M.derive_seed = util.public(M.derive_seed)
M.new = util.public(new)
M.Grid = Grid
return M
