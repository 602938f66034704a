/* Included by the kernel files (after their other includes): GCC 12 at -O2 vectorises their short
 * loops only if asked (tree-vectorize, with the dynamic cost model that versions a loop for
 * aliasing instead of giving up). Vectorising changes no result: the kernels whose sums would be
 * reordered by it keep them in explicit lanes. With LS_VECTORIZE_NO_CONTRACT defined before the
 * include, multiply-adds are never fused into FMAs either (GCC and Clang), so every product and
 * sum rounds on its own, as separate ops (and PyTorch's) do, in a baseline loop and in its
 * AVX-512 copy alike. Clang vectorises at -O2 without being asked. */
#ifndef LS_VECTORIZE_H
#define LS_VECTORIZE_H

#if defined(__GNUC__) && !defined(__clang__)
#ifdef LS_VECTORIZE_NO_CONTRACT
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic", "fp-contract=off")
#else
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif
#endif
#if defined(__clang__) && defined(LS_VECTORIZE_NO_CONTRACT)
#pragma STDC FP_CONTRACT OFF
#endif

#endif
