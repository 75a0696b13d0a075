/* Reusable device scratch buffers held by the context; see src/runtime/internal.h.
 * Allocating a fresh buffer per call cost more than the kernels using it on
 * the CPU device (page faults on tens of MB), so they are kept and grown. */
#include <stdlib.h>

#include "runtime/internal.h"

nfv_status nfv_scratch_get(nfv_context *ctx, nfv_scratch_slot slot, size_t bytes, const char *what, cl_mem *out)
{
    *out = NULL;
    if ((int)slot < 0 || slot >= NFV_SCRATCH_SLOTS)
        return nfv_fail(NFV_ERR_INVALID_ARG, "scratch slot %d for %s (0-%d)", (int)slot, what, NFV_SCRATCH_SLOTS - 1);
    if (bytes == 0) bytes = sizeof(float);
    if (!ctx->scratch[slot] || ctx->scratch_bytes[slot] < bytes) {
        /* Commands in flight may still use the smaller buffer, and the
         * driver frees it only after them: wait for them, so the old and
         * the new buffer are never held at once (the memory estimate
         * counts a slot at its largest size only).  Slots grow during the
         * first steps of a run only. */
        if (ctx->scratch[slot]) {
            cl_int err = clFinish(ctx->queue);
            if (err != CL_SUCCESS) return nfv_cl_fail(err, "clFinish", what, __FILE__, __LINE__);
            clReleaseMemObject(ctx->scratch[slot]);
        }
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

/* ---- derived weights, kept while frozen ----------------------------------- */

struct nfv_derived {
    cl_mem source, buf;
    int kind;
    size_t bytes;
};

void nfv_context_freeze_weights(nfv_context *ctx, int on)
{
    if (!ctx) return;
    if (on) {
        if (ctx->freeze_depth++ == 0) ctx->freeze_generation++;
        return;
    }
    if (ctx->freeze_depth > 0 && --ctx->freeze_depth == 0) nfv_derived_release(ctx);
}

int nfv_derived_frozen(const nfv_context *ctx) { return ctx->freeze_depth > 0; }

unsigned long nfv_context_frozen_generation(const nfv_context *ctx)
{
    return ctx && ctx->freeze_depth > 0 ? ctx->freeze_generation : 0;
}

nfv_status nfv_derived_get(nfv_context *ctx, cl_mem source, int kind, size_t bytes, const char *what, cl_mem *out,
                           int *fresh)
{
    *out = NULL;
    *fresh = 1;
    for (int i = 0; i < ctx->derived_count; i++) {
        const struct nfv_derived *e = &ctx->derived[i];
        if (e->source == source && e->kind == kind && e->bytes == bytes) {
            *out = e->buf;
            *fresh = 0;
            return NFV_OK;
        }
    }
    if (ctx->derived_count == ctx->derived_cap) {
        int cap = ctx->derived_cap ? 2 * ctx->derived_cap : 16;
        struct nfv_derived *grown = realloc(ctx->derived, (size_t)cap * sizeof *grown);
        if (!grown) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of host memory", what);
        ctx->derived = grown;
        ctx->derived_cap = cap;
    }
    cl_int err;
    cl_mem m = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes ? bytes : sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", what, __FILE__, __LINE__);
    ctx->derived[ctx->derived_count++] = (struct nfv_derived){source, m, kind, bytes};
    *out = m;
    return NFV_OK;
}

void nfv_derived_release(nfv_context *ctx)
{
    for (int i = 0; i < ctx->derived_count; i++) clReleaseMemObject(ctx->derived[i].buf);
    free(ctx->derived);
    ctx->derived = NULL;
    ctx->derived_count = ctx->derived_cap = 0;
}
