/* Shared helpers of the C benchmarks: wall clock, side-by-side timing, the CSV rows, peak memory.
 *
 * Every benchmark prints tidy CSV on stdout with the header
 *     workload,dtype,threads,ours_ms,peer,peer_ms,ratio
 * (ratio = ours_ms / peer_ms: below 1 means the engine is faster) and diagnostics on stderr, each
 * line starting with '#', so `bench_x > out.csv` keeps the table clean.
 *
 * Timing (bench_pair). Each side is run once to warm up and to calibrate an inner loop of `iters`
 * calls so that one sample lasts at least min_sample seconds (small workloads would otherwise be
 * timed at the clock's resolution); then one more warm-up sample per side, then `reps` samples
 * taken alternately, ours then peer, so slow drift (turbo, a noisy neighbour) hits both sides
 * alike. The reported time is the median sample divided by iters, in milliseconds. */
#ifndef LS_BENCH_UTIL_H
#define LS_BENCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct bench_opts {
    bool quick;          /* --quick: fewer sizes and reps, a shorter version in seconds */
    int reps;            /* timed samples per side */
    double min_sample;   /* seconds per sample, at least */
} bench_opts;

/* Parses --quick, --reps N and --min-sample SECONDS (defaults: 11 reps of >= 0.04 s; quick: 5 of
 * >= 0.01 s); prints usage and exits on --help or anything else. `usage` describes the program. */
void bench_parse_args(int argc, char **argv, const char *usage, bench_opts *o);

/* Monotonic wall-clock seconds. */
double bench_now(void);

typedef void (*bench_fn)(void *ctx);

typedef struct bench_result {
    double ms_a, ms_b;           /* median wall milliseconds per call */
    double cpu_ms_a, cpu_ms_b;   /* median CPU milliseconds per call, all threads of the process:
                                    less disturbed than wall time when other processes compete for
                                    the cores (a diagnostic; the CSV reports wall time) */
    double faults_a, faults_b;   /* minor page faults per call during the timed samples */
    double pair_ratio;           /* median over the reps of (a's sample / b's sample), the pair
                                    taken back to back: drift between pairs cancels */
} bench_result;

/* a(ca) and b(cb) measured side by side (see above); b may be NULL to time a alone. */
bench_result bench_pair(const bench_opts *o, bench_fn a, void *ca, bench_fn b, void *cb);
/* The same, calling after(actx) after each of the reps (untimed): a third party's sample taken in
 * turn with ours, as a co-process peer's (bench_peer_ask). */
bench_result bench_pair_then(const bench_opts *o, bench_fn a, void *ca, bench_fn b, void *cb,
                             bench_fn after, void *actx);

/* A peer co-process, as bench/common.lua's peer(): its stdin a pipe from us, its stdout a FIFO we
 * read; it answers one request line with one reply line (peer_common.serve), its '#' lines going
 * to our stderr. start: NULL (with a note) if it cannot be started. ask: the reply in buf, or NULL
 * once the peer has exited. */
typedef struct bench_peer bench_peer;
bench_peer *bench_peer_start(const char *cmd);
const char *bench_peer_ask(bench_peer *p, const char *line, char *buf, int size);
void bench_peer_close(bench_peer *p);
/* The command prefix that runs the Python peers: env -u LD_PRELOAD OMP_WAIT_POLICY=passive and
 * LANDSCAPE_PYTHON or /usr/bin/python3 (quoted), into buf. */
const char *bench_python(char *buf, int size);

/* The median of v[0..n) (v is sorted in place). */
double bench_median(double *v, int n);

/* The CSV header and one row. */
void bench_header(void);
void bench_row(const char *workload, const char *dtype, int threads, double ours_ms,
               const char *peer, double peer_ms);

/* "1e6" for exact powers of ten from 1e3 up, else the decimal number. Returns buf. */
const char *bench_count_str(int64_t n, char *buf, int size);

/* Peak resident set size of this process in KiB (VmHWM in /proc/self/status), -1 if unknown. */
long bench_peak_rss_kb(void);
/* Prints "# <name>: peak RSS <n> MiB" on stderr. */
void bench_report_rss(const char *name);

/* Prints '#' lines on stderr saying where the numbers come from: the CPU (model name, family and
 * model, cores, AVX-512), the BLAS library and the kernel it runs (OpenBLAS's config and core name),
 * the engine's GEMM path, and the environment that steers threads (OMP_WAIT_POLICY, OMP_NUM_THREADS,
 * OPENBLAS_*, LANDSCAPE_THREADS). */
void bench_report_machine(const char *name);
/* "# <name>: threads: engine <n>, OpenBLAS <m>" (after each change of the thread count). */
void bench_report_threads(const char *name);

/* Prints "<who>: <engine error message>" on stderr and exits with status 1 (a benchmark has no
 * way to go on after the engine refused its input). */
void bench_die(const char *who);

#endif
