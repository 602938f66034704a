--- bench/common.lua: what the Lua benchmarks share (loaded with dofile from each bench_*.lua; not
-- a benchmark itself, since bench/run.sh runs only bench/bench_*.lua).
--   note(fmt, ...)      a '#' line on stderr
--   q(s)                s quoted for the shell
--   dir                 the directory of the bench scripts (and of the Python peers)
--   python(env)         the command that runs the peers' interpreter: LANDSCAPE_PYTHON or
--                       /usr/bin/python3, without LD_PRELOAD (the sanitizer build's), with
--                       OMP_WAIT_POLICY=passive (torch's OpenMP workers sleep between calls instead of
--                       spinning on a core that our side needs; on this shared 2-core VM the
--                       default made torch's 2-thread step up to 17x slower than its 1-thread one)
--                       and `env` (a string of VAR=value words, which may override it) before it
--   peer(cmd)           cmd started as a co-process for alternating samples: p:ask(line) sends one
--                       request line to its stdin and returns its next reply line (its '#' lines go
--                       to stderr; nil when it has exited), p:close() ends it. The peers serve
--                       requests with peer_common.serve
--   report_machine(who) '#' lines: CPU model, family and model, cores; the BLAS library, its
--                       kernel and threads, the engine's GEMM path, thread-related environment
--   report_threads(who) '#' line: our thread count and OpenBLAS's (after each change)
--   run_lines(cmd)      runs cmd; its '#' lines go to stderr, the others are returned (a list)
--   loadavg()           the three load averages of /proc/loadavg, as a string
--   median(v)           the median of a list of numbers (v is left as it is)
--   peak_rss_mib()      this process's peak resident set (VmHWM) in MiB, or nil
local M = {}

function M.note(...) io.stderr:write("# ", string.format(...), "\n") end

function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

do
  local src = debug.getinfo(1, "S").source
  M.dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "bench"
end

function M.python(env)
  local py = os.getenv("LANDSCAPE_PYTHON")
  if py == nil or py == "" then py = "/usr/bin/python3" end
  return "env -u LD_PRELOAD OMP_WAIT_POLICY=passive " .. (env and env .. " " or "") .. M.q(py)
end

-- A co-process: its stdin is a pipe from us, its stdout a FIFO we read (Lua's io.popen goes one way
-- only).
function M.peer(cmd)
  local fifo = os.tmpname()
  os.remove(fifo)
  if not os.execute("mkfifo -m 600 " .. M.q(fifo)) then
    M.note("cannot make a FIFO at %s", fifo)
    return nil
  end
  local w = io.popen(cmd .. " > " .. M.q(fifo), "w")
  local r = w and io.open(fifo, "r")   -- returns once the shell has opened the FIFO for the peer
  if not r then
    if w then w:close() end
    os.remove(fifo)
    M.note("cannot start %s", cmd)
    return nil
  end
  local p = {}
  function p:ask(line)
    if not w then return nil end
    w:write(line, "\n")
    w:flush()
    for reply in r:lines() do
      if reply:sub(1, 1) == "#" then io.stderr:write(reply, "\n") else return reply end
    end
    return nil
  end
  function p:close()
    if w then w:close() end   -- the peer sees the end of its input and exits
    if r then
      for line in r:lines() do   -- its last '#' notes
        if line:sub(1, 1) == "#" then io.stderr:write(line, "\n") end
      end
      r:close()
    end
    w, r = nil, nil
    os.remove(fifo)
  end
  return p
end

local function cpuinfo(key)
  local f = io.open("/proc/cpuinfo", "r")
  if not f then return "?" end
  for line in f:lines() do
    local k, v = line:match("^([^:]-)%s*:%s*(.*)$")
    if k == key then
      f:close()
      return v
    end
  end
  f:close()
  return "?"
end

function M.report_machine(who)
  local ls = require "landscape"
  local i = ls.system_info()
  local flags = cpuinfo("flags")
  M.note("%s: CPU %s (family %s, model %s), %d cores available, AVX-512 %s", who,
         cpuinfo("model name"), cpuinfo("cpu family"), cpuinfo("model"), i.cores,
         flags:find("avx512f", 1, true) and "yes" or "no")
  M.note("%s: BLAS %s; kernel %s; engine GEMM path %s", who, i.blas, i.blas_kernel, i.gemm)
  local env = {}
  for _, v in ipairs({"OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE",
                      "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "LANDSCAPE_THREADS"}) do
    env[#env + 1] = v .. "=" .. (os.getenv(v) or "(unset)")
  end
  M.note("%s: environment: %s", who, table.concat(env, " "))
end

function M.report_threads(who)
  local i = require("landscape").system_info()
  M.note("%s: threads: engine %d, OpenBLAS %d", who, i.threads, i.blas_threads)
end

function M.run_lines(cmd)
  local p = io.popen(cmd, "r")
  if not p then
    M.note("cannot run %s", cmd)
    return {}
  end
  local out = {}
  for line in p:lines() do
    if line:sub(1, 1) == "#" then io.stderr:write(line, "\n") else out[#out + 1] = line end
  end
  local ok, how, code = p:close()
  if not ok then M.note("%s: %s %s", cmd, tostring(how), tostring(code)) end
  return out
end

function M.loadavg()
  local f = io.open("/proc/loadavg", "r")
  if not f then return "?" end
  local s = f:read("l") or "?"
  f:close()
  return s:match("^(%S+ %S+ %S+)") or s
end

function M.median(v)
  local s = {}
  for i, x in ipairs(v) do s[i] = x end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return 0.5 * (s[n // 2] + s[n // 2 + 1])
end

function M.peak_rss_mib()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024 or nil
end

return M
