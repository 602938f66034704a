/* Files that always write whole (STYLE.md §11): every file the engine writes goes to a temporary file
 * beside its target, is flushed to disk and renamed over the target, so that a failure at any point
 * (a full disk, a file-size limit, a bad path, the process killed) leaves either the old file or the
 * new one, never a torn mix, and never a partial file in place of a good one.
 *
 *   ls_atomic_file af;
 *   if (ls_atomic_file_open(&af, "write_idx", path)) return ls_error_code();
 *   ... fwrite(..., af.f) ...
 *   return ls_atomic_file_commit(&af, "write_idx");   (or ls_atomic_file_abort(&af) to give up)
 *
 * The temporary file is "<path>.<pid>-<n>.part" in the target's directory (a rename is atomic only
 * within one file system), created exclusively with the target's permission bits when it exists
 * (else 0666 less the umask). commit flushes, fsyncs, closes and renames, then fsyncs the directory;
 * any failure removes the temporary file and reports "<who>: <path>: write failed: <reason>" (the
 * reason from the OS: "No space left on device", "File too large", ...). A symbolic link at `path` is
 * followed (the file it points to is replaced and the link stays); a path that exists but is not a
 * regular file (a directory, /dev/null, a FIFO) is refused rather than renamed over. */
#ifndef LS_ATOMIC_H
#define LS_ATOMIC_H

#include <stdio.h>

#include "core/status.h"

typedef struct ls_atomic_file {
    FILE *f;       /* write the contents here */
    char *tmp;     /* the temporary file's path */
    char *path;    /* the target's path */
} ls_atomic_file;

/* Create the temporary file. On error nothing is left behind and *af needs no cleanup. */
ls_status ls_atomic_file_open(ls_atomic_file *af, const char *who, const char *path);
/* Flush, sync, close and rename into place. The file is closed and *af released either way. */
ls_status ls_atomic_file_commit(ls_atomic_file *af, const char *who);
/* Give up: close and remove the temporary file (the target is untouched). */
void ls_atomic_file_abort(ls_atomic_file *af);

#endif
