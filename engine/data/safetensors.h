/* safetensors files: the format PyTorch and Hugging Face use for weights.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data buffer. The
 * JSON is one object mapping each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets":
 * [begin, end]} (byte offsets into the data buffer), plus an optional "__metadata__" object of
 * string -> string. Data are little-endian and row-major.
 *
 * Loading follows the reference implementation's rules strictly, and every violation is an error
 * (LS_ERR_IO) naming the function, the file and the problem, never a crash: the header must fit in
 * the file and be valid UTF-8 and valid JSON with no duplicate keys, every entry must have exactly
 * the three fields above, and the tensors, ordered by offset, must tile the data buffer exactly (no
 * overlap, no gap, nothing after the last one) with each byte range matching shape x dtype size.
 *
 * Dtypes load as: F32, F64, I64, U8 natively; F16 and BF16 -> f32 (exact); I32, I16, I8, U16, U32 ->
 * i64; BOOL -> u8. Others (U64, F8_*) are refused with a message naming the dtype and tensor.
 *
 * Saving writes F32, F64, I64 and U8 tensors. The header is compact JSON with "__metadata__" first
 * (only when there is metadata; keys in bytewise order), then the tensors ordered by element size,
 * largest first, and by name (bytewise) within a size, so every tensor is naturally aligned in the file; the header is padded
 * with spaces to a multiple of 8 bytes, as the reference writer does. The file is written to
 * "<path>.part" and renamed into place. */
#ifndef LS_SAFETENSORS_H
#define LS_SAFETENSORS_H

#include <stddef.h>

#include "tensor/tensor.h"

typedef struct ls_safetensors {
    int ntensors;
    char **names;           /* in file order (by data offset) */
    ls_tensor **tensors;    /* owned references; a caller may take one and set the slot to NULL */
    int nmeta;
    char **meta_keys;       /* in header order */
    char **meta_values;
} ls_safetensors;

/* Load a whole file; NULL on error. Free with ls_safetensors_free (NULL is a no-op). */
ls_safetensors *ls_safetensors_load(const char *path);
/* The same from a file image held in memory; `name` stands for the file in messages. */
ls_safetensors *ls_safetensors_parse(const void *buf, size_t n, const char *name);
void ls_safetensors_free(ls_safetensors *st);
/* Index of the tensor called `name`, or -1. */
int ls_safetensors_find(const ls_safetensors *st, const char *name);

/* Save n tensors under `names` (distinct, valid UTF-8, not "__metadata__") with nmeta metadata
 * pairs (keys distinct). Tensors may be any layout; they are written contiguous. */
ls_status ls_safetensors_save(const char *path, int n, const char *const *names,
                              const ls_tensor *const *tensors, int nmeta,
                              const char *const *meta_keys, const char *const *meta_values);

#endif
