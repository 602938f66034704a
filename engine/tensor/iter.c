/* The strided elementwise loop (see tensor.h). */
#include <string.h>

#include "core/parallel.h"
#include "tensor/tensor.h"

/* Elements per parallel chunk. Fixed, so chunk boundaries (and any per-chunk partial results) do not
 * depend on the number of threads. Large enough that the pool's hand-off cost is noise. */
#define LS_ITER_GRAIN 32768

void ls_iter_init(ls_iter *it, ls_tensor *out, int nin, const ls_tensor *const *in)
{
    memset(it, 0, sizeof *it);
    it->nops = nin + 1;
    int nd = out->ndim;
    const ls_tensor *ops[LS_ITER_MAX_OPS];
    ops[0] = out;
    for (int k = 0; k < nin; k++) ops[k + 1] = in[k];
    /* Align every operand to the output's dims from the right; a size-1 or missing dim broadcasts
     * with stride 0. Size-1 output dims are dropped, then neighbours that are contiguous with each
     * other in every operand are merged, so most loops end up with one or two dims. */
    int64_t shape[LS_MAX_DIMS], stride[LS_ITER_MAX_OPS][LS_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < nd; d++) {
        if (out->shape[d] == 1) continue;
        shape[n] = out->shape[d];
        for (int k = 0; k < it->nops; k++) {
            const ls_tensor *t = ops[k];
            int td = d - (nd - t->ndim);
            stride[k][n] = (td < 0 || t->shape[td] == 1) ? 0 : t->stride[td];
        }
        n++;
    }
    int m = 0;
    for (int d = 0; d < n; d++) {
        if (m > 0) {
            int mergeable = 1;
            for (int k = 0; k < it->nops; k++)
                if (it->stride[k][m - 1] != stride[k][d] * shape[d]) mergeable = 0;
            if (mergeable) {
                it->shape[m - 1] *= shape[d];
                for (int k = 0; k < it->nops; k++) it->stride[k][m - 1] = stride[k][d];
                continue;
            }
        }
        it->shape[m] = shape[d];
        for (int k = 0; k < it->nops; k++) it->stride[k][m] = stride[k][d];
        m++;
    }
    if (m == 0) {   /* a single element */
        it->shape[0] = ls_tensor_numel(out) ? 1 : 0;
        for (int k = 0; k < it->nops; k++) it->stride[k][0] = 0;
        m = 1;
    }
    it->ndim = m;
    for (int k = 0; k < it->nops; k++) {
        it->data[k] = ls_tensor_data(ops[k]);
        it->elsize[k] = ls_dtype_size(ops[k]->dtype);
    }
}

typedef struct {
    const ls_iter *it;
    ls_iter_fn fn;
    void *ctx;
} ls_iter_job;

/* Visit flat positions [begin, end) of the iteration space as runs along the innermost dim. */
static void ls_iter_chunk(void *vjob, int64_t begin, int64_t end)
{
    const ls_iter_job *job = vjob;
    const ls_iter *it = job->it;
    int nd = it->ndim, nops = it->nops;
    int64_t idx[LS_MAX_DIMS];
    int64_t rem = begin;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = rem % it->shape[d];
        rem /= it->shape[d];
    }
    char *ptr[LS_ITER_MAX_OPS];
    int64_t inner_stride[LS_ITER_MAX_OPS];
    for (int k = 0; k < nops; k++) {
        int64_t off = 0;
        for (int d = 0; d < nd; d++) off += idx[d] * it->stride[k][d];
        ptr[k] = it->data[k] + off * (int64_t)it->elsize[k];
        inner_stride[k] = it->stride[k][nd - 1];
    }
    int64_t pos = begin;
    while (pos < end) {
        int64_t run = it->shape[nd - 1] - idx[nd - 1];
        if (run > end - pos) run = end - pos;
        char *p[LS_ITER_MAX_OPS];
        memcpy(p, ptr, sizeof(char *) * (size_t)nops);
        job->fn(job->ctx, run, p, inner_stride);
        pos += run;
        if (pos >= end) break;
        /* advance the multi-index past the run (the run ended at the row's end) */
        idx[nd - 1] += run;
        for (int k = 0; k < nops; k++) ptr[k] += run * inner_stride[k] * (int64_t)it->elsize[k];
        for (int d = nd - 1; d > 0 && idx[d] == it->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
            for (int k = 0; k < nops; k++)
                ptr[k] += (it->stride[k][d - 1] - it->shape[d] * it->stride[k][d]) *
                          (int64_t)it->elsize[k];
        }
    }
}

void ls_iter_run(const ls_iter *it, ls_iter_fn fn, void *ctx)
{
    int64_t total = 1;
    for (int d = 0; d < it->ndim; d++) total *= it->shape[d];
    if (total == 0) return;
    ls_iter_job job = {it, fn, ctx};
    ls_parallel_for(total, LS_ITER_GRAIN, ls_iter_chunk, &job);
}
