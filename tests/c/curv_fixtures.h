/* Fixtures shared by the curvature C tests (test_curvature.c, test_curvature_eigsh.c). */
#ifndef CURV_FIXTURES_H
#define CURV_FIXTURES_H

#include <lapacke.h>
#include <stdlib.h>

#include "core/rng.h"
#include "tensor/tensor.h"

/* [n x n] f64 tensor Q diag(lam) Q^T with a random orthogonal Q from `seed` (the orthogonal factor of
 * a Gaussian matrix: LAPACKE_dgeqrf + dorgqr). */
static ls_tensor *make_sym(int n, const double *lam, uint64_t seed)
{
    double *G = malloc(sizeof(double) * n * n), *tau = malloc(sizeof(double) * n);
    ls_rng r;
    ls_rng_init(&r, seed);
    ls_rng_normal(&r, LS_F64, G, (int64_t)n * n, 0, 1);
    LAPACKE_dgeqrf(LAPACK_COL_MAJOR, n, n, G, n, tau);
    LAPACKE_dorgqr(LAPACK_COL_MAJOR, n, n, n, G, n, tau);
    int64_t shape[2] = {n, n};
    ls_tensor *A = ls_tensor_zeros(LS_F64, 2, shape);
    double *a = ls_tensor_data(A);
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int c = 0; c < n; c++) s += G[c * n + i] * lam[c] * G[c * n + j];
            a[i * n + j] = a[j * n + i] = s;
        }
    free(G);
    free(tau);
    return A;
}

#endif
