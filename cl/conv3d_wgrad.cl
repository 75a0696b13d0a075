/* Conv3d weight and bias gradients, fast path (src/layers/conv3d_wgrad.c).
 *
 * Tensors are row-major: x (N, CI, D, H, W), dy (N, CO, DO, HO, WO),
 * dw (CO, CI, KD, KH, KW).  Each work-item keeps one tap row's multiply-adds
 * for BW_COB output channels over a slab of output planes, reading x from
 * the zero-padded staging copy conv3d.cl's conv3d_pad writes; the partial
 * sums per slab are then added by conv3d_sum_partials.  The bias gradient
 * sums dy's planes likewise (conv3d_bias_partial).  The tunables and shape
 * constants are cl/conv3d_common.cl's. */
#include "conv3d_common.cl"

/* ---- fast weight gradient, first pass ------------------------------------ */
/* part (N*DSLABS, CO, CI, KD, KH, KW): per slab of ODC output planes
 * (n, od in [s*ODC, s*ODC + ODC)), the sum over those planes, oh and x of
 * dy[n, co, od, oh, x] * xp[n, ci, od*SD + kd, oh*SH + kh, x + kw].
 * ODC is chosen by the host so a slab holds a few thousand positions: enough
 * work to amortize the horizontal sums, enough slabs for every core.
 * Global (KD*KH, N*DSLABS, CI*CO/BW_COB), local (KD*KH, 1, 1): the KD*KH
 * work-items sharing one dy slab run back to back on one core, so it is read
 * from cache.  Each work-item keeps BW_COB*KW vector accumulators (one tap
 * row, BW_COB output channels); dy lanes past WO are selected to zero. */
#ifndef ODC
#define ODC 1
#endif
/* The weight-gradient kernels' accumulators g<kw>_<c> (kw < 5, c < BW_COB)
 * and their horizontal sums into part[slab, co0 + c, ci, kd, kh, kw]. */
#define DECL_G(c) floatv g0_##c = (floatv)(0.0f), g1_##c = (floatv)(0.0f), g2_##c = (floatv)(0.0f), \
                         g3_##c = (floatv)(0.0f), g4_##c = (floatv)(0.0f);
#define PUT_G(c)                                                             \
    {                                                                        \
        __global float *o = out + (size_t)(c) * CI * KVOL;                   \
        o[0] = vsum(g0_##c);                                                 \
        if (KW > 1) o[1] = vsum(g1_##c);                                     \
        if (KW > 2) o[2] = vsum(g2_##c);                                     \
        if (KW > 3) o[3] = vsum(g3_##c);                                     \
        if (KW > 4) o[4] = vsum(g4_##c);                                     \
    }
#define STORE_WEIGHT_PARTIALS                                                                          \
    {                                                                                                 \
        __global float *out = part + (((size_t)slab * CO + co0) * CI + ci) * KVOL + (kd * KH + kh) * KW; \
        REP(BW_COB, PUT_G)                                                                            \
    }
#define DSLABS ((DO + ODC - 1) / ODC)
/* A work-item's tap row (kd, kh), slab, input channel and first output channel. */
#define WGRAD_INDICES                                                                  \
    const int kd = get_global_id(0) / KH, kh = get_global_id(0) % KH;                  \
    const int slab = get_global_id(1), n = slab / DSLABS, od0 = (slab % DSLABS) * ODC; \
    const int ci = get_global_id(2) % CI, cb = get_global_id(2) / CI;                  \
    const int co0 = cb * BW_COB;                                                       \
    const int od1 = min(od0 + ODC, DO);
/* x at the KW shifts of vector x0 of row xr (taps past KW are never loaded:
 * the conditions are constants), and the multiply-adds of dy vector DY(c)
 * into the accumulators of output channel co0 + c. */
#define XLOADS                                                                        \
    const floatv x_0 = VLOAD(0, xr + x0);                                             \
    const floatv x_1 = KW > 1 ? VLOAD(0, xr + x0 + 1) : (floatv)(0.0f);               \
    const floatv x_2 = KW > 2 ? VLOAD(0, xr + x0 + 2) : (floatv)(0.0f);               \
    const floatv x_3 = KW > 3 ? VLOAD(0, xr + x0 + 3) : (floatv)(0.0f);               \
    const floatv x_4 = KW > 4 ? VLOAD(0, xr + x0 + 4) : (floatv)(0.0f);
#define GACC(c, DY)                                                                   \
    {                                                                                 \
        const floatv g = DY(c);                                                       \
        g0_##c = MAC(g, x_0, g0_##c);                                                 \
        if (KW > 1) g1_##c = MAC(g, x_1, g1_##c);                                     \
        if (KW > 2) g2_##c = MAC(g, x_2, g2_##c);                                     \
        if (KW > 3) g3_##c = MAC(g, x_3, g3_##c);                                     \
        if (KW > 4) g4_##c = MAC(g, x_4, g4_##c);                                     \
    }
__kernel void conv3d_bwd_weights_fast(__global const float *xp, __global const float *dy, __global float *part)
{
    WGRAD_INDICES

    REP(BW_COB, DECL_G)
    for (int od = od0; od < od1; od++)
    for (int oh = 0; oh < HO; oh++) {
        __global const float *xr = xp + (((size_t)n * CI + ci) * DP + od * SD + kd) * HP * WP + (oh * SH + kh) * WP;
        __global const float *dr = dy + ((((size_t)n * CO + co0) * DO + od) * HO + oh) * WO;
        /* Whole vectors inside the row, then (when WO % VEC) the row's tail,
         * whose dy lanes past WO are selected to zero: the select costs one
         * blend per dy load, so only the tail pays it. */
#define DY_FULL(c) VLOAD(0, dr + (size_t)(c) * DO * HO * WO + x0)
#define DY_TAIL(c) select((floatv)(0.0f), DY_FULL(c), keep)
#define GACC_FULL(c) GACC(c, DY_FULL)
#define GACC_TAIL(c) GACC(c, DY_TAIL)
        for (int x0 = 0; x0 + VEC <= WO; x0 += VEC) {
            XLOADS
            REP(BW_COB, GACC_FULL)
        }
        if (WO % VEC) {
            const int x0 = WO / VEC * VEC;
            /* lanes inside the row (all ones) or past its end (zero) */
            const intv keep = isless(LANES_F, (floatv)((float)(WO - x0)));
            XLOADS
            REP(BW_COB, GACC_TAIL)
        }
#undef GACC_TAIL
#undef GACC_FULL
#undef DY_TAIL
#undef DY_FULL
    }

    STORE_WEIGHT_PARTIALS
}

/* ---- fast weight gradient, flattened planes (h stride 1) ----------------- */
/* As conv3d_bwd_weights_fast, with vectors along the output plane flattened
 * at the padded row pitch WP (as conv3d_fwd_flat): on narrow rows a vector
 * then spans rows (conv4 at 2 mm: 143 of 176 lanes used instead of 11 of
 * 16 per row).  dy must first be laid out at that pitch with zeros past WO
 * and past the plane (conv3d_pitch_dy: dyp (N, CO, DO, PITCHED_PLANE)), so
 * the x lanes that run across a row end meet zeros and add nothing.  The x
 * loads run at most VEC + KW floats past a plane, into the next plane or
 * the staging copy's slack.  Global and work-items as the row kernel. */
#define PITCHED_PLANE ((HO * WP + VEC - 1) / VEC * VEC)
__kernel void conv3d_pitch_dy(__global const float *dy, __global float *dyp)
{
    const int p = get_global_id(0), plane = get_global_id(1); /* plane: (n*CO + co)*DO + od */
    const int oh = p / WP, ow = p - oh * WP;
    dyp[(size_t)plane * PITCHED_PLANE + p] =
        oh < HO && ow < WO ? dy[(size_t)plane * HO * WO + oh * WO + ow] : 0.0f;
}

#if SH == 1
__kernel void conv3d_bwd_weights_flat(__global const float *xp, __global const float *dyp, __global float *part)
{
    WGRAD_INDICES

    REP(BW_COB, DECL_G)
    for (int od = od0; od < od1; od++) {
        __global const float *xr = xp + (((size_t)n * CI + ci) * DP + od * SD + kd) * HP * WP + kh * WP;
        __global const float *dr = dyp + (((size_t)n * CO + co0) * DO + od) * PITCHED_PLANE;
        for (int x0 = 0; x0 < PITCHED_PLANE; x0 += VEC) {
            XLOADS
#define DY_PITCHED(c) VLOAD(0, dr + (size_t)(c) * DO * PITCHED_PLANE + x0)
#define GACC_PITCHED(c) GACC(c, DY_PITCHED)
            REP(BW_COB, GACC_PITCHED)
#undef GACC_PITCHED
#undef DY_PITCHED
        }
    }
    STORE_WEIGHT_PARTIALS
}
#endif

/* ---- fast bias gradient, first pass -------------------------------------- */
/* partb (N*DO, CO): sum of the plane dy[n, co, od, :, :] (plane = HO*WO
 * contiguous floats).  Global (N*DO, CO); lanes past the plane are selected
 * to zero.  Shapes at run time: one build for every layer. */
__kernel void conv3d_bias_partial(__global const float *dy, __global float *partb, int do_, int plane, int co_count)
{
    const int slab = get_global_id(0), co = get_global_id(1);
    const int n = slab / do_, od = slab % do_;
    __global const float *src = dy + (((size_t)n * co_count + co) * do_ + od) * plane;
    floatv acc = (floatv)(0.0f);
    for (int j = 0; j < plane; j += VEC)
        acc += select((floatv)(0.0f), VLOAD(0, src + j), isless(LANES_F, (floatv)((float)(plane - j))));
    partb[(size_t)slab * co_count + co] = vsum(acc);
}

/* out[i] = sum over p < parts of part[p * m + i]: the second pass of the
 * weight and bias gradient reductions.  One output per work-item. */
__kernel void conv3d_sum_partials(__global const float *part, __global float *out, int parts, int m)
{
    const int i = get_global_id(0);
    if (i >= m) return;
    float acc = 0.0f;
    for (int p = 0; p < parts; p++) acc += part[(size_t)p * m + i];
    out[i] = acc;
}
