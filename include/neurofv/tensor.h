/* float32 device tensors of up to 5 dimensions, laid out row-major
 * (N, C, D, H, W): the last dimension is contiguous, as in PyTorch. */
#ifndef NEUROFV_TENSOR_H
#define NEUROFV_TENSOR_H

#include "neurofv/context.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NFV_MAX_DIMS 5

typedef struct nfv_tensor {
    cl_mem buf;               /* owned unless created by nfv_tensor_view */
    int ndim;
    int shape[NFV_MAX_DIMS];
    size_t numel;
    int is_view;              /* 1: shares buf with another tensor, free does not release */
} nfv_tensor;

/* Allocate a zero-filled tensor.  t is caller storage; free with nfv_tensor_free. */
nfv_status nfv_tensor_create(nfv_context *ctx, nfv_tensor *t, int ndim, const int *shape);
/* Convenience: shape given as arguments (ndim values). */
nfv_status nfv_tensor_create_dims(nfv_context *ctx, nfv_tensor *t, int ndim, ...);
void nfv_tensor_free(nfv_tensor *t);

/* Blocking copies between host floats (numel of them) and the device. */
nfv_status nfv_tensor_upload(nfv_context *ctx, nfv_tensor *t, const float *host);
nfv_status nfv_tensor_download(nfv_context *ctx, const nfv_tensor *t, float *host);
/* Set every element to value (queued, not waited for). */
nfv_status nfv_tensor_fill(nfv_context *ctx, nfv_tensor *t, float value);
/* dst <- src, same numel (queued). */
nfv_status nfv_tensor_copy(nfv_context *ctx, nfv_tensor *dst, const nfv_tensor *src);

/* Elements [src_offset, src_offset + count) of src into dst from dst_offset (queued). */
nfv_status nfv_tensor_copy_range(nfv_context *ctx, nfv_tensor *dst, size_t dst_offset, const nfv_tensor *src,
                                 size_t src_offset, size_t count);
/* A view of src's buffer with another shape of equal numel (Flatten). */
nfv_status nfv_tensor_view(const nfv_tensor *src, nfv_tensor *view, int ndim, const int *shape);

/* "2x8x91x109x91" into buf; returns buf. */
const char *nfv_shape_str(const nfv_tensor *t, char *buf, size_t cap);
size_t nfv_shape_numel(int ndim, const int *shape);

#ifdef __cplusplus
}
#endif
#endif
