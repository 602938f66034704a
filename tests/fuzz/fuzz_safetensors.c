/* libFuzzer target for the safetensors reader (header JSON, schema and offset checks, dtype
 * conversion). Any input must give a result or a clean error: never a crash, a leak or UB.
 *
 * Not part of the default build. With clang, from the repository root:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine tests/fuzz/fuzz_safetensors.c \
 *       engine/data/*.c engine/core/*.c engine/tensor/*.c engine/autograd/*.c engine/ops/*.c \
 *       -ljansson -lz -lcsv -lopenblas -llapacke -lm -lpthread -o fuzz_safetensors
 *   ./fuzz_safetensors -max_total_time=60 -max_len=4096 corpus/
 * (data/fixtures/tiny.safetensors makes a good seed corpus.) */
#include <stddef.h>
#include <stdint.h>

#include "data/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ls_safetensors *st = ls_safetensors_parse(data, size, "fuzz");
    ls_safetensors_free(st);
    return 0;
}
