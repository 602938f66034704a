/* The REPL's line editor over libedit (Debian's libedit, BSD-licensed): see lineedit.h for the
 * contract. libedit does the editing (emacs key bindings, the display, UTF-8) and keeps the
 * in-memory history; this file adds what the REPL wants on top:
 *   - the history file as plain lines, appended to as each line is entered (concurrent sessions
 *     and crashes lose nothing), the last `cap` loaded at start, rewritten when past 2 * cap;
 *     libedit's own H_SAVE format (a "_HiStOrY_V2_" header, escaped spaces) is not used;
 *   - Tab bound to the completion callback, whose listing is printed under the line;
 *   - Ctrl-C abandoning the line: the terminal's ISIG is off while libedit edits, so Ctrl-C
 *     arrives as a key, bound to a function that ends el_gets (no signal handler: an interrupted
 *     el_gets leaks libedit's line buffers, which LeakSanitizer reports);
 *   - the plain fallback (getline, no editing) when stdin or stdout is not a terminal or TERM is
 *     dumb, where libedit would echo control sequences. */

/* getline() and fdopen() are POSIX, not C11. */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include "lineedit.h"

#include <fcntl.h>
#include <histedit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ls_lineedit {
    EditLine *el;      /* NULL: plain line reading */
    History *hist;
    int interactive;   /* stdin is a terminal: only then is the history file written */
    int cap;           /* history entries kept */
    char *hist_path;   /* NULL: no history file */
    const char *prompt;
    int interrupted;   /* Ctrl-C ended the last el_gets */
    ls_complete_fn complete;
    void *complete_ud;
};

static char *ls_le_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *ls_le_prompt(EditLine *el)
{
    ls_lineedit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    return (char *)(le && le->prompt ? le->prompt : "");
}

/* Ctrl-C: end the read; ls_lineedit_read reports LS_LINE_INTERRUPT. */
static unsigned char ls_le_interrupt(EditLine *el, int ch)
{
    (void)ch;
    ls_lineedit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    if (le) le->interrupted = 1;
    return CC_EOF;
}

/* Tab: the callback's answer applied to the line. A Tab with only blanks before the cursor
 * indents by 4 spaces. */
static unsigned char ls_le_complete(EditLine *el, int ch)
{
    (void)ch;
    ls_lineedit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    const LineInfo *li = el_line(el);
    size_t cursor = (size_t)(li->cursor - li->buffer);
    size_t k = 0;
    while (k < cursor && (li->buffer[k] == ' ' || li->buffer[k] == '\t')) k++;
    if (k == cursor) {
        el_insertstr(el, "    ");
        return CC_REFRESH;
    }
    if (!le || !le->complete) return CC_ERROR;
    /* the callback gets the whole line, NUL-terminated */
    char *line = ls_le_strndup(li->buffer, (size_t)(li->lastchar - li->buffer));
    if (!line) return CC_ERROR;
    int width = 80;
    el_get(el, EL_GETTC, "co", &width);
    ls_completion out = {cursor, NULL, NULL};
    le->complete(le->complete_ud, line, cursor, width, &out);
    free(line);
    unsigned char rc = CC_REFRESH;
    if (out.replacement && out.start <= cursor) {
        el_deletestr(el, (int)(cursor - out.start));
        el_insertstr(el, out.replacement);
    } else if (out.listing) {
        fputc('\n', stdout);
        fputs(out.listing, stdout);
        fflush(stdout);
        rc = CC_REDISPLAY;
    } else {
        rc = CC_REFRESH_BEEP;
    }
    free(out.replacement);
    free(out.listing);
    return rc;
}

ls_lineedit *ls_lineedit_new(void)
{
    ls_lineedit *le = calloc(1, sizeof *le);
    if (!le) return NULL;
    le->interactive = isatty(STDIN_FILENO);
    le->cap = 1000;
    const char *term = getenv("TERM");
    int dumb = !term || !*term || strcmp(term, "dumb") == 0 || strcmp(term, "cons25") == 0 ||
               strcmp(term, "emacs") == 0;
    le->hist = history_init();
    if (!le->hist) {
        free(le);
        return NULL;
    }
    HistEvent ev;
    history(le->hist, &ev, H_SETSIZE, le->cap);
    history(le->hist, &ev, H_SETUNIQUE, 1);   /* no repeat of the previous entry */
    if (le->interactive && isatty(STDOUT_FILENO) && !dumb) {
        le->el = el_init("landscape", stdin, stdout, stderr);
        if (le->el) {
            el_set(le->el, EL_CLIENTDATA, le);
            el_set(le->el, EL_EDITOR, "emacs");
            el_set(le->el, EL_PROMPT, ls_le_prompt);
            el_set(le->el, EL_HIST, history, le->hist);
            /* the wide call: the narrow EL_ADDFN copies its strings with wcsdup and never frees
             * them (LeakSanitizer's report); these literals live as long as the program */
            el_wset(le->el, EL_ADDFN, L"ls-complete", L"complete the name before the cursor",
                    ls_le_complete);
            el_set(le->el, EL_BIND, "^I", "ls-complete", NULL);
            el_wset(le->el, EL_ADDFN, L"ls-interrupt", L"abandon the line", ls_le_interrupt);
            el_set(le->el, EL_SETTY, "-d", "-isig", NULL);   /* Ctrl-C is a key while editing */
            el_set(le->el, EL_BIND, "^C", "ls-interrupt", NULL);
            el_set(le->el, EL_BIND, "^W", "ed-delete-prev-word", NULL);
            el_set(le->el, EL_BIND, "^R", "em-inc-search-prev", NULL);
            el_set(le->el, EL_BIND, "\033[1;5D", "ed-prev-word", NULL);   /* Ctrl-Left */
            el_set(le->el, EL_BIND, "\033[1;5C", "em-next-word", NULL);   /* Ctrl-Right */
            el_source(le->el, NULL);   /* ~/.editrc, as every libedit program reads it */
        }
    }
    return le;
}

void ls_lineedit_free(ls_lineedit *le)
{
    if (!le) return;
    if (le->el) el_end(le->el);
    if (le->hist) history_end(le->hist);
    free(le->hist_path);
    free(le);
}

void ls_lineedit_set_completion(ls_lineedit *le, ls_complete_fn fn, void *ud)
{
    le->complete = fn;
    le->complete_ud = ud;
}

/* A line without its trailing newline (and carriage return), malloc'd. */
static char *ls_le_chomp(const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    return ls_le_strndup(s, n);
}

char *ls_lineedit_read(ls_lineedit *le, const char *prompt, ls_line_status *status)
{
    fflush(stdout);
    if (!le->el) {   /* plain reading */
        fputs(prompt, stdout);
        fflush(stdout);
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            free(line);
            *status = LS_LINE_EOF;
            return NULL;
        }
        char *out = ls_le_chomp(line, (size_t)n);
        free(line);
        *status = out ? LS_LINE_OK : LS_LINE_EOF;
        return out;
    }
    le->prompt = prompt;
    le->interrupted = 0;
    int count = 0;
    const char *s = el_gets(le->el, &count);
    if (le->interrupted) {
        fputs("^C\n", stdout);
        fflush(stdout);
        el_reset(le->el);
        *status = LS_LINE_INTERRUPT;
        return NULL;
    }
    if (!s || count <= 0) {
        *status = LS_LINE_EOF;
        return NULL;
    }
    char *out = ls_le_chomp(s, (size_t)count);
    *status = out ? LS_LINE_OK : LS_LINE_EOF;
    return out;
}

/* Rewrites the history file with the entries in memory (oldest first), through a temporary file
 * and a rename. */
static void ls_le_history_rewrite(ls_lineedit *le)
{
    size_t n = strlen(le->hist_path);
    char *tmp = malloc(n + 8);
    if (!tmp) return;
    snprintf(tmp, n + 8, "%s.tmp", le->hist_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        free(tmp);
        return;
    }
    HistEvent ev;
    int ok = 1;
    for (int r = history(le->hist, &ev, H_LAST); r == 0; r = history(le->hist, &ev, H_PREV))
        ok = ok && fprintf(f, "%s\n", ev.str) >= 0;
    ok = fclose(f) == 0 && ok;
    if (ok) rename(tmp, le->hist_path);
    else remove(tmp);
    free(tmp);
}

void ls_lineedit_history_load(ls_lineedit *le, const char *path, int cap)
{
    HistEvent ev;
    le->cap = cap < 1 ? 1 : cap;
    history(le->hist, &ev, H_SETSIZE, le->cap);
    free(le->hist_path);
    le->hist_path = NULL;
    if (!path || !*path) return;
    le->hist_path = ls_le_strndup(path, strlen(path));
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    long total = 0;
    /* H_SETUNIQUE would drop a line repeated in the file; entries go in as they were written */
    history(le->hist, &ev, H_SETUNIQUE, 0);
    while ((n = getline(&line, &lcap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        history(le->hist, &ev, H_ENTER, line);   /* H_SETSIZE keeps the last cap */
        total++;
    }
    history(le->hist, &ev, H_SETUNIQUE, 1);
    free(line);
    fclose(f);
    if (total > 2L * le->cap && le->interactive) ls_le_history_rewrite(le);
}

void ls_lineedit_history_add(ls_lineedit *le, const char *line)
{
    if (!line[0]) return;
    HistEvent ev;
    if (history(le->hist, &ev, H_FIRST) == 0 && strcmp(ev.str, line) == 0) return;
    history(le->hist, &ev, H_ENTER, line);
    if (!le->hist_path || !le->interactive) return;
    int fd = open(le->hist_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0) return;
    size_t n = strlen(line);
    char *buf = malloc(n + 1);
    if (buf) {
        memcpy(buf, line, n);
        buf[n] = '\n';
        ssize_t w = write(fd, buf, n + 1);
        (void)w;   /* history is best effort */
        free(buf);
    }
    close(fd);
}
