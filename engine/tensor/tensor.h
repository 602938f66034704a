/* Tensors: a view (shape, strides, offset) onto a refcounted storage.
 *
 * Ownership: functions named *_new / *_copy and every function returning `ls_tensor *` return a NEW
 * reference (or NULL with ls_error_set called); arguments are borrowed. ls_tensor_retain/release
 * adjust the count; release(NULL) is a no-op. Strides and offsets are in elements, not bytes.
 * All dims and indices here are 0-based; the Lua binding converts. */
#ifndef LS_TENSOR_H
#define LS_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define LS_MAX_DIMS 8
/* The most elements a shape may describe, counting each size-0 dim as 1 (see ls_shape_check). */
#define LS_MAX_NUMEL (INT64_C(1) << 40)

typedef struct ls_storage {
    long refcount;
    ls_dtype dtype;
    size_t nbytes;
    void *data;          /* 64-byte aligned, owned */
} ls_storage;

struct ls_node;          /* autograd graph node (engine/autograd) */

typedef struct ls_tensor {
    long refcount;
    ls_storage *storage;
    ls_dtype dtype;
    int ndim;
    int64_t shape[LS_MAX_DIMS];
    int64_t stride[LS_MAX_DIMS];
    int64_t offset;
    /* autograd (engine/autograd owns the meaning of these) */
    bool requires_grad;
    struct ls_tensor *grad;      /* accumulated gradient of a leaf */
    struct ls_node *grad_fn;     /* node that produced this tensor, NULL for leaves */
} ls_tensor;

/* ---- lifetime ---- */
/* The one validation of a shape, used by every constructor, view and file reader: 0..LS_MAX_DIMS
 * dims, every size >= 0, and the product of the sizes with each 0 counted as 1 at most LS_MAX_NUMEL.
 * Counting zeros as 1 keeps the other dims bounded even when the tensor is empty, so that every
 * contiguous stride, element count and byte count computed from a valid shape fits in int64 with
 * room to spare. Sets *numel (may be NULL). Errors (LS_ERR_ARG) name `who` and the shape:
 *   "zeros: shape [0x4611686018427387904x4] is too large (2^40 elements at most, counting 0 as 1)" */
ls_status ls_shape_check(const char *who, int ndim, const int64_t *shape, int64_t *numel);
ls_tensor *ls_tensor_new(ls_dtype dtype, int ndim, const int64_t *shape);   /* uninitialised, contiguous */
/* Uninitialised, ref's shape, in ref's memory order when ref is dense (its strides a permutation of
 * a contiguous layout: a transposed matrix, a permuted batch), else contiguous; torch's empty_like.
 * An elementwise result then runs and is stored in one flat pass like its inputs. */
ls_tensor *ls_tensor_new_like(ls_dtype dtype, const ls_tensor *ref);
ls_tensor *ls_tensor_retain(ls_tensor *t);   /* returns t */
void ls_tensor_release(ls_tensor *t);
/* The hook through which ls_tensor_release frees the autograd node a tensor owns (t->grad_fn).
 * engine/tensor sits below engine/autograd and never calls into it; autograd registers its node
 * destructor here before it attaches the first node to a tensor. */
typedef void (*ls_node_release_fn)(struct ls_node *node);
void ls_tensor_set_node_release(ls_node_release_fn fn);
/* A new tensor header sharing t's storage (no autograd state): the building block of views. */
ls_tensor *ls_tensor_alias(const ls_tensor *t);

/* ---- basic queries ---- */
int64_t ls_tensor_numel(const ls_tensor *t);
bool ls_tensor_is_contiguous(const ls_tensor *t);
/* Its elements fill a block of memory exactly once in some order of the dims: contiguous, or a
 * permutation of that (a transposed matrix). perm, when given, receives the dims from the outermost
 * in memory to the innermost. */
bool ls_tensor_is_dense(const ls_tensor *t, int *perm);
/* Pointer to element 0 of the view (storage data + offset). */
static inline void *ls_tensor_data(const ls_tensor *t)
{
    return (char *)t->storage->data + t->offset * (int64_t)ls_dtype_size(t->dtype);
}
/* "[3x4]" (scalars print "[]"); writes into buf, returns buf. */
const char *ls_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
#define LS_SHAPE_STR_MAX 128
/* Convenience for error messages: formats t's shape into a thread-local ring of buffers, so up to
 * four may appear in one message. */
const char *ls_tensor_shape_str(const ls_tensor *t);
/* Element at a multi-index (0-based), converted to double / set from double. No bounds checks. */
double ls_tensor_get(const ls_tensor *t, const int64_t *index);
void ls_tensor_set(ls_tensor *t, const int64_t *index, double v);
/* Element by flat (row-major logical) position. */
double ls_tensor_get_flat(const ls_tensor *t, int64_t i);
/* torch.equal: the same shape and every element equal as a number (NaN equals nothing, -0 == 0);
 * the dtypes may differ. Stops at the first difference. */
bool ls_tensor_equal(const ls_tensor *a, const ls_tensor *b);

/* ---- creation ---- */
ls_tensor *ls_tensor_zeros(ls_dtype dtype, int ndim, const int64_t *shape);
ls_tensor *ls_tensor_full(ls_dtype dtype, int ndim, const int64_t *shape, double value);
ls_tensor *ls_tensor_scalar(ls_dtype dtype, double value);   /* 0-dim */
ls_tensor *ls_tensor_arange(ls_dtype dtype, double start, double stop, double step);
ls_tensor *ls_tensor_eye(ls_dtype dtype, int64_t n, int64_t m);
/* From a contiguous buffer of `dtype` elements (copied). */
ls_tensor *ls_tensor_from_buffer(ls_dtype dtype, int ndim, const int64_t *shape, const void *data);

/* ---- copies and casts ---- */
ls_tensor *ls_tensor_contiguous(const ls_tensor *t);      /* t itself (retained) if already contiguous */
ls_tensor *ls_tensor_clone(const ls_tensor *t);           /* always a fresh contiguous copy */
ls_tensor *ls_tensor_cast(const ls_tensor *t, ls_dtype dtype); /* retained t if same dtype */
/* dst[...] = src broadcast to dst's shape, converting dtype. */
ls_status ls_tensor_copy_(ls_tensor *dst, const ls_tensor *src);
ls_status ls_tensor_fill_(ls_tensor *t, double value);

/* ---- views (share storage; raw: no autograd recording, see engine/ops for the recorded ones) ---- */
ls_tensor *ls_view_reshape(const ls_tensor *t, int ndim, const int64_t *shape); /* -1 infers; copies if needed */
ls_tensor *ls_view_permute(const ls_tensor *t, const int *perm);
ls_tensor *ls_view_transpose(const ls_tensor *t, int d0, int d1);
ls_tensor *ls_view_narrow(const ls_tensor *t, int dim, int64_t start, int64_t length);
ls_tensor *ls_view_select(const ls_tensor *t, int dim, int64_t index);  /* drops dim */
ls_tensor *ls_view_squeeze(const ls_tensor *t, int dim);                /* dim < 0: all size-1 dims */
ls_tensor *ls_view_unsqueeze(const ls_tensor *t, int dim);
ls_tensor *ls_view_expand(const ls_tensor *t, int ndim, const int64_t *shape);  /* NumPy rules */

/* ---- shape helpers ---- */
/* NumPy broadcasting of two shapes; `who` names the caller in the error. */
ls_status ls_broadcast_shapes(const char *who, int na, const int64_t *a, int nb, const int64_t *b,
                              int *nout, int64_t *out);
/* Normalise a possibly negative dim against ndim; error names `who`. */
ls_status ls_check_dim(const char *who, int ndim, int *dim);

/* ---- strided iteration ----
 * The loop every elementwise kernel uses: up to LS_ITER_MAX_OPS operands (op 0 is the output) share
 * one iteration shape; each operand has its own element strides (0 where broadcast). Dimensions are
 * coalesced where the layout allows, and the innermost one is handed to the kernel as a run of `n`
 * elements with per-operand strides, so a contiguous case arrives as one long run with stride 1. Work is
 * split into fixed chunks over the thread pool; results never depend on the thread count. */
#define LS_ITER_MAX_OPS 4
typedef struct ls_iter {
    int ndim;
    int nops;
    int64_t shape[LS_MAX_DIMS];
    int64_t stride[LS_ITER_MAX_OPS][LS_MAX_DIMS];
    char *data[LS_ITER_MAX_OPS];
    size_t elsize[LS_ITER_MAX_OPS];
} ls_iter;
typedef void (*ls_iter_fn)(void *ctx, int64_t n, char **ptrs, const int64_t *strides);
/* Build an iterator over out's shape; inputs broadcast to it (must already be broadcast-compatible). */
void ls_iter_init(ls_iter *it, ls_tensor *out, int nin, const ls_tensor *const *in);
void ls_iter_run(const ls_iter *it, ls_iter_fn fn, void *ctx);

#endif
