/* nfv_visualize: every target's starts become samples, samples are ordered
 * into batches of targets that may share one (vis_same_batch), each batch
 * runs through the loop (vis_loop.c), and the best start of each target
 * (highest objective without transforms) becomes its result.  The device
 * memory a run needs (nfv_vis_memory) is counted here too, from the same
 * rules as vis_loop.c's batch_alloc. */
#include <stdlib.h>
#include <string.h>

#include "vis/vis_internal.h"
#include "base/clock.h"

void nfv_vis_results_free(nfv_vis_result *r, int count)
{
    if (!r) return;
    for (int i = 0; i < count; i++) {
        nfv_volume_free(&r[i].volume);
        nfv_volume_free(&r[i].change);
        nfv_volume_free(&r[i].importance);
        free(r[i].start_objective);
        for (int k = 0; k < r[i].facet_count; k++) nfv_volume_free(&r[i].facets[k]);
        free(r[i].facets);
        free(r[i].log_step);
        free(r[i].log_objective);
        free(r[i].term_step);
        free(r[i].term_l1);
        free(r[i].term_l2);
        free(r[i].term_tv);
        for (int s = 0; s < r[i].snapshot_count; s++) nfv_volume_free(&r[i].snapshot[s]);
    }
    free(r);
}

/* A volume on the model grid (D*H*W floats) with the model's affine. */
static nfv_status volume_from(const nfv_model *m, const float *data, nfv_volume *v)
{
    NFV_TRY(nfv_volume_alloc(v, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                             (const double(*)[4])m->affine));
    memcpy(v->data, data, nfv_volume_numel(v) * sizeof(float));
    v->sform_code = v->qform_code = 4; /* the model metadata affine is MNI */
    return NFV_OK;
}

static nfv_status check_request(const nfv_model *m, const nfv_target *targets, int count, const nfv_vis_options *o)
{
    if (count <= 0) return nfv_fail(NFV_ERR_INVALID_ARG, "visualize: no targets");
    NFV_TRY(nfv_vis_options_check(o));
    if (m->input_shape[0] != 1)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "visualize: the model takes %d input channels; only 1 is supported",
                        m->input_shape[0]);
    if (o->batch > 4096) return nfv_fail(NFV_ERR_INVALID_ARG, "visualize: --batch at most 4096");
    if (o->param == NFV_VIS_PARAM_MACO && !m->spectrum)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--param maco needs the training cohort's amplitude spectrum, which this "
                                             "model file lacks: add it with `neurofv spectrum --data CSV --model MODEL`");
    for (int i = 0; i < count; i++)
        if (targets[i].layer < 0 || targets[i].layer >= m->layer_count)
            return nfv_fail(NFV_ERR_INVALID_ARG, "visualize: target %s names layer %d of %d", targets[i].name,
                            targets[i].layer, m->layer_count);
    return NFV_OK;
}

/* The samples in run order: group by group (a group = targets that may share
 * a batch, in order of first appearance), target by target, start by start.
 * group_of[count] receives each target's group. */
static void order_samples(const nfv_target *targets, int count, int starts, int *group_of, vis_sample *order)
{
    int ngroups = 0;
    for (int i = 0; i < count; i++) {
        group_of[i] = -1;
        for (int j = 0; j < i && group_of[i] < 0; j++)
            if (vis_same_batch(&targets[i], &targets[j])) group_of[i] = group_of[j];
        if (group_of[i] < 0) group_of[i] = ngroups++;
    }
    int k = 0;
    for (int g = 0; g < ngroups; g++)
        for (int i = 0; i < count; i++)
            if (group_of[i] == g)
                for (int s = 0; s < starts; s++) order[k++] = (vis_sample){i, s};
}

/* End of the batch starting at sample i: a contiguous run of at most batch
 * samples inside one group. */
static int batch_end(const vis_sample *order, const int *group_of, int total, int i, int batch, int whole_targets)
{
    int j = i + 1;
    while (j < total && j - i < batch && group_of[order[j].target] == group_of[order[i].target]) j++;
    /* --diversity pushes a target's starts apart within a batch: end the
     * batch before a target it would split (batch >= starts, checked). */
    if (whole_targets && j < total && order[j].target == order[j - 1].target) {
        int k = j - 1;
        while (k > i && order[k - 1].target == order[j].target) k--;
        if (k > i) j = k;
    }
    return j;
}

/* Runs every batch; each target's seconds are its share of its batches' time. */
static nfv_status run_batches(nfv_context *ctx, nfv_model *m, const nfv_target *targets, const vis_sample *order,
                              const int *group_of, int total, const nfv_vis_options *o, const float *templ,
                              const float *mask, vis_progress *progress, vis_log *logs, nfv_vis_result *res)
{
    progress->batches = 0;
    for (int i = 0; i < total; i = batch_end(order, group_of, total, i, o->batch, o->diversity > 0))
        progress->batches++;
    progress->batch = 0;
    for (int i = 0; i < total; progress->batch++) {
        int j = batch_end(order, group_of, total, i, o->batch, o->diversity > 0);
        double t0 = nfv_seconds();
        nfv_status st = vis_run_batch(ctx, m, targets, order + i, j - i, o, templ, mask, progress, logs + i);
        if (st) return nfv_fail_context(st, "visualizing %s", targets[order[i].target].name);
        double per = (nfv_seconds() - t0) / (double)(j - i);
        for (int q = i; q < j; q++) res[order[q].target].seconds += per;
        i = j;
    }
    return NFV_OK;
}

/* Result t from the log of its best start (the log's arrays move to it). */
static nfv_status keep_best_start(const nfv_model *m, const nfv_vis_options *o, const vis_sample *order, int total,
                                  vis_log *logs, int t, nfv_vis_result *r)
{
    r->start_count = o->starts;
    r->start_objective = malloc((size_t)o->starts * sizeof(float));
    if (!r->start_objective) return nfv_fail(NFV_ERR_NO_MEMORY, "visualize: out of memory");
    int best = -1;
    for (int q = 0; q < total; q++)
        if (order[q].target == t) {
            r->start_objective[order[q].start] = logs[q].clean_objective;
            if (best < 0 || logs[q].clean_objective > logs[best].clean_objective) best = q;
        }
    vis_log *lg = &logs[best];
    r->best_start = order[best].start;
    r->objective = lg->final_objective;
    r->objective_clean = lg->clean_objective;
    NFV_TRY(volume_from(m, lg->image, &r->volume));
    if (o->diversity > 0) {
        r->facets = calloc((size_t)o->starts, sizeof *r->facets);
        if (!r->facets) return nfv_fail(NFV_ERR_NO_MEMORY, "visualize: out of memory");
        r->facet_count = o->starts;
        for (int q = 0; q < total; q++)
            if (order[q].target == t) NFV_TRY(volume_from(m, logs[q].image, &r->facets[order[q].start]));
    }
    if (lg->change) NFV_TRY(volume_from(m, lg->change, &r->change));
    if (lg->importance) NFV_TRY(volume_from(m, lg->importance, &r->importance));
    r->log_count = lg->count;
    r->log_step = lg->step;
    r->log_objective = lg->objective;
    lg->step = NULL;
    lg->objective = NULL;
    r->term_count = lg->term_count;
    r->term_step = lg->term_step;
    r->term_l1 = lg->l1;
    r->term_l2 = lg->l2;
    r->term_tv = lg->tv;
    lg->term_step = NULL;
    lg->l1 = lg->l2 = lg->tv = NULL;
    for (int s = 0; s < o->snapshot_count; s++)
        if (lg->snap[s]) {
            r->snapshot_step[r->snapshot_count] = o->snapshots[s];
            NFV_TRY(volume_from(m, lg->snap[s], &r->snapshot[r->snapshot_count]));
            r->snapshot_count++;
        }
    return NFV_OK;
}

/* The template start and the mask (D*H*W floats each, NULL when off). */
static nfv_status load_inputs(const nfv_model *m, const nfv_vis_options *o, float **templ, float **mask)
{
    *templ = *mask = NULL;
    if (o->init == NFV_VIS_INIT_TEMPLATE) {
        nfv_volume tv;
        if (o->init_subject) NFV_TRY(vis_subject_on_grid(m, o->init_path, &tv));
        else NFV_TRY(nfv_vis_template_on_grid(m, o->init_path, &tv, NULL));
        *templ = tv.data; /* take ownership of the data */
    }
    if (o->mask[0]) {
        nfv_status st = vis_mask_on_grid(m, o->mask, mask);
        if (st) {
            free(*templ);
            *templ = NULL;
            return st;
        }
    }
    return NFV_OK;
}

nfv_status nfv_visualize(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                         const nfv_vis_options *o, nfv_vis_progress_fn progress, void *user,
                         nfv_vis_result **results)
{
    *results = NULL;
    NFV_TRY(check_request(m, targets, count, o));
    float *templ, *mask;
    NFV_TRY(load_inputs(m, o, &templ, &mask));
    nfv_status st = NFV_OK;
    int total = count * o->starts;
    vis_sample *order = malloc((size_t)total * sizeof *order);
    vis_log *logs = calloc((size_t)total, sizeof *logs);
    int *group_of = malloc((size_t)count * sizeof *group_of);
    nfv_vis_result *res = calloc((size_t)count, sizeof *res);
    if (!order || !logs || !group_of || !res) {
        st = nfv_fail(NFV_ERR_NO_MEMORY, "visualize: out of memory");
    } else {
        order_samples(targets, count, o->starts, group_of, order);
        vis_progress p = {progress, user, 0, 0};
        /* The weights do not change while the inputs are optimized: each
         * conv's flipped weights are derived once for the whole run. */
        nfv_context_freeze_weights(ctx, 1);
        st = run_batches(ctx, m, targets, order, group_of, total, o, templ, mask, &p, logs, res);
        nfv_context_freeze_weights(ctx, 0);
        for (int t = 0; t < count && !st; t++) {
            res[t].target = targets[t];
            st = keep_best_start(m, o, order, total, logs, t, &res[t]);
        }
    }
    if (logs)
        for (int q = 0; q < total; q++) vis_log_free(&logs[q]);
    free(logs);
    free(order);
    free(group_of);
    free(templ);
    free(mask);
    if (st) {
        nfv_vis_results_free(res, count);
        return st;
    }
    *results = res;
    return NFV_OK;
}

/* ---- device memory ---------------------------------------------------------- */

/* The most samples one batch holds: o->batch, or the largest group's samples. */
static int largest_batch_run(const nfv_target *targets, int count, const nfv_vis_options *o)
{
    int most = 0;
    for (int i = 0; i < count; i++) {
        int first = 1, n = 0;
        for (int j = 0; j < i && first; j++) first = !vis_same_batch(&targets[i], &targets[j]);
        if (!first) continue;
        for (int j = i; j < count; j++) n += vis_same_batch(&targets[i], &targets[j]);
        if (n > most) most = n;
    }
    long samples = (long)most * o->starts;
    return samples < o->batch ? (int)samples : o->batch;
}

/* The buffers of one batch of N samples: batch_alloc (vis_loop.c), the
 * objective's seed, the Fourier plan, the penalty and blur scratch. */
static void batch_memory(const nfv_context *ctx, const nfv_model *m, const nfv_layer *widest, int N,
                         const nfv_vis_options *o, nfv_memory_estimate *e)
{
    int D = m->input_shape[1], H = m->input_shape[2], W = m->input_shape[3], P = o->pad;
    size_t vox = (size_t)D * H * W, padded = (size_t)(D + 2 * P) * (H + 2 * P) * (W + 2 * P);
    unsigned long long vol = nfv_tensor_bytes((size_t)N * vox);
    int has_mask = o->mask[0] != 0, has_template = o->init == NFV_VIS_INIT_TEMPLATE;
    int warp = o->scale_min != 1.0f || o->scale_max != 1.0f || o->rotate_deg > 0 || o->crop_max > 0;
    int transforms = warp || o->jitter > 0 || P > 0 || o->noise > 0;
    /* param, dparam, Adam m (and v), dx, dimage; image; transformed input; change; importance; template copies. */
    int volumes = 5 + !o->sgd + (has_mask || has_template) + transforms + (o->param != NFV_VIS_PARAM_VOXEL) +
                  (o->importance != 0) + has_template + (o->param == NFV_VIS_PARAM_VOXEL && o->blur_sigma > 0);
    for (int i = 0; i < volumes; i++) nfv_memory_add(e, NFV_MEM_BATCH, vol, "visualization volume, batch %d", N);
    if (transforms && P > 0)
        for (int i = 0; i < (warp ? 2 : 4); i++)
            nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes((size_t)N * padded), "padded volume, batch %d", N);
    nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes((size_t)N) * 2, "objective and penalty values");
    if (has_mask) nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes(vox), "mask");
    size_t per = nfv_shape_numel(widest->out_ndim, widest->out_shape);
    nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes((size_t)N * per), "objective seed, batch %d", N);
    if (o->param != NFV_VIS_PARAM_VOXEL) {
        /* nfv_fourier_create: the 1/f scale, per axis a matrix each way; two scratch volumes. */
        int vec = nfv_context_vector_width(ctx), dims[3] = {D, H, W};
        size_t ldb = (size_t)(W + vec - 1) / vec * vec, mats = 0;
        for (int a = 0; a < 3; a++)
            mats += 2 * ((a == 2 ? (size_t)W * ldb : (size_t)(dims[a] + 3) / 4 * 4 * dims[a]) + 64);
        nfv_memory_add(e, NFV_MEM_SCRATCH, (vox + mats) * sizeof(float), "Fourier basis");
        for (int i = 0; i < 2; i++)
            nfv_memory_add(e, NFV_MEM_SCRATCH, nfv_tensor_bytes((size_t)N * vox), "Fourier scratch, batch %d", N);
        if (o->blur_sigma > 0) nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes(vox), "Fourier blur factor");
    } else if (o->blur_sigma > 0) {
        nfv_memory_add(e, NFV_MEM_SCRATCH, (size_t)N * vox * sizeof(float), "blur scratch, batch %d", N);
    }
    if (o->l1 > 0 || o->l2 > 0 || o->tv > 0)
        nfv_memory_add(e, NFV_MEM_SCRATCH, (size_t)N * D * H * sizeof(float), "penalty row sums");
    /* --diversity / --stay: a seed at their layer (bounded by the model's
     * largest activation) and a second input gradient each. */
    size_t largest = 0;
    for (int l = 0; l < m->layer_count; l++) {
        size_t q = nfv_shape_numel(m->layers[l].out_ndim, m->layers[l].out_shape);
        if (q > largest) largest = q;
    }
    for (int k = 0; k < (o->diversity > 0) + (o->stay > 0); k++) {
        nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes((size_t)N * largest), "diversity / stay seed, batch %d", N);
        nfv_memory_add(e, NFV_MEM_BATCH, vol, "diversity / stay input gradient, batch %d", N);
    }
    /* maco: the amplitude and the coefficients between the phase and the basis. */
    if (o->param == NFV_VIS_PARAM_MACO)
        nfv_memory_add(e, NFV_MEM_SCRATCH, nfv_tensor_bytes(vox) + nfv_tensor_bytes((size_t)N * vox),
                       "MACO amplitude and coefficients, batch %d", N);
}

void nfv_vis_memory(const nfv_context *ctx, const nfv_model *m, const nfv_target *targets, int count,
                    const nfv_vis_options *o, nfv_memory_estimate *e)
{
    memset(e, 0, sizeof *e);
    if (count <= 0) return;
    int N = largest_batch_run(targets, count, o), deepest = 0, widest = 0;
    for (int i = 0; i < count; i++) {
        const nfv_layer *a = &m->layers[targets[i].layer], *b = &m->layers[targets[widest].layer];
        if (targets[i].layer > deepest) deepest = targets[i].layer;
        if (nfv_shape_numel(a->out_ndim, a->out_shape) > nfv_shape_numel(b->out_ndim, b->out_shape)) widest = i;
    }
    if (N < 1) N = 1;
    nfv_model_memory(m, ctx, N, deepest, 0, e);
    batch_memory(ctx, m, &m->layers[targets[widest].layer], N, o, e);
}

typedef struct vis_fit {
    const nfv_context *ctx;
    const nfv_model *m;
    const nfv_target *targets;
    int count;
    nfv_vis_options o;
} vis_fit;

static void vis_fit_fn(void *user, int batch, nfv_memory_estimate *e)
{
    vis_fit *f = user;
    f->o.batch = batch;
    nfv_vis_memory(f->ctx, f->m, f->targets, f->count, &f->o, e);
}

nfv_status nfv_vis_fit_batch(const nfv_context *ctx, const nfv_model *m, const nfv_target *targets, int count,
                             nfv_vis_options *o, int auto_batch, const char *what)
{
    if (count <= 0 || o->batch < 1) return NFV_OK;
    for (int i = 0; i < count; i++)
        if (targets[i].layer < 0 || targets[i].layer >= m->layer_count) return NFV_OK; /* nfv_visualize refuses it */
    /* --diversity needs a target's starts in one batch: a default batch grows to them. */
    if (auto_batch && o->diversity > 0 && o->batch < o->starts) o->batch = o->starts;
    vis_fit f = {ctx, m, targets, count, *o};
    int chosen = o->batch;
    NFV_TRY(nfv_memory_check_batch(ctx, what, vis_fit_fn, &f, o->batch, auto_batch, &chosen));
    if (o->diversity > 0 && chosen < o->starts)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "%s: --diversity optimizes a target's %d starts in one batch, but the "
                                             "device fits a batch of %d: fewer --starts, or a smaller grid",
                        what, o->starts, chosen);
    o->batch = chosen;
    return NFV_OK;
}
