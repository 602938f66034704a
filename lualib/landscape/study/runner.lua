--- landscape.study.runner: running jobs in this process, each with its records.
--
-- runner.run_job(study, j, opts, first) runs one job (j = {index, key, config} from grid:jobs())
-- unless its done record or its failure record exists (runner.forget_failures first, to run failed
-- jobs again): it writes started.lua, calls study.run(cfg, job) under xpcall, then writes the done
-- record (rows and timings) or the failure record (message and traceback). Returns "done",
-- "failed", "skipped" or "interrupted" (Ctrl-C: no record is written, so the job runs again next
-- time), and the record. The record's timings:
-- seconds and cpu_seconds (wall and process CPU time in study.run), max_rss_mib (the process's peak
-- resident set size when the job ended: a worker's high-water mark over the jobs it ran so far),
-- runner_seconds and runner_cpu_seconds (the runner's own wall and CPU time
-- around it, the done record's write excepted) and, when `first` is true (the first job of its
-- process), process_age and process_cpu: the wall and CPU seconds from the process's start to this
-- job's, the start-up cost of a worker or shard.
-- opts: progress_path (job:progress's file), worker (a label kept in the record).
--
-- runner.run_jobs(study, jobs, opts) runs a list in order. With opts.claims (a directory), a job is
-- run only by the process that creates claims/<key> first, so several workers can walk the same list
-- (a dynamic queue: each takes the next unclaimed job). opts.parent: stop before the next job once
-- that process has exited (a worker whose runner was killed). opts.on_job(status, j, record) is
-- called after each job. Returns {done =, failed =, skipped =, interrupted = true|nil}.
local ls = require "landscape"
local fs = require "landscape.io.fs"
local store = require "landscape.study.store"
local jobmod = require "landscape.study.job"

local M = {}

local function is_interrupt(msg)
    return type(msg) == "string" and msg:match("interrupted!$") ~= nil
end
M.is_interrupt = is_interrupt

--- The paths of job j's records.
function M.paths(out, key)
    local dir = store.job_dir(out, key)
    return {dir = dir, done = fs.join(dir, "done.lua"), failed = fs.join(dir, "failed.lua"),
            started = fs.join(dir, "started.lua")}
end

--- "done", "failed" or nil (not finished) for job `key`: one or two stats.
function M.state(out, key)
    local p = M.paths(out, key)
    if store.exists(p.done) then return "done" end
    if store.exists(p.failed) then return "failed" end
    return nil
end

-- Remove the temporary files a killed process left in dir (".<name>.tmp.<pid>.<n>", see
-- store.temp_beside, possibly with a suffix of the writer's own temporary name).
local function remove_leftovers(dir)
    for _, name in ipairs(store.entries(dir)) do
        local pid = name:match("^%..+%.tmp%.(%d+)%.%d+")
        if pid and not store.alive(tonumber(pid)) then os.remove(fs.join(dir, name)) end
    end
end

function M.run_job(study, j, opts, first)
    opts = opts or {}
    local t_enter, c_enter = ls.clock(), os.clock()
    local p = M.paths(study.out, j.key)
    if store.exists(p.done) or store.exists(p.failed) then return "skipped" end
    remove_leftovers(p.dir)
    local age, cpu
    if first then age, cpu = store.process_times() end
    local prev = store.read_record(p.started)
    local attempt = (prev and prev.attempt or 0) + 1
    local started = os.time()
    store.write_record(p.started, {key = j.key, host = store.machine().host, pid = store.pid(),
                                   attempt = attempt, started = store.iso(started)})
    local job = jobmod.new{key = j.key, index = j.index, config = j.config, dir = p.dir,
                           attempt = attempt, progress_path = opts.progress_path,
                           opts = study.opts}
    local cfg = {}
    for k, v in pairs(j.config) do cfg[k] = v end
    local t0, c0 = ls.clock(), os.clock()
    local ok, err = xpcall(study.run, function(msg)
        if is_interrupt(msg) then return msg end
        return {message = tostring(msg), traceback = debug.traceback(tostring(msg), 2)}
    end, cfg, job)
    local t1, c1 = ls.clock(), os.clock()
    if not ok and is_interrupt(err) then return "interrupted" end
    local m = store.machine()
    local rec = {key = j.key, index = j.index, config = j.config, host = m.host, pid = store.pid(),
                 cpu = m.cpu, gemm = m.gemm, blas = m.blas, blas_kernel = m.blas_kernel,
                 threads = ls.get_threads(), attempt = attempt, resumed = job.resumed or false,
                 started = store.iso(started), ended = store.iso(), seconds = t1 - t0,
                 cpu_seconds = c1 - c0, max_rss_mib = store.peak_rss_mib(),
                 worker = opts.worker, process_age = age, process_cpu = cpu}
    if ok then
        rec.rows = job:rows()
        rec.runner_seconds = (t0 - t_enter) + (ls.clock() - t1)
        rec.runner_cpu_seconds = (c0 - c_enter) + (os.clock() - c1)
        store.write_record(p.done, rec)
        os.remove(fs.join(p.dir, jobmod.STATE))   -- job:save's state: the rows are in the record
        remove_leftovers(p.dir)
        return "done", rec
    end
    rec.message = err.message
    rec.traceback = err.traceback
    store.write_record(p.failed, rec)
    return "failed", rec
end

function M.run_jobs(study, jobs, opts)
    opts = opts or {}
    local counts = {done = 0, failed = 0, skipped = 0}
    -- Ctrl-C between jobs (in the runner's own code) stops the loop as cleanly as inside a job
    local ok, err = pcall(function()
        for _, j in ipairs(jobs) do
            if opts.parent and not store.alive(opts.parent) then
                counts.orphaned = true
                return
            end
            local runnable = M.state(study.out, j.key) == nil
            if runnable and opts.claims then runnable = store.claim(fs.join(opts.claims, j.key)) end
            if runnable then
                local status, rec = M.run_job(study, j, opts, counts.done + counts.failed == 0)
                if status == "interrupted" then
                    counts.interrupted = true
                    return
                end
                counts[status] = counts[status] + 1
                if opts.on_job then opts.on_job(status, j, rec) end
            else
                counts.skipped = counts.skipped + 1
            end
        end
    end)
    if not ok then
        if not is_interrupt(err) then error(err, 0) end
        counts.interrupted = true
    end
    return counts
end

--- Remove the failure records of `jobs` (--retry-failed), so that they run again.
function M.forget_failures(out, jobs)
    for _, j in ipairs(jobs) do
        local p = M.paths(out, j.key)
        if store.exists(p.failed) and not store.exists(p.done) then
            local ok, err = os.remove(p.failed)
            if not ok then error("study: cannot remove " .. p.failed .. ": " .. tostring(err), 0) end
        end
    end
end

return M
