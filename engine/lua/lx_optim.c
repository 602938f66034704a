/* Optimizer kernels for lualib/landscape/optim.lua, as the sub-table `_optim` of the module. These
 * are internal: positional arguments, no defaults. The user-facing API (options tables, state,
 * schedules) is ls.optim in Lua. Every call updates tensors in place on their storage, outside the
 * autograd graph.
 *
 *   _optim.sgd_step(param, grad, buf|nil, first, lr, momentum, dampening, weight_decay, nesterov)
 *       -> whether every entry of the updated param is finite
 *   _optim.adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|nil, step, lr, beta1, beta2,
 *                    eps, weight_decay, amsgrad, decoupled) -> the same
 *   _optim.clip_grad_norm({grads...}, max_norm, norm_type, error_if_nonfinite) -> total norm
 *   _optim.id(tensor) -> light userdata identifying the underlying tensor (for duplicate checks) */
#include "lx.h"
#include "optim/optim.h"

static int lx_optim_sgd_step(lua_State *L)
{
    lx_checkarity(L, 9, "sgd_step");
    ls_tensor *p = lx_checktensor(L, 1);
    ls_tensor *g = lx_checktensor(L, 2);
    ls_tensor *buf = lua_isnil(L, 3) ? NULL : lx_checktensor(L, 3);
    bool first = lua_toboolean(L, 4);
    ls_sgd_config c = {.lr = luaL_checknumber(L, 5), .momentum = luaL_checknumber(L, 6),
                       .dampening = luaL_checknumber(L, 7), .weight_decay = luaL_checknumber(L, 8),
                       .nesterov = lua_toboolean(L, 9)};
    bool finite = true;
    if (ls_optim_sgd_step(p, g, buf, first, &c, &finite)) return lx_error(L);
    lua_pushboolean(L, finite);
    return 1;
}

static int lx_optim_adam_step(lua_State *L)
{
    lx_checkarity(L, 13, "adam_step");
    ls_tensor *p = lx_checktensor(L, 1);
    ls_tensor *g = lx_checktensor(L, 2);
    ls_tensor *m = lx_checktensor(L, 3);
    ls_tensor *v = lx_checktensor(L, 4);
    ls_tensor *vmax = lua_isnil(L, 5) ? NULL : lx_checktensor(L, 5);
    lua_Integer step = luaL_checkinteger(L, 6);
    ls_adam_config c = {.lr = luaL_checknumber(L, 7), .beta1 = luaL_checknumber(L, 8),
                        .beta2 = luaL_checknumber(L, 9), .eps = luaL_checknumber(L, 10),
                        .weight_decay = luaL_checknumber(L, 11), .amsgrad = lua_toboolean(L, 12),
                        .decoupled_weight_decay = lua_toboolean(L, 13)};
    bool finite = true;
    if (ls_optim_adam_step(p, g, m, v, vmax, (int64_t)step, &c, &finite)) return lx_error(L);
    lua_pushboolean(L, finite);
    return 1;
}

static int lx_optim_clip_grad_norm(lua_State *L)
{
    lx_checkarity(L, 4, "clip_grad_norm");
    luaL_checktype(L, 1, LUA_TTABLE);
    double max_norm = luaL_checknumber(L, 2);
    double norm_type = luaL_checknumber(L, 3);
    bool error_if_nonfinite = lua_toboolean(L, 4);
    lua_Integer n = luaL_len(L, 1);
    if (n > 1 << 20) return luaL_error(L, "clip_grad_norm: too many gradients (%d)", (int)n);
    /* the pointer array lives in a userdata, so an error below leaks nothing; the list keeps the
     * tensors alive */
    ls_tensor **grads = lua_newuserdatauv(L, sizeof(ls_tensor *) * (size_t)(n ? n : 1), 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        grads[i] = lx_totensor(L, -1);
        lua_pop(L, 1);
        if (!grads[i])
            return luaL_error(L, "clip_grad_norm: gradient %d is not a tensor", (int)i + 1);
    }
    double total;
    if (ls_optim_clip_grad_norm((int)n, grads, max_norm, norm_type, error_if_nonfinite, &total))
        return lx_error(L);
    lua_pushnumber(L, total);
    return 1;
}

static int lx_optim_id(lua_State *L)
{
    lx_checkarity(L, 1, "id");
    lua_pushlightuserdata(L, lx_checktensor(L, 1));
    return 1;
}

static const luaL_Reg lx_optim_funcs[] = {
    {"sgd_step", lx_optim_sgd_step}, {"adam_step", lx_optim_adam_step},
    {"clip_grad_norm", lx_optim_clip_grad_norm}, {"id", lx_optim_id}, {NULL, NULL}};

void lx_open_optim(lua_State *L)
{
    luaL_newlib(L, lx_optim_funcs);
    lua_setfield(L, -2, "_optim");
}
