/* ReLU, LeakyReLU, ELU, Sigmoid forward and backward; kernels in cl/activation.cl. */
#include <math.h>
#include <stdio.h>

#include "neurofv/ops.h"

static const char *kind_name(nfv_activation kind)
{
    switch (kind) {
    case NFV_RELU: return "relu";
    case NFV_LEAKY_RELU: return "leaky_relu";
    case NFV_ELU: return "elu";
    case NFV_SIGMOID: return "sigmoid";
    }
    return NULL;
}

static nfv_status check_same(const char *op, const nfv_tensor *a, const nfv_tensor *b)
{
    if (a->numel != b->numel) {
        char sa[64], sb[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: shapes %s and %s differ in size", op, nfv_shape_str(a, sa, sizeof sa),
                        nfv_shape_str(b, sb, sizeof sb));
    }
    return NFV_OK;
}

nfv_status nfv_activation_forward(nfv_context *ctx, nfv_activation kind, float alpha, const nfv_tensor *x,
                                  nfv_tensor *y)
{
    const char *name = kind_name(kind);
    if (!name) return nfv_fail(NFV_ERR_INVALID_ARG, "activation forward: unknown kind %d", (int)kind);
    if (!ctx || !x || !y || !x->buf || !y->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s forward: NULL tensor", name);
    if (!isfinite(alpha)) return nfv_fail(NFV_ERR_INVALID_ARG, "%s forward: alpha %g is not finite", name, alpha);
    NFV_TRY(check_same(name, x, y));
    int vec = nfv_context_vector_width(ctx);
    char opts[32], kname[48];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    snprintf(kname, sizeof kname, "%s_forward", name);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "activation", opts, kname, &k));
    cl_ulong n = x->numel;
    NFV_ARG(k, kname, 0, x->buf);
    NFV_ARG(k, kname, 1, y->buf);
    NFV_ARG(k, kname, 2, alpha);
    NFV_ARG(k, kname, 3, n);
    size_t global = (x->numel + (size_t)vec - 1) / (size_t)vec;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_activation_backward(nfv_context *ctx, nfv_activation kind, float alpha, const nfv_tensor *x,
                                   const nfv_tensor *dy, nfv_tensor *dx)
{
    const char *name = kind_name(kind);
    if (!name) return nfv_fail(NFV_ERR_INVALID_ARG, "activation backward: unknown kind %d", (int)kind);
    if (!ctx || !x || !dy || !dx || !x->buf || !dy->buf || !dx->buf)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s backward: NULL tensor", name);
    if (!isfinite(alpha)) return nfv_fail(NFV_ERR_INVALID_ARG, "%s backward: alpha %g is not finite", name, alpha);
    NFV_TRY(check_same(name, x, dy));
    NFV_TRY(check_same(name, x, dx));
    int vec = nfv_context_vector_width(ctx);
    char opts[32], kname[48];
    snprintf(opts, sizeof opts, "-DVEC=%d", vec);
    snprintf(kname, sizeof kname, "%s_backward", name);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "activation", opts, kname, &k));
    cl_ulong n = x->numel;
    NFV_ARG(k, kname, 0, x->buf);
    NFV_ARG(k, kname, 1, dy->buf);
    NFV_ARG(k, kname, 2, dx->buf);
    NFV_ARG(k, kname, 3, alpha);
    NFV_ARG(k, kname, 4, n);
    size_t global = (x->numel + (size_t)vec - 1) / (size_t)vec;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}
