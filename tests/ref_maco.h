/* Plain double references for the MACO parameterization (cl/maco.cl,
 * src/vis/maco.c): the orthonormal separable Hartley transform, the decode
 * and its analytic gradient. */
#ifndef NEUROFV_REF_MACO_H
#define NEUROFV_REF_MACO_H

#include <stddef.h>

/* out (D, H, W) = B x, B the separable Hartley basis (symmetric, so also B^T). */
void ref_hartley(const int dims[3], const double *x, double *out);
/* Mirror index of k: ((D - z) % D, (H - y) % H, (W - x) % W). */
size_t ref_mirror(const int dims[3], size_t k);
/* image = lo..hi range map of B^T (amp * cas((phi - phi[-k]) / 2)); one volume. */
void ref_maco_decode(const int dims[3], const float *amp, double lo, double hi, const double *phi, double *image);
/* grad = d <w, image(phi)> / d phi, analytic (chain rule by hand). */
void ref_maco_grad(const int dims[3], const float *amp, double lo, double hi, const double *phi, const double *w,
                   double *grad);

#endif
