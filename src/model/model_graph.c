/* Graph architectures: the JSON form that model files keep for models that
 * are not a plain nn.Sequential (ONNX imports, residual and dense presets),
 * and the "sequential or graph" test.  The graph presets are in
 * model_presets.c; the one-line spec syntax in model_spec.c.
 *
 * JSON form: {"graph": [node, ...]} with nodes in topological order, each
 *   {"op": "conv", "name": "layer1.0.conv1", "inputs": [3, -1], ...attributes,
 *    "tensors": ["layer1.0.conv1.weight"]}
 * where inputs are indices of earlier nodes (-1: the model input; absent:
 * the previous node) and the attributes are those of nfv_layer_spec that the
 * op uses: f (features/channels), k, s, p, pe (pad_end), d (dilation) as
 * [d, h, w] triples, g (groups), b (bias), a (alpha: slope, eps, p, value),
 * ceil, xpad, shape (reshape / constant per-sample shape). */
#include "model/model_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The op word of each kind in the JSON form (and in `inspect`). */
static const char *const OP_WORDS[NFV_LAYER_KIND_COUNT] = {
    [NFV_LAYER_CONV3D] = "conv",       [NFV_LAYER_MAXPOOL3D] = "maxpool",    [NFV_LAYER_AVGPOOL3D] = "avgpool",
    [NFV_LAYER_BATCHNORM3D] = "bn",    [NFV_LAYER_RELU] = "relu",            [NFV_LAYER_LEAKY_RELU] = "lrelu",
    [NFV_LAYER_ELU] = "elu",           [NFV_LAYER_DROPOUT] = "dropout",      [NFV_LAYER_FLATTEN] = "flatten",
    [NFV_LAYER_LINEAR] = "linear",     [NFV_LAYER_GAP] = "gap",              [NFV_LAYER_ADD] = "add",
    [NFV_LAYER_CONCAT] = "concat",     [NFV_LAYER_PAD] = "pad",              [NFV_LAYER_GMP] = "gmp",
    [NFV_LAYER_INSTANCENORM] = "instancenorm", [NFV_LAYER_SIGMOID] = "sigmoid", [NFV_LAYER_SOFTMAX] = "softmax",
    [NFV_LAYER_LOGSOFTMAX] = "logsoftmax", [NFV_LAYER_IDENTITY] = "identity", [NFV_LAYER_RESHAPE] = "reshape",
    [NFV_LAYER_CONSTANT] = "constant",
};

const char *nfv_layer_op_word(nfv_layer_kind k)
{
    return (int)k >= 0 && k < NFV_LAYER_KIND_COUNT && OP_WORDS[k] ? OP_WORDS[k] : "?";
}

static int triple_is(const int v[3], int x) { return v[0] == x && v[1] == x && v[2] == x; }

int nfv_arch_is_graph(const nfv_arch *a)
{
    for (int i = 0; i < a->count; i++) {
        const nfv_layer_spec *l = &a->layers[i];
        if (l->kind >= NFV_LAYER_ADD || l->n_inputs || l->name[0] || l->groups > 1 || l->ceil_mode || l->exclude_pad)
            return 1;
        if (!triple_is(l->dilation, 0) && !triple_is(l->dilation, 1)) return 1;
        for (int t = 0; t < NFV_NODE_MAX_TENSORS; t++)
            if (l->tensor_names[t][0]) return 1;
    }
    return 0;
}

static cJSON *triple_json(const int v[3]) { return cJSON_CreateIntArray(v, 3); }

static void add_attrs(cJSON *o, const nfv_layer_spec *l)
{
    switch (l->kind) {
    case NFV_LAYER_CONV3D:
        cJSON_AddNumberToObject(o, "f", l->features);
        cJSON_AddItemToObject(o, "k", triple_json(l->kernel));
        cJSON_AddItemToObject(o, "s", triple_json(l->stride));
        cJSON_AddItemToObject(o, "p", triple_json(l->padding));
        cJSON_AddItemToObject(o, "d", triple_json(l->dilation));
        cJSON_AddNumberToObject(o, "g", l->groups > 1 ? l->groups : 1);
        cJSON_AddNumberToObject(o, "b", l->bias);
        break;
    case NFV_LAYER_MAXPOOL3D:
    case NFV_LAYER_AVGPOOL3D:
        cJSON_AddItemToObject(o, "k", triple_json(l->kernel));
        cJSON_AddItemToObject(o, "s", triple_json(l->stride));
        cJSON_AddItemToObject(o, "p", triple_json(l->padding));
        cJSON_AddNumberToObject(o, "ceil", l->ceil_mode);
        cJSON_AddNumberToObject(o, "xpad", l->exclude_pad);
        break;
    case NFV_LAYER_PAD:
        cJSON_AddItemToObject(o, "p", triple_json(l->padding));
        cJSON_AddItemToObject(o, "pe", triple_json(l->pad_end));
        cJSON_AddNumberToObject(o, "a", l->alpha);
        break;
    case NFV_LAYER_LINEAR:
        cJSON_AddNumberToObject(o, "f", l->features);
        cJSON_AddNumberToObject(o, "b", l->bias);
        break;
    case NFV_LAYER_BATCHNORM3D:
    case NFV_LAYER_INSTANCENORM:
    case NFV_LAYER_LEAKY_RELU:
    case NFV_LAYER_ELU:
    case NFV_LAYER_DROPOUT: cJSON_AddNumberToObject(o, "a", l->alpha); break;
    case NFV_LAYER_RESHAPE:
    case NFV_LAYER_CONSTANT:
        cJSON_AddItemToObject(o, "shape", cJSON_CreateIntArray(l->reshape, l->reshape_ndim));
        if (l->kind == NFV_LAYER_CONSTANT) cJSON_AddNumberToObject(o, "f", l->features);
        break;
    default: break;
    }
}

/* Number of tensors a node keeps in the file (parameters, then buffers). */
int nfv_spec_tensor_count(const nfv_layer_spec *l)
{
    switch (l->kind) {
    case NFV_LAYER_CONV3D:
    case NFV_LAYER_LINEAR: return l->bias ? 2 : 1;
    case NFV_LAYER_BATCHNORM3D: return 4;
    case NFV_LAYER_INSTANCENORM: return 2;
    case NFV_LAYER_CONSTANT: return 1;
    default: return 0;
    }
}

char *nfv_arch_to_json(const nfv_arch *a)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if (!root || !arr) {
        cJSON_Delete(root);
        cJSON_Delete(arr);
        return NULL;
    }
    cJSON_AddItemToObject(root, "graph", arr);
    for (int i = 0; i < a->count; i++) {
        const nfv_layer_spec *l = &a->layers[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "op", nfv_layer_op_word(l->kind));
        if (l->name[0]) cJSON_AddStringToObject(o, "name", l->name);
        if (l->n_inputs) cJSON_AddItemToObject(o, "inputs", cJSON_CreateIntArray(l->inputs, l->n_inputs));
        add_attrs(o, l);
        int nt = nfv_spec_tensor_count(l), named = 0;
        for (int t = 0; t < nt; t++) named |= l->tensor_names[t][0] != 0;
        if (named) {
            cJSON *ts = cJSON_CreateArray();
            for (int t = 0; t < nt; t++) cJSON_AddItemToArray(ts, cJSON_CreateString(l->tensor_names[t]));
            cJSON_AddItemToObject(o, "tensors", ts);
        }
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- reading ---------------------------------------------------------------- */

/* Integer member key of o in [lo, hi] (absent: *v unchanged). */
static int get_int(const cJSON *o, const char *key, int lo, int hi, int *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x) return 1;
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < lo || x->valuedouble > hi)
        return 0;
    *v = (int)x->valuedouble;
    return 1;
}

static int get_ints(const cJSON *o, const char *key, int n_max, int lo, int hi, int *v, int *n)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x) return 1;
    int k = cJSON_GetArraySize(x);
    if (!cJSON_IsArray(x) || k > n_max || (!n && k != n_max)) return 0;
    for (int i = 0; i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(x, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < lo || e->valuedouble > hi)
            return 0;
        v[i] = (int)e->valuedouble;
    }
    if (n) *n = k;
    return 1;
}

static nfv_status node_from_json(const cJSON *o, int index, nfv_layer_spec *l)
{
    memset(l, 0, sizeof *l);
    for (int a = 0; a < 3; a++) l->kernel[a] = l->stride[a] = l->dilation[a] = 1;
#define BAD(what) return nfv_fail(NFV_ERR_FORMAT, "graph node %d: %s", index, what)
    if (!cJSON_IsObject(o)) BAD("is not a JSON object");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "op");
    if (!cJSON_IsString(op)) BAD("has no \"op\"");
    int kind = -1;
    for (int k = 0; k < NFV_LAYER_KIND_COUNT; k++)
        if (OP_WORDS[k] && !strcmp(OP_WORDS[k], op->valuestring)) kind = k;
    if (kind < 0) return nfv_fail(NFV_ERR_FORMAT, "graph node %d: unknown op \"%.40s\"", index, op->valuestring);
    l->kind = (nfv_layer_kind)kind;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (name) {
        if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) >= NFV_NODE_NAME_MAX)
            BAD("\"name\" is not a string of 1-63 characters");
        snprintf(l->name, sizeof l->name, "%s", name->valuestring);
    }
    if (!get_ints(o, "inputs", NFV_NODE_MAX_INPUTS, -1, index - 1, l->inputs, &l->n_inputs))
        BAD("\"inputs\" must list up to 32 earlier node indices (-1: the model input)");
    if (!get_int(o, "f", 1, 100000000, &l->features) || !get_int(o, "g", 1, 1 << 20, &l->groups) ||
        !get_int(o, "b", 0, 1, &l->bias) || !get_int(o, "ceil", 0, 1, &l->ceil_mode) ||
        !get_int(o, "xpad", 0, 1, &l->exclude_pad))
        BAD("an integer attribute (f, g, b, ceil, xpad) is out of range");
    if (!get_ints(o, "k", 3, 1, 100000, l->kernel, NULL) || !get_ints(o, "s", 3, 1, 100000, l->stride, NULL) ||
        !get_ints(o, "p", 3, 0, 100000, l->padding, NULL) || !get_ints(o, "pe", 3, 0, 100000, l->pad_end, NULL) ||
        !get_ints(o, "d", 3, 1, 100000, l->dilation, NULL))
        BAD("a triple attribute (k, s, p, pe, d) is not three integers in range");
    if (!get_ints(o, "shape", 4, 1, 1 << 30, l->reshape, &l->reshape_ndim)) BAD("\"shape\" is not 1-4 positive integers");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "a");
    if (a) {
        if (!cJSON_IsNumber(a) || !isfinite(a->valuedouble)) BAD("\"a\" is not a finite number");
        l->alpha = (float)a->valuedouble;
    }
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "tensors");
    if (ts) {
        int nt = nfv_spec_tensor_count(l);
        if (!cJSON_IsArray(ts) || cJSON_GetArraySize(ts) != nt) BAD("\"tensors\" does not list the op's tensors");
        for (int t = 0; t < nt; t++) {
            const cJSON *e = cJSON_GetArrayItem(ts, t);
            if (!cJSON_IsString(e) || strlen(e->valuestring) >= NFV_PARAM_NAME_MAX) BAD("a tensor name is too long");
            snprintf(l->tensor_names[t], NFV_PARAM_NAME_MAX, "%s", e->valuestring);
        }
    }
    return NFV_OK;
#undef BAD
}

nfv_status nfv_arch_from_json(const char *text, nfv_arch *out)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_Parse(text);
    const cJSON *arr = root ? cJSON_GetObjectItemCaseSensitive(root, "graph") : NULL;
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    nfv_status s = NFV_OK;
    if (!cJSON_IsArray(arr)) s = nfv_fail(NFV_ERR_FORMAT, "graph: not a JSON object with a \"graph\" list");
    else if (n < 1 || n > 100000) s = nfv_fail(NFV_ERR_FORMAT, "graph: %d nodes (1-100000)", n);
    else if (!(out->layers = calloc((size_t)n, sizeof *out->layers)))
        s = nfv_fail(NFV_ERR_NO_MEMORY, "graph: out of memory");
    for (int i = 0; !s && i < n; i++) {
        s = node_from_json(cJSON_GetArrayItem(arr, i), i, &out->layers[i]);
        out->count = i + 1;
    }
    cJSON_Delete(root);
    if (s) nfv_arch_free(out);
    return s;
}

char *nfv_arch_to_text(const nfv_arch *a)
{
    if (nfv_arch_is_graph(a)) return nfv_arch_to_json(a);
    size_t cap = 64 + (size_t)a->count * 48;
    char *buf = malloc(cap);
    if (buf) nfv_arch_print(a, buf, cap);
    return buf;
}
