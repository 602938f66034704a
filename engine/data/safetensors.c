#include "data/safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "data/atomic.h"
#include "data/json.h"

/* The reference implementation's cap on the JSON header. */
#define ST_MAX_HEADER 100000000u

/* ======================================================================================
 * Header schema and data
 * ====================================================================================== */

enum { ST_NATIVE, ST_F16, ST_BF16, ST_SINT, ST_UINT, ST_BOOL };

static const struct st_dtype {
    const char *name;
    int size;
    ls_dtype to;
    int how;
} st_dtypes[] = {
    {"F64", 8, LS_F64, ST_NATIVE}, {"F32", 4, LS_F32, ST_NATIVE}, {"I64", 8, LS_I64, ST_NATIVE},
    {"U8", 1, LS_U8, ST_NATIVE},   {"F16", 2, LS_F32, ST_F16},    {"BF16", 2, LS_F32, ST_BF16},
    {"I32", 4, LS_I64, ST_SINT},   {"I16", 2, LS_I64, ST_SINT},   {"I8", 1, LS_I64, ST_SINT},
    {"U32", 4, LS_I64, ST_UINT},   {"U16", 2, LS_I64, ST_UINT},   {"BOOL", 1, LS_U8, ST_BOOL},
};
#define ST_NDTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

typedef struct st_entry {
    const char *name;
    const struct st_dtype *dt;
    int ndim;
    int64_t shape[LS_MAX_DIMS];
    int64_t begin, end;
} st_entry;

/* The byte source: a FILE or a memory image. Offsets are absolute within the file. */
typedef struct st_src {
    FILE *f;
    const unsigned char *mem;
    uint64_t size;
} st_src;

static int st_read_at(st_src *s, uint64_t off, void *buf, size_t n)
{
    if (off > s->size || n > s->size - off) return -1;
    if (s->mem) {
        memcpy(buf, s->mem + off, n);
        return 0;
    }
    if (fseeko(s->f, (off_t)off, SEEK_SET) != 0) return -1;
    return fread(buf, 1, n, s->f) == n ? 0 : -1;
}

static int st_host_is_little(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Little-endian bytes -> host value of `size` bytes (1, 2, 4 or 8). */
static uint64_t st_le(const unsigned char *p, int size)
{
    uint64_t v = 0;
    for (int k = size - 1; k >= 0; k--) v = v << 8 | p[k];
    return v;
}

/* IEEE half -> single, exactly: normals rebias the exponent, subnormals are renormalised, Inf/NaN
 * keep their payload. */
static float st_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = h >> 10 & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | man << 13;
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | man << 13;
    } else if (man == 0) {
        bits = sign;
    } else {
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3FF) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Turn the raw little-endian bytes of one tensor into its loaded dtype. */
static void st_convert(const struct st_dtype *dt, const unsigned char *src, void *dst, size_t n)
{
    if (dt->how == ST_NATIVE) {
        memcpy(dst, src, n * (size_t)dt->size);
        if (!st_host_is_little() && dt->size > 1) {
            unsigned char *b = dst;
            for (size_t i = 0; i < n; i++, b += dt->size)
                for (int k = 0; k < dt->size / 2; k++) {
                    unsigned char t = b[k];
                    b[k] = b[dt->size - 1 - k];
                    b[dt->size - 1 - k] = t;
                }
        }
        return;
    }
    for (size_t i = 0; i < n; i++, src += dt->size) {
        uint64_t u = st_le(src, dt->size);
        switch (dt->how) {
        case ST_F16: ((float *)dst)[i] = st_half_to_float((uint16_t)u); break;
        case ST_BF16: {
            uint32_t bits = (uint32_t)u << 16;
            memcpy((float *)dst + i, &bits, 4);
            break;
        }
        case ST_SINT: {
            int shift = 64 - 8 * dt->size;   /* sign-extend through the top bits */
            ((int64_t *)dst)[i] = (int64_t)(u << shift) >> shift;
            break;
        }
        case ST_UINT: ((int64_t *)dst)[i] = (int64_t)u; break;
        case ST_BOOL: ((unsigned char *)dst)[i] = u != 0; break;
        }
    }
}

static int st_cmp_offsets(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Check one tensor entry against the schema; fills e. Returns 0, or -1 with msg written. */
static int st_entry_check(const ls_json *v, st_entry *e, char *msg, size_t cap)
{
    const char *name = v->key;
    if (v->kind != LS_JSON_OBJ)
        return snprintf(msg, cap, "entry '%.80s' is not an object", name), -1;
    const ls_json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (size_t k = 0; k < v->n; k++) {
        const ls_json *m = &v->items[k];
        if (memchr(m->key, '\0', m->klen))
            return snprintf(msg, cap, "tensor '%.80s': a field name contains a NUL character",
                            name), -1;
        if (strcmp(m->key, "dtype") == 0) dtype = m;
        else if (strcmp(m->key, "shape") == 0) shape = m;
        else if (strcmp(m->key, "data_offsets") == 0) offs = m;
        else return snprintf(msg, cap, "tensor '%.80s': unknown field \"%.40s\"", name, m->key), -1;
    }
    if (!dtype || !shape || !offs)
        return snprintf(msg, cap, "tensor '%.80s': missing field \"%s\"", name,
                        !dtype ? "dtype" : !shape ? "shape" : "data_offsets"), -1;
    if (dtype->kind != LS_JSON_STR)
        return snprintf(msg, cap, "tensor '%.80s': dtype is not a string", name), -1;
    e->dt = NULL;
    for (size_t k = 0; k < ST_NDTYPES && !memchr(dtype->s, '\0', dtype->len); k++)
        if (strcmp(dtype->s, st_dtypes[k].name) == 0) e->dt = &st_dtypes[k];
    if (!e->dt)
        return snprintf(msg, cap, "tensor '%.80s': unsupported dtype \"%.20s\" (supported: F64 F32 "
                        "F16 BF16 I64 I32 I16 I8 U32 U16 U8 BOOL)", name, dtype->s), -1;
    if (shape->kind != LS_JSON_ARR)
        return snprintf(msg, cap, "tensor '%.80s': shape is not an array", name), -1;
    if (shape->n > LS_MAX_DIMS)
        return snprintf(msg, cap, "tensor '%.80s': %zu dims (at most %d supported)", name,
                        shape->n, LS_MAX_DIMS), -1;
    /* numel * size, with an overflow guard that keeps the running product below 2^62. */
    uint64_t nbytes = (uint64_t)e->dt->size, cap62 = (uint64_t)1 << 62;
    e->ndim = (int)shape->n;
    for (size_t d = 0; d < shape->n; d++) {
        const ls_json *x = &shape->items[d];
        if (x->kind != LS_JSON_NUM || !x->is_int)
            return snprintf(msg, cap, "tensor '%.80s': shape[%zu] is not a non-negative integer",
                            name, d), -1;
        e->shape[d] = x->i;
        if (nbytes && (uint64_t)x->i > cap62 / nbytes) nbytes = cap62 + 1;
        else nbytes *= (uint64_t)x->i;
    }
    /* the engine's shape rule (sizes bounded even when another is 0), before any size is used */
    char who[120];
    snprintf(who, sizeof who, "tensor '%.80s'", name);
    if (ls_shape_check(who, e->ndim, e->shape, NULL) != LS_OK)
        return snprintf(msg, cap, "%s", ls_error_message()), -1;
    if (offs->kind != LS_JSON_ARR || offs->n != 2 || offs->items[0].kind != LS_JSON_NUM ||
        !offs->items[0].is_int || offs->items[1].kind != LS_JSON_NUM || !offs->items[1].is_int)
        return snprintf(msg, cap, "tensor '%.80s': data_offsets is not a pair of non-negative "
                        "integers", name), -1;
    e->begin = offs->items[0].i;
    e->end = offs->items[1].i;
    e->name = name;
    if (e->end < e->begin)
        return snprintf(msg, cap, "tensor '%.80s': data_offsets [%" PRId64 ", %" PRId64 "] end "
                        "before they begin", name, e->begin, e->end), -1;
    if (nbytes != (uint64_t)(e->end - e->begin)) {
        char sbuf[LS_SHAPE_STR_MAX];
        ls_shape_str(e->ndim, e->shape, sbuf, sizeof sbuf);
        return snprintf(msg, cap, "tensor '%.80s': shape %s of %s needs %llu bytes but "
                        "data_offsets [%" PRId64 ", %" PRId64 "] span %" PRId64, name, sbuf,
                        e->dt->name, (unsigned long long)nbytes, e->begin, e->end,
                        e->end - e->begin), -1;
    }
    return 0;
}

void ls_safetensors_free(ls_safetensors *st)
{
    if (!st) return;
    for (int k = 0; k < st->ntensors; k++) {
        if (st->names) ls_free(st->names[k]);
        if (st->tensors) ls_tensor_release(st->tensors[k]);
    }
    for (int k = 0; k < st->nmeta; k++) {
        if (st->meta_keys) ls_free(st->meta_keys[k]);
        if (st->meta_values) ls_free(st->meta_values[k]);
    }
    ls_free(st->names);
    ls_free(st->tensors);
    ls_free(st->meta_keys);
    ls_free(st->meta_values);
    ls_free(st);
}

int ls_safetensors_find(const ls_safetensors *st, const char *name)
{
    for (int k = 0; k < st->ntensors; k++)
        if (strcmp(st->names[k], name) == 0) return k;
    return -1;
}

static char *st_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ls_malloc(n, "safetensors");
    if (d) memcpy(d, s, n);
    return d;
}

#define ST_FAIL(...) do { ls_error_set(LS_ERR_IO, __VA_ARGS__); goto done; } while (0)

/* Everything after the first 8 bytes: parse and validate the header, then read each tensor. */
static ls_safetensors *st_load(st_src *src, const char *name)
{
    ls_safetensors *out = NULL, *st = NULL;
    unsigned char *header = NULL, *scratch = NULL;
    st_entry *ents = NULL;
    ls_json root = {0};
    char jerr[200];
    char msg[320];
    unsigned char lenbuf[8];

    if (src->size < 8 || st_read_at(src, 0, lenbuf, 8) != 0)
        ST_FAIL("load_safetensors: %s: file too short (%llu bytes) for the 8-byte header length",
                name, (unsigned long long)src->size);
    uint64_t hlen = st_le(lenbuf, 8);
    if (hlen > src->size - 8)
        ST_FAIL("load_safetensors: %s: header length %llu exceeds file size %llu", name,
                (unsigned long long)hlen, (unsigned long long)src->size);
    if (hlen > ST_MAX_HEADER)
        ST_FAIL("load_safetensors: %s: header length %llu exceeds the limit of %u bytes", name,
                (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen < 2)
        ST_FAIL("load_safetensors: %s: header length %llu is too short for a JSON object", name,
                (unsigned long long)hlen);
    header = ls_malloc((size_t)hlen, "safetensors");
    if (!header) {
        ls_error_set(LS_ERR_MEM, "load_safetensors: %s: out of memory for the header", name);
        goto done;
    }
    if (st_read_at(src, 8, header, (size_t)hlen) != 0)
        ST_FAIL("load_safetensors: %s: read error in the header", name);
    if (header[0] != '{')
        ST_FAIL("load_safetensors: %s: header does not start with '{'", name);
    int jrc = ls_json_parse((const char *)header, (size_t)hlen, &root, jerr, sizeof jerr);
    if (jrc == -2) {
        ls_error_set(LS_ERR_MEM, "load_safetensors: %s: out of memory parsing the header", name);
        goto done;
    }
    if (jrc != 0) ST_FAIL("load_safetensors: %s: invalid JSON header %s", name, jerr);

    uint64_t dlen = src->size - 8 - hlen;
    st = ls_calloc(sizeof *st, "safetensors");
    ents = ls_calloc((root.n ? root.n : 1) * sizeof *ents, "safetensors");
    if (!st || !ents) {
        ls_error_set(LS_ERR_MEM, "load_safetensors: %s: out of memory", name);
        goto done;
    }
    /* Pass 1: schema of every member. Metadata goes straight into st. */
    int nt = 0;
    for (size_t k = 0; k < root.n; k++) {
        const ls_json *m = &root.items[k];
        if (memchr(m->key, '\0', m->klen))
            ST_FAIL("load_safetensors: %s: a key contains a NUL character", name);
        if (strcmp(m->key, "__metadata__") == 0) {
            if (m->kind != LS_JSON_OBJ)
                ST_FAIL("load_safetensors: %s: __metadata__ is not an object", name);
            st->meta_keys = ls_calloc((m->n ? m->n : 1) * sizeof(char *), "safetensors");
            st->meta_values = ls_calloc((m->n ? m->n : 1) * sizeof(char *), "safetensors");
            if (!st->meta_keys || !st->meta_values) {
                ls_error_set(LS_ERR_MEM, "load_safetensors: %s: out of memory", name);
                goto done;
            }
            for (size_t i = 0; i < m->n; i++) {
                const ls_json *kv = &m->items[i];
                if (kv->kind != LS_JSON_STR)
                    ST_FAIL("load_safetensors: %s: __metadata__ value for '%.80s' is not a string",
                            name, kv->key);
                if (memchr(kv->key, '\0', kv->klen) || memchr(kv->s, '\0', kv->len))
                    ST_FAIL("load_safetensors: %s: __metadata__ entry '%.80s' contains a NUL "
                            "character", name, kv->key);
                st->meta_keys[i] = st_strdup(kv->key);
                st->meta_values[i] = st_strdup(kv->s);
                st->nmeta++;
                if (!st->meta_keys[i] || !st->meta_values[i]) {
                    ls_error_set(LS_ERR_MEM, "load_safetensors: %s: out of memory", name);
                    goto done;
                }
            }
            continue;
        }
        if (st_entry_check(m, &ents[nt], msg, sizeof msg) != 0)
            ST_FAIL("load_safetensors: %s: %s", name, msg);
        if ((uint64_t)ents[nt].end > dlen)
            ST_FAIL("load_safetensors: %s: tensor '%.80s': data_offsets [%" PRId64 ", %" PRId64
                    "] exceed the data buffer of %llu bytes", name, ents[nt].name,
                    ents[nt].begin, ents[nt].end, (unsigned long long)dlen);
        nt++;
    }
    /* Pass 2: ordered by offset, the tensors must tile [0, dlen) exactly. */
    qsort(ents, (size_t)nt, sizeof *ents, st_cmp_offsets);
    int64_t at = 0;
    for (int k = 0; k < nt; k++) {
        if (ents[k].begin < at)
            ST_FAIL("load_safetensors: %s: tensors '%.80s' and '%.80s' overlap (data_offsets "
                    "[%" PRId64 ", %" PRId64 "] and [%" PRId64 ", %" PRId64 "])", name,
                    ents[k - 1].name, ents[k].name, ents[k - 1].begin, ents[k - 1].end,
                    ents[k].begin, ents[k].end);
        if (ents[k].begin > at)
            ST_FAIL("load_safetensors: %s: %" PRId64 " unused bytes in the data buffer before "
                    "tensor '%.80s' (data_offsets begin at %" PRId64 ")", name,
                    ents[k].begin - at, ents[k].name, ents[k].begin);
        at = ents[k].end;
    }
    if ((uint64_t)at != dlen)
        ST_FAIL("load_safetensors: %s: the data buffer has %llu bytes but the tensors cover %"
                PRId64, name, (unsigned long long)dlen, at);

    /* Pass 3: read. Native little-endian data go straight into the tensor; others via scratch. */
    st->names = ls_calloc((size_t)(nt ? nt : 1) * sizeof(char *), "safetensors");
    st->tensors = ls_calloc((size_t)(nt ? nt : 1) * sizeof(ls_tensor *), "safetensors");
    if (!st->names || !st->tensors) {
        ls_error_set(LS_ERR_MEM, "load_safetensors: %s: out of memory", name);
        goto done;
    }
    for (int k = 0; k < nt; k++) {
        const st_entry *e = &ents[k];
        size_t nbytes = (size_t)(e->end - e->begin);
        ls_tensor *t = ls_tensor_new(e->dt->to, e->ndim, e->shape);
        st->names[k] = st_strdup(e->name);
        st->tensors[k] = t;
        st->ntensors = k + 1;
        if (!t || !st->names[k]) {
            snprintf(msg, sizeof msg, "%s", ls_error_untagged());
            ls_error_set(LS_ERR_MEM, "load_safetensors: %s: tensor '%.80s': %s", name, e->name,
                         t ? "out of memory" : msg);
            goto done;
        }
        bool direct = e->dt->how == ST_NATIVE && st_host_is_little();
        unsigned char *buf = direct ? ls_tensor_data(t) : (scratch = ls_malloc(nbytes ? nbytes : 1, "safetensors"));
        if (!buf) {
            ls_error_set(LS_ERR_MEM, "load_safetensors: %s: out of memory", name);
            goto done;
        }
        if (st_read_at(src, 8 + hlen + (uint64_t)e->begin, buf, nbytes) != 0)
            ST_FAIL("load_safetensors: %s: read error in tensor '%.80s'", name, e->name);
        if (!direct) {
            st_convert(e->dt, buf, ls_tensor_data(t), nbytes / (size_t)e->dt->size);
            ls_free(scratch);
            scratch = NULL;
        }
    }
    out = st;
    st = NULL;
done:
    ls_safetensors_free(st);
    ls_free(scratch);
    ls_free(ents);
    ls_json_free(&root);
    ls_free(header);
    return out;
}

ls_safetensors *ls_safetensors_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ls_error_set(LS_ERR_IO, "load_safetensors: %s: %s", path, strerror(errno)), NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || S_ISDIR(sb.st_mode)) {
        fclose(f);
        return ls_error_set(LS_ERR_IO, "load_safetensors: %s: is a directory", path), NULL;
    }
    st_src src = {.f = f, .mem = NULL, .size = (uint64_t)sb.st_size};
    ls_safetensors *st = st_load(&src, path);
    fclose(f);
    return st;
}

ls_safetensors *ls_safetensors_parse(const void *buf, size_t n, const char *name)
{
    st_src src = {.f = NULL, .mem = buf, .size = n};
    return st_load(&src, name);
}

/* ======================================================================================
 * Saving
 * ====================================================================================== */

typedef struct st_buf {
    char *p;
    size_t n, cap;
    bool oom;
} st_buf;

static void sb_put(st_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = ls_realloc(b->p, cap, "safetensors");
        if (!p) { b->oom = true; return; }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control characters escaped, UTF-8 passed through. */
static void sb_json_string(st_buf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

typedef struct st_item {
    const char *name;
    const ls_tensor *t;
} st_item;

static int st_cmp_save(const void *a, const void *b)
{
    const st_item *x = a, *y = b;
    size_t sx = ls_dtype_size(x->t->dtype), sy = ls_dtype_size(y->t->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* A metadata pair; the key comes first so st_cmp_str orders pairs by key as well as bare strings. */
typedef struct st_pair {
    const char *key, *value;
} st_pair;

static int st_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first repeated string among n, or NULL. */
static const char *st_first_dup(const char *const *s, int n, ls_status *oom)
{
    const char *dup = NULL;
    if (n < 2) return NULL;
    const char **sorted = ls_malloc((size_t)n * sizeof *sorted, "safetensors");
    if (!sorted) { *oom = LS_ERR_MEM; return NULL; }
    memcpy(sorted, s, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, st_cmp_str);
    for (int k = 1; k < n && !dup; k++)
        if (strcmp(sorted[k - 1], sorted[k]) == 0) dup = sorted[k];
    ls_free(sorted);
    return dup;
}

static const char *st_dtype_tag(ls_dtype d)
{
    switch (d) {
    case LS_F32: return "F32";
    case LS_F64: return "F64";
    case LS_I64: return "I64";
    case LS_U8: return "U8";
    }
    return NULL;
}

static ls_status st_check_names(const char *path, const char *what, int n, const char *const *s)
{
    for (int k = 0; k < n; k++) {
        if (!s[k])
            return ls_error_set(LS_ERR_ARG, "save_safetensors: %s: %s %d is NULL", path, what, k);
        if (!ls_json_utf8_valid(s[k], strlen(s[k])))
            return ls_error_set(LS_ERR_ARG, "save_safetensors: %s: %s '%.80s' is not valid UTF-8",
                                path, what, s[k]);
    }
    return LS_OK;
}

ls_status ls_safetensors_save(const char *path, int n, const char *const *names,
                              const ls_tensor *const *tensors, int nmeta,
                              const char *const *meta_keys, const char *const *meta_values)
{
    ls_status rc = LS_OK;
    if (n < 0 || nmeta < 0)
        return ls_error_set(LS_ERR_ARG, "save_safetensors: %s: negative count", path);
    if ((rc = st_check_names(path, "tensor name", n, names)) ||
        (rc = st_check_names(path, "metadata key", nmeta, meta_keys)) ||
        (rc = st_check_names(path, "metadata value", nmeta, meta_values)))
        return rc;
    for (int k = 0; k < n; k++) {
        if (strcmp(names[k], "__metadata__") == 0)
            return ls_error_set(LS_ERR_ARG, "save_safetensors: %s: '__metadata__' is reserved and "
                                "cannot name a tensor", path);
        if (!tensors[k])
            return ls_error_set(LS_ERR_ARG, "save_safetensors: %s: tensor '%.80s' is NULL", path,
                                names[k]);
        if (!st_dtype_tag(tensors[k]->dtype))
            return ls_error_set(LS_ERR_ARG, "save_safetensors: %s: tensor '%.80s' has an "
                                "unsupported dtype", path, names[k]);
    }
    const char *dup = st_first_dup(names, n, &rc);
    if (!dup && !rc) dup = st_first_dup(meta_keys, nmeta, &rc);
    if (rc) return ls_error_set(LS_ERR_MEM, "save_safetensors: %s: out of memory", path);
    if (dup) return ls_error_set(LS_ERR_ARG, "save_safetensors: %s: duplicate name '%.80s'", path, dup);

    st_item *items = ls_malloc((size_t)(n ? n : 1) * sizeof *items, "safetensors");
    ls_tensor **contig = ls_calloc((size_t)(n ? n : 1) * sizeof *contig, "safetensors");
    st_buf h = {0};
    if (!items || !contig) goto oom;
    for (int k = 0; k < n; k++) items[k] = (st_item){names[k], tensors[k]};
    qsort(items, (size_t)n, sizeof *items, st_cmp_save);

    /* The header: metadata first, then the entries with cumulative offsets. */
    sb_puts(&h, "{");
    if (nmeta > 0) {
        /* Keys in bytewise order, so equal inputs give identical files whatever order they came in. */
        st_pair *pairs = ls_malloc((size_t)nmeta * sizeof *pairs, "safetensors");
        if (!pairs) goto oom;
        for (int k = 0; k < nmeta; k++) pairs[k] = (st_pair){meta_keys[k], meta_values[k]};
        qsort(pairs, (size_t)nmeta, sizeof *pairs, st_cmp_str);
        sb_puts(&h, "\"__metadata__\":{");
        for (int k = 0; k < nmeta; k++) {
            if (k) sb_puts(&h, ",");
            sb_json_string(&h, pairs[k].key);
            sb_puts(&h, ":");
            sb_json_string(&h, pairs[k].value);
        }
        ls_free(pairs);
        sb_puts(&h, "}");
    }
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        const ls_tensor *t = items[k].t;
        char num[64];
        uint64_t nbytes = (uint64_t)ls_tensor_numel(t) * ls_dtype_size(t->dtype);
        if (k || nmeta > 0) sb_puts(&h, ",");
        sb_json_string(&h, items[k].name);
        sb_puts(&h, ":{\"dtype\":\"");
        sb_puts(&h, st_dtype_tag(t->dtype));
        sb_puts(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%" PRId64, d ? "," : "", t->shape[d]);
            sb_puts(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nbytes));
        sb_puts(&h, num);
        off += nbytes;
    }
    sb_puts(&h, "}");
    while ((8 + h.n) % 8) sb_puts(&h, " ");
    if (h.oom) goto oom;

    for (int k = 0; k < n; k++)
        if (!(contig[k] = ls_tensor_contiguous(items[k].t))) goto oom;

    ls_atomic_file af;
    if ((rc = ls_atomic_file_open(&af, "save_safetensors", path)) != LS_OK) goto done;
    FILE *f = af.f;
    unsigned char lenbuf[8];
    for (int b = 0; b < 8; b++) lenbuf[b] = (unsigned char)((uint64_t)h.n >> (8 * b));
    bool bad = fwrite(lenbuf, 1, 8, f) != 8 || fwrite(h.p, 1, h.n, f) != h.n;
    for (int k = 0; k < n && !bad; k++) {
        const ls_tensor *t = contig[k];
        size_t esize = ls_dtype_size(t->dtype), count = (size_t)ls_tensor_numel(t);
        const unsigned char *p = ls_tensor_data(t);
        if (st_host_is_little() || esize == 1) {
            bad = fwrite(p, esize, count, f) != count;
        } else {
            /* Big-endian host: swap element by element. */
            for (size_t i = 0; i < count && !bad; i++) {
                unsigned char e[8];
                for (size_t b = 0; b < esize; b++) e[b] = p[i * esize + esize - 1 - b];
                bad = fwrite(e, esize, 1, f) != 1;
            }
        }
    }
    rc = ls_atomic_file_commit(&af, "save_safetensors");   /* reports a failed write too */
    goto done;
oom:
    rc = ls_error_set(LS_ERR_MEM, "save_safetensors: %s: out of memory", path);
done:
    for (int k = 0; contig && k < n; k++) ls_tensor_release(contig[k]);
    ls_free(contig);
    ls_free(items);
    ls_free(h.p);
    return rc;
}
