--- landscape.data: datasets from IDX files, Fashion-MNIST first, and the Dataset object.
--
--   local data = require "landscape.data"
--   local train = data.fashion_mnist{split = "train", n = 1000, seed = 1}
--   -- train.x: Tensor [1000, 1, 28, 28] f32, train.y: Tensor [1000] i64 in 1..10, train.classes
--   local tr, val = train:random_split(0.9, {seed = 1})
--   for xb, yb, idx in tr:batches(128, {seed = 1, augment = {crop = 4, flip = true}}) do ... end
--   local noisy = tr:with_label_noise(0.2, {seed = 1})     -- noisy.clean_y, noisy.noisy_indices
--
-- A Dataset (data.dataset(x, y), also ls.dataset) holds x [N, ...] and y [N] with methods size,
-- subset, balanced_subset, random_split, normalize, with_label_noise, batches, num_batches and
-- max_label; docs/training.md is the reference.
--
-- Fashion-MNIST comes from Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist)
-- or the directory in $LANDSCAPE_FASHION_MNIST_DIR, as the four gzip'd IDX files of the original
-- release.
--
-- Labels are 1-based class indices, like every index on the Lua side: y = the file's label + 1
-- (1 = T-shirt/top ... 10 = Ankle boot; torchvision's label is y - 1). So classes[y] names a label,
-- and y goes straight into ls.cross_entropy, ls.one_hot and comparisons with argmax, which all count
-- classes from 1.
local ls = require "landscape"
local util = require "landscape.util"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options, util.shape_str

local M = {}

M.FASHION_MNIST_CLASSES = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}
--- Mean and standard deviation of the Fashion-MNIST training pixels after scaling to [0, 1]
-- (0.28604 and 0.35302 to five places), the usual normalisation constants for this data set.
M.FASHION_MNIST_MEAN = 0.2860
M.FASHION_MNIST_STD = 0.3530
M.FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

local FILES = {
    train = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"},
    test = {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"},
}

-- Errors inside this module are raised without a position (level 0); each public function runs its
-- body under pcall and re-raises at level 2, so the message points at the user's call:
-- "train.lua:12: fashion_mnist: ...".



-- Raise "<who>: <path>: No such file or directory<hint>" when a file cannot be opened.
local function check_readable(path, who, hint)
    local f, err = io.open(path, "rb")
    if not f then fail("%s: %s%s", who, err, hint or "") end
    f:close()
end

--- The indices (1-based, ascending) of a seeded class-balanced random subset of n of the labels.
-- Every class present gets floor(n / C) examples and the C classes with the smallest labels get one
-- more until n is reached (C = number of distinct labels). The draw walks one random permutation
-- (ls.randperm(N, {seed = seed})) and keeps an index while its class is below its quota, so the same
-- seed always gives the same subset, and a larger n's subset is not related to a smaller one's.
-- e.g. local small = ls.data.balanced_subset(train, 1000, {seed = 1})
local function balanced_subset(labels, n, seed, who)
    who = who or "balanced_subset"
    local N = #labels
    local counts, classes = {}, {}
    for i = 1, N do
        local c = labels[i]
        if not counts[c] then
            counts[c] = 0
            classes[#classes + 1] = c
        end
        counts[c] = counts[c] + 1
    end
    table.sort(classes)
    local C = #classes
    local quota = {}
    for k, c in ipairs(classes) do
        quota[c] = n // C + ((k <= n % C) and 1 or 0)
        if quota[c] > counts[c] then
            fail("%s: cannot draw a class-balanced subset of %d: class %s has only %d examples "
                 .. "(needs %d)", who, n, tostring(c), counts[c], quota[c])
        end
    end
    local perm = ls.randperm(N, {seed = seed}):totable()
    local taken, picked = {}, {}
    for c in pairs(quota) do taken[c] = 0 end
    for _, i in ipairs(perm) do
        local c = labels[i]
        if taken[c] < quota[c] then
            taken[c] = taken[c] + 1
            picked[#picked + 1] = i
            if #picked == n then break end
        end
    end
    table.sort(picked)
    return picked
end
M.balanced_subset = public(balanced_subset)

-- Rows idx (a 1-based list) of tensor t along dim 1, as a new tensor. Row by row through 1-based
-- indexing (t[i] is a number for 1-d t, else a view of row i, copied into out[k]).
local function take_rows(t, idx)
    local shape = t:size()
    shape[1] = #idx
    local out = ls.zeros(shape, {dtype = t.dtype})
    for k, i in ipairs(idx) do out[k] = t[i] end
    return out
end

---------------------------------------------------------------------------------------------------
-- Dataset: a labelled set of examples x [N, ...] with labels y [N] (i64, 1-based classes), and the
-- utilities a training study needs: subsets, splits, seeded shuffled batches with augmentation,
-- normalisation and symmetric label noise. Every method that makes a new data set leaves this one
-- alone; the new one shares nothing writable with it (x and y are fresh tensors or read-only views).
---------------------------------------------------------------------------------------------------
local Dataset = {}
Dataset.__index = Dataset
Dataset.__name = "landscape.Dataset"
M.Dataset = Dataset


-- 64-bit mixing of integers into one seed (splitmix64's finaliser applied after each word), so the
-- streams for (seed, epoch, purpose, batch) are unrelated for every combination.
local function mix(...)
    local h = 0x243F6A8885A308D3
    for i = 1, select("#", ...) do
        h = h ~ select(i, ...)
        h = (h ~ (h >> 30)) * 0xBF58476D1CE4E5B9
        h = (h ~ (h >> 27)) * 0x94D049BB133111EB
        h = h ~ (h >> 31)
    end
    return h
end
M._mix = mix

-- purposes of the derived streams
local STREAM_SHUFFLE, STREAM_CROP, STREAM_FLIP, STREAM_NOISE_PICK, STREAM_NOISE_LABEL =
    1, 2, 3, 4, 5

local function is_dataset(v) return getmetatable(v) == Dataset end
--- ls.data.is_dataset(v) -> boolean
-- Whether v is a Dataset (ls.dataset, ls.data.fashion_mnist, ...).
-- e.g. ls.data.is_dataset(ls.dataset(ls.zeros(2, 3), ls.tensor({1, 2},
--          {dtype = "i64"})))   --> true
M.is_dataset = is_dataset

-- Labels as an i64 tensor [N]: from an i64/u8 tensor or a Lua list of integers.
local function as_labels(y, who)
    if ls.is_tensor(y) then
        if y.dtype == "u8" then y = y:long() end
        if y.dtype ~= "i64" then
            fail("%s: labels must be integer class indices (an i64 tensor), got a %s tensor", who,
                 y.dtype)
        end
        if y:dim() ~= 1 then fail("%s: labels must be a 1-d tensor, got shape %s", who, shape_str(y)) end
        return y
    elseif type(y) == "table" then
        for i = 1, #y do
            if math.type(y[i]) ~= "integer" and not (type(y[i]) == "number" and y[i] == y[i] // 1) then
                fail("%s: labels[%d] must be an integer class index, got %s", who, i, tostring(y[i]))
            end
        end
        return ls.tensor(y, {dtype = "i64"})
    end
    fail("%s: labels must be an i64 tensor or a list of integers, got %s", who, type(y))
end

-- A new Dataset from tensors that were already checked, carrying over the descriptive fields of
-- `from` (classes, source, split, normalization).
local function make(x, y, from, extra)
    local ds = setmetatable({x = x, y = y, n = x:size(1)}, Dataset)
    if from then
        ds.classes, ds.source, ds.split, ds.normalization =
            from.classes, from.source, from.split, from.normalization
    end
    if extra then for k, v in pairs(extra) do ds[k] = v end end
    return ds
end

-- Check x and y and build a Dataset. x: a float tensor [N, ...], N >= 1; y: nil or labels [N] >= 1.
local function new_dataset(x, y, opts, who)
    who = who or "dataset"
    if not ls.is_tensor(x) then fail("%s: x must be a tensor [N, ...], got %s", who, type(x)) end
    if x:dim() < 1 then fail("%s: x must have a first (example) dimension, got a 0-d tensor", who) end
    if x.dtype ~= "f32" and x.dtype ~= "f64" then
        fail("%s: x must be a float tensor (f32 or f64), got %s; cast it first", who, x.dtype)
    end
    local N = x:size(1)
    if N == 0 then fail("%s: empty dataset (x has shape %s)", who, shape_str(x)) end
    if y ~= nil then
        y = as_labels(y, who)
        if y:size(1) ~= N then
            fail("%s: x has %d examples (shape %s) but y has %d labels", who, N, shape_str(x),
                 y:size(1))
        end
    end
    local ds = setmetatable({x = x, y = y, n = N}, Dataset)
    if y ~= nil then
        local lo = y:double():min():item()
        if lo < 1 then
            fail("%s: labels must be 1-based class indices (>= 1), got %d", who, math.tointeger(lo))
        end
    end
    if opts then
        for _, k in ipairs({"classes", "source", "split", "normalization"}) do ds[k] = opts[k] end
    end
    return ds
end

--- ls.dataset(x [, y] [, opts]) / data.dataset(...) -> Dataset
-- x: a float tensor [N, ...] (N >= 1 examples); y: labels [N], an i64 tensor or a list of integers,
-- 1-based class indices (1..C). y may be omitted for an unlabelled set. Also accepts one table
-- {x = ..., y = ..., classes = ...} (for instance the result of data.idx).
-- opts: classes = list of class names; source, split, normalization: descriptive fields kept as is.
-- e.g. local d = ls.dataset(ls.randn({100, 4}), ls.randint(1, 4, {100}))
M.dataset = public(function(x, y, opts)
    if is_dataset(x) and y == nil then return x end
    if type(x) == "table" then   -- {x = ..., y = ..., classes = ...}
        return new_dataset(x.x, x.y, x, "dataset")
    end
    if opts ~= nil and type(opts) ~= "table" then
        fail("dataset: expected an options table as argument 3, got %s", type(opts))
    end
    opts = check_options(opts, {classes = true, source = true, split = true, normalization = true},
                         "dataset")
    return new_dataset(x, y, opts, "dataset")
end)

function Dataset:__tostring()
    local s = string.format("Dataset(n = %d, x = %s %s", self.n, shape_str(self.x), self.x.dtype)
    if self.y then s = s .. string.format(", y = [%d] %s", self.y:size(1), self.y.dtype) end
    if self.classes then s = s .. string.format(", %d classes", #self.classes) end
    if self.noisy_indices then
        s = s .. string.format(", %d noisy labels", #self.noisy_indices)
    end
    return s .. ")"
end

--- ds:size() -> N, the number of examples (also the field ds.n).
-- The number of examples.
-- e.g. print(train:size())
function Dataset:size() return self.n end

local function need_labels(self, who)
    if self.y == nil then fail("%s: the dataset has no labels", who) end
end

--- ds:max_label() -> the largest label (the number of classes a model needs at least); cached.
-- The largest label (the number of classes when the labels are 1..C).
-- e.g. local classes = train:max_label()
function Dataset:max_label()
    need_labels(self, "max_label")
    if not self._max_label then
        self._max_label = math.tointeger(self.y:double():max():item())
    end
    return self._max_label
end

-- Indices (a Lua list or a 1-d i64 tensor, 1-based) checked against 1..n: an i64 tensor.
local function check_indices(self, idx, who)
    local t
    if ls.is_tensor(idx) then
        if idx.dtype ~= "i64" then
            fail("%s: indices must be an i64 tensor or a list of integers, got a %s tensor", who,
                 idx.dtype)
        end
        if idx:dim() ~= 1 then fail("%s: indices must be 1-d, got shape %s", who, shape_str(idx)) end
        t = idx
    elseif type(idx) == "table" then
        for i = 1, #idx do
            if math.type(idx[i]) ~= "integer" then
                fail("%s: indices[%d] must be an integer, got %s", who, i, tostring(idx[i]))
            end
        end
        t = ls.tensor(idx, {dtype = "i64"})
    else
        fail("%s: indices must be an i64 tensor or a list of integers, got %s", who, type(idx))
    end
    if t:size(1) == 0 then fail("%s: empty index list (a dataset needs at least one example)", who) end
    local d = t:double()
    local lo, hi = d:min():item(), d:max():item()
    if lo < 1 or hi > self.n then
        fail("%s: index %d out of range 1..%d", who, math.tointeger(lo < 1 and lo or hi), self.n)
    end
    return t
end

-- The rows idx (a checked i64 tensor) of the dataset as a new Dataset; label noise is carried over
-- for the kept examples.
local function take(self, idx)
    local x = self.x:index_select(1, idx)
    local y = self.y and self.y:index_select(1, idx) or nil
    local ds = make(x, y, self)
    if self.clean_y then
        ds.clean_y = self.clean_y:index_select(1, idx)
        ds.noise_rate = self.noise_rate
        local yl, cl, noisy = ds.y:totable(), ds.clean_y:totable(), {}
        for i = 1, #yl do if yl[i] ~= cl[i] then noisy[#noisy + 1] = i end end
        ds.noisy_indices = noisy
    end
    return ds
end

--- ds:subset(indices) -> Dataset of the examples at `indices` (1-based; a list or an i64 tensor), in
-- that order (repeats allowed). Label noise (clean_y, noisy_indices) is carried over.
-- e.g. local first = train:subset(ls.arange(1, 101):long())
function Dataset:subset(indices)
    return take(self, check_indices(self, indices, "subset"))
end

--- ds:balanced_subset(n [, {seed = 1}]) -> Dataset of n examples, n // C of each of the C classes
-- present (the classes with the smallest labels one more until n is reached), drawn by a seeded
-- walk over one random permutation; kept in their order in ds. See data.balanced_subset.
-- e.g. local small = train:balanced_subset(100, {seed = 1})
function Dataset:balanced_subset(n, opts)
    opts = check_options(opts, {seed = true}, "balanced_subset")
    need_labels(self, "balanced_subset")
    if math.type(n) ~= "integer" or n < 1 then
        fail("balanced_subset: n must be a positive integer, got %s", tostring(n))
    end
    if n > self.n then
        fail("balanced_subset: asked for %d examples but the dataset has %d", n, self.n)
    end
    local seed = opts.seed or 1
    if math.type(seed) ~= "integer" then
        fail("balanced_subset: option 'seed' must be an integer, got %s", tostring(seed))
    end
    local picked = balanced_subset(self.y:totable(), n, seed, "balanced_subset")
    return take(self, ls.tensor(picked, {dtype = "i64"}))
end

--- ds:random_split(fraction [, {seed = 1}]) -> a, b: a seeded random partition, a with
-- round(fraction * N) examples and b with the rest, each kept in ds's order. fraction in (0, 1) and
-- both parts must be non-empty. (Named after torch.utils.data.random_split; the field ds.split
-- already holds a loader's split name, "train" or "test".)
-- e.g. local a, b = train:random_split(0.9, {seed = 1})
function Dataset:random_split(fraction, opts)
    opts = check_options(opts, {seed = true}, "random_split")
    if type(fraction) ~= "number" or not (fraction > 0 and fraction < 1) then
        fail("random_split: fraction must be a number in (0, 1), got %s", tostring(fraction))
    end
    local seed = opts.seed or 1
    if math.type(seed) ~= "integer" then
        fail("random_split: option 'seed' must be an integer, got %s", tostring(seed))
    end
    local k = math.floor(fraction * self.n + 0.5)
    if k < 1 or k >= self.n then
        fail("random_split: fraction %g of %d examples leaves one part empty", fraction, self.n)
    end
    local perm = ls.randperm(self.n, {seed = seed}):totable()
    local a, b = {}, {}
    for i = 1, k do a[i] = perm[i] end
    for i = k + 1, self.n do b[i - k] = perm[i] end
    table.sort(a)
    table.sort(b)
    return take(self, ls.tensor(a, {dtype = "i64"})), take(self, ls.tensor(b, {dtype = "i64"}))
end

--- ds:normalize([{mean = m, std = s}]) -> Dataset with x' = (x - m) / s. Without mean and std, they
-- are the mean and (population) standard deviation of all of x, which the result then has as 0
-- and 1. ds.normalization records the total affine map from the loader's [0, 1] pixels: after a
-- loader's (m1, s1) and this (m2, s2) it is {mean = m1 + m2 s1, std = s1 s2}.
-- e.g. local test2 = test:normalize{mean = 0.286, std = 0.353}
function Dataset:normalize(opts)
    opts = check_options(opts, {mean = true, std = true}, "normalize")
    local m, s = opts.mean, opts.std
    if (m == nil) ~= (s == nil) then fail("normalize: give both 'mean' and 'std', or neither") end
    if m == nil then
        local xd = self.x:double()
        m = xd:mean():item()
        s = xd:std(nil, false, 0):item()
    end
    if type(m) ~= "number" or type(s) ~= "number" or not (s > 0) or s == math.huge or m ~= m then
        fail("normalize: mean must be a finite number and std a positive one, got mean = %s, "
             .. "std = %s", tostring(m), tostring(s))
    end
    local ds = make((self.x - m) / s, self.y, self,
                    {clean_y = self.clean_y, noisy_indices = self.noisy_indices,
                     noise_rate = self.noise_rate})
    local prev = self.normalization
    if prev then
        ds.normalization = {mean = prev.mean + m * prev.std, std = prev.std * s}
    else
        ds.normalization = {mean = m, std = s}
    end
    return ds
end

--- ds:with_label_noise(p [, {seed = 1, classes = #ds.classes or 10}]) -> Dataset with symmetric
-- label noise: exactly round(p * N) examples, chosen by a seeded permutation, get a label drawn
-- uniformly from the classes - 1 OTHER classes (so a noisy label always differs from its clean
-- one). The result records clean_y (this dataset's labels), noisy_indices (a sorted Lua list of
-- 1-based positions) and noise_rate = p. Noise applied twice is relative to the labels it is
-- applied to.
-- e.g. local noisy = train:with_label_noise(0.2, {seed = 1})
function Dataset:with_label_noise(p, opts)
    opts = check_options(opts, {seed = true, classes = true}, "with_label_noise")
    need_labels(self, "with_label_noise")
    if type(p) ~= "number" or not (p >= 0 and p <= 1) then
        fail("with_label_noise: p must be a fraction in [0, 1], got %s", tostring(p))
    end
    local seed = opts.seed or 1
    if math.type(seed) ~= "integer" then
        fail("with_label_noise: option 'seed' must be an integer, got %s", tostring(seed))
    end
    local C = opts.classes or (self.classes and #self.classes) or 10
    if math.type(C) ~= "integer" or C < 2 then
        fail("with_label_noise: option 'classes' must be an integer >= 2, got %s", tostring(C))
    end
    if self:max_label() > C then
        fail("with_label_noise: label %d is out of range for %d classes", self:max_label(), C)
    end
    local k = math.floor(p * self.n + 0.5)
    local y = self.y:totable()
    local noisy = {}
    if k > 0 then
        local perm = ls.randperm(self.n, {seed = mix(seed, STREAM_NOISE_PICK)}):totable()
        for i = 1, k do noisy[i] = perm[i] end
        table.sort(noisy)
        -- r uniform in 1..C-1; skipping the clean label c maps it uniformly onto the other classes
        local r = ls.randint(1, C, {k}, {seed = mix(seed, STREAM_NOISE_LABEL)}):totable()
        for j, i in ipairs(noisy) do
            y[i] = r[j] < y[i] and r[j] or r[j] + 1
        end
    end
    return make(self.x, ls.tensor(y, {dtype = "i64"}), self,
                {clean_y = self.y, noisy_indices = noisy, noise_rate = p})
end

--- ds:num_batches(batch [, {drop_last = false}]) -> batches per epoch.
-- How many batches of this size one pass over the dataset makes (options as batches).
-- e.g. print(train:num_batches(128))
function Dataset:num_batches(batch, opts)
    opts = check_options(opts, {drop_last = true}, "num_batches")
    util.posint(batch, "num_batches", "batch")
    local drop = opts.drop_last
    if drop then return self.n // batch end
    return (self.n + batch - 1) // batch
end

-- Reversed 1-based positions n..1, for flips with index_select (cached per n).
local reversed_cache = {}
local function reversed(n)
    local r = reversed_cache[n]
    if not r then
        local t = {}
        for i = 1, n do t[i] = n + 1 - i end
        r = ls.tensor(t, {dtype = "i64"})
        reversed_cache[n] = r
    end
    return r
end

-- Augment one batch xb [B, C, H, W] (seeds derived from seed, epoch and the batch number):
--   crop = p > 0: each image is a window of size H x W of the batch zero-padded by p on every side
--                 (an [B, C, H + 2p, W + 2p] tensor made once per batch), at an offset (dy, dx)
--                 uniform in 0..2p each;
--   flip = true:  each image is mirrored left-right with probability 1/2 (after the crop).
-- A crop-and-flip is a window of the mirrored padded batch at column offset 2p - dx, so both come
-- from one copy per image. Draws are one randint per batch and purpose.
local function augment_batch(xb, aug, seed, epoch, b)
    local B, C, H, W = table.unpack(xb:size())
    local pad, flip = aug.crop, aug.flip
    local flips
    if flip then
        flips = ls.randint(0, 2, {B}, {seed = mix(seed, STREAM_FLIP, epoch, b)}):totable()
    end
    if pad == 0 then
        if not flip then return xb end
        local mask = ls.tensor(flips, {dtype = xb.dtype}):reshape(B, 1, 1, 1)
        return ls.where(mask, xb:index_select(4, reversed(W)), xb)
    end
    local Hp, Wp = H + 2 * pad, W + 2 * pad
    local padded = ls.zeros({B, C, Hp, Wp}, {dtype = xb.dtype})
    padded:narrow(3, pad + 1, H):narrow(4, pad + 1, W):copy(xb)
    local mirrored = flip and padded:index_select(4, reversed(Wp)) or nil
    local offs = ls.randint(0, 2 * pad + 1, {B, 2}, {seed = mix(seed, STREAM_CROP, epoch, b)})
        :totable()
    local out = ls.zeros({B, C, H, W}, {dtype = xb.dtype})
    for i = 1, B do
        local dy, dx = offs[i][1], offs[i][2]
        local src = padded
        if flip and flips[i] == 1 then src, dx = mirrored, 2 * pad - dx end
        out[i] = src[i]:narrow(2, dy + 1, H):narrow(3, dx + 1, W)
    end
    return out
end

local function check_augment(aug, x, who)
    if aug == nil or aug == false then return nil end
    if type(aug) ~= "table" then
        fail("%s: option 'augment' must be a table {crop = pad, flip = true}, got %s", who, type(aug))
    end
    aug = check_options(aug, {crop = true, flip = true}, who .. " (augment)")
    local crop = aug.crop
    if crop == nil or crop == false then crop = 0 elseif crop == true then crop = 4 end
    if math.type(crop) ~= "integer" or crop < 0 then
        fail("%s: augment.crop must be a padding size (an integer >= 0) or true (4), got %s", who,
             tostring(aug.crop))
    end
    local flip = aug.flip or false
    if type(flip) ~= "boolean" then
        fail("%s: augment.flip must be a boolean, got %s", who, tostring(flip))
    end
    if x:dim() ~= 4 then
        fail("%s: augmentation needs images [N, C, H, W], got x of shape %s", who, shape_str(x))
    end
    if crop == 0 and not flip then return nil end
    return {crop = crop, flip = flip}
end

--- ds:batches(batch [, opts]) -> iterator over (x_batch, y_batch, indices)
-- for xb, yb, idx in ds:batches(128, {seed = 1}) do ... end
-- indices is an i64 tensor [B] of the examples' 1-based positions in ds; yb is nil for an
-- unlabelled set. opts:
--   shuffle = true     a new seeded permutation each epoch; false: in order, and x_batch, y_batch
--                      are views of ds.x, ds.y (no copy) unless augmented
--   seed = 1           the permutation of epoch e is ls.randperm(N, {seed = mix(seed, 1, e)}),
--                      with mix a 64-bit hash, so epochs and seeds give unrelated orders
--   epoch = nil        the epoch number for the seeds; nil: 1 + the number of earlier calls of
--                      batches on this dataset that shuffled or augmented (so a plain loop
--                      `for e = 1, E do for xb, yb in ds:batches(b) do` sees a new order each
--                      epoch, the same in every run)
--   drop_last = false  drop a last batch smaller than batch
--   augment = nil      {crop = p, flip = true}: random crops of the image zero-padded by p
--                      (true = 4) and random left-right flips, per image, seeded by seed, epoch
--                      and batch number; x must be [N, C, H, W]
--   start = 1          the first batch to produce: batches 1..start-1 are skipped without being
--                      made (a resumed run continues mid-epoch); every batch keeps its number, so
--                      its examples and augmentation are those of a full pass
-- The iterator runs one small garbage-collector step per batch so that the tensors of the previous
-- step are freed promptly (Lua's collector does not see tensor memory; without this, a training loop
-- keeps hundreds of megabytes of dead batches and pays a page fault for every fresh one).
-- e.g. for x, y in train:batches(128, {shuffle = true, seed = 1}) do end
function Dataset:batches(batch, opts)
    local who = "batches"
    opts = check_options(opts, {shuffle = true, seed = true, epoch = true, drop_last = true,
                                augment = true, start = true}, who)
    if math.type(batch) ~= "integer" or batch < 1 then
        fail("%s: batch size must be a positive integer, got %s", who, tostring(batch))
    end
    local shuffle = opts.shuffle
    if shuffle == nil then shuffle = true end
    local seed = opts.seed or 1
    if math.type(seed) ~= "integer" then
        fail("%s: option 'seed' must be an integer, got %s", who, tostring(seed))
    end
    local aug = check_augment(opts.augment, self.x, who)
    local epoch = opts.epoch
    if epoch ~= nil and math.type(epoch) ~= "integer" then
        fail("%s: option 'epoch' must be an integer, got %s", who, tostring(epoch))
    end
    if epoch == nil and (shuffle or aug) then
        self._epochs_drawn = (self._epochs_drawn or 0) + 1
        epoch = self._epochs_drawn
    end
    epoch = epoch or 1
    local N, x, y = self.n, self.x, self.y
    local nb = self:num_batches(batch, {drop_last = opts.drop_last})
    local perm = shuffle and ls.randperm(N, {seed = mix(seed, STREAM_SHUFFLE, epoch)}) or nil
    local b = util.posint(opts.start or 1, who, "option 'start'") - 1
    return function()
        if b >= nb then return nil end
        collectgarbage("step", 0)
        local start = b * batch + 1
        local len = math.min(batch, N - start + 1)
        b = b + 1
        local xb, yb, idx
        if perm then
            idx = perm:narrow(1, start, len)
            xb = x:index_select(1, idx)
            yb = y and y:index_select(1, idx) or nil
        else
            idx = ls.arange(start, start + len, {dtype = "i64"})
            xb = x:narrow(1, start, len)
            yb = y and y:narrow(1, start, len) or nil
        end
        if aug then xb = augment_batch(xb, aug, seed, epoch, b) end
        return xb, yb, idx
    end
end

for _, name in ipairs({"subset", "balanced_subset", "random_split", "normalize", "with_label_noise",
                       "batches", "max_label", "num_batches"}) do
    Dataset[name] = public(Dataset[name])
end

local function resolve_normalize(normalize, mean, std, who)
    if normalize == nil or normalize == true then return mean, std end
    if normalize == false then return nil end
    if type(normalize) == "table" and type(normalize.mean) == "number"
            and type(normalize.std) == "number" and normalize.std > 0 then
        return normalize.mean, normalize.std
    end
    fail("%s: option 'normalize' must be true, false or {mean = m, std = s} with s > 0", who)
end

--- A labelled image data set from a pair of IDX files.
-- opts:
--   images = path     (required) IDX images [N, H, W] (or [N, D], or [N, C, H, W]), raw or gzip
--   labels = path     IDX labels [N]; without it, y is absent and subsets are plain random ones
--   n = nil           keep a seeded random subset of n examples (class-balanced when labelled);
--                     nil keeps all, in file order
--   seed = 1          seed of that subset
--   normalize = false false: u8 pixels scaled to [0, 1]; {mean = m, std = s}: then (x - m) / s;
--                     true needs mean and std given through opts.mean / opts.std
--   mean, std = nil   the constants normalize = true uses
--   dtype = "f32"     "f32" or "f64"
--   classes = nil     list of class names to attach
--   name = "idx"      the function name used in error messages
-- Returns a Dataset (see M.dataset) with the fields x = Tensor [N, 1, H, W] (images given as
-- [N, H, W] gain a channel dim), y = Tensor [N] i64 holding the file's labels + 1 (1-based class
-- indices), classes = ..., n = N, source = images path, normalization = {mean, std} or nil.
-- e.g. local d = ls.data.idx{images = "imgs.idx.gz", labels = "labels.idx.gz"}
local function load_idx(opts)
    local who = (type(opts) == "table" and opts.name) or "idx"
    opts = check_options(opts, {images = true, labels = true, n = true, seed = true, normalize = true,
                                mean = true, std = true, dtype = true, classes = true, name = true,
                                hint = true}, who)
    if type(opts.images) ~= "string" then fail("%s: option 'images' (a path) is required", who) end
    local dtype = opts.dtype or "f32"
    if dtype ~= "f32" and dtype ~= "f64" then
        fail("%s: option 'dtype' must be \"f32\" or \"f64\", got %s", who, tostring(dtype))
    end
    local n, seed = opts.n, opts.seed or 1
    if n ~= nil and (math.type(n) ~= "integer" or n < 1) then
        fail("%s: option 'n' must be a positive integer, got %s", who, tostring(n))
    end
    if math.type(seed) ~= "integer" then
        fail("%s: option 'seed' must be an integer, got %s", who, tostring(seed))
    end
    local mean, std
    if opts.normalize == true then
        if type(opts.mean) ~= "number" or type(opts.std) ~= "number" or opts.std <= 0 then
            fail("%s: normalize = true needs numeric options 'mean' and 'std' (std > 0)", who)
        end
        mean, std = opts.mean, opts.std
    elseif opts.normalize ~= nil and opts.normalize ~= false then
        mean, std = resolve_normalize(opts.normalize, nil, nil, who)
    end

    check_readable(opts.images, who, opts.hint)
    if opts.labels then check_readable(opts.labels, who, opts.hint) end
    local ok, x = pcall(ls.io.read_idx, opts.images)
    if not ok then fail("%s: %s", who, tostring(x)) end
    local N = x:size(1)
    local y
    if opts.labels then
        local ok2, yl = pcall(ls.io.read_idx, opts.labels)
        if not ok2 then fail("%s: %s", who, tostring(yl)) end
        if yl:dim() ~= 1 or yl:size(1) ~= N then
            fail("%s: %s has %d images but %s holds labels of shape [%s]", who, opts.images, N,
                 opts.labels, table.concat(yl:size(), "x"))
        end
        y = (yl:double() + 1):long()   -- file labels are 0-based class ids
    end
    if n ~= nil and n > N then
        fail("%s: asked for n = %d examples but %s holds %d", who, n, opts.images, N)
    end
    if n ~= nil and n < N then
        local idx
        if y then
            idx = balanced_subset(y:totable(), n, seed, who)
        else
            idx = ls.randperm(N, {seed = seed}):totable()
            for i = n + 1, N do idx[i] = nil end
            table.sort(idx)
        end
        x = take_rows(x, idx)
        if y then y = take_rows(y, idx) end
        N = n
    end

    local was_bytes = x.dtype == "u8"
    x = x:cast(dtype)
    if was_bytes then x = x / 255 end
    if mean then x = (x - mean) / std end
    if x:dim() == 3 then
        local s = x:size()
        x = x:reshape{s[1], 1, s[2], s[3]}
    end
    return new_dataset(x, y, {classes = opts.classes, source = opts.images,
                              normalization = mean and {mean = mean, std = std} or nil}, who)
end
M.idx = public(load_idx)

--- Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 28x28 grey images of 10 clothing classes,
-- 60000 for training and 10000 for testing, 6000 and 1000 per class.
-- opts:
--   split = "train"   "train" or "test"
--   n = nil           a seeded class-balanced random subset of n examples (n/10 per class, the
--                     first n % 10 classes one more); nil keeps the whole split in file order
--   seed = 1          seed of that subset
--   normalize = true  true: pixels scaled to [0, 1], then (x - 0.2860) / 0.3530 (the training set's
--                     mean and std); false: scaled to [0, 1] only; {mean = m, std = s}: custom
--   dtype = "f32"     "f32" or "f64"
--   dir = nil         directory of the four .gz files; default $LANDSCAPE_FASHION_MNIST_DIR, else
--                     /usr/share/datasets/fashion-mnist
-- Returns a Dataset (see M.dataset: ds:batches, ds:subset, ...) with the fields x = Tensor
-- [N, 1, 28, 28], y = Tensor [N] i64 in 1..10, classes = names (classes[y]), n = N, source = images
-- path, split = split, normalization = {mean, std} (the map applied to the [0, 1] pixels) or nil.
-- e.g. local train = ls.data.fashion_mnist{split = "train", n = 5000, seed = 1}
local function fashion_mnist(opts)
    opts = check_options(opts, {split = true, n = true, seed = true, normalize = true, dtype = true,
                                dir = true}, "fashion_mnist")
    local split = opts.split or "train"
    if not FILES[split] then
        fail("fashion_mnist: option 'split' must be \"train\" or \"test\", got %s", tostring(split))
    end
    local dir = opts.dir or os.getenv("LANDSCAPE_FASHION_MNIST_DIR") or M.FASHION_MNIST_DEFAULT_DIR
    if type(dir) ~= "string" then fail("fashion_mnist: option 'dir' must be a string") end
    local normalize = opts.normalize
    if normalize == nil then normalize = true end
    local mean, std = resolve_normalize(normalize, M.FASHION_MNIST_MEAN, M.FASHION_MNIST_STD,
                                        "fashion_mnist")
    local sep = dir:sub(-1) == "/" and "" or "/"
    local ds = load_idx({
        images = dir .. sep .. FILES[split][1], labels = dir .. sep .. FILES[split][2],
        n = opts.n, seed = opts.seed, dtype = opts.dtype,
        normalize = mean ~= nil, mean = mean, std = std,
        classes = M.FASHION_MNIST_CLASSES, name = "fashion_mnist",
        hint = " — install Debian's dataset-fashion-mnist or set LANDSCAPE_FASHION_MNIST_DIR",
    })
    ds.split = split
    return ds
end
M.fashion_mnist = public(fashion_mnist)

return M
