/* Shared by model_run.c (forward) and model_backward.c; not public. */
#ifndef NEUROFV_MODEL_RUN_H
#define NEUROFV_MODEL_RUN_H

#include "model/model_internal.h"

/* (N, shape...) of a per-sample shape into out; returns its ndim. */
int nfv_batched_shape(int n, int ndim, const int *shape, int *out);
/* A tensor header over buf with the given shape (no allocation, a view). */
nfv_tensor nfv_shaped_tensor(cl_mem buf, int ndim, const int *shape);
/* The conv, BatchNorm and ReLU outputs wait for the first forward that
 * writes them (lazy: a header with the shape and no buffer until then);
 * nfv_model_layer_output allocates l's if it is still such a header. */
int nfv_model_lazy_output(const nfv_layer *l);
nfv_status nfv_model_layer_output(nfv_context *ctx, nfv_layer *l);

/* Op parameters of a layer spec. */
void nfv_layer_conv_params(const nfv_layer_spec *s, nfv_conv3d_params *p);
void nfv_layer_pool_params(const nfv_layer_spec *s, nfv_pool3d_params *p);
nfv_activation nfv_layer_activation(nfv_layer_kind k);

/* Eval-mode fusion (model_fuse.c).  The last layer of the conv -> BN [->
 * ReLU [-> max pool]] group layer i starts in a forward up to upto, or i when it starts
 * none; run a group on x into its last layer's output; backward from the
 * gradient dy at a fused layer's output to dx at its group's input (dx NULL:
 * nothing to do; param_grads: an error). */
int nfv_fuse_group_end(const nfv_model *m, const nfv_context *ctx, int i, int upto, int training);
nfv_status nfv_fused_forward(nfv_model *m, nfv_context *ctx, int head, int tail, const nfv_tensor *x);
nfv_status nfv_fused_backward(nfv_model *m, nfv_context *ctx, int tail, const nfv_tensor *dy, int param_grads,
                              nfv_tensor *dx);
/* Training-mode fusion: 1 when BatchNorm i computes the output of ReLU i + 1
 * (<= upto) in a training forward, its own output never written. */
int nfv_train_fuses_bn_relu(const nfv_model *m, int i, int upto);

#endif
