/* ls_json_parse over Jansson: json_loadb with the strict flags, then a copy into the ls_json tree
 * (see json.h), checking depth and size on the way. Jansson keeps an object's members in insertion
 * order, so the tree has them in document order. */
#include "data/json.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"   /* LS_PRINTF */

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
        free(v->items);
    }
    free(v->key);
    free(v->s);
    memset(v, 0, sizeof *v);
}

static char *j_dup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
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
        v->items = calloc(n, sizeof *v->items);
        if (!v->items) return j_fail(c, "at byte 0: out of memory");
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
    json_error_t je;
    json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!j) {
        snprintf(err, errcap, "at byte %d: %s", je.position, je.text);
        return -1;
    }
    jcopy c = {0, err, errcap};
    int rc = j_copy(&c, j, root, 0);
    json_decref(j);
    if (rc) ls_json_free(root);
    return rc;
}

bool ls_json_utf8_valid(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);   /* NULL when s is not valid UTF-8 */
    json_decref(j);
    return j != NULL;
}
