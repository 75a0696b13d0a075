/* Device operations of a 3D CNN, each forward and backward.
 *
 * Conventions (all ops):
 *  - Tensors are float32, row-major (N, C, D, H, W); shapes are checked and a
 *    mismatch returns NFV_ERR_INVALID_ARG naming the op and both shapes.
 *  - Outputs must be allocated by the caller with the documented shape and are
 *    overwritten (never accumulated into) unless stated.
 *  - Work is queued, not waited for; call nfv_finish() or download to sync.
 *  - A backward output given as NULL is not computed (e.g. the input gradient
 *    of the first layer in training, or weight gradients in visualization).
 *  - Every op has a plain C reference in tests/ref_*.c it is tested against,
 *    and every backward is checked by finite differences. */
#ifndef NEUROFV_OPS_H
#define NEUROFV_OPS_H

#include "neurofv/dist.h"
#include "neurofv/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Conv3d (cl/conv3d.cl, src/conv3d.c) ------------------------------- */

typedef struct nfv_conv3d_params {
    int kernel[3];   /* kd, kh, kw */
    int stride[3];   /* sd, sh, sw */
    int padding[3];  /* pd, ph, pw (zero padding on both sides) */
    int dilation[3]; /* dd, dh, dw; 0 means 1 (so zero-initialized params are a plain conv) */
    int groups;      /* G: Ci and Co split into G groups (G = Ci: depthwise); 0 means 1 */
} nfv_conv3d_params;

/* Output spatial size along one axis: (in + 2*pad - k) / stride + 1 (floor). */
int nfv_conv_out_size(int in, int kernel, int stride, int pad);
/* The same with dilation: (in + 2*pad - dil*(k-1) - 1) / stride + 1 (floor); 0 if it does not fit. */
int nfv_conv_out_size_dilated(int in, int kernel, int stride, int pad, int dilation);

/* y (N, Co, Do, Ho, Wo) = conv(x (N, Ci, D, H, W), w (Co, Ci/G, kd, kh, kw)) + b (Co) or no bias.
 * Dilation or groups > 1 run the general (one output per work-item) kernels;
 * the fast tiled kernels serve the plain case. */
nfv_status nfv_conv3d_forward(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                              const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y);
/* dx (N, Ci, D, H, W) from dy (N, Co, Do, Ho, Wo) and w. */
nfv_status nfv_conv3d_backward_input(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                     const nfv_tensor *w, nfv_tensor *dx);
/* dw (Co, Ci/G, kd, kh, kw) and db (Co, may be NULL) from x and dy. */
nfv_status nfv_conv3d_backward_weights(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                       const nfv_tensor *dy, nfv_tensor *dw, nfv_tensor *db);
/* Eval-mode fusion of conv -> BatchNorm -> ReLU (src/model/model_fuse.c):
 *  - y = max(conv(x, w) + b, 0), the ReLU applied as the conv stores y;
 *  - dx = backward-input of dy * [gate > 0], gate = that ReLU's output
 *    (N, Co, Do, Ho, Wo): ReLU's backward done in the conv's padding copy;
 *  - wf (Co, Ci/G, kd, kh, kw), bf (Co): w and b (may be NULL) with an
 *    eval-mode BatchNorm (gamma, beta, running mean and var (Co), eps) after
 *    the conv folded in: conv(x, wf) + bf = BN(conv(x, w) + b). */
nfv_status nfv_conv3d_forward_relu(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                   const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y);
nfv_status nfv_conv3d_backward_input_gated(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                           const nfv_tensor *gate, const nfv_tensor *w, nfv_tensor *dx);
nfv_status nfv_conv3d_fold_batchnorm(nfv_context *ctx, const nfv_tensor *w, const nfv_tensor *b,
                                     const nfv_tensor *gamma, const nfv_tensor *beta, const nfv_tensor *mean,
                                     const nfv_tensor *var, float eps, nfv_tensor *wf, nfv_tensor *bf);
/* y (N, Co, Do/2, Ho/2, Wo/2) = maxpool(kernel 2, stride 2)(max(conv(x, w)
 * + b, 0)) and argmax (its shape, offsets in the (Do, Ho, Wo) plane as
 * nfv_maxpool3d_forward gives them, and -1 where y <= 0: the gated arg max
 * of nfv_maxpool3d_backward_gated_padded), without storing the conv's output;
 * has_relu_maxpool2: 1 when p has this kernel (no dilation or groups,
 * stride 1 along W). */
int nfv_conv3d_has_relu_maxpool2(const nfv_context *ctx, const nfv_conv3d_params *p);
nfv_status nfv_conv3d_forward_relu_maxpool2(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                            const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y,
                                            nfv_tensor *argmax);
/* The input gradient with dy staged by its producer: a max pool's backward
 * writes straight into the padded buffer the conv's input gradient reads,
 * saving the padding copy of the largest gradient of a step.
 *  - has_staged: 1 when p has that path (stride 1, padding <= kernel - 1,
 *    no dilation or groups);
 *  - stage: staged = a view (N, Co, Do + 2 pad[0], Ho + 2 pad[1], Wo + 2
 *    pad[2]) of the conv's staging buffer (the context's scratch) for dy's
 *    padded copy, pad = kernel - 1 - padding, in layout->channel_rows' order
 *    (nfv_conv3d_staging); the producer writes every element (zeros around
 *    each plane);
 *  - backward_input_staged: dx from what was written there (dy: shape only).
 *    No other conv call may come between the two. */
/* Where a staged input gradient wants dy's padded copy: pad per axis; and
 * channel_rows 0: planar (N, Co, Dp, Hp, Wp); channel_rows = Co: each padded
 * row holds the Co channels' rows one after another, (N, Dp, Hp, Co, Wp)
 * (the input gradient of a 1-channel conv on devices whose kernel
 * configuration marches, nfv_kernel_config.conv_march). */
typedef struct nfv_conv3d_staging {
    int pad[3];
    int channel_rows;
} nfv_conv3d_staging;
int nfv_conv3d_has_staged_input_grad(const nfv_conv3d_params *p);
/* 1 when nfv_conv3d_backward_input_gated applies the gate as it pads dy
 * (stride-1 convs with a staged input gradient, and strided plain convs,
 * whose phase conv pads dy); 0: it gates dy into a temporary of dy's size
 * first (dilation, groups, or padding > kernel - 1 at stride 1), which the
 * memory estimate counts. */
int nfv_conv3d_gates_in_place(const nfv_conv3d_params *p);
nfv_status nfv_conv3d_stage_input_grad(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                       const nfv_tensor *w, const nfv_tensor *dx, nfv_tensor *staged,
                                       nfv_conv3d_staging *layout);
nfv_status nfv_conv3d_backward_input_staged(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                            const nfv_tensor *w, nfv_tensor *dx);
/* Floats of the zero-padded staging copy (slack included) the fast paths
 * take, in the context's scratch, of an input (n, c, dims) padded by pad
 * for a conv with that kernel and stride, at vector width vec
 * (nfv_context_vector_width): what src/model/memory.c counts. */
size_t nfv_conv3d_padded_floats(int vec, int n, int c, const int dims[3], const int pad[3], const int kernel[3],
                                const int stride[3]);
/* Floats of the scratch copy of dy (n, co, out_dims) the weight gradient of
 * a conv with that kernel takes under kernel configuration kc: with the channel last
 * where the output channels go in the lanes (nfv_conv3d_channel_last), at
 * the padded row pitch padded_w for narrow rows (vectors along the
 * flattened plane); 0 where it takes the row kernel (rows that waste under
 * 10 % of a vector's lanes, or an h stride other than 1): what
 * src/model/memory.c counts. */
/* 1 when the weight gradient of a stride-1-in-x conv with that kernel, co
 * output channels, output out_dims, padded input width padded_w and h
 * stride stride_h runs conv3d_bwd_weights_cvec under kc (no partial sums). */
int nfv_conv3d_weights_channel_last(const nfv_kernel_config *kc, int co, const int kernel[3], const int out_dims[3],
                                    int padded_w, int stride_h);
size_t nfv_conv3d_pitched_dy_floats(const nfv_kernel_config *kc, int n, int co, const int kernel[3],
                                    const int out_dims[3], int padded_w, int stride_h);
/* Floats of the weight gradient's partial sums (one (co, ci, kernel) block
 * per slab of output planes, batch n, output (out_dims)) in the context's
 * scratch, where it takes the slab kernels (not
 * nfv_conv3d_weights_channel_last): what src/model/memory.c counts. */
size_t nfv_conv3d_weight_partial_floats(int n, int co, int ci, const int kernel[3], const int out_dims[3]);
/* 1 when a stride-1-in-x conv of co output channels over in_dims padded by
 * pad to out_dims (h stride stride_h) runs conv3d_fwd_cvec under kernel
 * configuration kc (its vector width and conv_cvec): that kernel reads a
 * copy of the weights with the output channel last, in a scratch buffer
 * or, while the weights are frozen, kept per weight (the memory estimate
 * counts it). */
int nfv_conv3d_channel_last(const nfv_kernel_config *kc, int co, const int in_dims[3], const int pad[3],
                            const int out_dims[3], int stride_h);
/* The conv over phases that a strided conv runs as
 * (src/layers/conv3d_strided.c), split along x only (x_only: its forward
 * and weight gradient) or along every strided axis (its input gradient):
 * phases (input channels per channel), their length per axis, and the
 * kernel, stride and padding over them (pad: the conv's own; an axis not
 * split keeps it); src/model/memory.c counts its scratch from this. */
typedef struct nfv_conv3d_phase_shape {
    int phases, len[3], kernel[3], stride[3], pad[3];
} nfv_conv3d_phase_shape;
nfv_conv3d_phase_shape nfv_conv3d_phase_shape_of(const int in_dims[3], const int kernel[3], const int stride[3],
                                                 const int pad[3], const int out_dims[3], int x_only);
/* The plain one-output-per-work-item kernels: the device-side spec the fast
 * ones are tested against, and what the functions above fall back to for the
 * shapes no fast path covers (an input gradient of stride 1 with padding >
 * kernel - 1, a weight gradient wider than 5 along x after the phase split);
 * with dilation or groups > 1 they run the general kernels, as the functions
 * above. */
nfv_status nfv_conv3d_forward_reference(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                        const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y);
nfv_status nfv_conv3d_backward_input_reference(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                               const nfv_tensor *w, nfv_tensor *dx);
nfv_status nfv_conv3d_backward_weights_reference(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                                 const nfv_tensor *dy, nfv_tensor *dw, nfv_tensor *db);

/* ---- Pooling (cl/pool.cl, src/pool.c) ---------------------------------- */

typedef struct nfv_pool3d_params {
    int kernel[3], stride[3], padding[3];
    int ceil_mode;   /* 1: output size rounds up (PyTorch ceil_mode; a last window must start inside the input or its left padding) */
    int exclude_pad; /* average pool: 1 = padded zeros do not count in the divisor (count_include_pad=False; ONNX's default) */
} nfv_pool3d_params;

/* Pooled size along one axis with p's rounding (floor or PyTorch's ceil_mode rule); 0 if the window does not fit. */
int nfv_pool_out_size(int in, int kernel, int stride, int pad, int ceil_mode);

/* y (N, C, Do, Ho, Wo) = max over each window of x (N, C, D, H, W); padding is
 * -inf as in PyTorch.  argmax (same shape as y) receives, as int32 bit
 * patterns in its buffer, the flat index d*H*W + h*W + w of the winner inside
 * its (n, c) volume; it may be NULL when no backward follows. */
nfv_status nfv_maxpool3d_forward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *x, nfv_tensor *y,
                                 nfv_tensor *argmax);
/* dx (N, C, D, H, W) from dy and argmax (overlapping windows sum). */
nfv_status nfv_maxpool3d_backward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *dy,
                                  const nfv_tensor *argmax, nfv_tensor *dx);
/* Eval-mode fusion (src/model/model_fuse.c): dx of a max pool after a ReLU,
 * gated by [y > 0] (y (N, C, OD, OH, OW) = this pool's output: the ReLU
 * passed a window's max exactly when y > 0), read from a gated arg max
 * (dy's shape; -1 where y <= 0, as nfv_conv3d_forward_relu_maxpool2 writes
 * it), written into dxp, x's shape
 * (N, C, D, H, W) padded by layout->pad on both sides of each axis (zeros
 * there), planar or in channel rows as layout says: the staged input
 * gradient of the conv before the ReLU (nfv_conv3d_stage_input_grad).  x
 * gives only the shape.  has_gated_padded_backward: 1 when the pool has this kernel (kernel
 * 2 and stride 2 along W, no padding there). */
int nfv_maxpool3d_has_gated_padded_backward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *x,
                                            const nfv_tensor *y);
nfv_status nfv_maxpool3d_backward_gated_padded(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *dy,
                                               const nfv_tensor *argmax, const nfv_tensor *x,
                                               const nfv_conv3d_staging *layout, nfv_tensor *dxp);

/* Average pooling; padded zeros count in the divisor (PyTorch's default
 * count_include_pad=True), or with exclude_pad only the real voxels.  With
 * ceil_mode a last window hanging past the right padding divides by its part
 * inside the padded input, as PyTorch. */
nfv_status nfv_avgpool3d_forward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *x, nfv_tensor *y);
nfv_status nfv_avgpool3d_backward(nfv_context *ctx, const nfv_pool3d_params *p, const nfv_tensor *dy, nfv_tensor *dx);
/* y (N, C) = mean over D, H, W of x (N, C, D, H, W); backward spreads dy/(D*H*W). */
nfv_status nfv_global_avgpool_forward(nfv_context *ctx, const nfv_tensor *x, nfv_tensor *y);
nfv_status nfv_global_avgpool_backward(nfv_context *ctx, const nfv_tensor *dy, nfv_tensor *dx);
/* y (N, C) = max over D, H, W of x (N, C, D, H, W) (y may also be shaped (N, C, 1, 1, 1));
 * argmax (N, C) receives the flat index d*H*W + h*W + w of the winner (first on ties) as int32 bits.
 * Backward: dx = 0 except dx[argmax] = dy. */
nfv_status nfv_global_maxpool_forward(nfv_context *ctx, const nfv_tensor *x, nfv_tensor *y, nfv_tensor *argmax);
nfv_status nfv_global_maxpool_backward(nfv_context *ctx, const nfv_tensor *dy, const nfv_tensor *argmax, nfv_tensor *dx);

/* ---- Activations (cl/activation.cl, src/activation.c) ------------------ */

typedef enum nfv_activation { NFV_RELU, NFV_LEAKY_RELU, NFV_ELU, NFV_SIGMOID } nfv_activation;

/* y = f(x), any shape; alpha is LeakyReLU's negative slope or ELU's alpha.
 * y may be x (in place). */
nfv_status nfv_activation_forward(nfv_context *ctx, nfv_activation kind, float alpha, const nfv_tensor *x,
                                  nfv_tensor *y);
/* dx = dy * f'(x) where x is the forward input; dx may be dy (in place). */
nfv_status nfv_activation_backward(nfv_context *ctx, nfv_activation kind, float alpha, const nfv_tensor *x,
                                   const nfv_tensor *dy, nfv_tensor *dx);

/* ---- BatchNorm3d (cl/norm.cl, src/batchnorm.c) ------------------------- */

/* Training mode: normalize x (N, C, D, H, W) with the batch mean and biased
 * variance per channel, y = gamma * xhat + beta; update running_mean/var (C)
 * as PyTorch does (momentum, unbiased variance for running_var); save_mean and
 * save_invstd (C) keep what backward needs. */
nfv_status nfv_batchnorm3d_forward_train(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                         const nfv_tensor *beta, nfv_tensor *running_mean, nfv_tensor *running_var,
                                         float momentum, float eps, nfv_tensor *y, nfv_tensor *save_mean,
                                         nfv_tensor *save_invstd);
/* The same under data parallelism (synchronized BatchNorm): x holds this
 * rank's dist->count samples of a global batch of dist->total; the
 * statistics (and the running-stat update) are those of the whole batch, so
 * every rank normalizes as one process holding the whole batch would.  The
 * per-chunk partials of every rank are gathered in sample order and merged
 * by the same kernel in the same order, so they equal the one-process
 * statistics bit for bit.  dist NULL or of one rank: the call above. */
nfv_status nfv_batchnorm3d_forward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                              const nfv_tensor *beta, nfv_tensor *running_mean,
                                              nfv_tensor *running_var, float momentum, float eps, nfv_tensor *y,
                                              nfv_tensor *save_mean, nfv_tensor *save_invstd,
                                              const nfv_dist_batch *dist);
/* y = ReLU(BatchNorm(x)) in training mode, the same arguments and the
 * same y, bit for bit, as the call above and a ReLU after it, without the
 * BatchNorm's own output (src/model/model_run.c: a training forward's
 * BatchNorm -> ReLU, whose backward is
 * nfv_batchnorm3d_relu_backward_train_dist). */
nfv_status nfv_batchnorm3d_relu_forward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                                   const nfv_tensor *beta, nfv_tensor *running_mean,
                                                   nfv_tensor *running_var, float momentum, float eps, nfv_tensor *y,
                                                   nfv_tensor *save_mean, nfv_tensor *save_invstd,
                                                   const nfv_dist_batch *dist);
/* Eval mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta. */
nfv_status nfv_batchnorm3d_forward_eval(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                        const nfv_tensor *beta, const nfv_tensor *running_mean,
                                        const nfv_tensor *running_var, float eps, nfv_tensor *y);
/* Training-mode backward; dx, dgamma, dbeta may each be NULL. */
nfv_status nfv_batchnorm3d_backward_train(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                          const nfv_tensor *gamma, const nfv_tensor *save_mean,
                                          const nfv_tensor *save_invstd, nfv_tensor *dx, nfv_tensor *dgamma,
                                          nfv_tensor *dbeta);
/* Synchronized backward: dx uses the sums of dy and dy * (x - mean) over the
 * whole batch (gathered as in the forward); dgamma and dbeta are this rank's
 * share, to be summed over ranks with the other parameter gradients. */
nfv_status nfv_batchnorm3d_backward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                               const nfv_tensor *gamma, const nfv_tensor *save_mean,
                                               const nfv_tensor *save_invstd, nfv_tensor *dx, nfv_tensor *dgamma,
                                               nfv_tensor *dbeta, const nfv_dist_batch *dist);
/* The backward of nfv_batchnorm3d_relu_forward_train_dist: dy is the
 * ReLU's output gradient, gated by [a x + b > 0] with a and b recomputed
 * from gamma, beta, save_mean and save_invstd as the forward rounded them,
 * so dx, dgamma and dbeta are bit for bit those of the ReLU's backward and
 * the call above. */
nfv_status nfv_batchnorm3d_relu_backward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                                    const nfv_tensor *gamma, const nfv_tensor *beta,
                                                    const nfv_tensor *save_mean, const nfv_tensor *save_invstd,
                                                    nfv_tensor *dx, nfv_tensor *dgamma, nfv_tensor *dbeta,
                                                    const nfv_dist_batch *dist);
/* Eval-mode backward to the input only (visualization): dx = dy * gamma / sqrt(running_var + eps). */
nfv_status nfv_batchnorm3d_backward_eval(nfv_context *ctx, const nfv_tensor *dy, const nfv_tensor *gamma,
                                         const nfv_tensor *running_var, float eps, nfv_tensor *dx);

/* ---- InstanceNorm3d (cl/instancenorm.cl, src/layers/instancenorm.c) ---- */

/* y = gamma[c] * (x - mean[n,c]) * invstd[n,c] + beta[c] with the mean and
 * biased variance of each (n, c) volume of x (N, C, D, H, W), in training and
 * eval alike (PyTorch's InstanceNorm3d with track_running_stats=False, ONNX
 * InstanceNormalization).  gamma/beta (C) may be NULL (no affine: 1 and 0).
 * save_mean and save_invstd (N, C) keep what backward needs. */
nfv_status nfv_instancenorm3d_forward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                      const nfv_tensor *beta, float eps, nfv_tensor *y, nfv_tensor *save_mean,
                                      nfv_tensor *save_invstd);
/* dx (may be NULL), dgamma and dbeta (C, may be NULL) from x, dy and the saved statistics. */
nfv_status nfv_instancenorm3d_backward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                       const nfv_tensor *gamma, const nfv_tensor *save_mean,
                                       const nfv_tensor *save_invstd, nfv_tensor *dx, nfv_tensor *dgamma,
                                       nfv_tensor *dbeta);

/* ---- Graph ops: Add, Concat, Pad, Softmax (cl/graph.cl, src/layers/graph_ops.c) */

/* y = a + b (same numel; y may be a or b). */
nfv_status nfv_add_forward(nfv_context *ctx, const nfv_tensor *a, const nfv_tensor *b, nfv_tensor *y);
/* Concat along channels: x (N, Ci, S...) is written into channels
 * [c_offset, c_offset + Ci) of y (N, Ct, S...) (same N and S; S may be empty
 * for (N, F) tensors).  Backward: dx (N, Ci, S...) = that channel slice of dy. */
nfv_status nfv_concat_channels_forward(nfv_context *ctx, const nfv_tensor *x, int c_offset, nfv_tensor *y);
nfv_status nfv_concat_channels_backward(nfv_context *ctx, const nfv_tensor *dy, int c_offset, nfv_tensor *dx);
/* Constant pad of x (N, C, D, H, W) to y (N, C, D+b0+e0, H+b1+e1, W+b2+e2):
 * begin[a] / end[a] >= 0 voxels before / after axis a (d, h, w) filled with value.
 * Backward: dx = the matching crop of dy. */
nfv_status nfv_pad3d_forward(nfv_context *ctx, const int begin[3], const int end[3], float value, const nfv_tensor *x,
                             nfv_tensor *y);
nfv_status nfv_pad3d_backward(nfv_context *ctx, const int begin[3], const int end[3], const nfv_tensor *dy,
                              nfv_tensor *dx);
/* Softmax (log_softmax != 0: LogSoftmax) over the channel axis of x (N, C, S...)
 * (S may be empty: (N, C)), numerically stable (max subtracted).  Backward from
 * the forward's output y: softmax dx = y * (dy - sum_c dy*y); log dx = dy - exp(y) * sum_c dy. */
nfv_status nfv_softmax_forward(nfv_context *ctx, int log_softmax, const nfv_tensor *x, nfv_tensor *y);
nfv_status nfv_softmax_backward(nfv_context *ctx, int log_softmax, const nfv_tensor *y, const nfv_tensor *dy,
                                nfv_tensor *dx);

/* ---- Dropout (cl/activation.cl, src/dropout.c) ------------------------- */

/* Inverted dropout: mask (same shape) = 0 with probability p else 1/(1-p),
 * drawn from a counter-based hash of (seed, element index), so the same seed
 * gives the same mask on any device.  y = x * mask. */
nfv_status nfv_dropout_forward(nfv_context *ctx, float p, unsigned long long seed, const nfv_tensor *x,
                               nfv_tensor *y, nfv_tensor *mask);
/* The same with element i hashed as index first + i: a data-parallel rank
 * whose x starts at element `first` of the global batch draws the mask one
 * process would draw for those elements. */
nfv_status nfv_dropout_forward_at(nfv_context *ctx, float p, unsigned long long seed, unsigned long long first,
                                  const nfv_tensor *x, nfv_tensor *y, nfv_tensor *mask);
/* dx = dy * mask. */
nfv_status nfv_dropout_backward(nfv_context *ctx, const nfv_tensor *dy, const nfv_tensor *mask, nfv_tensor *dx);

/* ---- Linear (src/linear.c, cl/dense.cl) -------------------------------- */
/* Batches of up to 16 rows use direct VEC-wide kernels (CLBlast pads such
 * matrix-vector shapes to 64-row tiles and was 10-100x slower on PoCL);
 * larger batches use CLBlast SGEMM.  NEUROFV_LINEAR=clblast|direct forces one
 * path (tests run both). */

/* y (N, Out) = x (N, In) w (Out, In)^T + b (Out) or no bias. */
nfv_status nfv_linear_forward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *w, const nfv_tensor *b,
                              nfv_tensor *y);
/* dx (N, In) = dy w; dw (Out, In) = dy^T x; db (Out) = sum over N of dy.  Any may be NULL. */
nfv_status nfv_linear_backward(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *w, const nfv_tensor *dy,
                               nfv_tensor *dx, nfv_tensor *dw, nfv_tensor *db);

/* ---- Losses (cl/loss.cl, src/loss.c) ----------------------------------- */

/* Softmax cross-entropy over logits (N, K); labels (N) hold class indices as
 * floats; class_weights (K) or NULL.  loss (1) = sum_i w[y_i] * l_i / sum_i w[y_i]
 * (PyTorch's weighted mean); dlogits (N, K) its gradient, or NULL.  A label
 * that is not a whole number in [0, K) makes the loss NaN (checking device
 * labels on the host would need a sync). */
nfv_status nfv_softmax_cross_entropy(nfv_context *ctx, const nfv_tensor *logits, const nfv_tensor *labels,
                                     const nfv_tensor *class_weights, nfv_tensor *loss, nfv_tensor *dlogits);
/* Binary cross-entropy with logits (N, 1), targets (N) in {0, 1}; pos_weight
 * scales positive terms (1 = none).  Mean over N. */
nfv_status nfv_bce_with_logits(nfv_context *ctx, const nfv_tensor *logits, const nfv_tensor *targets,
                               float pos_weight, nfv_tensor *loss, nfv_tensor *dlogits);
/* Mean squared error over predictions (N, 1) and targets (N). */
nfv_status nfv_mse_loss(nfv_context *ctx, const nfv_tensor *pred, const nfv_tensor *targets, nfv_tensor *loss,
                        nfv_tensor *dpred);
/* Huber loss (PyTorch's huber_loss, mean over N) of predictions (N, 1) and
 * targets (N): d^2/2 for |d| <= delta, delta (|d| - delta/2) beyond; dpred
 * (N, 1) = clamp(d, -delta, delta) / N, or NULL.  delta > 0. */
nfv_status nfv_huber_loss(nfv_context *ctx, const nfv_tensor *pred, const nfv_tensor *targets, float delta,
                          nfv_tensor *loss, nfv_tensor *dpred);

/* ---- Optimizers (cl/optim.cl, src/optim.c) ----------------------------- */

/* PyTorch torch.optim.Adam semantics (L2 weight decay added to the gradient)
 * unless decoupled != 0 (AdamW).  step is the 1-based step count after this
 * update, for bias correction.  m and v (same shape as param) start at zero. */
typedef struct nfv_adam_params {
    float lr, beta1, beta2, eps, weight_decay;
    int decoupled;
} nfv_adam_params;
nfv_status nfv_adam_step(nfv_context *ctx, const nfv_adam_params *hp, int step, nfv_tensor *param,
                         const nfv_tensor *grad, nfv_tensor *m, nfv_tensor *v);
/* torch.optim.SGD semantics: g += wd * p; v = momentum * v + g; p -= lr * v
 * (v starts at zero, so the first step sets v = g, as PyTorch does). */
typedef struct nfv_sgd_params {
    float lr, momentum, weight_decay;
} nfv_sgd_params;
nfv_status nfv_sgd_step(nfv_context *ctx, const nfv_sgd_params *hp, nfv_tensor *param, const nfv_tensor *grad,
                        nfv_tensor *velocity);

/* ---- Elementwise helpers (cl/elementwise.cl, src/elementwise.c) -------- */

/* y = a * x + y (same numel). */
nfv_status nfv_axpy(nfv_context *ctx, float a, const nfv_tensor *x, nfv_tensor *y);
/* x = a * x. */
nfv_status nfv_scale(nfv_context *ctx, float a, nfv_tensor *x);
/* x = min(max(x, lo), hi) elementwise (lo <= hi). */
nfv_status nfv_clamp(nfv_context *ctx, float lo, float hi, nfv_tensor *x);
/* y = y + |x| elementwise (same numel). */
nfv_status nfv_abs_accumulate(nfv_context *ctx, const nfv_tensor *x, nfv_tensor *y);

#ifdef __cplusplus
}
#endif
#endif
