/* The safetensors header's JSON, parsed by Jansson (Debian's libjansson) and handed over as a small
 * tree the reader walks (json.c adapts one to the other; docs/io.md says why Jansson).
 *
 * Strict: the input must be valid UTF-8 (Jansson checks it); no trailing commas, comments, NaN or
 * single quotes; an object may not repeat a key (JSON_REJECT_DUPLICATES); only whitespace may
 * surround the one top-level value; a string may not hold \u0000. Nesting depth and the number of
 * values are bounded here, so a hostile header costs little memory.
 *
 * Integers are exact: Jansson parses them as int64 (a literal beyond int64 is an error, not a
 * rounded double); non-negative ones are marked is_int (shapes, byte offsets). Other numbers are
 * kept for their kind only. Strings and keys are NUL-terminated copies that carry their length. */
#ifndef LS_JSON_H
#define LS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LS_JSON_MAX_DEPTH 16
#define LS_JSON_MAX_VALUES ((size_t)1 << 22)

typedef enum ls_json_kind {
    LS_JSON_NULL, LS_JSON_BOOL, LS_JSON_NUM, LS_JSON_STR, LS_JSON_ARR, LS_JSON_OBJ
} ls_json_kind;

typedef struct ls_json {
    ls_json_kind kind;
    bool is_int;             /* LS_JSON_NUM: a non-negative integer (exact, int64) */
    bool truth;              /* LS_JSON_BOOL */
    char *key;               /* the member name when the value sits in an object */
    size_t klen;
    int64_t i;               /* LS_JSON_NUM with is_int */
    char *s;                 /* LS_JSON_STR */
    size_t len;
    struct ls_json *items;   /* LS_JSON_ARR, LS_JSON_OBJ: n members in document order */
    size_t n;
} ls_json;

/* Parse text[0..n) into *root. Returns 0, or -1 with `err` holding "at byte N: what is wrong" (and
 * *root emptied), or -2 when an allocation failed (the engine allocator's error is set). Free a parsed tree with ls_json_free. */
int ls_json_parse(const char *text, size_t n, ls_json *root, char *err, size_t errcap);
/* Free the tree below v (v itself is the caller's) and zero it. */
void ls_json_free(ls_json *v);
/* Whether s[0..n) is valid UTF-8 (Jansson's rule: no overlong forms, surrogates or code points
 * above U+10FFFF). */
bool ls_json_utf8_valid(const char *s, size_t n);

#endif
