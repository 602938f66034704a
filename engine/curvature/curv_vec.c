/* The vector kernels of the estimators (curv_internal.h), on the engine's pool: f64 dot products,
 * norms, axpy and the two products with a basis that full reorthogonalisation needs; and the passes
 * of Lanczos over its basis, stored in f64 or f32 (sums in double either way).
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
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "curvature/curv_internal.h"
#include "ops/elementwise_kernel.h"   /* simd_pick */

/* The passes' loops vectorised (their sums run in independent lanes, so vectorising them reorders
 * nothing: the same bits), without FMA contraction. */
#define LS_VECTORIZE_NO_CONTRACT
#include "core/vectorize.h"

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
    double *y, a;      /* axpy: y += a x */
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

/* ---- the passes of Lanczos over its basis (curv_internal.h) ----
 *
 * The basis is stored in the operator's dtype bt (f32 or f64): each kernel is written once as a
 * macro over the stored type T and instantiated for double and float. Every value is loaded into
 * a double, all arithmetic and every sum is in double, and only what is stored is rounded to T; the
 * sums of squares are of the stored (rounded) values. For T = double the conversions are no-ops, so
 * the f64 instantiation is the arithmetic of the f64-only kernels it replaced, bit for bit. */

typedef struct {
    int64_t n, c0;              /* c0: the first chunk of the group being run */
    ls_dtype dt;                /* the basis's (and the operator's) dtype */
    const void *raw;            /* recur, sub: the matvec's output */
    void *out;                  /* sub, orth: the next matvec's input (or NULL) */
    double scale, bp, a;        /* 1 / ||u_j||; beta_{j-1}; alpha_j */
    const void *vp;             /* v_{j-1} (or NULL) */
    void *vj, *w;
    const void *V;              /* orth: w -= V h over `cols` columns (idx: which; NULL: 0..cols) */
    const double *h;
    const int *idx;
    int cols;
    double partial[64];         /* per chunk of the group */
    int64_t bad[64];            /* per chunk: first non-finite index of raw, or -1 */
} curv_lz_job;

#define LZ_CHUNK(j, c, i0, len)                                                                    \
    int64_t i0 = ((j)->c0 + (c)) * CURV_CHUNK;                                                     \
    int64_t len = (j)->n - i0 < CURV_CHUNK ? (j)->n - i0 : CURV_CHUNK

/* The sums of the passes run in LZ_LANES independent partial sums (element i into lane
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

/* for (i < len) in blocks of LZ_LANES, element i + q in lane q: BODY sees i and q */
#define LZ_LOOP(len, ...)                                                                          \
    {                                                                                              \
        int64_t i = 0;                                                                             \
        for (; i + LZ_LANES <= (len); i += LZ_LANES)                                               \
            for (int q = 0; q < LZ_LANES; q++) __VA_ARGS__                                         \
        for (int q = 0; i + q < (len); q++) __VA_ARGS__                                            \
    }

/* recur: v_j = u_j scale (in place, rounded to T); partial <v_j, w> with w = raw scale - bp vp
 * (not stored: sub forms it again); first non-finite of raw. PREV: v_{j-1}'s entry, or 0. */
#define LZ_RECUR_STEP(T, PREV)                                                                     \
    {                                                                                              \
        double yy = y[i + q], vv = (T)((double)v[i + q] * sc), ww = yy * sc - bp * (PREV);         \
        v[i + q] = (T)vv;                                                                          \
        s[q] += vv * ww;                                                                           \
        nf[q] += yy * 0.0;                                                                         \
    }
#define LZ_RECUR(T)                                                                                \
    static void lz_recur_##T(void *vj_, int64_t begin, int64_t end)                                \
    {                                                                                              \
        curv_lz_job *j = vj_;                                                                      \
        for (int64_t c = begin; c < end; c++) {                                                    \
            LZ_CHUNK(j, c, i0, len);                                                               \
            T *restrict v = (T *)j->vj + i0;                                                       \
            const T *restrict y = (const T *)j->raw + i0;                                          \
            const T *restrict p = j->vp ? (const T *)j->vp + i0 : NULL;                            \
            double sc = j->scale, bp = p ? j->bp : 0.0, s[LZ_LANES] = {0}, nf[LZ_LANES] = {0};     \
            if (p) LZ_LOOP(len, LZ_RECUR_STEP(T, (double)p[i + q]))                                \
            else LZ_LOOP(len, LZ_RECUR_STEP(T, 0.0))                                               \
            j->partial[c] = lz_lanes_sum(s);                                                       \
            j->bad[c] = isnan(lz_lanes_sum(nf)) ? lz_first_bad(j->raw, j->dt, i0, len) : -1;       \
        }                                                                                          \
    }

/* sub: w = (raw scale - bp vp) - a v_j, rounded to T into w and, with STORE_OUT, into out; partial
 * ||w||^2 */
#define LZ_SUB_STEP(T, PREV, STORE_OUT)                                                            \
    {                                                                                              \
        double ww = (T)(((double)y[i + q] * sc - bp * (PREV)) - a * (double)v[i + q]);             \
        w[i + q] = (T)ww;                                                                          \
        STORE_OUT;                                                                                 \
        s[q] += ww * ww;                                                                           \
    }
#define LZ_SUB(T)                                                                                  \
    static void lz_sub_##T(void *vj_, int64_t begin, int64_t end)                                  \
    {                                                                                              \
        curv_lz_job *j = vj_;                                                                      \
        for (int64_t c = begin; c < end; c++) {                                                    \
            LZ_CHUNK(j, c, i0, len);                                                               \
            const T *restrict v = (const T *)j->vj + i0, *restrict y = (const T *)j->raw + i0;    \
            const T *restrict p = j->vp ? (const T *)j->vp + i0 : NULL;                            \
            T *restrict w = (T *)j->w + i0, *restrict o = j->out ? (T *)j->out + i0 : NULL;       \
            double sc = j->scale, bp = p ? j->bp : 0.0, a = j->a, s[LZ_LANES] = {0};               \
            if (p && o) LZ_LOOP(len, LZ_SUB_STEP(T, (double)p[i + q], o[i + q] = (T)ww))           \
            else LZ_LOOP(len, LZ_SUB_STEP(T, p ? (double)p[i + q] : 0.0, if (o) o[i + q] = (T)ww)) \
            j->partial[c] = lz_lanes_sum(s);                                                       \
            j->bad[c] = -1;                                                                        \
        }                                                                                          \
    }

LZ_RECUR(double)
LZ_RECUR(float)
LZ_SUB(double)
LZ_SUB(float)

/* ||w||^2 of a chunk of w (already in T) and its copy into out, in lanes */
#define LZ_NORM_COPY(T, w, o, len, s)                                                              \
    {                                                                                              \
        if (o) LZ_LOOP(len, { double ww = w[i + q]; o[i + q] = (T)ww; s[q] += ww * ww; })          \
        else LZ_LOOP(len, { double ww = w[i + q]; s[q] += ww * ww; })                              \
    }

/* orth, f64 basis: w -= V h by an OpenBLAS call on the chunk (which then stays in cache), then
 * the chunk's ||w||^2 and copy */
static void lz_orth_double(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        double *restrict w = (double *)j->w + i0, *restrict o = j->out ? (double *)j->out + i0 : NULL;
        double s[LZ_LANES] = {0};
        if (j->cols > 0)
            cblas_dgemv(CblasColMajor, CblasNoTrans, (int)len, j->cols, -1.0,
                        (const double *)j->V + i0, (int)j->n, j->h, 1, 1.0, w, 1);
        LZ_NORM_COPY(double, w, o, len, s)
        j->partial[c] = lz_lanes_sum(s);
        j->bad[c] = -1;
    }
}

/* orth, f32 basis: w -= V h (the columns idx[0..cols), or 0..cols) in double, LZ_ORTH_ROWS rows at
 * a time (each column contributes one contiguous run), rounded to f32 once at the end */
#define LZ_ORTH_ROWS CURV_CHUNK
static const float *lz_col(const curv_lz_job *j, int k)
{
    return (const float *)j->V + (int64_t)(j->idx ? j->idx[k] : k) * j->n;
}

static void lz_orth_float(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        static _Thread_local double acc[LZ_ORTH_ROWS];   /* 128 KB: not on the stack */
        double s[LZ_LANES] = {0};
        for (int64_t r0 = 0; r0 < len; r0 += LZ_ORTH_ROWS) {
            int64_t rows = len - r0 < LZ_ORTH_ROWS ? len - r0 : LZ_ORTH_ROWS, g = i0 + r0;
            float *restrict w = (float *)j->w + g, *restrict o = j->out ? (float *)j->out + g : NULL;
            for (int64_t i = 0; i < rows; i++) acc[i] = w[i];
            int k = 0;
            for (; k + 4 <= j->cols; k += 4) {   /* four columns a read of acc, in column order */
                const float *restrict v0 = lz_col(j, k), *restrict v1 = lz_col(j, k + 1);
                const float *restrict v2 = lz_col(j, k + 2), *restrict v3 = lz_col(j, k + 3);
                double h0 = j->h[k], h1 = j->h[k + 1], h2 = j->h[k + 2], h3 = j->h[k + 3];
                for (int64_t i = 0; i < rows; i++)
                    acc[i] = (((acc[i] - h0 * (double)v0[g + i]) - h1 * (double)v1[g + i]) -
                              h2 * (double)v2[g + i]) -
                             h3 * (double)v3[g + i];
            }
            for (; k < j->cols; k++) {
                const float *restrict vk = lz_col(j, k);
                double hk = j->h[k];
                for (int64_t i = 0; i < rows; i++) acc[i] -= hk * (double)vk[g + i];
            }
            for (int64_t i = 0; i < rows; i++) w[i] = (float)acc[i];
            LZ_NORM_COPY(float, w, o, rows, s)
        }
        j->partial[c] = lz_lanes_sum(s);
        j->bad[c] = -1;
    }
}

/* h = V^T x, f32 basis: per chunk, four columns at a time (x converted once for the four), each
 * column's dot product in double in four lanes (element i in lane i % 4, the lanes added as
 * (l0 + l1) + (l2 + l3)); SSE2 where the compiler has it, the same sums in plain C otherwise. */
static void lz_dots4(const float *restrict x, const float *const v[4], int64_t len, double out[4])
{
    double s[4][4] = {{0}};
    int64_t i = 0;
#ifdef __SSE2__
    __m128d a00 = _mm_setzero_pd(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
            a30 = a00, a31 = a00;   /* in registers: column c, lanes 0-1 and 2-3 */
    for (; i + 4 <= len; i += 4) {
        __m128 xf = _mm_loadu_ps(x + i);
        __m128d x0 = _mm_cvtps_pd(xf), x1 = _mm_cvtps_pd(_mm_movehl_ps(xf, xf));
#define LZ_DOT_COL(c)                                                                              \
    {                                                                                              \
        __m128 vf = _mm_loadu_ps(v[c] + i);                                                        \
        a##c##0 = _mm_add_pd(a##c##0, _mm_mul_pd(_mm_cvtps_pd(vf), x0));                           \
        a##c##1 = _mm_add_pd(a##c##1, _mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(vf, vf)), x1));        \
    }
        LZ_DOT_COL(0)
        LZ_DOT_COL(1)
        LZ_DOT_COL(2)
        LZ_DOT_COL(3)
#undef LZ_DOT_COL
    }
    _mm_storeu_pd(s[0], a00);
    _mm_storeu_pd(s[0] + 2, a01);
    _mm_storeu_pd(s[1], a10);
    _mm_storeu_pd(s[1] + 2, a11);
    _mm_storeu_pd(s[2], a20);
    _mm_storeu_pd(s[2] + 2, a21);
    _mm_storeu_pd(s[3], a30);
    _mm_storeu_pd(s[3] + 2, a31);
#else
    for (; i + 4 <= len; i += 4)
        for (int c = 0; c < 4; c++)
            for (int q = 0; q < 4; q++) s[c][q] += (double)v[c][i + q] * (double)x[i + q];
#endif
    for (int q = 0; i + q < len; q++)
        for (int c = 0; c < 4; c++) s[c][q] += (double)v[c][i + q] * (double)x[i + q];
    for (int c = 0; c < 4; c++) out[c] = (s[c][0] + s[c][1]) + (s[c][2] + s[c][3]);
}

static void lz_dots_float(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        double *out = (double *)j->out + c * j->cols;
        for (int k = 0; k < j->cols; k += 4) {
            const float *v[4];
            double o[4];
            for (int q = 0; q < 4; q++)   /* past the last column: the last again, not kept */
                v[q] = (const float *)j->V +
                       (int64_t)(k + q < j->cols ? k + q : j->cols - 1) * j->n + i0;
            lz_dots4((const float *)j->w + i0, v, len, o);
            for (int q = 0; q < 4 && k + q < j->cols; q++) out[k + q] = o[q];
        }
    }
}

/* t[i][r] = sum_q V[r0 + r, q] Z[q, i] for one block of rows (curv_internal.h): the block of each
 * basis column is read once, contiguously, four columns per sweep over the c accumulators (which,
 * with the four column blocks, stay in the core's cache); each sum in double in column order. The
 * body is compiled for the x86-64 baseline (SSE2, two doubles a step) and, picked at run time as
 * the elementwise kernels pick theirs (simd_pick: LANDSCAPE_SIMD=baseline keeps SSE2), for AVX2
 * (four); a multiply and an add per term in both, never contracted: the same bits. At SSE2 width
 * this was bound by the arithmetic (~4 ms for the bench MLP's 59 x 118k basis and 3 vectors). */
#define CURV_COMBINE_BODY                                                                          \
    {                                                                                              \
        for (int i = 0; i < c; i++) memset(t + (int64_t)i * rows, 0, (size_t)rows * sizeof(double)); \
        int q = 0;                                                                                 \
        for (; q + 4 <= m; q += 4) {                                                               \
            const float *restrict v0 = V + (int64_t)q * n + r0, *restrict v1 = v0 + n;             \
            const float *restrict v2 = v1 + n, *restrict v3 = v2 + n;                              \
            for (int i = 0; i < c; i++) {                                                          \
                const double *zi = Z + (int64_t)i * m + q;                                         \
                double z0 = zi[0], z1 = zi[1], z2 = zi[2], z3 = zi[3];                             \
                double *restrict acc = t + (int64_t)i * rows;                                      \
                for (int64_t r = 0; r < rows; r++)                                                 \
                    acc[r] = (((acc[r] + z0 * (double)v0[r]) + z1 * (double)v1[r]) +               \
                              z2 * (double)v2[r]) +                                                \
                             z3 * (double)v3[r];                                                   \
            }                                                                                      \
        }                                                                                          \
        for (; q < m; q++) {                                                                       \
            const float *restrict v = V + (int64_t)q * n + r0;                                     \
            for (int i = 0; i < c; i++) {                                                          \
                double z = Z[(int64_t)i * m + q], *restrict acc = t + (int64_t)i * rows;           \
                for (int64_t r = 0; r < rows; r++) acc[r] += z * (double)v[r];                     \
            }                                                                                      \
        }                                                                                          \
    }
#define CURV_COMBINE_ARGS                                                                          \
    int64_t n, int m, const float *V, int c, const double *Z, int64_t r0, int64_t rows, double *t

static void combine_base(CURV_COMBINE_ARGS) CURV_COMBINE_BODY
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static void combine_avx2(CURV_COMBINE_ARGS) CURV_COMBINE_BODY
#else
#define combine_avx2 combine_base
#endif

void curv_rows_combine(CURV_COMBINE_ARGS)
{
    simd_pick(combine_base, combine_avx2)(n, m, V, c, Z, r0, rows, t);
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
        if (fn == lz_orth_double) curv_run(g, fn, j);
        else ls_parallel_for(g, 1, fn, j);
        for (int64_t c = 0; c < g; c++) {
            s += j->partial[c];
            if (first_bad && *first_bad < 0 && j->bad[c] >= 0) *first_bad = j->bad[c];
        }
    }
    return s;
}

int64_t curv_lz_recur(int64_t n, ls_dtype dt, const void *raw, double scale, double bp,
                      const void *vp, void *vj, double *alpha)
{
    curv_lz_job j = {.n = n, .dt = dt, .raw = raw, .scale = scale, .bp = bp, .vp = vp, .vj = vj};
    int64_t bad = -1;
    *alpha = lz_run(&j, dt == LS_F64 ? lz_recur_double : lz_recur_float, &bad);
    return bad;
}

double curv_lz_sub(int64_t n, ls_dtype dt, const void *raw, double scale, double bp, const void *vp,
                   double a, const void *vj, void *w, void *out)
{
    curv_lz_job j = {.n = n, .dt = dt, .raw = raw, .scale = scale, .bp = bp, .vp = vp, .a = a,
                     .vj = (void *)vj, .w = w, .out = out};
    return lz_run(&j, dt == LS_F64 ? lz_sub_double : lz_sub_float, NULL);
}

double curv_sub_norm2(int64_t n, ls_dtype bt, int cols, const void *V, const int *idx,
                      const double *h, void *w, void *raw)
{
    curv_lz_job j = {.n = n, .dt = bt, .V = V, .h = h, .idx = idx, .cols = cols, .w = w, .out = raw};
    return lz_run(&j, bt == LS_F64 ? lz_orth_double : lz_orth_float, NULL);
}

void curv_basis_dots(int64_t n, ls_dtype bt, int cols, const void *V, const void *x, double *h)
{
    if (bt == LS_F64) {
        curv_gemv_t(n, cols, V, x, h);
        return;
    }
    int64_t nc = curv_chunks(n);
    double stack[512], *partial = nc * cols <= 512 ? stack
                                  : ls_malloc(sizeof(double) * (size_t)(nc * cols), "curvature");
    if (!partial) {   /* no memory for the partial sums: chunk by chunk on this thread */
        double part[64];
        for (int k = 0; k < cols; k++) h[k] = 0;
        for (int64_t c = 0; c < nc; c++) {
            curv_lz_job j = {.n = n, .V = V, .w = (void *)x, .cols = 1, .out = part};
            for (int k = 0; k < cols; k++) {
                j.V = (const float *)V + (int64_t)k * n;
                j.c0 = c;
                lz_dots_float(&j, 0, 1);
                h[k] += part[0];
            }
        }
        return;
    }
    curv_lz_job j = {.n = n, .V = V, .w = (void *)x, .cols = cols, .out = partial};
    ls_parallel_for(nc, 1, lz_dots_float, &j);
    for (int k = 0; k < cols; k++) {
        double s = 0;
        for (int64_t c = 0; c < nc; c++) s += partial[c * cols + k];
        h[k] = s;
    }
    if (partial != stack) ls_free(partial);
}
