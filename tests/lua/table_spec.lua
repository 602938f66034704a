-- ls.table: CSV round trips keep the column order and the types; select, drop, rename, filter,
-- derive, sort, group, join, concat and matrix against values worked out by hand; the receiver is
-- never changed; errors name the method and the column.
local ls = require "landscape"
local files = require "torch_oracle"   -- for its tempdir / remove_dir

local function errmsg(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok)
    return tostring(err)
end

local function models()
    return ls.table.from_rows({
        {id = "m1", n_train = 500, noise = 0, gap = 3.5, q1 = 0.25},
        {id = "m2", n_train = 2000, noise = 0.3, gap = 1.25, q1 = 0.5},
        {id = "m3", n_train = 500, noise = 0.3, gap = 4, q1 = 0.125},
        {id = "m4", n_train = 8000, noise = 0, gap = 0.5, q1 = 1},
        {id = "m5", n_train = 2000, noise = 0, gap = 1, q1 = 0.75},
    }, {columns = {"id", "n_train", "noise", "gap", "q1"}})
end

describe("ls.table", function()
    local dir
    setup(function() dir = files.tempdir() end)
    teardown(function() files.remove_dir(dir) end)

    it("is reachable as ls.table", function()
        assert.are.equal(require "landscape.table", ls.table)
    end)

    it("writes CSV in its column order and reads it back with the types", function()
        local t = models()
        local path = dir .. "/models.csv"
        t:write_csv(path)
        local fh = io.open(path)
        local header = fh:read("l")
        local first = fh:read("l")
        fh:close()
        assert.are.equal("id,n_train,noise,gap,q1", header)     -- not sorted
        assert.are.equal("m1,500,0,3.5,0.25", first)
        local r = ls.table.read_csv(path)
        assert.are.same(t.columns, r.columns)
        assert.are.equal(5, r.nrows)
        assert.are.equal(5, #r)
        assert.are.equal("string", r:kind("id"))
        assert.are.equal("number", r:kind("gap"))
        assert.are.same({"m1", "m2", "m3", "m4", "m5"}, r:column("id"))
        assert.is_true(ls.is_tensor(r:column("gap")))
        assert.are.same({3.5, 1.25, 4, 0.5, 1}, r:column("gap"):totable())
        assert.are.equal(math.type(r:row(2).n_train), "integer")
        for i = 1, 5 do assert.are.same(t:row(i), r:row(i)) end
        -- append checks the header and keeps the file's order
        r:head(2):write_csv(path, {append = true})
        assert.are.equal(7, ls.table.read_csv(path).nrows)
        -- a text cell in a numeric column keeps the column as text; matrix names the cell
        local bad = dir .. "/bad.csv"
        fh = io.open(bad, "w")
        fh:write("id,gap\na,1.5\nb,n/a\nc,2\n")
        fh:close()
        local b = ls.table.read_csv(bad)
        assert.are.equal("string", b:kind("gap"))
        assert.matches("table:matrix: column 'gap' row 2 holds 'n/a', not a number",
                       errmsg(b.matrix, b, {"gap"}))
        assert.matches("^table.read_csv: .*missing.csv: No such file",
                       errmsg(ls.table.read_csv, dir .. "/missing.csv"))
        -- empty cells are NaN: an error in matrix unless kept
        fh = io.open(bad, "w")
        fh:write("a,b\n1,2\n3,\n")
        fh:close()
        local e = ls.table.read_csv(bad)
        assert.matches("table:matrix: column 'b' row 2 is NaN", errmsg(e.matrix, e, {"a", "b"}))
        local m = e:matrix({"a", "b"}, {nan = "keep"})
        assert.is_true(m[2][2] ~= m[2][2])
    end)

    it("selects, drops, renames; the receiver never changes", function()
        local t = models()
        local s = t:select({"gap", "id"})
        assert.are.same({"gap", "id"}, s.columns)
        assert.are.same({"id", "n_train", "noise", "gap", "q1"}, t.columns)
        assert.are.same({"id", "gap", "q1"}, t:drop({"n_train", "noise"}).columns)
        local r = t:rename({gap = "gg"})
        assert.are.same({"id", "n_train", "noise", "gg", "q1"}, r.columns)
        assert.are.same(t:column("gap"):totable(), r:column("gg"):totable())
        assert.matches("table:select: no column 'gapp' %(did you mean 'gap'%?%); columns: id, n_train",
                       errmsg(t.select, t, {"gapp"}))
        assert.matches("table:column: no column 'q'", errmsg(t.column, t, "q"))
    end)

    it("filters by a function or by values, derives columns", function()
        local t = models()
        local f = t:filter(function(row) return row.gap > 1 end)
        assert.are.same({"m1", "m2", "m3"}, f:column("id"))
        assert.are.same({"m1", "m4", "m5"}, t:filter({noise = 0}):column("id"))
        assert.are.same({"m2", "m3"}, t:filter({noise = 0.3, n_train = {500, 2000}}):column("id"))
        local d = t:derive("log_q1", function(row) return math.log(row.q1, 2) end)
        assert.are.same({-2, -1, -3, 0, math.log(0.75, 2)}, d:column("log_q1"):totable())
        assert.are.equal("log_q1", d.columns[6])
        assert.are.equal(5, #t.columns)
        local r = t:derive("gap", ls.tensor({1, 2, 3, 4, 5}, {dtype = "f64"}))   -- replaced in place
        assert.are.same(t.columns, r.columns)
        assert.are.same({1, 2, 3, 4, 5}, r:column("gap"):totable())
        local l = t:derive("tag", {"a", "b", "c", "d", "e"})
        assert.are.equal("string", l:kind("tag"))
        assert.matches("table:derive: column 'x' has 2 values, the table has 5 rows",
                       errmsg(t.derive, t, "x", {1, 2}))
    end)

    it("sorts stably, groups by sorted keys, lists unique values", function()
        local t = models()
        assert.are.same({"m1", "m3", "m2", "m5", "m4"}, t:sort_by("n_train"):column("id"))
        assert.are.same({"m4", "m2", "m5", "m1", "m3"},
                        t:sort_by("n_train", {descending = true}):column("id"))
        assert.are.same({"m4", "m5", "m1", "m2", "m3"}, t:sort_by({"noise", "gap"}):column("id"))
        local g = t:group_by({"n_train"})
        assert.are.equal(3, #g)
        assert.are.same({500, 2000, 8000}, {g[1].key.n_train, g[2].key.n_train, g[3].key.n_train})
        assert.are.same({"m1", "m3"}, g[1].table:column("id"))
        assert.are.same({1, 3}, g[1].rows)
        local g2 = t:group_by({"noise", "n_train"})
        assert.are.equal(5, #g2)
        assert.are.same({noise = 0, n_train = 500}, g2[1].key)
        assert.are.same({500, 2000, 8000}, t:unique("n_train"))
        assert.are.same({"m1", "m2", "m3", "m4", "m5"}, t:unique("id"))
    end)

    it("joins on keys, inner and left, with repeated matches", function()
        local t = models()
        local u = ls.table.from_columns({"n_train", "epochs"},
                                        {n_train = {500, 2000, 500}, epochs = {300, 75, 301}})
        local j = t:join(u, "n_train")
        assert.are.same({"id", "n_train", "noise", "gap", "q1", "epochs"}, j.columns)
        assert.are.same({"m1", "m1", "m2", "m3", "m3", "m5"}, j:column("id"))
        assert.are.same({300, 301, 75, 300, 301, 75}, j:column("epochs"):totable())
        local l = t:join(u, {"n_train"}, {how = "left"})
        assert.are.equal(7, l.nrows)
        local e = l:column("epochs"):totable()
        assert.is_true(e[6] ~= e[6])                            -- m4 has no match
        assert.matches("table:join: both tables have column 'gap'",
                       errmsg(t.join, t, t:select({"id", "gap"}), "id"))
        local s = ls.table.from_columns({"n_train"}, {n_train = {"500"}})
        assert.matches("table:join: key 'n_train' is numeric in the left table and text in the right",
                       errmsg(t.join, t, s, "n_train"))
    end)

    it("matrix, concat, from_columns, printing", function()
        local t = models()
        local X = t:matrix({"q1", "n_train"})
        assert.are.same({5, 2}, X.shape)
        assert.are.equal("f64", X.dtype)
        assert.are.same({0.125, 500}, X[3]:totable())
        assert.are.same({5, 0}, t:matrix({}).shape)
        local c = ls.table.concat({t, t:select({"q1", "gap", "id", "noise", "n_train"}):head(2)})
        assert.are.equal(7, c.nrows)
        assert.are.same(t.columns, c.columns)
        assert.are.equal("m2", c:column("id")[7])
        assert.matches("table.concat: table 2 has no column 'q1'",
                       errmsg(ls.table.concat, {t, t:rename({q1 = "q"})}))
        local fc = ls.table.from_columns({"b", "a"}, {a = {1, 2}, b = {"x", "y"}})
        assert.are.same({"b", "a"}, fc.columns)
        assert.matches("table.from_columns: data has column 'c'",
                       errmsg(ls.table.from_columns, {"a"}, {a = {1}, c = {2}}))
        local s = tostring(t)
        assert.matches("table: 5 rows x 5 columns", s)
        assert.matches("id%s+n_train%s+noise%s+gap%s+q1", s)
        -- the example of the issue: a linear model on a table's columns
        local fit = ls.stats.ols(t:matrix({"q1"}), t:column("gap"))
        assert.are.equal(5, fit.n)
    end)
end)
