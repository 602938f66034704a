--- bench_margins.lua: all-layer margins of an MLP against one training epoch over the same samples.
--
--   build/landscape bench/bench_margins.lua [--quick] [--n 10000] [--reps 3] [--threads 1,2]
--
-- Options (defaults): --quick (n = 2000, 1 rep), --n (10000 Fashion-MNIST training samples; random
-- N(0, 1) images with random labels when the data set is missing), --reps (3: the median is
-- reported), --threads ("1,2").
--
-- The model: ls.nn.mlp{hidden = {512, 512}} (784-512-512-10, relu, f32). Workloads:
--   margins_all_layers   ls.margins(model, data, {layers = {"input", "first", "last", "output"},
--                        batch = 500}): one forward and one backward pass per batch plus the
--                        streaming total variance of every layer
--   train_epoch          the peer: one epoch of plain SGD (lr 0.01, batch 128, shuffled) over the
--                        same samples: forward, cross-entropy, ls.grad w.r.t. the parameters, update
-- The issue's goal: ratio = ours_ms / peer_ms <= 2.
--
-- stdout: tidy CSV (workload,dtype,threads,ours_ms,peer,peer_ms,ratio). stderr: '#' notes.
local ls = require "landscape"

local clock = ls.clock or os.clock

local opts = {quick = false, n = 10000, reps = 3, threads = "1,2"}
do
    local args = {...}
    local i = 1
    while i <= #args do
        local a = args[i]
        if a == "--quick" then opts.quick = true
        elseif a == "--n" then i = i + 1; opts.n = math.tointeger(tonumber(args[i]))
        elseif a == "--reps" then i = i + 1; opts.reps = math.tointeger(tonumber(args[i]))
        elseif a == "--threads" then i = i + 1; opts.threads = args[i]
        else error("bench_margins: unknown argument " .. tostring(a)) end
        i = i + 1
    end
    if opts.quick then opts.n, opts.reps = 2000, 1 end
end

local function load_data(n)
    local ok, d = pcall(ls.data.fashion_mnist, {split = "train", n = n, seed = 1})
    if ok then return d, "fashion_mnist" end
    io.stderr:write("# fashion_mnist unavailable (", tostring(d), "); random data\n")
    return {x = ls.randn({n, 1, 28, 28}, {seed = 1}), y = ls.randint(1, 11, {n}, {seed = 2}), n = n},
           "random"
end

local data, source = load_data(opts.n)
local N = data.x:size(1)

local function train_epoch(model, seed)
    local params = model:parameters()
    local opt = ls.optim.sgd(params, {lr = 0.01})
    model:train()
    local perm = ls.randperm(N, {seed = seed})
    for s = 1, N, 128 do
        local b = math.min(128, N - s + 1)
        local idx = perm:narrow(1, s, b)
        local xb, yb = data.x:index_select(1, idx), data.y:index_select(1, idx)
        local loss = ls.cross_entropy(model(xb), yb)
        local g = ls.grad(loss, params)
        for i, p in ipairs(params) do p.grad = g[i] end
        opt:step()
        opt:zero_grad()
    end
end

local function margins_all(model)
    return ls.margins(model, data, {layers = {"input", "first", "last", "output"}, batch = 500})
end

local function median(t)
    table.sort(t)
    return t[(#t + 1) // 2]
end

local function time(fn)
    collectgarbage()
    collectgarbage()
    local t0 = clock()
    fn()
    return (clock() - t0) * 1000
end

io.stderr:write(string.format("# %d samples (%s), mlp 784-512-512-10 f32, %d reps\n", N, source,
                              opts.reps))
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench") .. "/common.lua")
bench.report_machine("bench_margins.lua")
print("workload,dtype,threads,ours_ms,peer,peer_ms,ratio")
for th in opts.threads:gmatch("%d+") do
    local threads = math.tointeger(tonumber(th))
    if threads <= ls.available_cores() then
        ls.set_threads(threads)
        bench.report_threads("bench_margins.lua")
        local model = ls.nn.mlp{hidden = {512, 512}, seed = 1}
        margins_all(model)                       -- warm up
        local ours, peer = {}, {}
        for r = 1, opts.reps do
            peer[r] = time(function() train_epoch(model, r) end)
            ours[r] = time(function() margins_all(model) end)
        end
        local o, p = median(ours), median(peer)
        print(string.format("margins_all_layers,f32,%d,%.3f,train_epoch,%.3f,%.3f", threads, o, p,
                            o / p))
    else
        io.stderr:write("# skipping ", threads, " threads (", ls.available_cores(), " cores)\n")
    end
end
