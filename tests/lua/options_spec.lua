-- The one option and error idiom: every public function that takes an options table refuses an
-- unknown key with "<function>: unknown option 'x' (did you mean 'y'?)" at the caller's line. The
-- spec walks the public tables (the C module, every Lua module reachable from ls, and the methods
-- of the objects they return), so a new function that is listed in neither CASES nor NO_OPTIONS
-- fails here until someone decides which it is.
local ls = require "landscape"
local nn = ls.nn

local BOGUS = "zzz_unknown"

-- Small objects to call the functions on.
local function fixtures()
    local f = {}
    f.x = ls.randn({12, 1, 4, 4}, {seed = 1, dtype = "f64"})
    f.y = ls.randint(1, 4, {12}, {seed = 2})
    f.d = ls.dataset(f.x, f.y)
    f.model = nn.mlp{input = 16, hidden = {5}, classes = 3, seed = 1, dtype = "f64"}
    f.obj = ls.objective(f.model, f.d, {batch = 6})
    f.opt = ls.optim.sgd(f.model, {lr = 0.1})
    f.H = ls.curvature.hessian(f.model, f.d)
    f.A = ls.curvature.dense(ls.eye(4, {dtype = "f64"}))
    f.bv = f.obj:batch_view(f.x:narrow(1, 1, 6), f.y:narrow(1, 1, 6))
    f.margins = ls.margins(f.model, f.d, {layers = {"output"}})
    f.tmp = os.tmpname()
    f.X = ls.randn({10, 2}, {seed = 3, dtype = "f64"})
    f.Y = ls.randn({10}, {seed = 4, dtype = "f64"})
    f.table = ls.table.from_columns({"a", "b"}, {a = {1, 2, 3, 4}, b = {1, 2, 4, 3}})
    return f
end

local function with(opts) opts = opts or {}; opts[BOGUS] = 1; return opts end

-- path -> function(fixtures, opts) calling the function with the options table `opts`.
local CASES = {
    -- C module
    ["ls.tensor"] = function(_, o) return ls.tensor({1, 2}, o) end,
    ["ls.zeros"] = function(_, o) return ls.zeros({2}, o) end,
    ["ls.ones"] = function(_, o) return ls.ones({2}, o) end,
    ["ls.full"] = function(_, o) return ls.full({2}, 3, o) end,
    ["ls.zeros_like"] = function(f, o) return ls.zeros_like(f.x, o) end,
    ["ls.ones_like"] = function(f, o) return ls.ones_like(f.x, o) end,
    ["ls.arange"] = function(_, o) return ls.arange(3, o) end,
    ["ls.eye"] = function(_, o) return ls.eye(3, o) end,
    ["ls.rand"] = function(_, o) return ls.rand({2}, o) end,
    ["ls.randn"] = function(_, o) return ls.randn({2}, o) end,
    ["ls.rademacher"] = function(_, o) return ls.rademacher({2}, o) end,
    ["ls.randint"] = function(_, o) return ls.randint(0, 3, {2}, o) end,
    ["ls.randperm"] = function(_, o) return ls.randperm(3, o) end,
    ["ls.set_rng_state"] = function(_, o)
        o.seed, o.offset = 1, 0
        return ls.set_rng_state(o)
    end,
    ["ls.grad"] = function(f, o)
        local w = ls.ones({2}, {dtype = "f64"}):requires_grad()
        return ls.grad((w * w):sum(), {w}, o)
    end,
    ["Tensor:backward"] = function(_, o)
        local w = ls.ones({2}, {dtype = "f64"}):requires_grad()
        return (w * w):sum():backward(o)
    end,
    -- every registry op parses its arguments in one place (lx_ops.c); the losses' reduction table
    -- is the options table among them
    ["ops"] = function(f, o) return ls.cross_entropy(f.model(f.x), f.y, o) end,
    -- Lua layer
    ["ls.objective"] = function(f, o) return ls.objective(f.model, f.d, o) end,
    ["ls.train"] = function(f, o)
        o.optimizer, o.progress = f.opt, false
        return ls.train(f.model, f.d, o)
    end,
    ["ls.evaluate"] = function(f, o) return ls.evaluate(f.model, f.d, o) end,
    ["ls.dataset"] = function(f, o) return ls.dataset(f.x, f.y, o) end,
    ["ls.hvp"] = function(f, o)
        local w = ls.ones({2}, {dtype = "f64"}):requires_grad()
        return ls.hvp(function() return (w * w * w):sum() end, w, ls.ones({2}, {dtype = "f64"}), o)
    end,
    ["ls.gradcheck"] = function(_, o)
        local w = ls.ones({2}, {dtype = "f64"}):requires_grad()
        return ls.gradcheck(function(a) return a * a end, {w}, o)
    end,
    ["ls.nn.linear"] = function(_, o) return nn.linear(2, 3, o) end,
    ["ls.nn.conv2d"] = function(_, o) return nn.conv2d(1, 2, 3, o) end,
    ["ls.nn.batchnorm1d"] = function(_, o) return nn.batchnorm1d(3, o) end,
    ["ls.nn.batchnorm2d"] = function(_, o) return nn.batchnorm2d(3, o) end,
    ["ls.nn.softplus"] = function(_, o) return nn.softplus(o) end,
    ["ls.nn.gelu"] = function(_, o) o.approximate = "tanh"; return nn.gelu(o) end,
    ["ls.nn.dropout"] = function(_, o) return nn.dropout(0.5, o) end,
    ["ls.nn.basic_block"] = function(_, o) return nn.basic_block(2, 2, o) end,
    ["ls.nn.mlp"] = function(_, o) return nn.mlp(o) end,
    ["ls.nn.cnn"] = function(_, o) return nn.cnn(o) end,
    ["ls.nn.resnet"] = function(_, o) return nn.resnet(o) end,
    ["ls.nn.load_into"] = function(f, o)
        f.model:save(f.tmp)
        return nn.load_into(f.model, f.tmp, o)
    end,
    ["Module:load_state_dict"] = function(f, o) return f.model:load_state_dict(f.model:state_dict(), o) end,
    ["ls.optim.sgd"] = function(f, o) return ls.optim.sgd(f.model, o) end,
    ["ls.optim.adam"] = function(f, o) return ls.optim.adam(f.model, o) end,
    ["ls.optim.adamw"] = function(f, o) return ls.optim.adamw(f.model, o) end,
    ["ls.optim.clip_grad_norm"] = function(f, o) return ls.optim.clip_grad_norm(f.model, 1, o) end,
    ["ls.optim.schedule.step"] = function(f, o) o.step_size = 1; return ls.optim.schedule.step(f.opt, o) end,
    ["ls.optim.schedule.cosine"] = function(f, o) o.t_max = 2; return ls.optim.schedule.cosine(f.opt, o) end,
    ["ls.optim.schedule.warmup"] = function(f, o) return ls.optim.schedule.warmup(f.opt, o) end,
    ["ls.optim.schedule.sequential"] = function(f, o) return ls.optim.schedule.sequential(f.opt, o) end,
    ["ls.data.dataset"] = function(f, o) return ls.data.dataset(f.x, f.y, o) end,
    ["ls.data.fashion_mnist"] = function(_, o) return ls.data.fashion_mnist(o) end,
    ["ls.data.idx"] = function(_, o) return ls.data.idx(o) end,
    ["Dataset:batches"] = function(f, o) return f.d:batches(4, o) end,
    ["Dataset:balanced_subset"] = function(f, o) return f.d:balanced_subset(3, o) end,
    ["Dataset:random_split"] = function(f, o) return f.d:random_split(0.5, o) end,
    ["Dataset:normalize"] = function(f, o) return f.d:normalize(o) end,
    ["Dataset:with_label_noise"] = function(f, o) return f.d:with_label_noise(0.1, o) end,
    ["Dataset:num_batches"] = function(f, o) return f.d:num_batches(4, o) end,
    ["ls.curvature.operator"] = function(_, o)
        o.n, o.matvec = 2, function(v) return v end
        return ls.curvature.operator(o)
    end,
    ["ls.curvature.dense"] = function(_, o) return ls.curvature.dense(ls.eye(2, {dtype = "f64"}), o) end,
    ["ls.curvature.hessian"] = function(f, o) return ls.curvature.hessian(f.model, f.d, o) end,
    ["ls.curvature.ggn"] = function(f, o) return ls.curvature.ggn(f.model, f.d, o) end,
    ["ls.curvature.fisher"] = function(f, o) return ls.curvature.fisher(f.model, f.d, o) end,
    ["ls.curvature.grad_norm"] = function(f, o) return ls.curvature.grad_norm(f.model, f.d, o) end,
    ["Operator:eigs"] = function(f, o) return f.A:eigs(o) end,
    ["Operator:power"] = function(f, o) return f.A:power(o) end,
    ["Operator:trace"] = function(f, o) return f.A:trace(o) end,
    ["Operator:diag"] = function(f, o) return f.A:diag(o) end,
    ["Operator:density"] = function(f, o) return f.A:density(o) end,
    ["Operator:moments"] = function(f, o) return f.A:moments(o) end,
    ["ModelOperator:trace_per_layer"] = function(f, o) return f.H:trace_per_layer(o) end,
    ["ls.sharpness.worst_case"] = function(f, o) return ls.sharpness.worst_case(f.model, f.d, o) end,
    ["ls.sharpness.keskar"] = function(f, o) return ls.sharpness.keskar(f.model, f.d, o) end,
    ["ls.sharpness.average_case"] = function(f, o) return ls.sharpness.average_case(f.model, f.d, o) end,
    ["ls.sharpness.m_sharpness"] = function(f, o) return ls.sharpness.m_sharpness(f.model, f.d, o) end,
    ["ls.landscape.line"] = function(f, o) return ls.landscape.line(f.model, f.d, o) end,
    ["ls.landscape.plane"] = function(f, o) return ls.landscape.plane(f.model, f.d, o) end,
    ["ls.landscape.interpolate"] = function(f, o)
        return ls.landscape.interpolate(f.model, f.model, f.d, o)
    end,
    ["ls.landscape.bn_probe"] = function(f, o) return ls.landscape.bn_probe(f.model, f.x, f.y, o) end,
    ["ls.landscape.normalize_direction"] = function(f, o)
        return ls.landscape.normalize_direction(f.model, f.model:parameters(), o)
    end,
    ["ls.margins"] = function(f, o) return ls.margins(f.model, f.d, o) end,
    ["ls.margins.signature"] = function(f, o) return ls.margins.signature(f.margins, o) end,
    ["ls.margins.input_geometry"] = function(f, o) return ls.margins.input_geometry(f.model, f.d, o) end,
    ["ls.methods.plain"] = function(_, o) return ls.methods.plain(o) end,
    ["ls.methods.sam"] = function(_, o) return ls.methods.sam(o) end,
    ["ls.methods.asam"] = function(_, o) return ls.methods.asam(o) end,
    ["ls.methods.rsam"] = function(_, o) return ls.methods.rsam(o) end,
    ["ls.methods.grad_norm"] = function(_, o) return ls.methods.grad_norm(o) end,
    ["ls.methods.trace_penalty"] = function(_, o) return ls.methods.trace_penalty(o) end,
    ["Objective:grad"] = function(f, o) return f.obj:grad(o) end,
    ["Objective:hvp"] = function(f, o) return f.obj:hvp(ls.zeros({f.obj.n}, {dtype = "f64"}), o) end,
    ["Objective:guard"] = function(f, o) return f.obj:guard(function() end, o) end,
    ["Objective:batch_view"] = function(f, o) return f.obj:batch_view(f.x, f.y, o) end,
    ["Batch:loss"] = function(f, o) return f.bv:loss(o) end,
    ["Batch:grad"] = function(f, o) return f.bv:grad(o) end,
    ["Batch:backward"] = function(f, o) return f.bv:backward(o) end,
    ["ls.stats.ols"] = function(f, o) return ls.stats.ols(f.X, f.Y, o) end,
    ["ls.stats.ridge"] = function(f, o) return ls.stats.ridge(f.X, f.Y, o) end,
    ["ls.stats.cross_validate"] = function(f, o)
        return ls.stats.cross_validate(ls.stats.ols(), f.X, f.Y, o)
    end,
    ["ls.stats.permutation_test"] = function(f, o)
        return ls.stats.permutation_test(ls.stats.ols(), f.X, f.Y, o)
    end,
    ["ls.stats.bootstrap"] = function(_, o) return ls.stats.bootstrap(function() return 0 end, 5, o) end,
    ["ls.stats.kendall_tau"] = function(_, o) return ls.stats.kendall_tau({1, 2, 3}, {1, 3, 2}, o) end,
    ["ls.stats.granulated_tau"] = function(f, o) return ls.stats.granulated_tau(f.table, o) end,
    ["ls.table.from_rows"] = function(_, o) return ls.table.from_rows({{a = 1}}, o) end,
    ["Table:write_csv"] = function(f, o) return f.table:write_csv(f.tmp, o) end,
    ["Table:sort_by"] = function(f, o) return f.table:sort_by("a", o) end,
    ["Table:join"] = function(f, o) return f.table:join(f.table:select("a"), "a", o) end,
    ["Table:matrix"] = function(f, o) return f.table:matrix({"a", "b"}, o) end,
    ["ls.csv.write"] = function(f, o) return ls.csv.write(f.tmp, {{a = 1}}, o) end,
    ["ls.plot.lines"] = function(f, o) return ls.plot.lines({{a = 1, b = 2}}, o) end,
    ["ls.plot.contour"] = function(f, o) return ls.plot.contour({{alpha = 1, beta = 1, loss = 1}}, o) end,
    ["ls.plot.heatmap"] = function(f, o) return ls.plot.heatmap({{alpha = 1, beta = 1, loss = 1}}, o) end,
    ["ls.plot.surface"] = function(f, o) return ls.plot.surface({{alpha = 1, beta = 1, loss = 1}}, o) end,
    ["ls.study"] = function(_, o) return ls.study(o) end,
    ["ls.plot.histogram"] = function(f, o) return ls.plot.histogram({1, 2, 3}, o) end,
    ["ls.plot.scatter"] = function(f, o) return ls.plot.scatter({{a = 1, b = 2}}, o) end,
}

-- Public functions that take no options table (positional arguments only).
local NO_OPTIONS = {}
for _, name in ipairs({
    -- C module (besides the registry ops)
    "ls.available_cores", "ls.clock", "ls.enable_grad", "ls.get_rng_state", "ls.get_threads",
    "ls.initial_seed", "ls.is_grad_enabled", "ls.is_tensor", "ls.manual_seed", "ls.memory",
    "ls.no_grad", "ls.set_threads", "ls.jvp", "ls.vjp", "ls.system_info", "ls.cat", "ls.stack",
    "ls.help", "ls.linalg.solve", "ls.linalg.lstsq",
    "ls.io.csv_read", "ls.io.csv_write", "ls.io.load_safetensors", "ls.io.save_safetensors",
    "ls.io.read_idx", "ls.io.write_idx", "ls.io.write_file",
    -- nn: layers without options, the class maker, containers
    "ls.nn.avgpool2d", "ls.nn.maxpool2d", "ls.nn.flatten", "ls.nn.global_avgpool",
    "ls.nn.identity", "ls.nn.relu", "ls.nn.sigmoid", "ls.nn.tanh", "ls.nn.leaky_relu",
    "ls.nn.class", "ls.nn.sequential",
    "ls.data.balanced_subset", "ls.data.is_dataset",
    "ls.curvature.is_operator", "ls.methods.check",
    "ls.csv.read", "ls.csv.read_rows",
    "ls.fs.basename", "ls.fs.dirname", "ls.fs.exists", "ls.fs.isdir", "ls.fs.isfile", "ls.fs.join",
    "ls.fs.list", "ls.fs.mkdir_p", "ls.fs.read", "ls.fs.remove", "ls.fs.check_writable_dir",
    "ls.stats.fences", "ls.stats.iqr", "ls.stats.kurtosis", "ls.stats.mean", "ls.stats.percentile",
    "ls.stats.quantile", "ls.stats.resolve", "ls.stats.sd", "ls.stats.skewness",
    "ls.stats.summary", "ls.stats.var", "ls.stats.transfer", "ls.stats.spearman",
    "ls.stats.pearson", "ls.stats.rank", "ls.stats.scores", "ls.stats.r2", "ls.stats.rmse",
    "ls.stats.mae", "ls.stats.is_model",
    "ls.table.is_table", "ls.table.from_columns", "ls.table.read_csv", "ls.table.concat",
}) do NO_OPTIONS[name] = true end

-- The public functions (leading "_" is internal): help.public()'s walk of the C module, every Lua
-- module and ls.optim.schedule (the help spec checks the same list). Registry ops are Tensor
-- methods: one parser, one case ("ops"); the other Tensor methods take no options table.
local function public_functions()
    local out = {}
    for _, e in ipairs(require("landscape.repl.help").public()) do
        if not e[1]:match("^Tensor:") then out[#out + 1] = e[1] end
    end
    return out
end

describe("unknown options", function()
    it("every public function is either checked here or takes no options table", function()
        local missing = {}
        for _, name in ipairs(public_functions()) do
            if not CASES[name] and not NO_OPTIONS[name] then missing[#missing + 1] = name end
        end
        table.sort(missing)
        assert.are.same({}, missing)
    end)

    it("are refused by every function that takes options, naming it, at the caller's line", function()
        local f = fixtures()
        local names = {}
        for name in pairs(CASES) do names[#names + 1] = name end
        table.sort(names)
        for _, name in ipairs(names) do
            -- not a tail call: the case's own call then has this line as its caller
            local ok, err = pcall(function() local r = CASES[name](f, with()); return r end)
            assert(not ok, name .. " accepted an unknown option")
            err = tostring(err)
            assert(err:find("unknown option '" .. BOGUS .. "'", 1, true), name .. ": " .. err)
            assert(err:find("^[^:\n]*options_spec%.lua:%d+: "),
                   name .. " does not point at the caller: " .. err)
        end
        os.remove(f.tmp)
    end)

    it("come with a suggestion when a known option is close, from C and from Lua alike", function()
        local function msg(fn) local ok, e = pcall(fn); assert.is_false(ok); return tostring(e) end
        local f = fixtures()
        assert.truthy(msg(function() return f.A:trace{probs = 5} end)
            :find("trace: unknown option 'probs' (did you mean 'probes'?)", 1, true))
        assert.truthy(msg(function() return f.A:density{step = 5} end)
            :find("density: unknown option 'step' (did you mean 'steps'?)", 1, true))
        assert.truthy(msg(function() return ls.randn({2}, {sedd = 1}) end)
            :find("randn: unknown option 'sedd' (did you mean 'seed'?)", 1, true))
        assert.truthy(msg(function() return ls.grad(ls.ones({1}):requires_grad():sum(), {}, {create_grap = true}) end)
            :find("grad: unknown option 'create_grap' (did you mean 'create_graph'?)", 1, true))
        assert.truthy(msg(function() return ls.train(f.model, f.d, {optimizer = f.opt, epoch = 2}) end)
            :find("train: unknown option 'epoch' (did you mean 'epochs'?)", 1, true))
        -- nothing close: no suggestion
        local e = msg(function() return ls.zeros({2}, {colour = "red"}) end)
        assert.truthy(e:find("zeros: unknown option 'colour'$"))
        assert.are.equal("probes", ls._suggest("probs", {"k", "probes", "seed"}))
        assert.is_nil(ls._suggest("xyz", {"probes", "seed"}))
        assert.are.equal("seed", ls._suggest("sede", {"seed", "speed"}))   -- a swap is one edit
    end)
end)
