/* Internal to the reduction ops (reduce.c): the reduction plan and its kernels (reduce_kernel.c). */
#ifndef LS_REDUCE_KERNEL_H
#define LS_REDUCE_KERNEL_H

#include "ops/ops.h"

#define RED_CHUNK 4096
#define RED_GRAIN 32768   /* elements per ls_parallel_for chunk */

/* A reduction seen as O output elements (the kept dims, row-major) each reducing R elements (the
 * reduced dims, row-major). Both dim lists are coalesced (size-1 dims dropped, neighbours that are
 * contiguous with each other merged), so most plans have one or two dims on each side. No copy of x
 * is made: kernels read it through these strides. */
typedef struct red_plan {
    const char *base;
    ls_dtype dtype;
    int nk, nr;
    int64_t kshape[LS_MAX_DIMS], kstride[LS_MAX_DIMS];
    int64_t rshape[LS_MAX_DIMS], rstride[LS_MAX_DIMS];
    int64_t O, R;
    int ndim;                        /* result shape (keepdim or not) */
    int64_t shape[LS_MAX_DIMS];
} red_plan;

typedef enum {
    RK_SUM,      /* sum x */
    RK_ABSSUM,   /* sum |x| */
    RK_SQSUM,    /* sum x^2 */
    RK_SQDEV,    /* sum (x - c)^2, c per output */
    RK_EXPSUM,   /* sum exp(x - c), c per output */
    RK_MAX,
    RK_MIN,
    RK_ABSMAX,   /* max |x| */
    RK_ARGMAX,
    RK_ARGMIN
} red_kind;

typedef enum { RF_SUM, RF_MEAN, RF_VAR, RF_STD, RF_MAX, RF_MIN, RF_NORM1, RF_NORM2, RF_NORMINF,
               RF_LSE } red_fn;

ls_status red_dims(const char *who, const ls_tensor *x, const ls_attrs *a, bool *red);
int64_t red_count(const ls_tensor *x, const bool *red);
void plan_init(red_plan *p, const ls_tensor *x, const bool *red, bool keepdim);
ls_status plan_run(const red_plan *p, red_kind kind, const double *center, double *rowv,
                          int64_t *rowi);
ls_tensor *plan_output(const red_plan *p, ls_dtype dtype, const double *rowv,
                              const int64_t *rowi);
ls_tensor *reduce_values(const char *who, ls_tensor *x, const bool *red, bool keepdim,
                                red_fn fn, double corr);

#endif
