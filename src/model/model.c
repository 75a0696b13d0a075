/* Sequential models: building from a spec, shapes, forward and backward over
 * the ops of ops.h, safetensors load/save.  See include/neurofv/model.h. */
#include "base/rng.h"
#include "neurofv/model.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_FORMAT "neurofv-model-1"
#define BN_MOMENTUM 0.1f

static const char *kind_word(nfv_layer_kind k)
{
    switch (k) {
    case NFV_LAYER_CONV3D: return "conv";
    case NFV_LAYER_MAXPOOL3D: return "pool";
    case NFV_LAYER_AVGPOOL3D: return "pool";
    case NFV_LAYER_BATCHNORM3D: return "bn";
    case NFV_LAYER_RELU: return "relu";
    case NFV_LAYER_LEAKY_RELU: return "lrelu";
    case NFV_LAYER_ELU: return "elu";
    case NFV_LAYER_DROPOUT: return "dropout";
    case NFV_LAYER_FLATTEN: return "flatten";
    case NFV_LAYER_LINEAR: return "fc";
    case NFV_LAYER_GAP: return "gap";
    }
    return "layer";
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int out_size(int in, int k, int s, int p) { return in + 2 * p < k ? 0 : (in + 2 * p - k) / s + 1; }

/* Shapes, names and parameter shapes of every layer, from arch and input. */
static nfv_status layout(nfv_model *m)
{
    int ndim = 4, shape[4];
    memcpy(shape, m->input_shape, sizeof shape);
    int counts[16] = {0}, totals[16] = {0};
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
        if (unnumbered) snprintf(l->name, sizeof l->name, "%s", kind_word(l->spec.kind));
        else snprintf(l->name, sizeof l->name, "%s%d", kind_word(l->spec.kind), counts[fam]);
        l->in_ndim = ndim;
        memcpy(l->in_shape, shape, sizeof shape);
        const nfv_layer_spec *s = &l->spec;
        switch (s->kind) {
        case NFV_LAYER_CONV3D:
        case NFV_LAYER_MAXPOOL3D:
        case NFV_LAYER_AVGPOOL3D:
            if (ndim != 4)
                return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): needs a (C, D, H, W) input, got %d-D (after flatten?)",
                                i, l->name, ndim);
            for (int a = 0; a < 3; a++) {
                int o = out_size(shape[1 + a], s->kernel[a], s->stride[a], s->padding[a]);
                if (o < 1)
                    return nfv_fail(NFV_ERR_INVALID_ARG,
                                    "layer %d (%s): input %dx%dx%dx%d is too small for kernel %dx%dx%d padding %d",
                                    i, l->name, shape[0], shape[1], shape[2], shape[3], s->kernel[0], s->kernel[1],
                                    s->kernel[2], s->padding[a]);
                shape[1 + a] = o;
            }
            if (s->kind == NFV_LAYER_CONV3D) {
                l->nparams = s->bias ? 2 : 1;
                shape[0] = s->features;
            }
            break;
        case NFV_LAYER_BATCHNORM3D:
            if (ndim != 4)
                return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): BatchNorm3d needs a (C, D, H, W) input", i, l->name);
            l->nparams = 2;
            break;
        case NFV_LAYER_RELU:
        case NFV_LAYER_LEAKY_RELU:
        case NFV_LAYER_ELU:
        case NFV_LAYER_DROPOUT: break;
        case NFV_LAYER_FLATTEN:
            shape[0] = (int)nfv_shape_numel(ndim, shape);
            ndim = 1;
            break;
        case NFV_LAYER_GAP:
            if (ndim != 4)
                return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): global average pool needs a (C, D, H, W) input", i,
                                l->name);
            shape[1] = shape[2] = shape[3] = 1;
            break;
        case NFV_LAYER_LINEAR:
            /* Even after gap, whose (C,1,1,1) output has the layout of (C),
             * PyTorch needs an nn.Flatten, so we ask for one to stay in step. */
            if (ndim != 1) {
                return nfv_fail(NFV_ERR_INVALID_ARG, "layer %d (%s): Linear needs a flat input: put \"flatten\" before it",
                                i, l->name);
            }
            l->nparams = s->bias ? 2 : 1;
            shape[0] = s->features;
            break;
        }
        l->out_ndim = ndim;
        memcpy(l->out_shape, shape, sizeof shape);
    }
    return NFV_OK;
}

/* Shape of parameter p of layer l (ndim returned). */
static int param_shape(const nfv_layer *l, int p, int shape[5])
{
    const nfv_layer_spec *s = &l->spec;
    switch (s->kind) {
    case NFV_LAYER_CONV3D:
        if (p == 0) {
            shape[0] = s->features, shape[1] = l->in_shape[0];
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
    case NFV_LAYER_BATCHNORM3D: shape[0] = l->in_shape[0]; return 1;
    default: return 0;
    }
}

long long nfv_layer_param_count(const nfv_layer *l)
{
    long long n = 0;
    for (int p = 0; p < l->nparams; p++) {
        int sh[5];
        int nd = param_shape(l, p, sh);
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

static void free_runtime(nfv_model *m)
{
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        nfv_tensor_free(&l->out);
        nfv_tensor_free(&l->aux);
        nfv_tensor_free(&l->aux2);
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
    free_runtime(m);
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
    }
    for (int i = 0; i < m->class_count; i++) free(m->class_names[i]);
    free(m->class_names);
    free(m->layers);
    free(m->arch_spec);
    nfv_arch_free(&m->arch);
    free(m);
}

/* Allocate parameter tensors (zero) and BN buffers; grads allocated too. */
static nfv_status alloc_params(nfv_model *m, nfv_context *ctx)
{
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        for (int p = 0; p < l->nparams; p++) {
            int sh[5];
            int nd = param_shape(l, p, sh);
            NFV_TRY(nfv_tensor_create(ctx, &l->param[p], nd, sh));
            NFV_TRY(nfv_tensor_create(ctx, &l->grad[p], nd, sh));
        }
        if (l->spec.kind == NFV_LAYER_BATCHNORM3D) {
            int c = l->in_shape[0];
            NFV_TRY(nfv_tensor_create(ctx, &l->running_mean, 1, &c));
            NFV_TRY(nfv_tensor_create(ctx, &l->running_var, 1, &c));
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

static void default_affine(nfv_model *m)
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

static nfv_status set_classes(nfv_model *m, int count, const char *const *names)
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

/* Common construction: arch parse, layout, metadata defaults. */
static nfv_status model_new(const char *spec, const int input_shape[4], int outputs, nfv_model **out)
{
    *out = NULL;
    nfv_model *m = calloc(1, sizeof *m);
    if (!m) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    m->last_forward_upto = -1;
    nfv_status s = nfv_arch_parse(spec, outputs, &m->arch);
    if (s) {
        free(m);
        return s;
    }
    for (int i = 0; i < 4; i++) {
        if (input_shape[i] < 1) {
            nfv_model_free(m);
            return nfv_fail(NFV_ERR_INVALID_ARG, "model: input shape entry %d is %d", i, input_shape[i]);
        }
        m->input_shape[i] = input_shape[i];
    }
    m->layer_count = m->arch.count;
    m->layers = calloc((size_t)m->layer_count, sizeof *m->layers);
    char *text = malloc(8192);
    if (!m->layers || !text) {
        free(text);
        nfv_model_free(m);
        return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    }
    m->arch_spec = dupstr(nfv_arch_print(&m->arch, text, 8192));
    free(text);
    if ((s = layout(m))) {
        nfv_model_free(m);
        return s;
    }
    m->voxel_mm[0] = m->voxel_mm[1] = m->voxel_mm[2] = 2.0;
    m->norm = NFV_NORM_ZSCORE_NONZERO;
    default_affine(m);
    *out = m;
    return NFV_OK;
}

static int output_features(const nfv_model *m)
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
    NFV_TRY(model_new(spec, input_shape, outputs, &m));
    m->ctx = ctx;
    int feats = output_features(m);
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
    nfv_status s = set_classes(m, head == NFV_HEAD_REGRESSION ? 0 : class_count, class_names);
    if (!s) s = alloc_params(m, ctx);
    uint64_t rng = seed ^ 0x6E6575726F6676ULL;
    for (int i = 0; !s && i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        if (l->spec.kind == NFV_LAYER_BATCHNORM3D) {
            s = fill_host(ctx, &l->param[0], 1.0f);
            if (!s) s = fill_host(ctx, &l->running_var, 1.0f);
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

/* ---- names ---------------------------------------------------------------- */

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

int nfv_model_predict_class(const nfv_model *m, const float *row)
{
    if (m->head != NFV_HEAD_SOFTMAX) return row[0] > 0.0f;
    int best = 0;
    int k = output_features(m);
    for (int i = 1; i < k; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* ---- runtime ---------------------------------------------------------------- */

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
    free_runtime(m);
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
            free_runtime(m);
            return nfv_fail_context(s, "layer %d (%s), batch %d", i, l->name, n);
        }
    }
    int one = (int)biggest;
    nfv_status s = nfv_tensor_create(ctx, &m->grad_a, 1, &one);
    if (!s) s = nfv_tensor_create(ctx, &m->grad_b, 1, &one);
    if (s) {
        free_runtime(m);
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
    memcpy(p->kernel, s->kernel, sizeof p->kernel);
    memcpy(p->stride, s->stride, sizeof p->stride);
    memcpy(p->padding, s->padding, sizeof p->padding);
}
static void pool_params(const nfv_layer_spec *s, nfv_pool3d_params *p)
{
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

/* ---- files ---------------------------------------------------------------- */

static nfv_status download_param(nfv_context *ctx, const nfv_tensor *t, float **host)
{
    *host = malloc(t->numel * sizeof(float));
    if (!*host) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    nfv_status s = nfv_tensor_download(ctx, t, *host);
    if (s) {
        free(*host);
        *host = NULL;
    }
    return s;
}

static nfv_status add_tensor(nfv_context *ctx, nfv_st_writer *w, const char *name, const nfv_tensor *t)
{
    float *h;
    NFV_TRY(download_param(ctx, t, &h));
    long long sh[NFV_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) sh[i] = t->shape[i];
    nfv_status s = nfv_st_writer_add(w, name, NFV_ST_F32, t->ndim, sh, h);
    free(h);
    return s;
}

static const char *const PARAM_NAMES[NFV_LAYER_MAX_PARAMS] = {"weight", "bias"};

nfv_status nfv_model_to_writer(const nfv_model *m, nfv_st_writer *w)
{
    nfv_context *ctx = m->ctx;
    char name[64], buf[1024];
    for (int i = 0; i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        for (int p = 0; p < l->nparams; p++) {
            snprintf(name, sizeof name, "%d.%s", i, PARAM_NAMES[p]);
            NFV_TRY(add_tensor(ctx, w, name, &l->param[p]));
        }
        if (l->spec.kind == NFV_LAYER_BATCHNORM3D) {
            snprintf(name, sizeof name, "%d.running_mean", i);
            NFV_TRY(add_tensor(ctx, w, name, &l->running_mean));
            snprintf(name, sizeof name, "%d.running_var", i);
            NFV_TRY(add_tensor(ctx, w, name, &l->running_var));
            snprintf(name, sizeof name, "%d.num_batches_tracked", i);
            long long nbt = l->num_batches_tracked;
            NFV_TRY(nfv_st_writer_add(w, name, NFV_ST_I64, 0, NULL, &nbt));
        }
    }
    NFV_TRY(nfv_st_writer_meta(w, "format", MODEL_FORMAT));
    NFV_TRY(nfv_st_writer_meta(w, "arch", m->arch_spec));
    snprintf(buf, sizeof buf, "%d,%d,%d,%d", m->input_shape[0], m->input_shape[1], m->input_shape[2], m->input_shape[3]);
    NFV_TRY(nfv_st_writer_meta(w, "input_shape", buf));
    snprintf(buf, sizeof buf, "%.17g,%.17g,%.17g", m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]);
    NFV_TRY(nfv_st_writer_meta(w, "voxel_mm", buf));
    size_t used = 0;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%.17g", r || c ? "," : "", m->affine[r][c]);
    NFV_TRY(nfv_st_writer_meta(w, "affine", buf));
    NFV_TRY(nfv_st_writer_meta(w, "norm", nfv_norm_method_name(m->norm)));
    NFV_TRY(nfv_st_writer_meta(w, "head", nfv_head_name(m->head)));
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < m->class_count; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(m->class_names[i]));
    char *js = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    if (!js) return nfv_fail(NFV_ERR_NO_MEMORY, "model: out of memory");
    nfv_status s = nfv_st_writer_meta(w, "classes", js);
    free(js);
    return s;
}

nfv_status nfv_model_save(const nfv_model *m, const char *path)
{
    nfv_st_writer w;
    nfv_st_writer_init(&w);
    nfv_status s = nfv_model_to_writer(m, &w);
    if (!s) s = nfv_st_writer_write(&w, path);
    nfv_st_writer_free(&w);
    if (s) return nfv_fail_context(s, "saving model %s", path);
    return NFV_OK;
}

static int parse_numbers(const char *s, double *v, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        v[i] = strtod(s, &end);
        if (end == s || !isfinite(v[i])) return 0;
        s = end;
        while (*s == ' ') s++;
        if (i < n - 1) {
            if (*s != ',') return 0;
            s++;
        }
    }
    while (*s == ' ') s++;
    return *s == 0;
}

static nfv_status load_tensor(nfv_context *ctx, const nfv_st_file *f, const char *name, nfv_tensor *t)
{
    const nfv_st_tensor *st = nfv_st_find(f, name);
    char want[64];
    nfv_shape_str(t, want, sizeof want);
    if (!st) return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" (%s) is missing", f->path, name, want);
    int same = st->ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = st->shape[i] == t->shape[i];
    if (!same) {
        char got[160] = "";
        size_t u = 0;
        for (int i = 0; i < st->ndim && u < sizeof got; i++)
            u += (size_t)snprintf(got + u, sizeof got - u, i ? "x%lld" : "%lld", st->shape[i]);
        return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" has shape [%s] but the architecture needs %s", f->path, name,
                        st->ndim ? got : "scalar", want);
    }
    if (st->dtype != NFV_ST_F32 && st->dtype != NFV_ST_F64 && st->dtype != NFV_ST_F16 && st->dtype != NFV_ST_BF16)
        return nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" is %s, a floating-point type is needed", f->path, name,
                        nfv_st_dtype_name(st->dtype));
    float *h = malloc(st->numel * sizeof *h + 1);
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", f->path);
    nfv_st_to_float(st, h);
    nfv_status s = nfv_tensor_upload(ctx, t, h);
    free(h);
    return s;
}

nfv_status nfv_model_from_file(nfv_context *ctx, const nfv_st_file *f, const char *ignore_prefix, nfv_model **out)
{
    *out = NULL;
    const char *arch = nfv_st_meta(f, "arch"), *ishape = nfv_st_meta(f, "input_shape");
    if (!arch || !ishape)
        return nfv_fail(NFV_ERR_FORMAT, "%s: __metadata__ lacks \"arch\" or \"input_shape\" (export with tools/neurofv_torch.py)",
                        f->path);
    double d[16];
    if (!parse_numbers(ishape, d, 4))
        return nfv_fail(NFV_ERR_FORMAT, "%s: input_shape \"%s\" is not C,D,H,W", f->path, ishape);
    int shape[4];
    for (int i = 0; i < 4; i++) {
        if (d[i] < 1 || d[i] > 1e6 || d[i] != floor(d[i]))
            return nfv_fail(NFV_ERR_FORMAT, "%s: input_shape \"%s\" is not C,D,H,W", f->path, ishape);
        shape[i] = (int)d[i];
    }
    nfv_head head = NFV_HEAD_SOFTMAX;
    const char *hs = nfv_st_meta(f, "head");
    if (hs && nfv_head_parse(hs, &head)) return nfv_fail_context(NFV_ERR_FORMAT, "%s", f->path);

    nfv_model *m;
    nfv_status s = model_new(arch, shape, 0, &m);
    if (s) return nfv_fail_context(NFV_ERR_FORMAT, "%s: architecture in __metadata__", f->path);
    m->ctx = ctx;
    m->head = head;
    int feats = output_features(m);
    if (head == NFV_HEAD_SOFTMAX && feats == 1) m->head = NFV_HEAD_BINARY;

    /* classes: a JSON list of strings */
    const char *cs = nfv_st_meta(f, "classes");
    cJSON *arr = cs ? cJSON_Parse(cs) : NULL;
    int nclass = m->head == NFV_HEAD_SOFTMAX ? feats : m->head == NFV_HEAD_BINARY ? 2 : 0;
    const char **names = calloc((size_t)nclass + 1, sizeof(char *));
    if (cs && (!arr || !cJSON_IsArray(arr))) s = nfv_fail(NFV_ERR_FORMAT, "%s: \"classes\" is not a JSON list", f->path);
    else if (arr && cJSON_GetArraySize(arr) != nclass)
        s = nfv_fail(NFV_ERR_FORMAT, "%s: %d class names for a %s head with %d outputs", f->path,
                     cJSON_GetArraySize(arr), nfv_head_name(m->head), feats);
    for (int i = 0; !s && arr && i < nclass; i++) {
        cJSON *c = cJSON_GetArrayItem(arr, i);
        if (!cJSON_IsString(c)) s = nfv_fail(NFV_ERR_FORMAT, "%s: class name %d is not a string", f->path, i);
        else names[i] = c->valuestring;
    }
    if (!s && !names) s = nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
    if (!s) s = set_classes(m, nclass, names);
    free(names);
    cJSON_Delete(arr);

    const char *vs = nfv_st_meta(f, "voxel_mm"), *as = nfv_st_meta(f, "affine"), *ns = nfv_st_meta(f, "norm");
    if (!s && vs) {
        if (!parse_numbers(vs, m->voxel_mm, 3) || m->voxel_mm[0] <= 0 || m->voxel_mm[1] <= 0 || m->voxel_mm[2] <= 0)
            s = nfv_fail(NFV_ERR_FORMAT, "%s: voxel_mm \"%s\" is not three positive numbers", f->path, vs);
        else default_affine(m);
    }
    if (!s && as) {
        if (!parse_numbers(as, d, 16)) s = nfv_fail(NFV_ERR_FORMAT, "%s: affine is not 16 numbers", f->path);
        else
            for (int i = 0; i < 16; i++) m->affine[i / 4][i % 4] = d[i];
    }
    if (!s && ns && nfv_norm_method_parse(ns, &m->norm)) s = nfv_fail_context(NFV_ERR_FORMAT, "%s", f->path);

    /* Shapes first, so a corrupt header cannot make us allocate what the file does not hold. */
    char name[64];
    for (int i = 0; !s && i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        for (int p = 0; !s && p < l->nparams; p++) {
            int sh[5];
            int nd = param_shape(l, p, sh);
            snprintf(name, sizeof name, "%d.%s", i, PARAM_NAMES[p]);
            const nfv_st_tensor *t = nfv_st_find(f, name);
            int same = t && t->ndim == nd;
            for (int d = 0; same && d < nd; d++) same = t->shape[d] == sh[d];
            if (!t) s = nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" (layer %s) is missing", f->path, name, l->name);
            else if (!same) {
                char got[160] = "", want[96] = "";
                size_t u = 0, v = 0;
                for (int d = 0; d < t->ndim && u < sizeof got; d++)
                    u += (size_t)snprintf(got + u, sizeof got - u, d ? "x%lld" : "%lld", t->shape[d]);
                for (int d = 0; d < nd && v < sizeof want; d++)
                    v += (size_t)snprintf(want + v, sizeof want - v, d ? "x%d" : "%d", sh[d]);
                s = nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" has shape [%s] but layer %d (%s) of \"%s\" needs %s",
                             f->path, name, t->ndim ? got : "scalar", i, l->name, m->arch_spec, want);
            }
        }
    }
    if (!s) s = alloc_params(m, ctx);
    for (int i = 0; !s && i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        for (int p = 0; !s && p < l->nparams; p++) {
            snprintf(name, sizeof name, "%d.%s", i, PARAM_NAMES[p]);
            s = load_tensor(ctx, f, name, &l->param[p]);
        }
        if (!s && l->spec.kind == NFV_LAYER_BATCHNORM3D) {
            snprintf(name, sizeof name, "%d.running_mean", i);
            s = load_tensor(ctx, f, name, &l->running_mean);
            snprintf(name, sizeof name, "%d.running_var", i);
            if (!s) s = load_tensor(ctx, f, name, &l->running_var);
            snprintf(name, sizeof name, "%d.num_batches_tracked", i);
            const nfv_st_tensor *t = nfv_st_find(f, name);
            if (t) {
                if (t->numel != 1 || t->dtype != NFV_ST_I64)
                    s = nfv_fail(NFV_ERR_FORMAT, "%s: \"%s\" must be one I64", f->path, name);
                else {
                    long long x = 0;
                    for (int b = 7; b >= 0; b--) x = (x << 8) | t->data[b];
                    l->num_batches_tracked = x;
                }
            }
        }
    }
    /* Anything else in the file means it was made for another architecture. */
    for (int i = 0; !s && i < f->count; i++) {
        const char *tn = f->tensors[i].name;
        if (ignore_prefix && *ignore_prefix && !strncmp(tn, ignore_prefix, strlen(ignore_prefix))) continue;
        int known = 0;
        char *dot = strchr(tn, '.');
        if (dot) {
            char *end;
            long li = strtol(tn, &end, 10);
            if (end == dot && li >= 0 && li < m->layer_count) {
                const nfv_layer *l = &m->layers[li];
                const char *field = dot + 1;
                known = (l->nparams >= 1 && !strcmp(field, "weight")) || (l->nparams >= 2 && !strcmp(field, "bias")) ||
                        (l->spec.kind == NFV_LAYER_BATCHNORM3D &&
                         (!strcmp(field, "running_mean") || !strcmp(field, "running_var") ||
                          !strcmp(field, "num_batches_tracked")));
            }
        }
        if (!known)
            s = nfv_fail(NFV_ERR_FORMAT, "%s: tensor \"%s\" does not belong to the architecture \"%s\"", f->path, tn,
                         m->arch_spec);
    }
    if (s) {
        nfv_model_free(m);
        return s;
    }
    *out = m;
    return NFV_OK;
}

nfv_status nfv_model_load(nfv_context *ctx, const char *path, nfv_model **out)
{
    *out = NULL;
    nfv_st_file f;
    NFV_TRY(nfv_st_read(path, &f));
    nfv_status s = nfv_model_from_file(ctx, &f, NULL, out);
    nfv_st_free(&f);
    return s;
}
