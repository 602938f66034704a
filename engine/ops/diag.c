/* Diagonals: diag and trace (torch.diag, torch.trace).
 *
 * diag(x, k): a 1-D x of length n gives the square matrix [n+|k| x n+|k|] with x on diagonal k (k > 0
 * above the main diagonal, k < 0 below) and zeros elsewhere; a 2-D x [m x n] gives its diagonal k
 * as a new 1-D tensor (length min(m, n-k) for k >= 0, min(m+k, n) for k < 0, or 0). Internally the
 * 1-D -> 2-D direction can also place x in a given [m x n] (attrs.ints[1..2]): that is the adjoint
 * of taking diagonal k of an [m x n] matrix, so each direction's backward is the other, written
 * with this same op (derivatives of any order).
 *
 * trace(x) = sum of the main diagonal of a 2-D x (any m x n), summed in double; its backward is g
 * placed on the main diagonal of an [m x n] zero matrix (diag again). Any dtype for diag; trace
 * needs f32 or f64. */
#include <string.h>

#include "ops/ops.h"

/* Length of diagonal k of an m x n matrix. */
static int64_t diag_len(int64_t m, int64_t n, int64_t k)
{
    int64_t len = k >= 0 ? (m < n - k ? m : n - k) : (m + k < n ? m + k : n);
    return len > 0 ? len : 0;
}

/* Copies between a 1-D tensor and diagonal k of a 2-D one (a strided view of len elements):
 * to_diag = true writes v into m's diagonal, false reads the diagonal into v. */
static ls_status diag_copy(ls_tensor *m, int64_t k, ls_tensor *v, int64_t len, bool to_diag)
{
    if (len == 0) return LS_OK;
    ls_tensor *d = ls_tensor_alias(m);
    if (!d) return ls_error_code();
    d->offset += k >= 0 ? k * m->stride[1] : -k * m->stride[0];
    d->ndim = 1;
    d->shape[0] = len;
    d->stride[0] = m->stride[0] + m->stride[1];
    ls_status rc = to_diag ? ls_tensor_copy_(d, v) : ls_tensor_copy_(v, d);
    ls_tensor_release(d);
    return rc;
}

static ls_tensor *diag_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0];
    int64_t k = a->nints > 0 ? a->ints[0] : 0;
    if (x->ndim == 2) {
        int64_t m = x->shape[0], n = x->shape[1], len = diag_len(m, n, k);
        ls_tensor *out = ls_tensor_new(x->dtype, 1, &len);
        if (out && diag_copy(x, k, out, len, false)) {
            ls_tensor_release(out);
            return NULL;
        }
        return out;
    }
    if (x->ndim != 1) {
        ls_error_set(LS_ERR_ARG, "diag: expected a 1-D or 2-D tensor, got %s", ls_tensor_shape_str(x));
        return NULL;
    }
    int64_t n = x->shape[0], kk = k < 0 ? -k : k;
    int64_t shape[2] = {n + kk, n + kk};
    if (a->nints == 3) {   /* placed in a given [m x n] (the adjoint of taking a diagonal) */
        shape[0] = a->ints[1];
        shape[1] = a->ints[2];
        if (diag_len(shape[0], shape[1], k) != n) {
            ls_error_set(LS_ERR_ARG, "diag: diagonal %lld of [%lldx%lld] does not have %lld elements",
                         (long long)k, (long long)shape[0], (long long)shape[1], (long long)n);
            return NULL;
        }
    }
    ls_tensor *out = ls_tensor_new(x->dtype, 2, shape);
    if (out && (ls_tensor_fill_(out, 0.0) || diag_copy(out, k, x, n, true))) {
        ls_tensor_release(out);
        return NULL;
    }
    return out;
}

static ls_status diag_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    int64_t k = c->attrs->nints > 0 ? c->attrs->ints[0] : 0;
    if (x->ndim == 2)
        gin[0] = ls_diag_embed(g, k, x->shape[0], x->shape[1]);
    else
        gin[0] = ls_diag(g, k);
    return gin[0] ? LS_OK : ls_error_code();
}

static int diag_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 3}}};
    s[1] = (ls_op_sample){.ndim = {2}, .shape = {{3, 5}}, .attrs = {.nints = 1, .ints = {1}}};
    s[2] = (ls_op_sample){.ndim = {2}, .shape = {{4, 2}}, .attrs = {.nints = 1, .ints = {-1}}};
    s[3] = (ls_op_sample){.ndim = {1}, .shape = {{3}}};
    s[4] = (ls_op_sample){.ndim = {1}, .shape = {{2}}, .attrs = {.nints = 1, .ints = {-2}}};
    s[5] = (ls_op_sample){.ndim = {1}, .shape = {{2}},
                          .attrs = {.nints = 3, .ints = {1, 2, 4}}};
    return 6;
}

const ls_op_def ls_op_diag = {.name = "diag", .nin = 1, .lua_sig = "T i?", .forward = diag_fwd,
    .backward = diag_bwd, .samples = diag_samples};

ls_tensor *ls_diag(ls_tensor *x, int64_t k)
{
    ls_attrs a = {.nints = 1, .ints = {k}};
    return ls_op_apply(LS_OP_DIAG, &x, &a);
}

ls_tensor *ls_diag_embed(ls_tensor *x, int64_t k, int64_t m, int64_t n)
{
    ls_attrs a = {.nints = 3, .ints = {k, m, n}};
    return ls_op_apply(LS_OP_DIAG, &x, &a);
}

/* ---- trace ---- */
static ls_tensor *trace_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    ls_tensor *x = in[0];
    if (ls_check_float_same("trace", 1, in)) return NULL;
    if (x->ndim != 2) {
        ls_error_set(LS_ERR_ARG, "trace: expected a 2-D tensor, got %s", ls_tensor_shape_str(x));
        return NULL;
    }
    int64_t len = diag_len(x->shape[0], x->shape[1], 0), step = x->stride[0] + x->stride[1];
    double s = 0;
    if (x->dtype == LS_F32) {
        const float *p = ls_tensor_data(x);
        for (int64_t i = 0; i < len; i++) s += p[i * step];
    } else {
        const double *p = ls_tensor_data(x);
        for (int64_t i = 0; i < len; i++) s += p[i * step];
    }
    return ls_tensor_scalar(x->dtype, s);
}

static ls_status trace_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    int64_t len = diag_len(x->shape[0], x->shape[1], 0);
    ls_tensor *e = ls_expand(g, 1, &len);
    gin[0] = ls_diag_embed(e, 0, x->shape[0], x->shape[1]);
    ls_tensor_release(e);
    return gin[0] ? LS_OK : ls_error_code();
}

static int trace_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 3}}};
    s[1] = (ls_op_sample){.ndim = {2}, .shape = {{2, 4}}};
    return 2;
}

const ls_op_def ls_op_trace = {.name = "trace", .nin = 1, .lua_sig = "T", .forward = trace_fwd,
    .backward = trace_bwd, .samples = trace_samples};

ls_tensor *ls_trace(ls_tensor *x) { return ls_op_apply(LS_OP_TRACE, &x, NULL); }
