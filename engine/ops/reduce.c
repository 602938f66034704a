/* Reductions: sum, mean, var, std, max, min, argmax, argmin, norm, logsumexp, and sum_to (the adjoint
 * of expand). The kernels and their layout, determinism and accuracy notes are in reduce_kernel.c.
 *
 * Dims: an op reduces over the dims in attrs (0-based, negative counts from the end, each at most once)
 * or over all dims when none are given. keepdim keeps reduced dims as size 1.
 *
 * Backward rules are written with recorded ops and recompute what they need from the input (the
 * keepdim form of the same reduction), never from the op's own output. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/reduce_kernel.h"

/* ---------------------------------------------------------------------------------------------- */
/* forward: value reductions as one or two kernel passes (reduce_kernel.c)                          */
/* ---------------------------------------------------------------------------------------------- */

typedef enum { RF_SUM, RF_MEAN, RF_VAR, RF_STD, RF_MAX, RF_MIN, RF_NORM1, RF_NORM2, RF_NORMINF,
               RF_LSE } red_fn;

/* The whole forward of a value reduction over `red`. corr: var/std correction. */
static ls_tensor *reduce_values(const char *who, ls_tensor *x, const bool *red, bool keepdim,
                                red_fn fn, double corr)
{
    if (ls_check_float_same(who, 1, &x)) return NULL;
    red_plan p;
    plan_init(&p, x, red, keepdim);
    if (p.R == 0 && (fn == RF_MAX || fn == RF_MIN || fn == RF_NORMINF)) {
        ls_error_set(LS_ERR_ARG, "%s: cannot reduce over an empty dimension of tensor %s "
                     "(the result has no identity)", who, ls_tensor_shape_str(x));
        return NULL;
    }
    double *rowv = ls_malloc(sizeof(double) * (size_t)(p.O ? 2 * p.O : 1), "reduce");
    if (!rowv) {
        return NULL;
    }
    double *aux = rowv + p.O;   /* per-row centre for the two-pass kinds */
    double R = (double)p.R;
    ls_status rc = LS_OK;
    switch (fn) {
    case RF_SUM: rc = plan_run(&p, RK_SUM, NULL, rowv, NULL); break;
    case RF_MEAN:
        rc = plan_run(&p, RK_SUM, NULL, rowv, NULL);
        for (int64_t o = 0; o < p.O; o++) rowv[o] /= R;   /* 0/0 = NaN for an empty row */
        break;
    case RF_VAR:
    case RF_STD: {
        /* two passes: the mean, then the sum of squared deviations from it */
        rc = plan_run(&p, RK_SUM, NULL, aux, NULL);
        for (int64_t o = 0; o < p.O; o++) aux[o] /= R;
        if (!rc) rc = plan_run(&p, RK_SQDEV, aux, rowv, NULL);
        double dof = R - corr > 0 ? R - corr : 0.0;
        for (int64_t o = 0; o < p.O; o++) {
            rowv[o] = p.R ? rowv[o] / dof : NAN;
            if (fn == RF_STD) rowv[o] = sqrt(rowv[o]);
        }
        break;
    }
    case RF_MAX: rc = plan_run(&p, RK_MAX, NULL, rowv, NULL); break;
    case RF_MIN: rc = plan_run(&p, RK_MIN, NULL, rowv, NULL); break;
    case RF_NORM1: rc = plan_run(&p, RK_ABSSUM, NULL, rowv, NULL); break;
    case RF_NORM2:
        rc = plan_run(&p, RK_SQSUM, NULL, rowv, NULL);
        for (int64_t o = 0; o < p.O; o++) rowv[o] = sqrt(rowv[o]);
        break;
    case RF_NORMINF: rc = plan_run(&p, RK_ABSMAX, NULL, rowv, NULL); break;
    case RF_LSE: {
        /* max m, then m + log(sum exp(x - m)); a non-finite m (all -inf, any +inf, NaN) is the
         * answer itself */
        if (p.R == 0) {
            for (int64_t o = 0; o < p.O; o++) rowv[o] = -INFINITY;
            break;
        }
        rc = plan_run(&p, RK_MAX, NULL, aux, NULL);
        double *m = aux;
        if (!rc) {
            /* reuse rowv for the centres so aux keeps the maxima */
            for (int64_t o = 0; o < p.O; o++) rowv[o] = isfinite(m[o]) ? m[o] : 0.0;
            double *sums = ls_malloc(sizeof(double) * (size_t)p.O, "reduce");
            if (!sums) {
                rc = LS_ERR_MEM;
                break;
            }
            rc = plan_run(&p, RK_EXPSUM, rowv, sums, NULL);
            for (int64_t o = 0; o < p.O; o++) rowv[o] = isfinite(m[o]) ? m[o] + log(sums[o]) : m[o];
            ls_free(sums);
        }
        break;
    }
    }
    ls_tensor *out = rc ? NULL : plan_output(&p, x->dtype, rowv, NULL);
    ls_free(rowv);
    return out;
}

/* ---------------------------------------------------------------------------------------------- */
/* backward helpers                                                                                 */
/* ---------------------------------------------------------------------------------------------- */

/* g in the keepdim shape of the reduction (x's rank, 1 in reduced dims), so it broadcasts
 * against x. Borrowed when already so; otherwise a recorded reshape kept in tmp. */
static ls_tensor *grad_keepdim(ls_tmp *tmp, const ls_backward_ctx *c, ls_tensor *g, const bool *red)
{
    ls_tensor *x = c->in[0];
    if (c->attrs->keepdim || x->ndim == g->ndim) return g;
    int64_t shape[LS_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = red[d] ? 1 : x->shape[d];
    return ls_tmp_keep(tmp, ls_reshape(g, x->ndim, shape));
}

/* The same reduction of the input again, with keepdim (recorded). */
static ls_tensor *redo_keepdim(ls_tmp *tmp, const ls_backward_ctx *c, ls_op_id op)
{
    ls_attrs a = *c->attrs;
    a.keepdim = true;
    return ls_tmp_keep(tmp, ls_op_apply(op, c->in, &a));
}

/* Close a backward rule: free temporaries, report whether the gradient was made. */
static ls_status grad_done(ls_tmp *tmp, ls_tensor **gin)
{
    ls_tmp_free(tmp);
    return gin[0] ? LS_OK : (ls_error_code() ? ls_error_code() : LS_ERR_ARG);
}

/* Copy the typed wrapper's dims into attrs (ndims == 0: all dims). */
static bool attrs_dims(const char *who, ls_attrs *a, int ndims, const int *dims, bool keepdim)
{
    if (ndims < 0 || ndims > LS_MAX_DIMS) {
        ls_error_set(LS_ERR_ARG, "%s: %d dims given (at most %d)", who, ndims, LS_MAX_DIMS);
        return false;
    }
    a->ndims = ndims;
    if (ndims) memcpy(a->dims, dims, sizeof(int) * (size_t)ndims);
    a->all_dims = ndims == 0;
    a->keepdim = keepdim;
    return true;
}

static ls_tensor *reduce_apply(ls_op_id op, const char *who, ls_tensor *x, int ndims, const int *dims,
                               bool keepdim, int nnum, double num0)
{
    ls_attrs a = {.nnum = nnum, .num = {num0}};
    if (!attrs_dims(who, &a, ndims, dims, keepdim)) return NULL;
    return ls_op_apply(op, &x, &a);
}

/* ---- sum ---- */
static ls_tensor *sum_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("sum", in[0], a, red)) return NULL;
    return reduce_values("sum", in[0], red, a->keepdim, RF_SUM, 0);
}
static ls_status sum_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("sum", c->in[0], c->attrs, red)) return LS_ERR_ARG;
    ls_tmp tmp = {0};
    ls_tensor *gk = grad_keepdim(&tmp, c, g, red);
    gin[0] = ls_expand(gk, c->in[0]->ndim, c->in[0]->shape);
    return grad_done(&tmp, gin);
}
/* Shared by sum, mean, logsumexp: all dims, dim subsets in any order, negative dims, keepdim. */
static int reduce_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .attrs = {.all_dims = true}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}}, .attrs = {.ndims = 2, .dims = {0, 2}}};
    s[2] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}},
                          .attrs = {.ndims = 1, .dims = {-1}, .keepdim = true}};
    s[3] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}},
                          .attrs = {.ndims = 2, .dims = {1, 0}, .keepdim = true}};
    s[4] = (ls_op_sample){.ndim = {1}, .shape = {{5}}, .attrs = {.all_dims = true, .keepdim = true}};
    return 5;
}
const ls_op_def ls_op_sum = {"sum", 1, "T D? k?", sum_fwd, sum_bwd, reduce_samples};

ls_tensor *ls_sum(ls_tensor *x, int ndims, const int *dims, bool keepdim)
{
    return reduce_apply(LS_OP_SUM, "sum", x, ndims, dims, keepdim, 0, 0);
}

/* ---- mean ---- */
static ls_tensor *mean_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("mean", in[0], a, red)) return NULL;
    return reduce_values("mean", in[0], red, a->keepdim, RF_MEAN, 0);
}
static ls_status mean_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("mean", c->in[0], c->attrs, red)) return LS_ERR_ARG;
    ls_tmp tmp = {0};
    ls_tensor *gk = grad_keepdim(&tmp, c, g, red);
    ls_tensor *gs = ls_tmp_keep(&tmp, ls_mul_scalar(gk, 1.0 / (double)red_count(c->in[0], red)));
    gin[0] = ls_expand(gs, c->in[0]->ndim, c->in[0]->shape);
    return grad_done(&tmp, gin);
}
const ls_op_def ls_op_mean = {"mean", 1, "T D? k?", mean_fwd, mean_bwd, reduce_samples};

ls_tensor *ls_mean(ls_tensor *x, int ndims, const int *dims, bool keepdim)
{
    return reduce_apply(LS_OP_MEAN, "mean", x, ndims, dims, keepdim, 0, 0);
}

/* ---- var, std (correction in num[0]; NAN = 1, Bessel's correction, as torch) ---- */
static double attr_correction(const ls_attrs *a)
{
    return (a->nnum < 1 || isnan(a->num[0])) ? 1.0 : a->num[0];
}
static ls_tensor *var_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("var", in[0], a, red)) return NULL;
    return reduce_values("var", in[0], red, a->keepdim, RF_VAR, attr_correction(a));
}
static ls_tensor *std_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("std", in[0], a, red)) return NULL;
    return reduce_values("std", in[0], red, a->keepdim, RF_STD, attr_correction(a));
}
/* var: g * 2 (x - mean) / (N - correction); std = sqrt(var): g * (x - mean) / ((N - correction) std).
 * The mean (and std) are recomputed from x with keepdim. */
static ls_status var_std_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin, bool is_std)
{
    const char *who = is_std ? "std" : "var";
    ls_tensor *x = c->in[0];
    bool red[LS_MAX_DIMS];
    if (red_dims(who, x, c->attrs, red)) return LS_ERR_ARG;
    double dof = (double)red_count(x, red) - attr_correction(c->attrs);
    if (dof < 0) dof = 0;
    ls_tmp tmp = {0};
    ls_tensor *gk = grad_keepdim(&tmp, c, g, red);
    ls_tensor *m = redo_keepdim(&tmp, c, LS_OP_MEAN);
    ls_tensor *dev = ls_tmp_keep(&tmp, ls_sub(x, m));
    if (is_std) {
        ls_tensor *s = redo_keepdim(&tmp, c, LS_OP_STD);
        ls_tensor *q = ls_tmp_keep(&tmp, ls_div(gk, s));
        ls_tensor *d = ls_tmp_keep(&tmp, ls_mul_scalar(dev, 1.0 / dof));
        gin[0] = ls_mul(q, d);
    } else {
        ls_tensor *d = ls_tmp_keep(&tmp, ls_mul_scalar(dev, 2.0 / dof));
        gin[0] = ls_mul(gk, d);
    }
    return grad_done(&tmp, gin);
}
static ls_status var_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    return var_std_bwd(c, g, gin, false);
}
static ls_status std_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    return var_std_bwd(c, g, gin, true);
}
static int var_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .attrs = {.all_dims = true, .nnum = 1,
                                                                   .num = {NAN}}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}},
                          .attrs = {.ndims = 1, .dims = {1}, .nnum = 1, .num = {0}}};
    s[2] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}},
                          .attrs = {.ndims = 2, .dims = {0, -1}, .keepdim = true, .nnum = 1,
                                    .num = {NAN}}};
    s[3] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}},
                          .attrs = {.ndims = 1, .dims = {-1}, .keepdim = true, .nnum = 1, .num = {1}}};
    return 4;
}
const ls_op_def ls_op_var = {"var", 1, "T D? k? n?", var_fwd, var_bwd, var_samples};
const ls_op_def ls_op_std = {"std", 1, "T D? k? n?", std_fwd, std_bwd, var_samples};

ls_tensor *ls_var(ls_tensor *x, int ndims, const int *dims, bool keepdim, double correction)
{
    return reduce_apply(LS_OP_VAR, "var", x, ndims, dims, keepdim, 1, correction);
}
ls_tensor *ls_std(ls_tensor *x, int ndims, const int *dims, bool keepdim, double correction)
{
    return reduce_apply(LS_OP_STD, "std", x, ndims, dims, keepdim, 1, correction);
}

/* ---- max, min (values) ---- */
static ls_tensor *max_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("max", in[0], a, red)) return NULL;
    return reduce_values("max", in[0], red, a->keepdim, RF_MAX, 0);
}
static ls_tensor *min_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("min", in[0], a, red)) return NULL;
    return reduce_values("min", in[0], red, a->keepdim, RF_MIN, 0);
}
/* g shared equally by the elements equal to the extreme (torch.amax's convention):
 * mask = (x == max_keepdim), gx = mask * g / sum(mask). */
static ls_status extreme_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin, ls_op_id op)
{
    ls_tensor *x = c->in[0];
    bool red[LS_MAX_DIMS];
    if (red_dims(ls_ops[op]->name, x, c->attrs, red)) return LS_ERR_ARG;
    ls_tmp tmp = {0};
    ls_tensor *gk = grad_keepdim(&tmp, c, g, red);
    ls_tensor *m = redo_keepdim(&tmp, c, op);
    ls_tensor *mask = ls_tmp_keep(&tmp, ls_eq(x, m));
    ls_attrs ka = *c->attrs;
    ka.keepdim = true;
    ls_tensor *cnt = ls_tmp_keep(&tmp, ls_op_apply(LS_OP_SUM, &mask, &ka));
    ls_tensor *share = ls_tmp_keep(&tmp, ls_div(gk, cnt));
    gin[0] = ls_mul(mask, share);
    return grad_done(&tmp, gin);
}
static ls_status max_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    return extreme_bwd(c, g, gin, LS_OP_MAX);
}
static ls_status min_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    return extreme_bwd(c, g, gin, LS_OP_MIN);
}
static int extreme_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .attrs = {.all_dims = true}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}},
                          .attrs = {.ndims = 1, .dims = {1}, .keepdim = true}};
    s[2] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}}, .attrs = {.ndims = 2, .dims = {0, -1}}};
    return 3;
}
const ls_op_def ls_op_max = {"max", 1, "T D? k?", max_fwd, max_bwd, extreme_samples};
const ls_op_def ls_op_min = {"min", 1, "T D? k?", min_fwd, min_bwd, extreme_samples};

ls_tensor *ls_max(ls_tensor *x, int ndims, const int *dims, bool keepdim)
{
    return reduce_apply(LS_OP_MAX, "max", x, ndims, dims, keepdim, 0, 0);
}
ls_tensor *ls_min(ls_tensor *x, int ndims, const int *dims, bool keepdim)
{
    return reduce_apply(LS_OP_MIN, "min", x, ndims, dims, keepdim, 0, 0);
}

/* ---- argmax, argmin (i64, 0-based; no dim: flat index into the row-major order of all elements).
 * returns_index: the Lua binding adds 1. ---- */
static ls_tensor *arg_fwd(const char *who, ls_tensor *x, const ls_attrs *a, red_kind kind)
{
    if (ls_check_float_same(who, 1, &x)) return NULL;
    bool red[LS_MAX_DIMS] = {false};
    if (a->has_dim) {
        int d = a->dim;
        if (ls_check_dim(who, x->ndim, &d)) return NULL;
        if (x->ndim > 0) red[d] = true;
    } else {
        for (int d = 0; d < x->ndim; d++) red[d] = true;
    }
    red_plan p;
    plan_init(&p, x, red, a->keepdim);
    if (p.R == 0) {
        ls_error_set(LS_ERR_ARG, "%s: cannot reduce over an empty dimension of tensor %s", who,
                     ls_tensor_shape_str(x));
        return NULL;
    }
    size_t n = (size_t)(p.O ? p.O : 1);
    double *rowv = ls_malloc(sizeof(double) * n, "reduce");
    int64_t *rowi = ls_malloc(sizeof(int64_t) * n, "reduce");
    ls_tensor *out = NULL;
    if (rowv && rowi && plan_run(&p, kind, NULL, rowv, rowi) == LS_OK)
        out = plan_output(&p, LS_I64, rowv, rowi);
    ls_free(rowv);
    ls_free(rowi);
    return out;
}
static ls_tensor *argmax_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return arg_fwd("argmax", in[0], a, RK_ARGMAX);
}
static ls_tensor *argmin_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return arg_fwd("argmin", in[0], a, RK_ARGMIN);
}
const ls_op_def ls_op_argmax = {"argmax", 1, "T d? k?", argmax_fwd, NULL, NULL, true};
const ls_op_def ls_op_argmin = {"argmin", 1, "T d? k?", argmin_fwd, NULL, NULL, true};

/* dim < 0: over all elements (flat index); to count from the end, pass dim + ndim. */
ls_tensor *ls_argmax(ls_tensor *x, int dim, bool keepdim)
{
    ls_attrs a = {.dim = dim, .has_dim = dim >= 0, .ndims = dim >= 0, .dims = {dim},
                  .keepdim = keepdim};
    return ls_op_apply(LS_OP_ARGMAX, &x, &a);
}
ls_tensor *ls_argmin(ls_tensor *x, int dim, bool keepdim)
{
    ls_attrs a = {.dim = dim, .has_dim = dim >= 0, .ndims = dim >= 0, .dims = {dim},
                  .keepdim = keepdim};
    return ls_op_apply(LS_OP_ARGMIN, &x, &a);
}

/* ---- norm (p in num[0]: 1, 2 (NAN), inf) ---- */
static ls_status norm_p(const ls_attrs *a, double *p)
{
    *p = (a->nnum < 1 || isnan(a->num[0])) ? 2.0 : a->num[0];
    if (*p == 1.0 || *p == 2.0 || *p == INFINITY) return LS_OK;
    return ls_error_set(LS_ERR_ARG, "norm: p must be 1, 2 or inf, got %g", *p);
}
static ls_tensor *norm_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    double p;
    if (norm_p(a, &p) || red_dims("norm", in[0], a, red)) return NULL;
    red_fn fn = p == 1.0 ? RF_NORM1 : p == 2.0 ? RF_NORM2 : RF_NORMINF;
    return reduce_values("norm", in[0], red, a->keepdim, fn, 0);
}
/* p = 1: g sign(x).  p = 2: g x / n, with n = 0 replaced by 1 (x is 0 there, so the gradient is the
 * subgradient 0 and no NaN enters a second derivative).  p = inf: like max of |x|, times sign(x). */
static ls_status norm_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    bool red[LS_MAX_DIMS];
    double p;
    if (norm_p(c->attrs, &p) || red_dims("norm", x, c->attrs, red)) return LS_ERR_ARG;
    ls_tmp tmp = {0};
    ls_tensor *gk = grad_keepdim(&tmp, c, g, red);
    if (p == 1.0) {
        ls_tensor *sg = ls_tmp_keep(&tmp, ls_sign(x));
        gin[0] = ls_mul(gk, sg);
        return grad_done(&tmp, gin);
    }
    ls_tensor *n = redo_keepdim(&tmp, c, LS_OP_NORM);
    if (p == 2.0) {
        ls_tensor *zero = ls_tmp_keep(&tmp, ls_tensor_scalar(x->dtype, 0.0));
        ls_tensor *one = ls_tmp_keep(&tmp, ls_tensor_scalar(x->dtype, 1.0));
        ls_tensor *isz = ls_tmp_keep(&tmp, zero && n ? ls_eq(n, zero) : NULL);
        ls_tensor *safe = ls_tmp_keep(&tmp, one ? ls_where(isz, one, n) : NULL);
        ls_tensor *q = ls_tmp_keep(&tmp, ls_div(gk, safe));
        gin[0] = ls_mul(x, q);
        return grad_done(&tmp, gin);
    }
    ls_tensor *ax = ls_tmp_keep(&tmp, ls_abs(x));
    ls_tensor *mask = ls_tmp_keep(&tmp, ls_eq(ax, n));
    ls_attrs ka = *c->attrs;
    ka.keepdim = true;
    ls_tensor *cnt = ls_tmp_keep(&tmp, ls_op_apply(LS_OP_SUM, &mask, &ka));
    ls_tensor *sg = ls_tmp_keep(&tmp, ls_sign(x));
    ls_tensor *route = ls_tmp_keep(&tmp, ls_mul(mask, sg));
    ls_tensor *share = ls_tmp_keep(&tmp, ls_div(gk, cnt));
    gin[0] = ls_mul(route, share);
    return grad_done(&tmp, gin);
}
static int norm_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .attrs = {.all_dims = true, .nnum = 1,
                                                                   .num = {NAN}}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}},
                          .attrs = {.ndims = 2, .dims = {0, 2}, .nnum = 1, .num = {2}}};
    s[2] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .kind = {LS_SAMPLE_AWAY_FROM_ZERO},
                          .attrs = {.ndims = 1, .dims = {1}, .keepdim = true, .nnum = 1, .num = {1}}};
    s[3] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}}, .kind = {LS_SAMPLE_AWAY_FROM_ZERO},
                          .attrs = {.ndims = 1, .dims = {-1}, .nnum = 1, .num = {INFINITY}}};
    s[4] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .kind = {LS_SAMPLE_AWAY_FROM_ZERO},
                          .attrs = {.all_dims = true, .keepdim = true, .nnum = 1, .num = {INFINITY}}};
    return 5;
}
/* x:norm(p, dims, keepdim) */
const ls_op_def ls_op_norm = {"norm", 1, "T n? D? k?", norm_fwd, norm_bwd, norm_samples};

ls_tensor *ls_norm(ls_tensor *x, double p, int ndims, const int *dims, bool keepdim)
{
    return reduce_apply(LS_OP_NORM, "norm", x, ndims, dims, keepdim, 1, p);
}

/* ---- logsumexp ---- */
static ls_tensor *logsumexp_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("logsumexp", in[0], a, red)) return NULL;
    return reduce_values("logsumexp", in[0], red, a->keepdim, RF_LSE, 0);
}
/* g * exp(x - lse), i.e. g times the softmax over the reduced dims. */
static ls_status logsumexp_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    bool red[LS_MAX_DIMS];
    if (red_dims("logsumexp", c->in[0], c->attrs, red)) return LS_ERR_ARG;
    ls_tmp tmp = {0};
    ls_tensor *gk = grad_keepdim(&tmp, c, g, red);
    ls_tensor *l = redo_keepdim(&tmp, c, LS_OP_LOGSUMEXP);
    ls_tensor *d = ls_tmp_keep(&tmp, ls_sub(c->in[0], l));
    ls_tensor *sm = ls_tmp_keep(&tmp, ls_exp(d));
    gin[0] = ls_mul(gk, sm);
    return grad_done(&tmp, gin);
}
const ls_op_def ls_op_logsumexp = {"logsumexp", 1, "T D? k?", logsumexp_fwd, logsumexp_bwd,
                                   reduce_samples};

ls_tensor *ls_logsumexp(ls_tensor *x, int ndims, const int *dims, bool keepdim)
{
    return reduce_apply(LS_OP_LOGSUMEXP, "logsumexp", x, ndims, dims, keepdim, 0, 0);
}

/* ---- sum_to (shape in ints): the adjoint of expand ----
 * x's shape must be `shape` broadcast (NumPy rules): leading extra dims are summed away, and dims
 * where shape has 1 and x does not are summed with keepdim. */
static ls_tensor *sum_to_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0];
    int n = a->nints, lead = x->ndim - a->nints;
    bool red[LS_MAX_DIMS] = {false}, any = false;
    bool ok = n >= 0 && lead >= 0;
    for (int i = 0; ok && i < x->ndim; i++) {
        int si = i - lead;
        if (si < 0) red[i] = true;
        else if (a->ints[si] == 1 && x->shape[i] != 1) red[i] = true;
        else if (a->ints[si] != x->shape[i]) ok = false;
        any = any || red[i];
    }
    if (!ok) {
        char b[LS_SHAPE_STR_MAX];
        ls_error_set(LS_ERR_ARG, "sum_to: cannot sum %s down to %s", ls_tensor_shape_str(x),
                     ls_shape_str(n < 0 ? 0 : n, a->ints, b, sizeof b));
        return NULL;
    }
    if (!any) return ls_view_reshape(x, n, a->ints);   /* only leading 1s dropped: a view */
    if (ls_check_float_same("sum_to", 1, &x)) return NULL;
    ls_tensor *r = reduce_values("sum_to", x, red, true, RF_SUM, 0);
    if (!r) return NULL;
    ls_tensor *v = ls_view_reshape(r, n, a->ints);
    ls_tensor_release(r);
    return v;
}
static ls_status sum_to_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    gin[0] = ls_expand(g, c->in[0]->ndim, c->in[0]->shape);
    return gin[0] ? LS_OK : ls_error_code();
}
static int sum_to_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}}, .attrs = {.nints = 2, .ints = {3, 1}}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}}, .attrs = {.nints = 3, .ints = {1, 3, 4}}};
    s[2] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .attrs = {.nints = 0}};
    s[3] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .attrs = {.nints = 2, .ints = {3, 4}}};
    return 4;
}
const ls_op_def ls_op_sum_to = {"sum_to", 1, "T S", sum_to_fwd, sum_to_bwd, sum_to_samples};

ls_tensor *ls_sum_to(ls_tensor *x, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > LS_MAX_DIMS) {
        ls_error_set(LS_ERR_ARG, "sum_to: %d dimensions (at most %d supported)", ndim, LS_MAX_DIMS);
        return NULL;
    }
    ls_attrs a = {.nints = ndim};
    if (ndim) memcpy(a.ints, shape, sizeof(int64_t) * (size_t)ndim);
    return ls_op_apply(LS_OP_SUM_TO, &x, &a);
}
