/* The measurements of `neurofv bench`; see bench.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "bench.h"
#include "cli.h"
#include "neurofv/train.h"
#include "neurofv/vis.h"
#include "base/clock.h"

nfv_status bench_model_open(nfv_context *ctx, const char *model_path, const char *arch, const char *shape, int classes,
                            nfv_model **m)
{
    if (model_path) return nfv_model_open(ctx, model_path, m);
    int in[4] = {1, 91, 109, 91};
    double vox[3];
    nfv_arch_preset_input(arch, in, vox);
    if (shape) {
        int xyz[3];
        char tail;
        if (sscanf(shape, "%d,%d,%d%c", &xyz[0], &xyz[1], &xyz[2], &tail) != 3 || xyz[0] < 1 || xyz[1] < 1 ||
            xyz[2] < 1 || xyz[0] > 4096 || xyz[1] > 4096 || xyz[2] > 4096)
            return nfv_fail(NFV_ERR_INVALID_ARG, "--shape expects X,Y,Z voxels, each 1..4096, got \"%s\"", shape);
        in[1] = xyz[2], in[2] = xyz[1], in[3] = xyz[0];
    }
    return nfv_model_create_from_spec(ctx, arch, in, classes, NULL, NFV_HEAD_SOFTMAX, 1, m);
}

void bench_times_free(bench_times *b)
{
    free(b->t);
    b->t = NULL;
    b->n = 0;
}

double bench_median(const bench_times *b)
{
    if (b->n <= 0) return 0.0;
    double *s = malloc((size_t)b->n * sizeof *s);
    if (!s) return b->t[0];
    memcpy(s, b->t, (size_t)b->n * sizeof *s);
    double m = nfv_median_sort(s, b->n);
    free(s);
    return m;
}

static nfv_status times_alloc(bench_times *out, int reps)
{
    out->n = 0;
    out->t = calloc((size_t)(reps > 0 ? reps : 1), sizeof *out->t);
    return out->t ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "bench: out of host memory");
}

/* Host volume of one sample: C x D x H x W floats. */
static size_t sample_numel(const nfv_model *m)
{
    return (size_t)m->input_shape[0] * (size_t)m->input_shape[1] * (size_t)m->input_shape[2] *
           (size_t)m->input_shape[3];
}

static float *random_volumes(const nfv_model *m, int n, unsigned long long seed)
{
    size_t len = sample_numel(m) * (size_t)n;
    float *x = malloc(len * sizeof *x);
    if (!x) return NULL;
    uint64_t s = seed;
    for (size_t i = 0; i < len; i++) x[i] = (float)(2.0 * nfv_uniform01(&s) - 1.0);
    return x;
}

/* ---- visualization step ---------------------------------------------------- */

void bench_profile_forget(nfv_context *ctx)
{
    nfv_profile_row *rows = NULL;
    if (nfv_profile_collect(ctx, &rows, 1) >= 0) free(rows);
}

typedef struct vis_clock {
    nfv_context *ctx;
    double last;       /* time of the previous logged step (or the start) */
    int skip;          /* steps not recorded (warm-up) */
    bench_times *out;
    int cap;
} vis_clock;

/* Called after every step (log_every 1); step is 1-based. */
static void vis_tick(void *user, int b, int nb, int step, int steps, const float *obj, int n)
{
    (void)b, (void)nb, (void)steps, (void)obj, (void)n;
    vis_clock *c = user;
    double now = nfv_seconds();
    if (step > c->skip && c->out->n < c->cap) c->out->t[c->out->n++] = now - c->last;
    if (step == c->skip) bench_profile_forget(c->ctx);
    c->last = now;
}

nfv_status bench_vis_step(nfv_context *ctx, nfv_model *m, const char *target, int batch, int warmup, int reps,
                          bench_times *out, int *layer)
{
    nfv_target *t = NULL;
    int count = 0;
    NFV_TRY(nfv_target_parse(m, target, &t, &count));
    if (count != 1) {
        free(t);
        return nfv_fail(NFV_ERR_INVALID_ARG, "bench: --target \"%s\" names %d units; give one", target, count);
    }
    *layer = t[0].layer;
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    o.steps = warmup + reps;
    o.starts = batch; /* batch starts of one target: one device batch of `batch` samples */
    o.batch = batch;
    o.log_every = 1;
    nfv_status st = nfv_vis_fit_batch(ctx, m, t, 1, &o, 0, "bench: visualization");
    if (!st) st = times_alloc(out, reps);
    vis_clock c = {ctx, nfv_seconds(), warmup, out, reps};
    nfv_vis_result *res = NULL;
    if (!st) st = nfv_visualize(ctx, m, t, 1, &o, vis_tick, &c, &res);
    if (res) nfv_vis_results_free(res, 1);
    free(t);
    if (!st && out->n < reps)
        st = nfv_fail(NFV_ERR_UNSUPPORTED, "bench: the visualization reported %d of %d steps", out->n, reps);
    return st;
}

/* ---- training step ------------------------------------------------------------ */

nfv_status bench_train_step(nfv_context *ctx, nfv_model *m, int batch, int warmup, int reps, bench_times *out)
{
    nfv_optim_config oc;
    nfv_optim_config_default(&oc);
    nfv_trainer *tr = NULL;
    float *x = random_volumes(m, batch, 11), *y = malloc((size_t)batch * sizeof *y);
    nfv_status st = (x && y) ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "bench: out of host memory for a training batch");
    /* Labels: class indices for a classifier (binary: 0/1), 0 for a regression head. */
    int classes = m->head == NFV_HEAD_REGRESSION ? 1 : (m->head == NFV_HEAD_BINARY ? 2 : m->class_count);
    for (int i = 0; y && i < batch; i++) y[i] = classes > 1 ? (float)(i % classes) : 0.0f;
    if (!st) st = times_alloc(out, reps);
    if (!st) st = nfv_trainer_create(ctx, m, &oc, NULL, &tr);
    for (int i = 0; !st && i < warmup + reps; i++) {
        double t0 = nfv_seconds();
        float loss;
        st = nfv_trainer_step(tr, x, y, batch, &loss, NULL); /* reads the loss back: ends with the queue drained */
        if (!st && i == warmup - 1) bench_profile_forget(ctx);
        if (!st && i >= warmup) out->t[out->n++] = nfv_seconds() - t0;
    }
    if (tr) nfv_trainer_free(tr);
    free(x);
    free(y);
    return st;
}

/* ---- eval ------------------------------------------------------------------------ */

nfv_status bench_eval(nfv_context *ctx, nfv_model *m, int batch, int warmup, int reps, bench_times *out)
{
    float *x = random_volumes(m, batch, 12);
    float *y = malloc((size_t)batch * (size_t)(nfv_model_outputs(m) > 0 ? nfv_model_outputs(m) : 1) * sizeof *y);
    nfv_status st = (x && y) ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "bench: out of host memory for an eval batch");
    if (!st) st = times_alloc(out, reps);
    /* As `neurofv eval` over a data set (nfv_model_predict_rows): the
     * weights stay frozen across batches, so what is derived from them
     * (flipped, phases, channel-last) is derived in the warm-up. */
    nfv_context_freeze_weights(ctx, 1);
    for (int i = 0; !st && i < warmup + reps; i++) {
        double t0 = nfv_seconds();
        st = nfv_model_predict(m, ctx, x, batch, batch, y);
        if (!st && i == warmup - 1) bench_profile_forget(ctx);
        if (!st && i >= warmup) out->t[out->n++] = nfv_seconds() - t0;
    }
    nfv_context_freeze_weights(ctx, 0);
    free(x);
    free(y);
    return st;
}

/* ---- FLOPs and peak ---------------------------------------------------------------- */

double bench_forward_flops(const nfv_model *m, int upto)
{
    double f = 0;
    int last = upto < 0 || upto >= m->layer_count ? m->layer_count - 1 : upto;
    /* A graph may have nodes after `upto` in order that are not its
     * ancestors; counting layers 0..upto over-counts those only (rare:
     * side branches), which the note in the table states. */
    for (int i = 0; i <= last; i++) f += nfv_layer_flops(&m->layers[i]);
    return f;
}

double bench_device_peak(nfv_context *ctx, double given, const char **how)
{
    if (given > 0) {
        *how = "given with --peak-gflops";
        return given;
    }
    double peak = 0;
    if (nfv_device_fma_peak(ctx, &peak) != NFV_OK) {
        fprintf(stderr, "bench: the peak was not measured: %s\n", nfv_error_message());
        *how = "not measured (give --peak-gflops)";
        return 0.0;
    }
    *how = "measured: 12 independent multiply-add chains per work-item, cl/peak.cl";
    return peak;
}
