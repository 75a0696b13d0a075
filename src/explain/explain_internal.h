/* Internals shared by the files of src/explain; the public API is
 * include/neurofv/explain.h. */
#ifndef NEUROFV_EXPLAIN_INTERNAL_H
#define NEUROFV_EXPLAIN_INTERNAL_H

#include "neurofv/explain.h"

/* A batch of B model inputs on the device and on the host, reused call
 * after call: fill host_x rows (per floats each) and tg, then run.  A
 * partial batch is padded with copies of its last row, so the model keeps
 * one batch size (no reallocation) and the padding's results are dropped. */
typedef struct explain_batch {
    nfv_context *ctx;
    nfv_model *m;
    int B;
    size_t per;            /* C * D * H * W */
    nfv_tensor x, dx;      /* (B, C, D, H, W) */
    float *host_x, *host_dx; /* (B, per) */
    float *objective;      /* (B) */
    nfv_target *tg;        /* (B) */
} explain_batch;

nfv_status explain_batch_init(explain_batch *b, nfv_context *ctx, nfv_model *m, int B);
void explain_batch_free(explain_batch *b);
/* Objectives of rows [0, k) into b->objective and, when want_grad, their
 * input gradients into b->host_dx. */
nfv_status explain_batch_run(explain_batch *b, int k, int want_grad);

nfv_status explain_occlusion(explain_batch *b, const nfv_target *t, const float *x, const float *baseline,
                             const nfv_explain_options *o, float *map, float *objective);
nfv_status explain_gradcam(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int n, const float *x,
                           const nfv_explain_options *o, float *maps, float *objective);

/* Trilinear upsampling of src (d, h, w) to dst (D, H, W) as PyTorch's
 * F.interpolate(mode="trilinear", align_corners=False). */
void explain_upsample_trilinear(const float *src, int d, int h, int w, float *dst, int D, int H, int W);

#endif
