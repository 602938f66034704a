-- The data-driven bad-input spec of issue #13 (docs/hardening.md): tensors and their sizes, views,
-- autograd, files (corrupt, truncated, NUL bytes), nn state dicts, optimizers, writers (a full disk,
-- a file-size limit, refused arguments), extra arguments and NUL bytes in strings, and a few calls of
-- training, curvature and margins. errors_spec.lua covers the ops' shape and dim messages; this file
-- is about what used to crash, tear a file or truncate silently.
--
-- A case is {name, fn, expected substrings...}: fn must raise, and the message must hold every
-- substring (which name the function and what is wrong). A case built with `keeps` also names files
-- that must be byte for byte what they were before the call. A case built with `works` is an edge
-- input that is valid (an empty tensor, a trailing nil) and must succeed with the given check. All
-- cases run in one interpreter, so a crash fails the spec; the disk cases run child processes with a
-- file-size limit (RLIMIT_FSIZE) and, where the system allows a private mount, a full tmpfs.
local ls = require "landscape"
local fs = require "landscape.io.fs"

local files = require "spec_files"
local read_bytes, write_bytes = files.read_bytes, files.write_bytes

local dir = files.scratch_dir("ls_bad_input")
local function P(name) return dir .. "/" .. name end
local function st_image(header, data)   -- a safetensors file from its JSON header and data bytes
    return string.pack("<I8", #header) .. header .. (data or "")
end

local x = ls.randn({2, 3}, {seed = 1})
local x64 = ls.randn({2, 3}, {seed = 1, dtype = "f64"})
local function closed_tensor()
    local c = ls.zeros(2)
    do local _ <close> = c end
    return c
end
local function leaf(n) return ls.randn({n or 3}, {seed = 2}):requires_grad() end
local model = ls.nn.mlp{input = 4, hidden = {3}, classes = 2, seed = 1}
local data = ls.dataset(ls.randn({6, 4}, {seed = 3}), ls.tensor({1, 2, 1, 2, 1, 2}, {dtype = "i64"}))

-- files the cases read: good ones, and damaged ones made from them
local function setup_files()
    ls.io.write_idx(P("good.idx"), ls.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "u8"}))
    ls.io.write_idx(P("good.idx.gz"), ls.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "u8"}))
    local g = read_bytes(P("good.idx.gz"))
    write_bytes(P("crc.idx.gz"), g:sub(1, -9) .. string.char(g:byte(-8) ~ 0xFF) .. g:sub(-7))
    write_bytes(P("half.idx.gz"), g:sub(1, #g - 12))
    write_bytes(P("junk.idx.gz"), "\31\139\8\0\0\0\0\0\0\3" .. string.rep("\255", 12))
    local raw = read_bytes(P("good.idx"))
    write_bytes(P("short.idx"), raw:sub(1, 13))
    write_bytes(P("shortdims.idx"), raw:sub(1, 9))
    write_bytes(P("trailing.idx"), raw .. "x")
    write_bytes(P("magic.idx"), "\1\0\8\1\0\0\0\1\7")
    write_bytes(P("zerodim.idx"), "\0\0\8\3\0\0\0\0\255\255\255\255\255\255\255\255")
    write_bytes(P("dims9.idx"), "\0\0\8\9")
    write_bytes(P("huge.idx"), "\0\0\14\3" .. string.rep("\255", 12))
    write_bytes(P("empty"), "")
    ls.io.save_safetensors(P("good.safetensors"), {w = x}, {note = "ok"})
    write_bytes(P("nul_cell.csv"), "a,b\n1,0.5\0" .. "999\n")
    write_bytes(P("nul_head.csv"), "a\0x,b\n1,2\n")
    write_bytes(P("ragged.csv"), "a,b\n1\n")
    write_bytes(P("quote.csv"), "a,b\n1,\"x\n")
    write_bytes(P("dup.csv"), "a,a\n1,2\n")
    write_bytes(P("bare_quote.csv"), "a,b\n1,x\"y\n")
    ls.io.csv_write(P("keep.csv"), {"a", "b"}, {{a = 1, b = 3129.5}}, false)
    ls.io.write_idx(P("keep.idx"), x)
    ls.io.save_safetensors(P("keep.safetensors"), {w = x})
    model:save(P("model.safetensors"))
    ls.nn.mlp{input = 5, hidden = {3}, classes = 2}:save(P("model5.safetensors"))
end
setup_files()

local cases = {}
local function bad(name, fn, ...) cases[#cases + 1] = {name = name, fn = fn, expect = {...}} end
local function keeps(name, paths, fn, ...)
    cases[#cases + 1] = {name = name, fn = fn, expect = {...}, keeps = paths}
end
local function works(name, fn, check) cases[#cases + 1] = {name = name, fn = fn, check = check} end
local function st_bad(name, header, data, ...)
    local path = P("case" .. (#cases + 1) .. ".safetensors")
    write_bytes(path, st_image(header, data))
    bad("load_safetensors: " .. name, function() return ls.io.load_safetensors(path) end,
        "load_safetensors: " .. path .. ": ", ...)
end

---------------------------------------------------------------------------------------------------
-- tensors: one shape rule for every constructor (sizes >= 0, product with zeros as 1 <= 2^40)
---------------------------------------------------------------------------------------------------
bad("zeros: a zero dim does not unbound the others", function() return ls.zeros({0, 2 ^ 62, 4}) end,
    "zeros: shape [0x4611686018427387904x4] is too large")
bad("ones: the same as integers", function() return ls.ones(0, 2 ^ 50, 2 ^ 50) end,
    "ones: shape [0x1125899906842624x1125899906842624] is too large")
bad("zeros: negative size", function() return ls.zeros(-1) end, "zeros: negative size -1 in dimension 1")
bad("full: negative size", function() return ls.full({2, -3}, 1) end, "full: negative size -3 in dimension 2")
bad("zeros: out of memory names the call and the shape", function() return ls.zeros({1e12}) end,
    "zeros: out of memory for a f32 tensor of shape [1000000000000] (4000000000000 bytes)")
bad("ones: more than the machine holds, f64", function() return ls.ones({2 ^ 39}, {dtype = "f64"}) end,
    "ones: out of memory for a f64 tensor of shape [549755813888]")
bad("zeros: a non-integer size", function() return ls.zeros({2.5}) end, "zeros: shape entry 1 is not an integer")
bad("zeros: a string size", function() return ls.zeros({"a"}) end, "zeros: shape entry 1 is not an integer")
bad("zeros: 9 dims in a table", function() return ls.zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}) end,
    "zeros: 9 dimensions (at most 8)")
bad("ones: 9 dims as integers", function() return ls.ones(1, 1, 1, 1, 1, 1, 1, 1, 1) end,
    "ones: more than 8 dimensions")
bad("zeros: a shape then a number", function() return ls.zeros({2}, 3) end,
    "zeros: expected a shape (a table or integers) and an options table, got number at argument 2")
bad("tensor: ragged table", function() return ls.tensor({{1, 2}, {3}}) end,
    "tensor: ragged table: dimension 2 has length 1 here, 2 elsewhere")
bad("tensor: an empty row among full ones", function() return ls.tensor({{}, {1}}) end, "tensor: ragged table")
bad("tensor: nesting deeper than 8", function() return ls.tensor({{{{{{{{{1}}}}}}}}}) end,
    "tensor: nesting deeper than 8")
bad("tensor: a string element", function() return ls.tensor({1, "a"}) end,
    "tensor: element is a string, expected a number")
bad("tensor: a boolean", function() return ls.tensor(true) end, "tensor: expected a table, a number or a tensor")
bad("full: shape not a table", function() return ls.full(3, 1) end, "full: shape must be a table")
bad("eye: too large", function() return ls.eye(2 ^ 40, 2 ^ 40) end,
    "eye: shape [1099511627776x1099511627776] is too large")
bad("eye: negative", function() return ls.eye(-2) end, "eye: negative size -2")
bad("arange: too many elements", function() return ls.arange(0, 2 ^ 60) end,
    "arange: range of 1.15292e+18 elements is too large")
bad("arange: NaN stop", function() return ls.arange(0, 0 / 0) end, "arange: invalid range")
bad("arange: zero step", function() return ls.arange(0, 3, 0) end, "arange: invalid range")
bad("randn: negative size", function() return ls.randn({-1}) end, "randn: negative size -1")
bad("item: more than one element", function() return x:item() end,
    "item: tensor of shape [2x3] has 6 elements, expected 1")
bad("totable: too many elements for a Lua table", function() return ls.ones(1):expand(2 ^ 30):totable() end,
    "totable: a tensor of shape [1073741824] has 1073741824 elements")
bad("cast: unknown dtype", function() return x:cast("f16") end, "cast: unknown dtype 'f16'")
bad("zeros: unknown dtype", function() return ls.zeros(2, {dtype = "half"}) end, "zeros: unknown dtype 'half'")
bad("index: 0 (1-based)", function() return x[0] end, "index: index 0 out of range for dimension 1 of size 2")
bad("index: past the end", function() return x[3] end, "index: index 3 out of range for dimension 1 of size 2")
bad("index: -3 of 2", function() return x[-3] end, "index: index -3 out of range")
bad("index: a 0-d tensor", function() return ls.tensor(1)[1] end, "index: cannot index a 0-d tensor")
bad("index assignment: a string", function() x[1] = "a" end,
    "index assignment: the value must be a number or a tensor, got string")
bad("index assignment: a row that does not fit", function() x[1] = ls.ones(4) end,
    "copy: shapes [3] and [4] cannot be broadcast")
bad("setting an unknown field", function() x.foo = 1 end, "tensor: cannot set field 'foo'")
bad("#: a 0-d tensor", function() return #ls.tensor(1) end, "len: a 0-d tensor has no length")
bad("a closed tensor", function() return closed_tensor():sum() end, "tensor has been closed (using 'sum')")
bad("copy into a smaller tensor", function() return ls.zeros(2):copy(ls.zeros(3)) end,
    "copy: shapes [2] and [3] cannot be broadcast")
works("an empty tensor sums to 0", function() return ls.zeros(0, 3):sum():item() end,
      function(v) assert.are.equal(0, v) end)
works("softmax of an empty tensor (crashed: reshape recursion)", function() return ls.zeros(0, 3):softmax() end,
      function(t) assert.are.same({0, 3}, t:size()) end)
works("zeros with a zero dim and large ones within the bound", function() return ls.zeros(0, 2 ^ 20, 2 ^ 20) end,
      function(t) assert.are.equal(0, t:numel()) end)

---------------------------------------------------------------------------------------------------
-- views: overflow-checked sizes and offsets
---------------------------------------------------------------------------------------------------
works("reshape of an empty tensor (stack overflow before)", function() return ls.zeros(0, 3):reshape(3, 0) end,
      function(t) assert.are.same({3, 0}, t:size()) end)
works("reshape of an empty transposed tensor", function() return ls.zeros(0, 3):t():reshape(-1) end,
      function(t) assert.are.same({0}, t:size()) end)
bad("reshape: -1 with an empty tensor is ambiguous", function() return ls.zeros(0, 3):reshape(-1, 0) end,
    "reshape: cannot reshape [0x3] (0 elements) into [-1x0]")
bad("reshape: two -1", function() return x:reshape(-1, -1) end, "reshape: only one dimension can be -1, got [-1x-1]")
bad("reshape: -2", function() return x:reshape(-2, -3) end, "reshape: negative size -2 in dimension 1")
bad("reshape: a product that overflows", function() return ls.zeros(0):reshape(2 ^ 40, 2 ^ 40, 0) end,
    "reshape: shape [1099511627776x1099511627776x0] is too large")
bad("reshape: element count differs", function() return x:reshape(4, 2) end,
    "reshape: cannot reshape [2x3] (6 elements) into [4x2]")
bad("narrow: start + length overflows (read past the storage before)",
    function() return x:narrow(2, 2, math.maxinteger):sum() end,
    "narrow: start 2 and length 9223372036854775807 out of bounds for dimension 2 of size 3")
bad("narrow: a start past the end", function() return x:narrow(2, math.maxinteger, 1) end,
    "narrow: start 9223372036854775807 and length 1 out of bounds")
bad("narrow: negative length", function() return x:narrow(2, 1, -1) end, "narrow: start 1 and length -1 out of bounds")
bad("narrow: start 0", function() return x:narrow(2, 0, 1) end, "narrow: index 0 out of range (indices are 1-based)")
bad("narrow: a 0-d tensor", function() return ls.tensor(1):narrow(1, 1, 1) end, "narrow:")
works("narrow: an empty slice at the end", function() return x:narrow(2, 4, 0) end,
      function(t) assert.are.same({2, 0}, t:size()) end)
bad("select: index past the end", function() return x:select(1, 3) end,
    "select: index 3 out of range for dimension 1 of size 2")
bad("select: a huge index", function() return x:select(2, math.maxinteger) end, "select: index 9223372036854775807 out of range")
bad("expand: -5 (a use-after-free in the reduction before)", function() return ls.ones(1):expand(-5):sum() end,
    "expand: invalid size -5 for dimension 1")
bad("expand: -1 for a new dim", function() return ls.ones(3):expand(-1, 3) end,
    "expand: invalid size -1 for dimension 1 in [-1x3]")
bad("expand: numel that wraps to 0", function() return ls.ones(1, 1):expand(2 ^ 32, 2 ^ 32):sum() end,
    "expand: shape [4294967296x4294967296] is too large")
bad("expand: fewer dims", function() return x:expand(3) end, "expand: cannot expand [2x3] to [3] (1 dims given")
bad("expand: a non-singleton dim", function() return x:expand(4, 3) end,
    "expand: cannot expand [2x3] to [4x3] (dimension 1 has size 2, not 1)")
bad("expand: 9 dims", function() return x:expand(1, 1, 1, 1, 1, 1, 1, 2, 3) end, "expand:")
bad("permute: a repeated dim", function() return x:permute(1, 1) end, "permute: not a permutation of 2 dims for [2x3]")
bad("permute: too few dims", function() return x:permute(1) end, "permute: 1 dims given for a 2-d tensor [2x3]")
bad("t: a 3-d tensor", function() return ls.zeros(2, 2, 2):t() end, "t: expects a tensor with at most 2 dims, got [2x2x2]")
bad("transpose: one dim", function() return x:transpose(1) end, "transpose: expects two dims, got 1")
bad("squeeze: dim out of range", function() return x:squeeze(3) end, "squeeze: dimension 3 out of range for a 2-d tensor")
bad("unsqueeze: past 8 dims", function() return ls.zeros(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end,
    "unsqueeze: tensor already has 8 dims")
bad("a dot for a colon: x.reshape(2, 3)", function() return x.reshape(2, 3) end,
    "reshape: argument 1 must be a tensor, got number (a method call needs a colon: x:reshape(...))")
bad("a dot for a colon: x.sum()", function() return x.sum() end,
    "sum: argument 1 must be a tensor, got no value (a method call needs a colon")
bad("view of a closed tensor", function() return closed_tensor():reshape(2) end, "tensor has been closed")
bad("contiguous of an expanded view too large to copy", function()
    return ls.ones(1):expand(2 ^ 39):contiguous()
end, "contiguous: out of memory for a f32 tensor of shape [549755813888]")

---------------------------------------------------------------------------------------------------
-- autograd
---------------------------------------------------------------------------------------------------
works("dropping a graph of a million ops (a stack overflow before)", function()
    local y = leaf(1)
    for _ = 1, 1000000 do y = y + 1 end
    y = nil
    collectgarbage()
    return true
end, function(v) assert.is_true(v) end)
bad("backward twice without retain_graph", function()
    local w = leaf(); local l = (w * w):sum(); l:backward(); l:backward()
end, "backward: the graph through 'sum' was already freed by an earlier backward; pass retain_graph = true")
bad("backward of a non-scalar", function() local w = leaf(); (w * w):backward() end,
    "backward: output 1 has shape [3]; gradients can only be implicitly created for scalar outputs")
bad("backward of something that needs no grad", function() ls.ones(3):sum():backward() end,
    "backward: output 1 does not require grad")
bad("backward: a wrong-shaped gradient", function() local w = leaf(); (w * 2):backward(ls.ones(4)) end,
    "backward:", "[4]", "[3]")
bad("grad: an input not in the graph", function() return ls.grad((leaf() * 2):sum(), {leaf()}) end,
    "grad: input 1 (shape [3]) is not part of the graph of the outputs; pass allow_unused = true")
bad("grad: grad_outputs count", function()
    local w = leaf(); return ls.grad({w * w}, {w}, {grad_outputs = {ls.ones(3), ls.ones(3)}})
end, "grad: 2 grad_outputs for 1 outputs")
bad("grad: grad_outputs shape", function()
    local w = leaf(); return ls.grad({w * w}, {w}, {grad_outputs = {ls.ones(4)}})
end, "grad: grad_outputs[1] has shape [4] f32 but output 1 has shape [3] f32")
bad("grad: inputs a string", function() return ls.grad(x, "a") end,
    "grad: inputs must be a tensor or a list of tensors, got string")
bad("grad: a list with a hole", function() return ls.grad(x, {x, 3}) end, "grad: inputs[2] is not a tensor")
bad("requires_grad: an integer tensor", function() return ls.tensor({1}, {dtype = "i64"}):requires_grad() end,
    "requires_grad: only float tensors can require gradients, got i64")
bad("requires_grad(false) on a result of an op", function() return (leaf() * 2):requires_grad(false) end,
    "requires_grad: [3] is the result of an op; use detach()")
bad("fill: in place on a tensor that requires grad", function() return leaf():fill(1) end,
    "fill: in-place change of a tensor that requires grad (shape [3]); use detach() or ls.no_grad")
bad("zero: in place on a leaf", function() return leaf():zero() end, "zero: in-place change of a tensor that requires grad")
bad("index assignment on a leaf", function() local w = leaf(); w[1] = 0 end,
    "index assignment: in-place change of a tensor that requires grad")
bad("x.grad: wrong shape", function() local w = leaf(); w.grad = ls.zeros(4) end,
    "grad: assigning a [4] f32 gradient to a [3] f32 tensor")
bad("x.grad: wrong dtype", function() local w = leaf(); w.grad = ls.zeros(3, {dtype = "f64"}) end,
    "grad: assigning a [3] f64 gradient to a [3] f32 tensor")
bad("no_grad: not a function", function() return ls.no_grad(3) end, "no_grad", "function expected")
bad("detach: a closed tensor", function() return ls.detach(closed_tensor()) end, "detach", "tensor has been closed")
bad("hvp: a direction of the wrong shape (blamed mul before)", function()
    local w = leaf(); return ls.hvp(function() return (w * w):sum() end, w, ls.ones(4))
end, "hvp: directions[1] has shape [4] but parameters[1] has shape [3]")
bad("hvp: more directions than parameters", function()
    local w = leaf(); return ls.hvp(function() return (w * w):sum() end, {w}, {ls.ones(3), ls.ones(3)})
end, "hvp: 2 directions for 1 parameters")
bad("hvp: f not a function", function() return ls.hvp(x, {leaf()}, {ls.ones(3)}) end,
    "hvp: argument 1 must be a function, got a Tensor")
bad("jvp: a direction of the wrong shape", function()
    return ls.jvp(function(t) return t:exp() end, leaf(), ls.ones(2))
end, "jvp: directions[1] has shape [2] but inputs[1] has shape [3]")
bad("vjp: inputs a number", function() return ls.vjp(function(t) return t end, 3, x) end,
    "vjp: expected a tensor or a list of tensors, got number")
bad("gradcheck: f not a function", function() return ls.gradcheck(3, {leaf()}) end,
    "gradcheck: argument 1 must be a function, got number")

---------------------------------------------------------------------------------------------------
-- files: IDX (raw and gzip), CSV, safetensors
---------------------------------------------------------------------------------------------------
bad("read_idx: missing file", function() return ls.io.read_idx(P("nope.idx")) end,
    "read_idx: " .. P("nope.idx") .. ": No such file or directory")
bad("read_idx: a directory", function() return ls.io.read_idx(dir) end, "read_idx: " .. dir .. ": is a directory")
bad("read_idx: empty file", function() return ls.io.read_idx(P("empty")) end,
    "read_idx: " .. P("empty") .. ": truncated: expected 4 bytes for the 4-byte IDX magic, got 0")
bad("read_idx: bad magic", function() return ls.io.read_idx(P("magic.idx")) end, "bad magic 0x01000801")
bad("read_idx: 9 dims", function() return ls.io.read_idx(P("dims9.idx")) end, "9 dimensions (supported: 1 to 8)")
bad("read_idx: dims too large", function() return ls.io.read_idx(P("huge.idx")) end,
    "dims: shape [4294967295x4294967295x4294967295] is too large")
bad("read_idx: a zero dim unbounding the others", function() return ls.io.read_idx(P("zerodim.idx")) end,
    "read_idx: " .. P("zerodim.idx") .. ": dims: shape [0x4294967295x4294967295] is too large")
bad("read_idx: truncated data", function() return ls.io.read_idx(P("short.idx")) end,
    "truncated: dims [2x3] of u8: expected 6 bytes of data, got 1")
bad("read_idx: truncated dims", function() return ls.io.read_idx(P("shortdims.idx")) end,
    "truncated: expected 8 bytes for the dimension list, got 5")
bad("read_idx: trailing bytes", function() return ls.io.read_idx(P("trailing.idx")) end,
    "trailing bytes after the 6 bytes of data declared by dims [2x3]")
bad("read_idx: gzip with a bad CRC", function() return ls.io.read_idx(P("crc.idx.gz")) end,
    "read_idx: " .. P("crc.idx.gz") .. ": corrupt gzip data (zlib: incorrect data check)")
bad("read_idx: truncated gzip", function() return ls.io.read_idx(P("half.idx.gz")) end,
    "truncated gzip file (zlib: unexpected end of file)")
bad("read_idx: corrupt deflate stream", function() return ls.io.read_idx(P("junk.idx.gz")) end,
    "corrupt gzip data (zlib: ")
bad("zeros: NUL in an option string (cut to \"f32\" before)",
    function() return ls.zeros({2}, {dtype = "f32\0x"}) end,
    "zeros: option 'dtype' contains a NUL byte at position 4")
bad("read_idx: NUL in the path", function() return ls.io.read_idx(P("good.idx") .. "\0x") end,
    "read_idx: the path contains a NUL byte at position")
bad("read_idx: path not a string", function() return ls.io.read_idx({}) end, "read_idx: the path must be a string, got table")
bad("csv_read: NUL in a cell (read as 0.5 before)", function() return ls.io.csv_read(P("nul_cell.csv")) end,
    "csv_read: " .. P("nul_cell.csv") .. ": line 2: field 2 contains a NUL byte")
bad("csv_read: NUL in the header", function() return ls.io.csv_read(P("nul_head.csv")) end,
    "line 1: field 1 contains a NUL byte")
bad("csv_read: ragged row", function() return ls.io.csv_read(P("ragged.csv")) end,
    "line 2: 1 field, but the header has 2")
bad("csv_read: unterminated quote", function() return ls.io.csv_read(P("quote.csv")) end,
    "unterminated quoted field at the end of the file")
bad("csv_read: a quote inside a bare field", function() return ls.io.csv_read(P("bare_quote.csv")) end,
    "line 2: malformed quoting")
bad("csv_read: duplicate column", function() return ls.io.csv_read(P("dup.csv")) end,
    "line 1: duplicate column name 'a'")
bad("csv_read: empty file", function() return ls.io.csv_read(P("empty")) end, "no header row (the file is empty)")
bad("csv_read: a directory", function() return ls.io.csv_read(dir) end, "is a directory")
bad("csv.read: the caller's line", function() local t = require("landscape.io.csv").read(P("nope.csv")); return t end,
    "bad_input_spec.lua:", "csv_read: " .. P("nope.csv") .. ": No such file or directory")
bad("load_safetensors: missing file", function() return ls.io.load_safetensors(P("nope.st")) end,
    "load_safetensors: " .. P("nope.st") .. ": No such file or directory")
bad("load_safetensors: NUL in the path", function() return ls.io.load_safetensors("a\0b") end,
    "load_safetensors: the path contains a NUL byte")
st_bad("header length 0", "", nil, "header length 0 is too short for a JSON object")
write_bytes(P("short.safetensors"), "abc")
bad("load_safetensors: 3 bytes", function() return ls.io.load_safetensors(P("short.safetensors")) end,
    "file too short (3 bytes) for the 8-byte header length")
write_bytes(P("hlen.safetensors"), string.pack("<I8", 2 ^ 62) .. "{}")
bad("load_safetensors: header length 2^62", function() return ls.io.load_safetensors(P("hlen.safetensors")) end,
    "header length 4611686018427387904 exceeds file size 10")
st_bad("header not JSON", "{\"a\":", nil, "invalid JSON header at byte 5: unexpected token near end of file")
st_bad("a NUL in a tensor name", '{"a\\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "\0\0\0\0",
       "invalid JSON header at byte 11: NUL byte in object key")
st_bad("a NUL in metadata", '{"__metadata__":{"k":"v\\u0000w"}}', nil,
       "invalid JSON header at byte 31: \\u0000 is not allowed")
st_bad("a NUL in a field name", '{"a":{"dtype\\u0000":"F32","shape":[1],"data_offsets":[0,4]}}', "\0\0\0\0",
       "invalid JSON header at byte 19: NUL byte in object key")
st_bad("a NUL in a dtype", '{"a":{"dtype":"F32\\u0000","shape":[1],"data_offsets":[0,4]}}', "\0\0\0\0",
       "invalid JSON header at byte 25: \\u0000 is not allowed")
st_bad("a zero dim unbounding the others",
       '{"a":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}}', nil,
       "tensor 'a': shape [0x4611686018427387904x4] is too large")
st_bad("shape product past 2^40", '{"a":{"dtype":"U8","shape":[1048576,1048577],"data_offsets":[0,1]}}', "\0",
       "tensor 'a': shape [1048576x1048577] is too large")
st_bad("offsets overlap", '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
       .. '"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', "\0\0\0", "overlap")
st_bad("a gap in the data", '{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', "\0\0",
       "unused bytes in the data buffer")
st_bad("offsets past the data", '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', "\0\0",
       "exceed the data buffer of 2 bytes")
st_bad("size does not match the shape", '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', "\0\0\0\0",
       "shape [2] of F32 needs 8 bytes but data_offsets [0, 4] span 4")
st_bad("unknown dtype", '{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', "\0",
       "unsupported dtype \"F8_E4M3\"")
st_bad("a negative size", '{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}', nil,
       "shape[0] is not a non-negative integer")
st_bad("9 dims", '{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}', "\0", "9 dims")
st_bad("a duplicate key", '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":1}', "\0", "invalid JSON header at byte 56: duplicate object key near '\"a\"'")
st_bad("metadata not strings", '{"__metadata__":{"k":1}}', nil, "__metadata__ value for 'k' is not a string")
st_bad("deep nesting", '{"a":' .. string.rep("[", 40) .. string.rep("]", 40) .. "}", nil, "nesting deeper than")
st_bad("invalid UTF-8", '{"\255":1}', nil, "invalid JSON header at byte 2: unable to decode byte 0xff")

---------------------------------------------------------------------------------------------------
-- writers: refused arguments leave the old file; NUL bytes are refused
---------------------------------------------------------------------------------------------------
keeps("write_idx: a dim over 32 bits (deleted the old file before)", {P("keep.idx")},
      function() return ls.io.write_idx(P("keep.idx"), ls.ones(1):expand(2 ^ 32 + 1)) end,
      "write_idx: " .. P("keep.idx") .. ": dim 1 of size 4294967297 exceeds IDX's 32-bit dims")
keeps("write_idx: an i64 value past int32", {P("keep.idx")},
      function() return ls.io.write_idx(P("keep.idx"), ls.tensor({3e9}, {dtype = "i64"})) end,
      "does not fit in IDX int32")
keeps("write_idx: gzip, a dim over 32 bits", {P("good.idx.gz")},
      function() return ls.io.write_idx(P("good.idx.gz"), ls.ones(1):expand(2 ^ 33)) end,
      "exceeds IDX's 32-bit dims")
bad("write_idx: into a missing directory", function() return ls.io.write_idx(P("no/such/x.idx"), x) end,
    "write_idx: " .. P("no/such/x.idx") .. ": cannot create a file beside it", "No such file or directory")
bad("write_idx: onto a directory", function() return ls.io.write_idx(dir, x) end, "write_idx: " .. dir .. ": is a directory")
bad("write_idx: NUL in the path", function() return ls.io.write_idx(P("a\0.idx"), x) end,
    "write_idx: the path contains a NUL byte")
bad("write_idx: not a tensor", function() return ls.io.write_idx(P("a.idx"), {1, 2}) end, "write_idx", "Tensor expected")
keeps("save_safetensors: NUL in a name", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {["a\0b"] = x}) end,
      "save_safetensors: a tensor name contains a NUL byte at position 2")
keeps("save_safetensors: NUL in a metadata value", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {a = x}, {k = "v\0w"}) end,
      "save_safetensors: a metadata value contains a NUL byte")
keeps("save_safetensors: NUL in a metadata key", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {a = x}, {["k\0"] = "v"}) end,
      "save_safetensors: a metadata key contains a NUL byte")
keeps("save_safetensors: a number key", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {x}) end,
      "tensor names must be strings, got a number key")
keeps("save_safetensors: a value that is not a tensor", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {a = 1}) end,
      "value for 'a' is a number, not a Tensor")
keeps("save_safetensors: '__metadata__' as a name", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {__metadata__ = x}) end,
      "'__metadata__' is reserved")
keeps("save_safetensors: a table as metadata value", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {a = x}, {k = {}}) end,
      "metadata value for 'k' is a table")
keeps("save_safetensors: invalid UTF-8 name", {P("keep.safetensors")},
      function() return ls.io.save_safetensors(P("keep.safetensors"), {["\255"] = x}) end,
      "is not valid UTF-8")
bad("save_safetensors: into a missing directory", function()
    return ls.io.save_safetensors(P("no/o.safetensors"), {a = x})
end, "save_safetensors: " .. P("no/o.safetensors") .. ": cannot create a file beside it")
keeps("csv_write: NUL in a column name", {P("keep.csv")},
      function() return ls.io.csv_write(P("keep.csv"), {"a\0"}, {}, false) end,
      "csv_write: column name 1 contains a NUL byte at position 2")
keeps("csv_write: NUL in a cell", {P("keep.csv")},
      function() return ls.io.csv_write(P("keep.csv"), {"a"}, {{a = "x\0y"}}, false) end,
      "csv_write: row 1, column 'a' contains a NUL byte at position 2")
keeps("csv_write: a key that is not a column", {P("keep.csv")},
      function() return ls.io.csv_write(P("keep.csv"), {"a"}, {{b = 1}}, false) end,
      "rows[1] has key 'b', which is not among the columns")
keeps("csv_write: a function value", {P("keep.csv")},
      function() return ls.io.csv_write(P("keep.csv"), {"a"}, {{a = print}}, false) end,
      "csv_write: row 1, column 'a': cannot write a function value")
keeps("csv_write: rows not tables", {P("keep.csv")},
      function() return ls.io.csv_write(P("keep.csv"), {"a"}, {1}, false) end, "rows[1] is a number, not a table")
keeps("csv_write: duplicate columns", {P("keep.csv")},
      function() return ls.io.csv_write(P("keep.csv"), {"a", "a"}, {}, false) end, "duplicate column 'a'")
keeps("csv_write: no columns", {P("keep.csv")},
      function() return ls.io.csv_write(P("keep.csv"), {}, {}, false) end, "columns must be a non-empty list of names")
keeps("csv append: columns differ from the header", {P("keep.csv")},
      function() require("landscape.io.csv").write(P("keep.csv"), {{a = 1, c = 2}}, {append = true}); return 1 end,
      "bad_input_spec.lua:", "cannot append: columns differ from the file's header (2 columns)", "the rows lack 'b'",
      "the file lacks 'c'")
keeps("csv.write: an unknown option", {P("keep.csv")},
      function() return require("landscape.io.csv").write(P("keep.csv"), {{a = 1}}, {appned = true}) end,
      "csv.write: unknown option 'appned'")
bad("write_idx: onto /dev/null (a device is never renamed over)", function()
    return ls.io.write_idx("/dev/null", x)
end, "write_idx: /dev/null: not a regular file")
bad("csv_write: onto a FIFO", function()
    os.execute("mkfifo '" .. P("fifo") .. "'")
    return ls.io.csv_write(P("fifo"), {"a"}, {{a = 1}}, false)
end, "csv_write: " .. P("fifo") .. ": not a regular file")
bad("csv_read: /dev/zero (read until memory ran out)", function() return ls.io.csv_read("/dev/zero") end,
    "csv_read: /dev/zero: not a regular file")
works("write_idx through a symbolic link replaces its target and keeps the link", function()
    ls.io.write_idx(P("target.idx"), ls.ones(1))
    os.execute("ln -sf target.idx '" .. P("link.idx") .. "'")
    ls.io.write_idx(P("link.idx"), ls.ones(3))
    return {ls.io.read_idx(P("target.idx")):numel(), io.popen("readlink '" .. P("link.idx") .. "'"):read("l")}
end, function(r) assert.are.same({3, "target.idx"}, r) end)
bad("write_file: NUL in the path", function() return ls.io.write_file(P("t\0.txt"), "a") end,
    "write_file: the path contains a NUL byte")
bad("write_file: text not a string", function() return ls.io.write_file(P("t.txt"), {}) end, "write_file", "string expected")
works("write_file: NUL bytes in the text are data", function()
    ls.io.write_file(P("t.txt"), "a\0b"); return read_bytes(P("t.txt"))
end, function(s) assert.are.equal("a\0b", s) end)

---------------------------------------------------------------------------------------------------
-- extra arguments and NUL bytes where C expects a string
---------------------------------------------------------------------------------------------------
bad("add: a third argument (ignored before)", function() return ls.add(x, x, x) end,
    "add: too many arguments (3 given, at most 2: signature T T)")
bad("sum: four arguments", function() return x:sum(1, true, 5) end, "sum: too many arguments (4 given, at most 3")
bad("matmul as a method with two operands", function() return x:matmul(x:t(), x) end, "matmul: too many arguments")
bad("zeros: a shape table, options, and more", function() return ls.zeros({2}, {}, {}) end,
    "zeros: too many arguments (3 given, at most 2)")
bad("full: four arguments", function() return ls.full({2}, 1, {}, 1) end, "full: too many arguments")
bad("tensor: three arguments", function() return ls.tensor({1}, {}, 3) end, "tensor: too many arguments (3 given, at most 2)")
bad("clone: an argument", function() return x:clone(1) end, "clone: too many arguments (2 given, at most 1)")
bad("size: two dims", function() return x:size(1, 2) end, "size: too many arguments (3 given, at most 2)")
bad("cast: two dtypes", function() return x:cast("f32", "f64") end, "cast: too many arguments")
bad("float: an argument", function() return x:float("f64") end, "float: too many arguments")
bad("grad: four arguments", function() return ls.grad(x, x, {}, 1) end, "grad: too many arguments (4 given, at most 3)")
bad("backward: four arguments", function() return x:backward(nil, {}, 1) end, "backward: too many arguments")
bad("read_idx: two arguments", function() return ls.io.read_idx("a", 1) end, "read_idx: too many arguments (2 given, at most 1)")
bad("csv_read: two arguments", function() return ls.io.csv_read("a", "b") end, "csv_read: too many arguments")
bad("save_safetensors: four arguments", function() return ls.io.save_safetensors("a", {}, {}, 1) end,
    "save_safetensors: too many arguments")
bad("memory: an argument", function() return ls.memory(1) end, "memory: too many arguments (1 given, at most 0)")
bad("set_threads: two arguments", function() return ls.set_threads(1, 2) end, "set_threads: too many arguments")
bad("equal: three arguments", function() return x:equal(x, x) end, "equal: too many arguments")
works("a trailing nil is not an extra argument", function() return ls.add(x, x, nil) end,
      function(t) assert.is_true(t:equal(x * 2)) end)
bad("cast: NUL in the dtype", function() return x:cast("f32\0junk") end, "cast: the dtype contains a NUL byte at position 4")
bad("mse_loss: NUL in the reduction", function() return ls.mse_loss(x, x, "sum\0") end,
    "mse_loss: the reduction contains a NUL byte")
bad("arithmetic with a string", function() return x + "a" end, "add: expected a tensor or a number, got string")

---------------------------------------------------------------------------------------------------
-- nn: state dicts, loading, calling
---------------------------------------------------------------------------------------------------
local function sd_with(key, value)
    local sd = model:state_dict()
    sd[key] = value
    return sd
end
bad("load_state_dict: a missing key", function() return model:load_state_dict(sd_with("1.weight", nil)) end,
    "load_state_dict: missing key(s): 1.weight")
bad("load_state_dict: an unexpected key", function() return model:load_state_dict(sd_with("9.weight", ls.zeros(1))) end,
    "load_state_dict: unexpected key(s): 9.weight")
bad("load_state_dict: a shape mismatch", function() return model:load_state_dict(sd_with("1.weight", ls.zeros(2, 2))) end,
    "load_state_dict: size mismatch for '1.weight': the model has [3x4], the state dict [2x2]")
bad("load_state_dict: a dtype mismatch", function()
    return model:load_state_dict(sd_with("1.weight", model:state_dict()["1.weight"]:double()))
end, "load_state_dict: dtype mismatch for '1.weight': the model has f32, the state dict f64")
bad("load_state_dict: a value that is not a tensor", function() return model:load_state_dict(sd_with("1.weight", 3)) end,
    "load_state_dict: '1.weight' is a number, not a tensor")
bad("load_state_dict: not a table", function() return model:load_state_dict(3) end,
    "load_state_dict: expected a table of name -> tensor, got number")
bad("load_into: a file of another model", function() return ls.nn.load_into(model, P("model5.safetensors")) end,
    "load_into: " .. P("model5.safetensors") .. ": size mismatch for '1.weight': the model has [3x4], the state dict [3x5]")
bad("load_into: a missing file", function() return ls.nn.load_into(model, P("nope.safetensors")) end,
    "load_safetensors: " .. P("nope.safetensors") .. ": No such file or directory")
bad("load_into: a damaged file", function() return ls.nn.load_into(model, P("short.safetensors")) end,
    "load_safetensors: " .. P("short.safetensors") .. ": file too short")
keeps("model:save into a missing directory", {P("model.safetensors")},
      function() return model:save(P("no/such/m.safetensors")) end, "save_safetensors:", "cannot create a file beside it")
bad("forward: wrong number of features", function() return model(ls.randn({2, 5})) end,
    "Linear(4 -> 3): input [2x5] should have 4 features in its last dim")
bad("forward: wrong dtype", function() return model(ls.randn({2, 4}, {dtype = "f64"})) end,
    "Linear: input is f64 but the layer is f32")
bad("forward: not a tensor", function() return model("a") end, "Flatten: expected a tensor input, got string")
bad("m.forward(x): a dot for a colon", function() return model.forward(x) end,
    "Sequential.forward: self is a Tensor, not a module (a method call needs a colon: m:forward(x))")
bad("linear: 0 inputs", function() return ls.nn.linear(0, 3) end, "linear: in_features must be a positive integer, got 0")
bad("mlp: a negative width", function() return ls.nn.mlp{hidden = {-1}} end, "mlp: hidden[1] must be a positive integer, got -1")
bad("mlp: a misspelt option", function() return ls.nn.mlp{hiden = {3}} end, "mlp: unknown option 'hiden'")

---------------------------------------------------------------------------------------------------
-- optimizers
---------------------------------------------------------------------------------------------------
bad("sgd: negative lr", function() return ls.optim.sgd(model, {lr = -1}) end, "sgd: invalid learning rate -1")
bad("sgd: NaN lr", function() return ls.optim.sgd(model, {lr = 0 / 0}) end, "sgd: invalid learning rate")
bad("sgd: negative momentum", function() return ls.optim.sgd(model, {lr = 0.1, momentum = -0.5}) end,
    "sgd: invalid momentum -0.5")
bad("sgd: nesterov without momentum", function() return ls.optim.sgd(model, {lr = 0.1, nesterov = true}) end,
    "sgd: Nesterov momentum requires a momentum and zero dampening")
bad("sgd: params a number", function() return ls.optim.sgd(3, {lr = 0.1}) end,
    "sgd: params must be a list of tensors or an object with a parameters() method, got number")
bad("adam: beta past 1", function() return ls.optim.adam(model, {betas = {1.5, 0.9}}) end,
    "adam: invalid beta parameter at index 1: 1.5")
bad("adam: negative eps", function() return ls.optim.adam(model, {eps = -1}) end, "adam: invalid epsilon value -1")
bad("adam: a misspelt option", function() return ls.optim.adam(model, {lrr = 1}) end, "adam: unknown option 'lrr'")
bad("clip_grad_norm: negative max_norm", function() return ls.optim.clip_grad_norm(model, -1) end,
    "clip_grad_norm: max_norm must be >= 0, got -1")
bad("clip_grad_norm: a non-finite norm", function()
    local w = leaf(); w.grad = ls.tensor({0 / 0, 1, 1})
    return ls.optim.clip_grad_norm({w}, 1, {error_if_nonfinite = true})
end, "clip_grad_norm: the total norm of order 2 of the gradients is non-finite")
bad("schedule: not an optimizer", function() return ls.optim.schedule.cosine(3, {t_max = 3}) end,
    "schedule.cosine: expected an optimizer")
bad("schedule: t_max 0", function() return ls.optim.schedule.cosine(ls.optim.sgd(model, {lr = 0.1}), {t_max = 0}) end,
    "schedule.cosine: option 't_max' must be >= 1, got 0")
bad("_optim.sgd_step: a gradient of another shape", function()
    return ls._optim.sgd_step(ls.zeros(3), ls.zeros(4), nil, true, 0.1, 0, 0, 0, false)
end, "sgd", "[3]", "[4]")
bad("_optim.sgd_step: extra arguments", function()
    return ls._optim.sgd_step(ls.zeros(3), ls.zeros(3), nil, true, 0.1, 0, 0, 0, false, 1)
end, "sgd_step: too many arguments (10 given, at most 9)")

---------------------------------------------------------------------------------------------------
-- training, curvature, margins (the call forms that stay: train(model, data, opts),
-- curvature.hessian(model, data, opts), margins(model, data, opts))
---------------------------------------------------------------------------------------------------
bad("train: no optimizer", function() return ls.train(model, data, {}) end, "train: option 'optimizer' is required")
bad("train: data a number", function() return ls.train(model, 3, {optimizer = ls.optim.sgd(model, {lr = 0.1})}) end,
    "train: data must be a dataset")
bad("train: a label past the classes", function()
    local d = ls.dataset(ls.randn({6, 4}), ls.tensor({1, 2, 5, 2, 1, 2}, {dtype = "i64"}))
    return ls.train(model, d, {optimizer = ls.optim.sgd(model, {lr = 0.1}), progress = false})
end, "train: the training data has label 5 but the model outputs 2 classes")
bad("dataset: x and y disagree", function() return ls.dataset(ls.randn({6, 4}), ls.tensor({1, 2}, {dtype = "i64"})) end,
    "dataset: x has 6 examples (shape [6x4]) but y has 2 labels")
bad("hessian: batch 0", function() return ls.curvature.hessian(model, data, {batch = 0}) end,
    "hessian: option 'batch' must be a positive integer, got 0")
bad("hessian: no parameter selected", function() return ls.curvature.hessian(model, data, {params = {"nope.*"}}) end,
    "hessian: no parameters match")
bad("hessian: matvec with a wrong vector", function() return ls.curvature.hessian(model, data):matvec(ls.ones(3)) end,
    "hessian:hvp: expected a 1-D tensor of length 23, got shape [3]")
bad("curvature: k past the operator size", function() return ls.curvature.hessian(model, data):eigs{k = 1000} end,
    "lanczos: k = 1000 exceeds the operator size 23")
bad("curvature: an operator larger than 2^40", function()
    return ls._curvature.trace(2 ^ 41, "f64", function(v) return v end, "hutchinson", 1, 1)
end, "trace (hutchinson): operator size must be in 1..2^40, got 2199023255552")
bad("curvature: a matvec returning a number", function()
    return ls.curvature.operator{n = 3, matvec = function() return 1 end}:trace{probes = 2}
end, "trace: matvec must return a Tensor, got number")
bad("margins: an unknown layer", function() return ls.margins(model, data, {layers = {"nope"}}) end,
    "margins: unknown layer 'nope'")

---------------------------------------------------------------------------------------------------
teardown(function() files.remove_dir(dir) end)

describe("bad input", function()
    it("has at least 150 distinct cases", function()
        local seen = {}
        for _, c in ipairs(cases) do
            assert(not seen[c.name], "duplicate case name: " .. c.name)
            seen[c.name] = true
        end
        assert.is_true(#cases >= 150, #cases .. " cases")
    end)

    for _, c in ipairs(cases) do
        it(c.name, function()
            local before = {}
            for i, path in ipairs(c.keeps or {}) do
                before[i] = read_bytes(path)
                assert(before[i], "missing fixture " .. path)
            end
            local ok, res = pcall(c.fn)
            if c.check then
                assert(ok, "expected success, got: " .. tostring(res))
                c.check(res)
                return
            end
            assert(not ok, "expected an error, but the call succeeded")
            local msg = tostring(res)
            for _, s in ipairs(c.expect) do
                assert(msg:find(s, 1, true), string.format("message %q lacks %q", msg, s))
            end
            for i, path in ipairs(c.keeps or {}) do
                assert(read_bytes(path) == before[i], path .. " changed")
            end
            assert.are.same({}, fs.list(dir, "%.part$"))   -- no temporary file left behind
        end)
    end
end)

---------------------------------------------------------------------------------------------------
-- full disks, in child processes: RLIMIT_FSIZE (write() fails with EFBIG), and where a private mount
-- namespace is allowed, a 64 KiB tmpfs (write() fails with ENOSPC). The child writes a good file,
-- then a larger one that cannot fit, and reports whether the call failed cleanly and the good file
-- survived byte for byte with no temporary file beside it.
---------------------------------------------------------------------------------------------------
local LUA = os.getenv("LANDSCAPE_LUA") or "lua5.4"
local CHILD = [==[
local ls = require "landscape"
local dir, what = arg[1], arg[2]
local function read(p) local f = io.open(p, "rb"); if not f then return nil end
    local s = f:read("a"); f:close(); return s end
local big = ls.randn({40000}, {seed = 1})
local rows = {}
for i = 1, 20000 do rows[i] = {a = i, b = 3129.5} end
local writers = {
    idx = function(t) ls.io.write_idx(dir .. "/f.idx", t) end,
    idx_gz = function(t) ls.io.write_idx(dir .. "/f.idx.gz", t) end,
    safetensors = function(t) ls.io.save_safetensors(dir .. "/f.safetensors", {w = t}) end,
    csv = function(t) ls.io.csv_write(dir .. "/f.csv", {"a", "b"},
                                      t:numel() > 10 and rows or {rows[1]}, false) end,
    csv_append = function(t) ls.io.csv_write(dir .. "/f.csv", {"a", "b"},
                                             t:numel() > 10 and rows or {rows[1]}, true) end,
    write_file = function(t) ls.io.write_file(dir .. "/f.txt", string.rep("x", t:numel() * 4)) end,
    model_save = function(t)
        local m = ls.nn.mlp{input = 4, hidden = {t:numel() > 10 and 4000 or 2}, classes = 2}
        m:save(dir .. "/f.safetensors")
    end,
}
local w = writers[what]
w(ls.ones(4))                                  -- a small good file
local path
for name in io.popen("ls " .. dir):lines() do path = dir .. "/" .. name end
local before = read(path)
local ok, err = pcall(w, big)                  -- does not fit
local leftover = io.popen("ls " .. dir .. " | grep -c part"):read("l")
if ok then print("FAIL: the write succeeded") os.exit(1) end
if read(path) ~= before then print("FAIL: the file changed: " .. tostring(err)) os.exit(1) end
if leftover ~= "0" then print("FAIL: a temporary file was left") os.exit(1) end
print("OK " .. tostring(err))
]==]

describe("writers on a full disk", function()
    local child = dir .. "/child.lua"
    setup(function() write_bytes(child, CHILD) end)
    local function run(cmd)
        local p = io.popen(cmd .. " 2>&1")
        local out = p:read("a")
        p:close()
        return out
    end
    local have_unshare = run("unshare -rm true && echo yes"):find("yes") ~= nil
    for _, what in ipairs({"idx", "idx_gz", "safetensors", "csv", "csv_append", "write_file", "model_save"}) do
        it(what .. " under a file-size limit", function()
            local sub = dir .. "/lim_" .. what
            assert(fs.mkdir_p(sub))
            -- 64 KiB in dash's 512-byte blocks; SIGXFSZ ignored so that write() returns EFBIG
            local out = run(string.format("sh -c 'ulimit -f 128; trap \"\" XFSZ; exec %s %s %s %s'",
                                          LUA, child, sub, what))
            assert(out:find("^OK"), out)
            assert(out:find("write failed: File too large (the file is unchanged)", 1, true), out)
        end)
        it(what .. " on a full tmpfs", function()
            if not have_unshare then
                pending("no private mount namespace here (unshare -rm)")
                return
            end
            local sub = dir .. "/full_" .. what
            assert(fs.mkdir_p(sub))
            local out = run(string.format("unshare -rm sh -c 'mount -t tmpfs -o size=64k tmpfs %s && " ..
                                          "exec %s %s %s %s'", sub, LUA, child, sub, what))
            assert(out:find("^OK"), out)
            assert(out:find("write failed: No space left on device (the file is unchanged)", 1, true), out)
        end)
    end
end)
