-- ls.margins: output margins and layer margins against hand computations (a linear model, where the
-- input margin is the exact distance to the decision boundary), first-order margins against finite
-- differences (input and hidden layers of a small tanh MLP), per-sample separation in eval mode for
-- batch norm, pooling and residual blocks, the total-variance normalisation, positive_only, the
-- signature and its log rule, input geometry, and the error messages.
local ls = require "landscape"
local st = require "landscape.stats"
local nn = ls.nn
local torch = require "torch_oracle"

local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

local function near(a, b, tol)
    tol = tol or 1e-10
    assert(math.abs(a - b) <= tol * math.max(1, math.abs(b)),
           string.format("expected %.17g, got %.17g (tol %g)", b, a, tol))
end

-- 3 classes from 4 features: label = argmax of the first three (plus a few flipped labels, so that
-- some margins are negative).
local function blobs(n, seed)
    local x = ls.randn({n, 4}, {seed = seed, dtype = "f64"})
    local y = x:narrow(2, 1, 3):argmax(2)
    local yt = y:totable()
    for i = 1, n, 7 do yt[i] = yt[i] % 3 + 1 end
    return {x = x, y = ls.tensor(yt, {dtype = "i64"}), n = n}
end

-- The label and the best other class, by hand, from a Lua matrix of logits.
local function best_other(f, y)
    local j, best = nil, -math.huge
    for c = 1, #f do
        if c ~= y and f[c] > best then j, best = c, f[c] end
    end
    return j
end

describe("ls.margins", function()
    it("is callable as ls.margins, with signature and input_geometry", function()
        assert.is_function(ls.margins.signature)
        assert.is_function(ls.margins.input_geometry)
        local m = ls.margins(nn.sequential{nn.linear(4, 3, {seed = 1, dtype = "f64"})}, blobs(5, 1),
                             {layers = {}})
        assert.are.equal(5, m.output:size(1))
    end)

    describe("a linear model", function()
        local data = blobs(37, 2)
        local lin = nn.linear(4, 3, {seed = 3, dtype = "f64"})
        local model = nn.sequential{lin}
        local W, b = lin.weight:detach():totable(), lin.bias:detach():totable()
        local X, Y = data.x:totable(), data.y:totable()
        -- by hand: logits, j, output margin, and the exact distance to the boundary between y and j
        local out, dist, js = {}, {}, {}
        for i = 1, #X do
            local f = {}
            for c = 1, 3 do
                f[c] = b[c]
                for k = 1, 4 do f[c] = f[c] + W[c][k] * X[i][k] end
            end
            local y = Y[i]
            local j = best_other(f, y)
            js[i] = j
            out[i] = f[y] - f[j]
            local nw = 0
            for k = 1, 4 do nw = nw + (W[y][k] - W[j][k]) ^ 2 end
            local num = b[y] - b[j]
            for k = 1, 4 do num = num + (W[y][k] - W[j][k]) * X[i][k] end
            dist[i] = num / math.sqrt(nw)
        end
        -- the total variance of the input: sum over features of the population variance
        local tv = 0
        for k = 1, 4 do
            local s, s2 = 0, 0
            for i = 1, #X do s = s + X[i][k] end
            local mu = s / #X
            for i = 1, #X do s2 = s2 + (X[i][k] - mu) ^ 2 end
            tv = tv + s2 / #X
        end

        it("output margins and best-other classes match the hand computation", function()
            local m = ls.margins(model, data, {layers = {"input"}, batch = 10, eps = 0})
            local o, j = m.output:totable(), m.pairs.j:totable()
            for i = 1, #X do
                near(o[i], out[i], 1e-12)
                assert.are.equal(js[i], j[i])
            end
            assert.are.equal(data.y, m.pairs.y)
            local wrong = 0
            for i = 1, #X do if out[i] < 0 then wrong = wrong + 1 end end
            assert.is_true(wrong > 0)       -- the flipped labels give negative margins
        end)

        it("the input margin is the exact geometric distance, raw and normalised", function()
            local m = ls.margins(model, data, {layers = {"input", "output"}, batch = 10, eps = 0})
            local raw, nrm = m.raw.input:totable(), m.layers.input:totable()
            near(m.nu.input, math.sqrt(tv), 1e-12)
            for i = 1, #X do
                near(raw[i], dist[i], 1e-12)
                near(nrm[i], dist[i] / math.sqrt(tv), 1e-12)
            end
            -- the output slot: the margin at the logits, (f_y - f_j)/sqrt(2), over nu(logits)
            local o = m.layers.output:totable()
            local nu_f = math.sqrt(ls.no_grad(function()
                return model(data.x):var(1, false, 0):sum():item()
            end))
            near(m.nu.output, nu_f, 1e-12)
            for i = 1, #X do near(o[i], out[i] / math.sqrt(2) / nu_f, 1e-12) end
            local r = ls.margins(model, data, {layers = {"output"}, output = "raw"})
            for i, v in ipairs(r.layers.output:totable()) do near(v, out[i], 1e-12) end
        end)

        it("the default eps only perturbs the distance slightly", function()
            local m = ls.margins(model, data, {layers = {"input"}})
            for i, v in ipairs(m.raw.input:totable()) do near(v, dist[i], 1e-5) end
        end)

        it("input geometry: |W_y - W_j| and |W^T (softmax - e_y)|", function()
            local g = ls.margins.input_geometry(model, data, {batch = 8})
            local mg, lg = g.margin_grad_norm:totable(), g.loss_grad_norm:totable()
            for i = 1, #X do
                local y, j = Y[i], js[i]
                local f, z = {}, 0
                for c = 1, 3 do
                    f[c] = b[c]
                    for k = 1, 4 do f[c] = f[c] + W[c][k] * X[i][k] end
                end
                local mx = math.max(f[1], f[2], f[3])
                for c = 1, 3 do z = z + math.exp(f[c] - mx) end
                local nw, nl = 0, 0
                for k = 1, 4 do
                    nw = nw + (W[y][k] - W[j][k]) ^ 2
                    local gk = 0
                    for c = 1, 3 do
                        local p = math.exp(f[c] - mx) / z
                        gk = gk + W[c][k] * (p - (c == y and 1 or 0))
                    end
                    nl = nl + gk * gk
                end
                near(mg[i], math.sqrt(nw), 1e-12)
                near(lg[i], math.sqrt(nl), 1e-10)
            end
            near(g.summary.margin_grad_norm.q2, st.quantile(g.margin_grad_norm, 0.5), 0)
            assert.is_number(g.summary.loss_grad_norm.sd)
        end)
    end)

    describe("a tanh MLP against finite differences", function()
        local data = blobs(12, 4)
        local model = nn.sequential{
            nn.linear(4, 6, {seed = 11, dtype = "f64"}), nn.tanh(),
            nn.linear(6, 5, {seed = 12, dtype = "f64"}), nn.tanh(),
            nn.linear(5, 3, {seed = 13, dtype = "f64"}),
        }
        local ch = model:children()
        -- f_y - f_j as a function of the activation after child k (k = 0: the input)
        local function margin_from(k, z, y, j)
            for i = k + 1, #ch do z = ch[i]:forward(z) end
            local f = z:totable()[1]
            return f[y] - f[j]
        end
        local function fd_grad_norm(k, z, y, j)
            local h, s = 1e-6, 0
            local v = z:totable()[1]
            for u = 1, #v do
                local p, q = {table.unpack(v)}, {table.unpack(v)}
                p[u], q[u] = v[u] + h, v[u] - h
                local d = (margin_from(k, ls.tensor({p}, {dtype = "f64"}), y, j) -
                           margin_from(k, ls.tensor({q}, {dtype = "f64"}), y, j)) / (2 * h)
                s = s + d * d
            end
            return math.sqrt(s)
        end

        it("input, hidden and 'first'/'last' gradient norms match central differences", function()
            local m = ls.margins(model, data, {layers = {"input", 1, 2, "first", "last"}, batch = 5,
                                               eps = 0})
            assert.are.equal(1, m.index.first)
            assert.are.equal(3, m.index.last)
            local o = m.output:totable()
            local y, j = data.y:totable(), m.pairs.j:totable()
            ls.no_grad(function()
                for i = 1, 12, 3 do
                    local z = data.x:narrow(1, i, 1)
                    for k = 0, 3 do
                        if k > 0 then z = ch[k]:forward(z) end
                        local spec = ({[0] = "input", 1, 2, "last"})[k]
                        local gn = math.abs(o[i] / m.raw[spec]:totable()[i])
                        near(gn, fd_grad_norm(k, z, y[i], j[i]), 1e-7)
                    end
                end
            end)
            -- "first" is child 1 (the first linear's output), the same as layer 1
            assert.are.same(m.raw[1]:totable(), m.raw.first:totable())
            -- normalisation by the total variance of the layer's units over the data
            local h1 = ls.no_grad(function() return ch[1]:forward(data.x) end)
            near(m.nu[1], math.sqrt(h1:var(1, false, 0):sum():item()), 1e-12)
            for i, v in ipairs(m.layers[1]:totable()) do
                near(v, m.raw[1]:totable()[i] / m.nu[1], 1e-12)
            end
        end)
    end)

    describe("batch norm, pooling and residual blocks in eval mode", function()
        local function cnn()
            local model = nn.sequential{
                nn.conv2d(1, 3, 3, {padding = 1, bias = false, seed = 21, dtype = "f64"}),
                nn.batchnorm2d(3, {dtype = "f64"}), nn.relu(),
                nn.basic_block(3, 4, {stride = 2, seed = 22, dtype = "f64"}),
                nn.maxpool2d(2), nn.flatten(), nn.linear(16, 3, {seed = 25, dtype = "f64"}),
            }
            -- a few training-mode forwards so the running statistics are not the defaults
            ls.no_grad(function()
                for s = 1, 3 do model(ls.randn({8, 1, 8, 8}, {seed = 30 + s, dtype = "f64"})) end
            end)
            return model
        end
        local x = ls.randn({9, 1, 8, 8}, {seed = 41, dtype = "f64"})
        local data = {x = x, y = ls.tensor({1, 2, 3, 1, 2, 3, 1, 2, 3}, {dtype = "i64"}), n = 9}

        it("gives the same per-sample margins for any batch size (samples separate)", function()
            local model = cnn()
            model:train()
            local opts = {layers = {"input", "first", "last", 4, 5, "output"}}
            opts.batch = 9
            local a = ls.margins(model, data, opts)
            opts.batch = 2
            local b = ls.margins(model, data, opts)
            assert.is_true(model.training)             -- the caller's mode is restored
            assert.are.equal(2, a.index.first)          -- conv + its batch norm
            assert.are.equal(4, a.index.last)           -- the residual block
            for _, spec in ipairs({"input", "first", "last", 4, 5, "output"}) do
                local u, v = a.layers[spec]:totable(), b.layers[spec]:totable()
                assert.are.equal(9, #u)
                for i = 1, 9 do near(u[i], v[i], 1e-9) end
            end
            -- one sample alone gives the same raw margin
            local one = ls.margins(model, {x = x:narrow(1, 4, 1), y = data.y:narrow(1, 4, 1)},
                                   {layers = {"input", 4}})
            near(one.raw.input:totable()[1], a.raw.input:totable()[4], 1e-9)
            near(one.raw[4]:totable()[1], a.raw[4]:totable()[4], 1e-9)
        end)

        it("refuses layer margins in train mode with batch norm", function()
            local model = cnn()
            has(errmsg(ls.margins, model, data, {mode = "train"}), "train mode")
            has(errmsg(ls.margins.input_geometry, model, data, {mode = "train"}), "train mode")
            local m = ls.margins(model, data, {mode = "train", layers = {"output"}})
            assert.are.equal(9, m.layers.output:size(1))
        end)
    end)

    describe("positive_only and the signature", function()
        local data = blobs(60, 5)
        local model = nn.sequential{nn.linear(4, 8, {seed = 51, dtype = "f64"}), nn.relu(),
                                    nn.linear(8, 3, {seed = 52, dtype = "f64"})}

        it("keeps the positive margins and records the kept fraction", function()
            local all = ls.margins(model, data)
            local pos = ls.margins(model, data, {positive_only = true})
            local o = all.output:totable()
            local kept = {}
            for i, v in ipairs(o) do if v > 0 then kept[#kept + 1] = i end end
            assert.is_true(#kept > 0 and #kept < 60)
            for _, spec in ipairs({"input", "first", "last", "output"}) do
                near(pos.kept_fraction[spec], #kept / 60, 0)
                local d, full = pos.layers[spec]:totable(), all.layers[spec]:totable()
                assert.are.equal(#kept, #d)
                for q, i in ipairs(kept) do
                    assert.is_true(d[q] > 0)
                    near(d[q], full[i], 0)
                end
            end
            assert.are.same(kept, pos.keep:totable())
            -- raw = true summarises the margins before the division by nu, over the kept samples
            local sig = ls.margins.signature(pos, {stats = "quartiles+p5p95", raw = true})
            assert.is_true(sig.raw)
            for _, spec in ipairs({"input", "first", "output"}) do
                local r = all.raw[spec]:totable()
                local sel = {}
                for q, i in ipairs(kept) do sel[q] = r[i] end
                local s = st.summary(sel, "quartiles+p5p95")
                local name = spec
                near(sig.values[name].q2, s.q2, 0)
                near(sig.values[name].p5, s.p5, 0)
                -- and it is the normalised signature times nu
                local n = ls.margins.signature(pos, {stats = "quartiles+p5p95"})
                near(sig.values[name].q3, n.values[name].q3 * pos.nu[spec], 1e-12)
            end
        end)

        it("summarises each layer; features and tidy rows; the log rule", function()
            local m = ls.margins(model, data, {layers = {"input", 1, "output"}})
            local sig = ls.margins.signature(m, {stats = "quartiles+fences"})
            local s = st.summary(m.layers[1], "quartiles+fences")
            assert.are.same({"input", "layer1", "output"}, sig.layers)
            local f = sig:features()
            near(f["layer1.q2"], s.q2, 0)
            near(f["layer1.fence_lo"], s.fence_lo, 0)
            near(f["input.q3"], st.quantile(m.layers.input, 0.75), 0)
            assert.are.equal(15, #sig:feature_names())
            local rows = sig:rows({model = "m1"})
            assert.are.equal(15, #rows)
            assert.are.same({layer = "input", stat = "q1", value = f["input.q1"], log = false,
                             model = "m1"}, rows[1])
            -- log: log of positive values; a value <= 0 becomes log(1e-12) and is counted
            local lg = ls.margins.signature(m, {stats = "all", log = true})
            local raw = lg.raw_values.layer1
            local clipped = 0
            for _, stat in ipairs(st.SETS.all) do
                local v = lg.values.layer1[stat]
                if raw[stat] > 0 then near(v, math.log(raw[stat]), 1e-15)
                else
                    near(v, math.log(1e-12), 1e-15)
                    clipped = clipped + 1
                end
            end
            assert.is_true(clipped > 0)                 -- p5 and q1 are negative here
            assert.are.equal(clipped, lg:features()["layer1.n_clipped"])
            local path = os.tmpname()
            ls.csv.write(path, lg:rows())
            local back = ls.csv.read_rows(path)
            os.remove(path)
            assert.are.equal(3 * 9, #back)
            -- the moments signature
            local mo = ls.margins.signature(m, {stats = "moments", layers = {"output"}})
            near(mo.values.output.sd, st.sd(m.layers.output), 1e-12)
        end)
    end)

    describe("errors", function()
        local data = blobs(10, 6)
        local model = nn.sequential{nn.linear(4, 5, {seed = 61, dtype = "f64"}), nn.relu(),
                                    nn.linear(5, 3, {seed = 62, dtype = "f64"})}

        it("names the problem", function()
            has(errmsg(ls.margins, model, data, {layers = {"hidden"}}), "unknown layer 'hidden'")
            has(errmsg(ls.margins, model, data, {layers = {3}}),
                "layer index 3 is out of range: the sequential has 3 children, so hidden layers " ..
                "are 1..2")
            has(errmsg(ls.margins, model, data, {layers = {0}}), "out of range")
            has(errmsg(ls.margins, nn.sequential{nn.linear(4, 3, {dtype = "f64"})}, data,
                       {layers = {"last"}}), "has no hidden layer")
            local wide = {x = ls.randn({10, 7}, {dtype = "f64"}), y = data.y}
            has(errmsg(ls.margins, model, wide), "the model rejected input [10x7]")
            has(errmsg(ls.margins, model, {x = data.x, y = data.y:narrow(1, 1, 9)}),
                "9 labels for 10 samples")
            has(errmsg(ls.margins, model, data, {labels = ls.full({10}, 4, {dtype = "i64"})}),
                "labels span 4..4 but the model has 3 classes")
            has(errmsg(ls.margins, model, data, {batch = 0}),
                "option 'batch' must be a positive integer")
            has(errmsg(ls.margins, model, data, {layer = {1}}), "unknown option 'layer'")
            has(errmsg(ls.margins, model, data, {mode = "test"}), "option 'mode' must be")
            has(errmsg(ls.margins, "model", data), "expected an ls.nn module")
            local m = ls.margins(model, data, {layers = {"input"}})
            has(errmsg(ls.margins.signature, m, {layers = {"output"}}), "layer 'output' is not in")
            has(errmsg(ls.margins.signature, m, {stats = "deciles"}), "unknown statistics set")
            -- a module that is not a sequential: only "input" and "output"
            local Net = nn.class("MarginsTestNet")
            function Net:forward(x) return self.l(x) end
            local net = nn.Module.init(setmetatable({}, Net))
            net:add_child("l", nn.linear(4, 3, {seed = 63, dtype = "f64"}))
            has(errmsg(ls.margins, net, data, {layers = {1}}), "needs an ls.nn.sequential model")
            local mi = ls.margins(net, data, {layers = {"input", "output"}})
            assert.are.equal(10, mi.layers.input:size(1))
            -- errors point at the caller
            local msg = errmsg(function() local r = ls.margins(model, data, {layers = {9}}); return r end)
            has(msg, "margins_spec.lua")
        end)
    end)
end)

describe("output margins against PyTorch", function()
    it("equal f_y - max_{j != y} f_j of the same MLP in torch (float64)", function()
        if not torch.available() then return pending(torch.MISSING) end
        local model = ls.nn.mlp{input = 4, hidden = {6}, classes = 3, seed = 5, dtype = "f64"}
        local data = blobs(23, 9)
        local m = ls.margins(model, data, {layers = {}})
        local lit = torch.lit
        local sd = model:state_dict()
        local py = {"import torch\nT = lambda v: torch.tensor(v, dtype=torch.float64)\n",
                    "x = T(", lit(data.x), ")\ny = torch.tensor(", lit(data.y), ") - 1\n",
                    "net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 6), ",
                    "torch.nn.ReLU(), torch.nn.Linear(6, 3)).double()\n",
                    "sd = {}\n"}
        for _, name in ipairs({"1.weight", "1.bias", "3.weight", "3.bias"}) do
            py[#py + 1] = string.format("sd[%q] = T(%s)\n", name, lit(sd[name]))
        end
        py[#py + 1] = [[
net.load_state_dict(sd)
f = net(x)
fy = f.gather(1, y[:, None])[:, 0]
other = f.clone()
other.scatter_(1, y[:, None], float("-inf"))
print(" ".join(repr(float(v)) for v in fy - other.max(1).values))
]]
        local out = torch.run(table.concat(py))
        local ours, i = m.output:totable(), 0
        for num in out:gmatch("%S+") do
            i = i + 1
            near(ours[i], assert(tonumber(num), out), 1e-12)
        end
        assert.are.equal(#ours, i)
    end)
end)
