-- ls.methods.sam, ls.methods.asam (also with m-sharpness) and the finite-difference form of
-- ls.methods.grad_norm against PyTorch: the same steps written in torch in this file (davda54/sam's
-- convention: eps from the data loss, the weights restored from a copy, batch-norm momentum 0 in
-- the second pass, weight decay and momentum in torch.optim.SGD), float64, a CNN with two batch
-- norms, four training steps; every parameter and running statistic must agree to 1e-12.
-- PyTorch is Debian's python3-torch through tests/lua/torch_oracle.lua (pending when missing).
local ls = require "landscape"
local nn = ls.nn
local torch = require "torch_oracle"

local N, BATCH, EPOCHS = 12, 6, 2
local LR, MOM, WD = 0.1, 0.9, 5e-3

local function model()
    return nn.cnn{channels = {2, 3}, hidden = 5, classes = 4, input_size = 8, seed = 3,
                  dtype = "f64"}
end

local function data()
    local x = ls.randn({N, 1, 8, 8}, {seed = 21, dtype = "f64"})
    local y = ls.randint(1, 5, {N}, {seed = 22})
    return ls.dataset(x, y)
end

-- The torch side: the twin of nn.cnn{channels = {2, 3}, hidden = 5, classes = 4, input_size = 8},
-- the same state dict, and the steps by hand.
local ORACLE = [==[
import sys, torch
import torch.nn as nn
import torch.nn.functional as F
torch.set_default_dtype(torch.float64)
T = torch.tensor

def twin():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 4))

def bn_momentum(model, m):
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = m

def grad(model, params, x, y, pass1):
    bn_momentum(model, 0.1 if pass1 else 0.0)   # davda54/sam's bypass_bn in pass 2
    return torch.autograd.grad(F.cross_entropy(model(x), y), params)

def set_params(params, values):
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)

def norm(vs):
    return torch.sqrt(sum((v * v).sum() for v in vs))

def sam_grad(model, names, params, w, x, y, kind, rho, eta):
    g = grad(model, params, x, y, True)
    if kind == "sam":
        s = rho / (norm(g) + 1e-12)
        eps = [gi * s for gi in g]
    else:   # asam: T = |w| + eta on names containing 'weight' (SamsungLabs/ASAM), 1 elsewhere
        t = [wi.abs() + eta if "weight" in n else None for n, wi in zip(names, w)]
        tg = [gi * ti if ti is not None else gi for gi, ti in zip(g, t)]
        s = rho / (norm(tg) + 1e-12)
        eps = [tgi * ti * s if ti is not None else tgi * s for tgi, ti in zip(tg, t)]
    set_params(params, [wi + e for wi, e in zip(w, eps)])
    g2 = grad(model, params, x, y, False)
    set_params(params, w)
    return g2

def step(model, opt, x, y, kind, rho, eta, m, r, lam):
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    w = [p.detach().clone() for p in params]
    if kind == "gnp":   # Zhao et al.: d = (1 - a) g + a grad L(w + r g/||g||), a = lam / r
        g = grad(model, params, x, y, True)
        n = norm(g) + 1e-12
        set_params(params, [wi + gi * (r / n) for wi, gi in zip(w, g)])
        g2 = grad(model, params, x, y, False)
        set_params(params, w)
        a = lam / r
        d = [gi * (1 - a) + g2i * a for gi, g2i in zip(g, g2)]
    else:
        size = m if m else x.shape[0]
        d = None
        for s in range(0, x.shape[0], size):
            xc, yc = x[s:s + size], y[s:s + size]
            g2 = sam_grad(model, names, params, w, xc, yc, kind, rho, eta)
            c = xc.shape[0] / x.shape[0]
            g2 = [t * c for t in g2]
            d = g2 if d is None else [a + b for a, b in zip(d, g2)]
    for p, di in zip(params, d):
        p.grad = di.clone()
    opt.step()
    opt.zero_grad()

def run(kind, rho, eta, m, r, lam):
    model = twin()
    model.load_state_dict({k: T(v) for k, v in STATE.items()}, strict=False)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOM, weight_decay=WD)
    for epoch in range(EPOCHS):
        for s in range(0, X.shape[0], BATCH):
            step(model, opt, X[s:s + BATCH], Y[s:s + BATCH], kind, rho, eta, m, r, lam)
    for k, v in model.state_dict().items():
        if v.dtype == torch.float64:
            print(k, " ".join(repr(float(e)) for e in v.reshape(-1)))

for case in CASES:
    print("## " + case[0])
    run(*case[1:])
print("## end")
]==]

-- name, the method, and the torch arguments (kind, rho, eta, m, r, lam)
local CASES = {
    {"sam", function() return ls.methods.sam{rho = 0.3} end, {"sam", 0.3, 0, nil, 0, 0}},
    {"sam_m", function() return ls.methods.sam{rho = 0.3, m = 4} end, {"sam", 0.3, 0, 4, 0, 0}},
    {"asam", function() return ls.methods.asam{rho = 1.0, eta = 0.01} end,
     {"asam", 1.0, 0.01, nil, 0, 0}},
    {"asam_m", function() return ls.methods.asam{rho = 1.0, eta = 0.1, m = 3} end,
     {"asam", 1.0, 0.1, 3, 0, 0}},
    {"gnp", function() return ls.methods.grad_norm{lambda = 0.08, r = 0.1, exact = false} end,
     {"gnp", 0, 0, nil, 0.1, 0.08}},
}

local function py_value(v)
    if v == nil then return "None" end
    if type(v) == "string" then return string.format("%q", v) end
    return string.format("%.17g", v)
end

local results
local function oracle()
    if results then return results end
    local m0, d = model(), data()
    local parts = {"import torch\ntorch.set_default_dtype(torch.float64)\nT = torch.tensor\n",
                   string.format("LR, MOM, WD, BATCH, EPOCHS = %.17g, %.17g, %.17g, %d, %d\n", LR,
                                 MOM, WD, BATCH, EPOCHS),
                   "X = T(" .. torch.lit(d.x) .. ")\n",
                   "Y = T(" .. torch.lit(d.y) .. ", dtype=torch.int64) - 1\n", "STATE = {\n"}
    for _, e in ipairs(m0:state_dict()) do
        if e[2].dtype == "f64" then
            parts[#parts + 1] = string.format("  %q: %s,\n", e[1], torch.lit(e[2]))
        end
    end
    parts[#parts + 1] = "}\nCASES = [\n"
    for _, c in ipairs(CASES) do
        local args = {}
        for i = 1, 6 do args[i] = py_value(c[3][i]) end
        parts[#parts + 1] = string.format("  (%q, %s),\n", c[1], table.concat(args, ", "))
    end
    parts[#parts + 1] = "]\n"
    local out = torch.run(table.concat(parts) .. ORACLE)
    results = {}
    local cur
    for line in out:gmatch("[^\n]+") do
        local name = line:match("^## (.+)$")
        if name then
            cur = {}
            results[name] = cur
        elseif cur then
            local k, rest = line:match("^(%S+) (.*)$")
            assert(k, "unexpected oracle line: " .. line)
            cur[k] = rest
        end
    end
    assert(results["end"], "python oracle failed:\n" .. out)
    return results
end

local function train(method)
    local m, d = model(), data()
    local opt = ls.optim.sgd(m, {lr = LR, momentum = MOM, weight_decay = WD})
    local log = ls.train(m, d, {optimizer = opt, method = method, epochs = EPOCHS, batch = BATCH,
                                shuffle = false, progress = false})
    assert.are.equal("ok", log.status)
    return m
end

describe("SAM, ASAM and the finite-difference gradient-norm step against PyTorch", function()
    for _, c in ipairs(CASES) do
        it(c[1] .. ": every parameter and running statistic to 1e-12 after 4 steps", function()
            if not torch.available() then return pending(torch.MISSING) end
            local expect = oracle()[c[1]]
            local m = train(c[2]())
            local n, worst = 0, 0
            for _, e in ipairs(m:state_dict()) do
                if e[2].dtype == "f64" then
                    n = n + 1
                    assert(expect[e[1]], "torch printed no " .. e[1])
                    worst = math.max(worst, torch.diff_line(e[2], expect[e[1]]))
                end
            end
            assert.are.equal(14, n)   -- 10 parameters and 4 running statistics
            assert.is_true(worst < 1e-12, string.format("%s: largest difference %.3g", c[1], worst))
            -- and the method mattered: the plain step ends elsewhere
            local plain = train(nil)
            local p1, p2 = plain:flatten_parameters(), m:flatten_parameters()
            assert.is_true((p1 - p2):abs():max():item() > 1e-4)
        end)
    end
end)
