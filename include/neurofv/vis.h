/* Feature visualization (activation maximization): targets, options, the
 * optimization loop and its outputs.  The comparison of regularization
 * configurations (ground truth, report) is in neurofv/compare.h.
 *
 * One step, all on the device, for a batch of N samples (targets x starts):
 *   param (N,1,D,H,W) -> [Fourier decode] -> change -> [x mask] -> [+ template]
 *     = image (N,1,D,H,W)
 *   image -> [pad P, replicate] (N,1,D+2P,..) -> [jitter / scale / rotate, one
 *     affine warp or an integer shift] -> centre crop (N,1,D,H,W) = model input
 *   model forward up to the target layer only (eval mode) -> objective
 *   seed = -d objective / d activation at that layer -> backward to the input
 *     (no parameter gradients) -> adjoints of crop, warp/shift, pad -> dimage
 *   dimage += gradients of the penalties (on the change) -> [x mask]
 *     -> [Fourier adjoint] -> Adam / SGD step on param;
 *   every K steps a Gaussian blur of the parameter (voxel: a separable blur of
 *   the change; Fourier: the same blur as a per-coefficient Gaussian factor).
 * The host only draws the random transforms (seeded) and reads the objective
 * (a few floats per sample) at logging steps. */
#ifndef NEUROFV_VIS_H
#define NEUROFV_VIS_H

#include "neurofv/model.h"
#include "neurofv/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Targets (src/vis/vis_target.c; objectives: vis_objective.c) ------- *
 *
 * Grammar ([-] = minimize instead of maximize):
 *   [-]LAYER:CHANNEL          mean of one channel of a (C,D,H,W) layer output,
 *                             or one feature of an (F) output (Linear, Flatten)
 *   [-]LAYER:CHANNEL@z,y,x    one neuron (voxel z,y,x of that channel's map);
 *   [-]LAYER:CHANNEL@         ... the centre voxel (D/2, H/2, W/2)
 *   [-]LAYER                  the layer objective mean(a^2) (DeepDream)
 *   [-]logit:CLASS            pre-softmax score of a class (name or index);
 *                             a binary head's negative class is -logit
 *   [-]logit:CLASS@z,y,x      the class evidence of one cell of the map that
 *                             Flatten feeds to the final Linear: for ref4,
 *                             pool4 (64,5,6,5) and cell (z,y,x), the sum over
 *                             channels ch of W[CLASS, ch, z, y, x] a[ch, z, y, x]
 *                             (no bias).  The logit is the bias plus the sum
 *                             over all cells, so this is "what makes this
 *                             region look like CLASS": one localized object
 *                             instead of a texture tiling the whole volume.
 *   [-]logit:CLASS@           ... the centre cell
 *   [-]contrast:CLASS[@...]   the logit minus the mean of the other classes'
 *                             logits (softmax heads; for a binary head the
 *                             same as logit).  Softmax is blind to what raises
 *                             every logit alike, and a class can be recognized
 *                             only through the others' evidence falling (a
 *                             "default" class): its own logit is then flat,
 *                             the contrast is not.  Linear, so it does not
 *                             saturate as log-probabilities do.
 *   LAYER:all, logit:all      every channel / feature / class (expands; also
 *                             contrast:all, logit:all@z,y,x)
 *   [-]output                 a regression model's prediction: the raw value
 *                             of its last layer, in standardized units (the
 *                             network's own scale; label = target_mean +
 *                             target_sd * value, model.h), so output shows
 *                             what raises the prediction (e.g. older brain
 *                             age) and -output what lowers it.  The same
 *                             target as logit:0 on such a model.  On a
 *                             classifier an error pointing to logit:CLASS;
 *                             output:N is unit N of the last layer on any
 *                             model.
 * LAYER is a layer name as `neurofv inspect` prints it (conv1, relu2, fc) or
 * an index.  Errors name what exists (layers, channel range, classes). */

typedef enum nfv_target_kind {
    NFV_TARGET_CHANNEL = 0, /* mean over (D,H,W) of channel `unit` */
    NFV_TARGET_NEURON,      /* activation at (unit, pos) */
    NFV_TARGET_LAYER,       /* mean over the whole layer (per sample) of a^2 */
    NFV_TARGET_FEATURE,     /* feature `unit` of an (F) output (logits included) */
    NFV_TARGET_LOGIT_CELL   /* logit `unit` restricted to cell pos of `layer` (the map before Flatten) */
} nfv_target_kind;

typedef struct nfv_target {
    nfv_target_kind kind;
    int layer;          /* model layer index whose output is the objective */
    int unit;           /* channel or feature; -1 for NFV_TARGET_LAYER */
    int pos[3];         /* NFV_TARGET_NEURON, NFV_TARGET_LOGIT_CELL: z, y, x in the layer's output */
    int minimize;       /* written with a leading '-' */
    float sign;         /* +1 or -1: objective = sign * activation (binary negative class flips it) */
    int is_logit;       /* written as logit:CLASS or contrast:CLASS */
    int contrast;       /* contrast:CLASS: logit minus the mean of the other logits */
    char name[128];     /* canonical text: parses back to this target */
} nfv_target;

/* Parse one target text; `all` expands to several.  *targets is malloc'ed
 * (free()); count receives how many. */
nfv_status nfv_target_parse(const nfv_model *m, const char *text, nfv_target **targets, int *count);
/* Canonical text of a target (as in t->name) into buf; returns buf. */
const char *nfv_target_format(const nfv_model *m, const nfv_target *t, char *buf, size_t cap);
/* A file-name stem: "logit_cube", "conv3_5", "conv1_0_at_3_4_5", "min_conv3_5". */
const char *nfv_target_stem(const nfv_target *t, char *buf, size_t cap);

/* Shards of a sweep: "I/N" with 1 <= I <= N, or "auto": the task of a Slurm
 * job array (I = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1, N =
 * SLURM_ARRAY_TASK_COUNT or MAX - MIN + 1).  Contiguous blocks: unit i of
 * `units` belongs to shard floor(i * N / units) + 1, so the N shards partition
 * the units exactly and differ in size by at most one. */
nfv_status nfv_shard_parse(const char *text, int *index, int *count);
int nfv_shard_contains(int unit, int units, int index, int count);

/* ---- Options (src/vis/vis_options.c) ------------------------------------- */

/* MACO: the phase of the spectrum, magnitude fixed to the model's cohort
 * spectrum (nfv_model.spectrum; src/vis/maco.c). */
typedef enum nfv_vis_param {
    NFV_VIS_PARAM_VOXEL = 0,
    NFV_VIS_PARAM_FOURIER,
    NFV_VIS_PARAM_DCT,
    NFV_VIS_PARAM_MACO
} nfv_vis_param;
typedef enum nfv_vis_init { NFV_VIS_INIT_NOISE = 0, NFV_VIS_INIT_ZEROS, NFV_VIS_INIT_TEMPLATE } nfv_vis_init;

#define NFV_VIS_MAX_SNAPSHOTS 16

typedef struct nfv_vis_options {
    int steps;                 /* 512 */
    float lr;                  /* 0.05 */
    int sgd;                   /* 0: Adam (default), 1: SGD */
    float momentum;            /* SGD momentum, 0.9 */
    float weight_decay;        /* added to the gradient (PyTorch Adam/SGD), 0 */
    unsigned long long seed;   /* 1 */
    int starts;                /* random starts per target, 1 */
    int batch;                 /* samples (targets x starts) per device batch, 8 */
    nfv_vis_param param;       /* voxel */
    float decay;               /* Fourier 1/f exponent, 1 */
    nfv_vis_init init;         /* noise */
    float init_scale;          /* noise: uniform in [-s, s], 0.1 */
    char init_path[1024];      /* template file (NFV_VIS_INIT_TEMPLATE) or "template" = Colin27 */
    /* Penalties on the change, each weight x the MEAN over voxels (so weights
     * do not depend on the grid): l1 mean|x|, l2 mean x^2, tv mean of the smooth
     * isotropic 3D total variation sqrt(dz^2+dy^2+dx^2+eps). 0 = off. */
    float l1, l2, tv, tv_eps;
    float blur_sigma;          /* voxels, 0 = off */
    int blur_every;            /* steps, 4 */
    int jitter;                /* +-voxels per axis, 0 = off */
    float scale_min, scale_max;/* 1,1 = off */
    float rotate_deg;          /* +-degrees about each axis, 0 = off */
    int pad;                   /* voxels of edge replication before the transforms */
    /* MACO's transforms: a random crop of edge crop_max .. crop_min (fraction
     * of the grid, shrinking linearly over the steps) resized to the grid,
     * then Gaussian noise of SD `noise` on the model input.  crop_max 0 = off;
     * not combined with jitter/scale/rotate/pad. */
    float crop_max, crop_min;
    float noise;
    /* --diversity W: the starts of each target are optimized together with
     * Lucid's diversity term (negative pairwise cosine of Gram matrices at
     * diversity_layer, "" = the last (C, D, H, W) layer before the target's;
     * src/vis/diversity.c); results keep every start as a facet.  0 = off. */
    float diversity;
    char diversity_layer[64];
    /* Feature accentuation: --init subject=FILE (init TEMPLATE with
     * init_subject = 1: FILE preprocessed like the training data, the change
     * starts at 0) and --stay LAYER=W: W x mean (a - a_subject)^2 at LAYER
     * (src/vis/accentuate.c).  stay 0 = off. */
    int init_subject;
    float stay;
    char stay_layer[64];
    /* Box constraint on the change (voxel parameterization): after every
     * update the parameter is clamped to [range_lo, range_hi] (projected
     * gradient ascent; Lucid bounds pixels to [0,1] for the same reason: an
     * unbounded input lets a ReLU network's logit grow without limit). */
    int has_range;
    float range_lo, range_hi;
    char mask[1024];           /* "" none, "brain" (Colin27 > 0 on the model grid), "ball=R[@X,Y,Z]" (mm), or a file */
    int log_every;             /* read the objective every k steps, 1 */
    int snapshots[NFV_VIS_MAX_SNAPSHOTS]; /* steps at which the volume is also kept */
    int snapshot_count;
    /* --gif: also <stem>.gif, the snapshots as orthogonal slices through the
     * final volume's peak at the final volume's grey window, one frame per
     * snapshot step (nfv_vis_options_gif).  snapshots_auto: the steps were
     * chosen for the GIF, not asked for: no <stem>_step<N>.nii.gz files. */
    int gif;
    int snapshots_auto;
    /* Importance map: the mean over the steps of |d objective / d image| per
     * voxel (after the transforms' adjoints, before penalties and mask): where
     * the unit looked while its image was drawn.  0 = off. */
    int importance;
} nfv_vis_options;

void nfv_vis_options_default(nfv_vis_options *o);
/* --gif: sets o->gif; without --snapshots, up to NFV_VIS_MAX_SNAPSHOTS
 * evenly spaced steps from 0 to o->steps (both included) become the
 * snapshots (snapshots_auto).  Call after o->steps is final. */
void nfv_vis_options_gif(nfv_vis_options *o);
/* Set one option by its command-line name ("--l2", "0.01").  Errors name the
 * option and the accepted values. */
nfv_status nfv_vis_options_set(nfv_vis_options *o, const char *name, const char *value);
/* Apply "--l2 0.01 --tv 0.1 ..." (words separated by spaces; "--opt=value" too). */
nfv_status nfv_vis_options_parse(nfv_vis_options *o, const char *text);
/* Check consistency (ranges, combinations). */
nfv_status nfv_vis_options_check(const nfv_vis_options *o);

typedef struct nfv_vis_option_info {
    const char *name, *meta, *help;
} nfv_vis_option_info;
/* Every option nfv_vis_options_set accepts, ending with {NULL}. */
extern const nfv_vis_option_info nfv_vis_option_table[];

/* ---- The loop (src/vis/vis_run.c, vis_loop.c) ---------------------------- */

typedef struct nfv_vis_result {
    nfv_target target;
    nfv_volume volume;         /* the image (template + change) on the model grid, model affine */
    nfv_volume change;         /* template init only: the change (else nx = 0) */
    nfv_volume importance;     /* --importance on: mean |d objective / d image| per voxel over the steps (else nx = 0) */
    int best_start;            /* the start kept (highest objective without transforms) */
    int facet_count;           /* --diversity: every start's image (facets[start_count]), else 0 */
    nfv_volume *facets;
    int start_count;
    float *start_objective;    /* objective without transforms of each start */
    float objective;           /* final objective (last step, transformed input) */
    float objective_clean;     /* the kept volume, no transforms */
    int log_count;             /* logged steps of the kept start */
    int *log_step;
    float *log_objective;
    int term_count;            /* steps with regularizer terms (every 16th logged step and the last) */
    int *term_step;
    float *term_l1, *term_l2, *term_tv; /* weighted penalty values at those steps */
    int snapshot_count;
    int snapshot_step[NFV_VIS_MAX_SNAPSHOTS];
    nfv_volume snapshot[NFV_VIS_MAX_SNAPSHOTS];
    double seconds;            /* wall time of this target's batch share */
} nfv_vis_result;

/* Called after every logged step: batch b of nb, step (1-based) of steps,
 * objective of each of the n samples. */
typedef void (*nfv_vis_progress_fn)(void *user, int b, int nb, int step, int steps, const float *objective, int n);

/* Optimize an input for every target; targets sharing a layer (and, for the
 * layer objective, a sign) run together in batches of o->batch samples.
 * *results (count of them) is malloc'ed; free with nfv_vis_results_free. */
nfv_status nfv_visualize(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                         const nfv_vis_options *o, nfv_vis_progress_fn progress, void *user,
                         nfv_vis_result **results);
void nfv_vis_results_free(nfv_vis_result *r, int count);

/* The device memory nfv_visualize(ctx, m, targets, count, o) needs: the
 * model (weights, activations at the batch size, backward buffers, conv
 * scratch of the layers run) and each batch's buffers (parameter, Adam
 * state, gradients, transformed copies, Fourier plan, objective seed), at
 * the largest batch the run forms: o->batch, or fewer when no group of
 * targets that may share a batch has that many samples.  e is filled from 0. */
void nfv_vis_memory(const nfv_context *ctx, const nfv_model *m, const nfv_target *targets, int count,
                    const nfv_vis_options *o, nfv_memory_estimate *e);
/* Before nfv_visualize: checks o->batch against ctx's device
 * (nfv_memory_check_batch, `what` starts the message).  auto_batch: a batch
 * that does not fit is lowered to the largest that does (o->batch changes;
 * results do not depend on the batch); else it is an error with needed vs
 * available MiB and the largest batch that fits.  With --diversity a batch
 * holds whole targets (a target's starts are pushed apart within one): an
 * auto batch grows to o->starts, and one that cannot hold them is an error. */
nfv_status nfv_vis_fit_batch(const nfv_context *ctx, const nfv_model *m, const nfv_target *targets, int count,
                             nfv_vis_options *o, int auto_batch, const char *what);

/* Choosing the batch by measurement (src/vis/vis_batch.c): results do not
 * depend on the batch, the time per sample does, by device.  The probe runs
 * the options o on one target at batch 1 and at `batch` (the largest that
 * fits), alternating, and keeps the cheaper per sample-step (batch 1 only
 * when at least 5 % cheaper).  Its steps are timed on the host (the
 * objective read back each step) and nothing it computes is kept. */
typedef struct nfv_vis_batch_probe {
    int batch[2];             /* 1 and the batch measured against it */
    double ms_per_sample[2];  /* median step time / batch, ms */
    int chosen;               /* the batch to run */
} nfv_vis_batch_probe;
nfv_status nfv_vis_probe_batch(nfv_context *ctx, nfv_model *m, const nfv_target *target, const nfv_vis_options *o,
                               int batch, nfv_vis_batch_probe *p);
/* The choice from measured times (p->batch and p->ms_per_sample). */
int nfv_vis_batch_pick(const nfv_vis_batch_probe *p);
/* Sample-steps the probe runs for `batch`. */
int nfv_vis_batch_probe_cost(int batch);
/* 1 when a run of `samples` (targets x starts) x `steps` at batch `batch` is
 * long enough for the probe to cost at most a tenth of it. */
int nfv_vis_batch_worth_probing(int samples, int steps, int batch);

/* Objective of each target for the given image volumes (no transforms): one
 * forward per volume batch.  images[i] is on the model grid. */
nfv_status nfv_vis_objective(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                             const nfv_volume *images, float *objective);

/* ---- Gradients of an objective (src/vis/vis_gradient.c) ----------------
 *
 * For attribution (neurofv/explain.h): x (n, C, D, H, W) on the model grid,
 * sample i's target targets[i], all on one layer (as one visualization
 * batch), eval mode, no transforms.  objective (n floats, may be NULL)
 * receives each sample's objective; dx (n, C, D, H, W) d objective / d x.
 * The layer version gives d objective / d a for the output a of `layer`
 * (an ancestor of the targets' layer) into dact (n, out_shape of layer):
 * Grad-CAM's channel weights are its spatial means. */
nfv_status nfv_vis_input_gradient(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int n,
                                  const nfv_tensor *x, float *objective, nfv_tensor *dx);
nfv_status nfv_vis_layer_gradient(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int n,
                                  const nfv_tensor *x, int layer, float *objective, nfv_tensor *dact);

/* The Colin27 template (or `path`) on the model grid: resampled through the
 * model affine, normalized as the model's training data (norm); raw (may be
 * NULL) receives it before normalization (for a mask: raw > 0). */
nfv_status nfv_vis_template_on_grid(const nfv_model *m, const char *path, nfv_volume *normalized, nfv_volume *raw);

/* ---- Outputs (src/vis/vis_output.c) -------------------------------------- */

/* Under dir: <stem>.nii.gz, <stem>_ortho.png, <stem>_mosaic.png,
 * <stem>_overlay.png (on background, e.g. Colin27; NULL: skipped), with
 * o->gif <stem>.gif (the snapshots) and <stem>.json (options, objectives,
 * per-step log). */
nfv_status nfv_vis_write(const nfv_vis_result *r, const nfv_vis_options *o, const nfv_volume *background,
                         const char *dir);
/* dir/<stem>_grid.png: one axial slice through each volume's peak. */
nfv_status nfv_vis_write_grid(const nfv_vis_result *r, int count, const char *dir, const char *stem);

/* For --resume (a pre-empted job run again with the same options): whether
 * every file nfv_vis_write writes for target t with options o (the overlay
 * when with_overlay) is under dir.  Each is written to a temporary name and
 * renamed, the JSON log last, so all present means complete.  A complete
 * target whose log names another target or other options is an error (its
 * outputs are not this run's). */
nfv_status nfv_vis_outputs_complete(const nfv_target *t, const nfv_vis_options *o, int with_overlay, const char *dir,
                                    int *complete);
/* A complete target's result read back from dir: the volume (and change)
 * with the model's affine, objectives, best start and seconds from its log
 * (no step log, importance or snapshots).  Free with nfv_vis_results_free. */
nfv_status nfv_vis_result_read(const nfv_model *m, const nfv_target *t, const nfv_vis_options *o, const char *dir,
                               nfv_vis_result *r);

#ifdef __cplusplus
}
#endif
#endif
