/* neurofv status codes and error messages.
 *
 * Every public function that can fail returns an nfv_status.  On failure the
 * library records one human-readable line naming what failed (file, row,
 * layer, kernel, OpenCL call and error name); nfv_error_message() returns it.
 * Nothing is printed by the library itself: the caller decides. */
#ifndef NEUROFV_STATUS_H
#define NEUROFV_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nfv_status {
    NFV_OK = 0,
    NFV_ERR_INVALID_ARG,   /* a caller passed something malformed (shape, option, target) */
    NFV_ERR_IO,            /* a file could not be opened, read or written */
    NFV_ERR_FORMAT,        /* a file's content is corrupt or not what it claims */
    NFV_ERR_OPENCL,        /* an OpenCL call failed */
    NFV_ERR_BUILD,         /* an OpenCL program failed to build (log in the message) */
    NFV_ERR_NO_MEMORY,     /* host allocation failed */
    NFV_ERR_NO_DEVICE,     /* no OpenCL device matches the request */
    NFV_ERR_UNSUPPORTED,   /* valid request this build cannot serve */
    NFV_ERR_INTERRUPTED,   /* SIGINT or SIGTERM arrived; the work stopped at a safe point */
    NFV_ERR_DIVERGED       /* a computation produced NaN or Inf (a training loss, say) */
} nfv_status;

/* Short name of a status ("NFV_ERR_IO"). */
const char *nfv_status_name(nfv_status s);

/* The message recorded by the last failing call on this thread ("" if none). */
const char *nfv_error_message(void);

/* Record a printf-formatted message and return s; use as `return nfv_fail(...)`. */
nfv_status nfv_fail(nfv_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefix the recorded message with "context: " (e.g. the file or layer being
 * processed when a lower-level call failed) and return s. */
nfv_status nfv_fail_context(nfv_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The scope named in OpenCL error messages ("layer 3 (conv3d)"); NULL clears. */
void nfv_error_scope_set(const char *scope);

/* Propagate a failing nfv_status. */
#define NFV_TRY(expr)                                                            \
    do {                                                                          \
        nfv_status nfv_try_st_ = (expr);                                          \
        if (nfv_try_st_ != NFV_OK) return nfv_try_st_;                            \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
