/* CSV tables through libcsv: read a file with a header row into typed columns, write rows with
 * RFC 4180 quoting, append to an existing table.
 *
 * Reading: the first record is the header (a UTF-8 byte-order mark is skipped). A NUL byte anywhere
 * in a field is an error naming the line (a C string would silently end there). A column is numeric
 * when every non-empty cell parses completely as a decimal number (also "nan", "inf", "-inf", any
 * case; surrounding blanks ignored); its empty cells become NaN. Any other column keeps its cells as
 * strings (empty cells as ""). A column with no non-empty cell is numeric (all NaN). Blank lines are
 * skipped; every record must have as many fields as the header.
 *
 * Errors are LS_ERR_IO (LS_ERR_ARG for bad arguments, LS_ERR_MEM for allocation failures) with a
 * message naming the function as the Lua binding calls it, the file and the line:
 *   "csv_read: runs.csv: line 7: 3 fields, but the header has 4". */
#ifndef LS_CSV_H
#define LS_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum ls_csv_kind { LS_CSV_NUMBER = 0, LS_CSV_STRING = 1 } ls_csv_kind;

typedef struct ls_csv_column {
    char *name;
    ls_csv_kind kind;
    double *num;      /* nrows values when kind == LS_CSV_NUMBER, else NULL */
    char **str;       /* nrows NUL-terminated cells when kind == LS_CSV_STRING, else NULL */
} ls_csv_column;

typedef struct ls_csv_table {
    int64_t nrows;
    int ncols;
    ls_csv_column *cols;
    char *arena;      /* owns every name and string cell */
} ls_csv_table;

/* Read a table; NULL on error. Free with ls_csv_table_free (NULL is a no-op). */
ls_csv_table *ls_csv_read(const char *path);
/* Parse a table held in memory; `name` stands for the file in messages. */
ls_csv_table *ls_csv_parse(const char *buf, size_t n, const char *name);
void ls_csv_table_free(ls_csv_table *t);
/* Index of the column called `name`, or -1. */
int ls_csv_find(const ls_csv_table *t, const char *name);

/* Write a table: `names` are the ncols column names, cells[r * ncols + c] the text of row r (NULL =
 * empty). A field is quoted (csv_fwrite) only when it needs it: it contains a comma, a quote, CR or
 * LF, starts or ends with a blank, or is empty in a one-column table. Lines end in "\n".
 *
 * append = false: the file is replaced. append = true: when the file is missing or empty it is
 * created with a header; otherwise its header must hold the same set of names (any order; rows are
 * written in the file's order) or the call fails naming the missing and extra columns, and nothing
 * is written. Either way the new contents (for an append: the old file's bytes, then the rows) are
 * written whole beside the file and renamed over it (data/atomic.h), so a full disk, a size limit
 * or a kill at any instant leaves the old file or the new one, never a torn last row. An append
 * therefore costs a copy of the file (a few ms for a 10 MB table). */
ls_status ls_csv_write(const char *path, int ncols, const char *const *names, int64_t nrows,
                       const char *const *cells, bool append);

/* Parse a decimal number as the reader does (the whole of s, blanks around it allowed).
 * Returns 1 and sets *out on success, 0 if s is not a number (or is empty). */
int ls_csv_parse_number(const char *s, double *out);

#endif
