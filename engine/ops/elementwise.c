/* Elementwise ops: unary math (neg exp log sqrt abs sign relu tanh sigmoid softplus erf), relu's
 * gradient relu_backward, binary math with NumPy broadcasting (add sub mul div pow minimum
 * maximum), clamp, comparisons (eq ne lt le gt ge) and where. All take f32 or f64 inputs of one
 * dtype and return a new contiguous tensor of that dtype. This file holds the op definitions; their
 * kernels and the forward driver that runs them are in elementwise_kernel.c.
 *
 * Backward rules use recorded ops only and never the op's output (see op.h), so they differentiate
 * again under create_graph. Binary rules sum broadcast gradients back with ls_sum_to (reduce.c).
 * Gradient conventions (also in docs/ops-elementwise.md):
 *   - minimum/maximum: at ties a == b the gradient is split 0.5 / 0.5 (as PyTorch);
 *   - clamp: the gradient passes where lo <= x <= hi, boundaries included (as PyTorch);
 *   - abs: sign(x), so 0 at x == 0; relu: 1 where x > 0, so 0 at x == 0 (one pass:
 *     relu_backward(g, x)); sign: 0 everywhere;
 *   - pow: d/db a^b is taken as 0 where a == 0 and b >= 0 (instead of 0 * log 0 = NaN);
 *   - comparisons are not differentiable; where sends no gradient to cond. */
#include <math.h>
#include <string.h>

#include "ops/elementwise_kernel.h"
#include "ops/int_arith.h"

/* ==== backward helpers ==== */

/* The gradient for input `like` from a gradient of the broadcast output shape: t itself (retained)
 * when the shapes agree, else t summed down with ls_sum_to. NULL propagates. */
static ls_tensor *fit(ls_tensor *t, const ls_tensor *like)
{
    if (!t) return NULL;
    if (t->ndim == like->ndim &&
        memcmp(t->shape, like->shape, sizeof(int64_t) * (size_t)like->ndim) == 0)
        return ls_tensor_retain(t);
    return ls_sum_to(t, like->ndim, like->shape);
}

/* s - x for a number s. */
static ls_tensor *rsub_scalar(double s, ls_tensor *x)
{
    if (!x) return NULL;
    ls_tensor *c = ls_tensor_scalar(x->dtype, s);
    ls_tensor *r = ls_sub(c, x);
    ls_tensor_release(c);
    return r;
}

/* A 0-d constant of x's dtype, kept in the pool. */
static ls_tensor *konst(ls_tmp *t, const ls_tensor *x, double v)
{
    return ls_tmp_keep(t, ls_tensor_scalar(x->dtype, v));
}

/* Free the pool and report: LS_OK when every needed gradient was made. */
static ls_status ew_done(const ls_backward_ctx *c, ls_tensor **gin, ls_tmp *t)
{
    ls_tmp_free(t);
    for (int k = 0; k < c->nin; k++)
        if (c->needs[k] && !gin[k]) return ls_error_code() ? ls_error_code() : LS_ERR_ARG;
    return LS_OK;
}

/* ==== samples ==== */

static int unary_samples_kind(ls_op_sample *s, ls_sample_kind kind)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .kind = {kind}};
    s[1] = (ls_op_sample){.ndim = {0}, .kind = {kind}};
    return 2;
}
static int real_samples(ls_op_sample *s) { return unary_samples_kind(s, LS_SAMPLE_REAL); }
static int positive_samples(ls_op_sample *s) { return unary_samples_kind(s, LS_SAMPLE_POSITIVE); }
static int away_samples(ls_op_sample *s) { return unary_samples_kind(s, LS_SAMPLE_AWAY_FROM_ZERO); }

/* Same shapes, both sides broadcast, a trailing-dim broadcast, and a 0-d operand on each side. */
static int binary_samples_kinds(ls_op_sample *s, ls_sample_kind ka, ls_sample_kind kb)
{
    s[0] = (ls_op_sample){.ndim = {2, 2}, .shape = {{3, 4}, {3, 4}}, .kind = {ka, kb}};
    s[1] = (ls_op_sample){.ndim = {2, 2}, .shape = {{3, 1}, {1, 4}}, .kind = {ka, kb}};
    s[2] = (ls_op_sample){.ndim = {2, 1}, .shape = {{2, 3}, {3}}, .kind = {ka, kb}};
    s[3] = (ls_op_sample){.ndim = {0, 2}, .shape = {{0}, {2, 2}}, .kind = {ka, kb}};
    s[4] = (ls_op_sample){.ndim = {2, 0}, .shape = {{2, 2}, {0}}, .kind = {ka, kb}};
    return 5;
}
static int binary_real_samples(ls_op_sample *s)
{
    return binary_samples_kinds(s, LS_SAMPLE_REAL, LS_SAMPLE_REAL);
}

/* ==== unary ops ==== */

static ls_tensor *neg_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    if (ls_int_any(1, in)) return ls_int_neg(in);
    return ew_unary("neg", in, neg_run);
}
static ls_status neg_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    gin[0] = ls_neg(g);
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_neg = {.name = "neg", .nin = 1, .lua_sig = "T", .forward = neg_fwd,
    .backward = neg_bwd, .samples = real_samples};
ls_tensor *ls_neg(ls_tensor *x) { return ls_op_apply(LS_OP_NEG, &x, NULL); }

static ls_tensor *exp_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("exp", in, simd_pick(exp_run, exp_run_avx2));
}
static ls_status exp_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    gin[0] = ls_mul(g, ls_tmp_keep(&t, ls_exp(c->in[0])));   /* g * exp(x) */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_exp = {.name = "exp", .nin = 1, .lua_sig = "T", .forward = exp_fwd,
    .backward = exp_bwd, .samples = real_samples};
ls_tensor *ls_exp(ls_tensor *x) { return ls_op_apply(LS_OP_EXP, &x, NULL); }

static ls_tensor *log_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("log", in, log_run);
}
static ls_status log_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    gin[0] = ls_div(g, c->in[0]);   /* g / x */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_log = {.name = "log", .nin = 1, .lua_sig = "T", .forward = log_fwd,
    .backward = log_bwd, .samples = positive_samples};
ls_tensor *ls_log(ls_tensor *x) { return ls_op_apply(LS_OP_LOG, &x, NULL); }

static ls_tensor *sqrt_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("sqrt", in, sqrt_run);
}
static ls_status sqrt_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *r = ls_tmp_keep(&t, ls_sqrt(c->in[0]));
    gin[0] = ls_div(g, ls_tmp_keep(&t, ls_mul_scalar(r, 2.0)));   /* g / (2 sqrt(x)) */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_sqrt = {.name = "sqrt", .nin = 1, .lua_sig = "T", .forward = sqrt_fwd,
    .backward = sqrt_bwd, .samples = positive_samples};
ls_tensor *ls_sqrt(ls_tensor *x) { return ls_op_apply(LS_OP_SQRT, &x, NULL); }

static ls_tensor *abs_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("abs", in, abs_run);
}
static ls_status abs_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    gin[0] = ls_mul(g, ls_tmp_keep(&t, ls_sign(c->in[0])));   /* g * sign(x) */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_abs = {.name = "abs", .nin = 1, .lua_sig = "T", .forward = abs_fwd,
    .backward = abs_bwd, .samples = away_samples};
ls_tensor *ls_abs(ls_tensor *x) { return ls_op_apply(LS_OP_ABS, &x, NULL); }

static ls_tensor *sign_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("sign", in, sign_run);
}
/* Zero, written as g * 0 so the result stays connected to g under create_graph. */
static ls_status sign_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    gin[0] = ls_mul_scalar(g, 0.0);
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_sign = {.name = "sign", .nin = 1, .lua_sig = "T", .forward = sign_fwd,
    .backward = sign_bwd, .samples = away_samples};
ls_tensor *ls_sign(ls_tensor *x) { return ls_op_apply(LS_OP_SIGN, &x, NULL); }

static ls_tensor *relu_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("relu", in, relu_run);
}
static ls_status relu_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    gin[0] = ls_relu_backward(g, c->in[0]);   /* g where x > 0 */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_relu = {.name = "relu", .nin = 1, .lua_sig = "T", .forward = relu_fwd,
    .backward = relu_bwd, .samples = away_samples};
ls_tensor *ls_relu(ls_tensor *x) { return ls_op_apply(LS_OP_RELU, &x, NULL); }

/* relu_backward(g, x) = g where x > 0, else 0 (broadcasting): relu's gradient in one pass, with no
 * mask tensor. Where x <= 0 it gives 0 even for an inf or NaN g (as torch's threshold_backward);
 * a NaN x gives 0, as the mask x > 0 did. Its own gradient: d/dg = relu_backward(u, x), the same
 * mask; d/dx = 0 (the mask is piecewise constant in x). */
static ls_tensor *relu_backward_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_binary("relu_backward", in, relu_backward_run);
}
static ls_status relu_backward_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *x = c->in[1];
    if (c->needs[0]) gin[0] = fit(ls_tmp_keep(&t, ls_relu_backward(u, x)), c->in[0]);
    if (c->needs[1]) gin[1] = LS_GRAD_ZERO;
    return ew_done(c, gin, &t);
}
static int relu_backward_samples(ls_op_sample *s)
{
    return binary_samples_kinds(s, LS_SAMPLE_REAL, LS_SAMPLE_AWAY_FROM_ZERO);
}
const ls_op_def ls_op_relu_backward = {.name = "relu_backward", .nin = 2, .lua_sig = "T T",
    .forward = relu_backward_fwd, .backward = relu_backward_bwd, .samples = relu_backward_samples};
ls_tensor *ls_relu_backward(ls_tensor *g, ls_tensor *x)
{
    return ls_op_apply(LS_OP_RELU_BACKWARD, (ls_tensor *[]){g, x}, NULL);
}

static ls_tensor *tanh_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("tanh", in, simd_pick(tanh_run, tanh_run_avx2));
}
static ls_status tanh_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *th = ls_tmp_keep(&t, ls_tanh(c->in[0]));
    ls_tensor *d = ls_tmp_keep(&t, rsub_scalar(1.0, ls_tmp_keep(&t, ls_mul(th, th))));
    gin[0] = ls_mul(g, d);   /* g * (1 - tanh(x)^2) */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_tanh = {.name = "tanh", .nin = 1, .lua_sig = "T", .forward = tanh_fwd,
    .backward = tanh_bwd, .samples = real_samples};
ls_tensor *ls_tanh(ls_tensor *x) { return ls_op_apply(LS_OP_TANH, &x, NULL); }

static ls_tensor *sigmoid_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("sigmoid", in, simd_pick(sigmoid_run, sigmoid_run_avx2));
}
static ls_status sigmoid_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *sg = ls_tmp_keep(&t, ls_sigmoid(c->in[0]));
    ls_tensor *d = ls_tmp_keep(&t, ls_mul(sg, ls_tmp_keep(&t, rsub_scalar(1.0, sg))));
    gin[0] = ls_mul(g, d);   /* g * s * (1 - s) */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_sigmoid = {.name = "sigmoid", .nin = 1, .lua_sig = "T",
    .forward = sigmoid_fwd, .backward = sigmoid_bwd, .samples = real_samples};
ls_tensor *ls_sigmoid(ls_tensor *x) { return ls_op_apply(LS_OP_SIGMOID, &x, NULL); }

static ls_tensor *softplus_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("softplus", in, simd_pick(softplus_run, softplus_run_avx2));
}
static ls_status softplus_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    gin[0] = ls_mul(g, ls_tmp_keep(&t, ls_sigmoid(c->in[0])));   /* g * sigmoid(x) */
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_softplus = {.name = "softplus", .nin = 1, .lua_sig = "T",
    .forward = softplus_fwd, .backward = softplus_bwd, .samples = real_samples};
ls_tensor *ls_softplus(ls_tensor *x) { return ls_op_apply(LS_OP_SOFTPLUS, &x, NULL); }

/* erf (libm's, scalar): the Gaussian CDF behind exact GELU, Phi(x) = (1 + erf(x / sqrt 2)) / 2. */
static ls_tensor *erf_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_unary("erf", in, erf_run);
}
static ls_status erf_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};   /* g * 2/sqrt(pi) * exp(-x^2) */
    ls_tensor *x = c->in[0];
    ls_tensor *e = ls_tmp_keep(&t, ls_exp(ls_tmp_keep(&t, ls_neg(ls_tmp_keep(&t, ls_mul(x, x))))));
    gin[0] = ls_mul(g, ls_tmp_keep(&t, ls_mul_scalar(e, 1.1283791670955126)));
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_erf = {.name = "erf", .nin = 1, .lua_sig = "T",
    .forward = erf_fwd, .backward = erf_bwd, .samples = real_samples};
ls_tensor *ls_erf(ls_tensor *x) { return ls_op_apply(LS_OP_ERF, &x, NULL); }

/* ==== binary ops ==== */

static ls_tensor *add_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    if (ls_int_any(2, in)) return ls_int_binary("add", in, '+');
    return ew_binary("add", in, add_run);
}
static ls_status add_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    if (c->needs[0]) gin[0] = fit(g, c->in[0]);
    if (c->needs[1]) gin[1] = fit(g, c->in[1]);
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_add = {.name = "add", .nin = 2, .lua_sig = "T T", .forward = add_fwd,
    .backward = add_bwd, .samples = binary_real_samples};
ls_tensor *ls_add(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_ADD, (ls_tensor *[]){a, b}, NULL);
}
ls_status ls_add_inplace(ls_tensor *a, const ls_tensor *b)
{
    if (a->dtype != b->dtype || !ls_dtype_is_float(a->dtype) || a->ndim != b->ndim ||
        memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) != 0 ||
        !ls_tensor_is_dense(a, NULL))
        return ls_error_set(LS_ERR_ARG, "add_inplace: %s %s += %s %s: expected one float dtype, one "
                            "shape and a dense destination", ls_dtype_name(a->dtype),
                            ls_tensor_shape_str(a), ls_dtype_name(b->dtype), ls_tensor_shape_str(b));
    ls_ew_ctx ctx = {.dtype = a->dtype};
    ls_iter it;
    ls_iter_init(&it, a, 2, (const ls_tensor *const[]){a, b});
    ls_iter_run(&it, add_run, &ctx);
    return LS_OK;
}

static ls_tensor *sub_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    if (ls_int_any(2, in)) return ls_int_binary("sub", in, '-');
    return ew_binary("sub", in, sub_run);
}
static ls_status sub_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    if (c->needs[0]) gin[0] = fit(g, c->in[0]);
    if (c->needs[1]) gin[1] = fit(ls_tmp_keep(&t, ls_neg(g)), c->in[1]);
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_sub = {.name = "sub", .nin = 2, .lua_sig = "T T", .forward = sub_fwd,
    .backward = sub_bwd, .samples = binary_real_samples};
ls_tensor *ls_sub(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_SUB, (ls_tensor *[]){a, b}, NULL);
}

static ls_tensor *mul_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    if (ls_int_any(2, in)) return ls_int_binary("mul", in, '*');
    return ew_binary("mul", in, mul_run);
}
static ls_status mul_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    if (c->needs[0]) gin[0] = fit(ls_tmp_keep(&t, ls_mul(g, c->in[1])), c->in[0]);
    if (c->needs[1]) gin[1] = fit(ls_tmp_keep(&t, ls_mul(g, c->in[0])), c->in[1]);
    return ew_done(c, gin, &t);
}
const ls_op_def ls_op_mul = {.name = "mul", .nin = 2, .lua_sig = "T T", .forward = mul_fwd,
    .backward = mul_bwd, .samples = binary_real_samples};
ls_tensor *ls_mul(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_MUL, (ls_tensor *[]){a, b}, NULL);
}

static ls_tensor *div_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_binary("div", in, div_run);
}
/* ga = g / b;  gb = -g a / b^2, computed as -(g / b) * (a / b). */
static ls_status div_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *a = c->in[0], *b = c->in[1];
    ls_tensor *q = ls_tmp_keep(&t, ls_div(g, b));
    if (c->needs[0]) gin[0] = fit(q, a);
    if (c->needs[1]) {
        ls_tensor *qa = ls_tmp_keep(&t, ls_mul(q, ls_tmp_keep(&t, ls_div(a, b))));
        gin[1] = fit(ls_tmp_keep(&t, ls_neg(qa)), b);
    }
    return ew_done(c, gin, &t);
}
static int div_samples(ls_op_sample *s)
{
    return binary_samples_kinds(s, LS_SAMPLE_REAL, LS_SAMPLE_AWAY_FROM_ZERO);
}
const ls_op_def ls_op_div = {.name = "div", .nin = 2, .lua_sig = "T T", .forward = div_fwd,
    .backward = div_bwd, .samples = div_samples};
ls_tensor *ls_div(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_DIV, (ls_tensor *[]){a, b}, NULL);
}

static ls_tensor *pow_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_binary("pow", in, pow_run);
}
/* ga = g b a^(b-1);  gb = g a^b log(a), set to 0 where a == 0 and b >= 0 (the limit, where the
 * formula would give 0 * -inf). */
static ls_status pow_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *a = c->in[0], *b = c->in[1];
    if (c->needs[0]) {
        ls_tensor *p = ls_tmp_keep(&t, ls_pow(a, ls_tmp_keep(&t, ls_add_scalar(b, -1.0))));
        ls_tensor *d = ls_tmp_keep(&t, ls_mul(b, p));
        gin[0] = fit(ls_tmp_keep(&t, ls_mul(g, d)), a);
    }
    if (c->needs[1]) {
        ls_tensor *zero = konst(&t, a, 0.0);
        ls_tensor *p = ls_tmp_keep(&t, ls_pow(a, b));
        ls_tensor *d = ls_tmp_keep(&t, ls_mul(p, ls_tmp_keep(&t, ls_log(a))));
        ls_tensor *at0 = ls_tmp_keep(&t, ls_mul(ls_tmp_keep(&t, ls_eq(a, zero)),
                                                ls_tmp_keep(&t, ls_ge(b, zero))));
        ls_tensor *gd = ls_tmp_keep(&t, ls_mul(g, ls_tmp_keep(&t, ls_where(at0, zero, d))));
        gin[1] = fit(gd, b);
    }
    return ew_done(c, gin, &t);
}
static int pow_samples(ls_op_sample *s)
{
    return binary_samples_kinds(s, LS_SAMPLE_POSITIVE, LS_SAMPLE_REAL);
}
const ls_op_def ls_op_pow = {.name = "pow", .nin = 2, .lua_sig = "T T", .forward = pow_fwd,
    .backward = pow_bwd, .samples = pow_samples};
ls_tensor *ls_pow(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_POW, (ls_tensor *[]){a, b}, NULL);
}

/* minimum/maximum: the gradient goes to the selected input; at ties each gets half. `wins` is ls_lt
 * for minimum and ls_gt for maximum; w = wins(a, b) + 0.5 eq(a, b) is a constant mask. */
static ls_status minmax_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin,
                            ls_tensor *(*wins)(ls_tensor *, ls_tensor *))
{
    ls_tmp t = {0};
    ls_tensor *a = c->in[0], *b = c->in[1];
    ls_tensor *half = ls_tmp_keep(&t, ls_mul_scalar(ls_tmp_keep(&t, ls_eq(a, b)), 0.5));
    ls_tensor *w = ls_tmp_keep(&t, ls_add(ls_tmp_keep(&t, wins(a, b)), half));
    if (c->needs[0]) gin[0] = fit(ls_tmp_keep(&t, ls_mul(g, w)), a);
    if (c->needs[1])
        gin[1] = fit(ls_tmp_keep(&t, ls_mul(g, ls_tmp_keep(&t, rsub_scalar(1.0, w)))), b);
    return ew_done(c, gin, &t);
}

static ls_tensor *minimum_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_binary("minimum", in, minimum_run);
}
static ls_status minimum_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    return minmax_bwd(c, g, gin, ls_lt);
}
const ls_op_def ls_op_minimum = {.name = "minimum", .nin = 2, .lua_sig = "T T",
    .forward = minimum_fwd, .backward = minimum_bwd, .samples = binary_real_samples};
ls_tensor *ls_minimum(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_MINIMUM, (ls_tensor *[]){a, b}, NULL);
}

static ls_tensor *maximum_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return ew_binary("maximum", in, maximum_run);
}
static ls_status maximum_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    return minmax_bwd(c, g, gin, ls_gt);
}
const ls_op_def ls_op_maximum = {.name = "maximum", .nin = 2, .lua_sig = "T T",
    .forward = maximum_fwd, .backward = maximum_bwd, .samples = binary_real_samples};
ls_tensor *ls_maximum(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_MAXIMUM, (ls_tensor *[]){a, b}, NULL);
}

/* ---- scalar conveniences ---- */
static ls_tensor *with_scalar(ls_tensor *(*op)(ls_tensor *, ls_tensor *), ls_tensor *x, double v)
{
    if (!x) return NULL;
    ls_tensor *s = ls_tensor_scalar(x->dtype, v);
    ls_tensor *r = op(x, s);
    ls_tensor_release(s);
    return r;
}
ls_tensor *ls_add_scalar(ls_tensor *x, double s) { return with_scalar(ls_add, x, s); }
ls_tensor *ls_mul_scalar(ls_tensor *x, double s) { return with_scalar(ls_mul, x, s); }
ls_tensor *ls_pow_scalar(ls_tensor *x, double p) { return with_scalar(ls_pow, x, p); }

/* ==== clamp (num[0] = lo, num[1] = hi; NAN or absent = unbounded) ==== */

static double clamp_bound(const ls_attrs *a, int k)
{
    return a->nnum > k ? a->num[k] : NAN;
}
static ls_tensor *clamp_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    double lo = clamp_bound(a, 0), hi = clamp_bound(a, 1);
    ls_ew_ctx ctx = {.lo = isnan(lo) ? -INFINITY : lo, .hi = isnan(hi) ? INFINITY : hi};
    return ew_apply("clamp", 1, in, clamp_run, &ctx);
}
/* g where lo <= x <= hi (boundaries included), 0 elsewhere. */
static ls_status clamp_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *x = c->in[0];
    double lo = clamp_bound(c->attrs, 0), hi = clamp_bound(c->attrs, 1);
    ls_tensor *mask = NULL;
    if (!isnan(lo)) mask = ls_tmp_keep(&t, ls_ge(x, konst(&t, x, lo)));
    if (!isnan(hi)) {
        ls_tensor *m = ls_tmp_keep(&t, ls_le(x, konst(&t, x, hi)));
        mask = mask ? ls_tmp_keep(&t, ls_mul(mask, m)) : m;
    }
    gin[0] = mask ? ls_mul(g, mask) : ls_tensor_retain(g);
    return ew_done(c, gin, &t);
}
/* Inputs +-U(0.3, 1) and bounds inside (-0.3, 0.3), so both the clamped and the passing regions are
 * sampled and no sample lies within 0.2 of a kink. */
static int clamp_samples(ls_op_sample *s)
{
    const ls_sample_kind k = LS_SAMPLE_AWAY_FROM_ZERO;
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .kind = {k},
                          .attrs = {.nnum = 2, .num = {-2.0, 0.1}}};
    s[1] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .kind = {k},
                          .attrs = {.nnum = 2, .num = {-0.1, NAN}}};
    s[2] = (ls_op_sample){.ndim = {1}, .shape = {{6}}, .kind = {k},
                          .attrs = {.nnum = 2, .num = {NAN, -0.05}}};
    return 3;
}
const ls_op_def ls_op_clamp = {.name = "clamp", .nin = 1, .lua_sig = "T n? n?",
    .forward = clamp_fwd, .backward = clamp_bwd, .samples = clamp_samples};
ls_tensor *ls_clamp(ls_tensor *x, double lo, double hi)
{
    ls_attrs a = {.nnum = 2, .num = {lo, hi}};
    return ls_op_apply(LS_OP_CLAMP, &x, &a);
}

/* ==== comparisons: 1/0 in the inputs' dtype, not differentiable ====
 * Integer inputs (labels, argmax results) are compared exactly and give an f64 mask
 * (int_arith.c), so `pred:eq(y):mean()` is an accuracy. */

static ls_tensor *compare(const char *who, ls_tensor *const *in, ls_iter_fn fn)
{
    if (ls_int_any(2, in)) return ls_int_compare(who, in);
    return ew_binary(who, in, fn);
}

static ls_tensor *eq_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return compare("eq", in, eq_run);
}
static ls_tensor *ne_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return compare("ne", in, ne_run);
}
static ls_tensor *lt_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return compare("lt", in, lt_run);
}
static ls_tensor *le_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return compare("le", in, le_run);
}
static ls_tensor *gt_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return compare("gt", in, gt_run);
}
static ls_tensor *ge_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    return compare("ge", in, ge_run);
}
const ls_op_def ls_op_eq = {.name = "eq", .nin = 2, .lua_sig = "T T", .forward = eq_fwd,
    .backward = NULL, .samples = NULL};
const ls_op_def ls_op_ne = {.name = "ne", .nin = 2, .lua_sig = "T T", .forward = ne_fwd,
    .backward = NULL, .samples = NULL};
const ls_op_def ls_op_lt = {.name = "lt", .nin = 2, .lua_sig = "T T", .forward = lt_fwd,
    .backward = NULL, .samples = NULL};
const ls_op_def ls_op_le = {.name = "le", .nin = 2, .lua_sig = "T T", .forward = le_fwd,
    .backward = NULL, .samples = NULL};
const ls_op_def ls_op_gt = {.name = "gt", .nin = 2, .lua_sig = "T T", .forward = gt_fwd,
    .backward = NULL, .samples = NULL};
const ls_op_def ls_op_ge = {.name = "ge", .nin = 2, .lua_sig = "T T", .forward = ge_fwd,
    .backward = NULL, .samples = NULL};
ls_tensor *ls_eq(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_EQ, (ls_tensor *[]){a, b}, NULL);
}
ls_tensor *ls_ne(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_NE, (ls_tensor *[]){a, b}, NULL);
}
ls_tensor *ls_lt(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_LT, (ls_tensor *[]){a, b}, NULL);
}
ls_tensor *ls_le(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_LE, (ls_tensor *[]){a, b}, NULL);
}
ls_tensor *ls_gt(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_GT, (ls_tensor *[]){a, b}, NULL);
}
ls_tensor *ls_ge(ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_GE, (ls_tensor *[]){a, b}, NULL);
}

/* ==== where(cond, a, b) ==== */

static ls_tensor *where_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    ls_ew_ctx ctx = {0};
    return ew_apply("where", 3, in, where_run, &ctx);
}
/* ga = where(cond, g, 0), gb = where(cond, 0, g), each summed to its input's shape. Selecting
 * rather than multiplying by the mask keeps an inf or NaN in g on one side out of the other. cond
 * gets LS_GRAD_ZERO (it is piecewise constant) in case it requires grad. */
static ls_status where_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *cond = c->in[0], *zero = konst(&t, g, 0.0);
    if (c->needs[0]) gin[0] = LS_GRAD_ZERO;
    if (c->needs[1]) gin[1] = fit(ls_tmp_keep(&t, ls_where(cond, g, zero)), c->in[1]);
    if (c->needs[2]) gin[2] = fit(ls_tmp_keep(&t, ls_where(cond, zero, g)), c->in[2]);
    return ew_done(c, gin, &t);
}
static int where_samples(ls_op_sample *s)
{
    const ls_sample_kind m = LS_SAMPLE_MASK, r = LS_SAMPLE_REAL;
    s[0] = (ls_op_sample){.ndim = {2, 2, 2}, .shape = {{3, 4}, {3, 4}, {3, 4}}, .kind = {m, r, r}};
    s[1] = (ls_op_sample){.ndim = {2, 2, 2}, .shape = {{3, 4}, {3, 1}, {1, 4}}, .kind = {m, r, r}};
    s[2] = (ls_op_sample){.ndim = {1, 2, 0}, .shape = {{3}, {2, 3}, {0}}, .kind = {m, r, r}};
    s[3] = (ls_op_sample){.ndim = {2, 0, 1}, .shape = {{2, 1}, {0}, {3}}, .kind = {m, r, r}};
    return 4;
}
const ls_op_def ls_op_where = {.name = "where", .nin = 3, .lua_sig = "T T T", .forward = where_fwd,
    .backward = where_bwd, .samples = where_samples};
ls_tensor *ls_where(ls_tensor *cond, ls_tensor *a, ls_tensor *b)
{
    return ls_op_apply(LS_OP_WHERE, (ls_tensor *[]){cond, a, b}, NULL);
}
