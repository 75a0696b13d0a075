/* Graph ops (src/layers/graph_ops.c): Add, channel Concat (a strided slice
 * copy), constant Pad and its crop, Softmax / LogSoftmax over channels.
 *
 * Every work-item handles VEC consecutive floats of one contiguous run (a
 * flat array, a channel slice of one sample, a row of a volume, or VEC
 * spatial positions of one sample for softmax); the run's last partial
 * vector is done in scalar code, so nothing past a run is touched. */
#ifndef VEC
#define VEC 8
#endif

#include "common.cl"

/* y = a + b over n floats.  y may alias a or b: each work-item reads its
 * elements before writing them. */
__kernel void graph_add(__global const float *a, __global const float *b, __global float *y, const ulong n)
{
    const ulong base = (ulong)get_global_id(0) * VEC;
    if (base + VEC <= n) {
        VSTORE(VLOAD(0, a + base) + VLOAD(0, b + base), 0, y + base);
    } else {
        for (ulong i = base; i < n; i++) y[i] = a[i] + b[i];
    }
}

/* Grid (ceil(len / VEC), N): dst[n * dst_stride + dst_off + i] =
 * src[n * src_stride + src_off + i] for i < len.  Concat forward copies x's
 * sample (len = Ci*S) into channels [off, off + Ci) of y's (stride Ct*S);
 * backward copies that slice of dy back. */
__kernel void graph_slice_copy(__global const float *src, const ulong src_stride, const ulong src_off,
                               __global float *dst, const ulong dst_stride, const ulong dst_off, const ulong len)
{
    const ulong i0 = (ulong)get_global_id(0) * VEC, n = get_global_id(1);
    __global const float *s = src + n * src_stride + src_off + i0;
    __global float *d = dst + n * dst_stride + dst_off + i0;
    if (i0 + VEC <= len) {
        VSTORE(VLOAD(0, s), 0, d);
    } else {
        for (ulong i = 0; i < len - i0; i++) d[i] = s[i];
    }
}

/* y (P, Do, Ho, Wo) = x (P, D, H, W) placed at (b0, b1, b2), value elsewhere;
 * P = N*C.  One block of VEC outputs of a row per work-item (FLAT_BLOCK over
 * Wo, Ho, P, Do); the inputs are gathered at clamped columns, so no lane
 * reads outside its row. */
__kernel void graph_pad3d(__global const float *x, __global float *y, const int P, const int D, const int H,
                          const int W, const int Do, const int Ho, const int Wo, const int b0, const int b1,
                          const int b2, const float value)
{
    FLAT_BLOCK(Wo, Ho, P, Do, x0, r, pz)
    const int p = pz / Do, z = pz - p * Do;
    const int iz = z - b0, ir = r - b1;
    floatv v = (floatv)(value);
    if (iz >= 0 && iz < D && ir >= 0 && ir < H) {
        __global const float *row = x + (((size_t)p * D + iz) * H + ir) * W;
        const intv ix = (intv)(x0 - b2) + LANES;
        const intv inside = ix >= (intv)(0) && ix < (intv)(W);
        const floatv g = GATHER(row, clamp(ix, (intv)(0), (intv)(W - 1)));
        v = select(v, g, inside);
    }
    store_lanes(v, y + (((size_t)p * Do + z) * Ho + r) * Wo + x0, Wo - x0);
}

/* dx (P, D, H, W) = dy (P, Do, Ho, Wo) cropped at (b0, b1, b2): one block of
 * VEC of a row of dx per work-item. */
__kernel void graph_crop3d(__global const float *dy, __global float *dx, const int P, const int D, const int H,
                           const int W, const int Do, const int Ho, const int Wo, const int b0, const int b1,
                           const int b2)
{
    FLAT_BLOCK(W, H, P, D, x0, r, pz)
    const int p = pz / D, z = pz - p * D;
    __global const float *src = dy + (((size_t)p * Do + z + b0) * Ho + r + b1) * Wo + b2 + x0;
    __global float *dst = dx + (((size_t)p * D + z) * H + r) * W + x0;
    if (x0 + VEC <= W) {
        VSTORE(VLOAD(0, src), 0, dst);
    } else {
        for (int i = 0; i < W - x0; i++) dst[i] = src[i];
    }
}

/* Softmax over the C channels at VEC consecutive positions of one sample
 * (x (N, C, S), channel stride S), or at one position in scalar code (the
 * sample's last partial vector; S = 1 for (N, C) tensors).  T is floatv or
 * float, LD/ST load and store one T at a pointer.  Nothing is written before
 * everything is read, position by position, so y may alias x. */
#define SOFTMAX_BODY(T, LD, ST)                                                \
    {                                                                          \
        T m = LD(xp);                                                          \
        for (int c = 1; c < C; c++) m = fmax(m, LD(xp + (size_t)c * S));       \
        T sum = (T)(0.0f);                                                     \
        for (int c = 0; c < C; c++) sum += exp(LD(xp + (size_t)c * S) - m);    \
        const T lse = log(sum), inv = 1.0f / sum;                              \
        for (int c = 0; c < C; c++) {                                          \
            const T d = LD(xp + (size_t)c * S) - m;                            \
            ST(log_softmax ? d - lse : exp(d) * inv, yp + (size_t)c * S);      \
        }                                                                      \
    }

/* Backward from y: softmax dx = y * (dy - sum_c dy*y); log dx = dy - exp(y) * sum_c dy.
 * dx may alias dy. */
#define SOFTMAX_BACKWARD_BODY(T, LD, ST)                                       \
    {                                                                          \
        T acc = (T)(0.0f);                                                     \
        for (int c = 0; c < C; c++) {                                          \
            const T g = LD(gp + (size_t)c * S);                                \
            acc += log_softmax ? g : g * LD(yp + (size_t)c * S);               \
        }                                                                      \
        for (int c = 0; c < C; c++) {                                          \
            const T yv = LD(yp + (size_t)c * S), g = LD(gp + (size_t)c * S);   \
            ST(log_softmax ? g - exp(yv) * acc : yv * (g - acc), dp + (size_t)c * S); \
        }                                                                      \
    }

#define LD_V(p) VLOAD(0, p)
#define ST_V(v, p) VSTORE(v, 0, p)
#define LD_S(p) (*(p))
#define ST_S(v, p) (*(p) = (v))

/* Grid N * ceil(S / VEC): work-item g handles sample g / nb at positions (g % nb) * VEC. */
#define SOFTMAX_POSITION                                                       \
    const uint nb = (S + VEC - 1) / VEC;                                       \
    const ulong g_ = get_global_id(0);                                         \
    if (g_ >= (ulong)nb * N) return;                                           \
    const uint n = (uint)(g_ / nb), s0 = (uint)(g_ - (ulong)n * nb) * VEC;     \
    const size_t off = (size_t)n * C * S + s0;

__kernel void graph_softmax(__global const float *x, __global float *y, const uint N, const int C, const uint S,
                            const int log_softmax)
{
    SOFTMAX_POSITION
    if (s0 + VEC <= S) {
        __global const float *xp = x + off;
        __global float *yp = y + off;
        SOFTMAX_BODY(floatv, LD_V, ST_V)
    } else {
        for (uint i = 0; i < S - s0; i++) {
            __global const float *xp = x + off + i;
            __global float *yp = y + off + i;
            SOFTMAX_BODY(float, LD_S, ST_S)
        }
    }
}

__kernel void graph_softmax_backward(__global const float *y, __global const float *dy, __global float *dx,
                                     const uint N, const int C, const uint S, const int log_softmax)
{
    SOFTMAX_POSITION
    if (s0 + VEC <= S) {
        __global const float *yp = y + off, *gp = dy + off;
        __global float *dp = dx + off;
        SOFTMAX_BACKWARD_BODY(floatv, LD_V, ST_V)
    } else {
        for (uint i = 0; i < S - s0; i++) {
            __global const float *yp = y + off + i, *gp = dy + off + i;
            __global float *dp = dx + off + i;
            SOFTMAX_BACKWARD_BODY(float, LD_S, ST_S)
        }
    }
}
