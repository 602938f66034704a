/* Joining tensors: cat (a variadic op: any number of inputs, counted in attrs.nin) and stack
 * (unsqueeze each input, then cat).
 *
 * cat(t_1, ..., t_n; dim): the inputs share a dtype (any: f32, f64, i64, u8), a rank and every size
 * but dim's; the result is contiguous, the inputs one after the other along dim (torch.cat). Its
 * backward gives input k the slice narrow(g, dim, offset_k, size_k), a recorded view, so the
 * gradient differentiates again. stack(t_1, ..., t_n; dim) needs equal shapes and inserts a new
 * dim of size n at `dim` (0..ndim); its gradient flows through unsqueeze and cat. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/ops.h"

static ls_tensor *cat_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    int n = a->nin;
    if (n < 1) {
        ls_error_set(LS_ERR_ARG, "cat: no tensors to join");
        return NULL;
    }
    const ls_tensor *t0 = in[0];
    if (t0->ndim == 0) {
        ls_error_set(LS_ERR_ARG, "cat: tensor 1 is 0-d (%s); cat joins along a dim (use stack to "
                     "join scalars)", ls_tensor_shape_str(t0));
        return NULL;
    }
    int dim = a->dim;
    if (ls_check_dim("cat", t0->ndim, &dim)) return NULL;
    int64_t shape[LS_MAX_DIMS];
    memcpy(shape, t0->shape, sizeof shape);
    shape[dim] = 0;
    for (int k = 0; k < n; k++) {
        const ls_tensor *t = in[k];
        if (t->dtype != t0->dtype) {
            ls_error_set(LS_ERR_ARG, "cat: dtype mismatch: tensor 1 is %s, tensor %d is %s",
                         ls_dtype_name(t0->dtype), k + 1, ls_dtype_name(t->dtype));
            return NULL;
        }
        bool ok = t->ndim == t0->ndim;
        for (int d = 0; ok && d < t->ndim; d++) ok = d == dim || t->shape[d] == t0->shape[d];
        if (!ok) {
            char s0[64];
            snprintf(s0, sizeof s0, "%s", ls_tensor_shape_str(t0));
            ls_error_set(LS_ERR_ARG, "cat: tensor %d has shape %s, tensor 1 has %s (all sizes but "
                         "dim %d's must agree)", k + 1, ls_tensor_shape_str(t), s0, dim + 1);
            return NULL;
        }
        shape[dim] += t->shape[dim];
    }
    ls_tensor *out = ls_tensor_new(t0->dtype, t0->ndim, shape);
    int64_t off = 0;
    for (int k = 0; k < n && out; k++) {
        int64_t len = in[k]->shape[dim];
        if (len == 0) continue;
        ls_tensor *slot = ls_view_narrow(out, dim, off, len);
        ls_status rc = slot ? ls_tensor_copy_(slot, in[k]) : ls_error_code();
        ls_tensor_release(slot);
        if (rc) {
            ls_tensor_release(out);
            return NULL;
        }
        off += len;
    }
    return out;
}

static ls_status cat_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    int dim = c->attrs->dim;
    if (dim < 0) dim += c->in[0]->ndim;
    int64_t off = 0;
    for (int k = 0; k < c->nin; k++) {
        int64_t len = c->in[k]->shape[dim];
        if (c->needs[k] && !(gin[k] = ls_narrow(g, dim, off, len))) return ls_error_code();
        off += len;
    }
    return LS_OK;
}

/* Three inputs along the middle dim, two along the last (negative) dim, one on its own, and an
 * empty input among others. */
static int cat_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {3, 3, 3}, .shape = {{2, 1, 3}, {2, 2, 3}, {2, 3, 3}},
                          .attrs = {.dim = 1, .nin = 3}};
    s[1] = (ls_op_sample){.ndim = {2, 2}, .shape = {{3, 2}, {3, 1}},
                          .attrs = {.dim = -1, .nin = 2}};
    s[2] = (ls_op_sample){.ndim = {1}, .shape = {{4}}, .attrs = {.dim = 0, .nin = 1}};
    s[3] = (ls_op_sample){.ndim = {2, 2, 2}, .shape = {{2, 2}, {0, 2}, {1, 2}},
                          .attrs = {.dim = 0, .nin = 3}};
    return 4;
}

const ls_op_def ls_op_cat = {.name = "cat", .nin = LS_OP_VARIADIC, .lua_sig = NULL,
    .forward = cat_fwd, .backward = cat_bwd, .samples = cat_samples};

ls_tensor *ls_cat(int n, ls_tensor *const *ts, int dim)
{
    if (n < 1 || n > LS_OP_MAX_VARIADIC) {
        ls_error_set(LS_ERR_ARG, "cat: %d tensors given (1 to %d)", n, LS_OP_MAX_VARIADIC);
        return NULL;
    }
    ls_attrs a = {.dim = dim, .has_dim = true, .nin = n};
    return ls_op_apply(LS_OP_CAT, ts, &a);
}

ls_tensor *ls_stack(int n, ls_tensor *const *ts, int dim)
{
    if (n < 1 || n > LS_OP_MAX_VARIADIC) {
        ls_error_set(LS_ERR_ARG, "stack: %d tensors given (1 to %d)", n, LS_OP_MAX_VARIADIC);
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        if (!ts[k]) return NULL;
        bool same = ts[k]->ndim == ts[0]->ndim &&
                    !memcmp(ts[k]->shape, ts[0]->shape, sizeof(int64_t) * (size_t)ts[0]->ndim);
        if (!same) {
            char s0[64];
            snprintf(s0, sizeof s0, "%s", ls_tensor_shape_str(ts[0]));
            ls_error_set(LS_ERR_ARG, "stack: tensor %d has shape %s, tensor 1 has %s (stack needs "
                         "equal shapes)", k + 1, ls_tensor_shape_str(ts[k]), s0);
            return NULL;
        }
    }
    int d = dim < 0 ? dim + ts[0]->ndim + 1 : dim;
    if (d < 0 || d > ts[0]->ndim) {
        ls_error_set(LS_ERR_ARG, "stack: dimension %d out of range for stacking %d-d tensors (the "
                     "new dim goes at 1..%d, or -1..-%d)", dim >= 0 ? dim + 1 : dim, ts[0]->ndim,
                     ts[0]->ndim + 1, ts[0]->ndim + 1);
        return NULL;
    }
    ls_tensor **u = ls_malloc(sizeof *u * (size_t)n, "stack");
    if (!u) return NULL;
    int made = 0;
    for (; made < n; made++)
        if (!(u[made] = ls_unsqueeze(ts[made], d))) break;
    ls_tensor *out = made == n ? ls_cat(n, u, d) : NULL;
    for (int k = 0; k < made; k++) ls_tensor_release(u[k]);
    ls_free(u);
    return out;
}
