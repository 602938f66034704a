--- bench_methods.lua: one training step of each ls.methods method on the comparison CNN, against
--- the same step in PyTorch and against our own plain SGD step.
--
--   build/landscape bench/bench_methods.lua [--quick] [--methods plain,sam,...] [--threads 1,2]
--                                           [--reps 7] [--min-sample 0.25] [--omp-wait passive]
--   build/landscape bench/bench_methods.lua --fd-accuracy [--quick]
--
-- Options (defaults): --quick (3 reps, 0.1 s samples), --methods (all of plain, sam, asam, rsam,
-- grad_norm, grad_norm_fd, trace, trace_fd), --threads (1,2), --reps (7), --min-sample (0.25 s),
-- --omp-wait (passive: the peer runs with OMP_WAIT_POLICY=passive, see bench_train.lua; active
-- restores libgomp's spinning). LANDSCAPE_PYTHON names the peer's interpreter.
--
-- The workload: the comparison CNN of scripts/compare_methods.lua, ls.nn.cnn{channels = {16, 32},
-- hidden = 64} (105 914 parameters), f32, on a fixed random batch [128, 1, 28, 28] with random
-- labels, SGD (lr 0.01, momentum 0.9, weight decay 5e-4). One step is what ls.train does per batch
-- minus the data pipeline and the log: a batch view, opt:zero_grad(), method:step, then
-- method:update or opt:step(). The methods:
--   plain         ls.methods.plain()                                   (SGD)
--   sam           ls.methods.sam{rho = 0.05}
--   asam          ls.methods.asam{rho = 0.5, eta = 0.01}
--   rsam          ls.methods.rsam{rho = 0.05, elr = 1e-3}              (2 spheres: the convolutions)
--   grad_norm     ls.methods.grad_norm{lambda = 0.1}                   (exact: double backward)
--   grad_norm_fd  ls.methods.grad_norm{lambda = 0.1, r = 0.1, exact = false}
--   trace         ls.methods.trace_penalty{lambda = 1e-3, probes = 1}  (exact: third order)
--   trace_fd      ls.methods.trace_penalty{lambda = 1e-3, probes = 1, exact = false}
-- The peer (bench/peer_methods.py) writes the same steps in PyTorch the way the public codes do.
--
-- Timing: the peer is a co-process (commands on its stdin, answers through a FIFO), so the samples
-- alternate: in each of `reps` rounds every method takes one sample of ours then one of the peer's,
-- each sample `iters` steps of a fresh model (2 untimed steps first; iters calibrated once per
-- method so that our sample lasts min-sample, the same count for the peer). Rows: the median wall
-- time per step of each side; and <method>_over_plain, ours against our plain step, the median over
-- rounds of the ratio within the round (goals: sam <= 2.1, grad_norm <= 3, trace <= 4.5; against
-- torch <= 0.6). Threads: ls.set_threads (which sets OpenBLAS too) and, in the peer,
-- torch.set_num_threads and openblas_set_num_threads. stderr notes: the machine (CPU model, cores,
-- kernel, OpenBLAS package, torch version), the load average at the start and end, the process CPU
-- time per step of both sides (which a busy machine disturbs less than wall time), peak RSS.
--
-- --fd-accuracy: instead, the relative difference between the finite-difference and the exact
-- gradient of the Hutchinson term v'Hv (one Rademacher probe) for r = 1 ... 0.01, in float32 and
-- float64, on ls.nn.cnn{channels = {8, 16}, hidden = 32} (ReLU) and on a tanh MLP 784-32-10 with
-- batch norm, 64 Fashion-MNIST training images in train mode. CSV: model,dtype,r,relative_error.
--
-- stdout: tidy CSV (workload,dtype,threads,ours_ms,peer,peer_ms,ratio). stderr: '#' notes.
local ls = require "landscape"
local ARGS = {...}

local ALL = {"plain", "sam", "asam", "rsam", "grad_norm", "grad_norm_fd", "trace", "trace_fd"}
local GOAL = {sam = 2.1, grad_norm = 3, trace = 4.5}
local METHODS = {
    plain = function() return ls.methods.plain() end,
    sam = function() return ls.methods.sam{rho = 0.05} end,
    asam = function() return ls.methods.asam{rho = 0.5, eta = 0.01} end,
    rsam = function() return ls.methods.rsam{rho = 0.05, elr = 1e-3} end,
    grad_norm = function() return ls.methods.grad_norm{lambda = 0.1} end,
    grad_norm_fd = function() return ls.methods.grad_norm{lambda = 0.1, r = 0.1, exact = false} end,
    trace = function() return ls.methods.trace_penalty{lambda = 1e-3, probes = 1} end,
    trace_fd = function() return ls.methods.trace_penalty{lambda = 1e-3, probes = 1, exact = false} end,
}

-- ---- options ----
local opts = {quick = false, methods = nil, threads = "1,2", reps = nil, min_sample = nil,
              omp_wait = "passive", fd_accuracy = false}
do
    local args = ARGS
    local i = 1
    local function usage(code)
        io.stderr:write("usage: bench_methods.lua [--quick] [--methods m1,m2] [--threads 1,2] ",
                        "[--reps N] [--min-sample S] [--omp-wait passive|active] [--fd-accuracy]\n")
        os.exit(code)
    end
    while i <= #args do
        local a, v = args[i], args[i + 1]
        if a == "--quick" then
            opts.quick = true
        elseif a == "--fd-accuracy" then
            opts.fd_accuracy = true
        elseif a == "--omp-wait" and (v == "passive" or v == "active") then
            opts.omp_wait, i = v, i + 1
        elseif a == "--methods" or a == "--threads" then
            if v == nil then error("bench_methods: " .. a .. " needs a value", 0) end
            opts[a:sub(3)], i = v, i + 1
        elseif a == "--reps" or a == "--min-sample" then
            local num = tonumber(v)
            if not num or num <= 0 then error("bench_methods: bad value for " .. a, 0) end
            if a == "--reps" then opts.reps = math.floor(num) else opts.min_sample = num end
            i = i + 1
        else
            usage(a == "--help" and 0 or 2)
        end
        i = i + 1
    end
    opts.reps = opts.reps or (opts.quick and 3 or 7)
    opts.min_sample = opts.min_sample or (opts.quick and 0.1 or 0.25)
    local list = {}
    for m in (opts.methods or table.concat(ALL, ",")):gmatch("[^,]+") do
        if not METHODS[m] then error("bench_methods: unknown method " .. m, 0) end
        list[#list + 1] = m
    end
    if list[1] ~= "plain" then table.insert(list, 1, "plain") end   -- the reference of the ratios
    opts.methods = list
    local th = {}
    for t in opts.threads:gmatch("[^,]+") do th[#th + 1] = assert(math.tointeger(tonumber(t))) end
    opts.threads = th
end

local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench") .. "/common.lua")
local note, q = bench.note, bench.q

local function machine_notes()
    note("date %s; bench_methods.lua %s", os.date("!%Y-%m-%d %H:%M UTC"), table.concat(ARGS, " "))
    bench.report_machine("bench_methods")
end

-- ---- FD accuracy ----
local function fd_accuracy()
    local C = require "landscape.train.methods.common"
    io.stdout:write("model,dtype,r,relative_error\n")
    local models = {
        cnn_relu = function(dt)
            return ls.nn.cnn{channels = {8, 16}, hidden = 32, seed = 1, dtype = dt}
        end,
        mlp_tanh_bn = function(dt)
            return ls.nn.mlp{hidden = {32}, activation = "tanh", batchnorm = true, seed = 1, dtype = dt}
        end,
    }
    for _, name in ipairs({"cnn_relu", "mlp_tanh_bn"}) do
        for _, dt in ipairs({"f32", "f64"}) do
            local d = ls.data.fashion_mnist{split = "train", n = 64, seed = 1}
            local x = dt == "f64" and d.x:cast("f64") or d.x
            local model = models[name](dt)
            local obj = ls.objective(model, {x = x, y = d.y}, {mode = "train", batch = 64})
            model:train()
            local b = obj:batch_view(x, d.y)
            local v = obj:split(ls.rademacher({obj.n}, {seed = 3, dtype = dt}))
            local _, g = b:grad{create_graph = true}
            local gv
            for i, t in ipairs(g) do
                local z = (t * v[i]):sum()
                gv = gv and gv + z or z
            end
            local hv = ls.grad(gv, b.params, {create_graph = true, retain_graph = true})
            local s
            for i, h in ipairs(hv) do
                local z = (h * v[i]):sum()
                s = s and s + z or z
            end
            local exact = ls.grad(s, b.params)
            local w = obj:snapshot()
            local _, g0 = b:grad()
            for _, r in ipairs(opts.quick and {0.1} or {1, 0.3, 0.1, 0.03, 0.01}) do
                local st = r / math.sqrt(obj.n)
                local gp = C.grad_at(b, w, C.axpy(w, st, v))
                local gm = C.grad_at(b, w, C.axpy(w, -st, v))
                local num, den = 0, 0
                for i = 1, #g0 do
                    local fd = (gp[i] + gm[i] - g0[i] * 2) / (st * st)
                    num = num + (fd - exact[i]):norm():item() ^ 2
                    den = den + exact[i]:norm():item() ^ 2
                end
                io.stdout:write(string.format("%s,%s,%g,%.4g\n", name, dt, r, math.sqrt(num / den)))
                io.stdout:flush()
            end
        end
    end
end

-- ---- our step ----
local function make_step(name, seed)
    local model = ls.nn.cnn{channels = {16, 32}, hidden = 64, seed = seed}
    local x = ls.randn({128, 1, 28, 28}, {seed = seed})
    local y = ls.randint(1, 11, {128}, {seed = seed + 1})
    local obj = ls.objective(model, {x = x, y = y}, {mode = "train", batch = 128})
    local opt = ls.optim.sgd(model, {lr = 0.01, momentum = 0.9, weight_decay = 5e-4})
    local method = METHODS[name]()
    local st = method.init and method:init(obj, opt) or {}
    model:train()
    return function()
        local bv = obj:batch_view(x, y)
        opt:zero_grad()
        method:step(bv, opt, st)
        if method.update then method:update(bv, opt, st) else opt:step() end
    end
end

local function ours_sample(name, iters, seed)
    local step = make_step(name, seed)
    for _ = 1, 2 do step() end
    collectgarbage()
    local w0, c0 = ls.clock(), os.clock()
    for _ = 1, iters do step() end
    return 1e3 * (ls.clock() - w0) / iters, 1e3 * (os.clock() - c0) / iters
end

-- ---- the peer co-process (common.lua's peer: requests on stdin, replies through a FIFO) ----
local function start_peer()
    local p = bench.peer(bench.python("OMP_WAIT_POLICY=" .. q(opts.omp_wait)) .. " " ..
                         q(bench.dir .. "/peer_methods.py"))
    if not p then return nil end
    function p:sample(name, iters, seed)
        local ans = self:ask(string.format("sample %s %d %d", name, iters, seed))
        if ans == nil then error("bench_methods: the peer died (sample " .. name .. ")", 0) end
        local a, b = ans:match("^(%S+) (%S+)$")
        return tonumber(a), tonumber(b)
    end
    return p
end

-- ---- main ----
local function row(workload, threads, ours, peer, peer_ms, ratio)
    io.stdout:write(string.format("%s,f32,%d,%.3f,%s,%.3f,%.3f\n", workload, threads, ours, peer,
                                  peer_ms or 0 / 0, ratio or ours / (peer_ms or 0 / 0)))
    io.stdout:flush()
end

local function main()
    machine_notes()
    if opts.fd_accuracy then return fd_accuracy() end
    note("bench_methods.lua: reps %d, min-sample %g s, threads %s; load average %s", opts.reps,
         opts.min_sample, table.concat(opts.threads, ","), bench.loadavg())
    io.stdout:write("workload,dtype,threads,ours_ms,peer,peer_ms,ratio\n")
    io.stdout:flush()
    local peer = start_peer()
    for _, th in ipairs(opts.threads) do
        ls.set_threads(th)
        bench.report_threads("bench_methods")
        if peer then peer:ask("threads " .. th) end
        local iters, wall, cpu, pwall, pcpu = {}, {}, {}, {}, {}
        for _, m in ipairs(opts.methods) do
            local t = ours_sample(m, 1, 1) / 1e3
            iters[m] = t >= opts.min_sample and 1 or math.floor(opts.min_sample / t) + 1
            wall[m], cpu[m], pwall[m], pcpu[m] = {}, {}, {}, {}
        end
        for r = 1, opts.reps do
            for _, m in ipairs(opts.methods) do
                wall[m][r], cpu[m][r] = ours_sample(m, iters[m], r)
                if peer then pwall[m][r], pcpu[m][r] = peer:sample(m, iters[m], r) end
            end
        end
        local med = bench.median
        for _, m in ipairs(opts.methods) do
            row(m, th, med(wall[m]), "torch", peer and med(pwall[m]) or nil)
            note("%s, %d threads: %d steps per sample; process CPU ms per step: ours %.2f, torch %s",
                 m, th, iters[m], med(cpu[m]), peer and string.format("%.2f", med(pcpu[m])) or "-")
        end
        for _, m in ipairs(opts.methods) do
            if m ~= "plain" then
                local rs, rc = {}, {}
                for r = 1, opts.reps do
                    rs[r] = wall[m][r] / wall.plain[r]
                    rc[r] = cpu[m][r] / cpu.plain[r]
                end
                row(m .. "_over_plain", th, med(wall[m]), "ours_plain", med(wall.plain), med(rs))
                note("%s_over_plain, %d threads: in process CPU time %.2f%s", m, th, med(rc),
                     GOAL[m] and string.format(" (goal <= %g)", GOAL[m]) or "")
            end
        end
    end
    if peer then peer:close() end
    note("load average at the end %s; peak RSS %.1f MiB", bench.loadavg(),
         bench.peak_rss_mib() or 0 / 0)
end

main()
