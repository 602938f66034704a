--- landscape.study (ls.study): experiment grids as resumable jobs, on local workers, as shards, or as
-- a Slurm job array; then one tidy CSV. docs/study-runner.md is the guide.
--
--   local study = ls.study{
--     name = "widths",
--     grid = ls.study.grid{width = {64, 256}, noise = {0, 0.3}, seed = {1, 2, 3}},
--     run = function(cfg, job)             -- job: checkpoint path, rows, state, progress, log
--       ...
--       job:row{train_acc = ..., test_acc = ...}          -- config columns are added for you
--     end}
--   study:main(arg)
--
-- ls.study{...} keys:
--   name      the study's name (letters, digits, '_', '-', '.'): the merged files are OUT/<name>.csv
--             and OUT/<name>.manifest.json; required
--   grid      a grid (ls.study.grid), or a function(opts) -> grid of the parsed options; required
--   run       function(cfg, job): one job (see landscape.study.job for `job`); required. An error is
--             the job's failure, recorded with its message; the other jobs go on.
--   out       the default output directory (--out overrides it); default none: --out is required
--   cost      function(cfg) -> a positive number, the job's relative cost: local workers take the
--             costliest jobs first and shards get equal total cost; default 1 for every job
--   columns   the result columns that come first in the merged CSV, in this order (the others
--             follow sorted); default none
--   options   the script's own command-line options, as in ls.study.args.parser; they reach run
--             as job.opts and the grid function as its argument, and go to every worker and shard
--   actions   name -> function(study, opts): extra commands, each a flag (--analyze); default none
--
-- study:main(arg) parses the command line and does what it says (it exits with the status of
-- study:command(arg) when that is not 0):
--   (no action)        run every unfinished job here: --jobs N worker processes (default 1: in this
--                      process), each with --threads T engine threads (default 1); a progress line
--                      on a terminal, a log line per job otherwise; then merge when every job has
--                      finished. Ctrl-C stops the run; the next one continues where it stopped.
--   --shard K/N        run the unfinished jobs of shard K (0 <= K < N) here, one after the other
--   --slurm            submit the unfinished shards as a job array and a dependent merge job
--                      (--shards N, --array-limit L, --partition P, --time T)
--   --status           done / running / failed / missing jobs, missing shards, Slurm's view
--   --merge            the merged CSV and manifest (--partial: even with unfinished jobs)
--   --retry-failed     run failed jobs again (with no action, --shard or --slurm)
-- Exit status: 0; 1 when a job failed (or merge found unfinished jobs); 2 for a bad command line;
-- 130 after Ctrl-C.
local ls = require "landscape"
local fs = require "landscape.io.fs"
local util = require "landscape.util"
local args = require "landscape.study.args"
local grid = require "landscape.study.grid"
local merge = require "landscape.study.merge"
local plan = require "landscape.study.plan"
local runner = require "landscape.study.runner"
local serial = require "landscape.study.serial"
local slurm = require "landscape.study.slurm"
local store = require "landscape.study.store"
local workers = require "landscape.study.workers"

local M = {}

local fail = util.fail
local check_settings

local RUNNER_OPTIONS = {
    {"out", nil, "output directory", type = "string", column = false},
    {"jobs", 1, "worker processes (1: run in this process)", min = 1, column = false},
    {"threads", 1, "engine threads per worker, shard or Slurm task", min = 1, column = false},
    {"shard", nil, "run shard K of N (0 <= K < N) here", type = "string", column = false},
    {"slurm", false, "submit the unfinished shards to Slurm, then a merge job", column = false},
    {"shards", nil, "the number of Slurm shards (default: the last submission's, else "
        .. "min(jobs, 64))", type = "integer", min = 1, column = false},
    {"array_limit", nil, "at most this many Slurm tasks at once", type = "integer", min = 1,
        column = false},
    {"partition", nil, "Slurm partition", type = "string", column = false},
    {"time", nil, "Slurm time limit per task (e.g. 0:30:00)", type = "string", column = false},
    {"status", false, "show the state of the jobs", column = false},
    {"merge", false, "write the merged CSV and the manifest", column = false},
    {"partial", false, "merge even when jobs are unfinished", column = false},
    {"retry_failed", false, "run failed jobs again", column = false},
    {"worker", nil, "(internal) worker number", type = "integer", column = false},
    {"run", nil, "(internal) the local run's directory", type = "string", column = false},
    {"parent", nil, "(internal) the local runner's pid", type = "integer", column = false},
}

local Study = {}
Study.__index = Study
Study.__name = "landscape.study.Study"

local KEYS = {name = true, grid = true, run = true, out = true, cost = true, columns = true,
              options = true, actions = true}

local function new(spec)
    util.check_options(spec, KEYS, "study")
    if type(spec) ~= "table" then fail("study: expected a table") end
    if type(spec.name) ~= "string" or not spec.name:match("^[%w_.-]+$") then
        fail("study: 'name' must be a name of letters, digits, '_', '-' or '.', got %s",
             tostring(spec.name))
    end
    if type(spec.run) ~= "function" then fail("study: 'run' must be a function(cfg, job)") end
    local g = spec.grid
    if getmetatable(g) ~= grid.Grid and type(g) ~= "function" then
        fail("study: 'grid' must be a grid (ls.study.grid{...}) or a function(opts) -> grid")
    end
    if spec.out ~= nil and type(spec.out) ~= "string" then fail("study: 'out' must be a path") end
    if spec.cost ~= nil and type(spec.cost) ~= "function" then
        fail("study: 'cost' must be a function(cfg) -> number")
    end
    if spec.columns ~= nil and type(spec.columns) ~= "table" then
        fail("study: 'columns' must be a list of names")
    end
    if spec.actions ~= nil and type(spec.actions) ~= "table" then
        fail("study: 'actions' must be a table of name -> function(study, opts)")
    end
    local parser = args.parser{name = spec.name, usage = "landscape <script> --out DIR [options]"}
    for _, o in ipairs(RUNNER_OPTIONS) do parser:add(o) end
    local own = {}
    for _, o in ipairs(spec.options or {}) do
        parser:add(o)
        own[#own + 1] = (o[1]:gsub("-", "_"))
    end
    for name, fn in pairs(spec.actions or {}) do
        if type(fn) ~= "function" then
            fail("study: action '%s' must be a function", tostring(name))
        end
        parser:add{name, false, "(action)", column = false}
    end
    local s = setmetatable({name = spec.name, out = spec.out, run = spec.run, cost = spec.cost,
                            columns = spec.columns, actions = spec.actions or {}, parser = parser,
                            own_options = own, opts = {}}, Study)
    if type(g) == "function" then s.grid_fn = g else s.grid = g end
    return s
end

--- The jobs (grid:jobs(), cached).
function Study:jobs()
    if not self._jobs then
        if not self.grid then
            fail("study %s: the grid depends on the options: use study:main", self.name)
        end
        self._jobs = self.grid:jobs()
    end
    return self._jobs
end

local function absolute(path)
    if path:sub(1, 1) == "/" then return path end
    return fs.join(store.cwd(), path)
end

-- The command that runs this script again with the same options: the executable, its own options
-- (arg[-k]..arg[-1]), the script, the script's options and --out.
local function command(self, argv, opts, given)
    local script = argv[0]
    if type(script) ~= "string" then
        fail("study:main: arg[0] must be the script (pass the script's `arg` table)")
    end
    local lo = -1
    while argv[lo - 1] ~= nil do lo = lo - 1 end
    local exe = store.executable() or argv[lo]
    local words = {exe}
    for k = lo + 1, -1 do words[#words + 1] = argv[k] end
    words[#words + 1] = absolute(script)
    local names = {}
    for _, n in ipairs(self.own_options) do if given[n] then names[#names + 1] = n end end
    for _, w in ipairs(self.parser:argv(opts, names)) do words[#words + 1] = w end
    words[#words + 1] = "--out"
    words[#words + 1] = absolute(self.out)
    return words
end

local function describe(cfg, columns)
    local parts = {}
    for _, k in ipairs(columns) do
        local v = cfg[k]
        parts[#parts + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v))
    end
    return table.concat(parts, " ")
end

function Study:print_status(jobs, opts)
    local st = merge.status(self, jobs)
    print(string.format("%s: %d jobs: %d done, %d failed, %d running, %d missing  (%s)", self.name,
                        st.total, st.done, st.failed, st.running, st.missing, self.out))
    local cols = self.grid:columns()
    for _, f in ipairs(st.failures) do
        print(string.format("  failed %s (%s): %s", f.job, describe(f.config, cols),
                            tostring(f.message):gsub("\n.*", "")))
    end
    local lines, subs = slurm.status(self)
    local n = opts.shards or (subs[#subs] and subs[#subs].shards)
    if n and st.done + st.failed < st.total then
        print(string.format("  unfinished shards of %d: %s", n,
                            plan.ranges(slurm.unfinished_shards(self, jobs, st.states, n))))
    end
    for _, line in ipairs(lines) do print("  " .. line) end
    return st
end

local function do_merge(self, jobs, partial)
    local csv_path, manifest_path, st = merge.run(self, jobs, {partial = partial})
    print(string.format("%s: merged %d done jobs (%d failed, %d unfinished) into %s; manifest %s",
                        self.name, st.done, st.failed, st.running + st.missing, csv_path,
                        manifest_path))
    return st
end

-- The study's own settings (its options that are columns) must be those OUT was made with: they
-- change what a job computes, while its key depends on its config alone. OUT/study.lua records the
-- name and those settings at the first run.
check_settings = function(self, opts, write)
    local settings = {}
    for _, name in ipairs(self.own_options) do
        if self.parser.by_name[name].column then settings[name] = opts[name] end
    end
    local path = fs.join(self.out, "study.lua")
    local rec = store.read_record(path)
    if rec == nil then
        if write then store.write_record(path, {name = self.name, settings = settings}) end
        return
    end
    if rec.name ~= self.name then
        fail("%s holds the study '%s', not '%s'", self.out, tostring(rec.name), self.name)
    end
    local diffs = {}
    local names = {}
    for k in pairs(settings) do names[#names + 1] = k end
    for k in pairs(rec.settings or {}) do if settings[k] == nil then names[#names + 1] = k end end
    table.sort(names)
    for _, k in ipairs(names) do
        local a, b = rec.settings[k], settings[k]
        if a == nil or b == nil or serial.canonical({a}) ~= serial.canonical({b}) then
            diffs[#diffs + 1] = string.format("--%s %s (now %s)", k:gsub("_", "-"),
                                              a == nil and "unset" or args.format(a),
                                              b == nil and "unset" or args.format(b))
        end
    end
    if #diffs > 0 then
        fail("%s was made with %s: give the same options, or another --out", self.out,
             table.concat(diffs, ", "))
    end
end

--- study:command(argv) -> exit status (see the header); study:main(argv) exits with it.
function Study:command(argv)
    local opts, given = self.parser:try(argv)
    if not opts then
        if given == "help" then
            io.stdout:write(self.parser:usage())
            return 0
        end
        io.stderr:write(self.name, ": ", given, "\n", self.parser:usage())
        return 2
    end
    self.opts = opts
    self.out = opts.out or self.out
    if not self.out then
        io.stderr:write(self.name, ": --out DIR is required\n", self.parser:usage())
        return 2
    end
    if self.grid_fn then
        local g = self.grid_fn(opts)
        if getmetatable(g) ~= grid.Grid then
            fail("study %s: the grid function must return a grid", self.name)
        end
        self.grid, self._jobs = g, nil
    end
    local jobs = self:jobs()
    ls.set_threads(opts.threads)
    local writes = not (opts.status or opts.merge)
    local ok, err = pcall(check_settings, self, opts, writes)
    if not ok then
        io.stderr:write(self.name, ": ", tostring(err), "\n")
        return 2
    end

    if opts.worker then
        if not opts.run or not opts.parent then fail("study: --worker needs --run and --parent") end
        local counts = workers.work(self, jobs, opts)
        return counts.interrupted and 130 or 0
    end
    for name, fn in pairs(self.actions) do
        if opts[name] then
            local code = fn(self, opts)
            return math.tointeger(code) or 0
        end
    end
    if opts.status then
        self:print_status(jobs, opts)
        return 0
    end
    if opts.merge then
        local ok, err = pcall(do_merge, self, jobs, opts.partial)
        if not ok then
            io.stderr:write(self.name, ": ", tostring(err), "\n")
            return 1
        end
        return 0
    end
    local words = command(self, argv, opts, given)
    if opts.slurm then
        if opts.retry_failed then runner.forget_failures(self.out, jobs) end
        local sub = slurm.submit(self, jobs, {
            command = words, cwd = store.cwd(), shards = opts.shards, array_limit = opts.array_limit,
            partition = opts.partition, time = opts.time, threads = opts.threads})
        if sub.submitted then
            print(string.format("%s: submitted shards %s of %d as Slurm array %d, merge job %d "
                                .. "(afterany); follow with --status", self.name, sub.indices,
                                sub.shards, sub.array, sub.merge))
        elseif #sub.busy > 0 then
            print(string.format("%s: every unfinished shard is queued or running (%s of %d)",
                                self.name, plan.ranges(sub.busy), sub.shards))
        else
            print(string.format("%s: every job has finished; nothing to submit (--merge merges)",
                                self.name))
        end
        return 0
    end
    if opts.shard then
        local k, n = plan.parse_shard(opts.shard)
        local shard_of = plan.shards(jobs, plan.costs(jobs, self.cost), n)
        local mine = {}
        for i, j in ipairs(jobs) do if shard_of[i] == k then mine[#mine + 1] = j end end
        local cols = self.grid:columns()
        print(string.format("%s: shard %d/%d: %d jobs", self.name, k, n, #mine))
        if opts.retry_failed then runner.forget_failures(self.out, mine) end
        local counts = runner.run_jobs(self, mine, {
            worker = "shard-" .. k .. "/" .. n,
            on_job = function(status, j, rec)
                print(string.format("%s %s %s  %.1f s%s", status, j.key, describe(j.config, cols),
                                    rec and rec.seconds or 0,
                                    status == "failed" and (": " .. rec.message) or ""))
                io.stdout:flush()
            end})
        if counts.interrupted then return 130 end
        local failed = 0
        for _, j in ipairs(mine) do
            if runner.state(self.out, j.key) == "failed" then failed = failed + 1 end
        end
        print(string.format("%s: shard %d/%d: %d run, %d skipped, %d failed", self.name, k, n,
                            counts.done + counts.failed, counts.skipped, failed))
        return failed > 0 and 1 or 0
    end

    if opts.retry_failed then runner.forget_failures(self.out, jobs) end
    local worker_words = {table.unpack(words)}
    worker_words[#worker_words + 1] = "--threads"
    worker_words[#worker_words + 1] = tostring(opts.threads)
    local res = workers.run(self, jobs, {jobs = opts.jobs, command = worker_words})
    if res.interrupted then
        print(string.format("%s: stopped with %d/%d jobs done; run the same command to continue",
                            self.name, res.done, res.total))
        return 130
    end
    print(string.format("%s: %d jobs: %d done (%d now), %d failed", self.name, res.total, res.done,
                        res.done_now, res.failed))
    if res.done + res.failed == res.total then do_merge(self, jobs, false) end
    if res.failed > 0 then
        print(string.format("%s: %d jobs failed; --status lists them, --retry-failed runs them again",
                            self.name, res.failed))
        return 1
    end
    if res.worker_errors then return 1 end
    return 0
end

function Study:main(argv)
    local code = self:command(argv or arg)
    if code ~= 0 then os.exit(code) end
end

M.grid = setmetatable({key = grid.key, derive_seed = grid.derive_seed, Grid = grid.Grid},
                      {__call = function(_, spec, opts)
                          local ok, g = pcall(grid.new, spec, opts)
                          if not ok then error(g, 2) end
                          return g
                      end})
M.key = grid.key
M.derive_seed = grid.derive_seed
M.args = args
M.Study = Study

--- ls.study{name, grid, run [, out, cost, columns, options, actions]} -> study
-- A study: a grid of configurations run as resumable jobs (local workers, shards or a Slurm array)
-- whose rows merge into one tidy CSV; study:main(arg) does what the command line says. The keys are
-- in this module's header.
-- e.g. local s = ls.study{name = "w", grid = ls.study.grid{width = {64, 256}},
--          run = function(cfg, job) job:row{acc = 1} end}
return setmetatable(M, {__call = function(_, spec)
    local ok, s = pcall(new, spec)
    if not ok then error(s, 2) end
    return s
end})
