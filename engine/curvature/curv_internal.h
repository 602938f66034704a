/* Helpers shared by the files of engine/curvature (not part of the public API). */
#ifndef LS_CURV_INTERNAL_H
#define LS_CURV_INTERNAL_H

#include "curvature/linop.h"

/* Applies an operator to f64 vectors: converts into the operator dtype, calls matvec, converts back,
 * rejects non-finite output, counts calls. `who` names the estimator in errors. */
typedef struct curv_mv {
    const ls_linop *op;
    const char *who;
    ls_tensor *vin, *vout;
    int64_t count;
} curv_mv;

ls_status curv_mv_init(curv_mv *mv, const ls_linop *op, const char *who);
ls_status curv_mv_apply(curv_mv *mv, const double *x, double *y);
/* The operator on mv->vin into mv->vout (both in its dtype; vout zeroed first unless the operator
 * overwrites it), counted; and the error for a non-finite entry `bad` of mv->vout. */
ls_status curv_mv_call(curv_mv *mv);
/* The data of mv->vin, to write the next product's input into: a fresh tensor when the last
 * matvec kept a reference to the old one's storage (a Lua matvec's argument), so what it kept
 * never changes; NULL (error set) when that allocation fails. */
void *curv_mv_input(curv_mv *mv);
ls_status curv_mv_nonfinite(const curv_mv *mv, int64_t bad);
void curv_mv_free(curv_mv *mv);

/* The operator (ls_linop_check) and 1 <= k <= n, errors naming `who`. */
ls_status curv_eig_check(const ls_linop *op, int k, const char *who);
/* A result of k pairs with its arrays allocated (zeroed); LS_ERR_MEM naming `who` on failure. */
ls_status curv_eig_alloc(ls_eig_result *r, int k, const char *who);

/* f64 vector kernels on the engine's pool, the same bits for any thread count (curv_vec.c) */
double curv_dot(int64_t n, const double *x, const double *y);
double curv_nrm2(int64_t n, const double *x);
void curv_axpy(int64_t n, double a, const double *x, double *y);      /* y += a x */
void curv_gemv_t(int64_t n, int cols, const double *V, const double *x, double *h);   /* h = V^T x */
/* x (f64) into an operator's dtype; and back, returning the first non-finite index or -1 */
void curv_to_dtype(int64_t n, const double *x, ls_dtype dt, void *out);
int64_t curv_from_dtype(int64_t n, ls_dtype dt, const void *in, double *y);

/* The passes of Lanczos over its basis, stored in the dtype bt of the operator (f32 or f64); all
 * arithmetic and sums in double, only what is stored rounded to bt. Each is one read of its vectors
 * (on the pool, partial sums in chunk order: the same bits for any thread count). Column j holds
 * u_j, the unnormalised vector that went through the matvec (raw: A u_j, in bt):
 *   recur: v_j = u_j scale in place (scale = 1 / ||u_j||), *alpha = <v_j, raw scale - bp vp> (vp
 *          NULL: no second term); returns the first non-finite index of raw, or -1;
 *   sub:   w = (raw scale - bp vp) - a v_j (the next u, formed again rather than stored by recur),
 *          written into w and, when out is not NULL, into out (the next matvec's input); returns
 *          ||w||^2. */
int64_t curv_lz_recur(int64_t n, ls_dtype bt, const void *raw, double scale, double bp,
                      const void *vp, void *vj, double *alpha);
double curv_lz_sub(int64_t n, ls_dtype bt, const void *raw, double scale, double bp, const void *vp,
                   double a, const void *vj, void *w, void *out);

/* Rows r0 .. r0 + rows - 1 of V Z (V: m f32 columns of length n; Z: m x c, column-major) into t,
 * [c][rows] in f64: t[i][r] = sum over q = 0, 1, .., m - 1 in that order of V[r0 + r, q] Z[q, i],
 * starting from 0, in double (so the bits do not depend on how the rows are cut into blocks). */
void curv_rows_combine(int64_t n, int m, const float *V, int c, const double *Z, int64_t r0,
                       int64_t rows, double *t);

/* h = V^T x, V `cols` contiguous columns of length n and x, both in bt (f64: curv_gemv_t). */
void curv_basis_dots(int64_t n, ls_dtype bt, int cols, const void *V, const void *x, double *h);

/* w -= V h (V and w in bt; the columns idx[0..cols) of V, or 0..cols when idx is NULL; idx must
 * be NULL for f64; cols 0: w unchanged), returning ||w||^2 and writing w into raw (in bt) when raw
 * is not NULL: one pass. */
double curv_sub_norm2(int64_t n, ls_dtype bt, int cols, const void *V, const int *idx,
                      const double *h, void *w, void *raw);

/* w -= V (V^T w), repeated once when the DGKS test asks for it (classical Gram-Schmidt, "twice is
 * enough"); V holds `cols` contiguous columns of length n, V and w in bt; h is scratch of length
 * cols and idx (f32 only; NULL for f64) of length cols. norm is ||w|| when the caller knows it (< 0:
 * computed here). Returns the new ||w||, and writes w into raw (in bt) when raw is not NULL (the
 * next product's input). */
double curv_orthogonalise(int64_t n, ls_dtype bt, int cols, const void *V, void *w, double *h,
                          int *idx, double norm, void *raw);

/* One Lanczos step on the basis V (column j is v_j, unit norm): w = A v_j - beta_{j-1} v_{j-1},
 * alpha_j = <v_j, w>, w -= alpha_j v_j, full reorthogonalisation against v_0..v_j, *beta = ||w||.
 * w and h (length j+1) are scratch; on return w holds the unnormalised next vector. */
ls_status curv_lanczos_step(curv_mv *mv, double *V, int j, double beta_prev, double *alpha,
                            double *beta, double *w, double *h);

#endif
