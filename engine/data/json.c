#include "data/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"   /* LS_PRINTF */

typedef struct jparser {
    const unsigned char *start, *p, *end;
    int depth;
    size_t nvalues;
    bool oom;
    char err[200];
} jparser;

static int j_fail(jparser *j, const char *fmt, ...) LS_PRINTF(2, 3);
static int j_fail(jparser *j, const char *fmt, ...)
{
    if (j->err[0]) return -1;
    int k = snprintf(j->err, sizeof j->err, "at byte %zu: ", (size_t)(j->p - j->start));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err + k, sizeof j->err - (size_t)k, fmt, ap);
    va_end(ap);
    return -1;
}

static int j_oom(jparser *j)
{
    j->oom = true;
    return j_fail(j, "out of memory");
}

void ls_json_free(ls_json *v)
{
    if (v->kind == LS_JSON_ARR || v->kind == LS_JSON_OBJ) {
        for (size_t k = 0; k < v->n; k++) ls_json_free(&v->items[k]);
        ls_free(v->items);
    }
    ls_free(v->key);
    ls_free(v->s);
    memset(v, 0, sizeof *v);
}

size_t ls_json_utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

static void j_ws(jparser *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int j_hex4(jparser *j, unsigned *out)
{
    if (j->end - j->p < 4) return j_fail(j, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = j->p[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return j_fail(j, "bad hex digit in \\u escape");
        v = v << 4 | d;
    }
    j->p += 4;
    *out = v;
    return 0;
}

/* A string starting at the opening quote. The decoded form is never longer than the source, so one
 * allocation of the source span suffices. */
static int j_string(jparser *j, char **out, size_t *outlen)
{
    j->p++;   /* the opening quote */
    const unsigned char *q = j->p;
    while (q < j->end && *q != '"') q += (*q == '\\' && q + 1 < j->end) ? 2 : 1;
    if (q >= j->end) return j_fail(j, "unterminated string");
    char *buf = ls_malloc((size_t)(q - j->p) + 1, "json"), *w = buf;
    if (!buf) return j_oom(j);
    while (*j->p != '"') {
        unsigned c = *j->p;
        if (c < 0x20) { ls_free(buf); return j_fail(j, "control character 0x%02X in string", c); }
        if (c != '\\') { *w++ = (char)c; j->p++; continue; }
        j->p++;
        c = *j->p++;
        unsigned cp;
        switch (c) {
        case '"': case '\\': case '/': *w++ = (char)c; continue;
        case 'b': *w++ = '\b'; continue;
        case 'f': *w++ = '\f'; continue;
        case 'n': *w++ = '\n'; continue;
        case 'r': *w++ = '\r'; continue;
        case 't': *w++ = '\t'; continue;
        case 'u': break;
        default: j->p--; ls_free(buf); return j_fail(j, "invalid escape '\\%c'", c);
        }
        if (j_hex4(j, &cp)) { ls_free(buf); return -1; }
        if (cp >= 0xDC00 && cp <= 0xDFFF) { ls_free(buf); return j_fail(j, "lone low surrogate"); }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') {
                ls_free(buf);
                return j_fail(j, "high surrogate not followed by a low one");
            }
            j->p += 2;
            if (j_hex4(j, &lo)) { ls_free(buf); return -1; }
            if (lo < 0xDC00 || lo > 0xDFFF) { ls_free(buf); return j_fail(j, "bad low surrogate"); }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        /* UTF-8 encode; a \uXXXX escape (6 bytes) or pair (12) never yields more bytes than it took. */
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xC0 | cp >> 6), *w++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xE0 | cp >> 12), *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *w++ = (char)(0xF0 | cp >> 18), *w++ = (char)(0x80 | (cp >> 12 & 0x3F));
            *w++ = (char)(0x80 | (cp >> 6 & 0x3F)), *w++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    j->p++;   /* the closing quote */
    *w = '\0';
    *out = buf;
    *outlen = (size_t)(w - buf);
    return 0;
}

static int j_number(jparser *j, ls_json *v)
{
    bool neg = false, frac = false, overflow = false;
    uint64_t acc = 0;
    if (*j->p == '-') neg = true, j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return j_fail(j, "invalid number");
    if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
        return j_fail(j, "number with a leading zero");
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = *j->p++ - '0';
        if (acc > (uint64_t)(INT64_MAX - d) / 10) overflow = true;
        else acc = acc * 10 + d;
    }
    if (j->p < j->end && *j->p == '.') {
        frac = true;
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return j_fail(j, "digit expected after '.'");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        frac = true;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return j_fail(j, "digit expected in exponent");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    v->kind = LS_JSON_NUM;
    v->is_int = !neg && !frac && !overflow;
    v->i = (int64_t)acc;
    return 0;
}

static int j_keycmp(const void *a, const void *b)
{
    const ls_json *x = *(const ls_json *const *)a, *y = *(const ls_json *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* Reject an object with a repeated member name: sort pointers to the members by name, compare
 * neighbours. O(n log n), so a header with many tensors stays cheap. */
static int j_check_dups(jparser *j, const ls_json *obj)
{
    if (obj->n < 2) return 0;
    const ls_json **idx = ls_malloc(obj->n * sizeof *idx, "json");
    if (!idx) return j_oom(j);
    for (size_t k = 0; k < obj->n; k++) idx[k] = &obj->items[k];
    qsort(idx, obj->n, sizeof *idx, j_keycmp);
    for (size_t k = 1; k < obj->n; k++)
        if (j_keycmp(&idx[k - 1], &idx[k]) == 0) {
            j->p = j->start + idx[k]->pos;
            j_fail(j, "duplicate key \"%.60s\"", idx[k]->key);
            ls_free(idx);
            return -1;
        }
    ls_free(idx);
    return 0;
}

static int j_value(jparser *j, ls_json *v);

/* The members of an array or object, up to the closing bracket `close`. */
static int j_container(jparser *j, ls_json *v, int close)
{
    v->kind = close == ']' ? LS_JSON_ARR : LS_JSON_OBJ;
    if (++j->depth > LS_JSON_MAX_DEPTH) return j_fail(j, "nesting deeper than %d", LS_JSON_MAX_DEPTH);
    j->p++;
    j_ws(j);
    size_t cap = 0;
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return 0;
    }
    for (;;) {
        if (v->n == cap) {
            cap = cap ? 2 * cap : 4;
            ls_json *items = ls_realloc(v->items, cap * sizeof *items, "json");
            if (!items) return j_oom(j);
            v->items = items;
        }
        ls_json *m = &v->items[v->n];
        memset(m, 0, sizeof *m);
        v->n++;
        j_ws(j);
        if (close == '}') {
            if (j->p >= j->end || *j->p != '"') return j_fail(j, "expected a string key");
            m->pos = (size_t)(j->p - j->start);
            if (j_string(j, &m->key, &m->klen)) return -1;
            j_ws(j);
            if (j->p >= j->end || *j->p != ':') return j_fail(j, "expected ':' after a key");
            j->p++;
        }
        if (j_value(j, m)) return -1;
        j_ws(j);
        if (j->p >= j->end) return j_fail(j, "unterminated %s", close == ']' ? "array" : "object");
        if (*j->p == ',') { j->p++; continue; }
        if (*j->p == close) { j->p++; break; }
        return j_fail(j, "expected ',' or '%c'", close);
    }
    j->depth--;
    return close == '}' ? j_check_dups(j, v) : 0;
}

static int j_value(jparser *j, ls_json *v)
{
    j_ws(j);
    if (++j->nvalues > LS_JSON_MAX_VALUES)
        return j_fail(j, "more than %zu JSON values", LS_JSON_MAX_VALUES);
    if (j->p >= j->end) return j_fail(j, "unexpected end of input");
    if (!v->pos) v->pos = (size_t)(j->p - j->start);
    unsigned c = *j->p;
    if (c == '{' || c == '[') return j_container(j, v, c == '{' ? '}' : ']');
    if (c == '"') {
        v->kind = LS_JSON_STR;
        return j_string(j, &v->s, &v->len);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return j_number(j, v);
    static const struct { const char *word; ls_json_kind kind; } words[] = {
        {"true", LS_JSON_BOOL}, {"false", LS_JSON_BOOL}, {"null", LS_JSON_NULL}};
    for (int k = 0; k < 3; k++) {
        size_t len = strlen(words[k].word);
        if ((size_t)(j->end - j->p) >= len && memcmp(j->p, words[k].word, len) == 0) {
            j->p += len;
            v->kind = words[k].kind;
            v->truth = k == 0;
            return 0;
        }
    }
    if (c >= 0x21 && c < 0x7F) return j_fail(j, "unexpected character '%c'", c);
    return j_fail(j, "unexpected byte 0x%02X", c);
}

int ls_json_parse(const char *text, size_t n, ls_json *root, char *err, size_t errcap)
{
    jparser j = {0};
    memset(root, 0, sizeof *root);
    j.start = j.p = (const unsigned char *)text;
    j.end = j.start + n;
    size_t bad = ls_json_utf8_check(j.start, n);
    if (bad != n) {
        j.p = j.start + bad;
        j_fail(&j, "invalid UTF-8");
    } else if (j_value(&j, root) == 0) {
        j_ws(&j);
        if (j.p != j.end) j_fail(&j, "trailing characters after the JSON value");
    }
    if (!j.err[0]) return 0;
    ls_json_free(root);
    snprintf(err, errcap, "%s", j.err);
    return j.oom ? -2 : -1;
}
