/* ONNX test helpers: the conformance data (test_onnx.h) and a small
 * builder of ONNX models with protobuf-c (onnx_build.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "neurofv/onnx.h"
#include "onnx_build.h"
#include "test.h"
#include "test_onnx.h"

/* ---- shared with test_onnx_conformance.c ------------------------------- */

int onnx_testdata_present(const char *what)
{
    struct stat s;
    if (stat(ONNX_TESTDATA "/node", &s) == 0) return 1;
    printf("skipped %s: %s not found (Debian package libonnx-testdata)\n", what, ONNX_TESTDATA);
    return 0;
}

void onnx_feed_free(nfv_onnx_feed *feed)
{
    nfv_onnx_tensor *t = (nfv_onnx_tensor *)feed->tensors;
    for (int i = 0; i < feed->count; i++) nfv_onnx_tensor_free(&t[i]);
    free(t);
    memset(feed, 0, sizeof *feed);
}

nfv_status onnx_load_feed(const char *dir, nfv_onnx_feed *feed)
{
    memset(feed, 0, sizeof *feed);
    nfv_onnx_tensor *t = calloc(16, sizeof *t);
    if (!t) return NFV_ERR_NO_MEMORY;
    feed->tensors = t;
    for (int k = 1; k <= 16; k++) {
        char p[1024];
        struct stat s;
        snprintf(p, sizeof p, "%s/test_data_set_0/input_%d.pb", dir, k);
        if (stat(p, &s) != 0) break;
        if (k > 15) return nfv_fail(NFV_ERR_UNSUPPORTED, "%s: more than 15 extra inputs", dir);
        nfv_status st = nfv_onnx_read_tensor(p, &t[k - 1]);
        if (st != NFV_OK) return st;
        feed->count = k;
    }
    return NFV_OK;
}

nfv_status onnx_read_dir(const char *dir, nfv_onnx_graph *g)
{
    nfv_onnx_feed feed;
    char p[1024];
    nfv_status st = onnx_load_feed(dir, &feed);
    snprintf(p, sizeof p, "%s/model.onnx", dir);
    if (st == NFV_OK) st = nfv_onnx_read(p, &feed, g);
    else memset(g, 0, sizeof *g);
    onnx_feed_free(&feed);
    return st;
}

/* ---- building models with protobuf-c ----------------------------------- */


void *mb_alloc(mb *b, size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (b->nalloc < 4096) b->allocs[b->nalloc++] = p;
    return p;
}

char *mb_str(mb *b, const char *s)
{
    char *d = mb_alloc(b, strlen(s) + 1);
    strcpy(d, s);
    return d;
}

void mb_init(mb *b, long long opset)
{
    memset(b, 0, sizeof *b);
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    Onnx__OperatorSetIdProto o = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    b->m = m, b->g = g, b->opset = o;
    b->opset.has_version = 1, b->opset.version = opset;
    b->opsets[0] = &b->opset;
    b->m.n_opset_import = 1, b->m.opset_import = b->opsets;
    b->m.has_ir_version = 1, b->m.ir_version = 8;
    b->m.producer_name = "pytorch", b->m.producer_version = "1.13.1";
    b->m.graph = &b->g;
    b->g.name = "torch_jit";
    b->g.node = b->nodes, b->g.initializer = b->inits, b->g.input = b->inputs, b->g.output = b->outputs;
}

void mb_free(mb *b)
{
    for (int i = 0; i < b->nalloc; i++) free(b->allocs[i]);
    b->nalloc = 0;
}

/* Split "a,b,c" into a new array of strings. */
char **mb_names(mb *b, const char *list, size_t *n)
{
    char **v = mb_alloc(b, 16 * sizeof *v);
    *n = 0;
    if (!list) return v;
    char *s = mb_str(b, list);
    for (char *tok = s;; tok = NULL) {
        char *t = strsep(&s, ",");
        (void)tok;
        if (!t) break;
        v[(*n)++] = t;
    }
    return v;
}

Onnx__NodeProto *mb_node(mb *b, const char *op, const char *name, const char *ins, const char *outs)
{
    Onnx__NodeProto *n = mb_alloc(b, sizeof *n), init = ONNX__NODE_PROTO__INIT;
    *n = init;
    n->op_type = mb_str(b, op);
    n->name = mb_str(b, name);
    n->input = mb_names(b, ins, &n->n_input);
    n->output = mb_names(b, outs, &n->n_output);
    n->attribute = mb_alloc(b, 16 * sizeof *n->attribute);
    b->nodes[b->g.n_node++] = n;
    return n;
}

Onnx__AttributeProto *mb_attr(mb *b, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType t)
{
    Onnx__AttributeProto *a = mb_alloc(b, sizeof *a), init = ONNX__ATTRIBUTE_PROTO__INIT;
    *a = init;
    a->name = mb_str(b, name);
    a->has_type = 1, a->type = t;
    n->attribute[n->n_attribute++] = a;
    return a;
}

void mb_ints(mb *b, Onnx__NodeProto *n, const char *name, int cnt, const long long *v)
{
    Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->ints = mb_alloc(b, (size_t)cnt * sizeof *a->ints);
    for (int i = 0; i < cnt; i++) a->ints[i] = v[i];
    a->n_ints = (size_t)cnt;
}

void mb_int(mb *b, Onnx__NodeProto *n, const char *name, long long v)
{
    Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1, a->i = v;
}

void mb_string(mb *b, Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a = mb_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1, a->s.data = (uint8_t *)mb_str(b, v), a->s.len = strlen(v);
}

/* An initializer of dtype (FLOAT: values i * 0.01; INT64: vals) and shape. */
Onnx__TensorProto *mb_tensor(mb *b, const char *name, int dtype, int ndim, const long long *dims, const long long *vals)
{
    Onnx__TensorProto *t = mb_alloc(b, sizeof *t), init = ONNX__TENSOR_PROTO__INIT;
    *t = init;
    t->name = mb_str(b, name);
    t->has_data_type = 1, t->data_type = dtype;
    t->dims = mb_alloc(b, (size_t)ndim * sizeof *t->dims);
    long long n = 1;
    for (int d = 0; d < ndim; d++) t->dims[d] = dims[d], n *= dims[d];
    t->n_dims = (size_t)ndim;
    size_t es = dtype == 1 ? 4 : 8;
    if (n > 0 && n < 1000000) {
        t->has_raw_data = 1;
        t->raw_data.len = (size_t)n * es;
        t->raw_data.data = mb_alloc(b, t->raw_data.len);
        for (long long i = 0; i < n; i++) {
            if (dtype == 1) ((float *)t->raw_data.data)[i] = 0.01f * (float)(i % 100);
            else if (dtype == 7) ((int64_t *)t->raw_data.data)[i] = vals ? vals[i] : i;
            else ((double *)t->raw_data.data)[i] = 0.5;
        }
    }
    b->inits[b->g.n_initializer++] = t;
    return t;
}

/* A float tensor value info; dims 0 = symbolic "N". */
Onnx__ValueInfoProto *mb_value(mb *b, const char *name, int ndim, const long long *dims)
{
    Onnx__ValueInfoProto *v = mb_alloc(b, sizeof *v), vi = ONNX__VALUE_INFO_PROTO__INIT;
    Onnx__TypeProto *tp = mb_alloc(b, sizeof *tp), tpi = ONNX__TYPE_PROTO__INIT;
    Onnx__TypeProto__Tensor *tt = mb_alloc(b, sizeof *tt), tti = ONNX__TYPE_PROTO__TENSOR__INIT;
    Onnx__TensorShapeProto *sh = mb_alloc(b, sizeof *sh), shi = ONNX__TENSOR_SHAPE_PROTO__INIT;
    *v = vi, *tp = tpi, *tt = tti, *sh = shi;
    v->name = mb_str(b, name);
    v->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
    tt->has_elem_type = 1, tt->elem_type = 1, tt->shape = sh;
    sh->dim = mb_alloc(b, (size_t)(ndim + 1) * sizeof *sh->dim);
    for (int d = 0; d < ndim; d++) {
        Onnx__TensorShapeProto__Dimension *dm = mb_alloc(b, sizeof *dm), di = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        *dm = di;
        if (dims[d] > 0) dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, dm->dim_value = dims[d];
        else dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM, dm->dim_param = mb_str(b, "N");
        sh->dim[d] = dm;
    }
    sh->n_dim = (size_t)ndim;
    return v;
}

void mb_input(mb *b, const char *name, int ndim, const long long *dims)
{
    b->inputs[b->g.n_input++] = mb_value(b, name, ndim, dims);
}

void mb_output(mb *b, const char *name) { b->outputs[b->g.n_output++] = mb_value(b, name, 0, NULL); }

/* Packs the model into test_tmpdir()/name; returns the path (static). */
const char *mb_write(mb *b, const char *name)
{
    static char path[4][600];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 600, "%s/%s", test_tmpdir(), name);
    size_t n = onnx__model_proto__get_packed_size(&b->m);
    uint8_t *buf = malloc(n + 1);
    onnx__model_proto__pack(&b->m, buf);
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(buf, 1, n, f) == n, "write %s", p);
    if (f) fclose(f);
    free(buf);
    return p;
}

