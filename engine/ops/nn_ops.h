/* Typed C entry points of the convolution and pooling ops (engine/ops/conv.c, engine/ops/pool.c).
 * Same contract as ops.h: borrowed inputs, a new reference or NULL with the error set, NULL inputs
 * propagate, recorded when grad mode is on. Layout NCHW: x [N, C, H, W], conv weight
 * [O, C, kh, kw].
 * See docs/ops-conv-pool.md. */
#ifndef LS_NN_OPS_H
#define LS_NN_OPS_H

#include "ops/op.h"

/* conv.c — torch.nn.functional.conv2d(x, w, stride=stride, padding=padding): no bias, dilation or
 * groups. Output [N, O, (H + 2p - kh) / s + 1, (W + 2p - kw) / s + 1]. */
ls_tensor *ls_conv2d(ls_tensor *x, ls_tensor *w, int64_t stride, int64_t padding);
/* The adjoint of conv2d in x (a transposed convolution): g [N, O, Ho, Wo], w [O, C, kh, kw] ->
 * [N, C, h, w]; h, w are the forward input's height and width (several fit one Ho, Wo). */
ls_tensor *ls_conv2d_input_grad(ls_tensor *g, ls_tensor *w, int64_t stride, int64_t padding,
                                int64_t h, int64_t w_);
/* The adjoint of conv2d in w: x [N, C, H, W], g [N, O, Ho, Wo] -> [O, C, kh, kw]. */
ls_tensor *ls_conv2d_weight_grad(ls_tensor *x, ls_tensor *g, int64_t stride, int64_t padding,
                                 int64_t kh, int64_t kw);

/* The three conv kernels run their own AVX-512 code on CPUs that have it, else im2col + OpenBLAS
 * (see conv.c); ls_gemm_path() / ls_gemm_use_blas() in ops/gemm.h say which and switch. */

/* pool.c — windows kernel x kernel, stride `stride` (<= 0 means kernel), no padding:
 * output [N, C, (H - k) / s + 1, (W - k) / s + 1]. */
ls_tensor *ls_maxpool2d(ls_tensor *x, int64_t kernel, int64_t stride);
/* g [pooled shape] routed to the first maximum of each of x's windows (summed where windows
 * overlap): x's shape. The gradient of maxpool2d. */
ls_tensor *ls_maxpool2d_scatter(ls_tensor *x, ls_tensor *g, int64_t kernel, int64_t stride);
/* gg [x's shape] read at the first maximum of each of x's windows: the pooled shape. */
ls_tensor *ls_maxpool2d_pick(ls_tensor *x, ls_tensor *gg, int64_t kernel, int64_t stride);
ls_tensor *ls_avgpool2d(ls_tensor *x, int64_t kernel, int64_t stride);
/* The adjoint of avgpool2d: g [N, C, Ho, Wo] -> [N, C, h, w]. */
ls_tensor *ls_avgpool2d_backward(ls_tensor *g, int64_t kernel, int64_t stride, int64_t h,
                                 int64_t w);

#endif
