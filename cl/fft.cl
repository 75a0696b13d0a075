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
#define IB 6           /* output rows per work-item in basis_inner (each shares the vector loads) */
#endif
#ifndef RB
#define RB 6           /* rows per work-item in basis_last (each shares the matrix loads) */
#endif
#ifndef JB
#define JB 2           /* vectors per row and work-item in both (each shares the broadcasts) */
#endif

#include "common.cl"

/* Axis with inner > 1 (D or H).  global: (ceil(inner/(VEC*JB)), ceil(len/IB), outer).
 * M: (roundup(len, IB), len) row-major, rows past len are zero.  A work-item
 * computes IB rows x JB vectors: per k, JB vector loads and IB broadcasts
 * feed IB*JB FMAs, 12 accumulators that fit AVX2's 16 registers too.  The
 * loops over them must be unrolled (#pragma unroll): PoCL left them rolled
 * and kept the accumulators on the stack (6 FMAs in the whole binary), and
 * the passes ran at ~50-100 GFLOP/s.  Loads may run up to VEC*JB-1 floats
 * past a row's end: buffers carry slack. */
__kernel void basis_inner(__global const float *in, __global float *out, __global const float *M, int len,
                          int inner)
{
    int j0 = get_global_id(0) * VEC * JB, i0 = get_global_id(1) * IB, o = get_global_id(2);
    __global const float *src = in + (long)o * len * inner + j0;
    __global const float *m = M + (long)i0 * len;
    floatv acc[IB][JB];
#pragma unroll
    for (int b = 0; b < IB; b++)
#pragma unroll
        for (int j = 0; j < JB; j++) acc[b][j] = (floatv)(0.0f);
    for (int k = 0; k < len; k++) {
        floatv v[JB];
#pragma unroll
        for (int j = 0; j < JB; j++) v[j] = VLOAD(0, src + (long)k * inner + j * VEC);
#pragma unroll
        for (int b = 0; b < IB; b++) {
            const floatv w = (floatv)(m[b * len + k]);
#pragma unroll
            for (int j = 0; j < JB; j++) acc[b][j] = MAC(w, v[j], acc[b][j]);
        }
    }
#pragma unroll
    for (int b = 0; b < IB; b++)
#pragma unroll
        for (int j = 0; j < JB; j++)
            if (i0 + b < len && j0 + j * VEC < inner)
                store_lanes(acc[b][j], out + ((long)o * len + i0 + b) * inner + j0 + j * VEC, inner - j0 - j * VEC);
}

/* Last axis (W, inner = 1).  global: (ldb/(VEC*JB), ceil(rows/RB)).
 * Mt: (len, ldb) row-major with Mt[k, i] = M[i, k], columns past len zero,
 * ldb a multiple of VEC*JB.  A work-item computes RB rows x JB vectors. */
__kernel void basis_last(__global const float *in, __global float *out, __global const float *Mt, int len, int ldb,
                         int rows)
{
    int i0 = get_global_id(0) * VEC * JB, r0 = get_global_id(1) * RB;
    floatv acc[RB][JB];
    long base[RB];
#pragma unroll
    for (int b = 0; b < RB; b++) {
#pragma unroll
        for (int j = 0; j < JB; j++) acc[b][j] = (floatv)(0.0f);
        base[b] = (long)min(r0 + b, rows - 1) * len; /* rows past the end read the last row, never stored */
    }
    for (int k = 0; k < len; k++) {
        floatv m[JB];
#pragma unroll
        for (int j = 0; j < JB; j++) m[j] = VLOAD(0, Mt + (long)k * ldb + i0 + j * VEC);
#pragma unroll
        for (int b = 0; b < RB; b++) {
            const floatv x = (floatv)(in[base[b] + k]);
#pragma unroll
            for (int j = 0; j < JB; j++) acc[b][j] = MAC(x, m[j], acc[b][j]);
        }
    }
#pragma unroll
    for (int b = 0; b < RB; b++)
#pragma unroll
        for (int j = 0; j < JB; j++)
            if (r0 + b < rows && i0 + j * VEC < len)
                store_lanes(acc[b][j], out + (long)(r0 + b) * len + i0 + j * VEC, len - i0 - j * VEC);
}

/* global: (ceil(vol / VEC), N).  out (N, vol) = in * s, s (vol) the same for
 * every sample: VEC values per work-item (one per value with a 64-bit
 * modulo took 0.7 ms a launch at batch 1). */
__kernel void spectrum_scale(__global const float *in, __global float *out, __global const float *s, int vol)
{
    const int i0 = get_global_id(0) * VEC;
    const long base = (long)get_global_id(1) * vol;
    if (i0 + VEC <= vol) {
        VSTORE(VLOAD(0, in + base + i0) * VLOAD(0, s + i0), 0, out + base + i0);
        return;
    }
    for (int i = i0; i < vol; i++) out[base + i] = in[base + i] * s[i];
}
