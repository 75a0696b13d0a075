/* Transformation-robustness transforms and their exact adjoints.
 * Volumes are (N, 1, D, H, W) row-major; see include/neurofv/vis_ops.h.
 * Bandwidth-bound: the padding kernels take one work-item per output voxel,
 * the jitter and the warps VEC consecutive voxels of a row. */

/* global: (Wo, Ho, N*Do).  y (N,1,D+2p0,H+2p1,W+2p2) = pad(x (N,1,D,H,W)). */
__kernel void pad_forward(__global const float *x, __global float *y, int D, int H, int W, int p0, int p1, int p2,
                          int replicate, float value)
{
    int Wo = W + 2 * p2, Ho = H + 2 * p1, Do = D + 2 * p0;
    int ox = get_global_id(0), oy = get_global_id(1), nz = get_global_id(2);
    int n = nz / Do, oz = nz - n * Do;
    int z = oz - p0, y_ = oy - p1, x_ = ox - p2;
    long out = (((long)n * Do + oz) * Ho + oy) * Wo + ox;
    int inside = z >= 0 && z < D && y_ >= 0 && y_ < H && x_ >= 0 && x_ < W;
    if (replicate) {
        z = clamp(z, 0, D - 1);
        y_ = clamp(y_, 0, H - 1);
        x_ = clamp(x_, 0, W - 1);
        inside = 1;
    }
    y[out] = inside ? x[(((long)n * D + z) * H + y_) * W + x_] : value;
}

/* Range of padded indices that read input index i along an axis of length
 * len padded by p: [i+p, i+p] inside, widened to the padded border at the
 * edges when replicating. */
inline int2 pad_range(int i, int len, int p, int replicate)
{
    int lo = i + p, hi = i + p;
    if (replicate && i == 0) lo = 0;
    if (replicate && i == len - 1) hi = len + 2 * p - 1;
    return (int2)(lo, hi);
}

/* global: (W, H, N*D).  dx (N,1,D,H,W) = pad^T dy (N,1,D+2p0,H+2p1,W+2p2). */
__kernel void pad_adjoint(__global const float *dy, __global float *dx, int D, int H, int W, int p0, int p1, int p2,
                          int replicate)
{
    int Wo = W + 2 * p2, Ho = H + 2 * p1, Do = D + 2 * p0;
    int x_ = get_global_id(0), y_ = get_global_id(1), nz = get_global_id(2);
    int n = nz / D, z = nz - n * D;
    int2 rz = pad_range(z, D, p0, replicate), ry = pad_range(y_, H, p1, replicate), rx = pad_range(x_, W, p2, replicate);
    float acc = 0.0f;
    for (int oz = rz.x; oz <= rz.y; oz++)
        for (int oy = ry.x; oy <= ry.y; oy++)
            for (int ox = rx.x; ox <= rx.y; ox++) acc += dy[(((long)n * Do + oz) * Ho + oy) * Wo + ox];
    dx[(((long)n * D + z) * H + y_) * W + x_] = acc;
}

/* ---- affine warp -------------------------------------------------------- */

/* The adjoint must recompute the forward's sample points bit for bit (it
 * decides which outputs a voxel received and with what weight), so no
 * contraction into FMAs that one kernel might get and the other not. */
#pragma OPENCL FP_CONTRACT OFF

#ifndef VEC
#define VEC 16
#endif
#include "common.cl"

/* ---- integer jitter ------------------------------------------------------ */

/* global: N*D*H*ceil(W / VEC) (FLAT_BLOCK).  y[n,z,y,x] = x[n, z-s0, y-s1,
 * x-s2] (0 outside), shift (N, 3) ints; sign = -1 applies the adjoint (shift
 * back).  Each work-item VEC consecutive outputs of one row, read from one
 * row of x shifted by s2: a whole vector inside it, lane by lane at its
 * ends.  (One work-item per voxel on a (W, H, N*D) range, PoCL's own
 * work-group size, ran 10x slower per voxel at batch 8 than at batch 1: 25
 * ms a launch in a batch-8 visualization, more than the fused forward.) */
__kernel void jitter(__global const float *x, __global float *y, __global const int *shift, int D, int H, int W,
                     int sign, int N)
{
    FLAT_BLOCK(W, H, N, D, x0, oy, nz);
    const int n = nz / D, oz = nz - n * D;
    const int z = oz - sign * shift[3 * n], sy = oy - sign * shift[3 * n + 1];
    const int s0 = x0 - sign * shift[3 * n + 2]; /* the source column of lane 0 */
    __global float *dst = y + (((long)n * D + oz) * H + oy) * W + x0;
    const int count = min(VEC, W - x0);
    if (z < 0 || z >= D || sy < 0 || sy >= H) {
        store_lanes((floatv)(0.0f), dst, count);
        return;
    }
    __global const float *src = x + (((long)n * D + z) * H + sy) * W;
    if (count == VEC && s0 >= 0 && s0 + VEC <= W) {
        VSTORE(VLOAD(0, src + s0), 0, dst);
        return;
    }
    for (int l = 0; l < count; l++) dst[l] = s0 + l >= 0 && s0 + l < W ? src[s0 + l] : 0.0f;
}

/* Per-sample parameters (WARP_STRIDE floats each), built on the host:
 *   [0..12)  the forward 3x4 [A | b] (q = A p + b),
 *   [12..24) its inverse,
 *   [24..27) half-widths of the box of outputs an input voxel reaches,
 *   [27..30) 1 / A[a][2] (0 where A[a][2] = 0),
 *   [30]     how many consecutive x candidates cover one output row's interval.
 * Sample point of output (pz, py, px) on axis a, computed by both kernels in
 * exactly this order: ((A[a][0] pz + b[a]) + A[a][1] py) + A[a][2] px, and the
 * weight of a corner c (per axis) as 1 - |q - c|, so that the adjoint can
 * recompute both bit for bit. */
#define WARP_STRIDE 32

/* global: N*Do*Ho*ceil(Wo / VEC) (FLAT_BLOCK).  y (N,1,Do,Ho,Wo) = trilinear sample of
 * x (N,1,Di,Hi,Wi) at q = A p + b, corners outside x count as 0.  Each
 * work-item VEC consecutive outputs of one row: q is affine in x, so the
 * arithmetic is vector and only the 8 corner loads are gathers.  Corners
 * outside x get weight 0 and a clamped (valid) address. */
__kernel void warp_forward(__global const float *x, __global float *y, __global const float *mats, int Di, int Hi,
                           int Wi, int Do, int Ho, int Wo, int N)
{
    FLAT_BLOCK(Wo, Ho, N, Do, ox0, oy, nz);
    int n = nz / Do, oz = nz - n * Do;
    __global const float *m = mats + WARP_STRIDE * n;
    floatv fx = convert_floatv(ox0 + LANES);
    float fz = (float)oz, fy = (float)oy;
    floatv qz = ((m[0] * fz + m[3]) + m[1] * fy) + m[2] * fx;
    floatv qy = ((m[4] * fz + m[7]) + m[5] * fy) + m[6] * fx;
    floatv qx = ((m[8] * fz + m[11]) + m[9] * fy) + m[10] * fx;
    /* Clamp before converting so far-away points stay representable; they
     * remain outside. */
    floatv flz = clamp(floor(qz), (floatv)(-2.0f), (floatv)((float)Di + 1.0f)), fly = clamp(floor(qy), (floatv)(-2.0f), (floatv)((float)Hi + 1.0f)),
           flx = clamp(floor(qx), (floatv)(-2.0f), (floatv)((float)Wi + 1.0f));
    intv z0 = convert_intv(flz), y0 = convert_intv(fly), x0 = convert_intv(flx);
    intv z1 = z0 + 1, y1 = y0 + 1, x1 = x0 + 1;
    /* Per-axis weights 1 - |q - c| of the two corners, 0 outside the volume. */
    floatv zero = 0.0f;
    floatv wz0 = select(zero, 1.0f - fabs(qz - flz), z0 >= 0 && z0 < Di);
    floatv wz1 = select(zero, 1.0f - fabs(qz - (flz + 1.0f)), z1 >= 0 && z1 < Di);
    floatv wy0 = select(zero, 1.0f - fabs(qy - fly), y0 >= 0 && y0 < Hi);
    floatv wy1 = select(zero, 1.0f - fabs(qy - (fly + 1.0f)), y1 >= 0 && y1 < Hi);
    floatv wx0 = select(zero, 1.0f - fabs(qx - flx), x0 >= 0 && x0 < Wi);
    floatv wx1 = select(zero, 1.0f - fabs(qx - (flx + 1.0f)), x1 >= 0 && x1 < Wi);
    intv cz0 = clamp(z0, (intv)(0), (intv)(Di - 1)) * Hi, cz1 = clamp(z1, (intv)(0), (intv)(Di - 1)) * Hi;
    intv cy0 = clamp(y0, (intv)(0), (intv)(Hi - 1)), cy1 = clamp(y1, (intv)(0), (intv)(Hi - 1));
    intv cx0 = clamp(x0, (intv)(0), (intv)(Wi - 1)), cx1 = clamp(x1, (intv)(0), (intv)(Wi - 1));
    intv r00 = (cz0 + cy0) * Wi, r01 = (cz0 + cy1) * Wi, r10 = (cz1 + cy0) * Wi, r11 = (cz1 + cy1) * Wi;
    __global const float *s = x + (long)n * Di * Hi * Wi;
    floatv w00 = wz0 * wy0, w01 = wz0 * wy1, w10 = wz1 * wy0, w11 = wz1 * wy1;
    floatv acc = w00 * wx0 * GATHER(s, r00 + cx0);
    acc += w00 * wx1 * GATHER(s, r00 + cx1);
    acc += w01 * wx0 * GATHER(s, r01 + cx0);
    acc += w01 * wx1 * GATHER(s, r01 + cx1);
    acc += w10 * wx0 * GATHER(s, r10 + cx0);
    acc += w10 * wx1 * GATHER(s, r10 + cx1);
    acc += w11 * wx0 * GATHER(s, r11 + cx0);
    acc += w11 * wx1 * GATHER(s, r11 + cx1);
    store_lanes(acc, y + (((long)n * Do + oz) * Ho + oy) * Wo + ox0, Wo - ox0);
}

/* Weight the forward gave input coordinate v (per axis) from sample
 * coordinate q: 1 - |q - v| as the forward computes it when v is floor(q) or
 * floor(q) + 1, i.e. v - 1 <= q < v + 1; negative or 0 outside, where fmax
 * makes it 0, which is also the range test.  (At q = v + 1 exactly the
 * forward did not use v, and the weight here is 0.) */
inline floatv corner_weight(floatv q, floatv v)
{
    return fmax(1.0f - fabs(q - v), 0.0f);
}

/* global: N*Di*Hi*ceil(Wi / VEC) (FLAT_BLOCK).  dx (N,1,Di,Hi,Wi) = warp^T dy
 * (N,1,Do,Ho,Wo) inside the box z0..z1, y0..y1, x0..x1 (half-open; 0
 * outside: a caller that masks dx asks only for the mask's box), as a
 * gather (deterministic, no atomics), VEC consecutive input voxels v per
 * work-item.  The outputs p that gave v a weight have
 * v - 1 <= q(p) < v + 1 on every axis; they lie in the box centre A^-1 (v - b),
 * half-widths h (host).  For each output row (pz, py) of that box, the px
 * with |q_a - v_a| < 1 form an interval (one per axis a, from A[a][2]); at
 * most Kx consecutive integers cover their intersection.  Each candidate's q
 * is recomputed exactly as the forward did and tested, so the box and
 * interval only need to contain the contributing outputs (slack 1e-3). */
__kernel void warp_adjoint(__global const float *dy, __global float *dx, __global const float *mats, int Di, int Hi,
                           int Wi, int Do, int Ho, int Wo, int N, int z0, int z1, int y0, int y1, int x0, int x1)
{
    FLAT_BLOCK(Wi, Hi, N, Di, vx0, vy, nz);
    int n = nz / Di, vz = nz - n * Di;
    /* Only the box [z0, z1) x [y0, y1) x [x0, x1) is wanted: 0 elsewhere. */
    if (vz < z0 || vz >= z1 || vy < y0 || vy >= y1 || vx0 + VEC <= x0 || vx0 >= x1) {
        store_lanes((floatv)(0.0f), dx + (((long)n * Di + vz) * Hi + vy) * Wi + vx0, Wi - vx0);
        return;
    }
    __global const float *m = mats + WARP_STRIDE * n;
    __global const float *inv = m + 12;
    floatv vx = convert_floatv(vx0 + LANES);
    float fvz = (float)vz, fvy = (float)vy;
    floatv cz = (inv[0] * fvz + inv[1] * fvy + inv[3]) + inv[2] * vx;
    floatv cy = (inv[4] * fvz + inv[5] * fvy + inv[7]) + inv[6] * vx;
    float hz = m[24], hy = m[25], rz = m[27], ry = m[28], rx = m[29];
    int Kz = (int)floor(2.0f * hz) + 1, Ky = (int)floor(2.0f * hy) + 1, Kx = (int)m[30];
    intv pz0 = convert_intv(clamp(ceil(cz - hz), (floatv)(-1.0f), (floatv)((float)Do))),
         py0 = convert_intv(clamp(ceil(cy - hy), (floatv)(-1.0f), (floatv)((float)Ho)));
    __global const float *g = dy + (long)n * Do * Ho * Wo;
    floatv acc = 0.0f;
    for (int kz = 0; kz < Kz; kz++) {
        intv pz = pz0 + kz;
        floatv fpz = convert_floatv(pz);
        intv zin = pz >= 0 && pz < Do;
        intv rowz = clamp(pz, (intv)(0), (intv)(Do - 1)) * Ho;
        floatv tz = m[0] * fpz + m[3], ty = m[4] * fpz + m[7], tx = m[8] * fpz + m[11];
        for (int ky = 0; ky < Ky; ky++) {
            intv py = py0 + ky;
            floatv fpy = convert_floatv(py);
            intv rin = zin && py >= 0 && py < Ho;
            intv row = (rowz + clamp(py, (intv)(0), (intv)(Ho - 1))) * Wo;
            /* Row parts of q, as the forward computes them. */
            floatv bz = tz + m[1] * fpy, by = ty + m[5] * fpy, bx = tx + m[9] * fpy;
            /* px interval where every |q_a - v_a| < 1 (axes with A[a][2] = 0
             * do not limit px: the exact test below decides). */
            floatv lo = -1e30f, hi = 1e30f;
            if (rz != 0.0f) {
                floatv e1 = (fvz - 1.0f - bz) * rz, e2 = (fvz + 1.0f - bz) * rz;
                lo = fmax(lo, fmin(e1, e2));
                hi = fmin(hi, fmax(e1, e2));
            }
            if (ry != 0.0f) {
                floatv e1 = (fvy - 1.0f - by) * ry, e2 = (fvy + 1.0f - by) * ry;
                lo = fmax(lo, fmin(e1, e2));
                hi = fmin(hi, fmax(e1, e2));
            }
            if (rx != 0.0f) {
                floatv e1 = (vx - 1.0f - bx) * rx, e2 = (vx + 1.0f - bx) * rx;
                lo = fmax(lo, fmin(e1, e2));
                hi = fmin(hi, fmax(e1, e2));
            }
            const floatv first = clamp(ceil(lo - 1e-3f), (floatv)(-1.0f), (floatv)((float)Wo));
            const floatv last = clamp(floor(hi + 1e-3f), (floatv)(-2.0f), (floatv)((float)Wo));
            /* Candidates up to the widest lane's interval, never more than
             * Kx (the whole row's bound); past a lane's own interval the
             * exact weights below are 0. */
            const int count = min(Kx, (int)vmaxf(last - first) + 1);
            intv px0 = convert_intv(first);
            for (int kx = 0; kx < count; kx++) {
                intv px = px0 + kx;
                floatv fpx = convert_floatv(px);
                floatv qz = bz + m[2] * fpx, qy = by + m[6] * fpx, qx = bx + m[10] * fpx;
                intv ok = rin && px >= 0 && px < Wo;
                floatv w = corner_weight(qz, (floatv)fvz) * corner_weight(qy, (floatv)fvy) * corner_weight(qx, vx);
                floatv val = GATHER(g, row + clamp(px, (intv)(0), (intv)(Wo - 1)));
                acc += select((floatv)0.0f, w * val, ok);
            }
        }
    }
    const intv lane = vx0 + LANES;
    acc = select((floatv)(0.0f), acc, lane >= x0 && lane < x1);
    store_lanes(acc, dx + (((long)n * Di + vz) * Hi + vy) * Wi + vx0, Wi - vx0);
}
