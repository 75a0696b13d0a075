/* Sequential models: building from a spec (layer shapes, names, PyTorch's
 * default initialization), parameter counts, layer lookup.  Forward and
 * backward are in model_run.c, files in model_io.c; see include/neurofv/model.h. */
#include "base/rng.h"
#include "model/model_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Word of a default layer name ("conv1", "pool2", "fc"). */
static const char *kind_word(nfv_layer_kind k)
{
    switch (k) {
    case NFV_LAYER_MAXPOOL3D:
    case NFV_LAYER_AVGPOOL3D: return "pool";
    case NFV_LAYER_LINEAR: return "fc";
    default: return nfv_layer_op_word(k);
    }
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int is_spatial(int ndim) { return ndim == 4; }

/* Output shape of node l from its inputs' shapes (already laid out). */
static nfv_status node_shape(nfv_model *m, nfv_layer *l, int *ndim, int shape[4])
{
    const nfv_layer_spec *s = &l->spec;
    int i = l->index;
#define NEED4(what)                                                                                                    \
    if (!is_spatial(*ndim))                                                                                           \
    return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): %s needs a (C, D, H, W) input, got %d-D (after flatten?)", i, \
                    l->name, what, *ndim)
    switch (s->kind) {
    case NFV_LAYER_CONV3D:
    case NFV_LAYER_MAXPOOL3D:
    case NFV_LAYER_AVGPOOL3D: {
        NEED4(nfv_layer_op_word(s->kind));
        int groups = s->kind == NFV_LAYER_CONV3D && s->groups > 1 ? s->groups : 1;
        if (s->kind == NFV_LAYER_CONV3D && (shape[0] % groups || s->features % groups))
            return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): %d input and %d output channels do not split into %d groups",
                            i, l->name, shape[0], s->features, groups);
        for (int a = 0; a < 3; a++) {
            int o = s->kind == NFV_LAYER_CONV3D
                        ? nfv_conv_out_size_dilated(shape[1 + a], s->kernel[a], s->stride[a], s->padding[a],
                                                    s->dilation[a] > 1 ? s->dilation[a] : 1)
                        : nfv_pool_out_size(shape[1 + a], s->kernel[a], s->stride[a], s->padding[a], s->ceil_mode);
            if (o < 1)
                return nfv_fail(NFV_ERR_INVALID_ARG,
                                "layer %d (%s): input %dx%dx%dx%d is too small for kernel %dx%dx%d padding %d", i,
                                l->name, shape[0], shape[1], shape[2], shape[3], s->kernel[0], s->kernel[1],
                                s->kernel[2], s->padding[a]);
            shape[1 + a] = o;
        }
        if (s->kind == NFV_LAYER_CONV3D) shape[0] = s->features;
        return NFV_OK;
    }
    case NFV_LAYER_BATCHNORM3D: NEED4("BatchNorm3d"); return NFV_OK;
    case NFV_LAYER_INSTANCENORM: NEED4("InstanceNorm3d"); return NFV_OK;
    case NFV_LAYER_PAD:
        NEED4("Pad");
        for (int a = 0; a < 3; a++) shape[1 + a] += s->padding[a] + s->pad_end[a];
        return NFV_OK;
    case NFV_LAYER_FLATTEN:
        shape[0] = (int)nfv_shape_numel(*ndim, shape);
        *ndim = 1;
        return NFV_OK;
    case NFV_LAYER_GAP:
    case NFV_LAYER_GMP:
        NEED4("global pooling");
        shape[1] = shape[2] = shape[3] = 1;
        return NFV_OK;
    case NFV_LAYER_LINEAR:
        /* Even after gap, whose (C,1,1,1) output has the layout of (C),
         * PyTorch needs an nn.Flatten, so we ask for one to stay in step. */
        if (*ndim != 1)
            return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): Linear needs a flat input: put \"flatten\" before it", i,
                            l->name);
        shape[0] = s->features;
        return NFV_OK;
    case NFV_LAYER_RESHAPE:
    case NFV_LAYER_CONSTANT: {
        if (s->reshape_ndim != 1 && s->reshape_ndim != 4)
            return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): per-sample shape of %d dims (1 or 4)", i, l->name,
                            s->reshape_ndim);
        size_t want = nfv_shape_numel(s->reshape_ndim, s->reshape);
        if (s->kind == NFV_LAYER_RESHAPE && want != nfv_shape_numel(*ndim, shape))
            return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): reshape of %zu values into %zu", i, l->name,
                            nfv_shape_numel(*ndim, shape), want);
        *ndim = s->reshape_ndim;
        memcpy(shape, s->reshape, sizeof s->reshape);
        return NFV_OK;
    }
    case NFV_LAYER_ADD:
    case NFV_LAYER_CONCAT:
        for (int k = 1; k < l->n_inputs; k++) {
            int j = l->inputs[k];
            int nd2 = j < 0 ? 4 : m->layers[j].out_ndim;
            const int *sh2 = j < 0 ? m->input_shape : m->layers[j].out_shape;
            int same = nd2 == *ndim;
            for (int d = s->kind == NFV_LAYER_CONCAT; same && d < *ndim; d++) same = sh2[d] == shape[d];
            if (!same)
                return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): input %d has shape %dx%dx%dx%d (%d-D), input 0 has %dx%dx%dx%d", i,
                                l->name, k, sh2[0], nd2 > 1 ? sh2[1] : 1, nd2 > 1 ? sh2[2] : 1, nd2 > 1 ? sh2[3] : 1,
                                nd2, shape[0], *ndim > 1 ? shape[1] : 1, *ndim > 1 ? shape[2] : 1,
                                *ndim > 1 ? shape[3] : 1);
            if (s->kind == NFV_LAYER_CONCAT) shape[0] += sh2[0];
        }
        return NFV_OK;
    default: return NFV_OK; /* elementwise: same shape */
    }
#undef NEED4
}

/* Resolved inputs of node i: the spec's, or the previous node. */
static nfv_status wire(nfv_model *m, nfv_layer *l)
{
    const nfv_layer_spec *s = &l->spec;
    int i = l->index;
    if (s->kind == NFV_LAYER_CONSTANT) {
        l->n_inputs = 0;
        return NFV_OK;
    }
    if (!s->n_inputs) {
        l->n_inputs = 1;
        l->inputs[0] = i - 1;
        if (i > 0) m->layers[i - 1].consumers++;
        return NFV_OK;
    }
    int multi = s->kind == NFV_LAYER_ADD || s->kind == NFV_LAYER_CONCAT;
    if (multi ? s->n_inputs < 1 : s->n_inputs != 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): %d inputs (%s takes %s)", i, l->name, s->n_inputs,
                        nfv_layer_op_word(s->kind), multi ? "one or more" : "one");
    l->n_inputs = s->n_inputs;
    for (int k = 0; k < s->n_inputs; k++) {
        int j = s->inputs[k];
        if (j < NFV_INPUT_NODE || j >= i)
            return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): input %d is node %d, not an earlier node", i, l->name,
                            k, j);
        l->inputs[k] = j;
        if (j >= 0) m->layers[j].consumers++;
    }
    return NFV_OK;
}

/* Shapes, names, wiring and parameter counts of every layer, from arch and input. */
static nfv_status layout(nfv_model *m)
{
    int counts[NFV_LAYER_KIND_COUNT] = {0}, totals[NFV_LAYER_KIND_COUNT] = {0};
    for (int i = 0; i < m->arch.count; i++) {
        nfv_layer_kind k = m->arch.layers[i].kind;
        totals[k == NFV_LAYER_AVGPOOL3D ? NFV_LAYER_MAXPOOL3D : k]++;
    }
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        l->spec = m->arch.layers[i];
        l->index = i;
        int fam = l->spec.kind == NFV_LAYER_AVGPOOL3D ? NFV_LAYER_MAXPOOL3D : (int)l->spec.kind;
        counts[fam]++;
        int unnumbered = totals[fam] == 1 && (fam == NFV_LAYER_FLATTEN || fam == NFV_LAYER_GAP || fam == NFV_LAYER_LINEAR);
        if (l->spec.name[0]) snprintf(l->name, sizeof l->name, "%s", l->spec.name);
        else if (unnumbered) snprintf(l->name, sizeof l->name, "%s", kind_word(l->spec.kind));
        else snprintf(l->name, sizeof l->name, "%s%d", kind_word(l->spec.kind), counts[fam]);
        NFV_TRY(wire(m, l));
        int ndim = 4, shape[4];
        memcpy(shape, m->input_shape, sizeof shape);
        if (l->n_inputs && l->inputs[0] >= 0) {
            ndim = m->layers[l->inputs[0]].out_ndim;
            memcpy(shape, m->layers[l->inputs[0]].out_shape, sizeof shape);
        }
        l->in_ndim = ndim;
        memcpy(l->in_shape, shape, sizeof shape);
        NFV_TRY(node_shape(m, l, &ndim, shape));
        l->nparams = l->spec.kind == NFV_LAYER_BATCHNORM3D   ? 2
                     : l->spec.kind == NFV_LAYER_CONSTANT ? 0
                                                          : nfv_spec_tensor_count(&l->spec);
        l->out_ndim = ndim;
        memcpy(l->out_shape, shape, sizeof shape);
    }
    for (int i = 0; i < m->layer_count; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(m->layers[i].name, m->layers[j].name))
                return nfv_fail(NFV_ERR_INVALID_ARG, "layers %d and %d are both named \"%s\"", j, i, m->layers[i].name);
    m->layers[m->layer_count - 1].consumers++; /* the model output */
    m->is_graph = nfv_arch_is_graph(&m->arch);
    /* An Add whose first input feeds only it sums into that input's memory:
     * no op's backward reads its own output except Softmax's. */
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        int j = l->inputs[0];
        if (l->spec.kind != NFV_LAYER_ADD || l->n_inputs < 2 || j < 0 || m->layers[j].consumers != 1) continue;
        nfv_layer_kind k = m->layers[j].spec.kind;
        if (k == NFV_LAYER_FLATTEN || k == NFV_LAYER_RESHAPE || k == NFV_LAYER_IDENTITY || k == NFV_LAYER_CONSTANT ||
            k == NFV_LAYER_SOFTMAX || k == NFV_LAYER_LOGSOFTMAX || m->layers[j].in_place)
            continue;
        l->in_place = 1;
    }
    return NFV_OK;
}

/* Shape of parameter p of layer l (ndim returned). */
int nfv_model_param_shape(const nfv_layer *l, int p, int shape[5])
{
    const nfv_layer_spec *s = &l->spec;
    switch (s->kind) {
    case NFV_LAYER_CONV3D:
        if (p == 0) {
            shape[0] = s->features, shape[1] = l->in_shape[0] / (s->groups > 1 ? s->groups : 1);
            shape[2] = s->kernel[0], shape[3] = s->kernel[1], shape[4] = s->kernel[2];
            return 5;
        }
        shape[0] = s->features;
        return 1;
    case NFV_LAYER_LINEAR:
        if (p == 0) {
            shape[0] = s->features, shape[1] = l->in_shape[0];
            return 2;
        }
        shape[0] = s->features;
        return 1;
    case NFV_LAYER_BATCHNORM3D:
    case NFV_LAYER_INSTANCENORM: shape[0] = l->in_shape[0]; return 1;
    default: return 0;
    }
}

long long nfv_layer_param_count(const nfv_layer *l)
{
    long long n = 0;
    for (int p = 0; p < l->nparams; p++) {
        int sh[5];
        int nd = nfv_model_param_shape(l, p, sh);
        n += (long long)nfv_shape_numel(nd, sh);
    }
    return n;
}

long long nfv_model_param_count(const nfv_model *m)
{
    long long n = 0;
    for (int i = 0; i < m->layer_count; i++) n += nfv_layer_param_count(&m->layers[i]);
    return n;
}

double nfv_layer_flops(const nfv_layer *l)
{
    double out = (double)nfv_shape_numel(l->out_ndim, l->out_shape);
    const nfv_layer_spec *s = &l->spec;
    switch (s->kind) {
    case NFV_LAYER_CONV3D: return 2.0 * out * l->in_shape[0] * s->kernel[0] * s->kernel[1] * s->kernel[2];
    case NFV_LAYER_LINEAR: return 2.0 * out * l->in_shape[0];
    case NFV_LAYER_MAXPOOL3D:
    case NFV_LAYER_AVGPOOL3D: return out * s->kernel[0] * s->kernel[1] * s->kernel[2];
    case NFV_LAYER_BATCHNORM3D: return 2.0 * out;
    case NFV_LAYER_FLATTEN: return 0;
    case NFV_LAYER_GAP: return (double)nfv_shape_numel(l->in_ndim, l->in_shape);
    default: return out;
    }
}

void nfv_model_free_runtime(nfv_model *m)
{
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        nfv_tensor_free(&l->out);
        nfv_tensor_free(&l->aux);
        nfv_tensor_free(&l->aux2);
        nfv_tensor_free(&l->dout);
    }
    nfv_tensor_free(&m->grad_a);
    nfv_tensor_free(&m->grad_b);
    m->batch = 0;
    m->last_input = NULL;
    m->last_forward_upto = -1;
}

void nfv_model_free(nfv_model *m)
{
    if (!m) return;
    nfv_model_free_runtime(m);
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        for (int p = 0; p < NFV_LAYER_MAX_PARAMS; p++) {
            nfv_tensor_free(&l->param[p]);
            nfv_tensor_free(&l->grad[p]);
            nfv_tensor_free(&l->opt_m[p]);
            nfv_tensor_free(&l->opt_v[p]);
        }
        nfv_tensor_free(&l->running_mean);
        nfv_tensor_free(&l->running_var);
        nfv_tensor_free(&l->fold_w);
        nfv_tensor_free(&l->fold_b);
        nfv_tensor_free(&l->constant);
    }
    for (int i = 0; i < m->class_count; i++) free(m->class_names[i]);
    free(m->class_names);
    free(m->spectrum);
    free(m->layers);
    free(m->arch_spec);
    nfv_arch_free(&m->arch);
    free(m);
}

/* Allocate parameter tensors (zero) and BN buffers; grads allocated too. */
nfv_status nfv_model_alloc_params(nfv_model *m, nfv_context *ctx)
{
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        for (int p = 0; p < l->nparams; p++) {
            int sh[5];
            int nd = nfv_model_param_shape(l, p, sh);
            NFV_TRY(nfv_tensor_create(ctx, &l->param[p], nd, sh));
            NFV_TRY(nfv_tensor_create(ctx, &l->grad[p], nd, sh));
        }
        if (l->spec.kind == NFV_LAYER_BATCHNORM3D) {
            int c = l->in_shape[0];
            NFV_TRY(nfv_tensor_create(ctx, &l->running_mean, 1, &c));
            NFV_TRY(nfv_tensor_create(ctx, &l->running_var, 1, &c));
        }
        if (l->spec.kind == NFV_LAYER_CONSTANT) {
            int n = l->spec.features > 0 ? l->spec.features : 1;
            int sh[5];
            int nd = 1 + l->out_ndim;
            sh[0] = n;
            memcpy(sh + 1, l->out_shape, (size_t)l->out_ndim * sizeof(int));
            NFV_TRY(nfv_tensor_create(ctx, &l->constant, nd, sh));
        }
    }
    return NFV_OK;
}

static nfv_status fill_host(nfv_context *ctx, nfv_tensor *t, float v)
{
    float *h = malloc(t->numel * sizeof *h);
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    for (size_t i = 0; i < t->numel; i++) h[i] = v;
    nfv_status s = nfv_tensor_upload(ctx, t, h);
    free(h);
    return s;
}

void nfv_model_default_affine(nfv_model *m)
{
    /* A grid centred on the world origin, RAS axes; replaced by the
     * preprocessed data's affine when a model is trained. */
    memset(m->affine, 0, sizeof m->affine);
    int n[3] = {m->input_shape[3], m->input_shape[2], m->input_shape[1]}; /* x = W, y = H, z = D */
    for (int a = 0; a < 3; a++) {
        m->affine[a][a] = m->voxel_mm[a];
        m->affine[a][3] = -0.5 * (n[a] - 1) * m->voxel_mm[a];
    }
    m->affine[3][3] = 1;
}

nfv_status nfv_model_set_classes(nfv_model *m, int count, const char *const *names)
{
    m->class_names = calloc((size_t)(count > 0 ? count : 1), sizeof(char *));
    if (!m->class_names) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    m->class_count = count;
    for (int i = 0; i < count; i++) {
        char def[16];
        snprintf(def, sizeof def, "%d", i);
        m->class_names[i] = dupstr(names && names[i] ? names[i] : def);
        if (!m->class_names[i]) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    }
    return NFV_OK;
}

/* Common construction: arch copied, layout, metadata defaults. */
nfv_status nfv_model_new_from_arch(const nfv_arch *arch, const int input_shape[4], nfv_model **out)
{
    *out = NULL;
    nfv_model *m = calloc(1, sizeof *m);
    if (!m) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    m->last_forward_upto = -1;
    m->target_sd = 1; /* regression outputs in label units = raw until training sets the scale */
    m->arch.count = arch->count;
    m->arch.layers = malloc((size_t)(arch->count > 0 ? arch->count : 1) * sizeof *arch->layers);
    m->layers = calloc((size_t)(arch->count > 0 ? arch->count : 1), sizeof *m->layers);
    if (m->layers) m->layer_count = arch->count;
    if (m->arch.layers) memcpy(m->arch.layers, arch->layers, (size_t)arch->count * sizeof *arch->layers);
    m->arch_spec = m->arch.layers ? nfv_arch_to_text(&m->arch) : NULL;
    if (!m->arch.layers || !m->layers || !m->arch_spec) {
        nfv_model_free(m);
        return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    }
    if (arch->count < 1) {
        nfv_model_free(m);
        return nfv_fail(NFV_ERR_INVALID_ARG, "model: no layers");
    }
    if (strlen(m->arch_spec) < sizeof m->arch_label) snprintf(m->arch_label, sizeof m->arch_label, "%s", m->arch_spec);
    else snprintf(m->arch_label, sizeof m->arch_label, "graph of %d nodes", m->layer_count);
    for (int i = 0; i < 4; i++) {
        if (input_shape[i] < 1) {
            nfv_model_free(m);
            return nfv_fail(NFV_ERR_INVALID_ARG, "model: input shape entry %d is %d", i, input_shape[i]);
        }
        m->input_shape[i] = input_shape[i];
    }
    nfv_status s = layout(m);
    if (s) {
        nfv_model_free(m);
        return s;
    }
    m->voxel_mm[0] = m->voxel_mm[1] = m->voxel_mm[2] = 2.0;
    m->norm = NFV_NORM_ZSCORE_NONZERO;
    nfv_model_default_affine(m);
    *out = m;
    return NFV_OK;
}

nfv_status nfv_model_new(const char *spec, const int input_shape[4], int outputs, nfv_model **out)
{
    *out = NULL;
    nfv_arch arch;
    NFV_TRY(nfv_arch_parse(spec, outputs, &arch));
    nfv_status s = nfv_model_new_from_arch(&arch, input_shape, out);
    nfv_arch_free(&arch);
    return s;
}

int nfv_model_outputs(const nfv_model *m)
{
    const nfv_layer *last = &m->layers[m->layer_count - 1];
    return (int)nfv_shape_numel(last->out_ndim, last->out_shape);
}

nfv_status nfv_model_create_from_spec(nfv_context *ctx, const char *spec, const int input_shape[4], int class_count,
                                      const char *const *class_names, nfv_head head, unsigned long long seed,
                                      nfv_model **out)
{
    *out = NULL;
    if (head == NFV_HEAD_SOFTMAX && class_count < 2)
        return nfv_fail(NFV_ERR_INVALID_ARG, "model: a softmax head needs at least 2 classes, got %d", class_count);
    int outputs = head == NFV_HEAD_SOFTMAX ? class_count : 1;
    nfv_model *m;
    NFV_TRY(nfv_model_new(spec, input_shape, outputs, &m));
    m->ctx = ctx;
    int feats = nfv_model_outputs(m);
    if (head == NFV_HEAD_REGRESSION) {
        if (feats != 1) {
            nfv_model_free(m);
            return nfv_fail(NFV_ERR_INVALID_ARG, "model: a regression head needs 1 output, the architecture gives %d", feats);
        }
    } else if (feats == 1) {
        head = NFV_HEAD_BINARY;
        if (class_count != 2 && class_count != 0) {
            nfv_model_free(m);
            return nfv_fail(NFV_ERR_INVALID_ARG, "model: 1 output (binary logit) but %d classes", class_count);
        }
        if (!class_count) class_count = 2;
    } else if (feats != class_count) {
        nfv_model_free(m);
        return nfv_fail(NFV_ERR_INVALID_ARG, "model: the architecture ends with %d outputs but there are %d classes",
                        feats, class_count);
    }
    m->head = head;
    nfv_status s = nfv_model_set_classes(m, head == NFV_HEAD_REGRESSION ? 0 : class_count, class_names);
    if (!s) s = nfv_model_alloc_params(m, ctx);
    uint64_t rng = seed ^ 0x6E6575726F6676ULL;
    for (int i = 0; !s && i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        if (l->spec.kind == NFV_LAYER_BATCHNORM3D || l->spec.kind == NFV_LAYER_INSTANCENORM) {
            s = fill_host(ctx, &l->param[0], 1.0f);
            if (!s && l->spec.kind == NFV_LAYER_BATCHNORM3D) s = fill_host(ctx, &l->running_var, 1.0f);
            continue; /* beta, running_mean stay 0 */
        }
        if (!l->nparams) continue;
        /* PyTorch: kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(fan_in) for the
         * weight, and the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) too. */
        size_t fan_in = l->param[0].numel / (size_t)l->spec.features;
        double bound = 1.0 / sqrt((double)fan_in);
        for (int p = 0; !s && p < l->nparams; p++) {
            float *h = malloc(l->param[p].numel * sizeof *h);
            if (!h) {
                s = nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
                break;
            }
            for (size_t e = 0; e < l->param[p].numel; e++) h[e] = (float)((2.0 * nfv_uniform01(&rng) - 1.0) * bound);
            s = nfv_tensor_upload(ctx, &l->param[p], h);
            free(h);
        }
    }
    if (s) {
        nfv_model_free(m);
        return s;
    }
    *out = m;
    return NFV_OK;
}

void nfv_model_default_grid(nfv_model *m) { nfv_model_default_affine(m); }

nfv_status nfv_model_replace_classes(nfv_model *m, int count, const char *const *names)
{
    for (int i = 0; i < m->class_count; i++) free(m->class_names[i]);
    free(m->class_names);
    m->class_names = NULL;
    m->class_count = 0;
    return nfv_model_set_classes(m, count, names);
}

nfv_status nfv_model_check_runs(nfv_model *m, nfv_context *ctx)
{
    int sh[5] = {1, m->input_shape[0], m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    nfv_tensor x;
    NFV_TRY(nfv_tensor_create(ctx, &x, 5, sh));
    nfv_status s = nfv_tensor_fill(ctx, &x, 0.0f);
    if (!s) s = nfv_model_forward(m, ctx, &x, -1, 0);
    if (!s) s = nfv_finish(ctx);
    nfv_model_free_runtime(m);
    nfv_tensor_free(&x);
    return s;
}

/* ---- names ---------------------------------------------------------------- */

const char *nfv_layer_tensor_name(const nfv_layer *l, int t, char *buf, size_t cap)
{
    static const char *const fields[NFV_NODE_MAX_TENSORS] = {"weight", "bias", "running_mean", "running_var"};
    if (t >= 0 && t < NFV_NODE_MAX_TENSORS && l->spec.tensor_names[t][0])
        snprintf(buf, cap, "%s", l->spec.tensor_names[t]);
    else if (l->spec.kind == NFV_LAYER_CONSTANT) snprintf(buf, cap, "%d.value", l->index);
    else snprintf(buf, cap, "%d.%s", l->index, t >= 0 && t < NFV_NODE_MAX_TENSORS ? fields[t] : "?");
    return buf;
}

nfv_tensor *nfv_layer_tensor(nfv_layer *l, int t)
{
    if (l->spec.kind == NFV_LAYER_CONSTANT) return t == 0 ? &l->constant : NULL;
    if (t < l->nparams) return &l->param[t];
    if (l->spec.kind == NFV_LAYER_BATCHNORM3D) return t == 2 ? &l->running_mean : t == 3 ? &l->running_var : NULL;
    return NULL;
}

int nfv_model_find_layer(const nfv_model *m, const char *name)
{
    if (!name || !*name) {
        nfv_fail(NFV_ERR_INVALID_ARG, "no layer name given");
        return -1;
    }
    if (!strcmp(name, "logits") || !strcmp(name, "logit") || !strcmp(name, "output")) return m->layer_count - 1;
    int all_digits = 1;
    for (const char *p = name; *p; p++) all_digits &= isdigit((unsigned char)*p) != 0;
    if (all_digits) {
        long i = strtol(name, NULL, 10);
        if (i >= 0 && i < m->layer_count) return (int)i;
    } else {
        for (int i = 0; i < m->layer_count; i++)
            if (!strcmp(m->layers[i].name, name)) return i;
    }
    char list[1024];
    size_t used = 0;
    list[0] = 0;
    for (int i = 0; i < m->layer_count && used < sizeof list - 32; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", m->layers[i].name);
    nfv_fail(NFV_ERR_INVALID_ARG, "no layer \"%s\" in this model (layers: %s; or an index 0-%d)", name, list,
             m->layer_count - 1);
    return -1;
}

const nfv_layer *nfv_model_layer(const nfv_model *m, int index)
{
    return index >= 0 && index < m->layer_count ? &m->layers[index] : NULL;
}

int nfv_model_logit_layer(const nfv_model *m)
{
    int i = m->layer_count - 1;
    for (;;) {
        const nfv_layer *l = &m->layers[i];
        nfv_layer_kind k = l->spec.kind;
        int see_through = k == NFV_LAYER_SOFTMAX || k == NFV_LAYER_LOGSOFTMAX || k == NFV_LAYER_IDENTITY ||
                          k == NFV_LAYER_RESHAPE || (k == NFV_LAYER_FLATTEN && l->in_ndim == 4 &&
                                                     l->in_shape[1] * l->in_shape[2] * l->in_shape[3] == 1);
        if (!see_through || l->n_inputs != 1 || l->inputs[0] < 0 || m->layers[l->inputs[0]].consumers != 1) return i;
        i = l->inputs[0];
    }
}

int nfv_model_predict_class(const nfv_model *m, const float *row)
{
    if (m->head != NFV_HEAD_SOFTMAX) return row[0] > 0.0f;
    int best = 0;
    int k = nfv_model_outputs(m);
    for (int i = 1; i < k; i++)
        if (row[i] > row[best]) best = i;
    return best;
}
