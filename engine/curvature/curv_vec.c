/* The f64 vector kernels of the estimators (curv_internal.h): dot products, norms, axpy, and the
 * two products with a basis that full reorthogonalisation needs, on the engine's pool.
 *
 * ls_set_threads gives OpenBLAS one thread on CPUs where the engine has its own GEMM, so these
 * level-1/2 calls ran on one core, and Lanczos spent ~40 % of a 2-thread run in single-threaded reads
 * of its basis. Here the vectors are cut into fixed chunks of CURV_CHUNK rows, each handed to
 * OpenBLAS's single-threaded kernel on a thread of the pool; partial sums are added in chunk order,
 * so the results are the same bits for any thread count. Where OpenBLAS has threads of its own
 * (other CPUs), the chunks run in sequence on the calling thread instead: its threads are not
 * nested inside the pool's. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "curvature/curv_internal.h"

#define CURV_CHUNK 16384

static int64_t curv_chunks(int64_t n) { return n > 0 ? (n - 1) / CURV_CHUNK + 1 : 0; }

static void curv_run(int64_t chunks, ls_parallel_fn fn, void *job)
{
    if (openblas_get_num_threads() > 1) fn(job, 0, chunks);
    else ls_parallel_for(chunks, 1, fn, job);
}

typedef struct {
    int64_t n;
    int cols;
    ls_dtype dt;       /* to/from: the operator's dtype */
    const void *src;
    void *dst;
    int64_t *bad;      /* from: per chunk, the first non-finite index or -1 */
    const double *V;   /* cols contiguous columns of length n (a vector when cols = 1) */
    const double *x;   /* gemv_t, dot: the other vector; axpy: the added vector */
    const double *h;   /* gemv_n: the coefficients */
    double *y, a;      /* axpy: y += a x; gemv_n: y -= V h */
    double *partial;   /* [chunk][cols] */
} curv_vec_job;

static int64_t chunk_len(const curv_vec_job *j, int64_t c)
{
    int64_t i0 = c * CURV_CHUNK;
    return j->n - i0 < CURV_CHUNK ? j->n - i0 : CURV_CHUNK;
}

static void gemv_t_chunk(void *vj, int64_t begin, int64_t end)
{
    const curv_vec_job *j = vj;
    for (int64_t c = begin; c < end; c++) {
        int64_t i0 = c * CURV_CHUNK;
        cblas_dgemv(CblasColMajor, CblasTrans, (int)chunk_len(j, c), j->cols, 1.0, j->V + i0,
                    (int)j->n, j->x + i0, 1, 0.0, j->partial + c * j->cols, 1);
    }
}

static void gemv_n_chunk(void *vj, int64_t begin, int64_t end)
{
    const curv_vec_job *j = vj;
    for (int64_t c = begin; c < end; c++) {
        int64_t i0 = c * CURV_CHUNK;
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)chunk_len(j, c), j->cols, -1.0, j->V + i0,
                    (int)j->n, j->h, 1, 1.0, j->y + i0, 1);
    }
}

static void axpy_chunk(void *vj, int64_t begin, int64_t end)
{
    const curv_vec_job *j = vj;
    for (int64_t c = begin; c < end; c++) {
        int64_t i0 = c * CURV_CHUNK;
        cblas_daxpy((int)chunk_len(j, c), j->a, j->x + i0, 1, j->y + i0, 1);
    }
}

static void to_chunk(void *vj, int64_t begin, int64_t end)
{
    const curv_vec_job *j = vj;
    for (int64_t c = begin; c < end; c++) {
        int64_t i0 = c * CURV_CHUNK, len = chunk_len(j, c);
        const double *x = (const double *)j->src + i0;
        if (j->dt == LS_F64) memcpy((double *)j->dst + i0, x, (size_t)len * sizeof(double));
        else
            for (int64_t i = 0; i < len; i++) ((float *)j->dst)[i0 + i] = (float)x[i];
    }
}

static void from_chunk(void *vj, int64_t begin, int64_t end)
{
    const curv_vec_job *j = vj;
    for (int64_t c = begin; c < end; c++) {
        int64_t i0 = c * CURV_CHUNK, len = chunk_len(j, c);
        double *y = (double *)j->dst + i0;
        if (j->dt == LS_F64) memcpy(y, (const double *)j->src + i0, (size_t)len * sizeof(double));
        else
            for (int64_t i = 0; i < len; i++) y[i] = ((const float *)j->src)[i0 + i];
        j->bad[c] = -1;
        for (int64_t i = 0; i < len; i++)
            if (!isfinite(y[i])) {
                j->bad[c] = i0 + i;
                break;
            }
    }
}

void curv_to_dtype(int64_t n, const double *x, ls_dtype dt, void *out)
{
    curv_vec_job j = {.n = n, .dt = dt, .src = x, .dst = out};
    ls_parallel_for(curv_chunks(n), 1, to_chunk, &j);
}

int64_t curv_from_dtype(int64_t n, ls_dtype dt, const void *in, double *y)
{
    int64_t nc = curv_chunks(n), first = -1;
    int64_t stack[64],
        *bad = nc <= 64 ? stack : ls_malloc(sizeof(int64_t) * (size_t)nc, "curvature");
    if (!bad) {   /* no memory for the per-chunk flags: on this thread */
        for (int64_t i = 0; i < n; i++) {
            y[i] = dt == LS_F64 ? ((const double *)in)[i] : ((const float *)in)[i];
            if (first < 0 && !isfinite(y[i])) first = i;
        }
        return first;
    }
    curv_vec_job j = {.n = n, .dt = dt, .src = in, .dst = y, .bad = bad};
    ls_parallel_for(nc, 1, from_chunk, &j);
    for (int64_t c = 0; c < nc && first < 0; c++) first = bad[c];
    if (bad != stack) ls_free(bad);
    return first;
}

/* h = V^T x (cols >= 1) */
void curv_gemv_t(int64_t n, int cols, const double *V, const double *x, double *h)
{
    int64_t nc = curv_chunks(n);
    double stack[512], *partial = nc * cols <= 512 ? stack
                                  : ls_malloc(sizeof(double) * (size_t)(nc * cols), "curvature");
    if (!partial) {   /* no memory for the partial sums: one call on one thread */
        cblas_dgemv(CblasColMajor, CblasTrans, (int)n, cols, 1.0, V, (int)n, x, 1, 0.0, h, 1);
        return;
    }
    curv_vec_job j = {.n = n, .cols = cols, .V = V, .x = x, .partial = partial};
    curv_run(nc, gemv_t_chunk, &j);
    for (int k = 0; k < cols; k++) {
        double s = 0;
        for (int64_t c = 0; c < nc; c++) s += partial[c * cols + k];
        h[k] = s;
    }
    if (partial != stack) ls_free(partial);
}

/* y -= V h */
void curv_gemv_n_sub(int64_t n, int cols, const double *V, const double *h, double *y)
{
    curv_vec_job j = {.n = n, .cols = cols, .V = V, .h = h, .y = y};
    curv_run(curv_chunks(n), gemv_n_chunk, &j);
}

/* y += a x */
void curv_axpy(int64_t n, double a, const double *x, double *y)
{
    curv_vec_job j = {.n = n, .x = x, .y = y, .a = a};
    curv_run(curv_chunks(n), axpy_chunk, &j);
}

double curv_dot(int64_t n, const double *x, const double *y)
{
    double h;
    curv_gemv_t(n, 1, x, y, &h);
    return h;
}

/* sqrt(x.x); OpenBLAS's scaled norm when the squares overflow or underflow (never for the unit and
 * curvature-sized vectors here, but a norm must not say inf or 0 wrongly) */
double curv_nrm2(int64_t n, const double *x)
{
    double ss = curv_dot(n, x, x);
    if (isfinite(ss) && ss > 1e-290) return sqrt(ss);
    return cblas_dnrm2((int)n, x, 1);
}

/* ---- the fused passes of a Lanczos step (curv_internal.h) ---- */

typedef struct {
    int64_t n, c0;              /* c0: the first chunk of the group being run */
    ls_dtype dt;
    const void *raw;            /* recur: the matvec's output; sub: NULL, or the next input */
    double scale, bp, a;        /* 1 / ||u_j||; beta_{j-1}; alpha_j */
    const double *vp;           /* v_{j-1} (or NULL) */
    double *vj, *w;
    const double *V, *h;        /* orth: w -= V h over `cols` columns (cols 0: nothing) */
    int cols;
    double partial[64];         /* per chunk of the group */
    int64_t bad[64];            /* per chunk: first non-finite index of raw, or -1 */
} curv_lz_job;

#define LZ_CHUNK(j, c, i0, len)                                                                    \
    int64_t i0 = ((j)->c0 + (c)) * CURV_CHUNK;                                                     \
    int64_t len = (j)->n - i0 < CURV_CHUNK ? (j)->n - i0 : CURV_CHUNK

/* The sums of the fused passes run in LZ_LANES independent partial sums (element i into lane
 * i % LZ_LANES, the lanes added in a fixed tree): one running sum made every element wait for the
 * previous add (~4 cycles an element, 0.1 ms a pass over 118k doubles, slower than the memory),
 * and the order is still fixed, so the bits are the same on every run. A non-finite entry of the
 * product is found the same way: y * 0 is 0 for a finite y and NaN otherwise, so the lanes' sum of
 * them is NaN exactly when the chunk holds one (and then the chunk is searched for the first). */
#define LZ_LANES 8

static double lz_lanes_sum(const double *s)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static int64_t lz_first_bad(const void *raw, ls_dtype dt, int64_t i0, int64_t len)
{
    for (int64_t i = 0; i < len; i++) {
        double y = dt == LS_F64 ? ((const double *)raw)[i0 + i] : ((const float *)raw)[i0 + i];
        if (!isfinite(y)) return i0 + i;
    }
    return -1;
}

/* One loop of lz_recur_chunk for a load of y (the product) and of the previous vector. */
#define LZ_RECUR_BODY(LOAD_Y, PREV)                                                                \
    {                                                                                              \
        double y = (LOAD_Y), vv = v[i + q] * sc;                                                   \
        double ww = y * sc - bp * (PREV);                                                          \
        v[i + q] = vv;                                                                             \
        w[i + q] = ww;                                                                             \
        s[q] += vv * ww;                                                                           \
        nf[q] += y * 0.0;                                                                          \
    }
#define LZ_RECUR_LOOP(LOAD_Y, PREV)                                                                \
    {                                                                                              \
        int64_t i = 0;                                                                             \
        for (; i + LZ_LANES <= len; i += LZ_LANES)                                                 \
            for (int q = 0; q < LZ_LANES; q++) LZ_RECUR_BODY(LOAD_Y, PREV)                         \
        for (int q = 0; i + q < len; q++) LZ_RECUR_BODY(LOAD_Y, PREV)                              \
    }

/* v_j = u_j scale (in place); w = raw scale - bp vp; partial <v_j, w>; first non-finite of raw */
static void lz_recur_chunk(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        double *restrict w = j->w + i0, *restrict v = j->vj + i0;
        double sc = j->scale, bp = j->vp ? j->bp : 0.0;
        const double *restrict p = j->vp ? j->vp + i0 : NULL;
        const float *restrict rf = (const float *)j->raw + i0;
        const double *restrict rd = (const double *)j->raw + i0;
        double s[LZ_LANES] = {0}, nf[LZ_LANES] = {0};
        if (j->dt == LS_F64 && p) LZ_RECUR_LOOP(rd[i + q], p[i + q])
        else if (j->dt == LS_F64) LZ_RECUR_LOOP(rd[i + q], 0.0)
        else if (p) LZ_RECUR_LOOP((double)rf[i + q], p[i + q])
        else LZ_RECUR_LOOP((double)rf[i + q], 0.0)
        j->partial[c] = lz_lanes_sum(s);
        j->bad[c] = isnan(lz_lanes_sum(nf)) ? lz_first_bad(j->raw, j->dt, i0, len) : -1;
    }
}

/* One loop of lz_sub_chunk / lz_norm_chunk: w[i] = (W) (in place), s += w^2, and STORE. */
#define LZ_SUB_BODY(W, STORE)                                                                      \
    {                                                                                              \
        double ww = (W);                                                                           \
        w[i + q] = ww;                                                                             \
        s[q] += ww * ww;                                                                           \
        STORE;                                                                                     \
    }
#define LZ_SUB_LOOP(W, STORE)                                                                      \
    {                                                                                              \
        int64_t i = 0;                                                                             \
        for (; i + LZ_LANES <= len; i += LZ_LANES)                                                 \
            for (int q = 0; q < LZ_LANES; q++) LZ_SUB_BODY(W, STORE)                               \
        for (int q = 0; i + q < len; q++) LZ_SUB_BODY(W, STORE)                                    \
    }

/* w -= a v_j (v_j NULL: w unchanged); partial ||w||^2; w into raw in the operator dtype (when raw
 * is given) */
static void lz_sub_chunk(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        double *restrict w = j->w + i0, a = j->a, s[LZ_LANES] = {0};
        const double *restrict v = j->vj ? j->vj + i0 : NULL;
        float *restrict rf = j->raw ? (float *)j->raw + i0 : NULL;
        double *restrict rd = j->raw ? (double *)j->raw + i0 : NULL;
        if (v && !j->raw) LZ_SUB_LOOP(w[i + q] - a * v[i + q], (void)0)
        else if (v && j->dt == LS_F64) LZ_SUB_LOOP(w[i + q] - a * v[i + q], rd[i + q] = ww)
        else if (v) LZ_SUB_LOOP(w[i + q] - a * v[i + q], rf[i + q] = (float)ww)
        else if (!j->raw) LZ_SUB_LOOP(w[i + q], (void)0)
        else if (j->dt == LS_F64) LZ_SUB_LOOP(w[i + q], rd[i + q] = ww)
        else LZ_SUB_LOOP(w[i + q], rf[i + q] = (float)ww)
        j->partial[c] = lz_lanes_sum(s);
        j->bad[c] = -1;
    }
}

/* w -= V h (an OpenBLAS call on the chunk, which then stays in cache), then as lz_sub_chunk with
 * a = 0: partial ||w||^2 and w into raw */
static void lz_orth_chunk(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        if (j->cols > 0)
            cblas_dgemv(CblasColMajor, CblasNoTrans, (int)len, j->cols, -1.0, j->V + i0, (int)j->n,
                        j->h, 1, 1.0, j->w + i0, 1);
        lz_sub_chunk(vj_, c, c + 1);
    }
}

/* Runs a pass over all chunks, in groups of 64 on the pool (in sequence on this thread when the
 * pass calls OpenBLAS and OpenBLAS has threads of its own: see curv_run), and adds the per-chunk
 * partials in chunk order; *first_bad (if given) gets the first non-finite index reported, or
 * stays -1. */
static double lz_run(curv_lz_job *j, ls_parallel_fn fn, int64_t *first_bad)
{
    int64_t nc = curv_chunks(j->n);
    double s = 0;
    for (j->c0 = 0; j->c0 < nc; j->c0 += 64) {
        int64_t g = nc - j->c0 < 64 ? nc - j->c0 : 64;
        if (fn == lz_orth_chunk) curv_run(g, fn, j);
        else ls_parallel_for(g, 1, fn, j);
        for (int64_t c = 0; c < g; c++) {
            s += j->partial[c];
            if (first_bad && *first_bad < 0 && j->bad[c] >= 0) *first_bad = j->bad[c];
        }
    }
    return s;
}

int64_t curv_lz_recur(int64_t n, ls_dtype dt, const void *raw, double scale, double bp,
                      const double *vp, double *vj, double *w, double *alpha)
{
    curv_lz_job j = {.n = n, .dt = dt, .raw = raw, .scale = scale, .bp = bp, .vp = vp, .vj = vj,
                     .w = w};
    int64_t bad = -1;
    *alpha = lz_run(&j, lz_recur_chunk, &bad);
    return bad;
}

double curv_lz_sub(int64_t n, double a, const double *vj, double *w, ls_dtype dt, void *raw)
{
    curv_lz_job j = {.n = n, .a = a, .vj = (double *)vj, .w = w, .dt = dt, .raw = raw};
    return lz_run(&j, lz_sub_chunk, NULL);
}

double curv_sub_norm2(int64_t n, int cols, const double *V, const double *h, double *w, ls_dtype dt,
                      void *raw)
{
    curv_lz_job j = {.n = n, .V = V, .h = h, .cols = cols, .w = w, .dt = dt, .raw = raw};
    return lz_run(&j, lz_orth_chunk, NULL);
}
