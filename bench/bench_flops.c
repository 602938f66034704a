/* bench_flops: how far the engine's heavy kernels are from the machine's arithmetic limit.
 *
 * The limit is measured in the same run: `fma_peak` is a loop of independent 512-bit fused
 * multiply-adds (24 accumulators, enough to cover the FMA latency on both pipes), run on every
 * thread of the engine's pool, so it is the peak of the cores as they run at that moment (turbo,
 * a neighbour's load). Each workload's samples alternate with samples of that loop (bench_pair), and
 * the fraction of the peak is taken per pair, then the median: drift of the clock between pairs
 * cancels. A 256-bit FMA loop is timed once per thread count for reference (half the 512-bit peak on
 * CPUs with full-width AVX-512 units).
 *
 * Workloads (batch 128, the CNN of bench_train.lua: conv 1->32 on 28x28, BN, maxpool 2, ReLU,
 * conv 32->64 on 14x14, BN, maxpool 2, ReLU, linear 3136->128, ReLU, linear 128->10), f32 and f64:
 *   conv1_forward, conv1_weight_grad, conv2_forward, conv2_input_grad, conv2_weight_grad: the
 *       engine's conv ops (ls_conv2d, ls_conv2d_input_grad, ls_conv2d_weight_grad) on those shapes,
 *       each 2 N O Ho Wo C kh kw FLOPs;
 *   cmp_conv1_forward, cmp_conv1_weight_grad, cmp_conv2_forward, cmp_conv2_input_grad,
 *       cmp_conv2_weight_grad: the same on the layers of the methods comparison's CNN
 *       (ls.nn.cnn{channels = {16, 32}}: conv 1->16 on 28x28, conv 16->32 on 14x14);
 *   cnn_grad: the CNN's loss and its gradient in all 10 parameters (ls_autograd_grad), the ops
 *       called from C (no Lua, no optimizer); FLOPs of its products only (conv1 forward and weight
 *       gradient, conv2 three products, each linear three);
 *   cnn_hvp: a Hessian-vector product of that loss (the gradient with create_graph, <g, v>, its
 *       gradient); its products: 4 conv1-sized, 9 per conv2 and per linear (the double backward of
 *       a bilinear op whose two inputs both depend on the parameters takes 2 products per product
 *       of the forward and of the backward: 3 + 6), so the HVP has 2.96x the train step's product
 *       FLOPs;
 *   matmul_1024: ls_matmul of two 1024 x 1024 matrices, 2 n^3 FLOPs.
 * Elementwise work (batch norm, pooling, ReLU, the loss) is not counted: a fraction below 1 is
 * the cost of everything that is not a product, plus the products' own inefficiency.
 *
 * stdout: the project's CSV with peer "fma_peak": peer_ms = the time the workload's FLOPs take at
 * the measured peak, ratio = ours / that = 1 / (fraction of the peak). stderr: the machine, then a
 * table with the FLOPs, our GFLOP/s, the peak GFLOP/s, the fraction, and the minor page faults per
 * call (fresh memory the kernel zeroes), per workload. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "bench_util.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FL_X86 1
#else
#define FL_X86 0
#endif

#define FL_BATCH 128
#define FL_PEAK_ITERS 200000L   /* per thread and call: 24 * 200000 FMAs of 16 floats */
#define FL_ACC 24

/* ---- the peak loop ---- */

typedef struct peak_ctx {
    ls_dtype dt;
    int bits;        /* 512 or 256 */
    volatile double sink;
} peak_ctx;

#if FL_X86
/* x = x * a + b on FL_ACC independent registers; a, b keep x bounded. Returns a sum so that the work
 * is not removed. */
__attribute__((target("avx512f"))) static double peak_512(long iters, bool f32)
{
    double out = 0;
    if (f32) {
        __m512 x[FL_ACC], a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
        for (int i = 0; i < FL_ACC; i++) x[i] = _mm512_set1_ps((float)i);
        for (long k = 0; k < iters; k++) {
            _Pragma("GCC unroll 24") for (int i = 0; i < FL_ACC; i++)
                x[i] = _mm512_fmadd_ps(x[i], a, b);
        }
        for (int i = 0; i < FL_ACC; i++) out += _mm512_reduce_add_ps(x[i]);
    } else {
        __m512d x[FL_ACC], a = _mm512_set1_pd(0.999), b = _mm512_set1_pd(0.001);
        for (int i = 0; i < FL_ACC; i++) x[i] = _mm512_set1_pd((double)i);
        for (long k = 0; k < iters; k++) {
            _Pragma("GCC unroll 24") for (int i = 0; i < FL_ACC; i++)
                x[i] = _mm512_fmadd_pd(x[i], a, b);
        }
        for (int i = 0; i < FL_ACC; i++) out += _mm512_reduce_add_pd(x[i]);
    }
    return out;
}

__attribute__((target("avx2,fma"))) static double peak_256(long iters, bool f32)
{
    double out = 0;
    if (f32) {
        __m256 x[12], a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
        for (int i = 0; i < 12; i++) x[i] = _mm256_set1_ps((float)i);
        for (long k = 0; k < 4 * iters; k++) {
            _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)
                x[i] = _mm256_fmadd_ps(x[i], a, b);
        }
        float t[8];
        for (int i = 0; i < 12; i++) {
            _mm256_storeu_ps(t, x[i]);
            out += t[0];
        }
    } else {
        __m256d x[12], a = _mm256_set1_pd(0.999), b = _mm256_set1_pd(0.001);
        for (int i = 0; i < 12; i++) x[i] = _mm256_set1_pd((double)i);
        for (long k = 0; k < 4 * iters; k++) {
            _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++)
                x[i] = _mm256_fmadd_pd(x[i], a, b);
        }
        double t[4];
        for (int i = 0; i < 12; i++) {
            _mm256_storeu_pd(t, x[i]);
            out += t[0];
        }
    }
    return out;
}
#endif

static void peak_chunk(void *vctx, int64_t begin, int64_t end)
{
    peak_ctx *c = vctx;
#if FL_X86
    for (int64_t i = begin; i < end; i++)
        c->sink += c->bits == 512 ? peak_512(FL_PEAK_ITERS, c->dt == LS_F32)
                                  : peak_256(FL_PEAK_ITERS, c->dt == LS_F32);
#else
    (void)begin, (void)end, (void)c;
#endif
}

/* One call: every thread of the pool runs the loop once. */
static void peak_call(void *vctx) { ls_parallel_for(ls_get_threads(), 1, peak_chunk, vctx); }

/* FLOPs of one peak_call (both widths do the same number of FLOPs: the 256-bit loop runs four times
 * the iterations on half-width vectors, 12 accumulators). */
static double peak_flops(ls_dtype dt)
{
    double lanes = dt == LS_F32 ? 16 : 8;
    return 2.0 * lanes * FL_ACC * (double)FL_PEAK_ITERS * ls_get_threads();
}

/* ---- data ---- */

static ls_tensor *randn(ls_dtype dt, int nd, const int64_t *shape, uint64_t seed, double std)
{
    ls_tensor *t = ls_tensor_new(dt, nd, shape);
    if (!t) bench_die("bench_flops");
    ls_rng r;
    ls_rng_init(&r, seed);
    ls_rng_normal(&r, dt, ls_tensor_data(t), ls_tensor_numel(t), 0.0, std);
    return t;
}

/* ---- the conv ops ---- */

typedef enum { CV_FORWARD, CV_INPUT_GRAD, CV_WEIGHT_GRAD } cv_kind;

typedef struct conv_ctx {
    cv_kind kind;
    ls_tensor *x, *w, *g;
    int64_t H, W, k;
} conv_ctx;

static void conv_call(void *vctx)
{
    conv_ctx *c = vctx;
    ls_tensor *out = c->kind == CV_FORWARD ? ls_conv2d(c->x, c->w, 1, 1)
                     : c->kind == CV_INPUT_GRAD
                         ? ls_conv2d_input_grad(c->g, c->w, 1, 1, c->H, c->W)
                         : ls_conv2d_weight_grad(c->x, c->g, 1, 1, c->k, c->k);
    if (!out) bench_die("conv");
    ls_tensor_release(out);
}

/* conv C -> O, 3x3, padding 1, on H x W: 2 N O H W C 9 FLOPs */
static double conv_flops(int64_t C, int64_t O, int64_t H, int64_t W)
{
    return 2.0 * FL_BATCH * (double)O * (double)(H * W) * (double)C * 9.0;
}

static void conv_init(conv_ctx *c, ls_dtype dt, cv_kind kind, int64_t C, int64_t O, int64_t H)
{
    *c = (conv_ctx){.kind = kind, .H = H, .W = H, .k = 3};
    c->x = randn(dt, 4, (int64_t[]){FL_BATCH, C, H, H}, 1, 1.0);
    c->w = randn(dt, 4, (int64_t[]){O, C, 3, 3}, 2, 0.1);
    c->g = randn(dt, 4, (int64_t[]){FL_BATCH, O, H, H}, 3, 1.0);
}

static void conv_free(conv_ctx *c)
{
    ls_tensor_release(c->x);
    ls_tensor_release(c->w);
    ls_tensor_release(c->g);
}

/* ---- the CNN ---- */

#define CNN_NP 10
typedef struct cnn_ctx {
    ls_tensor *x, *y;
    ls_tensor *p[CNN_NP];   /* w1, bn1 w, b, w2, bn2 w, b, fc1 W, b, fc2 W, b */
    ls_tensor *v[CNN_NP];   /* the HVP's direction */
    bool hvp;
} cnn_ctx;

static const int64_t cnn_shapes[CNN_NP][4] = {
    {32, 1, 3, 3}, {32}, {32}, {64, 32, 3, 3}, {64}, {64}, {128, 3136}, {128}, {10, 128}, {10}};
static const int cnn_ndim[CNN_NP] = {4, 1, 1, 4, 1, 1, 2, 1, 2, 1};

/* r = f(a) with a released: the graph keeps what the backward needs. */
static ls_tensor *cnn_then(ls_tensor *a, ls_tensor *r)
{
    ls_tensor_release(a);
    if (!r) bench_die("cnn forward");
    return r;
}

static ls_tensor *cnn_loss(cnn_ctx *c)
{
    ls_tensor *h = ls_tensor_retain(c->x);
    for (int s = 0; s < 2; s++) {
        h = cnn_then(h, ls_conv2d(h, c->p[3 * s], 1, 1));
        h = cnn_then(h, ls_batchnorm(h, c->p[3 * s + 1], c->p[3 * s + 2], 1e-5));
        h = cnn_then(h, ls_maxpool2d(h, 2, 2));   /* pool then relu, as nn.cnn */
        h = cnn_then(h, ls_relu(h));
    }
    h = cnn_then(h, ls_reshape(h, 2, (int64_t[]){FL_BATCH, 3136}));
    h = cnn_then(h, ls_linear(h, c->p[6], c->p[7]));
    h = cnn_then(h, ls_relu(h));
    h = cnn_then(h, ls_linear(h, c->p[8], c->p[9]));
    return cnn_then(h, ls_cross_entropy(h, c->y, LS_REDUCE_MEAN));
}

static void cnn_call(void *vctx)
{
    cnn_ctx *c = vctx;
    ls_tensor *loss = cnn_loss(c), *g[CNN_NP] = {0}, *hv[CNN_NP] = {0};
    ls_grad_opts o = {.create_graph = c->hvp, .retain_graph = c->hvp};
    if (ls_autograd_grad(1, &loss, CNN_NP, c->p, &o, g)) bench_die("cnn grad");
    if (c->hvp) {
        ls_tensor *s = NULL;
        for (int i = 0; i < CNN_NP; i++) {
            ls_tensor *gv = ls_mul(g[i], c->v[i]);
            ls_tensor *t = ls_sum(gv, 0, NULL, false);
            ls_tensor_release(gv);
            s = s ? cnn_then(s, ls_add(s, t)) : t;
            if (s != t) ls_tensor_release(t);
        }
        ls_grad_opts o2 = {.allow_unused = true};
        if (!s || ls_autograd_grad(1, &s, CNN_NP, c->p, &o2, hv)) bench_die("cnn hvp");
        ls_tensor_release(s);
    }
    for (int i = 0; i < CNN_NP; i++) {
        ls_tensor_release(g[i]);
        ls_tensor_release(hv[i]);
    }
    ls_tensor_release(loss);
}

static void cnn_init(cnn_ctx *c, ls_dtype dt, bool hvp)
{
    memset(c, 0, sizeof *c);
    c->hvp = hvp;
    c->x = randn(dt, 4, (int64_t[]){FL_BATCH, 1, 28, 28}, 1, 1.0);
    c->y = ls_tensor_new(LS_I64, 1, (int64_t[]){FL_BATCH});
    if (!c->y) bench_die("bench_flops");
    for (int i = 0; i < FL_BATCH; i++) ((int64_t *)ls_tensor_data(c->y))[i] = (i * 7) % 10;
    for (int i = 0; i < CNN_NP; i++) {
        bool bn_w = i == 1 || i == 4, bias = i == 2 || i == 5 || i == 7 || i == 9;
        int64_t fan = i == 0 ? 9 : i == 3 ? 288 : i == 6 ? 3136 : 128;
        c->p[i] = randn(dt, cnn_ndim[i], cnn_shapes[i], 10 + (uint64_t)i, 1.0 / sqrt((double)fan));
        /* batch norm weights 1, biases 0 (as initialised) */
        if ((bn_w || bias) && ls_tensor_fill_(c->p[i], bn_w ? 1.0 : 0.0)) bench_die("fill");
        if (ls_requires_grad_(c->p[i], true)) bench_die("bench_flops");
        c->v[i] = randn(dt, cnn_ndim[i], cnn_shapes[i], 30 + (uint64_t)i, 1.0);
    }
}

static void cnn_free(cnn_ctx *c)
{
    ls_tensor_release(c->x);
    ls_tensor_release(c->y);
    for (int i = 0; i < CNN_NP; i++) {
        ls_tensor_release(c->p[i]);
        ls_tensor_release(c->v[i]);
    }
}

/* Product FLOPs of the train step's gradient and of the HVP (see the header). */
static double cnn_flops(bool hvp)
{
    double c1 = conv_flops(1, 32, 28, 28), c2 = conv_flops(32, 64, 14, 14);
    double l1 = 2.0 * FL_BATCH * 3136 * 128, l2 = 2.0 * FL_BATCH * 128 * 10;
    return hvp ? 4 * c1 + 9 * (c2 + l1 + l2) : 2 * c1 + 3 * (c2 + l1 + l2);
}

/* ---- matmul ---- */

typedef struct mm_ctx {
    ls_tensor *a, *b;
} mm_ctx;

static void mm_call(void *vctx)
{
    mm_ctx *c = vctx;
    ls_tensor *out = ls_matmul(c->a, c->b);
    if (!out) bench_die("matmul");
    ls_tensor_release(out);
}

/* ---- driver ---- */

typedef struct fl_row {
    char name[40];
    const char *dtype;
    int threads;
    double flops, ms, gflops, peak, frac, faults;
} fl_row;

static fl_row rows[128];
static int nrows;

static void measure(const bench_opts *o, const char *name, ls_dtype dt, double flops, bench_fn fn,
                    void *ctx)
{
    peak_ctx pk = {.dt = dt, .bits = 512};
    bench_result r = bench_pair(o, fn, ctx, peak_call, &pk);
    double pf = peak_flops(dt);
    fl_row *w = &rows[nrows++];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->dtype = ls_dtype_name(dt);
    w->threads = ls_get_threads();
    w->flops = flops;
    w->ms = r.ms_a;
    w->gflops = flops / (r.ms_a * 1e6);
    w->peak = pf / (r.ms_b * 1e6);
    w->frac = flops / pf / r.pair_ratio;   /* median over pairs of (flops / t_a) / (pf / t_b) */
    w->faults = r.faults_a;
    bench_row(name, w->dtype, w->threads, r.ms_a, "fma_peak", r.ms_a * w->frac);
}

static bool wanted(const char *only, const char *name)
{
    if (!only) return true;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
    return false;
}

int main(int argc, char **argv)
{
    /* --only w1,w2 is taken out before the common options */
    const char *only = NULL;
    int ac = 0;
    char *av[64];
    for (int i = 0; i < argc && ac < 63; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else av[ac++] = argv[i];
    }
    av[ac] = NULL;
    bench_opts o;
    bench_parse_args(ac, av, "FLOPs, GFLOP/s and fraction of the FMA peak measured in the same run "
                     "(peer fma_peak; --only conv2_forward,cnn_grad,... picks workloads)", &o);
#if !FL_X86
    fprintf(stderr, "bench_flops: the peak loop needs x86-64 with AVX-512\n");
    return 0;
#else
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "bench_flops: the peak loop needs AVX-512\n");
        return 0;
    }
#endif
    bench_report_machine("bench_flops");
    bench_header();
    const ls_dtype dts[] = {LS_F32, LS_F64};
    for (int t = 1; t <= 2; t++) {
        ls_set_threads(t);
        bench_report_threads("bench_flops");
        for (int di = 0; di < 2; di++) {
            ls_dtype dt = dts[di];
            peak_ctx p256 = {.dt = dt, .bits = 256}, p512 = {.dt = dt, .bits = 512};
            double t0 = bench_now();
            peak_call(&p256);
            double t1 = bench_now();
            peak_call(&p512);
            double t2 = bench_now();
            fprintf(stderr, "# bench_flops: %s, %d threads: 256-bit FMA loop %.1f GFLOP/s, 512-bit "
                    "%.1f (one call each)\n", ls_dtype_name(dt), t, peak_flops(dt) / (t1 - t0) / 1e9,
                    peak_flops(dt) / (t2 - t1) / 1e9);
            static const struct {
                const char *name;
                cv_kind kind;
                int64_t C, O, H;
            } convs[] = {{"conv1_forward", CV_FORWARD, 1, 32, 28},
                         {"conv1_weight_grad", CV_WEIGHT_GRAD, 1, 32, 28},
                         {"conv2_forward", CV_FORWARD, 32, 64, 14},
                         {"conv2_input_grad", CV_INPUT_GRAD, 32, 64, 14},
                         {"conv2_weight_grad", CV_WEIGHT_GRAD, 32, 64, 14},
                         {"cmp_conv1_forward", CV_FORWARD, 1, 16, 28},
                         {"cmp_conv1_weight_grad", CV_WEIGHT_GRAD, 1, 16, 28},
                         {"cmp_conv2_forward", CV_FORWARD, 16, 32, 14},
                         {"cmp_conv2_input_grad", CV_INPUT_GRAD, 16, 32, 14},
                         {"cmp_conv2_weight_grad", CV_WEIGHT_GRAD, 16, 32, 14}};
            for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
                if (!wanted(only, convs[i].name)) continue;
                conv_ctx c;
                conv_init(&c, dt, convs[i].kind, convs[i].C, convs[i].O, convs[i].H);
                measure(&o, convs[i].name, dt, conv_flops(convs[i].C, convs[i].O, convs[i].H,
                                                          convs[i].H), conv_call, &c);
                conv_free(&c);
            }
            for (int h = 0; h < 2; h++) {
                const char *name = h ? "cnn_hvp" : "cnn_grad";
                if (!wanted(only, name)) continue;
                cnn_ctx c;
                cnn_init(&c, dt, h);
                measure(&o, name, dt, cnn_flops(h), cnn_call, &c);
                cnn_free(&c);
            }
            if (wanted(only, "matmul_1024") && !o.quick) {
                mm_ctx m = {randn(dt, 2, (int64_t[]){1024, 1024}, 1, 1.0),
                            randn(dt, 2, (int64_t[]){1024, 1024}, 2, 1.0)};
                measure(&o, "matmul_1024", dt, 2.0 * 1024 * 1024 * 1024, mm_call, &m);
                ls_tensor_release(m.a);
                ls_tensor_release(m.b);
            }
        }
    }
    fprintf(stderr, "# workload,dtype,threads,gflop,ms,gflops,peak_gflops,fraction_of_peak,"
                    "faults\n");
    for (int i = 0; i < nrows; i++)
        fprintf(stderr, "# %s,%s,%d,%.4f,%.3f,%.1f,%.1f,%.3f,%.0f\n", rows[i].name, rows[i].dtype,
                rows[i].threads, rows[i].flops / 1e9, rows[i].ms, rows[i].gflops, rows[i].peak,
                rows[i].frac, rows[i].faults);
    bench_report_rss("bench_flops");
    return 0;
}
