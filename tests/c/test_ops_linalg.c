/* Linear algebra (engine/ops/linalg.c): linear(x, w, b) bit for bit equal to matmul(x, w^T) + b on
 * both GEMM paths, 1 and 2 threads, wide, narrow and empty products, 1-D to 3-D inputs and a strided
 * bias, and its shape errors; matmul against a naive triple loop (long double) for many shape
 * combinations (1-D operands, batch dims with broadcasting, empty and k = 0 products) and operand
 * layouts (contiguous, transposed view, narrowed rows, expanded batch, strides that fit no BLAS layout,
 * strided and expanded vectors), in both dtypes; dot and outer; dot's thread-count independence; and
 * error messages. The matmul tests run on both GEMM paths (gemm.h: own AVX-512 tiles where the CPU
 * has them, and OpenBLAS); the own path is also checked bit for bit against a scalar chain of fused
 * multiply-adds in k order (what it promises), across thread counts and across k slabs.
 *
 * Tolerance: |got - ref| <= eps_d * 4 * sum_k |a_ik b_kj| + tiny, with eps_d 2^-23 (f32, sgemm
 * accumulates in float) or 2^-52 (f64): the standard forward error bound of a dot product, with
 * room. */
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/ops.h"

static const ls_dtype dtypes[2] = {LS_F32, LS_F64};

static ls_tensor *make(ls_dtype d, int ndim, const int64_t *shape)
{
    ls_tensor *t = ls_tensor_new(d, ndim, shape);
    int64_t n = ls_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = -1.0 + 2.0 * check_uniform();
        if (d == LS_F32) ((float *)ls_tensor_data(t))[i] = (float)v;
        else ((double *)ls_tensor_data(t))[i] = v;
    }
    return t;
}

static bool has_msg(const char *sub)
{
    bool ok = strstr(ls_error_message(), sub) != NULL;
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", ls_error_message(), sub);
    return ok;
}

/* Operand layouts. For matrices (>= 2-D): CONTIG; TRANS: a transposed view of the swapped shape;
 * NARROW: the last dim narrowed out of a wider tensor (row stride > cols); EXPAND: the leading dim
 * (a batch dim when >= 3-D) expanded from size 1 (stride 0); NOFIT: the last two dims with strides
 * (2c, 2), which BLAS cannot take (copied). For vectors: CONTIG, strided (TRANS, NARROW, NOFIT) and
 * expanded (EXPAND). */
enum { CONTIG, TRANS, NARROW, EXPAND, NOFIT, NLAYOUTS };
static const char *layout_name[NLAYOUTS] = {"contig", "trans", "narrow", "expand", "nofit"};

static ls_tensor *make_layout(ls_dtype d, int nd, const int64_t *s, int layout)
{
    int64_t bs[LS_MAX_DIMS + 1];
    memcpy(bs, s, sizeof(int64_t) * (size_t)nd);
    ls_tensor *base, *v;
    if (layout == CONTIG) return make(d, nd, s);
    if (nd == 1) {
        if (layout == EXPAND) {
            base = make(d, 1, (int64_t[]){1});
            v = ls_view_expand(base, 1, s);
        } else {   /* stride 3 */
            base = make(d, 2, (int64_t[]){s[0], 3});
            v = ls_view_select(base, 1, 1);
        }
        ls_tensor_release(base);
        return v;
    }
    switch (layout) {
    case TRANS:
        bs[nd - 1] = s[nd - 2];
        bs[nd - 2] = s[nd - 1];
        base = make(d, nd, bs);
        v = ls_view_transpose(base, nd - 1, nd - 2);
        break;
    case NARROW:
        bs[nd - 1] = s[nd - 1] + 2;
        base = make(d, nd, bs);
        v = ls_view_narrow(base, nd - 1, 1, s[nd - 1]);
        break;
    case EXPAND:
        bs[0] = 1;
        base = make(d, nd, bs);
        v = ls_view_expand(base, nd, s);
        break;
    default:   /* NOFIT: [..., r, c, 2] selected at the last index */
        bs[nd] = 2;
        base = make(d, nd + 1, bs);
        v = ls_view_select(base, nd, 0);
        break;
    }
    ls_tensor_release(base);
    return v;
}

/* Reference torch.matmul into out (flat, row-major) and bound[] = sum |a||b| per element. */
static int64_t ref_matmul(const ls_tensor *a, const ls_tensor *b, double *out, double *bound)
{
    int na = a->ndim, nb = b->ndim;
    int64_t m = na >= 2 ? a->shape[na - 2] : 1, k = a->shape[na - 1];
    int64_t n = nb >= 2 ? b->shape[nb - 1] : 1;
    int ba = na > 2 ? na - 2 : 0, bb = nb > 2 ? nb - 2 : 0, nbat = ba > bb ? ba : bb;
    int64_t bshape[LS_MAX_DIMS], nbatch = 1;
    for (int i = 0; i < nbat; i++) {
        int ia = i - (nbat - ba), ib = i - (nbat - bb);
        int64_t x = ia >= 0 ? a->shape[ia] : 1, y = ib >= 0 ? b->shape[ib] : 1;
        bshape[i] = x == 1 ? y : x;
        nbatch *= bshape[i];
    }
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t bidx[LS_MAX_DIMS], rem = bi;
        for (int i = nbat - 1; i >= 0; i--) { bidx[i] = rem % bshape[i]; rem /= bshape[i]; }
        int64_t ai[LS_MAX_DIMS] = {0}, bj[LS_MAX_DIMS] = {0};
        for (int i = 0; i < ba; i++) ai[i] = a->shape[i] == 1 ? 0 : bidx[i + nbat - ba];
        for (int i = 0; i < bb; i++) bj[i] = b->shape[i] == 1 ? 0 : bidx[i + nbat - bb];
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                long double s = 0, sa = 0;
                for (int64_t kk = 0; kk < k; kk++) {
                    if (na >= 2) { ai[na - 2] = i; ai[na - 1] = kk; } else ai[0] = kk;
                    if (nb >= 2) { bj[nb - 2] = kk; bj[nb - 1] = j; } else bj[0] = kk;
                    double x = ls_tensor_get(a, ai), y = ls_tensor_get(b, bj);
                    s += (long double)x * y;
                    sa += fabsl((long double)x * y);
                }
                out[(bi * m + i) * n + j] = (double)s;
                bound[(bi * m + i) * n + j] = (double)sa;
            }
    }
    return nbatch * m * n;
}

typedef struct {
    int na, nb;
    int64_t a[4], b[4];
    int nout;
    int64_t out[4];
} mm_case;

static const mm_case cases[] = {
    {2, 2, {3, 4}, {4, 2}, 2, {3, 2}},
    {1, 1, {4}, {4}, 0, {0}},
    {1, 2, {4}, {4, 3}, 1, {3}},
    {2, 1, {3, 4}, {4}, 1, {3}},
    {3, 2, {2, 3, 4}, {4, 5}, 3, {2, 3, 5}},
    {3, 3, {2, 3, 4}, {2, 4, 5}, 3, {2, 3, 5}},
    {4, 3, {2, 1, 3, 4}, {3, 4, 2}, 4, {2, 3, 3, 2}},
    {2, 3, {3, 4}, {2, 4, 5}, 3, {2, 3, 5}},
    {1, 3, {4}, {2, 4, 3}, 2, {2, 3}},
    {3, 1, {2, 3, 4}, {4}, 2, {2, 3}},
    {3, 3, {1, 3, 4}, {2, 4, 2}, 3, {2, 3, 2}},
    {2, 2, {5, 1}, {1, 6}, 2, {5, 6}},
    {2, 2, {1, 4}, {4, 1}, 2, {1, 1}},
    {4, 4, {2, 2, 3, 4}, {2, 1, 4, 5}, 4, {2, 2, 3, 5}},
    {2, 2, {0, 3}, {3, 2}, 2, {0, 2}},
    {2, 2, {3, 0}, {0, 2}, 2, {3, 2}},
    {3, 2, {2, 0, 4}, {4, 3}, 3, {2, 0, 3}},
    {2, 2, {33, 70}, {70, 17}, 2, {33, 17}},
    /* past the own path's tile and block sizes: 12-row and 32-column panels, k steps of 256, the
     * narrow product (n < 16) computed transposed, single rows and columns */
    {2, 2, {130, 300}, {300, 7}, 2, {130, 7}},
    {2, 2, {61, 530}, {530, 75}, 2, {61, 75}},
    {2, 2, {1, 300}, {300, 45}, 2, {1, 45}},
    {3, 2, {3, 50, 40}, {40, 1}, 3, {3, 50, 1}},
};
#define NCASES (int)(sizeof cases / sizeof cases[0])

static void test_matmul_cases(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        double eps = d == LS_F32 ? 1.2e-7 : 2.3e-16;
        for (int c = 0; c < NCASES; c++) {
            const mm_case *mc = &cases[c];
            for (int la = 0; la < NLAYOUTS; la++)
                for (int lb = 0; lb < NLAYOUTS; lb++) {
                    ls_tensor *a = make_layout(d, mc->na, mc->a, la);
                    ls_tensor *b = make_layout(d, mc->nb, mc->b, lb);
                    ls_tensor *y = ls_matmul(a, b);
                    CHECK(y != NULL);
                    if (!y) {
                        fprintf(stderr, "  case %d %s/%s: %s\n", c, layout_name[la], layout_name[lb],
                                ls_error_message());
                    } else {
                        CHECK(y->dtype == d && y->ndim == mc->nout);
                        CHECK(memcmp(y->shape, mc->out, sizeof(int64_t) * (size_t)mc->nout) == 0);
                        int64_t n = ls_tensor_numel(y);
                        double *ref = malloc(sizeof(double) * (size_t)(n + 1));
                        double *bound = malloc(sizeof(double) * (size_t)(n + 1));
                        CHECK(ref_matmul(a, b, ref, bound) == n);
                        int bad = 0;
                        for (int64_t i = 0; i < n; i++) {
                            double got = ls_tensor_get_flat(y, i);
                            if (!(fabs(got - ref[i]) <= 4 * eps * bound[i] + 1e-300) && bad++ < 2)
                                fprintf(stderr, "  case %d %s %s/%s [%lld]: got %.17g want %.17g\n", c,
                                        ls_dtype_name(d), layout_name[la], layout_name[lb],
                                        (long long)i, got, ref[i]);
                        }
                        CHECK(bad == 0);
                        free(ref);
                        free(bound);
                    }
                    ls_tensor_release(y);
                    ls_tensor_release(a);
                    ls_tensor_release(b);
                }
        }
    }
}

/* A product whose operands are transposed views of big matrices goes through BLAS without copies
 * and agrees with the same product of contiguous copies. */
static void test_matmul_views_agree(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        ls_tensor *A = make(d, 2, (int64_t[]){130, 70}), *B = make(d, 2, (int64_t[]){90, 130});
        /* [70x130] @ [130x90] */
        ls_tensor *At = ls_view_transpose(A, 0, 1), *Bt = ls_view_transpose(B, 0, 1);
        ls_tensor *Ac = ls_tensor_clone(At), *Bc = ls_tensor_clone(Bt);
        ls_tensor *y1 = ls_matmul(At, Bt), *y2 = ls_matmul(Ac, Bc);
        CHECK(y1 && y2 && y1->shape[0] == 70 && y1->shape[1] == 90);
        double maxdiff = 0;
        for (int64_t i = 0; y1 && y2 && i < 70 * 90; i++) {
            double df = fabs(ls_tensor_get_flat(y1, i) - ls_tensor_get_flat(y2, i));
            maxdiff = df > maxdiff ? df : maxdiff;
        }
        CHECK(maxdiff <= (d == LS_F32 ? 1e-4 : 1e-12));
        ls_tensor *objs[] = {A, B, At, Bt, Ac, Bc, y1, y2};
        for (int i = 0; i < 8; i++) ls_tensor_release(objs[i]);
    }
}

static void test_dot_outer(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        for (int la = 0; la < NLAYOUTS; la++) {
            ls_tensor *a = make_layout(d, 1, (int64_t[]){7}, la);
            ls_tensor *b = make_layout(d, 1, (int64_t[]){7}, (la + 1) % NLAYOUTS);
            ls_tensor *c = make_layout(d, 1, (int64_t[]){4}, la);
            ls_tensor *dt = ls_dot(a, b), *o = ls_outer(a, c);
            long double s = 0;
            for (int64_t i = 0; i < 7; i++)
                s += (long double)ls_tensor_get_flat(a, i) * ls_tensor_get_flat(b, i);
            CHECK(dt && dt->ndim == 0 && fabs(ls_tensor_get_flat(dt, 0) - (double)s) < 1e-6);
            CHECK(o && o->ndim == 2 && o->shape[0] == 7 && o->shape[1] == 4);
            for (int64_t i = 0; o && i < 7; i++)
                for (int64_t j = 0; j < 4; j++) {
                    double want = ls_tensor_get_flat(a, i) * ls_tensor_get_flat(c, j);
                    if (d == LS_F32) want = (float)want;
                    CHECK(ls_tensor_get_flat(o, i * 4 + j) == want);
                }
            ls_tensor_release(dt);
            ls_tensor_release(o);
            ls_tensor_release(a);
            ls_tensor_release(b);
            ls_tensor_release(c);
        }
        /* empty dot is 0 */
        ls_tensor *e = ls_tensor_new(d, 1, (int64_t[]){0});
        ls_tensor *z = ls_dot(e, e);
        CHECK(z && ls_tensor_get_flat(z, 0) == 0.0);
        ls_tensor_release(z);
        ls_tensor_release(e);
    }
    /* dot over 10^6 elements: bit-identical for 1 and 2 threads, and accurate */
    int saved = ls_get_threads();
    ls_tensor *a = make(LS_F32, 1, (int64_t[]){1000000}), *b = make(LS_F32, 1, (int64_t[]){1000000});
    ls_set_threads(1);
    ls_tensor *r1 = ls_dot(a, b), *m1 = ls_matmul(a, b);
    ls_set_threads(2);
    ls_tensor *r2 = ls_dot(a, b), *m2 = ls_matmul(a, b);
    ls_set_threads(saved);
    CHECK(r1 && r2 && memcmp(ls_tensor_data(r1), ls_tensor_data(r2), sizeof(float)) == 0);
    CHECK(m1 && m2 && memcmp(ls_tensor_data(m1), ls_tensor_data(r1), sizeof(float)) == 0);
    long double s = 0;
    for (int64_t i = 0; i < 1000000; i++)
        s += (long double)((float *)ls_tensor_data(a))[i] * ((float *)ls_tensor_data(b))[i];
    CHECK(r1 && fabs(ls_tensor_get_flat(r1, 0) - (double)s) <= 1e-6 * fabs((double)s) + 1e-3);
    ls_tensor *objs[] = {a, b, r1, r2, m1, m2};
    for (int i = 0; i < 6; i++) ls_tensor_release(objs[i]);
}

static void test_errors(void)
{
    ls_tensor *a = make(LS_F32, 2, (int64_t[]){3, 4}), *b = make(LS_F32, 2, (int64_t[]){5, 2});
    ls_tensor *c = make(LS_F64, 2, (int64_t[]){4, 2});
    ls_tensor *i = ls_tensor_zeros(LS_I64, 2, (int64_t[]){4, 2});
    ls_tensor *s = ls_tensor_scalar(LS_F32, 1), *v = make(LS_F32, 1, (int64_t[]){3});
    ls_tensor *b3 = make(LS_F32, 3, (int64_t[]){2, 3, 4}), *b4 = make(LS_F32, 3, (int64_t[]){3, 4, 5});
    CHECK(ls_matmul(a, b) == NULL && has_msg("matmul: inner dimensions differ: [3x4] @ [5x2]"));
    CHECK(ls_matmul(a, c) == NULL && has_msg("matmul: dtype mismatch: f32 and f64"));
    CHECK(ls_matmul(a, i) == NULL && has_msg("matmul: expected a float tensor") && has_msg("i64"));
    CHECK(ls_matmul(s, a) == NULL && has_msg("matmul: both arguments need at least 1 dimension"));
    CHECK(ls_matmul(b3, b4) == NULL && has_msg("matmul: batch dimensions cannot be broadcast") &&
          has_msg("[2x3x4] @ [3x4x5]"));
    CHECK(ls_dot(a, v) == NULL && has_msg("dot: expected two 1-D tensors, got [3x4] and [3]"));
    ls_tensor *w = make(LS_F32, 1, (int64_t[]){4});
    CHECK(ls_matmul(w, a) == NULL && has_msg("inner dimensions differ: [4] @ [3x4]"));
    CHECK(ls_matmul(a, v) == NULL && has_msg("inner dimensions differ: [3x4] @ [3]"));
    CHECK(ls_dot(v, w) == NULL && has_msg("dot: sizes differ: [3] and [4]"));
    CHECK(ls_outer(v, a) == NULL && has_msg("outer: expected two 1-D tensors"));
    CHECK(ls_matmul(NULL, a) == NULL);
    ls_tensor *objs[] = {a, b, c, i, s, v, b3, b4, w};
    for (int k = 0; k < 9; k++) ls_tensor_release(objs[k]);
}

/* ---- allocation failures: NULL with a message, nothing leaked ---- */
static void test_alloc_failures(void)
{
    ls_tensor *a = make_layout(LS_F64, 3, (int64_t[]){2, 3, 4}, NOFIT);   /* copied for BLAS */
    ls_tensor *b = make_layout(LS_F64, 2, (int64_t[]){4, 5}, EXPAND);
    ls_tensor *v = make(LS_F64, 1, (int64_t[]){5000}), *w = make(LS_F64, 1, (int64_t[]){3});
    size_t live = ls_alloc_live_bytes();
    int failures = 0;
    for (long n = 1; n <= 8; n++) {
        ls_tensor *y[3];
        ls_alloc_fail_after(n);
        y[0] = ls_matmul(a, b);
        ls_alloc_fail_after(n);
        y[1] = ls_dot(v, v);
        ls_alloc_fail_after(n);
        y[2] = ls_outer(v, w);
        ls_alloc_fail_after(0);
        for (int k = 0; k < 3; k++) {
            if (!y[k]) failures++;
            ls_tensor_release(y[k]);
        }
    }
    CHECK(failures > 0);
    CHECK(ls_alloc_live_bytes() == live);
    ls_tensor *objs[] = {a, b, v, w};
    for (int k = 0; k < 4; k++) ls_tensor_release(objs[k]);
}


/* The own GEMM path computes each element as one fma chain over k in order from zero: equal bit for
 * bit to that scalar chain, for 1 and 2 threads, for the narrow (transposed) product, for a k long
 * enough to be packed in three slabs (GEMM_PACK_BYTES), and for transposed operands. */
static double fma_chain(ls_dtype d, const ls_tensor *a, const ls_tensor *b, int64_t i, int64_t j)
{
    int64_t k = a->shape[1];
    const char *pa = ls_tensor_data((ls_tensor *)a), *pb = ls_tensor_data((ls_tensor *)b);
    if (d == LS_F32) {
        float c = 0;
        for (int64_t q = 0; q < k; q++)
            c = fmaf(((const float *)pa)[i * a->stride[0] + q * a->stride[1]],
                     ((const float *)pb)[q * b->stride[0] + j * b->stride[1]], c);
        return c;
    }
    double c = 0;
    for (int64_t q = 0; q < k; q++)
        c = fma(((const double *)pa)[i * a->stride[0] + q * a->stride[1]],
                ((const double *)pb)[q * b->stride[0] + j * b->stride[1]], c);
    return c;
}

static void test_gemm_own_exact(void)
{
    if (strcmp(ls_gemm_path(), "avx512") != 0) {
        printf("gemm: no AVX-512 on this CPU, own-path exactness not tested\n");
        return;
    }
    /* {600, 40, 300} transposed: a small packed B, packed whole before the blocks (GEMM_PREPACK_BYTES);
     * {150, 9, 2000}: ragged row and column panels on 2 threads; {100, 300, 270} not transposed:
     * a row-major B packed by rows before the blocks on 2 threads (packk; a last chunk of 14 rows) */
    static const int64_t sz[][3] = {{200, 150, 300}, {150, 9, 270}, {13, 33, 5}, {2, 3, 400000},
                                    {600, 40, 300}, {150, 9, 2000}, {100, 300, 270},
                                    {32, 256, 784}, {8, 64, 200}, {40, 100, 300}};
    int ncases = (int)(sizeof sz / sizeof sz[0]);
    int saved = ls_get_threads();
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        for (int c = 0; c < ncases; c++) {
            int64_t m = sz[c][0], n = sz[c][1], k = sz[c][2];
            for (int tr = 0; tr < 3; tr++) {
                /* tr 1: a and b as transposed views of [k, m] and [n, k] storage; tr 2: only b
                 * (a batch times a weight's transpose: with m small, computed as the transposed
                 * product, which packs a instead of b) */
                bool ta = tr == 1, tb = tr >= 1;
                ls_tensor *as = make(d, 2, ta ? (int64_t[]){k, m} : (int64_t[]){m, k});
                ls_tensor *bs = make(d, 2, tb ? (int64_t[]){n, k} : (int64_t[]){k, n});
                ls_tensor *a = ta ? ls_view_transpose(as, 0, 1) : ls_tensor_retain(as);
                ls_tensor *b = tb ? ls_view_transpose(bs, 0, 1) : ls_tensor_retain(bs);
                ls_set_threads(1);
                ls_tensor *y1 = ls_matmul(a, b);
                ls_set_threads(2);
                ls_tensor *y2 = ls_matmul(a, b);
                CHECK(y1 && y2);
                int bad = 0;
                for (int64_t i = 0; y1 && y2 && i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double want = fma_chain(d, a, b, i, j);
                        double g1 = ls_tensor_get_flat(y1, i * n + j);
                        double g2 = ls_tensor_get_flat(y2, i * n + j);
                        if ((g1 != want || g2 != want) && bad++ < 2)
                            fprintf(stderr, "  gemm %s %lldx%lldx%lld tr %d [%lld,%lld]: %.17g %.17g "
                                    "want %.17g\n", ls_dtype_name(d), (long long)m, (long long)n,
                                    (long long)k, tr, (long long)i, (long long)j, g1, g2, want);
                    }
                CHECK(bad == 0);
                ls_tensor *objs[] = {as, bs, a, b, y1, y2};
                for (int q = 0; q < 6; q++) ls_tensor_release(objs[q]);
            }
        }
    }
    ls_set_threads(saved);
}

/* ---- linear = matmul(x, w^T) + b, bit for bit ---- */
static void test_linear(void)
{
    /* x's shape (its last dim is in), out: parallel tiles; ragged panels; the narrow transposed
     * product (out < 8); a classifier head (out = 10); an empty sum (in = 0); 1-D and 3-D inputs;
     * small batches, computed as the transposed product with the bias added in the transposition
     * (a contiguous and a strided bias) */
    static const struct { int nd; int64_t x[3]; int64_t out; } cs[] = {
        {2, {200, 300}, 150}, {2, {150, 270}, 9}, {2, {13, 5}, 3},  {2, {128, 512}, 10},
        {2, {2, 0}, 3},       {1, {7}, 5},         {3, {2, 3, 4}, 6},
        {2, {32, 784}, 256},  {2, {16, 300}, 100}};   /* a small batch: the transposed product */
    int saved = ls_get_threads();
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
            int64_t in = cs[c].x[cs[c].nd - 1], out = cs[c].out;
            ls_tensor *x = make(d, cs[c].nd, cs[c].x), *w = make(d, 2, (int64_t[]){out, in});
            /* the bias a strided view (every other element) in odd cases */
            ls_tensor *bb = make(d, 2, (int64_t[]){out, 2});
            ls_tensor *b = c % 2 ? ls_view_select(bb, 1, 0) : make(d, 1, (int64_t[]){out});
            for (int th = 1; th <= 2; th++) {
                ls_set_threads(th);
                ls_tensor *wt = ls_view_transpose(w, 0, 1);
                ls_tensor *mm = ls_matmul(x, wt), *want = ls_add(mm, b), *got = ls_linear(x, w, b);
                CHECK(want && got && got->ndim == want->ndim);
                int bad = 0;
                for (int k = 0; got && want && k < got->ndim; k++) bad += got->shape[k] != want->shape[k];
                for (int64_t i = 0; !bad && got && i < ls_tensor_numel(got); i++)
                    if (ls_tensor_get_flat(got, i) != ls_tensor_get_flat(want, i) && bad++ < 2)
                        fprintf(stderr, "  linear %s case %zu, %d threads, %s [%lld]: %.17g want %.17g\n",
                                ls_dtype_name(d), c, th, ls_gemm_path(), (long long)i,
                                ls_tensor_get_flat(got, i), ls_tensor_get_flat(want, i));
                CHECK(bad == 0);
                ls_tensor *objs[] = {wt, mm, want, got};
                for (int q = 0; q < 4; q++) ls_tensor_release(objs[q]);
            }
            ls_tensor *objs[] = {x, w, bb, b};
            for (int q = 0; q < 4; q++) ls_tensor_release(objs[q]);
        }
    }
    ls_set_threads(saved);
    ls_tensor *x = make(LS_F32, 2, (int64_t[]){4, 3}), *w = make(LS_F32, 2, (int64_t[]){5, 3});
    ls_tensor *b = make(LS_F32, 1, (int64_t[]){5}), *b2 = make(LS_F32, 1, (int64_t[]){4});
    ls_tensor *w3 = make(LS_F32, 3, (int64_t[]){1, 5, 3}), *wd = make(LS_F64, 2, (int64_t[]){5, 3});
    ls_tensor *x2 = make(LS_F32, 2, (int64_t[]){4, 2});
    CHECK(ls_linear(x, w, b2) == NULL &&
          has_msg("linear: expected input [..., in], weight [out, in] and bias [out], got [4x3], "
                  "[5x3] and [4]"));
    CHECK(ls_linear(x2, w, b) == NULL && has_msg("got [4x2], [5x3] and [5]"));
    CHECK(ls_linear(x, w3, b) == NULL && has_msg("[1x5x3]"));
    CHECK(ls_linear(x, wd, b) == NULL && has_msg("linear: dtype mismatch"));
    ls_tensor *objs[] = {x, w, b, b2, w3, wd, x2};
    for (int q = 0; q < 7; q++) ls_tensor_release(objs[q]);
}

int main(void)
{
    /* matmul on both GEMM paths: the CPU's (own AVX-512 tiles where available) and OpenBLAS */
    for (int blas = 0; blas < 2; blas++) {
        ls_gemm_use_blas(blas);
        printf("gemm path: %s\n", ls_gemm_path());
        test_alloc_failures();
        test_matmul_cases();
        test_matmul_views_agree();
        test_linear();
    }
    ls_gemm_use_blas(false);
    test_gemm_own_exact();
    test_dot_outer();
    test_errors();
    return check_done("ops_linalg");
}
