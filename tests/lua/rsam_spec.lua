-- ls.methods.rsam (Riemannian SAM on spheres of scale-invariant weights x Euclidean space) by its
-- reductions and invariants, float64:
--   * no scale-invariant group: it is SAM, bit for bit (also with K = 2 ascent steps, against the
--     K-step ascent written out here);
--   * rho = 0: projected SGD with a fixed effective learning rate (the three-regimes code's fix_elr
--     with the gradient projected), with and without momentum, written out here;
--   * an exactly scale-invariant toy (batch norm with eps = 0): the update direction is tangent,
--     every group keeps its norm, and the whole trajectory is invariant to the scale of the
--     scale-invariant weights (the angular metric), for every metric, retraction, transport,
--     grouping and K; SAM and SGD change the norms;
--   * bad options.
local ls = require "landscape"
local nn = ls.nn
local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

local images = su.random_images

local function mlp() return nn.mlp{input = 64, hidden = {8}, classes = 4, seed = 3, dtype = "f64"} end
local function cnn()
    return nn.cnn{channels = {2, 3}, hidden = 5, classes = 4, input_size = 8, seed = 2,
                  dtype = "f64"}
end
-- exactly scale-invariant in 1.weight and 5.weight: batch norm without eps
local function toy()
    local d = "f64"
    return nn.sequential{nn.flatten(), nn.linear(64, 8, {seed = 1, bias = false, dtype = d}),
                         nn.batchnorm1d(8, {eps = 0, dtype = d}), nn.tanh(),
                         nn.linear(8, 6, {seed = 2, bias = false, dtype = d}),
                         nn.batchnorm1d(6, {eps = 0, dtype = d}), nn.tanh(),
                         nn.linear(6, 4, {seed = 3, dtype = d})}
end

local function train(model, method, opt_opts, d, epochs)
    local opt = ls.optim.sgd(model, opt_opts or {lr = 0.1, momentum = 0.9, weight_decay = 1e-3})
    local log = ls.train(model, d or images(24, 5), {optimizer = opt, method = method, batch = 8,
                                                     epochs = epochs or 2, shuffle = false,
                                                     progress = false})
    assert.are.equal("ok", log.status)
    return model, log
end

local function maxdiff(a, b) return (a - b):abs():max():item() end
local function norm_of(model, name) return model:state_dict()[name]:norm():item() end

describe("rsam without scale-invariant groups", function()
    it("is SAM bit for bit (the named set selects nothing on an MLP without batch norm)", function()
        local a = train(mlp(), ls.methods.sam{rho = 0.2})
        local b = train(mlp(), ls.methods.rsam{rho = 0.2})
        assert.are.same(a:flatten_parameters():totable(), b:flatten_parameters():totable())
    end)

    it("with K = 2 ascent steps is the normalised two-step ascent of SAM", function()
        local rho, alpha = 0.2, 0.1
        local model = train(mlp(), ls.methods.rsam{rho = rho, steps = 2, alpha = alpha}, {lr = 0.1},
                            nil, 1)
        -- by hand: eps = rho g/|g|, g' at w + eps, eps = rho (eps + alpha g')/|.|, g~ at w + eps
        local m = mlp()
        local d = images(24, 5)
        local ps = m:parameters()
        local function grad_at(w, eps, x, y)
            m:set_flat_parameters(w + eps)
            local g = ls.grad(ls.cross_entropy(m(x), y), ps)
            m:set_flat_parameters(w)
            local flat, off = ls.zeros({w:numel()}, {dtype = "f64"}), 1
            for _, t in ipairs(g) do
                flat:narrow(1, off, t:numel()):copy(t:reshape(-1))
                off = off + t:numel()
            end
            return flat
        end
        m:train()
        for xb, yb in d:batches(8, {shuffle = false}) do
            local w = m:flatten_parameters()
            local g = grad_at(w, w * 0, xb, yb)
            local eps = g * (rho / (g:norm():item() + 1e-12))
            local e = eps + grad_at(w, eps, xb, yb) * alpha
            eps = e * (rho / (e:norm():item() + 1e-12))
            m:set_flat_parameters(w - grad_at(w, eps, xb, yb) * 0.1)
        end
        assert.is_true(maxdiff(m:flatten_parameters(), model:flatten_parameters()) < 1e-13)
    end)
end)

describe("rsam with rho = 0", function()
    for _, mu in ipairs({0, 0.9}) do
        it(string.format("is projected SGD with a fixed effective learning rate (momentum %g)", mu),
           function()
            local elr, lr, wd = 0.05, 0.1, 1e-3
            local model = train(cnn(), ls.methods.rsam{rho = 0, elr = elr},
                                {lr = lr, momentum = mu, weight_decay = wd})
            -- by hand: SI weights (0.weight, 4.weight) on their spheres, the rest plain SGD
            local m = cnn()
            local d = images(24, 5)
            local names, ps = {}, {}
            for _, e in ipairs(m:named_parameters()) do names[#names + 1], ps[#ps + 1] = e[1], e[2] end
            local si = {["0.weight"] = true, ["4.weight"] = true}
            local R, buf = {}, {}
            for i, n in ipairs(names) do if si[n] then R[i] = ps[i]:norm():item() end end
            m:train()
            for _ = 1, 2 do
                for xb, yb in d:batches(8, {shuffle = false}) do
                    local g = ls.grad(ls.cross_entropy(m(xb), yb), ps)
                    ls.no_grad(function()
                        for i, p in ipairs(ps) do
                            local w = p:detach()
                            local dvec
                            if si[names[i]] then
                                local pg = g[i] - w * ((g[i] * w):sum():item() / w:norm():item() ^ 2)
                                if buf[i] then
                                    local b = buf[i]
                                    b = b - w * ((b * w):sum():item() / w:norm():item() ^ 2)
                                    pg = b * mu + pg
                                end
                                if mu ~= 0 then buf[i] = pg end
                                local u = w - pg * (elr * R[i] ^ 2)
                                w:copy(u * (R[i] / u:norm():item()))
                            else
                                dvec = g[i] + w * wd
                                if mu ~= 0 then
                                    buf[i] = buf[i] and buf[i] * mu + dvec or dvec
                                    dvec = buf[i]
                                end
                                w:copy(w - dvec * lr)
                            end
                        end
                    end)
                end
            end
            assert.is_true(maxdiff(m:flatten_parameters(), model:flatten_parameters()) < 1e-12)
            for i, n in ipairs(names) do
                if si[n] then assert.is_true(math.abs(norm_of(model, n) - R[i]) < 1e-12) end
            end
        end)
    end
end)

describe("rsam on an exactly scale-invariant toy", function()
    local SI = {"1.weight", "4.weight"}

    it("the toy is scale-invariant in 1.weight and 4.weight", function()
        local m, d = toy(), images(24, 5)
        m:train()
        local l0 = ls.cross_entropy(m(d.x), d.y):item()
        ls.no_grad(function()
            for _, n in ipairs(SI) do
                local w = m:state_dict()[n]
                w:copy(w * 3.7)
            end
        end)
        assert.is_true(math.abs(ls.cross_entropy(m(d.x), d.y):item() - l0) < 1e-13)
    end)

    local VARIANTS = {
        {},
        {metric = "euclidean"},
        {retraction = "exp"},
        {transport = "none"},
        {groups = "all"},
        {steps = 3, alpha = 0.05},
        {radius = 1},
        {follow_lr = true},
    }
    for _, v in ipairs(VARIANTS) do
        local label = {}
        for k, x in pairs(v) do label[#label + 1] = k .. " = " .. tostring(x) end
        label = #label > 0 and table.concat(label, ", ") or "defaults"
        it("keeps every sphere's radius and steps along tangents: " .. label, function()
            local opts = {rho = 0.1, elr = 0.05}
            for k, x in pairs(v) do opts[k] = x end
            local method = ls.methods.rsam(opts)
            local tangent = 0
            local base = getmetatable(method).update
            function method:update(b, opt, st)
                -- |<grad, w>| / (|grad| |w|) per sphere (one sphere for both with groups = "all")
                local sph = v.groups == "all" and {SI} or {{SI[1]}, {SI[2]}}
                for _, names in ipairs(sph) do
                    local gw, gg, ww = 0, 0, 0
                    for i, p in ipairs(b.params) do
                        if b.names[i] == names[1] or b.names[i] == names[2] then
                            local w = p:detach()
                            gw = gw + (p.grad * w):sum():item()
                            gg, ww = gg + p.grad:norm():item() ^ 2, ww + w:norm():item() ^ 2
                        end
                    end
                    tangent = math.max(tangent, math.abs(gw) / math.sqrt(gg * ww))
                end
                return base(self, b, opt, st)
            end
            local m0 = toy()
            local r0 = {}
            for i, n in ipairs(SI) do r0[i] = norm_of(m0, n) end
            local model = train(toy(), method, {lr = 0.1, momentum = 0.9})
            if v.transport ~= "none" then assert.is_true(tangent < 1e-12, tostring(tangent)) end
            local R = {}
            if v.groups == "all" then
                local s = 0
                for i, n in ipairs(SI) do s = s + norm_of(model, n) ^ 2 end
                R[1] = math.sqrt(s)
                local s0 = v.radius or math.sqrt(r0[1] ^ 2 + r0[2] ^ 2)
                assert.is_true(math.abs(R[1] - s0) < 1e-12)
            else
                for i, n in ipairs(SI) do
                    local want = v.radius or r0[i]
                    assert.is_true(math.abs(norm_of(model, n) - want) < 1e-12,
                                   string.format("%s: %.17g against %.17g", n, norm_of(model, n), want))
                end
            end
            -- and the weights moved
            assert.is_true(maxdiff(m0:flatten_parameters(), model:flatten_parameters()) > 1e-3)
        end)
    end

    it("follows one trajectory for any scale of the scale-invariant weights (angular metric)",
       function()
        local function run(c)
            local m = toy()
            ls.no_grad(function()
                for _, n in ipairs(SI) do
                    local w = m:state_dict()[n]
                    w:copy(w * c)
                end
            end)
            local _, log = train(m, ls.methods.rsam{rho = 0.1, elr = 0.05}, {lr = 0.1, momentum = 0.9})
            return m, log
        end
        local m1, log1 = run(1)
        local m3, log3 = run(3)
        for e = 1, 2 do
            assert.is_true(math.abs(log1.epochs[e].train_loss - log3.epochs[e].train_loss) < 1e-12)
        end
        local s1, s3 = m1:state_dict(), m3:state_dict()
        for _, n in ipairs(SI) do assert.is_true(maxdiff(s1[n] * 3, s3[n]) < 1e-12) end
        assert.is_true(maxdiff(s1["7.weight"], s3["7.weight"]) < 1e-12)
    end)

    it("SAM and SGD let the norms drift (what the spheres prevent)", function()
        for _, method in ipairs({ls.methods.sam{rho = 0.1}, ls.methods.plain()}) do
            local m0, m = toy(), train(toy(), method, {lr = 0.5})
            for _, n in ipairs(SI) do
                assert.is_true(norm_of(m, n) > norm_of(m0, n) * (1 + 1e-4))
            end
        end
    end)
end)

describe("rsam across a checkpoint", function()
    it("resumes bit for bit (radii, ELRs, the spheres' momentum buffers: the method's state)",
       function()
        local d = images(24, 5)
        local dir = os.tmpname()
        os.remove(dir)
        local function run(epochs, ck, resume)
            local m = cnn()
            local opt = ls.optim.sgd(m, {lr = 0.1, momentum = 0.9, weight_decay = 1e-3})
            ls.train(m, d, {optimizer = opt, batch = 8, epochs = epochs, progress = false,
                            method = ls.methods.rsam{rho = 0.1, radius = 2}, resume = resume,
                            checkpoint = ck and {path = ck} or nil})
            return m:flatten_parameters():totable()
        end
        local straight = run(3)
        run(1, dir)
        assert.are.same(straight, run(3, dir, true))
        os.remove(dir)
    end)
end)

describe("rsam options", function()
    it("are checked", function()
        has(errmsg(ls.methods.rsam, {metric = "fisher"}),
            "methods.rsam: option 'metric' must be one of angular, euclidean, got fisher")
        has(errmsg(ls.methods.rsam, {retraction = "qr"}),
            "option 'retraction' must be one of projective, exp, got qr")
        has(errmsg(ls.methods.rsam, {steps = 0}), "option 'steps' must be a positive integer")
        has(errmsg(ls.methods.rsam, {elr = 0}), "option 'elr' must be a positive number, got 0")
        has(errmsg(ls.methods.rsam, {radius = "unit"}), "option 'radius' must be a positive number")
        has(errmsg(ls.methods.rsam, {rhoo = 1}), "unknown option 'rhoo' (did you mean 'rho'?)")
        local m = cnn()
        has(errmsg(ls.train, m, images(8, 1), {optimizer = ls.optim.sgd(m, {lr = 0.1}),
                                               method = ls.methods.rsam{params = "9.nothing"}}),
            "methods.rsam: no parameters match \"9.nothing\"")
        -- a zero weight has no sphere
        ls.no_grad(function() m:state_dict()["0.weight"]:zero() end)
        has(errmsg(ls.train, m, images(8, 1), {optimizer = ls.optim.sgd(m, {lr = 0.1}),
                                               method = ls.methods.rsam{}}),
            "methods.rsam: the weights 0.weight have norm 0")
    end)
end)
