/* The safetensors header parser (engine/data/json.c) on a synthetic header of N tensor entries
 * (N from the command line, default 20000; ~90 bytes each, as PyTorch writes them): the best of 30
 * parses (parse + tree + free) and the throughput. docs/io.md compares Jansson with the
 * hand-written parser it replaced, measured with this program. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "data/json.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    if (n < 0) n = 0;
    size_t cap = (size_t)n * 160 + 100, len = 0;
    char *buf = malloc(cap);
    if (!buf) return 1;
    len += (size_t)snprintf(buf + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    long off = 0;
    for (int i = 0; i < n; i++) {
        long cols = 3 + i % 7, bytes = 64L * cols * 4;
        len += (size_t)snprintf(buf + len, cap - len,
                                ",\"layer%d.block.weight\":{\"dtype\":\"F32\",\"shape\":[64,%ld],"
                                "\"data_offsets\":[%ld,%ld]}", i, cols, off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(buf + len, cap - len, "}");
    double best = 1e300;
    char err[200];
    for (int r = 0; r < 30; r++) {
        ls_json v;
        double t0 = now();
        if (ls_json_parse(buf, len, &v, err, sizeof err)) {
            fprintf(stderr, "bench_json_header: %s\n", err);
            return 1;
        }
        ls_json_free(&v);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("%d tensors, %zu bytes: best of 30 parses %.3f ms (%.1f MB/s)\n", n, len, best * 1e3,
           (double)len / best / 1e6);
    free(buf);
    return 0;
}
