/* Branch-free transcendentals for elementwise kernels (exp, tanh, sigmoid, softplus in f32 and f64),
 * written so that the compiler can vectorise loops that call them. Included by op files only. */
#ifndef LS_VECMATH_H
#define LS_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The math helpers below must be inlined into the kernels' loops for those to vectorise, so they
 * are forced inline (the f64 tanh is over GCC's size limit otherwise). */
#if defined(__GNUC__)
#define LS_MATH static inline __attribute__((always_inline))
#else
#define LS_MATH static inline
#endif

/* ---- f32 transcendentals the compiler can vectorise ----
 * libm's exp/tanh/log1p are scalar calls (4-20 ns an element), so exp, tanh, sigmoid and softplus
 * use these branch-free versions instead, which the compiler vectorises. The f32 ones are the
 * Cephes single-precision algorithms: a range reduction, a short polynomial, and integer bit
 * manipulation for the power of two. Largest errors measured over dense sweeps
 * (tests/c/test_ops_elementwise.c), against double (f32) and long double (f64) references:
 *   f32: exp 1.0 ulp, tanh 1.3, softplus 1.7, sigmoid 2.4;
 *   f64: exp 1.0 ulp, tanh 1.9, sigmoid 2.3, softplus 2.7 (libm's own tanh: 2.1). */
LS_MATH float f32_from_bits(int32_t i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
LS_MATH int32_t f32_bits(float f)
{
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

/* e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln2 / 2. Adding 1.5 * 2^23 rounds x / ln 2 to
 * an integer held in the low mantissa bits, read back without a float-to-int conversion. 2^n is
 * applied as two factors so results in the subnormal range (x < -87.3) come out right; x is clamped
 * first so n stays in range, and overflow is selected to +inf at the end. NaN propagates. */
LS_MATH float exp_f32(float x)
{
    float xc = x < -104.0f ? -104.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    float t = xc * 1.44269504088896341f + 12582912.0f;
    int32_t n = f32_bits(t) - 0x4B400000;
    float nf = t - 12582912.0f;
    float r = xc - nf * 0.693359375f;   /* ln 2 in two parts: the first has few bits, so */
    r = r - nf * -2.12194440e-4f;       /* nf * 0.693359375 is exact */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t n1 = n >> 1, n2 = n - n1;
    /* unsigned shifts: for a NaN x, n is garbage and a signed shift could overflow */
    y = y * f32_from_bits((int32_t)((uint32_t)(n1 + 127) << 23)) *
        f32_from_bits((int32_t)((uint32_t)(n2 + 127) << 23));
    return x > 88.72283935546875f ? INFINITY : y;
}

/* log(1 + e) for e in [0, 1] (softplus's second term). With 1 + e = 2^k (1 + z), z in
 * [sqrt(1/2) - 1, sqrt(2) - 1], z is exact: z = e when k = 0 and z = (e - 1) / 2 when k = 1. Then
 * log(1 + z) = z - z^2/2 + z^3 P(z). */
LS_MATH float log1p01_f32(float e)
{
    int big = e > 0.41421356f;
    float z = big ? (e - 1.0f) * 0.5f : e;
    float z2 = z * z;
    float p = 7.0376836292e-2f;
    p = p * z - 1.1514610310e-1f;
    p = p * z + 1.1676998740e-1f;
    p = p * z - 1.2420140846e-1f;
    p = p * z + 1.4249322787e-1f;
    p = p * z - 1.6668057665e-1f;
    p = p * z + 2.0000714765e-1f;
    p = p * z - 2.4999993993e-1f;
    p = p * z + 3.3333331174e-1f;
    float y = z + (z2 * z * p - 0.5f * z2);
    return big ? y + 0.693147180559945309f : y;
}

/* tanh: an odd polynomial for |x| < 0.625, 1 - 2 / (e^{2|x|} + 1) with the sign restored above. */
LS_MATH float tanh_f32(float x)
{
    float ax = x < 0.0f ? -x : x;
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
    big = x < 0.0f ? -big : big;
    return ax < 0.625f ? small : big;
}

/* ---- the same in f64 ----
 * Same structure with longer polynomials; the coefficients are Taylor coefficients (1/k!, 1/(2k+1),
 * and tanh's from the Bernoulli numbers), so they can be checked by anyone. The power of two is
 * built from a double holding an integer with 64-bit adds and left shifts only (AVX2 has no 64-bit
 * arithmetic right shift or double-to-int64 conversion). */
LS_MATH double f64_from_bits(int64_t i)
{
    double d;
    memcpy(&d, &i, sizeof d);
    return d;
}
LS_MATH int64_t f64_bits(double d)
{
    int64_t i;
    memcpy(&i, &d, sizeof i);
    return i;
}
#define LS_ROUND_F64 6755399441055744.0   /* 1.5 * 2^52: adding it rounds to an integer */
/* 2^k for an integer-valued double k in [-1022, 1023]. */
LS_MATH double pow2_f64(double k)
{
    uint64_t n = (uint64_t)(f64_bits(k + LS_ROUND_F64) - f64_bits(LS_ROUND_F64));
    return f64_from_bits((int64_t)((n + 1023) << 52));
}

/* e^x = 2^n e^r, |r| <= ln2 / 2, e^r by its Taylor series to r^13 (truncation < 5e-18). */
LS_MATH double exp_f64(double x)
{
    double xc = x < -746.0 ? -746.0 : x;
    xc = xc > 710.0 ? 710.0 : xc;
    double nf = (xc * 1.4426950408889634 + LS_ROUND_F64) - LS_ROUND_F64;
    double r = xc - nf * 6.93147180369123816490e-01;   /* ln 2, high part: 32 bits, so exact */
    r = r - nf * 1.90821492927058770002e-10;           /* ln 2, low part */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    double y = p * r * r + r + 1.0;
    double n1 = (nf * 0.5 + LS_ROUND_F64) - LS_ROUND_F64;   /* two factors, as in exp_f32 */
    y = y * pow2_f64(n1) * pow2_f64(nf - n1);
    return x > 709.782712893383973096 ? INFINITY : y;
}

/* log(1 + e) for e in [0, 1]: z as in log1p01_f32, then log(1 + z) = 2 atanh(s), s = z / (2 + z),
 * |s| < 0.172, by its series to s^23. */
LS_MATH double log1p01_f64(double e)
{
    int big = e > 0.41421356237309503;
    double z = big ? (e - 1.0) * 0.5 : e;
    double s = z / (2.0 + z), s2 = s * s;
    double p = 1.0 / 23.0;
    p = p * s2 + 1.0 / 21.0;
    p = p * s2 + 1.0 / 19.0;
    p = p * s2 + 1.0 / 17.0;
    p = p * s2 + 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    double y = 2.0 * s + 2.0 * s * s2 * p;
    return big ? y + 0.693147180559945309 : y;
}

/* tanh: its Taylor series to x^31 for |x| < 0.4, 1 - 2 / (e^{2|x|} + 1) above. */
LS_MATH double tanh_f64(double x)
{
    double ax = x < 0.0 ? -x : x;
    double z = x * x;
    double p = -1.0597268320104654e-06;
    p = p * z + 2.6147711512907546e-06;
    p = p * z - 6.451689215655431e-06;
    p = p * z + 1.5918905069328964e-05;
    p = p * z - 3.927832388331683e-05;
    p = p * z + 9.691537956929451e-05;
    p = p * z - 0.00023912911424355248;
    p = p * z + 0.000590027440945586;
    p = p * z - 0.0014558343870513183;
    p = p * z + 0.003592128036572481;
    p = p * z - 0.008863235529902197;
    p = p * z + 0.021869488536155203;
    p = p * z - 0.05396825396825397;
    p = p * z + 0.13333333333333333;
    p = p * z - 0.3333333333333333;
    double small = x + x * z * p;
    double big = 1.0 - 2.0 / (exp_f64(2.0 * ax) + 1.0);
    big = x < 0.0 ? -big : big;
    return ax < 0.4 ? small : big;
}

/* Sigmoid without overflow: with e = exp(-|x|) in (0, 1], 1/(1+e) for x >= 0 and e/(1+e) below. */
LS_MATH float sigmoid_f32(float x)
{
    float e = exp_f32(x < 0.0f ? x : -x);
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}
LS_MATH double sigmoid_f64(double x)
{
    double e = exp_f64(x < 0.0 ? x : -x);
    return (x >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* softplus = log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x, no underflow to 0
 * before it must. */
LS_MATH float softplus_f32(float x)
{
    return (x > 0.0f ? x : 0.0f) + log1p01_f32(exp_f32(x < 0.0f ? x : -x));
}
LS_MATH double softplus_f64(double x)
{
    return (x > 0.0 ? x : 0.0) + log1p01_f64(exp_f64(x < 0.0 ? x : -x));
}

#endif
