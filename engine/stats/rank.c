/* Rank measures: Kendall's tau (b and a), Spearman's rho, Pearson's r, average ranks.
 *
 * Kendall's tau by Knight's algorithm (1966), as SciPy computes it: sort the pairs by (x, y); count
 * the pairs tied in x (n1) and tied in both (n3) from the runs of the sorted order; merge-sort the
 * y sequence counting its inversions, which are exactly the discordant pairs D (within a run of
 * equal x the y are already ascending, so ties in x add no inversion, and equal y are not
 * inversions); then count the pairs tied in y (n2) from the sorted y. With n0 = n(n - 1)/2,
 *     C - D = n0 - n1 - n2 + n3 - 2 D,
 *     tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)),   tau_a = (C - D) / n0.
 * Counts are exact 64-bit integers, so the only rounding is in the final division. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "stats/stats.h"

typedef struct rank_pair { double x, y; } rank_pair;

static int rank_cmp_pair(const void *a, const void *b)
{
    const rank_pair *p = a, *q = b;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    if (p->y != q->y) return p->y < q->y ? -1 : 1;
    return 0;
}

/* Sort v[0..n) ascending (buf is scratch); returns the number of pairs i < j with v[i] > v[j]. */
static int64_t rank_merge_count(double *v, double *buf, int64_t n)
{
    int64_t inv = 0;
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                if (v[j] < v[i]) {
                    inv += mid - i;   /* v[j] is below every remaining element of the left run */
                    buf[o++] = v[j++];
                } else {
                    buf[o++] = v[i++];
                }
            }
            while (i < mid) buf[o++] = v[i++];
            while (j < hi) buf[o++] = v[j++];
        }
        memcpy(v, buf, (size_t)n * sizeof(double));
    }
    return inv;
}

static ls_status rank_check(const double *x, const double *y, int64_t n, const char *who)
{
    if (n < 0) return ls_error_set(LS_ERR_ARG, "%s: negative length", who);
    ls_status st = ls_stats_check_finite(x, n, 1, "the first sample", who);
    if (!st && y) st = ls_stats_check_finite(y, n, 1, "the second sample", who);
    return st;
}

ls_status ls_stats_kendall(const double *x, const double *y, int64_t n, ls_tau_kind kind,
                           double *tau, const char *who)
{
    if (!who) who = "kendall_tau";
    ls_status st = rank_check(x, y, n, who);
    if (st) return st;
    *tau = NAN;
    if (n < 2) return LS_OK;
    rank_pair *pr = ls_malloc((size_t)n * sizeof *pr, who);
    double *v = ls_malloc((size_t)n * 2 * sizeof(double), who);
    if (!pr || !v) {
        ls_free(pr);
        ls_free(v);
        return ls_error_code();
    }
    for (int64_t i = 0; i < n; i++) pr[i] = (rank_pair){x[i], y[i]};
    qsort(pr, (size_t)n, sizeof *pr, rank_cmp_pair);
    int64_t n1 = 0, n3 = 0, run_x = 1, run_xy = 1;
    for (int64_t i = 1; i <= n; i++) {
        bool same_x = i < n && pr[i].x == pr[i - 1].x;
        bool same_xy = same_x && pr[i].y == pr[i - 1].y;
        if (same_x) run_x++;
        else { n1 += run_x * (run_x - 1) / 2; run_x = 1; }
        if (same_xy) run_xy++;
        else { n3 += run_xy * (run_xy - 1) / 2; run_xy = 1; }
    }
    for (int64_t i = 0; i < n; i++) v[i] = pr[i].y;
    int64_t dis = rank_merge_count(v, v + n, n);
    int64_t n2 = 0, run_y = 1;
    for (int64_t i = 1; i <= n; i++) {
        if (i < n && v[i] == v[i - 1]) run_y++;
        else { n2 += run_y * (run_y - 1) / 2; run_y = 1; }
    }
    ls_free(pr);
    ls_free(v);
    int64_t n0 = n * (n - 1) / 2;
    double cmd = (double)(n0 - n1 - n2 + n3 - 2 * dis);
    if (kind == LS_TAU_A) {
        *tau = cmd / (double)n0;
    } else if (n1 < n0 && n2 < n0) {
        double t = cmd / sqrt((double)(n0 - n1) * (double)(n0 - n2));
        *tau = t > 1 ? 1 : t < -1 ? -1 : t;
    }
    return LS_OK;
}

/* mean of v with one correction pass */
static double rank_mean(const double *v, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    double m = s / (double)n, r = 0.0;
    for (int64_t i = 0; i < n; i++) r += v[i] - m;
    return m + r / (double)n;
}

static double rank_pearson(const double *x, const double *y, int64_t n)
{
    if (n < 2) return NAN;
    double mx = rank_mean(x, n), my = rank_mean(y, n);
    double sxx = 0.0, syy = 0.0, sxy = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double a = x[i] - mx, b = y[i] - my;
        sxx += a * a;
        syy += b * b;
        sxy += a * b;
    }
    if (!(sxx > 0 && syy > 0)) return NAN;
    double r = sxy / (sqrt(sxx) * sqrt(syy));
    return r > 1 ? 1 : r < -1 ? -1 : r;
}

ls_status ls_stats_pearson(const double *x, const double *y, int64_t n, double *r, const char *who)
{
    if (!who) who = "pearson";
    ls_status st = rank_check(x, y, n, who);
    if (st) return st;
    *r = rank_pearson(x, y, n);
    return LS_OK;
}

typedef struct rank_item { double v; int64_t i; } rank_item;

static int rank_cmp_item(const void *a, const void *b)
{
    const rank_item *p = a, *q = b;
    if (p->v != q->v) return p->v < q->v ? -1 : 1;
    return (p->i > q->i) - (p->i < q->i);
}

static ls_status rank_average(const double *x, int64_t n, double *ranks, const char *who)
{
    if (n == 0) return LS_OK;
    rank_item *it = ls_malloc((size_t)n * sizeof *it, who);
    if (!it) return ls_error_code();
    for (int64_t i = 0; i < n; i++) it[i] = (rank_item){x[i], i};
    qsort(it, (size_t)n, sizeof *it, rank_cmp_item);
    for (int64_t a = 0; a < n;) {
        int64_t b = a;
        while (b + 1 < n && it[b + 1].v == it[a].v) b++;
        double r = (double)(a + b) / 2.0 + 1.0;
        for (int64_t j = a; j <= b; j++) ranks[it[j].i] = r;
        a = b + 1;
    }
    ls_free(it);
    return LS_OK;
}

ls_status ls_stats_rank(const double *x, int64_t n, double *ranks, const char *who)
{
    if (!who) who = "rank";
    ls_status st = rank_check(x, NULL, n, who);
    if (st) return st;
    return rank_average(x, n, ranks, who);
}

ls_status ls_stats_spearman(const double *x, const double *y, int64_t n, double *rho,
                            const char *who)
{
    if (!who) who = "spearman";
    ls_status st = rank_check(x, y, n, who);
    if (st) return st;
    *rho = NAN;
    if (n < 2) return LS_OK;
    double *r = ls_malloc((size_t)n * 2 * sizeof(double), who);
    if (!r) return ls_error_code();
    st = rank_average(x, n, r, who);
    if (!st) st = rank_average(y, n, r + n, who);
    if (!st) *rho = rank_pearson(r, r + n, n);
    ls_free(r);
    return st;
}
