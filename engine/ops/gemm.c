/* The engine's GEMM (see gemm.h): AVX-512 register tiles on the engine's pool, or OpenBLAS.
 *
 * Own path, C = A . B with m x k and k x n operands of any strides:
 *   1. Pack (in parallel over panels): A into panels of GEMM_MR rows [k][GEMM_MR], B into panels of
 *      nr columns [k][nr] (zero-padded), for a slab of the inner index at a time (the whole of k
 *      unless the packed copies would pass GEMM_PACK_BYTES).
 *   2. Compute (in parallel over blocks of the output): each block walks the slab in steps of
 *      GEMM_KC (a B panel of GEMM_KC x nr stays in L1 while the block's A panels stream from L2)
 *      and calls the tile for each (row panel, column panel), continuing each element's chain.
 * Every element of C is thus one chain of fused multiply-adds over k in order whatever the block
 * sizes, the slabs or the thread count, so results do not depend on the threads. A narrow product
 * (n < nr / 2, e.g. a last layer of 10 classes) is computed as C^T = B^T A^T into a scratch and
 * transposed: the same products in the same order, with the tile's columns along m. */
#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/gemm.h"

/* As in elementwise.c: GCC 12's -O2 vectorises the short row loops only if asked. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define GEMM_HAVE 1
#include <immintrin.h>
#else
#define GEMM_HAVE 0
#endif

#define GEMM_KC 256                              /* inner-index step of the compute loop */
#define GEMM_BLOCK_PANELS 8                      /* at most this many panels per block side */
#define GEMM_PACK_BYTES ((int64_t)32 << 20)      /* packed A + B of one slab, roughly */
#define GEMM_SERIAL_FMAS ((int64_t)1 << 18)      /* smaller products run on the calling thread */

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

/* 12 x 32 floats (or 12 x 16 doubles), with narrower bodies for the remainders. */
__attribute__((target("avx512f"))) static void gemm_tile_f32(GEMM_ARGS)
{
    bool one = ncols <= 16;
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

void gemm_pack(size_t es, const void *M, int64_t rows, int64_t inner, int64_t rs, int64_t ks,
               int64_t width, void *out)
{
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

/* ---- own path ---- */
typedef struct gemm_job {
    gemm_tile_fn tile;
    int nr;
    size_t es;
    int64_t m, n, k;          /* the whole product */
    const char *A, *B;        /* operands with their strides (elements) */
    int64_t ars, acs, brs, bcs;
    int64_t k0, kb;           /* the current slab [k0, k0 + kb) */
    char *Ap, *Bp;            /* its packed panels: [ceil(m/MR)][kb][MR], [ceil(n/nr)][kb][nr] */
    int64_t npa;              /* A panels (B panels follow them in the packing items) */
    char *C;
    int64_t ldc;
    int64_t mb, nb, nbc;      /* block sizes in panels, column blocks per row of blocks */
} gemm_job;

static int64_t gemm_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void gemm_pack_items(void *vj, int64_t begin, int64_t end)
{
    const gemm_job *j = vj;
    size_t es = j->es;
    for (int64_t it = begin; it < end; it++) {
        if (it < j->npa) {
            int64_t r0 = it * GEMM_MR, h = j->m - r0 < GEMM_MR ? j->m - r0 : GEMM_MR;
            gemm_pack(es, j->A + (r0 * j->ars + j->k0 * j->acs) * (int64_t)es, h, j->kb, j->ars,
                      j->acs, GEMM_MR, j->Ap + it * j->kb * GEMM_MR * (int64_t)es);
        } else {
            int64_t q = it - j->npa, c0 = q * j->nr, w = j->n - c0 < j->nr ? j->n - c0 : j->nr;
            gemm_pack(es, j->B + (c0 * j->bcs + j->k0 * j->brs) * (int64_t)es, w, j->kb, j->bcs,
                      j->brs, j->nr, j->Bp + q * j->kb * j->nr * (int64_t)es);
        }
    }
}

static void gemm_blocks(void *vj, int64_t begin, int64_t end)
{
    const gemm_job *j = vj;
    size_t es = j->es;
    int64_t nr = j->nr;
    for (int64_t it = begin; it < end; it++) {
        int64_t p0 = it / j->nbc * j->mb, q0 = it % j->nbc * j->nb;   /* first panels */
        int64_t p1 = p0 + j->mb, q1 = q0 + j->nb;
        if (p1 > gemm_cdiv(j->m, GEMM_MR)) p1 = gemm_cdiv(j->m, GEMM_MR);
        if (q1 > gemm_cdiv(j->n, nr)) q1 = gemm_cdiv(j->n, nr);
        for (int64_t kc = 0; kc < j->kb; kc += GEMM_KC) {
            int64_t kk = j->kb - kc < GEMM_KC ? j->kb - kc : GEMM_KC;
            bool acc = j->k0 + kc > 0;
            for (int64_t q = q0; q < q1; q++) {
                const char *bp = j->Bp + (q * j->kb + kc) * nr * (int64_t)es;
                int ncols = (int)(j->n - q * nr < nr ? j->n - q * nr : nr);
                for (int64_t p = p0; p < p1; p++) {
                    int64_t r0 = p * GEMM_MR;
                    j->tile(kk, j->Ap + (p * j->kb + kc) * GEMM_MR * (int64_t)es, 1, GEMM_MR, bp,
                            nr, ncols, j->C + (r0 * j->ldc + q * nr) * (int64_t)es, j->ldc,
                            (int)(j->m - r0 < GEMM_MR ? j->m - r0 : GEMM_MR), acc);
                }
            }
        }
    }
}

/* Block sizes: split the row panels (and column panels) into as few blocks of at most
 * GEMM_BLOCK_PANELS as possible, of even sizes; then halve the larger side while there are fewer
 * blocks than 2 per thread (the split does not change any result). */
static void gemm_plan(gemm_job *j)
{
    int64_t pa = gemm_cdiv(j->m, GEMM_MR), pb = gemm_cdiv(j->n, j->nr);
    int64_t ba = gemm_cdiv(pa, GEMM_BLOCK_PANELS), bb = gemm_cdiv(pb, GEMM_BLOCK_PANELS);
    int64_t want = 2 * (int64_t)ls_get_threads();
    while (ba * bb < want && (ba < pa || bb < pb)) {
        if (gemm_cdiv(pa, ba) >= gemm_cdiv(pb, bb) && ba < pa) ba++;
        else if (bb < pb) bb++;
        else ba++;
    }
    j->mb = gemm_cdiv(pa, ba);
    j->nb = gemm_cdiv(pb, bb);
    j->nbc = gemm_cdiv(pb, j->nb);
}

static void gemm_run(ls_parallel_fn fn, gemm_job *j, int64_t items, bool serial)
{
    if (serial) fn(j, 0, items);
    else ls_parallel_for(items, 1, fn, j);
}

static ls_status gemm_own(gemm_tile_fn tile, int nr, ls_dtype dt, int64_t m, int64_t n, int64_t k,
                          const void *A, int64_t ars, int64_t acs, const void *B, int64_t brs,
                          int64_t bcs, void *C, int64_t ldc, const char *who)
{
    size_t es = ls_dtype_size(dt);
    gemm_job j = {tile, nr, es, m, n, k, A, B, ars, acs, brs, bcs, 0, 0, NULL, NULL,
                  gemm_cdiv(m, GEMM_MR), C, ldc, 0, 0, 0};
    int64_t rows = j.npa * GEMM_MR + gemm_cdiv(n, nr) * nr;   /* packed elements per unit of k */
    int64_t slab = GEMM_PACK_BYTES / (rows * (int64_t)es);
    slab = slab < GEMM_KC ? GEMM_KC : slab / GEMM_KC * GEMM_KC;
    if (slab > k) slab = k;
    char *buf = ls_malloc((size_t)(rows * slab) * es, who);
    if (!buf) return ls_error_code();
    j.Ap = buf;
    j.Bp = buf + j.npa * GEMM_MR * slab * (int64_t)es;
    gemm_plan(&j);
    bool serial = m * n * k <= GEMM_SERIAL_FMAS;
    int64_t blocks = gemm_cdiv(j.npa, j.mb) * j.nbc;
    for (j.k0 = 0; j.k0 < k; j.k0 += slab) {
        j.kb = k - j.k0 < slab ? k - j.k0 : slab;
        gemm_run(gemm_pack_items, &j, j.npa + gemm_cdiv(n, nr), serial);
        gemm_run(gemm_blocks, &j, blocks, serial);
    }
    ls_free(buf);
    return LS_OK;
}

#define GEMM_TRANSPOSE(T)                                                                          \
    do {                                                                                           \
        const T *s = (const T *)ct;                                                                \
        T *d = (T *)C;                                                                             \
        for (int64_t i = 0; i < m; i++)                                                            \
            for (int64_t c = 0; c < n; c++) d[i * ldc + c] = s[c * m + i];                         \
    } while (0)

ls_status ls_gemm(ls_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
                  int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const char *who)
{
    int nr;
    gemm_tile_fn tile = gemm_tile_for(dt, &nr);
    if (!tile) {
        gemm_blas(dt, ta, tb, m, n, k, A, lda, B, ldb, 0.0, C, ldc);
        return LS_OK;
    }
    int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1, brs = tb ? 1 : ldb, bcs = tb ? ldb : 1;
    if (n >= nr / 2 || m <= n)
        return gemm_own(tile, nr, dt, m, n, k, A, ars, acs, B, brs, bcs, C, ldc, who);
    /* narrow: C^T [n, m] = B^T [n, k] . A^T [k, m], then transposed into C */
    size_t es = ls_dtype_size(dt);
    char *ct = ls_malloc((size_t)(n * m) * es, who);
    if (!ct) return ls_error_code();
    ls_status rc = gemm_own(tile, nr, dt, n, m, k, B, bcs, brs, A, acs, ars, ct, m, who);
    if (!rc) {
        if (dt == LS_F32) GEMM_TRANSPOSE(float);
        else GEMM_TRANSPOSE(double);
    }
    ls_free(ct);
    return rc;
}
