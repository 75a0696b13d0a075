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

/* src/layers/conv3d.c, shared with conv3d_wgrad.c (the fast path). */
/* Blocking of the fast kernels for one layer. */
typedef struct fast_config {
    int vec;     /* floats per vector (nfv_context_vector_width) */
    int cob;     /* output channels per forward work-item */
    int rows;    /* rows (row kernel) or consecutive vectors (flat kernel) per work-item */
    int bw_cob;  /* output channels per weight-gradient work-item */
    int odc;     /* output planes per weight-gradient slab */
    int flat;    /* forward through conv3d_fwd_flat rather than conv3d_fwd_fast */
    int unroll;  /* -DKD_UNROLL: the kernel configuration's conv_unroll */
    int march;   /* > 0: one output channel, h and d stride 1, and the configuration's conv_march:
                  * conv3d_fwd_co1 marching through march output planes, its input in channel
                  * rows (N, DP, HP, CI, WP) */
    int cvp;     /* > 0: conv3d_fwd_cvec, output channels in the lanes, cvp positions per work-item */
} fast_config;

/* Options of the one shape-independent build of a conv3d program
 * (padding, weight flip, partial sums, bias, BatchNorm folding): -DVEC. */
const char *conv3d_generic_options(const nfv_context *ctx, char *buf, size_t cap);
/* The blocking of d's fast kernels on ctx, and their build options (every
 * shape constant compiled in; relu: -DOUT_RELU=1). */
fast_config conv3d_fast_config(const nfv_context *ctx, const conv_dims *d);
void conv3d_fast_options(const fast_config *c, const conv_dims *d, int relu, char *buf, size_t cap);
/* Whether rows of ow outputs take the flattened-plane kernels (h stride 1,
 * the row kernels would waste over 10 % of their lanes). */
int conv3d_flat_rows(int vec, int ow, int stride_h);
/* Weight-gradient slabs of output planes over the batch (N * ceil(DO / planes per slab)). */
int conv3d_slab_count(const conv_dims *d);
/* The context's scratch slot of `floats` floats (what: for messages). */
nfv_status conv3d_scratch(nfv_context *ctx, int slot, size_t floats, const char *what, cl_mem *out);
/* The zero-padded staging copy of src (N, CI, D, H, W) in the padded-input
 * scratch slot, times [gate > 0] where gate is given (conv3d_pad_gated);
 * channel_rows: in the layout (N, D+2p, H+2p, CI, W+2p) of conv3d_fwd_co1. */
nfv_status conv3d_pad_input(nfv_context *ctx, const conv_dims *d, cl_mem src, cl_mem gate, int channel_rows,
                            cl_mem *out);

/* The padded-input scratch slot for d (N, CI, D+2p, H+2p, W+2p), its slack
 * after the body zero-filled; the caller writes the body. */
nfv_status conv3d_padded_scratch(nfv_context *ctx, const conv_dims *d, cl_mem *xp);
/* y = conv(x, w) + bias (bias may be NULL) through the fast kernels, then
 * max(y, 0) when relu; x is first copied to the padded layout (times
 * [gate > 0] where gate is given), or is NULL: already staged there
 * (conv3d_padded_scratch); d->s[2] == 1. */
nfv_status conv3d_forward_fast(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem gate, cl_mem w, cl_mem bias,
                               int relu, cl_mem y);
/* wt (CI, CO, k) = w (CO, CI, k) transposed over channels and flipped: in
 * the flipped-weights scratch slot, or while the context's weights are
 * frozen the copy kept for w (derived once).  _into: into a given buffer. */
nfv_status conv3d_flip(nfv_context *ctx, const conv_dims *d, cl_mem w, cl_mem *wt);
nfv_status conv3d_flip_into(nfv_context *ctx, const conv_dims *d, cl_mem w, cl_mem wt);
/* A buffer of floats for weights derived from w (kind: NFV_DERIVED_*): the
 * scratch slot (*fresh 1), or while the context's weights are frozen the
 * copy kept for w (*fresh 1 only the first time: the caller fills it then). */
nfv_status conv3d_derived_weights(nfv_context *ctx, cl_mem w, int kind, int slot, size_t floats, const char *what,
                                  cl_mem *out, int *fresh);

/* src/layers/conv3d_cvec.c: the convs conv3d_fast_config gives c->cvp > 0
 * (output channels in the lanes).  conv3d_channel_last_weights: from w
 * (CO, CI, k), flip 0: wl (CI, k, CO) for d's forward; flip 1: wl (CO, k,
 * CI) flipped, for d's input gradient (the forward over dy of
 * conv3d_transposed_dims(d)); in the scratch slot, or while the weights
 * are frozen the copy kept for w.  conv3d_forward_cvec: as
 * conv3d_forward_fast, with wl already derived (w not read) or NULL.
 * conv3d_weights_cvec: dw (CO, CI, k), no partial sums. */
nfv_status conv3d_channel_last_weights(nfv_context *ctx, const conv_dims *d, cl_mem w, int flip, cl_mem *wl);
nfv_status conv3d_forward_cvec(nfv_context *ctx, const conv_dims *d, const fast_config *c, int relu, cl_mem x,
                               cl_mem gate, cl_mem w, cl_mem wl, cl_mem bias, cl_mem y);
nfv_status conv3d_weights_cvec(nfv_context *ctx, const conv_dims *d, const fast_config *c, cl_mem x, cl_mem dy,
                               cl_mem dw);

/* The input gradient of d as a forward conv over dy: input dy (N, CO, DO,
 * HO, WO) padded by k - 1 - p, output dx (N, CI, D, H, W); stride 1. */
conv_dims conv3d_transposed_dims(const conv_dims *d);

/* src/layers/conv3d_strided.c: strided plain convs (no dilation or groups)
 * as stride-1 convs over phases, through the fast kernels.  Forward: any
 * stride (the fast kernels take d and h strides themselves: called for an
 * x stride > 1).  Input gradient: any stride > 1, gated (dy only where
 * gate > 0, a fused ReLU's backward) or not.  Weight gradient: where
 * conv3d_has_strided_weights (the phase kernel at most 5 along x). */
nfv_status conv3d_forward_strided(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem w, cl_mem bias, int relu,
                                  cl_mem y);
nfv_status conv3d_backward_input_strided(nfv_context *ctx, const conv_dims *d, cl_mem dy, cl_mem gate, cl_mem w,
                                        cl_mem dx);
int conv3d_has_strided_weights(const conv_dims *d);
nfv_status conv3d_backward_weights_strided(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem dy, cl_mem dw);

/* src/layers/conv3d_wgrad.c: dw (CO, CI, k) through the fast kernels, x
 * stride 1, kw <= 5. */
nfv_status conv3d_weights_fast(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem dy, cl_mem dw);

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
