/* The registry-driven gradient check: for every registered op with a backward rule, on each of its
 * sample inputs, in float64,
 *   first order:  the gradient of L = sum(op(x) * r) (r fixed random) against central differences;
 *   second order: the gradient of M = sum_k <dL/dx_k, v_k> (v fixed random), computed through the
 *                 recorded backward pass (create_graph), against central differences of dL/dx.
 * An op with a backward but no samples fails. Tolerances: |analytic - numeric| <= 1e-6 + 1e-5 |numeric|
 * with step h = 1e-6 (f64 central differences are accurate to ~1e-9 here). */
#include <math.h>
#include <string.h>

#include "autograd/autograd.h"
#include "check.h"
#include "core/rng.h"
#include "ops/ops.h"

#define H 1e-6
#define TOL(n) (1e-6 + 1e-5 * fabs(n))

static ls_rng rng;

static ls_tensor *make_input(const ls_op_sample *s, int k)
{
    ls_tensor *t;
    if (s->kind[k] == LS_SAMPLE_INDEX) {
        t = ls_tensor_new(LS_I64, s->ndim[k], s->shape[k]);
        ls_rng_randint(&rng, LS_I64, ls_tensor_data(t), ls_tensor_numel(t), 0, s->index_hi);
        return t;
    }
    t = ls_tensor_new(LS_F64, s->ndim[k], s->shape[k]);
    double *p = ls_tensor_data(t);
    int64_t n = ls_tensor_numel(t);
    ls_rng_uniform(&rng, LS_F64, p, n, 0.0, 1.0);
    for (int64_t i = 0; i < n; i++) {
        double u = p[i];
        switch (s->kind[k]) {
        case LS_SAMPLE_REAL: p[i] = 2 * u - 1; break;
        case LS_SAMPLE_POSITIVE: p[i] = 0.5 + 1.5 * u; break;
        case LS_SAMPLE_AWAY_FROM_ZERO: p[i] = (i % 2 ? -1 : 1) * (0.3 + 0.7 * u); break;
        case LS_SAMPLE_MASK: p[i] = u < 0.5 ? 0 : 1; break;
        case LS_SAMPLE_DOMINANT: {   /* U(-0.5, 0.5) + 2 on the main diagonal of the last two dims */
            int nd = s->ndim[k];
            int64_t c = nd ? s->shape[k][nd - 1] : 1, r = nd > 1 ? s->shape[k][nd - 2] : 1;
            int64_t j = i % (r * c);
            p[i] = u - 0.5 + (j / c == j % c ? 2.0 : 0.0);
            break;
        }
        default: break;
        }
    }
    return t;
}

static bool differentiable(const ls_op_sample *s, int k)
{
    return s->kind[k] != LS_SAMPLE_INDEX && s->kind[k] != LS_SAMPLE_MASK;
}

/* L(x) = sum(op(x) * r), without recording */
static double eval_L(ls_op_id id, ls_tensor **in, const ls_attrs *a, ls_tensor *r)
{
    bool prev = ls_set_grad_enabled(false);
    ls_tensor *y = ls_op_apply(id, in, a);
    ls_tensor *p = ls_mul(y, r);
    ls_tensor *s = ls_sum(p, 0, NULL, false);
    double v = s ? ls_tensor_get_flat(s, 0) : NAN;
    ls_tensor_release(y);
    ls_tensor_release(p);
    ls_tensor_release(s);
    ls_set_grad_enabled(prev);
    return v;
}

/* dL/dx for every differentiable input (NULL where the op gives none) */
static ls_status grads_L(ls_op_id id, ls_tensor **in, int nin, const ls_op_sample *s, ls_tensor *r,
                         bool create_graph, ls_tensor **g)
{
    ls_tensor *targets[LS_OP_MAX_INPUTS];
    int nt = 0, map[LS_OP_MAX_INPUTS];
    for (int k = 0; k < nin; k++)
        if (differentiable(s, k)) { map[nt] = k; targets[nt++] = in[k]; }
    ls_tensor *y = ls_op_apply(id, in, &s->attrs);
    ls_tensor *p = ls_mul(y, r);
    ls_tensor *L = ls_sum(p, 0, NULL, false);
    ls_tensor_release(y);
    ls_tensor_release(p);
    if (!L) return ls_error_code();
    ls_grad_opts o = {.create_graph = create_graph, .retain_graph = create_graph,
                      .allow_unused = true};
    ls_tensor *out[LS_OP_MAX_INPUTS] = {0};
    ls_status rc = ls_autograd_grad(1, &L, nt, targets, &o, out);
    ls_tensor_release(L);
    for (int k = 0; k < nin; k++) g[k] = NULL;
    for (int i = 0; i < nt; i++) g[map[i]] = rc == LS_OK ? out[i] : NULL;
    return rc;
}

static double dot_all(ls_tensor *a, ls_tensor *b)
{
    double s = 0;
    int64_t n = ls_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) s += ls_tensor_get_flat(a, i) * ls_tensor_get_flat(b, i);
    return s;
}

static void check_op(ls_op_id id)
{
    const ls_op_def *def = ls_ops[id];
    ls_op_sample samples[LS_OP_MAX_SAMPLES];
    memset(samples, 0, sizeof samples);
    int ns = def->samples ? def->samples(samples) : 0;
    if (ns <= 0) {
        fprintf(stderr, "op '%s' has a backward rule but no sample inputs\n", def->name);
        CHECK(ns > 0);
        return;
    }
    for (int si = 0; si < ns; si++) {
        const ls_op_sample *s = &samples[si];
        const int nin = ls_op_nin(def, &s->attrs);
        ls_tensor *in[LS_OP_MAX_INPUTS] = {0};
        for (int k = 0; k < nin; k++) {
            in[k] = make_input(s, k);
            if (differentiable(s, k)) ls_requires_grad_(in[k], true);
        }
        ls_tensor *y = ls_op_apply(id, in, &s->attrs);
        if (!y) {
            fprintf(stderr, "op '%s' sample %d: forward failed: %s\n", def->name, si,
                    ls_error_message());
            CHECK(y != NULL);
            for (int k = 0; k < nin; k++) ls_tensor_release(in[k]);
            continue;
        }
        ls_tensor *r = ls_tensor_new(LS_F64, y->ndim, y->shape);
        ls_rng_uniform(&rng, LS_F64, ls_tensor_data(r), ls_tensor_numel(r), -1.0, 1.0);
        ls_tensor_release(y);

        /* ---- first order ---- */
        ls_tensor *g[LS_OP_MAX_INPUTS];
        ls_status rc = grads_L(id, in, nin, s, r, false, g);
        if (rc != LS_OK) fprintf(stderr, "op '%s' sample %d: backward failed: %s\n", def->name, si,
                                 ls_error_message());
        CHECK(rc == LS_OK);
        int bad = 0;
        for (int k = 0; k < nin && rc == LS_OK; k++) {
            if (!differentiable(s, k)) continue;
            int64_t n = ls_tensor_numel(in[k]);
            double *x = ls_tensor_data(in[k]);
            for (int64_t j = 0; j < n; j++) {
                double x0 = x[j];
                x[j] = x0 + H;
                double lp = eval_L(id, in, &s->attrs, r);
                x[j] = x0 - H;
                double lm = eval_L(id, in, &s->attrs, r);
                x[j] = x0;
                double num = (lp - lm) / (2 * H);
                double ana = g[k] ? ls_tensor_get_flat(g[k], j) : 0.0;
                if (!(fabs(ana - num) <= TOL(num)) && bad++ < 3)
                    fprintf(stderr, "op '%s' sample %d input %d elem %lld: grad %.10g, numeric %.10g\n",
                            def->name, si, k + 1, (long long)j, ana, num);
            }
        }
        CHECK(bad == 0);
        for (int k = 0; k < nin; k++) ls_tensor_release(g[k]);

        /* ---- second order ---- */
        ls_tensor *v[LS_OP_MAX_INPUTS] = {0};
        for (int k = 0; k < nin; k++) {
            if (!differentiable(s, k)) continue;
            v[k] = ls_tensor_new(LS_F64, in[k]->ndim, in[k]->shape);
            ls_rng_uniform(&rng, LS_F64, ls_tensor_data(v[k]), ls_tensor_numel(v[k]), -1.0, 1.0);
        }
        ls_tensor *gg[LS_OP_MAX_INPUTS] = {0};
        rc = grads_L(id, in, nin, s, r, true, g);
        CHECK(rc == LS_OK);
        if (rc == LS_OK) {
            ls_tensor *M = NULL;
            for (int k = 0; k < nin; k++) {
                if (!g[k]) continue;
                ls_tensor *p = ls_mul(g[k], v[k]);
                ls_tensor *t = ls_sum(p, 0, NULL, false);
                ls_tensor_release(p);
                if (M) {
                    ls_tensor *m2 = ls_add(M, t);
                    ls_tensor_release(M);
                    ls_tensor_release(t);
                    M = m2;
                } else {
                    M = t;
                }
            }
            if (M && M->requires_grad) {
                ls_tensor *targets[LS_OP_MAX_INPUTS];
                int nt = 0, map[LS_OP_MAX_INPUTS];
                for (int k = 0; k < nin; k++)
                    if (differentiable(s, k)) { map[nt] = k; targets[nt++] = in[k]; }
                ls_tensor *out[LS_OP_MAX_INPUTS] = {0};
                ls_grad_opts o = {.allow_unused = true};
                rc = ls_autograd_grad(1, &M, nt, targets, &o, out);
                if (rc != LS_OK) fprintf(stderr, "op '%s' sample %d: double backward failed: %s\n",
                                         def->name, si, ls_error_message());
                CHECK(rc == LS_OK);
                for (int i = 0; i < nt && rc == LS_OK; i++) gg[map[i]] = out[i];
            }
            ls_tensor_release(M);
        }
        for (int k = 0; k < nin; k++) ls_tensor_release(g[k]);
        bad = 0;
        for (int k = 0; k < nin && rc == LS_OK; k++) {
            if (!differentiable(s, k)) continue;
            int64_t n = ls_tensor_numel(in[k]);
            double *x = ls_tensor_data(in[k]);
            for (int64_t j = 0; j < n; j++) {
                double x0 = x[j], mp = 0, mm = 0;
                ls_tensor *gp[LS_OP_MAX_INPUTS], *gm[LS_OP_MAX_INPUTS];
                x[j] = x0 + H;
                grads_L(id, in, nin, s, r, false, gp);
                x[j] = x0 - H;
                grads_L(id, in, nin, s, r, false, gm);
                x[j] = x0;
                for (int q = 0; q < nin; q++) {
                    if (gp[q]) mp += dot_all(gp[q], v[q]);
                    if (gm[q]) mm += dot_all(gm[q], v[q]);
                    ls_tensor_release(gp[q]);
                    ls_tensor_release(gm[q]);
                }
                double num = (mp - mm) / (2 * H);
                double ana = gg[k] ? ls_tensor_get_flat(gg[k], j) : 0.0;
                if (!(fabs(ana - num) <= TOL(num)) && bad++ < 3)
                    fprintf(stderr, "op '%s' sample %d input %d elem %lld: 2nd-order %.10g, "
                            "numeric %.10g\n", def->name, si, k + 1, (long long)j, ana, num);
            }
        }
        CHECK(bad == 0);
        for (int k = 0; k < nin; k++) {
            ls_tensor_release(gg[k]);
            ls_tensor_release(v[k]);
            ls_tensor_release(in[k]);
        }
        ls_tensor_release(r);
    }
}

int main(int argc, char **argv)
{
    ls_rng_init(&rng, 1234);
    int checked = 0;
    for (int id = 0; id < LS_OP_COUNT; id++) {
        if (argc > 1 && strcmp(argv[1], ls_ops[id]->name) != 0) continue;
        if (!ls_ops[id]->backward) continue;
        int before = check_failures;
        check_op((ls_op_id)id);
        printf("  %-14s %s\n", ls_ops[id]->name, check_failures == before ? "ok" : "FAILED");
        checked++;
    }
    CHECK(checked > 0);
    return check_done("gradcheck");
}
