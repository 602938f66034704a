/* Reductions (engine/ops/reduce.c): every op against a naive reference (long double loops over
 * ls_tensor_get) in both dtypes, on contiguous, transposed, narrowed and expanded 3-d inputs, for
 * every subset of dims (given as dims or as "none = all"), negative dims, keepdim both ways;
 * argmax/argmin ties and NaN; reductions longer than one chunk on every kernel path; the layouts
 * each kernel (runs, columns, gather) is for, with run lengths 1, 7, 17, 1023, and views that must
 * not take the run path; empty reductions; sum_to; bit-identical results for 1 and 2 threads and for
 * the baseline and AVX2 kernels; allocation failures; error messages; and gradient conventions the
 * gradient check's samples avoid (ties, zero norm).
 *
 * Tolerances: f64 1e-12 relative (the kernel sums in double with a different order), f32 1e-6
 * relative (the kernel accumulates in double and rounds once). */
#define CHECK_RNG_SEED 0x2545f4914f6cdd1dULL   /* this file's test inputs */
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/ops.h"
#include "ops/reduce_kernel.h"   /* plan_path, red_simd_select: which kernel a layout takes */

static const ls_dtype dtypes[2] = {LS_F32, LS_F64};

static ls_tensor *make(ls_dtype d, int ndim, const int64_t *shape)
{
    ls_tensor *t = ls_tensor_new(d, ndim, shape);
    int64_t n = ls_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = -2.0 + 4.0 * check_uniform();
        if (d == LS_F32) ((float *)ls_tensor_data(t))[i] = (float)v;
        else ((double *)ls_tensor_data(t))[i] = v;
    }
    return t;
}

static ls_tensor *from_values(ls_dtype d, int ndim, const int64_t *shape, const double *v)
{
    ls_tensor *t = ls_tensor_new(d, ndim, shape);
    for (int64_t i = 0; i < ls_tensor_numel(t); i++) {
        if (d == LS_F32) ((float *)ls_tensor_data(t))[i] = (float)v[i];
        else ((double *)ls_tensor_data(t))[i] = v[i];
    }
    return t;
}

/* A [a x b x c] input: contiguous, a fully transposed view, narrowed along dim 1, or expanded along
 * dim 1 (stride 0). */
enum { CONTIG, TRANSPOSED, NARROWED, EXPANDED, NLAYOUTS };
static ls_tensor *make_layout(ls_dtype d, const int64_t *s, int layout)
{
    if (layout == CONTIG) return make(d, 3, s);
    ls_tensor *base, *v;
    if (layout == TRANSPOSED) {
        base = make(d, 3, (int64_t[]){s[2], s[1], s[0]});
        v = ls_view_permute(base, (int[]){2, 1, 0});
    } else if (layout == NARROWED) {
        base = make(d, 3, (int64_t[]){s[0], s[1] + 3, s[2]});
        v = ls_view_narrow(base, 1, 2, s[1]);
    } else {
        base = make(d, 3, (int64_t[]){s[0], 1, s[2]});
        v = ls_view_expand(base, 3, s);
    }
    ls_tensor_release(base);
    return v;
}

static bool same_value(double got, double want, ls_dtype d)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    double scale = fabs(want) > 1.0 ? fabs(want) : 1.0;
    return fabs(got - want) <= (d == LS_F32 ? 1e-6 : 1e-12) * scale;
}

static bool has_msg(const char *sub)
{
    bool ok = strstr(ls_error_message(), sub) != NULL;
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", ls_error_message(), sub);
    return ok;
}

/* ---- the reference ---- */
enum { F_SUM, F_MEAN, F_VAR, F_STD, F_MAX, F_MIN, F_NORM1, F_NORM2, F_NORMINF, F_LSE, F_ARGMAX,
       F_ARGMIN, NFN };
static const char *fn_name[NFN] = {"sum", "mean", "var", "std", "max", "min", "norm1", "norm2",
                                   "norminf", "logsumexp", "argmax", "argmin"};

static double ref_row(int fn, const double *v, int64_t n, double corr)
{
    long double s = 0, m;
    int64_t bi = 0;
    switch (fn) {
    case F_SUM: for (int64_t i = 0; i < n; i++) s += v[i]; return (double)s;
    case F_MEAN: for (int64_t i = 0; i < n; i++) s += v[i]; return (double)(s / n);
    case F_VAR:
    case F_STD: {
        for (int64_t i = 0; i < n; i++) s += v[i];
        m = s / n;
        long double q = 0;
        for (int64_t i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
        double r = (double)(q / (n - corr));
        return fn == F_STD ? sqrt(r) : r;
    }
    case F_NORM1: for (int64_t i = 0; i < n; i++) s += fabs(v[i]); return (double)s;
    case F_NORM2: for (int64_t i = 0; i < n; i++) s += (long double)v[i] * v[i]; return sqrt((double)s);
    case F_NORMINF:
        for (int64_t i = 0; i < n; i++) s = fabs(v[i]) > s ? fabs(v[i]) : s;
        return (double)s;
    case F_LSE: {
        m = v[0];
        for (int64_t i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
        for (int64_t i = 0; i < n; i++) s += expl(v[i] - m);
        return (double)(m + logl(s));
    }
    default:   /* max, min, argmax, argmin: first extreme */
        for (int64_t i = 1; i < n; i++)
            if ((fn == F_MAX || fn == F_ARGMAX) ? v[i] > v[bi] : v[i] < v[bi]) bi = i;
        return (fn == F_ARGMAX || fn == F_ARGMIN) ? (double)bi : v[bi];
    }
}

/* Reference reduction over red[] of x: out[o] for the kept dims in row-major order. Returns O. */
static int64_t ref_reduce(const ls_tensor *x, const bool *red, int fn, double corr, double *out)
{
    int kd[LS_MAX_DIMS], rd[LS_MAX_DIMS], nk = 0, nr = 0;
    int64_t O = 1, R = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (red[d]) { rd[nr++] = d; R *= x->shape[d]; }
        else { kd[nk++] = d; O *= x->shape[d]; }
    }
    double *vals = malloc(sizeof(double) * (size_t)(R ? R : 1));
    for (int64_t o = 0; o < O; o++) {
        int64_t idx[LS_MAX_DIMS] = {0}, rem = o;
        for (int i = nk - 1; i >= 0; i--) {
            idx[kd[i]] = rem % x->shape[kd[i]];
            rem /= x->shape[kd[i]];
        }
        for (int64_t r = 0; r < R; r++) {
            rem = r;
            for (int i = nr - 1; i >= 0; i--) {
                idx[rd[i]] = rem % x->shape[rd[i]];
                rem /= x->shape[rd[i]];
            }
            vals[r] = ls_tensor_get(x, idx);
        }
        out[o] = ref_row(fn, vals, R, corr);
    }
    free(vals);
    return O;
}

static ls_tensor *run_fn(int fn, ls_tensor *x, int nd, const int *dims, bool keep, double corr)
{
    switch (fn) {
    case F_SUM: return ls_sum(x, nd, dims, keep);
    case F_MEAN: return ls_mean(x, nd, dims, keep);
    case F_VAR: return ls_var(x, nd, dims, keep, corr);
    case F_STD: return ls_std(x, nd, dims, keep, corr);
    case F_MAX: return ls_max(x, nd, dims, keep);
    case F_MIN: return ls_min(x, nd, dims, keep);
    case F_NORM1: return ls_norm(x, 1, nd, dims, keep);
    case F_NORM2: return ls_norm(x, NAN, nd, dims, keep);
    case F_NORMINF: return ls_norm(x, INFINITY, nd, dims, keep);
    case F_LSE: return ls_logsumexp(x, nd, dims, keep);
    case F_ARGMAX: return ls_argmax(x, nd ? dims[0] : -1, keep);
    default: return ls_argmin(x, nd ? dims[0] : -1, keep);
    }
}

/* Run fn on x over the dim set `mask` (bit d = dim d; 0 = no dims given, i.e. all) and compare. */
static void check_case(int fn, ls_tensor *x, unsigned mask, bool keep, bool negdims, double corr)
{
    int dims[LS_MAX_DIMS], nd = 0;
    bool red[LS_MAX_DIMS] = {false};
    if (fn == F_ARGMAX || fn == F_ARGMIN) negdims = false;   /* ls_argmax: dim < 0 means flat */
    for (int d = 0; d < x->ndim; d++) {
        if (mask & (1u << d)) {
            dims[nd++] = negdims ? d - x->ndim : d;
            red[d] = true;
        }
        if (!mask) red[d] = true;
    }
    /* list the dims in reverse order half of the time: order must not matter */
    if (negdims && nd == 2) { int t = dims[0]; dims[0] = dims[1]; dims[1] = t; }
    ls_tensor *y = run_fn(fn, x, nd, dims, keep, corr);
    CHECK(y != NULL);
    if (!y) {
        fprintf(stderr, "  %s mask %u: %s\n", fn_name[fn], mask, ls_error_message());
        return;
    }
    int want_nd = 0;
    int64_t want_shape[LS_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        if (!red[d]) want_shape[want_nd++] = x->shape[d];
        else if (keep) want_shape[want_nd++] = 1;
    }
    CHECK(y->ndim == want_nd && memcmp(y->shape, want_shape, sizeof(int64_t) * (size_t)want_nd) == 0);
    CHECK(y->dtype == ((fn == F_ARGMAX || fn == F_ARGMIN) ? LS_I64 : x->dtype));
    int64_t O = ls_tensor_numel(y);
    double *ref = malloc(sizeof(double) * (size_t)(O ? O : 1));
    CHECK(ref_reduce(x, red, fn, corr, ref) == O);
    int bad = 0;
    for (int64_t o = 0; o < O; o++) {
        double got = ls_tensor_get_flat(y, o);
        if (!same_value(got, ref[o], x->dtype) && bad++ < 3) {
            CHECK(false);
            fprintf(stderr, "  %s %s mask %u keep %d [%lld]: got %.17g want %.17g\n", fn_name[fn],
                    ls_dtype_name(x->dtype), mask, keep, (long long)o, got, ref[o]);
        }
    }
    CHECK(bad == 0);
    free(ref);
    ls_tensor_release(y);
}

static void test_all_subsets(void)
{
    const int64_t shape[3] = {3, 4, 5};
    for (int di = 0; di < 2; di++)
        for (int layout = 0; layout < NLAYOUTS; layout++) {
            ls_tensor *x = make_layout(dtypes[di], shape, layout);
            for (unsigned mask = 0; mask < 8; mask++)
                for (int keep = 0; keep < 2; keep++)
                    for (int fn = 0; fn < NFN; fn++) {
                        bool arg = fn == F_ARGMAX || fn == F_ARGMIN;
                        if (arg && mask != 0 && (mask & (mask - 1))) continue;   /* one dim only */
                        check_case(fn, x, mask, keep, (mask + keep) % 2, 1.0);
                        if (fn == F_VAR || fn == F_STD) check_case(fn, x, mask, keep, false, 0.0);
                    }
            ls_tensor_release(x);
        }
}

/* ---- argmax/argmin: ties, NaN, flat index ---- */
static void test_arg(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        double v[6] = {1, 5, 5, -2, -2, 0};
        ls_tensor *x = from_values(d, 2, (int64_t[]){2, 3}, v);
        ls_tensor *a = ls_argmax(x, -1, false);   /* flat: first 5 at position 1 */
        CHECK(a && a->ndim == 0 && a->dtype == LS_I64 && ls_tensor_get_flat(a, 0) == 1);
        ls_tensor *b = ls_argmin(x, -1, true);    /* flat, keepdim: shape [1x1], first -2 at 3 */
        CHECK(b && b->ndim == 2 && b->shape[0] == 1 && b->shape[1] == 1 &&
              ls_tensor_get_flat(b, 0) == 3);
        ls_tensor *c = ls_argmax(x, 1, false);    /* rows {1,5,5} -> 1, {-2,-2,0} -> 2 */
        CHECK(c && c->ndim == 1 && ls_tensor_get_flat(c, 0) == 1 && ls_tensor_get_flat(c, 1) == 2);
        ls_tensor *e = ls_argmin(x, 0, true);     /* cols: {1,-2}->1, {5,-2}->1, {5,0}->1 */
        CHECK(e && e->ndim == 2 && e->shape[0] == 1 && ls_tensor_get_flat(e, 0) == 1);
        ls_tensor_release(a);
        ls_tensor_release(b);
        ls_tensor_release(c);
        ls_tensor_release(e);
        /* through attrs (the Lua path), a negative dim counts from the end */
        ls_attrs at = {.dim = -1, .has_dim = true, .ndims = 1, .dims = {-1}};
        a = ls_op_apply(LS_OP_ARGMAX, &x, &at);
        CHECK(a && a->ndim == 1 && ls_tensor_get_flat(a, 0) == 1 && ls_tensor_get_flat(a, 1) == 2);
        ls_tensor_release(a);
        ls_tensor_release(x);
        /* NaN wins and propagates (first NaN) */
        double w[5] = {1, NAN, 7, NAN, 2};
        x = from_values(d, 1, (int64_t[]){5}, w);
        a = ls_argmax(x, 0, false);
        b = ls_argmin(x, -1, false);
        c = ls_max(x, 0, NULL, false);
        e = ls_norm(x, INFINITY, 0, NULL, false);
        CHECK(a && ls_tensor_get_flat(a, 0) == 1);
        CHECK(b && ls_tensor_get_flat(b, 0) == 1);
        CHECK(c && isnan(ls_tensor_get_flat(c, 0)));
        CHECK(e && isnan(ls_tensor_get_flat(e, 0)));
        ls_tensor_release(a);
        ls_tensor_release(b);
        ls_tensor_release(c);
        ls_tensor_release(e);
        ls_tensor_release(x);
    }
}

/* ---- reductions longer than one chunk (4096), on the row path (partials combined across chunks)
 * and the column path (outputs adjacent in memory reduced together) ---- */
static void test_long_rows(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        int64_t shape[2] = {3, 20000};
        ls_tensor *x = make(d, 2, shape);
        /* row 0: a maximum exactly at a chunk start, tied later; row 1: at the very end */
        ls_tensor_set(x, (int64_t[]){0, 4096}, 9.0);
        ls_tensor_set(x, (int64_t[]){0, 15000}, 9.0);
        ls_tensor_set(x, (int64_t[]){1, 19999}, 9.5);
        ls_tensor_set(x, (int64_t[]){2, 4095}, -9.0);
        ls_tensor *xt = ls_view_transpose(x, 0, 1);   /* [20000 x 3], reduce dim 0 */
        for (int fn = 0; fn < NFN; fn++) {
            check_case(fn, x, 2u, false, false, 1.0);
            check_case(fn, xt, 1u, true, false, 1.0);
        }
        /* the column path: adjacent outputs reduced together (kept dims contiguous in memory) */
        ls_tensor *cx = make(d, 2, (int64_t[]){5000, 10});
        ls_tensor_set(cx, (int64_t[]){4096, 3}, 9.0);
        ls_tensor_set(cx, (int64_t[]){4999, 3}, 9.0);
        ls_tensor *c3 = make(d, 3, (int64_t[]){3, 50, 10}), *c4 = make(d, 3, (int64_t[]){6, 7, 9});
        for (int fn = 0; fn < NFN; fn++) {
            check_case(fn, cx, 1u, false, false, 1.0);
            check_case(fn, c3, 2u, true, false, 1.0);
            if (fn != F_ARGMAX && fn != F_ARGMIN) check_case(fn, c4, 3u, false, true, 0.0);
        }
        ls_tensor *cam = ls_argmax(cx, 0, false);
        CHECK(cam && ls_tensor_get_flat(cam, 3) == 4096);
        ls_tensor_release(cam);
        ls_tensor_set(cx, (int64_t[]){7, 5}, NAN);
        ls_tensor_set(cx, (int64_t[]){9, 5}, NAN);
        cam = ls_argmin(cx, 0, true);
        ls_tensor *cmx = ls_max(cx, 1, (int[]){0}, false);
        CHECK(cam && ls_tensor_get_flat(cam, 5) == 7 && ls_tensor_get_flat(cam, 4) != 7);
        CHECK(cmx && isnan(ls_tensor_get_flat(cmx, 5)) && !isnan(ls_tensor_get_flat(cmx, 4)));
        ls_tensor_release(cam);
        ls_tensor_release(cmx);
        ls_tensor_release(cx);
        ls_tensor_release(c3);
        ls_tensor_release(c4);
        ls_tensor *am = ls_argmax(x, 1, false), *an = ls_argmin(x, 1, false);
        CHECK(am && ls_tensor_get_flat(am, 0) == 4096 && ls_tensor_get_flat(am, 1) == 19999);
        CHECK(an && ls_tensor_get_flat(an, 2) == 4095);
        ls_tensor_release(am);
        ls_tensor_release(an);
        ls_tensor_release(xt);
        ls_tensor_release(x);
    }
}

/* ---- the kernel paths of reduce_kernel.c: each layout takes the kernel it should (plan_path), and
 * every op agrees with the reference on it. Run lengths 1, 7, 17 and 1023 exercise the sixteen-lane
 * run kernels' partial last block; runs split by a chunk boundary, column blocks wider than 2048
 * and more than 256 rows exercise the partial results. ---- */
static unsigned mask_of(int n, const int *dims)
{
    unsigned m = 0;
    for (int i = 0; i < n; i++) m |= 1u << dims[i];
    return m;
}

static red_path path_of(const ls_tensor *x, unsigned mask)
{
    bool red[LS_MAX_DIMS] = {false};
    for (int d = 0; d < x->ndim; d++) red[d] = mask ? (mask >> d) & 1u : true;
    red_plan p;
    plan_init(&p, x, red, false);
    return plan_path(&p);
}

/* Every op over the dims in mask (0: all; the arg ops only for one dim or all) against the
 * reference, after checking the kernel path. Releases x. */
static void check_layout(ls_tensor *x, unsigned mask, red_path want, const char *what)
{
    red_path got = path_of(x, mask);
    CHECK(got == want);
    if (got != want) fprintf(stderr, "  %s: path %d, want %d\n", what, (int)got, (int)want);
    int before = check_failures;
    for (int fn = 0; fn < NFN; fn++) {
        if ((fn == F_ARGMAX || fn == F_ARGMIN) && (mask & (mask - 1))) continue;
        check_case(fn, x, mask, fn % 2 == 0, false, 1.0);
    }
    if (check_failures > before)
        fprintf(stderr, "  (layout %s, %s)\n", what, ls_dtype_name(x->dtype));
    ls_tensor_release(x);
}

/* Every other element of a fresh [2n] tensor: [n] with stride 2. */
static ls_tensor *strided2(ls_dtype d, int64_t n)
{
    ls_tensor *base = make(d, 1, (int64_t[]){2 * n});
    ls_tensor *r = ls_view_reshape(base, 2, (int64_t[]){n, 2});
    ls_tensor *v = ls_view_select(r, 1, 0);
    ls_tensor_release(base);
    ls_tensor_release(r);
    return v;
}

static void test_layouts(void)
{
    const int64_t runs[4] = {1, 7, 17, 1023};
    const unsigned nchw = mask_of(3, (int[]){0, 2, 3});
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        char what[64];
        /* runs in place: all of a contiguous tensor; the last dim (also narrowed: runs of 17 with
         * gaps); dims (0, 2, 3) of [N, C, H, W] (N runs of H*W per channel); one chunk boundary in
         * the middle of a run ([5 x 3 x 31 x 33]: 5115 elements per channel, runs of 1023) */
        for (int i = 0; i < 4; i++) {
            int64_t L = runs[i];
            red_path want = L == 1 ? RED_PATH_GATHER : RED_PATH_RUNS;
            snprintf(what, sizeof what, "all of [%lld]", (long long)L);
            check_layout(make(d, 1, (int64_t[]){L}), 0, want, what);
            snprintf(what, sizeof what, "last dim of [5 x %lld]", (long long)L);
            check_layout(make(d, 2, (int64_t[]){5, L}), 2u, want, what);
            snprintf(what, sizeof what, "(0,2,3) of [3 x 4 x 1 x %lld]", (long long)L);
            check_layout(make(d, 4, (int64_t[]){3, 4, 1, L}), nchw, want, what);   /* 1: stride 4 */
        }
        check_layout(make(d, 1, (int64_t[]){20000}), 0, RED_PATH_RUNS, "all of [20000]");
        check_layout(make(d, 4, (int64_t[]){3, 4, 17, 1}), nchw, RED_PATH_RUNS, "(0,2,3) H*W=17");
        check_layout(make(d, 4, (int64_t[]){5, 3, 31, 33}), nchw, RED_PATH_RUNS, "(0,2,3) split run");
        ls_tensor *b = make(d, 2, (int64_t[]){5, 40});
        check_layout(ls_view_narrow(b, 1, 3, 17), 2u, RED_PATH_RUNS, "narrowed last dim");
        ls_tensor_release(b);
        b = make(d, 3, (int64_t[]){4, 1, 7});   /* runs of 7 repeated: outer reduced stride 0 */
        check_layout(ls_view_expand(b, 3, (int64_t[]){4, 6, 7}), 6u, RED_PATH_RUNS, "expanded");
        ls_tensor_release(b);

        /* the column path: dim 0 of [B x F] (the bias gradient), more than 256 rows (row chunks),
         * more than 2048 columns (two blocks); dims (0, 1, 2) of channels-last [N x H x W x C];
         * [N x C x 1 x 1] over (0, 2, 3) */
        const int64_t bf[5][2] = {{7, 8}, {17, 17}, {600, 17}, {300, 2100}, {1023, 9}};
        for (int i = 0; i < 5; i++) {
            snprintf(what, sizeof what, "dim 0 of [%lld x %lld]", (long long)bf[i][0],
                     (long long)bf[i][1]);
            check_layout(make(d, 2, bf[i]), 1u, RED_PATH_COLS, what);
        }
        check_layout(make(d, 4, (int64_t[]){4, 5, 6, 16}), 7u, RED_PATH_COLS, "(0,1,2) of NHWC");
        check_layout(make(d, 4, (int64_t[]){4, 8, 1, 1}), nchw, RED_PATH_COLS, "(0,2,3) H*W=1");

        /* views that must not take the run path (the innermost reduced dim is not contiguous):
         * every other element; all of a transposed matrix; (0, 2, 3) of an NCHW view of
         * channels-last data with few channels (and with 16: the column path) */
        for (int i = 1; i < 4; i++) {
            snprintf(what, sizeof what, "all of [%lld] stride 2", (long long)runs[i]);
            check_layout(strided2(d, runs[i]), 0, RED_PATH_GATHER, what);
        }
        b = make(d, 2, (int64_t[]){17, 33});
        check_layout(ls_view_transpose(b, 0, 1), 0, RED_PATH_GATHER, "all of a transpose");
        ls_tensor_release(b);
        for (int c = 5; c <= 16; c += 11) {
            b = make(d, 4, (int64_t[]){3, 7, 9, c});
            snprintf(what, sizeof what, "(0,2,3) of NHWC as NCHW, C = %d", c);
            check_layout(ls_view_permute(b, (int[]){0, 3, 1, 2}), nchw,
                         c < 8 ? RED_PATH_GATHER : RED_PATH_COLS, what);
            ls_tensor_release(b);
        }
    }
}

/* The same reductions with 1 and 2 threads, and with the baseline and the AVX2 kernels, are
 * bit-identical: the work split depends on the shapes only, and the clones do the same arithmetic.
 * Layouts large enough to be split over threads: the full sum, (0, 2, 3) of [32 x 16 x 32 x 32]
 * (run path, 8 chunks per channel), dim 0 of [5000 x 64] (column path, 20 row chunks). */
#define NSPLIT 10
static void split_results(ls_tensor *v, ls_tensor *nchw, ls_tensor *bf, ls_tensor **r)
{
    const int d023[3] = {0, 2, 3};
    r[0] = ls_sum(v, 0, NULL, false);
    r[1] = ls_norm(v, 2, 0, NULL, false);
    r[2] = ls_sum(nchw, 3, d023, false);
    r[3] = ls_var(nchw, 3, d023, false, NAN);
    r[4] = ls_max(nchw, 3, d023, false);
    r[5] = ls_logsumexp(nchw, 3, d023, false);
    r[6] = ls_sum(bf, 1, (int[]){0}, false);
    r[7] = ls_std(bf, 1, (int[]){0}, false, NAN);
    r[8] = ls_argmax(bf, 0, false);
    r[9] = ls_norm(bf, 1, 1, (int[]){0}, false);
}

static bool same_bits(ls_tensor *a, ls_tensor *b)
{
    if (!a || !b) return false;
    size_t nb = (size_t)ls_tensor_numel(a) * ls_dtype_size(a->dtype);
    return ls_tensor_numel(a) == ls_tensor_numel(b) &&
           memcmp(ls_tensor_data(a), ls_tensor_data(b), nb) == 0;
}

static void test_layout_bits(void)
{
    int saved = ls_get_threads();
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        ls_tensor *v = make(d, 1, (int64_t[]){300001});
        ls_tensor *nchw = make(d, 4, (int64_t[]){32, 16, 32, 32});
        ls_tensor *bf = make(d, 2, (int64_t[]){5000, 64});
        ls_tensor *r[4][NSPLIT];
        ls_set_threads(1);
        split_results(v, nchw, bf, r[0]);
        ls_set_threads(2);
        split_results(v, nchw, bf, r[1]);
        int simd = red_simd_select(0);   /* baseline kernels */
        split_results(v, nchw, bf, r[2]);
        red_simd_select(1);              /* AVX2 when the CPU has it */
        split_results(v, nchw, bf, r[3]);
        red_simd_select(-1);
        ls_set_threads(saved);
        for (int k = 0; k < NSPLIT; k++) {
            CHECK(same_bits(r[0][k], r[1][k]));
            CHECK(same_bits(r[1][k], r[2][k]));
            CHECK(same_bits(r[2][k], r[3][k]));
            for (int t = 0; t < 4; t++) ls_tensor_release(r[t][k]);
        }
        (void)simd;
        /* and the fast paths are accurate at this size: the full sum and the per-channel sums */
        double ref[16];
        ls_tensor *s = ls_sum(v, 0, NULL, false), *s023 = ls_sum(nchw, 3, (int[]){0, 2, 3}, false);
        ref_reduce(v, (bool[]){true}, F_SUM, 0, ref);
        CHECK(s && same_value(ls_tensor_get_flat(s, 0), ref[0], d));
        ref_reduce(nchw, (bool[]){true, false, true, true}, F_SUM, 0, ref);
        for (int c = 0; s023 && c < 16; c++) CHECK(same_value(ls_tensor_get_flat(s023, c), ref[c], d));
        ls_tensor_release(s);
        ls_tensor_release(s023);
        ls_tensor_release(v);
        ls_tensor_release(nchw);
        ls_tensor_release(bf);
    }
}

/* ---- empty inputs ---- */
static void test_empty(void)
{
    for (int di = 0; di < 2; di++) {
        ls_dtype d = dtypes[di];
        ls_tensor *x = ls_tensor_new(d, 2, (int64_t[]){0, 3});
        ls_tensor *s = ls_sum(x, 1, (int[]){0}, false);
        CHECK(s && s->ndim == 1 && s->shape[0] == 3 && ls_tensor_get_flat(s, 2) == 0.0);
        ls_tensor *sa = ls_sum(x, 0, NULL, false);
        CHECK(sa && sa->ndim == 0 && ls_tensor_get_flat(sa, 0) == 0.0);
        ls_tensor *m = ls_mean(x, 1, (int[]){0}, true);
        CHECK(m && m->ndim == 2 && m->shape[0] == 1 && isnan(ls_tensor_get_flat(m, 0)));
        ls_tensor *v = ls_var(x, 0, NULL, false, NAN);
        CHECK(v && isnan(ls_tensor_get_flat(v, 0)));
        ls_tensor *l = ls_logsumexp(x, 1, (int[]){0}, false);
        CHECK(l && ls_tensor_get_flat(l, 1) == -INFINITY);
        ls_tensor *n2 = ls_norm(x, 2, 0, NULL, false);
        CHECK(n2 && ls_tensor_get_flat(n2, 0) == 0.0);
        /* reducing the non-empty dim of an empty tensor gives an empty result, no error */
        ls_tensor *mx = ls_max(x, 1, (int[]){1}, false);
        CHECK(mx && mx->ndim == 1 && mx->shape[0] == 0);
        ls_tensor_release(s);
        ls_tensor_release(sa);
        ls_tensor_release(m);
        ls_tensor_release(v);
        ls_tensor_release(l);
        ls_tensor_release(n2);
        ls_tensor_release(mx);
        /* no identity: an error naming op and shape */
        CHECK(ls_max(x, 0, NULL, false) == NULL && has_msg("max") && has_msg("[0x3]"));
        CHECK(ls_min(x, 1, (int[]){0}, false) == NULL && has_msg("min") && has_msg("[0x3]"));
        CHECK(ls_argmax(x, 0, false) == NULL && has_msg("argmax") && has_msg("[0x3]"));
        CHECK(ls_norm(x, INFINITY, 0, NULL, false) == NULL && has_msg("norm"));
        ls_tensor_release(x);
        /* 0-d input: reduces to itself */
        ls_tensor *z = ls_tensor_scalar(d, 2.5);
        ls_tensor *zs = ls_sum(z, 1, (int[]){0}, false), *zm = ls_max(z, 0, NULL, true);
        CHECK(zs && zs->ndim == 0 && ls_tensor_get_flat(zs, 0) == 2.5);
        CHECK(zm && zm->ndim == 0 && ls_tensor_get_flat(zm, 0) == 2.5);
        ls_tensor_release(zs);
        ls_tensor_release(zm);
        ls_tensor_release(z);
    }
}

/* ---- special values in logsumexp ---- */
static void test_lse_special(void)
{
    double v[6] = {-INFINITY, -INFINITY, -INFINITY, 1000.0, 1000.0, -INFINITY};
    ls_tensor *x = from_values(LS_F64, 2, (int64_t[]){2, 3}, v);
    ls_tensor *l = ls_logsumexp(x, 1, (int[]){1}, false);
    CHECK(l && ls_tensor_get_flat(l, 0) == -INFINITY);
    CHECK(l && fabs(ls_tensor_get_flat(l, 1) - (1000.0 + log(2.0))) < 1e-12);
    ls_tensor_release(l);
    ls_tensor_release(x);
}

/* ---- sum_to ---- */
static void test_sum_to(void)
{
    for (int di = 0; di < 2; di++) {
        ls_tensor *x = make_layout(dtypes[di], (int64_t[]){2, 3, 4}, TRANSPOSED);
        ls_tensor *y = ls_sum_to(x, 2, (int64_t[]){3, 1});
        CHECK(y && y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 1);
        double ref[3];
        ref_reduce(x, (bool[]){true, false, true}, F_SUM, 0, ref);
        for (int i = 0; y && i < 3; i++) CHECK(same_value(ls_tensor_get_flat(y, i), ref[i], x->dtype));
        ls_tensor *z = ls_sum_to(x, 0, NULL);
        ref_reduce(x, (bool[]){true, true, true}, F_SUM, 0, ref);
        CHECK(z && z->ndim == 0 && same_value(ls_tensor_get_flat(z, 0), ref[0], x->dtype));
        ls_tensor *w = ls_sum_to(x, 3, (int64_t[]){2, 3, 4});   /* nothing to do */
        CHECK(w && w->ndim == 3 && ls_tensor_get_flat(w, 5) == ls_tensor_get_flat(x, 5));
        CHECK(ls_sum_to(x, 2, (int64_t[]){3, 5}) == NULL && has_msg("sum_to") &&
              has_msg("[2x3x4]") && has_msg("[3x5]"));
        CHECK(ls_sum_to(x, 4, (int64_t[]){1, 2, 3, 4}) == NULL && has_msg("sum_to"));
        ls_tensor_release(y);
        ls_tensor_release(z);
        ls_tensor_release(w);
        ls_tensor_release(x);
    }
}

/* ---- thread-count independence ---- */
static void test_threads(void)
{
    int saved = ls_get_threads();
    ls_tensor *x = make(LS_F32, 1, (int64_t[]){1000000});
    ls_tensor *x64 = make(LS_F64, 2, (int64_t[]){1000, 1000});
    ls_tensor *r[2][5];
    for (int t = 0; t < 2; t++) {
        ls_set_threads(t + 1);
        r[t][0] = ls_sum(x, 0, NULL, false);
        r[t][1] = ls_var(x, 0, NULL, false, NAN);
        r[t][2] = ls_sum(x64, 1, (int[]){0}, false);       /* column sums: the column path */
        r[t][3] = ls_logsumexp(x64, 0, NULL, false);
        r[t][4] = ls_norm(x64, 2, 1, (int[]){1}, false);
    }
    ls_set_threads(saved);
    for (int k = 0; k < 5; k++) {
        CHECK(r[0][k] && r[1][k]);
        if (!r[0][k] || !r[1][k]) continue;
        size_t nb = (size_t)ls_tensor_numel(r[0][k]) * ls_dtype_size(r[0][k]->dtype);
        CHECK(memcmp(ls_tensor_data(r[0][k]), ls_tensor_data(r[1][k]), nb) == 0);
    }
    /* and the big sum is accurate */
    double ref;
    ref_reduce(x, (bool[]){true}, F_SUM, 0, &ref);
    CHECK(r[0][0] && same_value(ls_tensor_get_flat(r[0][0], 0), ref, LS_F32));
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 5; k++) ls_tensor_release(r[t][k]);
    ls_tensor_release(x);
    ls_tensor_release(x64);
}

/* ---- errors ---- */
static void test_errors(void)
{
    ls_tensor *x = make(LS_F32, 2, (int64_t[]){2, 3});
    CHECK(ls_sum(x, 1, (int[]){2}, false) == NULL && has_msg("sum: dimension 3 out of range"));
    CHECK(ls_mean(x, 1, (int[]){-3}, false) == NULL && has_msg("mean"));
    CHECK(ls_var(x, 2, (int[]){1, -1}, false, 1) == NULL && has_msg("var: dimension 2 appears more"));
    CHECK(ls_norm(x, 3, 0, NULL, false) == NULL && has_msg("norm: p must be 1, 2 or inf, got 3"));
    CHECK(ls_argmax(x, 5, false) == NULL && has_msg("argmax"));
    ls_tensor *i = ls_tensor_zeros(LS_I64, 1, (int64_t[]){3});
    CHECK(ls_sum(i, 0, NULL, false) == NULL && has_msg("sum: expected a float tensor"));
    CHECK(ls_max(i, 0, NULL, false) == NULL && has_msg("i64"));
    CHECK(ls_sum(NULL, 0, NULL, false) == NULL);
    ls_tensor_release(i);
    ls_tensor_release(x);
}

/* ---- gradient conventions at ties and zeros ---- */
static ls_tensor *grad1(ls_tensor *y, ls_tensor *x)
{
    ls_grad_opts o = {0};
    ls_tensor *g = NULL;
    if (ls_autograd_grad(1, &y, 1, &x, &o, &g)) fprintf(stderr, "  grad: %s\n", ls_error_message());
    return g;
}

static void test_grad_conventions(void)
{
    double v[4] = {1, 3, 3, -3};
    ls_tensor *x = from_values(LS_F64, 1, (int64_t[]){4}, v);
    ls_requires_grad_(x, true);
    ls_tensor *y = ls_max(x, 0, NULL, false);
    ls_tensor *g = grad1(y, x);   /* the tied maxima share the gradient */
    CHECK(g && ls_tensor_get_flat(g, 0) == 0 && ls_tensor_get_flat(g, 1) == 0.5 &&
          ls_tensor_get_flat(g, 2) == 0.5 && ls_tensor_get_flat(g, 3) == 0);
    ls_tensor_release(y);
    ls_tensor_release(g);
    y = ls_norm(x, INFINITY, 0, NULL, false);   /* |x| = 3 three times, with signs */
    g = grad1(y, x);
    CHECK(g && ls_tensor_get_flat(g, 0) == 0 && fabs(ls_tensor_get_flat(g, 1) - 1.0 / 3) < 1e-15 &&
          fabs(ls_tensor_get_flat(g, 3) + 1.0 / 3) < 1e-15);
    ls_tensor_release(y);
    ls_tensor_release(g);
    y = ls_min(x, 0, NULL, true);
    g = grad1(y, x);
    CHECK(g && ls_tensor_get_flat(g, 3) == 1 && ls_tensor_get_flat(g, 0) == 0);
    ls_tensor_release(y);
    ls_tensor_release(g);
    ls_tensor_release(x);
    /* the 2-norm of zeros: subgradient 0, not NaN */
    ls_tensor *z = ls_tensor_zeros(LS_F64, 2, (int64_t[]){2, 2});
    ls_requires_grad_(z, true);
    y = ls_norm(z, 2, 1, (int[]){1}, false);
    ls_tensor *s = ls_sum(y, 0, NULL, false);
    g = grad1(s, z);
    CHECK(g && ls_tensor_get_flat(g, 0) == 0 && ls_tensor_get_flat(g, 3) == 0);
    ls_tensor_release(y);
    ls_tensor_release(s);
    ls_tensor_release(g);
    ls_tensor_release(z);
}

/* ---- allocation failures: every failure point gives NULL with a message, and leaks nothing ---- */
static void test_alloc_failures(void)
{
    ls_tensor *x = make(LS_F32, 2, (int64_t[]){3, 9000});   /* rows of 3 chunks: partial buffers */
    ls_tensor *in[2] = {ls_view_transpose(x, 0, 1),          /* the gather path */
                        make(LS_F64, 2, (int64_t[]){600, 16})};   /* columns, 3 row chunks */
    size_t live = ls_alloc_live_bytes();
    for (int k = 0; k < 2; k++) {
        int failures = 0;
        for (long n = 1; n <= 12; n++)
            for (int fn = 0; fn < NFN; fn++) {
                ls_alloc_fail_after(n);
                ls_tensor *y = run_fn(fn, in[k], 1, (int[]){0}, false, 1.0);
                ls_alloc_fail_after(0);
                if (!y) {
                    failures++;
                    CHECK(ls_error_code() == LS_ERR_MEM && ls_error_message()[0] != 0);
                }
                ls_tensor_release(y);
            }
        CHECK(failures > 0);
    }
    CHECK(ls_alloc_live_bytes() == live);
    ls_tensor_release(in[0]);
    ls_tensor_release(in[1]);
    ls_tensor_release(x);
}

int main(void)
{
    test_alloc_failures();
    test_all_subsets();
    test_arg();
    test_long_rows();
    test_layouts();
    test_layout_bits();
    test_empty();
    test_lse_special();
    test_sum_to();
    test_threads();
    test_errors();
    test_grad_conventions();
    return check_done("ops_reduce");
}
