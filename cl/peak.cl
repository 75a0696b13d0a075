/* The device's attainable fp32 multiply-add rate, for the "% peak" columns of
 * `neurofv bench` and `bench-kernels` (src/runtime/peak.c): each work-item
 * runs PEAK_CHAINS independent VEC-wide MAC chains for PEAK_ITERS steps, so
 * the loop is bound by the FMA units, not by latency (12 chains cover two
 * FMA pipes of latency 4-6), and touches no memory until its one store.
 * a and b are run-time arguments, so nothing folds.  The store keeps the
 * chains alive, every lane of them: a compiler that runs vectors as scalars
 * (NVIDIA's) drops the lanes that reach no store, and storing lane 0 alone
 * measured 4x NVIDIA's fp32 peak on an H200.  With a = 0.5 and b = 1 every
 * chain reaches 2 exactly (2 is the fixed point, and 0.5 c + 1 rounds to it
 * from any start here), so the host checks out[i] == 2 x 12 x VEC and knows
 * every step of every lane ran. */
#ifndef VEC
#define VEC 16
#endif
#ifndef PEAK_ITERS
#define PEAK_ITERS 2048
#endif
#include "common.cl"

#define PEAK_CHAINS 12
__kernel void fma_peak(__global float *out, float a, float b)
{
    const float x = (float)(get_global_id(0) % 7);
    floatv c0 = (floatv)(x), c1 = c0 + 1.0f, c2 = c0 + 2.0f, c3 = c0 + 3.0f, c4 = c0 + 4.0f, c5 = c0 + 5.0f;
    floatv c6 = c0 + 6.0f, c7 = c0 + 7.0f, c8 = c0 + 8.0f, c9 = c0 + 9.0f, c10 = c0 + 10.0f, c11 = c0 + 11.0f;
    const floatv av = (floatv)(a), bv = (floatv)(b);
    for (int i = 0; i < PEAK_ITERS; i++) {
        c0 = MAC(c0, av, bv), c1 = MAC(c1, av, bv), c2 = MAC(c2, av, bv), c3 = MAC(c3, av, bv);
        c4 = MAC(c4, av, bv), c5 = MAC(c5, av, bv), c6 = MAC(c6, av, bv), c7 = MAC(c7, av, bv);
        c8 = MAC(c8, av, bv), c9 = MAC(c9, av, bv), c10 = MAC(c10, av, bv), c11 = MAC(c11, av, bv);
    }
    const floatv s = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11));
    out[get_global_id(0)] = vsum(s);
}
