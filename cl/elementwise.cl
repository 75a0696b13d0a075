/* Elementwise helpers over flat float arrays of n elements.
 *
 * Each work-item handles VEC consecutive floats as one vector (PoCL's CPU
 * compiler does not vectorize across work-items reliably; explicit vectors
 * give full-width loads).  The last work-item may hold fewer than VEC
 * elements and falls back to scalar code, so nothing past n is touched. */
#ifndef VEC
#define VEC 8
#endif

#include "common.cl"

/* y = a * x + y */
__kernel void axpy(const float a, __global const float *x, __global float *y, const ulong n)
{
    const ulong base = (ulong)get_global_id(0) * VEC;
    if (base + VEC <= n) {
        floatv yv = VLOAD(0, y + base);
        VSTORE(MAC((floatv)(a), VLOAD(0, x + base), yv), 0, y + base);
    } else {
        for (ulong i = base; i < n; i++) y[i] = MAC(a, x[i], y[i]);
    }
}

/* x = a * x */
__kernel void scale(const float a, __global float *x, const ulong n)
{
    const ulong base = (ulong)get_global_id(0) * VEC;
    if (base + VEC <= n) {
        VSTORE((floatv)(a) * VLOAD(0, x + base), 0, x + base);
    } else {
        for (ulong i = base; i < n; i++) x[i] = a * x[i];
    }
}

/* x = min(max(x, lo), hi): the projection onto a box, for projected gradient
 * steps (visualization --range).  Comparisons are exact, so no tolerance. */
__kernel void clamp_range(const float lo, const float hi, __global float *x, const ulong n)
{
    const ulong base = (ulong)get_global_id(0) * VEC;
    if (base + VEC <= n) {
        VSTORE(fmin(fmax(VLOAD(0, x + base), (floatv)(lo)), (floatv)(hi)), 0, x + base);
    } else {
        for (ulong i = base; i < n; i++) x[i] = fmin(fmax(x[i], lo), hi);
    }
}

/* y = y + |x|: accumulates gradient magnitudes (visualization --importance). */
__kernel void abs_accumulate(__global const float *x, __global float *y, const ulong n)
{
    const ulong base = (ulong)get_global_id(0) * VEC;
    if (base + VEC <= n) {
        VSTORE(VLOAD(0, y + base) + fabs(VLOAD(0, x + base)), 0, y + base);
    } else {
        for (ulong i = base; i < n; i++) y[i] = y[i] + fabs(x[i]);
    }
}
