/* Index ops (engine/ops/index.c): gather, scatter_add, index_select, index_add against naive loops in
 * both float dtypes (gather/index_select also on i64 data), on contiguous, transposed and narrowed
 * inputs and transposed index tensors, every dim and negative dims, duplicate indices, empty indices;
 * bit-identical scatter_add / index_add for 1 and 2 threads; gradients through the backward pairs;
 * error messages (which print dims and index values 1-based, for the Lua user).
 *
 * Tolerance: gather/index_select copy, so they must match exactly; the adds must match a double
 * reference to 1e-12 (f64) or 1e-5 (f32, which adds in float). */
#define CHECK_RNG_SEED 0x853c49e6748fea9bULL   /* this file's test inputs */
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/ops.h"

static const ls_dtype dtypes[3] = {LS_F32, LS_F64, LS_I64};

static ls_tensor *make(ls_dtype d, int ndim, const int64_t *shape)
{
    ls_tensor *t = ls_tensor_new(d, ndim, shape);
    int64_t n = ls_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = -2.0 + 4.0 * check_uniform();
        if (d == LS_F32) ((float *)ls_tensor_data(t))[i] = (float)v;
        else if (d == LS_F64) ((double *)ls_tensor_data(t))[i] = v;
        else ((int64_t *)ls_tensor_data(t))[i] = (int64_t)(v * 1000);
    }
    return t;
}

/* Indices uniform in [0, hi). */
static ls_tensor *make_index(int ndim, const int64_t *shape, int64_t hi)
{
    ls_tensor *t = ls_tensor_new(LS_I64, ndim, shape);
    for (int64_t i = 0; i < ls_tensor_numel(t); i++)
        ((int64_t *)ls_tensor_data(t))[i] = (int64_t)(check_uniform() * (double)hi);
    return t;
}

enum { CONTIG, TRANSPOSED, NARROWED, NLAYOUTS };
/* A 3-d tensor in a layout: contiguous, a fully permuted view, or narrowed along dim 1. */
static ls_tensor *make_layout(ls_dtype d, const int64_t *s, int layout)
{
    if (layout == CONTIG) return make(d, 3, s);
    ls_tensor *base, *v;
    if (layout == TRANSPOSED) {
        base = make(d, 3, (int64_t[]){s[2], s[1], s[0]});
        v = ls_view_permute(base, (int[]){2, 1, 0});
    } else {
        base = make(d, 3, (int64_t[]){s[0], s[1] + 2, s[2]});
        v = ls_view_narrow(base, 1, 1, s[1]);
    }
    ls_tensor_release(base);
    return v;
}

static bool has_msg(const char *sub)
{
    bool ok = strstr(ls_error_message(), sub) != NULL;
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", ls_error_message(), sub);
    return ok;
}

static void unflat(int64_t i, int nd, const int64_t *shape, int64_t *idx)
{
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
}
static int64_t flat(int nd, const int64_t *shape, const int64_t *idx)
{
    int64_t f = 0;
    for (int d = 0; d < nd; d++) f = f * shape[d] + idx[d];
    return f;
}

/* ---- gather / scatter_add ---- */
static void test_gather_scatter(void)
{
    const int64_t xs[3] = {3, 4, 5};
    for (int di = 0; di < 3; di++)
        for (int layout = 0; layout < NLAYOUTS; layout++)
            for (int dim = 0; dim < 3; dim++) {
                ls_dtype d = dtypes[di];
                ls_tensor *x = make_layout(d, xs, layout);
                /* index: sizes at most x's outside dim, 6 along dim; every other time a transposed
                 * view */
                int64_t is[3] = {2, 3, 4};
                is[dim] = 6;
                ls_tensor *idx;
                if (layout == TRANSPOSED) {
                    ls_tensor *b = make_index(3, (int64_t[]){is[2], is[1], is[0]}, xs[dim]);
                    idx = ls_view_permute(b, (int[]){2, 1, 0});
                    ls_tensor_release(b);
                } else {
                    idx = make_index(3, is, xs[dim]);
                }
                int pass_dim = layout == NARROWED ? dim - 3 : dim;   /* negative dims too */
                ls_tensor *y = ls_gather(x, pass_dim, idx);
                CHECK(y && y->dtype == d && y->ndim == 3 && memcmp(y->shape, is, sizeof is) == 0);
                int64_t n = ls_tensor_numel(idx), p[3], q[3];
                int bad = 0;
                for (int64_t i = 0; y && i < n; i++) {
                    unflat(i, 3, is, p);
                    memcpy(q, p, sizeof q);
                    q[dim] = (int64_t)ls_tensor_get(idx, p);
                    if (ls_tensor_get_flat(y, i) != ls_tensor_get(x, q)) bad++;
                }
                CHECK(bad == 0);
                ls_tensor_release(y);
                if (d != LS_I64) {
                    ls_tensor *src = make(d, 3, is);
                    ls_tensor *srct = ls_view_transpose(src, 0, 2);   /* [is2, is1, is0] */
                    ls_tensor *srcv = ls_view_transpose(srct, 0, 2);  /* strided view of src */
                    ls_tensor *z = ls_scatter_add(x, pass_dim, idx, layout == CONTIG ? src : srcv);
                    double *ref = malloc(sizeof(double) * 60);
                    for (int64_t i = 0; i < 60; i++) ref[i] = ls_tensor_get_flat(x, i);
                    for (int64_t i = 0; i < n; i++) {
                        unflat(i, 3, is, p);
                        memcpy(q, p, sizeof q);
                        q[dim] = (int64_t)ls_tensor_get(idx, p);
                        ref[flat(3, xs, q)] += ls_tensor_get(src, p);
                    }
                    CHECK(z && z->ndim == 3 && memcmp(z->shape, xs, sizeof xs) == 0);
                    double tol = d == LS_F32 ? 1e-5 : 1e-12;
                    bad = 0;
                    for (int64_t i = 0; z && i < 60; i++)
                        if (fabs(ls_tensor_get_flat(z, i) - ref[i]) > tol) bad++;
                    CHECK(bad == 0);
                    free(ref);
                    ls_tensor_release(z);
                    ls_tensor_release(srcv);
                    ls_tensor_release(srct);
                    ls_tensor_release(src);
                }
                ls_tensor_release(idx);
                ls_tensor_release(x);
            }
}

/* ---- index_select / index_add ---- */
static void test_select_add(void)
{
    const int64_t xs[3] = {3, 4, 5};
    for (int di = 0; di < 3; di++)
        for (int layout = 0; layout < NLAYOUTS; layout++)
            for (int dim = 0; dim < 3; dim++) {
                ls_dtype d = dtypes[di];
                ls_tensor *x = make_layout(d, xs, layout);
                /* 7 indices (so duplicates), strided when narrowed */
                ls_tensor *idx;
                if (layout == NARROWED) {
                    ls_tensor *b = make_index(2, (int64_t[]){7, 2}, xs[dim]);
                    idx = ls_view_select(b, 1, 1);
                    ls_tensor_release(b);
                } else {
                    idx = make_index(1, (int64_t[]){7}, xs[dim]);
                }
                int pass_dim = layout == TRANSPOSED ? dim - 3 : dim;
                int64_t os[3] = {xs[0], xs[1], xs[2]};
                os[dim] = 7;
                ls_tensor *y = ls_index_select(x, pass_dim, idx);
                CHECK(y && y->dtype == d && y->ndim == 3 && memcmp(y->shape, os, sizeof os) == 0);
                int64_t n = os[0] * os[1] * os[2], p[3], q[3];
                int bad = 0;
                for (int64_t i = 0; y && i < n; i++) {
                    unflat(i, 3, os, p);
                    memcpy(q, p, sizeof q);
                    q[dim] = (int64_t)ls_tensor_get(idx, (int64_t[]){p[dim]});
                    if (ls_tensor_get_flat(y, i) != ls_tensor_get(x, q)) bad++;
                }
                CHECK(bad == 0);
                ls_tensor_release(y);
                if (d != LS_I64) {
                    ls_tensor *src = make(d, 3, os);
                    ls_tensor *z = ls_index_add(x, pass_dim, idx, src);
                    double ref[60];
                    for (int64_t i = 0; i < 60; i++) ref[i] = ls_tensor_get_flat(x, i);
                    for (int64_t i = 0; i < n; i++) {
                        unflat(i, 3, os, p);
                        memcpy(q, p, sizeof q);
                        q[dim] = (int64_t)ls_tensor_get(idx, (int64_t[]){p[dim]});
                        ref[flat(3, xs, q)] += ls_tensor_get(src, p);
                    }
                    CHECK(z && z->ndim == 3 && memcmp(z->shape, xs, sizeof xs) == 0);
                    double tol = d == LS_F32 ? 1e-5 : 1e-12;
                    bad = 0;
                    for (int64_t i = 0; z && i < 60; i++)
                        if (fabs(ls_tensor_get_flat(z, i) - ref[i]) > tol) bad++;
                    CHECK(bad == 0);
                    ls_tensor_release(z);
                    ls_tensor_release(src);
                }
                ls_tensor_release(idx);
                ls_tensor_release(x);
            }
}

/* ---- edge cases: empty index, 0-d index, 1-d tensors ---- */
static void test_edges(void)
{
    ls_tensor *x = make(LS_F64, 2, (int64_t[]){4, 3});
    ls_tensor *e = ls_tensor_new(LS_I64, 1, (int64_t[]){0});
    ls_tensor *y = ls_index_select(x, 0, e);
    CHECK(y && y->ndim == 2 && y->shape[0] == 0 && y->shape[1] == 3);
    ls_tensor *src = ls_tensor_new(LS_F64, 2, (int64_t[]){0, 3});
    ls_tensor *z = ls_index_add(x, 0, e, src);
    CHECK(z && ls_tensor_get_flat(z, 5) == ls_tensor_get_flat(x, 5));
    ls_tensor_release(y);
    ls_tensor_release(z);
    ls_tensor_release(src);
    ls_tensor_release(e);
    ls_tensor *i0 = ls_tensor_zeros(LS_I64, 0, NULL);
    ((int64_t *)ls_tensor_data(i0))[0] = 2;
    y = ls_index_select(x, 1, i0);   /* 0-d index: the dim is kept with size 1 */
    CHECK(y && y->ndim == 2 && y->shape[0] == 4 && y->shape[1] == 1 &&
          ls_tensor_get_flat(y, 3) == ls_tensor_get(x, (int64_t[]){3, 2}));
    ls_tensor_release(y);
    ls_tensor_release(i0);
    /* 1-d gather: a permutation */
    ls_tensor *v = make(LS_F32, 1, (int64_t[]){5});
    int64_t perm[5] = {4, 0, 3, 1, 2};
    ls_tensor *ip = ls_tensor_from_buffer(LS_I64, 1, (int64_t[]){5}, perm);
    y = ls_gather(v, 0, ip);
    for (int i = 0; y && i < 5; i++) CHECK(ls_tensor_get_flat(y, i) == ls_tensor_get_flat(v, perm[i]));
    ls_tensor_release(y);
    ls_tensor_release(ip);
    ls_tensor_release(v);
    ls_tensor_release(x);
}

/* ---- determinism of the adds ---- */
static void test_threads(void)
{
    int saved = ls_get_threads();
    ls_tensor *x = make(LS_F32, 2, (int64_t[]){1000, 300});
    ls_tensor *idx = make_index(2, (int64_t[]){5000, 300}, 1000);   /* many duplicates per column */
    ls_tensor *src = make(LS_F32, 2, (int64_t[]){5000, 300});
    ls_tensor *i1 = make_index(1, (int64_t[]){5000}, 1000);
    ls_tensor *r[2][2];
    for (int t = 0; t < 2; t++) {
        ls_set_threads(t + 1);
        r[t][0] = ls_scatter_add(x, 0, idx, src);
        r[t][1] = ls_index_add(x, 0, i1, src);
    }
    ls_set_threads(saved);
    for (int k = 0; k < 2; k++)
        CHECK(r[0][k] && r[1][k] &&
              memcmp(ls_tensor_data(r[0][k]), ls_tensor_data(r[1][k]), sizeof(float) * 300000) == 0);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++) ls_tensor_release(r[t][k]);
    ls_tensor_release(x);
    ls_tensor_release(idx);
    ls_tensor_release(src);
    ls_tensor_release(i1);
}

/* ---- gradients: the backward pairs, with duplicate indices ---- */
static void test_grads(void)
{
    ls_tensor *x = make(LS_F64, 2, (int64_t[]){3, 2});
    int64_t iv[4] = {2, 0, 2, 2};
    ls_tensor *idx = ls_tensor_from_buffer(LS_I64, 1, (int64_t[]){4}, iv);
    ls_requires_grad_(x, true);
    ls_tensor *y = ls_index_select(x, 0, idx);   /* rows 2, 0, 2, 2 */
    ls_tensor *s = ls_sum(y, 0, NULL, false);
    ls_grad_opts o = {0};
    ls_tensor *g = NULL;
    CHECK(ls_autograd_grad(1, &s, 1, &x, &o, &g) == LS_OK);
    /* each row's gradient counts how often it was selected */
    CHECK(g && ls_tensor_get_flat(g, 0) == 1 && ls_tensor_get_flat(g, 2) == 0 &&
          ls_tensor_get_flat(g, 4) == 3 && ls_tensor_get_flat(g, 5) == 3);
    ls_tensor_release(g);
    ls_tensor_release(s);
    ls_tensor_release(y);
    ls_tensor_release(idx);
    ls_tensor_release(x);
}

/* ---- errors ---- */
static void test_errors(void)
{
    ls_tensor *x = make(LS_F32, 2, (int64_t[]){3, 5});
    int64_t bad[2] = {1, 7};
    ls_tensor *ib = ls_tensor_from_buffer(LS_I64, 2, (int64_t[]){1, 2}, bad);
    CHECK(ls_gather(x, 1, ib) == NULL &&
          has_msg("gather: index 8 out of range for dimension 2 of size 5"));
    int64_t neg[2] = {-1, 0};
    ls_tensor *in = ls_tensor_from_buffer(LS_I64, 2, (int64_t[]){1, 2}, neg);
    CHECK(ls_gather(x, -1, in) == NULL && has_msg("gather: index 0 out of range"));
    ls_tensor *src = make(LS_F32, 2, (int64_t[]){1, 2});
    CHECK(ls_scatter_add(x, 1, ib, src) == NULL && has_msg("scatter_add: index 8 out of range"));
    ls_tensor *src3 = make(LS_F32, 2, (int64_t[]){1, 3});
    CHECK(ls_scatter_add(x, 1, in, src3) == NULL && has_msg("scatter_add: source [1x3]") &&
          has_msg("[1x2]"));
    ls_tensor *src64 = make(LS_F64, 2, (int64_t[]){1, 2});
    CHECK(ls_scatter_add(x, 1, in, src64) == NULL && has_msg("scatter_add: dtype mismatch"));
    ls_tensor *fi = make(LS_F32, 2, (int64_t[]){1, 2});
    CHECK(ls_gather(x, 0, fi) == NULL && has_msg("gather: index must be an i64 tensor, got f32"));
    ls_tensor *big = ls_tensor_zeros(LS_I64, 2, (int64_t[]){4, 2});
    CHECK(ls_gather(x, 1, big) == NULL && has_msg("gather: index of shape [4x2] does not fit"));
    ls_tensor *r1 = ls_tensor_zeros(LS_I64, 1, (int64_t[]){2});
    CHECK(ls_gather(x, 1, r1) == NULL && has_msg("does not fit"));
    CHECK(ls_gather(x, 2, r1) == NULL && has_msg("gather: dimension 3 out of range"));
    int64_t sel[3] = {0, 3, 1};
    ls_tensor *is = ls_tensor_from_buffer(LS_I64, 1, (int64_t[]){3}, sel);
    CHECK(ls_index_select(x, 0, is) == NULL &&
          has_msg("index_select: index 4 out of range for dimension 1 of size 3"));
    CHECK(ls_index_select(x, 0, big) == NULL && has_msg("index_select: index must be 1-D"));
    ls_tensor *s2 = make(LS_F32, 2, (int64_t[]){3, 3});
    ls_tensor *s3 = make(LS_F32, 2, (int64_t[]){3, 5});
    CHECK(ls_index_add(x, 1, is, s3) == NULL &&
          has_msg("index_add: source [3x5] must have shape [3x3]"));
    CHECK(ls_index_add(x, 0, is, s3) == NULL && has_msg("index_add: index 4 out of range"));
    ls_tensor *sc = ls_tensor_scalar(LS_F32, 1);
    CHECK(ls_index_select(sc, 0, r1) == NULL &&
          has_msg("index_select: expects a tensor with at least"));
    CHECK(ls_gather(NULL, 0, r1) == NULL);
    ls_tensor *objs[] = {x, ib, in, src, src3, src64, fi, big, r1, is, s2, s3, sc};
    for (int k = 0; k < (int)(sizeof objs / sizeof objs[0]); k++) ls_tensor_release(objs[k]);
}

/* ---- allocation failures: NULL with a message, nothing leaked ---- */
static void test_alloc_failures(void)
{
    ls_tensor *x = make_layout(LS_F32, (int64_t[]){3, 4, 5}, TRANSPOSED);
    ls_tensor *b = make_index(3, (int64_t[]){2, 3, 4}, 3);
    ls_tensor *idx = ls_view_transpose(b, 0, 2);   /* [4x3x2], non-contiguous: validated via a copy */
    ls_tensor *src = make(LS_F32, 3, (int64_t[]){4, 3, 2});
    ls_tensor *i1 = make_index(1, (int64_t[]){6}, 4);
    ls_tensor *s1 = make(LS_F32, 3, (int64_t[]){3, 6, 5});
    size_t live = ls_alloc_live_bytes();
    int failures = 0;
    for (long n = 1; n <= 6; n++) {
        ls_tensor *y[4];
        ls_alloc_fail_after(n);
        y[0] = ls_gather(x, 1, idx);
        ls_alloc_fail_after(n);
        y[1] = ls_scatter_add(x, 1, idx, src);
        ls_alloc_fail_after(n);
        y[2] = ls_index_select(x, 1, i1);
        ls_alloc_fail_after(n);
        y[3] = ls_index_add(x, 1, i1, s1);
        ls_alloc_fail_after(0);
        for (int k = 0; k < 4; k++) {
            if (!y[k]) failures++;
            ls_tensor_release(y[k]);
        }
    }
    CHECK(failures > 0);
    CHECK(ls_alloc_live_bytes() == live);
    ls_tensor *objs[] = {x, b, idx, src, i1, s1};
    for (int k = 0; k < 6; k++) ls_tensor_release(objs[k]);
}

int main(void)
{
    test_alloc_failures();
    test_gather_scatter();
    test_select_add();
    test_edges();
    test_threads();
    test_grads();
    test_errors();
    return check_done("ops_index");
}
