/* Conv3d weight and bias gradients, fast path (cl/conv3d_wgrad.cl); see
 * include/neurofv/ops.h and src/layers/conv3d.c, whose padded staging copy
 * and blocking they share (conv3d_internal.h).
 *
 *   weights  conv3d_pad (x's zero-padded copy) + conv3d_bwd_weights_fast
 *            (partial sums per slab of output planes, one tap row per
 *            work-item) or, for narrow rows, conv3d_pitch_dy +
 *            conv3d_bwd_weights_flat (vectors along the flattened plane),
 *            then conv3d_sum_partials; for few positions (where the forward
 *            runs conv3d_fwd_cvec) src/layers/conv3d_cvec.c instead, no
 *            partial sums; all of these when the x stride is 1 and kw <= 5,
 *            or an x stride > 1 as a conv over phases with a kernel up to 5
 *            along x (src/layers/conv3d_strided.c), else the *_ref kernel
 *            (src/layers/conv3d_ref.c);
 *   bias     conv3d_bias_partial (per plane) + conv3d_sum_partials. */
#include <stdio.h>
#include <string.h>

#include "layers/conv3d_internal.h"

/* part (parts, m) -> out (m) summed over parts. */
static nfv_status sum_partials(nfv_context *ctx, cl_mem part, int parts, int m, cl_mem out)
{
    cl_kernel k;
    char go[32];
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_wgrad", conv3d_generic_options(ctx, go, sizeof go), "conv3d_sum_partials", &k));
    NFV_ARG(k, "conv3d_sum_partials", 0, part);
    NFV_ARG(k, "conv3d_sum_partials", 1, out);
    NFV_ARG(k, "conv3d_sum_partials", 2, parts);
    NFV_ARG(k, "conv3d_sum_partials", 3, m);
    size_t global = (size_t)m;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

/* Where the forward runs conv3d_fwd_cvec and a tap plane has at most 16
 * taps (one accumulator each). */
int nfv_conv3d_weights_channel_last(const nfv_kernel_config *kc, int co, const int kernel[3], const int out_dims[3],
                                    int padded_w, int stride_h)
{
    /* the lanes the forward would use depend on the padded width only */
    const int in[3] = {out_dims[0], out_dims[1], padded_w}, pad[3] = {0, 0, 0};
    return kernel[1] * kernel[2] <= 16 && nfv_conv3d_channel_last(kc, co, in, pad, out_dims, stride_h);
}

size_t nfv_conv3d_pitched_dy_floats(const nfv_kernel_config *kc, int n, int co, const int kernel[3],
                                    const int out_dims[3], int padded_w, int stride_h)
{
    const int vec = kc->vector_width;
    if (nfv_conv3d_weights_channel_last(kc, co, kernel, out_dims, padded_w, stride_h))
        return (size_t)n * co * out_dims[0] * out_dims[1] * out_dims[2]; /* dy with the channel last */
    if (!conv3d_flat_rows(vec, out_dims[2], stride_h)) return 0; /* the row kernel */
    const size_t plane = ((size_t)out_dims[1] * padded_w + vec - 1) / vec * vec;
    return (size_t)n * co * out_dims[0] * plane;
}

/* dy (N, CO, DO, HO, WO) at the padded row pitch WP, zeros past WO and past
 * HO*WP up to whole vectors (conv3d_pitch_dy), in the scratch that floats
 * (nfv_conv3d_pitched_dy_floats) says. */
static nfv_status pitch_dy(nfv_context *ctx, const conv_dims *d, const char *opts, cl_mem dy, size_t floats,
                           cl_mem *out)
{
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_wgrad", opts, "conv3d_pitch_dy", &k));
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PITCHED_DY, floats, "conv3d pitched output gradient", out));
    NFV_ARG(k, "conv3d_pitch_dy", 0, dy);
    NFV_ARG(k, "conv3d_pitch_dy", 1, *out);
    const size_t planes = (size_t)d->n * d->co * d->od;
    size_t global[2] = {floats / planes, planes};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

size_t nfv_conv3d_weight_partial_floats(int n, int co, int ci, const int kernel[3], const int out_dims[3])
{
    conv_dims d = {.n = n, .co = co, .ci = ci, .od = out_dims[0], .oh = out_dims[1], .ow = out_dims[2]};
    return (size_t)conv3d_slab_count(&d) * co * ci * kernel[0] * kernel[1] * kernel[2];
}

nfv_status conv3d_weights_fast(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem dy, cl_mem dw)
{
    const fast_config c = conv3d_fast_config(ctx, d);
    char opts[512];
    conv3d_fast_options(&c, d, 0, opts, sizeof opts);
    const int out_dims[3] = {d->od, d->oh, d->ow};
    if (nfv_conv3d_weights_channel_last(nfv_context_kernel_config(ctx), d->co, d->k, out_dims, d->w + 2 * d->p[2],
                                        d->s[1]))
        return conv3d_weights_cvec(ctx, d, &c, x, dy, dw); /* c.cvp is the same test */
    const int kvol = d->k[0] * d->k[1] * d->k[2];
    const int slabs = conv3d_slab_count(d), m = d->co * d->ci * kvol;
    const int bw_cob = c.bw_cob;
    /* Narrow rows: vectors along the flattened plane (conv3d_bwd_weights_flat). */
    const size_t pitched = nfv_conv3d_pitched_dy_floats(nfv_context_kernel_config(ctx), d->n, d->co, d->k, out_dims,
                                                        d->w + 2 * d->p[2], d->s[1]);
    const char *name = pitched ? "conv3d_bwd_weights_flat" : "conv3d_bwd_weights_fast";
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_wgrad", opts, name, &k));
    cl_mem xp, part, dyk = dy;
    NFV_TRY(conv3d_pad_input(ctx, d, x, NULL, 0, &xp));
    if (pitched) NFV_TRY(pitch_dy(ctx, d, opts, dy, pitched, &dyk));
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_WEIGHT_PARTIALS, (size_t)slabs * m,
                           "conv3d weight-gradient partial sums", &part));
    nfv_status st = NFV_OK;
    cl_int err;
    if ((err = clSetKernelArg(k, 0, sizeof xp, &xp)) || (err = clSetKernelArg(k, 1, sizeof dyk, &dyk)) ||
        (err = clSetKernelArg(k, 2, sizeof part, &part)))
        st = nfv_cl_fail(err, "clSetKernelArg", name, __FILE__, __LINE__);
    if (st == NFV_OK) {
        size_t global[3] = {(size_t)d->k[0] * d->k[1], (size_t)slabs, (size_t)d->ci * (d->co / bw_cob)};
        size_t local[3] = {global[0], 1, 1};
        st = nfv_kernel_launch(ctx, k, 3, global, global[0] <= nfv_kernel_max_local(ctx, k) ? local : NULL);
    }
    if (st == NFV_OK) st = sum_partials(ctx, part, slabs, m, dw);
    return st;
}

static nfv_status bias_fast(nfv_context *ctx, const conv_dims *d, cl_mem dy, cl_mem db)
{
    const int slabs = d->n * d->od;
    cl_kernel k;
    char go[32];
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_wgrad", conv3d_generic_options(ctx, go, sizeof go), "conv3d_bias_partial", &k));
    cl_int do_ = d->od, plane = d->oh * d->ow, co = d->co;
    cl_mem part;
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_BIAS_PARTIALS, (size_t)slabs * d->co, "conv3d bias-gradient partial sums", &part));
    nfv_status st = NFV_OK;
    cl_int err;
    if ((err = clSetKernelArg(k, 0, sizeof dy, &dy)) || (err = clSetKernelArg(k, 1, sizeof part, &part)) ||
        (err = clSetKernelArg(k, 2, sizeof do_, &do_)) || (err = clSetKernelArg(k, 3, sizeof plane, &plane)) ||
        (err = clSetKernelArg(k, 4, sizeof co, &co)))
        st = nfv_cl_fail(err, "clSetKernelArg", "conv3d_bias_partial", __FILE__, __LINE__);
    if (st == NFV_OK) {
        size_t global[2] = {(size_t)slabs, (size_t)d->co};
        st = nfv_kernel_launch(ctx, k, 2, global, NULL);
    }
    if (st == NFV_OK) st = sum_partials(ctx, part, slabs, d->co, db);
    return st;
}

nfv_status nfv_conv3d_backward_weights(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                       const nfv_tensor *dy, nfv_tensor *dw, nfv_tensor *db)
{
    conv_dims d;
    NFV_TRY(conv3d_check_grad_shapes("conv3d backward-weights", p, x, dy, dw, db, &d));
    if (dw && conv3d_dims_general(&d)) NFV_TRY(nfv_conv3d_general_backward_weights(ctx, &d, x->buf, dy->buf, dw->buf));
    else if (dw) {
        if (d.s[2] == 1 && d.k[2] <= 5) NFV_TRY(conv3d_weights_fast(ctx, &d, x->buf, dy->buf, dw->buf));
        else if (conv3d_has_strided_weights(&d))
            NFV_TRY(conv3d_backward_weights_strided(ctx, &d, x->buf, dy->buf, dw->buf));
        else NFV_TRY(nfv_conv3d_backward_weights_reference(ctx, p, x, dy, dw, NULL));
    }
    if (db) NFV_TRY(bias_fast(ctx, &d, dy->buf, db->buf));
    return NFV_OK;
}
