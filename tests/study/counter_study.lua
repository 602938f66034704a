--- A study for the runner's specs (tests/lua/study_spec.lua, study_slurm_spec.lua): 24 deterministic
-- jobs (a = 1..4, b = 1..3, seed = 1, 2) that iterate x <- tanh(W x + b) in float64, save their state
-- with job:save after every step and make a row every `--every` steps, so a job killed at any moment
-- resumes from its last save and still makes exactly the rows of an uninterrupted run.
--   --steps S      steps per job (default 10)
--   --work K       matrix products per step (default 60: about 20 ms a step on one thread)
--   --every R      a row every R steps (default 2)
--   --fail-a A     jobs with a == A raise an error (default 0: none)
--   --sleep T      seconds to sleep per step (default 0; for the Slurm spec's --status)
--   --small        a = 1..2, b = 1..2, seed = 1 only: 4 jobs
local ls = require "landscape"

local study = ls.study{
    name = "counter",
    grid = function(opts)
        if opts.small then return ls.study.grid{a = {1, 2}, b = {1, 2}, seed = 1} end
        return ls.study.grid({a = {1, 2, 3, 4}, b = {1, 2, 3}, seed = {1, 2}}, {order = {"seed"}})
    end,
    options = {{"steps", 10, "steps per job", min = 1},
               {"work", 60, "matrix products per step", min = 1},
               {"every", 2, "a row every R steps", min = 1},
               {"fail_a", 0, "jobs with a == A fail"},
               {"sleep", 0.0, "seconds of sleep per step", column = false},
               {"small", false, "4 jobs"}},
    cost = function(cfg) return cfg.a end,
    columns = {"step", "sum"},
    run = function(cfg, job)
        local o = job.opts
        if cfg.a == o.fail_a then error("planted failure in a = " .. cfg.a) end
        local s = ls.study.derive_seed(cfg, "w")
        local W = ls.randn({96, 96}, {seed = s, dtype = "f64"}) * (1.2 / math.sqrt(96))
        local bias = ls.randn({96, 1}, {seed = s + 1, dtype = "f64"}) * 0.1
        local state, meta = job:load()
        local x = state and state.x or ls.randn({96, 256}, {seed = s + 2, dtype = "f64"})
        local step = meta and meta.step or 0
        while step < o.steps do
            for _ = 1, o.work do x = (W:matmul(x) + bias):tanh() end
            step = step + 1
            if step % o.every == 0 then
                job:row{step = step, sum = x:sum():item(), max = x:max():item(),
                        attempt_free = "ok"}
            end
            job:save({x = x}, {step = step})
            job:progress(step / o.steps)
            if o.sleep > 0 then os.execute(string.format("sleep %.3f", o.sleep)) end
        end
    end}

study:main(arg)
