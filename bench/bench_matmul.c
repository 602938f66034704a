/* bench_matmul: ls_matmul against cblas_sgemm / cblas_dgemm called directly on the same buffers.
 *
 * What is compared. Ours is the whole op as a user calls it: ls_matmul(a, b) (argument checks,
 * layout analysis, allocation of the output, the gemm, and releasing the result). The peer is the
 * bare BLAS call writing into a preallocated, already touched output, at the same thread count. On
 * CPUs with AVX-512 ls_matmul runs the engine's own GEMM (engine/ops/gemm.c), so the ratio compares
 * the two kernels; elsewhere it goes to the same OpenBLAS and the ratio is the engine's overhead on
 * top of BLAS. The goal (issue: matmul within 95 % of OpenBLAS) is ratio <= 1.05 at n >= 256.
 *
 * Workloads: square products matmul_<n> (n = 64 ... 1024; --quick stops at 256), f32 and f64, 1 and
 * 2 threads. Then the products of the MLP benchmark (bench_autograd.lua, batch 1000, 784-128): the
 * forward x @ W, and the two backward products that read transposed views, g @ W^T and x^T @ g, to
 * show that transposed operands are read without a copy. Rows whose names end in _nt / _tn have
 * the second / first operand as a transposed view (ls_view_transpose), passed to BLAS as Trans.
 *
 * stdout: the CSV rows (bench_util.h). stderr: a GFLOP/s table (2 m n k / time) for both sides with
 * the minor page faults per call and the ratio in CPU time (steadier than wall time on a busy
 * machine), the result check, and the peak RSS. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/ops.h"

typedef struct mm_case {
    char name[32];
    int64_t m, n, k;
    bool ta, tb;   /* operand stored transposed, given to ls_matmul as a transposed view */
} mm_case;

typedef struct mm_ctx {
    ls_tensor *a, *b;    /* the operands as ls_matmul sees them ([m x k], [k x n], maybe views) */
    ls_tensor *as, *bs;  /* their contiguous storage ([m x k] or [k x m], ...) */
    ls_tensor *c;        /* the peer's output, [m x n] */
    mm_case cs;
    ls_dtype dtype;
} mm_ctx;

static void ours(void *vctx)
{
    mm_ctx *x = vctx;
    ls_tensor *out = ls_matmul(x->a, x->b);
    if (!out) bench_die("ls_matmul");
    ls_tensor_release(out);
}

static void peer(void *vctx)
{
    mm_ctx *x = vctx;
    const mm_case *c = &x->cs;
    CBLAS_TRANSPOSE ta = c->ta ? CblasTrans : CblasNoTrans, tb = c->tb ? CblasTrans : CblasNoTrans;
    int m = (int)c->m, n = (int)c->n, k = (int)c->k;
    int lda = c->ta ? m : k, ldb = c->tb ? k : n;
    if (x->dtype == LS_F32)
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, ls_tensor_data(x->as), lda,
                    ls_tensor_data(x->bs), ldb, 0.0f, ls_tensor_data(x->c), n);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, ls_tensor_data(x->as), lda,
                    ls_tensor_data(x->bs), ldb, 0.0, ls_tensor_data(x->c), n);
}

static ls_tensor *random_matrix(ls_dtype dt, int64_t r, int64_t c, uint64_t seed)
{
    ls_tensor *t = ls_tensor_new(dt, 2, (int64_t[]){r, c});
    if (!t) bench_die("ls_tensor_new");
    ls_rng rng;
    ls_rng_init(&rng, seed);
    ls_rng_uniform(&rng, dt, ls_tensor_data(t), r * c, -1.0, 1.0);
    return t;
}

static void ctx_init(mm_ctx *x, const mm_case *c, ls_dtype dt)
{
    memset(x, 0, sizeof *x);
    x->cs = *c;
    x->dtype = dt;
    x->as = c->ta ? random_matrix(dt, c->k, c->m, 1) : random_matrix(dt, c->m, c->k, 1);
    x->bs = c->tb ? random_matrix(dt, c->n, c->k, 2) : random_matrix(dt, c->k, c->n, 2);
    x->a = c->ta ? ls_view_transpose(x->as, 0, 1) : ls_tensor_retain(x->as);
    x->b = c->tb ? ls_view_transpose(x->bs, 0, 1) : ls_tensor_retain(x->bs);
    x->c = ls_tensor_zeros(dt, 2, (int64_t[]){c->m, c->n});
    if (!x->a || !x->b || !x->c) bench_die("bench_matmul");
}

static void ctx_free(mm_ctx *x)
{
    ls_tensor_release(x->a);
    ls_tensor_release(x->b);
    ls_tensor_release(x->as);
    ls_tensor_release(x->bs);
    ls_tensor_release(x->c);
}

/* Largest |ours - peer| relative to max |peer|: both run the same gemm, so this should be 0 or
 * rounding-level (a different OpenBLAS thread split). */
static double check(mm_ctx *x)
{
    ls_tensor *out = ls_matmul(x->a, x->b);
    if (!out) bench_die("ls_matmul");
    peer(x);
    int64_t n = ls_tensor_numel(out);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = ls_tensor_get_flat(x->c, i), o = ls_tensor_get_flat(out, i);
        if (fabs(o - p) > worst) worst = fabs(o - p);
        if (fabs(p) > scale) scale = fabs(p);
    }
    ls_tensor_release(out);
    return scale > 0 ? worst / scale : worst;
}

typedef struct gf_row {
    const char *name;
    const char *dtype;
    int threads;
    double ours, peer;           /* GFLOP/s */
    double ours_flt, peer_flt;   /* minor page faults per call */
    double cpu_ratio;            /* ours / peer in process CPU time per call */
} gf_row;

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse_args(argc, argv, "ls_matmul vs cblas_sgemm/cblas_dgemm on the same buffers "
                     "(peer openblas)", &o);
    mm_case cases[16];
    int nc = 0;
    const int64_t sizes[] = {64, 128, 256, 512, 1024};
    for (int i = 0; i < 5; i++) {
        if (o.quick && sizes[i] > 256) break;
        mm_case c = {.m = sizes[i], .n = sizes[i], .k = sizes[i]};
        snprintf(c.name, sizeof c.name, "matmul_%lld", (long long)sizes[i]);
        cases[nc++] = c;
    }
    /* MLP layer 1 at batch 1000: forward, then the two gradients' products */
    cases[nc++] = (mm_case){"mlp_x_w_1000x784x128", 1000, 128, 784, false, false};
    cases[nc++] = (mm_case){"mlp_g_wT_1000x128x784_nt", 1000, 784, 128, false, true};
    cases[nc++] = (mm_case){"mlp_xT_g_784x1000x128_tn", 784, 128, 1000, true, false};

    const ls_dtype dtypes[] = {LS_F32, LS_F64};
    const int threads[] = {1, 2};
    gf_row gf[64];
    int ngf = 0;
    double worst_check = 0;
    bench_report_machine("bench_matmul");
    bench_header();
    for (int ti = 0; ti < 2; ti++) {
        ls_set_threads(threads[ti]);
        openblas_set_num_threads(threads[ti]);
        bench_report_threads("bench_matmul");
        for (int di = 0; di < 2; di++) {
            for (int ci = 0; ci < nc; ci++) {
                mm_ctx x;
                ctx_init(&x, &cases[ci], dtypes[di]);
                double cr = check(&x);
                if (cr > worst_check) worst_check = cr;
                bench_result r = bench_pair(&o, ours, &x, peer, &x);
                double ms_o = r.ms_a, ms_p = r.ms_b;
                const char *dn = ls_dtype_name(dtypes[di]);
                bench_row(cases[ci].name, dn, threads[ti], ms_o, "openblas", ms_p);
                double flop = 2.0 * (double)cases[ci].m * (double)cases[ci].n * (double)cases[ci].k;
                gf_row *g = &gf[ngf++];
                g->name = cases[ci].name;
                g->dtype = dn;
                g->threads = threads[ti];
                g->ours = flop / (ms_o * 1e6);
                g->peer = flop / (ms_p * 1e6);
                g->ours_flt = r.faults_a;
                g->peer_flt = r.faults_b;
                g->cpu_ratio = r.cpu_ms_a / r.cpu_ms_b;
                ctx_free(&x);
            }
        }
    }
    fprintf(stderr, "# GFLOP/s = 2 m n k / wall time; faults = minor page faults per call; "
                    "cpu_ratio = ours / openblas in process CPU time\n"
                    "# workload,dtype,threads,ours_gflops,openblas_gflops,ours_faults,"
                    "openblas_faults,cpu_ratio\n");
    for (int i = 0; i < ngf; i++)
        fprintf(stderr, "# %s,%s,%d,%.2f,%.2f,%.2f,%.2f,%.3f\n", gf[i].name, gf[i].dtype,
                gf[i].threads, gf[i].ours, gf[i].peer, gf[i].ours_flt, gf[i].peer_flt,
                gf[i].cpu_ratio);
    fprintf(stderr, "# check: largest |ours - openblas| / max|openblas| = %.3g\n", worst_check);
    bench_report_rss("bench_matmul");
    return 0;
}
