/* Optimizer update kernels (SGD, Adam, AdamW) and gradient-norm clipping. See optim.h for the
 * formulas.
 *
 * Layout: each kernel is one `*_chunk` function run by ls_parallel_for over [0, numel) in chunks of
 * LS_OPTIM_GRAIN elements, holding an f32 loop and an f64 loop written once as a macro with the
 * element type as its argument. Coefficients are computed once in double (as PyTorch computes its
 * Python-float scalars) and converted to the element type inside the loop, as ATen converts a scalar
 * argument to the tensor's type. Each expression keeps PyTorch's operation order, e.g.
 * `buf.mul_(m).add_(d, alpha=1-damp)` is `buf*m + (1-damp)*d`, and addcdiv's `p + value*m/denom` is
 * `p + (value*m)/denom`, so float64 results match torch.optim to the last bit or nearly so. */
#include "optim/optim.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"

#define LS_OPTIM_GRAIN 16384

/* Vectorised loops without FMA contraction, in the baseline loops and in their AVX-512 copies
 * alike: each product and sum rounds as torch's separate ops do, and the two copies give the same
 * bits. */
#define LS_VECTORIZE_NO_CONTRACT
#include "core/vectorize.h"

/* Each kernel's chunk function is compiled twice from one body: for baseline x86-64 and, where the
 * CPU has it (checked at run time), for AVX-512, whose wider loops run these updates faster (SGD
 * with momentum on 335 000 floats: 41-43 us against 63-66 us per step on this machine's Zen 5).
 * Elementwise arithmetic without contraction gives the same bits in both (test_optim compares
 * them). */
#if defined(__x86_64__) && defined(__GNUC__)
#define OPTIM_CHUNK(name, body)                                                                    \
    static void name(void *vctx, int64_t begin, int64_t end) body                                  \
    __attribute__((target("avx512f"))) static void name##_avx512(void *vctx, int64_t begin,        \
                                                                 int64_t end) body
/* LANDSCAPE_SIMD=baseline in the environment (read at the first step, as the elementwise kernels
 * read it) keeps the baseline copies. */
static ls_parallel_fn optim_pick(ls_parallel_fn base, ls_parallel_fn avx512)
{
    static atomic_int cached = -1;   /* threads racing here all compute the same value */
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LANDSCAPE_SIMD");
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && !(env && strcmp(env, "baseline") == 0);
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v ? avx512 : base;
}
#define OPTIM_KERNEL(name) optim_pick(name, name##_avx512)
#else
#define OPTIM_CHUNK(name, body) static void name(void *vctx, int64_t begin, int64_t end) body
#define OPTIM_KERNEL(name) (name)
#endif

/* Finiteness of what a kernel writes, at the cost of three integer operations per entry that
 * vectorise with the arithmetic: with E the exponent field (all ones: an infinity or a NaN),
 * (bits & E) + lowest exponent bit carries into the sign bit exactly when the field is all ones; the
 * kernel ORs that into `bad` and tests the sign bit after its loop. */
#define FINITE_BITS(T) _Generic((T)0, float: (uint32_t)0, double: (uint64_t)0)
#define NONFINITE_MARK(T, x)                                                                       \
    _Generic((T)0,                                                                                 \
        float: ((bits32(x) & 0x7f800000u) + 0x00800000u),                                          \
        double: ((bits64(x) & 0x7ff0000000000000ull) + 0x0010000000000000ull))
#define NONFINITE_SEEN(T, bad)                                                                     \
    (sizeof(T) == 4 ? ((bad) & 0x80000000u) != 0 : ((bad) & 0x8000000000000000ull) != 0)
static inline uint32_t bits32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static inline uint64_t bits64(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* ---- argument checks ---- */

static bool same_shape(const ls_tensor *a, const ls_tensor *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

static ls_status check_param(const char *who, const ls_tensor *param)
{
    if (!param) return ls_error_set(LS_ERR_ARG, "%s: parameter is NULL", who);
    if (!ls_dtype_is_float(param->dtype))
        return ls_error_set(LS_ERR_ARG, "%s: parameter %s has dtype %s (expected f32 or f64)", who,
                            ls_tensor_shape_str(param), ls_dtype_name(param->dtype));
    if (!ls_tensor_is_contiguous(param))
        return ls_error_set(LS_ERR_ARG, "%s: parameter %s is not contiguous", who,
                            ls_tensor_shape_str(param));
    return LS_OK;
}

/* `what` ("gradient", "exp_avg", ...) must match param in shape and dtype; state (need_contig) must
 * also be contiguous since the kernel writes it by flat index. */
static ls_status check_like(const char *who, const char *what, const ls_tensor *param,
                            const ls_tensor *t, bool need_contig)
{
    if (!t) return ls_error_set(LS_ERR_ARG, "%s: %s is missing for parameter %s", who, what,
                                ls_tensor_shape_str(param));
    if (!same_shape(param, t))
        return ls_error_set(LS_ERR_ARG, "%s: %s shape %s does not match parameter shape %s", who,
                            what, ls_tensor_shape_str(t), ls_tensor_shape_str(param));
    if (t->dtype != param->dtype)
        return ls_error_set(LS_ERR_ARG, "%s: %s %s has dtype %s but the parameter %s is %s", who,
                            what, ls_tensor_shape_str(t), ls_dtype_name(t->dtype),
                            ls_tensor_shape_str(param), ls_dtype_name(param->dtype));
    if (need_contig && !ls_tensor_is_contiguous(t))
        return ls_error_set(LS_ERR_ARG, "%s: %s %s is not contiguous", who, what,
                            ls_tensor_shape_str(t));
    return LS_OK;
}

static ls_status check_nonneg(const char *who, const char *name, double v)
{
    if (!(v >= 0.0) || isinf(v))
        return ls_error_set(LS_ERR_ARG, "%s: invalid %s %g (must be finite and >= 0)", who, name, v);
    return LS_OK;
}

/* ================================================================================================
 * SGD
 * ================================================================================================ */

typedef struct sgd_ctx {
    ls_dtype dtype;
    char *p, *buf;
    const char *g;
    double lr, momentum, dampening, weight_decay;
    bool nesterov, first;
    atomic_int *nonfinite; /* set when a chunk wrote a NaN or infinite parameter entry */
} sgd_ctx;

/* torch.optim.sgd._single_tensor_sgd, one element at a time:
 *   d_p = d_p.add(param, alpha=wd); buf = clone(d_p) | buf.mul_(m).add_(d_p, alpha=1-damp);
 *   d_p = d_p.add(buf, alpha=m) | buf; param.add_(d_p, alpha=-lr) */
#define SGD_LOOP(T, MOM, FIRST, WD, NEST)                                                          \
    do {                                                                                           \
        T *restrict p = (T *)c->p, *restrict buf = (T *)c->buf;                                    \
        const T *restrict g = (const T *)c->g;                                                     \
        const T wd = (T)c->weight_decay, m = (T)c->momentum, keep = (T)(1.0 - c->dampening);       \
        const T neg_lr = (T)(-c->lr);                                                              \
        __typeof__(FINITE_BITS(T)) bad = 0;                                                        \
        for (int64_t i = begin; i < end; i++) {                                                    \
            T d = g[i];                                                                            \
            if (WD) d = d + wd * p[i];                                                             \
            if (MOM) {                                                                             \
                T b = FIRST ? d : buf[i] * m + keep * d;                                           \
                buf[i] = b;                                                                        \
                d = NEST ? d + m * b : b;                                                          \
            }                                                                                      \
            T q = p[i] + neg_lr * d;                                                               \
            p[i] = q;                                                                              \
            bad |= NONFINITE_MARK(T, q);                                                           \
        }                                                                                          \
        if (NONFINITE_SEEN(T, bad)) atomic_store_explicit(c->nonfinite, 1, memory_order_relaxed);     \
    } while (0)

/* Each combination of the options as its own loop (constants in SGD_LOOP), so that each
 * vectorises: buf is NULL without momentum and must not be read. */
#define SGD_WD_NEST(T, MOM, FIRST)                                                                 \
    do {                                                                                           \
        if (c->weight_decay != 0.0) {                                                              \
            if (c->nesterov) SGD_LOOP(T, MOM, FIRST, 1, 1);                                        \
            else SGD_LOOP(T, MOM, FIRST, 1, 0);                                                    \
        } else {                                                                                   \
            if (c->nesterov) SGD_LOOP(T, MOM, FIRST, 0, 1);                                        \
            else SGD_LOOP(T, MOM, FIRST, 0, 0);                                                    \
        }                                                                                          \
    } while (0)
#define SGD_CASES(T)                                                                               \
    do {                                                                                           \
        if (c->momentum == 0.0) SGD_WD_NEST(T, 0, 0);                                              \
        else if (c->first) SGD_WD_NEST(T, 1, 1);                                                   \
        else SGD_WD_NEST(T, 1, 0);                                                                 \
    } while (0)

OPTIM_CHUNK(sgd_chunk, {
    const sgd_ctx *c = vctx;
    if (c->dtype == LS_F32)
        SGD_CASES(float);
    else
        SGD_CASES(double);
})

ls_status ls_optim_sgd_step(ls_tensor *param, const ls_tensor *grad, ls_tensor *momentum_buf,
                            bool first_step, const ls_sgd_config *cfg, bool *finite)
{
    const char *who = "sgd";
    ls_status rc;
    if ((rc = check_nonneg(who, "learning rate", cfg->lr))) return rc;
    if ((rc = check_nonneg(who, "momentum", cfg->momentum))) return rc;
    if ((rc = check_nonneg(who, "weight_decay", cfg->weight_decay))) return rc;
    if (!isfinite(cfg->dampening))
        return ls_error_set(LS_ERR_ARG, "%s: invalid dampening %g", who, cfg->dampening);
    if (cfg->nesterov && (cfg->momentum <= 0.0 || cfg->dampening != 0.0))
        return ls_error_set(LS_ERR_ARG, "%s: Nesterov momentum requires a momentum and zero "
                            "dampening (momentum %g, dampening %g)", who, cfg->momentum,
                            cfg->dampening);
    if ((rc = check_param(who, param))) return rc;
    if ((rc = check_like(who, "gradient", param, grad, false))) return rc;
    if (cfg->momentum != 0.0 && (rc = check_like(who, "momentum buffer", param, momentum_buf, true)))
        return rc;
    ls_tensor *g = ls_tensor_contiguous(grad);
    if (!g) return ls_error_code();
    atomic_int nonfinite = 0;
    sgd_ctx c = {.dtype = param->dtype, .p = ls_tensor_data(param), .g = ls_tensor_data(g),
                 .buf = cfg->momentum != 0.0 ? ls_tensor_data(momentum_buf) : NULL,
                 .lr = cfg->lr, .momentum = cfg->momentum, .dampening = cfg->dampening,
                 .weight_decay = cfg->weight_decay, .nesterov = cfg->nesterov, .first = first_step,
                 .nonfinite = &nonfinite};
    ls_parallel_for(ls_tensor_numel(param), LS_OPTIM_GRAIN, OPTIM_KERNEL(sgd_chunk), &c);
    ls_tensor_release(g);
    if (finite) *finite = !atomic_load_explicit(&nonfinite, memory_order_relaxed);
    return LS_OK;
}

/* ================================================================================================
 * Adam and AdamW
 * ================================================================================================ */

typedef struct adam_ctx {
    ls_dtype dtype;
    char *p, *m, *v, *vmax;
    const char *g;
    double beta1, beta2, eps, weight_decay;
    double decay_factor;   /* AdamW: 1 - lr*wd */
    double bc2_sqrt;       /* sqrt(1 - beta2^t) */
    double neg_step_size;  /* -lr / (1 - beta1^t) */
    bool amsgrad, decoupled;
    atomic_int *nonfinite; /* set when a chunk wrote a NaN or infinite parameter entry */
} adam_ctx;

/* torch.optim.adam._single_tensor_adam / adamw._single_tensor_adamw, one element at a time:
 *   [AdamW] param.mul_(1 - lr*wd)        [Adam] grad = grad.add(param, alpha=wd)
 *   exp_avg.mul_(b1).add_(grad, alpha=1-b1); exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1-b2)
 *   [amsgrad] max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq)
 *   denom = (sq.sqrt() / bc2_sqrt).add_(eps); param.addcdiv_(exp_avg, denom, value=-step_size)
 * torch.maximum propagates NaN; fmax would not, hence the explicit comparison. */
#define ADAM_LOOP(T, SQRT)                                                                         \
    do {                                                                                           \
        T *p = (T *)c->p, *m = (T *)c->m, *v = (T *)c->v, *vmax = (T *)c->vmax;                    \
        const T *g = (const T *)c->g;                                                              \
        const T wd = (T)c->weight_decay, decay = (T)c->decay_factor;                               \
        const T b1 = (T)c->beta1, b2 = (T)c->beta2, keep1 = (T)(1.0 - c->beta1);                   \
        const T keep2 = (T)(1.0 - c->beta2), eps = (T)c->eps, bc2 = (T)c->bc2_sqrt;                \
        const T neg_step = (T)c->neg_step_size;                                                    \
        __typeof__(FINITE_BITS(T)) bad = 0;                                                        \
        for (int64_t i = begin; i < end; i++) {                                                    \
            T gi = g[i], pi = p[i];                                                                \
            if (c->decoupled)                                                                      \
                pi = pi * decay;                                                                   \
            else if (c->weight_decay != 0.0)                                                       \
                gi = gi + wd * pi;                                                                 \
            T mi = m[i] * b1 + keep1 * gi;                                                         \
            T vi = v[i] * b2 + keep2 * gi * gi;                                                    \
            m[i] = mi;                                                                             \
            v[i] = vi;                                                                             \
            if (c->amsgrad) {                                                                      \
                T w = vmax[i];                                                                     \
                if (vi > w || vi != vi) w = vi;                                                    \
                vmax[i] = w;                                                                       \
                vi = w;                                                                            \
            }                                                                                      \
            T denom = SQRT(vi) / bc2 + eps;                                                        \
            T q = pi + neg_step * mi / denom;                                                      \
            p[i] = q;                                                                              \
            bad |= NONFINITE_MARK(T, q);                                                           \
        }                                                                                          \
        if (NONFINITE_SEEN(T, bad)) atomic_store_explicit(c->nonfinite, 1, memory_order_relaxed);     \
    } while (0)

OPTIM_CHUNK(adam_chunk, {
    const adam_ctx *c = vctx;
    if (c->dtype == LS_F32)
        ADAM_LOOP(float, sqrtf);
    else
        ADAM_LOOP(double, sqrt);
})

ls_status ls_optim_adam_step(ls_tensor *param, const ls_tensor *grad, ls_tensor *exp_avg,
                             ls_tensor *exp_avg_sq, ls_tensor *max_exp_avg_sq, int64_t step,
                             const ls_adam_config *cfg, bool *finite)
{
    const char *who = cfg->decoupled_weight_decay ? "adamw" : "adam";
    ls_status rc;
    if ((rc = check_nonneg(who, "learning rate", cfg->lr))) return rc;
    if ((rc = check_nonneg(who, "epsilon value", cfg->eps))) return rc;
    if ((rc = check_nonneg(who, "weight_decay value", cfg->weight_decay))) return rc;
    if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0))
        return ls_error_set(LS_ERR_ARG,
                            "%s: invalid beta parameter at index 1: %g (must be in [0, 1))", who,
                            cfg->beta1);
    if (!(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
        return ls_error_set(LS_ERR_ARG,
                            "%s: invalid beta parameter at index 2: %g (must be in [0, 1))", who,
                            cfg->beta2);
    if (step < 1)
        return ls_error_set(LS_ERR_ARG, "%s: step count %lld must be >= 1", who, (long long)step);
    if ((rc = check_param(who, param))) return rc;
    if ((rc = check_like(who, "gradient", param, grad, false))) return rc;
    if ((rc = check_like(who, "exp_avg", param, exp_avg, true))) return rc;
    if ((rc = check_like(who, "exp_avg_sq", param, exp_avg_sq, true))) return rc;
    if (cfg->amsgrad && (rc = check_like(who, "max_exp_avg_sq", param, max_exp_avg_sq, true)))
        return rc;
    ls_tensor *g = ls_tensor_contiguous(grad);
    if (!g) return ls_error_code();
    /* the scalars exactly as torch computes them in Python floats */
    double bias_correction1 = 1.0 - pow(cfg->beta1, (double)step);
    double bias_correction2 = 1.0 - pow(cfg->beta2, (double)step);
    atomic_int nonfinite = 0;
    adam_ctx c = {.dtype = param->dtype, .p = ls_tensor_data(param), .g = ls_tensor_data(g),
                  .m = ls_tensor_data(exp_avg), .v = ls_tensor_data(exp_avg_sq),
                  .vmax = cfg->amsgrad ? ls_tensor_data(max_exp_avg_sq) : NULL,
                  .beta1 = cfg->beta1, .beta2 = cfg->beta2, .eps = cfg->eps,
                  .weight_decay = cfg->weight_decay,
                  .decay_factor = 1.0 - cfg->lr * cfg->weight_decay,
                  .bc2_sqrt = sqrt(bias_correction2), .neg_step_size = -(cfg->lr / bias_correction1),
                  .amsgrad = cfg->amsgrad, .decoupled = cfg->decoupled_weight_decay,
                  .nonfinite = &nonfinite};
    ls_parallel_for(ls_tensor_numel(param), LS_OPTIM_GRAIN, OPTIM_KERNEL(adam_chunk), &c);
    ls_tensor_release(g);
    if (finite) *finite = !atomic_load_explicit(&nonfinite, memory_order_relaxed);
    return LS_OK;
}

/* ================================================================================================
 * Gradient clipping by total norm
 * ================================================================================================ */

typedef struct norm_ctx {
    ls_dtype dtype;
    const char *g;
    double p;         /* 2, INFINITY, or any other p > 0 */
    double *partial;  /* one per chunk */
} norm_ctx;

/* Per-chunk partial result: sum g^2 (p = 2), max |g| (p = inf), or sum |g|^p, in double. Each
 * chunk writes only its own slot, so the combination below is independent of which thread ran
 * what. */
#define NORM_LOOP(T)                                                                               \
    do {                                                                                           \
        const T *g = (const T *)c->g;                                                              \
        double acc = 0.0;                                                                          \
        if (c->p == 2.0) {                                                                         \
            for (int64_t i = begin; i < end; i++) acc += (double)g[i] * (double)g[i];              \
        } else if (isinf(c->p)) {                                                                  \
            for (int64_t i = begin; i < end; i++) {                                                \
                double a = fabs((double)g[i]);                                                     \
                if (a > acc || a != a) acc = a;                                                    \
                if (acc != acc) break;                                                             \
            }                                                                                      \
        } else if (c->p == 1.0) {                                                                  \
            for (int64_t i = begin; i < end; i++) acc += fabs((double)g[i]);                       \
        } else {                                                                                   \
            for (int64_t i = begin; i < end; i++) acc += pow(fabs((double)g[i]), c->p);            \
        }                                                                                          \
        c->partial[begin / LS_OPTIM_GRAIN] = acc;                                                  \
    } while (0)

static void norm_chunk(void *vctx, int64_t begin, int64_t end)
{
    const norm_ctx *c = vctx;
    if (c->dtype == LS_F32)
        NORM_LOOP(float);
    else
        NORM_LOOP(double);
}

typedef struct scale_ctx {
    ls_dtype dtype;
    char *g;
    double s;
} scale_ctx;

static void scale_chunk(void *vctx, int64_t begin, int64_t end)
{
    const scale_ctx *c = vctx;
    if (c->dtype == LS_F32) {
        float *g = (float *)c->g, s = (float)c->s;
        for (int64_t i = begin; i < end; i++) g[i] = g[i] * s;
    } else {
        double *g = (double *)c->g, s = c->s;
        for (int64_t i = begin; i < end; i++) g[i] = g[i] * s;
    }
}

ls_status ls_optim_clip_grad_norm(int n, ls_tensor *const *grads, double max_norm, double norm_type,
                                  bool error_if_nonfinite, double *total_norm)
{
    const char *who = "clip_grad_norm";
    *total_norm = 0.0;
    if (!(norm_type > 0.0))
        return ls_error_set(LS_ERR_ARG, "%s: norm_type must be > 0 or inf, got %g", who, norm_type);
    if (isnan(max_norm) || max_norm < 0.0)
        return ls_error_set(LS_ERR_ARG, "%s: max_norm must be >= 0, got %g", who, max_norm);
    if (n < 0) return ls_error_set(LS_ERR_ARG, "%s: negative gradient count %d", who, n);
    for (int k = 0; k < n; k++) {
        if (!grads[k]) return ls_error_set(LS_ERR_ARG, "%s: gradient %d is NULL", who, k + 1);
        if (!ls_dtype_is_float(grads[k]->dtype))
            return ls_error_set(LS_ERR_ARG, "%s: gradient %d %s has dtype %s (expected f32 or f64)",
                                who, k + 1, ls_tensor_shape_str(grads[k]),
                                ls_dtype_name(grads[k]->dtype));
    }
    /* contiguous views of every gradient (new references; the same tensor when already contiguous) */
    ls_tensor **cg = ls_calloc((size_t)(n > 0 ? n : 1) * sizeof *cg, "optim");
    if (!cg) return ls_error_set(LS_ERR_MEM, "%s: out of memory", who);
    ls_status rc = LS_OK;
    double acc = 0.0;
    for (int k = 0; k < n && rc == LS_OK; k++) {
        cg[k] = ls_tensor_contiguous(grads[k]);
        if (!cg[k]) {
            rc = ls_error_code();
            break;
        }
        int64_t numel = ls_tensor_numel(cg[k]);
        if (numel == 0) continue;
        int64_t nchunks = (numel - 1) / LS_OPTIM_GRAIN + 1;
        double *partial = ls_malloc(sizeof(double) * (size_t)nchunks, "optim");
        if (!partial) {
            rc = ls_error_set(LS_ERR_MEM, "%s: out of memory", who);
            break;
        }
        norm_ctx c = {.dtype = cg[k]->dtype, .g = ls_tensor_data(cg[k]), .p = norm_type,
                      .partial = partial};
        ls_parallel_for(numel, LS_OPTIM_GRAIN, norm_chunk, &c);
        for (int64_t j = 0; j < nchunks; j++) {
            if (isinf(norm_type)) {
                if (partial[j] > acc || partial[j] != partial[j]) acc = partial[j];
            } else {
                acc += partial[j];
            }
        }
        ls_free(partial);
    }
    if (rc == LS_OK) {
        double total = isinf(norm_type) ? acc
                       : norm_type == 2.0 ? sqrt(acc)
                       : norm_type == 1.0 ? acc
                                          : pow(acc, 1.0 / norm_type);
        *total_norm = total;
        double clip = max_norm / (total + 1e-6);
        if (error_if_nonfinite && !isfinite(total)) {
            rc = ls_error_set(LS_ERR_ARG, "%s: the total norm of order %g of the gradients is "
                              "non-finite (%g), so it cannot be clipped", who, norm_type, total);
        } else if (clip < 1.0 || isnan(clip)) {
            for (int k = 0; k < n && rc == LS_OK; k++) {
                scale_ctx s = {.dtype = cg[k]->dtype, .g = ls_tensor_data(cg[k]), .s = clip};
                ls_parallel_for(ls_tensor_numel(cg[k]), LS_OPTIM_GRAIN, scale_chunk, &s);
                if (cg[k] != grads[k]) rc = ls_tensor_copy_(grads[k], cg[k]);   /* write back */
            }
        }
    }
    for (int k = 0; k < n; k++) ls_tensor_release(cg[k]);
    ls_free(cg);
    return rc;
}
