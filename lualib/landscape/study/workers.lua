--- landscape.study.workers: a study on this machine, in this process or in N worker processes, with
-- one progress display.
--
-- workers.run(study, opts) runs every unfinished job and returns {done =, failed =, interrupted =}
-- for the jobs run now. opts:
--   jobs = 1         worker processes; 1 runs the jobs in this process
--   threads          engine threads per worker (set by the caller in this process)
--   command          (jobs > 1) the command that starts a worker, as a list of words; the runner
--                    appends --worker I --run DIR --parent PID
--   display          "tty" (one line redrawn), "log" (a line per finished job) or "none";
--                    default "tty" when stdout is a terminal, else "log"
--
-- A run owns OUT/.runs/<pid>/ while it works: workers claim jobs there (mkdir claims/<key>, so each
-- job runs once, longest first), report progress there, and their output goes to OUT/logs/. A second
-- run on the same OUT while one is alive is refused; the directory of a dead run is removed. Ctrl-C:
-- the workers (in the terminal's process group) stop at once without recording their current job,
-- this process waits for them (SIGINT is forwarded to them by pid if they did not get it,
-- SIGKILL after 10 s) and returns with interrupted = true; the next run continues from the records and checkpoints.
local ls = require "landscape"
local fs = require "landscape.io.fs"
local progress = require "landscape.train.progress"
local plan = require "landscape.study.plan"
local runner = require "landscape.study.runner"
local store = require "landscape.study.store"

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local POLL = 0.25

--- Claim OUT/.runs/<pid> for this run; refuse when another live run holds the study.
local function open_run(out)
    local runs = fs.join(out, ".runs")
    for _, name in ipairs(store.entries(runs)) do
        local pid = math.tointeger(tonumber(name))
        if pid and pid ~= store.pid() and store.alive(pid)
            and store.cmdline(pid):find("--out", 1, true) then
            fail("study: another run (pid %d) is working on %s; wait for it or stop it", pid, out)
        end
        store.remove_tree(fs.join(runs, name))
    end
    local dir = fs.join(runs, tostring(store.pid()))
    local ok, err = fs.mkdir_p(fs.join(dir, "claims"))
    if not ok then fail("study: %s", err) end
    assert(fs.mkdir_p(fs.join(dir, "progress")))
    return dir
end

-- ---- the display ----

local Display = {}
Display.__index = Display

local function describe(cfg, columns)
    local parts = {}
    for _, k in ipairs(columns) do
        local v = cfg[k]
        if type(v) == "table" then v = table.concat(v, ",") end
        parts[#parts + 1] = k .. "=" .. tostring(v)
    end
    return table.concat(parts, " ")
end

local function new_display(study, jobs, costs, mode, run_dir)
    local d = setmetatable({study = study, jobs = jobs, costs = costs, mode = mode,
                            run_dir = run_dir, start = ls.clock(), state = {}, total = #jobs,
                            done = 0, failed = 0, cost_now = 0, finished_now = 0,
                            columns = study.grid:columns(), last_draw = -math.huge}, Display)
    for i, j in ipairs(jobs) do
        local s = runner.state(study.out, j.key)
        d.state[i] = s
        if s == "done" then d.done = d.done + 1 elseif s == "failed" then d.failed = d.failed + 1 end
    end
    d.initial_done = d.done
    return d
end

-- The remaining cost, less the reported progress of running jobs.
function Display:eta(running_frac)
    local remaining = 0
    for i, j in ipairs(self.jobs) do
        if not self.state[i] then
            remaining = remaining + self.costs[i] * (1 - (running_frac[j.key] or 0))
        end
    end
    local elapsed = ls.clock() - self.start
    local worked = self.cost_now
    for k, f in pairs(running_frac) do
        for i, j in ipairs(self.jobs) do
            if j.key == k and not self.state[i] then worked = worked + f * self.costs[i] end
        end
    end
    if worked <= 0 or elapsed <= 0 then return math.huge end
    return remaining * elapsed / worked
end

function Display:line(running, eta)
    return string.format("%s  %d/%d done  %d failed  %d running  %s  eta %s", self.study.name,
                         self.done, self.total, self.failed, running,
                         progress.format_time(ls.clock() - self.start), progress.format_time(eta))
end

-- Look for newly finished jobs; print a log line for each (log mode) or redraw (tty mode).
function Display:poll(running)
    local fracs = {}
    if self.run_dir then
        for _, name in ipairs(store.entries(fs.join(self.run_dir, "progress"))) do
            local ok, r = pcall(store.read_record, fs.join(self.run_dir, "progress", name))
            if ok and type(r) == "table" and r.key then fracs[r.key] = r.fraction end
        end
    end
    for i, j in ipairs(self.jobs) do
        if not self.state[i] then
            local s = runner.state(self.study.out, j.key)
            if s then self:finished(i, s) end
        end
    end
    if self.mode == "tty" then
        local now = ls.clock()
        if now - self.last_draw >= 0.2 then
            self.last_draw = now
            io.stdout:write("\r", self:line(running or 0, self:eta(fracs)), "\27[K")
            io.stdout:flush()
        end
    end
    self.fracs = fracs
end

function Display:finished(i, s)
    local j = self.jobs[i]
    self.state[i] = s
    if s == "done" then self.done = self.done + 1 else self.failed = self.failed + 1 end
    self.cost_now = self.cost_now + self.costs[i]
    self.finished_now = self.finished_now + 1
    if self.mode ~= "log" then return end
    local p = runner.paths(self.study.out, j.key)
    local ok, rec = pcall(store.read_record, s == "done" and p.done or p.failed)
    rec = ok and rec or {}
    local what = string.format("[%d/%d] %s %s %s", self.done + self.failed, self.total,
                               s == "done" and "done  " or "FAILED", j.key,
                               describe(j.config, self.columns))
    if rec.seconds then what = what .. string.format("  %.1f s", rec.seconds) end
    if s == "failed" and rec.message then what = what .. ": " .. rec.message:gsub("\n.*", "") end
    what = what .. "  eta " .. progress.format_time(self:eta(self.fracs or {}))
    io.stdout:write(what, "\n")
    io.stdout:flush()
end

function Display:close()
    if self.mode == "tty" then
        io.stdout:write("\r", self:line(0, 0), "\27[K\n")
        io.stdout:flush()
    end
end

-- ---- worker processes ----

local function spawn(command, index, run_dir, log)
    local words = {}
    for i, w in ipairs(command) do words[i] = store.q(w) end
    words[#words + 1] = "--worker " .. index .. " --run " .. store.q(run_dir) .. " --parent "
        .. store.pid()
    local sh = "echo $$; exec " .. table.concat(words, " ") .. " >>" .. store.q(log) .. " 2>&1"
    local p = io.popen(sh, "r")
    if not p then fail("study: cannot start a worker: %s", sh) end
    local pid = math.tointeger(tonumber(p:read("l") or ""))
    if not pid then
        p:close()
        fail("study: cannot start a worker: %s", sh)
    end
    return {pid = pid, handle = p, index = index, log = log}
end

local function reap(w)
    if w.handle then
        local ok, how, code = w.handle:close()
        w.handle = nil
        w.status = ok and 0 or (how == "signal" and 128 + code or code)
    end
end

local function signal(workers, sig)
    local pids = {}
    for _, w in ipairs(workers) do
        if w.handle and store.alive(w.pid) then pids[#pids + 1] = w.pid end
    end
    if #pids > 0 then
        os.execute("kill -" .. sig .. " " .. table.concat(pids, " ") .. " 2>/dev/null")
    end
end

local function all_exited(workers)
    local n = 0
    for _, w in ipairs(workers) do
        if w.handle and not store.alive(w.pid) then reap(w) end
        if w.handle then n = n + 1 end
    end
    return n == 0, n
end

function M.run(study, jobs, opts)
    local n = opts.jobs or 1
    local costs = plan.costs(jobs, study.cost)
    local ordered = plan.order(jobs, costs)
    local run_dir = open_run(study.out)
    local mode = opts.display or (progress.is_tty(1) and "tty" or "log")
    local display = new_display(study, jobs, costs, mode, run_dir)
    local claims = fs.join(run_dir, "claims")
    local result = {}
    if n <= 1 then
        local counts = runner.run_jobs(study, ordered, {
            claims = claims, worker = "main",
            progress_path = fs.join(run_dir, "progress", "main"),
            on_job = function() display:poll(1) end})
        result.interrupted = counts.interrupted
    else
        local logs = fs.join(study.out, "logs")
        assert(fs.mkdir_p(logs))
        local workers = {}
        local ok, err = pcall(function()
            for i = 1, n do
                workers[i] = spawn(opts.command, i, run_dir, fs.join(logs, "worker-" .. i .. ".log"))
            end
            while true do
                local done, alive = all_exited(workers)
                display:poll(alive)
                if done then break end
                -- at the tail (no more jobs than workers left), poll faster to notice the end
                local left = display.total - display.done - display.failed
                store.sleep(left <= n and POLL / 5 or POLL)
            end
        end)
        if not ok then
            if not runner.is_interrupt(err) then
                signal(workers, "TERM")
                error(err, 0)
            end
            result.interrupted = true
            io.stdout:write("\n", study.name, ": interrupted; stopping the workers\n")
            io.stdout:flush()
            signal(workers, "INT")
            local t0 = ls.clock()
            while not all_exited(workers) and ls.clock() - t0 < 10 do store.sleep(0.1) end
            signal(workers, "KILL")
            while not all_exited(workers) do store.sleep(0.05) end
        end
        for _, w in ipairs(workers) do
            reap(w)
            if w.status and w.status ~= 0 and w.status ~= 130 and not result.interrupted then
                result.worker_errors = (result.worker_errors or 0) + 1
                io.stderr:write(string.format("%s: worker %d exited with status %d; see %s\n",
                                              study.name, w.index, w.status, w.log))
            end
        end
    end
    display:poll(0)
    display:close()
    store.remove_tree(run_dir)
    result.done = display.done
    result.failed = display.failed
    result.total = display.total
    result.done_now = display.done - display.initial_done
    return result
end

--- The worker side (--worker I --run DIR --parent PID): take jobs from the shared order until none is
-- left, the runner is gone or Ctrl-C.
function M.work(study, jobs, opts)
    local costs = plan.costs(jobs, study.cost)
    return runner.run_jobs(study, plan.order(jobs, costs), {
        claims = fs.join(opts.run, "claims"), parent = opts.parent, worker = "worker-" .. opts.worker,
        progress_path = fs.join(opts.run, "progress", "worker-" .. opts.worker)})
end

return M
