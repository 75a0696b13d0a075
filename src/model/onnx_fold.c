/* The host constant folder of the ONNX reader (see onnx_read.c): Constant
 * nodes, and Shape / Gather / Unsqueeze / Squeeze / Concat / Cast / Slice /
 * Transpose (constants only) / Reshape / Identity on constants or on the statically known shapes of graph
 * tensors (torch's x.view(x.size(0), -1) idiom), evaluated here so they
 * produce no node.  A symbolic batch size travels as OX_BATCH_DIM. */
#include "model/onnx_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Output 0 as a new constant of dtype and shape (NULL out: no output). */
static nfv_status new_out(ox_ctx *c, int dtype, int ndim, const long long *shape, ox_value **out)
{
    ox_value *y = ox_output(c, 0);
    *out = y;
    if (!y) return NFV_OK;
    NFV_TRY(ox_const_alloc(c, &y->c, dtype, ndim, shape));
    y->kind = OX_CONST;
    return NFV_OK;
}

static nfv_status const_input(ox_ctx *c, int k, ox_value **out)
{
    ox_value *v = ox_input(c, k);
    *out = v;
    if (!v) return ox_fail(c, NFV_ERR_FORMAT, "input %d is missing", k);
    if (v->kind != OX_CONST)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "input \"%s\" is computed from the model input; supported only on "
                                               "constants and shapes", v->name);
    return NFV_OK;
}

static void copy_elem(ox_const *dst, size_t j, const ox_const *src, size_t i)
{
    if (dst->dtype == OX_F32) dst->f[j] = src->f[i];
    else dst->i[j] = src->i[i];
}

nfv_status ox_fold_reshape(ox_ctx *c, const ox_value *x, int rank, const long long *dims, ox_value *y)
{
    (void)c;
    if (!y) return NFV_OK;
    NFV_TRY(ox_const_alloc(c, &y->c, x->c.dtype, rank, dims));
    y->kind = OX_CONST;
    if (y->c.numel != x->c.numel) {
        ox_const_free(&y->c);
        y->kind = OX_NONE;
        return ox_fail(c, NFV_ERR_FORMAT, "the new shape has %zu elements, the input %zu", y->c.numel, x->c.numel);
    }
    for (size_t j = 0; j < x->c.numel; j++) copy_elem(&y->c, j, &x->c, j);
    return NFV_OK;
}

nfv_status ox_op_constant(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "value value_float value_floats value_int value_ints"));
    if (c->node->n_attribute != 1) return ox_fail(c, NFV_ERR_FORMAT, "a Constant needs exactly one value attribute");
    const Onnx__AttributeProto *a = c->node->attribute[0];
    ox_value *y = ox_output(c, 0);
    if (!y) return NFV_OK;
    const char *n = a->name;
    long long one = 1;
    if (!strcmp(n, "value")) {
        if (!a->t) return ox_fail(c, NFV_ERR_FORMAT, "attribute \"value\" holds no tensor");
        NFV_TRY(ox_tensor_to_const(c, a->t, y->name, &y->c));
    } else if (!strcmp(n, "value_float") || !strcmp(n, "value_int")) {
        int f = n[6] == 'f';
        NFV_TRY(ox_const_alloc(c, &y->c, f ? OX_F32 : OX_I64, 0, &one));
        if (f) y->c.f[0] = a->f;
        else y->c.i[0] = a->i;
    } else {
        int f = n[6] == 'f';
        long long cnt = (long long)(f ? a->n_floats : a->n_ints);
        NFV_TRY(ox_const_alloc(c, &y->c, f ? OX_F32 : OX_I64, 1, &cnt));
        for (long long j = 0; j < cnt; j++) {
            if (f) y->c.f[j] = a->floats[j];
            else y->c.i[j] = a->ints[j];
        }
    }
    y->kind = OX_CONST;
    return NFV_OK;
}

nfv_status ox_op_shape(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "start end"));
    ox_value *x = ox_input(c, 0), *y;
    if (!x) return ox_fail(c, NFV_ERR_FORMAT, "input 0 is missing");
    int rank = x->kind == OX_GRAPH ? x->rank : x->c.ndim;
    long long start, end;
    NFV_TRY(ox_attr_int(c, "start", 0, &start));
    NFV_TRY(ox_attr_int(c, "end", rank, &end));
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = start < 0 ? 0 : start > rank ? rank : start;
    end = end < start ? start : end > rank ? rank : end;
    long long n = end - start;
    NFV_TRY(new_out(c, OX_I64, 1, &n, &y));
    for (long long j = 0; y && j < n; j++) {
        long long d = x->kind == OX_GRAPH ? x->dims[start + j] : x->c.shape[start + j];
        y->c.i[j] = x->kind == OX_GRAPH && start + j == 0 && d == 0 ? OX_BATCH_DIM : d;
    }
    return NFV_OK;
}

/* Axis a of rank r normalized into [0, r), or -1. */
static long long norm_axis(long long a, int r) { return a < -r || a >= r ? -1 : a < 0 ? a + r : a; }

nfv_status ox_op_gather(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "axis"));
    ox_value *x, *ix, *y;
    NFV_TRY(const_input(c, 0, &x));
    NFV_TRY(const_input(c, 1, &ix));
    if (ix->c.dtype != OX_I64) return ox_fail(c, NFV_ERR_UNSUPPORTED, "indices of dtype %s; supported: INT64", ox_dtype_name(ix->c.dtype));
    long long axis;
    NFV_TRY(ox_attr_int(c, "axis", 0, &axis));
    int r = x->c.ndim, q = ix->c.ndim;
    if ((axis = norm_axis(axis, r)) < 0 || r + q - 1 > OX_MAX_RANK)
        return ox_fail(c, NFV_ERR_FORMAT, "axis or ranks out of range (data rank %d, indices rank %d)", r, q);
    long long shape[OX_MAX_RANK], outer = 1, inner = 1, n = x->c.shape[axis];
    int k = 0;
    for (int d = 0; d < axis; d++) shape[k++] = x->c.shape[d], outer *= x->c.shape[d];
    for (int d = 0; d < q; d++) shape[k++] = ix->c.shape[d];
    for (int d = (int)axis + 1; d < r; d++) shape[k++] = x->c.shape[d], inner *= x->c.shape[d];
    NFV_TRY(new_out(c, x->c.dtype, k, shape, &y));
    size_t j = 0;
    for (long long o = 0; y && o < outer; o++)
        for (size_t t = 0; t < ix->c.numel; t++) {
            long long i = ix->c.i[t] < 0 ? ix->c.i[t] + n : ix->c.i[t];
            if (i < 0 || i >= n) return ox_fail(c, NFV_ERR_FORMAT, "index %lld out of range (%lld)", ix->c.i[t], n);
            for (long long e = 0; e < inner; e++) copy_elem(&y->c, j++, &x->c, (size_t)((o * n + i) * inner + e));
        }
    return NFV_OK;
}

/* The axes of (Un)Squeeze: attribute before opset 13, input 1 after; *n = -1 if none. */
static nfv_status squeeze_axes(ox_ctx *c, long long *axes, int *n)
{
    ox_value *a = ox_input(c, 1);
    if (c->opset < 13 || !a) return ox_attr_ints(c, "axes", axes, OX_MAX_RANK, n);
    NFV_TRY(const_input(c, 1, &a));
    if (a->c.dtype != OX_I64 || a->c.numel > OX_MAX_RANK) return ox_fail(c, NFV_ERR_FORMAT, "axes are not up to %d INT64 values", OX_MAX_RANK);
    *n = (int)a->c.numel;
    for (int j = 0; j < *n; j++) axes[j] = a->c.i[j];
    return NFV_OK;
}

/* The result of (Un)Squeeze on shape (r, in) into (*ro, out). */
static nfv_status squeeze_shape(ox_ctx *c, int unsqueeze, int r, const long long *in, int *ro, long long *out)
{
    long long axes[OX_MAX_RANK];
    int n, mark[OX_MAX_RANK * 2] = {0};
    NFV_TRY(squeeze_axes(c, axes, &n));
    if (unsqueeze && n < 0) return ox_fail(c, NFV_ERR_FORMAT, "the axes are missing");
    int rout = unsqueeze ? r + n : r;
    if (rout > OX_MAX_RANK) return ox_fail(c, NFV_ERR_UNSUPPORTED, "a result of rank %d (at most %d)", rout, OX_MAX_RANK);
    for (int j = 0; j < n; j++) {
        long long a = norm_axis(axes[j], unsqueeze ? rout : r);
        if (a < 0 || mark[a]) return ox_fail(c, NFV_ERR_FORMAT, "axis %lld is out of range or repeated", axes[j]);
        if (!unsqueeze && in[a] != 1) return ox_fail(c, NFV_ERR_FORMAT, "axis %lld has size %lld, not 1", axes[j], in[a]);
        mark[a] = 1;
    }
    *ro = 0;
    if (unsqueeze)
        for (int d = 0, k = 0; d < rout; d++) out[(*ro)++] = mark[d] ? 1 : in[k++];
    else
        for (int d = 0; d < r; d++)
            if (!(n < 0 ? in[d] == 1 : mark[d])) out[(*ro)++] = in[d];
    return NFV_OK;
}

static nfv_status op_squeeze_kind(ox_ctx *c, int unsqueeze)
{
    NFV_TRY(ox_check_attrs(c, "axes"));
    ox_value *x = ox_input(c, 0);
    if (!x) return ox_fail(c, NFV_ERR_FORMAT, "input 0 is missing");
    long long out[OX_MAX_RANK];
    int ro;
    if (x->kind == OX_CONST) {
        NFV_TRY(squeeze_shape(c, unsqueeze, x->c.ndim, x->c.shape, &ro, out));
        return ox_fold_reshape(c, x, ro, out, ox_output(c, 0));
    }
    long long in[OX_MAX_RANK];
    memcpy(in, x->dims, sizeof in);
    if (!in[0]) in[0] = 2; /* a symbolic batch: not 1, so never squeezed */
    NFV_TRY(squeeze_shape(c, unsqueeze, x->rank, in, &ro, out));
    if (ro < 1 || out[0] != in[0])
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "the batch dimension must stay first");
    out[0] = x->dims[0];
    return ox_emit_reshape(c, x, ro, out, ox_output(c, 0));
}

nfv_status ox_op_unsqueeze(ox_ctx *c) { return op_squeeze_kind(c, 1); }
nfv_status ox_op_squeeze(ox_ctx *c) { return op_squeeze_kind(c, 0); }

nfv_status ox_op_cast(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "to saturate"));
    long long to;
    NFV_TRY(ox_attr_int(c, "to", 0, &to));
    ox_value *x = ox_input(c, 0), *y;
    if (!x) return ox_fail(c, NFV_ERR_FORMAT, "input 0 is missing");
    if (to != OX_F32 && to != OX_I64)
        return ox_fail(c, NFV_ERR_UNSUPPORTED, "Cast to %s is not supported; supported: FLOAT, INT64",
                       ox_dtype_name((int)to));
    if (x->kind == OX_GRAPH) {
        if (to != OX_F32) return ox_fail(c, NFV_ERR_UNSUPPORTED, "Cast of a computed tensor to INT64 is not supported");
        nfv_layer_spec *l;
        int idx;
        NFV_TRY(ox_emit(c, NFV_LAYER_IDENTITY, 1, &x->node, NULL, &l, &idx));
        ox_set_out(c, idx, x->rank, x->dims);
        return NFV_OK;
    }
    NFV_TRY(new_out(c, (int)to, x->c.ndim, x->c.shape, &y));
    for (size_t j = 0; y && j < x->c.numel; j++) {
        if (to == OX_I64) {
            y->c.i[j] = ox_const_get_i(&x->c, j);
        } else {
            if (x->c.dtype == OX_I64 && x->c.i[j] == OX_BATCH_DIM)
                return ox_fail(c, NFV_ERR_UNSUPPORTED, "the symbolic batch size cannot be used as a float");
            y->c.f[j] = (float)ox_const_get_f(&x->c, j);
        }
    }
    return NFV_OK;
}

/* Slice's starts/ends/axes/steps: attributes before opset 10, inputs after. */
static nfv_status slice_params(ox_ctx *c, long long p[4][OX_MAX_RANK], int n[4])
{
    static const char *const names[4] = {"starts", "ends", "axes", "steps"};
    for (int k = 0; k < 4; k++) {
        n[k] = -1;
        if (c->opset < 10) {
            if (k < 3) NFV_TRY(ox_attr_ints(c, names[k], p[k], OX_MAX_RANK, &n[k]));
            continue;
        }
        ox_value *v = ox_input(c, 1 + k);
        if (!v) continue;
        NFV_TRY(const_input(c, 1 + k, &v));
        if (v->c.dtype != OX_I64 || v->c.numel > OX_MAX_RANK)
            return ox_fail(c, NFV_ERR_UNSUPPORTED, "%s must be at most %d INT64 values", names[k], OX_MAX_RANK);
        n[k] = (int)v->c.numel;
        for (int j = 0; j < n[k]; j++) p[k][j] = v->c.i[j];
    }
    if (n[0] < 0 || n[1] != n[0] || (n[2] >= 0 && n[2] != n[0]) || (n[3] >= 0 && n[3] != n[0]))
        return ox_fail(c, NFV_ERR_FORMAT, "starts, ends, axes and steps do not have the same length");
    return NFV_OK;
}

nfv_status ox_op_slice(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "starts ends axes"));
    ox_value *x, *y;
    NFV_TRY(const_input(c, 0, &x));
    long long p[4][OX_MAX_RANK], lo[OX_MAX_RANK], step[OX_MAX_RANK], shape[OX_MAX_RANK];
    int n[4], r = x->c.ndim;
    NFV_TRY(slice_params(c, p, n));
    for (int d = 0; d < r; d++) lo[d] = 0, step[d] = 1, shape[d] = x->c.shape[d];
    for (int j = 0; j < n[0]; j++) {
        long long a = norm_axis(n[2] >= 0 ? p[2][j] : j, r), s = n[3] >= 0 ? p[3][j] : 1;
        if (a < 0 || s == 0) return ox_fail(c, NFV_ERR_FORMAT, "axis or step out of range");
        long long dim = x->c.shape[a], b = p[0][j], e = p[1][j];
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        long long hi = s > 0 ? dim : dim - 1, elo = s > 0 ? 0 : -1;
        b = b < 0 ? 0 : b > hi ? hi : b;
        e = e < elo ? elo : e > hi ? hi : e;
        long long len = s > 0 ? (e - b + s - 1) / s : (b - e + (-s) - 1) / (-s);
        lo[a] = b, step[a] = s, shape[a] = len > 0 ? len : 0;
    }
    NFV_TRY(new_out(c, x->c.dtype, r, shape, &y));
    long long cnt[OX_MAX_RANK] = {0};
    for (size_t j = 0; y && j < y->c.numel; j++) {
        long long src = 0;
        for (int d = 0; d < r; d++) src = src * x->c.shape[d] + lo[d] + cnt[d] * step[d];
        copy_elem(&y->c, j, &x->c, (size_t)src);
        for (int d = r - 1; d >= 0 && ++cnt[d] == shape[d]; d--) cnt[d] = 0;
    }
    return NFV_OK;
}

nfv_status ox_fold_concat(ox_ctx *c, int axis)
{
    int n = (int)c->node->n_input;
    ox_value *x0, *y;
    NFV_TRY(const_input(c, 0, &x0));
    int r = x0->c.ndim;
    long long a = norm_axis(axis, r), shape[OX_MAX_RANK], total = 0;
    if (a < 0) return ox_fail(c, NFV_ERR_FORMAT, "axis %d out of range for rank %d", axis, r);
    for (int j = 0; j < n; j++) {
        ox_value *v;
        NFV_TRY(const_input(c, j, &v));
        int ok = v->c.ndim == r && v->c.dtype == x0->c.dtype;
        for (int d = 0; ok && d < r; d++) ok = d == a || v->c.shape[d] == x0->c.shape[d];
        if (!ok) return ox_fail(c, NFV_ERR_FORMAT, "input \"%s\" does not match the first input", v->name);
        total += v->c.shape[a];
    }
    memcpy(shape, x0->c.shape, sizeof shape);
    shape[a] = total;
    NFV_TRY(new_out(c, x0->c.dtype, r, shape, &y));
    long long outer = 1, inner = 1, off = 0;
    for (int d = 0; d < a; d++) outer *= shape[d];
    for (int d = (int)a + 1; d < r; d++) inner *= shape[d];
    for (int j = 0; y && j < n; j++) {
        ox_value *v = ox_input(c, j);
        long long len = v->c.shape[a] * inner;
        for (long long o = 0; o < outer; o++)
            for (long long e = 0; e < len; e++) copy_elem(&y->c, (size_t)(o * total * inner + off + e), &v->c, (size_t)(o * len + e));
        off += len;
    }
    return NFV_OK;
}

nfv_status ox_op_transpose(ox_ctx *c)
{
    NFV_TRY(ox_check_attrs(c, "perm"));
    ox_value *x, *y;
    NFV_TRY(const_input(c, 0, &x));
    long long perm[OX_MAX_RANK], shape[OX_MAX_RANK], st[OX_MAX_RANK];
    int n, r = x->c.ndim, seen[OX_MAX_RANK] = {0};
    NFV_TRY(ox_attr_ints(c, "perm", perm, OX_MAX_RANK, &n));
    if (n < 0)
        for (int d = 0; d < r; d++) perm[d] = r - 1 - d;
    else if (n != r)
        return ox_fail(c, NFV_ERR_FORMAT, "perm has %d values for rank %d", n, r);
    for (int d = 0; d < r; d++) {
        if (perm[d] < 0 || perm[d] >= r || seen[perm[d]]++) return ox_fail(c, NFV_ERR_FORMAT, "perm is not a permutation");
        shape[d] = x->c.shape[perm[d]];
    }
    for (int d = r - 1, s = 1; d >= 0; d--) st[d] = s, s *= (int)x->c.shape[d];
    NFV_TRY(new_out(c, x->c.dtype, r, shape, &y));
    long long cnt[OX_MAX_RANK] = {0};
    for (size_t j = 0; y && j < y->c.numel; j++) {
        long long src = 0;
        for (int d = 0; d < r; d++) src += cnt[d] * st[perm[d]];
        copy_elem(&y->c, j, &x->c, (size_t)src);
        for (int d = r - 1; d >= 0 && ++cnt[d] == shape[d]; d--) cnt[d] = 0;
    }
    return NFV_OK;
}
