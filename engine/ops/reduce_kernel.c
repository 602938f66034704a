/* The reduction engine behind engine/ops/reduce.c: plans and kernels (reduce.c composes them into
 * the ops: var is a mean pass then a squared-deviation pass, logsumexp a max pass then an exp-sum).
 *
 * Dims: an op reduces over the dims in attrs (0-based, negative counts from the end, each at most once)
 * or over all dims when none are given. keepdim keeps reduced dims as size 1.
 *
 * Layout. Every reduction goes through one plan: O output elements (the kept dims) each reducing R
 * elements (the reduced dims), both sides coalesced, read through x's strides with no copy (so
 * transposed, narrowed and expanded inputs cost nothing extra). plan_path picks one of three kernels
 * from the strides alone:
 *   runs     the innermost reduced dim is contiguous, so an output's elements are contiguous runs,
 *            reduced in place by vectorised loops (all of a contiguous tensor, the last dim, dims
 *            (0, 2, 3) of [N, C, H, W]: N runs of H*W per channel);
 *   columns  the innermost kept dim is contiguous (and at least 8 long) and the innermost reduced one
 *            is not (dim 0 of [B, F], statistics of channels-last data): blocks of adjacent outputs
 *            are reduced together, row by row, vectorised along the outputs;
 *   gather   anything else (a transposed matrix, every other element): elements are gathered into a
 *            buffer of doubles chunk by chunk and reduced there.
 *
 * Work split and determinism. On the row paths (runs, gather) each output's reduction is cut into
 * chunks of RED_CHUNK elements at fixed positions and a task is one (output, chunk) pair; on the
 * column path a task is a block of up to RED_COLS outputs times a chunk of up to RED_COL_ROWS reduced
 * positions. A task writes one partial result per output, and the partials of an output are folded
 * serially, in chunk order. Tasks run in parallel (ls_parallel_for) and how they are cut depends only
 * on the shapes, so results are bit-for-bit the same for any thread count; the AVX2 clones of the
 * kernels do the same arithmetic as the baseline ones, so they do not depend on the CPU either.
 *
 * Accuracy. Values are accumulated in double for both dtypes (f32 inputs are widened, exactly, as
 * they are read), and a sum of N terms is split so that its rounding error grows much more slowly
 * than N eps: runs: sixteen lanes within a run, runs in order within a chunk, chunks in order, about
 * (RED_CHUNK / 16 + N / RED_CHUNK) eps for runs of 16 or more; gather: four lanes within a chunk,
 * (RED_CHUNK / 4 + N / RED_CHUNK) eps; columns: rows in order within a chunk, then chunks in order,
 * (RED_COL_ROWS + N / RED_COL_ROWS) eps.
 *
 * NaN: max/min/argmax/argmin and norm-inf propagate NaN (argmax/argmin return the first NaN), as
 * torch does. Empty reductions: sum and the 1-/2-norms give 0, mean/var/std NaN, logsumexp -inf;
 * max, min, argmax, argmin and the inf-norm are errors naming the op and the shape.
 *
 * Backward rules are written with recorded ops and recompute what they need from the input (the
 * keepdim form of the same reduction), never from the op's own output. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/reduce_kernel.h"

/* GCC 12's -O2 does not vectorise loops of unknown trip count (its "very cheap" cost model); the run
 * and column kernels below are written to be vectorised, so ask for the normal cost model. That
 * never reorders floating-point arithmetic (it would take -ffast-math), so results do not depend on
 * whether a loop was vectorised; fp-contract=off also keeps multiply-adds (x * x + s) from being
 * fused where FMA is available (an AVX2+FMA clone, -march=native), so they round the same
 * everywhere. (Clang vectorises at -O2; it ignores these pragmas.) */
#define LS_VECTORIZE_NO_CONTRACT
#include "core/vectorize.h"

/* ---------------------------------------------------------------------------------------------- */
/* dims and plans                                                                                   */
/* ---------------------------------------------------------------------------------------------- */

/* red[d] = whether dim d of x is reduced: the dims in a, or all dims when none are given. */
ls_status red_dims(const char *who, const ls_tensor *x, const ls_attrs *a, bool *red)
{
    memset(red, 0, sizeof(bool) * LS_MAX_DIMS);
    if (a->all_dims || a->ndims == 0) {
        for (int d = 0; d < x->ndim; d++) red[d] = true;
        return LS_OK;
    }
    if (a->ndims < 0 || a->ndims > LS_MAX_DIMS)
        return ls_error_set(LS_ERR_ARG, "%s: %d dims given (at most %d)", who, a->ndims, LS_MAX_DIMS);
    for (int i = 0; i < a->ndims; i++) {
        int d = a->dims[i];
        if (ls_check_dim(who, x->ndim, &d)) return LS_ERR_ARG;
        if (x->ndim == 0) continue;   /* a 0-d tensor accepts dim 0 / -1 and reduces nothing */
        if (red[d])
            return ls_error_set(LS_ERR_ARG, "%s: dimension %d appears more than once", who, d + 1);
        red[d] = true;
    }
    return LS_OK;
}

/* Number of elements reduced per output element. */
int64_t red_count(const ls_tensor *x, const bool *red)
{
    int64_t r = 1;
    for (int d = 0; d < x->ndim; d++)
        if (red[d]) r *= x->shape[d];
    return r;
}

/* A reduction seen as O output elements (the kept dims, row-major) each reducing R elements (the
 * reduced dims, row-major). Both dim lists are coalesced (size-1 dims dropped, neighbours that are
 * contiguous with each other merged), so most plans have one or two dims on each side. No copy of x
 * is made: kernels read it through these strides. */

/* Drop size-1 dims and merge neighbours; an empty list becomes one dim of size 1. */
static int coalesce(int n, int64_t *shape, int64_t *stride)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (shape[i] == 1) continue;
        if (m > 0 && stride[m - 1] == stride[i] * shape[i]) {
            shape[m - 1] *= shape[i];
            stride[m - 1] = stride[i];
            continue;
        }
        shape[m] = shape[i];
        stride[m] = stride[i];
        m++;
    }
    if (m == 0) {
        shape[0] = 1;
        stride[0] = 0;
        m = 1;
    }
    return m;
}

void plan_init(red_plan *p, const ls_tensor *x, const bool *red, bool keepdim)
{
    p->base = ls_tensor_data(x);
    p->dtype = x->dtype;
    p->nk = p->nr = p->ndim = 0;
    p->O = p->R = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (!red[d]) {
            p->kshape[p->nk] = x->shape[d];
            p->kstride[p->nk++] = x->stride[d];
            p->O *= x->shape[d];
            p->shape[p->ndim++] = x->shape[d];
        } else {
            p->rshape[p->nr] = x->shape[d];
            p->rstride[p->nr++] = x->stride[d];
            p->R *= x->shape[d];
            if (keepdim) p->shape[p->ndim++] = 1;
        }
    }
    p->nk = coalesce(p->nk, p->kshape, p->kstride);
    p->nr = coalesce(p->nr, p->rshape, p->rstride);
}

/* ---------------------------------------------------------------------------------------------- */
/* kernels                                                                                          */
/* ---------------------------------------------------------------------------------------------- */

/* The fast kernels are inlined into the task functions and their AVX2 clones (see below). */
#define RED_INLINE static inline __attribute__((always_inline))

static bool red_is_sum(red_kind k) { return k <= RK_EXPSUM; }
static bool red_is_arg(red_kind k) { return k == RK_ARGMAX || k == RK_ARGMIN; }

/* Whether candidate v replaces the current best b: strictly better (so the first of equal values
 * stays), or a NaN replacing a number (NaN wins and the first NaN stays). */
static inline bool red_better(red_kind k, double v, double b)
{
    if (v != v) return b == b;
    if (k == RK_MIN || k == RK_ARGMIN) return v < b;
    return v > b;
}

/* Fold a later partial result (w, iw) of the same output into the earlier one (v, iv): a sum adds,
 * the max-like kinds keep the earlier one unless the later is strictly better (or the first NaN). */
static inline void red_fold(red_kind k, double w, int64_t iw, double *v, int64_t *iv)
{
    if (red_is_sum(k)) {
        *v += w;
    } else if (red_better(k == RK_ABSMAX ? RK_MAX : k, w, *v)) {
        *v = w;
        *iv = iw;
    }
}

#define RED_T_ID(v) (v)
#define RED_T_ABS(v) fabs(v)
#define RED_T_SQ(v) ((v) * (v))
#define RED_T_SQDEV(v) (((v) - c) * ((v) - c))
#define RED_T_EXP(v) exp((v) - c)

/* ---- the generic row path: a gathered segment of doubles ---- */

/* Sum TERM(xj) over x[0..n) with four interleaved accumulators. */
#define RED_SUM4(TERM)                                                                  \
    do {                                                                                \
        for (j = 0; j + 4 <= n; j += 4) {                                               \
            double x0 = x[j], x1 = x[j + 1], x2 = x[j + 2], x3 = x[j + 3];              \
            s0 += TERM(x0);                                                             \
            s1 += TERM(x1);                                                             \
            s2 += TERM(x2);                                                             \
            s3 += TERM(x3);                                                             \
        }                                                                               \
        for (; j < n; j++) {                                                            \
            double x0 = x[j];                                                           \
            s0 += TERM(x0);                                                             \
        }                                                                               \
    } while (0)

/* Reduce one segment x[0..n) (n >= 1) into *v (and *ix, the position of the best element, for the
 * arg kinds). c is the output's centre for RK_SQDEV / RK_EXPSUM. */
static void red_segment(red_kind k, const double *x, int64_t n, double c, double *v, int64_t *ix)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t j;
    switch (k) {
    case RK_SUM: RED_SUM4(RED_T_ID); break;
    case RK_ABSSUM: RED_SUM4(RED_T_ABS); break;
    case RK_SQSUM: RED_SUM4(RED_T_SQ); break;
    case RK_SQDEV: RED_SUM4(RED_T_SQDEV); break;
    case RK_EXPSUM: RED_SUM4(RED_T_EXP); break;
    case RK_ABSMAX: {
        double b = fabs(x[0]);
        for (j = 1; j < n; j++) {
            double a = fabs(x[j]);
            if (red_better(RK_MAX, a, b)) b = a;
        }
        *v = b;
        return;
    }
    default: {   /* max, min, argmax, argmin */
        double b = x[0];
        int64_t bi = 0;
        for (j = 1; j < n; j++)
            if (red_better(k, x[j], b)) {
                b = x[j];
                bi = j;
            }
        *v = b;
        *ix = bi;
        return;
    }
    }
    *v = (s0 + s1) + (s2 + s3);
}

/* Offset of the o-th kept position (row-major over the first nk kept dims). */
static int64_t kept_offset(const red_plan *p, int nk, int64_t o)
{
    int64_t off = 0;
    for (int i = nk - 1; i > 0; i--) {
        off += (o % p->kshape[i]) * p->kstride[i];
        o /= p->kshape[i];
    }
    return nk > 0 ? off + o * p->kstride[0] : off;   /* o < kshape[0]: no division for one dim */
}

/* The reduced position r as an odometer over the reduced dims (idx) and its offset from the output's
 * first element. */
static int64_t red_seek(const red_plan *p, int64_t r, int64_t *idx)
{
    int64_t off = 0;
    for (int i = p->nr - 1; i > 0; i--) {
        idx[i] = r ? r % p->rshape[i] : 0;   /* r < R: no division for the outermost dim or r = 0 */
        r = r ? r / p->rshape[i] : 0;
        off += idx[i] * p->rstride[i];
    }
    idx[0] = r;
    return off + r * p->rstride[0];
}

/* After idx[last] was moved to the end of its dim: carry into the outer reduced dims, moving *off to
 * the start of the next run of the innermost one. */
static inline void red_carry(const red_plan *p, int64_t *idx, int64_t *off)
{
    for (int i = p->nr - 1; i > 0 && idx[i] == p->rshape[i]; i--) {
        *off += p->rstride[i - 1] - p->rshape[i] * p->rstride[i];
        idx[i] = 0;
        idx[i - 1]++;
    }
}

/* Load elements [r0, r0 + n) of the reduction of the element at offset `off` into buf (as double),
 * walking the reduced dims with an odometer, a run of the innermost one at a time. */
static void red_load(const red_plan *p, int64_t off, int64_t r0, int64_t n, double *buf)
{
    int last = p->nr - 1;
    int64_t idx[LS_MAX_DIMS];
    off += red_seek(p, r0, idx);
    int64_t s = p->rstride[last], len = p->rshape[last];
    for (int64_t j = 0; j < n;) {
        int64_t run = len - idx[last] < n - j ? len - idx[last] : n - j;
        if (p->dtype == LS_F32) {
            const float *f = (const float *)p->base + off;
            for (int64_t t = 0; t < run; t++) buf[j + t] = f[t * s];
        } else {
            const double *f = (const double *)p->base + off;
            for (int64_t t = 0; t < run; t++) buf[j + t] = f[t * s];
        }
        j += run;
        off += run * s;
        idx[last] += run;
        red_carry(p, idx, &off);
    }
}

/* ---- the fast row path: contiguous runs reduced in place ----
 *
 * When the innermost reduced dim has stride 1, an output's elements are a sequence of contiguous runs
 * (a whole contiguous tensor is one run; a reduction over the last dim is one run per output; a sum
 * over dims (0, 2, 3) of [N, C, H, W] is, per channel, N runs of H*W). These kernels reduce one run
 * where it lies, in the tensor's own dtype: no staging copy.
 *
 * Sums use sixteen independent double accumulators: lane i takes elements i, i + 16, i + 32, ... of
 * the run (also in the last, partial block of 16), and the lanes are added in a fixed tree. They are
 * written out as sixteen scalars (an accumulator array was kept in memory); this file's
 * tree-vectorize pragma makes GCC at -O2 turn them into eight SSE2 vectors of two doubles (for f32 a
 * cvtps2pd widening two floats, then an addpd), which keeps up with memory. Nothing here lets the
 * compiler reassociate (no -ffast-math), so the result is the one the C code spells out, vectorised
 * or not, on any x86-64. f32 values are widened exactly; the rounding error of a run of n terms grows
 * like n / 16 eps instead of n eps.
 *
 * The max-like kinds are plain loops over the run (no gather; not vectorised: NaN propagation and
 * "the first of equal values" are not what the vector min/max instructions do). */
#define RED_RUN_SUM16(fname, T, TERM)                                                              \
    RED_INLINE double fname(const T *restrict x, int64_t n, double c)                              \
    {                                                                                              \
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;                     \
        double s8 = 0, s9 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0, s14 = 0, s15 = 0;               \
        int64_t j = 0;                                                                             \
        (void)c;                                                                                   \
        for (; j + 16 <= n; j += 16) {                                                             \
            const T *y = x + j;                                                                    \
            s0 += TERM((double)y[0]);                                                              \
            s1 += TERM((double)y[1]);                                                              \
            s2 += TERM((double)y[2]);                                                              \
            s3 += TERM((double)y[3]);                                                              \
            s4 += TERM((double)y[4]);                                                              \
            s5 += TERM((double)y[5]);                                                              \
            s6 += TERM((double)y[6]);                                                              \
            s7 += TERM((double)y[7]);                                                              \
            s8 += TERM((double)y[8]);                                                              \
            s9 += TERM((double)y[9]);                                                              \
            s10 += TERM((double)y[10]);                                                            \
            s11 += TERM((double)y[11]);                                                            \
            s12 += TERM((double)y[12]);                                                            \
            s13 += TERM((double)y[13]);                                                            \
            s14 += TERM((double)y[14]);                                                            \
            s15 += TERM((double)y[15]);                                                            \
        }                                                                                          \
        if (j < n) { /* the last n - j < 16 elements: lane i takes element j + i, as above */      \
            const T *y = x + j;                                                                    \
            int64_t m = n - j;                                                                     \
            if (m > 0) s0 += TERM((double)y[0]);                                                   \
            if (m > 1) s1 += TERM((double)y[1]);                                                   \
            if (m > 2) s2 += TERM((double)y[2]);                                                   \
            if (m > 3) s3 += TERM((double)y[3]);                                                   \
            if (m > 4) s4 += TERM((double)y[4]);                                                   \
            if (m > 5) s5 += TERM((double)y[5]);                                                   \
            if (m > 6) s6 += TERM((double)y[6]);                                                   \
            if (m > 7) s7 += TERM((double)y[7]);                                                   \
            if (m > 8) s8 += TERM((double)y[8]);                                                   \
            if (m > 9) s9 += TERM((double)y[9]);                                                   \
            if (m > 10) s10 += TERM((double)y[10]);                                                \
            if (m > 11) s11 += TERM((double)y[11]);                                                \
            if (m > 12) s12 += TERM((double)y[12]);                                                \
            if (m > 13) s13 += TERM((double)y[13]);                                                \
            if (m > 14) s14 += TERM((double)y[14]);                                                \
        }                                                                                          \
        return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) +                               \
               (((s8 + s9) + (s10 + s11)) + ((s12 + s13) + (s14 + s15)));                          \
    }

RED_RUN_SUM16(red_run_sum_f32, float, RED_T_ID)
RED_RUN_SUM16(red_run_sum_f64, double, RED_T_ID)
RED_RUN_SUM16(red_run_abssum_f32, float, RED_T_ABS)
RED_RUN_SUM16(red_run_abssum_f64, double, RED_T_ABS)
RED_RUN_SUM16(red_run_sqsum_f32, float, RED_T_SQ)
RED_RUN_SUM16(red_run_sqsum_f64, double, RED_T_SQ)
RED_RUN_SUM16(red_run_sqdev_f32, float, RED_T_SQDEV)
RED_RUN_SUM16(red_run_sqdev_f64, double, RED_T_SQDEV)
RED_RUN_SUM16(red_run_expsum_f32, float, RED_T_EXP)
RED_RUN_SUM16(red_run_expsum_f64, double, RED_T_EXP)

/* Max-like kinds over x[0..n) (n >= 1): *v, and *ix the position of the first best element. */
#define RED_RUN_BEST(fname, T)                                                                     \
    RED_INLINE void fname(red_kind k, const T *x, int64_t n, double *v, int64_t *ix)               \
    {                                                                                              \
        double b = k == RK_ABSMAX ? fabs((double)x[0]) : (double)x[0];                             \
        int64_t bi = 0;                                                                            \
        if (k == RK_ABSMAX) {                                                                      \
            for (int64_t j = 1; j < n; j++)                                                        \
                if (red_better(RK_MAX, fabs((double)x[j]), b)) b = fabs((double)x[j]);             \
        } else if (k == RK_MIN || k == RK_ARGMIN) {                                                \
            for (int64_t j = 1; j < n; j++)                                                        \
                if (red_better(RK_MIN, (double)x[j], b)) {                                         \
                    b = (double)x[j];                                                              \
                    bi = j;                                                                        \
                }                                                                                  \
        } else {                                                                                   \
            for (int64_t j = 1; j < n; j++)                                                        \
                if (red_better(RK_MAX, (double)x[j], b)) {                                         \
                    b = (double)x[j];                                                              \
                    bi = j;                                                                        \
                }                                                                                  \
        }                                                                                          \
        *v = b;                                                                                    \
        *ix = bi;                                                                                  \
    }

RED_RUN_BEST(red_run_best_f32, float)
RED_RUN_BEST(red_run_best_f64, double)

/* Reduce the run of n >= 1 contiguous elements at element offset `off` of the plan's data. */
RED_INLINE void red_run(const red_plan *p, red_kind k, int64_t off, int64_t n, double c,
                        double *v, int64_t *ix)
{
    if (p->dtype == LS_F32) {
        const float *x = (const float *)p->base + off;
        switch (k) {
        case RK_SUM: *v = red_run_sum_f32(x, n, c); break;
        case RK_ABSSUM: *v = red_run_abssum_f32(x, n, c); break;
        case RK_SQSUM: *v = red_run_sqsum_f32(x, n, c); break;
        case RK_SQDEV: *v = red_run_sqdev_f32(x, n, c); break;
        case RK_EXPSUM: *v = red_run_expsum_f32(x, n, c); break;
        default: red_run_best_f32(k, x, n, v, ix); break;
        }
    } else {
        const double *x = (const double *)p->base + off;
        switch (k) {
        case RK_SUM: *v = red_run_sum_f64(x, n, c); break;
        case RK_ABSSUM: *v = red_run_abssum_f64(x, n, c); break;
        case RK_SQSUM: *v = red_run_sqsum_f64(x, n, c); break;
        case RK_SQDEV: *v = red_run_sqdev_f64(x, n, c); break;
        case RK_EXPSUM: *v = red_run_expsum_f64(x, n, c); break;
        default: red_run_best_f64(k, x, n, v, ix); break;
        }
    }
}

/* Elements [r0, r0 + n) (n >= 1) of the reduction of the output at offset `off`, whose innermost
 * reduced dim is contiguous: the runs (or pieces of runs) in the range, each reduced by red_run, folded
 * in order. *ix is relative to r0. */
RED_INLINE void red_runs(const red_plan *p, red_kind k, int64_t off, int64_t r0, int64_t n,
                         double c, double *v, int64_t *ix)
{
    int last = p->nr - 1;
    int64_t idx[LS_MAX_DIMS], len = p->rshape[last];
    off += red_seek(p, r0, idx);
    for (int64_t j = 0; j < n;) {
        int64_t run = len - idx[last] < n - j ? len - idx[last] : n - j;
        double w = 0;
        int64_t iw = 0;
        red_run(p, k, off, run, c, &w, &iw);
        if (j == 0) {
            *v = w;
            *ix = iw;
        } else {
            red_fold(k, w, j + iw, v, ix);
        }
        j += run;
        off += run;
        idx[last] += run;
        red_carry(p, idx, &off);
    }
}

typedef struct red_job {
    const red_plan *p;
    red_kind kind;
    bool runs;                /* row path: innermost reduced dim contiguous (red_runs) */
    bool cmajor;              /* row path: tasks numbered chunk-major, t = chunk O + output */
    int64_t nch;              /* row path: chunks per output; column path: row chunks per column */
    int64_t nblk, kin;        /* column path: blocks per outer position, innermost kept size */
    const double *center;
    double *pv;
    int64_t *pi;
} red_job;

/* Tasks t0 .. t0 + g - 1 of the runs path: the same chunk (elements [r0, r0 + n)) of the adjacent
 * outputs o0 .. o0 + g - 1, whose runs lie side by side in memory when the kept dims are inside the
 * reduced ones (channels c .. c + g - 1 of one image). They are walked together, piece by piece
 * across the outputs, so memory is read in order; each task still folds its own pieces in order, so
 * its result is exactly red_runs's. */
#define RED_GROUP 32
RED_INLINE void red_runs_group(const red_job *jb, int64_t t0, int64_t g, int64_t o0, int64_t r0,
                               int64_t n)
{
    const red_plan *p = jb->p;
    int last = p->nr - 1;
    int64_t idx[LS_MAX_DIMS], len = p->rshape[last], koff[RED_GROUP], ix[RED_GROUP];
    int64_t roff = red_seek(p, r0, idx);
    for (int64_t i = 0; i < g; i++) koff[i] = kept_offset(p, p->nk, o0 + i);
    for (int64_t j = 0; j < n;) {
        int64_t run = len - idx[last] < n - j ? len - idx[last] : n - j;
        for (int64_t i = 0; i < g; i++) {
            double w = 0, c = jb->center ? jb->center[o0 + i] : 0.0;
            int64_t iw = 0;
            red_run(p, jb->kind, koff[i] + roff, run, c, &w, &iw);
            if (j == 0) {
                jb->pv[t0 + i] = w;
                ix[i] = iw;
            } else {
                red_fold(jb->kind, w, j + iw, &jb->pv[t0 + i], &ix[i]);
            }
        }
        j += run;
        roff += run;
        idx[last] += run;
        red_carry(p, idx, &roff);
    }
    if (jb->pi)
        for (int64_t i = 0; i < g; i++) jb->pi[t0 + i] = r0 + ix[i];
}

/* Row path: task t = (output o, chunk c) reduces elements [c RED_CHUNK, ...) of o into pv[t];
 * t = o nch + c, or c O + o when cmajor (then adjacent tasks go through red_runs_group). */
RED_INLINE void red_row_body(void *vjob, int64_t begin, int64_t end)
{
    const red_job *jb = vjob;
    const red_plan *p = jb->p;
    double buf[RED_CHUNK];
    if (jb->runs && p->nr == 1 && jb->nch == 1) {   /* each output one whole run: the last dim */
        for (int64_t t = begin; t < end; t++) {
            int64_t ix = 0;
            red_run(p, jb->kind, kept_offset(p, p->nk, t), p->R, jb->center ? jb->center[t] : 0.0,
                    &jb->pv[t], &ix);
            if (jb->pi) jb->pi[t] = ix;
        }
        return;
    }
    for (int64_t t = begin; t < end; t++) {
        int64_t o = t, r0 = 0;
        if (jb->nch > 1) {
            o = jb->cmajor ? t % p->O : t / jb->nch;
            r0 = (jb->cmajor ? t / p->O : t % jb->nch) * RED_CHUNK;
        }
        int64_t n = p->R - r0 < RED_CHUNK ? p->R - r0 : RED_CHUNK;
        if (jb->runs && jb->cmajor) {   /* tasks t.. of the same chunk: outputs o.. */
            int64_t g = end - t < RED_GROUP ? end - t : RED_GROUP;
            if (g > p->O - o) g = p->O - o;
            red_runs_group(jb, t, g, o, r0, n);
            t += g - 1;
            continue;
        }
        int64_t off = kept_offset(p, p->nk, o);
        double c = jb->center ? jb->center[o] : 0.0;
        int64_t ix = 0;
        if (jb->runs) {
            red_runs(p, jb->kind, off, r0, n, c, &jb->pv[t], &ix);
        } else {
            red_load(p, off, r0, n, buf);
            red_segment(jb->kind, buf, n, c, &jb->pv[t], &ix);
        }
        if (jb->pi) jb->pi[t] = r0 + ix;
    }
}

/* ---- the column path ---- */

/* One reduced position r of a column block: fold row[0..cnt) into the accumulators; `first` starts
 * them (the identity for sums, the row itself for the others). */
static void col_update(red_kind k, bool first, int64_t r, const double *row, int64_t cnt,
                       const double *c, double *acc, int64_t *ai)
{
    if (first) {
        for (int64_t j = 0; j < cnt; j++) {
            acc[j] = red_is_sum(k) ? 0.0 : k == RK_ABSMAX ? fabs(row[j]) : row[j];
            ai[j] = r;
        }
        if (!red_is_sum(k)) return;
    }
    switch (k) {
    case RK_SUM: for (int64_t j = 0; j < cnt; j++) acc[j] += row[j]; break;
    case RK_ABSSUM: for (int64_t j = 0; j < cnt; j++) acc[j] += fabs(row[j]); break;
    case RK_SQSUM: for (int64_t j = 0; j < cnt; j++) acc[j] += row[j] * row[j]; break;
    case RK_SQDEV: for (int64_t j = 0; j < cnt; j++) acc[j] += (row[j] - c[j]) * (row[j] - c[j]); break;
    case RK_EXPSUM: for (int64_t j = 0; j < cnt; j++) acc[j] += exp(row[j] - c[j]); break;
    case RK_ABSMAX:
        for (int64_t j = 0; j < cnt; j++)
            if (red_better(RK_MAX, fabs(row[j]), acc[j])) acc[j] = fabs(row[j]);
        break;
    default:
        for (int64_t j = 0; j < cnt; j++)
            if (red_better(k, row[j], acc[j])) {
                acc[j] = row[j];
                ai[j] = r;
            }
        break;
    }
}

/* acc[j] += rows[0][j] + ... + rows[m-1][j] (1 <= m <= 4), added one row after the other: the same
 * sums in the same order as m separate passes, with one load and store of acc per m rows. */
RED_INLINE void col_add_rows(ls_dtype dt, double *restrict acc, const char *const *rows, int m,
                             int64_t cnt)
{
    if (dt == LS_F32) {
        const float *restrict a = (const float *)rows[0], *restrict b = (const float *)rows[1];
        const float *restrict c = (const float *)rows[2], *restrict d = (const float *)rows[3];
        if (m == 4)
            for (int64_t j = 0; j < cnt; j++) acc[j] = (((acc[j] + a[j]) + b[j]) + c[j]) + d[j];
        else
            for (int i = 0; i < m; i++) {
                const float *restrict f = (const float *)rows[i];
                for (int64_t j = 0; j < cnt; j++) acc[j] += f[j];
            }
    } else {
        const double *restrict a = (const double *)rows[0], *restrict b = (const double *)rows[1];
        const double *restrict c = (const double *)rows[2], *restrict d = (const double *)rows[3];
        if (m == 4)
            for (int64_t j = 0; j < cnt; j++) acc[j] = (((acc[j] + a[j]) + b[j]) + c[j]) + d[j];
        else
            for (int i = 0; i < m; i++) {
                const double *restrict f = (const double *)rows[i];
                for (int64_t j = 0; j < cnt; j++) acc[j] += f[j];
            }
    }
}

/* Column path: task t = (outer kept position ob, block of up to RED_COLS innermost kept positions,
 * which are adjacent in memory, chunk of up to RED_COL_ROWS reduced positions); walks the chunk's
 * reduced positions in order, updating one accumulator per column, so every access is a contiguous
 * run (for sums, vectorised along the columns, four rows per pass). The chunk's partial results go to
 * pv[(ob nch + chunk) kin + column]. */
#define RED_COLS 2048
#define RED_COL_ROWS 256
RED_INLINE void red_col_body(void *vjob, int64_t begin, int64_t end)
{
    const red_job *jb = vjob;
    const red_plan *p = jb->p;
    red_kind k = jb->kind;
    size_t es = ls_dtype_size(p->dtype);
    double acc[RED_COLS], row[RED_COLS];
    int64_t ai[RED_COLS];
    int last = p->nr - 1;
    for (int64_t t = begin; t < end; t++) {
        int64_t ch = t % jb->nch, blk = t / jb->nch % jb->nblk, ob = t / jb->nch / jb->nblk;
        int64_t j0 = blk * RED_COLS, cnt = jb->kin - j0 < RED_COLS ? jb->kin - j0 : RED_COLS;
        int64_t r0 = ch * RED_COL_ROWS, r1 = p->R - r0 < RED_COL_ROWS ? p->R : r0 + RED_COL_ROWS;
        const double *c = jb->center ? jb->center + ob * jb->kin + j0 : NULL;
        int64_t idx[LS_MAX_DIMS];
        int64_t off = kept_offset(p, p->nk - 1, ob) + j0 + red_seek(p, r0, idx);
        for (int64_t r = r0; r < r1;) {
            if (k == RK_SUM && r > r0) {   /* the common case: no staging, four rows a pass */
                const char *rows[4] = {0};
                int m = 0;
                for (; m < 4 && r < r1; m++, r++) {
                    rows[m] = p->base + off * (int64_t)es;
                    idx[last]++;
                    off += p->rstride[last];
                    red_carry(p, idx, &off);
                }
                col_add_rows(p->dtype, acc, rows, m, cnt);
                continue;
            }
            if (p->dtype == LS_F32) {
                const float *f = (const float *)p->base + off;
                for (int64_t j = 0; j < cnt; j++) row[j] = f[j];
            } else {
                const double *f = (const double *)p->base + off;
                for (int64_t j = 0; j < cnt; j++) row[j] = f[j];
            }
            col_update(k, r == r0, r, row, cnt, c, acc, ai);
            r++;
            idx[last]++;
            off += p->rstride[last];
            red_carry(p, idx, &off);
        }
        int64_t o0 = (ob * jb->nch + ch) * jb->kin + j0;
        for (int64_t j = 0; j < cnt; j++) {
            jb->pv[o0 + j] = acc[j];
            if (jb->pi) jb->pi[o0 + j] = ai[j];
        }
    }
}

/* ---- the task functions, for the x86-64 baseline and for AVX2 ----
 *
 * The bodies above are inlined into a baseline function and, on x86-64, into a clone compiled for
 * AVX2 (the f32 widening and the double adds four lanes at a time instead of two: 1.6x faster on
 * cache-resident data here), chosen at run time when the CPU has AVX2. Only "avx2" is enabled, not
 * FMA (and contraction is off in this file), and nothing is reassociated: both clones do the same
 * operations in the same order and give bit-identical results (tested). LANDSCAPE_SIMD=baseline in
 * the environment forces the baseline clones, as for the elementwise ops. */
static void red_row_tasks(void *vjob, int64_t begin, int64_t end) { red_row_body(vjob, begin, end); }
static void red_col_tasks(void *vjob, int64_t begin, int64_t end) { red_col_body(vjob, begin, end); }

static atomic_int red_simd = -1;   /* -1: not decided yet; 0 baseline; 1 AVX2 */

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static void red_row_tasks_avx2(void *vjob, int64_t begin,
                                                               int64_t end)
{
    red_row_body(vjob, begin, end);
}
__attribute__((target("avx2"))) static void red_col_tasks_avx2(void *vjob, int64_t begin,
                                                               int64_t end)
{
    red_col_body(vjob, begin, end);
}
static bool red_cpu_avx2(void)
{
    const char *env = getenv("LANDSCAPE_SIMD");
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && !(env && strcmp(env, "baseline") == 0);
}
#else
#define red_row_tasks_avx2 red_row_tasks
#define red_col_tasks_avx2 red_col_tasks
static bool red_cpu_avx2(void) { return false; }
#endif

int red_simd_select(int mode)
{
    int old = atomic_load_explicit(&red_simd, memory_order_relaxed);
    if (old < 0) old = red_cpu_avx2();
    atomic_store_explicit(&red_simd, mode < 0 ? -1 : mode > 0 ? red_cpu_avx2() : 0,
                          memory_order_relaxed);
    return old;
}

/* Whether to run the AVX2 clones (decided on first use; threads racing here agree). */
static bool red_use_avx2(void)
{
    int v = atomic_load_explicit(&red_simd, memory_order_relaxed);
    if (v < 0) {
        v = red_cpu_avx2();
        atomic_store_explicit(&red_simd, v, memory_order_relaxed);
    }
    return v;
}

/* The kernel for a plan: see the top of this file. */
red_path plan_path(const red_plan *p)
{
    int64_t kin = p->kshape[p->nk - 1];
    if (p->R > 1 && kin >= 8 && p->kstride[p->nk - 1] == 1 && p->rstride[p->nr - 1] != 1)
        return RED_PATH_COLS;
    return p->rstride[p->nr - 1] == 1 ? RED_PATH_RUNS : RED_PATH_GATHER;
}

/* Reduce every output of the plan: rowv[o] (and rowi[o] for the arg kinds). R must be >= 1 for the
 * max-like kinds; for sums an empty reduction gives 0.
 *
 * The kernel is plan_path's (see the top of this file). Row paths (runs, gather): outputs are
 * independent, each cut into chunks of RED_CHUNK reduced elements at fixed positions, a chunk
 * reduced run by run in place (red_runs) or gathered into doubles first (red_load). Column path:
 * blocks of adjacent outputs reduced together row by row, so memory is read in runs instead of one
 * element per cache line, the rows cut into chunks of RED_COL_ROWS. Either way the chunk partials of
 * an output are folded in chunk order afterwards, and the split depends only on the shapes, never on
 * the thread count. */
ls_status plan_run(const red_plan *p, red_kind kind, const double *center, double *rowv,
                   int64_t *rowi)
{
    int64_t O = p->O, R = p->R;
    if (O == 0) return LS_OK;
    if (R == 0) {
        for (int64_t o = 0; o < O; o++) rowv[o] = 0.0;
        return LS_OK;
    }
    red_path path = plan_path(p);
    bool arg = red_is_arg(kind), col = path == RED_PATH_COLS;
    int64_t kin = p->kshape[p->nk - 1], nch, per;
    if (col) {
        nch = (R + RED_COL_ROWS - 1) / RED_COL_ROWS;
        per = (R < RED_COL_ROWS ? R : RED_COL_ROWS) * (kin < RED_COLS ? kin : RED_COLS);
    } else {
        nch = (R + RED_CHUNK - 1) / RED_CHUNK;
        per = R < RED_CHUNK ? R : RED_CHUNK;
    }
    double *pv = rowv;
    int64_t *pi = rowi;
    if (nch > 1) {
        pv = ls_malloc(sizeof(double) * (size_t)(O * nch), "reduce");
        pi = arg ? ls_malloc(sizeof(int64_t) * (size_t)(O * nch), "reduce") : NULL;
        if (!pv || (arg && !pi)) {
            ls_free(pv);
            ls_free(pi);
            return LS_ERR_MEM;
        }
    }
    /* Row-path tasks are numbered chunk-major when the kept dims lie inside the reduced ones in
     * memory (sum over dims (0, 2, 3) of [N, C, H, W]): consecutive tasks then read neighbouring
     * channels of the same images instead of one channel's runs scattered over all images, and on
     * the runs path up to RED_GROUP of them are walked together (red_runs_group), so a
     * parallel_for chunk holds at least that many. Only the order in which the tasks run changes,
     * not what they compute. */
    bool cmajor = !col && p->rstride[0] > p->kstride[p->nk - 1];
    red_job jb = {p, kind, path == RED_PATH_RUNS, cmajor, nch, 0, kin, center, pv, arg ? pi : NULL};
    int64_t grain = RED_GRAIN / per > 0 ? RED_GRAIN / per : 1;
    int64_t group = O < RED_GROUP ? O : RED_GROUP;
    if (jb.runs && cmajor && grain < group) grain = group;
    if (col) {
        jb.nblk = (kin + RED_COLS - 1) / RED_COLS;
        ls_parallel_for(O / kin * jb.nblk * nch, grain,
                        red_use_avx2() ? red_col_tasks_avx2 : red_col_tasks, &jb);
    } else {
        ls_parallel_for(O * nch, grain, red_use_avx2() ? red_row_tasks_avx2 : red_row_tasks, &jb);
    }
    if (nch == 1) return LS_OK;
    /* fold the chunk partials of each output in chunk order: output o's partial of chunk ch is at
     * q + ch step */
    int64_t step = col ? kin : cmajor ? O : 1;
    for (int64_t o = 0; o < O; o++) {
        int64_t q = col ? o / kin * nch * kin + o % kin : cmajor ? o : o * nch;
        double v = pv[q];
        int64_t i = arg ? pi[q] : 0;
        for (int64_t ch = 1; ch < nch; ch++)
            red_fold(kind, pv[q + ch * step], arg ? pi[q + ch * step] : 0, &v, &i);
        rowv[o] = v;
        if (arg) rowi[o] = i;
    }
    ls_free(pv);
    ls_free(pi);
    return LS_OK;
}

/* A new tensor of the plan's result shape holding rowv (converted to dtype) or rowi (i64). */
ls_tensor *plan_output(const red_plan *p, ls_dtype dtype, const double *rowv, const int64_t *rowi)
{
    ls_tensor *out = ls_tensor_new(dtype, p->ndim, p->shape);
    if (!out) return NULL;
    void *d = ls_tensor_data(out);
    for (int64_t o = 0; o < p->O; o++) {
        if (dtype == LS_F32) ((float *)d)[o] = (float)rowv[o];
        else if (dtype == LS_F64) ((double *)d)[o] = rowv[o];
        else ((int64_t *)d)[o] = rowi[o];
    }
    return out;
}
