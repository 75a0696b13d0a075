/* Conv3d geometry: output sizes and the checked shapes of one call, shared
 * by the fast path (conv3d.c), the reference kernels (conv3d_ref.c) and the
 * general path (conv3d_general.c); see include/neurofv/ops.h. */
#include <stdio.h>
#include <string.h>

#include "layers/conv3d_internal.h"

int nfv_conv_out_size(int in, int kernel, int stride, int pad)
{
    if (stride < 1) return 0;
    int span = in + 2 * pad - kernel;
    if (span < 0) return 0;
    return span / stride + 1;
}

int nfv_conv_out_size_dilated(int in, int kernel, int stride, int pad, int dilation)
{
    if (stride < 1 || kernel < 1 || dilation < 1) return 0;
    int span = in + 2 * pad - dilation * (kernel - 1) - 1;
    if (span < 0) return 0;
    return span / stride + 1;
}

const char *conv3d_shape_str(const nfv_tensor *t, char *buf, size_t cap)
{
    return t ? nfv_shape_str(t, buf, cap) : "(null)";
}

/* Validate params and the shapes of x, w, b (may be NULL) and y (the output
 * or the output gradient); fill d.  Messages name the op and both shapes. */
nfv_status conv3d_check_shapes(const char *op, const nfv_conv3d_params *p, const nfv_tensor *x,
                               const nfv_tensor *w, const nfv_tensor *b, const nfv_tensor *y, conv_dims *d)
{
    char sx[64], sw[64], sy[64], sb[64];
    if (!p || !x || !w || !y) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL params or tensor", op);
    for (int i = 0; i < 3; i++)
        if (p->kernel[i] < 1 || p->stride[i] < 1 || p->padding[i] < 0 || p->dilation[i] < 0)
            return nfv_fail(NFV_ERR_INVALID_ARG,
                            "%s: kernel %dx%dx%d stride %dx%dx%d padding %dx%dx%d dilation %dx%dx%d: kernel and stride "
                            "must be >= 1, padding >= 0 and dilation >= 1 (0 means 1)",
                            op, p->kernel[0], p->kernel[1], p->kernel[2], p->stride[0], p->stride[1], p->stride[2],
                            p->padding[0], p->padding[1], p->padding[2], p->dilation[0], p->dilation[1],
                            p->dilation[2]);
    if (p->groups < 0) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: groups %d must be >= 1 (0 means 1)", op, p->groups);
    if (x->ndim != 5 || w->ndim != 5 || y->ndim != 5)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s, weight %s and output %s must all be 5-D", op,
                        conv3d_shape_str(x, sx, 64), conv3d_shape_str(w, sw, 64), conv3d_shape_str(y, sy, 64));
    memset(d, 0, sizeof *d);
    d->n = x->shape[0], d->ci = x->shape[1], d->d = x->shape[2], d->h = x->shape[3], d->w = x->shape[4];
    d->co = w->shape[0];
    d->g = p->groups ? p->groups : 1;
    for (int i = 0; i < 3; i++) {
        d->k[i] = p->kernel[i], d->s[i] = p->stride[i], d->p[i] = p->padding[i];
        d->dil[i] = p->dilation[i] ? p->dilation[i] : 1;
    }
    if (d->ci % d->g)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s has %d channels, not a multiple of groups %d (weight %s)", op,
                        conv3d_shape_str(x, sx, 64), d->ci, d->g, conv3d_shape_str(w, sw, 64));
    if (d->co % d->g)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "%s: weight %s has %d output channels, not a multiple of groups %d (input %s)", op,
                        conv3d_shape_str(w, sw, 64), d->co, d->g, conv3d_shape_str(x, sx, 64));
    if (w->shape[1] != d->ci / d->g)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "%s: input %s has %d channels in %d groups but weight %s (Co, Ci/G, kd, kh, kw) expects %d "
                        "per group",
                        op, conv3d_shape_str(x, sx, 64), d->ci, d->g, conv3d_shape_str(w, sw, 64), w->shape[1]);
    if (w->shape[2] != d->k[0] || w->shape[3] != d->k[1] || w->shape[4] != d->k[2])
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: weight %s does not match kernel size %dx%dx%d (input %s)", op,
                        conv3d_shape_str(w, sw, 64), d->k[0], d->k[1], d->k[2], conv3d_shape_str(x, sx, 64));
    d->od = nfv_conv_out_size_dilated(d->d, d->k[0], d->s[0], d->p[0], d->dil[0]);
    d->oh = nfv_conv_out_size_dilated(d->h, d->k[1], d->s[1], d->p[1], d->dil[1]);
    d->ow = nfv_conv_out_size_dilated(d->w, d->k[2], d->s[2], d->p[2], d->dil[2]);
    if (d->od < 1 || d->oh < 1 || d->ow < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "%s: input %s is smaller than kernel %dx%dx%d with dilation %dx%dx%d and padding %dx%dx%d "
                        "(weight %s)",
                        op, conv3d_shape_str(x, sx, 64), d->k[0], d->k[1], d->k[2], d->dil[0], d->dil[1], d->dil[2], d->p[0],
                        d->p[1], d->p[2], conv3d_shape_str(w, sw, 64));
    if (y->shape[0] != d->n || y->shape[1] != d->co || y->shape[2] != d->od || y->shape[3] != d->oh ||
        y->shape[4] != d->ow)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: output %s, expected %dx%dx%dx%dx%d for input %s and weight %s", op,
                        conv3d_shape_str(y, sy, 64), d->n, d->co, d->od, d->oh, d->ow, conv3d_shape_str(x, sx, 64), conv3d_shape_str(w, sw, 64));
    if (b && (b->ndim != 1 || b->shape[0] != d->co))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: bias %s, expected %d for weight %s", op, conv3d_shape_str(b, sb, 64), d->co,
                        conv3d_shape_str(w, sw, 64));
    return NFV_OK;
}

nfv_status conv3d_check_grad_shapes(const char *op, const nfv_conv3d_params *p, const nfv_tensor *x,
                                    const nfv_tensor *dy, const nfv_tensor *dw, const nfv_tensor *db, conv_dims *d)
{
    if (!dw && !db) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: neither dw nor db given", op);
    if (dw) return conv3d_check_shapes(op, p, x, dw, db, dy, d);
    /* Only db: derive the shapes without a weight tensor. */
    char sx[64], sy[64], sb[64];
    if (!p || !x || !dy) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL params or tensor", op);
    if (x->ndim != 5 || dy->ndim != 5 || db->ndim != 1 || db->shape[0] != dy->shape[1])
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s, output gradient %s and bias gradient %s do not fit", op,
                        conv3d_shape_str(x, sx, 64), conv3d_shape_str(dy, sy, 64), conv3d_shape_str(db, sb, 64));
    memset(d, 0, sizeof *d);
    d->g = 1, d->dil[0] = d->dil[1] = d->dil[2] = 1;
    d->n = dy->shape[0], d->co = dy->shape[1], d->od = dy->shape[2], d->oh = dy->shape[3], d->ow = dy->shape[4];
    d->ci = x->shape[1], d->d = x->shape[2], d->h = x->shape[3], d->w = x->shape[4];
    if (x->shape[0] != d->n)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s and output gradient %s differ in batch", op,
                        conv3d_shape_str(x, sx, 64), conv3d_shape_str(dy, sy, 64));
    return NFV_OK;
}

int conv3d_dims_general(const conv_dims *d)
{
    return d->g != 1 || d->dil[0] != 1 || d->dil[1] != 1 || d->dil[2] != 1;
}
