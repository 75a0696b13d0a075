/* Plain C references (double precision) for InstanceNorm3d and the graph ops
 * (Add, channel Concat, constant Pad, Softmax / LogSoftmax), forward and
 * backward.  Tensors are row-major as on the device; s is the product of the
 * spatial sizes (1 for (N, C) tensors). */
#ifndef NEUROFV_REF_GRAPH_H
#define NEUROFV_REF_GRAPH_H

#include <stddef.h>

/* y = gamma[c] * (x - mean) * invstd + beta[c] per (n, c) plane of s values,
 * biased variance, two-pass; gamma/beta NULL: 1 and 0.  mean and invstd
 * (n*c values) may be NULL. */
void ref_instancenorm(const double *x, int n, int c, size_t s, const double *gamma, const double *beta, double eps,
                      double *y, double *mean, double *invstd);
/* dx (may be NULL), dgamma and dbeta (c values, may be NULL) from x and dy. */
void ref_instancenorm_backward(const double *x, const double *dy, int n, int c, size_t s, const double *gamma,
                               double eps, double *dx, double *dgamma, double *dbeta);

/* y = a + b, count values. */
void ref_add(const double *a, const double *b, double *y, size_t count);

/* x (n, ci, s) into channels [off, off + ci) of y (n, ct, s); the others untouched. */
void ref_concat_channels(const double *x, int n, int ci, size_t s, int off, int ct, double *y);
/* dx (n, ci, s) = channels [off, off + ci) of dy (n, ct, s). */
void ref_concat_channels_backward(const double *dy, int n, int ct, size_t s, int off, int ci, double *dx);

/* y (planes, d+b0+e0, h+b1+e1, w+b2+e2) = x (planes, d, h, w) padded with value. */
void ref_pad3d(const double *x, int planes, int d, int h, int w, const int begin[3], const int end[3], double value,
               double *y);
/* dx (planes, d, h, w) = the crop of dy (planes, d+b0+e0, ...). */
void ref_pad3d_backward(const double *dy, int planes, int d, int h, int w, const int begin[3], const int end[3],
                        double *dx);

/* Softmax (use_log != 0: LogSoftmax) over c of x (n, c, s), max subtracted. */
void ref_softmax(int use_log, const double *x, int n, int c, size_t s, double *y);
/* From the forward output y: softmax dx = y (dy - sum_c dy y); log dx = dy - exp(y) sum_c dy. */
void ref_softmax_backward(int use_log, const double *y, const double *dy, int n, int c, size_t s, double *dx);

#endif
