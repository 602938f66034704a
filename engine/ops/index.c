/* Index ops: gather, scatter_add, index_select, index_add.
 *
 * Index tensors are i64 and 0-BASED here in C: an index value i names element i of the dimension. The
 * Lua binding converts 1-based Lua tables and tensors before calling these. Error messages are written
 * for the Lua user, like the rest of the engine's (see view.c): dims and the offending index value
 * are printed 1-based, e.g. "gather: index 8 out of range for dimension 2 of size 5" for a C value
 * of 7.
 * Every index value is checked before any output is written.
 *
 *   gather(x, dim, idx)            out[i][j] = x[idx[i][j]][j]     (dim 0; torch.gather)
 *                                  idx has x's rank; outside dim its sizes are at most x's; out has
 *                                  idx's shape
 *   scatter_add(x, dim, idx, src)  out = x; out[idx[i][j]][j] += src[i][j]   (dim 0)
 *                                  src must have idx's shape (torch also allows a larger src and
 *                                  ignores the excess; here that is an error, so gradients line up)
 *   index_select(x, dim, idx)      whole slices: out.select(dim, i) = x.select(dim, idx[i]); idx 1-D
 *   index_add(x, dim, idx, src)    out = x; out.select(dim, idx[i]) += src.select(dim, i)
 *
 * gather and index_select copy elements of any dtype; scatter_add and index_add need float x and src
 * of one dtype. Gradients flow to x and src, never to idx.
 *
 * Kernels. gather and index_select are one strided loop (ls_iter) over the output, with x seen
 * through a view whose stride along dim is 0 and the index value supplying the offset along dim.
 * scatter_add and index_add could race (two source elements may land on one output element), so they
 * are split by the non-indexed coordinates only: each parallel item owns one line of the output
 * along dim and walks its source line in order. That makes them race-free and deterministic (the
 * additions into each output element happen in source order, whatever the thread count).
 * index_select and index_add reuse those kernels with the 1-D index broadcast over the other dims
 * (stride 0). */
#include <string.h>

#include "core/parallel.h"
#include "ops/ops.h"

/* ---- checks ---- */
static ls_status check_index_tensor(const char *who, const ls_tensor *idx)
{
    if (idx->dtype != LS_I64)
        return ls_error_set(LS_ERR_ARG, "%s: index must be an i64 tensor, got %s", who,
                            ls_dtype_name(idx->dtype));
    return LS_OK;
}

/* Every value of idx must lie in [0, size). Scans in row-major order, so the first bad value is
 * named. */
static ls_status check_index_values(const char *who, const ls_tensor *idx, int dim, int64_t size)
{
    ls_tensor *c = ls_tensor_contiguous(idx);
    if (!c) return ls_error_code();
    const int64_t *v = ls_tensor_data(c);
    int64_t n = ls_tensor_numel(c);
    ls_status rc = LS_OK;
    for (int64_t i = 0; i < n; i++)
        if (v[i] < 0 || v[i] >= size) {
            rc = ls_error_set(LS_ERR_ARG, "%s: index %lld out of range for dimension %d of size %lld",
                              who, (long long)v[i] + 1, dim + 1, (long long)size);
            break;
        }
    ls_tensor_release(c);
    return rc;
}

static ls_status check_rank(const char *who, const ls_tensor *x, int *dim)
{
    if (x->ndim == 0)
        return ls_error_set(LS_ERR_ARG, "%s: expects a tensor with at least 1 dimension, got %s", who,
                            ls_tensor_shape_str(x));
    return ls_check_dim(who, x->ndim, dim);
}

/* idx has x's rank and fits inside x outside dim. */
static ls_status check_fits(const char *who, const ls_tensor *x, const ls_tensor *idx, int dim)
{
    bool ok = idx->ndim == x->ndim;
    for (int d = 0; ok && d < x->ndim; d++)
        if (d != dim && idx->shape[d] > x->shape[d]) ok = false;
    if (!ok)
        return ls_error_set(LS_ERR_ARG, "%s: index of shape %s does not fit tensor %s outside "
                            "dimension %d (same rank, sizes at most the tensor's)", who,
                            ls_tensor_shape_str(idx), ls_tensor_shape_str(x), dim + 1);
    return LS_OK;
}

static bool same_shape(const ls_tensor *a, const ls_tensor *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* A header onto t's storage with the given shape and strides (no checks: callers keep it in bounds). */
static ls_tensor *restride(const ls_tensor *t, int ndim, const int64_t *shape, const int64_t *stride)
{
    ls_tensor *v = ls_tensor_alias(t);
    if (!v) return NULL;
    v->ndim = ndim;
    memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(v->stride, stride, sizeof(int64_t) * (size_t)ndim);
    return v;
}

/* ---- take kernel (gather, index_select): out[p] = x[p with p[dim] := iv[p]] ---- */
typedef struct take_ctx {
    size_t es;
    int64_t xs;   /* x's stride along dim */
} take_ctx;

static void take_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    const take_ctx *c = vctx;
    const int64_t *ix = (const int64_t *)p[2];
    if (c->es == 8) {
        uint64_t *o = (uint64_t *)p[0];
        const uint64_t *x = (const uint64_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1] + ix[i * s[2]] * c->xs];
    } else if (c->es == 4) {
        uint32_t *o = (uint32_t *)p[0];
        const uint32_t *x = (const uint32_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1] + ix[i * s[2]] * c->xs];
    } else {
        uint8_t *o = (uint8_t *)p[0];
        const uint8_t *x = (const uint8_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1] + ix[i * s[2]] * c->xs];
    }
}

/* New tensor of shape oshape (x's rank) gathering along dim with iv (shape oshape, i64, validated). */
static ls_tensor *take(ls_tensor *x, int dim, const ls_tensor *iv, const int64_t *oshape)
{
    ls_tensor *out = ls_tensor_new(x->dtype, x->ndim, oshape);
    int64_t xst[LS_MAX_DIMS];
    memcpy(xst, x->stride, sizeof xst);
    xst[dim] = 0;
    ls_tensor *xv = restride(x, x->ndim, oshape, xst);
    if (!out || !xv) {
        ls_tensor_release(out);
        ls_tensor_release(xv);
        return NULL;
    }
    const ls_tensor *ops[2] = {xv, iv};
    ls_iter it;
    ls_iter_init(&it, out, 2, ops);
    take_ctx c = {ls_dtype_size(x->dtype), x->stride[dim]};
    ls_iter_run(&it, take_run, &c);
    ls_tensor_release(xv);
    return out;
}

/* ---- add-into kernel (scatter_add, index_add) ----
 * The iteration space is the source shape with dim collapsed to 1; each item walks `len` source
 * elements along dim and adds each into out at offset iv[j] * os along dim. */
typedef struct addinto_ctx {
    ls_dtype dtype;
    int64_t len, is, ss, os;   /* count along dim; strides along dim of index, source, output */
} addinto_ctx;

static void addinto_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    const addinto_ctx *c = vctx;
    const int64_t *ix = (const int64_t *)p[2];
    if (c->dtype == LS_F32) {
        float *o = (float *)p[0];
        const float *src = (const float *)p[1];
        for (int64_t i = 0; i < n; i++) {
            float *oi = o + i * s[0];
            const float *si = src + i * s[1];
            const int64_t *ii = ix + i * s[2];
            for (int64_t j = 0; j < c->len; j++) oi[ii[j * c->is] * c->os] += si[j * c->ss];
        }
    } else {
        double *o = (double *)p[0];
        const double *src = (const double *)p[1];
        for (int64_t i = 0; i < n; i++) {
            double *oi = o + i * s[0];
            const double *si = src + i * s[1];
            const int64_t *ii = ix + i * s[2];
            for (int64_t j = 0; j < c->len; j++) oi[ii[j * c->is] * c->os] += si[j * c->ss];
        }
    }
}

/* out = x (a fresh contiguous copy), then the add-into loop with iv (src's shape, validated). */
static ls_tensor *add_into(ls_tensor *x, int dim, const ls_tensor *iv, ls_tensor *src)
{
    ls_tensor *out = ls_tensor_clone(x);
    if (!out) return NULL;
    int64_t ishape[LS_MAX_DIMS];
    memcpy(ishape, src->shape, sizeof ishape);
    ishape[dim] = 1;
    ls_tensor *ov = restride(out, out->ndim, ishape, out->stride);
    ls_tensor *sv = restride(src, src->ndim, ishape, src->stride);
    ls_tensor *iw = restride(iv, iv->ndim, ishape, iv->stride);
    if (ov && sv && iw) {
        const ls_tensor *ops[2] = {sv, iw};
        ls_iter it;
        ls_iter_init(&it, ov, 2, ops);
        addinto_ctx c = {x->dtype, src->shape[dim], iv->stride[dim], src->stride[dim],
                         out->stride[dim]};
        if (c.len > 0) ls_iter_run(&it, addinto_run, &c);
    } else {
        ls_tensor_release(out);
        out = NULL;
    }
    ls_tensor_release(ov);
    ls_tensor_release(sv);
    ls_tensor_release(iw);
    return out;
}

/* The 1-D index of index_select / index_add seen with x's rank and the given shape: its stride along
 * dim, 0 elsewhere. */
static ls_tensor *broadcast_index(const ls_tensor *idx, int ndim, const int64_t *shape, int dim)
{
    int64_t st[LS_MAX_DIMS] = {0};
    st[dim] = idx->ndim == 1 ? idx->stride[0] : 0;
    return restride(idx, ndim, shape, st);
}

static ls_attrs dim_attrs(int dim)
{
    return (ls_attrs){.dim = dim, .has_dim = true, .ndims = 1, .dims = {dim}};
}

/* ---- gather ---- */
static ls_tensor *gather_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0], *idx = in[1];
    int dim = a->dim;
    if (check_rank("gather", x, &dim) || check_index_tensor("gather", idx) ||
        check_fits("gather", x, idx, dim) || check_index_values("gather", idx, dim, x->shape[dim]))
        return NULL;
    return take(x, dim, idx, idx->shape);
}
/* gx = scatter_add(zeros like x, dim, idx, g) */
static ls_status gather_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    ls_tensor *z = ls_tensor_zeros(x->dtype, x->ndim, x->shape);
    gin[0] = ls_scatter_add(z, c->attrs->dim, c->in[1], g);
    ls_tensor_release(z);
    return gin[0] ? LS_OK : ls_error_code();
}
static int gather_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 2}, .shape = {{4, 3}, {2, 3}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX}, .index_hi = 4,
                          .attrs = {.dim = 0, .has_dim = true}};
    s[1] = (ls_op_sample){.ndim = {3, 3}, .shape = {{2, 3, 4}, {2, 3, 5}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX}, .index_hi = 4,
                          .attrs = {.dim = -1, .has_dim = true}};
    s[2] = (ls_op_sample){.ndim = {3, 3}, .shape = {{2, 3, 4}, {1, 4, 2}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX}, .index_hi = 3,
                          .attrs = {.dim = 1, .has_dim = true}};
    return 3;
}
const ls_op_def ls_op_gather = {"gather", 2, "T d X", gather_fwd, gather_bwd, gather_samples};

ls_tensor *ls_gather(ls_tensor *x, int dim, ls_tensor *index)
{
    ls_tensor *in[2] = {x, index};
    ls_attrs a = dim_attrs(dim);
    return ls_op_apply(LS_OP_GATHER, in, &a);
}

/* ---- scatter_add ---- */
static ls_tensor *scatter_add_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0], *idx = in[1], *src = in[2];
    ls_tensor *xs[2] = {x, src};
    int dim = a->dim;
    if (ls_check_float_same("scatter_add", 2, xs) || check_rank("scatter_add", x, &dim) ||
        check_index_tensor("scatter_add", idx) || check_fits("scatter_add", x, idx, dim))
        return NULL;
    if (!same_shape(idx, src)) {
        ls_error_set(LS_ERR_ARG, "scatter_add: source %s must have the index's shape %s",
                     ls_tensor_shape_str(src), ls_tensor_shape_str(idx));
        return NULL;
    }
    if (check_index_values("scatter_add", idx, dim, x->shape[dim])) return NULL;
    return add_into(x, dim, idx, src);
}
/* gx = g, gsrc = gather(g, dim, idx) */
static ls_status scatter_add_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    if (c->needs[0]) gin[0] = ls_tensor_retain(g);
    if (c->needs[2] && !(gin[2] = ls_gather(g, c->attrs->dim, c->in[1]))) return ls_error_code();
    return LS_OK;
}
static int scatter_add_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 2, 2}, .shape = {{4, 3}, {5, 3}, {5, 3}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX, LS_SAMPLE_REAL}, .index_hi = 4,
                          .attrs = {.dim = 0, .has_dim = true}};
    s[1] = (ls_op_sample){.ndim = {3, 3, 3}, .shape = {{2, 3, 4}, {2, 4, 2}, {2, 4, 2}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX, LS_SAMPLE_REAL}, .index_hi = 3,
                          .attrs = {.dim = 1, .has_dim = true}};
    s[2] = (ls_op_sample){.ndim = {2, 2, 2}, .shape = {{3, 4}, {2, 6}, {2, 6}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX, LS_SAMPLE_REAL}, .index_hi = 4,
                          .attrs = {.dim = -1, .has_dim = true}};
    return 3;
}
const ls_op_def ls_op_scatter_add = {"scatter_add", 3, "T d X T", scatter_add_fwd, scatter_add_bwd,
                                     scatter_add_samples};

ls_tensor *ls_scatter_add(ls_tensor *x, int dim, ls_tensor *index, ls_tensor *src)
{
    ls_tensor *in[3] = {x, index, src};
    ls_attrs a = dim_attrs(dim);
    return ls_op_apply(LS_OP_SCATTER_ADD, in, &a);
}

/* ---- index_select ---- */
static ls_status check_index_1d(const char *who, const ls_tensor *idx)
{
    if (idx->ndim > 1)
        return ls_error_set(LS_ERR_ARG, "%s: index must be 1-D, got %s", who, ls_tensor_shape_str(idx));
    return LS_OK;
}
static ls_tensor *index_select_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0], *idx = in[1];
    int dim = a->dim;
    if (check_rank("index_select", x, &dim) || check_index_tensor("index_select", idx) ||
        check_index_1d("index_select", idx) ||
        check_index_values("index_select", idx, dim, x->shape[dim]))
        return NULL;
    int64_t oshape[LS_MAX_DIMS];
    memcpy(oshape, x->shape, sizeof oshape);
    oshape[dim] = ls_tensor_numel(idx);
    if (dim == 0 && ls_tensor_is_contiguous(x)) {
        /* the batch-gathering case: whole contiguous rows, one memcpy each */
        ls_tensor *out = ls_tensor_new(x->dtype, x->ndim, oshape);
        if (!out) return NULL;
        size_t row = (size_t)(x->shape[0] ? ls_tensor_numel(x) / x->shape[0] : 0) *
                     ls_dtype_size(x->dtype);
        const char *src = ls_tensor_data(x);
        char *dst = ls_tensor_data(out);
        const int64_t *ip = ls_tensor_data(idx);
        for (int64_t i = 0; i < oshape[0]; i++)
            memcpy(dst + (size_t)i * row, src + (size_t)ip[i * idx->stride[0]] * row, row);
        return out;
    }
    ls_tensor *iv = broadcast_index(idx, x->ndim, oshape, dim);
    ls_tensor *out = iv ? take(x, dim, iv, oshape) : NULL;
    ls_tensor_release(iv);
    return out;
}
/* gx = index_add(zeros like x, dim, idx, g) */
static ls_status index_select_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *x = c->in[0];
    ls_tensor *z = ls_tensor_zeros(x->dtype, x->ndim, x->shape);
    gin[0] = ls_index_add(z, c->attrs->dim, c->in[1], g);
    ls_tensor_release(z);
    return gin[0] ? LS_OK : ls_error_code();
}
static int index_select_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 1}, .shape = {{4, 3}, {5}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX}, .index_hi = 4,
                          .attrs = {.dim = 0, .has_dim = true}};
    s[1] = (ls_op_sample){.ndim = {3, 1}, .shape = {{2, 3, 4}, {3}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX}, .index_hi = 4,
                          .attrs = {.dim = -1, .has_dim = true}};
    s[2] = (ls_op_sample){.ndim = {3, 1}, .shape = {{2, 3, 4}, {4}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX}, .index_hi = 3,
                          .attrs = {.dim = 1, .has_dim = true}};
    return 3;
}
const ls_op_def ls_op_index_select = {"index_select", 2, "T d X", index_select_fwd, index_select_bwd,
                                      index_select_samples};

ls_tensor *ls_index_select(ls_tensor *x, int dim, ls_tensor *index)
{
    ls_tensor *in[2] = {x, index};
    ls_attrs a = dim_attrs(dim);
    return ls_op_apply(LS_OP_INDEX_SELECT, in, &a);
}

/* ---- index_add ---- */
static ls_tensor *index_add_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    ls_tensor *x = in[0], *idx = in[1], *src = in[2];
    ls_tensor *xs[2] = {x, src};
    int dim = a->dim;
    if (ls_check_float_same("index_add", 2, xs) || check_rank("index_add", x, &dim) ||
        check_index_tensor("index_add", idx) || check_index_1d("index_add", idx))
        return NULL;
    int64_t sshape[LS_MAX_DIMS];
    memcpy(sshape, x->shape, sizeof sshape);
    sshape[dim] = ls_tensor_numel(idx);
    if (src->ndim != x->ndim || memcmp(src->shape, sshape, sizeof(int64_t) * (size_t)x->ndim) != 0) {
        char b[LS_SHAPE_STR_MAX];
        ls_error_set(LS_ERR_ARG, "index_add: source %s must have shape %s (the tensor %s with "
                     "dimension %d the index's length)", ls_tensor_shape_str(src),
                     ls_shape_str(x->ndim, sshape, b, sizeof b), ls_tensor_shape_str(x), dim + 1);
        return NULL;
    }
    if (check_index_values("index_add", idx, dim, x->shape[dim])) return NULL;
    ls_tensor *iv = broadcast_index(idx, x->ndim, sshape, dim);
    ls_tensor *out = iv ? add_into(x, dim, iv, src) : NULL;
    ls_tensor_release(iv);
    return out;
}
/* gx = g, gsrc = index_select(g, dim, idx) */
static ls_status index_add_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    if (c->needs[0]) gin[0] = ls_tensor_retain(g);
    if (c->needs[2] && !(gin[2] = ls_index_select(g, c->attrs->dim, c->in[1]))) return ls_error_code();
    return LS_OK;
}
static int index_add_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 1, 2}, .shape = {{4, 3}, {5}, {5, 3}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX, LS_SAMPLE_REAL}, .index_hi = 4,
                          .attrs = {.dim = 0, .has_dim = true}};
    s[1] = (ls_op_sample){.ndim = {3, 1, 3}, .shape = {{2, 3, 4}, {2}, {2, 2, 4}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX, LS_SAMPLE_REAL}, .index_hi = 3,
                          .attrs = {.dim = 1, .has_dim = true}};
    s[2] = (ls_op_sample){.ndim = {2, 1, 2}, .shape = {{3, 4}, {6}, {3, 6}},
                          .kind = {LS_SAMPLE_REAL, LS_SAMPLE_INDEX, LS_SAMPLE_REAL}, .index_hi = 4,
                          .attrs = {.dim = -1, .has_dim = true}};
    return 3;
}
const ls_op_def ls_op_index_add = {"index_add", 3, "T d X T", index_add_fwd, index_add_bwd,
                                   index_add_samples};

ls_tensor *ls_index_add(ls_tensor *x, int dim, ls_tensor *index, ls_tensor *src)
{
    ls_tensor *in[3] = {x, index, src};
    ls_attrs a = dim_attrs(dim);
    return ls_op_apply(LS_OP_INDEX_ADD, in, &a);
}
