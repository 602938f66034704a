/* Statistics for studies: linear models (OLS and ridge) over LAPACK, cross-validation folds and
 * out-of-fold predictions, scores (R², RMSE, MAE), and rank measures (Kendall τ, Spearman, Pearson).
 * docs/stats.md has the formulas; the Lua front end is lualib/landscape/stats/.
 *
 * Data are plain row-major double arrays: X is n x p (row i at X + i * p), y has n entries. Inputs
 * must be finite: every entry point checks and fails with LS_ERR_ARG naming the row and column of
 * the first NaN or infinity. Messages start with spec->who (or the function's own name), so the Lua
 * binding can pass the name the user called ("cross_validate: X has a NaN at row 3, column 2").
 * Rows and columns in messages are 1-based, as the user sees them.
 *
 * Determinism: the only randomness is the fold assignment (Philox through ls_rng), and every loop
 * runs in a fixed order, so the same inputs and seed give the same bits for a given OpenBLAS thread
 * count (LAPACK's SVD goes through OpenBLAS). */
#ifndef LS_STATS_H
#define LS_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/status.h"

/* ==== linear models ========================================================================== */

typedef enum ls_lm_kind { LS_LM_OLS = 0, LS_LM_RIDGE = 1 } ls_lm_kind;

/* How to fit. ls_lm_spec_init fills the defaults shown. */
typedef struct ls_lm_spec {
    ls_lm_kind kind;        /* LS_LM_OLS */
    bool intercept;         /* true: an unpenalised intercept (the features and y are centred) */
    bool standardize;       /* false: divide each feature by its population sd (training rows) */
    double lambda;          /* ridge penalty, >= 0 (0: OLS's minimum-norm solution) */
    bool lambda_cv;         /* false: ridge chooses lambda by inner k-fold CV over the grid */
    const double *lambdas;  /* NULL: the default grid (docs/stats.md); else nlambdas values > 0 */
    int nlambdas;
    int inner_folds;        /* 5: folds of the inner CV (>= 2) */
    uint64_t seed;          /* 1: seed of the inner CV folds */
    double rcond;           /* 0: singular values <= rcond * s_max are zero; <= 0 means
                             * max(n, p) * DBL_EPSILON, NumPy's lstsq default */
    const char *who;        /* NULL: "lm_fit"; names the caller in error messages */
} ls_lm_spec;

void ls_lm_spec_init(ls_lm_spec *s, ls_lm_kind kind);

/* A fitted model. Coefficients come in two scales: `coef` and `intercept` on the features as the
 * solver saw them (standardised when spec.standardize: then intercept is the mean of y), `coef_raw`
 * and `intercept_raw` on the features as given (the same numbers without standardisation), so that
 *     prediction = intercept_raw + sum_j coef_raw[j] x[j]
 *                = offset + sum_j coef[j] (x[j] - mean[j]) / scale[j]
 * (the second form, about the training means, is how predictions are computed). */
typedef struct ls_lm {
    int64_t n;              /* training rows */
    int p;                  /* features */
    ls_lm_kind kind;
    bool has_intercept, standardize;
    double *coef, *coef_se;          /* p each; se NaN where undefined (see below) */
    double *coef_raw, *coef_raw_se;  /* p each */
    double *mean, *scale;            /* p each: centring (0 without intercept) and scaling (1 unless
                                      * standardize; also 1 for a constant column) */
    bool *aliased;                   /* p: the column lies partly in the null space of the design */
    double intercept, intercept_se, intercept_raw, intercept_raw_se;
    double offset;                   /* the prediction at the training means (mean of y with an
                                      * intercept, else 0) */
    int rank;                        /* numerical rank of the (centred, scaled) n x p design */
    double lambda;                   /* the penalty used (0 for OLS) */
    double edf;                      /* effective degrees of freedom sum s^2 / (s^2 + lambda) */
    double df_model, df_resid;       /* OLS: rank, n - rank - intercept; ridge: p, n - p - intercept */
    double rss, tss, r2, adj_r2, rmse, mae, sigma;
    int ncv;                         /* ridge with lambda_cv: the grid, its inner-CV mean sq. error */
    double *cv_lambdas, *cv_mse;
} ls_lm;

/* Fit on the n rows of X (n x p, row-major) and y. Standard errors (OLS only) use
 * sigma^2 = rss / df_resid and are NaN when the design is rank deficient (rank < p), when
 * df_resid <= 0, and for ridge. n >= 1, p >= 0 (p = 0: the intercept-only model). NULL on error. */
ls_lm *ls_lm_fit(const double *X, const double *y, int64_t n, int p, const ls_lm_spec *spec);
void ls_lm_free(ls_lm *m);
/* out[i] = prediction for row i of X (n x m->p, row-major). Fails on a non-finite entry. */
ls_status ls_lm_predict(const ls_lm *m, const double *X, int64_t n, double *out, const char *who);

/* ==== cross-validation ======================================================================= */

/* A k-fold assignment of n rows: a uniformly random permutation from rng (it advances by n
 * counters), then positions are cut into k contiguous folds, the first n % k of size n / k + 1 and
 * the rest n / k (scikit-learn's KFold with shuffle). fold[row] in 0..k-1. Needs 2 <= k <= n. */
ls_status ls_stats_kfold(int64_t n, int k, ls_rng *rng, int32_t *fold);
/* A random holdout: ntest rows (the first ntest of a permutation from rng) get fold 0, the others
 * -1 (never tested). Needs 1 <= ntest < n. */
ls_status ls_stats_holdout(int64_t n, int64_t ntest, ls_rng *rng, int32_t *fold);

/* Out-of-fold predictions. For each fold f in 0..k-1 the model is fitted on the rows with
 * fold != f (standardisation and any inner CV see those rows only) and predicts the rows with
 * fold == f into pred; rows with fold < 0 are always in the training set and their pred is NaN.
 * A ridge fit with lambda_cv in fold f draws its inner folds from seed ls_stats_seed(spec->seed, f).
 * *deficient (may be NULL) receives the number of fits whose design was rank deficient. */
ls_status ls_lm_cv_predict(const double *X, const double *y, int64_t n, int p, const int32_t *fold,
                           int k, const ls_lm_spec *spec, double *pred, int *deficient);

/* A seed derived from (seed, i) by SplitMix64 mixing: distinct streams for repeats and folds. */
uint64_t ls_stats_seed(uint64_t seed, uint64_t i);

/* Scores of predictions against targets over n >= 1 pairs:
 * r2 = 1 - SS_res / SS_tot (SS_tot about the mean of y; NaN when y is constant), rmse, mae, and
 * bias = mean(pred - y). Fails on non-finite input. */
typedef struct ls_scores { double r2, rmse, mae, bias; } ls_scores;
ls_status ls_stats_scores(const double *y, const double *pred, int64_t n, ls_scores *out,
                          const char *who);

/* ==== rank measures ========================================================================== */

/* Kendall's tau-b (ties corrected: (C - D) / sqrt((n0 - n1)(n0 - n2))) and tau-a ((C - D) / n0,
 * the form of Jiang et al.'s granulated coefficient), by Knight's O(n log n) algorithm with exact
 * integer counts. NaN when n < 2, and for tau-b when either input is constant. */
typedef enum ls_tau_kind { LS_TAU_B = 0, LS_TAU_A = 1 } ls_tau_kind;
ls_status ls_stats_kendall(const double *x, const double *y, int64_t n, ls_tau_kind kind,
                           double *tau, const char *who);
/* Pearson's r (two-pass, NaN when either input is constant or n < 2). */
ls_status ls_stats_pearson(const double *x, const double *y, int64_t n, double *r, const char *who);
/* Spearman's rho: Pearson's r of the average ranks. */
ls_status ls_stats_spearman(const double *x, const double *y, int64_t n, double *rho,
                            const char *who);
/* Average ranks 1..n (ties share the mean of their positions), scipy.stats.rankdata's default. */
ls_status ls_stats_rank(const double *x, int64_t n, double *ranks, const char *who);

/* Fails naming `who`, `what` and the 1-based row (and column when p > 1) of the first entry of
 * the n x p array that is not finite. */
ls_status ls_stats_check_finite(const double *a, int64_t n, int p, const char *what,
                                const char *who);

#endif
