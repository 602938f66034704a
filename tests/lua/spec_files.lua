-- Helpers of the specs that check files byte for byte (bad_input_spec.lua, alloc_failure_spec.lua):
-- whole-file reads and writes, and a fresh scratch directory (on /dev/shm when there is one, since
-- the engine's writers fsync and that costs milliseconds on a disk).
local fs = require "landscape.io.fs"

local M = {}

--- The file's bytes, or nil when it cannot be opened.
function M.read_bytes(path) return (fs.read(path)) end

function M.write_bytes(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

--- A new empty directory named after `tag`; remove it with M.remove_dir.
function M.scratch_dir(tag)
    local dir = (fs.isdir("/dev/shm") and "/dev/shm/" or "/tmp/") .. tag .. "_" ..
                tostring({}):match("(%x+)$")
    assert(fs.mkdir_p(dir))
    return dir
end

function M.remove_dir(dir) os.execute("rm -rf '" .. dir .. "'") end

return M
