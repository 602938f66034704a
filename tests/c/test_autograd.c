/* Autograd: exact Hessian-vector products of a small two-layer network in float64 against finite
 * differences of gradients and against a dense Hessian assembled column by column (symmetric to 1e-10),
 * gradient accumulation, freed graphs, error paths, gradients a rule marks as zero (LS_GRAD_ZERO),
 * and memory that does not grow over 10 000 training-style steps. */
#include <math.h>
#include <string.h>

#include "autograd/autograd.h"
#include "check.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "ops/ops.h"

#define NP 4   /* parameter tensors: W1 [5x4], b1 [4], W2 [4x3], b2 [3] */
static ls_tensor *P[NP], *X, *Y;
static const int64_t SHAPES[NP][2] = {{5, 4}, {4, 0}, {4, 3}, {3, 0}};
static int64_t NPARAM;

static ls_tensor *randt(ls_rng *r, int nd, const int64_t *shape, double scale)
{
    ls_tensor *t = ls_tensor_new(LS_F64, nd, shape);
    ls_rng_normal(r, LS_F64, ls_tensor_data(t), ls_tensor_numel(t), 0.0, scale);
    return t;
}

static void setup(void)
{
    ls_rng r;
    ls_rng_init(&r, 42);
    NPARAM = 0;
    for (int i = 0; i < NP; i++) {
        P[i] = randt(&r, SHAPES[i][1] ? 2 : 1, SHAPES[i], 0.7);
        ls_requires_grad_(P[i], true);
        NPARAM += ls_tensor_numel(P[i]);
    }
    X = randt(&r, 2, (int64_t[]){6, 5}, 1.0);
    Y = ls_tensor_new(LS_I64, 1, (int64_t[]){6});
    ls_rng_randint(&r, LS_I64, ls_tensor_data(Y), 6, 0, 3);
}

/* loss = cross_entropy(tanh(X W1 + b1) W2 + b2, Y), mean */
static ls_tensor *loss_fn(void)
{
    ls_tmp t = {0};
    ls_tensor *h = ls_tmp_keep(&t, ls_tanh(ls_tmp_keep(&t, ls_add(ls_tmp_keep(&t, ls_matmul(X, P[0])),
                                                                   P[1]))));
    ls_tensor *z = ls_tmp_keep(&t, ls_add(ls_tmp_keep(&t, ls_matmul(h, P[2])), P[3]));
    ls_tensor *l = ls_cross_entropy(z, Y, LS_REDUCE_MEAN);
    ls_tmp_free(&t);
    return l;
}

static double *flat_grad(bool create, ls_tensor **keep)
{
    ls_tensor *l = loss_fn();
    ls_grad_opts o = {.create_graph = create, .retain_graph = create};
    ls_tensor *g[NP];
    CHECK(ls_autograd_grad(1, &l, NP, P, &o, g) == LS_OK);
    ls_tensor_release(l);
    double *flat = ls_malloc(sizeof(double) * (size_t)NPARAM, "test");
    int64_t k = 0;
    for (int i = 0; i < NP; i++) {
        for (int64_t j = 0; j < ls_tensor_numel(g[i]); j++) flat[k++] = ls_tensor_get_flat(g[i], j);
        if (keep) keep[i] = g[i];
        else ls_tensor_release(g[i]);
    }
    return flat;
}

/* H v through double backward, v given flat */
static double *hvp(const double *v)
{
    ls_tensor *g[NP];
    ls_free(flat_grad(true, g));
    ls_tensor *dot = NULL;
    int64_t k = 0;
    for (int i = 0; i < NP; i++) {
        ls_tensor *vi = ls_tensor_new(LS_F64, P[i]->ndim, P[i]->shape);
        memcpy(ls_tensor_data(vi), v + k, sizeof(double) * (size_t)ls_tensor_numel(vi));
        k += ls_tensor_numel(vi);
        ls_tensor *prod = ls_mul(g[i], vi);
        ls_tensor *s = ls_sum(prod, 0, NULL, false);
        ls_tensor *nd = dot ? ls_add(dot, s) : ls_tensor_retain(s);
        ls_tensor_release(dot);
        ls_tensor_release(s);
        ls_tensor_release(prod);
        ls_tensor_release(vi);
        ls_tensor_release(g[i]);
        dot = nd;
    }
    ls_tensor *hv[NP];
    ls_grad_opts o = {0};
    CHECK(ls_autograd_grad(1, &dot, NP, P, &o, hv) == LS_OK);
    ls_tensor_release(dot);
    double *out = ls_malloc(sizeof(double) * (size_t)NPARAM, "test");
    k = 0;
    for (int i = 0; i < NP; i++) {
        for (int64_t j = 0; j < ls_tensor_numel(hv[i]); j++) out[k++] = ls_tensor_get_flat(hv[i], j);
        ls_tensor_release(hv[i]);
    }
    return out;
}

static double *param_ptr(int64_t k)
{
    for (int i = 0; i < NP; i++) {
        if (k < ls_tensor_numel(P[i])) return (double *)ls_tensor_data(P[i]) + k;
        k -= ls_tensor_numel(P[i]);
    }
    return NULL;
}

static void test_hessian(void)
{
    int64_t n = NPARAM;
    double *H = ls_malloc(sizeof(double) * (size_t)(n * n), "test");
    double *e = ls_calloc(sizeof(double) * (size_t)n, "test");
    for (int64_t c = 0; c < n; c++) {   /* column c = H e_c */
        e[c] = 1;
        double *col = hvp(e);
        for (int64_t r = 0; r < n; r++) H[r * n + c] = col[r];
        ls_free(col);
        e[c] = 0;
    }
    double asym = 0, fd_err = 0, scale = 0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < n; c++) {
            asym = fmax(asym, fabs(H[r * n + c] - H[c * n + r]));
            scale = fmax(scale, fabs(H[r * n + c]));
        }
    printf("dense Hessian %lldx%lld: max |H - H^T| = %.3g, max |H| = %.3g\n", (long long)n,
           (long long)n, asym, scale);
    CHECK(asym <= 1e-10);
    CHECK(scale > 1e-3);   /* not trivially zero */
    /* finite differences of the gradient, column by column */
    const double h = 1e-5;
    for (int64_t c = 0; c < n; c++) {
        double *p = param_ptr(c), p0 = *p;
        *p = p0 + h;
        double *gp = flat_grad(false, NULL);
        *p = p0 - h;
        double *gm = flat_grad(false, NULL);
        *p = p0;
        for (int64_t r = 0; r < n; r++)
            fd_err = fmax(fd_err, fabs((gp[r] - gm[r]) / (2 * h) - H[r * n + c]));
        ls_free(gp);
        ls_free(gm);
    }
    printf("dense Hessian vs central differences of gradients: max error %.3g\n", fd_err);
    CHECK(fd_err <= 1e-7);
    /* a random-direction HVP equals H v */
    ls_rng r;
    ls_rng_init(&r, 7);
    double *v = ls_malloc(sizeof(double) * (size_t)n, "test");
    ls_rng_normal(&r, LS_F64, v, n, 0, 1);
    double *hv = hvp(v), err = 0;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < n; j++) s += H[i * n + j] * v[j];
        err = fmax(err, fabs(s - hv[i]));
    }
    CHECK(err <= 1e-12);
    ls_free(v);
    ls_free(hv);
    ls_free(H);
    ls_free(e);
}

static void test_accumulate_and_errors(void)
{
    /* backward() accumulates into .grad; a second call adds the same again */
    ls_tensor *l = loss_fn();
    ls_grad_opts acc = {.accumulate = true, .retain_graph = true};
    CHECK(ls_autograd_grad(1, &l, 0, NULL, &acc, NULL) == LS_OK);
    double g1 = ls_tensor_get_flat(P[0]->grad, 3);
    CHECK(ls_autograd_grad(1, &l, 0, NULL, &acc, NULL) == LS_OK);
    CHECK_NEAR(ls_tensor_get_flat(P[0]->grad, 3), 2 * g1, 1e-15);
    CHECK(P[0]->grad->grad_fn == NULL && !P[0]->grad->requires_grad);   /* detached */
    /* a backward without retain_graph frees the graph; a second one is an error, not a crash */
    acc.retain_graph = false;
    CHECK(ls_autograd_grad(1, &l, 0, NULL, &acc, NULL) == LS_OK);
    CHECK(ls_autograd_grad(1, &l, 0, NULL, &acc, NULL) == LS_ERR_STATE);
    CHECK(strstr(ls_error_message(), "already freed") != NULL);
    ls_tensor_release(l);
    for (int i = 0; i < NP; i++) { ls_tensor_release(P[i]->grad); P[i]->grad = NULL; }

    ls_grad_opts o = {0};
    ls_tensor *g[NP];
    /* non-scalar output without grad_outputs */
    ls_tensor *z = ls_matmul(X, P[0]);
    CHECK(ls_autograd_grad(1, &z, 1, &P[0], &o, g) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "grad: output 1 has shape [6x4]") != NULL);
    /* wrong grad_outputs shape */
    ls_tensor *bad = ls_tensor_zeros(LS_F64, 2, (int64_t[]){4, 6});
    ls_grad_opts ob = {.grad_outputs = &bad};
    CHECK(ls_autograd_grad(1, &z, 1, &P[0], &ob, g) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "grad_outputs[1] has shape [4x6]") != NULL);
    /* input not in the graph, then allowed */
    CHECK(ls_autograd_grad(1, &z, 1, &P[2], &(ls_grad_opts){.grad_outputs = &bad}, g) == LS_ERR_ARG);
    ls_tensor *ones = ls_tensor_full(LS_F64, 2, (int64_t[]){6, 4}, 1.0);
    ls_grad_opts ou = {.grad_outputs = &ones, .allow_unused = true, .retain_graph = true};
    ls_tensor *two[2] = {P[0], P[2]};
    CHECK(ls_autograd_grad(1, &z, 2, two, &ou, g) == LS_OK);
    CHECK(g[0] != NULL && g[1] == NULL);
    /* d(sum(X W))/dW = X^T 1 */
    double colsum = 0;
    for (int i = 0; i < 6; i++) colsum += ls_tensor_get(X, (int64_t[]){i, 2});
    CHECK_NEAR(ls_tensor_get(g[0], (int64_t[]){2, 1}), colsum, 1e-12);
    ls_grad_opts on = {.grad_outputs = &ones};
    CHECK(ls_autograd_grad(1, &z, 1, &P[2], &on, g + 1) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "not part of the graph") != NULL);
    ls_tensor_release(g[0]);
    ls_tensor_release(ones);
    ls_tensor_release(bad);
    ls_tensor_release(z);
    /* gradient w.r.t. an intermediate tensor */
    ls_tensor *h = ls_matmul(X, P[0]);
    ls_tensor *s = ls_sum(NULL, 0, NULL, false);   /* a failed input propagates as NULL */
    CHECK(s == NULL);
    ls_tensor *sq = ls_mul(h, h);
    ls_tensor *tot = ls_sum(sq, 0, NULL, false);
    ls_tensor *gh;
    CHECK(ls_autograd_grad(1, &tot, 1, &h, &o, &gh) == LS_OK);
    CHECK_NEAR(ls_tensor_get_flat(gh, 5), 2 * ls_tensor_get_flat(h, 5), 1e-12);
    ls_tensor_release(gh);
    ls_tensor_release(tot);
    ls_tensor_release(sq);
    ls_tensor_release(h);
    /* no_grad records nothing */
    bool prev = ls_set_grad_enabled(false);
    ls_tensor *ng = ls_matmul(X, P[0]);
    CHECK(ng->grad_fn == NULL && !ng->requires_grad);
    ls_tensor_release(ng);
    ls_set_grad_enabled(prev);
}

static bool all_zero(const ls_tensor *t, const ls_tensor *like)
{
    if (!t || t->ndim != like->ndim || t->dtype != like->dtype ||
        memcmp(t->shape, like->shape, sizeof(int64_t) * (size_t)t->ndim) != 0)
        return false;
    for (int64_t i = 0; i < ls_tensor_numel(t); i++)
        if (ls_tensor_get_flat(t, i) != 0.0) return false;
    return true;
}

/* relu_backward(g, x) is piecewise constant in x, and its rule gives LS_GRAD_ZERO for x: nothing
 * is allocated or added, but what is reached only through it still gets zeros (a requested input
 * directly, or through ops whose only gradient was that zero, or a leaf's .grad), never "not part
 * of the graph"; and where another path also arrives, the gradient is that path's alone. */
static void test_zero_gradients(void)
{
    size_t live = ls_alloc_live_bytes();
    ls_rng r;
    ls_rng_init(&r, 7);
    ls_tensor *a = randt(&r, 2, (int64_t[]){3, 4}, 1.0), *g = randt(&r, 2, (int64_t[]){3, 4}, 1.0);
    ls_requires_grad_(a, true);
    ls_requires_grad_(g, true);
    ls_tensor *x = ls_mul_scalar(a, 2.0);                 /* a node between a and the mask */
    ls_tensor *y = ls_relu_backward(g, x);
    ls_tmp tmp = {0};
    ls_tensor *s = ls_sum(ls_tmp_keep(&tmp, ls_mul(y, y)), 0, NULL, false);
    ls_tensor *gr[3] = {0};
    ls_grad_opts keep = {.retain_graph = true};
    /* d s / d x (requested, reached by the zero alone) and d s / d a (through mul_scalar) */
    CHECK(ls_autograd_grad(1, &s, 3, (ls_tensor *[]){x, a, g}, &keep, gr) == LS_OK);
    CHECK(all_zero(gr[0], x) && all_zero(gr[1], a));
    for (int64_t i = 0; i < 12; i++)   /* d s / d g = 2 y */
        CHECK_NEAR(ls_tensor_get_flat(gr[2], i), 2 * ls_tensor_get_flat(y, i), 1e-15);
    for (int k = 0; k < 3; k++) ls_tensor_release(gr[k]);
    /* backward(): the leaf a gets .grad = zeros, as for any gradient */
    ls_grad_opts acc = {.accumulate = true, .retain_graph = true};
    CHECK(ls_autograd_grad(1, &s, 0, NULL, &acc, NULL) == LS_OK);
    CHECK(all_zero(a->grad, a) && g->grad != NULL);
    /* x also feeds a relu: its gradient is relu's alone */
    ls_tensor *t = ls_add(s, ls_tmp_keep(&tmp, ls_sum(ls_tmp_keep(&tmp, ls_relu(x)), 0, NULL,
                                                      false)));
    CHECK(ls_autograd_grad(1, &t, 1, &x, &keep, gr) == LS_OK);
    for (int64_t i = 0; i < 12; i++)
        CHECK(ls_tensor_get_flat(gr[0], i) == (ls_tensor_get_flat(x, i) > 0 ? 1.0 : 0.0));
    ls_tensor_release(gr[0]);
    /* create_graph: the zero tensor a requested input gets is a plain tensor */
    ls_grad_opts cg = {.create_graph = true, .retain_graph = true};
    CHECK(ls_autograd_grad(1, &s, 1, &a, &cg, gr) == LS_OK);
    CHECK(all_zero(gr[0], a) && !gr[0]->requires_grad);
    ls_tensor_release(gr[0]);
    /* without retain_graph the zero path is freed like any other: a second pass is an error */
    CHECK(ls_autograd_grad(1, &s, 1, &a, &(ls_grad_opts){0}, gr) == LS_OK);
    ls_tensor_release(gr[0]);
    CHECK(ls_autograd_grad(1, &s, 1, &a, &(ls_grad_opts){0}, gr) == LS_ERR_STATE);
    ls_tmp_free(&tmp);
    ls_tensor_release(t);
    ls_tensor_release(s);
    ls_tensor_release(y);
    ls_tensor_release(x);
    ls_tensor_release(a->grad);
    ls_tensor_release(g->grad);
    a->grad = g->grad = NULL;
    ls_tensor_release(a);
    ls_tensor_release(g);
    CHECK(ls_alloc_live_bytes() == live);
}

static void test_memory_steady(void)
{
    size_t base = 0;
    for (int step = 0; step < 10000; step++) {
        ls_tensor *l = loss_fn();
        ls_tensor *g[NP];
        ls_grad_opts o = {0};
        if (ls_autograd_grad(1, &l, NP, P, &o, g) != LS_OK) { CHECK(0); break; }
        for (int i = 0; i < NP; i++) {   /* w -= 0.01 g, outside the graph */
            double *w = ls_tensor_data(P[i]);
            for (int64_t j = 0; j < ls_tensor_numel(g[i]); j++)
                w[j] -= 0.01 * ls_tensor_get_flat(g[i], j);
            ls_tensor_release(g[i]);
        }
        ls_tensor_release(l);
        if (step == 10) base = ls_alloc_live_bytes();
    }
    printf("live bytes after 10 steps %zu, after 10000 steps %zu\n", base, ls_alloc_live_bytes());
    CHECK(ls_alloc_live_bytes() == base);
}

/* A graph as long as a training run's (a million ops in a chain) is freed without recursion: each
 * release used to recurse into the inputs and overflowed the stack near 300 000 ops. */
static void test_long_graph_release(void)
{
    size_t live = ls_alloc_live_bytes();
    ls_tensor *x = ls_tensor_full(LS_F32, 1, (int64_t[]){1}, 1.0);
    ls_requires_grad_(x, true);
    ls_tensor *y = ls_tensor_retain(x);
    for (int i = 0; i < 1000000 && y; i++) {
        ls_tensor *z = ls_add_scalar(y, 1.0);
        ls_tensor_release(y);
        y = z;
    }
    CHECK(y && y->grad_fn && ls_tensor_get_flat(y, 0) == 1000001.0);
    ls_tensor_release(y);   /* frees the whole chain */
    ls_tensor_release(x);
    CHECK(ls_alloc_live_bytes() == live);
}

int main(void)
{
    size_t live0 = ls_alloc_live_bytes();
    setup();
    test_hessian();
    test_accumulate_and_errors();
    test_zero_gradients();
    test_memory_steady();
    test_long_graph_release();
    for (int i = 0; i < NP; i++) ls_tensor_release(P[i]);
    ls_tensor_release(X);
    ls_tensor_release(Y);
    CHECK(ls_alloc_live_bytes() == live0);
    return check_done("autograd");
}
