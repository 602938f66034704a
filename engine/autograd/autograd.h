/* Reverse-mode autodiff on a recorded graph.
 *
 * When grad mode is on and an op has an input that requires grad, ls_op_apply records a node on the
 * output tensor (t->grad_fn): the op, its inputs (retained) and attrs. The graph is a DAG owned from the
 * outputs down: a tensor owns its node, a node owns its inputs, so dropping the last output frees the
 * whole graph. Gradients from create_graph are returned to the caller and never stored in the graph,
 * so no cycles form; leaf .grad is always detached.
 *
 * After a backward pass without retain_graph, the nodes it walked drop their inputs ("freed"); a second
 * backward through them is an LS_ERR_STATE error, not a crash. */
#ifndef LS_AUTOGRAD_H
#define LS_AUTOGRAD_H

#include "ops/op.h"

typedef struct ls_node {
    ls_op_id op;
    int nin;
    ls_attrs attrs;
    bool freed;
    /* scratch used during one backward pass */
    ls_tensor *gacc;
    bool zero;   /* reached by an LS_GRAD_ZERO: its gradient is zero if nothing else arrives */
    int pending;
    unsigned mark;
    struct ls_node *next_free;   /* the worklist of ls_node_free (a long graph is freed without recursion) */
    ls_tensor *in[];   /* nin inputs (a variadic op has as many as it was given) */
} ls_node;

/* Grad mode (per thread). set returns the previous value. */
bool ls_grad_enabled(void);
bool ls_set_grad_enabled(bool on);

/* Mark a leaf as requiring grad (error if it has a grad_fn or is not floating point). */
ls_status ls_requires_grad_(ls_tensor *t, bool on);
/* A new tensor sharing t's storage with no graph. */
ls_tensor *ls_detach(const ls_tensor *t);

/* Called by ls_op_apply after a forward; records the node when needed. Returns LS_OK or error. */
ls_status ls_autograd_record(ls_op_id op, ls_tensor *out, ls_tensor *const *in, const ls_attrs *a);

typedef struct ls_grad_opts {
    ls_tensor *const *grad_outputs;   /* one per output, or NULL (scalar outputs get 1) */
    bool create_graph;
    bool retain_graph;                /* defaults to create_graph at the Lua level */
    bool allow_unused;
    bool accumulate;                  /* backward(): add into inputs' .grad instead of returning */
} ls_grad_opts;

/* Gradients of sum_k <grad_outputs[k], outputs[k]> with respect to inputs (any tensors in the graph,
 * leaves or not). grads[i] receives a new reference (NULL when unused and allow_unused). With
 * accumulate, every leaf that requires grad reached from the outputs gets .grad += its gradient, and
 * `inputs` may be empty. */
ls_status ls_autograd_grad(int nout, ls_tensor *const *outputs, int nin, ls_tensor *const *inputs,
                           const ls_grad_opts *opts, ls_tensor **grads);

#endif
