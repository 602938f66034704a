/* Curvature estimators on an abstract symmetric linear operator (no Lua here).
 *
 * Every estimator takes an ls_linop: a size n, the dtype the operator works in, and a matvec callback
 * out = A v on 1-D contiguous tensors of length n and that dtype. The estimators never look inside A,
 * so they are tested on dense symmetric matrices with known spectra (tests/c/test_curvature.c) and
 * serve the model Hessian / GGN / Fisher operators unchanged. A is assumed symmetric; nothing checks.
 *
 * All internal arithmetic (Krylov bases, tridiagonal eigenproblems, probe sums) is in f64 whatever the
 * operator dtype; vectors go through the callback in the operator dtype. Every stochastic routine takes
 * a seed and draws from ls_rng (Philox) only, so results are identical for a fixed seed and thread
 * count. The matvec callback may fail: a non-LS_OK status is passed through unchanged (its message is
 * kept), and a matvec whose output holds a NaN/Inf fails with LS_ERR_ARG. Errors name the function:
 * "lanczos: k = 12 exceeds the operator size 10". Results own malloc'd memory: free them with the
 * matching *_free function (safe on a zeroed struct, and on a partially filled one after an error).
 *
 * References: Lanczos with full reorthogonalisation (Golub & Van Loan, 4th ed., §10.1); Hutchinson
 * (1990); Hutch++ (Meyer, Musco, Musco & Woodruff, SOSA 2021); diagonal estimator (Bekas, Kokiopoulou
 * & Saad 2007); stochastic Lanczos quadrature (Ubaru, Chen & Saad, SIMAX 2017; Golub & Meurant).
 * Defaults and the comparison with PyHessian are in docs/curvature.md. */
#ifndef LS_CURVATURE_LINOP_H
#define LS_CURVATURE_LINOP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "tensor/tensor.h"

typedef struct ls_linop {
    int64_t n;
    ls_dtype dtype;   /* LS_F32 or LS_F64 */
    /* out = A v; v and out are 1-D contiguous, length n, dtype `dtype`. out is preallocated. v is
     * borrowed for the call: a matvec that keeps it must take its own reference (ls_tensor_alias or
     * retain); the estimators then write their next input elsewhere. */
    ls_status (*matvec)(void *ctx, const ls_tensor *v, ls_tensor *out);
    void *ctx;
    /* true when matvec writes every entry of out whenever it succeeds: the estimators then do not
     * zero out before each call (they do otherwise, so that a matvec writing nothing gives zeros
     * rather than the previous product) */
    bool overwrites;
} ls_linop;

/* Check n >= 1, dtype float, matvec set; error names `who`. */
ls_status ls_linop_check(const ls_linop *op, const char *who);

/* A dense symmetric matrix as an operator (for tests and ls.curvature.dense): ctx is the [n x n]
 * tensor (borrowed; must outlive the operator); dtype is the matrix dtype. */
ls_status ls_linop_dense_matvec(void *ctx, const ls_tensor *v, ls_tensor *out);
ls_status ls_linop_dense(ls_linop *op, const ls_tensor *matrix);

/* ---- Lanczos: extreme eigenpairs ---------------------------------------------------------------- */
typedef enum ls_eig_which {
    LS_EIG_LARGEST = 0,   /* algebraic largest (ARPACK "LA"); sorted descending */
    LS_EIG_SMALLEST,      /* algebraic smallest, most negative first ("SA"); sorted ascending */
    LS_EIG_BOTH,          /* ceil(k/2) largest (descending) then floor(k/2) smallest (ascending) */
    LS_EIG_MAGNITUDE      /* largest |lambda| ("LM"); sorted by |lambda| descending */
} ls_eig_which;
/* "largest"|"smallest"|"both"|"magnitude" (also "LA", "SA", "BE", "LM"); -1 if unknown. */
int ls_eig_which_parse(const char *s, ls_eig_which *out);
const char *ls_eig_which_name(ls_eig_which w);

typedef struct ls_lanczos_opts {
    int k;               /* number of eigenpairs, 1 <= k <= n */
    ls_eig_which which;
    double tol;          /* <= 0: 1e-6. converged when |beta_m s_{m,i}| <= tol * |theta_i| (|theta_i|
                          * floored at 1e-10 max|theta|) for all k pairs: ARPACK's test */
    int max_iter;        /* <= 0: min(n, 300). The cap on matvecs (= Lanczos steps) */
    int ncv;             /* basis size: <= 0: max(2k + 1, 64), at most n and max_iter. When the
                          * Krylov space reaches it, a thick restart keeps k + (ncv - k) / 2 Ritz
                          * vectors: memory 8 n (ncv + 1) bytes whatever the number of steps */
    uint64_t seed;       /* Rademacher start vector from ls_rng(seed) */
    const double *v0;    /* optional start vector (length n, need not be normalised); overrides seed */
    bool want_vectors;   /* compute Ritz vectors */
} ls_lanczos_opts;

typedef struct ls_eig_result {
    int k;
    double *values;       /* [k], ordered as described under ls_eig_which */
    double *residuals;    /* [k], Lanczos bound |beta_m s_{m,i}| = ||A y_i - theta_i y_i|| (exact arith.) */
    bool *converged;      /* [k] */
    bool all_converged;
    ls_tensor *vectors;   /* [n x k] in the operator dtype, column i belongs to values[i]; or NULL */
    int iterations;       /* Lanczos steps (power: total iterations over all k) */
    int64_t matvecs;
} ls_eig_result;
void ls_eig_result_free(ls_eig_result *r);

/* Lanczos in f64 with partial reorthogonalisation (Simon's omega recurrence: a full classical
 * Gram-Schmidt pass, with the DGKS second pass, only when the estimated loss of orthogonality
 * passes the square root of the operator's epsilon) and thick restart (Wu & Simon): the basis holds
 * at most ncv vectors; when it is full, the k + (ncv - k) / 2 wanted Ritz vectors are kept and the
 * iteration continues from them, every step then orthogonalised fully. Memory: 8 n (ncv + 1) bytes.
 * The iteration stops when the k wanted Ritz pairs satisfy the residual test or after max_iter
 * matvecs (the result then says converged = false; it is not an error). On an invariant subspace
 * (beta ~ 0) a fresh random vector orthogonal to the basis continues the process, so repeated
 * eigenvalues appear with their multiplicity once the space is exhausted; a degenerate eigenvalue
 * may otherwise be found once only (as with ARPACK). The test (ARPACK's dsconv test) runs after
 * every step and costs no matvec, so no more matvecs are spent than SciPy's eigsh spends from the
 * same start in every case of tests/c/test_curvature_eigsh.c. Ritz pairs: all Ritz values of the
 * tridiagonal form of T_m by LAPACKE_dsterf, eigenvectors for the wanted ones only by
 * LAPACKE_dstevr (O(m^2) per step); after a restart T's arrowhead block is reduced to tridiagonal
 * form once per cycle (dsytrd). Work outside the products: see lanczos.c and
 * docs/curvature.md. */
ls_status ls_lanczos(const ls_linop *op, const ls_lanczos_opts *opts, ls_eig_result *out);

/* PyHessian's eigenvalues(maxIter, tol, top_n), for compatibility: for each of k pairs, a normal
 * random start v = g / (||g|| + 1e-6); up to max_iter steps of: orthonormalise v against the found
 * vectors (one modified Gram-Schmidt pass, then v / (||v|| + 1e-6)); Hv; tmp = <Hv, v>;
 * v = Hv / (||Hv|| + 1e-6); stop when |lambda - tmp| / (|lambda| + 1e-6) < tol, keeping the PREVIOUS
 * Rayleigh quotient as PyHessian does. Values in the order found (largest |lambda| first, sign kept).
 * max_iter <= 0: 100; tol <= 0: 1e-3. converged[i] says whether the tol test fired. */
typedef struct ls_power_opts {
    int k;
    int max_iter;
    double tol;
    uint64_t seed;
} ls_power_opts;
ls_status ls_power_iteration(const ls_linop *op, const ls_power_opts *opts, ls_eig_result *out);

/* ---- trace and diagonal ------------------------------------------------------------------------- */
typedef enum ls_trace_method { LS_TRACE_HUTCHINSON = 0, LS_TRACE_HUTCHPP } ls_trace_method;
int ls_trace_method_parse(const char *s, ls_trace_method *out);   /* "hutchinson" | "hutch++" */

typedef struct ls_trace_result {
    double estimate;
    double stderr_;       /* estimated standard error of `estimate` (see trace.c) */
    int64_t probes;       /* matvecs used */
    int64_t sketch;       /* Hutch++: columns of the sketch S (0 for Hutchinson) */
} ls_trace_result;

/* Hutchinson: mean of z^T A z over `probes` Rademacher z; stderr = sample std (n-1) / sqrt(probes)
 * (0 for a single probe). Hutch++: s = probes / 3 sketch columns, Q = orth(A S), exact tr(Q^T A Q)
 * (s matvecs), plus Hutchinson with g = probes - 2 s Rademacher probes projected by (I - Q Q^T); the
 * stderr is that of the Hutchinson part (the deterministic part has none given Q). probes >= 1 for
 * Hutchinson and >= 3 for Hutch++. */
ls_status ls_trace_estimate(const ls_linop *op, ls_trace_method method, int64_t probes, uint64_t seed,
                            ls_trace_result *out);

/* Diagonal (Bekas et al.): mean over probes of z .* A z with Rademacher z. estimate and stderr are new
 * [n] tensors in the operator dtype (stderr per entry: sample std / sqrt(probes)). */
ls_status ls_diag_estimate(const ls_linop *op, int64_t probes, uint64_t seed, ls_tensor **estimate,
                           ls_tensor **stderr_out);

/* ---- stochastic Lanczos quadrature -------------------------------------------------------------- */
typedef struct ls_slq_result {
    int runs, steps;      /* steps actually used per run is min(steps, n) */
    double *nodes;        /* [runs * steps], run-major: Ritz values of run r at r*steps .. */
    double *weights;      /* [runs * steps], squared first components; each run sums to 1 */
    int64_t matvecs;
} ls_slq_result;
void ls_slq_result_free(ls_slq_result *r);

/* `runs` independent Rademacher starts (run r uses the stream of ls_rng(seed) at counter offset r*n),
 * `steps` Lanczos steps each with full reorthogonalisation. Quadrature for tr f(A)/n is
 * (1/runs) sum_r sum_j w_rj f(theta_rj). A breakdown (exact invariant subspace) ends the run early:
 * its unused slots get weight 0 and node equal to its last node. */
ls_status ls_slq(const ls_linop *op, int steps, int runs, uint64_t seed, ls_slq_result *out);

/* The SLQ estimate of tr(A^p)/n, p >= 0. */
double ls_slq_moment(const ls_slq_result *r, int p);

/* Gaussian-smoothed density on the given grid: density(x) = (1/runs) sum_rj w_rj N(x; theta_rj,
 * sigma^2) with sigma a STANDARD DEVIATION, no renormalisation (so it integrates to 1 up to the mass
 * outside the grid). */
void ls_slq_density(const ls_slq_result *r, double sigma, const double *grid, int64_t ngrid,
                    double *density);

#endif
