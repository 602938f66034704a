-- NumPy, SciPy and scikit-learn as test oracles for ls.stats (the stats_*_spec files): torch_oracle's
-- runner (a Python script from the spec, run under `env -u LD_PRELOAD`, its output lines) with the
-- availability check of these packages, the parsing of the lines it prints, and the fixtures the
-- specs share (problem, errmsg).
--
--   local py = require "sklearn_oracle"
--   if not py.available() then return pending(py.MISSING) end
--   local out = py.lines(py.PRELUDE .. "X = np.array(" .. py.lit(X) .. ")\nshow(X.sum(0))\n")
--   local v = py.nums(out[1])          -- the numbers of a line, as Lua numbers
--
-- PRELUDE imports numpy as np, scipy.stats, sklearn's linear models, and defines show(*arrays),
-- which prints every value of its arguments on one line with all the digits of a float64 (repr),
-- NaN as "nan".
local ls = require "landscape"
local torch = require "torch_oracle"

local M = {run = torch.run, lines = torch.lines, COMMAND = torch.COMMAND}

M.MISSING = "python3-numpy, python3-scipy or python3-sklearn is not installed"

local has
function M.available()
  if has == nil then
    local check = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None " ..
                  "for m in (\"numpy\", \"scipy\", \"sklearn\")))"
    has = os.execute(M.COMMAND .. " -c '" .. check .. "' >/dev/null 2>&1") == true
  end
  return has
end

M.PRELUDE = [[
import sys, warnings
import numpy as np
import scipy.stats
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from sklearn.metrics import r2_score, mean_squared_error, mean_absolute_error
warnings.simplefilter("ignore")
def show(*arrays):
    vals = []
    for a in arrays:
        vals.extend(float(v) for v in np.ravel(np.asarray(a, dtype=np.float64)))
    print(" ".join(repr(v) for v in vals))
]]

-- A Python literal of a Tensor or a (nested) Lua list of numbers, every number with 17 digits.
function M.lit(x)
  if type(x) ~= "table" then return torch.lit(x) end
  local function rec(v)
    if type(v) == "number" then
      if v ~= v then return "float('nan')" end
      return string.format("%.17g", v)
    end
    if type(v) == "string" then return string.format("%q", v) end
    local parts = {}
    for i, e in ipairs(v) do parts[i] = rec(e) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return rec(x)
end

-- Python assignments `name = np.array(...)` of the pairs {name, value} given (Tensors or lists).
function M.arrays(...)
  local out = {}
  for i, nv in ipairs({...}) do
    out[i] = string.format("%s = np.array(%s)\n", nv[1], M.lit(nv[2]))
  end
  return table.concat(out)
end

-- The numbers of one output line.
function M.nums(line)
  local out = {}
  for w in assert(line, "missing output line"):gmatch("%S+") do
    out[#out + 1] = w == "nan" and 0 / 0 or assert(tonumber(w), "not a number: " .. w)
  end
  return out
end

-- Asserts |got[i] - want[i]| <= tol * max(1, |want[i]|) for every i (NaN must match NaN); got is a
-- Tensor or a list. what names the quantity in the failure.
function M.near(got, want, tol, what)
  if type(got) ~= "table" then got = got:reshape(-1):totable() end
  assert(#got == #want, string.format("%s: %d values, %d expected", what, #got, #want))
  for i = 1, #want do
    local a, b = got[i], want[i]
    local ok = (a ~= a and b ~= b) or math.abs(a - b) <= tol * math.max(1, math.abs(b))
    assert(ok, string.format("%s[%d]: got %.17g, want %.17g (tol %g)", what, i, a, b, tol))
  end
end

-- A regression problem: X [n x p] Gaussian from seed; with collinear = true its last column is the
-- one before plus 0.05 noise; y = X (0.3, 0.6, ..., 0.3 p) + noise * N(0, 1) + 2.5.
function M.problem(n, p, seed, opts)
  opts = opts or {}
  local X = ls.randn({n, p}, {seed = seed, dtype = "f64"})
  if opts.collinear and p >= 2 then
    X:select(2, p):copy(X:select(2, p - 1) + ls.randn({n}, {seed = seed + 1, dtype = "f64"}) * 0.05)
  end
  local w = ls.arange(1, p + 1, {dtype = "f64"}) * 0.3
  local y = X:matmul(w) + ls.randn({n}, {seed = seed + 2, dtype = "f64"}) * (opts.noise or 1) + 2.5
  return X, y
end

-- The message of the error fn(...) raises (asserts that it raises).
function M.errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

return M
