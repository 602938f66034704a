/* Recorded view ops (reshape, permute, transpose, narrow, select, squeeze, unsqueeze, expand), plus
 * contiguous, cast, and unnarrow (the adjoint of narrow: embeds a slice into zeros). The raw views are in
 * engine/tensor/view.c. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

/* ---- reshape ---- */
static ls_tensor *reshape_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return ls_view_reshape(in[0], a->nints, a->ints);
}
static ls_status reshape_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    gin[0] = ls_reshape(g, c->in[0]->ndim, c->in[0]->shape);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int reshape_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}, .attrs = {.nints = 3, .ints = {2, -1, 3}}};
    return 1;
}
const ls_op_def ls_op_reshape = {.name = "reshape", .nin = 1, .lua_sig = "T S", .forward = reshape_fwd,
                                 .backward = reshape_bwd, .samples = reshape_samples};

ls_tensor *ls_reshape(ls_tensor *t, int ndim, const int64_t *shape)
{
    ls_attrs a = {.nints = ndim};
    if (ndim > LS_MAX_DIMS) {
        ls_error_set(LS_ERR_ARG, "reshape: %d dimensions (at most %d supported)", ndim, LS_MAX_DIMS);
        return NULL;
    }
    memcpy(a.ints, shape, sizeof(int64_t) * (size_t)ndim);
    return ls_op_apply(LS_OP_RESHAPE, &t, &a);
}

/* ---- permute ---- */
static ls_tensor *permute_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    if (a->ndims != in[0]->ndim) {
        ls_error_set(LS_ERR_ARG, "permute: %d dims given for a %d-d tensor %s", a->ndims, in[0]->ndim,
                     ls_tensor_shape_str(in[0]));
        return NULL;
    }
    int perm[LS_MAX_DIMS];
    for (int i = 0; i < a->ndims; i++) {
        perm[i] = a->dims[i];
        if (ls_check_dim("permute", in[0]->ndim, &perm[i])) return NULL;
    }
    return ls_view_permute(in[0], perm);
}
static ls_status permute_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_attrs inv = {.ndims = c->attrs->ndims};
    for (int i = 0; i < c->attrs->ndims; i++) {
        int d = c->attrs->dims[i];
        if (d < 0) d += c->attrs->ndims;
        inv.dims[d] = i;
    }
    gin[0] = ls_op_apply(LS_OP_PERMUTE, &g, &inv);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int permute_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}}, .attrs = {.ndims = 3, .dims = {2, 0, 1}}};
    return 1;
}
const ls_op_def ls_op_permute = {.name = "permute", .nin = 1, .lua_sig = "T D", .forward = permute_fwd,
                                 .backward = permute_bwd, .samples = permute_samples};

ls_tensor *ls_permute(ls_tensor *t, const int *perm)
{
    ls_attrs a = {.ndims = t ? t->ndim : 0};
    if (t) memcpy(a.dims, perm, sizeof(int) * (size_t)t->ndim);
    return ls_op_apply(LS_OP_PERMUTE, &t, &a);
}

/* ---- transpose (the two dims in dims[0..1]; none = t()) ---- */
static ls_tensor *transpose_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    if (a->ndims == 0) {   /* t(): the matrix transpose */
        if (in[0]->ndim < 2) return ls_tensor_alias(in[0]);
        if (in[0]->ndim > 2) {
            ls_error_set(LS_ERR_ARG, "t: expects a tensor with at most 2 dims, got %s; use "
                         "transpose(d0, d1)", ls_tensor_shape_str(in[0]));
            return NULL;
        }
        return ls_view_transpose(in[0], 0, 1);
    }
    if (a->ndims != 2) {
        ls_error_set(LS_ERR_ARG, "transpose: expects two dims, got %d", a->ndims);
        return NULL;
    }
    return ls_view_transpose(in[0], a->dims[0], a->dims[1]);
}
static ls_status transpose_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    gin[0] = ls_op_apply(LS_OP_TRANSPOSE, &g, c->attrs);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int transpose_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 4}}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{2, 3, 4}}, .attrs = {.ndims = 2, .dims = {0, 2}}};
    return 2;
}
/* x:t() swaps the two dims of a matrix; x:transpose(d0, d1) any two. */
const ls_op_def ls_op_transpose = {.name = "transpose", .nin = 1, .lua_sig = "T d? d?", .forward = transpose_fwd,
                                   .backward = transpose_bwd, .samples = transpose_samples};

ls_tensor *ls_transpose(ls_tensor *t, int d0, int d1)
{
    ls_attrs a = {.ndims = 2, .dims = {d0, d1}};
    return ls_op_apply(LS_OP_TRANSPOSE, &t, &a);
}

/* ---- unnarrow: zeros of size ints[1] along dim with the input placed at ints[0] ---- */
static ls_tensor *unnarrow_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    int64_t shape[LS_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    int dim = a->dim;
    if (ls_check_dim("unnarrow", in[0]->ndim, &dim)) return NULL;
    shape[dim] = a->ints[1];
    ls_tensor *out = ls_tensor_zeros(in[0]->dtype, in[0]->ndim, shape);
    if (!out) return NULL;
    ls_tensor *slot = ls_view_narrow(out, dim, a->ints[0], in[0]->shape[dim]);
    if (!slot || ls_tensor_copy_(slot, in[0])) {
        ls_tensor_release(slot);
        ls_tensor_release(out);
        return NULL;
    }
    ls_tensor_release(slot);
    return out;
}
static ls_status unnarrow_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    gin[0] = ls_narrow(g, c->attrs->dim, c->attrs->ints[0], c->in[0]->shape[c->attrs->dim]);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int unnarrow_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{2, 3}}, .attrs = {.dim = 1, .nints = 2, .ints = {1, 5}}};
    return 1;
}
const ls_op_def ls_op_unnarrow = {.name = "unnarrow", .nin = 1, .lua_sig = NULL, .forward = unnarrow_fwd,
                                  .backward = unnarrow_bwd, .samples = unnarrow_samples};

/* ---- narrow (dim, start, length) ---- */
static ls_tensor *narrow_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return ls_view_narrow(in[0], a->dim, a->ints[0], a->ints[1]);
}
static ls_status narrow_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    int dim = c->attrs->dim;
    ls_check_dim("narrow", c->in[0]->ndim, &dim);
    ls_attrs a = {.dim = dim, .nints = 2, .ints = {c->attrs->ints[0], c->in[0]->shape[dim]}};
    gin[0] = ls_op_apply(LS_OP_UNNARROW, &g, &a);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int narrow_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{4, 3}}, .attrs = {.dim = 0, .nints = 2, .ints = {1, 2}}};
    return 1;
}
const ls_op_def ls_op_narrow = {.name = "narrow", .nin = 1, .lua_sig = "T d I i", .forward = narrow_fwd,
                                .backward = narrow_bwd, .samples = narrow_samples};

ls_tensor *ls_narrow(ls_tensor *t, int dim, int64_t start, int64_t length)
{
    ls_attrs a = {.dim = dim, .has_dim = true, .ndims = 1, .dims = {dim}, .nints = 2,
                  .ints = {start, length}};
    return ls_op_apply(LS_OP_NARROW, &t, &a);
}

/* ---- select (dim, index) ---- */
static ls_tensor *select_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return ls_view_select(in[0], a->dim, a->ints[0]);
}
static ls_status select_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    int dim = c->attrs->dim;
    ls_check_dim("select", c->in[0]->ndim, &dim);
    ls_tmp tmp = {0};
    ls_tensor *u = ls_tmp_keep(&tmp, ls_unsqueeze(g, dim));
    ls_attrs a = {.dim = dim, .nints = 2, .ints = {c->attrs->ints[0], c->in[0]->shape[dim]}};
    gin[0] = ls_op_apply(LS_OP_UNNARROW, &u, &a);
    ls_tmp_free(&tmp);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int select_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{4, 3}}, .attrs = {.dim = 1, .nints = 1, .ints = {2}}};
    return 1;
}
const ls_op_def ls_op_select = {.name = "select", .nin = 1, .lua_sig = "T d I", .forward = select_fwd,
                                .backward = select_bwd, .samples = select_samples};

ls_tensor *ls_select(ls_tensor *t, int dim, int64_t index)
{
    ls_attrs a = {.dim = dim, .has_dim = true, .ndims = 1, .dims = {dim}, .nints = 1, .ints = {index}};
    return ls_op_apply(LS_OP_SELECT, &t, &a);
}

/* ---- squeeze / unsqueeze ---- */
static ls_tensor *squeeze_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    int dim = -1;
    if (a->has_dim) {
        dim = a->dim;
        if (ls_check_dim("squeeze", in[0]->ndim, &dim)) return NULL;
    }
    return ls_view_squeeze(in[0], dim);
}
static ls_status same_shape_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    gin[0] = ls_reshape(g, c->in[0]->ndim, c->in[0]->shape);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int squeeze_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {3}, .shape = {{3, 1, 2}}};
    s[1] = (ls_op_sample){.ndim = {3}, .shape = {{1, 3, 1}}, .attrs = {.dim = 2, .has_dim = true}};
    return 2;
}
const ls_op_def ls_op_squeeze = {.name = "squeeze", .nin = 1, .lua_sig = "T d?", .forward = squeeze_fwd,
                                 .backward = same_shape_bwd, .samples = squeeze_samples};

ls_tensor *ls_squeeze(ls_tensor *t, int dim)
{
    ls_attrs a = {.dim = dim, .has_dim = dim >= 0};
    return ls_op_apply(LS_OP_SQUEEZE, &t, &a);
}

static ls_tensor *unsqueeze_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return ls_view_unsqueeze(in[0], a->dim);
}
static int unsqueeze_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 2}}, .attrs = {.dim = 1}};
    return 1;
}
const ls_op_def ls_op_unsqueeze = {.name = "unsqueeze", .nin = 1, .lua_sig = "T d", .forward = unsqueeze_fwd,
                                   .backward = same_shape_bwd, .samples = unsqueeze_samples};

ls_tensor *ls_unsqueeze(ls_tensor *t, int dim)
{
    ls_attrs a = {.dim = dim, .has_dim = true};
    return ls_op_apply(LS_OP_UNSQUEEZE, &t, &a);
}

/* ---- expand ---- */
static ls_tensor *expand_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    return ls_view_expand(in[0], a->nints, a->ints);
}
static ls_status expand_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    gin[0] = ls_sum_to(g, c->in[0]->ndim, c->in[0]->shape);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int expand_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 1}}, .attrs = {.nints = 3, .ints = {2, 3, 4}}};
    return 1;
}
const ls_op_def ls_op_expand = {.name = "expand", .nin = 1, .lua_sig = "T S", .forward = expand_fwd,
                                .backward = expand_bwd, .samples = expand_samples};

ls_tensor *ls_expand(ls_tensor *t, int ndim, const int64_t *shape)
{
    ls_attrs a = {.nints = ndim};
    memcpy(a.ints, shape, sizeof(int64_t) * (size_t)(ndim < LS_MAX_DIMS ? ndim : LS_MAX_DIMS));
    return ls_op_apply(LS_OP_EXPAND, &t, &a);
}

/* ---- contiguous ---- */
static ls_tensor *contiguous_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    /* Always a new header: the result carries its own graph node even when no copy is needed. */
    if (ls_tensor_is_contiguous(in[0])) return ls_tensor_alias(in[0]);
    return ls_tensor_clone(in[0]);
}
static ls_status identity_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    (void)c;
    gin[0] = ls_tensor_retain(g);
    return LS_OK;
}
static int contiguous_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 2}}};
    return 1;
}
const ls_op_def ls_op_contiguous = {.name = "contiguous", .nin = 1, .lua_sig = "T", .forward = contiguous_fwd,
                                    .backward = identity_bwd, .samples = contiguous_samples};

ls_tensor *ls_contiguous(ls_tensor *t) { return ls_op_apply(LS_OP_CONTIGUOUS, &t, NULL); }

/* ---- cast (target dtype in num[0]) ---- */
static ls_tensor *cast_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_dtype d = (ls_dtype)(int)a->num[0];
    if (in[0]->dtype == d) return ls_tensor_alias(in[0]);
    return ls_tensor_cast(in[0], d);
}
static ls_status cast_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    gin[0] = ls_cast(g, c->in[0]->dtype);
    return gin[0] ? LS_OK : LS_ERR_ARG;
}
static int cast_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2}, .shape = {{3, 2}}, .attrs = {.nnum = 1, .num = {LS_F64}}};
    return 1;
}
const ls_op_def ls_op_cast = {.name = "cast", .nin = 1, .lua_sig = NULL, .forward = cast_fwd,
                              .backward = cast_bwd, .samples = cast_samples};

ls_tensor *ls_cast(ls_tensor *t, ls_dtype dtype)
{
    ls_attrs a = {.nnum = 1, .num = {(double)dtype}};
    return ls_op_apply(LS_OP_CAST, &t, &a);
}
