/* libFuzzer target: the IDX reader on an uncompressed image in memory (magic, dims, the shape rule,
 * the size guards, the big-endian conversion). A file that loads has exactly the bytes its dims
 * declare. */
#include "data/idx.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t live = ls_alloc_live_bytes();
    ls_error_clear();
    ls_tensor *t = ls_idx_parse(data, size, "fuzz.idx");
    if (!t) fuzz_expect_message();
    else if (size < 4 || (size_t)(4 + 4 * t->ndim) > size) abort();
    ls_tensor_release(t);
    fuzz_expect_no_leak(live);
    return 0;
}
