/* The engine's allocator: 64-byte aligned blocks, failures reported through ls_error_set (LS_ERR_MEM)
 * so callers just return NULL. Tests can inject failures (ls_alloc_fail_after) to walk error paths,
 * as Lua's ltests.c does. */
#ifndef LS_ALLOC_H
#define LS_ALLOC_H

#include <stddef.h>

#define LS_ALIGN 64

/* Aligned allocation; `what` names the caller for the error message. NULL on failure. */
void *ls_malloc(size_t nbytes, const char *what);
/* count * size bytes, the product checked for overflow (an error naming `what`, not a short block). */
void *ls_malloc_array(size_t count, size_t size, const char *what);
/* Same as ls_malloc, zero-filled. */
void *ls_calloc(size_t nbytes, const char *what);
/* Resize a block from ls_malloc (p = NULL: a new block). The contents up to the smaller size are
 * kept. On failure p is left as it was and NULL is returned. */
void *ls_realloc(void *p, size_t nbytes, const char *what);
void ls_free(void *p);

/* Make the n-th allocation from now fail (n >= 1); n = 0 disables injection. Test use only (see
 * docs/hardening.md): every engine allocation, from any thread, counts. */
void ls_alloc_fail_after(long n);
/* Allocations still to go before the injected failure; 0 once it has fired (or when none is set). */
long ls_alloc_fail_pending(void);
/* Bytes currently allocated through ls_malloc/ls_calloc (for leak and memory checks). */
size_t ls_alloc_live_bytes(void);

#endif
