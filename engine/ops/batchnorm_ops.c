/* The batch-norm ops (kernels in batchnorm.c): definitions, backward rules written in recorded
 * ops, and the C entry points. The rules (n values per channel, R = [A; B; mu; r] as
 * batchnorm_grad_stats returns):
 *   batchnorm:   R = grad_stats(g, x); dx = input_grad(g, x, w, R); dw = R[1]; db = R[0].
 *   grad_stats:  (u = [uA; uB; umu; ur]) with R' = grad_stats(g, x) (the output), xhat from its rows:
 *                dg = uA + uB xhat;  dx = input_grad(g, x, uB, R') + umu / n - ur r^2 xhat / n,
 *                each one batchnorm_affine pass (see grad_stats_bwd).
 *   input_grad:  elementwise in g and x with per-channel coefficients: two scalings of u and the
 *                per-channel sums of u, u g and u (x - mu), read off two grad_stats passes.
 *   affine:      dg = U K0, dx = U K1, dK = (sum U g, sum U (x - K2), -K1 sum U, sum U), the
 *                sums off two grad_stats passes as in input_grad.
 * grad_stats' rule reads R' off its own output (ls_backward_ctx.out). */
#include <math.h>
#include <string.h>

#include "autograd/autograd.h"
#include "ops/batchnorm_internal.h"
#include "ops/ops.h"

/* ---- backward helpers (recorded ops) ---- */

/* The shape [1, C, 1, ...] of x's rank: a [C] vector reshaped to it broadcasts against x. */
static ls_tensor *bn_bcast(ls_tmp *t, ls_tensor *v, const ls_tensor *x)
{
    int64_t shape[LS_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = d == 1 ? x->shape[1] : 1;
    return ls_tmp_keep(t, ls_reshape(v, x->ndim, shape));
}

/* Row i of a [4, C] tensor, [C]. */
static ls_tensor *bn_row(ls_tmp *t, ls_tensor *R, int i)
{
    return ls_tmp_keep(t, ls_select(R, 0, i));
}

/* Per-channel sums of u and of u (y - shift) (shift [C], or NULL for 0), recorded, from one
 * batchnorm_grad_stats pass (eps 1: any positive value, r is divided out) instead of composed
 * products and sums: grad_stats(u, y) gives sum(u), sum(u (y - mean_y)) r_y, mean_y, r_y, so
 * sum(u (y - shift)) = row1 / row3 + (mean_y - shift) sum(u). *Su may be NULL (not wanted). */
static ls_tensor *bn_usum(ls_tmp *t, ls_tensor *u, ls_tensor *y, ls_tensor *shift, ls_tensor **Su)
{
    ls_tensor *S = ls_tmp_keep(t, ls_batchnorm_grad_stats(u, y, 1.0));
    ls_tensor *su = bn_row(t, S, 0), *m = bn_row(t, S, 2);
    if (Su) *Su = su;
    if (shift) m = ls_tmp_keep(t, ls_sub(m, shift));
    return ls_tmp_keep(t, ls_add(ls_tmp_keep(t, ls_div(bn_row(t, S, 1), bn_row(t, S, 3))),
                                 ls_tmp_keep(t, ls_mul(m, su))));
}

/* [4, C] with rows r[0..3] ([C] each): the sum of each row embedded at its place (a new
 * reference). */
static ls_tensor *bn_stack4(ls_tmp *t, ls_tensor *const *r)
{
    ls_tensor *acc = NULL;
    for (int i = 0; i < 4; i++) {
        ls_tensor *u = ls_tmp_keep(t, ls_unsqueeze(r[i], 0));
        ls_attrs a = {.dim = 0, .has_dim = true, .nints = 2, .ints = {i, 4}};
        ls_tensor *e = u ? ls_tmp_keep(t, ls_op_apply(LS_OP_UNNARROW, &u, &a)) : NULL;
        acc = i == 0 ? e : ls_tmp_keep(t, ls_add(acc, e));
    }
    return ls_tensor_retain(acc);
}

/* The accumulator a rule may add input k's gradient into (ls_backward_ctx.acc), or NULL. */
static ls_tensor *bn_acc(const ls_backward_ctx *c, int k)
{
    return c->acc ? c->acc[k] : NULL;
}

/* What a kernel that added into an accumulator returned, as the rule's gradient: LS_GRAD_ADDED,
 * or NULL (its error set) on failure. */
static ls_tensor *bn_added(ls_tensor *r)
{
    if (!r) return NULL;
    ls_tensor_release(r);
    return LS_GRAD_ADDED;
}

static ls_status bn_done(const ls_backward_ctx *c, ls_tensor **gin, ls_tmp *t)
{
    ls_tmp_free(t);
    for (int k = 0; k < c->nin; k++)
        if (c->needs[k] && !gin[k]) return ls_error_code() ? ls_error_code() : LS_ERR_ARG;
    return LS_OK;
}

static int64_t bn_count(const ls_tensor *x)
{
    return x->shape[1] ? ls_tensor_numel(x) / x->shape[1] : 0;
}

/* ---- batchnorm(x, w, b; eps) ---- */

static ls_tensor *batchnorm_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return bn_forward(in[0], in[1], in[2], bn_eps(a), NULL, NULL);
}

static ls_status batchnorm_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *R = ls_tmp_keep(&t, ls_batchnorm_grad_stats(u, c->in[0], bn_eps(c->attrs)));
    if (c->needs[0])
        gin[0] = bn_acc(c, 0) ? bn_added(bn_input_grad(u, c->in[0], c->in[1], R, bn_acc(c, 0)))
                              : ls_batchnorm_input_grad(u, c->in[0], c->in[1], R);
    if (c->needs[1]) gin[1] = ls_select(R, 0, 1);
    if (c->needs[2]) gin[2] = ls_select(R, 0, 0);
    return bn_done(c, gin, &t);
}

/* The row path (S >= BN_ROWS_MIN, with a lane tail), the column path with S = 1 and S > 1, and a
 * larger eps. */
static int batchnorm_samples(ls_op_sample *s)
{
    ls_attrs e = {.nnum = 1, .num = {1e-5}};
    s[0] = (ls_op_sample){.ndim = {2, 1, 1}, .shape = {{5, 3}, {3}, {3}}, .attrs = e};
    s[1] = (ls_op_sample){.ndim = {3, 1, 1}, .shape = {{2, 3, 4}, {3}, {3}}, .attrs = e};
    s[2] = (ls_op_sample){.ndim = {4, 1, 1}, .shape = {{2, 2, 4, 5}, {2}, {2}}, .attrs = e};
    s[3] = (ls_op_sample){.ndim = {3, 1, 1}, .shape = {{3, 2, 3}, {2}, {2}},
                          .attrs = {.nnum = 1, .num = {0.5}}};
    return 4;
}

const ls_op_def ls_op_batchnorm = {.name = "batchnorm", .nin = 3, .lua_sig = "T T T n?",
                                   .forward = batchnorm_fwd, .backward = batchnorm_bwd,
                                   .samples = batchnorm_samples};

ls_tensor *ls_batchnorm(ls_tensor *x, ls_tensor *weight, ls_tensor *bias, double eps)
{
    ls_attrs a = {.nnum = 1, .num = {eps}};
    return ls_op_apply(LS_OP_BATCHNORM, (ls_tensor *[]){x, weight, bias}, &a);
}

/* ls_op_apply split in two so that the statistics of the forward come out: the forward kernel,
 * then the same recording. */
ls_tensor *ls_batchnorm_train(ls_tensor *x, ls_tensor *weight, ls_tensor *bias, double eps,
                              ls_tensor **mean, ls_tensor **var)
{
    if (mean) *mean = NULL;
    if (var) *var = NULL;
    if (!x || !weight || !bias) return NULL;
    ls_tensor *mt = NULL, *vt = NULL, *in[3] = {x, weight, bias};
    ls_tensor *y = bn_forward(x, weight, bias, eps, &mt, &vt);
    ls_attrs a = {.nnum = 1, .num = {eps}};
    if (y && ls_autograd_record(LS_OP_BATCHNORM, y, in, &a) != LS_OK) {
        ls_tensor_release(y);
        y = NULL;
    }
    if (!y) {
        ls_tensor_release(mt);
        ls_tensor_release(vt);
        return NULL;
    }
    if (mean) *mean = mt;
    else ls_tensor_release(mt);
    if (var) *var = vt;
    else ls_tensor_release(vt);
    return y;
}

/* ---- batchnorm_grad_stats(g, x; eps) -> [4, C] ---- */

static ls_tensor *grad_stats_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return bn_grad_stats(in[0], in[1], bn_eps(a));
}

/* dg = uA + uB xhat and dx = input_grad(g, x, uB, R) + umu / n - ur r^2 xhat / n (R the output,
 * xhat = (x - mu) r) are both affine in (g, x) with per-channel coefficients, so each is one
 * batchnorm_affine pass (the composed form took eight passes over the tensors):
 *   dg = 0 g + (uB r)(x - mu) + uA
 *   dx = (uB r) g - ((uB r) r B + ur r^3) / n (x - mu) + (umu - (uB r) A) / n */
static ls_status grad_stats_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tensor *g = c->in[0], *x = c->in[1];
    double inv_n = 1.0 / (double)bn_count(x);
    ls_tmp t = {0};
    ls_tensor *R = c->out;
    ls_tensor *A = bn_row(&t, R, 0), *B = bn_row(&t, R, 1), *mu = bn_row(&t, R, 2);
    ls_tensor *r = bn_row(&t, R, 3), *uA = bn_row(&t, u, 0), *uB = bn_row(&t, u, 1);
    ls_tensor *uBr = ls_tmp_keep(&t, ls_mul(uB, r));
    if (c->needs[0]) {
        ls_tensor *zero = uA ? ls_tmp_keep(&t, ls_tensor_zeros(uA->dtype, 1, uA->shape)) : NULL;
        ls_tensor *K = ls_tmp_keep(&t, bn_stack4(&t, (ls_tensor *[]){zero, uBr, mu, uA}));
        gin[0] = bn_acc(c, 0) ? bn_added(bn_affine(x, x, K, bn_acc(c, 0)))
                              : ls_batchnorm_affine(x, x, K);
    }
    if (c->needs[1]) {
        ls_tensor *umu = bn_row(&t, u, 2), *ur = bn_row(&t, u, 3);
        ls_tensor *rr = ls_tmp_keep(&t, ls_mul(r, r));
        ls_tensor *uBrrB = ls_tmp_keep(&t, ls_mul(ls_tmp_keep(&t, ls_mul(uBr, r)), B));
        ls_tensor *urrr = ls_tmp_keep(&t, ls_mul(ur, ls_tmp_keep(&t, ls_mul(rr, r))));
        ls_tensor *k1 = ls_tmp_keep(&t, ls_add(uBrrB, urrr));
        ls_tensor *k3 = ls_tmp_keep(&t, ls_sub(umu, ls_tmp_keep(&t, ls_mul(uBr, A))));
        ls_tensor *rows[4] = {uBr, ls_tmp_keep(&t, ls_mul_scalar(k1, -inv_n)), mu,
                              ls_tmp_keep(&t, ls_mul_scalar(k3, inv_n))};
        ls_tensor *K = ls_tmp_keep(&t, bn_stack4(&t, rows));
        gin[1] = bn_acc(c, 1) ? bn_added(bn_affine(g, x, K, bn_acc(c, 1)))
                              : ls_batchnorm_affine(g, x, K);
    }
    return bn_done(c, gin, &t);
}

static int grad_stats_samples(ls_op_sample *s)
{
    ls_attrs e = {.nnum = 1, .num = {1e-5}};
    s[0] = (ls_op_sample){.ndim = {2, 2}, .shape = {{5, 3}, {5, 3}}, .attrs = e};
    s[1] = (ls_op_sample){.ndim = {4, 4}, .shape = {{2, 2, 4, 5}, {2, 2, 4, 5}}, .attrs = e};
    s[2] = (ls_op_sample){.ndim = {3, 3}, .shape = {{3, 2, 3}, {3, 2, 3}},
                          .attrs = {.nnum = 1, .num = {0.5}}};
    return 3;
}

const ls_op_def ls_op_batchnorm_grad_stats = {.name = "batchnorm_grad_stats", .nin = 2,
                                              .lua_sig = "T T n?", .forward = grad_stats_fwd,
                                              .backward = grad_stats_bwd,
                                              .samples = grad_stats_samples};

ls_tensor *ls_batchnorm_grad_stats(ls_tensor *g, ls_tensor *x, double eps)
{
    ls_attrs a = {.nnum = 1, .num = {eps}};
    return ls_op_apply(LS_OP_BATCHNORM_GRAD_STATS, (ls_tensor *[]){g, x}, &a);
}

/* ---- batchnorm_input_grad(g, x, w, R) ---- */

static ls_tensor *input_grad_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return bn_input_grad(in[0], in[1], in[2], in[3], NULL);
}

/* out = w r (g - A/n) - w r q P with q = r B / n, P = x - mu. Per-channel sums of the upstream u:
 * Su = sum(u), Sug = sum(u g), SuP = sum(u P); with E = Sug - (A/n) Su and F = q SuP:
 *   dg = u w r          dx = -u w r q          dw = r (E - F)
 *   dA = -w r Su / n    dB = -w r^2 SuP / n    dmu = w r q Su    dr = w E - 2 w F */
static ls_status input_grad_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tensor *g = c->in[0], *x = c->in[1], *w = c->in[2], *R = c->in[3];
    double inv_n = 1.0 / (double)bn_count(x);
    ls_tmp t = {0};
    ls_tensor *A = bn_row(&t, R, 0), *B = bn_row(&t, R, 1), *mu = bn_row(&t, R, 2);
    ls_tensor *r = bn_row(&t, R, 3);
    ls_tensor *wr = ls_tmp_keep(&t, ls_mul(w, r));
    ls_tensor *q = ls_tmp_keep(&t, ls_mul_scalar(ls_tmp_keep(&t, ls_mul(r, B)), inv_n));
    ls_tensor *wrq = ls_tmp_keep(&t, ls_mul(wr, q));
    if (c->needs[0])
        gin[0] = bn_acc(c, 0) ? bn_added(bn_scale(u, wr, bn_acc(c, 0)))
                              : ls_mul(u, bn_bcast(&t, wr, x));
    if (c->needs[1]) {
        ls_tensor *k = ls_tmp_keep(&t, ls_neg(wrq));
        gin[1] = bn_acc(c, 1) ? bn_added(bn_scale(u, k, bn_acc(c, 1)))
                              : ls_mul(u, bn_bcast(&t, k, x));
    }
    if (c->needs[2] || c->needs[3]) {
        /* the sums by two batchnorm_grad_stats passes instead of six composed ones */
        ls_tensor *Su, *SuP = bn_usum(&t, u, x, mu, &Su), *Sug = bn_usum(&t, u, g, NULL, NULL);
        ls_tensor *AnSu = ls_tmp_keep(&t, ls_mul_scalar(ls_tmp_keep(&t, ls_mul(A, Su)), inv_n));
        ls_tensor *E = ls_tmp_keep(&t, ls_sub(Sug, AnSu));
        ls_tensor *F = ls_tmp_keep(&t, ls_mul(q, SuP));
        if (c->needs[2]) gin[2] = ls_mul(r, ls_tmp_keep(&t, ls_sub(E, F)));
        if (c->needs[3]) {
            ls_tensor *rows[4];
            rows[0] = ls_tmp_keep(&t, ls_mul_scalar(ls_tmp_keep(&t, ls_mul(wr, Su)), -inv_n));
            rows[1] = ls_tmp_keep(&t, ls_mul_scalar(ls_tmp_keep(&t, ls_mul(ls_tmp_keep(&t,
                                  ls_mul(wr, r)), SuP)), -inv_n));
            rows[2] = ls_tmp_keep(&t, ls_mul(wrq, Su));
            rows[3] = ls_tmp_keep(&t, ls_sub(ls_tmp_keep(&t, ls_mul(w, E)), ls_tmp_keep(&t,
                                  ls_mul_scalar(ls_tmp_keep(&t, ls_mul(w, F)), 2.0))));
            gin[3] = bn_stack4(&t, rows);
        }
    }
    return bn_done(c, gin, &t);
}

static int input_grad_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 2, 1, 2}, .shape = {{5, 3}, {5, 3}, {3}, {4, 3}}};
    s[1] = (ls_op_sample){.ndim = {4, 4, 1, 2}, .shape = {{2, 2, 4, 5}, {2, 2, 4, 5}, {2}, {4, 2}}};
    s[2] = (ls_op_sample){.ndim = {3, 3, 1, 2}, .shape = {{3, 2, 3}, {3, 2, 3}, {2}, {4, 2}}};
    return 3;
}

const ls_op_def ls_op_batchnorm_input_grad = {.name = "batchnorm_input_grad", .nin = 4,
                                              .lua_sig = "T T T T", .forward = input_grad_fwd,
                                              .backward = input_grad_bwd,
                                              .samples = input_grad_samples};

ls_tensor *ls_batchnorm_input_grad(ls_tensor *g, ls_tensor *x, ls_tensor *weight,
                                   ls_tensor *stats)
{
    return ls_op_apply(LS_OP_BATCHNORM_INPUT_GRAD, (ls_tensor *[]){g, x, weight, stats}, NULL);
}

/* ---- batchnorm_affine(g, x, K) = K0 g + K1 (x - K2) + K3, per channel (K [4, C]) ----
 *
 * The form the second-order rules of grad_stats produce (their gradients are affine in g and x
 * with per-channel coefficients): one pass instead of a chain of broadcast ops. */
static ls_tensor *affine_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return bn_affine(in[0], in[1], in[2], NULL);
}

static ls_status affine_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tensor *g = c->in[0], *x = c->in[1], *K = c->in[2];
    ls_tmp t = {0};
    ls_tensor *k0 = bn_row(&t, K, 0), *k1 = bn_row(&t, K, 1), *k2 = bn_row(&t, K, 2);
    if (c->needs[0])
        gin[0] = bn_acc(c, 0) ? bn_added(bn_scale(u, k0, bn_acc(c, 0)))
                              : ls_mul(u, bn_bcast(&t, k0, x));
    if (c->needs[1])
        gin[1] = bn_acc(c, 1) ? bn_added(bn_scale(u, k1, bn_acc(c, 1)))
                              : ls_mul(u, bn_bcast(&t, k1, x));
    if (c->needs[2]) {   /* two grad_stats passes (bn_usum) instead of five composed ones */
        ls_tensor *Su, *Sux = bn_usum(&t, u, x, k2, &Su);
        ls_tensor *rows[4] = {bn_usum(&t, u, g, NULL, NULL), Sux,
                              ls_tmp_keep(&t, ls_neg(ls_tmp_keep(&t, ls_mul(k1, Su)))), Su};
        gin[2] = bn_stack4(&t, rows);
    }
    return bn_done(c, gin, &t);
}

static int affine_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 2, 2}, .shape = {{5, 3}, {5, 3}, {4, 3}}};
    s[1] = (ls_op_sample){.ndim = {4, 4, 2}, .shape = {{2, 2, 4, 5}, {2, 2, 4, 5}, {4, 2}}};
    s[2] = (ls_op_sample){.ndim = {3, 3, 2}, .shape = {{3, 2, 3}, {3, 2, 3}, {4, 2}}};
    return 3;
}

const ls_op_def ls_op_batchnorm_affine = {.name = "batchnorm_affine", .nin = 3, .lua_sig = NULL,
                                          .forward = affine_fwd, .backward = affine_bwd,
                                          .samples = affine_samples};

ls_tensor *ls_batchnorm_affine(ls_tensor *g, ls_tensor *x, ls_tensor *coeffs)
{
    return ls_op_apply(LS_OP_BATCHNORM_AFFINE, (ls_tensor *[]){g, x, coeffs}, NULL);
}
