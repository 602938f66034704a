/* The engine's thread pool and the one knob for all threading.
 *
 * ls_set_threads(n) sets both the engine's pool and OpenBLAS's thread count, so the two never
 * oversubscribe: engine kernels and BLAS calls run one after the other, and idle pool workers sleep on a
 * condition variable rather than spin. The default is the number of cores this process may run on, or
 * the LANDSCAPE_THREADS environment variable when set. */
#ifndef LS_PARALLEL_H
#define LS_PARALLEL_H

#include <stdint.h>

#define LS_MAX_THREADS 256

/* n >= 1; clamps to LS_MAX_THREADS. OpenBLAS gets min(n, ls_available_cores()): surplus BLAS threads
 * only busy-wait. The pool resizes at the next parallel call; safe to call between any two calls. */
void ls_set_threads(int n);
int ls_get_threads(void);
/* Cores available to this process (sched affinity). */
int ls_available_cores(void);

/* The BLAS library in use (for benchmarks and reports): its configuration string and the kernel it
 * picked for this CPU (OpenBLAS: "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell", "Haswell"; its
 * OPENBLAS_CORETYPE environment variable overrides the choice), and its thread count. */
const char *ls_blas_config(void);
const char *ls_blas_kernel(void);
int ls_blas_threads(void);

/* Calls fn(ctx, chunk_begin, chunk_end) over [0, n) split into chunks of `grain` iterations (the last
 * may be shorter). Chunk boundaries depend only on n and grain, never on the thread count, so a kernel
 * that writes per-chunk partial results gets identical numbers for any number of threads. Runs serially
 * when n <= grain, when there is one thread, or when called from inside a pool worker. Blocks until all
 * chunks are done. */
typedef void (*ls_parallel_fn)(void *ctx, int64_t begin, int64_t end);
void ls_parallel_for(int64_t n, int64_t grain, ls_parallel_fn fn, void *ctx);

#endif
