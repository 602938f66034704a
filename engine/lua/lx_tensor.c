/* The Tensor userdata: lifetime, creation, properties, element access, tables, printing and the
 * arithmetic metamethods. Registry ops become methods in lx_ops.c; autograd in lx_autograd.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/autograd.h"
#include "lx.h"
#include "ops/ops.h"

/* ---- lifetime: one idempotent function is both __gc and __close ---- */
static int lx_tensor_gc(lua_State *L)
{
    ls_tensor **box = luaL_checkudata(L, 1, LX_TENSOR);
    ls_tensor_release(*box);
    *box = NULL;
    return 0;
}

/* ---- creation ---- */

/* Shape from a nested Lua table (checks that it is rectangular). */
static int lx_table_shape(lua_State *L, int idx, int64_t *shape)
{
    int n = 0;
    lua_pushvalue(L, idx);
    while (lua_istable(L, -1)) {
        if (n == LS_MAX_DIMS) luaL_error(L, "tensor: nesting deeper than %d", LS_MAX_DIMS);
        shape[n++] = (int64_t)luaL_len(L, -1);
        if (shape[n - 1] == 0) break;
        lua_geti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return n;
}

/* Element `index` of an i64 tensor, read and written as integers: 64-bit values pass between Lua
 * and i64 tensors exactly (a double holds only 53 bits). */
static int64_t *lx_i64_at(const ls_tensor *t, const int64_t *index)
{
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) off += index[d] * t->stride[d];
    return (int64_t *)ls_tensor_data(t) + off;
}

static void lx_table_fill(lua_State *L, int idx, ls_tensor *t, int d, int64_t *index)
{
    int64_t len = (int64_t)luaL_len(L, idx);
    if (len != t->shape[d])   /* lua_pushfstring knows %I (lua_Integer), not %lld */
        luaL_error(L, "tensor: ragged table: dimension %d has length %I here, %I elsewhere", d + 1,
                   (LUAI_UACINT)len, (LUAI_UACINT)t->shape[d]);
    for (int64_t i = 0; i < len; i++) {
        index[d] = i;
        lua_geti(L, idx, i + 1);
        if (d + 1 < t->ndim) {
            if (!lua_istable(L, -1)) luaL_error(L, "tensor: ragged table: expected a table at depth %d", d + 2);
            lx_table_fill(L, lua_gettop(L), t, d + 1, index);
        } else if (t->dtype == LS_I64 && lua_isinteger(L, -1)) {
            *lx_i64_at(t, index) = (int64_t)lua_tointeger(L, -1);
        } else {
            int isnum;
            double v = lua_tonumberx(L, -1, &isnum);
            if (!isnum) {
                if (lua_isboolean(L, -1)) v = lua_toboolean(L, -1);
                else luaL_error(L, "tensor: element is a %s, expected a number", luaL_typename(L, -1));
            }
            ls_tensor_set(t, index, v);
        }
        lua_pop(L, 1);
    }
}

/* ls.tensor(table_or_number [, {dtype =}]) */
static int lx_tensor_new(lua_State *L)
{
    lx_checkarity(L, 2, "tensor");
    lua_settop(L, 2);   /* fix the options slot before pushing results */
    static const char *const keys[] = {"dtype", "requires_grad", NULL};
    lx_checkoptions(L, 2, keys, "tensor");
    ls_dtype dt = lx_optdtype(L, 2, "dtype", LS_F32, "tensor");
    int rg = lx_optboolean(L, 2, "requires_grad", 0, "tensor");
    ls_tensor **box = lx_newtensorbox(L);
    if (lua_type(L, 1) == LUA_TNUMBER) {
        *box = ls_tensor_scalar(dt, lua_tonumber(L, 1));
    } else if (lua_istable(L, 1)) {
        int64_t shape[LS_MAX_DIMS], index[LS_MAX_DIMS] = {0};
        int nd = lx_table_shape(L, 1, shape);
        if (ls_shape_check("tensor", nd, shape, NULL)) return lx_error(L);
        *box = ls_tensor_new(dt, nd, shape);
        /* also when empty: {{}, {1}} is ragged, not a [2x0] tensor */
        if (*box) lx_table_fill(L, 1, *box, 0, index);
    } else if (lx_totensor(L, 1)) {
        *box = ls_tensor_cast(lx_totensor(L, 1), dt);
        if (*box && *box == lx_totensor(L, 1)) {
            ls_tensor_release(*box);
            *box = ls_tensor_clone(lx_totensor(L, 1));
        }
    } else {
        return luaL_argerror(L, 1, "tensor: expected a table, a number or a tensor");
    }
    if (!*box) return lx_error_in(L, "tensor");
    if (rg && ls_requires_grad_(*box, true)) return lx_error(L);
    return 1;
}

/* The options of the constructors that take only a dtype. */
static const char *const lx_dtype_key[] = {"dtype", NULL};

/* Shape arguments followed by an optional options table: f(shape..., opts) */
static int lx_shape_and_opts(lua_State *L, int idx, int64_t *shape, int *opts, const char *who)
{
    int nd = lx_checkshape(L, idx, shape, who);
    *opts = lua_istable(L, idx) ? idx + 1 : idx + nd;
    if (!lua_isnoneornil(L, *opts) && !lua_istable(L, *opts))
        luaL_error(L, "%s: expected a shape (a table or integers) and an options table, got %s at "
                   "argument %d", who, luaL_typename(L, *opts), *opts);
    lx_checkarity(L, *opts, who);
    lua_settop(L, *opts);
    return nd;
}

static int lx_filled(lua_State *L, const char *who, int has_value)
{
    int64_t shape[LS_MAX_DIMS];
    int opts;
    double v = 0;
    int first = 1;
    if (has_value) v = luaL_checknumber(L, 2), first = 1;
    int nd;
    if (has_value) {   /* full(shape, value, opts) */
        if (!lua_istable(L, 1)) return luaL_argerror(L, 1, "full: shape must be a table");
        nd = lx_checkshape(L, 1, shape, who);
        opts = 3;
        lx_checkarity(L, 3, who);
        lua_settop(L, 3);
    } else {
        nd = lx_shape_and_opts(L, first, shape, &opts, who);
    }
    if (ls_shape_check(who, nd, shape, NULL)) return lx_error(L);
    lx_checkoptions(L, opts, lx_dtype_key, who);
    ls_dtype dt = lx_optdtype(L, opts, "dtype", LS_F32, who);
    ls_tensor **box = lx_newtensorbox(L);
    if (strcmp(who, "zeros") == 0) *box = ls_tensor_zeros(dt, nd, shape);
    else *box = ls_tensor_full(dt, nd, shape, strcmp(who, "ones") == 0 ? 1.0 : v);
    if (!*box) return lx_error_in(L, who);
    return 1;
}
static int lx_zeros(lua_State *L) { return lx_filled(L, "zeros", 0); }
static int lx_ones(lua_State *L) { return lx_filled(L, "ones", 0); }
static int lx_full(lua_State *L) { return lx_filled(L, "full", 1); }

static int lx_like(lua_State *L, double v, const char *who)
{
    ls_tensor *t = lx_checktensor(L, 1);
    lx_checkarity(L, 2, who);
    lua_settop(L, 2);
    lx_checkoptions(L, 2, lx_dtype_key, who);
    ls_dtype dt = lx_optdtype(L, 2, "dtype", t->dtype, who);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_tensor_full(dt, t->ndim, t->shape, v);
    if (!*box) return lx_error_in(L, who);
    return 1;
}
static int lx_zeros_like(lua_State *L) { return lx_like(L, 0, "zeros_like"); }
static int lx_ones_like(lua_State *L) { return lx_like(L, 1, "ones_like"); }

/* ls.arange(stop) / ls.arange(start, stop [, step]) [, {dtype}] — PyTorch's half-open range */
static int lx_arange(lua_State *L)
{
    int n = 0;
    double a[3];
    while (n < 3 && lua_type(L, n + 1) == LUA_TNUMBER) { a[n] = lua_tonumber(L, n + 1); n++; }
    if (n == 0) return luaL_error(L, "arange: expected arange(stop), arange(start, stop) or "
                                     "arange(start, stop, step)");
    double start = n >= 2 ? a[0] : 0, stop = n >= 2 ? a[1] : a[0], step = n == 3 ? a[2] : 1;
    lx_checkarity(L, n + 1, "arange");
    lua_settop(L, n + 1);
    lx_checkoptions(L, n + 1, lx_dtype_key, "arange");
    ls_dtype dt = lx_optdtype(L, n + 1, "dtype", LS_F32, "arange");
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_tensor_arange(dt, start, stop, step);
    if (!*box) return lx_error_in(L, "arange");
    return 1;
}

static int lx_eye(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = lua_type(L, 2) == LUA_TNUMBER ? luaL_checkinteger(L, 2) : n;
    int opts = lua_type(L, 2) == LUA_TNUMBER ? 3 : 2;
    lx_checkarity(L, opts, "eye");
    if (ls_shape_check("eye", 2, (int64_t[]){n, m}, NULL)) return lx_error(L);
    lua_settop(L, opts);
    lx_checkoptions(L, opts, lx_dtype_key, "eye");
    ls_dtype dt = lx_optdtype(L, opts, "dtype", LS_F32, "eye");
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_tensor_eye(dt, n, m);
    if (!*box) return lx_error_in(L, "eye");
    return 1;
}

/* ---- properties and queries ---- */

static void lx_pushshape(lua_State *L, const ls_tensor *t)
{
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* x:size() -> {3, 4}; x:size(d) -> the size of dim d */
static int lx_tensor_size(lua_State *L)
{
    lx_checkarity(L, 2, "size");
    ls_tensor *t = lx_checktensor(L, 1);
    if (lua_isnoneornil(L, 2)) {
        lx_pushshape(L, t);
        return 1;
    }
    lua_pushinteger(L, t->shape[lx_checkdim(L, 2, t->ndim, "size")]);
    return 1;
}

static int lx_tensor_stride(lua_State *L)
{
    lx_checkarity(L, 1, "stride");
    ls_tensor *t = lx_checktensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->stride[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int lx_tensor_dim(lua_State *L)
{
    lx_checkarity(L, 1, "dim");
    lua_pushinteger(L, lx_checktensor(L, 1)->ndim);
    return 1;
}

static int lx_tensor_numel(lua_State *L)
{
    lx_checkarity(L, 1, "numel");
    lua_pushinteger(L, ls_tensor_numel(lx_checktensor(L, 1)));
    return 1;
}

static int lx_tensor_dtype(lua_State *L)
{
    lx_checkarity(L, 1, "type");
    lua_pushstring(L, ls_dtype_name(lx_checktensor(L, 1)->dtype));
    return 1;
}

static int lx_tensor_is_contiguous(lua_State *L)
{
    lx_checkarity(L, 1, "is_contiguous");
    lua_pushboolean(L, ls_tensor_is_contiguous(lx_checktensor(L, 1)));
    return 1;
}

/* x:equal(y): torch.equal, a Lua boolean (not recorded) */
static int lx_tensor_equal(lua_State *L)
{
    lx_checkarity(L, 2, "equal");
    lua_pushboolean(L, ls_tensor_equal(lx_checktensor(L, 1), lx_checktensor(L, 2)));
    return 1;
}

/* x:item(): the value of a one-element tensor */
static int lx_tensor_item(lua_State *L)
{
    lx_checkarity(L, 1, "item");
    ls_tensor *t = lx_checktensor(L, 1);
    if (ls_tensor_numel(t) != 1)
        return luaL_error(L, "item: tensor of shape %s has %I elements, expected 1",
                          ls_tensor_shape_str(t), (LUAI_UACINT)ls_tensor_numel(t));
    if (t->dtype == LS_I64) {
        lua_pushinteger(L, (lua_Integer) * (const int64_t *)ls_tensor_data(t));
        return 1;
    }
    double v = ls_tensor_get_flat(t, 0);
    if (ls_dtype_is_float(t->dtype)) lua_pushnumber(L, v);
    else lua_pushinteger(L, (lua_Integer)v);
    return 1;
}

static void lx_pushelement(lua_State *L, const ls_tensor *t, const int64_t *index)
{
    if (t->dtype == LS_I64) {
        lua_pushinteger(L, (lua_Integer)*lx_i64_at(t, index));
        return;
    }
    double v = ls_tensor_get(t, index);
    if (ls_dtype_is_float(t->dtype)) lua_pushnumber(L, v);
    else lua_pushinteger(L, (lua_Integer)v);
}

static void lx_totable_rec(lua_State *L, const ls_tensor *t, int d, int64_t *index)
{
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        index[d] = i;
        if (d + 1 < t->ndim) lx_totable_rec(L, t, d + 1, index);
        else lx_pushelement(L, t, index);
        lua_rawseti(L, -2, i + 1);
    }
}

/* x:totable(): nested Lua tables (a number for a 0-d tensor) */
#define LX_TOTABLE_MAX (INT64_C(1) << 28)
static int lx_tensor_totable(lua_State *L)
{
    lx_checkarity(L, 1, "totable");
    ls_tensor *t = lx_checktensor(L, 1);
    int64_t index[LS_MAX_DIMS] = {0};
    if (ls_tensor_numel(t) > LX_TOTABLE_MAX)
        return luaL_error(L, "totable: a tensor of shape %s has %I elements, more than a Lua table "
                          "should hold (at most 2^28)", ls_tensor_shape_str(t),
                          (LUAI_UACINT)ls_tensor_numel(t));
    if (t->ndim == 0) lx_pushelement(L, t, index);
    else lx_totable_rec(L, t, 0, index);
    return 1;
}

/* ---- copies, casts, in-place fills ---- */

static int lx_tensor_clone(lua_State *L)
{
    lx_checkarity(L, 1, "clone");
    ls_tensor *t = lx_checktensor(L, 1);
    ls_tensor **box = lx_newtensorbox(L);
    /* A tensor in a graph is cloned through a recorded op (x + 0, a fresh buffer) so gradients flow
     * through the copy as in PyTorch; otherwise a plain copy. */
    if (t->requires_grad) *box = ls_add_scalar(t, 0.0);
    else *box = ls_tensor_clone(t);
    if (!*box) return lx_error_in(L, "clone");
    return 1;
}

static int lx_cast_to(lua_State *L, ls_dtype d)
{
    ls_tensor *t = lx_checktensor(L, 1);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_cast(t, d);
    if (!*box) return lx_error_in(L, "cast");
    return 1;
}
static int lx_tensor_cast(lua_State *L)
{
    lx_checkarity(L, 2, "cast");
    const char *s = lx_checkcstring(L, 2, "cast", "the dtype");
    ls_dtype d;
    if (ls_dtype_parse(s, &d) != 0)
        return luaL_error(L, "cast: unknown dtype '%s' (expected f32, f64, i64 or u8)", s);
    return lx_cast_to(L, d);
}
static int lx_cast_method(lua_State *L, ls_dtype d, const char *who)
{
    lx_checkarity(L, 1, who);
    return lx_cast_to(L, d);
}
static int lx_tensor_float(lua_State *L) { return lx_cast_method(L, LS_F32, "float"); }
static int lx_tensor_double(lua_State *L) { return lx_cast_method(L, LS_F64, "double"); }
static int lx_tensor_long(lua_State *L) { return lx_cast_method(L, LS_I64, "long"); }
static int lx_tensor_byte(lua_State *L) { return lx_cast_method(L, LS_U8, "byte"); }

static int lx_check_inplace(lua_State *L, ls_tensor *t, const char *who)
{
    if (t->requires_grad)
        return luaL_error(L, "%s: in-place change of a tensor that requires grad (shape %s); use "
                          "detach() or ls.no_grad", who, ls_tensor_shape_str(t));
    return 0;
}

/* x:fill(v) -> x */
static int lx_tensor_fill(lua_State *L)
{
    lx_checkarity(L, 2, "fill");
    ls_tensor *t = lx_checktensor(L, 1);
    double v = luaL_checknumber(L, 2);
    lx_check_inplace(L, t, "fill");
    ls_tensor_fill_(t, v);
    lua_settop(L, 1);
    return 1;
}

static int lx_tensor_zero(lua_State *L)
{
    lx_checkarity(L, 1, "zero");
    ls_tensor *t = lx_checktensor(L, 1);
    lx_check_inplace(L, t, "zero");
    ls_tensor_fill_(t, 0);
    lua_settop(L, 1);
    return 1;
}

/* x:copy(src) -> x (src broadcast to x's shape, dtype converted) */
static int lx_tensor_copy(lua_State *L)
{
    lx_checkarity(L, 2, "copy");
    ls_tensor *t = lx_checktensor(L, 1);
    ls_tensor *s = lx_checktensor(L, 2);
    lx_check_inplace(L, t, "copy");
    if (ls_tensor_copy_(t, s)) return lx_error(L);
    lua_settop(L, 1);
    return 1;
}

/* ---- indexing: x[i] (1-based) selects along dim 1; a number for 1-d tensors ---- */

static int64_t lx_checkindex(lua_State *L, const ls_tensor *t, lua_Integer i)
{
    if (t->ndim == 0) luaL_error(L, "index: cannot index a 0-d tensor");
    int64_t n = t->shape[0];
    lua_Integer j = i < 0 ? i + n + 1 : i;   /* -1 is the last; the error names i as given */
    if (j < 1 || j > n)
        luaL_error(L, "index: index %I out of range for dimension 1 of size %I (indices are "
                   "1-based, negative from the end)", (LUAI_UACINT)i, (LUAI_UACINT)n);
    return j - 1;
}

static int lx_tensor_index(lua_State *L)
{
    ls_tensor **tbox = luaL_checkudata(L, 1, LX_TENSOR);
    if (!*tbox) {   /* name what was asked of the closed tensor: x:sum() -> "... ('sum')" */
        if (lua_type(L, 2) == LUA_TSTRING)
            return luaL_error(L, "tensor has been closed (using '%s')", lua_tostring(L, 2));
        return luaL_error(L, "tensor has been closed");
    }
    ls_tensor *t = *tbox;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        int64_t i = lx_checkindex(L, t, luaL_checkinteger(L, 2));
        if (t->ndim == 1) {
            lx_pushelement(L, t, &i);
            return 1;
        }
        ls_tensor **box = lx_newtensorbox(L);
        *box = ls_select(t, 0, i);
        if (!*box) return lx_error_in(L, "index");
        return 1;
    }
    const char *k = lua_tostring(L, 2);
    if (k && lua_type(L, 2) == LUA_TSTRING) {   /* properties */
        if (strcmp(k, "grad") == 0) {
            if (t->grad) *lx_newtensorbox(L) = ls_tensor_retain(t->grad);
            else lua_pushnil(L);
            return 1;
        }
        if (strcmp(k, "needs_grad") == 0) { lua_pushboolean(L, t->requires_grad); return 1; }
        if (strcmp(k, "is_leaf") == 0) { lua_pushboolean(L, t->grad_fn == NULL); return 1; }
        if (strcmp(k, "grad_fn") == 0) {
            if (t->grad_fn) lua_pushstring(L, ls_ops[t->grad_fn->op]->name);
            else lua_pushnil(L);
            return 1;
        }
        if (strcmp(k, "shape") == 0) { lx_pushshape(L, t); return 1; }
        if (strcmp(k, "ndim") == 0) { lua_pushinteger(L, t->ndim); return 1; }
        if (strcmp(k, "dtype") == 0) { lua_pushstring(L, ls_dtype_name(t->dtype)); return 1; }
    }
    /* methods */
    luaL_getmetatable(L, LX_TENSOR);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int lx_tensor_newindex(lua_State *L)
{
    ls_tensor *t = lx_checktensor(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        int64_t i = lx_checkindex(L, t, luaL_checkinteger(L, 2));
        lx_check_inplace(L, t, "index assignment");
        if (lua_type(L, 3) != LUA_TNUMBER && !lx_totensor(L, 3))
            return luaL_error(L, "index assignment: the value must be a number or a tensor, got %s",
                              luaL_typename(L, 3));
        if (t->ndim == 1) {
            if (lua_type(L, 3) != LUA_TNUMBER)
                return luaL_error(L, "index assignment: an element of a 1-d tensor takes a number, "
                                  "got a tensor");
            ls_tensor_set(t, &i, lua_tonumber(L, 3));
            return 0;
        }
        ls_tensor **box = lx_newtensorbox(L);   /* the view, collected with the box */
        *box = ls_view_select(t, 0, i);
        if (!*box) return lx_error_in(L, "index assignment");
        ls_status rc = lua_type(L, 3) == LUA_TNUMBER ? ls_tensor_fill_(*box, lua_tonumber(L, 3))
                                                     : ls_tensor_copy_(*box, lx_totensor(L, 3));
        if (rc) return lx_error(L);
        return 0;
    }
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "grad") == 0) {
        ls_tensor *g = lua_isnil(L, 3) ? NULL : lx_checktensor(L, 3);
        if (g && (g->ndim != t->ndim || memcmp(g->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim)
                  || g->dtype != t->dtype))
            return luaL_error(L, "grad: assigning a %s %s gradient to a %s %s tensor",
                              ls_tensor_shape_str(g), ls_dtype_name(g->dtype),
                              ls_tensor_shape_str(t), ls_dtype_name(t->dtype));
        ls_tensor *d = g ? ls_detach(g) : NULL;
        if (g && !d) return lx_error(L);
        ls_tensor_release(t->grad);
        t->grad = d;
        return 0;
    }
    if (strcmp(k, "requires_grad") == 0) {
        if (ls_requires_grad_(t, lua_toboolean(L, 3))) return lx_error(L);
        return 0;
    }
    return luaL_error(L, "tensor: cannot set field '%s'", k);
}

static int lx_tensor_len(lua_State *L)
{
    ls_tensor *t = lx_checktensor(L, 1);
    if (t->ndim == 0) return luaL_error(L, "len: a 0-d tensor has no length");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

/* ---- printing ----
 * Like PyTorch: nested brackets, one shared number format chosen from the values (fixed with 4
 * decimals, or scientific when the range calls for it), and a summary with "..." past 1000 elements. */

typedef struct {
    luaL_Buffer *b;
    const ls_tensor *t;
    int sci, isint, width, summarize;
} lx_fmt;

static void lx_fmt_value(lx_fmt *f, double v)
{
    char s[64];
    if (isnan(v)) snprintf(s, sizeof s, "%*s", f->width, "nan");   /* not glibc's "-nan" */
    else if (f->isint) snprintf(s, sizeof s, "%*lld", f->width, (long long)v);
    else if (f->sci) snprintf(s, sizeof s, "%*.4e", f->width, v);
    else snprintf(s, sizeof s, "%*.4f", f->width, v);
    luaL_addstring(f->b, s);
}

static void lx_fmt_rec(lx_fmt *f, int d, int64_t *index, int indent)
{
    const ls_tensor *t = f->t;
    luaL_addchar(f->b, '[');
    int64_t n = t->shape[d];
    for (int64_t i = 0; i < n; i++) {
        if (f->summarize && n > 6 && i == 3) {
            luaL_addstring(f->b, d + 1 < t->ndim ? "...,\n" : "..., ");
            if (d + 1 < t->ndim)
                for (int s = 0; s < indent + 1; s++) luaL_addchar(f->b, ' ');
            i = n - 3;
        }
        index[d] = i;
        if (d + 1 < t->ndim) lx_fmt_rec(f, d + 1, index, indent + 1);
        else lx_fmt_value(f, ls_tensor_get(t, index));
        if (i + 1 < n) {
            luaL_addchar(f->b, ',');
            if (d + 1 < t->ndim) {
                for (int r = d + 1; r < t->ndim; r++) luaL_addchar(f->b, '\n');
                for (int s = 0; s < indent + 1; s++) luaL_addchar(f->b, ' ');
            } else {
                luaL_addchar(f->b, ' ');
            }
        }
    }
    luaL_addchar(f->b, ']');
}

static int lx_tensor_tostring(lua_State *L)
{
    ls_tensor **box = luaL_checkudata(L, 1, LX_TENSOR);
    if (!*box) {
        lua_pushstring(L, "tensor(closed)");
        return 1;
    }
    const ls_tensor *t = *box;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lx_fmt f = {&b, t, 0, !ls_dtype_is_float(t->dtype), 0, ls_tensor_numel(t) > 1000};
    /* choose the format from the printed values' magnitudes */
    double amax = 0, amin = INFINITY;
    int64_t numel = ls_tensor_numel(t);
    int nonfinite = 0;
    for (int64_t i = 0; i < numel; i += (f.summarize ? (numel / 997 + 1) : 1)) {
        double v = fabs(ls_tensor_get_flat(t, i));
        if (!isfinite(v)) { nonfinite = 1; continue; }
        if (v > amax) amax = v;
        if (v > 0 && v < amin) amin = v;
    }
    (void)nonfinite;
    if (f.isint) {
        char s[32];
        f.width = snprintf(s, sizeof s, "%lld", (long long)amax) + 1;
    } else {
        f.sci = amax >= 1e5 || (amin < 1e-4 && amin > 0);
        char s[64];
        f.width = f.sci ? 11 : snprintf(s, sizeof s, "%.4f", amax) + 1;
    }
    luaL_addstring(&b, "tensor(");
    int64_t index[LS_MAX_DIMS] = {0};
    if (t->ndim == 0) {
        f.width = 0;
        lx_fmt_value(&f, ls_tensor_get(t, index));
    } else if (numel == 0) {
        luaL_addstring(&b, "[]");
    } else {
        lx_fmt_rec(&f, 0, index, 7);
    }
    char tail[160];
    snprintf(tail, sizeof tail, ", dtype=%s, shape=%s%s)", ls_dtype_name(t->dtype),
             ls_tensor_shape_str(t), t->requires_grad ? ", requires_grad" : "");
    luaL_addstring(&b, tail);
    luaL_pushresult(&b);
    return 1;
}

/* ---- arithmetic metamethods: either side may be a Lua number ---- */

/* The Lua number at idx as a 0-d tensor of dtype `ref` (the other operand's), in a new box on the
 * stack. A number next to an integer tensor must be integral: it is never truncated. */
ls_tensor *lx_scalar_operand(lua_State *L, int idx, ls_dtype ref, const char *who)
{
    if (!ls_dtype_is_float(ref) && !lua_isinteger(L, idx)) {
        lua_Number v = lua_tonumber(L, idx);
        if (!(v >= -9.2233720368547758e18 && v < 9.2233720368547758e18 &&
              v == (lua_Number)(lua_Integer)v))
            luaL_error(L, "%s: %s is not an integer, and the other operand is %s (convert it with "
                       ":double() first)", who, lua_tostring(L, idx), ls_dtype_name(ref));
    }
    ls_tensor **box = lx_newtensorbox(L);   /* stays on the stack until the caller returns */
    if (ref == LS_I64 && lua_isinteger(L, idx)) {   /* exactly, all 64 bits */
        if ((*box = ls_tensor_new(LS_I64, 0, NULL)))
            *(int64_t *)ls_tensor_data(*box) = (int64_t)lua_tointeger(L, idx);
    } else {
        *box = ls_tensor_scalar(ref, lua_tonumber(L, idx));
    }
    if (!*box) lx_error_in(L, who);
    return *box;
}

static ls_tensor *lx_operand(lua_State *L, int idx, const ls_tensor *other, const char *who)
{
    ls_tensor *t = lx_totensor(L, idx);
    if (t) return t;
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "%s: expected a tensor or a number, got %s", who, luaL_typename(L, idx));
    return lx_scalar_operand(L, idx, other->dtype, who);
}

static int lx_binary_meta(lua_State *L, ls_tensor *(*fn)(ls_tensor *, ls_tensor *), const char *who)
{
    ls_tensor *other = lx_totensor(L, 1) ? lx_totensor(L, 1) : lx_totensor(L, 2);
    if (other == NULL) return luaL_error(L, "%s: no tensor operand", who);
    ls_tensor *a = lx_operand(L, 1, other, who);
    ls_tensor *b = lx_operand(L, 2, other, who);
    ls_tensor **box = lx_newtensorbox(L);
    *box = fn(a, b);
    if (!*box) return lx_error(L);
    return 1;
}
static int lx_meta_add(lua_State *L) { return lx_binary_meta(L, ls_add, "add"); }
static int lx_meta_sub(lua_State *L) { return lx_binary_meta(L, ls_sub, "sub"); }
static int lx_meta_mul(lua_State *L) { return lx_binary_meta(L, ls_mul, "mul"); }
static int lx_meta_div(lua_State *L) { return lx_binary_meta(L, ls_div, "div"); }
static int lx_meta_pow(lua_State *L) { return lx_binary_meta(L, ls_pow, "pow"); }

static int lx_meta_unm(lua_State *L)
{
    ls_tensor *t = lx_checktensor(L, 1);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_neg(t);
    if (!*box) return lx_error(L);
    return 1;
}

/* ls.is_tensor(v) */
static int lx_is_tensor(lua_State *L)
{
    lx_checkarity(L, 1, "is_tensor");
    lua_pushboolean(L, luaL_testudata(L, 1, LX_TENSOR) != NULL);   /* closed ones too */
    return 1;
}

/* help(f) for the functions below (lx_add_help). */
static const lx_help lx_tensor_help[] = {
    {"tensor", "ls.tensor(values [, {dtype = 'f32'}]) -> Tensor",
     "A tensor from a number (0-d), a nested table of numbers (its shape from the nesting; "
     "ragged tables are an error) or another tensor (copied). i64 values are taken exactly.",
     "ls.tensor({{1, 2}, {3, 4}}, {dtype = 'f64'})"},
    {"zeros", "ls.zeros(shape [, {dtype = 'f32'}]) -> Tensor",
     "A tensor of zeros; shape is a table {2, 3} or integers 2, 3 (none: 0-d).",
     "ls.zeros(2, 3)"},
    {"ones", "ls.ones(shape [, {dtype = 'f32'}]) -> Tensor",
     "A tensor of ones; shape as for zeros.",
     "ls.ones({3}, {dtype = 'f64'})"},
    {"full", "ls.full(shape, value [, {dtype = 'f32'}]) -> Tensor",
     "A tensor filled with value.",
     "ls.full({2}, 7, {dtype = 'i64'})   --> [7, 7]"},
    {"arange", "ls.arange([start,] stop [, step] [, {dtype = 'f32'}]) -> Tensor",
     "start, start + step, ... below stop (PyTorch's half-open range; start 0 and step 1 by "
     "default).",
     "ls.arange(1, 4)   --> [1, 2, 3]"},
    {"eye", "ls.eye(n [, m] [, {dtype = 'f32'}]) -> Tensor",
     "The n x m identity matrix (m = n by default).",
     "ls.eye(2)   --> [[1, 0], [0, 1]]"},
    {"zeros_like", "ls.zeros_like(x [, {dtype}]) -> Tensor",
     "Zeros of x's shape and (unless given) dtype.",
     "ls.zeros_like(ls.randn({2, 2}))"},
    {"ones_like", "ls.ones_like(x [, {dtype}]) -> Tensor",
     "Ones of x's shape and (unless given) dtype.",
     "ls.ones_like(ls.randn({2, 2}))"},
    {"is_tensor", "ls.is_tensor(v) -> boolean",
     "Whether v is a Tensor (also a closed one).",
     "ls.is_tensor(ls.zeros(1))   --> true"},
    {"size", "x:size([dim]) -> table or integer",
     "The shape as a Lua table {3, 4}, or the size of one dim (1-based, negative from the end).",
     "ls.zeros(3, 4):size(2)   --> 4"},
    {"stride", "x:stride([dim]) -> table or integer",
     "The strides in elements, as size.",
     "ls.zeros(3, 4):stride()   --> {4, 1}"},
    {"dim", "x:dim() -> integer",
     "The number of dims (also the field x.ndim).",
     "ls.zeros(3, 4):dim()   --> 2"},
    {"numel", "x:numel() -> integer",
     "The number of elements.",
     "ls.zeros(3, 4):numel()   --> 12"},
    {"type", "x:type() -> string",
     "The dtype: 'f32', 'f64', 'i64' or 'u8' (also the field x.dtype).",
     "ls.zeros(1):type()   --> 'f32'"},
    {"item", "x:item() -> number",
     "The value of a one-element tensor: a Lua float, or an integer for i64/u8 (exact).",
     "ls.tensor({{5}}):item()   --> 5.0"},
    {"totable", "x:totable() -> table",
     "The values as nested Lua tables (a number for a 0-d tensor).",
     "ls.eye(2):totable()   --> {{1, 0}, {0, 1}}"},
    {"clone", "x:clone() -> Tensor",
     "A contiguous copy (not recorded: the copy has no gradient history).",
     "local y = x:clone()"},
    {"cast", "x:cast(dtype) -> Tensor",
     "x converted to dtype; to an integer dtype values truncate toward zero. Differentiable "
     "between float dtypes.",
     "ls.tensor({1.7}):cast('i64')   --> [1]"},
    {"float", "x:float() -> Tensor",
     "x as f32 (x:cast('f32')).",
     "ls.tensor({1}, {dtype = 'f64'}):float()"},
    {"double", "x:double() -> Tensor",
     "x as f64 (x:cast('f64')).",
     "ls.tensor({1, 2}, {dtype = 'i64'}):double():mean()"},
    {"long", "x:long() -> Tensor",
     "x as i64, truncating toward zero (x:cast('i64')).",
     "ls.tensor({2.9, -2.9}):long()   --> [2, -2]"},
    {"byte", "x:byte() -> Tensor",
     "x as u8 (x:cast('u8')); values out of 0..255 are undefined.",
     "ls.tensor({7}):byte()"},
    {"fill", "x:fill(value) -> x",
     "Sets every element to value, in place.",
     "ls.zeros(3):fill(2)   --> [2, 2, 2]"},
    {"zero", "x:zero() -> x",
     "Sets every element to 0, in place.",
     "ls.ones(2):zero()"},
    {"copy", "x:copy(src) -> x",
     "Copies src into x in place (src broadcast to x's shape, dtype converted).",
     "ls.zeros(2, 2):copy(ls.tensor({1, 2}))"},
    {"is_contiguous", "x:is_contiguous() -> boolean",
     "Whether x's elements lie row-major without gaps.",
     "ls.zeros(2, 3):t():is_contiguous()   --> false"},
    {"equal", "x:equal(y) -> boolean",
     "Whether x and y have the same shape, dtype and values (torch.equal).",
     "ls.ones(2):equal(ls.ones(2))   --> true"},
    {NULL, NULL, NULL, NULL}};

static const luaL_Reg lx_tensor_methods[] = {
    {"size", lx_tensor_size},       {"stride", lx_tensor_stride},   {"dim", lx_tensor_dim},
    {"numel", lx_tensor_numel},     {"type", lx_tensor_dtype},      {"item", lx_tensor_item},
    {"totable", lx_tensor_totable}, {"clone", lx_tensor_clone},     {"cast", lx_tensor_cast},
    {"float", lx_tensor_float},     {"double", lx_tensor_double},   {"long", lx_tensor_long},
    {"byte", lx_tensor_byte},       {"fill", lx_tensor_fill},       {"zero", lx_tensor_zero},
    {"copy", lx_tensor_copy},       {"is_contiguous", lx_tensor_is_contiguous},
    {"equal", lx_tensor_equal},     {NULL, NULL}};

static const luaL_Reg lx_tensor_meta[] = {
    {"__gc", lx_tensor_gc},       {"__close", lx_tensor_gc},    {"__index", lx_tensor_index},
    {"__newindex", lx_tensor_newindex}, {"__len", lx_tensor_len}, {"__tostring", lx_tensor_tostring},
    {"__add", lx_meta_add},       {"__sub", lx_meta_sub},       {"__mul", lx_meta_mul},
    {"__div", lx_meta_div},       {"__pow", lx_meta_pow},       {"__unm", lx_meta_unm},
    {NULL, NULL}};

static const luaL_Reg lx_tensor_module[] = {
    {"tensor", lx_tensor_new},   {"zeros", lx_zeros},         {"ones", lx_ones},
    {"full", lx_full},           {"arange", lx_arange},       {"eye", lx_eye},
    {"zeros_like", lx_zeros_like}, {"ones_like", lx_ones_like}, {"is_tensor", lx_is_tensor},
    {NULL, NULL}};

void lx_open_tensor(lua_State *L)
{
    /* module table is at -1 */
    luaL_newmetatable(L, LX_TENSOR);   /* sets __name = "landscape.Tensor" */
    luaL_setfuncs(L, lx_tensor_meta, 0);
    luaL_newlib(L, lx_tensor_methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    luaL_setfuncs(L, lx_tensor_module, 0);
    /* ls.Tensor: the method table, for completion and extension from Lua */
    luaL_getmetatable(L, LX_TENSOR);
    lua_getfield(L, -1, "methods");
    lua_setfield(L, -3, "Tensor");
    lua_pop(L, 1);
    lx_add_help(L, -1, lx_tensor_help);
}
