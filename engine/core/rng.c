#include "core/rng.h"
#include "core/parallel.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

/* As in elementwise_kernel.c: GCC 12's -O2 vectorises the conversion loops only if asked. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif

/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11),
 * bit-compatible with Random123's philox4x32_R(10, ctr, key).
 *
 * A round multiplies counter words 0 and 2 by M0 and M1 (32x32 -> 64 bits) and mixes the high halves
 * with the other two words and the key:
 *     c' = { hi(M1 * c2) ^ c1 ^ k0,  lo(M1 * c2),  hi(M0 * c0) ^ c3 ^ k1,  lo(M0 * c0) }
 * and the key is bumped by the Weyl constants (W0, W1) between rounds (nine bumps for ten rounds). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c[0] = n0;
    c[1] = n1;
    c[2] = n2;
    c[3] = n3;
}

static inline void philox_block(const uint32_t ctr[4], uint32_t k0, uint32_t k1, uint32_t out[4])
{
    uint32_t c[4] = { ctr[0], ctr[1], ctr[2], ctr[3] };
    philox_round(c, k0, k1);
    for (int r = 1; r < 10; r++) {
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
        philox_round(c, k0, k1);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

void ls_philox4x32_raw(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    philox_block(ctr, key[0], key[1], out);
}

/* Our mapping: key = (low, high) 32-bit halves of the seed; counter = (low, high) halves of ctr, then
 * two zero words. */
static inline void philox_at(uint64_t seed, uint64_t ctr, uint32_t out[4])
{
    const uint32_t c[4] = { (uint32_t)ctr, (uint32_t)(ctr >> 32), 0, 0 };
    philox_block(c, (uint32_t)seed, (uint32_t)(seed >> 32), out);
}

void ls_philox4x32(uint64_t seed, uint64_t ctr, uint32_t out[4])
{
    philox_at(seed, ctr, out);
}

/* ---- 16 blocks at a time ----
 * philox_batch computes the blocks of counters ctr0 .. ctr0 + 15 (the 64-bit counter split into
 * words 0 and 1 as in philox_at, carries included) into w[word][lane]: the same bits as 16 calls of
 * philox_at. With AVX-512 the 16 blocks run in the lanes of four vectors (one per counter word);
 * _mm512_mul_epu32 multiplies the even 32-bit lanes, so each 32x32 -> 64 product is taken twice,
 * for the even and the (shifted) odd lanes, and the high and low halves are blended back. */
#define PHILOX_BATCH 16

static void philox_batch_scalar(uint64_t seed, uint64_t ctr0, uint32_t w[4][PHILOX_BATCH])
{
    for (int j = 0; j < PHILOX_BATCH; j++) {
        uint32_t o[4];
        philox_at(seed, ctr0 + (uint64_t)j, o);
        for (int q = 0; q < 4; q++) w[q][j] = o[q];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PHILOX_HAVE_AVX512 1

/* hi and lo 32-bit halves of a * m for each 32-bit lane of a */
__attribute__((target("avx512f"), always_inline)) static inline void
philox_mul16(__m512i a, __m512i m, __m512i *hi, __m512i *lo)
{
    __m512i pe = _mm512_mul_epu32(a, m);                          /* even lanes: 64-bit products */
    __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);   /* odd lanes */
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
}

__attribute__((target("avx512f"))) static void philox_batch_avx512(uint64_t seed, uint64_t ctr0,
                                                                   uint32_t w[4][PHILOX_BATCH])
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i base = _mm512_set1_epi32((int)(uint32_t)ctr0);
    __m512i c0 = _mm512_add_epi32(base, iota);
    __mmask16 carry = _mm512_cmplt_epu32_mask(c0, base);
    __m512i hi0 = _mm512_set1_epi32((int)(uint32_t)(ctr0 >> 32));
    __m512i c1 = _mm512_mask_add_epi32(hi0, carry, hi0, _mm512_set1_epi32(1));
    __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
    const __m512i m0 = _mm512_set1_epi32((int)PHILOX_M0), m1 = _mm512_set1_epi32((int)PHILOX_M1);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        __m512i h0, l0, h1, l1;
        philox_mul16(c0, m0, &h0, &l0);
        philox_mul16(c2, m1, &h1, &l1);
        __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(h1, c1), _mm512_set1_epi32((int)k0));
        __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(h0, c3), _mm512_set1_epi32((int)k1));
        c0 = n0;
        c1 = l1;
        c2 = n2;
        c3 = l0;
    }
    _mm512_storeu_si512(w[0], c0);
    _mm512_storeu_si512(w[1], c1);
    _mm512_storeu_si512(w[2], c2);
    _mm512_storeu_si512(w[3], c3);
}
#else
#define PHILOX_HAVE_AVX512 0
#endif

static void philox_batch(uint64_t seed, uint64_t ctr0, uint32_t w[4][PHILOX_BATCH])
{
#if PHILOX_HAVE_AVX512
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
    if (have) {
        philox_batch_avx512(seed, ctr0, w);
        return;
    }
#endif
    philox_batch_scalar(seed, ctr0, w);
}

void ls_philox4x32_batch(uint64_t seed, uint64_t ctr0, uint32_t w[4][16])
{
    philox_batch(seed, ctr0, w);
}

void ls_rng_init(ls_rng *r, uint64_t seed)
{
    r->seed = seed;
    r->offset = 0;
}

void ls_rng_get_position(const ls_rng *r, uint64_t *seed, uint64_t *offset)
{
    *seed = r->seed;
    *offset = r->offset;
}

void ls_rng_set_position(ls_rng *r, uint64_t seed, uint64_t offset)
{
    r->seed = seed;
    r->offset = offset;
}

/* ---- bits to numbers ----
 * u24: the top 24 bits of word 0, in [0, 1) with step 2^-24 (f32).
 * u53: word 0 then the top 21 bits of word 1, in [0, 1) with step 2^-53 (f64).
 * u24 is u53 truncated to 24 bits: an f32 U[0, 1) draw is the f64 one of the same element rounded down. */
static inline float bits_u24(uint32_t w0) { return (float)(w0 >> 8) * 0x1p-24f; }

static inline uint64_t bits_53(uint32_t w0, uint32_t w1)
{
    return (((uint64_t)w0 << 32) | w1) >> 11;
}

static inline double bits_u53(uint32_t w0, uint32_t w1) { return (double)bits_53(w0, w1) * 0x1p-53; }

/* Bounded integer in [0, range) from all 128 bits of a block: floor(x * range / 2^128), x the block
 * read as a 128-bit integer (word 0 most significant). Each result has floor or ceil of
 * 2^128 / range preimages, so no value's probability is off by more than a factor of
 * 1 +- range / 2^128 <= 1 +- 2^-64: unbiased for any practical purpose, no rejection loop, one block.
 * Written with 64x64 -> 128 products: x * range = A * 2^64 + B with A = hi * range, B = lo * range,
 * and floor((A * 2^64 + B) / 2^128) = floor((A + floor(B / 2^64)) / 2^64); the sum fits in 128 bits. */
__extension__ typedef unsigned __int128 u128;   /* GCC and Clang on 64-bit targets */

static inline uint64_t bits_bounded(const uint32_t w[4], uint64_t range)
{
    u128 hi = ((uint64_t)w[0] << 32) | w[1];
    u128 lo = ((uint64_t)w[2] << 32) | w[3];
    u128 a = hi * range;
    u128 b = lo * range;
    return (uint64_t)((a + (b >> 64)) >> 64);
}

/* ---- parallel fills ----
 * One Philox block per element: element i of a fill uses counter r->offset + i. A chunk [begin, end)
 * therefore computes exactly what a serial loop would, whichever thread runs it. */

/* Elements per chunk. An element costs 10-40 ns (one Philox block, plus log and cos for normal), so a
 * chunk is 0.1-0.3 ms: well above the cost of waking a worker (~10 us on a VM). Results do not depend
 * on it. */
#define RNG_GRAIN 8192

typedef struct fill_ctx {
    uint64_t seed;
    uint64_t offset;
    ls_dtype dtype;
    void *out;
    double a, b;            /* uniform: lo, hi - lo; normal: mean, std; bernoulli: p */
    float top_f32;          /* uniform: largest f32 allowed (just below hi) */
    double top_f64;         /* uniform: largest f64 allowed */
    int64_t ilo;            /* randint: lo */
    uint64_t range;         /* randint: hi - lo */
} fill_ctx;

/* Runs STMT for each element i in [begin, end) of a chunk with `const uint32_t w[4]` its block, the
 * blocks made PHILOX_BATCH at a time. */
#define FILL_LOOP(c, STMT)                                                                         \
    do {                                                                                           \
        uint32_t blk_[4][PHILOX_BATCH];                                                            \
        for (int64_t i0_ = begin; i0_ < end; i0_ += PHILOX_BATCH) {                                \
            philox_batch((c)->seed, (c)->offset + (uint64_t)i0_, blk_);                            \
            int64_t n_ = end - i0_ < PHILOX_BATCH ? end - i0_ : PHILOX_BATCH;                      \
            for (int64_t j_ = 0; j_ < n_; j_++) {                                                  \
                const int64_t i = i0_ + j_;                                                        \
                const uint32_t w[4] = {blk_[0][j_], blk_[1][j_], blk_[2][j_], blk_[3][j_]};        \
                STMT;                                                                              \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void uniform_chunk(void *vctx, int64_t begin, int64_t end)
{
    const fill_ctx *c = vctx;
    if (c->dtype == LS_F32) {
        float *out = c->out;
        FILL_LOOP(c, {
            float x = (float)(c->a + c->b * bits_u24(w[0]));
            out[i] = x < c->top_f32 ? x : c->top_f32;
        });
    } else {
        double *out = c->out;
        FILL_LOOP(c, {
            double x = c->a + c->b * bits_u53(w[0], w[1]);
            out[i] = x < c->top_f64 ? x : c->top_f64;
        });
    }
}

/* Box-Muller, cosine branch: z = sqrt(-2 ln u1) cos(2 pi u2), with u1 = (53 bits of words 0-1 + 1) *
 * 2^-53 in (0, 1] so ln never sees 0, and u2 the 53-bit uniform of words 2-3. Both dtypes evaluate in
 * double; f32 rounds the final mean + std * z, so an f32 normal is exactly the f64 normal of the same
 * element rounded to f32. |z| <= sqrt(2 ln 2^53) = 8.57. The sine branch is dropped to keep one
 * element per block, which is what makes any split of a fill line up. */
static inline double normal_z(const uint32_t w[4])
{
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = (double)(bits_53(w[0], w[1]) + 1) * 0x1p-53;
    double u2 = bits_u53(w[2], w[3]);
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

static void normal_chunk(void *vctx, int64_t begin, int64_t end)
{
    const fill_ctx *c = vctx;
    if (c->dtype == LS_F32) {
        float *out = c->out;
        FILL_LOOP(c, out[i] = (float)(c->a + c->b * normal_z(w)));
    } else {
        double *out = c->out;
        FILL_LOOP(c, out[i] = c->a + c->b * normal_z(w));
    }
}

/* Sign from the top bit of word 0. Not through FILL_LOOP: a plain loop over each batch's word 0,
 * which the compiler vectorises (this fill makes the probes of every stochastic trace estimate). */
#define RADEMACHER_LOOP(T)                                                                         \
    do {                                                                                           \
        T *out = c->out;                                                                           \
        uint32_t blk[4][PHILOX_BATCH];                                                             \
        for (int64_t i0 = begin; i0 < end; i0 += PHILOX_BATCH) {                                   \
            philox_batch(c->seed, c->offset + (uint64_t)i0, blk);                                  \
            int n = (int)(end - i0 < PHILOX_BATCH ? end - i0 : PHILOX_BATCH);                      \
            for (int j = 0; j < n; j++) out[i0 + j] = (T)((int32_t)(blk[0][j] >> 31) * 2 - 1);     \
        }                                                                                          \
    } while (0)

static void rademacher_chunk(void *vctx, int64_t begin, int64_t end)
{
    const fill_ctx *c = vctx;
    if (c->dtype == LS_F32) RADEMACHER_LOOP(float);
    else RADEMACHER_LOOP(double);
}

/* 1 when u53 < p, for both dtypes (so the f32 and f64 masks of a seed agree). */
static void bernoulli_chunk(void *vctx, int64_t begin, int64_t end)
{
    const fill_ctx *c = vctx;
    if (c->dtype == LS_F32) {
        float *out = c->out;
        FILL_LOOP(c, out[i] = bits_u53(w[0], w[1]) < c->a ? 1.0f : 0.0f);
    } else {
        double *out = c->out;
        FILL_LOOP(c, out[i] = bits_u53(w[0], w[1]) < c->a ? 1.0 : 0.0);
    }
}

/* lo + bounded(range), computed in uint64 so that ranges up to 2^64 - 1 do not overflow. */
static inline int64_t randint_value(const fill_ctx *c, const uint32_t w[4])
{
    return (int64_t)((uint64_t)c->ilo + bits_bounded(w, c->range));
}

static void randint_chunk(void *vctx, int64_t begin, int64_t end)
{
    const fill_ctx *c = vctx;
    if (c->dtype == LS_F32) {
        float *out = c->out;
        FILL_LOOP(c, out[i] = (float)randint_value(c, w));
    } else if (c->dtype == LS_F64) {
        double *out = c->out;
        FILL_LOOP(c, out[i] = (double)randint_value(c, w));
    } else {
        int64_t *out = c->out;
        FILL_LOOP(c, out[i] = randint_value(c, w));
    }
}

static fill_ctx fill_begin(ls_rng *r, ls_dtype dtype, void *out, int64_t n)
{
    fill_ctx c = { .seed = r->seed, .offset = r->offset, .dtype = dtype, .out = out };
    r->offset += (uint64_t)(n > 0 ? n : 0);
    return c;
}

void ls_rng_uniform(ls_rng *r, ls_dtype dtype, void *out, int64_t n, double lo, double hi)
{
    assert(dtype == LS_F32 || dtype == LS_F64);
    fill_ctx c = fill_begin(r, dtype, out, n);
    c.a = lo;
    c.b = hi - lo;
    /* lo + (hi - lo) * u can round up to hi (e.g. f32, [1, 2), u = 1 - 2^-24); clamp to the largest
     * value below hi, but never below lo (when lo == hi the answer is lo). */
    float lo32 = (float)lo, hi32 = (float)hi;
    c.top_f32 = lo32 < hi32 ? nextafterf(hi32, -INFINITY) : lo32;
    c.top_f64 = lo < hi ? nextafter(hi, -INFINITY) : lo;
    ls_parallel_for(n, RNG_GRAIN, uniform_chunk, &c);
}

void ls_rng_normal(ls_rng *r, ls_dtype dtype, void *out, int64_t n, double mean, double std)
{
    assert(dtype == LS_F32 || dtype == LS_F64);
    fill_ctx c = fill_begin(r, dtype, out, n);
    c.a = mean;
    c.b = std;
    ls_parallel_for(n, RNG_GRAIN, normal_chunk, &c);
}

void ls_rng_rademacher(ls_rng *r, ls_dtype dtype, void *out, int64_t n)
{
    assert(dtype == LS_F32 || dtype == LS_F64);
    fill_ctx c = fill_begin(r, dtype, out, n);
    ls_parallel_for(n, RNG_GRAIN, rademacher_chunk, &c);
}

void ls_rng_bernoulli(ls_rng *r, ls_dtype dtype, void *out, int64_t n, double p)
{
    assert(dtype == LS_F32 || dtype == LS_F64);
    fill_ctx c = fill_begin(r, dtype, out, n);
    c.a = p;
    ls_parallel_for(n, RNG_GRAIN, bernoulli_chunk, &c);
}

void ls_rng_randint(ls_rng *r, ls_dtype dtype, void *out, int64_t n, int64_t lo, int64_t hi)
{
    assert(dtype == LS_F32 || dtype == LS_F64 || dtype == LS_I64);
    assert(lo < hi);
    fill_ctx c = fill_begin(r, dtype, out, n);
    c.ilo = lo;
    c.range = hi > lo ? (uint64_t)hi - (uint64_t)lo : 0;   /* 0: every element is lo */
    ls_parallel_for(n, RNG_GRAIN, randint_chunk, &c);
}

/* Fisher-Yates, inherently serial: step k = 0 .. n-2 swaps position i = n-1-k with a position j drawn
 * uniformly from [0, i] using counter offset + k (bits_bounded, so bias <= 2^-64 per step). Uses n
 * counters like every other fill (the last is unused). */
void ls_rng_permutation(ls_rng *r, int64_t *out, int64_t n)
{
    uint64_t seed = r->seed, offset = r->offset;
    r->offset += (uint64_t)(n > 0 ? n : 0);
    for (int64_t i = 0; i < n; i++) out[i] = i;
    uint32_t w[4];
    for (int64_t k = 0; k + 1 < n; k++) {
        int64_t i = n - 1 - k;
        philox_at(seed, offset + (uint64_t)k, w);
        int64_t j = (int64_t)bits_bounded(w, (uint64_t)i + 1);
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}
