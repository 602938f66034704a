--- landscape.train.params: the parameter-selection language, the one used by ls.objective and so
-- by every analysis and training method that takes `params`. docs/objective.md is the reference.
--
--   params = nil | "all"        every parameter
--          | "weights"          parameters of dim > 1 (linear and convolution weights: no biases,
--                               no batch-norm scale and shift)
--          | "no_bn"            every parameter except those of batch-norm layers
--          | "scale_invariant"  the weights whose output feeds a batch norm (a linear or convolution
--                               whose next sibling module is a batch norm: L(c w) = L(w) for c > 0,
--                               the spheres Riemannian SAM works on)
--          | "3.weight"         an exact state-dict name
--          | "3.*", "?.weight"  a glob: * any run of characters, ? one; anchored at both ends, so
--                               "0.*" selects 0.weight and 0.bias but not 10.weight
--          | "%d%.bias"         a Lua pattern (a string with any of %[]()^$+-), anchored at both ends
--          | function(name, tensor, module) -> true to select (module: the owning ls.nn module)
--          | {spec, spec, ...}  the union of the specs
-- The result is always in state-dict order, each parameter once. Selecting nothing is an error that
-- lists the model's parameter names. A model that is not an ls.nn module (only forward and
-- parameters()) has parameters named "1", "2", ... in the order parameters() gives them, none of
-- them in a batch norm.
local util = require "landscape.util"
local fail = util.fail

local M = {}

local function is_bn(m)
    return m ~= nil and (m.running_mean ~= nil or (m._type or ""):find("BatchNorm") ~= nil)
end

--- params.entries(model) -> the model's parameters as a list of {name, t (the tensor), module,
-- bn (owned by a batch norm), si (a weight whose output feeds a batch norm)}, state-dict order.
function M.entries(model, who)
    local out = {}
    if type(model) == "table" and model._params and model._children then
        local function walk(m, prefix, feeds_bn)
            for _, n in ipairs(m._params) do
                local t = m[n]
                out[#out + 1] = {name = prefix .. n, t = t, module = m, bn = is_bn(m),
                                 si = feeds_bn and n == "weight" and t:dim() > 1}
            end
            local ch = m._children
            for i, c in ipairs(ch) do
                walk(c[2], prefix .. c[1] .. ".", ch[i + 1] ~= nil and is_bn(ch[i + 1][2]))
            end
        end
        walk(model, "", false)
    elseif (type(model) == "table" or type(model) == "userdata")
            and type(model.parameters) == "function" then
        for i, t in ipairs(model:parameters()) do
            out[i] = {name = tostring(i), t = t, bn = false, si = false}
        end
    else
        fail("%s: the model must be an ls.nn module or have a parameters() method, got %s", who,
             type(model))
    end
    if #out == 0 then fail("%s: the model has no parameters", who) end
    return out
end

local SETS = {
    all = function() return true end,
    weights = function(e) return e.t:dim() > 1 end,
    no_bn = function(e) return not e.bn end,
    scale_invariant = function(e) return e.si end,
}
M.SETS = SETS

-- A predicate on entries from one spec (not a list).
local function predicate(spec, who)
    if type(spec) == "function" then
        return function(e) return spec(e.name, e.t, e.module) and true or false end
    end
    if type(spec) ~= "string" then
        fail("%s: option 'params' must be a name, a glob, a Lua pattern, a set (all, weights, " ..
             "no_bn, scale_invariant), a function or a list of these, got %s", who, type(spec))
    end
    if SETS[spec] then return SETS[spec] end
    local pat
    if spec:find("[%*%?]") and not spec:find("[%%%[%]%(%)%^%$%+%-]") then
        pat = "^" .. spec:gsub("[%.]", "%%."):gsub("%*", ".*"):gsub("%?", ".") .. "$"
    else
        pat = "^" .. spec .. "$"
        local ok, err = pcall(string.find, "", pat)
        if not ok then fail("%s: bad parameter pattern '%s': %s", who, spec, tostring(err)) end
    end
    return function(e) return e.name == spec or e.name:find(pat) ~= nil end
end

--- params.label(spec) -> a short text for a spec (logs and CSV columns): "all", "3.*|1.bias",
-- "custom" for functions.
function M.label(spec)
    if spec == nil then return "all" end
    if type(spec) == "string" then return spec end
    if type(spec) == "table" then
        local parts = {}
        for i, s in ipairs(spec) do parts[i] = type(s) == "string" and s or "custom" end
        return table.concat(parts, "|")
    end
    return "custom"
end

local function spec_str(spec)
    if type(spec) ~= "table" then
        return type(spec) == "string" and string.format("%q", spec) or "custom"
    end
    local parts = {}
    for i, p in ipairs(spec) do parts[i] = type(p) == "string" and string.format("%q", p) or "custom" end
    return "{" .. table.concat(parts, ", ") .. "}"
end

--- params.select(model, spec, who) -> the selected entries (see entries), state-dict order.
function M.select(model, spec, who)
    local all = M.entries(model, who)
    if spec == nil then return all end
    local specs = type(spec) == "table" and spec or {spec}
    if #specs == 0 then fail("%s: option 'params' is an empty list", who) end
    local preds = {}
    for i, s in ipairs(specs) do preds[i] = predicate(s, who) end
    local out = {}
    for _, e in ipairs(all) do
        for _, p in ipairs(preds) do
            if p(e) then
                out[#out + 1] = e
                break
            end
        end
    end
    if #out == 0 then
        local names = {}
        for i, e in ipairs(all) do names[i] = e.name end
        fail("%s: no parameters match %s; parameters are %s (option 'params' selects no " ..
             "parameters)", who, spec_str(spec), table.concat(names, ", "))
    end
    return out
end

return M
