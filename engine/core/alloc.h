/* The engine's allocator: 64-byte aligned blocks, failures reported through ls_error_set (LS_ERR_MEM)
 * so callers just return NULL. Tests can inject failures (ls_alloc_fail_after) to walk error paths,
 * as Lua's ltests.c does. */
#ifndef LS_ALLOC_H
#define LS_ALLOC_H

#include <stddef.h>

#define LS_ALIGN 64

/* Aligned allocation; `what` names the caller for the error message. NULL on failure. */
void *ls_malloc(size_t nbytes, const char *what);
/* Same, zero-filled. */
void *ls_calloc(size_t nbytes, const char *what);
void ls_free(void *p);

/* Make the n-th allocation from now fail (n >= 1); n = 0 disables injection. Test use only. */
void ls_alloc_fail_after(long n);
/* Bytes currently allocated through ls_malloc/ls_calloc (for leak and memory checks). */
size_t ls_alloc_live_bytes(void);

#endif
