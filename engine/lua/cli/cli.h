/* Shared pieces of the `landscape` command-line front end: main.c (options, paths, running scripts,
 * the same interface as lua.c of Lua 5.4) and repl.c (the interactive loop). */
#ifndef LS_CLI_H
#define LS_CLI_H

#include <lua.h>

#define LS_PROGNAME "landscape"

#ifndef LS_VERSION /* normally set by CMake */
#define LS_VERSION "unknown"
#endif

/* Calls the function below its narg arguments on the stack under a message handler that appends a
 * traceback (as xpcall(f, debug.traceback) does), with Ctrl-C turned into the Lua error
 * "interrupted!" while it runs. On error the message is left on the stack. Returns the lua_pcall
 * status. */
int lx_cli_docall(lua_State *L, int narg, int nres);

/* If status is not LUA_OK, prints the message on top of the stack to stderr, prefixed with
 * "progname: " unless progname is NULL, and pops it. Returns status. */
int lx_cli_report(lua_State *L, int status, const char *progname);

/* The interactive loop: banner, then read-eval-print until end of input. */
void lx_repl_run(lua_State *L);

#endif
