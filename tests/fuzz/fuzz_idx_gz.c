/* libFuzzer target: the IDX reader through its file path, ls_idx_read, which goes through zlib
 * (gzip, or raw files that zlib passes through). The input becomes the contents of an in-memory file
 * (memfd) opened by its /proc/self/fd path, so the real reader runs: stat, gzopen, the bound on what a
 * compressed file can inflate to, gzip errors. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

#include "data/idx.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz_idx_gz", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    size_t live = ls_alloc_live_bytes();
    ls_error_clear();
    ls_tensor *t = ls_idx_read(path);
    if (!t) fuzz_expect_message();
    ls_tensor_release(t);
    fuzz_expect_no_leak(live);
    return 0;
}
