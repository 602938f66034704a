/* Tensor lifetime, creation, element access, copies and casts. Views live in view.c, the strided
 * iterator in iter.c. */
#include "tensor/tensor.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

static ls_storage *ls_storage_new(ls_dtype dtype, int64_t numel)
{
    ls_storage *s = ls_malloc(sizeof *s, "tensor");
    if (!s) return NULL;
    size_t nbytes = (size_t)numel * ls_dtype_size(dtype);   /* numel <= 2^40: no overflow */
    s->data = ls_malloc(nbytes ? nbytes : 1, "tensor");
    if (!s->data) {
        ls_free(s);
        return NULL;
    }
    s->refcount = 1;
    s->dtype = dtype;
    s->nbytes = nbytes;
    return s;
}

static void ls_storage_release(ls_storage *s)
{
    if (!s || --s->refcount > 0) return;
    ls_free(s->data);
    ls_free(s);
}

ls_status ls_shape_check(const char *who, int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > LS_MAX_DIMS)
        return ls_error_set(LS_ERR_ARG, "%s: %d dimensions (at most %d supported)", who, ndim,
                            LS_MAX_DIMS);
    int64_t n = 1, bound = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return ls_error_set(LS_ERR_ARG, "%s: negative size %lld in dimension %d of shape %s",
                                who, (long long)shape[i], i + 1,
                                ls_shape_str(ndim, shape, (char[LS_SHAPE_STR_MAX]){0},
                                             LS_SHAPE_STR_MAX));
        /* bound <= 2^40 and a size that passes the test is <= 2^40: the product cannot overflow */
        if (shape[i] > LS_MAX_NUMEL / bound)
            return ls_error_set(LS_ERR_ARG, "%s: shape %s is too large (2^40 elements at most, "
                                "counting each 0 as 1)", who,
                                ls_shape_str(ndim, shape, (char[LS_SHAPE_STR_MAX]){0},
                                             LS_SHAPE_STR_MAX));
        bound *= shape[i] ? shape[i] : 1;
        n *= shape[i];
    }
    if (numel) *numel = n;
    return LS_OK;
}

static _Atomic(ls_node_release_fn) ls_node_release;

void ls_tensor_set_node_release(ls_node_release_fn fn) { ls_node_release = fn; }

ls_tensor *ls_tensor_new(ls_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t numel = 0;
    if (ls_shape_check("tensor", ndim, shape, &numel)) return NULL;
    ls_tensor *t = ls_calloc(sizeof *t, "tensor");
    if (t) t->storage = ls_storage_new(dtype, numel);
    if (!t || !t->storage) {
        /* One message for any failure here: what was asked for, so the caller can be named by
         * whoever reports it (ls_error_retag). */
        ls_free(t);
        ls_error_set(LS_ERR_MEM, "tensor: out of memory for a %s tensor of shape %s (%lld bytes)",
                     ls_dtype_name(dtype), ls_shape_str(ndim, shape, (char[LS_SHAPE_STR_MAX]){0},
                                                        LS_SHAPE_STR_MAX),
                     (long long)(numel * (int64_t)ls_dtype_size(dtype)));
        return NULL;
    }
    t->refcount = 1;
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t st = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = st;
        st *= shape[i] > 0 ? shape[i] : 1;
    }
    return t;
}

ls_tensor *ls_tensor_new_like(ls_dtype dtype, const ls_tensor *ref)
{
    int nd = ref->ndim, perm[LS_MAX_DIMS];
    bool permuted = false, dense = ls_tensor_is_dense(ref, perm);
    for (int i = 0; i < nd; i++) permuted |= perm[i] != i;
    ls_tensor *t = ls_tensor_new(dtype, nd, ref->shape);
    if (!t || !dense || !permuted) return t;
    int64_t st = 1;
    for (int i = nd - 1; i >= 0; i--) {
        t->stride[perm[i]] = st;
        st *= ref->shape[perm[i]] > 0 ? ref->shape[perm[i]] : 1;
    }
    return t;
}

ls_tensor *ls_tensor_retain(ls_tensor *t)
{
    if (t) t->refcount++;
    return t;
}

void ls_tensor_release(ls_tensor *t)
{
    if (!t || --t->refcount > 0) return;
    ls_tensor_release(t->grad);
    if (t->grad_fn) {
        ls_node_release_fn fn = ls_node_release;
        fn(t->grad_fn);   /* registered by autograd before it made the node */
    }
    ls_storage_release(t->storage);
    ls_free(t);
}

ls_tensor *ls_tensor_alias(const ls_tensor *t)
{
    ls_tensor *a = ls_calloc(sizeof *a, "view");
    if (!a) return NULL;
    a->refcount = 1;
    a->storage = t->storage;
    a->storage->refcount++;
    a->dtype = t->dtype;
    a->ndim = t->ndim;
    memcpy(a->shape, t->shape, sizeof a->shape);
    memcpy(a->stride, t->stride, sizeof a->stride);
    a->offset = t->offset;
    return a;
}

int64_t ls_tensor_numel(const ls_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool ls_tensor_is_dense(const ls_tensor *t, int *perm)
{
    int nd = t->ndim, p[LS_MAX_DIMS];
    for (int i = 0; i < nd; i++) p[i] = i;
    /* dims from outermost to innermost in memory (insertion sort by stride, stable) */
    for (int i = 1; i < nd; i++)
        for (int j = i; j > 0 && t->stride[p[j - 1]] < t->stride[p[j]]; j--) {
            int s = p[j];
            p[j] = p[j - 1];
            p[j - 1] = s;
        }
    if (perm) memcpy(perm, p, sizeof(int) * (size_t)nd);
    int64_t expect = 1;
    for (int i = nd - 1; i >= 0; i--) {
        if (t->shape[p[i]] == 1) continue;   /* any stride will do */
        if (t->stride[p[i]] != expect) return false;
        expect *= t->shape[p[i]];
    }
    return true;
}

bool ls_tensor_is_contiguous(const ls_tensor *t)
{
    int64_t st = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != st) return false;
        st *= t->shape[i];
    }
    return true;
}

const char *ls_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? "x%lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

const char *ls_tensor_shape_str(const ls_tensor *t)
{
    static _Thread_local char ring[4][LS_SHAPE_STR_MAX];
    static _Thread_local int next;
    char *buf = ring[next];
    next = (next + 1) % 4;
    if (!t) return strcpy(buf, "(none)");
    return ls_shape_str(t->ndim, t->shape, buf, LS_SHAPE_STR_MAX);
}

/* ---- element access (slow paths: printing, tests, tables) ---- */

static double ls_load(ls_dtype d, const char *p)
{
    switch (d) {
    case LS_F32: return *(const float *)p;
    case LS_F64: return *(const double *)p;
    case LS_I64: return (double)*(const int64_t *)p;
    case LS_U8: return *(const uint8_t *)p;
    }
    return 0;
}

/* Conversions to integer dtypes truncate toward zero and saturate at the type's range; NaN becomes 0
 * (a float-to-integer conversion out of range is undefined behaviour in C, so it is never done). */
static void ls_store(ls_dtype d, char *p, double v)
{
    switch (d) {
    case LS_F32: *(float *)p = (float)v; break;
    case LS_F64: *(double *)p = v; break;
    case LS_I64:
        *(int64_t *)p = v != v ? 0 : v >= 9223372036854775807.0 ? INT64_MAX
                                   : v <= -9223372036854775808.0 ? INT64_MIN : (int64_t)v;
        break;
    case LS_U8: *(uint8_t *)p = v != v || v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; break;
    }
}

static char *ls_element_ptr(const ls_tensor *t, const int64_t *index)
{
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) off += index[i] * t->stride[i];
    return (char *)ls_tensor_data(t) + off * (int64_t)ls_dtype_size(t->dtype);
}

double ls_tensor_get(const ls_tensor *t, const int64_t *index)
{
    return ls_load(t->dtype, ls_element_ptr(t, index));
}

void ls_tensor_set(ls_tensor *t, const int64_t *index, double v)
{
    ls_store(t->dtype, ls_element_ptr(t, index), v);
}

double ls_tensor_get_flat(const ls_tensor *t, int64_t i)
{
    int64_t index[LS_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        index[d] = t->shape[d] ? i % t->shape[d] : 0;
        i = t->shape[d] ? i / t->shape[d] : 0;
    }
    return ls_tensor_get(t, index);
}

#define LS_EQUAL_CONTIG(T)                                                                         \
    do {                                                                                           \
        const T *x = ls_tensor_data((ls_tensor *)a), *y = ls_tensor_data((ls_tensor *)b);          \
        for (int64_t i = 0; i < n; i++)                                                            \
            if (!(x[i] == y[i])) return false;                                                     \
        return true;                                                                               \
    } while (0)

bool ls_tensor_equal(const ls_tensor *a, const ls_tensor *b)
{
    if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) != 0)
        return false;
    int64_t n = ls_tensor_numel(a);
    if (a->dtype == b->dtype && ls_tensor_is_contiguous(a) && ls_tensor_is_contiguous(b)) {
        if (a->dtype == LS_F32) LS_EQUAL_CONTIG(float);
        if (a->dtype == LS_F64) LS_EQUAL_CONTIG(double);
    }
    for (int64_t i = 0; i < n; i++)
        if (!(ls_tensor_get_flat(a, i) == ls_tensor_get_flat(b, i))) return false;
    return true;
}

/* ---- creation ---- */

ls_tensor *ls_tensor_zeros(ls_dtype dtype, int ndim, const int64_t *shape)
{
    ls_tensor *t = ls_tensor_new(dtype, ndim, shape);
    if (t) memset(t->storage->data, 0, t->storage->nbytes);
    return t;
}

ls_tensor *ls_tensor_full(ls_dtype dtype, int ndim, const int64_t *shape, double value)
{
    ls_tensor *t = ls_tensor_new(dtype, ndim, shape);
    if (t) ls_tensor_fill_(t, value);
    return t;
}

ls_tensor *ls_tensor_scalar(ls_dtype dtype, double value)
{
    return ls_tensor_full(dtype, 0, NULL, value);
}

ls_tensor *ls_tensor_arange(ls_dtype dtype, double start, double stop, double step)
{
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
        ls_error_set(LS_ERR_ARG, "arange: invalid range start=%g stop=%g step=%g", start, stop, step);
        return NULL;
    }
    double count = ceil((stop - start) / step);
    if (count < 0) count = 0;
    if (count > (double)(INT64_C(1) << 40)) {
        ls_error_set(LS_ERR_ARG, "arange: range of %g elements is too large", count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    ls_tensor *t = ls_tensor_new(dtype, 1, &n);
    if (!t) return NULL;
    char *p = ls_tensor_data(t);
    size_t es = ls_dtype_size(dtype);
    for (int64_t i = 0; i < n; i++) ls_store(dtype, p + i * (int64_t)es, start + (double)i * step);
    return t;
}

ls_tensor *ls_tensor_eye(ls_dtype dtype, int64_t n, int64_t m)
{
    int64_t shape[2] = {n, m};
    ls_tensor *t = ls_tensor_zeros(dtype, 2, shape);
    if (!t) return NULL;
    for (int64_t i = 0; i < n && i < m; i++) ls_tensor_set(t, (int64_t[]){i, i}, 1.0);
    return t;
}

ls_tensor *ls_tensor_from_buffer(ls_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    ls_tensor *t = ls_tensor_new(dtype, ndim, shape);
    if (t && t->storage->nbytes) memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

/* ---- copies and casts ----
 * One strided copy loop serves contiguous(), clone(), cast() and copy_(): the iterator hands each run
 * to a converter chosen by (dst dtype, src dtype); the same-dtype contiguous case is a memcpy. */

typedef struct { ls_dtype dst, src; } ls_copy_ctx;

static void ls_copy_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    const ls_copy_ctx *c = vctx;
    size_t ds = ls_dtype_size(c->dst), ss = ls_dtype_size(c->src);
    if (c->dst == c->src && s[0] == 1 && s[1] == 1) {
        memcpy(p[0], p[1], (size_t)n * ds);
        return;
    }
    if (c->dst == LS_F32 && c->src == LS_F32) {
        float *o = (float *)p[0];
        const float *a = (const float *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]];
        return;
    }
    if (c->dst == LS_F64 && c->src == LS_F64) {
        double *o = (double *)p[0];
        const double *a = (const double *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]];
        return;
    }
    if (c->dst == LS_F32 && c->src == LS_F64) {
        float *o = (float *)p[0];
        const double *a = (const double *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = (float)a[i * s[1]];
        return;
    }
    if (c->dst == LS_F64 && c->src == LS_F32) {
        double *o = (double *)p[0];
        const float *a = (const float *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]];
        return;
    }
    if (c->src == LS_U8 && c->dst == LS_F32) {   /* image bytes -> float: the data loaders' path */
        float *o = (float *)p[0];
        const uint8_t *a = (const uint8_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]];
        return;
    }
    for (int64_t i = 0; i < n; i++)
        ls_store(c->dst, p[0] + i * s[0] * (int64_t)ds, ls_load(c->src, p[1] + i * s[1] * (int64_t)ss));
}

ls_status ls_tensor_copy_(ls_tensor *dst, const ls_tensor *src)
{
    int nd;
    int64_t shape[LS_MAX_DIMS];
    if (ls_broadcast_shapes("copy", dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape))
        return LS_ERR_ARG;
    if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd) != 0)
        return ls_error_set(LS_ERR_ARG, "copy: cannot broadcast %s into %s",
                            ls_tensor_shape_str(src), ls_tensor_shape_str(dst));
    ls_iter it;
    ls_iter_init(&it, dst, 1, &src);
    ls_copy_ctx c = {dst->dtype, src->dtype};
    ls_iter_run(&it, ls_copy_run, &c);
    return LS_OK;
}

ls_tensor *ls_tensor_clone(const ls_tensor *t)
{
    ls_tensor *c = ls_tensor_new(t->dtype, t->ndim, t->shape);
    if (c) ls_tensor_copy_(c, t);
    return c;
}

ls_tensor *ls_tensor_contiguous(const ls_tensor *t)
{
    if (ls_tensor_is_contiguous(t)) return ls_tensor_retain((ls_tensor *)t);
    return ls_tensor_clone(t);
}

ls_tensor *ls_tensor_cast(const ls_tensor *t, ls_dtype dtype)
{
    if (t->dtype == dtype) return ls_tensor_retain((ls_tensor *)t);
    ls_tensor *c = ls_tensor_new(dtype, t->ndim, t->shape);
    if (c) ls_tensor_copy_(c, t);
    return c;
}

typedef struct { ls_dtype d; double v; } ls_fill_ctx;

static void ls_fill_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    const ls_fill_ctx *c = vctx;
    if (c->d == LS_F32) {
        float *o = (float *)p[0], v = (float)c->v;
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = v;
    } else if (c->d == LS_F64) {
        double *o = (double *)p[0];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = c->v;
    } else {
        int64_t es = (int64_t)ls_dtype_size(c->d);
        for (int64_t i = 0; i < n; i++) ls_store(c->d, p[0] + i * s[0] * es, c->v);
    }
}

ls_status ls_tensor_fill_(ls_tensor *t, double value)
{
    ls_iter it;
    ls_iter_init(&it, t, 0, NULL);
    ls_fill_ctx c = {t->dtype, value};
    ls_iter_run(&it, ls_fill_run, &c);
    return LS_OK;
}
