--- landscape.stats.describe: descriptive statistics on 1-D samples (part of ls.stats), for the
-- margin signatures of landscape.margins and for anything else that summarises a distribution.
--
--   local st = ls.stats
--   st.quantile(x, 0.25)                  -- NumPy's default (method = "linear") quantile
--   st.quantile(x, {0.05, 0.5, 0.95})     -- a list of quantiles
--   st.mean(x), st.sd(x [, ddof = 0]), st.var(x [, ddof = 0])
--   st.iqr(x), st.fences(x [, k = 1.5])   -- Tukey's fences: Q1 - k IQR, Q3 + k IQR
--   st.skewness(x), st.kurtosis(x)        -- population moments (kurtosis is the excess, Fisher's)
--   st.summary(x [, stats])               -- ordered {{name, value}, ...} plus name -> value
--
-- x is a 1-D tensor (any float or integer dtype; it is read as doubles) or a Lua list of numbers.
-- Every statistic of an empty sample is NaN (no error: a model that classifies no training point
-- correctly has an empty positive-margin sample, and its signature must still have every column).
-- NaN inside a sample propagates as NumPy's does for quantiles (the result is NaN).
local ls = require "landscape"

local M = {}

local NAN = 0 / 0

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end

-- A sorted copy of x as a Lua array of doubles, and whether it holds a NaN.
local function values(x, who)
    local t
    if ls.is_tensor(x) then
        if x.ndim ~= 1 then
            fail("%s: expected a 1-D tensor, got %d dims", who, x.ndim)
        end
        t = x:numel() > 0 and x:double():totable() or {}
    elseif type(x) == "table" then
        t = {}
        for i, v in ipairs(x) do
            if type(v) ~= "number" then
                fail("%s: element %d is a %s, not a number", who, i, type(v))
            end
            t[i] = v + 0.0
        end
    else
        fail("%s: expected a 1-D tensor or a list of numbers, got %s", who, type(x))
    end
    return t
end

local function sorted(x, who)
    local t = values(x, who)
    local has_nan = false
    for i = 1, #t do if t[i] ~= t[i] then has_nan = true end end
    if not has_nan then table.sort(t) end
    return t, has_nan
end

-- NumPy's default quantile (method "linear", Hyndman & Fan type 7): h = (n - 1) q, and the
-- interpolation between the neighbours a = v[floor(h)] and b = v[floor(h) + 1] is NumPy's _lerp:
-- a + (b - a) t for t < 0.5, and b - (b - a)(1 - t) otherwise, so the results agree to the last bit.
local function quantile_sorted(v, q)
    local n = #v
    if n == 0 then return NAN end
    local h = (n - 1) * q
    local lo = math.floor(h)
    local t = h - lo
    local a = v[lo + 1]
    local b = v[math.min(lo + 2, n)]
    local d = b - a
    if t >= 0.5 then return b - d * (1 - t) end
    return a + d * t
end

local function check_q(q, who)
    if type(q) ~= "number" or not (q >= 0 and q <= 1) then
        fail("%s: quantile levels must be numbers in [0, 1], got %s", who, tostring(q))
    end
    return q
end

--- stats.quantile(x, q) -> a number for a number q, a list for a list q. NumPy's default
-- (np.quantile(x, q), method = "linear"). q in [0, 1].
-- e.g. ls.stats.quantile({1, 2, 3, 4}, 0.5)   --> 2.5
function M.quantile(x, q)
    local v, has_nan = sorted(x, "quantile")
    if type(q) == "table" then
        local out = {}
        for i, qi in ipairs(q) do
            check_q(qi, "quantile")
            out[i] = has_nan and NAN or quantile_sorted(v, qi)
        end
        return out
    end
    check_q(q, "quantile")
    return has_nan and NAN or quantile_sorted(v, q)
end

--- stats.percentile(x, p): stats.quantile(x, p / 100), p in [0, 100] (a number or a list).
-- quantile with the level in percent (NumPy's percentile).
-- e.g. ls.stats.percentile({1, 2, 3, 4}, 50)   --> 2.5
function M.percentile(x, p)
    if type(p) == "table" then
        local q = {}
        for i, pi in ipairs(p) do q[i] = type(pi) == "number" and pi / 100 or pi end
        return M.quantile(x, q)
    end
    return M.quantile(x, type(p) == "number" and p / 100 or p)
end

local function mean_of(t)
    if #t == 0 then return NAN end
    local s = 0.0
    for i = 1, #t do s = s + t[i] end
    local m = s / #t
    -- one correction pass (the mean of the residuals) keeps full precision for large offsets
    local r = 0.0
    for i = 1, #t do r = r + (t[i] - m) end
    return m + r / #t
end

-- Central moment sums: sum (x - m)^k for k = 2, 3, 4.
local function central(t, m)
    local s2, s3, s4 = 0.0, 0.0, 0.0
    for i = 1, #t do
        local d = t[i] - m
        local d2 = d * d
        s2, s3, s4 = s2 + d2, s3 + d2 * d, s4 + d2 * d2
    end
    return s2, s3, s4
end

--- stats.mean(x)
-- The mean of a sample (a 1-D tensor or a list of numbers); NaN for an empty sample.
-- e.g. ls.stats.mean({1, 2, 3})   --> 2.0
function M.mean(x) return mean_of(values(x, "mean")) end

--- stats.var(x [, ddof = 0]): sum (x - mean)^2 / (n - ddof), NumPy's np.var (ddof 0 by default;
-- ddof = 1 gives torch's and R's sample variance). NaN when n - ddof <= 0.
-- e.g. ls.stats.var({1, 2, 3, 4}, 1)   --> 1.6667
function M.var(x, ddof)
    ddof = ddof or 0
    local t = values(x, "var")
    local n = #t
    if n - ddof <= 0 then return NAN end
    local s2 = central(t, mean_of(t))
    return s2 / (n - ddof)
end

--- stats.sd(x [, ddof = 0]): sqrt(stats.var(x, ddof)), NumPy's np.std.
-- The standard deviation: the square root of var(x, ddof) (ddof = 0 by default: the
-- population's).
-- e.g. ls.stats.sd({1, 3})   --> 1.0
function M.sd(x, ddof) return math.sqrt(M.var(x, ddof)) end

--- stats.skewness(x): the population skewness m3 / m2^1.5 (scipy.stats.skew, bias = True).
-- The population skewness (the third standardised moment), as scipy.stats.skew.
-- e.g. ls.stats.skewness({1, 2, 10})
function M.skewness(x)
    local t = values(x, "skewness")
    if #t == 0 then return NAN end
    local s2, s3 = central(t, mean_of(t))
    local n = #t
    return (s3 / n) / (s2 / n) ^ 1.5
end

--- stats.kurtosis(x): the excess kurtosis m4 / m2^2 - 3 (scipy.stats.kurtosis, fisher = True,
-- bias = True).
-- e.g. ls.stats.kurtosis({1, 2, 3, 4, 100})
function M.kurtosis(x)
    local t = values(x, "kurtosis")
    if #t == 0 then return NAN end
    local s2, _, s4 = central(t, mean_of(t))
    local n = #t
    return (s4 / n) / (s2 / n) ^ 2 - 3
end

--- stats.iqr(x): Q3 - Q1 (NumPy quantiles).
-- The interquartile range Q3 - Q1 (NumPy's linear quantiles).
-- e.g. ls.stats.iqr({1, 2, 3, 4, 5})   --> 2.0
function M.iqr(x)
    local q = M.quantile(x, {0.25, 0.75})
    return q[2] - q[1]
end

--- stats.fences(x [, k = 1.5]) -> lower, upper: Tukey's fences Q1 - k IQR and Q3 + k IQR.
-- Tukey's fences Q1 - k IQR and Q3 + k IQR (k = 1.5 by default): beyond them, outliers.
-- e.g. local lo, hi = ls.stats.fences(margins)
function M.fences(x, k)
    k = k or 1.5
    local q = M.quantile(x, {0.25, 0.75})
    local iqr = q[2] - q[1]
    return q[1] - k * iqr, q[2] + k * iqr
end

-- The statistics stats.summary knows, in their canonical order.
M.STATS = {"n", "min", "p5", "q1", "q2", "q3", "p95", "max", "fence_lo", "fence_hi", "iqr", "mean",
           "sd", "skew", "kurt"}

-- Named sets (the signatures of Jiang et al. 2019 and the reference's variants).
M.SETS = {
    ["quartiles+fences"] = {"q1", "q2", "q3", "fence_lo", "fence_hi"},
    ["quartiles+p5p95"] = {"p5", "q1", "q2", "q3", "p95"},
    ["moments"] = {"mean", "sd", "skew", "kurt"},
    ["all"] = {"p5", "q1", "q2", "q3", "p95", "fence_lo", "fence_hi", "mean", "sd"},
}

local KNOWN = {}
for _, s in ipairs(M.STATS) do KNOWN[s] = true end

--- stats.resolve(stats) -> a list of statistic names: a set name (stats.SETS: "quartiles+fences",
-- "quartiles+p5p95", "moments", "all"), or a list of names from stats.STATS. Errors on unknown
-- names.
-- e.g. local stats = ls.stats.resolve({"mean", "q25", "iqr"}, "signature")
function M.resolve(spec, who)
    who = who or "stats"
    spec = spec or "all"
    if type(spec) == "string" then
        local set = M.SETS[spec]
        if not set then
            local names = {}
            for k in pairs(M.SETS) do names[#names + 1] = k end
            table.sort(names)
            fail("%s: unknown statistics set '%s' (known: %s, or a list of %s)", who, spec,
                 table.concat(names, ", "), table.concat(M.STATS, ", "))
        end
        return {table.unpack(set)}
    end
    if type(spec) ~= "table" then
        fail("%s: stats must be a set name or a list of names, got %s", who, type(spec))
    end
    local out = {}
    for i, s in ipairs(spec) do
        if not KNOWN[s] then
            fail("%s: unknown statistic '%s' (known: %s)", who, tostring(s),
                 table.concat(M.STATS, ", "))
        end
        out[i] = s
    end
    return out
end

--- stats.summary(x [, stats = "all"]) -> an ordered list of {name, value} that also maps
-- name -> value. stats: see stats.resolve. Quantiles are NumPy's default, sd is population
-- (ddof 0), fences are Q3 + 1.5 IQR and Q1 - 1.5 IQR. An empty sample gives n = 0 and NaN
-- elsewhere.
-- e.g. for _, s in ipairs(ls.stats.summary(margins)) do print(s[1], s[2]) end
function M.summary(x, spec)
    local names = M.resolve(spec, "summary")
    local v, has_nan = sorted(x, "summary")
    local n = #v
    local function q(p) return has_nan and NAN or quantile_sorted(v, p) end
    local m = mean_of(v)
    local s2, s3, s4 = central(v, m)
    local compute = {
        n = function() return n end,
        min = function() return q(0) end,
        max = function() return q(1) end,
        p5 = function() return q(0.05) end,
        q1 = function() return q(0.25) end,
        q2 = function() return q(0.5) end,
        q3 = function() return q(0.75) end,
        p95 = function() return q(0.95) end,
        iqr = function() return q(0.75) - q(0.25) end,
        fence_lo = function() return q(0.25) - 1.5 * (q(0.75) - q(0.25)) end,
        fence_hi = function() return q(0.75) + 1.5 * (q(0.75) - q(0.25)) end,
        mean = function() return m end,
        sd = function() return n > 0 and math.sqrt(s2 / n) or NAN end,
        skew = function() return n > 0 and (s3 / n) / (s2 / n) ^ 1.5 or NAN end,
        kurt = function() return n > 0 and (s4 / n) / (s2 / n) ^ 2 - 3 or NAN end,
    }
    local out = {}
    for i, name in ipairs(names) do
        local val = compute[name]()
        out[i] = {name, val}
        out[name] = val
    end
    return out
end

return M
