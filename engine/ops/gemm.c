/* The engine's GEMM (see gemm.h): AVX-512 register tiles on the engine's pool, or OpenBLAS.
 *
 * Own path, C = A . B with m x k and k x n operands of any strides:
 *   1. For a slab of the inner index at a time (the whole of k unless the copies would pass
 *      GEMM_PACK_BYTES), pack A's last panel when it has fewer than GEMM_MR rows. The tile reads
 *      the rest of A in place, by broadcasts of single elements.
 *   2. Compute, in parallel over blocks of the output: a block first packs the panels of B it uses
 *      (nr columns [k][nr], zero-padded) when B's columns are not contiguous, else reads B's rows in
 *      place; then it walks the slab in steps of GEMM_KC (a B panel of GEMM_KC x nr stays in L1
 *      while the block's rows of A stream by) and calls the tile for each (row panel, column
 *      panel), continuing each element's chain. Packing in the block that uses the panels (rather
 *      than in a parallel phase of its own) keeps them in that core's caches: with 2 threads the
 *      separate phase cost more than the packing itself.
 * Every element of C is thus one chain of fused multiply-adds over k in order whatever the block
 * sizes, the slabs or the thread count, so results do not depend on the threads. A bias is added to
 * a tile's rows right after their chain ends (the tile is still in L1): one rounding, as a separate
 * addition would do. A narrow product
 * (n < nr / 4: fewer than 8 float or 4 double columns) is computed as C^T = B^T A^T into a scratch and
 * transposed: the same products in the same order, with the tile's columns along m. So is a product
 * whose B would be packed when packing A^T instead (plus the transposition) copies under half as
 * much: a small batch times a weight's transpose, the forward pass of a linear layer. */
#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/gemm.h"

#include "core/vectorize.h"   /* GCC: vectorise the short loops */

#if defined(__x86_64__) && defined(__GNUC__)
#define GEMM_HAVE 1
#include <immintrin.h>
#else
#define GEMM_HAVE 0
#endif

#define GEMM_KC 256                              /* inner-index step of the compute loop */
#define GEMM_BLOCK_PANELS 8                      /* at most this many panels per block side */
#define GEMM_PACK_BYTES ((int64_t)32 << 20)      /* packed A + B of one slab, roughly */
#define GEMM_SERIAL_FMAS ((int64_t)1 << 21)      /* smaller products run on the calling thread */
#define GEMM_PREPACK_BYTES ((int64_t)512 << 10)  /* a packed B up to this is packed before the blocks */
#define GEMM_PACKK_BYTES ((int64_t)2 << 20)      /* a row-major B up to this may be packed by rows */

static _Atomic bool gemm_blas_only;

void ls_gemm_use_blas(bool on) { gemm_blas_only = on; }

#if GEMM_HAVE
/* The tile body for MR rows and NV vectors of columns, both compile-time constants at each call
 * (always_inline), so the accumulators stay in registers and a block of 4 rows or 16 columns (the
 * remainder of O = 64 or P = 196) costs a quarter or a half of a full one, not a full one. */
#define GEMM_BODY(T, VEC, LANES, MASKT, ZERO, LOADZ, STOREM, SET1, FMA)                             \
    do {                                                                                           \
        const T *A = Av, *B = Bv;                                                                  \
        T *C = Cv;                                                                                 \
        MASKT m[2];                                                                                \
        for (int v = 0; v < 2; v++) {                                                              \
            int n = ncols - v * LANES;                                                             \
            m[v] = n >= LANES ? (MASKT)~(MASKT)0 : n <= 0 ? 0 : (MASKT)((1u << n) - 1);            \
        }                                                                                          \
        VEC c[GEMM_MR][2];                                                                           \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                      \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                   \
                c[r][v] = acc && r < nrows ? LOADZ(m[v], C + r * ldc + v * LANES) : ZERO();        \
        for (int64_t k = 0; k < kk; k++) {                                                         \
            VEC b[2];                                                                              \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                   \
                b[v] = LOADZ(m[v], B + k * ldb + v * LANES);                                       \
            const T *a = A + k * ksa;                                                              \
            _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++) {                                \
                VEC ar = SET1(a[r * rsa]);                                                         \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                               \
                    c[r][v] = FMA(ar, b[v], c[r][v]);                                              \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                      \
            if (r < nrows)                                                                         \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                               \
                    STOREM(C + r * ldc + v * LANES, m[v], c[r][v]);                                \
    } while (0)

#define GEMM_ARGS                                                                                    \
    int64_t kk, const void *Av, int64_t rsa, int64_t ksa, const void *Bv, int64_t ldb, int ncols, \
        void *Cv, int64_t ldc, int nrows, bool acc
#define GEMM_TARGET __attribute__((target("avx512f"), always_inline)) static inline

GEMM_TARGET void gemm_body_f32(const int MR, const int NV, GEMM_ARGS)
{
    GEMM_BODY(float, __m512, 16, __mmask16, _mm512_setzero_ps, _mm512_maskz_loadu_ps,
            _mm512_mask_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps);
}
GEMM_TARGET void gemm_body_f64(const int MR, const int NV, GEMM_ARGS)
{
    GEMM_BODY(double, __m512d, 8, __mmask8, _mm512_setzero_pd, _mm512_maskz_loadu_pd,
            _mm512_mask_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd);
}

/* The full tile (12 rows, 2 whole vectors of columns) with nothing masked: plain loads and stores
 * of B and C (masked loads streaming from L2 ran 40% slower than plain ones on this Zen 5 VM), and,
 * when A is a packed panel (rsa = 1, ksa = GEMM_MR), its 12 values of a step at constant offsets,
 * broadcast straight from memory (with run-time strides the 12 row offsets did not fit in registers
 * and spilled). */
#define GEMM_FULL_BODY(T, VEC, LANES, LOAD, STORE, SET1, FMA, ZERO, RSA, KSA)                       \
    do {                                                                                           \
        const T *A = Av, *B = Bv;                                                                  \
        T *C = Cv;                                                                                 \
        VEC c[GEMM_MR][2];                                                                         \
        _Pragma("GCC unroll 12") for (int r = 0; r < GEMM_MR; r++)                                 \
            _Pragma("GCC unroll 2") for (int v = 0; v < 2; v++)                                    \
                c[r][v] = acc ? LOAD(C + r * ldc + v * LANES) : ZERO();                            \
        for (int64_t k = 0; k < kk; k++) {                                                         \
            VEC b0 = LOAD(B + k * ldb), b1 = LOAD(B + k * ldb + LANES);                            \
            const T *a = A + k * (KSA);                                                            \
            _Pragma("GCC unroll 12") for (int r = 0; r < GEMM_MR; r++) {                           \
                VEC ar = SET1(a[r * (RSA)]);                                                       \
                c[r][0] = FMA(ar, b0, c[r][0]);                                                    \
                c[r][1] = FMA(ar, b1, c[r][1]);                                                    \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (int r = 0; r < GEMM_MR; r++)                                 \
            _Pragma("GCC unroll 2") for (int v = 0; v < 2; v++)                                    \
                STORE(C + r * ldc + v * LANES, c[r][v]);                                           \
    } while (0)

__attribute__((target("avx512f"))) static void gemm_full_f32(GEMM_ARGS)
{
    (void)ncols, (void)nrows;
    if (rsa == 1 && ksa == GEMM_MR)
        GEMM_FULL_BODY(float, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
                       _mm512_fmadd_ps, _mm512_setzero_ps, 1, GEMM_MR);
    else
        GEMM_FULL_BODY(float, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
                       _mm512_fmadd_ps, _mm512_setzero_ps, rsa, ksa);
}
__attribute__((target("avx512f"))) static void gemm_full_f64(GEMM_ARGS)
{
    (void)ncols, (void)nrows;
    if (rsa == 1 && ksa == GEMM_MR)
        GEMM_FULL_BODY(double, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd,
                       _mm512_fmadd_pd, _mm512_setzero_pd, 1, GEMM_MR);
    else
        GEMM_FULL_BODY(double, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd,
                       _mm512_fmadd_pd, _mm512_setzero_pd, rsa, ksa);
}

/* 12 x 32 floats (or 12 x 16 doubles), with narrower bodies for the remainders. */
__attribute__((target("avx512f"))) static void gemm_tile_f32(GEMM_ARGS)
{
    bool one = ncols <= 16;
    if (nrows == GEMM_MR && ncols == 32) {
        gemm_full_f32(kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        return;
    }
    if (nrows > 8) {
        if (one) gemm_body_f32(12, 1, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        else gemm_body_f32(12, 2, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
    } else if (nrows > 4) {
        if (one) gemm_body_f32(8, 1, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        else gemm_body_f32(8, 2, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
    } else {
        if (one) gemm_body_f32(4, 1, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        else gemm_body_f32(4, 2, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
    }
}
__attribute__((target("avx512f"))) static void gemm_tile_f64(GEMM_ARGS)
{
    bool one = ncols <= 8;
    if (nrows == GEMM_MR && ncols == 16) {
        gemm_full_f64(kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        return;
    }
    if (nrows > 8) {
        if (one) gemm_body_f64(12, 1, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        else gemm_body_f64(12, 2, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
    } else if (nrows > 4) {
        if (one) gemm_body_f64(8, 1, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        else gemm_body_f64(8, 2, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
    } else {
        if (one) gemm_body_f64(4, 1, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
        else gemm_body_f64(4, 2, kk, Av, rsa, ksa, Bv, ldb, ncols, Cv, ldc, nrows, acc);
    }
}
#endif

gemm_tile_fn gemm_tile_for(ls_dtype dt, int *nr)
{
#if GEMM_HAVE
    if (!gemm_blas_only && __builtin_cpu_supports("avx512f")) {
        *nr = dt == LS_F32 ? 32 : 16;
        return dt == LS_F32 ? gemm_tile_f32 : gemm_tile_f64;
    }
#endif
    (void)dt;
    *nr = 0;
    return NULL;
}

const char *ls_gemm_path(void)
{
    int nr;
    return gemm_tile_for(LS_F32, &nr) ? "avx512" : "blas";
}

/* Two loop orders: along the inner index when it is contiguous in M, else across rows (then the
 * width elements at one inner index are usually contiguous, as for a row-major B). */
#define GEMM_PACK_LOOP(T)                                                                          \
    do {                                                                                           \
        const T *src = (const T *)M;                                                               \
        T *dst = (T *)out;                                                                         \
        for (int64_t i = 0; i < rows; i += width) {                                                \
            int64_t h = rows - i < width ? rows - i : width;                                       \
            T *panel = dst + i * inner;                                                            \
            const T *blk = src + i * rs;                                                           \
            if (ks == 1)                                                                           \
                for (int64_t r = 0; r < h; r++)                                                    \
                    for (int64_t k = 0; k < inner; k++) panel[k * width + r] = blk[r * rs + k];    \
            else                                                                                   \
                for (int64_t k = 0; k < inner; k++)                                                \
                    for (int64_t r = 0; r < h; r++) panel[k * width + r] = blk[r * rs + k * ks];   \
            for (int64_t r = h; r < width; r++)                                                    \
                for (int64_t k = 0; k < inner; k++) panel[k * width + r] = 0;                      \
        }                                                                                          \
    } while (0)

#if GEMM_HAVE
/* out[k * width + r] = M[r * rs + k] for r, k < 16: one 16 x 16 block of 32-bit elements transposed
 * in registers (pairs of rows interleaved, then groups of four, then 128-bit lanes). */
__attribute__((target("avx512f"))) static void gemm_t16(const float *M, int64_t rs, float *out,
                                                        int64_t width)
{
    __m512 r[16], t[16], u[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(M + i * rs);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);       /* a0 b0 a1 b1 per 128-bit lane */
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);   /* a2 b2 a3 b3 */
    }
    for (int g = 0; g < 16; g += 4) {                  /* rows g..g+3: u[g + j] holds column j */
        u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);  /* of each lane, rows g..g+3 */
        u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {                      /* columns j, j + 4, j + 8, j + 12 */
        __m512 x0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 x1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 y0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 y1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        _mm512_storeu_ps(out + j * width, _mm512_shuffle_f32x4(x0, y0, 0x88));
        _mm512_storeu_ps(out + (j + 4) * width, _mm512_shuffle_f32x4(x1, y1, 0x88));
        _mm512_storeu_ps(out + (j + 8) * width, _mm512_shuffle_f32x4(x0, y0, 0xDD));
        _mm512_storeu_ps(out + (j + 12) * width, _mm512_shuffle_f32x4(x1, y1, 0xDD));
    }
}

/* out[k * width + r] = M[r * rs + k] for r, k < 8: one 8 x 8 block of 64-bit elements transposed
 * in registers (pairs of rows interleaved, then 128-bit lanes twice). */
__attribute__((target("avx512f"))) static void gemm_t8(const double *M, int64_t rs, double *out,
                                                       int64_t width)
{
    __m512d r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm512_loadu_pd(M + i * rs);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);       /* a0 b0 | a2 b2 | a4 b4 | a6 b6 */
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);   /* a1 b1 | a3 b3 | a5 b5 | a7 b7 */
    }
    for (int g = 0; g < 8; g += 4) {   /* rows g..g+3 */
        u[g] = _mm512_shuffle_f64x2(t[g], t[g + 2], 0x88);       /* columns 0 and 4 */
        u[g + 1] = _mm512_shuffle_f64x2(t[g], t[g + 2], 0xDD);   /* 2 and 6 */
        u[g + 2] = _mm512_shuffle_f64x2(t[g + 1], t[g + 3], 0x88);   /* 1 and 5 */
        u[g + 3] = _mm512_shuffle_f64x2(t[g + 1], t[g + 3], 0xDD);   /* 3 and 7 */
    }
    static const int col[4] = {0, 2, 1, 3};
    for (int q = 0; q < 4; q++) {
        _mm512_storeu_pd(out + col[q] * width, _mm512_shuffle_f64x2(u[q], u[4 + q], 0x88));
        _mm512_storeu_pd(out + (col[q] + 4) * width, _mm512_shuffle_f64x2(u[q], u[4 + q], 0xDD));
    }
}

/* The pack of rows contiguous along the inner index (a transposed B, a row-major A) by square
 * blocks of bs = 16 (32-bit) or 8 (64-bit) elements; the ragged edges element by element. */
#define GEMM_PACK_T(T, BS, TRANSPOSE)                                                              \
    do {                                                                                           \
        const T *src = (const T *)M;                                                               \
        T *dst = (T *)out;                                                                         \
        for (int64_t i = 0; i < rows; i += width) {                                                \
            int64_t h = rows - i < width ? rows - i : width, hb = h / BS * BS;                     \
            int64_t kb = inner / BS * BS;                                                          \
            T *panel = dst + i * inner;                                                            \
            const T *blk = src + i * rs;                                                           \
            for (int64_t r = 0; r < hb; r += BS)                                                   \
                for (int64_t k = 0; k < kb; k += BS)                                               \
                    TRANSPOSE(blk + r * rs + k, rs, panel + k * width + r, width);                 \
            /* the rest along the panel, in order: the ragged k columns of the full blocks' rows, \
             * then, at every k, the ragged rows and the zero padding */                            \
            for (int64_t k = kb; k < inner; k++)                                                   \
                for (int64_t r = 0; r < hb; r++) panel[k * width + r] = blk[r * rs + k];           \
            for (int64_t k = 0; k < inner; k++) {                                                  \
                for (int64_t r = hb; r < h; r++) panel[k * width + r] = blk[r * rs + k];           \
                for (int64_t r = h; r < width; r++) panel[k * width + r] = 0;                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

__attribute__((target("avx512f"))) static void gemm_pack_t(size_t es, const void *M, int64_t rows,
                                                           int64_t inner, int64_t rs, int64_t width,
                                                           void *out)
{
    if (es == 4) GEMM_PACK_T(float, 16, gemm_t16);   /* bit copies: any 32- or 64-bit data */
    else GEMM_PACK_T(double, 8, gemm_t8);
}
#endif

void gemm_pack(size_t es, const void *M, int64_t rows, int64_t inner, int64_t rs, int64_t ks,
               int64_t width, void *out)
{
#if GEMM_HAVE
    if (ks == 1 && width % (es == 4 ? 16 : 8) == 0 && __builtin_cpu_supports("avx512f")) {
        gemm_pack_t(es, M, rows, inner, rs, width, out);
        return;
    }
#endif
    if (es == 4) GEMM_PACK_LOOP(uint32_t);   /* a bit copy: the dtype does not matter */
    else GEMM_PACK_LOOP(uint64_t);
}

void gemm_blas(ls_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
               int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc)
{
    CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if (dt == LS_F32)
        cblas_sgemm(CblasRowMajor, TA, TB, (int)m, (int)n, (int)k, 1.0f, A, (int)lda, B, (int)ldb,
                    (float)beta, C, (int)ldc);
    else
        cblas_dgemm(CblasRowMajor, TA, TB, (int)m, (int)n, (int)k, 1.0, A, (int)lda, B, (int)ldb,
                    beta, C, (int)ldc);
}

void gemm_add_bias(size_t es, void *C, int64_t m, int64_t n, int64_t ldc, const void *bias)
{
    for (int64_t r = 0; r < m; r++) {
        if (es == 4) {
            float *c = (float *)C + r * ldc;
            const float *b = bias;
            for (int64_t i = 0; i < n; i++) c[i] += b[i];
        } else {
            double *c = (double *)C + r * ldc;
            const double *b = bias;
            for (int64_t i = 0; i < n; i++) c[i] += b[i];
        }
    }
}

/* ---- own path ---- */
typedef struct gemm_job {
    gemm_tile_fn tile;
    int nr;
    size_t es;
    int64_t m, n, k;          /* the whole product */
    const char *A, *B;        /* operands with their strides (elements) */
    int64_t ars, acs, brs, bcs;
    int64_t k0, kb;           /* the current slab [k0, k0 + kb) */
    int64_t npa, npb;         /* row panels of A, column panels of B */
    int64_t pa0;              /* A panels [pa0, npa) are packed, the others read in place */
    bool packb;               /* B packed (else read in place: its columns are contiguous) */
    bool prepack;             /* ... all of it before the blocks run (else by the block using it) */
    bool packk;               /* ... though its columns are contiguous, split by rows (see below) */
    char *Ap, *Bp;            /* packed panels of the slab: [npa - pa0][kb][MR], [npb][kb][nr] */
    char *C;
    int64_t ldc;
    const char *bias;         /* NULL, or n elements added to every row of C at the chain's end */
    int64_t mb, nb, nbc;      /* block sizes in panels, column blocks per row of blocks */
} gemm_job;

static int64_t gemm_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Pack A panel pa0 + it (the ragged last one). */
static void gemm_pack_a(void *vj, int64_t begin, int64_t end)
{
    const gemm_job *j = vj;
    size_t es = j->es;
    for (int64_t it = begin; it < end; it++) {
        int64_t r0 = (j->pa0 + it) * GEMM_MR, h = j->m - r0 < GEMM_MR ? j->m - r0 : GEMM_MR;
        gemm_pack(es, j->A + (r0 * j->ars + j->k0 * j->acs) * (int64_t)es, h, j->kb, j->ars,
                  j->acs, GEMM_MR, j->Ap + it * j->kb * GEMM_MR * (int64_t)es);
    }
}

/* Pack B panels [begin, end) of the slab. */
static void gemm_pack_b(void *vj, int64_t begin, int64_t end)
{
    const gemm_job *j = vj;
    int64_t es = (int64_t)j->es, nr = j->nr;
    for (int64_t q = begin; q < end; q++) {
        int64_t c0 = q * nr, w = j->n - c0 < nr ? j->n - c0 : nr;
        gemm_pack(j->es, j->B + (c0 * j->bcs + j->k0 * j->brs) * es, w, j->kb, j->bcs, j->brs, nr,
                  j->Bp + q * j->kb * nr * es);
    }
}

/* Pack rows [begin, end) * GEMM_KROWS of the slab, of every B panel (B's columns are contiguous:
 * a row of a panel is one copy, zero-padded in the last panel). */
#define GEMM_KROWS 32
static void gemm_pack_b_rows(void *vj, int64_t begin, int64_t end)
{
    const gemm_job *j = vj;
    int64_t es = (int64_t)j->es, nr = j->nr;
    for (int64_t it = begin; it < end; it++) {
        int64_t r0 = it * GEMM_KROWS, rows = j->kb - r0 < GEMM_KROWS ? j->kb - r0 : GEMM_KROWS;
        for (int64_t r = r0; r < r0 + rows; r++) {
            const char *src = j->B + (j->k0 + r) * j->brs * es;
            for (int64_t q = 0; q < j->npb; q++) {
                int64_t w = j->n - q * nr < nr ? j->n - q * nr : nr;
                char *dst = j->Bp + (q * j->kb + r) * nr * es;
                memcpy(dst, src + q * nr * es, (size_t)(w * es));
                if (w < nr) memset(dst + w * es, 0, (size_t)((nr - w) * es));
            }
        }
    }
}

static void gemm_blocks(void *vj, int64_t begin, int64_t end)
{
    const gemm_job *j = vj;
    int64_t es = (int64_t)j->es, nr = j->nr, MR = GEMM_MR;
    for (int64_t it = begin; it < end; it++) {
        int64_t p0 = it / j->nbc * j->mb, q0 = it % j->nbc * j->nb;   /* first panels */
        int64_t p1 = p0 + j->mb < j->npa ? p0 + j->mb : j->npa;
        int64_t q1 = q0 + j->nb < j->npb ? q0 + j->nb : j->npb;
        /* a packed B's panels are packed by the block that uses them (blocks then span all rows,
         * gemm_plan), so they are in this core's caches when the tiles read them */
        if (j->packb && !j->prepack) gemm_pack_b(vj, q0, q1);
        for (int64_t kc = 0; kc < j->kb; kc += GEMM_KC) {
            int64_t kk = j->kb - kc < GEMM_KC ? j->kb - kc : GEMM_KC, kg = j->k0 + kc;
            bool acc = kg > 0;
            for (int64_t q = q0; q < q1; q++) {
                const char *bp = j->packb ? j->Bp + (q * j->kb + kc) * nr * es
                                          : j->B + (kg * j->brs + q * nr) * es;
                int64_t ldb = j->packb ? nr : j->brs;
                int ncols = (int)(j->n - q * nr < nr ? j->n - q * nr : nr);
                for (int64_t p = p0; p < p1; p++) {
                    int64_t r0 = p * MR;
                    const char *ap = p >= j->pa0
                                         ? j->Ap + ((p - j->pa0) * j->kb + kc) * MR * es
                                         : j->A + (r0 * j->ars + kg * j->acs) * es;
                    int nrows = (int)(j->m - r0 < MR ? j->m - r0 : MR);
                    char *c = j->C + (r0 * j->ldc + q * nr) * es;
                    j->tile(kk, ap, p >= j->pa0 ? 1 : j->ars, p >= j->pa0 ? MR : j->acs, bp, ldb,
                            ncols, c, j->ldc, nrows, acc);
                    if (j->bias && kg + kk == j->k)
                        gemm_add_bias(es, c, nrows, ncols, j->ldc, j->bias + q * nr * es);
                }
            }
        }
    }
}

/* Block sizes: split the row panels (and column panels) into as few blocks of at most
 * GEMM_BLOCK_PANELS as possible, of even sizes; then split the larger side further while there are
 * fewer blocks than 2 per thread (the split does not change any result). With a packed B, blocks
 * span all the rows, so that each B panel is packed once, by the block that uses it. */
static void gemm_plan(gemm_job *j)
{
    int64_t pa = j->npa, pb = j->npb;
    bool cols_only = (j->packb && !j->prepack) || j->packk;
    int64_t ba = cols_only ? 1 : gemm_cdiv(pa, GEMM_BLOCK_PANELS);
    int64_t bb = gemm_cdiv(pb, GEMM_BLOCK_PANELS);
    int64_t want = 2 * (int64_t)ls_get_threads();
    if (cols_only) pa = 1;   /* only the columns are split */
    while (ba * bb < want && (ba < pa || bb < pb)) {
        if (gemm_cdiv(pa, ba) >= gemm_cdiv(pb, bb) && ba < pa) ba++;
        else if (bb < pb) bb++;
        else ba++;
    }
    j->mb = gemm_cdiv(j->npa, ba);
    j->nb = gemm_cdiv(pb, bb);
    j->nbc = gemm_cdiv(pb, j->nb);
}

static void gemm_run(ls_parallel_fn fn, gemm_job *j, int64_t items, bool serial)
{
    if (items <= 0) return;
    if (serial) fn(j, 0, items);
    else ls_parallel_for(items, 1, fn, j);
}

/* What is packed: A is read in place (the tile broadcasts its elements, any strides) except a last
 * partial panel, which is copied zero-padded since the tile reads all its rows; B in place when its
 * columns are contiguous (the tile loads rows of nr columns, masked), else packed. */
static ls_status gemm_own(gemm_tile_fn tile, int nr, ls_dtype dt, int64_t m, int64_t n, int64_t k,
                          const void *A, int64_t ars, int64_t acs, const void *B, int64_t brs,
                          int64_t bcs, void *C, int64_t ldc, const void *bias, const char *who)
{
    size_t es = ls_dtype_size(dt);
    gemm_job j = {.tile = tile, .nr = nr, .es = es, .m = m, .n = n, .k = k, .A = A, .B = B,
                  .ars = ars, .acs = acs, .brs = brs, .bcs = bcs, .C = C, .ldc = ldc,
                  .bias = bias};
    j.npa = gemm_cdiv(m, GEMM_MR);
    j.npb = gemm_cdiv(n, nr);
    j.pa0 = m % GEMM_MR ? j.npa - 1 : j.npa;
    j.packb = bcs != 1 && n > 1;
    /* A packed B that is small next to A (a batch times a weight's transpose, in a Hessian-vector
     * product: 1000 x 784 times 784 x 128) is packed whole first, so that blocks can split the rows
     * too and A is read once, not once per column block. A large B (a training step's 128 x 784
     * times 784 x 512) keeps being packed by the block that uses it. */
    j.prepack = j.packb && k * n * (int64_t)es <= GEMM_PREPACK_BYTES && m >= 4 * n;
    /* A row-major B with more columns than A has rows (a weight in a backward pass: 128 x 512
     * times 512 x 512), on more than one thread: packed first, each thread packing whole rows of B
     * in chunks of GEMM_KROWS, then split by columns only. An optimizer step has just written the
     * weight's rows split between the cores the same way; read in place, every core read all of it,
     * half from the other core's cache, row by row a page apart (the product took 1.5x its time).
     * The packing reads a core's own rows in order; the tiles then read packed panels in order. Up to
 * GEMM_PACKK_BYTES and from GEMM_KC rows: a weight; a batch of inputs as B (x in a Hessian
 * product, 1000 x 784; x in a weight gradient g^T x, 128 rows) is larger or shorter, nobody writes it
 * during the step, and packing it on every product cost more than it saved. */
    j.packk = !j.packb && j.npa <= 2 * GEMM_BLOCK_PANELS && n > m && k >= GEMM_KC &&
              m * n * k > GEMM_SERIAL_FMAS && k * n * (int64_t)es <= GEMM_PACKK_BYTES &&
              ls_get_threads() > 1;
    if (j.packk) j.packb = j.prepack = true;
    int64_t rows = (j.npa - j.pa0) * GEMM_MR + (j.packb ? j.npb * nr : 0);   /* per unit of k */
    int64_t slab = rows ? GEMM_PACK_BYTES / (rows * (int64_t)es) : k;
    slab = slab < GEMM_KC ? GEMM_KC : slab / GEMM_KC * GEMM_KC;
    if (slab > k) slab = k;
    char *buf = NULL;
    if (rows && !(buf = ls_malloc((size_t)(rows * slab) * es, who))) return ls_error_code();
    j.Ap = buf;
    j.Bp = buf ? buf + (j.npa - j.pa0) * GEMM_MR * slab * (int64_t)es : NULL;
    gemm_plan(&j);
    bool serial = m * n * k <= GEMM_SERIAL_FMAS;
    int64_t blocks = gemm_cdiv(j.npa, j.mb) * j.nbc;
    for (j.k0 = 0; j.k0 < k; j.k0 += slab) {
        j.kb = k - j.k0 < slab ? k - j.k0 : slab;
        gemm_run(gemm_pack_a, &j, j.npa - j.pa0, true);   /* at most one ragged panel */
        if (j.packk) gemm_run(gemm_pack_b_rows, &j, gemm_cdiv(j.kb, GEMM_KROWS), serial);
        else if (j.prepack) gemm_run(gemm_pack_b, &j, j.npb, serial);
        gemm_run(gemm_blocks, &j, blocks, serial);
    }
    ls_free(buf);
    return LS_OK;
}

/* C = ct^T (+ bias, added as the transposed element is stored: one rounding, the same bits as the
 * untransposed path's addition at the end of each chain) */
#define GEMM_TRANSPOSE(T)                                                                          \
    do {                                                                                           \
        const T *s = (const T *)ct, *b = (const T *)bias;                                          \
        T *d = (T *)C;                                                                             \
        if (b)                                                                                     \
            for (int64_t i = 0; i < m; i++)                                                        \
                for (int64_t c = 0; c < n; c++) d[i * ldc + c] = s[c * m + i] + b[c];              \
        else                                                                                       \
            for (int64_t i = 0; i < m; i++)                                                        \
                for (int64_t c = 0; c < n; c++) d[i * ldc + c] = s[c * m + i];                     \
    } while (0)

ls_status ls_gemm(ls_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
                  int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                  const char *who)
{
    int nr;
    size_t es = ls_dtype_size(dt);
    gemm_tile_fn tile = gemm_tile_for(dt, &nr);
    if (!tile) {
        gemm_blas(dt, ta, tb, m, n, k, A, lda, B, ldb, 0.0, C, ldc);
        if (bias) gemm_add_bias(es, C, m, n, ldc, bias);
        return LS_OK;
    }
    int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1, brs = tb ? 1 : ldb, bcs = tb ? ldb : 1;
    bool narrow = n < nr / 4 && m > n;
    /* A B with strided columns is packed: k x n elements per product. The transposed product packs
     * A^T instead (k x m elements, none when A's columns are contiguous) and transposes C (m x n);
     * for a small batch times a weight's transpose (a training step's 32 x 784 times 784 x 256:
     * 25 088 + 8 192 against 200 704 elements) that is far less. On one thread only: with two,
     * each core would read all of the weight in place, half of it from the other core's cache
     * where the optimizer step just wrote it (the 784-512-512-10 MLP's 2-thread step took 1.27 ms
     * instead of 1.11 ms); packed by columns, each core reads only its half. */
    bool swap = !narrow && bcs != 1 && n > 1 && m >= nr / 4 &&
                2 * ((ars != 1 ? m * k : 0) + m * n) < k * n && ls_get_threads() == 1;
    if (!narrow && !swap)
        return gemm_own(tile, nr, dt, m, n, k, A, ars, acs, B, brs, bcs, C, ldc, bias, who);
    /* narrow or swapped: C^T [n, m] = B^T [n, k] . A^T [k, m], then transposed into C; every
     * element is the same chain of products in the same order, so the same bits */
    char *ct = ls_malloc((size_t)(n * m) * es, who);
    if (!ct) return ls_error_code();
    ls_status rc = gemm_own(tile, nr, dt, n, m, k, B, bcs, brs, A, acs, ars, ct, m, NULL, who);
    if (!rc) {
        if (dt == LS_F32) GEMM_TRANSPOSE(float);
        else GEMM_TRANSPOSE(double);
    }
    ls_free(ct);
    return rc;
}
