/* The AVX-512 path of the convolution kernels (see conv.c for the ops and the BLAS path). */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/conv_internal.h"
#include "ops/gemm.h"
#include "ops/nn_ops.h"

#include "core/vectorize.h"   /* GCC: vectorise the short loops */

/* ---- AVX-512 path ----
 *
 * On CPUs with AVX-512 (checked at run time; ls_gemm_use_blas(true) turns it off) the kernels
 * skip BLAS. OpenBLAS 0.3.21 runs AVX2 kernels on this class of CPU (it predates Zen 4/5 and is
 * pinned with OPENBLAS_CORETYPE=Haswell here), half the vector width, and splits small per-image
 * GEMMs poorly over threads. Here the batch is cut into chunks of whole images run on the engine's
 * pool; each chunk does its images one at a time in its own scratch: im2col into [K, P] (vector
 * versions for stride 1), then register-blocked tiles, then col2im for the input gradient.
 *
 * The GEMM tile (gemm.h: a block of up to 12 x 32 floats or 12 x 16 doubles of C = A B, A read by
 * element strides, B as rows of nr consecutive elements) is used with A = W in packed panels, W^T
 * or col_n in place. Each element of C is ONE chain of fused multiply-adds over the inner index in
 * order, from 0 (or from C's old value), whatever the chunking or the thread count:
 *   forward:     y_n [O, P]    = W [O, K] . col_n [K, P]         A = W packed once per call
 *   input grad:  gcol_n [K, P] = W^T [K, O] . g_n [O, P]         A = W read in place (transposed)
 *   weight grad: one of two ways round, packing the smaller operand per image (see below).
 * The weight gradient sums over images: each chunk accumulates its images in order into its own
 * partial, and the partials are added in chunk order at the end; the chunk count (CK_CHUNKS, fewer
 * when the scratch would pass CK_SCRATCH_BYTES) depends only on the sizes, not on the threads. The
 * forward and the input gradient compute each image the same way in any chunk, so their chunk
 * count follows the thread count. All three are therefore bitwise independent of the thread count
 * (tests/c/test_ops_conv.c checks it). */
#if defined(__x86_64__) && defined(__GNUC__)
#define CK_HAVE 1
#include <immintrin.h>
#else
#define CK_HAVE 0
#endif

#define CK_CHUNKS 16                            /* weight gradient: partial sums */
#define CK_SCRATCH_BYTES ((int64_t)64 << 20)    /* scratch of all chunks together, roughly */


#if CK_HAVE
/* im2col and col2im of one image for stride 1 with masked vector moves (rows of 14 are mostly loop
 * overhead for the scalar versions). The masks depend only on the kernel column j and the block of
 * the row, so they are computed once per j (at most CK_MAXBLK blocks of a row: Wo, W <= 128 floats
 * or 64 doubles; wider images take the scalar versions).
 *   im2col: each column row (c, i, j) is written whole, a masked load of x's row per block (its
 *     zeros included).
 *   col2im: each row of x is summed in registers over its (i, j) contributions in that order and
 *     stored once, no read-modify-write of x: the same additions in the same order as the scalar
 *     col2im (which adds into a zeroed plane over i, j, a, b), so the same bits. */
#define CK_MAXBLK 8
#define CK_MASK(T_, lo, hi) /* bits [lo, hi) of a lane mask, empty when hi <= lo */                \
    ((hi) > (lo) ? (T_)((((uint32_t)1 << (hi)) - 1) & ~(((uint32_t)1 << (lo)) - 1)) : (T_)0)

#define CK_IM2COL_S1(T, VEC, LANES, MASKT, LOADZ, STOREM, ZERO)                                    \
    do {                                                                                           \
        int64_t Wo = g->Wo, W = g->W, nblk = (Wo + LANES - 1) / LANES;                             \
        const T *xn = xv;                                                                          \
        MASKT all[CK_MAXBLK], val[CK_MAXBLK];                                                      \
        for (int64_t k = 0; k < nblk; k++) {                                                       \
            int64_t n = Wo - k * LANES < LANES ? Wo - k * LANES : LANES;                           \
            all[k] = CK_MASK(MASKT, 0, n);                                                         \
        }                                                                                          \
        for (int64_t c = 0; c < g->C; c++)                                                         \
            for (int64_t i = 0; i < g->kh; i++) {                                                  \
                int64_t alo, ahi;                                                                  \
                conv_valid(i, g->H, g->Ho, 1, g->p, &alo, &ahi);                                   \
                for (int64_t jj = 0; jj < g->kw; jj++) {                                           \
                    int64_t blo, bhi, off = jj - g->p;                                             \
                    conv_valid(jj, W, Wo, 1, g->p, &blo, &bhi);                                    \
                    for (int64_t k = 0; k < nblk; k++) {                                           \
                        int64_t lo = blo - k * LANES, hi = bhi - k * LANES;                        \
                        lo = lo < 0 ? 0 : lo > LANES ? LANES : lo;                                 \
                        hi = hi < 0 ? 0 : hi > LANES ? LANES : hi;                                 \
                        val[k] = CK_MASK(MASKT, lo, hi);                                           \
                    }                                                                              \
                    T *d = (T *)colv + ((c * g->kh + i) * g->kw + jj) * g->P;                      \
                    for (int64_t a = 0; a < g->Ho; a++) {                                          \
                        T *o = d + a * Wo;                                                         \
                        if (a < alo || a >= ahi) {                                                 \
                            for (int64_t k = 0; k < nblk; k++)                                     \
                                STOREM(o + k * LANES, all[k], ZERO());                             \
                            continue;                                                              \
                        }                                                                          \
                        const T *xr = xn + (c * g->H + a - g->p + i) * W + off;                    \
                        for (int64_t k = 0; k < nblk; k++)                                         \
                            STOREM(o + k * LANES, all[k], LOADZ(val[k], xr + k * LANES));          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    } while (0)

#define CK_COL2IM_S1(T, VEC, LANES, MASKT, LOADZ, STOREM, ZERO, ADD)                               \
    do {                                                                                           \
        int64_t Wo = g->Wo, W = g->W, kw = g->kw, nblk = (W + LANES - 1) / LANES;                  \
        T *xn = xv;                                                                                \
        MASKT all[CK_MAXBLK], val[CK_MAXBLK][CK_MAXKW];                                            \
        for (int64_t k = 0; k < nblk; k++) {                                                       \
            int64_t n = W - k * LANES < LANES ? W - k * LANES : LANES;                             \
            all[k] = CK_MASK(MASKT, 0, n);                                                         \
            for (int64_t jj = 0; jj < kw; jj++) { /* lanes with b = k*LANES+l-jj+p in [0,Wo) */ \
                int64_t lo = jj - g->p - k * LANES, hi = Wo + jj - g->p - k * LANES;               \
                lo = lo < 0 ? 0 : lo > n ? n : lo;                                                 \
                hi = hi < 0 ? 0 : hi > n ? n : hi;                                                 \
                val[k][jj] = CK_MASK(MASKT, lo, hi);                                               \
            }                                                                                      \
        }                                                                                          \
        for (int64_t c = 0; c < g->C; c++)                                                         \
            for (int64_t h = 0; h < g->H; h++)                                                     \
                for (int64_t k = 0; k < nblk; k++) {                                               \
                    VEC acc = ZERO();                                                              \
                    for (int64_t i = 0; i < g->kh; i++) {                                          \
                        int64_t a = h + g->p - i;                                                  \
                        if (a < 0 || a >= g->Ho) continue;                                         \
                        const T *row = (const T *)colv + (c * g->kh + i) * kw * g->P + a * Wo +    \
                                       k * LANES + g->p;                                           \
                        for (int64_t jj = 0; jj < kw; jj++)                                        \
                            acc = ADD(acc, LOADZ(val[k][jj], row + jj * g->P - jj));               \
                    }                                                                              \
                    STOREM(xn + (c * g->H + h) * W + k * LANES, all[k], acc);                      \
                }                                                                                  \
    } while (0)
#define CK_MAXKW 16

/* xv: the image (read by im2col, written by col2im); colv: its columns [K][P]. */
__attribute__((target("avx512f"))) static void ck_im2col_s1_f32(const conv_geom *g, const void *xv,
                                                                  void *colv)
{
    CK_IM2COL_S1(float, __m512, 16, __mmask16, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps,
                 _mm512_setzero_ps);
}
__attribute__((target("avx512f"))) static void ck_im2col_s1_f64(const conv_geom *g, const void *xv,
                                                                  void *colv)
{
    CK_IM2COL_S1(double, __m512d, 8, __mmask8, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd,
                 _mm512_setzero_pd);
}
__attribute__((target("avx512f"))) static void ck_col2im_s1_f32(const conv_geom *g, void *xv,
                                                                  const void *colv)
{
    CK_COL2IM_S1(float, __m512, 16, __mmask16, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps,
                 _mm512_setzero_ps, _mm512_add_ps);
}
__attribute__((target("avx512f"))) static void ck_col2im_s1_f64(const conv_geom *g, void *xv,
                                                                  const void *colv)
{
    CK_COL2IM_S1(double, __m512d, 8, __mmask8, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd,
                 _mm512_setzero_pd, _mm512_add_pd);
}
#endif

/* im2col (col2im) of image n of x (into gx) on the AVX-512 path: the vector versions where they
 * apply (stride 1, rows of at most CK_MAXBLK vectors, kw <= CK_MAXKW), else the scalar items. */
static bool ck_rows_ok(const conv_geom *g, ls_dtype dt)
{
    int64_t lanes = dt == LS_F32 ? 16 : 8;
    return CK_HAVE && g->s == 1 && g->W <= CK_MAXBLK * lanes && g->Wo <= CK_MAXBLK * lanes &&
           g->kw <= CK_MAXKW;
}

static void ck_im2col(const conv_geom *g, ls_dtype dt, const void *x, void *col, int64_t n)
{
#if CK_HAVE
    if (ck_rows_ok(g, dt)) {
        const char *xn = (const char *)x + n * g->C * g->H * g->W * (int64_t)ls_dtype_size(dt);
        if (dt == LS_F32) ck_im2col_s1_f32(g, xn, col);
        else ck_im2col_s1_f64(g, xn, col);
        return;
    }
#endif
    conv_job cj = {g, dt, x, col, n, g->P, g->K * g->P};
    im2col_items(&cj, 0, g->C);
}

static void ck_col2im(const conv_geom *g, ls_dtype dt, const void *col, void *gx, int64_t n)
{
#if CK_HAVE
    if (ck_rows_ok(g, dt)) {
        char *xn = (char *)gx + n * g->C * g->H * g->W * (int64_t)ls_dtype_size(dt);
        if (dt == LS_F32) ck_col2im_s1_f32(g, xn, col);
        else ck_col2im_s1_f64(g, xn, col);
        return;
    }
#endif
    conv_job cj = {g, dt, col, gx, n, g->P, g->K * g->P};
    col2im_items(&cj, 0, g->C);
}

static int64_t ck_round(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* Panels of a packed B: nr columns wide, or nr/2 when n fits that (the tile then runs one vector
 * of columns, and a narrow B is not padded to nr with zeros). */
static int64_t ck_bwidth(int64_t n, int nr) { return n <= nr / 2 ? nr / 2 : nr; }

typedef struct ck_job {
    const conv_geom *g;
    ls_dtype dt;
    size_t es;
    int nr;
    gemm_tile_fn tile;
    const char *a, *b;     /* the operands: x or g, and the packed weight (forward, input grad) */
    char *out;             /* y, gx, or the weight gradient's partials [nch][K][O] */
    char *scratch;         /* per chunk: `per` elements */
    int64_t per, nch;
} ck_job;

/* Images [*n0, *n1) of chunk c, and its scratch. */
static char *ck_chunk(const ck_job *j, int64_t c, int64_t *n0, int64_t *n1)
{
    *n0 = c * j->g->N / j->nch;
    *n1 = (c + 1) * j->g->N / j->nch;
    return j->scratch + c * j->per * (int64_t)j->es;
}

static void ck_forward_chunks(void *vj, int64_t begin, int64_t end)
{
    const ck_job *j = vj;
    const conv_geom *g = j->g;
    size_t es = j->es;
    for (int64_t c = begin; c < end; c++) {
        int64_t n0, n1;
        char *col = ck_chunk(j, c, &n0, &n1);
        for (int64_t n = n0; n < n1; n++) {
            ck_im2col(g, j->dt, j->a, col, n);
            char *yn = j->out + n * g->O * g->P * (int64_t)es;
            for (int64_t q = 0; q < g->P; q += j->nr)
                for (int64_t i = 0; i < g->O; i += GEMM_MR)
                    j->tile(g->K, j->b + i * g->K * (int64_t)es, 1, GEMM_MR,
                            col + q * (int64_t)es, g->P,
                            (int)(g->P - q < j->nr ? g->P - q : j->nr),
                            yn + (i * g->P + q) * (int64_t)es, g->P,
                            (int)(g->O - i < GEMM_MR ? g->O - i : GEMM_MR), false);
        }
    }
}

static void ck_input_grad_chunks(void *vj, int64_t begin, int64_t end)
{
    const ck_job *j = vj;
    const conv_geom *g = j->g;
    size_t es = j->es;
    for (int64_t c = begin; c < end; c++) {
        int64_t n0, n1;
        char *gcol = ck_chunk(j, c, &n0, &n1);
        for (int64_t n = n0; n < n1; n++) {
            const char *gn = j->a + n * g->O * g->P * (int64_t)es;
            for (int64_t q = 0; q < g->P; q += j->nr)
                for (int64_t i = 0; i < g->K; i += GEMM_MR)
                    j->tile(g->O, j->b + i * g->O * (int64_t)es, 1, GEMM_MR, gn + q * (int64_t)es,
                            g->P,
                            (int)(g->P - q < j->nr ? g->P - q : j->nr),
                            gcol + (i * g->P + q) * (int64_t)es, g->P,
                            (int)(g->K - i < GEMM_MR ? g->K - i : GEMM_MR), false);
            ck_col2im(g, j->dt, gcol, j->out, n);
        }
    }
}

/* Two ways round, packing the smaller operand per image (g_n: O*P, or col_n: K*P elements):
 *   K >= O: gw^T [K, O] += col_n [K, P] . g_n^T, A = col_n read in place, B = g_n packed;
 *   K < O:  gw [O, K]   += g_n [O, P] . col_n^T, A = g_n read in place, B = col_n packed
 *           (a first layer: K = C*kh*kw = 9 for one input channel, O = 32).
 * The tile reads all GEMM_MR rows of A (a body of 12, 8 or 4), so a last block of fewer rows is
 * copied, zero-padded, into `tail` rather than read past the end of A. */
static void ck_weight_grad_chunks(void *vj, int64_t begin, int64_t end)
{
    const ck_job *j = vj;
    const conv_geom *g = j->g;
    size_t es = j->es;
    int64_t K = g->K, O = g->O, P = g->P;
    bool swap = K < O;
    int64_t M = swap ? O : K, Nc = swap ? K : O;   /* the partial is [M, Nc] */
    int64_t wb = ck_bwidth(Nc, j->nr);             /* B's panel width */
    for (int64_t c = begin; c < end; c++) {
        int64_t n0, n1;
        char *col = ck_chunk(j, c, &n0, &n1);                      /* [K][P] */
        char *bp = col + K * P * (int64_t)es;                      /* [Nc/wb][P][wb] */
        char *tail = bp + ck_round(Nc, wb) * P * (int64_t)es;      /* [GEMM_MR][P] */
        char *part = j->out + c * K * O * (int64_t)es;
        memset(part, 0, (size_t)(K * O) * es);
        memset(tail, 0, (size_t)(GEMM_MR * P) * es);
        for (int64_t n = n0; n < n1; n++) {
            ck_im2col(g, j->dt, j->a, col, n);
            const char *gn = j->b + n * O * P * (int64_t)es;
            const char *a = swap ? gn : col;
            gemm_pack(es, swap ? col : gn, Nc, P, P, 1, wb, bp);
            for (int64_t i = 0; i < M; i += GEMM_MR) {
                int rows = (int)(M - i < GEMM_MR ? M - i : GEMM_MR);
                const char *ai = a + i * P * (int64_t)es;
                if (rows < GEMM_MR) {
                    memcpy(tail, ai, (size_t)(rows * P) * es);
                    ai = tail;
                }
                for (int64_t q = 0; q < Nc; q += wb)
                    j->tile(P, ai, P, 1, bp + q * P * (int64_t)es, wb,
                            (int)(Nc - q < wb ? Nc - q : wb), part + (i * Nc + q) * (int64_t)es, Nc,
                            rows, true);
            }
        }
    }
}

/* Chunk count and scratch for `per` elements per chunk; NULL (error set) on allocation failure.
 * `most` chunks at most (fewer when the scratch would pass CK_SCRATCH_BYTES, at least one). */
static char *ck_scratch(const conv_geom *g, size_t es, int64_t per, int64_t most, int64_t *nch,
                        const char *who)
{
    int64_t n = g->N < most ? g->N : most;
    int64_t fit = CK_SCRATCH_BYTES / (per * (int64_t)es > 0 ? per * (int64_t)es : 1);
    if (n > fit) n = fit;
    if (n < 1) n = 1;
    *nch = n;
    return ls_malloc((size_t)(n * per) * es, who);
}

/* Chunks for the forward and the input gradient, whose results do not depend on the chunking: a
 * few per thread, to balance the load with little scratch. */
static int64_t ck_free_chunks(void) { return 4 * (int64_t)ls_get_threads(); }

/* The three kernels on the AVX-512 path. Preconditions as for the BLAS ones, and N, K, O, P > 0. */
ls_status ck_forward(const conv_geom *g, ls_dtype dt, gemm_tile_fn tile, int nr,
                            const void *x, const void *w, void *y)
{
    size_t es = ls_dtype_size(dt);
    ck_job j = {g, dt, es, nr, tile, x, NULL, y, NULL, g->K * g->P, 0};
    char *wp = ls_malloc((size_t)(ck_round(g->O, GEMM_MR) * g->K) * es, "conv2d");
    j.scratch = wp ? ck_scratch(g, es, j.per, ck_free_chunks(), &j.nch, "conv2d") : NULL;
    if (j.scratch) {
        gemm_pack(es, w, g->O, g->K, g->K, 1, GEMM_MR, wp);
        j.b = wp;
        ls_parallel_for(j.nch, 1, ck_forward_chunks, &j);
    }
    ls_free(j.scratch);
    ls_free(wp);
    return j.scratch ? LS_OK : ls_error_code();
}

ls_status ck_input_grad(const conv_geom *g, ls_dtype dt, gemm_tile_fn tile, int nr,
                               const void *gy, const void *w, void *gx)
{
    size_t es = ls_dtype_size(dt);
    ck_job j = {g, dt, es, nr, tile, gy, NULL, gx, NULL, g->K * g->P, 0};
    char *wp = ls_malloc((size_t)(ck_round(g->K, GEMM_MR) * g->O) * es, "conv2d_input_grad");
    j.scratch = wp ? ck_scratch(g, es, j.per, ck_free_chunks(), &j.nch, "conv2d_input_grad")
                   : NULL;
    if (j.scratch) {
        gemm_pack(es, w, g->K, g->O, 1, g->K, GEMM_MR, wp);   /* W^T: row k is column k of W */
        j.b = wp;
        ls_parallel_for(j.nch, 1, ck_input_grad_chunks, &j);
    }
    ls_free(j.scratch);
    ls_free(wp);
    return j.scratch ? LS_OK : ls_error_code();
}

/* gw = the sum over chunks c, in order, of the partials (then transposed when they are gw^T). */
#define CK_WG_SUM(T)                                                                               \
    do {                                                                                           \
        T *p0 = (T *)j.out;                                                                        \
        int64_t n = g->K * g->O;                                                                   \
        for (int64_t c = 1; c < j.nch; c++) {                                                      \
            const T *pc = p0 + c * n;                                                              \
            for (int64_t i = 0; i < n; i++) p0[i] += pc[i];                                        \
        }                                                                                          \
        T *o = gw;                                                                                 \
        if (g->K < g->O)                                                                           \
            memcpy(o, p0, sizeof(T) * (size_t)n);                                                  \
        else                                                                                       \
            for (int64_t k = 0; k < g->K; k++)                                                     \
                for (int64_t oo = 0; oo < g->O; oo++) o[oo * g->K + k] = p0[k * g->O + oo];        \
    } while (0)

ls_status ck_weight_grad(const conv_geom *g, ls_dtype dt, gemm_tile_fn tile, int nr,
                                const void *x, const void *gy, void *gw)
{
    size_t es = ls_dtype_size(dt);
    int64_t nc = g->K < g->O ? g->K : g->O;
    int64_t per = g->K * g->P + ck_round(nc, ck_bwidth(nc, nr)) * g->P + GEMM_MR * g->P;
    ck_job j = {g, dt, es, nr, tile, x, gy, NULL, NULL, per, 0};
    j.scratch = ck_scratch(g, es, per, CK_CHUNKS, &j.nch, "conv2d_weight_grad");
    j.out = j.scratch ? ls_malloc((size_t)(j.nch * g->K * g->O) * es, "conv2d_weight_grad") : NULL;
    if (j.out) {
        ls_parallel_for(j.nch, 1, ck_weight_grad_chunks, &j);
        if (dt == LS_F32) CK_WG_SUM(float);
        else CK_WG_SUM(double);
    }
    ls_status rc = j.out ? LS_OK : ls_error_code();
    ls_free(j.out);
    ls_free(j.scratch);
    return rc;
}

