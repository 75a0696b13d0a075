/* Reusable device scratch buffers held by the context; see src/runtime/internal.h.
 * Allocating a fresh buffer per call cost more than the kernels using it on
 * the CPU device (page faults on tens of MB), so they are kept and grown. */
#include "runtime/internal.h"

nfv_status nfv_scratch_get(nfv_context *ctx, nfv_scratch_slot slot, size_t bytes, const char *what, cl_mem *out)
{
    *out = NULL;
    if ((int)slot < 0 || slot >= NFV_SCRATCH_SLOTS)
        return nfv_fail(NFV_ERR_INVALID_ARG, "scratch slot %d for %s (0-%d)", (int)slot, what, NFV_SCRATCH_SLOTS - 1);
    if (bytes == 0) bytes = sizeof(float);
    if (!ctx->scratch[slot] || ctx->scratch_bytes[slot] < bytes) {
        if (ctx->scratch[slot]) clReleaseMemObject(ctx->scratch[slot]);
        ctx->scratch[slot] = NULL;
        ctx->scratch_bytes[slot] = 0;
        cl_int err;
        cl_mem m = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", what, __FILE__, __LINE__);
        ctx->scratch[slot] = m;
        ctx->scratch_bytes[slot] = bytes;
    }
    *out = ctx->scratch[slot];
    return NFV_OK;
}

void nfv_scratch_release(nfv_context *ctx)
{
    for (int i = 0; i < NFV_SCRATCH_SLOTS; i++) {
        if (ctx->scratch[i]) clReleaseMemObject(ctx->scratch[i]);
        ctx->scratch[i] = NULL;
        ctx->scratch_bytes[i] = 0;
    }
}
