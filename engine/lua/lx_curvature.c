/* Curvature estimator kernels for lualib/landscape/curvature.lua, as the sub-table `_curvature` of the
 * module. Internal: positional arguments, defaults are applied in Lua. An operator is passed as
 * (n, dtype, matvec) where matvec is either a Lua function v -> A v or a square matrix Tensor (then
 * the dense product runs in C with no Lua call).
 *
 *   _curvature.eigs(n, dtype, mv, k, which, tol, max_iter, seed, want_vectors)
 *       -> values, vectors|nil, iterations, matvecs, converged, residuals, all_converged
 *   _curvature.power(n, dtype, mv, k, max_iter, tol, seed)      -> same as eigs
 *   _curvature.trace(n, dtype, mv, method, probes, seed)        -> estimate, stderr, probes, sketch
 *   _curvature.diag(n, dtype, mv, probes, seed)                 -> estimate, stderr (tensors)
 *   _curvature.slq(n, dtype, mv, steps, runs, seed)             -> nodes, weights ({run = {...}}), matvecs
 *   _curvature.density(nodes, weights, sigma, grid)             -> density tensor on grid (1-D)
 *
 * A Lua matvec runs under lua_pcall inside the C callback: if it raises (or returns something other
 * than a 1-D tensor of length n and the operator dtype), the callback returns an error status, the
 * estimator frees what it holds, and the binding re-raises the original error object. */
#include <stdlib.h>
#include <string.h>

#include "curvature/linop.h"
#include "lx.h"

typedef struct lx_curv_ctx {
    lua_State *L;
    int fn;          /* stack index of the Lua matvec */
    int errslot;     /* stack index where a raised error object is kept */
    const char *who;
    bool failed;
    const ls_tensor *v;
    ls_tensor *out;
} lx_curv_ctx;

/* Runs under lua_pcall: upvalue-free, the context as light userdata at 1, the function at 2. */
static int lx_curv_trampoline(lua_State *L)
{
    lx_curv_ctx *c = lua_touserdata(L, 1);
    lua_pushvalue(L, 2);
    ls_tensor **box = lx_newtensorbox(L);
    /* the estimator's input vector itself, under a header of its own (no copy): the estimators
     * write their next input into a fresh vector while Lua holds this one (curv_mv_input), so the
     * caller may keep it */
    *box = ls_tensor_alias(c->v);
    if (!*box) return lx_error_in(L, c->who);
    lua_call(L, 1, 1);
    ls_tensor *r = lx_totensor(L, -1);
    if (!r)
        return luaL_error(L, "%s: matvec must return a Tensor, got %s", c->who, luaL_typename(L, -1));
    if (r->ndim != 1 || r->shape[0] != c->out->shape[0])
        return luaL_error(L, "%s: matvec must return a 1-D tensor of length %d, got %s", c->who,
                          (int)c->out->shape[0], ls_tensor_shape_str(r));
    if (r->dtype != c->out->dtype)
        return luaL_error(L, "%s: matvec returned a %s tensor, the operator dtype is %s", c->who,
                          ls_dtype_name(r->dtype), ls_dtype_name(c->out->dtype));
    if (ls_tensor_copy_(c->out, r)) return lx_error(L);
    return 0;
}

static ls_status lx_curv_matvec(void *ctx, const ls_tensor *v, ls_tensor *out)
{
    lx_curv_ctx *c = ctx;
    lua_State *L = c->L;
    c->v = v;
    c->out = out;
    lua_pushcfunction(L, lx_curv_trampoline);
    lua_pushlightuserdata(L, c);
    lua_pushvalue(L, c->fn);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        c->failed = true;
        lua_replace(L, c->errslot);
        return ls_error_set(LS_ERR_STATE, "%s: the Lua matvec raised an error", c->who);
    }
    return LS_OK;
}

/* Reads (n, dtype, mv) at 1..3 into op; pushes the error slot (nil) on the stack. */
static void lx_curv_checkop(lua_State *L, ls_linop *op, lx_curv_ctx *c, const char *who)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    const char *dt = luaL_checkstring(L, 2);
    ls_dtype dtype;
    if (ls_dtype_parse(dt, &dtype) || !ls_dtype_is_float(dtype))
        luaL_error(L, "%s: operator dtype must be f32 or f64, got '%s'", who, dt);
    memset(c, 0, sizeof *c);
    c->L = L;
    c->who = who;
    ls_tensor *A = lx_totensor(L, 3);
    if (A) {
        if (ls_linop_dense(op, A)) lx_error(L);
        if (op->n != n || op->dtype != dtype)
            luaL_error(L, "%s: matrix %s %s does not match the operator (n = %d, %s)", who,
                       ls_tensor_shape_str(A), ls_dtype_name(A->dtype), (int)n, dt);
    } else {
        luaL_checktype(L, 3, LUA_TFUNCTION);
        if (n < 1) luaL_error(L, "%s: operator size must be >= 1, got %d", who, (int)n);
        op->n = n;
        op->dtype = dtype;
        op->matvec = lx_curv_matvec;
        op->ctx = c;
        op->overwrites = true;   /* the trampoline copies a checked length-n result, or fails */
        c->fn = 3;
    }
    lua_pushnil(L);
    c->errslot = lua_gettop(L);
}

/* After a failed estimator: re-raise the Lua matvec's error object, or the engine message. */
static int lx_curv_fail(lua_State *L, lx_curv_ctx *c)
{
    if (c->failed) {
        lua_pushvalue(L, c->errslot);
        return lua_error(L);
    }
    return lx_error(L);
}

static void lx_push_doubles(lua_State *L, const double *x, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, x[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static void lx_fin_eig(void *r) { ls_eig_result_free(r); }
static void lx_fin_slq(void *r) { ls_slq_result_free(r); }

/* Pushes the 7 results of eigs/power. r lives in a guard (lx_guard_push), so a Lua error while the
 * results are pushed frees it; so does the collector afterwards. */
static int lx_push_eig(lua_State *L, ls_eig_result *r, const char *who)
{
    lx_push_doubles(L, r->values, r->k);
    if (r->vectors) {
        lua_createtable(L, r->k, 0);
        for (int c = 0; c < r->k; c++) {
            ls_tensor **box = lx_newtensorbox(L);
            ls_tensor *col = ls_view_select(r->vectors, 1, c);
            *box = col ? ls_tensor_clone(col) : NULL;
            ls_tensor_release(col);
            if (!*box) return lx_error_in(L, who);
            lua_rawseti(L, -2, c + 1);
        }
    } else {
        lua_pushnil(L);
    }
    lua_pushinteger(L, r->iterations);
    lua_pushinteger(L, (lua_Integer)r->matvecs);
    lua_createtable(L, r->k, 0);
    for (int c = 0; c < r->k; c++) {
        lua_pushboolean(L, r->converged[c]);
        lua_rawseti(L, -2, c + 1);
    }
    lx_push_doubles(L, r->residuals, r->k);
    lua_pushboolean(L, r->all_converged);
    ls_eig_result_free(r);   /* now rather than at the next collection */
    return 7;
}

static int lx_curv_eigs(lua_State *L)
{
    lx_checkarity(L, 10, "eigs");
    ls_linop op;
    lx_curv_ctx c;
    lx_curv_checkop(L, &op, &c, "eigs");
    ls_lanczos_opts o = {0};
    o.k = (int)luaL_checkinteger(L, 4);
    const char *which = luaL_checkstring(L, 5);
    if (ls_eig_which_parse(which, &o.which))
        return luaL_error(L, "eigs: which must be 'largest', 'smallest', 'both' or 'magnitude', got '%s'",
                          which);
    o.tol = luaL_checknumber(L, 6);
    o.max_iter = (int)luaL_checkinteger(L, 7);
    o.seed = (uint64_t)luaL_checkinteger(L, 8);
    o.want_vectors = lua_toboolean(L, 9);
    o.ncv = (int)luaL_optinteger(L, 10, 0);
    ls_eig_result *r = lx_guard_push(L, sizeof *r, lx_fin_eig);
    if (ls_lanczos(&op, &o, r)) return lx_curv_fail(L, &c);
    return lx_push_eig(L, r, "eigs");
}

static int lx_curv_power(lua_State *L)
{
    lx_checkarity(L, 7, "power");
    ls_linop op;
    lx_curv_ctx c;
    lx_curv_checkop(L, &op, &c, "power");
    ls_power_opts o = {.k = (int)luaL_checkinteger(L, 4), .max_iter = (int)luaL_checkinteger(L, 5),
                       .tol = luaL_checknumber(L, 6), .seed = (uint64_t)luaL_checkinteger(L, 7)};
    ls_eig_result *r = lx_guard_push(L, sizeof *r, lx_fin_eig);
    if (ls_power_iteration(&op, &o, r)) return lx_curv_fail(L, &c);
    return lx_push_eig(L, r, "power");
}

static int lx_curv_trace(lua_State *L)
{
    lx_checkarity(L, 6, "trace");
    ls_linop op;
    lx_curv_ctx c;
    lx_curv_checkop(L, &op, &c, "trace");
    const char *m = luaL_checkstring(L, 4);
    ls_trace_method method;
    if (ls_trace_method_parse(m, &method))
        return luaL_error(L, "trace: method must be 'hutchinson' or 'hutch++', got '%s'", m);
    lua_Integer probes = luaL_checkinteger(L, 5);
    uint64_t seed = (uint64_t)luaL_checkinteger(L, 6);
    ls_trace_result r;
    if (ls_trace_estimate(&op, method, probes, seed, &r)) return lx_curv_fail(L, &c);
    lua_pushnumber(L, r.estimate);
    lua_pushnumber(L, r.stderr_);
    lua_pushinteger(L, (lua_Integer)r.probes);
    lua_pushinteger(L, (lua_Integer)r.sketch);
    return 4;
}

static int lx_curv_diag(lua_State *L)
{
    lx_checkarity(L, 5, "diag");
    ls_linop op;
    lx_curv_ctx c;
    lx_curv_checkop(L, &op, &c, "diag");
    lua_Integer probes = luaL_checkinteger(L, 4);
    uint64_t seed = (uint64_t)luaL_checkinteger(L, 5);
    /* boxes first, so the results can never leak */
    ls_tensor **b1 = lx_newtensorbox(L);
    ls_tensor **b2 = lx_newtensorbox(L);
    if (ls_diag_estimate(&op, probes, seed, b1, b2)) return lx_curv_fail(L, &c);
    return 2;
}

static int lx_curv_slq(lua_State *L)
{
    lx_checkarity(L, 6, "density");
    ls_linop op;
    lx_curv_ctx c;
    lx_curv_checkop(L, &op, &c, "density");
    int steps = (int)luaL_checkinteger(L, 4);
    int runs = (int)luaL_checkinteger(L, 5);
    uint64_t seed = (uint64_t)luaL_checkinteger(L, 6);
    ls_slq_result *r = lx_guard_push(L, sizeof *r, lx_fin_slq);   /* freed even if a push raises */
    if (ls_slq(&op, steps, runs, seed, r)) return lx_curv_fail(L, &c);
    lua_createtable(L, r->runs, 0);
    lua_createtable(L, r->runs, 0);
    for (int run = 0; run < r->runs; run++) {
        /* drop the padding of runs that ended early on an invariant subspace */
        int used = r->steps;
        while (used > 1 && r->weights[(int64_t)run * r->steps + used - 1] == 0) used--;
        lx_push_doubles(L, r->nodes + (int64_t)run * r->steps, used);
        lua_rawseti(L, -3, run + 1);
        lx_push_doubles(L, r->weights + (int64_t)run * r->steps, used);
        lua_rawseti(L, -2, run + 1);
    }
    lua_pushinteger(L, (lua_Integer)r->matvecs);
    ls_slq_result_free(r);
    return 3;
}

static int lx_curv_density(lua_State *L)
{
    lx_checkarity(L, 4, "density");
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    double sigma = luaL_checknumber(L, 3);
    ls_tensor *grid = lx_checktensor(L, 4);
    if (!(sigma > 0)) return luaL_error(L, "density: sigma must be > 0, got %g", sigma);
    if (grid->ndim != 1)
        return luaL_error(L, "density: grid must be a 1-D tensor, got %s", ls_tensor_shape_str(grid));
    lua_Integer runs = luaL_len(L, 1);
    if (runs < 1 || luaL_len(L, 2) != runs)
        return luaL_error(L, "density: nodes and weights must be non-empty lists of the same length");
    /* flatten into one run-major array (padded with weight 0), in userdata so errors leak nothing */
    int steps = 1;
    for (lua_Integer r = 1; r <= runs; r++) {
        lua_geti(L, 1, r);
        int len = (int)luaL_len(L, -1);
        if (len > steps) steps = len;
        lua_pop(L, 1);
    }
    size_t cnt = (size_t)runs * (size_t)steps;
    double *nodes = lua_newuserdatauv(L, cnt * sizeof(double), 0);
    double *weights = lua_newuserdatauv(L, cnt * sizeof(double), 0);
    for (lua_Integer r = 1; r <= runs; r++) {
        lua_geti(L, 1, r);
        lua_geti(L, 2, r);
        for (int i = 0; i < steps; i++) {
            size_t at = (size_t)(r - 1) * steps + i;
            lua_geti(L, -2, i + 1);
            lua_geti(L, -2, i + 1);
            nodes[at] = lua_isnil(L, -2) ? 0 : luaL_checknumber(L, -2);
            weights[at] = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
            lua_pop(L, 2);
        }
        lua_pop(L, 2);
    }
    ls_slq_result res = {.runs = (int)runs, .steps = steps, .nodes = nodes, .weights = weights};
    int64_t ng = grid->shape[0];
    ls_tensor **box = lx_newtensorbox(L);
    ls_tensor *g64 = ls_tensor_cast(grid, LS_F64);
    ls_tensor *gc = g64 ? ls_tensor_contiguous(g64) : NULL;
    ls_tensor_release(g64);
    if (!gc) return lx_error(L);
    int64_t shape[1] = {ng};
    *box = ls_tensor_new(LS_F64, 1, shape);
    if (!*box) {
        ls_tensor_release(gc);
        return lx_error(L);
    }
    ls_slq_density(&res, sigma, ls_tensor_data(gc), ng, ls_tensor_data(*box));
    ls_tensor_release(gc);
    return 1;
}

static const luaL_Reg lx_curvature_funcs[] = {
    {"eigs", lx_curv_eigs},   {"power", lx_curv_power}, {"trace", lx_curv_trace},
    {"diag", lx_curv_diag},   {"slq", lx_curv_slq},     {"density", lx_curv_density},
    {NULL, NULL}};

void lx_open_curvature(lua_State *L)
{
    luaL_newlib(L, lx_curvature_funcs);
    lua_setfield(L, -2, "_curvature");
}
