/* nfv_visualize: every target's starts become samples, samples are ordered
 * into batches of targets that may share one (vis_same_batch), each batch
 * runs through the loop (vis_loop.c), and the best start of each target
 * (highest objective without transforms) becomes its result. */
#include <stdlib.h>
#include <string.h>

#include "vis/vis_internal.h"

void nfv_vis_results_free(nfv_vis_result *r, int count)
{
    if (!r) return;
    for (int i = 0; i < count; i++) {
        nfv_volume_free(&r[i].volume);
        nfv_volume_free(&r[i].change);
        nfv_volume_free(&r[i].importance);
        free(r[i].start_objective);
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
static int batch_end(const vis_sample *order, const int *group_of, int total, int i, int batch)
{
    int j = i + 1;
    while (j < total && j - i < batch && group_of[order[j].target] == group_of[order[i].target]) j++;
    return j;
}

/* Runs every batch; each target's seconds are its share of its batches' time. */
static nfv_status run_batches(nfv_context *ctx, nfv_model *m, const nfv_target *targets, const vis_sample *order,
                              const int *group_of, int total, const nfv_vis_options *o, const float *templ,
                              const float *mask, vis_progress *progress, vis_log *logs, nfv_vis_result *res)
{
    progress->batches = 0;
    for (int i = 0; i < total; i = batch_end(order, group_of, total, i, o->batch)) progress->batches++;
    progress->batch = 0;
    for (int i = 0; i < total; progress->batch++) {
        int j = batch_end(order, group_of, total, i, o->batch);
        double t0 = vis_now();
        nfv_status st = vis_run_batch(ctx, m, targets, order + i, j - i, o, templ, mask, progress, logs + i);
        if (st) return nfv_fail_context(st, "visualizing %s", targets[order[i].target].name);
        double per = (vis_now() - t0) / (double)(j - i);
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
        NFV_TRY(nfv_vis_template_on_grid(m, o->init_path, &tv, NULL));
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
        st = run_batches(ctx, m, targets, order, group_of, total, o, templ, mask, &p, logs, res);
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
