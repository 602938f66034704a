/* luaopen_landscape: the module table. C functions come from the lx_open_* of each binding file;
 * pure-Lua helpers (lualib/landscape/...) load on first access to ls.<field>, through the module's
 * __index. */
#include <string.h>

#include "lx.h"

/* Fields provided by Lua modules: ls.<field> is the module itself (export NULL) or the module's
 * field <export>. The modules are laid out by concern (lualib/landscape/): nn/, train/, analysis/,
 * plus the helpers below them (util, autograd, data, stats, table, csv, fs, plot, repl). */
static const struct { const char *field, *module, *export; } lx_lazy[] = {
    {"data", "landscape.data", NULL},
    {"dataset", "landscape.data", "dataset"},
    {"csv", "landscape.io.csv", NULL},
    {"fs", "landscape.io.fs", NULL},
    {"plot", "landscape.io.plot", NULL},
    {"stats", "landscape.stats", NULL},
    {"table", "landscape.table", NULL},
    {"repl", "landscape.repl", NULL},
    {"help", "landscape.repl.help", "help"},
    {"hvp", "landscape.autograd", "hvp"},
    {"jvp", "landscape.autograd", "jvp"},
    {"vjp", "landscape.autograd", "vjp"},
    {"gradcheck", "landscape.autograd", "gradcheck"},
    {"nn", "landscape.nn", NULL},
    {"optim", "landscape.train.optim", NULL},
    {"objective", "landscape.train.objective", "objective"},
    {"methods", "landscape.train.methods", NULL},
    {"train", "landscape.train.loop", "train"},
    {"evaluate", "landscape.train.loop", "evaluate"},
    {"curvature", "landscape.analysis.curvature", NULL},
    {"sharpness", "landscape.analysis.sharpness", NULL},
    {"landscape", "landscape.analysis.slices", NULL},
    {"margins", "landscape.analysis.margins", NULL},
    {"study", "landscape.study", NULL},
};

static int lx_module_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    if (!k || lua_type(L, 2) != LUA_TSTRING) return 0;
    for (size_t i = 0; i < sizeof lx_lazy / sizeof lx_lazy[0]; i++) {
        if (strcmp(k, lx_lazy[i].field) != 0) continue;
        lua_getglobal(L, "require");
        lua_pushstring(L, lx_lazy[i].module);
        lua_call(L, 1, 1);
        if (lx_lazy[i].export) lua_getfield(L, -1, lx_lazy[i].export);
        if (!lua_isnil(L, -1)) {      /* cache it: later accesses skip __index */
            lua_pushvalue(L, -1);
            lua_setfield(L, 1, k);
        }
        return 1;
    }
    return 0;
}

int luaopen_landscape(lua_State *L)
{
    lua_newtable(L);
    /* register early so helper modules can `require "landscape"` while we load */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "landscape");
    lua_pop(L, 1);
    lx_open_tensor(L);
    lx_open_ops(L);
    lx_open_autograd(L);
    lx_open_random(L);
    lx_open_system(L);
    lx_open_io(L);
    lx_open_optim(L);
    lx_open_curvature(L);
    lx_open_util(L);
    lx_open_stats(L);
    lua_newtable(L);
    lua_pushcfunction(L, lx_module_index);
    lua_setfield(L, -2, "__index");
    /* the lazy fields, for the REPL's completion (it never calls __index) */
    lua_createtable(L, (int)(sizeof lx_lazy / sizeof lx_lazy[0]), 0);
    for (size_t i = 0; i < sizeof lx_lazy / sizeof lx_lazy[0]; i++) {
        lua_pushstring(L, lx_lazy[i].field);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "__names");
    /* __load(ls, name): load a lazy field without going through __index (the REPL's completion
     * uses it to list the fields of modules not loaded yet) */
    lua_pushcfunction(L, lx_module_index);
    lua_setfield(L, -2, "__load");
    lua_setmetatable(L, -2);
    return 1;
}
