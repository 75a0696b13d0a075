/* Strided Conv3d (stride > 1 along an axis; no dilation or groups) through
 * the fast stride-1 kernels of src/layers/conv3d.c (cl/conv3d.cl).
 *
 * Until these, a strided conv ran the *_ref kernels (one output per
 * work-item): MONAI's ResNet-18 at 64^3 spent 94 % of its eval forward and
 * 95 % of a visualization step in its seven strided convs (the 7^3 stem and
 * the stride-2 convs and 1^3 shortcuts), at 1-4 GFLOP/s.
 *
 *   forward         the fast kernels take d and h strides but read x with
 *                   stride 1 (whole vectors of consecutive columns): the conv
 *                   at x stride 1 into a scratch buffer (N, CO, DO, HO, W+2p-k+1),
 *                   then every s-th column (conv3d_take_columns).  s times the
 *                   FLOPs along x, at the fast kernels' rate.
 *   backward-input  the transpose of a stride-s conv is a stride-1 conv over
 *                   dy spread on the stride grid with zeros between (and r
 *                   more zeros where (D + 2p - k) mod s = r dropped inputs),
 *                   padded by k - 1 - p, with the flipped weights
 *                   (conv3d_pad_dilate + conv3d_flip): s_d * s_h * s_w times
 *                   the FLOPs, most of them on zeros, still far faster than
 *                   the reference kernel's gather.
 *   backward-weights  the weight gradient of the conv at x stride 1 with dy
 *                   spread on every s-th column, zeros between
 *                   (conv3d_spread_columns): s times the FLOPs along x (kw <= 5,
 *                   as the fast weight-gradient kernels).
 *
 * All three are tested against the host reference (tests/test_conv3d.c). */
#include <string.h>

#include "layers/conv3d_internal.h"

/* conv3d_take_columns (src (rows, wt) -> dst (rows, wo)) or
 * conv3d_spread_columns (src (rows, wo) -> dst (rows, wt)), x stride s. */
static nfv_status columns(nfv_context *ctx, const char *name, cl_mem src, cl_mem dst, int wt, int wo, int s,
                          size_t rows)
{
    cl_kernel k;
    char go[32];
    NFV_TRY(nfv_kernel_get(ctx, "conv3d", conv3d_generic_options(ctx, go, sizeof go), name, &k));
    cl_int a[3] = {wt, wo, s}, err;
    if ((err = clSetKernelArg(k, 0, sizeof src, &src)) || (err = clSetKernelArg(k, 1, sizeof dst, &dst)))
        return nfv_cl_fail(err, "clSetKernelArg", name, __FILE__, __LINE__);
    for (int i = 0; i < 3; i++)
        if ((err = clSetKernelArg(k, 2 + i, sizeof a[i], &a[i])) != CL_SUCCESS)
            return nfv_cl_fail(err, "clSetKernelArg", name, __FILE__, __LINE__);
    size_t global[2] = {(size_t)(strcmp(name, "conv3d_take_columns") ? wt : wo), rows};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

/* d at x stride 1: output rows W + 2p - k + 1 long. */
static conv_dims x_stride_one(const conv_dims *d)
{
    conv_dims u = *d;
    u.s[2] = 1;
    u.ow = d->w + 2 * d->p[2] - d->k[2] + 1;
    return u;
}

nfv_status conv3d_forward_strided(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem w, cl_mem bias, int relu,
                                  cl_mem y)
{
    const conv_dims u = x_stride_one(d);
    const size_t rows = (size_t)d->n * d->co * d->od * d->oh;
    cl_mem t;
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_STRIDED, rows * u.ow, "conv3d output at x stride 1", &t));
    NFV_TRY(conv3d_forward_fast(ctx, &u, x, NULL, w, bias, relu, t));
    return columns(ctx, "conv3d_take_columns", t, y, u.ow, d->ow, d->s[2], rows);
}

nfv_status conv3d_backward_input_strided(nfv_context *ctx, const conv_dims *d, cl_mem dy, cl_mem w, cl_mem dx)
{
    /* The stride-1 conv whose input is dy spread: per axis a body of
     * (O - 1) s + 1 + r (r = (I + 2p - k) - (O - 1) s, the inputs past the
     * last window) padded by k - 1 - p, so its output is I long. */
    conv_dims t = *d;
    t.ci = d->co, t.co = d->ci;
    t.od = d->d, t.oh = d->h, t.ow = d->w;
    const int in[3] = {d->d, d->h, d->w}, out[3] = {d->od, d->oh, d->ow};
    int body[3];
    for (int i = 0; i < 3; i++) {
        int r = in[i] + 2 * d->p[i] - d->k[i] - (out[i] - 1) * d->s[i];
        body[i] = (out[i] - 1) * d->s[i] + 1 + r;
        t.p[i] = d->k[i] - 1 - d->p[i];
        t.s[i] = 1;
    }
    t.d = body[0], t.h = body[1], t.w = body[2];
    cl_mem xp;
    NFV_TRY(conv3d_padded_scratch(ctx, &t, &xp));
    const fast_config c = conv3d_fast_config(ctx, &t); /* the layout conv3d_forward_fast will read */
    cl_kernel k;
    char go[32];
    NFV_TRY(nfv_kernel_get(ctx, "conv3d", conv3d_generic_options(ctx, go, sizeof go), "conv3d_pad_dilate", &k));
    cl_int a[13] = {d->od, d->oh, d->ow, t.d, t.h, t.w, d->s[0], d->s[1], d->s[2], t.p[0], t.p[1], t.p[2],
                    c.march ? t.ci : 0};
    cl_int err;
    if ((err = clSetKernelArg(k, 0, sizeof dy, &dy)) || (err = clSetKernelArg(k, 1, sizeof xp, &xp)))
        return nfv_cl_fail(err, "clSetKernelArg", "conv3d_pad_dilate", __FILE__, __LINE__);
    for (int i = 0; i < 13; i++)
        if ((err = clSetKernelArg(k, 2 + i, sizeof a[i], &a[i])) != CL_SUCCESS)
            return nfv_cl_fail(err, "clSetKernelArg", "conv3d_pad_dilate", __FILE__, __LINE__);
    size_t global[2] = {(size_t)t.h + 2 * t.p[1], (size_t)t.n * t.ci * (t.d + 2 * t.p[0])};
    NFV_TRY(nfv_kernel_launch(ctx, k, 2, global, NULL));
    cl_mem wt;
    NFV_TRY(conv3d_flip(ctx, d, w, &wt));
    return conv3d_forward_fast(ctx, &t, NULL, NULL, wt, NULL, 0, dx);
}

nfv_status conv3d_backward_weights_strided(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem dy, cl_mem dw)
{
    const conv_dims u = x_stride_one(d);
    const size_t rows = (size_t)d->n * d->co * d->od * d->oh;
    cl_mem t;
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_STRIDED, rows * u.ow, "conv3d output gradient at x stride 1", &t));
    NFV_TRY(columns(ctx, "conv3d_spread_columns", dy, t, u.ow, d->ow, d->s[2], rows));
    return conv3d_weights_fast(ctx, &u, x, t, dw);
}
