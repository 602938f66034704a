/* Statistics kernels for lualib/landscape/stats/, as the sub-table `_stats` of the module. Internal:
 * positional arguments, defaults applied in Lua. Every function takes `who`, the name of the public
 * function the user called, for its error messages. Matrices and vectors are Tensors of any dtype
 * (read as f64); fold ids are 1-based, 0 meaning "never tested".
 *
 *   _stats.lm_fit(X, y, spec, who)     -> a table of the fit (fields as ls_lm; tensors for the
 *                                         vectors, aliased as a list of 1-based columns,
 *                                         cv = {lambdas, mse})
 *   _stats.lm_predict(X, coef, mean, scale, offset, who)  -> Tensor f64 [n]
 *   _stats.cv_predict(X, y, fold_ids, k, spec, who)       -> Tensor f64 [n] (NaN untested),
 *                                                            number of rank-deficient fits
 *   _stats.draw(kind, n, k, seed, count)  -> Tensor i64 [count x n]: k-fold ids, holdout masks,
 *                                            permutations or bootstrap indices (see below)
 *   _stats.seed(seed, i)                  -> a derived seed (ls_stats_seed)
 *   _stats.scores(y, pred, who)           -> r2, rmse, mae, bias
 *   _stats.kendall(x, y, variant, who)    -> tau ("b" or "a")
 *   _stats.pearson(x, y, who), _stats.spearman(x, y, who) -> r
 *   _stats.rank(x, who)                   -> Tensor f64 of average ranks
 *
 * spec is a table {kind = "ols"|"ridge", intercept, standardize, lambda = number|"cv",
 * lambdas = {...}, inner_folds, seed, rcond}; absent fields take ls_lm_spec_init's defaults. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "lx.h"
#include "stats/stats.h"

#define LX_LM_GUARD "landscape.stats.FitGuard"

/* Errors are raised without a position (luaL_error would name the line of the Lua helper that
 * called the kernel): the front end re-raises them at the user's line (util.public). */
static int lx_stats_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return lua_error(L);
}

static int lx_stats_engine_error(lua_State *L)
{
    const char *msg = ls_error_message();
    lua_pushstring(L, msg[0] ? msg : "unknown engine error");
    return lua_error(L);
}

/* The tensor at idx as a contiguous f64 tensor, pushed on the stack (so the collector owns it) and
 * returned. Raises naming who and what unless it is a Tensor with ndim dims. */
static ls_tensor *lx_stats_f64(lua_State *L, int idx, int ndim, const char *who, const char *what)
{
    ls_tensor *t = lx_totensor(L, idx);
    if (!t)
        lx_stats_error(L, "%s: %s must be a Tensor, got %s", who, what, luaL_typename(L, idx));
    if (t->ndim != ndim)
        lx_stats_error(L, "%s: %s must be a %d-D tensor, got %s", who, what, ndim,
                       ls_tensor_shape_str(t));
    ls_tensor **box = lx_newtensorbox(L);   /* the box first: nothing leaks if Lua runs out of memory */
    ls_tensor *c = ls_tensor_cast(t, LS_F64);
    *box = c ? ls_tensor_contiguous(c) : NULL;
    ls_tensor_release(c);
    if (!*box) lx_stats_engine_error(L);
    return *box;
}

static double *lx_stats_data(ls_tensor *t) { return ls_tensor_data(t); }

/* Push a fresh f64 vector of n elements copied from v. */
static void lx_stats_pushvec(lua_State *L, const double *v, int64_t n)
{
    ls_tensor **box = lx_newtensorbox(L);
    int64_t shape[1] = {n};
    *box = ls_tensor_new(LS_F64, 1, shape);
    if (!*box) lx_stats_engine_error(L);
    if (n > 0) memcpy(ls_tensor_data(*box), v, (size_t)n * sizeof(double));
}

/* Read the spec table at idx. A "lambdas" list is copied into a userdata left on the stack. */
static void lx_stats_spec(lua_State *L, int idx, ls_lm_spec *s, const char *who)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    const char *kind = lx_optstring(L, idx, "kind", "ols", who);
    if (strcmp(kind, "ols") == 0) ls_lm_spec_init(s, LS_LM_OLS);
    else if (strcmp(kind, "ridge") == 0) ls_lm_spec_init(s, LS_LM_RIDGE);
    else lx_stats_error(L, "%s: unknown model kind '%s' (ols or ridge)", who, kind);
    s->who = who;
    s->intercept = lx_optboolean(L, idx, "intercept", s->intercept, who);
    s->standardize = lx_optboolean(L, idx, "standardize", s->standardize, who);
    if (lua_getfield(L, idx, "lambda") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "cv") == 0) {
        s->lambda_cv = true;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        s->lambda = lua_tonumber(L, -1);
    } else if (!lua_isnil(L, -1)) {
        lx_stats_error(L, "%s: lambda must be a number >= 0 or \"cv\", got %s", who,
                       lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    lua_Integer folds = lx_optinteger(L, idx, "inner_folds", s->inner_folds, who);
    if (folds < 2 || folds > 1 << 20)
        lx_stats_error(L, "%s: inner_folds must be >= 2, got %I", who, folds);
    s->inner_folds = (int)folds;
    s->seed = (uint64_t)lx_optinteger(L, idx, "seed", (lua_Integer)s->seed, who);
    s->rcond = lx_optnumber(L, idx, "rcond", s->rcond, who);
    if (lua_getfield(L, idx, "lambdas") == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        if (n < 1 || n > 1 << 20)
            lx_stats_error(L, "%s: lambdas must be a non-empty list of numbers", who);
        double *g = lua_newuserdatauv(L, (size_t)n * sizeof(double), 0);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_geti(L, -2, i) != LUA_TNUMBER)
                lx_stats_error(L, "%s: lambdas[%I] is a %s, not a number", who, i,
                               luaL_typename(L, -1));
            g[i - 1] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        lua_remove(L, -2);   /* keep the userdata, drop the list */
        s->lambdas = g;
        s->nlambdas = (int)n;
    } else if (!lua_isnil(L, -1)) {
        lx_stats_error(L, "%s: lambdas must be a list of numbers, got %s", who,
                       luaL_typename(L, -1));
    } else {
        lua_pop(L, 1);
    }
}

/* X [n x p] at xi and y [n] at yi as f64 (pushed), shapes checked. */
static void lx_stats_xy(lua_State *L, int xi, int yi, const char *who, ls_tensor **X, ls_tensor **y)
{
    *X = lx_stats_f64(L, xi, 2, who, "X");
    *y = lx_stats_f64(L, yi, 1, who, "y");
    if ((*X)->shape[0] != (*y)->shape[0])
        lx_stats_error(L, "%s: X has %I rows but y has %I", who, (lua_Integer)(*X)->shape[0],
                       (lua_Integer)(*y)->shape[0]);
    if ((*X)->shape[1] > 1 << 20)
        lx_stats_error(L, "%s: too many columns (%I)", who, (lua_Integer)(*X)->shape[1]);
}

static int lx_lm_guard_gc(lua_State *L)
{
    ls_lm **g = luaL_checkudata(L, 1, LX_LM_GUARD);
    ls_lm_free(*g);
    *g = NULL;
    return 0;
}

static void lx_setnum(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* lm_fit(X, y, spec, who) */
static int lx_stats_lm_fit(lua_State *L)
{
    const char *who = luaL_optstring(L, 4, "lm_fit");
    ls_tensor *X, *y;
    lx_stats_xy(L, 1, 2, who, &X, &y);
    ls_lm_spec spec;
    lx_stats_spec(L, 3, &spec, who);
    ls_lm **g = lua_newuserdatauv(L, sizeof(ls_lm *), 0);
    *g = NULL;
    luaL_setmetatable(L, LX_LM_GUARD);
    *g = ls_lm_fit(lx_stats_data(X), lx_stats_data(y), X->shape[0], (int)X->shape[1], &spec);
    if (!*g) return lx_stats_engine_error(L);
    ls_lm *m = *g;
    int p = m->p;
    lua_createtable(L, 0, 32);
    lua_pushstring(L, m->kind == LS_LM_RIDGE ? "ridge" : "ols");
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, (lua_Integer)m->n);
    lua_setfield(L, -2, "n");
    lua_pushinteger(L, p);
    lua_setfield(L, -2, "p");
    lua_pushinteger(L, m->rank);
    lua_setfield(L, -2, "rank");
    lua_pushboolean(L, m->has_intercept);
    lua_setfield(L, -2, "has_intercept");
    lua_pushboolean(L, m->standardize);
    lua_setfield(L, -2, "standardize");
    static const char *vec_names[] = {"coef", "coef_se", "coef_raw", "coef_raw_se", "mean",
                                      "scale"};
    const double *vecs[] = {m->coef, m->coef_se, m->coef_raw, m->coef_raw_se, m->mean, m->scale};
    for (int i = 0; i < 6; i++) {
        lx_stats_pushvec(L, vecs[i], p);
        lua_setfield(L, -2, vec_names[i]);
    }
    lx_setnum(L, "intercept", m->intercept);
    lx_setnum(L, "intercept_se", m->intercept_se);
    lx_setnum(L, "intercept_raw", m->intercept_raw);
    lx_setnum(L, "intercept_raw_se", m->intercept_raw_se);
    lx_setnum(L, "offset", m->offset);
    lx_setnum(L, "lambda", m->lambda);
    lx_setnum(L, "edf", m->edf);
    lx_setnum(L, "df_model", m->df_model);
    lx_setnum(L, "df_resid", m->df_resid);
    lx_setnum(L, "rss", m->rss);
    lx_setnum(L, "tss", m->tss);
    lx_setnum(L, "r2", m->r2);
    lx_setnum(L, "adj_r2", m->adj_r2);
    lx_setnum(L, "rmse", m->rmse);
    lx_setnum(L, "mae", m->mae);
    lx_setnum(L, "sigma", m->sigma);
    lua_newtable(L);
    for (int j = 0, a = 0; j < p; j++) {
        if (!m->aliased[j]) continue;
        lua_pushinteger(L, j + 1);
        lua_rawseti(L, -2, ++a);
    }
    lua_setfield(L, -2, "aliased");
    if (m->ncv > 0) {
        lua_createtable(L, 0, 2);
        lx_stats_pushvec(L, m->cv_lambdas, m->ncv);
        lua_setfield(L, -2, "lambdas");
        lx_stats_pushvec(L, m->cv_mse, m->ncv);
        lua_setfield(L, -2, "mse");
        lua_setfield(L, -2, "cv");
    }
    ls_lm_free(m);
    *g = NULL;
    return 1;
}

/* lm_predict(X, coef, mean, scale, offset, who) */
static int lx_stats_lm_predict(lua_State *L)
{
    const char *who = luaL_optstring(L, 6, "predict");
    ls_tensor *X = lx_stats_f64(L, 1, 2, who, "X");
    ls_tensor *coef = lx_stats_f64(L, 2, 1, who, "coef");
    ls_tensor *mean = lx_stats_f64(L, 3, 1, who, "mean");
    ls_tensor *scale = lx_stats_f64(L, 4, 1, who, "scale");
    int64_t p = coef->shape[0];
    if (X->shape[1] != p)
        lx_stats_error(L, "%s: the model has %I features but X is %s", who, (lua_Integer)p,
                       ls_tensor_shape_str(X));
    if (mean->shape[0] != p || scale->shape[0] != p)
        lx_stats_error(L, "%s: coef, mean and scale differ in length", who);
    ls_lm m;
    memset(&m, 0, sizeof m);
    m.p = (int)p;
    m.coef = lx_stats_data(coef);
    m.mean = lx_stats_data(mean);
    m.scale = lx_stats_data(scale);
    m.offset = luaL_checknumber(L, 5);
    ls_tensor **box = lx_newtensorbox(L);
    int64_t shape[1] = {X->shape[0]};
    *box = ls_tensor_new(LS_F64, 1, shape);
    if (!*box) return lx_stats_engine_error(L);
    if (ls_lm_predict(&m, lx_stats_data(X), X->shape[0], ls_tensor_data(*box), who))
        return lx_stats_engine_error(L);
    return 1;
}

/* cv_predict(X, y, fold_ids, k, spec, who) */
static int lx_stats_cv_predict(lua_State *L)
{
    const char *who = luaL_optstring(L, 6, "cross_validate");
    ls_tensor *X, *y;
    lx_stats_xy(L, 1, 2, who, &X, &y);
    ls_tensor *f = lx_checktensor(L, 3);
    int64_t n = X->shape[0];
    if (f->ndim != 1 || f->shape[0] != n)
        lx_stats_error(L, "%s: fold ids must be a 1-D tensor of %I entries, got %s", who,
                       (lua_Integer)n, ls_tensor_shape_str(f));
    lua_Integer k = luaL_checkinteger(L, 4);
    if (k < 1 || k > (lua_Integer)n)
        lx_stats_error(L, "%s: %I folds for %I rows", who, k, (lua_Integer)n);
    ls_lm_spec spec;
    lx_stats_spec(L, 5, &spec, who);
    int32_t *fold = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof(int32_t), 0);
    for (int64_t i = 0; i < n; i++) {
        double v = ls_tensor_get_flat(f, i);
        if (!(v >= 0 && v <= (double)k) || v != floor(v))
            lx_stats_error(L, "%s: fold id %f of row %I is not an integer in 0..%I", who, v,
                           (lua_Integer)i + 1, k);
        fold[i] = (int32_t)v - 1;
    }
    ls_tensor **box = lx_newtensorbox(L);
    int64_t shape[1] = {n};
    *box = ls_tensor_new(LS_F64, 1, shape);
    if (!*box) return lx_stats_engine_error(L);
    int deficient = 0;
    if (ls_lm_cv_predict(lx_stats_data(X), lx_stats_data(y), n, (int)X->shape[1], fold, (int)k,
                         &spec, ls_tensor_data(*box), &deficient))
        return lx_stats_engine_error(L);
    lua_pushinteger(L, deficient);
    return 2;
}

/* draw(kind, n, k, seed, count) -> Tensor i64 [count x n]. One Philox stream from seed; each of the
 * count draws takes the next n counters:
 *   "kfold"        fold ids 1..k (ls_stats_kfold)
 *   "holdout"      1 for the k test rows, 0 for the others (ls_stats_holdout)
 *   "permutation"  a permutation of 1..n (k unused)
 *   "bootstrap"    n indices drawn uniformly from 1..n with replacement (k unused) */
static int lx_stats_draw(lua_State *L)
{
    static const char *const kinds[] = {"kfold", "holdout", "permutation", "bootstrap", NULL};
    int kind = luaL_checkoption(L, 1, NULL, kinds);
    lua_Integer n = luaL_checkinteger(L, 2);
    lua_Integer k = luaL_checkinteger(L, 3);
    lua_Integer seed = luaL_checkinteger(L, 4);
    lua_Integer count = luaL_checkinteger(L, 5);
    if (n < 1 || count < 1 || count > ((lua_Integer)1 << 40) / n)
        return lx_stats_error(L, "%s: bad sizes (%I rows, %I draws)", kinds[kind], n, count);
    if (kind == 0 && (k < 2 || k > n))
        return lx_stats_error(L, "kfold: need 2 <= folds <= rows, got %I folds for %I rows", k, n);
    ls_tensor **box = lx_newtensorbox(L);
    int64_t shape[2] = {count, n};
    *box = ls_tensor_new(LS_I64, 2, shape);
    if (!*box) return lx_stats_engine_error(L);
    int64_t *out = ls_tensor_data(*box);
    int32_t *fold = lua_newuserdatauv(L, (size_t)n * sizeof(int32_t), 0);
    ls_rng rng;
    ls_rng_init(&rng, (uint64_t)seed);
    for (lua_Integer r = 0; r < count; r++) {
        int64_t *row = out + r * n;
        ls_status st = LS_OK;
        if (kind == 0) st = ls_stats_kfold(n, (int)k, &rng, fold);
        else if (kind == 1) st = ls_stats_holdout(n, k, &rng, fold);
        else if (kind == 2) ls_rng_permutation(&rng, row, n);
        else ls_rng_randint(&rng, LS_I64, row, n, 0, n);
        if (st) return lx_stats_engine_error(L);
        for (lua_Integer i = 0; i < n; i++) row[i] = kind <= 1 ? fold[i] + 1 : row[i] + 1;
    }
    lua_pop(L, 1);
    return 1;
}

/* seed(seed, i) -> ls_stats_seed(seed, i) as an integer (the bits of the uint64) */
static int lx_stats_seed(lua_State *L)
{
    uint64_t s =
        ls_stats_seed((uint64_t)luaL_checkinteger(L, 1), (uint64_t)luaL_checkinteger(L, 2));
    lua_pushinteger(L, (lua_Integer)s);
    return 1;
}

/* Two 1-D samples of equal length at 1 and 2 (pushed as f64). */
static void lx_stats_pair(lua_State *L, const char *who, ls_tensor **x, ls_tensor **y,
                          const char *wx, const char *wy)
{
    *x = lx_stats_f64(L, 1, 1, who, wx);
    *y = lx_stats_f64(L, 2, 1, who, wy);
    if ((*x)->shape[0] != (*y)->shape[0])
        lx_stats_error(L, "%s: the samples differ in length (%I and %I)", who,
                       (lua_Integer)(*x)->shape[0], (lua_Integer)(*y)->shape[0]);
}

/* scores(y, pred, who) */
static int lx_stats_scores(lua_State *L)
{
    const char *who = luaL_optstring(L, 3, "scores");
    ls_tensor *y, *p;
    lx_stats_pair(L, who, &y, &p, "y", "the predictions");
    ls_scores s;
    if (ls_stats_scores(lx_stats_data(y), lx_stats_data(p), y->shape[0], &s, who))
        return lx_stats_engine_error(L);
    lua_pushnumber(L, s.r2);
    lua_pushnumber(L, s.rmse);
    lua_pushnumber(L, s.mae);
    lua_pushnumber(L, s.bias);
    return 4;
}

/* kendall(x, y, variant, who) */
static int lx_stats_kendall(lua_State *L)
{
    const char *variant = luaL_checkstring(L, 3);
    const char *who = luaL_optstring(L, 4, "kendall_tau");
    ls_tau_kind kind;
    if (strcmp(variant, "b") == 0) kind = LS_TAU_B;
    else if (strcmp(variant, "a") == 0) kind = LS_TAU_A;
    else return lx_stats_error(L, "%s: variant must be \"b\" or \"a\", got '%s'", who, variant);
    ls_tensor *x, *y;
    lx_stats_pair(L, who, &x, &y, "the first sample", "the second sample");
    double tau;
    if (ls_stats_kendall(lx_stats_data(x), lx_stats_data(y), x->shape[0], kind, &tau, who))
        return lx_stats_engine_error(L);
    lua_pushnumber(L, tau);
    return 1;
}

static int lx_stats_corr(lua_State *L, bool spearman)
{
    const char *who = luaL_optstring(L, 3, spearman ? "spearman" : "pearson");
    ls_tensor *x, *y;
    lx_stats_pair(L, who, &x, &y, "the first sample", "the second sample");
    double r;
    const double *a = lx_stats_data(x), *b = lx_stats_data(y);
    ls_status st = spearman ? ls_stats_spearman(a, b, x->shape[0], &r, who)
                            : ls_stats_pearson(a, b, x->shape[0], &r, who);
    if (st) return lx_stats_engine_error(L);
    lua_pushnumber(L, r);
    return 1;
}

static int lx_stats_pearson(lua_State *L) { return lx_stats_corr(L, false); }
static int lx_stats_spearman(lua_State *L) { return lx_stats_corr(L, true); }

/* rank(x, who) */
static int lx_stats_rank(lua_State *L)
{
    const char *who = luaL_optstring(L, 2, "rank");
    ls_tensor *x = lx_stats_f64(L, 1, 1, who, "x");
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_tensor_new(LS_F64, 1, x->shape);
    if (!*box) return lx_stats_engine_error(L);
    if (ls_stats_rank(lx_stats_data(x), x->shape[0], ls_tensor_data(*box), who))
        return lx_stats_engine_error(L);
    return 1;
}

void lx_open_stats(lua_State *L)
{
    if (luaL_newmetatable(L, LX_LM_GUARD)) {
        lua_pushcfunction(L, lx_lm_guard_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"lm_fit", lx_stats_lm_fit},       {"lm_predict", lx_stats_lm_predict},
        {"cv_predict", lx_stats_cv_predict}, {"draw", lx_stats_draw},
        {"scores", lx_stats_scores},       {"seed", lx_stats_seed},
        {"kendall", lx_stats_kendall},     {"pearson", lx_stats_pearson},
        {"spearman", lx_stats_spearman},   {"rank", lx_stats_rank},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "_stats");
}
