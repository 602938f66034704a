--- landscape.train.loop: the training loop and evaluation, reached as ls.train and ls.evaluate.
--
--   local train = ls.data.fashion_mnist{split = "train"}
--   local test = ls.data.fashion_mnist{split = "test"}
--   local model = ls.nn.mlp{hidden = {256}, seed = 1}
--   local opt = ls.optim.sgd(model, {lr = 0.1, momentum = 0.9})
--   local log = ls.train(model, train, {optimizer = opt, epochs = 5, batch = 128, seed = 1,
--                                       eval = test, checkpoint = {path = "run/ckpt"}})
--   print(log.status, log.epochs[#log.epochs].eval_accuracy)
--   local r = ls.evaluate(model, test)          -- {loss = ..., accuracy = ..., n = 10000}
--
-- A model is anything with model:forward(x) (or model(x)) and model:parameters(); model:train() and
-- model:eval() are called when present (ls.nn modules have them, with the flag model.training).
-- An optimizer has opt:step() and opt:zero_grad() (ls.optim.sgd, adam, adamw); opt.lr is logged.
-- The step is the method's (ls.methods); everything around it is the loop's. docs/training.md is
-- the reference.
local ls = require "landscape"
local util = require "landscape.util"
local fail, public, check_options, posint = util.fail, util.public, util.check_options, util.posint
local data = require "landscape.data"
local O = require "landscape.train.objective"
local methods = require "landscape.train.methods"
local checkpoint = require "landscape.train.checkpoint"
local progress = require "landscape.train.progress"
local fs = require "landscape.io.fs"

local M = {}

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

-- A Dataset from a Dataset or a table {x = ..., y = ...}; errors name `who`.
local function as_dataset(d, who, what)
    if data.is_dataset(d) then return d end
    if type(d) == "table" and ls.is_tensor(d.x) then return call_as(who, data.dataset, d) end
    fail("%s: %s must be a dataset (ls.dataset(x, y)) or a table {x = ..., y = ...}, got %s", who,
         what or "data", type(d))
end

--- ls.evaluate(model, data [, opts]) or ls.evaluate(objective)
-- -> {loss = mean loss, accuracy = fraction correct, n = count}
-- Runs under ls.no_grad with the model in eval mode (ls.objective's guard: every flag and buffer is
-- restored afterwards). opts:
--   batch = 1000            examples per forward pass (in order, no copies)
--   loss = "cross_entropy"  or a function(logits, y) -> mean loss of a batch (a one-element tensor)
-- e.g. local r = ls.evaluate(model, test); print(r.loss, r.accuracy)
local function evaluate(a, b, c)
    local who = "evaluate"
    if O.is_objective(a) then return a:evaluate() end
    O.check_model(a, who)
    c = check_options(c, {batch = true, loss = true}, who)
    local d = as_dataset(b, who)
    if d.y == nil then fail("%s: the dataset has no labels", who) end
    return O.resolve(who, a, d, {batch = c.batch, loss = c.loss, mode = "eval"}):evaluate()
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
        local a = acc and string.format("  acc %.4f", acc) or ""
        if mode == "bar" then
            bar:update(k, string.format("loss %.4f%s", loss, a))
        elseif mode == "log" and log_every and step % log_every == 0 then
            io.stdout:write(string.format("%s  step %d/%d (%d)  loss %.4f%s%s\n", label(epoch), k,
                                          nb, step, loss, a,
                                          lr and string.format("  lr %.4g", lr) or ""))
            io.stdout:flush()
        end
    end
    local function summary(row)
        local s = string.format("train_loss %.4f", row.train_loss)
        if row.train_accuracy then s = s .. string.format("  train_acc %.4f", row.train_accuracy) end
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

local function has_method(obj, name)
    return (type(obj) == "table" or type(obj) == "userdata") and type(obj[name]) == "function"
end

-- The parameters as a table name -> tensor (for checkpoints): the state dict of an ls.nn model
-- (parameters and buffers), else the parameters() list under "#1", "#2", ...
local function model_tensors(model)
    if has_method(model, "state_dict") then
        local out = {}
        for _, e in ipairs(model:state_dict()) do out[e[1]] = e[2] end
        return out
    end
    return model:parameters()
end

local function load_model_tensors(model, t, who, path)
    if has_method(model, "load_state_dict") then
        local ok, err = pcall(model.load_state_dict, model, t)
        if not ok then fail("%s: %s: %s", who, path, tostring(err)) end
        return
    end
    local ps = model:parameters()
    if #t ~= #ps then fail("%s: %s holds %d parameters, the model has %d", who, path, #t, #ps) end
    ls.no_grad(function() for i, p in ipairs(ps) do p:detach():copy(t[i]) end end)
end

-- Are all parameters finite? One reduction per tensor, no temporaries: a NaN or inf entry makes the
-- sum NaN or inf (so can a sum of finite entries overflow, but only for parameters near 1e38 / numel,
-- a diverged run by any measure).
local function params_finite(ps)
    for _, p in ipairs(ps) do
        if not util.is_finite(p:detach():sum():item()) then return false end
    end
    return true
end

local TRAIN_OPTS = {optimizer = true, method = true, epochs = true, batch = true, seed = true,
                    shuffle = true, drop_last = true, augment = true, loss = true,
                    callback = true, every = true, schedule = true, schedule_every = true,
                    clip_grad_norm = true, eval = true, eval_batch = true, log_every = true,
                    progress = true, max_loss_ratio = true, checkpoint = true, resume = true}

-- A distinct error object: raised by the batch view's first-evaluation hook when the step's loss
-- shows divergence, caught by the loop (no error reaches the user).
local Diverged = {}
Diverged.__index = Diverged

-- The settings a checkpoint must agree with to be resumed.
local function fingerprint(cfg)
    return {batch = cfg.batch, seed = cfg.seed, n = cfg.n, shuffle = cfg.shuffle,
            drop_last = cfg.drop_last, augment = cfg.augment, method = cfg.method,
            n_params = cfg.n_params, schedule_every = cfg.schedule_every}
end

local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
end

--- ls.train(model, data, opts) or ls.train(objective, opts) -> log
-- Trains the model on data (a Dataset or {x, y}) with mini-batch steps: per batch, opt:zero_grad(),
-- the method's step (default ls.methods.plain(): forward, loss, backward), clipping, opt:step()
-- (or the method's own update).
-- opts:
--   optimizer (required)     an object with step() and zero_grad() (ls.optim.sgd(model, {...}))
--   method = plain           a training method (ls.methods; the protocol is in methods.lua)
--   epochs = 1               passes over the data
--   batch = 128              examples per step
--   seed = 1                 seeds the shuffles (and augmentation) of every epoch: epoch e draws
--                            from data:batches(batch, {seed = seed, epoch = e}); the model's own
--                            initialisation and dropout are seeded where they are built
--   shuffle = true           false: the same order every epoch
--   drop_last = false        drop a last batch smaller than batch
--   augment = nil            {crop = 4, flip = true}: see Dataset:batches
--   loss = "cross_entropy"   or a function(logits, y) -> a one-element tensor (see ls.objective)
--   callback = nil           fn(state) with state = {epoch, step, epoch_step, loss, model,
--                            optimizer}: every `every` steps (loss = that step's loss), or, with
--                            every = nil, after each epoch (loss = the epoch's mean loss, and
--                            state.row = the epoch's log row). Returning false stops the run
--                            (status "stopped").
--   every = nil              see callback
--   schedule = nil           an object with step() (ls.optim.schedule.*), called after each epoch
--   schedule_every = "epoch" or "step": call schedule:step() after every optimizer step instead
--   clip_grad_norm = nil     clip the gradients' total 2-norm to this before each optimizer step
--   eval = nil               a Dataset evaluated (ls.evaluate) after each epoch
--   eval_batch = 1000        batch of that evaluation
--   log_every = 100          steps between log lines (plain mode); false: only epoch lines
--   progress = nil           nil: a progress bar when stdout is a terminal, else plain log lines;
--                            true or "bar": the bar; "log": plain lines; false: silent
--   max_loss_ratio = 1e3     divergence bound: a step whose loss exceeds max_loss_ratio times the
--                            first step's loss (when that is > 0) ends the run as diverged; false:
--                            no bound (non-finite losses and parameters still end it)
--   checkpoint = nil         {path = "run/ckpt", every = "epoch"}: write the run's state to path
--                            after every epoch, or every k steps (every = k, an integer) and after
--                            every epoch; atomically (a temp file renamed into place)
--   resume = nil             a checkpoint path: continue that run exactly where it stopped (the
--                            file must exist); true: resume from checkpoint.path when that file
--                            exists, else start afresh (the same command for the first launch and
--                            every relaunch). The model, optimizer, schedule and method must be
--                            built as for the original run; the batch size, seed, data size,
--                            shuffle, drop_last, augment and method must be the same.
-- Returns {status = "ok" | "diverged" | "stopped", epochs = {rows}, steps = steps taken,
--          diverged_at = step or nil, diverged_reason = text or nil, seconds = wall time of this
--          call, resumed_at = step or nil, checkpoints = files written by this call,
--          checkpoint_seconds = the time spent writing them}. A row: {epoch, steps, train_loss,
--          train_accuracy (running, on the batches as trained, first evaluation of each step),
--          eval_loss, eval_accuracy, eval_n (eval only), lr (during the epoch), seconds (epoch
--          with eval), train_seconds}. seconds and train_seconds of an epoch split by a resume count only
--          the part run by the last process; every other field equals the uninterrupted run's.
-- Divergence: when a step's loss (its first evaluation) is NaN or infinite or above the bound, the
-- run stops before that step changes anything, with status "diverged" and diverged_at = that step;
-- when an optimizer step leaves a parameter non-finite, the run stops after it (diverged_at = that
-- step; ls.optim's optimizers report it from their kernels, opt.last_step_finite, and every
-- parameter is scanned on a call's first step, after a method's own update, or for an optimizer
-- without that report). No error is raised. A non-finite evaluation loss after an epoch also
-- counts as divergence. Rows are kept for completed epochs only.
-- e.g. local res = ls.train(model, train, {optimizer = ls.optim.sgd(model, {lr = 0.05}),
--          epochs = 2})
local function train(a, b, c)
    local who = "train"
    local model, d, opts, given_obj
    if O.is_objective(a) then
        given_obj, model, d, opts = a, a.model, a.data, b
    else
        model, d, opts = a, b, c
    end
    if opts == nil then
        fail("%s: an options table with an optimizer is required: ls.train(model, data, "
             .. "{optimizer = ls.optim.sgd(model, {lr = 0.1})})", who)
    end
    opts = check_options(opts, TRAIN_OPTS, who)
    O.check_model(model, who)
    d = as_dataset(d, who)
    if d.y == nil then fail("%s: the dataset has no labels", who) end
    local opt = opts.optimizer
    if opt == nil then
        fail("%s: option 'optimizer' is required (e.g. ls.optim.sgd(model, {lr = 0.1}))", who)
    end
    if not (has_method(opt, "step") and has_method(opt, "zero_grad")) then
        fail("%s: option 'optimizer' must have step() and zero_grad() methods", who)
    end
    local method = methods.check(opts.method or methods.plain(), who)
    local epochs = posint(opts.epochs or 1, who, "option 'epochs'")
    local batch = posint(opts.batch or 128, who, "option 'batch'")
    local seed = util.integer(opts.seed or 1, who, "option 'seed'")
    local callback, every = opts.callback, opts.every
    if callback ~= nil and type(callback) ~= "function" then
        fail("%s: option 'callback' must be a function, got %s", who, type(callback))
    end
    if every ~= nil then posint(every, who, "option 'every'") end
    local sched = opts.schedule
    if sched ~= nil and not has_method(sched, "step") then
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
    local ratio = opts.max_loss_ratio
    if ratio == nil then ratio = 1e3 end
    if ratio ~= false and (type(ratio) ~= "number" or not (ratio > 0)) then
        fail("%s: option 'max_loss_ratio' must be a positive number or false, got %s", who,
             tostring(ratio))
    end
    local eval = opts.eval
    local eval_obj
    if eval ~= nil then
        eval = as_dataset(eval, who, "option 'eval'")
        if eval.y == nil then fail("%s: the eval dataset has no labels", who) end
    end
    local eval_batch = posint(opts.eval_batch or 1000, who, "option 'eval_batch'")
    local log_every = opts.log_every
    if log_every == nil then log_every = 100 end
    if log_every ~= false then posint(log_every, who, "option 'log_every'") end
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
    local ck = opts.checkpoint
    if ck ~= nil then
        if type(ck) ~= "table" then
            fail("%s: option 'checkpoint' must be a table {path, every}", who)
        end
        check_options(ck, {path = true, every = true}, who .. ": checkpoint")
        if type(ck.path) ~= "string" then fail("%s: checkpoint.path must be a string", who) end
        if ck.every ~= nil and ck.every ~= "epoch" then posint(ck.every, who, "checkpoint.every") end
        for _, o in ipairs({{opt, "optimizer"}, {sched, "schedule"}}) do
            if o[1] ~= nil and not (has_method(o[1], "state_dict")
                                    and has_method(o[1], "load_state_dict")) then
                fail("%s: a checkpoint needs the %s's state_dict and load_state_dict", who, o[2])
            end
        end
    end
    local resume = opts.resume
    if resume ~= nil and resume ~= false then
        if resume == true then
            if not ck then fail("%s: resume = true needs option 'checkpoint' (its path)", who) end
            resume = fs.isfile(ck.path) and ck.path or nil
        elseif type(resume) == "string" then
            if not fs.isfile(resume) then fail("%s: resume: no checkpoint at %s", who, resume) end
        else
            fail("%s: option 'resume' must be a checkpoint path or true, got %s", who, type(resume))
        end
    else
        resume = nil
    end

    -- the objective: the model on the training data, in train mode
    local obj, loss = given_obj, opts.loss
    if obj == nil then
        obj = O.resolve(who, model, d, {loss = loss, mode = "train", batch = batch})
    elseif obj.mode ~= "train" then
        fail("%s: the objective must be in mode \"train\", it is in mode %q", who, obj.mode)
    elseif loss ~= nil then
        fail("%s: option 'loss' belongs to the objective; give it to ls.objective", who)
    else
        loss = obj._loss_opt
    end
    if eval then
        eval_obj = O.resolve(who, model, eval, {loss = loss, mode = "eval", batch = eval_batch})
    end
    local mstate = method.init and method:init(obj, opt) or {}
    local cfg = {batch = batch, seed = seed, n = d.n, shuffle = shuffle,
                 drop_last = opts.drop_last or false, augment = opts.augment or false,
                 method = method.name, n_params = #model:parameters(), schedule_every = sched_every}

    local rep = reporter(mode, log_every, epochs, nb)
    local log = {status = "ok", epochs = {}, steps = 0, checkpoints = 0, checkpoint_seconds = 0}
    local t_run = ls.clock()
    local step, first_loss = 0, nil
    local start_epoch, start_k = 1, 0
    -- the running sums of the epoch in progress
    local acc = {sum_loss = 0.0, hits = 0, seen = 0, acc_ok = true}

    local function state_tree(epoch, k)
        local tree = {position = {epoch = epoch, batch = k, step = step}, acc = acc,
                      log = {status = log.status, epochs = log.epochs, first_loss = first_loss},
                      rng = ls.get_rng_state(), settings = fingerprint(cfg),
                      model = model_tensors(model), optimizer = opt:state_dict(),
                      method = mstate, dropout = {}}
        for i, m in ipairs(O.dropouts(model)) do tree.dropout[i] = m.calls end
        if sched then tree.schedule = sched:state_dict() end
        return tree
    end
    local function save(epoch, k)
        local t = ls.clock()
        checkpoint.save(ck.path, state_tree(epoch, k))
        log.checkpoints = log.checkpoints + 1
        log.checkpoint_seconds = log.checkpoint_seconds + (ls.clock() - t)
    end

    if resume then
        local tree = call_as(who, checkpoint.load, resume)
        if not same(tree.settings, fingerprint(cfg)) then
            local diffs = {}
            for key, v in pairs(fingerprint(cfg)) do
                local w = tree.settings and tree.settings[key]
                if not same(v, w) then
                    diffs[#diffs + 1] = string.format("%s = %s (this run: %s)", key, tostring(w),
                                                      tostring(v))
                end
            end
            table.sort(diffs)
            fail("%s: %s was written by a different run: %s", who, resume, table.concat(diffs, ", "))
        end
        load_model_tensors(model, tree.model, who, resume)
        call_as(who, opt.load_state_dict, opt, tree.optimizer)
        if sched then call_as(who, sched.load_state_dict, sched, tree.schedule) end
        if method.init then mstate = tree.method or {} end
        for i, m in ipairs(O.dropouts(model)) do m.calls = tree.dropout[i] end
        ls.set_rng_state(tree.rng)
        step = tree.position.step
        start_epoch, start_k = tree.position.epoch, tree.position.batch
        acc = tree.acc
        log.status, log.epochs, first_loss = tree.log.status, tree.log.epochs, tree.log.first_loss
        log.resumed_at = step
        if log.status ~= "ok" then   -- the run had already ended
            log.steps, log.seconds = step, ls.clock() - t_run
            return log
        end
    end

    local function on_first(lv)
        local reason
        if not util.is_finite(lv) then
            reason = string.format("loss %s", tostring(lv))
        elseif first_loss and ratio and first_loss > 0 and lv > ratio * first_loss then
            reason = string.format("loss %.6g above %g x the first loss %.6g", lv, ratio, first_loss)
        end
        if reason then
            error(setmetatable({reason = reason}, Diverged), 0)
        end
        if first_loss == nil then first_loss = lv end
    end
    local function check_first(out, B)
        obj:check_output(out, B, "the training data", who)
        if eval_obj then eval_obj:check_output(out, B, "the eval dataset", who) end
    end
    local params = model:parameters()
    local clip_grad_norm = clip and ls.optim.clip_grad_norm

    for epoch = start_epoch, epochs do
        local t0 = ls.clock()
        O.set_mode(model, "train", false)
        rep.epoch_start(epoch)
        local lr = opt.lr
        local k = 0
        if epoch == start_epoch and start_k > 0 then
            k = start_k
        else
            acc = {sum_loss = 0.0, hits = 0, seen = 0, acc_ok = true}
        end
        batch_opts.epoch, batch_opts.start = epoch, k + 1
        for xb, yb in d:batches(batch, batch_opts) do
            k = k + 1
            step = step + 1
            local first_of_call = step == 1 or log.resumed_at == step - 1
            local bv = obj:batch_view(xb, yb, {on_first = on_first,
                                          check = first_of_call and check_first or nil})
            opt:zero_grad()
            local ok, err = pcall(method.step, method, bv, opt, mstate)
            if not ok then
                if getmetatable(err) == Diverged then
                    log.status, log.diverged_at, log.diverged_reason = "diverged", step, err.reason
                    log.steps = step
                    rep.abort(epoch, string.format("diverged at step %d: %s", step, err.reason))
                    break
                end
                error(err, 0)
            end
            local st = bv:stats()
            if st == nil then
                fail("%s: the method '%s' did not evaluate the batch (step %d)", who, method.name, step)
            end
            if clip_grad_norm then clip_grad_norm(params, clip) end
            local finite
            if method.update then
                method:update(bv, opt, mstate)
            else
                opt:step()
                finite = opt.last_step_finite
            end
            -- the optimizer's own report (ls.optim's kernels check what they write) suffices once
            -- the untouched parameters are known finite: the full check runs on a run's (or a
            -- resumption's) first step, after a method's own update, and for other optimizers
            if finite == nil or first_of_call then
                finite = params_finite(params)
            end
            if not finite then
                log.status, log.diverged_at = "diverged", step
                log.diverged_reason = "non-finite parameters after the optimizer step"
                log.steps = step
                rep.abort(epoch, string.format("diverged at step %d: %s", step, log.diverged_reason))
                break
            end
            if sched_step then sched:step() end
            acc.sum_loss = acc.sum_loss + st.loss * st.B
            acc.seen = acc.seen + st.B
            if st.hits and acc.acc_ok then acc.hits = acc.hits + st.hits else acc.acc_ok = false end
            rep.step(epoch, k, step, acc.sum_loss / acc.seen,
                     acc.acc_ok and acc.hits / acc.seen or nil, type(lr) == "number" and lr or nil)
            if callback and every and step % every == 0 then
                local r = callback({epoch = epoch, step = step, epoch_step = k, loss = st.loss,
                                    model = model, optimizer = opt})
                if r == false then log.status = "stopped"; break end
            end
            if ck and ck.every ~= nil and ck.every ~= "epoch" and step % ck.every == 0 and k < nb then
                save(epoch, k)
            end
        end
        log.steps = step
        if log.status == "diverged" then break end
        local t_train = ls.clock() - t0
        local row = {epoch = epoch, steps = step, train_loss = acc.sum_loss / math.max(acc.seen, 1),
                     train_accuracy = acc.acc_ok and acc.hits / math.max(acc.seen, 1) or nil,
                     lr = lr, train_seconds = t_train}
        if eval_obj then
            local r = eval_obj:evaluate()
            row.eval_loss, row.eval_accuracy, row.eval_n = r.loss, r.accuracy, r.n
            if not util.is_finite(r.loss) then
                log.status, log.diverged_at = "diverged", step
                log.diverged_reason = string.format("eval loss %s", tostring(r.loss))
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
        if ck then save(epoch + 1, 0) end
    end
    log.steps = step
    log.seconds = ls.clock() - t_run
    return log
end
M.train = public(train)

return M
