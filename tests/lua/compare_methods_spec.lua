-- scripts/compare_methods.lua: its report helpers (Student t quantiles against SciPy, the summary's
-- means, standard deviations and 95 % intervals, the choice of the tuned values, the markdown
-- table) on synthetic rows, and a tiny run end to end through the executable and the study runner
-- (tune, final, report: every method trained, measured and tabulated).
local ls = require "landscape"
local torch = require "torch_oracle"
local fs = require "landscape.io.fs"
local csv = require "landscape.io.csv"

local SCRIPT = "scripts/compare_methods.lua"
local BIN = os.getenv("LANDSCAPE_BIN") or "build/landscape"
local M = assert(loadfile(SCRIPT))({})   -- a table argument: the helpers, no run

local function tmpdir()
    local d = os.tmpname()
    os.remove(d)
    fs.mkdir_p(d)
    return d
end

local function rm_rf(d) os.execute("rm -rf '" .. d .. "'") end

describe("compare_methods report helpers", function()
    it("t quantiles equal scipy.stats.t.ppf(0.975, df), df = 1..30", function()
        if not torch.available() then return pending(torch.MISSING) end
        local lines = torch.lines("from scipy.stats import t\n" ..
                                  "for df in range(1, 31): print(repr(float(t.ppf(0.975, df))))\n")
        for df = 1, 30 do
            local want = tonumber(lines[df])
            assert.is_true(math.abs(M.t975(df) - want) < 5e-8, string.format("df %d", df))
        end
        assert.is_true(math.abs(M.t975(200) - 1.959964) < 0.02)
    end)

    it("summarises finished runs: mean, sd, Student t interval; diverged runs counted apart", function()
        local rows = {
            {method = "sam", value = "0.05", seed = 1, status = "ok", test_accuracy = "0.8"},
            {method = "sam", value = "0.05", seed = 2, status = "ok", test_accuracy = "0.9"},
            {method = "sam", value = "0.05", seed = 3, status = "ok", test_accuracy = "1.0"},
            {method = "sam", value = "0.05", seed = 4, status = "diverged", test_accuracy = "nan"},
            {method = "sgd", value = "0", seed = 1, status = "ok", test_accuracy = "0.5"},
        }
        local by = {}
        for _, r in ipairs(M.summarize(rows)) do by[r.method .. "/" .. r.measure] = r end
        local r = by["sam/test_accuracy"]
        assert.are.equal(3, r.n)
        assert.is_true(math.abs(r.mean - 0.9) < 1e-15)
        assert.is_true(math.abs(r.sd - 0.1) < 1e-15)
        assert.is_true(math.abs(r.ci95 - 4.30265273 * 0.1 / math.sqrt(3)) < 1e-9)
        assert.are.same({4, 3}, {by["sam/runs"].n, by["sam/runs"].mean})
        assert.are.equal(1, by["sgd/test_accuracy"].n)
        assert.is_true(by["sgd/test_accuracy"].ci95 ~= by["sgd/test_accuracy"].ci95)   -- NaN
        local md = M.table_md(M.summarize(rows))
        assert.truthy(md:find("| sam | 0.05 | 3/4 | 90.00 ± 24.84 |", 1, true), md)
        assert.truthy(md:find("| sgd | – | 1/1 | 50.00 |", 1, true), md)
    end)

    it("chooses the value with the best validation accuracy, the smaller on ties", function()
        local best = M.best_values{
            {method = "sam", value = "0.1", status = "ok", val_accuracy = "0.85"},
            {method = "sam", value = "0.05", status = "ok", val_accuracy = "0.85"},
            {method = "sam", value = "0.2", status = "diverged", val_accuracy = "nan"},
            {method = "grad_norm", value = "0.3", status = "ok", val_accuracy = "0.7"},
            {method = "grad_norm", value = "0.03", status = "ok", val_accuracy = "0.6"},
            {method = "trace_penalty", value = "0.01", status = "diverged", val_accuracy = "0.9"},
        }
        assert.are.same({sam = 0.05, grad_norm = 0.3}, best)
    end)
end)

describe("compare_methods end to end", function()
    it("tunes, trains every method on two seeds, measures and reports (a tiny run)", function()
        local out = tmpdir()
        local cmd = string.format("env -u LD_PRELOAD %s %s --out %s --quick --seeds 2 --epochs 1 " ..
                                  "--n-train 200 --n-test 100 --n-curv 16 --probes 2 " ..
                                  "--channels 4,8 --hidden 16 > %s/log.txt 2>&1", BIN, SCRIPT, out,
                                  out)
        local ok = os.execute(cmd)
        local log = io.open(out .. "/log.txt"):read("a")
        assert.is_true(ok == true, log)
        local rows = csv.read_rows(out .. "/final/final.csv")
        assert.are.equal(14, #rows)   -- 7 methods x 2 seeds
        local seen = {}
        for _, r in ipairs(rows) do
            seen[r.method] = true
            assert.are.equal("ok", r.status)
            local acc = tonumber(r.test_accuracy)
            assert.is_true(acc > 0 and acc <= 1)
            assert.is_true(tonumber(r.hessian_trace_se) >= 0)
            assert.is_true(tonumber(r.norm_si) > 0)
            assert.are.equal(r.method == "sgd_2x" and 2 or 1, tonumber(r.epochs))
        end
        for _, m in ipairs(M.METHODS) do assert.is_true(seen[m], m) end
        local md = io.open(out .. "/methods_table.md"):read("a")
        for _, m in ipairs(M.METHODS) do assert.truthy(md:find("| " .. m .. " |", 1, true), md) end
        assert.is_true(fs.isfile(out .. "/methods_summary.csv"))
        local rep = io.open(out .. "/methods_report.md"):read("a")
        assert.truthy(rep:find("Commit (of the final runs", 1, true) and rep:find(md, 1, true), rep)
        assert.is_true(fs.isfile(out .. "/accuracy_vs_trace.png"))
        -- the tuned value of each method is one of its grid's quick values
        local tune = csv.read_rows(out .. "/tune/tune.csv")
        assert.are.equal(10, #tune)
        -- a second run finds everything done and reports the same table
        assert.is_true(os.execute(cmd) == true)
        assert.are.equal(md, io.open(out .. "/methods_table.md"):read("a"))
        rm_rf(out)
    end)
end)
