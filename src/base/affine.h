/* 4x4 voxel <-> world affines (NIfTI sform/qform, last row 0 0 0 1), double precision. */
#ifndef NEUROFV_BASE_AFFINE_H
#define NEUROFV_BASE_AFFINE_H

/* out = a * b; out may alias a or b. */
void nfv_affine_mul(const double a[4][4], const double b[4][4], double out[4][4]);

/* out = a^-1 for an affine a (last row taken as 0 0 0 1).  Returns 1 on
 * success, 0 when the 3x3 part is singular relative to its own scale
 * (|det| <= 1e-12 * max|a_ij|^3) or not finite; out is then untouched. */
int nfv_affine_inverse(const double a[4][4], double out[4][4]);

#endif
