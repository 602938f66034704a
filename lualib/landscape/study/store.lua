--- landscape.study.store: where a study keeps its files, whole-file writes, and the few process
-- helpers the runner needs (own pid, liveness, sleep).
--
-- Layout of a study's output directory OUT:
--   OUT/jobs/<key>/done.lua      the done record: the job's rows and timings (written last, whole)
--   OUT/jobs/<key>/failed.lua    a failure record: message, traceback, timings
--   OUT/jobs/<key>/started.lua   the last start: host, pid, attempt number
--   OUT/jobs/<key>/state.safetensors   job:save's state (tensors, metadata, the rows so far)
--   OUT/jobs/<key>/ckpt*         job.checkpoint: the path handed to ls.train's checkpoints
--   OUT/logs/                    worker logs (local workers) and Slurm task logs
--   OUT/slurm/                   the array and merge scripts, submissions.lua
--   OUT/.runs/<pid>/             one local run: its claims (one directory per started job)
--   OUT/<name>.csv, OUT/<name>.manifest.json   the merge
-- Records are Lua literals (serial.encode), read back with serial.decode.
--
-- Every file is written to a temporary name in its own directory (".<name>.tmp.<pid>.<n>") and renamed
-- into place, so a process killed at any instant leaves the old file or the new one, never a part.
-- (Lua cannot fsync: this protects against a killed process, not against a power cut.)
local fs = require "landscape.io.fs"
local serial = require "landscape.study.serial"

local had_lfs_global = rawget(_G, "lfs") ~= nil
local lfs = require "lfs"
if not had_lfs_global then _G.lfs = nil end

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local read_file = fs.read

--- The paths of a study's files under `out`.
function M.layout(out)
    return {
        out = out,
        jobs = fs.join(out, "jobs"),
        logs = fs.join(out, "logs"),
        slurm = fs.join(out, "slurm"),
        runs = fs.join(out, ".runs"),
    }
end

--- The directory of job `key`.
function M.job_dir(out, key) return fs.join(out, "jobs", key) end

local my_pid
--- This process's id (from /proc/self).
function M.pid()
    if not my_pid then
        my_pid = math.tointeger(tonumber(lfs.symlinkattributes("/proc/self", "target") or ""))
        if not my_pid then fail("study: cannot read this process's id from /proc/self") end
    end
    return my_pid
end

--- The state letter of process `pid` (from /proc/<pid>/stat), or nil when there is none.
local function proc_state(pid)
    local s = read_file("/proc/" .. math.tointeger(pid) .. "/stat")
    return s and s:match("^%d+ %(.*%) (%a)")
end

--- True while process `pid` exists and has not exited (a zombie counts as exited).
function M.alive(pid)
    if math.tointeger(pid) == nil then return false end
    local st = proc_state(pid)
    return st ~= nil and st ~= "Z" and st ~= "X"
end

--- The command line of process pid as one string (arguments joined by spaces), or "".
function M.cmdline(pid)
    return ((read_file("/proc/" .. math.tointeger(pid) .. "/cmdline") or ""):gsub("%z", " "))
end

--- Sleep for `s` seconds. Runs `sleep` through io.popen rather than os.execute: os.execute ignores
-- SIGINT while its child runs, which would swallow a Ctrl-C sent to this process alone.
function M.sleep(s)
    local p = io.popen(string.format("sleep %.3f", s), "r")
    if p then
        p:read("a")
        p:close()
    end
end

--- The short host name.
function M.hostname()
    local h = (read_file("/proc/sys/kernel/hostname") or ""):match("[^\n]+")
    return h or os.getenv("HOSTNAME") or "unknown"
end

--- Wall-clock time as an ISO 8601 UTC string (seconds), for records and the manifest.
function M.iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t or os.time()) end

local counter = 0
--- A fresh temporary name beside `path` (same directory, so a rename is atomic).
function M.temp_beside(path)
    counter = counter + 1
    return fs.join(fs.dirname(path), string.format(".%s.tmp.%d.%d", fs.basename(path), M.pid(),
                                                   counter))
end

--- Rename `tmp` to `path` (both in one directory), raising with both names on failure.
function M.rename(tmp, path)
    local ok, err = os.rename(tmp, path)
    if not ok then
        os.remove(tmp)
        fail("study: cannot rename %s to %s: %s", tmp, path, err)
    end
end

--- Write `text` to `path` whole: a temporary file in the same directory, then rename. The parent
-- directory is created if missing. Errors name the path.
function M.write_atomic(path, text)
    local ok, err = fs.mkdir_p(fs.dirname(path))
    if not ok then fail("study: %s", err) end
    local tmp = M.temp_beside(path)
    local f, ferr = io.open(tmp, "wb")
    if not f then fail("study: cannot write %s: %s", tmp, ferr) end
    local wok, werr = f:write(text)
    local cok, cerr = f:close()
    if not wok or not cok then
        os.remove(tmp)
        fail("study: cannot write %s: %s", tmp, tostring(werr or cerr))
    end
    M.rename(tmp, path)
end

--- Write a record (any value serial.encode takes) whole to `path`.
function M.write_record(path, value)
    M.write_atomic(path, serial.encode(value) .. "\n")
end

--- Read a record; nil when the file does not exist; an error naming the path when it does not read.
function M.read_record(path)
    local text = read_file(path)
    if not text then return nil end
    local v, err = serial.decode(text, path)
    if v == nil then fail("study: %s is not a record (%s)", path, tostring(err)) end
    return v
end

--- True if `path` exists (one stat).
function M.exists(path) return lfs.attributes(path, "mode") ~= nil end

--- Create a directory that must not exist yet: true if this call created it, false if it existed
-- (the claim of a job among workers: mkdir is atomic). Parents must exist.
function M.claim(path)
    local ok = lfs.mkdir(path)
    return ok and true or false
end

--- The entries (names) of a directory, or {} if it does not exist.
function M.entries(dir)
    local out = {}
    if lfs.attributes(dir, "mode") ~= "directory" then return out end
    for name in lfs.dir(dir) do
        if name ~= "." and name ~= ".." then out[#out + 1] = name end
    end
    table.sort(out)
    return out
end

--- Remove a file or a directory tree (no error if missing).
function M.remove_tree(path)
    local mode = lfs.symlinkattributes(path, "mode")
    if mode == nil then return end
    if mode == "directory" then
        for _, name in ipairs(M.entries(path)) do M.remove_tree(fs.join(path, name)) end
        local ok, err = lfs.rmdir(path)
        if not ok and lfs.attributes(path, "mode") then
            fail("study: cannot remove %s: %s", path, err)
        end
    else
        local ok, err = os.remove(path)
        if not ok and lfs.symlinkattributes(path, "mode") then
            fail("study: cannot remove %s: %s", path, err)
        end
    end
end


local machine_cache
--- This machine, for the records: host, CPU model, cores, the engine's GEMM path ("avx512": its own
-- kernels, "blas"), the BLAS library and the kernel it picked. Taken from ls.system_info() where the
-- engine has it; otherwise the GEMM path is inferred as the engine chooses it (engine/ops/gemm.c: its
-- AVX-512 kernels where the CPU has AVX-512F) and the BLAS kernel is OPENBLAS_CORETYPE, when set.
function M.machine()
    if machine_cache then return machine_cache end
    local ls = require "landscape"
    local info = read_file("/proc/cpuinfo") or ""
    local m = {host = M.hostname(), cpu = info:match("model name%s*:%s*([^\n]+)") or "unknown",
               cores = ls.available_cores()}
    local sys = type(ls.system_info) == "function" and ls.system_info() or nil
    if sys then
        m.gemm, m.blas, m.blas_kernel = sys.gemm, sys.blas, sys.blas_kernel
    else
        local flags = " " .. (info:match("flags%s*:%s*([^\n]*)") or "") .. " "
        m.gemm = flags:find(" avx512f ", 1, true) and "avx512" or "blas"
        m.blas_kernel = os.getenv("OPENBLAS_CORETYPE")
    end
    machine_cache = m
    return m
end

local ticks
--- How long this process has existed and how much CPU it has used, in seconds (from /proc/self/stat
-- and /proc/uptime, 10 ms resolution): age, cpu, or nil. At a process's first job, the start-up cost
-- a worker or shard pays (the wall time, and the part of it the process itself spent).
function M.process_times()
    if not ticks then
        local p = io.popen("getconf CLK_TCK 2>/dev/null", "r")
        ticks = p and tonumber(p:read("l") or "") or 100
        if p then p:close() end
    end
    local stat = read_file("/proc/self/stat")
    local up = read_file("/proc/uptime")
    local rest = stat and stat:match("^%d+ %(.*%) (.*)$")
    if not rest or not up then return nil end
    local f = {}
    for w in rest:gmatch("%S+") do f[#f + 1] = w end
    -- stat's fields 14, 15 and 22 (utime, stime, starttime, in clock ticks) are f[12], f[13], f[20]
    local utime, stime, start = tonumber(f[12]), tonumber(f[13]), tonumber(f[20])
    local now = tonumber(up:match("^(%S+)"))
    if not (utime and stime and start and now) then return nil end
    return math.max(0, now - start / ticks), (utime + stime) / ticks
end

--- The peak resident set size of this process so far, in MiB (VmHWM of /proc/self/status), or nil.
function M.peak_rss_mib()
    local st = read_file("/proc/self/status")
    local kb = st and st:match("VmHWM:%s*(%d+)%s*kB")
    return kb and tonumber(kb) / 1024 or nil
end

--- The path of the executable running this process (/proc/self/exe), or nil.
function M.executable()
    return lfs.symlinkattributes("/proc/self/exe", "target")
end

--- The current directory.
function M.cwd() return lfs.currentdir() end

--- s quoted for sh.
function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

return M
