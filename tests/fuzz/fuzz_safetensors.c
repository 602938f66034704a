/* libFuzzer target: the safetensors reader (8-byte length, JSON header, schema, offsets, dtype
 * conversion) on a file image in memory. A file that loads must hold tensors whose shapes pass the
 * engine's shape rule and whose bytes match their data_offsets. */
#include <string.h>

#include "data/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t live = ls_alloc_live_bytes();
    ls_error_clear();
    ls_safetensors *st = ls_safetensors_parse(data, size, "fuzz.safetensors");
    if (!st) {
        fuzz_expect_message();
    } else {
        for (int k = 0; k < st->ntensors; k++) {
            const ls_tensor *t = st->tensors[k];
            if (!t || ls_shape_check("fuzz", t->ndim, t->shape, NULL) != LS_OK) abort();
            if (ls_safetensors_find(st, st->names[k]) < 0) abort();
        }
        for (int k = 0; k < st->nmeta; k++)
            if (!st->meta_keys[k] || !st->meta_values[k]) abort();
    }
    ls_safetensors_free(st);
    fuzz_expect_no_leak(live);
    return 0;
}
