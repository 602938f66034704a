/* The binding's shared helpers (lx.h): the Tensor box, argument and option checking. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "core/alloc.h"
#include "lx.h"

/* Lua's collector sees a tensor as a few bytes of userdata, not the megabytes it holds, so without
 * help dead tensors pile up between collections (a CNN training loop reached 2 GiB). Every new tensor
 * box looks at the engine's live memory: past LX_GC_BYTES of growth since the last look it runs an
 * incremental step of that size, and when live memory has grown by half (plus LX_GC_SLACK) since the last
 * full collection it runs a full one, so the heap stays within about 1.5 times what is in use. */
#define LX_GC_BYTES ((size_t)16 << 20)
#define LX_GC_SLACK ((size_t)32 << 20)
static size_t lx_gc_mark, lx_gc_base;

static void lx_gc_pressure(lua_State *L)
{
    size_t live = ls_alloc_live_bytes();
    if (live < lx_gc_mark) lx_gc_mark = live;
    if (live - lx_gc_mark < LX_GC_BYTES) return;
    if (live > lx_gc_base + lx_gc_base / 2 + LX_GC_SLACK) {
        lua_gc(L, LUA_GCCOLLECT);
        lx_gc_base = ls_alloc_live_bytes();
    } else {
        lua_gc(L, LUA_GCSTEP, (int)((live - lx_gc_mark) >> 10));
    }
    lx_gc_mark = ls_alloc_live_bytes();
}

ls_tensor **lx_newtensorbox(lua_State *L)
{
    lx_gc_pressure(L);
    ls_tensor **box = lua_newuserdatauv(L, sizeof(ls_tensor *), 0);
    *box = NULL;
    luaL_setmetatable(L, LX_TENSOR);
    return box;
}

#define LX_GUARD "landscape.Guard"

typedef struct lx_guard {
    void (*fin)(void *payload);
    size_t size;
} lx_guard;
#define LX_GUARD_HEAD ((sizeof(lx_guard) + sizeof(max_align_t) - 1) / sizeof(max_align_t) * \
                       sizeof(max_align_t))

static int lx_guard_gc(lua_State *L)
{
    lx_guard *g = luaL_checkudata(L, 1, LX_GUARD);
    g->fin((char *)g + LX_GUARD_HEAD);
    return 0;
}

void *lx_guard_push(lua_State *L, size_t size, void (*fin)(void *payload))
{
    lx_guard *g = lua_newuserdatauv(L, LX_GUARD_HEAD + size, 0);
    g->fin = fin;
    g->size = size;
    memset((char *)g + LX_GUARD_HEAD, 0, size);
    if (luaL_newmetatable(L, LX_GUARD)) {   /* once per state */
        lua_pushcfunction(L, lx_guard_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, lx_guard_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    return (char *)g + LX_GUARD_HEAD;
}

/* A closed box (its <close> scope ended, or __gc ran) is a Tensor that can no longer be used: say
 * so, rather than "expected a tensor, got landscape.Tensor". */
static int lx_closed_error(lua_State *L, int idx)
{
    if (idx > 0) return luaL_argerror(L, idx, "tensor has been closed");
    return luaL_error(L, "tensor has been closed");
}

ls_tensor *lx_totensor(lua_State *L, int idx)
{
    ls_tensor **box = luaL_testudata(L, idx, LX_TENSOR);
    if (box && !*box) lx_closed_error(L, idx);
    return box ? *box : NULL;
}

ls_tensor *lx_checktensor(lua_State *L, int idx)
{
    ls_tensor **box = luaL_checkudata(L, idx, LX_TENSOR);
    if (!*box) lx_closed_error(L, idx);
    return *box;
}

int lx_error(lua_State *L)
{
    /* A generic "tensor: ..." message (an allocation deep in a constructor) gets the name the caller
     * used for the running C function when Lua knows it (ls.randn(...) -> "randn"). */
    lua_Debug ar;
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) ls_error_retag(ar.name);
    const char *msg = ls_error_message();
    return luaL_error(L, "%s", msg[0] ? msg : "unknown engine error");
}

int lx_error_in(lua_State *L, const char *who)
{
    ls_error_retag(who);
    return lx_error(L);
}

void lx_checkarity(lua_State *L, int max, const char *who)
{
    int top = lua_gettop(L);
    while (top > max && lua_isnil(L, top)) top--;
    if (top > max)
        luaL_error(L, "%s: too many arguments (%d given, at most %d)", who, top, max);
}

const char *lx_tocstring(lua_State *L, int idx, const char *who, const char *what)
{
    if (lua_type(L, idx) != LUA_TSTRING) return NULL;
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    const char *nul = memchr(s, '\0', len);
    if (nul)
        luaL_error(L, "%s: %s contains a NUL byte at position %d (\"%s\\0...\")", who, what,
                   (int)(nul - s) + 1, s);
    return s;
}

const char *lx_checkcstring(lua_State *L, int idx, const char *who, const char *what)
{
    const char *s = lx_tocstring(L, idx, who, what);
    if (!s)
        luaL_error(L, "%s: %s must be a string, got %s", who, what, luaL_typename(L, idx));
    return s;
}

int lx_checkdim(lua_State *L, int idx, int ndim, const char *who)
{
    lua_Integer d = luaL_checkinteger(L, idx);
    int lim = ndim > 0 ? ndim : 1;
    if (d == 0 || d > lim || d < -lim)
        return luaL_error(L, "%s: dimension %I out of range for a %d-d tensor (dims are 1-based)",
                          who, (LUAI_UACINT)d, ndim);
    return d > 0 ? (int)d - 1 : (int)d + lim;
}

int lx_checkshape(lua_State *L, int idx, int64_t *shape, const char *who)
{
    int n = 0;
    if (lua_istable(L, idx)) {
        n = (int)luaL_len(L, idx);
        if (n > LS_MAX_DIMS) return luaL_error(L, "%s: %d dimensions (at most %d)", who, n, LS_MAX_DIMS);
        for (int i = 0; i < n; i++) {
            lua_geti(L, idx, i + 1);
            int ok;
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok) return luaL_error(L, "%s: shape entry %d is not an integer", who, i + 1);
            shape[i] = v;
        }
        return n;
    }
    while (lua_type(L, idx + n) == LUA_TNUMBER) {
        if (n == LS_MAX_DIMS) return luaL_error(L, "%s: more than %d dimensions", who, LS_MAX_DIMS);
        int ok;
        lua_Integer v = lua_tointegerx(L, idx + n, &ok);
        if (!ok) return luaL_error(L, "%s: size %d is not an integer", who, n + 1);
        shape[n++] = v;
    }
    return n;
}

/* Push options[key] (nil when the table is absent); checks the table itself. */
static int lx_optfield(lua_State *L, int idx, const char *key, const char *who)
{
    if (lua_isnoneornil(L, idx)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: options must be a table, got %s", who, luaL_typename(L, idx));
    return lua_getfield(L, idx, key);
}

double lx_optnumber(lua_State *L, int idx, const char *key, double def, const char *who)
{
    int t = lx_optfield(L, idx, key, who);
    double v = def;
    if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: option '%s' must be a number, got %s", who, key, lua_typename(L, t));
    lua_pop(L, 1);
    return v;
}

lua_Integer lx_optinteger(lua_State *L, int idx, const char *key, lua_Integer def, const char *who)
{
    int t = lx_optfield(L, idx, key, who);
    lua_Integer v = def;
    if (t != LUA_TNIL) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok || t != LUA_TNUMBER)
            luaL_error(L, "%s: option '%s' must be an integer, got %s", who, key,
                       t == LUA_TNUMBER ? "a non-integer number" : lua_typename(L, t));
    }
    lua_pop(L, 1);
    return v;
}

int lx_optboolean(lua_State *L, int idx, const char *key, int def, const char *who)
{
    int t = lx_optfield(L, idx, key, who);
    int v = def;
    if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: option '%s' must be a boolean, got %s", who, key, lua_typename(L, t));
    lua_pop(L, 1);
    return v;
}

const char *lx_optstring(lua_State *L, int idx, const char *key, const char *def, const char *who)
{
    int t = lx_optfield(L, idx, key, who);
    const char *v = def;
    if (t == LUA_TSTRING) {
        lua_pushfstring(L, "option '%s'", key);
        v = lx_tocstring(L, -2, who, lua_tostring(L, -1));   /* stays valid: the table holds it */
        lua_pop(L, 1);
    } else if (t != LUA_TNIL)
        luaL_error(L, "%s: option '%s' must be a string, got %s", who, key, lua_typename(L, t));
    lua_pop(L, 1);
    return v;
}

ls_dtype lx_optdtype(lua_State *L, int idx, const char *key, ls_dtype def, const char *who)
{
    const char *s = lx_optstring(L, idx, key, NULL, who);
    if (!s) return def;
    ls_dtype d;
    if (ls_dtype_parse(s, &d) != 0)
        luaL_error(L, "%s: unknown dtype '%s' (expected f32, f64, i64 or u8)", who, s);
    return d;
}

/* ---- unknown options and "did you mean" ---- */

/* Edit distance between a and b (optimal string alignment: insertions, deletions, substitutions
 * and transpositions of neighbours each cost 1), capped: any distance above `cap` is reported as
 * cap + 1. Names are short, so the three rows live on the stack. */
#define LX_NAME_MAX 64
static int lx_edit_distance(const char *a, const char *b, int cap)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > LX_NAME_MAX || m > LX_NAME_MAX) return cap + 1;
    if ((n > m ? n - m : m - n) > (size_t)cap) return cap + 1;
    int r0[LX_NAME_MAX + 1], r1[LX_NAME_MAX + 1], r2[LX_NAME_MAX + 1];
    int *prev2 = r0, *prev = r1, *cur = r2;
    for (size_t j = 0; j <= m; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int d = prev[j] + 1;
            if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
            if (prev[j - 1] + cost < d) d = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
        int *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[m] > cap ? cap + 1 : prev[m];
}

const char *lx_suggest(const char *word, const char *const *known)
{
    /* close enough: one edit per three characters of the word, at least one */
    size_t len = strlen(word);
    int limit = len < 3 ? 1 : (int)((len + 2) / 3);
    const char *best = NULL;
    int best_d = limit + 1;
    for (size_t i = 0; known[i]; i++) {
        int d = lx_edit_distance(word, known[i], limit);
        if (d < best_d) {
            best_d = d;
            best = known[i];
        }
    }
    return best;
}

int lx_unknown_option(lua_State *L, int level, const char *who, const char *key,
                      const char *const *known)
{
    const char *near = lx_suggest(key, known);
    luaL_where(L, level);
    if (near)
        lua_pushfstring(L, "%s: unknown option '%s' (did you mean '%s'?)", who, key, near);
    else
        lua_pushfstring(L, "%s: unknown option '%s'", who, key);
    lua_concat(L, 2);
    return lua_error(L);
}

void lx_checkoptions(lua_State *L, int idx, const char *const *known, const char *who)
{
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: options must be a table, got %s", who, luaL_typename(L, idx));
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int found = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (size_t i = 0; known[i] && !found; i++) found = strcmp(k, known[i]) == 0;
        }
        if (!found) {
            /* a non-string key is named as Lua prints it (an array entry: '1') */
            const char *k = luaL_tolstring(L, -1, NULL);
            lx_unknown_option(L, 2, who, k, known);
        }
    }
}

/* ls._suggest(word, names) -> the name closest to word (edit distance, see lx_suggest) or nil: the
 * one suggestion rule, shared with the Lua option checker (landscape.util). */
static int lx_suggest_lua(lua_State *L)
{
    const char *word = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    if (n > 4096) return luaL_error(L, "_suggest: at most 4096 names, got %I", (LUAI_UACINT)n);
    const char **known = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 0; i < n; i++) {
        if (lua_geti(L, 2, i + 1) != LUA_TSTRING)
            return luaL_error(L, "_suggest: names[%I] is not a string", (LUAI_UACINT)i + 1);
        known[i] = lua_tostring(L, -1);   /* anchored by the table */
        lua_pop(L, 1);
    }
    known[n] = NULL;
    const char *best = lx_suggest(word, known);
    if (best) lua_pushstring(L, best);
    else lua_pushnil(L);
    return 1;
}

void lx_open_util(lua_State *L)
{
    lua_pushcfunction(L, lx_suggest_lua);
    lua_setfield(L, -2, "_suggest");
}

void lx_add_help(lua_State *L, int module, const lx_help *entries)
{
    module = lua_absindex(L, module);
    if (lua_getfield(L, module, "_help") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, module, "_help");
    }
    for (const lx_help *h = entries; h->name; h++) {
        lua_createtable(L, 3, 0);
        lua_pushstring(L, h->sig);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, h->text);
        lua_rawseti(L, -2, 2);
        lua_pushstring(L, h->example);
        lua_rawseti(L, -2, 3);
        lua_setfield(L, -2, h->name);
    }
    lua_pop(L, 1);
}
