/* What each target kind (include/neurofv/vis.h) means to the optimization
 * loop, in one table: the constant part of its seed (minus d objective /
 * d activation), how its objective is read back from the activation, and,
 * for the layer objective, the seed rebuilt from the activation every step.
 * The loop (vis_loop.c) and nfv_vis_objective below use the same functions.
 *
 * Activation a of the targets' layer: (N, C, D, H, W) for a spatial layer,
 * (N, F) for Linear or Flatten outputs; per = C*D*H*W (or F) floats per
 * sample, sp = D*H*W floats per channel map (1 for (F)). */
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis_ops.h"
#include "vis/vis_internal.h"

nfv_status vis_read_floats(nfv_context *ctx, const nfv_tensor *t, size_t offset, size_t count, float *out)
{
    NFV_CL_CHECK(clEnqueueReadBuffer(nfv_context_queue(ctx), t->buf, CL_TRUE, offset * sizeof(float),
                                     count * sizeof(float), out, 0, NULL, NULL),
                 "clEnqueueReadBuffer", "visualization objective");
    return NFV_OK;
}

/* Weight of logit k in a logit target: 1 for its class; contrast targets
 * also -1/(K-1) for every other class. */
static float class_coef(const nfv_target *t, int K, int k)
{
    if (k == t->unit) return 1.0f;
    return t->contrast && K > 1 ? -1.0f / (float)(K - 1) : 0.0f;
}

/* Offset of voxel pos of channel unit in one sample's (C, D, H, W) activation. */
static size_t neuron_index(const nfv_layer *l, const nfv_target *t)
{
    return (((size_t)t->unit * l->out_shape[1] + t->pos[0]) * l->out_shape[2] + t->pos[1]) * l->out_shape[3] +
           t->pos[2];
}

/* ---- seeds: the constant part, one sample's row (per floats, zeroed) ---- */

/* Channel mean: -sign / sp over channel unit's map. */
static nfv_status seed_channel(vis_objective *ob, const nfv_target *t, float *row)
{
    for (size_t i = 0; i < ob->sp; i++) row[(size_t)t->unit * ob->sp + i] = -t->sign / (float)ob->sp;
    return NFV_OK;
}

static nfv_status seed_neuron(vis_objective *ob, const nfv_target *t, float *row)
{
    row[neuron_index(ob->layer, t)] = -t->sign;
    return NFV_OK;
}

static nfv_status seed_feature(vis_objective *ob, const nfv_target *t, float *row)
{
    (void)ob;
    row[t->unit] = -t->sign;
    return NFV_OK;
}

/* Contrast: the class's logit minus the mean of the other K - 1. */
static nfv_status seed_contrast(vis_objective *ob, const nfv_target *t, float *row)
{
    for (size_t k = 0; k < ob->per; k++) row[k] = -t->sign * class_coef(t, (int)ob->per, (int)k);
    return NFV_OK;
}

/* The final Linear's weights W (K, F), downloaded once per batch; F must be
 * the layer's C*D*H*W (the layer feeds it through Flatten). */
static nfv_status final_weights(vis_objective *ob, const nfv_target *t, const nfv_layer *fc)
{
    if (ob->fc_w) return NFV_OK;
    if (fc->param[0].numel != (size_t)fc->out_shape[0] * ob->per)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: layer %s (%zu features) does not feed %s (%zu weights)", t->name,
                        ob->layer->name, ob->per, fc->name, fc->param[0].numel);
    ob->fc_w = malloc(fc->param[0].numel * sizeof *ob->fc_w);
    if (!ob->fc_w) return nfv_fail(NFV_ERR_NO_MEMORY, "objective seed: out of memory");
    return nfv_tensor_download(ob->ctx, &fc->param[0], ob->fc_w);
}

/* Logit cell: in Flatten's (channel, z, y, x) order, the seed is
 * -sign sum_k coef_k W[k, :, cell] (coef: class_coef). */
static nfv_status seed_logit_cell(vis_objective *ob, const nfv_target *t, float *row)
{
    const nfv_layer *l = ob->layer, *fc = &ob->m->layers[nfv_model_logit_layer(ob->m)];
    NFV_TRY(final_weights(ob, t, fc));
    size_t cell = ((size_t)t->pos[0] * l->out_shape[2] + t->pos[1]) * l->out_shape[3] + t->pos[2];
    int K = fc->out_shape[0];
    for (int k = 0; k < K; k++) {
        float a = class_coef(t, K, k);
        if (a == 0.0f) continue;
        for (int c = 0; c < l->out_shape[0]; c++)
            row[(size_t)c * ob->sp + cell] -= t->sign * a * ob->fc_w[(size_t)k * ob->per + (size_t)c * ob->sp + cell];
    }
    return NFV_OK;
}

/* ---- readouts: the objective of sample n -------------------------------- */

static nfv_status read_channel(vis_objective *ob, const nfv_target *t, const nfv_tensor *act, int n, float *obj)
{
    NFV_TRY(vis_read_floats(ob->ctx, act, (size_t)n * ob->per + (size_t)t->unit * ob->sp, ob->sp, ob->scratch));
    double s = 0;
    for (size_t i = 0; i < ob->sp; i++) s += ob->scratch[i];
    *obj = (float)(t->sign * s / (double)ob->sp);
    return NFV_OK;
}

static nfv_status read_neuron(vis_objective *ob, const nfv_target *t, const nfv_tensor *act, int n, float *obj)
{
    NFV_TRY(vis_read_floats(ob->ctx, act, (size_t)n * ob->per + neuron_index(ob->layer, t), 1, obj));
    *obj *= t->sign;
    return NFV_OK;
}

static nfv_status read_feature(vis_objective *ob, const nfv_target *t, const nfv_tensor *act, int n, float *obj)
{
    NFV_TRY(vis_read_floats(ob->ctx, act, (size_t)n * ob->per + (size_t)t->unit, 1, obj));
    *obj *= t->sign;
    return NFV_OK;
}

/* Kinds linear in the activation (logit cells, contrasts): the objective is
 * the sum of (-seed) x act over the seed's support, in double. */
static nfv_status read_linear(vis_objective *ob, const nfv_target *t, const nfv_tensor *act, int n, float *obj)
{
    (void)t;
    size_t base = (size_t)n * ob->per;
    NFV_TRY(vis_read_floats(ob->ctx, act, base, ob->per, ob->scratch));
    const float *seed = ob->seed_host + base;
    double s = 0;
    for (size_t i = 0; i < ob->per; i++)
        if (seed[i] != 0.0f) s -= (double)seed[i] * ob->scratch[i];
    *obj = (float)s;
    return NFV_OK;
}

/* The layer objective: vis_objective_step left value = -sign mean(a^2). */
static nfv_status read_layer(vis_objective *ob, const nfv_target *t, const nfv_tensor *act, int n, float *obj)
{
    (void)t;
    (void)act;
    NFV_TRY(vis_read_floats(ob->ctx, &ob->value, (size_t)n, 1, obj));
    *obj = -*obj;
    return NFV_OK;
}

/* ---- per-step seeds ----------------------------------------------------- */

/* The layer objective sign mean(a^2): seed -2 sign a / per (and value) for
 * the whole batch, through the L2 penalty over each sample's activation seen
 * as one (1, C*D, H, W) volume (or (1, 1, 1, F)). */
static nfv_status step_layer(vis_objective *ob, const nfv_tensor *act)
{
    const nfv_layer *l = ob->layer;
    const nfv_target *t0 = &ob->targets[ob->smp[0].target];
    nfv_tensor av, sv;
    int shape[5] = {ob->N, 1, 1, 1, (int)ob->per};
    if (l->out_ndim == 4) {
        shape[2] = l->out_shape[0] * l->out_shape[1];
        shape[3] = l->out_shape[2];
        shape[4] = l->out_shape[3];
    }
    NFV_TRY(nfv_tensor_view(act, &av, 5, shape));
    NFV_TRY(nfv_tensor_view(&ob->seed, &sv, 5, shape));
    NFV_TRY(nfv_tensor_fill(ob->ctx, &ob->seed, 0.0f));
    return nfv_penalty(ob->ctx, NFV_PENALTY_L2, -t0->sign / (float)ob->per, 0.0f, &av, NULL, &ob->value, &sv);
}

/* ---- the table ---------------------------------------------------------- */

typedef struct kind_ops {
    /* The constant seed of one sample into its zeroed row; NULL: none. */
    nfv_status (*seed)(vis_objective *ob, const nfv_target *t, float *row);
    nfv_status (*read)(vis_objective *ob, const nfv_target *t, const nfv_tensor *act, int n, float *obj);
    /* The seed of the whole batch from this step's activation; NULL: constant. */
    nfv_status (*step)(vis_objective *ob, const nfv_tensor *act);
    int reads_sample;  /* read needs a whole sample of scratch (else one channel map) */
} kind_ops;

static const kind_ops kind_table[] = {
    [NFV_TARGET_CHANNEL] = {seed_channel, read_channel, NULL, 0},
    [NFV_TARGET_NEURON] = {seed_neuron, read_neuron, NULL, 0},
    [NFV_TARGET_LAYER] = {NULL, read_layer, step_layer, 0},
    [NFV_TARGET_FEATURE] = {seed_feature, read_feature, NULL, 0},
    [NFV_TARGET_LOGIT_CELL] = {seed_logit_cell, read_linear, NULL, 1},
};
/* contrast:CLASS without a cell: a feature target over every logit. */
static const kind_ops contrast_ops = {seed_contrast, read_linear, NULL, 1};

static const kind_ops *ops_of(const nfv_target *t)
{
    return t->kind == NFV_TARGET_FEATURE && t->contrast ? &contrast_ops : &kind_table[t->kind];
}

int vis_same_batch(const nfv_target *a, const nfv_target *b)
{
    if (a->layer != b->layer) return 0;
    int sa = ops_of(a)->step != NULL, sb = ops_of(b)->step != NULL;
    if (sa != sb) return 0;
    return !sa || a->sign == b->sign;
}

/* ---- a batch's objective ------------------------------------------------ */

static nfv_status build_seed(vis_objective *ob)
{
    ob->seed_host = calloc((size_t)ob->N * ob->per, sizeof *ob->seed_host);
    if (!ob->seed_host) return nfv_fail(NFV_ERR_NO_MEMORY, "objective seed: out of memory");
    for (int n = 0; n < ob->N; n++) {
        const nfv_target *t = &ob->targets[ob->smp[n].target];
        const kind_ops *k = ops_of(t);
        if (k->seed) NFV_TRY(k->seed(ob, t, ob->seed_host + (size_t)n * ob->per));
    }
    free(ob->fc_w);
    ob->fc_w = NULL;
    return NFV_OK;
}

nfv_status vis_objective_init(vis_objective *ob, nfv_context *ctx, const nfv_model *m, const nfv_target *targets,
                              const vis_sample *smp, int N)
{
    memset(ob, 0, sizeof *ob);
    ob->ctx = ctx;
    ob->m = m;
    ob->targets = targets;
    ob->smp = smp;
    ob->N = N;
    const nfv_layer *l = ob->layer = &m->layers[targets[smp[0].target].layer];
    ob->per = nfv_shape_numel(l->out_ndim, l->out_shape);
    ob->sp = l->out_ndim == 4 ? (size_t)l->out_shape[1] * l->out_shape[2] * l->out_shape[3] : 1;
    size_t scratch = ob->sp;
    for (int n = 0; n < N; n++)
        if (ops_of(&targets[smp[n].target])->reads_sample) scratch = ob->per;
    ob->scratch = malloc(scratch * sizeof *ob->scratch);
    if (!ob->scratch) return nfv_fail(NFV_ERR_NO_MEMORY, "objective: out of memory");
    NFV_TRY(build_seed(ob));
    int one[1] = {N};
    NFV_TRY(nfv_tensor_create(ctx, &ob->value, 1, one));
    int shape[5] = {N, l->out_shape[0], l->out_shape[1], l->out_shape[2], l->out_shape[3]};
    NFV_TRY(nfv_tensor_create(ctx, &ob->seed, l->out_ndim + 1, shape));
    return nfv_tensor_upload(ctx, &ob->seed, ob->seed_host);
}

nfv_status vis_objective_step(vis_objective *ob, const nfv_tensor *act)
{
    const kind_ops *k = ops_of(&ob->targets[ob->smp[0].target]);
    return k->step ? k->step(ob, act) : NFV_OK;
}

nfv_status vis_objective_read(vis_objective *ob, const nfv_tensor *act, float *obj)
{
    for (int n = 0; n < ob->N; n++) {
        const nfv_target *t = &ob->targets[ob->smp[n].target];
        NFV_TRY(ops_of(t)->read(ob, t, act, n, &obj[n]));
    }
    return NFV_OK;
}

void vis_objective_free(vis_objective *ob)
{
    nfv_tensor_free(&ob->seed);
    nfv_tensor_free(&ob->value);
    free(ob->seed_host);
    free(ob->scratch);
    free(ob->fc_w);
    memset(ob, 0, sizeof *ob);
}

/* One target at a time through the loop's own objective: upload, forward to
 * the layer, step (layer objective), read. */
nfv_status nfv_vis_objective(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                             const nfv_volume *images, float *objective)
{
    int D = m->input_shape[1], H = m->input_shape[2], W = m->input_shape[3];
    size_t vox = (size_t)D * H * W;
    for (int i = 0; i < count; i++) {
        const nfv_target *t = &targets[i];
        if (nfv_volume_numel(&images[i]) != vox)
            return nfv_fail(NFV_ERR_INVALID_ARG, "objective of %s: volume %dx%dx%d is not the model grid %dx%dx%d",
                            t->name, images[i].nx, images[i].ny, images[i].nz, W, H, D);
        vis_sample smp = {0, 0};
        vis_objective ob;
        nfv_tensor x;
        memset(&ob, 0, sizeof ob);
        memset(&x, 0, sizeof x);
        int shape[5] = {1, 1, D, H, W};
        nfv_status st = nfv_tensor_create(ctx, &x, 5, shape);
        if (!st) st = nfv_tensor_upload(ctx, &x, images[i].data);
        if (!st) st = vis_objective_init(&ob, ctx, m, t, &smp, 1);
        if (!st) st = nfv_model_forward(m, ctx, &x, t->layer, 0);
        nfv_tensor *act = st ? NULL : nfv_model_activation(m, t->layer);
        if (!st) st = vis_objective_step(&ob, act);
        if (!st) st = vis_objective_read(&ob, act, &objective[i]);
        vis_objective_free(&ob);
        nfv_tensor_free(&x);
        if (st) return st;
    }
    return NFV_OK;
}
