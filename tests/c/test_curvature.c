/* Curvature estimators on dense symmetric matrices with known spectra A = Q diag(lambda) Q^T, Q the
 * orthogonal factor of a random Gaussian matrix (LAPACKE_dgeqrf + dorgqr): Lanczos and power
 * iteration against the chosen eigenvalues, Hutchinson / Hutch++ / diagonal unbiasedness and stderr
 * coverage over many seeds, SLQ moments against tr(A^p)/n, density mass, and the error paths. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "curv_fixtures.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "curvature/curv_internal.h"
#include "curvature/linop.h"

/* ---- fixtures ---- */

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* ||A y - theta y|| / |theta| for column c of res->vectors */
static double eig_residual(const ls_tensor *A, const ls_eig_result *res, int c)
{
    int64_t n = A->shape[0];
    const double *a = ls_tensor_data(A);
    double r2 = 0, y2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < n; j++) s += a[i * n + j] * ls_tensor_get_flat(res->vectors, j * res->k + c);
        double yi = ls_tensor_get_flat(res->vectors, i * res->k + c);
        r2 += (s - res->values[c] * yi) * (s - res->values[c] * yi);
        y2 += yi * yi;
    }
    return sqrt(r2 / y2) / fabs(res->values[c]);
}

/* matvec callbacks for the error paths */
static ls_status nan_matvec(void *ctx, const ls_tensor *v, ls_tensor *out)
{
    (void)ctx;
    (void)v;
    ((double *)ls_tensor_data(out))[1] = NAN;
    return LS_OK;
}
static ls_status failing_matvec(void *ctx, const ls_tensor *v, ls_tensor *out)
{
    (void)ctx; (void)v; (void)out;
    return ls_error_set(LS_ERR_IO, "my matvec: batch 3 missing");
}

/* ---- Lanczos ---- */

static void test_lanczos(void)
{
    enum { N = 60 };
    double lam[N];
    for (int i = 0; i < N; i++) lam[i] = -5.0 + 14.0 * i / (N - 1);   /* [-5, 9] */
    lam[N - 1] = 12.0; lam[N - 2] = 11.0; lam[0] = -9.0;              /* gaps at both ends */
    ls_tensor *A = make_sym(N, lam, 11);
    ls_linop op;
    CHECK(ls_linop_dense(&op, A) == LS_OK);
    double sorted[N];
    memcpy(sorted, lam, sizeof lam);
    qsort(sorted, N, sizeof(double), cmp_desc);   /* descending */

    ls_eig_result r;
    ls_lanczos_opts o = {.k = 3, .which = LS_EIG_LARGEST, .seed = 1, .want_vectors = true};
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    CHECK(r.all_converged);
    for (int c = 0; c < 3; c++) {
        CHECK_NEAR(r.values[c], sorted[c], 1e-8 * fabs(sorted[c]));
        CHECK(eig_residual(A, &r, c) < 1e-5);
    }
    CHECK(r.matvecs == r.iterations && r.matvecs < N);
    ls_eig_result_free(&r);

    o.which = LS_EIG_SMALLEST;   /* most negative first */
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    for (int c = 0; c < 3; c++) {
        CHECK_NEAR(r.values[c], sorted[N - 1 - c], 1e-8 * fabs(sorted[N - 1 - c]));
        CHECK(eig_residual(A, &r, c) < 1e-5);
    }
    ls_eig_result_free(&r);

    o.which = LS_EIG_BOTH;
    o.k = 4;
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], 12.0, 1e-8 * 12);
    CHECK_NEAR(r.values[1], 11.0, 1e-8 * 11);
    CHECK_NEAR(r.values[2], -9.0, 1e-8 * 9);
    CHECK_NEAR(r.values[3], sorted[N - 2], 1e-8 * 5);
    ls_eig_result_free(&r);

    o.which = LS_EIG_MAGNITUDE;
    o.k = 2;
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], 12.0, 1e-8 * 12);
    CHECK_NEAR(r.values[1], 11.0, 1e-8 * 11);
    ls_eig_result_free(&r);

    /* same seed, same numbers; f32 operator to f32 accuracy */
    ls_eig_result r2;
    o = (ls_lanczos_opts){.k = 2, .which = LS_EIG_LARGEST, .seed = 5};
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK && ls_lanczos(&op, &o, &r2) == LS_OK);
    CHECK(r.values[0] == r2.values[0] && r.values[1] == r2.values[1] && r.matvecs == r2.matvecs);
    ls_eig_result_free(&r);
    ls_eig_result_free(&r2);
    ls_tensor *A32 = ls_tensor_cast(A, LS_F32);
    ls_linop op32;
    CHECK(ls_linop_dense(&op32, A32) == LS_OK);
    o.tol = 1e-5;
    o.want_vectors = true;
    CHECK(ls_lanczos(&op32, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], 12.0, 1e-5 * 12);
    CHECK(r.vectors && r.vectors->dtype == LS_F32);
    ls_eig_result_free(&r);
    ls_tensor_release(A32);
    ls_tensor_release(A);

    /* clustered top (10, 10 - 1e-3, 10 - 2e-3) and negative-dominant magnitude */
    for (int i = 0; i < N; i++) lam[i] = -1.0 + 2.0 * i / (N - 1);
    lam[N - 1] = 10.0; lam[N - 2] = 10.0 - 1e-3; lam[N - 3] = 10.0 - 2e-3; lam[0] = -20.0;
    A = make_sym(N, lam, 12);
    CHECK(ls_linop_dense(&op, A) == LS_OK);
    o = (ls_lanczos_opts){.k = 3, .which = LS_EIG_LARGEST, .seed = 2, .tol = 1e-10};
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], 10.0, 1e-8 * 10);
    CHECK_NEAR(r.values[1], 10.0 - 1e-3, 1e-8 * 10);
    CHECK_NEAR(r.values[2], 10.0 - 2e-3, 1e-8 * 10);
    ls_eig_result_free(&r);
    o = (ls_lanczos_opts){.k = 1, .which = LS_EIG_MAGNITUDE, .seed = 2};
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], -20.0, 1e-8 * 20);
    ls_eig_result_free(&r);
    ls_tensor_release(A);

    /* degenerate: 7 with multiplicity 3. A single Krylov sequence sees one copy; once the space is
     * exhausted (tol unreachable, max_iter = n) the breakdown restarts recover the multiplicity. */
    enum { M = 30 };
    double lam2[M];
    for (int i = 0; i < M; i++) lam2[i] = 0.1 * i;
    lam2[M - 1] = lam2[M - 2] = lam2[M - 3] = 7.0;
    A = make_sym(M, lam2, 13);
    CHECK(ls_linop_dense(&op, A) == LS_OK);
    o = (ls_lanczos_opts){.k = 1, .which = LS_EIG_LARGEST, .seed = 3, .want_vectors = true};
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], 7.0, 7e-8);
    CHECK(eig_residual(A, &r, 0) < 1e-5);
    ls_eig_result_free(&r);
    o = (ls_lanczos_opts){.k = 4, .which = LS_EIG_LARGEST, .seed = 3, .tol = 1e-300, .max_iter = M};
    CHECK(ls_lanczos(&op, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], 7.0, 7e-8);
    CHECK_NEAR(r.values[1], 7.0, 7e-8);
    CHECK_NEAR(r.values[2], 7.0, 7e-8);
    CHECK_NEAR(r.values[3], 0.1 * (M - 4), 1e-8);
    CHECK(r.iterations == M);
    ls_eig_result_free(&r);
    ls_tensor_release(A);
}

/* Thick restart: a basis of ncv columns much smaller than the steps taken. Against the dense
 * spectrum: the wanted values to 1e-8, explicit residuals, orthonormal Ritz vectors; f32 too. */
static void test_lanczos_restart(void)
{
    enum { N = 400 };
    double lam[N], asc[N];
    ls_rng r;
    ls_rng_init(&r, 77);
    ls_rng_normal(&r, LS_F64, lam, N, 0.0, 0.05);   /* a bulk near 0 */
    static const double out[] = {5.0, 4.6, 4.4, 3.0, 2.5, 2.0, -0.4, -0.3, -0.28};
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) lam[11 * i + 5] = out[i];
    memcpy(asc, lam, sizeof lam);
    qsort(asc, N, sizeof(double), cmp_desc);   /* descending */
    ls_tensor *A = make_sym(N, lam, 78);
    ls_linop op;
    CHECK(ls_linop_dense(&op, A) == LS_OK);
    static const struct { int k, ncv; ls_eig_which which; } cases[] = {
        {3, 10, LS_EIG_LARGEST}, {3, 8, LS_EIG_SMALLEST}, {6, 16, LS_EIG_BOTH}, {1, 4, LS_EIG_LARGEST}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int k = cases[ci].k;
        ls_lanczos_opts o = {.k = k, .which = cases[ci].which, .seed = 9, .tol = 1e-10,
                             .max_iter = 3000, .ncv = cases[ci].ncv, .want_vectors = true};
        ls_eig_result res;
        CHECK(ls_lanczos(&op, &o, &res) == LS_OK);
        CHECK(res.all_converged);
        CHECK(res.iterations > cases[ci].ncv);   /* it did restart */
        for (int c = 0; c < k; c++) {
            double want;
            if (cases[ci].which == LS_EIG_LARGEST) want = asc[c];
            else if (cases[ci].which == LS_EIG_SMALLEST) want = asc[N - 1 - c];
            else want = c < (k + 1) / 2 ? asc[c] : asc[N - 1 - (c - (k + 1) / 2)];
            CHECK_NEAR(res.values[c], want, 1e-8 * fabs(want));
            CHECK(eig_residual(A, &res, c) < 1e-8);
            for (int c2 = 0; c2 <= c; c2++) {   /* orthonormal */
                double d = 0;
                for (int64_t i = 0; i < N; i++)
                    d += ls_tensor_get_flat(res.vectors, i * k + c) *
                         ls_tensor_get_flat(res.vectors, i * k + c2);
                CHECK_NEAR(d, c == c2 ? 1.0 : 0.0, 1e-7);
            }
        }
        ls_eig_result_free(&res);
    }
    /* an f32 operator: its own precision */
    ls_tensor *A32 = ls_tensor_cast(A, LS_F32);
    ls_linop op32;
    CHECK(ls_linop_dense(&op32, A32) == LS_OK);
    ls_lanczos_opts o = {.k = 3, .which = LS_EIG_LARGEST, .seed = 9, .tol = 1e-5, .max_iter = 3000,
                         .ncv = 10, .want_vectors = true};
    ls_eig_result res;
    CHECK(ls_lanczos(&op32, &o, &res) == LS_OK);
    CHECK(res.all_converged && res.iterations > 10);
    CHECK(res.vectors && res.vectors->dtype == LS_F32);
    for (int c = 0; c < 3; c++) {
        CHECK_NEAR(res.values[c], asc[c], 1e-5 * asc[c]);
        CHECK(eig_residual(A, &res, c) < 1e-4);   /* the f32 Ritz vectors, against the f64 matrix */
    }
    ls_eig_result_free(&res);
    ls_tensor_release(A32);
    ls_tensor_release(A);
}

/* An f32 operator's basis is stored in f32 (sums, T and its eigenproblem in f64). Against the exact
 * spectrum of the f32 matrix (its entries in f64, dsyev) and against Lanczos on that same matrix as
 * an f64 operator (f64 basis), with restarts, both ends and many pairs: every wanted value within its
 * residual bound plus f32 rounding (1e-6 of the spectrum's scale) of the exact one, the f32 Ritz
 * vectors' explicit residuals (in f64) at the tolerance, orthonormal to f32 accuracy, and at most two
 * products more than the f64 basis needs. */
static void test_lanczos_f32_basis(void)
{
    enum { N = 500 };
    double lam[N], ev[N];
    ls_rng r;
    ls_rng_init(&r, 31);
    ls_rng_normal(&r, LS_F64, lam, N, 0.0, 0.05);   /* a Hessian-like bulk near 0 */
    for (int i = 0; i < 30; i++) lam[13 * i + 4] = 1.0 + 0.1 * i;   /* 30 outliers, gaps 0.1 */
    static const double neg[] = {-0.5, -0.45, -0.42, -0.4};
    for (int i = 0; i < 4; i++) lam[13 * i + 9] = neg[i];
    ls_tensor *A = make_sym(N, lam, 32), *A32 = ls_tensor_cast(A, LS_F32);
    ls_tensor *A32d = ls_tensor_cast(A32, LS_F64);   /* the f32 operator, exactly, in f64 */
    double *a = malloc(sizeof(double) * N * N);
    memcpy(a, ls_tensor_data(A32d), sizeof(double) * N * N);
    CHECK(LAPACKE_dsyev(LAPACK_COL_MAJOR, 'N', 'U', N, a, N, ev) == 0);   /* ascending */
    free(a);
    double scale = fmax(fabs(ev[0]), fabs(ev[N - 1]));
    ls_linop op32, op64;
    CHECK(ls_linop_dense(&op32, A32) == LS_OK && ls_linop_dense(&op64, A32d) == LS_OK);
    static const struct { int k, ncv; ls_eig_which which; double tol; } cases[] = {
        {3, 0, LS_EIG_LARGEST, 1e-4},   {3, 0, LS_EIG_LARGEST, 1e-6},  {3, 10, LS_EIG_LARGEST, 1e-5},
        {4, 12, LS_EIG_SMALLEST, 1e-5}, {6, 16, LS_EIG_BOTH, 1e-5},    {20, 0, LS_EIG_LARGEST, 1e-5},
        {20, 45, LS_EIG_LARGEST, 1e-5}, {2, 0, LS_EIG_MAGNITUDE, 1e-5}};
    int total32 = 0, total64 = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int k = cases[ci].k;
        ls_lanczos_opts o = {.k = k, .which = cases[ci].which, .seed = 4, .tol = cases[ci].tol,
                             .max_iter = 3000, .ncv = cases[ci].ncv, .want_vectors = true};
        ls_eig_result r32, r64;
        CHECK(ls_lanczos(&op32, &o, &r32) == LS_OK && ls_lanczos(&op64, &o, &r64) == LS_OK);
        CHECK(r32.all_converged && r64.all_converged);
        CHECK(r32.vectors && r32.vectors->dtype == LS_F32);
        CHECK(r32.matvecs <= r64.matvecs + 2);
        total32 += (int)r32.matvecs;
        total64 += (int)r64.matvecs;
        double worst = 0, worst64 = 0, wres = 0, worth = 0;
        for (int c = 0; c < k; c++) {
            double want;
            if (cases[ci].which == LS_EIG_LARGEST || cases[ci].which == LS_EIG_MAGNITUDE)
                want = ev[N - 1 - c];
            else if (cases[ci].which == LS_EIG_SMALLEST) want = ev[c];
            else want = c < (k + 1) / 2 ? ev[N - 1 - c] : ev[c - (k + 1) / 2];
            double err = fabs(r32.values[c] - want);
            CHECK(err <= r32.residuals[c] + 1e-6 * scale);
            worst = fmax(worst, err / scale);
            worst64 = fmax(worst64, fabs(r64.values[c] - want) / scale);
            double res = eig_residual(A32d, &r32, c);
            CHECK(res <= 2 * cases[ci].tol + 1e-6 * scale / fabs(r32.values[c]));
            wres = fmax(wres, res);
            for (int c2 = 0; c2 <= c; c2++) {   /* orthonormal to f32 accuracy */
                double d = 0;
                for (int64_t i = 0; i < N; i++)
                    d += ls_tensor_get_flat(r32.vectors, i * k + c) *
                         ls_tensor_get_flat(r32.vectors, i * k + c2);
                worth = fmax(worth, fabs(d - (c == c2 ? 1.0 : 0.0)));
            }
        }
        CHECK(worth < 1e-4);
        printf("f32 basis: k = %2d %-8s ncv %2d tol %.0e: products %3d (f64 basis %3d), value error "
               "%.1e (f64 basis %.1e) of max|lambda|, residual %.1e, orthonormality %.1e\n", k,
               ls_eig_which_name(cases[ci].which), cases[ci].ncv, cases[ci].tol, (int)r32.matvecs,
               (int)r64.matvecs, worst, worst64, wres, worth);
        ls_eig_result_free(&r32);
        ls_eig_result_free(&r64);
    }
    printf("f32 basis: %d products in all, f64 basis %d\n", total32, total64);
    ls_tensor_release(A32d);
    ls_tensor_release(A32);
    ls_tensor_release(A);
}

/* Wanted eigenvalues at and next to zero: the convergence test's floor (tol times 1e-10 of the
 * largest |Ritz value|) decides, and it needs the extreme Ritz values, which the step's test
 * computes only then (dsterf): a floor taken from the wanted values alone would never let 0
 * converge. */
static void test_lanczos_zero_eigenvalue(void)
{
    enum { N = 80 };
    double lam[N];
    for (int i = 0; i < N; i++) lam[i] = 1.0 + 0.05 * i;
    lam[10] = 0.0;
    lam[20] = 1e-13;
    ls_tensor *A = make_sym(N, lam, 5);
    double *a = ls_tensor_data(A);
    for (int i = 0; i < N; i++)   /* exact symmetry, so that 0 is an eigenvalue to rounding */
        for (int j = 0; j < i; j++) a[i * N + j] = a[j * N + i];
    ls_linop op;
    CHECK(ls_linop_dense(&op, A) == LS_OK);
    static const ls_eig_which whiches[] = {LS_EIG_SMALLEST, LS_EIG_BOTH};
    for (int t = 0; t < 2; t++) {
        ls_lanczos_opts o = {.k = t == 0 ? 2 : 4, .which = whiches[t], .seed = 4, .tol = 1e-8};
        ls_eig_result res;
        CHECK(ls_lanczos(&op, &o, &res) == LS_OK);
        CHECK(res.all_converged && res.matvecs < N);
        int c0 = t == 0 ? 0 : 2;   /* "both": the two largest come first */
        CHECK(fabs(res.values[c0]) < 1e-12 && fabs(res.values[c0 + 1]) < 1e-12);
        if (t == 1) CHECK_NEAR(res.values[0], lam[N - 1], 1e-8 * lam[N - 1]);
        for (int c = 0; c < o.k; c++)
            CHECK(res.residuals[c] <= 1e-8 * fmax(fabs(res.values[c]), 1e-10 * lam[N - 1]));
        ls_eig_result_free(&res);
    }
    ls_tensor_release(A);
}

/* Plain Lanczos (three-term recurrence, no reorthogonalisation) from v0, stopped by the same residual
 * test on the top Ritz value; returns the number of matvecs. */
static int plain_lanczos_matvecs(const ls_tensor *A, const double *v0, double tol, double *theta)
{
    int n = (int)A->shape[0];
    const double *a = ls_tensor_data(A);
    double *vp = calloc(n, sizeof(double)), *v = malloc(sizeof(double) * n), *w = malloc(sizeof(double) * n);
    double *al = malloc(sizeof(double) * n), *be = malloc(sizeof(double) * n);
    double *d = malloc(sizeof(double) * n), *e = malloc(sizeof(double) * n), *Z = malloc(sizeof(double) * n * n);
    double nv = 0;
    for (int i = 0; i < n; i++) nv += v0[i] * v0[i];
    for (int i = 0; i < n; i++) v[i] = v0[i] / sqrt(nv);
    int m = 0;
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int c = 0; c < n; c++) s += a[i * n + c] * v[c];
            w[i] = s - (j ? be[j - 1] * vp[i] : 0);
        }
        double alpha = 0;
        for (int i = 0; i < n; i++) alpha += v[i] * w[i];
        double b = 0;
        for (int i = 0; i < n; i++) { w[i] -= alpha * v[i]; b += w[i] * w[i]; }
        b = sqrt(b);
        al[j] = alpha; be[j] = b; m = j + 1;
        memcpy(d, al, sizeof(double) * m);
        memcpy(e, be, sizeof(double) * m);
        LAPACKE_dstev(LAPACK_COL_MAJOR, 'V', m, d, e, Z, m);
        *theta = d[m - 1];
        if (fabs(b * Z[(m - 1) * m + m - 1]) <= tol * fabs(d[m - 1])) break;
        for (int i = 0; i < n; i++) { vp[i] = v[i]; v[i] = w[i] / b; }
    }
    free(vp); free(v); free(w); free(al); free(be); free(d); free(e); free(Z);
    return m;
}

static void test_lanczos_vs_plain(void)
{
    enum { N = 300 };
    double lam[N];
    for (int i = 0; i < N; i++) lam[i] = 1.0 - 1.5 * i / N + 0.01 * sin((double)i);   /* tight top gap */
    double top = lam[0];
    for (int i = 1; i < N; i++) top = fmax(top, lam[i]);
    ls_tensor *A = make_sym(N, lam, 21);
    ls_linop op;
    ls_linop_dense(&op, A);
    double v0[N];
    ls_rng r;
    ls_rng_init(&r, 4);
    ls_rng_rademacher(&r, LS_F64, v0, N);
    double theta = 0;
    int plain = plain_lanczos_matvecs(A, v0, 1e-4, &theta);
    ls_eig_result res;
    ls_lanczos_opts o = {.k = 1, .which = LS_EIG_LARGEST, .tol = 1e-4, .v0 = v0};
    CHECK(ls_lanczos(&op, &o, &res) == LS_OK);
    CHECK(res.all_converged);
    CHECK(res.matvecs <= plain);
    CHECK_NEAR(res.values[0], top, 1e-4);
    CHECK_NEAR(theta, top, 1e-4);
    printf("lanczos top eigenvalue to tol 1e-4, n = %d: %lld matvecs (plain Lanczos: %d)\n", N,
           (long long)res.matvecs, plain);
    ls_eig_result_free(&res);
    ls_tensor_release(A);
}

/* ---- power iteration ---- */

static void test_power(void)
{
    enum { N = 40 };
    double lam[N];
    for (int i = 0; i < N; i++) lam[i] = -1.0 + 2.0 * i / (N - 1);
    lam[N - 1] = 10.0; lam[N - 2] = 5.0;
    ls_tensor *A = make_sym(N, lam, 31);
    ls_linop op;
    ls_linop_dense(&op, A);
    ls_eig_result r;
    ls_power_opts o = {.k = 2, .seed = 1};
    CHECK(ls_power_iteration(&op, &o, &r) == LS_OK);
    CHECK(r.all_converged);
    CHECK_NEAR(r.values[0], 10.0, 3e-2);   /* PyHessian's stopping rule: ~1e-3 relative */
    CHECK_NEAR(r.values[1], 5.0, 5e-2);
    CHECK(r.matvecs <= 200 && r.vectors);
    /* eigenvector: |cos| with the exact one is near 1, i.e. small residual */
    CHECK(eig_residual(A, &r, 0) < 0.05);
    ls_eig_result_free(&r);
    ls_tensor_release(A);
    lam[0] = -30.0;   /* PyHessian returns the negative eigenvalue of largest magnitude */
    A = make_sym(N, lam, 32);
    ls_linop_dense(&op, A);
    o.k = 1;
    CHECK(ls_power_iteration(&op, &o, &r) == LS_OK);
    CHECK_NEAR(r.values[0], -30.0, 0.1);
    ls_eig_result_free(&r);
    ls_tensor_release(A);
}

/* ---- trace and diagonal ---- */

static double exact_trace(const ls_tensor *A)
{
    double t = 0;
    int64_t n = A->shape[0];
    for (int64_t i = 0; i < n; i++) t += ls_tensor_get_flat(A, i * n + i);
    return t;
}

static void test_trace(void)
{
    enum { N = 30, SEEDS = 200, P = 50 };
    double lam[N];
    for (int i = 0; i < N; i++) lam[i] = 3.0 * sin(1.0 + i) + 0.5;
    ls_tensor *A = make_sym(N, lam, 41);
    ls_linop op;
    ls_linop_dense(&op, A);
    double tr = exact_trace(A), fro = 0, dg = 0;
    for (int64_t i = 0; i < N * N; i++) fro += pow(ls_tensor_get_flat(A, i), 2);
    for (int64_t i = 0; i < N; i++) dg += pow(ls_tensor_get_flat(A, i * N + i), 2);
    double var1 = 2 * (fro - dg);   /* Var(z^T A z) for Rademacher z */
    double sum = 0, sum2 = 0;
    int covered = 0;
    for (int s = 0; s < SEEDS; s++) {
        ls_trace_result t;
        CHECK(ls_trace_estimate(&op, LS_TRACE_HUTCHINSON, P, (uint64_t)s + 100, &t) == LS_OK);
        sum += t.estimate;
        sum2 += t.estimate * t.estimate;
        covered += fabs(t.estimate - tr) <= 3 * t.stderr_;
        if (s == 0) CHECK(t.probes == P && t.sketch == 0);
    }
    double mean = sum / SEEDS, var = sum2 / SEEDS - mean * mean;
    CHECK_NEAR(mean, tr, 4 * sqrt(var1 / P / SEEDS));
    CHECK(var > 0.7 * var1 / P && var < 1.4 * var1 / P);
    CHECK(covered >= 0.95 * SEEDS);
    /* reproducible */
    ls_trace_result a, b;
    ls_trace_estimate(&op, LS_TRACE_HUTCHINSON, 10, 7, &a);
    ls_trace_estimate(&op, LS_TRACE_HUTCHINSON, 10, 7, &b);
    CHECK(a.estimate == b.estimate && a.stderr_ == b.stderr_);
    ls_tensor_release(A);

    /* low rank plus noise: Hutch++ unbiased, covered, far smaller variance at the same matvecs */
    enum { M = 100, Q = 30 };
    double lam2[M];
    for (int i = 0; i < M; i++) lam2[i] = 0.05 * cos((double)i);
    lam2[0] = 100; lam2[1] = 80; lam2[2] = 60; lam2[3] = 50; lam2[4] = -40;
    A = make_sym(M, lam2, 42);
    ls_linop_dense(&op, A);
    tr = exact_trace(A);
    double sh = 0, sh2 = 0, sp = 0, sp2 = 0;
    int cov_pp = 0;
    for (int s = 0; s < SEEDS; s++) {
        ls_trace_result h, p;
        CHECK(ls_trace_estimate(&op, LS_TRACE_HUTCHINSON, Q, (uint64_t)s, &h) == LS_OK);
        CHECK(ls_trace_estimate(&op, LS_TRACE_HUTCHPP, Q, (uint64_t)s, &p) == LS_OK);
        if (s == 0) CHECK(p.probes == Q && p.sketch == Q / 3);
        sh += h.estimate; sh2 += h.estimate * h.estimate;
        sp += p.estimate; sp2 += p.estimate * p.estimate;
        cov_pp += fabs(p.estimate - tr) <= 3 * p.stderr_;
    }
    double vh = sh2 / SEEDS - pow(sh / SEEDS, 2), vp = sp2 / SEEDS - pow(sp / SEEDS, 2);
    CHECK_NEAR(sp / SEEDS, tr, 4 * sqrt(vp / SEEDS) + 1e-9);
    CHECK_NEAR(sh / SEEDS, tr, 4 * sqrt(vh / SEEDS));
    CHECK(vp < 1e-3 * vh);
    CHECK(cov_pp >= 0.95 * SEEDS);
    printf("low-rank trace, %d matvecs: variance hutchinson %.3g, hutch++ %.3g\n", Q, vh, vp);
    ls_tensor_release(A);
}

static void test_diag(void)
{
    enum { N = 12, P = 2000 };
    double lam[N];
    for (int i = 0; i < N; i++) lam[i] = i - 4.0;
    ls_tensor *A = make_sym(N, lam, 51);
    ls_linop op;
    ls_linop_dense(&op, A);
    ls_tensor *est, *se;
    CHECK(ls_diag_estimate(&op, P, 3, &est, &se) == LS_OK);
    int ok = 0;
    for (int64_t i = 0; i < N; i++) {
        double truth = ls_tensor_get_flat(A, i * N + i);
        double e = ls_tensor_get_flat(est, i), s = ls_tensor_get_flat(se, i);
        ok += fabs(e - truth) <= 4 * s && s > 0 && s < 1;
    }
    CHECK(ok == N);
    ls_tensor_release(est);
    ls_tensor_release(se);
    ls_tensor_release(A);
    /* a diagonal matrix is recovered exactly by one probe (z_i^2 = 1), stderr 0 */
    int64_t shape[2] = {N, N};
    A = ls_tensor_zeros(LS_F64, 2, shape);
    for (int64_t i = 0; i < N; i++) ((double *)ls_tensor_data(A))[i * N + i] = lam[i];
    ls_linop_dense(&op, A);
    CHECK(ls_diag_estimate(&op, 3, 9, &est, &se) == LS_OK);
    for (int64_t i = 0; i < N; i++) {
        CHECK(ls_tensor_get_flat(est, i) == lam[i]);
        CHECK(ls_tensor_get_flat(se, i) == 0);
    }
    ls_tensor_release(est);
    ls_tensor_release(se);
    ls_tensor_release(A);
}

/* ---- SLQ ---- */

static void test_slq(void)
{
    enum { N = 120, RUNS = 40, STEPS = 12 };
    double lam[N];
    for (int i = 0; i < N; i++) lam[i] = -2.0 + 5.0 * pow((double)i / (N - 1), 2);
    ls_tensor *A = make_sym(N, lam, 61);
    ls_linop op;
    ls_linop_dense(&op, A);
    ls_slq_result r;
    CHECK(ls_slq(&op, STEPS, RUNS, 7, &r) == LS_OK);
    CHECK(r.matvecs == (int64_t)RUNS * STEPS && r.steps == STEPS);
    int wsum_ok = 0, node_ok = 1;
    for (int run = 0; run < RUNS; run++) {
        double s = 0;
        for (int i = 0; i < STEPS; i++) {
            s += r.weights[run * STEPS + i];
            double x = r.nodes[run * STEPS + i];
            node_ok &= x >= -2.0 - 1e-9 && x <= 3.0 + 1e-9;
        }
        wsum_ok += fabs(s - 1) < 1e-12;
    }
    CHECK(wsum_ok == RUNS && node_ok);
    for (int p = 1; p <= 3; p++) {
        double truth = 0;
        for (int i = 0; i < N; i++) truth += pow(lam[i], p);
        truth /= N;
        /* statistical error from the spread of per-run estimates */
        double s = 0, s2 = 0;
        for (int run = 0; run < RUNS; run++) {
            ls_slq_result one = {.runs = 1, .steps = STEPS, .nodes = r.nodes + run * STEPS,
                                 .weights = r.weights + run * STEPS};
            double m = ls_slq_moment(&one, p);
            s += m; s2 += m * m;
        }
        double mean = s / RUNS, se = sqrt((s2 / RUNS - mean * mean) / (RUNS - 1));
        CHECK_NEAR(ls_slq_moment(&r, p), mean, 1e-12);
        CHECK_NEAR(mean, truth, 4 * se);
    }
    CHECK_NEAR(ls_slq_moment(&r, 0), 1.0, 1e-12);
    /* density integrates to 1 */
    enum { G = 2001 };
    static double grid[G], dens[G];
    for (int g = 0; g < G; g++) grid[g] = -3.0 + 7.0 * g / (G - 1);
    ls_slq_density(&r, 0.05, grid, G, dens);
    double mass = 0;
    for (int g = 0; g + 1 < G; g++) mass += 0.5 * (dens[g] + dens[g + 1]) * (grid[g + 1] - grid[g]);
    CHECK_NEAR(mass, 1.0, 1e-6);
    ls_slq_result_free(&r);

    /* many runs: converges (tr(A^2)/n to 0.5 %) */
    CHECK(ls_slq(&op, 6, 3000, 8, &r) == LS_OK);
    double t2 = 0;
    for (int i = 0; i < N; i++) t2 += lam[i] * lam[i];
    CHECK_NEAR(ls_slq_moment(&r, 2), t2 / N, 5e-3 * t2 / N);
    ls_slq_result_free(&r);

    /* steps >= n: exact quadrature for every polynomial, up to the Rademacher start */
    CHECK(ls_slq(&op, 500, 1, 9, &r) == LS_OK);
    CHECK(r.steps == N);
    ls_slq_result_free(&r);
    ls_tensor_release(A);
}

/* ---- errors ---- */

static void test_errors(void)
{
    double lam[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    ls_tensor *A = make_sym(10, lam, 71);
    ls_linop op;
    ls_linop_dense(&op, A);
    ls_eig_result r;
    ls_lanczos_opts o = {.k = 12, .which = LS_EIG_LARGEST};
    CHECK(ls_lanczos(&op, &o, &r) == LS_ERR_ARG);
    CHECK(strcmp(ls_error_message(), "lanczos: k = 12 exceeds the operator size 10") == 0);
    o.k = 0;
    CHECK(ls_lanczos(&op, &o, &r) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "lanczos: k must be >= 1") != NULL);
    ls_power_opts po = {.k = 11};
    CHECK(ls_power_iteration(&op, &po, &r) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "power: k = 11 exceeds") != NULL);
    ls_trace_result t;
    CHECK(ls_trace_estimate(&op, LS_TRACE_HUTCHPP, 2, 1, &t) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "hutch++") != NULL);
    ls_slq_result s;
    CHECK(ls_slq(&op, 0, 1, 1, &s) == LS_ERR_ARG);
    ls_linop bad = op;
    bad.n = 0;
    CHECK(ls_lanczos(&bad, &(ls_lanczos_opts){.k = 1}, &r) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "operator size must be in 1..2^40, got 0") != NULL);
    bad.n = INT64_C(1) << 62;   /* n * sizeof(double) would wrap: refused before any allocation */
    CHECK(ls_slq(&bad, 10, 1, 1, &s) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "operator size must be in 1..2^40") != NULL);
    bad = op;
    bad.dtype = LS_I64;
    CHECK(ls_trace_estimate(&bad, LS_TRACE_HUTCHINSON, 3, 1, &t) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "dtype") != NULL);
    bad = op;
    bad.matvec = nan_matvec;
    CHECK(ls_lanczos(&bad, &(ls_lanczos_opts){.k = 1}, &r) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "lanczos: matvec returned a non-finite value") != NULL);
    CHECK(ls_slq(&bad, 3, 2, 1, &s) == LS_ERR_ARG);
    bad.matvec = failing_matvec;
    CHECK(ls_trace_estimate(&bad, LS_TRACE_HUTCHPP, 9, 1, &t) == LS_ERR_IO);
    CHECK(strcmp(ls_error_message(), "my matvec: batch 3 missing") == 0);
    ls_tensor *e = NULL, *se = NULL;
    CHECK(ls_diag_estimate(&bad, 3, 1, &e, &se) == LS_ERR_IO && e == NULL && se == NULL);
    int64_t shape[2] = {3, 4};
    ls_tensor *R = ls_tensor_zeros(LS_F64, 2, shape);
    CHECK(ls_linop_dense(&op, R) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "[3x4]") != NULL);
    ls_tensor_release(R);
    ls_tensor_release(A);
}

/* A 50 000 x 50 000 tridiagonal operator (2 + i/n on the diagonal, -1 beside it): large enough that
 * the basis products of curv_vec.c split into several chunks. */
static ls_status tridiag_matvec(void *ctx, const ls_tensor *v, ls_tensor *out)
{
    (void)ctx;
    int64_t n = v->shape[0];
    const void *x = ls_tensor_data((ls_tensor *)v);
    void *y = ls_tensor_data(out);
    bool f32 = v->dtype == LS_F32;
#define X(i) (f32 ? (double)((const float *)x)[i] : ((const double *)x)[i])
    for (int64_t i = 0; i < n; i++) {
        double s = (2.0 + (double)i / (double)n) * X(i) - (i > 0 ? X(i - 1) : 0.0) -
                   (i + 1 < n ? X(i + 1) : 0.0);
        if (f32) ((float *)y)[i] = (float)s;
        else ((double *)y)[i] = s;
    }
#undef X
    return LS_OK;
}

/* The basis passes of curv_internal.h in basis dtype bt against plain loops in double: V (COLS
 * columns of length N), y (a vector) and hr (coefficients) in f64, rounded to bt here. */
static void test_lz_passes(ls_dtype bt, int64_t N, int COLS, const double *V64, const double *y,
                           const double *hr)
{
    size_t es = ls_dtype_size(bt);
    bool f32 = bt == LS_F32;
#define LD(p, i) (f32 ? (double)((const float *)(p))[i] : ((const double *)(p))[i])
#define ST(p, i, x) (f32 ? (void)(((float *)(p))[i] = (float)(x)) : (void)(((double *)(p))[i] = (x)))
    void *V = malloc(es * N * COLS), *raw = malloc(es * N), *u = malloc(es * N);
    void *w = malloc(es * N), *out = malloc(es * N), *w0 = malloc(es * N);
    for (int64_t i = 0; i < N * COLS; i++) ST(V, i, V64[i]);
    for (int64_t i = 0; i < N; i++) {
        ST(raw, i, check_uniform() - 0.5);
        ST(u, i, LD(V, N + i));
        ST(w0, i, y[i]);
    }
    double alpha = 0;
    CHECK(curv_lz_recur(N, bt, raw, 0.25, 0.5, V, u, &alpha) == -1);
    long double ad = 0, nd = 0;
    double wmax = 0;
    for (int64_t i = 0; i < N; i++) {
        double vv = LD(V, N + i) * 0.25;
        vv = f32 ? (float)vv : vv;
        wmax = fmax(wmax, fabs(LD(u, i) - vv));
        ad += (long double)vv * (LD(raw, i) * 0.25 - 0.5 * LD(V, i));
    }
    CHECK(wmax == 0);   /* v_j exactly u_j s rounded to bt */
    CHECK_NEAR(alpha, (double)ad, 1e-11);
    double ss = curv_lz_sub(N, bt, raw, 0.25, 0.5, V, alpha, u, w, out);
    for (int64_t i = 0; i < N; i++) {
        double want = (LD(raw, i) * 0.25 - 0.5 * LD(V, i)) - alpha * LD(u, i);
        want = f32 ? (float)want : want;
        wmax = fmax(wmax, fabs(LD(w, i) - want) + fabs(LD(out, i) - want));
        nd += (long double)want * want;
    }
    CHECK(wmax == 0);
    CHECK_NEAR(ss, (double)nd, 1e-12 * (double)nd);
    /* w -= V h with ||w||^2 and w's copy in the same pass: f64 through OpenBLAS (to rounding), f32
     * in the order of the loop below (exactly) */
    memcpy(w, w0, es * N);
    double s2 = curv_sub_norm2(N, bt, COLS, V, NULL, hr, w, out), amax = 0;
    nd = 0;
    for (int64_t i = 0; i < N; i++) {
        double want = LD(w0, i);
        for (int k = 0; k < COLS; k++) want -= hr[k] * LD(V, (int64_t)k * N + i);
        want = f32 ? (float)want : want;
        amax = fmax(amax, fabs(LD(w, i) - want) + fabs(LD(out, i) - want));
        nd += (long double)want * want;
    }
    CHECK(f32 ? amax == 0 : amax < 1e-12);
    CHECK_NEAR(s2, (double)nd, 1e-12 * (double)nd);
    CHECK(curv_sub_norm2(N, bt, 0, NULL, NULL, NULL, w, NULL) == s2);   /* same lanes, same bits */
    if (f32) {   /* some columns only (the reorthogonalisation's few large coefficients) */
        int idx[2] = {1, 3};
        double hh[2] = {hr[1], hr[3]};
        memcpy(w, w0, es * N);
        curv_sub_norm2(N, bt, 2, V, idx, hh, w, NULL);
        amax = 0;
        for (int64_t i = 0; i < N; i++) {
            double want = (float)((LD(w0, i) - hh[0] * LD(V, N + i)) - hh[1] * LD(V, 3 * N + i));
            amax = fmax(amax, fabs(LD(w, i) - want));
        }
        CHECK(amax == 0);
    }
    /* h = V^T x, the same bits on 1 and 2 threads */
    int saved = ls_get_threads();
    double h[2][8];
    for (int th = 0; th < 2; th++) {
        ls_set_threads(th + 1);
        curv_basis_dots(N, bt, COLS, V, w0, h[th]);
    }
    ls_set_threads(saved);
    CHECK(memcmp(h[0], h[1], sizeof(double) * COLS) == 0);
    for (int k = 0; k < COLS; k++) {
        long double d = 0;
        for (int64_t i = 0; i < N; i++) d += (long double)LD(V, (int64_t)k * N + i) * LD(w0, i);
        CHECK_NEAR(h[0][k], (double)d, 1e-11);
    }
    ST(raw, N - 3, NAN);
    ST(raw, N - 2, INFINITY);
    CHECK(curv_lz_recur(N, bt, raw, 1.0, 0.0, NULL, u, &alpha) == N - 3);
#undef LD
#undef ST
    free(V);
    free(raw);
    free(u);
    free(w);
    free(out);
    free(w0);
}

/* The estimators give the same bits on 1 and 2 threads (their vector kernels add partial sums of
 * fixed chunks in a fixed order), and those kernels agree with plain loops. */
static void test_thread_independence(void)
{
    enum { N = 50000, COLS = 5 };
    ls_linop op = {.n = N, .dtype = LS_F64, .matvec = tridiag_matvec};
    int saved = ls_get_threads();
    ls_eig_result r[2], rr[2];
    ls_trace_result t[2];
    ls_slq_result q[2];
    for (int th = 0; th < 2; th++) {
        ls_set_threads(th + 1);
        ls_lanczos_opts o = {.k = 2, .which = LS_EIG_LARGEST, .tol = 1e-3, .seed = 3,
                             .max_iter = 40, .want_vectors = true};
        CHECK(ls_lanczos(&op, &o, &r[th]) == LS_OK);
        o.ncv = 6;   /* with thick restarts (and their row-blocked rotation of the basis) */
        CHECK(ls_lanczos(&op, &o, &rr[th]) == LS_OK);
        CHECK(ls_trace_estimate(&op, LS_TRACE_HUTCHPP, 9, 5, &t[th]) == LS_OK);
        CHECK(ls_slq(&op, 12, 2, 7, &q[th]) == LS_OK);
    }
    CHECK(r[0].iterations == r[1].iterations);
    CHECK(memcmp(r[0].values, r[1].values, sizeof(double) * 2) == 0);
    CHECK(r[0].vectors && r[1].vectors &&
          memcmp(ls_tensor_data(r[0].vectors), ls_tensor_data(r[1].vectors), sizeof(double) * N * 2) == 0);
    CHECK(t[0].estimate == t[1].estimate && t[0].stderr_ == t[1].stderr_);
    CHECK(memcmp(q[0].nodes, q[1].nodes, sizeof(double) * 24) == 0 &&
          memcmp(q[0].weights, q[1].weights, sizeof(double) * 24) == 0);
    CHECK(r[0].values[0] > 4.0 && r[0].values[0] <= 5.0);   /* Gershgorin: the spectrum is in [0, 5] */
    CHECK(rr[0].iterations == rr[1].iterations && rr[0].iterations > 6);
    CHECK(memcmp(rr[0].values, rr[1].values, sizeof(double) * 2) == 0);
    CHECK(rr[0].vectors && rr[1].vectors &&
          memcmp(ls_tensor_data(rr[0].vectors), ls_tensor_data(rr[1].vectors),
                 sizeof(double) * N * 2) == 0);
    for (int th = 0; th < 2; th++) {
        ls_eig_result_free(&r[th]);
        ls_eig_result_free(&rr[th]);
        ls_slq_result_free(&q[th]);
    }
    /* an f32 operator (f32 basis), with and without restarts */
    ls_linop op32 = {.n = N, .dtype = LS_F32, .matvec = tridiag_matvec};
    for (int ncv = 0; ncv <= 6; ncv += 6) {
        for (int th = 0; th < 2; th++) {
            ls_set_threads(th + 1);
            ls_lanczos_opts o = {.k = 2, .which = LS_EIG_LARGEST, .tol = 1e-3, .seed = 3,
                                 .max_iter = 40, .ncv = ncv, .want_vectors = true};
            CHECK(ls_lanczos(&op32, &o, &r[th]) == LS_OK);
        }
        CHECK(r[0].iterations == r[1].iterations && r[0].vectors && r[1].vectors);
        CHECK(memcmp(r[0].values, r[1].values, sizeof(double) * 2) == 0);
        CHECK(memcmp(ls_tensor_data(r[0].vectors), ls_tensor_data(r[1].vectors),
                     sizeof(float) * N * 2) == 0);
        CHECK(r[0].values[0] > 4.0 && r[0].values[0] <= 5.0);
        for (int th = 0; th < 2; th++) ls_eig_result_free(&r[th]);
    }

    /* the kernels against plain loops (different summation order: agreement to rounding) */
    double *V = malloc(sizeof(double) * N * COLS), *x = malloc(sizeof(double) * N);
    double *y1 = malloc(sizeof(double) * N), *y2 = malloc(sizeof(double) * N);
    double h[COLS], hr[COLS] = {0}, dr = 0, nr = 0, ar = 0, amax = 0;
    for (int64_t i = 0; i < (int64_t)N * COLS; i++) V[i] = check_uniform() - 0.5;
    for (int64_t i = 0; i < N; i++) {
        x[i] = check_uniform() - 0.5;
        y1[i] = y2[i] = check_uniform();
    }
    for (int th = 1; th <= 2; th++) {
        ls_set_threads(th);
        curv_gemv_t(N, COLS, V, x, h);
        for (int k = 0; k < COLS; k++) {
            long double s = 0;
            for (int64_t i = 0; i < N; i++) s += (long double)V[(int64_t)k * N + i] * x[i];
            hr[k] = (double)s;
            CHECK_NEAR(h[k], hr[k], 1e-11);
        }
        long double d = 0, nn = 0;
        for (int64_t i = 0; i < N; i++) {
            d += (long double)x[i] * V[i];
            nn += (long double)x[i] * x[i];
        }
        dr = (double)d;
        nr = sqrt((double)nn);
        CHECK_NEAR(curv_dot(N, x, V), dr, 1e-11);
        CHECK_NEAR(curv_nrm2(N, x), nr, 1e-11);
    }
    memcpy(y2, y1, sizeof(double) * N);
    curv_sub_norm2(N, LS_F64, COLS, V, NULL, hr, y1, NULL);   /* y1 -= V hr */
    curv_axpy(N, 0.25, x, y1);
    for (int64_t i = 0; i < N; i++) {
        double want = y2[i] + 0.25 * x[i];
        for (int k = 0; k < COLS; k++) want -= V[(int64_t)k * N + i] * hr[k];
        ar = fabs(y1[i] - want);
        amax = ar > amax ? ar : amax;
    }
    CHECK(amax < 1e-12);

    /* the Lanczos passes over a basis stored in f64 and in f32 (sums in double, only the stored
     * values rounded): v = u s in place and <v, raw s - b vp>; w = (raw s - b vp) - a v with
     * ||w||^2 and its copy; w -= V h (all or some columns) with ||w||^2 and the copy; h = V^T x;
     * the first non-finite entry of raw */
    test_lz_passes(LS_F64, N, COLS, V, y2, hr);
    test_lz_passes(LS_F32, N, COLS, V, y2, hr);
    free(V);
    free(x);
    free(y1);
    free(y2);
    ls_set_threads(saved);
}

/* curv_rows_combine (the Ritz vectors and the restart's rotation of an f32 basis) against a plain
 * loop summing in double in column order: the same bits, for m with and without a remainder of
 * four columns, c = 1 .. 5, and whatever the rows are cut into (blocks of 512 as Lanczos cuts them,
 * of 37, or all at once), which is what makes its result independent of the thread count. */
static void test_rows_combine(void)
{
    enum { N = 1300, MMAX = 11, CMAX = 5 };
    float *V = malloc(sizeof(float) * N * MMAX);
    double *Z = malloc(sizeof(double) * MMAX * CMAX), *t = malloc(sizeof(double) * N * CMAX);
    double *ref = malloc(sizeof(double) * N * CMAX);
    for (int64_t i = 0; i < (int64_t)N * MMAX; i++) V[i] = (float)(check_uniform() - 0.5);
    for (int i = 0; i < MMAX * CMAX; i++) Z[i] = check_uniform() - 0.5;
    const int ms[] = {1, 4, 7, 11}, blocks[] = {512, 37, N};
    for (int mi = 0; mi < 4; mi++)
        for (int c = 1; c <= CMAX; c++) {
            int m = ms[mi];
            for (int64_t r = 0; r < N; r++)
                for (int i = 0; i < c; i++) {
                    double s = 0;
                    for (int q = 0; q < m; q++) s += (double)V[(int64_t)q * N + r] * Z[i * m + q];
                    ref[(int64_t)i * N + r] = s;
                }
            for (int b = 0; b < 3; b++) {
                bool same = true;
                for (int64_t r0 = 0; r0 < N; r0 += blocks[b]) {
                    int64_t rows = N - r0 < blocks[b] ? N - r0 : blocks[b];
                    curv_rows_combine(N, m, V, c, Z, r0, rows, t);
                    for (int i = 0; i < c; i++)
                        same = same && memcmp(t + (int64_t)i * rows, ref + (int64_t)i * N + r0,
                                              sizeof(double) * (size_t)rows) == 0;
                }
                CHECK(same);
            }
        }
    free(V);
    free(Z);
    free(t);
    free(ref);
}

int main(void)
{
    test_rows_combine();
    test_thread_independence();
    test_lanczos();
    test_lanczos_vs_plain();
    test_lanczos_restart();
    test_lanczos_f32_basis();
    test_lanczos_zero_eigenvalue();
    test_power();
    test_trace();
    test_diag();
    test_slq();
    test_errors();
    return check_done("test_curvature");
}
