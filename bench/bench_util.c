/* Shared helpers of the C benchmarks (see bench_util.h). */
#define _GNU_SOURCE /* popen, mkdtemp */
#include "bench_util.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/parallel.h"
#include "core/status.h"
#include "ops/gemm.h"

#define BENCH_MAX_REPS 64

void bench_parse_args(int argc, char **argv, const char *usage, bench_opts *o)
{
    o->quick = false;
    int reps = 0;
    bool help = false;
    double min_sample = 0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--quick") == 0) {
            o->quick = true;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > BENCH_MAX_REPS) goto usage;
            reps = (int)v;
        } else if (strcmp(argv[i], "--min-sample") == 0 && i + 1 < argc) {
            double v = strtod(argv[++i], &end);
            if (*end || !(v > 0 && v <= 10)) goto usage;
            min_sample = v;
        } else {
            help = strcmp(argv[i], "--help") == 0;
            goto usage;
        }
    }
    o->reps = reps ? reps : (o->quick ? 5 : 11);
    o->min_sample = min_sample > 0 ? min_sample : (o->quick ? 0.01 : 0.04);
    return;
usage:;
    FILE *f = help ? stdout : stderr;
    fprintf(f, "usage: %s [--quick] [--reps N (11; quick 5; at most %d)] [--min-sample SECONDS "
            "(0.04; quick 0.01)]\n  %s\n  CSV on stdout, notes on stderr.\n", argv[0],
            BENCH_MAX_REPS, usage);
    exit(f == stdout ? 0 : 2);
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long minor_faults(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

/* CPU seconds of the whole process (all threads). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall seconds of `iters` calls; *cpu (if given) gets their process CPU seconds. */
static double run_sample_cpu(bench_fn f, void *ctx, long iters, double *cpu)
{
    double c0 = cpu ? cpu_now() : 0, t0 = bench_now();
    for (long i = 0; i < iters; i++) f(ctx);
    double t = bench_now() - t0;
    if (cpu) *cpu = cpu_now() - c0;
    return t;
}

static double run_sample(bench_fn f, void *ctx, long iters)
{
    return run_sample_cpu(f, ctx, iters, NULL);
}

/* Calls in one sample so that it lasts at least min_sample seconds, from one timed call (which also
 * serves as the first warm-up). */
static long calibrate(const bench_opts *o, bench_fn f, void *ctx)
{
    double t = run_sample(f, ctx, 1);
    if (t >= o->min_sample) return 1;
    if (t < 1e-7) t = 1e-7;
    long n = (long)(o->min_sample / t) + 1;
    /* a second, steadier estimate over ~1/4 of a sample */
    long probe = n / 4 > 1 ? n / 4 : 1;
    t = run_sample(f, ctx, probe) / (double)probe;
    if (t < 1e-9) t = 1e-9;
    n = (long)(o->min_sample / t) + 1;
    return n < 1 ? 1 : n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

bench_result bench_pair(const bench_opts *o, bench_fn a, void *ca, bench_fn b, void *cb)
{
    return bench_pair_then(o, a, ca, b, cb, NULL, NULL);
}

bench_result bench_pair_then(const bench_opts *o, bench_fn a, void *ca, bench_fn b, void *cb,
                             bench_fn after, void *actx)
{
    int reps = o->reps < BENCH_MAX_REPS ? o->reps : BENCH_MAX_REPS;
    long na = calibrate(o, a, ca), nb = b ? calibrate(o, b, cb) : 0;
    run_sample(a, ca, na);
    if (b) run_sample(b, cb, nb);
    double sa[BENCH_MAX_REPS], sb[BENCH_MAX_REPS], ca_[BENCH_MAX_REPS], cb_[BENCH_MAX_REPS];
    double pr[BENCH_MAX_REPS];
    long fa = 0, fb = 0;
    for (int r = 0; r < reps; r++) {
        long f0 = minor_faults();
        sa[r] = run_sample_cpu(a, ca, na, &ca_[r]) / (double)na;
        ca_[r] /= (double)na;
        long f1 = minor_faults();
        if (b) {
            sb[r] = run_sample_cpu(b, cb, nb, &cb_[r]) / (double)nb;
            cb_[r] /= (double)nb;
            pr[r] = sa[r] / sb[r];
        }
        fa += f1 - f0;
        fb += minor_faults() - f1;
        if (after) after(actx);
    }
    bench_result res = {0};
    res.ms_a = 1e3 * bench_median(sa, reps);
    res.cpu_ms_a = 1e3 * bench_median(ca_, reps);
    res.faults_a = (double)fa / ((double)na * reps);
    if (b) {
        res.ms_b = 1e3 * bench_median(sb, reps);
        res.cpu_ms_b = 1e3 * bench_median(cb_, reps);
        res.faults_b = (double)fb / ((double)nb * reps);
        res.pair_ratio = bench_median(pr, reps);
    }
    return res;
}

void bench_header(void)
{
    printf("workload,dtype,threads,ours_ms,peer,peer_ms,ratio\n");
    fflush(stdout);
}

void bench_row(const char *workload, const char *dtype, int threads, double ours_ms,
               const char *peer, double peer_ms)
{
    printf("%s,%s,%d,%.4f,%s,%.4f,%.3f\n", workload, dtype, threads, ours_ms, peer, peer_ms,
           ours_ms / peer_ms);
    fflush(stdout);
}

const char *bench_count_str(int64_t n, char *buf, int size)
{
    int e = 0;
    int64_t m = n;
    while (m >= 10 && m % 10 == 0) {
        m /= 10;
        e++;
    }
    if (m == 1 && e >= 3) snprintf(buf, (size_t)size, "1e%d", e);
    else snprintf(buf, (size_t)size, "%lld", (long long)n);
    return buf;
}

long bench_peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

void bench_report_rss(const char *name)
{
    long kb = bench_peak_rss_kb();
    if (kb >= 0) fprintf(stderr, "# %s: peak RSS %.1f MiB\n", name, (double)kb / 1024.0);
    else fprintf(stderr, "# %s: peak RSS unknown (no /proc/self/status)\n", name);
}

void bench_die(const char *who)
{
    fprintf(stderr, "%s: %s\n", who, ls_error_message());
    exit(1);
}

/* The value of "key<spaces>: value" in /proc/cpuinfo's first processor, into buf ("?" if none). */
static const char *cpuinfo(const char *key, char *buf, size_t size)
{
    snprintf(buf, size, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return buf;
    char line[4096];
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, n) != 0 || (line[n] != ' ' && line[n] != '\t' && line[n] != ':'))
            continue;
        const char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ') v++;
        snprintf(buf, size, "%s", v);
        buf[strcspn(buf, "\n")] = 0;
        break;
    }
    fclose(f);
    return buf;
}

void bench_report_machine(const char *name)
{
    char model[256], fam[32], mod[32], flags[4096];
    cpuinfo("model name", model, sizeof model);
    cpuinfo("cpu family", fam, sizeof fam);
    cpuinfo("model", mod, sizeof mod);
    cpuinfo("flags", flags, sizeof flags);
    bool avx512 = strstr(flags, " avx512f") != NULL;
    fprintf(stderr, "# %s: CPU %s (family %s, model %s), %d cores available, AVX-512 %s\n", name,
            model, fam, mod, ls_available_cores(), avx512 ? "yes" : "no");
    fprintf(stderr, "# %s: BLAS %s; kernel %s; engine GEMM path %s\n", name,
            ls_blas_config(), ls_blas_kernel(), ls_gemm_path());
    const char *vars[] = {"OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE",
                          "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "LANDSCAPE_THREADS"};
    fprintf(stderr, "# %s: environment:", name);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        fprintf(stderr, " %s=%s", vars[i], v ? v : "(unset)");
    }
    fprintf(stderr, "\n");
}

void bench_report_threads(const char *name)
{
    fprintf(stderr, "# %s: threads: engine %d, OpenBLAS %d\n", name, ls_get_threads(),
            ls_blas_threads());
}

struct bench_peer {
    FILE *w, *r;
    char dir[64], fifo[96];
};

bench_peer *bench_peer_start(const char *cmd)
{
    bench_peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->dir, sizeof p->dir, "/tmp/bench_peer.XXXXXX");
    if (!mkdtemp(p->dir)) {
        fprintf(stderr, "# cannot make a directory for the peer's FIFO\n");
        free(p);
        return NULL;
    }
    snprintf(p->fifo, sizeof p->fifo, "%s/out", p->dir);
    char full[4096];
    snprintf(full, sizeof full, "%s > '%s'", cmd, p->fifo);
    if (mkfifo(p->fifo, 0600) != 0 || !(p->w = popen(full, "w")) ||
        !(p->r = fopen(p->fifo, "r"))) {   /* the open returns once the shell opened the FIFO */
        fprintf(stderr, "# cannot start the peer: %s\n", cmd);
        bench_peer_close(p);
        return NULL;
    }
    return p;
}

const char *bench_peer_ask(bench_peer *p, const char *line, char *buf, int size)
{
    if (!p || !p->w || !p->r) return NULL;
    fprintf(p->w, "%s\n", line);
    fflush(p->w);
    while (fgets(buf, size, p->r)) {
        if (buf[0] == '#') {
            fputs(buf, stderr);
            continue;
        }
        buf[strcspn(buf, "\n")] = 0;
        return buf;
    }
    return NULL;
}

void bench_peer_close(bench_peer *p)
{
    if (!p) return;
    if (p->w) pclose(p->w);   /* the peer sees end of input and exits */
    if (p->r) {
        char line[512];
        while (fgets(line, sizeof line, p->r))   /* its last '#' notes */
            if (line[0] == '#') fputs(line, stderr);
        fclose(p->r);
    }
    if (p->fifo[0]) unlink(p->fifo);
    if (p->dir[0]) rmdir(p->dir);
    free(p);
}

const char *bench_python(char *buf, int size)
{
    const char *py = getenv("LANDSCAPE_PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    snprintf(buf, (size_t)size, "env -u LD_PRELOAD OMP_WAIT_POLICY=passive '%s'", py);
    return buf;
}
