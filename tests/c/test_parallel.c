/* The thread pool: ls_parallel_for chunking, coverage, nesting, determinism across thread counts,
 * resizing, concurrent callers, fork, idle workers sleeping, and the LANDSCAPE_THREADS default. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* setenv, usleep */
#endif
#include "check.h"
#include "core/parallel.h"

#include <cblas.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the default thread count, checked in forked children before the pool exists ---- */

/* Runs body() in a child process; the child's exit code is its number of failed checks. */
static int in_child(int (*body)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(body());
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int child_env_3(void)
{
    setenv("LANDSCAPE_THREADS", "3", 1);
    return ls_get_threads() != 3;
}

static int child_env_bad(void)
{
    setenv("LANDSCAPE_THREADS", "lots", 1);
    return ls_get_threads() != (ls_available_cores() < LS_MAX_THREADS ? ls_available_cores()
                                                                       : LS_MAX_THREADS);
}

static int child_env_unset(void)
{
    unsetenv("LANDSCAPE_THREADS");
    return ls_get_threads() != ls_available_cores();
}

static void test_default_threads(void)
{
    CHECK(ls_available_cores() >= 1);
    CHECK(in_child(child_env_3) == 0);
    CHECK(in_child(child_env_bad) == 0);
    CHECK(in_child(child_env_unset) == 0);
}

static void test_set_get(void)
{
    ls_set_threads(0);
    CHECK(ls_get_threads() == 1);
    CHECK(openblas_get_num_threads() == 1);   /* OpenBLAS follows */
    ls_set_threads(100000);
    CHECK(ls_get_threads() == LS_MAX_THREADS);
    CHECK(openblas_get_num_threads() <= ls_available_cores());   /* but never beyond the cores */
    ls_set_threads(3);
    CHECK(ls_get_threads() == 3);
}

/* ---- coverage: every index exactly once, chunks exactly as the header promises ---- */

typedef struct cover_ctx {
    atomic_int *hits;        /* per index */
    atomic_long calls;
    atomic_int bad_chunk;    /* a chunk not of the form [c * grain, min(n, (c + 1) * grain)) */
    int64_t n, grain;
} cover_ctx;

static void cover_fn(void *vctx, int64_t begin, int64_t end)
{
    cover_ctx *c = vctx;
    atomic_fetch_add(&c->calls, 1);
    int64_t want_end = begin + c->grain < c->n ? begin + c->grain : c->n;
    if (begin % c->grain != 0 || end != want_end || begin < 0 || end > c->n)
        atomic_store(&c->bad_chunk, 1);
    for (int64_t i = begin; i < end && i >= 0 && i < c->n; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void test_coverage(void)
{
    const int64_t ns[] = { 0, 1, 2, 7, 100, 1000, 4097, 100000 };
    const int64_t grains[] = { 1, 3, 64, 1000, 5000 };
    const int threads[] = { 1, 2, 3, 4, 8 };
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        ls_set_threads(threads[t]);
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
            for (size_t b = 0; b < sizeof grains / sizeof grains[0]; b++) {
                int64_t n = ns[a], g = grains[b];
                cover_ctx c = { .n = n, .grain = g };
                c.hits = calloc((size_t)n + 1, sizeof *c.hits);
                ls_parallel_for(n, g, cover_fn, &c);
                int once = 1;
                for (int64_t i = 0; i < n; i++) once &= atomic_load(&c.hits[i]) == 1;
                CHECK(once);
                CHECK(atomic_load(&c.calls) == (n + g - 1) / g);
                CHECK(atomic_load(&c.bad_chunk) == 0);
                free(c.hits);
            }
        }
    }
    /* grain < 1 is treated as 1. */
    ls_set_threads(2);
    cover_ctx c = { .n = 50, .grain = 1 };
    c.hits = calloc(50, sizeof *c.hits);
    ls_parallel_for(50, 0, cover_fn, &c);
    CHECK(atomic_load(&c.calls) == 50 && atomic_load(&c.bad_chunk) == 0);
    free(c.hits);
}

/* ---- nesting: an inner call from inside a chunk runs serially on the same thread ---- */

typedef struct nest_ctx {
    int64_t inner_n;
    atomic_int *cells;       /* outer x inner */
    atomic_int wrong_thread;
    pthread_t current[64];   /* thread running each outer index */
} nest_ctx;

typedef struct inner_ctx {
    nest_ctx *outer;
    int64_t row;
} inner_ctx;

static void inner_fn(void *vctx, int64_t begin, int64_t end)
{
    inner_ctx *ic = vctx;
    if (!pthread_equal(pthread_self(), ic->outer->current[ic->row]))
        atomic_store(&ic->outer->wrong_thread, 1);
    for (int64_t j = begin; j < end; j++)
        atomic_fetch_add(&ic->outer->cells[ic->row * ic->outer->inner_n + j], 1);
}

static void outer_fn(void *vctx, int64_t begin, int64_t end)
{
    nest_ctx *c = vctx;
    for (int64_t row = begin; row < end; row++) {
        c->current[row] = pthread_self();
        inner_ctx ic = { c, row };
        ls_parallel_for(c->inner_n, 10, inner_fn, &ic);
    }
}

static void test_nested(void)
{
    for (int threads = 1; threads <= 4; threads++) {
        ls_set_threads(threads);
        nest_ctx c = { .inner_n = 1000 };
        c.cells = calloc(64 * 1000, sizeof *c.cells);
        ls_parallel_for(64, 1, outer_fn, &c);
        int once = 1;
        for (int i = 0; i < 64 * 1000; i++) once &= atomic_load(&c.cells[i]) == 1;
        CHECK(once);
        CHECK(atomic_load(&c.wrong_thread) == 0);
        free(c.cells);
    }
}

/* ---- determinism: per-chunk partial sums, reduced in chunk order, are bit-identical ---- */

typedef struct sum_ctx {
    const double *x;
    double *partial;         /* one per chunk */
    int64_t grain;
} sum_ctx;

static void sum_fn(void *vctx, int64_t begin, int64_t end)
{
    sum_ctx *c = vctx;
    double s = 0;
    for (int64_t i = begin; i < end; i++) s += c->x[i];
    c->partial[begin / c->grain] = s;
}

static double chunked_sum(const double *x, int64_t n, int64_t grain)
{
    int64_t nchunks = (n + grain - 1) / grain;
    sum_ctx c = { x, calloc((size_t)nchunks, sizeof(double)), grain };
    ls_parallel_for(n, grain, sum_fn, &c);
    double s = 0;
    for (int64_t k = 0; k < nchunks; k++) s += c.partial[k];
    free(c.partial);
    return s;
}

static void test_partial_sums(void)
{
    const int64_t n = 1000003, grain = 777;
    double *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = sin((double)i) * 1e3 + 1.0 / (double)(i + 1);
    ls_set_threads(1);
    double ref = chunked_sum(x, n, grain);
    int same = 1;
    for (int threads = 2; threads <= 5; threads++) {
        ls_set_threads(threads);
        for (int rep = 0; rep < 5; rep++) same &= chunked_sum(x, n, grain) == ref;
    }
    CHECK(same);
    /* The naive serial sum differs in rounding, but not by much: a check that ref is a real sum. */
    double naive = 0;
    for (int64_t i = 0; i < n; i++) naive += x[i];
    CHECK_NEAR(ref, naive, 1e-6 * (fabs(naive) + 1));
    free(x);
}

/* ---- resizing between calls, many times ---- */

static void test_resize(void)
{
    const int64_t n = 5000, grain = 100;
    int ok = 1;
    unsigned s = 12345;
    for (int it = 0; it < 300; it++) {
        s = s * 1103515245u + 12345u;
        ls_set_threads(1 + (int)((s >> 16) % 6));
        cover_ctx c = { .n = n, .grain = grain };
        c.hits = calloc((size_t)n, sizeof *c.hits);
        ls_parallel_for(n, grain, cover_fn, &c);
        for (int64_t i = 0; i < n; i++) ok &= atomic_load(&c.hits[i]) == 1;
        ok &= atomic_load(&c.bad_chunk) == 0;
        free(c.hits);
    }
    CHECK(ok);
}

/* ---- two application threads calling at once: both complete correctly ---- */

typedef struct caller_arg {
    int ok;
} caller_arg;

static void *caller_main(void *varg)
{
    caller_arg *a = varg;
    a->ok = 1;
    for (int it = 0; it < 200; it++) {
        cover_ctx c = { .n = 3000 + it, .grain = 50 };
        c.hits = calloc((size_t)c.n, sizeof *c.hits);
        ls_parallel_for(c.n, c.grain, cover_fn, &c);
        for (int64_t i = 0; i < c.n; i++) a->ok &= atomic_load(&c.hits[i]) == 1;
        a->ok &= atomic_load(&c.bad_chunk) == 0;
        free(c.hits);
    }
    return NULL;
}

static void test_concurrent_callers(void)
{
    ls_set_threads(3);
    pthread_t th[3];
    caller_arg args[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, caller_main, &args[i]);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) CHECK(args[i].ok);
}

/* ---- fork after the pool has started: the child gets a working pool of its own ---- */

static int child_after_fork(void)
{
    cover_ctx c = { .n = 20000, .grain = 100 };
    c.hits = calloc((size_t)c.n, sizeof *c.hits);
    ls_parallel_for(c.n, c.grain, cover_fn, &c);
    int bad = 0;
    for (int64_t i = 0; i < c.n; i++) bad |= atomic_load(&c.hits[i]) != 1;
    free(c.hits);
    return bad;
}

static void test_fork(void)
{
    ls_set_threads(3);
    CHECK(child_after_fork() == 0);          /* pool started in the parent */
    CHECK(in_child(child_after_fork) == 0);
}

/* ---- workers block signals, so Ctrl-C reaches the application thread ---- */

typedef struct mask_ctx {
    pthread_t caller;
    atomic_int worker_chunks;
    atomic_int unblocked;
} mask_ctx;

static void mask_fn(void *vctx, int64_t begin, int64_t end)
{
    (void)begin;
    (void)end;
    mask_ctx *c = vctx;
    if (pthread_equal(pthread_self(), c->caller)) {
        /* Hold the caller back (up to 10 s) until a worker has run a chunk, so that one surely does,
         * however loaded the machine. */
        for (int i = 0; i < 10000 && atomic_load(&c->worker_chunks) == 0; i++) usleep(1000);
        return;
    }
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    if (!sigismember(&cur, SIGINT) || !sigismember(&cur, SIGTERM)) atomic_store(&c->unblocked, 1);
    atomic_fetch_add(&c->worker_chunks, 1);
}

static void test_worker_signals(void)
{
    ls_set_threads(2);
    mask_ctx c = { .caller = pthread_self() };
    ls_parallel_for(40, 1, mask_fn, &c);
    CHECK(atomic_load(&c.worker_chunks) > 0);
    CHECK(atomic_load(&c.unblocked) == 0);
}

/* ---- overhead of one call with two chunks of trivial work ----
 * Reported for information; the bound only catches a pathology such as waiting for every sleeping
 * worker to wake. */

static void noop_fn(void *vctx, int64_t begin, int64_t end)
{
    atomic_fetch_add((atomic_long *)vctx, end - begin);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_overhead(void)
{
    const int reps = 20000;
    for (int threads = 1; threads <= 4; threads *= 2) {
        ls_set_threads(threads);
        atomic_long count = 0;
        ls_parallel_for(64, 8, noop_fn, &count);   /* start the workers outside the timing */
        double t0 = seconds();
        for (int r = 0; r < reps; r++) ls_parallel_for(64, 8, noop_fn, &count);
        double us = (seconds() - t0) / reps * 1e6;
        printf("parallel_for overhead, %d thread(s), 8 chunks: %.2f us/call\n", threads, us);
        CHECK(atomic_load(&count) == 64L * (reps + 1));
        CHECK(us < 1000.0);
    }
}

/* ---- idle workers sleep: they use no CPU time between jobs ----
 * Measured per thread from /proc, for the threads named ls-worker-*: the process as a whole is no
 * guide, since OpenBLAS's own workers busy-wait for a while after each BLAS call and after
 * openblas_set_num_threads. */

/* utime + stime, in clock ticks, summed over this process's ls-worker threads; -1 if unreadable. */
static long worker_ticks(int *nthreads)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    long total = 0;
    *nthreads = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* "tid (comm) state ppid ...": utime and stime are fields 14 and 15. */
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close || strncmp(open + 1, "ls-worker-", 10) != 0) continue;
        unsigned long ut = 0, st = 0;
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2) {
            total += (long)(ut + st);
            (*nthreads)++;
        }
    }
    closedir(dir);
    return total;
}

static void test_idle_sleeps(void)
{
    ls_set_threads(4);
    atomic_long count = 0;
    ls_parallel_for(1000, 10, noop_fn, &count);
    usleep(20000);   /* let late workers settle */
    int n0 = 0, n1 = 0;
    long t0 = worker_ticks(&n0);
    usleep(300000);
    long t1 = worker_ticks(&n1);
    CHECK(n0 == 3 && n1 == 3);   /* the workers are named and there are threads - 1 of them */
    CHECK(t0 >= 0 && t1 - t0 <= 1);   /* at most one tick (10 ms) over 0.3 s */
}

int main(void)
{
    test_default_threads();   /* first: the children must start without a pool */
    test_set_get();
    test_coverage();
    test_nested();
    test_partial_sums();
    test_resize();
    test_concurrent_callers();
    test_fork();
    test_worker_signals();
    test_overhead();
    test_idle_sleeps();
    return check_done("test_parallel");
}
