-- ls.stats: quantiles against NumPy's default (linear interpolation), moments, fences, summary sets,
-- empty samples and bad input.
--
-- The expected values were computed once with NumPy 1.24.2:
--   env -u LD_PRELOAD /usr/bin/python3 -c "
--   import numpy as np
--   qs = [0, 0.05, 0.1, 0.25, 0.33, 0.5, 0.75, 0.9, 0.95, 1]
--   for a in A:                                   # the arrays of NUMPY below
--       a = np.array(a, dtype=np.float64)
--       print(repr([float(v) for v in np.quantile(a, qs)]))
--       m = a.mean(); s = a.std()
--       print(m, s, a.std(ddof=1), ((a-m)**3).mean()/s**3, ((a-m)**4).mean()/s**4 - 3)"
local ls = require "landscape"
local st = require "landscape.stats"

local QS = {0, 0.05, 0.1, 0.25, 0.33, 0.5, 0.75, 0.9, 0.95, 1}

local NUMPY = {
    {x = {1, 2, 3, 4, 5},
     q = {1.0, 1.2, 1.4, 2.0, 2.3200000000000003, 3.0, 4.0, 4.6, 4.8, 5.0},
     mean = 3.0, sd = 1.4142135623730951, sd1 = 1.5811388300841898, skew = 0.0,
     kurt = -1.3000000000000005},
    {x = {3.1, -2.5, 7, 0.25, 10, -4, 1e-3},
     q = {-4.0, -3.55, -3.0999999999999996, -1.2495, -0.04902000000000004, 0.25, 5.05,
          8.200000000000001, 9.099999999999998, 10.0},
     mean = 1.9787142857142859, sd = 4.683029078164983, sd1 = 5.058249523115209,
     skew = 0.4557714590410375, kurt = -1.074868936135225},
    {x = {0.7, 0.1, 0.3, 0.9, 0.2, 0.8, 0.5, 0.6, 0.4, 1.3, -0.2},
     q = {-0.2, -0.05000000000000002, 0.1, 0.25, 0.33, 0.5, 0.75, 0.9, 1.1, 1.3},
     mean = 0.509090909090909, sd = 0.39647204522466406, sd1 = 0.41582338908374417,
     skew = 0.1777217733000136, kurt = -0.3685693624841182},
}

local function near(a, b, tol)
    tol = tol or 1e-12
    assert(math.abs(a - b) <= tol * math.max(1, math.abs(b)),
           string.format("expected %.17g, got %.17g", b, a))
end

local function errmsg(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok)
    return tostring(err)
end

describe("ls.stats", function()
    it("is reachable as ls.stats", function()
        assert.are.equal(st, ls.stats)
    end)

    it("quantiles match NumPy's default bit for bit (Lua lists and tensors)", function()
        for _, case in ipairs(NUMPY) do
            local got = st.quantile(case.x, QS)
            for i = 1, #QS do assert.are.equal(case.q[i], got[i]) end
            local t = ls.tensor(case.x, {dtype = "f64"})
            local got_t = st.quantile(t, QS)
            for i = 1, #QS do assert.are.equal(case.q[i], got_t[i]) end
            assert.are.equal(case.q[6], st.quantile(t, 0.5))
            assert.are.equal(case.q[2], st.percentile(case.x, 5))
        end
    end)

    it("a single value is every quantile; f32 tensors are read as doubles", function()
        assert.are.equal(42, st.quantile({42}, 0.33))
        local t = ls.tensor({0.5, 0.25, 1}, {dtype = "f32"})
        assert.are.equal(0.375, st.quantile(t, 0.25))
    end)

    it("moments match NumPy (population sd, ddof = 1 on request, skewness, excess kurtosis)",
       function()
        for _, case in ipairs(NUMPY) do
            near(st.mean(case.x), case.mean)
            near(st.sd(case.x), case.sd)
            near(st.sd(case.x, 1), case.sd1)
            near(st.skewness(case.x), case.skew, 1e-10)
            near(st.kurtosis(case.x), case.kurt, 1e-10)
        end
    end)

    it("IQR and Tukey's fences", function()
        local x = NUMPY[2].x
        local q1, q3 = NUMPY[2].q[4], NUMPY[2].q[7]
        near(st.iqr(x), q3 - q1)
        local lo, hi = st.fences(x)
        near(lo, q1 - 1.5 * (q3 - q1))
        near(hi, q3 + 1.5 * (q3 - q1))
        local lo3 = st.fences(x, 3)
        near(lo3, q1 - 3 * (q3 - q1))
    end)

    it("summary computes named sets and lists, in order", function()
        local case = NUMPY[3]
        local s = st.summary(case.x, "quartiles+fences")
        assert.are.same({"q1", "q2", "q3", "fence_lo", "fence_hi"},
                        {s[1][1], s[2][1], s[3][1], s[4][1], s[5][1]})
        assert.are.equal(case.q[4], s.q1)
        assert.are.equal(case.q[6], s.q2)
        assert.are.equal(case.q[7], s.q3)
        near(s.fence_hi, case.q[7] + 1.5 * (case.q[7] - case.q[4]))
        local p = st.summary(case.x, "quartiles+p5p95")
        assert.are.equal(case.q[2], p.p5)
        assert.are.equal(case.q[9], p.p95)
        local m = st.summary(case.x, "moments")
        near(m.sd, case.sd)
        near(m.kurt, case.kurt, 1e-10)
        local l = st.summary(case.x, {"n", "min", "max", "mean"})
        assert.are.equal(11, l.n)
        assert.are.equal(-0.2, l.min)
        assert.are.equal(1.3, l.max)
        assert.are.equal(4, #l)
    end)

    it("an empty sample gives NaN statistics and n = 0", function()
        local s = st.summary({}, "all")
        for _, e in ipairs(s) do assert.is_true(e[2] ~= e[2]) end
        assert.are.equal(0, st.summary(ls.zeros({0}, {dtype = "f64"}), {"n"}).n)
        local q = st.quantile({}, 0.5)
        assert.is_true(q ~= q)
    end)

    it("NaN in a sample makes every quantile NaN, as NumPy", function()
        local q = st.quantile({1, 0 / 0, 3}, {0.25, 0.5})
        assert.is_true(q[1] ~= q[1] and q[2] ~= q[2])
    end)

    it("rejects bad input with clear messages", function()
        assert.truthy(errmsg(st.quantile, {1, 2}, 1.5):find("quantile levels must be numbers in",
                                                             1, true))
        assert.truthy(errmsg(st.quantile, ls.zeros({2, 2}), 0.5):find("expected a 1-D tensor", 1,
                                                                       true))
        assert.truthy(errmsg(st.mean, {1, "a"}):find("element 2 is a string", 1, true))
        assert.truthy(errmsg(st.summary, {1}, "deciles"):find("unknown statistics set 'deciles'",
                                                              1, true))
        assert.truthy(errmsg(st.summary, {1}, {"q1", "q7"}):find("unknown statistic 'q7'", 1,
                                                                 true))
    end)
end)
