/* A tiny test harness: CHECK(cond), CHECK_NEAR(a, b, tol), and a summary from check_done(). Each test
 * executable is one area; a failing check prints file:line and the values, and the exit code is the
 * number of failures (capped), so ctest reports it. */
#ifndef CHECK_H
#define CHECK_H

#include <math.h>
#include <stdio.h>

/* check_uniform(): U[0, 1) with 53 bits from a xorshift64 generator, a fixed sequence per test file
 * (define CHECK_RNG_SEED before including this header for another sequence). For test inputs only;
 * the engine's own generator is tested in test_rng.c. */
#include <stdint.h>
#ifndef CHECK_RNG_SEED
#define CHECK_RNG_SEED 0x9e3779b97f4a7c15ULL
#endif
static uint64_t check_rng = CHECK_RNG_SEED;
static inline double check_uniform(void)
{
    check_rng ^= check_rng << 13;
    check_rng ^= check_rng >> 7;
    check_rng ^= check_rng << 17;
    return (double)(check_rng >> 11) / 9007199254740992.0;
}

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        check_count++;                                                                 \
        if (!(cond)) {                                                                 \
            check_failures++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

/* |a - b| <= tol, NaN fails. */
#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        double check_a_ = (double)(a), check_b_ = (double)(b);                         \
        check_count++;                                                                 \
        if (!(fabs(check_a_ - check_b_) <= (tol))) {                                   \
            check_failures++;                                                          \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.17g, %s = %.17g, tol %g\n", \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_, (double)(tol));    \
        }                                                                              \
    } while (0)

static inline int check_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures > 100 ? 100 : check_failures;
}

#endif
