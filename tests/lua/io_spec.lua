-- ls.io (IDX, CSV, safetensors), landscape.data, landscape.io.csv and landscape.io.fs.
local ls = require "landscape"
local data = require "landscape.data"
local csv = require "landscape.io.csv"
local fs = require "landscape.io.fs"
local lfs = require "lfs"

local FIXTURES = "data/fixtures"
local FMNIST = os.getenv("LANDSCAPE_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"

local function tmpdir()
    local p = os.tmpname()
    os.remove(p)
    assert(lfs.mkdir(p))
    return p
end

local function rm_rf(path)
    if lfs.attributes(path, "mode") == "directory" then
        for name in lfs.dir(path) do
            if name ~= "." and name ~= ".." then rm_rf(path .. "/" .. name) end
        end
        lfs.rmdir(path)
    else
        os.remove(path)
    end
end

local function flat(t)
    local out = {}
    local function walk(v)
        if type(v) == "table" then
            for _, x in ipairs(v) do walk(x) end
        else
            out[#out + 1] = v
        end
    end
    walk(t:totable())
    return out
end

local function read_file(path) return assert(ls.fs.read(path)) end

local function write_file(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

local function errmsg(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return tostring(err)
end

describe("ls.io IDX", function()
    local dir
    setup(function() dir = tmpdir() end)
    teardown(function() rm_rf(dir) end)

    it("round-trips every dtype, raw and gzip", function()
        local cases = {
            {dtype = "u8", values = {{0, 1, 2}, {253, 254, 255}}},
            {dtype = "i64", values = {{-2147483648, -1, 0}, {1, 7, 2147483647}}},
            {dtype = "f32", values = {{0.5, -1.25, 3}, {1e-30, -0, 65504}}},
            {dtype = "f64", values = {{0.1, 1 / 3, -1e300}, {2 ^ -1074, 0, 42}}},
        }
        for _, c in ipairs(cases) do
            for _, name in ipairs({"t.idx", "t.idx.gz"}) do
                local t = ls.tensor(c.values, {dtype = c.dtype})
                local path = dir .. "/" .. name
                ls.io.write_idx(path, t)
                local r = ls.io.read_idx(path)
                assert.are.equal(c.dtype, r.dtype)
                assert.are.same(t:size(), r:size())
                assert.are.same(flat(t), flat(r))
            end
        end
        -- gzip really compresses (magic 1f 8b), raw does not
        assert.are.equal("\31\139", read_file(dir .. "/t.idx.gz"):sub(1, 2))
        assert.are.equal("\0\0\14\2", read_file(dir .. "/t.idx"):sub(1, 4))
    end)

    it("reads the fixtures written by data/make_fixtures.py", function()
        local x = ls.io.read_idx(FIXTURES .. "/tiny-images-idx3-ubyte.gz")
        assert.are.same({20, 4, 4}, x:size())
        assert.are.equal("u8", x.dtype)
        for _, p in ipairs({{1, 1, 1}, {3, 2, 4}, {20, 4, 4}}) do
            local i, r, c = p[1] - 1, p[2] - 1, p[3] - 1
            assert.are.equal((7 * i + 4 * r + c) % 256, x[p[1]][p[2]][p[3]])
        end
        local y = ls.io.read_idx(FIXTURES .. "/tiny-labels-idx1-ubyte")
        assert.are.same({0, 1, 2, 3, 0}, {y[1], y[2], y[3], y[4], y[5]})
        local s = ls.io.read_idx(FIXTURES .. "/tiny-i16.idx")
        assert.are.equal("i64", s.dtype)
        assert.are.same({{-300, -1, 0}, {1, 300, 32767}}, s:totable())
        local d = ls.io.read_idx(FIXTURES .. "/tiny-f64.idx.gz")
        assert.are.same({0.1, -2.5, 1e-300}, d:totable())
    end)

    it("reports bad files clearly", function()
        local msg = errmsg(ls.io.read_idx, dir .. "/missing.idx")
        assert.truthy(msg:find("read_idx: " .. dir .. "/missing.idx: No such file or directory", 1, true))
        write_file(dir .. "/bad.idx", "\1\0\8\1\0\0\0\1\7")
        assert.truthy(errmsg(ls.io.read_idx, dir .. "/bad.idx"):find("bad magic 0x01000801", 1, true))
        write_file(dir .. "/short.idx", "\0\0\8\2\0\0\0\3\0\0\0\3\1\2")
        assert.truthy(errmsg(ls.io.read_idx, dir .. "/short.idx")
            :find("expected 9 bytes of data, got 2", 1, true))
        assert.truthy(errmsg(ls.io.write_idx, dir .. "/x.idx", {1, 2}):find("Tensor expected"))
        assert.truthy(errmsg(ls.io.write_idx, dir .. "/big.idx", ls.tensor({3e9}, {dtype = "i64"}))
            :find("does not fit in IDX int32", 1, true))
        assert.truthy(errmsg(ls.io.read_idx):find("read_idx: the path must be a string, got no value", 1, true))
    end)
end)

describe("Fashion-MNIST", function()
    local have = lfs.attributes(FMNIST .. "/train-images-idx3-ubyte.gz", "mode") == "file"

    -- Pixel values below were read independently with Python's gzip module (1-based positions).
    it("raw IDX files match the bytes Python reads", function()
        if not have then return pending("no Fashion-MNIST in " .. FMNIST) end
        local x = ls.io.read_idx(FMNIST .. "/train-images-idx3-ubyte.gz")
        assert.are.same({60000, 28, 28}, x:size())
        assert.are.equal(217, x[1][15][15])
        assert.are.equal(23, x[1][6][21])
        assert.are.equal(252, x[2][11][11])
        assert.are.equal(189, x[12346][14][14])
        assert.are.equal(76247, x[1]:double():sum():item())
        assert.are.equal(16684, x[60000]:double():sum():item())
        local t = ls.io.read_idx(FMNIST .. "/t10k-images-idx3-ubyte.gz")
        assert.are.same({10000, 28, 28}, t:size())
        assert.are.equal(110, t[1][15][15])
        assert.are.equal(50, t[10000][21][8])
        assert.are.equal(237, t[2346][14][14])
        assert.are.equal(33456, t[1]:double():sum():item())
    end)

    it("has 6000 training and 1000 test examples per class", function()
        if not have then return pending("no Fashion-MNIST in " .. FMNIST) end
        for split, per in pairs({train = 6000, t10k = 1000}) do
            local y = ls.io.read_idx(FMNIST .. "/" .. split .. "-labels-idx1-ubyte.gz"):totable()
            local counts = {}
            for _, v in ipairs(y) do counts[v] = (counts[v] or 0) + 1 end
            for c = 0, 9 do assert.are.equal(per, counts[c]) end
            assert.are.equal(9, y[1])
            assert.are.equal(5, y[#y])
        end
    end)

    it("fashion_mnist{} loads the normalised training split", function()
        if not have then return pending("no Fashion-MNIST in " .. FMNIST) end
        local ds = data.fashion_mnist{}
        assert.are.equal(60000, ds.n)
        assert.are.same({60000, 1, 28, 28}, ds.x:size())
        assert.are.equal("f32", ds.x.dtype)
        assert.are.equal("i64", ds.y.dtype)
        assert.are.equal("train", ds.split)
        assert.are.equal(10, #ds.classes)
        assert.are.equal(10, ds.y[1])                      -- file label 9, 1-based
        assert.are.equal("Ankle boot", ds.classes[ds.y[1]])
        local lo, hi = math.huge, -math.huge
        for _, v in ipairs(ds.y:totable()) do lo, hi = math.min(lo, v), math.max(hi, v) end
        assert.are.same({1, 10}, {lo, hi})
        assert.near((217 / 255 - 0.2860) / 0.3530, ds.x[1][1][15][15], 1e-6)
        assert.near((0 - 0.2860) / 0.3530, ds.x[1][1][1][1], 1e-6)
        assert.truthy(ds.source:find("train-images-idx3-ubyte.gz", 1, true))
    end)

    it("draws seeded class-balanced subsets", function()
        if not have then return pending("no Fashion-MNIST in " .. FMNIST) end
        local a = data.fashion_mnist{split = "test", n = 25, seed = 7, normalize = false, dtype = "f64"}
        local b = data.fashion_mnist{split = "test", n = 25, seed = 7, normalize = false, dtype = "f64"}
        local c = data.fashion_mnist{split = "test", n = 25, seed = 8, normalize = false, dtype = "f64"}
        assert.are.same({25, 1, 28, 28}, a.x:size())
        assert.are.equal("f64", a.x.dtype)
        assert.are.same(a.y:totable(), b.y:totable())
        assert.are.same(flat(a.x), flat(b.x))
        assert.are_not.same(flat(a.x), flat(c.x))
        local counts = {}
        for _, v in ipairs(a.y:totable()) do counts[v] = (counts[v] or 0) + 1 end
        for k = 1, 10 do assert.are.equal(k <= 5 and 3 or 2, counts[k]) end
        -- 1-based labels go straight into the class-index ops
        assert.are.same({25, 10}, ls.one_hot(a.y, 10):size())
        assert.are.equal(25, ls.one_hot(a.y, 10):double():sum():item())
        -- the rows are the raw rows picked by balanced_subset, scaled to [0, 1]
        local raw = ls.io.read_idx(FMNIST .. "/t10k-images-idx3-ubyte.gz")
        local labels = ls.io.read_idx(FMNIST .. "/t10k-labels-idx1-ubyte.gz"):totable()
        local idx = data.balanced_subset(labels, 25, 7)
        for k = 1, 25, 6 do
            assert.are.equal(labels[idx[k]] + 1, a.y[k])
            assert.are.equal(raw[idx[k]][14][14] / 255, a.x[k][1][14][14])
        end
        for k = 2, 25 do assert.is_true(idx[k - 1] < idx[k]) end
        local d = data.fashion_mnist{split = "test", n = 100, normalize = {mean = 0.5, std = 0.5}}
        local counts2 = {}
        for _, v in ipairs(d.y:totable()) do counts2[v] = (counts2[v] or 0) + 1 end
        for k = 1, 10 do assert.are.equal(10, counts2[k]) end
        local lo, hi = math.huge, -math.huge
        for _, v in ipairs(flat(d.x)) do lo, hi = math.min(lo, v), math.max(hi, v) end
        assert.are.equal(-1, lo)
        assert.are.equal(1, hi)
    end)

    it("explains what is wrong", function()
        local msg = errmsg(data.fashion_mnist, {dir = "/nope"})
        assert.truthy(msg:find("fashion_mnist: /nope/train-images-idx3-ubyte.gz: No such file or "
                               .. "directory — install Debian's dataset-fashion-mnist or set "
                               .. "LANDSCAPE_FASHION_MNIST_DIR", 1, true))
        assert.truthy(errmsg(data.fashion_mnist, {split = "val"}):find("'split' must be", 1, true))
        assert.truthy(errmsg(data.fashion_mnist, {n = 0}):find("'n' must be a positive integer", 1, true))
        assert.truthy(errmsg(data.fashion_mnist, {spilt = "test"}):find("unknown option 'spilt'", 1, true))
        assert.truthy(errmsg(data.fashion_mnist, {normalize = "yes"}):find("'normalize' must be", 1, true))
        assert.truthy(errmsg(data.fashion_mnist, {dtype = "i64"}):find("'dtype' must be", 1, true))
        if have then
            assert.truthy(errmsg(data.fashion_mnist, {split = "test", n = 10001})
                :find("asked for n = 10001 examples", 1, true))
        end
    end)

    it("honours LANDSCAPE_FASHION_MNIST_DIR", function()
        local cmd = "LANDSCAPE_FASHION_MNIST_DIR=/nowhere lua5.4 -e 'local ok, e = "
                    .. "pcall(require(\"landscape.data\").fashion_mnist) io.write(tostring(e))' 2>&1"
        local p = io.popen(cmd)
        local out = p:read("a")
        p:close()
        assert.truthy(out:find("/nowhere/train-images-idx3-ubyte.gz", 1, true), out)
    end)
end)

describe("landscape.data.idx", function()
    it("loads a labelled IDX pair with a balanced subset", function()
        local ds = data.idx{images = FIXTURES .. "/tiny-images-idx3-ubyte.gz",
                            labels = FIXTURES .. "/tiny-labels-idx1-ubyte", n = 8, seed = 3}
        assert.are.same({8, 1, 4, 4}, ds.x:size())
        local counts = {}
        for _, v in ipairs(ds.y:totable()) do counts[v] = (counts[v] or 0) + 1 end
        assert.are.same({2, 2, 2, 2}, counts)
        local all = data.idx{images = FIXTURES .. "/tiny-images-idx3-ubyte.gz"}
        assert.are.equal(20, all.n)
        assert.is_nil(all.y)
        assert.near((7 * 19 + 4 * 3 + 3) / 255, all.x[20][1][4][4], 1e-7)
        assert.truthy(errmsg(data.idx, {images = FIXTURES .. "/tiny-images-idx3-ubyte.gz",
                                        labels = FIXTURES .. "/tiny-i16.idx"})
            :find("holds labels of shape [2x3]", 1, true))
        assert.truthy(errmsg(data.idx, {labels = "x"}):find("'images' (a path) is required", 1, true))
        assert.truthy(errmsg(data.balanced_subset, {0, 0, 0, 1}, 4, 1)
            :find("class 1 has only 1 examples (needs 2)", 1, true))
    end)
end)

describe("CSV", function()
    local dir
    setup(function() dir = tmpdir() end)
    teardown(function() rm_rf(dir) end)

    it("round-trips awkward strings and exact numbers", function()
        local rows = {
            {name = "comma, inside", x = 0.1, n = 1, flag = true},
            {name = 'say "hi"', x = 1 / 3, n = -7, flag = false},
            {name = "two\nlines\r\nand CRLF", x = 1e-300, n = 2 ^ 53},
            {name = " padded ", x = 0 / 0, n = math.maxinteger},
            {name = "ünïcödé ✓", x = -1.5e308},
        }
        local path = dir .. "/deep/er/t.csv"
        csv.write(path, rows)
        assert.is_true(fs.isfile(path))
        local t = csv.read(path)
        assert.are.same({"flag", "n", "name", "x"}, t.columns)     -- sorted keys
        assert.are.equal(5, t.nrows)
        assert.are.equal("f64", t.data.x.dtype)
        for r = 1, 5 do assert.are.equal(rows[r].name, t.data.name[r]) end
        local x = t.data.x:totable()
        assert.are.equal(0.1, x[1])
        assert.are.equal(1 / 3, x[2])
        assert.are.equal(1e-300, x[3])
        assert.is_true(x[4] ~= x[4])
        assert.are.equal(-1.5e308, x[5])
        assert.are.same({"true", "false", "", "", ""}, t.data.flag)
        local back = csv.read_rows(path)
        assert.are.equal(-7, back[2].n)
        assert.are.equal(math.type(back[2].n), "integer")
        assert.is_nil(back[4].x)
        assert.is_nil(back[5].n)
        local text = read_file(path)
        assert.truthy(text:find('^flag,n,name,x\ntrue,1,"comma, inside",0.1\n'))
        assert.truthy(text:find('"say ""hi"""', 1, true))
    end)

    it("reads the fixture written by Python", function()
        local t = csv.read(FIXTURES .. "/tricky.csv")
        assert.are.same({"name", "value", "note"}, t.columns)
        assert.are.same({"comma, inside", 'say "hi"', " padded "}, t.data.name)
        assert.are.same({"plain", "two\nlines", "trailing "}, t.data.note)
        local v = t.data.value:totable()
        assert.are.equal(1.5, v[1])
        assert.are.equal(-2, v[2])
        assert.is_true(v[3] ~= v[3])
    end)

    it("appends with one header and checks the columns", function()
        local path = dir .. "/a.csv"
        csv.write(path, {{a = 1, b = "x"}}, {append = true})
        csv.write(path, {{b = "y", a = 2}}, {append = true})
        csv.write(path, {{a = 3}}, {append = true, columns = {"b", "a"}})
        assert.are.equal("a,b\n1,x\n2,y\n3,\n", read_file(path))
        local msg = errmsg(csv.write, path, {{a = 1, c = 2}}, {append = true})
        assert.truthy(msg:find("csv_write: " .. path .. ": cannot append: columns differ", 1, true))
        assert.truthy(msg:find("the rows lack 'b'", 1, true))
        assert.truthy(msg:find("the file lacks 'c'", 1, true))
        -- without append the table is replaced
        csv.write(path, {{z = 1}})
        assert.are.equal("z\n1\n", read_file(path))
        -- explicit column order is kept
        csv.write(path, {{a = 1, b = 2}}, {columns = {"b", "a"}})
        assert.are.equal("b,a\n2,1\n", read_file(path))
    end)

    it("refuses bad rows and bad files with the line", function()
        local path = dir .. "/e.csv"
        assert.truthy(errmsg(csv.write, path, {{a = 1}}, {columns = {"b"}})
            :find("rows[1] has key 'a', which is not among the columns", 1, true))
        assert.truthy(errmsg(csv.write, path, {{a = {}}})
            :find("row 1, column 'a': cannot write a table value", 1, true))
        assert.truthy(errmsg(csv.write, path, {}):find("no columns", 1, true))
        assert.truthy(errmsg(csv.write, path, {{a = 1}}, {colums = {"a"}})
            :find("unknown option 'colums'", 1, true))
        assert.truthy(errmsg(ls.io.csv_write, path, {"a"}, {5}):find("rows[1] is a number", 1, true))
        write_file(path, "a,b\n1,2\n3\n")
        assert.truthy(errmsg(csv.read, path)
            :find("csv_read: " .. path .. ": line 3: 1 field, but the header has 2", 1, true))
        write_file(path, 'a,b\n1,"open\n')
        assert.truthy(errmsg(csv.read, path):find("unterminated quoted field", 1, true))
        assert.truthy(errmsg(csv.read, dir .. "/none.csv"):find("none.csv: No such file", 1, true))
        write_file(dir .. "/file", "x")
        assert.truthy(errmsg(csv.write, dir .. "/file/sub/t.csv", {{a = 1}}):find("not a directory", 1, true))
    end)
end)

describe("ls.io safetensors", function()
    local dir
    setup(function() dir = tmpdir() end)
    teardown(function() rm_rf(dir) end)

    it("round-trips tensors and metadata", function()
        local w = ls.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "f32"})
        local ts = {
            ["0.weight"] = w, ["0.bias"] = ls.tensor({0.1, -0.2}, {dtype = "f64"}),
            idx = ls.tensor({-1, 2 ^ 40}, {dtype = "i64"}), raw = ls.tensor({0, 255}, {dtype = "u8"}),
            wt = w:t(), scalar = ls.tensor(2.5),
        }
        local path = dir .. "/m.safetensors"
        ls.io.save_safetensors(path, ts, {format = "pt", epoch = 3})
        local back, meta = ls.io.load_safetensors(path)
        for name, t in pairs(ts) do
            assert.are.equal(t.dtype, back[name].dtype)
            assert.are.same(t:size(), back[name]:size())
            assert.are.same(flat(t), flat(back[name]))
        end
        assert.are.same({format = "pt", epoch = "3"}, meta)
        local bytes = read_file(path)
        local n = string.unpack("<I8", bytes)
        assert.are.equal(0, (8 + n) % 8)
        local _, empty_meta = ls.io.load_safetensors((function()
            ls.io.save_safetensors(dir .. "/e.st", {})
            return dir .. "/e.st"
        end)())
        assert.are.same({}, empty_meta)
    end)

    it("reads every dtype of the Python-written fixture", function()
        local t, meta = ls.io.load_safetensors(FIXTURES .. "/tiny.safetensors")
        assert.are.same({format = "pt", source = "make_fixtures.py"}, meta)
        assert.are.same({{-1, -0.5, 0}, {0.5, 1, 1.5}}, t.w:totable())
        assert.are.same({1 / 3, -1e300}, t.d:totable())
        assert.are.same({-2 ^ 40, 0, 2 ^ 62}, t.n:totable())
        assert.are.same({0, 1, 128, 255}, t.b:totable())
        assert.are.same({1, -2, 65504}, t.h:totable())
        assert.are.equal("f32", t.h.dtype)
        assert.are.same({1, -0.5}, t.bf:totable())
        assert.are.same({-7, 7}, t.i:totable())
        assert.are.equal("i64", t.i.dtype)
        assert.are.same({0, 1}, t.m:totable())
    end)

    it("names the function and the file in errors", function()
        local path = dir .. "/bad.st"
        write_file(path, string.pack("<I8", 99999999) .. string.rep("\0", 112))
        assert.truthy(errmsg(ls.io.load_safetensors, path)
            :find("load_safetensors: " .. path .. ": header length 99999999 exceeds file size 120", 1, true))
        local h = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{}}'
        write_file(path, string.pack("<I8", #h) .. h .. string.rep("\0", 8))
        assert.truthy(errmsg(ls.io.load_safetensors, path):find('duplicate object key near \'"a"\'', 1, true))
        assert.truthy(errmsg(ls.io.load_safetensors, dir .. "/none.st")
            :find("none.st: No such file", 1, true))
        assert.truthy(errmsg(ls.io.save_safetensors, path, {a = 1})
            :find("save_safetensors: " .. path .. ": value for 'a' is a number, not a Tensor", 1, true))
        assert.truthy(errmsg(ls.io.save_safetensors, path, {ls.zeros(2)})
            :find("tensor names must be strings", 1, true))
        assert.truthy(errmsg(ls.io.save_safetensors, path, {}, {k = {}})
            :find("metadata value for 'k' is a table", 1, true))
        assert.truthy(errmsg(ls.io.save_safetensors, path, {__metadata__ = ls.zeros(1)})
            :find("reserved", 1, true))
        assert.truthy(errmsg(ls.io.save_safetensors, dir .. "/no/dir.st", {a = ls.zeros(1)})
            :find("No such file", 1, true))
    end)
end)

describe("landscape.io.fs", function()
    local dir
    setup(function() dir = tmpdir() end)
    teardown(function() rm_rf(dir) end)

    it("creates, tests and lists", function()
        assert.is_true(fs.mkdir_p(dir .. "/a/b/c"))
        assert.is_true(fs.mkdir_p(dir .. "/a/b/c"))
        assert.is_true(fs.isdir(dir .. "/a/b/c"))
        for _, n in ipairs({"shard-2.csv", "shard-10.csv", "notes.txt"}) do
            write_file(dir .. "/a/" .. n, "x")
        end
        assert.are.same({dir .. "/a/shard-10.csv", dir .. "/a/shard-2.csv"},
                        fs.list(dir .. "/a", "^shard%-%d+%.csv$"))
        assert.are.equal(3, #fs.list(dir .. "/a"))
        assert.is_true(fs.exists(dir .. "/a/notes.txt"))
        assert.is_false(fs.exists(dir .. "/a/none"))
        local ok, err = fs.mkdir_p(dir .. "/a/notes.txt/sub")
        assert.is_nil(ok)
        assert.truthy(err:find("not a directory", 1, true))
        assert.is_nil((fs.list(dir .. "/none")))
        assert.are.equal("a/b", fs.dirname("a/b/c.csv"))
        assert.are.equal(".", fs.dirname("c.csv"))
        assert.are.equal("/", fs.dirname("/c.csv"))
        assert.are.equal("c.csv", fs.basename("a/b/c.csv"))
        assert.are.equal("a/b/c", fs.join("a", "b/", "c"))
        assert.are.equal("/x", fs.join("a", "/x"))
        assert.has_error(function() fs.exists(nil) end)
    end)
end)
