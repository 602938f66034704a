--- Nearest-class-mean classifier on Fashion-MNIST: the engine's first real job on real data.
-- Class means of the training images, then each test image goes to the nearest mean in Euclidean
-- distance (argmax of 2 x.mu - |mu|^2). Prints the test accuracy and writes per-class accuracies as
-- tidy CSV.
--
-- usage: landscape scripts/ncm_fashion_mnist.lua [--n N] [--out DIR] [--dtype f32|f64] [--threads T]
--   --n N        training images to use (default all 60000; a seeded class-balanced subset otherwise)
--   --out DIR    where ncm_per_class.csv goes (default out/)
local ls = require "landscape"

local opts = require("landscape.study.args").parser{
    name = "ncm_fashion_mnist", usage = "landscape scripts/ncm_fashion_mnist.lua [options]",
    options = {
    {"n", nil, "training images to use (default all 60000)", type = "integer", min = 1},
    {"out", "out", "where ncm_per_class.csv goes", type = "dir", column = false},
    {"dtype", "f32", "tensor type", choices = {"f32", "f64"}},
    {"threads", nil, "engine and BLAS threads", type = "integer", min = 1}}}:parse(arg)
if opts.threads then ls.set_threads(opts.threads) end

local t0 = ls.clock()
local train = ls.data.fashion_mnist{split = "train", n = opts.n, seed = 1, dtype = opts.dtype}
local test = ls.data.fashion_mnist{split = "test", dtype = opts.dtype}
local t1 = ls.clock()

local C = #train.classes
local X = train.x:reshape(train.n, -1)                          -- [N x 784]
local onehot = ls.one_hot(train.y, C):cast(opts.dtype)          -- [N x C]
local counts = onehot:sum(1)                                    -- [C]
local means = onehot:t():matmul(X) / counts:unsqueeze(2)        -- [C x 784]
local Xt = test.x:reshape(test.n, -1)
local scores = Xt:matmul(means:t()) * 2 - (means * means):sum(2):reshape(1, C)
local pred = scores:argmax(2)                                   -- 1-based classes
local correct = pred:float():eq(test.y:float())
local accuracy = correct:mean():item()
local t2 = ls.clock()

-- per-class accuracy as tidy rows
local rows = {}
local yt, ct = test.y:totable(), correct:totable()
local hit, tot = {}, {}
for k = 1, #yt do
  local c = yt[k]
  tot[c] = (tot[c] or 0) + 1
  hit[c] = (hit[c] or 0) + ct[k]
end
for c = 1, C do
  rows[#rows + 1] = {method = "nearest_class_mean", dtype = opts.dtype, n_train = train.n,
                     class = c, class_name = train.classes[c], n_test = tot[c] or 0,
                     accuracy = (hit[c] or 0) / math.max(tot[c] or 0, 1)}
end
local path = opts.out .. "/ncm_per_class.csv"
ls.csv.write(path, rows, {columns = {"method", "dtype", "n_train", "class", "class_name", "n_test",
                                     "accuracy"}})

print(string.format("nearest class mean on Fashion-MNIST: %d training images, %d test images",
                    train.n, test.n))
for _, r in ipairs(rows) do
  print(string.format("  %-12s %6.2f %%", r.class_name, 100 * r.accuracy))
end
print(string.format("test accuracy: %.2f %%   (load %.2f s, fit+predict %.3f s, %d threads)",
                    100 * accuracy, t1 - t0, t2 - t1, ls.get_threads()))
print("per-class table: " .. path)
