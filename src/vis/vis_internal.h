/* Internals of feature visualization shared by src/vis/vis_*.c; the public
 * API is include/neurofv/vis.h.
 *
 *   vis_options.c    options: table, defaults, parsing, checks
 *   vis_inputs.c     template and mask on the model grid
 *   vis_objective.c  what each target kind means: its seed and its readout
 *   vis_loop.c       one batch of samples through the optimization loop
 *   vis_log.c        what the loop records per sample
 *   vis_run.c        nfv_visualize: samples into batches, best start per target */
#ifndef NEUROFV_VIS_INTERNAL_H
#define NEUROFV_VIS_INTERNAL_H

#include <stdint.h>

#include "neurofv/vis.h"

/* ---- inputs (vis_inputs.c) ---------------------------------------------- */

/* The optimization mask on the model grid, (D, H, W) floats, 1 inside and 0
 * outside: "brain" = the template > 0; "ball=R[@X,Y,Z]" = a ball of radius R mm
 * centred at world (X, Y, Z) mm, by default at the centroid of the
 * template's white matter (its brightest quarter); else a file resampled
 * (> 0.5).
 * *mask is malloc'ed; an error when no voxel is inside. */
nfv_status vis_mask_on_grid(const nfv_model *m, const char *spec, float **mask);
/* --init subject=FILE: the file preprocessed to the model grid as the
 * training data were (nfv_preprocess with the model's grid and norm). */
nfv_status vis_subject_on_grid(const nfv_model *m, const char *path, nfv_volume *out);

/* ---- samples ------------------------------------------------------------ */

/* One optimized volume: a target and one of its random starts. */
typedef struct vis_sample {
    int target;   /* index into the targets */
    int start;
} vis_sample;

/* ---- objectives (vis_objective.c) --------------------------------------- */

/* The objective of a batch of N samples whose targets share one layer, and
 * its gradient.  With a the layer's activation, (N, C, D, H, W) or (N, F):
 *   seed  = -d objective / d a (what the backward pass starts from), the same
 *           shape as a; constant for every kind but the layer objective,
 *           whose seed (2 a / numel) is rebuilt from a every step;
 *   read  = the objective of each sample, from a (and the seed, for the
 *           kinds linear in a). */
typedef struct vis_objective {
    nfv_context *ctx;
    const nfv_model *m;
    const nfv_layer *layer;     /* the targets' layer */
    const nfv_target *targets;  /* sample n's target is targets[smp[n].target] */
    const vis_sample *smp;
    int N;
    size_t per;                 /* activation floats per sample: C*D*H*W or F */
    size_t sp;                  /* floats per channel map: D*H*W (1 for an (F) output) */
    nfv_tensor seed;            /* the activation's shape */
    nfv_tensor value;           /* (N) the layer objective: -sign mean(a^2) */
    float *seed_host;           /* (N, per) the constant seed */
    float *scratch;             /* one channel map, or one sample for linear readouts */
    float *fc_w;                /* logit cells: the final Linear's weights (K, F), while building the seed */
} vis_objective;

/* Reads count floats of t from element offset on (blocking). */
nfv_status vis_read_floats(nfv_context *ctx, const nfv_tensor *t, size_t offset, size_t count, float *out);

/* Builds and uploads the constant seed of smp[0..N) (targets on one layer,
 * which vis_same_batch guarantees). */
nfv_status vis_objective_init(vis_objective *ob, nfv_context *ctx, const nfv_model *m, const nfv_target *targets,
                              const vis_sample *smp, int N);
/* The seed for this step's activation act (a no-op for constant seeds). */
nfv_status vis_objective_step(vis_objective *ob, const nfv_tensor *act);
/* obj[N]: the objective of every sample, after vis_objective_step on act. */
nfv_status vis_objective_read(vis_objective *ob, const nfv_tensor *act, float *obj);
void vis_objective_free(vis_objective *ob);
/* Targets that may share a batch: the same layer and, when the seed is
 * rebuilt per step for the whole batch (layer objective), the same sign. */
int vis_same_batch(const nfv_target *a, const nfv_target *b);

/* ---- one batch (vis_loop.c, vis_log.c) ---------------------------------- */

/* What the loop records for one sample. */
typedef struct vis_log {
    int count, cap;
    int *step;
    float *objective;
    int term_count;
    int *term_step;
    float *l1, *l2, *tv;
    float final_objective;
    float clean_objective;
    float *image;       /* D*H*W, the final image */
    float *change;      /* template init: the final change */
    float *importance;  /* --importance: mean |d objective / d image| over the steps */
    float *snap[NFV_VIS_MAX_SNAPSHOTS];
} vis_log;

/* Appends (step, objective) / (step, l1, l2, tv) to the log. */
nfv_status vis_log_push(vis_log *lg, int step, float obj);
nfv_status vis_log_terms(vis_log *lg, int step, float l1, float l2, float tv);
void vis_log_free(vis_log *lg);

/* Where a batch reports progress: batch index of nb. */
typedef struct vis_progress {
    nfv_vis_progress_fn fn;
    void *user;
    int batch, batches;
} vis_progress;

/* Optimizes the N samples smp (targets on one layer) together; templ and
 * mask (D*H*W floats, may be NULL) come from the options; logs[N] receive
 * the results. */
nfv_status vis_run_batch(nfv_context *ctx, nfv_model *m, const nfv_target *targets, const vis_sample *smp, int N,
                         const nfv_vis_options *o, const float *templ, const float *mask, const vis_progress *progress,
                         vis_log *logs);

/* ---- diversity (diversity.c) -------------------------------------------- */

/* --diversity: a second backward from the diversity layer, added to dx. */
typedef struct vis_diversity {
    int layer;          /* resolved on first use */
    size_t per;         /* activation floats per sample at the layer: C*D*H*W */
    nfv_tensor seed;    /* (N, C, D, H, W) d loss / d a */
    nfv_tensor dx;      /* (N, 1, D, H, W) its input gradient */
    float *host;
    double *ad, *gd;
} vis_diversity;
/* o->diversity_layer (name or index; "" = the last (C, D, H, W) layer before
 * the target's), -1 when there is none. */
int vis_diversity_layer(const nfv_model *m, const char *name, int target_layer);
/* After the objective's backward (the forward reached the target's layer):
 * dx += the diversity loss's input gradient, per group of consecutive
 * samples with one target. */
nfv_status vis_diversity_add(vis_diversity *d, nfv_context *ctx, nfv_model *m, const nfv_vis_options *o,
                             const nfv_target *targets, const vis_sample *smp, int N, nfv_tensor *dx);
void vis_diversity_free(vis_diversity *d);

/* ---- feature accentuation (accentuate.c) --------------------------------- */

/* --stay LAYER=W: keeps the activations at LAYER near the subject's. */
typedef struct vis_stay {
    int layer, n;
    size_t per;         /* activation floats per sample at the layer */
    nfv_tensor seed;    /* (N, layer shape) d loss / d a */
    nfv_tensor dx;      /* (N, 1, D, H, W) */
    float *ref;         /* (N, per) the subject's activations */
    float *host;
} vis_stay;
/* subject (N, 1, D, H, W): the template copies (the subject). */
nfv_status vis_stay_init(vis_stay *st, nfv_context *ctx, nfv_model *m, const nfv_vis_options *o, int target_layer,
                         const nfv_tensor *subject, const nfv_tensor *dx);
/* After the objective's backward: dx += the penalty's input gradient. */
nfv_status vis_stay_add(vis_stay *st, nfv_context *ctx, nfv_model *m, const nfv_vis_options *o, nfv_tensor *dx);
void vis_stay_free(vis_stay *st);

/* Monotonic seconds. */

#endif
