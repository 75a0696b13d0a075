/* Backward over a model: the chain pass (two ping-pong gradient buffers,
 * as before graphs) and the graph pass (a gradient per node, gradients of a
 * tensor read by several nodes summed, pass-through nodes sharing their
 * gradient's memory).  See include/neurofv/model.h. */
#include "model/model_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Backward of a single-input layer l: dy (N, out) -> dx (N, in) (dx may be
 * NULL: not needed). */
static nfv_status layer_backward(nfv_model *m, nfv_context *ctx, nfv_layer *l, const nfv_tensor *x,
                                 const nfv_tensor *dy, nfv_tensor *dx, int param_grads)
{
    const nfv_layer_spec *s = &l->spec;
    switch (s->kind) {
    case NFV_LAYER_CONV3D: {
        nfv_conv3d_params p;
        nfv_layer_conv_params(s, &p);
        if (param_grads)
            NFV_TRY(nfv_conv3d_backward_weights(ctx, &p, x, dy, &l->grad[0], s->bias ? &l->grad[1] : NULL));
        if (dx) NFV_TRY(nfv_conv3d_backward_input(ctx, &p, dy, &l->param[0], dx));
        return NFV_OK;
    }
    case NFV_LAYER_MAXPOOL3D: {
        nfv_pool3d_params p;
        nfv_layer_pool_params(s, &p);
        return dx ? nfv_maxpool3d_backward(ctx, &p, dy, &l->aux, dx) : NFV_OK;
    }
    case NFV_LAYER_AVGPOOL3D: {
        nfv_pool3d_params p;
        nfv_layer_pool_params(s, &p);
        return dx ? nfv_avgpool3d_backward(ctx, &p, dy, dx) : NFV_OK;
    }
    case NFV_LAYER_BATCHNORM3D:
        if (m->last_training && l + 1 < m->layers + m->layer_count && l[1].relu_in_bn)
            /* dy: the gradient at the ReLU's output, which it computed (model_run.c) */
            return nfv_batchnorm3d_relu_backward_train_dist(ctx, x, dy, &l->param[0], &l->param[1], &l->aux, &l->aux2,
                                                            dx, param_grads ? &l->grad[0] : NULL,
                                                            param_grads ? &l->grad[1] : NULL, m->dist);
        if (m->last_training)
            return nfv_batchnorm3d_backward_train_dist(ctx, x, dy, &l->param[0], &l->aux, &l->aux2, dx,
                                                       param_grads ? &l->grad[0] : NULL,
                                                       param_grads ? &l->grad[1] : NULL, m->dist);
        if (param_grads)
            return nfv_fail(NFV_ERR_UNSUPPORTED, "parameter gradients of BatchNorm after an eval-mode forward");
        return dx ? nfv_batchnorm3d_backward_eval(ctx, dy, &l->param[0], &l->running_var, s->alpha, dx) : NFV_OK;
    case NFV_LAYER_RELU:
    case NFV_LAYER_LEAKY_RELU:
    case NFV_LAYER_SIGMOID:
    case NFV_LAYER_ELU: return dx ? nfv_activation_backward(ctx, nfv_layer_activation(s->kind), s->alpha, x, dy, dx) : NFV_OK;
    case NFV_LAYER_DROPOUT:
        if (!dx) return NFV_OK;
        if (m->last_training && s->alpha > 0) return nfv_dropout_backward(ctx, dy, &l->aux, dx);
        return nfv_tensor_copy(ctx, dx, dy);
    case NFV_LAYER_FLATTEN:
    case NFV_LAYER_RESHAPE:
    case NFV_LAYER_IDENTITY: return dx ? nfv_tensor_copy(ctx, dx, dy) : NFV_OK;
    case NFV_LAYER_PAD: return dx ? nfv_pad3d_backward(ctx, s->padding, s->pad_end, dy, dx) : NFV_OK;
    case NFV_LAYER_GMP: {
        if (!dx) return NFV_OK;
        int sh[2] = {m->batch, l->out_shape[0]};
        nfv_tensor dy2 = nfv_shaped_tensor(dy->buf, 2, sh);
        return nfv_global_maxpool_backward(ctx, &dy2, &l->aux, dx);
    }
    case NFV_LAYER_INSTANCENORM:
        return nfv_instancenorm3d_backward(ctx, x, dy, &l->param[0], &l->aux, &l->aux2, dx,
                                           param_grads ? &l->grad[0] : NULL, param_grads ? &l->grad[1] : NULL);
    case NFV_LAYER_SOFTMAX:
    case NFV_LAYER_LOGSOFTMAX:
        return dx ? nfv_softmax_backward(ctx, s->kind == NFV_LAYER_LOGSOFTMAX, &l->out, dy, dx) : NFV_OK;
    case NFV_LAYER_GAP: {
        if (!dx) return NFV_OK;
        int sh[2] = {m->batch, l->out_shape[0]};
        nfv_tensor dy2 = nfv_shaped_tensor(dy->buf, 2, sh);
        return nfv_global_avgpool_backward(ctx, &dy2, dx);
    }
    case NFV_LAYER_LINEAR:
        return nfv_linear_backward(ctx, x, &l->param[0], dy, dx, param_grads ? &l->grad[0] : NULL,
                                   param_grads && s->bias ? &l->grad[1] : NULL);
    default: return nfv_fail(NFV_ERR_INVALID_ARG, "layer kind %d has no single-input backward", (int)s->kind);
    }
}

/* The pass of a chain: gradients alternate between two buffers. */
static nfv_status chain_backward(nfv_model *m, nfv_context *ctx, int from_layer, const nfv_tensor *g, int param_grads,
                                 nfv_tensor *dx, int stop, nfv_tensor *dact)
{
    nfv_tensor dy_view;
    {
        const nfv_layer *l = &m->layers[from_layer];
        int sh[5];
        int nd = nfv_batched_shape(m->batch, l->out_ndim, l->out_shape, sh);
        dy_view = nfv_shaped_tensor(g->buf, nd, sh);
    }
    /* Gradients alternate between the two scratch buffers; layer 0 writes dx. */
    cl_mem bufs[2] = {m->grad_a.buf, m->grad_b.buf};
    int next = 0;
    nfv_tensor cur = dy_view;
    for (int i = from_layer; i > stop; i--) {
        nfv_layer *l = &m->layers[i];
        /* A fused group [lo, i] (model_fuse.c) goes from i's output to lo's input at once. */
        const int lo = i - l->fused_with;
        if (lo <= stop)
            return nfv_fail(NFV_ERR_INVALID_ARG, "backward to layer %d (%s): fused into %s by the eval-mode forward "
                            "(pin it with nfv_model_keep_activation)", stop, m->layers[stop].name, l->name);
        const nfv_tensor *x = lo ? &m->layers[lo - 1].out : m->last_input;
        const nfv_layer *first = &m->layers[lo];
        int sh[5];
        int nd = nfv_batched_shape(m->batch, first->in_ndim, first->in_shape, sh);
        nfv_tensor din, *dinp = NULL;
        if (lo > 0) {
            /* Skip the copy for shape-only layers: the gradient is the same memory. */
            /* and for a ReLU its BatchNorm computed: the BatchNorm's backward gates */
            if (l->spec.kind == NFV_LAYER_FLATTEN || l->relu_in_bn ||
                (l->spec.kind == NFV_LAYER_DROPOUT && !(m->last_training && l->spec.alpha > 0))) {
                cur = nfv_shaped_tensor(cur.buf, nd, sh);
                continue;
            }
            din = nfv_shaped_tensor(bufs[next], nd, sh);
            dinp = &din;
        } else if (dx) {
            din = nfv_shaped_tensor(dx->buf, nd, sh);
            dinp = &din;
        }
        char scope[128];
        snprintf(scope, sizeof scope, "layer %d (%s) backward", i, l->name);
        nfv_error_scope_set(scope);
        nfv_status s = l->fused_with ? nfv_fused_backward(m, ctx, i, &cur, param_grads, dinp)
                                     : layer_backward(m, ctx, l, x, &cur, dinp, param_grads);
        nfv_error_scope_set(NULL);
        if (s) return nfv_fail_context(s, "backward, layer %d (%s)", i, l->name);
        i = lo;
        if (i > 0) {
            cur = din;
            next ^= 1;
        }
    }
    /* cur is now the gradient of layer stop's output. */
    return stop >= 0 ? nfv_tensor_copy(ctx, dact, &cur) : NFV_OK;
}

/* Gradient bookkeeping of the graph pass: grad[j] is node j's gradient so
 * far (has[j]), in a buffer j owns for now: its own dout, or the buffer of a
 * node already processed that passed it on (pass-through nodes and an Add's
 * first input take their output's gradient as is).  Each buffer has one
 * owner among the nodes not yet processed, so writing it is safe. */
typedef struct graph_grads {
    nfv_tensor *grad;
    unsigned char *has, *needed;
    nfv_tensor input_grad; /* the caller's dx, shaped as the input */
    int input_has, want_input;
} graph_grads;

/* Where the gradient for input k of node l goes: the input's own buffer
 * when it has none yet (*accumulate = 0), else the scratch buffer, to be
 * added (*accumulate = 1).  NULL: not needed. */
static nfv_tensor *grad_target(nfv_model *m, graph_grads *gg, const nfv_layer *l, int k, nfv_tensor *scratch,
                               int *accumulate)
{
    int j = l->inputs[k];
    int sh[5];
    int nd;
    *accumulate = 0;
    if (j < 0) {
        if (!gg->want_input) return NULL;
        nd = nfv_batched_shape(m->batch, 4, m->input_shape, sh);
        if (!gg->input_has) return &gg->input_grad;
    } else {
        const nfv_layer *in = &m->layers[j];
        if (in->spec.kind == NFV_LAYER_CONSTANT) return NULL;
        nd = nfv_batched_shape(m->batch, in->out_ndim, in->out_shape, sh);
        if (!gg->has[j]) {
            gg->grad[j] = nfv_shaped_tensor(in->dout.buf, nd, sh);
            return &gg->grad[j];
        }
    }
    *scratch = nfv_shaped_tensor(m->grad_a.buf, nd, sh);
    *accumulate = 1;
    return scratch;
}

/* After a gradient for input k was written to target: add it in if it was
 * a partial, and record that the input now has one. */
static nfv_status grad_done(nfv_context *ctx, graph_grads *gg, const nfv_layer *l, int k, nfv_tensor *target,
                            int accumulate)
{
    int j = l->inputs[k];
    nfv_tensor *dst = j < 0 ? &gg->input_grad : &gg->grad[j];
    if (accumulate) NFV_TRY(nfv_axpy(ctx, 1.0f, target, dst));
    if (j < 0) gg->input_has = 1;
    else gg->has[j] = 1;
    return NFV_OK;
}

/* Input k of l takes dy's memory as its gradient (pass-through), when it has
 * no gradient yet and is a node; returns 1 if done. */
static int pass_through(nfv_model *m, graph_grads *gg, const nfv_layer *l, int k, const nfv_tensor *dy)
{
    int j = l->inputs[k];
    if (j < 0 || gg->has[j] || m->layers[j].spec.kind == NFV_LAYER_CONSTANT) return 0;
    int sh[5];
    int nd = nfv_batched_shape(m->batch, m->layers[j].out_ndim, m->layers[j].out_shape, sh);
    gg->grad[j] = nfv_shaped_tensor(dy->buf, nd, sh);
    gg->has[j] = 1;
    return 1;
}

/* Backward of node l from dy = its gradient into each of its inputs. */
static nfv_status graph_node_backward(nfv_model *m, nfv_context *ctx, graph_grads *gg, nfv_layer *l,
                                      const nfv_tensor *dy, int param_grads)
{
    nfv_layer_kind kind = l->spec.kind;
    int pass = kind == NFV_LAYER_FLATTEN || kind == NFV_LAYER_RESHAPE || kind == NFV_LAYER_IDENTITY || l->relu_in_bn ||
               (kind == NFV_LAYER_DROPOUT && !(m->last_training && l->spec.alpha > 0));
    if (pass || kind == NFV_LAYER_ADD || kind == NFV_LAYER_CONCAT) {
        int off = 0;
        for (int k = 0; k < l->n_inputs; k++) {
            int j = l->inputs[k];
            int channels = j < 0 ? m->input_shape[0] : m->layers[j].out_shape[0];
            if (kind != NFV_LAYER_CONCAT && k == 0 && pass_through(m, gg, l, 0, dy)) continue;
            int acc;
            nfv_tensor scratch, *t = grad_target(m, gg, l, k, &scratch, &acc);
            if (t) {
                if (kind == NFV_LAYER_CONCAT) NFV_TRY(nfv_concat_channels_backward(ctx, dy, off, t));
                else NFV_TRY(nfv_tensor_copy(ctx, t, dy));
                NFV_TRY(grad_done(ctx, gg, l, k, t, acc));
            }
            off += channels;
        }
        return NFV_OK;
    }
    int acc = 0;
    nfv_tensor scratch, *t = l->n_inputs ? grad_target(m, gg, l, 0, &scratch, &acc) : NULL;
    const nfv_tensor *x = l->inputs[0] < 0 ? m->last_input : &m->layers[l->inputs[0]].out;
    NFV_TRY(layer_backward(m, ctx, l, x, dy, t, param_grads));
    return t ? grad_done(ctx, gg, l, 0, t, acc) : NFV_OK;
}

static nfv_status graph_backward(nfv_model *m, nfv_context *ctx, int from, const nfv_tensor *g, int param_grads,
                                 nfv_tensor *dx, int stop, nfv_tensor *dact)
{
    graph_grads gg;
    memset(&gg, 0, sizeof gg);
    int n = m->layer_count;
    gg.grad = calloc((size_t)n, sizeof *gg.grad);
    gg.has = calloc((size_t)n, 1);
    gg.needed = calloc((size_t)n, 1);
    if (!gg.grad || !gg.has || !gg.needed) {
        free(gg.grad), free(gg.has), free(gg.needed);
        return nfv_fail(NFV_ERR_NO_MEMORY, "model backward: out of memory");
    }
    nfv_model_mark_ancestors(m, from, gg.needed);
    int sh[5];
    if (dx) {
        int nd = nfv_batched_shape(m->batch, 4, m->input_shape, sh);
        gg.input_grad = nfv_shaped_tensor(dx->buf, nd, sh);
        gg.want_input = 1;
    }
    /* The caller's gradient is copied once: accumulation may write gradients in place. */
    nfv_layer *top = &m->layers[from];
    int nd = nfv_batched_shape(m->batch, top->out_ndim, top->out_shape, sh);
    gg.grad[from] = nfv_shaped_tensor(top->dout.buf, nd, sh);
    gg.has[from] = 1;
    nfv_status s = nfv_tensor_copy(ctx, &gg.grad[from], g);
    /* Nodes are in topological order: once every node after `stop` is done,
     * stop's gradient is complete (all its consumers come after it). */
    for (int i = from; i > stop && !s; i--) {
        nfv_layer *l = &m->layers[i];
        if (!gg.needed[i] || !gg.has[i] || l->spec.kind == NFV_LAYER_CONSTANT) continue;
        char scope[128];
        snprintf(scope, sizeof scope, "layer %d (%s) backward", i, l->name);
        nfv_error_scope_set(scope);
        nfv_tensor dy = gg.grad[i];
        if (l->fused_with) {
            /* A fused group [i - fused_with, i] (model_fuse.c): into its conv's input at once. */
            const int lo = i - l->fused_with;
            nfv_layer *first = &m->layers[lo];
            int acc = 0;
            nfv_tensor scratch, *t = NULL;
            if (lo <= stop)
                s = nfv_fail(NFV_ERR_INVALID_ARG, "backward to layer %d (%s): fused into %s by the eval-mode forward "
                             "(pin it with nfv_model_keep_activation)", stop, m->layers[stop].name, l->name);
            else t = grad_target(m, &gg, first, 0, &scratch, &acc);
            if (!s) s = nfv_fused_backward(m, ctx, i, &dy, param_grads, t);
            if (!s && t) s = grad_done(ctx, &gg, first, 0, t, acc);
        } else
            s = graph_node_backward(m, ctx, &gg, l, &dy, param_grads);
        nfv_error_scope_set(NULL);
        if (s) s = nfv_fail_context(s, "backward, layer %d (%s)", i, l->name);
    }
    /* An input no path reaches (e.g. the target ignores it) has gradient 0. */
    if (!s && dx && !gg.input_has) s = nfv_tensor_fill(ctx, dx, 0.0f);
    if (!s && stop >= 0) s = gg.has[stop] ? nfv_tensor_copy(ctx, dact, &gg.grad[stop]) : nfv_tensor_fill(ctx, dact, 0.0f);
    free(gg.grad), free(gg.has), free(gg.needed);
    return s;
}

/* The checks shared by both entry points. */
static nfv_status check_backward(const nfv_model *m, int from_layer, const nfv_tensor *g)
{
    if (from_layer > m->last_forward_upto || !m->last_input || !m->layers[from_layer].computed)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward from layer %d: the last forward did not compute it (it reached layer %d)",
                        from_layer, m->last_forward_upto);
    if (g->numel != m->layers[from_layer].out.numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward: gradient has %zu elements, layer %d (%s) output has %zu",
                        g->numel, from_layer, m->layers[from_layer].name, m->layers[from_layer].out.numel);
    return NFV_OK;
}

nfv_status nfv_model_backward(nfv_model *m, nfv_context *ctx, int from_layer, const nfv_tensor *grad_at_from_layer_output,
                              int param_grads, nfv_tensor *dx)
{
    if (from_layer < 0) from_layer = m->layer_count - 1;
    const nfv_tensor *g = grad_at_from_layer_output;
    NFV_TRY(check_backward(m, from_layer, g));
    if (dx && dx->numel != m->last_input->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward: dx has %zu elements, the input has %zu", dx->numel,
                        m->last_input->numel);
    if (m->is_graph) return graph_backward(m, ctx, from_layer, g, param_grads, dx, -1, NULL);
    return chain_backward(m, ctx, from_layer, g, param_grads, dx, -1, NULL);
}

nfv_status nfv_model_backward_to_layer(nfv_model *m, nfv_context *ctx, int from_layer, const nfv_tensor *g,
                                       int to_layer, nfv_tensor *dact)
{
    if (from_layer < 0) from_layer = m->layer_count - 1;
    NFV_TRY(check_backward(m, from_layer, g));
    if (to_layer < 0 || to_layer > from_layer)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward to layer %d: not between 0 and the starting layer %d (%s)",
                        to_layer, from_layer, m->layers[from_layer].name);
    if (dact->numel != m->layers[to_layer].out.numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward to layer %d (%s): gradient buffer has %zu elements, the output has %zu",
                        to_layer, m->layers[to_layer].name, dact->numel, m->layers[to_layer].out.numel);
    /* A training forward's BatchNorm that computed its ReLU: the gradient at
     * its own output is never formed (the BatchNorm's backward gates). */
    if (to_layer < from_layer && m->layers[to_layer + 1].relu_in_bn)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward to layer %d (%s): fused with %s by the training forward",
                        to_layer, m->layers[to_layer].name, m->layers[to_layer + 1].name);
    if (m->is_graph) return graph_backward(m, ctx, from_layer, g, 0, NULL, to_layer, dact);
    return chain_backward(m, ctx, from_layer, g, 0, NULL, to_layer, dact);
}
