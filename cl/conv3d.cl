/* Conv3d kernels: forward and backward to the input (the weight and bias
 * gradients are in cl/conv3d_wgrad.cl; the shared prelude, tunables and
 * shape constants in cl/conv3d_common.cl).
 *
 * Tensors are row-major: x (N, CI, D, H, W), w (CO, CI, KD, KH, KW),
 * y (N, CO, DO, HO, WO).
 *
 * What lives here:
 *
 *  - (in cl/conv3d_ref.cl: the *_ref kernels, one output per work-item,
 *    the spec these are tested against and the path for other shapes.)
 *
 *  - *_fast / *_flat: written for PoCL's CPU compiler (docs/ARCHITECTURE.md, performance notes):
 *    every shape constant compiled in with -D, each work-item computes VEC
 *    consecutive x positions as one floatVEC for COB output channels and ROWS
 *    rows (or, in conv3d_fwd_flat, ROWS consecutive vectors of the plane
 *    flattened with the padded row pitch), loops over input channels only,
 *    taps fully unrolled, accumulators are named variables made by macros
 *    (no per-work-item arrays in the hot loop), borders free of branches
 *    because they read a zero-padded staging copy of the input (conv3d_pad)
 *    with zeroed slack after its end.
 *
 *  - helpers shared by every layer, shapes at run time: conv3d_pad,
 *    conv3d_flip_weights, and the conv3d_phase_* kernels, which run
 *    strided convs as stride-1 convs over phases.
 *
 *  - eval-mode fusion of conv -> BatchNorm -> ReLU (src/model/model_fuse.c):
 *    conv3d_fold_bn folds the BatchNorm into the weights, -DOUT_RELU=1
 *    makes the fast forwards store max(y, 0), and conv3d_pad_gated applies
 *    ReLU's backward while staging dy for the input gradient. */

#include "conv3d_common.cl"

/* ---- helpers of the fast path -------------------------------------------- */

/* xp (N*CI, dp, hp, wp) = x (N*CI, id, ih, iw) surrounded by pd/ph/pw zeros
 * (dp = id + 2 pd, ...), times [gate > 0] where gate (same shape as x) is
 * given; with crow = CI > 0 xp is (N, dp, hp, CI, wp) instead (channel rows,
 * conv3d_fwd_co1).  Global (hp, N*CI*dp): one padded row per work-item, copied with
 * whole vectors (a per-element kernel with index arithmetic ran at ~1 GB/s).
 * Shapes are run-time arguments so one build serves every layer: the
 * per-row index arithmetic is negligible. */
inline void pad_row(__global const float *x, __global const float *gate, __global float *xp, int id, int ih, int iw,
                    int pd_, int ph_, int pw_, int crow)
{
    const int dp = id + 2 * pd_, hp_n = ih + 2 * ph_, wp = iw + 2 * pw_;
    const int hp = get_global_id(0), pdi = get_global_id(1);
    const int plane = pdi / dp, d = pdi % dp - pd_, h = hp - ph_;
    /* crow > 0: the channel-rows layout (N, dp, hp, crow, wp) of conv3d_fwd_co1 */
    const size_t drow = crow ? (((size_t)(plane / crow) * dp + pdi % dp) * hp_n + hp) * crow + plane % crow
                             : (size_t)pdi * hp_n + hp;
    __global float *dst = xp + drow * wp;
    if (d < 0 || d >= id || h < 0 || h >= ih) {
        int j = 0;
        for (; j + VEC <= wp; j += VEC) VSTORE((floatv)(0.0f), 0, dst + j);
        for (; j < wp; j++) dst[j] = 0.0f;
        return;
    }
    const size_t row = (((size_t)plane * id + d) * ih + h) * iw;
    __global const float *src = x + row;
    for (int j = 0; j < pw_; j++) dst[j] = 0.0f, dst[pw_ + iw + j] = 0.0f;
    int j = 0;
    if (gate) {
        __global const float *g = gate + row;
        for (; j + VEC <= iw; j += VEC)
            VSTORE(select((floatv)(0.0f), VLOAD(0, src + j), isgreater(VLOAD(0, g + j), (floatv)(0.0f))), 0,
                   dst + pw_ + j);
        for (; j < iw; j++) dst[pw_ + j] = g[j] > 0.0f ? src[j] : 0.0f;
        return;
    }
    for (; j + VEC <= iw; j += VEC) VSTORE(VLOAD(0, src + j), 0, dst + pw_ + j);
    for (; j < iw; j++) dst[pw_ + j] = src[j];
}

__kernel void conv3d_pad(__global const float *x, __global float *xp, int id, int ih, int iw, int pd_, int ph_,
                         int pw_, int crow)
{
    pad_row(x, 0, xp, id, ih, iw, pd_, ph_, pw_, crow);
}

/* The same copy of dy gated by the ReLU output y after the conv: ReLU's
 * backward (dy where y > 0) folded into the staging copy of the conv's
 * input gradient. */
__kernel void conv3d_pad_gated(__global const float *x, __global const float *gate, __global float *xp, int id, int ih,
                               int iw, int pd_, int ph_, int pw_, int crow)
{
    pad_row(x, gate, xp, id, ih, iw, pd_, ph_, pw_, crow);
}

/* ---- strided convs as stride-1 convs over phases (src/layers/conv3d_strided.c)
 * Along an axis of stride s and kernel K, position s*i + f of x padded by p
 * is position i of phase f, and tap s*m + f is tap m of phase f, for
 * f < nf = min(s, K) (phases no tap reads are left out) and m < ceil(K/s).
 * Phase channel c' = ci * P + (fd * nfh + fh) * nfw + fw, P = nfd*nfh*nfw.
 * The geometry arguments, in this order: strides (sd, sh, sw), phases per
 * axis (nfd, nfh, nfw), paddings (pd, ph, pw). */

#define PHASE_ARGS int sd, int sh, int sw, int nfd, int nfh, int nfw, int pd_, int ph_, int pw_

/* xs (N, CI*P, LD, LH, LW) = the phases of x (N, CI, D, H, W) padded by p
 * (zeros outside x).  Global (LH, N*CI*P*LD): one row of LW per work-item
 * (one value per work-item spent more in PoCL's per-item cost than in the
 * copy). */
__kernel void conv3d_phase_split(__global const float *x, __global float *xs, int d, int h, int w, int ld, int lh,
                                 int lw, PHASE_ARGS)
{
    const int j = get_global_id(0);
    const size_t z = get_global_id(1);
    if (j >= lh) return;
    const int i = z % ld, P = nfd * nfh * nfw;
    const size_t r = z / ld, nci = r / P;
    const int f = r % P, fw = f % nfw, fh = f / nfw % nfh, fd = f / (nfw * nfh);
    const int qd = sd * i + fd - pd_, qh = sh * j + fh - ph_;
    __global float *dst = xs + (z * lh + j) * lw;
    if (qd < 0 || qd >= d || qh < 0 || qh >= h) {
        for (int k = 0; k < lw; k++) dst[k] = 0.0f;
        return;
    }
    __global const float *src = x + ((nci * d + qd) * h + qh) * w;
    for (int k = 0; k < lw; k++) {
        const int qw = sw * k + fw - pw_;
        dst[k] = qw >= 0 && qw < w ? src[qw] : 0.0f;
    }
}

/* dx (N, CI, D, H, W) from dxs (N, CI*P, LD, LH, LW): the adjoint of
 * conv3d_phase_split (each x position is one phase position, or none when
 * no tap reads it: 0).  Global (H, N*CI*D): one row of W per work-item,
 * its x phase and column stepped, not divided: one value per work-item
 * spent ~14 ns each on PoCL in integer divisions (3.7 ms for the 64^3
 * input gradient of a 7^3 stride-2 stem, 14 % of DenseNet-small's
 * visualization step). */
__kernel void conv3d_phase_merge(__global const float *dxs, __global float *dx, int d, int h, int w, int ld, int lh,
                                 int lw, PHASE_ARGS)
{
    const int qh = get_global_id(0);
    const size_t z = get_global_id(1);
    if (qh >= h) return;
    const int qd = z % d, ad = qd + pd_, ah = qh + ph_;
    const size_t nci = z / d;
    const int fd = ad % sd, fh = ah % sh, i = ad / sd, j = ah / sh;
    __global float *dst = dx + (z * h + qh) * w;
    if (fd >= nfd || fh >= nfh || i >= ld || j >= lh) {
        for (int qw = 0; qw < w; qw++) dst[qw] = 0.0f;
        return;
    }
    /* The row's phases fw = 0 .. nfw-1, each a row of dxs. */
    __global const float *src = dxs + ((nci * (nfd * nfh * nfw) + (fd * nfh + fh) * nfw) * ld + i) * lh * lw + j * lw;
    const size_t phase_pitch = (size_t)ld * lh * lw;
    int fw = pw_ % sw, k = pw_ / sw; /* of qw = 0: aw = pw_ */
    for (int qw = 0; qw < w; qw++) {
        dst[qw] = fw < nfw && k < lw ? src[fw * phase_pitch + k] : 0.0f;
        if (++fw == sw) fw = 0, k++;
    }
}

/* ws (CO, CI*P, MD, MH, MW) = the phases of w (CO, CI, KD, KH, KW), 0 where
 * s*m + f >= K.  Global (CO*CI): one (co, ci) kernel per work-item, its P
 * phase kernels contiguous in ws (one weight per work-item ran at a few
 * GB/s on PoCL, as conv3d_flip_weights did). */
__kernel void conv3d_phase_weights(__global const float *w, __global float *ws, int kd, int kh, int kw, int md,
                                   int mh, int mw, PHASE_ARGS)
{
    const size_t coci = get_global_id(0);
    __global const float *src = w + coci * (kd * kh * kw);
    __global float *dst = ws + coci * (nfd * nfh * nfw * md * mh * mw);
    for (int fd = 0; fd < nfd; fd++)
        for (int fh = 0; fh < nfh; fh++)
            for (int fw = 0; fw < nfw; fw++)
                for (int mz = 0; mz < md; mz++)
                    for (int my = 0; my < mh; my++)
                        for (int mx = 0; mx < mw; mx++) {
                            const int td = sd * mz + fd, th = sh * my + fh, tw = sw * mx + fw;
                            *dst++ = td < kd && th < kh && tw < kw ? src[(td * kh + th) * kw + tw] : 0.0f;
                        }
}

/* dw (CO, CI, KD, KH, KW) from dws (CO, CI*P, MD, MH, MW): each tap of w is
 * one phase tap (the adjoint of conv3d_phase_weights on the taps it reads).
 * Global (CO*CI): one (co, ci) kernel per work-item. */
__kernel void conv3d_phase_weights_merge(__global const float *dws, __global float *dw, int kd, int kh, int kw,
                                         int md, int mh, int mw, PHASE_ARGS)
{
    const size_t coci = get_global_id(0);
    __global const float *src = dws + coci * (nfd * nfh * nfw * md * mh * mw);
    __global float *dst = dw + coci * (kd * kh * kw);
    for (int td = 0; td < kd; td++)
        for (int th = 0; th < kh; th++)
            for (int tw = 0; tw < kw; tw++) {
                const int f = (td % sd * nfh + th % sh) * nfw + tw % sw;
                *dst++ = src[((f * md + td / sd) * mh + th / sh) * mw + tw / sw];
            }
}

/* wf (CO, PER) = w (CO, PER) * s[co], bf (CO) = (b - mean) * s + beta with
 * s = gamma / sqrt(var + eps): an eval-mode BatchNorm after a conv folded
 * into the conv (PER = CI/G * KD*KH*KW).  One weight per work-item; the
 * first CO work-items also write bf.  has_bias 0: b is not read. */
__kernel void conv3d_fold_bn(__global const float *w, __global const float *b, int has_bias,
                             __global const float *gamma, __global const float *beta, __global const float *mean,
                             __global const float *var, float eps, __global float *wf, __global float *bf,
                             int co_count, int per)
{
    const int i = get_global_id(0);
    if (i >= co_count * per) return;
    const int co = i / per;
    const float s = gamma[co] / sqrt(var[co] + eps);
    wf[i] = w[i] * s;
    if (i < co_count) {
        const float sc = gamma[i] / sqrt(var[i] + eps);
        bf[i] = ((has_bias ? b[i] : 0.0f) - mean[i]) * sc + beta[i];
    }
}

/* wt (CI, CO, KD, KH, KW) = w (CO, CI, KD, KH, KW) transposed over channels and
 * flipped along every spatial axis: the forward kernel run on dy with wt is
 * the input gradient of a stride-1 conv.  One (co, ci) kernel per
 * work-item (one weight per work-item ran at 3.5 GB/s on PoCL: ResNet-18's
 * 33 M weights took 77 ms a visualization step). */
__kernel void conv3d_flip_weights(__global const float *w, __global float *wt, int co_count, int ci_count, int kvol)
{
    const int i = get_global_id(0);
    if (i >= co_count * ci_count) return;
    const int ci = i % ci_count, co = i / ci_count;
    __global const float *src = w + (size_t)i * kvol;
    __global float *dst = wt + ((size_t)ci * co_count + co) * kvol;
    for (int k = 0; k < kvol; k++) dst[kvol - 1 - k] = src[k];
}

/* Accumulators a<r>_<c> for r < ROWS (1-4) and c < COB; loads v<r>. */
#define DECL(c) floatv a0_##c = (floatv)(0.0f), a1_##c = (floatv)(0.0f), a2_##c = (floatv)(0.0f), \
                       a3_##c = (floatv)(0.0f);
#define TAPR(r, c) a##r##_##c = MAC((floatv)(wc[(c) * CI * KVOL + tap]), v##r, a##r##_##c);
#if ROWS == 1
#define ROWS_DO(M, c) M(0, c)
#elif ROWS == 2
#define ROWS_DO(M, c) M(0, c) M(1, c)
#elif ROWS == 3
#define ROWS_DO(M, c) M(0, c) M(1, c) M(2, c)
#elif ROWS == 4
#define ROWS_DO(M, c) M(0, c) M(1, c) M(2, c) M(3, c)
#else
#error "ROWS must be 1-4"
#endif
#define TAP(c) ROWS_DO(TAPR, c)

/* ---- fast forward -------------------------------------------------------- */
/* y (N, CO, DO, HO, WO) from xp (N, CI, DP, HP, WP) (zero-padded, x stride 1).
 * Global (ceil(WO/VEC), HOB, N*(CO/COB)*DO); work-item (xb, ohb, (n*(CO/COB)+cb)*DO+od)
 * computes y[n, cb*COB .. +COB, od, ohb*ROWS .. +ROWS, xb*VEC .. +VEC].
 * Lanes past WO and rows past HO are computed from slack and not stored. */
__kernel void conv3d_fwd_fast(__global const float *xp, __global const float *w, __global const float *bias,
                              __global float *y, int has_bias)
{
    const int xb = get_global_id(0), ohb = get_global_id(1);
    const int od = get_global_id(2) % DO, cb = (get_global_id(2) / DO) % (CO / COB);
    const int n = get_global_id(2) / (DO * (CO / COB));
    const int x0 = xb * VEC, oh0 = ohb * ROWS, co0 = cb * COB;

    REP(COB, DECL)

    __global const float *xrow = xp + (size_t)n * CI * DP * HP * WP + ((size_t)od * SD * HP + oh0 * SH) * WP + x0;
    __global const float *wco = w + (size_t)co0 * CI * KVOL;
    for (int ci = 0; ci < CI; ci++) {
        __global const float *xc = xrow + (size_t)ci * DP * HP * WP;
        __global const float *wc = wco + ci * KVOL;
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
                    const int tap = (kd * KH + kh) * KW + kw;
                    /* rows past ROWS are never loaded (constant conditions);
                     * with SH = 1 row r at tap kh reads what row 0 reads at
                     * kh + r, and the compiler reuses those loads. */
                    const floatv v0 = VLOAD(0, xc + (kd * HP + kh) * WP + kw);
                    const floatv v1 = ROWS > 1 ? VLOAD(0, xc + (kd * HP + kh + SH) * WP + kw) : v0;
                    const floatv v2 = ROWS > 2 ? VLOAD(0, xc + (kd * HP + kh + 2 * SH) * WP + kw) : v0;
                    const floatv v3 = ROWS > 3 ? VLOAD(0, xc + (kd * HP + kh + 3 * SH) * WP + kw) : v0;
                    REP(COB, TAP)
                }
    }

    /* Store: whole vectors inside the row, element by element at its end. */
    const int full = x0 + VEC <= WO;
#define STORE_ROW(r, c)                                                                       \
    if (oh0 + (r) < HO) {                                                                    \
        floatv v = a##r##_##c;                                                               \
        if (has_bias) v += (floatv)(bias[co0 + (c)]);                                        \
        if (OUT_RELU) v = fmax(v, (floatv)(0.0f));                                           \
        __global float *dst = y + ((((size_t)n * CO + co0 + (c)) * DO + od) * HO + oh0 + (r)) * WO + x0; \
        if (full) VSTORE(v, 0, dst);                                                         \
        else {                                                                               \
            float tmp[VEC];                                                                  \
            VSTORE(v, 0, tmp);                                                              \
            for (int l = 0; l < WO - x0; l++) dst[l] = tmp[l];                               \
        }                                                                                    \
    }
#define STORE(c) ROWS_DO(STORE_ROW, c)
    REP(COB, STORE)
#undef STORE
#undef STORE_ROW
}

/* ---- fast forward, flattened planes (h stride 1) -------------------------- */
/* Same as conv3d_fwd_fast, but a vector runs along the output plane flattened
 * with the padded row pitch WP: position p = oh*WP + ox, ox < WP, so one
 * vector may span rows and only ox >= WO lanes (WP - WO per row) are wasted,
 * instead of rounding every row up to whole vectors (11 of 16 lanes used at
 * W = 11).  Input taps are then at p + (kd*HP + kh)*WP + kw for any p.
 * ROWS here is the number of consecutive vectors per work-item.
 * Global (ceil(HO*WP / (VEC*ROWS)), 1, N*(CO/COB)*DO). */
#define FLAT_OUT (HO * WP)
#define FLAT_BLOCKS ((FLAT_OUT + VEC * ROWS - 1) / (VEC * ROWS))
__kernel void conv3d_fwd_flat(__global const float *xp, __global const float *w, __global const float *bias,
                              __global float *y, int has_bias)
{
    const int p0 = get_global_id(0) * VEC * ROWS;
    const int od = get_global_id(2) % DO, cb = (get_global_id(2) / DO) % (CO / COB);
    const int n = get_global_id(2) / (DO * (CO / COB));
    const int co0 = cb * COB;

    REP(COB, DECL)

    __global const float *xpos = xp + ((size_t)n * CI * DP + (size_t)od * SD) * HP * WP + p0;
    __global const float *wco = w + (size_t)co0 * CI * KVOL;
    for (int ci = 0; ci < CI; ci++) {
        __global const float *xc = xpos + (size_t)ci * DP * HP * WP;
        __global const float *wc = wco + ci * KVOL;
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
                    const int tap = (kd * KH + kh) * KW + kw;
                    const floatv v0 = VLOAD(0, xc + (kd * HP + kh) * WP + kw);
                    const floatv v1 = ROWS > 1 ? VLOAD(0, xc + (kd * HP + kh) * WP + kw + VEC) : v0;
                    const floatv v2 = ROWS > 2 ? VLOAD(0, xc + (kd * HP + kh) * WP + kw + 2 * VEC) : v0;
                    const floatv v3 = ROWS > 3 ? VLOAD(0, xc + (kd * HP + kh) * WP + kw + 3 * VEC) : v0;
                    REP(COB, TAP)
                }
    }

    /* Store: a vector inside one row's valid part goes out whole; one that
     * crosses a row end goes lane by lane, keeping (oh, ox) with ox < WO. */
    __global float *yplane = y + (((size_t)n * CO + co0) * DO + od) * HO * WO;
#define STORE_VEC(r, c)                                                                     \
    {                                                                                      \
        floatv v = a##r##_##c + (floatv)(has_bias ? bias[co0 + (c)] : 0.0f);                \
        if (OUT_RELU) v = fmax(v, (floatv)(0.0f));                                         \
        __global float *dst = yplane + (size_t)(c) * DO * HO * WO;                         \
        const int pr = p0 + (r) * VEC, ohr = pr / WP, oxr = pr % WP;                       \
        if (oxr + VEC <= WO && ohr < HO) VSTORE(v, 0, dst + ohr * WO + oxr);               \
        else {                                                                             \
            float tmp[VEC];                                                                \
            VSTORE(v, 0, tmp);                                                            \
            int oh = ohr, ox = oxr;                                                        \
            for (int l = 0; l < VEC; l++) {                                                \
                if (oh < HO && ox < WO) dst[oh * WO + ox] = tmp[l];                        \
                ox++;                                                                      \
                if (ox == WP) ox = 0, oh++;                                                \
            }                                                                              \
        }                                                                                  \
    }
#define STORE(c) ROWS_DO(STORE_VEC, c)
    REP(COB, STORE)
#undef STORE
#undef STORE_VEC
}

/* ---- fast forward + ReLU + 2x2x2 max pool (eval-mode fusion) ------------- */
/* yp (N, CO, DO/2, HO/2, WO/2) = maxpool(2)(max(conv(xp, w) + bias, 0)) and
 * argmax (same shape): each window's arg max as an offset in the (DO, HO,
 * WO) plane, as maxpool3d_forward_w2 (cl/pool.cl) finds it (planes, rows,
 * then even and odd columns; the first of equal values; NaN wins), or -1
 * where the max is not > 0, for maxpool3d_backward_w2_gated_padded.  The
 * conv's own output, the largest tensor of a step (29 MB for ref4's first
 * layer), is never stored nor read back.  Rows and planes past 2 * (HO/2)
 * and 2 * (DO/2) are not computed.  Global (ceil(WO/VEC), HO/2,
 * N*(CO/PCOB)*(DO/2)); a work-item computes PCOB channels x 2 planes x 2
 * rows of VEC columns (4*PCOB accumulators).  Only in the build with
 * -DPCOB (nfv_conv3d_forward_relu_maxpool2): other layers' builds, whose
 * output may be thinner than 2, do not carry it. */
#if defined(PCOB) && DO >= 2 && HO >= 2 && WO >= 2
#if VEC == 4
#define halfv float2
#define halfiv int2
#define HLANES ((int2)(0, 1))
#elif VEC == 8
#define halfv float4
#define halfiv int4
#define HLANES ((int4)(0, 1, 2, 3))
#elif VEC == 16
#define halfv float8
#define halfiv int8
#define HLANES ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#endif
#define POD (DO / 2)
#define POH (HO / 2)
#define POW (WO / 2)
#ifdef halfv
#define TAP4(c) TAPR(0, c) TAPR(1, c) TAPR(2, c) TAPR(3, c)
/* Window position k = 2*kd + kh of the 2x2 (plane, row) block: even then odd columns. */
#define POOL_TAKE(r, k)                                                                      \
    {                                                                                        \
        const halfv e = (r).even, o = (r).odd;                                               \
        const int code = (((k) >> 1) * HO + ((k) & 1)) * WO;                                 \
        halfiv take = isgreater(e, best) | isnan(e);                                         \
        best = select(best, e, take);                                                        \
        off = select(off, (halfiv)(code), take);                                             \
        take = isgreater(o, best) | isnan(o);                                                \
        best = select(best, o, take);                                                        \
        off = select(off, (halfiv)(code + 1), take);                                         \
    }
#define POOL_STORE(c)                                                                        \
    {                                                                                        \
        const floatv bb = (floatv)(has_bias ? bias[co0 + (c)] : 0.0f);                       \
        halfv best = (halfv)(-INFINITY);                                                     \
        halfiv off = (halfiv)(0);                                                            \
        POOL_TAKE(fmax(a0_##c + bb, (floatv)(0.0f)), 0)                                      \
        POOL_TAKE(fmax(a1_##c + bb, (floatv)(0.0f)), 1)                                      \
        POOL_TAKE(fmax(a2_##c + bb, (floatv)(0.0f)), 2)                                      \
        POOL_TAKE(fmax(a3_##c + bb, (floatv)(0.0f)), 3)                                      \
        /* -1 where the window's max is not > 0: the ReLU passed no gradient */             \
        const halfiv idx = select((halfiv)(-1), off + (od0 * HO + oh0) * WO + 2 * ow0 + 2 * HLANES, \
                                  isgreater(best, (halfv)(0.0f)));                           \
        const size_t o = ((((size_t)n * CO + co0 + (c)) * POD + pd) * POH + ph) * POW + ow0;  \
        if (ow0 + VEC / 2 <= POW) {                                                          \
            NFV_CAT(vstore, NFV_CAT(HALF_, VEC))(best, 0, yp + o);                           \
            NFV_CAT(vstore, NFV_CAT(HALF_, VEC))(idx, 0, argmax + o);                        \
        } else {                                                                             \
            float bt[VEC / 2];                                                               \
            int it[VEC / 2];                                                                 \
            NFV_CAT(vstore, NFV_CAT(HALF_, VEC))(best, 0, bt);                               \
            NFV_CAT(vstore, NFV_CAT(HALF_, VEC))(idx, 0, it);                                \
            for (int l = 0; l < POW - ow0; l++) yp[o + l] = bt[l], argmax[o + l] = it[l];    \
        }                                                                                    \
    }
#define HALF_4 2
#define HALF_8 4
#define HALF_16 8
__kernel void conv3d_fwd_relu_pool2(__global const float *xp, __global const float *w, __global const float *bias,
                                    __global float *yp, __global int *argmax, int has_bias)
{
    const int xb = get_global_id(0), ph = get_global_id(1);
    const int pd = get_global_id(2) % POD, cb = (get_global_id(2) / POD) % (CO / PCOB);
    const int n = get_global_id(2) / (POD * (CO / PCOB));
    const int x0 = xb * VEC, ow0 = x0 / 2, oh0 = 2 * ph, od0 = 2 * pd, co0 = cb * PCOB;

    REP(PCOB, DECL)

    __global const float *xrow = xp + (size_t)n * CI * DP * HP * WP + ((size_t)od0 * SD * HP + oh0 * SH) * WP + x0;
    __global const float *wco = w + (size_t)co0 * CI * KVOL;
    for (int ci = 0; ci < CI; ci++) {
        __global const float *xc = xrow + (size_t)ci * DP * HP * WP;
        __global const float *wc = wco + ci * KVOL;
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
                    const int tap = (kd * KH + kh) * KW + kw;
                    __global const float *t = xc + (kd * HP + kh) * WP + kw;
                    /* v0, v1: plane od0, rows oh0 and oh0 + 1; v2, v3: plane od0 + 1 */
                    const floatv v0 = VLOAD(0, t), v1 = VLOAD(0, t + SH * WP);
                    const floatv v2 = VLOAD(0, t + SD * HP * WP), v3 = VLOAD(0, t + SD * HP * WP + SH * WP);
                    REP(PCOB, TAP4)
                }
    }
    REP(PCOB, POOL_STORE)
}
#endif /* halfv */
#endif /* PCOB */

/* ---- fast forward, one output channel, marching along d ------------------ */
/* y (N, 1, DO, HO, WO) from xp in the channel-rows layout (N, DP, HP, CI, WP):
 * each padded row holds the CI channels' rows one after another.  CO = 1,
 * SD = SH = 1: the input gradient of a 1-channel first layer (CI here = the
 * layer's output channels), or a forward into one channel.
 *
 * Why: with the planar layout each work-item of the row kernel reads CI
 * channels x KD planes, CI * KD streams megabytes apart, and conv1's input
 * gradient ran at 80-90 GFLOP/s (bench-kernels, "bwd-input staged") with its
 * loop FMA-dense: the loads, not the arithmetic, were waiting.  Here the CI
 * rows a tap reads are one contiguous run, and a work-item marches along d
 * through MARCH output planes: input plane j feeds output planes j - kd for
 * every kd, so each input row is loaded once per work-item ((ROWS + KH - 1)
 * x KW loads per channel and plane for ROWS x KVOL FMAs) into KD x ROWS
 * accumulators, of which the oldest plane is complete and stored after each
 * step.  Measured on PoCL (AVX-512), same kernel, planar vs channel rows:
 * 54-59 -> 200-225 GFLOP/s.
 *
 * Global (ceil(WO/VEC), ceil(HO/ROWS), N * ceil(DO/MARCH)); a work-item
 * computes output planes chunk*MARCH .. +MARCH of ROWS rows of VEC columns
 * (its first KD - 1 steps fill the accumulators).  Reads reach KD - 1 planes
 * past its chunk (at most DP - 1) and ROWS - 1 channel-row groups past HP
 * (slack).  Only in builds with -DMARCH (nfv_kernel_config.conv_march). */
#if defined(MARCH) && MARCH > 0 && CO == 1 && SD == 1 && SH == 1
#define MARCH_CHUNKS ((DO + MARCH - 1) / MARCH)
__kernel void conv3d_fwd_co1(__global const float *xp, __global const float *w, __global const float *bias,
                             __global float *y, int has_bias)
{
    const int xb = get_global_id(0), ohb = get_global_id(1);
    const int chunk = get_global_id(2) % MARCH_CHUNKS, n = get_global_id(2) / MARCH_CHUNKS;
    const int x0 = xb * VEC, oh0 = ohb * ROWS, od_first = chunk * MARCH;
    const int od_end = min(DO, od_first + MARCH);
    const int full = x0 + VEC <= WO;
    /* acc[kd][r]: output plane j - kd (j the input plane of the step), row oh0 + r */
    floatv acc[KD][ROWS];
#pragma unroll
    for (int s = 0; s < KD; s++)
#pragma unroll
        for (int r = 0; r < ROWS; r++) acc[s][r] = (floatv)(0.0f);
    __global const float *xn = xp + (size_t)n * CI * DP * HP * WP + (size_t)oh0 * CI * WP + x0;
    for (int j = od_first; j < od_end + KD - 1; j++) {
        for (int ci = 0; ci < CI; ci++) {
            __global const float *xc = xn + ((size_t)j * HP * CI + ci) * WP;
            __global const float *wc = w + ci * KVOL;
#pragma unroll
            for (int i = 0; i < ROWS + KH - 1; i++)
#pragma unroll
                for (int kw = 0; kw < KW; kw++) {
                    const floatv v = VLOAD(0, xc + i * CI * WP + kw);
#pragma unroll
                    for (int kd = 0; kd < KD; kd++)
#pragma unroll
                        for (int r = 0; r < ROWS; r++) {
                            const int kh = i - r; /* constant after unrolling */
                            if (kh >= 0 && kh < KH)
                                acc[kd][r] = MAC((floatv)(wc[(kd * KH + kh) * KW + kw]), v, acc[kd][r]);
                        }
                }
        }
        const int od = j - (KD - 1);
        if (od >= od_first) {
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                if (oh0 + r >= HO) continue;
                floatv v = acc[KD - 1][r];
                if (has_bias) v += (floatv)(bias[0]);
                if (OUT_RELU) v = fmax(v, (floatv)(0.0f));
                __global float *dst = y + (((size_t)n * DO + od) * HO + oh0 + r) * WO + x0;
                if (full) VSTORE(v, 0, dst);
                else {
                    float tmp[VEC];
                    VSTORE(v, 0, tmp);
                    for (int l = 0; l < WO - x0; l++) dst[l] = tmp[l];
                }
            }
        }
        /* the next step's input plane j + 1 starts output plane j + 1 in acc[0] */
#pragma unroll
        for (int s = KD - 1; s > 0; s--)
#pragma unroll
            for (int r = 0; r < ROWS; r++) acc[s][r] = acc[s - 1][r];
#pragma unroll
        for (int r = 0; r < ROWS; r++) acc[0][r] = (floatv)(0.0f);
    }
}
#endif /* MARCH */

