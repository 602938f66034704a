/* Optimizer update kernels and gradient clipping.
 *
 * Each step function updates one parameter tensor in place, on its storage and outside any autograd
 * graph (like PyTorch's updates under no_grad): a leaf parameter stays a leaf. The arithmetic follows
 * torch.optim (1.13, single-tensor path) operation for operation, so float64 results agree with
 * PyTorch to rounding:
 *
 *   SGD       d = g + wd*p;  buf = d (first step) | momentum*buf + (1 - dampening)*d;
 *             d = d + momentum*buf (Nesterov) | buf;  p = p - lr*d
 *   Adam      g = g + wd*p;  m = beta1*m + (1 - beta1)*g;  v = beta2*v + (1 - beta2)*g*g;
 *             vmax = max(vmax, v) (amsgrad);  denom = sqrt(v or vmax) / sqrt(1 - beta2^t) + eps;
 *             p = p - (lr / (1 - beta1^t)) * m / denom
 *   AdamW     as Adam, but the decay is decoupled: p = p*(1 - lr*wd) first, and g is not changed.
 *
 * Parameters and optimizer state (momentum buffers, moments) must be contiguous f32 or f64 tensors
 * of the parameter's shape and dtype; a gradient of the right shape and dtype may have any layout.
 * A mismatch is an LS_ERR_ARG naming the optimizer and the shapes. Work is split over the thread
 * pool in fixed chunks of elements; every element's update is independent, so results do not
 * depend on the thread count. */
#ifndef LS_OPTIM_H
#define LS_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

/* torch.optim.SGD hyperparameters (torch's defaults: momentum 0, dampening 0, weight_decay 0,
 * nesterov false; lr has no default). Nesterov needs momentum > 0 and dampening == 0. */
typedef struct ls_sgd_config {
    double lr;
    double momentum;
    double dampening;
    double weight_decay;
    bool nesterov;
} ls_sgd_config;

/* One SGD step on `param` using `grad`. `momentum_buf` is the parameter-shaped buffer (may be NULL
 * when momentum == 0); on the first step (`first_step`) it is overwritten with the (decayed)
 * gradient, exactly as torch clones it, so its previous contents do not matter. When `finite` is
 * not NULL it receives whether every updated parameter entry is finite (checked as each entry is
 * written, so a training loop needs no second pass over the parameters to detect divergence). */
ls_status ls_optim_sgd_step(ls_tensor *param, const ls_tensor *grad, ls_tensor *momentum_buf,
                            bool first_step, const ls_sgd_config *cfg, bool *finite);

/* torch.optim.Adam / AdamW hyperparameters. decoupled_weight_decay selects AdamW's rule; the name
 * used in error messages follows it ("adam" or "adamw"). */
typedef struct ls_adam_config {
    double lr;
    double beta1, beta2;
    double eps;
    double weight_decay;
    bool amsgrad;
    bool decoupled_weight_decay;
} ls_adam_config;

/* One Adam/AdamW step; `step` is the parameter's step count AFTER this update (1 on the first call),
 * used for the bias corrections. exp_avg and exp_avg_sq start as zeros; max_exp_avg_sq (zeros at the
 * start) is required when amsgrad and ignored otherwise. `finite` as in ls_optim_sgd_step. */
ls_status ls_optim_adam_step(ls_tensor *param, const ls_tensor *grad, ls_tensor *exp_avg,
                             ls_tensor *exp_avg_sq, ls_tensor *max_exp_avg_sq, int64_t step,
                             const ls_adam_config *cfg, bool *finite);

/* torch.nn.utils.clip_grad_norm_: the p-norm of all n gradients taken together as one vector
 * (norm_type > 0, or INFINITY for the max-norm) is stored in *total_norm; then, if
 * clip = max_norm / (total + 1e-6) is below 1 (or NaN), every gradient is scaled by it in place.
 * With error_if_nonfinite a NaN or infinite total is an LS_ERR_ARG and nothing is scaled.
 * The sum runs in double over fixed chunks of each tensor, partial sums added in chunk order, so the
 * total is the same for any thread count. n == 0 gives a total of 0. Gradients of any layout are
 * accepted; non-contiguous ones are scaled through a contiguous copy written back. */
ls_status ls_optim_clip_grad_norm(int n, ls_tensor *const *grads, double max_norm, double norm_type,
                                  bool error_if_nonfinite, double *total_norm);

#endif
