/* Max / average pooling and global average and max pooling; kernels in
 * cl/pool.cl.  The window geometry and the tensor sizes are compiled into
 * each program variant (-D), one variant per layer geometry, built once per
 * context.  ceil_mode only changes the output size the host computes;
 * exclude_pad is the average variant's -DEXCLUDE_PAD. */
#include <stdio.h>

#include "neurofv/ops.h"

/* Pooling geometry of one call, checked. */
typedef struct pool_geom {
    int n, c, in[3], out[3];
} pool_geom;

static nfv_status check_params(const char *op, const nfv_pool3d_params *p)
{
    if (!p) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL params", op);
    for (int a = 0; a < 3; a++) {
        if (p->kernel[a] < 1 || p->stride[a] < 1 || p->padding[a] < 0)
            return nfv_fail(NFV_ERR_INVALID_ARG, "%s: axis %d has kernel %d, stride %d, padding %d (need k>=1, s>=1, p>=0)",
                            op, a, p->kernel[a], p->stride[a], p->padding[a]);
        /* PyTorch's rule: a window may never lie entirely in the padding. */
        if (2 * p->padding[a] > p->kernel[a])
            return nfv_fail(NFV_ERR_INVALID_ARG, "%s: axis %d padding %d exceeds half the kernel %d", op, a,
                            p->padding[a], p->kernel[a]);
    }
    return NFV_OK;
}

/* floor: (in + 2*pad - k) / stride + 1.  ceil (PyTorch): ceil((in + 2*pad - k)
 * / stride) + 1, less one when that last window would start in the right
 * padding ((out - 1) * stride >= in + pad).  0 when the window does not fit. */
int nfv_pool_out_size(int in, int kernel, int stride, int pad, int ceil_mode)
{
    if (stride < 1 || kernel < 1 || in + 2 * pad < kernel) return 0;
    const int span = in + 2 * pad - kernel;
    if (!ceil_mode) return span / stride + 1;
    int out = (span + stride - 1) / stride + 1;
    if ((out - 1) * stride >= in + pad) out--;
    return out;
}

/* Geometry from the full-resolution tensor big (N, C, D, H, W) and the
 * pooled tensor small, which must be (N, C, Do, Ho, Wo). */
static nfv_status pool_geometry(const char *op, const nfv_pool3d_params *p, const nfv_tensor *big,
                                const nfv_tensor *small, pool_geom *g)
{
    NFV_TRY(check_params(op, p));
    char sb[64], ss[64];
    if (big->ndim != 5) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s is not (N, C, D, H, W)", op, nfv_shape_str(big, sb, sizeof sb));
    g->n = big->shape[0];
    g->c = big->shape[1];
    for (int a = 0; a < 3; a++) {
        g->in[a] = big->shape[2 + a];
        g->out[a] = nfv_pool_out_size(g->in[a], p->kernel[a], p->stride[a], p->padding[a], p->ceil_mode);
        if (g->out[a] < 1)
            return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s too small for kernel %d padding %d on axis %d", op,
                            nfv_shape_str(big, sb, sizeof sb), p->kernel[a], p->padding[a], a);
    }
    if (small->ndim != 5 || small->shape[0] != g->n || small->shape[1] != g->c || small->shape[2] != g->out[0] ||
        small->shape[3] != g->out[1] || small->shape[4] != g->out[2])
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: pooled tensor is %s, expected %dx%dx%dx%dx%d for input %s", op,
                        nfv_shape_str(small, ss, sizeof ss), g->n, g->c, g->out[0], g->out[1], g->out[2],
                        nfv_shape_str(big, sb, sizeof sb));
    return NFV_OK;
}

/* The explicit-vector kernels of cl/pool.cl are written for VEC 4, 8 or 16. */
static int vector_kernels(nfv_context *ctx)
{
    int vec = nfv_context_vector_width(ctx);
    return vec == 4 || vec == 8 || vec == 16;
}

/* Kernel 2, stride 2, no padding along W, and the floor-mode width (ceil_mode
 * along D and H is fine; a ceil_mode window past the end of a row is not):
 * the explicitly vectorized max pooling kernels apply (cl/pool.cl, *_w2). */
static int use_w2(nfv_context *ctx, const nfv_pool3d_params *p, const pool_geom *g)
{
    return p->kernel[2] == 2 && p->stride[2] == 2 && p->padding[2] == 0 && g->out[2] == g->in[2] / 2 &&
           vector_kernels(ctx);
}

/* Kernel 3, stride 2, padding 1 along W in floor mode (ResNet stems): the
 * vectorized max_window_w3 and w3_input_grad (cl/pool.cl).  MONAI's
 * ResNet-18 at 64^3, batch 4 (bench --profile): its stem pool's forward 22
 * -> 5.5 ms, backward 30 -> 3.3 ms. */
static int use_w3(nfv_context *ctx, const nfv_pool3d_params *p, const pool_geom *g)
{
    return p->kernel[2] == 3 && p->stride[2] == 2 && p->padding[2] == 1 && g->out[2] == (g->in[2] - 1) / 2 + 1 &&
           vector_kernels(ctx);
}

/* kind: 1 max, 2 average (POOL_KIND in cl/pool.cl); staging: the layout of
 * maxpool3d_backward_w2_gated_padded's output (NULL for the others). */
static nfv_status pool_kernel_padded(nfv_context *ctx, int kind, const nfv_pool3d_params *p, const pool_geom *g,
                                     const nfv_conv3d_staging *staging, const char *name, cl_kernel *k)
{
    char opts[512];
    int used = snprintf(opts, sizeof opts, "-DPOOL_KIND=%d -DVEC=%d ", kind, nfv_context_vector_width(ctx));
    if (staging)
        used += snprintf(opts + used, sizeof opts - (size_t)used, "-DGPD=%d -DGPH=%d -DGPW=%d -DGCR=%d ",
                         staging->pad[0], staging->pad[1], staging->pad[2], staging->channel_rows);
    if (kind == 2) used += snprintf(opts + used, sizeof opts - (size_t)used, "-DEXCLUDE_PAD=%d ", p->exclude_pad != 0);
    snprintf(opts + used, sizeof opts - (size_t)used,
             "-DKD=%d -DKH=%d -DKW=%d -DSD=%d -DSH=%d -DSW=%d -DPD=%d -DPH=%d -DPW=%d -DD=%d -DH=%d -DW=%d "
             "-DOD=%d -DOH=%d -DOW=%d",
             p->kernel[0], p->kernel[1], p->kernel[2], p->stride[0], p->stride[1], p->stride[2], p->padding[0],
             p->padding[1], p->padding[2], g->in[0], g->in[1], g->in[2], g->out[0], g->out[1], g->out[2]);
    return nfv_kernel_get(ctx, "pool", opts, name, k);
}

static nfv_status pool_kernel(nfv_context *ctx, int kind, const nfv_pool3d_params *p, const pool_geom *g,
                              const char *name, cl_kernel *k)
{
    return pool_kernel_padded(ctx, kind, p, g, NULL, name, k);
}


/* Launch over global (x blocks, rows, planes) with one plane per work-group
 * where the device allows it, as the conv kernels do: PoCL pays per
 * work-group and, left to choose, made smaller ones.  Measured on ref4's
 * visualization step, alternating builds: the gated padded backward 4.7-5.1
 * -> 4.0-4.4 ms per step (bench --profile), the step 26.7-27.7 -> 25.8-26.9
 * ms (bench --only vis, three rounds). */
static nfv_status launch_planes(nfv_context *ctx, cl_kernel k, const size_t global[3])
{
    size_t local[3] = {global[0], global[1], 1};
    return nfv_kernel_launch(ctx, k, 3, global, global[0] * global[1] <= nfv_kernel_max_local(ctx, k) ? local : NULL);
}

nfv_status nfv_maxpool3d_forward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *x, nfv_tensor *y,
                                 nfv_tensor *argmax)
{
    if (!ctx || !x || !y) return nfv_fail(NFV_ERR_INVALID_ARG, "maxpool3d forward: NULL tensor");
    pool_geom g;
    NFV_TRY(pool_geometry("maxpool3d forward", p, x, y, &g));
    if (argmax && argmax->numel != y->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "maxpool3d forward: argmax has %zu elements, y %zu", argmax->numel, y->numel);
    int w2 = use_w2(ctx, p, &g), w3 = !w2 && use_w3(ctx, p, &g);
    size_t vec = w2 || w3 ? (size_t)nfv_context_vector_width(ctx) : 1;
    const char *name = w2   ? (argmax ? "maxpool3d_forward_w2" : "maxpool3d_forward_w2_noidx")
                       : w3 ? (argmax ? "maxpool3d_forward_w3" : "maxpool3d_forward_w3_noidx")
                            : (argmax ? "maxpool3d_forward" : "maxpool3d_forward_noidx");
    cl_kernel k;
    NFV_TRY(pool_kernel(ctx, 1, p, &g, name, &k));
    NFV_ARG(k, name, 0, x->buf);
    NFV_ARG(k, name, 1, y->buf);
    /* The _noidx w2 and w3 kernels keep the argument but never touch it. */
    cl_mem idx_buf = argmax ? argmax->buf : y->buf;
    if (argmax || w2 || w3) NFV_ARG(k, name, 2, idx_buf);
    size_t global[3] = {((size_t)g.out[2] + vec - 1) / vec, (size_t)g.out[1], (size_t)g.n * g.c * g.out[0]};
    return launch_planes(ctx, k, global);
}

nfv_status nfv_maxpool3d_backward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *dy,
                                  const nfv_tensor *argmax, nfv_tensor *dx)
{
    if (!ctx || !dy || !argmax || !dx) return nfv_fail(NFV_ERR_INVALID_ARG, "maxpool3d backward: NULL tensor");
    pool_geom g;
    NFV_TRY(pool_geometry("maxpool3d backward", p, dx, dy, &g));
    if (argmax->numel != dy->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "maxpool3d backward: argmax has %zu elements, dy %zu", argmax->numel, dy->numel);
    int w2 = use_w2(ctx, p, &g), w3 = !w2 && use_w3(ctx, p, &g);
    size_t vec = w2 || w3 ? (size_t)nfv_context_vector_width(ctx) : 1;
    const char *name = w2 ? "maxpool3d_backward_w2" : w3 ? "maxpool3d_backward_w3" : "maxpool3d_backward";
    cl_kernel k;
    NFV_TRY(pool_kernel(ctx, 1, p, &g, name, &k));
    NFV_ARG(k, name, 0, dy->buf);
    NFV_ARG(k, name, 1, argmax->buf);
    NFV_ARG(k, name, 2, dx->buf);
    size_t global[3] = {((size_t)g.in[2] + vec - 1) / vec, (size_t)g.in[1], (size_t)g.n * g.c * g.in[0]};
    return launch_planes(ctx, k, global);
}

int nfv_maxpool3d_has_gated_padded_backward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *x,
                                            const nfv_tensor *y)
{
    pool_geom g;
    if (!ctx || !p || !x || !y || check_params("maxpool3d", p) || pool_geometry("maxpool3d", p, x, y, &g)) return 0;
    return use_w2(ctx, p, &g);
}

nfv_status nfv_maxpool3d_backward_gated_padded(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *dy,
                                               const nfv_tensor *argmax, const nfv_tensor *x,
                                               const nfv_conv3d_staging *layout, nfv_tensor *dxp)
{
    const char *name = "maxpool3d_backward_w2_gated_padded";
    if (!ctx || !dy || !argmax || !x || !dxp || !layout)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL tensor or layout", name);
    const int *pad = layout->pad;
    pool_geom g;
    NFV_TRY(pool_geometry("maxpool3d backward (gated, padded)", p, x, dy, &g));
    if (argmax->numel != dy->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: argmax has %zu elements, dy %zu", name, argmax->numel, dy->numel);
    if (!use_w2(ctx, p, &g))
        return nfv_fail(NFV_ERR_UNSUPPORTED, "%s: only kernel 2 and stride 2 along W without padding there", name);
    if (pad[0] < 0 || pad[1] < 0 || pad[2] < 0 ||
        dxp->numel < (size_t)g.n * g.c * (g.in[0] + 2 * pad[0]) * (g.in[1] + 2 * pad[1]) * (g.in[2] + 2 * pad[2]))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: padded gradient has %zu floats, too few for padding %d,%d,%d", name,
                        dxp->numel, pad[0], pad[1], pad[2]);
    if (layout->channel_rows != 0 && layout->channel_rows != g.c)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: channel rows of %d channels for a gradient of %d", name,
                        layout->channel_rows, g.c);
    size_t vec = (size_t)nfv_context_vector_width(ctx);
    cl_kernel k;
    NFV_TRY(pool_kernel_padded(ctx, 1, p, &g, layout, name, &k));
    NFV_ARG(k, name, 0, dy->buf);
    NFV_ARG(k, name, 1, argmax->buf);
    NFV_ARG(k, name, 2, dxp->buf);
    size_t global[3] = {((size_t)g.in[2] + vec - 1) / vec, (size_t)g.in[1] + 2 * pad[1],
                        (size_t)g.n * g.c * (g.in[0] + 2 * pad[0])};
    if (layout->channel_rows) {
        /* A padded plane of all C channels per work-group, or the largest
         * part of one the device allows that divides it: contiguous writes.
         * Measured (bench --only vis --profile, three rounds), the kernel's
         * time against the fused forward's: 0.55-0.57 with these groups,
         * 0.65-0.70 with one channel's plane per group. */
        global[1] *= (size_t)g.c, global[2] /= (size_t)g.c;
        size_t max_local = nfv_kernel_max_local(ctx, k), local[3] = {global[0], global[1], 1};
        while (local[1] > 1 && (global[0] * local[1] > max_local || global[1] % local[1])) local[1]--;
        return nfv_kernel_launch(ctx, k, 3, global, global[0] <= max_local ? local : NULL);
    }
    return launch_planes(ctx, k, global);
}

nfv_status nfv_avgpool3d_forward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *x, nfv_tensor *y)
{
    if (!ctx || !x || !y) return nfv_fail(NFV_ERR_INVALID_ARG, "avgpool3d forward: NULL tensor");
    pool_geom g;
    NFV_TRY(pool_geometry("avgpool3d forward", p, x, y, &g));
    cl_kernel k;
    NFV_TRY(pool_kernel(ctx, 2, p, &g, "avgpool3d_forward", &k));
    NFV_ARG(k, "avgpool3d_forward", 0, x->buf);
    NFV_ARG(k, "avgpool3d_forward", 1, y->buf);
    size_t global[3] = {(size_t)g.out[2], (size_t)g.out[1], (size_t)g.n * g.c * g.out[0]};
    return nfv_kernel_launch(ctx, k, 3, global, NULL);
}

nfv_status nfv_avgpool3d_backward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *dy, nfv_tensor *dx)
{
    if (!ctx || !dy || !dx) return nfv_fail(NFV_ERR_INVALID_ARG, "avgpool3d backward: NULL tensor");
    pool_geom g;
    NFV_TRY(pool_geometry("avgpool3d backward", p, dx, dy, &g));
    cl_kernel k;
    NFV_TRY(pool_kernel(ctx, 2, p, &g, "avgpool3d_backward", &k));
    NFV_ARG(k, "avgpool3d_backward", 0, dy->buf);
    NFV_ARG(k, "avgpool3d_backward", 1, dx->buf);
    size_t global[3] = {(size_t)g.in[2], (size_t)g.in[1], (size_t)g.n * g.c * g.in[0]};
    return nfv_kernel_launch(ctx, k, 3, global, NULL);
}

/* Power-of-two work-group size for the per-plane reductions: the kernel's
 * limit on this device, at most 256. */
static size_t reduction_local_size(nfv_context *ctx, cl_kernel k)
{
    size_t limit = nfv_kernel_max_local(ctx, k), l = 1;
    while (l * 2 <= limit && l * 2 <= 256) l *= 2;
    return l;
}

static nfv_status global_pool_check(const char *op, const nfv_tensor *big, const nfv_tensor *small)
{
    char sb[64], ss[64];
    if (big->ndim != 5 || small->ndim != 2 || small->shape[0] != big->shape[0] || small->shape[1] != big->shape[1])
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: expected x (N, C, D, H, W) and y (N, C), got %s and %s", op,
                        nfv_shape_str(big, sb, sizeof sb), nfv_shape_str(small, ss, sizeof ss));
    if (big->numel / small->numel > 0xffffffffULL)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: volume %s too large", op, nfv_shape_str(big, sb, sizeof sb));
    return NFV_OK;
}

nfv_status nfv_global_avgpool_forward(nfv_context *ctx, const nfv_tensor *x, nfv_tensor *y)
{
    if (!ctx || !x || !y) return nfv_fail(NFV_ERR_INVALID_ARG, "global avgpool forward: NULL tensor");
    NFV_TRY(global_pool_check("global avgpool forward", x, y));
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "pool", "-DPOOL_KIND=0", "global_avgpool_forward", &k));
    cl_uint n = (cl_uint)(x->numel / y->numel);
    size_t local = reduction_local_size(ctx, k);
    NFV_ARG(k, "global_avgpool_forward", 0, x->buf);
    NFV_ARG(k, "global_avgpool_forward", 1, y->buf);
    NFV_ARG(k, "global_avgpool_forward", 2, n);
    NFV_CL_CHECK(clSetKernelArg(k, 3, local * sizeof(float), NULL), "clSetKernelArg", "global_avgpool_forward");
    size_t global = local * y->numel;
    return nfv_kernel_launch(ctx, k, 1, &global, &local);
}

nfv_status nfv_global_avgpool_backward(nfv_context *ctx, const nfv_tensor *dy, nfv_tensor *dx)
{
    if (!ctx || !dy || !dx) return nfv_fail(NFV_ERR_INVALID_ARG, "global avgpool backward: NULL tensor");
    NFV_TRY(global_pool_check("global avgpool backward", dx, dy));
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "pool", "-DPOOL_KIND=0", "global_avgpool_backward", &k));
    cl_uint n = (cl_uint)(dx->numel / dy->numel);
    NFV_ARG(k, "global_avgpool_backward", 0, dy->buf);
    NFV_ARG(k, "global_avgpool_backward", 1, dx->buf);
    NFV_ARG(k, "global_avgpool_backward", 2, n);
    size_t global[2] = {n, dy->numel};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

/* x (N, C, D, H, W) and y / argmax of N*C elements each ((N, C) or (N, C, 1, 1, 1)). */
static nfv_status global_max_check(const char *op, const nfv_tensor *x, const nfv_tensor *y, const nfv_tensor *argmax)
{
    char sx[64], sy[64], sa[64];
    int ok = x->ndim == 5 && (y->ndim == 2 || (y->ndim == 5 && y->shape[2] == 1 && y->shape[3] == 1 &&
                                                y->shape[4] == 1));
    ok = ok && y->shape[0] == x->shape[0] && y->shape[1] == x->shape[1];
    if (!ok)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: expected x (N, C, D, H, W) and y (N, C) or (N, C, 1, 1, 1), got %s and %s",
                        op, nfv_shape_str(x, sx, sizeof sx), nfv_shape_str(y, sy, sizeof sy));
    if (argmax && argmax->numel != y->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: argmax %s has %zu elements, pooled %s %zu", op,
                        nfv_shape_str(argmax, sa, sizeof sa), argmax->numel, nfv_shape_str(y, sy, sizeof sy), y->numel);
    if (x->numel / y->numel > 0x7fffffffULL)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: volume %s too large", op, nfv_shape_str(x, sx, sizeof sx));
    return NFV_OK;
}

nfv_status nfv_global_maxpool_forward(nfv_context *ctx, const nfv_tensor *x, nfv_tensor *y, nfv_tensor *argmax)
{
    if (!ctx || !x || !y) return nfv_fail(NFV_ERR_INVALID_ARG, "global maxpool forward: NULL tensor");
    NFV_TRY(global_max_check("global maxpool forward", x, y, argmax));
    const char *name = "global_maxpool_forward";
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "pool", "-DPOOL_KIND=0", name, &k));
    cl_uint n = (cl_uint)(x->numel / y->numel);
    cl_int with_idx = argmax != NULL;
    cl_mem idx = argmax ? argmax->buf : y->buf; /* never written without argmax */
    size_t local = reduction_local_size(ctx, k);
    NFV_ARG(k, name, 0, x->buf);
    NFV_ARG(k, name, 1, y->buf);
    NFV_ARG(k, name, 2, idx);
    NFV_ARG(k, name, 3, n);
    NFV_ARG(k, name, 4, with_idx);
    NFV_CL_CHECK(clSetKernelArg(k, 5, local * sizeof(float), NULL), "clSetKernelArg", name);
    NFV_CL_CHECK(clSetKernelArg(k, 6, local * sizeof(cl_int), NULL), "clSetKernelArg", name);
    size_t global = local * y->numel;
    return nfv_kernel_launch(ctx, k, 1, &global, &local);
}

nfv_status nfv_global_maxpool_backward(nfv_context *ctx, const nfv_tensor *dy, const nfv_tensor *argmax, nfv_tensor *dx)
{
    if (!ctx || !dy || !argmax || !dx) return nfv_fail(NFV_ERR_INVALID_ARG, "global maxpool backward: NULL tensor");
    NFV_TRY(global_max_check("global maxpool backward", dx, dy, argmax));
    const char *name = "global_maxpool_backward";
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "pool", "-DPOOL_KIND=0", name, &k));
    cl_uint n = (cl_uint)(dx->numel / dy->numel);
    NFV_ARG(k, name, 0, dy->buf);
    NFV_ARG(k, name, 1, argmax->buf);
    NFV_ARG(k, name, 2, dx->buf);
    NFV_ARG(k, name, 3, n);
    size_t global[2] = {n, dy->numel};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}
