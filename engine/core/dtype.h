/* Element types. f32 (default) and f64 carry all arithmetic; i64 holds indices and labels; u8 exists
 * so raw bytes (IDX images, safetensors U8) load without loss. Math ops accept f32/f64 only and name
 * the dtype in their error otherwise. */
#ifndef LS_DTYPE_H
#define LS_DTYPE_H

#include <stddef.h>

typedef enum ls_dtype { LS_F32 = 0, LS_F64 = 1, LS_I64 = 2, LS_U8 = 3 } ls_dtype;
#define LS_NUM_DTYPES 4

size_t ls_dtype_size(ls_dtype d);
/* "f32", "f64", "i64", "u8" */
const char *ls_dtype_name(ls_dtype d);
/* Accepts "f32"/"float32"/"float", "f64"/"float64"/"double", "i64"/"int64"/"long", "u8"/"uint8"/"byte".
 * Returns 0 and sets *out on success, -1 if unknown. */
int ls_dtype_parse(const char *name, ls_dtype *out);
static inline int ls_dtype_is_float(ls_dtype d) { return d == LS_F32 || d == LS_F64; }

#endif
