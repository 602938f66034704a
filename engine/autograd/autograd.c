/* The backward engine. See autograd.h for the ownership story. */
#include "autograd/autograd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/ops.h"

static _Thread_local bool ls_grad_off;   /* zero-initialised: grad mode starts on */
ls_tensor ls_grad_zero_mark, ls_grad_added_mark;
static unsigned ls_pass_counter;

bool ls_grad_enabled(void) { return !ls_grad_off; }

bool ls_set_grad_enabled(bool on)
{
    bool prev = !ls_grad_off;
    ls_grad_off = !on;
    return prev;
}

ls_status ls_requires_grad_(ls_tensor *t, bool on)
{
    if (t->grad_fn && !on)
        return ls_error_set(LS_ERR_ARG, "requires_grad: %s is the result of an op; use detach() to "
                            "get a tensor outside the graph", ls_tensor_shape_str(t));
    if (on && !ls_dtype_is_float(t->dtype))
        return ls_error_set(LS_ERR_ARG, "requires_grad: only float tensors can require gradients, "
                            "got %s", ls_dtype_name(t->dtype));
    t->requires_grad = on || t->grad_fn;
    return LS_OK;
}

ls_tensor *ls_detach(const ls_tensor *t) { return ls_tensor_alias(t); }

static void ls_node_drop_inputs(ls_node *n)
{
    for (int k = 0; k < n->nin; k++) {
        ls_tensor_release(n->in[k]);
        n->in[k] = NULL;
    }
    n->freed = true;
}

/* Frees a node when the tensor that owns it is released (the hook of ls_tensor_set_node_release).
 * Dropping a node's inputs can release their nodes in turn, down a chain as long as the graph: a
 * graph of 300 000 ops (a loop of y = y + 1) overflowed the stack when freed recursively. So nodes go
 * on a per-thread worklist, and only the outermost call frees, one node at a time. */
static _Thread_local ls_node *ls_free_list;
static _Thread_local bool ls_freeing;

static void ls_node_free(ls_node *n)
{
    n->next_free = ls_free_list;
    ls_free_list = n;
    if (ls_freeing) return;   /* an outer call is draining the list */
    ls_freeing = true;
    while ((n = ls_free_list)) {
        ls_free_list = n->next_free;
        ls_tensor_release(n->gacc);
        ls_node_drop_inputs(n);   /* may add nodes to the list */
        ls_free(n);
    }
    ls_freeing = false;
}

ls_status ls_autograd_record(ls_op_id op, ls_tensor *out, ls_tensor *const *in, const ls_attrs *a)
{
    if (ls_grad_off || !ls_ops[op]->backward) return LS_OK;
    const ls_op_def *def = ls_ops[op];
    int nin = ls_op_nin(def, a);
    bool any = false;
    for (int k = 0; k < nin; k++) any = any || in[k]->requires_grad;
    if (!any) return LS_OK;
    ls_node *n = ls_calloc(sizeof *n + sizeof n->in[0] * (size_t)nin, def->name);
    if (!n) return LS_ERR_MEM;
    ls_tensor_set_node_release(ls_node_free);
    n->op = op;
    n->nin = nin;
    for (int k = 0; k < nin; k++) n->in[k] = ls_tensor_retain(in[k]);
    n->attrs = *a;
    out->grad_fn = n;
    out->requires_grad = true;
    return LS_OK;
}

/* ---- one backward pass ----
 * 1. An iterative depth-first walk from the outputs lists every tensor with a grad_fn in post-order
 *    (inputs before the tensors made from them) and retains each, so that freeing the graph as we go
 *    cannot free a tensor still to be visited. `needed` marks nodes below which some target lies, so
 *    rules are only run (and only for the inputs) where a gradient is wanted.
 * 2. Walking that list backwards (a topological order from the outputs), each node's accumulated
 *    gradient (gacc) goes through its op's backward rule, and the results are added into the inputs'
 *    gacc, into the requested inputs' slots, or (backward()) into leaves' .grad.
 * With create_graph the rules run in grad mode, so the gradients are recorded graphs themselves. */

typedef struct ls_pass {
    ls_tensor **list;
    int n, cap;
    unsigned mark;
    int nin;
    ls_tensor *const *inputs;
    bool accumulate;
} ls_pass;

static int ls_pass_target(const ls_pass *p, const ls_tensor *t)
{
    for (int i = 0; i < p->nin; i++)
        if (p->inputs[i] == t) return i;
    if (p->accumulate && !t->grad_fn && t->requires_grad) return p->nin;   /* any leaf */
    return -1;
}

static ls_status ls_pass_push(ls_pass *p, ls_tensor *t)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        ls_tensor **nl = ls_malloc(sizeof *nl * (size_t)cap, "backward");
        if (!nl) return LS_ERR_MEM;
        if (p->n) memcpy(nl, p->list, sizeof *nl * (size_t)p->n);
        ls_free(p->list);
        p->list = nl;
        p->cap = cap;
    }
    p->list[p->n++] = ls_tensor_retain(t);
    return LS_OK;
}

typedef struct { ls_tensor *t; int next; } ls_dfs_frame;

static ls_status ls_pass_collect(ls_pass *p, ls_tensor *root, const char *who)
{
    if (!root->grad_fn || root->grad_fn->mark == p->mark) return LS_OK;
    int cap = 64, top = 0;
    ls_dfs_frame *st = ls_malloc(sizeof *st * (size_t)cap, "backward");
    if (!st) return LS_ERR_MEM;
    root->grad_fn->mark = p->mark;
    st[top++] = (ls_dfs_frame){root, 0};
    ls_status rc = LS_OK;
    while (top > 0 && rc == LS_OK) {
        ls_dfs_frame *f = &st[top - 1];
        ls_node *n = f->t->grad_fn;
        if (n->freed) {
            rc = ls_error_set(LS_ERR_STATE, "%s: the graph through '%s' was already freed by an "
                              "earlier backward; pass retain_graph = true to keep it", who,
                              ls_ops[n->op]->name);
            break;
        }
        if (f->next < n->nin) {
            ls_tensor *c = n->in[f->next++];
            if (c->grad_fn && c->grad_fn->mark != p->mark) {
                c->grad_fn->mark = p->mark;
                if (top == cap) {
                    ls_dfs_frame *ns = ls_malloc(sizeof *ns * (size_t)cap * 2, "backward");
                    if (!ns) { rc = LS_ERR_MEM; break; }
                    memcpy(ns, st, sizeof *st * (size_t)cap);
                    ls_free(st);
                    st = ns;
                    cap *= 2;
                }
                st[top++] = (ls_dfs_frame){c, 0};
            }
            continue;
        }
        /* all inputs done: post-order position */
        n->pending = 0;   /* reused as the 'needed' flag */
        n->zero = false;
        for (int k = 0; k < n->nin; k++) {
            ls_tensor *c = n->in[k];
            if (!c->requires_grad) continue;
            if (ls_pass_target(p, c) >= 0 || (c->grad_fn && c->grad_fn->pending)) n->pending = 1;
        }
        rc = ls_pass_push(p, f->t);
        top--;
    }
    ls_free(st);
    return rc;
}

/* slot += g (recorded when grad mode is on). Takes over g. Without a graph being built, a slot this
 * pass owns alone (no other reference to it or its storage: never a user's tensor) and dense is
 * added to in place, rather than into a new tensor (a Hessian-vector product accumulates ~8
 * [1000 x 128] gradients). Every gradient has passed ls_check_grad_shape against the tensor it
 * belongs to, so slot and g agree in shape and dtype. */
/* A gradient this pass alone holds, outside any graph: it may be added into in place. */
static bool ls_owned(const ls_tensor *a)
{
    return !ls_grad_enabled() && a->refcount == 1 && a->storage->refcount == 1 && !a->grad_fn &&
           !a->requires_grad;
}

static ls_status ls_accumulate(ls_tensor **slot, ls_tensor *g)
{
    if (!*slot) {
        *slot = g;
        return LS_OK;
    }
    ls_tensor *a = *slot;
    if (ls_owned(a) && ls_tensor_is_dense(a, NULL)) {
        ls_status rc = ls_add_inplace(a, g);
        ls_tensor_release(g);
        return rc;
    }
    ls_tensor *s = ls_add(*slot, g);
    ls_tensor_release(g);
    if (!s) return ls_error_code();
    ls_tensor_release(*slot);
    *slot = s;
    return LS_OK;
}

static ls_status ls_check_grad_shape(const char *who, const ls_tensor *g, const ls_tensor *t)
{
    if (g->ndim != t->ndim || memcmp(g->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) != 0)
        return ls_error_set(LS_ERR_ARG, "%s: gradient of shape %s for a tensor of shape %s", who,
                            ls_tensor_shape_str(g), ls_tensor_shape_str(t));
    if (g->dtype != t->dtype)
        return ls_error_set(LS_ERR_ARG, "%s: gradient of dtype %s for a tensor of dtype %s", who,
                            ls_dtype_name(g->dtype), ls_dtype_name(t->dtype));
    return LS_OK;
}

/* An LS_GRAD_ZERO for c: nothing to add, but c was reached. A node remembers it (if no other
 * gradient arrives, its own inputs are reached by zero in turn), a requested input remembers it
 * (it gets a zero tensor, not "unused"), a leaf's .grad gets zeros added as for any gradient. */
static ls_status ls_reach_zero(ls_pass *p, ls_tensor *c, bool *zslot)
{
    int ci = ls_pass_target(p, c);
    if (c->grad_fn) c->grad_fn->zero = true;
    else if (ci >= 0 && ci < p->nin) zslot[ci] = true;
    else if (ci == p->nin) {
        ls_tensor *z = ls_tensor_zeros(c->dtype, c->ndim, c->shape);
        return z ? ls_accumulate(&c->grad, z) : ls_error_code();
    }
    return LS_OK;
}

ls_status ls_autograd_grad(int nout, ls_tensor *const *outputs, int nin, ls_tensor *const *inputs,
                           const ls_grad_opts *opts, ls_tensor **grads)
{
    const char *who = opts->accumulate ? "backward" : "grad";
    ls_pass p = {.mark = ++ls_pass_counter, .nin = nin, .inputs = inputs,
                 .accumulate = opts->accumulate};
    ls_tensor *slots[64] = {0};
    bool zslots[64] = {0};
    ls_tensor **islot = nin <= 64 ? slots : ls_calloc(sizeof *islot * (size_t)nin, who);
    bool *zslot = nin <= 64 ? zslots : ls_calloc(sizeof *zslot * (size_t)nin, who);
    if (!islot || !zslot) {
        if (islot != slots) ls_free(islot);
        if (zslot != zslots) ls_free(zslot);
        return LS_ERR_MEM;
    }
    ls_status rc = LS_OK;
    bool prev_mode = ls_set_grad_enabled(opts->create_graph);

    for (int i = 0; i < nin && rc == LS_OK; i++)
        if (!inputs[i]->requires_grad)
            rc = ls_error_set(LS_ERR_ARG, "%s: input %d (shape %s) does not require grad", who,
                              i + 1, ls_tensor_shape_str(inputs[i]));
    /* seed the outputs */
    for (int k = 0; k < nout && rc == LS_OK; k++) {
        ls_tensor *o = outputs[k];
        if (!o->requires_grad) {
            rc = ls_error_set(LS_ERR_ARG, "%s: output %d does not require grad (it was computed "
                              "without any input that requires grad, or under no_grad)", who, k + 1);
            break;
        }
        ls_tensor *g;
        if (opts->grad_outputs && opts->grad_outputs[k]) {
            if ((rc = ls_check_grad_shape(who, opts->grad_outputs[k], o)) != LS_OK) {
                ls_error_set(LS_ERR_ARG, "%s: grad_outputs[%d] has shape %s %s but output %d has "
                             "shape %s %s", who, k + 1, ls_tensor_shape_str(opts->grad_outputs[k]),
                             ls_dtype_name(opts->grad_outputs[k]->dtype), k + 1,
                             ls_tensor_shape_str(o), ls_dtype_name(o->dtype));
                break;
            }
            g = ls_tensor_retain(opts->grad_outputs[k]);
        } else if (ls_tensor_numel(o) == 1) {
            g = ls_tensor_full(o->dtype, o->ndim, o->shape, 1.0);
        } else {
            rc = ls_error_set(LS_ERR_ARG, "%s: output %d has shape %s; gradients can only be "
                              "implicitly created for scalar outputs, pass grad_outputs", who, k + 1,
                              ls_tensor_shape_str(o));
            break;
        }
        if (!g) { rc = ls_error_code(); break; }
        int ti = ls_pass_target(&p, o);
        if (o->grad_fn) {
            rc = ls_accumulate(&o->grad_fn->gacc, g);
            if (rc == LS_OK) rc = ls_pass_collect(&p, o, who);
            o->grad_fn->mark = p.mark;
        } else if (ti >= 0 && ti < nin) {
            rc = ls_accumulate(&islot[ti], g);
        } else if (ti == nin) {
            rc = ls_accumulate(&o->grad, g);
        } else {
            ls_tensor_release(g);
        }
    }

    /* reverse post-order = outputs first */
    for (int i = p.n - 1; i >= 0 && rc == LS_OK; i--) {
        ls_tensor *t = p.list[i];
        ls_node *n = t->grad_fn;
        ls_tensor *g = n->gacc;
        int ti = ls_pass_target(&p, t);
        if (!g) {
            if (!n->zero) continue;
            /* only zeros arrived: so are the gradients of its inputs */
            if (ti >= 0 && ti < nin) zslot[ti] = true;
            for (int k = 0; k < n->nin && rc == LS_OK && n->pending; k++) {
                ls_tensor *c = n->in[k];
                if (c->requires_grad &&
                    (ls_pass_target(&p, c) >= 0 || (c->grad_fn && c->grad_fn->pending)))
                    rc = ls_reach_zero(&p, c, zslot);
            }
            if (!opts->retain_graph && rc == LS_OK) ls_node_drop_inputs(n);
            continue;
        }
        if (ti >= 0 && ti < nin) islot[ti] = ls_tensor_retain(g);
        if (n->pending) {
            const ls_op_def *def = ls_ops[n->op];
            /* a variadic op's node may have more inputs than the arrays on the stack hold */
            bool needs_s[LS_OP_MAX_INPUTS] = {0}, *needs = needs_s;
            ls_tensor *gin_s[LS_OP_MAX_INPUTS] = {0}, **gin = gin_s;
            if (n->nin > LS_OP_MAX_INPUTS) {
                needs = ls_calloc(sizeof *needs * (size_t)n->nin, who);
                gin = ls_calloc(sizeof *gin * (size_t)n->nin, who);
            }
            if (!needs || !gin) rc = LS_ERR_MEM;
            /* which inputs want a gradient, and the accumulators a rule may add into (not a
             * leaf's .grad: the user's tensor; none for a variadic op's node with more inputs
             * than the array holds) */
            ls_tensor *acc[LS_OP_MAX_INPUTS] = {0};
            bool any_acc = false;
            for (int k = 0; k < n->nin && rc == LS_OK; k++) {
                ls_tensor *c = n->in[k], *a = NULL;
                int ci = c->requires_grad ? ls_pass_target(&p, c) : -1;
                needs[k] = c->requires_grad && (ci >= 0 || (c->grad_fn && c->grad_fn->pending));
                if (!needs[k] || n->nin > LS_OP_MAX_INPUTS) continue;
                if (c->grad_fn) a = c->grad_fn->gacc;
                else if (ci >= 0 && ci < nin) a = islot[ci];
                if (a && ls_owned(a) && ls_tensor_is_contiguous(a)) acc[k] = a, any_acc = true;
            }
            ls_backward_ctx ctx = {n->nin, n->in, &n->attrs, needs, t, any_acc ? acc : NULL};
            if (rc == LS_OK) rc = def->backward(&ctx, g, gin);
            if (rc == LS_OK)
                for (int k = 0; k < n->nin; k++)
                    if (needs[k] && !gin[k])
                        rc = ls_error_set(LS_ERR_STATE, "%s: backward of '%s' gave no gradient "
                                          "for input %d", who, def->name, k + 1);
            for (int k = 0; k < n->nin && gin; k++) {
                if (!gin[k]) continue;
                ls_tensor *c = n->in[k];
                if (gin[k] == LS_GRAD_ZERO) {
                    if (rc == LS_OK && needs[k]) rc = ls_reach_zero(&p, c, zslot);
                    continue;
                }
                if (gin[k] == LS_GRAD_ADDED) continue;
                if (rc == LS_OK && !needs[k]) { ls_tensor_release(gin[k]); continue; }
                if (rc == LS_OK && ls_check_grad_shape(who, gin[k], c) != LS_OK) {
                    /* named after the op only on failure: formatting it for every gradient cost
                     * a few percent of a small network's step */
                    char what[96];
                    snprintf(what, sizeof what, "%s: backward of '%s'", who, def->name);
                    rc = ls_check_grad_shape(what, gin[k], c);
                }
                if (rc != LS_OK) { ls_tensor_release(gin[k]); continue; }
                int ci = ls_pass_target(&p, c);
                if (c->grad_fn) rc = ls_accumulate(&c->grad_fn->gacc, gin[k]);
                else if (ci >= 0 && ci < nin) rc = ls_accumulate(&islot[ci], gin[k]);
                else if (ci == nin) {
                    ls_tensor *d = ls_detach(gin[k]);
                    ls_tensor_release(gin[k]);
                    rc = d ? ls_accumulate(&c->grad, d) : ls_error_code();
                } else ls_tensor_release(gin[k]);
            }
            if (needs != needs_s) ls_free(needs);
            if (gin != gin_s) ls_free(gin);
        }
        ls_tensor_release(n->gacc);
        n->gacc = NULL;
        if (!opts->retain_graph && rc == LS_OK) ls_node_drop_inputs(n);
    }

    /* an input listed twice gets the same gradient in both places (slots fill the first one) */
    for (int i = 0; i < nin && rc == LS_OK; i++)
        for (int j = 0; j < i && !islot[i]; j++)
            if (inputs[j] == inputs[i] && islot[j]) islot[i] = ls_tensor_retain(islot[j]);
    for (int i = 0; i < nin && rc == LS_OK; i++)
        if (!islot[i] && zslot[i] &&
            !(islot[i] = ls_tensor_zeros(inputs[i]->dtype, inputs[i]->ndim, inputs[i]->shape)))
            rc = ls_error_code();
    for (int i = 0; i < nin && rc == LS_OK; i++)
        if (!islot[i] && !opts->allow_unused)
            rc = ls_error_set(LS_ERR_ARG, "%s: input %d (shape %s) is not part of the graph of the "
                              "outputs; pass allow_unused = true to get nil for it", who, i + 1,
                              ls_tensor_shape_str(inputs[i]));
    /* cleanup: scratch gradients (also on outputs seeded before an error), the retained list */
    for (int k = 0; k < nout; k++)
        if (outputs[k]->grad_fn && outputs[k]->grad_fn->mark == p.mark) {
            ls_tensor_release(outputs[k]->grad_fn->gacc);
            outputs[k]->grad_fn->gacc = NULL;
        }
    for (int i = 0; i < p.n; i++) {
        ls_tensor_release(p.list[i]->grad_fn->gacc);
        p.list[i]->grad_fn->gacc = NULL;
        ls_tensor_release(p.list[i]);
    }
    ls_free(p.list);
    for (int i = 0; i < nin; i++) {
        if (rc == LS_OK && grads) grads[i] = islot[i];
        else ls_tensor_release(islot[i]);
    }
    if (islot != slots) ls_free(islot);
    if (zslot != zslots) ls_free(zslot);
    ls_set_grad_enabled(prev_mode);
    return rc;
}
