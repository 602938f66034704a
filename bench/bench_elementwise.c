/* bench_elementwise: ls_add, ls_mul, ls_exp, ls_relu and ls_sum on contiguous tensors of 1e6 and
 * 1e7 elements (--quick: 1e6 only), f32 and f64, 1 and 2 threads, against two peers (below); and
 * ls_sum over some dims of two layouts a network reduces all the time, against stream only:
 *
 *   sum023_128x32x28x28  over dims (0, 2, 3) of [N, C, H, W]: batch-norm statistics, the per-channel
 *                        gradient of a conv bias (sum_to); 128 runs of 784 contiguous elements per
 *                        output
 *   sum0_1000x128        over dim 0 of [B, F]: the bias gradient of a linear layer (batch 1000, the
 *                        MLP of bench_autograd.lua)
 *
 * Their stream peer is the read-only sum of all the tensor's elements (the same bytes).
 *
 *   stream  the memory-bandwidth limit, measured in the same run: a plain C loop that reads and
 *           writes the same bytes as the op, into preallocated and already touched buffers, run by
 *           a small pthread pool of its own with the same number of threads (below).
 *           add: c = a + b; mul: c = a * b; exp and relu: c = a (a copy: what a unary op costs if
 *           its arithmetic were free); sum: a read-only pass accumulating in double, like the
 *           engine. A ratio near 1 means the op runs at the speed of memory; above 1 is overhead
 *           (allocation, page faults of a fresh output, arithmetic: exp is compute-bound by
 *           nature).
 *   torch   the same op in PyTorch (torch.add, ...), timed by bench/peer_elementwise.py, a
 *           co-process that takes one sample after each pair of ours (ours, stream), with the same
 *           sizes, dtypes and thread counts (torch.set_num_threads and openblas_set_num_threads,
 *           OMP_WAIT_POLICY=passive). Skipped with a note on stderr when python3 or torch is
 *           missing. LANDSCAPE_PYTHON names the interpreter (default /usr/bin/python3).
 *
 * Ours is the whole op as a user calls it: it allocates its output (the peers do too for torch, not
 * for stream) and releases it. The stream loops are compiled for the x86-64 baseline and for AVX2,
 * and the widest the CPU has is used (the engine's memory-bound elementwise kernels are
 * baseline-only, so at cache-resident sizes this peer is the faster of the two; ls_sum's kernels
 * have AVX2 clones too, with the same sixteen double accumulators as SUM16 below); loop-to-memcpy
 * rewriting is off so the copy stays a plain loop (glibc's memcpy switches to non-temporal stores
 * for large blocks, which no elementwise kernel uses).
 *
 * stdout: the CSV rows (bench_util.h). stderr: the CPU, the BLAS and its kernel, the thread
 * settings of both sides; the minor page faults per call of ours and stream (a
 * fresh output that the kernel has to map costs one fault per 4 KiB page), ours / stream in process
 * CPU time, the torch peer's notes, and the peak RSS of both processes. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/ops.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic",                                \
                     "no-tree-loop-distribute-patterns")
#endif

#ifndef LS_BENCH_DIR
#define LS_BENCH_DIR "bench"
#endif

enum { OP_ADD, OP_MUL, OP_EXP, OP_RELU, OP_SUM, NOPS };
static const char *const op_names[NOPS] = {"add", "mul", "exp", "relu", "sum"};

/* ==== the stream peer ==== */

#define STREAM_MAX_THREADS 16

typedef struct stream_job {
    int op;
    ls_dtype dtype;
    const void *a, *b;
    void *c;
    int64_t n;
    int nthreads;
    atomic_llong next;                 /* next chunk to claim */
    double part[STREAM_MAX_THREADS];   /* sum: one partial per thread */
} stream_job;

/* Elements per chunk: threads claim chunks from a shared counter, as the engine's pool does, so a
 * thread slowed down by another process does not hold the others up. 64 Ki elements (256 KiB of
 * f32) make claiming cost nothing. */
#define STREAM_CHUNK 65536

/* Read-only sums in double with sixteen independent accumulators, written out so that the compiler
 * keeps them in registers as vectors (a loop over an accumulator array was kept in memory). */
#define SUM16(a, lo, hi)                                                                           \
    do {                                                                                           \
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;                     \
        double s8 = 0, s9 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0, s14 = 0, s15 = 0;               \
        int64_t i = lo;                                                                            \
        for (; i + 16 <= hi; i += 16) {                                                            \
            s0 += a[i];                                                                            \
            s1 += a[i + 1];                                                                        \
            s2 += a[i + 2];                                                                        \
            s3 += a[i + 3];                                                                        \
            s4 += a[i + 4];                                                                        \
            s5 += a[i + 5];                                                                        \
            s6 += a[i + 6];                                                                        \
            s7 += a[i + 7];                                                                        \
            s8 += a[i + 8];                                                                        \
            s9 += a[i + 9];                                                                        \
            s10 += a[i + 10];                                                                      \
            s11 += a[i + 11];                                                                      \
            s12 += a[i + 12];                                                                      \
            s13 += a[i + 13];                                                                      \
            s14 += a[i + 14];                                                                      \
            s15 += a[i + 15];                                                                      \
        }                                                                                          \
        for (; i < hi; i++) s0 += a[i];                                                            \
        return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) +                               \
               (((s8 + s9) + (s10 + s11)) + ((s12 + s13) + (s14 + s15)));                          \
    } while (0)

#define STREAM_INLINE static inline __attribute__((always_inline))

STREAM_INLINE double sum_f32(const float *restrict a, int64_t lo, int64_t hi) { SUM16(a, lo, hi); }
STREAM_INLINE double sum_f64(const double *restrict a, int64_t lo, int64_t hi) { SUM16(a, lo, hi); }

/* Elements [lo, hi) of the job, run by thread `id`. */
STREAM_INLINE void stream_range(stream_job *j, int id, int64_t lo, int64_t hi)
{
    if (j->dtype == LS_F32) {
        const float *restrict a = j->a, *restrict b = j->b;
        float *restrict c = j->c;
        switch (j->op) {
        case OP_ADD: for (int64_t i = lo; i < hi; i++) c[i] = a[i] + b[i]; break;
        case OP_MUL: for (int64_t i = lo; i < hi; i++) c[i] = a[i] * b[i]; break;
        case OP_SUM: j->part[id] += sum_f32(a, lo, hi); break;
        default: for (int64_t i = lo; i < hi; i++) c[i] = a[i]; break;
        }
    } else {
        const double *restrict a = j->a, *restrict b = j->b;
        double *restrict c = j->c;
        switch (j->op) {
        case OP_ADD: for (int64_t i = lo; i < hi; i++) c[i] = a[i] + b[i]; break;
        case OP_MUL: for (int64_t i = lo; i < hi; i++) c[i] = a[i] * b[i]; break;
        case OP_SUM: j->part[id] += sum_f64(a, lo, hi); break;
        default: for (int64_t i = lo; i < hi; i++) c[i] = a[i]; break;
        }
    }
}

/* Thread `id`'s share of the job: chunks claimed until none are left. Inlined into a baseline and
 * an AVX2 function below. */
STREAM_INLINE void stream_body(stream_job *j, int id)
{
    for (;;) {
        int64_t lo = (int64_t)atomic_fetch_add(&j->next, 1) * STREAM_CHUNK;
        if (lo >= j->n) return;
        int64_t hi = j->n - lo < STREAM_CHUNK ? j->n : lo + STREAM_CHUNK;
        stream_range(j, id, lo, hi);
    }
}

/* The loops at the project's flags (x86-64 baseline: SSE2), and, on x86-64 CPUs that have it, with
 * AVX2 (32-byte loads and stores), which reach a higher bandwidth when the data sits in cache. The
 * peer uses the widest the CPU offers, so that it stays the limit a kernel could reach. */
static void stream_piece_generic(stream_job *j, int id) { stream_body(j, id); }
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target("avx2"))) static void stream_piece_avx2(stream_job *j, int id)
{
    stream_body(j, id);
}
static bool stream_use_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#else
static void stream_piece_avx2(stream_job *j, int id) { stream_body(j, id); }
static bool stream_use_avx2(void) { return false; }
#endif
static bool stream_avx2;   /* set once in main */

static void stream_piece(stream_job *j, int id)
{
    if (stream_avx2) stream_piece_avx2(j, id);
    else stream_piece_generic(j, id);
}

/* A minimal pool: nthreads - 1 workers parked on a barrier; the caller releases them with a
 * barrier, runs piece 0 itself and waits on a second barrier. */
typedef struct stream_pool {
    int nthreads;
    pthread_t th[STREAM_MAX_THREADS];
    pthread_barrier_t start, done;
    stream_job *job;   /* NULL: exit */
} stream_pool;

typedef struct { stream_pool *pool; int id; } stream_worker_arg;
static stream_worker_arg worker_args[STREAM_MAX_THREADS];

static void *stream_worker(void *varg)
{
    stream_worker_arg *w = varg;
    for (;;) {
        pthread_barrier_wait(&w->pool->start);
        if (!w->pool->job) return NULL;
        stream_piece(w->pool->job, w->id);
        pthread_barrier_wait(&w->pool->done);
    }
}

static void pool_start(stream_pool *p, int nthreads)
{
    p->nthreads = nthreads;
    p->job = NULL;
    if (nthreads < 2) return;
    pthread_barrier_init(&p->start, NULL, (unsigned)nthreads);
    pthread_barrier_init(&p->done, NULL, (unsigned)nthreads);
    for (int i = 1; i < nthreads; i++) {
        worker_args[i] = (stream_worker_arg){p, i};
        if (pthread_create(&p->th[i], NULL, stream_worker, &worker_args[i])) {
            fprintf(stderr, "bench_elementwise: pthread_create failed\n");
            exit(1);
        }
    }
}

static void pool_stop(stream_pool *p)
{
    if (p->nthreads < 2) return;
    p->job = NULL;
    pthread_barrier_wait(&p->start);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->th[i], NULL);
    pthread_barrier_destroy(&p->start);
    pthread_barrier_destroy(&p->done);
}

static void pool_run(stream_pool *p, stream_job *j)
{
    j->nthreads = p->nthreads;
    atomic_store(&j->next, 0);
    for (int i = 0; i < p->nthreads; i++) j->part[i] = 0;
    if (p->nthreads < 2) {
        stream_piece(j, 0);
        return;
    }
    p->job = j;
    pthread_barrier_wait(&p->start);
    stream_piece(j, 0);
    pthread_barrier_wait(&p->done);
}

/* ==== the two sides ==== */

typedef struct ew_ctx {
    int op;
    ls_tensor *a, *b;
    int nd;            /* sum: dims to reduce (0: all) */
    const int *dims;
    stream_pool *pool;
    stream_job job;
    volatile double sink;
} ew_ctx;

static void ours(void *vctx)
{
    ew_ctx *x = vctx;
    ls_tensor *r = NULL;
    switch (x->op) {
    case OP_ADD: r = ls_add(x->a, x->b); break;
    case OP_MUL: r = ls_mul(x->a, x->b); break;
    case OP_EXP: r = ls_exp(x->a); break;
    case OP_RELU: r = ls_relu(x->a); break;
    default: r = ls_sum(x->a, x->nd, x->dims, false); break;
    }
    if (!r) bench_die(op_names[x->op]);
    ls_tensor_release(r);
}

static void stream(void *vctx)
{
    ew_ctx *x = vctx;
    pool_run(x->pool, &x->job);
    if (x->op == OP_SUM) {
        double s = 0;
        for (int i = 0; i < x->pool->nthreads; i++) s += x->job.part[i];
        x->sink = s;
    }
}

/* ==== the torch peer ==== */

/* The co-process (peer_elementwise.py), or NULL without python3-torch. */
static bench_peer *torch_peer;

static bench_peer *torch_start(void)
{
    const char *dir = getenv("LANDSCAPE_BENCH_DIR");
    if (!dir || !*dir) dir = LS_BENCH_DIR;
    char py[1024], cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s/peer_elementwise.py'", bench_python(py, sizeof py), dir);
    return bench_peer_start(cmd);
}

/* Sets the peer up for one op; false (and the peer closed) when it does not answer. */
static bool torch_setup(const bench_opts *o, int op, ls_dtype dt, int threads, int64_t n)
{
    if (!torch_peer) return false;
    char line[256], buf[256];
    snprintf(line, sizeof line, "setup %s %s %d %lld %g", op_names[op], ls_dtype_name(dt),
             threads, (long long)n, o->min_sample);
    const char *r = bench_peer_ask(torch_peer, line, buf, sizeof buf);
    if (r && strcmp(r, "ok") == 0) return true;
    fprintf(stderr, "# torch peer: not ready (is python3-torch installed?)\n");
    bench_peer_close(torch_peer);
    torch_peer = NULL;
    return false;
}

/* One torch sample after each pair of ours (bench_pair_then), into ctx's list. */
typedef struct torch_samples {
    double ms[64];
    int n;
} torch_samples;

static void torch_sample(void *ctx)
{
    torch_samples *t = ctx;
    char buf[64];
    const char *r = torch_peer ? bench_peer_ask(torch_peer, "sample", buf, sizeof buf) : NULL;
    if (r && t->n < 64) t->ms[t->n++] = atof(r);
}

static ls_tensor *random_tensor(ls_dtype dt, int ndim, const int64_t *shape, uint64_t seed)
{
    ls_tensor *t = ls_tensor_new(dt, ndim, shape);
    if (!t) bench_die("ls_tensor_new");
    ls_rng rng;
    ls_rng_init(&rng, seed);
    ls_rng_uniform(&rng, dt, ls_tensor_data(t), ls_tensor_numel(t), -1.0, 1.0);
    return t;
}
static ls_tensor *random_vector(ls_dtype dt, int64_t n, uint64_t seed)
{
    return random_tensor(dt, 1, &n, seed);
}

/* The layout reductions (see the header). */
static const struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    int nd;
    int dims[4];
} layouts[] = {
    {"sum023_128x32x28x28", 4, {128, 32, 28, 28}, 3, {0, 2, 3}},
    {"sum0_1000x128", 2, {1000, 128}, 1, {0}},
};
#define NLAYOUTS ((int)(sizeof layouts / sizeof layouts[0]))

#define MAX_NOTES 128
static char notes[MAX_NOTES][96];
static int nnotes;

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse_args(argc, argv,
                     "ls_add/mul/exp/relu/sum vs the memory-bandwidth limit (peer stream) and "
                     "PyTorch (peer torch)", &o);
    const int64_t sizes[] = {1000000, 10000000};
    int nsizes = o.quick ? 1 : 2;
    stream_avx2 = stream_use_avx2();
    fprintf(stderr, "# stream peer: %s loops\n", stream_avx2 ? "AVX2" : "baseline (SSE2)");
    bench_report_machine("bench_elementwise");
    torch_peer = torch_start();

    const ls_dtype dtypes[] = {LS_F32, LS_F64};
    const int threads[] = {1, 2};
    bench_header();
    for (int ti = 0; ti < 2; ti++) {
        ls_set_threads(threads[ti]);
        bench_report_threads("bench_elementwise");
        stream_pool pool;
        pool_start(&pool, threads[ti]);
        for (int di = 0; di < 2; di++) {
            for (int si = 0; si < nsizes; si++) {
                int64_t n = sizes[si];
                ls_tensor *a = random_vector(dtypes[di], n, 1);
                ls_tensor *b = random_vector(dtypes[di], n, 2);
                ls_tensor *c = ls_tensor_zeros(dtypes[di], 1, &n);   /* zeros: touched */
                if (!c) bench_die("ls_tensor_zeros");
                for (int op = 0; op < NOPS; op++) {
                    ew_ctx x = {.op = op, .a = a, .b = b, .pool = &pool};
                    x.job = (stream_job){.op = op, .dtype = dtypes[di], .a = ls_tensor_data(a),
                                         .b = ls_tensor_data(b), .c = ls_tensor_data(c), .n = n};
                    torch_samples ts = {.n = 0};
                    bool peer = torch_setup(&o, op, dtypes[di], threads[ti], n);
                    bench_result r = bench_pair_then(&o, ours, &x, stream, &x,
                                                     peer ? torch_sample : NULL, &ts);
                    double ms_o = r.ms_a, ms_s = r.ms_b;
                    char wl[64], cnt[32];
                    snprintf(wl, sizeof wl, "%s_%s", op_names[op], bench_count_str(n, cnt, 32));
                    const char *dn = ls_dtype_name(dtypes[di]);
                    bench_row(wl, dn, threads[ti], ms_o, "stream", ms_s);
                    if (nnotes < MAX_NOTES)
                        snprintf(notes[nnotes++], sizeof notes[0],
                                 "# %s,%s,%d,%.1f,%.1f,%.1f,%.3f\n", wl, dn, threads[ti],
                                 r.faults_a, r.faults_b,
                                 (double)n * (double)ls_dtype_size(dtypes[di]) / 4096.0,
                                 r.cpu_ms_a / r.cpu_ms_b);
                    if (peer && ts.n == o.reps)
                        bench_row(wl, dn, threads[ti], ms_o, "torch", bench_median(ts.ms, ts.n));
                }
                ls_tensor_release(a);
                ls_tensor_release(b);
                ls_tensor_release(c);
            }
            for (int li = 0; li < NLAYOUTS; li++) {
                ls_tensor *a = random_tensor(dtypes[di], layouts[li].ndim, layouts[li].shape, 3);
                ew_ctx x = {.op = OP_SUM, .a = a, .nd = layouts[li].nd, .dims = layouts[li].dims,
                            .pool = &pool};
                x.job = (stream_job){.op = OP_SUM, .dtype = dtypes[di], .a = ls_tensor_data(a),
                                     .n = ls_tensor_numel(a)};
                bench_result r = bench_pair(&o, ours, &x, stream, &x);
                const char *dn = ls_dtype_name(dtypes[di]);
                bench_row(layouts[li].name, dn, threads[ti], r.ms_a, "stream", r.ms_b);
                if (nnotes < MAX_NOTES)
                    snprintf(notes[nnotes++], sizeof notes[0], "# %s,%s,%d,%.1f,%.1f,-,%.3f\n",
                             layouts[li].name, dn, threads[ti], r.faults_a, r.faults_b,
                             r.cpu_ms_a / r.cpu_ms_b);
                ls_tensor_release(a);
            }
        }
        pool_stop(&pool);
    }
    fprintf(stderr, "# minor page faults per call (vector_pages: 4 KiB pages of one n-element "
                    "vector); cpu_ratio = ours / stream in process CPU time\n"
                    "# workload,dtype,threads,ours_faults,stream_faults,vector_pages,cpu_ratio\n");
    for (int i = 0; i < nnotes; i++) fputs(notes[i], stderr);
    bench_peer_close(torch_peer);
    bench_report_rss("bench_elementwise");
    return 0;
}
