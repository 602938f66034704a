--- landscape.io.csv: tidy CSV tables (one row per observation, a header), through libcsv.
--
--   local csv = require "landscape.io.csv"
--   csv.write("results/run.csv", {{seed = 1, loss = 0.25}, {seed = 2, loss = 0.5}})
--   csv.write("results/run.csv", {{seed = 3, loss = 0.1}}, {append = true})
--   local t = csv.read("results/run.csv")      -- t.columns, t.data.loss (a Tensor), t.nrows
--   for _, row in ipairs(csv.read_rows("results/run.csv")) do print(row.seed, row.loss) end
--
-- Values: numbers are written exactly (integers as integers, floats in the shortest form that reads
-- back to the same double, NaN as "nan"), booleans as true/false, strings quoted only when needed
-- (commas, quotes, line breaks, blanks at either end), nil as an empty cell.
local ls = require "landscape"
local fs = require "landscape.io.fs"

local M = {}

-- An error of ls.io without the position inside this module, so it can be raised at the caller's line.
local function engine_message(err)
    return (tostring(err):gsub("^[^\n]-%.lua:%d+: ", "", 1))
end

local function sorted_union_of_keys(rows)
    local seen, names = {}, {}
    for _, row in ipairs(rows) do
        for k in pairs(row) do
            if type(k) ~= "string" then
                error(string.format("csv.write: row keys must be column names (strings), got a %s key",
                                    type(k)), 3)
            end
            if not seen[k] then
                seen[k] = true
                names[#names + 1] = k
            end
        end
    end
    table.sort(names)
    return names
end

--- Write `rows` (a list of tables keyed by column name) to `path`.
-- opts (all optional):
--   columns = nil    the column order; default: every key used by the rows, sorted, so the order is
--                    stable from run to run. A key not among given columns is an error.
--   append  = false  add to an existing table instead of replacing it. A missing or empty file gets
--                    a header; an existing header must name the same columns (any order: rows follow
--                    the file's order), else an error naming the missing and extra columns.
-- The parent directory is created when missing. The file is always written whole: the new table (for
-- an append, the old rows followed by the new ones) goes to a temporary file beside it that is renamed
-- into place, so a full disk, a size limit or a crash leaves the old file as it was, never half a table
-- or a torn last row.
-- e.g. ls.csv.write("out/run.csv", {{epoch = 1, loss = 0.5}, {epoch = 2, loss = 0.4}})
function M.write(path, rows, opts)
    if type(path) ~= "string" then error("csv.write: path must be a string", 2) end
    if type(rows) ~= "table" then error("csv.write: rows must be a list of tables", 2) end
    opts = opts or {}
    if type(opts) ~= "table" then error("csv.write: options must be a table", 2) end
    for k in pairs(opts) do
        if k ~= "columns" and k ~= "append" then
            error(string.format("csv.write: unknown option '%s' (known: columns, append)",
                                tostring(k)), 2)
        end
    end
    local columns = opts.columns
    if columns == nil then
        columns = sorted_union_of_keys(rows)
        if #columns == 0 then
            error(string.format("csv.write: %s: no columns (give rows with keys or opts.columns)",
                                path), 2)
        end
    elseif type(columns) ~= "table" then
        error("csv.write: option 'columns' must be a list of names", 2)
    end
    local dir = fs.dirname(path)
    local ok, err = fs.mkdir_p(dir)
    if not ok then error("csv.write: " .. err, 2) end
    local ok, err = pcall(ls.io.csv_write, path, columns, rows, opts.append and true or false)
    if not ok then error(engine_message(err), 2) end
end

local function read_table(path)   -- raises without a position; the callers add theirs
    if type(path) ~= "string" then error("csv.read: path must be a string", 0) end
    local ok, t = pcall(ls.io.csv_read, path)
    if not ok then error(engine_message(t), 0) end
    return t
end

--- Read a table: {columns = {names in file order}, data = {name -> Tensor (f64, numeric columns,
-- empty cells NaN) or list of strings}, nrows = n}.
-- e.g. local t = ls.csv.read("out/run.csv")
function M.read(path)
    local ok, t = pcall(read_table, path)
    if not ok then error(t, 2) end
    return t
end

--- Read a table as a list of rows {name -> number or string}, plus the column names in file order.
-- Numbers with an integral value come back as Lua integers (a seed of 3 reads as 3, not 3.0); empty
-- numeric cells, and cells reading "nan", become nil. Empty string cells stay "".
-- e.g. for _, r in ipairs(ls.csv.read_rows("out/run.csv")) do print(r.loss) end
function M.read_rows(path)
    local ok, t = pcall(read_table, path)
    if not ok then error(t, 2) end
    local cols = {}
    for i, name in ipairs(t.columns) do
        local d = t.data[name]
        cols[i] = ls.is_tensor(d) and d:totable() or d
    end
    local rows = {}
    for r = 1, t.nrows do
        local row = {}
        for i, name in ipairs(t.columns) do
            local v = cols[i][r]
            if type(v) == "number" then
                if v == v then row[name] = math.tointeger(v) or v end   -- v ~= v only for NaN
            else
                row[name] = v
            end
        end
        rows[r] = row
    end
    return rows, t.columns
end

return M
