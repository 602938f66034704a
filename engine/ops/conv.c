/* Convolution: conv2d and its two adjoints, conv2d_input_grad and conv2d_weight_grad.
 *
 *   conv2d(x [N,C,H,W], w [O,C,kh,kw], stride s, padding p) -> y [N,O,Ho,Wo]
 *       y[n,o,a,b] = sum_{c,i,j} w[o,c,i,j] x[n,c, a s - p + i, b s - p + j]   (0 outside x)
 *       Ho = (H + 2p - kh) / s + 1, Wo likewise: torch.nn.functional.conv2d without bias, dilation
 *       or groups (a layer adds its bias by broadcasting).
 *   conv2d_input_grad(g [N,O,Ho,Wo], w) -> [N,C,H,W]: the adjoint of x -> conv2d(x, w) (a
 *       transposed convolution); H, W are given (ints {s, p, H, W}): several sizes give one Ho.
 *   conv2d_weight_grad(x, g [N,O,Ho,Wo]) -> [O,C,kh,kw]: the adjoint of w -> conv2d(x, w); ints
 *       {s, p, kh, kw}.
 *
 * Backward rules. conv2d is bilinear, so both adjoints are bilinear too, and every derivative of
 * each of the three is one of the three (U is the incoming gradient):
 *   conv2d(x, w):            dx = input_grad(U, w)         dw = weight_grad(x, U)
 *   input_grad(g, w):        dg = conv2d(U, w)             dw = weight_grad(U, g)
 *   weight_grad(x, g):       dx = input_grad(g, U)         dg = conv2d(x, U)
 * (from <U, input_grad(g, w)> = <conv2d(U, w), g> and <U, weight_grad(x, g)> = <conv2d(x, U), g>).
 * All are recorded ops, so derivatives of any order come out exact.
 *
 * Kernels. All three are matrix products against the "column" matrix of x (im2col): for image n,
 * col_n is [K, P] with K = C*kh*kw rows (c, i, j) and one column per output position (a, b),
 * holding the input element that w[., c, i, j] meets there (0 in the padding). Then
 *   forward:      y_n [O, P]     = w [O, K] . col_n [K, P]
 *   input grad:   gcol_n [K, P]  = w^T [K, O] . g_n [O, P], and col2im adds gcol_n onto x's grid
 *   weight grad:  gw [O, K]     += g_n [O, P] . col_n^T [P, K]          (summed over images)
 * with g_n, y_n image n's [O, P] planes, contiguous in NCHW. Two implementations:
 *   - on CPUs with AVX-512 (checked at run time), this file's own register-blocked kernels, run on
 *     the engine's pool over chunks of whole images: bitwise independent of the thread count (see
 *     "AVX-512 path" below);
 *   - elsewhere, im2col on the pool and OpenBLAS GEMMs between the parallel phases, never inside a
 *     pool chunk (see "BLAS path"); OpenBLAS's results can change in the last bits with the thread
 *     count, as for matmul.
 * Measured against PyTorch (oneDNN) in docs/ops-conv-pool.md. */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/conv_internal.h"
#include "ops/nn_ops.h"
#include "ops/ops.h"

#include "core/vectorize.h"   /* GCC: vectorise the short loops */

#define CONV_SLICE_BYTES ((int64_t)4 << 20)    /* column buffer per slice */
#define CONV_GRAIN 16384                       /* elements written per parallel chunk, roughly */
#define CONV_MAX_PAD ((int64_t)1 << 30)


/* ---- argument checks ---- */

static ls_status conv_check4(const char *who, const char *what, const char *dims,
                              const ls_tensor *t)
{
    if (t->ndim != 4)
        return ls_error_set(LS_ERR_ARG, "%s: expected a 4-D %s [%s], got %s", who, what, dims,
                            ls_tensor_shape_str(t));
    return LS_OK;
}

/* Stride and padding from ints[0], ints[1] (defaults 1 and 0). */
static ls_status conv_stride_pad(const char *who, const ls_attrs *a, int64_t *s, int64_t *p)
{
    *s = a->nints >= 1 ? a->ints[0] : 1;
    *p = a->nints >= 2 ? a->ints[1] : 0;
    if (*s < 1)
        return ls_error_set(LS_ERR_ARG, "%s: stride must be >= 1, got %lld", who, (long long)*s);
    if (*p < 0 || *p > CONV_MAX_PAD)
        return ls_error_set(LS_ERR_ARG, "%s: padding must be in [0, 2^30], got %lld", who,
                            (long long)*p);
    return LS_OK;
}

/* Output size from N, C, H, W, O, kh, kw, s, p; fails when the kernel does not fit. `x` and `w`
 * describe the operands in the message. */
static ls_status conv_finish(const char *who, conv_geom *g, const char *x, const char *w)
{
    if (g->kh < 1 || g->kw < 1)
        return ls_error_set(LS_ERR_ARG,
                            "%s: kernel size %lldx%lld must be at least 1x1 (weight %s)", who,
                            (long long)g->kh, (long long)g->kw, w);
    /* sizes from tensors with a zero dim can be anything: keep the products below in range */
    if ((double)g->C * (double)g->kh * (double)g->kw > INT_MAX ||
        (double)(g->H + 1) * (double)(g->W + 1) > INT64_MAX / 16 || g->O > INT_MAX)
        return ls_error_set(LS_ERR_ARG, "%s: input %s with weight %s is too large", who, x, w);
    int64_t hp = g->H + 2 * g->p, wp = g->W + 2 * g->p;
    if (g->kh > hp || g->kw > wp)
        return ls_error_set(LS_ERR_ARG, "%s: kernel %lldx%lld is larger than the padded input "
                            "%lldx%lld (input %s, padding %lld)", who, (long long)g->kh,
                            (long long)g->kw, (long long)hp, (long long)wp, x, (long long)g->p);
    g->Ho = (hp - g->kh) / g->s + 1;
    g->Wo = (wp - g->kw) / g->s + 1;
    g->K = g->C * g->kh * g->kw;
    g->P = g->Ho * g->Wo;
    if (g->P > INT_MAX / 2)
        return ls_error_set(LS_ERR_ARG, "%s: input %s with weight %s is too large", who, x, w);
    return LS_OK;
}

/* conv2d(x, w): x [N,C,H,W], w [O,C,kh,kw] */
static ls_status conv_geom_xw(const char *who, const ls_tensor *x, const ls_tensor *w,
                              const ls_attrs *a, conv_geom *g)
{
    if (conv_check4(who, "input", "N x C x H x W", x) ||
        conv_check4(who, "weight", "O x C x kh x kw", w) || conv_stride_pad(who, a, &g->s, &g->p))
        return ls_error_code();
    if (x->shape[1] != w->shape[1])
        return ls_error_set(LS_ERR_ARG, "%s: input %s has %lld channels but weight %s expects %lld",
                            who, ls_tensor_shape_str(x), (long long)x->shape[1],
                            ls_tensor_shape_str(w), (long long)w->shape[1]);
    g->N = x->shape[0], g->C = x->shape[1], g->H = x->shape[2], g->W = x->shape[3];
    g->O = w->shape[0], g->kh = w->shape[2], g->kw = w->shape[3];
    return conv_finish(who, g, ls_tensor_shape_str(x), ls_tensor_shape_str(w));
}

/* The output gradient g must be [N, O, Ho, Wo] of the geometry. */
static ls_status conv_check_g(const char *who, const conv_geom *c, const ls_tensor *g)
{
    int64_t want[4] = {c->N, c->O, c->Ho, c->Wo};
    if (memcmp(g->shape, want, sizeof want) != 0) {
        char b[LS_SHAPE_STR_MAX];
        return ls_error_set(LS_ERR_ARG, "%s: output gradient %s should be %s", who,
                            ls_tensor_shape_str(g), ls_shape_str(4, want, b, sizeof b));
    }
    return LS_OK;
}

/* ---- im2col / col2im ---- */


/* For kernel column j: the output columns b whose input column b s - p + j lies inside [0, W) are
 * [*lo, *hi). Same for rows with (i, H, Ho). */
void conv_valid(int64_t j, int64_t W, int64_t Wo, int64_t s, int64_t p, int64_t *lo,
                       int64_t *hi)
{
    int64_t a = p - j, b = W + p - j;   /* 0 <= b s - p + j < W  <=>  a <= b s < b */
    int64_t l = a <= 0 ? 0 : (a + s - 1) / s;
    int64_t h = b <= 0 ? 0 : (b + s - 1) / s;
    if (h > Wo) h = Wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col[(c,i,j) L + nl is + a Wo + b] = x[n0+nl, c, a s - p + i, b s - p + j] (0 in the padding),
 * with the leading dimension L and image stride `is` of the layout in use: one (image, channel)
 * pair per item, writing that channel's kh*kw rows of the image's columns. */
#define IM2COL_ITEM(T)                                                                             \
    do {                                                                                           \
        const T *xp = (const T *)j->src + ((j->n0 + nl) * g->C + c) * g->H * g->W;                 \
        T *base = (T *)j->dst + nl * j->is;                                                        \
        for (int64_t i = 0; i < g->kh; i++) {                                                      \
            int64_t alo, ahi;                                                                      \
            conv_valid(i, g->H, g->Ho, g->s, g->p, &alo, &ahi);                                    \
            for (int64_t jj = 0; jj < g->kw; jj++) {                                               \
                T *d = base + ((c * g->kh + i) * g->kw + jj) * j->L;                               \
                int64_t blo, bhi, off = jj - g->p; /* input column of output column b: b s + off */\
                conv_valid(jj, g->W, g->Wo, g->s, g->p, &blo, &bhi);                               \
                memset(d, 0, sizeof(T) * (size_t)(alo * g->Wo));                                   \
                for (int64_t a = alo; a < ahi; a++) {                                              \
                    T *o = d + a * g->Wo;                                                          \
                    const T *xr = xp + (a * g->s - g->p + i) * g->W;                               \
                    for (int64_t b = 0; b < blo; b++) o[b] = 0;                                    \
                    if (g->s == 1) /* short rows: a loop beats a memcpy call */                    \
                        for (int64_t b = blo; b < bhi; b++) o[b] = xr[b + off];                    \
                    else                                                                           \
                        for (int64_t b = blo; b < bhi; b++) o[b] = xr[b * g->s + off];             \
                    for (int64_t b = bhi; b < g->Wo; b++) o[b] = 0;                                \
                }                                                                                  \
                memset(d + ahi * g->Wo, 0, sizeof(T) * (size_t)((g->Ho - ahi) * g->Wo));           \
            }                                                                                      \
        }                                                                                          \
    } while (0)

void im2col_items(void *vj, int64_t begin, int64_t end)
{
    const conv_job *j = vj;
    const conv_geom *g = j->g;
    for (int64_t t = begin; t < end; t++) {
        int64_t nl = t / g->C, c = t % g->C;
        if (j->dt == LS_F32) IM2COL_ITEM(float);
        else IM2COL_ITEM(double);
    }
}

/* The adjoint of im2col: x[n0+nl, c, :, :] = sum over the (c, i, j) rows of the columns that read
 * each element, accumulated in a fixed order (i, j, a, b) for one whole input plane per item. */
#define COL2IM_ITEM(T)                                                                             \
    do {                                                                                           \
        T *xp = (T *)j->dst + ((j->n0 + nl) * g->C + c) * g->H * g->W;                             \
        const T *base = (const T *)j->src + nl * j->is;                                            \
        memset(xp, 0, sizeof(T) * (size_t)(g->H * g->W));                                          \
        for (int64_t i = 0; i < g->kh; i++) {                                                      \
            int64_t alo, ahi;                                                                      \
            conv_valid(i, g->H, g->Ho, g->s, g->p, &alo, &ahi);                                    \
            for (int64_t jj = 0; jj < g->kw; jj++) {                                               \
                const T *d = base + ((c * g->kh + i) * g->kw + jj) * j->L;                         \
                int64_t blo, bhi, off = jj - g->p; /* input column of output column b: b s + off */\
                conv_valid(jj, g->W, g->Wo, g->s, g->p, &blo, &bhi);                               \
                for (int64_t a = alo; a < ahi; a++) {                                              \
                    const T *o = d + a * g->Wo;                                                    \
                    T *xr = xp + (a * g->s - g->p + i) * g->W;                                     \
                    if (g->s == 1)                                                                 \
                        for (int64_t b = blo; b < bhi; b++) xr[b + off] += o[b];                   \
                    else                                                                           \
                        for (int64_t b = blo; b < bhi; b++) xr[b * g->s + off] += o[b];            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

void col2im_items(void *vj, int64_t begin, int64_t end)
{
    const conv_job *j = vj;
    const conv_geom *g = j->g;
    for (int64_t t = begin; t < end; t++) {
        int64_t nl = t / g->C, c = t % g->C;
        if (j->dt == LS_F32) COL2IM_ITEM(float);
        else COL2IM_ITEM(double);
    }
}

static void conv_run(const conv_geom *g, ls_parallel_fn fn, conv_job *j, int64_t nb)
{
    int64_t per = g->kh * g->kw * g->P;   /* elements per item */
    int64_t grain = per >= CONV_GRAIN ? 1 : CONV_GRAIN / (per > 0 ? per : 1);
    ls_parallel_for(nb * g->C, grain, fn, j);
}

/* ---- GEMM ---- */

/* C [m, n] (ldc) = alpha op(A) op(B) + beta C, row-major. */
/* ---- BLAS path ----
 *
 * im2col for a slice of images (parallel over (image, channel) pairs, each writing its own rows;
 * col2im likewise accumulates whole input planes in a fixed order, so both are thread-independent),
 * then OpenBLAS. Slices bound the column buffer to CONV_SLICE_BYTES (at least one image). How one
 * slice is laid out and multiplied:
 *
 * PER_IMAGE: col is [nb][K][P] (each image's columns contiguous) and there is one GEMM per image,
 *   whose result lands directly in the image's [O, P] plane of y (or is read from g's): no
 *   transposes. Used with one thread: OpenBLAS runs these small GEMMs (64 x 196 x 288 for a
 *   CNN's second layer) at full single-core speed, but does not split them well over threads.
 * SLICE: col is [K][nb*P] (image-major columns) and there is ONE GEMM per slice against a [O, nb*P]
 *   "rows" buffer, which a parallel copy moves to or from NCHW. Used with several threads: one big
 *   GEMM keeps all of OpenBLAS's threads busy (measured: 128 GEMMs of 64x196x288 take 13 ms on two
 *   threads, one GEMM of 64x25088x288 8 ms), and the copies cost a memory pass. */
typedef struct conv_plan {
    bool slice;      /* SLICE (else PER_IMAGE) */
    int64_t nb;      /* images per slice */
    size_t es;
    char *col;       /* K * nb * P elements */
    char *rows;      /* SLICE: O * nb * P elements */
} conv_plan;

/* Images per slice: the column buffer stays within CONV_SLICE_BYTES (at least one image) and
 * nb*P within BLAS's int range. NULL buffers (error set) on allocation failure. */
static ls_status conv_plan_new(conv_plan *pl, const conv_geom *g, ls_dtype dt, const char *who)
{
    pl->es = ls_dtype_size(dt);
    pl->slice = ls_get_threads() > 1;
    int64_t per = g->K * g->P * (int64_t)pl->es;
    int64_t nb = per > 0 ? CONV_SLICE_BYTES / per : g->N;
    if (nb < 1) nb = 1;
    if (g->P > 0 && nb > INT_MAX / g->P) nb = INT_MAX / g->P;
    if (nb > g->N) nb = g->N;
    pl->nb = nb;
    size_t ncol = (size_t)(g->K * nb * g->P), nrows = pl->slice ? (size_t)(g->O * nb * g->P) : 0;
    pl->col = ls_malloc((ncol + nrows > 0 ? ncol + nrows : 1) * pl->es, who);
    pl->rows = pl->col ? pl->col + ncol * pl->es : NULL;
    return pl->col ? LS_OK : ls_error_code();
}

/* The job for im2col/col2im on the slice of b images starting at n0. */
static conv_job conv_plan_job(const conv_plan *pl, const conv_geom *g, ls_dtype dt, int64_t n0,
                              int64_t b, const void *src, void *dst)
{
    conv_job j = {g, dt, src, dst, n0, pl->slice ? b * g->P : g->P,
                  pl->slice ? g->P : g->K * g->P};
    return j;
}

/* Copy between image planes in NCHW ([b, O, P] at `nchw`) and the rows buffer [O, L]. */
typedef struct conv_tjob {
    const conv_geom *g;
    size_t es;
    char *nchw, *rows;
    int64_t L;
    bool to_rows;
} conv_tjob;

static void conv_transpose_items(void *vj, int64_t begin, int64_t end)
{
    const conv_tjob *j = vj;
    int64_t O = j->g->O, P = j->g->P;
    for (int64_t t = begin; t < end; t++) {
        int64_t nl = t / O, o = t % O;
        char *a = j->nchw + (nl * O + o) * P * (int64_t)j->es;
        char *r = j->rows + (o * j->L + nl * P) * (int64_t)j->es;
        if (j->to_rows) memcpy(r, a, (size_t)P * j->es);
        else memcpy(a, r, (size_t)P * j->es);
    }
}

static void conv_transpose(const conv_geom *g, const conv_plan *pl, const void *nchw, int64_t b,
                           bool to_rows)
{
    conv_tjob j = {g, pl->es, (char *)nchw, pl->rows, b * g->P, to_rows};
    int64_t grain = g->P >= CONV_GRAIN ? 1 : CONV_GRAIN / (g->P > 0 ? g->P : 1);
    ls_parallel_for(b * g->O, grain, conv_transpose_items, &j);
}

/* ---- the three kernels on contiguous operands ---- */

/* y [N,O,Ho,Wo] = conv2d(x, w) */
static ls_status conv_forward_raw(const conv_geom *g, ls_dtype dt, const void *x, const void *w,
                                  void *y)
{
    size_t es = ls_dtype_size(dt);
    if (g->K == 0) {   /* no channels: zeros */
        memset(y, 0, (size_t)(g->N * g->O * g->P) * es);
        return LS_OK;
    }
    int nr;
    gemm_tile_fn tile = gemm_tile_for(dt, &nr);
    if (tile && g->N > 0 && g->O > 0 && g->P > 0)
        return cd_applies(g, false) ? cd_forward(g, dt, x, w, y, false)
                                    : ck_forward(g, dt, tile, nr, x, w, y);
    conv_plan pl;
    if (conv_plan_new(&pl, g, dt, "conv2d")) return ls_error_code();
    for (int64_t n0 = 0; n0 < g->N; n0 += pl.nb) {
        int64_t b = g->N - n0 < pl.nb ? g->N - n0 : pl.nb;
        char *yb = (char *)y + n0 * g->O * g->P * es;
        conv_job j = conv_plan_job(&pl, g, dt, n0, b, x, pl.col);
        conv_run(g, im2col_items, &j, b);
        if (pl.slice) {
            gemm_blas(dt, false, false, g->O, j.L, g->K, w, g->K, pl.col, j.L, 0.0, pl.rows, j.L);
            conv_transpose(g, &pl, yb, b, false);
        } else {
            for (int64_t nl = 0; nl < b; nl++)
                gemm_blas(dt, false, false, g->O, g->P, g->K, w, g->K, pl.col + nl * j.is * es,
                          j.L, 0.0, yb + nl * g->O * g->P * es, g->P);
        }
    }
    ls_free(pl.col);
    return LS_OK;
}

/* gx [N,C,H,W] = conv2d_input_grad(gy, w) */
static ls_status conv_input_grad_raw(const conv_geom *g, ls_dtype dt, const void *gy, const void *w,
                                     void *gx)
{
    size_t es = ls_dtype_size(dt);
    if (g->O == 0 || g->P == 0) {   /* nothing flows back */
        memset(gx, 0, (size_t)(g->N * g->C * g->H * g->W) * es);
        return LS_OK;
    }
    int nr;
    gemm_tile_fn tile = gemm_tile_for(dt, &nr);
    if (tile && g->N > 0 && g->K > 0)
        return cd_applies(g, false) ? cd_input_grad(g, dt, gy, w, gx, false)
                                    : ck_input_grad(g, dt, tile, nr, gy, w, gx);
    conv_plan pl;
    if (conv_plan_new(&pl, g, dt, "conv2d_input_grad")) return ls_error_code();
    for (int64_t n0 = 0; n0 < g->N; n0 += pl.nb) {
        int64_t b = g->N - n0 < pl.nb ? g->N - n0 : pl.nb;
        const char *gb = (const char *)gy + n0 * g->O * g->P * es;
        conv_job j = conv_plan_job(&pl, g, dt, n0, b, pl.col, gx);
        if (pl.slice) {
            conv_transpose(g, &pl, gb, b, true);
            gemm_blas(dt, true, false, g->K, j.L, g->O, w, g->K, pl.rows, j.L, 0.0, pl.col, j.L);
        } else {
            for (int64_t nl = 0; nl < b; nl++)
                gemm_blas(dt, true, false, g->K, g->P, g->O, w, g->K, gb + nl * g->O * g->P * es,
                          g->P, 0.0, pl.col + nl * j.is * es, j.L);
        }
        conv_run(g, col2im_items, &j, b);
    }
    ls_free(pl.col);
    return LS_OK;
}

/* gw [O,C,kh,kw] = conv2d_weight_grad(x, gy) */
static ls_status conv_weight_grad_raw(const conv_geom *g, ls_dtype dt, const void *x,
                                      const void *gy, void *gw)
{
    size_t es = ls_dtype_size(dt);
    memset(gw, 0, (size_t)(g->O * g->K) * es);
    if (g->K == 0 || g->O == 0 || g->P == 0 || g->N == 0) return LS_OK;
    int nr;
    gemm_tile_fn tile = gemm_tile_for(dt, &nr);
    if (tile)
        return cd_applies(g, true) ? cd_weight_grad(g, dt, x, gy, gw)
                                   : ck_weight_grad(g, dt, tile, nr, x, gy, gw);
    conv_plan pl;
    if (conv_plan_new(&pl, g, dt, "conv2d_weight_grad")) return ls_error_code();
    for (int64_t n0 = 0; n0 < g->N; n0 += pl.nb) {
        int64_t b = g->N - n0 < pl.nb ? g->N - n0 : pl.nb;
        const char *gb = (const char *)gy + n0 * g->O * g->P * es;
        conv_job j = conv_plan_job(&pl, g, dt, n0, b, x, pl.col);
        conv_run(g, im2col_items, &j, b);
        if (pl.slice) {
            conv_transpose(g, &pl, gb, b, true);
            gemm_blas(dt, false, true, g->O, g->K, j.L, pl.rows, j.L, pl.col, j.L, 1.0, gw, g->K);
        } else {
            for (int64_t nl = 0; nl < b; nl++)
                gemm_blas(dt, false, true, g->O, g->K, g->P, gb + nl * g->O * g->P * es, g->P,
                          pl.col + nl * j.is * es, j.L, 1.0, gw, g->K);
        }
    }
    ls_free(pl.col);
    return LS_OK;
}

/* Contiguous copies of two operands, the output allocated, the kernel run. */
typedef ls_status (*conv_kernel)(const conv_geom *, ls_dtype, const void *, const void *, void *);

static ls_tensor *conv_apply(const conv_geom *g, conv_kernel k, ls_tensor *a, ls_tensor *b,
                             const int64_t *oshape)
{
    ls_tensor *ac = ls_tensor_contiguous(a);
    ls_tensor *bc = ac ? ls_tensor_contiguous(b) : NULL;
    ls_tensor *out = bc ? ls_tensor_new(a->dtype, 4, oshape) : NULL;
    if (out && k(g, a->dtype, ls_tensor_data(ac), ls_tensor_data(bc), ls_tensor_data(out))) {
        ls_tensor_release(out);
        out = NULL;
    }
    ls_tensor_release(ac);
    ls_tensor_release(bc);
    return out;
}

/* ---- conv2d ---- */

static ls_tensor *conv2d_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    conv_geom g;
    if (ls_check_float_same("conv2d", 2, in) || conv_geom_xw("conv2d", in[0], in[1], a, &g))
        return NULL;
    int64_t oshape[4] = {g.N, g.O, g.Ho, g.Wo};
    return conv_apply(&g, conv_forward_raw, in[0], in[1], oshape);
}

static void conv_sp(const ls_attrs *a, int64_t *s, int64_t *p)
{
    *s = a->nints >= 1 ? a->ints[0] : 1;
    *p = a->nints >= 2 ? a->ints[1] : 0;
}

/* A rule given an accumulator for input k (ls_backward_ctx.acc) adds into it in the direct
 * kernels' store when they serve the shapes: acc += conv2d(src, w) or, with igrad, acc +=
 * conv2d_input_grad(src, w) (acc has the input's shape), at the rule's stride and padding.
 * Returns false when they do not (the rule records the op as usual); else true with *gin set to
 * LS_GRAD_ADDED, or to NULL with the error set on failure. */
static bool conv_added(const ls_backward_ctx *c, int k, bool igrad, ls_tensor *src, ls_tensor *w,
                       ls_tensor **gin)
{
    ls_tensor *acc = c->acc ? c->acc[k] : NULL;
    if (!acc || src->dtype != acc->dtype || w->dtype != acc->dtype) return false;
    conv_geom g;
    ls_attrs a = {.nints = 2};
    conv_sp(c->attrs, &a.ints[0], &a.ints[1]);
    if (conv_geom_xw("conv2d", igrad ? acc : src, w, &a, &g) != LS_OK || !cd_applies(&g, false) ||
        g.N == 0 || g.O == 0 || g.P == 0 || g.K == 0)
        return false;
    ls_tensor *sc = ls_tensor_contiguous(src), *wc = sc ? ls_tensor_contiguous(w) : NULL;
    ls_status rc = !wc ? ls_error_code()
                   : igrad ? cd_input_grad(&g, acc->dtype, ls_tensor_data(sc), ls_tensor_data(wc),
                                           ls_tensor_data(acc), true)
                           : cd_forward(&g, acc->dtype, ls_tensor_data(sc), ls_tensor_data(wc),
                                        ls_tensor_data(acc), true);
    ls_tensor_release(sc);
    ls_tensor_release(wc);
    *gin = rc == LS_OK ? LS_GRAD_ADDED : NULL;
    return true;
}

static ls_status conv_done(const ls_backward_ctx *c, ls_tensor **gin)
{
    for (int k = 0; k < c->nin; k++)
        if (c->needs[k] && !gin[k]) return ls_error_code() ? ls_error_code() : LS_ERR_ARG;
    return LS_OK;
}

/* dx = input_grad(U, w), dw = weight_grad(x, U) */
static ls_status conv2d_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tensor *x = c->in[0], *w = c->in[1];
    int64_t s, p;
    conv_sp(c->attrs, &s, &p);
    if (c->needs[0] && !conv_added(c, 0, true, u, w, &gin[0]))
        gin[0] = ls_conv2d_input_grad(u, w, s, p, x->shape[2], x->shape[3]);
    if (c->needs[1]) gin[1] = ls_conv2d_weight_grad(x, u, s, p, w->shape[2], w->shape[3]);
    return conv_done(c, gin);
}

static int conv2d_samples(ls_op_sample *s)
{
    /* non-square input and kernel; stride 2 with padding; 1x1 with defaults; stride 3 leaving
     * rows and columns of x unread, padding 2 giving windows of padding only */
    s[0] = (ls_op_sample){.ndim = {4, 4}, .shape = {{2, 3, 5, 4}, {4, 3, 3, 2}},
                          .attrs = {.nints = 2, .ints = {1, 0}}};
    s[1] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 6, 5}, {3, 2, 3, 3}},
                          .attrs = {.nints = 2, .ints = {2, 1}}};
    s[2] = (ls_op_sample){.ndim = {4, 4}, .shape = {{2, 2, 3, 3}, {2, 2, 1, 1}}};
    s[3] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 7, 6}, {2, 2, 2, 2}},
                          .attrs = {.nints = 2, .ints = {3, 2}}};
    return 4;
}

const ls_op_def ls_op_conv2d = {.name = "conv2d", .nin = 2, .lua_sig = "T T i? i?",
                                .forward = conv2d_fwd, .backward = conv2d_bwd,
                                .samples = conv2d_samples};

ls_tensor *ls_conv2d(ls_tensor *x, ls_tensor *w, int64_t stride, int64_t padding)
{
    ls_attrs a = {.nints = 2, .ints = {stride, padding}};
    return ls_op_apply(LS_OP_CONV2D, (ls_tensor *[]){x, w}, &a);
}

/* ---- conv2d_input_grad(g, w), ints {s, p, H, W} ---- */

static ls_tensor *conv2d_input_grad_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    const char *who = "conv2d_input_grad";
    ls_tensor *gy = in[0], *w = in[1];
    conv_geom g;
    if (ls_check_float_same(who, 2, in) ||
        conv_check4(who, "output gradient", "N x O x Ho x Wo", gy) ||
        conv_check4(who, "weight", "O x C x kh x kw", w) || conv_stride_pad(who, a, &g.s, &g.p))
        return NULL;
    if (a->nints < 4 || a->ints[2] < 0 || a->ints[3] < 0) {
        ls_error_set(LS_ERR_ARG, "%s: needs the input height and width (ints {stride, padding, H, "
                     "W})", who);
        return NULL;
    }
    g.N = gy->shape[0], g.C = w->shape[1], g.H = a->ints[2], g.W = a->ints[3];
    g.O = w->shape[0], g.kh = w->shape[2], g.kw = w->shape[3];
    char xs[LS_SHAPE_STR_MAX];
    ls_shape_str(4, (int64_t[]){g.N, g.C, g.H, g.W}, xs, sizeof xs);
    if (conv_finish(who, &g, xs, ls_tensor_shape_str(w)) || conv_check_g(who, &g, gy)) return NULL;
    int64_t oshape[4] = {g.N, g.C, g.H, g.W};
    return conv_apply(&g, conv_input_grad_raw, gy, w, oshape);
}

/* dg = conv2d(U, w), dw = weight_grad(U, g) */
static ls_status conv2d_input_grad_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tensor *gy = c->in[0], *w = c->in[1];
    int64_t s, p;
    conv_sp(c->attrs, &s, &p);
    if (c->needs[0] && !conv_added(c, 0, false, u, w, &gin[0])) gin[0] = ls_conv2d(u, w, s, p);
    if (c->needs[1]) gin[1] = ls_conv2d_weight_grad(u, gy, s, p, w->shape[2], w->shape[3]);
    return conv_done(c, gin);
}

static int conv2d_input_grad_samples(ls_op_sample *s)
{
    /* the transposes of conv2d's samples 0, 1, 3: g [N,O,Ho,Wo], w, ints {s, p, H, W} */
    s[0] = (ls_op_sample){.ndim = {4, 4}, .shape = {{2, 4, 3, 3}, {4, 3, 3, 2}},
                          .attrs = {.nints = 4, .ints = {1, 0, 5, 4}}};
    s[1] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 3, 3, 3}, {3, 2, 3, 3}},
                          .attrs = {.nints = 4, .ints = {2, 1, 6, 5}}};
    s[2] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 4, 3}, {2, 2, 2, 2}},
                          .attrs = {.nints = 4, .ints = {3, 2, 7, 6}}};
    return 3;
}

const ls_op_def ls_op_conv2d_input_grad = {.name = "conv2d_input_grad", .nin = 2, .lua_sig = NULL,
                                           .forward = conv2d_input_grad_fwd,
                                           .backward = conv2d_input_grad_bwd,
                                           .samples = conv2d_input_grad_samples};

ls_tensor *ls_conv2d_input_grad(ls_tensor *g, ls_tensor *w, int64_t stride, int64_t padding,
                                int64_t h, int64_t w_)
{
    ls_attrs a = {.nints = 4, .ints = {stride, padding, h, w_}};
    return ls_op_apply(LS_OP_CONV2D_INPUT_GRAD, (ls_tensor *[]){g, w}, &a);
}

/* ---- conv2d_weight_grad(x, g), ints {s, p, kh, kw} ---- */

static ls_tensor *conv2d_weight_grad_fwd(ls_tensor *const *in, const ls_attrs *a)
{
    const char *who = "conv2d_weight_grad";
    ls_tensor *x = in[0], *gy = in[1];
    conv_geom g;
    if (ls_check_float_same(who, 2, in) || conv_check4(who, "input", "N x C x H x W", x) ||
        conv_check4(who, "output gradient", "N x O x Ho x Wo", gy) ||
        conv_stride_pad(who, a, &g.s, &g.p))
        return NULL;
    if (a->nints < 4) {
        ls_error_set(LS_ERR_ARG, "%s: needs the kernel size (ints {stride, padding, kh, kw})", who);
        return NULL;
    }
    g.N = x->shape[0], g.C = x->shape[1], g.H = x->shape[2], g.W = x->shape[3];
    g.O = gy->shape[1], g.kh = a->ints[2], g.kw = a->ints[3];
    char ws[LS_SHAPE_STR_MAX];
    ls_shape_str(4, (int64_t[]){g.O, g.C, g.kh, g.kw}, ws, sizeof ws);
    if (conv_finish(who, &g, ls_tensor_shape_str(x), ws) || conv_check_g(who, &g, gy)) return NULL;
    int64_t oshape[4] = {g.O, g.C, g.kh, g.kw};
    return conv_apply(&g, conv_weight_grad_raw, x, gy, oshape);
}

/* dx = input_grad(g, U), dg = conv2d(x, U) */
static ls_status conv2d_weight_grad_bwd(const ls_backward_ctx *c, ls_tensor *u, ls_tensor **gin)
{
    ls_tensor *x = c->in[0], *gy = c->in[1];
    int64_t s, p;
    conv_sp(c->attrs, &s, &p);
    if (c->needs[0] && !conv_added(c, 0, true, gy, u, &gin[0]))
        gin[0] = ls_conv2d_input_grad(gy, u, s, p, x->shape[2], x->shape[3]);
    if (c->needs[1] && !conv_added(c, 1, false, x, u, &gin[1])) gin[1] = ls_conv2d(x, u, s, p);
    return conv_done(c, gin);
}

static int conv2d_weight_grad_samples(ls_op_sample *s)
{
    /* x, g [N,O,Ho,Wo], ints {s, p, kh, kw} */
    s[0] = (ls_op_sample){.ndim = {4, 4}, .shape = {{2, 3, 5, 4}, {2, 4, 3, 3}},
                          .attrs = {.nints = 4, .ints = {1, 0, 3, 2}}};
    s[1] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 6, 5}, {1, 3, 3, 3}},
                          .attrs = {.nints = 4, .ints = {2, 1, 3, 3}}};
    s[2] = (ls_op_sample){.ndim = {4, 4}, .shape = {{1, 2, 7, 6}, {1, 2, 4, 3}},
                          .attrs = {.nints = 4, .ints = {3, 2, 2, 2}}};
    return 3;
}

const ls_op_def ls_op_conv2d_weight_grad = {.name = "conv2d_weight_grad", .nin = 2,
                                            .lua_sig = NULL, .forward = conv2d_weight_grad_fwd,
                                            .backward = conv2d_weight_grad_bwd,
                                            .samples = conv2d_weight_grad_samples};

ls_tensor *ls_conv2d_weight_grad(ls_tensor *x, ls_tensor *g, int64_t stride, int64_t padding,
                                 int64_t kh, int64_t kw)
{
    ls_attrs a = {.nints = 4, .ints = {stride, padding, kh, kw}};
    return ls_op_apply(LS_OP_CONV2D_WEIGHT_GRAD, (ls_tensor *[]){x, g}, &a);
}
