#include "core/alloc.h"
#include "core/status.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Each block carries a header (kept at LS_ALIGN bytes so the payload stays aligned) recording its size,
 * so live bytes can be tracked without a table. */
typedef struct { size_t nbytes; } ls_alloc_header;

static atomic_size_t ls_live_bytes;
static atomic_long ls_fail_countdown;

void ls_alloc_fail_after(long n) { atomic_store(&ls_fail_countdown, n); }

size_t ls_alloc_live_bytes(void) { return atomic_load(&ls_live_bytes); }

void *ls_malloc(size_t nbytes, const char *what)
{
    long c = atomic_load(&ls_fail_countdown);
    if (c > 0 && atomic_fetch_sub(&ls_fail_countdown, 1) == 1) {
        ls_error_set(LS_ERR_MEM, "%s: out of memory (injected failure)", what);
        return NULL;
    }
    if (nbytes > ((size_t)1 << 46)) {
        ls_error_set(LS_ERR_MEM, "%s: allocation of %zu bytes is too large", what, nbytes);
        return NULL;
    }
    size_t total = LS_ALIGN + ((nbytes + LS_ALIGN - 1) / LS_ALIGN) * LS_ALIGN;
    char *base = aligned_alloc(LS_ALIGN, total);
    if (!base) {
        ls_error_set(LS_ERR_MEM, "%s: out of memory allocating %zu bytes", what, nbytes);
        return NULL;
    }
    ((ls_alloc_header *)base)->nbytes = nbytes;
    atomic_fetch_add(&ls_live_bytes, nbytes);
    return base + LS_ALIGN;
}

void *ls_calloc(size_t nbytes, const char *what)
{
    void *p = ls_malloc(nbytes, what);
    if (p) memset(p, 0, nbytes);
    return p;
}

void ls_free(void *p)
{
    if (!p) return;
    char *base = (char *)p - LS_ALIGN;
    atomic_fetch_sub(&ls_live_bytes, ((ls_alloc_header *)base)->nbytes);
    free(base);
}
