-- ls.stats rank measures against SciPy, to 1e-12: Kendall's tau-b (scipy.stats.kendalltau) and
-- tau-a (the pair count in NumPy), Spearman with ties (spearmanr), Pearson (pearsonr), average
-- ranks (rankdata); and Jiang et al.'s granulated Kendall coefficient against an independent
-- Python implementation (itertools over the full factorial, complete slices only) on a grid with
-- replicates and dropped models.
local ls = require "landscape"
local py = require "sklearn_oracle"

local errmsg = py.errmsg

-- n values from a few levels (many ties) or continuous, seeded.
local function sample(n, seed, levels)
    local u = ls.rand({n}, {seed = seed, dtype = "f64"})
    if levels then u = (u * levels):long():double() end
    return u
end

describe("rank measures against SciPy", function()
    before_each(function()
        if not py.available() then pending(py.MISSING) end
    end)

    it("Kendall tau-b and tau-a, Spearman, Pearson, ranks; with and without ties", function()
        local cases = {
            {sample(60, 1, 4), sample(60, 2, 5)},         -- heavy ties on both sides
            {sample(97, 3), sample(97, 4, 3)},            -- ties on one side
            {sample(150, 5), sample(150, 6)},             -- none
        }
        cases[4] = {cases[3][1], cases[3][1] * 2 + sample(150, 7) * 0.3}   -- strongly related
        local src = {py.PRELUDE}
        for i, c in ipairs(cases) do
            src[#src + 1] = py.arrays({"a", c[1]}, {"b", c[2]})
            src[#src + 1] = [[
s = np.sign(a[:, None] - a[None, :]) * np.sign(b[:, None] - b[None, :])
n = len(a)
show(scipy.stats.kendalltau(a, b)[0], s.sum() / (n * (n - 1)), scipy.stats.spearmanr(a, b)[0],
     scipy.stats.pearsonr(a, b)[0])
show(scipy.stats.rankdata(a))
]]
        end
        local out = py.lines(table.concat(src))
        for i, c in ipairs(cases) do
            local want = py.nums(out[2 * i - 1])
            local got = {ls.stats.kendall_tau(c[1], c[2]),
                         ls.stats.kendall_tau(c[1], c[2], {variant = "a"}),
                         ls.stats.spearman(c[1], c[2]), ls.stats.pearson(c[1], c[2])}
            py.near(got, want, 1e-12, "case " .. i)
            py.near(ls.stats.rank(c[1]), py.nums(out[2 * i]), 0, "ranks " .. i)
        end
    end)

    it("takes Lua lists; undefined coefficients are NaN", function()
        assert.are.equal(1, ls.stats.kendall_tau({1, 2, 3}, {2, 4, 9}))
        local undefined = ls.stats.kendall_tau({1, 2, 3}, {5, 5, 5})
        assert.is_true(undefined ~= undefined)
        assert.are.equal(0, ls.stats.kendall_tau({1, 2, 3}, {5, 5, 5}, {variant = "a"}))
        assert.is_true(ls.stats.spearman({1}, {2}) ~= ls.stats.spearman({1}, {2}))
        assert.are.same({1.5, 1.5, 3}, ls.stats.rank({7, 7, 9}):totable())
    end)

    it("raises clear errors", function()
        assert.matches("kendall_tau: the first sample has a NaN at row 2",
                       errmsg(ls.stats.kendall_tau, {1, 0 / 0, 3}, {1, 2, 3}))
        assert.matches("spearman: the samples differ in length %(3 and 2%)",
                       errmsg(ls.stats.spearman, {1, 2, 3}, {1, 2}))
        assert.matches("pearson: the second sample%[2%] is a string",
                       errmsg(ls.stats.pearson, {1, 2}, {1, "x"}))
        assert.matches("kendall_tau: variant must be",
                       errmsg(ls.stats.kendall_tau, {1, 2}, {1, 2}, {variant = "c"}))
    end)
end)

describe("granulated_tau (Jiang et al. 2020's Psi)", function()
    -- a 3 x 2 x 2 grid with 2 seeds per cell, a measure and a target; both seeds of one cell (rows 5
    -- and 6) and one seed of another (row 17) dropped
    local function grid()
        local rows = {}
        local r = 0
        for _, lr in ipairs({0.01, 0.03, 0.1}) do
            for _, width in ipairs({64, 256}) do
                for _, bn in ipairs({"off", "on"}) do
                    for seed = 1, 2 do
                        r = r + 1
                        local u = ls.rand({2}, {seed = 100 + r, dtype = "f64"}):totable()
                        local gap = 10 * lr + width / 256 + (bn == "on" and 0.5 or 0) + u[1]
                        rows[#rows + 1] = {lr = lr, width = width, bn = bn, seed = seed, gap = gap,
                                           pred = gap + 2 * u[2] - 1}
                    end
                end
            end
        end
        local kept = {}
        for i, row in ipairs(rows) do
            if i ~= 5 and i ~= 6 and i ~= 17 then kept[#kept + 1] = row end
        end
        return ls.table.from_rows(kept, {columns = {"lr", "width", "bn", "seed", "gap", "pred"}})
    end

    before_each(function()
        if not py.available() then pending(py.MISSING) end
    end)

    it("matches an independent implementation, tau-a and tau-b", function()
        local t = grid()
        local factors = {"lr", "width", "bn"}
        local opts = {factors = factors, measure = "pred", target = "gap"}
        local psi, detail = ls.stats.granulated_tau(t, opts)
        opts.tau = "b"
        local psib, detailb = ls.stats.granulated_tau(t, opts)
        local lr, width, bn, gap, pred = {}, {}, {}, {}, {}
        for i, row in t:rows() do
            lr[i], width[i], bn[i], gap[i], pred[i] = row.lr, row.width, row.bn, row.gap, row.pred
        end
        local out = py.lines(py.PRELUDE .. string.format(
            "cols = {'lr': %s, 'width': %s, 'bn': %s}\ngap = np.array(%s)\npred = np.array(%s)\n",
            py.lit(lr), py.lit(width), py.lit(bn), py.lit(gap), py.lit(pred)) .. [[
import itertools
def tau_a(a, b):
    n = len(a)
    return sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
               for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
def tau_b(a, b):
    return scipy.stats.kendalltau(a, b)[0]
names = ['lr', 'width', 'bn']
for tau in (tau_a, tau_b):
    psis = []
    for f in names:
        others = [o for o in names if o != f]
        levels = set(cols[f])
        vals = []
        incomplete = 0
        for combo in itertools.product(*[sorted(set(cols[o]), key=str) for o in others]):
            idx = [i for i in range(len(gap)) if all(cols[o][i] == c for o, c in zip(others, combo))]
            if not idx:
                continue
            if set(cols[f][i] for i in idx) != levels:
                incomplete += 1
                continue
            v = tau(pred[idx], gap[idx])
            if not np.isnan(v):
                vals.append(v)
        psis.append(np.mean(vals))
        show(np.mean(vals), len(vals), incomplete)
    show(np.mean(psis))
]])
        for f = 1, 3 do
            local w = py.nums(out[f])
            local d = detail.factors[f]
            py.near({d.psi, d.slices, d.incomplete}, w, 1e-12, "tau-a factor " .. factors[f])
            local wb = py.nums(out[4 + f])
            py.near({detailb.factors[f].psi, detailb.factors[f].slices}, {wb[1], wb[2]}, 1e-12,
                    "tau-b factor " .. factors[f])
        end
        py.near({psi}, py.nums(out[4]), 1e-12, "Psi a")
        py.near({psib}, py.nums(out[8]), 1e-12, "Psi b")
        assert.are.equal(psi, detail.psi)
        -- the dropped rows make some slices incomplete
        assert.is_true(detail.factors[1].incomplete > 0)
        assert.matches("granulated Kendall %(tau%-a%) of pred against gap: Psi = ", tostring(detail))
    end)

    it("raises clear errors", function()
        local t = grid()
        local g = ls.stats.granulated_tau
        assert.matches("granulated_tau: factor 'seed' has one level",
                       errmsg(g, t:filter({seed = 1}),
                              {factors = {"lr", "seed"}, measure = "pred", target = "gap"}))
        assert.matches("granulated_tau: option 'measure' must be a column name",
                       errmsg(g, t, {factors = {"lr"}, target = "gap"}))
        assert.matches("table:column: no column 'gapp'",
                       errmsg(g, t, {factors = {"lr"}, measure = "pred", target = "gapp"}))
        local tn = t:derive("pred", function(row, i) return i == 4 and 0 / 0 or row.pred end)
        assert.matches("granulated_tau: column 'pred' has a NaN at row 4",
                       errmsg(g, tn, {factors = {"lr"}, measure = "pred", target = "gap"}))
    end)
end)
