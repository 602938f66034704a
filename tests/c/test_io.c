/* File readers and writers: IDX, CSV, safetensors. Round trips for every dtype, then every kind of
 * damage we can think of (truncation at each byte, bad magic, malformed JSON headers, inconsistent
 * offsets, ragged CSV rows), each of which must be a clear error and never a crash or a leak. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "files.h"
#include "core/alloc.h"
#include "data/csv.h"
#include "data/idx.h"
#include "data/json.h"
#include "data/safetensors.h"
#include "tensor/tensor.h"

/* A tensor of the given dtype and shape holding values derived from the element index (with sign
 * changes and fractions where the dtype allows them). */
static ls_tensor *make_tensor(ls_dtype dt, int ndim, const int64_t *shape)
{
    ls_tensor *t = ls_tensor_new(dt, ndim, shape);
    int64_t n = ls_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        void *p = ls_tensor_data(t);
        switch (dt) {
        case LS_U8: ((uint8_t *)p)[i] = (uint8_t)(i * 37 + 3); break;
        case LS_I64: ((int64_t *)p)[i] = (i % 2 ? -1 : 1) * (i * 1000003 + 7); break;
        case LS_F32: ((float *)p)[i] = (float)(i % 3 ? -1 : 1) * (float)i / 7.0f; break;
        case LS_F64: ((double *)p)[i] = (i % 3 ? -1 : 1) * (double)i / 7.0 + 1e-300; break;
        }
    }
    return t;
}

static bool same_tensor(const ls_tensor *a, const ls_tensor *b)
{
    if (!a || !b || a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    int64_t n = ls_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) {
        double x = ls_tensor_get_flat(a, i), y = ls_tensor_get_flat(b, i);
        if (memcmp(&x, &y, sizeof x) != 0) return false;
    }
    return true;
}

/* ================================ IDX ================================ */

static void test_idx_roundtrip(void)
{
    const ls_dtype dts[] = {LS_U8, LS_I64, LS_F32, LS_F64};
    const int64_t shapes[][3] = {{5, 0, 0}, {2, 3, 4}, {0, 5, 0}};
    const int ndims[] = {1, 3, 2};
    for (int d = 0; d < 4; d++)
        for (int s = 0; s < 3; s++)
            for (int gz = 0; gz < 2; gz++) {
                ls_tensor *t = make_tensor(dts[d], ndims[s], shapes[s]);
                if (dts[d] == LS_I64) {   /* IDX ints are 32-bit */
                    int64_t *p = ls_tensor_data(t);
                    for (int64_t i = 0; i < ls_tensor_numel(t); i++) p[i] = (p[i] % 2000000000);
                }
                const char *path = tmp_path(gz ? "rt.idx.gz" : "rt.idx");
                CHECK(ls_idx_write(path, t) == LS_OK);
                ls_tensor *r = ls_idx_read(path);
                CHECK(same_tensor(t, r));
                ls_tensor_release(r);
                ls_tensor_release(t);
            }
    /* A non-contiguous view is written in logical order. */
    int64_t shape[2] = {3, 4};
    ls_tensor *t = make_tensor(LS_F32, 2, shape);
    ls_tensor *tt = ls_view_transpose(t, 0, 1);
    CHECK(ls_idx_write(tmp_path("tr.idx"), tt) == LS_OK);
    ls_tensor *r = ls_idx_read(tmp_path("tr.idx"));
    CHECK(same_tensor(tt, r));
    ls_tensor_release(r);
    ls_tensor_release(tt);
    ls_tensor_release(t);
    /* i64 values outside int32 are refused before the file is created. */
    int64_t one = 1;
    ls_tensor *big = ls_tensor_full(LS_I64, 1, &one, 3e9);
    remove(tmp_path("big.idx"));
    CHECK(ls_idx_write(tmp_path("big.idx"), big) == LS_ERR_ARG && msg_has("does not fit"));
    CHECK(access(tmp_path("big.idx"), F_OK) != 0);
    ls_tensor_release(big);
}

/* The narrow integer types, byte by byte: big-endian, sign-extended to i64. */
static void test_idx_types(void)
{
    const unsigned char i8[] = {0, 0, 0x09, 1, 0, 0, 0, 3, 0x7F, 0x80, 0xFF};
    ls_tensor *t = ls_idx_parse(i8, sizeof i8, "i8");
    CHECK(t && t->dtype == LS_I64 && t->shape[0] == 3);
    if (t) {
        CHECK(ls_tensor_get_flat(t, 0) == 127 && ls_tensor_get_flat(t, 1) == -128);
        CHECK(ls_tensor_get_flat(t, 2) == -1);
    }
    ls_tensor_release(t);
    const unsigned char i16[] = {0, 0, 0x0B, 1, 0, 0, 0, 2, 0x12, 0x34, 0xFF, 0xFE};
    t = ls_idx_parse(i16, sizeof i16, "i16");
    CHECK(t && ls_tensor_get_flat(t, 0) == 0x1234 && ls_tensor_get_flat(t, 1) == -2);
    ls_tensor_release(t);
    const unsigned char i32[] = {0, 0, 0x0C, 2, 0, 0, 0, 1, 0, 0, 0, 2,
                                 0x80, 0, 0, 0, 0x01, 0x02, 0x03, 0x04};
    t = ls_idx_parse(i32, sizeof i32, "i32");
    CHECK(t && t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == 2);
    if (t) CHECK(ls_tensor_get_flat(t, 0) == INT32_MIN && ls_tensor_get_flat(t, 1) == 0x01020304);
    ls_tensor_release(t);
    const unsigned char f32[] = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0xC0, 0, 0};   /* 1.5 */
    t = ls_idx_parse(f32, sizeof f32, "f32");
    CHECK(t && t->dtype == LS_F32 && ls_tensor_get_flat(t, 0) == 1.5);
    ls_tensor_release(t);
    const unsigned char f64[] = {0, 0, 0x0E, 1, 0, 0, 0, 1, 0xC0, 0x04, 0, 0, 0, 0, 0, 0}; /* -2.5 */
    t = ls_idx_parse(f64, sizeof f64, "f64");
    CHECK(t && t->dtype == LS_F64 && ls_tensor_get_flat(t, 0) == -2.5);
    ls_tensor_release(t);
}

static void test_idx_errors(void)
{
    CHECK(ls_idx_read(tmp_path("missing.idx")) == NULL && ls_error_code() == LS_ERR_IO &&
          msg_has("read_idx: ") && msg_has("missing.idx: No such file"));
    CHECK(ls_idx_read(tmpdir) == NULL && msg_has("is a directory"));
    struct { const char *what; unsigned char bytes[24]; size_t n; const char *expect; } cases[] = {
        {"bad magic", {1, 0, 8, 1, 0, 0, 0, 1, 7}, 9, "bad magic 0x01000801"},
        {"bad type", {0, 0, 0x0A, 1, 0, 0, 0, 1, 7}, 9, "bad magic"},
        {"text", "hello world, not idx", 20, "bad magic"},
        {"0 dims", {0, 0, 8, 0, 7}, 5, "0 dimensions"},
        {"9 dims", {0, 0, 8, 9}, 4, "9 dimensions"},
        {"huge", {0, 0, 0x0E, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                  0xFF}, 16, "too large"},
        {"short data", {0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 3, 1, 2}, 14,
         "expected 9 bytes of data, got 2"},
        {"trailing", {0, 0, 8, 1, 0, 0, 0, 1, 5, 6}, 10, "trailing bytes after the 1 bytes"},
        {"empty", {0}, 0, "truncated: expected 4 bytes for the 4-byte IDX magic, got 0"},
        /* a zero dim does not unbound the others (strides would overflow int64) */
        {"zero dim", {0, 0, 8, 3, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, 16,
         "dims: shape [0x4294967295x4294967295] is too large"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ls_error_clear();
        ls_tensor *t = ls_idx_parse(cases[k].bytes, cases[k].n, cases[k].what);
        CHECK(t == NULL && ls_error_code() == LS_ERR_IO);
        CHECK(msg_has(cases[k].expect));
        if (!msg_has(cases[k].expect)) fprintf(stderr, "  (case %s)\n", cases[k].what);
        ls_tensor_release(t);
        /* The same bytes from a file. */
        write_bytes(tmp_path("bad.idx"), cases[k].bytes, cases[k].n);
        t = ls_idx_read(tmp_path("bad.idx"));
        CHECK(t == NULL && ls_error_code() == LS_ERR_IO && msg_has("bad.idx"));
        ls_tensor_release(t);
    }
    /* Trailing bytes in the file form (the memory form reports the size mismatch the same way). */
    const unsigned char trail[] = {0, 0, 8, 1, 0, 0, 0, 1, 5, 6};
    write_bytes(tmp_path("trail.idx"), trail, sizeof trail);
    CHECK(ls_idx_read(tmp_path("trail.idx")) == NULL);
    /* A gzip file whose dims declare far more than it could inflate to is refused up front. */
    gzFile gz = gzopen(tmp_path("liar.idx.gz"), "wb");
    const unsigned char liar[] = {0, 0, 8, 2, 0, 1, 0, 0, 0, 1, 0, 0};   /* 2^32 bytes declared */
    gzwrite(gz, liar, sizeof liar);
    gzclose(gz);
    CHECK(ls_idx_read(tmp_path("liar.idx.gz")) == NULL && msg_has("more than this compressed"));
    /* Damaged gzip files are named as such, with zlib's reason, not as short IDX files. */
    int64_t shape[2] = {3, 4};
    ls_tensor *t = make_tensor(LS_U8, 2, shape);
    CHECK(ls_idx_write(tmp_path("ok.idx.gz"), t) == LS_OK);
    ls_tensor_release(t);
    size_t n;
    unsigned char *g = read_bytes(tmp_path("ok.idx.gz"), &n);
    g[n - 8] ^= 0xFF;   /* the CRC-32 of the trailer */
    write_bytes(tmp_path("crc.idx.gz"), g, n);
    CHECK(ls_idx_read(tmp_path("crc.idx.gz")) == NULL &&
          msg_has("crc.idx.gz: corrupt gzip data (zlib: incorrect data check)"));
    g[n - 8] ^= 0xFF;
    write_bytes(tmp_path("half.idx.gz"), g, n - 12);
    CHECK(ls_idx_read(tmp_path("half.idx.gz")) == NULL &&
          msg_has("half.idx.gz: truncated gzip file (zlib: unexpected end of file)"));
    const unsigned char junk[] = {0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF};
    write_bytes(tmp_path("junk.idx.gz"), junk, sizeof junk);
    CHECK(ls_idx_read(tmp_path("junk.idx.gz")) == NULL &&
          msg_has("junk.idx.gz: corrupt gzip data (zlib: ") &&
          !strstr(ls_error_message(), "magic"));
    free(g);
}

/* Cut a small file (raw and gzip) at every byte: each prefix must fail cleanly. */
static void test_idx_truncation(void)
{
    int64_t shape[2] = {3, 5};
    ls_tensor *t = make_tensor(LS_F32, 2, shape);
    const char *raw = tmp_path("tr.idx"), *gzp = tmp_path("tr.idx.gz");
    CHECK(ls_idx_write(raw, t) == LS_OK && ls_idx_write(gzp, t) == LS_OK);
    for (int pass = 0; pass < 2; pass++) {
        size_t n;
        unsigned char *bytes = read_bytes(pass ? gzp : raw, &n);
        CHECK(n == (pass ? n : 4 + 8 + 60));
        int failures = 0;
        for (size_t cut = 0; cut < n; cut++) {
            write_bytes(tmp_path("cut.idx"), bytes, cut);
            ls_tensor *r = ls_idx_read(tmp_path("cut.idx"));
            if (r || ls_error_code() != LS_ERR_IO) failures++;
            ls_tensor_release(r);
            if (!pass) {
                r = ls_idx_parse(bytes, cut, "cut");
                if (r) failures++;
                ls_tensor_release(r);
            }
        }
        CHECK(failures == 0);
        free(bytes);
    }
    ls_tensor_release(t);
}

/* ================================ CSV ================================ */

static void test_csv_roundtrip(void)
{
    const char *names[] = {"name", "x", "note"};
    const char *cells[] = {
        "plain",  "1.5",  "comma, inside",
        "q\"uote", "-2",   "line\nbreak",
        " lead",   "",     "trail ",
        "",        "1e-3", "\"\"",
        "last",    "nan",  "x,\"y\"\r\nz",
    };
    const char *path = tmp_path("rt.csv");
    CHECK(ls_csv_write(path, 3, names, 5, cells, false) == LS_OK);
    ls_csv_table *t = ls_csv_read(path);
    CHECK(t && t->ncols == 3 && t->nrows == 5);
    if (t) {
        CHECK(strcmp(t->cols[0].name, "name") == 0 && t->cols[0].kind == LS_CSV_STRING);
        CHECK(t->cols[1].kind == LS_CSV_NUMBER && t->cols[2].kind == LS_CSV_STRING);
        for (int r = 0; r < 5; r++) {
            CHECK(strcmp(t->cols[0].str[r], cells[3 * r]) == 0);
            CHECK(strcmp(t->cols[2].str[r], cells[3 * r + 2]) == 0);
        }
        CHECK(t->cols[1].num[0] == 1.5 && t->cols[1].num[1] == -2 && isnan(t->cols[1].num[2]));
        CHECK(t->cols[1].num[3] == 1e-3 && isnan(t->cols[1].num[4]));
        CHECK(ls_csv_find(t, "note") == 2 && ls_csv_find(t, "nope") == -1);
    }
    ls_csv_table_free(t);
    /* Plain fields are not quoted; fields that need it are. */
    size_t n;
    char *text = (char *)read_bytes(path, &n);
    text[n] = '\0';
    const char *head = "name,x,note\nplain,1.5,\"comma, inside\"\n\"q\"\"uote\",-2,";
    CHECK(strncmp(text, head, strlen(head)) == 0);
    free(text);
    /* One column with empty cells survives (a bare empty line would be skipped). */
    const char *one[] = {"v"}, *vals[] = {"", "a", ""};
    CHECK(ls_csv_write(path, 1, one, 3, vals, false) == LS_OK);
    t = ls_csv_read(path);
    CHECK(t && t->nrows == 3 && t->cols[0].kind == LS_CSV_STRING && t->cols[0].str[2][0] == '\0');
    ls_csv_table_free(t);
    /* Header only: zero rows, columns numeric. */
    CHECK(ls_csv_write(path, 3, names, 0, NULL, false) == LS_OK);
    t = ls_csv_read(path);
    CHECK(t && t->nrows == 0 && t->ncols == 3 && t->cols[0].kind == LS_CSV_NUMBER);
    ls_csv_table_free(t);
}

static void test_csv_append(void)
{
    const char *path = tmp_path("ap.csv");
    remove(path);
    const char *names[] = {"a", "b"}, *swapped[] = {"b", "a"}, *other[] = {"a", "c"};
    const char *r1[] = {"1", "x"}, *r2[] = {"y", "2"};
    CHECK(ls_csv_write(path, 2, names, 1, r1, true) == LS_OK);      /* creates, with header */
    CHECK(ls_csv_write(path, 2, swapped, 1, r2, true) == LS_OK);    /* same set, other order */
    CHECK(ls_csv_write(path, 2, other, 1, r1, true) == LS_ERR_ARG);
    CHECK(msg_has("cannot append") && msg_has("the rows lack 'b'") && msg_has("the file lacks 'c'"));
    const char *three[] = {"a", "b", "c"}, *r3[] = {"1", "2", "3"};
    CHECK(ls_csv_write(path, 3, three, 1, r3, true) == LS_ERR_ARG && msg_has("'c'"));
    size_t n;
    char *text = (char *)read_bytes(path, &n);
    text[n] = '\0';
    CHECK(strcmp(text, "a,b\n1,x\n2,y\n") == 0);
    free(text);
    /* A file without a final newline gets one before the appended rows. */
    write_bytes(path, "a,b\n1,x", 7);
    CHECK(ls_csv_write(path, 2, names, 1, r1, true) == LS_OK);
    text = (char *)read_bytes(path, &n);
    text[n] = '\0';
    CHECK(strcmp(text, "a,b\n1,x\n1,x\n") == 0);
    free(text);
    /* An empty existing file counts as new. */
    write_bytes(path, "", 0);
    CHECK(ls_csv_write(path, 2, names, 1, r1, true) == LS_OK);
    ls_csv_table *t = ls_csv_read(path);
    CHECK(t && t->nrows == 1 && t->cols[0].num[0] == 1);
    ls_csv_table_free(t);
    CHECK(ls_csv_write(path, 2, (const char *[]){"a", "a"}, 0, NULL, false) == LS_ERR_ARG &&
          msg_has("duplicate column 'a'"));
    CHECK(ls_csv_write(tmp_path("no/such/dir.csv"), 2, names, 0, NULL, false) == LS_ERR_IO &&
          msg_has("No such file"));
}

static void test_csv_errors(void)
{
    struct { const char *text, *expect; } cases[] = {
        {"", "no header"},
        {"a,b\n1,2\n3\n", "line 3: 1 field, but the header has 2"},
        {"a,b\n1,2,3\n", "line 2: 3 fields"},
        {"a,b\n\"x\"y,2\n", "line 2: malformed quoting"},
        {"a,b\n1,\"open\n2,3\n", "unterminated quoted field"},
        {"a,a\n1,2\n", "duplicate column name 'a'"},
        {"a,b\n\"multi\nline\",2\n3,4,5\n", "line 4: 3 fields"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ls_csv_table *t = ls_csv_parse(cases[k].text, strlen(cases[k].text), "bad.csv");
        CHECK(t == NULL && ls_error_code() != LS_OK && msg_has("csv_read: bad.csv: "));
        CHECK(msg_has(cases[k].expect));
        if (!msg_has(cases[k].expect)) fprintf(stderr, "  (case %zu)\n", k);
        ls_csv_table_free(t);
    }
    CHECK(ls_csv_read(tmp_path("nope.csv")) == NULL && msg_has("nope.csv: No such file"));
    /* A BOM, CRLF line ends, blank lines and blanks around numbers are all fine. */
    const char *ok = "\xEF\xBB\xBFk,v\r\n\r\n a ,\t2 \r\nb,-inf\r\n";
    ls_csv_table *t = ls_csv_parse(ok, strlen(ok), "ok.csv");
    CHECK(t && t->nrows == 2 && strcmp(t->cols[0].name, "k") == 0);
    if (t) CHECK(t->cols[1].kind == LS_CSV_NUMBER && t->cols[1].num[0] == 2 &&
                 isinf(t->cols[1].num[1]) && strcmp(t->cols[0].str[0], "a") == 0);
    ls_csv_table_free(t);
    double v;
    CHECK(ls_csv_parse_number(" 3.25 ", &v) && v == 3.25);
    CHECK(ls_csv_parse_number("-1e5", &v) && v == -1e5);
    CHECK(ls_csv_parse_number("NaN", &v) && isnan(v));
    CHECK(!ls_csv_parse_number("0x10", &v) && !ls_csv_parse_number("", &v));
    CHECK(!ls_csv_parse_number("1.5.2", &v) && !ls_csv_parse_number("12abc", &v));
}

/* ============================ safetensors ============================ */

/* A file image: the 8-byte length, the header text, then dlen bytes of data (0..dlen-1). */
static unsigned char *st_image(const char *header, size_t dlen, size_t *n)
{
    size_t hlen = strlen(header);
    *n = 8 + hlen + dlen;
    unsigned char *p = malloc(*n);
    for (int b = 0; b < 8; b++) p[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
    memcpy(p + 8, header, hlen);
    for (size_t i = 0; i < dlen; i++) p[8 + hlen + i] = (unsigned char)i;
    return p;
}

static void test_st_roundtrip(void)
{
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s0[2] = {0, 7}, s34[2] = {3, 4};
    ls_tensor *w = make_tensor(LS_F32, 2, s23), *b = make_tensor(LS_F64, 1, s4);
    ls_tensor *idx = make_tensor(LS_I64, 2, s23), *bytes = make_tensor(LS_U8, 1, s4);
    ls_tensor *scalar = ls_tensor_scalar(LS_F32, 3.5), *empty = ls_tensor_zeros(LS_F64, 2, s0);
    ls_tensor *base = make_tensor(LS_F32, 2, s34), *tr = ls_view_transpose(base, 0, 1);
    const char *names[] = {"0.weight", "0.bias", "idx", "bytes", "scalar", "empty", "tr.view"};
    const ls_tensor *ts[] = {w, b, idx, bytes, scalar, empty, tr};
    const char *keys[] = {"format", "note"}, *vals[] = {"pt", "quote \" backslash \\ nl \n é"};
    const char *path = tmp_path("rt.safetensors");
    CHECK(ls_safetensors_save(path, 7, names, ts, 2, keys, vals) == LS_OK);
    ls_safetensors *st = ls_safetensors_load(path);
    CHECK(st && st->ntensors == 7 && st->nmeta == 2);
    for (int k = 0; st && k < 7; k++) {
        int i = ls_safetensors_find(st, names[k]);
        CHECK(i >= 0 && same_tensor(ts[k], st->tensors[i]));
    }
    for (int k = 0; st && k < st->nmeta; k++) {
        int m = strcmp(st->meta_keys[k], "format") == 0 ? 0 : 1;
        CHECK(strcmp(st->meta_keys[k], keys[m]) == 0 && strcmp(st->meta_values[k], vals[m]) == 0);
    }
    ls_safetensors_free(st);
    /* Layout: header padded to 8 bytes, metadata first, 8-byte dtypes before 4 and 1, by name. */
    size_t n;
    unsigned char *img = read_bytes(path, &n);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = hlen << 8 | img[k];
    CHECK((8 + hlen) % 8 == 0 && img[8 + hlen - 1] == ' ');
    char *hdr = strndup((char *)img + 8, hlen);
    char *pm = strstr(hdr, "__metadata__"), *pb = strstr(hdr, "\"0.bias\""),
         *pi = strstr(hdr, "\"idx\""), *pw = strstr(hdr, "\"0.weight\""),
         *pu = strstr(hdr, "\"bytes\"");
    CHECK(pm && pb && pi && pw && pu && pm < pb && pb < pi && pi < pw && pw < pu);
    CHECK(strstr(hdr, "\"0.bias\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,32]}"));
    CHECK(strstr(hdr, "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],"));
    free(hdr);
    /* The same inputs give the same bytes, whatever the metadata order. */
    const char *keys2[] = {"note", "format"}, *vals2[] = {vals[1], vals[0]};
    CHECK(ls_safetensors_save(tmp_path("rt2.st"), 7, names, ts, 2, keys2, vals2) == LS_OK);
    size_t n2;
    unsigned char *img2 = read_bytes(tmp_path("rt2.st"), &n2);
    CHECK(n == n2 && memcmp(img, img2, n) == 0);
    free(img2);
    /* Cut at every byte: every prefix is an error. */
    int survivors = 0;
    for (size_t cut = 0; cut < n; cut++) {
        ls_safetensors *c = ls_safetensors_parse(img, cut, "cut");
        if (c || ls_error_code() != LS_ERR_IO) survivors++;
        ls_safetensors_free(c);
    }
    CHECK(survivors == 0);
    /* Allocation failures anywhere in a load leave no leak and no crash. */
    size_t live = ls_alloc_live_bytes();
    int injected = 0;
    for (long k = 1; k < 20; k++) {
        ls_alloc_fail_after(k);
        ls_safetensors *c = ls_safetensors_parse(img, n, "oom");
        ls_alloc_fail_after(0);
        if (!c) {
            injected++;
            CHECK(ls_error_code() == LS_ERR_MEM && msg_has("oom"));
        }
        ls_safetensors_free(c);
        CHECK(ls_alloc_live_bytes() == live);
    }
    CHECK(injected >= 7);
    free(img);
    /* Save-side errors. */
    const ls_tensor *two[] = {w, b};
    CHECK(ls_safetensors_save(path, 2, (const char *[]){"a", "a"}, two, 0, NULL, NULL) == LS_ERR_ARG
          && msg_has("duplicate name 'a'"));
    CHECK(ls_safetensors_save(path, 1, (const char *[]){"__metadata__"}, two, 0, NULL, NULL) ==
          LS_ERR_ARG && msg_has("reserved"));
    CHECK(ls_safetensors_save(path, 1, (const char *[]){"bad\xff"}, two, 0, NULL, NULL) ==
          LS_ERR_ARG && msg_has("not valid UTF-8"));
    CHECK(ls_safetensors_save(tmp_path("no/dir.st"), 1, names, two, 0, NULL, NULL) == LS_ERR_IO);
    CHECK(ls_safetensors_load(tmp_path("none.st")) == NULL && msg_has("none.st: No such file"));
    ls_tensor *all[] = {w, b, idx, bytes, scalar, empty, base, tr};
    for (int k = 0; k < 8; k++) ls_tensor_release(all[k]);
}

/* Other dtypes a PyTorch file may hold, converted on load. */
static void test_st_dtypes(void)
{
    const char *h = "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
                    "\"bf\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[12,16]},"
                    "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                    "\"s\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[24,26]},"
                    "\"u\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[26,28]},"
                    "\"b\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[28,30]},"
                    "\"c\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[30,31]}}";
    size_t n;
    unsigned char *img = st_image(h, 31, &n);
    unsigned char *d = img + n - 31;
    const unsigned char data[31] = {
        0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00, 0x00, 0x7C, 0x00, 0x38,   /* F16 */
        0x80, 0x3F, 0x00, 0xC0,                                                   /* BF16 */
        0xFB, 0xFF, 0xFF, 0xFF, 0x07, 0x00, 0x00, 0x00,                           /* I32 -5, 7 */
        0x00, 0x80, 0xFF, 0xFF, 0x00, 0x02, 0x80};                                /* I16, U16, BOOL, I8 */
    memcpy(d, data, 31);
    ls_safetensors *st = ls_safetensors_parse(img, n, "dtypes");
    CHECK(st != NULL);
    if (st) {
        ls_tensor *t = st->tensors[ls_safetensors_find(st, "h")];
        CHECK(t->dtype == LS_F32);
        CHECK(ls_tensor_get_flat(t, 0) == 1 && ls_tensor_get_flat(t, 1) == -2);
        CHECK(ls_tensor_get_flat(t, 2) == 65504 && ls_tensor_get_flat(t, 3) == ldexp(1, -24));
        CHECK(isinf(ls_tensor_get_flat(t, 4)) && ls_tensor_get_flat(t, 5) == 0.5);
        t = st->tensors[ls_safetensors_find(st, "bf")];
        CHECK(ls_tensor_get_flat(t, 0) == 1 && ls_tensor_get_flat(t, 1) == -2);
        t = st->tensors[ls_safetensors_find(st, "i")];
        CHECK(t->dtype == LS_I64 && ls_tensor_get_flat(t, 0) == -5 && ls_tensor_get_flat(t, 1) == 7);
        CHECK(ls_tensor_get_flat(st->tensors[ls_safetensors_find(st, "s")], 0) == -32768);
        CHECK(ls_tensor_get_flat(st->tensors[ls_safetensors_find(st, "u")], 0) == 65535);
        t = st->tensors[ls_safetensors_find(st, "b")];
        CHECK(t->dtype == LS_U8 && ls_tensor_get_flat(t, 0) == 0 && ls_tensor_get_flat(t, 1) == 1);
        CHECK(ls_tensor_get_flat(st->tensors[ls_safetensors_find(st, "c")], 0) == -128);
        CHECK(strcmp(st->names[0], "h") == 0 && strcmp(st->names[6], "c") == 0);  /* offset order */
    }
    ls_safetensors_free(st);
    free(img);
}

/* Malformed headers: each must be refused with a message containing `expect`. */
static void test_st_malformed(void)
{
#define T24 "\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]"
    static const struct { const char *header; const char *expect; } cases[] = {
        {"", "too short for a JSON object"},
        {"{", "too short for a JSON object"},
        {"{\"a\":{" T24 "}", "'}' expected near end of file"},
        {"[]", "does not start with '{'"},
        {" {\"a\":{" T24 "}}", "does not start with '{'"},
        {"{\"a\":{" T24 "}}x", "end of file expected near"},
        {"{\"a\":{" T24 "},}", "string or '}' expected"},
        {"{\"a\":{" T24 "},\"a\":{" T24 "}}", "duplicate object key near '\"a\"'"},
        {"{\"a\":{" T24 ",\"dtype\":\"F32\"}}", "duplicate object key near '\"dtype\"'"},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", "unsupported dtype \"F33\""},
        {"{\"a\":{\"dtype\":\"U64\",\"shape\":[3],\"data_offsets\":[0,24]}}", "unsupported dtype \"U64\""},
        {"{\"a\":{\"dtype\":5,\"shape\":[2,3],\"data_offsets\":[0,24]}}", "dtype is not a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,24]}}", "shape[1] is not"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3.0],\"data_offsets\":[0,24]}}", "shape[1] is not"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,24]}}", "needs 32 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,24]}}", "shape is not an array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,6],\"data_offsets\":[0,24]}}", "9 dims"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,24]}}", "tensor 'a': shape [4294967296x4294967296x4294967296] is too large"},
        /* a zero dim does not unbound the others (strides would overflow) */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,4],\"data_offsets\":[0,0]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}",
         "tensor 'a': shape [0x4611686018427387904x4] is too large"},
        /* a NUL in a field name or a dtype is not the field or dtype it starts like: the JSON
         * parser (Jansson, without JSON_ALLOW_NUL) refuses \u0000 in keys and strings */
        {"{\"a\":{\"dtype\\u0000x\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}",
         "invalid JSON header at byte 20: NUL byte in object key"},
        {"{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[6],\"data_offsets\":[0,24]}}",
         "invalid JSON header at byte 25: \\u0000 is not allowed"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,28]}}", "needs 24 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[7],\"data_offsets\":[0,28]}}", "exceed the data buffer of 24"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[24,0]}}", "end before they begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0]}}", "not a pair"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,99999999999999999999]}}",
         "too big integer"},   /* Jansson keeps integers exact: beyond int64 is an error */
        {"{\"a\":{\"shape\":[2,3],\"data_offsets\":[0,24]}}", "missing field \"dtype\""},
        {"{\"a\":{" T24 ",\"extra\":1}}", "unknown field \"extra\""},
        {"{\"a\":5}", "entry 'a' is not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[16,24]}}", "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "the tensors cover 16"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", "8 unused bytes"},
        {"{\"a\\x\":{" T24 "}}", "invalid escape"},
        {"{\"a\tb\":{" T24 "}}", "control character 0x9"},
        {"{\"a\xC3\x28\":{" T24 "}}", "unable to decode byte"},
        {"{\"\xED\xA0\x80\":{" T24 "}}", "unable to decode byte"},
        {"{\"\\ud800\":{" T24 "}}", "invalid Unicode '\\uD800'"},
        {"{\"\\udc00x\":{" T24 "}}", "invalid Unicode '\\uDC00'"},
        {"{\"a\\u00\":{" T24 "}}", "invalid escape"},
        {"{\"a\\u0000\":{" T24 "}}", "NUL"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[02,3],\"data_offsets\":[0,24]}}", "invalid token near '0'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,24]}}", "invalid token near 'NaN'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3,],\"data_offsets\":[0,24]}}", "unexpected token near ']'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2 3],\"data_offsets\":[0,24]}}", "']' expected near '3'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}", "'}' expected near end of file"},
        {"{'a':{" T24 "}}", "string or '}' expected"},
        {"{\"a\" {" T24 "}}", "':' expected near '{'"},
        {"{/* c */\"a\":{" T24 "}}", "string or '}' expected"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-],\"data_offsets\":[0,24]}}", "invalid token near '-'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.],\"data_offsets\":[0,24]}}", "invalid token near '1.'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e],\"data_offsets\":[0,24]}}", "invalid token near '1e'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24],\"x\":tru}}", "invalid token near 'tru'"},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}", "nesting deeper than 16"},
        {"{\"__metadata__\":{\"k\":1}," "\"a\":{" T24 "}}", "value for 'k' is not a string"},
        {"{\"__metadata__\":[]," "\"a\":{" T24 "}}", "__metadata__ is not an object"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"},\"a\":{" T24 "}}", "duplicate object key near '\"k\"'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}} \n\t\x01", "end of file expected near"},
    };
#undef T24
    int n_cases = (int)(sizeof cases / sizeof cases[0]);
    CHECK(n_cases >= 20);
    for (int k = 0; k < n_cases; k++) {
        size_t n;
        unsigned char *img = st_image(cases[k].header, 24, &n);
        ls_error_clear();
        ls_safetensors *st = ls_safetensors_parse(img, n, "bad.st");
        CHECK(st == NULL && ls_error_code() == LS_ERR_IO && msg_has("load_safetensors: bad.st: "));
        CHECK(msg_has(cases[k].expect));
        if (!msg_has(cases[k].expect)) fprintf(stderr, "  (case %d: %s)\n", k, cases[k].header);
        ls_safetensors_free(st);
        free(img);
    }
    /* The length field itself. */
    unsigned char img[120] = {0};
    uint64_t big = 99999999;
    for (int b = 0; b < 8; b++) img[b] = (unsigned char)(big >> (8 * b));
    write_bytes(tmp_path("len.st"), img, sizeof img);
    CHECK(ls_safetensors_load(tmp_path("len.st")) == NULL &&
          msg_has("len.st: header length 99999999 exceeds file size 120"));
    memset(img, 0xFF, 8);
    CHECK(ls_safetensors_parse(img, 120, "x") == NULL && msg_has("exceeds file size 120"));
    CHECK(ls_safetensors_parse(img, 7, "x") == NULL && msg_has("file too short (7 bytes)"));
    /* A valid header with an empty key, valid escapes, and an empty file list, for contrast. */
    size_t n;
    unsigned char *ok = st_image("{\"\\u00e9\\n\\\"\\/\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[24],"
                                 "\"data_offsets\":[0,24]},\"__metadata__\":{}}   ", 24, &n);
    ls_safetensors *st = ls_safetensors_parse(ok, n, "ok");
    CHECK(st && st->ntensors == 1 && strcmp(st->names[0], "\xC3\xA9\n\"/\xF0\x9F\x98\x80") == 0);
    if (st) CHECK(ls_tensor_get_flat(st->tensors[0], 23) == 23);
    ls_safetensors_free(st);
    free(ok);
    ok = st_image("{}", 0, &n);
    st = ls_safetensors_parse(ok, n, "empty");
    CHECK(st && st->ntensors == 0 && st->nmeta == 0);
    ls_safetensors_free(st);
    free(ok);
}

static void test_json(void)
{
    ls_json v;
    char err[200];
    const char *doc = " {\"a\": [1, 2.5e3, -0, true, false, null, \"s\"], \"b\": {}} ";
    CHECK(ls_json_parse(doc, strlen(doc), &v, err, sizeof err) == 0);
    CHECK(v.kind == LS_JSON_OBJ && v.n == 2 && strcmp(v.items[0].key, "a") == 0);
    const ls_json *a = &v.items[0];
    CHECK(a->kind == LS_JSON_ARR && a->n == 7 && a->items[0].is_int && a->items[0].i == 1);
    /* -0 is the integer 0 to Jansson (a shape or offset of "-0" reads as 0) */
    CHECK(!a->items[1].is_int && a->items[2].is_int && a->items[3].truth && !a->items[4].truth);
    CHECK(a->items[5].kind == LS_JSON_NULL && strcmp(a->items[6].s, "s") == 0);
    ls_json_free(&v);
    CHECK(ls_json_parse("9223372036854775807", 19, &v, err, sizeof err) == 0 && v.is_int &&
          v.i == INT64_MAX);
    CHECK(ls_json_parse("-9223372036854775808", 20, &v, err, sizeof err) == 0 && !v.is_int);
    CHECK(ls_json_parse("9223372036854775808", 19, &v, err, sizeof err) == -1 &&
          strstr(err, "too big integer"));   /* exact or an error, never a rounded double */
    CHECK(ls_json_parse("9007199254740993", 16, &v, err, sizeof err) == 0 && v.is_int &&
          v.i == 9007199254740993LL);       /* 2^53 + 1: no double holds it */
    CHECK(ls_json_parse("", 0, &v, err, sizeof err) == -1 && strstr(err, "at byte 0"));
    CHECK(ls_json_parse("1 2", 3, &v, err, sizeof err) == -1 && strstr(err, "end of file expected"));
    CHECK(ls_json_parse("[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]", 35, &v, err, sizeof err) == -1 &&
          strstr(err, "nesting deeper than 16 levels"));
    CHECK(ls_json_parse("{\"a\":1,\"a\":2}", 15, &v, err, sizeof err) == -1 &&
          strstr(err, "duplicate object key"));
    CHECK(ls_json_utf8_valid("caf\xC3\xA9", 5) && !ls_json_utf8_valid("\xED\xA0\x80", 3));
}

int main(void)
{
    if (tmpdir_make("/tmp/ls_test_io_XXXXXX")) return 1;
    size_t live = ls_alloc_live_bytes();
    test_idx_roundtrip();
    test_idx_types();
    test_idx_errors();
    test_idx_truncation();
    test_csv_roundtrip();
    test_csv_append();
    test_csv_errors();
    test_st_roundtrip();
    test_st_dtypes();
    test_st_malformed();
    test_json();
    CHECK(ls_alloc_live_bytes() == live);
    tmpdir_remove();
    return check_done("test_io");
}
