/* Linear algebra: matmul (torch.matmul semantics), linear (torch.nn.functional.linear), dot, outer.
 *
 * matmul(a, b):
 *   1-D @ 1-D        -> 0-d (the dot product)
 *   2-D @ 2-D        -> matrix product
 *   1-D @ N-D        -> a is treated as a [1 x k] row, and that dim is removed from the result
 *   N-D @ 1-D        -> b is treated as a [k x 1] column, and that dim is removed from the result
 *   batched          -> the dims before the last two are batch dims, broadcast (NumPy rules)
 * Errors name the shapes: "matmul: inner dimensions differ: [3x4] @ [5x2]".
 *
 * Matrix products go to ls_gemm (gemm.h: the engine's AVX-512 tiles where the CPU has them, else
 * OpenBLAS), row-major. Each operand matrix is passed as it lies when its strides allow: row-major
 * rows (column stride 1) as NoTrans, or a transposed view (row stride 1) as Trans, with the leading
 * dimension taken from the other stride. Only an operand whose strides fit neither (an expanded or
 * sliced-every-other layout) is copied to contiguous first. When b has no batch dims, a's batch dims
 * are folded into its rows so the whole product is one gemm (a view when a's rows are evenly spaced,
 * else one copy). Otherwise there is one gemm per batch element, run one after another, each on all
 * threads. The own path gives the same bits for any thread count; OpenBLAS is reproducible for a
 * fixed thread count, but its last bits can change with the number of threads.
 *
 * linear(x, w, b) = x @ w^T + b (x [..., in], w [out, in], b [out]) is matmul with the bias added by
 * the GEMM to each tile as its chain ends, instead of by a separate pass over the result that, on 2
 * threads, read half of it from the other core's cache. The bits of matmul then add; its backward
 * is theirs (matmul's rule with w^T, and sum_to for b).
 *
 * dot (and 1-D @ 1-D) does not call BLAS: it sums in double over fixed chunks combined in order, so
 * the result does not depend on the thread count (OpenBLAS's threaded dot can). */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/ops.h"

#define DOT_CHUNK 4096

/* ---- dot kernel: 1-D a, b of equal length, any strides -> new 0-d tensor ---- */
typedef struct dot_job {
    const char *a, *b;
    int64_t sa, sb, n;
    ls_dtype dtype;
    double *part;
} dot_job;

static void dot_chunks(void *vjob, int64_t begin, int64_t end)
{
    const dot_job *j = vjob;
    for (int64_t c = begin; c < end; c++) {
        int64_t i0 = c * DOT_CHUNK, i1 = i0 + DOT_CHUNK < j->n ? i0 + DOT_CHUNK : j->n;
        double s0 = 0, s1 = 0;
        int64_t i = i0;
        if (j->dtype == LS_F32) {
            const float *a = (const float *)j->a, *b = (const float *)j->b;
            for (; i + 2 <= i1; i += 2) {
                s0 += (double)a[i * j->sa] * b[i * j->sb];
                s1 += (double)a[(i + 1) * j->sa] * b[(i + 1) * j->sb];
            }
            if (i < i1) s0 += (double)a[i * j->sa] * b[i * j->sb];
        } else {
            const double *a = (const double *)j->a, *b = (const double *)j->b;
            for (; i + 2 <= i1; i += 2) {
                s0 += a[i * j->sa] * b[i * j->sb];
                s1 += a[(i + 1) * j->sa] * b[(i + 1) * j->sb];
            }
            if (i < i1) s0 += a[i * j->sa] * b[i * j->sb];
        }
        j->part[c] = s0 + s1;
    }
}

static ls_tensor *dot_kernel(ls_tensor *a, ls_tensor *b)
{
    int64_t n = a->shape[0], nch = (n + DOT_CHUNK - 1) / DOT_CHUNK;
    double *part = ls_malloc(sizeof(double) * (size_t)(nch ? nch : 1), "dot");
    if (!part) return NULL;
    dot_job j = {ls_tensor_data(a), ls_tensor_data(b), a->stride[0], b->stride[0], n, a->dtype, part};
    if (nch > 0) ls_parallel_for(nch, 8, dot_chunks, &j);
    double s = 0;
    for (int64_t c = 0; c < nch; c++) s += part[c];
    ls_free(part);
    return ls_tensor_scalar(a->dtype, s);
}

/* ---- gemm plumbing ---- */
typedef struct mat_layout {
    CBLAS_TRANSPOSE tr;
    int64_t ld;
} mat_layout;

/* Whether the last two dims of t (r x c) can go to row-major BLAS without a copy. */
static bool mat_fits(const ls_tensor *t, mat_layout *L)
{
    int nd = t->ndim;
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1], sr = t->stride[nd - 2], sc = t->stride[nd - 1];
    int64_t cmin = c > 1 ? c : 1, rmin = r > 1 ? r : 1;
    if (c <= 1 || sc == 1) {   /* rows of a row-major matrix, leading dimension = row stride */
        int64_t ld = r <= 1 ? cmin : sr;
        if (ld >= cmin && ld <= INT_MAX) {
            *L = (mat_layout){CblasNoTrans, ld};
            return true;
        }
    }
    if (r <= 1 || sr == 1) {   /* the transpose of a row-major matrix: leading dimension = col stride */
        int64_t ld = c <= 1 ? rmin : sc;
        if (ld >= rmin && ld <= INT_MAX) {
            *L = (mat_layout){CblasTrans, ld};
            return true;
        }
    }
    return false;
}

static ls_status gemm(ls_dtype dt, mat_layout la, mat_layout lb, int64_t m, int64_t n, int64_t k,
                      const char *A, const char *B, char *C, const void *bias)
{
    return ls_gemm(dt, la.tr == CblasTrans, lb.tr == CblasTrans, m, n, k, A, la.ld, B, lb.ld, C, n,
                   bias, "matmul");
}

/* Make t's matrices BLAS-ready: t itself (retained) when its strides fit, else a contiguous copy. */
static ls_tensor *mat_ready(ls_tensor *t, mat_layout *L)
{
    if (mat_fits(t, L)) return ls_tensor_retain(t);
    ls_tensor *c = ls_tensor_clone(t);
    if (c && !mat_fits(c, L)) {   /* cannot happen for a contiguous tensor within int range */
        ls_tensor_release(c);
        ls_error_set(LS_ERR_ARG, "matmul: matrix %s is too large for BLAS", ls_tensor_shape_str(t));
        return NULL;
    }
    return c;
}

/* ---- matmul ---- */
static ls_status matmul_check(ls_tensor *a, ls_tensor *b)
{
    ls_tensor *ab[2] = {a, b};
    if (ls_check_float_same("matmul", 2, ab)) return LS_ERR_ARG;
    if (a->ndim == 0 || b->ndim == 0)
        return ls_error_set(LS_ERR_ARG, "matmul: both arguments need at least 1 dimension, got %s @ %s",
                            ls_tensor_shape_str(a), ls_tensor_shape_str(b));
    int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
    if (ka != kb)
        return ls_error_set(LS_ERR_ARG, "matmul: inner dimensions differ: %s @ %s",
                            ls_tensor_shape_str(a), ls_tensor_shape_str(b));
    return LS_OK;
}

/* a2 [..., m, k] @ b2 [..., k, n] (both at least 2-D, inner dims equal) (+ bias: NULL or n
 * contiguous elements added to each row) into out, which is contiguous with numel =
 * prod(batch) * m * n. */
static ls_status matmul_into(ls_tensor *a2, ls_tensor *b2, ls_tensor *out, int nbat,
                             const int64_t *bshape, const void *bias)
{
    int64_t m = a2->shape[a2->ndim - 2], k = a2->shape[a2->ndim - 1], n = b2->shape[b2->ndim - 1];
    int64_t nb = 1;
    for (int i = 0; i < nbat; i++) nb *= bshape[i];
    size_t es = ls_dtype_size(out->dtype);
    if (m == 0 || n == 0 || nb == 0) return LS_OK;
    if (k == 0) {   /* an empty sum: zeros (+ the bias, added as to any product) */
        ls_status rc = ls_tensor_fill_(out, 0.0);
        if (!rc && bias) gemm_add_bias(es, ls_tensor_data(out), nb * m, n, n, bias);
        return rc;
    }
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return ls_error_set(LS_ERR_ARG, "matmul: %s @ %s is too large for BLAS",
                            ls_tensor_shape_str(a2), ls_tensor_shape_str(b2));
    mat_layout la, lb;
    if (b2->ndim == 2 && nbat > 0) {
        /* b has no batch dims: fold a's batch dims into its rows, one gemm */
        int64_t rows = nb * m;
        if (rows > INT_MAX)
            return ls_error_set(LS_ERR_ARG, "matmul: %s @ %s is too large for BLAS",
                                ls_tensor_shape_str(a2), ls_tensor_shape_str(b2));
        ls_tensor *af = ls_view_reshape(a2, 2, (int64_t[]){rows, k});
        ls_tensor *ar = af ? mat_ready(af, &la) : NULL;
        ls_tensor *br = ar ? mat_ready(b2, &lb) : NULL;
        ls_status rc = br ? gemm(out->dtype, la, lb, rows, n, k, ls_tensor_data(ar),
                                 ls_tensor_data(br), ls_tensor_data(out), bias)
                          : ls_error_code();
        ls_tensor_release(af);
        ls_tensor_release(ar);
        ls_tensor_release(br);
        return rc;
    }
    ls_tensor *ar = mat_ready(a2, &la);
    ls_tensor *br = ar ? mat_ready(b2, &lb) : NULL;
    if (!br) {
        ls_tensor_release(ar);
        return ls_error_code();
    }
    /* batch strides of each operand aligned to bshape (0 where broadcast) */
    int64_t sa[LS_MAX_DIMS], sb[LS_MAX_DIMS];
    int na = ar->ndim - 2, nbb = br->ndim - 2;
    for (int i = 0; i < nbat; i++) {
        int ia = i - (nbat - na), ib = i - (nbat - nbb);
        sa[i] = (ia < 0 || ar->shape[ia] == 1) ? 0 : ar->stride[ia];
        sb[i] = (ib < 0 || br->shape[ib] == 1) ? 0 : br->stride[ib];
    }
    const char *A = ls_tensor_data(ar), *B = ls_tensor_data(br);
    char *C = ls_tensor_data(out);
    ls_status rc = LS_OK;
    for (int64_t bi = 0; bi < nb && !rc; bi++) {
        int64_t rem = bi, oa = 0, ob = 0;
        for (int i = nbat - 1; i >= 0; i--) {
            int64_t ix = rem % bshape[i];
            rem /= bshape[i];
            oa += ix * sa[i];
            ob += ix * sb[i];
        }
        rc = gemm(out->dtype, la, lb, m, n, k, A + oa * (int64_t)es, B + ob * (int64_t)es,
                  C + bi * m * n * (int64_t)es, bias);
    }
    ls_tensor_release(ar);
    ls_tensor_release(br);
    return rc;
}

static ls_tensor *matmul_fwd(ls_tensor *const *in, const ls_attrs *attrs)
{
    (void)attrs;
    ls_tensor *a = in[0], *b = in[1];
    if (matmul_check(a, b)) return NULL;
    if (a->ndim == 1 && b->ndim == 1) return dot_kernel(a, b);
    ls_tensor *a2 = a->ndim == 1 ? ls_view_unsqueeze(a, 0) : ls_tensor_retain(a);
    ls_tensor *b2 = b->ndim == 1 ? ls_view_unsqueeze(b, 1) : ls_tensor_retain(b);
    ls_tensor *out = NULL;
    if (!a2 || !b2) goto done;
    int na = a2->ndim - 2, nb = b2->ndim - 2, nbat = na > nb ? na : nb;
    int64_t bshape[LS_MAX_DIMS], oshape[LS_MAX_DIMS];
    for (int i = 0; i < nbat; i++) {
        int ia = i - (nbat - na), ib = i - (nbat - nb);
        int64_t x = ia >= 0 ? a2->shape[ia] : 1, y = ib >= 0 ? b2->shape[ib] : 1;
        if (x != y && x != 1 && y != 1) {
            ls_error_set(LS_ERR_ARG, "matmul: batch dimensions cannot be broadcast: %s @ %s",
                         ls_tensor_shape_str(a), ls_tensor_shape_str(b));
            goto done;
        }
        bshape[i] = x == 1 ? y : x;
    }
    int no = nbat;
    memcpy(oshape, bshape, sizeof(int64_t) * (size_t)nbat);
    if (a->ndim > 1) oshape[no++] = a2->shape[a2->ndim - 2];
    if (b->ndim > 1) oshape[no++] = b2->shape[b2->ndim - 1];
    out = ls_tensor_new(a->dtype, no, oshape);
    if (out && matmul_into(a2, b2, out, nbat, bshape, NULL)) {
        ls_tensor_release(out);
        out = NULL;
    }
done:
    ls_tensor_release(a2);
    ls_tensor_release(b2);
    return out;
}

/* t is 2-D, the transposed view of a row-major matrix */
static bool mm_row_major_t(const ls_tensor *t)
{
    return t->ndim == 2 && t->stride[0] == 1 && t->stride[1] == t->shape[0] && t->shape[0] > 1;
}

/* ga = sum_to(g @ b^T, a's shape), gb = sum_to(a^T @ g, b's shape), with 1-D operands promoted (and
 * g given the removed dim back) first. All recorded, so differentiable again. */
static ls_status matmul_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *a = c->in[0], *b = c->in[1];
    ls_tmp tmp = {0};
    if (a->ndim == 1 && b->ndim == 1) {   /* g is 0-d */
        if (c->needs[0]) gin[0] = ls_mul(g, b);
        if (c->needs[1]) gin[1] = ls_mul(g, a);
    } else {
        ls_tensor *A = a->ndim == 1 ? ls_tmp_keep(&tmp, ls_unsqueeze(a, 0)) : a;
        ls_tensor *B = b->ndim == 1 ? ls_tmp_keep(&tmp, ls_unsqueeze(b, 1)) : b;
        ls_tensor *G = g;
        if (a->ndim == 1) G = ls_tmp_keep(&tmp, ls_unsqueeze(G, G->ndim - 1));
        if (b->ndim == 1 && G) G = ls_tmp_keep(&tmp, ls_unsqueeze(G, G->ndim));
        /* An operand that is the transposed view of a row-major matrix (x @ W^T in a linear
         * layer; G^T @ x, the weight gradient below, met again in a double backward) gets its
         * gradient as a transposed product: gb = (G^T @ A)^T, ga = (B @ G^T)^T. The gradient
         * reaching the untransposed matrix then comes out row-major like it, rather than as a
         * strided view that every later use would copy, and ga's product packs G (small) rather
         * than x^T (a whole batch). The same products in the same order, so the same numbers. */
        bool ta = mm_row_major_t(a) && b->ndim == 2, tb = mm_row_major_t(b) && a->ndim == 2;
        ls_tensor *gt = ta || tb ? ls_tmp_keep(&tmp, ls_transpose(G, -1, -2)) : NULL;
        if (c->needs[0] && ta) {
            gin[0] = ls_transpose(ls_tmp_keep(&tmp, ls_matmul(B, gt)), -1, -2);
        } else if (c->needs[0]) {
            ls_tensor *bt = ls_tmp_keep(&tmp, ls_transpose(B, -1, -2));
            ls_tensor *ga = ls_tmp_keep(&tmp, ls_matmul(G, bt));
            gin[0] = ls_sum_to(ga, a->ndim, a->shape);
        }
        if (c->needs[1] && tb) {
            gin[1] = ls_transpose(ls_tmp_keep(&tmp, ls_matmul(gt, A)), -1, -2);
        } else if (c->needs[1]) {
            ls_tensor *at = ls_tmp_keep(&tmp, ls_transpose(A, -1, -2));
            ls_tensor *gb = ls_tmp_keep(&tmp, ls_matmul(at, G));
            if (b->ndim == 1 && gb) gb = ls_tmp_keep(&tmp, ls_squeeze(gb, gb->ndim - 1));
            gin[1] = ls_sum_to(gb, b->ndim, b->shape);
        }
    }
    ls_tmp_free(&tmp);
    for (int k = 0; k < 2; k++)
        if (c->needs[k] && !gin[k]) return ls_error_code() ? ls_error_code() : LS_ERR_ARG;
    return LS_OK;
}
static int matmul_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 2}, .shape = {{3, 4}, {4, 2}}};
    s[1] = (ls_op_sample){.ndim = {1, 1}, .shape = {{4}, {4}}};
    s[2] = (ls_op_sample){.ndim = {1, 3}, .shape = {{4}, {2, 4, 3}}};
    s[3] = (ls_op_sample){.ndim = {3, 1}, .shape = {{2, 3, 4}, {4}}};
    s[4] = (ls_op_sample){.ndim = {4, 3}, .shape = {{2, 1, 3, 4}, {3, 4, 2}}};
    s[5] = (ls_op_sample){.ndim = {2, 3}, .shape = {{3, 4}, {2, 4, 5}}};
    return 6;
}
const ls_op_def ls_op_matmul = {"matmul", 2, "T T", matmul_fwd, matmul_bwd, matmul_samples};

ls_tensor *ls_matmul(ls_tensor *a, ls_tensor *b)
{
    ls_tensor *in[2] = {a, b};
    return ls_op_apply(LS_OP_MATMUL, in, NULL);
}

/* ---- linear: x [..., in] @ w^T + b -> [..., out] ---- */
static ls_tensor *linear_fwd(ls_tensor *const *in, const ls_attrs *attrs)
{
    (void)attrs;
    ls_tensor *x = in[0], *w = in[1], *b = in[2];
    if (ls_check_float_same("linear", 3, in)) return NULL;
    if (w->ndim != 2 || b->ndim != 1 || x->ndim < 1 || b->shape[0] != w->shape[0] ||
        x->shape[x->ndim - 1] != w->shape[1]) {
        ls_error_set(LS_ERR_ARG,
                     "linear: expected input [..., in], weight [out, in] and bias [out], got %s, %s "
                     "and %s", ls_tensor_shape_str(x), ls_tensor_shape_str(w),
                     ls_tensor_shape_str(b));
        return NULL;
    }
    int64_t oshape[LS_MAX_DIMS];
    memcpy(oshape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    oshape[x->ndim - 1] = w->shape[0];
    ls_tensor *x2 = x->ndim == 1 ? ls_view_unsqueeze(x, 0) : ls_tensor_retain(x);
    ls_tensor *wt = x2 ? ls_view_transpose(w, 0, 1) : NULL;
    ls_tensor *bc = wt ? ls_tensor_contiguous(b) : NULL;
    ls_tensor *out = bc ? ls_tensor_new(x->dtype, x->ndim, oshape) : NULL;
    if (out && matmul_into(x2, wt, out, x2->ndim - 2, x2->shape, ls_tensor_data(bc))) {
        ls_tensor_release(out);
        out = NULL;
    }
    ls_tensor_release(x2);
    ls_tensor_release(wt);
    ls_tensor_release(bc);
    return out;
}

/* The rules of the graph linear stands for, matmul(x, transpose(w)) + b: matmul's for x and w^T
 * (the latter transposed back), sum_to for b. */
static ls_status linear_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tensor *w = c->in[1], *b = c->in[2];
    ls_tensor *wt = ls_transpose(w, 0, 1);
    if (!wt) return ls_error_code();
    ls_tensor *mm_in[2] = {c->in[0], wt}, *mm_g[2] = {NULL, NULL};
    bool mm_needs[2] = {c->needs[0], c->needs[1]};
    ls_backward_ctx mc = {.nin = 2, .in = mm_in, .attrs = c->attrs, .needs = mm_needs};
    ls_status rc = c->needs[0] || c->needs[1] ? matmul_bwd(&mc, g, mm_g) : LS_OK;
    ls_tensor_release(wt);
    gin[0] = mm_g[0];
    if (!rc && c->needs[1]) gin[1] = ls_transpose(mm_g[1], 0, 1);
    ls_tensor_release(mm_g[1]);
    if (!rc && c->needs[2]) gin[2] = ls_sum_to(g, 1, b->shape);
    for (int k = 0; k < 3 && !rc; k++)
        if (c->needs[k] && !gin[k]) rc = ls_error_code() ? ls_error_code() : LS_ERR_ARG;
    return rc;
}
static int linear_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 2, 1}, .shape = {{3, 4}, {2, 4}, {2}}};
    s[1] = (ls_op_sample){.ndim = {1, 2, 1}, .shape = {{4}, {3, 4}, {3}}};
    s[2] = (ls_op_sample){.ndim = {3, 2, 1}, .shape = {{2, 3, 4}, {5, 4}, {5}}};
    s[3] = (ls_op_sample){.ndim = {2, 2, 1}, .shape = {{13, 9}, {3, 9}, {3}}};
    return 4;
}
const ls_op_def ls_op_linear = {"linear", 3, "T T T", linear_fwd, linear_bwd, linear_samples};

ls_tensor *ls_linear(ls_tensor *x, ls_tensor *w, ls_tensor *b)
{
    ls_tensor *in[3] = {x, w, b};
    return ls_op_apply(LS_OP_LINEAR, in, NULL);
}

/* ---- dot: 1-D . 1-D -> 0-d ---- */
static ls_tensor *dot_fwd(ls_tensor *const *in, const ls_attrs *attrs)
{
    (void)attrs;
    if (ls_check_float_same("dot", 2, in)) return NULL;
    if (in[0]->ndim != 1 || in[1]->ndim != 1) {
        ls_error_set(LS_ERR_ARG, "dot: expected two 1-D tensors, got %s and %s",
                     ls_tensor_shape_str(in[0]), ls_tensor_shape_str(in[1]));
        return NULL;
    }
    if (in[0]->shape[0] != in[1]->shape[0]) {
        ls_error_set(LS_ERR_ARG, "dot: sizes differ: %s and %s", ls_tensor_shape_str(in[0]),
                     ls_tensor_shape_str(in[1]));
        return NULL;
    }
    return dot_kernel(in[0], in[1]);
}
static ls_status dot_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    if (c->needs[0] && !(gin[0] = ls_mul(g, c->in[1]))) return ls_error_code();
    if (c->needs[1] && !(gin[1] = ls_mul(g, c->in[0]))) return ls_error_code();
    return LS_OK;
}
static int dot_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {1, 1}, .shape = {{5}, {5}}};
    return 1;
}
const ls_op_def ls_op_dot = {"dot", 2, "T T", dot_fwd, dot_bwd, dot_samples};

ls_tensor *ls_dot(ls_tensor *a, ls_tensor *b)
{
    ls_tensor *in[2] = {a, b};
    return ls_op_apply(LS_OP_DOT, in, NULL);
}

/* ---- outer: 1-D (n) x 1-D (m) -> [n x m], out[i][j] = a[i] b[j] ---- */
static void outer_run(void *ctx, int64_t n, char **p, const int64_t *s)
{
    if (*(const ls_dtype *)ctx == LS_F32) {
        float *o = (float *)p[0];
        const float *a = (const float *)p[1], *b = (const float *)p[2];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]] * b[i * s[2]];
    } else {
        double *o = (double *)p[0];
        const double *a = (const double *)p[1], *b = (const double *)p[2];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = a[i * s[1]] * b[i * s[2]];
    }
}
static ls_tensor *outer_fwd(ls_tensor *const *in, const ls_attrs *attrs)
{
    (void)attrs;
    if (ls_check_float_same("outer", 2, in)) return NULL;
    if (in[0]->ndim != 1 || in[1]->ndim != 1) {
        ls_error_set(LS_ERR_ARG, "outer: expected two 1-D tensors, got %s and %s",
                     ls_tensor_shape_str(in[0]), ls_tensor_shape_str(in[1]));
        return NULL;
    }
    int64_t shape[2] = {in[0]->shape[0], in[1]->shape[0]};
    ls_tensor *out = ls_tensor_new(in[0]->dtype, 2, shape);
    ls_tensor *av = ls_view_unsqueeze(in[0], 1), *bv = ls_view_unsqueeze(in[1], 0);
    if (out && av && bv) {
        const ls_tensor *ops[2] = {av, bv};
        ls_iter it;
        ls_iter_init(&it, out, 2, ops);
        ls_dtype dt = out->dtype;
        ls_iter_run(&it, outer_run, &dt);
    } else {
        ls_tensor_release(out);
        out = NULL;
    }
    ls_tensor_release(av);
    ls_tensor_release(bv);
    return out;
}
/* ga = g @ b, gb = a @ g (= g^T a) */
static ls_status outer_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    if (c->needs[0] && !(gin[0] = ls_matmul(g, c->in[1]))) return ls_error_code();
    if (c->needs[1] && !(gin[1] = ls_matmul(c->in[0], g))) return ls_error_code();
    return LS_OK;
}
static int outer_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {1, 1}, .shape = {{3}, {4}}};
    return 1;
}
const ls_op_def ls_op_outer = {"outer", 2, "T T", outer_fwd, outer_bwd, outer_samples};

ls_tensor *ls_outer(ls_tensor *a, ls_tensor *b)
{
    ls_tensor *in[2] = {a, b};
    return ls_op_apply(LS_OP_OUTER, in, NULL);
}
