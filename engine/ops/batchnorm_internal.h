/* Internal to the batch-norm ops: the kernels (batchnorm.c) that the op definitions and rules
 * (batchnorm_ops.c) call. Arguments are checked here; NULL with the error set on failure. */
#ifndef LS_BATCHNORM_INTERNAL_H
#define LS_BATCHNORM_INTERNAL_H

#include "ops/op.h"

/* y = batchnorm(x, w, b); with mean/var non-NULL, also the batch statistics ([C], x's dtype). */
ls_tensor *bn_forward(ls_tensor *x, ls_tensor *w, ls_tensor *b, double eps, ls_tensor **mean,
                      ls_tensor **var);
ls_tensor *bn_grad_stats(ls_tensor *gr, ls_tensor *x, double eps);
/* The maps of batchnorm_input_grad, batchnorm_affine, and gr times a per-channel k ([C]): into a
 * new tensor, or with acc (contiguous, of gr's shape and dtype) added into acc, returned as a new
 * reference (what a rule given ls_backward_ctx.acc calls). */
ls_tensor *bn_input_grad(ls_tensor *gr, ls_tensor *x, ls_tensor *w, ls_tensor *st, ls_tensor *acc);
ls_tensor *bn_affine(ls_tensor *gr, ls_tensor *x, ls_tensor *K, ls_tensor *acc);
ls_tensor *bn_scale(ls_tensor *gr, ls_tensor *k, ls_tensor *acc);
/* The eps attribute of a batch-norm op (its default when absent or NaN). */
double bn_eps(const ls_attrs *a);

#endif
