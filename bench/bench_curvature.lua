--- bench_curvature.lua: Hessian trace and top eigenvalues of a model on 1000 Fashion-MNIST images,
-- against PyHessian-style PyTorch and SciPy's eigsh.
--
--   build/landscape bench/bench_curvature.lua [--quick] [--only mlp|cnn] [--reps N]
--                                             [--probes N] [--cnn-probes N] [--cnn-threads 2]
--
-- Options (defaults; --quick): --only (both models), --reps (3; 1), --probes (100; 20) for the MLP,
-- --cnn-probes (10; 2) and --cnn-threads ("2"; "2") for the CNN, whose products are slow (one
-- Hutchinson probe costs one product, so the time scales linearly in probes). LANDSCAPE_PYTHON names
-- the peer's interpreter (default /usr/bin/python3).
--
-- Data: ls.data.fashion_mnist{split = "train", n = 1000, seed = 1}, written once to a temporary
-- safetensors file that the peer (bench/peer_curvature.py) reads, so both sides see the same
-- images. The Hessian is that of the mean cross-entropy over all 1000 images, in one batch of 1000,
-- eval mode. The MLP's weights (our seed-1 initialisation, f32 and f64) and our Lanczos start
-- vector go to the peer in the same file, so for the MLP both sides work on the SAME Hessian and
-- eigsh starts from our start vector (the product counts are then comparable). The CNN keeps
-- torch's own weights on the peer side (only its timing is compared); the architectures are
-- identical.
--
-- Workloads (each timed call is one whole estimate, operator construction included):
--   hutchinson_mlp         H:trace{probes = 100, seed = 1} of ls.nn.mlp{hidden = {128, 128}}
--                          (relu); peer: PyHessian's Hutchinson with 100 Rademacher probes
--   lanczos_top3_mlp       H:eigs{k = 3, which = "largest", tol = 1e-4}; two peers, each its own row:
--                          torch_pyhessian_power (PyHessian's power iteration with deflation,
--                          maxIter = 100, tol = 1e-3) and torch_eigsh (scipy eigsh on a
--                          LinearOperator, k = 3, which = 'LA', tol = 1e-4)
--   lanczos_top3_hvps      COUNTS, not milliseconds: ours_ms = our Lanczos matvecs, peer_ms = the
--                          products eigsh (peer "eigsh") or the power iteration (peer
--                          "pyhessian_power") used, at 1 thread (counts do not depend on threads)
--   lanczos_top3_outside   the Lanczos call of lanczos_top3_mlp split in two, at 1 thread: ours_ms
--                          = the wall time OUTSIDE the operator's products (the C Lanczos, the
--                          Lua adapter, the result), peer = "inside_products", peer_ms = the wall
--                          time inside them, ratio = outside / inside (issue #18's goal: < 0.10).
--                          The products are timed by a matvec that wraps H:matvec with ls.clock
--                          (ls.curvature.operator); medians of `reps` calls, each the whole
--                          estimate (operator construction included, outside)
--   hutchinson_cnn_p<N>    H:trace{probes = N} of ls.nn.cnn{channels = {32, 64}, hidden = 128,
--                          batchnorm = true}; peer: PyHessian's Hutchinson with N probes
-- MLP rows in f32 and f64 at 1 and 2 threads; CNN rows in f32 at --cnn-threads.
--
-- The peer is a co-process (OMP_WAIT_POLICY=passive, its threads and OpenBLAS's pinned); each of
-- our calls is followed by one of the peer's, `reps` times, and each side's median wall time
-- (ls.clock / time.perf_counter) is reported. A full collection precedes every sample of ours,
-- outside the timed region.
--
-- stdout: tidy CSV (workload,dtype,threads,ours_ms,peer,peer_ms,ratio), ratio = ours / peer.
-- stderr: '#' notes (estimates of both sides, load average).
local ls = require "landscape"

local clock = ls.clock

-- ---- options ----
local opts = {quick = false, only = nil, reps = nil, probes = nil, cnn_probes = nil,
              cnn_threads = nil}
do
  local args = {...}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--quick" then
      opts.quick = true
    elseif a == "--only" or a == "--reps" or a == "--probes" or a == "--cnn-probes"
        or a == "--cnn-threads" then
      local v = args[i + 1]
      if v == nil then error("bench_curvature: " .. a .. " needs a value", 0) end
      if a == "--only" then
        if v ~= "mlp" and v ~= "cnn" then
          error("bench_curvature: --only must be 'mlp' or 'cnn', got '" .. v .. "'", 0)
        end
        opts.only = v
      elseif a == "--cnn-threads" then
        opts.cnn_threads = v
      else
        local num = math.tointeger(tonumber(v))
        if not num or num <= 0 then
          error("bench_curvature: " .. a .. " must be a positive integer, got " .. v, 0)
        end
        opts[a:sub(3):gsub("-", "_")] = num
      end
      i = i + 1
    else
      io.stderr:write("usage: bench_curvature.lua [--quick] [--only mlp|cnn] [--reps N] ",
                      "[--probes N] [--cnn-probes N] [--cnn-threads 1,2]\n")
      os.exit(a == "--help" and 0 or 2)
    end
    i = i + 1
  end
  opts.reps = opts.reps or (opts.quick and 1 or 3)
  opts.probes = opts.probes or (opts.quick and 20 or 100)
  opts.cnn_probes = opts.cnn_probes or (opts.quick and 2 or 10)
  opts.cnn_threads = opts.cnn_threads or "2"
end

local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "bench") .. "/common.lua")
local note = bench.note

local loadavg = bench.loadavg

-- `reps` calls of fn, each followed by one call of the peer's `workload` (peer:ask("run ...")):
-- our median ms and the last call's result, the peer's median ms and its products of the last
-- call (nil without a peer).
local function time_it(fn, peer, workload)
  local t, p, res, hvps = {}, {}, nil, nil
  for r = 1, opts.reps do
    collectgarbage()
    collectgarbage()
    local t0 = clock()
    res = fn()
    t[r] = (clock() - t0) * 1000
    local reply = peer and workload and peer:ask("run " .. workload)
    local ms, n = (reply or ""):match("^(%S+) (%S+)$")
    if ms then p[#p + 1], hvps = tonumber(ms), tonumber(n) end
  end
  local pm = #p == opts.reps and bench.median(p) or nil
  return bench.median(t), res, pm, hvps
end

-- The Lanczos estimate of lanczos_top3_mlp on op() (at the current threads), `reps` times, with
-- the products timed by a wrapper: the medians of the wall time outside and inside the products
-- (ms) and of their ratio, and the product count.
local function lanczos_split(op)
  local outs, ins, ratios, products = {}, {}, {}, 0
  for r = 1, opts.reps do
    collectgarbage()
    collectgarbage()
    local inside, count = 0, 0
    local t0 = clock()
    local H = op()
    local function matvec(v)
      local a = clock()
      local hv = H:matvec(v)
      inside, count = inside + (clock() - a), count + 1
      return hv
    end
    local timed = ls.curvature.operator{n = H.n, dtype = H.dtype, name = "timed", matvec = matvec}
    timed:eigs{k = 3, which = "largest", tol = 1e-4, seed = 1}
    local total = clock() - t0
    outs[r], ins[r], ratios[r], products = (total - inside) * 1000, inside * 1000,
        (total - inside) / inside, count
  end
  return {outside = bench.median(outs), inside = bench.median(ins), ratio = bench.median(ratios),
          products = products}
end

local function list(s)
  local out = {}
  for x in s:gmatch("[^,]+") do out[#out + 1] = x end
  return out
end

-- ---- the data, shared with the peer ----
local data = ls.data.fashion_mnist{split = "train", n = 1000, seed = 1}
local data64 = {x = data.x:cast("f64"), y = data.y}
-- The MLPs (seed-1 initialisation) go to the peer too, as "mlp.<dtype>.<name>" tensors, and so does
-- our Lanczos start vector (eigs{seed = 1} draws ls.rademacher({n}, {seed = 1, dtype = "f64"})):
-- eigsh then runs on the same Hessian from the same start, and the product counts compare.
local shared = {x = data.x, y = data.y}
local mlps = {}
if opts.only ~= "cnn" then
  for _, dt in ipairs({"f32", "f64"}) do
    mlps[dt] = ls.nn.mlp{hidden = {128, 128}, activation = "relu", dtype = dt}
    for _, e in ipairs(mlps[dt]:state_dict()) do shared["mlp." .. dt .. "." .. e[1]] = e[2] end
  end
  local n = ls.curvature.hessian(mlps.f64, data64, {batch = 1000, mode = "eval"}).n
  shared.v0 = ls.rademacher({n}, {seed = 1, dtype = "f64"})
end
local tmp = os.tmpname()
ls.io.save_safetensors(tmp, shared)

-- ---- the peer ----
-- The peer co-process (bench/peer_curvature.py, reading the shared file), set up for a model, dtype,
-- thread count and probe count; nil when it does not answer.
local peer = bench.peer(string.format("%s %s --data %s", bench.python(),
                                      bench.q(bench.dir .. "/peer_curvature.py"), tmp))
local function peer_setup(model, dt, th, probes)
  if not peer then return nil end
  if peer:ask(string.format("setup %s %s %d %d", model, dt, th, probes)) ~= "ok" then
    note("torch peer: not ready (is python3-torch installed?)")
    peer:close()
    peer = nil
  end
  return peer
end

-- ---- output ----
print("workload,dtype,threads,ours_ms,peer,peer_ms,ratio")
local function row(workload, dtype, threads, ours, peer, peer_ms)
  local ratio = (peer_ms and peer_ms > 0) and string.format("%.3f", ours / peer_ms) or ""
  print(string.format("%s,%s,%d,%.3f,%s,%s,%s", workload, dtype, threads, ours, peer,
                      peer_ms and string.format("%.3f", peer_ms) or "", ratio))
  io.stdout:flush()
end

note("load average at start: %s; reps %d, MLP probes %d, CNN probes %d", loadavg(), opts.reps,
     opts.probes, opts.cnn_probes)

-- ---- MLP ----
bench.report_machine("bench_curvature.lua")
if opts.only ~= "cnn" then
  local hvps, peer_hvps, split = {}, {}, {}
  for _, dt in ipairs({"f32", "f64"}) do
    local model = mlps[dt]
    local d = dt == "f32" and data or data64
    local function op() return ls.curvature.hessian(model, d, {batch = 1000, mode = "eval"}) end
    for _, th in ipairs({1, 2}) do
      ls.set_threads(th)
      bench.report_threads("bench_curvature.lua")
      local p = peer_setup("mlp", dt, th, opts.probes)
      local ms, r, pms = time_it(function() return op():trace{probes = opts.probes, seed = 1} end,
                                 p, "hutchinson")
      note("ours hutchinson %s %d threads: %.6g (stderr %.3g)", dt, th, r.estimate, r.stderr)
      row("hutchinson_mlp", dt, th, ms, "torch_pyhessian", pms)
      local function eigs() return op():eigs{k = 3, which = "largest", tol = 1e-4, seed = 1} end
      local ph, eh
      ms, r, pms, ph = time_it(eigs, p, "power_top3")
      note("ours lanczos %s %d threads: %.6g %.6g %.6g, %d matvecs, converged %s", dt, th,
           r.values[1], r.values[2], r.values[3], r.matvecs, tostring(r.converged))
      row("lanczos_top3_mlp", dt, th, ms, "torch_pyhessian_power", pms)
      ms, r, pms, eh = time_it(eigs, p, "eigsh_top3")
      row("lanczos_top3_mlp", dt, th, ms, "torch_eigsh", pms)
      if th == 1 then
        hvps[dt], peer_hvps[dt] = r.matvecs, {power = ph, eigsh = eh}
        split[dt] = lanczos_split(op)
      end
    end
  end
  for _, dt in ipairs({"f32", "f64"}) do
    row("lanczos_top3_hvps", dt, 1, hvps[dt], "eigsh", peer_hvps[dt].eigsh)
    row("lanczos_top3_hvps", dt, 1, hvps[dt], "pyhessian_power", peer_hvps[dt].power)
  end
  for _, dt in ipairs({"f32", "f64"}) do
    local s = split[dt]
    note("lanczos top-3 %s, 1 thread: %d products, %.1f ms inside them (%.2f ms each), %.1f ms " ..
         "outside: %.1f %% of the products' time (goal < 10 %%)", dt, s.products, s.inside,
         s.inside / s.products, s.outside, 100 * s.ratio)
    print(string.format("lanczos_top3_outside,%s,1,%.3f,inside_products,%.3f,%.3f", dt, s.outside,
                        s.inside, s.ratio))
  end
end

-- ---- CNN ----
if opts.only ~= "mlp" then
  local model = ls.nn.cnn{channels = {32, 64}, hidden = 128, classes = 10, batchnorm = true}
  for _, th in ipairs(list(opts.cnn_threads)) do
    th = math.tointeger(tonumber(th))
    ls.set_threads(th)
    bench.report_threads("bench_curvature.lua")
    local p = peer_setup("cnn", "f32", th, opts.cnn_probes)
    local ms, r, pms = time_it(function()
      local H = ls.curvature.hessian(model, data, {batch = 1000, mode = "eval"})
      return H:trace{probes = opts.cnn_probes, seed = 1}
    end, p, "hutchinson")
    note("ours hutchinson cnn f32 %d threads: %.6g (stderr %.3g)", th, r.estimate, r.stderr)
    row("hutchinson_cnn_p" .. opts.cnn_probes, "f32", th, ms, "torch_pyhessian", pms)
  end
end

if peer then peer:close() end
os.remove(tmp)
note("load average at the end: %s", loadavg())
