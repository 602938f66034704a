/* The reduction engine behind engine/ops/reduce.c: plans and kernels.
 *
 * Dims: an op reduces over the dims in attrs (0-based, negative counts from the end, each at most once)
 * or over all dims when none are given. keepdim keeps reduced dims as size 1.
 *
 * Layout. Every reduction goes through one plan: O output elements (the kept dims) each reducing R
 * elements (the reduced dims), both sides coalesced, read through x's strides with no copy (so
 * transposed, narrowed and expanded inputs cost nothing extra). See plan_run for the two kernels: the
 * row path (reduced elements gathered chunk by chunk) and the column path (adjacent outputs reduced
 * together when the kept dims are the contiguous ones, e.g. sum over the rows of a matrix).
 *
 * Work split and determinism. On the row path each output's reduction is cut into chunks of
 * RED_CHUNK elements at fixed positions; a task is one (output, chunk) pair and writes one partial
 * result, and the partials of an output are combined serially, in chunk order. On the column path a
 * task owns a block of outputs and loops over their R elements in order. Tasks run in parallel
 * (ls_parallel_for), and how they are cut depends only on the shapes, so results are bit-for-bit
 * the same for any thread count.
 *
 * Accuracy. Values are accumulated in double for both dtypes (f32 inputs are widened as they are
 * read). On the row path there are four interleaved accumulators inside a chunk and chunks are added
 * in order, so the rounding error of a sum of N terms grows like (RED_CHUNK / 4 + N / RED_CHUNK) eps
 * rather than N eps; the column path adds in order (N eps, which for f32 data is still far below
 * the f32 rounding of the result).
 *
 * NaN: max/min/argmax/argmin and norm-inf propagate NaN (argmax/argmin return the first NaN), as
 * torch does. Empty reductions: sum and the 1-/2-norms give 0, mean/var/std NaN, logsumexp -inf;
 * max, min, argmax, argmin and the inf-norm are errors naming the op and the shape.
 *
 * Backward rules are written with recorded ops and recompute what they need from the input (the
 * keepdim form of the same reduction), never from the op's own output. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/reduce_kernel.h"

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
#define RED_T_ID(v) (v)
#define RED_T_ABS(v) fabs(v)
#define RED_T_SQ(v) ((v) * (v))
#define RED_T_SQDEV(v) (((v) - c) * ((v) - c))
#define RED_T_EXP(v) exp((v) - c)

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
    for (int i = nk - 1; i >= 0; i--) {
        off += (o % p->kshape[i]) * p->kstride[i];
        o /= p->kshape[i];
    }
    return off;
}

/* Load elements [r0, r0 + n) of the reduction of the element at offset `off` into buf (as double),
 * walking the reduced dims with an odometer, a run of the innermost one at a time. */
static void red_load(const red_plan *p, int64_t off, int64_t r0, int64_t n, double *buf)
{
    int last = p->nr - 1;
    int64_t idx[LS_MAX_DIMS], rem = r0;
    for (int i = last; i >= 0; i--) {
        idx[i] = rem % p->rshape[i];
        rem /= p->rshape[i];
        off += idx[i] * p->rstride[i];
    }
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
        for (int i = last; i > 0 && idx[i] == p->rshape[i]; i--) {
            off += p->rstride[i - 1] - p->rshape[i] * p->rstride[i];
            idx[i] = 0;
            idx[i - 1]++;
        }
    }
}

typedef struct red_job {
    const red_plan *p;
    red_kind kind;
    int64_t nch;              /* row path: chunks per output */
    int64_t nblk, kin;        /* column path: blocks per outer position, innermost kept size */
    const double *center;
    double *pv;
    int64_t *pi;
} red_job;

/* Row path: task t = (output o, chunk c) reduces elements [c RED_CHUNK, ...) of o into pv[t]. */
static void red_row_tasks(void *vjob, int64_t begin, int64_t end)
{
    const red_job *jb = vjob;
    const red_plan *p = jb->p;
    double buf[RED_CHUNK];
    for (int64_t t = begin; t < end; t++) {
        int64_t o = t / jb->nch, r0 = (t % jb->nch) * RED_CHUNK;
        int64_t n = p->R - r0 < RED_CHUNK ? p->R - r0 : RED_CHUNK;
        int64_t off = kept_offset(p, p->nk, o);
        const double *x = buf;
        if (p->dtype == LS_F64 && p->nr == 1 && p->rstride[0] == 1)
            x = (const double *)p->base + off + r0;   /* already a contiguous run of doubles */
        else
            red_load(p, off, r0, n, buf);
        int64_t ix = 0;
        red_segment(jb->kind, x, n, jb->center ? jb->center[o] : 0.0, &jb->pv[t], &ix);
        if (jb->pi) jb->pi[t] = r0 + ix;
    }
}

/* One reduced position r of a column block: fold row[0..cnt) into the accumulators. */
static void col_update(red_kind k, int64_t r, const double *row, int64_t cnt, const double *c,
                       double *acc, int64_t *ai)
{
    if (r == 0) {   /* first row: the identity for sums, the row itself for the others */
        for (int64_t j = 0; j < cnt; j++) {
            acc[j] = red_is_sum(k) ? 0.0 : k == RK_ABSMAX ? fabs(row[j]) : row[j];
            ai[j] = 0;
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

/* Column path: task t = (outer kept position, block of RED_COLS innermost kept positions, which are
 * adjacent in memory); walks all R reduced positions in order, updating one accumulator per column,
 * so every access is a short contiguous run. */
#define RED_COLS 2048
static void red_col_tasks(void *vjob, int64_t begin, int64_t end)
{
    const red_job *jb = vjob;
    const red_plan *p = jb->p;
    red_kind k = jb->kind;
    double acc[RED_COLS], row[RED_COLS];
    int64_t ai[RED_COLS];
    int last = p->nr - 1;
    for (int64_t t = begin; t < end; t++) {
        int64_t ob = t / jb->nblk, j0 = (t % jb->nblk) * RED_COLS;
        int64_t cnt = jb->kin - j0 < RED_COLS ? jb->kin - j0 : RED_COLS;
        int64_t o0 = ob * jb->kin + j0;   /* flat output index of column 0 */
        const double *c = jb->center ? jb->center + o0 : NULL;
        int64_t idx[LS_MAX_DIMS] = {0}, off = kept_offset(p, p->nk - 1, ob) + j0;
        for (int64_t r = 0; r < p->R; r++) {
            if (k == RK_SUM && r > 0 && p->dtype == LS_F32) {   /* the common case, no staging */
                const float *f = (const float *)p->base + off;
                for (int64_t j = 0; j < cnt; j++) acc[j] += f[j];
            } else if (k == RK_SUM && r > 0) {
                const double *f = (const double *)p->base + off;
                for (int64_t j = 0; j < cnt; j++) acc[j] += f[j];
            } else {
                if (p->dtype == LS_F32) {
                    const float *f = (const float *)p->base + off;
                    for (int64_t j = 0; j < cnt; j++) row[j] = f[j];
                } else {
                    const double *f = (const double *)p->base + off;
                    for (int64_t j = 0; j < cnt; j++) row[j] = f[j];
                }
                col_update(k, r, row, cnt, c, acc, ai);
            }
            /* next reduced position */
            idx[last]++;
            off += p->rstride[last];
            for (int i = last; i > 0 && idx[i] == p->rshape[i]; i--) {
                off += p->rstride[i - 1] - p->rshape[i] * p->rstride[i];
                idx[i] = 0;
                idx[i - 1]++;
            }
        }
        for (int64_t j = 0; j < cnt; j++) {
            jb->pv[o0 + j] = acc[j];
            if (jb->pi) jb->pi[o0 + j] = ai[j];
        }
    }
}

/* Reduce every output of the plan: rowv[o] (and rowi[o] for the arg kinds). R must be >= 1 for the
 * max-like kinds; for sums an empty reduction gives 0.
 *
 * Two paths. Row path (the default): outputs are independent, each split into chunks of RED_CHUNK
 * reduced elements at fixed positions whose partials are combined in order afterwards. Column path:
 * when the innermost kept dim is contiguous in memory and the innermost reduced dim is not (a sum over
 * the rows of a matrix, say), blocks of adjacent outputs are reduced together, row by row, so memory
 * is read in runs instead of one element per cache line; each output is then a plain in-order loop
 * over its R elements. Either way the split depends only on the shapes, never on the thread count. */
ls_status plan_run(const red_plan *p, red_kind kind, const double *center, double *rowv,
                          int64_t *rowi)
{
    int64_t O = p->O, R = p->R;
    if (O == 0) return LS_OK;
    if (R == 0) {
        for (int64_t o = 0; o < O; o++) rowv[o] = 0.0;
        return LS_OK;
    }
    bool arg = red_is_arg(kind);
    int64_t kin = p->kshape[p->nk - 1];
    if (R > 1 && kin >= 8 && p->kstride[p->nk - 1] == 1 && p->rstride[p->nr - 1] != 1) {
        red_job jb = {p, kind, 0, (kin + RED_COLS - 1) / RED_COLS, kin, center, rowv,
                      arg ? rowi : NULL};
        int64_t work = R * (kin < RED_COLS ? kin : RED_COLS);
        int64_t grain = RED_GRAIN / work > 0 ? RED_GRAIN / work : 1;
        ls_parallel_for(O / kin * jb.nblk, grain, red_col_tasks, &jb);
        return LS_OK;
    }
    int64_t nch = (R + RED_CHUNK - 1) / RED_CHUNK;
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
    red_job jb = {p, kind, nch, 0, 0, center, pv, arg ? pi : NULL};
    int64_t per = R < RED_CHUNK ? R : RED_CHUNK;
    int64_t grain = RED_GRAIN / per > 0 ? RED_GRAIN / per : 1;
    ls_parallel_for(O * nch, grain, red_row_tasks, &jb);
    if (nch > 1) {
        for (int64_t o = 0; o < O; o++) {
            double v = pv[o * nch];
            int64_t i = arg ? pi[o * nch] : 0;
            for (int64_t c = 1; c < nch; c++) {
                double w = pv[o * nch + c];
                if (red_is_sum(kind)) {
                    v += w;
                } else if (red_better(kind == RK_ABSMAX ? RK_MAX : kind, w, v)) {
                    v = w;
                    if (arg) i = pi[o * nch + c];
                }
            }
            rowv[o] = v;
            if (arg) rowi[o] = i;
        }
        ls_free(pv);
        ls_free(pi);
    }
    return LS_OK;
}

/* A new tensor of the plan's result shape holding rowv (converted to dtype) or rowi (i64). */
ls_tensor *plan_output(const red_plan *p, ls_dtype dtype, const double *rowv,
                              const int64_t *rowi)
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

/* ---------------------------------------------------------------------------------------------- */
/* forward kernels                                                                                  */
/* ---------------------------------------------------------------------------------------------- */


/* The whole forward of a value reduction over `red`. corr: var/std correction. */
ls_tensor *reduce_values(const char *who, ls_tensor *x, const bool *red, bool keepdim,
                                red_fn fn, double corr)
{
    if (ls_check_float_same(who, 1, &x)) return NULL;
    red_plan p;
    plan_init(&p, x, red, keepdim);
    if (p.R == 0 && (fn == RF_MAX || fn == RF_MIN || fn == RF_NORMINF)) {
        ls_error_set(LS_ERR_ARG, "%s: cannot reduce over an empty dimension of tensor %s "
                     "(the result has no identity)", who, ls_tensor_shape_str(x));
        return NULL;
    }
    double *rowv = ls_malloc(sizeof(double) * (size_t)(p.O ? 2 * p.O : 1), "reduce");
    if (!rowv) {
        return NULL;
    }
    double *aux = rowv + p.O;   /* per-row centre for the two-pass kinds */
    double R = (double)p.R;
    ls_status rc = LS_OK;
    switch (fn) {
    case RF_SUM: rc = plan_run(&p, RK_SUM, NULL, rowv, NULL); break;
    case RF_MEAN:
        rc = plan_run(&p, RK_SUM, NULL, rowv, NULL);
        for (int64_t o = 0; o < p.O; o++) rowv[o] /= R;   /* 0/0 = NaN for an empty row */
        break;
    case RF_VAR:
    case RF_STD: {
        /* two passes: the mean, then the sum of squared deviations from it */
        rc = plan_run(&p, RK_SUM, NULL, aux, NULL);
        for (int64_t o = 0; o < p.O; o++) aux[o] /= R;
        if (!rc) rc = plan_run(&p, RK_SQDEV, aux, rowv, NULL);
        double dof = R - corr > 0 ? R - corr : 0.0;
        for (int64_t o = 0; o < p.O; o++) {
            rowv[o] = p.R ? rowv[o] / dof : NAN;
            if (fn == RF_STD) rowv[o] = sqrt(rowv[o]);
        }
        break;
    }
    case RF_MAX: rc = plan_run(&p, RK_MAX, NULL, rowv, NULL); break;
    case RF_MIN: rc = plan_run(&p, RK_MIN, NULL, rowv, NULL); break;
    case RF_NORM1: rc = plan_run(&p, RK_ABSSUM, NULL, rowv, NULL); break;
    case RF_NORM2:
        rc = plan_run(&p, RK_SQSUM, NULL, rowv, NULL);
        for (int64_t o = 0; o < p.O; o++) rowv[o] = sqrt(rowv[o]);
        break;
    case RF_NORMINF: rc = plan_run(&p, RK_ABSMAX, NULL, rowv, NULL); break;
    case RF_LSE: {
        /* max m, then m + log(sum exp(x - m)); a non-finite m (all -inf, any +inf, NaN) is the
         * answer itself */
        if (p.R == 0) {
            for (int64_t o = 0; o < p.O; o++) rowv[o] = -INFINITY;
            break;
        }
        rc = plan_run(&p, RK_MAX, NULL, aux, NULL);
        double *m = aux;
        if (!rc) {
            /* reuse rowv for the centres so aux keeps the maxima */
            for (int64_t o = 0; o < p.O; o++) rowv[o] = isfinite(m[o]) ? m[o] : 0.0;
            double *sums = ls_malloc(sizeof(double) * (size_t)p.O, "reduce");
            if (!sums) {
                rc = LS_ERR_MEM;
                break;
            }
            rc = plan_run(&p, RK_EXPSUM, rowv, sums, NULL);
            for (int64_t o = 0; o < p.O; o++) rowv[o] = isfinite(m[o]) ? m[o] + log(sums[o]) : m[o];
            ls_free(sums);
        }
        break;
    }
    }
    ls_tensor *out = rc ? NULL : plan_output(&p, x->dtype, rowv, NULL);
    ls_free(rowv);
    return out;
}
