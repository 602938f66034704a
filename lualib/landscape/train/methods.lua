--- landscape.train.methods (ls.methods): training methods, the step of ls.train made pluggable.
--
--   local log = ls.train(model, train, {method = ls.methods.plain(), optimizer = opt, ...})
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
--                                            gradients, calls opt:step() (so weight decay applies
--                                            at the point the method restored), steps a per-step
--                                            schedule, and checks and logs, the same for every
--                                            method.
--   method:after_step(batch, opt, state)     (optional) runs right after opt:step() (a retraction
--                                            of scale-invariant weights back onto their spheres)
--   method:init(objective, opt) -> state     (optional) the method's own state, a table of numbers,
--                                            strings, booleans, tensors and nested tables; it is
--                                            saved in checkpoints and given back on resume
--   method:settings() -> table               (optional) its hyperparameters as flat key/values
-- The batch view replays the same dropout masks at every evaluation and lets only its first
-- evaluation update batch-norm running statistics (SAM's rule; batch:loss{update_stats = true}
-- overrides), so a method that evaluates twice sees one deterministic function of the weights.
-- The loop logs the loss and accuracy of the step's first evaluation and checks it for divergence
-- before anything else happens. obj:snapshot(), obj:restore(w), obj:set(w, {{c, d}}) (batch.objective)
-- move and restore the selected parameters exactly. docs/training.md has worked examples (a
-- method that evaluates the batch twice, one that differentiates through its gradient).
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
    if m.after_step ~= nil and type(m.after_step) ~= "function" then
        util.fail("%s: the method's after_step must be a function", who)
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

return M
