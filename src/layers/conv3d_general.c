/* Conv3d with dilation and groups (cl/conv3d_general.cl): one output element
 * per work-item, all shapes at run time.  src/layers/conv3d.c checks the
 * shapes and comes here only when dilation or groups differ from 1; the plain
 * conv keeps its fast kernels. */
#include "layers/conv3d_internal.h"

int nfv_conv3d_params_general(const nfv_conv3d_params *p)
{
    int general = p->groups > 1;
    for (int i = 0; i < 3; i++) general |= p->dilation[i] > 1;
    return general;
}

/* s = (N, CI, D, H, W, CO, DO, HO, WO, KD, KH, KW, SD, SH, SW, has_bias),
 * q = (PD, PH, PW, DD, DH, DW, G, 0): the layout cl/conv3d_general.cl reads. */
static nfv_status launch_general(nfv_context *ctx, const char *name, cl_mem a, cl_mem b, cl_mem c, cl_mem out,
                                 const conv_dims *d, int has_bias, size_t count)
{
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_general", "", name, &k));
    const int v[16] = {d->n,    d->ci,   d->d,    d->h,    d->w,    d->co,   d->od,   d->oh,
                       d->ow,   d->k[0], d->k[1], d->k[2], d->s[0], d->s[1], d->s[2], has_bias};
    cl_int16 s;
    cl_int8 q;
    for (int i = 0; i < 16; i++) s.s[i] = v[i];
    for (int i = 0; i < 3; i++) q.s[i] = d->p[i], q.s[3 + i] = d->dil[i];
    q.s[6] = d->g, q.s[7] = 0;
    int arg = 0;
    NFV_ARG(k, name, arg++, a);
    if (b) NFV_ARG(k, name, arg++, b);
    if (c) NFV_ARG(k, name, arg++, c);
    NFV_ARG(k, name, arg++, out);
    NFV_ARG(k, name, arg++, s);
    NFV_ARG(k, name, arg++, q);
    return nfv_kernel_launch(ctx, k, 1, &count, NULL);
}

nfv_status nfv_conv3d_general_forward(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem w, cl_mem bias,
                                      cl_mem y)
{
    size_t count = (size_t)d->n * d->co * d->od * d->oh * d->ow;
    /* The bias argument is never read without a bias; pass w in its place. */
    return launch_general(ctx, "conv3d_fwd_general", x, w, bias ? bias : w, y, d, bias != NULL, count);
}

nfv_status nfv_conv3d_general_backward_input(nfv_context *ctx, const conv_dims *d, cl_mem dy, cl_mem w, cl_mem dx)
{
    size_t count = (size_t)d->n * d->ci * d->d * d->h * d->w;
    return launch_general(ctx, "conv3d_bwd_input_general", dy, w, NULL, dx, d, 0, count);
}

nfv_status nfv_conv3d_general_backward_weights(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem dy,
                                               cl_mem dw)
{
    size_t count = (size_t)d->co * (d->ci / d->g) * d->k[0] * d->k[1] * d->k[2];
    return launch_general(ctx, "conv3d_bwd_weights_general", x, dy, NULL, dw, d, 0, count);
}
