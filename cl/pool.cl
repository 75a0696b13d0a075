/* 3D max / average pooling and global average pooling, forward and backward.
 *
 * Layout (N, C, D, H, W) row-major; each (n, c) pair is one "plane" of
 * D*H*W floats.  Window geometry and sizes are compile-time constants (-D)
 * so the window loops unroll fully and PoCL can vectorize across
 * work-items; the host builds one program variant per layer geometry.
 *
 * Forward grid: (OW, OH, N*C*OD), one output per work-item.
 * Backward grid: (W, H, N*C*D), one input voxel per work-item, which gathers
 * from every window that contains it: deterministic, no atomics.
 * POOL_KIND selects which kernels a variant compiles (a cold PoCL build
 * costs seconds per kernel): 1 max pooling, 2 average pooling, 0 the
 * geometry-free global average and max pooling.
 *
 * ceil_mode needs no define: the host passes the larger OD/OH/OW, and every
 * window is clipped to the input (max) or divided as below (average).
 * EXCLUDE_PAD (average pooling) 1: the divisor counts only real voxels
 * (count_include_pad=False); 0: the window clipped to the padded input,
 * (min(start + K, IN + P) - start) per axis, as PyTorch (K in floor mode). */

/* No default VEC: the host's -DVEC enables the vectorized stride-2 max
 * pooling kernels at the end of the file. */
#include "common.cl"

#ifndef POOL_KIND
#define POOL_KIND 0
#endif
#ifndef KD
#define KD 2
#endif
#ifndef KH
#define KH 2
#endif
#ifndef KW
#define KW 2
#endif
#ifndef SD
#define SD 2
#endif
#ifndef SH
#define SH 2
#endif
#ifndef SW
#define SW 2
#endif
#ifndef PD
#define PD 0
#endif
#ifndef PH
#define PH 0
#endif
#ifndef PW
#define PW 0
#endif
#ifndef D
#define D 2
#endif
#ifndef H
#define H 2
#endif
#ifndef W
#define W 2
#endif
#ifndef OD
#define OD 1
#endif
#ifndef OH
#define OH 1
#endif
#ifndef OW
#define OW 1
#endif
#ifndef EXCLUDE_PAD
#define EXCLUDE_PAD 0
#endif

/* Most windows along one axis that can contain one input position. */
#define CD ((KD + SD - 1) / SD)
#define CH ((KH + SH - 1) / SH)
#define CW ((KW + SW - 1) / SW)

#if POOL_KIND == 1
/* Max over the window of output (od, oh, ow); padding acts as -inf.  Ties
 * keep the first winner and NaN wins, as PyTorch's CPU kernel does. */
inline void max_window(__global const float *xp, const int od, const int oh, const int ow, float *best_out,
                       int *idx_out)
{
    const int d0 = od * SD - PD, h0 = oh * SH - PH, w0 = ow * SW - PW;
    float best = -INFINITY;
    int best_idx = (max(d0, 0) * H + max(h0, 0)) * W + max(w0, 0);
    for (int kd = 0; kd < KD; kd++) {
        const int d = d0 + kd;
        if (d < 0 || d >= D) continue;
        for (int kh = 0; kh < KH; kh++) {
            const int h = h0 + kh;
            if (h < 0 || h >= H) continue;
            for (int kw = 0; kw < KW; kw++) {
                const int w = w0 + kw;
                if (w < 0 || w >= W) continue;
                const int i = (d * H + h) * W + w;
                const float v = xp[i];
                if (v > best || isnan(v)) {
                    best = v;
                    best_idx = i;
                }
            }
        }
    }
    *best_out = best;
    *idx_out = best_idx;
}

/* y (N, C, OD, OH, OW); argmax the same shape, int32 flat index into the plane. */
__kernel void maxpool3d_forward(__global const float *x, __global float *y, __global int *argmax)
{
    const int ow = get_global_id(0), oh = get_global_id(1), z = get_global_id(2);
    const int od = z % OD;
    const size_t plane = z / OD;
    float best;
    int idx;
    max_window(x + plane * (size_t)(D * H * W), od, oh, ow, &best, &idx);
    const size_t o = ((size_t)z * OH + oh) * OW + ow;
    y[o] = best;
    argmax[o] = idx;
}

/* Same without the indices (inference / visualization without backward). */
__kernel void maxpool3d_forward_noidx(__global const float *x, __global float *y)
{
    const int ow = get_global_id(0), oh = get_global_id(1), z = get_global_id(2);
    const int od = z % OD;
    const size_t plane = z / OD;
    float best;
    int idx;
    max_window(x + plane * (size_t)(D * H * W), od, oh, ow, &best, &idx);
    y[((size_t)z * OH + oh) * OW + ow] = best;
}

/* dx (N, C, D, H, W): sum of dy over the windows whose argmax is this voxel. */
__kernel void maxpool3d_backward(__global const float *dy, __global const int *argmax, __global float *dx)
{
    const int w = get_global_id(0), h = get_global_id(1), z = get_global_id(2);
    const int d = z % D;
    const size_t plane = z / D;
    const int self = (d * H + h) * W + w;
    __global const float *dyp = dy + plane * (size_t)(OD * OH * OW);
    __global const int *amp = argmax + plane * (size_t)(OD * OH * OW);
    float acc = 0.0f;
    for (int jd = 0; jd < CD; jd++) {
        const int od = (d + PD) / SD - jd;
        if (od < 0 || od >= OD || d + PD - od * SD >= KD) continue;
        for (int jh = 0; jh < CH; jh++) {
            const int oh = (h + PH) / SH - jh;
            if (oh < 0 || oh >= OH || h + PH - oh * SH >= KH) continue;
            for (int jw = 0; jw < CW; jw++) {
                const int ow = (w + PW) / SW - jw;
                if (ow < 0 || ow >= OW || w + PW - ow * SW >= KW) continue;
                const int o = (od * OH + oh) * OW + ow;
                acc += amp[o] == self ? dyp[o] : 0.0f;
            }
        }
    }
    dx[((size_t)z * H + h) * W + w] = acc;
}

#endif /* POOL_KIND == 1 */

#if POOL_KIND == 2
/* Reciprocal of the divisor of the window starting at (d0, h0, w0) (input
 * coordinates, negative in the left padding): the real voxels it covers
 * with EXCLUDE_PAD, else its extent clipped to the padded input (KD*KH*KW
 * unless a ceil_mode window hangs past the right padding). */
inline float avg_scale(const int d0, const int h0, const int w0)
{
#if EXCLUDE_PAD
    const int n = (min(d0 + KD, D) - max(d0, 0)) * (min(h0 + KH, H) - max(h0, 0)) * (min(w0 + KW, W) - max(w0, 0));
#else
    const int n = (min(d0 + KD, D + PD) - d0) * (min(h0 + KH, H + PH) - h0) * (min(w0 + KW, W + PW) - w0);
#endif
    return 1.0f / (float)n;
}

__kernel void avgpool3d_forward(__global const float *x, __global float *y)
{
    const int ow = get_global_id(0), oh = get_global_id(1), z = get_global_id(2);
    const int od = z % OD;
    __global const float *xp = x + (size_t)(z / OD) * (size_t)(D * H * W);
    const int d0 = od * SD - PD, h0 = oh * SH - PH, w0 = ow * SW - PW;
    float acc = 0.0f;
    for (int kd = 0; kd < KD; kd++) {
        const int d = d0 + kd;
        if (d < 0 || d >= D) continue;
        for (int kh = 0; kh < KH; kh++) {
            const int h = h0 + kh;
            if (h < 0 || h >= H) continue;
            for (int kw = 0; kw < KW; kw++) {
                const int w = w0 + kw;
                if (w < 0 || w >= W) continue;
                acc += xp[(d * H + h) * W + w];
            }
        }
    }
    y[((size_t)z * OH + oh) * OW + ow] = acc * avg_scale(d0, h0, w0);
}

__kernel void avgpool3d_backward(__global const float *dy, __global float *dx)
{
    const int w = get_global_id(0), h = get_global_id(1), z = get_global_id(2);
    const int d = z % D;
    __global const float *dyp = dy + (size_t)(z / D) * (size_t)(OD * OH * OW);
    float acc = 0.0f;
    for (int jd = 0; jd < CD; jd++) {
        const int od = (d + PD) / SD - jd;
        if (od < 0 || od >= OD || d + PD - od * SD >= KD) continue;
        for (int jh = 0; jh < CH; jh++) {
            const int oh = (h + PH) / SH - jh;
            if (oh < 0 || oh >= OH || h + PH - oh * SH >= KH) continue;
            for (int jw = 0; jw < CW; jw++) {
                const int ow = (w + PW) / SW - jw;
                if (ow < 0 || ow >= OW || w + PW - ow * SW >= KW) continue;
                acc += dyp[(od * OH + oh) * OW + ow] * avg_scale(od * SD - PD, oh * SH - PH, ow * SW - PW);
            }
        }
    }
    dx[((size_t)z * H + h) * W + w] = acc;
}

#endif /* POOL_KIND == 2 */
#if POOL_KIND == 0
/* y (N*C) = mean of each plane of x (planes of n floats).  One work-group per
 * plane: strided partial sums, then a tree in local memory (local size a
 * power of two chosen by the host from the device's limits). */
__kernel void global_avgpool_forward(__global const float *x, __global float *y, const uint n,
                                     __local float *scratch)
{
    const size_t plane = get_group_id(0);
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    __global const float *xp = x + plane * (size_t)n;
    float acc = 0.0f;
    for (uint i = lid; i < n; i += lsize) acc += xp[i];
    scratch[lid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = lsize / 2; s > 0; s /= 2) {
        if (lid < s) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) y[plane] = scratch[0] / (float)n;
}

/* dx[plane, i] = dy[plane] / n, one element per work-item, grid (n, planes). */
__kernel void global_avgpool_backward(__global const float *dy, __global float *dx, const uint n)
{
    const size_t i = get_global_id(0), plane = get_global_id(1);
    dx[plane * n + i] = dy[plane] / (float)n;
}

/* Whether (v, i) beats the best so far (bv, bi): larger wins, equal values
 * the smaller index (the first in the plane, whatever the reduction order);
 * NaN beats every number, as in max pooling. */
inline int gmp_better(const float v, const int i, const float bv, const int bi)
{
    if (isnan(v) || isnan(bv)) return isnan(v) && (!isnan(bv) || i < bi);
    return v > bv || (v == bv && i < bi);
}

/* y (N*C) = max of each plane of x (planes of n floats), argmax its flat
 * index in the plane (int32 bits; written when with_idx).  One work-group
 * per plane as global_avgpool_forward, (value, index) pairs in local memory. */
__kernel void global_maxpool_forward(__global const float *x, __global float *y, __global int *argmax, const uint n,
                                     const int with_idx, __local float *sv, __local int *si)
{
    const size_t plane = get_group_id(0);
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    __global const float *xp = x + plane * (size_t)n;
    float best = -INFINITY;
    int bi = INT_MAX; /* any element beats the empty start, -inf included */
    for (uint i = lid; i < n; i += lsize) {
        const float v = xp[i];
        if (gmp_better(v, (int)i, best, bi)) best = v, bi = (int)i;
    }
    sv[lid] = best;
    si[lid] = bi;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = lsize / 2; s > 0; s /= 2) {
        if (lid < s && gmp_better(sv[lid + s], si[lid + s], sv[lid], si[lid])) {
            sv[lid] = sv[lid + s];
            si[lid] = si[lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        y[plane] = sv[0];
        if (with_idx) argmax[plane] = si[0];
    }
}

/* dx[plane, i] = dy[plane] where i is the plane's argmax, else 0; grid (n, planes). */
__kernel void global_maxpool_backward(__global const float *dy, __global const int *argmax, __global float *dx,
                                      const uint n)
{
    const size_t i = get_global_id(0), plane = get_global_id(1);
    dx[plane * n + i] = argmax[plane] == (int)i ? dy[plane] : 0.0f;
}

#endif /* POOL_KIND == 0 */

/* ---- Max pooling with kernel 2, stride 2, no padding along W ----------
 * (and forward with kernel 3, stride 2, padding 1: max_window_w3 below)
 * The common case (ref4 and the authors' models pool by 2), written with
 * explicit vectors: PoCL does not vectorize the one-output-per-work-item
 * kernels above (stride-2 gathers), which run at ~1-2 GB/s.  D and H keep
 * any kernel/stride/padding.  VEC must be 4, 8 or 16.
 * Forward grid (ceil(OW / VEC), OH, N*C*OD): VEC consecutive outputs of one
 * row from 2*VEC consecutive inputs (even/odd lanes are the two window
 * columns).  Backward grid (ceil(W / VEC), H, N*C*D): VEC consecutive inputs
 * gather dy and argmax of their VEC/2 windows, each duplicated to two lanes.
 * The last work-item of a row computes full vectors too, reading up to
 * 2*VEC floats past the row (into the next row, or into the slack every
 * nfv_tensor has after its last element), and stores only its valid lanes. */
#if POOL_KIND == 1 && defined(VEC) && (VEC == 4 || VEC == 8 || VEC == 16)
/* Half-width loads of dy / argmax, each value duplicated to two lanes. */
#if VEC == 4
#define VLOADH vload2
#define DUP ((uintv)(0, 0, 1, 1))
#elif VEC == 8
#define VLOADH vload4
#define DUP ((uintv)(0, 0, 1, 1, 2, 2, 3, 3))
#elif VEC == 16
#define VLOADH vload8
#define DUP ((uintv)(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7))
#endif

/* One window column into the running max: lanes where v beats best (or is
 * NaN, which always wins, as in the scalar kernel) take v and offset code. */
inline void take_max(const floatv v, const int code, floatv *best, intv *off)
{
    const intv take = isgreater(v, *best) | isnan(v);
    *best = select(*best, v, take);
    *off = select(*off, (intv)(code), take);
}

/* Best value and its offset (relative to the window row start
 * (d0*H + h0)*W + 2*ow0) for VEC outputs starting at ow0. */
inline void max_window_w2(__global const float *xp, const int d0, const int h0, const int ow0, floatv *best_out,
                          intv *off_out)
{
    floatv best = (floatv)(-INFINITY);
    /* Ties with -inf keep the first in-bounds element, as the scalar kernel. */
    intv off = (intv)((max(d0, 0) - d0) * H * W + (max(h0, 0) - h0) * W);
    for (int kd = 0; kd < KD; kd++) {
        const int d = d0 + kd;
        if (d < 0 || d >= D) continue;
        for (int kh = 0; kh < KH; kh++) {
            const int h = h0 + kh;
            if (h < 0 || h >= H) continue;
            __global const float *row = xp + (d * H + h) * W + 2 * ow0;
            const floatv lo = VLOAD(0, row), hi = VLOAD(1, row);
            const floatv even = (floatv)(lo.even, hi.even), odd = (floatv)(lo.odd, hi.odd);
            const int code = (kd * H + kh) * W;
            take_max(even, code, &best, &off);
            take_max(odd, code + 1, &best, &off);
        }
    }
    *best_out = best;
    *off_out = off;
}

#define MAXPOOL_VEC_FORWARD(name, WINDOW, WITH_IDX)                                                  \
    __kernel void name(__global const float *x, __global float *y, __global int *argmax)          \
    {                                                                                             \
        const int ow0 = get_global_id(0) * VEC, oh = get_global_id(1), z = get_global_id(2);      \
        const int od = z % OD;                                                                    \
        __global const float *xp = x + (size_t)(z / OD) * (size_t)(D * H * W);                    \
        const size_t o = ((size_t)z * OH + oh) * OW + ow0;                                        \
        const int d0 = od * SD - PD, h0 = oh * SH - PH;                                           \
        floatv best;                                                                              \
        intv off;                                                                                 \
        WINDOW(xp, d0, h0, ow0, &best, &off);                                                     \
        const intv idx = off + (d0 * H + h0) * W + 2 * ow0 + 2 * LANES;                           \
        if (ow0 + VEC <= OW) {                                                                    \
            VSTORE(best, 0, y + o);                                                               \
            if (WITH_IDX) VSTORE(idx, 0, argmax + o);                                             \
        } else {                                                                                  \
            float bt[VEC];                                                                        \
            int it[VEC];                                                                          \
            VSTORE(best, 0, bt);                                                                  \
            VSTORE(idx, 0, it);                                                                   \
            for (int j = 0; j < OW - ow0; j++) {                                                  \
                y[o + j] = bt[j];                                                                 \
                if (WITH_IDX) argmax[o + j] = it[j];                                              \
            }                                                                                     \
        }                                                                                         \
    }

MAXPOOL_VEC_FORWARD(maxpool3d_forward_w2, max_window_w2, 1)
MAXPOOL_VEC_FORWARD(maxpool3d_forward_w2_noidx, max_window_w2, 0)

/* Kernel 3, stride 2, padding 1 along W (the stem max pool of every MONAI
 * and torchvision ResNet), floor-mode width: window columns 2*ow - 1, 2*ow,
 * 2*ow + 1 are the odd lanes of the block one column to the left, the even
 * and the odd lanes of this block.  The first block's column -1 is padding
 * (-inf), as is column W where W is odd; the order of the comparisons is
 * the scalar kernel's (columns left to right), so ties and NaN resolve the
 * same.  Offsets as max_window_w2's. */
inline void max_window_w3(__global const float *xp, const int d0, const int h0, const int ow0, floatv *best_out,
                          intv *off_out)
{
    floatv best = (floatv)(-INFINITY);
    /* Where nothing beats -inf, the scalar kernel keeps the window's first
     * in-bounds voxel: column 2*ow - 1, or 0 for ow = 0. */
    intv off = (intv)((max(d0, 0) - d0) * H * W + (max(h0, 0) - h0) * W) +
               select((intv)(0), (intv)(-1), ow0 + LANES > 0);
    /* Column 2*ow + 1 exists where it is < W (only the last output of an odd W lacks it). */
    const intv right_ok = 2 * (ow0 + LANES) + 1 < W;
    for (int kd = 0; kd < KD; kd++) {
        const int d = d0 + kd;
        if (d < 0 || d >= D) continue;
        for (int kh = 0; kh < KH; kh++) {
            const int h = h0 + kh;
            if (h < 0 || h >= H) continue;
            __global const float *row = xp + (d * H + h) * W + 2 * ow0;
            const floatv lo = VLOAD(0, row), hi = VLOAD(1, row);
            floatv left;
            if (ow0 > 0) {
                const floatv llo = VLOAD(0, row - 1), lhi = VLOAD(1, row - 1);
                left = (floatv)(llo.even, lhi.even);
            } else { /* column -1 is padding, and row - 1 may lie before the buffer */
                float t[2 * VEC];
                t[0] = -INFINITY;
                for (int j = 1; j < 2 * VEC; j++) t[j] = row[j - 1];
                const floatv llo = VLOAD(0, t), lhi = VLOAD(1, t);
                left = (floatv)(llo.even, lhi.even);
            }
            const floatv even = (floatv)(lo.even, hi.even);
            const floatv odd = select((floatv)(-INFINITY), (floatv)(lo.odd, hi.odd), right_ok);
            const int code = (kd * H + kh) * W;
            take_max(left, code - 1, &best, &off);
            take_max(even, code, &best, &off);
            take_max(odd, code + 1, &best, &off);
        }
    }
    *best_out = best;
    *off_out = off;
}

MAXPOOL_VEC_FORWARD(maxpool3d_forward_w3, max_window_w3, 1)
MAXPOOL_VEC_FORWARD(maxpool3d_forward_w3_noidx, max_window_w3, 0)

/* dx for VEC consecutive inputs (d, h, w0 ..) of one plane: each gathers dy
 * of its windows where the argmax is itself (an arg max of -1, a window
 * gated off, is nobody's). */
inline floatv w2_input_grad(__global const float *dyp, __global const int *amp, int d, int h, int w0)
{
    const int self0 = (d * H + h) * W + w0;
    /* Lanes past the last window (w >= 2*OW) read the next row's entries:
     * masked out, as those windows may contain this voxel when KH > SH. */
    const intv lane_ok = (w0 + LANES) < 2 * OW;
    const intv self = self0 + LANES;
    floatv acc = (floatv)(0.0f);
    for (int jd = 0; jd < CD; jd++) {
        const int od = (d + PD) / SD - jd;
        if (od < 0 || od >= OD || d + PD - od * SD >= KD) continue;
        for (int jh = 0; jh < CH; jh++) {
            const int oh = (h + PH) / SH - jh;
            if (oh < 0 || oh >= OH || h + PH - oh * SH >= KH) continue;
            const int o = (od * OH + oh) * OW + w0 / 2;
            floatv g = shuffle(VLOADH(0, dyp + o), DUP);
            const intv a = shuffle(VLOADH(0, amp + o), DUP);
            acc += select((floatv)(0.0f), g, (a == self) & lane_ok);
        }
    }
    return acc;
}

/* Kernel 3, stride 2, padding 1 along W: input w lies in window (w + 1) / 2
 * (as its centre column for even w, its left column for odd w) and, for odd
 * w, in window (w - 1) / 2 (its right column); in that order, as the scalar
 * kernel sums them.  One VEC-wide load of dy and argmax from window w0 / 2
 * serves both, shuffled: lane l reads window w0 / 2 + (l + 1) / 2
 * (W3_NEXT) and w0 / 2 + l / 2 (DUP). */
#if VEC == 4
#define W3_NEXT ((uintv)(0, 1, 1, 2))
#elif VEC == 8
#define W3_NEXT ((uintv)(0, 1, 1, 2, 2, 3, 3, 4))
#elif VEC == 16
#define W3_NEXT ((uintv)(0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8))
#endif
inline floatv w3_input_grad(__global const float *dyp, __global const int *amp, int d, int h, int w0)
{
    const intv self = (d * H + h) * W + w0 + LANES;
    const intv next_ok = w0 + LANES + 1 < 2 * OW; /* (w + 1) / 2 < OW: an even W's last input has no window to its right */
    /* The odd lanes' mask from a private table: computed from LANES by
     * vector operations it came out wrong under oclgrind 21.10 (the
     * backward tests failed there, not under PoCL). */
    int odd_lane[VEC];
    for (int l = 0; l < VEC; l++) odd_lane[l] = (l & 1) ? -1 : 0;
    const intv odd = VLOAD(0, odd_lane);
    floatv acc = (floatv)(0.0f);
    for (int jd = 0; jd < CD; jd++) {
        const int od = (d + PD) / SD - jd;
        if (od < 0 || od >= OD || d + PD - od * SD >= KD) continue;
        for (int jh = 0; jh < CH; jh++) {
            const int oh = (h + PH) / SH - jh;
            if (oh < 0 || oh >= OH || h + PH - oh * SH >= KH) continue;
            const int o = (od * OH + oh) * OW + w0 / 2;
            const floatv g = VLOAD(0, dyp + o);
            const intv a = VLOAD(0, amp + o);
            acc += select((floatv)(0.0f), shuffle(g, W3_NEXT), (shuffle(a, W3_NEXT) == self) & next_ok);
            acc += select((floatv)(0.0f), shuffle(g, DUP), (shuffle(a, DUP) == self) & odd);
        }
    }
    return acc;
}

#define MAXPOOL_VEC_BACKWARD(name, GRAD)                                                          \
    __kernel void name(__global const float *dy, __global const int *argmax, __global float *dx)  \
    {                                                                                             \
        const int w0 = get_global_id(0) * VEC, h = get_global_id(1), z = get_global_id(2);        \
        const size_t plane = z / D, po = plane * (size_t)(OD * OH * OW);                          \
        const size_t out = ((size_t)z * H + h) * W + w0;                                          \
        const floatv acc = GRAD;                                                                  \
        if (w0 + VEC <= W) {                                                                      \
            VSTORE(acc, 0, dx + out);                                                             \
        } else {                                                                                  \
            float at[VEC];                                                                        \
            VSTORE(acc, 0, at);                                                                   \
            for (int j = 0; j < W - w0; j++) dx[out + j] = at[j];                                 \
        }                                                                                         \
    }

MAXPOOL_VEC_BACKWARD(maxpool3d_backward_w2, w2_input_grad(dy + po, argmax + po, z % D, h, w0))
MAXPOOL_VEC_BACKWARD(maxpool3d_backward_w3, w3_input_grad(dy + po, argmax + po, z % D, h, w0))

/* The same gradient gated by [y > 0] (y: this pool's output; the ReLU
 * before the pool passed its window's max exactly when y > 0), read from
 * an arg max that is -1 where y <= 0 (conv3d_fwd_relu_pool2 writes it so:
 * reading y here cost 0.5 of the kernel's 1.9 ms on ref4's first layer,
 * bench-kernels "maxpool3d bwd gated"), and written
 * straight into the zero-padded layout in which the conv below stages its
 * input gradient (src/layers/conv3d.c): dxp (N*C, D+2*GPD, H+2*GPH,
 * W+2*GPW), or with -DGCR=C in channel rows (N, D+2*GPD, H+2*GPH, C,
 * W+2*GPW) for conv3d_fwd_co1; every element written, no slack.  Grid
 * (ceil(W / VEC), H+2*GPH, N*C*(D+2*GPD)), or with channel rows (ceil(W /
 * VEC), (H+2*GPH)*C, N*(D+2*GPD)), so that a work-group writes a contiguous
 * part of one padded plane of all channels: a work-item in a border row or
 * plane writes zeros where an inner one writes its VEC values, and the
 * row's first and last work-items write the GPW zeros at its ends.  It replaces the pool
 * backward, the ReLU backward and the conv's padding copy (three passes
 * over the largest tensor of a step).  The padding is compiled in: with
 * run-time padding arguments PoCL ran this kernel 6x slower. */
#ifndef GPD
#define GPD 1
#endif
#ifndef GPH
#define GPH 1
#endif
#ifndef GPW
#define GPW 1
#endif
#ifndef GCR
#define GCR 0 /* C: dxp in channel rows, (N, D+2*GPD, H+2*GPH, C, W+2*GPW) (conv3d_fwd_co1's layout) */
#endif
#define GDP (D + 2 * GPD)
#define GHP (H + 2 * GPH)
#define GWP (W + 2 * GPW)
__kernel void maxpool3d_backward_w2_gated_padded(__global const float *dy, __global const int *argmax,
                                                 __global float *dxp)
{
#if GCR
    const int w0 = get_global_id(0) * VEC, hp = get_global_id(1) / GCR, c = get_global_id(1) % GCR;
    const int zn = get_global_id(2); /* n * GDP + padded plane */
    const size_t plane = (size_t)(zn / GDP) * GCR + c;
    const int d = zn % GDP - GPD, h = hp - GPH;
    const size_t drow = ((size_t)zn * GHP + hp) * GCR + c;
#else
    const int w0 = get_global_id(0) * VEC, hp = get_global_id(1), zp = get_global_id(2);
    const size_t plane = zp / GDP;
    const int d = zp % GDP - GPD, h = hp - GPH;
    const size_t drow = (size_t)zp * GHP + hp;
#endif
    __global float *row = dxp + drow * GWP + GPW; /* the row's first inner element */
    floatv acc = (floatv)(0.0f);
    if (d >= 0 && d < D && h >= 0 && h < H) {
        const size_t po = plane * (size_t)(OD * OH * OW);
        acc = w2_input_grad(dy + po, argmax + po, d, h, w0);
    }
    if (w0 == 0)
        for (int j = 1; j <= GPW; j++) row[-j] = 0.0f;
    if (w0 + VEC >= W)
        for (int j = 0; j < GPW; j++) row[W + j] = 0.0f;
    if (w0 + VEC <= W) {
        VSTORE(acc, 0, row + w0);
    } else {
        float at[VEC];
        VSTORE(acc, 0, at);
        for (int j = 0; j < W - w0; j++) row[w0 + j] = at[j];
    }
}
#endif
