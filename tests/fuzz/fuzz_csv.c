/* libFuzzer target: the CSV reader (libcsv, strict quoting, ragged rows, NUL bytes, typed columns).
 * A table that parses is written back with the engine's writer and read again: the second read must
 * give the same columns, kinds and cells (NaN as NaN), which checks the writer's quoting against the
 * reader on every input the fuzzer finds. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/csv.h"
#include "fuzz.h"

static char dir[64];

static int same_table(const ls_csv_table *a, const ls_csv_table *b)
{
    if (a->ncols != b->ncols || a->nrows != b->nrows) return 0;
    for (int c = 0; c < a->ncols; c++) {
        const ls_csv_column *x = &a->cols[c], *y = &b->cols[c];
        if (strcmp(x->name, y->name) != 0 || x->kind != y->kind) return 0;
        for (int64_t r = 0; r < a->nrows; r++) {
            if (x->kind == LS_CSV_NUMBER) {
                if (!(x->num[r] == y->num[r] || (isnan(x->num[r]) && isnan(y->num[r])))) return 0;
            } else if (strcmp(x->str[r], y->str[r]) != 0) {
                return 0;
            }
        }
    }
    return 1;
}

/* Write t back as text cells: numbers in the shortest exact form, strings as they are. */
static ls_status write_back(const ls_csv_table *t, const char *path)
{
    size_t ncells = (size_t)t->nrows * (size_t)t->ncols;
    const char **names = malloc(sizeof *names * (size_t)t->ncols);
    const char **cells = malloc(sizeof *cells * (ncells ? ncells : 1));
    char *num = malloc(32 * (ncells ? ncells : 1));
    for (int c = 0; c < t->ncols; c++) names[c] = t->cols[c].name;
    for (int64_t r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            size_t at = (size_t)r * (size_t)t->ncols + (size_t)c;
            if (t->cols[c].kind == LS_CSV_STRING) {
                cells[at] = t->cols[c].str[r];
            } else {
                double v = t->cols[c].num[r];
                char *s = num + 32 * at;
                if (isnan(v)) snprintf(s, 32, "nan");
                else snprintf(s, 32, "%.17g", v);
                cells[at] = s;
            }
        }
    ls_status rc = ls_csv_write(path, t->ncols, names, t->nrows, cells, false);
    free(names), free(cells), free(num);
    return rc;
}

static void remove_dir(void)
{
    char path[96];
    snprintf(path, sizeof path, "%s/t.csv", dir);
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {   /* /dev/shm when there is one: the writer's fsync is free on tmpfs */
        struct stat st;
        const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/ls_fuzz_csv_%ld", base, (long)getpid());
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) abort();
        atexit(remove_dir);
    }
    size_t live = ls_alloc_live_bytes();
    ls_error_clear();
    ls_csv_table *t = ls_csv_parse((const char *)data, size, "fuzz.csv");
    if (!t) {
        fuzz_expect_message();
    } else {
        char path[96];
        snprintf(path, sizeof path, "%s/t.csv", dir);
        if (write_back(t, path) == LS_OK) {
            ls_csv_table *u = ls_csv_read(path);
            if (!u || !same_table(t, u)) {
                fprintf(stderr, "fuzz: CSV table changed through write and read: %s\n",
                        u ? "different cells" : ls_error_message());
                abort();
            }
            ls_csv_table_free(u);
        }
        ls_csv_table_free(t);
    }
    fuzz_expect_no_leak(live);
    return 0;
}
