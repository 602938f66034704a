/* The one random number generator: Philox4x32-10 (Salmon et al., SC'11), a counter-based generator.
 *
 * Element i of a draw is a pure function of (seed, counter offset + i), so a tensor filled in parallel
 * chunks, or in pieces, equals the same tensor filled at once, bit for bit. A stream (ls_rng) is a seed
 * plus the next unused counter offset; each fill advances the offset by the number of counters it used.
 *
 * Counter use per element (documented so that splits line up): every fill takes one 128-bit Philox
 * block per element, element i of a fill using counter r->offset + i:
 *   uniform    f32: top 24 bits of word 0; f64: 53 bits (word 0, then the top 21 of word 1)
 *   normal     Box-Muller, cosine branch only, in double: u1 in (0, 1] from words 0-1, u2 in [0, 1)
 *              from words 2-3 (53 bits each); f32 rounds the f64 result
 *   rademacher top bit of word 0;  bernoulli: 53-bit uniform < p (same mask for f32 and f64)
 *   randint    all 128 bits (see below);  permutation: one block per Fisher-Yates step
 * so with the same seed and offset an f32 uniform on [0, 1) is the f64 one truncated to 24 bits, an f32
 * normal is the f64 normal rounded to f32, and randint/rademacher/bernoulli do not depend on dtype.
 *
 * Preconditions are the caller's (the Lua binding checks them and raises): dtype as listed, n >= 0,
 * lo <= hi with hi - lo finite for uniform, lo < hi for randint, 0 <= p <= 1. Nothing here
 * allocates or fails. */
#ifndef LS_RNG_H
#define LS_RNG_H

#include <stdint.h>

#include "core/dtype.h"

typedef struct ls_rng {
    uint64_t seed;
    uint64_t offset;   /* next unused counter */
} ls_rng;

void ls_rng_init(ls_rng *r, uint64_t seed);
/* A stream's position is its seed and next unused counter: everything it will draw follows from
 * them. A checkpoint stores them (get) and a resumed run puts them back (set), after which the
 * stream continues bit for bit where the saved one was. */
void ls_rng_get_position(const ls_rng *r, uint64_t *seed, uint64_t *offset);
void ls_rng_set_position(ls_rng *r, uint64_t seed, uint64_t offset);
/* One Philox4x32-10 block for (key = seed, counter = ctr): four 32-bit words. The key is
 * {seed & 0xffffffff, seed >> 32}; the 128-bit counter is {ctr & 0xffffffff, ctr >> 32, 0, 0}. */
void ls_philox4x32(uint64_t seed, uint64_t ctr, uint32_t out[4]);
/* The same with a full 128-bit counter and 64-bit key, word for word as Random123's
 * philox4x32_R(10, ctr, key) (its known-answer vectors are in tests/c/test_rng.c). */
void ls_philox4x32_raw(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* The blocks of counters ctr0 .. ctr0 + 15 at once (AVX-512 where available): w[word][j] is word
 * `word` of ls_philox4x32(seed, ctr0 + j). The fills below draw their blocks this way. */
void ls_philox4x32_batch(uint64_t seed, uint64_t ctr0, uint32_t w[4][16]);

/* Fill n contiguous elements of dtype (f32 or f64; i64 also allowed for randint) starting at `out`.
 * Each advances r->offset by n. Parallel over the engine's pool; identical output for any thread count. */
/* [lo, hi): a result that rounds up to hi is replaced by the largest value of dtype below hi. */
void ls_rng_uniform(ls_rng *r, ls_dtype dtype, void *out, int64_t n, double lo, double hi);
void ls_rng_normal(ls_rng *r, ls_dtype dtype, void *out, int64_t n, double mean, double std);
void ls_rng_rademacher(ls_rng *r, ls_dtype dtype, void *out, int64_t n);                    /* +-1 */
void ls_rng_bernoulli(ls_rng *r, ls_dtype dtype, void *out, int64_t n, double p);           /* 0/1 */
/* Integers uniform in [lo, hi), dtype any of f32/f64/i64 (f32 holds integers exactly only up to 2^24).
 * Method: rejection-free multiply-shift on the whole block, lo + floor(x * (hi - lo) / 2^128) with x
 * the block as a 128-bit integer; every value has probability within a factor 1 +- (hi - lo) / 2^128
 * (<= 1 +- 2^-64) of exact, for any int64 range. */
void ls_rng_randint(ls_rng *r, ls_dtype dtype, void *out, int64_t n, int64_t lo, int64_t hi);
/* A uniformly random permutation of 0..n-1 as int64 (Fisher-Yates driven by the stream). */
void ls_rng_permutation(ls_rng *r, int64_t *out, int64_t n);

#endif
