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

/* src/layers/conv3d_shapes.c.  conv3d_check_shapes validates p and the
 * shapes of x, w, b (may be NULL) and y (the output or the output gradient)
 * and fills d; messages name the op and the shapes.  The grad version takes
 * dw and/or db (at least one).  conv3d_dims_general: 1 with dilation or
 * groups other than 1.  conv3d_shape_str: "NxCx..." or "(null)". */
const char *conv3d_shape_str(const nfv_tensor *t, char *buf, size_t cap);
nfv_status conv3d_check_shapes(const char *op, const nfv_conv3d_params *p, const nfv_tensor *x, const nfv_tensor *w,
                               const nfv_tensor *b, const nfv_tensor *y, conv_dims *d);
nfv_status conv3d_check_grad_shapes(const char *op, const nfv_conv3d_params *p, const nfv_tensor *x,
                                    const nfv_tensor *dy, const nfv_tensor *dw, const nfv_tensor *db, conv_dims *d);
int conv3d_dims_general(const conv_dims *d);

/* src/layers/conv3d_ref.c: one *_ref kernel of cl/conv3d_ref.cl over count
 * outputs (b, c: NULL when the kernel takes fewer inputs). */
nfv_status conv3d_launch_ref(nfv_context *ctx, const char *name, cl_mem a, cl_mem b, cl_mem c, cl_mem out,
                             const conv_dims *d, int has_bias, size_t count);

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
