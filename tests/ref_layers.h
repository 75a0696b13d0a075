/* Plain C references (double precision) for the pooling, activation,
 * batch-norm and dropout kernels, and a central finite-difference helper.
 * Tensors are (N, C, D, H, W) row-major as on the device. */
#ifndef NEUROFV_REF_LAYERS_H
#define NEUROFV_REF_LAYERS_H

#include <stddef.h>

#include "neurofv/ops.h"

/* Output size along one axis, floor mode. */
int ref_pool_out(int in, int k, int s, int p);
/* The same with PyTorch's ceil_mode when ceil != 0: ceil((in + 2p - k) / s) + 1,
 * less one when the last window would start at or past in + p. */
int ref_pool_out_mode(int in, int k, int s, int p, int ceil);

/* y (N, C, Do, Ho, Wo) = window max of x (output size with p->ceil_mode,
 * windows clipped to the input); argmax (may be NULL) the flat index
 * d*H*W + h*W + w of the first maximum inside its plane. */
void ref_maxpool3d(const nfv_pool3d_params *p, const double *x, int n, int c, int d, int h, int w, double *y,
                   int *argmax);
/* Average (output size with p->ceil_mode) divided as PyTorch's avg_pool3d:
 * by the window clipped to the padded input (count_include_pad, kd*kh*kw
 * in floor mode), or with p->exclude_pad by the real voxels it covers. */
void ref_avgpool3d(const nfv_pool3d_params *p, const double *x, int n, int c, int d, int h, int w, double *y);
/* y (planes) = mean of each plane of `size` values. */
void ref_global_avgpool(const double *x, int planes, size_t size, double *y);
/* y (planes) = max of each plane, argmax (may be NULL) the first index of it. */
void ref_global_maxpool(const double *x, int planes, size_t size, double *y, int *argmax);

/* y = f(x) and dx = dy * f'(x), n elements. */
void ref_activation(nfv_activation kind, double alpha, const double *x, double *y, size_t n);
void ref_activation_backward(nfv_activation kind, double alpha, const double *x, const double *dy, double *dx,
                             size_t n);

/* Training-mode batch norm over x (N, C, S): y, and per channel the batch
 * mean, biased variance and unbiased variance (any output may be NULL). */
void ref_batchnorm_train(const double *x, int n, int c, size_t s, const double *gamma, const double *beta,
                         double eps, double *y, double *mean, double *var, double *var_unbiased);
void ref_batchnorm_eval(const double *x, int n, int c, size_t s, const double *gamma, const double *beta,
                        const double *running_mean, const double *running_var, double eps, double *y);

/* The dropout keep decision of cl/activation.cl, re-derived on the host. */
int ref_dropout_keep(unsigned long long seed, unsigned long long index, float p);

/* g[i] = (f(x + h e_i) - f(x - h e_i)) / 2h for i < n; x is restored. */
typedef double (*ref_scalar_fn)(const double *x, void *user);
void ref_fd_gradient(ref_scalar_fn f, void *user, double *x, size_t n, double h, double *g);

/* Float <-> double array helpers (malloc'ed results). */
double *rl_to_double(const float *x, size_t n);
float *rl_to_float(const double *x, size_t n);

#endif
