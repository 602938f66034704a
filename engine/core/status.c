#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

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
