/* Optimizer kernels: SGD (plain, momentum, dampening, Nesterov, weight decay), Adam, AdamW and
 * AMSGrad against scalar reference formulas over several steps in f32 and f64; gradient clipping
 * by total norm (2, 1, 3 and inf norms, below and above max_norm, non-contiguous gradients, empty
 * lists, non-finite totals); 1 vs 2 threads bitwise identical on tensors spanning many chunks, and
 * the AVX-512 kernels bitwise identical to the baseline ones; the finiteness report of each update;
 * error messages naming the optimizer and the shapes; no leaked tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "optim/optim.h"
#include "tensor/tensor.h"

/* deterministic values in [-1, 1) from (seed, index) */
static double val(uint64_t seed, int64_t i)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull + 1;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return (double)(x >> 11) / 4503599627370496.0 - 1.0;   /* 2^52 */
}

static ls_tensor *filled(ls_dtype dt, int64_t n, uint64_t seed, double scale)
{
    ls_tensor *t = ls_tensor_new(dt, 1, &n);
    for (int64_t i = 0; i < n; i++) ls_tensor_set(t, &i, scale * val(seed, i));
    return t;
}

static double get(const ls_tensor *t, int64_t i) { return ls_tensor_get_flat(t, i); }

/* relative closeness: exact-order arithmetic in f64, a few ulps of f32 in f32 */
static double tol_for(ls_dtype dt) { return dt == LS_F64 ? 1e-14 : 2e-6; }

/* ---- SGD ---- */

/* The textbook SGD update of torch.optim.SGD, in double, for one element. */
static void sgd_ref(double *p, double g, double *buf, int step, const ls_sgd_config *c)
{
    double d = g + c->weight_decay * *p;
    if (c->momentum != 0.0) {
        if (step == 1) *buf = d;
        else *buf = c->momentum * *buf + (1.0 - c->dampening) * d;
        d = c->nesterov ? d + c->momentum * *buf : *buf;
    }
    *p -= c->lr * d;
}

static void sgd_case(ls_dtype dt, ls_sgd_config cfg)
{
    enum { N = 37, STEPS = 5 };
    ls_tensor *p = filled(dt, N, 1, 1.0);
    ls_tensor *buf = ls_tensor_zeros(dt, 1, (int64_t[]){N});
    double rp[N], rbuf[N] = {0};
    for (int64_t i = 0; i < N; i++) rp[i] = get(p, i);
    double worst = 0;
    for (int s = 1; s <= STEPS; s++) {
        ls_tensor *g = filled(dt, N, 100 + (uint64_t)s, 0.5);
        CHECK(ls_optim_sgd_step(p, g, cfg.momentum != 0 ? buf : NULL, s == 1, &cfg, NULL) == LS_OK);
        for (int64_t i = 0; i < N; i++) {
            sgd_ref(&rp[i], get(g, i), &rbuf[i], s, &cfg);
            double e = fabs(get(p, i) - rp[i]) / (1.0 + fabs(rp[i]));
            if (e > worst) worst = e;
        }
        ls_tensor_release(g);
    }
    CHECK_NEAR(worst, 0.0, tol_for(dt));
    CHECK(p->grad_fn == NULL);
    ls_tensor_release(p);
    ls_tensor_release(buf);
}

static void test_sgd(void)
{
    for (int k = 0; k < 2; k++) {
        ls_dtype dt = k ? LS_F64 : LS_F32;
        sgd_case(dt, (ls_sgd_config){.lr = 0.1});
        sgd_case(dt, (ls_sgd_config){.lr = 0.05, .momentum = 0.9});
        sgd_case(dt, (ls_sgd_config){.lr = 0.05, .momentum = 0.9, .nesterov = true});
        sgd_case(dt, (ls_sgd_config){.lr = 0.05, .momentum = 0.8, .dampening = 0.3});
        sgd_case(dt, (ls_sgd_config){.lr = 0.05, .weight_decay = 5e-2});
        sgd_case(dt, (ls_sgd_config){.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-2,
                                     .nesterov = true});
    }
    /* a hand-checked f64 case: p = 1, g = 2, lr 0.5, momentum 0.5, two steps
     * step 1: buf = 2, p = 1 - 0.5*2 = 0;  step 2: buf = 0.5*2 + 2 = 3, p = 0 - 1.5 = -1.5 */
    ls_tensor *p = ls_tensor_full(LS_F64, 1, (int64_t[]){1}, 1.0);
    ls_tensor *g = ls_tensor_full(LS_F64, 1, (int64_t[]){1}, 2.0);
    ls_tensor *b = ls_tensor_zeros(LS_F64, 1, (int64_t[]){1});
    ls_sgd_config c = {.lr = 0.5, .momentum = 0.5};
    CHECK(ls_optim_sgd_step(p, g, b, true, &c, NULL) == LS_OK);
    CHECK(get(p, 0) == 0.0 && get(b, 0) == 2.0);
    CHECK(ls_optim_sgd_step(p, g, b, false, &c, NULL) == LS_OK);
    CHECK(get(p, 0) == -1.5 && get(b, 0) == 3.0);
    ls_tensor_release(p);
    ls_tensor_release(g);
    ls_tensor_release(b);
}

/* ---- Adam / AdamW ---- */

static void adam_ref(double *p, double g, double *m, double *v, double *vmax, int t,
                     const ls_adam_config *c)
{
    if (c->decoupled_weight_decay) *p *= 1.0 - c->lr * c->weight_decay;
    else g += c->weight_decay * *p;
    *m = c->beta1 * *m + (1.0 - c->beta1) * g;
    *v = c->beta2 * *v + (1.0 - c->beta2) * g * g;
    double vv = *v;
    if (c->amsgrad) {
        *vmax = fmax(*vmax, *v);
        vv = *vmax;
    }
    double mhat_scale = 1.0 / (1.0 - pow(c->beta1, t));
    double denom = sqrt(vv) / sqrt(1.0 - pow(c->beta2, t)) + c->eps;
    *p -= c->lr * mhat_scale * *m / denom;
}

static void adam_case(ls_dtype dt, ls_adam_config cfg)
{
    enum { N = 29, STEPS = 6 };
    int64_t n = N;
    ls_tensor *p = filled(dt, N, 2, 1.0);
    ls_tensor *m = ls_tensor_zeros(dt, 1, &n), *v = ls_tensor_zeros(dt, 1, &n);
    ls_tensor *vmax = ls_tensor_zeros(dt, 1, &n);
    double rp[N], rm[N] = {0}, rv[N] = {0}, rvmax[N] = {0};
    for (int64_t i = 0; i < N; i++) rp[i] = get(p, i);
    double worst = 0;
    for (int s = 1; s <= STEPS; s++) {
        /* shrinking gradients make v decrease, so amsgrad's max matters */
        ls_tensor *g = filled(dt, N, 200 + (uint64_t)s, 1.0 / s);
        CHECK(ls_optim_adam_step(p, g, m, v, cfg.amsgrad ? vmax : NULL, s, &cfg, NULL) == LS_OK);
        for (int64_t i = 0; i < N; i++) {
            adam_ref(&rp[i], get(g, i), &rm[i], &rv[i], &rvmax[i], s, &cfg);
            double e = fabs(get(p, i) - rp[i]) / (1.0 + fabs(rp[i]));
            double ev = fabs(get(v, i) - rv[i]) / (1e-3 + fabs(rv[i]));
            if (e > worst) worst = e;
            if (ev > worst) worst = ev;
        }
        ls_tensor_release(g);
    }
    CHECK_NEAR(worst, 0.0, tol_for(dt));
    ls_tensor_release(p);
    ls_tensor_release(m);
    ls_tensor_release(v);
    ls_tensor_release(vmax);
}

static void test_adam(void)
{
    for (int k = 0; k < 2; k++) {
        ls_dtype dt = k ? LS_F64 : LS_F32;
        ls_adam_config base = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
        adam_case(dt, base);
        ls_adam_config c = base;
        c.weight_decay = 0.1;
        adam_case(dt, c);                       /* Adam, L2 in the gradient */
        c.amsgrad = true;
        adam_case(dt, c);                       /* AMSGrad */
        c.amsgrad = false;
        c.decoupled_weight_decay = true;
        adam_case(dt, c);                       /* AdamW */
        c.amsgrad = true;
        c.beta1 = 0.5;
        c.beta2 = 0.6;
        adam_case(dt, c);                       /* AdamW + AMSGrad, fast-moving averages */
    }
    /* Adam's first step moves every element by about lr (m/sqrt(v) = sign(g) after bias
     * correction) */
    ls_tensor *p = ls_tensor_zeros(LS_F64, 1, (int64_t[]){3});
    ls_tensor *g = ls_tensor_from_buffer(LS_F64, 1, (int64_t[]){3}, (double[]){3.0, -0.25, 0.0});
    ls_tensor *m = ls_tensor_zeros(LS_F64, 1, (int64_t[]){3});
    ls_tensor *v = ls_tensor_zeros(LS_F64, 1, (int64_t[]){3});
    ls_adam_config c = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    CHECK(ls_optim_adam_step(p, g, m, v, NULL, 1, &c, NULL) == LS_OK);
    CHECK_NEAR(get(p, 0), -0.1, 1e-8);
    CHECK_NEAR(get(p, 1), 0.1, 1e-7);
    CHECK(get(p, 2) == 0.0);
    ls_tensor_release(p);
    ls_tensor_release(g);
    ls_tensor_release(m);
    ls_tensor_release(v);
}

/* ---- clipping ---- */

static void test_clip(void)
{
    for (int k = 0; k < 2; k++) {
        ls_dtype dt = k ? LS_F64 : LS_F32;
        double tol = dt == LS_F64 ? 1e-13 : 1e-5;
        ls_tensor *a = filled(dt, 50, 3, 2.0), *b = filled(dt, 7, 4, 3.0);
        double a0[50], b0[7], sq = 0, l1 = 0, l3 = 0, linf = 0;
        for (int i = 0; i < 50; i++) a0[i] = get(a, i);
        for (int i = 0; i < 7; i++) b0[i] = get(b, i);
        for (int i = 0; i < 57; i++) {
            double x = i < 50 ? a0[i] : b0[i - 50];
            sq += x * x;
            l1 += fabs(x);
            l3 += pow(fabs(x), 3);
            linf = fmax(linf, fabs(x));
        }
        ls_tensor *gs[2] = {a, b};
        double total = -1;
        /* max_norm above the norm: total reported, nothing scaled */
        CHECK(ls_optim_clip_grad_norm(2, gs, 1e6, 2.0, false, &total) == LS_OK);
        CHECK_NEAR(total, sqrt(sq), tol * sqrt(sq));
        CHECK(get(a, 0) == a0[0] && get(b, 6) == b0[6]);
        CHECK(ls_optim_clip_grad_norm(2, gs, 1e6, 1.0, false, &total) == LS_OK);
        CHECK_NEAR(total, l1, tol * l1);
        CHECK(ls_optim_clip_grad_norm(2, gs, 1e6, 3.0, false, &total) == LS_OK);
        CHECK_NEAR(total, cbrt(l3), tol * cbrt(l3));
        CHECK(ls_optim_clip_grad_norm(2, gs, 1e6, INFINITY, false, &total) == LS_OK);
        CHECK(total == linf);
        /* below: every gradient scaled by max_norm / (total + 1e-6), and the new norm is ~max_norm */
        CHECK(ls_optim_clip_grad_norm(2, gs, 1.0, 2.0, false, &total) == LS_OK);
        double s = 1.0 / (sqrt(sq) + 1e-6), after = 0;
        for (int i = 0; i < 50; i++) {
            CHECK_NEAR(get(a, i), a0[i] * s, tol);
            after += get(a, i) * get(a, i);
        }
        for (int i = 0; i < 7; i++) {
            CHECK_NEAR(get(b, i), b0[i] * s, tol);
            after += get(b, i) * get(b, i);
        }
        CHECK_NEAR(sqrt(after), 1.0, 1e-5);
        ls_tensor_release(a);
        ls_tensor_release(b);
    }
    /* a non-contiguous gradient (a transposed view) is measured and scaled in place */
    ls_tensor *m = ls_tensor_from_buffer(LS_F64, 2, (int64_t[]){2, 2}, (double[]){3, 0, 4, 0});
    ls_tensor *mt = ls_view_transpose(m, 0, 1);
    double total;
    CHECK(!ls_tensor_is_contiguous(mt));
    CHECK(ls_optim_clip_grad_norm(1, &mt, 1.0, 2.0, false, &total) == LS_OK);
    CHECK_NEAR(total, 5.0, 1e-15);
    CHECK_NEAR(get(m, 0), 3.0 / (5.0 + 1e-6), 1e-15);
    CHECK_NEAR(get(m, 2), 4.0 / (5.0 + 1e-6), 1e-15);
    ls_tensor_release(mt);
    ls_tensor_release(m);
    /* no gradients: total 0 */
    total = -1;
    CHECK(ls_optim_clip_grad_norm(0, NULL, 1.0, 2.0, false, &total) == LS_OK);
    CHECK(total == 0.0);
    /* non-finite total: scaled to NaN as torch does, or refused with error_if_nonfinite */
    ls_tensor *x = ls_tensor_from_buffer(LS_F64, 1, (int64_t[]){2}, (double[]){INFINITY, 1.0});
    CHECK(ls_optim_clip_grad_norm(1, &x, 1.0, 2.0, true, &total) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "non-finite") != NULL);
    CHECK(get(x, 1) == 1.0);
    CHECK(ls_optim_clip_grad_norm(1, &x, 1.0, 2.0, false, &total) == LS_OK);
    CHECK(isinf(total) && get(x, 1) == 0.0);
    ls_tensor_release(x);
    /* bad norm types and max_norm */
    ls_tensor *y = ls_tensor_zeros(LS_F64, 1, (int64_t[]){2});
    CHECK(ls_optim_clip_grad_norm(1, &y, 1.0, 0.0, false, &total) == LS_ERR_ARG);
    CHECK(strstr(ls_error_message(), "norm_type") != NULL);
    CHECK(ls_optim_clip_grad_norm(1, &y, -1.0, 2.0, false, &total) == LS_ERR_ARG);
    ls_tensor_release(y);
}

/* ---- determinism across thread counts ---- */

typedef struct run_out {
    ls_tensor *p_sgd, *p_adam, *g_clip;
    double total;
} run_out;

static run_out run_all(ls_dtype dt, int threads)
{
    ls_set_threads(threads);
    const int64_t n = 100003;   /* 7 chunks of 16384, the last one short */
    run_out o;
    o.p_sgd = filled(dt, n, 5, 1.0);
    ls_tensor *buf = ls_tensor_zeros(dt, 1, &n);
    ls_sgd_config sc = {.lr = 0.03, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true};
    o.p_adam = filled(dt, n, 6, 1.0);
    ls_tensor *m = ls_tensor_zeros(dt, 1, &n), *v = ls_tensor_zeros(dt, 1, &n);
    ls_tensor *vm = ls_tensor_zeros(dt, 1, &n);
    ls_adam_config ac = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
                         .amsgrad = true, .decoupled_weight_decay = true};
    for (int s = 1; s <= 3; s++) {
        ls_tensor *g = filled(dt, n, 300 + (uint64_t)s, 1.0);
        CHECK(ls_optim_sgd_step(o.p_sgd, g, buf, s == 1, &sc, NULL) == LS_OK);
        CHECK(ls_optim_adam_step(o.p_adam, g, m, v, vm, s, &ac, NULL) == LS_OK);
        ls_tensor_release(g);
    }
    o.g_clip = filled(dt, n, 7, 1.0);
    ls_tensor *g2 = filled(dt, 1000, 8, 1.0);
    ls_tensor *gs[2] = {o.g_clip, g2};
    CHECK(ls_optim_clip_grad_norm(2, gs, 10.0, 2.0, false, &o.total) == LS_OK);
    ls_tensor_release(g2);
    ls_tensor_release(buf);
    ls_tensor_release(m);
    ls_tensor_release(v);
    ls_tensor_release(vm);
    return o;
}

static bool same_bits(const ls_tensor *a, const ls_tensor *b)
{
    return memcmp(ls_tensor_data(a), ls_tensor_data(b),
                  (size_t)ls_tensor_numel(a) * ls_dtype_size(a->dtype)) == 0;
}

static void test_threads(void)
{
    int saved = ls_get_threads();
    for (int k = 0; k < 2; k++) {
        ls_dtype dt = k ? LS_F64 : LS_F32;
        run_out one = run_all(dt, 1), two = run_all(dt, 2);
        CHECK(same_bits(one.p_sgd, two.p_sgd));
        CHECK(same_bits(one.p_adam, two.p_adam));
        CHECK(same_bits(one.g_clip, two.g_clip));
        CHECK(memcmp(&one.total, &two.total, sizeof(double)) == 0);
        CHECK(one.total > 10.0);   /* so the clip actually scaled */
        ls_tensor_release(one.p_sgd);
        ls_tensor_release(one.p_adam);
        ls_tensor_release(one.g_clip);
        ls_tensor_release(two.p_sgd);
        ls_tensor_release(two.p_adam);
        ls_tensor_release(two.g_clip);
    }
    ls_set_threads(saved);
}

/* ---- errors ---- */

static bool msg_has(const char *a, const char *b)
{
    const char *m = ls_error_message();
    bool ok = strstr(m, a) != NULL && (!b || strstr(m, b) != NULL);
    if (!ok) fprintf(stderr, "unexpected message: %s\n", m);
    return ok;
}

static void test_errors(void)
{
    ls_tensor *p = ls_tensor_zeros(LS_F64, 2, (int64_t[]){3, 4});
    ls_tensor *g_bad = ls_tensor_zeros(LS_F64, 2, (int64_t[]){4, 3});
    ls_tensor *g_f32 = ls_tensor_zeros(LS_F32, 2, (int64_t[]){3, 4});
    ls_tensor *g = ls_tensor_zeros(LS_F64, 2, (int64_t[]){3, 4});
    ls_tensor *s_bad = ls_tensor_zeros(LS_F64, 1, (int64_t[]){12});
    ls_tensor *s = ls_tensor_zeros(LS_F64, 2, (int64_t[]){3, 4});
    ls_tensor *idx = ls_tensor_zeros(LS_I64, 2, (int64_t[]){3, 4});
    ls_tensor *pt = ls_view_transpose(p, 0, 1);
    ls_sgd_config sc = {.lr = 0.1, .momentum = 0.9};
    ls_adam_config ac = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};

    CHECK(ls_optim_sgd_step(p, g_bad, s, true, &sc, NULL) == LS_ERR_ARG);
    CHECK(msg_has("sgd: gradient shape [4x3] does not match parameter shape [3x4]", NULL));
    CHECK(ls_optim_sgd_step(p, g_f32, s, true, &sc, NULL) == LS_ERR_ARG);
    CHECK(msg_has("sgd:", "f32"));
    CHECK(ls_optim_sgd_step(p, g, s_bad, true, &sc, NULL) == LS_ERR_ARG);
    CHECK(msg_has("sgd: momentum buffer shape [12]", "[3x4]"));
    CHECK(ls_optim_sgd_step(p, g, NULL, true, &sc, NULL) == LS_ERR_ARG);
    CHECK(msg_has("sgd: momentum buffer is missing", NULL));
    CHECK(ls_optim_sgd_step(pt, g_bad, s_bad, true, &sc, NULL) == LS_ERR_ARG);
    CHECK(msg_has("sgd: parameter [4x3] is not contiguous", NULL));
    CHECK(ls_optim_sgd_step(idx, g, s, true, &sc, NULL) == LS_ERR_ARG);
    CHECK(msg_has("sgd:", "i64"));
    CHECK(ls_optim_sgd_step(p, g, s, true, &(ls_sgd_config){.lr = -1}, NULL) == LS_ERR_ARG);
    CHECK(msg_has("sgd: invalid learning rate", NULL));
    CHECK(ls_optim_sgd_step(p, g, s, true, &(ls_sgd_config){.lr = 1, .nesterov = true}, NULL) ==
          LS_ERR_ARG);
    CHECK(msg_has("Nesterov", NULL));

    CHECK(ls_optim_adam_step(p, g_bad, s, s, NULL, 1, &ac, NULL) == LS_ERR_ARG);
    CHECK(msg_has("adam: gradient shape [4x3] does not match parameter shape [3x4]", NULL));
    CHECK(ls_optim_adam_step(p, g, s_bad, s, NULL, 1, &ac, NULL) == LS_ERR_ARG);
    CHECK(msg_has("adam: exp_avg shape [12]", NULL));
    ac.decoupled_weight_decay = true;
    CHECK(ls_optim_adam_step(p, g, s, s_bad, NULL, 1, &ac, NULL) == LS_ERR_ARG);
    CHECK(msg_has("adamw: exp_avg_sq shape [12]", NULL));
    ac.amsgrad = true;
    CHECK(ls_optim_adam_step(p, g, s, s, NULL, 1, &ac, NULL) == LS_ERR_ARG);
    CHECK(msg_has("adamw: max_exp_avg_sq is missing", NULL));
    CHECK(ls_optim_adam_step(p, g, s, s, s, 0, &ac, NULL) == LS_ERR_ARG);
    CHECK(msg_has("adamw: step count 0", NULL));
    ac.beta2 = 1.0;
    CHECK(ls_optim_adam_step(p, g, s, s, s, 1, &ac, NULL) == LS_ERR_ARG);
    CHECK(msg_has("adamw: invalid beta parameter at index 2", NULL));

    ls_tensor *gi = idx;
    double total;
    CHECK(ls_optim_clip_grad_norm(1, &gi, 1.0, 2.0, false, &total) == LS_ERR_ARG);
    CHECK(msg_has("clip_grad_norm: gradient 1", "i64"));

    /* nothing was modified by the failed calls */
    CHECK(get(p, 0) == 0.0 && get(s, 0) == 0.0);
    ls_tensor *all[] = {p, g_bad, g_f32, g, s_bad, s, idx, pt};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ls_tensor_release(all[i]);
}

/* ---- the finiteness report: every updated entry is checked as it is written ---- */

#define LS_TEST_GRAIN 16384   /* optim.c's chunk length (LS_OPTIM_GRAIN) */

/* One step of SGD (momentum, weight decay) and one of Adam on a parameter of n entries that spans
 * several chunks, with the entry `at` of the parameter (or of the gradient) set to `bad`. */
static void finite_case(ls_dtype dt, int64_t n, int64_t at, double bad, bool in_grad, bool expect)
{
    for (int kind = 0; kind < 2; kind++) {
        ls_tensor *p = ls_tensor_full(dt, 1, (int64_t[]){n}, 0.5);
        ls_tensor *g = ls_tensor_full(dt, 1, (int64_t[]){n}, -0.25);
        ls_tensor *a = ls_tensor_zeros(dt, 1, (int64_t[]){n});
        ls_tensor *b = ls_tensor_zeros(dt, 1, (int64_t[]){n});
        if (at >= 0) ls_tensor_set(in_grad ? g : p, &at, bad);
        bool finite = !expect;
        if (kind == 0) {
            ls_sgd_config c = {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3};
            CHECK(ls_optim_sgd_step(p, g, a, true, &c, &finite) == LS_OK);
        } else {
            ls_adam_config c = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
            CHECK(ls_optim_adam_step(p, g, a, b, NULL, 1, &c, &finite) == LS_OK);
        }
        CHECK(finite == expect);
        ls_tensor_release(p);
        ls_tensor_release(g);
        ls_tensor_release(a);
        ls_tensor_release(b);
    }
}

static void test_finite(void)
{
    int saved = ls_get_threads();
    const int64_t n = 3 * LS_TEST_GRAIN + 5;   /* four chunks */
    for (int threads = 1; threads <= 2; threads++) {
        ls_set_threads(threads);
        for (int d = 0; d < 2; d++) {
            ls_dtype dt = d ? LS_F64 : LS_F32;
            finite_case(dt, n, -1, 0, false, true);
            finite_case(dt, 7, -1, 0, false, true);
            int64_t spots[] = {0, LS_TEST_GRAIN - 1, LS_TEST_GRAIN, n - 1};
            for (int i = 0; i < 4; i++) {
                finite_case(dt, n, spots[i], NAN, true, false);
                finite_case(dt, n, spots[i], INFINITY, true, false);
                finite_case(dt, n, spots[i], -INFINITY, false, false);
                finite_case(dt, n, spots[i], NAN, false, false);
                finite_case(dt, n, spots[i], 1e30, false, true);   /* large but finite */
            }
        }
    }
    /* an update that overflows: finite inputs, an infinite result */
    ls_tensor *p = ls_tensor_full(LS_F32, 1, (int64_t[]){3}, 3e38);
    ls_tensor *g = ls_tensor_full(LS_F32, 1, (int64_t[]){3}, -3e38);
    bool finite = true;
    CHECK(ls_optim_sgd_step(p, g, NULL, true, &(ls_sgd_config){.lr = 1.0}, &finite) == LS_OK);
    CHECK(!finite && isinf(get(p, 0)));
    ls_tensor_release(p);
    ls_tensor_release(g);
    ls_set_threads(saved);
}

/* ---- the AVX-512 and the baseline copies of the kernels give the same bits ---- */

/* The baseline run happens in a child process (LANDSCAPE_SIMD=baseline is read when the first
 * kernel runs, so this test runs first), which sends its parameters back through a pipe. */
static void test_simd_paths(void)
{
    int fd[2];
    CHECK(pipe(fd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        setenv("LANDSCAPE_SIMD", "baseline", 1);
        for (int k = 0; k < 2; k++) {
            run_out o = run_all(k ? LS_F64 : LS_F32, 1);
            const ls_tensor *ts[2] = {o.p_sgd, o.p_adam};
            for (int q = 0; q < 2; q++) {
                size_t bytes = (size_t)ls_tensor_numel(ts[q]) * ls_dtype_size(ts[q]->dtype);
                if (write(fd[1], ls_tensor_data(ts[q]), bytes) != (ssize_t)bytes) _exit(1);
            }
        }
        _exit(0);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "rb");
    for (int k = 0; k < 2; k++) {
        run_out o = run_all(k ? LS_F64 : LS_F32, 1);
        ls_tensor *ts[2] = {o.p_sgd, o.p_adam};
        for (int q = 0; q < 2; q++) {
            size_t bytes = (size_t)ls_tensor_numel(ts[q]) * ls_dtype_size(ts[q]->dtype);
            char *base = malloc(bytes);
            CHECK(base && in && fread(base, 1, bytes, in) == bytes);
            CHECK(base && memcmp(base, ls_tensor_data(ts[q]), bytes) == 0);
            free(base);
        }
        ls_tensor_release(o.p_sgd);
        ls_tensor_release(o.p_adam);
        ls_tensor_release(o.g_clip);
    }
    if (in) fclose(in);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    test_simd_paths();   /* first: the kernels' choice is made once, at their first call */
    size_t live0 = ls_alloc_live_bytes();
    test_sgd();
    test_adam();
    test_clip();
    test_threads();
    test_errors();
    test_finite();
    CHECK(ls_alloc_live_bytes() == live0);   /* every tensor above was released */
    return check_done("optim");
}
