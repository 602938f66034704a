-- ls.optim: SGD (plain, momentum, Nesterov, dampening, weight decay), Adam, AdamW and AMSGrad against
-- torch.optim in float64 for the same initial parameters and the same 5 gradients; the schedules
-- against torch's lr_scheduler sequences; clip_grad_norm against torch.nn.utils.clip_grad_norm_;
-- state_dict round trips that continue bit for bit; training through backward; bad input.
-- PyTorch is Debian's python3-torch, run through tests/lua/torch_oracle.lua; the PyTorch cases are
-- pending when it is missing.
local ls = require "landscape"
local optim = require "landscape.train.optim"
local torch = require "torch_oracle"

-- Every PyTorch computation of this spec goes into one script, run once on first use (starting
-- torch takes seconds): each `describe` registers a section with `oracle_section(name, body)` at load
-- time, and `oracle(name)` returns that section's output lines, or nil when torch is missing.
local SECTIONS, ORACLE = {}, nil

local function oracle_section(name, body) SECTIONS[#SECTIONS + 1] = {name, body} end

local function oracle(name)
  if not torch.available() then return nil end
  if ORACLE == nil then
    local parts = {"import math, warnings, torch\nwarnings.simplefilter('ignore')\n",
                   "torch.set_default_dtype(torch.float64)\nT = torch.tensor\n"}
    for _, sec in ipairs(SECTIONS) do
      parts[#parts + 1] = string.format("print('## %s')\n", sec[1])
      -- each section in its own function, so names do not leak between sections
      parts[#parts + 1] = "def section():\n"
      for line in (sec[2] .. "\n"):gmatch("(.-)\n") do parts[#parts + 1] = "    " .. line .. "\n" end
      parts[#parts + 1] = "section()\n"
    end
    parts[#parts + 1] = "print('## end')\n"
    local out = torch.run(table.concat(parts))
    assert(out:find("## end", 1, true), "python oracle failed:\n" .. out)
    ORACLE = {}
    local cur
    for line in out:gmatch("[^\n]+") do
      local name = line:match("^## (.+)$")
      if name then
        cur = {}
        ORACLE[name] = cur
      elseif cur then
        cur[#cur + 1] = line
      end
    end
  end
  return ORACLE[name]
end

local lit = torch.lit
local diff_line = torch.diff_line   -- largest |t - v| over a line of numbers printed by Python

local function maxdiff(a, b)
  local ta, tb = a:reshape(-1):totable(), b:reshape(-1):totable()
  assert.are.equal(#ta, #tb)
  local d = 0
  for i = 1, #ta do d = math.max(d, math.abs(ta[i] - tb[i])) end
  return d
end

local SHAPES = {{3, 4}, {4}, {2, 3}}
local STEPS = 5

-- initial values and gradients (gradients shrink over the steps so AMSGrad's maximum matters;
-- parameter 3 has no gradient at step 3, so it must be skipped there)
local function fixtures()
  local init, grads = {}, {}
  for i, s in ipairs(SHAPES) do
    init[i] = ls.randn(s, {seed = 10 + i, dtype = "f64"})
    grads[i] = {}
    for k = 1, STEPS do
      grads[i][k] = ls.randn(s, {seed = 100 * k + i, dtype = "f64"}) / k
    end
  end
  grads[3][3] = nil
  return init, grads
end

local function run_lua(kind, cfg, init, grads)
  local params = {}
  for i, t in ipairs(init) do params[i] = t:clone():requires_grad() end
  local opt = optim[kind](params, cfg)
  for k = 1, STEPS do
    for i, p in ipairs(params) do p.grad = grads[i][k] end
    opt:step()
  end
  return params, opt
end

local function py_kwargs(cfg)
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = cfg[k]
    if type(v) == "table" then v = string.format("(%.17g, %.17g)", v[1], v[2])
    elseif type(v) == "boolean" then v = v and "True" or "False"
    else v = string.format("%.17g", v) end
    parts[#parts + 1] = k .. "=" .. v
  end
  return table.concat(parts, ", ")
end

local TORCH_CLASS = {sgd = "SGD", adam = "Adam", adamw = "AdamW"}

local OPT_CASES = {
  {"sgd", {lr = 0.1}},
  {"sgd", {lr = 0.05, momentum = 0.9}},
  {"sgd", {lr = 0.05, momentum = 0.9, nesterov = true}},
  {"sgd", {lr = 0.05, momentum = 0.8, dampening = 0.3}},
  {"sgd", {lr = 0.05, weight_decay = 5e-2}},
  {"sgd", {lr = 0.05, momentum = 0.9, weight_decay = 5e-2, nesterov = true}},
  {"adam", {lr = 0.01}},
  {"adam", {lr = 0.01, betas = {0.8, 0.99}, eps = 1e-6, weight_decay = 0.1}},
  {"adam", {lr = 0.01, amsgrad = true}},
  {"adamw", {lr = 0.01}},
  {"adamw", {lr = 0.01, weight_decay = 0.1, amsgrad = true, betas = {0.5, 0.6}}},
}

local OPT_INIT, OPT_GRADS = fixtures()
do -- the torch side, registered at load time
  local py = {"G = {}\n"}
  for i = 1, #SHAPES do
    py[#py + 1] = string.format("init%d = T(%s)\n", i, lit(OPT_INIT[i]))
    for k = 1, STEPS do
      py[#py + 1] = string.format("G[%d, %d] = %s\n", i, k,
                                  OPT_GRADS[i][k] and "T(" .. lit(OPT_GRADS[i][k]) .. ")" or "None")
    end
  end
  py[#py + 1] = [[
def run(cls, **kw):
    ps = [init1.clone().requires_grad_(), init2.clone().requires_grad_(),
          init3.clone().requires_grad_()]
    opt = cls(ps, **kw)
    for k in range(1, 6):
        for i, p in enumerate(ps):
            p.grad = G[i + 1, k]
        opt.step()
    for p in ps:
        print(' '.join(repr(float(e)) for e in p.detach().reshape(-1)))
]]
  for _, c in ipairs(OPT_CASES) do
    py[#py + 1] = string.format("run(torch.optim.%s, %s)\n", TORCH_CLASS[c[1]], py_kwargs(c[2]))
  end
  oracle_section("optimizers", table.concat(py))
end

describe("optimizers against torch.optim (float64, 5 steps)", function()
  it("gives torch's parameters to 1e-12 for every configuration", function()
    local lines = oracle("optimizers")
    if not lines then
      pending("python3-torch is not installed")
      return
    end
    assert.are.equal(#OPT_CASES * #SHAPES, #lines, table.concat(lines, "\n"))
    for ci, c in ipairs(OPT_CASES) do
      local params = run_lua(c[1], c[2], OPT_INIT, OPT_GRADS)
      for i, p in ipairs(params) do
        local d = diff_line(p, lines[(ci - 1) * #SHAPES + i])
        assert.is_true(d < 1e-12, string.format("%s %s param %d: max diff %g", c[1],
                                                py_kwargs(c[2]), i, d))
      end
    end
  end)

  it("updates outside the graph: parameters stay leaves that require grad", function()
    local init, grads = fixtures()
    local params = run_lua("adam", {lr = 0.01}, init, grads)
    for _, p in ipairs(params) do
      assert.is_true(p.is_leaf)
      assert.is_true(p.needs_grad)
      assert.is_nil(p.grad_fn)
    end
    -- and their gradients still flow (after dropping the last assigned gradient)
    params[1].grad = nil
    local loss = (params[1] * params[1]):sum()
    loss:backward()
    assert.is_true(maxdiff(params[1].grad, params[1]:detach() * 2) == 0)
  end)

  it("skips parameters without a gradient and keeps no state for them", function()
    local a = ls.ones({2}, {dtype = "f64"}):requires_grad()
    local b = ls.ones({2}, {dtype = "f64"}):requires_grad()
    local opt = optim.adam({a, b}, {lr = 0.1})
    a.grad = ls.tensor({1, -1}, {dtype = "f64"})
    opt:step()
    assert.are.same({1, 1}, b:totable())
    assert.is_nil(opt.state[2])
    assert.are.equal(1, opt.state[1].step)
    assert.is_true(math.abs(a:totable()[1] - 0.9) < 1e-7)
  end)
end)

describe("training through backward", function()
  it("SGD with momentum fits a least-squares problem; zero_grad drops .grad", function()
    local x = ls.randn({32, 3}, {seed = 1, dtype = "f64"})
    local w_true = ls.tensor({{1}, {-2}, {0.5}}, {dtype = "f64"})
    local y = x:matmul(w_true)
    local w = ls.zeros({3, 1}, {dtype = "f64"}):requires_grad()
    local model = {parameters = function() return {w} end}
    local opt = optim.sgd(model, {lr = 0.1, momentum = 0.9})
    local function loss_fn() return ((x:matmul(w) - y) ^ 2):mean() end
    local first = loss_fn():item()
    local last
    for _ = 1, 400 do
      opt:zero_grad()
      assert.is_nil(w.grad)
      last = opt:step(function()
        local l = loss_fn()
        l:backward()
        return l
      end):item()
    end
    assert.is_true(last < 1e-8 * first, string.format("loss %g from %g", last, first))
    assert.is_true(maxdiff(w:detach(), w_true) < 1e-6)
  end)

  it("the learning rate is read at each step, so a schedule changes the updates", function()
    local w = ls.zeros({1}, {dtype = "f64"}):requires_grad()
    local opt = optim.sgd({w}, {lr = 1})
    local sched = optim.schedule.step(opt, {step_size = 1, gamma = 0.5})
    for _ = 1, 3 do
      w.grad = ls.ones({1}, {dtype = "f64"})
      opt:step()
      sched:step()
    end
    assert.are.equal(-(1 + 0.5 + 0.25), w:totable()[1])
    assert.are.equal(0.125, opt.lr)
  end)

  it("last_step_finite reports whether the step wrote a NaN or an infinity", function()
    for _, kind in ipairs({"sgd", "adam", "adamw"}) do
      for _, dtype in ipairs({"f32", "f64"}) do
        local a = ls.ones({40000}, {dtype = dtype}):requires_grad()   -- several kernel chunks
        local b = ls.ones({3}, {dtype = dtype}):requires_grad()
        local opt = optim[kind]({a, b}, {lr = 0.1})
        assert.is_nil(opt.last_step_finite)
        a.grad, b.grad = ls.ones({40000}, {dtype = dtype}), ls.ones({3}, {dtype = dtype})
        opt:step()
        assert.is_true(opt.last_step_finite)
        for _, bad in ipairs({0 / 0, math.huge, -math.huge}) do
          local g = ls.ones({40000}, {dtype = dtype})
          g:narrow(1, 39999, 1):fill(bad)     -- the last entry of the last chunk
          a.grad = g
          opt:step()
          assert.is_false(opt.last_step_finite, kind .. " " .. dtype .. " " .. tostring(bad))
          a:detach():fill(1)
          if kind ~= "sgd" then opt = optim[kind]({a, b}, {lr = 0.1}) end   -- fresh moments
        end
        a.grad = nil                           -- a parameter without a gradient is not written
        opt:step()
        assert.is_true(opt.last_step_finite)
      end
    end
  end)
end)

local SCHED_EPOCHS = 30
oracle_section("schedules", string.format([==[
L = torch.optim.lr_scheduler
def seq(make):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    s = make(opt)
    lrs = [opt.param_groups[0]['lr']]
    for _ in range(%d):
        opt.step()
        s.step()
        lrs.append(opt.param_groups[0]['lr'])
    print(' '.join(repr(float(v)) for v in lrs))
seq(lambda o: L.StepLR(o, step_size=3, gamma=0.5))
seq(lambda o: L.CosineAnnealingLR(o, T_max=10, eta_min=0.001))
seq(lambda o: L.LinearLR(o, start_factor=0.1, total_iters=5))
seq(lambda o: L.LinearLR(o, start_factor=0.25, end_factor=0.5, total_iters=4))
seq(lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.1, total_iters=5),
                                 L.CosineAnnealingLR(o, T_max=20)], milestones=[5]))]==],
  SCHED_EPOCHS))

describe("schedules against torch.optim.lr_scheduler", function()
  it("step, cosine (past t_max), warmup and warmup-then-cosine give torch's lr sequences", function()
    local lines = oracle("schedules")
    if not lines then
      pending("python3-torch is not installed")
      return
    end
    local function sequence(make)
      local opt = optim.sgd({ls.zeros({1}, {dtype = "f64"}):requires_grad()}, {lr = 0.1})
      local sched = make(opt)
      local lrs = {opt.lr}
      for _ = 1, SCHED_EPOCHS do
        opt:step()
        sched:step()
        lrs[#lrs + 1] = opt.lr
        assert.are.equal(opt.lr, sched:get_last_lr())
      end
      return lrs
    end
    local S = optim.schedule
    local ours = {
      sequence(function(o) return S.step(o, {step_size = 3, gamma = 0.5}) end),
      sequence(function(o) return S.cosine(o, {t_max = 10, eta_min = 0.001}) end),
      sequence(function(o) return S.warmup(o, {steps = 5, start_factor = 0.1}) end),
      sequence(function(o)
        return S.warmup(o, {steps = 4, start_factor = 0.25, end_factor = 0.5})
      end),
      sequence(function(o)
        local w = S.warmup(o, {steps = 5, start_factor = 0.1})
        local c = S.cosine(o, {t_max = 20})
        return S.sequential(o, {schedulers = {w, c}, milestones = {5}})
      end),
    }
    assert.are.equal(#ours, #lines, table.concat(lines, "\n"))
    for s, lrs in ipairs(ours) do
      local i = 0
      for num in lines[s]:gmatch("%S+") do
        i = i + 1
        local want = tonumber(num)
        assert.is_true(math.abs(lrs[i] - want) <= 1e-15 * math.abs(want),
                       string.format("schedule %d epoch %d: %.17g vs torch %.17g", s, i - 1,
                                     lrs[i], want))
      end
      assert.are.equal(SCHED_EPOCHS + 1, i)
    end
  end)

  it("warmup then cosine starts low, peaks at the milestone and anneals to eta_min", function()
    local opt = optim.adam({ls.zeros({1}):requires_grad()}, {lr = 1e-3})
    local w = optim.schedule.warmup(opt, {steps = 10, start_factor = 0.1})
    local c = optim.schedule.cosine(opt, {t_max = 90, eta_min = 1e-5})
    local sched = optim.schedule.sequential(opt, {schedulers = {w, c}, milestones = {10}})
    assert.is_true(math.abs(opt.lr - 1e-4) < 1e-18)
    for _ = 1, 10 do sched:step() end
    assert.is_true(math.abs(opt.lr - 1e-3) < 1e-15)
    for _ = 1, 90 do sched:step() end
    assert.is_true(math.abs(opt.lr - 1e-5) < 1e-15)
  end)
end)

local CLIP_CASES = {{2, 1.0}, {2, 1e3}, {1, 2.0}, {3, 0.5}, {"inf", 0.1}}
local CLIP_GRADS = {}
for i, s in ipairs(SHAPES) do CLIP_GRADS[i] = ls.randn(s, {seed = 50 + i, dtype = "f64"}) end
do
  local py = {}
  for i = 1, #SHAPES do py[#py + 1] = string.format("g%d = T(%s)\n", i, lit(CLIP_GRADS[i])) end
  py[#py + 1] = [[
def clip(max_norm, norm_type):
    ps = [torch.zeros_like(g, requires_grad=True) for g in (g1, g2, g3)]
    for p, g in zip(ps, (g1, g2, g3)):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
    print(repr(float(total)))
    for p in ps:
        print(' '.join(repr(float(e)) for e in p.grad.reshape(-1)))
]]
  for _, c in ipairs(CLIP_CASES) do
    py[#py + 1] = string.format("clip(%.17g, %s)\n", c[2],
                                c[1] == "inf" and "math.inf" or tostring(c[1]))
  end
  oracle_section("clip", table.concat(py))
end

describe("clip_grad_norm", function()
  it("matches torch.nn.utils.clip_grad_norm_ for norms 2, 1, 3 and inf", function()
    local lines = oracle("clip")
    if not lines then
      pending("python3-torch is not installed")
      return
    end
    assert.are.equal(#CLIP_CASES * (1 + #SHAPES), #lines, table.concat(lines, "\n"))
    for ci, c in ipairs(CLIP_CASES) do
      local params = {}
      for i, g in ipairs(CLIP_GRADS) do
        params[i] = ls.zeros_like(g):requires_grad()
        params[i].grad = g:clone()
      end
      local total = optim.clip_grad_norm(params, c[2], c[1])
      local base = (ci - 1) * (1 + #SHAPES)
      local want = tonumber(lines[base + 1])
      assert.is_true(math.abs(total - want) < 1e-12 * want,
                     string.format("norm %s: %.17g vs %.17g", c[1], total, want))
      for i, p in ipairs(params) do
        assert.is_true(diff_line(p.grad, lines[base + 1 + i]) < 1e-12, "gradient " .. i)
      end
    end
  end)

  it("returns 0 without gradients, accepts a model, refuses non-finite norms on request", function()
    local p = ls.ones({2}, {dtype = "f64"}):requires_grad()
    assert.are.equal(0, optim.clip_grad_norm({p}, 1))
    p.grad = ls.tensor({3, 4}, {dtype = "f64"})
    local model = {parameters = function() return {p} end}
    assert.are.equal(5, optim.clip_grad_norm(model, 10))
    assert.are.same({3, 4}, p.grad:totable())
    p.grad = ls.tensor({0 / 0, 1}, {dtype = "f64"})
    local ok, err = pcall(optim.clip_grad_norm, {p}, 1, {error_if_nonfinite = true})
    assert.is_false(ok)
    assert.matches("non%-finite", err)
    assert.are.equal(1, p.grad:totable()[2])
  end)
end)

describe("state_dict", function()
  local function continue_equal(kind, cfg)
    local init, grads = fixtures()
    grads[3][3] = grads[3][2]
    local function make()
      local ps = {}
      for i, t in ipairs(init) do ps[i] = t:clone():requires_grad() end
      return ps
    end
    local pa = make()
    local a = optim[kind](pa, cfg)
    for k = 1, 3 do
      for i, p in ipairs(pa) do p.grad = grads[i][k] end
      a:step()
    end
    local sd = a:state_dict()
    -- a second optimizer over copies of the current parameters, with default hyperparameters,
    -- loads it
    local pb = {}
    for i, p in ipairs(pa) do pb[i] = p:detach():clone():requires_grad() end
    local b = optim[kind](pb)
    b:load_state_dict(sd)
    assert.are.equal(a.lr, b.lr)
    -- the snapshot is a copy: stepping `a` does not change it, and loading cloned it again
    for k = 4, 5 do
      for i = 1, #pa do
        pa[i].grad = grads[i][k]
        pb[i].grad = grads[i][k]
      end
      a:step()
      b:step()
    end
    for i = 1, #pa do assert.are.equal(0, maxdiff(pa[i], pb[i])) end
    return sd, a
  end

  it("round-trips SGD with momentum exactly", function()
    local sd = continue_equal("sgd", {lr = 0.05, momentum = 0.9, nesterov = true,
                                      weight_decay = 1e-3})
    assert.are.equal("sgd", sd.kind)
    assert.is_true(ls.is_tensor(sd.state[1].momentum_buffer))
  end)

  it("round-trips Adam, AdamW and AMSGrad exactly", function()
    local sd = continue_equal("adam", {lr = 0.01, amsgrad = true})
    assert.are.equal(3, sd.state[1].step)
    assert.is_true(ls.is_tensor(sd.state[1].max_exp_avg_sq))
    continue_equal("adamw", {lr = 0.01, weight_decay = 0.05})
  end)

  it("keeps schedule state (initial_lr, epochs) and continues identically", function()
    local function make()
      local opt = optim.sgd({ls.zeros({1}):requires_grad()}, {lr = 0.1, momentum = 0.9})
      return opt, optim.schedule.cosine(opt, {t_max = 10})
    end
    local o1, s1 = make()
    for _ = 1, 4 do s1:step() end
    local osd, ssd = o1:state_dict(), s1:state_dict()
    local o2, s2 = make()
    o2:load_state_dict(osd)
    s2:load_state_dict(ssd)
    assert.are.equal(0.1, o2.initial_lr)
    for _ = 1, 8 do
      s1:step()
      s2:step()
      assert.are.equal(o1.lr, o2.lr)
    end
  end)

  it("round-trips a sequential schedule and refuses another schedule's state", function()
    local function make()
      local opt = optim.sgd({ls.zeros({1}):requires_grad()}, {lr = 0.1})
      local w = optim.schedule.warmup(opt, {steps = 3, start_factor = 0.1})
      local c = optim.schedule.cosine(opt, {t_max = 6})
      return opt, optim.schedule.sequential(opt, {schedulers = {w, c}, milestones = {3}})
    end
    local o1, s1 = make()
    for _ = 1, 2 do s1:step() end
    local osd, ssd = o1:state_dict(), s1:state_dict()
    local o2, s2 = make()
    o2:load_state_dict(osd)
    s2:load_state_dict(ssd)
    for _ = 1, 10 do
      s1:step()
      s2:step()
      assert.are.equal(o1.lr, o2.lr)
    end
    local _, cos = make()
    local ok, err = pcall(function() cos:load_state_dict(optim.schedule.step(o1, {step_size = 2})
                                                         :state_dict()) end)
    assert.is_false(ok)
    assert.matches("expected the state of a 'sequential' schedule", err, 1, true)
  end)

  it("refuses a state of another kind, count or shape", function()
    local p = ls.zeros({2, 2}, {dtype = "f64"}):requires_grad()
    local a = optim.adam({p})
    p.grad = ls.ones({2, 2}, {dtype = "f64"})
    a:step()
    local sd = a:state_dict()
    local ok, err = pcall(function() optim.sgd({p}):load_state_dict(sd) end)
    assert.is_false(ok)
    assert.matches("sgd: load_state_dict: the state belongs to an optimizer of kind 'adam'", err,
                   1, true)
    local q = ls.zeros({4}, {dtype = "f64"}):requires_grad()
    ok, err = pcall(function() optim.adam({q}):load_state_dict(sd) end)
    assert.is_false(ok)
    assert.matches("exp_avg is [2x2] f64 but the parameter is [4] f64", err, 1, true)
    ok, err = pcall(function() optim.adam({p, q}):load_state_dict(sd) end)
    assert.is_false(ok)
    assert.matches("the state has 1 parameters, this optimizer 2", err, 1, true)
  end)
end)

describe("bad input", function()
  local w = ls.zeros({2, 3}, {dtype = "f64"}):requires_grad()
  local function expect(fn, ...)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    for _, s in ipairs({...}) do
      assert.is_truthy(tostring(err):find(s, 1, true),
                       string.format("%q does not contain %q", tostring(err), s))
    end
    return err
  end

  it("names the optimizer, the option and the value", function()
    -- the position is the caller's line
    local err = expect(function() optim.sgd({w}, {lr = "fast"}) end,
                       "sgd: option 'lr' must be a number, got string")
    assert.matches("optim_spec.lua:%d+: sgd:", err)
    expect(function() optim.sgd({w}, {lr = -0.1}) end, "sgd: invalid learning rate -0.1")
    expect(function() optim.adam({w}, {lr = 0 / 0}) end, "adam: invalid learning rate")
    expect(function() optim.sgd({}, {lr = 0.1}) end, "sgd: got an empty parameter list")
    expect(function() optim.adamw({ls.zeros({2, 3})}) end,
           "adamw: params[1] [2x3] does not require grad")
    expect(function() optim.sgd({w * 2}) end, "sgd: params[1] is not a leaf")
    expect(function() optim.sgd({w, w}) end, "sgd: params[2] is the same tensor as params[1]")
    expect(function() optim.sgd({w, 3}) end, "sgd: params[2] is not a tensor (got number)")
    expect(function() optim.sgd(42) end, "sgd: params must be a list of tensors")
    expect(function() optim.sgd({w}, {learning_rate = 1}) end, "sgd: unknown option 'learning_rate'")
    expect(function() optim.sgd({w}, {nesterov = true}) end, "Nesterov momentum requires a momentum")
    expect(function() optim.sgd({w}, {nesterov = 1}) end, "option 'nesterov' must be a boolean")
    expect(function() optim.adam({w}, {betas = {0.9, 1}}) end,
           "adam: invalid beta parameter at index 2: 1")
    expect(function() optim.adam({w}, {betas = 0.9}) end, "adam: option 'betas' must be a list")
    expect(function() optim.adam({w}, {eps = -1}) end, "adam: invalid epsilon value -1")
    expect(function() optim.adamw({w}, {weight_decay = -1}) end, "adamw: invalid weight_decay value")
  end)

  it("checks hyperparameters changed between steps", function()
    local opt = optim.sgd({w}, {lr = 0.1})
    opt.lr = -1
    w.grad = ls.zeros({2, 3}, {dtype = "f64"})
    local err = expect(function() opt:step() end, "sgd: invalid learning rate -1")
    assert.matches("optim_spec.lua:%d+: sgd:", err)
    opt.lr = "x"
    expect(function() opt:step() end, "sgd: option 'lr' must be a number, got string")
    expect(function() opt:step(5) end, "sgd: step's closure must be a function")
    w.grad = nil
  end)

  it("checks schedules and clipping options", function()
    local opt = optim.sgd({w}, {lr = 0.1})
    local S = optim.schedule
    expect(function() S.cosine(opt, {}) end, "schedule.cosine: option 't_max' is required")
    expect(function() S.cosine(opt, {t_max = 2.5}) end, "option 't_max' must be an integer, got 2.5")
    expect(function() S.step(opt, {step_size = 0}) end, "option 'step_size' must be >= 1, got 0")
    expect(function() S.step({}, {step_size = 1}) end, "schedule.step: expected an optimizer")
    expect(function() S.warmup(opt, {start_factor = 0}) end, "start_factor must be in (0, 1]")
    local other = optim.sgd({ls.zeros({1}):requires_grad()}, {lr = 1})
    local a, b = S.warmup(opt, {}), S.cosine(other, {t_max = 3})
    expect(function() S.sequential(opt, {schedulers = {a, b}, milestones = {2}}) end,
           "schedulers[2] belongs to a different optimizer")
    expect(function() S.sequential(opt, {schedulers = {a}, milestones = {2}}) end,
           "expected 0 milestones for 1 schedulers, got 1")
    expect(function() optim.clip_grad_norm({w}, "big") end,
           "clip_grad_norm: max_norm must be a number")
    expect(function() optim.clip_grad_norm({w}, 1, 0) end, "clip_grad_norm: norm_type must be > 0")
    expect(function() optim.clip_grad_norm({w}, 1, {p = 2}) end, "clip_grad_norm: unknown option 'p'")
  end)
end)
