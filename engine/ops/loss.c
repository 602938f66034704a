/* Softmax family and losses: log_softmax, softmax, cross_entropy (fused log-softmax + NLL), nll_loss,
 * mse_loss, and one_hot (a constant, not differentiable).
 *
 * Losses take [N, C] scores and N class indices (0-based in C; the Lua binding converts from 1-based),
 * with a reduction stored in num[0] (LS_REDUCE_MEAN, _SUM, _NONE). The fused kernels compute in one pass
 * per row with the max subtracted (stable); their backward rules are written with recorded ops
 * (log_softmax, exp, mul, ...), so second derivatives — Hessian-vector products of a cross-entropy
 * loss — come out exact. */
#include <math.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/ops.h"

/* ---- helpers ---- */

static ls_status ls_check_scores(const char *who, const ls_tensor *x, const ls_tensor *y)
{
    if (!ls_dtype_is_float(x->dtype))
        return ls_error_set(LS_ERR_ARG, "%s: scores must be f32 or f64, got %s", who,
                            ls_dtype_name(x->dtype));
    if (x->ndim != 2)
        return ls_error_set(LS_ERR_ARG, "%s: scores must be [N x C], got %s", who,
                            ls_tensor_shape_str(x));
    if (y->dtype != LS_I64 || y->ndim != 1 || y->shape[0] != x->shape[0])
        return ls_error_set(LS_ERR_ARG, "%s: targets must be %lld class indices (i64 [%lld]), got %s %s",
                            who, (long long)x->shape[0], (long long)x->shape[0],
                            ls_dtype_name(y->dtype), ls_tensor_shape_str(y));
    const int64_t *t = ls_tensor_data(y);
    for (int64_t i = 0; i < y->shape[0]; i++) {
        int64_t v = t[i * y->stride[0]];
        if (v < 0 || v >= x->shape[1])
            return ls_error_set(LS_ERR_ARG, "%s: target %lld of sample %lld out of range for %lld "
                                "classes (labels are 1..%lld in Lua)", who, (long long)v + 1,
                                (long long)i + 1, (long long)x->shape[1], (long long)x->shape[1]);
    }
    return LS_OK;
}

/* one_hot(y, C) in dtype: constant */
static ls_tensor *ls_one_hot_raw(const ls_tensor *y, int64_t c, ls_dtype dtype)
{
    int64_t shape[2] = {y->shape[0], c};
    ls_tensor *o = ls_tensor_zeros(dtype, 2, shape);
    if (!o) return NULL;
    const int64_t *t = ls_tensor_data(y);
    for (int64_t i = 0; i < shape[0]; i++) {
        int64_t v = t[i * y->stride[0]];
        if (v >= 0 && v < c) ls_tensor_set(o, (int64_t[]){i, v}, 1.0);
    }
    return o;
}

/* The gradient scale of a reduced loss as a tensor broadcastable to [N, C]: g/N, g or g[:, None]. */
static ls_tensor *ls_loss_gscale(ls_tensor *g, int reduction, int64_t n)
{
    if (reduction == LS_REDUCE_NONE) return ls_unsqueeze(g, 1);
    if (reduction == LS_REDUCE_SUM) return ls_tensor_retain(g);
    return ls_mul_scalar(g, n > 0 ? 1.0 / (double)n : 0.0);
}

/* ---- the row kernel: log-sum-exp of each row of a [N x C] matrix (any strides), and optionally
 * the row's softmax or log-softmax into a contiguous [N x C] output in the same pass ---- */
typedef struct {
    const ls_tensor *x;
    double *lse;
    void *out;   /* NULL: the log-sum-exps only */
    bool logp;
} ls_lse_ctx;

/* In double for both dtypes, with libm's exp (inlined exp_f64 is slower when the loop cannot be
 * vectorised: strided rows, a few classes). A softmax row reuses the exps of its sum: e_j / s, one
 * exp per element; rows of more than LSE_KEEP classes compute them again. */
#define LSE_KEEP 256
#define LSE_ROW(T)                                                                                 \
    do {                                                                                           \
        const T *r = (const T *)ls_tensor_data(x) + i * s0;                                        \
        double m = -INFINITY, s = 0, e[LSE_KEEP];                                                  \
        for (int64_t j = 0; j < C; j++) m = fmax(m, r[j * s1]);                                    \
        for (int64_t j = 0; j < C; j++) {                                                          \
            double v = exp(r[j * s1] - m);                                                         \
            if (j < LSE_KEEP) e[j] = v;                                                            \
            s += v;                                                                                \
        }                                                                                          \
        double l = m + log(s);                                                                     \
        c->lse[i] = l;                                                                             \
        T *o = c->out ? (T *)c->out + i * C : NULL;                                                \
        if (o && c->logp)                                                                          \
            for (int64_t j = 0; j < C; j++) o[j] = (T)(r[j * s1] - l);                             \
        else if (o)                                                                                \
            for (int64_t j = 0; j < C; j++)                                                        \
                o[j] = (T)(j < LSE_KEEP ? e[j] / s : exp(r[j * s1] - l));                          \
    } while (0)

static void ls_lse_rows(void *vctx, int64_t begin, int64_t end)
{
    const ls_lse_ctx *c = vctx;
    const ls_tensor *x = c->x;
    int64_t C = x->shape[1], s0 = x->stride[0], s1 = x->stride[1];
    for (int64_t i = begin; i < end; i++) {
        if (x->dtype == LS_F32) LSE_ROW(float);
        else LSE_ROW(double);
    }
}

/* The log-sum-exp of each row (ls_malloc'd), and with out != NULL its (log-)softmax written there. */
static double *ls_row_lse(const ls_tensor *x, void *out, bool logp)
{
    double *lse = ls_malloc(sizeof(double) * (size_t)(x->shape[0] ? x->shape[0] : 1), "softmax");
    if (!lse) return NULL;
    ls_lse_ctx c = {x, lse, out, logp};
    /* ~2048 exps a chunk (~10 us): a [1000 x 10] batch of scores is 5 chunks */
    int64_t grain = x->shape[1] > 0 ? 2048 / x->shape[1] + 1 : 2048;
    ls_parallel_for(x->shape[0], grain, ls_lse_rows, &c);
    return lse;
}

/* ---- log_softmax (over dim, default the last) ---- */

/* Move `dim` last and flatten the rest: a contiguous [rows x C] tensor (a copy unless dim is last). */
static ls_tensor *ls_rows_of(ls_tensor *x, int dim, int *perm)
{
    int n = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != dim) perm[n++] = i;
    perm[n] = dim;
    ls_tensor *p = ls_view_permute(x, perm);
    ls_tensor *c = p ? ls_tensor_contiguous(p) : NULL;
    ls_tensor_release(p);
    if (!c) return NULL;
    int64_t shape[2] = {x->shape[dim] ? ls_tensor_numel(x) / x->shape[dim] : 0, x->shape[dim]};
    ls_tensor *r = ls_view_reshape(c, 2, shape);
    ls_tensor_release(c);
    return r;
}

static ls_tensor *softmax_common(ls_tensor *const *in, const ls_attrs *a, bool logp, const char *who)
{
    ls_tensor *x = in[0];
    if (ls_check_float_same(who, 1, in)) return NULL;
    if (x->ndim == 0) {
        ls_error_set(LS_ERR_ARG, "%s: expected at least 1 dimension, got a 0-d tensor", who);
        return NULL;
    }
    int dim = a->has_dim ? a->dim : -1;
    if (ls_check_dim(who, x->ndim, &dim)) return NULL;
    int perm[LS_MAX_DIMS];
    ls_tensor *rows = ls_rows_of(x, dim, perm);
    ls_tensor *outr = rows ? ls_tensor_new(x->dtype, 2, rows->shape) : NULL;
    double *lse = outr ? ls_row_lse(rows, ls_tensor_data(outr), logp) : NULL;
    ls_tensor *out = NULL;
    if (lse) {
        /* back to x's layout: unflatten to the permuted shape, undo the permutation */
        int64_t pshape[LS_MAX_DIMS];
        int inv[LS_MAX_DIMS];
        for (int i = 0; i < x->ndim; i++) {
            pshape[i] = x->shape[perm[i]];
            inv[perm[i]] = i;
        }
        ls_tensor *u = ls_view_reshape(outr, x->ndim, pshape);
        ls_tensor *v = u ? ls_view_permute(u, inv) : NULL;
        out = v ? ls_tensor_contiguous(v) : NULL;
        ls_tensor_release(u);
        ls_tensor_release(v);
    }
    ls_tensor_release(outr);
    ls_free(lse);
    ls_tensor_release(rows);
    return out;
}

static ls_tensor *log_softmax_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return softmax_common(in, a, true, "log_softmax");
}
/* d/dx log_softmax: g - softmax(x) * sum(g) */
static ls_status log_softmax_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    int dim = c->attrs->has_dim ? c->attrs->dim : -1;
    ls_check_dim("log_softmax", c->in[0]->ndim, &dim);
    ls_tmp t = {0};
    ls_tensor *s = ls_tmp_keep(&t, ls_softmax(c->in[0], dim));
    ls_tensor *sg = ls_tmp_keep(&t, ls_sum(g, 1, &dim, true));
    gin[0] = ls_sub(g, ls_tmp_keep(&t, ls_mul(s, sg)));
    ls_tmp_free(&t);
    return gin[0] ? LS_OK : ls_error_code();
}
static int softmax_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 2}}, .attrs = {.dim = 1, .has_dim = true}};
    return 2;
}
const ls_op_def ls_op_log_softmax = {.name = "log_softmax", .nin = 1, .lua_sig = "T d?",
                                     .forward = log_softmax_fwd, .backward = log_softmax_bwd,
                                     .samples = softmax_samples};

ls_tensor *ls_log_softmax(ls_tensor *x, int dim)
{
    ls_attrs a = {.dim = dim, .has_dim = true};
    return ls_op_apply(LS_OP_LOG_SOFTMAX, &x, &a);
}

static ls_tensor *softmax_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return softmax_common(in, a, false, "softmax");
}
/* d/dx softmax: s * (g - sum(g * s)) */
static ls_status softmax_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    int dim = c->attrs->has_dim ? c->attrs->dim : -1;
    ls_check_dim("softmax", c->in[0]->ndim, &dim);
    ls_tmp t = {0};
    ls_tensor *s = ls_tmp_keep(&t, ls_softmax(c->in[0], dim));
    ls_tensor *gs = ls_tmp_keep(&t, ls_sum(ls_tmp_keep(&t, ls_mul(g, s)), 1, &dim, true));
    gin[0] = ls_mul(s, ls_tmp_keep(&t, ls_sub(g, gs)));
    ls_tmp_free(&t);
    return gin[0] ? LS_OK : ls_error_code();
}
const ls_op_def ls_op_softmax = {.name = "softmax", .nin = 1, .lua_sig = "T d?",
                                 .forward = softmax_fwd, .backward = softmax_bwd,
                                 .samples = softmax_samples};

ls_tensor *ls_softmax(ls_tensor *x, int dim)
{
    ls_attrs a = {.dim = dim, .has_dim = true};
    return ls_op_apply(LS_OP_SOFTMAX, &x, &a);
}

/* ---- cross_entropy(scores [N x C], targets [N]) ---- */

static ls_tensor *ls_reduce_losses(ls_tensor *per, int reduction)
{
    if (reduction == LS_REDUCE_NONE) return per;
    ls_tensor *r = reduction == LS_REDUCE_SUM ? ls_sum(per, 0, NULL, false)
                                              : ls_mean(per, 0, NULL, false);
    ls_tensor_release(per);
    return r;
}

static ls_tensor *cross_entropy_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0], *y = in[1];
    if (ls_check_scores("cross_entropy", x, y)) return NULL;
    double *lse = ls_row_lse(x, NULL, false);
    if (!lse) return NULL;
    ls_tensor *per = ls_tensor_new(x->dtype, 1, x->shape);
    if (per) {
        const int64_t *t = ls_tensor_data(y);
        for (int64_t i = 0; i < x->shape[0]; i++)
            ls_tensor_set(per, &i, lse[i] - ls_tensor_get(x, (int64_t[]){i, t[i * y->stride[0]]}));
    }
    ls_free(lse);
    bool prev = ls_set_grad_enabled(false);   /* the reduction is part of this op, not recorded */
    ls_tensor *out = per ? ls_reduce_losses(per, (int)a->num[0]) : NULL;
    ls_set_grad_enabled(prev);
    return out;
}
/* d/dx: (softmax(x) - onehot(y)) * gscale, with softmax recorded so it differentiates again */
static ls_status cross_entropy_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    ls_tmp t = {0};
    ls_tensor *s = ls_tmp_keep(&t, ls_softmax(x, 1));
    ls_tensor *oh = ls_tmp_keep(&t, ls_one_hot_raw(c->in[1], x->shape[1], x->dtype));
    ls_tensor *d = ls_tmp_keep(&t, ls_sub(s, oh));
    ls_tensor *gs = ls_tmp_keep(&t, ls_loss_gscale(g, (int)c->attrs->num[0], x->shape[0]));
    gin[0] = ls_mul(d, gs);
    ls_tmp_free(&t);
    return gin[0] ? LS_OK : ls_error_code();
}
static int loss_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 1}, .shape = {{4, 3}, {4}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX}, .index_hi = 3,
                          .attrs = {.nnum = 1, .num = {LS_REDUCE_MEAN}}};
    s[1] = s[0];
    s[1].attrs.num[0] = LS_REDUCE_SUM;
    s[2] = s[0];
    s[2].attrs.num[0] = LS_REDUCE_NONE;
    return 3;
}
const ls_op_def ls_op_cross_entropy = {.name = "cross_entropy", .nin = 2, .lua_sig = "T X R?",
                                       .forward = cross_entropy_fwd, .backward = cross_entropy_bwd,
                                       .samples = loss_samples};

ls_tensor *ls_cross_entropy(ls_tensor *x, ls_tensor *y, int reduction)
{
    ls_attrs a = {.nnum = 1, .num = {reduction}};
    return ls_op_apply(LS_OP_CROSS_ENTROPY, (ls_tensor *[]){x, y}, &a);
}

/* ---- nll_loss(log-probabilities [N x C], targets [N]) = -logp[i, y_i] ---- */

static ls_tensor *nll_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0], *y = in[1];
    if (ls_check_scores("nll_loss", x, y)) return NULL;
    ls_tensor *per = ls_tensor_new(x->dtype, 1, x->shape);
    if (!per) return NULL;
    const int64_t *t = ls_tensor_data(y);
    for (int64_t i = 0; i < x->shape[0]; i++)
        ls_tensor_set(per, &i, -ls_tensor_get(x, (int64_t[]){i, t[i * y->stride[0]]}));
    bool prev = ls_set_grad_enabled(false);
    ls_tensor *out = ls_reduce_losses(per, (int)a->num[0]);
    ls_set_grad_enabled(prev);
    return out;
}
static ls_status nll_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    ls_tmp t = {0};
    ls_tensor *oh = ls_tmp_keep(&t, ls_one_hot_raw(c->in[1], x->shape[1], x->dtype));
    ls_tensor *gs = ls_tmp_keep(&t, ls_loss_gscale(g, (int)c->attrs->num[0], x->shape[0]));
    gin[0] = ls_neg(ls_tmp_keep(&t, ls_mul(oh, gs)));
    ls_tmp_free(&t);
    return gin[0] ? LS_OK : ls_error_code();
}
const ls_op_def ls_op_nll_loss = {.name = "nll_loss", .nin = 2, .lua_sig = "T X R?",
                                  .forward = nll_fwd, .backward = nll_bwd, .samples = loss_samples};

ls_tensor *ls_nll_loss(ls_tensor *x, ls_tensor *y, int reduction)
{
    ls_attrs a = {.nnum = 1, .num = {reduction}};
    return ls_op_apply(LS_OP_NLL_LOSS, (ls_tensor *[]){x, y}, &a);
}

/* ---- mse_loss(a, b) = reduce((a - b)^2), same shapes ---- */

static ls_tensor *mse_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    if (ls_check_float_same("mse_loss", 2, in)) return NULL;
    if (in[0]->ndim != in[1]->ndim ||
        memcmp(in[0]->shape, in[1]->shape, sizeof(int64_t) * (size_t)in[0]->ndim) != 0) {
        ls_error_set(LS_ERR_ARG, "mse_loss: input %s and target %s must have the same shape",
                     ls_tensor_shape_str(in[0]), ls_tensor_shape_str(in[1]));
        return NULL;
    }
    bool prev = ls_set_grad_enabled(false);
    ls_tensor *d = ls_sub(in[0], in[1]);
    ls_tensor *sq = ls_mul(d, d);
    ls_tensor_release(d);
    ls_tensor *out = sq ? ls_reduce_losses(sq, (int)a->num[0]) : NULL;
    ls_set_grad_enabled(prev);
    return out;
}
static ls_status mse_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *d = ls_tmp_keep(&t, ls_sub(c->in[0], c->in[1]));
    int red = (int)c->attrs->num[0];
    double scale = 2.0;
    if (red == LS_REDUCE_MEAN) {
        int64_t n = ls_tensor_numel(c->in[0]);
        scale = n > 0 ? 2.0 / (double)n : 0.0;
    }
    ls_tensor *gd = ls_tmp_keep(&t, ls_mul(d, g));
    ls_tensor *ga = ls_tmp_keep(&t, ls_mul_scalar(gd, scale));
    if (c->needs[0]) gin[0] = ls_tensor_retain(ga);
    if (c->needs[1]) gin[1] = ls_neg(ga);
    ls_tmp_free(&t);
    return (!c->needs[0] || gin[0]) && (!c->needs[1] || gin[1]) ? LS_OK : ls_error_code();
}
static int mse_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 2}, .shape = {{3, 2}, {3, 2}},
                          .attrs = {.nnum = 1, .num = {LS_REDUCE_MEAN}}};
    s[1] = s[0];
    s[1].attrs.num[0] = LS_REDUCE_SUM;
    s[2] = s[0];
    s[2].attrs.num[0] = LS_REDUCE_NONE;
    return 3;
}
const ls_op_def ls_op_mse_loss = {.name = "mse_loss", .nin = 2, .lua_sig = "T T R?",
                                  .forward = mse_fwd, .backward = mse_bwd, .samples = mse_samples};

ls_tensor *ls_mse_loss(ls_tensor *a, ls_tensor *b, int reduction)
{
    ls_attrs a2 = {.nnum = 1, .num = {reduction}};
    return ls_op_apply(LS_OP_MSE_LOSS, (ls_tensor *[]){a, b}, &a2);
}

/* ---- one_hot(targets [N], C): a constant [N x C] f32 matrix ---- */
static ls_tensor *one_hot_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *y = in[0];
    int64_t c = a->ints[0];
    if (y->dtype != LS_I64 || y->ndim != 1) {
        ls_error_set(LS_ERR_ARG, "one_hot: expected a 1-d i64 index tensor, got %s %s",
                     ls_dtype_name(y->dtype), ls_tensor_shape_str(y));
        return NULL;
    }
    const int64_t *t = ls_tensor_data(y);
    for (int64_t i = 0; i < y->shape[0]; i++)
        if (t[i * y->stride[0]] < 0 || t[i * y->stride[0]] >= c) {
            ls_error_set(LS_ERR_ARG, "one_hot: index %lld out of range for %lld classes",
                         (long long)t[i * y->stride[0]] + 1, (long long)c);
            return NULL;
        }
    return ls_one_hot_raw(y, c, LS_F32);
}
const ls_op_def ls_op_one_hot = {.name = "one_hot", .nin = 1, .lua_sig = "X i",
                                 .forward = one_hot_fwd};
