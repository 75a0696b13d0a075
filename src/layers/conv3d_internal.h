/* Private to src/layers/conv3d*.c: the checked geometry of one Conv3d call
 * and the general (dilated / grouped) path of src/layers/conv3d_general.c. */
#ifndef NEUROFV_LAYERS_CONV3D_INTERNAL_H
#define NEUROFV_LAYERS_CONV3D_INTERNAL_H

#include "runtime/internal.h"
#include "neurofv/ops.h"

typedef struct conv_dims {
    int n, ci, d, h, w;      /* input (N, CI, D, H, W) */
    int co, od, oh, ow;      /* output (N, CO, DO, HO, WO) */
    int k[3], s[3], p[3];
    int dil[3], g;           /* dilation and groups, >= 1 (0 in the params read as 1) */
} conv_dims;

/* 1 when p asks for dilation or groups other than 1 (the general kernels),
 * 0 for a plain conv (the fast and *_ref kernels); p may not be NULL. */
int nfv_conv3d_params_general(const nfv_conv3d_params *p);

/* The general kernels of cl/conv3d_general.c, one output element per
 * work-item, on checked dims: y (N, CO, DO, HO, WO) from x, w (CO, CI/G, k)
 * and bias (CO, or NULL); dx (N, CI, D, H, W) from dy and w; dw (CO, CI/G, k)
 * from x and dy. */
nfv_status nfv_conv3d_general_forward(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem w, cl_mem bias,
                                      cl_mem y);
nfv_status nfv_conv3d_general_backward_input(nfv_context *ctx, const conv_dims *d, cl_mem dy, cl_mem w, cl_mem dx);
nfv_status nfv_conv3d_general_backward_weights(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem dy,
                                               cl_mem dw);

#endif
