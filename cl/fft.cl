/* Separable basis transforms for the Fourier parameterization (src/fft.c
 * explains why a dense per-axis matrix instead of an FFT).  One pass applies
 * an n x n matrix M along one axis of a row-major array viewed as
 * (outer, len, inner):  out[o, i, j] = sum_k M[i, k] in[o, k, j].
 *
 * Vectorized explicitly (PoCL does not vectorize across work-items through a
 * loop): each work-item produces VEC consecutive values as one floatVEC. */

#ifndef VEC
#define VEC 8          /* floats per vector: 16 on AVX-512, 8 on AVX2, 4 on GPUs */
#endif
#ifndef IB
#define IB 4           /* output rows per work-item in basis_inner (share each load) */
#endif
#ifndef RB
#define RB 4           /* rows per work-item in basis_last (share each matrix load) */
#endif

#include "common.cl"

/* Axis with inner > 1 (D or H).  global: (ceil(inner/VEC), ceil(len/IB), outer).
 * M: (roundup(len, IB), len) row-major, rows past len are zero.  Loads may
 * run up to VEC-1 floats past a row's end: buffers carry slack. */
__kernel void basis_inner(__global const float *in, __global float *out, __global const float *M, int len,
                          int inner)
{
    int j0 = get_global_id(0) * VEC, i0 = get_global_id(1) * IB, o = get_global_id(2);
    __global const float *src = in + (long)o * len * inner + j0;
    __global const float *m = M + (long)i0 * len;
    floatv acc[IB];
    for (int b = 0; b < IB; b++) acc[b] = (floatv)(0.0f);
    for (int k = 0; k < len; k++) {
        floatv v = VLOAD(0, src + (long)k * inner);
        for (int b = 0; b < IB; b++) acc[b] = MAC((floatv)(m[b * len + k]), v, acc[b]);
    }
    for (int b = 0; b < IB; b++)
        if (i0 + b < len) store_lanes(acc[b], out + ((long)o * len + i0 + b) * inner + j0, inner - j0);
}

/* Last axis (W, inner = 1).  global: (ceil(len/VEC), ceil(rows/RB)).
 * Mt: (len, ldb) row-major with Mt[k, i] = M[i, k], columns past len zero,
 * ldb a multiple of VEC. */
__kernel void basis_last(__global const float *in, __global float *out, __global const float *Mt, int len, int ldb,
                         int rows)
{
    int i0 = get_global_id(0) * VEC, r0 = get_global_id(1) * RB;
    floatv acc[RB];
    long base[RB];
    for (int b = 0; b < RB; b++) {
        acc[b] = (floatv)(0.0f);
        base[b] = (long)min(r0 + b, rows - 1) * len; /* rows past the end read the last row, never stored */
    }
    for (int k = 0; k < len; k++) {
        floatv m = VLOAD(0, Mt + (long)k * ldb + i0);
        for (int b = 0; b < RB; b++) acc[b] = MAC((floatv)(in[base[b] + k]), m, acc[b]);
    }
    for (int b = 0; b < RB; b++)
        if (r0 + b < rows) store_lanes(acc[b], out + (long)(r0 + b) * len + i0, len - i0);
}

/* global: (numel).  out = in * s, s (vol) broadcast over the batch. */
__kernel void spectrum_scale(__global const float *in, __global float *out, __global const float *s, long vol)
{
    long g = get_global_id(0);
    out[g] = in[g] * s[g % vol];
}
