/* Conv3d with the output channels in the vector lanes (cl/conv3d_cvec.cl),
 * for convs of few output positions: the forward (and so the input
 * gradient, a forward over dy) and the weight gradient, and the weights
 * with the output channel last that they read.  Which convs take them:
 * conv3d_fast_config's cvp (src/layers/conv3d.c, nfv_conv3d_channel_last);
 * the padded staging copy and blocking are conv3d.c's (conv3d_internal.h). */
#include "layers/conv3d_internal.h"

/* The weights of d with the output channel last (conv3d_fwd_cvec) from w
 * (CO, CI, KD, KH, KW): flip 0, wl (CI, KD, KH, KW, CO) for d's forward;
 * flip 1, wl (CO, KD, KH, KW, CI) flipped, for d's input gradient (the
 * forward over dy of conv3d_transposed_dims(d)).  In the scratch slot, or
 * while the weights are frozen the copy kept for w. */
nfv_status conv3d_channel_last_weights(nfv_context *ctx, const conv_dims *d, cl_mem w, int flip, cl_mem *wl)
{
    const int kvol = d->k[0] * d->k[1] * d->k[2];
    int fresh;
    NFV_TRY(conv3d_derived_weights(ctx, w, flip ? NFV_DERIVED_CONV_CHANNEL_LAST_FLIP : NFV_DERIVED_CONV_CHANNEL_LAST,
                                   NFV_SCRATCH_CONV_CHANNEL_LAST, (size_t)d->co * d->ci * kvol,
                                   "conv3d channel-last weights", wl, &fresh));
    if (!fresh) return NFV_OK;
    cl_kernel k;
    char go[32];
    const char *name = "conv3d_channel_last_weights";
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_cvec", conv3d_generic_options(ctx, go, sizeof go), name, &k));
    cl_int co = d->co, ci = d->ci, kv = kvol, fl = flip;
    NFV_ARG(k, name, 0, w);
    NFV_ARG(k, name, 1, *wl);
    NFV_ARG(k, name, 2, co);
    NFV_ARG(k, name, 3, ci);
    NFV_ARG(k, name, 4, kv);
    NFV_ARG(k, name, 5, fl);
    size_t global = (size_t)(flip ? d->co : d->ci) * kvol;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

/* conv3d_forward_fast through conv3d_fwd_cvec (c->cvp > 0); wl: d's
 * channel-last weights, or NULL: derived here from w. */
nfv_status conv3d_forward_cvec(nfv_context *ctx, const conv_dims *d, const fast_config *c, int relu, cl_mem x,
                               cl_mem gate, cl_mem w, cl_mem wl, cl_mem bias, cl_mem y)
{
    const char *name = "conv3d_fwd_cvec";
    char opts[512];
    conv3d_fast_options(c, d, relu, opts, sizeof opts);
    cl_kernel k;
    cl_mem xp;
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_cvec", opts, name, &k));
    if (!wl) NFV_TRY(conv3d_channel_last_weights(ctx, d, w, 0, &wl));
    if (x) NFV_TRY(conv3d_pad_input(ctx, d, x, gate, 0, &xp));
    else {
        const int dims[3] = {d->d, d->h, d->w};
        const size_t floats = nfv_conv3d_padded_floats(c->vec, d->n, d->ci, dims, d->p, d->k, d->s);
        NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PADDED, floats, "conv3d padded input", &xp)); /* staged */
    }
    cl_int has_bias = bias != NULL, npos = d->n * d->od * d->oh * d->ow;
    cl_mem b = bias ? bias : wl; /* never read without bias */
    NFV_ARG(k, name, 0, xp);
    NFV_ARG(k, name, 1, wl);
    NFV_ARG(k, name, 2, b);
    NFV_ARG(k, name, 3, y);
    NFV_ARG(k, name, 4, has_bias);
    NFV_ARG(k, name, 5, npos);
    /* A work-group is one block of VEC output channels over every position,
     * so its weights are read from memory once (fewer where the device caps
     * the group). */
    size_t global[2] = {((size_t)npos + c->cvp - 1) / c->cvp, (size_t)d->co / c->vec};
    size_t local[2] = {global[0], 1};
    return nfv_kernel_launch(ctx, k, 2, global, global[0] <= nfv_kernel_max_local(ctx, k) ? local : NULL);
}

/* dw through conv3d_bwd_weights_cvec: dy with the channel last
 * (conv3d_channel_last_dy, in the pitched-dy scratch slot), then the
 * products, straight into dw. */
nfv_status conv3d_weights_cvec(nfv_context *ctx, const conv_dims *d, const fast_config *c, cl_mem x, cl_mem dy,
                               cl_mem dw)
{
    char opts[512];
    conv3d_fast_options(c, d, 0, opts, sizeof opts);
    const size_t npos = (size_t)d->n * d->od * d->oh * d->ow;
    cl_kernel kt, k;
    cl_mem xp, dyl;
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_cvec", opts, "conv3d_channel_last_dy", &kt));
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_cvec", opts, "conv3d_bwd_weights_cvec", &k));
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PITCHED_DY, npos * d->co, "conv3d channel-last output gradient",
                           &dyl));
    NFV_ARG(kt, "conv3d_channel_last_dy", 0, dy);
    NFV_ARG(kt, "conv3d_channel_last_dy", 1, dyl);
    NFV_TRY(nfv_kernel_launch(ctx, kt, 1, &npos, NULL));
    NFV_TRY(conv3d_pad_input(ctx, d, x, NULL, 0, &xp));
    cl_int n = d->n;
    NFV_ARG(k, "conv3d_bwd_weights_cvec", 0, xp);
    NFV_ARG(k, "conv3d_bwd_weights_cvec", 1, dyl);
    NFV_ARG(k, "conv3d_bwd_weights_cvec", 2, dw);
    NFV_ARG(k, "conv3d_bwd_weights_cvec", 3, n);
    size_t global[3] = {(size_t)d->k[0], (size_t)d->ci, (size_t)d->co / c->vec};
    return nfv_kernel_launch(ctx, k, 3, global, NULL);
}
