/* bench_crosscore: what it costs one core to read data another core has just written, against
 * reading data it wrote itself. Not a comparison with PyTorch: a property of the machine, behind the
 * 2-thread scaling of small training steps (docs/bench-train.md). Each elementwise op, GEMM or
 * optimizer chunk of a step reads what the previous op wrote, and with 2 threads part of that was
 * written by the other core.
 *
 *   build/bench/bench_crosscore [--quick] [--reps N] > crosscore.csv
 *
 * Rows: workload read_<size>, ours_ms = the reading core's time when the other core wrote the buffer
 * just before, peer "same_core" = the time when the reading core wrote it itself, ratio = ours /
 * peer (above 1: the hand-over between cores costs that much more). The writer and reader are
 * pinned to the first two CPUs this process may use; medians of --reps hand-overs. The read is a
 * sum over one float per 64-byte line, so it measures moving lines, not arithmetic. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

typedef struct {
    float *buf;
    size_t n;
    int cpu;
    int rounds;
    atomic_int turn;   /* 1: the writer's turn, 2: the reader's */
} xc_job;

static void pin(int cpu)
{
    if (cpu < 0) return;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void fill(float *b, size_t n, int round)
{
    for (size_t i = 0; i < n; i++) b[i] = (float)(i + (size_t)round);
}

static float read_lines(const float *b, size_t n)
{
    float s = 0;
    for (size_t i = 0; i < n; i += 16) s += b[i];
    return s;
}

static void *writer(void *arg)
{
    xc_job *j = arg;
    pin(j->cpu);
    for (int r = 0; r < j->rounds; r++) {
        while (atomic_load(&j->turn) != 1) {}
        fill(j->buf, j->n, r);
        atomic_store(&j->turn, 2);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse_args(argc, argv, "bench_crosscore [--quick] [--reps N]: reading what another core wrote",
                     &o);
    int reps = o.quick ? 21 : (o.reps > 0 ? o.reps * 20 : 201);
    cpu_set_t allowed;
    int cpus[2] = {-1, -1}, found = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
        for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
            if (CPU_ISSET(c, &allowed)) cpus[found++] = c;
    if (found < 2) {
        fprintf(stderr, "# bench_crosscore: needs 2 CPUs, this process may use %d\n", found);
        return 0;
    }
    static const size_t kib[] = {256, 1024, 4096};
    bench_report_machine("bench_crosscore");
    printf("workload,dtype,threads,ours_ms,peer,peer_ms,ratio\n");
    for (size_t s = 0; s < sizeof kib / sizeof kib[0]; s++) {
        size_t n = kib[s] * 1024 / sizeof(float);
        xc_job j = {.n = n, .cpu = cpus[1], .rounds = reps};
        j.buf = aligned_alloc(64, n * sizeof(float));
        double *cross = malloc(sizeof(double) * (size_t)reps), *local = malloc(sizeof(double) * (size_t)reps);
        if (!j.buf || !cross || !local) return 1;
        memset(j.buf, 0, n * sizeof(float));
        pin(cpus[0]);
        pthread_t th;
        if (pthread_create(&th, NULL, writer, &j)) return 1;
        volatile float sink = 0;
        for (int r = 0; r < reps; r++) {
            atomic_store(&j.turn, 1);
            while (atomic_load(&j.turn) != 2) {}
            double t0 = bench_now();
            sink += read_lines(j.buf, n);
            cross[r] = bench_now() - t0;
            fill(j.buf, n, r);   /* now this core wrote it */
            t0 = bench_now();
            sink += read_lines(j.buf, n);
            local[r] = bench_now() - t0;
        }
        pthread_join(th, NULL);
        (void)sink;
        qsort(cross, (size_t)reps, sizeof(double), cmp_double);
        qsort(local, (size_t)reps, sizeof(double), cmp_double);
        double c = cross[reps / 2] * 1e3, l = local[reps / 2] * 1e3;
        printf("read_%zuKiB,f32,2,%.5f,same_core,%.5f,%.3f\n", kib[s], c, l, c / l);
        fprintf(stderr, "# %zu KiB: %.1f GB/s from the other core, %.1f GB/s from its own\n", kib[s],
                n * sizeof(float) / (c * 1e-3) / 1e9, n * sizeof(float) / (l * 1e-3) / 1e9);
        free(j.buf);
        free(cross);
        free(local);
    }
    return 0;
}
