-- Curvature operators of a model on a dataset (lualib/landscape/hessian.lua): the Hessian, GGN and
-- empirical Fisher operators against dense matrices built independently (central differences of
-- full-batch gradients, Jacobians, per-sample gradients), batch weighting, train/eval mode handling,
-- parameter subsets, grad_norm, errors, and the estimators of landscape.curvature when installed.
local ls = require "landscape"
local curv = require "landscape.analysis.curvature"
local torch = require "torch_oracle"

---------------------------------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------------------------------

local function maxdiff(a, b)
  return (a - b):abs():max():item()
end

local function flat_grad(model, x, y, ps)
  local g = ls.grad(ls.cross_entropy(model(x), y), ps)
  local out = {}
  for _, t in ipairs(g) do
    for _, v in ipairs(t:reshape(-1):totable()) do out[#out + 1] = v end
  end
  return out
end

-- The dense Hessian of the full-batch mean cross-entropy by central differences of gradients,
-- perturbing each parameter entry in place. Returns an [n x n] f64 tensor.
local function dense_cd(model, x, y, ps, eps)
  eps = eps or 1e-5
  local cols = {}
  for _, p in ipairs(ps) do
    local flat = p:detach():reshape(-1)
    for j = 1, flat:numel() do
      local v0 = flat[j]
      flat[j] = v0 + eps
      local gp = flat_grad(model, x, y, ps)
      flat[j] = v0 - eps
      local gm = flat_grad(model, x, y, ps)
      flat[j] = v0
      local col = {}
      for i = 1, #gp do col[i] = (gp[i] - gm[i]) / (2 * eps) end
      cols[#cols + 1] = col
    end
  end
  return ls.tensor(cols, {dtype = "f64"}):t():contiguous()
end

-- Eigenvalues of a small symmetric matrix (a tensor) by cyclic Jacobi rotations, ascending.
local function eigvalsh(A)
  local a = A:totable()
  local n = #a
  for _ = 1, 100 do
    local off = 0
    for p = 1, n do for q = p + 1, n do off = off + a[p][q] ^ 2 end end
    if off < 1e-30 then break end
    for p = 1, n - 1 do
      for q = p + 1, n do
        if math.abs(a[p][q]) > 1e-300 then
          local theta = (a[q][q] - a[p][p]) / (2 * a[p][q])
          local t = (theta >= 0 and 1 or -1) / (math.abs(theta) + math.sqrt(theta * theta + 1))
          local c = 1 / math.sqrt(t * t + 1)
          local s = t * c
          for k = 1, n do
            local akp, akq = a[k][p], a[k][q]
            a[k][p], a[k][q] = c * akp - s * akq, s * akp + c * akq
          end
          for k = 1, n do
            local apk, aqk = a[p][k], a[q][k]
            a[p][k], a[q][k] = c * apk - s * aqk, s * apk + c * aqk
          end
        end
      end
    end
  end
  local ev = {}
  for i = 1, n do ev[i] = a[i][i] end
  table.sort(ev)
  return ev
end

local function mlp(opts)
  opts = opts or {}
  return ls.nn.mlp{input = 6, hidden = {5}, classes = 3, activation = "tanh", dtype = "f64",
                   seed = opts.seed or 3, batchnorm = opts.batchnorm}
end

local function tiny_data(n, seed)
  local x = ls.randn({n, 6}, {seed = seed or 1, dtype = "f64"})
  local y = ls.randint(1, 4, {n}, {seed = (seed or 1) + 100})
  return {x = x, y = y, n = n}
end

local function has_estimators()
  local ok, C = pcall(require, "landscape.analysis.curvature")
  return ok and type(C) == "table" and type(C.operator) == "function"
end

---------------------------------------------------------------------------------------------------
-- Hessian
---------------------------------------------------------------------------------------------------

describe("hessian operator", function()
  local model = mlp()
  local data = tiny_data(40)
  local ps = model:parameters()

  it("equals the central-difference Hessian of the mean loss and is symmetric", function()
    local H = curv.hessian(model, data, {batch = 40})
    assert.are.equal(53, H.n)
    assert.are.equal("eval", H.mode)
    assert.are.same({"1.weight", "1.bias", "3.weight", "3.bias"}, H.params)
    local D = H:dense()
    local R = dense_cd(model, data.x, data.y, ps)
    assert.is_true(maxdiff(D, R) < 1e-7, "vs central differences: " .. maxdiff(D, R))
    assert.is_true(maxdiff(D, D:t()) < 1e-10)
    assert.is_true(D:abs():max():item() > 1e-2)   -- not trivially zero
  end)

  it("weights uneven batches by size: batch = 7 equals the full-batch product to 1e-12", function()
    local v = ls.randn({53}, {seed = 9, dtype = "f64"})
    local a = curv.hessian(model, data, {batch = 7}):matvec(v)     -- 5 x 7 + 5
    local b = curv.hessian(model, data, {batch = 40}):matvec(v)
    local ref = ls.hvp(function() return ls.cross_entropy(model(data.x), data.y) end, ps,
                       curv.hessian(model, data):unflatten(v))
    assert.is_true(maxdiff(a, b) < 1e-12)
    assert.is_true(maxdiff(b, curv.hessian(model, data):flatten(ref)) < 1e-14)
  end)

  it("caches the gradient graph between products and drops it when the parameters change", function()
    local v = ls.randn({53}, {seed = 11, dtype = "f64"})
    local cached = curv.hessian(model, data, {batch = 40})            -- one batch: cached
    local fresh = curv.hessian(model, data, {batch = 40, cache_graph = false})
    assert.is_true(cached.cache_graph and not fresh.cache_graph)
    local a1, a2 = cached:matvec(v), cached:matvec(v)
    assert.are.same(fresh:matvec(v):totable(), a1:totable())
    assert.are.same(a1:totable(), a2:totable())
    -- move the parameters: the cached graph would give the old Hessian
    local w = ps[1]:detach()
    local old = w:clone()
    w:copy(old * 1.5)
    local moved = cached:matvec(v)
    assert.are.same(fresh:matvec(v):totable(), moved:totable())
    assert.is_true(maxdiff(moved, a1) > 1e-6)
    w:copy(old)
  end)

  it("flattens and unflattens in state-dict order", function()
    local H = curv.hessian(model, data)
    local v = ls.arange(1, 54, {dtype = "f64"})
    local u = H:unflatten(v)
    assert.are.same({5, 6}, u["1.weight"]:size())
    assert.are.equal(31, u["1.bias"][1])
    assert.are.equal(53, u[4][3])
    assert.are.equal(0, maxdiff(H:flatten(u), v))
    assert.are.equal(0, maxdiff(H:flatten({["3.bias"] = u["3.bias"]}):narrow(1, 51, 3), u[4]))
    assert.are.equal(0, H:flatten({["3.bias"] = u["3.bias"]}):narrow(1, 1, 50):abs():sum():item())
  end)

  it("works through a tiny CNN (conv, tanh, avgpool, linear)", function()
    local nn = ls.nn
    local cnn = nn.sequential{nn.conv2d(1, 2, 3, {seed = 1, dtype = "f64"}), nn.tanh(),
                              nn.avgpool2d(2), nn.flatten(), nn.linear(8, 3, {seed = 2, dtype = "f64"})}
    local x = ls.randn({12, 1, 6, 6}, {seed = 4, dtype = "f64"})
    local y = ls.randint(1, 4, {12}, {seed = 5})
    local H = curv.hessian(cnn, {x = x, y = y}, {batch = 5})
    assert.are.equal(47, H.n)
    local D = H:dense()
    local R = dense_cd(cnn, x, y, cnn:parameters())
    assert.is_true(maxdiff(D, R) < 1e-7, "cnn vs central differences: " .. maxdiff(D, R))
    assert.is_true(maxdiff(D, D:t()) < 1e-10)
  end)

  it("runs in float32 close to the float64 operator", function()
    local m32 = mlp():to("f32")
    local d32 = {x = data.x:float(), y = data.y}
    local H32 = curv.hessian(m32, d32, {batch = 16})
    assert.are.equal("f32", H32.dtype)
    local v = ls.randn({53}, {seed = 3, dtype = "f64"})
    local a = H32:matvec(v:float()):double()
    local b = curv.hessian(model, data):matvec(v)
    assert.is_true(maxdiff(a, b) < 1e-4 * b:abs():max():item())
  end)
end)

---------------------------------------------------------------------------------------------------
-- Modes and batch norm
---------------------------------------------------------------------------------------------------

describe("train and eval mode with batch norm", function()
  local model = mlp{batchnorm = true}
  local data = tiny_data(24, 7)
  -- move the running statistics away from their initial values
  model:train()
  ls.no_grad(function() for _ = 1, 3 do model(data.x) end end)

  local function buffers()
    local out = {}
    for _, e in ipairs(model:named_buffers()) do out[e[1]] = e[2]:clone() end
    return out
  end

  it("eval mode uses running statistics, train mode batch statistics; both match differences", function()
    local He = curv.hessian(model, data, {batch = 24, mode = "eval"})
    local Ht = curv.hessian(model, data, {batch = 24, mode = "train"})
    assert.are.equal("train", Ht.mode)
    local De, Dt = He:dense(), Ht:dense()
    model:eval()
    local Re = dense_cd(model, data.x, data.y, model:parameters())
    model:train()
    model:freeze_running_stats(true)
    local Rt = dense_cd(model, data.x, data.y, model:parameters())
    model:freeze_running_stats(false)
    assert.is_true(maxdiff(De, Re) < 1e-7, "eval: " .. maxdiff(De, Re))
    assert.is_true(maxdiff(Dt, Rt) < 1e-7, "train: " .. maxdiff(Dt, Rt))
    assert.is_true(maxdiff(Dt, Dt:t()) < 1e-10)
    assert.is_true(maxdiff(De, Dt) > 1e-3)
  end)

  it("leaves running statistics and every module's mode as they were", function()
    local before = buffers()
    local v = ls.randn({curv.hessian(model, data).n}, {seed = 2, dtype = "f64"})
    model:train()
    for _, make in ipairs({curv.hessian, curv.ggn, curv.fisher}) do
      make(model, data, {batch = 5, mode = "train"}):matvec(v)
    end
    curv.grad_norm(model, data, {batch = 5, mode = "train"})
    for name, t in pairs(buffers()) do
      assert.are.equal(0, maxdiff(t:double(), before[name]:double()), name)
    end
    for _, m in ipairs(model:modules()) do
      assert.is_true(m.training)
      assert.is_nil(m.frozen_stats)
    end
    model:eval()
    curv.hessian(model, data, {mode = "train"}):matvec(v)
    for _, m in ipairs(model:modules()) do assert.is_false(m.training) end
    model:train()
    curv.hessian(model, data, {mode = "eval"}):matvec(v)
    assert.is_true(model.training)
    -- and a batch-size-7 train-mode operator depends on the batching
    local a = curv.hessian(model, data, {batch = 7, mode = "train"}):matvec(v)
    local b = curv.hessian(model, data, {batch = 24, mode = "train"}):matvec(v)
    assert.is_true(maxdiff(a, b) > 1e-6)
  end)

  it("refuses train mode with dropout and batch = 1 with batch norm", function()
    local drop = ls.nn.mlp{input = 6, hidden = {5}, classes = 3, dropout = 0.5, dtype = "f64"}
    local ok, err = pcall(curv.hessian, drop, data, {mode = "train"})
    assert.is_false(ok)
    assert.matches("dropout", err)
    assert.is_true((pcall(curv.hessian, drop, data, {mode = "eval"})))
    ok, err = pcall(curv.hessian, model, data, {mode = "train", batch = 1})
    assert.is_false(ok)
    assert.matches("batch >= 2", err)
  end)
end)

---------------------------------------------------------------------------------------------------
-- GGN and empirical Fisher
---------------------------------------------------------------------------------------------------

describe("GGN and empirical Fisher", function()
  local model = mlp{seed = 5}
  local data = tiny_data(30, 11)
  local ps = model:parameters()
  local N, C = 30, 3

  it("GGN equals J^T H_out J / N built from the dense Jacobian, and is PSD", function()
    local G = curv.ggn(model, data, {batch = 7})
    local D = G:dense()
    local z = model(data.x)
    local rows = {}
    for i = 1, N do
      for c = 1, C do
        local e = ls.zeros({N, C}, {dtype = "f64"})
        e[i][c] = 1
        local g = ls.grad(z, ps, {grad_outputs = e, retain_graph = true})
        local row = {}
        for _, t in ipairs(g) do
          for _, v in ipairs(t:reshape(-1):totable()) do row[#row + 1] = v end
        end
        rows[#rows + 1] = row
      end
    end
    local J = ls.tensor(rows, {dtype = "f64"})                     -- [N*C x n]
    local p = z:detach():softmax(2)
    local Hout = ls.zeros({N * C, N * C}, {dtype = "f64"})
    for i = 1, N do
      local pi = p:select(1, i)
      local blk = -pi:outer(pi)
      for c = 1, C do blk[c][c] = blk[c][c] + pi[c] end
      Hout:narrow(1, (i - 1) * C + 1, C):narrow(2, (i - 1) * C + 1, C):copy(blk)
    end
    local R = J:t():matmul(Hout):matmul(J) / N
    assert.is_true(maxdiff(D, R) < 1e-12, "ggn: " .. maxdiff(D, R))
    assert.is_true(maxdiff(D, D:t()) < 1e-12)
    local ev = eigvalsh(D)
    assert.is_true(ev[1] > -1e-10, "smallest GGN eigenvalue " .. ev[1])
    assert.is_true(ev[#ev] > 1e-3)
  end)

  it("empirical Fisher equals (1/N) sum_i g_i g_i^T from per-sample gradients", function()
    local F = curv.fisher(model, data, {batch = 7})
    local D = F:dense()
    local n = F.n
    local R = ls.zeros({n, n}, {dtype = "f64"})
    for i = 1, N do
      local g = ls.tensor(flat_grad(model, data.x:narrow(1, i, 1), data.y:narrow(1, i, 1), ps),
                          {dtype = "f64"})
      R = R + g:outer(g)
    end
    R = R / N
    assert.is_true(maxdiff(D, R) < 1e-12, "fisher: " .. maxdiff(D, R))
    assert.is_true(eigvalsh(D)[1] > -1e-10)
  end)

  it("refuses a GGN of a custom loss", function()
    local ok, err = pcall(curv.ggn, model, data, {loss = function(z, y) return ls.cross_entropy(z, y) end})
    assert.is_false(ok)
    assert.matches("cross_entropy", err)
  end)
end)

---------------------------------------------------------------------------------------------------
-- Parameter subsets, per-layer operators, grad_norm
---------------------------------------------------------------------------------------------------

describe("parameter subsets", function()
  local model = mlp()
  local data = tiny_data(20, 3)
  local full = curv.hessian(model, data):dense()

  it("select by glob, Lua pattern, exact name, and give the matching block", function()
    local H = curv.hessian(model, data, {params = {"3.*"}})
    assert.are.same({"3.weight", "3.bias"}, H.params)
    assert.are.equal(18, H.n)
    local block = full:narrow(1, 36, 18):narrow(2, 36, 18)
    assert.is_true(maxdiff(H:dense(), block) < 1e-14)
    assert.are.same({"1.bias", "3.bias"}, curv.hessian(model, data, {params = "%d%.bias"}).params)
    assert.are.same({"1.weight"}, curv.hessian(model, data, {params = "1.weight"}).params)
    assert.are.same({"1.weight", "3.weight"},
                    curv.hessian(model, data, {params = "?.weight"}).params)
    assert.are.same({"3.bias"}, curv.hessian(model, data, {
      params = function(name) return name == "3.bias" end}).params)
  end)

  it("per_layer gives one operator per tensor equal to the diagonal blocks", function()
    local ops = curv.hessian(model, data, {batch = 6}):per_layer()
    assert.are.equal(4, #ops)
    local off = 1
    for i, name in ipairs({"1.weight", "1.bias", "3.weight", "3.bias"}) do
      assert.are.equal(name, ops[i].name)
      local k = ops[i].n
      assert.is_true(maxdiff(ops[i]:dense(), full:narrow(1, off, k):narrow(2, off, k)) < 1e-13)
      off = off + k
    end
  end)

  it("grad_norm is the norm of the full-batch gradient of the mean loss", function()
    local r = curv.grad_norm(model, data, {batch = 6})
    local g = ls.tensor(flat_grad(model, data.x, data.y, model:parameters()), {dtype = "f64"})
    assert.is_true(maxdiff(r.grad, g) < 1e-14)
    assert.is_true(math.abs(r.norm - g:norm():item()) < 1e-14)
    local loss = ls.cross_entropy(model(data.x), data.y):item()
    assert.is_true(math.abs(r.loss - loss) < 1e-14)
    assert.are.equal("eval", r.mode)
    local sub = curv.grad_norm(model, data, {params = "3.*"})
    assert.is_true(maxdiff(sub.grad, g:narrow(1, 36, 18)) < 1e-14)
  end)
end)

---------------------------------------------------------------------------------------------------
-- Errors
---------------------------------------------------------------------------------------------------

describe("errors", function()
  local model = mlp()
  local data = tiny_data(10, 2)

  local function err_of(...)
    local ok, e = pcall(...)
    assert.is_false(ok)
    return e
  end

  it("name the problem", function()
    assert.matches('hessian: no parameters match {"9.*"}; parameters are 1.weight, 1.bias, 3.weight, 3.bias',
                   err_of(curv.hessian, model, data, {params = {"9.*"}}), 1, true)
    assert.matches('option \'mode\' must be "eval" or "train", got "test"',
                   err_of(curv.hessian, model, data, {mode = "test"}), 1, true)
    assert.matches("the data x is f32 but the parameters are f64",
                   err_of(curv.hessian, model, {x = data.x:float(), y = data.y}), 1, true)
    assert.matches("dtype f32 requested but the model's parameters are f64",
                   err_of(curv.hessian, model, data, {dtype = "f32"}), 1, true)
    assert.matches("rejects the data %(x has shape %[10x4%]%)",
                   err_of(curv.ggn, model, {x = ls.randn({10, 4}, {dtype = "f64"}), y = data.y}))
    assert.matches("x has 10 examples",
                   err_of(curv.fisher, model, {x = data.x, y = data.y:narrow(1, 1, 9)}), 1, true)
    assert.matches("labels must lie in 1..3",
                   err_of(curv.hessian, model, {x = data.x, y = (data.y:double() + 3):long()}), 1, true)
    assert.matches("unknown option 'batchsize'",
                   err_of(curv.hessian, model, data, {batchsize = 3}), 1, true)
    assert.matches("option 'batch' must be a positive integer",
                   err_of(curv.hessian, model, data, {batch = 0}), 1, true)
    assert.matches("unknown loss 'hinge'", err_of(curv.hessian, model, data, {loss = "hinge"}), 1, true)
    local H = curv.hessian(model, data)
    assert.matches("expected a 1-D tensor of length 53, got shape [52]",
                   err_of(H.matvec, H, ls.zeros({52}, {dtype = "f64"})), 1, true)
    assert.matches("the vector is f32 but the operator is f64",
                   err_of(H.matvec, H, ls.zeros({53})), 1, true)
  end)
end)

---------------------------------------------------------------------------------------------------
-- Estimators (landscape.curvature, when installed)
---------------------------------------------------------------------------------------------------

describe("with the estimator module", function()
  local model = mlp{seed = 8}
  local data = tiny_data(40, 5)

  it("gives the dense trace (Hutchinson, within 4 stderr) and top eigenvalue (to 1e-8)", function()
    if not has_estimators() then
      pending("landscape.curvature is not installed")
      return
    end
    local H = curv.hessian(model, data, {batch = 16})
    local D = H:dense()
    local tr = 0
    for i = 1, H.n do tr = tr + D[i][i] end
    local ev = eigvalsh(D)
    local r = H:trace{probes = 200, seed = 1, method = "hutchinson"}
    local est = type(r) == "table" and (r.estimate or r.trace or r.value) or r
    local se = type(r) == "table" and r.stderr
    assert.is_number(est)
    assert.is_number(se)
    assert.is_true(math.abs(est - tr) < 4 * se + 1e-12, string.format("%g vs %g (se %g)", est, tr, se))
    local e = H:eigs{k = 1, which = "largest", tol = 1e-10, seed = 1}
    local top = e.values and e.values[1] or e[1]
    if type(top) == "table" then top = top.value end
    assert.is_true(math.abs(top - ev[#ev]) < 1e-8, string.format("%.12g vs %.12g", top, ev[#ev]))
    local rows = H:trace_per_layer{probes = 50, seed = 2}
    assert.are.equal(4, #rows)
    local sum, var = 0, 0
    for _, row in ipairs(rows) do
      sum = sum + row.trace
      var = var + (row.stderr or 0) ^ 2
    end
    assert.is_true(math.abs(sum - tr) < 5 * math.sqrt(var) + 1e-8)
  end)
end)

---------------------------------------------------------------------------------------------------
-- PyTorch cross-check
---------------------------------------------------------------------------------------------------

describe("against PyTorch", function()
  it("has the eigenvalues of torch.autograd.functional.hessian for an MLP in float64", function()
    if not torch.available() then return pending(torch.MISSING) end
    local model = mlp{seed = 4}
    local data = tiny_data(25, 6)
    local H = curv.hessian(model, data, {batch = 10})
    local ev = eigvalsh(H:dense())
    local lit = torch.lit
    local py = {"import torch\ntorch.set_default_dtype(torch.float64)\nsd = {}\n"}
    for _, e in ipairs(model:named_parameters()) do
      py[#py + 1] = string.format("sd[%q] = torch.tensor(%s).reshape(%s)\n", e[1], lit(e[2]),
                                  table.concat(e[2]:size(), ", "))
    end
    py[#py + 1] = "x = torch.tensor(" .. lit(data.x) .. ").reshape(25, 6)\n"
    py[#py + 1] = "y = torch.tensor(" .. lit(data.y:double()) .. ").long() - 1\n"
    py[#py + 1] = [[
names = ["1.weight", "1.bias", "3.weight", "3.bias"]
shapes = [sd[k].shape for k in names]
flat = torch.cat([sd[k].reshape(-1) for k in names])
def loss(theta):
    ps, o = [], 0
    for s in shapes:
        k = s.numel(); ps.append(theta[o:o + k].reshape(s)); o += k
    h = torch.tanh(x @ ps[0].T + ps[1])
    return torch.nn.functional.cross_entropy(h @ ps[2].T + ps[3], y)
Hm = torch.autograd.functional.hessian(loss, flat)
for e in torch.linalg.eigvalsh(Hm):
    print(repr(float(e)))
]]
    local out = torch.run(table.concat(py))
    local tev = {}
    for num in out:gmatch("[^\n]+") do tev[#tev + 1] = tonumber(num) end
    assert.are.equal(#ev, #tev, out)
    for i = 1, #ev do
      assert.is_true(math.abs(ev[i] - tev[i]) < 1e-12, string.format("eigenvalue %d: %.15g vs %.15g",
                                                                     i, ev[i], tev[i]))
    end
  end)
end)
