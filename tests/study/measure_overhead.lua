--- The study runner's overhead, as reported in docs/study-runner.md:
--   landscape tests/study/measure_overhead.lua [OUTDIR]
-- 1. 8 jobs that each sleep 2 s (tests/study/counter_study.lua --small --sleep 2, 4 jobs, twice: two
--    studies) on 2 workers: the runner's wall and CPU time per job (runner_seconds and
--    runner_cpu_seconds: claim, started record, done record, leftovers), each worker's start-up
--    (process_age and process_cpu at its first job), and the wall time against the ideal (the sum
--    of job times / 2).
-- 2. job:save of a 1.3 MB state (an MLP 784-256-256-10's weights in float32) and job:load: the
--    cost of one checkpoint through the runner (temp file + rename).
local ls = require "landscape"
io.stdout:write("load average: ", io.open("/proc/loadavg"):read("l"), "\n")
local store = require "landscape.study.store"
local jobmod = require "landscape.study.job"

local out = arg[1] or os.tmpname()
os.remove(out)
local exe = store.executable()
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function median(v)
    table.sort(v)
    local n = #v
    return n % 2 == 1 and v[(n + 1) // 2] or 0.5 * (v[n // 2] + v[n // 2 + 1])
end

for round = 1, 2 do
    local dir = out .. "/sleep" .. round
    local t0 = ls.clock()
    assert(os.execute(string.format("%s tests/study/counter_study.lua --out %s --small --steps 1 "
                                    .. "--work 1 --sleep 2 --jobs 2 >/dev/null", q(exe), q(dir))))
    local wall = ls.clock() - t0
    local runner, cpu, ages, sum = {}, {}, {}, 0
    for _, key in ipairs(store.entries(dir .. "/jobs")) do
        local rec = store.read_record(dir .. "/jobs/" .. key .. "/done.lua")
        runner[#runner + 1] = rec.runner_seconds * 1000
        cpu[#cpu + 1] = rec.runner_cpu_seconds * 1000
        if rec.process_age then
            ages[#ages + 1] = string.format("%.0f (cpu %.0f)", rec.process_age * 1000,
                                            rec.process_cpu * 1000)
        end
        sum = sum + rec.seconds
    end
    local max_runner = math.max(table.unpack(runner))
    local max_cpu = math.max(table.unpack(cpu))
    print(string.format("round %d: 4 jobs of %.2f s on 2 workers: runner per job median %.2f ms "
                        .. "(max %.2f ms), cpu median %.2f ms (max %.2f ms); worker start-up %s ms; "
                        .. "wall %.2f s against %.2f s ideal (+%.1f %%)", round, sum / 4,
                        median(runner), max_runner, median(cpu), max_cpu, table.concat(ages, ", "),
                        wall, sum / 2, 100 * (wall / (sum / 2) - 1)))
end

local w = {}
for i, shape in ipairs({{256, 784}, {256}, {256, 256}, {256}, {10, 256}, {10}}) do
    w["p" .. i] = ls.randn(shape, {seed = i})
end
local job = jobmod.new{key = "0", index = 1, config = {}, dir = out .. "/save"}
for i = 1, 20 do job:row{i = i, loss = 0.5} end
local saves, loads = {}, {}
for _ = 1, 21 do
    local t0 = ls.clock()
    job:save(w, {step = 1})
    saves[#saves + 1] = (ls.clock() - t0) * 1000
    t0 = ls.clock()
    job:load()
    loads[#loads + 1] = (ls.clock() - t0) * 1000
end
print(string.format("job:save of %d floats: median %.2f ms, job:load: median %.2f ms (21 each)",
                    784 * 256 + 256 * 256 + 256 * 10 + 256 * 2 + 10, median(saves), median(loads)))
os.execute("rm -rf " .. q(out))
