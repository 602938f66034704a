--- bench_study_job.lua: one job of the generalization-gap study (scripts/gg/measure.lua) against
--- PyTorch doing the same job (bench/peer_study_job.py) at the same thread count.
--
--   build/landscape bench/bench_study_job.lua [--quick] [--threads 1,2] [--reps 5] [--budget P]
--
-- The job (issue #16's benchmark): an MLP 784-256-256-256-10 (no batch norm, no weight decay), SGD
-- with momentum 0.9 at lr 0.1 sqrt(32/256), batch 32, on the 2000-image class-balanced training
-- subset the study uses (n = 2000, replicate 1), for the full budget of 150 000 example passes
-- (4688 steps), measured at five checkpoints (train and 10 000-image test evaluation, margins at
-- four slots with both signatures, norms) and Keskar's sharpness at the end: everything a study job
-- does. The peer does the same in PyTorch on the same examples (written to a temporary
-- safetensors file), with torch's own initialisation and shuffling (the work does not depend on
-- them).
--
-- Hygiene (bench/README.md): the peer is a co-process (common.lua's peer()) started once per thread
-- count: it loads the data, then runs one job each time it is asked, so the samples alternate
-- (ours, peer, ours, peer, ...) and a change of machine load hits both sides alike. One warm-up job
-- on each side, then --reps pairs. Threads: ls.set_threads(T) (which sets OpenBLAS too); the peer
-- gets peer_common.set_threads(T) (torch and OpenBLAS), OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
-- MKL_NUM_THREADS = T and OMP_WAIT_POLICY=passive in its environment.
-- Options (defaults): --quick (1 thread, budget 15 000, 2 pairs), --threads (1,2), --reps (5),
-- --budget (150000). LANDSCAPE_PYTHON names the peer's interpreter.
--
-- stdout: tidy CSV (workload,dtype,threads,ours_ms,peer,peer_ms,ratio): per thread count the median
-- wall time of a job on each side (ratio = ours / peer; goal <= 0.5), and a row of each side's peak
-- RSS (MiB) after its jobs. stderr: '#' notes: the machine (CPU, GEMM path, BLAS, torch), the load
-- average at the start and end, every sample's wall and CPU time, the median CPU-time ratio.
local ls = require "landscape"
package.path = (debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]*$") or ".")
    .. "/scripts/?.lua;" .. package.path
local C = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "bench/") .. "common.lua")
local measure = require "gg.measure"

local opts = {quick = false, threads = nil, reps = nil, budget = nil}
do
    local a, i = {...}, 1
    while i <= #a do
        local k = a[i]
        if k == "--quick" then
            opts.quick = true
        elseif k == "--threads" or k == "--reps" or k == "--budget" then
            local v = a[i + 1]
            if v == nil then error("bench_study_job: " .. k .. " needs a value", 0) end
            opts[k:sub(3)] = v
            i = i + 1
        else
            io.stderr:write("usage: bench_study_job.lua [--quick] [--threads 1,2] [--reps N] ",
                            "[--budget P]\n")
            os.exit(2)
        end
        i = i + 1
    end
end
local threads = {}
for t in (opts.threads or (opts.quick and "1" or "1,2")):gmatch("%d+") do
    threads[#threads + 1] = tonumber(t)
end
local reps = tonumber(opts.reps) or (opts.quick and 2 or 5)
local budget = tonumber(opts.budget) or (opts.quick and 15000 or 150000)

local cfg = {n = 2000, noise = 0, width = 256, depth = 3, bn = 0, wd = 0, lr = 0.1, batch = 32,
             replicate = 1, budget = budget, lr_scaling = "sqrt"}
local lr_step = measure.lr_step(cfg.lr, cfg.batch, cfg.lr_scaling)
local workload = string.format("study_job_w%d_d%d_b%d_n%d_P%d", cfg.width, cfg.depth, cfg.batch,
                               cfg.n, cfg.budget)

C.report_machine("bench_study_job")
C.note("bench_study_job: load average %s", C.loadavg())
C.note("job: %s, lr %.6g, %d steps, %d pairs per thread count after one warm-up each", workload,
       lr_step, measure.schedule(cfg.budget, cfg.batch), reps)

-- the data both sides train on
local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. C.q(tmp)))
local data_path = tmp .. "/data.safetensors"
do
    local train, test = measure.train_set(cfg.n, cfg.noise, cfg.replicate), measure.test_set()
    local function flat(ds) return ds.x:reshape{ds.n, 784}:contiguous() end
    local function zero_based(ds) return (ds.y:double() - 1):long() end
    ls.io.save_safetensors(data_path, {x_train = flat(train), y_train = zero_based(train),
                                       x_test = flat(test), y_test = zero_based(test)})
end

local function our_job()
    local t0, c0 = ls.clock(), os.clock()
    local rows = measure.run(cfg)
    local ms, cpu = 1e3 * (ls.clock() - t0), 1e3 * (os.clock() - c0)
    local last = rows[#rows]
    return ms, cpu, last
end

print("workload,dtype,threads,ours_ms,peer,peer_ms,ratio")
local rss_peer = 0
for _, T in ipairs(threads) do
    ls.set_threads(T)
    C.report_threads("bench_study_job")
    local env = string.format("OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d MKL_NUM_THREADS=%d", T,
                              T, T)
    local json = string.format('{"width": %d, "depth": %d, "bn": %s, "wd": %.17g, '
                               .. '"lr_step": %.17g, "batch": %d, "budget": %d}', cfg.width,
                               cfg.depth, cfg.bn == 1 and "true" or "false", cfg.wd, lr_step,
                               cfg.batch, cfg.budget)
    local peer = C.peer(string.format("cd %s && %s peer_study_job.py --data %s --threads %d "
                                      .. "--config %s", C.q(C.dir), C.python(env),
                                      C.q(data_path), T, C.q(json)))
    if not peer then error("bench_study_job: cannot start the peer", 0) end
    local function peer_job()
        local line = peer:ask("job")
        if not line then error("bench_study_job: the peer stopped (see its notes above)", 0) end
        local ms, cpu = line:match("^([%d.e+-]+),([%d.e+-]+)$")
        return tonumber(ms), tonumber(cpu)
    end
    local ours, theirs, ours_cpu, their_cpu, ratios, cpu_ratios = {}, {}, {}, {}, {}, {}
    for k = 0, reps do
        local ms, cpu, last = our_job()
        local pms, pcpu = peer_job()
        C.note("threads %d %s: ours %.0f ms (CPU %.0f), peer %.0f ms (CPU %.0f); ours: train acc "
               .. "%.4f, test acc %.4f, sharpness %.4f", T, k == 0 and "warm-up" or ("pair " .. k),
               ms, cpu, pms, pcpu, last.train_acc, last.test_acc, last.sharpness)
        if k > 0 then
            ours[#ours + 1], theirs[#theirs + 1] = ms, pms
            ours_cpu[#ours_cpu + 1], their_cpu[#their_cpu + 1] = cpu, pcpu
            ratios[#ratios + 1], cpu_ratios[#cpu_ratios + 1] = ms / pms, cpu / pcpu
        end
    end
    rss_peer = math.max(rss_peer, tonumber(peer:ask("rss") or "") or 0 / 0)
    peer:close()
    local om, pm = C.median(ours), C.median(theirs)
    print(string.format("%s,f32,%d,%.1f,torch,%.1f,%.3f", workload, T, om, pm, om / pm))
    io.stdout:flush()
    C.note("threads %d: median over pairs of ours/peer %.3f (wall), %.3f (CPU); median CPU ours "
           .. "%.0f ms, peer %.0f ms", T, C.median(ratios), C.median(cpu_ratios), C.median(ours_cpu),
           C.median(their_cpu))
end
local rss_ours = C.peak_rss_mib() or 0 / 0
print(string.format("%s_peak_rss_mib,f32,%s,%.1f,torch,%.1f,%.3f", workload,
                    table.concat(threads, "+"), rss_ours, rss_peer, rss_ours / rss_peer))
C.note("load average at the end %s", C.loadavg())
os.execute("rm -rf " .. C.q(tmp))
