/* The REPL's line editor: libedit underneath (lineedit.c), behind the small interface the REPL
 * needs: read a line with a prompt, history with a plain-text history file, tab completion through
 * a callback. When stdin or stdout is not a terminal, or TERM is dumb, it falls back to a plain
 * prompt and getline().
 *
 * Keys are libedit's emacs bindings (Left/Right, Ctrl-A/E, Alt-B/F and Ctrl-Left/Right by word,
 * Backspace, Delete, Ctrl-D (end of input on an empty line), Ctrl-U/K, Ctrl-W, Ctrl-Y, Up/Down
 * history, Ctrl-R search, Ctrl-L clear), plus Tab (complete; indent at the start of a line) and
 * Ctrl-C (abandon the line). ~/.editrc may rebind them.
 *
 * Nothing here knows about Lua; repl.c supplies the completion callback. */
#ifndef LS_LINEEDIT_H
#define LS_LINEEDIT_H

#include <stddef.h>

typedef enum {
    LS_LINE_OK,        /* a line was read */
    LS_LINE_EOF,       /* end of input (Ctrl-D on an empty line, or stdin closed) */
    LS_LINE_INTERRUPT, /* Ctrl-C: the caller should drop any pending input and prompt anew */
} ls_line_status;

/* What Tab does, filled in by the completion callback. Both strings are malloc'd and freed by the
 * editor; either may be left NULL. */
typedef struct {
    size_t start;      /* byte offset in the line where the completed word begins (<= cursor) */
    char *replacement; /* replaces line[start, cursor) */
    char *listing;     /* printed below the line (candidates in columns); the line is redrawn */
} ls_completion;

/* line: the whole line (NUL-terminated); cursor: byte offset of the cursor; width: terminal
 * columns. */
typedef void (*ls_complete_fn)(void *ud, const char *line, size_t cursor, int width,
                               ls_completion *out);

typedef struct ls_lineedit ls_lineedit;

/* A new editor on stdin/stdout, or NULL when out of memory. */
ls_lineedit *ls_lineedit_new(void);
/* Frees the editor (NULL is a no-op). The terminal is never left in raw mode between reads. */
void ls_lineedit_free(ls_lineedit *le);
void ls_lineedit_set_completion(ls_lineedit *le, ls_complete_fn fn, void *ud);

/* Reads one line after printing prompt. Returns a malloc'd line without its newline when *status is
 * LS_LINE_OK, else NULL. */
char *ls_lineedit_read(ls_lineedit *le, const char *prompt, ls_line_status *status);

/* Keeps at most cap entries (cap >= 1). Loads the history file `path` (its last cap lines; a file
 * that has grown past 2*cap lines is rewritten with those) and appends each later entry to it. A
 * missing or unwritable file is silently ignored. path NULL or "" keeps history in memory only. */
void ls_lineedit_history_load(ls_lineedit *le, const char *path, int cap);
/* Adds a line to the history, skipping empty lines and repeats of the last entry. The file is
 * appended to only when stdin is a terminal. */
void ls_lineedit_history_add(ls_lineedit *le, const char *line);

#endif
