-- help(f) / ?f, module summaries, "did you mean" for misspelt names, completion of lazily loaded
-- modules, and the README's banner (lualib/landscape/repl/help.lua, repl/init.lua,
-- engine/lua/cli/). The coverage test walks the public functions with help.public(), the walker
-- options_spec uses too.
local ls = require "landscape"
local help = require "landscape.repl.help"
local repl = require "landscape.repl"
local su = require "spec_util"
local has = su.has

local BIN = os.getenv("LANDSCAPE_BIN") or "build/landscape"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs the landscape executable on stdin text; returns stdout, stderr.
local function run(args, stdin)
    local inp, out, err = os.tmpname(), os.tmpname(), os.tmpname()
    local f = assert(io.open(inp, "w"))
    f:write(stdin or "")
    f:close()
    os.execute(string.format("%s %s < %s > %s 2> %s", q(BIN), args, q(inp), q(out), q(err)))
    local function slurp(p)
        local h = assert(io.open(p))
        local s = h:read("a")
        h:close()
        os.remove(p)
        return s
    end
    os.remove(inp)
    return slurp(out), slurp(err)
end

describe("help", function()
    it("every public function has a signature, a description and an example that compiles", function()
        local bad = {}
        local n = 0
        for _, e in ipairs(help.public()) do
            n = n + 1
            local h, why = help.lookup(e[2])
            if not h then
                bad[#bad + 1] = e[1] .. ": " .. why
            else
                if not h.signature or h.signature == "" then bad[#bad + 1] = e[1] .. ": no signature" end
                if h.description == "" then bad[#bad + 1] = e[1] .. ": no description" end
                if h.example == "" then
                    bad[#bad + 1] = e[1] .. ": no example"
                elseif not load(h.example, "=example") and not load("return " .. h.example, "=example") then
                    bad[#bad + 1] = e[1] .. ": the example does not compile: " .. h.example
                end
            end
        end
        assert.is_true(n > 240)   -- the C module, Tensor methods, every Lua module
        table.sort(bad)
        assert.same({}, bad)
    end)

    it("every method of the library's objects has one too", function()
        local nn = ls.nn
        local x = ls.randn({12, 1, 4, 4}, {seed = 1, dtype = "f64"})
        local d = ls.dataset(x, ls.randint(1, 4, {12}, {seed = 2}))
        local model = nn.mlp{input = 16, hidden = {5}, classes = 3, seed = 1, dtype = "f64"}
        local objects = {
            Module = model, Dataset = d, Objective = ls.objective(model, d, {batch = 6}),
            Optimizer = ls.optim.sgd(model, {lr = 0.1}),
            Operator = ls.curvature.dense(ls.eye(4, {dtype = "f64"})),
            ModelOperator = ls.curvature.hessian(model, d),
            Table = ls.table.from_columns({"a"}, {a = {1, 2}}),
            Fit = ls.stats.ols(ls.randn({10, 2}, {seed = 3, dtype = "f64"}),
                               ls.randn({10}, {seed = 4, dtype = "f64"})),
        }
        local bad, n = {}, 0
        for cname, o in pairs(objects) do
            local seen, mt = {}, getmetatable(o)
            for _ = 1, 5 do   -- the __index chain: the class, then its parents
                local idx = mt and rawget(mt, "__index")
                if type(idx) ~= "table" then break end
                for k, f in pairs(idx) do
                    if type(k) == "string" and k:sub(1, 1) ~= "_" and type(f) == "function" and
                       not seen[k] then
                        seen[k] = true
                        n = n + 1
                        local e = help.lookup_method(f, k)
                        if not e or not e.signature or e.description == "" or e.example == "" then
                            bad[#bad + 1] = cname .. ":" .. k
                        elseif not load(e.example) and not load("return " .. e.example) then
                            bad[#bad + 1] = cname .. ":" .. k .. ": the example does not compile"
                        end
                    end
                end
                mt = getmetatable(idx)
            end
        end
        assert.is_true(n > 100)
        table.sort(bad)
        assert.same({}, bad)
        -- help(obj.method) finds the method by value
        local H = objects.ModelOperator
        has(help.text(H.eigs), "Extreme eigenpairs by Lanczos")
        has(help.text(d.batches), "ds:batches(batch [, opts])")
    end)

    it("prints the entry of C and Lua functions, by value or by name", function()
        local t = help.text(ls.randn)
        has(t, "ls.randn(shape [, {seed, dtype = 'f32', mean = 0, std = 1}]) -> Tensor")
        has(t, "Example:\n  ls.randn({1000, 50}, {seed = 1})")
        t = help.text(ls.zeros(1).size)
        has(t, "x:size([dim]) -> table or integer")
        t = help.text(ls.plot.lines)   -- a public() wrapper: the wrapped function's comments
        has(t, "ls.plot.lines(rows, opts) -> out, gp, files")
        has(t, "twin axes")
        has(t, "Example:\n  ls.plot.lines(rows, {x = \"epoch\"")
        assert.equal(help.text(ls.nn.mlp), help.text("ls.nn.mlp"))
        has(help.text(ls.nn.avgpool2d), "nn.avgpool2d(kernel [, stride = kernel])")   -- shared block
        has(help.text(ls.linalg.solve), "ls.linalg.solve(A, B) -> Tensor")
        has(help.text("ls.nope"), "help: no such function: ls.nope")
        has(help.text(42), "help: not a function")
        has(help.text(), "help(f) or ?f")
    end)

    it("summarises modules instead of listing function addresses", function()
        local s = help.summary(ls)
        has(s, "landscape (ls):")
        has(s, "tensor ops, also methods")
        has(s, "modules: ")
        assert.falsy(s:find("function: 0x", 1, true))
        local n = help.summary(ls.nn)
        has(n, "landscape.nn (ls.nn):")
        has(n, "23 functions: avgpool2d, basic_block")
        assert.equal(help.summary(ls.nn), repl.show(ls.nn))   -- what the REPL prints for `ls.nn`
        has(help.summary(ls.io), "ls.io: the file formats in C")
        -- plain tables still print their contents
        assert.equal("{1, 2}", repl.show({1, 2}))
    end)

    it("suggests close names for misspelt methods, fields and globals", function()
        local function e(fn)
            local ok, err = pcall(fn)
            assert.is_false(ok)
            return help.explain(tostring(err))
        end
        local x = ls.zeros(2)
        has(e(function() return x:sizee() end), "(method 'sizee') (did you mean 'size'?)")
        has(e(function() return ls.randnn(3) end), "(field 'randnn') (did you mean 'randn'?)")
        has(e(function() return ls.nn.mlpp{} end), "(field 'mlpp') (did you mean 'mlp'?)")
        has(e(function() return prnt(1) end), "(global 'prnt') (did you mean 'print'?)")   -- luacheck: ignore
        local far = e(function() return ls.zzzqqq() end)
        assert.falsy(far:find("did you mean", 1, true))
        assert.equal("not a nil-value error", help.explain("not a nil-value error"))
    end)

    it("in the REPL and in scripts: ?f, help(f), the suggestion in errors, module summaries", function()
        local out = run("-i", 'ls = require "landscape"\n?ls.eye\nhelp(ls.trace)\nls.nn\n')
        has(out, "ls.eye(n [, m] [, {dtype = 'f32'}]) -> Tensor")
        has(out, "x:trace() -> Tensor (0-d)")
        has(out, "landscape.nn (ls.nn):")
        local _, err = run("-i", 'ls = require "landscape"\nls.zeros(2):sizee()\n')
        has(err, "attempt to call a nil value (method 'sizee') (did you mean 'size'?)")
        local script = os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write('local ls = require "landscape"\nls.nn.sequentail{}\n')
        f:close()
        _, err = run(q(script), "")
        os.remove(script)
        has(err, "attempt to call a nil value (field 'sequentail') (did you mean 'sequential'?)")
    end)

    it("completes the fields of modules that are not loaded yet", function()
        -- a fresh process: ls.stats is not loaded until completion asks for it
        local out = run("-e " .. q('ls = require "landscape"; assert(rawget(ls, "stats") == nil); ' ..
            'local r = require "landscape.repl"; local s, c = r.complete("ls.stats.kend"); ' ..
            'print(c[1], rawget(ls, "stats") ~= nil)'), "")
        assert.equal("ls.stats.kendall_tau\ttrue\n", out)
    end)

    it("shows the real banner in the README", function()
        local out = run("-i", "")
        local banner = out:match("^[^\n]*")
        local f = assert(io.open("README.md"))
        local readme = f:read("a")
        f:close()
        local sample = readme:match("\n%$ build/landscape\n([^\n]*)")
        assert.is_not_nil(sample)
        -- the Lua release is the machine's; the rest must agree character for character
        assert.equal(banner:gsub("Lua 5%.4%.%d+", "Lua 5.4.x"), (sample:gsub("Lua 5%.4%.%d+", "Lua 5.4.x")))
    end)
end)
