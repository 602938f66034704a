/* landscape: the command-line front end, like Torch's `th`.
 *
 *   landscape [options] [script [args]]
 *
 * It has the interface of the stock lua5.4 interpreter (lua.c): the same options (-e -l -i -v -E -W
 * - --), the same global `arg` table and `...` for the script, stdin run as a script when it is not
 * a terminal, and a REPL (repl.c) when it is. On top of that: `require "landscape"` is built in
 * (the binding is linked into the executable and registered in package.preload), and package.path
 * finds the landscape Lua helpers (LANDSCAPE_PATH, the source tree when run from the build tree,
 * the install directory). Scripts run with a traceback on error and exit status 1, as under
 * xpcall(main, debug.traceback). */

/* realpath() and sigaction() are POSIX, not C11. */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef LS_BUILD_LUA_DIR
#define LS_BUILD_LUA_DIR "/nonexistent/lua"
#endif
#ifndef LS_SOURCE_LUALIB
#define LS_SOURCE_LUALIB "/nonexistent/lualib"
#endif
#ifndef LS_INSTALL_LUALIB
#define LS_INSTALL_LUALIB "/usr/local/share/lua/5.4"
#endif

#define LS_INIT_VAR "LUA_INIT"
#define LS_INIT_VAR_VERSION LS_INIT_VAR "_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR

/* The binding (engine/lua/landscape.c), linked into this executable. */
int luaopen_landscape(lua_State *L);

/* ---- running code with tracebacks and Ctrl-C ---- */

/* The state the SIGINT handler interrupts (there is only one). */
static lua_State *lx_cli_state = NULL;

/* Ctrl-C while Lua code runs (as in lua.c): a signal handler may not raise a Lua error, but it may
 * set a hook, so it sets one that fires at the next Lua instruction and raises "interrupted!"
 * there. A long C kernel is therefore interrupted when it returns to Lua. The handler also restores
 * the default action, so a second Ctrl-C kills a process that is stuck in C. */
static void lx_cli_stop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void lx_cli_on_sigint(int sig)
{
    signal(sig, SIG_DFL);
    int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
    lua_sethook(lx_cli_state, lx_cli_stop, mask, 1);
}

/* Lua's complaint about a nil field, method or global with " (did you mean 'x'?)" added when a
 * known name is close (landscape.repl.help's explain); the message itself when anything fails.
 * The result is pushed. */
static const char *lx_cli_explain(lua_State *L, const char *msg)
{
    static const char code[] =
        "local ok, h = pcall(require, 'landscape.repl.help')\n"
        "if ok then return h.explain(...) end\n"
        "return ...";
    if (strstr(msg, "a nil value (") && luaL_loadstring(L, code) == LUA_OK) {
        lua_pushstring(L, msg);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
            return lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    return lua_pushstring(L, msg);
}

/* The message handler: the message (or a non-string error object's __tostring) plus a traceback. */
static int lx_cli_msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    } else {
        msg = lx_cli_explain(L, msg);
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int lx_cli_docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, lx_cli_msghandler);
    lua_insert(L, base);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = lx_cli_on_sigint;
    sigemptyset(&sa.sa_mask);
    lx_cli_state = L;
    sigaction(SIGINT, &sa, &old);
    int status = lua_pcall(L, narg, nres, base);
    sigaction(SIGINT, &old, NULL);
    lua_remove(L, base);
    return status;
}

int lx_cli_report(lua_State *L, int status, const char *progname)
{
    if (status == LUA_OK) return status;
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    fflush(stdout);
    if (progname) fprintf(stderr, "%s: ", progname);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
    lua_pop(L, 1);
    return status;
}

static int lx_cli_dochunk(lua_State *L, int status)
{
    if (status == LUA_OK) status = lx_cli_docall(L, 0, 0);
    return lx_cli_report(L, status, LS_PROGNAME);
}

static int lx_cli_dofile(lua_State *L, const char *name)
{
    return lx_cli_dochunk(L, luaL_loadfile(L, name));
}

static int lx_cli_dostring(lua_State *L, const char *s, const char *name)
{
    return lx_cli_dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* `-l g=mod` runs g = require "mod"; `-l mod` runs mod = require "mod", where a suffix after '-' in
 * mod (a version mark, "mod-2.1") is left out of the global's name, as in lua 5.4. */
static int lx_cli_dolibrary(lua_State *L, const char *spec)
{
    const char *eq = strchr(spec, '=');
    const char *modname = eq ? eq + 1 : spec;
    size_t globlen = eq ? (size_t)(eq - spec) : strcspn(spec, "-");
    lua_getglobal(L, "require");
    lua_pushstring(L, modname);
    int status = lx_cli_docall(L, 1, 1);
    if (status == LUA_OK) { /* stack: the module */
        lua_pushglobaltable(L);
        lua_pushlstring(L, spec, globlen);
        lua_pushvalue(L, -3);
        lua_settable(L, -3);
        lua_pop(L, 2);
    }
    return lx_cli_report(L, status, LS_PROGNAME);
}

/* ---- package.path and the built-in module ---- */

/* Whether this executable is the one in the build tree, which is the directory holding the build's
 * lua/ folder (LS_BUILD_LUA_DIR without its last component). Both sides are compared after
 * realpath(), so symlinks to either do not matter. An installed or copied executable is never in
 * the build tree, whatever the install prefix is. */
static int lx_cli_in_build_tree(void)
{
    char *exe = realpath("/proc/self/exe", NULL);
    if (!exe) return 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    char build[] = LS_BUILD_LUA_DIR;
    slash = strrchr(build, '/');
    if (slash) *slash = '\0';
    char *real = realpath(build, NULL);
    int same = real != NULL && strcmp(exe, real) == 0;
    free(exe);
    free(real);
    return same;
}

/* Adds LANDSCAPE_PATH's entries: ';'-separated, each a template with '?' as in LUA_PATH, or a
 * directory, which stands for "dir/?.lua;dir/?/init.lua". Empty entries are skipped. */
static void lx_cli_add_user_path(luaL_Buffer *b, const char *spec)
{
    while (*spec) {
        size_t n = strcspn(spec, ";");
        if (n > 0) {
            if (memchr(spec, '?', n)) {
                luaL_addlstring(b, spec, n);
                luaL_addchar(b, ';');
            } else {
                size_t d = n;
                while (d > 1 && spec[d - 1] == '/') d--;
                luaL_addlstring(b, spec, d);
                luaL_addstring(b, "/?.lua;");
                luaL_addlstring(b, spec, d);
                luaL_addstring(b, "/?/init.lua;");
            }
        }
        spec += n;
        if (*spec == ';') spec++;
    }
}

/* Pushes `prefix` followed by the templates of `path` that are not already in prefix (both
 * ';'-separated, prefix ending in ';'). The first occurrence of a template is the one that counts,
 * so dropping the later copies changes nothing but the length of package.path. */
static void lx_cli_pushjoined(lua_State *L, const char *prefix, const char *path)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, prefix);
    while (*path) {
        size_t n = strcspn(path, ";");
        int dup = 0;
        for (const char *p = prefix; n > 0 && *p && !dup; p += strcspn(p, ";") + 1)
            dup = strncmp(p, path, n) == 0 && (p[n] == ';' || p[n] == '\0');
        if (!dup) luaL_addlstring(&b, path, n + (path[n] == ';'));
        path += n + (path[n] == ';');
    }
    luaL_pushresult(&b);
}

/* package.path = LANDSCAPE_PATH .. source lualib (build tree only) .. install dir .. the stock
 * path. package.cpath is left as Lua set it, so Debian's C modules (lfs) are found as usual. */
static void lx_cli_setpaths(lua_State *L, int noenv)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *user = noenv ? NULL : getenv("LANDSCAPE_PATH");
    if (user) lx_cli_add_user_path(&b, user);
    if (lx_cli_in_build_tree())
        luaL_addstring(&b, LS_SOURCE_LUALIB "/?.lua;" LS_SOURCE_LUALIB "/?/init.lua;");
    /* relative to the executable (<prefix>/bin/landscape -> <prefix>/share/lua/5.4), so that an
     * install with `cmake --install --prefix P` finds its helpers whatever the configured prefix */
    char *exe = realpath("/proc/self/exe", NULL);
    char *slash = exe ? strrchr(exe, '/') : NULL;
    if (slash) {
        *slash = '\0';
        luaL_addstring(&b, exe);
        luaL_addstring(&b, "/../share/lua/5.4/?.lua;");
        luaL_addstring(&b, exe);
        luaL_addstring(&b, "/../share/lua/5.4/?/init.lua;");   /* landscape.nn is nn/init.lua */
    }
    free(exe);
    luaL_addstring(&b, LS_INSTALL_LUALIB "/?.lua;" LS_INSTALL_LUALIB "/?/init.lua;");
    luaL_pushresult(&b);          /* prefix */
    lua_getglobal(L, "package");  /* prefix package */
    lua_getfield(L, -1, "path");  /* prefix package path */
    lx_cli_pushjoined(L, lua_tostring(L, -3), lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 3);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_landscape);
    lua_setfield(L, -2, "landscape");
    lua_pop(L, 1);
}

/* ---- options ---- */

enum {
    LX_ARG_ERROR = 1, /* bad option: print usage, fail */
    LX_ARG_I = 2,     /* -i */
    LX_ARG_V = 4,     /* -v, --version */
    LX_ARG_E = 8,     /* -e */
    LX_ARG_NOENV = 16, /* -E */
    LX_ARG_HELP = 32, /* -h, --help */
};

static void lx_cli_print_version(void)
{
    printf("%s %s (%s)\n", LS_PROGNAME, LS_VERSION, LUA_RELEASE);
    fflush(stdout);
}

static void lx_cli_print_usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options] [script [args]]\n"
            "Available options are:\n"
            "  -e stat   execute string 'stat'\n"
            "  -i        enter interactive mode after executing 'script'\n"
            "  -l mod    require library 'mod' into global 'mod'\n"
            "  -l g=mod  require library 'mod' into global 'g'\n"
            "  -v        show version information (also --version)\n"
            "  -h        show this help (also --help)\n"
            "  -E        ignore environment variables\n"
            "  -W        turn warnings on\n"
            "  --        stop handling options\n"
            "  -         stop handling options and execute stdin\n"
            "With no script: a REPL if stdin is a terminal, else stdin is run as a script.\n"
            "Environment: LANDSCAPE_PATH, LANDSCAPE_HISTORY, LUA_INIT, LUA_PATH, LUA_CPATH.\n",
            LS_PROGNAME);
    fflush(f);
}

/* Scans the options as lua.c does: stops at the first non-option (the script), at "-" (script from
 * stdin) or after "--". Sets *first to the script's index (argc when there is none) and *bad to the
 * offending argument on error. Returns the LX_ARG_* flags. */
static int lx_cli_collectargs(int argc, char **argv, int *first, int *bad)
{
    int args = 0;
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        *first = i;
        *bad = i;
        if (a[0] != '-') return args;
        if (strcmp(a, "--version") == 0) {
            args |= LX_ARG_V;
            continue;
        }
        if (strcmp(a, "--help") == 0) return args | LX_ARG_HELP;
        switch (a[1]) {
        case '-':
            if (a[2] != '\0') return LX_ARG_ERROR;
            *first = i + 1;
            return args;
        case '\0':
            return args;
        case 'E':
        case 'W':
        case 'i':
        case 'v':
        case 'h':
            if (a[2] != '\0') return LX_ARG_ERROR;
            if (a[1] == 'E') args |= LX_ARG_NOENV;
            if (a[1] == 'i') args |= LX_ARG_I;
            if (a[1] == 'v') args |= LX_ARG_V;
            if (a[1] == 'h') return args | LX_ARG_HELP;
            break;
        case 'e':
        case 'l':
            if (a[1] == 'e') args |= LX_ARG_E;
            if (a[2] == '\0') {
                i++;
                if (i >= argc || argv[i][0] == '-') return LX_ARG_ERROR;
            }
            break;
        default:
            return LX_ARG_ERROR;
        }
    }
    *first = i;
    return args;
}

static void lx_cli_bad_option(const char *opt)
{
    fprintf(stderr, "%s: ", LS_PROGNAME);
    if ((opt[1] == 'e' || opt[1] == 'l') && opt[2] == '\0')
        fprintf(stderr, "'%s' needs argument\n", opt);
    else
        fprintf(stderr, "unrecognized option '%s'\n", opt);
    lx_cli_print_usage(stderr);
}

/* Runs -e, -l and -W in command-line order, before the script. Stops at the first failure. */
static int lx_cli_runargs(lua_State *L, char **argv, int first)
{
    for (int i = 1; i < first; i++) {
        int opt = argv[i][1];
        if (opt == 'e' || opt == 'l') {
            const char *extra = argv[i] + 2;
            if (*extra == '\0') extra = argv[++i];
            int status = opt == 'e' ? lx_cli_dostring(L, extra, "=(command line)")
                                    : lx_cli_dolibrary(L, extra);
            if (status != LUA_OK) return 0;
        } else if (opt == 'W') {
            lua_warning(L, "@on", 0);
        }
    }
    return 1;
}

/* The global `arg`, as lua.c builds it: arg[0] is the script, arg[1..] its arguments, and the
 * interpreter and options before it at negative indices. Without a script, arg[0] is the
 * interpreter. */
static void lx_cli_createargtable(lua_State *L, char **argv, int argc, int script)
{
    if (script == argc) script = 0;
    lua_createtable(L, argc - (script + 1), script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int lx_cli_pushargs(lua_State *L)
{
    if (lua_getglobal(L, "arg") != LUA_TTABLE) return luaL_error(L, "'arg' is not a table");
    int n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);
    return n;
}

/* Runs the script argv[0] ("-" is stdin, unless it came after "--") with arg[1..] as `...`. */
static int lx_cli_handle_script(lua_State *L, char **argv)
{
    const char *fname = argv[0];
    if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;
    int status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = lx_cli_pushargs(L);
        status = lx_cli_docall(L, n, LUA_MULTRET);
    }
    return lx_cli_report(L, status, LS_PROGNAME);
}

/* LUA_INIT_5_4 or LUA_INIT: a chunk to run first, or @file. */
static int lx_cli_handle_init(lua_State *L)
{
    const char *name = "=" LS_INIT_VAR_VERSION;
    const char *init = getenv(name + 1);
    if (init == NULL) {
        name = "=" LS_INIT_VAR;
        init = getenv(name + 1);
    }
    if (init == NULL) return LUA_OK;
    if (init[0] == '@') return lx_cli_dofile(L, init + 1);
    return lx_cli_dostring(L, init, name);
}

/* Everything runs in protected mode, so even running out of memory while setting up is reported. */
static int lx_cli_pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script = argc, bad = 0;
    int args = lx_cli_collectargs(argc, argv, &script, &bad);
    luaL_checkversion(L);
    if (args == LX_ARG_ERROR) {
        lx_cli_bad_option(argv[bad]);
        return 0;
    }
    if (args & LX_ARG_HELP) {
        lx_cli_print_usage(stdout);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (args & LX_ARG_V) lx_cli_print_version();
    if (args & LX_ARG_NOENV) {
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV"); /* read by luaL_openlibs and the REPL */
    }
    luaL_openlibs(L);
    lx_cli_setpaths(L, args & LX_ARG_NOENV);
    lx_cli_createargtable(L, argv, argc, script);
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCGEN, 0, 0);
    if (!(args & LX_ARG_NOENV) && lx_cli_handle_init(L) != LUA_OK) return 0;
    if (!lx_cli_runargs(L, argv, script)) return 0;
    if (script < argc && lx_cli_handle_script(L, argv + script) != LUA_OK) return 0;
    if (args & LX_ARG_I) {
        lx_repl_run(L);
    } else if (script == argc && !(args & (LX_ARG_E | LX_ARG_V))) {
        if (isatty(STDIN_FILENO))
            lx_repl_run(L);
        else if (lx_cli_dofile(L, NULL) != LUA_OK)
            return 0;
    }
    lua_pushboolean(L, 1);
    return 1;
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "%s: cannot create state: not enough memory\n", LS_PROGNAME);
        return EXIT_FAILURE;
    }
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, lx_cli_pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = lua_pcall(L, 2, 1, 0);
    int ok = lua_toboolean(L, -1);
    lx_cli_report(L, status, LS_PROGNAME);
    lua_close(L);
    return ok && status == LUA_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}
