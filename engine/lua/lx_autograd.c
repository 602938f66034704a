/* Autograd from Lua: requires_grad, detach, backward, grad, no_grad. */
#include <string.h>

#include "autograd/autograd.h"
#include "lx.h"

/* x:requires_grad([on = true]) -> x */
static int lx_requires_grad(lua_State *L)
{
    lx_checkarity(L, 2, "requires_grad");
    ls_tensor *t = lx_checktensor(L, 1);
    int on = lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2);
    if (ls_requires_grad_(t, on)) return lx_error(L);
    lua_settop(L, 1);
    return 1;
}

static int lx_detach(lua_State *L)
{
    lx_checkarity(L, 1, "detach");
    ls_tensor *t = lx_checktensor(L, 1);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_detach(t);
    if (!*box) return lx_error(L);
    return 1;
}

/* x:zero_grad(): drop the accumulated .grad */
static int lx_zero_grad(lua_State *L)
{
    lx_checkarity(L, 1, "zero_grad");
    ls_tensor *t = lx_checktensor(L, 1);
    ls_tensor_release(t->grad);
    t->grad = NULL;
    return 0;
}

/* Tensors from a tensor or a list of tensors at idx into out (max n); returns the count. */
static int lx_tensor_list(lua_State *L, int idx, ls_tensor **out, int n, const char *who,
                          const char *what)
{
    ls_tensor *t = lx_totensor(L, idx);
    if (t) {
        out[0] = t;
        return 1;
    }
    if (!lua_istable(L, idx))
        return luaL_error(L, "%s: %s must be a tensor or a list of tensors, got %s", who, what,
                          luaL_typename(L, idx));
    int len = (int)luaL_len(L, idx);
    if (len > n) return luaL_error(L, "%s: at most %d %s", who, n, what);
    for (int i = 0; i < len; i++) {
        lua_geti(L, idx, i + 1);
        out[i] = lx_totensor(L, -1);
        lua_pop(L, 1);   /* the list keeps it alive */
        if (!out[i]) return luaL_error(L, "%s: %s[%d] is not a tensor", who, what, i + 1);
    }
    return len;
}

#define LX_MAX_GRAD_TENSORS 4096

/* x:backward([grad_output] [, {retain_graph = false}]): accumulate into the leaves' .grad */
static int lx_backward(lua_State *L)
{
    lx_checkarity(L, 3, "backward");
    ls_tensor *t = lx_checktensor(L, 1);
    ls_tensor *go = lx_totensor(L, 2);
    int opts = go ? 3 : 2;
    if (!go && !lua_isnoneornil(L, 2) && !lua_istable(L, 2))
        return luaL_argerror(L, 2, "backward: expected a gradient tensor or an options table");
    ls_grad_opts o = {0};
    static const char *const keys[] = {"retain_graph", NULL};
    lx_checkoptions(L, opts, keys, "backward");
    o.retain_graph = lx_optboolean(L, opts, "retain_graph", 0, "backward");
    o.accumulate = true;
    ls_tensor *gos[1] = {go};
    o.grad_outputs = go ? gos : NULL;
    if (ls_autograd_grad(1, &t, 0, NULL, &o, NULL)) return lx_error(L);
    return 0;
}

/* ls.grad(outputs, inputs [, {grad_outputs, create_graph = false, retain_graph = create_graph,
 * allow_unused = false}]) -> list of gradients (a tensor when inputs is a tensor) */
static int lx_grad(lua_State *L)
{
    lx_checkarity(L, 3, "grad");
    static ls_tensor *outs[LX_MAX_GRAD_TENSORS], *ins[LX_MAX_GRAD_TENSORS];
    ls_tensor *gouts[LX_MAX_GRAD_TENSORS] = {0};
    int nout = lx_tensor_list(L, 1, outs, LX_MAX_GRAD_TENSORS, "grad", "outputs");
    int nin = lx_tensor_list(L, 2, ins, LX_MAX_GRAD_TENSORS, "grad", "inputs");
    int single = lx_totensor(L, 2) != NULL;
    ls_grad_opts o = {0};
    static const char *const keys[] = {"grad_outputs", "create_graph", "retain_graph",
                                       "allow_unused", NULL};
    lx_checkoptions(L, 3, keys, "grad");
    o.create_graph = lx_optboolean(L, 3, "create_graph", 0, "grad");
    o.retain_graph = lx_optboolean(L, 3, "retain_graph", o.create_graph, "grad");
    o.allow_unused = lx_optboolean(L, 3, "allow_unused", 0, "grad");
    if (!lua_isnoneornil(L, 3)) {
        lua_getfield(L, 3, "grad_outputs");
        if (!lua_isnil(L, -1)) {
            int ng = lx_tensor_list(L, lua_gettop(L), gouts, LX_MAX_GRAD_TENSORS, "grad",
                                    "grad_outputs");
            if (ng != nout)
                return luaL_error(L, "grad: %d grad_outputs for %d outputs", ng, nout);
            o.grad_outputs = gouts;
        }
        /* leave it on the stack: it keeps the grad_outputs alive */
    }
    /* The result table and an empty box per input first: once the engine hands back gradients, they
     * go into the boxes with no further allocation, so nothing leaks if Lua runs out of memory. */
    lua_createtable(L, nin, 0);
    int res = lua_gettop(L);
    for (int i = 0; i < nin; i++) {
        lx_newtensorbox(L);
        lua_rawseti(L, res, i + 1);
    }
    ls_tensor **grads = lua_newuserdatauv(L, sizeof(ls_tensor *) * (size_t)(nin ? nin : 1), 0);
    if (ls_autograd_grad(nout, outs, nin, ins, &o, grads)) return lx_error(L);
    for (int i = 0; i < nin; i++) {
        if (grads[i]) {
            lua_rawgeti(L, res, i + 1);
            *(ls_tensor **)lua_touserdata(L, -1) = grads[i];
            lua_pop(L, 1);
        } else {
            lua_pushnil(L);   /* an unused input (allow_unused): nil in its slot */
            lua_rawseti(L, res, i + 1);
        }
    }
    lua_settop(L, res);
    if (single) lua_geti(L, res, 1);
    return 1;
}

/* ls.no_grad(fn, ...) -> fn's results, with recording off while fn runs (restored on error too) */
static int lx_no_grad(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    bool prev = ls_set_grad_enabled(false);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    ls_set_grad_enabled(prev);
    if (status != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static int lx_enable_grad(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    bool prev = ls_set_grad_enabled(true);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    ls_set_grad_enabled(prev);
    if (status != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static int lx_is_grad_enabled(lua_State *L)
{
    lx_checkarity(L, 0, "is_grad_enabled");
    lua_pushboolean(L, ls_grad_enabled());
    return 1;
}

/* help(f) for the functions below (lx_add_help). */
static const lx_help lx_autograd_help[] = {
    {"requires_grad", "x:requires_grad([on = true]) -> x",
     "Marks a float leaf tensor as a variable gradients are taken for (chainable); x.needs_grad "
     "tells whether x is in a graph.",
     "local w = ls.randn({3}):requires_grad()"},
    {"zero_grad", "x:zero_grad() -> x",
     "Clears the gradient accumulated in x.grad by backward().",
     "w:zero_grad()"},
    {"backward", "y:backward([grad] [, {retain_graph = false}]) -> nil",
     "Accumulates dy/dw into w.grad for every leaf w that requires grad (y a scalar unless grad "
     "is given).",
     "(w * w):sum():backward(); print(w.grad)"},
    {"grad",
     "ls.grad(outputs, inputs [, {grad_outputs, create_graph = false, retain_graph, allow_unused "
     "= false}]) -> list",
     "The gradients of the outputs (summed, weighted by grad_outputs) with respect to the "
     "inputs, returned (not stored). With create_graph the result is itself differentiable: "
     "derivatives of any order.",
     "local g = ls.grad((w * w):sum(), {w}, {create_graph = true})[1]"},
    {"no_grad", "ls.no_grad(fn, ...) -> fn's results",
     "Runs fn(...) with gradient recording off (restored afterwards, also when fn raises).",
     "local y = ls.no_grad(function() return model(x) end)"},
    {"enable_grad", "ls.enable_grad(fn, ...) -> fn's results",
     "Runs fn(...) with gradient recording on (inside no_grad, for instance), restoring the "
     "setting afterwards.",
     "ls.no_grad(function() return ls.enable_grad(function() return (w * w):sum() end) end)"},
    {"is_grad_enabled", "ls.is_grad_enabled() -> boolean",
     "Whether ops are being recorded for gradients on this thread.",
     "ls.is_grad_enabled()   --> true"},
    {NULL, NULL, NULL, NULL}};

static const luaL_Reg lx_autograd_methods[] = {
    {"requires_grad", lx_requires_grad}, {"detach", lx_detach}, {"zero_grad", lx_zero_grad},
    {"backward", lx_backward}, {NULL, NULL}};

static const luaL_Reg lx_autograd_module[] = {
    {"grad", lx_grad}, {"no_grad", lx_no_grad}, {"enable_grad", lx_enable_grad},
    {"is_grad_enabled", lx_is_grad_enabled}, {"detach", lx_detach}, {NULL, NULL}};

void lx_open_autograd(lua_State *L)
{
    luaL_setfuncs(L, lx_autograd_module, 0);
    luaL_getmetatable(L, LX_TENSOR);
    lua_getfield(L, -1, "methods");
    luaL_setfuncs(L, lx_autograd_methods, 0);
    lua_pop(L, 2);
    lx_add_help(L, -1, lx_autograd_help);
}
