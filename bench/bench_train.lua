--- bench_train.lua: one training step of small networks, against PyTorch; and the peak memory of
--- an epoch of CNN training.
--
--   build/landscape bench/bench_train.lua [--quick] [--only mlp_784_512_512_10,cnn,rss]
--                                         [--reps 9] [--min-sample 0.3] [--epoch-steps 469]
--                                         [--omp-wait passive]
--
-- Options (defaults): --quick (off: 5 reps, 0.1 s samples, 60 steps for the memory row), --only (all
-- of mlp_784_512_512_10, mlp_784_64_10, cnn, rss), --reps (9; quick 5), --min-sample (0.3 s; quick
-- 0.1), --epoch-steps (469 = 60000 / 128; quick 60), --omp-wait (passive: the peer runs with
-- OMP_WAIT_POLICY=passive; on this shared 2-core machine libgomp's default spinning made torch's
-- 2-thread step 15x slower than its 1-thread step whenever other jobs held a core, 234 ms against
-- 14 ms for the 512-wide MLP; passive gave 14 ms; active restores the default).
-- LANDSCAPE_PYTHON names the peer's interpreter (default /usr/bin/python3).
--
-- A "train step", batch 128, f32, on a fixed random batch [128, 1, 28, 28] with random labels:
--   local loss = ls.cross_entropy(model(x), y); loss:backward(); opt:step(); opt:zero_grad()
-- with opt = ls.optim.sgd(model:parameters(), {lr = 0.01, momentum = 0.9}). Workloads:
--   mlp_784_512_512_10  ls.nn.mlp{input = 784, hidden = {512, 512}, classes = 10}
--                       (goal <= 1.0x PyTorch, and 2 threads >= 1.7x faster than 1)
--   mlp_784_64_10       ls.nn.mlp{input = 784, hidden = {64}, classes = 10}: framework overhead
--                       (goal <= 0.7x)
--   cnn                 ls.nn.cnn{channels = {32, 64}, hidden = 128, classes = 10,
--                       batchnorm = true} (goal <= 0.33x)
-- each with 1 and 2 threads (ls.set_threads), against the identical torch.nn.Sequential in
-- bench/peer_train.py, a co-process whose samples alternate with ours (one of ours, one of the
-- peer's, `reps` times), so that a change of machine load hits both sides alike. Extra rows:
--   mlp_2t_speedup          timed apart, in pairs of samples (1 thread then 2 threads, reps
--                           pairs): ours_ms = median 2-thread sample, peer = ours_1t, peer_ms =
--                           median 1-thread sample, ratio = median over pairs of 2t / 1t
--                           (= 1 / speedup; goal <= 1 / 1.7 = 0.588)
--   cnn_epoch_peak_rss_mib  ours_ms = our peak RSS (MiB) training the CNN for --epoch-steps steps
--                           with 1 thread, peer = torch, peer_ms = torch's (goal: ours <= 300)
-- The memory row runs each side in a child process (this script with --rss-child N, and
-- peer_train.py --rss-child N) that draws a fresh random batch every step, as a data loader would
-- hand one over, never calls collectgarbage (a user's loop does not), and reads VmHWM from
-- /proc/self/status at the end.
--
-- Timing: 3 warm-up steps, an inner loop calibrated so a sample lasts at least min-sample seconds,
-- one untimed sample, then `reps` samples alternating with the peer's; the median sample of each
-- side, in ms per step, on the wall clock (ls.clock; Python: time.perf_counter). Lua's collector runs
-- as it would in a user's loop (no forced collections). stderr names the CPU, the BLAS and its
-- kernel, the thread settings of both sides and the OpenMP wait policy.
--
-- stdout: tidy CSV (workload,dtype,threads,ours_ms,peer,peer_ms,ratio). stderr: '#' notes.
local ls = require "landscape"

local clock = ls.clock or os.clock
local BATCH = 128
local WORKLOADS = {"mlp_784_512_512_10", "mlp_784_64_10", "cnn"}
local THREADS = {1, 2}

-- ---- options ----
local opts = {quick = false, only = nil, reps = nil, min_sample = nil, epoch_steps = nil,
              rss_child = nil, omp_wait = "passive"}
do
  local args = {...}
  local i = 1
  local function usage(code)
    io.stderr:write("usage: bench_train.lua [--quick] [--only w1,w2,rss] [--reps N] ",
                    "[--min-sample S] [--epoch-steps N] [--omp-wait passive|active]\n")
    os.exit(code)
  end
  while i <= #args do
    local a = args[i]
    if a == "--quick" then
      opts.quick = true
    elseif a == "--omp-wait" and (args[i + 1] == "passive" or args[i + 1] == "active") then
      opts.omp_wait = args[i + 1]
      i = i + 1
    elseif a == "--only" or a == "--reps" or a == "--min-sample" or a == "--epoch-steps"
        or a == "--rss-child" then
      local v = args[i + 1]
      if v == nil then error("bench_train: " .. a .. " needs a value", 0) end
      if a == "--only" then
        opts.only = v
      else
        local num = tonumber(v)
        if not num or num <= 0 then error("bench_train: bad value for " .. a .. ": " .. v, 0) end
        if a == "--min-sample" then opts.min_sample = num
        elseif a == "--reps" then opts.reps = math.floor(num)
        elseif a == "--epoch-steps" then opts.epoch_steps = math.floor(num)
        else opts.rss_child = math.floor(num) end
      end
      i = i + 1
    else
      usage(a == "--help" and 0 or 2)
    end
    i = i + 1
  end
  opts.reps = opts.reps or (opts.quick and 5 or 9)
  opts.min_sample = opts.min_sample or (opts.quick and 0.1 or 0.3)
  opts.epoch_steps = opts.epoch_steps or (opts.quick and 60 or 469)
  local only = {}
  for w in (opts.only or table.concat(WORKLOADS, ",") .. ",rss"):gmatch("[^,]+") do
    only[w] = true
  end
  opts.only = only
end

local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench") .. "/common.lua")
local note, q = bench.note, bench.q

-- ---- the models and the step ----
local function make_model(name)
  if name == "mlp_784_512_512_10" then
    return ls.nn.mlp{input = 784, hidden = {512, 512}, classes = 10}
  elseif name == "mlp_784_64_10" then
    return ls.nn.mlp{input = 784, hidden = {64}, classes = 10}
  elseif name == "cnn" then
    return ls.nn.cnn{channels = {32, 64}, hidden = 128, classes = 10, batchnorm = true}
  end
  error("bench_train: unknown workload " .. tostring(name), 0)
end

-- step(x, y) runs one train step of a fresh model and optimizer.
local function make_step(model)
  local opt = ls.optim.sgd(model:parameters(), {lr = 0.01, momentum = 0.9})
  return function(x, y)
    local loss = ls.cross_entropy(model(x), y)
    loss:backward()
    opt:step()
    opt:zero_grad()
    return loss
  end
end

local function random_batch(seed)
  return ls.randn({BATCH, 1, 28, 28}, {seed = seed}), ls.randint(1, 11, {BATCH}, {seed = seed + 1})
end

-- ---- the memory child: --rss-child N ----
if opts.rss_child then
  ls.set_threads(1)
  local step = make_step(make_model("cnn"))
  for i = 1, opts.rss_child do
    local x, y = random_batch(2 * i)
    step(x, y)
  end
  io.stdout:write(string.format("rss,%.1f\n", bench.peak_rss_mib()))
  return
end

-- ---- timing ----
local function sample(fn, iters)
  local t0 = clock()
  for _ = 1, iters do fn() end
  return (clock() - t0) / iters
end

-- Steps per sample: enough that a sample lasts at least min-sample seconds.
local function calibrate(fn)
  for _ = 1, 3 do fn() end
  local t = math.max(sample(fn, 1), 1e-7)
  return t >= opts.min_sample and 1 or math.floor(opts.min_sample / t) + 1
end

-- Our samples alternate with the peer's: one of ours, then one of the peer's (peer:ask("sample")),
-- `reps` times; each side's median in ms per step. With no peer, ours alone.
local function time_pair(fn, peer)
  local iters = calibrate(fn)
  sample(fn, iters)
  local s, p = {}, {}
  for r = 1, opts.reps do
    s[r] = sample(fn, iters)
    local reply = peer and peer:ask("sample")
    p[r] = tonumber(reply)
  end
  local ok = #p == opts.reps
  return 1e3 * bench.median(s), ok and bench.median(p) or nil
end

-- The 2-thread speedup, paired: `reps` pairs of samples, a 1-thread one then a 2-thread one, each
-- after 3 untimed steps at its thread count; ratio = the median over pairs of t2 / t1. This VM's
-- speed drifts by 20-50 % over seconds, so two medians timed one after the other (the rows above)
-- can catch different phases; the two samples of a pair are taken within a second of each other.
-- Returns the medians of the 1- and 2-thread samples (ms) and the median ratio.
local function time_speedup(fn)
  ls.set_threads(1)
  local iters = calibrate(fn)
  local t1, t2, r = {}, {}, {}
  for k = 1, opts.reps do
    for _, th in ipairs({1, 2}) do
      ls.set_threads(th)
      for _ = 1, 3 do fn() end
      local t = sample(fn, iters)
      if th == 1 then t1[k] = t else t2[k] = t end
    end
    r[k] = t2[k] / t1[k]
  end
  return 1e3 * bench.median(t1), 1e3 * bench.median(t2), bench.median(r)
end

-- ---- child processes ----
local function script_path()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2) or "bench/bench_train.lua"
end

local function python()
  return bench.python("OMP_WAIT_POLICY=" .. q(opts.omp_wait)) .. " "
         .. q(bench.dir .. "/peer_train.py")
end

local function rss_of(cmd)
  for _, line in ipairs(bench.run_lines(cmd)) do
    local v = line:match("^rss,([%d.]+)$")
    if v then return tonumber(v) end
  end
  note("no peak RSS from %s", cmd)
  return 0 / 0
end

-- ---- main ----
local loadavg = bench.loadavg

local function row(workload, threads, ours, peer, peer_ms, ratio)
  peer_ms = peer_ms or 0 / 0
  io.stdout:write(string.format("%s,f32,%d,%.4f,%s,%.4f,%.3f\n", workload, threads, ours, peer,
                                peer_ms, ratio or ours / peer_ms))
  io.stdout:flush()
end

local function main()
  note("bench_train.lua: batch %d, reps %d, min-sample %g s, epoch steps %d; load average %s",
       BATCH, opts.reps, opts.min_sample, opts.epoch_steps,
       loadavg())
  bench.report_machine("bench_train.lua")
  io.stdout:write("workload,dtype,threads,ours_ms,peer,peer_ms,ratio\n")
  io.stdout:flush()
  local peer
  for _, name in ipairs(WORKLOADS) do
    if opts.only[name] then
      peer = peer or bench.peer(python())
      for _, threads in ipairs(THREADS) do
        ls.set_threads(threads)
        bench.report_threads("bench_train.lua")
        local ready = peer and peer:ask(string.format("setup %s %d %g", name, threads,
                                                      opts.min_sample))
        if not (ready and ready:match("^ok")) then
          note("torch peer: not ready for %s (is python3-torch installed?)", name)
          if peer then peer:close() end
          peer = nil
        end
        local x, y = random_batch(1)
        local step = make_step(make_model(name))
        local ours, theirs = time_pair(function() step(x, y) end, peer)
        collectgarbage()
        row(name, threads, ours, "torch", theirs)
      end
      if name == "mlp_784_512_512_10" then
        local x, y = random_batch(1)
        local step = make_step(make_model(name))
        local t1, t2, ratio = time_speedup(function() step(x, y) end)
        collectgarbage()
        row("mlp_2t_speedup", 2, t2, "ours_1t", t1, ratio)
      end
    end
  end
  if peer then peer:close() end
  if opts.only.rss then
    local bin = "landscape"
    if arg then                                  -- the interpreter sits at arg's lowest index
      local k = -1
      while arg[k - 1] do k = k - 1 end
      bin = arg[k] or bin
    end
    local ours = rss_of(string.format("%s %s --rss-child %d", q(bin), q(script_path()),
                                      opts.epoch_steps))
    local torch = rss_of(string.format("%s --rss-child %d", python(), opts.epoch_steps))
    row("cnn_epoch_peak_rss_mib", 1, ours, "torch", torch)
  end
  note("bench_train.lua peak RSS %.1f MiB", bench.peak_rss_mib() or 0 / 0)
end

main()
