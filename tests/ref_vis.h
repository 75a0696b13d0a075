/* Plain C references (double precision) for the feature-visualization ops of
 * include/neurofv/vis_ops.h.  Volumes are (N, 1, D, H, W) row-major, dims =
 * {D, H, W}; masks are per sample (N*vol) or shared (vol) per mask_per_sample. */
#ifndef NEUROFV_REF_VIS_H
#define NEUROFV_REF_VIS_H

#include <stddef.h>

#include "neurofv/vis_ops.h"

/* Penalty value of each sample (value[n], unweighted) and, if grad != NULL,
 * its gradient dP/dx (overwritten). */
void ref_penalty(nfv_penalty_kind kind, double eps, const double *x, const double *mask, int mask_per_sample, int n,
                 const int dims[3], double *value, double *grad);

/* Separable Gaussian blur (forward, or its transpose built from the explicit
 * per-axis matrix). */
void ref_blur(double sigma, int replicate, int adjoint, const double *x, int n, const int dims[3], double *y);

void ref_pad(const int pad[3], int replicate, double value, const double *x, int n, const int dims[3], double *y);
void ref_jitter(const int *shift, const double *x, int n, const int dims[3], double *y);
/* Trilinear warp, zero fill; matrix (n, 12) as in nfv_affine_warp. */
void ref_warp(const float *matrix, const double *x, int n, const int in_dims[3], const int out_dims[3], double *y);

/* Basis matrix B[k*len + i] (double) and scale (vol) as the plan defines them. */
void ref_fourier_basis(nfv_fourier_basis basis, int len, double *B);
void ref_fourier_scale(nfv_fourier_basis basis, const int dims[3], double decay, double *s);
/* image = B^T (s * param), per sample. */
void ref_fourier_decode(nfv_fourier_basis basis, double decay, const double *param, int n, const int dims[3],
                        double *image);

/* Helpers. */
double *ref_to_double(const float *x, size_t n);
double ref_dot_f(const float *a, const float *b, size_t n);
#endif
