/* A small strict JSON parser (RFC 8259) into a tree, written for the safetensors header.
 *
 * Strict means: the input must be valid UTF-8; no trailing commas, comments, leading zeros, NaN or
 * single quotes; control characters in strings must be escaped; surrogate escapes must pair up; an
 * object may not repeat a key; only whitespace may surround the one top-level value. Nesting depth
 * and the number of values are bounded so a hostile input costs little stack and memory.
 *
 * Integers are kept exactly when they are non-negative and fit in int64 (shapes, byte offsets);
 * other numbers are checked for syntax only. Strings are decoded (escapes, surrogate pairs) into
 * NUL-terminated buffers that also carry their length, so an escaped \u0000 stays detectable. */
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
    bool is_int;             /* LS_JSON_NUM: a non-negative integer that fits in int64 */
    bool truth;              /* LS_JSON_BOOL */
    size_t pos;              /* byte offset of the value (of its key, in an object), for messages */
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
/* Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code points above
 * U+10FFFF are invalid), or n if s[0..n) is valid. */
size_t ls_json_utf8_check(const unsigned char *s, size_t n);

#endif
