/* Feature-visualization penalties (L1, L2, 3D total variation), the brain
 * mask and the separable Gaussian blur; kernels in cl/vis.cl.  See
 * include/neurofv/vis_ops.h for the shapes. */
#include "runtime/internal.h"
#include "neurofv/vis_ops.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Scratch slots NFV_SCRATCH_VIS_* (src/runtime/internal.h), used only within
 * one call: a fresh 14 MB buffer per blur cost more than the blur itself on
 * the CPU device (page faults), and the contents need not survive the call. */

/* Read (N, 1, D, H, W), (1, D, H, W) or (D, H, W) into n and dims; checks C = 1. */
static nfv_status volume_shape(const char *op, const char *what, const nfv_tensor *t, int *n, int dims[3])
{
    char s[64];
    if (!t || !t->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s is missing", op, what);
    if (t->ndim == 5 && t->shape[1] == 1) *n = t->shape[0];
    else if (t->ndim == 4 && t->shape[0] == 1) *n = 1;
    else if (t->ndim == 3) *n = 1;
    else
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected (N, 1, D, H, W)", op, what,
                        nfv_shape_str(t, s, sizeof s));
    for (int i = 0; i < 3; i++) dims[i] = t->shape[t->ndim - 3 + i];
    if ((long long)dims[0] * dims[1] * dims[2] > INT_MAX) /* the kernels index a volume with int */
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s volume %dx%dx%d is too large", op, what, dims[0], dims[1], dims[2]);
    return NFV_OK;
}

/* A mask is shared ((1,1,)D,H,W) or per sample (N,1,D,H,W); *per_sample says which. */
static nfv_status mask_shape(const char *op, const nfv_tensor *mask, int n, const int dims[3], int *per_sample)
{
    int mn, md[3];
    NFV_TRY(volume_shape(op, "mask", mask, &mn, md));
    char s[64];
    if (md[0] != dims[0] || md[1] != dims[1] || md[2] != dims[2] || (mn != 1 && mn != n))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: mask shape %s does not match %d volumes of %dx%dx%d", op,
                        nfv_shape_str(mask, s, sizeof s), n, dims[0], dims[1], dims[2]);
    *per_sample = mn == n && n > 1;
    return NFV_OK;
}

static const char *penalty_name(nfv_penalty_kind k)
{
    switch (k) {
    case NFV_PENALTY_L1: return "L1";
    case NFV_PENALTY_L2: return "L2";
    case NFV_PENALTY_TV: return "TV";
    case NFV_PENALTY_TV_SQ: return "squared TV";
    }
    return "?";
}

/* Every kernel of cl/vis.cl comes from one program built with the vector width. */
static nfv_status vis_kernel(nfv_context *ctx, const char *name, cl_kernel *k)
{
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", nfv_context_vector_width(ctx));
    return nfv_kernel_get(ctx, "vis", opts, name, k);
}

/* The one local size of the flat launches here: PoCL compiles a work-group
 * function per local size, and its own choice for 3D ranges was slow. */
static size_t flat_local(nfv_context *ctx)
{
    size_t local = 64, maxwg = nfv_context_max_local(ctx);
    return local > maxwg ? maxwg : local;
}

static nfv_status penalty_launch(nfv_context *ctx, nfv_penalty_kind kind, float weight, float eps,
                                 const nfv_tensor *x, const nfv_tensor *mask, int per_sample, nfv_tensor *value,
                                 nfv_tensor *grad, const int dims[3], int n, cl_mem rows)
{
    cl_kernel k;
    NFV_TRY(vis_kernel(ctx, "penalty_rows", &k));
    /* Absent mask/grad: any valid buffer, never touched (has_mask/has_grad = 0). */
    cl_mem mbuf = mask ? mask->buf : x->buf, gbuf = grad ? grad->buf : x->buf;
    int D = dims[0], H = dims[1], W = dims[2], ikind = (int)kind, has_mask = mask != NULL, has_grad = grad != NULL;
    NFV_ARG(k, "penalty_rows", 0, ikind);
    NFV_ARG(k, "penalty_rows", 1, x->buf);
    NFV_ARG(k, "penalty_rows", 2, mbuf);
    NFV_ARG(k, "penalty_rows", 3, has_mask);
    NFV_ARG(k, "penalty_rows", 4, per_sample);
    NFV_ARG(k, "penalty_rows", 5, gbuf);
    NFV_ARG(k, "penalty_rows", 6, has_grad);
    NFV_ARG(k, "penalty_rows", 7, rows);
    NFV_ARG(k, "penalty_rows", 8, D);
    NFV_ARG(k, "penalty_rows", 9, H);
    NFV_ARG(k, "penalty_rows", 10, W);
    NFV_ARG(k, "penalty_rows", 11, weight);
    NFV_ARG(k, "penalty_rows", 12, eps);
    NFV_ARG(k, "penalty_rows", 13, n);
    /* One work-item per row (n, z, y), a flat range with a fixed local size. */
    size_t local = flat_local(ctx), global = ((size_t)n * D * H + local - 1) / local * local;
    NFV_TRY(nfv_kernel_launch(ctx, k, 1, &global, &local));
    if (!value) return NFV_OK;
    cl_kernel r;
    NFV_TRY(vis_kernel(ctx, "penalty_reduce", &r));
    /* One output per sample, or one for the whole batch. */
    int count = value->numel == 1 ? n * D * H : D * H;
    size_t outs = value->numel;
    NFV_ARG(r, "penalty_reduce", 0, rows);
    NFV_ARG(r, "penalty_reduce", 1, count);
    NFV_ARG(r, "penalty_reduce", 2, weight);
    NFV_ARG(r, "penalty_reduce", 3, value->buf);
    return nfv_kernel_launch(ctx, r, 1, &outs, NULL);
}

nfv_status nfv_penalty(nfv_context *ctx, nfv_penalty_kind kind, float weight, float eps, const nfv_tensor *x,
                       const nfv_tensor *mask, nfv_tensor *value, nfv_tensor *grad)
{
    const char *op = "penalty";
    if (kind < NFV_PENALTY_L1 || kind > NFV_PENALTY_TV_SQ)
        return nfv_fail(NFV_ERR_INVALID_ARG, "penalty: unknown kind %d", (int)kind);
    int n, dims[3], per_sample = 0;
    NFV_TRY(volume_shape(op, "x", x, &n, dims));
    if (mask) NFV_TRY(mask_shape(op, mask, n, dims, &per_sample));
    if (kind == NFV_PENALTY_TV && !(eps > 0.0f))
        return nfv_fail(NFV_ERR_INVALID_ARG, "penalty TV: eps must be > 0 (got %g)", (double)eps);
    if (grad && grad->numel != x->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "penalty %s: grad has %zu elements, x %zu", penalty_name(kind),
                        grad->numel, x->numel);
    if (value && value->numel != 1 && value->numel != (size_t)n)
        return nfv_fail(NFV_ERR_INVALID_ARG, "penalty %s: value has %zu elements, expected 1 or N = %d",
                        penalty_name(kind), value->numel, n);
    if (!value && !grad) return NFV_OK;

    /* Row partial sums (N*D*H floats) in a scratch slot. */
    size_t nrows = (size_t)n * dims[0] * dims[1];
    cl_mem rows;
    nfv_status st = nfv_scratch_get(ctx, NFV_SCRATCH_VIS_PENALTY_ROWS, nrows * sizeof(float), "penalty row sums", &rows);
    if (st == NFV_OK) st = penalty_launch(ctx, kind, weight, eps, x, mask, per_sample, value, grad, dims, n, rows);
    if (st != NFV_OK) return nfv_fail_context(st, "penalty %s", penalty_name(kind));
    return NFV_OK;
}

nfv_status nfv_mask_apply(nfv_context *ctx, const nfv_tensor *mask, nfv_tensor *t)
{
    int n, dims[3], per_sample;
    NFV_TRY(volume_shape("mask apply", "tensor", t, &n, dims));
    NFV_TRY(mask_shape("mask apply", mask, n, dims, &per_sample));
    cl_kernel k;
    NFV_TRY(vis_kernel(ctx, "mask_apply", &k));
    cl_int vol = dims[0] * dims[1] * dims[2]; /* volume_shape: < 2^31 */
    NFV_ARG(k, "mask_apply", 0, t->buf);
    NFV_ARG(k, "mask_apply", 1, mask->buf);
    NFV_ARG(k, "mask_apply", 2, vol);
    NFV_ARG(k, "mask_apply", 3, per_sample);
    const int vec = nfv_context_vector_width(ctx);
    size_t global[2] = {(size_t)(vol + vec - 1) / vec, (size_t)n};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

/* Enqueue one axis pass of the blur on (N, 1, D, H, W): axis 2 (W) with
 * blur_rows, 0 (D) or 1 (H) with blur_cols; VEC x voxels per work-item. */
static nfv_status blur_pass(nfv_context *ctx, cl_mem in, cl_mem out, cl_mem coef, int R, int n, const int dims[3],
                            int axis, int replicate, int adjoint)
{
    const char *name = axis == 2 ? "blur_rows" : "blur_cols";
    cl_kernel k;
    NFV_TRY(vis_kernel(ctx, name, &k));
    NFV_ARG(k, name, 0, in);
    NFV_ARG(k, name, 1, out);
    NFV_ARG(k, name, 2, coef);
    NFV_ARG(k, name, 3, R);
    NFV_ARG(k, name, 4, dims[0]);
    NFV_ARG(k, name, 5, dims[1]);
    NFV_ARG(k, name, 6, dims[2]);
    int a = 7;
    if (axis != 2) NFV_ARG(k, name, a++, axis);
    NFV_ARG(k, name, a++, replicate);
    NFV_ARG(k, name, a++, adjoint);
    NFV_ARG(k, name, a, n);
    /* A flat range with one fixed local size (FLAT_BLOCK in cl/vis.cl):
     * PoCL's own choice for the 3D range made N = 4 20x slower than N = 1. */
    int vec = nfv_context_vector_width(ctx);
    size_t local = flat_local(ctx);
    size_t items = (size_t)((dims[2] + vec - 1) / vec) * dims[1] * n * dims[0];
    size_t global = (items + local - 1) / local * local;
    return nfv_kernel_launch(ctx, k, 1, &global, &local);
}

nfv_status nfv_gaussian_blur(nfv_context *ctx, float sigma, nfv_boundary boundary, int adjoint, const nfv_tensor *x,
                             nfv_tensor *y)
{
    int n, dims[3], ny, ydims[3];
    NFV_TRY(volume_shape("gaussian blur", "x", x, &n, dims));
    NFV_TRY(volume_shape("gaussian blur", "y", y, &ny, ydims));
    if (ny != n || ydims[0] != dims[0] || ydims[1] != dims[1] || ydims[2] != dims[2])
        return nfv_fail(NFV_ERR_INVALID_ARG, "gaussian blur: x and y shapes differ");
    if (x->buf == y->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "gaussian blur: y must not be x");
    if (!(sigma > 0.0f) || sigma > 100.0f)
        return nfv_fail(NFV_ERR_INVALID_ARG, "gaussian blur: sigma %g outside (0, 100]", (double)sigma);
    if (boundary != NFV_BOUNDARY_ZERO && boundary != NFV_BOUNDARY_REPLICATE)
        return nfv_fail(NFV_ERR_INVALID_ARG, "gaussian blur: unknown boundary %d", (int)boundary);

    /* Weights w[0..2R] normalized to sum 1 in double, then their prefix sums. */
    int R = (int)ceil(3.0 * sigma);
    int nw = 2 * R + 1;
    float *coef = malloc((size_t)(2 * nw + 1) * sizeof *coef);
    double *w = malloc((size_t)nw * sizeof *w);
    if (!coef || !w) {
        free(coef);
        free(w);
        return nfv_fail(NFV_ERR_NO_MEMORY, "gaussian blur: out of memory");
    }
    double total = 0.0, run = 0.0;
    for (int i = 0; i < nw; i++) total += w[i] = exp(-0.5 * (double)(i - R) * (i - R) / ((double)sigma * sigma));
    coef[nw] = 0.0f;
    for (int i = 0; i < nw; i++) {
        coef[i] = (float)(w[i] / total);
        run += w[i] / total;
        coef[nw + 1 + i] = (float)run;
    }
    free(w);
    cl_int err;
    cl_mem cbuf = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                 (size_t)(2 * nw + 1) * sizeof(float), coef, &err);
    free(coef);
    if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", "blur weights", __FILE__, __LINE__);
    cl_mem tmp;
    nfv_status sst = nfv_scratch_get(ctx, NFV_SCRATCH_VIS_BLUR_TMP, x->numel * sizeof(float), "blur scratch", &tmp);
    if (sst != NFV_OK) {
        clReleaseMemObject(cbuf);
        return nfv_fail_context(sst, "gaussian blur");
    }
    nfv_status st = NFV_OK;
    int rep = boundary == NFV_BOUNDARY_REPLICATE;
    /* The three axis operators act on different axes and commute, so the
     * adjoint is the same sequence of per-axis adjoints: x -> y (W), y -> tmp (H), tmp -> y (D). */
    if (st == NFV_OK) st = blur_pass(ctx, x->buf, y->buf, cbuf, R, n, dims, 2, rep, adjoint);
    if (st == NFV_OK) st = blur_pass(ctx, y->buf, tmp, cbuf, R, n, dims, 1, rep, adjoint);
    if (st == NFV_OK) st = blur_pass(ctx, tmp, y->buf, cbuf, R, n, dims, 0, rep, adjoint);
    clReleaseMemObject(cbuf);
    return st == NFV_OK ? NFV_OK : nfv_fail_context(st, "gaussian blur");
}
