/* Status codes and the per-thread error message.
 *
 * Fallible engine functions return NULL (for constructors) or a non-zero ls_status, after recording a
 * message with ls_error_set() that names the function and the offending shapes or file, e.g.
 *   "matmul: inner dimensions differ: [3x4] @ [5x2]".
 * The Lua binding reads it back with ls_error_message() and raises it as a Lua error. Nothing in the
 * engine exits or aborts on user input; only internal invariants use assert(). */
#ifndef LS_STATUS_H
#define LS_STATUS_H

typedef enum ls_status {
    LS_OK = 0,
    LS_ERR_ARG,     /* bad argument: shape, dtype, range, option */
    LS_ERR_MEM,     /* allocation failed */
    LS_ERR_IO,      /* file missing, unreadable, truncated or corrupt */
    LS_ERR_STATE    /* operation not valid in the current state (freed graph, ...) */
} ls_status;

#if defined(__GNUC__)
#define LS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LS_PRINTF(f, a)
#endif

/* Record a message (printf-style) for the calling thread; returns `code` so callers can write
 * `return ls_error_set(LS_ERR_ARG, "add: ...")`. */
ls_status ls_error_set(ls_status code, const char *fmt, ...) LS_PRINTF(2, 3);
/* The calling thread's last message ("" when none). */
const char *ls_error_message(void);
/* The calling thread's last status. */
ls_status ls_error_code(void);
void ls_error_clear(void);
/* Name the function a user called in the last message. Low-level helpers that cannot know it tag
 * their messages "tensor: " (allocation and shape checks in engine/tensor) or "view: "; an entry point
 * (ls_op_apply for every op, the Lua binding's constructors) replaces that tag with its own name:
 *   "tensor: out of memory for a f32 tensor of shape [1000000000000] (...)"
 *   -> "zeros: out of memory for a f32 tensor of shape [1000000000000] (...)"
 * Any other message is left as it is (it already names a function). */
void ls_error_retag(const char *who);
/* The last message without a generic tag, for a caller that adds its own prefix
 * ("read_idx: f.idx: out of memory for a f32 tensor of shape [4x5] (80 bytes)"). */
const char *ls_error_untagged(void);

#endif
