-- Autograd from Lua: the API (grad, backward, no_grad, detach, retain_graph), the helpers (hvp, jvp,
-- vjp, gradcheck), and gradients and Hessian-vector products of a small MLP against PyTorch
-- (Debian's python3-torch) on the same float64 weights.
local ls = require "landscape"
local torch = require "torch_oracle"

local function maxdiff(a, b)
  local d = 0
  local ta, tb = a:reshape(-1):totable(), b:reshape(-1):totable()
  assert.are.equal(#ta, #tb)
  for i = 1, #ta do d = math.max(d, math.abs(ta[i] - tb[i])) end
  return d
end

describe("grad and backward", function()
  it("differentiates a polynomial exactly", function()
    local x = ls.tensor({1, 2, 3}, {dtype = "f64"}):requires_grad()
    local y = (x ^ 3):sum()                       -- dy/dx = 3x^2, d2y/dx2 = 6x
    local g = ls.grad(y, {x}, {create_graph = true})[1]
    assert.are.same({3, 12, 27}, g:totable())
    local h = ls.grad(g:sum(), x)
    assert.are.same({6, 12, 18}, h:totable())
  end)

  it("accumulates into leaves with backward and zero_grad clears", function()
    local w = ls.tensor({{1, 2}, {3, 4}}, {dtype = "f64"}):requires_grad()
    local loss = (w * w):sum()
    loss:backward({retain_graph = true})
    assert.are.same({{2, 4}, {6, 8}}, w.grad:totable())
    loss:backward()
    assert.are.same({{4, 8}, {12, 16}}, w.grad:totable())
    local ok, err = pcall(function() loss:backward() end)
    assert.is_false(ok)
    assert.matches("already freed", err)
    w:zero_grad()
    assert.is_nil(w.grad)
  end)

  it("passes grad_outputs, and reports unused inputs", function()
    local a = ls.tensor({1, 2}, {dtype = "f64"}):requires_grad()
    local b = ls.tensor({5, 7}, {dtype = "f64"}):requires_grad()
    local y = a * 3
    local g = ls.grad(y, {a, b}, {grad_outputs = ls.tensor({1, 10}, {dtype = "f64"}),
                                 allow_unused = true, retain_graph = true})
    assert.are.same({3, 30}, g[1]:totable())
    assert.is_nil(g[2])
    local ok, err = pcall(ls.grad, y, {b}, {grad_outputs = ls.ones({2}, {dtype = "f64"})})
    assert.is_false(ok)
    assert.matches("not part of the graph", err)
    ok, err = pcall(ls.grad, y, {a})
    assert.is_false(ok)
    assert.matches("gradients can only be implicitly created for scalar outputs", err)
  end)

  it("gives an input listed twice its gradient in both places", function()
    local a = ls.tensor({1, 2}, {dtype = "f64"}):requires_grad()
    local g = ls.grad((a * a):sum(), {a, a})
    assert.are.same({2, 4}, g[1]:totable())
    assert.are.same({2, 4}, g[2]:totable())
  end)

  it("records nothing under no_grad and restores the mode after an error", function()
    local w = ls.ones({2}, {dtype = "f64"}):requires_grad()
    local inside = ls.no_grad(function() return (w * 2).needs_grad end)
    assert.is_false(inside)
    assert.is_true((w * 2).needs_grad)
    assert.is_false(pcall(ls.no_grad, function() error("boom") end))
    assert.is_true(ls.is_grad_enabled())
    local d = (w * 2):detach()
    assert.is_false(d.needs_grad)
    assert.is_true(d.is_leaf)
  end)
end)

describe("helpers", function()
  -- f(x) = sum(A x * x) / 2 + sum(sin-free cubic) on a fixed symmetric A: H = A + diag(6 x)
  local A = ls.tensor({{2, 1, 0}, {1, 3, -1}, {0, -1, 4}}, {dtype = "f64"})
  local x = ls.tensor({0.5, -1, 2}, {dtype = "f64"}):requires_grad()
  local function f() return ((A:matmul(x)) * x):sum() / 2 + (x ^ 3):sum() end

  it("hvp equals the dense Hessian times v", function()
    local v = ls.tensor({1, -2, 0.5}, {dtype = "f64"})
    local hv = ls.hvp(f, x, v)
    local H = A + ls.eye(3, {dtype = "f64"}) * (x:detach() * 6):unsqueeze(1)
    assert.is_true(maxdiff(hv, H:matmul(v)) < 1e-12)
  end)

  it("jvp and vjp agree with the Jacobian of a linear map", function()
    local M = ls.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "f64"})
    local function lin(z) return M:matmul(z) end
    local z = ls.tensor({1, 1, 1}, {dtype = "f64"}):requires_grad()
    local _, jv = ls.jvp(lin, z, ls.tensor({1, 0, -1}, {dtype = "f64"}))
    assert.are.same({-2, -2}, jv:totable())
    local _, vj = ls.vjp(lin, z, ls.tensor({1, -1}, {dtype = "f64"}))
    assert.are.same({-3, -3, -3}, vj:totable())
  end)

  it("gradcheck passes a correct function and flags a wrong gradient", function()
    local z = ls.tensor({0.3, -0.7, 1.1}, {dtype = "f64"}):requires_grad()
    assert.is_true((ls.gradcheck(function(t) return t:tanh() * t end, z)))
    -- detach() hides a dependence from autograd: the analytic gradient is then wrong
    local ok, msg = ls.gradcheck(function(t) return t * t:detach() end, z)
    assert.is_false(ok)
    assert.matches("analytic", msg)
  end)
end)

describe("memory", function()
  it("does not grow over many training-style steps", function()
    local w = ls.randn({20, 5}, {seed = 3, dtype = "f64"}):requires_grad()
    local x = ls.randn({8, 20}, {seed = 4, dtype = "f64"})
    local y = ls.tensor({1, 2, 3, 4, 5, 1, 2, 3}, {dtype = "i64"})
    local base
    for step = 1, 2000 do
      local loss = ls.cross_entropy(x:matmul(w), y)
      local g = ls.grad(loss, {w})[1]
      ls.no_grad(function() w:detach():copy(w:detach() - g * 0.1) end)
      if step % 100 == 0 then collectgarbage() end
      if step == 100 then base = ls.memory() end
    end
    collectgarbage()
    assert.is_true(ls.memory() <= base)
  end)
end)

describe("against PyTorch", function()
  it("gives the same gradients and Hessian-vector products for an MLP in float64", function()
    if not torch.available() then return pending(torch.MISSING) end
    local shapes = {{4, 6}, {6}, {6, 3}, {3}}
    local params, vs = {}, {}
    for i, s in ipairs(shapes) do
      params[i] = ls.randn(s, {seed = 10 + i, dtype = "f64"}):requires_grad()
      vs[i] = ls.randn(s, {seed = 20 + i, dtype = "f64"})
    end
    local x = ls.randn({5, 4}, {seed = 1, dtype = "f64"})
    local y = ls.tensor({1, 3, 2, 2, 1}, {dtype = "i64"})   -- 1-based classes
    local function loss_fn()
      local h = (x:matmul(params[1]) + params[2]):tanh()
      return ls.cross_entropy(h:matmul(params[3]) + params[4], y)
    end
    local loss = loss_fn()
    local g = ls.grad(loss, params)
    local hv = ls.hvp(loss_fn, params, vs)

    local lit = torch.lit
    local py = {"import torch\ntorch.set_default_dtype(torch.float64)\nT = torch.tensor\n",
                "x = T(", lit(x), ")\ny = T([0, 2, 1, 1, 0])\n"}
    for i = 1, 4 do
      py[#py + 1] = string.format("p%d = T(%s, requires_grad=True)\nv%d = T(%s)\n", i,
                                  lit(params[i]), i, lit(vs[i]))
    end
    py[#py + 1] = [[
ps = [p1, p2, p3, p4]
loss = torch.nn.functional.cross_entropy(torch.tanh(x @ p1 + p2) @ p3 + p4, y)
g = torch.autograd.grad(loss, ps, create_graph=True)
hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, [v1, v2, v3, v4])), ps)
print(repr(loss.item()))
for t in list(g) + list(hv):
    print(" ".join(repr(float(e)) for e in t.detach().reshape(-1)))
]]
    local lines = torch.lines(table.concat(py))
    assert.are.equal(9, #lines)
    assert.is_true(math.abs(tonumber(lines[1]) - loss:item()) < 1e-14)
    for i = 1, 4 do
      assert.is_true(torch.diff_line(g[i], lines[1 + i]) < 1e-13, "gradient " .. i)
      assert.is_true(torch.diff_line(hv[i], lines[5 + i]) < 1e-13, "hvp " .. i)
    end
  end)
end)
