/* Training a model: one optimizer step on a host batch, prediction, and
 * checkpoints that carry the optimizer state so --resume continues exactly.
 *
 * A training step: forward in training mode on x (N, C, D, H, W), the head's
 * loss (softmax cross-entropy with optional class weights / binary
 * cross-entropy with logits (pos_weight) / MSE), backward with parameter
 * gradients, then Adam or SGD on every parameter (PyTorch semantics, see
 * ops.h).  Steps, prediction and checkpoints: src/model/train.c.  The epoch
 * loop over a dataset (nfv_train_run, below): src/model/train_loop.c, with
 * its shuffles, augmentation and learning-rate schedule in train_schedule.c;
 * `neurofv train` (src/cli/cmd_train.c) parses arguments and prints. */
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

/* The loss of a regression head, on standardized targets (model.h,
 * target_mean): mean squared error, or Huber with delta in SD units. */
typedef enum nfv_reg_loss { NFV_LOSS_MSE = 0, NFV_LOSS_HUBER } nfv_reg_loss;
/* "mse", "huber". */
const char *nfv_reg_loss_name(nfv_reg_loss l);
nfv_status nfv_reg_loss_parse(const char *s, nfv_reg_loss *out);

typedef struct nfv_trainer {
    nfv_model *model;         /* not owned */
    nfv_context *ctx;
    nfv_optim_config opt;
    int step;                 /* optimizer steps taken (Adam's bias correction uses step + 1) */
    float *class_weights;     /* softmax: K weights, binary: 2 (pos_weight = w1 / w0); NULL = none */
    nfv_reg_loss reg_loss;    /* regression head: MSE (default) or Huber */
    float huber_delta;        /* Huber's delta in SD units, 1 unless set after nfv_trainer_create */
    nfv_tensor x, targets, loss, dout, weights;
    int batch;
} nfv_trainer;

/* class_weights: model->class_count values or NULL (copied). */
nfv_status nfv_trainer_create(nfv_context *ctx, nfv_model *model, const nfv_optim_config *opt,
                              const float *class_weights, nfv_trainer **out);
void nfv_trainer_free(nfv_trainer *t);

/* One optimizer step on x (n*C*D*H*W floats) with targets (n floats: class
 * index, or the standardized regression target (y - target_mean) /
 * target_sd); *loss (may be NULL) receives the batch
 * loss before the update, outputs (may be NULL; n * outputs floats) the
 * model's outputs before the update. */
nfv_status nfv_trainer_step(nfv_trainer *t, const float *x, const float *targets, int n, float *loss, float *outputs);

/* One data-parallel step (include/neurofv/dist.h): the global batch of
 * db->total samples is split over the ranks; this rank passes its own
 * db->count volumes x (from sample db->offset on) and the targets of the
 * whole batch (db->total floats: the loss's normaliser is the batch's).
 * BatchNorm's statistics and dropout's masks are the whole batch's, each
 * rank's loss gradient is its share of the global mean, and the parameter
 * gradients are summed over the ranks (one all-reduce) before the update, so
 * every rank takes the step one process would take on the whole batch.
 * *loss: the global batch loss; outputs: this rank's db->count rows.  With
 * one rank (or db NULL) this is nfv_trainer_step. */
nfv_status nfv_trainer_step_dist(nfv_trainer *t, const float *x, const float *targets, const nfv_dist_batch *db,
                                 float *loss, float *outputs);

/* Eval-mode outputs (logits / value) for n samples, computed in chunks of
 * `batch` (padded), outputs n * outputs floats.  A regression head's value
 * is in the label's units: target_mean + target_sd * the raw output (the
 * only place it is de-standardized; see model.h). */
nfv_status nfv_model_predict(nfv_model *m, nfv_context *ctx, const float *x, int n, int batch, float *outputs);
/* The same over dataset rows read through a volume cache (whose grid is the
 * model's): outputs n * outputs floats for rows[0..n). */
nfv_status nfv_model_predict_rows(nfv_model *m, nfv_context *ctx, nfv_volume_cache *cache, const int *rows, int n,
                                  int batch, float *outputs);
/* The same split over the ranks (include/neurofv/dist.h): each predicts a
 * contiguous block of the rows, every rank receives all n rows' outputs.
 * One process: nfv_model_predict_rows. */
nfv_status nfv_model_predict_rows_dist(nfv_model *m, nfv_context *ctx, nfv_volume_cache *cache, const int *rows,
                                       int n, int batch, float *outputs);
/* Class probabilities of one output row: softmax, or (1 - s, s) with s =
 * sigmoid(logit) for a binary head; k = class_count values. */
void nfv_model_probabilities(const nfv_model *m, const float *row, double *prob);

/* Checkpoint = model file + optimizer state ("optim.<layer>.<param>.m|v")
 * + metadata (optimizer, step, dropout seed; regression: "loss" mse|huber,
 * "huber_delta") + extra key/value pairs given
 * here (epoch, RNG seed, best metric, ...).  Temp file + rename. */
nfv_status nfv_checkpoint_save(const nfv_trainer *t, const char *path, int n_extra, const char *const *keys,
                               const char *const *values);
/* Load model and trainer from a checkpoint; *meta keeps the file open for
 * the caller's extra keys (nfv_st_meta); free with nfv_st_free. */
nfv_status nfv_checkpoint_load(nfv_context *ctx, const char *path, nfv_model **model, nfv_trainer **trainer,
                               nfv_st_file *meta);

/* ---- The epoch loop (src/model/train_loop.c, train_schedule.c) ----------
 *
 * nfv_train_run trains a model on a dataset's train split; each epoch:
 *   1. sets the learning rate of the schedule (nfv_train_lr);
 *   2. visits the train rows in the order nfv_train_shuffle(seed, epoch)
 *      gives, in batches of o->batch (the last partial batch is dropped),
 *      each volume (D, H, W) augmented by nfv_train_augment(seed, epoch, its
 *      position in the epoch), one optimizer step per batch;
 *   3. validates on the val split (loss, accuracy, balanced accuracy, AUC;
 *      regression: loss, MAE, RMSE, R^2) and writes the model to o->out
 *      when the balanced accuracy improves (regression: when the MAE falls;
 *      ties: lower loss), or every epoch when there is no val split;
 *   4. writes the checkpoint o->out + ".ckpt" (model, optimizer state and
 *      epoch, best, seed, base_lr, schedule) and a row of o->out + ".log.csv".
 * Every random draw is a hash of (seed, epoch, position), not a running
 * generator, and dropout's seed is in the checkpoint, so a run resumed after
 * epoch e gives the same bytes as the run that was not interrupted.
 *
 * Regression (o->head NFV_HEAD_REGRESSION, ds from nfv_dataset_load_numeric):
 * targets are standardized with the mean and population SD of the train
 * split's labels, kept in the model (target_mean, target_sd); the loss (MSE
 * or Huber) is on standardized targets, MAE/RMSE in the label's units. */

typedef enum nfv_lr_schedule {
    NFV_LR_DEFAULT = 0,  /* constant; on resume, the checkpoint's schedule */
    NFV_LR_CONSTANT,
    NFV_LR_COSINE        /* base down to base/100 at the last epoch */
} nfv_lr_schedule;
/* "constant" (NFV_LR_DEFAULT too) or "cosine". */
const char *nfv_lr_schedule_name(nfv_lr_schedule s);
/* "constant" or "cosine". */
nfv_status nfv_lr_schedule_parse(const char *s, nfv_lr_schedule *out);

/* Learning rate of epoch (0-based) of epochs: base, or under the cosine
 * schedule base/100 + (base - base/100) (1 + cos(pi epoch / (epochs - 1))) / 2
 * (torch's CosineAnnealingLR with eta_min = base/100, stepped per epoch;
 * base when epochs < 2). */
float nfv_train_lr(nfv_lr_schedule s, float base, int epoch, int epochs);

/* Fisher-Yates shuffle of idx[0..n) drawn from (seed, epoch) alone. */
void nfv_train_shuffle(int *idx, int n, unsigned long long seed, int epoch);

typedef struct nfv_augment {
    int shift;  /* shift by up to +-shift voxels per axis, zeros shifted in; 0: none */
    int flip;   /* mirror along x (left-right in RAS grids) with probability 1/2 */
} nfv_augment;
/* "shift=N", "flip" or both comma-separated; NULL: none. */
nfv_status nfv_augment_parse(const char *s, nfv_augment *out);
/* dst (D, H, W) = src (D, H, W) augmented as drawn for the sample at
 * position `sample` of epoch `epoch` (0-based); a = NULL or all 0: a copy.
 * dst and src must not overlap. */
void nfv_train_augment(const nfv_augment *a, unsigned long long seed, int epoch, int sample, const float *src,
                       float *dst, int D, int H, int W);

/* The results of one epoch. */
typedef struct nfv_epoch_result {
    int epoch;                    /* 0-based (the log and messages count from 1) */
    float lr;
    double train_loss, train_acc; /* mean batch loss, accuracy before each step (regression: NaN) */
    double val_loss, val_acc, val_bacc, val_auc; /* NaN without a val split (and for regression, but the loss) */
    double train_mae;             /* regression: mean |prediction - label| before each step, label units; else NaN */
    double val_mae, val_rmse, val_r2; /* regression on the val split, label units; else NaN */
    double seconds;               /* wall time of the epoch, checkpoint included */
    int saved;                    /* the model file was written */
} nfv_epoch_result;

typedef enum nfv_train_event_kind {
    NFV_TRAIN_START,        /* model, cache and log ready, before the first epoch */
    NFV_TRAIN_EPOCH_BEGIN,  /* before an epoch's first batch */
    NFV_TRAIN_BATCH,        /* after each optimizer step */
    NFV_TRAIN_BATCHES_END,  /* after an epoch's batches (also when one failed), before validation */
    NFV_TRAIN_EPOCH_END     /* validated, saved, checkpointed and logged */
} nfv_train_event_kind;

/* What nfv_train_run reports through o->on_event; valid during the call. */
typedef struct nfv_train_event {
    nfv_train_event_kind kind;
    const nfv_model *model;
    int resumed;                  /* continuing from the checkpoint */
    int epoch, epochs;            /* 0-based epoch (START: the first to run), total epochs */
    int train_count, val_count, batch_size; /* rows of the splits; batch after the cut to train_count */
    int batch, batches;           /* BATCH: batches done, of batches per epoch */
    double loss, acc;             /* BATCH: running mean train loss and accuracy of the epoch */
    double mae;                   /* BATCH, regression: running train MAE in label units (acc is NaN) */
    const nfv_epoch_result *result; /* EPOCH_END */
    const char *checkpoint;       /* o->out + ".ckpt" */
} nfv_train_event;

typedef struct nfv_train_options {
    /* New runs only; a resumed run takes model, optimizer, grid and seed
     * from the checkpoint. */
    const char *arch;             /* spec or preset ("ref4") */
    nfv_grid grid;                /* model grid (nx, ny, nz), voxel_mm, norm; input (1, nz, ny, nx) */
    nfv_head head;                /* softmax, binary or regression */
    nfv_reg_loss loss;            /* regression: MSE (default) or Huber */
    float huber_delta;            /* Huber's delta in SD units; NaN: 1 */
    nfv_optim_config opt;         /* kind, momentum, weight decay, betas (lr: see lr below) */
    const char *class_weights;    /* NULL, "auto" (n / (K * count) over the train split) or "W1,W2,.." (K numbers) */
    unsigned long long seed;      /* initialization, shuffles, augmentation, dropout */
    /* Every run. */
    float lr;                     /* base learning rate; NaN: 1e-3, on resume the checkpoint's */
    nfv_lr_schedule schedule;
    nfv_augment augment;
    int epochs;                   /* total, counting those before a resume */
    int batch;                    /* >= 1; cut to the number of train rows */
    const char *out;              /* model file; also out.ckpt and out.log.csv */
    int resume;                   /* continue from out.ckpt */
    size_t cache_bytes;           /* preprocessed volume cache */
    void (*on_event)(void *user, const nfv_train_event *e); /* may be NULL */
    void *user;
} nfv_train_options;

/* ref4 on the 2 mm MNI grid (91 x 109 x 91, zscore-nonzero), softmax, Adam,
 * lr NaN (1e-3), constant schedule, no augmentation, 10 epochs, batch 4,
 * seed 1, 4 GiB cache; out (required) is the caller's to set. */
void nfv_train_options_default(nfv_train_options *o);

typedef struct nfv_train_result {
    double best_bacc, best_loss;  /* best validation balanced accuracy and its loss (-1, inf: none) */
    double best_mae;              /* regression: best validation MAE, label units (inf: none; best_loss is its loss) */
    int start_epoch;              /* first epoch run (0, or where a resume began) */
    int epochs_run;
} nfv_train_result;

/* The device memory of a training run (src/model/memory.c): the model and
 * its gradients, the optimizer state, activations at batch `batch`, backward
 * and scratch buffers, the trainer's batch and validation's input.  e is
 * filled from 0. */
void nfv_train_memory(const nfv_model *m, const nfv_context *ctx, nfv_optimizer_kind opt, int batch,
                      nfv_memory_estimate *e);
/* Before nfv_train_run: whether the run o would fit ctx's device (a new
 * run: the architecture on o's grid; a resumed one: the checkpoint's model
 * and optimizer, read from o->out.ckpt); the batch is o->batch cut to the
 * train rows of ds (under mpirun: this rank's block of it, ceil(batch /
 * ranks)).  NFV_ERR_UNSUPPORTED with needed vs available MiB and
 * the largest batch that fits when it does not (nfv_memory_check_batch).
 * A checkpoint that cannot be read is left to nfv_train_run to report. */
nfv_status nfv_train_memory_check(const nfv_context *ctx, const nfv_dataset *ds, const nfv_train_options *o);

/* Train as described above on ds (classes and splits of the CSV) with the
 * device of ctx; result may be NULL. */
nfv_status nfv_train_run(nfv_context *ctx, const nfv_dataset *ds, const nfv_train_options *o,
                         nfv_train_result *result);

#ifdef __cplusplus
}
#endif
#endif
