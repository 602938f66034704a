--- bench/common.lua: what the Lua benchmarks share (loaded with dofile from each bench_*.lua; not
-- a benchmark itself, since bench/run.sh runs only bench/bench_*.lua).
--   note(fmt, ...)      a '#' line on stderr
--   q(s)                s quoted for the shell
--   dir                 the directory of the bench scripts (and of the Python peers)
--   python(env)         the command that runs the peers' interpreter: LANDSCAPE_PYTHON or
--                       /usr/bin/python3, without LD_PRELOAD (the sanitizer build's), with `env`
--                       (a string of VAR=value words) before it
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
  return "env -u LD_PRELOAD " .. (env and env .. " " or "") .. M.q(py)
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
