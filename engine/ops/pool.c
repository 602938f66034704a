/* Pooling: maxpool2d and avgpool2d over k x k windows with stride s (default k), no padding, NCHW:
 * x [N,C,H,W] -> [N,C,Ho,Wo], Ho = (H - k) / s + 1, Wo = (W - k) / s + 1 (trailing rows and columns
 * that fill no window are dropped), as torch.nn.functional.max_pool2d / avg_pool2d with padding 0,
 * dilation 1 and ceil_mode False.
 *
 * maxpool2d takes the first maximum of each window in row-major order (ties: the earliest element,
 * like PyTorch), and a NaN wins over numbers (PyTorch's rule: a NaN replaces the running maximum,
 * so with several NaNs the last one is picked). Its gradient routes g to those positions; rather
 * than keep the argmax (the rules may not hold on to outputs), two registered ops recompute it
 * from x:
 *   maxpool2d_scatter(x, g [pooled]) -> [x's shape]: g added at each window's argmax (overlapping
 *       windows, s < k, may add several values into one element);
 *   maxpool2d_pick(x, gg [x's shape]) -> [pooled]: gg read at each window's argmax.
 * They are adjoint to each other in their second argument, so
 *   maxpool2d:  dx = scatter(x, U);   scatter: dg = pick(x, U);   pick: dgg = scatter(x, U),
 * and x gets a zero gradient through scatter and pick (the argmax is piecewise constant in x).
 *
 * avgpool2d is linear: its adjoint avgpool2d_backward(g) (ints {k, s, H, W}) spreads g / (k k) over
 * each window, and the adjoint of that is avgpool2d again.
 *
 * Kernels run on the thread pool over (image, channel) planes; each item owns one output plane
 * (scatter and avgpool2d_backward zero and fill a whole input plane in a fixed order), so results
 * are bitwise independent of the thread count. */
#include <stdbool.h>
#include <string.h>

#include "core/parallel.h"
#include "ops/nn_ops.h"
#include "ops/ops.h"

#include "core/vectorize.h"   /* GCC: vectorise the short loops */

#define POOL_GRAIN 16384   /* elements per parallel chunk, roughly */
#define POOL_MAX_KERNEL 46340

typedef struct pool_geom {
    int64_t N, C, H, W, k, s, Ho, Wo;
} pool_geom;

/* ---- argument checks ---- */

/* Kernel ints[0] (required) and stride ints[1] (default: the kernel). */
static ls_status pool_params(const char *who, const ls_attrs *a, pool_geom *g)
{
    if (a->nints < 1) return ls_error_set(LS_ERR_ARG, "%s: missing the kernel size", who);
    g->k = a->ints[0];
    g->s = a->nints >= 2 ? a->ints[1] : g->k;
    if (g->k < 1 || g->k > POOL_MAX_KERNEL)   /* window positions i*k + j are kept in 32 bits */
        return ls_error_set(LS_ERR_ARG, "%s: kernel size must be in [1, %d], got %lld", who,
                            POOL_MAX_KERNEL, (long long)g->k);
    if (g->s < 1) return ls_error_set(LS_ERR_ARG, "%s: stride must be >= 1, got %lld", who,
                                      (long long)g->s);
    return LS_OK;
}

/* From the input size (N, C, H, W set): the output size; fails when the kernel does not fit. */
static ls_status pool_finish(const char *who, pool_geom *g, const char *xs)
{
    if (g->k > g->H || g->k > g->W)
        return ls_error_set(LS_ERR_ARG, "%s: kernel %lldx%lld is larger than the input %lldx%lld "
                            "(input %s)", who, (long long)g->k, (long long)g->k, (long long)g->H,
                            (long long)g->W, xs);
    g->Ho = (g->H - g->k) / g->s + 1;
    g->Wo = (g->W - g->k) / g->s + 1;
    return LS_OK;
}

/* x must be a 4-D float tensor; fills g from it and the attrs. */
static ls_status pool_geom_x(const char *who, const ls_tensor *x, const ls_attrs *a, pool_geom *g)
{
    if (!ls_dtype_is_float(x->dtype))
        return ls_error_set(LS_ERR_ARG, "%s: expected a float tensor (f32 or f64), got %s", who,
                            ls_dtype_name(x->dtype));
    if (x->ndim != 4)
        return ls_error_set(LS_ERR_ARG, "%s: expected a 4-D input [N x C x H x W], got %s", who,
                            ls_tensor_shape_str(x));
    if (pool_params(who, a, g)) return ls_error_code();
    g->N = x->shape[0], g->C = x->shape[1], g->H = x->shape[2], g->W = x->shape[3];
    return pool_finish(who, g, ls_tensor_shape_str(x));
}

/* t must have shape [N, C, h, w]. */
static ls_status pool_check_shape(const char *who, const char *what, const ls_tensor *t,
                                  const pool_geom *g, int64_t h, int64_t w)
{
    int64_t want[4] = {g->N, g->C, h, w};
    if (t->ndim != 4 || memcmp(t->shape, want, sizeof want) != 0) {
        char b[LS_SHAPE_STR_MAX];
        return ls_error_set(LS_ERR_ARG, "%s: %s %s should be %s", who, what, ls_tensor_shape_str(t),
                            ls_shape_str(4, want, b, sizeof b));
    }
    return LS_OK;
}

/* ---- kernels ---- */

enum { POOL_MAX, POOL_SCATTER, POOL_PICK, POOL_AVG, POOL_AVG_BACK };

/* One job over the N*C planes (item t = plane t). x: the tensor whose windows are read (NULL for
 * avgpool2d_backward); src: the second operand (g or gg); dst: the output. All contiguous. */
typedef struct pool_job {
    const pool_geom *g;
    int kind;
    ls_dtype dt;
    const void *x, *src;
    void *dst;
} pool_job;

/* The max family, any k and s. For a block of up to POOL_BLOCK adjacent windows of one output row,
 * m[] and q[] hold each window's running maximum and its position i*k + j in the window; the window
 * elements are visited in row-major order (i, j) with the update run across the block, so the inner
 * loop is a branch-free select the compiler vectorises. The update takes v when v > m or v is NaN:
 * the first maximum wins ties, and a NaN replaces the running maximum (PyTorch's rule). Then MAX
 * writes m, PICK reads src at the argmax, SCATTER adds g there (in row-major window order, into a
 * plane zeroed first: overlapping windows may hit one element several times). QT is an integer type
 * as wide as T. */
#define POOL_BLOCK 64
#define POOL_MAX_PLANE(T, QT)                                                                      \
    do {                                                                                           \
        int64_t W = g->W, Wo = g->Wo, k = g->k, s = g->s, HW = g->H * W, PO = g->Ho * Wo;          \
        const T *xp = (const T *)j->x + t * HW;                                                    \
        if (j->kind == POOL_SCATTER) memset((T *)j->dst + t * HW, 0, sizeof(T) * (size_t)HW);      \
        for (int64_t a = 0; a < g->Ho; a++)                                                        \
            for (int64_t b0 = 0; b0 < Wo; b0 += POOL_BLOCK) {                                      \
                int64_t nb = Wo - b0 < POOL_BLOCK ? Wo - b0 : POOL_BLOCK;                          \
                const T *w0 = xp + a * s * W + b0 * s;                                             \
                T m[POOL_BLOCK];                                                                   \
                QT q[POOL_BLOCK];                                                                  \
                for (int64_t b = 0; b < nb; b++) m[b] = w0[b * s], q[b] = 0;                       \
                for (int64_t i = 0; i < k; i++)                                                    \
                    for (int64_t jj = 0; jj < k; jj++) {                                           \
                        const T *r = w0 + i * W + jj;                                              \
                        QT here = (QT)(i * k + jj);                                                \
                        for (int64_t b = 0; b < nb; b++) {                                         \
                            T v = r[b * s];                                                        \
                            bool tk = (v > m[b]) | (v != v);                                       \
                            m[b] = tk ? v : m[b];                                                  \
                            q[b] = tk ? here : q[b];                                               \
                        }                                                                          \
                    }                                                                              \
                if (j->kind == POOL_MAX) {                                                         \
                    T *o = (T *)j->dst + t * PO + a * Wo + b0;                                     \
                    for (int64_t b = 0; b < nb; b++) o[b] = m[b];                                  \
                } else if (j->kind == POOL_PICK) {                                                 \
                    const T *sp = (const T *)j->src + t * HW + a * s * W + b0 * s;                 \
                    T *o = (T *)j->dst + t * PO + a * Wo + b0;                                     \
                    for (int64_t b = 0; b < nb; b++)                                               \
                        o[b] = sp[(int64_t)q[b] / k * W + (int64_t)q[b] % k + b * s];              \
                } else {                                                                           \
                    const T *gp = (const T *)j->src + t * PO + a * Wo + b0;                        \
                    T *d = (T *)j->dst + t * HW + a * s * W + b0 * s;                              \
                    for (int64_t b = 0; b < nb; b++)                                               \
                        d[(int64_t)q[b] / k * W + (int64_t)q[b] % k + b * s] += gp[b];             \
                }                                                                                  \
            }                                                                                      \
    } while (0)

/* k = s = 2, the CNN case: the same results with the window unrolled, and every loop a chain of
 * same-width selects on values loaded unconditionally, which GCC vectorises (a branchy argmax on
 * random data mispredicts every other window: 20x slower). The position q (0..3) is kept in T;
 * PICK carries the candidate value along with the maximum instead (selecting on q afterwards
 * becomes a table lookup). SCATTER writes each element of the covered part of the plane (g or 0),
 * so only an uncovered last row or column (odd H or W) needs zeroing. */
#define POOL2_ARGMAX(T)                                                                            \
    T m = r0[2 * b], q = 0, v = r0[2 * b + 1];                                                     \
    bool tk = (v > m) | (v != v);                                                                  \
    m = tk ? v : m, q = tk ? (T)1 : q;                                                             \
    v = r1[2 * b];                                                                                 \
    tk = (v > m) | (v != v);                                                                       \
    m = tk ? v : m, q = tk ? (T)2 : q;                                                             \
    v = r1[2 * b + 1];                                                                             \
    tk = (v > m) | (v != v);                                                                       \
    m = tk ? v : m, q = tk ? (T)3 : q

#define POOL2_PLANE(T)                                                                             \
    do {                                                                                           \
        int64_t W = g->W, Wo = g->Wo, HW = g->H * W, PO = g->Ho * Wo;                              \
        const T *xp = (const T *)j->x + t * HW;                                                    \
        for (int64_t a = 0; a < g->Ho; a++) {                                                      \
            const T *r0 = xp + 2 * a * W, *r1 = r0 + W;                                            \
            if (j->kind == POOL_MAX) {                                                             \
                T *o = (T *)j->dst + t * PO + a * Wo;                                              \
                for (int64_t b = 0; b < Wo; b++) {                                                 \
                    POOL2_ARGMAX(T);                                                               \
                    (void)q;                                                                       \
                    o[b] = m;                                                                      \
                }                                                                                  \
            } else if (j->kind == POOL_PICK) {                                                     \
                const T *s0 = (const T *)j->src + t * HW + 2 * a * W, *s1 = s0 + W;               \
                T *o = (T *)j->dst + t * PO + a * Wo;                                              \
                for (int64_t b = 0; b < Wo; b++) { /* carry the candidate along with m */      \
                    T c = s0[2 * b], c1 = s0[2 * b + 1], c2 = s1[2 * b], c3 = s1[2 * b + 1];       \
                    T m = r0[2 * b], v = r0[2 * b + 1];                                            \
                    bool tk = (v > m) | (v != v);                                                  \
                    m = tk ? v : m, c = tk ? c1 : c;                                               \
                    v = r1[2 * b];                                                                 \
                    tk = (v > m) | (v != v);                                                       \
                    m = tk ? v : m, c = tk ? c2 : c;                                               \
                    v = r1[2 * b + 1];                                                             \
                    tk = (v > m) | (v != v);                                                       \
                    o[b] = tk ? c3 : c;                                                            \
                }                                                                                  \
            } else { /* POOL_SCATTER */                                                            \
                const T *gr = (const T *)j->src + t * PO + a * Wo;                                 \
                T *d0 = (T *)j->dst + t * HW + 2 * a * W, *d1 = d0 + W;                            \
                for (int64_t b = 0; b < Wo; b++) {                                                 \
                    POOL2_ARGMAX(T);                                                               \
                    (void)m;                                                                       \
                    T gv = gr[b];                                                                  \
                    d0[2 * b] = q == 0 ? gv : (T)0;                                                \
                    d0[2 * b + 1] = q == 1 ? gv : (T)0;                                            \
                    d1[2 * b] = q == 2 ? gv : (T)0;                                                \
                    d1[2 * b + 1] = q == 3 ? gv : (T)0;                                            \
                }                                                                                  \
                if (W > 2 * Wo) d0[W - 1] = d1[W - 1] = 0;                                         \
            }                                                                                      \
        }                                                                                          \
        if (j->kind == POOL_SCATTER && g->H > 2 * g->Ho)                                           \
            memset((T *)j->dst + t * HW + 2 * g->Ho * W, 0, sizeof(T) * (size_t)W);                \
    } while (0)

/* avgpool2d (sum in row-major window order, divided by k*k, as PyTorch) and its adjoint (g / (k*k)
 * added over each window, windows in row-major order, into a zeroed plane). */
#define POOL_AVG_PLANE(T)                                                                          \
    do {                                                                                           \
        int64_t W = g->W, Wo = g->Wo, k = g->k, s = g->s, HW = g->H * W, PO = g->Ho * Wo;          \
        if (j->kind == POOL_AVG) {                                                                 \
            const T *xp = (const T *)j->x + t * HW;                                                \
            T *o = (T *)j->dst + t * PO;                                                           \
            for (int64_t a = 0; a < g->Ho; a++)                                                    \
                for (int64_t b = 0; b < Wo; b++) {                                                 \
                    const T *w = xp + a * s * W + b * s;                                           \
                    T sum = 0;                                                                     \
                    for (int64_t i = 0; i < k; i++)                                                \
                        for (int64_t jj = 0; jj < k; jj++) sum += w[i * W + jj];                   \
                    o[a * Wo + b] = sum / (T)(k * k);                                              \
                }                                                                                  \
        } else {                                                                                   \
            const T *sp = (const T *)j->src + t * PO;                                              \
            T *dp = (T *)j->dst + t * HW, inv = (T)1 / (T)(k * k);                                 \
            memset(dp, 0, sizeof(T) * (size_t)HW);                                                 \
            for (int64_t a = 0; a < g->Ho; a++)                                                    \
                for (int64_t b = 0; b < Wo; b++) {                                                 \
                    T *w = dp + a * s * W + b * s, v = sp[a * Wo + b] * inv;                       \
                    for (int64_t i = 0; i < k; i++)                                                \
                        for (int64_t jj = 0; jj < k; jj++) w[i * W + jj] += v;                     \
                }                                                                                  \
        }                                                                                          \
    } while (0)

#if defined(__x86_64__) && defined(__GNUC__)
#define POOL_AVX512 1
#include <immintrin.h>
/* k = s = 2 on AVX-512: the same selects on whole vectors. A block of LANES windows of one output
 * row reads 2 LANES elements of each of its two input rows (two masked loads each), split into the
 * even and odd columns by permutes; the four candidates are taken in window order (row 0 even,
 * row 0 odd, row 1 even, row 1 odd) with the scalar rule (v > m, or v is NaN), k1..k3 recording
 * where a later candidate won. MAX stores m; PICK carries src's candidates along with the same
 * masks; SCATTER puts g where each window's winner is (the last k that fired, else the first
 * candidate) and 0 elsewhere, interleaved back into the two rows. Identical results to
 * POOL2_PLANE. The loads are masked only near the end of the tensor (else the lanes past the row
 * read the next row, unused): on this VM's Zen 5 a masked load streaming from memory took 2.6x the
 * time of a plain one (the prefetcher seems not to follow them), which made the first version of
 * this kernel 2.3x slower than the scalar one. SCATTER likewise stores full vectors unmasked (a row
 * of 28 floats: one plain store and one masked). */
#define POOL2_V(T, VEC, LANES, MASKT, LOADZ, LOADU, STOREM, STOREU, PERM2, CMPM, BLEND, MOVZ, EVEN, ODD,   \
                LO, HI)                                                                            \
    do {                                                                                           \
        int64_t W = g->W, Wo = g->Wo, HW = g->H * W, PO = g->Ho * Wo;                              \
        const T *xp = (const T *)j->x + t * HW, *xend = (const T *)j->x + g->N * g->C * HW;         \
        const T *gend = (const T *)j->src + g->N * g->C * PO;                                      \
        for (int64_t a = 0; a < g->Ho; a++) {                                                      \
            const T *r0 = xp + 2 * a * W, *r1 = r0 + W;                                            \
            for (int64_t b0 = 0; b0 < Wo; b0 += LANES) {                                           \
                int nb = (int)(Wo - b0 < LANES ? Wo - b0 : LANES);                                 \
                int n2 = 2 * nb;                                                                   \
                MASKT mo = (MASKT)(nb == LANES ? ~0u : (1u << nb) - 1);                            \
                MASKT ml = (MASKT)(n2 >= LANES ? ~0u : (1u << n2) - 1);                            \
                MASKT mh = (MASKT)(n2 - LANES >= LANES ? ~0u : n2 <= LANES ? 0u                    \
                                                                  : (1u << (n2 - LANES)) - 1);     \
                bool tail = r1 + 2 * b0 + 2 * LANES > xend;                                        \
                VEC a0, a1, c0, c1;                                                                \
                if (tail) {                                                                        \
                    a0 = LOADZ(ml, r0 + 2 * b0), a1 = LOADZ(mh, r0 + 2 * b0 + LANES);              \
                    c0 = LOADZ(ml, r1 + 2 * b0), c1 = LOADZ(mh, r1 + 2 * b0 + LANES);              \
                } else {                                                                           \
                    a0 = LOADU(r0 + 2 * b0), a1 = LOADU(r0 + 2 * b0 + LANES);                      \
                    c0 = LOADU(r1 + 2 * b0), c1 = LOADU(r1 + 2 * b0 + LANES);                      \
                }                                                                                  \
                VEC v0 = PERM2(a0, EVEN, a1), v1 = PERM2(a0, ODD, a1);                             \
                VEC v2 = PERM2(c0, EVEN, c1), v3 = PERM2(c0, ODD, c1);                             \
                VEC m = v0;                                                                        \
                MASKT k1 = CMPM(v1, m, _CMP_GT_OQ) | CMPM(v1, v1, _CMP_UNORD_Q);                   \
                m = BLEND(k1, m, v1);                                                              \
                MASKT k2 = CMPM(v2, m, _CMP_GT_OQ) | CMPM(v2, v2, _CMP_UNORD_Q);                   \
                m = BLEND(k2, m, v2);                                                              \
                MASKT k3 = CMPM(v3, m, _CMP_GT_OQ) | CMPM(v3, v3, _CMP_UNORD_Q);                   \
                if (j->kind == POOL_MAX) {                                                         \
                    m = BLEND(k3, m, v3);                                                          \
                    STOREM((T *)j->dst + t * PO + a * Wo + b0, mo, m);                             \
                } else if (j->kind == POOL_PICK) {                                                 \
                    const T *s0 = (const T *)j->src + t * HW + 2 * a * W + 2 * b0, *s1 = s0 + W;   \
                    VEC e0, e1, f0, f1; /* src has x's shape: the same offsets */                  \
                    if (tail) {                                                                    \
                        e0 = LOADZ(ml, s0), e1 = LOADZ(mh, s0 + LANES);                            \
                        f0 = LOADZ(ml, s1), f1 = LOADZ(mh, s1 + LANES);                            \
                    } else {                                                                       \
                        e0 = LOADU(s0), e1 = LOADU(s0 + LANES);                                    \
                        f0 = LOADU(s1), f1 = LOADU(s1 + LANES);                                    \
                    }                                                                              \
                    VEC c = PERM2(e0, EVEN, e1);                                                   \
                    c = BLEND(k1, c, PERM2(e0, ODD, e1));                                          \
                    c = BLEND(k2, c, PERM2(f0, EVEN, f1));                                         \
                    c = BLEND(k3, c, PERM2(f0, ODD, f1));                                          \
                    STOREM((T *)j->dst + t * PO + a * Wo + b0, mo, c);                             \
                } else { /* POOL_SCATTER: the winner is the last candidate whose k fired */       \
                    const T *gp = (const T *)j->src + t * PO + a * Wo + b0;                        \
                    VEC gv = gp + LANES > gend ? LOADZ(mo, gp) : LOADU(gp);                        \
                    MASKT w3 = k3, w2 = k2 & ~k3, w1 = k1 & ~(k2 | k3), w0 = ~(k1 | k2 | k3);      \
                    VEC d0 = MOVZ(w0, gv), d1 = MOVZ(w1, gv), d2 = MOVZ(w2, gv), d3 = MOVZ(w3, gv);\
                    T *o0 = (T *)j->dst + t * HW + 2 * a * W + 2 * b0, *o1 = o0 + W;               \
                    VEC e0 = PERM2(d0, LO, d1), e1 = PERM2(d0, HI, d1);                            \
                    VEC f0 = PERM2(d2, LO, d3), f1 = PERM2(d2, HI, d3);                            \
                    if (n2 >= LANES) STOREU(o0, e0), STOREU(o1, f0);                               \
                    else STOREM(o0, ml, e0), STOREM(o1, ml, f0);                                   \
                    if (n2 == 2 * LANES) STOREU(o0 + LANES, e1), STOREU(o1 + LANES, f1);           \
                    else STOREM(o0 + LANES, mh, e1), STOREM(o1 + LANES, mh, f1);                   \
                }                                                                                  \
            }                                                                                      \
            if (j->kind == POOL_SCATTER && W > 2 * Wo) {                                           \
                T *o0 = (T *)j->dst + t * HW + 2 * a * W;                                          \
                o0[W - 1] = o0[2 * W - 1] = 0;                                                     \
            }                                                                                      \
        }                                                                                          \
        if (j->kind == POOL_SCATTER && g->H > 2 * g->Ho)                                           \
            memset((T *)j->dst + t * HW + 2 * g->Ho * W, 0, sizeof(T) * (size_t)W);                \
    } while (0)

__attribute__((target("avx512f"))) static void pool2_plane_avx512(const pool_job *j, int64_t t)
{
    const pool_geom *g = j->g;
    if (j->dt == LS_F32) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                               28, 30);
        const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7,
                                             23);
        const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
        POOL2_V(float, __m512, 16, __mmask16, _mm512_maskz_loadu_ps, _mm512_loadu_ps,
                _mm512_mask_storeu_ps, _mm512_storeu_ps, _mm512_permutex2var_ps, _mm512_cmp_ps_mask,
                _mm512_mask_blend_ps, _mm512_maskz_mov_ps, even, odd, lo, hi);
    } else {
        const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        const __m512i odd = _mm512_add_epi64(even, _mm512_set1_epi64(1));
        const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
        const __m512i hi = _mm512_add_epi64(lo, _mm512_set1_epi64(4));
        POOL2_V(double, __m512d, 8, __mmask8, _mm512_maskz_loadu_pd, _mm512_loadu_pd,
                _mm512_mask_storeu_pd, _mm512_storeu_pd, _mm512_permutex2var_pd, _mm512_cmp_pd_mask,
                _mm512_mask_blend_pd, _mm512_maskz_mov_pd, even, odd, lo, hi);
    }
}
#else
#define POOL_AVX512 0
#endif

static void pool_planes(void *vj, int64_t begin, int64_t end)
{
    const pool_job *j = vj;
    const pool_geom *g = j->g;
    bool avg = j->kind == POOL_AVG || j->kind == POOL_AVG_BACK;
    bool two = !avg && g->k == 2 && g->s == 2;
    bool f32 = j->dt == LS_F32;
#if POOL_AVX512
    if (two && __builtin_cpu_supports("avx512f")) {
        for (int64_t t = begin; t < end; t++) pool2_plane_avx512(j, t);
        return;
    }
#endif
    for (int64_t t = begin; t < end; t++) {
        if (avg && f32) POOL_AVG_PLANE(float);
        else if (avg) POOL_AVG_PLANE(double);
        else if (two && f32) POOL2_PLANE(float);
        else if (two) POOL2_PLANE(double);
        else if (f32) POOL_MAX_PLANE(float, int32_t);
        else POOL_MAX_PLANE(double, int64_t);
    }
}

/* Run `kind` with contiguous copies of x and src (either may be NULL, not both) into a new tensor
 * of oshape. */
static ls_tensor *pool_apply(const pool_geom *g, int kind, ls_tensor *x, ls_tensor *src,
                             const int64_t *oshape)
{
    ls_dtype dt = x ? x->dtype : src->dtype;
    ls_tensor *xc = x ? ls_tensor_contiguous(x) : NULL;
    ls_tensor *sc = src && (xc || !x) ? ls_tensor_contiguous(src) : NULL;
    ls_tensor *out = (xc || !x) && (sc || !src) ? ls_tensor_new(dt, 4, oshape) : NULL;
    if (out) {
        pool_job j = {g, kind, dt, xc ? ls_tensor_data(xc) : NULL, sc ? ls_tensor_data(sc) : NULL,
                      ls_tensor_data(out)};
        int64_t per = g->H * g->W + g->Ho * g->Wo;
        int64_t grain = per >= POOL_GRAIN ? 1 : POOL_GRAIN / (per > 0 ? per : 1);
        ls_parallel_for(g->N * g->C, grain, pool_planes, &j);
    }
    ls_tensor_release(xc);
    ls_tensor_release(sc);
    return out;
}

static ls_status pool_done(const ls_backward_ctx *c, ls_tensor **gin)
{
    for (int k = 0; k < c->nin; k++)
        if (c->needs[k] && !gin[k]) return ls_error_code() ? ls_error_code() : LS_ERR_ARG;
    return LS_OK;
}

/* k and s of a recorded pooling op */
static void pool_ks(const ls_attrs *a, int64_t *k, int64_t *s)
{
    *k = a->ints[0];
    *s = a->nints >= 2 ? a->ints[1] : *k;
}

/* ---- maxpool2d ---- */

static ls_tensor *maxpool2d_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    pool_geom g;
    if (pool_geom_x("maxpool2d", in[0], a, &g)) return NULL;
    return pool_apply(&g, POOL_MAX, in[0], NULL, (int64_t[]){g.N, g.C, g.Ho, g.Wo});
}

static ls_status maxpool2d_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    int64_t k, s;
    pool_ks(c->attrs, &k, &s);
    gin[0] = ls_maxpool2d_scatter(c->in[0], u, k, s);
    return pool_done(c, gin);
}

static int maxpool2d_samples(ls_op_sample *s)
{
    /* Continuous random inputs have no ties. Non-square with default stride; overlapping windows
     * (one element can be the maximum of several); stride > kernel (elements in no window). */
    s[0] = (ls_op_sample){.ndim = {4}, .shape = {{2, 3, 4, 6}}, .attrs = {.nints = 1, .ints = {2}}};
    s[1] = (ls_op_sample){.ndim = {4}, .shape = {{1, 2, 5, 5}},
                          .attrs = {.nints = 2, .ints = {3, 1}}};
    s[2] = (ls_op_sample){.ndim = {4}, .shape = {{1, 2, 5, 7}},
                          .attrs = {.nints = 2, .ints = {2, 3}}};
    return 3;
}

const ls_op_def ls_op_maxpool2d = {.name = "maxpool2d", .nin = 1, .lua_sig = "T i i?",
                                   .forward = maxpool2d_fwd, .backward = maxpool2d_bwd,
                                   .samples = maxpool2d_samples};

ls_tensor *ls_maxpool2d(ls_tensor *x, int64_t kernel, int64_t stride)
{
    ls_attrs a = {.nints = 2, .ints = {kernel, stride <= 0 ? kernel : stride}};
    return ls_op_apply(LS_OP_MAXPOOL2D, &x, &a);
}

/* ---- maxpool2d_scatter(x, g) and maxpool2d_pick(x, gg), ints {k, s} ---- */

static ls_tensor *maxpool2d_scatter_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    const char *who = "maxpool2d_scatter";
    pool_geom g;
    if (ls_check_float_same(who, 2, in) || pool_geom_x(who, in[0], a, &g) ||
        pool_check_shape(who, "gradient", in[1], &g, g.Ho, g.Wo))
        return NULL;
    return pool_apply(&g, POOL_SCATTER, in[0], in[1], in[0]->shape);
}

static ls_tensor *maxpool2d_pick_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    const char *who = "maxpool2d_pick";
    pool_geom g;
    if (ls_check_float_same(who, 2, in) || pool_geom_x(who, in[0], a, &g) ||
        pool_check_shape(who, "values", in[1], &g, g.H, g.W))
        return NULL;
    return pool_apply(&g, POOL_PICK, in[0], in[1], (int64_t[]){g.N, g.C, g.Ho, g.Wo});
}

/* x: zero (piecewise constant); the second operand: the other op of the pair */
static ls_status maxpool2d_pair_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin,
                                    bool scatter)
{
    ls_tensor *x = c->in[0];
    int64_t k, s;
    pool_ks(c->attrs, &k, &s);
    if (c->needs[0]) gin[0] = LS_GRAD_ZERO;
    if (c->needs[1])
        gin[1] = scatter ? ls_maxpool2d_pick(x, u, k, s) : ls_maxpool2d_scatter(x, u, k, s);
    return pool_done(c, gin);
}
static ls_status maxpool2d_scatter_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    return maxpool2d_pair_bwd(c, u, gin, true);
}
static ls_status maxpool2d_pick_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    return maxpool2d_pair_bwd(c, u, gin, false);
}

static int maxpool2d_scatter_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {4, 4}, .shape = {{2, 3, 4, 6}, {2, 3, 2, 3}},
                          .attrs = {.nints = 2, .ints = {2, 2}}};
    s[1] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 5, 5}, {1, 2, 3, 3}},
                          .attrs = {.nints = 2, .ints = {3, 1}}};
    s[2] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 5, 7}, {1, 2, 2, 2}},
                          .attrs = {.nints = 2, .ints = {2, 3}}};
    return 3;
}
static int maxpool2d_pick_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {4, 4}, .shape = {{2, 3, 4, 6}, {2, 3, 4, 6}},
                          .attrs = {.nints = 2, .ints = {2, 2}}};
    s[1] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 5, 5}, {1, 2, 5, 5}},
                          .attrs = {.nints = 2, .ints = {3, 1}}};
    s[2] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 5, 7}, {1, 2, 5, 7}},
                          .attrs = {.nints = 2, .ints = {2, 3}}};
    return 3;
}

const ls_op_def ls_op_maxpool2d_scatter = {.name = "maxpool2d_scatter", .nin = 2, .lua_sig = NULL,
                                           .forward = maxpool2d_scatter_fwd,
                                           .backward = maxpool2d_scatter_bwd,
                                           .samples = maxpool2d_scatter_samples};
const ls_op_def ls_op_maxpool2d_pick = {.name = "maxpool2d_pick", .nin = 2, .lua_sig = NULL,
                                        .forward = maxpool2d_pick_fwd,
                                        .backward = maxpool2d_pick_bwd,
                                        .samples = maxpool2d_pick_samples};

ls_tensor *ls_maxpool2d_scatter(ls_tensor *x, ls_tensor *g, int64_t kernel, int64_t stride)
{
    ls_attrs a = {.nints = 2, .ints = {kernel, stride <= 0 ? kernel : stride}};
    return ls_op_apply(LS_OP_MAXPOOL2D_SCATTER, (ls_tensor *[]){x, g}, &a);
}

ls_tensor *ls_maxpool2d_pick(ls_tensor *x, ls_tensor *gg, int64_t kernel, int64_t stride)
{
    ls_attrs a = {.nints = 2, .ints = {kernel, stride <= 0 ? kernel : stride}};
    return ls_op_apply(LS_OP_MAXPOOL2D_PICK, (ls_tensor *[]){x, gg}, &a);
}

/* ---- avgpool2d ---- */

static ls_tensor *avgpool2d_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    pool_geom g;
    if (pool_geom_x("avgpool2d", in[0], a, &g)) return NULL;
    return pool_apply(&g, POOL_AVG, in[0], NULL, (int64_t[]){g.N, g.C, g.Ho, g.Wo});
}

static ls_status avgpool2d_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    int64_t k, s;
    pool_ks(c->attrs, &k, &s);
    gin[0] = ls_avgpool2d_backward(u, k, s, x->shape[2], x->shape[3]);
    return pool_done(c, gin);
}

const ls_op_def ls_op_avgpool2d = {.name = "avgpool2d", .nin = 1, .lua_sig = "T i i?",
                                   .forward = avgpool2d_fwd, .backward = avgpool2d_bwd,
                                   .samples = maxpool2d_samples};

ls_tensor *ls_avgpool2d(ls_tensor *x, int64_t kernel, int64_t stride)
{
    ls_attrs a = {.nints = 2, .ints = {kernel, stride <= 0 ? kernel : stride}};
    return ls_op_apply(LS_OP_AVGPOOL2D, &x, &a);
}

/* ---- avgpool2d_backward(g), ints {k, s, H, W} ---- */

static ls_tensor *avgpool2d_backward_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    const char *who = "avgpool2d_backward";
    ls_tensor *gy = in[0];
    pool_geom g;
    if (ls_check_float_same(who, 1, in)) return NULL;
    if (gy->ndim != 4) {
        ls_error_set(LS_ERR_ARG, "%s: expected a 4-D gradient [N x C x Ho x Wo], got %s", who,
                     ls_tensor_shape_str(gy));
        return NULL;
    }
    if (pool_params(who, a, &g)) return NULL;
    if (a->nints < 4 || a->ints[2] < 0 || a->ints[3] < 0) {
        ls_error_set(LS_ERR_ARG, "%s: needs the input height and width (ints {kernel, stride, H, "
                     "W})", who);
        return NULL;
    }
    g.N = gy->shape[0], g.C = gy->shape[1], g.H = a->ints[2], g.W = a->ints[3];
    char xs[LS_SHAPE_STR_MAX];
    ls_shape_str(4, (int64_t[]){g.N, g.C, g.H, g.W}, xs, sizeof xs);
    if (pool_finish(who, &g, xs) || pool_check_shape(who, "gradient", gy, &g, g.Ho, g.Wo))
        return NULL;
    return pool_apply(&g, POOL_AVG_BACK, NULL, gy, (int64_t[]){g.N, g.C, g.H, g.W});
}

static ls_status avgpool2d_backward_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    int64_t k, s;
    pool_ks(c->attrs, &k, &s);
    gin[0] = ls_avgpool2d(u, k, s);
    return pool_done(c, gin);
}

static int avgpool2d_backward_samples(ls_op_sample *s)
{
    /* the adjoints of maxpool2d_samples' shapes: g [N,C,Ho,Wo], ints {k, s, H, W} */
    s[0] = (ls_op_sample){.ndim = {4}, .shape = {{2, 3, 2, 3}},
                          .attrs = {.nints = 4, .ints = {2, 2, 4, 6}}};
    s[1] = (ls_op_sample){.ndim = {4}, .shape = {{1, 2, 3, 3}},
                          .attrs = {.nints = 4, .ints = {3, 1, 5, 5}}};
    s[2] = (ls_op_sample){.ndim = {4}, .shape = {{1, 2, 2, 2}},
                          .attrs = {.nints = 4, .ints = {2, 3, 5, 7}}};
    return 3;
}

const ls_op_def ls_op_avgpool2d_backward = {.name = "avgpool2d_backward", .nin = 1,
                                            .lua_sig = NULL, .forward = avgpool2d_backward_fwd,
                                            .backward = avgpool2d_backward_bwd,
                                            .samples = avgpool2d_backward_samples};

ls_tensor *ls_avgpool2d_backward(ls_tensor *g, int64_t kernel, int64_t stride, int64_t h, int64_t w)
{
    ls_attrs a = {.nints = 4, .ints = {kernel, stride <= 0 ? kernel : stride, h, w}};
    return ls_op_apply(LS_OP_AVGPOOL2D_BACKWARD, &g, &a);
}
