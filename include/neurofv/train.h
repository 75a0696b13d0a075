/* Training a model: one optimizer step on a host batch, prediction, and
 * checkpoints that carry the optimizer state so --resume continues exactly.
 *
 * A training step: forward in training mode on x (N, C, D, H, W), the head's
 * loss (softmax cross-entropy with optional class weights / binary
 * cross-entropy with logits (pos_weight) / MSE), backward with parameter
 * gradients, then Adam or SGD on every parameter (PyTorch semantics, see
 * ops.h).  The epoch loop with datasets lives in `neurofv train` (src/cmd_train.c). */
#ifndef NEUROFV_TRAIN_H
#define NEUROFV_TRAIN_H

#include "neurofv/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nfv_optimizer_kind { NFV_OPT_ADAM = 0, NFV_OPT_SGD } nfv_optimizer_kind;

typedef struct nfv_optim_config {
    nfv_optimizer_kind kind;
    float lr, weight_decay;
    float beta1, beta2, eps;  /* Adam */
    float momentum;           /* SGD */
} nfv_optim_config;
/* Adam, lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay; SGD momentum 0.9. */
void nfv_optim_config_default(nfv_optim_config *c);

typedef struct nfv_trainer {
    nfv_model *model;         /* not owned */
    nfv_context *ctx;
    nfv_optim_config opt;
    int step;                 /* optimizer steps taken (Adam's bias correction uses step + 1) */
    float *class_weights;     /* softmax: K weights, binary: 2 (pos_weight = w1 / w0); NULL = none */
    nfv_tensor x, targets, loss, dout, weights;
    int batch;
} nfv_trainer;

/* class_weights: model->class_count values or NULL (copied). */
nfv_status nfv_trainer_create(nfv_context *ctx, nfv_model *model, const nfv_optim_config *opt,
                              const float *class_weights, nfv_trainer **out);
void nfv_trainer_free(nfv_trainer *t);

/* One optimizer step on x (n*C*D*H*W floats) with targets (n floats: class
 * index, or the regression value); *loss (may be NULL) receives the batch
 * loss before the update, outputs (may be NULL; n * outputs floats) the
 * model's outputs before the update. */
nfv_status nfv_trainer_step(nfv_trainer *t, const float *x, const float *targets, int n, float *loss, float *outputs);

/* Eval-mode outputs (logits / value) for n samples, computed in chunks of
 * `batch` (padded), outputs n * outputs floats. */
nfv_status nfv_model_predict(nfv_model *m, nfv_context *ctx, const float *x, int n, int batch, float *outputs);
/* The same over dataset rows read through a volume cache (whose grid is the
 * model's): outputs n * outputs floats for rows[0..n). */
nfv_status nfv_model_predict_rows(nfv_model *m, nfv_context *ctx, nfv_volume_cache *cache, const int *rows, int n,
                                  int batch, float *outputs);
/* Class probabilities of one output row: softmax, or (1 - s, s) with s =
 * sigmoid(logit) for a binary head; k = class_count values. */
void nfv_model_probabilities(const nfv_model *m, const float *row, double *prob);

/* Checkpoint = model file + optimizer state ("optim.<layer>.<param>.m|v")
 * + metadata (optimizer, step, dropout seed) + extra key/value pairs given
 * here (epoch, RNG seed, best metric, ...).  Temp file + rename. */
nfv_status nfv_checkpoint_save(const nfv_trainer *t, const char *path, int n_extra, const char *const *keys,
                               const char *const *values);
/* Load model and trainer from a checkpoint; *meta keeps the file open for
 * the caller's extra keys (nfv_st_meta); free with nfv_st_free. */
nfv_status nfv_checkpoint_load(nfv_context *ctx, const char *path, nfv_model **model, nfv_trainer **trainer,
                               nfv_st_file *meta);

#ifdef __cplusplus
}
#endif
#endif
