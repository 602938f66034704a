/* Operators and eigen-estimators: the matvec adapter, dense operators, Lanczos with full
 * reorthogonalisation, PyHessian-compatible power iteration. See linop.h for the contract. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
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

ls_status curv_mv_apply(curv_mv *mv, const double *x, double *y)
{
    int64_t n = mv->op->n;
    curv_to_dtype(n, x, mv->op->dtype, ls_tensor_data(mv->vin));
    /* the callee may leave garbage: zero the output so a callback that writes nothing is visible */
    memset(ls_tensor_data(mv->vout), 0, (size_t)n * ls_dtype_size(mv->op->dtype));
    ls_error_clear();
    ls_status st = mv->op->matvec(mv->op->ctx, mv->vin, mv->vout);
    mv->count++;
    if (st != LS_OK) {
        if (!ls_error_message()[0])
            return ls_error_set(st, "%s: matvec failed (status %d)", mv->who, (int)st);
        return st;
    }
    int64_t bad = curv_from_dtype(n, mv->op->dtype, ls_tensor_data(mv->vout), y);
    if (bad >= 0)
        return ls_error_set(LS_ERR_ARG, "%s: matvec returned a non-finite value (%g at entry %lld)",
                            mv->who, y[bad], (long long)bad + 1);
    return LS_OK;
}

/* Classical Gram-Schmidt with the DGKS test (Daniel, Gragg, Kaufman, Stewart 1976): a second pass
 * only when the first removed more than a 1 - 1/sqrt(2) share of w's norm, i.e. when cancellation
 * may have left w short of orthogonal ("twice is enough"). In Lanczos the recurrence has already
 * made w nearly orthogonal, so one pass is the rule. A pass computes all of h = V^T w (one read of
 * the basis) but subtracts only the columns with |h_i| > CURV_ORTH_SKIP ||w||: the others are
 * rounding-level already, and leaving them changes w by less than its own rounding would (the next
 * step's pass sees and removes anything that grows). Usually only the last few columns qualify, so
 * the second read of the basis, which a full subtraction needs, is saved: these reads were a third of
 * a Lanczos step on a 10^5-parameter model, memory-bound. */
#define CURV_ORTH_SKIP 1e-14

void curv_orthogonalise(int64_t n, int cols, const double *V, double *w, double *h)
{
    double before = curv_nrm2(n, w);
    for (int pass = 0; pass < 2; pass++) {
        curv_gemv_t(n, cols, V, w, h);
        int big = 0;
        for (int i = 0; i < cols; i++) big += fabs(h[i]) > CURV_ORTH_SKIP * before;
        if (3 * big > cols) {   /* many: one pass over the basis */
            curv_gemv_n_sub(n, cols, V, h, w);
        } else {
            for (int i = 0; i < cols; i++)
                if (fabs(h[i]) > CURV_ORTH_SKIP * before)
                    curv_axpy(n, -h[i], V + (int64_t)i * n, w);
        }
        double after = curv_nrm2(n, w);
        if (after > 0.7071067811865476 * before) break;
        before = after;
    }
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
    curv_orthogonalise(n, j + 1, V, w, h);
    *alpha = a;
    *beta = curv_nrm2(n, w);
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

static ls_status eig_result_alloc(ls_eig_result *r, int k, const char *who)
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

/* ==== Lanczos ====================================================================================== */

/* Pick k Ritz indices (theta ascending, m of them) in output order; returns the count (<= k). */
static int select_ritz(const double *theta, int m, int k, ls_eig_which which, int *idx)
{
    int c = 0;
    switch (which) {
    case LS_EIG_LARGEST:
        for (int i = m - 1; i >= 0 && c < k; i--) idx[c++] = i;
        break;
    case LS_EIG_SMALLEST:
        for (int i = 0; i < m && c < k; i++) idx[c++] = i;
        break;
    case LS_EIG_BOTH: {
        int hi = (k + 1) / 2, lo = k / 2;
        if (hi + lo > m) { hi = (m + 1) / 2; lo = m / 2; }
        for (int i = 0; i < hi; i++) idx[c++] = m - 1 - i;
        for (int i = 0; i < lo; i++) idx[c++] = i;
        break;
    }
    case LS_EIG_MAGNITUDE: {
        /* merge from both ends of the ascending list */
        int lo = 0, hi = m - 1;
        while (c < k && lo <= hi) {
            if (fabs(theta[hi]) >= fabs(theta[lo])) idx[c++] = hi--;
            else idx[c++] = lo++;
        }
        break;
    }
    }
    return c;
}

/* Workspace of ritz_pairs for Krylov dimensions up to `cap` and k wanted pairs. */
typedef struct ritz_work {
    int cap, k;
    double *d, *e, *dc, *ec, *w, *Zr, *Zfull;   /* Zfull: m x m, only for the dstev fallback */
    lapack_int *isuppz;
    int *idx, *sorted;   /* selected indices in output order / ascending */
} ritz_work;

static void ritz_work_free(ritz_work *rw)
{
    ls_free(rw->d);
    ls_free(rw->e);
    ls_free(rw->dc);
    ls_free(rw->ec);
    ls_free(rw->w);
    ls_free(rw->Zr);
    ls_free(rw->Zfull);
    ls_free(rw->isuppz);
    ls_free(rw->idx);
    ls_free(rw->sorted);
    memset(rw, 0, sizeof *rw);
}

static bool ritz_work_init(ritz_work *rw, int cap, int k)
{
    memset(rw, 0, sizeof *rw);
    rw->cap = cap;
    rw->k = k;
    size_t c = (size_t)cap;
    rw->d = ls_malloc(c * sizeof(double), "curvature");
    rw->e = ls_malloc(c * sizeof(double), "curvature");
    rw->dc = ls_malloc(c * sizeof(double), "curvature");
    rw->ec = ls_malloc(c * sizeof(double), "curvature");
    rw->w = ls_malloc(c * sizeof(double), "curvature");
    rw->Zr = ls_malloc_array(c, (size_t)k * sizeof(double), "curvature");
    rw->isuppz = ls_malloc(2 * c * sizeof(lapack_int), "curvature");
    rw->idx = ls_malloc((size_t)k * sizeof(int), "curvature");
    rw->sorted = ls_malloc((size_t)k * sizeof(int), "curvature");
    return rw->d && rw->e && rw->dc && rw->ec && rw->w && rw->Zr && rw->isuppz && rw->idx &&
           rw->sorted;
}

/* ritz_pairs' fallback: all pairs by dstev (O(m^3)), then the selected ones (rw->idx). */
static int ritz_pairs_dstev(ritz_work *rw, const double *alpha, const double *beta, int m, int nsel,
                            double *theta, double *Zs)
{
    ls_free(rw->Zfull);
    rw->Zfull = ls_malloc_array((size_t)m, (size_t)m * sizeof(double), "curvature");
    if (!rw->Zfull) {
        ls_error_set(LS_ERR_MEM, "lanczos: out of memory");
        return -1;
    }
    memcpy(rw->dc, alpha, (size_t)m * sizeof(double));
    if (m > 1) memcpy(rw->ec, beta, (size_t)(m - 1) * sizeof(double));
    lapack_int info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', m, rw->dc, rw->ec, rw->Zfull, m);
    if (info != 0) {
        ls_error_set(LS_ERR_STATE, "lanczos: dstev failed (info %d)", (int)info);
        return -1;
    }
    for (int c = 0; c < nsel; c++) {
        theta[c] = rw->dc[rw->idx[c]];
        memcpy(Zs + (int64_t)c * m, rw->Zfull + (int64_t)rw->idx[c] * m, (size_t)m * sizeof(double));
    }
    return nsel;
}

/* The wanted Ritz pairs of T_m = tridiag(beta, alpha, beta) (alpha[0..m-1], beta[0..m-2]).
 *
 * This runs after EVERY Lanczos step, so it must cost little next to a matvec at any m. All m Ritz
 * values come from dsterf (O(m^2), no vectors); the wanted ones form at most two contiguous runs of
 * the ascending list (its top and its bottom), and only their eigenvectors are computed, by dstevr
 * with RANGE = 'I' (bisection and inverse iteration: O(m k)). dstev with vectors, the obvious call,
 * is O(m^3) and made a per-step test too dear beyond m ~ 100. Should dstevr fail or return fewer
 * pairs than asked (it has not been seen to), the pairs come from dstev instead.
 *
 * Out: the count of pairs (<= k), theta[c] and Zs[c*m .. c*m + m-1] (unit eigenvector of T_m) for
 * c in output order (select_ritz), *scale = max |theta| over all m Ritz values. Returns -1 when
 * LAPACK fails (error message set). */
static int ritz_pairs(ritz_work *rw, const double *alpha, const double *beta, int m,
                      ls_eig_which which, double *theta, double *Zs, double *scale)
{
    int k = rw->k;
    memcpy(rw->d, alpha, (size_t)m * sizeof(double));
    if (m > 1) memcpy(rw->e, beta, (size_t)(m - 1) * sizeof(double));
    lapack_int info = LAPACKE_dsterf(m, rw->d, rw->e);
    if (info != 0) {
        ls_error_set(LS_ERR_STATE, "lanczos: dsterf failed (info %d)", (int)info);
        return -1;
    }
    *scale = fmax(fabs(rw->d[0]), fabs(rw->d[m - 1]));
    int nsel = select_ritz(rw->d, m, k, which, rw->idx);

    /* sort the selected indices (k is small) and serve each run of consecutive ones by one call */
    int *sorted = rw->sorted;
    for (int c = 0; c < nsel; c++) {
        int v = rw->idx[c], q = c;
        for (; q > 0 && sorted[q - 1] > v; q--) sorted[q] = sorted[q - 1];
        sorted[q] = v;
    }
    double abstol = LAPACKE_dlamch('S');
    for (int r = 0; r < nsel;) {
        int a = sorted[r], b = a;
        while (r + 1 < nsel && sorted[r + 1] == b + 1) { b++; r++; }
        r++;
        memcpy(rw->dc, alpha, (size_t)m * sizeof(double));
        if (m > 1) memcpy(rw->ec, beta, (size_t)(m - 1) * sizeof(double));
        lapack_int got = 0;
        info = LAPACKE_dstevr(LAPACK_COL_MAJOR, 'V', 'I', m, rw->dc, rw->ec, 0.0, 0.0, a + 1, b + 1,
                              abstol, &got, rw->w, rw->Zr, m, rw->isuppz);
        if (info != 0 || got != b - a + 1) return ritz_pairs_dstev(rw, alpha, beta, m, nsel, theta, Zs);
        for (int c = 0; c < nsel; c++) {
            int i = rw->idx[c];
            if (i < a || i > b) continue;
            theta[c] = rw->w[i - a];
            memcpy(Zs + (int64_t)c * m, rw->Zr + (int64_t)(i - a) * m, (size_t)m * sizeof(double));
        }
    }
    return nsel;
}

ls_status ls_lanczos(const ls_linop *op, const ls_lanczos_opts *opts, ls_eig_result *out)
{
    static const char *who = "lanczos";
    memset(out, 0, sizeof *out);
    ls_status st = ls_linop_check(op, who);
    if (st) return st;
    int64_t n = op->n;
    int k = opts->k;
    if (k < 1) return ls_error_set(LS_ERR_ARG, "lanczos: k must be >= 1, got %d", k);
    if (k > n)
        return ls_error_set(LS_ERR_ARG, "lanczos: k = %d exceeds the operator size %lld", k,
                            (long long)n);
    double tol = opts->tol > 0 ? opts->tol : 1e-6;
    int64_t max_iter = opts->max_iter > 0 ? opts->max_iter : 300;
    if (max_iter > n) max_iter = n;
    if (max_iter < k) max_iter = k;

    curv_mv mv;
    if ((st = curv_mv_init(&mv, op, who))) return st;
    int cap = 0;
    double *V = NULL, *w = NULL, *h = NULL, *alpha = NULL, *beta = NULL, *Zs = NULL;
    ritz_work rw = {0};
    ls_rng rng;
    ls_rng_init(&rng, opts->seed);
    if ((st = eig_result_alloc(out, k, who))) goto done;
    w = ls_malloc((size_t)n * sizeof(double), "curvature");
    h = ls_malloc((size_t)(max_iter + 1) * sizeof(double), "curvature");
    alpha = ls_malloc((size_t)(max_iter + 1) * sizeof(double), "curvature");
    beta = ls_malloc((size_t)(max_iter + 1) * sizeof(double), "curvature");
    Zs = ls_malloc_array((size_t)(max_iter + 1), (size_t)k * sizeof(double), "curvature");
    if (!ritz_work_init(&rw, (int)max_iter + 1, k) || !w || !h || !alpha || !beta || !Zs) {
        st = ls_error_set(LS_ERR_MEM, "lanczos: out of memory (n = %lld)", (long long)n);
        goto done;
    }

    /* start vector */
    cap = (int)(max_iter < 32 ? max_iter + 1 : 32);
    /* the basis comes from the engine's allocator: huge pages for large blocks, so touching a new
     * basis vector costs few page faults */
    V = ls_malloc_array((size_t)cap, (size_t)n * sizeof(double), "lanczos: Krylov basis");
    if (!V) {
        st = ls_error_code();
        goto done;
    }
    if (opts->v0) memcpy(V, opts->v0, (size_t)n * sizeof(double));
    else ls_rng_rademacher(&rng, LS_F64, V, n);
    double nv = curv_nrm2(n, V);
    if (!(nv > 0) || !isfinite(nv)) {
        st = ls_error_set(LS_ERR_ARG, "lanczos: start vector is zero or not finite");
        goto done;
    }
    cblas_dscal((int)n, 1.0 / nv, V, 1);

    double anorm = 0;
    int m = 0, nsel = 0;
    bool ok = false;
    while (m < max_iter) {
        int j = m;
        double a, b;
        if ((st = curv_lanczos_step(&mv, V, j, j > 0 ? beta[j - 1] : 0.0, &a, &b, w, h))) goto done;
        alpha[j] = a;
        beta[j] = b;
        m = j + 1;
        anorm = fmax(anorm, fabs(a) + b + (j > 0 ? beta[j - 1] : 0.0));

        /* Convergence test after every step, ARPACK's (dsconv): the Ritz pair (theta, V_m z) has
         * residual ||A V_m z - theta V_m z|| = |beta_m z_m| (exact arithmetic; full
         * reorthogonalisation keeps it so), and it has converged when that is <= tol |theta|. */
        if (m >= k) {
            double scale = 0;
            nsel = ritz_pairs(&rw, alpha, beta, m, opts->which, out->values, Zs, &scale);
            if (nsel < 0) {
                nsel = 0;
                st = ls_error_code() ? ls_error_code() : LS_ERR_STATE;
                goto done;
            }
            ok = (nsel == k);
            for (int c = 0; c < nsel; c++) {
                double th = out->values[c];
                double res = fabs(b * Zs[(int64_t)c * m + (m - 1)]);
                out->residuals[c] = res;
                out->converged[c] = res <= tol * fmax(fabs(th), 1e-10 * scale);
                ok = ok && out->converged[c];
            }
            if (ok) break;
        }
        if (m == max_iter) break;

        /* next basis vector, growing the basis geometrically */
        if (m + 1 > cap) {
            int64_t ncap = (int64_t)cap * 2;
            if (ncap > max_iter + 1) ncap = max_iter + 1;
            double *nV = ls_malloc_array((size_t)ncap, (size_t)n * sizeof(double), "lanczos");
            if (nV) {
                memcpy(nV, V, (size_t)m * (size_t)n * sizeof(double));
                ls_free(V);
            } else {
                st = ls_error_set(LS_ERR_MEM, "lanczos: out of memory growing the basis to %lld x %lld",
                                  (long long)n, (long long)ncap);
                goto done;
            }
            V = nV;
            cap = (int)ncap;
        }
        double *vn = V + (int64_t)m * n;
        if (b <= 1e-12 * anorm) {
            /* invariant subspace: continue with a fresh random direction orthogonal to the basis */
            double nb = 0;
            for (int tries = 0; tries < 3 && !(nb > 1e-8); tries++) {
                ls_rng_rademacher(&rng, LS_F64, vn, n);
                double n0 = curv_nrm2(n, vn);
                curv_orthogonalise(n, m, V, vn, h);
                nb = curv_nrm2(n, vn) / n0;
            }
            if (!(nb > 1e-8)) break;   /* the space is exhausted: cannot happen for m < n */
            cblas_dscal((int)n, 1.0 / curv_nrm2(n, vn), vn, 1);
            beta[j] = 0.0;
        } else {
            for (int64_t i = 0; i < n; i++) vn[i] = w[i] / b;
        }
    }
    out->iterations = m;
    out->matvecs = mv.count;
    out->all_converged = ok;
    if (nsel < k) {
        st = ls_error_set(LS_ERR_STATE, "lanczos: only %d of %d Ritz pairs available", nsel, k);
        goto done;
    }

    if (opts->want_vectors) {
        /* Ritz vectors y_c = V_m Zs[:, c] */
        double *Y = ls_malloc_array((size_t)n, (size_t)k * sizeof(double), "curvature");
        int64_t shape[2] = {n, k};
        out->vectors = ls_tensor_new(op->dtype, 2, shape);
        if (!Y || !out->vectors) {
            ls_free(Y);
            st = ls_error_set(LS_ERR_MEM, "lanczos: out of memory for Ritz vectors");
            goto done;
        }
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, k, m, 1.0, V, (int)n, Zs, m,
                    0.0, Y, (int)n);
        /* tensor is row-major [n x k]: element (i, c) at i*k + c */
        if (op->dtype == LS_F64) {
            double *t = ls_tensor_data(out->vectors);
            for (int64_t i = 0; i < n; i++)
                for (int c = 0; c < k; c++) t[i * k + c] = Y[(int64_t)c * n + i];
        } else {
            float *t = ls_tensor_data(out->vectors);
            for (int64_t i = 0; i < n; i++)
                for (int c = 0; c < k; c++) t[i * k + c] = (float)Y[(int64_t)c * n + i];
        }
        ls_free(Y);
    }

done:
    if (st) ls_eig_result_free(out);
    ls_free(V);
    ls_free(w);
    ls_free(h);
    ls_free(alpha);
    ls_free(beta);
    ls_free(Zs);
    ritz_work_free(&rw);
    curv_mv_free(&mv);
    return st;
}

/* ==== power iteration (PyHessian compatibility) ==================================================== */

ls_status ls_power_iteration(const ls_linop *op, const ls_power_opts *opts, ls_eig_result *out)
{
    static const char *who = "power";
    memset(out, 0, sizeof *out);
    ls_status st = ls_linop_check(op, who);
    if (st) return st;
    int64_t n = op->n;
    int k = opts->k;
    if (k < 1) return ls_error_set(LS_ERR_ARG, "power: k must be >= 1, got %d", k);
    if (k > n)
        return ls_error_set(LS_ERR_ARG, "power: k = %d exceeds the operator size %lld", k,
                            (long long)n);
    int max_iter = opts->max_iter > 0 ? opts->max_iter : 100;
    double tol = opts->tol > 0 ? opts->tol : 1e-3;
    curv_mv mv;
    if ((st = curv_mv_init(&mv, op, who))) return st;
    double *E = NULL, *v = NULL, *Hv = NULL;
    ls_rng rng;
    ls_rng_init(&rng, opts->seed);
    if ((st = eig_result_alloc(out, k, who))) goto done;
    E = ls_malloc_array((size_t)n, (size_t)k * sizeof(double), "curvature");   /* found eigenvectors */
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
