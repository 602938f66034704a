/* The op table, ls_op_apply, and small helpers shared by op files. */
#include <string.h>

#include "autograd/autograd.h"
#include "ops/op.h"

#define LS_OP_ADDR(e, def) &def,
const ls_op_def *const ls_ops[LS_OP_COUNT] = {LS_OP_LIST(LS_OP_ADDR)};
#undef LS_OP_ADDR

int ls_op_find(const char *name)
{
    for (int i = 0; i < LS_OP_COUNT; i++)
        if (strcmp(ls_ops[i]->name, name) == 0) return i;
    return -1;
}

ls_tensor *ls_op_apply(ls_op_id id, ls_tensor *const *in, const ls_attrs *a)
{
    const ls_op_def *def = ls_ops[id];
    static const ls_attrs none = {0};
    if (!a) a = &none;
    int nin = ls_op_nin(def, a);
    for (int k = 0; k < nin; k++)
        if (!in[k]) return NULL;   /* an earlier op failed; its error stands */
    ls_tensor *out = def->forward(in, a);
    if (!out) {
        ls_error_retag(def->name);   /* "tensor: out of memory ..." -> "matmul: out of memory ..." */
        return NULL;
    }
    for (int k = 0; k < nin; k++)
        if (out == in[k]) {   /* an op must not hand back its input: the node would land on it */
            ls_tensor *alias = ls_tensor_alias(out);
            ls_tensor_release(out);
            if (!(out = alias)) return NULL;
        }
    if (ls_autograd_record(id, out, in, a) != LS_OK) {
        ls_error_retag(def->name);
        ls_tensor_release(out);
        return NULL;
    }
    return out;
}

ls_tensor *ls_tmp_keep(ls_tmp *s, ls_tensor *t)
{
    if (t && s->n < (int)(sizeof s->t / sizeof s->t[0])) s->t[s->n++] = t;
    return t;
}

void ls_tmp_free(ls_tmp *s)
{
    for (int i = 0; i < s->n; i++) ls_tensor_release(s->t[i]);
    s->n = 0;
}

ls_status ls_check_float_same(const char *who, int n, ls_tensor *const *in)
{
    for (int k = 0; k < n; k++) {
        if (!ls_dtype_is_float(in[k]->dtype))
            return ls_error_set(LS_ERR_ARG, "%s: expected a float tensor (f32 or f64), got %s", who,
                                ls_dtype_name(in[k]->dtype));
        if (in[k]->dtype != in[0]->dtype)
            return ls_error_set(LS_ERR_ARG, "%s: dtype mismatch: %s and %s", who,
                                ls_dtype_name(in[0]->dtype), ls_dtype_name(in[k]->dtype));
    }
    return LS_OK;
}
