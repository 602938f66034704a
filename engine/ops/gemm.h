/* The engine's matrix product: one place for GEMM, used by matmul (linalg.c) and the convolutions
 * (conv.c, conv_avx512.c). Internal to engine/ops.
 *
 * Two paths. On CPUs with AVX-512 (checked at run time) the products run on the engine's own
 * register-blocked tiles and thread pool; elsewhere, or after ls_gemm_use_blas(true), on OpenBLAS.
 * The own path computes every element of C as ONE chain of fused multiply-adds over the inner index
 * in order, from zero, whatever the blocking or the thread count: its results are bitwise
 * independent of the number of threads (OpenBLAS's are reproducible only for a fixed count). */
#ifndef LS_GEMM_H
#define LS_GEMM_H

#include <stdbool.h>

#include "tensor/tensor.h"

/* Rows of A per tile (the register block is GEMM_MR rows x nr columns). */
#define GEMM_MR 12

/* C[r, c] (+)= sum_k A[r*rsa + k*ksa] B[k*ldb + c] for r < nrows (<= GEMM_MR), c < ncols (<= nr).
 * A is read for all the rows of the body chosen (12, 8 or 4 >= nrows): it must hold GEMM_MR rows
 * (zero padding, or anything finite: those rows are not stored). B and C are masked. acc: start from
 * C's old values instead of zero (the chain continues: splitting k this way changes no bit). */
typedef void (*gemm_tile_fn)(int64_t kk, const void *A, int64_t rsa, int64_t ksa, const void *B,
                             int64_t ldb, int ncols, void *C, int64_t ldc, int nrows, bool acc);

/* The AVX-512 tile for dt and its width *nr (32 floats or 16 doubles), or NULL (*nr = 0) when the
 * CPU lacks AVX-512 or the BLAS path is forced. */
gemm_tile_fn gemm_tile_for(ls_dtype dt, int *nr);

/* Interleave `rows` rows of M (element (r, k) at M[r*rs + k*ks]) into panels of `width` rows:
 * out[(r / width) * inner * width + k * width + r % width], rows past the end zero-filled. es is the
 * element size (4 or 8: a bit copy). */
void gemm_pack(size_t es, const void *M, int64_t rows, int64_t inner, int64_t rs, int64_t ks,
               int64_t width, void *out);

/* C [m, n] (row-major, row stride ldc) = op(A) [m, k] . op(B) [k, n] (+ bias), operands as for
 * BLAS (row-major with leading dimension lda / ldb, transposed when ta / tb). bias: NULL, or n
 * contiguous elements added to every row after the product (the bits of a separate addition).
 * m, n, k >= 1. Error (naming `who`) only when scratch memory runs out. */
ls_status ls_gemm(ls_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
                  int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                  const char *who);

/* C[r, c] += bias[c] for r < m, c < n (row stride ldc; es 4: float, 8: double). */
void gemm_add_bias(size_t es, void *C, int64_t m, int64_t n, int64_t ldc, const void *bias);

/* OpenBLAS, row-major: C = op(A) op(B) + beta C (ta/tb: transposed operand). */
void gemm_blas(ls_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
               int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc);

/* Which path runs: "avx512" or "blas". ls_gemm_use_blas(true) forces BLAS (tests and benchmarks;
 * not for concurrent use). */
const char *ls_gemm_path(void);
void ls_gemm_use_blas(bool on);

#endif
