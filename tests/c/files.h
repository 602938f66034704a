/* Helpers of the file tests (test_io.c, test_io_writers.c): a per-test temporary directory, whole-file
 * reads and writes, and a check that the engine's last message holds a substring (printing it when
 * not). */
#ifndef TEST_FILES_H
#define TEST_FILES_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

static char tmpdir[64];

/* Create tmpdir from a template like "/tmp/ls_test_io_XXXXXX"; 0 on success. */
static inline int tmpdir_make(const char *template)
{
    snprintf(tmpdir, sizeof tmpdir, "%s", template);
    if (mkdtemp(tmpdir)) return 0;
    perror("mkdtemp");
    return -1;
}

static inline void tmpdir_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* tmpdir/name, in one of four rotating buffers (so a call may name up to four paths). */
static inline const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static inline void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

/* The whole file (malloc'd, one spare byte), or NULL when it cannot be opened. */
static inline unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

static inline bool msg_has(const char *needle)
{
    bool ok = strstr(ls_error_message(), needle) != NULL;
    if (!ok) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", ls_error_message(), needle);
    return ok;
}

#endif
