-- ls.landscape (lines, planes, interpolation, batch-norm probes): Li et al.'s filter
-- normalisation, exact agreement with ls.evaluate at the centre and at interpolation endpoints
-- (batch-norm buffers included), the probe's beta on an exactly quadratic loss, determinism, and
-- bad input.
local ls = require "landscape"
local nn = ls.nn

local function msg(fn) local ok, e = pcall(fn); assert.is_false(ok); return tostring(e) end
local function images(n, seed)
    return ls.dataset(ls.randn({n, 1, 8, 8}, {seed = seed}), ls.randint(1, 4, {n}, {seed = seed + 1}))
end
local function small_cnn(seed)
    return nn.cnn{channels = {2, 3}, hidden = 5, classes = 3, input_size = 8, seed = seed}
end

describe("directions", function()
    it("filter normalisation: each dim-0 slice has the weight's norm; 1-D entries zero", function()
        local m = small_cnn(1)
        local ps = m:named_parameters()
        local raw = {}
        for i, e in ipairs(ps) do raw[i] = ls.randn(e[2]:size(), {seed = i}) end
        local d = ls.landscape.normalize_direction(m, raw)
        local checked = 0
        for i, e in ipairs(ps) do
            local w = e[2]:detach()
            if w:dim() <= 1 then
                assert.equal(0, d[i]:abs():max():item())
            else
                for r = 1, w:size(1) do
                    assert.near(w[r]:norm():item(), d[i][r]:norm():item(), 1e-5 * w[r]:norm():item())
                    checked = checked + 1
                end
            end
        end
        assert.equal(2 + 3 + 5 + 3, checked)    -- conv output channels 2, 3; linear rows 5, 3
        -- ignore = "none": 1-D entries equal the weights (Li et al.)
        local d2 = ls.landscape.normalize_direction(m, raw, {ignore = "none"})
        for i, e in ipairs(ps) do
            if e[2]:dim() <= 1 then assert.equal(0, (d2[i] - e[2]:detach()):abs():max():item()) end
        end
    end)

    it("a flat direction is split in state-dict order and used as given", function()
        local m = nn.mlp{input = 4, hidden = {3}, classes = 2, seed = 1}
        local d = ls.dataset(ls.randn({6, 4}, {seed = 1}), ls.randint(1, 3, {6}, {seed = 2}))
        local v = ls.zeros({m:num_parameters()})
        local rows = ls.landscape.line(m, d, {direction = v, points = 3})
        assert.equal(rows[1].loss, rows[3].loss)        -- a zero direction: flat
        assert.equal("given", rows[1].direction); assert.equal("none", rows[1].norm)
    end)
end)

describe("line and plane", function()
    local m = small_cnn(2)
    local d = images(24, 5)
    m:train(); m(d.x); m:eval()                          -- batch-norm statistics away from 0/1

    it("alpha = 0 gives ls.evaluate's loss exactly, and the model is unchanged", function()
        local before = m:flatten_parameters()
        local rows = ls.landscape.line(m, d, {points = 5, seed = 3})
        assert.equal(5, #rows)
        assert.equal(0, rows[3].alpha)
        local ev = ls.evaluate(m, d)
        assert.equal(ev.loss, rows[3].loss)
        assert.equal(ev.accuracy, rows[3].accuracy)
        assert.equal("filter", rows[1].norm); assert.equal("biasbn", rows[1].ignore)
        assert.equal(0, (m:flatten_parameters() - before):abs():max():item())
        local gr = ls.landscape.line(m, d, {direction = "gradient", points = 3, range = {-0.1, 0.1}})
        assert.is_true(gr[3].loss > gr[1].loss)          -- uphill along the gradient
    end)

    it("a plane has the requested grid, alpha fastest, and is deterministic for a seed", function()
        local a = ls.landscape.plane(m, d, {grid = {4, 3}, seed = 7, xrange = {-1, 2}})
        assert.equal(12, #a)
        assert.equal(-1, a[1].alpha); assert.equal(2, a[4].alpha); assert.equal(-1, a[4].beta)
        assert.equal(0, a[5].beta); assert.equal(1, a[12].beta)
        assert.equal(4, a[12].i); assert.equal(3, a[12].j)
        local b = ls.landscape.plane(m, d, {grid = {4, 3}, seed = 7, xrange = {-1, 2}})
        local c = ls.landscape.plane(m, d, {grid = {4, 3}, seed = 8, xrange = {-1, 2}})
        for k = 1, 12 do assert.equal(a[k].loss, b[k].loss) end
        assert.are_not.equal(a[1].loss, c[1].loss)
        assert.is_true(math.abs(a[1].cosine) < 1)
    end)

    it("bad input raises clear errors", function()
        assert.truthy(msg(function() ls.landscape.line(m, d, {norm = "unit"}) end)
            :find("line: unknown norm 'unit'", 1, true))
        assert.truthy(msg(function() ls.landscape.plane(m, d, {grid = {0, 3}}) end)
            :find("plane: option 'grid' must be {nx, ny} with positive integers", 1, true))
        assert.truthy(msg(function() ls.landscape.line(m, d, {direction = ls.zeros({5})}) end)
            :find("a flat direction must have", 1, true))
        assert.truthy(msg(function() ls.landscape.line(m, d, {range = {1, -1}}) end)
            :find("option 'range' must be {lo, hi}", 1, true))
    end)
end)

describe("interpolate", function()
    it("reproduces both models' losses at the endpoints, batch-norm buffers included", function()
        local d = images(24, 9)
        local a, b = small_cnn(1), small_cnn(2)
        a:train(); a(d.x); b:train(); b(ls.randn({24, 1, 8, 8}, {seed = 99}) * 3 + 1)
        local la, lb = ls.evaluate(a, d), ls.evaluate(b, d)
        local rows = ls.landscape.interpolate(a, b, d, {points = 5, range = {-0.5, 1.5}})
        assert.equal(5, #rows)
        assert.equal(la.loss, rows[2].loss); assert.equal(lb.loss, rows[4].loss)
        assert.equal(la.accuracy, rows[2].accuracy)
        assert.is_true(a.training and b.training)       -- neither model changed mode
    end)

    it("refuses models with different architectures", function()
        local d = images(4, 1)
        local e = msg(function() ls.landscape.interpolate(small_cnn(1), nn.cnn{channels = {2, 4},
            hidden = 5, classes = 3, input_size = 8}, d) end)
        assert.truthy(e:find("interpolate: the models have different architectures", 1, true))
    end)
end)

describe("bn_probe", function()
    it("beta is ||Hg|| / ||g|| and the loss range is exact on a quadratic", function()
        local m = nn.linear(3, 1, {bias = false, dtype = "f64"})
        local w = {0.3, -0.2, 0.9}
        ls.no_grad(function() m.weight:detach():copy(ls.tensor({w}, {dtype = "f64"})) end)
        local A = {2, 1, 0.5}
        local x = ls.tensor({{2, 0, 0}, {0, 1, 0}, {0, 0, 0.5}}, {dtype = "f64"})
        local y = ls.ones({3, 1}, {dtype = "f64"})
        local g, Hg, gg, gHg, HgHg = {}, {}, 0, 0, 0
        for i = 1, 3 do
            local h = 2 / 3 * A[i] ^ 2
            g[i] = 2 / 3 * A[i] * (A[i] * w[i] - 1)
            Hg[i] = h * g[i]
            gg, gHg, HgHg = gg + g[i] ^ 2, gHg + g[i] * Hg[i], HgHg + Hg[i] ^ 2
        end
        local etas = {0.1, 0.2, 0.4}
        local r = ls.landscape.bn_probe(m, x, y, {etas = etas, loss = "mse"})
        assert.near(math.sqrt(HgHg / gg), r.beta, 1e-12)
        assert.near(math.sqrt(gg), r.grad_norm, 1e-12)
        local Ls = {}
        for k, eta in ipairs(etas) do Ls[k] = r.loss - eta * gg + 0.5 * eta * eta * gHg end
        assert.near(math.max(table.unpack(Ls)) - math.min(table.unpack(Ls)), r.loss_range, 1e-12)
        assert.near((0.4 - 0.1) * math.sqrt(HgHg), r.grad_range, 1e-12)
        assert.equal(0.3, m.weight:detach()[1][1])
    end)

    it("leaves a batch-norm model's weights and running statistics alone", function()
        local m = nn.mlp{input = 6, hidden = {5}, classes = 3, batchnorm = true, seed = 1}
        local x, y = ls.randn({10, 6}, {seed = 1}), ls.randint(1, 4, {10}, {seed = 2})
        local sd0 = {}
        for i, e in ipairs(m:state_dict()) do sd0[i] = e[2]:clone() end
        local r = ls.landscape.bn_probe(m, x, y)
        assert.equal("train", r.mode); assert.is_true(r.beta > 0)
        for i, e in ipairs(m:state_dict()) do
            assert.equal(0, (e[2]:double() - sd0[i]:double()):abs():max():item())
        end
    end)
end)
