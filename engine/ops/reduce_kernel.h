/* Internal to the reduction ops (reduce.c): the reduction plan and its kernels (reduce_kernel.c).
 * The tests include it to check which kernel a layout takes. */
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

ls_status red_dims(const char *who, const ls_tensor *x, const ls_attrs *a, bool *red);
int64_t red_count(const ls_tensor *x, const bool *red);
void plan_init(red_plan *p, const ls_tensor *x, const bool *red, bool keepdim);
/* The kernel plan_run uses (see there): the row path reading contiguous runs in place (innermost
 * reduced dim contiguous), the row path gathering elements, or the column path (innermost kept dim
 * contiguous and at least 8 long, innermost reduced dim not). */
typedef enum { RED_PATH_RUNS, RED_PATH_GATHER, RED_PATH_COLS } red_path;
red_path plan_path(const red_plan *p);
ls_status plan_run(const red_plan *p, red_kind kind, const double *center, double *rowv,
                   int64_t *rowi);
ls_tensor *plan_output(const red_plan *p, ls_dtype dtype, const double *rowv, const int64_t *rowi);
/* Which kernels plan_run uses: mode 0 the x86-64 baseline ones, 1 the AVX2 clones when the CPU has
 * AVX2 (and LANDSCAPE_SIMD is not "baseline"), -1 decide that again on next use (the default).
 * Returns the previous choice (0 or 1). For tests: both give bit-identical results. */
int red_simd_select(int mode);

#endif
