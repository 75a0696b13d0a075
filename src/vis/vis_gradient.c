/* The objective of a target at given inputs and its gradient, outside the
 * optimization loop: what attribution methods (src/explain/) are built on.
 * The same objective table as the loop (vis_objective.c), so a target means
 * the same to `visualize` and to `explain`.
 *
 * x (N, C, D, H, W) on the model grid; sample n's target is targets[n]; all
 * targets share one layer (vis_same_batch).  The seed the objective gives
 * the backward pass is -d objective / d a (the loop minimizes), so the
 * gradients are negated once at the end. */
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis_ops.h"
#include "vis/vis_internal.h"

/* Forward to the targets' layer, the objective of every sample, and the
 * objective's seed ready for backward. */
static nfv_status forward_objective(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int n,
                                    const nfv_tensor *x, vis_sample *smp, vis_objective *ob, float *objective)
{
    for (int i = 1; i < n; i++)
        if (!vis_same_batch(&targets[0], &targets[i]))
            return nfv_fail(NFV_ERR_INVALID_ARG, "gradient: targets %s and %s are not on one layer", targets[0].name,
                            targets[i].name);
    if ((size_t)n * (size_t)nfv_shape_numel(4, m->input_shape) != x->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "gradient: input has %zu floats, %d samples of the model input need %zu",
                        x->numel, n, (size_t)n * (size_t)nfv_shape_numel(4, m->input_shape));
    for (int i = 0; i < n; i++) smp[i] = (vis_sample){i, 0};
    NFV_TRY(vis_objective_init(ob, ctx, m, targets, smp, n));
    NFV_TRY(nfv_model_forward(m, ctx, x, targets[0].layer, 0));
    nfv_tensor *act = nfv_model_activation(m, targets[0].layer);
    NFV_TRY(vis_objective_step(ob, act));
    return objective ? vis_objective_read(ob, act, objective) : NFV_OK;
}

nfv_status nfv_vis_input_gradient(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int n,
                                  const nfv_tensor *x, float *objective, nfv_tensor *dx)
{
    vis_objective ob;
    memset(&ob, 0, sizeof ob);
    vis_sample *smp = malloc((size_t)n * sizeof *smp);
    if (!smp) return nfv_fail(NFV_ERR_NO_MEMORY, "gradient: out of memory");
    /* Only the target's layer and the input gradient are read: fused (model.h). */
    const int was_fused = m->fuse_eval;
    nfv_model_set_fusion(m, 1);
    nfv_status s = forward_objective(ctx, m, targets, n, x, smp, &ob, objective);
    if (!s && dx) s = nfv_model_backward(m, ctx, targets[0].layer, &ob.seed, 0, dx);
    nfv_model_set_fusion(m, was_fused);
    if (!s && dx) s = nfv_scale(ctx, -1.0f, dx);
    vis_objective_free(&ob);
    free(smp);
    return s;
}

nfv_status nfv_vis_layer_gradient(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int n,
                                  const nfv_tensor *x, int layer, float *objective, nfv_tensor *dact)
{
    vis_objective ob;
    memset(&ob, 0, sizeof ob);
    vis_sample *smp = malloc((size_t)n * sizeof *smp);
    if (!smp) return nfv_fail(NFV_ERR_NO_MEMORY, "gradient: out of memory");
    /* Fused (model.h), with the layer whose gradient and activation the
     * caller reads (Grad-CAM) pinned. */
    const int was_fused = m->fuse_eval;
    if (layer >= 0 && layer < m->layer_count) nfv_model_keep_activation(m, layer);
    nfv_model_set_fusion(m, 1);
    nfv_status s = forward_objective(ctx, m, targets, n, x, smp, &ob, objective);
    if (!s && (layer < 0 || layer > targets[0].layer || !m->layers[layer].computed))
        s = nfv_fail(NFV_ERR_INVALID_ARG, "gradient at layer %d (%s): the target %s does not depend on it", layer,
                     layer >= 0 && layer < m->layer_count ? m->layers[layer].name : "?", targets[0].name);
    if (!s) s = nfv_model_backward_to_layer(m, ctx, targets[0].layer, &ob.seed, layer, dact);
    if (!s) s = nfv_scale(ctx, -1.0f, dact);
    nfv_model_set_fusion(m, was_fused);
    vis_objective_free(&ob);
    free(smp);
    return s;
}
