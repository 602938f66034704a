/* engine/stats: linear models against their defining equations (normal equations of OLS and ridge in
 * long double, orthogonality of residuals, the standard-error formula from an explicit inverse),
 * rank deficiency (collinear and constant columns, n <= p), ridge's inner CV against a brute-force
 * recomputation, out-of-fold predictions against fits on each fold, fold sizes and determinism,
 * Kendall's tau against the O(n^2) pair count, Spearman and Pearson, the error paths and allocation
 * failures. The comparisons with NumPy / SciPy / scikit-learn are in tests/lua/stats_*_spec.lua. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/alloc.h"
#include "core/status.h"
#include "stats/stats.h"

/* ---- fixtures ---- */

static void fill_normalish(double *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) a[i] = check_uniform() + check_uniform() + check_uniform() - 1.5;
}

/* y = 1.5 + X b + noise with b_j = (j + 1) * (-1)^j / 2 */
static void make_problem(double *X, double *y, int64_t n, int p, double noise)
{
    fill_normalish(X, n * p);
    for (int64_t i = 0; i < n; i++) {
        double t = 1.5;
        for (int j = 0; j < p; j++) t += X[i * p + j] * (j + 1) * (j % 2 ? -0.5 : 0.5);
        y[i] = t + noise * (check_uniform() - 0.5);
    }
}

/* Solve the (q x q) system M z = r in long double by Gaussian elimination with partial pivoting. */
static void solve_ld(long double *M, long double *r, int q)
{
    for (int c = 0; c < q; c++) {
        int piv = c;
        for (int i = c + 1; i < q; i++)
            if (fabsl(M[i * q + c]) > fabsl(M[piv * q + c])) piv = i;
        if (piv != c) {
            for (int j = 0; j < q; j++) {
                long double t = M[c * q + j]; M[c * q + j] = M[piv * q + j]; M[piv * q + j] = t;
            }
            long double t = r[c]; r[c] = r[piv]; r[piv] = t;
        }
        for (int i = c + 1; i < q; i++) {
            long double f = M[i * q + c] / M[c * q + c];
            for (int j = c; j < q; j++) M[i * q + j] -= f * M[c * q + j];
            r[i] -= f * r[c];
        }
    }
    for (int c = q - 1; c >= 0; c--) {
        long double t = r[c];
        for (int j = c + 1; j < q; j++) t -= M[c * q + j] * r[j];
        r[c] = t / M[c * q + c];
    }
}

/* Normal equations with an intercept column first: (Z^T Z + lambda D) z = Z^T y, Z = [1 X], D the
 * identity without its (0, 0) entry. z[0] is the intercept. With want_inv, inv gets (Z^T Z)^-1. */
static void normal_equations(const double *X, const double *y, int64_t n, int p, double lambda,
                             double *z, double *inv)
{
    int q = p + 1;
    long double *M = calloc((size_t)q * q, sizeof *M), *r = calloc((size_t)q, sizeof *r);
    long double *M2 = calloc((size_t)q * q, sizeof *M2), *e = calloc((size_t)q, sizeof *e);
    for (int64_t i = 0; i < n; i++) {
        for (int a = 0; a < q; a++) {
            long double za = a ? X[i * p + a - 1] : 1.0L;
            r[a] += za * y[i];
            for (int b = 0; b < q; b++) M[a * q + b] += za * (b ? X[i * p + b - 1] : 1.0L);
        }
    }
    if (inv) {
        for (int c = 0; c < q; c++) {
            memcpy(M2, M, (size_t)q * q * sizeof *M);
            for (int j = 0; j < q; j++) e[j] = j == c;
            solve_ld(M2, e, q);
            for (int j = 0; j < q; j++) inv[j * q + c] = (double)e[j];
        }
    }
    for (int a = 1; a < q; a++) M[a * q + a] += lambda;
    solve_ld(M, r, q);
    for (int a = 0; a < q; a++) z[a] = (double)r[a];
    free(M); free(r); free(M2); free(e);
}

/* The rows of (X, y) outside fold f, copied into (Xt, yt); returns their count. */
static int training_rows(const double *X, const double *y, int n, int p, const int32_t *fold, int f,
                         double *Xt, double *yt)
{
    int nt = 0;
    for (int i = 0; i < n; i++)
        if (fold[i] != f) {
            memcpy(Xt + nt * p, X + i * p, (size_t)p * sizeof(double));
            yt[nt++] = y[i];
        }
    return nt;
}

/* ---- OLS ---- */

static void test_ols_full_rank(void)
{
    enum { N = 60, P = 5 };
    double X[N * P], y[N], z[P + 1], inv[(P + 1) * (P + 1)];
    make_problem(X, y, N, P, 0.8);
    normal_equations(X, y, N, P, 0.0, z, inv);
    ls_lm_spec spec;
    ls_lm_spec_init(&spec, LS_LM_OLS);
    ls_lm *m = ls_lm_fit(X, y, N, P, &spec);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(m->rank == P);
    CHECK_NEAR(m->intercept_raw, z[0], 1e-12);
    for (int j = 0; j < P; j++) {
        CHECK_NEAR(m->coef_raw[j], z[j + 1], 1e-12);
        CHECK_NEAR(m->coef[j], z[j + 1], 1e-12);   /* no standardisation: the same scale */
        CHECK(!m->aliased[j]);
    }
    /* residuals, R^2, sigma, standard errors from their definitions */
    double rss = 0, tss = 0, ybar = 0, sabs = 0, xr[P + 1] = {0};
    for (int i = 0; i < N; i++) ybar += y[i] / N;
    for (int i = 0; i < N; i++) {
        double f = z[0];
        for (int j = 0; j < P; j++) f += z[j + 1] * X[i * P + j];
        double r = y[i] - f;
        rss += r * r;
        sabs += fabs(r);
        tss += (y[i] - ybar) * (y[i] - ybar);
        xr[0] += r;
        for (int j = 0; j < P; j++) xr[j + 1] += r * X[i * P + j];
    }
    for (int j = 0; j <= P; j++) CHECK_NEAR(xr[j], 0.0, 1e-10);   /* residuals orthogonal to Z */
    CHECK_NEAR(m->rss, rss, 1e-11);
    CHECK_NEAR(m->r2, 1 - rss / tss, 1e-12);
    CHECK_NEAR(m->adj_r2, 1 - (rss / tss) * (N - 1) / (N - P - 1.0), 1e-12);
    CHECK_NEAR(m->rmse, sqrt(rss / N), 1e-12);
    CHECK_NEAR(m->mae, sabs / N, 1e-12);
    double sigma = sqrt(rss / (N - P - 1));
    CHECK_NEAR(m->sigma, sigma, 1e-12);
    CHECK_NEAR(m->df_resid, N - P - 1, 0);
    CHECK_NEAR(m->intercept_raw_se, sigma * sqrt(inv[0]), 1e-11);
    for (int j = 0; j < P; j++)
        CHECK_NEAR(m->coef_raw_se[j], sigma * sqrt(inv[(j + 1) * (P + 2)]), 1e-11);
    /* prediction through the public entry point */
    double pred[N];
    CHECK(ls_lm_predict(m, X, N, pred, NULL) == LS_OK);
    for (int i = 0; i < N; i++) {
        double f = z[0];
        for (int j = 0; j < P; j++) f += z[j + 1] * X[i * P + j];
        CHECK_NEAR(pred[i], f, 1e-11);
    }
    ls_lm_free(m);

    /* standardised: the same predictions, coefficients scaled by the sd, raw ones unchanged */
    spec.standardize = true;
    m = ls_lm_fit(X, y, N, P, &spec);
    CHECK(m != NULL);
    for (int j = 0; j < P; j++) {
        double mu = 0, ss = 0;
        for (int i = 0; i < N; i++) mu += X[i * P + j] / N;
        for (int i = 0; i < N; i++) ss += (X[i * P + j] - mu) * (X[i * P + j] - mu);
        double sd = sqrt(ss / N);
        CHECK_NEAR(m->scale[j], sd, 1e-13);
        CHECK_NEAR(m->coef[j], z[j + 1] * sd, 1e-12);
        CHECK_NEAR(m->coef_raw[j], z[j + 1], 1e-12);
        CHECK_NEAR(m->coef_se[j], sigma * sqrt(inv[(j + 1) * (P + 2)]) * sd, 1e-11);
    }
    CHECK_NEAR(m->intercept, ybar, 1e-12);
    CHECK_NEAR(m->intercept_se, sigma / sqrt(N), 1e-12);
    CHECK_NEAR(m->r2, 1 - rss / tss, 1e-12);
    ls_lm_free(m);

    /* intercept-only (p = 0): predicts the mean */
    m = ls_lm_fit(X, y, N, 0, &spec);
    CHECK(m != NULL && m->rank == 0);
    if (m) {
        CHECK_NEAR(m->intercept_raw, ybar, 1e-12);
        CHECK_NEAR(m->r2, 0.0, 1e-12);
        CHECK_NEAR(m->intercept_raw_se, sqrt(tss / (N - 1)) / sqrt(N), 1e-12);
        ls_lm_free(m);
    }
}

static void test_ols_no_intercept(void)
{
    enum { N = 40, P = 3 };
    double X[N * P], y[N];
    make_problem(X, y, N, P, 0.5);
    ls_lm_spec spec;
    ls_lm_spec_init(&spec, LS_LM_OLS);
    spec.intercept = false;
    ls_lm *m = ls_lm_fit(X, y, N, P, &spec);
    CHECK(m != NULL);
    if (!m) return;
    /* X^T (y - X b) = 0 */
    for (int j = 0; j < P; j++) {
        double g = 0;
        for (int i = 0; i < N; i++) {
            double f = 0;
            for (int l = 0; l < P; l++) f += m->coef_raw[l] * X[i * P + l];
            g += X[i * P + j] * (y[i] - f);
        }
        CHECK_NEAR(g, 0.0, 1e-10);
    }
    CHECK(m->intercept_raw == 0.0 && isnan(m->intercept_raw_se));
    CHECK_NEAR(m->df_resid, N - P, 0);
    ls_lm_free(m);
}

static void test_rank_deficient(void)
{
    enum { N = 30, P = 4 };
    double X[N * P], y[N];
    make_problem(X, y, N, P, 0.5);
    /* column 3 = 2 * column 1 - column 2: rank 3, columns 1..3 aliased, column 4 not */
    for (int i = 0; i < N; i++) X[i * P + 2] = 2 * X[i * P] - X[i * P + 1];
    ls_lm_spec spec;
    ls_lm_spec_init(&spec, LS_LM_OLS);
    ls_lm *m = ls_lm_fit(X, y, N, P, &spec);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(m->rank == 3);
    CHECK(m->aliased[0] && m->aliased[1] && m->aliased[2] && !m->aliased[3]);
    for (int j = 0; j < P; j++) CHECK(isnan(m->coef_se[j]));
    CHECK(isnan(m->intercept_raw_se));
    CHECK_NEAR(m->df_resid, N - 3 - 1, 0);
    /* minimum norm: the coefficients are orthogonal to the null vector (2, -1, -1, 0) */
    CHECK_NEAR(2 * m->coef[0] - m->coef[1] - m->coef[2], 0.0, 1e-10);
    /* and the fit is the least-squares fit on the 3 independent columns (+ intercept) */
    double X3[N * 3], z[4];
    for (int i = 0; i < N; i++) {
        X3[i * 3] = X[i * P]; X3[i * 3 + 1] = X[i * P + 1]; X3[i * 3 + 2] = X[i * P + 3];
    }
    normal_equations(X3, y, N, 3, 0.0, z, NULL);
    double rss = 0;
    for (int i = 0; i < N; i++) {
        double f = z[0] + z[1] * X3[i * 3] + z[2] * X3[i * 3 + 1] + z[3] * X3[i * 3 + 2];
        rss += (y[i] - f) * (y[i] - f);
    }
    CHECK_NEAR(m->rss, rss, 1e-10);
    CHECK_NEAR(m->coef[3], z[3], 1e-10);
    ls_lm_free(m);

    /* a constant column is aliased with the intercept and gets coefficient exactly 0 */
    for (int i = 0; i < N; i++) X[i * P + 2] = 3.25;
    spec.standardize = true;
    m = ls_lm_fit(X, y, N, P, &spec);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(m->rank == 3 && m->aliased[2] && !m->aliased[0] && !m->aliased[1] && !m->aliased[3]);
    CHECK(m->coef[2] == 0.0 && m->coef_raw[2] == 0.0 && m->scale[2] == 1.0);
    double x1[P] = {0.1, 0.2, 100.0, 0.3}, x2[P] = {0.1, 0.2, -7.0, 0.3}, p1, p2;
    CHECK(ls_lm_predict(m, x1, 1, &p1, NULL) == LS_OK && ls_lm_predict(m, x2, 1, &p2, NULL) == LS_OK);
    CHECK(p1 == p2);   /* the constant column never moves a prediction */
    ls_lm_free(m);

    /* n <= p: an interpolating minimum-norm fit, adjusted R^2 and sigma undefined */
    enum { NS = 4, PS = 6 };
    double Xs[NS * PS], ys[NS];
    make_problem(Xs, ys, NS, PS, 0.5);
    spec.standardize = false;
    m = ls_lm_fit(Xs, ys, NS, PS, &spec);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(m->rank == NS - 1);   /* centring removes one dimension */
    CHECK_NEAR(m->rss, 0.0, 1e-20);
    CHECK_NEAR(m->r2, 1.0, 1e-12);
    CHECK(isnan(m->adj_r2) && isnan(m->sigma) && isnan(m->coef_se[0]));
    for (int j = 0; j < PS; j++) CHECK(m->aliased[j]);
    ls_lm_free(m);
}

/* ---- ridge ---- */

static void test_ridge(void)
{
    enum { N = 50, P = 6 };
    double X[N * P], y[N], z[P + 1];
    make_problem(X, y, N, P, 1.0);
    for (int i = 0; i < N; i++) X[i * P + 5] = X[i * P + 4] + 1e-3 * X[i * P];   /* near-collinear */
    ls_lm_spec spec;
    ls_lm_spec_init(&spec, LS_LM_RIDGE);
    double lambdas[] = {0.01, 0.7, 25.0};
    for (int t = 0; t < 3; t++) {
        spec.lambda = lambdas[t];
        ls_lm *m = ls_lm_fit(X, y, N, P, &spec);
        CHECK(m != NULL);
        if (!m) return;
        normal_equations(X, y, N, P, lambdas[t], z, NULL);
        CHECK_NEAR(m->intercept_raw, z[0], 1e-9);
        for (int j = 0; j < P; j++) CHECK_NEAR(m->coef_raw[j], z[j + 1], 1e-9);
        CHECK(isnan(m->coef_se[0]));
        CHECK(m->edf < P && m->edf > 0);
        ls_lm_free(m);
    }
    /* lambda = 0 is OLS */
    spec.lambda = 0.0;
    ls_lm *r = ls_lm_fit(X, y, N, P, &spec);
    ls_lm_spec ols;
    ls_lm_spec_init(&ols, LS_LM_OLS);
    ls_lm *o = ls_lm_fit(X, y, N, P, &ols);
    CHECK(r && o);
    if (r && o)
        for (int j = 0; j < P; j++)
            CHECK_NEAR(r->coef_raw[j], o->coef_raw[j], 1e-12 * (1 + fabs(o->coef_raw[j])));
    ls_lm_free(r);
    ls_lm_free(o);
}

/* The inner CV error of each grid value, recomputed with fixed-lambda fits on the same folds. */
static void test_ridge_cv(void)
{
    enum { N = 45, P = 5, K = 4 };
    double X[N * P], y[N];
    make_problem(X, y, N, P, 3.0);
    double grid[] = {0.001, 0.1, 1.0, 10.0, 100.0, 1000.0};
    ls_lm_spec spec;
    ls_lm_spec_init(&spec, LS_LM_RIDGE);
    spec.lambda_cv = true;
    spec.standardize = true;
    spec.lambdas = grid;
    spec.nlambdas = 6;
    spec.inner_folds = K;
    spec.seed = 7;
    ls_lm *m = ls_lm_fit(X, y, N, P, &spec);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(m->ncv == 6);
    int32_t fold[N];
    ls_rng rng;
    ls_rng_init(&rng, 7);
    CHECK(ls_stats_kfold(N, K, &rng, fold) == LS_OK);
    int best = 0;
    for (int g = 0; g < 6; g++) {
        double sse = 0;
        for (int f = 0; f < K; f++) {
            double Xt[N * P], yt[N];
            int nt = training_rows(X, y, N, P, fold, f, Xt, yt);
            ls_lm_spec fixed = spec;
            fixed.lambda_cv = false;
            fixed.lambda = grid[g];
            ls_lm *mf = ls_lm_fit(Xt, yt, nt, P, &fixed);
            for (int i = 0; i < N; i++)
                if (fold[i] == f) {
                    double pr;
                    ls_lm_predict(mf, X + i * P, 1, &pr, NULL);
                    sse += (y[i] - pr) * (y[i] - pr);
                }
            ls_lm_free(mf);
        }
        CHECK_NEAR(m->cv_mse[g], sse / N, 1e-10);
        CHECK(m->cv_lambdas[g] == grid[g]);
        if (sse / N < m->cv_mse[best] - 1e-12) best = g;
    }
    CHECK(m->lambda == grid[best]);
    /* the final model is the fixed-lambda fit at the chosen lambda on all rows */
    ls_lm_spec fixed = spec;
    fixed.lambda_cv = false;
    fixed.lambda = m->lambda;
    ls_lm *mf = ls_lm_fit(X, y, N, P, &fixed);
    for (int j = 0; j < P; j++) CHECK(mf->coef[j] == m->coef[j]);
    ls_lm_free(mf);
    ls_lm_free(m);

    /* the default grid: 33 values, a quarter decade apart, 10^-6 .. 10^2 times n (standardised) */
    spec.lambdas = NULL;
    m = ls_lm_fit(X, y, N, P, &spec);
    CHECK(m && m->ncv == 33);
    if (m) {
        CHECK_NEAR(m->cv_lambdas[0], N * 1e-6, 1e-15);
        CHECK_NEAR(m->cv_lambdas[32], N * 1e2, 1e-9);
        ls_lm_free(m);
    }
}

/* ---- cross-validation ---- */

static void test_folds(void)
{
    enum { N = 23 };
    int32_t a[N], b[N];
    ls_rng r1, r2;
    ls_rng_init(&r1, 5);
    ls_rng_init(&r2, 5);
    CHECK(ls_stats_kfold(N, 5, &r1, a) == LS_OK);
    CHECK(ls_stats_kfold(N, 5, &r2, b) == LS_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    int count[5] = {0};
    for (int i = 0; i < N; i++) count[a[i]]++;
    CHECK(count[0] == 5 && count[1] == 5 && count[2] == 5 && count[3] == 4 && count[4] == 4);
    CHECK(r1.offset == N);   /* the stream moved on: the next repeat differs */
    CHECK(ls_stats_kfold(N, 5, &r1, b) == LS_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK(ls_stats_holdout(N, 3, &r1, b) == LS_OK);
    int nt = 0;
    for (int i = 0; i < N; i++) {
        CHECK(b[i] == 0 || b[i] == -1);
        nt += b[i] == 0;
    }
    CHECK(nt == 3);
    CHECK(ls_stats_kfold(N, 1, &r1, b) == LS_ERR_ARG);
    CHECK(ls_stats_kfold(3, 4, &r1, b) == LS_ERR_ARG);
    CHECK(ls_stats_holdout(N, N, &r1, b) == LS_ERR_ARG);
    CHECK(ls_stats_seed(1, 0) != ls_stats_seed(1, 1) && ls_stats_seed(1, 0) != ls_stats_seed(2, 0));
}

static void test_cv_predict(void)
{
    enum { N = 37, P = 4, K = 5 };
    double X[N * P], y[N], pred[N], pred2[N];
    make_problem(X, y, N, P, 1.0);
    int32_t fold[N];
    ls_rng rng;
    ls_rng_init(&rng, 3);
    CHECK(ls_stats_kfold(N, K, &rng, fold) == LS_OK);
    fold[0] = -1;   /* always trains */
    ls_lm_spec spec;
    ls_lm_spec_init(&spec, LS_LM_RIDGE);
    spec.lambda_cv = true;
    spec.standardize = true;
    spec.inner_folds = 3;
    int def = -1;
    CHECK(ls_lm_cv_predict(X, y, N, P, fold, K, &spec, pred, &def) == LS_OK);
    CHECK(def == 0);
    CHECK(isnan(pred[0]));
    for (int f = 0; f < K; f++) {
        double Xt[N * P], yt[N];
        int nt = training_rows(X, y, N, P, fold, f, Xt, yt);
        ls_lm_spec sub = spec;
        sub.seed = ls_stats_seed(spec.seed, (uint64_t)f);
        ls_lm *m = ls_lm_fit(Xt, yt, nt, P, &sub);
        CHECK(m != NULL);
        for (int i = 0; i < N; i++)
            if (fold[i] == f) {
                double pr;
                ls_lm_predict(m, X + i * P, 1, &pr, NULL);
                CHECK(pr == pred[i]);
            }
        ls_lm_free(m);
    }
    CHECK(ls_lm_cv_predict(X, y, N, P, fold, K, &spec, pred2, NULL) == LS_OK);
    CHECK(memcmp(pred + 1, pred2 + 1, (N - 1) * sizeof(double)) == 0);

    ls_scores sc;
    CHECK(ls_stats_scores(y + 1, pred + 1, N - 1, &sc, NULL) == LS_OK);
    double m = 0, tot = 0, res = 0, ab = 0, bias = 0;
    for (int i = 1; i < N; i++) m += y[i] / (N - 1);
    for (int i = 1; i < N; i++) {
        tot += (y[i] - m) * (y[i] - m);
        res += (y[i] - pred[i]) * (y[i] - pred[i]);
        ab += fabs(y[i] - pred[i]);
        bias += pred[i] - y[i];
    }
    CHECK_NEAR(sc.r2, 1 - res / tot, 1e-12);
    CHECK_NEAR(sc.rmse, sqrt(res / (N - 1)), 1e-12);
    CHECK_NEAR(sc.mae, ab / (N - 1), 1e-12);
    CHECK_NEAR(sc.bias, bias / (N - 1), 1e-12);
    double c[3] = {2, 2, 2}, pc[3] = {1, 2, 3};
    CHECK(ls_stats_scores(c, pc, 3, &sc, NULL) == LS_OK && isnan(sc.r2));

    /* a fold that holds every row */
    int32_t one[N];
    for (int i = 0; i < N; i++) one[i] = 0;
    CHECK(ls_lm_cv_predict(X, y, N, P, one, 1, &spec, pred, NULL) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "holds every row") != NULL);
    one[3] = 4;
    CHECK(ls_lm_cv_predict(X, y, N, P, one, 2, &spec, pred, NULL) == LS_ERR_ARG);
}

/* ---- rank measures ---- */

static double tau_brute(const double *x, const double *y, int n, ls_tau_kind kind)
{
    long c = 0, d = 0, tx = 0, ty = 0, n0 = (long)n * (n - 1) / 2;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double a = x[i] - x[j], b = y[i] - y[j];
            if (a == 0) tx++;
            if (b == 0) ty++;
            if (a * b > 0) c++;
            if (a * b < 0) d++;
        }
    if (kind == LS_TAU_A) return (double)(c - d) / n0;
    return (double)(c - d) / sqrt((double)(n0 - tx) * (double)(n0 - ty));
}

static void test_rank(void)
{
    enum { N = 97 };
    double x[N], y[N], t;
    for (int rep = 0; rep < 20; rep++) {
        int levels = rep < 10 ? 5 : 1000;   /* many ties, then few */
        for (int i = 0; i < N; i++) {
            x[i] = floor(check_uniform() * levels);
            y[i] = floor(check_uniform() * levels) + (rep % 3 == 0 ? x[i] : 0);
        }
        CHECK(ls_stats_kendall(x, y, N, LS_TAU_B, &t, NULL) == LS_OK);
        CHECK_NEAR(t, tau_brute(x, y, N, LS_TAU_B), 1e-14);
        CHECK(ls_stats_kendall(x, y, N, LS_TAU_A, &t, NULL) == LS_OK);
        CHECK_NEAR(t, tau_brute(x, y, N, LS_TAU_A), 1e-14);
    }
    for (int n = 0; n < 12; n++) {   /* every small size, all merge-sort run shapes */
        for (int i = 0; i < n; i++) { x[i] = check_uniform(); y[i] = floor(check_uniform() * 3); }
        CHECK(ls_stats_kendall(x, y, n, LS_TAU_B, &t, NULL) == LS_OK);
        double want = n >= 2 ? tau_brute(x, y, n, LS_TAU_B) : NAN;
        if (isnan(want)) CHECK(isnan(t));
        else CHECK_NEAR(t, want, 1e-14);
    }
    /* perfect orders, constants */
    double a[5] = {1, 2, 3, 4, 5}, b[5] = {10, 20, 30, 40, 50}, c5[5] = {3, 3, 3, 3, 3};
    CHECK(ls_stats_kendall(a, b, 5, LS_TAU_B, &t, NULL) == LS_OK);
    CHECK_NEAR(t, 1.0, 1e-15);
    CHECK(ls_stats_kendall(b, a, 5, LS_TAU_A, &t, NULL) == LS_OK && t == 1.0);
    double rb[5] = {50, 40, 30, 20, 10};
    CHECK(ls_stats_kendall(a, rb, 5, LS_TAU_B, &t, NULL) == LS_OK);
    CHECK_NEAR(t, -1.0, 1e-15);
    CHECK(ls_stats_kendall(a, c5, 5, LS_TAU_B, &t, NULL) == LS_OK && isnan(t));
    CHECK(ls_stats_kendall(a, c5, 5, LS_TAU_A, &t, NULL) == LS_OK && t == 0.0);
    CHECK(ls_stats_pearson(a, c5, 5, &t, NULL) == LS_OK && isnan(t));
    CHECK(ls_stats_pearson(a, b, 5, &t, NULL) == LS_OK && t == 1.0);
    /* Spearman: ranks with ties, then Pearson; a monotone transform keeps rho */
    double u[6] = {0.5, 2.0, 2.0, -1.0, 7.0, 2.0}, ranks[6];
    CHECK(ls_stats_rank(u, 6, ranks, NULL) == LS_OK);
    double want[6] = {2, 4, 4, 1, 6, 4};
    for (int i = 0; i < 6; i++) CHECK(ranks[i] == want[i]);
    double v[6] = {1, 3, 2, 0, 9, 5}, ev[6], r1, r2;
    for (int i = 0; i < 6; i++) ev[i] = exp(v[i]);
    CHECK(ls_stats_spearman(u, v, 6, &r1, NULL) == LS_OK);
    CHECK(ls_stats_spearman(u, ev, 6, &r2, NULL) == LS_OK);
    CHECK(r1 == r2);
    double rv[6];
    ls_stats_rank(v, 6, rv, NULL);
    double rp;
    ls_stats_pearson(ranks, rv, 6, &rp, NULL);
    CHECK(r1 == rp);
}

/* ---- errors and allocation failures ---- */

static void test_errors(void)
{
    enum { N = 20, P = 3 };
    double X[N * P], y[N], out[N];
    make_problem(X, y, N, P, 1.0);
    ls_lm_spec spec;
    ls_lm_spec_init(&spec, LS_LM_OLS);
    spec.who = "ols";
    X[7 * P + 1] = NAN;
    CHECK(ls_lm_fit(X, y, N, P, &spec) == NULL);
    CHECK(strcmp(ls_error_message(), "ols: X has a NaN at row 8, column 2") == 0);
    X[7 * P + 1] = 0.5;
    y[3] = INFINITY;
    CHECK(ls_lm_fit(X, y, N, P, &spec) == NULL);
    CHECK(strcmp(ls_error_message(), "ols: y has an infinity at row 4") == 0);
    y[3] = 0.5;
    CHECK(ls_lm_fit(X, y, 0, P, &spec) == NULL);
    spec.kind = LS_LM_RIDGE;
    spec.lambda = -1;
    CHECK(ls_lm_fit(X, y, N, P, &spec) == NULL && strstr(ls_error_message(), "lambda") != NULL);
    spec.lambda_cv = true;
    spec.inner_folds = 30;
    CHECK(ls_lm_fit(X, y, N, P, &spec) == NULL);
    CHECK(strstr(ls_error_message(), "at least 30 rows") != NULL);
    spec.inner_folds = 5;
    double bad[2] = {1.0, 0.0};
    spec.lambdas = bad;
    spec.nlambdas = 2;
    CHECK(ls_lm_fit(X, y, N, P, &spec) == NULL && strstr(ls_error_message(), "lambdas[2]") != NULL);
    double tau;
    double xs[3] = {1, NAN, 2};
    CHECK(ls_stats_kendall(xs, xs, 3, LS_TAU_B, &tau, "kendall_tau") == LS_ERR_ARG);
    CHECK(strcmp(ls_error_message(), "kendall_tau: the first sample has a NaN at row 2") == 0);

    /* every allocation of a ridge-CV fit and of a CV run can fail without leaking */
    spec.lambdas = NULL;
    spec.standardize = true;
    int32_t fold[N];
    for (int i = 0; i < N; i++) fold[i] = i % 4;
    size_t live = ls_alloc_live_bytes();
    int failures = 0;
    for (long k = 1; k < 200; k++) {
        ls_alloc_fail_after(k);
        ls_lm *m = ls_lm_fit(X, y, N, P, &spec);
        ls_status st = ls_lm_cv_predict(X, y, N, P, fold, 4, &spec, out, NULL);
        ls_alloc_fail_after(0);
        if (!m || st) failures++;
        ls_lm_free(m);
    }
    CHECK(failures > 5);
    CHECK(ls_alloc_live_bytes() == live);
}

int main(void)
{
    test_ols_full_rank();
    test_ols_no_intercept();
    test_rank_deficient();
    test_ridge();
    test_ridge_cv();
    test_folds();
    test_cv_predict();
    test_rank();
    test_errors();
    return check_done("test_stats");
}
