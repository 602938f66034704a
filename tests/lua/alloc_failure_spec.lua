-- Allocation-failure injection through the Lua entry points (docs/hardening.md).
--
-- Each scenario below is a representative piece of work (tensor ops, autograd to second order, file
-- readers and writers, curvature estimators, optimizer steps, a short training run). It is run once
-- to learn what it returns, then again with the k-th engine allocation made to fail, for k = 1, 2, ...
-- until a run no longer reaches its k-th allocation. Every run must either succeed with the same
-- result (some callers recover from a failed allocation, e.g. a kernel falls back to a serial path) or
-- raise a clean Lua error saying "out of memory" and naming a function (not the generic "tensor:"),
-- and once the run's values are collected the engine must hold exactly the bytes it held before (no
-- leak). A crash fails the whole suite. Files a failed writer touched must be as they were.
-- A second pass makes the k-th allocation of the Lua state itself fail for the scenarios that turn
-- engine results into Lua values, where a Lua "not enough memory" error must not leak engine objects.
local ls = require "landscape"

local files = require "spec_files"
local read_all = files.read_bytes
local dir = files.scratch_dir("ls_alloc_spec")
teardown(function() files.remove_dir(dir) end)

local function collect()
    collectgarbage()
    collectgarbage()
end

-- A comparable summary of a result: numbers, strings, booleans and tensors (their values), nested.
local function summary(v, depth)
    depth = depth or 0
    if ls.is_tensor(v) then return {shape = v:size(), values = v:totable()} end
    if type(v) ~= "table" or depth > 3 then return v end
    local out = {}
    for k, x in pairs(v) do
        if type(x) ~= "function" and type(x) ~= "userdata" then out[k] = summary(x, depth + 1) end
    end
    return out
end

-- Run body() with the k-th allocation of `which` ("engine" or "lua") failing, for every k it reaches.
-- Returns the number of allocations covered.
local function sweep(name, body, which, opts)
    opts = opts or {}
    which = which or "engine"
    collect()
    local ok0, ref = pcall(body)
    assert(ok0, name .. ": the run without injection failed: " .. tostring(ref))
    ref = summary(ref)
    ok0, ref = nil, ref
    local k = 0
    while true do
        k = k + 1
        assert(k <= (opts.max or 5000), name .. ": more allocations than expected")
        if opts.before then opts.before(k) end
        collect()
        local base = ls.memory()
        ls._alloc_fail_after(k, which)
        local ok, res = pcall(body)
        local fired = ls._alloc_fail_pending(which) == 0
        ls._alloc_fail_after(0, which)
        if ok then
            res = summary(res)
            assert.are.same(ref, res, string.format("%s: k = %d: a run that recovered returned "
                                                    .. "something else", name, k))
        else
            local msg = tostring(res)
            local expect = which == "engine" and "out of memory" or "not enough memory"
            assert(msg:find(expect, 1, true),
                   string.format("%s: k = %d: expected an out-of-memory error, got: %s", name, k, msg))
            -- the generic tag of a low-level message must have been replaced by a function's name:
            -- "read_idx: f.idx: tensor: out of memory" or a bare "tensor: out of memory" is a
            -- message nobody named ("x.lua:12: tensor: ..." is ls.tensor itself)
            local untagged = msg:find("^tensor: out of memory") or msg:find("[^%d]: tensor: out of memory")
            assert(not untagged and not msg:find("unknown engine error", 1, true),
                   string.format("%s: k = %d: the error does not name the function: %s", name, k, msg))
        end
        res = nil
        collect()
        assert(ls.memory() == base, string.format("%s: k = %d: %d engine bytes leaked (%s)", name,
                                                  k, ls.memory() - base, ok and "ok" or "failed"))
        if opts.after then opts.after(k, ok) end
        if not fired then return k - 1 end
    end
end

local covered = {}
local function scenario(name, body, opts)
    it(name, function()
        covered[name] = sweep(name, body, "engine", opts)
        assert.is_true(covered[name] >= (opts and opts.min or 1), name .. ": no allocation reached")
    end)
end

describe("engine allocation failures", function()
    scenario("tensor ops", function()
        local a = ls.randn({5, 7}, {seed = 1, dtype = "f64"})
        local b = ls.randn({7, 3}, {seed = 2, dtype = "f64"})
        local c = a:matmul(b) + ls.ones(3, {dtype = "f64"})
        local d = c:softmax(2):sum(1)
        local e = a:t():contiguous():reshape(-1):narrow(1, 2, 10):clone()
        local f = a:index_select(1, {2, 4}):max(2)
        local g = ls.where(a:gt(0), a, a * 2):mean() + a:std() + a:norm()
        local h = ls.conv2d(ls.randn({2, 3, 6, 6}, {seed = 3}), ls.randn({4, 3, 3, 3}, {seed = 4}), 1, 1)
        local p = h:maxpool2d(2):avgpool2d(1)
        return {d, e, f, g, p:sum(), ls.zeros(0, 3):reshape(3, 0):sum(), tostring(a:narrow(1, 1, 2))}
    end)

    scenario("autograd to second order", function()
        local w = ls.randn({4, 3}, {seed = 5, dtype = "f64"}):requires_grad()
        local x = ls.randn({6, 4}, {seed = 6, dtype = "f64"})
        local y = ls.tensor({1, 2, 3, 1, 2, 3}, {dtype = "i64"})
        local loss = ls.cross_entropy(x:matmul(w), y)
        local g = ls.grad(loss, {w}, {create_graph = true})
        local hv = ls.grad((g[1] * ls.ones(4, 3, {dtype = "f64"})):sum(), {w})
        local w2 = ls.randn({3}, {seed = 7}):requires_grad()
        ls.tanh(w2):sum():backward()
        local out = {loss, g[1]:detach(), hv[1], w2.grad}
        return out
    end)

    scenario("hvp and jvp", function()
        local w = ls.randn({5}, {seed = 8, dtype = "f64"}):requires_grad()
        local f = function() return (w * w * w):sum() end
        local hv = ls.hvp(f, w, ls.ones(5, {dtype = "f64"}))
        local _, jv = ls.jvp(function(t) return t:exp() end, w, ls.ones(5, {dtype = "f64"}))
        return {hv, jv}
    end)

    describe("files", function()
        local x = ls.randn({4, 5}, {seed = 9})
        local lab = ls.tensor({1, 2, 3, 4}, {dtype = "u8"})
        ls.io.write_idx(dir .. "/r.idx", x)
        ls.io.write_idx(dir .. "/r.idx.gz", lab)
        ls.io.save_safetensors(dir .. "/r.safetensors", {x = x, lab = lab}, {note = "a"})
        ls.io.csv_write(dir .. "/r.csv", {"a", "b"}, {{a = 1, b = "x"}, {a = 2.5, b = "y,z"}}, false)

        scenario("readers", function()
            local t1 = ls.io.read_idx(dir .. "/r.idx")
            local t2 = ls.io.read_idx(dir .. "/r.idx.gz")
            local st, meta = ls.io.load_safetensors(dir .. "/r.safetensors")
            local csv = ls.io.csv_read(dir .. "/r.csv")
            return {t1, t2, st.x, st.lab, meta, csv.data.a, csv.data.b, csv.columns}
        end)

        -- a failed writer leaves the file it was replacing as it was
        local function writer(name, path, write)
            local before
            scenario(name, function() write(); return true end, {
                before = function() before = read_all(path) end,
                after = function(_, ok)
                    if not ok then assert.are.equal(before, read_all(path), name .. ": file changed") end
                end})
        end
        writer("write_idx", dir .. "/w.idx.gz", function() ls.io.write_idx(dir .. "/w.idx.gz", x) end)
        writer("save_safetensors", dir .. "/w.safetensors", function()
            ls.io.save_safetensors(dir .. "/w.safetensors", {x = x, lab = lab}, {k = "v"})
        end)
        local n = 0
        it("csv append", function()
            ls.io.csv_write(dir .. "/w.csv", {"a", "b"}, {{a = 0, b = 0}}, false)
            local before
            local k = sweep("csv append", function()
                n = n + 1
                ls.io.csv_write(dir .. "/w.csv", {"b", "a"}, {{a = n, b = 3129.5}}, true)
                return true
            end, "engine", {
                before = function() before = read_all(dir .. "/w.csv") end,
                after = function(_, ok)
                    if not ok then assert.are.equal(before, read_all(dir .. "/w.csv")) end
                end})
            assert.is_true(k >= 3)
            local rows = require("landscape.io.csv").read_rows(dir .. "/w.csv")
            for i = 2, #rows do assert.are.equal(3129.5, rows[i].b) end   -- no torn row
        end)
    end)

    scenario("curvature estimators", function()
        local A = ls.randn({12, 12}, {seed = 10, dtype = "f64"})
        A = A + A:t()
        local op = ls.curvature.dense(A)
        local fop = ls.curvature.operator{n = 12, matvec = function(v) return A:matmul(v) end}
        local e = op:eigs{k = 2, seed = 1}
        local p = fop:power{k = 1, max_iter = 20, seed = 1}
        local t = fop:trace{probes = 6, seed = 1, method = "hutch++"}
        local d = op:diag{probes = 4, seed = 1}
        local s = fop:density{steps = 6, runs = 2, seed = 1}
        return {e.values, e.vectors, p.values, t.estimate, d.estimate, s.nodes, s.weights}
    end)

    scenario("model Hessian", function()
        local model = ls.nn.mlp{input = 6, hidden = {5}, classes = 3, seed = 1, dtype = "f64"}
        local data = ls.dataset(ls.randn({10, 6}, {seed = 11, dtype = "f64"}),
                                ls.tensor({1, 2, 3, 1, 2, 3, 1, 2, 3, 1}, {dtype = "i64"}))
        local H = ls.curvature.hessian(model, data, {batch = 10})
        return {H:trace{probes = 1, seed = 1}.estimate, H:eigs{k = 1, max_iter = 2, seed = 1}.values}
    end)

    scenario("optimizers", function()
        local model = ls.nn.mlp{input = 4, hidden = {3}, classes = 2, seed = 2}
        local x = ls.randn({5, 4}, {seed = 12})
        local y = ls.tensor({1, 2, 1, 2, 1}, {dtype = "i64"})
        local out = {}
        for _, make in ipairs({function() return ls.optim.sgd(model, {lr = 0.1, momentum = 0.9}) end,
                               function() return ls.optim.adam(model, {lr = 0.01, amsgrad = true}) end}) do
            local opt = make()
            for _ = 1, 2 do
                opt:zero_grad()
                ls.cross_entropy(model(x), y):backward()
                ls.optim.clip_grad_norm(model, 1.0)
                opt:step()
            end
        end
        for _, p in ipairs(model:parameters()) do out[#out + 1] = p:detach() end
        return out
    end)

    scenario("training", function()
        local model = ls.nn.mlp{input = 4, hidden = {3}, classes = 2, seed = 3}
        local data = ls.dataset(ls.randn({8, 4}, {seed = 13}),
                                ls.tensor({1, 2, 1, 2, 1, 2, 1, 2}, {dtype = "i64"}))
        local opt = ls.optim.sgd(model, {lr = 0.1})
        local log = ls.train(model, data, {optimizer = opt, epochs = 1, batch = 4, progress = false})
        return {log.status, log.steps, log.epochs[1].train_loss}
    end)

    it("covers hundreds of allocations in all", function()
        local total = 0
        for _, k in pairs(covered) do total = total + k end
        io.stderr:write(string.format("alloc_failure_spec: %d engine allocations failed in turn\n", total))
        assert.is_true(total >= 2000, "only " .. total .. " allocations covered")
    end)
end)

describe("Lua allocation failures", function()
    -- Engine objects handed to Lua while Lua itself runs out of memory must not leak.
    for name, body in pairs({
        ["tensor results"] = function()
            local a = ls.randn({3, 4}, {seed = 1})
            return {a:sum(2), a:t(), a:totable(), tostring(a), a:max(2)}
        end,
        ["file readers"] = function()
            local st, meta = ls.io.load_safetensors(dir .. "/r.safetensors")
            local csv = ls.io.csv_read(dir .. "/r.csv")
            return {st.x, meta, csv.data.a}
        end,
        ["grad"] = function()
            local w = ls.randn({3}, {seed = 2}):requires_grad()
            return ls.grad((w * w):sum(), {w}, {create_graph = true})
        end,
        ["curvature results"] = function()
            local A = ls.randn({6, 6}, {seed = 3, dtype = "f64"})
            local op = ls.curvature.dense(A + A:t())
            return {op:eigs{k = 2, seed = 1}.vectors, op:density{steps = 4, runs = 2, seed = 1}.nodes}
        end,
        ["writers"] = function()
            ls.io.csv_write(dir .. "/l.csv", {"a", "b"}, {{a = 1.5, b = "x"}, {a = 2, b = true}}, false)
            ls.io.save_safetensors(dir .. "/l.safetensors", {w = ls.ones(2)}, {k = 3})
            return true
        end,
    }) do
        it(name, function()
            assert.is_true(sweep(name, body, "lua") >= 5)
        end)
    end
end)
