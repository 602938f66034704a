--- landscape.training: the training loop and evaluation, reached as ls.train, ls.evaluate and
-- ls.dataset.
--
--   local train = ls.data.fashion_mnist{split = "train"}
--   local test = ls.data.fashion_mnist{split = "test"}
--   local model = ls.nn.mlp{hidden = {256}, seed = 1}
--   local opt = ls.optim.sgd(model, {lr = 0.1, momentum = 0.9})
--   local log = ls.train(model, train, {optimizer = opt, epochs = 5, batch = 128, seed = 1,
--                                       eval = test})
--   print(log.status, log.epochs[#log.epochs].eval_accuracy)
--   local r = ls.evaluate(model, test)          -- {loss = ..., accuracy = ..., n = 10000}
--
-- A model is anything with model:forward(x) (or model(x)) and model:parameters(); model:train() and
-- model:eval() are called when present (ls.nn modules have them, with the flag model.training).
-- An optimizer has opt:step() and opt:zero_grad() (ls.optim.sgd, adam, adamw); opt.lr is logged.
-- docs/training.md is the reference.
local ls = require "landscape"
local util = require "landscape.util"
local fail, public, check_options, shape_str = util.fail, util.public, util.check_options, util.shape_str
local data = require "landscape.data"
local progress = require "landscape.train.progress"

local M = {}

-- Errors inside this module are raised without a position (level 0); each public function runs its
-- body under pcall and re-raises at level 2, so the message points at the user's call:
-- "run.lua:12: train: option 'optimizer' is required ...".



local function check_posint(v, key, who)
    if math.type(v) ~= "integer" or v < 1 then
        fail("%s: option '%s' must be a positive integer, got %s", who, key, tostring(v))
    end
    return v
end

-- Call fn(...); an error it raises is re-raised as "<who>: <message>" with the position and the
-- callee's own name prefix removed (so a check made by ds:batches reads "train: augment.crop ...").
local function call_as(who, fn, ...)
    local res = table.pack(pcall(fn, ...))
    if not res[1] then
        local msg = tostring(res[2]):gsub("^[^\n]-:%d+: ", ""):gsub("^[%w_]+: ", "")
        fail("%s: %s", who, msg)
    end
    return table.unpack(res, 2, res.n)
end

local function is_finite(v) return v == v and v ~= math.huge and v ~= -math.huge end


M.dataset = data.dataset

-- A Dataset from a Dataset or a table {x = ..., y = ...}; errors name `who`.
local function as_dataset(d, who, what)
    if data.is_dataset(d) then return d end
    if type(d) == "table" and ls.is_tensor(d.x) then return call_as(who, data.dataset, d) end
    fail("%s: %s must be a dataset (ls.dataset(x, y)) or a table {x = ..., y = ...}, got %s", who,
         what or "data", type(d))
end

local function check_model(model, who)
    local t = type(model)
    if t ~= "table" and t ~= "userdata" then
        fail("%s: model must be a module (with forward and parameters), got %s", who, t)
    end
    local mt = getmetatable(model)
    if type(model.forward) ~= "function" and not (mt and mt.__call) then
        fail("%s: model has no forward method and is not callable", who)
    end
end

local function forward(model, x)
    if type(model.forward) == "function" then return model:forward(x) end
    return model(x)
end

-- The loss function from the option: "cross_entropy" or a function(logits, y) -> 0-d tensor.
local function loss_fn(loss, who)
    if loss == nil or loss == "cross_entropy" then
        return function(logits, y) return ls.cross_entropy(logits, y) end, true
    end
    if type(loss) == "function" then return loss, false end
    fail("%s: option 'loss' must be \"cross_entropy\" or a function(logits, y), got %s", who,
         tostring(loss))
end

-- Checks made on the first batch: the model's output is [B x C] scores with C at least the largest
-- label (so a label out of range is reported here, not as an index error inside the loss).
local function check_logits(logits, B, max_label, who, what)
    if not ls.is_tensor(logits) then
        fail("%s: the model returned %s, expected a tensor of scores [B x classes]", who,
             type(logits))
    end
    if logits:dim() ~= 2 or logits:size(1) ~= B then
        fail("%s: the model returned scores of shape %s for a batch of %d; expected [%d x classes]",
             who, shape_str(logits), B, B)
    end
    local C = logits:size(2)
    if max_label > C then
        fail("%s: %s has label %d but the model outputs %d classes (labels must be in 1..%d)", who,
             what, max_label, C, C)
    end
end

-- Number of correct predictions in a batch.
local function correct(logits, y)
    return math.tointeger(logits:argmax(2):double():eq(y:double()):sum():item())
end

local function loss_value(loss, who)
    if not ls.is_tensor(loss) or loss:numel() ~= 1 then
        fail("%s: the loss function must return a one-element tensor, got %s", who,
             ls.is_tensor(loss) and shape_str(loss) or type(loss))
    end
    return loss:item()
end

-- Run fn in eval mode without recording, then put the model back in the mode it was in (ls.nn
-- modules keep it in model.training; a model without that field is put back in training mode).
local function in_eval_mode(model, fn)
    local was_training = model.training
    if type(model.eval) == "function" then model:eval() end
    local res = table.pack(pcall(ls.no_grad, fn))
    if type(model.train) == "function" then
        if was_training == false then model:eval() else model:train() end
    end
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
end

--- ls.evaluate(model, data [, opts]) -> {loss = mean loss, accuracy = fraction correct, n = count}
-- Runs under ls.no_grad with the model in eval mode, and restores the mode it was in.
-- opts:
--   batch = 1000            examples per forward pass (in order, no copies)
--   loss = "cross_entropy"  or a function(logits, y) -> mean loss of a batch (a one-element tensor)
local function evaluate(model, d, opts)
    local who = "evaluate"
    opts = check_options(opts, {batch = true, loss = true}, who)
    check_model(model, who)
    d = as_dataset(d, who)
    if d.y == nil then fail("%s: the dataset has no labels", who) end
    local batch = check_posint(opts.batch or 1000, "batch", who)
    local lf, is_ce = loss_fn(opts.loss, who)
    local max_label = d:max_label()
    return in_eval_mode(model, function()
        local total, hits, first = 0.0, 0, true
        for xb, yb in d:batches(batch, {shuffle = false}) do
            local logits = forward(model, xb)
            local B = xb:size(1)
            if first then
                check_logits(logits, B, max_label, who, "the dataset")
                first = false
            end
            if is_ce then
                total = total + ls.cross_entropy(logits, yb, "sum"):item()
            else
                total = total + loss_value(lf(logits, yb), who) * B
            end
            hits = hits + correct(logits, yb)
        end
        return {loss = total / d.n, accuracy = hits / d.n, n = d.n}
    end)
end
M.evaluate = public(evaluate)

-- The reporter: a progress bar on a terminal, plain lines otherwise, or nothing.
local function reporter(mode, log_every, epochs, nb)
    if mode == nil then mode = progress.is_tty(1) and "bar" or "log" end
    if mode == true then mode = "bar" end
    local r = {mode = mode}
    local bar
    local ew = #tostring(epochs)
    local function label(epoch) return string.format("epoch %" .. ew .. "d/%d", epoch, epochs) end
    function r.epoch_start(epoch)
        if mode == "bar" then bar = progress.bar{total = nb, label = label(epoch)} end
    end
    function r.step(epoch, k, step, loss, acc, lr)
        if mode == "bar" then
            bar:update(k, string.format("loss %.4f  acc %.4f", loss, acc))
        elseif mode == "log" and log_every and step % log_every == 0 then
            io.stdout:write(string.format("%s  step %d/%d (%d)  loss %.4f  acc %.4f%s\n",
                                          label(epoch), k, nb, step, loss, acc,
                                          lr and string.format("  lr %.4g", lr) or ""))
            io.stdout:flush()
        end
    end
    local function summary(row)
        local s = string.format("train_loss %.4f  train_acc %.4f", row.train_loss,
                                row.train_accuracy)
        if row.eval_loss then
            s = s .. string.format("  eval_loss %.4f  eval_acc %.4f", row.eval_loss,
                                   row.eval_accuracy)
        end
        if type(row.lr) == "number" then s = s .. string.format("  lr %.4g", row.lr) end
        return s .. string.format("  %.1fs", row.seconds)
    end
    function r.epoch_end(epoch, row)
        if mode == "bar" then
            bar:finish(summary(row))
        elseif mode == "log" then
            io.stdout:write(label(epoch), "  ", summary(row), "\n")
            io.stdout:flush()
        end
    end
    function r.abort(epoch, msg)
        if mode == "bar" and bar then bar.out:write("\n") end
        if mode ~= false then io.stdout:write(label(epoch), "  ", msg, "\n"); io.stdout:flush() end
    end
    return r
end

--- ls.train(model, data, opts) -> log
-- Trains model on data (a Dataset or {x, y}) with mini-batch steps of opts.optimizer: per batch
-- opt:zero_grad(), loss = loss(model(x), y), loss:backward(), [clip], opt:step().
-- opts:
--   optimizer (required)     an object with step() and zero_grad() (ls.optim.sgd(model, {...}))
--   epochs = 1               passes over the data
--   batch = 128              examples per step
--   seed = 1                 seeds the shuffles (and augmentation) of every epoch: epoch e draws
--                            from data:batches(batch, {seed = seed, epoch = e}); the model's own
--                            initialisation and dropout are seeded where they are built
--   shuffle = true           false: the same order every epoch
--   drop_last = false        drop a last batch smaller than batch
--   augment = nil            {crop = 4, flip = true}: see Dataset:batches
--   loss = "cross_entropy"   or a function(logits, y) -> a one-element tensor
--   callback = nil           fn(state) with state = {epoch, step, epoch_step, loss, model,
--                            optimizer}: every `every` steps (loss = that step's loss), or, with
--                            every = nil, after each epoch (loss = the epoch's mean loss, and
--                            state.row = the epoch's log row). Returning false stops the run
--                            (status "stopped").
--   every = nil              see callback
--   schedule = nil           an object with step() (ls.optim.schedule.*), called after each epoch
--   schedule_every = "epoch" or "step": call schedule:step() after every optimizer step instead
--                            (for warmup schedules counted in iterations)
--   clip_grad_norm = nil     clip the gradients' total 2-norm to this before each step
--   eval = nil               a Dataset evaluated (ls.evaluate) after each epoch
--   eval_batch = 1000        batch of that evaluation
--   log_every = 100          steps between log lines (plain mode); false: only epoch lines
--   progress = nil           nil: a progress bar when stdout is a terminal, else plain log lines;
--                            true or "bar": the bar; "log": plain lines; false: silent
-- Returns {status = "ok" | "diverged" | "stopped", epochs = {rows}, steps = steps taken,
--          diverged_at = step or nil, seconds = total wall time}. A row: {epoch, steps,
--          train_loss, train_accuracy (running, on the batches as trained), eval_loss,
--          eval_accuracy, eval_n (eval only), lr (during the epoch), seconds (epoch with eval),
--          train_seconds}.
-- Divergence: when a step's loss is NaN or infinite, the run stops before that step's backward
-- pass, with status "diverged" and diverged_at = that step; no error is raised. The weights are
-- left as they were when that loss was computed (the result of the previous step, which may
-- already hold inf or NaN). A non-finite evaluation loss after an epoch also counts as divergence.
-- Rows are kept for completed epochs only.
local function train(model, d, opts)
    local who = "train"
    if opts == nil then
        fail("%s: an options table with an optimizer is required: ls.train(model, data, "
             .. "{optimizer = ls.optim.sgd(model, {lr = 0.1})})", who)
    end
    opts = check_options(opts, {optimizer = true, epochs = true, batch = true, seed = true,
                                shuffle = true, drop_last = true, augment = true, loss = true,
                                callback = true, every = true, schedule = true,
                                schedule_every = true,
                                clip_grad_norm = true, eval = true, eval_batch = true,
                                log_every = true, progress = true}, who)
    check_model(model, who)
    d = as_dataset(d, who)
    if d.y == nil then fail("%s: the dataset has no labels", who) end
    local opt = opts.optimizer
    if opt == nil then
        fail("%s: option 'optimizer' is required (e.g. ls.optim.sgd(model, {lr = 0.1}))", who)
    end
    if (type(opt) ~= "table" and type(opt) ~= "userdata") or type(opt.step) ~= "function"
            or type(opt.zero_grad) ~= "function" then
        fail("%s: option 'optimizer' must have step() and zero_grad() methods", who)
    end
    local epochs = check_posint(opts.epochs or 1, "epochs", who)
    local batch = check_posint(opts.batch or 128, "batch", who)
    local seed = opts.seed or 1
    if math.type(seed) ~= "integer" then
        fail("%s: option 'seed' must be an integer, got %s", who, tostring(seed))
    end
    local lf, is_ce = loss_fn(opts.loss, who)
    local callback, every = opts.callback, opts.every
    if callback ~= nil and type(callback) ~= "function" then
        fail("%s: option 'callback' must be a function, got %s", who, type(callback))
    end
    if every ~= nil then check_posint(every, "every", who) end
    local sched = opts.schedule
    if sched ~= nil and ((type(sched) ~= "table" and type(sched) ~= "userdata")
                         or type(sched.step) ~= "function") then
        fail("%s: option 'schedule' must have a step() method", who)
    end
    local sched_every = opts.schedule_every or "epoch"
    if sched_every ~= "epoch" and sched_every ~= "step" then
        fail("%s: option 'schedule_every' must be \"epoch\" or \"step\", got %s", who,
             tostring(sched_every))
    end
    local sched_step = sched and sched_every == "step"
    local sched_epoch = sched and sched_every == "epoch"
    local clip = opts.clip_grad_norm
    if clip ~= nil and (type(clip) ~= "number" or not (clip > 0)) then
        fail("%s: option 'clip_grad_norm' must be a positive number, got %s", who, tostring(clip))
    end
    local eval = opts.eval
    if eval ~= nil then
        eval = as_dataset(eval, who, "option 'eval'")
        if eval.y == nil then fail("%s: the eval dataset has no labels", who) end
    end
    local eval_batch = check_posint(opts.eval_batch or 1000, "eval_batch", who)
    local log_every = opts.log_every
    if log_every == nil then log_every = 100 end
    if log_every ~= false then check_posint(log_every, "log_every", who) end
    local mode = opts.progress
    if not (mode == nil or mode == true or mode == false or mode == "bar" or mode == "log") then
        fail("%s: option 'progress' must be nil, true, false, \"bar\" or \"log\", got %s", who,
             tostring(mode))
    end
    local shuffle = opts.shuffle
    if shuffle == nil then shuffle = true end
    local batch_opts = {shuffle = shuffle, seed = seed, drop_last = opts.drop_last,
                        augment = opts.augment}
    -- checks the augment options now rather than at the first epoch
    call_as(who, d.batches, d, batch, {shuffle = false, seed = seed, epoch = 1,
                                       drop_last = opts.drop_last, augment = opts.augment})
    local nb = d:num_batches(batch, {drop_last = opts.drop_last})
    if nb == 0 then
        fail("%s: no batches: %d examples with batch %d and drop_last", who, d.n, batch)
    end
    local max_label = d:max_label()
    local clip_grad_norm = clip and ls.optim.clip_grad_norm

    local rep = reporter(mode, log_every, epochs, nb)
    local log = {status = "ok", epochs = {}, steps = 0}
    local t_run = ls.clock()
    local step, first = 0, true
    for epoch = 1, epochs do
        local t0 = ls.clock()
        if type(model.train) == "function" then model:train() end
        rep.epoch_start(epoch)
        local lr = opt.lr
        local sum_loss, hits, seen, k = 0.0, 0, 0, 0
        batch_opts.epoch = epoch
        for xb, yb in d:batches(batch, batch_opts) do
            k = k + 1
            step = step + 1
            opt:zero_grad()
            local logits = forward(model, xb)
            local B = xb:size(1)
            if first then
                check_logits(logits, B, max_label, who, "the training data")
                if eval then check_logits(logits, B, eval:max_label(), who, "the eval dataset") end
                first = false
            end
            local loss = lf(logits, yb)
            local lv = loss_value(loss, who)
            if not is_finite(lv) then
                log.status, log.diverged_at = "diverged", step
                log.steps = step
                rep.abort(epoch, string.format("diverged at step %d: loss %s", step, tostring(lv)))
                break
            end
            loss:backward()
            if clip_grad_norm then clip_grad_norm(model:parameters(), clip) end
            opt:step()
            if sched_step then sched:step() end
            sum_loss = sum_loss + lv * B
            hits = hits + correct(logits, yb)
            seen = seen + B
            rep.step(epoch, k, step, sum_loss / seen, hits / seen,
                     type(lr) == "number" and lr or nil)
            if callback and every and step % every == 0 then
                local r = callback({epoch = epoch, step = step, epoch_step = k, loss = lv,
                                    model = model, optimizer = opt})
                if r == false then log.status = "stopped"; break end
            end
        end
        log.steps = step
        if log.status == "diverged" then break end
        local t_train = ls.clock() - t0
        local row = {epoch = epoch, steps = step, train_loss = sum_loss / math.max(seen, 1),
                     train_accuracy = hits / math.max(seen, 1), lr = lr, train_seconds = t_train}
        if eval then
            local r = evaluate(model, eval, {batch = eval_batch, loss = opts.loss})
            row.eval_loss, row.eval_accuracy, row.eval_n = r.loss, r.accuracy, r.n
            if not is_finite(r.loss) then
                log.status, log.diverged_at = "diverged", step
            end
        end
        row.seconds = ls.clock() - t0
        log.epochs[#log.epochs + 1] = row
        if log.status == "diverged" then
            rep.abort(epoch, string.format("diverged: eval loss %s after step %d",
                                           tostring(row.eval_loss), step))
            break
        end
        rep.epoch_end(epoch, row)
        if log.status == "stopped" then break end
        if sched_epoch then sched:step() end
        if callback and not every then
            local r = callback({epoch = epoch, step = step, epoch_step = k, loss = row.train_loss,
                                model = model, optimizer = opt, row = row})
            if r == false then log.status = "stopped"; break end
        end
    end
    log.seconds = ls.clock() - t_run
    return log
end
M.train = public(train)

return M
