/* Stride-1 convolutions on AVX-512 without column matrices (see conv.c for the ops, conv_avx512.c
 * for the im2col kernels that serve the other strides).
 *
 * Forward and input gradient: one kernel. A stride-1 convolution reads, for kernel offset
 * s = (i, j), the input plane shifted by sh_s = (i - ph) Wi + (j - pw) positions:
 *     out[co, p] = sum_s sum_ci Wt[co, ci, s] in[ci, p + sh_s]       (p = a Wo + b)
 * where the terms whose input position (a + i - ph, b + j - pw) falls outside the Hi x Wi plane are
 * zero. When the output rows are as wide as the input rows (Wo = Wi: "same" padding, 2 pw = kw - 1,
 * the usual 3x3 with padding 1), consecutive output positions read consecutive input positions,
 * row breaks included, so the "column" the GEMM needs is the input itself, read at an offset: the
 * tile loads a
 * vector of 16 floats (8 doubles) of positions straight from the input image with a lane mask
 * that zeroes the padding (and the positions that wrap into the next row), and no im2col runs.
 * The masks depend on the column panel and s only; they are computed once per call. Masked-off
 * lanes are never read (AVX-512 masked loads do not fault), so reading "before" the image is safe.
 *   forward:     in = x, Wt = w, (ph, pw) = (p, p)
 *   input grad:  in = g, Wt[c, o, i, j] = w[o, c, kh-1-i, kw-1-j], (ph, pw) = (kh-1-p, kw-1-p)
 *                (the transposed convolution is the convolution of g with the flipped kernel; a
 *                negative padding, p > kh - 1, crops, which the masks handle the same way).
 * The weights are packed once per call into panels of GEMM_MR output channels, [s][ci][MR], so the
 * tile broadcasts them from consecutive addresses. Each output element is ONE chain of fused
 * multiply-adds over (s, ci) in that order, from zero, whatever the chunking: the results are
 * bitwise independent of the thread count (images are split between chunks whole).
 *
 * Weight gradient (C >= CD_WG_MIN_C): gw[o, ci, s] = sum_n sum_p g_n[o, p] x_n[ci, p + sh_s], as
 *     gw^T [(s, c), o] = sum over images and positions of xpad[c, shifted p] g^T[p, o]
 * The tile's rows are GEMM_MR channels at one s, read from a copy of the image zero-padded by p on
 * every side with the channels interleaved by MR ([c / MR][Hp][Wp][MR]: the MR values the tile
 * broadcasts at one position are adjacent); its columns are output channels from g_n^T packed into
 * panels [P][nr]; the inner index runs over the output positions row by row. The padding is real
 * zeros here (0 * g, as the column matrix would give, so a non-finite g propagates as it does
 * there). Chunks of whole images accumulate their own partial [s][C][O] and the partials are added
 * in chunk order (the chunk count depends on the sizes only): thread-independent bits. Narrower
 * inputs (the first layer: C = 1) keep the im2col kernel. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/parallel.h"
#include "ops/conv_internal.h"
#include "ops/gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define CD_HAVE 1
#include <immintrin.h>
#else
#define CD_HAVE 0
#endif

#define CD_CHUNKS 16                            /* weight gradient: partial sums */
#define CD_SCRATCH_BYTES ((int64_t)64 << 20)    /* weight gradient scratch, roughly */
#define CD_WG_MIN_C 8                           /* channels from which the weight gradient runs here */
#define CD_XB 16                                /* weight gradient: channels interleaved per block */
#define CD_WG_MR 8                              /* weight gradient: channels per tile */

static int64_t cd_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

#if CD_HAVE
/* ---- the tiles ----
 *
 * Forward-style tile: out[r, c] for r < nrows (<= MR), c < ncols (<= NV vectors), over the segments
 * s < S, each of Ci steps: B vector v at in + sh[s] + ci * plane + v * LANES under mask mk[2 s + v];
 * A = the packed panel, MR values per step. */
#define CD_BODY(T, VEC, LANES, MASKT, ZERO, LOADZ, STOREM, SET1, FMA)                              \
    do {                                                                                           \
        const T *a = Ap;                                                                           \
        VEC c[GEMM_MR][2];                                                                         \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                      \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) c[r][v] = ZERO();                 \
        for (int s = 0; s < S; s++) {                                                              \
            MASKT m0 = (MASKT)mk[2 * s], m1 = (MASKT)mk[2 * s + 1];                                \
            const T *b = (const T *)in + sh[s];                                                    \
            for (int64_t ci = 0; ci < Ci; ci++, b += plane, a += GEMM_MR) {                        \
                VEC b0 = LOADZ(m0, b), b1 = NV > 1 ? LOADZ(m1, b + LANES) : b0;                    \
                _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++) {                            \
                    VEC ar = SET1(a[r]);                                                           \
                    c[r][0] = FMA(ar, b0, c[r][0]);                                                \
                    if (NV > 1) c[r][1] = FMA(ar, b1, c[r][1]);                                    \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                      \
            if (r < nrows)                                                                         \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                               \
                    STOREM((T *)out + r * ldo + v * LANES, (MASKT)sm[v], c[r][v]);                 \
    } while (0)

#define CD_ARGS                                                                                    \
    const void *Ap, const void *in, int64_t Ci, int64_t plane, int S, const int64_t *sh,           \
        const uint32_t *mk, void *out, int64_t ldo, int nrows, const uint32_t *sm
#define CD_TARGET __attribute__((target("avx512f"), always_inline)) static inline

CD_TARGET void cd_body_f32(const int MR, const int NV, CD_ARGS)
{
    CD_BODY(float, __m512, 16, __mmask16, _mm512_setzero_ps, _mm512_maskz_loadu_ps,
            _mm512_mask_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps);
}
CD_TARGET void cd_body_f64(const int MR, const int NV, CD_ARGS)
{
    CD_BODY(double, __m512d, 8, __mmask8, _mm512_setzero_pd, _mm512_maskz_loadu_pd,
            _mm512_mask_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd);
}

/* The body for nrows (12, 8 or 4 rows) and the vectors in use (sm[1] == 0: one). */
#define CD_DISPATCH(BODY)                                                                          \
    do {                                                                                           \
        bool one = sm[1] == 0;                                                                     \
        if (nrows > 8) {                                                                           \
            if (one) BODY(12, 1, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm);               \
            else BODY(12, 2, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm);                   \
        } else if (nrows > 4) {                                                                    \
            if (one) BODY(8, 1, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm);                \
            else BODY(8, 2, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm);                    \
        } else {                                                                                   \
            if (one) BODY(4, 1, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm);                \
            else BODY(4, 2, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm);                    \
        }                                                                                          \
    } while (0)

__attribute__((target("avx512f"))) static void cd_tile_f32(CD_ARGS) { CD_DISPATCH(cd_body_f32); }
__attribute__((target("avx512f"))) static void cd_tile_f64(CD_ARGS) { CD_DISPATCH(cd_body_f64); }

/* Weight-gradient tile: C[r, c] += sum over output rows a < Ho and columns b < Wo of
 * A[(a * wp + b) * MR + r] * B[(a * Wo + b) * ldb + c]: A the interleaved padded image at one
 * shift, B a packed panel of g^T (zero-padded to whole vectors: read with plain loads, which ran
 * faster than masked ones here). C is [rows][ldc], accumulated into (the chain continues). */
#define CD_WG_BODY(T, VEC, LANES, MASKT, ZERO, LOADZ, LOADU, STOREM, SET1, FMA)                   \
    do {                                                                                           \
        T *C = Cv;                                                                                 \
        VEC c[GEMM_MR][2];                                                                         \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                      \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                   \
                c[r][v] = r < nrows ? LOADZ((MASKT)sm[v], C + r * ldc + v * LANES) : ZERO();        \
        for (int64_t a = 0; a < Ho; a++) {                                                         \
            const T *ap = (const T *)Av + a * wp * CD_XB, *bp = (const T *)Bv + a * Wo * ldb;      \
            for (int64_t b = 0; b < Wo; b++, ap += CD_XB, bp += ldb) {                             \
                VEC b0 = LOADU(bp), b1 = NV > 1 ? LOADU(bp + LANES) : b0;                          \
                _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++) {                            \
                    VEC ar = SET1(ap[r]);                                                          \
                    c[r][0] = FMA(ar, b0, c[r][0]);                                                \
                    if (NV > 1) c[r][1] = FMA(ar, b1, c[r][1]);                                    \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 12") for (int r = 0; r < MR; r++)                                      \
            if (r < nrows)                                                                         \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                               \
                    STOREM(C + r * ldc + v * LANES, (MASKT)sm[v], c[r][v]);                        \
    } while (0)

#define CD_WG_ARGS                                                                                 \
    const void *Av, const void *Bv, int64_t ldb, int64_t Ho, int64_t Wo, int64_t wp, void *Cv,     \
        int64_t ldc, int nrows, const uint32_t *sm

CD_TARGET void cd_wg_body_f32(const int MR, const int NV, CD_WG_ARGS)
{
    CD_WG_BODY(float, __m512, 16, __mmask16, _mm512_setzero_ps, _mm512_maskz_loadu_ps,
               _mm512_loadu_ps, _mm512_mask_storeu_ps,
               _mm512_set1_ps, _mm512_fmadd_ps);
}
CD_TARGET void cd_wg_body_f64(const int MR, const int NV, CD_WG_ARGS)
{
    CD_WG_BODY(double, __m512d, 8, __mmask8, _mm512_setzero_pd, _mm512_maskz_loadu_pd,
               _mm512_loadu_pd, _mm512_mask_storeu_pd,
               _mm512_set1_pd, _mm512_fmadd_pd);
}

#define CD_WG_DISPATCH(BODY)                                                                       \
    do {                                                                                           \
        bool one = sm[1] == 0;                                                                     \
        if (nrows > 8) {                                                                           \
            if (one) BODY(12, 1, Av, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, sm);                     \
            else BODY(12, 2, Av, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, sm);                         \
        } else if (nrows > 4) {                                                                    \
            if (one) BODY(8, 1, Av, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, sm);                      \
            else BODY(8, 2, Av, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, sm);                          \
        } else {                                                                                   \
            if (one) BODY(4, 1, Av, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, sm);                      \
            else BODY(4, 2, Av, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, sm);                          \
        }                                                                                          \
    } while (0)

__attribute__((target("avx512f"))) static void cd_wg_tile_f32(CD_WG_ARGS)
{
    CD_WG_DISPATCH(cd_wg_body_f32);
}
__attribute__((target("avx512f"))) static void cd_wg_tile_f64(CD_WG_ARGS)
{
    CD_WG_DISPATCH(cd_wg_body_f64);
}
#endif

/* The lane masks of vectors [2 * lanes) columns wide: bits of the columns below `n`. */
static void cd_store_masks(int64_t n, int lanes, uint32_t sm[2])
{
    for (int v = 0; v < 2; v++) {
        int64_t k = n - v * lanes;
        sm[v] = k >= lanes ? (uint32_t)((1ull << lanes) - 1) : k <= 0 ? 0 : (uint32_t)((1u << k) - 1);
    }
}

/* ---- forward and input gradient ---- */

typedef struct cd_conv {
    ls_dtype dt;
    size_t es;
    int lanes, nr;               /* lanes per vector; columns per panel (2 vectors) */
    int64_t N, Ci, Hi, Wi;       /* the planes read */
    int64_t Co, Ho, Wo, P;       /* the planes written, P = Ho * Wo */
    int64_t kh, kw, ph, pw;      /* kernel and padding (the padding may be negative) */
    const char *in, *Ap;         /* input images, packed weights [Co / MR][S][Ci][MR] */
    char *out;
    int64_t *sh;                 /* [S] shifts */
    uint32_t *mk;                /* [P / nr][S][2] lane masks */
    int64_t nch;                 /* chunks of whole images */
} cd_conv;

static void cd_conv_chunks(void *vj, int64_t begin, int64_t end)
{
#if CD_HAVE
    const cd_conv *j = vj;
    int S = (int)(j->kh * j->kw);
    int64_t es = (int64_t)j->es, npq = cd_cdiv(j->P, j->nr), plane = j->Hi * j->Wi;
    /* The next image's input is prefetched into L2 while this one is computed, a few lines per
     * tile, spread over the image's tiles. */
    int64_t img = j->Ci * plane * es, lines = cd_cdiv(img, 64);
    int64_t lpt = cd_cdiv(lines, cd_cdiv(j->Co, GEMM_MR) * npq);
    for (int64_t c = begin; c < end; c++)
        for (int64_t n = c * j->N / j->nch; n < (c + 1) * j->N / j->nch; n++) {
            const char *in = j->in + n * img;
            const char *next = n + 1 < j->N ? in + img : NULL;
            int64_t line = 0;
            char *out = j->out + n * j->Co * j->P * es;
            for (int64_t o = 0; o < j->Co; o += GEMM_MR) {
                const char *Ap = j->Ap + o * S * j->Ci * es;
                int nrows = (int)(j->Co - o < GEMM_MR ? j->Co - o : GEMM_MR);
                for (int64_t q = 0; q < npq; q++) {
                    uint32_t sm[2];
                    cd_store_masks(j->P - q * j->nr, j->lanes, sm);
                    const char *iq = in + q * j->nr * es;
                    char *oq = out + (o * j->P + q * j->nr) * es;
                    const uint32_t *mk = j->mk + q * S * 2;
                    for (int64_t e = line + lpt; next && line < e && line < lines; line++)
                        _mm_prefetch(next + line * 64, _MM_HINT_T1);
                    if (j->dt == LS_F32)
                        cd_tile_f32(Ap, iq, j->Ci, plane, S, j->sh, mk, oq, j->P, nrows, sm);
                    else
                        cd_tile_f64(Ap, iq, j->Ci, plane, S, j->sh, mk, oq, j->P, nrows, sm);
                }
            }
        }
#else
    (void)vj, (void)begin, (void)end;
#endif
}

/* Packs w (forward: [Co][Ci][kh][kw]; input grad: [Ci][Co][kh][kw], flipped) into panels
 * [Co / MR][S][Ci][MR], zero rows past Co. */
#define CD_PACK_W(T)                                                                               \
    do {                                                                                           \
        const T *src = w;                                                                          \
        T *dst = (T *)j->Ap;                                                                       \
        int64_t S = j->kh * j->kw, npa = cd_cdiv(j->Co, GEMM_MR);                                  \
        for (int64_t pa = 0; pa < npa; pa++)                                                       \
            for (int64_t s = 0; s < S; s++)                                                        \
                for (int64_t ci = 0; ci < j->Ci; ci++)                                             \
                    for (int64_t r = 0; r < GEMM_MR; r++) {                                        \
                        int64_t co = pa * GEMM_MR + r;                                             \
                        T v = 0;                                                                   \
                        if (co < j->Co)                                                            \
                            v = flip ? src[(ci * j->Co + co) * S + (S - 1 - s)]                    \
                                     : src[(co * j->Ci + ci) * S + s];                             \
                        dst[((pa * S + s) * j->Ci + ci) * GEMM_MR + r] = v;                        \
                    }                                                                              \
    } while (0)

/* Runs the forward-style convolution described by j (sizes set) from `in` with the weights w. */
static ls_status cd_conv_run(cd_conv *j, const void *w, bool flip, const char *who)
{
    int64_t S = j->kh * j->kw, npq = cd_cdiv(j->P, j->nr);
    size_t apn = (size_t)(cd_cdiv(j->Co, GEMM_MR) * GEMM_MR * S * j->Ci);
    char *buf = ls_malloc(apn * j->es + (size_t)S * sizeof(int64_t) +
                              (size_t)(npq * S * 2) * sizeof(uint32_t), who);
    if (!buf) return ls_error_code();
    j->Ap = buf;
    j->sh = (int64_t *)(buf + apn * j->es);
    j->mk = (uint32_t *)(j->sh + S);
    if (j->dt == LS_F32) CD_PACK_W(float);
    else CD_PACK_W(double);
    for (int64_t s = 0; s < S; s++) {
        int64_t i = s / j->kw, jj = s % j->kw;
        j->sh[s] = (i - j->ph) * j->Wi + (jj - j->pw);
        for (int64_t q = 0; q < npq; q++)
            for (int v = 0; v < 2; v++) {
                uint32_t m = 0;
                for (int l = 0; l < j->lanes; l++) {
                    int64_t p = q * j->nr + v * j->lanes + l, a = p / j->Wo, b = p % j->Wo;
                    int64_t h = a + i - j->ph, x = b + jj - j->pw;
                    if (p < j->P && h >= 0 && h < j->Hi && x >= 0 && x < j->Wi) m |= 1u << l;
                }
                j->mk[(q * S + s) * 2 + v] = m;
            }
    }
    j->nch = j->N < 4 * (int64_t)ls_get_threads() ? j->N : 4 * (int64_t)ls_get_threads();
    ls_parallel_for(j->nch, 1, cd_conv_chunks, j);
    ls_free(buf);
    return LS_OK;
}

static cd_conv cd_conv_init(ls_dtype dt)
{
    cd_conv j = {.dt = dt, .es = ls_dtype_size(dt)};
    j.lanes = dt == LS_F32 ? 16 : 8;
    j.nr = 2 * j.lanes;
    return j;
}

bool cd_applies(const conv_geom *g, bool weight_grad)
{
    int nr;
    return CD_HAVE && g->s == 1 && gemm_tile_for(LS_F32, &nr) != NULL &&
           (weight_grad ? g->C >= CD_WG_MIN_C : g->Wo == g->W);
}

ls_status cd_forward(const conv_geom *g, ls_dtype dt, const void *x, const void *w, void *y)
{
    cd_conv j = cd_conv_init(dt);
    j.N = g->N, j.Ci = g->C, j.Hi = g->H, j.Wi = g->W;
    j.Co = g->O, j.Ho = g->Ho, j.Wo = g->Wo, j.P = g->P;
    j.kh = g->kh, j.kw = g->kw, j.ph = g->p, j.pw = g->p;
    j.in = x, j.out = y;
    return cd_conv_run(&j, w, false, "conv2d");
}

ls_status cd_input_grad(const conv_geom *g, ls_dtype dt, const void *gy, const void *w, void *gx)
{
    cd_conv j = cd_conv_init(dt);
    j.N = g->N, j.Ci = g->O, j.Hi = g->Ho, j.Wi = g->Wo;
    j.Co = g->C, j.Ho = g->H, j.Wo = g->W, j.P = g->H * g->W;
    j.kh = g->kh, j.kw = g->kw, j.ph = g->kh - 1 - g->p, j.pw = g->kw - 1 - g->p;
    j.in = gy, j.out = gx;
    return cd_conv_run(&j, w, true, "conv2d_input_grad");
}

/* ---- weight gradient ---- */

typedef struct cd_wg {
    const conv_geom *g;
    ls_dtype dt;
    size_t es;
    int lanes, nr;
    int64_t hp, wp, ncb;    /* padded image size, channel blocks of CD_XB */
    const char *x, *gy;
    char *part;             /* [nch][S][C][O] */
    char *scratch;          /* per chunk: xq [ncb][hp][wp][CD_XB], bp [npo][P][nr], t [H W][CD_XB] */
    int64_t per, nch;
} cd_wg;

/* Image n zero-padded by p, channels interleaved by CD_XB: xq[cb][y][x][r] = x[cb CD_XB + r][y - p]
 * [x - p], zero outside the image and for channels past C. Each block is transposed to t [H W]
 * [CD_XB] by gemm_pack, then copied row by row inside the border, which stays zero from the chunk's
 * start. */
static void cd_wg_pack_x(const cd_wg *j, int64_t n, char *xq, char *t)
{
    const conv_geom *g = j->g;
    int64_t es = (int64_t)j->es, HW = g->H * g->W, row = g->W * CD_XB * es;
    for (int64_t cb = 0; cb < j->ncb; cb++) {
        int64_t rows = g->C - cb * CD_XB < CD_XB ? g->C - cb * CD_XB : CD_XB;
        gemm_pack(j->es, j->x + (n * g->C + cb * CD_XB) * HW * es, rows, HW, HW, 1, CD_XB, t);
        char *q = xq + (cb * j->hp * j->wp + g->p * j->wp + g->p) * CD_XB * es;
        for (int64_t y = 0; y < g->H; y++) memcpy(q + y * j->wp * CD_XB * es, t + y * row, (size_t)row);
    }
}

static void cd_wg_chunks(void *vj, int64_t begin, int64_t end)
{
#if CD_HAVE
    const cd_wg *j = vj;
    const conv_geom *g = j->g;
    int64_t es = (int64_t)j->es, C = g->C, H = g->H, W = g->W, O = g->O, P = g->P;
    int64_t S = g->kh * g->kw, npo = cd_cdiv(O, j->nr), ntr = cd_cdiv(C, CD_WG_MR);
    int64_t nxq = j->ncb * j->hp * j->wp * CD_XB;
    /* The next image's x and g are prefetched into L2 while this one is computed (they are read
     * by the packing, which otherwise waits for them), a few lines per tile. */
    int64_t xb = C * H * W * es, gb = O * P * es, lx = cd_cdiv(xb, 64), lg = cd_cdiv(gb, 64);
    int64_t lpt = cd_cdiv(lx + lg, S * ntr * npo);
    for (int64_t c = begin; c < end; c++) {
        char *xq = j->scratch + c * j->per * es;
        char *bp = xq + nxq * es;
        char *t = bp + npo * j->nr * P * es;
        char *part = j->part + c * S * C * O * es;
        memset(part, 0, (size_t)(S * C * O * es));
        memset(xq, 0, (size_t)(nxq * es));
        for (int64_t n = c * g->N / j->nch; n < (c + 1) * g->N / j->nch; n++) {
            cd_wg_pack_x(j, n, xq, t);
            gemm_pack(j->es, j->gy + n * gb, O, P, P, 1, j->nr, bp);
            bool pre = n + 1 < g->N;
            const char *nx = j->x + (n + 1) * xb, *ng = j->gy + (n + 1) * gb;
            int64_t line = 0;
            /* one panel of g^T and one block of channels stay in L1 over the shifts */
            for (int64_t q = 0; q < npo; q++) {
                uint32_t sm[2];
                cd_store_masks(O - q * j->nr, j->lanes, sm);
                const char *b = bp + q * P * j->nr * es;
                for (int64_t c0 = 0; c0 < C; c0 += CD_WG_MR) {
                    int nrows = (int)(C - c0 < CD_WG_MR ? C - c0 : CD_WG_MR);
                    const char *a0 = xq + ((c0 / CD_XB) * j->hp * j->wp * CD_XB + c0 % CD_XB) * es;
                    for (int64_t s = 0; s < S; s++) {
                        const char *a = a0 + ((s / g->kw) * j->wp + s % g->kw) * CD_XB * es;
                        char *cp = part + ((s * C + c0) * O + q * j->nr) * es;
                        for (int64_t e = line + lpt; pre && line < e && line < lx + lg; line++)
                            _mm_prefetch(line < lx ? nx + line * 64 : ng + (line - lx) * 64,
                                         _MM_HINT_T1);
                        if (j->dt == LS_F32)
                            cd_wg_tile_f32(a, b, j->nr, g->Ho, g->Wo, j->wp, cp, O, nrows, sm);
                        else
                            cd_wg_tile_f64(a, b, j->nr, g->Ho, g->Wo, j->wp, cp, O, nrows, sm);
                    }
                }
            }
        }
    }
#else
    (void)vj, (void)begin, (void)end;
#endif
}

/* gw[o][c][s] = sum over chunks, in order, of part[chunk][s][c][o] */
#define CD_WG_SUM(T)                                                                               \
    do {                                                                                           \
        T *p0 = (T *)j.part, *o = gw;                                                              \
        int64_t n = S * g->C * g->O;                                                               \
        for (int64_t c = 1; c < j.nch; c++) {                                                      \
            const T *pc = p0 + c * n;                                                              \
            for (int64_t i = 0; i < n; i++) p0[i] += pc[i];                                        \
        }                                                                                          \
        for (int64_t s = 0; s < S; s++)                                                            \
            for (int64_t c = 0; c < g->C; c++)                                                     \
                for (int64_t oo = 0; oo < g->O; oo++)                                              \
                    o[(oo * g->C + c) * S + s] = p0[(s * g->C + c) * g->O + oo];                   \
    } while (0)

ls_status cd_weight_grad(const conv_geom *g, ls_dtype dt, const void *x, const void *gy, void *gw)
{
    cd_wg j = {.g = g, .dt = dt, .es = ls_dtype_size(dt), .x = x, .gy = gy};
    j.lanes = dt == LS_F32 ? 16 : 8;
    j.nr = 2 * j.lanes;
    j.hp = g->H + 2 * g->p, j.wp = g->W + 2 * g->p, j.ncb = cd_cdiv(g->C, CD_XB);
    int64_t S = g->kh * g->kw;
    j.per = j.ncb * j.hp * j.wp * CD_XB + cd_cdiv(g->O, j.nr) * j.nr * g->P + g->H * g->W * CD_XB;
    int64_t fit = CD_SCRATCH_BYTES / (j.per * (int64_t)j.es);
    j.nch = g->N < CD_CHUNKS ? g->N : CD_CHUNKS;
    if (j.nch > fit) j.nch = fit;
    if (j.nch < 1) j.nch = 1;
    j.scratch = ls_malloc((size_t)(j.nch * j.per) * j.es, "conv2d_weight_grad");
    j.part = j.scratch ? ls_malloc((size_t)(j.nch * S * g->C * g->O) * j.es, "conv2d_weight_grad")
                       : NULL;
    if (j.part) {
        ls_parallel_for(j.nch, 1, cd_wg_chunks, &j);
        if (dt == LS_F32) CD_WG_SUM(float);
        else CD_WG_SUM(double);
    }
    ls_status rc = j.part ? LS_OK : ls_error_code();
    ls_free(j.part);
    ls_free(j.scratch);
    return rc;
}
