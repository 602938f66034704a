/* Linear systems through LAPACK: linalg.solve and linalg.lstsq (ls.linalg.solve / lstsq in Lua).
 *
 * solve(A, B): A [n x n], B [n] or [n x k] -> X with A X = B (LU with partial pivoting, ?gesv). A
 * singular A (an exact zero pivot) is an error naming the pivot.
 * lstsq(A, B): A [m x n], B [m] or [m x k] -> X [n] or [n x k] minimising ||A X - B|| (the
 * minimum-norm solution when A is rank deficient: SVD, ?gelsd, singular values below
 * eps * max(m, n) * s_max count as zero, as NumPy's and PyTorch's defaults).
 * Both take f32 or f64 (one dtype) and work on contiguous row-major copies.
 *
 * Backward rules, with G the gradient of X, written with recorded ops (solve, lstsq, matmul), so
 * they differentiate again:
 *   solve:  gB = solve(A^T, G),  gA = -gB X^T                       (X = solve(A, B))
 *   lstsq, A of full column rank (m >= n), M = A^T A, Y = solve(M, G), R = B - A X:
 *           gA = R Y^T - A Y X^T,  gB = A Y
 *   lstsq, A of full row rank (m < n), N = A A^T, Z = solve(N, B) (X = A^T Z), W = solve(N, A G):
 *           gA = Z G^T - W X^T - Z W^T A,  gB = W
 * The lstsq gradients are those of the full-rank solution; at a rank-deficient A the
 * minimum-norm solution is not differentiable and the solve inside the rule reports M or N
 * singular. A vector B is handled as one column. */
#include <float.h>
#include <lapacke.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/ops.h"

/* Check A's and B's shapes for a system with A's rows; `sq`: A must be square. */
static ls_status sys_check(const char *who, ls_tensor *const *in, bool sq)
{
    if (ls_check_float_same(who, 2, in)) return LS_ERR_ARG;
    ls_tensor *A = in[0], *B = in[1];
    if (A->ndim != 2 || (sq && A->shape[0] != A->shape[1]))
        return ls_error_set(LS_ERR_ARG, "%s: A must be a %s matrix, got %s", who,
                            sq ? "square" : "2-D", ls_tensor_shape_str(A));
    if ((B->ndim != 1 && B->ndim != 2) || B->shape[0] != A->shape[0]) {
        char sa[64];
        snprintf(sa, sizeof sa, "%s", ls_tensor_shape_str(A));
        return ls_error_set(LS_ERR_ARG, "%s: B must be [%lld] or [%lldxk] for A %s, got %s", who,
                            (long long)A->shape[0], (long long)A->shape[0], sa,
                            ls_tensor_shape_str(B));
    }
    if (A->shape[0] > INT_MAX / 2 || A->shape[1] > INT_MAX / 2 ||
        (B->ndim == 2 && B->shape[1] > INT_MAX / 2))
        return ls_error_set(LS_ERR_ARG, "%s: %s is too large for LAPACK", who,
                            ls_tensor_shape_str(A));
    return LS_OK;
}

static ls_tensor *solve_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    const char *who = "linalg.solve";
    if (sys_check(who, in, true)) return NULL;
    ls_tensor *A = ls_tensor_clone(in[0]), *X = ls_tensor_clone(in[1]);
    lapack_int *piv = ls_malloc(sizeof *piv * (size_t)(in[0]->shape[0] + 1), who);
    ls_tensor *out = NULL;
    if (A && X && piv) {
        lapack_int n = (lapack_int)in[0]->shape[0];
        lapack_int k = in[1]->ndim == 2 ? (lapack_int)in[1]->shape[1] : 1;
        lapack_int info = 0;
        if (n > 0 && k > 0)
            info = A->dtype == LS_F64
                       ? LAPACKE_dgesv(LAPACK_ROW_MAJOR, n, k, ls_tensor_data(A), n, piv,
                                       ls_tensor_data(X), k)
                       : LAPACKE_sgesv(LAPACK_ROW_MAJOR, n, k, ls_tensor_data(A), n, piv,
                                       ls_tensor_data(X), k);
        if (info > 0)
            ls_error_set(LS_ERR_ARG, "linalg.solve: A %s is singular (pivot U[%d,%d] is zero)",
                         ls_tensor_shape_str(in[0]), (int)info, (int)info);
        else if (info < 0)
            ls_error_set(LS_ERR_ARG, "linalg.solve: LAPACK ?gesv rejected argument %d", (int)-info);
        else
            out = ls_tensor_retain(X);
    }
    ls_tensor_release(A);
    ls_tensor_release(X);
    ls_free(piv);
    return out;
}

/* a @ b^T for 2-D a, b */
static ls_tensor *mm_t(ls_tmp *t, ls_tensor *a, ls_tensor *b)
{
    return ls_tmp_keep(t, ls_matmul(a, ls_tmp_keep(t, ls_transpose(b, 0, 1))));
}
static ls_tensor *mm(ls_tmp *t, ls_tensor *a, ls_tensor *b) { return ls_tmp_keep(t, ls_matmul(a, b)); }
static ls_tensor *tr(ls_tmp *t, ls_tensor *a) { return ls_tmp_keep(t, ls_transpose(a, 0, 1)); }
/* A vector as one column; a matrix as it is. */
static ls_tensor *col(ls_tmp *t, ls_tensor *v)
{
    return v->ndim == 1 ? ls_tmp_keep(t, ls_unsqueeze(v, 1)) : v;
}
/* Back to B's layout: a column -> a vector when B was one. New reference. */
static ls_tensor *like_b(ls_tensor *x, const ls_tensor *b)
{
    if (!x) return NULL;
    return b->ndim == 1 ? ls_squeeze(x, 1) : ls_tensor_retain(x);
}

static ls_status bwd_done(const ls_backward_ctx *c, ls_tensor **gin, ls_tmp *t)
{
    ls_tmp_free(t);
    for (int k = 0; k < 2; k++)
        if (c->needs[k] && !gin[k]) return ls_error_code() ? ls_error_code() : LS_ERR_ARG;
    return LS_OK;
}

static ls_status solve_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *A = c->in[0], *B = c->in[1];
    ls_tensor *gB = ls_tmp_keep(&t, ls_linalg_solve(tr(&t, A), g));
    if (c->needs[1]) gin[1] = ls_tensor_retain(gB);
    if (c->needs[0]) {
        ls_tensor *X = col(&t, ls_tmp_keep(&t, ls_linalg_solve(A, B)));
        gin[0] = ls_neg(mm_t(&t, col(&t, gB), X));
    }
    return bwd_done(c, gin, &t);
}

static int solve_samples(ls_op_sample *s)
{
    s[0] = (ls_op_sample){.ndim = {2, 1}, .shape = {{3, 3}, {3}},
                          .kind = {LS_SAMPLE_DOMINANT, LS_SAMPLE_REAL}};
    s[1] = (ls_op_sample){.ndim = {2, 2}, .shape = {{3, 3}, {3, 2}},
                          .kind = {LS_SAMPLE_DOMINANT, LS_SAMPLE_REAL}};
    return 2;
}

const ls_op_def ls_op_linalg_solve = {.name = "linalg.solve", .nin = 2, .lua_sig = "T T",
    .forward = solve_fwd, .backward = solve_bwd, .samples = solve_samples};

ls_tensor *ls_linalg_solve(ls_tensor *A, ls_tensor *B)
{
    ls_tensor *in[2] = {A, B};
    return ls_op_apply(LS_OP_LINALG_SOLVE, in, NULL);
}

/* ---- lstsq ---- */
static ls_tensor *lstsq_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    (void)a;
    const char *who = "linalg.lstsq";
    if (sys_check(who, in, false)) return NULL;
    ls_tensor *A0 = in[0], *B0 = in[1];
    int64_t m = A0->shape[0], n = A0->shape[1], k = B0->ndim == 2 ? B0->shape[1] : 1;
    int64_t rows = m > n ? m : n;
    ls_tensor *A = ls_tensor_clone(A0);
    int64_t bshape[2] = {rows, k};
    ls_tensor *W = ls_tensor_new(A0->dtype, 2, bshape);   /* B in the first m rows, X on return */
    double *sv = ls_malloc(sizeof *sv * (size_t)((m < n ? m : n) + 1), who);
    ls_tensor *out = NULL;
    if (!A || !W || !sv || ls_tensor_fill_(W, 0.0)) goto done;
    {
        ls_tensor *top = ls_view_narrow(W, 0, 0, m);
        ls_tensor *b2 = B0->ndim == 1 ? ls_view_reshape(B0, 2, (int64_t[]){m, 1}) : ls_tensor_retain(B0);
        ls_status rc = top && b2 ? ls_tensor_copy_(top, b2) : ls_error_code();
        ls_tensor_release(top);
        ls_tensor_release(b2);
        if (rc) goto done;
    }
    lapack_int info = 0, rank = 0;
    if (m > 0 && n > 0 && k > 0) {
        if (A0->dtype == LS_F64) {
            info = LAPACKE_dgelsd(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)n, (lapack_int)k,
                                  ls_tensor_data(A), (lapack_int)n, ls_tensor_data(W),
                                  (lapack_int)k, sv, DBL_EPSILON * (double)rows, &rank);
        } else {
            float *svf = (float *)sv;   /* min(m, n) floats fit in the doubles' room */
            info = LAPACKE_sgelsd(LAPACK_ROW_MAJOR, (lapack_int)m, (lapack_int)n, (lapack_int)k,
                                  ls_tensor_data(A), (lapack_int)n, ls_tensor_data(W),
                                  (lapack_int)k, svf, FLT_EPSILON * (float)rows, &rank);
        }
    }
    if (info != 0) {
        ls_error_set(LS_ERR_ARG, "linalg.lstsq: LAPACK ?gelsd failed (info %d) on A %s", (int)info,
                     ls_tensor_shape_str(A0));
        goto done;
    }
    {
        ls_tensor *x = ls_view_narrow(W, 0, 0, n);
        ls_tensor *xs = x && B0->ndim == 1 ? ls_view_reshape(x, 1, &n) : ls_tensor_retain(x);
        out = xs ? ls_tensor_clone(xs) : NULL;
        ls_tensor_release(x);
        ls_tensor_release(xs);
    }
done:
    ls_tensor_release(A);
    ls_tensor_release(W);
    ls_free(sv);
    return out;
}

static ls_status lstsq_bwd(const ls_backward_ctx *c, ls_tensor *g, ls_tensor **gin)
{
    ls_tmp t = {0};
    ls_tensor *A = c->in[0], *B = c->in[1], *G = col(&t, g), *Bc = col(&t, B);
    ls_tensor *gA = NULL, *gB = NULL;
    if (A->shape[0] >= A->shape[1]) {
        ls_tensor *X = col(&t, ls_tmp_keep(&t, ls_linalg_lstsq(A, B)));
        ls_tensor *Y = ls_tmp_keep(&t, ls_linalg_solve(mm(&t, tr(&t, A), A), G));
        ls_tensor *AY = mm(&t, A, Y);
        if (c->needs[1]) gB = ls_tensor_retain(AY);
        if (c->needs[0]) {
            ls_tensor *R = ls_tmp_keep(&t, ls_sub(Bc, mm(&t, A, X)));
            gA = ls_sub(mm_t(&t, R, Y), mm_t(&t, AY, X));
        }
    } else {
        ls_tensor *N = mm_t(&t, A, A);
        ls_tensor *W = ls_tmp_keep(&t, ls_linalg_solve(N, mm(&t, A, G)));
        if (c->needs[1]) gB = ls_tensor_retain(W);
        if (c->needs[0]) {
            ls_tensor *Z = ls_tmp_keep(&t, ls_linalg_solve(N, Bc));
            ls_tensor *X = mm(&t, tr(&t, A), Z);
            ls_tensor *d = ls_tmp_keep(&t, ls_sub(mm_t(&t, Z, G), mm_t(&t, W, X)));
            gA = ls_sub(d, mm(&t, mm_t(&t, Z, W), A));
        }
    }
    if (c->needs[0]) gin[0] = gA;
    if (c->needs[1]) {
        gin[1] = like_b(gB, B);
        ls_tensor_release(gB);
    }
    return bwd_done(c, gin, &t);
}

static int lstsq_samples(ls_op_sample *s)
{
    const ls_sample_kind D = LS_SAMPLE_DOMINANT, R = LS_SAMPLE_REAL;
    s[0] = (ls_op_sample){.ndim = {2, 2}, .shape = {{4, 3}, {4, 2}}, .kind = {D, R}};
    s[1] = (ls_op_sample){.ndim = {2, 1}, .shape = {{5, 2}, {5}}, .kind = {D, R}};
    s[2] = (ls_op_sample){.ndim = {2, 2}, .shape = {{3, 3}, {3, 1}}, .kind = {D, R}};
    s[3] = (ls_op_sample){.ndim = {2, 2}, .shape = {{2, 4}, {2, 3}}, .kind = {D, R}};
    s[4] = (ls_op_sample){.ndim = {2, 1}, .shape = {{2, 3}, {2}}, .kind = {D, R}};
    return 5;
}

const ls_op_def ls_op_linalg_lstsq = {.name = "linalg.lstsq", .nin = 2, .lua_sig = "T T",
    .forward = lstsq_fwd, .backward = lstsq_bwd, .samples = lstsq_samples};

ls_tensor *ls_linalg_lstsq(ls_tensor *A, ls_tensor *B)
{
    ls_tensor *in[2] = {A, B};
    return ls_op_apply(LS_OP_LINALG_LSTSQ, in, NULL);
}
