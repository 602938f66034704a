--- landscape.study.slurm: a study as a Slurm job array of shards, then a dependent merge job.
--
-- slurm.submit(study, jobs, opts) writes OUT/slurm/array.sbatch and OUT/slurm/merge.sbatch and submits
-- them: `sbatch --array=<shards>%<limit> array.sbatch`, then the merge with
-- `--dependency=afterany:<array> --kill-on-invalid-dep=yes` (afterany because a shard whose jobs
-- failed exits non-zero, and the merge itself checks that every job is done or failed). Each task
-- runs `<command> --shard $SLURM_ARRAY_TASK_ID/N`: N is written into the script, never read from
-- SLURM_ARRAY_TASK_COUNT (after a partial resubmission that counts only the resubmitted tasks).
-- Only the shards that hold an unfinished job, and that are not queued or running from an earlier
-- submission of this study, are submitted; submissions are recorded in OUT/slurm/submissions.lua.
-- opts:
--   command      the words of the shard command (the executable, the script, its options, --out)
--   cwd          the directory the tasks run in
--   shards       N (default: the N of the last submission, else min(#jobs, 64))
--   array_limit  at most this many tasks at once (sbatch's %limit; default none)
--   partition, time   passed to sbatch (default: the cluster's)
--   threads      CPUs per task and --threads of the shard command (default 1)
--
-- slurm.status(study) -> lines describing the recorded submissions: array tasks pending/running
-- (squeue -r), the merge job's state (scontrol show job); {} when nothing was submitted.
local fs = require "landscape.io.fs"
local merge = require "landscape.study.merge"
local plan = require "landscape.study.plan"
local store = require "landscape.study.store"

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local function run(cmd)
    local p = io.popen(cmd .. " 2>&1", "r")
    if not p then return nil, "cannot run " .. cmd end
    local out = p:read("a")
    local ok = p:close()
    return ok and out or nil, out
end

local function submissions_path(study) return fs.join(study.out, "slurm", "submissions.lua") end

function M.submissions(study)
    return store.read_record(submissions_path(study)) or {}
end

--- The array task indices of `jid` that squeue lists as pending or running: {index -> state}.
local function active_tasks(jid)
    local out = {}
    local text = run("squeue -h -r -j " .. math.tointeger(jid) .. " -o '%K %T %r'")
    for line in (text or ""):gmatch("[^\n]+") do
        local k, state, reason = line:match("^(%d+)%s+(%S+)%s*(.*)$")
        if k then out[math.tointeger(tonumber(k))] = {state = state, reason = reason} end
    end
    return out
end

--- `scontrol -o show job <id>`'s fields for a (non-array) job, or nil when Slurm no longer lists it.
local function show_job(id)
    local text = run("scontrol -o show job " .. math.tointeger(id))
    if not text then return nil end
    local line = text:match("[^\n]+")
    if not line then return nil end
    local f = {}
    for k, v in line:gmatch("(%w+)=(%S*)") do f[k] = v end
    return f
end

local function script_text(lines) return table.concat(lines, "\n") .. "\n" end

local function command_line(words)
    local q = {}
    for i, w in ipairs(words) do q[i] = store.q(w) end
    return table.concat(q, " ")
end

function M.submit(study, jobs, opts)
    local previous = M.submissions(study)
    local last = previous[#previous]
    local n = opts.shards or (last and last.shards) or math.min(#jobs, 64)
    if n < 1 then fail("slurm: --shards must be at least 1") end
    local st = merge.status(study, jobs)
    local wanted = M.unfinished_shards(study, jobs, st.states, n)
    local active = {}
    for _, sub in ipairs(previous) do
        if sub.shards == n then
            for k in pairs(active_tasks(sub.array)) do active[k] = sub.array end
        end
    end
    local list, busy = {}, {}
    for _, k in ipairs(wanted) do
        if active[k] then busy[#busy + 1] = k else list[#list + 1] = k end
    end
    if #list == 0 then
        return {submitted = false, busy = busy, shards = n}
    end

    local slurm_dir = fs.join(study.out, "slurm")
    local logs = fs.join(study.out, "logs")
    assert(fs.mkdir_p(logs))
    local threads = opts.threads or 1
    local header = {"#!/bin/bash", "#SBATCH --job-name=" .. study.name}
    if opts.partition then header[#header + 1] = "#SBATCH --partition=" .. opts.partition end
    if opts.time then header[#header + 1] = "#SBATCH --time=" .. opts.time end
    local array = {table.unpack(header)}
    array[#array + 1] = "#SBATCH --output=" .. fs.join(logs, "slurm-%A_%a.out")
    array[#array + 1] = "#SBATCH --cpus-per-task=" .. threads
    array[#array + 1] = string.format("# study %s: shard $SLURM_ARRAY_TASK_ID of %d shards. The shard "
        .. "count is fixed here: SLURM_ARRAY_TASK_COUNT counts only the tasks of one submission.",
        study.name, n)
    array[#array + 1] = "cd " .. store.q(opts.cwd)
    local words = {table.unpack(opts.command)}
    words[#words + 1] = "--threads"
    words[#words + 1] = tostring(threads)
    array[#array + 1] = "exec " .. command_line(words) .. ' --shard "$SLURM_ARRAY_TASK_ID/' .. n .. '"'
    local mrg = {table.unpack(header)}
    mrg[#mrg + 1] = "#SBATCH --output=" .. fs.join(logs, "slurm-merge-%j.out")
    mrg[#mrg + 1] = "#SBATCH --cpus-per-task=1"
    mrg[#mrg + 1] = "cd " .. store.q(opts.cwd)
    local mwords = {table.unpack(opts.command)}
    mwords[#mwords + 1] = "--merge"
    mrg[#mrg + 1] = "exec " .. command_line(mwords)
    local array_path = fs.join(slurm_dir, "array.sbatch")
    local merge_path = fs.join(slurm_dir, "merge.sbatch")
    store.write_atomic(array_path, script_text(array))
    store.write_atomic(merge_path, script_text(mrg))

    local spec = plan.ranges(list) .. (opts.array_limit and ("%" .. opts.array_limit) or "")
    local out, err = run("sbatch --parsable --array=" .. spec .. " " .. store.q(array_path))
    local jid = out and math.tointeger(tonumber(out:match("^%s*(%d+)")))
    if not jid then fail("slurm: sbatch failed for %s: %s", array_path, tostring(err)) end
    out, err = run("sbatch --parsable --dependency=afterany:" .. jid .. " --kill-on-invalid-dep=yes "
                   .. store.q(merge_path))
    local mid = out and math.tointeger(tonumber(out:match("^%s*(%d+)")))
    if not mid then
        fail("slurm: sbatch failed for %s (the array %d is submitted): %s", merge_path, jid,
             tostring(err))
    end
    local sub = {array = jid, merge = mid, shards = n, indices = plan.ranges(list),
                 array_limit = opts.array_limit, submitted = store.iso()}
    previous[#previous + 1] = sub
    store.write_record(submissions_path(study), previous)
    sub.submitted = true
    sub.busy = busy
    return sub
end

function M.status(study)
    local lines = {}
    local subs = M.submissions(study)
    for _, sub in ipairs(subs) do
        local tasks = active_tasks(sub.array)
        local counts, reasons = {}, {}
        for _, t in pairs(tasks) do
            counts[t.state] = (counts[t.state] or 0) + 1
            if t.state == "PENDING" and t.reason ~= "" and t.reason ~= "None" then
                reasons[t.reason] = true
            end
        end
        local parts = {}
        for state, c in pairs(counts) do parts[#parts + 1] = c .. " " .. state:lower() end
        table.sort(parts)
        local why = {}
        for r in pairs(reasons) do why[#why + 1] = r end
        table.sort(why)
        lines[#lines + 1] = string.format("slurm array %d (shards %s of %d, submitted %s): %s%s",
            sub.array, sub.indices, sub.shards, sub.submitted,
            #parts > 0 and table.concat(parts, ", ") or "no task queued or running",
            #why > 0 and (" (" .. table.concat(why, ", ") .. ")") or "")
        local f = show_job(sub.merge)
        lines[#lines + 1] = string.format("slurm merge %d: %s", sub.merge, f and
            ((f.JobState or "?") .. (f.Reason and f.Reason ~= "None" and (" (" .. f.Reason .. ")")
                                     or "") .. (f.ExitCode and (" exit " .. f.ExitCode) or ""))
            or "no longer listed by scontrol")
    end
    return lines, subs
end

--- The shards (of n) that hold an unfinished job (states from merge.status), as a sorted list.
function M.unfinished_shards(study, jobs, states, n)
    local shard_of = plan.shards(jobs, plan.costs(jobs, study.cost), n)
    local seen = {}
    for i, s in ipairs(states) do
        if s == "missing" or s == "running" then
            seen[shard_of[i]] = true
        end
    end
    local list = {}
    for k = 0, n - 1 do if seen[k] then list[#list + 1] = k end end
    return list
end

return M
