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
    for (int i = 1; i <= top; i++)
        if (lx_totensor(L, i)) { ref = lx_totensor(L, i)->dtype; break; }

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
                r = luaL_checkstring(L, arg);
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
        luaL_error(L, "%s: %I tensors given (at most %d)", who, (LUAI_UACINT)len, LS_OP_MAX_VARIADIC);
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
            return luaL_error(L, "stack: dimension %I is invalid (dims are 1-based; -1 is the last)",
                              (LUAI_UACINT)d);
        dim = d > 0 ? (int)d - 1 : (int)d;
    }
    lua_settop(L, 2);   /* the list's buffer goes above the arguments */
    ls_tensor **ts = lx_tensor_list(L, 1, "stack", &n);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_stack(n, ts, dim);
    return *box ? 1 : lx_error(L);
}

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
}
