/* Shared conventions of the Lua binding (the only part of the project that includes lua.h).
 *
 * One binding pattern (STYLE.md §6): a Tensor is a userdata box holding one ls_tensor reference. The box
 * is created with its metatable BEFORE the C object exists, so an error raised while building the object
 * can never leak it: the empty box is simply collected. __gc and __close are the same idempotent function.
 * Dims and indices are 1-based in Lua and converted here only (negative counts from the end, -1 = last).
 * Engine errors are raised with luaL_error(L, "%s", ls_error_message()). */
#ifndef LX_H
#define LX_H

#include <lauxlib.h>
#include <lua.h>

#include "tensor/tensor.h"

#define LX_TENSOR "landscape.Tensor"

/* Push an empty Tensor box (metatable set); store the object into *box afterwards. */
ls_tensor **lx_newtensorbox(lua_State *L);
/* A guard: a userdata holding `size` zeroed bytes (an engine result that owns memory: a CSV table, an
 * eigen-decomposition) whose __gc/__close runs fin(payload). Push it before the engine call that fills
 * the payload: if turning the result into Lua values then raises (Lua out of memory), the collector
 * still frees it. fin must be idempotent (the *_free functions of the engine are). Returns payload. */
void *lx_guard_push(lua_State *L, size_t size, void (*fin)(void *payload));
/* The tensor at idx, or raise "bad argument #i to 'f' (landscape.Tensor expected, got X)". Also raises
 * if the box was closed. */
ls_tensor *lx_checktensor(lua_State *L, int idx);
/* The tensor at idx, or NULL if it is not a Tensor (raises if it is a closed Tensor). */
ls_tensor *lx_totensor(lua_State *L, int idx);
/* The Lua number at idx as a 0-d tensor of dtype ref, boxed on the stack; a non-integral number
 * next to an integer tensor is an error naming `who` (lx_tensor.c). */
ls_tensor *lx_scalar_operand(lua_State *L, int idx, ls_dtype ref, const char *who);
/* Raise the engine's last error message as a Lua error. Never returns. */
int lx_error(lua_State *L);
/* The same after naming `who` in a generic engine message (ls_error_retag: "tensor: out of memory
 * ..." -> "zeros: out of memory ..."). Never returns. */
int lx_error_in(lua_State *L, const char *who);

/* Fixed arity: raise "<who>: too many arguments (4 given, at most 3)" when an argument past `max`
 * is not nil. Trailing nils are allowed (f(x, nil) is f(x)). */
void lx_checkarity(lua_State *L, int max, const char *who);
/* A string argument that goes to C as a NUL-terminated string: raises naming `who` and `what` when
 * it is not a string or holds a NUL byte (C would silently cut it there). */
const char *lx_checkcstring(lua_State *L, int idx, const char *who, const char *what);
/* The same check for a string already at idx (a table value, a column name): NULL when not a string. */
const char *lx_tocstring(lua_State *L, int idx, const char *who, const char *what);

/* 1-based Lua dim (negative from the end) -> 0-based C dim, checked against ndim; raises naming `who`. */
int lx_checkdim(lua_State *L, int idx, int ndim, const char *who);
/* A shape given as a table {2, 3} at idx, or as integers from idx to the top of the stack. Returns ndim. */
int lx_checkshape(lua_State *L, int idx, int64_t *shape, const char *who);

/* Options tables: read key from the table at idx (idx may be absent/nil: then the default). Raise a
 * clear error on a wrong type: "<who>: option 'seed' must be an integer, got string". */
double lx_optnumber(lua_State *L, int idx, const char *key, double def, const char *who);
lua_Integer lx_optinteger(lua_State *L, int idx, const char *key, lua_Integer def, const char *who);
int lx_optboolean(lua_State *L, int idx, const char *key, int def, const char *who);
const char *lx_optstring(lua_State *L, int idx, const char *key, const char *def, const char *who);
ls_dtype lx_optdtype(lua_State *L, int idx, const char *key, ls_dtype def, const char *who);

/* The one option checker (the Lua side, landscape.util.check_options, shares its suggestion rule
 * through ls._suggest). The options table at idx (nil/none: nothing to check; another type is an
 * error) may hold only the keys in `known` (a NULL-terminated list); any other key raises, at the
 * caller's line, "<who>: unknown option 'probs' (did you mean 'probes'?)", the suggestion left out
 * when no known key is close. */
void lx_checkoptions(lua_State *L, int idx, const char *const *known, const char *who);
/* The known name closest to word by edit distance (insertions, deletions, substitutions and
 * swaps of neighbours), if within one edit per three characters of word (at least one); else NULL. */
const char *lx_suggest(const char *word, const char *const *known);
/* Raise the unknown-option error for key, with position information of call level `level`. */
int lx_unknown_option(lua_State *L, int level, const char *who, const char *key,
                      const char *const *known);

/* Each binding file adds its functions to the module table on top of the stack. */
/* Help for C functions (help(f) in the REPL): the signature, a one-paragraph description and an
 * example. Each binding file lists the entries of its functions beside its function table;
 * `name` is the field ("randn", "linalg.solve") or the Tensor method ("size"). */
typedef struct lx_help {
    const char *name, *sig, *text, *example;
} lx_help;
/* Adds entries (ending with a NULL name) to ls._help of the module table at index `module`. */
void lx_add_help(lua_State *L, int module, const lx_help *entries);

void lx_open_tensor(lua_State *L);   /* lx_tensor.c: Tensor type, creation, ops */
void lx_open_random(lua_State *L);   /* lx_random.c: seeds, generators, random tensors */
void lx_open_io(lua_State *L);       /* lx_io.c: ls.io.* (IDX, CSV, safetensors) */
void lx_open_system(lua_State *L);   /* lx_system.c: threads, version, memory */
void lx_open_ops(lua_State *L);      /* lx_ops.c: every registry op as method and function */
void lx_open_autograd(lua_State *L); /* lx_autograd.c: grad, backward, no_grad, detach */
void lx_open_optim(lua_State *L);    /* lx_optim.c: ls._optim kernels behind ls.optim */
void lx_open_curvature(lua_State *L); /* lx_curvature.c: ls._curvature kernels behind ls.curvature */
void lx_open_util(lua_State *L);     /* lx_util.c: ls._suggest (the "did you mean" rule) */
void lx_open_stats(lua_State *L);    /* lx_stats.c: ls._stats kernels behind ls.stats */

#endif
