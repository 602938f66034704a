/* Stochastic trace, diagonal and spectral-density estimators on an ls_linop (see linop.h).
 *
 * Probes are Rademacher vectors drawn one after another from a single ls_rng(seed) stream, so probe i
 * of a run is fixed by (seed, i) and a result is bit-for-bit repeatable for a fixed seed and thread
 * count. Sums are accumulated in f64 with Welford's update (mean and variance in one pass). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "curvature/curv_internal.h"

int ls_trace_method_parse(const char *s, ls_trace_method *out)
{
    if (strcmp(s, "hutchinson") == 0) { *out = LS_TRACE_HUTCHINSON; return 0; }
    if (strcmp(s, "hutch++") == 0 || strcmp(s, "hutchpp") == 0) { *out = LS_TRACE_HUTCHPP; return 0; }
    return -1;
}

/* ==== trace ======================================================================================== */

/* Hutchinson samples z^T P A P z with P = I - Q Q^T (Q: n x s column-major, s may be 0). Welford mean
 * and variance of the samples; returns mean, stderr = sqrt(var_{n-1} / g). */
static ls_status hutchinson_part(curv_mv *mv, ls_rng *rng, const double *Q, int s, int64_t g,
                                 double *mean_out, double *se_out)
{
    int64_t n = mv->op->n;
    double *z = ls_malloc((size_t)n * sizeof(double), "curvature");
    double *Az = ls_malloc((size_t)n * sizeof(double), "curvature");
    double *h = ls_malloc((size_t)(s > 0 ? s : 1) * sizeof(double), "curvature");
    if (!z || !Az || !h) {
        ls_free(z); ls_free(Az); ls_free(h);
        return ls_error_set(LS_ERR_MEM, "%s: out of memory (n = %lld)", mv->who, (long long)n);
    }
    double mean = 0, m2 = 0;
    ls_status st = LS_OK;
    for (int64_t i = 0; i < g; i++) {
        ls_rng_rademacher(rng, LS_F64, z, n);
        if (s > 0) {   /* z <- (I - QQ^T) z: Q is orthonormal, one pass is exact up to rounding */
            cblas_dgemv(CblasColMajor, CblasTrans, (int)n, s, 1.0, Q, (int)n, z, 1, 0.0, h, 1);
            cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, s, -1.0, Q, (int)n, h, 1, 1.0, z, 1);
        }
        if ((st = curv_mv_apply(mv, z, Az))) break;
        double x = curv_dot(n, z, Az);
        double delta = x - mean;
        mean += delta / (double)(i + 1);
        m2 += delta * (x - mean);
    }
    ls_free(z); ls_free(Az); ls_free(h);
    if (st) return st;
    *mean_out = mean;
    *se_out = g > 1 ? sqrt(m2 / (double)(g - 1) / (double)g) : 0.0;
    return LS_OK;
}

ls_status ls_trace_estimate(const ls_linop *op, ls_trace_method method, int64_t probes, uint64_t seed,
                            ls_trace_result *out)
{
    const char *who = method == LS_TRACE_HUTCHPP ? "trace (hutch++)" : "trace (hutchinson)";
    memset(out, 0, sizeof *out);
    ls_status st = ls_linop_check(op, who);
    if (st) return st;
    int64_t minp = method == LS_TRACE_HUTCHPP ? 3 : 1;
    if (probes < minp)
        return ls_error_set(LS_ERR_ARG, "%s: probes must be >= %lld, got %lld", who, (long long)minp,
                            (long long)probes);
    int64_t n = op->n;
    curv_mv mv;
    if ((st = curv_mv_init(&mv, op, who))) return st;
    ls_rng rng;
    ls_rng_init(&rng, seed);
    double mean = 0, se = 0;
    if (method == LS_TRACE_HUTCHINSON) {
        st = hutchinson_part(&mv, &rng, NULL, 0, probes, &mean, &se);
        if (!st) *out = (ls_trace_result){mean, se, mv.count, 0};
        curv_mv_free(&mv);
        return st;
    }
    /* Hutch++: sketch S (n x s Rademacher), Y = A S, Q = qr(Y), tr(Q^T A Q) exactly, and Hutchinson on
     * the deflated remainder with g = probes - 2 s probes. s is capped at n (then Q spans everything). */
    int64_t s64 = probes / 3;
    if (s64 > n) s64 = n;
    int s = (int)s64;
    int64_t g = probes - 2 * s64;
    double *Y = ls_malloc_array((size_t)n, (size_t)s * sizeof(double), "curvature");
    double *tau = ls_malloc((size_t)s * sizeof(double), "curvature");
    double *z = ls_malloc((size_t)n * sizeof(double), "curvature");
    double *Az = ls_malloc((size_t)n * sizeof(double), "curvature");
    if (!Y || !tau || !z || !Az) {
        st = ls_error_set(LS_ERR_MEM, "%s: out of memory (n = %lld, sketch %d)", who, (long long)n, s);
        goto done;
    }
    for (int c = 0; c < s; c++) {
        ls_rng_rademacher(&rng, LS_F64, z, n);
        if ((st = curv_mv_apply(&mv, z, Y + (int64_t)c * n))) goto done;
    }
    lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, n, s, Y, n, tau);
    if (!info) info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, n, s, s, Y, n, tau);
    if (info) {
        st = ls_error_set(LS_ERR_STATE, "%s: QR of the sketch failed (info %d)", who, (int)info);
        goto done;
    }
    double tq = 0;
    for (int c = 0; c < s; c++) {
        const double *q = Y + (int64_t)c * n;
        if ((st = curv_mv_apply(&mv, q, Az))) goto done;
        tq += curv_dot(n, q, Az);
    }
    if (g > 0 && (st = hutchinson_part(&mv, &rng, Y, s, g, &mean, &se))) goto done;
    *out = (ls_trace_result){tq + mean, se, mv.count, s};
done:
    ls_free(Y); ls_free(tau); ls_free(z); ls_free(Az);
    curv_mv_free(&mv);
    return st;
}

/* ==== diagonal ===================================================================================== */

ls_status ls_diag_estimate(const ls_linop *op, int64_t probes, uint64_t seed, ls_tensor **estimate,
                           ls_tensor **stderr_out)
{
    static const char *who = "diag";
    *estimate = NULL;
    if (stderr_out) *stderr_out = NULL;
    ls_status st = ls_linop_check(op, who);
    if (st) return st;
    if (probes < 1)
        return ls_error_set(LS_ERR_ARG, "diag: probes must be >= 1, got %lld", (long long)probes);
    int64_t n = op->n;
    curv_mv mv;
    if ((st = curv_mv_init(&mv, op, who))) return st;
    ls_rng rng;
    ls_rng_init(&rng, seed);
    double *z = ls_malloc((size_t)n * sizeof(double), "curvature");
    double *Az = ls_malloc((size_t)n * sizeof(double), "curvature");
    double *mean = ls_calloc((size_t)n * sizeof(double), "curvature");
    double *m2 = ls_calloc((size_t)n * sizeof(double), "curvature");
    int64_t shape[1] = {n};
    ls_tensor *E = NULL, *S = NULL;
    if (!z || !Az || !mean || !m2) { st = ls_error_set(LS_ERR_MEM, "diag: out of memory"); goto done; }
    for (int64_t p = 0; p < probes; p++) {
        ls_rng_rademacher(&rng, LS_F64, z, n);
        if ((st = curv_mv_apply(&mv, z, Az))) goto done;
        for (int64_t i = 0; i < n; i++) {
            double x = z[i] * Az[i], delta = x - mean[i];
            mean[i] += delta / (double)(p + 1);
            m2[i] += delta * (x - mean[i]);
        }
    }
    E = ls_tensor_new(op->dtype, 1, shape);
    S = ls_tensor_new(op->dtype, 1, shape);
    if (!E || !S) { st = ls_error_code() ? ls_error_code() : LS_ERR_MEM; goto done; }
    for (int64_t i = 0; i < n; i++) {
        double se = probes > 1 ? sqrt(m2[i] / (double)(probes - 1) / (double)probes) : 0.0;
        ls_tensor_set(E, &i, mean[i]);
        ls_tensor_set(S, &i, se);
    }
    *estimate = E;
    E = NULL;
    if (stderr_out) { *stderr_out = S; S = NULL; }
done:
    ls_tensor_release(E);
    ls_tensor_release(S);
    ls_free(z); ls_free(Az); ls_free(mean); ls_free(m2);
    curv_mv_free(&mv);
    return st;
}

/* ==== stochastic Lanczos quadrature ================================================================ */

void ls_slq_result_free(ls_slq_result *r)
{
    if (!r) return;
    ls_free(r->nodes);
    ls_free(r->weights);
    memset(r, 0, sizeof *r);
}

ls_status ls_slq(const ls_linop *op, int steps, int runs, uint64_t seed, ls_slq_result *out)
{
    static const char *who = "density";
    memset(out, 0, sizeof *out);
    ls_status st = ls_linop_check(op, who);
    if (st) return st;
    if (steps < 1) return ls_error_set(LS_ERR_ARG, "density: steps must be >= 1, got %d", steps);
    if (runs < 1) return ls_error_set(LS_ERR_ARG, "density: runs must be >= 1, got %d", runs);
    int64_t n = op->n;
    int m = steps > n ? (int)n : steps;
    curv_mv mv;
    if ((st = curv_mv_init(&mv, op, who))) return st;
    double *V = ls_malloc_array((size_t)n, (size_t)m * sizeof(double), "slq: Lanczos basis");
    double *w = ls_malloc((size_t)n * sizeof(double), "curvature");
    double *h = ls_malloc((size_t)m * sizeof(double), "curvature");
    double *alpha = ls_malloc((size_t)m * sizeof(double), "curvature");
    double *beta = ls_malloc((size_t)m * sizeof(double), "curvature");
    double *Z = ls_malloc_array((size_t)m, (size_t)m * sizeof(double), "curvature");
    out->nodes = ls_malloc_array((size_t)runs, (size_t)m * sizeof(double), "curvature");
    out->weights = ls_malloc_array((size_t)runs, (size_t)m * sizeof(double), "curvature");
    out->runs = runs;
    out->steps = m;
    if (!V || !w || !h || !alpha || !beta || !Z || !out->nodes || !out->weights) {
        st = ls_error_set(LS_ERR_MEM, "density: out of memory (n = %lld, steps = %d)", (long long)n, m);
        goto done;
    }
    for (int r = 0; r < runs; r++) {
        ls_rng rng;
        ls_rng_init(&rng, seed);
        rng.offset = (uint64_t)r * (uint64_t)n;
        ls_rng_rademacher(&rng, LS_F64, V, n);
        cblas_dscal((int)n, 1.0 / sqrt((double)n), V, 1);
        int used = 0;
        double anorm = 0;
        for (int j = 0; j < m; j++) {
            double a, b;
            if ((st = curv_lanczos_step(&mv, V, j, j > 0 ? beta[j - 1] : 0.0, &a, &b, w, h)))
                goto done;
            alpha[j] = a;
            beta[j] = b;
            used = j + 1;
            anorm = fmax(anorm, fabs(a) + b);
            if (j + 1 == m || b <= 1e-12 * anorm) break;   /* done, or exact invariant subspace */
            double *vn = V + (int64_t)(j + 1) * n;
            for (int64_t i = 0; i < n; i++) vn[i] = w[i] / b;
        }
        lapack_int info = LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', used, alpha, beta, Z, used);
        if (info) {
            st = ls_error_set(LS_ERR_STATE, "density: dstev failed (info %d)", (int)info);
            goto done;
        }
        double *nd = out->nodes + (int64_t)r * m, *wt = out->weights + (int64_t)r * m;
        for (int i = 0; i < used; i++) {
            nd[i] = alpha[i];
            wt[i] = Z[(int64_t)i * used] * Z[(int64_t)i * used];
        }
        for (int i = used; i < m; i++) {
            nd[i] = alpha[used - 1];
            wt[i] = 0.0;
        }
    }
    out->matvecs = mv.count;
done:
    if (st) ls_slq_result_free(out);
    ls_free(V); ls_free(w); ls_free(h); ls_free(alpha); ls_free(beta); ls_free(Z);
    curv_mv_free(&mv);
    return st;
}

double ls_slq_moment(const ls_slq_result *r, int p)
{
    double total = 0;
    for (int run = 0; run < r->runs; run++)
        for (int i = 0; i < r->steps; i++) {
            int64_t at = (int64_t)run * r->steps + i;
            total += r->weights[at] * pow(r->nodes[at], p);
        }
    return total / r->runs;
}

void ls_slq_density(const ls_slq_result *r, double sigma, const double *grid, int64_t ngrid,
                    double *density)
{
    double c = 1.0 / (sqrt(2.0 * M_PI) * sigma * r->runs);
    for (int64_t g = 0; g < ngrid; g++) {
        double x = grid[g], s = 0;
        for (int64_t at = 0; at < (int64_t)r->runs * r->steps; at++) {
            if (r->weights[at] == 0) continue;
            double u = (x - r->nodes[at]) / sigma;
            s += r->weights[at] * exp(-0.5 * u * u);
        }
        density[g] = s * c;
    }
}
