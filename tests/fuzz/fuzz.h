/* Shared by the libFuzzer harnesses in tests/fuzz (docs/hardening.md has the commands and numbers).
 *
 * Each harness defines LLVMFuzzerTestOneInput: any input must give a result or a clean error (status
 * and message), never a crash, undefined behaviour, a leak or a hang. Besides that, every harness
 * checks that the engine allocator's live bytes return to where they were, so a leak through
 * ls_malloc is a finding even without LeakSanitizer. Built two ways (CMakeLists.txt):
 *   - with clang's -fsanitize=fuzzer (LS_FUZZ=ON) as real fuzzers;
 *   - with driver.c, as ctest regressions that replay the seed corpus in every build. */
#ifndef LS_FUZZ_H
#define LS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a finding) unless a failed call left a message. */
static inline void fuzz_expect_message(void)
{
    if (!ls_error_message()[0]) {
        fprintf(stderr, "fuzz: a call failed without an error message\n");
        abort();
    }
}

static inline void fuzz_expect_no_leak(size_t live_before)
{
    if (ls_alloc_live_bytes() != live_before) {
        fprintf(stderr, "fuzz: %zu engine bytes live before the input, %zu after\n", live_before,
                ls_alloc_live_bytes());
        abort();
    }
}

#endif
