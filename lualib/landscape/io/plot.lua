--- landscape.io.plot: paper-ready figures from tidy rows through gnuplot, reached as ls.plot.
--
--   ls.plot.lines(rows, {x = "alpha", y = "loss", y2 = "accuracy", out = "out/line.pdf"})
--   ls.plot.lines(rows, {x = "step", y = {"loss_range", "beta"}, group = "bn", panels = true,
--                        out = "out/bn.png"})
--   ls.plot.histogram(rows, {x = "margin", group = "class", out = "out/margins.png"})
--   ls.plot.scatter(rows, {x = "predicted", y = "gap", fit = true, diagonal = true,
--                          out = "out/gap.png", formats = {"png", "pdf"}})
--   ls.plot.contour(grid_rows, {x = "alpha", y = "beta", z = "loss", out = "out/plane.png"})
--   ls.plot.heatmap(grid_rows, {out = "out/plane_heat.svg", colormap = "magma"})
--   ls.plot.surface(grid_rows, {out = "out/plane_3d.pdf"})
--
-- Every figure shares one style (landscape.io.figure, docs/plotting.md): a perceptually uniform
-- colour map (viridis unless `colormap` says otherwise), colour-blind-safe line colours, lines
-- without markers once a line has more than 30 points, numbers as powers of ten (log axes tick
-- at 10^n), keys inside the axes, and sizes for papers. Each call writes the data (STEM.dat) and
-- an editable gnuplot script (STEM.gp, STEM = `out` without its extension) beside the figure and
-- runs `gnuplot STEM.gp`; rerunning the script redraws every format. Returns the figure's path,
-- the script's path and the list of every file drawn.
--
-- Options every plot takes (all optional but `out`):
--   out        (required) the figure's path; its extension (.png, .pdf or .svg) is the format
--   formats    nil       a list such as {"png", "pdf"}: draw each (out's extension is then
--                        replaced; `out` may have none)
--   size       "column"  "column" (3.4 x 2.5 in, one column of a two-column paper), "page"
--                        (7.0 x 2.8 in, the full text width), "square" (3.4 x 3.0 in, the default
--                        of maps), "slide" (6.4 x 4.2 in), or {width, height} in inches
--   dpi        200       pixels per inch of PNG output (fonts and lines scale with it)
--   font_size  8         points, at the paper size
--   title, xlabel, ylabel  labels (default: the column names); gnuplot's enhanced text (^{2},
--                        Unicode Greek) works, underscores are literal
--   xrange, yrange  nil  {lo, hi}, either nil for automatic
--   logx, logy false     log scales (ticks at powers of ten)
--   key        nil       false hides the key; a gnuplot position ("top left", "bottom right",
--                        "outside") moves it
--   run        true      false writes the data and the script only
-- Without gnuplot on the PATH the call raises an error naming the script it wrote.
local util = require "landscape.util"
local fig = require "landscape.io.figure"

local fail, public, check_options = util.fail, util.public, util.check_options
local q, label, fmt, num = fig.q, fig.label, fig.fmt, fig.num

local M = {}

-- Lines get markers up to this many points per line.
local MARKER_POINTS = 30

local function opts_with(extra)
    local o = {}
    for k in pairs(fig.COMMON) do o[k] = true end
    for k in pairs(extra) do o[k] = true end
    return o
end

local function list_of(v, who, what)
    if v == nil then return {} end
    if type(v) == "string" then return {v} end
    if type(v) ~= "table" or #v == 0 then
        fail("%s: option '%s' must be a column name or a list of them", who, what)
    end
    for _, c in ipairs(v) do
        if type(c) ~= "string" then fail("%s: option '%s' must list column names", who, what) end
    end
    return v
end

-- Rows split by the group column (in order of first appearance), each group sorted by `sortkey`.
local function by_group(rows, group, sortkey, who)
    local groups, order = {}, {}
    for _, r in ipairs(rows) do
        local g = group and tostring(r[group]) or ""
        if group and r[group] == nil then fail("%s: group column '%s' is missing in a row", who, group) end
        if not groups[g] then groups[g] = {}; order[#order + 1] = g end
        groups[g][#groups[g] + 1] = r
    end
    -- groups in natural order: numbers ascending when every value is a number, else as strings
    local numeric = true
    for _, g in ipairs(order) do numeric = numeric and tonumber(g) ~= nil end
    table.sort(order, function(a, b)
        if numeric then return tonumber(a) < tonumber(b) end
        return a < b
    end)
    if sortkey then
        for _, g in ipairs(order) do
            table.sort(groups[g], function(a, b)
                return num(a, sortkey, who) < num(b, sortkey, who)
            end)
        end
    end
    return groups, order
end

local LINES = opts_with({x = true, y = true, y2 = true, group = true, panels = true, yerr = true,
                         markers = true, y2label = true, y2range = true, logy2 = true})

--- ls.plot.lines(rows, opts) -> out, gp, files: curves of columns against x.
-- opts (besides the common ones above):
--   x          (required) the x column
--   y          (required) a column or a list: one line each, on the left axis
--   y2         nil       a column or a list on a right axis of its own (twin axes: the x axis is
--                        shared; y2 lines are dashed and the y2 label names them)
--   group      nil       a column: one line per distinct value (colour by group; with several
--                        columns the dash pattern tells the columns apart)
--   panels     false     with several y columns: one panel each, stacked, sharing the x axis
--                        (aligned margins, x tick labels on the bottom panel only)
--   yerr       nil       a column (or a list parallel to y) of half-widths: a shaded band
--                        y +- yerr around each line
--   markers    "auto"    true / false, or "auto": markers when no line has more than 30 points
--   y2label, y2range, logy2  as ylabel, yrange, logy for the right axis
-- e.g. ls.plot.lines(rows, {x = "epoch", y = "loss", y2 = "accuracy", out = "out/curve.pdf"})
local function lines(rows, opts)
    local who = "plot.lines"
    opts = check_options(opts or {}, LINES, who)
    fig.check_rows(rows, who)
    if type(opts.x) ~= "string" or opts.y == nil then
        fail("%s: options 'x' and 'y' are required", who)
    end
    local ys, y2s = list_of(opts.y, who, "y"), list_of(opts.y2, who, "y2")
    local errs = list_of(opts.yerr, who, "yerr")
    if #errs > 0 and #errs ~= #ys then
        fail("%s: option 'yerr' must list one column per y column (%d), got %d", who, #ys, #errs)
    end
    if opts.panels and #y2s > 0 then fail("%s: options 'panels' and 'y2' do not combine", who) end
    local o = fig.outputs(opts, who)
    local cols = {}
    for _, c in ipairs(ys) do cols[#cols + 1] = c end
    for _, c in ipairs(y2s) do cols[#cols + 1] = c end
    for _, c in ipairs(errs) do cols[#cols + 1] = c end
    local groups, order = by_group(rows, opts.group, opts.x, who)
    local dat, longest = {}, 0
    for _, g in ipairs(order) do
        dat[#dat + 1] = "# " .. (opts.group and (opts.group .. " = " .. g) or "all rows")
        dat[#dat + 1] = "# " .. opts.x .. " " .. table.concat(cols, " ")
        longest = math.max(longest, #groups[g])
        for _, r in ipairs(groups[g]) do
            local v = {fmt(num(r, opts.x, who))}
            for _, c in ipairs(cols) do v[#v + 1] = fmt(num(r, c, who)) end
            dat[#dat + 1] = table.concat(v, " ")
        end
        dat[#dat + 1] = "\n"
    end
    local markers = opts.markers
    if markers == nil or markers == "auto" then markers = longest <= MARKER_POINTS end
    local with = markers and "linespoints" or "lines"
    -- twin axes leave no free corner: the key goes above (before fig.axes, so a key option wins)
    local pre = {#y2s > 0 and "set key above horizontal" or nil}
    fig.axes(pre, opts, opts.x, #ys == 1 and not opts.panels and ys[1] or nil, who)
    if #y2s > 0 then
        pre[#pre + 1] = "set ytics nomirror; set y2tics nomirror out scale 0.6; set border 11 lw 0.8"
        pre[#pre + 1] = "set y2label " .. q(label(opts.y2label or table.concat(y2s, ", ")))
        if opts.logy2 then pre[#pre + 1] = "set logscale y2; set format y2 '10^{%L}'" end
        if opts.y2range then pre[#pre + 1] = fig.range("y2", opts.y2range, who) end
        if not opts.ylabel and #ys > 1 then
            pre[#pre + 1] = "set ylabel " .. q(label(table.concat(ys, ", ")))
        end
    elseif #ys > 1 and not opts.panels and not opts.ylabel then
        pre[#pre + 1] = "set ylabel " .. q(label(table.concat(ys, ", ")))
    end
    if opts.group then pre[#pre + 1] = "set key title " .. q(label(opts.group)) end
    -- the plot clauses of the columns in `which` (indices into cols), for every group
    local function clauses(which, first_file)
        local parts, several = {}, #which > 1
        for b, g in ipairs(order) do
            for _, k in ipairs(which) do
                local c, axis2 = cols[k], k > #ys
                local lt = opts.group and b or k
                local dt = axis2 and 2 or 1
                if opts.group and not axis2 and #which > 1 then dt = k end
                local name = opts.group and (several and (c .. ", " .. g) or g) or c
                local src = (#parts == 0 and first_file) and q(o.dat) or "''"
                if errs[k] then
                    parts[#parts + 1] = string.format("%s index %d using 1:($%d-$%d):($%d+$%d) " ..
                        "with filledcurves lt %d fs transparent solid 0.2 noborder notitle", src,
                        b - 1, k + 1, #ys + #y2s + k + 1, k + 1, #ys + #y2s + k + 1, lt)
                    src = "''"
                end
                local title = (#order == 1 and #which == 1 and #y2s == 0) and "notitle"
                              or "title " .. q(label(name))   -- one line: the y label names it
                parts[#parts + 1] = string.format("%s index %d using 1:%d%s with %s lt %d dt %d %s",
                    src, b - 1, k + 1, axis2 and " axes x1y2" or "", with, lt, dt, title)
            end
        end
        return "plot " .. table.concat(parts, ", ")
    end
    local body = {}
    if opts.panels and #ys > 1 then
        -- margins fixed in screen units, so every panel's axes line up
        body[#body + 1] = string.format("set multiplot layout %d,1 margins 0.19,0.97,%.3f,%.3f " ..
                                        "spacing 0,0.05", #ys, 0.45 / (#ys + 1.5),
                                        opts.title and 0.9 or 0.97)
        for k, c in ipairs(ys) do
            body[#body + 1] = "set ylabel " .. q(label(c))
            if k < #ys then
                body[#body + 1] = "set format x ''; unset xlabel"
            else
                body[#body + 1] = string.format("set format x '%s'; set xlabel %s",
                                                opts.logx and "10^{%L}" or "%h",
                                                q(label(opts.xlabel or opts.x)))
            end
            body[#body + 1] = clauses({k}, true)
            if k == 1 then body[#body + 1] = "unset title; unset key" end
        end
        body[#body + 1] = "unset multiplot"
        body[#body + 1] = "set key"
        body[#body + 1] = "set format x '" .. (opts.logx and "10^{%L}" or "%h") .. "'"
        if opts.title then body[#body + 1] = "set title " .. q(label(opts.title)) end
    else
        local which = {}
        for k = 1, #ys + #y2s do which[k] = k end
        body[#body + 1] = clauses(which, true)
    end
    local size = opts.panels and #ys > 1 and {3.4, 0.35 + 1.25 * #ys} or "column"
    return fig.render(o, opts, table.concat(dat, "\n") .. "\n", pre, body, size, who)
end
M.lines = public(lines)

-- The values of a histogram's input: a 1-D tensor, a list of numbers, or rows with column x.
local function sample(rows, opts, who)
    local groups, order = {}, {}
    if type(rows) == "userdata" and rows.ndim then
        if rows.ndim ~= 1 then fail("%s: expected a 1-D tensor, got %d dims", who, rows.ndim) end
        return {[""] = rows:double():totable()}, {""}
    end
    if type(rows) ~= "table" or #rows == 0 then
        fail("%s: expected rows, a list of numbers or a 1-D tensor", who)
    end
    if type(rows[1]) == "number" then
        for i, v in ipairs(rows) do
            if type(v) ~= "number" then fail("%s: value %d is not a number", who, i) end
        end
        return {[""] = rows}, {""}
    end
    if type(opts.x) ~= "string" then fail("%s: option 'x' (the column) is required with rows", who) end
    local split, names = by_group(rows, opts.group, nil, who)
    for _, g in ipairs(names) do
        local v = {}
        for i, r in ipairs(split[g]) do v[i] = num(r, opts.x, who) end
        groups[g] = v
        order[#order + 1] = g
    end
    return groups, order
end

-- Bin edges: a list given, or `bins` equal bins over `range` (default: the finite values'
-- extent). bins = "auto" is NumPy's rule: the smaller width of Sturges' and Freedman-Diaconis'.
local function edges_of(all, opts, who)
    local b = opts.bins == nil and "auto" or opts.bins
    if type(b) == "table" then
        if #b < 2 then fail("%s: option 'bins' as edges needs at least 2 values", who) end
        for i = 2, #b do
            if not (b[i] > b[i - 1]) then fail("%s: bin edges must increase", who) end
        end
        return b
    end
    local lo, hi = math.huge, -math.huge
    local finite = {}
    for _, v in ipairs(all) do
        if util.is_finite(v) then
            finite[#finite + 1] = v
            lo, hi = math.min(lo, v), math.max(hi, v)
        end
    end
    if opts.range then
        if type(opts.range) ~= "table" or type(opts.range[1]) ~= "number" or
           type(opts.range[2]) ~= "number" or not (opts.range[2] > opts.range[1]) then
            fail("%s: option 'range' must be {lo, hi} with lo < hi", who)
        end
        lo, hi = opts.range[1], opts.range[2]
    end
    if #finite == 0 then fail("%s: no finite values to bin", who) end
    if hi == lo then lo, hi = lo - 0.5, hi + 0.5 end
    local n
    if b == "auto" then
        local stats = require "landscape.stats"
        local sturges = (hi - lo) / (math.log(#finite, 2) + 1)
        local fd = 2 * stats.iqr(finite) * (#finite) ^ (-1 / 3)
        local w = (fd > 0) and math.min(fd, sturges) or sturges
        n = math.max(1, math.min(1000, math.ceil((hi - lo) / w)))
    else
        n = util.posint(b, who, "option 'bins'")
    end
    local e = {}
    for i = 0, n do e[i + 1] = lo + (hi - lo) * i / n end
    return e
end

local HIST = opts_with({x = true, group = true, bins = true, range = true, density = true})

--- ls.plot.histogram(values, opts) -> out, gp, files: the distribution of one column.
-- values: rows (with opts.x naming the column), a list of numbers, or a 1-D tensor.
-- opts (besides the common ones above):
--   x          the column (required with rows)
--   group      nil       a column: one translucent histogram per value, on common bins
--   bins       "auto"    a count, a list of edges, or "auto" (NumPy's rule)
--   range      nil       {lo, hi} the bins cover (values outside are left out); default: the data
--   density    false     scale each histogram to area 1 (comparable across group sizes)
-- NaN and infinite values are not counted.
-- e.g. ls.plot.histogram(rows, {x = "margin", group = "class", out = "out/margins.png"})
local function histogram(values, opts)
    local who = "plot.histogram"
    opts = check_options(opts or {}, HIST, who)
    local groups, order = sample(values, opts, who)
    local all = {}
    for _, g in ipairs(order) do for _, v in ipairs(groups[g]) do all[#all + 1] = v end end
    local e = edges_of(all, opts, who)
    local o = fig.outputs(opts, who)
    local dat, nb = {}, #e - 1
    for _, g in ipairs(order) do
        local counts, total = {}, 0
        for i = 1, nb do counts[i] = 0 end
        for _, v in ipairs(groups[g]) do
            if util.is_finite(v) and v >= e[1] and v <= e[#e] then
                local lo, hi = 1, nb   -- the bin with e[i] <= v < e[i + 1] (the last is closed)
                while lo < hi do
                    local mid = (lo + hi + 1) // 2
                    if v >= e[mid] then lo = mid else hi = mid - 1 end
                end
                counts[lo] = counts[lo] + 1
                total = total + 1
            end
        end
        dat[#dat + 1] = "# " .. (opts.group and (opts.group .. " = " .. g) or "all values") ..
                        "\n# left right " .. (opts.density and "density" or "count")
        for i = 1, nb do
            local c = counts[i]
            if opts.density then c = total > 0 and c / (total * (e[i + 1] - e[i])) or 0 end
            dat[#dat + 1] = fmt(e[i]) .. " " .. fmt(e[i + 1]) .. " " .. fmt(c)
        end
        dat[#dat + 1] = "\n"
    end
    local pre = {"set style fill transparent solid 0.35 border", "set yrange [0:*]",
                 "set grid noxtics"}
    fig.axes(pre, opts, opts.x or "value", opts.density and "density" or "count", who)
    if opts.group then pre[#pre + 1] = "set key title " .. q(label(opts.group)) end
    local parts = {}
    for b, g in ipairs(order) do
        parts[#parts + 1] = string.format("%s index %d using (($1+$2)/2):3:($2-$1) with boxes " ..
                                          "lt %d title %s", b == 1 and q(o.dat) or "''", b - 1, b,
                                          opts.group and q(label(g)) or "notitle")
    end
    if not opts.group then parts[1] = parts[1]:gsub("title notitle", "notitle") end
    return fig.render(o, opts, table.concat(dat, "\n") .. "\n", pre,
                      {"plot " .. table.concat(parts, ", ")}, "column", who)
end
M.histogram = public(histogram)

local SCATTER = opts_with({x = true, y = true, group = true, fit = true, diagonal = true})

--- ls.plot.scatter(rows, opts) -> out, gp, files, fit: points of y against x.
-- opts (besides the common ones above):
--   x, y       (required) the columns
--   group      nil       a column: one colour per value
--   fit        false     true: the least-squares line through all points (ls.stats.ols), its
--                        equation and R² in the key; the fit is the fourth result
--   diagonal   false     draw y = x and give both axes the same range (predicted against measured)
-- The key goes under the axes (points fill the corners); key = ... moves it.
-- e.g. ls.plot.scatter(rows, {x = "predicted", y = "gap", fit = true, diagonal = true,
--          out = "out/gap.png"})
local function scatter(rows, opts)
    local who = "plot.scatter"
    opts = check_options(opts or {}, SCATTER, who)
    fig.check_rows(rows, who)
    if type(opts.x) ~= "string" or type(opts.y) ~= "string" then
        fail("%s: options 'x' and 'y' are required", who)
    end
    local o = fig.outputs(opts, who)
    local groups, order = by_group(rows, opts.group, nil, who)
    local dat, xs, ys = {}, {}, {}
    local lo, hi, xlo, xhi = math.huge, -math.huge, math.huge, -math.huge
    for _, g in ipairs(order) do
        dat[#dat + 1] = "# " .. (opts.group and (opts.group .. " = " .. g) or "all rows") ..
                        "\n# " .. opts.x .. " " .. opts.y
        for _, r in ipairs(groups[g]) do
            local x, y = num(r, opts.x, who), num(r, opts.y, who)
            dat[#dat + 1] = fmt(x) .. " " .. fmt(y)
            if util.is_finite(x) and util.is_finite(y) then
                xs[#xs + 1], ys[#ys + 1] = x, y
                lo, hi = math.min(lo, x, y), math.max(hi, x, y)
                xlo, xhi = math.min(xlo, x), math.max(xhi, x)
            end
        end
        dat[#dat + 1] = "\n"
    end
    local parts = {}
    for b, g in ipairs(order) do
        parts[#parts + 1] = string.format("%s index %d using 1:2 with points lt %d pt 7 ps 0.5 " ..
                                          "%s", b == 1 and q(o.dat) or "''", b - 1, b,
                                          opts.group and ("title " .. q(label(opts.group .. " = " ..
                                                                               g))) or "notitle")
    end
    local nblock, model = #order, nil
    if opts.fit then
        if #xs < 3 then fail("%s: a fit needs at least 3 finite points, got %d", who, #xs) end
        local X = {}
        for i, x in ipairs(xs) do X[i] = {x} end
        model = require("landscape.stats").ols(X, ys)
        local a, b = model.intercept, model.coef[1]
        dat[#dat + 1] = string.format("# least-squares line\n%s %s\n%s %s\n\n", fmt(xlo),
                                      fmt(a + b * xlo), fmt(xhi), fmt(a + b * xhi))
        parts[#parts + 1] = string.format("'' index %d using 1:2 with lines lt 7 lw 1.2 title %s",
            nblock, q(string.format("y = %.3g %s %.3g x, R² = %.3f", a, b < 0 and "−" or "+",
                                    math.abs(b), model.r2)))
        nblock = nblock + 1
    end
    local pre = {}
    if opts.diagonal then
        local pad = (hi > lo) and 0.05 * (hi - lo) or 0.5
        dat[#dat + 1] = string.format("# y = x\n%s %s\n%s %s\n\n", fmt(lo - pad), fmt(lo - pad),
                                      fmt(hi + pad), fmt(hi + pad))
        parts[#parts + 1] = string.format("'' index %d using 1:2 with lines lc rgb '#888888' " ..
                                          "dt 2 lw 1 title 'y = x'", nblock)
        if not opts.xrange and not opts.yrange and not opts.logx and not opts.logy then
            pre[#pre + 1] = fig.range("x", {lo - pad, hi + pad}, who)
            pre[#pre + 1] = fig.range("y", {lo - pad, hi + pad}, who)
            pre[#pre + 1] = "set size square"
        end
    end
    pre[#pre + 1] = "set key below maxrows 2"    -- under the axes: a key inside covers points
    fig.axes(pre, opts, opts.x, opts.y, who)    -- after it: a key option moves the key
    -- square axes (diagonal) plus the key under them
    local out, gp, files = fig.render(o, opts, table.concat(dat, "\n") .. "\n", pre,
                                      {"plot " .. table.concat(parts, ", ")},
                                      opts.diagonal and {3.4, 3.8} or {3.4, 3.0}, who)
    return out, gp, files, model
end
M.scatter = public(scatter)

-- Grid data for splot: one block per y value (x ascending), blank lines between blocks.
local function grid_data(rows, o, who)
    local seenx, nx, ys, byy = {}, 0, {}, {}
    for _, r in ipairs(rows) do
        local x, y = num(r, o.x, who), num(r, o.y, who)
        num(r, o.z, who)
        if not seenx[x] then seenx[x] = true; nx = nx + 1 end
        if not byy[y] then byy[y] = {}; ys[#ys + 1] = y end
        byy[y][#byy[y] + 1] = r
    end
    table.sort(ys)
    local out = {"# " .. o.x .. " " .. o.y .. " " .. o.z}
    for _, y in ipairs(ys) do
        local rs = byy[y]
        if #rs ~= nx then
            fail("%s: rows do not form a rectangular grid (%d values of %s at %s = %s, %d " ..
                 "distinct overall)", who, #rs, o.x, o.y, fmt(y), nx)
        end
        table.sort(rs, function(a, b) return a[o.x] < b[o.x] end)
        for _, r in ipairs(rs) do
            local z = r[o.z]
            if o.logz then z = math.log(z, 10) end
            out[#out + 1] = fmt(r[o.x]) .. " " .. fmt(r[o.y]) .. " " .. fmt(z)
        end
        out[#out + 1] = ""
    end
    return table.concat(out, "\n") .. "\n", nx, #ys
end

local GRID = opts_with({x = true, y = true, z = true, levels = true, labels = true, logz = true,
                        zmax = true, zrange = true, colormap = true, zlabel = true})

local function grid_plot(kind, rows, opts)
    local who = "plot." .. kind
    opts = check_options(opts or {}, GRID, who)
    fig.check_rows(rows, who)
    local o = fig.outputs(opts, who)
    local c = {x = opts.x or "alpha", y = opts.y or "beta", z = opts.z or "loss", logz = opts.logz}
    local text, nx, ny = grid_data(rows, c, who)
    if nx < 2 or ny < 2 then fail("%s: a grid needs at least 2 x 2 points, got %d x %d", who, nx, ny) end
    local zl = opts.zlabel or (c.logz and ("log_{10} " .. c.z) or c.z)
    local pre = {fig.palette(opts.colormap, who), "set cblabel " .. q(label(zl)),
                 "set xrange [*:*] noextend; set yrange [*:*] noextend", "unset grid"}
    fig.axes(pre, opts, c.x, c.y, who)
    local zr = opts.zrange or (opts.zmax and {nil, opts.zmax})
    if zr then
        pre[#pre + 1] = fig.range("z", zr, who)
        pre[#pre + 1] = fig.range("cb", zr, who)
    end
    local levels = opts.levels or 10
    if type(levels) == "table" then
        local v = {}
        for i, l in ipairs(levels) do
            if type(l) ~= "number" then fail("%s: option 'levels' must list numbers", who) end
            v[i] = fmt(l)
        end
        levels = "discrete " .. table.concat(v, ", ")
    else
        levels = "auto " .. util.posint(levels, who, "option 'levels'")
    end
    local src = q(o.dat)
    local body
    if kind == "surface" then
        pre[#pre + 1] = "set zlabel " .. q(label(zl)) .. " rotate parallel"
        pre[#pre + 1] = "set pm3d depthorder interpolate 0,0 noborder; set style fill solid 1"
        pre[#pre + 1] = "set view 60, 30; set ticslevel 0; set border 4095 lw 0.6; set cblabel ''"
        body = {"splot " .. src .. " using 1:2:3 with pm3d notitle"}
    else
        -- a smooth (interpolated) map, contour lines computed by gnuplot, each level labelled
        pre[#pre + 1] = "set view map; set pm3d map interpolate 0,0; set style fill solid 1 noborder"
        pre[#pre + 1] = "set size square; set key noautotitle"
        local parts = {src .. " using 1:2:3 with pm3d nocontour"}
        if kind == "contour" then
            pre[#pre + 1] = "set contour base; set cntrparam bspline; set cntrparam levels " ..
                            levels
            pre[#pre + 1] = "set cntrlabel onecolor format '%.3g' font ',6' start 12 interval 150"
            pre[#pre + 1] = "set style textbox opaque noborder margins 0.5,0.5"
            parts[#parts + 1] = "'' using 1:2:3 with lines nosurface lc rgb '#ffffff' lw 0.7"
            if opts.labels ~= false then
                parts[#parts + 1] = "'' using 1:2:3 with labels boxed nosurface"
            end
        end
        body = {"splot " .. table.concat(parts, ", ")}
    end
    return fig.render(o, opts, text, pre, body, "square", who)
end

--- ls.plot.contour(rows, opts) -> out, gp, files: a smooth colour map with labelled contour lines.
--- ls.plot.heatmap(rows, opts) -> out, gp, files: a smooth colour map.
--- ls.plot.surface(rows, opts) -> out, gp, files: a 3-D surface coloured by height.
-- opts (besides the common ones above): x = "alpha", y = "beta", z = "loss" (the columns),
--   colormap = "viridis" (also "magma", "inferno", "cividis", "gray", "rdbu" for signed values),
--   levels = 10 (contour: how many, or a list of the values), labels = true (contour: label the
--   levels), logz = false (plot log10 z), zrange = {lo, hi} (clip the colour and z range; zmax = v
--   is {nil, v}), zlabel (default: z's column name).
-- The rows must form a rectangular grid (any nx x ny; every x at every y). The map is
-- interpolated between the grid points (pm3d), so a 21 x 21 slice draws smooth.
-- e.g. ls.plot.contour(ls.landscape.plane(model, train), {out = "out/plane.png"})
--      ls.plot.heatmap(rows, {out = "out/heat.png", colormap = "magma"})
--      ls.plot.surface(rows, {out = "out/surface.pdf"})
M.contour = public(function(rows, opts) return grid_plot("contour", rows, opts) end)
M.heatmap = public(function(rows, opts) return grid_plot("heatmap", rows, opts) end)
M.surface = public(function(rows, opts) return grid_plot("surface", rows, opts) end)

return M
