/* Elementwise helpers (axpy, scale, clamp, abs_accumulate); kernels in cl/elementwise.cl. */
#include <stdio.h>

#include "neurofv/ops.h"

/* Work-items needed when each handles vec consecutive floats. */
static size_t vec_items(size_t n, int vec) { return (n + (size_t)vec - 1) / (size_t)vec; }

nfv_status nfv_axpy(nfv_context *ctx, float a, const nfv_tensor *x, nfv_tensor *y)
{
    if (!ctx || !x || !y || !x->buf || !y->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "axpy: NULL tensor");
    if (x->numel != y->numel) {
        char sx[64], sy[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "axpy: x %s and y %s differ in size", nfv_shape_str(x, sx, sizeof sx),
                        nfv_shape_str(y, sy, sizeof sy));
    }
    int vec = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "elementwise", opts, "axpy", &k));
    cl_ulong n = x->numel;
    NFV_ARG(k, "axpy", 0, a);
    NFV_ARG(k, "axpy", 1, x->buf);
    NFV_ARG(k, "axpy", 2, y->buf);
    NFV_ARG(k, "axpy", 3, n);
    size_t global = vec_items(x->numel, vec);
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_scale(nfv_context *ctx, float a, nfv_tensor *x)
{
    if (!ctx || !x || !x->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "scale: NULL tensor");
    int vec = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "elementwise", opts, "scale", &k));
    cl_ulong n = x->numel;
    NFV_ARG(k, "scale", 0, a);
    NFV_ARG(k, "scale", 1, x->buf);
    NFV_ARG(k, "scale", 2, n);
    size_t global = vec_items(x->numel, vec);
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_clamp(nfv_context *ctx, float lo, float hi, nfv_tensor *x)
{
    if (!ctx || !x || !x->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "clamp: NULL tensor");
    if (!(lo <= hi)) return nfv_fail(NFV_ERR_INVALID_ARG, "clamp: empty range [%g, %g]", lo, hi);
    int vec = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "elementwise", opts, "clamp_range", &k));
    cl_ulong n = x->numel;
    NFV_ARG(k, "clamp_range", 0, lo);
    NFV_ARG(k, "clamp_range", 1, hi);
    NFV_ARG(k, "clamp_range", 2, x->buf);
    NFV_ARG(k, "clamp_range", 3, n);
    size_t global = vec_items(x->numel, vec);
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_abs_accumulate(nfv_context *ctx, const nfv_tensor *x, nfv_tensor *y)
{
    if (!ctx || !x || !y || !x->buf || !y->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "abs_accumulate: NULL tensor");
    if (x->numel != y->numel) {
        char sx[64], sy[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "abs_accumulate: x %s and y %s differ in size",
                        nfv_shape_str(x, sx, sizeof sx), nfv_shape_str(y, sy, sizeof sy));
    }
    int vec = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "elementwise", opts, "abs_accumulate", &k));
    cl_ulong n = x->numel;
    NFV_ARG(k, "abs_accumulate", 0, x->buf);
    NFV_ARG(k, "abs_accumulate", 1, y->buf);
    NFV_ARG(k, "abs_accumulate", 2, n);
    size_t global = vec_items(x->numel, vec);
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}
