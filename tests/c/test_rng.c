/* The Philox generator and the fills built on it.
 *
 * Statistical checks use fixed seeds, so they are reproducible; tolerances are 5 standard errors
 * (two-sided p = 5.7e-7 for a correct generator at an arbitrary seed), and chi-square thresholds are
 * the chi-square quantiles at that same tail probability. */
#include "check.h"
#include "core/parallel.h"
#include "core/rng.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N_MOMENTS 1000000

/* ---- Philox known answers ----
 * Random123 tests/kat_vectors, the three "philox4x32 10" lines: ctr[4] key[2] -> out[4]. */
static void test_kat(void)
{
    static const uint32_t kat[3][10] = {
        { 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
          0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 },
        { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
          0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd },
        { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
          0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 },
    };
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        ls_philox4x32_raw(&kat[t][0], &kat[t][4], out);
        for (int k = 0; k < 4; k++) CHECK(out[k] == kat[t][6 + k]);
    }
    /* Our (seed, ctr) mapping: the all-zero vector is seed 0, counter 0. */
    uint32_t out[4];
    ls_philox4x32(0, 0, out);
    for (int k = 0; k < 4; k++) CHECK(out[k] == kat[0][6 + k]);
    /* ...and in general key = seed halves (low first), counter = ctr halves (low first), 0, 0. */
    uint64_t seed = 0x0123456789abcdefULL, ctr = 0xfedcba9876543210ULL;
    uint32_t c[4] = { (uint32_t)ctr, (uint32_t)(ctr >> 32), 0, 0 };
    uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
    uint32_t a[4], b[4];
    ls_philox4x32(seed, ctr, a);
    ls_philox4x32_raw(c, key, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
}


/* The 16-at-a-time generator equals 16 single blocks, also where the counter's low word wraps;
 * and a fill's element i is built from the block of counter offset + i (Rademacher: the top bit of
 * word 0), across such a wrap too. */
static void test_batch(void)
{
    static const uint64_t ctrs[] = {0, 5, 0xfffffff8ULL, 0x1fffffff3ULL, 0xfffffffffffffff9ULL};
    for (int c = 0; c < 5; c++) {
        uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(c + 1);
        uint32_t w[4][16];
        ls_philox4x32_batch(seed, ctrs[c], w);
        int bad = 0;
        for (int j = 0; j < 16; j++) {
            uint32_t o[4];
            ls_philox4x32(seed, ctrs[c] + (uint64_t)j, o);
            for (int q = 0; q < 4; q++) bad += o[q] != w[q][j];
        }
        CHECK(bad == 0);
    }
    ls_rng r;
    ls_rng_init(&r, 77);
    r.offset = 0xffffffffULL - 40;
    float x[100];
    ls_rng_rademacher(&r, LS_F32, x, 100);
    int bad = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t o[4];
        ls_philox4x32(77, 0xffffffffULL - 40 + (uint64_t)i, o);
        bad += x[i] != ((o[0] >> 31) ? 1.0f : -1.0f);
    }
    CHECK(bad == 0);
}

/* ---- one fill per (distribution, dtype), for the split and thread tests ---- */
enum { D_UNIFORM, D_NORMAL, D_RADEMACHER, D_BERNOULLI, D_RANDINT, D_COUNT };

static void fill(int dist, ls_rng *r, ls_dtype dt, void *out, int64_t n)
{
    switch (dist) {
    case D_UNIFORM: ls_rng_uniform(r, dt, out, n, -2.0, 3.0); break;
    case D_NORMAL: ls_rng_normal(r, dt, out, n, 0.5, 2.0); break;
    case D_RADEMACHER: ls_rng_rademacher(r, dt, out, n); break;
    case D_BERNOULLI: ls_rng_bernoulli(r, dt, out, n, 0.3); break;
    case D_RANDINT: ls_rng_randint(r, dt, out, n, -5, 1000); break;
    }
}

/* Filling n at once equals filling n/3 and then the rest, bit for bit, and both advance the offset by
 * n. Sizes cross the fill grain so the parallel path is exercised. */
static void test_split_invariance(void)
{
    const int64_t sizes[] = { 1, 7, 10007, 50021 };
    const ls_dtype dts[] = { LS_F32, LS_F64, LS_I64 };
    for (int d = 0; d < D_COUNT; d++) {
        for (int t = 0; t < 3; t++) {
            if (dts[t] == LS_I64 && d != D_RANDINT) continue;
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                int64_t n = sizes[s], k = n / 3;
                size_t es = ls_dtype_size(dts[t]);
                char *whole = malloc((size_t)n * es), *parts = malloc((size_t)n * es);
                ls_rng r1, r2;
                ls_rng_init(&r1, 42);
                ls_rng_init(&r2, 42);
                r1.offset = r2.offset = 1000;
                fill(d, &r1, dts[t], whole, n);
                fill(d, &r2, dts[t], parts, k);
                fill(d, &r2, dts[t], parts + (size_t)k * es, n - k);
                CHECK(memcmp(whole, parts, (size_t)n * es) == 0);
                CHECK(r1.offset == 1000 + (uint64_t)n && r2.offset == r1.offset);
                free(whole);
                free(parts);
            }
        }
    }
}

/* The same fill with 1, 2 and 3 threads is bit-identical. */
static void test_thread_invariance(void)
{
    const int64_t n = 200003;
    const ls_dtype dts[] = { LS_F32, LS_F64 };
    int saved = ls_get_threads();
    for (int d = 0; d < D_COUNT; d++) {
        for (int t = 0; t < 2; t++) {
            size_t bytes = (size_t)n * ls_dtype_size(dts[t]);
            char *ref = malloc(bytes), *got = malloc(bytes);
            ls_set_threads(1);
            ls_rng r;
            ls_rng_init(&r, 7);
            fill(d, &r, dts[t], ref, n);
            for (int threads = 2; threads <= 3; threads++) {
                ls_set_threads(threads);
                ls_rng_init(&r, 7);
                memset(got, 0, bytes);
                fill(d, &r, dts[t], got, n);
                CHECK(memcmp(ref, got, bytes) == 0);
            }
            free(ref);
            free(got);
        }
    }
    ls_set_threads(saved);
}

/* Sample mean and central moments 2..4 of x (as double). */
typedef struct { double mean, m2, m3, m4; } moments;

static moments moments_f64(const double *x, int64_t n)
{
    moments m = { 0, 0, 0, 0 };
    for (int64_t i = 0; i < n; i++) m.mean += x[i];
    m.mean /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - m.mean, d2 = d * d;
        m.m2 += d2;
        m.m3 += d2 * d;
        m.m4 += d2 * d2;
    }
    m.m2 /= (double)n;
    m.m3 /= (double)n;
    m.m4 /= (double)n;
    return m;
}

static double *as_f64(const void *x, ls_dtype dt, int64_t n)
{
    double *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++)
        y[i] = dt == LS_F32 ? (double)((const float *)x)[i] : ((const double *)x)[i];
    return y;
}

static void test_uniform(void)
{
    const int64_t n = N_MOMENTS;
    const ls_dtype dts[] = { LS_F32, LS_F64 };
    for (int t = 0; t < 2; t++) {
        void *buf = malloc((size_t)n * 8);
        ls_rng r;
        ls_rng_init(&r, 1234 + (uint64_t)t);
        /* U[0, 1): mean 1/2 (SE sqrt(1/12/n)), variance 1/12 (SE sqrt((1/80 - 1/144)/n)). */
        ls_rng_uniform(&r, dts[t], buf, n, 0.0, 1.0);
        double *x = as_f64(buf, dts[t], n);
        int in_range = 1;
        for (int64_t i = 0; i < n; i++) in_range &= x[i] >= 0.0 && x[i] < 1.0;
        CHECK(in_range);
        moments m = moments_f64(x, n);
        CHECK_NEAR(m.mean, 0.5, 5 * sqrt(1.0 / 12 / n));
        CHECK_NEAR(m.m2, 1.0 / 12, 5 * sqrt((1.0 / 80 - 1.0 / 144) / n));
        /* Lag-1 correlation of neighbours: 0 with SE 1/sqrt(n). */
        double c = 0;
        for (int64_t i = 0; i + 1 < n; i++) c += (x[i] - m.mean) * (x[i + 1] - m.mean);
        CHECK_NEAR(c / (double)(n - 1) / m.m2, 0.0, 5 / sqrt((double)n));
        /* Chi-square over 100 equal bins (99 dof): 5-sigma-equivalent quantile 183.1. */
        int64_t bins[100] = { 0 };
        for (int64_t i = 0; i < n; i++) bins[(int)(x[i] * 100)]++;
        double chi2 = 0, e = (double)n / 100;
        for (int b = 0; b < 100; b++) chi2 += (bins[b] - e) * (bins[b] - e) / e;
        CHECK(chi2 < 183.1);
        free(x);

        /* U[-2, 3): mean 1/2, variance 25/12, all inside. */
        ls_rng_uniform(&r, dts[t], buf, n, -2.0, 3.0);
        x = as_f64(buf, dts[t], n);
        in_range = 1;
        for (int64_t i = 0; i < n; i++) in_range &= x[i] >= -2.0 && x[i] < 3.0;
        CHECK(in_range);
        m = moments_f64(x, n);
        CHECK_NEAR(m.mean, 0.5, 5 * 5 * sqrt(1.0 / 12 / n));
        CHECK_NEAR(m.m2, 25.0 / 12, 5 * 25 * sqrt((1.0 / 80 - 1.0 / 144) / n));
        free(x);
        free(buf);
    }
}

/* Where lo + (hi - lo) u rounds up to hi, the value is clamped below hi: between 2^24 and 2^24 + 2
 * the f32 spacing is 2, so every f32 draw must be 2^24 exactly (and likewise 1e16 for f64). */
static void test_uniform_clamp(void)
{
    enum { n = 5000 };
    float f[n];
    double g[n];
    ls_rng r;
    ls_rng_init(&r, 5);
    ls_rng_uniform(&r, LS_F32, f, n, 16777216.0, 16777218.0);
    ls_rng_uniform(&r, LS_F64, g, n, 1e16, 1e16 + 2);
    int ok_f = 1, ok_g = 1;
    for (int i = 0; i < n; i++) {
        ok_f &= f[i] == 16777216.0f;
        ok_g &= g[i] == 1e16;
    }
    CHECK(ok_f);
    CHECK(ok_g);
    /* lo == hi gives lo. */
    ls_rng_uniform(&r, LS_F64, g, 10, 3.0, 3.0);
    CHECK(g[0] == 3.0 && g[9] == 3.0);
}

static void test_normal(void)
{
    const int64_t n = N_MOMENTS;
    const ls_dtype dts[] = { LS_F32, LS_F64 };
    for (int t = 0; t < 2; t++) {
        void *buf = malloc((size_t)n * 8);
        ls_rng r;
        ls_rng_init(&r, 99 + (uint64_t)t);
        /* N(0, 1): SEs of mean, variance, third and fourth moments are sqrt(1/n), sqrt(2/n),
         * sqrt(6/n), sqrt(96/n). */
        ls_rng_normal(&r, dts[t], buf, n, 0.0, 1.0);
        double *x = as_f64(buf, dts[t], n);
        moments m = moments_f64(x, n);
        double rn = sqrt((double)n);
        CHECK_NEAR(m.mean, 0.0, 5 / rn);
        CHECK_NEAR(m.m2, 1.0, 5 * sqrt(2.0) / rn);
        CHECK_NEAR(m.m3, 0.0, 5 * sqrt(6.0) / rn);
        CHECK_NEAR(m.m4, 3.0, 5 * sqrt(96.0) / rn);
        /* Tail mass beyond 3: 2 * 0.0013499 = 0.0026998, SE sqrt(p(1-p)/n). */
        int64_t tail = 0;
        int finite = 1;
        for (int64_t i = 0; i < n; i++) {
            tail += fabs(x[i]) > 3.0;
            finite &= isfinite(x[i]) && fabs(x[i]) <= 8.58;
        }
        CHECK(finite);
        double p3 = 0.0026997960632601866;
        CHECK_NEAR((double)tail / (double)n, p3, 5 * sqrt(p3 * (1 - p3) / (double)n));
        free(x);

        /* N(2, 3^2). */
        ls_rng_normal(&r, dts[t], buf, n, 2.0, 3.0);
        x = as_f64(buf, dts[t], n);
        m = moments_f64(x, n);
        CHECK_NEAR(m.mean, 2.0, 5 * 3 / rn);
        CHECK_NEAR(m.m2, 9.0, 5 * 9 * sqrt(2.0) / rn);
        free(x);
        free(buf);
    }
    /* Same seed and offset: the f32 normal is the f64 normal rounded to f32. */
    enum { k = 10000 };
    float f[k];
    double g[k];
    ls_rng r1, r2;
    ls_rng_init(&r1, 3);
    ls_rng_init(&r2, 3);
    ls_rng_normal(&r1, LS_F32, f, k, 1.0, 0.1);
    ls_rng_normal(&r2, LS_F64, g, k, 1.0, 0.1);
    int same = 1;
    for (int i = 0; i < k; i++) same &= f[i] == (float)g[i];
    CHECK(same);
}

static void test_rademacher_bernoulli(void)
{
    const int64_t n = N_MOMENTS;
    double *x = malloc((size_t)n * sizeof *x);
    float *f = malloc((size_t)n * sizeof *f);
    ls_rng r;
    ls_rng_init(&r, 2024);
    /* Rademacher: exactly +-1, mean 0 (SE 1/sqrt(n)). */
    ls_rng_rademacher(&r, LS_F64, x, n);
    int pm1 = 1;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        pm1 &= x[i] == 1.0 || x[i] == -1.0;
        s += x[i];
    }
    CHECK(pm1);
    CHECK_NEAR(s / (double)n, 0.0, 5 / sqrt((double)n));
    /* Same signs in f32 for the same counters. */
    r.offset = 0;
    ls_rng_rademacher(&r, LS_F32, f, n);
    int same = 1;
    for (int64_t i = 0; i < n; i++) same &= (double)f[i] == x[i];
    CHECK(same);

    /* Bernoulli(0.3): 0/1 with mean 0.3 (SE sqrt(0.21/n)). */
    ls_rng_bernoulli(&r, LS_F64, x, n, 0.3);
    int int01 = 1;
    s = 0;
    for (int64_t i = 0; i < n; i++) {
        int01 &= x[i] == 0.0 || x[i] == 1.0;
        s += x[i];
    }
    CHECK(int01);
    CHECK_NEAR(s / (double)n, 0.3, 5 * sqrt(0.21 / (double)n));
    /* p = 0 and p = 1 are exact. */
    ls_rng_bernoulli(&r, LS_F32, f, 100000, 0.0);
    double s0 = 0;
    for (int i = 0; i < 100000; i++) s0 += f[i];
    ls_rng_bernoulli(&r, LS_F32, f, 100000, 1.0);
    double s1 = 0;
    for (int i = 0; i < 100000; i++) s1 += f[i];
    CHECK(s0 == 0.0);
    CHECK(s1 == 100000.0);
    free(x);
    free(f);
}

/* Chi-square statistic of counts against equal expected frequencies. */
static double chi2_equal(const int64_t *counts, int k, int64_t n)
{
    double e = (double)n / k, c = 0;
    for (int b = 0; b < k; b++) c += (counts[b] - e) * (counts[b] - e) / e;
    return c;
}

static void test_randint(void)
{
    const int64_t n = N_MOMENTS;
    int64_t *v = malloc((size_t)n * sizeof *v);
    ls_rng r;
    ls_rng_init(&r, 77);

    /* [0, 10): range and chi-square with 9 dof (threshold 46.1). */
    ls_rng_randint(&r, LS_I64, v, n, 0, 10);
    int64_t c10[10] = { 0 };
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        ok &= v[i] >= 0 && v[i] < 10;
        if (v[i] >= 0 && v[i] < 10) c10[v[i]]++;
    }
    CHECK(ok);
    CHECK(chi2_equal(c10, 10, n) < 46.1);

    /* [-500, 500): 1000 bins, 999 dof (threshold 1231.8); both ends are hit. */
    ls_rng_randint(&r, LS_I64, v, n, -500, 500);
    int64_t *c1000 = calloc(1000, sizeof *c1000);
    ok = 1;
    for (int64_t i = 0; i < n; i++) {
        ok &= v[i] >= -500 && v[i] < 500;
        if (v[i] >= -500 && v[i] < 500) c1000[v[i] + 500]++;
    }
    CHECK(ok);
    CHECK(c1000[0] > 0 && c1000[999] > 0);
    CHECK(chi2_equal(c1000, 1000, n) < 1231.8);
    free(c1000);

    /* A huge range, 3 * 2^62 starting at INT64_MIN: thirds of the range must be equally likely
     * (2 dof, threshold 28.7). Taking a 64-bit draw modulo the range would put half the mass in the
     * first third. */
    int64_t lo = INT64_MIN, hi = (int64_t)((uint64_t)INT64_MIN + (3ULL << 62));
    ls_rng_randint(&r, LS_I64, v, n, lo, hi);
    int64_t c3[3] = { 0 };
    ok = 1;
    for (int64_t i = 0; i < n; i++) {
        ok &= v[i] >= lo && v[i] < hi;
        uint64_t off = (uint64_t)v[i] - (uint64_t)lo;
        c3[off >> 62 < 3 ? off >> 62 : 2]++;
    }
    CHECK(ok);
    CHECK(chi2_equal(c3, 3, n) < 28.7);

    /* The full int64 range minus one value, and a range of one. */
    ls_rng_randint(&r, LS_I64, v, 1000, INT64_MIN, INT64_MAX);
    int neg = 0, pos = 0;
    for (int i = 0; i < 1000; i++) {
        neg += v[i] < 0;
        pos += v[i] > 0;
    }
    CHECK(neg > 400 && pos > 400);
    ls_rng_randint(&r, LS_I64, v, 1000, 41, 42);
    ok = 1;
    for (int i = 0; i < 1000; i++) ok &= v[i] == 41;
    CHECK(ok);

    /* The value does not depend on dtype. */
    double *d = malloc(1000 * sizeof *d);
    float *f = malloc(1000 * sizeof *f);
    r.offset = 5;
    ls_rng_randint(&r, LS_I64, v, 1000, -300, 300);
    r.offset = 5;
    ls_rng_randint(&r, LS_F64, d, 1000, -300, 300);
    r.offset = 5;
    ls_rng_randint(&r, LS_F32, f, 1000, -300, 300);
    ok = 1;
    for (int i = 0; i < 1000; i++) ok &= (double)v[i] == d[i] && (float)v[i] == f[i];
    CHECK(ok);
    free(d);
    free(f);
    free(v);
}

static int is_permutation(const int64_t *p, int64_t n)
{
    char *seen = calloc((size_t)n + 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_permutation(void)
{
    ls_rng r;
    ls_rng_init(&r, 11);
    const int64_t sizes[] = { 0, 1, 2, 10, 1000, 100003 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        int64_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
        uint64_t before = r.offset;
        ls_rng_permutation(&r, p, n);
        CHECK(is_permutation(p, n));
        CHECK(r.offset == before + (uint64_t)n);
        if (n == 100003) {
            int64_t fixed = 0;   /* a random permutation has about one fixed point */
            for (int64_t i = 0; i < n; i++) fixed += p[i] == i;
            CHECK(fixed < 20);
        }
        free(p);
    }
    /* All 24 orders of 4 items equally likely: 240000 draws, 23 dof (threshold 72.1). */
    const int64_t trials = 240000;
    int64_t counts[24] = { 0 };
    for (int64_t t = 0; t < trials; t++) {
        int64_t p[4];
        ls_rng_permutation(&r, p, 4);
        /* Lehmer code: rank of the permutation in 0..23. */
        int rank = 0;
        for (int i = 0; i < 4; i++) {
            int smaller = 0;
            for (int j = i + 1; j < 4; j++) smaller += p[j] < p[i];
            rank = rank * (4 - i) + smaller;
        }
        counts[rank]++;
    }
    CHECK(chi2_equal(counts, 24, trials) < 72.1);
    /* Deterministic: the same stream state gives the same permutation. */
    int64_t a[50], b[50];
    r.offset = 123;
    ls_rng_permutation(&r, a, 50);
    r.offset = 123;
    ls_rng_permutation(&r, b, 50);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

/* Different seeds and neighbouring offsets give different streams. */
static void test_streams_differ(void)
{
    double a[64], b[64], c[64];
    ls_rng r;
    ls_rng_init(&r, 1);
    ls_rng_uniform(&r, LS_F64, a, 64, 0, 1);
    ls_rng_init(&r, 2);
    ls_rng_uniform(&r, LS_F64, b, 64, 0, 1);
    ls_rng_init(&r, 1);
    r.offset = 1;
    ls_rng_uniform(&r, LS_F64, c, 64, 0, 1);
    int differ_seed = 0, shifted = 1;
    for (int i = 0; i < 64; i++) differ_seed += a[i] != b[i];
    for (int i = 0; i + 1 < 64; i++) shifted &= c[i] == a[i + 1];
    CHECK(differ_seed == 64);
    CHECK(shifted);
}

int main(void)
{
    test_kat();
    test_batch();
    test_split_invariance();
    test_thread_invariance();
    test_uniform();
    test_uniform_clamp();
    test_normal();
    test_rademacher_bernoulli();
    test_randint();
    test_permutation();
    test_streams_differ();
    return check_done("test_rng");
}
