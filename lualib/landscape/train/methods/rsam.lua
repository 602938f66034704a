--- landscape.train.methods.rsam: Riemannian SAM, as ls.methods.rsam: SAM on the product of the
-- spheres of scale-invariant weight groups (a weight that feeds a batch norm: L(c w) = L(w)) and
-- the Euclidean space of the other parameters (../shared/reference/sam-family.md §5.3;
-- docs/training.md).
--
--   ls.methods.rsam{rho = 0.05, params = "scale_invariant", elr = nil, metric = "angular",
--                   retraction = "projective", transport = "projection", steps = 1, alpha = rho,
--                   groups = "tensor", radius = "init", momentum = nil, follow_lr = false}
--
-- Each group g (its weights w_g, radius R_g fixed when training starts) lives on the sphere
-- ||w_g|| = R_g; the rest u is Euclidean. With P_g(v) = v - (<v, w_g>/||w_g||^2) w_g (the tangent
-- projection at w_g) and Ret_g the retraction, one step on the batch is:
--   1. g = grad L_B(theta)                          (pass 1; batch-norm running statistics updated)
--   2. r_g = c_g P_g(g_g), r_u = g_u                the Riemannian gradient: c_g = R_g^2 for the
--                                                   angular metric <a,b> = sum <a_g,b_g>/R_g^2 +
--                                                   <a_u,b_u> (scale-free), c_g = 1 for the metric
--                                                   induced by the Euclidean one
--   3. eps = rho r / (||r||_theta + 1e-12)          (with the angular metric rho is an angle:
--                                                   sum_g angle_g^2 + ||eps_u||^2 = rho^2)
--   4. theta~ = (Ret_g(w_g, eps_g), u + eps_u)
--      steps = K > 1: K - 1 times more (Riemannian gradient ascent on the ball of radius rho):
--      g' = grad L_B(theta~), r' = step 2 at theta~, carried to T_theta by P_g,
--      eps = rho (eps + alpha r') / ||eps + alpha r'||_theta, theta~ = Ret(theta, eps)
--   5. g~ = grad L_B(theta~)                        (pass 2: same batch and dropout masks; batch
--                                                   statistics, running statistics left alone)
--   6. .grad = (P_g(g~_g), g~_u)                    (transport back to T_theta by projection;
--                                                   transport = "none": g~ as it is)
-- and the update (method:update, in place of the optimizer's step), after the loop's clipping:
--   u: the optimizer's own step (SGD with momentum, weight decay, ...)
--   w_g: m_g = mu P_g(m_g) + grad_g (the buffer carried along by projection; m_g = grad_g on the
--        first step), w_g = Ret_g(w_g, -elr_g R_g^2 m_g): a step of fixed effective learning rate
--        elr_g (= lr / ||w_g||^2 of plain SGD); no weight decay on the spheres (it is radial).
-- Options:
--   rho = 0.05                  the radius of the perturbation (>= 0; radians with the angular
--                               metric when the rest is empty)
--   params = "scale_invariant"  the weights on spheres, in the params language (a named set may
--                               select nothing: then rsam is SAM on everything, bit for bit)
--   groups = "tensor"           one sphere per selected tensor; "all": one sphere for all of them
--                               together (the three-regimes code's fix_si_pnorm)
--   radius = "init"             R_g = the group's norm when training starts; a number: the groups
--                               are rescaled to that norm first (L does not change)
--   elr = nil                   the effective learning rate of every group; nil: each group's
--                               lr / R_g^2 with the optimizer's lr when training starts (the ELR
--                               plain SGD starts with)
--   follow_lr = false           true: the ELR is scaled by opt.lr / (its value at the start), so
--                               a learning-rate schedule applies to the spheres too
--   momentum = nil              mu of the spheres; nil: the optimizer's momentum (0 if it has none)
--   metric = "angular"          or "euclidean" (they agree when every R_g = 1)
--   retraction = "projective"   Ret(w, v) = R (w + v)/||w + v||; "exp": the exponential map
--                               cos(phi) w R/||w|| + sin(phi) R v_t/||v_t||, phi = ||v_t||/R, with
--                               v_t = P(v)
--   transport = "projection"    or "none" (step 6; "none" is SAM plus renormalisation)
--   steps = 1                   K, the ascent steps (K + 1 gradients per training step)
--   alpha = rho                 the inner step length of K > 1
local ls = require "landscape"
local util = require "landscape.util"
local C = require "landscape.train.methods.common"
local public, check_options, fail = util.public, util.check_options, util.fail

local M = {}

local Rsam = {}
Rsam.__index = Rsam
Rsam.__name = "landscape.methods.Rsam"

-- <a, b> and ||a||^2 over the indices of one group.
local function gdot(a, b, idx)
    local s = 0.0
    for _, i in ipairs(idx) do s = s + (a[i] * b[i]):sum():item() end
    return s
end
local function gsq(a, idx) return gdot(a, a, idx) end

-- out[i] = P_w(v)[i] for the group's indices (out may be v: then v is overwritten entry-wise).
local function project(v, w, idx, out)
    local c = gdot(v, w, idx) / gsq(w, idx)
    for _, i in ipairs(idx) do out[i] = v[i] - w[i] * c end
    return out
end

-- out[i] = Ret(w, v)[i] on the sphere of radius R, for the group's indices.
local function retract(kind, w, v, idx, R, out)
    if kind == "projective" then
        local u = {}
        for _, i in ipairs(idx) do u[i] = w[i] + v[i] end
        local s = R / math.sqrt(gsq(u, idx))
        for _, i in ipairs(idx) do out[i] = u[i] * s end
        return out
    end
    local vt = project(v, w, idx, {})
    local nv, nw = math.sqrt(gsq(vt, idx)), math.sqrt(gsq(w, idx))
    local phi = nv / R
    local a, b = math.cos(phi) * R / nw, nv > 0 and math.sin(phi) * R / nv or 0
    for _, i in ipairs(idx) do out[i] = w[i] * a + vt[i] * b end
    return out
end

function Rsam:init(obj, opt)
    local who = "methods.rsam"
    local flags = C.selected(obj, self.params, who)
    local groups = {}
    for i, f in ipairs(flags) do
        if f then
            if self.groups == "tensor" or #groups == 0 then groups[#groups + 1] = {} end
            local idx = groups[#groups]
            idx[#idx + 1] = i
        end
    end
    self._groups, self._si = groups, flags
    local ts = obj.tensors
    local st = {radii = {}, elr = {}, buf = {}, lr0 = type(opt.lr) == "number" and opt.lr or nil}
    if #groups > 0 then C.dtype(obj, who) end
    ls.no_grad(function()
        for gi, idx in ipairs(groups) do
            local w = {}
            for _, i in ipairs(idx) do w[i] = ts[i]:detach() end
            local n = math.sqrt(gsq(w, idx))
            if not (n > 0 and util.is_finite(n)) then
                fail("%s: the weights %s have norm %s; a sphere needs a positive finite radius",
                     who, obj.names[idx[1]], tostring(n))
            end
            local R = n
            if type(self.radius) == "number" then
                R = self.radius
                for _, i in ipairs(idx) do w[i]:copy(w[i] * (R / n)) end
            end
            st.radii[gi] = R
            local elr = self.elr
            if elr == nil then
                if st.lr0 == nil then
                    fail("%s: elr = nil takes the optimizer's lr, which is not a number; give elr", who)
                end
                elr = st.lr0 / (R * R)
            end
            st.elr[gi] = elr
        end
    end)
    local mu = self.momentum
    if mu == nil then mu = type(opt.momentum) == "number" and opt.momentum or 0 end
    st.mu = mu
    return st
end

-- The Riemannian gradient at the point p of the Euclidean gradient g (step 2).
function Rsam:_rgrad(g, p, st)
    local r = {}
    for i, t in ipairs(g) do r[i] = t end
    for gi, idx in ipairs(self._groups) do
        project(g, p, idx, r)
        if self.metric == "angular" then
            local c = st.radii[gi] ^ 2
            for _, i in ipairs(idx) do r[i] = r[i] * c end
        end
    end
    return r
end

-- rho v / (||v||_theta + 1e-12) (step 3), the norm of the metric at theta.
function Rsam:_scale_to_rho(v, st)
    local sq = 0.0   -- summed as objective.dot sums (so that no sphere means SAM, bit for bit)
    for i, t in ipairs(v) do
        if not self._si[i] then sq = sq + (t * t):sum():item() end
    end
    for gi, idx in ipairs(self._groups) do
        sq = sq + gsq(v, idx) / (self.metric == "angular" and st.radii[gi] ^ 2 or 1)
    end
    local s = self.rho / (math.sqrt(sq) + 1e-12)
    local out = {}
    for i, t in ipairs(v) do out[i] = t * s end
    return out
end

-- theta~ = Ret(theta, eps) (step 4).
function Rsam:_point(w, eps, st)
    local p = C.axpy(w, 1, eps)
    for gi, idx in ipairs(self._groups) do retract(self.retraction, w, eps, idx, st.radii[gi], p) end
    return p
end

function Rsam:step(b, _, st)
    local w = b.objective:snapshot()
    local _, g = b:grad()
    local eps = self:_scale_to_rho(self:_rgrad(g, w, st), st)
    local point = self:_point(w, eps, st)
    for _ = 2, self.steps do
        local r = self:_rgrad(C.grad_at(b, w, point), point, st)
        for _, idx in ipairs(self._groups) do project(r, w, idx, r) end
        eps = self:_scale_to_rho(C.axpy(eps, self.alpha, r), st)
        point = self:_point(w, eps, st)
    end
    local g2 = C.grad_at(b, w, point)
    if self.transport == "projection" then
        for _, idx in ipairs(self._groups) do project(g2, w, idx, g2) end
    end
    b:set_grad(g2)
end

function Rsam:update(b, opt, st)
    local groups = self._groups
    if #groups == 0 then
        opt:step()
        return
    end
    local ps, names = b.params, b.names
    local grads = {}
    for i, p in ipairs(ps) do
        if self._si[i] then grads[i], p.grad = p.grad, nil end
    end
    opt:step()
    local scale = 1
    if self.follow_lr and st.lr0 and st.lr0 > 0 then scale = opt.lr / st.lr0 end
    ls.no_grad(function()
        for gi, idx in ipairs(groups) do
            local R = st.radii[gi]
            local w, m, v = {}, {}, {}
            for _, i in ipairs(idx) do
                w[i] = ps[i]:detach()
                m[i] = grads[i] or ls.zeros_like(w[i])
            end
            if st.mu ~= 0 then
                local prev = {}
                for _, i in ipairs(idx) do prev[i] = st.buf[names[i]] end
                if prev[idx[1]] ~= nil then
                    project(prev, w, idx, prev)
                    for _, i in ipairs(idx) do m[i] = prev[i] * st.mu + m[i] end
                end
                for _, i in ipairs(idx) do st.buf[names[i]] = m[i] end
            end
            local c = -st.elr[gi] * scale * R * R
            for _, i in ipairs(idx) do v[i] = m[i] * c end
            local new = retract(self.retraction, w, v, idx, R, {})
            for _, i in ipairs(idx) do w[i]:copy(new[i]) end
        end
    end)
    for i, p in ipairs(ps) do
        if self._si[i] then p.grad = grads[i] end
    end
end

function Rsam:settings()
    local P = require "landscape.train.params"
    return {method = "rsam", rho = self.rho, params = P.label(self.params), groups = self.groups,
            radius = tostring(self.radius), elr = self.elr or "init", follow_lr = self.follow_lr,
            momentum = self.momentum, metric = self.metric, retraction = self.retraction,
            transport = self.transport, steps = self.steps, alpha = self.alpha}
end

--- ls.methods.rsam{...} -> Riemannian SAM (options in the header).
-- SAM on the product of the spheres of the scale-invariant weight groups (params, by default the
-- weights that feed a batch norm) and Euclidean space for the rest: the perturbation and the update
-- are projected on the tangent space, retracted to the sphere and moved with a fixed effective
-- learning rate (elr).
-- e.g. ls.train(model, train, {optimizer = opt, method = ls.methods.rsam{rho = 0.05}})
M.rsam = public(function(opts)
    local who = "methods.rsam"
    opts = check_options(opts, {rho = true, params = true, groups = true, radius = true,
                                elr = true, follow_lr = true, momentum = true, metric = true,
                                retraction = true, transport = true, steps = true, alpha = true},
                         who)
    local self = setmetatable({name = "rsam"}, Rsam)
    self.rho = C.number(opts.rho, 0.05, who, "rho")
    self.params = opts.params or "scale_invariant"
    self.groups = C.choice(opts.groups, {"tensor", "all"}, who, "groups")
    if opts.radius == nil or opts.radius == "init" then
        self.radius = "init"
    else
        self.radius = C.number(opts.radius, nil, who, "radius", true)
    end
    if opts.elr ~= nil then self.elr = C.number(opts.elr, nil, who, "elr", true) end
    self.follow_lr = C.boolean(opts.follow_lr, false, who, "follow_lr")
    if opts.momentum ~= nil then self.momentum = C.number(opts.momentum, nil, who, "momentum") end
    self.metric = C.choice(opts.metric, {"angular", "euclidean"}, who, "metric")
    self.retraction = C.choice(opts.retraction, {"projective", "exp"}, who, "retraction")
    self.transport = C.choice(opts.transport, {"projection", "none"}, who, "transport")
    self.steps = util.posint(opts.steps or 1, who, "option 'steps'")
    self.alpha = C.number(opts.alpha, self.rho, who, "alpha")
    return self
end)

return M
