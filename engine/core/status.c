#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char ls_error_buf[1024];
static _Thread_local ls_status ls_error_last = LS_OK;

ls_status ls_error_set(ls_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ls_error_buf, sizeof ls_error_buf, fmt, ap);
    va_end(ap);
    ls_error_last = code;
    return code;
}

const char *ls_error_message(void) { return ls_error_buf; }

ls_status ls_error_code(void) { return ls_error_last; }

void ls_error_clear(void)
{
    ls_error_buf[0] = '\0';
    ls_error_last = LS_OK;
}

static const char *const ls_generic_tags[] = {"tensor: ", "view: "};

const char *ls_error_untagged(void)
{
    for (size_t k = 0; k < sizeof ls_generic_tags / sizeof ls_generic_tags[0]; k++) {
        size_t n = strlen(ls_generic_tags[k]);
        if (strncmp(ls_error_buf, ls_generic_tags[k], n) == 0) return ls_error_buf + n;
    }
    return ls_error_buf;
}

void ls_error_retag(const char *who)
{
    for (size_t k = 0; k < sizeof ls_generic_tags / sizeof ls_generic_tags[0]; k++) {
        size_t n = strlen(ls_generic_tags[k]);
        if (strncmp(ls_error_buf, ls_generic_tags[k], n) != 0) continue;
        size_t cap = sizeof ls_error_buf, wl = strlen(who), rl = strlen(ls_error_buf + n);
        if (wl + 2 >= cap) return;
        if (wl + 2 + rl >= cap) rl = cap - 1 - (wl + 2);   /* keep the message's head */
        memmove(ls_error_buf + wl + 2, ls_error_buf + n, rl);
        ls_error_buf[wl + 2 + rl] = '\0';
        memcpy(ls_error_buf, who, wl);
        ls_error_buf[wl] = ':';
        ls_error_buf[wl + 1] = ' ';
        return;
    }
}
