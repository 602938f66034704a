/* Lanczos (ls_lanczos) against SciPy's eigsh (ARPACK's implicitly restarted Lanczos, dsaupd) on the
 * same dense symmetric matrices and the same start vectors.
 *
 * Spectra (n = 300, each with 3 random orthogonal bases and 3 Rademacher starts):
 *   clustered  evenly spaced on [-1, 1], top cluster 2, 1.99, 1.985, bottom cluster -1.5, -1.495, -1.49
 *   hessian    a bulk of 0.02 N(0, 1) values around 0, outliers 5, 4.6, 4.4, 3, 2.5, 2 and -0.4, -0.3,
 *              -0.28 (the shape of a trained network's Hessian spectrum)
 *   tight      1 - 1.5 i / n + 0.01 sin i (a tight gap at both ends; test_curvature.c's spectrum)
 * Cases on each: k = 1 and k = 3 largest, k = 3 smallest, at tol 1e-4 and 1e-6.
 *
 * Always checked: Lanczos converges, every value is within tol |lambda| of the exact eigenvalue, and
 * the explicit residual ||A y - theta y|| is within the tolerance (the bound |beta_m z_m| is exact).
 * When $LANDSCAPE_PYTHON (default /usr/bin/python3) has scipy: eigsh(LinearOperator, k, which =
 * 'LA'/'SA', tol, v0 = the same start vector, default ncv) runs on the same matrix (written to a
 * temporary file), its products are counted, and ours must need NO MORE products than eigsh in every
 * case. Without scipy that comparison is skipped with a message. The table of counts goes to stdout
 * (ctest --output-on-failure, or run the executable). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/rng.h"
#include "curv_fixtures.h"
#include "curvature/linop.h"

enum { N = 300, SEEDS = 3, KINDS = 3, CASES = 6, MAXK = 3 };

static const char *KIND_NAME[KINDS] = {"clustered", "hessian", "tight"};

/* the (k, which, tol) cases run on every matrix */
static const struct {
    int k;
    ls_eig_which which;
    double tol;
} CASE[CASES] = {
    {1, LS_EIG_LARGEST, 1e-4}, {3, LS_EIG_LARGEST, 1e-4}, {3, LS_EIG_SMALLEST, 1e-4},
    {1, LS_EIG_LARGEST, 1e-6}, {3, LS_EIG_LARGEST, 1e-6}, {3, LS_EIG_SMALLEST, 1e-6},
};

static void spectrum(int kind, int seed, double *lam)
{
    if (kind == 0) {
        for (int i = 0; i < N; i++) lam[i] = -1.0 + 2.0 * i / (N - 1);
        lam[N - 1] = 2.0, lam[N - 2] = 1.99, lam[N - 3] = 1.985;
        lam[0] = -1.5, lam[1] = -1.495, lam[2] = -1.49;
    } else if (kind == 1) {
        ls_rng r;
        ls_rng_init(&r, 500 + (uint64_t)seed);
        ls_rng_normal(&r, LS_F64, lam, N, 0.0, 0.02);
        static const double out[] = {5.0, 4.6, 4.4, 3.0, 2.5, 2.0, -0.4, -0.3, -0.28};
        for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) lam[7 * i + 3] = out[i];
    } else {
        for (int i = 0; i < N; i++) lam[i] = 1.0 - 1.5 * i / N + 0.01 * sin((double)i);
    }
}

/* On the tight spectrum the 3rd largest eigenvalue is 9e-4 below the 2nd and 1.3e-2 above the 4th: at
 * tol 1e-4 a Krylov method may see all three wanted Ritz values converge before the start vector's
 * small component along the 3rd eigenvector has surfaced, and return the 4th in its place (ours and
 * eigsh both do so from seed 2). Such a value is still an eigenvalue to within the tolerance, which
 * is all the residual test promises; elsewhere the exact k wanted eigenvalues must come back. */
static int may_miss(int kind, int c)
{
    return kind == 2 && CASE[c].k > 1 && CASE[c].tol > 1e-5;
}

/* distance from x to the nearest of the n ascending values */
static double nearest(const double *asc, int n, double x)
{
    double d = INFINITY;
    for (int i = 0; i < n; i++) d = fmin(d, fabs(asc[i] - x));
    return d;
}

static int cmp_asc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ||A y - theta y|| / (|theta| ||y||) for column c of r->vectors */
static double rel_residual(const ls_tensor *A, const ls_eig_result *r, int c)
{
    const double *a = ls_tensor_data(A), *y = ls_tensor_data(r->vectors);
    double r2 = 0, y2 = 0;
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < N; j++) s += a[i * N + j] * y[j * r->k + c];
        double d = s - r->values[c] * y[i * r->k + c];
        r2 += d * d;
        y2 += y[i * r->k + c] * y[i * r->k + c];
    }
    return sqrt(r2 / y2) / fabs(r->values[c]);
}

/* The eigsh side: reads records {int32 n, int32 ncases, f64 A[n*n], f64 v0[n], ncases x {int32 k,
 * int32 which (0 = LA, 1 = SA), f64 tol}} and prints, per case, the number of products and the
 * eigenvalues (ascending). */
static const char *ORACLE =
    "import struct, sys\n"
    "import numpy as np\n"
    "from scipy.sparse.linalg import LinearOperator, eigsh\n"
    "raw = open(sys.argv[1], 'rb').read()\n"
    "off = 0\n"
    "while off < len(raw):\n"
    "    n, ncases = struct.unpack_from('<ii', raw, off); off += 8\n"
    "    A = np.frombuffer(raw, np.float64, n * n, off).reshape(n, n); off += 8 * n * n\n"
    "    v0 = np.frombuffer(raw, np.float64, n, off).copy(); off += 8 * n\n"
    "    for _ in range(ncases):\n"
    "        k, which = struct.unpack_from('<ii', raw, off); off += 8\n"
    "        (tol,) = struct.unpack_from('<d', raw, off); off += 8\n"
    "        calls = [0]\n"
    "        def mv(x):\n"
    "            calls[0] += 1\n"
    "            return A @ x\n"
    "        op = LinearOperator((n, n), matvec=mv, dtype=np.float64)\n"
    "        w = eigsh(op, k=k, which=('LA', 'SA')[which], tol=tol, v0=v0,\n"
    "                  return_eigenvectors=False)\n"
    "        print(calls[0], ' '.join(repr(float(x)) for x in sorted(w)), flush=True)\n";

static const char *python_path(void)
{
    const char *p = getenv("LANDSCAPE_PYTHON");
    return p && p[0] ? p : "/usr/bin/python3";
}

/* 1 when the python has scipy's eigsh */
static int have_scipy(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "env -u LD_PRELOAD %s -c 'import scipy.sparse.linalg' >/dev/null 2>&1", python_path());
    return system(cmd) == 0;
}

/* a temporary file holding `text` (or empty); its path goes to `path` (>= 32 bytes) */
static FILE *temp_file(char *path, const char *text)
{
    strcpy(path, "/tmp/ls_eigsh_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w+b");
    if (f && text) fputs(text, f);
    return f;
}

int main(void)
{
    int oracle = have_scipy();
    if (!oracle)
        printf("test_curvature_eigsh: SKIP the eigsh comparison: %s cannot import "
               "scipy.sparse.linalg (Debian: python3-scipy); checking Lanczos alone\n",
               python_path());

    char data_path[32] = "", script_path[32] = "";
    FILE *data = oracle ? temp_file(data_path, NULL) : NULL;
    CHECK(!oracle || data != NULL);

    /* our side: every case, and the matrices written for the oracle */
    int64_t ours[KINDS][SEEDS][CASES];
    double exact[KINDS][SEEDS][CASES][MAXK], spectra[KINDS][SEEDS][N];
    for (int kind = 0; kind < KINDS; kind++)
        for (int s = 0; s < SEEDS; s++) {
            double lam[N], asc[N], v0[N];
            spectrum(kind, s, lam);
            memcpy(asc, lam, sizeof lam);
            qsort(asc, N, sizeof(double), cmp_asc);
            memcpy(spectra[kind][s], asc, sizeof asc);
            ls_tensor *A = make_sym(N, lam, 40 + 10 * (uint64_t)kind + (uint64_t)s);
            ls_rng r;
            ls_rng_init(&r, 1000 + (uint64_t)s);
            ls_rng_rademacher(&r, LS_F64, v0, N);
            ls_linop op;
            CHECK(ls_linop_dense(&op, A) == LS_OK);
            if (data) {
                int32_t hdr[2] = {N, CASES};
                fwrite(hdr, sizeof hdr, 1, data);
                fwrite(ls_tensor_data(A), sizeof(double), (size_t)N * N, data);
                fwrite(v0, sizeof(double), N, data);
            }
            for (int c = 0; c < CASES; c++) {
                int k = CASE[c].k;
                double tol = CASE[c].tol;
                if (data) {
                    int32_t kw[2] = {k, CASE[c].which == LS_EIG_SMALLEST};
                    fwrite(kw, sizeof kw, 1, data);
                    fwrite(&tol, sizeof tol, 1, data);
                }
                ls_lanczos_opts o = {.k = k, .which = CASE[c].which, .tol = tol, .max_iter = N,
                                     .v0 = v0, .want_vectors = true};
                ls_eig_result res;
                CHECK(ls_lanczos(&op, &o, &res) == LS_OK);
                CHECK(res.all_converged);
                CHECK(res.matvecs == res.iterations);
                ours[kind][s][c] = res.matvecs;
                for (int i = 0; i < k; i++) {
                    double want = CASE[c].which == LS_EIG_LARGEST ? asc[N - 1 - i] : asc[i];
                    exact[kind][s][c][i] = want;
                    CHECK(nearest(asc, N, res.values[i]) <= tol * fabs(res.values[i]));
                    if (!may_miss(kind, c)) CHECK_NEAR(res.values[i], want, tol * fabs(want));
                    CHECK(res.residuals[i] <= tol * fabs(res.values[i]));
                    CHECK(rel_residual(A, &res, i) <= tol * (1 + 1e-6) + 1e-12);
                }
                ls_eig_result_free(&res);
            }
            ls_tensor_release(A);
        }

    /* the eigsh side, one python process for all cases */
    int64_t theirs[KINDS][SEEDS][CASES];
    memset(theirs, 0, sizeof theirs);
    FILE *pipe = NULL;
    if (data) {
        fclose(data);
        FILE *script = temp_file(script_path, ORACLE);
        CHECK(script != NULL);
        if (script) fclose(script);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "env -u LD_PRELOAD %s %s %s", python_path(), script_path,
                 data_path);
        pipe = popen(cmd, "r");
        CHECK(pipe != NULL);
    }
    int worse = 0, cases = 0;
    int64_t sum_ours = 0, sum_theirs = 0;
    printf("%-10s %4s %2s %-8s %6s %6s %6s\n", "spectrum", "seed", "k", "which", "tol", "ours",
           "eigsh");
    for (int kind = 0; kind < KINDS; kind++)
        for (int s = 0; s < SEEDS; s++)
            for (int c = 0; c < CASES; c++) {
                int k = CASE[c].k;
                if (pipe) {
                    long count = -1;
                    double w[MAXK];
                    int got = fscanf(pipe, "%ld", &count);
                    for (int i = 0; i < k && got == 1; i++) got = fscanf(pipe, "%lf", &w[i]) == 1;
                    CHECK(got == 1 && count > 0);
                    if (got != 1) {
                        pclose(pipe);
                        pipe = NULL;
                        continue;
                    }
                    theirs[kind][s][c] = count;
                    /* eigsh saw the same matrix: its values (ascending) match the exact ones */
                    for (int i = 0; i < k; i++) {
                        double e = CASE[c].which == LS_EIG_LARGEST ? exact[kind][s][c][k - 1 - i]
                                                                   : exact[kind][s][c][i];
                        CHECK(nearest(spectra[kind][s], N, w[i]) <= 2 * CASE[c].tol * fabs(w[i]));
                        if (!may_miss(kind, c)) CHECK_NEAR(w[i], e, 2 * CASE[c].tol * fabs(e));
                    }
                    CHECK(ours[kind][s][c] <= count);
                    worse += ours[kind][s][c] > count;
                    sum_theirs += count;
                }
                sum_ours += ours[kind][s][c];
                cases++;
                char their[24] = "-";
                if (theirs[kind][s][c] > 0)
                    snprintf(their, sizeof their, "%lld", (long long)theirs[kind][s][c]);
                printf("%-10s %4d %2d %-8s %6.0e %6lld %6s\n", KIND_NAME[kind], s, k,
                       CASE[c].which == LS_EIG_LARGEST ? "largest" : "smallest", CASE[c].tol,
                       (long long)ours[kind][s][c], their);
            }
    if (pipe) CHECK(pclose(pipe) == 0);
    if (oracle)
        printf("%d cases: ours %lld products in all, eigsh %lld; ours needed more in %d\n", cases,
               (long long)sum_ours, (long long)sum_theirs, worse);
    if (data_path[0]) remove(data_path);
    if (script_path[0]) remove(script_path);
    return check_done("test_curvature_eigsh");
}
