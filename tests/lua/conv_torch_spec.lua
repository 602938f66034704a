-- Convolution and pooling from Lua against PyTorch (Debian's python3-torch): conv2d, maxpool2d and
-- avgpool2d forward values and input/weight gradients for several shapes, strides and paddings,
-- and Hessian-vector products of small CNNs (conv -> relu -> conv -> relu -> maxpool -> linear,
-- and conv -> tanh -> avgpool -> linear) in float64 against torch.autograd.grad's double backward.
-- Values go to Python with %.17g, so float64 results must agree to ~1e-12. Also the Lua forms and
-- error messages.
local ls = require "landscape"
local torch = require "torch_oracle"

local lit = torch.lit
local maxdiff = torch.diff_line   -- max |t - numbers in line|, asserting the counts match

-- Runs a Python script (prelude: torch, float64 default, F, out(t) printing t's values on one line)
-- and returns its output lines.
local function torch_lines(body)
  return torch.lines(table.concat{
    "import torch\nimport torch.nn.functional as F\n",
    "torch.set_default_dtype(torch.float64)\nT = torch.tensor\n",
    "def out(t):\n    print(' '.join(repr(float(e)) for e in t.detach().reshape(-1)))\n",
    body})
end

local function f64(shape, seed) return ls.randn(shape, {seed = seed, dtype = "f64"}) end

describe("conv2d and pooling against PyTorch", function()
  local function need_torch()
    if not torch.available() then pending(torch.MISSING) end
    return torch.available()
  end

  it("conv2d: values and input/weight gradients in float64", function()
    if not need_torch() then return end
    -- {x shape, w shape, stride, padding}
    local cases = {
      {{2, 3, 7, 6}, {4, 3, 3, 3}, 1, 0},
      {{2, 3, 7, 6}, {4, 3, 3, 2}, 1, 1},
      {{1, 2, 9, 8}, {3, 2, 3, 3}, 2, 1},
      {{2, 2, 8, 7}, {2, 2, 2, 2}, 3, 2},
      {{3, 1, 5, 5}, {5, 1, 1, 1}, 1, 0},
    }
    local body, results = {}, {}
    for ci, c in ipairs(cases) do
      local x = f64(c[1], ci):requires_grad()
      local w = f64(c[2], 100 + ci):requires_grad()
      local y = ls.conv2d(x, w, c[3], c[4])
      local u = f64(y.shape, 200 + ci)
      local g = ls.grad(y, {x, w}, {grad_outputs = u})
      results[ci] = {y, g[1], g[2]}
      body[ci] = string.format([[
x = T(%s, requires_grad=True)
w = T(%s, requires_grad=True)
y = F.conv2d(x, w, stride=%d, padding=%d)
gx, gw = torch.autograd.grad(y, (x, w), T(%s))
out(y); out(gx); out(gw)
]], lit(x:detach()), lit(w:detach()), c[3], c[4], lit(u))
    end
    local lines = torch_lines(table.concat(body))
    assert.are.equal(3 * #cases, #lines, table.concat(lines, "\n"))
    for ci, r in ipairs(results) do
      local l = 3 * (ci - 1)
      assert.is_true(maxdiff(r[1], lines[l + 1]) < 1e-12, "conv2d value, case " .. ci)
      assert.is_true(maxdiff(r[2], lines[l + 2]) < 1e-12, "input gradient, case " .. ci)
      assert.is_true(maxdiff(r[3], lines[l + 3]) < 1e-12, "weight gradient, case " .. ci)
    end
  end)

  it("conv2d in float32 agrees to float32 rounding", function()
    if not need_torch() then return end
    local x = ls.randn({4, 8, 12, 12}, {seed = 7})
    local w = ls.randn({16, 8, 3, 3}, {seed = 8})
    local y = ls.conv2d(x, w, 1, 1)
    assert.are.equal("f32", y.dtype)
    local lines = torch_lines(string.format([[
x = T(%s, dtype=torch.float32)
w = T(%s, dtype=torch.float32)
out(F.conv2d(x, w, padding=1))
]], lit(x), lit(w)))
    assert.is_true(maxdiff(y, lines[1]) < 1e-4)
  end)

  it("maxpool2d and avgpool2d: values and gradients", function()
    if not need_torch() then return end
    -- {x shape, kernel, stride (nil = kernel)}
    local cases = {
      {{2, 3, 6, 8}, 2, nil},
      {{2, 3, 7, 7}, 2, nil},     -- odd sizes: the last row and column fill no window
      {{1, 2, 6, 5}, 3, 1},       -- overlapping windows
      {{1, 2, 7, 8}, 2, 3},       -- gaps between windows
    }
    local body, results = {}, {}
    for ci, c in ipairs(cases) do
      local x = f64(c[1], 300 + ci):requires_grad()
      local mp = c[3] and x:maxpool2d(c[2], c[3]) or x:maxpool2d(c[2])
      local ap = c[3] and ls.avgpool2d(x, c[2], c[3]) or ls.avgpool2d(x, c[2])
      local u = f64(mp.shape, 400 + ci)
      results[ci] = {mp, ls.grad(mp, {x}, {grad_outputs = u})[1], ap,
                     ls.grad(ap, {x}, {grad_outputs = u})[1]}
      body[ci] = string.format([[
x = T(%s, requires_grad=True)
u = T(%s)
mp = F.max_pool2d(x, %d, %d)
ap = F.avg_pool2d(x, %d, %d)
out(mp); out(torch.autograd.grad(mp, x, u)[0])
out(ap); out(torch.autograd.grad(ap, x, u)[0])
]], lit(x:detach()), lit(u), c[2], c[3] or c[2], c[2], c[3] or c[2])
    end
    local lines = torch_lines(table.concat(body))
    assert.are.equal(4 * #cases, #lines, table.concat(lines, "\n"))
    for ci, r in ipairs(results) do
      local l = 4 * (ci - 1)
      assert.are.equal(0, maxdiff(r[1], lines[l + 1]), "maxpool value, case " .. ci)
      assert.is_true(maxdiff(r[2], lines[l + 2]) < 1e-15, "maxpool gradient, case " .. ci)
      assert.is_true(maxdiff(r[3], lines[l + 3]) < 1e-15, "avgpool value, case " .. ci)
      assert.is_true(maxdiff(r[4], lines[l + 4]) < 1e-15, "avgpool gradient, case " .. ci)
    end
  end)

  it("maxpool2d sends a tie's gradient to the first maximum, as PyTorch", function()
    if not need_torch() then return end
    local x = ls.tensor({{{{1, 3, 3, 0}, {3, 2, 1, 3}}}}, {dtype = "f64"}):requires_grad()
    local g = ls.grad(x:maxpool2d(2):sum(), {x})[1]
    assert.are.same({{{{0, 1, 1, 0}, {0, 0, 0, 0}}}}, g:totable())
    local lines = torch_lines([=[
x = T([[[[1., 3, 3, 0], [3, 2, 1, 3]]]], requires_grad=True)
out(torch.autograd.grad(F.max_pool2d(x, 2).sum(), x)[0])
]=])
    assert.are.equal(0, maxdiff(g, lines[1]))
  end)

  -- HVP of a small CNN's loss: the gradient (create_graph) runs through conv2d's backward ops,
  -- maxpool2d_scatter and avgpool2d_backward, and the second backward through their backward ops.
  local function hvp_against_torch(lua_model, torch_model, shapes, x, y, y0)
    local params, vs = {}, {}
    for i, s in ipairs(shapes) do
      params[i] = (f64(s, 500 + i) * 0.5):detach():requires_grad()
      vs[i] = f64(s, 600 + i)
    end
    local function loss_fn() return ls.cross_entropy(lua_model(x, params), y) end
    local loss = loss_fn()
    local g = ls.grad(loss, params)
    local hv = ls.hvp(loss_fn, params, vs)
    local body = {"x = T(" .. lit(x) .. ")\ny = T(" .. y0 .. ")\nps, vs = [], []\n"}
    for i = 1, #shapes do
      body[#body + 1] = string.format("ps.append(T(%s, requires_grad=True))\nvs.append(T(%s))\n",
                                      lit(params[i]:detach()), lit(vs[i]))
    end
    body[#body + 1] = torch_model .. [[

loss = F.cross_entropy(model(x, ps), y)
g = torch.autograd.grad(loss, ps, create_graph=True)
hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, vs)), ps)
print(repr(loss.item()))
for t in list(g) + list(hv):
    out(t)
]]
    local lines = torch_lines(table.concat(body))
    assert.are.equal(1 + 2 * #shapes, #lines, table.concat(lines, "\n"))
    assert.is_true(math.abs(tonumber(lines[1]) - loss:item()) < 1e-13, "loss")
    for i = 1, #shapes do
      assert.is_true(maxdiff(g[i], lines[1 + i]) < 1e-12, "gradient " .. i)
      assert.is_true(maxdiff(hv[i], lines[1 + #shapes + i]) < 1e-12, "hvp " .. i)
    end
  end

  it("Hessian-vector product through conv -> relu -> conv -> relu -> maxpool -> linear (f64)",
     function()
    if not need_torch() then return end
    local x = f64({3, 2, 9, 8}, 1)
    local y = ls.tensor({1, 3, 2}, {dtype = "i64"})
    local shapes = {{4, 2, 3, 3}, {4}, {5, 4, 3, 3}, {20, 3}, {3}}
    local function model(xx, p)
      local h = (ls.conv2d(xx, p[1], 1, 1) + p[2]:reshape({1, 4, 1, 1})):relu()
      h = ls.conv2d(h, p[3], 2, 1):relu()              -- [3, 5, 5, 4]
      h = h:maxpool2d(2):reshape({3, 20})              -- [3, 5, 2, 2]
      return h:matmul(p[4]) + p[5]
    end
    hvp_against_torch(model, [[
def model(x, p):
    h = torch.relu(F.conv2d(x, p[0], padding=1) + p[1].reshape(1, 4, 1, 1))
    h = torch.relu(F.conv2d(h, p[2], stride=2, padding=1))
    return F.max_pool2d(h, 2).reshape(3, 20) @ p[3] + p[4]
]], shapes, x, y, "[0, 2, 1]")
  end)

  it("Hessian-vector product through conv -> tanh -> avgpool(3, 1) -> linear (f64)", function()
    if not need_torch() then return end
    local x = f64({2, 3, 7, 6}, 2)
    local y = ls.tensor({2, 1}, {dtype = "i64"})
    local shapes = {{4, 3, 3, 3}, {4 * 3 * 2, 2}}
    local function model(xx, p)
      local h = ls.conv2d(xx, p[1]):tanh()             -- [2, 4, 5, 4]
      return ls.avgpool2d(h, 3, 1):reshape({2, 24}):matmul(p[2])   -- [2, 4, 3, 2]
    end
    hvp_against_torch(model, [[
def model(x, p):
    h = torch.tanh(F.conv2d(x, p[0]))
    return F.avg_pool2d(h, 3, 1).reshape(2, 24) @ p[1]
]], shapes, x, y, "[1, 0]")
  end)
end)

describe("conv2d and pooling from Lua", function()
  it("computes a known convolution", function()
    local x = ls.tensor({{{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}}})
    local w = ls.tensor({{{{1, 0}, {0, -1}}}})
    assert.are.same({{{{-4, -4}, {-4, -4}}}}, ls.conv2d(x, w):totable())
    assert.are.same({{{{-1, -3}, {-7, -4}}}}, ls.conv2d(x, w, 2, 1):totable())
    assert.are.same({{{{5}}}}, x:maxpool2d(2):totable())
    assert.are.same({{{{3, 4}, {6, 7}}}}, x:avgpool2d(2, 1):totable())
    assert.are.same({4, 6, 3, 3}, x:expand({4, 6, 3, 3}):avgpool2d(1).shape)
  end)

  it("raises errors that name the op and the shapes", function()
    local ok, err = pcall(ls.conv2d, ls.zeros({8, 3, 28, 28}), ls.zeros({32, 1, 3, 3}))
    assert.is_false(ok)
    assert.matches("conv2d: input %[8x3x28x28%] has 3 channels but weight %[32x1x3x3%] expects 1",
                   err)
    ok, err = pcall(ls.conv2d, ls.zeros({3, 28, 28}), ls.zeros({32, 3, 3, 3}))
    assert.matches("conv2d: expected a 4%-D input %[N x C x H x W%], got %[3x28x28%]", err)
    ok, err = pcall(ls.conv2d, ls.zeros({1, 1, 2, 2}), ls.zeros({1, 1, 3, 3}))
    assert.matches("conv2d: kernel 3x3 is larger than the padded input 2x2", err)
    ok, err = pcall(ls.conv2d, ls.zeros({1, 1, 4, 4}), ls.zeros({1, 1, 3, 3}, {dtype = "f64"}))
    assert.matches("conv2d: dtype mismatch: f32 and f64", err)
    ok, err = pcall(ls.conv2d, ls.zeros({1, 1, 4, 4}), ls.zeros({1, 1, 3, 3}), 0)
    assert.matches("conv2d: stride must be >= 1, got 0", err)
    ok, err = pcall(function() return ls.zeros({1, 1, 4, 4}):maxpool2d(5) end)
    assert.matches("maxpool2d: kernel 5x5 is larger than the input 4x4", err)
    ok, err = pcall(function() return ls.zeros({1, 1, 4, 4}):avgpool2d() end)
    assert.matches("avgpool2d: missing argument", err)
    ok, err = pcall(function() return ls.zeros({4, 4}):avgpool2d(2) end)
    assert.matches("avgpool2d: expected a 4%-D input", err)
    assert.is_nil(ls.conv2d_input_grad)   -- the backward ops are not Lua functions
  end)
end)
