/* Thread-local error message and status names; see include/neurofv/status.h. */
#include "neurofv/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Build logs can be long: keep room for a full log in the message. */
#define NFV_MESSAGE_CAP 65536

static _Thread_local char message[NFV_MESSAGE_CAP];
static _Thread_local char scope[128];

const char *nfv_status_name(nfv_status s)
{
    switch (s) {
    case NFV_OK: return "NFV_OK";
    case NFV_ERR_INVALID_ARG: return "NFV_ERR_INVALID_ARG";
    case NFV_ERR_IO: return "NFV_ERR_IO";
    case NFV_ERR_FORMAT: return "NFV_ERR_FORMAT";
    case NFV_ERR_OPENCL: return "NFV_ERR_OPENCL";
    case NFV_ERR_BUILD: return "NFV_ERR_BUILD";
    case NFV_ERR_NO_MEMORY: return "NFV_ERR_NO_MEMORY";
    case NFV_ERR_NO_DEVICE: return "NFV_ERR_NO_DEVICE";
    case NFV_ERR_UNSUPPORTED: return "NFV_ERR_UNSUPPORTED";
    case NFV_ERR_INTERRUPTED: return "NFV_ERR_INTERRUPTED";
    case NFV_ERR_DIVERGED: return "NFV_ERR_DIVERGED";
    }
    return "NFV_ERR_UNKNOWN";
}

const char *nfv_error_message(void) { return message; }

nfv_status nfv_fail(nfv_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return s;
}

nfv_status nfv_fail_context(nfv_status s, const char *fmt, ...)
{
    char prefix[512];
    static _Thread_local char old[NFV_MESSAGE_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, message, sizeof old);
    /* Keep the prefix; cut the old message if both do not fit. */
    size_t n = strlen(prefix);
    if (n > sizeof message - 3) n = sizeof message - 3;
    memcpy(message, prefix, n);
    memcpy(message + n, ": ", 2);
    size_t room = sizeof message - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(message + n + 2, old, m);
    message[n + 2 + m] = '\0';
    return s;
}

void nfv_error_scope_set(const char *s)
{
    if (!s) scope[0] = '\0';
    else snprintf(scope, sizeof scope, "%s", s);
}

/* Used by nfv_cl_fail in src/runtime/context.c. */
const char *nfv_error_scope_get(void) { return scope; }
