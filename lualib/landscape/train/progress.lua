--- landscape.progress: a one-line progress bar for terminals, and the TTY test that decides
-- whether to draw one.
--
--   local progress = require "landscape.progress"
--   local bar = progress.bar{total = 469, label = "epoch 1/5"}
--   for i = 1, 469 do ...; bar:update(i, string.format("loss %.4f", loss)) end
--   bar:finish("loss 0.4321  acc 0.8412")
--
-- The bar redraws its line with a carriage return (at most every `interval` seconds, and always at
-- the end), so it belongs on a terminal; ls.train draws one only when progress.is_tty() says so and
-- writes plain log lines otherwise.
local ls = require "landscape"
local util = require "landscape.util"

local M = {}

local tty_cache = {}

--- progress.is_tty([fd = 1]) -> true when file descriptor fd (1 = stdout, 2 = stderr) is a
-- terminal and $TERM names one that can redraw a line (set and not "dumb"). Lua has no isatty, so
-- this asks the shell (`test -t fd`, which inherits our descriptors) once per fd and caches the
-- answer.
function M.is_tty(fd)
    fd = fd or 1
    if tty_cache[fd] == nil then
        local term = os.getenv("TERM")
        local ok = false
        if term and term ~= "" and term ~= "dumb" then
            ok = os.execute("test -t " .. math.tointeger(fd)) == true
        end
        tty_cache[fd] = ok
    end
    return tty_cache[fd]
end

local function fmt_time(s)
    if s ~= s or s == math.huge then return "?" end
    if s < 60 then return string.format("%.1fs", s) end
    if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
    return string.format("%dh%02dm", s // 3600, math.floor(s % 3600 / 60))
end
M.format_time = fmt_time

local Bar = {}
Bar.__index = Bar
Bar.__name = "landscape.ProgressBar"

--- progress.bar{total, label = "", width = 30, out = io.stdout, interval = 0.1} -> bar
--   total     number of units of work (steps); required, >= 0
--   label     text before the bar
--   width     characters of the bar itself
--   out       a file handle with :write and :flush
--   interval  minimum seconds between redraws
M.bar = util.public(function(opts)
    if type(opts) ~= "table" then util.fail("progress.bar: expected an options table") end
    util.check_options(opts, {total = true, label = true, width = true, out = true,
                              interval = true}, "progress.bar")
    if math.type(opts.total) ~= "integer" or opts.total < 0 then
        util.fail("progress.bar: option 'total' must be an integer >= 0")
    end
    local now = ls.clock()
    return setmetatable({total = opts.total, label = opts.label or "", width = opts.width or 30,
                         out = opts.out or io.stdout, interval = opts.interval or 0.1,
                         start = now, last = -math.huge, done = 0}, Bar)
end)

-- The line for `done` units and an info text.
function Bar:render(done, info)
    local total = self.total
    local frac = total > 0 and math.min(done / total, 1) or 1
    local fill = math.floor(frac * self.width + 0.5)
    local elapsed = ls.clock() - self.start
    local eta = done > 0 and elapsed * (total - done) / done or math.huge
    local bar = string.rep("=", fill) .. (fill < self.width and ">" or "")
        .. string.rep(" ", math.max(self.width - fill - 1, 0))
    local digits = #tostring(total)
    local line = string.format("%s [%s] %" .. digits .. "d/%d %s", self.label, bar, done, total,
                               fmt_time(elapsed))
    if done < total then line = line .. "  eta " .. fmt_time(eta) end
    if info and info ~= "" then line = line .. "  " .. info end
    return line
end

--- bar:update(done [, info]): redraw (throttled) with `done` units finished and an info text.
function Bar:update(done, info)
    self.done = done
    local now = ls.clock()
    if now - self.last < self.interval and done < self.total then return end
    self.last = now
    self.out:write("\r", self:render(done, info), "\27[K")
    self.out:flush()
end

--- bar:finish([info]): draw the final state and end the line.
function Bar:finish(info)
    self.out:write("\r", self:render(self.total, info), "\27[K\n")
    self.out:flush()
end

return M
