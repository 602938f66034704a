-- Specs of the `landscape` command-line front end (engine/lua/cli/) and of its Lua half
-- (lualib/landscape/repl/init.lua).
--
-- The executable is driven as a user would: through a shell with temp files for stdin, stdout and
-- stderr, and, for the line editor, inside a tmux pseudo-terminal (those specs are pending when
-- tmux is not installed). LANDSCAPE_BIN (set by ctest) is the executable; the default is the usual
-- build dir.
local BIN = os.getenv("LANDSCAPE_BIN") or "build/landscape"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function write_file(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

local temps = {}
local function tmpname()
    local p = os.tmpname()
    temps[#temps + 1] = p
    return p
end

-- A fresh empty directory (removed in teardown).
local function tmpdir()
    local p = tmpname()
    os.remove(p)
    assert(os.execute("mkdir -p " .. q(p)))
    return p
end

-- Runs `landscape <args>` (args is shell text, already quoted) with `stdin` as input (a file, so
-- never a terminal) and `env` (shell assignments) in front. Returns {out=, err=, code=}.
local function run(args, stdin, env)
    local inp, out, err = tmpname(), tmpname(), tmpname()
    write_file(inp, stdin or "")
    local cmd = string.format("%s %s %s < %s > %s 2> %s", env or "", q(BIN), args or "", q(inp),
                              q(out), q(err))
    local _, _, code = os.execute(cmd)
    return { out = read_file(out), err = read_file(err), code = code }
end

-- A script file with the given source; returns its path.
local function script(src)
    local p = tmpname() .. ".lua"
    temps[#temps + 1] = p
    write_file(p, src)
    return p
end

teardown(function()
    for _, p in ipairs(temps) do os.execute("rm -rf " .. q(p)) end
end)

describe("landscape executable", function()
    it("exists and runs", function()
        local r = run("-e " .. q("io.write('ok')"))
        assert.are.equal("ok", r.out)
        assert.are.equal(0, r.code)
    end)

    it("prints its version with -v and --version", function()
        for _, opt in ipairs({ "-v", "--version" }) do
            local r = run(opt)
            assert.are.equal(0, r.code)
            assert.matches("^landscape %d+%.%d+%.%d+ %(Lua 5%.4%.%d+%)\n$", r.out)
        end
    end)

    it("prints usage with -h and --help and exits 0", function()
        for _, opt in ipairs({ "-h", "--help" }) do
            local r = run(opt)
            assert.are.equal(0, r.code)
            assert.matches("^usage: landscape %[options%] %[script %[args%]%]", r.out)
            assert.truthy(r.out:find("-l g=mod", 1, true))
        end
    end)

    it("rejects an unknown option with usage on stderr and exit 1", function()
        local r = run("-x")
        assert.are.equal(1, r.code)
        assert.are.equal("", r.out)
        assert.truthy(r.err:find("landscape: unrecognized option '-x'", 1, true))
        assert.truthy(r.err:find("usage: landscape", 1, true))
        local r2 = run("-e")
        assert.are.equal(1, r2.code)
        assert.truthy(r2.err:find("'-e' needs argument", 1, true))
        assert.are.equal(1, run("---").code)
        assert.are.equal(1, run("-vx").code)
    end)

    it("builds `arg` and `...` exactly as lua does", function()
        local s = script([[
            local parts = {}
            for i = -3, #arg do parts[#parts + 1] = i .. "=" .. tostring(arg[i]) end
            print(table.concat(parts, "|"))
            print(select("#", ...), ...)
            print(x)
        ]])
        local r = run("-e " .. q("x=1") .. " " .. q(s) .. " a " .. q("b c"))
        assert.are.equal(0, r.code)
        local expect = string.format("-3=%s|-2=-e|-1=x=1|0=%s|1=a|2=b c\n2\ta\tb c\n1\n", BIN, s)
        assert.are.equal(expect, r.out)
    end)

    it("puts the interpreter at arg[0] when there is no script", function()
        local r = run("-e " .. q("print(arg[0], arg[1], arg[2], #arg)"))
        assert.are.equal(BIN .. "\t-e\tprint(arg[0], arg[1], arg[2], #arg)\t2\n", r.out)
    end)

    it("stops options at the script and after --", function()
        local s = script("print(...)")
        assert.are.equal("-e\tx\n", run(q(s) .. " -e x").out)
        assert.are.equal("-v\n", run("-- " .. q(s) .. " -v").out)
    end)

    it("runs -e chunks and -l libraries in command-line order", function()
        local r = run("-e a=1 -e a=a+1 -l lfs -e " .. q("print(a, type(lfs.currentdir))"))
        assert.are.equal("2\tfunction\n", r.out)
        local code = "print(type(r.pretty), r == package.loaded['landscape.repl'])"
        local r2 = run("-l r=landscape.repl -e " .. q(code))
        assert.are.equal("function\ttrue\n", r2.out)
    end)

    it("fails with exit 1 when -l cannot find the module, without running the rest", function()
        local r = run("-l no_such_mod_xyz -e " .. q("print('ran')"))
        assert.are.equal(1, r.code)
        assert.are.equal("", r.out)
        assert.truthy(r.err:find("module 'no_such_mod_xyz' not found", 1, true))
    end)

    it("reports a script error with a traceback on stderr and exits 1", function()
        local s = script("local function inner() error('boom') end\n" ..
                         "local function outer() inner() end\n" ..
                         "outer()\nprint('not reached')\n")
        local r = run(q(s))
        assert.are.equal(1, r.code)
        assert.are.equal("", r.out)
        assert.are.equal(1, (r.err:find("landscape: " .. s .. ":1: boom\n", 1, true)))
        assert.truthy(r.err:find("stack traceback:", 1, true))
        assert.truthy(r.err:find("in upvalue 'inner'", 1, true), r.err)
        assert.truthy(r.err:find(":3: in main chunk", 1, true))
    end)

    it("reports non-string error objects", function()
        local r = run("-e " .. q("error({})"))
        assert.are.equal(1, r.code)
        assert.truthy(r.err:find("(error object is a table value)", 1, true))
        local obj = "setmetatable({}, {__tostring = function() return 'custom' end})"
        local r2 = run("-e " .. q("error(" .. obj .. ")"))
        assert.are.equal("landscape: custom\n", r2.err)
    end)

    it("reports syntax errors and missing files with exit 1", function()
        local r = run(q(script("x = = 1")))
        assert.are.equal(1, r.code)
        assert.truthy(r.err:find("unexpected symbol near '='", 1, true))
        local r2 = run(q("/nonexistent/nope.lua"))
        assert.are.equal(1, r2.code)
        assert.truthy(r2.err:find("landscape: cannot open /nonexistent/nope.lua", 1, true))
    end)

    it("passes os.exit codes through", function()
        assert.are.equal(3, run("-e " .. q("os.exit(3)")).code)
    end)

    it("runs stdin as a script when no script is given and stdin is not a terminal", function()
        local r = run("", "print('from stdin', select('#', ...))\n")
        assert.are.equal("from stdin\t0\n", r.out)
        local r2 = run("- a b", "#!/usr/bin/env landscape\nprint(arg[0], ...)\n")
        assert.are.equal("-\ta\tb\n", r2.out)
        local r3 = run("", "error('in stdin')\n")
        assert.are.equal(1, r3.code)
        assert.truthy(r3.err:find("landscape: stdin:1: in stdin", 1, true))
    end)

    it("does not read stdin after -e or -v without a script", function()
        assert.are.equal("", run("-e " .. q("x=1"), "print('stdin ran')\n").out)
    end)

    it("has require 'landscape' built in, without landscape.so on the cpath", function()
        local code = "local ls = require 'landscape'; print(type(ls), " ..
                     "package.loaded.landscape == ls, package.preload.landscape ~= nil)"
        local r = run("-e " .. q(code),
                      "", "LUA_CPATH_5_4=/nonexistent/?.so")
        assert.are.equal("", r.err)
        assert.are.equal("table\ttrue\ttrue\n", r.out)
    end)

    it("keeps the stock cpath: require 'lfs' works", function()
        local r = run("-E -e " .. q("print(require('lfs').currentdir() == os.getenv('PWD'))"))
        assert.are.equal("true\n", r.out)
    end)

    it("finds the source-tree lualib when run from the build tree", function()
        local r = run("-E -e " .. q("print(package.searchpath('landscape.repl', package.path))"))
        assert.matches("^/.*lualib/landscape/repl/init%.lua\n$", r.out)
    end)

    it("does not use the source tree when the executable is copied elsewhere", function()
        local d = tmpdir()
        assert(os.execute("cp " .. q(BIN) .. " " .. q(d .. "/landscape")))
        local r = run("-E -e " .. q("print(package.path)"))
        local inplace = r.out
        local cmd = q(d .. "/landscape") .. " -E -e " .. q("print(package.path)")
        local p = assert(io.popen(cmd))
        local copied = p:read("a")
        p:close()
        local src = inplace:match("^([^;]*lualib)/%?%.lua;")
        assert.truthy(src)
        assert.falsy(copied:find(src, 1, true))
        assert.truthy(copied:find("/share/lua/5.4/?.lua;", 1, true))
    end)

    it("puts LANDSCAPE_PATH first; directories and templates; -E ignores it", function()
        local d = tmpdir()
        write_file(d .. "/cli_spec_mod.lua", "return 'dir'")
        write_file(d .. "/tpl_cli_spec.lua", "return 'template'")
        local env = "LANDSCAPE_PATH=" .. q(d .. "/;;" .. d .. "/tpl_?.lua")
        local code = q("print((require 'cli_spec_mod'), (require 'cli_spec')); print(package.path)")
        local r = run("-e " .. code, "", env)
        local first = string.format("%s/?.lua;%s/?/init.lua;%s/tpl_?.lua;", d, d, d)
        assert.are.equal("dir\ttemplate\n", r.out:match("^[^\n]*\n"))
        assert.are.equal(1, (r.out:match("\n([^\n]*)"):find(first, 1, true)))
        local r2 = run("-E -e " .. q("print(package.path)"), "", env)
        assert.falsy(r2.out:find(d, 1, true))
    end)

    it("runs LUA_INIT first unless -E", function()
        assert.are.equal("42\n", run("-e " .. q("print(x)"), "", "LUA_INIT=x=42").out)
        assert.are.equal("nil\n", run("-E -e " .. q("print(x)"), "", "LUA_INIT=x=42").out)
    end)
end)

describe("landscape -i without a terminal (plain line reading)", function()
    local function repl(input)
        return run("-i", input, "LANDSCAPE_HISTORY=")
    end

    it("prints a banner, evaluates expressions and pretty-prints the results", function()
        local r = repl("1 + 2\n{1, 'a', {x = true}}\n'q\\n'\n1, nil, 2\n")
        assert.matches("^landscape %d+%.%d+%.%d+ %(Lua 5%.4%.%d+%)", r.out)
        assert.truthy(r.out:find("\n> 3\n", 1, true))
        assert.truthy(r.out:find('{1, "a", {x = true}}', 1, true))
        assert.truthy(r.out:find('"q\\n"', 1, true))
        assert.truthy(r.out:find("1\tnil\t2", 1, true))
    end)

    it("reads continuation lines for incomplete chunks", function()
        local r = repl("x = 1 +\n2\nx * 10\nfor i = 1, 3 do\nio.write(i)\nend\n")
        assert.truthy(r.out:find("> >> > 30\n", 1, true))
        assert.truthy(r.out:find("> >> >> 123", 1, true))
        assert.are.equal("", r.err)
    end)

    it("shows errors with a traceback and goes on", function()
        local r = repl("error('oops')\n6 * 7\nlocal = 1\n")
        assert.truthy(r.err:find("stdin:1: oops\nstack traceback:", 1, true))
        assert.truthy(r.err:find("<name> expected near '='", 1, true))
        assert.truthy(r.out:find("> 42\n", 1, true))
        assert.are.equal(0, r.code)
    end)

    it("reports an unfinished chunk at end of input", function()
        local r = repl("for i = 1, 2 do\n")
        assert.truthy(r.err:find("'end' expected near <eof>", 1, true))
    end)

    it("enters the REPL after the script with -i; the script's globals are visible", function()
        local s = script("answer = 41 + 1")
        local r = run("-i " .. q(s), "answer\n", "LANDSCAPE_HISTORY=")
        assert.truthy(r.out:find("> 42\n", 1, true))
    end)

    it("honours _PROMPT and _PROMPT2", function()
        local r = run("-e " .. q("_PROMPT='L> ' _PROMPT2='L>> '") .. " -i", "if true then\nend\n",
                      "LANDSCAPE_HISTORY=")
        assert.truthy(r.out:find("L> L>> L> ", 1, true))
    end)
end)

-- A tmux session running `landscape` in a pseudo-terminal: type text, press keys, read the screen.
local function has_tmux() return os.execute("command -v tmux >/dev/null 2>&1") == true end

local Term = {}
Term.__index = Term

local function sleep(s) os.execute("sleep " .. s) end

function Term.start(env, args)
    local t = setmetatable({ sock = "ls-cli-spec-" .. tostring(math.random(1 << 30)) }, Term)
    local cmd = string.format("env %s %s %s; echo EXIT=$?; sleep 60", env or "", q(BIN), args or "")
    t:tmux("new-session -d -s main -x 100 -y 40 " .. q(cmd))
    return t
end

function Term:tmux(rest)
    return os.execute(string.format("tmux -L %s %s >/dev/null 2>&1", self.sock, rest))
end

function Term:type(text) self:tmux("send-keys -t main -l " .. q(text)) end

function Term:keys(...)
    for _, k in ipairs({ ... }) do self:tmux("send-keys -t main " .. k) end
end

function Term:screen()
    local p = io.popen(string.format("tmux -L %s capture-pane -p -t main 2>/dev/null", self.sock))
    local s = p:read("a")
    p:close()
    return (s:gsub("\n+$", ""))
end

-- Polls the screen until pred(screen) holds (3 s at most); returns the last screen and whether it
-- held.
function Term:wait(pred)
    local s
    for _ = 1, 60 do
        s = self:screen()
        if pred(s) then return s, true end
        sleep(0.05)
    end
    return s, false
end

function Term:wait_for(text)
    return self:wait(function(s) return s:find(text, 1, true) ~= nil end)
end

-- The last screen line (where the prompt and the line being edited are).
function Term:last_line() return self:screen():match("[^\n]*$") end

function Term:kill() self:tmux("kill-server") end

describe("landscape REPL in a terminal (tmux)", function()
    local term, hist
    before_each(function()
        if not has_tmux() then return end
        hist = tmpname()
        os.remove(hist)
        term = Term.start("LANDSCAPE_HISTORY=" .. q(hist))
        local _, ok = term:wait(function(s) return s:find("\n> ?$") ~= nil end)
        assert.is_true(ok, "no prompt on the screen")
    end)
    after_each(function()
        if term then term:kill() end
        term = nil
    end)

    local function tmux_it(name, f)
        it(name, function()
            if not has_tmux() then return pending("tmux is not installed") end
            f()
        end)
    end

    tmux_it("evaluates a line and prints the result", function()
        term:type("6 * 7")
        term:keys("Enter")
        local s, ok = term:wait_for("> 6 * 7\n42\n>")
        assert.is_true(ok, s)
    end)

    tmux_it("completes a unique field with Tab", function()
        term:type("string.forma")
        term:keys("Tab")
        local s, ok = term:wait(function() return term:last_line() == "> string.format" end)
        assert.is_true(ok, s)
        term:type('("%d", 5)')
        term:keys("Enter")
        s, ok = term:wait_for('\n"5"\n')
        assert.is_true(ok, s)
    end)

    tmux_it("completes userdata methods through the metatable", function()
        term:type("io.stdout:wri")
        term:keys("Tab")
        local s, ok = term:wait(function() return term:last_line() == "> io.stdout:write" end)
        assert.is_true(ok, s)
    end)

    tmux_it("completes methods of landscape tensors", function()
        term:type('ls = require "landscape"; x = ls.zeros(2, 3)')
        term:keys("Enter")
        term:wait_for("\n> ")
        term:type("x:nume")
        term:keys("Tab")
        local s, ok = term:wait(function() return term:last_line() == "> x:numel" end)
        assert.is_true(ok, s)
        term:type("()")
        term:keys("Enter")
        s, ok = term:wait_for("> x:numel()\n6\n")
        assert.is_true(ok, s)
    end)

    tmux_it("lists several candidates in columns and redraws the line", function()
        term:type("io.std")
        term:keys("Tab")
        local s, ok = term:wait(function(sc)
            return sc:find("\nstderr +stdin +stdout\n> io.std$")
        end)
        assert.is_true(ok, s)
    end)

    tmux_it("prompts >> for continuation lines", function()
        term:type("for i = 1, 3 do")
        term:keys("Enter")
        local s, ok = term:wait(function() return term:last_line() == ">>" end)
        assert.is_true(ok, s)
        term:type("io.write(i)")
        term:keys("Enter")
        term:type("end")
        term:keys("Enter")
        s, ok = term:wait_for(">> end\n123>")   -- output without a newline: the prompt follows it
        assert.is_true(ok, s)
    end)

    tmux_it("edits the line: Ctrl-A/E, arrows, backspace, Ctrl-W, Ctrl-U, Ctrl-K", function()
        term:type("1234")
        term:keys("Left", "Left", "BSpace")   -- 134
        term:keys("C-e")
        term:type(" + 1000 junk")
        term:keys("C-w", "BSpace")            -- 134 + 1000
        term:keys("C-a")
        term:type("2 * ")                     -- 2 * 134 + 1000
        term:keys("Enter")
        local s, ok = term:wait_for("> 2 * 134 + 1000\n1268\n")
        assert.is_true(ok, s)
        term:type("garbage")
        term:keys("C-u")
        term:type("1 + 2345")
        term:keys("Left", "Left", "Left", "C-k", "Enter") -- 1 + 2
        s, ok = term:wait_for("> 1 + 2\n3\n")
        assert.is_true(ok, s)
    end)

    tmux_it("Ctrl-C abandons the line, Ctrl-D on an empty line exits", function()
        term:type("this is not lua")
        term:keys("C-c")
        local s, ok = term:wait_for("> this is not lua^C\n>")
        assert.is_true(ok, s)
        term:type("1 + 1")
        term:keys("Enter")
        s, ok = term:wait_for("> 1 + 1\n2\n")
        assert.is_true(ok, s)
        assert.falsy(s:find("syntax error", 1, true))
        term:keys("C-d")
        s, ok = term:wait_for("EXIT=0")
        assert.is_true(ok, s)
    end)

    tmux_it("keeps history across sessions in LANDSCAPE_HISTORY", function()
        term:type("history_marker = 17")
        term:keys("Enter")
        term:wait_for("> history_marker = 17\n>")
        term:keys("C-d")
        term:wait_for("EXIT=0")
        term:kill()
        assert.are.equal("history_marker = 17\n", read_file(hist))

        term = Term.start("LANDSCAPE_HISTORY=" .. q(hist))
        term:wait(function(s) return s:find("\n> ?$") ~= nil end)
        term:keys("Up")
        local s, ok = term:wait(function() return term:last_line() == "> history_marker = 17" end)
        assert.is_true(ok, s)
        term:keys("Enter")
        term:type("history_marker + 1")
        term:keys("Enter")
        s, ok = term:wait_for("\n18\n")
        assert.is_true(ok, s)
        term:keys("Up", "Up", "Down")
        s, ok = term:wait(function() return term:last_line() == "> history_marker + 1" end)
        assert.is_true(ok, s)
    end)
end)

describe("landscape.repl", function()
    local repl = require "landscape.repl"

    describe("pretty", function()
        it("quotes strings so that they read back, on one line", function()
            local s = "a\r\n\t\\13\0001\"é"
            local q = repl.quote(s)
            assert.falsy(q:find("\n", 1, true))
            assert.are.equal(s, load("return " .. q)())
            assert.are.equal('"x"', repl.pretty("x"))
        end)

        it("shows scalars as tostring does", function()
            assert.are.equal("1", repl.pretty(1))
            assert.are.equal("1.5", repl.pretty(1.5))
            assert.are.equal("nil", repl.pretty(nil))
            assert.are.equal("true", repl.pretty(true))
        end)

        it("shows the array part first, then sorted keys, quoting non-identifier keys", function()
            local t = { 1, 2, "three", a = { b = false }, ["not id"] = 2, [10] = "ten" }
            t["end"] = 0
            assert.are.equal('{1, 2, "three", [10] = "ten", a = {b = false}, ["end"] = 0, ' ..
                             '["not id"] = 2}', repl.pretty(t))
        end)

        it("is safe with cycles and limits depth", function()
            local t = { name = "root" }
            t.self = t
            t.child = { up = t }
            assert.are.equal('{child = {up = <cycle>}, name = "root", self = <cycle>}',
                             repl.pretty(t))
            local deep = { a = { b = { c = { d = 1 } } } }
            assert.are.equal("{a = {b = {c = {...}}}}", repl.pretty(deep))
            assert.are.equal("{a = {...}}", repl.pretty(deep, { depth = 1 }))
            assert.are.equal("{a = {b = {c = {d = 1}}}}", repl.pretty(deep, { depth = 10 }))
            local shared = { 1 }
            assert.are.equal("{{1}, {1}}", repl.pretty({ shared, shared }))
        end)

        it("limits the number of entries", function()
            local t = {}
            for i = 1, 10 do t[i] = i end
            assert.are.equal("{1, 2, 3, ... (7 more)}", repl.pretty(t, { items = 3 }))
        end)

        it("breaks wide tables over lines within the width", function()
            local t = {}
            for i = 1, 100 do t[i] = i * 1000 end
            local s = repl.pretty(t, { width = 40 })
            assert.are.equal("{", s:match("^[^\n]*"))
            assert.are.equal("}", s:match("[^\n]*$"))
            for line in s:gmatch("[^\n]+") do assert.is_true(#line <= 40, line) end
            assert.are.same(t, load("return " .. s)())
        end)

        it("uses __tostring for userdata and objects, and survives a failing one", function()
            local obj = setmetatable({}, { __tostring = function() return "<Obj>" end })
            assert.are.equal("{<Obj>}", repl.pretty({ obj }))
            assert.truthy(repl.pretty(io.stdout):find("^file %("))
            local bad = setmetatable({}, { __tostring = function() error("nope") end })
            assert.truthy(repl.pretty(bad):find("__tostring failed", 1, true))
        end)

        it("shows results separated by tabs, or newlines when one spans lines", function()
            assert.are.equal('1\tnil\t"x"', repl.show(1, nil, "x"))
            assert.are.equal("", repl.show())
            local big = {}
            for i = 1, 40 do big[i] = i end
            local s = repl.show(1, big)
            assert.are.equal("1\n{", s:sub(1, 3))
        end)
    end)

    describe("complete", function()
        local env = {
            ls = { randn = print, rand = print, range = print, nn = { Linear = print },
                   _private = 1 },
            value = 1, values = 2,
        }
        local function cands(text, e) return select(2, repl.complete(text, e or env)) end

        it("completes globals and keywords", function()
            assert.are.same({ "value", "values" }, cands("val"))
            assert.are.same({ "while" }, cands("whi"))
            local start, list = repl.complete("x = va", env)
            assert.are.equal(5, start)
            assert.are.same({ "value", "values" }, list)
        end)

        it("completes fields along a path", function()
            assert.are.same({ "ls.rand", "ls.randn", "ls.range" }, cands("ls.ra"))
            assert.are.same({ "ls.nn.Linear" }, cands("ls.nn.L"))
            assert.are.same({ "ls.nn", "ls.rand", "ls.randn", "ls.range" }, cands("ls."))
            assert.are.same({ "ls._private" }, cands("ls._"))
        end)

        it("completes methods through metatables, callable fields only after ':'", function()
            local methods = { sum = print, sub = print, size = 3 }
            local u = setmetatable({}, { __index = methods })
            assert.are.same({ "u:sub", "u:sum" }, cands("u:s", { u = u }))
            assert.are.same({ "u.size", "u.sub", "u.sum" }, cands("u.s", { u = u }))
            assert.are.same({ "f:write" }, cands("f:wri", { f = io.stdout }))
            assert.are.same({ "s:upper" }, cands("s:up", { s = "text" }))
        end)

        it("uses a metatable's methods table and __names when __index is a function", function()
            local called = false
            local mt = {
                __index = function() called = true end,
                methods = { numel = print, norm = print },
                __names = { "lazy_module" },
            }
            local x = setmetatable({}, mt)
            assert.are.same({ "x:norm", "x:numel" }, cands("x:n", { x = x }))
            assert.are.same({ "x.lazy_module" }, cands("x.la", { x = x }))
            assert.is_false(called)
        end)

        it("completes the methods of landscape tensors", function()
            local ls = require "landscape"
            local x = ls.zeros(2, 2)
            assert.are.same({ "x:numel" }, cands("x:nume", { x = x }))
        end)

        it("offers nothing inside strings and comments, or after non-names", function()
            assert.are.same({}, cands('x = "ls.ra'))
            assert.are.same({}, cands("-- ls.ra"))
            assert.are.same({}, cands("x = [[ ls.ra"))
            assert.are.same({ "ls.rand", "ls.randn", "ls.range" }, cands('x = "a" .. ls.ra'))
            assert.are.same({}, cands("t[1].ra"))
            assert.are.same({}, cands("3.1"))
            assert.are.same({}, cands("nothere.x"))
            assert.are.same({}, cands("ls:nn.x"))
            assert.are.same({}, cands(""))
        end)
    end)

    describe("complete_line", function()
        local env = { alpha = 1, alphabet = 2, beta = 3 }

        it("replaces the word with a unique candidate", function()
            assert.are.same({ 1, "beta" }, { repl.complete_line("be", 80, env) })
        end)

        it("extends to the common prefix", function()
            assert.are.same({ 3, "alpha" }, { repl.complete_line("x(alp", 80, env) })
        end)

        it("lists the candidates' last names when the prefix is already complete", function()
            local start, repl_text, listing = repl.complete_line("alpha", 80, env)
            assert.are.equal(1, start)
            assert.is_nil(repl_text)
            assert.are.equal("alpha     alphabet\n", listing)
        end)

        it("returns nothing without candidates", function()
            assert.is_nil(repl.complete_line("zzz", 80, env))
        end)
    end)

    describe("columns and common_prefix", function()
        it("lays items out down then across within the width", function()
            local items = { "a", "bb", "ccc", "d", "e" }
            assert.are.equal("a    d\nbb   e\nccc\n", repl.columns(items, 10))
            assert.are.equal("a    bb   ccc  d    e\n", repl.columns(items, 80))
            assert.are.equal("", repl.columns({}, 80))
        end)

        it("finds the longest common prefix", function()
            assert.are.equal("ra", repl.common_prefix({ "rand", "range", "ra" }))
            assert.are.equal("", repl.common_prefix({}))
            assert.are.equal("x", repl.common_prefix({ "x" }))
        end)
    end)

    it("sets no globals", function()
        local before = {}
        for k in pairs(_G) do before[k] = true end
        package.loaded["landscape.repl"] = nil
        local m = require "landscape.repl"
        assert.are.equal("table", type(m))
        for k in pairs(_G) do assert.is_true(before[k] ~= nil, "new global " .. tostring(k)) end
    end)
end)
