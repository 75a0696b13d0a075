/* Eval-mode fusion of conv -> BatchNorm [-> ReLU] and conv -> ReLU (see
 * nfv_model_set_fusion in include/neurofv/model.h).
 *
 * In eval mode a BatchNorm is a per-channel affine map, so after a conv it
 * folds into the conv's weights and bias (nfv_conv3d_fold_batchnorm), and a
 * ReLU after it is applied as the conv stores its output.  For ref4 at 2 mm
 * that removes four full passes over the 29 MB first-layer activation per
 * visualization step (BN and ReLU, forward and backward).  Backward goes
 * from the gradient at the group's last output to the conv's input in one
 * call: ReLU's gate (its output > 0, the same as its input > 0) is applied
 * in the conv's padding copy, and the BatchNorm's scale is in the folded
 * weights.  A 2x2x2 max pool after the ReLU joins the group: the conv
 * computes the pooled maxima and arg maxima as it stores (the conv's own
 * output never reaches memory), and the pool's backward writes the
 * gradient, gated, straight into the padded copy the conv's input gradient
 * reads.  A conv -> ReLU without a BatchNorm (PyTorch's ONNX export folds
 * it into the conv) runs the same way with the conv's own weights: the ReLU
 * passes of ONNX ResNet-18 and DenseNet visualization steps.  Only inputs'
 * gradients: parameter gradients need the unfused layers (training runs
 * unfused anyway, with batch statistics). */
#include "model/model_run.h"

#include <stdio.h>

void nfv_model_set_fusion(nfv_model *m, int on)
{
    m->fuse_eval = on != 0;
}

void nfv_model_keep_activation(nfv_model *m, int layer)
{
    if (layer >= 0 && layer < m->layer_count) m->layers[layer].keep = 1;
}

/* 1 when layer j reads only from layer i and is i's only consumer. */
static int only_reader(const nfv_model *m, int i, int j)
{
    const nfv_layer *l = &m->layers[j];
    return l->n_inputs == 1 && l->inputs[0] == i && m->layers[i].consumers == 1 && !m->layers[i].keep;
}

/* 1 when an Add later writes its sum into layer i's output buffer. */
static int overwritten_in_place(const nfv_model *m, int i)
{
    for (int j = i + 1; j < m->layer_count; j++)
        if (m->layers[j].in_place && m->layers[j].inputs[0] == i) return 1;
    return 0;
}

/* A max pool j (kernel 2, stride 2, no padding, floor) that the conv of the
 * group [j - 3, j - 1] can compute in its store (the pool's backward then
 * writes the conv's staged input gradient, so that path must exist too). */
static int poolable(const nfv_model *m, const nfv_context *ctx, int j)
{
    const nfv_layer *l = &m->layers[j];
    if (l->spec.kind != NFV_LAYER_MAXPOOL3D || !only_reader(m, j - 1, j) || l->spec.ceil_mode) return 0;
    for (int a = 0; a < 3; a++)
        if (l->spec.kernel[a] != 2 || l->spec.stride[a] != 2 || l->spec.padding[a] != 0) return 0;
    nfv_conv3d_params p;
    nfv_layer_conv_params(&m->layers[j - 3].spec, &p);
    return nfv_conv3d_has_relu_maxpool2(ctx, &p) && nfv_conv3d_has_staged_input_grad(&p);
}

int nfv_fuse_group_end(const nfv_model *m, const nfv_context *ctx, int i, int upto, int training)
{
    if (!m->fuse_eval || training || i + 1 > upto) return i;
    const nfv_layer *c = &m->layers[i], *next = &m->layers[i + 1];
    if (c->spec.kind != NFV_LAYER_CONV3D || !only_reader(m, i, i + 1)) return i;
    /* conv -> ReLU with no BatchNorm between: as PyTorch's ONNX export
     * leaves conv -> BN -> ReLU, the BatchNorm folded into the conv */
    if (next->spec.kind == NFV_LAYER_RELU) return overwritten_in_place(m, i + 1) ? i : i + 1;
    if (next->spec.kind != NFV_LAYER_BATCHNORM3D || next->nparams != 2) return i;
    if (i + 2 > upto || m->layers[i + 2].spec.kind != NFV_LAYER_RELU || !only_reader(m, i + 1, i + 2)) return i + 1;
    if (i + 3 <= upto && poolable(m, ctx, i + 3)) return i + 3;
    return overwritten_in_place(m, i + 2) ? i + 1 : i + 2;
}

/* Training runs BatchNorm with batch statistics, so nothing folds into the
 * conv; but a ReLU after it is one more pass over the activation forward
 * (ref4 at batch 4: 6.3 ms of a 147 ms step) and an output the size of the
 * BatchNorm's that need not exist (231 MB for ref4's first layer at batch
 * 8).  The backward gates from the BatchNorm's input, so an Add that later
 * sums into the ReLU's output in place does not disturb it. */
int nfv_train_fuses_bn_relu(const nfv_model *m, int i, int upto)
{
    if (m->train_unfused || i + 1 > upto) return 0;
    const nfv_layer *bn = &m->layers[i];
    return bn->spec.kind == NFV_LAYER_BATCHNORM3D && bn->nparams == 2 &&
           m->layers[i + 1].spec.kind == NFV_LAYER_RELU && only_reader(m, i, i + 1);
}

/* The group at head has a BatchNorm after its conv (else a ReLU). */
static int group_has_bn(const nfv_model *m, int head)
{
    return m->layers[head + 1].spec.kind == NFV_LAYER_BATCHNORM3D;
}

nfv_status nfv_fused_forward(nfv_model *m, nfv_context *ctx, int head, int tail, const nfv_tensor *x)
{
    nfv_layer *c = &m->layers[head], *bn = &m->layers[head + 1], *t = &m->layers[tail];
    nfv_conv3d_params p;
    nfv_layer_conv_params(&c->spec, &p);
    if (!group_has_bn(m, head)) {
        NFV_TRY(nfv_conv3d_forward_relu(ctx, &p, x, &c->param[0], c->spec.bias ? &c->param[1] : NULL, &t->out));
        t->fused_with = tail - head;
        return NFV_OK;
    }
    if (!c->fold_w.buf) {
        NFV_TRY(nfv_tensor_create(ctx, &c->fold_w, c->param[0].ndim, c->param[0].shape));
        NFV_TRY(nfv_tensor_create(ctx, &c->fold_b, 1, &c->param[0].shape[0]));
    }
    /* Every forward, unless the weights are frozen and this freeze already
     * folded them: the parameters may have changed since the last one.
     * Folding reads and writes every weight: 74 ms of a 147 ms
     * visualization step of ResNet-18 (64^3, batch 1) when done per step. */
    const unsigned long generation = nfv_context_frozen_generation(ctx);
    if (!generation || c->fold_generation != generation) {
        NFV_TRY(nfv_conv3d_fold_batchnorm(ctx, &c->param[0], c->spec.bias ? &c->param[1] : NULL, &bn->param[0],
                                          &bn->param[1], &bn->running_mean, &bn->running_var, bn->spec.alpha,
                                          &c->fold_w, &c->fold_b));
        c->fold_generation = generation;
    }
    if (tail == head + 3) NFV_TRY(nfv_conv3d_forward_relu_maxpool2(ctx, &p, x, &c->fold_w, &c->fold_b, &t->out, &t->aux));
    else if (tail == head + 2) NFV_TRY(nfv_conv3d_forward_relu(ctx, &p, x, &c->fold_w, &c->fold_b, &t->out));
    else NFV_TRY(nfv_conv3d_forward(ctx, &p, x, &c->fold_w, &c->fold_b, &t->out));
    t->fused_with = tail - head;
    return NFV_OK;
}

/* The backward of a group ending in a max pool i (fused_with 3): from the
 * pool's output gradient dy to the conv's input dx. */
static nfv_status pool_group_backward(nfv_model *m, nfv_context *ctx, int i, const nfv_tensor *dy, nfv_tensor *dx)
{
    nfv_layer *pool = &m->layers[i], *relu = &m->layers[pool->inputs[0]];
    nfv_layer *c = &m->layers[pool->inputs[0] - 2];
    nfv_conv3d_params cp;
    nfv_pool3d_params pp;
    nfv_layer_conv_params(&c->spec, &cp);
    nfv_layer_pool_params(&pool->spec, &pp);
    nfv_tensor staged;
    nfv_conv3d_staging layout;
    /* The conv's dy has the ReLU output's shape; the pool writes it gated and padded. */
    NFV_TRY(nfv_conv3d_stage_input_grad(ctx, &cp, &relu->out, &c->fold_w, dx, &staged, &layout));
    NFV_TRY(nfv_maxpool3d_backward_gated_padded(ctx, &pp, dy, &pool->aux, &relu->out, &layout, &staged));
    return nfv_conv3d_backward_input_staged(ctx, &cp, &relu->out, &c->fold_w, dx);
}

nfv_status nfv_fused_backward(nfv_model *m, nfv_context *ctx, int tail, const nfv_tensor *dy, int param_grads,
                              nfv_tensor *dx)
{
    const nfv_layer *t = &m->layers[tail];
    const int head = tail - t->fused_with;
    nfv_layer *c = &m->layers[head];
    if (param_grads)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "parameter gradients of layers %d-%d (%s-%s), fused by an eval-mode forward",
                        head, tail, c->name, t->name);
    if (!dx) return NFV_OK;
    if (t->fused_with == 3) return pool_group_backward(m, ctx, tail, dy, dx);
    nfv_conv3d_params p;
    nfv_layer_conv_params(&c->spec, &p);
    const nfv_tensor *w = group_has_bn(m, head) ? &c->fold_w : &c->param[0];
    if (t->spec.kind == NFV_LAYER_RELU) return nfv_conv3d_backward_input_gated(ctx, &p, dy, &t->out, w, dx);
    return nfv_conv3d_backward_input(ctx, &p, dy, w, dx);
}
