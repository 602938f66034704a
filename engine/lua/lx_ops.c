/* Every registry op as a Tensor method and a module function, driven by the op's lua_sig (op.h).
 * One closure (lx_op_call, upvalue = op id) parses the arguments for all of them. */
#include <math.h>
#include <string.h>

#include "lx.h"
#include "ops/ops.h"

/* A 1-based Lua index tensor -> a 0-based i64 tensor (new box on the stack). */
static ls_tensor *lx_index_input(lua_State *L, int arg, const char *who)
{
    ls_tensor *t = lx_totensor(L, arg);
    ls_tensor **box = lx_newtensorbox(L);
    if (!t && lua_istable(L, arg)) {   /* a plain Lua list of indices */
        int64_t n = (int64_t)luaL_len(L, arg);
        *box = ls_tensor_new(LS_I64, 1, &n);
        if (!*box) lx_error(L);
        int64_t *p = ls_tensor_data(*box);
        for (int64_t i = 0; i < n; i++) {
            lua_geti(L, arg, i + 1);
            int ok;
            p[i] = lua_tointegerx(L, -1, &ok) - 1;
            lua_pop(L, 1);
            if (!ok) luaL_error(L, "%s: index list entry %d is not an integer", who, (int)i + 1);
        }
        return *box;
    }
    if (!t) luaL_error(L, "%s: argument %d must be an index tensor or a list of indices", who, arg);
    if (t->dtype == LS_F32 || t->dtype == LS_F64)
        luaL_error(L, "%s: index tensor must be integer (i64), got %s", who, ls_dtype_name(t->dtype));
    *box = ls_tensor_cast(t, LS_I64);
    if (*box == t) {
        ls_tensor_release(*box);
        *box = ls_tensor_clone(t);
    }
    if (!*box) lx_error(L);
    int64_t *p = ls_tensor_data(*box), n = ls_tensor_numel(*box);
    for (int64_t i = 0; i < n; i++) p[i] -= 1;
    return *box;
}

/* The 1-based dim at stack slot idx -> 0-based (negative kept). `what` names it in errors:
 * "argument 2" or "dims[2]". */
static int lx_dim_value(lua_State *L, int idx, const char *who, const char *what)
{
    int ok;
    lua_Integer d = lua_tointegerx(L, idx, &ok);
    if (!ok) luaL_error(L, "%s: %s must be a dimension (integer), got %s", who, what,
                        lua_type(L, idx) == LUA_TNUMBER ? "a non-integer number"
                                                        : luaL_typename(L, idx));
    if (d == 0) luaL_error(L, "%s: dimension 0 is invalid (dims are 1-based; -1 is the last)", who);
    /* the op range-checks against its input's rank; here, only keep huge values from wrapping */
    if (d > LS_MAX_DIMS + 1 || d < -(LS_MAX_DIMS + 1))
        luaL_error(L, "%s: dimension %I out of range (a tensor has at most %d dims)", who,
                   (LUAI_UACINT)d, LS_MAX_DIMS);
    return d > 0 ? (int)d - 1 : (int)d;
}

static int lx_op_call(lua_State *L)
{
    int id = (int)lua_tointeger(L, lua_upvalueindex(1));
    const ls_op_def *def = ls_ops[id];
    const char *who = def->name;
    int top = lua_gettop(L);
    /* the dtype for Lua numbers standing in for tensors: the first tensor argument's */
    ls_dtype ref = LS_F32;
    int any_tensor = 0;
    for (int i = 1; i <= top; i++)
        if (lx_totensor(L, i)) { ref = lx_totensor(L, i)->dtype; any_tensor = 1; break; }
    /* x.reshape(2, 3) (a dot for a colon) passes the numbers only: say so rather than reshaping the
     * number 2. An op whose first argument is a tensor needs some tensor among its arguments. */
    if (!any_tensor && def->lua_sig[0] == 'T' && (top == 0 || lua_type(L, 1) == LUA_TNUMBER))
        return luaL_error(L, "%s: argument 1 must be a tensor, got %s (a method call needs a colon: "
                          "x:%s(...))", who, luaL_typename(L, 1), who);

    ls_tensor *in[LS_OP_MAX_INPUTS] = {0};
    int nin = 0;
    ls_attrs a = {0};
    a.all_dims = true;
    for (int k = 0; k < 4; k++) a.num[k] = NAN;
    int arg = 1;
    const char *s = def->lua_sig;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        char tok = *s++;
        int opt = (*s == '?');
        if (opt) s++;
        int absent = arg > top || lua_isnil(L, arg);
        if (absent && !opt && tok != 'k')
            return luaL_error(L, "%s: missing argument %d (signature %s)", who, arg, def->lua_sig);
        switch (tok) {
        case 'T': {
            ls_tensor *t = lx_totensor(L, arg);
            if (!t) {
                if (lua_type(L, arg) != LUA_TNUMBER)
                    return luaL_error(L, "%s: argument %d must be a tensor or a number, got %s", who,
                                      arg, luaL_typename(L, arg));
                t = lx_scalar_operand(L, arg, ref, who);
            }
            in[nin++] = t;
            arg++;
            break;
        }
        case 'X':
            in[nin++] = lx_index_input(L, arg, who);
            arg++;
            break;
        case 'n':
            if (!absent) a.num[a.nnum] = luaL_checknumber(L, arg);
            a.nnum++;
            arg++;
            break;
        case 'd':
            if (!absent) {
                lua_pushfstring(L, "argument %d", arg);
                int d = lx_dim_value(L, arg, who, lua_tostring(L, -1));
                lua_pop(L, 1);
                if (!a.has_dim) { a.dim = d; a.has_dim = true; }
                a.dims[a.ndims++] = d;
                a.all_dims = false;
            }
            arg++;
            break;
        case 'D':
            if (absent) { arg++; break; }
            a.all_dims = false;
            if (lua_istable(L, arg)) {
                lua_Integer n = luaL_len(L, arg);
                if (n > LS_MAX_DIMS)
                    return luaL_error(L, "%s: %I dims given (at most %d)", who, (LUAI_UACINT)n,
                                      LS_MAX_DIMS);
                for (int i = 0; i < (int)n; i++) {
                    lua_geti(L, arg, i + 1);
                    lua_pushfstring(L, "dims[%d]", i + 1);
                    a.dims[a.ndims++] = lx_dim_value(L, -2, who, lua_tostring(L, -1));
                    lua_pop(L, 2);
                }
                arg++;
            } else if (lua_type(L, arg) == LUA_TNUMBER) {   /* consecutive integers */
                while (arg <= top && lua_type(L, arg) == LUA_TNUMBER) {
                    if (a.ndims == LS_MAX_DIMS)
                        return luaL_error(L, "%s: more than %d dims given", who, LS_MAX_DIMS);
                    lua_pushfstring(L, "argument %d", arg);
                    a.dims[a.ndims++] = lx_dim_value(L, arg, who, lua_tostring(L, -1));
                    lua_pop(L, 1);
                    arg++;
                }
            } else if (!lua_isboolean(L, arg)) {   /* a boolean is the keepdim that follows */
                return luaL_error(L, "%s: argument %d must be a dimension, a table of dimensions "
                                  "or nil, got %s", who, arg, luaL_typename(L, arg));
            }
            break;
        case 'k':
            if (!absent && !lua_isboolean(L, arg))
                return luaL_error(L, "%s: argument %d (keepdim) must be a boolean, got %s", who, arg,
                                  luaL_typename(L, arg));
            a.keepdim = !absent && lua_toboolean(L, arg);
            arg++;
            break;
        case 'R': {
            const char *r = "mean";
            if (lua_istable(L, arg)) {
                static const char *const keys[] = {"reduction", NULL};
                lx_checkoptions(L, arg, keys, who);
                r = lx_optstring(L, arg, "reduction", "mean", who);
            } else if (!absent) {
                r = lx_checkcstring(L, arg, who, "the reduction");
            }
            double code = strcmp(r, "mean") == 0 ? LS_REDUCE_MEAN
                          : strcmp(r, "sum") == 0 ? LS_REDUCE_SUM
                          : strcmp(r, "none") == 0 ? LS_REDUCE_NONE : -1;
            if (code < 0)
                return luaL_error(L, "%s: reduction must be 'mean', 'sum' or 'none', got '%s'", who, r);
            a.num[a.nnum++] = code;
            arg++;
            break;
        }
        case 'S':
            a.nints = lx_checkshape(L, arg, a.ints, who);
            arg += lua_istable(L, arg) ? 1 : a.nints;
            break;
        case 'i':
        case 'I': {
            if (absent) { arg++; break; }
            int ok;
            lua_Integer v = lua_tointegerx(L, arg, &ok);
            if (!ok) return luaL_error(L, "%s: argument %d must be an integer, got %s", who, arg,
                                       lua_type(L, arg) == LUA_TNUMBER ? "a non-integer number"
                                                                       : luaL_typename(L, arg));
            if (tok == 'I') {
                if (v < 1) return luaL_error(L, "%s: index %I out of range (indices are 1-based)",
                                             who, (LUAI_UACINT)v);
                v -= 1;
            }
            if (a.nints == LS_MAX_DIMS) return luaL_error(L, "%s: too many integer arguments", who);
            a.ints[a.nints++] = v;
            arg++;
            break;
        }
        default:
            return luaL_error(L, "%s: bad signature token '%c' (engine bug)", who, tok);
        }
    }
    for (int i = top; i >= arg; i--)   /* arguments past the signature: ls.add(x, y, z) */
        if (!lua_isnil(L, i))
            return luaL_error(L, "%s: too many arguments (%d given, at most %d: signature %s)", who,
                              i, arg - 1, def->lua_sig);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_op_apply((ls_op_id)id, in, &a);
    if (!*box) return lx_error(L);
    if (def->returns_index) {   /* 0-based positions -> 1-based for Lua */
        int64_t *p = ls_tensor_data(*box), n = ls_tensor_numel(*box);
        for (int64_t i = 0; i < n; i++) p[i] += 1;
    }
    return 1;
}

/* _batchnorm_train(x, weight, bias, eps) -> y, mean, var: the batchnorm op (recorded as usual)
 * plus the batch mean and biased variance it used ([C], not recorded), so that BatchNorm's running
 * averages cost no extra pass over x (lualib/landscape/nn_layers.lua). Internal: no defaults. */
static int lx_batchnorm_train(lua_State *L)
{
    lx_checkarity(L, 4, "_batchnorm_train");
    ls_tensor *x = lx_checktensor(L, 1), *w = lx_checktensor(L, 2), *b = lx_checktensor(L, 3);
    double eps = luaL_checknumber(L, 4);
    ls_tensor **yb = lx_newtensorbox(L), **mb = lx_newtensorbox(L), **vb = lx_newtensorbox(L);
    *yb = ls_batchnorm_train(x, w, b, eps, mb, vb);
    if (!*yb) return lx_error(L);
    return 3;
}

/* The tensors of a Lua list (argument arg) for cat/stack: borrowed pointers in a userdata buffer
 * left on the stack; Lua numbers are not accepted (a list of tensors is asked for). */
static ls_tensor **lx_tensor_list(lua_State *L, int arg, const char *who, int *n)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer len = luaL_len(L, arg);
    if (len < 1) luaL_error(L, "%s: expected a non-empty list of tensors", who);
    if (len > LS_OP_MAX_VARIADIC)
        luaL_error(L, "%s: %I tensors given (at most %d)", who, (LUAI_UACINT)len,
                   LS_OP_MAX_VARIADIC);
    ls_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)len, 0);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_geti(L, arg, i);
        ts[i - 1] = lx_totensor(L, -1);
        if (!ts[i - 1])
            luaL_error(L, "%s: entry %I of the list is a %s, not a tensor", who, (LUAI_UACINT)i,
                       luaL_typename(L, -1));
        lua_pop(L, 1);   /* the list keeps the tensor alive */
    }
    *n = (int)len;
    return ts;
}

/* ls.cat(tensors, dim = 1): the tensors joined along dim (all other sizes equal). */
static int lx_cat(lua_State *L)
{
    int n, dim = 0;
    if (!lua_isnoneornil(L, 2)) {
        lua_Integer d = luaL_checkinteger(L, 2);
        if (d == 0 || d > LS_MAX_DIMS || d < -LS_MAX_DIMS)
            return luaL_error(L, "cat: dimension %I is invalid (dims are 1-based; -1 is the last)",
                              (LUAI_UACINT)d);
        dim = d > 0 ? (int)d - 1 : (int)d;
    }
    lua_settop(L, 2);   /* the list's buffer goes above the arguments */
    ls_tensor **ts = lx_tensor_list(L, 1, "cat", &n);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_cat(n, ts, dim);
    return *box ? 1 : lx_error(L);
}

/* ls.stack(tensors, dim = 1): equal-shaped tensors along a new dim at position dim (1..ndim+1,
 * negative counts from the end of the result). */
static int lx_stack(lua_State *L)
{
    int n, dim = 0;
    if (!lua_isnoneornil(L, 2)) {
        lua_Integer d = luaL_checkinteger(L, 2);
        if (d == 0 || d > LS_MAX_DIMS + 1 || d < -(LS_MAX_DIMS + 1))
            return luaL_error(L, "stack: dimension %I is invalid (dims are 1-based; -1 is the "
                              "last)", (LUAI_UACINT)d);
        dim = d > 0 ? (int)d - 1 : (int)d;
    }
    lua_settop(L, 2);   /* the list's buffer goes above the arguments */
    ls_tensor **ts = lx_tensor_list(L, 1, "stack", &n);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_stack(n, ts, dim);
    return *box ? 1 : lx_error(L);
}

/* help(f) for the registry ops (engine/ops), one entry per Lua name. */
static const lx_help lx_op_help[] = {
    {"reshape", "x:reshape(shape) -> Tensor (alias view)",
     "The same elements in a new shape (a table {2, 3} or integers; one size may be -1). A view "
     "when the strides allow, else a copy. Differentiable.",
     "ls.arange(6):reshape(2, 3)"},
    {"view", "x:view(shape) -> Tensor (alias of reshape)",
     "The same elements in a new shape (a table or integers; one size may be -1); unlike PyTorch "
     "it copies when the strides cannot express the shape. Differentiable.",
     "ls.arange(6):view(3, -1)"},
    {"permute", "x:permute(dims) -> Tensor",
     "A view with the dims reordered (1-based, one entry per dim). Differentiable.",
     "ls.zeros(2, 3, 4):permute(3, 1, 2):size()   --> {4, 2, 3}"},
    {"transpose", "x:transpose([d1 = 1, d2 = 2]) -> Tensor (alias t)",
     "A view with dims d1 and d2 swapped (1-based, negative from the end). Differentiable.",
     "ls.tensor({{1, 2}, {3, 4}}):transpose(1, 2)"},
    {"t", "x:t([d1 = 1, d2 = 2]) -> Tensor (alias of transpose)",
     "A view with dims d1 and d2 swapped; x:t() transposes a matrix. Differentiable.",
     "ls.randn({3, 4}):t():size()   --> {4, 3}"},
    {"narrow", "x:narrow(dim, start, length) -> Tensor",
     "A view of `length` entries of dim from 1-based `start` on. Differentiable.",
     "ls.arange(10):narrow(1, 3, 4)   --> [2, 3, 4, 5]"},
    {"select", "x:select(dim, index) -> Tensor",
     "A view of slice `index` (1-based) of dim, which is removed. Differentiable.",
     "ls.tensor({{1, 2}, {3, 4}}):select(1, 2)   --> [3, 4]"},
    {"squeeze", "x:squeeze([dim]) -> Tensor",
     "A view without dim (which must have size 1), or without every size-1 dim when none is "
     "given. Differentiable.",
     "ls.zeros(1, 3, 1):squeeze():size()   --> {3}"},
    {"unsqueeze", "x:unsqueeze(dim) -> Tensor",
     "A view with a new size-1 dim at position dim (1..ndim+1). Differentiable.",
     "ls.zeros(3):unsqueeze(1):size()   --> {1, 3}"},
    {"expand", "x:expand(shape) -> Tensor",
     "A view repeating size-1 dims (stride 0) up to shape (NumPy broadcasting). Differentiable "
     "(sum_to backward).",
     "ls.tensor({{1}, {2}}):expand(2, 3)"},
    {"contiguous", "x:contiguous() -> Tensor",
     "x with a row-major layout: x itself when it already has one, else a copy. Differentiable.",
     "ls.randn({3, 4}):t():contiguous():is_contiguous()   --> true"},
    {"neg", "x:neg() -> Tensor (also -x)",
     "The elementwise negation; on i64/u8 it gives i64 (wrapping). Differentiable for floats.",
     "-ls.tensor({1, -2})   --> [-1, 2]"},
    {"exp", "x:exp() -> Tensor",
     "e^x elementwise (f32/f64). Differentiable to any order.",
     "ls.tensor({0, 1}):exp()   --> [1, 2.7183]"},
    {"log", "x:log() -> Tensor",
     "The natural logarithm elementwise (f32/f64); log(0) = -inf. Differentiable.",
     "ls.tensor({1, math.exp(2)}):log()   --> [0, 2]"},
    {"sqrt", "x:sqrt() -> Tensor",
     "The square root elementwise (f32/f64); NaN below 0. Differentiable.",
     "ls.tensor({4, 9}):sqrt()   --> [2, 3]"},
    {"abs", "x:abs() -> Tensor",
     "|x| elementwise; its gradient is sign(x) (0 at 0).",
     "ls.tensor({-1.5, 2}):abs()   --> [1.5, 2]"},
    {"sign", "x:sign() -> Tensor",
     "-1, 0 or 1 elementwise; its gradient is 0.",
     "ls.tensor({-3, 0, 2}):sign()   --> [-1, 0, 1]"},
    {"relu", "x:relu() -> Tensor",
     "max(x, 0) elementwise; gradient 1 where x > 0, else 0.",
     "ls.tensor({-1, 2}):relu()   --> [0, 2]"},
    {"relu_backward", "ls.relu_backward(g, x) -> Tensor",
     "relu's gradient rule as one pass: g where x > 0, else 0 (broadcasting). Used by relu's "
     "backward; differentiable itself.",
     "ls.relu_backward(ls.ones(2), ls.tensor({-1, 1}))   --> [0, 1]"},
    {"tanh", "x:tanh() -> Tensor",
     "The hyperbolic tangent elementwise. Differentiable.",
     "ls.tensor({0, 100}):tanh()   --> [0, 1]"},
    {"sigmoid", "x:sigmoid() -> Tensor",
     "1 / (1 + e^-x) elementwise, computed stably. Differentiable.",
     "ls.tensor({0}):sigmoid()   --> [0.5]"},
    {"softplus", "x:softplus() -> Tensor",
     "log(1 + e^x) elementwise, computed stably. Differentiable.",
     "ls.tensor({0}):softplus()   --> [0.6931]"},
    {"erf", "x:erf() -> Tensor",
     "The error function elementwise (the Gaussian CDF behind exact GELU). Differentiable.",
     "ls.tensor({0, 10}):erf()   --> [0, 1]"},
    {"add", "x:add(y) -> Tensor (also x + y)",
     "The elementwise sum with NumPy broadcasting; y may be a number. Floats of one dtype, or "
     "integers (i64 result, wrapping). Differentiable for floats.",
     "ls.tensor({1, 2}):add(ls.tensor({{10}, {20}}))   --> [[11, 12], [21, 22]]"},
    {"sub", "x:sub(y) -> Tensor (also x - y)",
     "The elementwise difference with broadcasting; floats or integers as for add. "
     "Differentiable for floats.",
     "ls.tensor({5, 7}) - 1   --> [4, 6]"},
    {"mul", "x:mul(y) -> Tensor (also x * y)",
     "The elementwise product with broadcasting (not the matrix product: that is matmul); floats "
     "or integers as for add. Differentiable for floats.",
     "ls.tensor({1, 2}) * ls.tensor({3, 4})   --> [3, 8]"},
    {"div", "x:div(y) -> Tensor (also x / y)",
     "The elementwise quotient with broadcasting (f32/f64; convert integers with :double()). "
     "Differentiable.",
     "ls.tensor({1, 2}) / 4   --> [0.25, 0.5]"},
    {"pow", "x:pow(y) -> Tensor (also x ^ y)",
     "x to the power y elementwise, with broadcasting (f32/f64). The gradient in y is taken as 0 "
     "where x == 0.",
     "ls.tensor({2, 3}) ^ 2   --> [4, 9]"},
    {"minimum", "x:minimum(y) -> Tensor",
     "The elementwise minimum with broadcasting; ties split the gradient 0.5 / 0.5.",
     "ls.tensor({1, 5}):minimum(3)   --> [1, 3]"},
    {"maximum", "x:maximum(y) -> Tensor",
     "The elementwise maximum with broadcasting; ties split the gradient 0.5 / 0.5.",
     "ls.tensor({1, 5}):maximum(3)   --> [3, 5]"},
    {"clamp", "x:clamp([lo] [, hi]) -> Tensor (alias clip)",
     "x limited to [lo, hi] elementwise; a missing bound is unbounded, NaN stays NaN. The "
     "gradient passes where lo <= x <= hi.",
     "ls.tensor({-2, 0.5, 3}):clamp(0, 1)   --> [0, 0.5, 1]"},
    {"clip", "x:clip([lo] [, hi]) -> Tensor (alias of clamp)",
     "x limited to [lo, hi] elementwise; a missing bound is unbounded.",
     "ls.tensor({-2, 3}):clip(nil, 1)   --> [-2, 1]"},
    {"eq", "x:eq(y) -> Tensor",
     "1 where x == y, else 0, with broadcasting: in the inputs' float dtype, or f64 for integer "
     "inputs (exact). Not differentiable.",
     "pred:eq(labels):mean()   -- an accuracy"},
    {"ne", "x:ne(y) -> Tensor",
     "1 where x ~= y, else 0 (the mask dtype as eq). Not differentiable.",
     "ls.tensor({1, 2}):ne(1)   --> [0, 1]"},
    {"lt", "x:lt(y) -> Tensor",
     "1 where x < y, else 0 (the mask dtype as eq). Not differentiable.",
     "ls.tensor({1, 2, 3}):lt(2)   --> [1, 0, 0]"},
    {"le", "x:le(y) -> Tensor",
     "1 where x <= y, else 0 (the mask dtype as eq). Not differentiable.",
     "ls.tensor({1, 2, 3}):le(2)   --> [1, 1, 0]"},
    {"gt", "x:gt(y) -> Tensor",
     "1 where x > y, else 0 (the mask dtype as eq). Not differentiable.",
     "ls.tensor({1, 2, 3}):gt(2)   --> [0, 0, 1]"},
    {"ge", "x:ge(y) -> Tensor",
     "1 where x >= y, else 0 (the mask dtype as eq). Not differentiable.",
     "ls.tensor({1, 2, 3}):ge(2)   --> [0, 1, 1]"},
    {"where", "ls.where(cond, a, b) -> Tensor",
     "a where cond ~= 0, else b, all three broadcast (cond is usually a comparison's result). "
     "Differentiable in a and b.",
     "ls.where(ls.tensor({1, 0}), ls.tensor({1, 2}), -1)   --> [1, -1]"},
    {"sum", "x:sum([dims] [, keepdim]) -> Tensor",
     "The sum over dims (one, several, or a table; all when none), added in double with a fixed "
     "chunking (the same for any thread count). Differentiable.",
     "ls.tensor({{1, 2}, {3, 4}}):sum(2)   --> [3, 7]"},
    {"mean", "x:mean([dims] [, keepdim]) -> Tensor",
     "The mean over dims (all when none). Differentiable.",
     "ls.tensor({{1, 2}, {3, 4}}):mean(1)   --> [2, 3]"},
    {"var", "x:var([dims] [, keepdim] [, correction = 1]) -> Tensor",
     "The variance over dims, dividing by N - correction (1: Bessel's, as PyTorch; 0: "
     "population). Differentiable.",
     "ls.tensor({1, 2, 3, 4, 5}):var()   --> 2.5"},
    {"std", "x:std([dims] [, keepdim] [, correction = 1]) -> Tensor",
     "The standard deviation over dims (the square root of var). Differentiable.",
     "ls.tensor({1, 3}):std(nil, false, 0)   --> 1"},
    {"max", "x:max([dims] [, keepdim]) -> Tensor",
     "The maximum over dims; tied maxima share the gradient equally.",
     "ls.tensor({{1, 5}, {7, 2}}):max(2)   --> [5, 7]"},
    {"min", "x:min([dims] [, keepdim]) -> Tensor",
     "The minimum over dims; tied minima share the gradient equally.",
     "ls.tensor({{1, 5}, {7, 2}}):min(2)   --> [1, 2]"},
    {"argmax", "x:argmax([dim] [, keepdim]) -> Tensor (i64)",
     "The 1-based position of the maximum along dim (the first of ties); without dim the flat "
     "position in row-major order.",
     "ls.tensor({{1, 5}, {7, 2}}):argmax(2)   --> [2, 1]"},
    {"argmin", "x:argmin([dim] [, keepdim]) -> Tensor (i64)",
     "The 1-based position of the minimum along dim (the first of ties); without dim the flat "
     "position.",
     "ls.tensor({3, 1, 2}):argmin()   --> 2"},
    {"norm", "x:norm([p = 2] [, dims] [, keepdim]) -> Tensor",
     "The p-norm over dims (p = 1, 2 or math.huge). Differentiable.",
     "ls.tensor({3, 4}):norm()   --> 5"},
    {"logsumexp", "x:logsumexp([dims] [, keepdim]) -> Tensor",
     "log(sum(exp(x))) over dims, computed stably. Differentiable.",
     "ls.tensor({0, 0}):logsumexp()   --> 0.6931"},
    {"sum_to", "x:sum_to(shape) -> Tensor",
     "x summed down to a shape it was broadcast from (the adjoint of expand). Differentiable.",
     "ls.ones(2, 3):sum_to({1, 3})   --> [[2, 2, 2]]"},
    {"matmul", "a:matmul(b) -> Tensor (alias mm)",
     "The matrix product with torch.matmul's rules: 2-D @ 2-D, 1-D operands as a row or a "
     "column, leading dims as broadcast batch dims (* is elementwise). Differentiable.",
     "ls.tensor({{1, 2}, {3, 4}}):matmul(ls.tensor({1, 1}))   --> [3, 7]"},
    {"mm", "a:mm(b) -> Tensor (alias of matmul)",
     "The matrix product (torch.matmul's rules). Differentiable.",
     "ls.eye(2):mm(ls.ones(2, 3))"},
    {"linear", "x:linear(w, b) -> Tensor",
     "x @ w:t() + b (torch.nn.functional.linear) for x [..., in], w [out, in], b [out], the bias "
     "added inside the product. Differentiable.",
     "ls.ones(4, 3):linear(ls.ones(2, 3), ls.zeros(2))"},
    {"dot", "a:dot(b) -> Tensor (0-d)",
     "The inner product of two 1-D tensors, summed in double in fixed chunks. Differentiable.",
     "ls.tensor({1, 2}):dot(ls.tensor({3, 4}))   --> 11"},
    {"outer", "a:outer(b) -> Tensor",
     "The outer product of 1-D a (n) and b (m): [n x m]. Differentiable.",
     "ls.tensor({1, 2}):outer(ls.tensor({1, 10}))   --> [[1, 10], [2, 20]]"},
    {"linalg.solve", "ls.linalg.solve(A, B) -> Tensor",
     "X with A X = B for a square A [n x n] and B [n] or [n x k], by LU with partial pivoting "
     "(LAPACK ?gesv); a singular A is an error naming the zero pivot. Differentiable to any "
     "order.",
     "ls.linalg.solve(ls.tensor({{4, 1}, {1, 3}}, {dtype = 'f64'}), ls.tensor({1, 2}, {dtype = "
     "'f64'}))"},
    {"linalg.lstsq", "ls.linalg.lstsq(A, B) -> Tensor",
     "X minimising the residual of A X = B for A [m x n], B [m] or [m x k] (LAPACK ?gelsd, SVD): "
     "the minimum-norm solution when A is rank deficient. Gradients (any order) of the full-rank "
     "solution.",
     "ls.linalg.lstsq(ls.randn({10, 3}, {dtype = 'f64'}), ls.randn({10}, {dtype = 'f64'}))"},
    {"diag", "x:diag([k = 0]) -> Tensor",
     "For a 2-D x its diagonal k (k > 0 above the main one) as a 1-D tensor; for a 1-D x the "
     "square matrix with x on diagonal k. Differentiable to any order.",
     "ls.tensor({{1, 2}, {3, 4}}):diag()   --> [1, 4]"},
    {"trace", "x:trace() -> Tensor (0-d)",
     "The sum of the main diagonal of a 2-D x (any m x n), in double. Differentiable to any order.",
     "ls.eye(3):trace()   --> 3"},
    {"gather", "x:gather(dim, index) -> Tensor",
     "out[i][j] = x[i][index[i][j]] along dim (index: an i64 tensor or list of 1-based "
     "positions, shaped like the output). Differentiable in x.",
     "ls.tensor({{10, 20, 30}}):gather(2, ls.tensor({{3, 1}}, {dtype = 'i64'}))   --> [[30, 10]]"},
    {"scatter_add", "x:scatter_add(dim, index, src) -> Tensor",
     "A copy of x with src added at the 1-based positions index along dim (repeated positions "
     "add up). Differentiable in x and src.",
     "ls.zeros(1, 3):scatter_add(2, ls.tensor({{1, 1}}, {dtype = 'i64'}), ls.ones(1, 2))   --> "
     "[[2, 0, 0]]"},
    {"index_select", "x:index_select(dim, index) -> Tensor",
     "The slices of x along dim at the 1-based positions in index (a 1-D i64 tensor or a list). "
     "Differentiable in x.",
     "ls.tensor({{1, 2}, {3, 4}}):index_select(1, {2, 2})   --> [[3, 4], [3, 4]]"},
    {"index_add", "x:index_add(dim, index, src) -> Tensor",
     "A copy of x with the slices of src added at the 1-based positions index along dim. "
     "Differentiable in x and src.",
     "ls.zeros(3):index_add(1, {1, 3}, ls.tensor({5, 7}))   --> [5, 0, 7]"},
    {"conv2d", "ls.conv2d(x, w [, stride = 1 [, padding = 0]]) -> Tensor",
     "2-D cross-correlation of x [N, C, H, W] with weights w [O, C, kh, kw], zero padding "
     "(torch.nn.functional.conv2d without bias). Differentiable to any order.",
     "ls.conv2d(ls.ones(1, 1, 3, 3), ls.ones(1, 1, 2, 2))   --> [[[[4, 4], [4, 4]]]]"},
    {"maxpool2d", "x:maxpool2d(k [, stride = k]) -> Tensor",
     "The maximum of each k x k window of x [N, C, H, W] (no padding, floor mode). "
     "Differentiable to any order.",
     "ls.arange(16):reshape(1, 1, 4, 4):maxpool2d(2)   --> [[[[5, 7], [13, 15]]]]"},
    {"avgpool2d", "x:avgpool2d(k [, stride = k]) -> Tensor",
     "The mean of each k x k window of x [N, C, H, W] (no padding, floor mode). Differentiable "
     "to any order.",
     "ls.ones(1, 1, 4, 4):avgpool2d(2)   --> [[[[1, 1], [1, 1]]]]"},
    {"batchnorm", "ls.batchnorm(x, weight, bias [, eps = 1e-5]) -> Tensor",
     "Batch normalisation with the batch's statistics over every dim but the 2nd, then the "
     "affine weight and bias [C] (what nn.batchnorm1d/2d run in training). Differentiable to any "
     "order.",
     "ls.batchnorm(ls.randn({8, 3}), ls.ones(3), ls.zeros(3))"},
    {"batchnorm_grad_stats", "ls.batchnorm_grad_stats(g, x [, eps = 1e-5]) -> Tensor [4 x C]",
     "Part of batch norm's backward in one pass over g and x: per channel sum(g), sum(g * xhat), "
     "mean(x) and 1 / sqrt(var(x) + eps); a registered op so that the backward differentiates "
     "again.",
     "ls.batchnorm_grad_stats(ls.ones(4, 2), ls.randn({4, 2}))"},
    {"batchnorm_input_grad", "ls.batchnorm_input_grad(g, x, weight, stats) -> Tensor",
     "Batch norm's input gradient from the rows (A, B, mu, r) of stats [4 x C]: w r (g - A / n - "
     "(x - mu) r B / n), n values per channel; a registered op with a backward of its own.",
     "local x = ls.randn({4, 2}); ls.batchnorm_input_grad(ls.ones(4, 2), x, ls.ones(2), "
     "ls.batchnorm_grad_stats(ls.ones(4, 2), x))"},
    {"log_softmax", "x:log_softmax(dim) -> Tensor",
     "log(softmax(x)) along dim, computed stably. Differentiable.",
     "ls.tensor({{0, 0}}):log_softmax(2)   --> [[-0.6931, -0.6931]]"},
    {"softmax", "x:softmax(dim) -> Tensor",
     "exp(x) / sum(exp(x)) along dim, computed stably. Differentiable.",
     "ls.tensor({{0, 0}}):softmax(2)   --> [[0.5, 0.5]]"},
    {"cross_entropy", "scores:cross_entropy(labels [, reduction = 'mean']) -> Tensor",
     "The cross-entropy of scores [N x C] against labels 1..C (an i64 tensor or a list), fused "
     "log-softmax + NLL; reduction 'mean', 'sum' or 'none' (or {reduction = ...}). "
     "Differentiable to any order.",
     "ls.zeros(2, 3):cross_entropy({1, 3})   --> 1.0986"},
    {"nll_loss", "logp:nll_loss(labels [, reduction = 'mean']) -> Tensor",
     "The negative log-likelihood of log-probabilities [N x C] at labels 1..C. Differentiable.",
     "ls.tensor({{-1, -2}}):nll_loss({2})   --> 2"},
    {"mse_loss", "a:mse_loss(b [, reduction = 'mean']) -> Tensor",
     "The squared error between a and b (same shape), averaged, summed or kept ('none'). "
     "Differentiable.",
     "ls.tensor({1, 2}):mse_loss(ls.tensor({1, 4}))   --> 2"},
    {"one_hot", "ls.one_hot(labels, C) -> Tensor",
     "An f32 [N x C] of 0/1 with a 1 at each 1-based label; a constant (no gradient).",
     "ls.one_hot({2, 1}, 3)   --> [[0, 1, 0], [1, 0, 0]]"},
    {"cat", "ls.cat(tensors [, dim = 1]) -> Tensor",
     "The tensors of a list joined along dim (negative from the end): one dtype (any), one rank, "
     "equal sizes but dim's. Each input's gradient is its slice (any order).",
     "ls.cat({ls.ones(2, 2), ls.zeros(1, 2)}):size()   --> {3, 2}"},
    {"stack", "ls.stack(tensors [, dim = 1]) -> Tensor",
     "Equal-shaped tensors joined along a new dim at position dim (1..ndim+1, or negative). "
     "Differentiable.",
     "ls.stack({ls.ones(3), ls.zeros(3)}, 2):size()   --> {3, 2}"},
    {"detach", "x:detach() -> Tensor",
     "A tensor sharing x's storage outside the graph (no gradient flows through it).",
     "local y = (w * 2):detach()"},
    {NULL, NULL, NULL, NULL}};

/* Aliases Lua users expect (Torch7 / PyTorch names). */
static const struct { const char *alias, *op; } lx_op_aliases[] = {
    {"t", "transpose"}, {"view", "reshape"}, {"mm", "matmul"}, {"clip", "clamp"},
};

void lx_open_ops(lua_State *L)
{
    /* module table at -1 */
    lua_pushcfunction(L, lx_batchnorm_train);
    lua_setfield(L, -2, "_batchnorm_train");
    lua_pushcfunction(L, lx_cat);
    lua_setfield(L, -2, "cat");
    lua_pushcfunction(L, lx_stack);
    lua_setfield(L, -2, "stack");
    luaL_getmetatable(L, LX_TENSOR);
    lua_getfield(L, -1, "methods");
    for (int id = 0; id < LS_OP_COUNT; id++) {
        if (!ls_ops[id]->lua_sig) continue;
        const char *name = ls_ops[id]->name, *dot = strchr(name, '.');
        lua_pushinteger(L, id);
        lua_pushcclosure(L, lx_op_call, 1);
        if (dot) {   /* "linalg.solve": a function of the table ls.linalg only */
            lua_pushlstring(L, name, (size_t)(dot - name));
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -6) == LUA_TNIL) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -2);
                lua_pushvalue(L, -2);
                lua_rawset(L, -8);
            }
            lua_pushvalue(L, -3);
            lua_setfield(L, -2, dot + 1);
            lua_pop(L, 3);
            continue;
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);   /* method */
        lua_setfield(L, -4, name);   /* module function */
    }
    for (size_t i = 0; i < sizeof lx_op_aliases / sizeof lx_op_aliases[0]; i++) {
        lua_getfield(L, -1, lx_op_aliases[i].op);
        if (lua_isnil(L, -1)) { lua_pop(L, 1); continue; }
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, lx_op_aliases[i].alias);
        lua_setfield(L, -4, lx_op_aliases[i].alias);
    }
    lua_pop(L, 2);
    lx_add_help(L, -1, lx_op_help);
}
