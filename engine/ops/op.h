/* Ops: the one place every tensor operation is defined.
 *
 * An op is one `const ls_op_def` (name, arity, Lua signature, forward kernel, backward rule, sample
 * inputs for the gradient check) plus one line in engine/ops/registry.h. The registry drives the enum
 * (LS_OP_*), the Lua methods (engine/lua/lx_ops.c parses arguments from `lua_sig`) and the gradient-check
 * list (tests/c/test_gradcheck.c).
 *
 * Calling an op: ls_op_apply(LS_OP_ADD, inputs, &attrs), or the typed wrapper the op file exports
 * (ls_add(a, b)). Inputs are borrowed; the result is a new reference, or NULL with the error set. Every
 * op returns NULL when any input is NULL, so expressions can be chained and checked once at the end
 * (the error of the first failure is kept).
 *
 * Backward rules are written with recorded ops (ls_mul, ls_sum_to, ...), never with raw kernels, so
 * when the backward pass runs with create_graph the gradient is itself a differentiable graph. A fused
 * kernel's hand-written backward is registered as an op of its own with its own backward. A rule may
 * use the op's output (ls_backward_ctx.out) in the ops it records, but never store a reference to it
 * (the output owns the node: that would make a cycle). */
#ifndef LS_OP_H
#define LS_OP_H

#include <stdbool.h>

#include "tensor/tensor.h"

#define LS_OP_MAX_INPUTS 4
/* ls_op_def.nin of an op taking any number of tensor inputs (cat): the count is ls_attrs.nin. */
#define LS_OP_VARIADIC (-1)
/* The most inputs a variadic op takes. */
#define LS_OP_MAX_VARIADIC 65536

enum { LS_REDUCE_MEAN = 0, LS_REDUCE_SUM = 1, LS_REDUCE_NONE = 2 };

/* Non-tensor arguments. Which fields an op reads is given by its lua_sig. */
typedef struct ls_attrs {
    int dim;                       /* 'd': the first 0-based dim given (has_dim says whether) */
    bool has_dim;
    int ndims;                     /* 'D': 0-based dims, all_dims when absent; each 'd' also appends */
    int dims[LS_MAX_DIMS];
    bool all_dims;
    bool keepdim;                  /* 'k' */
    int nints;                     /* 'S' shape, 'i' integers, 'I' 1-based indices stored 0-based */
    int64_t ints[LS_MAX_DIMS];
    int nnum;                      /* 'n' numbers; an absent optional number is NAN */
    double num[4];
    int nin;                       /* variadic ops only: how many tensor inputs */
} ls_attrs;

/* The gradient a backward rule gives for an input it is piecewise constant in (see
 * ls_op_def.backward): a mark, not a tensor; never retained, released or read. */
extern ls_tensor ls_grad_zero_mark;
#define LS_GRAD_ZERO (&ls_grad_zero_mark)
/* The gradient a backward rule has added into ls_backward_ctx.acc[k] itself: a mark, as above. */
extern ls_tensor ls_grad_added_mark;
#define LS_GRAD_ADDED (&ls_grad_added_mark)

/* What a backward rule sees. needs[k] says whether input k wants a gradient. out: the op's result
 * (with its graph, so what a rule computes from it is differentiable again), borrowed. acc[k]
 * (NULL, or NULL for k, when none): the gradient input k has gathered so far in this pass, when no
 * graph is being built and the pass alone holds it (contiguous, input k's shape and dtype); a rule
 * whose kernel can add its gradient into it in place (acc[k] += gradient, the same bits as the
 * engine's own addition) may do so and set gin[k] = LS_GRAD_ADDED, saving a pass over the tensor. */
typedef struct ls_backward_ctx {
    int nin;
    ls_tensor *const *in;
    const ls_attrs *attrs;
    const bool *needs;
    ls_tensor *out;
    ls_tensor *const *acc;
} ls_backward_ctx;

/* Sample inputs for the gradient check: shapes and value ranges of each input, plus attrs. */
typedef enum { LS_SAMPLE_REAL = 0, LS_SAMPLE_POSITIVE, LS_SAMPLE_AWAY_FROM_ZERO, LS_SAMPLE_INDEX,
               LS_SAMPLE_MASK, LS_SAMPLE_DOMINANT } ls_sample_kind;
typedef struct ls_op_sample {
    int ndim[LS_OP_MAX_INPUTS];
    int64_t shape[LS_OP_MAX_INPUTS][LS_MAX_DIMS];
    ls_sample_kind kind[LS_OP_MAX_INPUTS];   /* REAL: U(-1,1); POSITIVE: U(0.5,2); AWAY_FROM_ZERO:
                                                 +-U(0.3,1); INDEX: i64 in [0, index_hi); MASK: 0/1;
                                                 DOMINANT: U(-0.5,0.5) + 2 on the diagonal (a
                                                 well-conditioned matrix) */
    int64_t index_hi;
    ls_attrs attrs;
} ls_op_sample;
#define LS_OP_MAX_SAMPLES 6

typedef struct ls_op_def {
    const char *name;       /* Lua method name and error prefix; "linalg.solve" is ls.linalg.solve
                               in Lua (a module function only) */
    int nin;                /* tensor inputs, or LS_OP_VARIADIC (the count is attrs.nin) */
    /* Lua signature: the method's arguments in order, space separated tokens:
     *   T  tensor input (in order; a Lua number becomes a 0-d tensor of the first tensor's dtype)
     *   n  number      d  dim (1-based in Lua)     D  dims (a number or a table; absent = all)
     *   X  index tensor input: i64 holding 1-based positions in Lua, converted to 0-based here
     *   k  keepdim     S  shape (table or integers) i  integer      I  index (1-based in Lua)
     *   R  reduction: "mean" (default) | "sum" | "none", or a table {reduction = ...}; stored as a
     *      number LS_REDUCE_* in the next num slot
     * A trailing '?' makes a token optional. Dims are converted from 1-based only (negative ones are
     * passed through); the op range-checks them with ls_check_dim. NULL: no generic Lua method (the
     * binding exposes it by hand, e.g. cast). */
    const char *lua_sig;
    /* Compute the result without recording. Inputs are non-NULL. */
    ls_tensor *(*forward)(ls_tensor *const *in, const ls_attrs *a);
    /* Set gin[k] (new reference) for each k with needs[k], using recorded ops, or LS_GRAD_ZERO
     * when that gradient is zero everywhere (a mask's or an argmax's input): the engine then
     * allocates and adds nothing for it; or LS_GRAD_ADDED (see ls_backward_ctx.acc). NULL = not
     * differentiable (integer outputs, comparisons). */
    ls_status (*backward)(const ls_backward_ctx *c, ls_tensor *gout, ls_tensor **gin);
    /* Fill up to LS_OP_MAX_SAMPLES samples; return the count. NULL only for ops without backward. */
    int (*samples)(ls_op_sample *s);
    /* The result holds 0-based positions (argmax): the binding adds 1 for Lua. Last, so positional
     * initialisers of the fields above may omit it. */
    bool returns_index;
} ls_op_def;

#include "ops/registry.h"

#define LS_OP_ENUM(e, def) e,
typedef enum ls_op_id { LS_OP_LIST(LS_OP_ENUM) LS_OP_COUNT } ls_op_id;
#undef LS_OP_ENUM

#define LS_OP_DECL(e, def) extern const ls_op_def def;
LS_OP_LIST(LS_OP_DECL)
#undef LS_OP_DECL

extern const ls_op_def *const ls_ops[LS_OP_COUNT];

/* How many tensor inputs op `def` takes with attrs `a`. */
static inline int ls_op_nin(const ls_op_def *def, const ls_attrs *a)
{
    return def->nin >= 0 ? def->nin : a->nin;
}

/* Run op `id` on inputs (NULL-propagating) and record it in the graph when grad mode is on and an
 * input requires grad. */
ls_tensor *ls_op_apply(ls_op_id id, ls_tensor *const *in, const ls_attrs *a);
/* Look an op up by name (-1 if none). */
int ls_op_find(const char *name);

/* ---- helpers for op files ---- */
/* A small pool of temporaries for backward rules: keep() returns its argument and remembers it;
 * ls_tmp_free releases everything kept. */
typedef struct ls_tmp {
    int n;
    ls_tensor *t[64];
} ls_tmp;
ls_tensor *ls_tmp_keep(ls_tmp *s, ls_tensor *t);
void ls_tmp_free(ls_tmp *s);

/* Check that inputs are f32/f64 and share one dtype; error names `who`. */
ls_status ls_check_float_same(const char *who, int n, ls_tensor *const *in);

#endif
