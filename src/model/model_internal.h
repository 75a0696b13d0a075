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

/* ---- graphs (model_graph.c, model_presets.c) ---- */

/* The op word of a kind ("conv", "add", ...). */
const char *nfv_layer_op_word(nfv_layer_kind k);
/* 1 unless a is a plain sequential list the spec syntax can write. */
int nfv_arch_is_graph(const nfv_arch *a);
/* Tensors a node keeps in the model file: parameters then buffers. */
int nfv_spec_tensor_count(const nfv_layer_spec *l);
/* The JSON form (model_graph.c); malloc'ed text or NULL when out of memory. */
char *nfv_arch_to_json(const nfv_arch *a);
nfv_status nfv_arch_from_json(const char *text, nfv_arch *out);
/* Spec text for a sequential arch, else the JSON form; malloc'ed. */
char *nfv_arch_to_text(const nfv_arch *a);
/* A graph preset (resnet10, resnet18, densenet, sfcn, with arguments):
 * returns 1 and sets *status when spec names one, else 0. */
int nfv_arch_graph_preset(const char *spec, int classes, nfv_arch *out, nfv_status *status);

/* A model from an architecture (copied) for input (C, D, H, W) as nfv_model_new. */
nfv_status nfv_model_new_from_arch(const nfv_arch *arch, const int input_shape[4], nfv_model **out);

/* Name in the model file of tensor t of layer l (parameters, then BN running
 * mean and var, or a constant's value) into buf; the nn.Sequential name
 * "<index>.weight" unless the spec names it. */
const char *nfv_layer_tensor_name(const nfv_layer *l, int t, char *buf, size_t cap);
/* The device tensor t of layer l (same order), or NULL. */
nfv_tensor *nfv_layer_tensor(nfv_layer *l, int t);

#endif
