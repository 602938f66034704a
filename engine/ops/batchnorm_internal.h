/* Internal to the batch-norm ops: the kernels (batchnorm.c) that the op definitions and rules
 * (batchnorm_ops.c) call. Arguments are checked here; NULL with the error set on failure. */
#ifndef LS_BATCHNORM_INTERNAL_H
#define LS_BATCHNORM_INTERNAL_H

#include "ops/op.h"

/* y = batchnorm(x, w, b); with mean/var non-NULL, also the batch statistics ([C], x's dtype). */
ls_tensor *bn_forward(ls_tensor *x, ls_tensor *w, ls_tensor *b, double eps, ls_tensor **mean,
                      ls_tensor **var);
ls_tensor *bn_grad_stats(ls_tensor *gr, ls_tensor *x, double eps);
ls_tensor *bn_input_grad(ls_tensor *gr, ls_tensor *x, ls_tensor *w, ls_tensor *st);
ls_tensor *bn_affine(ls_tensor *gr, ls_tensor *x, ls_tensor *K);
/* The eps attribute of a batch-norm op (its default when absent or NaN). */
double bn_eps(const ls_attrs *a);

#endif
