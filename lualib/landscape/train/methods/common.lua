--- landscape.train.methods.common: what the training methods share (internal). Vectors are lists
-- of tensors aligned with the batch view's parameters (b.params), as b:grad() returns them.
local util = require "landscape.util"
local fail = util.fail

local M = {}

--- ||v|| of a list of tensors (a number): the objective's one inner product of parameter lists.
M.norm = require("landscape.train.objective").norm

--- a + c b, elementwise over aligned lists (new tensors; nil entries of b leave a's).
function M.axpy(a, c, b)
    local out = {}
    for i = 1, #a do out[i] = b[i] ~= nil and a[i] + b[i] * c or a[i] end
    return out
end

--- The gradient of the batch's mean loss at `point` (a list aligned with b.params): the parameters
-- are set to point, evaluated, and put back to w (a snapshot, restored exactly, davda54/sam's
-- rule: never w + eps - eps). Later evaluations of a batch view leave the running statistics alone.
function M.grad_at(b, w, point)
    local obj = b.objective
    obj:restore(point)
    local ok, loss, g = pcall(b.grad, b)
    obj:restore(w)
    if not ok then error(loss, 0) end
    return g, loss
end

--- A number option: v (or def when nil) must be a finite number >= 0 (> 0 when positive).
function M.number(v, def, who, key, positive)
    if v == nil then v = def end
    if type(v) ~= "number" or not util.is_finite(v) or v < 0 or (positive and v == 0) then
        fail("%s: option '%s' must be a %s number, got %s", who, key,
             positive and "positive" or "finite non-negative", tostring(v))
    end
    return v
end

--- An option among the strings of `allowed` (a list; the first is the default).
function M.choice(v, allowed, who, key)
    if v == nil then return allowed[1] end
    for _, a in ipairs(allowed) do if v == a then return v end end
    fail("%s: option '%s' must be one of %s, got %s", who, key, table.concat(allowed, ", "),
         tostring(v))
end

--- A boolean option with a default.
function M.boolean(v, def, who, key)
    if v == nil then return def end
    if type(v) ~= "boolean" then
        fail("%s: option '%s' must be a boolean, got %s", who, key, type(v))
    end
    return v
end

--- The flags of the objective's tensors selected by a spec of the params language (a list of
-- booleans aligned with obj.tensors), and their count. A spec naming a set (all, weights, no_bn,
-- scale_invariant) may select nothing; any other spec must select something (params.select's
-- error) and only tensors the objective trains (a set is cut down to them).
function M.selected(obj, spec, who)
    local P = require "landscape.train.params"
    local chosen = {}
    local set = type(spec) == "string" and P.SETS[spec]
    if set then
        for _, e in ipairs(P.entries(obj.model, who)) do
            if P.SETS[spec](e) then chosen[e.name] = true end
        end
    else
        for _, e in ipairs(P.select(obj.model, spec, who)) do chosen[e.name] = true end
    end
    local flags, n, known = {}, 0, {}
    for i, name in ipairs(obj.names) do
        flags[i] = chosen[name] or false
        known[name] = true
        if flags[i] then n = n + 1 end
    end
    for name in pairs(chosen) do
        if not set and not known[name] then
            fail("%s: parameter %s is selected but not trained (not in the objective's parameters)",
                 who, name)
        end
    end
    return flags, n
end

--- The dtype of the objective's parameters, or an error (probes and sphere arithmetic need one).
function M.dtype(obj, who)
    if not obj.dtype then fail("%s: the trained parameters mix dtypes", who) end
    return obj.dtype
end

return M
