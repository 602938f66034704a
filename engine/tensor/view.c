/* Views: new headers onto the same storage. These are the raw forms; the recorded (differentiable)
 * versions are ops in engine/ops/view_ops.c and call these. */
#include <string.h>

#include "tensor/tensor.h"

ls_status ls_check_dim(const char *who, int ndim, int *dim)
{
    int d = *dim;
    int lim = ndim > 0 ? ndim : 1;
    if (d < -lim || d >= lim)
        return ls_error_set(LS_ERR_ARG, "%s: dimension %d out of range for a %d-d tensor", who,
                            d >= 0 ? d + 1 : d, ndim);
    if (d < 0) d += lim;
    *dim = d;
    return LS_OK;
}

ls_status ls_broadcast_shapes(const char *who, int na, const int64_t *a, int nb, const int64_t *b,
                              int *nout, int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nb);
        int64_t sa = ia >= 0 ? a[ia] : 1, sb = ib >= 0 ? b[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char ba[LS_SHAPE_STR_MAX], bb[LS_SHAPE_STR_MAX];
            return ls_error_set(LS_ERR_ARG, "%s: shapes %s and %s cannot be broadcast", who,
                                ls_shape_str(na, a, ba, sizeof ba), ls_shape_str(nb, b, bb, sizeof bb));
        }
        out[i] = sa == 1 ? sb : sa;
    }
    *nout = n;
    return LS_OK;
}

/* Reshape without copying when the requested shape can be expressed with strides over the existing
 * layout (true for any contiguous tensor, and for many transposed ones); otherwise copy first. The
 * stride computation walks groups of old dims whose product matches a group of new dims and checks the
 * old group is internally contiguous, as NumPy's _attempt_nocopy_reshape does. */
static int ls_reshape_strides(const ls_tensor *t, int nd, const int64_t *shape, int64_t *stride)
{
    int64_t olds[LS_MAX_DIMS], oldst[LS_MAX_DIMS];
    int on = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) { olds[on] = t->shape[i]; oldst[on] = t->stride[i]; on++; }
    int oi = 0, oj = 1, ni = 0, nj = 1;
    while (ni < nd && oi < on) {
        int64_t np = shape[ni], op = olds[oi];
        while (np != op) {
            if (np < op) np *= shape[nj++];
            else op *= olds[oj++];
        }
        for (int k = oi; k < oj - 1; k++)
            if (oldst[k] != olds[k + 1] * oldst[k + 1]) return 0;
        stride[nj - 1] = oldst[oj - 1];
        for (int k = nj - 1; k > ni; k--) stride[k - 1] = stride[k] * shape[k];
        ni = nj++;
        oi = oj++;
    }
    int64_t last = ni > 0 ? stride[ni - 1] : 1;
    for (int k = ni; k < nd; k++) stride[k] = last;   /* trailing size-1 dims */
    return 1;
}

ls_tensor *ls_view_reshape(const ls_tensor *t, int ndim, const int64_t *shape_in)
{
    if (ndim < 0 || ndim > LS_MAX_DIMS) {
        ls_error_set(LS_ERR_ARG, "reshape: %d dimensions (at most %d supported)", ndim, LS_MAX_DIMS);
        return NULL;
    }
    char b[LS_SHAPE_STR_MAX];
    int64_t shape[LS_MAX_DIMS] = {0}, known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = shape_in[i];
        if (shape[i] == -1) {
            if (infer >= 0) {
                ls_error_set(LS_ERR_ARG, "reshape: only one dimension can be -1, got %s",
                             ls_shape_str(ndim, shape_in, b, sizeof b));
                return NULL;
            }
            infer = i;
            shape[i] = 1;   /* for ls_shape_check below, until it is known */
        }
    }
    if (ls_shape_check("reshape", ndim, shape, &known)) return NULL;
    int64_t numel = ls_tensor_numel(t);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0) {
            ls_error_set(LS_ERR_ARG, "reshape: cannot reshape %s (%lld elements) into %s",
                         ls_tensor_shape_str(t), (long long)numel,
                         ls_shape_str(ndim, shape_in, b, sizeof b));
            return NULL;
        }
        shape[infer] = numel / known;
        known = numel;
    }
    if (known != numel) {
        ls_error_set(LS_ERR_ARG, "reshape: cannot reshape %s (%lld elements) into %s",
                     ls_tensor_shape_str(t), (long long)numel, ls_shape_str(ndim, shape_in, b, sizeof b));
        return NULL;
    }
    int64_t stride[LS_MAX_DIMS];
    if (numel == 0) {   /* no element to address: any strides do, take the contiguous ones */
        int64_t st = 1;
        for (int i = ndim - 1; i >= 0; i--) {
            stride[i] = st;
            st *= shape[i] ? shape[i] : 1;
        }
    }
    if (numel == 0 || ls_reshape_strides(t, ndim, shape, stride)) {
        ls_tensor *v = ls_tensor_alias(t);
        if (!v) return NULL;
        v->ndim = ndim;
        memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
        memcpy(v->stride, stride, sizeof(int64_t) * (size_t)ndim);
        return v;
    }
    /* Not expressible as strides over t's layout: copy first (the copy is contiguous, so the second
     * call always takes the branch above). */
    ls_tensor *c = ls_tensor_clone(t);
    if (!c) return NULL;
    ls_tensor *v = ls_view_reshape(c, ndim, shape);
    ls_tensor_release(c);
    return v;
}

ls_tensor *ls_view_permute(const ls_tensor *t, const int *perm)
{
    int seen[LS_MAX_DIMS] = {0};
    for (int i = 0; i < t->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= t->ndim || seen[perm[i]]) {
            ls_error_set(LS_ERR_ARG, "permute: not a permutation of %d dims for %s", t->ndim,
                         ls_tensor_shape_str(t));
            return NULL;
        }
        seen[perm[i]] = 1;
    }
    ls_tensor *v = ls_tensor_alias(t);
    if (!v) return NULL;
    for (int i = 0; i < t->ndim; i++) {
        v->shape[i] = t->shape[perm[i]];
        v->stride[i] = t->stride[perm[i]];
    }
    return v;
}

ls_tensor *ls_view_transpose(const ls_tensor *t, int d0, int d1)
{
    if (ls_check_dim("transpose", t->ndim, &d0) || ls_check_dim("transpose", t->ndim, &d1))
        return NULL;
    ls_tensor *v = ls_tensor_alias(t);
    if (!v || t->ndim == 0) return v;
    v->shape[d0] = t->shape[d1];
    v->stride[d0] = t->stride[d1];
    v->shape[d1] = t->shape[d0];
    v->stride[d1] = t->stride[d0];
    return v;
}

ls_tensor *ls_view_narrow(const ls_tensor *t, int dim, int64_t start, int64_t length)
{
    if (t->ndim == 0) {
        ls_error_set(LS_ERR_ARG, "narrow: cannot narrow a 0-d tensor");
        return NULL;
    }
    if (ls_check_dim("narrow", t->ndim, &dim)) return NULL;
    /* start > size - length, not start + length > size: the sum could overflow */
    if (start < 0 || length < 0 || start > t->shape[dim] || length > t->shape[dim] - start) {
        ls_error_set(LS_ERR_ARG, "narrow: start %lld and length %lld out of bounds for dimension %d "
                     "of size %lld in %s", (long long)(start < INT64_MAX ? start + 1 : start),
                     (long long)length, dim + 1,
                     (long long)t->shape[dim], ls_tensor_shape_str(t));
        return NULL;
    }
    ls_tensor *v = ls_tensor_alias(t);
    if (!v) return NULL;
    v->offset += start * t->stride[dim];
    v->shape[dim] = length;
    return v;
}

ls_tensor *ls_view_select(const ls_tensor *t, int dim, int64_t index)
{
    if (t->ndim == 0) {
        ls_error_set(LS_ERR_ARG, "select: cannot index a 0-d tensor");
        return NULL;
    }
    if (ls_check_dim("select", t->ndim, &dim)) return NULL;
    if (index < 0 || index >= t->shape[dim]) {
        ls_error_set(LS_ERR_ARG, "select: index %lld out of range for dimension %d of size %lld",
                     (long long)index + 1, dim + 1, (long long)t->shape[dim]);
        return NULL;
    }
    ls_tensor *v = ls_tensor_alias(t);
    if (!v) return NULL;
    v->offset += index * t->stride[dim];
    for (int i = dim; i < t->ndim - 1; i++) {
        v->shape[i] = t->shape[i + 1];
        v->stride[i] = t->stride[i + 1];
    }
    v->ndim--;
    return v;
}

ls_tensor *ls_view_squeeze(const ls_tensor *t, int dim)
{
    ls_tensor *v = ls_tensor_alias(t);
    if (!v) return NULL;
    if (dim >= t->ndim) {
        ls_tensor_release(v);
        ls_error_set(LS_ERR_ARG, "squeeze: dimension %d out of range for a %d-d tensor", dim + 1,
                     t->ndim);
        return NULL;
    }
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 1 && (dim < 0 || dim == i)) continue;
        v->shape[n] = t->shape[i];
        v->stride[n] = t->stride[i];
        n++;
    }
    v->ndim = n;
    return v;
}

ls_tensor *ls_view_unsqueeze(const ls_tensor *t, int dim)
{
    if (t->ndim >= LS_MAX_DIMS) {
        ls_error_set(LS_ERR_ARG, "unsqueeze: tensor already has %d dims", LS_MAX_DIMS);
        return NULL;
    }
    if (dim < -(t->ndim + 1) || dim > t->ndim) {
        ls_error_set(LS_ERR_ARG, "unsqueeze: dimension %d out of range for a %d-d tensor",
                     dim >= 0 ? dim + 1 : dim, t->ndim);
        return NULL;
    }
    if (dim < 0) dim += t->ndim + 1;
    ls_tensor *v = ls_tensor_alias(t);
    if (!v) return NULL;
    for (int i = t->ndim; i > dim; i--) {
        v->shape[i] = t->shape[i - 1];
        v->stride[i] = t->stride[i - 1];
    }
    v->shape[dim] = 1;
    v->stride[dim] = dim + 1 < t->ndim + 1 ? v->shape[dim + 1] * v->stride[dim + 1] : 1;
    v->ndim++;
    return v;
}

ls_tensor *ls_view_expand(const ls_tensor *t, int ndim, const int64_t *shape)
{
    char b[LS_SHAPE_STR_MAX];
    if (ndim < t->ndim || ndim > LS_MAX_DIMS) {
        ls_error_set(LS_ERR_ARG, "expand: cannot expand %s to %s (%d dims given, %s)",
                     ls_tensor_shape_str(t), ls_shape_str(ndim < 0 ? 0 : ndim, shape, b, sizeof b),
                     ndim, ndim > LS_MAX_DIMS ? "too many" : "fewer than the tensor has");
        return NULL;
    }
    int64_t want[LS_MAX_DIMS], stride[LS_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int ti = i - (ndim - t->ndim);
        int64_t ts = ti >= 0 ? t->shape[ti] : 1;
        /* -1 keeps an existing dim; a new leading dim needs a size */
        if (shape[i] < -1 || (shape[i] == -1 && ti < 0)) {
            ls_error_set(LS_ERR_ARG, "expand: invalid size %lld for dimension %d in %s (sizes must "
                         "be >= 0, or -1 to keep one of the tensor's dims)", (long long)shape[i],
                         i + 1, ls_shape_str(ndim, shape, b, sizeof b));
            return NULL;
        }
        want[i] = shape[i] == -1 ? ts : shape[i];
        if (ts != want[i] && ts != 1) {
            ls_error_set(LS_ERR_ARG, "expand: cannot expand %s to %s (dimension %d has size %lld, "
                         "not 1)", ls_tensor_shape_str(t), ls_shape_str(ndim, shape, b, sizeof b),
                         i + 1, (long long)ts);
            return NULL;
        }
        stride[i] = (ti < 0 || ts != want[i]) ? 0 : t->stride[ti];
    }
    if (ls_shape_check("expand", ndim, want, NULL)) return NULL;
    ls_tensor *v = ls_tensor_alias(t);
    if (!v) return NULL;
    memcpy(v->shape, want, sizeof(int64_t) * (size_t)ndim);
    memcpy(v->stride, stride, sizeof(int64_t) * (size_t)ndim);
    v->ndim = ndim;
    return v;
}
