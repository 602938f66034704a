--- landscape.train.checkpoint: the state of a whole training run in one file, written whole.
--
-- ls.train writes it (opts.checkpoint) and reads it back (opts.resume); docs/training.md describes
-- what a run's state holds. The file is a safetensors file: the tensors (model parameters and
-- buffers, optimizer and method state) under path-like names ("model/3.weight",
-- "optimizer/state/#2/momentum_buffer") and everything else in its metadata, one entry per scalar,
-- keyed by the same paths, each value typed ("i:42" integer, "f:0x1.8p+1" float in C99 hex so the
-- double comes back bit for bit, "f:inf", "f:nan", "s:text", "b:true", "e:" an empty table, "t:" a
-- tensor). Integer table keys are written "#n". The engine's safetensors writer writes a
-- "<path>.part" file in the same folder and renames it into place, so a run killed at any instant
-- leaves either the previous checkpoint or the new one, never a torn file.
--
--   checkpoint.save(path, tree)   -- tree: nested tables of numbers, strings, booleans, tensors
--   local tree = checkpoint.load(path)
local ls = require "landscape"
local util = require "landscape.util"
local fs = require "landscape.io.fs"
local fail = util.fail

local M = {}

M.FORMAT = "landscape.run/1"

local function key_of(k)
    if math.type(k) == "integer" then return "#" .. k end
    if type(k) ~= "string" or k == "" or k:find("/", 1, true) or k:sub(1, 1) == "#" then
        fail("checkpoint: cannot store the key %s (keys are integers or strings without '/' that " ..
             "do not start with '#')", tostring(k))
    end
    return k
end

local function encode_number(v)
    if math.type(v) == "integer" then return "i:" .. string.format("%d", v) end
    if v ~= v then return "f:nan" end
    if v == math.huge then return "f:inf" end
    if v == -math.huge then return "f:-inf" end
    return "f:" .. string.format("%a", v)
end

-- Walk a tree into tensors[path] and meta[path].
local function flatten(v, path, tensors, meta)
    local t = type(v)
    if ls.is_tensor(v) then
        tensors[path] = v:detach()
        meta[path] = "t:"
    elseif t == "number" then
        meta[path] = encode_number(v)
    elseif t == "string" then
        meta[path] = "s:" .. v
    elseif t == "boolean" then
        meta[path] = v and "b:true" or "b:false"
    elseif t == "table" then
        if next(v) == nil then
            meta[path] = "e:"
        else
            for k, x in pairs(v) do flatten(x, path .. "/" .. key_of(k), tensors, meta) end
        end
    else
        fail("checkpoint: cannot store a %s (at %s)", t, path:sub(2))
    end
end

--- checkpoint.save(path, tree): write the tree (nested tables of numbers, strings, booleans and
-- tensors) as one safetensors file, atomically; creates the folder when missing.
function M.save(path, tree)
    local tensors, meta = {}, {}
    for k, v in pairs(tree) do flatten(v, "/" .. key_of(k), tensors, meta) end
    local st, md = {}, {format = M.FORMAT}
    for k, v in pairs(tensors) do st[k:sub(2)] = v end
    for k, v in pairs(meta) do md[k:sub(2)] = v end
    local ok, err = fs.mkdir_p(fs.dirname(path))
    if not ok then fail("checkpoint: %s", err) end
    ls.io.save_safetensors(path, st, md)
end

local function decode(s, path, file)
    local tag, body = s:sub(1, 2), s:sub(3)
    if tag == "i:" then
        local v = math.tointeger(tonumber(body))
        if v then return v end
    elseif tag == "f:" then
        if body == "nan" then return 0 / 0 end
        if body == "inf" then return math.huge end
        if body == "-inf" then return -math.huge end
        local v = tonumber(body)
        if v then return v + 0.0 end
    elseif tag == "s:" then
        return body
    elseif tag == "b:" and (body == "true" or body == "false") then
        return body == "true"
    elseif tag == "e:" then
        return {}
    end
    fail("checkpoint: %s: bad value for '%s': %q", file, path, s)
end

--- checkpoint.load(path) -> tree, as saved (tensors are the file's; integer keys as integers).
function M.load(path)
    local ok, tensors, meta = pcall(ls.io.load_safetensors, path)
    if not ok then fail("checkpoint: %s", tostring(tensors)) end
    if meta.format ~= M.FORMAT then
        fail("checkpoint: %s is not a run checkpoint (format %s, expected %s)", path,
             tostring(meta.format), M.FORMAT)
    end
    local tree = {}
    for k, s in pairs(meta) do
        if k ~= "format" then
            local node, parts = tree, {}
            for part in k:gmatch("[^/]+") do
                parts[#parts + 1] = part:sub(1, 1) == "#" and math.tointeger(tonumber(part:sub(2)))
                                    or part
            end
            for i = 1, #parts - 1 do
                local p = parts[i]
                if p == nil then fail("checkpoint: %s: bad key '%s'", path, k) end
                if type(node[p]) ~= "table" then node[p] = {} end
                node = node[p]
            end
            local last = parts[#parts]
            if last == nil then fail("checkpoint: %s: bad key '%s'", path, k) end
            if s == "t:" then
                local t = tensors[k]
                if t == nil then fail("checkpoint: %s: tensor '%s' is missing", path, k) end
                node[last] = t
            elseif s == "e:" then
                if node[last] == nil then node[last] = {} end
            else
                node[last] = decode(s, k, path)
            end
        end
    end
    return tree
end

return M
