/* Tensors: creation, views sharing storage, reshape with and without copies, broadcasting shapes, the
 * strided iterator (through copy/contiguous), casts and error messages. */
#include <stdbool.h>
#include <string.h>

#include "check.h"
#include "core/alloc.h"
#include "tensor/tensor.h"

static ls_tensor *iota(ls_dtype d, int nd, const int64_t *shape)
{
    ls_tensor *t = ls_tensor_new(d, nd, shape);
    for (int64_t i = 0; i < ls_tensor_numel(t); i++) {
        int64_t idx[LS_MAX_DIMS], r = i;
        for (int k = nd - 1; k >= 0; k--) { idx[k] = r % shape[k]; r /= shape[k]; }
        ls_tensor_set(t, idx, (double)i);
    }
    return t;
}

static void test_create(void)
{
    int64_t s[2] = {2, 3};
    ls_tensor *z = ls_tensor_zeros(LS_F64, 2, s);
    CHECK(ls_tensor_numel(z) == 6 && ls_tensor_is_contiguous(z));
    CHECK(z->stride[0] == 3 && z->stride[1] == 1);
    CHECK(ls_tensor_get_flat(z, 5) == 0.0);
    ls_tensor *f = ls_tensor_full(LS_F32, 2, s, 2.5);
    CHECK(ls_tensor_get_flat(f, 4) == 2.5);
    ls_tensor *a = ls_tensor_arange(LS_F64, 1, 2, 0.25);
    CHECK(a->shape[0] == 4 && ls_tensor_get_flat(a, 3) == 1.75);
    ls_tensor *e = ls_tensor_eye(LS_F32, 3, 2);
    CHECK(ls_tensor_get(e, (int64_t[]){1, 1}) == 1 && ls_tensor_get(e, (int64_t[]){2, 1}) == 0);
    CHECK(ls_tensor_arange(LS_F32, 0, 1, 0) == NULL);
    CHECK(strstr(ls_error_message(), "arange") != NULL);
    CHECK(ls_tensor_new(LS_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}) == NULL);
    CHECK(ls_tensor_new(LS_F32, 1, (int64_t[]){-2}) == NULL);
    CHECK(strstr(ls_error_message(), "negative") != NULL);
    ls_tensor *sc = ls_tensor_scalar(LS_F64, 7);
    CHECK(sc->ndim == 0 && ls_tensor_numel(sc) == 1 && ls_tensor_get_flat(sc, 0) == 7);
    ls_tensor_release(z); ls_tensor_release(f); ls_tensor_release(a); ls_tensor_release(e);
    ls_tensor_release(sc);
}

static void test_views(void)
{
    int64_t s[3] = {2, 3, 4};
    ls_tensor *x = iota(LS_F32, 3, s);
    /* transpose shares storage and swaps strides */
    ls_tensor *t = ls_view_transpose(x, 0, 2);
    CHECK(t->storage == x->storage && t->shape[0] == 4 && t->shape[2] == 2);
    CHECK(ls_tensor_get(t, (int64_t[]){3, 1, 1}) == ls_tensor_get(x, (int64_t[]){1, 1, 3}));
    CHECK(!ls_tensor_is_contiguous(t));
    /* contiguous copies in the logical order */
    ls_tensor *c = ls_tensor_contiguous(t);
    CHECK(c->storage != x->storage && ls_tensor_is_contiguous(c));
    for (int64_t i = 0; i < 24; i++) CHECK(ls_tensor_get_flat(c, i) == ls_tensor_get_flat(t, i));
    /* narrow and select */
    ls_tensor *n = ls_view_narrow(x, 1, 1, 2);
    CHECK(n->shape[1] == 2 && ls_tensor_get(n, (int64_t[]){1, 0, 2}) == 1 * 12 + 1 * 4 + 2);
    ls_tensor *sel = ls_view_select(x, 2, 3);
    CHECK(sel->ndim == 2 && ls_tensor_get(sel, (int64_t[]){1, 2}) == 12 + 8 + 3);
    CHECK(ls_view_select(x, 2, 4) == NULL);
    CHECK(strstr(ls_error_message(), "select: index 5 out of range for dimension 3 of size 4"));
    CHECK(ls_view_narrow(x, 0, 1, 2) == NULL);
    /* reshape: a view when possible, a copy otherwise */
    ls_tensor *r = ls_view_reshape(x, 2, (int64_t[]){6, -1});
    CHECK(r->storage == x->storage && r->shape[1] == 4);
    ls_tensor *rt = ls_view_reshape(t, 1, (int64_t[]){24});
    CHECK(rt->storage != x->storage);
    for (int64_t i = 0; i < 24; i++) CHECK(ls_tensor_get_flat(rt, i) == ls_tensor_get_flat(t, i));
    ls_tensor *nr = ls_view_reshape(n, 2, (int64_t[]){2, 8});   /* narrowed dims 1,2 merge */
    CHECK(nr->storage == x->storage);
    for (int64_t i = 0; i < 16; i++) CHECK(ls_tensor_get_flat(nr, i) == ls_tensor_get_flat(n, i));
    CHECK(ls_view_reshape(x, 2, (int64_t[]){5, 5}) == NULL);
    CHECK(strstr(ls_error_message(), "cannot reshape [2x3x4] (24 elements) into [5x5]") != NULL);
    /* squeeze / unsqueeze / expand / permute */
    ls_tensor *u = ls_view_unsqueeze(x, 1);
    CHECK(u->ndim == 4 && u->shape[1] == 1);
    ls_tensor *sq = ls_view_squeeze(u, -1);
    CHECK(sq->ndim == 3 && sq->shape[1] == 3);
    ls_tensor *col = ls_view_narrow(r, 1, 0, 1);    /* [6x1] */
    ls_tensor *ex = ls_view_expand(col, 3, (int64_t[]){2, 6, 5});
    CHECK(ex->stride[2] == 0 && ex->stride[0] == 0);
    CHECK(ls_tensor_get(ex, (int64_t[]){1, 5, 4}) == ls_tensor_get(col, (int64_t[]){5, 0}));
    CHECK(ls_view_expand(x, 3, (int64_t[]){2, 5, 4}) == NULL);
    ls_tensor *p = ls_view_permute(x, (int[]){1, 2, 0});
    CHECK(p->shape[0] == 3 && p->shape[2] == 2 &&
          ls_tensor_get(p, (int64_t[]){2, 1, 1}) == ls_tensor_get(x, (int64_t[]){1, 2, 1}));
    CHECK(ls_view_permute(x, (int[]){0, 0, 1}) == NULL);
    ls_tensor *vs[] = {t, c, n, sel, r, rt, nr, u, sq, col, ex, p};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) ls_tensor_release(vs[i]);
    ls_tensor_release(x);
}

static void test_broadcast_copy_cast(void)
{
    int nd;
    int64_t out[LS_MAX_DIMS];
    CHECK(ls_broadcast_shapes("t", 2, (int64_t[]){3, 1}, 3, (int64_t[]){2, 1, 4}, &nd, out) == LS_OK);
    CHECK(nd == 3 && out[0] == 2 && out[1] == 3 && out[2] == 4);
    CHECK(ls_broadcast_shapes("add", 1, (int64_t[]){3}, 1, (int64_t[]){4}, &nd, out) != LS_OK);
    CHECK(strstr(ls_error_message(), "add: shapes [3] and [4] cannot be broadcast") != NULL);
    /* copy_ broadcasts a row into every row, converting dtype */
    ls_tensor *dst = ls_tensor_zeros(LS_F64, 2, (int64_t[]){3, 4});
    ls_tensor *row = ls_tensor_arange(LS_F32, 0, 4, 1);
    CHECK(ls_tensor_copy_(dst, row) == LS_OK);
    for (int64_t i = 0; i < 12; i++) CHECK(ls_tensor_get_flat(dst, i) == (double)(i % 4));
    /* into a transposed destination */
    ls_tensor *dt = ls_view_transpose(dst, 0, 1);           /* [4x3] */
    ls_tensor *col = ls_tensor_arange(LS_F64, 10, 14, 1);
    ls_tensor *colv = ls_view_unsqueeze(col, 1);             /* [4x1] */
    CHECK(ls_tensor_copy_(dt, colv) == LS_OK);
    CHECK(ls_tensor_get(dst, (int64_t[]){2, 3}) == 13);
    ls_tensor *three = ls_tensor_arange(LS_F32, 0, 3, 1);
    CHECK(ls_tensor_copy_(dst, three) != LS_OK);
    CHECK(strstr(ls_error_message(), "copy: shapes [3x4] and [3] cannot be broadcast") != NULL);
    ls_tensor_release(three);
    /* casts */
    ls_tensor *i64 = ls_tensor_cast(dst, LS_I64);
    CHECK(i64->dtype == LS_I64 && ls_tensor_get_flat(i64, 11) == 13);
    ls_tensor *same = ls_tensor_cast(dst, LS_F64);
    CHECK(same == dst);
    ls_tensor_release(same);
    /* large copy runs through the thread pool in chunks */
    ls_tensor *big = ls_tensor_arange(LS_F32, 0, 300000, 1);
    ls_tensor *bt = ls_view_reshape(big, 2, (int64_t[]){600, 500});
    ls_tensor *btt = ls_view_transpose(bt, 0, 1);
    ls_tensor *bc = ls_tensor_contiguous(btt);
    int ok = 1;
    for (int64_t i = 0; i < 500 && ok; i++)
        for (int64_t j = 0; j < 600; j++)
            if (ls_tensor_get(bc, (int64_t[]){i, j}) != (double)(j * 500 + i)) { ok = 0; break; }
    CHECK(ok);
    ls_tensor *vs[] = {dst, row, dt, col, colv, i64, big, bt, btt, bc};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) ls_tensor_release(vs[i]);
}

static void test_alloc_failure(void)
{
    ls_alloc_fail_after(2);   /* header succeeds, storage fails */
    ls_tensor *t = ls_tensor_new(LS_F32, 1, (int64_t[]){10});
    CHECK(t == NULL);
    CHECK(ls_error_code() == LS_ERR_MEM);
    ls_alloc_fail_after(0);
}

static bool msg_has(const char *s) { return strstr(ls_error_message(), s) != NULL; }

/* The one shape rule (ls_shape_check) and the views' overflow-checked arithmetic: every case here
 * crashed, overflowed or silently gave a wrong size before. */
static void test_shape_rules(void)
{
    int64_t numel = -1;
    CHECK(ls_shape_check("t", 3, (int64_t[]){2, 0, 5}, &numel) == LS_OK && numel == 0);
    CHECK(ls_shape_check("t", 2, (int64_t[]){INT64_C(1) << 20, INT64_C(1) << 20}, &numel) == LS_OK &&
          numel == LS_MAX_NUMEL);
    CHECK(ls_shape_check("t", 2, (int64_t[]){(INT64_C(1) << 20) + 1, INT64_C(1) << 20}, NULL));
    CHECK(msg_has("t: shape [1048577x1048576] is too large"));
    /* a zero dim does not unbound the others: their strides would overflow */
    CHECK(ls_tensor_zeros(LS_F32, 3, (int64_t[]){0, INT64_C(1) << 62, 4}) == NULL);
    CHECK(ls_error_code() == LS_ERR_ARG && msg_has("shape [0x4611686018427387904x4] is too large"));
    CHECK(ls_shape_check("t", 2, (int64_t[]){3, -2}, NULL) && msg_has("t: negative size -2 in dimension 2"));
    CHECK(ls_shape_check("t", 9, (int64_t[9]){0}, NULL) && msg_has("9 dimensions"));
    CHECK(ls_tensor_new(LS_F32, -1, NULL) == NULL);

    /* reshape of an empty tensor (it recursed until the stack overflowed) */
    ls_tensor *e = ls_tensor_zeros(LS_F32, 2, (int64_t[]){0, 3});
    ls_tensor *r = ls_view_reshape(e, 2, (int64_t[]){3, 0});
    CHECK(r && r->shape[0] == 3 && r->shape[1] == 0 && r->stride[0] == 1 && r->stride[1] == 1);
    ls_tensor_release(r);
    ls_tensor *et = ls_view_transpose(e, 0, 1);   /* not contiguous, still no copy */
    CHECK((r = ls_view_reshape(et, 3, (int64_t[]){-1, 0, 1})) == NULL && msg_has("cannot reshape"));
    CHECK((r = ls_view_reshape(et, 2, (int64_t[]){0, 7})) != NULL && r->storage == e->storage);
    ls_tensor_release(r);
    CHECK(ls_view_reshape(e, 3, (int64_t[]){INT64_C(1) << 40, INT64_C(1) << 40, 0}) == NULL &&
          msg_has("reshape: shape [1099511627776x1099511627776x0] is too large"));
    CHECK(ls_view_reshape(e, 2, (int64_t[]){-1, -1}) == NULL && msg_has("only one dimension can be -1"));
    ls_tensor_release(et);
    ls_tensor_release(e);

    /* narrow: start + length overflowed into a negative size that read past the storage */
    ls_tensor *x = iota(LS_F32, 2, (int64_t[]){2, 3});
    CHECK(ls_view_narrow(x, 1, 1, INT64_MAX) == NULL && msg_has("out of bounds for dimension 2"));
    CHECK(ls_view_narrow(x, 1, INT64_MAX, 1) == NULL);
    CHECK(ls_view_narrow(x, 1, -1, 1) == NULL && ls_view_narrow(x, 1, 0, -1) == NULL);
    CHECK((r = ls_view_narrow(x, 1, 3, 0)) != NULL && ls_tensor_numel(r) == 0);   /* empty at the end */
    ls_tensor_release(r);

    /* expand: only -1 may stand for a size, and only for an existing dim; the result's numel fits */
    ls_tensor *one = ls_tensor_full(LS_F32, 1, (int64_t[]){1}, 1.0);
    CHECK(ls_view_expand(one, 1, (int64_t[]){-5}) == NULL && msg_has("expand: invalid size -5"));
    CHECK(ls_view_expand(one, 2, (int64_t[]){-1, 3}) == NULL && msg_has("invalid size -1 for dimension 1"));
    CHECK((r = ls_view_expand(one, 2, (int64_t[]){4, -1})) != NULL && r->shape[0] == 4 &&
          r->shape[1] == 1 && r->stride[0] == 0);
    ls_tensor_release(r);
    ls_tensor *one2 = ls_tensor_full(LS_F32, 2, (int64_t[]){1, 1}, 1.0);
    CHECK(ls_view_expand(one2, 2, (int64_t[]){INT64_C(1) << 32, INT64_C(1) << 32}) == NULL &&
          msg_has("expand: shape [4294967296x4294967296] is too large"));
    CHECK(ls_view_expand(x, 9, (int64_t[9]){0}) == NULL && msg_has("too many"));

    /* the tag of a generic message names the entry point */
    ls_error_set(LS_ERR_MEM, "tensor: out of memory for a f32 tensor of shape [3] (12 bytes)");
    ls_error_retag("zeros");
    CHECK(strcmp(ls_error_message(), "zeros: out of memory for a f32 tensor of shape [3] (12 bytes)") == 0);
    ls_error_retag("ones");   /* only the generic tag is replaced */
    CHECK(strncmp(ls_error_message(), "zeros: ", 7) == 0);
    ls_alloc_fail_after(2);
    CHECK(ls_tensor_new(LS_F64, 2, (int64_t[]){2, 5}) == NULL &&
          msg_has("tensor: out of memory for a f64 tensor of shape [2x5] (80 bytes)"));
    ls_alloc_fail_after(0);
    ls_tensor_release(x), ls_tensor_release(one), ls_tensor_release(one2);
}

/* ls_tensor_equal: torch.equal's rules, on the contiguous fast path and through views */
static void test_equal(void)
{
    ls_tensor *a = ls_tensor_new(LS_F32, 2, (int64_t[]){2, 3});
    ls_tensor *b = ls_tensor_new(LS_F32, 2, (int64_t[]){2, 3});
    for (int64_t i = 0; i < 6; i++) {
        ls_tensor_set(a, (int64_t[]){i / 3, i % 3}, (double)i);
        ls_tensor_set(b, (int64_t[]){i / 3, i % 3}, (double)i);
    }
    CHECK(ls_tensor_equal(a, b));
    ls_tensor_set(b, (int64_t[]){1, 2}, 5.5);
    CHECK(!ls_tensor_equal(a, b));                       /* last element differs */
    ls_tensor_set(b, (int64_t[]){1, 2}, 5.0);
    ls_tensor *d = ls_tensor_cast(a, LS_F64);            /* other dtype, same values */
    CHECK(ls_tensor_equal(a, d));
    ls_tensor *r = ls_tensor_new(LS_F32, 2, (int64_t[]){3, 2});
    CHECK(!ls_tensor_equal(a, r));                       /* same numel, other shape */
    ls_tensor *at = ls_view_transpose(a, 0, 1), *bt = ls_view_transpose(b, 0, 1);
    CHECK(ls_tensor_equal(at, bt));                      /* views: the general path */
    ls_tensor_set(a, (int64_t[]){0, 0}, -0.0);
    ls_tensor_set(b, (int64_t[]){0, 0}, 0.0);
    CHECK(ls_tensor_equal(a, b));                        /* -0 == 0 */
    ls_tensor_set(a, (int64_t[]){0, 1}, NAN);
    ls_tensor_set(b, (int64_t[]){0, 1}, NAN);
    CHECK(!ls_tensor_equal(a, b) && !ls_tensor_equal(a, a));   /* NaN equals nothing */
    ls_tensor *objs[] = {a, b, d, r, at, bt};
    for (int i = 0; i < 6; i++) ls_tensor_release(objs[i]);
}

int main(void)
{
    size_t live0 = ls_alloc_live_bytes();
    test_create();
    test_views();
    test_broadcast_copy_cast();
    test_alloc_failure();
    test_shape_rules();
    test_equal();
    CHECK(ls_alloc_live_bytes() == live0);   /* every tensor above was released */
    return check_done("tensor");
}
