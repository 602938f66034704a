/* Typed C entry points of the fused batch-norm ops (engine/ops/batchnorm.c). Same contract as
 * ops.h: borrowed inputs, a new reference or NULL with the error set, NULL inputs propagate,
 * recorded when grad mode is on. x is [N, C] or [N, C, d2, ...] (channels in dim 1, index 1);
 * every per-channel statistic is over all other dims, n = numel(x) / C values per channel.
 * See docs/ops-conv-pool.md. */
#ifndef LS_BATCHNORM_H
#define LS_BATCHNORM_H

#include "ops/op.h"

/* Training-mode batch norm: (x - mean) / sqrt(var + eps) * weight + bias with the batch mean and
 * the biased batch variance of each channel; weight and bias [C]. */
ls_tensor *ls_batchnorm(ls_tensor *x, ls_tensor *weight, ls_tensor *bias, double eps);
/* The same op, also handing back the batch statistics it used: *mean and *var (biased), [C] in
 * x's dtype, not recorded (new references; NULL on error). The result is recorded as a
 * batchnorm node, exactly as ls_batchnorm's; this only saves the caller a pass over x to get the
 * statistics for running averages. */
ls_tensor *ls_batchnorm_train(ls_tensor *x, ls_tensor *weight, ls_tensor *bias, double eps,
                              ls_tensor **mean, ls_tensor **var);
/* Per-channel sums for the backward: g [x's shape] -> [4, C] with rows
 *   0: sum(g),  1: sum(g * xhat),  2: mean(x),  3: invstd = 1 / sqrt(var(x) + eps),
 * where xhat = (x - mean) * invstd. Rows 0 and 1 are the bias and weight gradients. */
ls_tensor *ls_batchnorm_grad_stats(ls_tensor *g, ls_tensor *x, double eps);
/* The input gradient from those sums: with rows (A, B, mu, r) of stats [4, C] and n values per
 * channel, w * r * (g - A / n - (x - mu) * r * B / n); g and x [x's shape], w [C]. As a function
 * of its four inputs (stats need not come from grad_stats). */
ls_tensor *ls_batchnorm_input_grad(ls_tensor *g, ls_tensor *x, ls_tensor *weight,
                                   ls_tensor *stats);
/* K0 g + K1 (x - K2) + K3 with the rows K0..K3 of coeffs [4, C] broadcast per channel; g and x
 * [x's shape]. One pass; the second-order rules of batch norm are built from it. */
ls_tensor *ls_batchnorm_affine(ls_tensor *g, ls_tensor *x, ls_tensor *coeffs);

#endif
