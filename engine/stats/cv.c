/* Cross-validation: seeded fold assignments, out-of-fold predictions, and scores. The repeats,
 * holdout splits and groups are driven from Lua (lualib/landscape/stats/cv.lua); the loop over the
 * folds of one assignment, where the fits happen, is here. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "stats/stats.h"
#include "stats/stats_internal.h"

ls_status ls_stats_check_finite(const double *a, int64_t n, int p, const char *what,
                                const char *who)
{
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < p; j++) {
            double v = a[i * p + j];
            if (isfinite(v)) continue;
            const char *kind = isnan(v) ? "a NaN" : "an infinity";
            if (p == 1)
                return ls_error_set(LS_ERR_ARG, "%s: %s has %s at row %lld", who, what, kind,
                                    (long long)i + 1);
            return ls_error_set(LS_ERR_ARG, "%s: %s has %s at row %lld, column %d", who, what, kind,
                                (long long)i + 1, j + 1);
        }
    return LS_OK;
}

uint64_t ls_stats_seed(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

ls_status ls_stats_kfold(int64_t n, int k, ls_rng *rng, int32_t *fold)
{
    if (k < 2 || k > n)
        return ls_error_set(LS_ERR_ARG, "kfold: need 2 <= folds <= rows, got %d folds for %lld rows",
                            k, (long long)n);
    int64_t *perm = ls_malloc((size_t)n * sizeof(int64_t), "kfold");
    if (!perm) return ls_error_code();
    ls_rng_permutation(rng, perm, n);
    int64_t base = n / k, extra = n % k, pos = 0;
    for (int f = 0; f < k; f++) {
        int64_t size = base + (f < extra ? 1 : 0);
        for (int64_t i = 0; i < size; i++) fold[perm[pos++]] = f;
    }
    ls_free(perm);
    return LS_OK;
}

ls_status ls_stats_holdout(int64_t n, int64_t ntest, ls_rng *rng, int32_t *fold)
{
    if (ntest < 1 || ntest >= n)
        return ls_error_set(LS_ERR_ARG, "holdout: need 1 <= test rows < rows, got %lld of %lld",
                            (long long)ntest, (long long)n);
    int64_t *perm = ls_malloc((size_t)n * sizeof(int64_t), "holdout");
    if (!perm) return ls_error_code();
    ls_rng_permutation(rng, perm, n);
    for (int64_t i = 0; i < n; i++) fold[perm[i]] = i < ntest ? 0 : -1;
    ls_free(perm);
    return LS_OK;
}

ls_status ls_lm_cv_predict(const double *X, const double *y, int64_t n, int p, const int32_t *fold,
                           int k, const ls_lm_spec *spec, double *pred, int *deficient)
{
    const char *who = spec->who ? spec->who : "lm_cv_predict";
    if (deficient) *deficient = 0;
    if (k < 1) return ls_error_set(LS_ERR_ARG, "%s: need at least one fold, got %d", who, k);
    ls_status st = ls_stats_check_finite(X, n, p, "X", who);
    if (!st) st = ls_stats_check_finite(y, n, 1, "y", who);
    if (st) return st;
    for (int64_t i = 0; i < n; i++) {
        if (fold[i] >= k)
            return ls_error_set(LS_ERR_ARG, "%s: row %lld is in fold %d, but there are %d folds",
                                who, (long long)i + 1, (int)fold[i] + 1, k);
        pred[i] = NAN;
    }
    int64_t *tr = ls_malloc((size_t)(2 * n) * sizeof(int64_t), who);
    if (!tr) return ls_error_code();
    int64_t *te = tr + n;
    double *out = ls_malloc((size_t)n * sizeof(double), who);
    if (!out) {
        ls_free(tr);
        return ls_error_code();
    }
    ls_lm_spec sub = *spec;
    sub.who = who;
    for (int f = 0; f < k && !st; f++) {
        int64_t ntr = 0, nte = 0;
        for (int64_t i = 0; i < n; i++) {
            if (fold[i] == f) te[nte++] = i;
            else tr[ntr++] = i;
        }
        if (nte == 0) continue;
        if (ntr == 0) {
            st = ls_error_set(LS_ERR_ARG, "%s: fold %d holds every row, nothing is left to fit on",
                              who, f + 1);
            break;
        }
        sub.seed = ls_stats_seed(spec->seed, (uint64_t)f);
        ls_lm *m = lm_fit_rows(X, y, p, tr, ntr, &sub, who);
        if (!m) {
            st = ls_error_code();
            break;
        }
        if (deficient && m->rank < p) (*deficient)++;
        lm_predict_rows(m->mean, m->scale, m->coef, m->offset, p, X, te, nte, out);
        for (int64_t i = 0; i < nte; i++) pred[te[i]] = out[i];
        ls_lm_free(m);
    }
    ls_free(out);
    ls_free(tr);
    return st;
}

ls_status ls_stats_scores(const double *y, const double *pred, int64_t n, ls_scores *out,
                          const char *who)
{
    if (!who) who = "scores";
    if (n < 1) return ls_error_set(LS_ERR_ARG, "%s: no predictions to score", who);
    ls_status st = ls_stats_check_finite(y, n, 1, "y", who);
    if (!st) st = ls_stats_check_finite(pred, n, 1, "the predictions", who);
    if (st) return st;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += y[i];
    double m = s / (double)n, r = 0.0;
    for (int64_t i = 0; i < n; i++) r += y[i] - m;
    m += r / (double)n;
    double tot = 0.0, res = 0.0, abs = 0.0, bias = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = y[i] - m, e = pred[i] - y[i];
        tot += d * d;
        res += e * e;
        abs += fabs(e);
        bias += e;
    }
    out->r2 = tot > 0 ? 1.0 - res / tot : NAN;
    out->rmse = sqrt(res / (double)n);
    out->mae = abs / (double)n;
    out->bias = bias / (double)n;
    return LS_OK;
}
