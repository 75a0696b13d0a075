/* Forward over the nodes of a model and the backward of one node, with the
 * runtime tensors of one batch size: activations (N, C, D, H, W) or (N, F)
 * per node, and either two ping-pong gradient buffers (chains) or one
 * gradient per node plus an accumulation buffer (graphs).  The backward
 * passes are in model_backward.c.  See include/neurofv/model.h. */
#include "model/model_internal.h"
#include "model/model_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_MOMENTUM 0.1f

/* (N, shape...) of a per-sample shape. */
int nfv_batched_shape(int n, int ndim, const int *shape, int *out)
{
    out[0] = n;
    for (int i = 0; i < ndim; i++) out[1 + i] = shape[i];
    return ndim + 1;
}

/* Conv, BatchNorm and ReLU outputs are allocated by the first forward that
 * writes them (nfv_model_layer_output): an eval-mode fused forward
 * (model_fuse.c) never writes the conv's and BatchNorm's, nor the ReLU's when
 * a pool joins the group, so a visualization does not hold them (at 2 mm,
 * ref4's first three are 29 MB per sample each).  Until then the tensor is
 * a header with the shape and no buffer. */
int nfv_model_lazy_output(const nfv_layer *l)
{
    return l->spec.kind == NFV_LAYER_CONV3D || l->spec.kind == NFV_LAYER_BATCHNORM3D || l->spec.kind == NFV_LAYER_RELU;
}

nfv_status nfv_model_layer_output(nfv_context *ctx, nfv_layer *l)
{
    if (l->out.buf || !nfv_model_lazy_output(l)) return NFV_OK;
    int shape[NFV_MAX_DIMS];
    memcpy(shape, l->out.shape, sizeof shape);
    return nfv_tensor_create(ctx, &l->out, l->out.ndim, shape);
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
        int nd = nfv_batched_shape(n, l->out_ndim, l->out_shape, sh);
        size_t numel = nfv_shape_numel(nd, sh);
        if (numel > biggest) biggest = numel;
        nfv_status s = NFV_OK;
        int nc[2] = {n, l->in_shape[0]};
        switch (l->spec.kind) {
        case NFV_LAYER_FLATTEN:
        case NFV_LAYER_RESHAPE:
        case NFV_LAYER_IDENTITY: break; /* views of their input, made by forward */
        case NFV_LAYER_ADD:
            if (!l->in_place) s = nfv_tensor_create(ctx, &l->out, nd, sh);
            break;
        case NFV_LAYER_MAXPOOL3D:
        case NFV_LAYER_DROPOUT:
            s = nfv_tensor_create(ctx, &l->aux, nd, sh);
            if (!s) s = nfv_tensor_create(ctx, &l->out, nd, sh);
            break;
        case NFV_LAYER_GMP:
            s = nfv_tensor_create(ctx, &l->aux, 2, nc);
            if (!s) s = nfv_tensor_create(ctx, &l->out, nd, sh);
            break;
        case NFV_LAYER_BATCHNORM3D:
            s = nfv_tensor_create(ctx, &l->aux, 1, &l->in_shape[0]);
            if (!s) s = nfv_tensor_create(ctx, &l->aux2, 1, &l->in_shape[0]);
            l->out = nfv_shaped_tensor(NULL, nd, sh); /* nfv_model_lazy_output */
            break;
        case NFV_LAYER_INSTANCENORM:
            s = nfv_tensor_create(ctx, &l->aux, 2, nc);
            if (!s) s = nfv_tensor_create(ctx, &l->aux2, 2, nc);
            if (!s) s = nfv_tensor_create(ctx, &l->out, nd, sh);
            break;
        default:
            if (nfv_model_lazy_output(l)) l->out = nfv_shaped_tensor(NULL, nd, sh);
            else s = nfv_tensor_create(ctx, &l->out, nd, sh);
            break;
        }
        /* Graphs: a gradient per node that backward can reach. */
        if (!s && m->is_graph && l->spec.kind != NFV_LAYER_CONSTANT) s = nfv_tensor_create(ctx, &l->dout, nd, sh);
        if (s) {
            nfv_model_free_runtime(m);
            return nfv_fail_context(s, "layer %d (%s), batch %d", i, l->name, n);
        }
    }
    int one = (int)biggest;
    nfv_status s = nfv_tensor_create(ctx, &m->grad_a, 1, &one);
    if (!s && !m->is_graph) s = nfv_tensor_create(ctx, &m->grad_b, 1, &one);
    if (s) {
        nfv_model_free_runtime(m);
        return nfv_fail_context(s, "model gradient buffers, batch %d", n);
    }
    m->batch = n;
    return NFV_OK;
}

nfv_tensor *nfv_model_activation(nfv_model *m, int layer)
{
    if (layer < 0 || layer >= m->layer_count || layer > m->last_forward_upto || !m->layers[layer].computed) return NULL;
    return &m->layers[layer].out;
}

/* A tensor header over buf with the given shape (no allocation). */
nfv_tensor nfv_shaped_tensor(cl_mem buf, int ndim, const int *shape)
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

void nfv_layer_conv_params(const nfv_layer_spec *s, nfv_conv3d_params *p)
{
    memset(p, 0, sizeof *p);
    memcpy(p->kernel, s->kernel, sizeof p->kernel);
    memcpy(p->stride, s->stride, sizeof p->stride);
    memcpy(p->padding, s->padding, sizeof p->padding);
    memcpy(p->dilation, s->dilation, sizeof p->dilation);
    p->groups = s->groups;
}
void nfv_layer_pool_params(const nfv_layer_spec *s, nfv_pool3d_params *p)
{
    memset(p, 0, sizeof *p);
    memcpy(p->kernel, s->kernel, sizeof p->kernel);
    memcpy(p->stride, s->stride, sizeof p->stride);
    memcpy(p->padding, s->padding, sizeof p->padding);
    p->ceil_mode = s->ceil_mode;
    p->exclude_pad = s->exclude_pad;
}
nfv_activation nfv_layer_activation(nfv_layer_kind k)
{
    return k == NFV_LAYER_RELU         ? NFV_RELU
           : k == NFV_LAYER_LEAKY_RELU ? NFV_LEAKY_RELU
           : k == NFV_LAYER_SIGMOID    ? NFV_SIGMOID
                                       : NFV_ELU;
}

/* Graph ops of forward: several inputs in[0..n), views, constants. */
static nfv_status graph_forward(nfv_model *m, nfv_context *ctx, nfv_layer *l, const nfv_tensor *const *in)
{
    const nfv_layer_spec *s = &l->spec;
    int sh[5];
    int nd = nfv_batched_shape(m->batch, l->out_ndim, l->out_shape, sh);
    switch (s->kind) {
    case NFV_LAYER_ADD:
        if (l->n_inputs == 1) return nfv_tensor_copy(ctx, &l->out, in[0]);
        if (l->in_place) {
            NFV_TRY(nfv_tensor_view(in[0], &l->out, nd, sh));
            m->layers[l->inputs[0]].computed = 0; /* its output is overwritten by the sum */
        }
        NFV_TRY(nfv_add_forward(ctx, in[0], in[1], &l->out));
        for (int k = 2; k < l->n_inputs; k++) NFV_TRY(nfv_add_forward(ctx, &l->out, in[k], &l->out));
        return NFV_OK;
    case NFV_LAYER_CONCAT:
        for (int k = 0, off = 0; k < l->n_inputs; k++) {
            NFV_TRY(nfv_concat_channels_forward(ctx, in[k], off, &l->out));
            off += in[k]->shape[1];
        }
        return NFV_OK;
    case NFV_LAYER_PAD: return nfv_pad3d_forward(ctx, s->padding, s->pad_end, s->alpha, in[0], &l->out);
    case NFV_LAYER_GMP: {
        int sh2[2] = {m->batch, l->out_shape[0]};
        nfv_tensor y = nfv_shaped_tensor(l->out.buf, 2, sh2);
        return nfv_global_maxpool_forward(ctx, in[0], &y, &l->aux);
    }
    case NFV_LAYER_INSTANCENORM:
        return nfv_instancenorm3d_forward(ctx, in[0], &l->param[0], &l->param[1], s->alpha, &l->out, &l->aux, &l->aux2);
    case NFV_LAYER_SOFTMAX:
    case NFV_LAYER_LOGSOFTMAX: return nfv_softmax_forward(ctx, s->kind == NFV_LAYER_LOGSOFTMAX, in[0], &l->out);
    case NFV_LAYER_RESHAPE:
    case NFV_LAYER_IDENTITY: return nfv_tensor_view(in[0], &l->out, nd, sh);
    case NFV_LAYER_CONSTANT: {
        size_t per = l->out.numel / (size_t)m->batch;
        if ((size_t)s->features == 1 || s->features == m->batch)
            for (int n = 0; n < m->batch; n++)
                NFV_TRY(nfv_tensor_copy_range(ctx, &l->out, (size_t)n * per, &l->constant,
                                              s->features == 1 ? 0 : (size_t)n * per, per));
        else
            return nfv_fail(NFV_ERR_INVALID_ARG, "constant holds %d samples, the batch is %d", s->features, m->batch);
        return NFV_OK;
    }
    default: return nfv_fail(NFV_ERR_INVALID_ARG, "unknown layer kind %d", (int)s->kind);
    }
}

static nfv_status layer_forward(nfv_model *m, nfv_context *ctx, nfv_layer *l, const nfv_tensor *const *in,
                                int training)
{
    const nfv_layer_spec *s = &l->spec;
    const nfv_tensor *x = in[0];
    switch (s->kind) {
    case NFV_LAYER_CONV3D: {
        nfv_conv3d_params p;
        nfv_layer_conv_params(s, &p);
        return nfv_conv3d_forward(ctx, &p, x, &l->param[0], s->bias ? &l->param[1] : NULL, &l->out);
    }
    case NFV_LAYER_MAXPOOL3D: {
        nfv_pool3d_params p;
        nfv_layer_pool_params(s, &p);
        return nfv_maxpool3d_forward(ctx, &p, x, &l->out, &l->aux);
    }
    case NFV_LAYER_AVGPOOL3D: {
        nfv_pool3d_params p;
        nfv_layer_pool_params(s, &p);
        return nfv_avgpool3d_forward(ctx, &p, x, &l->out);
    }
    case NFV_LAYER_BATCHNORM3D:
        if (training) {
            l->num_batches_tracked++;
            return nfv_batchnorm3d_forward_train_dist(ctx, x, &l->param[0], &l->param[1], &l->running_mean,
                                                      &l->running_var, BN_MOMENTUM, s->alpha, &l->out, &l->aux,
                                                      &l->aux2, m->dist);
        }
        return nfv_batchnorm3d_forward_eval(ctx, x, &l->param[0], &l->param[1], &l->running_mean, &l->running_var,
                                            s->alpha, &l->out);
    case NFV_LAYER_RELU:
    case NFV_LAYER_LEAKY_RELU:
    case NFV_LAYER_SIGMOID:
    case NFV_LAYER_ELU: return nfv_activation_forward(ctx, nfv_layer_activation(s->kind), s->alpha, x, &l->out);
    case NFV_LAYER_DROPOUT:
        if (training && s->alpha > 0)
            /* Under data parallelism: this rank's samples' elements of the global batch. */
            return nfv_dropout_forward_at(ctx, s->alpha, m->dropout_seed++,
                                          m->dist ? (unsigned long long)m->dist->offset * (x->numel / (size_t)m->batch) : 0,
                                          x, &l->out, &l->aux);
        return nfv_tensor_copy(ctx, &l->out, x);
    case NFV_LAYER_FLATTEN: {
        int sh[2] = {m->batch, l->out_shape[0]};
        return nfv_tensor_view(x, &l->out, 2, sh);
    }
    case NFV_LAYER_GAP: {
        int sh[2] = {m->batch, l->out_shape[0]};
        nfv_tensor y = nfv_shaped_tensor(l->out.buf, 2, sh);
        return nfv_global_avgpool_forward(ctx, x, &y);
    }
    case NFV_LAYER_LINEAR: return nfv_linear_forward(ctx, x, &l->param[0], s->bias ? &l->param[1] : NULL, &l->out);
    default: return graph_forward(m, ctx, l, in);
    }
}

/* A training BatchNorm bn and the ReLU after it (nfv_train_fuses_bn_relu):
 * ReLU(BN(x)) into the ReLU's output. */
static nfv_status bn_relu_forward(nfv_model *m, nfv_context *ctx, nfv_layer *bn, const nfv_tensor *x, nfv_layer *relu)
{
    bn->num_batches_tracked++;
    relu->relu_in_bn = 1;
    return nfv_batchnorm3d_relu_forward_train_dist(ctx, x, &bn->param[0], &bn->param[1], &bn->running_mean,
                                                   &bn->running_var, BN_MOMENTUM, bn->spec.alpha, &relu->out, &bn->aux,
                                                   &bn->aux2, m->dist);
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
    /* Only the nodes the target depends on (all of 0..upto in a chain). */
    unsigned char *needed = calloc((size_t)m->layer_count, 1);
    if (!needed) return nfv_fail(NFV_ERR_NO_MEMORY, "model forward: out of memory");
    nfv_model_mark_ancestors(m, upto_layer, needed);
    for (int i = 0; i < m->layer_count; i++)
        m->layers[i].computed = 0, m->layers[i].fused_with = 0, m->layers[i].relu_in_bn = 0;
    nfv_status s = NFV_OK;
    for (int i = 0; i <= upto_layer && !s; i++) {
        nfv_layer *l = &m->layers[i];
        if (!needed[i]) continue;
        const nfv_tensor *in[NFV_NODE_MAX_INPUTS] = {x};
        for (int k = 0; k < l->n_inputs; k++) in[k] = l->inputs[k] < 0 ? x : &m->layers[l->inputs[k]].out;
        char scope[192];
        const int bn_relu = training && nfv_train_fuses_bn_relu(m, i, upto_layer);
        int end = bn_relu ? i + 1 : nfv_fuse_group_end(m, ctx, i, upto_layer, training);
        if (end > i) snprintf(scope, sizeof scope, "layers %d-%d (%s-%s, fused)", i, end, l->name, m->layers[end].name);
        else snprintf(scope, sizeof scope, "layer %d (%s)", i, l->name);
        nfv_error_scope_set(scope);
        s = nfv_model_layer_output(ctx, &m->layers[end]);
        if (!s && bn_relu) s = bn_relu_forward(m, ctx, l, in[0], &m->layers[end]);
        else if (!s) s = end > i ? nfv_fused_forward(m, ctx, i, end, in[0]) : layer_forward(m, ctx, l, in, training);
        nfv_error_scope_set(NULL);
        if (s) s = nfv_fail_context(s, "forward, %s", scope);
        i = end;
        m->layers[i].computed = !s;
    }
    free(needed);
    if (s) return s;
    m->last_forward_upto = upto_layer;
    return NFV_OK;
}

void nfv_model_mark_ancestors(const nfv_model *m, int node, unsigned char *mark)
{
    mark[node] = 1;
    for (int i = node; i >= 0; i--) {
        if (!mark[i]) continue;
        const nfv_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_inputs; k++)
            if (l->inputs[k] >= 0) mark[l->inputs[k]] = 1;
    }
}
