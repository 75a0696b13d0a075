/* BatchNorm3d over x (N, C, D, H, W): per-channel statistics over N*D*H*W
 * values, forward (train and eval) and backward.
 *
 * Statistics are computed in two levels so they stay accurate in float for
 * millions of values per channel:
 *  1. *_partial: one work-item per CHUNK consecutive floats of one (n, c)
 *     plane (grid (P, N*C), P = ceil(S / CHUNK), S = D*H*W).  For the
 *     forward it computes the chunk's count, mean and centred sum of squares
 *     M2 (second pass over the chunk, which is still in cache), so no
 *     E[x^2] - E[x]^2 cancellation.  Sums run in VEC vector lanes.
 *  2. *_finalize: one work-group per channel merges its N*P partials
 *     (Chan et al.'s pairwise update for (count, mean, M2)) in a tree in
 *     local memory and writes per-channel coefficients.
 *  3. *_apply: the elementwise pass, grid (ceil(S / VEC), N*C), VEC floats
 *     per work-item; the last vector of a plane is done in scalar code so
 *     no work-item writes into the next plane.
 * Coefficient buffers are laid out [k * C + c] (struct of arrays) so each
 * per-channel result is one contiguous copy. */
#ifndef VEC
#define VEC 8
#endif
#ifndef CHUNK
#define CHUNK 4096
#endif

#include "common.cl"

/* ---- training forward ------------------------------------------------- */

/* part[3 * ((c*N + n)*P + p) + {0, 1, 2}] = count, mean, M2 of chunk p of plane (n, c). */
__kernel void bn_stats_partial(__global const float *x, __global float *part, const uint S, const uint C,
                               const uint N, const uint P)
{
    const uint p = get_global_id(0), plane = get_global_id(1);
    const uint n = plane / C, c = plane % C;
    const uint start = p * CHUNK;
    const uint count = min((uint)CHUNK, S - start);
    __global const float *xp = x + (size_t)plane * S + start;
    const uint nv = count / VEC;
    floatv acc = (floatv)(0.0f);
    for (uint i = 0; i < nv; i++) acc += VLOAD(i, xp);
    float sum = vsum(acc);
    for (uint i = nv * VEC; i < count; i++) sum += xp[i];
    const float mean = sum / (float)count;
    floatv m2v = (floatv)(0.0f);
    for (uint i = 0; i < nv; i++) {
        const floatv d = VLOAD(i, xp) - mean;
        m2v = MAC(d, d, m2v);
    }
    float m2 = vsum(m2v);
    for (uint i = nv * VEC; i < count; i++) {
        const float d = xp[i] - mean;
        m2 = MAC(d, d, m2);
    }
    __global float *out = part + 3 * (((size_t)c * N + n) * P + p);
    out[0] = (float)count;
    out[1] = mean;
    out[2] = m2;
}

/* Merge (nb, mb, m2b) into (na, ma, m2a): Chan, Golub & LeVeque. */
inline void chan_merge(float *na, float *ma, float *m2a, const float nb, const float mb, const float m2b)
{
    const float n = *na + nb;
    if (nb == 0.0f) return;
    const float delta = mb - *ma;
    *ma += delta * (nb / n);
    *m2a += m2b + delta * delta * (*na * (nb / n));
    *na = n;
}

/* A training BatchNorm's map y = a x + b, a = gamma * invstd, b = beta -
 * mean * a: one definition for bn_stats_finalize, the apply kernels and the
 * ReLU gate of the backward (bn_relu_backward_*), which recomputes a and b
 * from the saved mean and invstd and so must round them as the forward did
 * (the gate is then bit for bit [y > 0]). */
inline float bn_scale(float gamma, float invstd) { return gamma * invstd; }
inline float bn_shift(float beta, float mean, float a) { return beta - mean * a; }
#define BN_AFFINE(x, a, b) ((x) * (a) + (b))

/* One work-group per channel c over its nparts = N*P partials.  Writes
 * coef[0C + c] = mean, [1C] = invstd, [2C] = a = gamma*invstd,
 * [3C] = b = beta - mean*a, and, if update_running, the PyTorch running
 * update with the unbiased variance M2 / (M - 1). */
__kernel void bn_stats_finalize(__global const float *part, const uint nparts, __global const float *gamma,
                                __global const float *beta, __global float *running_mean,
                                __global float *running_var, const int update_running, const float momentum,
                                const float eps, __global float *coef, __local float *ln, __local float *lm,
                                __local float *lm2)
{
    const uint c = get_group_id(0), C = get_num_groups(0);
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    __global const float *pc = part + 3 * (size_t)c * nparts;
    float n = 0.0f, m = 0.0f, m2 = 0.0f;
    for (uint i = lid; i < nparts; i += lsize) chan_merge(&n, &m, &m2, pc[3 * i], pc[3 * i + 1], pc[3 * i + 2]);
    ln[lid] = n;
    lm[lid] = m;
    lm2[lid] = m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = lsize / 2; s > 0; s /= 2) {
        if (lid < s) {
            float a = ln[lid], b = lm[lid], d = lm2[lid];
            chan_merge(&a, &b, &d, ln[lid + s], lm[lid + s], lm2[lid + s]);
            ln[lid] = a;
            lm[lid] = b;
            lm2[lid] = d;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        const float count = ln[0], mean = lm[0], M2 = lm2[0];
        const float invstd = 1.0f / sqrt(M2 / count + eps);
        const float a = bn_scale(gamma[c], invstd);
        coef[c] = mean;
        coef[C + c] = invstd;
        coef[2 * C + c] = a;
        coef[3 * C + c] = bn_shift(beta[c], mean, a);
        if (update_running) {
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (M2 / (count - 1.0f));
        }
    }
}

/* Elementwise pass shared by every apply kernel: the work-item's VEC floats
 * of plane `plane`, EXPR of xv (from IN) and, for APPLY2, gv (from IN2);
 * scalar code for the plane's last partial vector. */
#define PLANE_APPLY1(IN, OUT, EXPR)                                           \
    const uint i0 = get_global_id(0) * VEC, plane = get_global_id(1);         \
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
#define PLANE_APPLY2(IN, IN2, OUT, EXPR)                                      \
    const uint i0 = get_global_id(0) * VEC, plane = get_global_id(1);         \
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

/* y = a[c] * x + b[c] with a, b from bn_stats_finalize. y may alias x. */
__kernel void bn_apply(__global const float *x, __global float *y, __global const float *coef, const uint S,
                       const uint C)
{
    const uint c = get_global_id(1) % C;
    const float a = coef[2 * C + c], b = coef[3 * C + c];
    PLANE_APPLY1(x, y, BN_AFFINE(xv, a, b))
}

/* y = ReLU(a[c] * x + b[c]): a training-mode BatchNorm and the ReLU after
 * it in one pass (src/model/model_run.c), the BatchNorm's own output never
 * stored.  The same expressions as bn_apply and relu_forward
 * (cl/activation.cl's RELU_F), so y is bit for bit theirs. */
#define BN_RELU(z) ((z) > 0.0f ? (z) : 0.0f)
__kernel void bn_apply_relu(__global const float *x, __global float *y, __global const float *coef, const uint S,
                            const uint C)
{
    const uint c = get_global_id(1) % C;
    const float a = coef[2 * C + c], b = coef[3 * C + c];
    PLANE_APPLY1(x, y, BN_RELU(BN_AFFINE(xv, a, b)))
}

/* ---- eval forward / backward: coefficients from the running stats ---- */

__kernel void bn_eval_forward(__global const float *x, __global float *y, __global const float *gamma,
                              __global const float *beta, __global const float *running_mean,
                              __global const float *running_var, const float eps, const uint S, const uint C)
{
    const uint c = get_global_id(1) % C;
    const float a = gamma[c] / sqrt(running_var[c] + eps);
    const float b = beta[c] - running_mean[c] * a;
    PLANE_APPLY1(x, y, xv * a + b)
}

__kernel void bn_eval_backward(__global const float *dy, __global float *dx, __global const float *gamma,
                               __global const float *running_var, const float eps, const uint S, const uint C)
{
    const uint c = get_global_id(1) % C;
    const float a = gamma[c] / sqrt(running_var[c] + eps);
    PLANE_APPLY1(dy, dx, xv * a)
}

/* ---- training backward ------------------------------------------------ */

/* part[2 * ((c*N + n)*P + p) + {0, 1}] = sum dy, sum dy * (x - mean[c]) over the chunk.
 * GATE(g, xv): the gradient at the BatchNorm's output from g = dy: g
 * itself, or with the ReLU after it, g where a x + b > 0. */
#define BN_BACKWARD_PARTIAL(GATE)                                             \
    const uint p = get_global_id(0), plane = get_global_id(1);                \
    const uint n = plane / C, c = plane % C;                                  \
    const uint start = p * CHUNK;                                             \
    const uint count = min((uint)CHUNK, S - start);                           \
    const size_t off = (size_t)plane * S + start;                             \
    __global const float *xp = x + off, *gp = dy + off;                       \
    const float mean = save_mean[c];                                          \
    const uint nv = count / VEC;                                              \
    floatv sg = (floatv)(0.0f), sgx = (floatv)(0.0f);                         \
    for (uint i = 0; i < nv; i++) {                                           \
        const floatv xv = VLOAD(i, xp), g = GATE(VLOAD(i, gp), xv);           \
        sg += g;                                                              \
        sgx = MAC(g, xv - mean, sgx);                                         \
    }                                                                         \
    float sum_g = vsum(sg), sum_gx = vsum(sgx);                               \
    for (uint i = nv * VEC; i < count; i++) {                                 \
        const float g = GATE(gp[i], xp[i]);                                   \
        sum_g += g;                                                           \
        sum_gx = MAC(g, xp[i] - mean, sum_gx);                                \
    }                                                                         \
    __global float *out = part + 2 * (((size_t)c * N + n) * P + p);           \
    out[0] = sum_g;                                                           \
    out[1] = sum_gx;
#define BN_UNGATED(g, xv) (g)
#define BN_RELU_GATE(g, xv) (BN_AFFINE(xv, a, b) > 0.0f ? (g) : 0.0f)

__kernel void bn_backward_partial(__global const float *x, __global const float *dy,
                                  __global const float *save_mean, __global float *part, const uint S,
                                  const uint C, const uint N, const uint P)
{
    BN_BACKWARD_PARTIAL(BN_UNGATED)
}

/* The same for a BatchNorm -> ReLU run by bn_apply_relu: dy is the ReLU's
 * output gradient, gated here (the ReLU's backward pass never runs). */
__kernel void bn_relu_backward_partial(__global const float *x, __global const float *dy,
                                       __global const float *save_mean, __global float *part, const uint S,
                                       const uint C, const uint N, const uint P, __global const float *gamma,
                                       __global const float *beta, __global const float *save_invstd)
{
    const uint cc = get_global_id(1) % C;
    const float a = bn_scale(gamma[cc], save_invstd[cc]), b = bn_shift(beta[cc], save_mean[cc], a);
    BN_BACKWARD_PARTIAL(BN_RELU_GATE)
}

/* One work-group per channel.  With M = N*S, g = dy, xc = x - mean:
 *   dbeta = sum g, dgamma = invstd * sum g*xc,
 *   dx = k1 * (g - mean_g) + k2 * xc,  k1 = gamma*invstd,
 *   k2 = -k1 * invstd^2 * (sum g*xc) / M.
 * coef[0C] = dgamma, [1C] = dbeta, [2C] = k1, [3C] = k2, [4C] = mean, [5C] = mean_g. */
__kernel void bn_backward_finalize(__global const float *part, const uint nparts, const float M,
                                   __global const float *gamma, __global const float *save_mean,
                                   __global const float *save_invstd, __global float *coef, __local float *lg,
                                   __local float *lgx)
{
    const uint c = get_group_id(0), C = get_num_groups(0);
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    __global const float *pc = part + 2 * (size_t)c * nparts;
    float g = 0.0f, gx = 0.0f;
    for (uint i = lid; i < nparts; i += lsize) {
        g += pc[2 * i];
        gx += pc[2 * i + 1];
    }
    lg[lid] = g;
    lgx[lid] = gx;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = lsize / 2; s > 0; s /= 2) {
        if (lid < s) {
            lg[lid] += lg[lid + s];
            lgx[lid] += lgx[lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        const float invstd = save_invstd[c], k1 = gamma[c] * invstd;
        coef[c] = lgx[0] * invstd;
        coef[C + c] = lg[0];
        coef[2 * C + c] = k1;
        coef[3 * C + c] = -k1 * invstd * invstd * (lgx[0] / M);
        coef[4 * C + c] = save_mean[c];
        coef[5 * C + c] = lg[0] / M;
    }
}

/* dx = k1 * (dy - mean_g) + k2 * (x - mean).  dx may alias dy. */
__kernel void bn_backward_apply(__global const float *x, __global const float *dy, __global float *dx,
                                __global const float *coef, const uint S, const uint C)
{
    const uint c = get_global_id(1) % C;
    const float k1 = coef[2 * C + c], k2 = coef[3 * C + c], mean = coef[4 * C + c], mg = coef[5 * C + c];
    PLANE_APPLY2(x, dy, dx, k1 * (gv - mg) + k2 * (xv - mean))
}

/* The same with dy gated by the ReLU after the BatchNorm (bn_relu_backward_partial). */
__kernel void bn_relu_backward_apply(__global const float *x, __global const float *dy, __global float *dx,
                                     __global const float *coef, const uint S, const uint C,
                                     __global const float *gamma, __global const float *beta,
                                     __global const float *save_invstd)
{
    const uint c = get_global_id(1) % C;
    const float k1 = coef[2 * C + c], k2 = coef[3 * C + c], mean = coef[4 * C + c], mg = coef[5 * C + c];
    const float a = bn_scale(gamma[c], save_invstd[c]), b = bn_shift(beta[c], mean, a);
    PLANE_APPLY2(x, dy, dx, k1 * (BN_RELU_GATE(gv, xv) - mg) + k2 * (xv - mean))
}
