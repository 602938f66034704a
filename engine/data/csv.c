#include "data/csv.h"

#include <csv.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "data/atomic.h"

/* The parser state shared by the libcsv callbacks. Every field's bytes are appended, NUL-terminated,
 * to one growing arena and its offset to `cells`, so a table of n cells costs two allocations that
 * grow geometrically rather than n small ones. Offsets (not pointers) survive the arena's reallocs. */
typedef struct csv_state {
    const char *who, *name;
    char *arena;
    size_t alen, acap;
    size_t *cells;
    size_t ncells, ccap;
    long long nfields;       /* fields seen in the current record */
    long long ncols;         /* fields in the header, -1 until it is complete */
    long long line;          /* 1-based line being fed to libcsv */
    bool header_only, done;  /* stop after the header (append mode reads only that) */
    ls_status err;
} csv_state;

static void csv_oom(csv_state *s)
{
    s->err = ls_error_set(LS_ERR_MEM, "%s: %s: out of memory at line %lld", s->who, s->name,
                          s->line);
}

static void csv_on_field(void *field, size_t len, void *data)
{
    csv_state *s = data;
    if (s->err || s->done) return;
    /* a C string would end at the NUL: "0.5<NUL>999" must not read as 0.5 */
    const char *nul = len ? memchr(field, '\0', len) : NULL;
    if (nul) {
        s->err = ls_error_set(LS_ERR_IO, "%s: %s: line %lld: field %lld contains a NUL byte (at "
                              "byte %zu of the field)", s->who, s->name, s->line, s->nfields + 1,
                              (size_t)(nul - (const char *)field) + 1);
        return;
    }
    if (s->alen + len + 1 > s->acap) {
        size_t cap = s->acap ? s->acap : 4096;
        while (cap < s->alen + len + 1) cap *= 2;
        char *a = ls_realloc(s->arena, cap, "csv");
        if (!a) return csv_oom(s);
        s->arena = a, s->acap = cap;
    }
    if (s->ncells == s->ccap) {
        size_t cap = s->ccap ? 2 * s->ccap : 256;
        size_t *c = ls_realloc(s->cells, cap * sizeof *c, "csv");
        if (!c) return csv_oom(s);
        s->cells = c, s->ccap = cap;
    }
    if (len) memcpy(s->arena + s->alen, field, len);
    s->arena[s->alen + len] = '\0';
    s->cells[s->ncells++] = s->alen;
    s->alen += len + 1;
    s->nfields++;
}

static void csv_on_record(int c, void *data)
{
    (void)c;
    csv_state *s = data;
    if (s->err || s->done) return;
    if (s->ncols < 0) {
        s->ncols = s->nfields;
        if (s->ncols > INT_MAX / 4) {
            s->err = ls_error_set(LS_ERR_IO, "%s: %s: line %lld: %lld columns is too many", s->who,
                                  s->name, s->line, s->ncols);
            return;
        }
        if (s->header_only) s->done = true;
    } else if (s->nfields != s->ncols) {
        s->err = ls_error_set(LS_ERR_IO, "%s: %s: line %lld: %lld field%s, but the header has %lld",
                              s->who, s->name, s->line, s->nfields, s->nfields == 1 ? "" : "s",
                              s->ncols);
        return;
    }
    s->nfields = 0;
}

static void *csv_realloc(void *p, size_t n) { return ls_realloc(p, n, "csv"); }

/* Run libcsv over buf. It is fed one line at a time so that the callbacks, which fire inside the
 * chunk being fed, know the line number for their messages.
 *
 * libcsv grows its field buffer by a fixed block (128 bytes unless told otherwise), so one long field
 * would cost a quadratic number of bytes copied. Before each line the block is set to the bytes fed so
 * far: a field is never longer than that, so each growth at least doubles the buffer (amortised
 * linear), and the buffer never exceeds twice the input. Its memory comes from the engine allocator. */
static ls_status csv_run(csv_state *s, const char *buf, size_t n)
{
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        return ls_error_set(LS_ERR_MEM, "%s: %s: cannot initialise libcsv", s->who, s->name);
    csv_set_realloc_func(&p, csv_realloc);
    csv_set_free_func(&p, ls_free);
    s->ncols = -1;
    s->line = 1;
    if (n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) buf += 3, n -= 3;
    size_t pos = 0;
    while (pos < n && !s->err && !s->done) {
        const char *nl = memchr(buf + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (buf + pos)) + 1 : n - pos;
        csv_set_blk_size(&p, pos + len > 128 ? pos + len : 128);
        if (csv_parse(&p, buf + pos, len, csv_on_field, csv_on_record, s) != len && !s->err) {
            if (csv_error(&p) == CSV_ENOMEM || csv_error(&p) == CSV_ETOOBIG)
                csv_oom(s);
            else
                s->err = ls_error_set(LS_ERR_IO, "%s: %s: line %lld: malformed quoting (%s)",
                                      s->who, s->name, s->line, csv_strerror(csv_error(&p)));
        }
        pos += len;
        if (nl) s->line++;
    }
    if (!s->err && !s->done && csv_fini(&p, csv_on_field, csv_on_record, s) != 0 && !s->err)
        s->err = ls_error_set(LS_ERR_IO, "%s: %s: line %lld: unterminated quoted field at the end "
                              "of the file", s->who, s->name, s->line);
    csv_free(&p);
    return s->err;
}

int ls_csv_parse_number(const char *s, double *out)
{
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return 0;
    /* strtod also takes hex floats and "nan(...)"; a CSV number is decimal, so refuse those. */
    for (const char *q = s; *q; q++)
        if (*q == 'x' || *q == 'X' || *q == '(') return 0;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s) return 0;
    while (*end == ' ' || *end == '\t') end++;
    if (*end) return 0;
    *out = v;
    return 1;
}

void ls_csv_table_free(ls_csv_table *t)
{
    if (!t) return;
    for (int c = 0; c < t->ncols; c++) {
        ls_free(t->cols[c].num);
        ls_free(t->cols[c].str);
    }
    ls_free(t->cols);
    ls_free(t->arena);
    ls_free(t);
}

int ls_csv_find(const ls_csv_table *t, const char *name)
{
    for (int c = 0; c < t->ncols; c++)
        if (strcmp(t->cols[c].name, name) == 0) return c;
    return -1;
}

ls_csv_table *ls_csv_parse(const char *buf, size_t n, const char *name)
{
    csv_state s = {.who = "csv_read", .name = name};
    if (csv_run(&s, buf, n) != LS_OK) goto fail;
    if (s.ncols <= 0) {
        ls_error_set(LS_ERR_IO, "csv_read: %s: no header row (the file is empty)", name);
        goto fail;
    }
    ls_csv_table *t = ls_calloc(sizeof *t, "csv");
    if (!t || !(t->cols = ls_calloc((size_t)s.ncols * sizeof *t->cols, "csv"))) {
        ls_free(t);
        ls_error_set(LS_ERR_MEM, "csv_read: %s: out of memory", name);
        goto fail;
    }
    int ncols = (int)s.ncols;
    int64_t nrows = (int64_t)(s.ncells / (size_t)ncols) - 1;
    t->ncols = ncols;
    t->nrows = nrows;
    t->arena = s.arena;
    s.arena = NULL;
    for (int c = 0; c < ncols; c++) {
        ls_csv_column *col = &t->cols[c];
        col->name = t->arena + s.cells[c];
        for (int d = 0; d < c; d++)
            if (strcmp(t->cols[d].name, col->name) == 0) {
                ls_error_set(LS_ERR_IO, "csv_read: %s: line 1: duplicate column name '%s'", name,
                             col->name);
                ls_csv_table_free(t);
                goto fail;
            }
        /* Numeric unless some non-empty cell fails to parse. */
        col->kind = LS_CSV_NUMBER;
        col->num = ls_malloc((size_t)(nrows ? nrows : 1) * sizeof *col->num, "csv");
        if (!col->num) goto oom;
        for (int64_t r = 0; r < nrows; r++) {
            const char *cell = t->arena + s.cells[(size_t)(r + 1) * (size_t)ncols + (size_t)c];
            double v;
            if (ls_csv_parse_number(cell, &v)) {
                col->num[r] = v;
            } else if (cell[strspn(cell, " \t")] == '\0') {
                col->num[r] = NAN;
            } else {
                col->kind = LS_CSV_STRING;
                break;
            }
        }
        if (col->kind == LS_CSV_STRING) {
            ls_free(col->num);
            col->num = NULL;
            col->str = ls_malloc((size_t)(nrows ? nrows : 1) * sizeof *col->str, "csv");
            if (!col->str) goto oom;
            for (int64_t r = 0; r < nrows; r++)
                col->str[r] = t->arena + s.cells[(size_t)(r + 1) * (size_t)ncols + (size_t)c];
        }
        continue;
    oom:
        ls_csv_table_free(t);
        ls_error_set(LS_ERR_MEM, "csv_read: %s: out of memory", name);
        goto fail;
    }
    ls_free(s.cells);
    return t;
fail:
    ls_free(s.arena);
    ls_free(s.cells);
    return NULL;
}

/* Slurp a whole file; NULL with the error set (naming `who`) on failure. */
static char *csv_slurp(const char *who, const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ls_error_set(LS_ERR_IO, "%s: %s: %s", who, path, strerror(errno)), NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        fclose(f);
        return ls_error_set(LS_ERR_IO, "%s: %s: is a directory", who, path), NULL;
    }
    if (!S_ISREG(st.st_mode)) {   /* /dev/zero would be read until memory runs out */
        fclose(f);
        return ls_error_set(LS_ERR_IO, "%s: %s: not a regular file", who, path), NULL;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, len = 0;
    char *buf = ls_malloc(cap, "csv");
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *b = ls_realloc(buf, cap * 2, "csv");
        if (!b) ls_free(buf);
        buf = b, cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return ls_error_set(LS_ERR_MEM, "%s: %s: out of memory", who, path), NULL;
    if (bad) {
        ls_free(buf);
        return ls_error_set(LS_ERR_IO, "%s: %s: read error", who, path), NULL;
    }
    *n = len;
    return buf;
}

ls_csv_table *ls_csv_read(const char *path)
{
    size_t n;
    char *buf = csv_slurp("csv_read", path, &n);
    if (!buf) return NULL;
    ls_csv_table *t = ls_csv_parse(buf, n, path);
    ls_free(buf);
    return t;
}

/* ---- writing ---- */

static bool csv_needs_quotes(const char *s, int ncols)
{
    size_t len = strlen(s);
    if (len == 0) return ncols == 1;   /* a lone empty field would be a blank line, which is skipped */
    if (strpbrk(s, ",\"\r\n")) return true;
    return s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t';
}

/* first: the field opens the file, where a UTF-8 byte-order mark would be taken for the file's
 * own and skipped by the reader: such a field is quoted. */
static int csv_put_field(FILE *f, const char *s, int ncols, bool first)
{
    if (!s) s = "";
    if (csv_needs_quotes(s, ncols) || (first && strncmp(s, "\xEF\xBB\xBF", 3) == 0))
        return csv_fwrite(f, s, strlen(s));
    return fputs(s, f) < 0 ? -1 : 0;
}

/* The header of an existing, non-empty file as a parsed state (names at arena + cells[i]); sets
 * *ends_nl to whether the file's last byte is a newline. Only the first CSV_HEADER_MAX bytes are read,
 * so appending to a long table costs the same as appending to a short one. Returns LS_OK with
 * s->ncols = -1 when the file holds no record at all. */
#define CSV_HEADER_MAX ((size_t)1 << 20)
static ls_status csv_existing_header(const char *path, csv_state *s, bool *ends_nl)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ls_error_set(LS_ERR_IO, "csv_write: %s: %s", path, strerror(errno));
    char *buf = ls_malloc(CSV_HEADER_MAX, "csv");
    if (!buf) {
        fclose(f);
        return ls_error_set(LS_ERR_MEM, "csv_write: %s: out of memory", path);
    }
    size_t n = fread(buf, 1, CSV_HEADER_MAX, f);
    int last = EOF;
    if (fseek(f, -1, SEEK_END) == 0) last = fgetc(f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        ls_free(buf);
        return ls_error_set(LS_ERR_IO, "csv_write: %s: read error", path);
    }
    s->who = "csv_write";
    s->name = path;
    s->header_only = true;
    ls_status st = csv_run(s, buf, n);
    ls_free(buf);
    *ends_nl = last == EOF || last == '\n';
    if (st == LS_OK && !s->done && n == CSV_HEADER_MAX)
        st = ls_error_set(LS_ERR_IO, "csv_write: %s: header row longer than %zu bytes", path,
                          CSV_HEADER_MAX);
    return st;
}

/* Copy the whole of the file at path into f: 0, 1 when writing failed (the stream's error flag is
 * set), -1 (error set) when reading failed. */
static int csv_copy_into(const char *path, FILE *f)
{
    FILE *in = fopen(path, "rb");
    if (!in) return ls_error_set(LS_ERR_IO, "csv_write: %s: %s", path, strerror(errno)), -1;
    char buf[1 << 16];
    size_t k;
    int bad = 0;
    while (!bad && (k = fread(buf, 1, sizeof buf, in)) > 0) bad = fwrite(buf, 1, k, f) != k;
    int rerr = ferror(in);
    fclose(in);
    if (rerr) return ls_error_set(LS_ERR_IO, "csv_write: %s: read error", path), -1;
    return bad;
}

/* Match the caller's names against the file's header; fill order[i] = caller index of the file's
 * column i. On a mismatch, name what is missing and what is extra. */
static ls_status csv_match_header(const char *path, const csv_state *h, int ncols,
                                  const char *const *names, int *order)
{
    char missing[400] = "", extra[400] = "";
    bool ok = h->ncols == ncols;
    for (long long i = 0; i < h->ncols; i++) {
        const char *fname = h->arena + h->cells[i];
        int found = -1;
        for (int c = 0; c < ncols && found < 0; c++)
            if (strcmp(fname, names[c]) == 0) found = c;
        if (i < ncols) order[i] = found;
        if (found < 0) {
            ok = false;
            size_t l = strlen(missing);
            snprintf(missing + l, sizeof missing - l, "%s'%s'", l ? ", " : "", fname);
        }
    }
    for (int c = 0; c < ncols; c++) {
        bool found = false;
        for (long long i = 0; i < h->ncols && !found; i++)
            found = strcmp(h->arena + h->cells[i], names[c]) == 0;
        if (!found) {
            ok = false;
            size_t l = strlen(extra);
            snprintf(extra + l, sizeof extra - l, "%s'%s'", l ? ", " : "", names[c]);
        }
    }
    if (ok) return LS_OK;
    return ls_error_set(LS_ERR_ARG, "csv_write: %s: cannot append: columns differ from the file's "
                        "header (%lld columns)%s%s%s%s", path, h->ncols,
                        *missing ? "; the rows lack " : "", missing,
                        *extra ? "; the file lacks " : "", extra);
}

ls_status ls_csv_write(const char *path, int ncols, const char *const *names, int64_t nrows,
                       const char *const *cells, bool append)
{
    if (ncols < 1) return ls_error_set(LS_ERR_ARG, "csv_write: %s: no columns", path);
    for (int c = 0; c < ncols; c++) {
        if (!names[c]) return ls_error_set(LS_ERR_ARG, "csv_write: %s: column %d has no name", path, c);
        for (int d = 0; d < c; d++)
            if (strcmp(names[c], names[d]) == 0)
                return ls_error_set(LS_ERR_ARG, "csv_write: %s: duplicate column '%s'", path,
                                    names[c]);
    }
    int *order = ls_malloc((size_t)ncols * sizeof *order, "csv");
    if (!order) return ls_error_set(LS_ERR_MEM, "csv_write: %s: out of memory", path);
    for (int c = 0; c < ncols; c++) order[c] = c;

    bool header = true, ends_nl = true;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        ls_free(order);
        return ls_error_set(LS_ERR_IO, "csv_write: %s: is a directory", path);
    }
    if (append && stat(path, &st) == 0 && st.st_size > 0) {
        csv_state h = {0};
        ls_status rc = csv_existing_header(path, &h, &ends_nl);
        if (rc == LS_OK && h.ncols >= 0) {
            header = false;
            rc = csv_match_header(path, &h, ncols, names, order);
        }
        ls_free(h.arena);
        ls_free(h.cells);
        if (rc != LS_OK) {
            ls_free(order);
            return rc;
        }
    }

    /* Both a fresh table and an append are written whole to a file beside the target and renamed
     * into place (data/atomic.h): an append copies the existing rows first, so a failure at any point
     * leaves the file exactly as it was. */
    ls_atomic_file af;
    if (ls_atomic_file_open(&af, "csv_write", path) != LS_OK) {
        ls_free(order);
        return LS_ERR_IO;
    }
    FILE *f = af.f;
    int bad = 0;
    if (!header) bad = csv_copy_into(path, f);
    if (bad < 0) {   /* the existing file could not be read: not a write failure */
        ls_free(order);
        ls_atomic_file_abort(&af);
        return LS_ERR_IO;
    }
    if (!ends_nl) bad |= fputc('\n', f) == EOF;
    for (int c = 0; header && c < ncols; c++) {
        if (c) bad |= fputc(',', f) == EOF;
        bad |= csv_put_field(f, names[order[c]], ncols, c == 0) != 0;
    }
    if (header) bad |= fputc('\n', f) == EOF;
    for (int64_t r = 0; r < nrows && !bad; r++) {
        for (int c = 0; c < ncols; c++) {
            if (c) bad |= fputc(',', f) == EOF;
            bad |= csv_put_field(f, cells[r * ncols + order[c]], ncols, false) != 0;
        }
        bad |= fputc('\n', f) == EOF;
    }
    ls_free(order);
    return ls_atomic_file_commit(&af, "csv_write");   /* a failed write above is reported here */
}
