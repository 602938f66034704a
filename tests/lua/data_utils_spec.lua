-- The Dataset object of landscape.data (ls.dataset): construction and its errors, subsets, splits,
-- seeded batches (coverage, order, epochs), label noise, normalisation and augmentation. Values are
-- checked against plain-Lua computations on small synthetic sets.
local ls = require "landscape"
local data = require "landscape.data"

local FMNIST = os.getenv("LANDSCAPE_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"

local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

-- n examples [n, 1, h, w] whose pixels encode (example, row, column) = 1000 i + 10 r + c, and
-- labels 1..classes cycling.
local function grid(n, h, w, classes)
    local x, y = {}, {}
    for i = 1, n do
        local img = {}
        for r = 1, h do
            local row = {}
            for c = 1, w do row[c] = 1000 * i + 10 * r + c end
            img[r] = row
        end
        x[i] = {img}
        y[i] = (i - 1) % (classes or 3) + 1
    end
    return data.dataset(ls.tensor(x, {dtype = "f64"}), y)
end

local function epoch_indices(ds, batch, opts)
    local seen, sizes = {}, {}
    for xb, yb, idx in ds:batches(batch, opts) do
        sizes[#sizes + 1] = xb:size(1)
        assert.are.equal(xb:size(1), yb:size(1))
        assert.are.equal(xb:size(1), idx:size(1))
        for _, i in ipairs(idx:totable()) do seen[#seen + 1] = i end
    end
    return seen, sizes
end

describe("ls.dataset", function()
    it("wraps x and y and checks them", function()
        local ds = ls.dataset(ls.zeros(5, 3), {1, 2, 3, 1, 2})
        assert.is_true(data.is_dataset(ds))
        assert.are.equal(5, ds:size())
        assert.are.equal(5, ds.n)
        assert.are.equal("i64", ds.y.dtype)
        assert.are.equal(3, ds:max_label())
        assert.truthy(tostring(ds):find("Dataset(n = 5", 1, true))
        local t = ls.dataset{x = ls.zeros(2, 3), y = ls.tensor({2, 1}, {dtype = "i64"}),
                             classes = {"a", "b"}}
        assert.are.same({"a", "b"}, t.classes)
        assert.are.equal(ds, ls.dataset(ds))
        assert.is_nil(ls.dataset(ls.zeros(4, 2)).y)       -- unlabelled is allowed
    end)

    it("rejects bad input with messages naming the function", function()
        has(errmsg(ls.dataset, ls.zeros(0, 3), {}), "dataset: empty dataset (x has shape [0x3])")
        has(errmsg(ls.dataset, ls.zeros(3, 2), {1, 2}),
            "dataset: x has 3 examples (shape [3x2]) but y has 2 labels")
        has(errmsg(ls.dataset, ls.zeros(2, 2), {0, 1}), "dataset: labels must be 1-based")
        has(errmsg(ls.dataset, ls.zeros(2, 2), ls.zeros(2)), "dataset: labels must be integer")
        has(errmsg(ls.dataset, ls.zeros(2, 2), {1.5, 1}), "dataset: labels[1] must be an integer")
        has(errmsg(ls.dataset, ls.zeros({2, 2}, {dtype = "i64"}), {1, 1}), "dataset: x must be a float")
        has(errmsg(ls.dataset, "x", {1}), "dataset: x must be a tensor")
        has(errmsg(ls.dataset, ls.zeros(2, 2), {1, 1}, {clases = 1}), "unknown option 'clases'")
        -- the position is the caller's line
        has(errmsg(function() local d = ls.dataset(ls.zeros(0, 3), {}); return d end),
            "data_utils_spec.lua:")
    end)
end)

describe("Dataset:subset, balanced_subset and random_split", function()
    it("subset takes rows in the given order", function()
        local ds = grid(6, 2, 2)
        local s = ds:subset({4, 1, 4})
        assert.are.equal(3, s.n)
        assert.are.same({1, 1, 1}, s.y:totable())   -- labels of 4, 1, 4
        assert.are.equal(4011, s.x[1][1][1][1])
        assert.are.equal(1022, s.x[2][1][2][2])
        assert.are.equal(4012, s.x[3][1][1][2])
        local s2 = ds:subset(ls.tensor({6, 2}, {dtype = "i64"}))
        assert.are.same({3, 2}, s2.y:totable())
        has(errmsg(ds.subset, ds, {}), "subset: empty index list")
        has(errmsg(ds.subset, ds, {1, 7}), "subset: index 7 out of range 1..6")
        has(errmsg(ds.subset, ds, {0}), "subset: index 0 out of range 1..6")
        has(errmsg(ds.subset, ds, {1.5}), "subset: indices[1] must be an integer")
    end)

    it("balanced_subset draws n / C of each class, seeded", function()
        local ds = grid(60, 1, 1, 4)
        local a = ds:balanced_subset(10, {seed = 3})
        local b = ds:balanced_subset(10, {seed = 3})
        local c = ds:balanced_subset(10, {seed = 4})
        local counts = {}
        for _, v in ipairs(a.y:totable()) do counts[v] = (counts[v] or 0) + 1 end
        assert.are.same({3, 3, 2, 2}, counts)
        assert.are.same(a.x:totable(), b.x:totable())
        assert.are_not.same(a.x:totable(), c.x:totable())
        has(errmsg(ds.balanced_subset, ds, 61), "balanced_subset: asked for 61 examples")
    end)

    it("random_split partitions the examples, seeded", function()
        local ds = grid(50, 1, 1)
        local a, b = ds:random_split(0.8, {seed = 2})
        assert.are.equal(40, a.n)
        assert.are.equal(10, b.n)
        local seen = {}
        for _, part in ipairs({a, b}) do
            local prev = 0
            for _, v in ipairs(part.x:reshape(-1):totable()) do
                local i = math.tointeger((v - 11) / 1000)
                assert.is_nil(seen[i])
                assert.is_true(i > prev)                  -- each part keeps ds's order
                seen[i], prev = true, i
            end
        end
        for i = 1, 50 do assert.is_true(seen[i]) end
        local a2 = ds:random_split(0.8, {seed = 2})
        local a3 = ds:random_split(0.8, {seed = 3})
        assert.are.same(a.x:totable(), a2.x:totable())
        assert.are_not.same(a.x:totable(), a3.x:totable())
        has(errmsg(ds.random_split, ds, 1.5), "random_split: fraction must be a number in (0, 1)")
        has(errmsg(ds.random_split, ds, 0.001), "leaves one part empty")
    end)
end)

describe("Dataset:batches", function()
    it("covers every index exactly once per epoch", function()
        local ds = grid(103, 1, 1)
        for _, shuffle in ipairs({true, false}) do
            local seen, sizes = epoch_indices(ds, 10, {shuffle = shuffle, seed = 5, epoch = 1})
            assert.are.equal(103, #seen)
            assert.are.equal(11, #sizes)
            assert.are.equal(3, sizes[11])
            local sorted = {table.unpack(seen)}
            table.sort(sorted)
            for i = 1, 103 do assert.are.equal(i, sorted[i]) end
            if not shuffle then assert.are.same(sorted, seen) end
        end
        local seen, sizes = epoch_indices(ds, 10, {seed = 5, epoch = 1, drop_last = true})
        assert.are.equal(100, #seen)
        assert.are.equal(10, #sizes)
        assert.are.equal(11, ds:num_batches(10))
        assert.are.equal(10, ds:num_batches(10, {drop_last = true}))
    end)

    it("returns the rows and labels of the indices it yields", function()
        local ds = grid(20, 2, 3, 7)
        for xb, yb, idx in ds:batches(6, {seed = 9, epoch = 2}) do
            local ids = idx:totable()
            for k, i in ipairs(ids) do
                assert.are.equal(1000 * i + 23, xb[k][1][2][3])
                assert.are.equal((i - 1) % 7 + 1, yb[k])
            end
        end
    end)

    it("shuffles are seeded and differ by epoch", function()
        local ds = grid(100, 1, 1)
        local e1 = epoch_indices(ds, 32, {seed = 1, epoch = 1})
        local e1b = epoch_indices(ds, 32, {seed = 1, epoch = 1})
        local e2 = epoch_indices(ds, 32, {seed = 1, epoch = 2})
        local s2 = epoch_indices(ds, 32, {seed = 2, epoch = 1})
        assert.are.same(e1, e1b)
        assert.are_not.same(e1, e2)
        assert.are_not.same(e1, s2)
        -- without an explicit epoch, each call is the next epoch of this dataset
        local fresh = grid(100, 1, 1)
        assert.are.same(e1, epoch_indices(fresh, 32, {seed = 1}))
        assert.are.same(e2, epoch_indices(fresh, 32, {seed = 1}))
    end)

    it("gives views in order without shuffling", function()
        local ds = grid(10, 1, 2)
        local xb, yb, idx = ds:batches(4, {shuffle = false})()
        assert.are.same({1, 2, 3, 4}, idx:totable())
        xb[1][1][1][1] = -1                                  -- a view of ds.x
        assert.are.equal(-1, ds.x[1][1][1][1])
        assert.are.same({1, 2, 3, 1}, yb:totable())
    end)

    it("checks its arguments", function()
        local ds = grid(10, 1, 1)
        has(errmsg(ds.batches, ds, 0), "batches: batch size must be a positive integer, got 0")
        has(errmsg(ds.batches, ds, 4, {shufle = true}), "unknown option 'shufle'")
        has(errmsg(ds.batches, ds, 4, {seed = 1.5}), "batches: option 'seed' must be an integer")
        local flat = ls.dataset(ls.zeros(4, 3), {1, 2, 1, 2})
        has(errmsg(flat.batches, flat, 2, {augment = {flip = true}}),
            "batches: augmentation needs images [N, C, H, W], got x of shape [4x3]")
        has(errmsg(ds.batches, ds, 2, {augment = {crop = -1}}), "augment.crop must be")
    end)
end)

describe("Dataset augmentation", function()
    -- Where, if anywhere, image `img` (a [1, h, w] table) sits in the zero-padded image i of ds,
    -- mirrored or not: a list of {dy, dx, mirrored} matches.
    local function windows(ds, i, img, pad)
        local h, w = #img[1], #img[1][1]
        local src = ds.x[i][1]:totable()
        local function px(r, c)   -- pixel of the padded image, 1-based
            r, c = r - pad, c - pad
            if r < 1 or r > h or c < 1 or c > w then return 0 end
            return src[r][c]
        end
        local found = {}
        for dy = 0, 2 * pad do
            for dx = 0, 2 * pad do
                for _, mirrored in ipairs({false, true}) do
                    local ok = true
                    for r = 1, h do
                        for c = 1, w do
                            local cc = mirrored and (w + 1 - c) or c
                            if img[1][r][cc] ~= px(r + dy, c + dx) then ok = false break end
                        end
                        if not ok then break end
                    end
                    if ok then found[#found + 1] = {dy, dx, mirrored} end
                end
            end
        end
        return found
    end

    it("flips mirror the columns of about half the images", function()
        local ds = grid(64, 3, 5)
        local flipped, kept = 0, 0
        for xb, _, idx in ds:batches(16, {seed = 1, epoch = 1, augment = {flip = true}}) do
            assert.are.same({16, 1, 3, 5}, xb:size())
            for k, i in ipairs(idx:totable()) do
                local got, orig = xb[k][1]:totable(), ds.x[i][1]:totable()
                local mirror = {}
                for r = 1, 3 do
                    mirror[r] = {}
                    for c = 1, 5 do mirror[r][c] = orig[r][6 - c] end
                end
                if got[1][1] == orig[1][1] then
                    assert.are.same(orig, got)
                    kept = kept + 1
                else
                    assert.are.same(mirror, got)               -- the reversed columns
                    flipped = flipped + 1
                end
            end
        end
        assert.is_true(flipped >= 16 and kept >= 16, flipped .. " flipped, " .. kept .. " kept")
    end)

    it("crops are windows of the zero-padded image, with flips", function()
        local ds = grid(40, 4, 5)
        local offsets, mirrored = {}, 0
        for xb, _, idx in ds:batches(8, {seed = 3, epoch = 1, augment = {crop = 2, flip = true}}) do
            assert.are.same({8, 1, 4, 5}, xb:size())
            for k, i in ipairs(idx:totable()) do
                local found = windows(ds, i, xb[k]:totable(), 2)
                assert.is_true(#found >= 1, "example " .. i .. " is no window of its padded image")
                local f = found[1]
                offsets[f[1] .. "," .. f[2]] = true
                if f[3] then mirrored = mirrored + 1 end
            end
        end
        local distinct = 0
        for _ in pairs(offsets) do distinct = distinct + 1 end
        assert.is_true(distinct >= 10, "only " .. distinct .. " distinct offsets")
        assert.is_true(mirrored >= 8 and mirrored <= 32)
    end)

    it("is seeded by seed and epoch and leaves the dataset alone", function()
        local ds = grid(16, 3, 3)
        local before = ds.x:totable()
        local function run(seed, epoch)
            local out = {}
            for xb in ds:batches(16, {shuffle = false, seed = seed, epoch = epoch,
                                      augment = {crop = 1, flip = true}}) do
                out[#out + 1] = xb:totable()
            end
            return out
        end
        assert.are.same(run(1, 1), run(1, 1))
        assert.are_not.same(run(1, 1), run(1, 2))
        assert.are_not.same(run(1, 1), run(2, 1))
        assert.are.same(before, ds.x:totable())
    end)
end)

describe("Dataset:with_label_noise", function()
    it("changes exactly round(p N) labels, always to another class", function()
        local ds = grid(1000, 1, 1, 10)
        for _, p in ipairs({0, 0.1, 0.25, 0.3333, 1}) do
            local nd = ds:with_label_noise(p, {seed = 7})
            local k = math.floor(p * 1000 + 0.5)
            assert.are.equal(k, #nd.noisy_indices)
            assert.are.equal(p, nd.noise_rate)
            assert.are.same(ds.y:totable(), nd.clean_y:totable())
            local y, clean = nd.y:totable(), nd.clean_y:totable()
            local noisy = {}
            for j, i in ipairs(nd.noisy_indices) do
                noisy[i] = true
                if j > 1 then assert.is_true(nd.noisy_indices[j - 1] < i) end
            end
            for i = 1, 1000 do
                assert.is_true(y[i] >= 1 and y[i] <= 10)
                if noisy[i] then assert.are_not.equal(clean[i], y[i])
                else assert.are.equal(clean[i], y[i]) end
            end
            assert.are.same(ds.x:totable(), nd.x:totable())
        end
    end)

    it("draws the new label uniformly from the other classes, seeded", function()
        local n = 18000
        local ds = ls.dataset(ls.zeros(n, 1), ls.full({n}, 4, {dtype = "i64"}))
        local nd = ds:with_label_noise(1, {seed = 1, classes = 10})
        local counts = {}
        for _, v in ipairs(nd.y:totable()) do counts[v] = (counts[v] or 0) + 1 end
        assert.is_nil(counts[4])
        for c = 1, 10 do
            if c ~= 4 then assert.is_true(math.abs(counts[c] - 2000) < 200, c .. ": " .. counts[c]) end
        end
        local a = grid(200, 1, 1, 10):with_label_noise(0.3, {seed = 5})
        local b = grid(200, 1, 1, 10):with_label_noise(0.3, {seed = 5})
        local c = grid(200, 1, 1, 10):with_label_noise(0.3, {seed = 6})
        assert.are.same(a.y:totable(), b.y:totable())
        assert.are.same(a.noisy_indices, b.noisy_indices)
        assert.are_not.same(a.noisy_indices, c.noisy_indices)
    end)

    it("is carried over by subsets and checks its arguments", function()
        local nd = grid(100, 1, 1, 10):with_label_noise(0.5, {seed = 2})
        local s = nd:subset({nd.noisy_indices[1], 1, nd.noisy_indices[2]})
        local expect = {1, 3}
        if nd.noisy_indices[1] == 1 then expect = {1, 2, 3} end
        assert.are.same(expect, s.noisy_indices)
        assert.are.equal(3, s.clean_y:size(1))
        local ds = grid(10, 1, 1, 10)
        has(errmsg(ds.with_label_noise, ds, 1.5), "with_label_noise: p must be a fraction in [0, 1]")
        has(errmsg(ds.with_label_noise, ds, 0.1, {classes = 5}),
            "with_label_noise: label 10 is out of range for 5 classes")
        local unl = ls.dataset(ls.zeros(3, 1))
        has(errmsg(unl.with_label_noise, unl, 0.1), "with_label_noise: the dataset has no labels")
    end)
end)

describe("Dataset:normalize", function()
    it("applies (x - mean) / std and records the total map", function()
        local ds = ls.dataset(ls.tensor({{1, 2}, {3, 6}}, {dtype = "f64"}), {1, 2},
                              {normalization = {mean = 0.5, std = 2}})
        local a = ds:normalize{mean = 1, std = 0.5}
        assert.are.same({{0, 2}, {4, 10}}, a.x:totable())
        assert.are.same({mean = 0.5 + 1 * 2, std = 1}, a.normalization)
        local b = ds:normalize()
        assert.near(0, b.x:mean():item(), 1e-12)
        assert.near(1, b.x:std(nil, false, 0):item(), 1e-12)
        assert.are.same({{1, 2}, {3, 6}}, ds.x:totable())   -- unchanged
        has(errmsg(ds.normalize, ds, {mean = 1}), "normalize: give both 'mean' and 'std'")
        has(errmsg(ds.normalize, ds, {mean = 1, std = 0}), "normalize: mean must be a finite")
    end)
end)

describe("data.fashion_mnist", function()
    local f = io.open(FMNIST .. "/t10k-labels-idx1-ubyte.gz", "rb")
    local have = f ~= nil
    if f then f:close() end

    it("returns a Dataset", function()
        if not have then return pending("no Fashion-MNIST in " .. FMNIST) end
        local ds = data.fashion_mnist{split = "test", n = 100, seed = 1}
        assert.is_true(data.is_dataset(ds))
        assert.are.equal("test", ds.split)
        assert.are.same({mean = data.FASHION_MNIST_MEAN, std = data.FASHION_MNIST_STD},
                        ds.normalization)
        assert.are.equal(10, ds:max_label())
        local a, b = ds:random_split(0.5)
        assert.are.equal("test", a.split)
        assert.are.equal(ds.classes, b.classes)
        local xb, yb = ds:batches(32, {seed = 1, augment = {crop = 4, flip = true}})()
        assert.are.same({32, 1, 28, 28}, xb:size())
        assert.are.equal(32, yb:size(1))
    end)
end)
