/* The kernels and forward drivers behind the elementwise ops (elementwise.c, which holds the op
 * definitions, their backward rules and gradient-check samples).
 *
 * Kernels. Every kernel is an ls_iter run function (engine/tensor/tensor.h): it receives a run of
 * `n` elements with per-operand element strides. Each kernel is written once as an expression in
 * `x` (and `y`); the LS_*_KERNEL macros below expand it into one run function whose name is spelled
 * out in the invocation (grep finds `exp_run`), holding an f32 loop and an f64 loop. Each loop has
 * a stride-1 branch the compiler vectorises (the common case: contiguous inputs arrive as one long
 * run) and, for binary ops, branches for a broadcast scalar operand (stride 0: `x + 2`, a bias
 * along the last dim); everything else takes the general strided loop. The output is always freshly
 * allocated, so `restrict` holds and no run-time alias checks are needed. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/elementwise_kernel.h"

/* GCC 12's -O2 does not vectorise loops of unknown trip count (its "very cheap" cost model); these
 * loops are the engine's hot path, so this file asks for vectorisation with the normal cost model.
 * Without no-trapping-math GCC will not turn float selects (relu, clamp, the range checks in the
 * f32 kernels) into vector blends. Neither math option changes a result: nothing here reads errno
 * or the floating-point exception flags. (Clang vectorises at -O2 and needs none of this.) */
#include "core/vectorize.h"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-math-errno", "no-trapping-math")
#endif

/* ==== kernels ==== */

/* o = EXPR(x), T the element type. */
#define LS_UNARY_LOOP(T, EXPR)                                                                     \
    do {                                                                                           \
        T *restrict o_ = (T *)p[0];                                                                \
        const T *restrict a_ = (const T *)p[1];                                                    \
        if (s[0] == 1 && s[1] == 1) {                                                              \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a_[i];                                                                       \
                o_[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a_[i * s[1]];                                                                \
                o_[i * s[0]] = (EXPR);                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define LS_UNARY_KERNEL(fname, EXPR_F32, EXPR_F64)                                                 \
    LS_UNARY_KERNEL_ATTR(, fname, EXPR_F32, EXPR_F64)
#define LS_UNARY_KERNEL_ATTR(attr, fname, EXPR_F32, EXPR_F64)                                      \
    attr void fname(void *vctx, int64_t n, char **p, const int64_t *s)                             \
    {                                                                                              \
        if (((const ls_ew_ctx *)vctx)->dtype == LS_F32)                                            \
            LS_UNARY_LOOP(float, EXPR_F32);                                                        \
        else                                                                                       \
            LS_UNARY_LOOP(double, EXPR_F64);                                                       \
    }

/* o = EXPR(x, y) with fast paths for contiguous operands and for one input broadcast (stride 0). */
#define LS_BINARY_LOOP(T, EXPR)                                                                    \
    do {                                                                                           \
        T *restrict o_ = (T *)p[0];                                                                \
        const T *restrict a_ = (const T *)p[1];                                                    \
        const T *restrict b_ = (const T *)p[2];                                                    \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                                                 \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a_[i], y = b_[i];                                                            \
                o_[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {                                          \
            const T y = b_[0];                                                                     \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a_[i];                                                                       \
                o_[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {                                          \
            const T x = a_[0];                                                                     \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T y = b_[i];                                                                       \
                o_[i] = (EXPR);                                                                    \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a_[i * s[1]], y = b_[i * s[2]];                                              \
                o_[i * s[0]] = (EXPR);                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define LS_BINARY_KERNEL(fname, EXPR_F32, EXPR_F64)                                                \
    LS_BINARY_KERNEL_ATTR(, fname, EXPR_F32, EXPR_F64)
#define LS_BINARY_KERNEL_ATTR(attr, fname, EXPR_F32, EXPR_F64)                                     \
    attr void fname(void *vctx, int64_t n, char **p, const int64_t *s)                             \
    {                                                                                              \
        if (((const ls_ew_ctx *)vctx)->dtype == LS_F32)                                            \
            LS_BINARY_LOOP(float, EXPR_F32);                                                       \
        else                                                                                       \
            LS_BINARY_LOOP(double, EXPR_F64);                                                      \
    }

/* Compute-bound kernels are also compiled for AVX2 + FMA (8 floats a step instead of SSE2's 4) and
 * picked at run time by simd_pick() when the CPU has both. Results are fixed for a given machine;
 * LANDSCAPE_SIMD=baseline in the environment forces the SSE2 kernels everywhere, for results that
 * agree bit for bit across x86-64 machines. (GCC's target_clones would dispatch automatically, but
 * its load-time resolver chose the baseline clone on an AVX2 machine here, so the choice is made
 * explicitly.) */
#if defined(__x86_64__) && defined(__GNUC__)
#define LS_HAVE_AVX2_CLONES 1
#define LS_AVX2_FMA __attribute__((target("avx2,fma")))
bool ew_cpu_has_avx2_fma(void)
{
    static atomic_int cached = -1;   /* threads racing here all compute the same value */
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LANDSCAPE_SIMD");
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
            !(env && strcmp(env, "baseline") == 0);
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
#endif

#include "ops/vecmath.h"

/* NaN propagates through relu, sign, clamp, minimum and maximum (x != x: a vectorisable isnan). */
LS_UNARY_KERNEL(neg_run, -x, -x)
LS_UNARY_KERNEL(exp_run, exp_f32(x), exp_f64(x))
#ifdef LS_HAVE_AVX2_CLONES
LS_UNARY_KERNEL_ATTR(LS_AVX2_FMA, exp_run_avx2, exp_f32(x), exp_f64(x))
#endif
LS_UNARY_KERNEL(log_run, logf(x), log(x))
LS_UNARY_KERNEL(sqrt_run, sqrtf(x), sqrt(x))
LS_UNARY_KERNEL(abs_run, fabsf(x), fabs(x))
LS_UNARY_KERNEL(sign_run, x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x),
                x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : x))
LS_UNARY_KERNEL(relu_run, x < 0.0f ? 0.0f : x, x < 0.0 ? 0.0 : x)
LS_UNARY_KERNEL(tanh_run, tanh_f32(x), tanh_f64(x))
#ifdef LS_HAVE_AVX2_CLONES
LS_UNARY_KERNEL_ATTR(LS_AVX2_FMA, tanh_run_avx2, tanh_f32(x), tanh_f64(x))
#endif
LS_UNARY_KERNEL(sigmoid_run, sigmoid_f32(x), sigmoid_f64(x))
#ifdef LS_HAVE_AVX2_CLONES
LS_UNARY_KERNEL_ATTR(LS_AVX2_FMA, sigmoid_run_avx2, sigmoid_f32(x), sigmoid_f64(x))
#endif
LS_UNARY_KERNEL(softplus_run, softplus_f32(x), softplus_f64(x))
#ifdef LS_HAVE_AVX2_CLONES
LS_UNARY_KERNEL_ATTR(LS_AVX2_FMA, softplus_run_avx2, softplus_f32(x), softplus_f64(x))
#endif

LS_BINARY_KERNEL(add_run, x + y, x + y)
LS_BINARY_KERNEL(sub_run, x - y, x - y)
LS_BINARY_KERNEL(mul_run, x * y, x * y)
LS_BINARY_KERNEL(div_run, x / y, x / y)
LS_BINARY_KERNEL(minimum_run, (x < y || x != x) ? x : y, (x < y || x != x) ? x : y)
LS_BINARY_KERNEL(maximum_run, (x > y || x != x) ? x : y, (x > y || x != x) ? x : y)
LS_BINARY_KERNEL(eq_run, (float)(x == y), (double)(x == y))
LS_BINARY_KERNEL(ne_run, (float)(x != y), (double)(x != y))
LS_BINARY_KERNEL(lt_run, (float)(x < y), (double)(x < y))
LS_BINARY_KERNEL(le_run, (float)(x <= y), (double)(x <= y))
LS_BINARY_KERNEL(gt_run, (float)(x > y), (double)(x > y))
LS_BINARY_KERNEL(ge_run, (float)(x >= y), (double)(x >= y))
LS_BINARY_KERNEL_ATTR(static, pow_general_run, powf(x, y), pow(x, y))

/* pow with a broadcast scalar exponent of 2, 1 or -1 (squares in losses, ls_pow_scalar in backward
 * rules) skips the library pow: x * x and 1 / x are correctly rounded, so at least as accurate. */
void pow_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    const ls_ew_ctx *c = vctx;
    if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
        double e = c->dtype == LS_F32 ? (double)*(const float *)p[2] : *(const double *)p[2];
        if (e == 2.0) {
            mul_run(vctx, n, (char *[]){p[0], p[1], p[1]}, (const int64_t[]){1, 1, 1});
            return;
        }
        if (e == 1.0) {
            memcpy(p[0], p[1], (size_t)n * ls_dtype_size(c->dtype));
            return;
        }
        if (e == -1.0) {
            union { float f; double d; } one;
            if (c->dtype == LS_F32) one.f = 1.0f;
            else one.d = 1.0;
            div_run(vctx, n, (char *[]){p[0], (char *)&one, p[1]}, (const int64_t[]){1, 0, 1});
            return;
        }
    }
    pow_general_run(vctx, n, p, s);
}

/* min(max(x, lo), hi) with NaN x kept; unbounded sides are +-inf. */
void clamp_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    const ls_ew_ctx *c = vctx;
    if (c->dtype == LS_F32) {
        const float lo = (float)c->lo, hi = (float)c->hi;
        LS_UNARY_LOOP(float, (x < lo ? lo : x) > hi ? hi : (x < lo ? lo : x));
    } else {
        const double lo = c->lo, hi = c->hi;
        LS_UNARY_LOOP(double, (x < lo ? lo : x) > hi ? hi : (x < lo ? lo : x));
    }
}

/* o = cond != 0 ? a : b. */
#define LS_WHERE_LOOP(T)                                                                           \
    do {                                                                                           \
        T *restrict o_ = (T *)p[0];                                                                \
        const T *restrict c_ = (const T *)p[1], *restrict a_ = (const T *)p[2];                    \
        const T *restrict b_ = (const T *)p[3];                                                    \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T av = a_[i], bv = b_[i]; /* both loaded: a select the compiler vectorises */      \
                o_[i] = c_[i] != 0 ? av : bv;                                                      \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++)                                                        \
                o_[i * s[0]] = c_[i * s[1]] != 0 ? a_[i * s[2]] : b_[i * s[3]];                    \
        }                                                                                          \
    } while (0)

void where_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    if (((const ls_ew_ctx *)vctx)->dtype == LS_F32)
        LS_WHERE_LOOP(float);
    else
        LS_WHERE_LOOP(double);
}

/* relu_backward(g, x) = g where x > 0, else 0 (see elementwise.c). */
LS_BINARY_KERNEL(relu_backward_run, y > 0.0f ? x : 0.0f, y > 0.0 ? x : 0.0)

/* erf (libm's, scalar): the Gaussian CDF behind exact GELU. */
LS_UNARY_KERNEL(erf_run, erff(x), erf(x))

/* ==== forward drivers ==== */

/* Check dtypes, broadcast the inputs' shapes, allocate the output and run `fn` over it. */
ls_tensor *ew_apply(const char *who, int nin, ls_tensor *const *in, ls_iter_fn fn, ls_ew_ctx *ctx)
{
    if (ls_check_float_same(who, nin, in)) return NULL;
    int nd = in[0]->ndim;
    int64_t shape[LS_MAX_DIMS], prev[LS_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    for (int k = 1; k < nin; k++) {
        memcpy(prev, shape, sizeof prev);   /* ls_broadcast_shapes must not write its input */
        if (ls_broadcast_shapes(who, nd, prev, in[k]->ndim, in[k]->shape, &nd, shape)) return NULL;
    }
    /* inputs of one shape and one layout: the output takes that layout (see ls_tensor_new_like) */
    bool same = in[0]->ndim == nd && !memcmp(in[0]->shape, shape, sizeof(int64_t) * (size_t)nd);
    for (int k = 1; k < nin && same; k++)
        same = in[k]->ndim == nd && !memcmp(in[k]->shape, shape, sizeof(int64_t) * (size_t)nd) &&
               !memcmp(in[k]->stride, in[0]->stride, sizeof(int64_t) * (size_t)nd);
    ls_tensor *out = same ? ls_tensor_new_like(in[0]->dtype, in[0])
                          : ls_tensor_new(in[0]->dtype, nd, shape);
    if (!out) return NULL;
    ctx->dtype = in[0]->dtype;
    ls_iter it;
    ls_iter_init(&it, out, nin, (const ls_tensor *const *)in);
    ls_iter_run(&it, fn, ctx);
    return out;
}

ls_tensor *ew_unary(const char *who, ls_tensor *const *in, ls_iter_fn fn)
{
    ls_ew_ctx ctx = {0};
    return ew_apply(who, 1, in, fn, &ctx);
}
ls_tensor *ew_binary(const char *who, ls_tensor *const *in, ls_iter_fn fn)
{
    ls_ew_ctx ctx = {0};
    return ew_apply(who, 2, in, fn, &ctx);
}
