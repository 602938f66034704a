--- What the study runner's specs (study_spec.lua, study_slurm_spec.lua) share: temporary directories,
-- files, and running the test study tests/study/counter_study.lua through the `landscape` executable.
--   h.q(s)             s quoted for sh
--   h.read_file(path)  the file's bytes, or nil
--   h.tmpdir()         a fresh directory, removed by h.cleanup()
--   h.WORK             " --work K": the test study's matrix products per step, calibrated so that a
--                      step takes about 15 ms on this build (the sanitizer build's kernels are some
--                      15x slower than the release build's)
--   h.sh(cmd)          runs cmd (shell text) with no terminal and without LD_PRELOAD (the sanitizer
--                      build's: the executable links its own runtime, and the tools it starts must
--                      not load it) -> {out =, err =, code =}
--   h.landscape(args [, env])   h.sh of `landscape counter_study.lua <WORK> <args>`;
--                      env: "VAR=value ..."
--   h.count_done(out)  how many jobs of the study in `out` have their done record
local ls = require "landscape"

local M = {}

M.BIN = os.getenv("LANDSCAPE_BIN") or "build/landscape"
M.SCRIPT = "tests/study/counter_study.lua"

function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

M.read_file = require("landscape.io.fs").read

local temps = {}
function M.tmpdir()
    local p = os.tmpname()
    os.remove(p)
    assert(os.execute("mkdir -p " .. M.q(p)))
    temps[#temps + 1] = p
    return p
end

function M.cleanup()
    for _, p in ipairs(temps) do os.execute("rm -rf " .. M.q(p)) end
    temps = {}
end

local function calibrate()
    local W = ls.randn({96, 96}, {seed = 1, dtype = "f64"}) * 0.1
    local b = ls.randn({96, 1}, {seed = 2, dtype = "f64"})
    local x = ls.randn({96, 256}, {seed = 3, dtype = "f64"})
    local t0 = ls.clock()
    for _ = 1, 5 do x = (W:matmul(x) + b):tanh() end
    local per = (ls.clock() - t0) / 5
    return math.max(1, math.min(60, math.floor(0.015 / per + 0.5)))
end
M.WORK = " --work " .. calibrate()

function M.sh(cmd)
    local out, err = os.tmpname(), os.tmpname()
    local _, _, code = os.execute(string.format("env -u LD_PRELOAD %s </dev/null >%s 2>%s", cmd,
                                                M.q(out), M.q(err)))
    local r = {out = M.read_file(out), err = M.read_file(err), code = code}
    os.remove(out)
    os.remove(err)
    return r
end

function M.count_done(out)
    local store = require "landscape.study.store"
    local n = 0
    for _, key in ipairs(store.entries(out .. "/jobs")) do
        if store.exists(out .. "/jobs/" .. key .. "/done.lua") then n = n + 1 end
    end
    return n
end

function M.landscape(args, env)
    return M.sh(string.format("%s %s %s%s %s", env or "", M.q(M.BIN), M.q(M.SCRIPT), M.WORK, args))
end

return M
