/* ls_json_parse over Jansson: json_loadb with the strict flags, then a copy into the ls_json tree
 * (see json.h), checking depth and size on the way. Jansson keeps an object's members in insertion
 * order, so the tree has them in document order. Jansson's own allocations and the tree's go through
 * the engine allocator, so an out-of-memory (real or injected, docs/hardening.md) is reported as
 * such (-2) wherever it happens. */
#include "data/json.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/status.h"   /* LS_PRINTF */

/* Set by the allocation hooks when a block could not be had during the current parse. */
static _Thread_local bool j_oom;

static void *j_malloc(size_t n)
{
    void *p = ls_malloc(n, "JSON header");
    if (!p) j_oom = true;
    return p;
}

static pthread_once_t j_hooks_once = PTHREAD_ONCE_INIT;
static void j_set_hooks(void) { json_set_alloc_funcs(j_malloc, ls_free); }

typedef struct jcopy {
    size_t nvalues;
    char *err;
    size_t errcap;
} jcopy;

static int j_fail(jcopy *c, const char *fmt, ...) LS_PRINTF(2, 3);
static int j_fail(jcopy *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errcap, fmt, ap);
    va_end(ap);
    return -1;
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

static char *j_dup(const char *s, size_t n)
{
    char *p = j_malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static int j_copy(jcopy *c, const json_t *j, ls_json *v, int depth)
{
    if (++c->nvalues > LS_JSON_MAX_VALUES)
        return j_fail(c, "at byte 0: more than %zu values", LS_JSON_MAX_VALUES);
    switch (json_typeof(j)) {
    case JSON_NULL: v->kind = LS_JSON_NULL; return 0;
    case JSON_TRUE: v->kind = LS_JSON_BOOL; v->truth = true; return 0;
    case JSON_FALSE: v->kind = LS_JSON_BOOL; v->truth = false; return 0;
    case JSON_REAL: v->kind = LS_JSON_NUM; return 0;
    case JSON_INTEGER:
        v->kind = LS_JSON_NUM;
        v->i = (int64_t)json_integer_value(j);
        v->is_int = v->i >= 0;
        return 0;
    case JSON_STRING:
        v->kind = LS_JSON_STR;
        v->len = json_string_length(j);
        v->s = j_dup(json_string_value(j), v->len);
        return v->s ? 0 : j_fail(c, "at byte 0: out of memory");
    case JSON_ARRAY:
    case JSON_OBJECT: {
        bool obj = json_is_object(j);
        if (depth >= LS_JSON_MAX_DEPTH)
            return j_fail(c, "at byte 0: nesting deeper than %d levels", LS_JSON_MAX_DEPTH);
        v->kind = obj ? LS_JSON_OBJ : LS_JSON_ARR;
        size_t n = obj ? json_object_size(j) : json_array_size(j);
        if (n == 0) return 0;
        v->items = ls_malloc_array(n, sizeof *v->items, "JSON header");
        if (!v->items) {
            j_oom = true;
            return j_fail(c, "at byte 0: out of memory");
        }
        memset(v->items, 0, n * sizeof *v->items);
        v->n = n;
        if (!obj) {
            for (size_t k = 0; k < n; k++)
                if (j_copy(c, json_array_get(j, k), &v->items[k], depth + 1)) return -1;
            return 0;
        }
        size_t k = 0;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val) {
            ls_json *m = &v->items[k++];
            m->klen = strlen(key);   /* keys hold no NUL: JSON_ALLOW_NUL is not given */
            m->key = j_dup(key, m->klen);
            if (!m->key) return j_fail(c, "at byte 0: out of memory");
            if (j_copy(c, val, m, depth + 1)) return -1;
        }
        return 0;
    }
    }
    return j_fail(c, "at byte 0: unknown JSON value");
}

int ls_json_parse(const char *text, size_t n, ls_json *root, char *err, size_t errcap)
{
    memset(root, 0, sizeof *root);
    pthread_once(&j_hooks_once, j_set_hooks);
    j_oom = false;
    json_error_t je;
    json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j) {
        snprintf(err, errcap, "at byte %d: %s", je.position, je.text);
        return j_oom ? -2 : -1;
    }
    jcopy c = {0, err, errcap};
    int rc = j_copy(&c, j, root, 0);
    json_decref(j);
    if (rc) ls_json_free(root);
    return rc && j_oom ? -2 : rc;
}

/* The UTF-8 rule Jansson applies to documents (RFC 3629: no overlong forms, surrogates or code points
 * above U+10FFFF), checked in place: Jansson's own check (json_stringn) copies the string, so an
 * out-of-memory would read as "not valid UTF-8". */
bool ls_json_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], cp, min;
        size_t len;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}
