/* Optimizer steps on the device (cl/optim.cl): Adam / AdamW and SGD with
 * momentum, with PyTorch's exact update formulas (see the kernels).  Each
 * step is one launch over the parameter's elements, queued without waiting. */
#include <math.h>
#include <stdio.h>

#include "neurofv/ops.h"

static nfv_status numel_fail(const char *op, const char *arg, const nfv_tensor *t, const nfv_tensor *param)
{
    char got[64], want[64];
    return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected as many elements as param %s", op, arg,
                    t ? nfv_shape_str(t, got, sizeof got) : "(null)", nfv_shape_str(param, want, sizeof want));
}

nfv_status nfv_adam_step(nfv_context *ctx, const nfv_adam_params *hp, int step, nfv_tensor *param,
                         const nfv_tensor *grad, nfv_tensor *m, nfv_tensor *v)
{
    static const char *op = "Adam step";
    if (!hp || !param) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: missing %s", op, hp ? "param" : "hyper-parameters");
    if (!grad || grad->numel != param->numel) return numel_fail(op, "grad", grad, param);
    if (!m || m->numel != param->numel) return numel_fail(op, "m", m, param);
    if (!v || v->numel != param->numel) return numel_fail(op, "v", v, param);
    /* The same ranges torch.optim.Adam accepts. */
    if (!(hp->lr >= 0.0f) || !(hp->eps >= 0.0f) || !(hp->weight_decay >= 0.0f) || !(hp->beta1 >= 0.0f) ||
        !(hp->beta1 < 1.0f) || !(hp->beta2 >= 0.0f) || !(hp->beta2 < 1.0f))
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "%s: invalid hyper-parameters lr=%g betas=(%g, %g) eps=%g weight_decay=%g (need lr, eps, "
                        "weight_decay >= 0 and 0 <= beta < 1)",
                        op, hp->lr, hp->beta1, hp->beta2, hp->eps, hp->weight_decay);
    if (step < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: step %d (the 1-based count after this update)", op, step);

    /* Bias corrections in double, as PyTorch computes them in Python floats. */
    const double bc1 = 1.0 - pow((double)hp->beta1, step);
    const double bc2 = 1.0 - pow((double)hp->beta2, step);
    const float step_size = (float)(hp->lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);

    cl_kernel k;
    const char *kn = "adam_step";
    NFV_TRY(nfv_kernel_get(ctx, "optim", "", kn, &k));
    const int decoupled = hp->decoupled != 0;
    NFV_ARG(k, kn, 0, param->buf);
    NFV_ARG(k, kn, 1, grad->buf);
    NFV_ARG(k, kn, 2, m->buf);
    NFV_ARG(k, kn, 3, v->buf);
    NFV_ARG(k, kn, 4, hp->lr);
    NFV_ARG(k, kn, 5, hp->beta1);
    NFV_ARG(k, kn, 6, hp->beta2);
    NFV_ARG(k, kn, 7, hp->eps);
    NFV_ARG(k, kn, 8, hp->weight_decay);
    NFV_ARG(k, kn, 9, decoupled);
    NFV_ARG(k, kn, 10, step_size);
    NFV_ARG(k, kn, 11, bc2_sqrt);
    size_t global = param->numel;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_sgd_step(nfv_context *ctx, const nfv_sgd_params *hp, nfv_tensor *param, const nfv_tensor *grad,
                        nfv_tensor *velocity)
{
    static const char *op = "SGD step";
    if (!hp || !param) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: missing %s", op, hp ? "param" : "hyper-parameters");
    if (!grad || grad->numel != param->numel) return numel_fail(op, "grad", grad, param);
    if (!(hp->lr >= 0.0f) || !(hp->momentum >= 0.0f) || !(hp->weight_decay >= 0.0f))
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "%s: invalid hyper-parameters lr=%g momentum=%g weight_decay=%g (need all >= 0)", op, hp->lr,
                        hp->momentum, hp->weight_decay);
    /* Without momentum PyTorch keeps no buffer; velocity may then be NULL. */
    const int with_momentum = hp->momentum != 0.0f;
    if (with_momentum && (!velocity || velocity->numel != param->numel))
        return numel_fail(op, "velocity", velocity, param);

    cl_kernel k;
    size_t global = param->numel;
    if (with_momentum) {
        const char *kn = "sgd_momentum_step";
        NFV_TRY(nfv_kernel_get(ctx, "optim", "", kn, &k));
        NFV_ARG(k, kn, 0, param->buf);
        NFV_ARG(k, kn, 1, grad->buf);
        NFV_ARG(k, kn, 2, velocity->buf);
        NFV_ARG(k, kn, 3, hp->lr);
        NFV_ARG(k, kn, 4, hp->momentum);
        NFV_ARG(k, kn, 5, hp->weight_decay);
    } else {
        const char *kn = "sgd_step";
        NFV_TRY(nfv_kernel_get(ctx, "optim", "", kn, &k));
        NFV_ARG(k, kn, 0, param->buf);
        NFV_ARG(k, kn, 1, grad->buf);
        NFV_ARG(k, kn, 2, hp->lr);
        NFV_ARG(k, kn, 3, hp->weight_decay);
    }
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}
