--- landscape.study.job: what a study's run(cfg, job) function gets.
--
--   run = function(cfg, job)
--     local state, meta = job:load()              -- nil the first time; after a kill, the last save
--     local step = meta and meta.step or 0
--     while step < 100 do
--       ...; step = step + 1
--       if step % 10 == 0 then job:row{step = step, loss = loss} end
--       if step % 20 == 0 then job:save({w = w}, {step = step}) end     -- state + rows so far
--       job:progress(step / 100)
--     end
--   end
--
-- Fields:
--   job.key        the job key (16 hex digits), job.index its position in the grid, job.config a copy
--                  of the configuration, job.attempt 1 on the first start, 2 after one interruption...
--   job.opts       the parsed command-line options (the study's own options included)
--   job.dir        the job's own directory (anything it writes there stays with the job)
--   job.checkpoint the path for a training checkpoint, for ls.train:
--                  ls.train(model, data, {..., checkpoint = {every = "epoch", path = job.checkpoint},
--                                         resume = job.resume})
--   job.resume     job.checkpoint when something was saved there (a file or directory whose name
--                  starts with it), else nil
-- Methods:
--   job:row(t)           a result row: a table of columns -> numbers, strings, booleans; the config
--                        columns are added at the merge (a result column may not reuse a config name)
--   job:save(tensors [, meta])   save the job's state whole (one safetensors file: the tensors, `meta`
--                        (any value of numbers, strings, booleans and tables) and the rows so far)
--   job:load()           -> tensors, meta of the last save, or nil; restores the rows saved with it,
--                        so rows made after that save are made again by the resumed code, never twice
--   job:progress(frac [, info])   how far the job is (0..1): the local runner's display uses it
--   job:log(fmt, ...)    a line on stdout, prefixed with the time and the job key
--   job:fail(msg)        stop the job as failed with this message (error() does the same)
-- Rows made after the last save are lost when the process is killed, and made again on resume: a row
-- must come from state that job:save (or the training checkpoint) holds. With ls.train, make the rows
-- from its log (restored on resume) or at the end of the run.
local ls = require "landscape"
local fs = require "landscape.io.fs"
local util = require "landscape.util"
local serial = require "landscape.study.serial"
local store = require "landscape.study.store"

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

local Job = {}
Job.__index = Job
Job.__name = "landscape.study.Job"

local STATE = "state.safetensors"
local META_KEY, ROWS_KEY = "landscape.study.meta", "landscape.study.rows"

--- M.new{key, index, config, dir, attempt, progress_path} -> job (used by the runner).
function M.new(t)
    local job = setmetatable({key = t.key, index = t.index, config = t.config, dir = t.dir,
                              attempt = t.attempt or 1, opts = t.opts or {}, _rows = {},
                              _progress_path = t.progress_path,
                              _progress_at = -math.huge}, Job)
    job.checkpoint = fs.join(t.dir, "ckpt")
    for _, name in ipairs(store.entries(t.dir)) do
        if name:sub(1, 4) == "ckpt" then job.resume = job.checkpoint end
    end
    return job
end

local function check_cell(v, k)
    local tv = type(v)
    if tv ~= "number" and tv ~= "string" and tv ~= "boolean" then
        fail("job:row: column '%s' is a %s (rows hold numbers, strings and booleans)", k, tv)
    end
end

function Job:row(t)
    if type(t) ~= "table" then fail("job:row: expected a table of columns, got a %s", type(t)) end
    local row = {}
    for k, v in pairs(t) do
        if type(k) ~= "string" then fail("job:row: column names must be strings") end
        if self.config[k] ~= nil then
            fail("job:row: column '%s' is a config column (they are added for you)", k)
        end
        if k == "job" then fail("job:row: the column name 'job' is reserved for the job key") end
        check_cell(v, k)
        row[k] = v
    end
    self._rows[#self._rows + 1] = row
end

--- The rows so far (copies are not made: the runner's use).
function Job:rows() return self._rows end

function Job:save(tensors, meta)
    tensors = tensors or {}
    if type(tensors) ~= "table" then fail("job:save: tensors must be a table of name -> Tensor") end
    for k, v in pairs(tensors) do
        if type(k) ~= "string" or not ls.is_tensor(v) then
            fail("job:save: tensors must be a table of name -> Tensor (entry %s)", tostring(k))
        end
    end
    local path = fs.join(self.dir, STATE)
    local ok, err = fs.mkdir_p(self.dir)
    if not ok then fail("job:save: %s", err) end
    local tmp = store.temp_beside(path)
    ls.io.save_safetensors(tmp, tensors, {[META_KEY] = serial.encode(meta == nil and false or meta),
                                          [ROWS_KEY] = serial.encode(self._rows)})
    store.rename(tmp, path)
end

function Job:load()
    local path = fs.join(self.dir, STATE)
    if not store.exists(path) then return nil end
    local tensors, md = ls.io.load_safetensors(path)
    local meta = serial.decode(md[META_KEY] or "false", path)
    local rows = serial.decode(md[ROWS_KEY] or "{}", path)
    if type(rows) ~= "table" then fail("job:load: %s: the saved rows do not read back", path) end
    self._rows = rows
    self.resumed = true
    if meta == false then meta = nil end
    return tensors, meta
end

function Job:progress(frac, info)
    if type(frac) ~= "number" then fail("job:progress: expected a fraction in 0..1") end
    self.fraction = math.max(0, math.min(1, frac))
    if not self._progress_path then return end
    local now = ls.clock()
    if now - self._progress_at < 0.5 then return end
    self._progress_at = now
    store.write_record(self._progress_path, {key = self.key, fraction = self.fraction,
                                             info = info and tostring(info) or nil})
end

function Job:log(fmt, ...)
    local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
    io.stdout:write(os.date("%H:%M:%S"), " [", self.key, "] ", msg, "\n")
    io.stdout:flush()
end

function Job:fail(msg) error(tostring(msg), 0) end

-- Errors point at the caller's line (util.public); job:fail's message is the job's failure as given.
for _, name in ipairs({"row", "save", "load", "progress", "log"}) do
    Job[name] = util.public(Job[name])
end

M.Job = Job
M.STATE = STATE
return M
