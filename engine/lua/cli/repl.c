/* The landscape REPL: read a chunk (with continuation lines), run it, show its results.
 *
 * It follows lua.c's doREPL: a line is first compiled as "return <line>;" so that an expression
 * shows its value; if that fails it is compiled as a statement, and while the compiler's complaint
 * is a syntax error at "<eof>" the chunk is incomplete and a continuation line is read with the ">>
 * " prompt. Errors are printed with their traceback and the loop goes on. Results are rendered by
 * M.show of the Lua module landscape.repl, which also supplies tab-completion candidates
 * (M.complete_line); if that module cannot be loaded the REPL still works, printing with print()
 * and without completion. */
#include <lauxlib.h>
#include <lua.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lineedit.h"

#define LX_REPL_HISTORY_CAP 1000
#define LX_REPL_HISTORY_FILE ".landscape_history"
#define LX_REPL_EOFMARK "<eof>"

/* lx_repl_loadline's results besides Lua statuses. */
enum { LX_REPL_QUIT = -1, LX_REPL_SKIP = -2 };

typedef struct {
    lua_State *L;
    ls_lineedit *le;
    int helpers; /* registry reference to the landscape.repl module, or LUA_NOREF */
} lx_repl;

/* Tab completion: asks M.complete_line(text before the cursor, width, _G) and converts its answer
 * (1-based start, replacement or nil, listing or nil) for the line editor. Any error means "no
 * completion"; the stack is left as it was found. */
static void lx_repl_complete(void *ud, const char *line, size_t cursor, int width,
                             ls_completion *out)
{
    lx_repl *r = ud;
    lua_State *L = r->L;
    if (r->helpers == LUA_NOREF || !lua_checkstack(L, 8)) return;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->helpers);
    lua_getfield(L, -1, "complete_line");
    lua_pushlstring(L, line, cursor);
    lua_pushinteger(L, width);
    lua_pushglobaltable(L);
    if (lua_pcall(L, 3, 3, 0) == LUA_OK && lua_isinteger(L, -3)) {
        lua_Integer start = lua_tointeger(L, -3) - 1;
        out->start = start < 0 ? 0 : (size_t)start > cursor ? cursor : (size_t)start;
        size_t n;
        const char *s;
        if (lua_type(L, -2) == LUA_TSTRING && (s = lua_tolstring(L, -2, &n)) != NULL) {
            out->replacement = malloc(n + 1);
            if (out->replacement) memcpy(out->replacement, s, n + 1);
        }
        if (lua_type(L, -1) == LUA_TSTRING && (s = lua_tolstring(L, -1, &n)) != NULL) {
            out->listing = malloc(n + 1);
            if (out->listing) memcpy(out->listing, s, n + 1);
        }
    }
    lua_settop(L, top);
}

/* The prompt: the global _PROMPT / _PROMPT2 if set (as in lua.c), else "> " / ">> ". Pushed on the
 * stack (it must stay alive while the line is read). */
static const char *lx_repl_prompt(lua_State *L, int firstline)
{
    if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushstring(L, firstline ? "> " : ">> ");
        return lua_tostring(L, -1);
    }
    const char *p = luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    return p;
}

/* Reads one line and pushes it as a string (only when the status is LS_LINE_OK). Lines go to
 * history as they are typed, each physical line on its own. */
static ls_line_status lx_repl_pushline(lx_repl *r, int firstline)
{
    lua_State *L = r->L;
    ls_line_status st;
    const char *prompt = lx_repl_prompt(L, firstline);
    char *line = ls_lineedit_read(r->le, prompt, &st);
    lua_pop(L, 1);
    if (st != LS_LINE_OK) return st;
    ls_lineedit_history_add(r->le, line);
    if (firstline && line[0] == '=') /* "=expr" means "return expr", as in Lua 5.2 and lua.c */
        lua_pushfstring(L, "return %s", line + 1);
    else if (firstline && line[0] == '?') /* "?f" means "help(f)" */
        lua_pushfstring(L, "help(%s)", line + 1);
    else
        lua_pushstring(L, line);
    free(line);
    return LS_LINE_OK;
}

/* Whether a load status means "the chunk is incomplete" (a syntax error at the end of input). */
static int lx_repl_incomplete(lua_State *L, int status)
{
    if (status != LUA_ERRSYNTAX) return 0;
    size_t n, m = sizeof LX_REPL_EOFMARK - 1;
    const char *msg = lua_tolstring(L, -1, &n);
    return msg != NULL && n >= m && strcmp(msg + n - m, LX_REPL_EOFMARK) == 0;
}

/* Reads and compiles one chunk. Returns LX_REPL_QUIT at end of input, LX_REPL_SKIP when Ctrl-C
 * dropped the input, else a load status with the compiled function or the error message pushed. End
 * of input in the middle of a chunk reports the chunk's syntax error (the next read then ends the
 * loop). */
static int lx_repl_loadline(lx_repl *r)
{
    lua_State *L = r->L;
    ls_line_status st = lx_repl_pushline(r, 1);
    if (st == LS_LINE_EOF) return LX_REPL_QUIT;
    if (st == LS_LINE_INTERRUPT) return LX_REPL_SKIP;

    const char *line = lua_tostring(L, -1);
    const char *ret = lua_pushfstring(L, "return %s;", line);
    if (luaL_loadbuffer(L, ret, strlen(ret), "=stdin") == LUA_OK) {
        lua_replace(L, -3); /* function replaces the line */
        lua_pop(L, 1);      /* the "return" text */
        return LUA_OK;
    }
    lua_pop(L, 2); /* message and "return" text: the line is on top */
    for (;;) {
        size_t len;
        const char *chunk = lua_tolstring(L, -1, &len);
        int status = luaL_loadbuffer(L, chunk, len, "=stdin");
        if (!lx_repl_incomplete(L, status)) {
            lua_remove(L, -2); /* the source; function or message stays */
            return status;
        }
        st = lx_repl_pushline(r, 0);
        if (st == LS_LINE_EOF) {
            lua_remove(L, -2);
            return status;
        }
        if (st == LS_LINE_INTERRUPT) {
            lua_pop(L, 2);
            return LX_REPL_SKIP;
        }
        lua_remove(L, -2); /* the message: source, new line */
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    }
}

/* Shows the values above `base` through M.show (or print() without the helpers). */
static void lx_repl_print(lx_repl *r, int base)
{
    lua_State *L = r->L;
    int n = lua_gettop(L) - base;
    if (n <= 0) return;
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    if (r->helpers == LUA_NOREF) {
        lua_getglobal(L, "print");
        lua_insert(L, base + 1);
        if (lua_pcall(L, n, 0, 0) != LUA_OK)
            lx_cli_report(L, LUA_ERRRUN, NULL);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->helpers);
    lua_getfield(L, -1, "show");
    lua_remove(L, -2);
    lua_insert(L, base + 1);
    if (lua_pcall(L, n, 1, 0) != LUA_OK) {
        lua_pushfstring(L, "error showing the result: %s", lua_tostring(L, -1));
        lua_remove(L, -2);
        lx_cli_report(L, LUA_ERRRUN, NULL);
        return;
    }
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (s && len > 0) {
        fwrite(s, 1, len, stdout);
        fputc('\n', stdout);
    }
    fflush(stdout);
    lua_pop(L, 1);
}

/* The history file: $LANDSCAPE_HISTORY if set (empty: no file), else ~/.landscape_history. With -E
 * the variable is ignored. Pushes the path (or nil) and returns it. */
static const char *lx_repl_history_path(lua_State *L)
{
    int noenv = lua_getfield(L, LUA_REGISTRYINDEX, "LUA_NOENV") != LUA_TNIL && lua_toboolean(L, -1);
    lua_pop(L, 1);
    const char *env = noenv ? NULL : getenv("LANDSCAPE_HISTORY");
    if (env) {
        lua_pushstring(L, env);
    } else {
        const char *home = getenv("HOME");
        if (home && *home)
            lua_pushfstring(L, "%s/%s", home, LX_REPL_HISTORY_FILE);
        else
            lua_pushnil(L);
    }
    return lua_tostring(L, -1);
}

/* Loads landscape.repl through require, keeping a registry reference to it, and sets the global
 * `help` (landscape.repl.help's) unless the user has one. */
static void lx_repl_load_helpers(lx_repl *r)
{
    lua_State *L = r->L;
    if (lua_getglobal(L, "help") == LUA_TNIL) {
        lua_getglobal(L, "require");
        lua_pushliteral(L, "landscape.repl.help");
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
            lua_getfield(L, -1, "help");
            lua_setglobal(L, "help");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "landscape.repl");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        r->helpers = luaL_ref(L, LUA_REGISTRYINDEX);
        return;
    }
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: REPL helpers unavailable, results shown with print(), no completion: %s\n",
            LS_PROGNAME, msg ? msg : "'landscape.repl' did not return a table");
    lua_pop(L, 1);
}

void lx_repl_run(lua_State *L)
{
    lx_repl r = {L, ls_lineedit_new(), LUA_NOREF};
    if (!r.le) {
        fprintf(stderr, "%s: not enough memory for the REPL\n", LS_PROGNAME);
        return;
    }
    int base = lua_gettop(L);
    lx_repl_load_helpers(&r);
    ls_lineedit_set_completion(r.le, lx_repl_complete, &r);
    ls_lineedit_history_load(r.le, lx_repl_history_path(L), LX_REPL_HISTORY_CAP);
    lua_settop(L, base);

    printf("%s %s (%s) -- ls = require \"landscape\" to begin, help() for help, Ctrl-D quits\n",
           LS_PROGNAME, LS_VERSION, LUA_RELEASE);
    fflush(stdout);
    int status;
    while ((status = lx_repl_loadline(&r)) != LX_REPL_QUIT) {
        if (status == LX_REPL_SKIP) continue;
        if (status == LUA_OK) status = lx_cli_docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK)
            lx_repl_print(&r, base);
        else
            lx_cli_report(L, status, NULL);
        lua_settop(L, base);
    }
    lua_settop(L, base);
    fputc('\n', stdout);
    fflush(stdout);
    if (r.helpers != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r.helpers);
    ls_lineedit_free(r.le);
}
