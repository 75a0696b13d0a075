/* Measurements behind `neurofv bench` (src/cli/cmd_bench.c): each times one
 * kind of whole step of a real model on the device, in this process, with
 * the library's own entry points (nfv_visualize, nfv_trainer_step,
 * nfv_model_predict), and returns the per-repetition wall times so the
 * command can take medians.  src/cli/bench_run.c. */
#ifndef NEUROFV_CLI_BENCH_H
#define NEUROFV_CLI_BENCH_H

#include "neurofv/context.h"
#include "neurofv/model.h"

/* Wall seconds of each timed repetition; n of them, malloc'ed (free()). */
typedef struct bench_times {
    double *t;
    int n;
} bench_times;

void bench_times_free(bench_times *b);

/* The model a measurement runs on, in ctx: the file model_path, else `arch`
 * (a spec or preset) with random weights and `classes` softmax outputs, on
 * the preset's grid or `shape` ("X,Y,Z" voxels). */
nfv_status bench_model_open(nfv_context *ctx, const char *model_path, const char *arch, const char *shape, int classes,
                            nfv_model **m);
double bench_median(const bench_times *b);

/* --profile (NEUROFV_PROFILE): drop the kernel times recorded so far.  The
 * steps below call it when their warm-up ends, so a profile covers the timed
 * repetitions (for vis, also the last warm-up step's backward and the final
 * forward); without profiling it does nothing. */
void bench_profile_forget(nfv_context *ctx);

/* One visualization step (forward in eval mode to the target's layer, input
 * gradient, Adam on the input, no transforms or penalties: the loop's
 * defaults) on `batch` samples: `target` (e.g. "output:0") with `batch`
 * random starts in one batch, (batch, C, D, H, W).  Runs warmup + reps steps
 * of one nfv_visualize call and records the time between consecutive logged
 * steps (every step reads its objective back, as a default run does); the
 * first warmup steps (kernel builds, buffer creation) are not recorded.
 * *layer receives the target's layer (for the FLOP count). */
nfv_status bench_vis_step(nfv_context *ctx, nfv_model *m, const char *target, int batch, int warmup, int reps,
                          bench_times *out, int *layer);

/* One training step (nfv_trainer_step: upload, forward in training mode,
 * loss, backward with parameter gradients, Adam) on a random batch of
 * `batch` volumes (batch, C, D, H, W) with random labels. */
nfv_status bench_train_step(nfv_context *ctx, nfv_model *m, int batch, int warmup, int reps, bench_times *out);

/* Eval-mode outputs of `batch` random volumes (nfv_model_predict, one chunk:
 * upload, forward, read back). */
nfv_status bench_eval(nfv_context *ctx, nfv_model *m, int batch, int warmup, int reps, bench_times *out);

/* Forward FLOPs per sample of layers 0..upto (nfv_layer_flops; upto < 0: all). */
double bench_forward_flops(const nfv_model *m, int upto);

/* The device's fp32 peak in GFLOP/s for the "% peak" columns: given (> 0),
 * else measured by nfv_device_fma_peak, else 0 when that fails (the reason
 * on stderr).  *how receives how it was obtained. */
double bench_device_peak(nfv_context *ctx, double given, const char **how);

#endif
