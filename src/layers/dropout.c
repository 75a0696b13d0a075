/* Inverted dropout with a counter-based hash mask; kernels in cl/activation.cl
 * (the hash is documented there and mirrored in tests/ref_layers.c). */
#include <math.h>
#include <stdio.h>

#include "neurofv/ops.h"

static nfv_status check_same(const char *op, const char *what, const nfv_tensor *a, const nfv_tensor *b)
{
    if (a->numel != b->numel) {
        char sa[64], sb[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s %s does not match %s", op, what, nfv_shape_str(b, sb, sizeof sb),
                        nfv_shape_str(a, sa, sizeof sa));
    }
    return NFV_OK;
}

nfv_status nfv_dropout_forward(nfv_context *ctx, float p, unsigned long long seed, const nfv_tensor *x,
                               nfv_tensor *y, nfv_tensor *mask)
{
    return nfv_dropout_forward_at(ctx, p, seed, 0, x, y, mask);
}

nfv_status nfv_dropout_forward_at(nfv_context *ctx, float p, unsigned long long seed, unsigned long long first,
                                  const nfv_tensor *x, nfv_tensor *y, nfv_tensor *mask)
{
    if (!ctx || !x || !y || !mask || !x->buf || !y->buf || !mask->buf)
        return nfv_fail(NFV_ERR_INVALID_ARG, "dropout forward: NULL tensor");
    if (!(p >= 0.0f && p <= 1.0f)) return nfv_fail(NFV_ERR_INVALID_ARG, "dropout forward: p = %g outside [0, 1]", p);
    NFV_TRY(check_same("dropout forward", "y", x, y));
    NFV_TRY(check_same("dropout forward", "mask", x, mask));
    /* keep <=> 24-bit hash >= threshold, so P(keep) = 1 - threshold / 2^24
     * exactly; the threshold is an integer so every device agrees. */
    double t = floor((double)p * 16777216.0 + 0.5);
    cl_uint threshold = (cl_uint)t;
    /* p = 1 drops everything; threshold 2^24 is never reached by h >> 8. */
    float scale = p < 1.0f ? (float)(1.0 / (1.0 - (double)p)) : 0.0f;
    cl_uint seed_lo = (cl_uint)(seed & 0xffffffffULL), seed_hi = (cl_uint)(seed >> 32);
    cl_ulong n = x->numel, first_index = first;
    int vec = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "activation", opts, "dropout_forward", &k));
    NFV_ARG(k, "dropout_forward", 0, x->buf);
    NFV_ARG(k, "dropout_forward", 1, y->buf);
    NFV_ARG(k, "dropout_forward", 2, mask->buf);
    NFV_ARG(k, "dropout_forward", 3, seed_lo);
    NFV_ARG(k, "dropout_forward", 4, seed_hi);
    NFV_ARG(k, "dropout_forward", 5, threshold);
    NFV_ARG(k, "dropout_forward", 6, scale);
    NFV_ARG(k, "dropout_forward", 7, n);
    NFV_ARG(k, "dropout_forward", 8, first_index);
    size_t global = x->numel;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_dropout_backward(nfv_context *ctx, const nfv_tensor *dy, const nfv_tensor *mask, nfv_tensor *dx)
{
    if (!ctx || !dy || !mask || !dx || !dy->buf || !mask->buf || !dx->buf)
        return nfv_fail(NFV_ERR_INVALID_ARG, "dropout backward: NULL tensor");
    NFV_TRY(check_same("dropout backward", "mask", dy, mask));
    NFV_TRY(check_same("dropout backward", "dx", dy, dx));
    cl_ulong n = dy->numel;
    int vec = nfv_context_vector_width(ctx);
    char opts[32];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "activation", opts, "dropout_backward", &k));
    NFV_ARG(k, "dropout_backward", 0, dy->buf);
    NFV_ARG(k, "dropout_backward", 1, mask->buf);
    NFV_ARG(k, "dropout_backward", 2, dx->buf);
    NFV_ARG(k, "dropout_backward", 3, n);
    size_t global = (dy->numel + (size_t)vec - 1) / (size_t)vec;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}
