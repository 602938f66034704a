/* Shared by the files of engine/stats (not part of the public API in stats.h). */
#ifndef LS_STATS_INTERNAL_H
#define LS_STATS_INTERNAL_H

#include "stats/stats.h"

/* ls_lm_fit on rows[0..nr) of X and y, without the finiteness checks (the caller made them). */
ls_lm *lm_fit_rows(const double *X, const double *y, int p, const int64_t *rows, int64_t nr,
                   const ls_lm_spec *spec, const char *who);
/* out[i] = ybar + sum_j beta[j] (x_ij - mean[j]) / scale[j] for row rows[i] of X (row i if rows is
 * NULL). */
void lm_predict_rows(const double *mean, const double *scale, const double *beta, double ybar,
                     int p, const double *X, const int64_t *rows, int64_t nr, double *out);

#endif
