--- gg.report: --analyze of scripts/gg_study.lua. Reads OUT/models.csv, runs gg.analysis, decides
-- each claim of the abstract by the rule written next to it (docs/study.md, "The claims"), and
-- writes OUT/claims.csv, OUT/claims.md, OUT/analysis/*.csv and OUT/figures/*; prints the claims
-- table.
--
--   local report = require "gg.report"
--   report.main(study, opts, {factors = {...}})      -- the --analyze action; returns 0 or 1
--   local claims = report.claims(res, {command = ..., commit = ...})  -- rows, from an analysis
local ls = require "landscape"
local fs = require "landscape.io.fs"
local merge = require "landscape.study.merge"
local store = require "landscape.study.store"
local A = require "gg.analysis"

local M = {}

local NAN = 0 / 0
local function f2(v) return v == v and string.format("%.2f", v) or "n/a" end
local function f3(v) return v == v and string.format("%.3f", v) or "n/a" end

local function by_set(rows, set, frac)
    for _, r in ipairs(rows) do
        if r.set == set and (frac == nil or r.frac == frac) then return r end
    end
end

local function set_result(res, name)
    for _, r in ipairs(res.set_results) do if r.set.name == name then return r end end
end

--- The claims of the abstract (and the design check D of reference §6.1), each with its rule.
-- ctx: command, commit. Returns a list of rows {id, claim, abstract, ours, holds, rule, command,
-- commit}.
function M.claims(res, ctx)
    local main = res.main
    local rows = {}
    local function add(r)
        r.command, r.commit = ctx.command, ctx.commit
        rows[#rows + 1] = r
    end
    local perm = res.permutation
    -- 1. the margin distribution is strongly related to the gap
    local p = perm and perm.p_value or NAN
    local holds1 = (p <= 0.01 and main.cv_r2 >= 0.5) and "yes"
        or (p <= 0.01 and "partly") or "no"
    add{id = "1", claim = "the training-set margin distribution is strongly related to GG",
        abstract = "strongly related",
        ours = string.format("R2_cv %s, Kendall tau %s, permutation p %s (%d networks)",
                             f2(main.cv_r2), f2(main.tau), perm and string.format("%.4f", p)
                             or "not run", res.n),
        holds = holds1,
        rule = "yes: permutation p <= 0.01 and R2_cv >= 0.5; partly: p <= 0.01 only"}
    -- 2. a linear model on 377 networks reaches R² = 0.89
    local in_ci = main.cv_hi >= 0.89
    local holds2 = in_ci and "yes" or (main.r2 >= 0.89 and "partly") or "no"
    add{id = "2", claim = "a linear model fitted on 377 networks gives R2 = 0.89",
        abstract = "0.89",
        ours = string.format("R2_cv %s +- %s [95%% CI %s, %s]; in-sample %s (adj. %s); 90/10 "
                             .. "splits %s +- %s; N = %d, p = %d",
                             f2(main.cv_r2), f3(main.cv_r2_sd), f2(main.cv_lo), f2(main.cv_hi),
                             f2(main.r2), f2(main.adj_r2), f2(main.split_r2),
                             f2(main.split_r2_sd), main.n, main.p),
        holds = holds2,
        rule = "yes: 0.89 is within or below the 95% bootstrap CI of R2_cv (10-fold x 10); "
            .. "partly: only the in-sample R2 reaches 0.89"}
    -- 3. the correlation holds only at the last iterations
    local final = by_set(res.by_t, A.MAIN, 1.0)
    local parts, halved, disjoint = {}, true, true
    for _, fr in ipairs(A.FRACTIONS) do
        local r = by_set(res.by_t, A.MAIN, fr)
        if r then
            parts[#parts + 1] = string.format("%g%%: %s", 100 * fr, f2(r.cv_r2))
            if fr <= 0.25 and final then
                if not (r.cv_r2 <= 0.5 * final.cv_r2) then halved = false end
                if not (r.cv_hi < final.cv_lo) then disjoint = false end
            end
        end
    end
    local usable = final and final.cv_r2 >= 0.5
    local holds3 = not usable and "n/a" or (halved and disjoint and "yes")
        or (disjoint and "partly") or "no"
    add{id = "3", claim = "margin statistics correlate with GG only at the last iterations",
        abstract = "only at the last iterations",
        ours = "R2_cv at " .. table.concat(parts, ", "),
        holds = holds3,
        rule = "yes: R2_cv at 10% and 25% of training is at most half of R2_cv at 100%, with "
            .. "disjoint 95% CIs; partly: the CIs are disjoint (lower early) but not halved; "
            .. "n/a: R2_cv at 100% is below 0.5 (no predictor to speak of)"}
    -- 4. the final predictor does not transfer to earlier checkpoints
    local tparts, t_low, t_worse = {}, true, true
    for _, tr in ipairs(res.transfer) do
        if tr.frac < 1 then
            tparts[#tparts + 1] = string.format("%g%%: %s", 100 * tr.frac, f2(tr.r2_heldout))
            if tr.frac <= 0.25 and final then
                if not (tr.r2_heldout <= 0.5 * final.cv_r2) then t_low = false end
                local refit = by_set(res.by_t, A.MAIN, tr.frac)
                if not (refit and tr.r2_heldout < refit.cv_r2 - 0.1) then t_worse = false end
            end
        end
    end
    local holds4 = not usable and "n/a" or (t_low and "yes") or (t_worse and "partly") or "no"
    add{id = "4", claim = "the GG predictor does not generalise to networks trained for fewer "
            .. "iterations", abstract = "does not generalise",
        ours = "R2 of the 100% predictor on held-out networks at " .. table.concat(tparts, ", "),
        holds = holds4,
        rule = "yes: at 10% and 25% the final predictor's R2 (fitted on the other folds' final "
            .. "checkpoints) is at most half of R2_cv at 100%; partly: it is more than 0.1 below "
            .. "a refit at that checkpoint; n/a: R2_cv at 100% is below 0.5"}
    -- D. margins beat the hyperparameters on held-out factor levels (reference §6.1, not a claim
    -- of the abstract)
    local wins, total, lparts = 0, 0, {}
    local seen = {}
    for _, l in ipairs(res.lolo) do
        if not seen[l.factor] then
            seen[l.factor] = true
            local m, h
            for _, x in ipairs(res.lolo) do
                if x.factor == l.factor and x.set == A.MAIN then m = x.pooled_r2 end
                if x.factor == l.factor and x.set == "hyperparameters" then h = x.pooled_r2 end
            end
            if m and h then
                total = total + 1
                if m > h then wins = wins + 1 end
                lparts[#lparts + 1] = string.format("%s %s/%s", l.factor, f2(m), f2(h))
            end
        end
    end
    add{id = "D", claim = "(design check, not in the abstract) margins predict GG on held-out "
            .. "factor levels better than the hyperparameters",
        abstract = "-",
        ours = string.format("margins better for %d of %d factors (pooled leave-one-level-out "
                             .. "R2, margins/hyperparameters: %s)", wins, total,
                             table.concat(lparts, ", ")),
        holds = total == 0 and "n/a" or (wins == total and "yes")
            or (wins * 2 > total and "partly") or "no",
        rule = "yes: better for every factor; partly: for most"}
    return rows
end

local function pad(s, n)
    s = tostring(s)
    if #s >= n then return s end
    return s .. string.rep(" ", n - #s)
end

-- Word-wrap s to lines of at most w characters.
local function wrap(s, w)
    local lines, line = {}, ""
    for word in tostring(s):gmatch("%S+") do
        if #line > 0 and #line + 1 + #word > w then
            lines[#lines + 1] = line
            line = word
        else
            line = #line > 0 and (line .. " " .. word) or word
        end
    end
    if #line > 0 then lines[#lines + 1] = line end
    return lines
end

--- The claims table as text for the terminal.
function M.format_claims(claims)
    local out = {}
    local W = {3, 34, 12, 52, 6}
    local head = {"#", "claim", "abstract", "ours", "holds"}
    local function line(cells)
        local wrapped, h = {}, 1
        for i, c in ipairs(cells) do
            wrapped[i] = wrap(c, W[i])
            h = math.max(h, #wrapped[i])
        end
        for k = 1, h do
            local parts = {}
            for i = 1, #cells do parts[i] = pad(wrapped[i][k] or "", W[i]) end
            out[#out + 1] = table.concat(parts, " | ")
        end
    end
    line(head)
    local sep = {}
    for i, w in ipairs(W) do sep[i] = string.rep("-", w) end
    out[#out + 1] = table.concat(sep, "-+-")
    for _, c in ipairs(claims) do line({c.id, c.claim, c.abstract, c.ours, c.holds}) end
    return table.concat(out, "\n")
end

--- The claims table in Markdown (docs/study.md).
function M.markdown(claims)
    local out = {"| # | claim | abstract | ours | holds | rule |", "|---|---|---|---|---|---|"}
    for _, c in ipairs(claims) do
        out[#out + 1] = string.format("| %s | %s | %s | %s | **%s** | %s |", c.id, c.claim,
                                      c.abstract, c.ours, c.holds, c.rule)
    end
    return table.concat(out, "\n") .. "\n"
end

--- Flat rows of every analysis table, by file name (written under OUT/analysis/).
function M.tables(res)
    local t = {}
    t.selection = res.selection
    local sets = {}
    for _, r in ipairs(res.set_results) do
        local row = {set = r.set.name, kind = r.set.kind, label = r.set.label, n = r.n, p = r.p,
                     r2 = r.r2, adj_r2 = r.adj_r2, rank = r.rank, cv_r2 = r.cv_r2,
                     cv_r2_sd = r.cv_r2_sd, cv_lo = r.cv_lo, cv_hi = r.cv_hi, rmse = r.rmse,
                     mae = r.mae, kendall_tau = r.tau, split_r2 = r.split_r2,
                     split_r2_sd = r.split_r2_sd, ridge_cv_r2 = r.ridge_cv_r2 or NAN}
        for _, st in ipairs(r.strata or {}) do
            local g = tostring(st.group)
            row["cv_r2_noise" .. g] = st.r2
            row["cv_rmse_noise" .. g], row["cv_bias_noise" .. g] = st.rmse, st.bias
        end
        sets[#sets + 1] = row
    end
    t.feature_sets = sets
    t.by_checkpoint = res.by_t
    t.within_noise = res.within
    t.transfer = res.transfer
    t.leave_level_out = res.lolo
    t.granulated = res.granulated
    t.factors_by_checkpoint = res.factors_by_t
    local nf = {}
    for k, v in pairs(res.noise_floor) do nf[#nf + 1] = {quantity = k, value = v} end
    table.sort(nf, function(a, b) return a.quantity < b.quantity end)
    t.noise_floor = nf
    if res.permutation then
        t.permutation = {{statistic = res.permutation.statistic, r2 = res.permutation.r2,
                          null_mean = res.permutation.null_mean,
                          p_value = res.permutation.p_value,
                          permutations = res.permutation.permutations}}
    end
    local coef = {}
    local fit = res.main.fit
    for j, name in ipairs(res.sets[1].columns) do
        coef[#coef + 1] = {feature = name, coef = fit.coef[j], stderr = fit.stderr[j]}
    end
    t.coefficients = coef
    return t
end

-- The figures: predicted (out of fold) against measured GG at 100 %; R²_cv against the checkpoint;
-- the final predictor at earlier checkpoints against a refit there.
function M.figures(res, final, dir)
    local files = {}
    local pts = {}
    local oof = res.main.cv.oof:totable()
    local gap, noise = final:values("gap"), final:values("noise")
    for i = 1, #oof do
        pts[i] = {predicted = oof[i], gap = gap[i],
                  ["label noise"] = string.format("%g", noise[i])}
    end
    local _, _, f1 = ls.plot.scatter(pts, {x = "predicted", y = "gap", group = "label noise",
                                           fit = true, diagonal = true,
                                           out = fs.join(dir, "predicted_vs_measured"),
                                           formats = {"png", "pdf"},
                                           xlabel = "predicted GG (out of fold), pp",
                                           ylabel = "measured GG, pp"})
    local lines = {}
    for _, r in ipairs(res.by_t) do
        lines[#lines + 1] = {checkpoint = 100 * r.frac, r2 = r.cv_r2, features = r.set,
                             half = (r.cv_hi - r.cv_lo) / 2}
    end
    local _, _, f2_ = ls.plot.lines(lines, {x = "checkpoint", y = "r2", group = "features",
                                           yerr = "half", out = fs.join(dir, "r2_by_checkpoint"),
                                           formats = {"png", "pdf"},
                                           xlabel = "checkpoint, % of the budget",
                                           ylabel = "held-out R^2 (10-fold x 10, 95% CI)",
                                           key = "bottom left"})
    local tl = {}
    for _, r in ipairs(res.transfer) do
        tl[#tl + 1] = {checkpoint = 100 * r.frac, r2 = r.r2_heldout,
                       predictor = "final predictor"}
        local refit = by_set(res.by_t, A.MAIN, r.frac)
        if refit then
            tl[#tl + 1] = {checkpoint = 100 * r.frac, r2 = refit.cv_r2,
                           predictor = "refit at the checkpoint"}
        end
    end
    local _, _, f3_ = ls.plot.lines(tl, {x = "checkpoint", y = "r2", group = "predictor",
                                        out = fs.join(dir, "transfer"), formats = {"png", "pdf"},
                                        xlabel = "checkpoint, % of the budget",
                                        ylabel = "held-out R^2 (10-fold x 10)",
                                        key = "bottom right"})
    for _, l in ipairs({f1, f2_, f3_}) do for _, f in ipairs(l) do files[#files + 1] = f end end
    return files
end

--- Per-job timings from the runner's records (rows), their summary, and the wall time two workers
-- would take on a quiet machine: the runner's cost-ordered queue on 2 workers, each job taking its
-- measured CPU time.
function M.timings(study, jobs, workers)
    local st = merge.status(study, jobs)
    local rows, cpu = {}, {}
    local costs = {}
    for i, j in ipairs(jobs) do
        local rec = st.records[i]
        if rec and st.states[i] == "done" then
            rows[#rows + 1] = {job = j.key, seconds = rec.seconds, cpu_seconds = rec.cpu_seconds,
                               max_rss_mib = rec.max_rss_mib, worker = rec.worker,
                               width = j.config.width, depth = j.config.depth,
                               batch = j.config.batch, n = j.config.n}
            cpu[#cpu + 1] = rec.cpu_seconds or NAN
            costs[#costs + 1] = {c = study.cost and study.cost(j.config) or 1,
                                 t = rec.cpu_seconds or 0, i = i}
        end
    end
    if #rows == 0 then return rows, nil end
    local s = {}
    for i, v in ipairs(cpu) do s[i] = v end
    table.sort(s)
    local function q(p) return ls.stats.quantile(s, p) end
    local total, rss = 0, 0
    for _, v in ipairs(s) do total = total + v end
    for _, r in ipairs(rows) do rss = math.max(rss, r.max_rss_mib or 0) end
    table.sort(costs, function(a, b) if a.c ~= b.c then return a.c > b.c end return a.i < b.i end)
    local load = {}
    for w = 1, workers do load[w] = 0 end
    for _, c in ipairs(costs) do
        local k = 1
        for w = 2, workers do if load[w] < load[k] then k = w end end
        load[k] = load[k] + c.t
    end
    local makespan = 0
    for _, l in ipairs(load) do makespan = math.max(makespan, l) end
    return rows, {jobs = #rows, cpu_total = total, cpu_min = s[1], cpu_p10 = q(0.1),
                  cpu_median = q(0.5), cpu_p90 = q(0.9), cpu_max = s[#s], max_rss_mib = rss,
                  workers = workers, quiet_wall = makespan}
end

--- The --analyze action.
function M.main(study, opts, cfg)
    local out = study.out
    local csv_path = fs.join(out, "models.csv")
    local jobs = study:jobs()
    local st = merge.status(study, jobs)
    if st.done + st.failed < st.total then
        io.stderr:write(string.format("%s: %d of %d jobs are unfinished; run the study first "
                                      .. "(the same command without --analyze)\n", study.name,
                                      st.total - st.done - st.failed, st.total))
        return 1
    end
    if not fs.exists(csv_path) then merge.run(study, jobs) end
    local t0 = ls.clock()
    local t = ls.table.read_csv(csv_path)
    local target = opts.grid == "full" and 377 or nil
    local res = A.run(t, {factors = cfg.factors, target_n = target,
                          permutations = opts.permutations})
    local eng = merge.engine()
    local command = string.format("landscape scripts/gg_study.lua --grid %s --lr-scaling %s "
                                  .. "--out %s --analyze", opts.grid, opts.lr_scaling, out)
    local commit = (eng.commit or "unknown") .. (eng.dirty and " (dirty)" or "")
    local claims = M.claims(res, {command = command, commit = commit})
    local adir = fs.join(out, "analysis")
    fs.mkdir_p(adir)
    ls.csv.write(fs.join(out, "claims.csv"), claims,
                 {columns = {"id", "claim", "abstract", "ours", "holds", "rule", "command",
                             "commit"}})
    for name, rows in pairs(M.tables(res)) do
        if #rows > 0 then ls.csv.write(fs.join(adir, name .. ".csv"), rows) end
    end
    local trows, tsum = M.timings(study, jobs, 2)
    if #trows > 0 then ls.csv.write(fs.join(adir, "timings.csv"), trows) end
    local files = {}
    if opts.figures then
        local final = t:filter(function(r) return r.frac == 1 and (r.replicate or 1) == 1 end)
        local keep = {}
        for _, s in ipairs(res.selection) do if s.kept == 1 then keep[s.job] = true end end
        final = final:filter(function(r) return keep[r.job] end):sort_by("job")
        local ok, err = pcall(function()
            fs.mkdir_p(fs.join(out, "figures"))
            files = M.figures(res, final, fs.join(out, "figures"))
        end)
        if not ok then io.stderr:write("figures: ", tostring(err), "\n") end
    end
    local md = {"# Generalization-gap study: claims\n",
                string.format("%d networks analysed (%s); `%s` at commit %s.\n", res.n,
                              out, command, commit), M.markdown(claims)}
    if tsum then
        md[#md + 1] = string.format("\nPer-job CPU time (s): min %.2f, p10 %.2f, median %.2f, "
                                    .. "p90 %.2f, max %.2f, total %.0f over %d jobs; peak RSS of "
                                    .. "a worker %.0f MiB; 2 workers on a quiet machine: about "
                                    .. "%.0f s of jobs.\n", tsum.cpu_min, tsum.cpu_p10,
                                    tsum.cpu_median, tsum.cpu_p90, tsum.cpu_max, tsum.cpu_total,
                                    tsum.jobs, tsum.max_rss_mib, tsum.quiet_wall)
    end
    store.write_atomic(fs.join(out, "claims.md"), table.concat(md, "\n"))
    print(M.format_claims(claims))
    print(string.format("\n%d networks (of %d trained at 100 %%); main fit: R2 %.3f (adj. %.3f), "
                        .. "R2_cv %.3f +- %.3f, 90/10 %.3f; noise floor: test sampling sd %.2f pp, "
                        .. "seed sd %s pp (%d pairs), R2 ceiling %s",
                        res.n, #res.selection, res.main.r2, res.main.adj_r2, res.main.cv_r2,
                        res.main.cv_r2_sd, res.main.split_r2, res.noise_floor.test_sampling_sd,
                        f2(res.noise_floor.seed_sd or NAN), res.noise_floor.pairs,
                        f3(res.noise_floor.r2_ceiling or NAN)))
    if tsum then
        print(string.format("jobs: CPU median %.2f s, p90 %.2f s, max %.2f s, total %.0f s; "
                            .. "quiet 2-worker estimate %.0f s; peak RSS %.0f MiB",
                            tsum.cpu_median, tsum.cpu_p90, tsum.cpu_max, tsum.cpu_total,
                            tsum.quiet_wall, tsum.max_rss_mib))
    end
    print(string.format("wrote %s, %s, %s/*.csv%s (analysis %.1f s)", fs.join(out, "claims.csv"),
                        fs.join(out, "claims.md"), adir,
                        #files > 0 and (", " .. fs.join(out, "figures") .. "/*") or "",
                        ls.clock() - t0))
    return 0
end

return M
