--- landscape.data: datasets from IDX files, Fashion-MNIST first.
--
--   local data = require "landscape.data"
--   local train = data.fashion_mnist{split = "train", n = 1000, seed = 1}
--   -- train.x: Tensor [1000, 1, 28, 28] f32, train.y: Tensor [1000] i64 in 1..10, train.classes
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
local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function public(fn)
    return function(...)
        local ok, res = pcall(fn, ...)
        if not ok then error(res, 2) end
        return res
    end
end

local function check_options(opts, known, who)
    if opts == nil then return {} end
    if type(opts) ~= "table" then fail("%s: expected an options table, got %s", who, type(opts)) end
    for k in pairs(opts) do
        if not known[k] then
            local names = {}
            for name in pairs(known) do names[#names + 1] = name end
            table.sort(names)
            fail("%s: unknown option '%s' (known: %s)", who, tostring(k), table.concat(names, ", "))
        end
    end
    return opts
end

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
-- Returns {x = Tensor [N, 1, H, W] (images given as [N, H, W] gain a channel dim), y = Tensor [N]
-- i64 holding the file's labels + 1 (1-based class indices), classes = ..., n = N, source = images
-- path}.
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
    return {x = x, y = y, classes = opts.classes, n = N, source = opts.images,
            normalize = mean and {mean = mean, std = std} or nil}
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
-- Returns {x = Tensor [N, 1, 28, 28], y = Tensor [N] i64 in 1..10, classes = names (classes[y]),
-- n = N, source = images path, split = split, normalize = {mean, std} or nil}.
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
