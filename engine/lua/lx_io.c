/* ls.io: files in and out (IDX, CSV, safetensors, whole text files). See docs/io.md for the API.
 * Every writer replaces its file whole (engine/data/atomic.h).
 *
 * Engine results that own several objects (a CSV table, a safetensors file's tensors) are parked in a
 * guard (lx_guard_push) while they are turned into Lua values: if pushing raises (out of memory), the
 * guard's __gc frees whatever has not yet been handed to a Tensor box. Temporary arrays for calls
 * into the engine are userdata too, and every string they point at is anchored in a table on the
 * stack, so an error at any point leaks nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/atomic.h"
#include "data/csv.h"
#include "data/idx.h"
#include "data/safetensors.h"
#include "lx.h"

static void lx_fin_csv(void *slot)
{
    ls_csv_table_free(*(ls_csv_table **)slot);
    *(ls_csv_table **)slot = NULL;
}

static void lx_fin_st(void *slot)
{
    ls_safetensors_free(*(ls_safetensors **)slot);
    *(ls_safetensors **)slot = NULL;
}

/* A userdata array of n pointers, collected with the stack; raises naming `who` if n is absurd. */
static void *lx_ptrarray(lua_State *L, size_t n, const char *who)
{
    if (n > ((size_t)1 << 40) / sizeof(void *))
        luaL_error(L, "%s: too many items (%I)", who, (lua_Integer)n);
    return lua_newuserdatauv(L, (n ? n : 1) * sizeof(void *), 0);
}

/* ---- IDX ---- */

/* read_idx(path) -> Tensor */
static int lx_io_read_idx(lua_State *L)
{
    lx_checkarity(L, 1, "read_idx");
    const char *path = lx_checkcstring(L, 1, "read_idx", "the path");
    ls_tensor **box = lx_newtensorbox(L);
    ls_tensor *t = ls_idx_read(path);
    if (!t) return lx_error(L);
    *box = t;
    return 1;
}

/* write_idx(path, tensor) */
static int lx_io_write_idx(lua_State *L)
{
    lx_checkarity(L, 2, "write_idx");
    const char *path = lx_checkcstring(L, 1, "write_idx", "the path");
    ls_tensor *t = lx_checktensor(L, 2);
    if (ls_idx_write(path, t) != LS_OK) return lx_error(L);
    return 0;
}

/* ---- CSV ---- */

/* csv_read(path) -> {columns = {names...}, data = {name -> Tensor f64 | {strings}}, nrows = n} */
static int lx_io_csv_read(lua_State *L)
{
    lx_checkarity(L, 1, "csv_read");
    const char *path = lx_checkcstring(L, 1, "csv_read", "the path");
    ls_csv_table **slot = lx_guard_push(L, sizeof *slot, lx_fin_csv);
    ls_csv_table *t = ls_csv_read(path);
    if (!t) return lx_error(L);
    *slot = t;
    lua_createtable(L, 0, 3);
    lua_createtable(L, t->ncols, 0);
    for (int c = 0; c < t->ncols; c++) {
        lua_pushstring(L, t->cols[c].name);
        lua_rawseti(L, -2, c + 1);
    }
    lua_setfield(L, -2, "columns");
    lua_createtable(L, 0, t->ncols);
    for (int c = 0; c < t->ncols; c++) {
        const ls_csv_column *col = &t->cols[c];
        if (col->kind == LS_CSV_NUMBER) {
            ls_tensor **box = lx_newtensorbox(L);
            int64_t n = t->nrows;
            if (!(*box = ls_tensor_from_buffer(LS_F64, 1, &n, col->num))) return lx_error(L);
        } else {
            lua_createtable(L, (int)t->nrows, 0);
            for (int64_t r = 0; r < t->nrows; r++) {
                lua_pushstring(L, col->str[r]);
                lua_rawseti(L, -2, (lua_Integer)r + 1);
            }
        }
        lua_setfield(L, -2, col->name);
    }
    lua_setfield(L, -2, "data");
    lua_pushinteger(L, (lua_Integer)t->nrows);
    lua_setfield(L, -2, "nrows");
    return 1;
}

/* The shortest "%.Ng" form of v that reads back as exactly v (Lua's own %.14g would lose bits). */
static void lx_fmt_double(char *buf, size_t n, double v)
{
    if (isnan(v)) { snprintf(buf, n, "nan"); return; }
    if (isinf(v)) { snprintf(buf, n, v > 0 ? "inf" : "-inf"); return; }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* The text of the cell at the top of the stack (popped), anchored in the table at `anchor`;
 * NULL for nil. Raises naming the row and column for values that have no text form. */
static const char *lx_cell_text(lua_State *L, int anchor, lua_Integer slot, lua_Integer row,
                                const char *col)
{
    char buf[64];
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        lua_pop(L, 1);
        return NULL;
    case LUA_TSTRING:
        lua_pushfstring(L, "row %I, column '%s'", row, col);
        lx_tocstring(L, -2, "csv_write", lua_tostring(L, -1));
        lua_pop(L, 1);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
            snprintf(buf, sizeof buf, LUA_INTEGER_FMT, lua_tointeger(L, -1));
        } else {
            lx_fmt_double(buf, sizeof buf, lua_tonumber(L, -1));
        }
        lua_pop(L, 1);
        lua_pushstring(L, buf);
        break;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
        lua_remove(L, -2);
        break;
    default:
        return luaL_error(L, "csv_write: row %I, column '%s': cannot write a %s value", row, col,
                          luaL_typename(L, -1)), NULL;
    }
    const char *s = lua_tostring(L, -1);
    lua_rawseti(L, anchor, slot);   /* the anchor keeps s alive */
    return s;
}

/* csv_write(path, columns, rows [, append]) */
static int lx_io_csv_write(lua_State *L)
{
    lx_checkarity(L, 4, "csv_write");
    const char *path = lx_checkcstring(L, 1, "csv_write", "the path");
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    int append = lua_toboolean(L, 4);
    lua_settop(L, 4);
    size_t ncols = lua_rawlen(L, 2), nrows = lua_rawlen(L, 3);
    if (ncols == 0)
        return luaL_error(L, "csv_write: %s: columns must be a non-empty list of names", path);
    if (ncols > 1 << 20) return luaL_error(L, "csv_write: %s: too many columns", path);
    if (nrows > ((size_t)1 << 40) / ncols) return luaL_error(L, "csv_write: %s: too many rows", path);

    const char **names = lx_ptrarray(L, ncols, "csv_write");       /* 5 */
    const char **cells = lx_ptrarray(L, nrows * ncols, "csv_write"); /* 6 */
    lua_createtable(L, (int)(nrows * ncols < 1 << 24 ? nrows * ncols : 1 << 24), 0); /* 7: anchor */
    lua_createtable(L, 0, (int)ncols);                               /* 8: set of names */
    for (size_t c = 0; c < ncols; c++) {
        if (lua_rawgeti(L, 2, (lua_Integer)c + 1) != LUA_TSTRING)
            return luaL_error(L, "csv_write: %s: columns[%d] is a %s, not a string", path,
                              (int)c + 1, luaL_typename(L, -1));
        lua_pushfstring(L, "column name %d", (int)c + 1);
        names[c] = lx_tocstring(L, -2, "csv_write", lua_tostring(L, -1));
        lua_pop(L, 1);   /* names[c] is anchored by the columns table */
        lua_pushboolean(L, 1);
        lua_rawset(L, 8);
    }
    for (size_t r = 0; r < nrows; r++) {
        if (lua_rawgeti(L, 3, (lua_Integer)r + 1) != LUA_TTABLE)
            return luaL_error(L, "csv_write: %s: rows[%d] is a %s, not a table", path, (int)r + 1,
                              luaL_typename(L, -1));
        int row = lua_gettop(L);
        /* Every key must be a column: a misspelt key would otherwise vanish silently. */
        lua_pushnil(L);
        while (lua_next(L, row)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawget(L, 8) == LUA_TNIL) {
                lua_pop(L, 1);
                return luaL_error(L, "csv_write: %s: rows[%d] has key '%s', which is not among "
                                  "the columns", path, (int)r + 1, luaL_tolstring(L, -1, NULL));
            }
            lua_pop(L, 1);
        }
        for (size_t c = 0; c < ncols; c++) {
            lua_getfield(L, row, names[c]);
            lua_Integer slot = (lua_Integer)(r * ncols + c) + 1;
            cells[r * ncols + c] = lx_cell_text(L, 7, slot, (lua_Integer)r + 1, names[c]);
        }
        lua_pop(L, 1);
    }
    if (ls_csv_write(path, (int)ncols, names, (int64_t)nrows, cells, append) != LS_OK)
        return lx_error(L);
    return 0;
}

/* ---- safetensors ---- */

/* load_safetensors(path) -> tensors (name -> Tensor), metadata (key -> string) */
static int lx_io_load_safetensors(lua_State *L)
{
    lx_checkarity(L, 1, "load_safetensors");
    const char *path = lx_checkcstring(L, 1, "load_safetensors", "the path");
    ls_safetensors **slot = lx_guard_push(L, sizeof *slot, lx_fin_st);
    ls_safetensors *st = ls_safetensors_load(path);
    if (!st) return lx_error(L);
    *slot = st;
    lua_createtable(L, 0, st->ntensors);
    for (int k = 0; k < st->ntensors; k++) {
        ls_tensor **box = lx_newtensorbox(L);
        *box = st->tensors[k];
        st->tensors[k] = NULL;   /* the box owns it now */
        lua_setfield(L, -2, st->names[k]);
    }
    lua_createtable(L, 0, st->nmeta);
    for (int k = 0; k < st->nmeta; k++) {
        lua_pushstring(L, st->meta_values[k]);
        lua_setfield(L, -2, st->meta_keys[k]);
    }
    return 2;
}

/* save_safetensors(path, tensors [, metadata]) */
static int lx_io_save_safetensors(lua_State *L)
{
    lx_checkarity(L, 3, "save_safetensors");
    const char *path = lx_checkcstring(L, 1, "save_safetensors", "the path");
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    size_t n = 0, nmeta = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        n++;
    }
    for (lua_pushnil(L); !lua_isnil(L, 3) && lua_next(L, 3); lua_pop(L, 1)) nmeta++;
    const char **names = lx_ptrarray(L, n, "save_safetensors");           /* 4 */
    const ls_tensor **ts = lx_ptrarray(L, n, "save_safetensors");        /* 5 */
    const char **keys = lx_ptrarray(L, nmeta, "save_safetensors");       /* 6 */
    const char **values = lx_ptrarray(L, nmeta, "save_safetensors");     /* 7 */
    lua_newtable(L);                                                      /* 8: anchor */
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "save_safetensors: %s: tensor names must be strings, got a %s key",
                              path, luaL_typename(L, -2));
        ls_tensor *t = lx_totensor(L, -1);
        if (!t)
            return luaL_error(L, "save_safetensors: %s: value for '%s' is a %s, not a Tensor", path,
                              lua_tostring(L, -2), luaL_typename(L, -1));
        names[k] = lx_tocstring(L, -2, "save_safetensors", "a tensor name");   /* anchored */
        ts[k++] = t;
        lua_pop(L, 1);
    }
    k = 0;
    for (lua_pushnil(L); !lua_isnil(L, 3) && lua_next(L, 3); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "save_safetensors: %s: metadata keys must be strings, got a %s key",
                              path, luaL_typename(L, -2));
        int vt = lua_type(L, -1);
        if (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)
            return luaL_error(L, "save_safetensors: %s: metadata value for '%s' is a %s, not a "
                              "string", path, lua_tostring(L, -2), luaL_typename(L, -1));
        keys[k] = lx_tocstring(L, -2, "save_safetensors", "a metadata key");
        /* A converted copy, anchored, so the table's own value (and lua_next) is left alone. */
        luaL_tolstring(L, -1, NULL);
        values[k] = lx_tocstring(L, -1, "save_safetensors", "a metadata value");
        lua_rawseti(L, 8, (lua_Integer)k + 1);
        k++;
    }
    if (ls_safetensors_save(path, (int)n, names, ts, (int)nmeta, keys, values) != LS_OK)
        return lx_error(L);
    return 0;
}

/* ---- whole files ---- */

/* write_file(path, text): text (any bytes) replaces the file whole (data/atomic.h) */
static int lx_io_write_file(lua_State *L)
{
    lx_checkarity(L, 2, "write_file");
    const char *path = lx_checkcstring(L, 1, "write_file", "the path");
    size_t n;
    const char *text = luaL_checklstring(L, 2, &n);
    ls_atomic_file af;
    if (ls_atomic_file_open(&af, "write_file", path) != LS_OK) return lx_error(L);
    if (n) (void)fwrite(text, 1, n, af.f);   /* a failure shows in commit */
    if (ls_atomic_file_commit(&af, "write_file") != LS_OK) return lx_error(L);
    return 0;
}

/* help(f) for ls.io (lx_add_help; names as ls._help keys). */
static const lx_help lx_io_help[] = {
    {"io.read_idx", "ls.io.read_idx(path) -> Tensor",
     "An IDX file (raw or gzip), e.g. Fashion-MNIST's images (u8 [N, 28, 28]) or labels; the "
     "dtype follows the file's type byte.",
     "ls.io.read_idx('/usr/share/fashion-mnist/t10k-labels-idx1-ubyte.gz')"},
    {"io.write_idx", "ls.io.write_idx(path, tensor) -> nil",
     "Writes a tensor as an IDX file (gzip when the path ends in .gz).",
     "ls.io.write_idx('/tmp/x.idx', ls.zeros(2, 2):byte())"},
    {"io.csv_read", "ls.io.csv_read(path) -> {columns, data, nrows}",
     "A CSV file (libcsv): the column names in order and each column as an f64 tensor (when "
     "every value parses) or a list of strings; ls.csv and ls.table build on it.",
     "local t = ls.io.csv_read('out/mlp_s1.csv'); print(t.nrows)"},
    {"io.csv_write", "ls.io.csv_write(path, columns, rows [, append]) -> nil",
     "Writes rows (tables keyed by column name) under the header `columns` as CSV (libcsv "
     "quoting, numbers with all digits); append adds rows to an existing file.",
     "ls.io.csv_write('/tmp/t.csv', {'a', 'b'}, {{a = 1, b = 'x'}})"},
    {"io.load_safetensors", "ls.io.load_safetensors(path) -> tensors, metadata",
     "The tensors of a safetensors file by name, and its string metadata.",
     "local t, meta = ls.io.load_safetensors('out/mlp_s1.safetensors')"},
    {"io.save_safetensors", "ls.io.save_safetensors(path, tensors [, metadata]) -> nil",
     "Writes tensors (name -> Tensor) and string metadata as a safetensors file.",
     "ls.io.save_safetensors('/tmp/w.safetensors', {w = ls.ones(2)})"},
    {"io.write_file", "ls.io.write_file(path, text) -> nil",
     "Replaces a file whole with text (any bytes): written to a temporary file beside it, flushed "
     "and renamed into place, so a crash or a full disk leaves the old file or the new one.",
     "ls.io.write_file('/tmp/notes.txt', 'hello')"},
    {NULL, NULL, NULL, NULL}};

void lx_open_io(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"read_idx", lx_io_read_idx},
        {"write_idx", lx_io_write_idx},
        {"csv_read", lx_io_csv_read},
        {"csv_write", lx_io_csv_write},
        {"load_safetensors", lx_io_load_safetensors},
        {"save_safetensors", lx_io_save_safetensors},
        {"write_file", lx_io_write_file},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "io");
    lx_add_help(L, -1, lx_io_help);
}
