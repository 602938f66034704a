/* Integer arithmetic of the elementwise ops. The dtype rules (docs/tensor.md):
 *   - i64 and u8 operands, in any mix, compute in i64 (u8 is widened first) and give i64: add, sub,
 *     mul and neg wrap around on overflow (two's complement, as NumPy's and PyTorch's int64 do);
 *   - comparisons of integer operands are exact for every 64-bit value and give 1/0 as f64, the
 *     mask type float comparisons give (`pred:eq(y):mean()` is an accuracy);
 *   - an integer tensor never meets a float tensor implicitly: that is an error naming both dtypes
 *     (convert one with :double(), :float() or :long());
 *   - div, pow and the float functions (exp, log, ...) need float tensors.
 * Integer tensors cannot require gradients, so none of this is recorded. */
#include <string.h>

#include "ops/int_arith.h"
#include "ops/ops.h"

bool ls_int_any(int n, ls_tensor *const *in)
{
    for (int k = 0; k < n; k++)
        if (!ls_dtype_is_float(in[k]->dtype)) return true;
    return false;
}

/* The inputs as i64 tensors (new references) with their broadcast shape, or an error. */
static ls_status widen(const char *who, int n, ls_tensor *const *in, ls_tensor **w, int *nd,
                       int64_t *shape)
{
    for (int k = 0; k < n; k++) w[k] = NULL;
    for (int k = 0; k < n; k++)
        if (ls_dtype_is_float(in[k]->dtype))
            return ls_error_set(LS_ERR_ARG, "%s: cannot mix %s and %s tensors (convert one with "
                                ":double(), :float() or :long())", who, ls_dtype_name(in[0]->dtype),
                                ls_dtype_name(in[n - 1]->dtype));
    *nd = in[0]->ndim;
    memcpy(shape, in[0]->shape, sizeof(int64_t) * LS_MAX_DIMS);
    for (int k = 1; k < n; k++) {
        int64_t prev[LS_MAX_DIMS];
        memcpy(prev, shape, sizeof prev);
        if (ls_broadcast_shapes(who, *nd, prev, in[k]->ndim, in[k]->shape, nd, shape))
            return LS_ERR_ARG;
    }
    for (int k = 0; k < n; k++) {
        w[k] = in[k]->dtype == LS_I64 ? ls_tensor_retain(in[k]) : ls_tensor_cast(in[k], LS_I64);
        if (!w[k]) return ls_error_code();
    }
    return LS_OK;
}

typedef struct { char op; } int_ctx;

/* Unsigned arithmetic, converted back: wraps without undefined behaviour. */
static void int_binary_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    char op = ((const int_ctx *)vctx)->op;
    int64_t *o = (int64_t *)p[0];
    const int64_t *a = (const int64_t *)p[1], *b = (const int64_t *)p[2];
    for (int64_t i = 0; i < n; i++) {
        uint64_t x = (uint64_t)a[i * s[1]], y = (uint64_t)b[i * s[2]];
        uint64_t r = op == '+' ? x + y : op == '-' ? x - y : x * y;
        o[i * s[0]] = (int64_t)r;
    }
}

static void int_neg_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    (void)vctx;
    int64_t *o = (int64_t *)p[0];
    const int64_t *a = (const int64_t *)p[1];
    for (int64_t i = 0; i < n; i++) o[i * s[0]] = (int64_t)(0u - (uint64_t)a[i * s[1]]);
}

typedef struct { int cmp; } cmp_ctx;
enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };

static void int_compare_run(void *vctx, int64_t n, char **p, const int64_t *s)
{
    int cmp = ((const cmp_ctx *)vctx)->cmp;
    double *o = (double *)p[0];
    const int64_t *a = (const int64_t *)p[1], *b = (const int64_t *)p[2];
    for (int64_t i = 0; i < n; i++) {
        int64_t x = a[i * s[1]], y = b[i * s[2]];
        bool r = cmp == CMP_EQ ? x == y : cmp == CMP_NE ? x != y : cmp == CMP_LT ? x < y
               : cmp == CMP_LE ? x <= y : cmp == CMP_GT ? x > y : x >= y;
        o[i * s[0]] = r ? 1.0 : 0.0;
    }
}

/* Run fn over out (dtype `dt`, the broadcast shape) and the widened inputs. */
static ls_tensor *run(const char *who, int n, ls_tensor *const *in, ls_dtype dt, ls_iter_fn fn,
                      void *ctx)
{
    ls_tensor *w[2];
    int nd;
    int64_t shape[LS_MAX_DIMS];
    ls_tensor *out = NULL;
    if (widen(who, n, in, w, &nd, shape) == LS_OK && (out = ls_tensor_new(dt, nd, shape))) {
        ls_iter it;
        ls_iter_init(&it, out, n, (const ls_tensor *const *)w);
        ls_iter_run(&it, fn, ctx);
    }
    for (int k = 0; k < n; k++) ls_tensor_release(w[k]);
    return out;
}

ls_tensor *ls_int_binary(const char *who, ls_tensor *const *in, char op)
{
    int_ctx c = {op};
    return run(who, 2, in, LS_I64, int_binary_run, &c);
}

ls_tensor *ls_int_neg(ls_tensor *const *in)
{
    return run("neg", 1, in, LS_I64, int_neg_run, NULL);
}

ls_tensor *ls_int_compare(const char *cmp, ls_tensor *const *in)
{
    static const char *const names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
    cmp_ctx c = {0};
    for (int i = 0; i < 6; i++)
        if (strcmp(cmp, names[i]) == 0) c.cmp = i;
    return run(cmp, 2, in, LS_F64, int_compare_run, &c);
}
