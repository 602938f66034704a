--- landscape.plot: figures from tidy rows through gnuplot, reached as ls.plot.
--
--   ls.plot.lines(rows, {x = "step", y = {"loss_range", "beta"}, group = "bn", out = "out/bn.png"})
--   ls.plot.contour(grid_rows, {x = "alpha", y = "beta", z = "loss", out = "out/plane.png"})
--   ls.plot.surface(grid_rows, {out = "out/plane_3d.pdf"})
--   ls.plot.heatmap(grid_rows, {out = "out/plane_heat.svg"})
--
-- Each call writes the data (STEM.dat) and the gnuplot script (STEM.gp; STEM is `out` without its
-- extension) next to the output and runs
-- `gnuplot OUT.gp`; the terminal follows the extension of `out`: .png (pngcairo), .svg, .pdf
-- (pdfcairo). With run = false only the .dat and .gp files are written. Returns the output path and
-- the script path. Without gnuplot on the PATH it raises an error naming the script it wrote.
local util = require "landscape.util"
local fail, public, check_options = util.fail, util.public, util.check_options

local M = {}



local function terminal(out, size, who)
    local ext = (out:match("%.([%w]+)$") or ""):lower()
    if ext == "png" then return string.format("pngcairo size %s enhanced", size or "800,600") end
    if ext == "svg" then return string.format("svg size %s enhanced", size or "800,600") end
    if ext == "pdf" then return string.format("pdfcairo size %s enhanced", size or "6in,4.5in") end
    fail("%s: output '%s' must end in .png, .svg or .pdf", who, out)
end

local function q(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end
local function label(s) return (tostring(s):gsub("_", "\\_")) end

local function have_gnuplot()
    local ok = os.execute("command -v gnuplot >/dev/null 2>&1")
    return ok == true or ok == 0
end

-- the data and script files are written whole (ls.io.write_file: a temporary file renamed into place)
local function write(path, text, who)
    local ok, err = pcall(require("landscape").io.write_file, path, text)
    if not ok then fail("%s: %s", who, tostring(err)) end
end

local function run(gp, out, who, do_run)
    if do_run == false then return out, gp end
    if not have_gnuplot() then
        fail("%s: gnuplot is not installed (not on PATH); install it (apt-get install gnuplot) and " ..
             "run 'gnuplot %s', which was written with its data", who, gp)
    end
    -- LANDSCAPE_GNUPLOT overrides the command (the sanitizer test build runs it outside LD_PRELOAD)
    local cmd = os.getenv("LANDSCAPE_GNUPLOT") or "gnuplot"
    local ok = os.execute(cmd .. " " .. q(gp) .. " 2>" .. q(gp .. ".log"))
    if not (ok == true or ok == 0) then
        local f = io.open(gp .. ".log")
        local msg = f and f:read("a") or ""
        if f then f:close() end
        fail("%s: gnuplot failed on %s: %s", who, gp, msg)
    end
    os.remove(gp .. ".log")
    return out, gp
end

local function num(row, key, who)
    local v = row[key]
    if type(v) ~= "number" then
        fail("%s: column '%s' must be numeric in every row, got %s", who, key, tostring(v))
    end
    return v
end

local function fmt(v)
    if v ~= v then return "NaN" end
    return string.format("%.17g", v)
end

local function header(o, tail)
    local lines = {"set terminal " .. o.term, "set output " .. q(o.out)}
    if o.title then lines[#lines + 1] = "set title " .. q(label(o.title)) end
    for _, l in ipairs(tail) do lines[#lines + 1] = l end
    return lines
end

--- ls.plot.lines(rows, opts) -> out, gp
-- opts: out (required), x (required), y = column or list of columns (one panel each, stacked),
--   group = nil (a column: one line per distinct value), title, xlabel, ylabel, logy = false,
--   size, run = true.
local function lines(rows, opts)
    local who = "plot.lines"
    opts = check_options(opts or {}, {out = true, x = true, y = true, group = true, title = true,
                                      xlabel = true, ylabel = true, logy = true, size = true,
                                      run = true}, who)
    if type(rows) ~= "table" or #rows == 0 then fail("%s: rows must be a non-empty list", who) end
    if type(opts.out) ~= "string" or type(opts.x) ~= "string" or opts.y == nil then
        fail("%s: options 'out', 'x' and 'y' are required", who)
    end
    local ys = type(opts.y) == "table" and opts.y or {opts.y}
    local term = terminal(opts.out, opts.size or (#ys > 1 and "800," .. 300 * #ys or nil), who)
    local groups, order = {}, {}
    for _, r in ipairs(rows) do
        local g = opts.group and tostring(r[opts.group]) or "all"
        if not groups[g] then groups[g] = {}; order[#order + 1] = g end
        groups[g][#groups[g] + 1] = r
    end
    -- one data block per group (separated by two blank lines: gnuplot's `index`)
    local dat, blocks = {}, {}
    for _, g in ipairs(order) do
        local rs = groups[g]
        table.sort(rs, function(a, b) return num(a, opts.x, who) < num(b, opts.x, who) end)
        dat[#dat + 1] = "# group " .. g .. "\n# " .. opts.x .. " " .. table.concat(ys, " ")
        for _, r in ipairs(rs) do
            local cols = {fmt(num(r, opts.x, who))}
            for _, y in ipairs(ys) do cols[#cols + 1] = fmt(num(r, y, who)) end
            dat[#dat + 1] = table.concat(cols, " ")
        end
        dat[#dat + 1] = "\n"
        blocks[#blocks + 1] = g
    end
    local stem = opts.out:gsub("%.%w+$", "")
    local datf, gp = stem .. ".dat", stem .. ".gp"
    write(datf, table.concat(dat, "\n") .. "\n", who)
    local L = header({term = term, out = opts.out, title = #ys == 1 and opts.title or nil}, {
        "set grid", "set key outside right top",
        "set xlabel " .. q(label(opts.xlabel or opts.x)),
    })
    if opts.logy then L[#L + 1] = "set logscale y" end
    if #ys > 1 then
        L[#L + 1] = string.format("set multiplot layout %d,1%s", #ys,
                                  opts.title and (" title " .. q(label(opts.title))) or "")
    end
    for k, y in ipairs(ys) do
        L[#L + 1] = "set ylabel " .. q(label(#ys == 1 and opts.ylabel or y))
        local parts = {}
        for b, g in ipairs(blocks) do
            parts[#parts + 1] = string.format("%s index %d using 1:%d with linespoints title %s",
                                              b == 1 and q(datf) or "''", b - 1, k + 1,
                                              q(opts.group and (label(opts.group) .. " = " ..
                                                                label(g)) or label(y)))
        end
        L[#L + 1] = "plot " .. table.concat(parts, ", ")
    end
    if #ys > 1 then L[#L + 1] = "unset multiplot" end
    write(gp, table.concat(L, "\n") .. "\n", who)
    return run(gp, opts.out, who, opts.run)
end
M.lines = public(lines)

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

local GRID_OPTS = {out = true, x = true, y = true, z = true, title = true, levels = true,
                   logz = true, size = true, run = true, zmax = true}

local function grid_plot(kind, rows, opts)
    local who = "plot." .. kind
    opts = check_options(opts or {}, GRID_OPTS, who)
    if type(rows) ~= "table" or #rows == 0 then fail("%s: rows must be a non-empty list", who) end
    if type(opts.out) ~= "string" then fail("%s: option 'out' is required", who) end
    local o = {x = opts.x or "alpha", y = opts.y or "beta", z = opts.z or "loss", logz = opts.logz}
    local term = terminal(opts.out, opts.size, who)
    local text, nx, ny = grid_data(rows, o, who)
    if nx < 2 or ny < 2 then fail("%s: a grid needs at least 2 x 2 points, got %d x %d", who, nx, ny) end
    local stem = opts.out:gsub("%.%w+$", "")
    local datf, gp = stem .. ".dat", stem .. ".gp"
    write(datf, text, who)
    local zl = o.logz and ("log10(" .. o.z .. ")") or o.z
    local L = header({term = term, out = opts.out, title = opts.title}, {
        "set xlabel " .. q(label(o.x)), "set ylabel " .. q(label(o.y)),
        "set cblabel " .. q(label(zl)), "set palette rgbformulae 33,13,10",
    })
    if opts.zmax then L[#L + 1] = string.format("set zrange [*:%s]; set cbrange [*:%s]",
                                                fmt(opts.zmax), fmt(opts.zmax)) end
    local levels = opts.levels or 20
    if kind == "contour" then
        -- filled map underneath, black contour lines on top, via a contour table
        local tbl = opts.out:gsub("%.%w+$", "") .. ".contour.dat"
        L[#L + 1] = "set contour base"
        L[#L + 1] = string.format("set cntrparam levels %d", levels)
        L[#L + 1] = "unset surface"
        L[#L + 1] = "set table " .. q(tbl)
        L[#L + 1] = "splot " .. q(datf) .. " using 1:2:3 with lines"
        L[#L + 1] = "unset table"
        L[#L + 1] = "unset contour"
        L[#L + 1] = "set view map"
        L[#L + 1] = "set xrange [*:*] noextend; set yrange [*:*] noextend"
        L[#L + 1] = "plot " .. q(datf) .. " using 1:2:3 with image notitle, " .. q(tbl) ..
                    " using 1:2 with lines lc rgb 'black' lw 1 notitle"
    elseif kind == "heatmap" then
        L[#L + 1] = "set view map"
        L[#L + 1] = "set xrange [*:*] noextend; set yrange [*:*] noextend"
        L[#L + 1] = "plot " .. q(datf) .. " using 1:2:3 with image notitle"
    else
        L[#L + 1] = "set zlabel " .. q(label(zl)) .. " rotate parallel"
        L[#L + 1] = "set pm3d"
        L[#L + 1] = "set hidden3d"
        L[#L + 1] = "set view 60, 30"
        L[#L + 1] = "splot " .. q(datf) .. " using 1:2:3 with pm3d notitle"
    end
    write(gp, table.concat(L, "\n") .. "\n", who)
    return run(gp, opts.out, who, opts.run)
end

--- ls.plot.contour(rows, opts) -> out, gp: a colour map with contour lines.
--- ls.plot.heatmap(rows, opts) -> out, gp: a colour map.
--- ls.plot.surface(rows, opts) -> out, gp: a 3-D pm3d surface.
-- opts: out (required), x = "alpha", y = "beta", z = "loss", levels = 20 (contour lines),
--   logz = false (plot log10 z), zmax (clip the colour and z range), title, size, run = true.
-- The rows must form a rectangular grid (any nx x ny; every x at every y).
M.contour = public(function(rows, opts) return grid_plot("contour", rows, opts) end)
M.heatmap = public(function(rows, opts) return grid_plot("heatmap", rows, opts) end)
M.surface = public(function(rows, opts) return grid_plot("surface", rows, opts) end)

return M
