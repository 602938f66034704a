/* Threads, version and memory accounting from Lua. */
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
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > LS_MAX_THREADS)
        return luaL_error(L, "set_threads: n must be in 1..%d, got %d", LS_MAX_THREADS, (int)n);
    ls_set_threads((int)n);
    return 0;
}

static int lx_get_threads(lua_State *L)
{
    lua_pushinteger(L, ls_get_threads());
    return 1;
}

static int lx_available_cores(lua_State *L)
{
    lua_pushinteger(L, ls_available_cores());
    return 1;
}

/* ls.memory(): bytes currently held by tensors and graphs */
static int lx_memory(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)ls_alloc_live_bytes());
    return 1;
}

/* ls.clock(): monotonic wall-clock seconds (for timing; os.clock is CPU time summed over threads) */
static int lx_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    return 1;
}

/* ls.system_info(): {threads, cores, blas, blas_kernel, blas_threads, gemm} — what runs the
 * numbers (benchmarks print it) */
static int lx_system_info(lua_State *L)
{
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
