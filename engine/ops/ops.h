/* Typed C entry points of every op (each defined next to its ls_op_def). All follow op.h: borrowed
 * inputs, new reference or NULL with the error set, NULL inputs propagate, recorded when grad mode is
 * on. Dims are 0-based; negative counts from the end. */
#ifndef LS_OPS_H
#define LS_OPS_H

#include "ops/op.h"

/* view_ops.c */
ls_tensor *ls_reshape(ls_tensor *t, int ndim, const int64_t *shape);
ls_tensor *ls_permute(ls_tensor *t, const int *perm);
ls_tensor *ls_transpose(ls_tensor *t, int d0, int d1);
ls_tensor *ls_narrow(ls_tensor *t, int dim, int64_t start, int64_t length);
ls_tensor *ls_select(ls_tensor *t, int dim, int64_t index);
ls_tensor *ls_squeeze(ls_tensor *t, int dim);      /* dim < 0: all size-1 dims */
ls_tensor *ls_unsqueeze(ls_tensor *t, int dim);
ls_tensor *ls_expand(ls_tensor *t, int ndim, const int64_t *shape);
ls_tensor *ls_contiguous(ls_tensor *t);
ls_tensor *ls_cast(ls_tensor *t, ls_dtype dtype);

/* elementwise.c — unary */
ls_tensor *ls_neg(ls_tensor *x);
ls_tensor *ls_exp(ls_tensor *x);
ls_tensor *ls_log(ls_tensor *x);
ls_tensor *ls_sqrt(ls_tensor *x);
ls_tensor *ls_abs(ls_tensor *x);
ls_tensor *ls_sign(ls_tensor *x);
ls_tensor *ls_relu(ls_tensor *x);
/* g where x > 0, else 0: relu's gradient (broadcasting) */
ls_tensor *ls_relu_backward(ls_tensor *g, ls_tensor *x);
ls_tensor *ls_tanh(ls_tensor *x);
ls_tensor *ls_sigmoid(ls_tensor *x);
ls_tensor *ls_softplus(ls_tensor *x);
ls_tensor *ls_erf(ls_tensor *x);
/* elementwise.c — binary with NumPy broadcasting; both inputs must share a float dtype */
ls_tensor *ls_add(ls_tensor *a, ls_tensor *b);
/* a += b in place, not recorded (autograd's accumulation of gradients it owns): same dtype and
 * shape, a dense (ls_tensor_is_dense). */
ls_status ls_add_inplace(ls_tensor *a, const ls_tensor *b);
ls_tensor *ls_sub(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_mul(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_div(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_pow(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_minimum(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_maximum(ls_tensor *a, ls_tensor *b);
/* scalar conveniences (a 0-d tensor of x's dtype) */
ls_tensor *ls_add_scalar(ls_tensor *x, double s);
ls_tensor *ls_mul_scalar(ls_tensor *x, double s);
ls_tensor *ls_pow_scalar(ls_tensor *x, double p);
ls_tensor *ls_clamp(ls_tensor *x, double lo, double hi);   /* NAN = unbounded on that side */
/* comparisons: 1/0 in the inputs' dtype, not differentiable */
ls_tensor *ls_eq(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_ne(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_lt(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_le(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_gt(ls_tensor *a, ls_tensor *b);
ls_tensor *ls_ge(ls_tensor *a, ls_tensor *b);
/* cond != 0 ? a : b, broadcasting all three */
ls_tensor *ls_where(ls_tensor *cond, ls_tensor *a, ls_tensor *b);

/* reduce.c — dims: ndims 0-based dims, ndims == 0 means all */
ls_tensor *ls_sum(ls_tensor *x, int ndims, const int *dims, bool keepdim);
ls_tensor *ls_mean(ls_tensor *x, int ndims, const int *dims, bool keepdim);
ls_tensor *ls_var(ls_tensor *x, int ndims, const int *dims, bool keepdim, double correction);
ls_tensor *ls_std(ls_tensor *x, int ndims, const int *dims, bool keepdim, double correction);
ls_tensor *ls_max(ls_tensor *x, int ndims, const int *dims, bool keepdim);
ls_tensor *ls_min(ls_tensor *x, int ndims, const int *dims, bool keepdim);
ls_tensor *ls_argmax(ls_tensor *x, int dim, bool keepdim);   /* dim < 0 with all: flat index; i64 */
ls_tensor *ls_argmin(ls_tensor *x, int dim, bool keepdim);
ls_tensor *ls_norm(ls_tensor *x, double p, int ndims, const int *dims, bool keepdim); /* p 1, 2, INF */
ls_tensor *ls_logsumexp(ls_tensor *x, int ndims, const int *dims, bool keepdim);
/* Sum x down to `shape` (the adjoint of broadcasting/expand). */
ls_tensor *ls_sum_to(ls_tensor *x, int ndim, const int64_t *shape);

/* linalg.c */
ls_tensor *ls_matmul(ls_tensor *a, ls_tensor *b);   /* torch.matmul semantics, batched broadcast */
ls_tensor *ls_linear(ls_tensor *x, ls_tensor *w, ls_tensor *b);   /* x @ w^T + b, one pass */
ls_tensor *ls_dot(ls_tensor *a, ls_tensor *b);      /* 1-D · 1-D -> 0-d */
ls_tensor *ls_outer(ls_tensor *a, ls_tensor *b);    /* 1-D ⊗ 1-D -> 2-D */

/* linalg_solve.c — A [n x n] (solve) or [m x n] (lstsq), B [rows] or [rows x k] */
ls_tensor *ls_linalg_solve(ls_tensor *A, ls_tensor *B);
ls_tensor *ls_linalg_lstsq(ls_tensor *A, ls_tensor *B);

/* diag.c — diagonal k (> 0 above the main one) */
ls_tensor *ls_diag(ls_tensor *x, int64_t k);   /* 1-D -> square 2-D, 2-D -> 1-D */
ls_tensor *ls_diag_embed(ls_tensor *x, int64_t k, int64_t m, int64_t n);   /* 1-D into [m x n] */
ls_tensor *ls_trace(ls_tensor *x);             /* 2-D -> 0-d */

/* join.c — n tensors (n >= 1) */
ls_tensor *ls_cat(int n, ls_tensor *const *ts, int dim);
ls_tensor *ls_stack(int n, ls_tensor *const *ts, int dim);   /* dim in 0..ndim (new) */

/* index.c — index tensors are i64 (0-based) */
ls_tensor *ls_gather(ls_tensor *x, int dim, ls_tensor *index);
ls_tensor *ls_scatter_add(ls_tensor *x, int dim, ls_tensor *index, ls_tensor *src);
ls_tensor *ls_index_select(ls_tensor *x, int dim, ls_tensor *index);
ls_tensor *ls_index_add(ls_tensor *x, int dim, ls_tensor *index, ls_tensor *src);

/* loss.c — scores [N x C], targets [N] i64 0-based; reduction LS_REDUCE_MEAN/SUM/NONE */
ls_tensor *ls_log_softmax(ls_tensor *x, int dim);
ls_tensor *ls_softmax(ls_tensor *x, int dim);
ls_tensor *ls_cross_entropy(ls_tensor *x, ls_tensor *y, int reduction);
ls_tensor *ls_nll_loss(ls_tensor *x, ls_tensor *y, int reduction);
ls_tensor *ls_mse_loss(ls_tensor *a, ls_tensor *b, int reduction);

#include "ops/nn_ops.h"
#include "ops/batchnorm.h"
#endif
