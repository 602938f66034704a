/* IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.
 *
 * Layout: a 4-byte magic {0, 0, type, ndim}, then ndim big-endian u32 dims, then the elements in
 * row-major order, big-endian. Element types and the dtype each loads as:
 *   0x08 u8  -> LS_U8       0x09 i8  -> LS_I64      0x0B i16 -> LS_I64
 *   0x0C i32 -> LS_I64      0x0D f32 -> LS_F32      0x0E f64 -> LS_F64
 *
 * Errors are LS_ERR_IO (LS_ERR_MEM for allocation failures) with a message naming the function
 * (as the Lua binding calls it) and the file: "read_idx: t.idx: expected 47040000 bytes of data,
 * got 1000". Malformed input never crashes: dims are checked for overflow and the declared size is
 * checked against what the file can hold before anything large is allocated. */
#ifndef LS_IDX_H
#define LS_IDX_H

#include <stddef.h>

#include "tensor/tensor.h"

/* Read an IDX file; gzip is detected from the content, not the name. New reference or NULL. */
ls_tensor *ls_idx_read(const char *path);

/* Parse an uncompressed IDX image held in memory; `name` stands for the file in messages. */
ls_tensor *ls_idx_parse(const void *buf, size_t n, const char *name);

/* Write t (any layout, ndim 1..255) as IDX: u8 -> 0x08, f32 -> 0x0D, f64 -> 0x0E, i64 -> 0x0C (i32;
 * an error if a value does not fit). A path ending in ".gz" is gzip-compressed. A 0-dim tensor is
 * written as shape [1]. */
ls_status ls_idx_write(const char *path, const ls_tensor *t);

#endif
