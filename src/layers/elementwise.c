/* Elementwise helpers (axpy, scale, clamp, abs_accumulate); kernels in cl/elementwise.cl. */
#include <stdio.h>

#include "neurofv/ops.h"

/* The kernel `name` of cl/elementwise.cl built for the device's vector width:
 * each work-item handles *vec consecutive floats. */
static nfv_status vec_kernel(nfv_context *ctx, const char *name, cl_kernel *k, int *vec)
{
    *vec = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", *vec);
    return nfv_kernel_get(ctx, "elementwise", opts, name, k);
}

/* Launch over n floats, vec per work-item. */
static nfv_status vec_launch(nfv_context *ctx, cl_kernel k, size_t n, int vec)
{
    size_t global = (n + (size_t)vec - 1) / (size_t)vec;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

/* x and y present and of the same size (op names the caller in the error). */
static nfv_status same_size(const char *op, const nfv_tensor *x, const nfv_tensor *y)
{
    if (!x || !y || !x->buf || !y->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL tensor", op);
    if (x->numel != y->numel) {
        char sx[64], sy[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: x %s and y %s differ in size", op, nfv_shape_str(x, sx, sizeof sx),
                        nfv_shape_str(y, sy, sizeof sy));
    }
    return NFV_OK;
}

nfv_status nfv_axpy(nfv_context *ctx, float a, const nfv_tensor *x, nfv_tensor *y)
{
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "axpy: no context");
    NFV_TRY(same_size("axpy", x, y));
    cl_kernel k;
    int vec;
    NFV_TRY(vec_kernel(ctx, "axpy", &k, &vec));
    cl_ulong n = x->numel;
    NFV_ARG(k, "axpy", 0, a);
    NFV_ARG(k, "axpy", 1, x->buf);
    NFV_ARG(k, "axpy", 2, y->buf);
    NFV_ARG(k, "axpy", 3, n);
    return vec_launch(ctx, k, x->numel, vec);
}

nfv_status nfv_scale(nfv_context *ctx, float a, nfv_tensor *x)
{
    if (!ctx || !x || !x->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "scale: NULL tensor");
    cl_kernel k;
    int vec;
    NFV_TRY(vec_kernel(ctx, "scale", &k, &vec));
    cl_ulong n = x->numel;
    NFV_ARG(k, "scale", 0, a);
    NFV_ARG(k, "scale", 1, x->buf);
    NFV_ARG(k, "scale", 2, n);
    return vec_launch(ctx, k, x->numel, vec);
}

nfv_status nfv_clamp(nfv_context *ctx, float lo, float hi, nfv_tensor *x)
{
    if (!ctx || !x || !x->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "clamp: NULL tensor");
    if (!(lo <= hi)) return nfv_fail(NFV_ERR_INVALID_ARG, "clamp: empty range [%g, %g]", lo, hi);
    cl_kernel k;
    int vec;
    NFV_TRY(vec_kernel(ctx, "clamp_range", &k, &vec));
    cl_ulong n = x->numel;
    NFV_ARG(k, "clamp_range", 0, lo);
    NFV_ARG(k, "clamp_range", 1, hi);
    NFV_ARG(k, "clamp_range", 2, x->buf);
    NFV_ARG(k, "clamp_range", 3, n);
    return vec_launch(ctx, k, x->numel, vec);
}

nfv_status nfv_abs_accumulate(nfv_context *ctx, const nfv_tensor *x, nfv_tensor *y)
{
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "abs_accumulate: no context");
    NFV_TRY(same_size("abs_accumulate", x, y));
    cl_kernel k;
    int vec;
    NFV_TRY(vec_kernel(ctx, "abs_accumulate", &k, &vec));
    cl_ulong n = x->numel;
    NFV_ARG(k, "abs_accumulate", 0, x->buf);
    NFV_ARG(k, "abs_accumulate", 1, y->buf);
    NFV_ARG(k, "abs_accumulate", 2, n);
    return vec_launch(ctx, k, x->numel, vec);
}
