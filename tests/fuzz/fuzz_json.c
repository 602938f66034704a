/* libFuzzer target: the strict JSON parser behind the safetensors header. A document that parses
 * must be valid UTF-8; the tree is walked (every string's recorded length matches its bytes). */
#include <string.h>

#include "data/json.h"
#include "fuzz.h"

static void walk(const ls_json *v, int depth)
{
    if (depth > LS_JSON_MAX_DEPTH + 1) abort();
    if (v->key && memchr(v->key, '\0', v->klen) == NULL && strlen(v->key) != v->klen) abort();
    if (v->kind == LS_JSON_STR && memchr(v->s, '\0', v->len) == NULL && strlen(v->s) != v->len)
        abort();
    if (v->kind == LS_JSON_ARR || v->kind == LS_JSON_OBJ)
        for (size_t k = 0; k < v->n; k++) walk(&v->items[k], depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t live = ls_alloc_live_bytes();
    ls_json root;
    char err[200] = "";
    int rc = ls_json_parse((const char *)data, size, &root, err, sizeof err);
    if (rc == 0) {
        if (!ls_json_utf8_valid((const char *)data, size)) abort();
        walk(&root, 0);
        ls_json_free(&root);
    } else if (!err[0]) {
        abort();
    }
    fuzz_expect_no_leak(live);
    return 0;
}
