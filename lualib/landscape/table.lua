--- landscape.table (ls.table): column tables for tidy data: read from and written to CSV with the
-- column order kept, select, filter, derive, sort, group, join, and matrices for ls.stats.
--
--   local t = ls.table.read_csv("out/gg/models.csv")       -- columns in the file's order and types
--   t.columns, t.nrows, #t                                  -- names (do not modify), rows
--   t:column("gap")                  -- numbers: a Tensor f64 [n]; text: a list of strings
--   t:matrix({"q1", "q2", "q3"})     -- Tensor f64 [n x 3]: ls.stats.ols(t:matrix(f), t:column(y))
--   t:select({"id", "gap"}), t:drop({"tmp"}), t:rename({old = "new"})
--   t:filter(function(row, i) return row.n_train > 500 end)
--   t:filter({noise = 0, width = {64, 256}})                -- equal to a value or one of a list
--   t:derive("log_q1", function(row) return math.log(row.q1) end)   -- or a list / Tensor of values
--   t:sort_by({"n_train", "seed"}), t:sort_by("gap", {descending = true})
--   for _, g in ipairs(t:group_by({"frac"})) do print(g.key.frac, g.table.nrows) end
--   t:join(u, {"model_id"}), t:join(u, "model_id", {how = "left"})
--   t:unique("n_train"), t:row(3), for i, row in t:rows() do ... end, t:head(5), print(t)
--   t:write_csv("out/summary.csv")   -- columns in t.columns order (csv.write, atomic)
--   ls.table.from_columns({"a", "b"}, {a = {1, 2}, b = {"x", "y"}})
--   ls.table.from_rows(rows, {columns = {"a", "b"}})
--   ls.table.concat({t1, t2})        -- rows of t2 after those of t1 (same column names)
--
-- A column is numeric (Lua numbers; integral values read from a file are integers, empty cells and
-- "nan" are NaN) or text (strings). Reading: a column is numeric when every non-empty cell parses
-- as a number (ls.io.csv_read, libcsv). Building from Lua values: numeric when every value is a
-- number (nil -> NaN), else text (numbers and booleans are written with tostring, nil -> "").
-- Tables are values: every method returns a new table and never changes its receiver (columns are
-- shared).
-- Errors name the method and the column:
--   "table:matrix: column 'gap' row 7 holds 'n/a', not a number".
local ls = require "landscape"
local csv = require "landscape.io.csv"
local util = require "landscape.util"

local fail, public = util.fail, util.public
local NAN = 0 / 0

local M = {}

local Table = {}
Table.__index = Table
Table.__name = "landscape.Table"

-- A table from names (list) and cols (name -> {kind = "number"|"string", v = list}), all n long.
local function make(names, cols, n)
    return setmetatable({columns = names, nrows = n, _cols = cols}, Table)
end

--- ls.table.is_table(v)
-- Whether v is a column table (ls.table).
-- e.g. ls.table.is_table(ls.table.from_rows({{a = 1}}))   --> true
function M.is_table(v) return getmetatable(v) == Table end

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = {[0] = i}
        for j = 1, #b do
            local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
            cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        end
        prev = cur
    end
    return prev[#b]
end

local function col(t, name, who)
    if type(name) ~= "string" then fail("%s: column names are strings, got %s", who, type(name)) end
    local c = t._cols[name]
    if c then return c end
    local best, bd = nil, math.huge
    for _, other in ipairs(t.columns) do
        local d = distance(name, other)
        if d < bd then best, bd = other, d end
    end
    local hint = ""
    if best and bd <= math.max(2, #name // 3) then
        hint = string.format(" (did you mean '%s'?)", best)
    end
    fail("%s: no column '%s'%s; columns: %s", who, name, hint, table.concat(t.columns, ", "))
end

local function names_arg(names, who)
    if type(names) == "string" then return {names} end
    if type(names) ~= "table" then
        fail("%s: expected a column name or a list of names, got %s", who, type(names))
    end
    for i, v in ipairs(names) do
        if type(v) ~= "string" then
            fail("%s: names[%d] is a %s, not a column name", who, i, type(v))
        end
    end
    return names
end

-- A column from a list of n Lua values (see the header for the kind rules).
local function column_of(values, n, who, name)
    local numeric = true
    for i = 1, n do
        local v = values[i]
        if v ~= nil and type(v) ~= "number" then numeric = false; break end
    end
    local out = {}
    if numeric then
        for i = 1, n do out[i] = values[i] == nil and NAN or values[i] end
        return {kind = "number", v = out}
    end
    for i = 1, n do
        local v = values[i]
        if v == nil then out[i] = ""
        elseif type(v) == "string" then out[i] = v
        elseif type(v) == "number" or type(v) == "boolean" then out[i] = tostring(v)
        else
            fail("%s: column '%s' row %d is a %s (cells are numbers or strings)", who, name, i,
                 type(v))
        end
    end
    return {kind = "string", v = out}
end

-- A list of values from a Tensor [n] or a Lua list of n values.
local function values_of(x, n, who, name)
    if ls.is_tensor(x) then
        if x.ndim ~= 1 or x:size(1) ~= n then
            fail("%s: column '%s' needs %d values, got a tensor of shape %s", who, name, n,
                 util.shape_str(x))
        end
        return x:double():totable()
    end
    if type(x) ~= "table" then
        fail("%s: column '%s' must be a list or a Tensor, got %s", who, name, type(x))
    end
    if #x ~= n then
        fail("%s: column '%s' has %d values, the table has %d rows", who, name, #x, n)
    end
    return x
end

--- ls.table.from_columns(names, data): data maps each name to a list or a 1-D Tensor, all of one
-- length.
-- e.g. local t = ls.table.from_columns({"a", "b"}, {a = {1, 2}, b = {3, 4}})
M.from_columns = public(function(names, data)
    local who = "table.from_columns"
    names = names_arg(names, who)
    if type(data) ~= "table" then fail("%s: data must map column names to values", who) end
    local n
    local cols, seen = {}, {}
    for _, name in ipairs(names) do
        if seen[name] then fail("%s: column '%s' appears twice", who, name) end
        seen[name] = true
        local x = data[name]
        if x == nil then fail("%s: no values for column '%s'", who, name) end
        if n == nil then
            if ls.is_tensor(x) then
                n = x.ndim == 1 and x:size(1) or -1
            else
                n = type(x) == "table" and #x or -1
            end
        end
        cols[name] = column_of(values_of(x, n, who, name), n, who, name)
    end
    for k in pairs(data) do
        if not seen[k] then
            fail("%s: data has column '%s', which is not among names", who, tostring(k))
        end
    end
    return make({table.unpack(names)}, cols, n or 0)
end)

--- ls.table.from_rows(rows [, {columns = names}]): rows is a list of tables name -> value; the
-- columns default to every key used, sorted (Lua tables have no key order).
-- e.g. local t = ls.table.from_rows({{a = 1, b = 3}, {a = 2, b = 4}})
M.from_rows = public(function(rows, opts)
    local who = "table.from_rows"
    if type(rows) ~= "table" then fail("%s: rows must be a list of tables", who) end
    opts = util.check_options(opts, {columns = true}, who)
    local names = opts.columns
    if names == nil then
        local seen = {}
        names = {}
        for i, r in ipairs(rows) do
            if type(r) ~= "table" then
                fail("%s: rows[%d] is a %s, not a table", who, i, type(r))
            end
            for k in pairs(r) do
                if type(k) ~= "string" then fail("%s: rows[%d] has a non-string key", who, i) end
                if not seen[k] then seen[k] = true; names[#names + 1] = k end
            end
        end
        table.sort(names)
    end
    names = names_arg(names, who)
    local known = {}
    for _, name in ipairs(names) do known[name] = true end
    local n = #rows
    local cols = {}
    for _, name in ipairs(names) do
        local vals = {}
        for i = 1, n do
            local r = rows[i]
            if type(r) ~= "table" then
                fail("%s: rows[%d] is a %s, not a table", who, i, type(r))
            end
            vals[i] = r[name]
        end
        cols[name] = column_of(vals, n, who, name)
    end
    for i = 1, n do
        for k in pairs(rows[i]) do
            if not known[k] then
                fail("%s: rows[%d] has key '%s', which is not among the columns", who, i,
                     tostring(k))
            end
        end
    end
    return make({table.unpack(names)}, cols, n)
end)

--- ls.table.read_csv(path): through the libcsv reader (ls.io.csv_read); see the header for types.
-- A table from a CSV file, its columns in the file's order (numbers where every value parses,
-- strings otherwise).
-- e.g. local t = ls.table.read_csv("out/study.csv"); print(t.n)
M.read_csv = public(function(path)
    if type(path) ~= "string" then
        fail("table.read_csv: path must be a string, got %s", type(path))
    end
    local ok, raw = pcall(ls.io.csv_read, path)
    if not ok then fail("%s", (tostring(raw):gsub("^.-csv_read: ", "table.read_csv: "))) end
    local cols = {}
    for _, name in ipairs(raw.columns) do
        local d = raw.data[name]
        if ls.is_tensor(d) then
            local v = d:totable()
            for i = 1, #v do v[i] = math.tointeger(v[i]) or v[i] end
            cols[name] = {kind = "number", v = v}
        else
            cols[name] = {kind = "string", v = d}
        end
    end
    return make(raw.columns, cols, raw.nrows)
end)

--- t:write_csv(path [, {append = false}]): columns in t.columns order, through csv.write (atomic
-- replace; append checks the header). NaN is written as "nan".
-- e.g. t:write_csv("out/study.csv")
Table.write_csv = public(function(t, path, opts)
    opts = util.check_options(opts, {append = true}, "table:write_csv")
    local rows = {}
    for i = 1, t.nrows do rows[i] = t:row(i) end
    csv.write(path, rows, {columns = t.columns, append = opts.append})
end)

--- t:has(name), t:kind(name) -> "number" | "string"
-- Whether the table has a column of this name.
-- e.g. if t:has("gap") then print(t:column("gap")[1]) end
function Table:has(name) return self._cols[name] ~= nil end
Table.kind = public(function(t, name) return col(t, name, "table:kind").kind end)

--- t:column(name): a Tensor f64 [n] for a numeric column, a list of strings (a copy) for text.
-- A numeric column as an f64 tensor [n]; a text column as a list of strings (a copy).
-- e.g. local gap = t:column("gap")
Table.column = public(function(t, name)
    local c = col(t, name, "table:column")
    if c.kind == "number" then return ls.tensor(c.v, {dtype = "f64"}) end
    return {table.unpack(c.v)}
end)

--- t:values(name): the column's Lua values (a copy; numbers stay Lua numbers).
-- A column's values as a Lua list (a copy; numbers stay Lua numbers).
-- e.g. for _, v in ipairs(t:values("gap")) do print(v) end
Table.values = public(function(t, name)
    return {table.unpack(col(t, name, "table:values").v)}
end)

--- t:row(i) -> {name = value}
-- Row i as a table keyed by column name.
-- e.g. local r = t:row(1); print(r.gap)
Table.row = public(function(t, i)
    if math.type(i) ~= "integer" or i < 1 or i > t.nrows then
        fail("table:row: row %s out of range 1..%d", tostring(i), t.nrows)
    end
    local r = {}
    for _, name in ipairs(t.columns) do r[name] = t._cols[name].v[i] end
    return r
end)

--- for i, row in t:rows() do ... end
-- An iterator over the rows: the index and a table keyed by column name.
-- e.g. for i, r in t:rows() do print(i, r.gap) end
function Table:rows()
    local i = 0
    return function()
        i = i + 1
        if i <= self.nrows then return i, self:row(i) end
    end
end

-- A table with the rows idx (a list of row numbers) of t, columns `names` (default all).
local function take(t, idx, names)
    names = names or t.columns
    local cols = {}
    for _, name in ipairs(names) do
        local c, v = t._cols[name], {}
        for j, i in ipairs(idx) do v[j] = c.v[i] end
        cols[name] = {kind = c.kind, v = v}
    end
    return make({table.unpack(names)}, cols, #idx)
end

--- t:select(names): those columns, in the order given.
-- A table of the named columns, in that order.
-- e.g. local t2 = t:select{"width", "gap"}
Table.select = public(function(t, names)
    names = names_arg(names, "table:select")
    local cols, seen = {}, {}
    for _, name in ipairs(names) do
        if seen[name] then fail("table:select: column '%s' selected twice", name) end
        seen[name] = true
        cols[name] = col(t, name, "table:select")
    end
    return make({table.unpack(names)}, cols, t.nrows)
end)

--- t:drop(names): every column but those.
-- The table without the named columns.
-- e.g. local t2 = t:drop{"seed"}
Table.drop = public(function(t, names)
    names = names_arg(names, "table:drop")
    local gone = {}
    for _, name in ipairs(names) do
        col(t, name, "table:drop")
        gone[name] = true
    end
    local keep, cols = {}, {}
    for _, name in ipairs(t.columns) do
        if not gone[name] then keep[#keep + 1] = name; cols[name] = t._cols[name] end
    end
    return make(keep, cols, t.nrows)
end)

--- t:rename({old = "new", ...}): the columns keep their places.
-- The table with columns renamed (old = new pairs).
-- e.g. local t2 = t:rename{acc = "test_acc"}
Table.rename = public(function(t, map)
    if type(map) ~= "table" then fail("table:rename: expected a table {old = \"new\"}") end
    for old, new in pairs(map) do
        col(t, old, "table:rename")
        if type(new) ~= "string" then
            fail("table:rename: the new name of '%s' is not a string", old)
        end
    end
    local names, cols = {}, {}
    for i, name in ipairs(t.columns) do
        local nn = map[name] or name
        if cols[nn] then fail("table:rename: two columns would be called '%s'", nn) end
        names[i], cols[nn] = nn, t._cols[name]
    end
    return make(names, cols, t.nrows)
end)

--- t:filter(pred): pred is a function(row, i) -> truthy, or a table {name = value or list of
-- values} (rows whose every named column equals the value or one of the list).
-- e.g. local small = t:filter(function(r) return r.width < 256 end)
Table.filter = public(function(t, pred)
    local who = "table:filter"
    local keep = {}
    if type(pred) == "function" then
        for i = 1, t.nrows do
            if pred(t:row(i), i) then keep[#keep + 1] = i end
        end
    elseif type(pred) == "table" then
        local tests = {}
        for name, want in pairs(pred) do
            local c = col(t, name, who)
            local set = {}
            if type(want) == "table" then
                for _, v in ipairs(want) do set[v] = true end
            else
                set[want] = true
            end
            tests[#tests + 1] = {c.v, set}
        end
        for i = 1, t.nrows do
            local ok = true
            for _, tc in ipairs(tests) do
                if not tc[2][tc[1][i]] then ok = false; break end
            end
            if ok then keep[#keep + 1] = i end
        end
    else
        fail("%s: expected a function(row, i) or a table {column = value}, got %s", who, type(pred))
    end
    return take(t, keep)
end)

--- t:derive(name, f): a new (or replaced, in place) column; f is a function(row, i) -> value, a
-- list of n values or a Tensor [n].
-- e.g. t = t:derive("gap", function(r) return r.train_acc - r.test_acc end)
Table.derive = public(function(t, name, f)
    local who = "table:derive"
    if type(name) ~= "string" then
        fail("%s: the column name must be a string, got %s", who, type(name))
    end
    local vals
    if type(f) == "function" then
        vals = {}
        for i = 1, t.nrows do vals[i] = f(t:row(i), i) end
    else
        vals = values_of(f, t.nrows, who, name)
    end
    local cols = {}
    for k, v in pairs(t._cols) do cols[k] = v end
    cols[name] = column_of(vals, t.nrows, who, name)
    local names = {table.unpack(t.columns)}
    if not t._cols[name] then names[#names + 1] = name end
    return make(names, cols, t.nrows)
end)

-- Compare two cell values: numbers before strings; NaN after every number.
local function less(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta == "number" end
    if ta == "number" and (a ~= a or b ~= b) then return b ~= b and a == a end
    return a < b
end

--- t:sort_by(names [, {descending = false}]): a stable sort on the columns in order.
-- The rows stably sorted on the named columns in order; descending = true reverses.
-- e.g. local t2 = t:sort_by({"gap"}, {descending = true})
Table.sort_by = public(function(t, names, opts)
    local who = "table:sort_by"
    names = names_arg(names, who)
    opts = util.check_options(opts, {descending = true}, who)
    local cs = {}
    for j, name in ipairs(names) do cs[j] = col(t, name, who).v end
    local idx = {}
    for i = 1, t.nrows do idx[i] = i end
    local desc = opts.descending
    table.sort(idx, function(a, b)
        for _, v in ipairs(cs) do
            local x, y = v[a], v[b]
            if desc then x, y = y, x end
            if less(x, y) then return true end
            if less(y, x) then return false end
        end
        return a < b
    end)
    return take(t, idx)
end)

--- t:unique(name) -> the distinct values of a column, sorted.
-- The distinct values of a column, sorted.
-- e.g. for _, w in ipairs(t:unique("width")) do print(w) end
Table.unique = public(function(t, name)
    local seen, out = {}, {}
    for _, v in ipairs(col(t, name, "table:unique").v) do
        local key = v ~= v and "nan" or v
        if not seen[key] then seen[key] = true; out[#out + 1] = v end
    end
    table.sort(out, less)
    return out
end)

local function key_of(v)
    if type(v) == "number" then return string.format("%.17g", v) end
    return "\1" .. v
end

--- t:group_by(names) -> a list of groups {key = {name = value}, table = rows of the group, rows =
-- their row numbers in t}, sorted by the key values.
-- e.g. for _, g in ipairs(t:group_by{"depth"}) do print(g.key.depth, g.table.n) end
Table.group_by = public(function(t, names)
    local who = "table:group_by"
    names = names_arg(names, who)
    if #names == 0 then fail("%s: no columns to group by", who) end
    local cs = {}
    for j, name in ipairs(names) do cs[j] = col(t, name, who).v end
    local groups, by = {}, {}
    for i = 1, t.nrows do
        local parts = {}
        for j, v in ipairs(cs) do parts[j] = key_of(v[i]) end
        local k = table.concat(parts, "\0")
        local g = by[k]
        if not g then
            g = {key = {}, rows = {}}
            for j, name in ipairs(names) do g.key[name] = cs[j][i] end
            by[k] = g
            groups[#groups + 1] = g
        end
        g.rows[#g.rows + 1] = i
    end
    table.sort(groups, function(a, b)
        for _, name in ipairs(names) do
            if less(a.key[name], b.key[name]) then return true end
            if less(b.key[name], a.key[name]) then return false end
        end
        return false
    end)
    for _, g in ipairs(groups) do g.table = take(t, g.rows) end
    return groups
end)

--- t:join(u, on [, {how = "inner"}]): rows of t matched with the rows of u that have equal values
-- in the key columns `on` (a name or a list); every match gives a row (t's order, then u's).
-- how = "left" keeps unmatched rows of t with NaN / "" in u's columns. Non-key columns present in
-- both tables are an error (rename or select first).
-- e.g. local both = t:join(measures, "run_id")
Table.join = public(function(t, u, on, opts)
    local who = "table:join"
    if not M.is_table(u) then fail("%s: expected a table to join with, got %s", who, type(u)) end
    on = names_arg(on, who)
    if #on == 0 then fail("%s: no key columns", who) end
    opts = util.check_options(opts, {how = true}, who)
    local how = opts.how or "inner"
    if how ~= "inner" and how ~= "left" then
        fail("%s: how must be \"inner\" or \"left\", got %s", who, tostring(how))
    end
    local is_key = {}
    for _, name in ipairs(on) do
        local a, b = col(t, name, who), col(u, name, who)
        if a.kind ~= b.kind then
            fail("%s: key '%s' is %s in the left table and %s in the right", who, name,
                 a.kind == "number" and "numeric" or "text",
                 b.kind == "number" and "numeric" or "text")
        end
        is_key[name] = true
    end
    local extra = {}
    for _, name in ipairs(u.columns) do
        if not is_key[name] then
            if t._cols[name] then
                fail("%s: both tables have column '%s' (rename or select it first)", who, name)
            end
            extra[#extra + 1] = name
        end
    end
    local function key(tab, i)
        local parts = {}
        for j, name in ipairs(on) do parts[j] = key_of(tab._cols[name].v[i]) end
        return table.concat(parts, "\0")
    end
    local index = {}
    for i = 1, u.nrows do
        local k = key(u, i)
        index[k] = index[k] or {}
        table.insert(index[k], i)
    end
    local li, ri = {}, {}
    for i = 1, t.nrows do
        local m = index[key(t, i)]
        if m then
            for _, j in ipairs(m) do li[#li + 1] = i; ri[#ri + 1] = j end
        elseif how == "left" then
            li[#li + 1] = i; ri[#ri + 1] = false
        end
    end
    local left = take(t, li)
    local names, cols = {table.unpack(left.columns)}, left._cols
    for _, name in ipairs(extra) do
        local c, v = u._cols[name], {}
        local missing = c.kind == "number" and NAN or ""
        for r, j in ipairs(ri) do v[r] = j and c.v[j] or missing end
        cols[name] = {kind = c.kind, v = v}
        names[#names + 1] = name
    end
    return make(names, cols, #li)
end)

--- t:matrix(names [, {nan = "error"}]) -> Tensor f64 [n x #names]. Text cells must read as numbers
-- (else an error naming the column, row and cell); NaN is an error unless nan = "keep".
-- e.g. local X = t:matrix({"margin_q25", "margin_q50"})
Table.matrix = public(function(t, names, opts)
    local who = "table:matrix"
    names = names_arg(names, who)
    opts = util.check_options(opts, {nan = true}, who)
    local keep_nan = opts.nan == "keep"
    if opts.nan ~= nil and opts.nan ~= "keep" and opts.nan ~= "error" then
        fail("%s: nan must be \"error\" or \"keep\", got %s", who, tostring(opts.nan))
    end
    local cs = {}
    for j, name in ipairs(names) do cs[j] = col(t, name, who) end
    local rows = {}
    for i = 1, t.nrows do
        local r = {}
        for j, c in ipairs(cs) do
            local v = c.v[i]
            if c.kind == "string" then
                local x = tonumber(v)
                if x == nil then
                    fail("%s: column '%s' row %d holds '%s', not a number", who, names[j], i, v)
                end
                v = x
            end
            if v ~= v and not keep_nan then
                fail("%s: column '%s' row %d is NaN (an empty or \"nan\" cell); drop or fill it, " ..
                     "or pass {nan = \"keep\"}", who, names[j], i)
            end
            r[j] = v
        end
        rows[i] = r
    end
    if t.nrows == 0 then return ls.zeros({0, #names}, {dtype = "f64"}) end
    if #names == 0 then return ls.zeros({t.nrows, 0}, {dtype = "f64"}) end
    return ls.tensor(rows, {dtype = "f64"})
end)

--- t:head([k = 10]): the first k rows.
-- The first k rows (default 10) as a new table.
-- e.g. print(t:head(5))
function Table:head(k)
    k = math.min(k or 10, self.nrows)
    local idx = {}
    for i = 1, k do idx[i] = i end
    return take(self, idx)
end

--- ls.table.concat(tables): the rows of each table in turn; all must have the same column names
-- (in any order; the first table's order is kept) and kinds.
-- e.g. local all = ls.table.concat({shard1, shard2})
M.concat = public(function(list)
    local who = "table.concat"
    if type(list) ~= "table" or #list == 0 then
        fail("%s: expected a non-empty list of tables", who)
    end
    local first = list[1]
    for i, t in ipairs(list) do
        if not M.is_table(t) then fail("%s: item %d is not a table", who, i) end
        if #t.columns ~= #first.columns then
            fail("%s: table %d has %d columns, table 1 has %d", who, i, #t.columns, #first.columns)
        end
        for _, name in ipairs(first.columns) do
            local c = t._cols[name]
            if not c then fail("%s: table %d has no column '%s'", who, i, name) end
            if c.kind ~= first._cols[name].kind then
                fail("%s: column '%s' is %s in table 1 but %s in table %d", who, name,
                     first._cols[name].kind, c.kind, i)
            end
        end
    end
    local cols, n = {}, 0
    for _, name in ipairs(first.columns) do cols[name] = {kind = first._cols[name].kind, v = {}} end
    for _, t in ipairs(list) do
        for _, name in ipairs(first.columns) do
            local dst, src = cols[name].v, t._cols[name].v
            for i = 1, t.nrows do dst[n + i] = src[i] end
        end
        n = n + t.nrows
    end
    return make({table.unpack(first.columns)}, cols, n)
end)

function Table.__len(t) return t.nrows end

function Table:__tostring()
    local k = math.min(self.nrows, 10)
    local cells, width = {}, {}
    for j, name in ipairs(self.columns) do
        width[j] = #name
        for i = 1, k do
            local v = self._cols[name].v[i]
            local s = type(v) == "number" and (v ~= v and "nan" or
                      (math.type(v) == "integer" and tostring(v) or string.format("%.6g", v))) or v
            cells[i] = cells[i] or {}
            cells[i][j] = s
            width[j] = math.max(width[j], #s)
        end
    end
    local function line(vals)
        local parts = {}
        for j, s in ipairs(vals) do parts[j] = string.rep(" ", width[j] - #s) .. s end
        return table.concat(parts, "  ")
    end
    local out = {string.format("table: %d rows x %d columns", self.nrows, #self.columns),
                 line(self.columns)}
    for i = 1, k do out[#out + 1] = line(cells[i]) end
    if self.nrows > k then out[#out + 1] = string.format("... (%d more rows)", self.nrows - k) end
    return table.concat(out, "\n")
end

return M
