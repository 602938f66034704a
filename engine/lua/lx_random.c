/* Random tensors from Lua. One process-wide stream (ls.manual_seed) unless a call passes its own
 * {seed = s}, which draws from a fresh stream with that seed (so the call is reproducible on its own and
 * leaves the global stream untouched). */
#include "core/rng.h"
#include "lx.h"

static ls_rng lx_global_rng = {0, 0};

static int lx_manual_seed(lua_State *L)
{
    lua_Integer s = luaL_checkinteger(L, 1);
    ls_rng_init(&lx_global_rng, (uint64_t)s);
    return 0;
}

static int lx_initial_seed(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)lx_global_rng.seed);
    return 1;
}

/* ls.get_rng_state() -> {seed = s, offset = k}: the global stream's position (its seed and the next
 * unused Philox counter, both 64-bit, as Lua integers: values >= 2^63 read as negative and round-trip). */
static int lx_get_rng_state(lua_State *L)
{
    uint64_t seed, offset;
    ls_rng_get_position(&lx_global_rng, &seed, &offset);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, -2, "seed");
    lua_pushinteger(L, (lua_Integer)offset);
    lua_setfield(L, -2, "offset");
    return 1;
}

/* ls.set_rng_state{seed = s, offset = k}: put the global stream at that position (a state from
 * get_rng_state): the draws that follow are those that followed when the state was taken. */
static int lx_set_rng_state(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"seed", "offset", NULL};
    lx_checkoptions(L, 1, keys, "set_rng_state");
    lua_Integer v[2];
    for (int i = 0; i < 2; i++) {
        int ok;
        lua_getfield(L, 1, keys[i]);
        v[i] = lua_tointegerx(L, -1, &ok);
        if (!ok)
            return luaL_error(L, "set_rng_state: '%s' must be an integer, got %s", keys[i],
                              luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    ls_rng_set_position(&lx_global_rng, (uint64_t)v[0], (uint64_t)v[1]);
    return 0;
}

/* The stream for this call: {seed = s} -> a local one, else the global one. */
static ls_rng *lx_stream(lua_State *L, int opts, ls_rng *local, const char *who)
{
    if (lua_istable(L, opts)) {
        lua_getfield(L, opts, "seed");
        if (!lua_isnil(L, -1)) {
            int ok;
            lua_Integer s = lua_tointegerx(L, -1, &ok);
            if (!ok)
                luaL_error(L, "%s: option 'seed' must be an integer, got %s", who,
                           lua_type(L, -1) == LUA_TNUMBER ? "a non-integer number"
                                                          : luaL_typename(L, -1));
            lua_pop(L, 1);
            ls_rng_init(local, (uint64_t)s);
            return local;
        }
        lua_pop(L, 1);
    }
    return &lx_global_rng;
}

/* Sizes must be >= 0 (checked here so the error names the Lua function, not ls_tensor_new). */
static void lx_checksizes(lua_State *L, int nd, const int64_t *shape, const char *who)
{
    for (int i = 0; i < nd; i++)
        if (shape[i] < 0)
            luaL_error(L, "%s: negative size %I in dimension %d", who, (LUAI_UACINT)shape[i],
                       i + 1);
}

typedef enum { LX_UNIFORM, LX_NORMAL, LX_RADEMACHER } lx_dist;

static int lx_random_fill(lua_State *L, lx_dist dist, const char *who)
{
    static const char *const keys[][5] = {{"seed", "dtype", "lo", "hi", NULL},
                                          {"seed", "dtype", "mean", "std", NULL},
                                          {"seed", "dtype", NULL}};
    int64_t shape[LS_MAX_DIMS];
    int nd = lx_checkshape(L, 1, shape, who);
    lx_checksizes(L, nd, shape, who);
    int opts = lua_istable(L, 1) ? 2 : nd + 1;
    if (!lua_isnoneornil(L, opts) && !lua_istable(L, opts))
        return luaL_error(L, "%s: expected a shape (a table or integers) and an options table", who);
    lua_settop(L, opts);   /* fix the options slot before pushing results */
    lx_checkoptions(L, opts, keys[dist], who);
    ls_dtype dt = lx_optdtype(L, opts, "dtype", LS_F32, who);
    if (!ls_dtype_is_float(dt))
        return luaL_error(L, "%s: dtype must be f32 or f64, got %s", who, ls_dtype_name(dt));
    ls_rng local, *r = lx_stream(L, opts, &local, who);
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_tensor_new(dt, nd, shape);
    if (!*box) return lx_error(L);
    int64_t n = ls_tensor_numel(*box);
    void *p = ls_tensor_data(*box);
    if (dist == LX_UNIFORM) {
        double lo = lx_optnumber(L, opts, "lo", 0.0, who), hi = lx_optnumber(L, opts, "hi", 1.0, who);
        if (!(lo < hi)) return luaL_error(L, "%s: need lo < hi, got lo=%f hi=%f", who, lo, hi);
        ls_rng_uniform(r, dt, p, n, lo, hi);
    } else if (dist == LX_NORMAL) {
        double mean = lx_optnumber(L, opts, "mean", 0.0, who);
        double std = lx_optnumber(L, opts, "std", 1.0, who);
        if (!(std >= 0)) return luaL_error(L, "%s: std must be >= 0, got %f", who, std);
        ls_rng_normal(r, dt, p, n, mean, std);
    } else {
        ls_rng_rademacher(r, dt, p, n);
    }
    return 1;
}

/* ls.rand(shape [, {seed, dtype, lo = 0, hi = 1}]): uniform on [lo, hi) */
static int lx_rand(lua_State *L) { return lx_random_fill(L, LX_UNIFORM, "rand"); }
/* ls.randn(shape [, {seed, dtype, mean = 0, std = 1}]) */
static int lx_randn(lua_State *L) { return lx_random_fill(L, LX_NORMAL, "randn"); }
/* ls.rademacher(shape [, {seed, dtype}]): +-1 with equal probability */
static int lx_rademacher(lua_State *L) { return lx_random_fill(L, LX_RADEMACHER, "rademacher"); }

/* ls.randint(lo, hi, shape [, {seed, dtype = "i64"}]): integers uniform in [lo, hi) */
static int lx_randint(lua_State *L)
{
    lua_Integer lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
    if (lo >= hi) return luaL_error(L, "randint: need lo < hi, got lo=%I hi=%I", (LUAI_UACINT)lo,
                                      (LUAI_UACINT)hi);
    int64_t shape[LS_MAX_DIMS];
    int nd = lx_checkshape(L, 3, shape, "randint");
    lx_checksizes(L, nd, shape, "randint");
    int opts = lua_istable(L, 3) ? 4 : 3 + nd;
    lua_settop(L, opts);
    static const char *const keys[] = {"seed", "dtype", NULL};
    lx_checkoptions(L, opts, keys, "randint");
    ls_dtype dt = lx_optdtype(L, opts, "dtype", LS_I64, "randint");
    if (dt == LS_U8) return luaL_error(L, "randint: dtype u8 is not supported");
    ls_rng local, *r = lx_stream(L, opts, &local, "randint");
    ls_tensor **box = lx_newtensorbox(L);
    *box = ls_tensor_new(dt, nd, shape);
    if (!*box) return lx_error(L);
    ls_rng_randint(r, dt, ls_tensor_data(*box), ls_tensor_numel(*box), lo, hi);
    return 1;
}

/* ls.randperm(n [, {seed}]): a random permutation of 1..n (i64, 1-based like every Lua index) */
static int lx_randperm(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0) return luaL_error(L, "randperm: n must be >= 0, got %I", (LUAI_UACINT)n);
    lua_settop(L, 2);
    static const char *const keys[] = {"seed", NULL};
    lx_checkoptions(L, 2, keys, "randperm");
    ls_rng local, *r = lx_stream(L, 2, &local, "randperm");
    ls_tensor **box = lx_newtensorbox(L);
    int64_t sz = n;
    *box = ls_tensor_new(LS_I64, 1, &sz);
    if (!*box) return lx_error(L);
    int64_t *p = ls_tensor_data(*box);
    ls_rng_permutation(r, p, n);
    for (int64_t i = 0; i < n; i++) p[i] += 1;
    return 1;
}

/* help(f) for the functions below (lx_add_help). */
static const lx_help lx_random_help[] = {
    {"manual_seed", "ls.manual_seed(seed) -> nil",
     "Seeds the global stream (Philox4x32-10, counter-based) that random calls without a seed "
     "option draw from.",
     "ls.manual_seed(1); local a = ls.randn({2})"},
    {"initial_seed", "ls.initial_seed() -> integer",
     "The seed the global stream was last seeded with.",
     "ls.initial_seed()"},
    {"rand", "ls.rand(shape [, {seed, dtype = 'f32', lo = 0, hi = 1}]) -> Tensor",
     "Uniform values in [lo, hi); with seed, from a stream of its own (the same for any thread "
     "count).",
     "ls.rand({2, 2}, {seed = 1})"},
    {"randn", "ls.randn(shape [, {seed, dtype = 'f32', mean = 0, std = 1}]) -> Tensor",
     "Normal values; with seed, from a stream of its own (the same for any thread count).",
     "ls.randn({1000, 50}, {seed = 1})"},
    {"rademacher", "ls.rademacher(shape [, {seed, dtype = 'f32'}]) -> Tensor",
     "Random signs +-1 (Hutchinson probes).",
     "ls.rademacher({5}, {seed = 2})"},
    {"randint", "ls.randint(lo, hi, shape [, {seed, dtype = 'i64'}]) -> Tensor",
     "Uniform integers in [lo, hi).",
     "ls.randint(0, 10, {5}, {seed = 1})"},
    {"randperm", "ls.randperm(n [, {seed}]) -> Tensor",
     "A random permutation of 1..n (i64, 1-based).",
     "ls.randperm(5, {seed = 1})"},
    {"get_rng_state", "ls.get_rng_state() -> {seed, offset}",
     "The global stream's state, to restore with set_rng_state (resumable runs).",
     "local s = ls.get_rng_state()"},
    {"set_rng_state", "ls.set_rng_state({seed, offset}) -> nil",
     "Restores a state from get_rng_state: later draws repeat bit for bit.",
     "ls.set_rng_state(s)"},
    {NULL, NULL, NULL, NULL}};

static const luaL_Reg lx_random_module[] = {
    {"manual_seed", lx_manual_seed}, {"initial_seed", lx_initial_seed}, {"rand", lx_rand},
    {"randn", lx_randn}, {"rademacher", lx_rademacher}, {"randint", lx_randint},
    {"randperm", lx_randperm}, {"get_rng_state", lx_get_rng_state},
    {"set_rng_state", lx_set_rng_state}, {NULL, NULL}};

void lx_open_random(lua_State *L)
{
    luaL_setfuncs(L, lx_random_module, 0);
    lx_add_help(L, -1, lx_random_help);
}
