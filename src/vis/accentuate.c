/* Feature accentuation (Hamblin et al. 2024) in 3D: start from a real
 * subject (--init subject=FILE, preprocessed to the model grid like the
 * training data) and optimize the unit while a penalty keeps the activations
 * at one layer near the subject's own (--stay LAYER=W), so the result reads
 * as "this subject, with more of what the unit wants".
 *
 * For sample i with activation a_i (P values at the layer) and the
 * subject's r (the same layer, from the unchanged subject):
 *   loss_i = w mean_p (a_ip - r_p)^2,   d loss_i / d a_ip = 2 w (a_ip - r_p) / P,
 * the seed of a second backward from the layer, added to the objective's
 * input gradient (as the diversity term, diversity.c). */
#include <stdlib.h>
#include <string.h>

#include "vis/vis_internal.h"

double nfv_stay_loss(const double *a, const double *ref, size_t P, double w, double *grad)
{
    double s = 0;
    for (size_t p = 0; p < P; p++) {
        double d = a[p] - ref[p];
        s += d * d;
        if (grad) grad[p] = 2.0 * w * d / (double)P;
    }
    return w * s / (double)P;
}

void vis_stay_free(vis_stay *st)
{
    nfv_tensor_free(&st->seed);
    nfv_tensor_free(&st->dx);
    free(st->ref);
    free(st->host);
    memset(st, 0, sizeof *st);
}

nfv_status vis_stay_init(vis_stay *st, nfv_context *ctx, nfv_model *m, const nfv_vis_options *o, int target_layer,
                         const nfv_tensor *subject, const nfv_tensor *dx)
{
    memset(st, 0, sizeof *st);
    st->layer = vis_diversity_layer(m, o->stay_layer, target_layer);
    if (st->layer < 0 || st->layer > target_layer)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--stay %s: no such layer at or before the target's layer %s", o->stay_layer,
                        m->layers[target_layer].name);
    const nfv_layer *l = &m->layers[st->layer];
    int N = subject->shape[0], shape[5] = {N, 0, 0, 0, 0};
    for (int i = 0; i < l->out_ndim; i++) shape[1 + i] = l->out_shape[i];
    st->per = nfv_shape_numel(l->out_ndim, l->out_shape);
    st->n = N;
    NFV_TRY(nfv_tensor_create(ctx, &st->seed, 1 + l->out_ndim, shape));
    NFV_TRY(nfv_tensor_create(ctx, &st->dx, dx->ndim, dx->shape));
    st->ref = malloc((size_t)N * st->per * sizeof *st->ref);
    st->host = malloc((size_t)N * st->per * sizeof *st->host);
    if (!st->ref || !st->host) return nfv_fail(NFV_ERR_NO_MEMORY, "--stay: out of memory");
    /* The subject's own activations (every sample starts from the subject). */
    NFV_TRY(nfv_model_forward(m, ctx, subject, st->layer, 0));
    return nfv_tensor_download(ctx, nfv_model_activation(m, st->layer), st->ref);
}

nfv_status vis_stay_add(vis_stay *st, nfv_context *ctx, nfv_model *m, const nfv_vis_options *o, nfv_tensor *dx)
{
    NFV_TRY(nfv_tensor_download(ctx, nfv_model_activation(m, st->layer), st->host));
    float k = 2.0f * o->stay / (float)st->per;
    for (size_t e = 0; e < (size_t)st->n * st->per; e++) st->host[e] = k * (st->host[e] - st->ref[e]);
    NFV_TRY(nfv_tensor_upload(ctx, &st->seed, st->host));
    NFV_TRY(nfv_model_backward(m, ctx, st->layer, &st->seed, 0, &st->dx));
    return nfv_axpy(ctx, 1.0f, &st->dx, dx);
}
