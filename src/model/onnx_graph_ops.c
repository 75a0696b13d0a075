/* The ONNX ops that reshape, join or pad tensors, and the dense ones
 * (see onnx_read.c): Flatten, Reshape, Gemm, MatMul (+ Add of its bias),
 * Add, Concat, Pad, Identity, Dropout.  Constants meeting a graph tensor in
 * an Add or Concat become NFV_LAYER_CONSTANT nodes. */
#include "model/onnx_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- constants as nodes ------------------------------------------------ */

/* k broadcast (ONNX rules) to the graph shape (rank, dims): *lead samples
 * (1, or the batch when k's leading dimension is N), each of the
 * per-sample size, times scale. */
static nfv_status broadcast_const(ox_ctx *c, const ox_value *k, int rank, const long long *dims, float scale,
                                  float **data, long long *lead)
{
    const ox_const *kc = &k->c;
    *data = NULL;
    if (kc->dtype != OX_F32)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "constant \"%s\" has dtype %s; supported: FLOAT", k->name,
                       ox_dtype_name(kc->dtype));
    if (kc->ndim > rank || rank < 1)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "constant \"%s\" of rank %d does not broadcast to rank %d", k->name,
                       kc->ndim, rank);
    long long ks[OX_MAX_RANK] = {1}, st[OX_MAX_RANK], full[OX_MAX_RANK], per = 1;
    int off = rank - kc->ndim;
    for (int d = 0; d < rank; d++) ks[d] = d < off ? 1 : kc->shape[d - off];
    for (int d = 1; d < rank; d++) {
        if (ks[d] != 1 && ks[d] != dims[d])
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "constant \"%s\" (dimension %d: %lld) does not broadcast to the "
                                                   "tensor's %lld", k->name, d, ks[d], dims[d]);
        per *= dims[d];
    }
    if (ks[0] != 1 && (c->batch < 1 || ks[0] != c->batch))
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "constant \"%s\" has %lld in the batch dimension; supported: 1 or the "
                                               "model input's fixed batch size", k->name, ks[0]);
    *lead = ks[0];
    long long total = *lead * per;
    if (total > OX_MAX_NUMEL) return ox_fail(c, NFV_ERR_UNSUPPORTED, "constant \"%s\" broadcasts past 2^31 elements", k->name);
    for (int d = rank - 1, s = 1; d >= 0; d--) {
        st[d] = ks[d] == 1 ? 0 : s;
        s *= (int)ks[d];
        full[d] = d ? dims[d] : *lead;
    }
    float *out = malloc((size_t)(total ? total : 1) * sizeof *out);
    if (!out) return ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
    long long cnt[OX_MAX_RANK] = {0};
    for (long long j = 0; j < total; j++) {
        long long src = 0;
        for (int d = 0; d < rank; d++) src += cnt[d] * st[d];
        out[j] = kc->f[src] * scale;
        for (int d = rank - 1; d >= 0 && ++cnt[d] == full[d]; d--) cnt[d] = 0;
    }
    *data = out;
    return NFV_OK;
}

/* A CONSTANT node holding k broadcast to (rank, dims); *index its node. */
static nfv_status const_node(ox_ctx *c, const ox_value *k, int rank, const long long *dims, int *index)
{
    float *data;
    long long lead;
    NFV_TRY(broadcast_const(c, k, rank, dims, 1.0f, &data, &lead));
    nfv_layer_spec *l;
    nfv_status st = ox_emit(c, NFV_LAYER_CONSTANT, 0, NULL, ".const", &l, index);
    if (st != NFV_OK) {
        free(data);
        return st;
    }
    ox_per_sample(rank, dims, &l->reshape_ndim, l->reshape);
    l->features = (int)lead;
    long long shape[5] = {lead, l->reshape[0], l->reshape[1], l->reshape[2], l->reshape[3]};
    return ox_add_tensor(c, k->name, 1 + l->reshape_ndim, shape, data, l->tensor_names[0]);
}

/* ---- reshapes ---------------------------------------------------------- */

nfv_status ox_emit_reshape(ox_ctx *c, const ox_value *x, int rank, const long long *dims, ox_value *y)
{
    if (rank < 2 || rank > 5)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "a result of rank %d; supported: rank 2 (N, F) to 5 (N, C, D, H, W)", rank);
    long long per = 1;
    for (int d = 1; d < rank; d++) per *= dims[d];
    if (per != ox_per_sample_numel(x))
        return ox_fail(c, NFV_ERR_FORMAT, "the new shape has %lld elements per sample, the input %lld", per,
                       ox_per_sample_numel(x));
    nfv_layer_spec *l;
    int idx;
    NFV_TRY(ox_emit(c, NFV_LAYER_RESHAPE, 1, &x->node, NULL, &l, &idx));
    ox_per_sample(rank, dims, &l->reshape_ndim, l->reshape);
    if (y) ox_set_graph(y, idx, rank, dims);
    return NFV_OK;
}

nfv_status ox_op_flatten(ox_ctx *c)
{
    ox_value *x;
    NFV_TRY(ox_check_attrs(c, "axis"));
    NFV_TRY(ox_graph_in(c, 0, 2, 5, &x));
    long long axis;
    NFV_TRY(ox_attr_int(c, "axis", 1, &axis));
    if (axis < 0) axis += x->rank;
    if (axis != 1)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "axis %lld changes the batch dimension; supported: axis 1", axis);
    long long dims[2] = {x->dims[0], ox_per_sample_numel(x)};
    nfv_layer_spec *l;
    int idx;
    NFV_TRY(ox_emit(c, x->rank == 2 ? NFV_LAYER_IDENTITY : NFV_LAYER_FLATTEN, 1, &x->node, NULL, &l, &idx));
    ox_set_out(c, idx, 2, dims);
    return NFV_OK;
}

/* Reshape's target t[0..n) against the input dims (in_rank, in, in[0] = N or
 * 0 when symbolic; graph: the first dimension must stay the batch). */
static nfv_status reshape_target(ox_ctx *c, int graph, int in_rank, const long long *in, int allowzero,
                                 const long long *t, int n, long long *out)
{
    long long total = 1, known = 1;
    int infer = -1;
    for (int d = graph; d < in_rank; d++) total *= in[d];
    for (int d = 0; d < n; d++) {
        long long v = t[d];
        if (graph && d == 0) {
            if ((v == 0 && !allowzero) || v == OX_BATCH_DIM || (c->batch > 0 && v == c->batch)) out[0] = in[0];
            else if (v == -1) out[0] = -1;
            else
                return ox_fail(c, NFV_ERR_UNSUPPORTED, "reshaping to %lld in the first dimension changes the batch "
                                                       "dimension; supported: the batch first (0, -1 or N)", v);
            continue;
        }
        if (v == 0 && !allowzero) {
            if (d >= in_rank) return ox_fail(c, NFV_ERR_FORMAT, "shape value 0 at %d copies a dimension the input lacks", d);
            v = in[d];
        } else if (v == -1 && infer < 0 && !(graph && out[0] == -1)) {
            infer = d;
            out[d] = -1;
            continue;
        } else if (v < 0 || v > OX_MAX_NUMEL) {
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "shape value %lld at %d is not supported", v == OX_BATCH_DIM ? -2 : v, d);
        }
        out[d] = v;
        if (v && known > OX_MAX_NUMEL / v) return ox_fail(c, NFV_ERR_FORMAT, "the shape exceeds 2^31 elements");
        known *= v;
    }
    if (graph && out[0] == -1) {
        if (known != total) return ox_fail(c, NFV_ERR_UNSUPPORTED, "the shape does not keep the batch dimension first");
        out[0] = in[0];
    } else if (infer >= 0) {
        if (!known || total % known) return ox_fail(c, NFV_ERR_FORMAT, "-1 in the shape cannot be inferred");
        out[infer] = total / known;
    } else if (known != total) {
        return ox_fail(c, NFV_ERR_FORMAT, "the shape has %lld elements%s, the input %lld", known,
                       graph ? " per sample" : "", total);
    }
    return NFV_OK;
}

nfv_status ox_op_reshape(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "allowzero shape"));
    ox_value *x = ox_input(c, 0), *s;
    if (!x) return ox_fail(c, NFV_ERR_FORMAT, "input 0 is missing");
    long long t[OX_MAX_RANK], out[OX_MAX_RANK], allowzero;
    int n;
    if (c->opset < 5) {
        NFV_TRY(ox_attr_ints(c, "shape", t, OX_MAX_RANK, &n));
        if (n < 0) return ox_fail(c, NFV_ERR_FORMAT, "attribute \"shape\" is missing");
    } else {
        NFV_TRY(ox_const_in(c, 1, 1, OX_I64, &s));
        if (s->c.ndim != 1 || s->c.numel > OX_MAX_RANK)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "the shape \"%s\" is not a list of at most %d values", s->name,
                           OX_MAX_RANK);
        n = (int)s->c.numel;
        for (int d = 0; d < n; d++) t[d] = s->c.i[d];
    }
    NFV_TRY(ox_attr_int(c, "allowzero", 0, &allowzero));
    if (x->kind == OX_CONST) {
        NFV_TRY(reshape_target(c, 0, x->c.ndim, x->c.shape, allowzero != 0, t, n, out));
        return ox_fold_reshape(c, x, n, out, ox_output(c, 0));
    }
    NFV_TRY(reshape_target(c, 1, x->rank, x->dims, allowzero != 0, t, n, out));
    return ox_emit_reshape(c, x, n, out, ox_output(c, 0));
}

/* ---- dense ------------------------------------------------------------- */

nfv_status ox_op_gemm(ox_ctx *c)
{
    ox_value *x, *b, *cc;
    NFV_TRY(ox_check_attrs(c, "alpha beta broadcast transA transB"));
    NFV_TRY(ox_graph_in(c, 0, 2, 2, &x));
    NFV_TRY(ox_const_in(c, 1, 1, OX_F32, &b));
    NFV_TRY(ox_const_in(c, 2, 0, OX_F32, &cc));
    float alpha, beta;
    long long ta, tb;
    NFV_TRY(ox_attr_float(c, "alpha", 1.0f, &alpha));
    NFV_TRY(ox_attr_float(c, "beta", 1.0f, &beta));
    NFV_TRY(ox_attr_int(c, "transA", 0, &ta));
    NFV_TRY(ox_attr_int(c, "transB", 0, &tb));
    if (ta) return ox_fail(c, NFV_ERR_UNSUPPORTED, "transA=1 is not supported (A's first dimension must be the batch)");
    if (b->c.ndim != 2) return ox_fail(c, NFV_ERR_FORMAT, "B \"%s\" has rank %d, not 2", b->name, b->c.ndim);
    long long in = x->dims[1], outf = tb ? b->c.shape[0] : b->c.shape[1], kb = tb ? b->c.shape[1] : b->c.shape[0];
    if (kb != in || outf < 1)
        return ox_fail(c, NFV_ERR_FORMAT, "B \"%s\" of shape (%lld, %lld) does not fit %lld input features%s", b->name,
                       b->c.shape[0], b->c.shape[1], in, tb ? " (transB=1)" : "");
    float *w = malloc((size_t)(outf * in) * sizeof *w);
    if (!w) return ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
    for (long long o = 0; o < outf; o++)
        for (long long k = 0; k < in; k++) w[o * in + k] = alpha * b->c.f[tb ? o * in + k : k * outf + o];
    nfv_layer_spec *l;
    int idx, ci, add;
    nfv_status st = ox_emit(c, NFV_LAYER_LINEAR, 1, &x->node, NULL, &l, &idx);
    if (st != NFV_OK) free(w);
    NFV_TRY(st);
    l->features = (int)outf;
    long long wshape[2] = {outf, in}, dims[2] = {x->dims[0], outf};
    NFV_TRY(ox_add_tensor(c, b->name, 2, wshape, w, l->tensor_names[0]));
    ox_set_out(c, idx, 2, dims);
    if (!cc || beta == 0.0f) return NFV_OK;
    float *bias;
    long long lead;
    NFV_TRY(broadcast_const(c, cc, 2, dims, beta, &bias, &lead));
    if (lead == 1) {
        l->bias = 1;
        return ox_add_tensor(c, cc->name, 1, &outf, bias, l->tensor_names[1]);
    }
    free(bias); /* C per sample: Linear + Add of a constant of N samples */
    if (beta != 1.0f) return ox_fail(c, NFV_ERR_UNSUPPORTED, "beta other than 1 with a per-sample C is not supported");
    NFV_TRY(const_node(c, cc, 2, dims, &ci));
    int ins[2] = {idx, ci};
    NFV_TRY(ox_emit(c, NFV_LAYER_ADD, 2, ins, ".add", &l, &add));
    ox_set_out(c, add, 2, dims);
    return NFV_OK;
}

nfv_status ox_op_matmul(ox_ctx *c)
{
    ox_value *x, *b;
    NFV_TRY(ox_check_attrs(c, ""));
    NFV_TRY(ox_graph_in(c, 0, 2, 2, &x));
    NFV_TRY(ox_const_in(c, 1, 1, OX_F32, &b));
    if (b->c.ndim != 2 || b->c.shape[0] != x->dims[1] || b->c.shape[1] < 1)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "the right side \"%s\" must be a constant (%lld, out) matrix", b->name,
                       x->dims[1]);
    long long in = b->c.shape[0], outf = b->c.shape[1];
    float *w = malloc((size_t)(outf * in) * sizeof *w);
    if (!w) return ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
    for (long long o = 0; o < outf; o++)
        for (long long k = 0; k < in; k++) w[o * in + k] = b->c.f[k * outf + o];
    nfv_layer_spec *l;
    int idx;
    nfv_status st = ox_emit(c, NFV_LAYER_LINEAR, 1, &x->node, NULL, &l, &idx);
    if (st != NFV_OK) free(w);
    NFV_TRY(st);
    l->features = (int)outf;
    long long wshape[2] = {outf, in}, dims[2] = {x->dims[0], outf};
    NFV_TRY(ox_add_tensor(c, b->name, 2, wshape, w, l->tensor_names[0]));
    ox_set_out(c, idx, 2, dims);
    ox_value *y = ox_output(c, 0);
    if (y) y->matmul_linear = 1;
    return NFV_OK;
}

/* ---- joins ------------------------------------------------------------- */

static nfv_status add_consts(ox_ctx *c, const ox_value *a, const ox_value *b)
{
    const ox_value *big = a->c.numel >= b->c.numel ? a : b, *small = big == a ? b : a;
    if (a->c.dtype != b->c.dtype || (small->c.numel != 1 && small->c.numel != big->c.numel))
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "Add of constants of different dtypes or shapes is not supported");
    ox_value *y = ox_output(c, 0);
    if (!y) return NFV_OK;
    NFV_TRY(ox_const_alloc(c, &y->c, big->c.dtype, big->c.ndim, big->c.shape));
    y->kind = OX_CONST;
    for (size_t j = 0; j < big->c.numel; j++) {
        size_t js = small->c.numel == 1 ? 0 : j;
        if (big->c.dtype == OX_F32) y->c.f[j] = big->c.f[j] + small->c.f[js];
        else y->c.i[j] = big->c.i[j] + small->c.i[js];
    }
    return NFV_OK;
}

nfv_status ox_op_add(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "broadcast consumed_inputs"));
    ox_value *a = ox_input(c, 0), *b = ox_input(c, 1);
    if (!a || !b) return ox_fail(c, NFV_ERR_FORMAT, "an input is missing");
    if (a->kind == OX_CONST && b->kind == OX_CONST) return add_consts(c, a, b);
    if (a->kind == OX_CONST) {
        ox_value *t = a;
        a = b, b = t;
    }
    if (a->rank < 2 || a->rank > 5) return ox_graph_in(c, 0, 2, 5, &a);
    nfv_layer_spec *l;
    int ins[2] = {a->node, b->node}, idx;
    if (b->kind == OX_GRAPH) {
        if (b->rank != a->rank || memcmp(a->dims, b->dims, (size_t)a->rank * sizeof *a->dims))
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "Add of computed tensors of different shapes (broadcasting) is not "
                                                   "supported");
    } else if (a->matmul_linear && a->uses == 1 && c->g->arch.layers[a->node].kind == NFV_LAYER_LINEAR &&
               !c->g->arch.layers[a->node].bias && b->c.dtype == OX_F32 && b->c.numel == (size_t)a->dims[1]) {
        float *bias; /* MatMul + Add: the Linear's bias */
        long long lead, n = a->dims[1];
        NFV_TRY(broadcast_const(c, b, 2, a->dims, 1.0f, &bias, &lead));
        l = &c->g->arch.layers[a->node];
        l->bias = 1;
        NFV_TRY(ox_add_tensor(c, b->name, 1, &n, bias, l->tensor_names[1]));
        ox_set_out(c, a->node, 2, a->dims);
        return NFV_OK;
    } else {
        NFV_TRY(const_node(c, b, a->rank, a->dims, &ins[1]));
    }
    NFV_TRY(ox_emit(c, NFV_LAYER_ADD, 2, ins, NULL, &l, &idx));
    ox_set_out(c, idx, a->rank, a->dims);
    return NFV_OK;
}

nfv_status ox_op_concat(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "axis"));
    long long axis;
    NFV_TRY(ox_attr_int(c, "axis", c->opset < 4 ? 1 : LLONG_MIN, &axis));
    if (axis == LLONG_MIN) return ox_fail(c, NFV_ERR_FORMAT, "attribute \"axis\" is missing");
    const ox_value *x = NULL;
    int n = (int)c->node->n_input;
    for (int j = 0; j < n && !x; j++)
        if (ox_input(c, j) && ox_input(c, j)->kind == OX_GRAPH) x = ox_input(c, j);
    if (!x) return ox_fold_concat(c, (int)axis);
    if (axis < 0) axis += x->rank;
    if (axis != 1)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "axis %lld of rank-%d inputs; supported: the channel axis 1", axis, x->rank);
    if (n > NFV_NODE_MAX_INPUTS) return ox_fail(c, NFV_ERR_UNSUPPORTED, "%d inputs (at most %d)", n, NFV_NODE_MAX_INPUTS);
    int ins[NFV_NODE_MAX_INPUTS], idx;
    long long dims[OX_MAX_RANK], ch = 0;
    memcpy(dims, x->dims, sizeof dims);
    for (int j = 0; j < n; j++) {
        ox_value *v = ox_input(c, j);
        if (!v) return ox_fail(c, NFV_ERR_FORMAT, "input %d is missing", j);
        int rank = v->kind == OX_GRAPH ? v->rank : v->c.ndim;
        const long long *vd = v->kind == OX_GRAPH ? v->dims : v->c.shape;
        for (int d = 0; d < rank && rank == x->rank; d++)
            if (d != 1 && vd[d] != x->dims[d]) rank = -1;
        if (rank != x->rank)
            return ox_fail(c, NFV_ERR_FORMAT, "input \"%s\" does not match the others outside the channel axis", v->name);
        dims[1] = vd[1];
        ch += vd[1];
        if (v->kind == OX_GRAPH) ins[j] = v->node;
        else NFV_TRY(const_node(c, v, rank, dims, &ins[j]));
    }
    dims[1] = ch;
    nfv_layer_spec *l;
    NFV_TRY(ox_emit(c, NFV_LAYER_CONCAT, n, ins, NULL, &l, &idx));
    ox_set_out(c, idx, x->rank, dims);
    return NFV_OK;
}

/* ---- Pad, Identity, Dropout -------------------------------------------- */

static nfv_status pad_amounts(ox_ctx *c, int rank, long long *p, float *value)
{
    int n;
    *value = 0.0f;
    if (c->opset < 11) {
        NFV_TRY(ox_attr_ints(c, c->opset < 2 ? "paddings" : "pads", p, 2 * OX_MAX_RANK, &n));
        NFV_TRY(ox_attr_float(c, "value", 0.0f, value));
    } else {
        ox_value *pv, *vv;
        NFV_TRY(ox_const_in(c, 1, 1, OX_I64, &pv));
        NFV_TRY(ox_const_in(c, 2, 0, OX_F32, &vv));
        if (c->node->n_input > 3) return ox_fail(c, NFV_ERR_UNSUPPORTED, "the axes input is not supported");
        if (vv && vv->c.numel != 1) return ox_fail(c, NFV_ERR_FORMAT, "constant_value is not a scalar");
        if (vv) *value = vv->c.f[0];
        n = pv->c.numel <= 2 * OX_MAX_RANK ? (int)pv->c.numel : -2;
        for (int j = 0; j < n; j++) p[j] = pv->c.i[j];
    }
    if (n != 2 * rank) return ox_fail(c, NFV_ERR_FORMAT, "%d pads for an input of rank %d", n, rank);
    for (int j = 0; j < 2 * rank; j++)
        if (p[j] < 0 || p[j] > 1000000)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "pad %lld is not supported; supported: 0..1000000", p[j]);
    if (p[0] || p[1] || p[rank] || p[rank + 1])
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "padding the batch or channel axis is not supported; supported: the "
                                               "spatial axes");
    return NFV_OK;
}

nfv_status ox_op_pad(ox_ctx *c)
{
    ox_value *x;
    NFV_TRY(ox_check_attrs(c, "mode pads paddings value"));
    NFV_TRY(ox_graph_in(c, 0, 3, 5, &x));
    char mode[32];
    NFV_TRY(ox_attr_string(c, "mode", "constant", mode, sizeof mode));
    if (strcmp(mode, "constant"))
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "mode \"%s\" is not supported; supported: constant", mode);
    long long p[2 * OX_MAX_RANK], dims[5];
    float value;
    NFV_TRY(pad_amounts(c, x->rank, p, &value));
    int r = x->rank, sp = r - 2, idx;
    nfv_layer_spec *l;
    NFV_TRY(ox_emit(c, NFV_LAYER_PAD, 1, &x->node, NULL, &l, &idx));
    l->alpha = value;
    for (int d = 0; d < r; d++) dims[d] = x->dims[d] + (d >= 2 ? p[d] + p[d + r] : 0);
    for (int d = 0; d < sp; d++) l->padding[3 - sp + d] = (int)p[2 + d], l->pad_end[3 - sp + d] = (int)p[2 + d + r];
    ox_set_out(c, idx, r, dims);
    return NFV_OK;
}

static nfv_status pass_through(ox_ctx *c)
{
    ox_value *x = ox_input(c, 0);
    if (!x) return ox_fail(c, NFV_ERR_FORMAT, "input 0 is missing");
    if (x->kind == OX_CONST) return ox_fold_reshape(c, x, x->c.ndim, x->c.shape, ox_output(c, 0));
    NFV_TRY(ox_graph_in(c, 0, 2, 5, &x));
    nfv_layer_spec *l;
    int idx;
    NFV_TRY(ox_emit(c, NFV_LAYER_IDENTITY, 1, &x->node, NULL, &l, &idx));
    ox_set_out(c, idx, x->rank, x->dims);
    return NFV_OK;
}

nfv_status ox_op_identity(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, ""));
    return pass_through(c);
}

nfv_status ox_op_dropout(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "ratio seed is_test"));
    if (ox_output_used(c, 1)) return ox_fail(c, NFV_ERR_UNSUPPORTED, "the mask output is used; not supported");
    ox_value *tm = ox_input(c, 2);
    if (tm && (tm->kind != OX_CONST || (tm->c.numel && ox_const_get_i(&tm->c, 0))))
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "training_mode is not a constant false; export the model in eval mode");
    return pass_through(c);
}
