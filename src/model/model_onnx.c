/* Models from ONNX graphs (read by onnx_read.c): the nodes become the
 * model's graph, the initializers its tensors under their ONNX names.  See
 * nfv_model_from_onnx in include/neurofv/model.h. */
#include "model/model_internal.h"
#include "neurofv/onnx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An (N, F) input is kept as (F, 1, 1, 1) with a Flatten in front, so the
 * model input stays (C, D, H, W): node 0 becomes that Flatten and every
 * index moves up by one. */
static nfv_status flat_input_arch(const nfv_arch *in, nfv_arch *out)
{
    out->count = in->count + 1;
    out->layers = calloc((size_t)out->count, sizeof *out->layers);
    if (!out->layers) return nfv_fail(NFV_ERR_NO_MEMORY, "onnx: out of memory");
    nfv_layer_spec *flat = &out->layers[0];
    flat->kind = NFV_LAYER_FLATTEN;
    flat->n_inputs = 1;
    flat->inputs[0] = NFV_INPUT_NODE;
    snprintf(flat->name, sizeof flat->name, "input.flatten");
    for (int i = 0; i < in->count; i++) {
        nfv_layer_spec *s = &out->layers[i + 1];
        *s = in->layers[i];
        if (!s->n_inputs && s->kind != NFV_LAYER_CONSTANT) {
            s->n_inputs = 1;
            s->inputs[0] = i - 1;
        }
        for (int k = 0; k < s->n_inputs; k++) s->inputs[k] = s->inputs[k] < 0 ? 0 : s->inputs[k] + 1;
    }
    return NFV_OK;
}

/* Uploads every tensor of the model from g, by name, its element count
 * checked against the node's (ONNX keeps 1-D and 2-D kernels without the
 * unit axes neurofv adds; the order of the values is the same). */
static nfv_status upload_tensors(nfv_context *ctx, nfv_model *m, const nfv_onnx_graph *g)
{
    char name[NFV_PARAM_NAME_MAX];
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        int nt = nfv_spec_tensor_count(&l->spec);
        for (int t = 0; t < nt; t++) {
            nfv_layer_tensor_name(l, t, name, sizeof name);
            nfv_tensor *dst = nfv_layer_tensor(l, t);
            const nfv_onnx_tensor *src = nfv_onnx_find_tensor(g, name);
            if (!src || !dst)
                return nfv_fail(NFV_ERR_FORMAT, "onnx: node \"%s\" needs tensor \"%s\", which the file lacks", l->name,
                                name);
            if (src->numel != dst->numel)
                return nfv_fail(NFV_ERR_FORMAT, "onnx: tensor \"%s\" of node \"%s\" has %zu values, the node needs %zu",
                                name, l->name, src->numel, dst->numel);
            size_t bad = 0;
            for (size_t e = 0; e < src->numel; e++) bad += !isfinite(src->data[e]);
            if (bad) return nfv_fail(NFV_ERR_FORMAT, "onnx: tensor \"%s\" has %zu NaN or Inf values", name, bad);
            NFV_TRY(nfv_tensor_upload(ctx, dst, src->data));
        }
    }
    return NFV_OK;
}

nfv_status nfv_model_from_onnx(nfv_context *ctx, const struct nfv_onnx_graph *g, nfv_model **out)
{
    *out = NULL;
    int shape[4] = {1, 1, 1, 1};
    nfv_arch flat = {0};
    const nfv_arch *arch = &g->arch;
    if (g->input_ndim == 1) {
        shape[0] = g->input_shape[0];
        NFV_TRY(flat_input_arch(&g->arch, &flat));
        arch = &flat;
    } else {
        memcpy(shape, g->input_shape, sizeof shape);
    }
    nfv_model *m = NULL;
    nfv_status s = nfv_model_new_from_arch(arch, shape, &m);
    nfv_arch_free(&flat);
    if (s) return nfv_fail_context(s, "onnx graph");
    m->ctx = ctx;
    int k = nfv_model_outputs(m);
    m->head = k == 1 ? NFV_HEAD_BINARY : NFV_HEAD_SOFTMAX;
    s = nfv_model_set_classes(m, k == 1 ? 2 : k, NULL);
    if (!s) s = nfv_model_alloc_params(m, ctx);
    if (!s) s = upload_tensors(ctx, m, g);
    if (s) {
        nfv_model_free(m);
        return s;
    }
    *out = m;
    return NFV_OK;
}

nfv_status nfv_model_open(nfv_context *ctx, const char *path, nfv_model **out)
{
    *out = NULL;
    if (!nfv_is_onnx_path(path)) return nfv_model_load(ctx, path, out);
    nfv_onnx_graph g;
    NFV_TRY(nfv_onnx_read(path, NULL, &g));
    nfv_status s = nfv_model_from_onnx(ctx, &g, out);
    nfv_onnx_free(&g);
    if (s) return nfv_fail_context(s, "%s", path);
    return NFV_OK;
}
