/* InstanceNorm3d over x (N, C, D, H, W): statistics per (n, c) plane of
 * S = D*H*W values, forward and backward (src/layers/instancenorm.c).
 *
 *  - in_stats / in_backward_stats: one work-group per plane (group id =
 *    plane = n*C + c), its work-items striding over the plane (lid, lid + L,
 *    ...: coalesced on GPUs) and a tree in local memory.  The work-group size
 *    L is a power of two chosen by the host from the kernel's limit.  The
 *    forward is two-pass: the mean first, then the centred sum of squares, so
 *    no E[x^2] - E[x]^2 cancellation on offset data.
 *  - in_apply / in_backward_apply: elementwise, grid (ceil(S / VEC), N*C),
 *    VEC floats per work-item; the plane's last partial vector in scalar code
 *    so no work-item writes into the next plane.
 *  - in_backward_params: one work-item per channel sums its N planes'
 *    partials in order (deterministic) into dgamma and dbeta.
 * gamma and beta are optional: affine == 0 means 1 and 0 (the buffers are
 * then placeholders, never read). */
#ifndef VEC
#define VEC 8
#endif

#include "common.cl"

/* Tree sum of the L values in l[]; every work-item gets the total. */
inline float group_sum(__local float *l, float v)
{
    const uint lid = get_local_id(0), L = get_local_size(0);
    l[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = L / 2; s > 0; s /= 2) {
        if (lid < s) l[lid] += l[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = l[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* l is reused by the next call */
    return total;
}

/* stats[plane] = mean, stats[NC + plane] = 1 / sqrt(biased var + eps),
 * stats[2 NC + plane] = r, what the float mean misses: the second pass sums
 * d = x - m1 (m1 the first pass's mean) as well as d^2, so mean = m1 + sum d / S
 * and var = sum d^2 / S - (sum d / S)^2 are corrected for m1's rounding, and
 * in_apply centres with (x - mean) - r (x - mean is exact when x is near the
 * mean), keeping y accurate when |mean| >> std. */
__kernel void in_stats(__global const float *x, __global float *stats, const uint S, const float eps,
                       __local float *l)
{
    const uint plane = get_group_id(0), NC = get_num_groups(0);
    const uint lid = get_local_id(0), L = get_local_size(0);
    __global const float *xp = x + (size_t)plane * S;
    float sum = 0.0f;
    for (uint i = lid; i < S; i += L) sum += xp[i];
    const float m1 = group_sum(l, sum) / (float)S;
    float sd = 0.0f, m2 = 0.0f;
    for (uint i = lid; i < S; i += L) {
        const float d = xp[i] - m1;
        sd += d;
        m2 = MAC(d, d, m2);
    }
    const float delta = group_sum(l, sd) / (float)S;
    const float var = fmax(group_sum(l, m2) / (float)S - delta * delta, 0.0f);
    if (lid == 0) {
        const float mean = m1 + delta;
        stats[plane] = mean;
        stats[NC + plane] = 1.0f / sqrt(var + eps);
        stats[2 * NC + plane] = (m1 - mean) + delta;
    }
}

/* The plane's VEC floats at i0 (or its scalar tail): OUT = EXPR of xv (from
 * IN) and, for IN_PLANE_APPLY2, gv (from IN2). */
#define IN_PLANE_APPLY1(IN, OUT, EXPR)                                        \
    const uint i0 = get_global_id(0) * VEC;                                   \
    const size_t base = (size_t)plane * S + i0;                               \
    if (i0 + VEC <= S) {                                                      \
        const floatv xv = VLOAD(0, IN + base);                                \
        VSTORE(EXPR, 0, OUT + base);                                          \
    } else {                                                                  \
        for (uint i = 0; i < S - i0; i++) {                                   \
            const float xv = IN[base + i];                                    \
            OUT[base + i] = EXPR;                                             \
        }                                                                     \
    }
#define IN_PLANE_APPLY2(IN, IN2, OUT, EXPR)                                   \
    const uint i0 = get_global_id(0) * VEC;                                   \
    const size_t base = (size_t)plane * S + i0;                               \
    if (i0 + VEC <= S) {                                                      \
        const floatv xv = VLOAD(0, IN + base);                                \
        const floatv gv = VLOAD(0, IN2 + base);                               \
        VSTORE(EXPR, 0, OUT + base);                                          \
    } else {                                                                  \
        for (uint i = 0; i < S - i0; i++) {                                   \
            const float xv = IN[base + i];                                    \
            const float gv = IN2[base + i];                                   \
            OUT[base + i] = EXPR;                                             \
        }                                                                     \
    }

/* y = ((x - mean) - r) * (invstd * gamma[c]) + beta[c], centred first: x * a + b
 * with b = beta - mean * a would cancel in float when |mean| >> std.  y may
 * alias x. */
__kernel void in_apply(__global const float *x, __global float *y, __global const float *stats,
                       __global const float *gamma, __global const float *beta, const int affine, const uint S,
                       const uint C)
{
    const uint plane = get_global_id(1), NC = get_global_size(1), c = plane % C;
    const float m = stats[plane], invstd = stats[NC + plane], r = stats[2 * NC + plane];
    const float a = affine ? gamma[c] * invstd : invstd, b = affine ? beta[c] : 0.0f;
    IN_PLANE_APPLY1(x, y, ((xv - m) - r) * a + b)
}

/* part[plane] = sum dy, part[NC + plane] = sum dy * xhat over the plane,
 * xhat = (x - mean) * invstd. */
__kernel void in_backward_stats(__global const float *x, __global const float *dy, __global const float *mean,
                                __global const float *invstd, __global float *part, const uint S,
                                __local float *l)
{
    const uint plane = get_group_id(0), NC = get_num_groups(0);
    const uint lid = get_local_id(0), L = get_local_size(0);
    __global const float *xp = x + (size_t)plane * S, *gp = dy + (size_t)plane * S;
    const float m = mean[plane];
    float sg = 0.0f, sgx = 0.0f;
    for (uint i = lid; i < S; i += L) {
        sg += gp[i];
        sgx = MAC(gp[i], xp[i] - m, sgx);
    }
    const float total_g = group_sum(l, sg);
    const float total_gx = group_sum(l, sgx);
    if (lid == 0) {
        part[plane] = total_g;
        part[NC + plane] = total_gx * invstd[plane];
    }
}

/* coef[c] = dgamma = sum_n part[NC + n*C + c], coef[C + c] = dbeta = sum_n part[n*C + c]. */
__kernel void in_backward_params(__global const float *part, __global float *coef, const uint N, const uint C)
{
    const uint c = get_global_id(0);
    if (c >= C) return;
    float dg = 0.0f, db = 0.0f;
    for (uint n = 0; n < N; n++) {
        db += part[n * C + c];
        dg += part[N * C + n * C + c];
    }
    coef[c] = dg;
    coef[C + c] = db;
}

/* dx = gamma * invstd * (dy - sum_dy / S - xhat * sum_dy_xhat / S).  dx may alias dy. */
__kernel void in_backward_apply(__global const float *x, __global const float *dy, __global float *dx,
                                __global const float *mean, __global const float *invstd,
                                __global const float *gamma, const int affine, __global const float *part,
                                const uint S, const uint C)
{
    const uint plane = get_global_id(1), NC = get_global_size(1), c = plane % C;
    const float is = invstd[plane], k = (affine ? gamma[c] : 1.0f) * is, m = mean[plane];
    const float mg = part[plane] / (float)S, mgx = part[NC + plane] / (float)S;
    /* xhat = (x - m) * is; dx = k * (dy - mg) - k * mgx * xhat. */
    const float k2 = k * mgx * is;
    IN_PLANE_APPLY2(x, dy, dx, k * (gv - mg) - k2 * (xv - m))
}
