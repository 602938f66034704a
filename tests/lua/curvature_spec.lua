-- ls.curvature on dense operators with known spectra: Lanczos (all four `which`), power iteration,
-- Hutchinson / Hutch++ trace, diagonal, SLQ density and moments, reproducibility for a fixed seed,
-- recorded settings, and errors (including an error raised inside a Lua matvec, which must propagate
-- unchanged and leave the estimator usable).
local ls = require "landscape"
local cv = require "landscape.analysis.curvature"

-- symmetric A = Q diag(lam) Q^T with Q a product of Givens rotations (deterministic, orthogonal)
local function sym(lam)
  local n = #lam
  local A = {}
  for i = 1, n do A[i] = {} for j = 1, n do A[i][j] = (i == j) and lam[i] or 0 end end
  for s = 1, 3 * n do
    local p, q = (s * 7) % n + 1, (s * 13 + 5) % n + 1
    if p ~= q then
      local th = 0.3 + 0.1 * s
      local c, sn = math.cos(th), math.sin(th)
      for k = 1, n do   -- rows p, q
        local a, b = A[p][k], A[q][k]
        A[p][k], A[q][k] = c * a - sn * b, sn * a + c * b
      end
      for k = 1, n do   -- columns p, q
        local a, b = A[k][p], A[k][q]
        A[k][p], A[k][q] = c * a - sn * b, sn * a + c * b
      end
    end
  end
  return ls.tensor(A, {dtype = "f64"})
end

local lam = {}
for i = 1, 20 do lam[i] = i * 0.5 - 3 end   -- -2.5 .. 7
lam[20], lam[1] = 12, -8
local A = sym(lam)
local trueTrace = 0
for _, x in ipairs(lam) do trueTrace = trueTrace + x end

local function lua_op(M)
  return cv.operator{n = M:size(1), dtype = M:type(), matvec = function(v) return M:matmul(v) end}
end

describe("curvature eigs (Lanczos)", function()
  it("finds extreme eigenvalues at both ends, through C and Lua matvecs", function()
    for _, op in ipairs{cv.dense(A), lua_op(A)} do
      local r = op:eigs{k = 2}
      assert.is_true(r.converged)
      assert.is_near(12, r.values[1], 1e-8 * 12)
      assert.is_near(6.5, r.values[2], 1e-8 * 7)
      local s = op:eigs{k = 2, which = "smallest"}
      assert.is_near(-8, s.values[1], 1e-8 * 8)
      assert.is_near(-2, s.values[2], 1e-8 * 2)
      local m = op:eigs{k = 1, which = "magnitude"}
      assert.is_near(12, m.values[1], 1e-8 * 12)
      local b = op:eigs{k = 2, which = "both"}
      assert.is_near(12, b.values[1], 1e-8 * 12)
      assert.is_near(-8, b.values[2], 1e-8 * 8)
    end
  end)

  it("returns unit eigenvectors with small residuals and records its settings", function()
    local r = cv.dense(A):eigs{k = 1, seed = 3}
    local v = r.vectors[1]
    assert.is_near(1, v:dot(v):item(), 1e-10)
    local res = (A:matmul(v) - v * r.values[1]):norm():item()
    assert.is_true(res < 1e-4)
    assert.are.equal("largest", r.which)
    assert.are.equal(3, r.seed)
    assert.are.equal(1e-6, r.tol)
    assert.are.equal(20, r.max_iter)
    assert.are.equal("lanczos", r.method)
    assert.is_true(r.matvecs >= 1 and r.matvecs <= 20)
  end)

  it("restarts a basis of ncv vectors (thick restart) and still finds the pairs", function()
    local r = cv.dense(A):eigs{k = 2, ncv = 4, tol = 1e-10, max_iter = 200}
    assert.is_true(r.converged)
    assert.is_true(r.matvecs > 4)
    assert.is_near(12, r.values[1], 1e-8 * 12)
    assert.is_near(6.5, r.values[2], 1e-8 * 7)
    assert.matches("ncv", select(2, pcall(function() cv.dense(A):eigs{ncv = 0} end)))
  end)

  it("keeps an f32 operator's basis in f32: its values to f32 accuracy, as many products", function()
    local A32 = A:cast("f32")
    local A32d = A32:cast("f64")   -- the f32 operator, exactly
    for _, o in ipairs{{k = 2, tol = 1e-5}, {k = 2, ncv = 4, tol = 1e-5, max_iter = 200},
                       {k = 4, which = "both", ncv = 8, tol = 1e-5, max_iter = 200}} do
      for _, op in ipairs{cv.dense(A32), lua_op(A32)} do
        local r, r64 = op:eigs(o), cv.dense(A32d):eigs(o)
        assert.is_true(r.converged)
        assert.are.equal(r64.matvecs, r.matvecs)
        for i = 1, o.k do
          assert.is_near(r64.values[i], r.values[i], 1e-6 * 12)
          local v = r.vectors[i]
          assert.are.equal("f32", v:type())
          local vd = v:cast("f64")
          local res = (A32d:matmul(vd) - vd * r.values[i]):norm():item() / vd:norm():item()
          assert.is_true(res <= 2 * o.tol * math.abs(r.values[i]) + 1e-5)
        end
      end
    end
  end)
end)

describe("curvature Lua matvec argument", function()
  -- The estimators hand a Lua matvec their input vector itself (no copy) and write the next input
  -- into a fresh vector while Lua holds the old one: a kept v never changes, and a matvec that
  -- overwrites its v after using it changes nothing.
  it("may be kept (it never changes) or overwritten (the results do not change)", function()
    local runs = {
      function(op) return op:eigs{k = 2, seed = 3}.values end,
      function(op) return op:eigs{k = 2, ncv = 5, seed = 3}.values end,
      function(op) return {op:trace{probes = 6, seed = 2}.estimate} end,
      function(op) return op:power{k = 1, seed = 2}.values end,
    }
    for _, run in ipairs(runs) do
      local kept, snap = {}, {}
      local keep = cv.operator{n = 20, dtype = "f64", matvec = function(v)
        kept[#kept + 1], snap[#snap + 1] = v, v:clone()
        return A:matmul(v)
      end}
      local spoil = cv.operator{n = 20, dtype = "f64", matvec = function(v)
        local r = A:matmul(v)
        v:fill(7)
        return r
      end}
      local want = run(lua_op(A))
      assert.are.same(want, run(keep))
      assert.are.same(want, run(spoil))
      assert.is_true(#kept > 2)
      for i = 1, #kept do
        assert.are.equal(0, (kept[i] - snap[i]):abs():max():item())
      end
    end
  end)
end)

describe("curvature power (PyHessian mode)", function()
  it("finds the top |lambda| pairs with PyHessian defaults", function()
    local r = cv.dense(A):power{k = 1}
    assert.is_near(12, r.values[1], 0.05)
    assert.are.equal(100, r.max_iter)
    assert.are.equal(1e-3, r.tol)
    assert.are.equal("power", r.method)
  end)
end)

describe("curvature trace and diag", function()
  it("Hutchinson and Hutch++ cover the trace and report their settings", function()
    local op = cv.dense(A)
    for _, method in ipairs{"hutchinson", "hutch++"} do
      local t = op:trace{probes = 60, seed = 4, method = method}
      assert.are.equal(method, t.method)
      assert.are.equal(4, t.seed)
      assert.are.equal(60, t.probes)
      assert.is_true(math.abs(t.estimate - trueTrace) <= 4 * t.stderr + 1e-9)
    end
    assert.are.equal(20, op:trace{probes = 60, method = "hutch++"}.sketch)
  end)

  it("is reproducible for a fixed seed and differs across seeds", function()
    local op = lua_op(A)
    local a, b = op:trace{seed = 9, probes = 20}, op:trace{seed = 9, probes = 20}
    assert.are.equal(a.estimate, b.estimate)
    assert.are.equal(a.stderr, b.stderr)
    assert.are_not.equal(a.estimate, op:trace{seed = 10, probes = 20}.estimate)
    local d1, d2 = op:density{steps = 5, runs = 2, seed = 2}, op:density{steps = 5, runs = 2, seed = 2}
    assert.are.same(d1.nodes, d2.nodes)
    assert.are.same(d1.weights, d2.weights)
  end)

  it("estimates the diagonal with per-entry stderr", function()
    local d = cv.dense(A):diag{probes = 400, seed = 2}
    local est, se = d.estimate:totable(), d.stderr:totable()
    local At = A:totable()
    for i = 1, 20 do assert.is_true(math.abs(est[i] - At[i][i]) <= 5 * se[i] + 1e-12) end
    assert.are.equal(400, d.probes)
  end)
end)

describe("curvature density (SLQ)", function()
  it("weights sum to 1 per run, density integrates to 1, rows are tidy", function()
    local d = cv.dense(A):density{steps = 10, runs = 4, seed = 1}
    assert.are.equal(4, #d.nodes)
    for r = 1, 4 do
      local s = 0
      for _, w in ipairs(d.weights[r]) do s = s + w end
      assert.is_near(1, s, 1e-12)
      for _, x in ipairs(d.nodes[r]) do assert.is_true(x >= -8 - 1e-9 and x <= 12 + 1e-9) end
    end
    local g, y = d.grid:totable(), d.density:totable()
    local mass = 0
    for i = 1, #g - 1 do mass = mass + 0.5 * (y[i] + y[i + 1]) * (g[i + 1] - g[i]) end
    assert.is_near(1, mass, 1e-4)
    assert.are.equal("range/steps", d.sigma_rule)
    local rows = d.rows()
    assert.are.equal(1000, #rows)
    assert.are.equal(1, rows[1].seed)
    assert.are.equal(10, rows[1].steps)
    local p = cv.dense(A):density{steps = 10, runs = 1, sigma = "pyhessian", grid = 50}
    assert.are.equal("pyhessian", p.sigma_rule)
    assert.are.equal(50, p.grid:numel())
  end)

  it("moments match tr(A^p)/n within their statistical error", function()
    local m = cv.dense(A):moments{p = {1, 2, 3}, steps = 4, runs = 200, seed = 5}
    for _, p in ipairs{1, 2, 3} do
      local truth = 0
      for _, x in ipairs(lam) do truth = truth + x ^ p end
      truth = truth / #lam
      assert.is_true(math.abs(m.moments[p] - truth) <= 4 * m.stderr[p] + 1e-9)
    end
  end)
end)

describe("curvature errors", function()
  it("names the function and the sizes", function()
    local op = cv.dense(A)
    assert.has_error(function() op:eigs{k = 21} end)
    local ok, msg = pcall(op.eigs, op, {k = 21})
    assert.is_false(ok)
    assert.truthy(msg:find("lanczos: k = 21 exceeds the operator size 20", 1, true))
    ok, msg = pcall(op.eigs, op, {which = "middle"})
    assert.truthy(msg:find("which must be", 1, true))
    ok, msg = pcall(op.trace, op, {method = "hutch++", probes = 2})
    assert.truthy(msg:find("probes must be >= 3", 1, true))
    ok, msg = pcall(cv.operator, {n = 0, matvec = print})
    assert.truthy(msg:find("positive integer", 1, true))
    local wrong = cv.operator{n = 20, matvec = function(v) return v:float() end}
    ok, msg = pcall(wrong.trace, wrong)
    assert.truthy(msg:find("matvec returned a f32 tensor, the operator dtype is f64", 1, true))
    local nan = cv.operator{n = 20, matvec = function(v) return v * (0 / 0) end}
    ok, msg = pcall(nan.eigs, nan)
    assert.truthy(msg:find("non-finite", 1, true))
  end)

  it("propagates an error raised in a Lua matvec unchanged, and stays usable", function()
    local calls = 0
    local errobj = {reason = "batch 7 failed"}
    local op = cv.operator{n = 20, matvec = function(v)
      calls = calls + 1
      if calls == 5 then error(errobj) end
      return A:matmul(v)
    end}
    local opts = {eigs = {}, trace = {probes = 10}, diag = {probes = 10}, density = {steps = 10},
                  power = {}}
    for _, f in ipairs{"eigs", "trace", "diag", "density", "power"} do
      calls = 0
      local ok, e = pcall(op[f], op, opts[f])
      assert.is_false(ok)
      assert.are.equal(errobj, e)
      assert.are.equal(5, calls)
    end
    calls = 100
    assert.is_near(12, op:eigs{}.values[1], 1e-6)
    collectgarbage()
    collectgarbage()
  end)
end)
