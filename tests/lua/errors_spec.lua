-- The bad-input spec: every case calls the Lua API wrongly inside pcall and checks the error
-- MESSAGE, which must name the function and the shapes / dims / dtype involved. A case passes only
-- when the call fails AND every expected substring is in the message, so a missing check (a call
-- that succeeds, crashes, or fails for another reason) fails it. All cases run in one interpreter:
-- a crash would take the whole spec down.
local ls = require "landscape"

local function f64(t) return ls.tensor(t, { dtype = "f64" }) end
local function i64(t) return ls.tensor(t, { dtype = "i64" }) end

local function expect_error(fn, ...)
    local ok, err = pcall(fn)
    assert(not ok, "expected an error, but the call succeeded")
    err = tostring(err)
    for _, s in ipairs({ ... }) do
        assert(err:find(s, 1, true),
               string.format("error message %q does not contain %q", err, s))
    end
    return err
end

local M = ls.zeros(2, 3)            -- the usual [2x3] f32 operand
local N = ls.zeros(3, 2)

-- { description, function, expected substrings... }
local cases = {
    -- ---- wrong shapes, one per binary op family ----
    { "add: shapes that do not broadcast", function() return ls.add(M, N) end,
      "add:", "[2x3] and [3x2] cannot be broadcast" },
    { "sub via the - metamethod", function() return M - N end, "sub:", "[2x3] and [3x2]" },
    { "mul as a method", function() return M:mul(ls.zeros(4)) end, "mul:", "[2x3] and [4]" },
    { "div", function() return ls.div(ls.zeros(2, 1, 3), ls.zeros(4, 2)) end,
      "div:", "[2x1x3] and [4x2]" },
    { "pow via ^", function() return M ^ ls.zeros(2) end, "pow:", "[2x3] and [2]" },
    { "maximum", function() return ls.maximum(M, N) end, "maximum:", "cannot be broadcast" },
    { "comparison lt", function() return M:lt(N) end, "lt:", "[2x3] and [3x2]" },
    { "where: condition does not broadcast", function() return ls.where(ls.zeros(2), M, M) end,
      "where:", "cannot be broadcast" },
    { "matmul: inner dimensions differ",
      function() return ls.matmul(ls.zeros(3, 4), ls.zeros(5, 2)) end,
      "matmul: inner dimensions differ: [3x4] @ [5x2]" },
    { "matmul: vector lengths differ", function() return ls.zeros(3):matmul(ls.zeros(4)) end,
      "matmul: inner dimensions differ: [3] @ [4]" },
    { "matmul: batch dims do not broadcast",
      function() return ls.matmul(ls.zeros(2, 3, 4), ls.zeros(3, 4, 5)) end,
      "matmul: batch dimensions cannot be broadcast: [2x3x4] @ [3x4x5]" },
    { "matmul of a 0-d tensor", function() return ls.matmul(ls.tensor(1), ls.zeros(3)) end,
      "matmul:", "at least 1 dimension", "[] @ [3]" },
    { "linear: bias length differs from the weight's rows",
      function() return ls.linear(ls.zeros(4, 3), ls.zeros(5, 3), ls.zeros(4)) end,
      "linear: expected input [..., in], weight [out, in] and bias [out], got [4x3], [5x3] and [4]" },
    { "linear: input features differ", function() return ls.zeros(2, 7):linear(ls.zeros(5, 3), ls.zeros(5)) end,
      "linear:", "[2x7], [5x3] and [5]" },
    { "dot: sizes differ", function() return ls.dot(ls.zeros(3), ls.zeros(4)) end,
      "dot: sizes differ: [3] and [4]" },
    { "dot of a matrix", function() return ls.dot(M, ls.zeros(3)) end,
      "dot: expected two 1-D tensors, got [2x3] and [3]" },
    { "outer of a matrix", function() return ls.outer(ls.zeros(3), M) end,
      "outer: expected two 1-D tensors", "[2x3]" },
    { "mse_loss: shapes differ", function() return ls.mse_loss(M, N) end,
      "mse_loss:", "[2x3]", "[3x2]", "same shape" },
    { "copy: source does not broadcast", function() return M:clone():copy(ls.zeros(2)) end,
      "copy:", "[2]" },
    { "index assignment of a wrong-shaped row",
      function() local x = M:clone(); x[1] = ls.zeros(4) end,
      "copy:", "[3] and [4]" },
    { "scatter_add: source shape differs from the index's",
      function() return ls.scatter_add(M, 2, i64({ { 1 } }), ls.zeros(1, 2)) end,
      "scatter_add: source [1x2] must have the index's shape [1x1]" },
    { "index_add: source shape wrong",
      function() return ls.index_add(M, 1, i64({ 1 }), ls.zeros(2, 3)) end,
      "index_add: source [2x3] must have shape [1x3]" },
    { "gather: index rank differs", function() return ls.gather(M, 2, i64({ 1 })) end,
      "gather: index of shape [1] does not fit tensor [2x3]" },

    -- ---- 1-based indices out of range ----
    { "x[0]", function() return M[0] end, "index 0 out of range for dimension 1 of size 2",
      "1-based" },
    { "x[n+1]", function() return M[3] end, "index 3 out of range for dimension 1 of size 2" },
    { "x[-(n+1)]", function() return ls.zeros(4)[-5] end, "index -5 out of range", "size 4" },
    { "x[0] = v", function() local x = ls.zeros(3); x[0] = 1 end, "index 0 out of range" },
    { "x[1.5]", function() return M[1.5] end, "number has no integer representation" },
    { "indexing a 0-d tensor", function() return ls.tensor(1)[1] end,
      "index: cannot index a 0-d tensor" },
    { "select: index 0", function() return M:select(1, 0) end,
      "select: index 0 out of range", "1-based" },
    { "select: index past the end", function() return M:select(2, 4) end,
      "select: index 4 out of range for dimension 2 of size 3" },
    { "narrow: start 0", function() return M:narrow(2, 0, 1) end,
      "narrow: index 0 out of range", "1-based" },
    { "narrow: range past the end", function() return M:narrow(2, 2, 3) end,
      "narrow: start 2 and length 3 out of bounds for dimension 2 of size 3" },
    { "narrow: negative length", function() return M:narrow(1, 1, -1) end,
      "narrow:", "out of bounds for dimension 1 of size 2" },

    -- ---- dtype mismatch / integer tensors to float ops ----
    { "add: f32 + f64", function() return M + ls.zeros(2, 3, { dtype = "f64" }) end,
      "add: dtype mismatch: f32 and f64" },
    { "matmul: f64 @ f32", function() return f64({ { 1 } }):matmul(ls.zeros(1, 1)) end,
      "matmul: dtype mismatch: f64 and f32" },
    { "scatter_add: x f32, src f64",
      function() return ls.scatter_add(M, 2, i64({ { 1 } }), ls.zeros(1, 1, { dtype = "f64" })) end,
      "scatter_add: dtype mismatch: f32 and f64" },
    { "exp of i64", function() return ls.exp(i64({ 1 })) end,
      "exp: expected a float tensor (f32 or f64), got i64" },
    { "relu of u8", function() return ls.zeros(2):byte():relu() end,
      "relu: expected a float tensor", "got u8" },
    { "sum of i64",
      function() return i64({ 1, 2 }):sum() end, "sum: expected a float tensor", "i64" },
    { "i64 / number", function() return i64({ 1 }) / 2 end, "div: expected a float tensor", "i64" },
    { "matmul of i64", function() return ls.matmul(i64({ { 1 } }), i64({ { 1 } })) end,
      "matmul: expected a float tensor", "i64" },
    { "softmax of u8", function() return ls.tensor({ 1 }, { dtype = "u8" }):softmax() end,
      "softmax: expected a float tensor", "u8" },
    { "randn with an integer dtype", function() return ls.randn({ 2 }, { dtype = "i64" }) end,
      "randn: dtype must be f32 or f64, got i64" },

    -- ---- non-tensor arguments ----
    { "a string to an op", function() return ls.exp("abc") end,
      "exp: argument 1 must be a tensor or a number, got string" },
    { "a table to an op", function() return ls.add(M, {}) end,
      "add: argument 2 must be a tensor or a number, got table" },
    { "nil to an op", function() return ls.add(M, nil) end, "add: missing argument 2" },
    { "nil first argument", function() return ls.matmul(nil, M) end, "matmul: missing argument 1" },
    { "a string to a metamethod", function() return M + "a" end,
      "add: expected a tensor or a number, got string" },
    { "a table to a metamethod", function() return {} * M end,
      "mul: expected a tensor or a number, got table" },
    { "a string to ls.tensor", function() return ls.tensor("abc") end,
      "tensor: expected a table, a number or a tensor" },
    { "a string element", function() return ls.tensor({ 1, "a" }) end,
      "tensor: element is a string, expected a number" },
    { "copy from a number", function() return M:clone():copy(3) end, "copy", "Tensor expected" },
    { "fill with a string", function() return M:clone():fill("a") end, "fill", "number expected" },
    { "zeros_like of a table", function() return ls.zeros_like({}) end,
      "zeros_like", "landscape.Tensor expected, got table" },
    { "clamp with a string bound", function() return M:clamp("a") end, "clamp", "number expected" },
    { "grad of a string", function() return ls.grad("x", M) end,
      "grad: outputs must be a tensor or a list of tensors, got string" },
    { "grad with a number in the outputs list", function() return ls.grad({ M:sum(), 3 }, M) end,
      "grad: outputs[2] is not a tensor" },
    { "no_grad of a number", function() return ls.no_grad(3) end, "no_grad", "function expected" },
    { "a dim given as a string", function() return M:sum("a") end,
      "sum: argument 2 must be a dimension, a table of dimensions or nil, got string" },
    { "a dims table holding a string", function() return M:mean({ 1, "x" }) end,
      "mean: dims[2] must be a dimension (integer), got string" },
    { "a non-integer dim", function() return M:max(1.5) end,
      "max: argument 2 must be a dimension (integer), got a non-integer number" },
    { "keepdim not a boolean", function() return M:sum(1, "yes") end,
      "sum: argument 3 (keepdim) must be a boolean, got string" },

    -- ---- bad options tables ----
    { "{seed = 'x'}", function() return ls.rand({ 2 }, { seed = "x" }) end,
      "rand: option 'seed' must be an integer, got string" },
    { "{seed = 1.5}", function() return ls.randn({ 2 }, { seed = 1.5 }) end,
      "randn: option 'seed' must be an integer, got a non-integer number" },
    { "{dtype = 'f16'}", function() return ls.zeros(2, { dtype = "f16" }) end,
      "zeros: unknown dtype 'f16' (expected f32, f64, i64 or u8)" },
    { "{dtype = 3}", function() return ls.tensor({ 1 }, { dtype = 3 }) end,
      "tensor: option 'dtype' must be a string, got number" },
    { "{lo = 'a'}", function() return ls.rand({ 2 }, { lo = "a" }) end,
      "rand: option 'lo' must be a number, got string" },
    { "lo >= hi", function() return ls.rand({ 2 }, { lo = 1, hi = 0 }) end,
      "rand: need lo < hi, got lo=1" },
    { "negative std", function() return ls.randn({ 2 }, { std = -1.5 }) end,
      "randn: std must be >= 0, got -1.5" },
    { "randint into u8", function() return ls.randint(0, 5, { 2 }, { dtype = "u8" }) end,
      "randint: dtype u8 is not supported" },
    { "options that are not a table", function() return ls.tensor({ 1 }, "f64") end,
      "tensor: options must be a table, got string" },
    { "a string after the shape", function() return ls.zeros(2, "x") end,
      "zeros: expected a shape", "got string at argument 2" },
    { "{requires_grad = 'yes'}", function() return ls.tensor({ 1 }, { requires_grad = "yes" }) end,
      "tensor: option 'requires_grad' must be a boolean, got string" },
    { "{retain_graph = 'yes'}",
      function()
          local w = ls.zeros(2):requires_grad()
          return (w * w):sum():backward({ retain_graph = "yes" })
      end,
      "backward: option 'retain_graph' must be a boolean, got string" },
    { "{create_graph = 1}",
      function()
          local w = ls.zeros(2):requires_grad()
          return ls.grad(w:sum(), w, { create_graph = 1 })
      end,
      "grad: option 'create_graph' must be a boolean, got number" },
    { "{reduction = 3}",
      function() return ls.cross_entropy(ls.zeros(2, 3), i64({ 1, 1 }), { reduction = 3 }) end,
      "cross_entropy: option 'reduction' must be a string, got number" },
    { "reduction 'avg'", function() return ls.mse_loss(M, M, "avg") end,
      "mse_loss: reduction must be 'mean', 'sum' or 'none', got 'avg'" },
    { "cast to an unknown dtype",
      function() return M:cast("f16") end, "cast: unknown dtype 'f16'" },

    -- ---- bad shapes ----
    { "negative size",
      function() return ls.zeros(-1, 2) end, "zeros: negative size -1 in dimension 1" },
    { "negative size in a random tensor", function() return ls.rand({ 2, -3 }) end,
      "rand: negative size -3 in dimension 2" },
    { "more than 8 dims as a table", function() return ls.ones({ 1, 1, 1, 1, 1, 1, 1, 1, 1 }) end,
      "ones: 9 dimensions (at most 8)" },
    { "more than 8 dims as integers", function() return ls.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end,
      "zeros: more than 8 dimensions" },
    { "nesting deeper than 8",
      function() return ls.tensor({ { { { { { { { { 1 } } } } } } } } }) end,
      "tensor: nesting deeper than 8" },
    { "non-integer size", function() return ls.zeros(2.5) end, "zeros: size 1 is not an integer" },
    { "non-integer shape entry", function() return ls.randn({ 2, 2.5 }) end,
      "randn: shape entry 2 is not an integer" },
    { "ragged table", function() return ls.tensor({ { 1, 2 }, { 3 } }) end,
      "tensor: ragged table: dimension 2 has length 1 here, 2 elsewhere" },
    { "a shape too large", function() return ls.zeros(2 ^ 40, 2 ^ 40) end, "is too large" },
    { "reshape: size mismatch", function() return M:reshape(4, 2) end,
      "reshape: cannot reshape [2x3] (6 elements) into [4x2]" },
    { "view: -1 that cannot be inferred", function() return M:view(-1, 4) end,
      "reshape: cannot reshape [2x3] (6 elements) into [-1x4]" },
    { "reshape: two -1", function() return M:reshape(-1, -1) end,
      "reshape: only one dimension can be -1" },
    { "reshape: size -2", function() return M:reshape(-2, 3) end, "reshape: negative size -2 in dimension 1 of shape [-2x3]" },
    { "expand: impossible", function() return M:expand(3, 3) end,
      "expand: cannot expand [2x3] to [3x3]" },
    { "expand: fewer dims",
      function() return M:expand(3) end, "expand: cannot expand [2x3] to [3]" },
    { "permute: a repeated dim", function() return M:permute(1, 1) end,
      "permute: not a permutation of 2 dims for [2x3]" },
    { "permute: too few dims", function() return M:permute(1) end,
      "permute: 1 dims given for a 2-d tensor [2x3]" },
    { "unsqueeze past 8 dims", function() return ls.zeros(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end,
      "unsqueeze: tensor already has 8 dims" },
    { "t() of a 3-d tensor", function() return ls.zeros(2, 3, 4):t() end,
      "t: expects a tensor with at most 2 dims, got [2x3x4]" },
    { "transpose with one dim", function() return M:transpose(1) end,
      "transpose: expects two dims, got 1" },
    { "a dim repeated in a reduction", function() return M:sum({ 1, 1 }) end,
      "sum: dimension 1 appears more than once" },
    { "more than 8 reduction dims", function() return M:sum(1, 2, 1, 2, 1, 2, 1, 2, 1) end,
      "sum: more than 8 dims given" },
    { "max of an empty tensor", function() return ls.zeros(0):max() end,
      "max: cannot reduce over an empty dimension of tensor [0]" },
    { "argmax of an empty tensor", function() return ls.zeros(2, 0):argmax(2) end,
      "argmax: cannot reduce over an empty dimension of tensor [2x0]" },
    { "norm with p = 3", function() return M:norm(3) end, "norm: p must be 1, 2 or inf, got 3" },
    { "softmax of a 0-d tensor", function() return ls.tensor(1):softmax() end,
      "softmax: expected at least 1 dimension, got a 0-d tensor" },
    { "narrow of a 0-d tensor", function() return ls.tensor(1):narrow(1, 1, 1) end,
      "narrow: cannot narrow a 0-d tensor" },
    { "item of several elements", function() return M:item() end,
      "item: tensor of shape [2x3] has 6 elements, expected 1" },
    { "# of a 0-d tensor", function() return #ls.tensor(1) end, "len: a 0-d tensor has no length" },
    { "setting an unknown field", function() M.foo = 1 end, "tensor: cannot set field 'foo'" },
    { "eye: negative size", function() return ls.eye(-1) end, "eye: negative size -1 in dimension 1 of shape [-1x-1]" },
    { "arange: zero step", function() return ls.arange(0, 1, 0) end,
      "arange: invalid range start=0 stop=1 step=0" },
    { "arange without numbers",
      function() return ls.arange("a") end, "arange: expected arange(stop)" },
    { "randint: lo >= hi", function() return ls.randint(5, 1, { 2 }) end,
      "randint: need lo < hi, got lo=5 hi=1" },
    { "randperm: negative n",
      function() return ls.randperm(-1) end, "randperm: n must be >= 0, got -1" },

    -- ---- index tensors ----
    { "gather with an f32 index", function() return M:gather(2, ls.tensor({ { 1 } })) end,
      "gather", "i64", "f32" },
    { "index_select with index 0", function() return M:index_select(2, i64({ 1, 0 })) end,
      "index_select: index 0 out of range for dimension 2 of size 3" },
    { "index_select with a Lua list past the end", function() return M:index_select(1, { 3 }) end,
      "index_select: index 3 out of range for dimension 1 of size 2" },
    { "gather with index n+1", function() return M:gather(2, i64({ { 4 } })) end,
      "gather: index 4 out of range for dimension 2 of size 3" },
    { "scatter_add with index 0",
      function() return M:scatter_add(1, i64({ { 0 } }), ls.zeros(1, 1)) end,
      "scatter_add: index 0 out of range for dimension 1 of size 2" },
    { "index list with a non-integer", function() return ls.one_hot({ 1.5 }, 2) end,
      "one_hot: index list entry 1 is not an integer" },
    { "one_hot with an f32 index", function() return ls.one_hot(ls.tensor({ 1 }), 2) end,
      "one_hot: index tensor must be integer (i64), got f32" },
    { "one_hot with label 0", function() return ls.one_hot(i64({ 1, 0 }), 2) end,
      "one_hot: index 0 out of range for 2 classes" },
    { "one_hot with label > C", function() return ls.one_hot({ 3 }, 2) end,
      "one_hot: index 3 out of range for 2 classes" },
    { "cross_entropy with label 0",
      function() return ls.cross_entropy(ls.zeros(2, 3), { 0, 1 }) end,
      "cross_entropy: target 0 of sample 1 out of range for 3 classes (labels are 1..3 in Lua)" },
    { "cross_entropy with label > C",
      function() return ls.cross_entropy(ls.zeros(2, 3), i64({ 1, 4 })) end,
      "cross_entropy: target 4 of sample 2 out of range for 3 classes" },
    { "cross_entropy with f32 labels",
      function() return ls.cross_entropy(ls.zeros(2, 3), ls.ones(2)) end,
      "cross_entropy: index tensor must be integer (i64), got f32" },
    { "cross_entropy with too many labels", function() return ls.cross_entropy(M, { 1, 1, 1 }) end,
      "cross_entropy: targets must be 2 class indices", "[3]" },
    { "cross_entropy with 1-d scores",
      function() return ls.cross_entropy(ls.zeros(3), { 1, 1, 1 }) end,
      "cross_entropy: scores must be [N x C], got [3]" },
    { "nll_loss with label > C", function() return ls.nll_loss(M, { 1, 4 }) end,
      "nll_loss: target 4 of sample 2 out of range for 3 classes" },

    -- ---- autograd ----
    { "grad of a non-scalar output without grad_outputs",
      function() local w = ls.zeros(3):requires_grad() return ls.grad(w * 2, w) end,
      "grad: output 1 has shape [3]", "pass grad_outputs" },
    { "backward of a non-scalar output",
      function() local w = ls.zeros(3):requires_grad() return (w * 2):backward() end,
      "backward: output 1 has shape [3]" },
    { "grad_outputs of the wrong shape",
      function()
          local w = ls.zeros(3):requires_grad()
          return ls.grad(w * 2, w, { grad_outputs = ls.zeros(2) })
      end,
      "grad: grad_outputs[1] has shape [2] f32 but output 1 has shape [3] f32" },
    { "as many grad_outputs as outputs",
      function()
          local w = ls.zeros(1):requires_grad()
          return ls.grad(w:sum(), w, { grad_outputs = { ls.ones(1), ls.ones(1) } })
      end,
      "grad: 2 grad_outputs for 1 outputs" },
    { "an input not in the graph",
      function()
          local w = ls.zeros(3):requires_grad()
          return ls.grad(w:sum(), ls.zeros(3):requires_grad())
      end,
      "grad: input 1 (shape [3]) is not part of the graph", "allow_unused" },
    { "an input that does not require grad",
      function()
          local w = ls.zeros(2):requires_grad()
          return ls.grad((w * 2):sum(), ls.zeros(2))
      end,
      "grad: input 1 (shape [2]) does not require grad" },
    { "backward twice without retain_graph",
      function()
          local w = ls.zeros(3):requires_grad()
          local l = (w * w):sum()
          l:backward()
          l:backward()
      end,
      "backward: the graph through 'sum' was already freed", "retain_graph = true" },
    { "requires_grad on an integer tensor", function() return i64({ 1 }):requires_grad() end,
      "requires_grad: only float tensors can require gradients, got i64" },
    { "fill on a tensor that requires grad",
      function() return ls.zeros(3):requires_grad():fill(1) end,
      "fill: in-place change of a tensor that requires grad (shape [3])" },
    { "zero on a tensor that requires grad",
      function() return ls.zeros(2):requires_grad():zero() end,
      "zero: in-place change of a tensor that requires grad" },
    { "index assignment on a tensor that requires grad",
      function() local w = ls.zeros(3):requires_grad(); w[1] = 2 end,
      "index assignment: in-place change of a tensor that requires grad" },
    { "a .grad of the wrong shape", function() local w = ls.zeros(3); w.grad = ls.zeros(2) end,
      "grad: assigning a [2] f32 gradient to a [3] f32 tensor" },

    -- ---- closed tensors ----
    { "arithmetic on a closed tensor",
      function() local z do local x <close> = ls.zeros(2); z = x end return z + 1 end,
      "tensor has been closed" },
    { "a method of a closed tensor",
      function() local z do local x <close> = ls.zeros(2); z = x end return z:sum() end,
      "tensor has been closed (using 'sum')" },
    { "a closed tensor passed to a module function",
      function() local z do local x <close> = ls.zeros(2); z = x end return ls.exp(z) end,
      "tensor has been closed" },
    { "indexing a closed tensor",
      function() local z do local x <close> = ls.zeros(2); z = x end return z[1] end,
      "tensor has been closed" },
    { "# of a closed tensor",
      function() local z do local x <close> = ls.zeros(2); z = x end return #z end,
      "tensor has been closed" },

    -- ---- threads ----
    { "set_threads(0)",
      function() ls.set_threads(0) end, "set_threads: n must be in 1..", "got 0" },
    { "set_threads(100000)", function() ls.set_threads(100000) end, "got 100000" },
    { "set_threads('a')", function() ls.set_threads("a") end, "set_threads", "number expected" },
}

-- Dim out of range (0, too large, too negative) for every op that takes a dim, on the [2x3] M.
local I2 = i64({ { 1, 1, 1 } })
local I1 = i64({ 1 })
local dim_ops = {
    sum = function(d) return M:sum(d) end,
    mean = function(d) return M:mean(d) end,
    var = function(d) return M:var(d) end,
    std = function(d) return M:std(d) end,
    max = function(d) return M:max(d) end,
    min = function(d) return M:min(d) end,
    argmax = function(d) return M:argmax(d) end,
    argmin = function(d) return M:argmin(d) end,
    norm = function(d) return M:norm(2, d) end,
    logsumexp = function(d) return M:logsumexp(d) end,
    transpose = function(d) return M:transpose(1, d) end,
    narrow = function(d) return M:narrow(d, 1, 1) end,
    select = function(d) return M:select(d, 1) end,
    squeeze = function(d) return M:squeeze(d) end,
    permute = function(d) return M:permute(1, d) end,
    log_softmax = function(d) return M:log_softmax(d) end,
    softmax = function(d) return M:softmax(d) end,
    gather = function(d) return M:gather(d, I2) end,
    index_select = function(d) return M:index_select(d, I1) end,
    scatter_add = function(d) return M:scatter_add(d, I2, ls.zeros(1, 3)) end,
    index_add = function(d) return M:index_add(d, I1, ls.zeros(1, 3)) end,
}
local names = {}
for name in pairs(dim_ops) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
    local f = dim_ops[name]
    cases[#cases + 1] = { name .. ": dim 0", function() return f(0) end,
                          name .. ": dimension 0 is invalid (dims are 1-based" }
    cases[#cases + 1] = { name .. ": dim 3 of a 2-d tensor", function() return f(3) end,
                          name .. ": dimension 3 out of range for a 2-d tensor" }
    cases[#cases + 1] = { name .. ": dim -3 of a 2-d tensor", function() return f(-3) end,
                          name .. ": dimension -3 out of range for a 2-d tensor" }
end
-- unsqueeze accepts -3..3 on a 2-d tensor; size() checks in the binding.
cases[#cases + 1] = { "unsqueeze: dim 0", function() return M:unsqueeze(0) end,
                      "unsqueeze: dimension 0 is invalid" }
cases[#cases + 1] = { "unsqueeze: dim 4", function() return M:unsqueeze(4) end,
                      "unsqueeze: dimension 4 out of range for a 2-d tensor" }
cases[#cases + 1] = { "unsqueeze: dim -4", function() return M:unsqueeze(-4) end,
                      "unsqueeze: dimension -4 out of range for a 2-d tensor" }
cases[#cases + 1] = { "size: dim 0", function() return M:size(0) end,
                      "size: dimension 0 out of range for a 2-d tensor (dims are 1-based)" }
cases[#cases + 1] = { "size: dim 3", function() return M:size(3) end,
                      "size: dimension 3 out of range for a 2-d tensor" }
cases[#cases + 1] = { "a huge dim does not wrap around", function() return M:sum(2 ^ 32 + 1) end,
                      "sum: dimension 4294967297 out of range" }

describe("bad input raises a clear error", function()
    local saved_threads = ls.get_threads()
    teardown(function() ls.set_threads(saved_threads) end)

    it("has at least 60 distinct cases", function()
        local seen = {}
        for _, c in ipairs(cases) do
            assert(not seen[c[1]], "duplicate case name: " .. c[1])
            seen[c[1]] = true
        end
        assert.is_true(#cases >= 60)
    end)

    for _, c in ipairs(cases) do
        it(c[1], function()
            expect_error(c[2], table.unpack(c, 3))
        end)
    end

    it("leaves the interpreter usable: the operands are untouched afterwards", function()
        assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, M:totable())
        assert.are.equal(10, (ls.ones(5) + 1):sum():item())
    end)
end)

describe("errors of library functions", function()
    -- An engine error raised from a library line used to carry that line's position after the
    -- user's ("x.lua:4: .../nn/module.lua:311: save_safetensors: ..."); the message names the
    -- function and points at the caller only.
    local m = ls.nn.mlp{hidden = {4}, input = 3, classes = 2}
    local data = {x = ls.randn({5, 3}), y = ls.tensor({1, 2, 1, 2, 1}, {dtype = "i64"})}
    local calls = {
        {"model:save to a missing folder", function() m:save("/nonexistent-dir/x.safetensors") end,
         "save_safetensors: /nonexistent-dir/x.safetensors"},
        {"clip_grad_norm with a negative bound", function() ls.optim.clip_grad_norm(m, -1) end,
         "clip_grad_norm: max_norm must be >= 0"},
        {"eigs with k past the size", function() ls.curvature.hessian(m, data):eigs{k = 100} end,
         "lanczos: k = 100 exceeds the operator size 26"},
    }
    for _, c in ipairs(calls) do
        it(c[1], function()
            local ok, err = pcall(c[2])
            assert.is_false(ok)
            local here = debug.getinfo(1, "S").short_src
            assert.truthy(err:find(c[3], 1, true), err)
            assert.truthy(err:find(here, 1, true), err)        -- the caller's line
            assert.is_nil(err:find("lualib/landscape/", 1, true), err)
            assert.is_nil(err:find("%.lua:%d+:.*%.lua:%d+:"), err)   -- one position only
        end)
    end
end)
