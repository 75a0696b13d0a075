/* Activations (ReLU, LeakyReLU, ELU, Sigmoid) forward/backward and inverted dropout.
 *
 * Activations work on flat arrays of n floats, VEC consecutive floats per
 * work-item (explicit vectors: full-width loads on CPUs), the last
 * work-item finishing the tail in scalar code.  y may alias x and dx may
 * alias dy (in place): each work-item reads its elements before writing them.
 * alpha is LeakyReLU's negative slope or ELU's alpha (unused by ReLU). */
#ifndef VEC
#define VEC 8
#endif

#include "common.cl"

/* f(x) and dy * f'(x) written once for vectors and scalars (OpenCL's ?:
 * selects per component when the condition is a vector).  NaN inputs give
 * NaN outputs only where PyTorch's do not matter: ReLU(NaN) = 0 here. */
#define RELU_F(x, a) ((x) > 0.0f ? (x) : 0.0f)
#define RELU_B(x, dy, a) ((x) > 0.0f ? (dy) : 0.0f)
#define LEAKY_F(x, a) ((x) > 0.0f ? (x) : (x) * (a))
#define LEAKY_B(x, dy, a) ((x) > 0.0f ? (dy) : (dy) * (a))
#define ELU_F(x, a) ((x) > 0.0f ? (x) : (a) * expm1(x))
#define ELU_B(x, dy, a) ((x) > 0.0f ? (dy) : (dy) * (a) * exp(x))
/* Sigmoid from e = exp(-|x|) <= 1, which never overflows: s = 1 / (1 + e)
 * for x >= 0 and e / (1 + e) below (full relative accuracy as s -> 0), and
 * s' = s (1 - s) = e / (1 + e)^2 (no cancellation for large |x|; 0, not NaN,
 * when e underflows).  alpha is unused. */
#define SIGMOID_E(x) exp(-fabs(x))
#define SIGMOID_F(x, a) (((x) >= 0.0f ? 1.0f : SIGMOID_E(x)) / (1.0f + SIGMOID_E(x)))
#define SIGMOID_B(x, dy, a) ((dy) * (SIGMOID_E(x) / ((1.0f + SIGMOID_E(x)) * (1.0f + SIGMOID_E(x)))))

#define ACTIVATION_KERNELS(name, FWD, BWD)                                                      \
    __kernel void name##_forward(__global const float *x, __global float *y, const float alpha, \
                                 const ulong n)                                                 \
    {                                                                                           \
        const ulong base = (ulong)get_global_id(0) * VEC;                                       \
        if (base + VEC <= n) {                                                                  \
            floatv v = VLOAD(0, x + base);                                                      \
            VSTORE(FWD(v, alpha), 0, y + base);                                                 \
        } else {                                                                                \
            for (ulong i = base; i < n; i++) {                                                  \
                float v = x[i];                                                                 \
                y[i] = FWD(v, alpha);                                                           \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    __kernel void name##_backward(__global const float *x, __global const float *dy,           \
                                  __global float *dx, const float alpha, const ulong n)         \
    {                                                                                           \
        const ulong base = (ulong)get_global_id(0) * VEC;                                       \
        if (base + VEC <= n) {                                                                  \
            floatv v = VLOAD(0, x + base), g = VLOAD(0, dy + base);                             \
            VSTORE(BWD(v, g, alpha), 0, dx + base);                                             \
        } else {                                                                                \
            for (ulong i = base; i < n; i++) {                                                  \
                float v = x[i], g = dy[i];                                                      \
                dx[i] = BWD(v, g, alpha);                                                       \
            }                                                                                   \
        }                                                                                       \
    }

ACTIVATION_KERNELS(relu, RELU_F, RELU_B)
ACTIVATION_KERNELS(leaky_relu, LEAKY_F, LEAKY_B)
ACTIVATION_KERNELS(elu, ELU_F, ELU_B)
ACTIVATION_KERNELS(sigmoid, SIGMOID_F, SIGMOID_B)

/* ---- Dropout ----------------------------------------------------------
 * The keep decision for element i is a pure function of (seed, i), in
 * 32-bit integer arithmetic only, so every device (and the host reference in
 * tests/ref_layers.c) draws the same mask:
 *   h = mix(mix(mix(mix(seed_lo ^ 0x9e3779b9) ^ seed_hi) ^ lo32(i)) ^ hi32(i))
 *   keep  <=>  (h >> 8) >= threshold,  threshold = round(p * 2^24)
 * mix is the "lowbias32" integer finalizer.  Dropout follows Flatten (small
 * tensors), so one element per work-item is enough. */
uint dropout_mix(uint h)
{
    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    h *= 0x846ca68bU;
    h ^= h >> 16;
    return h;
}

/* mask[i] = keep ? scale : 0; y[i] = x[i] * mask[i].  y may alias x.  The
 * hash is of element first + i: a data-parallel rank holding the global
 * batch's elements from `first` on draws one process's mask for them. */
__kernel void dropout_forward(__global const float *x, __global float *y, __global float *mask, const uint seed_lo,
                              const uint seed_hi, const uint threshold, const float scale, const ulong n,
                              const ulong first)
{
    const ulong i = get_global_id(0);
    if (i >= n) return;
    const ulong e = first + i;
    uint h = dropout_mix(dropout_mix(seed_lo ^ 0x9e3779b9U) ^ seed_hi);
    h = dropout_mix(dropout_mix(h ^ (uint)e) ^ (uint)(e >> 32));
    const float m = (h >> 8) >= threshold ? scale : 0.0f;
    mask[i] = m;
    y[i] = x[i] * m;
}

/* dx = dy * mask (the mask already holds the 1/(1-p) scale). */
__kernel void dropout_backward(__global const float *dy, __global const float *mask, __global float *dx, const ulong n)
{
    const ulong base = (ulong)get_global_id(0) * VEC;
    if (base + VEC <= n) {
        VSTORE(VLOAD(0, dy + base) * VLOAD(0, mask + base), 0, dx + base);
    } else {
        for (ulong i = base; i < n; i++) dx[i] = dy[i] * mask[i];
    }
}
