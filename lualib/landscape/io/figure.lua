--- landscape.io.figure: the one figure style of ls.plot and the gnuplot plumbing under it (the
-- sizes, fonts, line colours, colour maps and number formats every figure shares; writing the data
-- and the editable script; running gnuplot). Internal to landscape.io.plot; docs/plotting.md
-- describes the style.
--
-- A figure is written as STEM.dat (the data, one block per series), STEM.gp (a gnuplot script
-- that reads it and draws every requested format; edit it and run `gnuplot STEM.gp` to redraw)
-- and the figures STEM.png / STEM.pdf / STEM.svg.
local util = require "landscape.util"
local fs = require "landscape.io.fs"
local fail = util.fail

local M = {}

-- Paper sizes in inches (width, height): "column" fits one column of a two-column paper (3.25 to
-- 3.5 in wide), "page" the full text width (6.75 to 7 in); "square" is a column-wide map.
M.SIZES = {column = {3.4, 2.5}, page = {7.0, 2.8}, square = {3.4, 3.0}, slide = {6.4, 4.2}}

-- Line colours: Okabe and Ito's palette, distinguishable with the common colour-vision
-- deficiencies (black and the light yellow last).
M.COLOURS = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
             "#F0E442"}

-- Colour maps for heat maps: evenly spaced samples of perceptually uniform maps (viridis, magma,
-- inferno and cividis of matplotlib; gnuplot interpolates between them in RGB), plain grey, and a
-- diverging blue-white-red map (ColorBrewer's RdBu) for signed quantities.
M.COLORMAPS = {
    viridis = {"#440154", "#482878", "#3E4A89", "#31688E", "#26828E", "#1F9E89", "#35B779",
               "#6DCD59", "#B4DE2C", "#FDE725"},
    magma = {"#000004", "#180F3E", "#451077", "#721F81", "#9F2F7F", "#CD4071", "#F1605D",
             "#FD9567", "#FEC98D", "#FCFDBF"},
    inferno = {"#000004", "#1B0C42", "#4B0C6B", "#781C6D", "#A52C60", "#CF4446", "#ED6925",
               "#FB9A06", "#F7D03C", "#FCFFA4"},
    cividis = {"#00204D", "#00336F", "#39486B", "#575C6D", "#707173", "#8A8779", "#A69D75",
               "#C4B56C", "#E4CF5B", "#FFEA46"},
    gray = {"#000000", "#FFFFFF"},
    rdbu = {"#2166AC", "#4393C3", "#92C5DE", "#D1E5F0", "#F7F7F7", "#FDDBC7", "#F4A582",
            "#D6604D", "#B2182B"},
}

M.FORMATS = {png = true, pdf = true, svg = true}
local FONT = "DejaVu Sans"

-- The options every plot takes, with the style's defaults (the header comment of
-- landscape.io.plot documents them).
M.COMMON = {out = true, formats = true, size = true, dpi = true, font_size = true, title = true,
            xlabel = true, ylabel = true, run = true, xrange = true, yrange = true,
            logx = true, logy = true, key = true}

--- gnuplot's quoting: a single-quoted string (single quotes doubled).
function M.q(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

--- A label for gnuplot's enhanced text: underscores are literal (column names), everything else
-- (superscripts with ^{...}, Greek through Unicode) passes.
function M.label(s) return (tostring(s):gsub("_", "\\_")) end

--- A number for a data file ("NaN" for NaN, which gnuplot skips).
function M.fmt(v)
    if v ~= v then return "NaN" end
    if v == math.huge then return "Inf" end
    if v == -math.huge then return "-Inf" end
    return string.format("%.17g", v)
end

--- The numeric value of row[key], else an error naming the column.
function M.num(row, key, who)
    local v = row[key]
    if type(v) ~= "number" then
        fail("%s: column '%s' must be numeric in every row, got %s", who, tostring(key),
             tostring(v))
    end
    return v
end

--- rows must be a non-empty list of tables.
function M.check_rows(rows, who)
    if type(rows) ~= "table" or #rows == 0 then fail("%s: rows must be a non-empty list", who) end
    for i, r in ipairs(rows) do
        if type(r) ~= "table" then fail("%s: row %d is a %s, not a table", who, i, type(r)) end
    end
end

-- The size option -> width, height in inches.
local function size_in(size, default, who)
    size = size or default
    if type(size) == "string" then
        local s = M.SIZES[size]
        if not s then
            error(util.unknown(who, "size", size, M.SIZES) ..
                  " (or {width, height} in inches)", 0)
        end
        return s[1], s[2]
    end
    if type(size) ~= "table" or type(size[1]) ~= "number" or type(size[2]) ~= "number" or
       not (size[1] > 0 and size[2] > 0 and size[1] < 100 and size[2] < 100) then
        fail("%s: option 'size' must be 'column', 'page', 'square', 'slide' or {width, height} " ..
             "in inches, got %s", who, tostring(size))
    end
    return size[1], size[2]
end

--- The figure's outputs: {stem, gp, dat, files = {{fmt, path}, ...}} from opts.out (required; its
-- extension names the format unless opts.formats lists them).
function M.outputs(opts, who)
    if type(opts.out) ~= "string" or opts.out == "" then
        fail("%s: option 'out' (the figure's path) is required", who)
    end
    local stem, ext = opts.out:match("^(.-)%.(%w+)$")
    if not (ext and M.FORMATS[ext:lower()]) then
        if opts.formats == nil then
            fail("%s: output '%s' must end in .png, .svg or .pdf (or give formats = {...})", who,
                 opts.out)
        end
        stem, ext = opts.out, nil
    end
    local fmts = opts.formats or {ext:lower()}
    if type(fmts) == "string" then fmts = {fmts} end
    if type(fmts) ~= "table" or #fmts == 0 then
        fail("%s: option 'formats' must be a list such as {'png', 'pdf'}", who)
    end
    local files = {}
    for _, f in ipairs(fmts) do
        if not M.FORMATS[f] then error(util.unknown(who, "format", f, M.FORMATS), 0) end
        files[#files + 1] = {f, stem .. "." .. f}
    end
    return {stem = stem, gp = stem .. ".gp", dat = stem .. ".dat", files = files}
end

--- The terminal lines for each output: vector formats at the paper size with a font_size-point
-- font, PNG at dpi pixels per inch with fonts and lines scaled to match.
function M.terminals(o, opts, default_size, who)
    local w, h = size_in(opts.size, default_size, who)
    local dpi = opts.dpi or 200
    if type(dpi) ~= "number" or dpi < 36 or dpi > 1200 then
        fail("%s: option 'dpi' must be a number in [36, 1200], got %s", who, tostring(dpi))
    end
    local fs = opts.font_size or 8
    if type(fs) ~= "number" or fs <= 0 then
        fail("%s: option 'font_size' must be a positive number, got %s", who, tostring(fs))
    end
    local out = {}
    for _, f in ipairs(o.files) do
        local fmt, path = f[1], f[2]
        local term
        if fmt == "png" then
            local s = dpi / 96   -- pngcairo draws a point as 1/96 in
            term = string.format("pngcairo size %d,%d font '%s,%g' fontscale %.4g linewidth " ..
                                 "%.4g enhanced", math.floor(w * dpi + 0.5),
                                 math.floor(h * dpi + 0.5), FONT, fs, s, s)
        elseif fmt == "pdf" then
            term = string.format("pdfcairo size %gin,%gin font '%s,%g' enhanced", w, h, FONT, fs)
        else
            term = string.format("svg size %d,%d font '%s,%g' enhanced background '#ffffff'",
                                 math.floor(w * 72 + 0.5), math.floor(h * 72 + 0.5), FONT, fs)
        end
        out[#out + 1] = {fmt, path, term}
    end
    return out
end

--- The palette command of a colour map name.
function M.palette(name, who)
    name = name or "viridis"
    local stops = M.COLORMAPS[name]
    if not stops then error(util.unknown(who, "colormap", name, M.COLORMAPS), 0) end
    local parts = {}
    for i, c in ipairs(stops) do parts[i] = string.format("%d '%s'", i - 1, c) end
    return "set palette defined (" .. table.concat(parts, ", ") .. ")"
end

--- The style lines every figure starts with: line styles 1..8 in the colours above (lines
-- without markers; `with linespoints` adds a filled circle), light grid, outward tics, axes
-- on the left and bottom only, a compact key, numbers as powers of ten.
function M.style()
    local L = {"set encoding utf8"}
    for i, c in ipairs(M.COLOURS) do
        L[#L + 1] = string.format("set linetype %d lc rgb '%s' lw 1.2 pt 7 ps 0.45 dt solid", i, c)
    end
    for _, l in ipairs({
        "set border 3 lw 0.8", "set tics out nomirror scale 0.6",
        "set grid lc rgb '#dddddd' lw 0.6 dt solid", "set key inside top right samplen 2 " ..
        "spacing 1.05 reverse Left noopaque", "set format x '%h'; set format y '%h'",
        "set format y2 '%h'; set format cb '%h'", "set style fill transparent solid 0.3 border",
        "set datafile missing 'NaN'",
    }) do L[#L + 1] = l end
    return L
end

--- Axis settings shared by the plots: labels, ranges, log scales (ticks as 10^n).
function M.axes(L, opts, xdefault, ydefault, who)
    L[#L + 1] = "set xlabel " .. M.q(M.label(opts.xlabel or xdefault))
    if ydefault or opts.ylabel then
        L[#L + 1] = "set ylabel " .. M.q(M.label(opts.ylabel or ydefault))
    end
    for _, ax in ipairs({"x", "y"}) do
        if opts["log" .. ax] then
            L[#L + 1] = string.format("set logscale %s; set format %s '10^{%%L}'", ax, ax)
        end
        local r = opts[ax .. "range"]
        if r ~= nil then L[#L + 1] = M.range(ax, r, who) end
    end
    if opts.key ~= nil then
        if opts.key == false then
            L[#L + 1] = "unset key"
        elseif type(opts.key) == "string" then
            L[#L + 1] = "set key " .. opts.key
        else
            fail("%s: option 'key' must be false or a gnuplot key position ('top left', " ..
                 "'bottom right', 'outside', ...), got %s", who, tostring(opts.key))
        end
    end
end

--- "set Xrange [lo:hi]" from {lo, hi} (either may be nil: automatic).
function M.range(ax, r, who)
    if type(r) ~= "table" or (r[1] ~= nil and type(r[1]) ~= "number") or
       (r[2] ~= nil and type(r[2]) ~= "number") then
        fail("%s: option '%srange' must be {lo, hi} (numbers or nil), got %s", who, ax,
             tostring(r))
    end
    local function b(v) return v == nil and "*" or M.fmt(v) end
    return string.format("set %srange [%s:%s]", ax, b(r[1]), b(r[2]))
end

-- the data and script files are written whole (ls.io.write_file: a temporary file beside the
-- target, flushed and renamed into place)
local function write(path, text, who)
    local ok, err = pcall(require("landscape").io.write_file, path, text)
    if not ok then fail("%s: %s", who, tostring(err)) end
end

local function have_gnuplot()
    local ok = os.execute("command -v gnuplot >/dev/null 2>&1")
    return ok == true or ok == 0
end

--- Writes the data and the script, and runs gnuplot unless opts.run == false.
-- `pre` are the commands before the outputs (style, axes, tables); `body` the drawing commands,
-- run once per output format. Returns the first figure's path, the script's path and the list of
-- every figure written.
function M.render(o, opts, dat, pre, body, default_size, who)
    local terms = M.terminals(o, opts, default_size, who)
    write(o.dat, dat, who)
    local names = {}
    for i, t in ipairs(terms) do names[i] = t[1] end
    local L = {"# landscape figure (ls.plot): edit and redraw with `gnuplot " .. o.gp .. "`.",
               "# Data: " .. o.dat .. ". Formats drawn: set `formats` below (png pdf svg).",
               "reset", "formats = " .. M.q(table.concat(names, " "))}
    for _, l in ipairs(M.style()) do L[#L + 1] = l end
    if opts.title then L[#L + 1] = "set title " .. M.q(M.label(opts.title)) end
    for _, l in ipairs(pre) do L[#L + 1] = l end
    L[#L + 1] = "do for [fmt in formats] {"
    for _, t in ipairs(terms) do
        L[#L + 1] = string.format("    if (fmt eq '%s') { set terminal %s; set output %s }", t[1],
                                  t[3], M.q(t[2]))
    end
    for _, l in ipairs(body) do L[#L + 1] = "    " .. l end
    L[#L + 1] = "    unset output"
    L[#L + 1] = "}"
    write(o.gp, table.concat(L, "\n") .. "\n", who)
    local files = {}
    for i, t in ipairs(terms) do files[i] = t[2] end
    if opts.run == false then return files[1], o.gp, files end
    if not have_gnuplot() then
        fail("%s: gnuplot is not installed (not on PATH); install it (apt-get install " ..
             "gnuplot-nox) and run 'gnuplot %s', which was written with its data", who, o.gp)
    end
    -- LANDSCAPE_GNUPLOT overrides the command (the sanitizer test build runs it outside LD_PRELOAD)
    local cmd = os.getenv("LANDSCAPE_GNUPLOT") or "gnuplot"
    local log = o.gp .. ".log"
    local ok = os.execute(cmd .. " " .. M.q(o.gp) .. " 2>" .. M.q(log))
    local msg = fs.read(log) or ""
    os.remove(log)
    if not (ok == true or ok == 0) then fail("%s: gnuplot failed on %s: %s", who, o.gp, msg) end
    return files[1], o.gp, files
end

return M
