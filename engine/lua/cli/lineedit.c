/* The REPL's line editor; see lineedit.h for the keys and the contract.
 *
 * Display model: the prompt and the line occupy one terminal row. When the line is wider than the
 * row, a window of it (starting at byte `scroll`) is shown, moved just enough to keep the cursor
 * visible. Each change redraws the row in one write(): carriage return, prompt, visible text, erase
 * to end of row, then carriage return and a move right to the cursor column. Columns are counted in
 * UTF-8 code points (wide CJK characters would be miscounted; nothing else is). Output goes through
 * write() on fd 1 after stdio has been flushed, so it never interleaves with buffered stdio output.
 */

/* termios, getline(), strcasecmp() and TIOCGWINSZ are POSIX/BSD, not C11. */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include "lineedit.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <termios.h>
#include <unistd.h>

/* Keys decoded from escape sequences; plain bytes are 0..255. */
enum {
    LS_KEY_NONE = 1000,
    LS_KEY_LEFT,
    LS_KEY_RIGHT,
    LS_KEY_UP,
    LS_KEY_DOWN,
    LS_KEY_HOME,
    LS_KEY_END,
    LS_KEY_DELETE,
    LS_KEY_WORD_LEFT,
    LS_KEY_WORD_RIGHT,
    LS_KEY_KILL_WORD,
};

#define LS_CTRL(c) ((c) & 0x1f)

struct ls_lineedit {
    int raw;         /* edit in raw mode: stdin and stdout are terminals and TERM is not dumb */
    int interactive; /* stdin is a terminal: only then is the history file written */
    ls_complete_fn complete;
    void *complete_ud;

    char **hist; /* hist[0] is the oldest entry */
    int hist_len, hist_cap;
    char *hist_path; /* NULL: no history file */

    /* The line being edited: buf[0, len) plus a NUL, cursor at byte pos. */
    char *buf;
    size_t len, size, pos;
    size_t scroll;      /* byte offset of the first visible character */
    const char *prompt;
    int hist_index;     /* entry being shown; hist_len means the line being typed */
    char *scratch;      /* the line being typed, saved while browsing history */
    char *killed;       /* text removed by the last kill command, for Ctrl-Y */
};

/* ---- small helpers ---- */

static char *ls_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static void ls_write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void ls_write_str(const char *s) { ls_write_all(s, strlen(s)); }

/* Writes s with each "\n" sent as "\r\n", since raw mode may have disabled output processing. */
static void ls_write_lines(const char *s)
{
    const char *nl;
    while ((nl = strchr(s, '\n')) != NULL) {
        ls_write_all(s, (size_t)(nl - s));
        ls_write_str("\r\n");
        s = nl + 1;
    }
    ls_write_str(s);
}

static int ls_terminal_columns(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

static int ls_read_byte(void)
{
    unsigned char c;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n == 1) return c;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
}

static int ls_utf8_is_cont(char c) { return ((unsigned char)c & 0xC0) == 0x80; }

static size_t ls_utf8_prev(const char *s, size_t pos)
{
    if (pos == 0) return 0;
    pos--;
    while (pos > 0 && ls_utf8_is_cont(s[pos])) pos--;
    return pos;
}

static size_t ls_utf8_next(const char *s, size_t len, size_t pos)
{
    if (pos >= len) return len;
    pos++;
    while (pos < len && ls_utf8_is_cont(s[pos])) pos++;
    return pos;
}

static size_t ls_utf8_width(const char *s, size_t from, size_t to)
{
    size_t w = 0;
    for (size_t i = from; i < to; i++) w += !ls_utf8_is_cont(s[i]);
    return w;
}

static int ls_is_word_byte(char c)
{
    return isalnum((unsigned char)c) || c == '_' || ((unsigned char)c & 0x80);
}

/* ---- the edit buffer ---- */

static int ls_le_reserve(ls_lineedit *le, size_t extra)
{
    if (le->len + extra + 1 <= le->size) return 1;
    size_t size = le->size ? le->size : 128;
    while (size < le->len + extra + 1) size *= 2;
    char *p = realloc(le->buf, size);
    if (!p) return 0;
    le->buf = p;
    le->size = size;
    return 1;
}

static void ls_le_insert(ls_lineedit *le, const char *s, size_t n)
{
    if (!ls_le_reserve(le, n)) return;
    memmove(le->buf + le->pos + n, le->buf + le->pos, le->len - le->pos + 1);
    memcpy(le->buf + le->pos, s, n);
    le->len += n;
    le->pos += n;
}

/* Removes buf[from, to) and leaves the cursor at `from`. With keep, the text is saved for Ctrl-Y.
 */
static void ls_le_remove(ls_lineedit *le, size_t from, size_t to, int keep)
{
    if (to <= from) return;
    if (keep) {
        char *k = malloc(to - from + 1);
        if (k) {
            memcpy(k, le->buf + from, to - from);
            k[to - from] = '\0';
            free(le->killed);
            le->killed = k;
        }
    }
    memmove(le->buf + from, le->buf + to, le->len - to + 1);
    le->len -= to - from;
    le->pos = from;
}

static void ls_le_set(ls_lineedit *le, const char *s)
{
    size_t n = strlen(s);
    le->len = le->pos = 0;
    if (!ls_le_reserve(le, n)) {
        le->buf[0] = '\0';
        return;
    }
    memcpy(le->buf, s, n + 1);
    le->len = le->pos = n;
}

static size_t ls_le_word_left(const ls_lineedit *le)
{
    size_t p = le->pos;
    while (p > 0 && !ls_is_word_byte(le->buf[p - 1])) p--;
    while (p > 0 && ls_is_word_byte(le->buf[p - 1])) p--;
    return p;
}

static size_t ls_le_word_right(const ls_lineedit *le)
{
    size_t p = le->pos;
    while (p < le->len && !ls_is_word_byte(le->buf[p])) p++;
    while (p < le->len && ls_is_word_byte(le->buf[p])) p++;
    return p;
}

/* Start of the whitespace-delimited word before the cursor (what Ctrl-W removes, as in bash). */
static size_t ls_le_bigword_left(const ls_lineedit *le)
{
    size_t p = le->pos;
    while (p > 0 && isspace((unsigned char)le->buf[p - 1])) p--;
    while (p > 0 && !isspace((unsigned char)le->buf[p - 1])) p--;
    return p;
}

/* ---- display ---- */

/* Redraws the row; see the comment at the top of the file. The window start moves right until the
 * cursor fits, and back left while the rest of the line still fits, so deleting text never leaves
 * the visible part scrolled further than needed. The last column stays empty to avoid the
 * terminal's deferred wrap. */
static void ls_le_refresh(ls_lineedit *le)
{
    size_t cols = (size_t)ls_terminal_columns();
    size_t plen = strlen(le->prompt);
    size_t pw = ls_utf8_width(le->prompt, 0, plen);
    size_t avail = cols > pw + 1 ? cols - pw - 1 : 1;

    if (le->scroll > le->pos) le->scroll = le->pos;
    while (ls_utf8_width(le->buf, le->scroll, le->pos) > avail)
        le->scroll = ls_utf8_next(le->buf, le->len, le->scroll);
    while (le->scroll > 0 &&
           ls_utf8_width(le->buf, ls_utf8_prev(le->buf, le->scroll), le->len) <= avail)
        le->scroll = ls_utf8_prev(le->buf, le->scroll);
    size_t end = le->scroll, w = 0;
    while (end < le->len && w < avail) {
        end = ls_utf8_next(le->buf, le->len, end);
        w++;
    }
    size_t col = pw + ls_utf8_width(le->buf, le->scroll, le->pos);

    char move[32];
    snprintf(move, sizeof move, "\r\x1b[%zuC", col);
    size_t n = 1 + plen + (end - le->scroll) + 4 + strlen(move);
    char *out = malloc(n + 1);
    if (!out) return;
    size_t k = 0;
    out[k++] = '\r';
    memcpy(out + k, le->prompt, plen);
    k += plen;
    memcpy(out + k, le->buf + le->scroll, end - le->scroll);
    k += end - le->scroll;
    memcpy(out + k, "\x1b[0K", 4);
    k += 4;
    if (col > 0) {
        memcpy(out + k, move, strlen(move));
        k += strlen(move);
    } else {
        out[k++] = '\r';
    }
    ls_write_all(out, k);
    free(out);
}

/* ---- history ---- */

static void ls_le_history_push(ls_lineedit *le, const char *line)
{
    char *copy = ls_strdup(line);
    if (!copy) return;
    if (le->hist_len == le->hist_cap) {
        free(le->hist[0]);
        memmove(le->hist, le->hist + 1, (size_t)(le->hist_len - 1) * sizeof *le->hist);
        le->hist_len--;
    }
    le->hist[le->hist_len++] = copy;
}

/* Replaces the history file with the entries in memory: written to a temporary file, then renamed
 * over the old one, so a failure half-way never truncates the history. */
static void ls_le_history_rewrite(ls_lineedit *le)
{
    size_t n = strlen(le->hist_path);
    char *tmp = malloc(n + 5);
    if (!tmp) return;
    memcpy(tmp, le->hist_path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        free(tmp);
        return;
    }
    int ok = 1;
    for (int i = 0; i < le->hist_len; i++) ok &= fprintf(f, "%s\n", le->hist[i]) >= 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, le->hist_path) != 0) remove(tmp);
    free(tmp);
}

void ls_lineedit_history_load(ls_lineedit *le, const char *path, int cap)
{
    if (cap < 1) cap = 1;
    char **hist = realloc(le->hist, (size_t)cap * sizeof *hist);
    if (!hist) return;
    le->hist = hist;
    while (le->hist_len > cap) { /* shrinking: drop the oldest entries */
        free(le->hist[0]);
        memmove(le->hist, le->hist + 1, (size_t)(le->hist_len - 1) * sizeof *le->hist);
        le->hist_len--;
    }
    le->hist_cap = cap;
    free(le->hist_path);
    le->hist_path = path && *path ? ls_strdup(path) : NULL;
    if (!le->hist_path) return;

    FILE *f = fopen(path, "r");
    if (!f) return;
    char *line = NULL;
    size_t size = 0;
    ssize_t n;
    int total = 0;
    while ((n = getline(&line, &size, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        ls_le_history_push(le, line);
        total++;
    }
    free(line);
    fclose(f);
    if (total > 2 * cap && le->interactive) ls_le_history_rewrite(le);
}

void ls_lineedit_history_add(ls_lineedit *le, const char *line)
{
    if (!line[0] || le->hist_cap == 0) return;
    if (le->hist_len > 0 && strcmp(le->hist[le->hist_len - 1], line) == 0) return;
    ls_le_history_push(le, line);
    if (!le->hist_path || !le->interactive) return;
    int fd = open(le->hist_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0) return;
    size_t n = strlen(line);
    char *rec = malloc(n + 1);
    if (rec) { /* one write() per entry, so concurrent sessions append whole lines */
        memcpy(rec, line, n);
        rec[n] = '\n';
        ssize_t w = write(fd, rec, n + 1);
        (void)w; /* failure to save history is silent by design */
        free(rec);
    }
    close(fd);
}

/* Shows history entry hist_index + dir. Leaving the line being typed saves it in scratch; coming
 * back down past the newest entry restores it. */
static void ls_le_history_move(ls_lineedit *le, int dir)
{
    int target = le->hist_index + dir;
    if (target < 0 || target > le->hist_len) return;
    if (le->hist_index == le->hist_len) {
        free(le->scratch);
        le->scratch = ls_strdup(le->buf);
    }
    le->hist_index = target;
    ls_le_set(le, target == le->hist_len ? (le->scratch ? le->scratch : "") : le->hist[target]);
}

/* ---- keys ---- */

/* Decodes the rest of an escape sequence (ESC already read): CSI "ESC [ params final", SS3 "ESC O
 * x", or Alt+key "ESC x". Unknown sequences are consumed whole and ignored. */
static int ls_read_escape(void)
{
    int c = ls_read_byte();
    if (c == '[') {
        char params[16];
        size_t n = 0;
        for (;;) {
            c = ls_read_byte();
            if (c < 0) return LS_KEY_NONE;
            if (c >= 0x30 && c <= 0x3f) {
                if (n + 1 < sizeof params) params[n++] = (char)c;
            } else if (c < 0x20 || c > 0x2f) {
                break; /* the final byte */
            }
        }
        params[n] = '\0';
        int modified = strchr(params, ';') != NULL; /* e.g. "1;5C" = Ctrl-Right */
        switch (c) {
        case 'A': return LS_KEY_UP;
        case 'B': return LS_KEY_DOWN;
        case 'C': return modified ? LS_KEY_WORD_RIGHT : LS_KEY_RIGHT;
        case 'D': return modified ? LS_KEY_WORD_LEFT : LS_KEY_LEFT;
        case 'H': return LS_KEY_HOME;
        case 'F': return LS_KEY_END;
        case '~':
            switch (atoi(params)) {
            case 1: case 7: return LS_KEY_HOME;
            case 4: case 8: return LS_KEY_END;
            case 3: return LS_KEY_DELETE;
            default: return LS_KEY_NONE;
            }
        default: return LS_KEY_NONE;
        }
    }
    if (c == 'O') {
        switch (ls_read_byte()) {
        case 'A': return LS_KEY_UP;
        case 'B': return LS_KEY_DOWN;
        case 'C': return LS_KEY_RIGHT;
        case 'D': return LS_KEY_LEFT;
        case 'H': return LS_KEY_HOME;
        case 'F': return LS_KEY_END;
        default: return LS_KEY_NONE;
        }
    }
    switch (c) {
    case 'b': return LS_KEY_WORD_LEFT;
    case 'f': return LS_KEY_WORD_RIGHT;
    case 127: case 8: return LS_KEY_KILL_WORD;
    default: return LS_KEY_NONE;
    }
}

/* Tab: with only blanks before the cursor it indents (four spaces); otherwise it asks the
 * completion callback and applies the replacement and/or prints the listing under the line. */
static void ls_le_complete(ls_lineedit *le)
{
    size_t i = 0;
    while (i < le->pos && isspace((unsigned char)le->buf[i])) i++;
    if (i == le->pos) {
        ls_le_insert(le, "    ", 4);
        return;
    }
    if (!le->complete) return;
    ls_completion comp = {le->pos, NULL, NULL};
    le->complete(le->complete_ud, le->buf, le->pos, ls_terminal_columns(), &comp);
    if (comp.replacement && comp.start <= le->pos) {
        ls_le_remove(le, comp.start, le->pos, 0);
        ls_le_insert(le, comp.replacement, strlen(comp.replacement));
    }
    if (comp.listing) {
        ls_write_str("\r\n");
        ls_write_lines(comp.listing);
    }
    free(comp.replacement);
    free(comp.listing);
}

/* The key loop of one line. Returns when the line is accepted, abandoned or input ends. */
static ls_line_status ls_le_edit(ls_lineedit *le)
{
    for (;;) {
        ls_le_refresh(le);
        int c = ls_read_byte();
        if (c < 0) return le->len > 0 ? LS_LINE_OK : LS_LINE_EOF;
        if (c == 27) c = ls_read_escape();
        switch (c) {
        case '\r':
        case '\n':
            le->pos = le->len;
            ls_le_refresh(le);
            ls_write_str("\r\n");
            return LS_LINE_OK;
        case LS_CTRL('C'):
            le->pos = le->len;
            ls_le_refresh(le);
            ls_write_str("^C\r\n");
            return LS_LINE_INTERRUPT;
        case LS_CTRL('D'):
            if (le->len == 0) return LS_LINE_EOF;
            /* FALLTHROUGH */
        case LS_KEY_DELETE:
            ls_le_remove(le, le->pos, ls_utf8_next(le->buf, le->len, le->pos), 0);
            break;
        case 127:
        case LS_CTRL('H'):
            ls_le_remove(le, ls_utf8_prev(le->buf, le->pos), le->pos, 0);
            break;
        case LS_CTRL('A'): case LS_KEY_HOME: le->pos = 0; break;
        case LS_CTRL('E'): case LS_KEY_END: le->pos = le->len; break;
        case LS_CTRL('B'): case LS_KEY_LEFT: le->pos = ls_utf8_prev(le->buf, le->pos); break;
        case LS_CTRL('F'): case LS_KEY_RIGHT:
            le->pos = ls_utf8_next(le->buf, le->len, le->pos);
            break;
        case LS_KEY_WORD_LEFT: le->pos = ls_le_word_left(le); break;
        case LS_KEY_WORD_RIGHT: le->pos = ls_le_word_right(le); break;
        case LS_CTRL('P'): case LS_KEY_UP: ls_le_history_move(le, -1); break;
        case LS_CTRL('N'): case LS_KEY_DOWN: ls_le_history_move(le, +1); break;
        case LS_CTRL('U'): ls_le_remove(le, 0, le->pos, 1); break;
        case LS_CTRL('K'): ls_le_remove(le, le->pos, le->len, 1); break;
        case LS_CTRL('W'): ls_le_remove(le, ls_le_bigword_left(le), le->pos, 1); break;
        case LS_KEY_KILL_WORD: ls_le_remove(le, ls_le_word_left(le), le->pos, 1); break;
        case LS_CTRL('Y'):
            if (le->killed) ls_le_insert(le, le->killed, strlen(le->killed));
            break;
        case LS_CTRL('L'): ls_write_str("\x1b[H\x1b[2J"); break;
        case '\t': ls_le_complete(le); break;
        default:
            if (c >= 32 && c < 256) {
                /* Insert a whole UTF-8 character at once (lead byte plus its continuation bytes),
                 * so the display never shows half a character. */
                char ch[4] = {(char)c};
                size_t n = 1, need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
                while (n < need) {
                    int d = ls_read_byte();
                    if (d < 0 || (d & 0xC0) != 0x80) break;
                    ch[n++] = (char)d;
                }
                ls_le_insert(le, ch, n);
            }
            break;
        }
    }
}

/* ---- reading a line ---- */

static char *ls_le_read_plain(const char *prompt, ls_line_status *status)
{
    fputs(prompt, stdout);
    fflush(stdout);
    char *line = NULL;
    size_t size = 0;
    ssize_t n = getline(&line, &size, stdin);
    if (n < 0) {
        free(line);
        *status = LS_LINE_EOF;
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    *status = LS_LINE_OK;
    return line;
}

/* Raw mode: no echo, no line buffering, no signal keys (Ctrl-C and Ctrl-Z arrive as bytes), no
 * CR->NL or flow-control translation of input. Output processing is left as the user has it. The
 * terminal is switched with TCSADRAIN, not TCSAFLUSH, so lines typed or pasted ahead are not thrown
 * away, and it is restored before returning: Lua code never runs with the terminal in raw mode. */
char *ls_lineedit_read(ls_lineedit *le, const char *prompt, ls_line_status *status)
{
    fflush(stdout);
    fflush(stderr);
    struct termios orig, raw;
    if (!le->raw || tcgetattr(STDIN_FILENO, &orig) < 0) return ls_le_read_plain(prompt, status);
    raw = orig;
    raw.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
    raw.c_cflag |= CS8;
    raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) < 0) return ls_le_read_plain(prompt, status);

    le->prompt = prompt;
    le->len = le->pos = le->scroll = 0;
    if (!ls_le_reserve(le, 0)) {
        tcsetattr(STDIN_FILENO, TCSADRAIN, &orig);
        *status = LS_LINE_EOF;
        return NULL;
    }
    le->buf[0] = '\0';
    le->hist_index = le->hist_len;
    free(le->scratch);
    le->scratch = NULL;

    /* Output that did not end in a newline (io.write "123") would be overwritten by the prompt,
     * which is drawn from column 0. So first write a full row of spaces and a carriage return, as
     * zsh does: from column 0 this ends in the terminal's deferred-wrap state and the CR returns to
     * the same, still empty, row; from any other column it wraps, leaving the partial line intact
     * above. */
    size_t cols = (size_t)ls_terminal_columns();
    char *pad = malloc(cols + 1);
    if (pad) {
        memset(pad, ' ', cols);
        pad[cols] = '\r';
        ls_write_all(pad, cols + 1);
        free(pad);
    }
    *status = ls_le_edit(le);
    tcsetattr(STDIN_FILENO, TCSADRAIN, &orig);
    if (*status != LS_LINE_OK) return NULL;
    char *line = ls_strdup(le->buf);
    if (!line) *status = LS_LINE_EOF;
    return line;
}

ls_lineedit *ls_lineedit_new(void)
{
    ls_lineedit *le = calloc(1, sizeof *le);
    if (!le) return NULL;
    const char *term = getenv("TERM");
    int dumb = term && (strcasecmp(term, "dumb") == 0 || strcasecmp(term, "cons25") == 0 ||
                        strcasecmp(term, "emacs") == 0);
    le->interactive = isatty(STDIN_FILENO);
    le->raw = le->interactive && isatty(STDOUT_FILENO) && !dumb;
    ls_lineedit_history_load(le, NULL, 1000);
    return le;
}

void ls_lineedit_free(ls_lineedit *le)
{
    if (!le) return;
    for (int i = 0; i < le->hist_len; i++) free(le->hist[i]);
    free(le->hist);
    free(le->hist_path);
    free(le->buf);
    free(le->scratch);
    free(le->killed);
    free(le);
}

void ls_lineedit_set_completion(ls_lineedit *le, ls_complete_fn fn, void *ud)
{
    le->complete = fn;
    le->complete_ud = ud;
}
