--- landscape.train.methods (ls.methods): training methods, the step of ls.train made pluggable.
--
--   local log = ls.train(model, train, {method = ls.methods.sam{rho = 0.05}, optimizer = opt, ...})
--
-- The methods (docs/training.md has the formulas, defaults and conventions; the files beside this
-- one hold the code):
--   ls.methods.plain()                 one forward and backward (the default of ls.train)
--   ls.methods.sam{rho, m}             SAM, first order, davda54/sam's convention; m-sharpness (sam.lua)
--   ls.methods.asam{rho, eta, m, scaled}   adaptive SAM (sam.lua)
--   ls.methods.rsam{rho, params, elr, ...} Riemannian SAM on spheres x Euclidean space (rsam.lua)
--   ls.methods.grad_norm{lambda, exact, r, squared}      gradient-norm penalty (penalty.lua)
--   ls.methods.trace_penalty{lambda, probes, exact, r, seed}  Hessian-trace penalty (penalty.lua)
--
-- A method is a small object (Torch7's optim takes an opfunc it may call as often as it needs; a
-- method takes the objective's batch view, which it may evaluate as often as it needs):
--   method.name                              a label for logs and checkpoints (required)
--   method:step(batch, opt, state)           (required) one training step's gradient: evaluate the
--                                            batch view (batch:loss, batch:grad{create_graph},
--                                            batch:backward, batch:split(m), see ls.objective) and
--                                            leave the update direction in the .grad of the
--                                            parameters (opt:zero_grad() ran just before). It does
--                                            not call opt:step(): the loop then clips the
--                                            gradients, makes the update (below; so weight decay
--                                            applies at the point the method restored), steps a
--                                            per-step schedule, and checks and logs, the same for
--                                            every method.
--   method:update(batch, opt, state)         (optional) the update itself, in place of opt:step():
--                                            Riemannian SAM steps its scale-invariant weights along
--                                            their spheres and hands the rest to opt:step()
--   method:init(objective, opt) -> state     (optional) the method's own state, a table of numbers,
--                                            strings, booleans, tensors and nested tables; it is
--                                            saved in checkpoints and given back on resume
--   method:settings() -> table               (optional) its hyperparameters as flat key/values
-- The batch view replays the same dropout masks at every evaluation and lets only its first
-- evaluation update batch-norm running statistics (SAM's rule; batch:loss{update_stats = true}
-- overrides), so a method that evaluates twice sees one deterministic function of the weights.
-- The loop logs the loss and accuracy of the step's first evaluation and checks it for divergence
-- before anything else happens. obj:snapshot(), obj:restore(w), obj:set(w, {{c, d}}) (batch.objective)
-- move and restore the selected parameters exactly.
local util = require "landscape.util"

local M = {}

--- M.check(method, who): method must be an object with a name and a step function.
-- Checks that method is a training method (a table with a name and a step function); errors
-- name `who`. For writing methods of one's own.
-- e.g. ls.methods.check(ls.methods.plain(), "mytrain")
function M.check(m, who)
    if type(m) ~= "table" or type(m.step) ~= "function" then
        util.fail("%s: option 'method' must be a training method (an object with a step(batch, " ..
                  "opt, state) function, e.g. ls.methods.plain()), got %s", who, type(m))
    end
    if type(m.name) ~= "string" then util.fail("%s: the method has no name (a string)", who) end
    if m.update ~= nil and type(m.update) ~= "function" then
        util.fail("%s: the method's update must be a function", who)
    end
    return m
end

local Plain = {}
Plain.__index = Plain
Plain.__name = "landscape.methods.Plain"

--- ls.methods.plain() -> the ordinary step: one forward and one backward of the batch's mean loss
-- (batch:backward()); the optimizer makes it SGD, SGD with momentum, Adam or AdamW. It is the
-- default method of ls.train. (Named for what it does, not for an optimizer: it serves them all.)
-- e.g. ls.train(model, train, {method = ls.methods.plain(), optimizer = opt})
M.plain = util.public(function(opts)
    util.check_options(opts, {}, "methods.plain")
    return setmetatable({name = "plain"}, Plain)
end)

function Plain:step(batch) batch:backward() end
function Plain:settings() return {method = "plain"} end

local sam = require "landscape.train.methods.sam"
local penalty = require "landscape.train.methods.penalty"
M.sam, M.asam = sam.sam, sam.asam
M.rsam = require("landscape.train.methods.rsam").rsam
M.grad_norm, M.trace_penalty = penalty.grad_norm, penalty.trace_penalty

return M
