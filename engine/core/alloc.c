#include "core/alloc.h"
#include "core/status.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each block carries a header (kept at LS_ALIGN bytes so the payload stays aligned) recording its size,
 * so live bytes can be tracked without a table. */
typedef struct {
    size_t nbytes;
    void *raw;     /* what malloc returned, for small blocks (NULL: the block itself) */
} ls_alloc_header;

static atomic_size_t ls_live_bytes;
static atomic_size_t ls_large_bytes;  /* blocks of at least LS_CACHE_MIN in use, their whole size */
static atomic_size_t ls_large_peak;   /* the most ls_large_bytes has been */
static atomic_long ls_fail_countdown;

void ls_alloc_fail_after(long n) { atomic_store(&ls_fail_countdown, n); }

long ls_alloc_fail_pending(void)
{
    long c = atomic_load(&ls_fail_countdown);
    return c > 0 ? c : 0;
}

size_t ls_alloc_live_bytes(void) { return atomic_load(&ls_live_bytes); }

/* Large tensors are allocated and freed at the same sizes over and over (every training step). glibc
 * serves blocks above 32 MiB with fresh mmaps and unmaps them on free, so each step would pay a page
 * fault per 4 KiB touched — on a virtual machine that cost 25x the arithmetic of an elementwise op. So
 * freed blocks of at least LS_CACHE_MIN bytes are kept in a small cache (most recent first, at most
 * LS_CACHE_SLOTS blocks) and handed out again for a request of the same size. The cache holds at most
 * LS_CACHE_MAX bytes, or twice the most bytes of such blocks the process has had in use at once if
 * that is more: a computation that needs blocks of several sizes at different times has them all in
 * use or cached at its peak. A Hessian-vector product through the benchmark CNN (f32, batch 128) has
 * 273 MB of blocks in use at its peak and 401 MB in use or cached; with a fixed 256 MiB cap it got
 * ~100 MB of fresh, kernel-zeroed pages every call, a third of its time. */
#define LS_CACHE_MIN ((size_t)1 << 20)
#define LS_CACHE_SLOTS 128
#define LS_CACHE_MAX ((size_t)256 << 20)
/* Sanitizer builds get every block fresh, so that a use after free is caught. */
#ifdef LS_NO_ALLOC_CACHE
#define LS_CACHE_ON 0
#else
#define LS_CACHE_ON 1
#endif
static struct { size_t total; char *base; } ls_cache[LS_CACHE_SLOTS];
static int ls_cache_n;
static size_t ls_cache_bytes;
static pthread_mutex_t ls_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static char *ls_cache_take(size_t total)
{
    char *base = NULL;
    if (!LS_CACHE_ON) return NULL;
    pthread_mutex_lock(&ls_cache_lock);
    for (int i = 0; i < ls_cache_n; i++)
        if (ls_cache[i].total == total) {
            base = ls_cache[i].base;
            ls_cache_bytes -= total;
            ls_cache[i] = ls_cache[--ls_cache_n];
            break;
        }
    pthread_mutex_unlock(&ls_cache_lock);
    return base;
}

/* Keep base for reuse; returns 0 when the cache is full (the caller frees it). */
static int ls_cache_put(size_t total, char *base)
{
    int kept = 0;
    if (!LS_CACHE_ON) return 0;
    pthread_mutex_lock(&ls_cache_lock);
    size_t peak = atomic_load(&ls_large_peak), cap = 2 * peak > LS_CACHE_MAX ? 2 * peak : LS_CACHE_MAX;
    if (total <= cap) {
        while (ls_cache_n > 0 && (ls_cache_n == LS_CACHE_SLOTS || ls_cache_bytes + total > cap)) {
            /* evict the oldest (slot 0) */
            ls_cache_bytes -= ls_cache[0].total;
            free(ls_cache[0].base);
            for (int i = 1; i < ls_cache_n; i++) ls_cache[i - 1] = ls_cache[i];
            ls_cache_n--;
        }
        ls_cache[ls_cache_n].total = total;
        ls_cache[ls_cache_n].base = base;
        ls_cache_n++;
        ls_cache_bytes += total;
        kept = 1;
    }
    pthread_mutex_unlock(&ls_cache_lock);
    return kept;
}

static void ls_cache_release_all(void)
{
    pthread_mutex_lock(&ls_cache_lock);
    for (int i = 0; i < ls_cache_n; i++) free(ls_cache[i].base);
    ls_cache_n = 0;
    ls_cache_bytes = 0;
    pthread_mutex_unlock(&ls_cache_lock);
}

/* Block size for a request: header + payload rounded to LS_ALIGN, and blocks of LS_HUGE or more to
 * whole 2 MiB pages, so that they can be backed by transparent huge pages (one fault per 2 MiB instead
 * of per 4 KiB). */
#define LS_HUGE ((size_t)4 << 20)
#define LS_HUGE_PAGE ((size_t)2 << 20)
static size_t ls_block_size(size_t nbytes)
{
    size_t total = LS_ALIGN + ((nbytes + LS_ALIGN - 1) / LS_ALIGN) * LS_ALIGN;
    if (total >= LS_HUGE) total = (total + LS_HUGE_PAGE - 1) / LS_HUGE_PAGE * LS_HUGE_PAGE;
    return total;
}

static char *ls_block_alloc(size_t total)
{
    if (total < LS_CACHE_MIN) {
        /* Small blocks (tensor headers, graph nodes, small tensors) come from plain malloc, whose
         * per-thread caches make it several times faster than aligned_alloc, aligned by hand. */
        char *raw = malloc(total + LS_ALIGN);
        if (!raw) return NULL;
        char *base = (char *)(((uintptr_t)raw + LS_ALIGN - 1) & ~(uintptr_t)(LS_ALIGN - 1));
        ((ls_alloc_header *)base)->raw = raw;
        return base;
    }
    if (total < LS_HUGE) return aligned_alloc(LS_ALIGN, total);
    char *base = aligned_alloc(LS_HUGE_PAGE, total);
#ifdef MADV_HUGEPAGE
    if (base) madvise(base, total, MADV_HUGEPAGE);   /* advisory: failure is harmless */
#endif
    return base;
}

/* A request of LS_BIG bytes or more must fit in the memory the system says is available (MemAvailable
 * plus free swap in /proc/meminfo). Otherwise the kernel's overcommit would grant it and the first
 * touch of the pages would bring the OOM killer (or, under AddressSanitizer, an abort), where the
 * caller should get an error. Reading /proc/meminfo costs microseconds, next to filling a GiB. */
#define LS_BIG ((size_t)1 << 30)
static int ls_memory_available(size_t *avail)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[128];
    unsigned long long kb, total = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1 ||
            sscanf(line, "SwapFree: %llu kB", &kb) == 1) {
            total += kb;
            found++;
        }
    }
    fclose(f);
    if (!found) return 0;
    *avail = (size_t)(total * 1024);
    return 1;
}

static pthread_once_t ls_alloc_once = PTHREAD_ONCE_INIT;
static void ls_alloc_init(void)
{
    atexit(ls_cache_release_all);
    /* Blocks below the cache's minimum come from glibc's heap: keep it from returning mid-size blocks
     * (a batch of images is ~400 KiB) to the system with mmap/munmap and trimming, which would make
     * every reuse page-fault again. 32 MiB is the largest mmap threshold glibc accepts. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

void *ls_malloc(size_t nbytes, const char *what)
{
    pthread_once(&ls_alloc_once, ls_alloc_init);
    long c = atomic_load(&ls_fail_countdown);
    if (c > 0 && atomic_fetch_sub(&ls_fail_countdown, 1) == 1) {
        ls_error_set(LS_ERR_MEM, "%s: out of memory (injected failure)", what);
        return NULL;
    }
    if (nbytes > ((size_t)1 << 46)) {
        ls_error_set(LS_ERR_MEM, "%s: allocation of %zu bytes is too large", what, nbytes);
        return NULL;
    }
    size_t total = ls_block_size(nbytes);
    char *base = total >= LS_CACHE_MIN ? ls_cache_take(total) : NULL;
    size_t avail;
    if (!base && nbytes >= LS_BIG && ls_memory_available(&avail) && nbytes > avail) {
        ls_error_set(LS_ERR_MEM, "%s: out of memory allocating %zu bytes (%zu available)", what,
                     nbytes, avail);
        return NULL;
    }
    if (!base) base = ls_block_alloc(total);
    if (!base) {
        ls_error_set(LS_ERR_MEM, "%s: out of memory allocating %zu bytes", what, nbytes);
        return NULL;
    }
    ((ls_alloc_header *)base)->nbytes = nbytes;
    atomic_fetch_add(&ls_live_bytes, nbytes);
    if (total >= LS_CACHE_MIN) {
        ((ls_alloc_header *)base)->raw = NULL;
        size_t large = atomic_fetch_add(&ls_large_bytes, total) + total;
        if (large > atomic_load(&ls_large_peak)) atomic_store(&ls_large_peak, large);   /* racy max */
    }
    return base + LS_ALIGN;
}

void *ls_malloc_array(size_t count, size_t size, const char *what)
{
    size_t nbytes;
    if (__builtin_mul_overflow(count, size, &nbytes)) {
        ls_error_set(LS_ERR_MEM, "%s: allocation of %zu x %zu bytes is too large", what, count, size);
        return NULL;
    }
    return ls_malloc(nbytes, what);
}

void *ls_calloc(size_t nbytes, const char *what)
{
    void *p = ls_malloc(nbytes, what);
    if (p) memset(p, 0, nbytes);
    return p;
}

void *ls_realloc(void *p, size_t nbytes, const char *what)
{
    if (!p) return ls_malloc(nbytes, what);
    size_t old = ((ls_alloc_header *)((char *)p - LS_ALIGN))->nbytes;
    if (nbytes <= old && old - nbytes < LS_ALIGN) return p;   /* same block size */
    void *q = ls_malloc(nbytes, what);
    if (!q) return NULL;
    memcpy(q, p, old < nbytes ? old : nbytes);
    ls_free(p);
    return q;
}

void ls_free(void *p)
{
    if (!p) return;
    char *base = (char *)p - LS_ALIGN;
    size_t nbytes = ((ls_alloc_header *)base)->nbytes;
    atomic_fetch_sub(&ls_live_bytes, nbytes);
    size_t total = ls_block_size(nbytes);
    if (total < LS_CACHE_MIN) {
        free(((ls_alloc_header *)base)->raw);
        return;
    }
    atomic_fetch_sub(&ls_large_bytes, total);
    if (ls_cache_put(total, base)) return;
    free(base);
}
