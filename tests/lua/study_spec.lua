-- Specs of the study runner (lualib/landscape/study/): grids and job keys, the argument parser, job
-- records, then the runner driven as a user drives it, through the `landscape` executable on the test
-- study tests/study/counter_study.lua (24 deterministic jobs that checkpoint with job:save): local
-- workers, shards by hand, failures and --retry-failed, Ctrl-C, and the kill test (SIGKILL at random
-- moments, 20 times in a row; the merged CSV must equal an uninterrupted run's bit for bit).
local ls = require "landscape"
local study = require "landscape.study"
local serial = require "landscape.study.serial"
local plan = require "landscape.study.plan"
local store = require "landscape.study.store"
local runner = require "landscape.study.runner"

local h = require "study_helpers"
local q, read_file, tmpdir, landscape = h.q, h.read_file, h.tmpdir, h.landscape

teardown(h.cleanup)

-- Starts the same in its own session (so that its process group can be signalled as a terminal
-- would, or killed whole) and returns its pid.
local function start(args, log)
    local p = io.popen(string.format(
        "env -u LD_PRELOAD setsid %s %s%s %s </dev/null >%s 2>&1 & echo $!",
        q(h.BIN), q(h.SCRIPT), h.WORK, args, q(log)), "r")
    local pid = math.tointeger(tonumber(p:read("l")))
    p:close()
    return pid
end

-- The processes of process group `pgid` that have not exited.
local function group_members(pgid)
    local out = {}
    for _, name in ipairs(store.entries("/proc")) do
        local pid = math.tointeger(tonumber(name))
        local stat = pid and read_file("/proc/" .. pid .. "/stat")
        if stat then
            local state, pg = stat:match("^%d+ %(.*%) (%a) %d+ (%d+)")
            if state and state ~= "Z" and tonumber(pg) == pgid then out[#out + 1] = pid end
        end
    end
    return out
end

local function wait_gone(pgid, seconds)
    local t0 = ls.clock()
    while #group_members(pgid) > 0 do
        if ls.clock() - t0 > seconds then return false end
        store.sleep(0.02)
    end
    return true
end

local count_done = h.count_done

describe("study.serial", function()
    it("writes a canonical text for a configuration: sorted keys, 1 and 1.0 alike", function()
        assert.are.equal('{a=1,b="x",c={1,2.5},d=true}',
                         serial.canonical({d = true, c = {1, 2.5}, b = "x", a = 1.0}))
        assert.are.equal(serial.canonical({x = 3}), serial.canonical({x = 3.0}))
        assert.are_not.equal(serial.canonical({x = 0.1}), serial.canonical({x = 0.1 + 1e-17 * 3}))
        assert.are.equal("{x=0.1}", serial.canonical({x = 0.1}))
        assert.has_error(function() serial.canonical({f = print}) end)
    end)

    it("encodes values that read back equal, subtypes and NaN included", function()
        local v = {i = 3, f = 3.0, g = 0.1, h = 1 / 3, big = 2 ^ 70, neg = -0.0, inf = math.huge,
                   ninf = -math.huge, s = "a\n\"b\0", t = true, list = {1, "x", {y = 2}},
                   ["odd key"] = 1, mi = math.mininteger}
        local back = serial.decode(serial.encode(v))
        for k, x in pairs(v) do
            if type(x) ~= "table" then
                assert.are.equal(x, back[k])
                assert.are.equal(math.type(x), math.type(back[k]))
            end
        end
        assert.are.equal(1 / v.neg, 1 / back.neg)    -- the sign of zero survives
        assert.are.same(v.list, back.list)
        local nan = serial.decode(serial.encode({n = 0 / 0})).n
        assert.is_true(nan ~= nan)
        assert.is_nil(serial.decode("os.exit(3)"))   -- an empty environment: no os
    end)

    it("hashes with FNV-1a and a mixer: stable digits, different for near strings", function()
        -- FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; the mixer is splitmix64's finaliser
        local h = serial.hash("a")
        assert.are.equal(16, #serial.hex(h))
        assert.are.equal(serial.hex(serial.hash("a")), serial.hex(h))
        assert.are_not.equal(serial.hash("a"), serial.hash("b"))
        local x = 0xaf63dc4c8601ec8c   -- a hex literal wraps to the same 64 bits
        x = (x ~ (x >> 30)) * -4658895280553007687
        x = (x ~ (x >> 27)) * -7723592293110705685
        assert.are.equal(x ~ (x >> 31), h)
    end)

    it("writes JSON with sorted keys, escapes, null for NaN, [] for a marked empty array", function()
        local text = serial.json({b = {1, 2}, a = "x\"\n", n = 0 / 0, e = serial.array(), o = {}})
        assert.are.equal('{\n  "a": "x\\"\\n",\n  "b": [\n    1,\n    2\n  ],\n  "e": [],\n'
                         .. '  "n": null,\n  "o": {}\n}\n', text)
    end)
end)

describe("study.grid", function()
    it("builds a full factorial, first column of the order slowest", function()
        local g = study.grid({width = {64, 256}, noise = {0, 0.3}, seed = {1, 2, 3}},
                             {order = {"width", "noise"}})
        assert.are.equal(12, #g)
        local c = g:cells()
        assert.are.same({width = 64, noise = 0, seed = 1}, c[1])
        assert.are.same({width = 64, noise = 0, seed = 2}, c[2])
        assert.are.same({width = 64, noise = 0.3, seed = 1}, c[4])
        assert.are.same({width = 256, noise = 0.3, seed = 3}, c[12])
        assert.are.same({"width", "noise", "seed"}, g:columns())
        -- without an order: sorted names
        assert.are.same({"a", "b"}, study.grid{b = {1, 2}, a = 1}:columns())
    end)

    it("takes explicit lists, constants, list values; filters, products and sums", function()
        local g = study.grid{{w = 1, d = 2}, {w = 3, d = 4, bn = true}}
        assert.are.equal(2, #g)
        assert.are.same({"bn", "d", "w"}, g:columns())
        local h = study.grid{hidden = {{64, 64}, {128}}, epochs = 5}
        assert.are.same({hidden = {128}, epochs = 5}, h:cells()[2])
        local p = study.grid{a = {1, 2}} * study.grid{b = {"x", "y", "z"}}
        assert.are.equal(6, #p)
        assert.are.same({a = 2, b = "x"}, p:cells()[4])
        assert.are.equal(8, #(p + g))
        local f = p:filter(function(c) return c.b ~= "y" end)
        assert.are.equal(4, #f)
        local e = p:exclude(function(c) return c.a == 1 end)
        assert.are.equal(3, #e)
        local d = e:derive("lr", function(c) return 0.1 * c.a end)
        assert.are.equal(0.2, d:cells()[1].lr)
    end)

    it("gives each job a key that depends on its configuration only", function()
        local g1 = study.grid{a = {1, 2}, b = {3, 4}}
        local g2 = study.grid({b = {4, 3}, a = {2, 1}}, {order = {"b"}})
        local k1, k2 = {}, {}
        for _, j in ipairs(g1:jobs()) do k1[j.key] = serial.canonical(j.config) end
        for _, j in ipairs(g2:jobs()) do k2[j.key] = serial.canonical(j.config) end
        assert.are.same(k1, k2)
        assert.are.equal(study.key{a = 1, b = 3}, study.key{b = 3, a = 1.0})
        assert.are.equal(serial.hex(serial.hash('{a=1,b=3}')), study.key{a = 1, b = 3})
        assert.matches("^%x+$", study.key{a = 1})
        assert.are.equal(16, #study.key{a = 1})
    end)

    it("derives seeds that are stable, distinct and depend on the other columns", function()
        local g = study.grid{a = {1, 2, 3}, rep = {1, 2}}:derive_seed("init_seed")
        local seen = {}
        for _, c in ipairs(g:cells()) do
            assert.is_true(math.type(c.init_seed) == "integer" and c.init_seed >= 1
                           and c.init_seed < 2 ^ 31)
            assert.is_nil(seen[c.init_seed])
            seen[c.init_seed] = true
            assert.are.equal(study.derive_seed({a = c.a, rep = c.rep}, "init_seed"), c.init_seed)
        end
        assert.are_not.equal(study.derive_seed({a = 1}, "x"), study.derive_seed({a = 1}, "y"))
    end)

    it("rejects bad grids with messages that name the problem", function()
        assert.has_error(function() study.grid{a = {}} end, "grid: factor 'a' has no levels")
        -- errors point at the caller's line
        local ok, e = pcall(function() local g = study.grid{a = {}}; return g end)
        assert.is_false(ok)
        assert.matches("study_spec%.lua:%d+: grid: factor 'a' has no levels", e)
        ok, e = pcall(function() local g = study.grid{a = {1}}:filter(3); return g end)
        assert.matches("study_spec%.lua:%d+: grid:filter: expected a function", e)
        assert.has_error(function() study.grid{a = {1}, [1] = {a = 2}} end)
        assert.has_error(function() study.grid{job = {1}} end,
                         "grid: the column name 'job' is reserved for the job key")
        assert.has_error(function() study.grid{["bad name"] = 1} end)
        assert.has_error(function() study.grid{a = {print}} end)
        local dup = study.grid{{a = 1}, {a = 1.0}}
        assert.has_error(function() dup:jobs() end,
                         "grid: cells 1 and 2 have the same configuration {a=1}")
        assert.has_error(function() return study.grid{a = {1}} * study.grid{a = {2}} end)
    end)
end)

describe("study.args", function()
    local args = study.args
    local function parser()
        return args.parser{name = "demo", options = {
            {"model", "mlp", "architecture", choices = {"mlp", "cnn"}},
            {"epochs", 10, "passes", min = 1},
            {"lr", nil, "learning rate", type = "number"},
            {"hidden", {512, 512}, "widths"},
            {"augment", false, "crops and flips"},
            {"array_limit", nil, "tasks at once", type = "integer"},
            {"out", "out", "output directory", column = false}}}
    end

    it("parses values, flags, lists, '=' forms and dashes; fills defaults", function()
        local p = parser()
        local o, given = p:try{"--epochs", "5", "--lr=0.25", "--augment", "--hidden", "64,32",
                               "--array-limit", "8"}
        assert.are.equal(5, o.epochs)
        assert.are.equal("integer", math.type(o.epochs))
        assert.are.equal(0.25, o.lr)
        assert.is_true(o.augment)
        assert.are.same({64, 32}, o.hidden)
        assert.are.equal(8, o.array_limit)
        assert.are.equal("mlp", o.model)
        assert.are.same({epochs = true, lr = true, augment = true, hidden = true, array_limit = true},
                        given)
        assert.is_false(p:try{"--augment", "--no-augment"}.augment)
    end)

    it("reports bad arguments with the option's name", function()
        local p = parser()
        local function err(argv) return select(2, p:try(argv)) end
        assert.are.equal("--epochs needs a whole number, got '2.5'", err{"--epochs", "2.5"})
        assert.are.equal("--epochs needs a value >= 1, got '0'", err{"--epochs", "0"})
        assert.are.equal("--model needs one of mlp, cnn, got 'vgg'", err{"--model", "vgg"})
        assert.are.equal("unknown option --epoch", err{"--epoch", "3"})
        assert.are.equal("--lr needs a value", err{"--lr"})
        assert.are.equal("unexpected argument 'x'", err{"x"})
        assert.are.equal("help", err{"--help"})
        local blocker = os.tmpname()
        local d = args.parser{options = {{"out", "out", "output directory", type = "dir"}}}
        assert.are.equal("--out " .. blocker .. "/x: ", select(2, d:try{"--out", blocker .. "/x"})
                         :sub(1, #blocker + 10))
        local fresh = blocker .. ".d/sub"
        assert.is_table(d:try{"--out", fresh})            -- made when missing
        assert.is_true(require("landscape.io.fs").isdir(fresh))
        os.remove(fresh); os.remove(blocker .. ".d"); os.remove(blocker)
        assert.has_error(function() args.parser{options = {{"x", nil, "no type"}}} end,
                         "args.parser: option 'x' has no default: give its type")
        assert.has_error(function() args.parser{options = {{"x", 1, "", typo = 1}}} end)
    end)

    it("prints a usage line per option with its default", function()
        local u = parser():usage()
        assert.matches("^usage: landscape demo%.lua %[options%]\n", u)
        assert.truthy(u:find("--model mlp|cnn", 1, true))
        assert.truthy(u:find("passes (default 10)", 1, true))
        assert.truthy(u:find("widths (default 512,512)", 1, true))
    end)

    it("makes settings columns and rows, and the arguments that reproduce options", function()
        local p = parser()
        local o = p:try{"--lr", "0.1", "--hidden", "7"}
        assert.are.same({"model", "epochs", "lr", "hidden", "augment", "array_limit", "loss"},
                        p:columns{"loss"})
        local row = p:row(o, {loss = 0.5})
        assert.are.same({model = "mlp", epochs = 10, lr = 0.1, hidden = "7", augment = false,
                         array_limit = "", loss = 0.5}, row)
        assert.has_error(function() p:row(o, {epochs = 1}) end)
        assert.are.same({"--lr", "0.1", "--hidden", "7"}, p:argv(o))
        local again = p:try(p:argv(o))
        assert.are.same(o, again)
        assert.are.same({"--epochs", "10"}, p:argv(o, {"epochs"}))
    end)
end)

describe("the scripts on the shared parser", function()
    it("print their usage on --help and refuse an unknown option with status 2", function()
        for _, name in ipairs({"train_fashion_mnist", "hessian_spectrum", "landscape_slice",
                               "bn_smoothness", "ncm_fashion_mnist", "example_sweep"}) do
            local script = "scripts/" .. name .. ".lua"
            local r = h.sh(q(h.BIN) .. " " .. q(script) .. " --help")
            assert.are.equal(0, r.code, name)
            assert.truthy(r.out:find("usage: landscape ", 1, true), name)
            local bad = h.sh(q(h.BIN) .. " " .. q(script) .. " --no-such-option 1")
            assert.are.equal(2, bad.code, name)
            assert.truthy(bad.err:find("unknown option --no-such-option", 1, true), name .. bad.err)
        end
        -- an output directory that cannot be made is refused before any work (a file in its way)
        local blocker = os.tmpname()
        for _, name in ipairs({"train_fashion_mnist", "hessian_spectrum", "landscape_slice",
                               "bn_smoothness", "ncm_fashion_mnist"}) do
            local r = h.sh(q(h.BIN) .. " scripts/" .. name .. ".lua --out " .. q(blocker .. "/sub"))
            assert.are.equal(2, r.code, name)
            assert.truthy(r.err:find("--out " .. blocker .. "/sub: ", 1, true), name .. r.err)
        end
        os.remove(blocker)
        local r = h.sh(q(h.BIN) .. " scripts/train_fashion_mnist.lua --optimizer rmsprop")
        assert.are.equal(2, r.code)
        assert.truthy(r.err:find("--optimizer needs one of sgd, adam, adamw, got 'rmsprop'", 1, true))
    end)
end)

describe("study.plan", function()
    local jobs = study.grid{a = {1, 2, 3, 4, 5, 6, 7}}:jobs()
    local cost = function(c) return c.a end

    it("orders jobs longest first, ties in grid order", function()
        local costs = plan.costs(jobs, cost)
        local order = plan.order(jobs, costs)
        assert.are.equal(7, order[1].config.a)
        assert.are.equal(1, order[7].config.a)
        local flat = plan.order(jobs, plan.costs(jobs))
        for i, j in ipairs(flat) do assert.are.equal(i, j.index) end
        assert.has_error(function() plan.costs(jobs, function() return -1 end) end)
    end)

    it("splits jobs into shards of balanced cost", function()
        local shard = plan.shards(jobs, plan.costs(jobs, cost), 2)
        local load = {[0] = 0, [1] = 0}
        for i, j in ipairs(jobs) do load[shard[i]] = load[shard[i]] + j.config.a end
        assert.are.same({[0] = 14, [1] = 14}, load)   -- 7+4+3 and 6+5+2+1
        local one = plan.shards(jobs, plan.costs(jobs), 7)
        local seen = {}
        for i = 1, 7 do seen[one[i]] = true end
        for k = 0, 6 do assert.is_true(seen[k]) end
    end)

    it("parses K/N and writes Slurm array ranges", function()
        assert.are.same({3, 16}, {plan.parse_shard("3/16")})
        assert.has_error(function() plan.parse_shard("16/16") end)
        assert.has_error(function() plan.parse_shard("1") end)
        assert.are.equal("0-2,5,7-8", plan.ranges({8, 0, 1, 2, 5, 7}))
        assert.are.equal("", plan.ranges({}))
    end)
end)

describe("study jobs and records", function()
    local function make(dir, run)
        local s = study{name = "t", out = dir, grid = study.grid{a = {1, 2}}, run = run}
        s.opts = {}
        return s, s:jobs()
    end

    it("writes a done record with the rows; a rerun skips the job", function()
        local dir = tmpdir()
        local calls = 0
        local s, jobs = make(dir, function(cfg, job)
            calls = calls + 1
            job:row{x = cfg.a * 10, name = "r1"}
            job:row{x = cfg.a * 10 + 1, name = "r2"}
        end)
        assert.are.equal("done", runner.run_job(s, jobs[1]))
        local rec = store.read_record(runner.paths(dir, jobs[1].key).done)
        assert.are.same({{x = 10, name = "r1"}, {x = 11, name = "r2"}}, rec.rows)
        assert.are.same({a = 1}, rec.config)
        assert.are.equal(1, rec.attempt)
        assert.are.equal("skipped", runner.run_job(s, jobs[1]))
        assert.are.equal(1, calls)
    end)

    it("records a failure with its message; the next job runs; forget_failures retries", function()
        local dir = tmpdir()
        local s, jobs = make(dir, function(cfg, job)
            if cfg.a == 1 then error("diverged at step 7") end
            job:row{ok = true}
        end)
        local counts = runner.run_jobs(s, jobs)
        assert.are.same({done = 1, failed = 1, skipped = 0}, counts)
        local rec = store.read_record(runner.paths(dir, jobs[1].key).failed)
        assert.matches("diverged at step 7$", rec.message)
        assert.truthy(rec.traceback:find("stack traceback", 1, true))
        assert.are.equal("failed", runner.state(dir, jobs[1].key))
        assert.are.same({done = 0, failed = 0, skipped = 2}, runner.run_jobs(s, jobs))
        runner.forget_failures(dir, jobs)
        assert.is_nil(runner.state(dir, jobs[1].key))
        assert.are.equal("done", runner.state(dir, jobs[2].key))
    end)

    it("restores a job's state and its rows so far from job:save", function()
        local dir = tmpdir()
        local s, jobs = make(dir, function(cfg, job)
            local state, meta = job:load()
            local step = meta and meta.step or 0
            local x = state and state.x or ls.zeros({3}, {dtype = "f64"})
            while step < 4 do
                step = step + 1
                x = x + 1
                job:row{step = step, v = x:sum():item()}
                job:save({x = x}, {step = step, note = {deep = 0.1}})
                if step == 2 and job.attempt == 1 then error("interrupted!") end   -- as Ctrl-C
            end
        end)
        assert.are.equal("interrupted", runner.run_job(s, jobs[1]))
        assert.is_nil(runner.state(dir, jobs[1].key))    -- no record: it runs again
        assert.are.equal("done", runner.run_job(s, jobs[1]))
        local rec = store.read_record(runner.paths(dir, jobs[1].key).done)
        assert.are.equal(2, rec.attempt)
        assert.is_true(rec.resumed)
        assert.are.same({{step = 1, v = 3.0}, {step = 2, v = 6.0}, {step = 3, v = 9.0},
                         {step = 4, v = 12.0}}, rec.rows)
        -- the state file is gone once the job is done; nothing temporary is left behind
        assert.are.same({"done.lua", "started.lua"}, store.entries(runner.paths(dir, jobs[1].key).dir))
    end)

    it("checks rows and gives jobs a checkpoint path", function()
        local dir = tmpdir()
        local seen
        local s, jobs = make(dir, function(cfg, job)
            seen = {checkpoint = job.checkpoint, resume = job.resume, key = job.key}
            job:row{a = 1}
        end)
        assert.are.equal("failed", runner.run_job(s, jobs[1]))
        local rec = store.read_record(runner.paths(dir, jobs[1].key).failed)
        assert.matches("job:row: column 'a' is a config column", rec.message)
        assert.are.equal(runner.paths(dir, jobs[1].key).dir .. "/ckpt", seen.checkpoint)
        assert.is_nil(seen.resume)
        local dir2 = runner.paths(dir, jobs[2].key).dir
        store.write_atomic(dir2 .. "/ckpt.safetensors", "x")   -- as a training checkpoint would
        local s2, jobs2 = make(dir, function(cfg, job) seen.resume = job.resume end)
        runner.run_job(s2, jobs2[2])
        assert.are.equal(dir2 .. "/ckpt", seen.resume)
    end)

    it("rejects a study without its required keys", function()
        assert.has_error(function() study{name = "x", grid = study.grid{a = 1}} end,
                         "study: 'run' must be a function(cfg, job)")
        assert.has_error(function() study{name = "a b", grid = study.grid{a = 1}, run = print} end)
        assert.has_error(function() study{name = "x", grid = {}, run = print} end)
        assert.has_error(function()
            study{name = "x", grid = study.grid{a = 1}, run = print, typo = 1}
        end)
    end)
end)

describe("study runner from the command line", function()
    local reference        -- the merged CSV of an uninterrupted 2-worker run
    local reference_dir
    local reference_seconds

    setup(function()
        reference_dir = tmpdir()
        local t0 = ls.clock()
        local r = landscape("--out " .. q(reference_dir) .. " --jobs 2")
        reference_seconds = ls.clock() - t0
        assert.are.equal(0, r.code, r.err)
        reference = read_file(reference_dir .. "/counter.csv")
    end)

    it("runs 24 jobs on 2 workers and merges them in grid order, config columns first", function()
        local lines = {}
        for line in reference:gmatch("[^\n]+") do lines[#lines + 1] = line end
        assert.are.equal("seed,a,b,job,step,sum,attempt_free,max", lines[1])
        assert.are.equal(1 + 24 * 5, #lines)           -- 10 steps, a row every 2
        assert.matches("^1,1,1,%x+,2,", lines[2])
        assert.matches("^2,4,3,%x+,10,", lines[#lines])
        local manifest = read_file(reference_dir .. "/counter.manifest.json")
        assert.truthy(manifest:find('"version": "' .. ls.version .. '"', 1, true))
        assert.truthy(manifest:find('"done": 24', 1, true))
        assert.truthy(manifest:find('"threads": 1', 1, true))
        assert.truthy(manifest:find('"cpu": "', 1, true))
        assert.truthy(manifest:find('"gemm": "', 1, true))
        assert.matches('"started": "%d+%-%d+%-%d+T', manifest)
        assert.truthy(manifest:find('"failures": []', 1, true))
        assert.are.equal(2, #store.entries(reference_dir .. "/logs"))
    end)

    it("skips finished jobs on a rerun and merges the same bytes", function()
        local r = landscape("--out " .. q(reference_dir) .. " --jobs 2")
        assert.are.equal(0, r.code, r.err)
        assert.truthy(r.out:find("24 done (0 now)", 1, true))
        assert.are.equal(reference, read_file(reference_dir .. "/counter.csv"))
    end)

    it("gives the same CSV from 3 shards run by hand, and from one process", function()
        local dir = tmpdir()
        for k = 2, 0, -1 do
            local r = landscape(string.format("--out %s --shard %d/3", q(dir), k))
            assert.are.equal(0, r.code, r.err)
            assert.truthy(r.out:find(string.format("shard %d/3: 8 jobs", k), 1, true))
        end
        local m = landscape("--out " .. q(dir) .. " --merge")
        assert.are.equal(0, m.code, m.err)
        assert.are.equal(reference, read_file(dir .. "/counter.csv"))
        local one = tmpdir()
        local r = landscape("--out " .. q(one))
        assert.are.equal(0, r.code, r.err)
        assert.are.equal(reference, read_file(one .. "/counter.csv"))
    end)

    it("records failed jobs without stopping the others; --retry-failed runs them again", function()
        local dir = tmpdir()
        local r = landscape("--out " .. q(dir) .. " --jobs 2 --fail-a 2 --steps 2")
        assert.are.equal(1, r.code)
        assert.truthy(r.out:find("18 done (18 now), 6 failed", 1, true))
        local st = landscape("--out " .. q(dir) .. " --fail-a 2 --steps 2 --status")
        assert.truthy(st.out:find("24 jobs: 18 done, 6 failed, 0 running, 0 missing", 1, true))
        assert.truthy(st.out:find("planted failure in a = 2", 1, true))
        local manifest = read_file(dir .. "/counter.manifest.json")
        assert.truthy(manifest:find('"failed": 6', 1, true))
        assert.truthy(manifest:find("planted failure in a = 2", 1, true))
        -- the same options are required; a different --fail-a is refused
        local bad = landscape("--out " .. q(dir) .. " --fail-a 0 --steps 2 --retry-failed")
        assert.are.equal(2, bad.code)
        assert.truthy(bad.err:find("was made with --fail-a 2 (now 0)", 1, true))
        local again = landscape("--out " .. q(dir) .. " --fail-a 2 --steps 2 --retry-failed")
        assert.are.equal(1, again.code)
        assert.truthy(again.out:find("18 done (0 now), 6 failed", 1, true))
    end)

    it("merges only when every job has finished, unless --partial", function()
        local dir = tmpdir()
        assert.are.equal(0, landscape("--out " .. q(dir) .. " --shard 0/4 --steps 2").code)
        local m = landscape("--out " .. q(dir) .. " --steps 2 --merge")
        assert.are.equal(1, m.code)
        assert.truthy(m.err:find("merge: 18 of 24 jobs are not finished", 1, true))
        local p = landscape("--out " .. q(dir) .. " --steps 2 --merge --partial")
        assert.are.equal(0, p.code, p.err)
        local csv = read_file(dir .. "/counter.csv")
        local n = 0
        for _ in csv:gmatch("\n") do n = n + 1 end
        assert.are.equal(1 + 6, n)
        assert.truthy(read_file(dir .. "/counter.manifest.json"):find('"missing": 18', 1, true))
        local st = landscape("--out " .. q(dir) .. " --steps 2 --status --shards 4")
        assert.truthy(st.out:find("6 done, 0 failed, 0 running, 18 missing", 1, true))
        assert.truthy(st.out:find("unfinished shards of 4: 1-3", 1, true))
    end)

    it("draws one progress line on a terminal (done/total, failures, running, ETA)", function()
        if not os.execute("command -v script >/dev/null 2>&1") then
            return pending("script(1) (util-linux) is not installed")
        end
        local dir = tmpdir()
        local cmd = string.format("%s %s%s --out %s --small --jobs 2", q(h.BIN), q(h.SCRIPT), h.WORK,
                                  q(dir))
        local r = h.sh("TERM=xterm script -qec " .. q(cmd) .. " /dev/null")
        assert.are.equal(0, r.code, r.err)
        assert.matches("\rcounter  %d/4 done  0 failed  %d running  [%d.]+s  eta ", r.out)
        assert.truthy(r.out:find("counter  4/4 done  0 failed  0 running", 1, true), r.out)
        assert.is_nil(r.out:find("[1/4]", 1, true))         -- no log lines on a terminal
        local log = landscape("--out " .. q(tmpdir()) .. " --small --jobs 2")
        assert.matches("%[1/4%] done +%x+ a=%d b=%d seed=1  [%d.]+ s  eta ", log.out)
    end)

    it("rejects bad command lines with status 2 and the usage", function()
        local r = landscape("--jobs 2")
        assert.are.equal(2, r.code)
        assert.truthy(r.err:find("--out DIR is required", 1, true))
        local r2 = landscape("--out x --jobs 0")
        assert.are.equal(2, r2.code)
        assert.truthy(r2.err:find("--jobs needs a value >= 1, got '0'", 1, true))
        assert.truthy(r2.err:find("usage: ", 1, true))
        local h = landscape("--help")
        assert.are.equal(0, h.code)
        assert.truthy(h.out:find("--retry-failed", 1, true))
        assert.truthy(h.out:find("--steps N", 1, true))
    end)

    it("stops cleanly on Ctrl-C (the terminal's process group, or the runner alone)", function()
        for _, case in ipairs({{"group", " --jobs 2"}, {"runner", " --jobs 2"}, {"group", ""}}) do
            local target = case[1]
            local dir = tmpdir()
            local log = dir .. "/run.log"
            local pid = start("--out " .. q(dir) .. case[2], log)
            local t0 = ls.clock()
            while count_done(dir) < 3 and ls.clock() - t0 < 30 do store.sleep(0.02) end
            os.execute("kill -INT " .. (target == "group" and "-" or "") .. pid)
            assert.is_true(wait_gone(pid, 20), "the runner or a worker is still running")
            local text = read_file(log)
            assert.truthy(text:find("stopped with %d+/24 jobs done"), text)
            assert.is_nil(text:find("traceback", 1, true), text)
            local done = count_done(dir)
            assert.is_true(done < 24, target .. case[2] .. ": the run was not stopped")
            -- no job was recorded as failed by the interruption; the next run completes
            local st = landscape("--out " .. q(dir) .. " --status")
            assert.truthy(st.out:find("0 failed", 1, true))
            local r = landscape("--out " .. q(dir) .. " --jobs 2")
            assert.are.equal(0, r.code, r.err)
            assert.are.equal(reference, read_file(dir .. "/counter.csv"))
        end
    end)

    it("spends at most 5 % of a 2-second job in the runner (start-up, records)", function()
        -- 4 jobs that sleep 2 s (the runner's cost does not depend on what a job computes) on 2
        -- workers; each worker's start-up (at its first job) counts against its jobs. The runner's
        -- cost is its CPU time: on this shared machine its wall time also holds the waits for a core
        -- that other processes cause (docs/study-runner.md reports both).
        local dir = tmpdir()
        local r = landscape("--out " .. q(dir) .. " --jobs 2 --small --steps 1 --work 1 --sleep 2")
        assert.are.equal(0, r.code, r.err)
        local per_worker = {}
        for _, key in ipairs(store.entries(dir .. "/jobs")) do
            local rec = store.read_record(dir .. "/jobs/" .. key .. "/done.lua")
            assert.is_true(rec.seconds >= 2)
            -- the job's own CPU time (it sleeps) and the worker's peak RSS are in the record
            assert.is_true(rec.cpu_seconds >= 0 and rec.cpu_seconds < 0.5,
                           string.format("%.3f s of CPU in a sleeping job", rec.cpu_seconds))
            assert.is_true(rec.max_rss_mib > 1 and rec.max_rss_mib < 1024)
            assert.is_true(rec.runner_cpu_seconds <= 0.05 * rec.seconds,
                           string.format("%.3f s in the runner", rec.runner_cpu_seconds))
            local w = per_worker[rec.worker] or {runner = 0, job = 0}
            per_worker[rec.worker] = w
            w.runner = w.runner + rec.runner_cpu_seconds + (rec.process_cpu or 0)
            w.job = w.job + rec.seconds
        end
        local n = 0
        for name, w in pairs(per_worker) do
            n = n + 1
            assert.is_true(w.runner <= 0.05 * w.job,
                           string.format("%s: %.3f s in the runner for %.3f s of jobs", name,
                                         w.runner, w.job))
        end
        assert.are.equal(2, n)
        local manifest = read_file(dir .. "/counter.manifest.json")
        assert.truthy(manifest:find('"job_cpu_seconds": {', 1, true))
        assert.truthy(manifest:find('"max_rss_mib": {', 1, true))
    end)

    it("survives SIGKILL at 20 random moments: no row lost or repeated, the same bytes", function()
        -- The kill moments are drawn from [0.03 s, hi]: hi starts at T/12, T the uninterrupted
        -- run's time (measured in setup), and shrinks when the progress seen so far (jobs done per
        -- second of the rounds, start-ups included) would let the remaining rounds cover more than
        -- about half of the remaining jobs: the load of this shared machine changes under the test,
        -- and every kill must land in an unfinished study, most of them in the middle of a job.
        local dir = tmpdir()
        local seed = os.time()
        math.randomseed(seed)
        local hi = math.max(0.1, reference_seconds / 12)
        local resumed_jobs = 0
        local spent = 0
        for round = 1, 20 do
            local done = count_done(dir)
            if done > 0 then
                local rate = done / spent
                hi = math.max(0.04, math.min(hi, (24 - done) / (rate * (21 - round))))
            end
            local pid = start("--out " .. q(dir) .. " --jobs 2", dir .. "/run.log")
            local t0 = ls.clock()
            store.sleep(0.03 + (hi - 0.03) * math.random())
            os.execute("kill -KILL -" .. pid)
            spent = spent + (ls.clock() - t0)
            assert.is_true(wait_gone(pid, 10), "round " .. round .. ": processes left")
        end
        local before = count_done(dir)
        local r = landscape("--out " .. q(dir) .. " --jobs 2")
        assert.are.equal(0, r.code, r.err)
        local csv = read_file(dir .. "/counter.csv")
        -- every job's rows exactly once
        local per_job = {}
        for key, step in csv:gmatch("\n%d+,%d+,%d+,(%x+),(%d+),") do
            per_job[key] = per_job[key] or {}
            assert.is_nil(per_job[key][step], "a repeated row")
            per_job[key][step] = true
        end
        local n = 0
        for _, steps in pairs(per_job) do
            n = n + 1
            for s = 2, 10, 2 do assert.is_true(steps[tostring(s)], "a lost row") end
        end
        assert.are.equal(24, n)
        assert.are.equal(reference, csv, "merged CSV differs (random seed " .. seed .. ")")
        for _, key in ipairs(store.entries(dir .. "/jobs")) do
            local rec = store.read_record(dir .. "/jobs/" .. key .. "/done.lua")
            if rec.resumed then resumed_jobs = resumed_jobs + 1 end
        end
        -- the kills did interrupt jobs mid-way, and those resumed from their saved state
        assert.is_true(before < 24, "the study finished before the last kill (seed " .. seed .. ")")
        assert.is_true(resumed_jobs >= 1, "no job resumed from a checkpoint")
    end)
end)
