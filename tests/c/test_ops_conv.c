/* Convolution and pooling (engine/ops/conv.c, engine/ops/pool.c) against naive direct loops.
 *
 *   conv2d, conv2d_input_grad, conv2d_weight_grad: both dtypes, many (N, C, H, W, O, kh, kw,
 *     stride, padding) combinations (non-square inputs and kernels, stride 2 and 3, padding wider
 *     than the kernel, a batch large enough for several slices and chunks), also through
 *     non-contiguous inputs, on both kernel paths (AVX-512 where the CPU has it, and BLAS); on
 *     AVX-512, stride-1 cases with Wo = W (forward, input gradient) and C >= 8 (weight gradient)
 *     take the direct kernels (conv_direct.c), the others the im2col ones.
 *     Tolerance: |got - ref| <= 8 eps sum |terms| + tiny (the forward error bound of a
 *     dot product, with room), eps = 2^-23 (f32) or 2^-52 (f64).
 *   maxpool2d, maxpool2d_scatter, maxpool2d_pick, avgpool2d, avgpool2d_backward: both dtypes, exact
 *     (the reference visits elements in the same order), ties and NaN resolved as PyTorch does.
 *   Thread counts: 1 and 2 threads give bitwise equal pools and AVX-512 convs (stride 2 and the
 *     direct stride-1 kernels); BLAS-path convs
 *     agree to rounding (OpenBLAS may split differently).
 *   A second backward through two convolutions without a graph (where the rules add into the
 *     engine's accumulators, in the direct kernels' store) equals the same backward with
 *     create_graph (where they record ops) bit for bit, both dtypes and paths.
 *   Allocation failures: NULL with LS_ERR_MEM, nothing leaked.
 *   Errors: the messages name the op and the shapes. */
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/gemm.h"
#include "ops/nn_ops.h"
#include "ops/ops.h"

static const ls_dtype dtypes[2] = {LS_F32, LS_F64};

static ls_tensor *make(ls_dtype d, int64_t a, int64_t b, int64_t c, int64_t e)
{
    ls_tensor *t = ls_tensor_new(d, 4, (int64_t[]){a, b, c, e});
    int64_t n = ls_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = -1.0 + 2.0 * check_uniform();
        if (d == LS_F32) ((float *)ls_tensor_data(t))[i] = (float)v;
        else ((double *)ls_tensor_data(t))[i] = v;
    }
    return t;
}

static double at(const ls_tensor *t, int64_t a, int64_t b, int64_t c, int64_t e)
{
    return ls_tensor_get(t, (int64_t[]){a, b, c, e});
}

static bool has_msg(const char *sub)
{
    bool ok = strstr(ls_error_message(), sub) != NULL;
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", ls_error_message(), sub);
    return ok;
}

/* ==== convolution ==== */

typedef struct conv_case {
    int64_t N, C, H, W, O, kh, kw, s, p;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 3, 5, 5, 4, 3, 3, 1, 0},   /* plain */
    {2, 3, 7, 5, 4, 3, 2, 1, 1},   /* non-square input and kernel, padding */
    {3, 2, 8, 9, 5, 3, 3, 2, 1},   /* stride 2 */
    {1, 4, 7, 6, 2, 2, 2, 3, 2},   /* stride 3: unread rows; windows of padding only */
    {2, 1, 4, 4, 3, 1, 1, 1, 0},   /* 1x1 */
    {2, 2, 3, 3, 2, 5, 5, 1, 1},   /* kernel wider than the input, padding makes it fit */
    {1, 3, 6, 6, 2, 6, 6, 1, 0},   /* kernel = input: 1x1 output */
    {4, 32, 14, 14, 8, 3, 3, 1, 1},  /* a CNN's second layer, narrower */
    {3, 1, 10, 9, 32, 3, 3, 1, 1},   /* a first layer: K = 9 < O = 32 */
    {1, 2, 3, 140, 3, 3, 3, 1, 1},   /* rows too wide for the vector im2col: the scalar one */
    {30, 16, 32, 32, 4, 3, 3, 1, 1}, /* f64: 1.2 MB of columns per image, several slices */
    {2, 9, 6, 7, 13, 2, 3, 1, 1},    /* stride 1, Wo = W, Ho = H + 1: the direct kernels; 13 rows */
    {2, 12, 5, 21, 20, 5, 5, 1, 2},  /* 5x5 "same": 105 positions, partial column panels */
    {3, 8, 6, 9, 10, 3, 2, 1, 0},    /* direct weight gradient without padding; C = 8: f64 rows
                                      * of one vector per kernel column; 10 rows: 8 + 2 */
    {2, 20, 7, 7, 9, 3, 3, 1, 1},    /* C = 20: channels rounded up to 32 (f32) / 24 (f64) */
    {5, 3, 6, 11, 7, 3, 3, 1, 1},    /* C = 3 < 8 (the im2col weight gradient), odd O, 66
                                      * positions (a vector's tail), 5 images in chunks */
};

static void conv_out(const conv_case *c, int64_t *Ho, int64_t *Wo)
{
    *Ho = (c->H + 2 * c->p - c->kh) / c->s + 1;
    *Wo = (c->W + 2 * c->p - c->kw) / c->s + 1;
}

/* Compares got against ref (doubles, row-major) with per-element bounds mag (sum |terms|). */
static int compare(const char *what, const conv_case *c, ls_dtype d, const ls_tensor *got,
                   const double *ref, const double *mag, int64_t n)
{
    double eps = d == LS_F32 ? 1.0 / (1 << 23) : 1.0 / 4503599627370496.0;
    int bad = 0;
    if (!got || ls_tensor_numel(got) != n) {
        fprintf(stderr, "%s: no result (%s)\n", what, ls_error_message());
        return 1;
    }
    for (int64_t i = 0; i < n; i++) {
        double g = ls_tensor_get_flat(got, i);
        if (!(fabs(g - ref[i]) <= 8 * eps * mag[i] + 1e-300) && bad++ < 3)
            fprintf(stderr, "%s %s case N%lld C%lld %lldx%lld O%lld k%lldx%lld s%lld p%lld: elem "
                    "%lld got %.17g want %.17g\n", what, ls_dtype_name(d), (long long)c->N,
                    (long long)c->C, (long long)c->H, (long long)c->W, (long long)c->O,
                    (long long)c->kh, (long long)c->kw, (long long)c->s, (long long)c->p,
                    (long long)i, g, ref[i]);
    }
    return bad;
}

/* x [N,C,H,W], w [O,C,kh,kw], g [N,O,Ho,Wo]: naive y = conv(x, w), gx = input_grad(g, w),
 * gw = weight_grad(x, g), each with its magnitude sum. */
static void conv_naive(const conv_case *c, const ls_tensor *x, const ls_tensor *w,
                       const ls_tensor *g, double *y, double *ym, double *gx, double *gxm,
                       double *gw, double *gwm)
{
    int64_t Ho, Wo;
    conv_out(c, &Ho, &Wo);
    memset(gx, 0, sizeof(double) * (size_t)(c->N * c->C * c->H * c->W));
    memset(gxm, 0, sizeof(double) * (size_t)(c->N * c->C * c->H * c->W));
    memset(gw, 0, sizeof(double) * (size_t)(c->O * c->C * c->kh * c->kw));
    memset(gwm, 0, sizeof(double) * (size_t)(c->O * c->C * c->kh * c->kw));
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->O; o++)
            for (int64_t a = 0; a < Ho; a++)
                for (int64_t b = 0; b < Wo; b++) {
                    long double s = 0, m = 0;
                    double gv = at(g, n, o, a, b);
                    for (int64_t ch = 0; ch < c->C; ch++)
                        for (int64_t i = 0; i < c->kh; i++)
                            for (int64_t j = 0; j < c->kw; j++) {
                                int64_t h = a * c->s - c->p + i, v = b * c->s - c->p + j;
                                if (h < 0 || h >= c->H || v < 0 || v >= c->W) continue;
                                double xv = at(x, n, ch, h, v), wv = at(w, o, ch, i, j);
                                s += (long double)xv * wv;
                                m += fabsl((long double)xv * wv);
                                int64_t xi = ((n * c->C + ch) * c->H + h) * c->W + v;
                                int64_t wi = ((o * c->C + ch) * c->kh + i) * c->kw + j;
                                gx[xi] += gv * wv;
                                gxm[xi] += fabs(gv * wv);
                                gw[wi] += gv * xv;
                                gwm[wi] += fabs(gv * xv);
                            }
                    int64_t yi = ((n * c->O + o) * Ho + a) * Wo + b;
                    y[yi] = (double)s;
                    ym[yi] = (double)m;
                }
}

/* A non-contiguous tensor with t's values: a permuted copy permuted back. */
static ls_tensor *noncontig(ls_tensor *t)
{
    int perm[4] = {0, 2, 3, 1}, inv[4] = {0, 3, 1, 2};
    ls_tensor *p = ls_view_permute(t, perm);
    ls_tensor *c = ls_tensor_clone(p);
    ls_tensor *v = ls_view_permute(c, inv);
    ls_tensor_release(p);
    ls_tensor_release(c);
    return v;
}

static void test_conv(void)
{
    for (size_t ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++) {
        const conv_case *c = &conv_cases[ci];
        int64_t Ho, Wo;
        conv_out(c, &Ho, &Wo);
        int64_t nx = c->N * c->C * c->H * c->W, nw = c->O * c->C * c->kh * c->kw,
                ny = c->N * c->O * Ho * Wo;
        double *buf = malloc(sizeof(double) * (size_t)(2 * (nx + nw + ny)));
        double *y = buf, *ym = y + ny, *gx = ym + ny, *gxm = gx + nx, *gw = gxm + nx;
        double *gwm = gw + nw;
        for (int di = 0; di < 2; di++) {
            ls_dtype d = dtypes[di];
            if (ci == 10 && d == LS_F32) continue;   /* the big case in f64 only */
            ls_tensor *x = make(d, c->N, c->C, c->H, c->W), *w = make(d, c->O, c->C, c->kh, c->kw);
            ls_tensor *g = make(d, c->N, c->O, Ho, Wo);
            conv_naive(c, x, w, g, y, ym, gx, gxm, gw, gwm);
            ls_tensor *yt = ls_conv2d(x, w, c->s, c->p);
            ls_tensor *gxt = ls_conv2d_input_grad(g, w, c->s, c->p, c->H, c->W);
            ls_tensor *gwt = ls_conv2d_weight_grad(x, g, c->s, c->p, c->kh, c->kw);
            CHECK(compare("conv2d", c, d, yt, y, ym, ny) == 0);
            CHECK(compare("conv2d_input_grad", c, d, gxt, gx, gxm, nx) == 0);
            CHECK(compare("conv2d_weight_grad", c, d, gwt, gw, gwm, nw) == 0);
            if (ci < 4) {   /* the same through non-contiguous operands */
                ls_tensor *xn = noncontig(x), *wn = noncontig(w), *gn = noncontig(g);
                CHECK(!ls_tensor_is_contiguous(xn));
                ls_tensor *y2 = ls_conv2d(xn, wn, c->s, c->p);
                ls_tensor *gx2 = ls_conv2d_input_grad(gn, wn, c->s, c->p, c->H, c->W);
                ls_tensor *gw2 = ls_conv2d_weight_grad(xn, gn, c->s, c->p, c->kh, c->kw);
                CHECK(compare("conv2d (strided)", c, d, y2, y, ym, ny) == 0);
                CHECK(compare("conv2d_input_grad (strided)", c, d, gx2, gx, gxm, nx) == 0);
                CHECK(compare("conv2d_weight_grad (strided)", c, d, gw2, gw, gwm, nw) == 0);
                ls_tensor_release(xn), ls_tensor_release(wn), ls_tensor_release(gn);
                ls_tensor_release(y2), ls_tensor_release(gx2), ls_tensor_release(gw2);
            }
            ls_tensor_release(yt), ls_tensor_release(gxt), ls_tensor_release(gwt);
            ls_tensor_release(x), ls_tensor_release(w), ls_tensor_release(g);
        }
        free(buf);
    }
}

/* conv2d's recorded backward gives the adjoint ops' results. */
static void test_conv_autograd(void)
{
    ls_tensor *x = make(LS_F64, 2, 3, 6, 5), *w = make(LS_F64, 4, 3, 3, 3);
    ls_requires_grad_(x, true);
    ls_requires_grad_(w, true);
    ls_tensor *y = ls_conv2d(x, w, 2, 1);
    ls_tensor *u = make(LS_F64, 2, 4, 3, 3);
    ls_grad_opts o = {.grad_outputs = &u};
    ls_tensor *gr[2] = {0};
    CHECK(ls_autograd_grad(1, &y, 2, (ls_tensor *[]){x, w}, &o, gr) == LS_OK);
    ls_tensor *gx = ls_conv2d_input_grad(u, w, 2, 1, 6, 5);
    ls_tensor *gw = ls_conv2d_weight_grad(x, u, 2, 1, 3, 3);
    for (int64_t i = 0; i < ls_tensor_numel(gx); i++)
        CHECK(ls_tensor_get_flat(gr[0], i) == ls_tensor_get_flat(gx, i));
    for (int64_t i = 0; i < ls_tensor_numel(gw); i++)
        CHECK(ls_tensor_get_flat(gr[1], i) == ls_tensor_get_flat(gw, i));
    ls_tensor_release(gr[0]), ls_tensor_release(gr[1]), ls_tensor_release(gx);
    ls_tensor_release(gw), ls_tensor_release(y), ls_tensor_release(u);
    ls_tensor_release(x), ls_tensor_release(w);
}

/* ==== pooling ==== */

typedef struct pool_case {
    int64_t N, C, H, W, k, s;
} pool_case;

static const pool_case pool_cases[] = {
    {2, 3, 4, 6, 2, 2}, {1, 2, 5, 5, 3, 1}, {2, 2, 5, 7, 2, 3}, {3, 4, 7, 7, 2, 2},
    {1, 1, 3, 3, 3, 3}, {2, 16, 28, 28, 2, 2},
    {1, 2, 9, 71, 2, 2},   /* k = s = 2 with 35 windows a row: full vectors and a ragged one */
};

/* the reference argmax: row-major first maximum, NaN replaces */
static int64_t ref_argmax(const ls_tensor *x, int64_t n, int64_t ch, int64_t h0, int64_t w0,
                          int64_t k, int64_t *hi, int64_t *wi)
{
    double m = at(x, n, ch, h0, w0);
    *hi = h0, *wi = w0;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            double v = at(x, n, ch, h0 + i, w0 + j);
            if (v > m || isnan(v)) { m = v; *hi = h0 + i; *wi = w0 + j; }
        }
    return 0;
}

static bool same(double a, double b) { return a == b || (isnan(a) && isnan(b)); }

static void check_pools(const pool_case *c, ls_dtype d, ls_tensor *x)
{
    int64_t Ho = (c->H - c->k) / c->s + 1, Wo = (c->W - c->k) / c->s + 1;
    ls_tensor *g = make(d, c->N, c->C, Ho, Wo), *gg = make(d, c->N, c->C, c->H, c->W);
    ls_tensor *mp = ls_maxpool2d(x, c->k, c->s), *sc = ls_maxpool2d_scatter(x, g, c->k, c->s);
    ls_tensor *pk = ls_maxpool2d_pick(x, gg, c->k, c->s), *ap = ls_avgpool2d(x, c->k, c->s);
    ls_tensor *ab = ls_avgpool2d_backward(g, c->k, c->s, c->H, c->W);
    CHECK(mp && sc && pk && ap && ab);
    if (!(mp && sc && pk && ap && ab)) {
        fprintf(stderr, "  %s\n", ls_error_message());
        goto done;
    }
    CHECK(mp->shape[2] == Ho && mp->shape[3] == Wo && ap->shape[2] == Ho && pk->shape[3] == Wo);
    int64_t nx = c->N * c->C * c->H * c->W;
    double *scr = calloc((size_t)nx, sizeof(double)), *abr = calloc((size_t)nx, sizeof(double));
    int bad = 0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t ch = 0; ch < c->C; ch++)
            for (int64_t a = 0; a < Ho; a++)
                for (int64_t b = 0; b < Wo; b++) {
                    int64_t hi, wi;
                    ref_argmax(x, n, ch, a * c->s, b * c->s, c->k, &hi, &wi);
                    int64_t xi = ((n * c->C + ch) * c->H + hi) * c->W + wi;
                    double gv = at(g, n, ch, a, b);
                    scr[xi] = d == LS_F32 ? (double)((float)scr[xi] + (float)gv) : scr[xi] + gv;
                    if (!same(at(mp, n, ch, a, b), at(x, n, ch, hi, wi))) bad++;
                    if (!same(at(pk, n, ch, a, b), at(gg, n, ch, hi, wi))) bad++;
                    double s = 0, inv = 1.0 / (double)(c->k * c->k);
                    for (int64_t i = 0; i < c->k; i++)
                        for (int64_t j = 0; j < c->k; j++) {
                            double v = at(x, n, ch, a * c->s + i, b * c->s + j);
                            s = d == LS_F32 ? (double)((float)s + (float)v) : s + v;
                            int64_t q =
                                ((n * c->C + ch) * c->H + a * c->s + i) * c->W + b * c->s + j;
                            double add = d == LS_F32 ? (double)((float)gv * (float)inv) : gv * inv;
                            abr[q] = d == LS_F32 ? (double)((float)abr[q] + (float)add)
                                                 : abr[q] + add;
                        }
                    double avg = d == LS_F32 ? (double)((float)s / (float)(c->k * c->k))
                                             : s / (double)(c->k * c->k);
                    if (!same(at(ap, n, ch, a, b), avg)) bad++;
                }
    for (int64_t i = 0; i < nx; i++) {
        if (!same(ls_tensor_get_flat(sc, i), scr[i])) bad++;
        if (!same(ls_tensor_get_flat(ab, i), abr[i])) bad++;
    }
    if (bad)
        fprintf(stderr, "pools %s N%lld C%lld %lldx%lld k%lld s%lld: %d mismatches\n",
                ls_dtype_name(d), (long long)c->N, (long long)c->C, (long long)c->H,
                (long long)c->W, (long long)c->k, (long long)c->s, bad);
    CHECK(bad == 0);
    free(scr);
    free(abr);
done:
    ls_tensor_release(g), ls_tensor_release(gg), ls_tensor_release(mp), ls_tensor_release(sc);
    ls_tensor_release(pk), ls_tensor_release(ap), ls_tensor_release(ab);
}

static void test_pools(void)
{
    for (size_t ci = 0; ci < sizeof pool_cases / sizeof pool_cases[0]; ci++)
        for (int di = 0; di < 2; di++) {
            const pool_case *c = &pool_cases[ci];
            ls_tensor *x = make(dtypes[di], c->N, c->C, c->H, c->W);
            check_pools(c, dtypes[di], x);
            ls_tensor *xn = noncontig(x);
            check_pools(c, dtypes[di], xn);
            ls_tensor_release(xn);
            /* ties and NaN: values from {-1, 0, 1} with some NaNs */
            int64_t n = ls_tensor_numel(x);
            for (int64_t i = 0; i < n; i++) {
                double u = check_uniform();
                double v = u < 0.05 ? NAN : (double)((int)(u * 3) - 1);
                ls_tensor_set(x, (int64_t[]){i / (c->C * c->H * c->W), i / (c->H * c->W) % c->C,
                                             i / c->W % c->H, i % c->W}, v);
            }
            check_pools(c, dtypes[di], x);
            ls_tensor_release(x);
        }
}

/* A tie sends the whole gradient to the first maximum (PyTorch's choice). */
static void test_ties(void)
{
    ls_tensor *x = ls_tensor_zeros(LS_F64, 4, (int64_t[]){1, 1, 2, 2});
    ls_requires_grad_(x, true);
    ls_tensor *y = ls_maxpool2d(x, 2, 0);
    ls_tensor *s = ls_sum(y, 0, NULL, false);
    ls_tensor *gx = NULL;
    CHECK(ls_autograd_grad(1, &s, 1, &x, &(ls_grad_opts){0}, &gx) == LS_OK);
    CHECK(gx && ls_tensor_get_flat(gx, 0) == 1 && ls_tensor_get_flat(gx, 1) == 0 &&
          ls_tensor_get_flat(gx, 2) == 0 && ls_tensor_get_flat(gx, 3) == 0);
    ls_tensor_release(gx), ls_tensor_release(s), ls_tensor_release(y), ls_tensor_release(x);
}

/* ==== thread-count independence ==== */

static bool bitwise(const ls_tensor *a, const ls_tensor *b)
{
    return a && b && ls_tensor_numel(a) == ls_tensor_numel(b) &&
           memcmp(ls_tensor_data(a), ls_tensor_data(b),
                  (size_t)ls_tensor_numel(a) * ls_dtype_size(a->dtype)) == 0;
}

/* F = <dL/dw1, v1> + <dL/dw2, v2> for L = sum(conv(conv(x, w1), w2)^2 r): its gradient without a
 * graph (the rules add into accumulators where the direct kernels serve the shapes) and with
 * create_graph (they record ops) agree bit for bit. */
static void test_conv_second_order(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        ls_tensor *x = make(d, 2, 8, 6, 5), *w1 = make(d, 8, 8, 3, 3), *w2 = make(d, 4, 8, 3, 3);
        ls_tensor *r = make(d, 2, 4, 6, 5), *v1 = make(d, 8, 8, 3, 3), *v2 = make(d, 4, 8, 3, 3);
        ls_requires_grad_(x, true), ls_requires_grad_(w1, true), ls_requires_grad_(w2, true);
        ls_tensor *outs[2][3] = {{0}};
        for (int cg = 0; cg < 2; cg++) {
            ls_tmp t = {0};
            ls_tensor *y = ls_tmp_keep(&t, ls_conv2d(ls_tmp_keep(&t, ls_conv2d(x, w1, 1, 1)), w2, 1, 1));
            ls_tensor *L = ls_tmp_keep(&t, ls_sum(ls_tmp_keep(&t, ls_mul(ls_tmp_keep(&t,
                                       ls_mul(y, y)), r)), 0, NULL, false));
            ls_tensor *g[2] = {0};
            ls_grad_opts o1 = {.create_graph = true, .retain_graph = true};
            CHECK(ls_autograd_grad(1, &L, 2, (ls_tensor *[]){w1, w2}, &o1, g) == LS_OK);
            ls_tmp_keep(&t, g[0]), ls_tmp_keep(&t, g[1]);
            ls_tensor *F = ls_tmp_keep(&t, ls_add(
                ls_tmp_keep(&t, ls_sum(ls_tmp_keep(&t, ls_mul(g[0], v1)), 0, NULL, false)),
                ls_tmp_keep(&t, ls_sum(ls_tmp_keep(&t, ls_mul(g[1], v2)), 0, NULL, false))));
            ls_grad_opts o2 = {.create_graph = cg == 1};
            CHECK(ls_autograd_grad(1, &F, 3, (ls_tensor *[]){x, w1, w2}, &o2, outs[cg]) == LS_OK);
            ls_tmp_free(&t);
        }
        for (int i = 0; i < 3; i++) {
            CHECK(bitwise(outs[0][i], outs[1][i]));
            ls_tensor_release(outs[0][i]), ls_tensor_release(outs[1][i]);
        }
        ls_tensor_release(x), ls_tensor_release(w1), ls_tensor_release(w2);
        ls_tensor_release(r), ls_tensor_release(v1), ls_tensor_release(v2);
    }
}

static void test_threads(void)
{
    int saved = ls_get_threads();
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        ls_tensor *x = make(d, 16, 8, 20, 18), *w = make(d, 12, 8, 3, 3);
        ls_tensor *g = make(d, 16, 12, 10, 9), *gp = make(d, 16, 8, 10, 9);
        ls_tensor *g1 = make(d, 16, 12, 20, 18), *x1 = make(d, 16, 1, 20, 18), *r[2][12];
        for (int t = 0; t < 2; t++) {
            ls_set_threads(t + 1);
            r[t][0] = ls_conv2d(x, w, 2, 1);
            r[t][1] = ls_conv2d_input_grad(g, w, 2, 1, 20, 18);
            r[t][2] = ls_conv2d_weight_grad(x, g, 2, 1, 3, 3);
            r[t][8] = ls_conv2d(x, w, 1, 1);   /* stride 1: the direct kernels */
            r[t][9] = ls_conv2d_input_grad(g1, w, 1, 1, 20, 18);
            r[t][10] = ls_conv2d_weight_grad(x, g1, 1, 1, 3, 3);
            r[t][11] = ls_conv2d_weight_grad(x1, g1, 1, 1, 3, 3);   /* C = 1: im2col */
            r[t][3] = ls_maxpool2d(x, 2, 0);
            r[t][4] = ls_maxpool2d_scatter(x, gp, 2, 2);
            r[t][5] = ls_maxpool2d_pick(x, x, 3, 1);
            r[t][6] = ls_avgpool2d(x, 3, 2);
            r[t][7] = ls_avgpool2d_backward(gp, 2, 2, 20, 18);
        }
        for (int k = 3; k < 8; k++) CHECK(bitwise(r[0][k], r[1][k]));
        /* conv: the AVX-512 path is thread-independent; on the BLAS path, with one thread the GEMMs
         * are per image and with more one per slice, and OpenBLAS's splitting may change the last
         * bits too */
        bool own = strcmp(ls_gemm_path(), "avx512") == 0;
        for (int k = 0; k < 12; k++) {
            if (k == 3) k = 8;   /* 3..7: the pools */
            CHECK(r[0][k] && r[1][k]);
            if (!r[0][k] || !r[1][k]) continue;
            double worst = 0, scale = 0;
            for (int64_t i = 0; i < ls_tensor_numel(r[0][k]); i++) {
                double a = ls_tensor_get_flat(r[0][k], i), b = ls_tensor_get_flat(r[1][k], i);
                worst = fmax(worst, fabs(a - b));
                scale = fmax(scale, fabs(a));
            }
            double tol = (d == LS_F32 ? 1e-5 : 1e-13) * scale;   /* relative to the largest value */
            if (!(worst <= tol))
                fprintf(stderr, "conv op %d %s: 1 vs 2 threads differ by %g\n", k,
                        ls_dtype_name(d), worst);
            CHECK(worst <= tol);
            if (own) CHECK(bitwise(r[0][k], r[1][k]));
            else if (!bitwise(r[0][k], r[1][k]))
                printf("note: conv op %d (%s, BLAS path) differs between 1 and 2 threads by %g\n",
                       k, ls_dtype_name(d), worst);
        }
        for (int t = 0; t < 2; t++)
            for (int k = 0; k < 12; k++) ls_tensor_release(r[t][k]);
        ls_tensor_release(x), ls_tensor_release(w), ls_tensor_release(g), ls_tensor_release(gp);
        ls_tensor_release(g1), ls_tensor_release(x1);
    }
    ls_set_threads(saved);
}

/* ==== errors ==== */

static void test_errors(void)
{
    ls_tensor *x = make(LS_F32, 8, 3, 28, 28), *w1 = make(LS_F32, 32, 1, 3, 3);
    ls_tensor *w3 = make(LS_F32, 32, 3, 3, 3), *wd = make(LS_F64, 32, 3, 3, 3);
    ls_tensor *x3 = ls_view_select(x, 0, 0), *big = make(LS_F32, 4, 3, 31, 5);
    ls_tensor *xi = ls_tensor_zeros(LS_I64, 4, (int64_t[]){1, 1, 4, 4});
    ls_tensor *r;

    CHECK((r = ls_conv2d(x, w1, 1, 0)) == NULL);
    CHECK(has_msg("conv2d: input [8x3x28x28] has 3 channels but weight [32x1x3x3] expects 1"));
    CHECK((r = ls_conv2d(x3, w3, 1, 0)) == NULL);
    CHECK(has_msg("conv2d: expected a 4-D input [N x C x H x W], got [3x28x28]"));
    CHECK((r = ls_conv2d(x, x3, 1, 0)) == NULL);
    CHECK(has_msg("conv2d: expected a 4-D weight"));
    CHECK((r = ls_conv2d(x, wd, 1, 0)) == NULL);
    CHECK(has_msg("conv2d: dtype mismatch: f32 and f64"));
    CHECK((r = ls_conv2d(x, big, 1, 0)) == NULL);
    CHECK(has_msg("conv2d: kernel 31x5 is larger than the padded input 28x28 (input "
                  "[8x3x28x28], padding 0)"));
    CHECK((r = ls_conv2d(x, big, 1, 1)) == NULL);
    CHECK(has_msg("padded input 30x30"));
    CHECK((r = ls_conv2d(x, w3, 0, 0)) == NULL);
    CHECK(has_msg("conv2d: stride must be >= 1, got 0"));
    CHECK((r = ls_conv2d(x, w3, 1, -1)) == NULL);
    CHECK(has_msg("conv2d: padding must be in [0, 2^30], got -1"));
    CHECK((r = ls_conv2d(x, w3, 1, INT64_MAX)) == NULL);
    CHECK(has_msg("padding must be"));
    CHECK((r = ls_conv2d(xi, xi, 1, 0)) == NULL);
    CHECK(has_msg("conv2d: expected a float tensor"));

    ls_tensor *g = make(LS_F32, 8, 32, 26, 26), *gbad = make(LS_F32, 8, 32, 25, 26);
    CHECK((r = ls_conv2d_input_grad(gbad, w3, 1, 0, 28, 28)) == NULL);
    CHECK(has_msg("conv2d_input_grad: output gradient [8x32x25x26] should be [8x32x26x26]"));
    CHECK((r = ls_conv2d_weight_grad(x, gbad, 1, 0, 3, 3)) == NULL);
    CHECK(has_msg("conv2d_weight_grad: output gradient [8x32x25x26] should be [8x32x26x26]"));
    CHECK((r = ls_conv2d_weight_grad(x, g, 1, 0, 0, 3)) == NULL);
    CHECK(has_msg("conv2d_weight_grad: kernel size 0x3 must be at least 1x1"));
    r = ls_conv2d_input_grad(g, w3, 1, 0, 28, 28);
    CHECK(r && r->shape[1] == 3 && r->shape[2] == 28);
    ls_tensor_release(r);

    CHECK((r = ls_maxpool2d(x3, 2, 0)) == NULL);
    CHECK(has_msg("maxpool2d: expected a 4-D input [N x C x H x W], got [3x28x28]"));
    CHECK((r = ls_maxpool2d(x, 29, 0)) == NULL);
    CHECK(has_msg("maxpool2d: kernel 29x29 is larger than the input 28x28 (input [8x3x28x28])"));
    CHECK((r = ls_avgpool2d(x, 0, 0)) == NULL);
    CHECK(has_msg("avgpool2d: kernel size must be in [1, 46340], got 0"));
    CHECK((r = ls_maxpool2d(xi, 2, 0)) == NULL);
    CHECK(has_msg("maxpool2d: expected a float tensor (f32 or f64), got i64"));
    CHECK((r = ls_maxpool2d_scatter(x, g, 2, 2)) == NULL);
    CHECK(has_msg("maxpool2d_scatter: gradient [8x32x26x26] should be [8x3x14x14]"));
    CHECK((r = ls_maxpool2d_pick(x, g, 2, 2)) == NULL);
    CHECK(has_msg("maxpool2d_pick: values [8x32x26x26] should be [8x3x28x28]"));
    CHECK((r = ls_avgpool2d_backward(g, 2, 2, 28, 28)) == NULL);
    CHECK(has_msg("avgpool2d_backward: gradient [8x32x26x26] should be [8x32x14x14]"));

    /* empty batch and zero channels */
    ls_tensor *e = ls_tensor_zeros(LS_F32, 4, (int64_t[]){0, 3, 5, 5});
    r = ls_conv2d(e, w3, 1, 1);
    CHECK(r && r->shape[0] == 0 && r->shape[1] == 32 && r->shape[2] == 5);
    ls_tensor_release(r);
    ls_tensor *x0 = ls_tensor_zeros(LS_F32, 4, (int64_t[]){2, 0, 5, 5});
    ls_tensor *w0 = ls_tensor_zeros(LS_F32, 4, (int64_t[]){4, 0, 3, 3});
    r = ls_conv2d(x0, w0, 1, 0);
    CHECK(r && r->shape[1] == 4 && r->shape[2] == 3 && ls_tensor_get_flat(r, 0) == 0);
    ls_tensor_release(r);

    /* zero-size tensors keep their other dims bounded (ls_shape_check), yet within that bound a
     * product of the geometry can still be too large: an error, not an overflow */
    CHECK(ls_tensor_zeros(LS_F32, 4, (int64_t[]){0, 1 << 20, 1 << 20, 1 << 20}) == NULL);
    CHECK(has_msg("shape [0x1048576x1048576x1048576] is too large"));
    ls_tensor *xh = ls_tensor_zeros(LS_F32, 4, (int64_t[]){0, 1 << 13, 1 << 13, 1 << 13});
    ls_tensor *wh = ls_tensor_zeros(LS_F32, 4, (int64_t[]){0, 1 << 13, 1 << 13, 1 << 13});
    CHECK((r = ls_conv2d(xh, wh, 1, 0)) == NULL);
    CHECK(has_msg("conv2d: input [0x8192x8192x8192] with weight [0x8192x8192x8192] is too large"));
    ls_tensor_release(xh), ls_tensor_release(wh);

    ls_tensor_release(e), ls_tensor_release(x0), ls_tensor_release(w0);
    ls_tensor_release(g), ls_tensor_release(gbad);
    ls_tensor_release(x), ls_tensor_release(w1), ls_tensor_release(w3), ls_tensor_release(wd);
    ls_tensor_release(x3), ls_tensor_release(big), ls_tensor_release(xi);
}

/* Every allocation failure inside the ops gives NULL and an error, and leaks nothing. */
static void test_alloc_failures(void)
{
    ls_tensor *x = make(LS_F32, 3, 2, 9, 8), *w = make(LS_F32, 4, 2, 3, 3);
    ls_tensor *g = make(LS_F32, 3, 4, 5, 4), *p = make(LS_F32, 3, 2, 4, 4);
    ls_tensor *pg = make(LS_F32, 3, 2, 2, 2);
    int saved = ls_get_threads();
    for (int slice = 0; slice < 2; slice++) {   /* per-image and per-slice GEMM plans */
        ls_set_threads(slice + 1);
        size_t base = ls_alloc_live_bytes();
        int failed = 0;
        for (long n = 1; n <= 4; n++) {
            for (int op = 0; op < 5; op++) {
                ls_alloc_fail_after(n);
                ls_tensor *r = op == 0   ? ls_conv2d(x, w, 2, 1)
                               : op == 1 ? ls_conv2d_input_grad(g, w, 2, 1, 9, 8)
                               : op == 2 ? ls_conv2d_weight_grad(x, g, 2, 1, 3, 3)
                               : op == 3 ? ls_maxpool2d_scatter(p, pg, 2, 2)
                                         : ls_avgpool2d_backward(g, 2, 1, 6, 5);
                ls_alloc_fail_after(0);
                if (!r) {
                    failed++;
                    CHECK(ls_error_code() == LS_ERR_MEM);
                }
                ls_tensor_release(r);
            }
        }
        CHECK(failed > 0);
        CHECK(ls_alloc_live_bytes() == base);
    }
    ls_set_threads(saved);
    ls_tensor_release(x), ls_tensor_release(w), ls_tensor_release(g), ls_tensor_release(p);
    ls_tensor_release(pg);
}

int main(void)
{
    /* the conv tests on both paths: the CPU's (AVX-512 where available) and BLAS */
    for (int blas = 0; blas < 2; blas++) {
        ls_gemm_use_blas(blas);
        printf("conv path: %s\n", ls_gemm_path());
        test_conv();
        test_conv_autograd();
        test_threads();
        test_conv_second_order();
        test_alloc_failures();
    }
    ls_gemm_use_blas(false);
    test_pools();
    test_ties();
    test_errors();
    return check_done("ops_conv");
}
