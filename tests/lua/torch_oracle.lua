-- PyTorch as a test oracle: what the specs that compare against torch share (autograd,
-- conv_torch, hessian, margins, nn_torch, optim, torch_interop). A spec writes a Python script that computes the
-- same thing with torch and prints the results, runs it with run() or lines(), and compares.
--
--   local torch = require "torch_oracle"   -- found through tests/lua/?.lua in LUA_PATH (ctest)
--   it("...", function()
--     if not torch.available() then return pending(torch.MISSING) end
--     local lines = torch.lines("import torch\nprint(repr(float(torch.tensor(" .. torch.lit(x) ..
--                               ").sum())))\n")
--
-- The interpreter is $LANDSCAPE_PYTHON (ctest sets /usr/bin/python3), default /usr/bin/python3.
-- It always runs under `env -u LD_PRELOAD`: the sanitizer build preloads the ASan runtime into the
-- Lua tests, and torch cannot live with it. (pending is busted's, so the specs call it themselves.)
local lfs = require "lfs"

local M = {}

M.PYTHON = os.getenv("LANDSCAPE_PYTHON") or "/usr/bin/python3"
M.COMMAND = "env -u LD_PRELOAD " .. M.PYTHON
M.MISSING = "python3-torch is not installed"   -- the pending message when available() is false

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local has_torch
-- Whether torch is installed for M.PYTHON, asked once. It looks the module up without importing it
-- (an import takes seconds; the spec's own script pays that once).
function M.available()
  if has_torch == nil then
    has_torch = os.execute(M.COMMAND .. " -c 'import importlib.util, sys; " ..
                           "sys.exit(importlib.util.find_spec(\"torch\") is None)' >/dev/null 2>&1")
                == true
  end
  return has_torch
end

-- A Python literal of a tensor's values (nested lists), every number with all the digits of a
-- float64 (%.17g), so torch sees exactly the values the spec used.
function M.lit(t)
  local function rec(v)
    if type(v) == "number" then return string.format("%.17g", v) end
    local parts = {}
    for i, e in ipairs(v) do parts[i] = rec(e) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return rec(t:totable())
end

-- Runs the Python source (written to a temporary file, removed afterwards) with the strings of the
-- list args as its command-line arguments, and returns its output, stdout and stderr together.
-- Raises an error holding that output when the script fails.
function M.run(source, args)
  local script = os.tmpname()
  local fh = assert(io.open(script, "w"))
  fh:write(source)
  fh:close()
  local cmd = {M.COMMAND, shell_quote(script)}
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = shell_quote(a) end
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  os.remove(script)
  assert(ok, "torch oracle failed:\n" .. out)
  return out
end

-- run(source, args), split into the list of its lines.
function M.lines(source, args)
  local lines = {}
  for line in M.run(source, args):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

-- Largest |t - v| over the numbers v of one output line (t's elements in row-major order, as
-- Python's `" ".join(repr(float(e)) for e in t.reshape(-1))` prints them); the counts must agree.
function M.diff_line(t, line)
  local flat = t:reshape(-1):totable()
  local i, worst = 0, 0
  for num in line:gmatch("%S+") do
    i = i + 1
    worst = math.max(worst, math.abs(assert(tonumber(num), line) - flat[i]))
  end
  assert(i == #flat, string.format("%d values from Python, %d expected", i, #flat))
  return worst
end

-- A new empty directory for the files a spec exchanges with Python, and its removal (with the files
-- in it) for the spec's teardown.
function M.tempdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(lfs.mkdir(dir))
  return dir
end

function M.remove_dir(dir)
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." then os.remove(dir .. "/" .. name) end
  end
  lfs.rmdir(dir)
end

return M
