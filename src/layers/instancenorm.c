/* InstanceNorm3d forward and backward; kernels in cl/instancenorm.cl, whose
 * header describes the per-plane work-group reductions. */
#include <math.h>
#include <stdio.h>

#include "neurofv/ops.h"

static nfv_status in_kernel(nfv_context *ctx, const char *name, cl_kernel *k)
{
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", nfv_context_vector_width(ctx));
    return nfv_kernel_get(ctx, "instancenorm", opts, name, k);
}

/* Sizes of one call: x (N, C, D, H, W), S = D*H*W. */
typedef struct in_geom {
    cl_uint n, c, s;
} in_geom;

static nfv_status check_x(const char *op, const nfv_tensor *x, in_geom *g)
{
    char sx[64];
    if (!x || !x->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL input", op);
    if (x->ndim != 5)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s is not (N, C, D, H, W)", op, nfv_shape_str(x, sx, sizeof sx));
    size_t s = (size_t)x->shape[2] * x->shape[3] * x->shape[4];
    if (s == 0 || x->numel == 0)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s is empty", op, nfv_shape_str(x, sx, sizeof sx));
    if (s > 0x7fffffffULL || (size_t)x->shape[0] * x->shape[1] > 0x7fffffffULL)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s too large", op, nfv_shape_str(x, sx, sizeof sx));
    g->n = (cl_uint)x->shape[0];
    g->c = (cl_uint)x->shape[1];
    g->s = (cl_uint)s;
    return NFV_OK;
}

/* t (may be NULL when optional) holds `count` values: one per channel or per (n, c). */
static nfv_status check_count(const char *op, const char *what, const nfv_tensor *t, size_t count, const char *per)
{
    if (!t || !t->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    if (t->numel != count) {
        char st[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected %zu values (%s)", op, what,
                        nfv_shape_str(t, st, sizeof st), count, per);
    }
    return NFV_OK;
}

static nfv_status check_like_x(const char *op, const char *what, const nfv_tensor *t, const nfv_tensor *x)
{
    if (!t || !t->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    int same = t->ndim == x->ndim;
    for (int i = 0; same && i < x->ndim; i++) same = t->shape[i] == x->shape[i];
    if (!same) {
        char st[64], sx[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s (the input's)", op, what,
                        nfv_shape_str(t, st, sizeof st), nfv_shape_str(x, sx, sizeof sx));
    }
    return NFV_OK;
}

/* A device scratch buffer for one call, released once the launches using it
 * are queued (OpenCL keeps it until they finish). */
static nfv_status scratch(nfv_context *ctx, size_t floats, const char *what, cl_mem *out)
{
    cl_int err;
    *out = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_WRITE, floats * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", what, __FILE__, __LINE__);
    return NFV_OK;
}

/* The reduction work-group size: the largest power of two the kernel may use
 * on this device (its limit and the kernel config's cap), no larger than
 * needed to give each work-item one value of a plane of s. */
static size_t reduction_local(nfv_context *ctx, cl_kernel k, cl_uint s)
{
    size_t limit = nfv_kernel_max_local(ctx, k), l = 1;
    while (l * 2 <= limit && l < s) l *= 2;
    return l;
}

/* Queue a per-plane reduction kernel: one work-group per (n, c). */
static nfv_status launch_groups(nfv_context *ctx, cl_kernel k, const char *name, cl_uint local_arg, const in_geom *g)
{
    size_t local = reduction_local(ctx, k, g->s), global = local * g->n * g->c;
    NFV_CL_CHECK(clSetKernelArg(k, local_arg, local * sizeof(float), NULL), "clSetKernelArg", name);
    return nfv_kernel_launch(ctx, k, 1, &global, &local);
}

/* Queue a per-plane elementwise kernel over x's geometry. */
static nfv_status launch_planes(nfv_context *ctx, cl_kernel k, const in_geom *g)
{
    size_t vec = (size_t)nfv_context_vector_width(ctx);
    size_t global[2] = {(g->s + vec - 1) / vec, (size_t)g->n * g->c};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

static nfv_status copy_planes(nfv_context *ctx, cl_mem src, size_t offset, size_t count, nfv_tensor *dst,
                              const char *what)
{
    if (!dst) return NFV_OK;
    NFV_CL_CHECK(clEnqueueCopyBuffer(nfv_context_queue(ctx), src, dst->buf, offset * sizeof(float), 0,
                                     count * sizeof(float), 0, NULL, NULL),
                 "clEnqueueCopyBuffer", what);
    return NFV_OK;
}

static nfv_status forward_queue(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                const nfv_tensor *beta, float eps, nfv_tensor *y, const in_geom *g, cl_mem stats)
{
    cl_kernel k;
    NFV_TRY(in_kernel(ctx, "in_stats", &k));
    NFV_ARG(k, "in_stats", 0, x->buf);
    NFV_ARG(k, "in_stats", 1, stats);
    NFV_ARG(k, "in_stats", 2, g->s);
    NFV_ARG(k, "in_stats", 3, eps);
    NFV_TRY(launch_groups(ctx, k, "in_stats", 4, g));

    cl_int affine = gamma != NULL;
    /* Without affine the kernel never reads gamma/beta; any buffer will do. */
    cl_mem gb = affine ? gamma->buf : stats, bb = affine ? beta->buf : stats;
    NFV_TRY(in_kernel(ctx, "in_apply", &k));
    NFV_ARG(k, "in_apply", 0, x->buf);
    NFV_ARG(k, "in_apply", 1, y->buf);
    NFV_ARG(k, "in_apply", 2, stats);
    NFV_ARG(k, "in_apply", 3, gb);
    NFV_ARG(k, "in_apply", 4, bb);
    NFV_ARG(k, "in_apply", 5, affine);
    NFV_ARG(k, "in_apply", 6, g->s);
    NFV_ARG(k, "in_apply", 7, g->c);
    return launch_planes(ctx, k, g);
}

nfv_status nfv_instancenorm3d_forward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                      const nfv_tensor *beta, float eps, nfv_tensor *y, nfv_tensor *save_mean,
                                      nfv_tensor *save_invstd)
{
    static const char *op = "instancenorm3d forward";
    in_geom g;
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_x(op, x, &g));
    NFV_TRY(check_like_x(op, "y", y, x));
    if ((gamma == NULL) != (beta == NULL))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: gamma and beta must both be given (affine) or both NULL", op);
    if (gamma) {
        NFV_TRY(check_count(op, "gamma", gamma, g.c, "one per channel"));
        NFV_TRY(check_count(op, "beta", beta, g.c, "one per channel"));
    }
    size_t planes = (size_t)g.n * g.c;
    if (save_mean) NFV_TRY(check_count(op, "save_mean", save_mean, planes, "one per (n, c)"));
    if (save_invstd) NFV_TRY(check_count(op, "save_invstd", save_invstd, planes, "one per (n, c)"));
    if (!(eps > 0.0f) || !isfinite(eps)) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: eps %g must be > 0", op, eps);
    cl_mem stats;
    NFV_TRY(scratch(ctx, 3 * planes, "instancenorm statistics", &stats));
    nfv_status st = forward_queue(ctx, x, gamma, beta, eps, y, &g, stats);
    if (st == NFV_OK) st = copy_planes(ctx, stats, 0, planes, save_mean, "instancenorm save_mean");
    if (st == NFV_OK) st = copy_planes(ctx, stats, planes, planes, save_invstd, "instancenorm save_invstd");
    clReleaseMemObject(stats);
    return st;
}

static nfv_status backward_queue(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                 const nfv_tensor *gamma, const nfv_tensor *save_mean, const nfv_tensor *save_invstd,
                                 nfv_tensor *dx, nfv_tensor *dgamma, nfv_tensor *dbeta, const in_geom *g, cl_mem part,
                                 cl_mem coef)
{
    cl_kernel k;
    NFV_TRY(in_kernel(ctx, "in_backward_stats", &k));
    NFV_ARG(k, "in_backward_stats", 0, x->buf);
    NFV_ARG(k, "in_backward_stats", 1, dy->buf);
    NFV_ARG(k, "in_backward_stats", 2, save_mean->buf);
    NFV_ARG(k, "in_backward_stats", 3, save_invstd->buf);
    NFV_ARG(k, "in_backward_stats", 4, part);
    NFV_ARG(k, "in_backward_stats", 5, g->s);
    NFV_TRY(launch_groups(ctx, k, "in_backward_stats", 6, g));

    if (dgamma || dbeta) {
        NFV_TRY(in_kernel(ctx, "in_backward_params", &k));
        NFV_ARG(k, "in_backward_params", 0, part);
        NFV_ARG(k, "in_backward_params", 1, coef);
        NFV_ARG(k, "in_backward_params", 2, g->n);
        NFV_ARG(k, "in_backward_params", 3, g->c);
        size_t gc = g->c;
        NFV_TRY(nfv_kernel_launch(ctx, k, 1, &gc, NULL));
        NFV_TRY(copy_planes(ctx, coef, 0, g->c, dgamma, "instancenorm dgamma"));
        NFV_TRY(copy_planes(ctx, coef, g->c, g->c, dbeta, "instancenorm dbeta"));
    }
    if (!dx) return NFV_OK;
    cl_int affine = gamma != NULL;
    cl_mem gb = affine ? gamma->buf : part;
    NFV_TRY(in_kernel(ctx, "in_backward_apply", &k));
    NFV_ARG(k, "in_backward_apply", 0, x->buf);
    NFV_ARG(k, "in_backward_apply", 1, dy->buf);
    NFV_ARG(k, "in_backward_apply", 2, dx->buf);
    NFV_ARG(k, "in_backward_apply", 3, save_mean->buf);
    NFV_ARG(k, "in_backward_apply", 4, save_invstd->buf);
    NFV_ARG(k, "in_backward_apply", 5, gb);
    NFV_ARG(k, "in_backward_apply", 6, affine);
    NFV_ARG(k, "in_backward_apply", 7, part);
    NFV_ARG(k, "in_backward_apply", 8, g->s);
    NFV_ARG(k, "in_backward_apply", 9, g->c);
    return launch_planes(ctx, k, g);
}

nfv_status nfv_instancenorm3d_backward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                       const nfv_tensor *gamma, const nfv_tensor *save_mean,
                                       const nfv_tensor *save_invstd, nfv_tensor *dx, nfv_tensor *dgamma,
                                       nfv_tensor *dbeta)
{
    static const char *op = "instancenorm3d backward";
    in_geom g;
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_x(op, x, &g));
    NFV_TRY(check_like_x(op, "dy", dy, x));
    if (dx) NFV_TRY(check_like_x(op, "dx", dx, x));
    size_t planes = (size_t)g.n * g.c;
    if (gamma) NFV_TRY(check_count(op, "gamma", gamma, g.c, "one per channel"));
    NFV_TRY(check_count(op, "save_mean", save_mean, planes, "one per (n, c)"));
    NFV_TRY(check_count(op, "save_invstd", save_invstd, planes, "one per (n, c)"));
    if (dgamma) NFV_TRY(check_count(op, "dgamma", dgamma, g.c, "one per channel"));
    if (dbeta) NFV_TRY(check_count(op, "dbeta", dbeta, g.c, "one per channel"));
    if (!dx && !dgamma && !dbeta) return NFV_OK;
    cl_mem part = NULL, coef = NULL;
    NFV_TRY(scratch(ctx, 2 * planes, "instancenorm backward sums", &part));
    nfv_status st = scratch(ctx, 2 * (size_t)g.c, "instancenorm parameter gradients", &coef);
    if (st == NFV_OK)
        st = backward_queue(ctx, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, &g, part, coef);
    clReleaseMemObject(part);
    if (coef) clReleaseMemObject(coef);
    return st;
}
