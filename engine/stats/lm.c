/* Linear models: OLS and ridge through one thin SVD of the centred (and optionally standardised)
 * design, and ridge's inner cross-validation of the penalty.
 *
 * With the intercept, features and y are centred on the training rows, so the intercept is not
 * penalised and the problem is min ||yc - A b||^2 (+ lambda ||b||^2) over the slopes b, with
 * A = (X - mean) / scale (n x p). With A = U S V^T (thin: k = min(n, p) singular values),
 *     b(lambda) = V diag(w) U^T yc,   w_i = 1 / s_i (OLS) or s_i / (s_i^2 + lambda) (ridge),
 * keeping only the s_i above the rank cutoff rcond * s_max (NumPy's lstsq rule). For OLS this is
 * the minimum-norm least-squares solution (scikit-learn's LinearRegression: centre, then lstsq).
 * One SVD serves every lambda, which is what makes ridge's inner CV over a grid cheap: per inner
 * fold one SVD, then O(k) per lambda for the coefficients and O(ntest k) for the predictions.
 *
 * Why the SVD rather than plain QR or the normal equations: the study's features (log quartiles of
 * margin distributions) are strongly collinear, so the normal equations would square a condition
 * number of 1e4..1e6; the SVD reports the rank honestly and gives ridge for free. A fit at the
 * study's size (n = 377, p = 40) takes a fraction of a millisecond (docs/stats.md, Timings). */
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "stats/stats.h"
#include "stats/stats_internal.h"

void ls_lm_spec_init(ls_lm_spec *s, ls_lm_kind kind)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->intercept = true;
    s->standardize = false;
    s->lambda = 0.0;
    s->lambda_cv = false;
    s->lambdas = NULL;
    s->nlambdas = 0;
    s->inner_folds = 5;
    s->seed = 1;
    s->rcond = 0.0;
    s->who = NULL;
}

/* ---- the design: centring, scaling, SVD ---- */

typedef struct lm_design {
    int64_t n;          /* rows */
    int p, k;           /* features, min(n, p) */
    int rank;
    double ybar, tss;
    double *mean, *scale;   /* p */
    unsigned char *constant; /* p: constant on these rows (then zeroed when centred) */
    double *s;          /* k, descending */
    double *Vt;         /* k x p, column-major (leading dimension k) */
    double *uty;        /* k: U^T yc */
    void *block;
} lm_design;

static void lm_design_free(lm_design *d)
{
    ls_free(d->block);
    d->block = NULL;
}

/* Mean of v[0..n) with one correction pass, so large offsets keep their precision. */
static double lm_mean(const double *v, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    double m = s / (double)n;
    double r = 0.0;
    for (int64_t i = 0; i < n; i++) r += v[i] - m;
    return m + r / (double)n;
}

/* Build the design from rows[0..nr) of X (row-major, p columns) and y.
 *
 * A tall design (n >= p) is first reduced by a QR factorisation, A = Q R, and the SVD is taken of
 * the p x p factor R = U_R S V^T, so U^T yc = U_R^T (Q^T yc) without ever forming the n x p matrix
 * U: half the work of dgesdd's own thin SVD, which builds Q and U explicitly. A wide one (n < p)
 * goes to dgesdd directly (its U is n x n). */
static ls_status lm_design_build(lm_design *d, const double *X, const double *y, int p,
                                 const int64_t *rows, int64_t nr, const ls_lm_spec *spec,
                                 const char *who)
{
    memset(d, 0, sizeof *d);
    d->n = nr;
    d->p = p;
    d->k = (int)(nr < p ? nr : p);
    int k = d->k;
    size_t kk = (size_t)k * (size_t)k;
    size_t doubles = (size_t)p * 2 + (size_t)nr * 2 + (size_t)nr * (size_t)p + (size_t)k * 3 +
                     (size_t)k * (size_t)p + 2 * kk;
    size_t bytes = doubles * sizeof(double) + (size_t)p + 1;
    char *blk = ls_malloc(bytes, who);
    if (!blk) return ls_error_code();
    d->block = blk;
    double *a = (double *)blk;
    d->mean = a; a += p;
    d->scale = a; a += p;
    double *yc = a; a += nr;
    double *qty = a; a += nr;
    double *A = a; a += (size_t)nr * (size_t)p;
    d->s = a; a += k;
    d->uty = a; a += k;
    double *tau = a; a += k;
    d->Vt = a; a += (size_t)k * (size_t)p;
    double *R = a; a += kk;
    double *Us = a; a += kk;
    d->constant = (unsigned char *)a;

    const double eps = DBL_EPSILON;
    for (int64_t i = 0; i < nr; i++) {   /* gather the rows, column-major */
        const double *x = X + rows[i] * p;
        for (int j = 0; j < p; j++) A[i + (size_t)j * (size_t)nr] = x[j];
    }
    for (int j = 0; j < p; j++) {
        double *col = A + (size_t)j * (size_t)nr;
        double m = lm_mean(col, nr);
        double ss = 0.0;
        for (int64_t i = 0; i < nr; i++) ss += (col[i] - m) * (col[i] - m);
        double var = ss / (double)nr;
        /* scikit-learn's test for a constant feature (rounding error of the variance) */
        double bound = (double)nr * eps * var + ((double)nr * m * eps) * ((double)nr * m * eps);
        d->constant[j] = var <= bound;
        d->mean[j] = spec->intercept ? m : 0.0;
        d->scale[j] = spec->standardize && !d->constant[j] ? sqrt(var) : 1.0;
        if (spec->intercept && d->constant[j]) {
            memset(col, 0, (size_t)nr * sizeof(double));
        } else {
            double mj = d->mean[j], sj = d->scale[j];
            for (int64_t i = 0; i < nr; i++) col[i] = (col[i] - mj) / sj;
        }
    }
    for (int64_t i = 0; i < nr; i++) yc[i] = y[rows[i]];
    double ym = lm_mean(yc, nr);
    d->ybar = spec->intercept ? ym : 0.0;
    d->tss = 0.0;
    for (int64_t i = 0; i < nr; i++) {
        double v = yc[i];
        yc[i] = v - d->ybar;
        qty[i] = yc[i];
        d->tss += (v - ym) * (v - ym);
    }
    if (k == 0) return LS_OK;
    lapack_int info;
    if (nr >= p) {
        info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)nr, p, A, (lapack_int)nr, tau);
        if (!info)
            info = LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', (lapack_int)nr, 1, p, A,
                                  (lapack_int)nr, tau, qty, (lapack_int)nr);
        if (!info) {
            for (int j = 0; j < p; j++)
                for (int i = 0; i < p; i++)
                    R[i + (size_t)j * p] = i <= j ? A[i + (size_t)j * nr] : 0.0;
            info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', p, p, R, p, d->s, Us, p, d->Vt, p);
        }
    } else {
        info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', (lapack_int)nr, p, A, (lapack_int)nr, d->s, Us,
                              (lapack_int)nr, d->Vt, k);
    }
    if (info != 0) {
        lm_design_free(d);
        if (info < 0)
            return ls_error_set(LS_ERR_MEM, "%s: out of memory in the SVD (%lld x %d)", who,
                                (long long)nr, p);
        return ls_error_set(LS_ERR_STATE, "%s: the SVD of the %lld x %d design did not converge",
                            who, (long long)nr, p);
    }
    double rcond = spec->rcond > 0 ? spec->rcond : (double)(nr > p ? nr : p) * eps;
    double tol = rcond * d->s[0];
    d->rank = 0;
    while (d->rank < k && d->s[d->rank] > tol) d->rank++;
    /* U^T yc = Us^T (Q^T yc)[0..k) (tall) or Us^T yc (wide, where qty is still yc) */
    for (int c = 0; c < k; c++) {
        const double *u = Us + (size_t)c * (size_t)k;
        double t = 0.0;
        for (int i = 0; i < k; i++) t += u[i] * qty[i];
        d->uty[c] = t;
    }
    return LS_OK;
}

/* The weight of singular direction c for penalty lambda (0 beyond the rank). */
static inline double lm_weight(const lm_design *d, int c, double lambda)
{
    if (c >= d->rank) return 0.0;
    double s = d->s[c];
    return lambda > 0 ? s / (s * s + lambda) : 1.0 / s;
}

/* beta (p) = V diag(w) U^T yc; exactly 0 for constant columns under an intercept. */
static void lm_coef(const lm_design *d, double lambda, double *beta, bool intercept)
{
    int p = d->p, k = d->k;
    for (int j = 0; j < p; j++) beta[j] = 0.0;
    for (int c = 0; c < d->rank; c++) {
        double t = lm_weight(d, c, lambda) * d->uty[c];
        for (int j = 0; j < p; j++) beta[j] += d->Vt[c + (size_t)j * (size_t)k] * t;
    }
    if (intercept)
        for (int j = 0; j < p; j++)
            if (d->constant[j]) beta[j] = 0.0;
}

/* out[i] = ybar + sum_j beta[j] (X[rows[i], j] - mean[j]) / scale[j] */
void lm_predict_rows(const double *mean, const double *scale, const double *beta, double ybar,
                     int p, const double *X, const int64_t *rows, int64_t nr, double *out)
{
    for (int64_t i = 0; i < nr; i++) {
        const double *x = X + (rows ? rows[i] : i) * p;
        double t = ybar;
        for (int j = 0; j < p; j++) t += beta[j] * ((x[j] - mean[j]) / scale[j]);
        out[i] = t;
    }
}

/* ---- ridge's inner cross-validation ---- */

/* The default grid: 33 values 10^(-6 + g / 4) * ||A||_F^2 / p, g = 0..32, so it scales with the
 * design (with standardised features ||A||_F^2 / p = n). */
#define LM_GRID_DEFAULT 33

static void lm_default_grid(const lm_design *d, double *grid)
{
    double f2 = 0.0;
    for (int c = 0; c < d->k; c++) f2 += d->s[c] * d->s[c];
    double base = d->p > 0 && f2 > 0 ? f2 / d->p : 1.0;
    for (int g = 0; g < LM_GRID_DEFAULT; g++) grid[g] = base * pow(10.0, -6.0 + 0.25 * g);
}

/* Mean squared error of each grid value over an inner k-fold split of rows[0..nr) (every row is
 * predicted once), and the chosen lambda: the smallest error, the largest lambda among equal
 * errors. */
static ls_status lm_inner_cv(const double *X, const double *y, int p, const int64_t *rows,
                             int64_t nr, const ls_lm_spec *spec, const double *grid, int G,
                             double *mse, double *best, const char *who)
{
    int K = spec->inner_folds;
    ls_status st = LS_OK;
    size_t zn = (size_t)nr * (size_t)(p > 0 ? p : 1);
    size_t bytes = (size_t)nr * (sizeof(int32_t) + 2 * sizeof(int64_t)) +
                   (zn + (size_t)p + (size_t)G) * sizeof(double);
    char *blk = ls_malloc(bytes, who);
    if (!blk) return ls_error_code();
    double *zv = (double *)blk;   /* ntest x k */
    double *wu = zv + zn;         /* k: w(lambda) U^T yc */
    double *sse = wu + p;         /* G */
    int64_t *tr = (int64_t *)(sse + G);
    int64_t *te = tr + nr;
    int32_t *fold = (int32_t *)(te + nr);
    for (int g = 0; g < G; g++) sse[g] = 0.0;
    ls_rng rng;
    ls_rng_init(&rng, spec->seed);
    if ((st = ls_stats_kfold(nr, K, &rng, fold))) goto done;
    for (int f = 0; f < K; f++) {
        int64_t ntr = 0, nte = 0;
        for (int64_t i = 0; i < nr; i++) {
            if (fold[i] == f) te[nte++] = rows[i];
            else tr[ntr++] = rows[i];
        }
        lm_design d;
        if ((st = lm_design_build(&d, X, y, p, tr, ntr, spec, who))) goto done;
        int k = d.k;
        /* zv[i, c] = sum_j z_ij V_jc over the test rows, z the centred and scaled features */
        for (int64_t i = 0; i < nte; i++) {
            const double *x = X + te[i] * p;
            double *row = zv + (size_t)i * (size_t)(k > 0 ? k : 1);
            for (int c = 0; c < k; c++) row[c] = 0.0;
            for (int j = 0; j < p; j++) {
                if (spec->intercept && d.constant[j]) continue;
                double z = (x[j] - d.mean[j]) / d.scale[j];
                for (int c = 0; c < d.rank; c++) row[c] += z * d.Vt[c + (size_t)j * (size_t)k];
            }
        }
        for (int g = 0; g < G; g++) {
            for (int c = 0; c < d.rank; c++) wu[c] = lm_weight(&d, c, grid[g]) * d.uty[c];
            double acc = 0.0;
            for (int64_t i = 0; i < nte; i++) {
                const double *row = zv + (size_t)i * (size_t)(k > 0 ? k : 1);
                double t = d.ybar;
                for (int c = 0; c < d.rank; c++) t += row[c] * wu[c];
                double r = y[te[i]] - t;
                acc += r * r;
            }
            sse[g] += acc;
        }
        lm_design_free(&d);
    }
    int gb = 0;
    for (int g = 0; g < G; g++) {
        mse[g] = sse[g] / (double)nr;
        if (mse[g] < mse[gb] || (mse[g] == mse[gb] && grid[g] > grid[gb])) gb = g;
    }
    *best = grid[gb];
done:
    ls_free(blk);
    return st;
}

/* ---- fit ---- */

void ls_lm_free(ls_lm *m)
{
    if (m) ls_free(m);
}

static ls_status lm_check_spec(const ls_lm_spec *spec, int64_t n, int p, const char *who)
{
    if (n < 1) return ls_error_set(LS_ERR_ARG, "%s: no rows to fit", who);
    if (p < 0) return ls_error_set(LS_ERR_ARG, "%s: negative number of features (%d)", who, p);
    if (spec->kind != LS_LM_OLS && spec->kind != LS_LM_RIDGE)
        return ls_error_set(LS_ERR_ARG, "%s: unknown model kind %d", who, (int)spec->kind);
    bool bad_lambda = !(spec->lambda >= 0 && isfinite(spec->lambda));
    if (spec->kind == LS_LM_RIDGE && !spec->lambda_cv && bad_lambda)
        return ls_error_set(LS_ERR_ARG, "%s: lambda must be a finite number >= 0, got %g", who,
                            spec->lambda);
    if (spec->kind == LS_LM_RIDGE && spec->lambda_cv) {
        if (spec->inner_folds < 2)
            return ls_error_set(LS_ERR_ARG, "%s: inner_folds must be >= 2, got %d", who,
                                spec->inner_folds);
        if (n < spec->inner_folds)
            return ls_error_set(LS_ERR_ARG,
                                "%s: lambda = \"cv\" with %d inner folds needs at least %d rows, "
                                "got %lld", who, spec->inner_folds, spec->inner_folds, (long long)n);
        if (spec->lambdas) {
            if (spec->nlambdas < 1)
                return ls_error_set(LS_ERR_ARG, "%s: the lambda grid is empty", who);
            for (int g = 0; g < spec->nlambdas; g++)
                if (!(spec->lambdas[g] > 0 && isfinite(spec->lambdas[g])))
                    return ls_error_set(LS_ERR_ARG,
                                        "%s: lambdas[%d] must be a finite number > 0, got %g", who,
                                        g + 1, spec->lambdas[g]);
        }
    }
    if (!(spec->rcond >= 0 && spec->rcond < 1))
        return ls_error_set(LS_ERR_ARG, "%s: rcond must be in [0, 1), got %g", who, spec->rcond);
    return LS_OK;
}

/* The fit on rows[0..nr) of X and y; inputs already checked. */
ls_lm *lm_fit_rows(const double *X, const double *y, int p, const int64_t *rows, int64_t nr,
                   const ls_lm_spec *spec, const char *who)
{
    if (lm_check_spec(spec, nr, p, who)) return NULL;
    bool ridge = spec->kind == LS_LM_RIDGE;
    lm_design d;
    if (lm_design_build(&d, X, y, p, rows, nr, spec, who)) return NULL;
    int G = 0;
    if (ridge && spec->lambda_cv) G = spec->lambdas ? spec->nlambdas : LM_GRID_DEFAULT;
    size_t bytes = sizeof(ls_lm) + (size_t)p * 6 * sizeof(double) + (size_t)G * 2 * sizeof(double) +
                   (size_t)p * sizeof(bool);
    ls_lm *m = ls_calloc(bytes, who);
    if (!m) {
        lm_design_free(&d);
        return NULL;
    }
    double *a = (double *)(m + 1);
    m->coef = a; a += p;
    m->coef_se = a; a += p;
    m->coef_raw = a; a += p;
    m->coef_raw_se = a; a += p;
    m->mean = a; a += p;
    m->scale = a; a += p;
    m->cv_lambdas = a; a += G;
    m->cv_mse = a; a += G;
    m->aliased = (bool *)a;
    m->ncv = G;
    m->n = nr;
    m->p = p;
    m->kind = spec->kind;
    m->has_intercept = spec->intercept;
    m->standardize = spec->standardize;
    m->rank = d.rank;

    double lambda = ridge ? spec->lambda : 0.0;
    if (G > 0) {
        if (spec->lambdas) memcpy(m->cv_lambdas, spec->lambdas, (size_t)G * sizeof(double));
        else lm_default_grid(&d, m->cv_lambdas);
        if (lm_inner_cv(X, y, p, rows, nr, spec, m->cv_lambdas, G, m->cv_mse, &lambda, who)) {
            lm_design_free(&d);
            ls_free(m);
            return NULL;
        }
    }
    m->lambda = lambda;
    memcpy(m->mean, d.mean, (size_t)p * sizeof(double));
    memcpy(m->scale, d.scale, (size_t)p * sizeof(double));
    lm_coef(&d, lambda, m->coef, spec->intercept);
    int k = d.k;

    /* residuals from the rows themselves (the SVD kept no n x k factor) */
    double rss = 0.0, sabs = 0.0;
    for (int64_t i = 0; i < nr; i++) {
        double f;
        lm_predict_rows(m->mean, m->scale, m->coef, d.ybar, p, X, rows + i, 1, &f);
        double r = y[rows[i]] - f;
        rss += r * r;
        sabs += fabs(r);
    }
    double icpt = spec->intercept ? 1.0 : 0.0;
    m->edf = 0.0;
    for (int c = 0; c < d.rank; c++) m->edf += d.s[c] * lm_weight(&d, c, lambda);
    m->df_model = ridge ? (double)p : (double)d.rank;
    m->df_resid = (double)nr - m->df_model - icpt;
    m->rss = rss;
    m->tss = d.tss;
    m->r2 = d.tss > 0 ? 1.0 - rss / d.tss : NAN;
    m->rmse = sqrt(rss / (double)nr);
    m->mae = sabs / (double)nr;
    m->sigma = m->df_resid > 0 ? sqrt(rss / m->df_resid) : NAN;
    m->adj_r2 = m->df_resid > 0 ? 1.0 - (1.0 - m->r2) * ((double)nr - icpt) / m->df_resid : NAN;

    m->offset = d.ybar;
    m->intercept_raw = d.ybar;
    for (int j = 0; j < p; j++) {
        m->coef_raw[j] = m->coef[j] / d.scale[j];
        m->intercept_raw -= m->coef_raw[j] * d.mean[j];
    }
    m->intercept = spec->standardize ? d.ybar : m->intercept_raw;
    /* a column is aliased when part of e_j lies outside the row space of the design */
    for (int j = 0; j < p; j++) {
        double in = 0.0;
        for (int c = 0; c < d.rank; c++) {
            double v = d.Vt[c + (size_t)j * (size_t)k];
            in += v * v;
        }
        m->aliased[j] = 1.0 - in > 1e-10;
    }
    /* standard errors: Cov(b) = sigma^2 V S^-2 V^T on the solver's scale; the raw intercept adds
     * the covariance with the centring, sigma^2 (1/n + t^T S^-2 t) with t = V^T (mean / scale). */
    bool se_ok = !ridge && d.rank == p && m->df_resid > 0;
    for (int j = 0; j < p; j++) {
        double v = 0.0;
        for (int c = 0; c < d.rank; c++) {
            double t = d.Vt[c + (size_t)j * (size_t)k] / d.s[c];
            v += t * t;
        }
        m->coef_se[j] = se_ok ? m->sigma * sqrt(v) : NAN;
        m->coef_raw_se[j] = se_ok ? m->coef_se[j] / d.scale[j] : NAN;
    }
    m->intercept_raw_se = NAN;
    if (se_ok && spec->intercept) {
        double v = 1.0 / (double)nr;
        for (int c = 0; c < d.rank; c++) {
            double t = 0.0;
            for (int j = 0; j < p; j++)
                t += d.Vt[c + (size_t)j * (size_t)k] * (d.mean[j] / d.scale[j]);
            t /= d.s[c];
            v += t * t;
        }
        m->intercept_raw_se = m->sigma * sqrt(v);
    }
    /* standardised, the features are centred, so the intercept's error is sigma / sqrt(n) */
    m->intercept_se = !spec->standardize ? m->intercept_raw_se
                      : se_ok && spec->intercept ? m->sigma / sqrt((double)nr) : NAN;
    lm_design_free(&d);
    return m;
}

ls_lm *ls_lm_fit(const double *X, const double *y, int64_t n, int p, const ls_lm_spec *spec)
{
    const char *who = spec->who ? spec->who : "lm_fit";
    if (lm_check_spec(spec, n, p, who)) return NULL;
    if (ls_stats_check_finite(X, n, p, "X", who) || ls_stats_check_finite(y, n, 1, "y", who))
        return NULL;
    int64_t *rows = ls_malloc((size_t)n * sizeof(int64_t), who);
    if (!rows) return NULL;
    for (int64_t i = 0; i < n; i++) rows[i] = i;
    ls_lm *m = lm_fit_rows(X, y, p, rows, n, spec, who);
    ls_free(rows);
    return m;
}

ls_status ls_lm_predict(const ls_lm *m, const double *X, int64_t n, double *out, const char *who)
{
    if (!who) who = "lm_predict";
    ls_status st = ls_stats_check_finite(X, n, m->p, "X", who);
    if (st) return st;
    lm_predict_rows(m->mean, m->scale, m->coef, m->offset, m->p, X, NULL, n, out);
    return LS_OK;
}
