/* The fused batch-norm ops (engine/ops/batchnorm.c, batchnorm_ops.c) and relu_backward
 * (engine/ops/elementwise.c).
 *
 *   batchnorm, ls_batchnorm_train's statistics, batchnorm_grad_stats, batchnorm_input_grad, and
 *     batchnorm's gradients through autograd: both dtypes, against the composed formula evaluated
 *     in double by plain loops (two-pass mean and variance) on the same input values, for shapes
 *     that take every kernel path: [N, C] and small trailing sizes (the column path, with one and
 *     several channel blocks), trailing sizes >= 16 (the row path, with blocks of 16 and 8 and a
 *     scalar tail for AVX2, 32, 16 and a scalar tail for AVX-512), and a non-contiguous input. Tolerance: a few units of the dtype's rounding of
 *     the terms involved (f64 results are nearly exact; f32 ones carry f32 elementwise rounding).
 *   Statistics far from zero: |mean| >> std in f32 and f64 (the shifted sums keep the variance).
 *   Thread counts: 1, 2 and 3 threads give bitwise equal results for every op.
 *   batchnorm_affine (the map the second-order rules use): against its formula, both dtypes.
 *   Adding into an accumulator (what the rules do when the backward pass offers one): the scale,
 *     affine and input-grad kernels with acc give acc + their result bit for bit; and a second
 *     backward through batch norm without a graph (where the engine offers accumulators) equals
 *     the same backward with create_graph (where it does not) bit for bit, f32 and f64.
 *   relu_backward: the mask (0 where x <= 0 or x is NaN, even for an inf or NaN g), broadcasting,
 *     and relu's second derivative (zero) through it.
 *   Errors name the op and the shapes; allocation failures give NULL with LS_ERR_MEM and leak
 *   nothing. */
#define CHECK_RNG_SEED 0x2545f4914f6cdd1dULL   /* this file's test inputs */
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/batchnorm_internal.h"
#include "ops/ops.h"

#define EPS 1e-5

/* A tensor of `shape` with values center + spread * U(-1, 1). */
static ls_tensor *make(ls_dtype d, int nd, const int64_t *shape, double center, double spread)
{
    ls_tensor *t = ls_tensor_new(d, nd, shape);
    int64_t n = ls_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = center + spread * (2.0 * check_uniform() - 1.0);
        if (d == LS_F32) ((float *)ls_tensor_data(t))[i] = (float)v;
        else ((double *)ls_tensor_data(t))[i] = v;
    }
    return t;
}

static double unit(ls_dtype d) { return d == LS_F32 ? 0x1p-23 : 0x1p-52; }
/* Room for the rounding of long double-precision sums (relative), on top of k units of the dtype */
#define ACC 1e-12

static bool has_msg(const char *sub)
{
    bool ok = strstr(ls_error_message(), sub) != NULL;
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", ls_error_message(), sub);
    return ok;
}

/* ==== the reference: the composed formula in double ==== */

typedef struct ref {
    int64_t N, C, S, n;
    double *x, *g;               /* flat [N, C, S] */
    double *mean, *var, *r;      /* per channel: mean, biased var, invstd */
} ref;

static int64_t at(const ref *R, int64_t n, int64_t c, int64_t s)
{
    return (n * R->C + c) * R->S + s;
}

static void ref_init(ref *R, const ls_tensor *x, const ls_tensor *g)
{
    R->N = x->shape[0], R->C = x->shape[1], R->S = ls_tensor_numel(x) / (R->N * R->C);
    R->n = R->N * R->S;
    int64_t m = ls_tensor_numel(x);
    R->x = malloc(sizeof(double) * (size_t)m);
    R->g = malloc(sizeof(double) * (size_t)m);
    R->mean = malloc(sizeof(double) * (size_t)R->C);
    R->var = malloc(sizeof(double) * (size_t)R->C);
    R->r = malloc(sizeof(double) * (size_t)R->C);
    for (int64_t i = 0; i < m; i++) {
        R->x[i] = ls_tensor_get_flat(x, i);
        R->g[i] = g ? ls_tensor_get_flat(g, i) : 0;
    }
    for (int64_t c = 0; c < R->C; c++) {
        double s = 0, v = 0, s2 = 0;
        for (int64_t n = 0; n < R->N; n++)
            for (int64_t k = 0; k < R->S; k++) s += R->x[at(R, n, c, k)];
        for (int64_t n = 0; n < R->N; n++)   /* a corrected mean: exact to rounding */
            for (int64_t k = 0; k < R->S; k++) s2 += R->x[at(R, n, c, k)] - s / (double)R->n;
        R->mean[c] = s / (double)R->n + s2 / (double)R->n;
        for (int64_t n = 0; n < R->N; n++)
            for (int64_t k = 0; k < R->S; k++) {
                double d = R->x[at(R, n, c, k)] - R->mean[c];
                v += d * d;
            }
        R->var[c] = v / (double)R->n;
        R->r[c] = 1.0 / sqrt(R->var[c] + EPS);
    }
}

static void ref_free(ref *R)
{
    free(R->x), free(R->g), free(R->mean), free(R->var), free(R->r);
}

static double vec(const ls_tensor *t, int64_t c) { return ls_tensor_get_flat(t, c); }

/* ==== values against the reference ==== */

typedef struct bn_case {
    int nd;
    int64_t shape[4];
} bn_case;

static const bn_case cases[] = {
    {2, {6, 3}},          /* [N, C]: column path, S = 1 */
    {3, {5, 4, 3}},       /* column path, S = 3 */
    {3, {3, 20, 13}},     /* column path, two channel blocks (19 channels of 13 fill 247 of 256) */
    {2, {3, 300}},        /* column path, two blocks of 256 and 44 channels */
    {4, {4, 3, 5, 5}},    /* row path, S = 25: a block of 16, one of 8, a tail of 1 (AVX2); AVX-512:
                             16 + a tail of 9 */
    {3, {3, 2, 17}},      /* row path, S = 17: 16 + a tail of 1 */
    {3, {2, 3, 40}},      /* row path, S = 40: 2 x 16 + 8 (AVX2); AVX-512: 32 + 8, with g 2 x 16 + 8 */
    {3, {2, 3, 50}},      /* row path, S = 50: AVX-512 32 + 16 + 2, with g 3 x 16 + 2 */
    {4, {5, 6, 14, 14}},  /* row path, S = 196, the CNN's second layer, smaller */
};

static void check_case(ls_dtype dt, const bn_case *k, bool transposed)
{
    ls_tensor *x, *g;
    if (!transposed) {
        x = make(dt, k->nd, k->shape, 0.3, 2.0);
        g = make(dt, k->nd, k->shape, 0.0, 1.0);
    } else {   /* the same shape as a non-contiguous view: dims 0 and 1 swapped */
        int64_t sh[4];
        memcpy(sh, k->shape, sizeof sh);
        sh[0] = k->shape[1], sh[1] = k->shape[0];
        ls_tensor *xb = make(dt, k->nd, sh, 0.3, 2.0), *gb = make(dt, k->nd, sh, 0.0, 1.0);
        x = ls_view_transpose(xb, 0, 1);
        g = ls_view_transpose(gb, 0, 1);
        ls_tensor_release(xb), ls_tensor_release(gb);
        CHECK(!ls_tensor_is_contiguous(x));
    }
    int64_t C = k->shape[1];
    ls_tensor *w = make(dt, 1, &C, 0.0, 1.5), *b = make(dt, 1, &C, 0.0, 1.0);
    ref R;
    ref_init(&R, x, g);
    double u = unit(dt), big = 0;
    int bad = 0;

    /* forward, and the statistics handed back by ls_batchnorm_train */
    ls_tensor *mean, *var;
    ls_tensor *y = ls_batchnorm(x, w, b, EPS);
    ls_tensor *y2 = ls_batchnorm_train(x, w, b, EPS, &mean, &var);
    CHECK(y && y2 && mean && var);
    if (!y || !y2 || !mean || !var) goto out;
    CHECK(memcmp(ls_tensor_data(y), ls_tensor_data(y2), ls_dtype_size(dt) *
                 (size_t)ls_tensor_numel(y)) == 0);
    for (int64_t c = 0; c < C; c++) {
        bad += !(fabs(vec(mean, c) - R.mean[c]) <= 2 * u * fabs(R.mean[c]) + ACC);
        bad += !(fabs(vec(var, c) - R.var[c]) <= (8 * u + ACC) * R.var[c]);
    }
    for (int64_t n = 0; n < R.N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < R.S; s++) {
                int64_t i = at(&R, n, c, s);
                double xh = (R.x[i] - R.mean[c]) * R.r[c], want = xh * vec(w, c) + vec(b, c);
                double tol = (8 * u + ACC) * (fabs(xh * vec(w, c)) + fabs(vec(b, c)) + 1);
                double got = ls_tensor_get_flat(y, i);
                if (!(fabs(got - want) <= tol) && bad++ < 3)
                    fprintf(stderr, "  y[%lld] = %.10g, want %.10g\n", (long long)i, got, want);
            }
    CHECK(bad == 0);

    /* grad_stats: sum(g), sum(g xhat), mean, invstd */
    ls_tensor *st = ls_batchnorm_grad_stats(g, x, EPS);
    CHECK(st && st->ndim == 2 && st->shape[0] == 4 && st->shape[1] == C);
    bad = 0;
    for (int64_t c = 0; st && c < C; c++) {
        double A = 0, B = 0, aA = 0, aB = 0;
        for (int64_t n = 0; n < R.N; n++)
            for (int64_t s = 0; s < R.S; s++) {
                int64_t i = at(&R, n, c, s);
                double xh = (R.x[i] - R.mean[c]) * R.r[c];
                A += R.g[i], aA += fabs(R.g[i]);
                B += R.g[i] * xh, aB += fabs(R.g[i] * xh);
            }
        const double want[4] = {A, B, R.mean[c], R.r[c]};
        const double tol[4] = {(4 * u + ACC) * aA, (4 * u + ACC) * aB,
                               2 * u * fabs(R.mean[c]) + ACC, (4 * u + ACC) * R.r[c]};
        for (int row = 0; row < 4; row++) {
            double got = ls_tensor_get_flat(st, row * C + c);
            if (!(fabs(got - want[row]) <= tol[row]) && bad++ < 3)
                fprintf(stderr, "  stats[%d][%lld] = %.12g, want %.12g\n", row, (long long)c, got,
                        want[row]);
        }
    }
    CHECK(bad == 0);

    /* input_grad from those stats, then batchnorm's gradients through autograd */
    ls_tensor *dx = st ? ls_batchnorm_input_grad(g, x, w, st) : NULL;
    ls_tensor *xl = ls_tensor_clone(x), *wl = ls_tensor_clone(w), *bl = ls_tensor_clone(b);
    ls_requires_grad_(xl, true), ls_requires_grad_(wl, true), ls_requires_grad_(bl, true);
    ls_tensor *yl = ls_batchnorm(xl, wl, bl, EPS), *grads[3] = {0};
    ls_grad_opts o = {.grad_outputs = (ls_tensor *const[]){g}};
    CHECK(ls_autograd_grad(1, &yl, 3, (ls_tensor *const[]){xl, wl, bl}, &o, grads) == LS_OK);
    CHECK(dx && grads[0] && grads[1] && grads[2]);
    bad = 0;
    for (int64_t c = 0; dx && grads[0] && c < C; c++) {
        double mg = 0, mgx = 0, dw = 0, db = 0, adw = 0, adb = 0;
        for (int64_t n = 0; n < R.N; n++)
            for (int64_t s = 0; s < R.S; s++) {
                int64_t i = at(&R, n, c, s);
                double xh = (R.x[i] - R.mean[c]) * R.r[c];
                mg += R.g[i], mgx += R.g[i] * xh, adb += fabs(R.g[i]), adw += fabs(R.g[i] * xh);
            }
        dw = mgx, db = mg;
        mg /= (double)R.n, mgx /= (double)R.n;
        double wr = vec(w, c) * R.r[c];
        for (int64_t n = 0; n < R.N; n++)
            for (int64_t s = 0; s < R.S; s++) {
                int64_t i = at(&R, n, c, s);
                double xh = (R.x[i] - R.mean[c]) * R.r[c];
                double want = wr * (R.g[i] - mg - xh * mgx);
                double tol = (16 * u + ACC) * fabs(wr) *
                             (fabs(R.g[i]) + fabs(mg) + fabs(xh * mgx) + 1);
                double got = ls_tensor_get_flat(dx, i), got2 = ls_tensor_get_flat(grads[0], i);
                big = fmax(big, fabs(want));
                if ((!(fabs(got - want) <= tol) || !(fabs(got2 - want) <= tol)) && bad++ < 3)
                    fprintf(stderr, "  dx[%lld] = %.10g / %.10g, want %.10g\n", (long long)i, got,
                            got2, want);
            }
        bad += !(fabs(vec(grads[1], c) - dw) <= (4 * u + ACC) * adw);
        bad += !(fabs(vec(grads[2], c) - db) <= (4 * u + ACC) * adb);
    }
    CHECK(bad == 0);
    CHECK(big > 0.01);   /* the gradients are not trivially zero */
    for (int i = 0; i < 3; i++) ls_tensor_release(grads[i]);
    ls_tensor_release(yl), ls_tensor_release(xl), ls_tensor_release(wl), ls_tensor_release(bl);
    ls_tensor_release(dx), ls_tensor_release(st);
out:
    ls_tensor_release(y), ls_tensor_release(y2), ls_tensor_release(mean), ls_tensor_release(var);
    ls_tensor_release(x), ls_tensor_release(g), ls_tensor_release(w), ls_tensor_release(b);
    ref_free(&R);
}

/* ==== statistics far from zero ==== */

static void test_offset_mean(void)
{
    const ls_dtype dts[2] = {LS_F32, LS_F64};
    const double center[2] = {1000.0, 1e6}, spread[2] = {0.01, 1e-3};
    const int64_t shapes[2][4] = {{8, 2, 30, 1}, {300, 3, 1, 1}};   /* row and column paths */
    for (int d = 0; d < 2; d++)
        for (int sh = 0; sh < 2; sh++) {
            ls_tensor *x = make(dts[d], sh == 0 ? 3 : 2, shapes[sh], center[d], spread[d]);
            int64_t C = shapes[sh][1];
            ls_tensor *w = ls_tensor_full(dts[d], 1, &C, 1.0), *b = ls_tensor_zeros(dts[d], 1, &C);
            ls_tensor *mean, *var, *y = ls_batchnorm_train(x, w, b, 0.0, &mean, &var);
            ref R;
            ref_init(&R, x, NULL);
            CHECK(y != NULL);
            for (int64_t c = 0; y && c < C; c++) {
                CHECK(fabs(vec(var, c) - R.var[c]) <= 1e-6 * R.var[c]);
                CHECK(fabs(vec(mean, c) - R.mean[c]) <= 2 * unit(dts[d]) * R.mean[c]);
            }
            ref_free(&R);
            ls_tensor_release(x), ls_tensor_release(w), ls_tensor_release(b);
            ls_tensor_release(y), ls_tensor_release(mean), ls_tensor_release(var);
        }
}

/* ==== thread counts ==== */

static bool same(const ls_tensor *a, const ls_tensor *b)
{
    return a && b && ls_tensor_numel(a) == ls_tensor_numel(b) &&
           memcmp(ls_tensor_data(a), ls_tensor_data(b),
                  ls_dtype_size(a->dtype) * (size_t)ls_tensor_numel(a)) == 0;
}

static void test_threads(void)
{
    int saved = ls_get_threads();
    const int64_t shapes[3][4] = {{16, 8, 20, 20}, {512, 300, 1, 1}, {64, 40, 5, 1}};
    const int nds[3] = {4, 2, 3};
    for (int d = 0; d < 2; d++)
        for (int sh = 0; sh < 3; sh++) {
            ls_dtype dt = d ? LS_F64 : LS_F32;
            ls_tensor *x = make(dt, nds[sh], shapes[sh], 0.5, 2.0);
            ls_tensor *g = make(dt, nds[sh], shapes[sh], 0.0, 1.0);
            int64_t C = shapes[sh][1];
            ls_tensor *w = make(dt, 1, &C, 0.0, 1.0), *b = make(dt, 1, &C, 0.0, 1.0);
            ls_tensor *r[3][5] = {{0}};
            for (int t = 0; t < 3; t++) {
                ls_set_threads(t + 1);
                r[t][0] = ls_batchnorm_train(x, w, b, EPS, &r[t][3], &r[t][4]);
                r[t][1] = ls_batchnorm_grad_stats(g, x, EPS);
                r[t][2] = ls_batchnorm_input_grad(g, x, w, r[t][1]);
            }
            for (int t = 1; t < 3; t++)
                for (int k = 0; k < 5; k++) CHECK(same(r[0][k], r[t][k]));
            for (int t = 0; t < 3; t++)
                for (int k = 0; k < 5; k++) ls_tensor_release(r[t][k]);
            ls_tensor_release(x), ls_tensor_release(g), ls_tensor_release(w), ls_tensor_release(b);
        }
    ls_set_threads(saved);
}

/* ==== relu_backward ==== */

static void test_relu_backward(void)
{
    const double xv[6] = {-1, 0, 2, NAN, 3, -INFINITY};
    const double gv[6] = {INFINITY, 5, 7, 1, NAN, 2};
    for (int d = 0; d < 2; d++) {
        ls_dtype dt = d ? LS_F64 : LS_F32;
        int64_t n = 6;
        ls_tensor *x = ls_tensor_new(dt, 1, &n), *g = ls_tensor_new(dt, 1, &n);
        for (int64_t i = 0; i < n; i++) {
            ls_tensor_set(x, &i, xv[i]);
            ls_tensor_set(g, &i, gv[i]);
        }
        ls_tensor *r = ls_relu_backward(g, x);
        CHECK(r != NULL);
        if (r) {
            CHECK(ls_tensor_get_flat(r, 0) == 0);   /* inf g, x < 0 */
            CHECK(ls_tensor_get_flat(r, 1) == 0);   /* x == 0 */
            CHECK(ls_tensor_get_flat(r, 2) == 7);
            CHECK(ls_tensor_get_flat(r, 3) == 0);   /* NaN x */
            CHECK(isnan(ls_tensor_get_flat(r, 4)));   /* NaN g passes where x > 0 */
            CHECK(ls_tensor_get_flat(r, 5) == 0);
        }
        ls_tensor_release(r);
        /* a 0-d g broadcast against x */
        ls_tensor *g0 = ls_tensor_scalar(dt, 1.5);
        r = ls_relu_backward(g0, x);
        CHECK(r && r->ndim == 1);
        CHECK(r && ls_tensor_get_flat(r, 2) == 1.5 && ls_tensor_get_flat(r, 0) == 0);
        ls_tensor_release(r), ls_tensor_release(g0);
        ls_tensor_release(x), ls_tensor_release(g);
    }
    /* relu's gradient and its derivative: mask, and a zero second derivative in x */
    int64_t sh[2] = {3, 4};
    ls_tensor *x = make(LS_F64, 2, sh, 0.0, 1.0), *v = make(LS_F64, 2, sh, 0.0, 1.0);
    ls_requires_grad_(x, true);
    ls_tensor *y = ls_relu(x), *s = ls_sum(y, 0, NULL, false), *gx = NULL, *hx = NULL;
    ls_grad_opts o = {.create_graph = true, .retain_graph = true};
    CHECK(ls_autograd_grad(1, &s, 1, &x, &o, &gx) == LS_OK);
    ls_tensor *gxv = ls_mul(gx, v), *dot = ls_sum(gxv, 0, NULL, false);
    ls_grad_opts o2 = {0};
    CHECK(dot && ls_autograd_grad(1, &dot, 1, &x, &o2, &hx) == LS_OK);
    for (int64_t i = 0; gx && hx && i < 12; i++) {
        CHECK(ls_tensor_get_flat(gx, i) == (ls_tensor_get_flat(x, i) > 0 ? 1.0 : 0.0));
        CHECK(ls_tensor_get_flat(hx, i) == 0);
    }
    ls_tensor_release(x), ls_tensor_release(v), ls_tensor_release(y), ls_tensor_release(s);
    ls_tensor_release(gx), ls_tensor_release(hx), ls_tensor_release(gxv), ls_tensor_release(dot);
}

/* ==== errors and allocation failures ==== */

static void test_errors(void)
{
    int64_t s3[3] = {4, 3, 5}, s1 = 3, s2 = 2, e0[2] = {0, 3}, st[2] = {3, 3};
    ls_tensor *x = make(LS_F32, 3, s3, 0, 1), *w = make(LS_F32, 1, &s1, 0, 1);
    ls_tensor *w2 = make(LS_F32, 1, &s2, 0, 1), *wd = make(LS_F64, 1, &s1, 0, 1);
    ls_tensor *x1 = make(LS_F32, 1, &s1, 0, 1), *xe = ls_tensor_zeros(LS_F32, 2, e0);
    ls_tensor *bad_st = make(LS_F32, 2, st, 0, 1), *g2 = make(LS_F32, 2, st, 0, 1);

    CHECK(ls_batchnorm(x, w2, w, EPS) == NULL && has_msg("batchnorm: weight [2] should be [3]"));
    CHECK(ls_batchnorm(x, w, w2, EPS) == NULL && has_msg("batchnorm: bias [2] should be [3]"));
    CHECK(ls_batchnorm(x, wd, w, EPS) == NULL && has_msg("dtype mismatch"));
    CHECK(ls_batchnorm(x1, w, w, EPS) == NULL && has_msg("[N x C] or [N x C x ...], got [3]"));
    CHECK(ls_batchnorm(xe, w, w, EPS) == NULL && has_msg("batchnorm: empty input [0x3]"));
    CHECK(ls_batchnorm(x, w, w, -1.0) == NULL && has_msg("eps must be"));
    CHECK(ls_batchnorm_grad_stats(g2, x, EPS) == NULL &&
          has_msg("batchnorm_grad_stats: gradient [3x3] should have the input's shape [4x3x5]"));
    CHECK(ls_batchnorm_input_grad(x, x, w, bad_st) == NULL &&
          has_msg("batchnorm_input_grad: stats [3x3] should be [4x3]"));
    ls_tensor *none = NULL;
    CHECK(ls_batchnorm_train(none, w, w, EPS, NULL, NULL) == NULL);
    CHECK(ls_relu_backward(g2, x) == NULL && has_msg("relu_backward"));

    ls_tensor_release(x), ls_tensor_release(w), ls_tensor_release(w2), ls_tensor_release(wd);
    ls_tensor_release(x1), ls_tensor_release(xe), ls_tensor_release(bad_st), ls_tensor_release(g2);
}

/* batchnorm_affine: K0 g + K1 (x - K2) + K3 per channel, against the formula in double, for the
 * row and column layouts, both dtypes; 1 and 2 threads bitwise. */
static bool same_bits(const ls_tensor *a, const ls_tensor *b)
{
    return a && b && a->dtype == b->dtype && ls_tensor_numel(a) == ls_tensor_numel(b) &&
           memcmp(ls_tensor_data(a), ls_tensor_data(b),
                  ls_dtype_size(a->dtype) * (size_t)ls_tensor_numel(a)) == 0;
}

/* Adding into an accumulator, on one of test_affine's cases (g, x, K of shape `shape`). */
static void check_accumulate(ls_dtype dt, int nd, const int64_t *shape, ls_tensor *g, ls_tensor *x,
                             ls_tensor *K)
{
    int64_t C = shape[1];
    ls_tensor *w = make(dt, 1, &C, 1.0, 0.5), *st = ls_batchnorm_grad_stats(g, x, EPS);
    for (int k = 0; k < 3; k++) {
        ls_tensor *acc0 = make(dt, nd, shape, 0.0, 1.0);
        ls_tensor *copy = ls_add_scalar(acc0, 0.0);   /* the accumulator: acc0's values */
        ls_tensor *r = k == 0 ? bn_scale(g, w, NULL)
                       : k == 1 ? bn_affine(g, x, K, NULL) : bn_input_grad(g, x, w, st, NULL);
        ls_tensor *want = ls_add(copy, r);
        ls_tensor *got = k == 0 ? bn_scale(g, w, copy)
                         : k == 1 ? bn_affine(g, x, K, copy) : bn_input_grad(g, x, w, st, copy);
        CHECK(got == copy && same_bits(copy, want));
        ls_tensor_release(got), ls_tensor_release(want), ls_tensor_release(r);
        ls_tensor_release(copy), ls_tensor_release(acc0);
    }
    /* second order through batchnorm: grad of F = <dL/dx, v> + <dL/dw, v2> */
    ls_tensor *xr = ls_tensor_contiguous(x), *wr = ls_tensor_contiguous(w);
    ls_tensor *b = make(dt, 1, &C, 0.0, 0.5), *rr = make(dt, nd, shape, 0, 1);
    ls_tensor *v = make(dt, nd, shape, 0, 1), *v2 = make(dt, 1, &C, 0, 1);
    ls_requires_grad_(xr, true), ls_requires_grad_(wr, true), ls_requires_grad_(b, true);
    ls_tensor *outs[2][3] = {{0}};
    for (int cg = 0; cg < 2; cg++) {
        ls_tmp t = {0};
        ls_tensor *y = ls_tmp_keep(&t, ls_batchnorm(xr, wr, b, EPS));
        ls_tensor *L = ls_tmp_keep(&t, ls_sum(ls_tmp_keep(&t, ls_mul(ls_tmp_keep(&t,
                                   ls_mul(y, y)), rr)), 0, NULL, false));
        ls_tensor *gx[2] = {0};
        ls_grad_opts o1 = {.create_graph = true, .retain_graph = true};
        CHECK(ls_autograd_grad(1, &L, 2, (ls_tensor *[]){xr, wr}, &o1, gx) == LS_OK);
        ls_tmp_keep(&t, gx[0]), ls_tmp_keep(&t, gx[1]);
        ls_tensor *F = ls_tmp_keep(&t, ls_add(
            ls_tmp_keep(&t, ls_sum(ls_tmp_keep(&t, ls_mul(gx[0], v)), 0, NULL, false)),
            ls_tmp_keep(&t, ls_sum(ls_tmp_keep(&t, ls_mul(gx[1], v2)), 0, NULL, false))));
        ls_grad_opts o2 = {.create_graph = cg == 1};
        CHECK(ls_autograd_grad(1, &F, 3, (ls_tensor *[]){xr, wr, b}, &o2, outs[cg]) == LS_OK);
        ls_tmp_free(&t);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(same_bits(outs[0][i], outs[1][i]));
        ls_tensor_release(outs[0][i]), ls_tensor_release(outs[1][i]);
    }
    ls_tensor_release(xr), ls_tensor_release(wr), ls_tensor_release(b);
    ls_tensor_release(rr), ls_tensor_release(v), ls_tensor_release(v2);
    ls_tensor_release(w), ls_tensor_release(st);
}

static void test_affine(void)
{
    const int64_t shapes[2][4] = {{3, 4, 5, 7}, {6, 5, 1, 1}};
    const int nds[2] = {4, 2};
    int saved = ls_get_threads();
    for (int d = 0; d < 2; d++)
        for (int sh = 0; sh < 2; sh++) {
            ls_dtype dt = d ? LS_F64 : LS_F32;
            int64_t C = shapes[sh][1], kshape[2] = {4, C};
            ls_tensor *g = make(dt, nds[sh], shapes[sh], 0.0, 1.0);
            ls_tensor *x = make(dt, nds[sh], shapes[sh], 3.0, 2.0);
            ls_tensor *K = make(dt, 2, kshape, 0.0, 2.0);
            ls_set_threads(1);
            ls_tensor *y = ls_batchnorm_affine(g, x, K);
            ls_set_threads(2);
            ls_tensor *y2 = ls_batchnorm_affine(g, x, K);
            CHECK(y && y2 && memcmp(ls_tensor_data(y), ls_tensor_data(y2),
                                    ls_dtype_size(dt) * (size_t)ls_tensor_numel(y)) == 0);
            int64_t n = ls_tensor_numel(x), S = n / (shapes[sh][0] * C);
            for (int64_t i = 0; y && i < n; i++) {
                int64_t c = i / S % C;
                double k0 = ls_tensor_get_flat(K, c), k1 = ls_tensor_get_flat(K, C + c);
                double k2 = ls_tensor_get_flat(K, 2 * C + c), k3 = ls_tensor_get_flat(K, 3 * C + c);
                double gv = ls_tensor_get_flat(g, i), xv = ls_tensor_get_flat(x, i);
                double want = k0 * gv + k1 * (xv - k2) + k3;
                double mag = fabs(k0 * gv) + fabs(k1) * (fabs(xv) + fabs(k2)) + fabs(k3);
                CHECK(fabs(ls_tensor_get_flat(y, i) - want) <= 4 * unit(dt) * mag);
            }
            check_accumulate(dt, nds[sh], shapes[sh], g, x, K);
            ls_tensor_release(y), ls_tensor_release(y2), ls_tensor_release(g);
            ls_tensor_release(x), ls_tensor_release(K);
        }
    ls_set_threads(saved);
    int64_t s3[3] = {4, 3, 5}, st[2] = {3, 3};
    ls_tensor *x = make(LS_F32, 3, s3, 0, 1), *bad = make(LS_F32, 2, st, 0, 1);
    CHECK(ls_batchnorm_affine(x, x, bad) == NULL &&
          has_msg("batchnorm_affine: coefficients [3x3] should be [4x3]"));
    CHECK(ls_batchnorm_affine(bad, x, bad) == NULL && has_msg("batchnorm_affine: gradient [3x3]"));
    ls_tensor_release(x), ls_tensor_release(bad);
}

static void test_alloc_failures(void)
{
    int64_t sx[4] = {3, 4, 5, 6}, sc = 4;
    ls_tensor *x = make(LS_F32, 4, sx, 0, 1), *g = make(LS_F32, 4, sx, 0, 1);
    ls_tensor *w = make(LS_F32, 1, &sc, 0, 1), *b = make(LS_F32, 1, &sc, 0, 1);
    ls_tensor *st = ls_batchnorm_grad_stats(g, x, EPS);
    size_t base = ls_alloc_live_bytes();
    int failed = 0;
    for (long n = 1; n <= 6; n++)
        for (int op = 0; op < 4; op++) {
            ls_tensor *m = NULL, *v = NULL;
            ls_alloc_fail_after(n);
            ls_tensor *r = op == 0   ? ls_batchnorm(x, w, b, EPS)
                           : op == 1 ? ls_batchnorm_train(x, w, b, EPS, &m, &v)
                           : op == 2 ? ls_batchnorm_grad_stats(g, x, EPS)
                                     : ls_batchnorm_input_grad(g, x, w, st);
            ls_alloc_fail_after(0);
            if (!r) {
                failed++;
                CHECK(ls_error_code() == LS_ERR_MEM);
                CHECK(m == NULL && v == NULL);
            }
            ls_tensor_release(r), ls_tensor_release(m), ls_tensor_release(v);
            CHECK(ls_alloc_live_bytes() == base);
        }
    CHECK(failed > 0);
    ls_tensor_release(x), ls_tensor_release(g), ls_tensor_release(w), ls_tensor_release(b);
    ls_tensor_release(st);
}

int main(void)
{
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            check_case(d ? LS_F64 : LS_F32, &cases[k], false);
            if (k == 1 || k == 4) check_case(d ? LS_F64 : LS_F32, &cases[k], true);
        }
    test_offset_mean();
    test_threads();
    test_relu_backward();
    test_affine();
    test_errors();
    test_alloc_failures();
    return check_done("ops_batchnorm");
}
