#include "data/idx.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/alloc.h"
#include "data/atomic.h"

/* Upper bound on the element bytes an IDX file may declare (1 TiB): far beyond any real data set, low
 * enough that no size computation below can overflow. */
#define IDX_MAX_BYTES ((uint64_t)1 << 40)
/* Deflate cannot expand data by more than about 1032:1, so a gzip file of n bytes holds at most
 * IDX_GZ_RATIO * n + IDX_GZ_SLACK bytes. This lets us reject an absurd declared size before
 * allocating for it, without having to decompress the whole stream first. */
#define IDX_GZ_RATIO 1100u
#define IDX_GZ_SLACK 4096u
#define IDX_CHUNK ((size_t)1 << 20)

static int idx_host_is_little(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Reverse the bytes of n elements of size `size` in place (big-endian file <-> little-endian host). */
static void idx_swap(void *p, size_t size, size_t n)
{
    unsigned char *b = p;
    if (size == 1) return;
    for (size_t i = 0; i < n; i++, b += size)
        for (size_t j = 0; j < size / 2; j++) {
            unsigned char t = b[j];
            b[j] = b[size - 1 - j];
            b[size - 1 - j] = t;
        }
}

/* ---- the byte source: a gzFile (raw or gzip, zlib decides) or a memory buffer ---- */
typedef struct idx_src {
    gzFile gz;
    const unsigned char *mem;
    size_t memlen, pos;
} idx_src;

/* Read up to n bytes; returns the count read (short at end of input), or -1 on a decompression
 * error. */
static int64_t idx_src_read(idx_src *s, void *buf, size_t n)
{
    if (!s->gz) {
        size_t k = s->memlen - s->pos < n ? s->memlen - s->pos : n;
        memcpy(buf, s->mem + s->pos, k);
        s->pos += k;
        return (int64_t)k;
    }
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : n - got;
        int r = gzread(s->gz, (char *)buf + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

static const char *idx_src_gzerror(idx_src *s)
{
    int code = Z_OK;
    const char *msg = s->gz ? gzerror(s->gz, &code) : "";
    return code == Z_OK || code == Z_STREAM_END ? "" : msg;
}

/* A read of `what` came up short (got < want bytes, or -1 on a zlib error). For compressed input the
 * cause is usually the compression, not the IDX content: say which, with zlib's words.
 *   "read_idx: x.gz: corrupt gzip data (zlib: incorrect data check)"
 *   "read_idx: x.gz: truncated gzip file (zlib: unexpected end of file) while reading the data ..."
 *   "read_idx: x.idx: truncated: expected 8 bytes for the dimension list, got 2" */
static void *idx_fail_short(idx_src *s, const char *name, const char *what, uint64_t want,
                            int64_t got)
{
    const char *z = idx_src_gzerror(s);
    size_t nl = strlen(name);
    if (strncmp(z, name, nl) == 0 && strncmp(z + nl, ": ", 2) == 0) z += nl + 2;   /* zlib's path */
    if (s->gz && !gzdirect(s->gz) && (*z || got < 0)) {
        /* zlib decompresses ahead of what was asked, so only an early end says where it was */
        if (strstr(z, "unexpected end"))
            ls_error_set(LS_ERR_IO, "read_idx: %s: truncated gzip file (zlib: %s) while reading %s",
                         name, z, what);
        else
            ls_error_set(LS_ERR_IO, "read_idx: %s: corrupt gzip data (zlib: %s)", name,
                         *z ? z : "error");
    } else if (s->gz && !gzdirect(s->gz)) {
        ls_error_set(LS_ERR_IO, "read_idx: %s: truncated: the decompressed data end after %lld "
                     "bytes of the %llu expected for %s", name, (long long)(got < 0 ? 0 : got),
                     (unsigned long long)want, what);
    } else {
        ls_error_set(LS_ERR_IO, "read_idx: %s: truncated: expected %llu bytes for %s, got %lld",
                     name, (unsigned long long)want, what, (long long)(got < 0 ? 0 : got));
    }
    return NULL;
}

/* Element size and loaded dtype of an IDX type code; 0 if the code is unknown. */
static size_t idx_type_info(int code, ls_dtype *dtype, const char **cname)
{
    switch (code) {
    case 0x08: *dtype = LS_U8; *cname = "u8"; return 1;
    case 0x09: *dtype = LS_I64; *cname = "i8"; return 1;
    case 0x0B: *dtype = LS_I64; *cname = "i16"; return 2;
    case 0x0C: *dtype = LS_I64; *cname = "i32"; return 4;
    case 0x0D: *dtype = LS_F32; *cname = "f32"; return 4;
    case 0x0E: *dtype = LS_F64; *cname = "f64"; return 8;
    }
    return 0;
}

/* Widen n big-endian signed integers of `size` bytes at src to int64 at dst. */
static void idx_widen(int64_t *dst, const unsigned char *src, size_t size, size_t n)
{
    for (size_t i = 0; i < n; i++, src += size) {
        if (size == 1) {
            dst[i] = (int8_t)src[0];
        } else if (size == 2) {
            dst[i] = (int16_t)(uint16_t)((unsigned)src[0] << 8 | src[1]);
        } else {
            uint32_t u = (uint32_t)src[0] << 24 | (uint32_t)src[1] << 16 |
                         (uint32_t)src[2] << 8 | src[3];
            dst[i] = (int32_t)u;
        }
    }
}

/* Copy the previous engine message (e.g. an allocation failure) under our own prefix. */
static ls_tensor *idx_fail_wrapped(const char *name, ls_tensor *t)
{
    char prev[512];
    snprintf(prev, sizeof prev, "%s", ls_error_untagged());
    ls_status code = ls_error_code() == LS_OK ? LS_ERR_MEM : ls_error_code();
    ls_error_set(code, "read_idx: %s: %s", name, prev);
    ls_tensor_release(t);
    return NULL;
}

/* The reader shared by files and memory. `limit` is the most data bytes the source can hold
 * (UINT64_MAX when unknown); `exact` says the limit is the exact remaining size (raw input). */
static ls_tensor *idx_read_src(idx_src *s, const char *name, uint64_t limit, int exact)
{
    unsigned char head[4], dimbuf[4 * 255];
    int64_t got = idx_src_read(s, head, 4);
    if (got != 4) return idx_fail_short(s, name, "the 4-byte IDX magic", 4, got);
    ls_dtype dtype;
    const char *cname;
    size_t esize = idx_type_info(head[2], &dtype, &cname);
    if (head[0] != 0 || head[1] != 0 || esize == 0)
        return ls_error_set(LS_ERR_IO, "read_idx: %s: bad magic 0x%02X%02X%02X%02X (expected "
                            "00 00 <type 08/09/0B/0C/0D/0E> <ndim>): not an IDX file", name,
                            head[0], head[1], head[2], head[3]), NULL;
    int ndim = head[3];
    if (ndim < 1 || ndim > LS_MAX_DIMS)
        return ls_error_set(LS_ERR_IO, "read_idx: %s: %d dimensions (supported: 1 to %d)", name,
                            ndim, LS_MAX_DIMS), NULL;
    got = idx_src_read(s, dimbuf, 4 * (size_t)ndim);
    if (got != 4 * ndim) return idx_fail_short(s, name, "the dimension list", 4 * ndim, got);
    if (exact) limit -= 4 + 4 * (uint64_t)ndim;

    /* Multiply the dims up with an overflow guard: each dim is < 2^32 and the running product is
     * kept <= IDX_MAX_BYTES, so the product never leaves uint64 range. */
    int64_t shape[LS_MAX_DIMS];
    uint64_t nbytes = esize;
    for (int d = 0; d < ndim; d++) {
        const unsigned char *p = dimbuf + 4 * d;
        uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        shape[d] = v;
        if (nbytes != 0 && v > IDX_MAX_BYTES / nbytes)
            nbytes = IDX_MAX_BYTES + 1;
        else
            nbytes *= v;
    }
    char sbuf[LS_SHAPE_STR_MAX], who[300];
    ls_shape_str(ndim, shape, sbuf, sizeof sbuf);
    /* the engine's shape rule: a zero dim does not unbound the others */
    snprintf(who, sizeof who, "read_idx: %s: dims", name);
    if (ls_shape_check(who, ndim, shape, NULL)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ls_error_message());
        return ls_error_set(LS_ERR_IO, "%s", msg), NULL;
    }
    if (nbytes > IDX_MAX_BYTES)
        return ls_error_set(LS_ERR_IO, "read_idx: %s: dims %s of %s are too large (more than %llu "
                            "bytes)", name, sbuf, cname, (unsigned long long)IDX_MAX_BYTES), NULL;
    if (nbytes > limit) {
        if (exact)
            return ls_error_set(LS_ERR_IO, "read_idx: %s: truncated: dims %s of %s: expected %llu "
                                "bytes of data, got %llu", name, sbuf, cname,
                                (unsigned long long)nbytes, (unsigned long long)limit), NULL;
        return ls_error_set(LS_ERR_IO, "read_idx: %s: dims %s of %s declare %llu bytes of data, "
                            "more than this compressed file can hold (at most %llu)", name, sbuf,
                            cname, (unsigned long long)nbytes, (unsigned long long)limit), NULL;
    }

    ls_tensor *t = ls_tensor_new(dtype, ndim, shape);
    if (!t) return idx_fail_wrapped(name, NULL);
    size_t n = (size_t)(nbytes / esize);
    uint64_t total = 0;
    if (ls_dtype_size(dtype) == esize) {
        /* Same width in file and memory (u8, f32, f64): read in place, then fix the byte order. */
        got = idx_src_read(s, ls_tensor_data(t), (size_t)nbytes);
        total = got < 0 ? 0 : (uint64_t)got;
        if (got == (int64_t)nbytes && idx_host_is_little()) idx_swap(ls_tensor_data(t), esize, n);
    } else {
        /* i8/i16/i32 widen to i64 through a bounded scratch buffer. */
        unsigned char *tmp = ls_malloc(IDX_CHUNK, "read_idx");
        if (!tmp) return idx_fail_wrapped(name, t);
        int64_t *dst = ls_tensor_data(t);
        while (total < nbytes) {
            size_t want = nbytes - total < IDX_CHUNK ? (size_t)(nbytes - total) : IDX_CHUNK;
            want -= want % esize;
            got = idx_src_read(s, tmp, want);
            if (got > 0) {
                idx_widen(dst, tmp, esize, (size_t)got / esize);
                dst += (size_t)got / esize;
                total += (uint64_t)got;
            }
            if (got != (int64_t)want) break;
        }
        ls_free(tmp);
    }
    if (total != nbytes) {
        char what[200];
        snprintf(what, sizeof what, "the data (dims %s of %s)", sbuf, cname);
        idx_fail_short(s, name, what, nbytes, got < 0 ? -1 : (int64_t)total);
        ls_tensor_release(t);
        return NULL;
    }
    /* Nothing may follow the data. For gzip input this read also reaches the stream's end, where
     * zlib checks the CRC and length of the whole stream. */
    unsigned char extra;
    got = idx_src_read(s, &extra, 1);
    if (got != 0) {
        if (got < 0)
            idx_fail_short(s, name, "the end of the gzip stream", 0, got);
        else
            ls_error_set(LS_ERR_IO, "read_idx: %s: trailing bytes after the %llu bytes of data "
                         "declared by dims %s", name, (unsigned long long)nbytes, sbuf);
        ls_tensor_release(t);
        return NULL;
    }
    return t;
}

ls_tensor *ls_idx_read(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return ls_error_set(LS_ERR_IO, "read_idx: %s: %s", path, strerror(errno)), NULL;
    if (S_ISDIR(st.st_mode))
        return ls_error_set(LS_ERR_IO, "read_idx: %s: is a directory", path), NULL;
    idx_src s = {0};
    s.gz = gzopen(path, "rb");
    if (!s.gz)
        return ls_error_set(LS_ERR_IO, "read_idx: %s: %s", path,
                            errno ? strerror(errno) : "cannot open"), NULL;
    gzbuffer(s.gz, 1 << 17);
    /* gzdirect() is only reliable once zlib has looked at the first bytes. */
    int first = gzgetc(s.gz);
    if (first >= 0) gzungetc(first, s.gz);
    int direct = gzdirect(s.gz);
    uint64_t fsize = (uint64_t)st.st_size;
    uint64_t limit = direct ? fsize : fsize * IDX_GZ_RATIO + IDX_GZ_SLACK;
    ls_tensor *t = idx_read_src(&s, path, limit, direct);
    gzclose(s.gz);
    return t;
}

ls_tensor *ls_idx_parse(const void *buf, size_t n, const char *name)
{
    idx_src s = {.gz = NULL, .mem = buf, .memlen = n, .pos = 0};
    return idx_read_src(&s, name, n, 1);
}

/* ---- writing ---- */

/* Where the bytes go: the temporary file directly, or through gzip into it. */
typedef struct idx_sink {
    FILE *f;
    gzFile gz;
} idx_sink;

static int idx_sink_write(idx_sink *k, const void *p, size_t n)
{
    if (k->gz) return n == 0 || gzwrite(k->gz, p, (unsigned)n) == (int)n ? 0 : -1;
    return fwrite(p, 1, n, k->f) == n ? 0 : -1;
}

ls_status ls_idx_write(const char *path, const ls_tensor *t)
{
    int code;
    switch (t->dtype) {
    case LS_U8: code = 0x08; break;
    case LS_I64: code = 0x0C; break;
    case LS_F32: code = 0x0D; break;
    case LS_F64: code = 0x0E; break;
    default: return ls_error_set(LS_ERR_ARG, "write_idx: %s: unsupported dtype", path);
    }
    /* Everything that can be refused is refused before any file is touched. */
    int ndim = t->ndim == 0 ? 1 : t->ndim;
    unsigned char head[4 + 4 * LS_MAX_DIMS] = {0, 0, (unsigned char)code, (unsigned char)ndim};
    for (int d = 0; d < ndim; d++) {
        uint64_t v = t->ndim == 0 ? 1 : (uint64_t)t->shape[d];
        if (v > UINT32_MAX)
            return ls_error_set(LS_ERR_ARG, "write_idx: %s: dim %d of size %llu exceeds IDX's "
                                "32-bit dims (shape %s)", path, d + 1, (unsigned long long)v,
                                ls_tensor_shape_str(t));
        unsigned char *p = head + 4 + 4 * d;
        p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
    }
    ls_tensor *c = ls_tensor_contiguous(t);
    if (!c) {
        char prev[300];
        snprintf(prev, sizeof prev, "%s", ls_error_untagged());
        return ls_error_set(LS_ERR_MEM, "write_idx: %s: %s", path, prev);
    }
    size_t n = (size_t)ls_tensor_numel(c);
    if (c->dtype == LS_I64) {
        const int64_t *v = ls_tensor_data(c);
        for (size_t i = 0; i < n; i++)
            if (v[i] < INT32_MIN || v[i] > INT32_MAX) {
                ls_tensor_release(c);
                return ls_error_set(LS_ERR_ARG, "write_idx: %s: value %lld at element %zu does not "
                                    "fit in IDX int32", path, (long long)v[i], i + 1);
            }
    }
    size_t per = IDX_CHUNK / 8;
    unsigned char *tmp = ls_malloc(per * 8, "write_idx");
    if (!tmp) {
        ls_tensor_release(c);
        return ls_error_set(LS_ERR_MEM, "write_idx: %s: out of memory", path);
    }
    size_t len = strlen(path);
    int gzip = len >= 3 && strcmp(path + len - 3, ".gz") == 0;
    ls_atomic_file af;
    if (ls_atomic_file_open(&af, "write_idx", path) != LS_OK) {
        ls_free(tmp);
        ls_tensor_release(c);
        return LS_ERR_IO;
    }
    idx_sink sink = {.f = af.f, .gz = NULL};
    ls_status st = LS_OK;
    int err = 0;
    if (gzip) {
        /* zlib writes through its own descriptor onto the same open file; gzclose flushes it */
        int fd = dup(fileno(af.f));
        sink.gz = fd >= 0 ? gzdopen(fd, "wb6") : NULL;
        if (!sink.gz) {
            if (fd >= 0) close(fd);
            st = ls_error_set(LS_ERR_MEM, "write_idx: %s: cannot start gzip compression", path);
        }
    }
    if (st == LS_OK && idx_sink_write(&sink, head, (size_t)(4 + 4 * ndim)) != 0)
        st = LS_ERR_IO, err = errno;
    /* Elements go out in chunks converted to big-endian (and i64 narrowed to i32). */
    size_t esize = code == 0x0C ? 4 : ls_dtype_size(c->dtype);
    const unsigned char *src = ls_tensor_data(c);
    for (size_t i = 0; i < n && st == LS_OK; i += per) {
        size_t k = n - i < per ? n - i : per;
        if (code == 0x0C) {
            const int64_t *v = (const int64_t *)src + i;
            for (size_t j = 0; j < k; j++) {
                uint32_t u = (uint32_t)(int32_t)v[j];
                tmp[4 * j] = (unsigned char)(u >> 24), tmp[4 * j + 1] = (unsigned char)(u >> 16);
                tmp[4 * j + 2] = (unsigned char)(u >> 8), tmp[4 * j + 3] = (unsigned char)u;
            }
        } else {
            memcpy(tmp, src + i * esize, k * esize);
            if (idx_host_is_little()) idx_swap(tmp, esize, k);
        }
        if (idx_sink_write(&sink, tmp, k * esize) != 0) st = LS_ERR_IO, err = errno;
    }
    ls_free(tmp);
    ls_tensor_release(c);
    if (sink.gz) {
        int zrc = gzclose(sink.gz);   /* writes the rest of the stream and the trailer */
        if (zrc != Z_OK && st == LS_OK) st = LS_ERR_IO, err = zrc == Z_ERRNO ? errno : EIO;
    }
    if (st == LS_ERR_IO) {
        ls_atomic_file_abort(&af);
        return ls_error_set(LS_ERR_IO, "write_idx: %s: write failed: %s (the file is unchanged)",
                            path, strerror(err ? err : EIO));
    }
    if (st != LS_OK) {
        ls_atomic_file_abort(&af);
        return st;
    }
    return ls_atomic_file_commit(&af, "write_idx");
}
