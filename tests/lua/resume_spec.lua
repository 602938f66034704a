-- Checkpoints and resume of ls.train: a run stopped at any step and resumed gives the weights and
-- the log of the uninterrupted run bit for bit. In process (a crash raised at a chosen step), and
-- with real SIGKILLs of a child `landscape` process at random moments, several times in a row,
-- at 1 and 2 threads: SGD with momentum and a cosine schedule, Adam, batch norm, seeded dropout and
-- unseeded dropout (the global stream), augmentation and label noise.
local ls = require "landscape"
local nn = ls.nn

local BIN = os.getenv("LANDSCAPE_BIN") or "build/landscape"

local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

local function tmpdir()
    local p = io.popen("mktemp -d")
    local d = p:read("l")
    p:close()
    return d
end

-- The training setup shared by the in-process test and the child script (as source text, so the
-- child builds exactly the same run).
local SETUP = [[
local ls = require "landscape"
local nn = ls.nn
local function setup(kind, n, epochs)
    ls.manual_seed(123)
    local x = ls.randn({n, 1, 8, 8}, {seed = 1, std = 0.5})
    local y = ls.randint(1, 5, {n}, {seed = 2})
    local yl = y:totable()
    for i = 1, n do
        local r, c = (yl[i] - 1) // 2, (yl[i] - 1) % 2
        local q = x[i][1]:narrow(1, 4 * r + 1, 4):narrow(2, 4 * c + 1, 4)
        q:copy(q + 1)
    end
    local d = ls.dataset(x, y)
    local train, test = d:random_split(0.8, {seed = 3})
    train = train:with_label_noise(0.1, {seed = 4, classes = 4})
    local model = nn.sequential{nn.flatten(), nn.linear(64, 256, {seed = 1, bias = false}),
                                nn.batchnorm1d(256), nn.relu(), nn.dropout(0.2, {seed = 7}),
                                nn.linear(256, 256, {seed = 2}), nn.relu(), nn.dropout(0.1),
                                nn.linear(256, 4, {seed = 3})}
    local opt, sched
    if kind == "sgd" then
        opt = ls.optim.sgd(model, {lr = 0.05, momentum = 0.9, weight_decay = 5e-4})
        sched = ls.optim.schedule.cosine(opt, {t_max = epochs})
    else
        opt = ls.optim.adam(model, {lr = 1e-3})
    end
    local opts = {optimizer = opt, schedule = sched, epochs = epochs, batch = 32, seed = 5,
                  augment = {crop = 1, flip = true}, eval = test, progress = false}
    return model, train, opts
end
-- The log without wall times, one CSV row per epoch.
local function log_rows(log)
    local rows = {}
    for i, r in ipairs(log.epochs) do
        rows[i] = {epoch = r.epoch, steps = r.steps, train_loss = r.train_loss,
                   train_accuracy = r.train_accuracy, eval_loss = r.eval_loss,
                   eval_accuracy = r.eval_accuracy, lr = r.lr, status = log.status}
    end
    return rows
end
]]

local setup, log_rows = load(SETUP .. "\nreturn setup, log_rows")()

local function bits(model) return model:flatten_parameters():totable() end

local function strip(log)
    local rows = log_rows(log)
    return {status = log.status, steps = log.steps, rows = rows}
end

describe("the global stream's position", function()
    it("is read and put back exactly (ls.get_rng_state / ls.set_rng_state)", function()
        ls.manual_seed(77)
        ls.randn({5})
        local st = ls.get_rng_state()
        assert.are.same({seed = 77, offset = 5}, st)
        local a = ls.rand({4}):totable()
        ls.randn({9})
        ls.set_rng_state(st)
        assert.are.same(a, ls.rand({4}):totable())
        ls.set_rng_state{seed = -1, offset = -2}        -- 64-bit values round-trip as integers
        assert.are.same({seed = -1, offset = -2}, ls.get_rng_state())
        has(errmsg(ls.set_rng_state, {seed = 1}), "set_rng_state: 'offset' must be an integer")
        has(errmsg(ls.set_rng_state, {seed = 1, offset = 0, ofset = 1}),
            "set_rng_state: unknown option 'ofset' (did you mean 'offset'?)")
        ls.manual_seed(1)
    end)
end)

describe("resume in process", function()
    it("continues a run interrupted at a step with the same weights and log bit for bit", function()
        local dir = tmpdir()
        for _, kind in ipairs({"sgd", "adam"}) do
            local model, train, opts = setup(kind, 200, 3)
            local ref_log = ls.train(model, train, opts)
            local ref = bits(model)
            local ref_state = model:state_dict()
            assert.are.equal("ok", ref_log.status)
            for _, crash_at in ipairs({1, 6, 7, 14}) do
                local path = string.format("%s/%s_%d.ckpt", dir, kind, crash_at)
                local m1, t1, o1 = setup(kind, 200, 3)
                o1.checkpoint = {path = path, every = 3}
                o1.every = 1
                o1.callback = function(st) if st.step == crash_at then error("crash") end end
                has(errmsg(ls.train, m1, t1, o1), "crash")
                local m2, t2, o2 = setup(kind, 200, 3)
                if crash_at >= 3 then ls.manual_seed(999) end   -- the checkpoint's stream wins
                o2.checkpoint = {path = path, every = 3}
                o2.resume = true
                local log = ls.train(m2, t2, o2)
                assert.are.same(ref, bits(m2), kind .. " crash at " .. crash_at)
                assert.are.same(strip(ref_log), strip(log))
                for _, e in ipairs(ref_state) do
                    assert.is_true(e[2]:equal(m2:state_dict()[e[1]]), e[1])
                end
                if crash_at >= 3 then assert.is_true(log.resumed_at >= 3) end
            end
        end
        os.execute("rm -rf " .. dir)
    end)

    it("starts afresh without a checkpoint, returns a finished run as it was, refuses a different run", function()
        local dir = tmpdir()
        local path = dir .. "/run/ckpt"
        local m1, t1, o1 = setup("sgd", 100, 2)
        o1.checkpoint, o1.resume = {path = path}, true
        local l1 = ls.train(m1, t1, o1)                 -- no file yet: from the start
        assert.is_nil(l1.resumed_at)
        local f = io.open(path, "rb")
        assert.is_truthy(f)
        f:close()
        local m2, t2, o2 = setup("sgd", 100, 2)
        o2.checkpoint, o2.resume = {path = path}, path
        local l2 = ls.train(m2, t2, o2)                 -- already finished: nothing more to do
        assert.are.same(bits(m1), bits(m2))
        assert.are.same(strip(l1), strip(l2))
        local m3, t3, o3 = setup("sgd", 100, 3)         -- more epochs: the run goes on
        o3.checkpoint, o3.resume = {path = path}, path
        local l3 = ls.train(m3, t3, o3)
        assert.are.equal(3, #l3.epochs)
        local m4, t4, o4 = setup("sgd", 100, 2)
        o4.batch, o4.resume = 16, path
        has(errmsg(ls.train, m4, t4, o4), "was written by a different run: batch = 32 (this run: 16)")
        local m5, t5, o5 = setup("sgd", 100, 2)
        o5.resume = dir .. "/none"
        has(errmsg(ls.train, m5, t5, o5), "train: resume: no checkpoint at " .. dir .. "/none")
        o5.resume = true
        has(errmsg(ls.train, m5, t5, o5), "train: resume = true needs option 'checkpoint'")
        o5.resume, o5.checkpoint = nil, {path = path, evry = 2}
        has(errmsg(ls.train, m5, t5, o5), "unknown option 'evry' (did you mean 'every'?)")
        local junk = io.open(dir .. "/junk", "wb")
        junk:write("not a checkpoint")
        junk:close()
        o5.checkpoint, o5.resume = nil, dir .. "/junk"
        has(errmsg(ls.train, m5, t5, o5), "train: ")
        os.execute("rm -rf " .. dir)
    end)
end)

describe("resume after SIGKILL", function()
    local CHILD = SETUP .. [[
local kind, threads, epochs, ckpt, out = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5]
local kill_after = tonumber(arg[6])
ls.set_threads(threads)
local model, train, opts = setup(kind, 3000, epochs)
opts.checkpoint = {path = ckpt, every = 2}
opts.resume = true
if kill_after > 0 then          -- SIGKILL this process after kill_after steps of this launch
    local f = io.open("/proc/self/stat")
    local pid = f:read("n")
    f:close()
    local n = 0
    opts.every = 1
    opts.callback = function()
        n = n + 1
        if n == kill_after then os.execute("kill -KILL " .. math.tointeger(pid)) end
    end
end
local log = ls.train(model, train, opts)
model:save(out .. ".safetensors")
ls.csv.write(out .. ".csv", log_rows(log))
local f = io.open(out .. ".resumed", "w")
f:write(tostring(log.resumed_at or 0))
f:close()
]]

    local read = ls.fs.read

    -- One launch of the child: killed after `limit` seconds (timeout -s KILL: any instant, a
    -- checkpoint write included) or by itself after `steps` steps; returns done, exit code, time.
    local function run(script, kind, threads, ckpt, out, limit, steps)
        local cmd = string.format("%s %s %s %d 3 %s %s %d >/dev/null 2>%s.err", BIN, script, kind,
                                  threads, ckpt, out, steps or 0, out)
        if limit then cmd = string.format("timeout -s KILL %.3f %s", limit, cmd) end
        local t0 = ls.clock()
        local ok, how, code = os.execute(cmd)
        return ok, code, ls.clock() - t0
    end

    it("gives the uninterrupted run's weights and log bit for bit, at 1 and 2 threads", function()
        local f = io.open(BIN, "rb")
        if not f then return pending("no landscape executable at " .. BIN) end
        f:close()
        local dir = tmpdir()
        local script = dir .. "/child.lua"
        local sf = io.open(script, "w")
        sf:write(CHILD)
        sf:close()
        math.randomseed(os.time())
        for _, case in ipairs({{"sgd", 1}, {"adam", 2}, {"sgd", 2}}) do
            local kind, threads = case[1], case[2]
            local tag = string.format("%s_t%d", kind, threads)
            local ref_out = dir .. "/ref_" .. tag
            local ok, _, seconds = run(script, kind, threads, dir .. "/ref_" .. tag .. ".ckpt",
                                       ref_out)
            assert(ok, "reference run failed: " .. tostring(read(ref_out .. ".err")))
            local out, ckpt = dir .. "/killed_" .. tag, dir .. "/killed_" .. tag .. ".ckpt"
            -- Launch, kill, relaunch until 4 kills (then a last launch finishes the run). When the
            -- machine's load drops, a launch may finish the run before 2 kills; then the scenario
            -- starts over with shorter time limits.
            local kills, history, scale = 0, {}, 0.4
            for _ = 1, 4 do
                kills, history = 0, {}
                for _, f in ipairs({ckpt, out .. ".csv", out .. ".resumed"}) do os.remove(f) end
                for i = 1, 6 do         -- alternately at a random instant and at a random step
                    local limit, steps
                    if i % 2 == 1 then limit = 0.1 + math.random() * scale * seconds
                    else steps = math.random(3, 40) end
                    local done, code = run(script, kind, threads, ckpt, out, limit, steps)
                    history[#history + 1] = (limit and string.format("%.2fs", limit) or
                                             steps .. " steps") .. ":" ..
                                            (done and "done" or tostring(code))
                    if done then break end
                    assert.is_true(code == 137 or code == 9,
                                   "child failed: " .. tostring(read(out .. ".err")))
                    kills = kills + 1
                    if kills == 4 then break end
                end
                if kills >= 2 then break end
                scale = scale / 2
            end
            if not read(out .. ".resumed") then     -- written last: the run's outputs are complete
                local done = run(script, kind, threads, ckpt, out)
                assert(done, "final run failed: " .. tostring(read(out .. ".err")))
            end
            local note = string.format("%s (uninterrupted %.2fs) kills %s", tag, seconds,
                                       table.concat(history, " "))
            io.stderr:write("# ", note, "\n")
            assert.is_true(kills >= 2, note)
            assert.is_true(tonumber(read(out .. ".resumed")) > 0, note .. ": the last launch resumed")
            assert.are.equal(read(ref_out .. ".csv"), read(out .. ".csv"), note)
            local a = ls.io.load_safetensors(ref_out .. ".safetensors")
            local b = ls.io.load_safetensors(out .. ".safetensors")
            local n = 0
            for name, t in pairs(a) do
                assert.is_true(t:equal(b[name]), note .. ": " .. name)
                n = n + 1
            end
            assert.are.equal(10, n)
        end
        os.execute("rm -rf " .. dir)
    end)
end)
