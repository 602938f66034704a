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
 * (not stored: sub forms it again); first non-finite of raw */
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
            if (p)                                                                                 \
                LZ_LOOP(len, {                                                                     \
                    double yy = y[i + q], vv = (T)((double)v[i + q] * sc);                         \
                    double ww = yy * sc - bp * (double)p[i + q];                                   \
                    v[i + q] = (T)vv;                                                              \
                    s[q] += vv * ww;                                                               \
                    nf[q] += yy * 0.0;                                                             \
                })                                                                                 \
            else                                                                                   \
                LZ_LOOP(len, {                                                                     \
                    double yy = y[i + q], vv = (T)((double)v[i + q] * sc);                         \
                    double ww = yy * sc - bp * 0.0;                                                \
                    v[i + q] = (T)vv;                                                              \
                    s[q] += vv * ww;                                                               \
                    nf[q] += yy * 0.0;                                                             \
                })                                                                                 \
            j->partial[c] = lz_lanes_sum(s);                                                       \
            j->bad[c] = isnan(lz_lanes_sum(nf)) ? lz_first_bad(j->raw, j->dt, i0, len) : -1;       \
        }                                                                                          \
    }

/* sub: w = (raw scale - bp vp) - a v_j, rounded to T into w and into out; partial ||w||^2 */
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
            if (p && o)                                                                            \
                LZ_LOOP(len, {                                                                     \
                    double ww = (T)(((double)y[i + q] * sc - bp * (double)p[i + q]) -              \
                                    a * (double)v[i + q]);                                         \
                    w[i + q] = o[i + q] = (T)ww;                                                   \
                    s[q] += ww * ww;                                                               \
                })                                                                                 \
            else                                                                                   \
                LZ_LOOP(len, {                                                                     \
                    double ww = (T)(((double)y[i + q] * sc - bp * (p ? (double)p[i + q] : 0.0)) -  \
                                    a * (double)v[i + q]);                                         \
                    w[i + q] = (T)ww;                                                              \
                    if (o) o[i + q] = (T)ww;                                                       \
                    s[q] += ww * ww;                                                               \
                })                                                                                 \
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
#define LZ_ORTH_ROWS 1024
static void lz_orth_float(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    const float *V = j->V;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        double s[LZ_LANES] = {0}, acc[LZ_ORTH_ROWS];
        for (int64_t r0 = 0; r0 < len; r0 += LZ_ORTH_ROWS) {
            int64_t rows = len - r0 < LZ_ORTH_ROWS ? len - r0 : LZ_ORTH_ROWS, g = i0 + r0;
            float *restrict w = (float *)j->w + g, *restrict o = j->out ? (float *)j->out + g : NULL;
            for (int64_t i = 0; i < rows; i++) acc[i] = w[i];
            for (int k = 0; k < j->cols; k++) {
                int col = j->idx ? j->idx[k] : k;
                const float *restrict vk = V + (int64_t)col * j->n + g;
                double hk = j->h[k];
                for (int64_t i = 0; i < rows; i++) acc[i] -= hk * (double)vk[i];
            }
            for (int64_t i = 0; i < rows; i++) w[i] = (float)acc[i];
            LZ_NORM_COPY(float, w, o, rows, s)
        }
        j->partial[c] = lz_lanes_sum(s);
        j->bad[c] = -1;
    }
}

/* h = V^T x, f32 basis: per chunk and column a dot product in double lanes */
static void lz_dots_float(void *vj_, int64_t begin, int64_t end)
{
    curv_lz_job *j = vj_;
    for (int64_t c = begin; c < end; c++) {
        LZ_CHUNK(j, c, i0, len);
        const float *restrict x = (const float *)j->w + i0;
        for (int k = 0; k < j->cols; k++) {
            const float *restrict v = (const float *)j->V + (int64_t)k * j->n + i0;
            double s[LZ_LANES] = {0};
            LZ_LOOP(len, { s[q] += (double)v[i + q] * (double)x[i + q]; })
            ((double *)j->out)[c * j->cols + k] = lz_lanes_sum(s);
        }
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
