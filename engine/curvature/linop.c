/* Operators and eigen-estimators: the matvec adapter, dense operators, the Gram-Schmidt step,
 * PyHessian-compatible power iteration (Lanczos itself: lanczos.c). See linop.h for the
 * contract. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "curvature/curv_internal.h"

/* ==== operators ==================================================================================== */

ls_status ls_linop_check(const ls_linop *op, const char *who)
{
    if (!op || !op->matvec) return ls_error_set(LS_ERR_ARG, "%s: operator has no matvec", who);
    if (op->n < 1 || op->n > LS_MAX_NUMEL)
        return ls_error_set(LS_ERR_ARG, "%s: operator size must be in 1..2^40, got %lld", who,
                            (long long)op->n);
    if (!ls_dtype_is_float(op->dtype))
        return ls_error_set(LS_ERR_ARG, "%s: operator dtype must be f32 or f64, got %s", who,
                            ls_dtype_name(op->dtype));
    return LS_OK;
}

ls_status ls_linop_dense_matvec(void *ctx, const ls_tensor *v, ls_tensor *out)
{
    const ls_tensor *A = ctx;
    int64_t n = A->shape[0];
    if (v->dtype != A->dtype || out->dtype != A->dtype)
        return ls_error_set(LS_ERR_ARG, "dense matvec: dtype mismatch (matrix %s, vector %s)",
                            ls_dtype_name(A->dtype), ls_dtype_name(v->dtype));
    ls_tensor *Ac = ls_tensor_contiguous(A);
    if (!Ac) return ls_error_code();
    if (A->dtype == LS_F64)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)n, 1.0, ls_tensor_data(Ac), (int)n,
                    ls_tensor_data(v), 1, 0.0, ls_tensor_data(out), 1);
    else
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)n, 1.0f, ls_tensor_data(Ac), (int)n,
                    ls_tensor_data(v), 1, 0.0f, ls_tensor_data(out), 1);
    ls_tensor_release(Ac);
    return LS_OK;
}

ls_status ls_linop_dense(ls_linop *op, const ls_tensor *A)
{
    if (!A || A->ndim != 2 || A->shape[0] != A->shape[1] || A->shape[0] < 1)
        return ls_error_set(LS_ERR_ARG, "dense operator: expected a square non-empty matrix, got %s",
                            A ? ls_tensor_shape_str(A) : "nil");
    if (!ls_dtype_is_float(A->dtype))
        return ls_error_set(LS_ERR_ARG, "dense operator: matrix dtype must be f32 or f64, got %s",
                            ls_dtype_name(A->dtype));
    op->n = A->shape[0];
    op->dtype = A->dtype;
    op->matvec = ls_linop_dense_matvec;
    op->ctx = (void *)A;
    op->overwrites = false;   /* BLAS's beta = 0 need not clear NaN garbage in every version */
    return LS_OK;
}

/* ==== the f64 matvec adapter ======================================================================= */

ls_status curv_mv_init(curv_mv *mv, const ls_linop *op, const char *who)
{
    memset(mv, 0, sizeof *mv);
    mv->op = op;
    mv->who = who;
    int64_t shape[1] = {op->n};
    mv->vin = ls_tensor_new(op->dtype, 1, shape);
    mv->vout = ls_tensor_new(op->dtype, 1, shape);
    if (!mv->vin || !mv->vout) {
        curv_mv_free(mv);
        return ls_error_code() ? ls_error_code() : LS_ERR_MEM;
    }
    return LS_OK;
}

void curv_mv_free(curv_mv *mv)
{
    ls_tensor_release(mv->vin);
    ls_tensor_release(mv->vout);
    mv->vin = mv->vout = NULL;
}

ls_status curv_mv_call(curv_mv *mv)
{
    /* the callee may leave garbage: zero the output so a callback that writes nothing is visible */
    if (!mv->op->overwrites)
        memset(ls_tensor_data(mv->vout), 0, (size_t)mv->op->n * ls_dtype_size(mv->op->dtype));
    ls_error_clear();
    ls_status st = mv->op->matvec(mv->op->ctx, mv->vin, mv->vout);
    mv->count++;
    if (st != LS_OK && !ls_error_message()[0])
        return ls_error_set(st, "%s: matvec failed (status %d)", mv->who, (int)st);
    return st;
}

void *curv_mv_input(curv_mv *mv)
{
    if (mv->vin->refcount > 1 || mv->vin->storage->refcount > 1) {
        int64_t shape[1] = {mv->op->n};
        ls_tensor *t = ls_tensor_new(mv->op->dtype, 1, shape);
        if (!t) {
            ls_error_set(LS_ERR_MEM, "%s: out of memory for the matvec's input", mv->who);
            return NULL;
        }
        ls_tensor_release(mv->vin);
        mv->vin = t;
    }
    return ls_tensor_data(mv->vin);
}

ls_status curv_mv_nonfinite(const curv_mv *mv, int64_t bad)
{
    double v = mv->op->dtype == LS_F64 ? ((const double *)ls_tensor_data(mv->vout))[bad]
                                       : ((const float *)ls_tensor_data(mv->vout))[bad];
    return ls_error_set(LS_ERR_ARG, "%s: matvec returned a non-finite value (%g at entry %lld)",
                        mv->who, v, (long long)bad + 1);
}

ls_status curv_mv_apply(curv_mv *mv, const double *x, double *y)
{
    int64_t n = mv->op->n;
    void *in = curv_mv_input(mv);
    if (!in) return LS_ERR_MEM;
    curv_to_dtype(n, x, mv->op->dtype, in);
    ls_status st = curv_mv_call(mv);
    if (st != LS_OK) return st;
    int64_t bad = curv_from_dtype(n, mv->op->dtype, ls_tensor_data(mv->vout), y);
    return bad >= 0 ? curv_mv_nonfinite(mv, bad) : LS_OK;
}

/* Classical Gram-Schmidt with the DGKS test (Daniel, Gragg, Kaufman, Stewart 1976): a second pass
 * only when the first removed more than a 1 - 1/sqrt(2) share of w's norm, i.e. when cancellation
 * may have left w short of orthogonal ("twice is enough"). In Lanczos the recurrence has already
 * made w nearly orthogonal, so one pass is the rule. A pass computes all of h = V^T w (one read of
 * the basis) but subtracts only the columns with |h_i| > CURV_ORTH_SKIP ||w||: the others are
 * rounding-level already, and leaving them changes w by less than its own rounding would (the next
 * step's pass sees and removes anything that grows). Usually only the last few columns qualify, so
 * the second read of the basis, which a full subtraction needs, is saved: these reads were a third of
 * a Lanczos step on a 10^5-parameter model, memory-bound. The level is relative to the stored
 * basis's rounding: 1e-14 for f64; for an f32 basis, whose entries are rounded at 6e-8 relative
 * anyway, 1e-7. */
#define CURV_ORTH_SKIP 1e-14
#define CURV_ORTH_SKIP_F32 1e-7

double curv_orthogonalise(int64_t n, ls_dtype bt, int cols, const void *V, void *w, double *h,
                          int *idx, double norm, void *raw)
{
    double skip = bt == LS_F64 ? CURV_ORTH_SKIP : CURV_ORTH_SKIP_F32;
    double before = norm, after;
    if (!(before >= 0) && bt == LS_F64) {
        before = curv_nrm2(n, w);
    } else if (!(before >= 0)) {
        curv_basis_dots(n, bt, 1, w, w, &before);
        before = sqrt(before);
    }
    after = before;
    for (int pass = 0; pass < 2; pass++) {
        curv_basis_dots(n, bt, cols, V, w, h);
        int big = 0;
        for (int i = 0; i < cols; i++) big += fabs(h[i]) > skip * before;
        if (3 * big > cols) {   /* many: one pass over the basis, with the norm and the copy */
            after = sqrt(curv_sub_norm2(n, bt, cols, V, NULL, h, w, raw));
        } else if (bt == LS_F64) {
            for (int i = 0; i < cols; i++)
                if (fabs(h[i]) > skip * before)
                    curv_axpy(n, -h[i], (const double *)V + (int64_t)i * n, w);
            after = sqrt(curv_sub_norm2(n, bt, 0, NULL, NULL, NULL, w, raw));
        } else {   /* the few columns in one pass, rounded once */
            int c = 0;
            for (int i = 0; i < cols; i++)
                if (fabs(h[i]) > skip * before) {
                    idx[c] = i;
                    h[c++] = h[i];
                }
            after = sqrt(curv_sub_norm2(n, bt, c, V, idx, h, w, raw));
        }
        if (after > 0.7071067811865476 * before) break;
        before = after;
    }
    return after;
}

ls_status curv_lanczos_step(curv_mv *mv, double *V, int j, double beta_prev, double *alpha,
                            double *beta, double *w, double *h)
{
    int64_t n = mv->op->n;
    const double *vj = V + (int64_t)j * n;
    ls_status st = curv_mv_apply(mv, vj, w);
    if (st) return st;
    if (j > 0) curv_axpy(n, -beta_prev, V + (int64_t)(j - 1) * n, w);
    double a = curv_dot(n, vj, w);
    curv_axpy(n, -a, vj, w);
    *alpha = a;
    *beta = curv_orthogonalise(n, LS_F64, j + 1, V, w, h, NULL, -1.0, NULL);
    return LS_OK;
}

/* ==== names ======================================================================================== */

int ls_eig_which_parse(const char *s, ls_eig_which *out)
{
    static const struct { const char *name; ls_eig_which w; } t[] = {
        {"largest", LS_EIG_LARGEST},     {"LA", LS_EIG_LARGEST},  {"smallest", LS_EIG_SMALLEST},
        {"SA", LS_EIG_SMALLEST},         {"both", LS_EIG_BOTH},   {"BE", LS_EIG_BOTH},
        {"magnitude", LS_EIG_MAGNITUDE}, {"LM", LS_EIG_MAGNITUDE}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) {
            *out = t[i].w;
            return 0;
        }
    return -1;
}

const char *ls_eig_which_name(ls_eig_which w)
{
    switch (w) {
    case LS_EIG_LARGEST: return "largest";
    case LS_EIG_SMALLEST: return "smallest";
    case LS_EIG_BOTH: return "both";
    case LS_EIG_MAGNITUDE: return "magnitude";
    }
    return "?";
}

void ls_eig_result_free(ls_eig_result *r)
{
    if (!r) return;
    ls_free(r->values);
    ls_free(r->residuals);
    ls_free(r->converged);
    ls_tensor_release(r->vectors);
    memset(r, 0, sizeof *r);
}

ls_status curv_eig_check(const ls_linop *op, int k, const char *who)
{
    ls_status st = ls_linop_check(op, who);
    if (st) return st;
    if (k < 1) return ls_error_set(LS_ERR_ARG, "%s: k must be >= 1, got %d", who, k);
    if (k > op->n)
        return ls_error_set(LS_ERR_ARG, "%s: k = %d exceeds the operator size %lld", who, k,
                            (long long)op->n);
    return LS_OK;
}

ls_status curv_eig_alloc(ls_eig_result *r, int k, const char *who)
{
    memset(r, 0, sizeof *r);
    r->k = k;
    r->values = ls_calloc((size_t)k * sizeof(double), "curvature");
    r->residuals = ls_calloc((size_t)k * sizeof(double), "curvature");
    r->converged = ls_calloc((size_t)k * sizeof(bool), "curvature");
    if (!r->values || !r->residuals || !r->converged) {
        ls_eig_result_free(r);
        return ls_error_set(LS_ERR_MEM, "%s: out of memory", who);
    }
    return LS_OK;
}

/* ==== power iteration (PyHessian compatibility) ==================================================== */

ls_status ls_power_iteration(const ls_linop *op, const ls_power_opts *opts, ls_eig_result *out)
{
    static const char *who = "power";
    memset(out, 0, sizeof *out);
    ls_status st = curv_eig_check(op, opts->k, who);
    if (st) return st;
    int64_t n = op->n;
    int k = opts->k;
    int max_iter = opts->max_iter > 0 ? opts->max_iter : 100;
    double tol = opts->tol > 0 ? opts->tol : 1e-3;
    curv_mv mv;
    if ((st = curv_mv_init(&mv, op, who))) return st;
    double *E = NULL, *v = NULL, *Hv = NULL;
    ls_rng rng;
    ls_rng_init(&rng, opts->seed);
    if ((st = curv_eig_alloc(out, k, who))) goto done;
    E = ls_malloc_array((size_t)n, (size_t)k * sizeof(double), "curvature");   /* found eigenvectors, columns */
    v = ls_malloc((size_t)n * sizeof(double), "curvature");
    Hv = ls_malloc((size_t)n * sizeof(double), "curvature");
    if (!E || !v || !Hv) { st = ls_error_set(LS_ERR_MEM, "power: out of memory"); goto done; }
    int total = 0;
    for (int p = 0; p < k; p++) {
        ls_rng_normal(&rng, LS_F64, v, n, 0.0, 1.0);
        cblas_dscal((int)n, 1.0 / (curv_nrm2(n, v) + 1e-6), v, 1);
        double lam = 0, res = 0;
        bool have = false, conv = false;
        for (int it = 0; it < max_iter; it++) {
            total++;
            /* orthnormal(v, found): one modified Gram-Schmidt pass, then normalise (+1e-6) */
            for (int q = 0; q < p; q++) {
                const double *eq = E + (int64_t)q * n;
                cblas_daxpy((int)n, -curv_dot(n, v, eq), eq, 1, v, 1);
            }
            cblas_dscal((int)n, 1.0 / (curv_nrm2(n, v) + 1e-6), v, 1);
            if ((st = curv_mv_apply(&mv, v, Hv))) goto done;
            double tmp = curv_dot(n, Hv, v);
            double r2 = 0;
            for (int64_t i = 0; i < n; i++) r2 += (Hv[i] - tmp * v[i]) * (Hv[i] - tmp * v[i]);
            res = sqrt(r2);
            double nh = curv_nrm2(n, Hv);
            for (int64_t i = 0; i < n; i++) v[i] = Hv[i] / (nh + 1e-6);
            if (!have) {
                lam = tmp;
                have = true;
            } else if (fabs(lam - tmp) / (fabs(lam) + 1e-6) < tol) {
                conv = true;
                break;   /* lam stays the previous Rayleigh quotient, as in PyHessian */
            } else {
                lam = tmp;
            }
        }
        out->values[p] = lam;
        out->residuals[p] = res;
        out->converged[p] = conv;
        memcpy(E + (int64_t)p * n, v, (size_t)n * sizeof(double));
    }
    out->iterations = total;
    out->matvecs = mv.count;
    out->all_converged = true;
    for (int p = 0; p < k; p++) out->all_converged = out->all_converged && out->converged[p];
    int64_t shape[2] = {n, k};
    out->vectors = ls_tensor_new(op->dtype, 2, shape);
    if (!out->vectors) { st = ls_error_code() ? ls_error_code() : LS_ERR_MEM; goto done; }
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < k; c++) {
            double x = E[(int64_t)c * n + i];
            if (op->dtype == LS_F64) ((double *)ls_tensor_data(out->vectors))[i * k + c] = x;
            else ((float *)ls_tensor_data(out->vectors))[i * k + c] = (float)x;
        }
done:
    if (st) ls_eig_result_free(out);
    ls_free(E);
    ls_free(v);
    ls_free(Hv);
    curv_mv_free(&mv);
    return st;
}
