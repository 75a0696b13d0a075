/* Shared by the model's source files (model.c builds, model_run.c runs,
 * model_io.c reads and writes); not part of the public API. */
#ifndef NEUROFV_MODEL_INTERNAL_H
#define NEUROFV_MODEL_INTERNAL_H

#include "neurofv/model.h"

/* A model from a spec for input (C, D, H, W): arch parsed, every layer's
 * shapes and name laid out, metadata defaults (voxel 2 mm, default affine,
 * zscore-nonzero); no parameters or classes yet.  outputs fills a final
 * "linear" without a size (0: the spec gives it). */
nfv_status nfv_model_new(const char *spec, const int input_shape[4], int outputs, nfv_model **out);

/* Shape of parameter p of layer l into shape; returns its ndim (0: none). */
int nfv_model_param_shape(const nfv_layer *l, int p, int shape[5]);

/* Parameter and gradient tensors (zeros) of every layer, BN running buffers. */
nfv_status nfv_model_alloc_params(nfv_model *m, nfv_context *ctx);

/* count class names (copied; NULL or a NULL entry: "0", "1", ...). */
nfv_status nfv_model_set_classes(nfv_model *m, int count, const char *const *names);

/* A grid centred on the world origin with RAS axes at m->voxel_mm. */
void nfv_model_default_affine(nfv_model *m);

/* Frees the batch's runtime tensors (activations, gradient buffers). */
void nfv_model_free_runtime(nfv_model *m);

#endif
