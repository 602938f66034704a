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
 * With add, the store adds the result into what the output holds (out + result, the bits of a
 * separate addition): a backward rule's "add into the accumulator" (ls_backward_ctx.acc).
 *
 * Forward and input gradient run over chunks of whole images; while one image is computed, the next
 * one's input is prefetched into L2, a few lines per tile (without it the first panel of output
 * channels of every image waited for its input: 0.68 -> 0.84 of the FMA peak on a CNN's 32 -> 64
 * layer).
 *
 * Weight gradient (C >= CD_WG_MIN_C):
 *     gw[o, c, i, j] = sum_n sum_(a,b) g_n[o, a, b] x_n[c, a + i - p, b + j - p].
 * Each image is transposed and zero-padded once, xt[y][x][c] ([Hp][Wp][cw], the channels rounded up
 * to whole vectors, cw), so that at output position (a, b) and kernel row i the values
 * x[c, a + i - p, b + j - p] for all (j, c) are ONE contiguous row of kw cw elements,
 * xt[(a + i) Wp + b][j cw + c]. Then for each kernel row i
 *     part_i [o, (j, c)] += sum over positions of g_n[o, position] * xt row at (position, i)
 * is a GEMM whose A (g, row-major [O][P]) is read as it lies, broadcast element by element, and
 * whose B rows are read straight from xt: no column matrix and no transposition of g. The tile
 * holds CD_WG_ROWS output channels x CD_WG_NV vectors of (j, c). The padding is real zeros (0 * g,
 * as the column matrix would give, so a non-finite g propagates as it does there). Chunks of whole
 * images accumulate their own partial [kh][O][kw cw] and the partials are added in chunk order (the
 * chunk count depends on the sizes only): thread-independent bits. The next image's x and g are
 * prefetched into L2 as in the forward. Narrower inputs (the first layer: C = 1, where 15 of 16
 * lanes would be padding) keep the im2col kernel. */
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

static int64_t cd_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

#if CD_HAVE
/* ---- the tiles ----
 *
 * Forward-style tile: out[r, c] for r < nrows (<= MR), c < ncols (<= NV vectors), over the segments
 * s < S, each of Ci steps: B vector v at in + sh[s] + ci * plane + v * LANES under mask mk[2 s + v];
 * A = the packed panel, MR values per step. */
#define CD_BODY(T, VEC, LANES, MASKT, ZERO, LOADZ, STOREM, SET1, FMA, ADD)                         \
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
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) {                             \
                    T *o_ = (T *)out + r * ldo + v * LANES;                                        \
                    if (add) c[r][v] = ADD(LOADZ((MASKT)sm[v], o_), c[r][v]);                      \
                    STOREM(o_, (MASKT)sm[v], c[r][v]);                                             \
                }                                                                                  \
    } while (0)

#define CD_ARGS                                                                                    \
    const void *Ap, const void *in, int64_t Ci, int64_t plane, int S, const int64_t *sh,           \
        const uint32_t *mk, void *out, int64_t ldo, int nrows, const uint32_t *sm, bool add
#define CD_TARGET __attribute__((target("avx512f"), always_inline)) static inline

CD_TARGET void cd_body_f32(const int MR, const int NV, CD_ARGS)
{
    CD_BODY(float, __m512, 16, __mmask16, _mm512_setzero_ps, _mm512_maskz_loadu_ps,
            _mm512_mask_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps);
}
CD_TARGET void cd_body_f64(const int MR, const int NV, CD_ARGS)
{
    CD_BODY(double, __m512d, 8, __mmask8, _mm512_setzero_pd, _mm512_maskz_loadu_pd,
            _mm512_mask_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd);
}

/* The body for nrows (12, 8 or 4 rows) and the vectors in use (sm[1] == 0: one). */
#define CD_DISPATCH(BODY)                                                                          \
    do {                                                                                           \
        bool one = sm[1] == 0;                                                                     \
        if (nrows > 8) {                                                                           \
            if (one) BODY(12, 1, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm, add);               \
            else BODY(12, 2, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm, add);                   \
        } else if (nrows > 4) {                                                                    \
            if (one) BODY(8, 1, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm, add);                \
            else BODY(8, 2, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm, add);                    \
        } else {                                                                                   \
            if (one) BODY(4, 1, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm, add);                \
            else BODY(4, 2, Ap, in, Ci, plane, S, sh, mk, out, ldo, nrows, sm, add);                    \
        }                                                                                          \
    } while (0)

__attribute__((target("avx512f"))) static void cd_tile_f32(CD_ARGS) { CD_DISPATCH(cd_body_f32); }
__attribute__((target("avx512f"))) static void cd_tile_f64(CD_ARGS) { CD_DISPATCH(cd_body_f64); }

/* Weight-gradient tile: C[r, v L + l] += sum over output rows a < Ho and columns b < Wo of
 * G[r rs + a Wo + b] * B[(a wp + b) ldb + v L + l] for r < nrows (<= MR), v < NV, l < L lanes:
 * G the output gradient's rows (o), broadcast; B a row of the transposed padded image, whose NV
 * vectors at a position are consecutive (kernel columns j, channels c). Rows past nrows read row
 * nrows - 1 (in bounds) and are not stored. C is [rows][ldc], accumulated into (the chain
 * continues). */
#define CD_WG_BODY(T, VEC, LANES, LOADU, STOREU, SET1, FMA)                                        \
    do {                                                                                           \
        T *C = Cv;                                                                                 \
        (void)nv;                                                                                  \
        const T *gr[GEMM_MR];                                                                      \
        VEC c[GEMM_MR][3];                                                                         \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {                                     \
            gr[r] = (const T *)Gv + (r < nrows ? r : nrows - 1) * rs;                              \
            _Pragma("GCC unroll 3") for (int v = 0; v < NV; v++)                                   \
                c[r][v] = LOADU(C + (r < nrows ? r : 0) * ldc + v * LANES);                        \
        }                                                                                          \
        for (int64_t a = 0; a < Ho; a++) {                                                         \
            const T *bp = (const T *)Bv + a * wp * ldb;                                            \
            int64_t k = a * Wo;                                                                    \
            for (int64_t b = 0; b < Wo; b++, k++, bp += ldb) {                                     \
                VEC b0 = LOADU(bp), b1 = NV > 1 ? LOADU(bp + LANES) : b0;                          \
                VEC b2 = NV > 2 ? LOADU(bp + 2 * LANES) : b0;                                      \
                _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++) {                             \
                    VEC ar = SET1(gr[r][k]);                                                       \
                    c[r][0] = FMA(ar, b0, c[r][0]);                                                \
                    if (NV > 1) c[r][1] = FMA(ar, b1, c[r][1]);                                    \
                    if (NV > 2) c[r][2] = FMA(ar, b2, c[r][2]);                                    \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++)                                       \
            if (r < nrows)                                                                         \
                _Pragma("GCC unroll 3") for (int v = 0; v < NV; v++)                               \
                    STOREU(C + r * ldc + v * LANES, c[r][v]);                                      \
    } while (0)

#define CD_WG_ARGS                                                                                 \
    const void *Gv, int64_t rs, const void *Bv, int64_t ldb, int64_t Ho, int64_t Wo, int64_t wp,   \
        void *Cv, int64_t ldc, int nrows, int nv

CD_TARGET void cd_wg_body_f32(const int MR, const int NV, CD_WG_ARGS)
{
    CD_WG_BODY(float, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
               _mm512_fmadd_ps);
}
CD_TARGET void cd_wg_body_f64(const int MR, const int NV, CD_WG_ARGS)
{
    CD_WG_BODY(double, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd,
               _mm512_fmadd_pd);
}

/* The body for nrows (8 or 4 rows) and nv (1 to 3 vectors). */
#define CD_WG_CALL(BODY, MR)                                                                       \
    do {                                                                                           \
        if (nv == 3) BODY(MR, 3, Gv, rs, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, nv);                 \
        else if (nv == 2) BODY(MR, 2, Gv, rs, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, nv);            \
        else BODY(MR, 1, Gv, rs, Bv, ldb, Ho, Wo, wp, Cv, ldc, nrows, nv);                         \
    } while (0)

__attribute__((target("avx512f"))) static void cd_wg_tile_f32(CD_WG_ARGS)
{
    if (nrows > 4) CD_WG_CALL(cd_wg_body_f32, 8);
    else CD_WG_CALL(cd_wg_body_f32, 4);
}
__attribute__((target("avx512f"))) static void cd_wg_tile_f64(CD_WG_ARGS)
{
    if (nrows > 4) CD_WG_CALL(cd_wg_body_f64, 8);
    else CD_WG_CALL(cd_wg_body_f64, 4);
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
    bool add;                    /* out += the convolution (out holds an accumulator) */
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
                        cd_tile_f32(Ap, iq, j->Ci, plane, S, j->sh, mk, oq, j->P, nrows, sm,
                                    j->add);
                    else
                        cd_tile_f64(Ap, iq, j->Ci, plane, S, j->sh, mk, oq, j->P, nrows, sm,
                                    j->add);
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

ls_status cd_forward(const conv_geom *g, ls_dtype dt, const void *x, const void *w, void *y,
                     bool add)
{
    cd_conv j = cd_conv_init(dt);
    j.add = add;
    j.N = g->N, j.Ci = g->C, j.Hi = g->H, j.Wi = g->W;
    j.Co = g->O, j.Ho = g->Ho, j.Wo = g->Wo, j.P = g->P;
    j.kh = g->kh, j.kw = g->kw, j.ph = g->p, j.pw = g->p;
    j.in = x, j.out = y;
    return cd_conv_run(&j, w, false, "conv2d");
}

ls_status cd_input_grad(const conv_geom *g, ls_dtype dt, const void *gy, const void *w, void *gx,
                        bool add)
{
    cd_conv j = cd_conv_init(dt);
    j.add = add;
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
    int lanes;
    int64_t hp, wp, cw, ld;  /* padded image size, channels rounded up to a vector, kw cw */
    const char *x, *gy;
    char *part;              /* [nch][kh][O][ld] */
    char *scratch;           /* per chunk: xt [hp][wp][cw], then t [H W][cw] */
    int64_t per, nch;
} cd_wg;

/* Image n transposed and zero-padded by p: xt[y][x][c] = x[c][y - p][x - p], zero outside the image
 * and for channels past C. gemm_pack transposes it to t [H W][cw] (16 x 16 blocks), which is copied
 * row by row inside the border; the border stays zero from the chunk's start. */
static void cd_wg_pack_x(const cd_wg *j, int64_t n, char *xt, char *t)
{
    const conv_geom *g = j->g;
    int64_t es = (int64_t)j->es, HW = g->H * g->W, row = g->W * j->cw * es;
    gemm_pack(j->es, j->x + n * g->C * HW * es, g->C, HW, HW, 1, j->cw, t);
    char *q = xt + (g->p * j->wp + g->p) * j->cw * es;
    for (int64_t y = 0; y < g->H; y++) memcpy(q + y * j->wp * j->cw * es, t + y * row, (size_t)row);
}

#define CD_WG_ROWS 8   /* output channels per tile */
#define CD_WG_NV 3     /* vectors of (kernel column, channel) per tile */

static void cd_wg_chunks(void *vj, int64_t begin, int64_t end)
{
#if CD_HAVE
    const cd_wg *j = vj;
    const conv_geom *g = j->g;
    int64_t es = (int64_t)j->es, C = g->C, H = g->H, W = g->W, O = g->O, P = g->P;
    int64_t nvec = j->ld / j->lanes, ncp = cd_cdiv(nvec, CD_WG_NV);
    int64_t nxt = j->hp * j->wp * j->cw, ntile = cd_cdiv(O, CD_WG_ROWS) * g->kh * ncp;
    /* The next image's x and g are prefetched into L2 while this one is computed, a few lines per
     * tile. */
    int64_t xb = C * H * W * es, gb = O * P * es, lx = cd_cdiv(xb, 64), lg = cd_cdiv(gb, 64);
    int64_t lpt = cd_cdiv(lx + lg, ntile);
    for (int64_t c = begin; c < end; c++) {
        char *xt = j->scratch + c * j->per * es, *t = xt + nxt * es;
        char *part = j->part + c * g->kh * O * j->ld * es;
        memset(part, 0, (size_t)(g->kh * O * j->ld * es));
        memset(xt, 0, (size_t)(nxt * es));
        for (int64_t n = c * g->N / j->nch; n < (c + 1) * g->N / j->nch; n++) {
            cd_wg_pack_x(j, n, xt, t);
            const char *gn = j->gy + n * gb;
            bool pre = n + 1 < g->N;
            const char *nx = j->x + (n + 1) * xb, *ng = gn + gb;
            int64_t line = 0;
            /* one block of g's rows stays in L1 over the kernel rows and column panels */
            for (int64_t o = 0; o < O; o += CD_WG_ROWS) {
                int nrows = (int)(O - o < CD_WG_ROWS ? O - o : CD_WG_ROWS);
                const char *gr = gn + o * P * es;
                for (int64_t i = 0; i < g->kh; i++)
                    for (int64_t cp = 0; cp < ncp; cp++) {
                        int nv = (int)(nvec - cp * CD_WG_NV < CD_WG_NV ? nvec - cp * CD_WG_NV
                                                                       : CD_WG_NV);
                        int64_t col = cp * CD_WG_NV * j->lanes;
                        const char *b = xt + (i * j->wp * j->cw + col) * es;
                        char *cpt = part + ((i * O + o) * j->ld + col) * es;
                        for (int64_t e = line + lpt; pre && line < e && line < lx + lg; line++)
                            _mm_prefetch(line < lx ? nx + line * 64 : ng + (line - lx) * 64,
                                         _MM_HINT_T1);
                        if (j->dt == LS_F32)
                            cd_wg_tile_f32(gr, P, b, j->cw, g->Ho, g->Wo, j->wp, cpt, j->ld, nrows,
                                           nv);
                        else
                            cd_wg_tile_f64(gr, P, b, j->cw, g->Ho, g->Wo, j->wp, cpt, j->ld, nrows,
                                           nv);
                    }
            }
        }
    }
#else
    (void)vj, (void)begin, (void)end;
#endif
}

/* gw[o][c][i][jj] = sum over chunks, in order, of part[chunk][i][o][jj cw + c] */
#define CD_WG_SUM(T)                                                                               \
    do {                                                                                           \
        T *p0 = (T *)j.part, *out = gw;                                                            \
        int64_t n = g->kh * g->O * j.ld;                                                           \
        for (int64_t c = 1; c < j.nch; c++) {                                                      \
            const T *pc = p0 + c * n;                                                              \
            for (int64_t i = 0; i < n; i++) p0[i] += pc[i];                                        \
        }                                                                                          \
        for (int64_t o = 0; o < g->O; o++)                                                         \
            for (int64_t c = 0; c < g->C; c++)                                                     \
                for (int64_t i = 0; i < g->kh; i++)                                                \
                    for (int64_t jj = 0; jj < g->kw; jj++)                                         \
                        out[((o * g->C + c) * g->kh + i) * g->kw + jj] =                           \
                            p0[(i * g->O + o) * j.ld + jj * j.cw + c];                             \
    } while (0)

ls_status cd_weight_grad(const conv_geom *g, ls_dtype dt, const void *x, const void *gy, void *gw)
{
    cd_wg j = {.g = g, .dt = dt, .es = ls_dtype_size(dt), .x = x, .gy = gy};
    j.lanes = dt == LS_F32 ? 16 : 8;
    j.hp = g->H + 2 * g->p, j.wp = g->W + 2 * g->p;
    j.cw = cd_cdiv(g->C, j.lanes) * j.lanes, j.ld = g->kw * j.cw;
    j.per = (j.hp * j.wp + g->H * g->W) * j.cw;
    int64_t fit = CD_SCRATCH_BYTES / (j.per * (int64_t)j.es);
    j.nch = g->N < CD_CHUNKS ? g->N : CD_CHUNKS;
    if (j.nch > fit) j.nch = fit;
    if (j.nch < 1) j.nch = 1;
    j.scratch = ls_malloc((size_t)(j.nch * j.per) * j.es, "conv2d_weight_grad");
    j.part = j.scratch ? ls_malloc((size_t)(j.nch * g->kh * g->O * j.ld) * j.es,
                                   "conv2d_weight_grad")
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
