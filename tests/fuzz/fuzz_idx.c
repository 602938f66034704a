/* libFuzzer target for the IDX reader (magic, dims, size guards, big-endian conversion) and, on
 * the same bytes, the CSV reader. Any input must give a result or a clean error.
 *
 * Not part of the default build; built like fuzz_safetensors.c (see there). */
#include <stddef.h>
#include <stdint.h>

#include "data/csv.h"
#include "data/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ls_tensor_release(ls_idx_parse(data, size, "fuzz"));
    ls_csv_table_free(ls_csv_parse((const char *)data, size, "fuzz"));
    return 0;
}
