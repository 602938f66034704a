/* Integer arithmetic for the elementwise ops (add, sub, mul, neg and the comparisons; int_arith.c).
 * elementwise.c's forward functions hand their inputs here when one of them is an integer tensor. */
#ifndef LS_INT_ARITH_H
#define LS_INT_ARITH_H

#include "ops/op.h"

/* Whether any of the n inputs is an integer tensor (i64 or u8). */
bool ls_int_any(int n, ls_tensor *const *in);
/* a op b for op '+', '-', '*', broadcasting: i64 (u8 widened); an error when an input is a float. */
ls_tensor *ls_int_binary(const char *who, ls_tensor *const *in, char op);
/* -x as i64. */
ls_tensor *ls_int_neg(ls_tensor *const *in);
/* 1/0 as f64 of a cmp b, exact for all 64-bit values; cmp is one of "eq" "ne" "lt" "le" "gt" "ge". */
ls_tensor *ls_int_compare(const char *cmp, ls_tensor *const *in);

#endif
