/* luaopen_landscape: the module table. C functions come from the lx_open_* of each binding file;
 * pure-Lua helpers (lualib/landscape/<name>.lua) load on first access to ls.<name> or to a function
 * they provide (ls.hvp -> landscape.autograd), through the module's __index. */
#include <string.h>

#include "lx.h"

/* Fields provided by Lua helper modules: field -> module. A submodule is its own field. */
static const struct { const char *field, *module; } lx_lazy[] = {
    {"data", "landscape.data"},   {"csv", "landscape.csv"},       {"fs", "landscape.fs"},
    {"repl", "landscape.repl"},   {"hvp", "landscape.autograd"},  {"jvp", "landscape.autograd"},
    {"vjp", "landscape.autograd"}, {"gradcheck", "landscape.autograd"},
    {"optim", "landscape.optim"},
    {"curvature", "landscape.curvature"},
    {"nn", "landscape.nn"},
    {"train", "landscape.training"}, {"evaluate", "landscape.training"},
    {"dataset", "landscape.training"},
    {"margins", "landscape.margins"},
    {"stats", "landscape.stats"},
    {"sharpness", "landscape.sharpness"},
    {"landscape", "landscape.landscape"},
    {"plot", "landscape.plot"},
    {"study", "landscape.study"},
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
        const char *last = strrchr(lx_lazy[i].module, '.') + 1;
        if (strcmp(last, k) == 0) {   /* a submodule: ls.data = require "landscape.data" */
            lua_pushvalue(L, -1);
            lua_setfield(L, 1, k);
            return 1;
        }
        lua_getfield(L, -1, k);       /* a function exported by a helper module */
        if (!lua_isnil(L, -1)) {
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
    lua_setmetatable(L, -2);
    return 1;
}
