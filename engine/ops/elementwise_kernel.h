/* Internal to the elementwise ops (elementwise.c): the kernels and forward drivers
 * (elementwise_kernel.c, where the kernels' layout is described). */
#ifndef LS_ELEMENTWISE_KERNEL_H
#define LS_ELEMENTWISE_KERNEL_H

#include "ops/ops.h"

/* What every kernel gets as ctx: the dtype, and clamp's bounds. */
typedef struct ls_ew_ctx {
    ls_dtype dtype;
    double lo, hi;
} ls_ew_ctx;

/* The kernels, each an ls_iter run function (engine/tensor/tensor.h); ew_kernel is its function
 * type, so one line declares several. Operand 0 is the output. */
typedef void ew_kernel(void *ctx, int64_t n, char **p, const int64_t *s);
ew_kernel neg_run, exp_run, log_run, sqrt_run, abs_run, sign_run, relu_run, tanh_run, sigmoid_run,
    softplus_run, erf_run;
ew_kernel clamp_run;   /* between ctx's lo and hi */
ew_kernel add_run, sub_run, mul_run, div_run, pow_run, minimum_run, maximum_run, relu_backward_run;
ew_kernel eq_run, ne_run, lt_run, le_run, gt_run, ge_run;   /* 1 or 0 */
ew_kernel where_run;   /* operands: out, cond, a, b */

/* exp, tanh, sigmoid and softplus are also compiled for AVX2 + FMA:
 * simd_pick(exp_run, exp_run_avx2) is the one to run on this CPU. */
#if defined(__x86_64__) && defined(__GNUC__)
ew_kernel exp_run_avx2, tanh_run_avx2, sigmoid_run_avx2, softplus_run_avx2;
bool ew_cpu_has_avx2_fma(void);
#define simd_pick(generic, avx2) (ew_cpu_has_avx2_fma() ? (avx2) : (generic))
#else
#define simd_pick(generic, avx2) (generic)
#endif

/* Check dtypes, broadcast the inputs' shapes, allocate the output and run `fn` over it. */
ls_tensor *ew_apply(const char *who, int nin, ls_tensor *const *in, ls_iter_fn fn, ls_ew_ctx *ctx);
/* ew_apply for one or two inputs and no bounds. */
ls_tensor *ew_unary(const char *who, ls_tensor *const *in, ls_iter_fn fn);
ls_tensor *ew_binary(const char *who, ls_tensor *const *in, ls_iter_fn fn);

#endif
