/* Device tensors; see include/neurofv/tensor.h. */
#include "neurofv/tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

size_t nfv_shape_numel(int ndim, const int *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

const char *nfv_shape_str(const nfv_tensor *t, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? "x%d" : "%d", t->shape[i]);
    return buf;
}

nfv_status nfv_tensor_create(nfv_context *ctx, nfv_tensor *t, int ndim, const int *shape)
{
    memset(t, 0, sizeof *t);
    if (ndim < 1 || ndim > NFV_MAX_DIMS) return nfv_fail(NFV_ERR_INVALID_ARG, "tensor: %d dimensions (1-5 allowed)", ndim);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "tensor: dimension %d has size %d", i, shape[i]);
        t->shape[i] = shape[i];
    }
    t->ndim = ndim;
    t->numel = nfv_shape_numel(ndim, shape);
    cl_int err;
    /* A few floats of slack at the end let vectorized kernels read a whole
     * vector past the last element without a bounds branch. */
    size_t bytes = (t->numel + 64) * sizeof(float);
    t->buf = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        char s[64];
        nfv_status st = nfv_cl_fail(err, "clCreateBuffer", nfv_shape_str(t, s, sizeof s), __FILE__, __LINE__);
        memset(t, 0, sizeof *t);
        return st;
    }
    float zero = 0.0f;
    err = clEnqueueFillBuffer(nfv_context_queue(ctx), t->buf, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(t->buf);
        memset(t, 0, sizeof *t);
        return nfv_cl_fail(err, "clEnqueueFillBuffer", "tensor zero", __FILE__, __LINE__);
    }
    return NFV_OK;
}

nfv_status nfv_tensor_create_dims(nfv_context *ctx, nfv_tensor *t, int ndim, ...)
{
    int shape[NFV_MAX_DIMS] = {0};
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim && i < NFV_MAX_DIMS; i++) shape[i] = va_arg(ap, int);
    va_end(ap);
    return nfv_tensor_create(ctx, t, ndim, shape);
}

void nfv_tensor_free(nfv_tensor *t)
{
    if (t && t->buf && !t->is_view) clReleaseMemObject(t->buf);
    if (t) memset(t, 0, sizeof *t);
}

nfv_status nfv_tensor_upload(nfv_context *ctx, nfv_tensor *t, const float *host)
{
    NFV_CL_CHECK(clEnqueueWriteBuffer(nfv_context_queue(ctx), t->buf, CL_TRUE, 0, t->numel * sizeof(float), host, 0,
                                      NULL, NULL),
                 "clEnqueueWriteBuffer", "tensor upload");
    return NFV_OK;
}

nfv_status nfv_tensor_download(nfv_context *ctx, const nfv_tensor *t, float *host)
{
    NFV_CL_CHECK(clEnqueueReadBuffer(nfv_context_queue(ctx), t->buf, CL_TRUE, 0, t->numel * sizeof(float), host, 0,
                                     NULL, NULL),
                 "clEnqueueReadBuffer", "tensor download");
    return NFV_OK;
}

nfv_status nfv_tensor_fill(nfv_context *ctx, nfv_tensor *t, float value)
{
    NFV_CL_CHECK(clEnqueueFillBuffer(nfv_context_queue(ctx), t->buf, &value, sizeof value, 0,
                                     t->numel * sizeof(float), 0, NULL, NULL),
                 "clEnqueueFillBuffer", "tensor fill");
    return NFV_OK;
}

nfv_status nfv_tensor_copy(nfv_context *ctx, nfv_tensor *dst, const nfv_tensor *src)
{
    if (dst->numel != src->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "tensor copy: %zu elements into %zu", src->numel, dst->numel);
    NFV_CL_CHECK(clEnqueueCopyBuffer(nfv_context_queue(ctx), src->buf, dst->buf, 0, 0, src->numel * sizeof(float), 0,
                                     NULL, NULL),
                 "clEnqueueCopyBuffer", "tensor copy");
    return NFV_OK;
}

nfv_status nfv_tensor_copy_range(nfv_context *ctx, nfv_tensor *dst, size_t dst_offset, const nfv_tensor *src,
                                 size_t src_offset, size_t count)
{
    if (src_offset + count > src->numel || dst_offset + count > dst->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "tensor copy: elements [%zu, %zu) of %zu into [%zu, %zu) of %zu", src_offset,
                        src_offset + count, src->numel, dst_offset, dst_offset + count, dst->numel);
    if (!count) return NFV_OK;
    NFV_CL_CHECK(clEnqueueCopyBuffer(nfv_context_queue(ctx), src->buf, dst->buf, src_offset * sizeof(float),
                                     dst_offset * sizeof(float), count * sizeof(float), 0, NULL, NULL),
                 "clEnqueueCopyBuffer", "tensor copy");
    return NFV_OK;
}

nfv_status nfv_tensor_view(const nfv_tensor *src, nfv_tensor *view, int ndim, const int *shape)
{
    size_t n = nfv_shape_numel(ndim, shape);
    if (ndim < 1 || ndim > NFV_MAX_DIMS || n != src->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "tensor view: %zu elements cannot be viewed as %zu", src->numel, n);
    memset(view, 0, sizeof *view);
    view->buf = src->buf;
    view->ndim = ndim;
    for (int i = 0; i < ndim; i++) view->shape[i] = shape[i];
    view->numel = n;
    view->is_view = 1;
    return NFV_OK;
}
