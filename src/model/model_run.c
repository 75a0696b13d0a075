/* Forward and backward over the layers of a model, with the runtime tensors
 * of one batch size: activations (N, C, D, H, W) or (N, F) per layer, and two
 * ping-pong gradient buffers.  See include/neurofv/model.h. */
#include "model/model_internal.h"

#include <stdio.h>
#include <string.h>

#define BN_MOMENTUM 0.1f

/* (N, shape...) of a per-sample shape. */
static int batched(int n, int ndim, const int *shape, int *out)
{
    out[0] = n;
    for (int i = 0; i < ndim; i++) out[1 + i] = shape[i];
    return ndim + 1;
}

nfv_status nfv_model_set_batch(nfv_model *m, nfv_context *ctx, int n)
{
    if (n < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "model: batch size %d", n);
    if (m->batch == n) return NFV_OK;
    nfv_model_free_runtime(m);
    size_t biggest = (size_t)n * nfv_shape_numel(4, m->input_shape);
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        int sh[5];
        int nd = batched(n, l->out_ndim, l->out_shape, sh);
        size_t numel = nfv_shape_numel(nd, sh);
        if (numel > biggest) biggest = numel;
        nfv_status s = NFV_OK;
        switch (l->spec.kind) {
        case NFV_LAYER_FLATTEN: break; /* a view of its input, made by forward */
        case NFV_LAYER_MAXPOOL3D:
        case NFV_LAYER_DROPOUT:
            s = nfv_tensor_create(ctx, &l->aux, nd, sh);
            if (!s) s = nfv_tensor_create(ctx, &l->out, nd, sh);
            break;
        case NFV_LAYER_BATCHNORM3D:
            s = nfv_tensor_create(ctx, &l->aux, 1, &l->in_shape[0]);
            if (!s) s = nfv_tensor_create(ctx, &l->aux2, 1, &l->in_shape[0]);
            if (!s) s = nfv_tensor_create(ctx, &l->out, nd, sh);
            break;
        default: s = nfv_tensor_create(ctx, &l->out, nd, sh); break;
        }
        if (s) {
            nfv_model_free_runtime(m);
            return nfv_fail_context(s, "layer %d (%s), batch %d", i, l->name, n);
        }
    }
    int one = (int)biggest;
    nfv_status s = nfv_tensor_create(ctx, &m->grad_a, 1, &one);
    if (!s) s = nfv_tensor_create(ctx, &m->grad_b, 1, &one);
    if (s) {
        nfv_model_free_runtime(m);
        return nfv_fail_context(s, "model gradient buffers, batch %d", n);
    }
    m->batch = n;
    return NFV_OK;
}

nfv_tensor *nfv_model_activation(nfv_model *m, int layer)
{
    if (layer < 0 || layer >= m->layer_count || layer > m->last_forward_upto) return NULL;
    return &m->layers[layer].out;
}

/* A tensor header over buf with the given shape (no allocation). */
static nfv_tensor shaped(cl_mem buf, int ndim, const int *shape)
{
    nfv_tensor t;
    memset(&t, 0, sizeof t);
    t.buf = buf;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    t.numel = nfv_shape_numel(ndim, shape);
    t.is_view = 1;
    return t;
}

static void conv_params(const nfv_layer_spec *s, nfv_conv3d_params *p)
{
    memset(p, 0, sizeof *p); /* dilation and groups 0: a plain conv */
    memcpy(p->kernel, s->kernel, sizeof p->kernel);
    memcpy(p->stride, s->stride, sizeof p->stride);
    memcpy(p->padding, s->padding, sizeof p->padding);
}
static void pool_params(const nfv_layer_spec *s, nfv_pool3d_params *p)
{
    memset(p, 0, sizeof *p); /* ceil_mode and exclude_pad 0: floor, padding counts */
    memcpy(p->kernel, s->kernel, sizeof p->kernel);
    memcpy(p->stride, s->stride, sizeof p->stride);
    memcpy(p->padding, s->padding, sizeof p->padding);
}
static nfv_activation act_kind(nfv_layer_kind k)
{
    return k == NFV_LAYER_RELU ? NFV_RELU : k == NFV_LAYER_LEAKY_RELU ? NFV_LEAKY_RELU : NFV_ELU;
}

static nfv_status layer_forward(nfv_model *m, nfv_context *ctx, nfv_layer *l, const nfv_tensor *x, int training)
{
    const nfv_layer_spec *s = &l->spec;
    switch (s->kind) {
    case NFV_LAYER_CONV3D: {
        nfv_conv3d_params p;
        conv_params(s, &p);
        return nfv_conv3d_forward(ctx, &p, x, &l->param[0], s->bias ? &l->param[1] : NULL, &l->out);
    }
    case NFV_LAYER_MAXPOOL3D: {
        nfv_pool3d_params p;
        pool_params(s, &p);
        return nfv_maxpool3d_forward(ctx, &p, x, &l->out, &l->aux);
    }
    case NFV_LAYER_AVGPOOL3D: {
        nfv_pool3d_params p;
        pool_params(s, &p);
        return nfv_avgpool3d_forward(ctx, &p, x, &l->out);
    }
    case NFV_LAYER_BATCHNORM3D:
        if (training) {
            l->num_batches_tracked++;
            return nfv_batchnorm3d_forward_train(ctx, x, &l->param[0], &l->param[1], &l->running_mean, &l->running_var,
                                                 BN_MOMENTUM, s->alpha, &l->out, &l->aux, &l->aux2);
        }
        return nfv_batchnorm3d_forward_eval(ctx, x, &l->param[0], &l->param[1], &l->running_mean, &l->running_var,
                                            s->alpha, &l->out);
    case NFV_LAYER_RELU:
    case NFV_LAYER_LEAKY_RELU:
    case NFV_LAYER_ELU: return nfv_activation_forward(ctx, act_kind(s->kind), s->alpha, x, &l->out);
    case NFV_LAYER_DROPOUT:
        if (training && s->alpha > 0)
            return nfv_dropout_forward(ctx, s->alpha, m->dropout_seed++, x, &l->out, &l->aux);
        return nfv_tensor_copy(ctx, &l->out, x);
    case NFV_LAYER_FLATTEN: {
        int sh[2] = {m->batch, l->out_shape[0]};
        return nfv_tensor_view(x, &l->out, 2, sh);
    }
    case NFV_LAYER_GAP: {
        int sh[2] = {m->batch, l->out_shape[0]};
        nfv_tensor y = shaped(l->out.buf, 2, sh);
        return nfv_global_avgpool_forward(ctx, x, &y);
    }
    case NFV_LAYER_LINEAR: return nfv_linear_forward(ctx, x, &l->param[0], s->bias ? &l->param[1] : NULL, &l->out);
    }
    return nfv_fail(NFV_ERR_INVALID_ARG, "unknown layer kind %d", (int)s->kind);
}

nfv_status nfv_model_forward(nfv_model *m, nfv_context *ctx, const nfv_tensor *x, int upto_layer, int training)
{
    if (upto_layer < 0) upto_layer = m->layer_count - 1;
    if (upto_layer >= m->layer_count)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model forward: layer %d does not exist (0-%d)", upto_layer,
                        m->layer_count - 1);
    if (x->ndim != 5 || x->shape[1] != m->input_shape[0] || x->shape[2] != m->input_shape[1] ||
        x->shape[3] != m->input_shape[2] || x->shape[4] != m->input_shape[3]) {
        char got[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "model forward: input is %s, the model expects Nx%dx%dx%dx%d",
                        nfv_shape_str(x, got, sizeof got), m->input_shape[0], m->input_shape[1], m->input_shape[2],
                        m->input_shape[3]);
    }
    NFV_TRY(nfv_model_set_batch(m, ctx, x->shape[0]));
    m->last_input = x;
    m->last_training = training;
    m->last_forward_upto = -1;
    const nfv_tensor *in = x;
    for (int i = 0; i <= upto_layer; i++) {
        nfv_layer *l = &m->layers[i];
        char scope[64];
        snprintf(scope, sizeof scope, "layer %d (%s)", i, l->name);
        nfv_error_scope_set(scope);
        nfv_status s = layer_forward(m, ctx, l, in, training);
        nfv_error_scope_set(NULL);
        if (s) return nfv_fail_context(s, "forward, layer %d (%s)", i, l->name);
        in = &l->out;
    }
    m->last_forward_upto = upto_layer;
    return NFV_OK;
}

/* Backward of layer l: dy (N, out) -> dx (N, in) (dx may be NULL: not needed). */
static nfv_status layer_backward(nfv_model *m, nfv_context *ctx, nfv_layer *l, const nfv_tensor *x,
                                 const nfv_tensor *dy, nfv_tensor *dx, int param_grads)
{
    const nfv_layer_spec *s = &l->spec;
    switch (s->kind) {
    case NFV_LAYER_CONV3D: {
        nfv_conv3d_params p;
        conv_params(s, &p);
        if (param_grads)
            NFV_TRY(nfv_conv3d_backward_weights(ctx, &p, x, dy, &l->grad[0], s->bias ? &l->grad[1] : NULL));
        if (dx) NFV_TRY(nfv_conv3d_backward_input(ctx, &p, dy, &l->param[0], dx));
        return NFV_OK;
    }
    case NFV_LAYER_MAXPOOL3D: {
        nfv_pool3d_params p;
        pool_params(s, &p);
        return dx ? nfv_maxpool3d_backward(ctx, &p, dy, &l->aux, dx) : NFV_OK;
    }
    case NFV_LAYER_AVGPOOL3D: {
        nfv_pool3d_params p;
        pool_params(s, &p);
        return dx ? nfv_avgpool3d_backward(ctx, &p, dy, dx) : NFV_OK;
    }
    case NFV_LAYER_BATCHNORM3D:
        if (m->last_training)
            return nfv_batchnorm3d_backward_train(ctx, x, dy, &l->param[0], &l->aux, &l->aux2, dx,
                                                  param_grads ? &l->grad[0] : NULL, param_grads ? &l->grad[1] : NULL);
        if (param_grads)
            return nfv_fail(NFV_ERR_UNSUPPORTED, "parameter gradients of BatchNorm after an eval-mode forward");
        return dx ? nfv_batchnorm3d_backward_eval(ctx, dy, &l->param[0], &l->running_var, s->alpha, dx) : NFV_OK;
    case NFV_LAYER_RELU:
    case NFV_LAYER_LEAKY_RELU:
    case NFV_LAYER_ELU: return dx ? nfv_activation_backward(ctx, act_kind(s->kind), s->alpha, x, dy, dx) : NFV_OK;
    case NFV_LAYER_DROPOUT:
        if (!dx) return NFV_OK;
        if (m->last_training && s->alpha > 0) return nfv_dropout_backward(ctx, dy, &l->aux, dx);
        return nfv_tensor_copy(ctx, dx, dy);
    case NFV_LAYER_FLATTEN: return dx ? nfv_tensor_copy(ctx, dx, dy) : NFV_OK;
    case NFV_LAYER_GAP: {
        if (!dx) return NFV_OK;
        int sh[2] = {m->batch, l->out_shape[0]};
        nfv_tensor dy2 = shaped(dy->buf, 2, sh);
        return nfv_global_avgpool_backward(ctx, &dy2, dx);
    }
    case NFV_LAYER_LINEAR:
        return nfv_linear_backward(ctx, x, &l->param[0], dy, dx, param_grads ? &l->grad[0] : NULL,
                                   param_grads && s->bias ? &l->grad[1] : NULL);
    }
    return nfv_fail(NFV_ERR_INVALID_ARG, "unknown layer kind %d", (int)s->kind);
}

nfv_status nfv_model_backward(nfv_model *m, nfv_context *ctx, int from_layer, const nfv_tensor *grad_at_from_layer_output,
                              int param_grads, nfv_tensor *dx)
{
    if (from_layer < 0) from_layer = m->layer_count - 1;
    if (from_layer > m->last_forward_upto || !m->last_input)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward from layer %d: the last forward only reached layer %d",
                        from_layer, m->last_forward_upto);
    const nfv_tensor *g = grad_at_from_layer_output;
    if (g->numel != m->layers[from_layer].out.numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward: gradient has %zu elements, layer %d (%s) output has %zu",
                        g->numel, from_layer, m->layers[from_layer].name, m->layers[from_layer].out.numel);
    if (dx && dx->numel != m->last_input->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model backward: dx has %zu elements, the input has %zu", dx->numel,
                        m->last_input->numel);
    nfv_tensor dy_view;
    {
        const nfv_layer *l = &m->layers[from_layer];
        int sh[5];
        int nd = batched(m->batch, l->out_ndim, l->out_shape, sh);
        dy_view = shaped(g->buf, nd, sh);
    }
    /* Gradients alternate between the two scratch buffers; layer 0 writes dx. */
    cl_mem bufs[2] = {m->grad_a.buf, m->grad_b.buf};
    int next = 0;
    nfv_tensor cur = dy_view;
    for (int i = from_layer; i >= 0; i--) {
        nfv_layer *l = &m->layers[i];
        const nfv_tensor *x = i ? &m->layers[i - 1].out : m->last_input;
        int sh[5];
        int nd = batched(m->batch, l->in_ndim, l->in_shape, sh);
        nfv_tensor din, *dinp = NULL;
        if (i > 0) {
            /* Skip the copy for shape-only layers: the gradient is the same memory. */
            if (l->spec.kind == NFV_LAYER_FLATTEN ||
                (l->spec.kind == NFV_LAYER_DROPOUT && !(m->last_training && l->spec.alpha > 0))) {
                cur = shaped(cur.buf, nd, sh);
                continue;
            }
            din = shaped(bufs[next], nd, sh);
            dinp = &din;
        } else if (dx) {
            din = shaped(dx->buf, nd, sh);
            dinp = &din;
        }
        char scope[64];
        snprintf(scope, sizeof scope, "layer %d (%s) backward", i, l->name);
        nfv_error_scope_set(scope);
        nfv_status s = layer_backward(m, ctx, l, x, &cur, dinp, param_grads);
        nfv_error_scope_set(NULL);
        if (s) return nfv_fail_context(s, "backward, layer %d (%s)", i, l->name);
        if (i > 0) {
            cur = din;
            next ^= 1;
        }
    }
    return NFV_OK;
}
