-- The generalization-gap study (scripts/gg_study.lua, docs/study.md): the job's pieces, the
-- pipeline end to end on the tiny grid through the executable (the CSV schema, resuming after a
-- shard and after SIGKILL, --analyze and its files), and the analysis on synthetic tables with a
-- planted linear relation (recovered) and without one (not found), with the claim rules.
package.path = "scripts/?.lua;" .. package.path
local ls = require "landscape"
local h = require "study_helpers"
local store = require "landscape.study.store"
local measure = require "gg.measure"
local A = require "gg.analysis"
local report = require "gg.report"

local SCRIPT = "scripts/gg_study.lua"
local q = h.q

local function gg(args)
    return h.sh(string.format("%s %s %s", q(h.BIN), q(SCRIPT), args))
end

local function near(a, b, tol)
    assert(math.abs(a - b) <= tol, string.format("%.17g vs %.17g (tol %g)", a, b, tol))
end

-- The documented column order of models.csv (docs/study.md): config, job, the leading result
-- columns, then the other result columns sorted.
local function expected_columns()
    local cols = {"n", "noise", "width", "depth", "bn", "wd", "lr", "batch", "replicate", "budget",
                  "lr_scaling", "job", "frac", "step", "status", "train_acc", "clean_train_acc",
                  "test_acc", "gap", "train_loss", "test_loss", "kept"}
    local rest = {"data_seed", "noise_seed", "init_seed", "order_seed", "dist_init", "diverged_at",
                  "epoch", "l2_sq", "log_prod_fro", "log_prod_spec", "lr_step",
                  "out_margin_p10", "params", "sharpness", "steps"}
    for _, s in ipairs(measure.SLOTS) do
        rest[#rest + 1] = "nu." .. s
        for _, st in ipairs(measure.P5P95) do
            rest[#rest + 1] = "p5p95." .. s .. "." .. st
            rest[#rest + 1] = "unnorm." .. s .. "." .. st
        end
        for _, st in ipairs(measure.FENCES) do rest[#rest + 1] = "fences." .. s .. "." .. st end
        rest[#rest + 1] = "fences." .. s .. ".n_clipped"
    end
    table.sort(rest)
    for _, c in ipairs(rest) do cols[#cols + 1] = c end
    return cols
end

describe("gg_study", function()
    teardown(h.cleanup)

    describe("the job's pieces", function()
        it("scales the learning rate to the batch and places the checkpoints", function()
            near(measure.lr_step(0.1, 32, "sqrt"), 0.1 * math.sqrt(32 / 256), 1e-15)
            near(measure.lr_step(0.1, 32, "linear"), 0.0125, 1e-15)
            near(measure.lr_step(0.1, 32, "none"), 0.1, 0)
            assert.has_error(function() measure.lr_step(0.1, 32, "cubic") end)
            local steps, marks = measure.schedule(150000, 32)
            assert.are.equal(4688, steps)                       -- 4687.5 rounds up
            assert.are.same({469, 1172, 2344, 3516, 4688},
                            {marks[1].step, marks[2].step, marks[3].step, marks[4].step,
                             marks[5].step})
            steps, marks = measure.schedule(150000, 256)
            assert.are.equal(586, steps)
            assert.are.equal(586, marks[5].step)
        end)

        it("keeps five rows for a diverged network, measurements empty after it", function()
            ls.set_threads(1)
            local rows, log = measure.run{n = 100, noise = 0, width = 16, depth = 1, bn = 0,
                                          wd = 0, lr = 1e4, batch = 50, replicate = 1,
                                          budget = 2000, lr_scaling = "none"}
            assert.are.equal("diverged", log.status)
            assert.are.equal(5, #rows)
            local reached = 0
            for i, r in ipairs(rows) do
                assert.are.equal("diverged", r.status)
                assert.are.equal(measure.FRACTIONS[i], r.frac)
                assert.is_true(r.diverged_at > 0 and r.init_seed > 0)
                if r.test_acc ~= nil then reached = reached + 1 end
            end
            assert.is_true(reached < 5)
            assert.is_nil(rows[5].test_acc)
        end)

        it("measures the norms: Frobenius, spectral (power iteration), distance to init", function()
            local model = ls.nn.mlp{input = 6, hidden = {5}, classes = 3, seed = 3}
            local w0 = {}
            for i, p in ipairs(model:parameters()) do w0[i] = p:double() * 0.5 end
            local nm = measure.norms(model, w0)
            local W1 = model:parameters()[1]:double()
            local W2 = model:parameters()[3]:double()
            local f1, f2 = (W1 * W1):sum():item(), (W2 * W2):sum():item()
            near(nm.l2_sq, f1 + f2, 1e-9)
            near(nm.log_prod_fro, math.log(f1) + math.log(f2), 1e-9)
            -- the spectral norm: the largest eigenvalue of W^T W by a dense check (Rayleigh
            -- quotients cannot exceed it, and the top eigenvector attains it)
            local function top_eig(W)
                local G = W:t():matmul(W)
                local v = ls.ones({G:size(1)}, {dtype = "f64"})
                for _ = 1, 2000 do v = G:matmul(v); v = v / v:norm() end
                return (v * G:matmul(v)):sum():item()
            end
            near(nm.log_prod_spec, math.log(top_eig(W1)) + math.log(top_eig(W2)), 1e-5)
            local d2 = 0
            for i, p in ipairs(model:parameters()) do
                local d = p:double() - w0[i]
                d2 = d2 + (d * d):sum():item()
            end
            near(nm.dist_init, math.sqrt(d2), 1e-12)
            assert.are.equal(6 * 5 + 5 + 5 * 3 + 3, nm.params)
        end)
    end)

    describe("the pipeline on the tiny grid", function()
        local dir, csv

        it("runs, writes the documented schema, and resumes after a shard and a kill", function()
            dir = h.tmpdir()
            local args = "--grid tiny --out " .. q(dir)
            -- a shard first: its jobs are done and are not run again
            local r = gg(args .. " --shard 0/3")
            assert.are.equal(0, r.code, r.err)
            local shard_done = {}
            for _, key in ipairs(store.entries(dir .. "/jobs")) do
                if store.exists(dir .. "/jobs/" .. key .. "/done.lua") then
                    shard_done[key] = store.read_record(dir .. "/jobs/" .. key .. "/done.lua")
                end
            end
            assert.is_not_nil(next(shard_done))
            -- then a local run killed (SIGKILL to its process group) once a job has finished
            local log = dir .. "/kill.log"
            local p = io.popen(string.format("env -u LD_PRELOAD setsid %s %s %s --jobs 2 "
                                             .. "</dev/null >%s 2>&1 & echo $!", q(h.BIN),
                                             q(SCRIPT), args, q(log)))
            local pid = tonumber(p:read("l"))
            p:close()
            local before = h.count_done(dir)
            local t0 = ls.clock()
            while h.count_done(dir) == before and ls.clock() - t0 < 120 do store.sleep(0.01) end
            os.execute("kill -KILL -" .. pid .. " 2>/dev/null")
            store.sleep(0.2)
            -- the same command completes the study; the shard's jobs kept their records
            r = gg(args .. " --jobs 2")
            assert.are.equal(0, r.code, r.err)
            assert.truthy(r.out:find("10 jobs: 10 done", 1, true), r.out)
            for key, rec in pairs(shard_done) do
                local now = store.read_record(dir .. "/jobs/" .. key .. "/done.lua")
                assert.are.equal(rec.started, now.started)
                assert.are.equal(rec.pid, now.pid)
            end
            csv = h.read_file(dir .. "/models.csv")
            -- a run after completion runs nothing and leaves the same bytes
            r = gg(args .. " --jobs 2")
            assert.are.equal(0, r.code, r.err)
            assert.truthy(r.out:find("10 done (0 now)", 1, true), r.out)
            assert.are.equal(csv, h.read_file(dir .. "/models.csv"))

            -- the schema
            local t = ls.table.read_csv(dir .. "/models.csv")
            assert.are.same(expected_columns(), t.columns)
            assert.are.equal(10 * 5, t.nrows)     -- 8 cells + 2 second-seed reruns, 5 checkpoints
            local per_job = {}
            for _, row in t:rows() do
                per_job[row.job] = (per_job[row.job] or 0) + 1
                assert.are.equal("ok", row.status)
                near(row.gap, 100 * (row.train_acc - row.test_acc), 1e-9)
                assert.is_true(row.kept >= 0 and row.kept <= 1)
                assert.is_true(row.train_acc >= 0 and row.train_acc <= 1)
                assert.are.equal(row.replicate, row.data_seed)
                for _, s in ipairs(measure.SLOTS) do
                    local v = {}
                    for k, st in ipairs(measure.P5P95) do v[k] = row["p5p95." .. s .. "." .. st] end
                    for k = 2, #v do assert.is_true(v[k] >= v[k - 1]) end
                    -- unnormalised = normalised + log nu
                    near(row["unnorm." .. s .. ".q2"], row["p5p95." .. s .. ".q2"]
                         + math.log(row["nu." .. s]), 1e-9)
                    local c = row["fences." .. s .. ".n_clipped"]
                    assert.is_true(math.type(c) == "integer" and c >= 0 and c <= 5)
                end
                if row.frac == 1 then assert.is_true(row.sharpness >= 0)
                else assert.is_true(row.sharpness ~= row.sharpness) end
            end
            local jobs = 0
            for _, c in pairs(per_job) do
                jobs = jobs + 1
                assert.are.equal(5, c)
            end
            assert.are.equal(10, jobs)
        end)

        it("gives the rows of an in-process run of the same cell, bit for bit", function()
            assert.is_not_nil(csv, "needs the previous test")
            local t = ls.table.read_csv(dir .. "/models.csv")
            local row1 = t:row(1)
            local cfg = {}
            for _, c in ipairs({"n", "noise", "width", "depth", "bn", "wd", "lr", "batch",
                                "replicate", "budget", "lr_scaling"}) do
                cfg[c] = row1[c]
            end
            ls.set_threads(1)                     -- as the workers ran it
            local rows = measure.run(cfg)
            assert.are.equal(5, #rows)
            for i = 1, 5 do
                local got = t:row(i)
                for _, c in ipairs({"train_acc", "test_loss", "p5p95.output.q2",
                                    "fences.first.fence_hi", "nu.last", "dist_init"}) do
                    -- the CSV holds the shortest decimal that reads back to the same double
                    assert.are.equal(rows[i][c], got[c], c)
                end
            end
        end)

        it("analyses: claims, tables and figures; twice gives the same claims", function()
            assert.is_not_nil(csv, "needs the pipeline test")
            local args = "--grid tiny --out " .. q(dir) .. " --analyze --permutations 50"
            local r = gg(args)
            assert.are.equal(0, r.code, r.err)
            assert.truthy(r.out:find("| claim", 1, true), r.out)
            for _, f in ipairs({"claims.csv", "claims.md", "analysis/feature_sets.csv",
                                "analysis/by_checkpoint.csv", "analysis/transfer.csv",
                                "analysis/leave_level_out.csv", "analysis/granulated.csv",
                                "analysis/noise_floor.csv", "analysis/selection.csv",
                                "analysis/timings.csv", "figures/predicted_vs_measured.png",
                                "figures/r2_by_checkpoint.pdf", "figures/transfer.png"}) do
                assert.is_true(store.exists(dir .. "/" .. f), f)
            end
            local claims = ls.table.read_csv(dir .. "/claims.csv")
            assert.are.same({"id", "claim", "abstract", "ours", "holds", "rule", "command",
                             "commit"}, claims.columns)
            assert.are.same({"1", "2", "3", "4", "D"}, claims:values("id"))
            local first = h.read_file(dir .. "/claims.csv")
            r = gg(args)
            assert.are.equal(0, r.code, r.err)
            assert.are.equal(first, h.read_file(dir .. "/claims.csv"))
            -- the timings come from the runner's records
            local tm = ls.table.read_csv(dir .. "/analysis/timings.csv")
            assert.are.equal(10, tm.nrows)
            for _, row in tm:rows() do
                assert.is_true(row.cpu_seconds > 0 and row.max_rss_mib < 1024)
            end
        end)

        it("refuses to analyse an unfinished study", function()
            local d = h.tmpdir()
            local r = gg("--grid tiny --out " .. q(d) .. " --analyze")
            assert.are.equal(1, r.code)
            assert.truthy(r.err:find("10 of 10 jobs are unfinished", 1, true), r.err)
        end)
    end)

    describe("the analysis on synthetic networks", function()
        -- 2 x 2 x 2 x 3 factorial cells x 8 seeds = 192 networks, 5 checkpoints each; 20 features
        -- per checkpoint drawn at random; the gap is a planted linear function of the features
        -- (at every checkpoint, or at the last one only) plus noise of sd 0.5.
        local FACT = {"noise", "width", "bn", "n"}
        local names = {}
        for _, s in ipairs(A.SLOTS) do
            for _, st in ipairs(A.P5P95) do names[#names + 1] = "p5p95." .. s .. "." .. st end
        end
        local coef = {}
        for j = 1, #names do coef[j] = (j % 3 - 1) * 2 + 0.5 * j / #names end

        local function synthetic(mode)
            local rows = {}
            local k = 0
            local X = ls.randn({192 * 5, #names}, {seed = 11, dtype = "f64"}):totable()
            local e = ls.randn({192 * 5}, {seed = 12, dtype = "f64"}):totable()
            for _, noise in ipairs({0, 0.3}) do for _, width in ipairs({64, 256}) do
            for _, bn in ipairs({0, 1}) do for _, n in ipairs({500, 2000, 8000}) do
            for seed = 1, 8 do
                local job = string.format("%016x", 1000 * n + 100 * seed + 10 * bn + width % 7
                                          + (noise > 0 and 5 or 0))
                for _, frac in ipairs(A.FRACTIONS) do
                    k = k + 1
                    local r = {job = job, frac = frac, replicate = 1, status = "ok", noise = noise,
                               width = width, bn = bn, n = n, seed = seed, train_acc = 0.99,
                               train_loss = 0.05}
                    local g = 0
                    for j, name in ipairs(names) do
                        r[name] = X[k][j]
                        g = g + coef[j] * X[k][j]
                    end
                    if mode == "null" or (mode == "late" and frac < 1) then
                        g = 5 * e[k]
                    else
                        g = g + 0.5 * e[k]
                    end
                    r.gap = 10 + g
                    r.test_acc = r.train_acc - r.gap / 100
                    rows[#rows + 1] = r
                end
            end end end end end
            return ls.table.from_rows(rows)
        end

        it("recovers a planted linear relation and passes claims 1, 2", function()
            local res = A.run(synthetic("all"), {factors = FACT, permutations = 100, boot = 200})
            assert.are.equal(192, res.n)
            assert.is_true(res.main.cv_r2 > 0.98, tostring(res.main.cv_r2))
            assert.is_true(res.main.split_r2 > 0.97)
            local fit = res.main.fit
            for j = 1, #names do near(fit.coef_raw[j], coef[j], 0.15) end
            assert.is_true(res.permutation.p_value <= 1 / 100)
            -- the relation holds at every checkpoint: the final predictor transfers
            for _, tr in ipairs(res.transfer) do assert.is_true(tr.r2_heldout > 0.95) end
            local claims = report.claims(res, {command = "c", commit = "x"})
            assert.are.equal("yes", claims[1].holds)
            assert.are.equal("yes", claims[2].holds)
            assert.are.equal("no", claims[3].holds)
            assert.are.equal("no", claims[4].holds)
            -- the hyperparameters carry nothing here: the margins win every held-out level
            assert.are.equal("yes", claims[5].holds)
        end)

        it("finds the late-only relation of claims 3 and 4 when it is planted", function()
            local res = A.run(synthetic("late"), {factors = FACT, permutations = 0, boot = 200})
            local claims = report.claims(res, {command = "c", commit = "x"})
            assert.are.equal("yes", claims[3].holds)
            assert.are.equal("yes", claims[4].holds)
            for _, r in ipairs(res.by_t) do
                if r.set == A.MAIN and r.frac < 1 then assert.is_true(r.cv_r2 < 0.1) end
            end
        end)

        it("finds nothing in noise (R2_cv <= 0, permutation p large)", function()
            local res = A.run(synthetic("null"), {factors = FACT, permutations = 100, boot = 200})
            assert.is_true(res.main.cv_r2 < 0.05, tostring(res.main.cv_r2))
            assert.is_true(res.permutation.p_value > 0.05)
            local claims = report.claims(res, {command = "c", commit = "x"})
            assert.are.equal("no", claims[1].holds)
            assert.are.equal("no", claims[2].holds)
            assert.are.equal("n/a", claims[3].holds)
        end)

        it("selects: diverged and collapsed runs out, then a seeded draw to the target", function()
            local t = synthetic("all")
            local bad = {}
            t = t:derive("status", function(r)
                if r.n == 500 and r.seed == 1 and r.bn == 0 then bad[r.job] = true
                    return "diverged" end
                return r.status
            end)
            t = t:derive("train_acc", function(r)
                if r.n == 2000 and r.seed == 2 and r.bn == 1 and r.width == 64 then return 0.1 end
                return r.train_acc
            end)
            local rows, kept = A.select(t, {min_train_acc = 0.2, target_n = 180, seed = 1})
            local n_kept, reasons = 0, {}
            for _, r in ipairs(rows) do
                n_kept = n_kept + r.kept
                local why = r.reason:match("^(%a+)") or ""
                reasons[why] = (reasons[why] or 0) + 1
            end
            assert.are.equal(192, #rows)
            assert.are.equal(180, n_kept)
            assert.are.equal(4, reasons.status)         -- 2 noise x 2 widths
            assert.are.equal(2, reasons.collapsed)      -- 2 noise levels
            assert.are.equal(6, reasons.seeded)         -- 192 - 6 = 186 -> 180
            for job in pairs(bad) do assert.is_nil(kept[job]) end
            -- the draw is seeded: the same selection again
            local _, kept2 = A.select(t, {min_train_acc = 0.2, target_n = 180, seed = 1})
            assert.are.same(kept, kept2)
        end)
    end)
end)
