/* Threads, version and memory accounting from Lua. */
#include <stdbool.h>
#include <time.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "lx.h"
#include "ops/gemm.h"

#ifndef LS_VERSION
#define LS_VERSION "0.0.0"
#endif

/* ls.set_threads(n): the engine's pool and OpenBLAS together */
static int lx_set_threads(lua_State *L)
{
    lx_checkarity(L, 1, "set_threads");
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > LS_MAX_THREADS)
        return luaL_error(L, "set_threads: n must be in 1..%d, got %d", LS_MAX_THREADS, (int)n);
    ls_set_threads((int)n);
    return 0;
}

static int lx_get_threads(lua_State *L)
{
    lx_checkarity(L, 0, "get_threads");
    lua_pushinteger(L, ls_get_threads());
    return 1;
}

static int lx_available_cores(lua_State *L)
{
    lx_checkarity(L, 0, "available_cores");
    lua_pushinteger(L, ls_available_cores());
    return 1;
}

/* ls.memory(): bytes currently held by tensors and graphs */
static int lx_memory(lua_State *L)
{
    lx_checkarity(L, 0, "memory");
    lua_pushinteger(L, (lua_Integer)ls_alloc_live_bytes());
    return 1;
}

/* ls.clock(): monotonic wall-clock seconds (for timing; os.clock is CPU time summed over threads) */
static int lx_clock(lua_State *L)
{
    lx_checkarity(L, 0, "clock");
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    return 1;
}

/* ls.system_info(): {threads, cores, blas, blas_kernel, blas_threads, gemm} — what runs the
 * numbers (benchmarks print it) */
static int lx_system_info(lua_State *L)
{
    lx_checkarity(L, 0, "system_info");
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, ls_get_threads());
    lua_setfield(L, -2, "threads");
    lua_pushinteger(L, ls_available_cores());
    lua_setfield(L, -2, "cores");
    lua_pushstring(L, ls_blas_config());
    lua_setfield(L, -2, "blas");
    lua_pushstring(L, ls_blas_kernel());
    lua_setfield(L, -2, "blas_kernel");
    lua_pushinteger(L, ls_blas_threads());
    lua_setfield(L, -2, "blas_threads");
    lua_pushstring(L, ls_gemm_path());
    lua_setfield(L, -2, "gemm");
    return 1;
}

/* ---- allocation-failure injection (tests only; docs/hardening.md) ----
 * ls._alloc_fail_after(k [, "engine" | "lua"]): make the k-th allocation from now fail (k = 0: stop).
 * "engine" (the default) counts ls_malloc calls, from any thread; "lua" counts the Lua state's own
 * allocations (growing blocks only, as Lua's ltests.c does), through a wrapper around its allocator.
 * ls._alloc_fail_pending([which]) -> allocations still to go; 0 once the failure has fired. */
static struct {
    lua_Alloc orig;
    void *ud;
    long countdown;
    void *retry_ptr;     /* the failed request, which Lua retries once after an emergency collection */
    size_t retry_size;
} lx_lua_fail;

static void *lx_failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    bool grows = nsize > 0 && (ptr == NULL || nsize > osize);
    if (grows && lx_lua_fail.retry_size && ptr == lx_lua_fail.retry_ptr &&
        nsize == lx_lua_fail.retry_size) {
        lx_lua_fail.retry_size = 0;   /* the retry fails too, so the failure reaches the caller */
        return NULL;
    }
    if (grows) lx_lua_fail.retry_size = 0;   /* frees during the emergency collection do not count */
    if (grows && lx_lua_fail.countdown > 0 && --lx_lua_fail.countdown == 0) {
        lx_lua_fail.retry_ptr = ptr;
        lx_lua_fail.retry_size = nsize;
        return NULL;
    }
    return lx_lua_fail.orig(lx_lua_fail.ud, ptr, osize, nsize);
}

static int lx_which_allocator(lua_State *L, int idx)
{
    static const char *const names[] = {"engine", "lua", NULL};
    return luaL_checkoption(L, idx, "engine", names);
}

static int lx_alloc_fail_after(lua_State *L)
{
    lx_checkarity(L, 2, "_alloc_fail_after");
    lua_Integer k = luaL_checkinteger(L, 1);
    if (k < 0) return luaL_error(L, "_alloc_fail_after: k must be >= 0, got %I", (LUAI_UACINT)k);
    if (lx_which_allocator(L, 2) == 0) {
        ls_alloc_fail_after((long)k);
        return 0;
    }
    void *ud;
    lua_Alloc cur = lua_getallocf(L, &ud);
    if (cur != lx_failing_alloc) {
        lx_lua_fail.orig = cur;
        lx_lua_fail.ud = ud;
    }
    lx_lua_fail.countdown = (long)k;
    lx_lua_fail.retry_size = 0;
    if (k > 0) lua_setallocf(L, lx_failing_alloc, NULL);
    else if (cur == lx_failing_alloc) lua_setallocf(L, lx_lua_fail.orig, lx_lua_fail.ud);
    return 0;
}

static int lx_alloc_fail_pending(lua_State *L)
{
    lx_checkarity(L, 1, "_alloc_fail_pending");
    if (lx_which_allocator(L, 1) == 0) lua_pushinteger(L, ls_alloc_fail_pending());
    else lua_pushinteger(L, lx_lua_fail.countdown > 0 ? lx_lua_fail.countdown : 0);
    return 1;
}

/* help(f) for the functions below (lx_add_help). */
static const lx_help lx_system_help[] = {
    {"clock", "ls.clock() -> number",
     "Seconds on a monotonic wall clock, for timing (os.clock is CPU time summed over threads).",
     "local t0 = ls.clock(); work(); print(ls.clock() - t0)"},
    {"set_threads", "ls.set_threads(n) -> nil",
     "The number of threads of the engine's pool and of OpenBLAS (also LANDSCAPE_THREADS). "
     "Results of engine kernels do not depend on it.",
     "ls.set_threads(2)"},
    {"get_threads", "ls.get_threads() -> integer",
     "The engine's thread count.",
     "ls.get_threads()"},
    {"available_cores", "ls.available_cores() -> integer",
     "The cores this process may run on.",
     "ls.set_threads(ls.available_cores())"},
    {"system_info", "ls.system_info() -> {threads, cores, blas, blas_kernel, blas_threads, gemm}",
     "What runs the numbers: the engine's threads, the cores, OpenBLAS's configuration, kernel and "
     "threads, and the GEMM path (the engine's AVX-512 tiles or OpenBLAS); benchmarks print it.",
     "for k, v in pairs(ls.system_info()) do print(k, v) end"},
    {"memory", "ls.memory() -> integer",
     "The bytes currently held by tensors and graphs.",
     "print(ls.memory())"},
    {NULL, NULL, NULL, NULL}};

static const luaL_Reg lx_system_module[] = {
    {"system_info", lx_system_info},
    {"_alloc_fail_after", lx_alloc_fail_after}, {"_alloc_fail_pending", lx_alloc_fail_pending},
    {"clock", lx_clock},
    {"set_threads", lx_set_threads}, {"get_threads", lx_get_threads},
    {"available_cores", lx_available_cores}, {"memory", lx_memory}, {NULL, NULL}};

void lx_open_system(lua_State *L)
{
    luaL_setfuncs(L, lx_system_module, 0);
    lx_add_help(L, -1, lx_system_help);
    lua_pushstring(L, LS_VERSION);
    lua_setfield(L, -2, "version");
}
