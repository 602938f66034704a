--- landscape.train.methods.sam: SAM (Foret et al., ICLR 2021) and ASAM (Kwon et al., ICML 2021),
-- first order, as ls.methods.sam and ls.methods.asam. docs/training.md has the conventions.
--
--   ls.methods.sam{rho = 0.05, m = nil}
--   ls.methods.asam{rho = 0.5, eta = 0.01, m = nil, scaled = "*weight"}
--
-- One step on the batch (the convention of davda54/sam, the public PyTorch implementation):
--   1. g = grad L_B(w)                          (pass 1: batch-norm running statistics updated)
--   2. eps = rho g / (||g|| + 1e-12)             SAM
--      eps = rho T^2 g / (||T g|| + 1e-12)       ASAM, T = |w| + eta on the scaled parameters,
--                                                T = 1 on the others
--   3. g~ = grad L_B(w + eps)                    (pass 2: same batch, same dropout masks; batch
--                                                statistics, running statistics left alone)
--   4. w restored exactly (a copy), .grad = g~; the loop's optimizer step then adds weight decay at
--      the clean point w (eps comes from the data loss only; google-research/sam instead puts the
--      L2 term in the loss, so its eps and g~ contain wd w).
-- Options:
--   rho = 0.05 (sam) / 0.5 (asam)   the radius of the perturbation (>= 0)
--   eta = 0.01                      (asam) added to |w| in T (SamsungLabs/ASAM's default)
--   scaled = "*weight"              (asam) the parameters T scales, in the params language of
--                                   ls.objective: "*weight" (the default) is SamsungLabs/ASAM's
--                                   rule (names containing "weight": linear and convolution
--                                   weights and batch-norm scales; biases and shifts get T = 1);
--                                   "all" is davda54/sam's adaptive = True
--   m = nil                         m-sharpness: split the batch into consecutive chunks of m
--                                   examples and run steps 1-4 on each chunk, its own eps and g~
--                                   (w restored after each); .grad = the example-weighted mean of
--                                   the chunks' g~ (the mean over equal chunks). Each chunk's
--                                   first pass updates the running statistics, as one device of a
--                                   data-parallel run would. Same FLOPs, smaller passes.
local util = require "landscape.util"
local C = require "landscape.train.methods.common"
local public, check_options = util.public, util.check_options

local M = {}

local Sam = {}
Sam.__index = Sam
Sam.__name = "landscape.methods.Sam"

-- The perturbation eps (a list aligned with b.params) for the gradient g at the weights w.
function Sam:_eps(w, g)
    local eps = {}
    if self.name == "sam" then
        local s = self.rho / (C.norm(g) + 1e-12)
        for i, t in ipairs(g) do eps[i] = t * s end
        return eps
    end
    local T, tg = {}, {}
    for i, t in ipairs(g) do
        if self._scaled[i] then
            T[i] = w[i]:abs() + self.eta
            tg[i] = t * T[i]
        else
            tg[i] = t
        end
    end
    local s = self.rho / (C.norm(tg) + 1e-12)
    for i, t in ipairs(tg) do eps[i] = T[i] and t * T[i] * s or t * s end
    return eps
end

-- SAM's gradient of one (sub-)batch view b, with w the snapshot of the weights.
function Sam:_grad(b, w)
    local _, g = b:grad()
    return (C.grad_at(b, w, C.axpy(w, 1, self:_eps(w, g))))
end

function Sam:init(obj)
    if self.name == "asam" then self._scaled = C.selected(obj, self.scaled, "methods.asam") end
    return {}
end

function Sam:step(b)
    local w = b.objective:snapshot()
    if not self.m then
        b:set_grad(self:_grad(b, w))
        return
    end
    local acc
    for _, sub in ipairs(b:split(self.m)) do
        local g = self:_grad(sub, w)
        local c = sub.B / b.B
        for i, t in ipairs(g) do g[i] = t * c end
        if acc then for i = 1, #g do acc[i] = acc[i] + g[i] end else acc = g end
    end
    b:set_grad(acc)
end

function Sam:settings()
    return {method = self.name, rho = self.rho, eta = self.eta, m = self.m or 0,
            scaled = self.scaled and require("landscape.train.params").label(self.scaled) or nil}
end

local function new(name, opts, defaults)
    local who = "methods." .. name
    opts = check_options(opts, defaults, who)
    local self = setmetatable({name = name}, Sam)
    self.rho = C.number(opts.rho, defaults.rho, who, "rho")
    if opts.m ~= nil then self.m = util.posint(opts.m, who, "option 'm'") end
    if name == "asam" then
        self.eta = C.number(opts.eta, defaults.eta, who, "eta")
        self.scaled = opts.scaled or defaults.scaled
    end
    return self
end

--- ls.methods.sam{rho = 0.05, m = nil} -> SAM (options in the header).
-- Sharpness-aware minimisation: each step takes the gradient at w + rho g/||g|| (g from the batch's
-- data loss) and lets the optimizer step from w with it; weight decay applies at w, batch-norm
-- running statistics are not updated by the second pass; m splits the batch into sub-batches of m
-- examples, each with its own perturbation (m-sharpness).
-- e.g. ls.train(model, train, {optimizer = opt, method = ls.methods.sam{rho = 0.05}})
M.sam = public(function(opts) return new("sam", opts, {rho = 0.05, m = false}) end)

--- ls.methods.asam{rho = 0.5, eta = 0.01, m = nil, scaled = "*weight"} -> ASAM.
-- Adaptive SAM: the perturbation is taken in the metric of |w| + eta on the parameters named by
-- `scaled` (rho is larger than SAM's for that reason); otherwise as ls.methods.sam.
-- e.g. ls.train(model, train, {optimizer = opt, method = ls.methods.asam{rho = 0.5}})
M.asam = public(function(opts)
    return new("asam", opts, {rho = 0.5, eta = 0.01, m = false, scaled = "*weight"})
end)

return M
