--- landscape.io.fs: small file-system helpers on top of LuaFileSystem.
--
-- Following Lua's io library and lfs: misuse (a non-string path) raises an error; an operating-system
-- failure returns nil, a message naming the path, and an errno where one is known.
--
--   local fs = require "landscape.io.fs"
--   fs.mkdir_p("results/shards")                   -- like `mkdir -p`
--   assert(fs.check_writable_dir("results"))       -- before a long run that writes there
--   for _, p in ipairs(fs.list("results/shards", "^shard%-%d+%.csv$")) do ... end
-- LuaFileSystem also sets a global `lfs`; landscape's modules set no globals, so undo that.
local had_lfs_global = rawget(_G, "lfs") ~= nil
local lfs = require "lfs"
if not had_lfs_global then _G.lfs = nil end

local util = require "landscape.util"

local M = {}

local function check_path(path, who)
    if type(path) ~= "string" then util.fail("fs.%s: path must be a string, got %s", who, type(path)) end
end

--- True if something (file, directory, ...) exists at `path`.
-- Whether something (file or directory) exists at path.
-- e.g. if not ls.fs.exists("out") then ls.fs.mkdir_p("out") end
function M.exists(path)
    check_path(path, "exists")
    return lfs.attributes(path, "mode") ~= nil
end

--- True if `path` is a directory.
-- Whether path is a directory.
-- e.g. ls.fs.isdir("/tmp")   --> true
function M.isdir(path)
    check_path(path, "isdir")
    return lfs.attributes(path, "mode") == "directory"
end

--- True if `path` is a regular file.
-- Whether path is a regular file.
-- e.g. ls.fs.isfile("/etc/hostname")   --> true
function M.isfile(path)
    check_path(path, "isfile")
    return lfs.attributes(path, "mode") == "file"
end

--- The directory part of a path ("a/b/c.csv" -> "a/b", "c.csv" -> ".", "/x" -> "/").
-- The directory part of a path ("." when there is none).
-- e.g. ls.fs.dirname("out/run.csv")   --> "out"
function M.dirname(path)
    check_path(path, "dirname")
    local d = path:match("^(.*[^/])/+[^/]*$")
    if d then return d end
    return path:sub(1, 1) == "/" and "/" or "."
end

--- The last component of a path ("a/b/c.csv" -> "c.csv").
-- The last component of a path.
-- e.g. ls.fs.basename("out/run.csv")   --> "run.csv"
function M.basename(path)
    check_path(path, "basename")
    return path:match("([^/]*)/*$")
end

--- Join path components with "/" (an absolute component restarts the path).
-- The parts joined with "/" (no doubled separators).
-- e.g. ls.fs.join("out", "run.csv")   --> "out/run.csv"
function M.join(...)
    local out = nil
    for i = 1, select("#", ...) do
        local part = select(i, ...)
        check_path(part, "join")
        if out == nil or part:sub(1, 1) == "/" then
            out = part
        elseif part ~= "" then
            out = (out:sub(-1) == "/" or out == "") and (out .. part) or (out .. "/" .. part)
        end
    end
    return out or ""
end

--- Create a directory and any missing parents, like `mkdir -p`. Returns true, or nil, message.
-- An existing directory is success; an existing non-directory in the way is a failure.
-- e.g. assert(ls.fs.mkdir_p("out/figures"))
function M.mkdir_p(path)
    check_path(path, "mkdir_p")
    if path == "" then return true end
    local mode = lfs.attributes(path, "mode")
    if mode == "directory" then return true end
    if mode then return nil, string.format("mkdir_p: %s: exists and is not a directory", path) end
    local parent = M.dirname(path)
    if parent ~= path then
        local ok, err = M.mkdir_p(parent)
        if not ok then return nil, err end
    end
    local ok, err, code = lfs.mkdir(path)
    -- Another process may have created it in between (shards starting together): that is fine.
    if not ok and lfs.attributes(path, "mode") ~= "directory" then
        return nil, string.format("mkdir_p: %s: %s", path, err), code
    end
    return true
end

--- Make sure `dir` exists (like `mkdir -p`) and that files can be created in it, by creating and
-- removing a probe file. Scripts call this before they start work, so that a bad output location
-- fails at once instead of after hours of training. Returns true, or nil, message.
-- e.g. assert(ls.fs.check_writable_dir("out/run1"))
function M.check_writable_dir(dir)
    check_path(dir, "check_writable_dir")
    local ok, err = M.mkdir_p(dir)
    if not ok then return nil, err end
    local probe = M.join(dir, ".landscape-probe-" .. tostring({}):match("(%x+)$"))
    local f, ferr = io.open(probe, "w")
    if not f then
        return nil, string.format("check_writable_dir: %s: cannot create files there (%s)", dir,
                                  tostring(ferr))
    end
    f:close()
    os.remove(probe)
    return true
end

--- The files (not directories) in `dir` whose names match the Lua pattern `pattern` (default: all),
-- as sorted full paths ("dir/name"). Returns nil, message if `dir` cannot be read.
-- e.g. for _, name in ipairs(ls.fs.list("out")) do print(name) end
function M.list(dir, pattern)
    check_path(dir, "list")
    if pattern ~= nil and type(pattern) ~= "string" then
        util.fail("fs.list: pattern must be a string, got %s", type(pattern))
    end
    if lfs.attributes(dir, "mode") ~= "directory" then
        return nil, string.format("list: %s: not a directory or does not exist", dir)
    end
    local ok, iter, state = pcall(lfs.dir, dir)
    if not ok then return nil, string.format("list: %s: %s", dir, tostring(iter)) end
    local out = {}
    for name in iter, state do
        if name ~= "." and name ~= ".." and (pattern == nil or name:find(pattern)) then
            local full = M.join(dir, name)
            if lfs.attributes(full, "mode") == "file" then out[#out + 1] = full end
        end
    end
    table.sort(out)
    return out
end

--- The whole content of a file (bytes), or nil and the reason when it cannot be read.
-- Reads the file in one piece, in binary mode.
-- e.g. local text = ls.fs.read("out/gg/claims.md")
function M.read(path)
    check_path(path, "read")
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s, rerr = f:read("a")
    f:close()
    if s == nil then return nil, rerr end
    return s
end

--- Remove a file if it exists. Returns true, or nil, message.
-- Removes a file or an empty directory; returns true, or nil and the reason.
-- e.g. ls.fs.remove("out/old.csv")
function M.remove(path)
    check_path(path, "remove")
    if not M.exists(path) then return true end
    return os.remove(path)
end

-- Misuse raises at the caller's line (util.public); OS failures are return values, as above.
for _, name in ipairs({"exists", "isdir", "isfile", "dirname", "basename", "join", "mkdir_p", "list",
                       "read", "remove"}) do
    M[name] = util.public(M[name])
end

return M
