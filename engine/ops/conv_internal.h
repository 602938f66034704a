/* Internal to the convolution ops: shared between conv.c (ops, checks, im2col + BLAS path) and
 * conv_avx512.c (the register-blocked AVX-512 path). */
#ifndef LS_CONV_INTERNAL_H
#define LS_CONV_INTERNAL_H

#include <stdbool.h>

#include "ops/gemm.h"
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

/* The three kernels of the AVX-512 path (conv_avx512.c), on the tile gemm_tile_for gave. */
ls_status ck_forward(const conv_geom *g, ls_dtype dt, gemm_tile_fn tile, int nr,
                    const void *x, const void *w, void *y);
ls_status ck_input_grad(const conv_geom *g, ls_dtype dt, gemm_tile_fn tile, int nr,
                    const void *gy, const void *w, void *gx);
ls_status ck_weight_grad(const conv_geom *g, ls_dtype dt, gemm_tile_fn tile, int nr,
                    const void *x, const void *gy, void *gw);

/* The stride-1 kernels without column matrices (conv_direct.c): whether they serve g (AVX-512,
 * stride 1; the forward and the input gradient need Wo = W, the weight gradient C >= 8), and the
 * three kernels (preconditions as for ck_*). With add, the forward and the input gradient add
 * their result into what y / gx hold (y + result, the bits of a separate addition). */
bool cd_applies(const conv_geom *g, bool weight_grad);
ls_status cd_forward(const conv_geom *g, ls_dtype dt, const void *x, const void *w, void *y,
                     bool add);
ls_status cd_input_grad(const conv_geom *g, ls_dtype dt, const void *gy, const void *w, void *gx,
                        bool add);
ls_status cd_weight_grad(const conv_geom *g, ls_dtype dt, const void *x, const void *gy, void *gw);

#endif
