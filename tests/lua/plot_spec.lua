-- ls.plot (lualib/landscape/io/plot.lua, style in io/figure.lua): every kind writes its data, an
-- editable script and each requested format; the style's choices are in the script; histogram
-- counts and bins against NumPy, the scatter fit against ls.stats.ols; bad options name the plot.
local ls = require "landscape"
local py = require "sklearn_oracle"
local su = require "spec_util"
local errmsg, has = su.errmsg, su.has

local gnuplot = os.execute("command -v gnuplot >/dev/null 2>&1") == true

local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function tmpdir()
    local d = os.tmpname()
    os.remove(d)
    assert(os.execute("mkdir -p " .. d))
    return d
end

local function grid()
    local rows = {}
    for j = 0, 6 do for i = 0, 8 do
        local a, b = -1 + i * 0.25, -1 + j * (2 / 6)
        rows[#rows + 1] = {alpha = a, beta = b, loss = math.log(1 + 3 * a * a + b * b + a * b)}
    end end
    return rows
end

local MAGIC = {png = "\137PNG", pdf = "%PDF", svg = "<?xml"}

describe("plot", function()
    local dir
    before_each(function() dir = tmpdir() end)
    after_each(function() os.execute("rm -rf " .. dir) end)

    it("contour: a smooth viridis map with labelled levels, script and data beside it", function()
        local out, gp, files = ls.plot.contour(grid(), {out = dir .. "/c.png", run = gnuplot})
        assert.equal(dir .. "/c.png", out)
        assert.equal(dir .. "/c.gp", gp)
        assert.same({dir .. "/c.png"}, files)
        local s = slurp(gp)
        has(s, "0 '#440154'")                         -- viridis
        has(s, "set pm3d map interpolate 0,0")        -- interpolated, not pixels
        has(s, "with labels boxed")                   -- labelled contour levels
        has(s, "set cntrparam levels auto 10")
        has(slurp(dir .. "/c.dat"), "# alpha beta loss")
        if gnuplot then assert.equal(MAGIC.png, slurp(out):sub(1, 4)) end
        s = slurp(select(2, ls.plot.contour(grid(), {out = dir .. "/m.png", run = false,
                                                     colormap = "magma", levels = {0.5, 1}})))
        has(s, "0 '#000004'")
        has(s, "set cntrparam levels discrete 0.5, 1")
        assert.is_nil(io.open(dir .. "/m.png"))       -- run = false: no figure
        has(errmsg(ls.plot.heatmap, grid(), {out = dir .. "/h.png", colormap = "virdis"}),
            "plot.heatmap: unknown colormap 'virdis' (did you mean 'viridis'?)")
        local ragged = grid()
        ragged[#ragged] = nil
        has(errmsg(ls.plot.heatmap, ragged, {out = dir .. "/h.png"}), "rectangular grid")
    end)

    it("draws every format asked for from one script; sizes are paper sizes", function()
        local rows = {}
        for i = 1, 5 do rows[i] = {x = i, y = i * i} end
        local out, gp, files = ls.plot.lines(rows, {x = "x", y = "y", out = dir .. "/f",
                                                    formats = {"png", "pdf", "svg"},
                                                    size = "page", run = gnuplot})
        assert.equal(dir .. "/f.png", out)
        assert.same({dir .. "/f.png", dir .. "/f.pdf", dir .. "/f.svg"}, files)
        local s = slurp(gp)
        has(s, "formats = 'png pdf svg'")
        has(s, "pdfcairo size 7in,2.8in")
        has(s, "pngcairo size 1400,560")              -- 200 dpi
        if gnuplot then
            for _, f in ipairs(files) do
                assert.equal(MAGIC[f:match("%a+$")], slurp(f):sub(1, #MAGIC[f:match("%a+$")]))
            end
        end
        has(errmsg(ls.plot.lines, rows, {x = "x", y = "y", out = dir .. "/f.gif"}),
            "must end in .png, .svg or .pdf")
        has(errmsg(ls.plot.lines, rows, {x = "x", y = "y", out = dir .. "/f.png", size = "colum"}),
            "plot.lines: unknown size 'colum' (did you mean 'column'?)")
        has(errmsg(ls.plot.lines, rows, {x = "x", y = "y", out = dir .. "/f", formats = {"jpg"}}),
            "plot.lines: unknown format 'jpg'")
        has(errmsg(ls.plot.lines, rows, {x = "x", y = "z", out = dir .. "/f.png"}),
            "plot.lines: column 'z' must be numeric in every row, got nil")
    end)

    it("lines: markers only on short lines, twin axes, aligned panels, bands, log ticks", function()
        local short, long = {}, {}
        for i = 1, 10 do short[i] = {x = i, y = i, acc = 1 / i, sd = 0.1} end
        for i = 1, 100 do long[i] = {x = i, y = i} end
        local s = slurp(select(2, ls.plot.lines(short, {x = "x", y = "y", out = dir .. "/a.png",
                                                        run = false})))
        has(s, "with linespoints")
        s = slurp(select(2, ls.plot.lines(long, {x = "x", y = "y", out = dir .. "/b.png",
                                                 logy = true, run = false})))
        assert.falsy(s:find("linespoints", 1, true))
        has(s, "set logscale y; set format y '10^{%L}'")
        has(s, "set format x '%h'")                   -- exponents as x10^n, not 1e-05
        s = slurp(select(2, ls.plot.lines(short, {x = "x", y = "y", y2 = "acc", yerr = "sd",
                                                  out = dir .. "/t.png", run = gnuplot})))
        has(s, "using 1:3 axes x1y2")
        has(s, "set y2label 'acc'")
        has(s, "with filledcurves")
        has(s, "using 1:($2-$4):($2+$4)")
        s = slurp(select(2, ls.plot.lines(short, {x = "x", y = {"y", "acc"}, panels = true,
                                                  out = dir .. "/p.png", run = gnuplot})))
        has(s, "set multiplot layout 2,1 margins 0.19,0.97")
        has(errmsg(ls.plot.lines, short, {x = "x", y = "y", y2 = "acc", panels = true,
                                          out = dir .. "/p.png"}), "'panels' and 'y2' do not combine")
        has(errmsg(ls.plot.lines, short, {x = "x", y = {"y", "acc"}, yerr = "sd",
                                          out = dir .. "/p.png"}), "one column per y column")
    end)

    it("histogram: counts on common bins per group, density, NumPy's automatic bins", function()
        local rows = {}
        for i, v in ipairs({0, 0.5, 1, 1.5, 2, 0 / 0}) do rows[i] = {m = v, g = "a"} end
        rows[#rows + 1] = {m = 2, g = "b"}
        local _, gp = ls.plot.histogram(rows, {x = "m", group = "g", bins = 2,
                                               out = dir .. "/h.png", run = gnuplot})
        local dat = slurp(dir .. "/h.dat")
        has(dat, "# g = a\n# left right count\n0 1 2\n1 2 3\n")   -- the last bin is closed
        has(dat, "# g = b\n# left right count\n0 1 0\n1 2 1\n")
        has(slurp(gp), "with boxes")
        ls.plot.histogram({0, 0.5, 1, 1.5, 2}, {bins = {0, 1, 2}, density = true,
                                                out = dir .. "/d.png", run = false})
        has(slurp(dir .. "/d.dat"), "0 1 0.40000000000000002\n1 2 0.59999999999999998\n")
        has(errmsg(ls.plot.histogram, {{m = 1}}, {out = dir .. "/e.png"}),
            "option 'x' (the column) is required with rows")
        has(errmsg(ls.plot.histogram, {1, 2}, {bins = {1, 1}, out = dir .. "/e.png"}),
            "bin edges must increase")
        if not py.available() then return pending(py.MISSING) end
        local x = ls.randn({500}, {seed = 3, dtype = "f64"})
        ls.plot.histogram(x, {out = dir .. "/n.png", run = false})
        local n = 0
        for line in io.lines(dir .. "/n.dat") do
            if line:match("^[-%d]") then n = n + 1 end
        end
        local out = py.lines(py.PRELUDE .. "x = np.array(" .. py.lit(x:totable()) .. ")\n" ..
                             "print(len(np.histogram_bin_edges(x, 'auto')) - 1)\n")
        assert.equal(tonumber(out[1]), n)
    end)

    it("scatter: the least-squares line and R² of ls.stats.ols, y = x on equal axes", function()
        local rows = {}
        local e = ls.randn({30}, {seed = 5, dtype = "f64"}):totable()
        for i = 1, 30 do rows[i] = {p = i / 30, gap = 0.8 * i / 30 + 0.1 + 0.05 * e[i]} end
        local _, gp, _, fit = ls.plot.scatter(rows, {x = "p", y = "gap", fit = true,
                                                     diagonal = true, out = dir .. "/s.png",
                                                     run = gnuplot})
        local X, y = {}, {}
        for i, r in ipairs(rows) do X[i], y[i] = {r.p}, r.gap end
        local ref = ls.stats.ols(X, y)
        assert.equal(ref.r2, fit.r2)
        local s = slurp(gp)
        has(s, string.format("R² = %.3f", ref.r2))
        has(s, "title 'y = x'")
        has(s, "set size square")
        local dat = slurp(dir .. "/s.dat")
        local x0, y0 = dat:match("# least%-squares line\n(%S+) (%S+)\n")
        assert.near(ref.intercept + ref.coef[1] * tonumber(x0), tonumber(y0), 1e-12)
        -- options given by the caller win over the plot's own defaults (the last setting counts)
        s = slurp(select(2, ls.plot.scatter(rows, {x = "p", y = "gap", key = "bottom right",
                                                   xlabel = "predicted gap", out = dir .. "/k.png",
                                                   run = false})))
        assert.equal("set key bottom right", s:match(".*(set key [^\n]*)"))
        assert.equal("set xlabel 'predicted gap'", s:match(".*(set xlabel [^\n]*)"))
        s = slurp(select(2, ls.plot.lines(rows, {x = "p", y = "gap", y2 = "p", key = "top left",
                                                 out = dir .. "/k2.png", run = false})))
        assert.equal("set key top left", s:match(".*(set key [^\n]*)"))
        has(errmsg(ls.plot.scatter, {rows[1], rows[2]}, {x = "p", y = "gap", fit = true,
                                                        out = dir .. "/s.png"}),
            "plot.scatter: a fit needs at least 3 finite points, got 2")
    end)
end)
