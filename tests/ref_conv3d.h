/* Plain C double-precision reference of Conv3d (forward and both backwards),
 * the host-side spec the device kernels are tested against.  Shapes as in
 * include/neurofv/ops.h: x (N, CI, D, H, W), w (CO, CI/G, KD, KH, KW),
 * y (N, CO, DO, HO, WO); k/s/p/dil are (d, h, w) kernel, stride, padding,
 * dilation; g the groups.  dil and g of 0 mean 1 (a plain conv). */
#ifndef NEUROFV_TEST_REF_CONV3D_H
#define NEUROFV_TEST_REF_CONV3D_H

typedef struct ref_conv3d_shape {
    int n, ci, d, h, w;
    int co;
    int k[3], s[3], p[3];
    int dil[3], g;    /* 0 means 1 */
    int od, oh, ow;   /* filled by ref_conv3d_shape_init */
} ref_conv3d_shape;

/* Compute od/oh/ow from the rest (floor((in + 2p - dil*(k-1) - 1) / s) + 1). */
void ref_conv3d_shape_init(ref_conv3d_shape *s);

/* y = conv(x, w) + b (b may be NULL); inputs float or double via the _d form. */
void ref_conv3d_forward(const ref_conv3d_shape *s, const float *x, const float *w, const float *b, double *y);
void ref_conv3d_forward_d(const ref_conv3d_shape *s, const double *x, const double *w, const double *b, double *y);
/* dx (N, CI, D, H, W) = transpose of the forward applied to dy. */
void ref_conv3d_backward_input(const ref_conv3d_shape *s, const float *dy, const float *w, double *dx);
/* dw (CO, CI/G, KD, KH, KW) and db (CO) (either may be NULL). */
void ref_conv3d_backward_weights(const ref_conv3d_shape *s, const float *x, const float *dy, double *dw, double *db);

#endif
