--- Autograd helpers built on ls.grad: Hessian-vector products, Jacobian-vector products (by the
-- double-vjp trick), vector-Jacobian products, and a finite-difference gradient check for Lua
-- functions. All accept a single tensor or a list of tensors wherever "tensors" is written.
local ls = require "landscape"
local util = require "landscape.util"

local M = {}

local function as_list(t, who)
  if ls.is_tensor(t) then return {t}, true end
  if type(t) ~= "table" then
    util.fail("%s: expected a tensor or a list of tensors, got %s", who, type(t))
  end
  return t, false
end

local function check_function(f, who)
  if type(f) ~= "function" then
    util.fail("%s: argument 1 must be a function, got %s", who, ls.is_tensor(f) and "a Tensor" or type(f))
  end
end

local function shape_str(t) return "[" .. table.concat(t:size(), "x") .. "]" end

-- Each direction must be a tensor shaped like its tensor (else the product would blame `mul`).
local function check_directions(who, ts, ds, tname, dname)
  if #ds ~= #ts then util.fail("%s: %d %s for %d %s", who, #ds, dname, #ts, tname) end
  for i = 1, #ts do
    if not ls.is_tensor(ds[i]) then
      util.fail("%s: %s[%d] is a %s, not a tensor", who, dname, i, type(ds[i]))
    end
    local a, b = ts[i]:size(), ds[i]:size()
    local same = #a == #b
    for k = 1, #a do same = same and a[k] == b[k] end
    if not same then
      util.fail("%s: %s[%d] has shape %s but %s[%d] has shape %s", who, dname, i, shape_str(ds[i]),
                tname, i, shape_str(ts[i]))
    end
  end
end

local function unwrap(list, single)
  if single then return list[1] end
  return list
end

-- <a, b> summed over a list of tensor pairs (nil entries of a skipped), as a recorded scalar; nil
-- when every entry is nil.
local function inner(as, bs)
  local total
  for i = 1, #bs do
    if as[i] ~= nil then
      local term = (as[i] * bs[i]):sum()
      total = total and (total + term) or term
    end
  end
  return total
end
M.inner = inner

--- autograd.hvp_from_grad(g, params, v [, opts]) -> list of H v (nil where a parameter is unused):
-- the second backward of an exact Hessian-vector product, H v = d<g, v>/dparams, for gradients g
-- taken with create_graph (lists aligned with params; nil entries of g are skipped). The one HVP
-- core: ls.hvp and the objective's dataset HVP (ls.objective, the Hessian operators) use it.
-- opts: create_graph = false (record H v, for third-order products), retain_graph = create_graph
-- (keep g's graph for another product).
function M.hvp_from_grad(g, params, vs, opts)
  opts = opts or {}
  local d = inner(g, vs)
  if d == nil then return {} end
  local cg = opts.create_graph and true or false
  local rg = opts.retain_graph
  if rg == nil then rg = cg end
  return ls.grad(d, params, {allow_unused = true, create_graph = cg, retain_graph = rg})
end

--- ls.hvp(f, params, v [, {create_graph = false}]) -> H v, shaped like params.
-- f: a function of no arguments returning a scalar loss that depends on params.
-- params: tensors with requires_grad; v: tensors of the same shapes.
-- Exact: the gradient is taken with create_graph and differentiated again; with create_graph the
-- result is itself recorded (differentiable once more).
-- e.g. local hv = ls.hvp(function() return (w * w * w):sum() end, w, ls.ones_like(w))
function M.hvp(f, params, v, opts)
  check_function(f, "hvp")
  local ps, single = as_list(params, "hvp")
  local vs = as_list(v, "hvp")
  check_directions("hvp", ps, vs, "parameters", "directions")
  opts = util.check_options(opts, {create_graph = true}, "hvp")
  local loss = f()
  local g = ls.grad(loss, ps, {create_graph = true})
  local hv = M.hvp_from_grad(g, ps, vs, opts)
  for i = 1, #ps do
    if hv[i] == nil then hv[i] = ls.zeros_like(ps[i]) end
  end
  return unwrap(hv, single)
end

--- ls.vjp(f, inputs, u) -> (outputs, u^T J): the gradient of <f(inputs), u> w.r.t. inputs.
-- The product v^T J of a vector with the Jacobian of f's outputs with respect to params, by
-- reverse mode (one backward pass).
-- e.g. local g = ls.vjp(function() return w:exp() end, w, ls.ones_like(w))
function M.vjp(f, inputs, u)
  check_function(f, "vjp")
  local xs, single = as_list(inputs, "vjp")
  local y = f(table.unpack(xs))
  local g = ls.grad(y, xs, {grad_outputs = u, allow_unused = true})
  for i = 1, #xs do
    if g[i] == nil then g[i] = ls.zeros_like(xs[i]) end
  end
  return y, unwrap(g, single)
end

--- ls.jvp(f, inputs, v) -> (outputs, J v) by the double-vjp trick: with a dummy u that requires grad,
-- g(u) = J^T u is linear in u, so d<g(u), v>/du = J v. f must return one tensor.
-- e.g. local jv = ls.jvp(function() return w:exp() end, w, ls.ones_like(w))
function M.jvp(f, inputs, v)
  check_function(f, "jvp")
  local xs, single = as_list(inputs, "jvp")
  local vs = as_list(v, "jvp")
  check_directions("jvp", xs, vs, "inputs", "directions")
  local y = f(table.unpack(xs))
  local u = ls.zeros_like(y):requires_grad()
  local g = ls.grad(y, xs, {grad_outputs = u, create_graph = true, allow_unused = true})
  local gs, ds = {}, {}
  for i = 1, #xs do
    if g[i] ~= nil then
      gs[#gs + 1] = g[i]
      ds[#ds + 1] = vs[i]
    end
  end
  if #gs == 0 then return y, ls.zeros_like(y) end
  local jv = ls.grad(inner(gs, ds), u, {allow_unused = true})
  if jv == nil then jv = ls.zeros_like(y) end
  return y, jv
end

--- ls.gradcheck(f, inputs, {eps = 1e-6, atol = 1e-6, rtol = 1e-5}) -> true, or false and a message.
-- Compares ls.grad of sum(f(inputs) * r) (r a fixed random projection) with central differences.
-- Inputs should be f64 tensors with requires_grad.
-- e.g. assert(ls.gradcheck(function(a) return a:exp() end, {ls.randn({3},
--          {dtype = "f64"}):requires_grad()}))
function M.gradcheck(f, inputs, opts)
  opts = util.check_options(opts, {eps = true, atol = true, rtol = true, seed = true}, "gradcheck")
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-6, opts.rtol or 1e-5
  check_function(f, "gradcheck")
  local xs = as_list(inputs, "gradcheck")
  local y = f(table.unpack(xs))
  local r = ls.rand(y:size(), {seed = opts.seed or 1, dtype = y:type(), lo = -1, hi = 1})
  local g = ls.grad((y * r):sum(), xs, {allow_unused = true})
  local function value()
    return ls.no_grad(function() return (f(table.unpack(xs)) * r):sum():item() end)
  end
  for i, x in ipairs(xs) do
    local flat = x:detach():reshape(-1)
    for j = 1, flat:numel() do
      local x0 = flat[j]
      flat[j] = x0 + eps
      local lp = value()
      flat[j] = x0 - eps
      local lm = value()
      flat[j] = x0
      local num = (lp - lm) / (2 * eps)
      local ana = g[i] and g[i]:reshape(-1)[j] or 0
      if math.abs(ana - num) > atol + rtol * math.abs(num) then
        return false, string.format("gradcheck: input %d element %d: analytic %.10g, numeric %.10g",
                                    i, j, ana, num)
      end
    end
  end
  return true
end

for _, name in ipairs({"hvp", "vjp", "jvp", "gradcheck"}) do M[name] = util.public(M[name]) end

return M
