-- ls.nn against PyTorch (Debian's python3-torch at /usr/bin/python3), in both directions:
--   1. models built here are saved with model:save and loaded into their torch twins with
--      load_state_dict(strict=True); both sides run the same inputs in train mode then eval mode and
--      must agree, in float64, on the logits, the loss, every parameter gradient, a Hessian-vector
--      product, and the state dict (running statistics) after the train-mode forward;
--   2. models initialised in torch (batch-norm statistics moved by a training forward) are saved,
--      loaded here with nn.load_into (strict names and shapes), and must give torch's outputs.
-- Files go through safetensors; Python reads and writes the format by hand (json + struct +
-- torch.frombuffer, as torch_interop_spec.lua does) since python3-safetensors may be absent.
local ls = require "landscape"
local nn = ls.nn
local torch = require "torch_oracle"

local HAS_CONV = ls.conv2d ~= nil and ls.maxpool2d ~= nil and ls.avgpool2d ~= nil

local ORACLE = [==[
import json, struct, sys
import torch
import torch.nn as nn
import torch.nn.functional as F

TAG = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}
DTYPE = {v: k for k, v in TAG.items()}

def save(path, tensors, meta=None):
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, t in items:
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": TAG[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

def load(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    header.pop("__metadata__", None)
    out = {}
    for name, v in header.items():
        b, e = v["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=DTYPE[v["dtype"]]) if e > b else \
            torch.empty(0, dtype=DTYPE[v["dtype"]])
        out[name] = t.reshape(v["shape"]).clone()
    return out

# ---- the torch twins of the builders in lualib/landscape/models.lua ----
ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
       "leaky_relu": nn.LeakyReLU, "gelu_tanh": lambda: nn.GELU(approximate="tanh")}

class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, batchnorm=True, skip=True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batchnorm)
        if batchnorm:
            self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=not batchnorm)
        if batchnorm:
            self.bn2 = nn.BatchNorm2d(cout)
        self.batchnorm, self.skip = batchnorm, skip
        if skip:
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut.append(nn.Conv2d(cin, cout, 1, stride=stride, bias=not batchnorm))
                if batchnorm:
                    self.shortcut.append(nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.conv1(x)
        if self.batchnorm:
            out = self.bn1(out)
        out = self.conv2(F.relu(out))
        if self.batchnorm:
            out = self.bn2(out)
        if self.skip:
            out = out + self.shortcut(x)
        return F.relu(out)

def mlp(c):
    bn = c.get("batchnorm", False)
    layers, d = [nn.Flatten()], c["input"]
    for h in c["hidden"]:
        layers.append(nn.Linear(d, h, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm1d(h))
        layers.append(ACT[c.get("activation", "relu")]())
        d = h
    layers.append(nn.Linear(d, c["classes"]))
    return nn.Sequential(*layers)

def cnn(c):
    bn = c.get("batchnorm", True)
    layers, cin, size = [], 1, c.get("input_size", 28)
    for ch in c["channels"]:
        layers.append(nn.Conv2d(cin, ch, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(ch))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        cin, size = ch, size // 2
    layers += [nn.Flatten(), nn.Linear(cin * size * size, c["hidden"]), nn.ReLU(),
               nn.Linear(c["hidden"], c["classes"])]
    return nn.Sequential(*layers)

def resnet(c):
    bn, skip = c.get("batchnorm", True), c.get("skip", True)
    w = c["widths"]
    layers = [nn.Conv2d(1, w[0], 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(w[0]))
    layers.append(nn.ReLU())
    cin = w[0]
    for i, wi in enumerate(w):
        for j in range(c.get("blocks", 1)):
            layers.append(BasicBlock(cin, wi, 2 if (i > 0 and j == 0) else 1, bn, skip))
            cin = wi
    layers += [GlobalAvgPool(), nn.Linear(cin, c["classes"])]
    return nn.Sequential(*layers)

def custom(c):
    # conv with stride, padding and bias; tanh; average pooling; linear
    return nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(3 * 7 * 7, c["classes"]))

BUILD = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "custom": custom}

def run_case(case):
    model = BUILD[case["arch"]](case).double()
    model.load_state_dict(load(case["model_path"]), strict=True)
    inp = load(case["input_path"])
    x, y = inp["x"], inp["y"] - 1            # the Lua side's labels are 1-based
    params = [p for _, p in model.named_parameters()]
    names = [n for n, _ in model.named_parameters()]
    vs = [inp["v." + n] for n in names]
    out = {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, vs)), params)
        out[mode + ".logits"] = logits
        out[mode + ".loss"] = loss
        for n, gi, hi in zip(names, g, hv):
            out[mode + ".grad." + n] = gi
            out[mode + ".hvp." + n] = hi
        for n, t in model.state_dict().items():
            out[mode + ".state." + n] = t.clone()
    save(case["out_path"], out)

def torch_init(case):
    torch.manual_seed(case["torch_seed"])
    dt = torch.float64 if case["dtype"] == "f64" else torch.float32
    model = BUILD[case["arch"]](case).to(dt)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.train()
    model(torch.randn(case["input_shape"], dtype=dt) * 2 + 1)   # moves the running statistics
    save(case["model_path"], dict(model.state_dict()), {"format": "pt"})
    x = torch.randn(case["input_shape"], dtype=dt)
    out = {"x": x}
    with torch.no_grad():
        out["eval.logits"] = model.eval()(x)
        out["train.logits"] = model.train()(x)
    for n, t in model.state_dict().items():
        out["train.state." + n] = t.clone()
    save(case["out_path"], out)

for case in json.loads(sys.argv[1]):
    (run_case if case["cmd"] == "run" else torch_init)(case)
print("ok")
]==]

---------------------------------------------------------------------------------------------------
-- helpers

-- A JSON text for numbers, booleans, strings, lists and string-keyed tables.
local function json(v)
    local t = type(v)
    if t == "number" then
        return math.type(v) == "integer" and tostring(v) or string.format("%.17g", v)
    elseif t == "boolean" then
        return tostring(v)
    elseif t == "string" then
        return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
               .. '"'
    end
    assert(t == "table", "json: unsupported " .. t)
    if #v > 0 or next(v) == nil then
        local parts = {}
        for i, e in ipairs(v) do parts[i] = json(e) end
        return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = json(tostring(k)) .. ":" .. json(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
end

local function run_oracle(cases)
    local out = torch.run(ORACLE, {json(cases)})
    assert(out:match("ok"), "python oracle failed:\n" .. out)
end

-- max |a - b| / max(1, max |b|)
local function reldiff(a, b)
    assert.are.same(b:size(), a:size())
    if a:numel() == 0 then return 0 end
    local a64, b64 = a:double(), b:double()
    return (a64 - b64):abs():max():item() / math.max(1, b64:abs():max():item())
end

-- The Lua side of each case: the model (f64), its builder options, and the inputs.
local function lua_model(case)
    if case.arch == "custom" then
        return nn.sequential{nn.conv2d(1, 3, 3, {stride = 2, padding = 1, seed = case.seed,
                                                 dtype = case.dtype}),
                             nn.tanh(), nn.avgpool2d(2), nn.flatten(),
                             nn.linear(3 * 7 * 7, case.classes, {seed = case.seed + 1,
                                                                  dtype = case.dtype})}
    end
    local opts = {}
    for k, v in pairs(case.builder) do opts[k] = v end
    if opts.activation == "gelu_tanh" then
        opts.activation = function() return nn.gelu{approximate = "tanh"} end
    end
    opts.dtype, opts.seed = case.dtype, case.seed
    return nn[case.arch](opts)
end

-- Cases: name, arch, builder options (shared with Python, which reads the same keys), input shape.
local function make_cases()
    local cases = {}
    local function add(name, arch, builder, input_shape, conv)
        local c = {name = name, arch = arch, builder = builder, input_shape = input_shape,
                   conv = conv, dtype = "f64", seed = #cases + 1, classes = builder.classes}
        cases[#cases + 1] = c
        return c
    end
    add("mlp relu batchnorm", "mlp", {input = 12, hidden = {7, 5}, classes = 4, batchnorm = true},
        {6, 1, 3, 4})
    for _, act in ipairs({"tanh", "sigmoid", "softplus", "leaky_relu", "gelu_tanh"}) do
        add("mlp " .. act, "mlp", {input = 5, hidden = {6}, classes = 3, activation = act}, {7, 5})
    end
    add("cnn batchnorm", "cnn", {channels = {3, 4}, hidden = 8, classes = 5}, {4, 1, 28, 28}, true)
    add("cnn plain", "cnn", {channels = {2}, hidden = 6, classes = 3, batchnorm = false,
                             input_size = 10}, {3, 1, 10, 10}, true)
    add("resnet one basic block", "resnet", {widths = {4}, blocks = 1, classes = 3},
        {4, 1, 8, 8}, true)
    add("resnet projection shortcut", "resnet", {widths = {3, 5}, blocks = 1, classes = 3},
        {4, 1, 8, 8}, true)
    add("resnet without skips or batch norm", "resnet", {widths = {3, 4}, batchnorm = false,
                                                         skip = false, classes = 2},
        {3, 1, 6, 6}, true)
    add("conv stride, padding, bias; avgpool", "custom", {classes = 3}, {3, 1, 28, 28}, true)
    return cases
end

---------------------------------------------------------------------------------------------------

describe("ls.nn against PyTorch", function()
    local dir, ready, skip_reason
    local cases = make_cases()
    local results = {}

    setup(function()
        if not torch.available() then
            skip_reason = torch.MISSING
            return
        end
        dir = torch.tempdir()
        local jobs = {}
        for i, c in ipairs(cases) do
            if HAS_CONV or not c.conv then
                local model = lua_model(c)
                local base = string.format("%s/case%d", dir, i)
                model:save(base .. ".model.safetensors")
                local x = ls.randn(c.input_shape, {seed = 100 + i, dtype = "f64"})
                local n = c.input_shape[1]
                local y = ls.randint(1, c.builder.classes + 1, {n}, {seed = 200 + i})
                local inputs = {x = x, y = y}
                for k, e in ipairs(model:named_parameters()) do
                    inputs["v." .. e[1]] = ls.randn(e[2]:size(), {seed = 1000 * i + k, dtype = "f64"})
                end
                ls.io.save_safetensors(base .. ".input.safetensors", inputs)
                local job = {cmd = "run", arch = c.arch, model_path = base .. ".model.safetensors",
                             input_path = base .. ".input.safetensors",
                             out_path = base .. ".out.safetensors"}
                for k, v in pairs(c.builder) do job[k] = v end
                jobs[#jobs + 1] = job
                results[i] = {model = model, inputs = inputs, out = job.out_path}
            end
        end
        -- torch-initialised models for the other direction
        local reverse = {
            {arch = "mlp", input = 12, hidden = {7, 5}, classes = 4, batchnorm = true,
             input_shape = {6, 1, 3, 4}, dtype = "f64"},
            {arch = "cnn", channels = {3, 4}, hidden = 8, classes = 5, input_shape = {4, 1, 28, 28},
             dtype = "f32", conv = true},
            {arch = "resnet", widths = {3, 5}, blocks = 1, classes = 3, input_shape = {4, 1, 8, 8},
             dtype = "f64", conv = true},
        }
        for i, r in ipairs(reverse) do
            if HAS_CONV or not r.conv then
                r.cmd, r.torch_seed = "init", i
                r.model_path = string.format("%s/torch%d.model.safetensors", dir, i)
                r.out_path = string.format("%s/torch%d.out.safetensors", dir, i)
                jobs[#jobs + 1] = r
            end
        end
        results.reverse = reverse
        run_oracle(jobs)
        ready = true
    end)

    teardown(function()
        if dir then torch.remove_dir(dir) end
    end)

    for i, c in ipairs(cases) do
        it("agrees on " .. c.name .. ": logits, loss, gradients, HVP, running stats (f64)", function()
            if skip_reason then return pending(skip_reason) end
            if c.conv and not HAS_CONV then return pending("conv/pool ops not registered yet") end
            assert.is_true(ready)
            local r = results[i]
            local want = ls.io.load_safetensors(r.out)
            local model, x, y = r.model, r.inputs.x, r.inputs.y
            local ps = model:parameters()
            local named = model:named_parameters()
            for _, mode in ipairs({"train", "eval"}) do
                model:train(mode == "train")
                local logits = model(x)
                local loss = ls.cross_entropy(logits, y)
                local g = ls.grad(loss, ps, {create_graph = true})
                local dot
                for k, e in ipairs(named) do
                    local term = (g[k] * r.inputs["v." .. e[1]]):sum()
                    dot = dot and dot + term or term
                end
                local hv = ls.grad(dot, ps)
                local tol = 1e-12   -- measured: <= 1e-14 (relative)
                assert.is_true(reldiff(logits, want[mode .. ".logits"]) < tol, mode .. " logits")
                assert.is_true(reldiff(loss, want[mode .. ".loss"]) < tol, mode .. " loss")
                for k, e in ipairs(named) do
                    local gw, hw = want[mode .. ".grad." .. e[1]], want[mode .. ".hvp." .. e[1]]
                    assert.is_not_nil(gw, e[1])
                    local dg, dh = reldiff(g[k], gw), reldiff(hv[k], hw)
                    assert.is_true(dg < tol, string.format("%s gradient of %s: %.3g", mode, e[1], dg))
                    assert.is_true(dh < tol, string.format("%s HVP of %s: %.3g", mode, e[1], dh))
                end
                -- the state dict after this forward: running statistics moved once (train only)
                local count = 0
                for _, e in ipairs(model:state_dict()) do
                    local w = want[mode .. ".state." .. e[1]]
                    assert.is_not_nil(w, e[1])
                    assert.are.equal(e[2].dtype, w.dtype, e[1])
                    if e[2].dtype == "i64" then
                        assert.are.equal(w:item(), e[2]:item(), e[1])
                        assert.are.equal(1, e[2]:item())
                    else
                        assert.is_true(reldiff(e[2], w) < tol, mode .. " state " .. e[1])
                    end
                    count = count + 1
                end
                local torch_count = 0
                for k in pairs(want) do
                    if k:sub(1, #mode + 7) == mode .. ".state." then torch_count = torch_count + 1 end
                end
                assert.are.equal(torch_count, count)
            end
        end)
    end

    it("loads models initialised in torch (strict names) and gives torch's outputs", function()
        if skip_reason then return pending(skip_reason) end
        assert.is_true(ready)
        local done = 0
        for _, r in ipairs(results.reverse) do
            if r.model_path then
                local opts = {}
                for _, k in ipairs({"input", "hidden", "classes", "batchnorm", "channels", "widths",
                                    "blocks"}) do
                    opts[k] = r[k]
                end
                opts.dtype, opts.seed = r.dtype, 77
                local model = nn[r.arch](opts)
                nn.load_into(model, r.model_path)
                local want = ls.io.load_safetensors(r.out_path)
                local tol = r.dtype == "f64" and 1e-12 or 1e-5
                model:eval()
                local d = reldiff(model(want.x), want["eval.logits"])
                assert.is_true(d < tol, string.format("%s eval logits: %.3g", r.arch, d))
                model:train()
                d = reldiff(model(want.x), want["train.logits"])
                assert.is_true(d < tol, string.format("%s train logits: %.3g", r.arch, d))
                for _, e in ipairs(model:state_dict()) do
                    local w = want["train.state." .. e[1]]
                    assert.is_not_nil(w, e[1])
                    if e[2].dtype == "i64" then
                        assert.are.equal(2, e[2]:item(), e[1])
                    else
                        assert.is_true(reldiff(e[2], w) < tol, e[1])
                    end
                end
                done = done + 1
            end
        end
        if not HAS_CONV then return pending("conv/pool ops not registered yet (MLP checked)") end
        assert.are.equal(3, done)
    end)
end)
