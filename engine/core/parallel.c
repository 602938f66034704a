#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT, pthread_setname_np */
#endif
#include "core/parallel.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The pool.
 *
 * One job at a time. A job is (fn, ctx, n, grain) cut into nchunks = ceil(n / grain) fixed chunks;
 * chunk c is [c * grain, min(n, (c + 1) * grain)). Whoever runs a chunk, the chunk is the same, so
 * results do not depend on the thread count. The chunks are cut into one contiguous range per
 * participant (the caller is participant 0, worker w is w + 1); each claims the chunks of its own
 * range first, through that range's atomic counter (`part_next`), then helps with the others'. So
 * the same thread tends to get the same part of the data in consecutive kernels and steps (the
 * optimizer update of a parameter, the elementwise ops on an activation), which stays in that core's
 * caches: with one shared counter the assignment changed every call, and on this class of VM data
 * moving between the two cores made a 2-thread optimizer step slower than a 1-thread one. Finished
 * chunks are counted in `chunks_done`.
 *
 * Publishing: the caller takes `pool_mutex`, waits until no worker is still inside the previous job
 * (`active` == 0, almost always true already), writes the job, bumps `generation`, releases the mutex,
 * wakes one worker and claims chunks itself. Each worker that joins wakes the next one while fewer
 * than min(nchunks - 1, nworkers) have joined, so the caller pays for one futex wake whatever the pool
 * size, and a two-chunk job wakes one worker, not all. A worker joins only while chunks are left to
 * claim: it checks that, increments `active` and copies the job, all under the mutex, so a worker
 * always runs chunks of the job it joined. Workers woken too late find the job exhausted and go back
 * to sleep untouched.
 *
 * Completion: when the caller runs out of chunks to claim it reads `chunks_done`; if every chunk is
 * finished it returns without touching the mutex, so a small job the caller finished alone costs a
 * lock, a wake and nothing else: the caller never waits for a sleeping worker to wake up. Otherwise it
 * waits on `done_cond`, which each worker signals (under the mutex, after counting its chunks) when it
 * leaves the job. The acquire on `chunks_done` makes the workers' writes visible to the caller.
 *
 * Waiting: a worker that finishes a job first spins for up to LS_SPIN_NS, watching `published` (a
 * lock-free copy of `generation`), and only then sleeps on `wake_cond`; the caller likewise spins
 * on `chunks_done` before sleeping on `done_cond`. A training step issues kernels back to back, a
 * few microseconds apart, and waking a sleeping thread costs tens of microseconds on a VM: without
 * the spin, a worker arrived after the caller had done most of a 50 us job alone. The spin is short
 * enough that an idle pool costs nothing measurable and does not hold a core against OpenBLAS's
 * threads (which run between engine kernels) for long.
 *
 * Resizing: ls_set_threads only records the wanted count (and tells OpenBLAS). The next parallel call
 * adjusts the pool under `submit_mutex` before publishing: it starts missing workers, or lowers
 * `target` so that workers with id >= target exit, and joins them.
 *
 * Exclusion: `submit_mutex` is taken with trylock, so a second application thread that calls
 * ls_parallel_for while a job is in flight simply runs serially instead of blocking. Calls from inside
 * a chunk (a pool worker, or the caller while it runs chunks) run serially: `tls_in_parallel`.
 *
 * Exit: an atexit handler stops and joins the workers, so LeakSanitizer sees no live threads and, when
 * the engine lives in a dlopen'ed Lua module, no worker outlives the module's code (glibc runs a
 * shared object's atexit handlers at dlclose). After fork() the child has no workers; an atfork
 * handler resets the pool so the child starts its own. */

typedef struct ls_job {
    ls_parallel_fn fn;
    void *ctx;
    int64_t n;
    int64_t grain;
    int64_t nchunks;
    int helpers;   /* workers worth waking: min(nchunks - 1, nworkers) */
    int parts;     /* ranges of chunks: min(nchunks, nworkers + 1) */
} ls_job;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int wanted_threads = 1;        /* what ls_set_threads asked for, >= 1 */

static pthread_mutex_t submit_mutex = PTHREAD_MUTEX_INITIALIZER;  /* one job at a time */
static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER;    /* guards the fields below */
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;       /* new job or new target */
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;       /* a worker left a job */

static pthread_t workers[LS_MAX_THREADS];
static int nworkers;          /* started and not yet joined; only the submit_mutex holder touches it */
static int target;            /* workers with id >= target exit */
static uint64_t generation;   /* bumped for each job */
static atomic_uint_fast64_t published;   /* = generation, read without the mutex by spinners */
static int active;            /* workers inside the current job */
static ls_job job;
static atomic_int_fast64_t part_next[LS_MAX_THREADS];   /* next chunk of range p (may pass its end) */
static int64_t part_end[LS_MAX_THREADS];                /* end of range p; set when publishing */
static atomic_int_fast64_t chunks_done;   /* chunks finished */

static _Thread_local bool tls_in_parallel;   /* running a chunk, or a pool worker */

int ls_available_cores(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c >= 1) return c;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c >= 1 ? (int)c : 1;
}

static int clamp_threads(long n)
{
    if (n < 1) return 1;
    if (n > LS_MAX_THREADS) return LS_MAX_THREADS;
    return (int)n;
}

/* LANDSCAPE_THREADS as a positive decimal integer, or 0 when unset or malformed. */
static long env_threads(void)
{
    const char *s = getenv("LANDSCAPE_THREADS");
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < 1) return 0;
    return v;
}

/* OpenBLAS gets the same count, but never more than the cores we may run on: more BLAS threads than
 * cores never helps, and each OpenBLAS thread busy-waits for a while after it is started or used
 * (OPENBLAS_THREAD_TIMEOUT), so surplus ones would starve the engine's own workers. On CPUs with
 * AVX-512 the matrix products run on the engine's own GEMM (ops/gemm.c) and OpenBLAS serves only
 * the vector operations of the curvature code (dot, axpy, gemv over a Krylov basis): there it gets
 * one thread, since a second one spinning after each call held a core that the pool's next kernel
 * needed (2-thread Hessian products ran at 1-thread speed), and curvature/curv_vec.c splits those
 * operations over the pool instead, a chunk per single-threaded OpenBLAS call. The engine's pool itself is not capped,
 * so tests can oversubscribe it on purpose. */
static void set_blas_threads(int t)
{
    int cores = ls_available_cores();
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f")) cores = 1;
#endif
    openblas_set_num_threads(t < cores ? t : cores);
}

static void pool_shutdown(void);
static void pool_atfork_child(void);

static void pool_init(void)
{
    long n = env_threads();
    int t = clamp_threads(n > 0 ? n : ls_available_cores());
    atomic_store(&wanted_threads, t);
    set_blas_threads(t);
    atexit(pool_shutdown);
    pthread_atfork(NULL, NULL, pool_atfork_child);
}

void ls_set_threads(int n)
{
    pthread_once(&init_once, pool_init);
    int t = clamp_threads(n);
    atomic_store(&wanted_threads, t);
    set_blas_threads(t);
}

const char *ls_blas_config(void) { return openblas_get_config(); }
const char *ls_blas_kernel(void) { return openblas_get_corename(); }
int ls_blas_threads(void)
{
    pthread_once(&init_once, pool_init);
    return openblas_get_num_threads();
}

int ls_get_threads(void)
{
    pthread_once(&init_once, pool_init);
    return atomic_load(&wanted_threads);
}

#define LS_SPIN_NS 100000   /* how long a worker or the caller spins before sleeping */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin until *v != old (returns true) or LS_SPIN_NS pass (false). */
static bool spin_while_equal(atomic_uint_fast64_t *v, uint64_t old)
{
    int64_t t0 = now_ns();
    for (int i = 1;; i++) {
        if (atomic_load_explicit(v, memory_order_acquire) != old) return true;
        cpu_relax();
        if (i % 64 == 0 && now_ns() - t0 > LS_SPIN_NS) return false;
    }
}

/* Claim and run chunks until none are left. */
static void run_chunks(const ls_job *j, int self)
{
    for (int q = 0; q < j->parts; q++) {
        int p = (self + q) % j->parts;   /* own range first, then the others' */
        for (;;) {
            int64_t c = atomic_fetch_add(&part_next[p], 1);
            if (c >= part_end[p]) break;
            int64_t begin = c * j->grain;
            int64_t end = j->n - begin < j->grain ? j->n : begin + j->grain;
            j->fn(j->ctx, begin, end);
            atomic_fetch_add(&chunks_done, 1);
        }
    }
}

/* Whether any chunk of the published job is still unclaimed (caller holds pool_mutex). */
static bool job_has_chunks(void)
{
    for (int p = 0; p < job.parts; p++)
        if (atomic_load(&part_next[p]) < part_end[p]) return true;
    return false;
}

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    char name[16];
    snprintf(name, sizeof name, "ls-worker-%d", id);
    pthread_setname_np(pthread_self(), name);   /* shows in top -H, gdb, perf */
    tls_in_parallel = true;
    pthread_mutex_lock(&pool_mutex);
    uint64_t seen = generation;
    for (;;) {
        if (generation == seen && id < target) {   /* spin a little before sleeping */
            pthread_mutex_unlock(&pool_mutex);
            spin_while_equal(&published, seen);
            pthread_mutex_lock(&pool_mutex);
        }
        while (generation == seen && id < target) pthread_cond_wait(&wake_cond, &pool_mutex);
        if (id >= target) break;
        seen = generation;
        if (!job_has_chunks()) continue;   /* exhausted: back to sleep */
        ls_job mine = job;
        active++;
        bool wake_next = active < mine.helpers;
        pthread_mutex_unlock(&pool_mutex);
        if (wake_next) pthread_cond_signal(&wake_cond);   /* pass the wake-up along */
        run_chunks(&mine, id + 1);
        pthread_mutex_lock(&pool_mutex);
        active--;
        pthread_cond_signal(&done_cond);
    }
    pthread_mutex_unlock(&pool_mutex);
    return NULL;
}

/* Make the pool hold `want` workers (fewer if thread creation fails). Caller holds submit_mutex and no
 * job is in flight. */
static void pool_resize(int want)
{
    if (want < nworkers) {
        pthread_mutex_lock(&pool_mutex);
        target = want;
        pthread_cond_broadcast(&wake_cond);
        pthread_mutex_unlock(&pool_mutex);
        for (int i = want; i < nworkers; i++) pthread_join(workers[i], NULL);
        nworkers = want;
    }
    if (want > nworkers) {
        pthread_mutex_lock(&pool_mutex);
        target = want;
        pthread_mutex_unlock(&pool_mutex);
        /* Workers start with every signal blocked, so signals (Ctrl-C in the REPL) go to the
         * application's threads, never to a pool worker. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        while (nworkers < want) {
            if (pthread_create(&workers[nworkers], NULL, worker_main, (void *)(intptr_t)nworkers))
                break;
            nworkers++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_mutex_lock(&pool_mutex);
        target = nworkers;
        pthread_mutex_unlock(&pool_mutex);
    }
}

static void run_serial(int64_t n, int64_t grain, ls_parallel_fn fn, void *ctx)
{
    bool was = tls_in_parallel;
    tls_in_parallel = true;
    for (int64_t begin = 0; begin < n; begin += grain) {
        int64_t end = n - begin < grain ? n : begin + grain;
        fn(ctx, begin, end);
    }
    tls_in_parallel = was;
}

void ls_parallel_for(int64_t n, int64_t grain, ls_parallel_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    /* The serial paths use the same chunk boundaries, so a kernel sees the same calls either way. */
    if (n <= grain || tls_in_parallel) {
        run_serial(n, grain, fn, ctx);
        return;
    }
    int threads = ls_get_threads();
    if (threads <= 1 || pthread_mutex_trylock(&submit_mutex) != 0) {
        run_serial(n, grain, fn, ctx);
        return;
    }
    if (nworkers != threads - 1) pool_resize(threads - 1);
    if (nworkers == 0) {   /* thread creation failed */
        pthread_mutex_unlock(&submit_mutex);
        run_serial(n, grain, fn, ctx);
        return;
    }

    int64_t nchunks = (n - 1) / grain + 1;
    pthread_mutex_lock(&pool_mutex);
    while (active > 0) pthread_cond_wait(&done_cond, &pool_mutex);   /* a late joiner, still leaving */
    job = (ls_job){ .fn = fn, .ctx = ctx, .n = n, .grain = grain, .nchunks = nchunks,
                    .helpers = nchunks - 1 < nworkers ? (int)(nchunks - 1) : nworkers,
                    .parts = nchunks < nworkers + 1 ? (int)nchunks : nworkers + 1 };
    for (int p = 0; p < job.parts; p++) {
        atomic_store(&part_next[p], p * nchunks / job.parts);
        part_end[p] = (p + 1) * nchunks / job.parts;
    }
    atomic_store(&chunks_done, 0);
    generation++;
    atomic_store_explicit(&published, generation, memory_order_release);
    pthread_mutex_unlock(&pool_mutex);
    /* Signalled after unlocking, so the woken worker does not block on a mutex we still hold. */
    pthread_cond_signal(&wake_cond);

    ls_job mine = job;
    tls_in_parallel = true;
    run_chunks(&mine, 0);
    tls_in_parallel = false;

    if (atomic_load(&chunks_done) < nchunks) {
        int64_t t0 = now_ns();
        for (int i = 1; atomic_load(&chunks_done) < nchunks; i++) {
            cpu_relax();
            if (i % 64 == 0 && now_ns() - t0 > LS_SPIN_NS) break;
        }
    }
    if (atomic_load(&chunks_done) < nchunks) {
        pthread_mutex_lock(&pool_mutex);
        while (atomic_load(&chunks_done) < nchunks) pthread_cond_wait(&done_cond, &pool_mutex);
        pthread_mutex_unlock(&pool_mutex);
    }
    pthread_mutex_unlock(&submit_mutex);
}

/* atexit: stop and join the workers. Skipped when exit() runs inside a chunk or while another thread
 * has a job in flight (joining would deadlock); the process is ending anyway. */
static void pool_shutdown(void)
{
    if (tls_in_parallel) return;
    if (pthread_mutex_trylock(&submit_mutex) != 0) return;
    pool_resize(0);
    pthread_mutex_unlock(&submit_mutex);
}

/* In a forked child only the forking thread exists: forget the parent's workers and re-create the
 * locks (another thread may have held one at the fork). */
static void pool_atfork_child(void)
{
    pthread_mutex_init(&submit_mutex, NULL);
    pthread_mutex_init(&pool_mutex, NULL);
    pthread_cond_init(&wake_cond, NULL);
    pthread_cond_init(&done_cond, NULL);
    nworkers = 0;
    target = 0;
    active = 0;
    job.parts = 0;
    atomic_store(&chunks_done, 0);
}
