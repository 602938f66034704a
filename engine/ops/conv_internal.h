/* Internal to the convolution ops: shared between conv.c (ops, checks, im2col + BLAS path) and
 * conv_avx512.c (the register-blocked AVX-512 path). */
#ifndef LS_CONV_INTERNAL_H
#define LS_CONV_INTERNAL_H

#include <stdbool.h>

#include "ops/ops.h"

/* The sizes of one convolution. K = C*kh*kw, P = Ho*Wo. */
typedef struct conv_geom {
    int64_t N, C, H, W, O, kh, kw, s, p, Ho, Wo, K, P;
} conv_geom;

typedef struct conv_job {
    const conv_geom *g;
    ls_dtype dt;
    const void *src;
    void *dst;
    int64_t n0;   /* first image of the slice */
    int64_t L;    /* leading dimension of the column buffer */
    int64_t is;   /* image stride of the column buffer */
} conv_job;

/* For kernel column j: the output columns b whose input column b s - p + j lies inside [0, W) are
 * [*lo, *hi). Same for rows with (i, H, Ho). */
void conv_valid(int64_t j, int64_t W, int64_t Wo, int64_t s, int64_t p, int64_t *lo,
                int64_t *hi);
/* ls_parallel_for bodies over (image, channel) items of a conv_job. */
void im2col_items(void *vj, int64_t begin, int64_t end);
void col2im_items(void *vj, int64_t begin, int64_t end);

/* C[r, c] (+)= sum_k A[r*rsa + k*ksa] B[k*ldb + c] for r < nrows (<= CK_MR), c < ncols (<= NR).
 * A is read for all the rows of the body chosen (12, 8 or 4 >= nrows): it must hold CK_MR rows
 * (zero padding, or anything finite: those rows are not stored). B and C are masked. */
typedef void (*ck_tile_fn)(int64_t kk, const void *A, int64_t rsa, int64_t ksa, const void *B,
                           int64_t ldb, int ncols, void *C, int64_t ldc, int nrows, bool acc);

/* The AVX-512 tile for dt (and its width *nr), or NULL when the CPU lacks AVX-512 or the BLAS path
 * is forced; then the three kernels below are not used. */
ck_tile_fn ck_tile_for(ls_dtype dt, int *nr);
ls_status ck_forward(const conv_geom *g, ls_dtype dt, ck_tile_fn tile, int nr,
                    const void *x, const void *w, void *y);
ls_status ck_input_grad(const conv_geom *g, ls_dtype dt, ck_tile_fn tile, int nr,
                    const void *gy, const void *w, void *gx);
ls_status ck_weight_grad(const conv_geom *g, ls_dtype dt, ck_tile_fn tile, int nr,
                    const void *x, const void *gy, void *gw);

#endif
