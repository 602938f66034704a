--- landscape.study.merge: the study's one tidy CSV and its manifest, and the status of its jobs.
--
-- merge.run(study, jobs, opts) writes OUT/<name>.csv: one row per row of every done job, in grid
-- order (then the job's own row order), with every config column first (the grid's column order;
-- a list value as "a,b"), then `job` (the job key), then the result columns (study.columns first,
-- then the others sorted). The bytes depend only on the results, never on which process, shard,
-- machine or order produced them. It also writes OUT/<name>.manifest.json: the engine version and
-- commit, the machines (host, CPU, GEMM path, BLAS library and kernel, threads) with their job counts,
-- the first start and last end, statistics of the job times (wall and CPU), of the workers' peak
-- RSS at each job's end and of the runner's own time, and every failure with its message.
-- Jobs that are neither done nor failed make it an error unless opts.partial (then they are listed
-- in the manifest as missing). Returns the CSV path, the manifest path and the status.
--
-- merge.status(study, jobs) -> {total, done, failed, running, missing, failures = {...},
--                              missing_keys = {...}}: running = started on this host by a process
-- that is still alive; missing = the rest of the unfinished jobs.
local csv = require "landscape.io.csv"
local fs = require "landscape.io.fs"
local ls = require "landscape"
local runner = require "landscape.study.runner"
local serial = require "landscape.study.serial"
local store = require "landscape.study.store"

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function git(dir, args)
    local p = io.popen("git -C " .. store.q(dir) .. " " .. args .. " 2>/dev/null", "r")
    if not p then return nil end
    local s = p:read("a")
    local ok = p:close()
    return ok and s or nil
end

--- The engine's version, and the git commit of the source tree this Lua code was loaded from (with
-- "dirty" when tracked files differ from it), when that tree is a git checkout.
function M.engine()
    local path = package.searchpath("landscape.study", package.path)
    local dir = path and fs.dirname(path) or "."
    local commit = git(dir, "rev-parse HEAD")
    commit = commit and commit:match("%x+")
    local dirty = nil
    if commit then
        local st = git(dir, "status --porcelain --untracked-files=no")
        dirty = st ~= nil and st ~= ""
    end
    return {version = ls.version, commit = commit, dirty = dirty, lua = _VERSION}
end

function M.status(study, jobs)
    local st = {total = #jobs, done = 0, failed = 0, running = 0, missing = 0,
                failures = serial.array(), missing_keys = {}, records = {}, states = {}}
    local host = store.hostname()
    for i, j in ipairs(jobs) do
        local p = runner.paths(study.out, j.key)
        local s = runner.state(study.out, j.key)
        if s == "done" then
            st.done = st.done + 1
            st.records[i] = store.read_record(p.done)
        elseif s == "failed" then
            st.failed = st.failed + 1
            local r = store.read_record(p.failed)
            st.records[i] = r
            st.failures[#st.failures + 1] = {job = j.key, index = j.index, config = j.config,
                                             message = r.message, attempt = r.attempt}
        else
            local r = store.read_record(p.started)
            if r and r.host == host and store.alive(r.pid) then
                s = "running"
                st.running = st.running + 1
            else
                s = "missing"
                st.missing = st.missing + 1
            end
            st.missing_keys[#st.missing_keys + 1] = j.key
        end
        st.states[i] = s
    end
    return st
end

local function cell(v)
    if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = tostring(x) end
        return table.concat(parts, ",")
    end
    return v
end

local function stats(v)
    if #v == 0 then return nil end
    local s = {}
    for i, x in ipairs(v) do s[i] = x end
    table.sort(s)
    local sum = 0
    for _, x in ipairs(s) do sum = sum + x end
    local n = #s
    local median = n % 2 == 1 and s[(n + 1) // 2] or 0.5 * (s[n // 2] + s[n // 2 + 1])
    return {n = n, sum = sum, min = s[1], median = median, max = s[n], mean = sum / n}
end

function M.paths(study)
    return fs.join(study.out, study.name .. ".csv"), fs.join(study.out, study.name .. ".manifest.json")
end

function M.run(study, jobs, opts)
    opts = opts or {}
    local st = M.status(study, jobs)
    local unfinished = st.running + st.missing
    if unfinished > 0 and not opts.partial then
        local list = {}
        for i = 1, math.min(5, #st.missing_keys) do list[i] = st.missing_keys[i] end
        fail("merge: %d of %d jobs are not finished (%s%s); run them first, or merge with --partial",
             unfinished, st.total, table.concat(list, ", "), #st.missing_keys > 5 and ", ..." or "")
    end
    local config_cols = study.grid:columns()
    local is_config = {job = true}
    for _, k in ipairs(config_cols) do is_config[k] = true end
    local result_seen, result_cols = {}, {}
    for _, k in ipairs(study.columns or {}) do
        if not result_seen[k] then
            result_seen[k] = true
            result_cols[#result_cols + 1] = k
        end
    end
    local extra = {}
    local rows = {}
    local seconds, cpu_seconds, rss, runner_seconds, runner_cpu, machines = {}, {}, {}, {}, {}, {}
    local first, last
    for i, j in ipairs(jobs) do
        local rec = st.records[i]
        if rec then
            first = (first == nil or rec.started < first) and rec.started or first
            last = (last == nil or rec.ended > last) and rec.ended or last
            local fields = {"host", "cpu", "gemm", "blas", "blas_kernel", "threads"}
            local parts = {}
            for i, k in ipairs(fields) do parts[i] = tostring(rec[k]) end
            local m = table.concat(parts, "|")
            if not machines[m] then
                machines[m] = {jobs = 0}
                for _, k in ipairs(fields) do machines[m][k] = rec[k] end
            end
            machines[m].jobs = machines[m].jobs + 1
        end
        if st.states[i] == "done" then
            seconds[#seconds + 1] = rec.seconds
            cpu_seconds[#cpu_seconds + 1] = rec.cpu_seconds
            rss[#rss + 1] = rec.max_rss_mib
            runner_seconds[#runner_seconds + 1] = rec.runner_seconds
            runner_cpu[#runner_cpu + 1] = rec.runner_cpu_seconds
            for _, r in ipairs(rec.rows) do
                local row = {job = j.key}
                for _, k in ipairs(config_cols) do row[k] = cell(j.config[k]) end
                for k, v in pairs(r) do
                    if is_config[k] then
                        fail("merge: job %s: result column '%s' is also a config column", j.key, k)
                    end
                    row[k] = v
                    if not result_seen[k] then
                        result_seen[k] = true
                        extra[#extra + 1] = k
                    end
                end
                rows[#rows + 1] = row
            end
        end
    end
    table.sort(extra)
    local columns = {}
    for _, k in ipairs(config_cols) do columns[#columns + 1] = k end
    columns[#columns + 1] = "job"
    for _, k in ipairs(result_cols) do columns[#columns + 1] = k end
    for _, k in ipairs(extra) do columns[#columns + 1] = k end

    local csv_path, manifest_path = M.paths(study)
    local tmp = store.temp_beside(csv_path)
    csv.write(tmp, rows, {columns = columns})
    store.rename(tmp, csv_path)

    local machine_list = serial.array()
    local keys = {}
    for k in pairs(machines) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do machine_list[#machine_list + 1] = machines[k] end
    local missing = serial.array()
    for i, k in ipairs(st.missing_keys) do missing[i] = k end
    local manifest = {
        study = study.name,
        csv = fs.basename(csv_path),
        columns = serial.array(columns),
        config_columns = serial.array(config_cols),
        engine = M.engine(),
        merged_by = store.machine(),
        machines = machine_list,
        jobs = {total = st.total, done = st.done, failed = st.failed,
                missing = st.running + st.missing},
        rows = #rows,
        started = first,
        ended = last,
        merged = store.iso(),
        job_seconds = stats(seconds),
        job_cpu_seconds = stats(cpu_seconds),
        max_rss_mib = stats(rss),
        runner_seconds = stats(runner_seconds),
        runner_cpu_seconds = stats(runner_cpu),
        failures = st.failures,
        missing = missing,
    }
    store.write_atomic(manifest_path, serial.json(manifest))
    return csv_path, manifest_path, st
end

return M
