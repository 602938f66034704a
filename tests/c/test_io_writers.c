/* Writers that never tear a file (engine/data/atomic.h): every writer of the engine (IDX raw and gzip,
 * safetensors, CSV replace and append, whole files) is run against a file-size limit smaller than
 * what it writes (RLIMIT_FSIZE with SIGXFSZ ignored, so write() fails with EFBIG exactly as on a full
 * disk it fails with ENOSPC). The call must fail naming the file, the old file must be byte for byte
 * what it was, and no temporary file may be left beside it. Also: refused arguments leave the file
 * alone, permissions survive an overwrite, CSV cells holding NUL bytes are refused, and a long CSV
 * field costs a logarithmic number of allocations. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "check.h"
#include "files.h"
#include "core/alloc.h"
#include "data/atomic.h"
#include "data/csv.h"
#include "data/idx.h"
#include "data/safetensors.h"
#include "tensor/tensor.h"

/* Files in tmpdir whose name contains ".part" (temporaries left behind). */
static int leftovers(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".part")) n++;
    if (d) closedir(d);
    return n;
}

/* A snapshot of a file's bytes, compared later. */
typedef struct { unsigned char *p; size_t n; } snap;
static snap snap_take(const char *path)
{
    snap s = {0};
    s.p = read_bytes(path, &s.n);
    return s;
}
static bool snap_same(snap s, const char *path)
{
    size_t n;
    unsigned char *p = read_bytes(path, &n);
    bool same = p && s.p && n == s.n && memcmp(p, s.p, n) == 0;
    free(p);
    return same;
}

/* Run the writers below with files limited to `limit` bytes. */
static struct rlimit saved_limit;
static void limit_files(rlim_t limit)
{
    getrlimit(RLIMIT_FSIZE, &saved_limit);
    struct rlimit r = {limit, saved_limit.rlim_max};
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &r) == 0);
}
static void unlimit_files(void) { setrlimit(RLIMIT_FSIZE, &saved_limit); }

static ls_tensor *ramp(ls_dtype dt, int64_t n)
{
    ls_tensor *t = ls_tensor_new(dt, 1, &n);
    for (int64_t i = 0; i < n; i++) ls_tensor_set(t, &i, (double)(i % 200));
    return t;
}

/* One writer: writes a small good file, then a large one under the limit (must fail and leave the
 * small one), then the large one without the limit (must succeed). */
typedef ls_status (*writer_fn)(const char *path, const ls_tensor *t);

static ls_status write_st(const char *path, const ls_tensor *t)
{
    const char *name = "w";
    return ls_safetensors_save(path, 1, &name, &t, 0, NULL, NULL);
}

/* A CSV of one column holding t's values; append as asked. */
static bool csv_append_mode;
static ls_status write_csv(const char *path, const ls_tensor *t)
{
    int64_t n = ls_tensor_numel(t);
    char **cells = malloc(sizeof(char *) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        cells[i] = malloc(32);
        snprintf(cells[i], 32, "%.1f", ls_tensor_get_flat(t, i) + 0.5);   /* 3129.5-like */
    }
    const char *names[] = {"x"};
    ls_status rc = ls_csv_write(path, 1, names, n, (const char *const *)cells, csv_append_mode);
    for (int64_t i = 0; i < n; i++) free(cells[i]);
    free(cells);
    return rc;
}

static void check_writer(const char *what, const char *file, writer_fn w, ls_dtype dt)
{
    const char *path = tmp_path(file);
    ls_tensor *small = ramp(dt, 10), *large = ramp(dt, 200000);
    CHECK(w(path, small) == LS_OK);
    snap before = snap_take(path);
    CHECK(before.p != NULL);
    limit_files(before.n + 4096);
    ls_status rc = w(path, large);
    unlimit_files();
    CHECK(rc == LS_ERR_IO && msg_has(path) && msg_has("File too large") && msg_has("unchanged"));
    CHECK(snap_same(before, path));
    CHECK(leftovers() == 0);
    if (rc != LS_ERR_IO || !snap_same(before, path) || leftovers())
        fprintf(stderr, "  (writer %s)\n", what);
    CHECK(w(path, large) == LS_OK);
    CHECK(!snap_same(before, path) && leftovers() == 0);
    free(before.p);
    ls_tensor_release(small), ls_tensor_release(large);
}

static void test_writers_under_a_size_limit(void)
{
    check_writer("idx raw", "a.idx", ls_idx_write, LS_F32);
    check_writer("idx gzip", "a.idx.gz", ls_idx_write, LS_F64);   /* random-ish bytes compress poorly */
    check_writer("idx i64", "b.idx", ls_idx_write, LS_I64);
    check_writer("safetensors", "a.safetensors", write_st, LS_F32);
    csv_append_mode = false;
    check_writer("csv", "a.csv", write_csv, LS_F32);
    /* the append case of the issue: a torn last row read back as a valid number (3129.5 -> 3129) */
    csv_append_mode = true;
    check_writer("csv append", "b.csv", write_csv, LS_F32);
    csv_append_mode = false;
    ls_csv_table *t = ls_csv_read(tmp_path("b.csv"));
    CHECK(t && t->nrows == 10 + 200000 && t->cols[0].num[t->nrows - 1] == 199999 % 200 + 0.5);
    ls_csv_table_free(t);
}

/* Arguments refused before anything is written leave the old file (this deleted it before). */
static void test_refusals_leave_the_file(void)
{
    const char *path = tmp_path("keep.idx");
    ls_tensor *small = ramp(LS_F32, 4);
    CHECK(ls_idx_write(path, small) == LS_OK);
    snap before = snap_take(path);
    ls_tensor *one = ls_tensor_full(LS_F32, 1, (int64_t[]){1}, 1.0);
    ls_tensor *wide = ls_view_expand(one, 1, (int64_t[]){(INT64_C(1) << 32) + 1});
    CHECK(wide && ls_idx_write(path, wide) == LS_ERR_ARG && msg_has("exceeds IDX's 32-bit dims"));
    CHECK(snap_same(before, path));
    ls_tensor *big = ls_tensor_full(LS_I64, 1, (int64_t[]){3}, 3e9);
    CHECK(ls_idx_write(path, big) == LS_ERR_ARG && msg_has("does not fit in IDX int32"));
    CHECK(snap_same(before, path) && leftovers() == 0);
    /* a missing directory and a directory in the way are named */
    CHECK(ls_idx_write(tmp_path("no/such/dir.idx"), small) == LS_ERR_IO &&
          msg_has("no/such/dir.idx: cannot create a file beside it") &&
          msg_has("No such file or directory"));
    CHECK(ls_idx_write(tmpdir, small) == LS_ERR_IO && msg_has("is a directory"));
    /* permissions survive an overwrite */
    chmod(path, 0640);
    CHECK(ls_idx_write(path, big = (ls_tensor_release(big), ramp(LS_F32, 9))) == LS_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
    free(before.p);
    ls_tensor_release(small), ls_tensor_release(one), ls_tensor_release(wide);
    ls_tensor_release(big);
}

static void test_atomic_file(void)
{
    const char *path = tmp_path("plain.txt");
    ls_atomic_file af;
    CHECK(ls_atomic_file_open(&af, "t", path) == LS_OK);
    fputs("hello", af.f);
    CHECK(leftovers() == 1);   /* the temporary file, beside the target */
    CHECK(ls_atomic_file_commit(&af, "t") == LS_OK && leftovers() == 0);
    snap s = snap_take(path);
    CHECK(s.n == 5 && memcmp(s.p, "hello", 5) == 0);
    CHECK(ls_atomic_file_open(&af, "t", path) == LS_OK);
    fputs("bye", af.f);
    ls_atomic_file_abort(&af);
    CHECK(snap_same(s, path) && leftovers() == 0);
    free(s.p);
}

/* "0.5<NUL>999" read as 0.5, and a NUL in a header cut the name: both are errors now. */
static void test_csv_nul(void)
{
    const char cell[] = "a,b\n1,0.5\0" "999\n";
    ls_csv_table *t = ls_csv_parse(cell, sizeof cell - 1, "nul.csv");
    CHECK(t == NULL && msg_has("nul.csv: line 2: field 2 contains a NUL byte"));
    const char head[] = "a\0x,b\n1,2\n";
    t = ls_csv_parse(head, sizeof head - 1, "h.csv");
    CHECK(t == NULL && msg_has("h.csv: line 1: field 1 contains a NUL byte"));
}

/* libcsv grew its field buffer 128 bytes at a time: an 8 MB field cost 65536 reallocations (20 s under
 * ASan). Counted through the allocator: a handful now. */
static void test_csv_long_field(void)
{
    size_t len = (size_t)8 << 20;
    char *buf = malloc(len + 16);
    memcpy(buf, "a\n\"", 3);
    memset(buf + 3, 'x', len);
    memcpy(buf + 3 + len, "\"\n", 2);
    long budget = 1000000;
    ls_alloc_fail_after(budget);
    ls_csv_table *t = ls_csv_parse(buf, len + 5, "long.csv");
    long used = budget - ls_alloc_fail_pending();
    ls_alloc_fail_after(0);
    CHECK(t && t->nrows == 1 && t->cols[0].kind == LS_CSV_STRING && strlen(t->cols[0].str[0]) == len);
    CHECK(used < 64);
    if (used >= 64) fprintf(stderr, "  %ld allocations for one 8 MB field\n", used);
    ls_csv_table_free(t);
    free(buf);
}

int main(void)
{
    if (tmpdir_make("/tmp/ls_test_writers_XXXXXX")) return 1;
    size_t live = ls_alloc_live_bytes();
    test_atomic_file();
    test_writers_under_a_size_limit();
    test_refusals_leave_the_file();
    test_csv_nul();
    test_csv_long_field();
    CHECK(ls_alloc_live_bytes() == live);
    tmpdir_remove();
    return check_done("io_writers");
}
