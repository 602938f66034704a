/* Lanczos with partial reorthogonalisation and thick restart (ls_lanczos, linop.h): the Ritz pairs
 * of the projected matrix and the driver. Operators, the matvec adapter and Gram-Schmidt are in
 * linop.c, the fused vector passes in curv_vec.c. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "curvature/curv_internal.h"

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
    rw->d = ls_malloc(c * sizeof(double), "lanczos");
    rw->e = ls_malloc(c * sizeof(double), "lanczos");
    rw->dc = ls_malloc(c * sizeof(double), "lanczos");
    rw->ec = ls_malloc(c * sizeof(double), "lanczos");
    rw->w = ls_malloc(c * sizeof(double), "lanczos");
    rw->Zr = ls_malloc(c * (size_t)k * sizeof(double), "lanczos");
    rw->isuppz = ls_malloc(2 * c * sizeof(lapack_int), "lanczos");
    rw->idx = ls_malloc((size_t)k * sizeof(int), "lanczos");
    rw->sorted = ls_malloc((size_t)k * sizeof(int), "lanczos");
    return rw->d && rw->e && rw->dc && rw->ec && rw->w && rw->Zr && rw->isuppz && rw->idx &&
           rw->sorted;
}

/* All m Ritz values of T_m ascending into rw->d (dsterf) and *scale = max |theta|; -1 when LAPACK
 * fails (error message set). */
static int ritz_values(ritz_work *rw, const double *alpha, const double *beta, int m, double *scale)
{
    memcpy(rw->d, alpha, (size_t)m * sizeof(double));
    if (m > 1) memcpy(rw->e, beta, (size_t)(m - 1) * sizeof(double));
    lapack_int info = LAPACKE_dsterf(m, rw->d, rw->e);
    if (info != 0) {
        ls_error_set(LS_ERR_STATE, "lanczos: dsterf failed (info %d)", (int)info);
        return -1;
    }
    *scale = fmax(fabs(rw->d[0]), fabs(rw->d[m - 1]));
    return 0;
}

/* ritz_pairs' fallback: all pairs by dstev (O(m^3)), then the selected ones (rw->idx). */
static int ritz_pairs_dstev(ritz_work *rw, const double *alpha, const double *beta, int m, int nsel,
                            double *theta, double *Zs)
{
    ls_free(rw->Zfull);
    rw->Zfull = ls_malloc((size_t)m * (size_t)m * sizeof(double), "lanczos");
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

/* The k (<= rw->k) wanted Ritz pairs of T_m = tridiag(beta, alpha, beta) (alpha[0..m-1],
 * beta[0..m-2]).
 *
 * This runs after EVERY Lanczos step, so it must cost little next to a matvec at any m. The wanted
 * pairs form at most two contiguous runs of the ascending list of Ritz values (its top and its
 * bottom), and only they are computed, by dstevr with RANGE = 'I' (bisection and inverse
 * iteration: O(m k)); dstev with vectors, the obvious call, is O(m^3). All m Ritz values (dsterf,
 * O(m^2), as dear as the dstevr call at m ~ 60) are needed only to pick the pairs of largest
 * magnitude, and for the scale below when a wanted value is tiny. Should dstevr fail or return
 * fewer pairs than asked (it has not been seen to), the pairs come from dstev instead.
 *
 * Out: the count of pairs (<= k), theta[c] and Zs[c*m .. c*m + m-1] (unit eigenvector of T_m) for
 * c in output order (select_ritz), and *scale for the convergence test's floor 1e-10 scale: max
 * |theta| over all m Ritz values whenever that floor can matter; otherwise (every wanted |theta|
 * at least 1e-10 of T_m's Gershgorin bound, which is >= max |theta|) the largest wanted |theta|,
 * which gives the test the same result. Returns -1 when LAPACK fails (error message set). */
static int ritz_pairs(ritz_work *rw, const double *alpha, const double *beta, int m, int k,
                      ls_eig_which which, double *theta, double *Zs, double *scale)
{
    bool all = which == LS_EIG_MAGNITUDE;
    if (all && ritz_values(rw, alpha, beta, m, scale)) return -1;
    int nsel = select_ritz(rw->d, m, k, which, rw->idx);   /* rw->d is read for magnitude only */

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
        lapack_int info = LAPACKE_dstevr(LAPACK_COL_MAJOR, 'V', 'I', m, rw->dc, rw->ec, 0.0, 0.0,
                                         a + 1, b + 1, abstol, &got, rw->w, rw->Zr, m, rw->isuppz);
        if (info != 0 || got != b - a + 1) {
            if (ritz_pairs_dstev(rw, alpha, beta, m, nsel, theta, Zs) < 0) return -1;
            break;
        }
        for (int c = 0; c < nsel; c++) {
            int i = rw->idx[c];
            if (i < a || i > b) continue;
            theta[c] = rw->w[i - a];
            memcpy(Zs + (int64_t)c * m, rw->Zr + (int64_t)(i - a) * m, (size_t)m * sizeof(double));
        }
    }
    if (!all) {
        double gersh = 0, least = INFINITY, most = 0;
        for (int i = 0; i < m; i++) {
            double r = fabs(alpha[i]) + (i > 0 ? fabs(beta[i - 1]) : 0);
            gersh = fmax(gersh, r + (i < m - 1 ? fabs(beta[i]) : 0));
        }
        for (int c = 0; c < nsel; c++) {
            least = fmin(least, fabs(theta[c]));
            most = fmax(most, fabs(theta[c]));
        }
        *scale = most;
        if (!(least >= 1e-10 * gersh) && ritz_values(rw, alpha, beta, m, scale)) return -1;
    }
    return nsel;
}

/* ---- Lanczos with partial reorthogonalisation and thick restart ----
 *
 * The basis V has ncv columns (plus one for the next vector); T_m = V_m^T A V_m. Before the first
 * restart T is tridiagonal (alpha, beta). A restart keeps l Ritz vectors y_i = V z_i with values
 * theta_i and moves the next Lanczos vector to column l; then A y_i = theta_i y_i + s_i v_l with
 * s_i = beta_last (z_i)_last, so T's leading (l+1) block is an arrowhead (diag theta, alpha_l, and
 * the couplings s in its last row and column) and the rest stays tridiagonal (Wu & Simon 2000).
 * For the Ritz pairs that block is reduced to tridiagonal form once per cycle by an orthogonal Q
 * that fixes its last index (LAPACK's dsytrd with UPLO = 'U' leaves the last row alone), so every
 * step's test still runs on a tridiagonal matrix (dsterf + dstevr, O(m^2)); Ritz vectors of T are
 * Q applied to the first l + 1 components of those of the reduced matrix, and the residual bound
 * |beta_m (z)_m| is unchanged since the last component is.
 *
 * Orthogonality is kept by partial reorthogonalisation (Simon 1984): the recurrence that the basis
 * vectors' inner products obey in exact arithmetic, driven by an estimate of the rounding, gives
 * omega_{j+1,k} ~ <v_{j+1}, v_k> for every k at O(m) cost per step; only when one of them passes
 * sqrt(eps) is the new vector orthogonalised against the whole basis (classical Gram-Schmidt with
 * the DGKS second pass), and the one after it too (the pair is needed: Simon). Semi-orthogonality
 * (|<v_i, v_j>| <= sqrt(eps)) is what the Ritz values need to be as accurate as with a fully
 * orthogonal basis (Simon's theorem); the estimates overstate the true loss, so in practice a full
 * pass runs every few steps once a Ritz value has converged, and rarely before. A full pass costs a
 * read of the basis (0.95 MB a column in f64, 0.47 in f32, for a 118k-parameter model): done every
 * step, as before, that was 1.2-2.7 ms a step against a 7.3 ms Hessian product. The rounding
 * model is that of the operator's dtype (f32 products carry f32 errors, and an f32 basis as much:
 * the estimates then aim at sqrt(2^-23) and the projected matrix is as accurate as the products
 * allow; with the f64 epsilon the true inner products of a
 * 118k-parameter Hessian's basis reached 3.6e-7 while the estimates stayed below 1.5e-8).
 * Partial reorthogonalisation runs in the first cycle only. A thick restart's Ritz vectors satisfy
 * A y = theta y + s v only up to the reorthogonalisation coefficients that T does not record
 * (~sqrt(eps) |A|), which the recurrence does not model: with it running after restarts the basis
 * lost all orthogonality within three cycles (k = 6 "both", ncv = 16). So after the first restart
 * every step orthogonalises fully, against a basis of at most ncv columns: the first cycle, which
 * is the whole run when the wanted pairs converge within ncv steps (the default ncv = 64 covers
 * the top-3 of the benchmark MLP's Hessian, 59 steps), reads the basis every few steps; later
 * cycles every step, at a bounded cost.
 *
 * The rest of a step is two fused passes over the vectors, where there were seven: the next vector
 * stays unnormalised until the step that uses it (the product of a linear operator scales), so
 * curv_lz_recur normalises v_j and forms alpha = <v_j, A v_j - beta v_{j-1}>, and curv_lz_sub
 * forms w = (A v_j - beta v_{j-1}) - alpha v_j again from the product (cheaper than storing and
 * re-reading it), ||w|| and w's copy as the next product's input.
 *
 * The basis V is stored in the operator's dtype (f32 for an f32 operator, as ARPACK's ssaupd
 * keeps it): the products see f32 vectors anyway, and the passes above and the full
 * reorthogonalisations, which are bound by the memory, move half the bytes. Only the stored vectors
 * are rounded: every pass loads them into doubles, sums in double and rounds what it stores; T, its
 * Ritz pairs, the omega recurrence and the combinations V Z are f64. The recurrence's epsilon is
 * the basis's (and the products'), so the semi-orthogonality level is the one Simon's theory gives
 * for a basis held at that precision. An f64 operator runs exactly the arithmetic of the f64-only
 * code this replaced. */

typedef struct lz_state {
    int64_t n;
    int ncv, l;             /* basis capacity; kept Ritz vectors (0 before the first restart) */
    ls_dtype bt;            /* the basis's dtype: the operator's */
    size_t es;              /* its element size */
    void *V;                /* [ncv + 1][n] in bt */
    double *theta, *s;      /* [ncv]: kept values and their couplings to column l */
    double *alpha, *beta;   /* [ncv + 1]: the tridiagonal part (index j >= l) */
    double *d, *e;          /* [ncv + 1]: the reduced tridiagonal matrix of the current cycle */
    double *Q, *tau;        /* [(ncv + 1)^2], [ncv]: the (l+1) block's reduction (col-major) */
    double *om[2], *omn;    /* omega rows j - 1, j and the new row j + 1, [ncv + 2] each */
} lz_state;

static void lz_free(lz_state *z)
{
    ls_free(z->V);
    ls_free(z->theta);
    ls_free(z->s);
    ls_free(z->alpha);
    ls_free(z->beta);
    ls_free(z->d);
    ls_free(z->e);
    ls_free(z->Q);
    ls_free(z->tau);
    ls_free(z->om[0]);
    ls_free(z->om[1]);
    ls_free(z->omn);
    memset(z, 0, sizeof *z);
}

static bool lz_alloc(lz_state *z, int64_t n, int ncv, ls_dtype bt)
{
    memset(z, 0, sizeof *z);
    z->n = n;
    z->ncv = ncv;
    z->bt = bt;
    z->es = ls_dtype_size(bt);
    size_t c = (size_t)ncv + 2;
    /* the basis from the engine's allocator: huge pages for large blocks, and reused between calls */
    z->V = ls_malloc((size_t)(ncv + 1) * (size_t)n * z->es, "lanczos: Krylov basis");
    z->theta = ls_malloc(c * sizeof(double), "lanczos");
    z->s = ls_malloc(c * sizeof(double), "lanczos");
    z->alpha = ls_malloc(c * sizeof(double), "lanczos");
    z->beta = ls_malloc(c * sizeof(double), "lanczos");
    z->d = ls_malloc(c * sizeof(double), "lanczos");
    z->e = ls_malloc(c * sizeof(double), "lanczos");
    z->Q = ls_malloc(c * c * sizeof(double), "lanczos");
    z->tau = ls_malloc(c * sizeof(double), "lanczos");
    z->om[0] = ls_malloc(c * sizeof(double), "lanczos");
    z->om[1] = ls_malloc(c * sizeof(double), "lanczos");
    z->omn = ls_malloc(c * sizeof(double), "lanczos");
    return z->V && z->theta && z->s && z->alpha && z->beta && z->d && z->e && z->Q && z->tau &&
           z->om[0] && z->om[1] && z->omn;
}

/* T's reduced tridiagonal form for the columns 0..m-1 of the current cycle into d, e. At the
 * cycle's first step (m = l + 1, alpha_l just known) the (l+1) arrowhead block is reduced and Q
 * kept; later steps append alpha and beta. Returns false when LAPACK fails (error set). */
static bool lz_reduce(lz_state *z, int m)
{
    int l = z->l, b = l + 1;
    if (l == 0) {
        memcpy(z->d, z->alpha, (size_t)m * sizeof(double));
        if (m > 1) memcpy(z->e, z->beta, (size_t)(m - 1) * sizeof(double));
        return true;
    }
    if (m == b) {
        double *B = z->Q;
        memset(B, 0, (size_t)b * (size_t)b * sizeof(double));
        for (int i = 0; i < l; i++) {
            B[(int64_t)i * b + i] = z->theta[i];
            B[(int64_t)l * b + i] = z->s[i];   /* upper triangle: column l, row i */
        }
        B[(int64_t)l * b + l] = z->alpha[l];
        if (LAPACKE_dsytrd(LAPACK_COL_MAJOR, 'U', b, B, b, z->d, z->e, z->tau) != 0 ||
            LAPACKE_dorgtr(LAPACK_COL_MAJOR, 'U', b, B, b, z->tau) != 0) {
            ls_error_set(LS_ERR_STATE, "lanczos: the restart block's reduction failed");
            return false;
        }
    }
    for (int j = b; j < m; j++) z->d[j] = z->alpha[j];
    for (int j = b - 1; j < m - 1; j++) z->e[j] = z->beta[j];
    return true;
}

/* Eigenvectors of the reduced matrix (m x c, col-major in Zs) to eigenvectors of T: Q applied to
 * the first l + 1 components (tmp: l + 1 doubles). */
static void lz_unreduce(const lz_state *z, int m, int c, double *Zs, double *tmp)
{
    int b = z->l + 1;
    if (z->l == 0) return;
    for (int i = 0; i < c; i++) {
        double *zi = Zs + (int64_t)i * m;
        for (int r = 0; r < b; r++) {
            double acc = 0;
            for (int q = 0; q < b; q++) acc += z->Q[(int64_t)q * b + r] * zi[q];
            tmp[r] = acc;
        }
        memcpy(zi, tmp, (size_t)b * sizeof(double));
    }
}

/* V[:, 0..c) = V[:, 0..m) Z (Z m x c, col-major), in place: each block of LZ_ROWS rows is computed
 * into scratch from the same rows of all m columns, then written back. An f64 basis's block is one
 * dgemm; an f32 basis's block is summed in double straight from the f32 columns
 * (curv_rows_combine: one read of the basis, rounded once when stored). The blocks are dealt out to
 * one task per thread (task t takes blocks t, t + T, ...), each with its own scratch, which stays in
 * its core's cache; a block's result does not depend on the task that computes it. */
#define LZ_ROWS 512
typedef struct {
    lz_state *z;
    int m, c;
    const double *Z;
    double *scratch;   /* per task: LZ_ROWS x c */
    int64_t blocks, tasks;
    ls_dtype dt;       /* the Ritz vectors' dtype and data, or out NULL */
    void *out;
} lz_rot_job;

/* Each block: into V's first c columns (out NULL), or into the rows of the row-major [n x c]
 * tensor data `out` of dtype dt (the Ritz vectors). */
static void lz_rotate_rows(void *vj, int64_t begin, int64_t end)
{
    const lz_rot_job *j = vj;
    const lz_state *z = j->z;
    int64_t n = z->n;
    for (int64_t task = begin; task < end; task++) {
        double *t = j->scratch + (size_t)task * LZ_ROWS * (size_t)j->c;
        for (int64_t blk = task; blk < j->blocks; blk += j->tasks) {
            int64_t r0 = blk * LZ_ROWS, rows = n - r0 < LZ_ROWS ? n - r0 : LZ_ROWS;
            if (z->bt == LS_F32)
                curv_rows_combine(n, j->m, z->V, j->c, j->Z, r0, rows, t);
            else
                cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)rows, j->c, j->m, 1.0,
                            (const double *)z->V + r0, (int)n, j->Z, j->m, 0.0, t, (int)rows);
            if (!j->out && z->bt == LS_F64) {
                for (int i = 0; i < j->c; i++)
                    memcpy((double *)z->V + (int64_t)i * n + r0, t + (int64_t)i * rows,
                           (size_t)rows * sizeof(double));
            } else if (!j->out) {
                for (int i = 0; i < j->c; i++)
                    for (int64_t r = 0; r < rows; r++)
                        ((float *)z->V)[(int64_t)i * n + r0 + r] = (float)t[(int64_t)i * rows + r];
            } else {
                for (int64_t i = 0; i < rows; i++)
                    for (int c = 0; c < j->c; c++) {
                        double y = t[(int64_t)c * rows + i];
                        if (j->dt == LS_F64) ((double *)j->out)[(r0 + i) * j->c + c] = y;
                        else ((float *)j->out)[(r0 + i) * j->c + c] = (float)y;
                    }
            }
        }
    }
}

/* V Z (Z m x c) into V's first c columns (out NULL) or into out (row-major n x c, dtype dt). */
static ls_status lz_rotate(lz_state *z, int m, int c, const double *Z, ls_dtype dt, void *out)
{
    int64_t blocks = (z->n + LZ_ROWS - 1) / LZ_ROWS, tasks = ls_get_threads();
    if (tasks > blocks) tasks = blocks;
    double *scratch = ls_malloc((size_t)tasks * LZ_ROWS * (size_t)c * sizeof(double), "lanczos");
    if (!scratch) return ls_error_set(LS_ERR_MEM, "lanczos: out of memory for Ritz vectors");
    lz_rot_job j = {z, m, c, Z, scratch, blocks, tasks, dt, out};
    ls_parallel_for(tasks, 1, lz_rotate_rows, &j);
    ls_free(scratch);
    return LS_OK;
}

/* The PRO estimate of row j + 1 (the unnormalised next vector has norm beta_j) from rows j and
 * j - 1, for a step j > l; returns max_k |omega_{j+1,k}| over k < j. */
static double lz_omega(lz_state *z, int j, double beta_j, double noise)
{
    int l = z->l;
    const double *oc = z->om[j % 2], *op = z->om[(j + 1) % 2];   /* rows j and j - 1 */
    double *on = z->omn, worst = 0;
    for (int k = 0; k < j; k++) {
        double t;
        if (k < l) {
            t = z->theta[k] * oc[k] + z->s[k] * oc[l];
        } else if (k == l) {
            t = z->alpha[l] * oc[l] + z->beta[l] * oc[l + 1];
            for (int i = 0; i < l; i++) t += z->s[i] * oc[i];
        } else {
            t = z->beta[k - 1] * oc[k - 1] + z->alpha[k] * oc[k] + z->beta[k] * oc[k + 1];
        }
        t -= z->alpha[j] * oc[k] + (j - 1 >= 0 ? z->beta[j - 1] * op[k] : 0.0);
        t += t >= 0 ? noise : -noise;
        on[k] = t / beta_j;
        worst = fmax(worst, fabs(on[k]));
    }
    return worst;
}

ls_status ls_lanczos(const ls_linop *op, const ls_lanczos_opts *opts, ls_eig_result *out)
{
    static const char *who = "lanczos";
    memset(out, 0, sizeof *out);
    ls_status st = curv_eig_check(op, opts->k, who);
    if (st) return st;
    int64_t n = op->n;
    int k = opts->k;
    double tol = opts->tol > 0 ? opts->tol : 1e-6;
    int64_t max_iter = opts->max_iter > 0 ? opts->max_iter : 300;
    int64_t ncv = opts->ncv > 0 ? opts->ncv : (2 * (int64_t)k + 1 > 64 ? 2 * (int64_t)k + 1 : 64);
    if (ncv < k + 1) ncv = k + 1;   /* room for one new vector next to the k kept ones */
    if (ncv >= n) {                 /* the whole space fits: no restarts, at most n steps */
        ncv = n;
        if (max_iter > n) max_iter = n;
    }
    if (max_iter < k) max_iter = k;
    if (ncv > max_iter && max_iter >= k + 1) ncv = max_iter;

    curv_mv mv;
    if ((st = curv_mv_init(&mv, op, who))) return st;
    lz_state z;
    double *Zs = NULL, *Zr = NULL, *h = NULL, *tmp = NULL, *rv = NULL;
    int *idx = NULL;
    ritz_work rw = {0};
    ls_rng rng;
    ls_rng_init(&rng, opts->seed);
    const ls_dtype bt = op->dtype;   /* the basis's dtype */
    const size_t es = ls_dtype_size(bt);
    bool have = lz_alloc(&z, n, (int)ncv, bt);
    if ((st = curv_eig_alloc(out, k, who))) goto done;
    Zs = ls_malloc((size_t)(ncv + 1) * (size_t)ncv * sizeof(double), "lanczos");
    Zr = ls_malloc((size_t)ncv * sizeof(double), "lanczos");
    rv = ls_malloc((size_t)ncv * sizeof(double), "lanczos");
    h = ls_malloc((size_t)(ncv + 1) * sizeof(double), "lanczos");
    tmp = ls_malloc((size_t)(ncv + 1) * sizeof(double), "lanczos");
    idx = ls_malloc((size_t)(ncv + 1) * sizeof(int), "lanczos");
    if (!have || !ritz_work_init(&rw, (int)ncv + 1, (int)ncv) || !Zs || !Zr || !rv || !h || !tmp ||
        !idx) {
        st = ls_error_set(LS_ERR_MEM, "lanczos: out of memory (n = %lld, ncv = %lld)", (long long)n,
                          (long long)ncv);
        goto done;
    }

    /* start vector */
    void *V = z.V, *vin = ls_tensor_data(mv.vin);
#define LZ_COL(j) ((void *)((char *)V + (size_t)(j) * (size_t)n * es))
    if (opts->v0) curv_to_dtype(n, opts->v0, bt, V);
    else ls_rng_rademacher(&rng, bt, V, n);
    double unorm;   /* the norm of u_j, the column the next step applies */
    if (bt == LS_F64) {
        unorm = curv_nrm2(n, V);
    } else {
        curv_basis_dots(n, bt, 1, V, V, &unorm);
        unorm = sqrt(unorm);
    }
    if (!(unorm > 0) || !isfinite(unorm)) {
        st = ls_error_set(LS_ERR_ARG, "lanczos: start vector is zero or not finite");
        goto done;
    }
    memcpy(vin, V, (size_t)n * es);

    /* the rounding of one step as it enters the omega recurrence: the precision of the operator's
     * dtype, in which its products are computed and the basis is stored, and semi-orthogonality
     * relative to it: the projected matrix is then as accurate as the products allow (Simon: T's
     * error is of the order of omega^2 ||A||) */
    const double eps = op->dtype == LS_F32 ? 1.1920928955078125e-07 : 2.220446049250313e-16;
    const double reorth_at = sqrt(eps);

    double anorm = 0;
    int m = 1, nsel = 0, force = 0;
    bool ok = false;
    int64_t steps = 0;
    z.om[0][0] = 1.0;   /* row 0 */
    for (;;) {
        int j = m - 1, l = z.l;
        void *vj = LZ_COL(j), *w = LZ_COL(j + 1), *vp = j > l ? LZ_COL(j - 1) : NULL;
        if ((st = curv_mv_call(&mv))) goto done;
        steps++;
        if (!(vin = curv_mv_input(&mv))) {   /* where the next product's input goes */
            st = LS_ERR_MEM;
            goto done;
        }
        double a, bp = j > l ? z.beta[j - 1] : 0.0;
        const void *y = ls_tensor_data(mv.vout);
        int64_t bad = curv_lz_recur(n, bt, y, 1.0 / unorm, bp, vp, vj, &a);
        if (bad >= 0) {
            st = curv_mv_nonfinite(&mv, bad);
            goto done;
        }
        double b = sqrt(curv_lz_sub(n, bt, y, 1.0 / unorm, bp, vp, a, vj, w, vin));
        z.alpha[j] = a;
        anorm = fmax(anorm, fabs(a) + b + bp);
        double *on = z.omn;
        bool full = j == l || l > 0 || force > 0;
        if (!full) {
            double noise = 2.0 * eps * anorm;
            full = !(lz_omega(&z, j, b, noise) <= reorth_at) || !(b > 0);
        }
        if (full) {
            /* against every column; at a cycle's first step this also removes the arrowhead's
             * components s_i y_i */
            b = curv_orthogonalise(n, bt, j + 1, V, w, h, idx, b, vin);
            for (int q = 0; q <= j; q++) on[q] = eps;
            force = force > 0 ? force - 1 : (j == l ? 0 : 1);
        }
        on[j] = eps;
        on[j + 1] = 1.0;
        z.beta[j] = b;
        /* rows: om[(j+1) % 2] becomes row j + 1 (row j - 1 is no longer needed) */
        memcpy(z.om[(j + 1) % 2], on, (size_t)(j + 2) * sizeof(double));

        /* Convergence test after every step, ARPACK's (dsconv): the Ritz pair (theta, V_m z) has
         * residual ||A V_m z - theta V_m z|| = |beta_m z_m| (exact arithmetic; a semi-orthogonal
         * basis keeps it so), and it has converged when that is <= tol |theta|. */
        if (!lz_reduce(&z, m)) {
            st = ls_error_code();
            goto done;
        }
        if (m >= k) {
            double scale = 0;
            nsel = ritz_pairs(&rw, z.d, z.e, m, k, opts->which, out->values, Zs, &scale);
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
        if (steps >= max_iter || m >= n) break;

        if (!(b > 1e-12 * anorm)) {
            /* invariant subspace: continue with a fresh random direction orthogonal to the basis */
            double nb = 0;
            for (int tries = 0; tries < 3 && !(nb > 1e-8); tries++) {
                ls_rng_rademacher(&rng, bt, w, n);
                double n0 = sqrt((double)n);   /* a Rademacher vector's norm */
                b = curv_orthogonalise(n, bt, j + 1, V, w, h, idx, n0, vin);
                nb = b / n0;
            }
            if (!(nb > 1e-8)) break;   /* the space is exhausted: cannot happen for m < n */
            z.beta[j] = 0.0;
            for (int q = 0; q <= j; q++) z.om[(j + 1) % 2][q] = eps;
        }
        unorm = b;
        m++;
        if (m <= z.ncv) continue;

        /* thick restart: keep the lk wanted Ritz vectors of the ncv-dimensional space and move
         * the next vector (column ncv) to column lk */
        int mm = z.ncv, lk = k + (mm - k) / 2;
        if (lk >= mm) lk = mm - 1;
        double scale = 0;
        int got = ritz_pairs(&rw, z.d, z.e, mm, lk, opts->which, rv, Zs, &scale);
        if (got != lk) {
            st = got < 0 ? (ls_error_code() ? ls_error_code() : LS_ERR_STATE)
                         : ls_error_set(LS_ERR_STATE, "lanczos: %d of %d Ritz pairs to restart",
                                        got, lk);
            goto done;
        }
        lz_unreduce(&z, mm, lk, Zs, tmp);
        double blast = z.beta[mm - 1];
        for (int i = 0; i < lk; i++) {
            z.theta[i] = rv[i];
            z.s[i] = blast * Zs[(int64_t)i * mm + (mm - 1)];
        }
        if ((st = lz_rotate(&z, mm, lk, Zs, op->dtype, NULL))) goto done;
        void *vl = LZ_COL(lk);
        memcpy(vl, LZ_COL(mm), (size_t)n * es);
        unorm = curv_orthogonalise(n, bt, lk, V, vl, h, idx, -1.0, vin);
        z.l = lk;
        m = lk + 1;
        double *row = z.om[lk % 2];
        for (int q = 0; q < lk; q++) row[q] = eps;
        row[lk] = 1.0;
        force = 0;
    }
    out->iterations = (int)steps;
    out->matvecs = mv.count;
    out->all_converged = ok;
    if (nsel < k) {
        st = ls_error_set(LS_ERR_STATE, "lanczos: only %d of %d Ritz pairs available", nsel, k);
        goto done;
    }

    if (opts->want_vectors) {
        /* Ritz vectors y_c = V_m z_c, z_c the eigenvectors of T (Q applied) */
        lz_unreduce(&z, m, k, Zs, tmp);
        int64_t shape[2] = {n, k};
        out->vectors = ls_tensor_new(op->dtype, 2, shape);
        if (!out->vectors) {
            st = ls_error_code() ? ls_error_code() : LS_ERR_MEM;
            goto done;
        }
        if ((st = lz_rotate(&z, m, k, Zs, op->dtype, ls_tensor_data(out->vectors)))) goto done;
    }

done:
    if (st) ls_eig_result_free(out);
    lz_free(&z);
    ls_free(Zs);
    ls_free(Zr);
    ls_free(rv);
    ls_free(h);
    ls_free(tmp);
    ls_free(idx);
    ritz_work_free(&rw);
    curv_mv_free(&mv);
    return st;
#undef LZ_COL
}
