/* The ONNX ops that become neurofv nodes (see onnx_read.c): each handler
 * checks the node's attributes and inputs, appends its node(s) and parameter
 * tensors, and records the ONNX shape of its output for the ops after it.
 * The table at the end maps op names to handlers (and names what is
 * supported in errors). */
#include "model/onnx_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZE 1000000 /* kernel, stride, pad, dilation bounds */

/* ---- inputs and outputs ------------------------------------------------ */

nfv_status ox_graph_in(ox_ctx *c, int k, int min_rank, int max_rank, ox_value **out)
{
    ox_value *v = ox_input(c, k);
    *out = v;
    if (!v) return ox_fail(c, NFV_ERR_FORMAT, "input %d is missing", k);
    if (v->kind != OX_GRAPH)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "input %d (\"%s\") is a constant; supported: a tensor computed from "
                                               "the model input", k, v->name);
    if (v->rank < min_rank || v->rank > max_rank)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "input \"%s\" has rank %d; supported: rank %d-%d", v->name, v->rank,
                       min_rank, max_rank);
    return NFV_OK;
}

nfv_status ox_const_in(ox_ctx *c, int k, int required, int dtype, ox_value **out)
{
    ox_value *v = ox_input(c, k);
    *out = v;
    if (!v) return required ? ox_fail(c, NFV_ERR_FORMAT, "input %d is missing", k) : NFV_OK;
    if (v->kind != OX_CONST)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "input %d (\"%s\") must be a constant (an initializer); computed "
                                               "values there are not supported", k, v->name);
    if (v->c.dtype != dtype)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "input \"%s\" has dtype %s; supported: %s", v->name,
                       ox_dtype_name(v->c.dtype), ox_dtype_name(dtype));
    return NFV_OK;
}

void ox_set_out(ox_ctx *c, int node, int rank, const long long *dims)
{
    ox_value *y = ox_output(c, 0);
    if (y) ox_set_graph(y, node, rank, dims);
}

/* A copy of constant v's floats times scale as a tensor named after v. */
nfv_status ox_param(ox_ctx *c, const ox_value *v, int ndim, const long long *shape, float scale, char *name_out)
{
    float *d = malloc((v->c.numel ? v->c.numel : 1) * sizeof *d);
    if (!d) return ox_fail(c, NFV_ERR_NO_MEMORY, "out of memory");
    for (size_t j = 0; j < v->c.numel; j++) d[j] = v->c.f[j] * scale;
    return ox_add_tensor(c, v->name, ndim, shape, d, name_out);
}

/* ---- attributes of convolutions and pools ------------------------------ */

/* Attribute name of sp values (absent: def) into v[3], unit axes (def) in front. */
static nfv_status spatial_attr(ox_ctx *c, const char *name, int sp, int def, int lo, int v[3])
{
    long long a[8];
    int n;
    NFV_TRY(ox_attr_ints(c, name, a, 8, &n));
    if (n >= 0 && n != sp)
        return ox_fail(c, NFV_ERR_FORMAT, "attribute \"%s\" has %d values for %d spatial axes", name, n, sp);
    for (int d = 0; d < 3; d++) {
        long long x = d < 3 - sp || n < 0 ? def : a[d - (3 - sp)];
        if (x < lo || x > MAX_SIZE)
            return ox_fail(c, NFV_ERR_FORMAT, "attribute \"%s\" has the value %lld (outside %d..%d)", name, x, lo, MAX_SIZE);
        v[d] = (int)x;
    }
    return NFV_OK;
}

/* pads (begin..., end...) into b[3], e[3]; auto_pad NOTSET or VALID. */
static nfv_status pads_attr(ox_ctx *c, int sp, int b[3], int e[3])
{
    char ap[32];
    NFV_TRY(ox_attr_string(c, "auto_pad", "NOTSET", ap, sizeof ap));
    if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID") && ap[0])
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "auto_pad %s is not supported; supported: NOTSET (explicit pads), VALID",
                       ap);
    long long a[16];
    int n;
    NFV_TRY(ox_attr_ints(c, "pads", a, 16, &n));
    if (n >= 0 && n != 2 * sp)
        return ox_fail(c, NFV_ERR_FORMAT, "attribute \"pads\" has %d values for %d spatial axes", n, sp);
    for (int d = 0; d < 3; d++) {
        int k = d - (3 - sp);
        long long pb = k < 0 || n < 0 || !strcmp(ap, "VALID") ? 0 : a[k], pe = k < 0 || n < 0 || !strcmp(ap, "VALID") ? 0 : a[k + sp];
        if (pb < 0 || pe < 0 || pb > MAX_SIZE || pe > MAX_SIZE)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "pads %lld, %lld: supported: 0..%d", pb, pe, MAX_SIZE);
        b[d] = (int)pb, e[d] = (int)pe;
    }
    return NFV_OK;
}

/* The ONNX dims of x's spatial axes as 3 values, 1 in front. */
static void spatial_dims(const ox_value *x, long long in[3])
{
    int sp = x->rank - 2;
    for (int d = 0; d < 3; d++) in[d] = d < 3 - sp ? 1 : x->dims[2 + d - (3 - sp)];
}

static void out_dims(const ox_value *x, long long channels, const long long o[3], long long dims[5])
{
    int sp = x->rank - 2;
    dims[0] = x->dims[0], dims[1] = channels;
    for (int d = 0; d < sp; d++) dims[2 + d] = o[3 - sp + d];
}

/* PyTorch's pooled size (a ceil_mode window must start inside the input or its left padding). */
static long long pool_out(long long in, int k, int s, int p, int ceil_mode)
{
    long long num = in + 2LL * p - k;
    if (num < 0) return 0;
    long long o = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
    if (ceil_mode && (o - 1) * s >= in + p) o--;
    return o;
}

/* ---- Conv -------------------------------------------------------------- */

static nfv_status conv_shapes(ox_ctx *c, const ox_value *x, const ox_value *w, int k[3])
{
    int sp = x->rank - 2;
    if (w->c.ndim != x->rank)
        return ox_fail(c, NFV_ERR_FORMAT, "weight \"%s\" has rank %d for an input of rank %d", w->name, w->c.ndim,
                       x->rank);
    for (int d = 0; d < 3; d++) {
        long long kd = d < 3 - sp ? 1 : w->c.shape[2 + d - (3 - sp)];
        if (kd < 1 || kd > MAX_SIZE) return ox_fail(c, NFV_ERR_FORMAT, "weight \"%s\" has a kernel size %lld", w->name, kd);
        k[d] = (int)kd;
    }
    long long ks[8];
    int n;
    NFV_TRY(ox_attr_ints(c, "kernel_shape", ks, 8, &n));
    for (int d = 0; n >= 0 && d < 3; d++)
        if (n != sp || (d >= 3 - sp && ks[d - (3 - sp)] != k[d]))
            return ox_fail(c, NFV_ERR_FORMAT, "kernel_shape does not match the weight \"%s\"", w->name);
    return NFV_OK;
}

static nfv_status op_conv(ox_ctx *c)
{
    ox_value *x, *w, *b;
    NFV_TRY(ox_check_attrs(c, "auto_pad dilations group kernel_shape pads strides"));
    NFV_TRY(ox_graph_in(c, 0, 3, 5, &x));
    NFV_TRY(ox_const_in(c, 1, 1, OX_F32, &w));
    NFV_TRY(ox_const_in(c, 2, 0, OX_F32, &b));
    int sp = x->rank - 2, k[3], s[3], dil[3], pb[3], pe[3];
    NFV_TRY(conv_shapes(c, x, w, k));
    long long grp, ci = x->dims[1], co = w->c.shape[0], cig = w->c.shape[1];
    NFV_TRY(ox_attr_int(c, "group", 1, &grp));
    if (grp < 1 || grp > ci || co % grp || cig * grp != ci)
        return ox_fail(c, NFV_ERR_FORMAT, "weight \"%s\" of shape (%lld, %lld, ...) does not fit %lld input channels "
                                          "in %lld groups", w->name, co, cig, ci, grp);
    if (b && b->c.numel != (size_t)co)
        return ox_fail(c, NFV_ERR_FORMAT, "bias \"%s\" has %zu values for %lld output channels", b->name, b->c.numel, co);
    NFV_TRY(spatial_attr(c, "strides", sp, 1, 1, s));
    NFV_TRY(spatial_attr(c, "dilations", sp, 1, 1, dil));
    NFV_TRY(pads_attr(c, sp, pb, pe));
    long long in[3], o[3], dims[5];
    spatial_dims(x, in);
    for (int d = 0; d < 3; d++) {
        long long num = in[d] + pb[d] + pe[d] - (long long)dil[d] * (k[d] - 1) - 1;
        if (num < 0) return ox_fail(c, NFV_ERR_FORMAT, "the kernel does not fit the padded input along axis %d", d + 2 - (3 - sp));
        o[d] = num / s[d] + 1;
    }
    int src = x->node, idx;
    nfv_layer_spec *l;
    if (memcmp(pb, pe, sizeof pb)) { /* asymmetric: the excess in a Pad node first */
        NFV_TRY(ox_emit(c, NFV_LAYER_PAD, 1, &src, ".pad", &l, &idx));
        for (int d = 0; d < 3; d++) {
            int m = pb[d] < pe[d] ? pb[d] : pe[d];
            l->padding[d] = pb[d] - m, l->pad_end[d] = pe[d] - m;
            pb[d] = m;
        }
        src = idx;
    }
    NFV_TRY(ox_emit(c, NFV_LAYER_CONV3D, 1, &src, NULL, &l, &idx));
    l->features = (int)co;
    l->groups = (int)grp;
    l->bias = b != NULL;
    for (int d = 0; d < 3; d++) l->kernel[d] = k[d], l->stride[d] = s[d], l->padding[d] = pb[d], l->dilation[d] = dil[d];
    long long wshape[5] = {co, cig, k[0], k[1], k[2]};
    NFV_TRY(ox_param(c, w, 5, wshape, 1.0f, l->tensor_names[0]));
    if (b) NFV_TRY(ox_param(c, b, 1, &co, 1.0f, l->tensor_names[1]));
    out_dims(x, co, o, dims);
    ox_set_out(c, idx, x->rank, dims);
    return NFV_OK;
}

/* ---- pools ------------------------------------------------------------- */

static nfv_status op_pool(ox_ctx *c, nfv_layer_kind kind)
{
    ox_value *x;
    NFV_TRY(ox_check_attrs(c, kind == NFV_LAYER_MAXPOOL3D ? "auto_pad ceil_mode dilations kernel_shape pads storage_order strides"
                                                          : "auto_pad ceil_mode count_include_pad kernel_shape pads strides"));
    NFV_TRY(ox_graph_in(c, 0, 3, 5, &x));
    if (ox_output_used(c, 1)) return ox_fail(c, NFV_ERR_UNSUPPORTED, "the Indices output is used; not supported");
    int sp = x->rank - 2, k[3], s[3], dil[3], pb[3], pe[3];
    long long ceil_mode, cip, so;
    if (!ox_attr(c, "kernel_shape")) return ox_fail(c, NFV_ERR_FORMAT, "attribute \"kernel_shape\" is missing");
    NFV_TRY(spatial_attr(c, "kernel_shape", sp, 1, 1, k));
    NFV_TRY(spatial_attr(c, "strides", sp, 1, 1, s));
    NFV_TRY(spatial_attr(c, "dilations", sp, 1, 1, dil));
    NFV_TRY(pads_attr(c, sp, pb, pe));
    NFV_TRY(ox_attr_int(c, "ceil_mode", 0, &ceil_mode));
    NFV_TRY(ox_attr_int(c, "count_include_pad", 0, &cip));
    NFV_TRY(ox_attr_int(c, "storage_order", 0, &so));
    if (dil[0] != 1 || dil[1] != 1 || dil[2] != 1)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "dilations other than 1 are not supported on pools");
    if (so) return ox_fail(c, NFV_ERR_UNSUPPORTED, "storage_order %lld is not supported; supported: 0", so);
    if (memcmp(pb, pe, sizeof pb))
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "asymmetric pads are not supported on pools; supported: the same "
                                               "padding before and after each axis");
    long long in[3], o[3], dims[5];
    spatial_dims(x, in);
    for (int d = 0; d < 3; d++) {
        if (2 * pb[d] > k[d]) return ox_fail(c, NFV_ERR_UNSUPPORTED, "pads larger than half the kernel are not supported");
        if ((o[d] = pool_out(in[d], k[d], s[d], pb[d], ceil_mode != 0)) < 1)
            return ox_fail(c, NFV_ERR_FORMAT, "the window does not fit the input along axis %d", d + 2 - (3 - sp));
    }
    int idx;
    nfv_layer_spec *l;
    NFV_TRY(ox_emit(c, kind, 1, &x->node, NULL, &l, &idx));
    for (int d = 0; d < 3; d++) l->kernel[d] = k[d], l->stride[d] = s[d], l->padding[d] = pb[d];
    l->ceil_mode = ceil_mode != 0;
    l->exclude_pad = kind == NFV_LAYER_AVGPOOL3D && !cip;
    out_dims(x, x->dims[1], o, dims);
    ox_set_out(c, idx, x->rank, dims);
    return NFV_OK;
}

static nfv_status op_maxpool(ox_ctx *c) { return op_pool(c, NFV_LAYER_MAXPOOL3D); }
static nfv_status op_avgpool(ox_ctx *c) { return op_pool(c, NFV_LAYER_AVGPOOL3D); }

static nfv_status op_global(ox_ctx *c, nfv_layer_kind kind)
{
    ox_value *x;
    NFV_TRY(ox_check_attrs(c, ""));
    NFV_TRY(ox_graph_in(c, 0, 3, 5, &x));
    long long dims[5] = {x->dims[0], x->dims[1], 1, 1, 1};
    int idx;
    nfv_layer_spec *l;
    NFV_TRY(ox_emit(c, kind, 1, &x->node, NULL, &l, &idx));
    ox_set_out(c, idx, x->rank, dims);
    return NFV_OK;
}

static nfv_status op_gap(ox_ctx *c) { return op_global(c, NFV_LAYER_GAP); }
static nfv_status op_gmp(ox_ctx *c) { return op_global(c, NFV_LAYER_GMP); }

/* ---- normalization ----------------------------------------------------- */

static nfv_status op_norm(ox_ctx *c, nfv_layer_kind kind)
{
    ox_value *x, *t[4];
    int nt = kind == NFV_LAYER_BATCHNORM3D ? 4 : 2;
    NFV_TRY(ox_check_attrs(c, kind == NFV_LAYER_BATCHNORM3D ? "epsilon momentum spatial is_test training_mode consumed_inputs"
                                                            : "epsilon"));
    NFV_TRY(ox_graph_in(c, 0, 3, 5, &x));
    for (int j = 0; j < nt; j++) {
        NFV_TRY(ox_const_in(c, 1 + j, 1, OX_F32, &t[j]));
        if (t[j]->c.numel != (size_t)x->dims[1])
            return ox_fail(c, NFV_ERR_FORMAT, "\"%s\" has %zu values for %lld channels", t[j]->name, t[j]->c.numel,
                           x->dims[1]);
    }
    long long spatial, training;
    float eps;
    NFV_TRY(ox_attr_float(c, "epsilon", 1e-5f, &eps));
    NFV_TRY(ox_attr_int(c, "spatial", 1, &spatial));
    NFV_TRY(ox_attr_int(c, "training_mode", 0, &training));
    if (!spatial) return ox_fail(c, NFV_ERR_UNSUPPORTED, "spatial=0 is not supported");
    if (training || ox_output_used(c, 1) || ox_output_used(c, 2) || ox_output_used(c, 3) || ox_output_used(c, 4))
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "training mode (training_mode=1 or the running statistics outputs) is "
                                               "not supported; export the model in eval mode");
    if (!(eps >= 0.0f)) return ox_fail(c, NFV_ERR_FORMAT, "epsilon %g is not >= 0", (double)eps);
    int idx;
    nfv_layer_spec *l;
    NFV_TRY(ox_emit(c, kind, 1, &x->node, NULL, &l, &idx));
    l->alpha = eps;
    l->features = (int)x->dims[1];
    for (int j = 0; j < nt; j++) NFV_TRY(ox_param(c, t[j], 1, &x->dims[1], 1.0f, l->tensor_names[j]));
    ox_set_out(c, idx, x->rank, x->dims);
    return NFV_OK;
}

static nfv_status op_batchnorm(ox_ctx *c) { return op_norm(c, NFV_LAYER_BATCHNORM3D); }
static nfv_status op_instancenorm(ox_ctx *c) { return op_norm(c, NFV_LAYER_INSTANCENORM); }

/* ---- element-wise ------------------------------------------------------ */

/* One node of kind on input 0 (any rank 2-5), same shape out; alpha from
 * attribute alpha_name (default def). */
static nfv_status unary(ox_ctx *c, nfv_layer_kind kind, const char *attrs, const char *alpha_name, float def)
{
    ox_value *x;
    NFV_TRY(ox_check_attrs(c, attrs));
    NFV_TRY(ox_graph_in(c, 0, 2, 5, &x));
    float a = def;
    if (alpha_name) NFV_TRY(ox_attr_float(c, alpha_name, def, &a));
    int idx;
    nfv_layer_spec *l;
    NFV_TRY(ox_emit(c, kind, 1, &x->node, NULL, &l, &idx));
    l->alpha = a;
    ox_set_out(c, idx, x->rank, x->dims);
    return NFV_OK;
}

static nfv_status op_relu(ox_ctx *c) { return unary(c, NFV_LAYER_RELU, "consumed_inputs", NULL, 0); }
static nfv_status op_sigmoid(ox_ctx *c) { return unary(c, NFV_LAYER_SIGMOID, "consumed_inputs", NULL, 0); }
static nfv_status op_lrelu(ox_ctx *c) { return unary(c, NFV_LAYER_LEAKY_RELU, "alpha consumed_inputs", "alpha", 0.01f); }
static nfv_status op_elu(ox_ctx *c) { return unary(c, NFV_LAYER_ELU, "alpha consumed_inputs", "alpha", 1.0f); }

static nfv_status op_softmax_kind(ox_ctx *c, nfv_layer_kind kind)
{
    ox_value *x;
    NFV_TRY(ox_check_attrs(c, "axis"));
    NFV_TRY(ox_graph_in(c, 0, 2, 5, &x));
    long long axis;
    NFV_TRY(ox_attr_int(c, "axis", c->opset < 13 ? 1 : -1, &axis));
    if (axis < 0) axis += x->rank;
    if (axis != 1)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "axis %lld of a rank-%d input; supported: the channel axis 1", axis,
                       x->rank);
    if (c->opset < 13)
        for (int d = 2; d < x->rank; d++)
            if (x->dims[d] != 1)
                return ox_fail(c, NFV_ERR_UNSUPPORTED, "before opset 13 this op normalizes over all of (C, D, H, W) "
                                                       "together; supported only when every dimension after the "
                                                       "channels is 1 (here %lld)", x->dims[d]);
    return unary(c, kind, "axis", NULL, 0);
}

static nfv_status op_softmax(ox_ctx *c) { return op_softmax_kind(c, NFV_LAYER_SOFTMAX); }
static nfv_status op_logsoftmax(ox_ctx *c) { return op_softmax_kind(c, NFV_LAYER_LOGSOFTMAX); }

/* ---- the table --------------------------------------------------------- */

static const struct { const char *name; ox_op_fn fn; } OPS[] = {
    {"Add", ox_op_add},
    {"AveragePool", op_avgpool},
    {"BatchNormalization", op_batchnorm},
    {"Cast", ox_op_cast},
    {"Concat", ox_op_concat},
    {"Constant", ox_op_constant},
    {"Conv", op_conv},
    {"Dropout", ox_op_dropout},
    {"Elu", op_elu},
    {"Flatten", ox_op_flatten},
    {"Gather", ox_op_gather},
    {"Gemm", ox_op_gemm},
    {"GlobalAveragePool", op_gap},
    {"GlobalMaxPool", op_gmp},
    {"Identity", ox_op_identity},
    {"InstanceNormalization", op_instancenorm},
    {"LeakyRelu", op_lrelu},
    {"LogSoftmax", op_logsoftmax},
    {"MatMul", ox_op_matmul},
    {"MaxPool", op_maxpool},
    {"Pad", ox_op_pad},
    {"Relu", op_relu},
    {"Reshape", ox_op_reshape},
    {"Shape", ox_op_shape},
    {"Sigmoid", op_sigmoid},
    {"Slice", ox_op_slice},
    {"Softmax", op_softmax},
    {"Squeeze", ox_op_squeeze},
    {"Transpose", ox_op_transpose},
    {"Unsqueeze", ox_op_unsqueeze},
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

ox_op_fn ox_find_op(const char *op_type)
{
    for (int i = 0; i < NOPS; i++)
        if (!strcmp(OPS[i].name, op_type)) return OPS[i].fn;
    return NULL;
}

const char *ox_supported_ops(void)
{
    static char buf[512];
    if (!buf[0]) {
        size_t n = 0;
        for (int i = 0; i < NOPS; i++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? ", " : "", OPS[i].name);
    }
    return buf;
}
