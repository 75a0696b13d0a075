/* ONNX models into neurofv's graph form; see include/neurofv/onnx.h.
 *
 * The file is parsed by protobuf-c with the code protoc-c generates from
 * onnx.proto at build time (Makefile), so malformed bytes end in one "not a
 * valid ONNX file" error.  Then every size is checked before it is used
 * (dims, element counts against the data, 2^31 elements per tensor), the
 * nodes are put in topological order (cycles and missing inputs are errors)
 * and mapped one by one: the network ops (onnx_ops.c) to nfv_layer_spec
 * nodes, shape computations on constants to host values (onnx_fold.c).
 * This file: the file, the graph's inputs and outputs, the order, the walk;
 * the pieces they share are in onnx_util.c. */
#include "model/onnx_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The largest file read: 2^31 float weights and then some. */
#define OX_MAX_FILE_BYTES ((size_t)9 << 30)

static const char *nz(const char *s) { return s ? s : ""; }

int nfv_is_onnx_path(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 5 && !strcasecmp(path + n - 5, ".onnx");
}

static nfv_status read_whole(const char *path, unsigned char **bytes, size_t *size)
{
    *bytes = NULL, *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return nfv_fail(NFV_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (b && n == cap) {
            unsigned char *g = cap < OX_MAX_FILE_BYTES ? realloc(b, cap * 2) : NULL;
            if (!g) free(b);
            b = g, cap *= 2;
        }
        if (!b) {
            fclose(fp);
            return nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory reading the file (or it exceeds %zu GiB)", path,
                            OX_MAX_FILE_BYTES >> 30);
        }
        size_t got = fread(b + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(b);
        return nfv_fail(NFV_ERR_IO, "%s: read error", path);
    }
    *bytes = b, *size = n;
    return NFV_OK;
}

/* ---- the graph's inputs ------------------------------------------------ */

/* The model input: float, rank 2-5, every dimension but N known. */
static nfv_status model_input(ox_ctx *c, const Onnx__ValueInfoProto *vi, ox_value *v)
{
    const char *name = nz(vi->name);
    const Onnx__TypeProto *t = vi->type;
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "model input \"%s\" is not a tensor", name);
    const Onnx__TypeProto__Tensor *tt = t->tensor_type;
    int et = tt->has_elem_type ? tt->elem_type : 0;
    if (et != OX_F32)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "model input \"%s\" has dtype %s; supported: FLOAT (float32)", name,
                       ox_dtype_name(et));
    if (!tt->shape)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "model input \"%s\" has no shape; neurofv needs its channel and "
                                               "spatial sizes in the file", name);
    int rank = (int)tt->shape->n_dim;
    if (rank < 2 || rank > 5)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "model input \"%s\" has rank %d; supported: 2 (N, F) to 5 (N, C, D, H, W)",
                       name, rank);
    long long dims[5], numel = 1;
    for (int d = 0; d < rank; d++) {
        const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[d];
        int known = dm && dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && dm->dim_value > 0;
        dims[d] = known ? dm->dim_value : 0;
        if (d == 0) continue;
        if (!known) {
            const char *sym = dm && dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? nz(dm->dim_param) : "";
            return ox_fail(c, NFV_ERR_UNSUPPORTED,
                           "model input \"%s\": dimension %d is not known%s%s%s; neurofv needs the channel and spatial "
                           "sizes fixed in the file (only the batch dimension may be symbolic)",
                           name, d, sym[0] ? " (symbolic \"" : "", sym, sym[0] ? "\")" : "");
        }
        if (dims[d] > OX_MAX_NUMEL || (numel *= dims[d]) > OX_MAX_NUMEL)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "model input \"%s\" exceeds 2^31 elements per sample", name);
    }
    nfv_onnx_graph *g = c->g;
    c->batch = g->batch = dims[0];
    g->onnx_input_rank = rank;
    ox_per_sample(rank, dims, &g->input_ndim, g->input_shape);
    snprintf(g->input_name, sizeof g->input_name, "%s", name);
    ox_set_graph(v, NFV_INPUT_NODE, rank, dims);
    return NFV_OK;
}

/* Which feed tensor gives graph input `name` (the k-th input after the model
 * input): the one of that name, else the k-th unnamed one. */
static const nfv_onnx_tensor *feed_for(const nfv_onnx_feed *feed, const char *name, int k)
{
    if (!feed) return NULL;
    for (int i = 0; i < feed->count; i++)
        if (feed->tensors[i].name[0] && !strcmp(feed->tensors[i].name, name)) return &feed->tensors[i];
    int unnamed = 0;
    for (int i = 0; i < feed->count; i++)
        if (!feed->tensors[i].name[0] && unnamed++ == k) return &feed->tensors[i];
    return NULL;
}

static nfv_status fed_input(ox_ctx *c, const Onnx__ValueInfoProto *vi, const nfv_onnx_tensor *t, ox_value *v)
{
    const Onnx__TypeProto *tp = vi->type;
    int et = tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type &&
                     tp->tensor_type->has_elem_type ? tp->tensor_type->elem_type : OX_F32;
    if (et != OX_F32 && et != OX_I64)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "graph input \"%s\" has dtype %s; supported: FLOAT, INT64", nz(vi->name),
                       ox_dtype_name(et));
    if (t->ndim < 0 || t->ndim > OX_MAX_RANK || (t->numel && !t->data))
        return ox_fail(c, NFV_ERR_INVALID_ARG, "the value fed for graph input \"%s\" is malformed", nz(vi->name));
    NFV_TRY(ox_const_alloc(c, &v->c, et, t->ndim, t->shape));
    if (v->c.numel != t->numel) {
        ox_const_free(&v->c);
        return ox_fail(c, NFV_ERR_INVALID_ARG, "the value fed for graph input \"%s\" has %zu elements for its shape",
                       nz(vi->name), t->numel);
    }
    for (size_t j = 0; j < t->numel; j++) {
        if (et == OX_F32) v->c.f[j] = t->data[j];
        else v->c.i[j] = (long long)t->data[j];
    }
    v->kind = OX_CONST;
    return NFV_OK;
}

/* Initializers, then graph inputs: the first that is not an initializer is
 * the model input, the others must be fed. */
static nfv_status graph_inputs(ox_ctx *c, const nfv_onnx_feed *feed)
{
    Onnx__GraphProto *gr = c->graph;
    if (gr->n_sparse_initializer)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "sparse initializers are not supported");
    for (size_t i = 0; i < gr->n_initializer; i++) {
        const Onnx__TensorProto *t = gr->initializer[i];
        const char *name = t ? nz(t->name) : "";
        if (!name[0]) return ox_fail(c, NFV_ERR_FORMAT, "initializer %zu has no name", i);
        ox_value *v = ox_new_value(c, name);
        if (!v) return ox_fail(c, NFV_ERR_FORMAT, "initializer \"%s\" appears twice", name);
        NFV_TRY(ox_tensor_to_const(c, t, name, &v->c));
        v->kind = OX_CONST;
    }
    int have_input = 0, extra = 0;
    for (size_t i = 0; i < gr->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gr->input[i];
        const char *name = vi ? nz(vi->name) : "";
        if (!name[0]) return ox_fail(c, NFV_ERR_FORMAT, "graph input %zu has no name", i);
        ox_value *v = ox_get(c, name);
        if (v && v->kind == OX_CONST && v->producer < 0) continue; /* an initializer listed as input (IR < 4) */
        if (v || !(v = ox_new_value(c, name)))
            return ox_fail(c, NFV_ERR_FORMAT, "graph input \"%s\" appears twice", name);
        if (!have_input) {
            NFV_TRY(model_input(c, vi, v));
            have_input = 1;
            continue;
        }
        const nfv_onnx_tensor *t = feed_for(feed, name, extra++);
        if (!t)
            return ox_fail(c, NFV_ERR_UNSUPPORTED,
                           "graph input \"%s\" has no value: a neurofv model has one input (\"%s\"); the others must "
                           "be initializers or fed as constants",
                           name, c->g->input_name);
        NFV_TRY(fed_input(c, vi, t, v));
    }
    if (!have_input) return ox_fail(c, NFV_ERR_UNSUPPORTED, "the graph has no input that is not an initializer");
    return NFV_OK;
}

/* Values for every node output (each written once), and their use counts. */
static nfv_status node_values(ox_ctx *c)
{
    Onnx__GraphProto *gr = c->graph;
    for (size_t j = 0; j < gr->n_node; j++) {
        const Onnx__NodeProto *n = gr->node[j];
        if (!n) return ox_fail(c, NFV_ERR_FORMAT, "node %zu is empty", j);
        c->node = n;
        for (size_t o = 0; o < n->n_output; o++) {
            const char *name = nz(n->output[o]);
            if (!name[0]) continue;
            ox_value *v = ox_new_value(c, name);
            if (!v) return ox_fail(c, NFV_ERR_FORMAT, "output \"%s\" is already written by another node or is an "
                                                      "initializer or graph input", name);
            v->producer = (int)j;
        }
    }
    for (size_t j = 0; j < gr->n_node; j++) {
        const Onnx__NodeProto *n = gr->node[j];
        c->node = n;
        for (size_t i = 0; i < n->n_input; i++) {
            const char *name = nz(n->input[i]);
            if (!name[0]) continue;
            ox_value *v = ox_get(c, name);
            if (!v) return ox_fail(c, NFV_ERR_FORMAT, "input \"%s\" is not produced by any node and is not an "
                                                      "initializer or graph input", name);
            v->uses++;
        }
    }
    c->node = NULL;
    for (size_t o = 0; o < gr->n_output; o++) {
        ox_value *v = gr->output[o] ? ox_get(c, nz(gr->output[o]->name)) : NULL;
        if (!v) return ox_fail(c, NFV_ERR_FORMAT, "graph output \"%s\" is not produced by any node or input",
                               gr->output[o] ? nz(gr->output[o]->name) : "");
        v->uses++;
    }
    return NFV_OK;
}

/* Kahn's algorithm over the edges producer -> consumer, ready nodes in file
 * order; what remains is on a cycle. */
static nfv_status topo_order(ox_ctx *c, int *order)
{
    Onnx__GraphProto *gr = c->graph;
    size_t n = gr->n_node, edges = 0;
    for (size_t j = 0; j < n; j++) edges += gr->node[j]->n_input;
    int *indeg = calloc(n + 1, sizeof *indeg), *start = calloc(n + 2, sizeof *start);
    int *adj = malloc((edges + 1) * sizeof *adj), *queue = malloc((n + 1) * sizeof *queue);
    nfv_status st = NFV_OK;
    if (!indeg || !start || !adj || !queue) {
        st = ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t j = 0; j < n; j++) {
            const Onnx__NodeProto *nd = gr->node[j];
            for (size_t i = 0; i < nd->n_input; i++) {
                ox_value *v = ox_get(c, nz(nd->input[i]));
                if (!v || v->producer < 0) continue;
                if (pass == 0) start[v->producer + 1]++, indeg[j]++;
                else adj[start[v->producer]++] = (int)j;
            }
        }
        if (pass == 0)
            for (size_t j = 0; j < n; j++) start[j + 1] += start[j];
        else
            for (size_t j = n; j > 0; j--) start[j] = start[j - 1];
        if (pass == 1) start[0] = 0;
    }
    size_t head = 0, tail = 0;
    for (size_t j = 0; j < n; j++)
        if (!indeg[j]) queue[tail++] = (int)j;
    while (head < tail) {
        int j = queue[head++];
        order[head - 1] = j;
        for (int e = start[j]; e < start[j + 1]; e++)
            if (--indeg[adj[e]] == 0) queue[tail++] = adj[e];
    }
    if (tail < n) {
        for (size_t j = 0; j < n; j++)
            if (indeg[j]) {
                c->node = gr->node[j];
                break;
            }
        st = ox_fail(c, NFV_ERR_FORMAT, "the graph has a cycle through this node (%zu of %zu nodes are on or after a "
                                        "cycle)", n - tail, n);
    }
done:
    free(indeg), free(start), free(adj), free(queue);
    return st;
}

/* Map one node (c->node). */
static nfv_status map_node(ox_ctx *c)
{
    const Onnx__NodeProto *n = c->node;
    const char *dom = nz(n->domain);
    if (dom[0] && strcmp(dom, "ai.onnx"))
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "op of domain \"%s\"; only the default ONNX domain is supported", dom);
    ox_op_fn fn = ox_find_op(nz(n->op_type));
    if (!fn) return ox_fail(c, NFV_ERR_UNSUPPORTED, "unsupported op; supported: %s", ox_supported_ops());
    for (size_t i = 0; i < n->n_input; i++) {
        ox_value *v = ox_input(c, (int)i);
        if (v && v->kind == OX_NONE)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "input \"%s\" has no value (an unused output of an earlier node)",
                           v->name);
    }
    NFV_TRY(fn(c));
    for (size_t o = 0; o < n->n_output; o++) {
        ox_value *v = ox_output(c, (int)o);
        if (v && v->uses && v->kind == OX_NONE)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "output %zu (\"%s\") is used but not supported", o, v->name);
    }
    return NFV_OK;
}

/* The graph output must be the last node's output. */
static nfv_status graph_output(ox_ctx *c)
{
    Onnx__GraphProto *gr = c->graph;
    c->node = NULL;
    if (gr->n_output != 1)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "the graph has %zu outputs; a neurofv model has exactly one", gr->n_output);
    ox_value *v = ox_get(c, nz(gr->output[0]->name));
    snprintf(c->g->output_name, sizeof c->g->output_name, "%s", v->name);
    if (v->kind != OX_GRAPH)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "the graph output \"%s\" is a constant, not computed from the input",
                       v->name);
    if (v->node == NFV_INPUT_NODE || v->node != c->g->arch.count - 1) {
        nfv_layer_spec *l;
        int idx;
        NFV_TRY(ox_emit(c, NFV_LAYER_IDENTITY, 1, &v->node, NULL, &l, &idx));
    }
    return NFV_OK;
}

static nfv_status read_graph(ox_ctx *c, Onnx__ModelProto *m, const nfv_onnx_feed *feed)
{
    nfv_onnx_graph *g = c->g;
    snprintf(g->producer, sizeof g->producer, "%s%s%s", nz(m->producer_name), m->producer_version && m->producer_version[0] ? " " : "",
             nz(m->producer_version));
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (o && (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) && o->has_version) c->opset = o->version;
    }
    g->opset = c->opset;
    if (!m->graph) return ox_fail(c, NFV_ERR_FORMAT, "not a valid ONNX model: no graph");
    if (c->opset == 0)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "the model imports no opset of the default ONNX domain (only custom "
                                               "domains); supported: default-domain opsets 1-17");
    if (c->opset < 1 || c->opset > 17)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "opset %lld of the default domain; supported: 1-17 (torch.onnx.export "
                                               "writes 9-17)", c->opset);
    Onnx__GraphProto *gr = c->graph = m->graph;
    size_t cap = gr->n_initializer + gr->n_input + 8;
    for (size_t j = 0; j < gr->n_node; j++) cap += gr->node[j] ? gr->node[j]->n_output : 0;
    if (cap > (size_t)1 << 28) return ox_fail(c, NFV_ERR_UNSUPPORTED, "the graph has too many values (%zu)", cap);
    for (c->nslots = 16; c->nslots < 2 * cap;) c->nslots *= 2;
    c->vals = calloc(cap, sizeof *c->vals);
    c->slots = calloc(c->nslots, sizeof *c->slots);
    int *order = malloc((gr->n_node + 1) * sizeof *order);
    nfv_status st = NFV_OK;
    c->capvals = (int)cap;
    if (!c->vals || !c->slots || !order) st = ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
    if (st == NFV_OK) st = graph_inputs(c, feed);
    if (st == NFV_OK) st = node_values(c);
    if (st == NFV_OK) st = topo_order(c, order);
    for (size_t k = 0; st == NFV_OK && k < gr->n_node; k++) {
        c->node = gr->node[order[k]];
        c->node_index = order[k];
        st = map_node(c);
    }
    if (st == NFV_OK) st = graph_output(c);
    free(order);
    return st;
}

nfv_status nfv_onnx_read(const char *path, const nfv_onnx_feed *feed, nfv_onnx_graph *out)
{
    memset(out, 0, sizeof *out);
    unsigned char *bytes;
    size_t size;
    NFV_TRY(read_whole(path, &bytes, &size));
    Onnx__ModelProto *m = size ? onnx__model_proto__unpack(NULL, size, bytes) : NULL;
    free(bytes);
    if (!m)
        return nfv_fail(NFV_ERR_FORMAT, "%s: not a valid ONNX file (%s)", path,
                        size ? "the protobuf does not parse: truncated or corrupt" : "empty");
    ox_ctx c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.g = out;
    nfv_status st = read_graph(&c, m, feed);
    for (int i = 0; i < c.nvals; i++) ox_const_free(&c.vals[i].c);
    free(c.vals);
    free(c.slots);
    onnx__model_proto__free_unpacked(m, NULL);
    if (st != NFV_OK) nfv_onnx_free(out);
    return st;
}

nfv_status nfv_onnx_read_tensor(const char *path, nfv_onnx_tensor *out)
{
    memset(out, 0, sizeof *out);
    unsigned char *bytes;
    size_t size;
    NFV_TRY(read_whole(path, &bytes, &size));
    Onnx__TensorProto *t = size ? onnx__tensor_proto__unpack(NULL, size, bytes) : NULL;
    free(bytes);
    if (!t)
        return nfv_fail(NFV_ERR_FORMAT, "%s: not a valid ONNX TensorProto file (%s)", path,
                        size ? "the protobuf does not parse: truncated or corrupt" : "empty");
    ox_ctx c;
    memset(&c, 0, sizeof c);
    c.path = path;
    ox_const k;
    nfv_status st = ox_tensor_to_const(&c, t, nz(t->name), &k);
    if (st == NFV_OK) {
        snprintf(out->name, sizeof out->name, "%s", nz(t->name));
        out->ndim = k.ndim;
        for (int d = 0; d < k.ndim; d++) out->shape[d] = k.shape[d];
        out->numel = k.numel;
        out->data = malloc((k.numel ? k.numel : 1) * sizeof(float));
        if (!out->data) st = nfv_fail(NFV_ERR_NO_MEMORY, "%s: out of memory", path);
        for (size_t j = 0; out->data && j < k.numel; j++) out->data[j] = (float)ox_const_get_f(&k, j);
        ox_const_free(&k);
    }
    onnx__tensor_proto__free_unpacked(t, NULL);
    return st;
}
