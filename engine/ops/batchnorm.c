/* Fused batch norm (training mode): the kernels of four ops that together make the forward 2
 * passes over x and the backward 2 passes over (g, x). The ops themselves, their backward rules
 * (written in recorded ops, so Hessian-vector products and higher derivatives through batch norm
 * stay exact) and their entry points are in batchnorm_ops.c.
 *
 * x is [N, C] or [N, C, d2, ...]: channels in dim 1 (index 1), viewed here as [N, C, S] with S the
 * product of the trailing dims; each channel's statistics are over its n = N * S values.
 *   batchnorm(x, w, b; eps) -> y = (x - mean) * (w / sqrt(var + eps)) + b, var biased.
 *       Pass 1: per-channel sums; pass 2: y.
 *   batchnorm_grad_stats(g, x; eps) -> [4, C]: sum(g), sum(g * xhat), mean, invstd, where
 *       invstd = 1 / sqrt(var + eps), xhat = (x - mean) * invstd. One pass over g and x. Rows 0
 *       and 1 are the bias and weight gradients of batchnorm.
 *   batchnorm_input_grad(g, x, w, R) -> w r (g - A / n - (x - mu) r B / n) with (A, B, mu, r) the
 *       rows of R: batchnorm's input gradient when R = grad_stats(g, x). One pass.
 *   batchnorm_affine(g, x, K) -> K0 g + K1 (x - K2) + K3 per channel: the form the second-order
 *       rules produce. One pass.
 *
 * Statistics. The sums are taken about a per-channel shift K (the channel's first element), in
 * double for both dtypes: s1 = sum(x - K), s2 = sum((x - K)^2), and with g also sum(g) and
 * sum(g (x - K)); then mean = K + s1 / n, var = (s2 - s1 (s1 / n)) / n, sum(g (x - mean)) =
 * sum(g (x - K)) - (s1 / n) sum(g). The shift makes the one-pass variance safe when |mean| >> std
 * (K is within a few std of the mean); for f32 data the differences and products are exact in
 * double (unless a channel's magnitudes span more than 2^29), so the results are the statistics
 * with only the double rounding of the sums, rounded once to the dtype. The per-channel
 * coefficients are then formed in the data's dtype exactly as the composed formula did
 * (scale = w / sqrt(var + eps) in T), and the elementwise passes run in T.
 *
 * Layout and determinism. Stats run on the thread pool over channels: with S >= BN_ROWS_MIN each
 * channel is one task that walks its N runs of S contiguous values with vector lanes of double
 * accumulators (see BN_STATS_ROWS; 4-double lanes in SSE2/AVX2 code, 8-double lanes on AVX-512
 * CPUs, so the last bits of the sums depend on the CPU's vector width, LANDSCAPE_SIMD=baseline
 * giving the SSE2 ones everywhere); with smaller S (batchnorm1d) a task is a block of channels
 * whose N runs of blk * S values are contiguous, with one accumulator per (channel, s) position,
 * added over s in order at the end. The elementwise passes run over the N rows of C * S values.
 * All splits depend on the shape only, so results are bitwise independent of the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/batchnorm_internal.h"
#include "ops/elementwise_kernel.h"
#include "ops/ops.h"

#include "core/vectorize.h"   /* GCC: vectorise the short loops */

#define BN_GRAIN 16384     /* elements per parallel chunk, roughly */
#define BN_ROWS_MIN 16     /* S from which a channel's runs are summed with lanes */
#define BN_COLS_SPAN 256   /* values per run of a channel block on the column path */
#define BN_DEFAULT_EPS 1e-5

typedef struct bn_geom {
    int64_t N, C, S, n;   /* n = N * S values per channel */
} bn_geom;

/* ---- argument checks ---- */

static ls_status bn_geom_x(const char *who, const ls_tensor *x, bn_geom *g)
{
    if (x->ndim < 2)
        return ls_error_set(LS_ERR_ARG, "%s: expected an input [N x C] or [N x C x ...], got %s",
                            who, ls_tensor_shape_str(x));
    g->N = x->shape[0];
    g->C = x->shape[1];
    g->S = 1;
    for (int d = 2; d < x->ndim; d++) g->S *= x->shape[d];
    g->n = g->N * g->S;
    if (g->n == 0 || g->C == 0)
        return ls_error_set(LS_ERR_ARG, "%s: empty input %s", who, ls_tensor_shape_str(x));
    return LS_OK;
}

/* v must be [C] */
static ls_status bn_check_vec(const char *who, const char *what, const ls_tensor *v,
                              const bn_geom *g)
{
    if (v->ndim != 1 || v->shape[0] != g->C)
        return ls_error_set(LS_ERR_ARG, "%s: %s %s should be [%lld] (one value per channel)", who,
                            what, ls_tensor_shape_str(v), (long long)g->C);
    return LS_OK;
}

static ls_status bn_check_same_shape(const char *who, const char *what, const ls_tensor *t,
                                     const ls_tensor *x)
{
    if (t->ndim != x->ndim || memcmp(t->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) != 0)
        return ls_error_set(LS_ERR_ARG, "%s: %s %s should have the input's shape %s", who, what,
                            ls_tensor_shape_str(t), ls_tensor_shape_str(x));
    return LS_OK;
}

double bn_eps(const ls_attrs *a)
{
    return a->nnum < 1 || isnan(a->num[0]) ? BN_DEFAULT_EPS : a->num[0];
}

static ls_status bn_check_eps(const char *who, double eps)
{
    if (!(eps >= 0) || isinf(eps))
        return ls_error_set(LS_ERR_ARG, "%s: eps must be a finite number >= 0, got %g", who, eps);
    return LS_OK;
}

/* ---- pass 1: per-channel sums ---- */

/* Per channel c: k[c] the shift, s1 = sum(x - K), s2 = sum((x - K)^2), and when gr is given
 * sg = sum(g), sgd = sum(g (x - K)). x and gr contiguous. */
typedef struct bn_sums {
    double *k, *s1, *s2, *sg, *sgd;
} bn_sums;

typedef struct bn_stats_job {
    const bn_geom *g;
    bool f32;
    const void *x, *gr;
    int64_t blk;   /* channels per task on the column path */
    bn_sums out;
} bn_stats_job;

/* The row path keeps its lanes in 4-double vectors (GCC vector extensions: SSE2 pairs by default,
 * AVX2 registers in the clone below): without g, 16 lanes per sum (4 vectors; one more block of 8
 * goes to the first two), with g 8 lanes per sum (8 vectors for the four sums); lane k takes the
 * elements at s = 16 i + k (or 8 i + k) of each run, the last S % 8 elements of a run go to one
 * scalar accumulator per sum, and everything is added in a fixed order at the end. The AVX2 clone
 * may fuse d * d + acc into one FMA, so its results can differ from the SSE2 path's in the last
 * bits (as elementwise_kernel.c's AVX2 kernels; LANDSCAPE_SIMD=baseline forces SSE2). */
typedef double bn_v4d __attribute__((vector_size(32)));
typedef float bn_v4f __attribute__((vector_size(16)));
#define BN_LOAD4_F32(p)                                                                            \
    __extension__({                                                                                \
        bn_v4f v_;                                                                                 \
        memcpy(&v_, (p), sizeof v_);                                                               \
        __builtin_convertvector(v_, bn_v4d);                                                       \
    })
#define BN_LOAD4_F64(p)                                                                            \
    __extension__({                                                                                \
        bn_v4d v_;                                                                                 \
        memcpy(&v_, (p), sizeof v_);                                                               \
        v_;                                                                                        \
    })
#define BN_HSUM(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))

/* One task per channel; VT vectors of W doubles (4 or 8), LOAD(p) reads W values at p. */
#define BN_STATS_ROWS(T, VT, W, LOAD, HSUM)                                                        \
    do {                                                                                           \
        int64_t C = g->C, S = g->S;                                                                \
        const T *xs = (const T *)j->x, *gs = (const T *)j->gr;                                     \
        for (int64_t c = begin; c < end; c++) {                                                    \
            double K = (double)xs[c * S], t1 = 0, t2 = 0, tg = 0, tgd = 0;                         \
            const VT z = {0}, Kv = z + K;                                                          \
            VT a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;                     \
            for (int64_t n = 0; n < g->N; n++) {                                                   \
                const T *p = xs + (n * C + c) * S;                                                 \
                int64_t s = 0;                                                                     \
                if (!gs) { /* a: sum d, b: sum d^2 */                                              \
                    for (; s + 4 * W <= S; s += 4 * W) {                                           \
                        VT d0 = LOAD(p + s) - Kv, d1 = LOAD(p + s + W) - Kv;                       \
                        VT d2 = LOAD(p + s + 2 * W) - Kv, d3 = LOAD(p + s + 3 * W) - Kv;           \
                        a0 += d0, a1 += d1, a2 += d2, a3 += d3;                                    \
                        b0 += d0 * d0, b1 += d1 * d1, b2 += d2 * d2, b3 += d3 * d3;                \
                    }                                                                              \
                    if (s + 2 * W <= S) {                                                          \
                        VT d0 = LOAD(p + s) - Kv, d1 = LOAD(p + s + W) - Kv;                       \
                        a0 += d0, a1 += d1, b0 += d0 * d0, b1 += d1 * d1;                          \
                        s += 2 * W;                                                                \
                    }                                                                              \
                    for (; s < S; s++) {                                                           \
                        double d = (double)p[s] - K;                                               \
                        t1 += d, t2 += d * d;                                                      \
                    }                                                                              \
                } else { /* a0 a1: d, a2 a3: d^2, b0 b1: g, b2 b3: g d */                          \
                    const T *q = gs + (n * C + c) * S;                                             \
                    for (; s + 2 * W <= S; s += 2 * W) {                                           \
                        VT d0 = LOAD(p + s) - Kv, d1 = LOAD(p + s + W) - Kv;                       \
                        VT v0 = LOAD(q + s), v1 = LOAD(q + s + W);                                 \
                        a0 += d0, a1 += d1, a2 += d0 * d0, a3 += d1 * d1;                          \
                        b0 += v0, b1 += v1, b2 += v0 * d0, b3 += v1 * d1;                          \
                    }                                                                              \
                    for (; s < S; s++) {                                                           \
                        double d = (double)p[s] - K, v = (double)q[s];                             \
                        t1 += d, t2 += d * d, tg += v, tgd += v * d;                               \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            j->out.k[c] = K;                                                                       \
            if (!gs) {                                                                             \
                j->out.s1[c] = HSUM((a0 + a1) + (a2 + a3)) + t1;                                   \
                j->out.s2[c] = HSUM((b0 + b1) + (b2 + b3)) + t2;                                   \
            } else {                                                                               \
                j->out.s1[c] = HSUM(a0 + a1) + t1;                                                 \
                j->out.s2[c] = HSUM(a2 + a3) + t2;                                                 \
                j->out.sg[c] = HSUM(b0 + b1) + tg;                                                 \
                j->out.sgd[c] = HSUM(b2 + b3) + tgd;                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* One task per block of blk channels: per run n the block's values are contiguous, and position j
 * of the run (channel c0 + j / S, s = j % S) has its own accumulators. */
#define BN_STATS_COLS(T)                                                                           \
    do {                                                                                           \
        int64_t C = g->C, S = g->S, B = j->blk;                                                    \
        const T *xs = (const T *)j->x, *gs = (const T *)j->gr;                                     \
        for (int64_t blk = begin; blk < end; blk++) {                                              \
            int64_t c0 = blk * B, c1 = c0 + B < C ? c0 + B : C, L = (c1 - c0) * S;                 \
            double kj[BN_COLS_SPAN], a1[BN_COLS_SPAN], a2[BN_COLS_SPAN];                           \
            double ag[BN_COLS_SPAN], agd[BN_COLS_SPAN];                                            \
            for (int64_t i = 0; i < L; i++) {                                                      \
                kj[i] = (double)xs[(c0 + i / S) * S];                                              \
                a1[i] = a2[i] = ag[i] = agd[i] = 0;                                                \
            }                                                                                      \
            for (int64_t n = 0; n < g->N; n++) {                                                   \
                const T *restrict p = xs + (n * C + c0) * S;                                       \
                if (!gs) {                                                                         \
                    for (int64_t i = 0; i < L; i++) {                                              \
                        double d = (double)p[i] - kj[i];                                           \
                        a1[i] += d;                                                                \
                        a2[i] += d * d;                                                            \
                    }                                                                              \
                } else {                                                                           \
                    const T *restrict q = gs + (n * C + c0) * S;                                   \
                    for (int64_t i = 0; i < L; i++) {                                              \
                        double d = (double)p[i] - kj[i], gv = (double)q[i];                        \
                        a1[i] += d;                                                                \
                        a2[i] += d * d;                                                            \
                        ag[i] += gv;                                                               \
                        agd[i] += gv * d;                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            for (int64_t c = c0; c < c1; c++) {                                                    \
                int64_t o = (c - c0) * S;                                                          \
                double t1 = 0, t2 = 0, tg = 0, tgd = 0;                                            \
                for (int64_t s = 0; s < S; s++)                                                    \
                    t1 += a1[o + s], t2 += a2[o + s], tg += ag[o + s], tgd += agd[o + s];          \
                j->out.k[c] = kj[o];                                                               \
                j->out.s1[c] = t1;                                                                 \
                j->out.s2[c] = t2;                                                                 \
                if (gs) j->out.sg[c] = tg, j->out.sgd[c] = tgd;                                    \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void bn_stats_rows(void *vj, int64_t begin, int64_t end)
{
    const bn_stats_job *j = vj;
    const bn_geom *g = j->g;
    if (j->f32) BN_STATS_ROWS(float, bn_v4d, 4, BN_LOAD4_F32, BN_HSUM);
    else BN_STATS_ROWS(double, bn_v4d, 4, BN_LOAD4_F64, BN_HSUM);
}

#if defined(__x86_64__) && defined(__GNUC__)
/* GCC's generic float-to-double vector conversion goes through memory; the intrinsic does not */
#define BN_LOAD4_F32_AVX2(p) ((bn_v4d)_mm256_cvtps_pd(_mm_loadu_ps(p)))
__attribute__((target("avx2,fma"))) static void bn_stats_rows_avx2(void *vj, int64_t begin,
                                                               int64_t end)
{
    const bn_stats_job *j = vj;
    const bn_geom *g = j->g;
    if (j->f32) BN_STATS_ROWS(float, bn_v4d, 4, BN_LOAD4_F32_AVX2, BN_HSUM);
    else BN_STATS_ROWS(double, bn_v4d, 4, BN_LOAD4_F64, BN_HSUM);
}

/* The same sums with 8-double lanes on AVX-512 (the AVX2 kernel converted and added four floats
 * per instruction and ran at a third of the memory bandwidth on the backward's two inputs): the
 * same layout with vectors twice as wide (32 and 16 lanes per sum). */
typedef double bn_v8d __attribute__((vector_size(64)));
#define BN_LOAD8_F32(p) ((bn_v8d)_mm512_cvtps_pd(_mm256_loadu_ps(p)))
#define BN_LOAD8_F64(p) ((bn_v8d)_mm512_loadu_pd(p))
#define BN_HSUM8(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))
__attribute__((target("avx512f"))) static void bn_stats_rows_avx512(void *vj, int64_t begin,
                                                                     int64_t end)
{
    const bn_stats_job *j = vj;
    const bn_geom *g = j->g;
    if (j->f32) BN_STATS_ROWS(float, bn_v8d, 8, BN_LOAD8_F32, BN_HSUM8);
    else BN_STATS_ROWS(double, bn_v8d, 8, BN_LOAD8_F64, BN_HSUM8);
}

/* AVX-512 where the CPU has it, else the AVX2+FMA kernel where elementwise_kernel.c would pick one
 * (LANDSCAPE_SIMD=baseline: neither) */
static ls_parallel_fn bn_stats_rows_fn(void)
{
    if (!ew_cpu_has_avx2_fma()) return bn_stats_rows;
    return __builtin_cpu_supports("avx512f") ? bn_stats_rows_avx512 : bn_stats_rows_avx2;
}
#define BN_STATS_ROWS_FN bn_stats_rows_fn()
#else
#define BN_STATS_ROWS_FN bn_stats_rows
#endif

static void bn_stats_cols(void *vj, int64_t begin, int64_t end)
{
    const bn_stats_job *j = vj;
    const bn_geom *g = j->g;
    if (j->f32) BN_STATS_COLS(float);
    else BN_STATS_COLS(double);
}

static int64_t bn_grain(int64_t per_item)
{
    return per_item >= BN_GRAIN ? 1 : BN_GRAIN / (per_item > 0 ? per_item : 1);
}

/* The sums of contiguous x (and gr, or NULL) into a new block of 5 C doubles (ls_free it through
 * out->k); LS_ERR_MEM on failure. */
static ls_status bn_sums_run(const bn_geom *g, const ls_tensor *x, const ls_tensor *gr,
                             bn_sums *out)
{
    double *m = ls_malloc(sizeof(double) * 5 * (size_t)g->C, "batchnorm");
    if (!m) return ls_error_code();
    *out = (bn_sums){m, m + g->C, m + 2 * g->C, m + 3 * g->C, m + 4 * g->C};
    bn_stats_job j = {g, x->dtype == LS_F32, ls_tensor_data(x), gr ? ls_tensor_data(gr) : NULL, 0,
                      *out};
    if (g->S >= BN_ROWS_MIN) {
        ls_parallel_for(g->C, bn_grain(g->n), BN_STATS_ROWS_FN, &j);
    } else {
        j.blk = BN_COLS_SPAN / g->S;
        int64_t nblk = (g->C + j.blk - 1) / j.blk;
        ls_parallel_for(nblk, bn_grain(g->n * j.blk), bn_stats_cols, &j);
    }
    return LS_OK;
}

/* mean and biased variance of channel c from the sums (a rounding-negative variance becomes 0;
 * NaN stays NaN) */
static void bn_moments(const bn_sums *s, const bn_geom *g, int64_t c, double *mean, double *var)
{
    double n = (double)g->n, m1 = s->s1[c] / n, v = (s->s2[c] - s->s1[c] * m1) / n;
    *mean = s->k[c] + m1;
    *var = v < 0 ? 0 : v;
}

/* ---- pass 2: per-channel affine maps ---- */

/* Per element, with per-channel coefficients c0..c3 (arrays of C values of T):
 *   BN_FORWARD:     out = (x - c0) * c1 + c2
 *   BN_INPUT_GRAD:  out = ((gr - c2) - (x - c0) * c1) * c3
 *   BN_AFFINE:      out = gr * c0 + (x - c2) * c1 + c3
 *   BN_SCALE:       out = gr * c0
 * over the N rows of C * S values; x, gr and out contiguous. With add, out += the value instead
 * (a rule adding into the gradient gathered so far: out + value, as the engine's addition). */
typedef enum { BN_FORWARD, BN_INPUT_GRAD, BN_AFFINE, BN_SCALE } bn_map_kind;
typedef struct bn_map_job {
    const bn_geom *g;
    bool f32;
    const void *x, *gr;
    void *out;
    const void *k;   /* 4 C coefficients: c0 | c1 | c2 | c3 */
    bn_map_kind kind;
    bool add;
} bn_map_job;

#define BN_SET(o, v) ((o) = (v))
#define BN_ADD(o, v) ((o) = (o) + (v))
/* one channel's run of S values: oc[s] ST= EXPR(s) */
#define BN_RUN(ST, EXPR)                                                                           \
    do {                                                                                           \
        for (int64_t s = 0; s < S; s++) ST(oc[s], EXPR);                                           \
    } while (0)
/* a row of C values with S = 1: o[c] ST= EXPR(c) */
#define BN_ROW(ST, EXPR)                                                                           \
    do {                                                                                           \
        for (int64_t c = 0; c < C; c++) ST(o[c], EXPR);                                            \
    } while (0)
#define BN_MAP(T, ST)                                                                              \
    do {                                                                                           \
        int64_t C = g->C, S = g->S;                                                                \
        const T *c0 = (const T *)j->k, *c1 = c0 + C, *c2 = c1 + C, *c3 = c2 + C;                   \
        for (int64_t n = begin; n < end; n++) {                                                    \
            const T *restrict p = (const T *)j->x + n * C * S;                                     \
            const T *restrict q = (const T *)j->gr + n * C * S;                                    \
            T *restrict o = (T *)j->out + n * C * S;                                               \
            if (S == 1) { /* [N, C]: one vector loop over the channels */                         \
                switch (j->kind) {                                                                 \
                case BN_FORWARD: BN_ROW(ST, (p[c] - c0[c]) * c1[c] + c2[c]); break;                \
                case BN_INPUT_GRAD:                                                                \
                    BN_ROW(ST, ((q[c] - c2[c]) - (p[c] - c0[c]) * c1[c]) * c3[c]);                 \
                    break;                                                                         \
                case BN_AFFINE: BN_ROW(ST, (q[c] * c0[c] + (p[c] - c2[c]) * c1[c]) + c3[c]); break;\
                case BN_SCALE: BN_ROW(ST, q[c] * c0[c]); break;                                    \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            for (int64_t c = 0; c < C; c++) {                                                      \
                const T k0 = c0[c], k1 = c1[c], k2 = c2[c], k3 = c3[c];                            \
                const T *restrict pc = p + c * S, *restrict qc = q + c * S;                        \
                T *restrict oc = o + c * S;                                                        \
                switch (j->kind) {                                                                 \
                case BN_FORWARD: BN_RUN(ST, (pc[s] - k0) * k1 + k2); break;                        \
                case BN_INPUT_GRAD: BN_RUN(ST, ((qc[s] - k2) - (pc[s] - k0) * k1) * k3); break;    \
                case BN_AFFINE: BN_RUN(ST, (qc[s] * k0 + (pc[s] - k2) * k1) + k3); break;          \
                case BN_SCALE: BN_RUN(ST, qc[s] * k0); break;                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void bn_map_rows(void *vj, int64_t begin, int64_t end)
{
    const bn_map_job *j = vj;
    const bn_geom *g = j->g;
    if (j->f32 && j->add) BN_MAP(float, BN_ADD);
    else if (j->f32) BN_MAP(float, BN_SET);
    else if (j->add) BN_MAP(double, BN_ADD);
    else BN_MAP(double, BN_SET);
}

/* The map with coefficients k (4 C values of x's dtype): into a new tensor of x's shape, or with
 * acc (contiguous, x's shape and dtype: the caller checked) added into acc, returning acc (a new
 * reference). gr may be NULL for BN_FORWARD; x may be NULL for BN_SCALE. */
static ls_tensor *bn_map_run(const bn_geom *g, const ls_tensor *x, const ls_tensor *gr,
                             const void *k, bn_map_kind kind, ls_tensor *acc)
{
    const ls_tensor *like = x ? x : gr;
    ls_tensor *out = acc ? ls_tensor_retain(acc) : ls_tensor_new(like->dtype, like->ndim, like->shape);
    if (!out) return NULL;
    bn_map_job j = {g, like->dtype == LS_F32, x ? ls_tensor_data(x) : NULL,
                    gr ? ls_tensor_data(gr) : NULL, ls_tensor_data(out), k, kind, acc != NULL};
    ls_parallel_for(g->N, bn_grain(g->C * g->S), bn_map_rows, &j);
    return out;
}

/* ---- the kernels of the four ops ---- */

/* y = batchnorm(x, w, b); with mean/var non-NULL, also the batch statistics ([C], x's dtype). */
ls_tensor *bn_forward(ls_tensor *x, ls_tensor *w, ls_tensor *b, double eps, ls_tensor **mean,
                      ls_tensor **var)
{
    const char *who = "batchnorm";
    ls_tensor *in[3] = {x, w, b};
    bn_geom g;
    if (ls_check_float_same(who, 3, in) || bn_geom_x(who, x, &g) ||
        bn_check_vec(who, "weight", w, &g) || bn_check_vec(who, "bias", b, &g) ||
        bn_check_eps(who, eps))
        return NULL;
    bool f32 = x->dtype == LS_F32;
    ls_tensor *xc = ls_tensor_contiguous(x), *wc = ls_tensor_contiguous(w);
    ls_tensor *bc = ls_tensor_contiguous(b), *y = NULL, *mt = NULL, *vt = NULL;
    size_t es = ls_dtype_size(x->dtype);
    void *k = ls_malloc(es * 4 * (size_t)g.C, who);
    bn_sums s = {0};
    if (mean) mt = ls_tensor_new(x->dtype, 1, &g.C);
    if (var) vt = ls_tensor_new(x->dtype, 1, &g.C);
    if (!xc || !wc || !bc || !k || (mean && !mt) || (var && !vt) || bn_sums_run(&g, xc, NULL, &s))
        goto done;
    /* the coefficients in T, as the composed formula: scale = w / sqrt(var + eps) */
    for (int64_t c = 0; c < g.C; c++) {
        double md, vd;
        bn_moments(&s, &g, c, &md, &vd);
        if (f32) {
            float *kf = k, m = (float)md, v = (float)vd;
            kf[c] = m;
            kf[g.C + c] = ((const float *)ls_tensor_data(wc))[c] / sqrtf(v + (float)eps);
            kf[2 * g.C + c] = ((const float *)ls_tensor_data(bc))[c];
            if (mt) ((float *)ls_tensor_data(mt))[c] = m;
            if (vt) ((float *)ls_tensor_data(vt))[c] = v;
        } else {
            double *kd = k;
            kd[c] = md;
            kd[g.C + c] = ((const double *)ls_tensor_data(wc))[c] / sqrt(vd + eps);
            kd[2 * g.C + c] = ((const double *)ls_tensor_data(bc))[c];
            if (mt) ((double *)ls_tensor_data(mt))[c] = md;
            if (vt) ((double *)ls_tensor_data(vt))[c] = vd;
        }
    }
    y = bn_map_run(&g, xc, NULL, k, BN_FORWARD, NULL);
done:
    ls_free(s.k);
    ls_free(k);
    ls_tensor_release(xc);
    ls_tensor_release(wc);
    ls_tensor_release(bc);
    if (!y) {
        ls_tensor_release(mt);
        ls_tensor_release(vt);
        mt = vt = NULL;
    }
    if (mean) *mean = mt;
    if (var) *var = vt;
    return y;
}

ls_tensor *bn_grad_stats(ls_tensor *gr, ls_tensor *x, double eps)
{
    const char *who = "batchnorm_grad_stats";
    ls_tensor *in[2] = {gr, x};
    bn_geom g;
    if (ls_check_float_same(who, 2, in) || bn_geom_x(who, x, &g) ||
        bn_check_same_shape(who, "gradient", gr, x) || bn_check_eps(who, eps))
        return NULL;
    ls_tensor *xc = ls_tensor_contiguous(x), *gc = ls_tensor_contiguous(gr);
    ls_tensor *out = xc && gc ? ls_tensor_new(x->dtype, 2, (int64_t[]){4, g.C}) : NULL;
    bn_sums s = {0};
    if (out && bn_sums_run(&g, xc, gc, &s) == LS_OK) {
        for (int64_t c = 0; c < g.C; c++) {
            double md, vd, r, n = (double)g.n;
            bn_moments(&s, &g, c, &md, &vd);
            r = 1.0 / sqrt(vd + eps);
            double row[4] = {s.sg[c], r * (s.sgd[c] - s.s1[c] / n * s.sg[c]), md, r};
            for (int i = 0; i < 4; i++) {
                if (x->dtype == LS_F32) ((float *)ls_tensor_data(out))[i * g.C + c] = (float)row[i];
                else ((double *)ls_tensor_data(out))[i * g.C + c] = row[i];
            }
        }
    } else {
        ls_tensor_release(out);
        out = NULL;
    }
    ls_free(s.k);
    ls_tensor_release(xc);
    ls_tensor_release(gc);
    return out;
}

ls_tensor *bn_input_grad(ls_tensor *gr, ls_tensor *x, ls_tensor *w, ls_tensor *st, ls_tensor *acc)
{
    const char *who = "batchnorm_input_grad";
    ls_tensor *in[4] = {gr, x, w, st};
    bn_geom g;
    if (ls_check_float_same(who, 4, in) || bn_geom_x(who, x, &g) ||
        bn_check_same_shape(who, "gradient", gr, x) || bn_check_vec(who, "weight", w, &g))
        return NULL;
    if (st->ndim != 2 || st->shape[0] != 4 || st->shape[1] != g.C) {
        ls_error_set(LS_ERR_ARG, "%s: stats %s should be [4x%lld]", who, ls_tensor_shape_str(st),
                     (long long)g.C);
        return NULL;
    }
    bool f32 = x->dtype == LS_F32;
    ls_tensor *xc = ls_tensor_contiguous(x), *gc = ls_tensor_contiguous(gr);
    ls_tensor *wc = ls_tensor_contiguous(w), *sc = ls_tensor_contiguous(st), *out = NULL;
    void *k = ls_malloc(ls_dtype_size(x->dtype) * 4 * (size_t)g.C, who);
    if (xc && gc && wc && sc && k) {
        /* coefficients: c0 = mu, c1 = r B / n, c2 = A / n, c3 = w r (formed in double) */
        double n = (double)g.n;
        for (int64_t c = 0; c < g.C; c++) {
            double A, B, mu, r, wv;
            if (f32) {
                const float *sp = ls_tensor_data(sc);
                A = sp[c], B = sp[g.C + c], mu = sp[2 * g.C + c], r = sp[3 * g.C + c];
                wv = ((const float *)ls_tensor_data(wc))[c];
            } else {
                const double *sp = ls_tensor_data(sc);
                A = sp[c], B = sp[g.C + c], mu = sp[2 * g.C + c], r = sp[3 * g.C + c];
                wv = ((const double *)ls_tensor_data(wc))[c];
            }
            double co[4] = {mu, r * B / n, A / n, wv * r};
            for (int i = 0; i < 4; i++) {
                if (f32) ((float *)k)[i * g.C + c] = (float)co[i];
                else ((double *)k)[i * g.C + c] = co[i];
            }
        }
        out = bn_map_run(&g, xc, gc, k, BN_INPUT_GRAD, acc);
    }
    ls_free(k);
    ls_tensor_release(xc);
    ls_tensor_release(gc);
    ls_tensor_release(wc);
    ls_tensor_release(sc);
    return out;
}

ls_tensor *bn_affine(ls_tensor *gr, ls_tensor *x, ls_tensor *K, ls_tensor *acc)
{
    const char *who = "batchnorm_affine";
    ls_tensor *in[3] = {gr, x, K};
    bn_geom g;
    if (ls_check_float_same(who, 3, in) || bn_geom_x(who, x, &g) ||
        bn_check_same_shape(who, "gradient", gr, x))
        return NULL;
    if (K->ndim != 2 || K->shape[0] != 4 || K->shape[1] != g.C) {
        ls_error_set(LS_ERR_ARG, "%s: coefficients %s should be [4x%lld]", who,
                     ls_tensor_shape_str(K), (long long)g.C);
        return NULL;
    }
    ls_tensor *xc = ls_tensor_contiguous(x), *gc = ls_tensor_contiguous(gr);
    ls_tensor *kc = ls_tensor_contiguous(K), *out = NULL;
    if (xc && gc && kc) out = bn_map_run(&g, xc, gc, ls_tensor_data(kc), BN_AFFINE, acc);
    ls_tensor_release(xc);
    ls_tensor_release(gc);
    ls_tensor_release(kc);
    return out;
}

ls_tensor *bn_scale(ls_tensor *gr, ls_tensor *k, ls_tensor *acc)
{
    const char *who = "batchnorm_scale";
    ls_tensor *in[2] = {gr, k};
    bn_geom g;
    if (ls_check_float_same(who, 2, in) || bn_geom_x(who, gr, &g) ||
        bn_check_vec(who, "scale", k, &g))
        return NULL;
    size_t es = ls_dtype_size(gr->dtype);
    ls_tensor *gc = ls_tensor_contiguous(gr), *kc = ls_tensor_contiguous(k), *out = NULL;
    char *co = ls_calloc(es * 4 * (size_t)g.C, who);   /* c0 = k; c1..c3 unused */
    if (gc && kc && co) {
        memcpy(co, ls_tensor_data(kc), es * (size_t)g.C);
        out = bn_map_run(&g, NULL, gc, co, BN_SCALE, acc);
    }
    ls_free(co);
    ls_tensor_release(gc);
    ls_tensor_release(kc);
    return out;
}
