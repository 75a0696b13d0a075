/* The reference Conv3d kernels (cl/conv3d_ref.cl): one output element per
 * work-item, every shape at run time.  They are the device-side spec the
 * fast kernels (conv3d.c, cl/conv3d.cl) are tested against and the path for
 * shapes the fast kernels do not cover; with dilation or groups the general
 * kernels (conv3d_general.c) stand in for them. */
#include <string.h>

#include "layers/conv3d_internal.h"

/* The run-time shape arguments of the *_ref kernels. */
static void ref_args(const conv_dims *d, int has_bias, cl_int16 *s, cl_int4 *pd)
{
    const int v[16] = {d->n,    d->ci,   d->d,    d->h,    d->w,    d->co,   d->od,   d->oh,
                       d->ow,   d->k[0], d->k[1], d->k[2], d->s[0], d->s[1], d->s[2], has_bias};
    for (int i = 0; i < 16; i++) s->s[i] = v[i];
    for (int i = 0; i < 3; i++) pd->s[i] = d->p[i];
    pd->s[3] = 0;
}

nfv_status conv3d_launch_ref(nfv_context *ctx, const char *name, cl_mem a, cl_mem b, cl_mem c, cl_mem out,
                             const conv_dims *d, int has_bias, size_t count)
{
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "conv3d_ref", "", name, &k));
    cl_int16 s;
    cl_int4 pd;
    ref_args(d, has_bias, &s, &pd);
    int arg = 0;
    NFV_ARG(k, name, arg++, a);
    if (b) NFV_ARG(k, name, arg++, b);
    if (c) NFV_ARG(k, name, arg++, c);
    NFV_ARG(k, name, arg++, out);
    NFV_ARG(k, name, arg++, s);
    NFV_ARG(k, name, arg++, pd);
    size_t global = count;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

/* ---- reference entry points ---------------------------------------------- */
/* With dilation or groups they run the general kernels, which are the
 * reference (one output per work-item) for those shapes. */


nfv_status nfv_conv3d_forward_reference(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                        const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y)
{
    conv_dims d;
    NFV_TRY(conv3d_check_shapes("conv3d forward", p, x, w, b, y, &d));
    if (conv3d_dims_general(&d)) return nfv_conv3d_general_forward(ctx, &d, x->buf, w->buf, b ? b->buf : NULL, y->buf);
    cl_mem bias = b ? b->buf : w->buf; /* never read without bias */
    return conv3d_launch_ref(ctx, "conv3d_fwd_ref", x->buf, w->buf, bias, y->buf, &d, b != NULL, y->numel);
}

nfv_status nfv_conv3d_backward_input_reference(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                               const nfv_tensor *w, nfv_tensor *dx)
{
    conv_dims d;
    if (!dx) return NFV_OK;
    NFV_TRY(conv3d_check_shapes("conv3d backward-input", p, dx, w, NULL, dy, &d));
    if (conv3d_dims_general(&d)) return nfv_conv3d_general_backward_input(ctx, &d, dy->buf, w->buf, dx->buf);
    return conv3d_launch_ref(ctx, "conv3d_bwd_input_ref", dy->buf, w->buf, NULL, dx->buf, &d, 0, dx->numel);
}


nfv_status nfv_conv3d_backward_weights_reference(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                                 const nfv_tensor *dy, nfv_tensor *dw, nfv_tensor *db)
{
    conv_dims d;
    NFV_TRY(conv3d_check_grad_shapes("conv3d backward-weights", p, x, dy, dw, db, &d));
    if (dw && conv3d_dims_general(&d)) NFV_TRY(nfv_conv3d_general_backward_weights(ctx, &d, x->buf, dy->buf, dw->buf));
    else if (dw)
        NFV_TRY(conv3d_launch_ref(ctx, "conv3d_bwd_weights_ref", x->buf, dy->buf, NULL, dw->buf, &d, 0, dw->numel));
    if (db) NFV_TRY(conv3d_launch_ref(ctx, "conv3d_bwd_bias_ref", dy->buf, NULL, NULL, db->buf, &d, 0, (size_t)d.co));
    return NFV_OK;
}
