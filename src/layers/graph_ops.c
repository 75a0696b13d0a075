/* Graph ops: Add, channel Concat, constant Pad, Softmax / LogSoftmax over
 * channels, forward and backward; kernels in cl/graph.cl. */
#include <stdio.h>

#include "neurofv/ops.h"

static nfv_status graph_kernel(nfv_context *ctx, const char *name, cl_kernel *k, size_t *vec)
{
    int v = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", v);
    if (vec) *vec = (size_t)v;
    return nfv_kernel_get(ctx, "graph", opts, name, k);
}

static nfv_status need(const char *op, const char *what, const nfv_tensor *t)
{
    if (!t || !t->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    return NFV_OK;
}

static int same_shape(const nfv_tensor *a, const nfv_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static nfv_status check_same_shape(const char *op, const char *wa, const nfv_tensor *a, const char *wb,
                                   const nfv_tensor *b)
{
    if (same_shape(a, b)) return NFV_OK;
    char sa[64], sb[64];
    return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s %s and %s %s differ in shape", op, wa, nfv_shape_str(a, sa, sizeof sa),
                    wb, nfv_shape_str(b, sb, sizeof sb));
}

/* ---- Add --------------------------------------------------------------- */

nfv_status nfv_add_forward(nfv_context *ctx, const nfv_tensor *a, const nfv_tensor *b, nfv_tensor *y)
{
    static const char *op = "add";
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(need(op, "a", a));
    NFV_TRY(need(op, "b", b));
    NFV_TRY(need(op, "y", y));
    if (a->numel != b->numel || a->numel != y->numel) {
        char sa[64], sb[64], sy[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: a %s, b %s and y %s differ in size", op,
                        nfv_shape_str(a, sa, sizeof sa), nfv_shape_str(b, sb, sizeof sb),
                        nfv_shape_str(y, sy, sizeof sy));
    }
    cl_kernel k;
    size_t vec;
    NFV_TRY(graph_kernel(ctx, "graph_add", &k, &vec));
    cl_ulong n = a->numel;
    NFV_ARG(k, "graph_add", 0, a->buf);
    NFV_ARG(k, "graph_add", 1, b->buf);
    NFV_ARG(k, "graph_add", 2, y->buf);
    NFV_ARG(k, "graph_add", 3, n);
    size_t global = (a->numel + vec - 1) / vec;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

/* ---- Concat along channels --------------------------------------------- */

/* x (N, Ci, S...) must fit at channel c_offset of y (N, Ct, S...); *spatial = prod S. */
static nfv_status check_concat(const char *op, const char *wx, const nfv_tensor *x, const char *wy,
                               const nfv_tensor *y, int c_offset, size_t *spatial)
{
    NFV_TRY(need(op, wx, x));
    NFV_TRY(need(op, wy, y));
    char sx[64], sy[64];
    int ok = x->ndim >= 2 && x->ndim == y->ndim && x->shape[0] == y->shape[0];
    size_t s = 1;
    for (int i = 2; ok && i < x->ndim; i++) {
        ok = x->shape[i] == y->shape[i];
        s *= (size_t)x->shape[i];
    }
    if (!ok)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s %s and %s %s must be (N, C, ...) with the same N and sizes "
                        "after the channels", op, wx, nfv_shape_str(x, sx, sizeof sx), wy,
                        nfv_shape_str(y, sy, sizeof sy));
    if (c_offset < 0 || x->shape[1] > y->shape[1] - c_offset)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: channels [%d, %d) of %s %s do not fit in %s %s", op, c_offset,
                        c_offset + x->shape[1], wx, nfv_shape_str(x, sx, sizeof sx), wy,
                        nfv_shape_str(y, sy, sizeof sy));
    *spatial = s;
    return NFV_OK;
}

/* Queue dst[n][dst_off + i] = src[n][src_off + i], i < len, for each of n samples. */
static nfv_status slice_copy(nfv_context *ctx, cl_mem src, cl_ulong src_stride, cl_ulong src_off, cl_mem dst,
                             cl_ulong dst_stride, cl_ulong dst_off, cl_ulong len, size_t n)
{
    cl_kernel k;
    size_t vec;
    NFV_TRY(graph_kernel(ctx, "graph_slice_copy", &k, &vec));
    NFV_ARG(k, "graph_slice_copy", 0, src);
    NFV_ARG(k, "graph_slice_copy", 1, src_stride);
    NFV_ARG(k, "graph_slice_copy", 2, src_off);
    NFV_ARG(k, "graph_slice_copy", 3, dst);
    NFV_ARG(k, "graph_slice_copy", 4, dst_stride);
    NFV_ARG(k, "graph_slice_copy", 5, dst_off);
    NFV_ARG(k, "graph_slice_copy", 6, len);
    size_t global[2] = {(size_t)((len + vec - 1) / vec), n};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

nfv_status nfv_concat_channels_forward(nfv_context *ctx, const nfv_tensor *x, int c_offset, nfv_tensor *y)
{
    static const char *op = "concat channels forward";
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    size_t s;
    NFV_TRY(check_concat(op, "x", x, "y", y, c_offset, &s));
    cl_ulong ci = (cl_ulong)x->shape[1], ct = (cl_ulong)y->shape[1];
    return slice_copy(ctx, x->buf, ci * s, 0, y->buf, ct * s, (cl_ulong)c_offset * s, ci * s, (size_t)x->shape[0]);
}

nfv_status nfv_concat_channels_backward(nfv_context *ctx, const nfv_tensor *dy, int c_offset, nfv_tensor *dx)
{
    static const char *op = "concat channels backward";
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    size_t s;
    NFV_TRY(check_concat(op, "dx", dx, "dy", dy, c_offset, &s));
    cl_ulong ci = (cl_ulong)dx->shape[1], ct = (cl_ulong)dy->shape[1];
    return slice_copy(ctx, dy->buf, ct * s, (cl_ulong)c_offset * s, dx->buf, ci * s, 0, ci * s,
                      (size_t)dx->shape[0]);
}

/* ---- Constant pad ------------------------------------------------------ */

/* x (N, C, D, H, W) padded by begin/end is y's shape; both 5-D. */
static nfv_status check_pad(const char *op, const int begin[3], const int end[3], const char *wx,
                            const nfv_tensor *x, const char *wy, const nfv_tensor *y)
{
    NFV_TRY(need(op, wx, x));
    NFV_TRY(need(op, wy, y));
    if (!begin || !end) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL begin or end", op);
    char sx[64], sy[64];
    for (int a = 0; a < 3; a++)
        if (begin[a] < 0 || end[a] < 0)
            return nfv_fail(NFV_ERR_INVALID_ARG, "%s: pads (%d, %d, %d) / (%d, %d, %d) must be >= 0", op, begin[0],
                            begin[1], begin[2], end[0], end[1], end[2]);
    int ok = x->ndim == 5 && y->ndim == 5 && x->shape[0] == y->shape[0] && x->shape[1] == y->shape[1];
    for (int a = 0; ok && a < 3; a++) ok = (long long)x->shape[2 + a] + begin[a] + end[a] == y->shape[2 + a];
    if (!ok)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s %s padded by (%d, %d, %d) before and (%d, %d, %d) after "
                        "is not %s %s", op, wx, nfv_shape_str(x, sx, sizeof sx), begin[0], begin[1], begin[2], end[0],
                        end[1], end[2], wy, nfv_shape_str(y, sy, sizeof sy));
    if ((size_t)x->shape[0] * x->shape[1] > 0x7fffffffULL)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s %s has too many planes", op, wx, nfv_shape_str(x, sx, sizeof sx));
    return NFV_OK;
}

/* Set the geometry arguments 2..11 shared by graph_pad3d and graph_crop3d. */
static nfv_status pad_args(cl_kernel k, const char *name, const nfv_tensor *small, const nfv_tensor *big,
                           const int begin[3])
{
    cl_int v[10] = {small->shape[0] * small->shape[1], small->shape[2], small->shape[3], small->shape[4],
                    big->shape[2], big->shape[3], big->shape[4], begin[0], begin[1], begin[2]};
    for (cl_uint i = 0; i < 10; i++) NFV_ARG(k, name, 2 + i, v[i]);
    return NFV_OK;
}

/* Launch a FLAT_BLOCK kernel over the rows of t (P, D, H, W). */
static nfv_status launch_rows(nfv_context *ctx, cl_kernel k, const nfv_tensor *t, size_t vec)
{
    size_t rows = (size_t)t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
    size_t global = rows * ((size_t)(t->shape[4] + vec - 1) / vec);
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_pad3d_forward(nfv_context *ctx, const int begin[3], const int end[3], float value, const nfv_tensor *x,
                             nfv_tensor *y)
{
    static const char *op = "pad3d forward";
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_pad(op, begin, end, "x", x, "y", y));
    cl_kernel k;
    size_t vec;
    NFV_TRY(graph_kernel(ctx, "graph_pad3d", &k, &vec));
    NFV_ARG(k, "graph_pad3d", 0, x->buf);
    NFV_ARG(k, "graph_pad3d", 1, y->buf);
    NFV_TRY(pad_args(k, "graph_pad3d", x, y, begin));
    NFV_ARG(k, "graph_pad3d", 12, value);
    return launch_rows(ctx, k, y, vec);
}

nfv_status nfv_pad3d_backward(nfv_context *ctx, const int begin[3], const int end[3], const nfv_tensor *dy,
                              nfv_tensor *dx)
{
    static const char *op = "pad3d backward";
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_pad(op, begin, end, "dx", dx, "dy", dy));
    cl_kernel k;
    size_t vec;
    NFV_TRY(graph_kernel(ctx, "graph_crop3d", &k, &vec));
    NFV_ARG(k, "graph_crop3d", 0, dy->buf);
    NFV_ARG(k, "graph_crop3d", 1, dx->buf);
    NFV_TRY(pad_args(k, "graph_crop3d", dx, dy, begin));
    return launch_rows(ctx, k, dx, vec);
}

/* ---- Softmax over channels --------------------------------------------- */

typedef struct softmax_geom {
    cl_uint n, s;
    cl_int c;
} softmax_geom;

static nfv_status check_softmax_x(const char *op, const char *what, const nfv_tensor *x, softmax_geom *g)
{
    NFV_TRY(need(op, what, x));
    char sx[64];
    size_t s = 1;
    for (int i = 2; i < x->ndim; i++) s *= (size_t)x->shape[i];
    if (x->ndim < 2 || x->shape[1] < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s %s is not (N, C, ...)", op, what, nfv_shape_str(x, sx, sizeof sx));
    if (s > 0x7fffffffULL || (size_t)x->shape[0] * ((s + 15) / 16) > 0x7fffffffULL)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s %s too large", op, what, nfv_shape_str(x, sx, sizeof sx));
    g->n = (cl_uint)x->shape[0];
    g->c = x->shape[1];
    g->s = (cl_uint)s;
    return NFV_OK;
}

static nfv_status softmax_launch(nfv_context *ctx, cl_kernel k, const softmax_geom *g, size_t vec)
{
    size_t global = (size_t)g->n * ((g->s + vec - 1) / vec);
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_softmax_forward(nfv_context *ctx, int log_softmax, const nfv_tensor *x, nfv_tensor *y)
{
    const char *op = log_softmax ? "log_softmax forward" : "softmax forward";
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    softmax_geom g;
    NFV_TRY(check_softmax_x(op, "x", x, &g));
    NFV_TRY(need(op, "y", y));
    NFV_TRY(check_same_shape(op, "x", x, "y", y));
    cl_kernel k;
    size_t vec;
    cl_int lg = log_softmax != 0;
    NFV_TRY(graph_kernel(ctx, "graph_softmax", &k, &vec));
    NFV_ARG(k, "graph_softmax", 0, x->buf);
    NFV_ARG(k, "graph_softmax", 1, y->buf);
    NFV_ARG(k, "graph_softmax", 2, g.n);
    NFV_ARG(k, "graph_softmax", 3, g.c);
    NFV_ARG(k, "graph_softmax", 4, g.s);
    NFV_ARG(k, "graph_softmax", 5, lg);
    return softmax_launch(ctx, k, &g, vec);
}

nfv_status nfv_softmax_backward(nfv_context *ctx, int log_softmax, const nfv_tensor *y, const nfv_tensor *dy,
                                nfv_tensor *dx)
{
    const char *op = log_softmax ? "log_softmax backward" : "softmax backward";
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    softmax_geom g;
    NFV_TRY(check_softmax_x(op, "y", y, &g));
    NFV_TRY(need(op, "dy", dy));
    NFV_TRY(need(op, "dx", dx));
    NFV_TRY(check_same_shape(op, "y", y, "dy", dy));
    NFV_TRY(check_same_shape(op, "y", y, "dx", dx));
    cl_kernel k;
    size_t vec;
    cl_int lg = log_softmax != 0;
    NFV_TRY(graph_kernel(ctx, "graph_softmax_backward", &k, &vec));
    NFV_ARG(k, "graph_softmax_backward", 0, y->buf);
    NFV_ARG(k, "graph_softmax_backward", 1, dy->buf);
    NFV_ARG(k, "graph_softmax_backward", 2, dx->buf);
    NFV_ARG(k, "graph_softmax_backward", 3, g.n);
    NFV_ARG(k, "graph_softmax_backward", 4, g.c);
    NFV_ARG(k, "graph_softmax_backward", 5, g.s);
    NFV_ARG(k, "graph_softmax_backward", 6, lg);
    return softmax_launch(ctx, k, &g, vec);
}
