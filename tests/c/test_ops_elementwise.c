/* Elementwise ops (engine/ops/elementwise.c): every op against a naive double-precision reference
 * in both dtypes, on contiguous, transposed, narrowed (non-contiguous), broadcast, 0-d and empty
 * inputs, plus sizes large enough to be split over the thread pool; special values (overflow in
 * sigmoid and softplus, NaN propagation); error messages; and the gradient conventions the
 * registry-driven gradient check cannot see because its samples avoid them (ties, clamp boundaries,
 * zeros).
 *
 * Tolerances: f64 results must match the reference to 1e-12 relative (libm in both, differing only
 * in formula rounding); f32 results to 1e-6 relative. exp, tanh, sigmoid and softplus are the
 * engine's own vectorised kernels: sweeps over dense grids of inputs (f32) and many random ones
 * (f64, against long double) bound their error in ulp, once with the default kernels and once (in a
 * child process) with LANDSCAPE_SIMD=baseline. */
#define _GNU_SOURCE /* setenv */
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "ops/ops.h"

static const ls_dtype dtypes[2] = {LS_F32, LS_F64};

/* ---- inputs ---- */

enum { REAL, POSITIVE, AWAY, SMALLINT };   /* U(-2,2), U(0.1,3), +-U(0.3,2), {-1,0,1} */

static double draw(int kind)
{
    double u = check_uniform();
    switch (kind) {
    case POSITIVE: return 0.1 + 2.9 * u;
    case AWAY: return (check_uniform() < 0.5 ? -1 : 1) * (0.3 + 1.7 * u);
    case SMALLINT: return (double)((int)(u * 3.0) - 1);
    default: return -2.0 + 4.0 * u;
    }
}

/* A contiguous tensor of random values. */
static ls_tensor *make(ls_dtype d, int ndim, const int64_t *shape, int kind)
{
    ls_tensor *t = ls_tensor_new(d, ndim, shape);
    int64_t n = ls_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = draw(kind);
        if (d == LS_F32) ((float *)ls_tensor_data(t))[i] = (float)v;
        else ((double *)ls_tensor_data(t))[i] = v;
    }
    return t;
}

/* Layouts of an input of a given 2-d shape: contiguous, a transposed view, a narrowed view. */
enum { CONTIG, TRANSPOSED, NARROWED, NLAYOUTS };
static ls_tensor *make_layout(ls_dtype d, int64_t r, int64_t c, int kind, int layout)
{
    if (layout == CONTIG) return make(d, 2, (int64_t[]){r, c}, kind);
    ls_tensor *base, *v;
    if (layout == TRANSPOSED) {
        base = make(d, 2, (int64_t[]){c, r}, kind);
        v = ls_view_transpose(base, 0, 1);
    } else {
        base = make(d, 2, (int64_t[]){r, c + 3}, kind);
        v = ls_view_narrow(base, 1, 2, c);
    }
    ls_tensor_release(base);
    return v;
}

/* Element of `t` broadcast to `shape` at flat position i. */
static double bget(const ls_tensor *t, int ndim, const int64_t *shape, int64_t i)
{
    int64_t idx[LS_MAX_DIMS] = {0}, tidx[LS_MAX_DIMS] = {0};
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    for (int d = 0; d < t->ndim; d++) {
        int od = d + ndim - t->ndim;
        tidx[d] = t->shape[d] == 1 ? 0 : idx[od];
    }
    return ls_tensor_get(t, tidx);
}

static double tol_for(ls_dtype d, double ref)
{
    double scale = fabs(ref) > 1.0 ? fabs(ref) : 1.0;
    return (d == LS_F32 ? 1e-6 : 1e-12) * scale;
}

/* Compare out with ref over all elements; returns the number of mismatches (each also CHECKed). */
static int same_value(double got, double want, ls_dtype d)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= tol_for(d, want);
}

/* ---- unary ---- */

static double ref_neg(double x) { return -x; }
static double ref_sign(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x; }
static double ref_relu(double x) { return x > 0 ? x : 0.0; }
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_softplus(double x) { return log(1.0 + exp(x)); }

typedef struct {
    const char *name;
    ls_tensor *(*fn)(ls_tensor *);
    double (*ref)(double);
    int kind;
} unary_case;

static const unary_case unary_cases[] = {
    {"neg", ls_neg, ref_neg, REAL},         {"exp", ls_exp, exp, REAL},
    {"log", ls_log, log, POSITIVE},         {"sqrt", ls_sqrt, sqrt, POSITIVE},
    {"abs", ls_abs, fabs, REAL},            {"sign", ls_sign, ref_sign, SMALLINT},
    {"relu", ls_relu, ref_relu, REAL},      {"tanh", ls_tanh, tanh, REAL},
    {"sigmoid", ls_sigmoid, ref_sigmoid, REAL}, {"softplus", ls_softplus, ref_softplus, REAL},
};
#define N_UNARY (int)(sizeof unary_cases / sizeof unary_cases[0])

static void check_unary_on(const unary_case *uc, ls_tensor *x)
{
    ls_tensor *y = uc->fn(x);
    CHECK(y != NULL);
    if (!y) {
        fprintf(stderr, "  %s: %s\n", uc->name, ls_error_message());
        return;
    }
    CHECK(y->dtype == x->dtype && y->ndim == x->ndim);
    CHECK(memcmp(y->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) == 0);
    /* contiguous, or x's own dense layout (test_output_layout) */
    CHECK(ls_tensor_is_contiguous(y) ||
          memcmp(y->stride, x->stride, sizeof(int64_t) * (size_t)x->ndim) == 0);
    int64_t n = ls_tensor_numel(x);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = uc->ref(ls_tensor_get_flat(x, i));
        if (!same_value(ls_tensor_get_flat(y, i), want, x->dtype) && bad++ < 3)
            fprintf(stderr, "  %s(%s) at %lld: got %.9g want %.9g\n", uc->name,
                    ls_dtype_name(x->dtype), (long long)i, ls_tensor_get_flat(y, i), want);
    }
    CHECK(bad == 0);
    ls_tensor_release(y);
}

static void test_unary(void)
{
    for (int u = 0; u < N_UNARY; u++)
        for (int di = 0; di < 2; di++) {
            const unary_case *uc = &unary_cases[u];
            ls_dtype d = dtypes[di];
            for (int layout = 0; layout < NLAYOUTS; layout++) {
                ls_tensor *x = make_layout(d, 5, 7, uc->kind, layout);
                check_unary_on(uc, x);
                ls_tensor_release(x);
            }
            ls_tensor *x0 = make(d, 0, NULL, uc->kind);                           /* 0-d */
            ls_tensor *xe = make(d, 2, (int64_t[]){0, 3}, uc->kind);              /* empty */
            ls_tensor *xl = make(d, 2, (int64_t[]){300, 301}, uc->kind);          /* > 1 chunk */
            check_unary_on(uc, x0);
            check_unary_on(uc, xe);
            check_unary_on(uc, xl);
            ls_tensor_release(x0);
            ls_tensor_release(xe);
            ls_tensor_release(xl);
        }
}

/* ---- binary ---- */

static double ref_add(double a, double b) { return a + b; }
static double ref_sub(double a, double b) { return a - b; }
static double ref_mul(double a, double b) { return a * b; }
static double ref_div(double a, double b) { return a / b; }
static double ref_min(double a, double b) { return a < b ? a : b; }
static double ref_max(double a, double b) { return a > b ? a : b; }
static double ref_eq(double a, double b) { return a == b; }
static double ref_ne(double a, double b) { return a != b; }
static double ref_lt(double a, double b) { return a < b; }
static double ref_le(double a, double b) { return a <= b; }
static double ref_gt(double a, double b) { return a > b; }
static double ref_ge(double a, double b) { return a >= b; }

typedef struct {
    const char *name;
    ls_tensor *(*fn)(ls_tensor *, ls_tensor *);
    double (*ref)(double, double);
    int kind_a, kind_b;
} binary_case;

static const binary_case binary_cases[] = {
    {"add", ls_add, ref_add, REAL, REAL},          {"sub", ls_sub, ref_sub, REAL, REAL},
    {"mul", ls_mul, ref_mul, REAL, REAL},          {"div", ls_div, ref_div, REAL, AWAY},
    {"pow", ls_pow, pow, POSITIVE, REAL},          {"minimum", ls_minimum, ref_min, SMALLINT, REAL},
    {"maximum", ls_maximum, ref_max, REAL, SMALLINT}, {"eq", ls_eq, ref_eq, SMALLINT, SMALLINT},
    {"ne", ls_ne, ref_ne, SMALLINT, SMALLINT},     {"lt", ls_lt, ref_lt, SMALLINT, SMALLINT},
    {"le", ls_le, ref_le, SMALLINT, SMALLINT},     {"gt", ls_gt, ref_gt, SMALLINT, SMALLINT},
    {"ge", ls_ge, ref_ge, SMALLINT, SMALLINT},
};
#define N_BINARY (int)(sizeof binary_cases / sizeof binary_cases[0])

static void check_binary_on(const binary_case *bc, ls_tensor *a, ls_tensor *b, int ndim,
                            const int64_t *shape)
{
    ls_tensor *y = bc->fn(a, b);
    CHECK(y != NULL);
    if (!y) {
        fprintf(stderr, "  %s: %s\n", bc->name, ls_error_message());
        return;
    }
    CHECK(y->dtype == a->dtype && y->ndim == ndim);
    CHECK(memcmp(y->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0);
    int64_t n = ls_tensor_numel(y);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = bc->ref(bget(a, ndim, shape, i), bget(b, ndim, shape, i));
        if (!same_value(ls_tensor_get_flat(y, i), want, a->dtype) && bad++ < 3)
            fprintf(stderr, "  %s(%s %s, %s) at %lld: got %.9g want %.9g\n", bc->name,
                    ls_dtype_name(a->dtype), ls_tensor_shape_str(a), ls_tensor_shape_str(b),
                    (long long)i, ls_tensor_get_flat(y, i), want);
    }
    CHECK(bad == 0);
    ls_tensor_release(y);
}

/* Broadcast pairs: {ndim_a, shape_a, ndim_b, shape_b, ndim_out, shape_out}. */
typedef struct {
    int na;
    int64_t sa[3];
    int nb;
    int64_t sb[3];
    int no;
    int64_t so[3];
} bcast_case;
static const bcast_case bcasts[] = {
    {2, {3, 1}, 2, {1, 4}, 2, {3, 4}},      {2, {2, 3}, 1, {3}, 2, {2, 3}},
    {1, {3}, 2, {2, 3}, 2, {2, 3}},         {0, {0}, 2, {2, 2}, 2, {2, 2}},
    {2, {2, 2}, 0, {0}, 2, {2, 2}},         {0, {0}, 0, {0}, 0, {0}},
    {2, {0, 3}, 1, {3}, 2, {0, 3}},         {3, {2, 1, 3}, 2, {4, 1}, 3, {2, 4, 3}},
    {2, {300, 257}, 1, {257}, 2, {300, 257}}, {2, {300, 257}, 0, {0}, 2, {300, 257}},
    {0, {0}, 2, {300, 257}, 2, {300, 257}}, {2, {300, 1}, 2, {300, 257}, 2, {300, 257}},
    {2, {300, 257}, 2, {300, 257}, 2, {300, 257}},
};

static void test_binary(void)
{
    for (int k = 0; k < N_BINARY; k++)
        for (int di = 0; di < 2; di++) {
            const binary_case *bc = &binary_cases[k];
            ls_dtype d = dtypes[di];
            /* every pair of layouts of a [5x7] operand */
            for (int la = 0; la < NLAYOUTS; la++)
                for (int lb = 0; lb < NLAYOUTS; lb++) {
                    ls_tensor *a = make_layout(d, 5, 7, bc->kind_a, la);
                    ls_tensor *b = make_layout(d, 5, 7, bc->kind_b, lb);
                    check_binary_on(bc, a, b, 2, (int64_t[]){5, 7});
                    ls_tensor_release(a);
                    ls_tensor_release(b);
                }
            for (size_t c = 0; c < sizeof bcasts / sizeof bcasts[0]; c++) {
                const bcast_case *bk = &bcasts[c];
                ls_tensor *a = make(d, bk->na, bk->sa, bc->kind_a);
                ls_tensor *b = make(d, bk->nb, bk->sb, bc->kind_b);
                check_binary_on(bc, a, b, bk->no, bk->so);
                ls_tensor_release(a);
                ls_tensor_release(b);
            }
            /* a transposed operand against a broadcast row */
            ls_tensor *a = make_layout(d, 6, 5, bc->kind_a, TRANSPOSED);
            ls_tensor *b = make(d, 1, (int64_t[]){5}, bc->kind_b);
            check_binary_on(bc, a, b, 2, (int64_t[]){6, 5});
            check_binary_on(bc, b, a, 2, (int64_t[]){6, 5});
            ls_tensor_release(a);
            ls_tensor_release(b);
        }
}

/* The result's layout: that of the inputs when all have one shape and one dense layout (a
 * transposed matrix, a permuted 3-d tensor), else contiguous. Values are checked per layout above. */
static void test_output_layout(void)
{
    ls_tensor *a = make_layout(LS_F64, 5, 7, 0, TRANSPOSED), *b = make_layout(LS_F64, 5, 7, 0, TRANSPOSED);
    ls_tensor *c = make_layout(LS_F64, 5, 7, 0, CONTIG), *n = make_layout(LS_F64, 5, 7, 0, NARROWED);
    ls_tensor *ab = ls_add(a, b), *ac = ls_add(a, c), *ea = ls_exp(a), *en = ls_exp(n);
    CHECK(ab && ab->stride[0] == 1 && ab->stride[1] == 5);
    CHECK(ea && ea->stride[0] == 1 && ea->stride[1] == 5);
    CHECK(ac && ac->stride[0] == 7 && ac->stride[1] == 1);   /* mixed layouts: contiguous */
    CHECK(en && en->stride[0] == 7 && en->stride[1] == 1);   /* not dense: contiguous */
    int64_t i2[2] = {3, 6};
    CHECK(ab && ls_tensor_get(ab, i2) == ls_tensor_get(a, i2) + ls_tensor_get(b, i2));
    ls_tensor *base = make(LS_F32, 3, (int64_t[]){4, 1, 6}, 0);
    ls_tensor *p = ls_view_permute(base, (int[]){2, 0, 1});   /* [6, 4, 1], strides (1, 6, any) */
    ls_tensor *pp = ls_mul(p, p);
    CHECK(pp && pp->stride[0] == 1 && pp->stride[1] == 6);
    int64_t i3[3] = {5, 2, 0};
    CHECK(pp && ls_tensor_get(pp, i3) == (double)((float)ls_tensor_get(p, i3) * (float)ls_tensor_get(p, i3)));
    ls_tensor *row = make(LS_F64, 1, (int64_t[]){7}, 0), *ar = ls_add(a, row);
    CHECK(ar && ar->stride[0] == 7 && ar->stride[1] == 1);   /* broadcast: contiguous */
    ls_tensor *ts[] = {a, b, c, n, ab, ac, ea, en, base, p, pp, row, ar};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) ls_tensor_release(ts[i]);
}

/* pow's scalar-exponent fast paths (2, 1, -1) and the general path agree with libm pow. */
static void test_pow_scalar(void)
{
    static const double exps[] = {2.0, 1.0, -1.0, 0.5, 3.0, 0.0, -2.5};
    for (int di = 0; di < 2; di++)
        for (size_t e = 0; e < sizeof exps / sizeof exps[0]; e++) {
            ls_tensor *x = make(dtypes[di], 2, (int64_t[]){40, 1001}, POSITIVE);
            ls_tensor *y = ls_pow_scalar(x, exps[e]);
            CHECK(y != NULL);
            int bad = 0;
            for (int64_t i = 0; y && i < ls_tensor_numel(x); i++) {
                double want = pow(ls_tensor_get_flat(x, i), exps[e]);
                bad += !same_value(ls_tensor_get_flat(y, i), want, x->dtype);
            }
            CHECK(bad == 0);
            ls_tensor_release(x);
            ls_tensor_release(y);
        }
}

static void test_scalar_wrappers(void)
{
    for (int di = 0; di < 2; di++) {
        ls_tensor *x = make(dtypes[di], 1, (int64_t[]){7}, REAL);
        ls_tensor *a = ls_add_scalar(x, 2.5), *m = ls_mul_scalar(x, -3.0);
        CHECK(a && m && a->dtype == x->dtype && m->ndim == 1 && m->shape[0] == 7);
        for (int64_t i = 0; a && m && i < 7; i++) {
            double v = ls_tensor_get_flat(x, i);
            CHECK_NEAR(ls_tensor_get_flat(a, i), v + 2.5, tol_for(x->dtype, v + 2.5));
            CHECK_NEAR(ls_tensor_get_flat(m, i), v * -3.0, tol_for(x->dtype, v * 3.0));
        }
        ls_tensor_release(a);
        ls_tensor_release(m);
        ls_tensor_release(x);
    }
    CHECK(ls_add_scalar(NULL, 1.0) == NULL);
    CHECK(ls_mul_scalar(NULL, 1.0) == NULL);
    CHECK(ls_pow_scalar(NULL, 2.0) == NULL);
}

/* ---- the engine's exp, tanh, sigmoid and softplus kernels: error in ulp over sweeps ---- */

/* |got - want| in units of the spacing of f32 numbers at want (2^-149 in the subnormal range). */
static double ulps(float got, double want)
{
    if (isnan(want)) return isnan(got) ? 0.0 : INFINITY;
    if (isinf((float)want) || isinf(got))   /* overflow: want rounds to inf in f32 */
        return got == (float)want ? 0.0 : INFINITY;
    int e;
    frexp(want, &e);
    double spacing = ldexp(1.0, (e - 24 < -149) ? -149 : e - 24);
    return fabs((double)got - want) / spacing;
}

static double ref_softplus_stable(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static void test_f32_accuracy(void)
{
    /* every 1021st f32 in [0, 110], both signs, and the edges of each kernel's ranges */
    static const float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.72283935546875f,
                                  88.7228394f, 89.5f, -87.33654f, -103.9f, -104.5f, -150.0f,
                                  0.625f, -0.625f, 0.41421356f, 1e-30f, -1e-30f, 1e-40f};
    int64_t cap = 2 * (int64_t)(0x42DC0000u / 1021) + 64, n = 0;
    float *buf = malloc((size_t)cap * sizeof *buf);
    for (uint32_t b = 0; b <= 0x42DC0000u; b += 1021) {   /* 0x42DC0000 = 110.0f */
        float f;
        memcpy(&f, &b, sizeof f);
        buf[n++] = f;
        buf[n++] = -f;
    }
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) buf[n++] = edges[i];
    ls_tensor *x = ls_tensor_from_buffer(LS_F32, 1, &n, buf);
    static const struct {
        ls_tensor *(*fn)(ls_tensor *);
        double (*ref)(double);
        double max_ulp;
        const char *name;
    } ops[] = {{ls_exp, exp, 1.5, "exp"},
               {ls_tanh, tanh, 2.0, "tanh"},
               {ls_sigmoid, ref_sigmoid, 3.0, "sigmoid"},
               {ls_softplus, ref_softplus_stable, 2.5, "softplus"}};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        ls_tensor *y = ops[k].fn(x);
        CHECK(y != NULL);
        const float *o = y ? ls_tensor_data(y) : NULL;
        double worst = 0;
        float at = 0;
        for (int64_t i = 0; o && i < n; i++) {
            double e = ulps(o[i], ops[k].ref((double)buf[i]));
            if (!(e <= worst)) {
                worst = e;
                at = buf[i];
            }
        }
        if (!(worst <= ops[k].max_ulp))
            fprintf(stderr, "  %s f32: %.2f ulp at x = %.9g\n", ops[k].name, worst, at);
        CHECK(worst <= ops[k].max_ulp);
        ls_tensor_release(y);
    }
    ls_tensor_release(x);
    free(buf);
}

/* |got - want| in units of the spacing of doubles at want. */
static double ulps64(double got, long double want)
{
    if (isnan((double)want)) return isnan(got) ? 0.0 : INFINITY;
    if (isinf((double)want) || isinf(got)) return got == (double)want ? 0.0 : INFINITY;
    int e;
    frexpl(want, &e);
    long double spacing = ldexpl(1.0L, (e - 53 < -1074) ? -1074 : e - 53);
    return (double)(fabsl((long double)got - want) / spacing);
}
static long double refl_sigmoid(long double x) { return 1.0L / (1.0L + expl(-x)); }
static long double refl_softplus(long double x)
{
    return x > 0 ? x + log1pl(expl(-x)) : log1pl(expl(x));
}

/* f64 kernels against long double libm: random points over exp's whole range, over [-40, 40], and
 * of magnitudes e^-40 .. e^5, plus edges. */
static void test_f64_accuracy(void)
{
    static const double edges[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 709.782712893383973096,
                                   709.7827128933841, -745.1332191019411, -745.2, -708.4, 0.4,
                                   -0.4, 0.39999999999999997, 0.41421356237309503, 1e-300};
    int64_t n = 600000;
    double *buf = malloc((size_t)n * sizeof *buf);
    for (int64_t i = 0; i < n; i++) {
        double u = check_uniform();
        if (i % 3 == 0) buf[i] = -760.0 + 1480.0 * u;
        else if (i % 3 == 1) buf[i] = -40.0 + 80.0 * u;
        else buf[i] = (check_uniform() < 0.5 ? -1 : 1) * exp(-40.0 + 45.0 * u);
    }
    memcpy(buf, edges, sizeof edges);
    ls_tensor *x = ls_tensor_from_buffer(LS_F64, 1, &n, buf);
    static const struct {
        ls_tensor *(*fn)(ls_tensor *);
        long double (*ref)(long double);
        double max_ulp;
        const char *name;
    } ops[] = {{ls_exp, expl, 1.5, "exp"},
               {ls_tanh, tanhl, 2.5, "tanh"},
               {ls_sigmoid, refl_sigmoid, 3.0, "sigmoid"},
               {ls_softplus, refl_softplus, 3.5, "softplus"}};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        ls_tensor *y = ops[k].fn(x);
        CHECK(y != NULL);
        const double *o = y ? ls_tensor_data(y) : NULL;
        double worst = 0, at = 0;
        for (int64_t i = 0; o && i < n; i++) {
            double e = ulps64(o[i], ops[k].ref((long double)buf[i]));
            if (!(e <= worst)) {
                worst = e;
                at = buf[i];
            }
        }
        if (!(worst <= ops[k].max_ulp))
            fprintf(stderr, "  %s f64: %.2f ulp at x = %.17g\n", ops[k].name, worst, at);
        CHECK(worst <= ops[k].max_ulp);
        ls_tensor_release(y);
    }
    ls_tensor_release(x);
    free(buf);
}

/* The same sweeps with the baseline (SSE2) kernels, which must be chosen before any op runs: in a
 * child process, whose exit code is its number of failed checks. */
static int baseline_child(void)
{
    setenv("LANDSCAPE_SIMD", "baseline", 1);
    test_f32_accuracy();
    test_f64_accuracy();
    return check_failures;
}
static int in_child(int (*body)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(body());
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- clamp ---- */

static void test_clamp(void)
{
    static const double bounds[][2] = {{-0.5, 0.75}, {-0.5, NAN}, {NAN, 0.25}, {NAN, NAN},
                                       {1.0, -1.0}};
    for (int di = 0; di < 2; di++)
        for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++)
            for (int layout = 0; layout < NLAYOUTS; layout++) {
                double lo = bounds[b][0], hi = bounds[b][1];
                ls_tensor *x = make_layout(dtypes[di], 4, 6, REAL, layout);
                ls_tensor *y = ls_clamp(x, lo, hi);
                CHECK(y != NULL);
                int bad = 0;
                for (int64_t i = 0; y && i < 24; i++) {
                    double v = ls_tensor_get_flat(x, i), want = v;
                    if (!isnan(lo) && want < lo) want = lo;
                    if (!isnan(hi) && want > hi) want = hi;   /* lo > hi gives hi, as torch */
                    bad += !same_value(ls_tensor_get_flat(y, i), want, x->dtype);
                }
                CHECK(bad == 0);
                ls_tensor_release(x);
                ls_tensor_release(y);
            }
}

/* ---- where ---- */

static void test_where(void)
{
    /* {cond, a, b} shapes and the output */
    static const struct {
        int n[3];
        int64_t s[3][2];
        int no;
        int64_t so[2];
    } cases[] = {
        {{2, 2, 2}, {{4, 5}, {4, 5}, {4, 5}}, 2, {4, 5}},
        {{2, 2, 0}, {{4, 1}, {1, 5}, {0}}, 2, {4, 5}},
        {{1, 0, 2}, {{5}, {0}, {4, 5}}, 2, {4, 5}},
        {{0, 0, 0}, {{0}, {0}, {0}}, 0, {0}},
        {{2, 1, 1}, {{0, 3}, {3}, {1}}, 2, {0, 3}},
        {{2, 2, 2}, {{300, 257}, {300, 257}, {300, 257}}, 2, {300, 257}},
    };
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            ls_tensor *cond = make(d, cases[c].n[0], cases[c].s[0], SMALLINT);   /* -1/0/1 */
            ls_tensor *a = make(d, cases[c].n[1], cases[c].s[1], REAL);
            ls_tensor *b = make(d, cases[c].n[2], cases[c].s[2], REAL);
            ls_tensor *y = ls_where(cond, a, b);
            CHECK(y != NULL && y->ndim == cases[c].no);
            int bad = 0;
            int64_t n = y ? ls_tensor_numel(y) : 0;
            for (int64_t i = 0; i < n; i++) {
                int no = cases[c].no;
                const int64_t *so = cases[c].so;
                double want = bget(cond, no, so, i) != 0 ? bget(a, no, so, i) : bget(b, no, so, i);
                bad += ls_tensor_get_flat(y, i) != want;
            }
            CHECK(bad == 0);
            ls_tensor_release(cond);
            ls_tensor_release(a);
            ls_tensor_release(b);
            ls_tensor_release(y);
        }
        /* non-contiguous operands; -0.0 counts as false */
        ls_tensor *cond = make_layout(d, 5, 7, SMALLINT, TRANSPOSED);
        ls_tensor_set(cond, (int64_t[]){0, 0}, -0.0);
        ls_tensor *a = make_layout(d, 5, 7, REAL, NARROWED);
        ls_tensor *b = make_layout(d, 5, 7, REAL, CONTIG);
        ls_tensor *y = ls_where(cond, a, b);
        int bad = 0;
        for (int64_t i = 0; y && i < 35; i++) {
            double c = ls_tensor_get_flat(cond, i);
            bad += ls_tensor_get_flat(y, i) !=
                   (c != 0 ? ls_tensor_get_flat(a, i) : ls_tensor_get_flat(b, i));
        }
        CHECK(y && bad == 0);
        CHECK(y && ls_tensor_get_flat(y, 0) == ls_tensor_get_flat(b, 0));
        ls_tensor_release(cond);
        ls_tensor_release(a);
        ls_tensor_release(b);
        ls_tensor_release(y);
    }
}

/* ---- special values ---- */

static double one_value(ls_tensor *(*fn)(ls_tensor *), ls_dtype d, double x)
{
    ls_tensor *t = ls_tensor_scalar(d, x), *y = fn(t);
    double v = y ? ls_tensor_get_flat(y, 0) : -12345.0;
    ls_tensor_release(t);
    ls_tensor_release(y);
    return v;
}
static double two_values(ls_tensor *(*fn)(ls_tensor *, ls_tensor *), ls_dtype d, double x, double y)
{
    ls_tensor *a = ls_tensor_scalar(d, x), *b = ls_tensor_scalar(d, y), *r = fn(a, b);
    double v = r ? ls_tensor_get_flat(r, 0) : -12345.0;
    ls_tensor_release(a);
    ls_tensor_release(b);
    ls_tensor_release(r);
    return v;
}

static void test_special_values(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        CHECK(one_value(ls_sigmoid, d, 100.0) == 1.0);
        double s = one_value(ls_sigmoid, d, -80.0);           /* e^-80 ~ 1.8e-35, no NaN */
        CHECK(s > 0 && fabs(s - exp(-80.0)) <= 1e-6 * exp(-80.0));
        CHECK(one_value(ls_sigmoid, d, -1000.0) == 0.0);
        CHECK(one_value(ls_sigmoid, d, 1000.0) == 1.0);
        CHECK(one_value(ls_softplus, d, 1000.0) == 1000.0);   /* not inf */
        CHECK(one_value(ls_softplus, d, 100.0) == 100.0);
        double sp = one_value(ls_softplus, d, -80.0);          /* log1p(e^-80) = e^-80, not 0 */
        CHECK(sp > 0 && fabs(sp - exp(-80.0)) <= 1e-6 * exp(-80.0));
        CHECK(one_value(ls_softplus, d, 0.0) == (d == LS_F32 ? (double)logf(2.0f) : log(2.0)));
        CHECK(one_value(ls_tanh, d, 50.0) == 1.0);
        CHECK(one_value(ls_sign, d, 0.0) == 0.0);
        CHECK(one_value(ls_sign, d, -3.0) == -1.0);
        CHECK(isnan(one_value(ls_relu, d, NAN)));
        CHECK(isnan(one_value(ls_sign, d, NAN)));
        CHECK(isnan(two_values(ls_maximum, d, NAN, 1.0)));
        CHECK(isnan(two_values(ls_maximum, d, 1.0, NAN)));
        CHECK(isnan(two_values(ls_minimum, d, NAN, 1.0)));
        CHECK(isnan(two_values(ls_minimum, d, 1.0, NAN)));
        CHECK(two_values(ls_eq, d, NAN, NAN) == 0.0);
        CHECK(two_values(ls_ne, d, NAN, NAN) == 1.0);
        CHECK(isinf(one_value(ls_log, d, 0.0)) && one_value(ls_log, d, 0.0) < 0);
        CHECK(two_values(ls_div, d, 1.0, 0.0) == INFINITY);
        ls_tensor *t = ls_tensor_scalar(d, NAN), *c = ls_clamp(t, -1.0, 1.0);
        CHECK(c && isnan(ls_tensor_get_flat(c, 0)));
        ls_tensor_release(t);
        ls_tensor_release(c);
    }
}

/* ---- errors ---- */

static int error_has(const char *needle)
{
    int ok = strstr(ls_error_message(), needle) != NULL;
    if (!ok) fprintf(stderr, "  error was \"%s\", expected \"%s\"\n", ls_error_message(), needle);
    return ok;
}

static void test_errors(void)
{
    ls_tensor *a = make(LS_F32, 2, (int64_t[]){3, 4}, REAL);
    ls_tensor *b = make(LS_F32, 1, (int64_t[]){5}, REAL);
    ls_tensor *c = make(LS_F64, 2, (int64_t[]){3, 4}, REAL);
    ls_tensor *i = ls_tensor_zeros(LS_I64, 2, (int64_t[]){3, 4});
    ls_tensor *u = ls_tensor_zeros(LS_U8, 1, (int64_t[]){4});

    CHECK(ls_add(a, b) == NULL);
    CHECK(error_has("add: shapes [3x4] and [5] cannot be broadcast"));
    CHECK(ls_lt(b, a) == NULL);
    CHECK(error_has("lt: shapes [5] and [3x4] cannot be broadcast"));
    CHECK(ls_mul(a, c) == NULL);
    CHECK(error_has("mul: dtype mismatch: f32 and f64"));
    CHECK(ls_exp(i) == NULL);
    CHECK(error_has("exp: expected a float tensor (f32 or f64), got i64"));
    CHECK(ls_maximum(a, i) == NULL);
    CHECK(error_has("maximum: expected a float tensor (f32 or f64), got i64"));
    CHECK(ls_clamp(u, 0, 1) == NULL);
    CHECK(error_has("clamp: expected a float tensor (f32 or f64), got u8"));
    CHECK(ls_pow_scalar(i, 2.0) == NULL);   /* integers add, subtract and multiply only */
    CHECK(error_has("pow: expected a float tensor"));
    CHECK(ls_where(a, a, b) == NULL);
    CHECK(error_has("where: shapes [3x4] and [5] cannot be broadcast"));
    CHECK(ls_where(c, a, a) == NULL);
    CHECK(error_has("where: dtype mismatch: f64 and f32"));
    /* NULL inputs propagate without replacing the first error */
    ls_error_set(LS_ERR_ARG, "earlier failure");
    CHECK(ls_add(NULL, a) == NULL && ls_sigmoid(NULL) == NULL && ls_where(a, NULL, a) == NULL);
    CHECK(ls_clamp(NULL, 0, 1) == NULL);
    CHECK(error_has("earlier failure"));

    ls_tensor_release(a);
    ls_tensor_release(b);
    ls_tensor_release(c);
    ls_tensor_release(i);
    ls_tensor_release(u);
}

/* ---- gradient conventions (points the gradient check's samples avoid on purpose) ---- */

/* Gradients of sum(out) with respect to the inputs, out = f(inputs); returns the status. */
static ls_status grads_of(ls_tensor *out, int nin, ls_tensor *const *in, ls_tensor **g)
{
    ls_tensor *ones = ls_tensor_full(out->dtype, out->ndim, out->shape, 1.0);
    ls_grad_opts o = {.grad_outputs = &ones};
    ls_status st = ls_autograd_grad(1, &out, nin, in, &o, g);
    ls_tensor_release(ones);
    return st;
}

static ls_tensor *vec(const double *v, int64_t n)
{
    ls_tensor *t = ls_tensor_from_buffer(LS_F64, 1, &n, v);
    ls_requires_grad_(t, true);
    return t;
}

static void check_vec(const ls_tensor *t, const double *want, int64_t n)
{
    CHECK(t != NULL && ls_tensor_numel(t) == n);
    for (int64_t i = 0; t && i < n; i++) CHECK_NEAR(ls_tensor_get_flat(t, i), want[i], 1e-14);
}

static void test_gradient_conventions(void)
{
    /* maximum / minimum: ties split the gradient half and half */
    ls_tensor *a = vec((double[]){1, 2, 3}, 3), *b = vec((double[]){1, 0, 5}, 3);
    ls_tensor *g[3] = {0};
    ls_tensor *mx = ls_maximum(a, b), *mn = ls_minimum(a, b);
    CHECK(grads_of(mx, 2, (ls_tensor *[]){a, b}, g) == LS_OK);
    check_vec(g[0], (double[]){0.5, 1, 0}, 3);
    check_vec(g[1], (double[]){0.5, 0, 1}, 3);
    ls_tensor_release(g[0]);
    ls_tensor_release(g[1]);
    CHECK(grads_of(mn, 2, (ls_tensor *[]){a, b}, g) == LS_OK);
    check_vec(g[0], (double[]){0.5, 0, 1}, 3);
    check_vec(g[1], (double[]){0.5, 1, 0}, 3);
    ls_tensor_release(g[0]);
    ls_tensor_release(g[1]);
    ls_tensor_release(mx);
    ls_tensor_release(mn);
    ls_tensor_release(a);
    ls_tensor_release(b);

    /* clamp passes the gradient on the boundaries; relu, abs and sign give 0 at 0 */
    ls_tensor *x = vec((double[]){-1, 0, 0.5, 1, 2}, 5);
    ls_tensor *y = ls_clamp(x, 0.0, 1.0);
    CHECK(grads_of(y, 1, &x, g) == LS_OK);
    check_vec(g[0], (double[]){0, 1, 1, 1, 0}, 5);
    ls_tensor_release(g[0]);
    ls_tensor_release(y);
    y = ls_clamp(x, NAN, 0.5);
    CHECK(grads_of(y, 1, &x, g) == LS_OK);
    check_vec(g[0], (double[]){1, 1, 1, 0, 0}, 5);
    ls_tensor_release(g[0]);
    ls_tensor_release(y);
    y = ls_relu(x);
    CHECK(grads_of(y, 1, &x, g) == LS_OK);
    check_vec(g[0], (double[]){0, 0, 1, 1, 1}, 5);
    ls_tensor_release(g[0]);
    ls_tensor_release(y);
    y = ls_abs(x);
    CHECK(grads_of(y, 1, &x, g) == LS_OK);
    check_vec(g[0], (double[]){-1, 0, 1, 1, 1}, 5);
    ls_tensor_release(g[0]);
    ls_tensor_release(y);
    y = ls_sign(x);
    CHECK(grads_of(y, 1, &x, g) == LS_OK);
    check_vec(g[0], (double[]){0, 0, 0, 0, 0}, 5);
    ls_tensor_release(g[0]);
    ls_tensor_release(y);
    ls_tensor_release(x);

    /* pow: d/db a^b is 0 at a == 0 (not NaN); d/da 0^2 = 0 */
    a = vec((double[]){0, 2}, 2);
    b = vec((double[]){2, 3}, 2);
    y = ls_pow(a, b);
    CHECK(grads_of(y, 2, (ls_tensor *[]){a, b}, g) == LS_OK);
    check_vec(g[0], (double[]){0, 12}, 2);
    check_vec(g[1], (double[]){0, 8 * log(2.0)}, 2);
    ls_tensor_release(g[0]);
    ls_tensor_release(g[1]);
    ls_tensor_release(y);
    ls_tensor_release(a);
    ls_tensor_release(b);

    /* where: the gradient goes to the selected side only (summed back for a broadcast side) and
     * none to cond */
    ls_tensor *cond = vec((double[]){1, 0, 1}, 3);
    a = vec((double[]){5, 6, 7}, 3);
    b = ls_tensor_scalar(LS_F64, 9.0);
    ls_requires_grad_(b, true);
    y = ls_where(cond, a, b);
    CHECK(grads_of(y, 3, (ls_tensor *[]){cond, a, b}, g) == LS_OK);
    check_vec(g[0], (double[]){0, 0, 0}, 3);
    check_vec(g[1], (double[]){1, 0, 1}, 3);
    check_vec(g[2], (double[]){1}, 1);
    CHECK(g[2] && g[2]->ndim == 0);
    for (int k = 0; k < 3; k++) ls_tensor_release(g[k]);
    ls_tensor_release(y);
    ls_tensor_release(cond);
    ls_tensor_release(a);
    ls_tensor_release(b);

    /* broadcast gradients are summed back to each input's shape */
    a = ls_tensor_full(LS_F64, 2, (int64_t[]){3, 1}, 1.0);
    b = ls_tensor_full(LS_F64, 2, (int64_t[]){1, 4}, 2.0);
    ls_requires_grad_(a, true);
    ls_requires_grad_(b, true);
    y = ls_mul(a, b);
    CHECK(grads_of(y, 2, (ls_tensor *[]){a, b}, g) == LS_OK);
    check_vec(g[0], (double[]){8, 8, 8}, 3);
    check_vec(g[1], (double[]){3, 3, 3, 3}, 4);
    CHECK(g[0] && g[0]->ndim == 2 && g[0]->shape[0] == 3 && g[0]->shape[1] == 1);
    ls_tensor_release(g[0]);
    ls_tensor_release(g[1]);
    ls_tensor_release(y);
    ls_tensor_release(a);
    ls_tensor_release(b);

    /* comparisons are not recorded */
    x = vec((double[]){1, 2}, 2);
    ls_tensor *z = ls_tensor_scalar(LS_F64, 1.5);
    y = ls_gt(x, z);
    CHECK(y && !y->requires_grad && y->grad_fn == NULL);
    ls_tensor_release(y);
    ls_tensor_release(z);
    ls_tensor_release(x);
}

int main(void)
{
    CHECK(in_child(baseline_child) == 0);
    test_f32_accuracy();
    test_f64_accuracy();
    test_unary();
    test_binary();
    test_output_layout();
    test_pow_scalar();
    test_scalar_wrappers();
    test_clamp();
    test_where();
    test_special_values();
    test_errors();
    test_gradient_conventions();
    return check_done("test_ops_elementwise");
}
