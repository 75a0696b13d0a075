/* Conv3d kernels with the output channels in the vector lanes, for convs of
 * few output positions (ResNet's 4^3 and 2^3 stages), where the kernels of
 * cl/conv3d.cl and cl/conv3d_wgrad.cl, whose vectors run along x, compute
 * mostly slack (src/layers/conv3d_cvec.c; which convs take them:
 * src/layers/conv3d.c, nfv_conv3d_channel_last).  The batch's output
 * positions q = ((n*DO + od)*HO + oh)*WO + ox are the work-items' rows, so
 * one block of VEC channels reads its weights once for the whole batch.
 *
 * Tensors are row-major: x (N, CI, D, H, W), w (CO, CI, KD, KH, KW),
 * y (N, CO, DO, HO, WO).  Built with the layer's fast options plus -DCVP
 * (positions per work-item) and -DKHW (KH*KW); conv3d_channel_last_weights
 * also in the shape-independent build (-DVEC only). */

#include "conv3d_common.cl"

/* Weights with the output channel last, for conv3d_fwd_cvec, which loads
 * VEC output channels of one tap as a vector.  From w (CO, CI, KD, KH, KW):
 *   flip 0: wl (CI, KD, KH, KW, CO), the forward's;
 *   flip 1: wl (CO, KD, KH, KW, CI) with the taps flipped: the input
 *           gradient's (a forward over dy with w transposed over channels
 *           and flipped, conv3d_flip_weights), without that copy.
 * One output row (one input channel and tap) per work-item, taps fastest:
 * the rows' stores are contiguous and neighbouring work-items read
 * neighbouring taps (one element per work-item ran at 9 GB/s on PoCL). */
__kernel void conv3d_channel_last_weights(__global const float *w, __global float *wl, int co_count, int ci_count,
                                          int kvol, int flip)
{
    const int row = get_global_id(0);
    if (row >= (flip ? co_count : ci_count) * kvol) return;
    const int c = row / kvol, k = row % kvol;
    if (flip) {
        __global const float *src = w + (size_t)c * ci_count * kvol + (kvol - 1 - k);
        __global float *dst = wl + (size_t)row * ci_count;
        for (int ci = 0; ci < ci_count; ci++) dst[ci] = src[(size_t)ci * kvol];
    } else {
        __global const float *src = w + (size_t)c * kvol + k;
        __global float *dst = wl + (size_t)row * co_count;
        for (int co = 0; co < co_count; co++) dst[co] = src[(size_t)co * ci_count * kvol];
    }
}

/* ---- forward with output channels in the vector lanes --------------------- */
/* For outputs of few positions, where vectors along x are mostly slack:
 * ResNet's 4^3 and 2^3 stages flattened at the padded pitch fill 16 and 4
 * of conv3d_fwd_flat's 32 lanes, and a batch of 8 re-read all of a 28 MB
 * layer's weights per sample.  Here a vector holds VEC output channels and
 * the batch's output positions q = ((n*DO + od)*HO + oh)*WO + ox are the
 * work-items' rows:
 *   y (N, CO, DO, HO, WO) from xp (N, CI, DP, HP, WP) (zero-padded, x stride 1)
 *   and wl (CI, KD, KH, KW, CO) (conv3d_channel_last_weights).
 * Global (ceil(N*DO*HO*WO / CVP), CO/VEC); work-item (qb, cb) computes
 * y[q, cb*VEC .. +VEC] for the CVP positions q = qb*CVP ..; positions past
 * the batch repeat its last one and are not stored.  A work-group is one cb:
 * its VEC channels' weights (CI*KVOL*VEC floats) come from memory once for
 * all of the batch's positions.  Only in builds with -DCVP. */
#if defined(CVP)
#define CV_DECL(p)                                                                             \
    floatv acc##p = (floatv)(0.0f);                                                           \
    __global const float *x##p;                                                               \
    {                                                                                         \
        const int q = min(qb * CVP + (p), npos - 1), ox = q % WO, oh = q / WO % HO;           \
        const int od = q / (WO * HO) % DO, n = q / (WO * HO * DO);                            \
        x##p = xp + (size_t)n * CI * DP * HP * WP + (od * SD * HP + oh * SH) * WP + ox;       \
    }
#define CV_TAP(p) acc##p = MAC((floatv)(x##p[toff]), wv, acc##p);
#define CV_NEXT(p) x##p += DP * HP * WP;
#define CV_STORE(p)                                                                            \
    if (qb * CVP + (p) < npos) {                                                               \
        const int q = qb * CVP + (p), n = q / (WO * HO * DO), pos = q % (WO * HO * DO);       \
        floatv v = acc##p + (has_bias ? VLOAD(0, bias + co0) : (floatv)(0.0f));                 \
        if (OUT_RELU) v = fmax(v, (floatv)(0.0f));                                             \
        float tmp[VEC];                                                                        \
        VSTORE(v, 0, tmp);                                                                    \
        __global float *dst = y + ((size_t)n * CO + co0) * DO * HO * WO + pos;                 \
        for (int l = 0; l < VEC; l++) dst[(size_t)l * DO * HO * WO] = tmp[l];                  \
    }
__kernel void conv3d_fwd_cvec(__global const float *xp, __global const float *wl, __global const float *bias,
                              __global float *y, int has_bias, int npos)
{
    const int qb = get_global_id(0), co0 = get_global_id(1) * VEC;
    REP(CVP, CV_DECL)
    __global const float *wc = wl + co0;
    for (int ci = 0; ci < CI; ci++) {
#if KD_UNROLL
#pragma unroll
#else
#pragma unroll 1
#endif
        for (int kd = 0; kd < KD; kd++)
#pragma unroll
            for (int kh = 0; kh < KH; kh++)
#pragma unroll
                for (int kw = 0; kw < KW; kw++) {
                    const int toff = (kd * HP + kh) * WP + kw;
                    const floatv wv = VLOAD(0, wc + ((kd * KH + kh) * KW + kw) * CO);
                    REP(CVP, CV_TAP)
                }
        wc += KVOL * CO;
        REP(CVP, CV_NEXT)
    }
    REP(CVP, CV_STORE)
}
#endif /* CVP */

/* ---- weight gradient with the output channels in the lanes ---------------- */
/* For the convs conv3d_fwd_cvec runs (above: few output positions,
 * where vectors along x are mostly slack; ResNet-18's layer 4 has 8
 * positions a sample and 7 M weights a conv, so the slab kernels' partial
 * sums also cost more than the products):
 *   dw[co, ci, kd, kh, kw] = sum over the batch's output positions
 *   q = ((n*DO + od)*HO + oh)*WO + ox of dyl[q, co] * xp[n, ci, od*SD + kd,
 *   oh*SH + kh, ox + kw],
 * dyl (N*DO*HO*WO, CO) being dy with the channel last (conv3d_channel_last_dy).
 * Global (KD, CI, CO/VEC); a work-item keeps one kd's KH*KW taps (<= 16)
 * for VEC output channels over every position and writes dw itself: no
 * partial sums.  Only in builds with -DCVP. */
#if defined(CVP) && defined(KHW) && KHW <= 16 /* KHW: KH * KW as one number, for REP */
__kernel void conv3d_channel_last_dy(__global const float *dy, __global float *dyl)
{
    const int q = get_global_id(0), n = q / (DO * HO * WO), pos = q % (DO * HO * WO);
    __global const float *src = dy + (size_t)n * CO * DO * HO * WO + pos;
    __global float *dst = dyl + (size_t)q * CO;
    for (int co = 0; co < CO; co++) dst[co] = src[(size_t)co * DO * HO * WO];
}

#define WG_DECL(t) floatv g##t = (floatv)(0.0f);
#define WG_TAP(t) g##t = MAC((floatv)(xr[((t) / KW) * WP + (t) % KW]), dv, g##t);
#define WG_STORE(t)                                                                           \
    {                                                                                         \
        float tmp[VEC];                                                                       \
        VSTORE(g##t, 0, tmp);                                                                 \
        for (int l = 0; l < VEC; l++) dst[(size_t)l * CI * KVOL + (t)] = tmp[l];              \
    }
__kernel void conv3d_bwd_weights_cvec(__global const float *xp, __global const float *dyl, __global float *dw,
                                      int n_count)
{
    const int kd = get_global_id(0), ci = get_global_id(1), co0 = get_global_id(2) * VEC;
    REP(KHW, WG_DECL)
    __global const float *dq = dyl + co0;
    for (int n = 0; n < n_count; n++)
        for (int od = 0; od < DO; od++)
            for (int oh = 0; oh < HO; oh++) {
                __global const float *xrow =
                    xp + ((size_t)n * CI + ci) * DP * HP * WP + ((od * SD + kd) * HP + oh * SH) * WP;
                for (int ox = 0; ox < WO; ox++, dq += CO) {
                    __global const float *xr = xrow + ox;
                    const floatv dv = VLOAD(0, dq);
                    REP(KHW, WG_TAP)
                }
            }
    __global float *dst = dw + ((size_t)co0 * CI + ci) * KVOL + kd * KH * KW;
    REP(KHW, WG_STORE)
}
#endif
