/* The ONNX reader's shared pieces (see onnx_read.c): messages, constants
 * from TensorProtos (every size checked), the value table, attributes,
 * readable node names, and appending nodes and tensors to the result. */
#include "model/onnx_internal.h"

#include "base/rng.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *nz(const char *s) { return s ? s : ""; }

/* ---- messages ---------------------------------------------------------- */

nfv_status ox_fail(ox_ctx *c, nfv_status s, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->node)
        return nfv_fail(s, "%s: node \"%s\" (op %s): %s", c->path, nz(c->node->name), nz(c->node->op_type), msg);
    return nfv_fail(s, "%s: %s", c->path, msg);
}

/* ---- constants --------------------------------------------------------- */

static const char *const DTYPE_NAMES[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                          "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                          "COMPLEX128", "BFLOAT16"};

const char *ox_dtype_name(int d)
{
    return d >= 0 && d < (int)(sizeof DTYPE_NAMES / sizeof *DTYPE_NAMES) ? DTYPE_NAMES[d] : "unknown";
}

void ox_const_free(ox_const *k)
{
    free(k->f);
    free(k->i);
    memset(k, 0, sizeof *k);
}

nfv_status ox_const_alloc(ox_ctx *c, ox_const *k, int dtype, int ndim, const long long *shape)
{
    memset(k, 0, sizeof *k);
    if (ndim < 0 || ndim > OX_MAX_RANK) return ox_fail(c, NFV_ERR_UNSUPPORTED, "a tensor of rank %d (at most %d)", ndim, OX_MAX_RANK);
    long long n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || shape[d] > OX_MAX_NUMEL || (shape[d] && n > OX_MAX_NUMEL / shape[d]))
            return ox_fail(c, NFV_ERR_FORMAT, "a tensor dimension %lld is negative or the tensor exceeds 2^31 elements",
                           shape[d]);
        n *= shape[d];
        k->shape[d] = shape[d];
    }
    k->dtype = dtype, k->ndim = ndim, k->numel = (size_t)n;
    if (dtype == OX_F32) k->f = malloc((size_t)(n ? n : 1) * sizeof(float));
    else k->i = malloc((size_t)(n ? n : 1) * sizeof(long long));
    if (!k->f && !k->i) return ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory for a tensor of %lld elements", n);
    return NFV_OK;
}

double ox_const_get_f(const ox_const *k, size_t j) { return k->dtype == OX_F32 ? (double)k->f[j] : (double)k->i[j]; }
long long ox_const_get_i(const ox_const *k, size_t j) { return k->dtype == OX_I64 ? k->i[j] : (long long)k->f[j]; }

nfv_status ox_tensor_to_const(ox_ctx *c, const Onnx__TensorProto *t, const char *what, ox_const *out)
{
    memset(out, 0, sizeof *out);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return ox_fail(c, NFV_ERR_UNSUPPORTED,
                       "tensor \"%s\" keeps its data in an external file (data_location EXTERNAL); not supported: "
                       "save the model with its weights inside the .onnx file",
                       what);
    if (t->segment) return ox_fail(c, NFV_ERR_UNSUPPORTED, "tensor \"%s\" is segmented; not supported", what);
    int dt = t->has_data_type ? t->data_type : 0;
    if (dt != OX_F32 && dt != OX_I64)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "tensor \"%s\" has dtype %s; supported: FLOAT (float32) for weights and "
                                               "values, INT64 for shapes and indices", what, ox_dtype_name(dt));
    if (t->n_dims > OX_MAX_RANK)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "tensor \"%s\" has rank %zu (at most %d)", what, t->n_dims, OX_MAX_RANK);
    long long shape[OX_MAX_RANK], numel = 1;
    for (size_t d = 0; d < t->n_dims; d++) {
        shape[d] = t->dims[d];
        if (shape[d] < 0)
            return ox_fail(c, NFV_ERR_FORMAT, "tensor \"%s\" has a negative dimension %lld", what, shape[d]);
        if (shape[d] > OX_MAX_NUMEL || (numel *= shape[d]) > OX_MAX_NUMEL)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "tensor \"%s\" has more than 2^31 elements (dimension %zu is %lld)",
                           what, d, shape[d]);
    }
    NFV_TRY(ox_const_alloc(c, out, dt, (int)t->n_dims, shape));
    size_t es = dt == OX_F32 ? 4 : 8, n = out->numel;
    void *dst = dt == OX_F32 ? (void *)out->f : (void *)out->i;
    if (t->has_raw_data && t->raw_data.len > 0) {
        if (t->raw_data.len != n * es) {
            ox_const_free(out);
            return ox_fail(c, NFV_ERR_FORMAT, "tensor \"%s\" has %zu bytes of data for %zu elements of %zu bytes", what,
                           t->raw_data.len, n, es);
        }
        memcpy(dst, t->raw_data.data, n * es); /* little-endian, as the host */
    } else if (dt == OX_F32 && t->n_float_data == n) {
        if (n) memcpy(dst, t->float_data, n * es);
    } else if (dt == OX_I64 && t->n_int64_data == n) {
        if (n) memcpy(dst, t->int64_data, n * es);
    } else {
        size_t have = dt == OX_F32 ? t->n_float_data : t->n_int64_data;
        ox_const_free(out);
        return ox_fail(c, NFV_ERR_FORMAT, "tensor \"%s\" has %zu values for its %zu elements", what, have, n);
    }
    return NFV_OK;
}

/* ---- values ------------------------------------------------------------ */

static size_t name_hash(const char *s) { return (size_t)nfv_hash64(s, strlen(s), 0xcbf29ce484222325ULL); }

ox_value *ox_get(ox_ctx *c, const char *name)
{
    if (!name || !name[0] || !c->nslots) return NULL;
    for (size_t h = name_hash(name) & (c->nslots - 1);; h = (h + 1) & (c->nslots - 1)) {
        int s = c->slots[h];
        if (!s) return NULL;
        if (!strcmp(c->vals[s - 1].name, name)) return &c->vals[s - 1];
    }
}

/* A new value of name; NULL if the name is taken (or the table full). */
ox_value *ox_new_value(ox_ctx *c, const char *name)
{
    if (ox_get(c, name) || c->nvals >= c->capvals) return NULL;
    ox_value *v = &c->vals[c->nvals++];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->producer = -1;
    size_t h = name_hash(name) & (c->nslots - 1);
    while (c->slots[h]) h = (h + 1) & (c->nslots - 1);
    c->slots[h] = c->nvals;
    return v;
}

ox_value *ox_input(ox_ctx *c, int k)
{
    if (k < 0 || (size_t)k >= c->node->n_input) return NULL;
    return ox_get(c, c->node->input[k]);
}

ox_value *ox_output(ox_ctx *c, int k)
{
    if (k < 0 || (size_t)k >= c->node->n_output) return NULL;
    return ox_get(c, c->node->output[k]);
}

int ox_output_used(ox_ctx *c, int k)
{
    ox_value *v = ox_output(c, k);
    return v && v->uses > 0;
}

void ox_per_sample(int rank, const long long *dims, int *ndim, int shape[4])
{
    shape[0] = shape[1] = shape[2] = shape[3] = 1;
    if (rank <= 2) {
        *ndim = 1;
        shape[0] = rank == 2 ? (int)dims[1] : 1;
        return;
    }
    *ndim = 4;
    for (int d = 1; d < rank && d < 5; d++) shape[d == 1 ? 0 : 4 - (rank - d)] = (int)dims[d];
}

long long ox_per_sample_numel(const ox_value *v)
{
    long long n = 1;
    for (int d = 1; d < v->rank; d++) n *= v->dims[d];
    return n;
}

void ox_set_graph(ox_value *v, int node, int rank, const long long *dims)
{
    v->kind = OX_GRAPH;
    v->node = node;
    v->rank = rank;
    for (int d = 0; d < rank; d++) v->dims[d] = dims[d];
}

/* ---- attributes -------------------------------------------------------- */

const Onnx__AttributeProto *ox_attr(ox_ctx *c, const char *name)
{
    for (size_t a = 0; a < c->node->n_attribute; a++)
        if (c->node->attribute[a] && !strcmp(nz(c->node->attribute[a]->name), name)) return c->node->attribute[a];
    return NULL;
}

nfv_status ox_check_attrs(ox_ctx *c, const char *allowed)
{
    for (size_t a = 0; a < c->node->n_attribute; a++) {
        const char *n = c->node->attribute[a] ? nz(c->node->attribute[a]->name) : "";
        size_t len = strlen(n);
        const char *p = allowed;
        int ok = 0;
        while (!ok && len && (p = strstr(p, n)) != NULL) {
            ok = (p == allowed || p[-1] == ' ') && (p[len] == ' ' || p[len] == 0);
            p += len;
        }
        if (!ok) return ox_fail(c, NFV_ERR_UNSUPPORTED, "unsupported attribute \"%s\"; supported: %s", n, allowed);
    }
    return NFV_OK;
}

static nfv_status attr_type(ox_ctx *c, const Onnx__AttributeProto *a, Onnx__AttributeProto__AttributeType want,
                            const char *what)
{
    int t = a->has_type ? (int)a->type : -1;
    /* Old files leave the type out; then the filled field decides. */
    if (t == -1) {
        if ((want == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT && a->has_i) ||
            (want == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT && a->has_f) ||
            (want == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS && a->n_ints) ||
            (want == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING && a->has_s))
            return NFV_OK;
    } else if (t == (int)want) {
        return NFV_OK;
    }
    return ox_fail(c, NFV_ERR_FORMAT, "attribute \"%s\" is not %s", nz(a->name), what);
}

nfv_status ox_attr_int(ox_ctx *c, const char *name, long long def, long long *out)
{
    const Onnx__AttributeProto *a = ox_attr(c, name);
    *out = def;
    if (!a) return NFV_OK;
    NFV_TRY(attr_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, "an int"));
    *out = a->i;
    return NFV_OK;
}

nfv_status ox_attr_float(ox_ctx *c, const char *name, float def, float *out)
{
    const Onnx__AttributeProto *a = ox_attr(c, name);
    *out = def;
    if (!a) return NFV_OK;
    NFV_TRY(attr_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, "a float"));
    *out = a->f;
    return NFV_OK;
}

nfv_status ox_attr_ints(ox_ctx *c, const char *name, long long *out, int max, int *n)
{
    const Onnx__AttributeProto *a = ox_attr(c, name);
    *n = -1;
    if (!a) return NFV_OK;
    if (a->n_ints == 0 && a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) return *n = 0, NFV_OK;
    NFV_TRY(attr_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, "a list of ints"));
    if (a->n_ints > (size_t)max)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "attribute \"%s\" has %zu values (at most %d)", name, a->n_ints, max);
    for (size_t j = 0; j < a->n_ints; j++) out[j] = a->ints[j];
    *n = (int)a->n_ints;
    return NFV_OK;
}

nfv_status ox_attr_string(ox_ctx *c, const char *name, const char *def, char *buf, size_t cap)
{
    const Onnx__AttributeProto *a = ox_attr(c, name);
    snprintf(buf, cap, "%s", def ? def : "");
    if (!a) return NFV_OK;
    NFV_TRY(attr_type(c, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, "a string"));
    size_t n = a->s.len < cap - 1 ? a->s.len : cap - 1;
    memcpy(buf, a->s.data, n);
    buf[n] = 0;
    return NFV_OK;
}

/* ---- names ------------------------------------------------------------- */

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* torch's "/layer3/layer3.1/conv2/Conv" -> "layer3.1.conv2": the scope
 * components joined with '.', a component that extends the one before it
 * ("layer3.1" after "layer3"; SFCN's "/feature_extractor/conv_3/conv_3.3"
 * -> "feature_extractor.conv_3.3") replacing it; the last component (the
 * op) dropped.  These are the module's state_dict prefixes. */
static void scope_name(const char *n, char *out, size_t cap)
{
    out[0] = 0;
    const char *last = strrchr(n, '/');
    if (!last || last == n) return;
    size_t len = 0, prev = 0; /* out[prev..len) is the last component */
    for (const char *p = n + 1; p < last;) {
        const char *e = strchr(p, '/');
        size_t cl = (size_t)(e - p), pl = len - prev;
        if (cl) {
            if (len && cl > pl && !strncmp(p, out + prev, pl) && p[pl] == '.') {
                len = prev; /* extends the previous component: replace it */
            } else if (len && len + 1 < cap) {
                out[len++] = '.';
            }
            prev = len;
            for (size_t j = 0; j < cl && len + 1 < cap; j++) out[len++] = p[j];
            out[len] = 0;
        }
        p = e + 1;
    }
}

static int name_taken(const nfv_onnx_graph *g, const char *name)
{
    for (int i = 0; i < g->arch.count; i++)
        if (!strcmp(g->arch.layers[i].name, name)) return 1;
    return 0;
}

/* A readable unique name for a node mapped from the current ONNX node. */
static void node_name(ox_ctx *c, const char *suffix, char *out)
{
    char base[NFV_NODE_NAME_MAX * 2];
    if (!c->node) {
        snprintf(out, NFV_NODE_NAME_MAX, "output");
        for (int k = 2; name_taken(c->g, out) && k < 1000000; k++) snprintf(out, NFV_NODE_NAME_MAX, "output_%d", k);
        return;
    }
    const char *n = nz(c->node->name), *o = c->node->n_output ? nz(c->node->output[0]) : "";
    base[0] = 0;
    if (n[0] == '/') scope_name(n, base, sizeof base);
    else if (n[0]) snprintf(base, sizeof base, "%s", n);
    if (!base[0] && o[0] && o[0] != '/' && !strstr(o, "::") && !all_digits(o)) snprintf(base, sizeof base, "%s", o);
    if (!base[0]) {
        snprintf(base, sizeof base, "%s%d", nz(c->node->op_type), c->node_index);
        for (char *p = base; *p; p++) *p = (char)tolower((unsigned char)*p);
    }
    char want[NFV_NODE_NAME_MAX];
    int room = NFV_NODE_NAME_MAX - 1 - (int)strlen(suffix) - 8; /* room for "_<k>" */
    snprintf(want, sizeof want, "%.*s%s", room > 0 ? room : 0, base, suffix);
    snprintf(out, NFV_NODE_NAME_MAX, "%s", want);
    for (int k = 2; name_taken(c->g, out) && k < 1000000; k++)
        snprintf(out, NFV_NODE_NAME_MAX, "%.*s_%d", NFV_NODE_NAME_MAX - 8, want, k);
}

nfv_status ox_emit(ox_ctx *c, nfv_layer_kind kind, int n_inputs, const int *inputs, const char *suffix,
                   nfv_layer_spec **out, int *index)
{
    nfv_arch *a = &c->g->arch;
    if (n_inputs > NFV_NODE_MAX_INPUTS)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "%d inputs (at most %d)", n_inputs, NFV_NODE_MAX_INPUTS);
    if (a->count == c->cap_layers) {
        int cap = c->cap_layers ? 2 * c->cap_layers : 16;
        nfv_layer_spec *l = realloc(a->layers, (size_t)cap * sizeof *l);
        if (!l) return ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
        a->layers = l, c->cap_layers = cap;
    }
    nfv_layer_spec *l = &a->layers[a->count];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    for (int d = 0; d < 3; d++) l->kernel[d] = l->stride[d] = l->dilation[d] = 1;
    l->groups = 1;
    l->n_inputs = n_inputs;
    for (int j = 0; j < n_inputs; j++) l->inputs[j] = inputs[j];
    node_name(c, suffix ? suffix : "", l->name);
    *index = a->count++;
    *out = l;
    return NFV_OK;
}

nfv_status ox_add_tensor(ox_ctx *c, const char *base, int ndim, const long long *shape, float *data, char *name_out)
{
    nfv_onnx_graph *g = c->g;
    if (g->tensor_count == c->cap_tensors) {
        int cap = c->cap_tensors ? 2 * c->cap_tensors : 16;
        nfv_onnx_tensor *t = realloc(g->tensors, (size_t)cap * sizeof *t);
        if (!t) {
            free(data);
            return ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
        }
        g->tensors = t, c->cap_tensors = cap;
    }
    nfv_onnx_tensor *t = &g->tensors[g->tensor_count];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", base);
    for (int k = 2; nfv_onnx_find_tensor(g, t->name) && k < 1000000; k++)
        snprintf(t->name, sizeof t->name, "%.*s.%d", NFV_PARAM_NAME_MAX - 9, base, k);
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], t->numel *= (size_t)shape[d];
    t->data = data;
    g->tensor_count++;
    snprintf(name_out, NFV_PARAM_NAME_MAX, "%s", t->name);
    return NFV_OK;
}

const nfv_onnx_tensor *nfv_onnx_find_tensor(const nfv_onnx_graph *g, const char *name)
{
    for (int i = 0; g && name && i < g->tensor_count; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

void nfv_onnx_free(nfv_onnx_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->tensor_count; i++) free(g->tensors[i].data);
    free(g->tensors);
    nfv_arch_free(&g->arch);
    memset(g, 0, sizeof *g);
}

void nfv_onnx_tensor_free(nfv_onnx_tensor *t)
{
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof *t);
}
