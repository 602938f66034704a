#include "data/atomic.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

static atomic_uint ls_atomic_counter;

static char *ls_strdup(const char *s, const char *what)
{
    size_t n = strlen(s) + 1;
    char *d = ls_malloc(n, what);
    if (d) memcpy(d, s, n);
    return d;
}

static void ls_atomic_release(ls_atomic_file *af)
{
    ls_free(af->tmp);
    ls_free(af->path);
    memset(af, 0, sizeof *af);
}

ls_status ls_atomic_file_open(ls_atomic_file *af, const char *who, const char *path)
{
    memset(af, 0, sizeof *af);
    /* A symbolic link is written through: the file it points to is replaced, the link stays. */
    struct stat st;
    char *resolved = NULL;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) resolved = realpath(path, NULL);
    const char *target = resolved ? resolved : path;
    bool exists = stat(target, &st) == 0;
    ls_status rc = LS_OK;
    if (exists && S_ISDIR(st.st_mode))
        rc = ls_error_set(LS_ERR_IO, "%s: %s: is a directory", who, path);
    else if (exists && !S_ISREG(st.st_mode))   /* /dev/null, a FIFO: never renamed over */
        rc = ls_error_set(LS_ERR_IO, "%s: %s: not a regular file (only regular files are written)",
                          who, path);
    if (rc != LS_OK) {
        free(resolved);
        return rc;
    }
    size_t len = strlen(target);
    af->path = ls_strdup(target, who);
    af->tmp = ls_malloc(len + 48, who);
    free(resolved);
    if (!af->path || !af->tmp) {
        ls_atomic_release(af);
        return ls_error_set(LS_ERR_MEM, "%s: %s: out of memory", who, path);
    }
    path = af->path;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(af->tmp, len + 48, "%s.%ld-%u.part", path, (long)getpid(),
                 atomic_fetch_add(&ls_atomic_counter, 1));
        fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int err = errno;
        ls_status rc = ls_error_set(LS_ERR_IO, "%s: %s: cannot create a file beside it (%s): %s",
                                    who, path, af->tmp, strerror(err));
        ls_atomic_release(af);
        return rc;
    }
    if (exists && S_ISREG(st.st_mode)) (void)fchmod(fd, st.st_mode & 07777);   /* best effort */
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        unlink(af->tmp);
        ls_atomic_release(af);
        return ls_error_set(LS_ERR_MEM, "%s: %s: out of memory", who, path);
    }
    return LS_OK;
}

/* The directory entry of the rename reaches the disk with the directory's own fsync. */
static void ls_sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);   /* best effort: some file systems refuse it */
    close(fd);
}

ls_status ls_atomic_file_commit(ls_atomic_file *af, const char *who)
{
    int err = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) err = errno ? errno : EIO;
    if (!err && fsync(fileno(af->f)) != 0 && errno != EINVAL) err = errno;
    if (fclose(af->f) != 0 && !err) err = errno ? errno : EIO;
    af->f = NULL;
    ls_status rc = LS_OK;
    if (err) {
        unlink(af->tmp);
        rc = ls_error_set(LS_ERR_IO, "%s: %s: write failed: %s (the file is unchanged)", who,
                          af->path, strerror(err));
    } else if (rename(af->tmp, af->path) != 0) {
        err = errno;
        unlink(af->tmp);
        rc = ls_error_set(LS_ERR_IO, "%s: %s: cannot rename %s into place: %s", who, af->path,
                          af->tmp, strerror(err));
    } else {
        ls_sync_parent(af->path);
    }
    ls_atomic_release(af);
    return rc;
}

void ls_atomic_file_abort(ls_atomic_file *af)
{
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    ls_atomic_release(af);
}
