/* Transformation-robustness transforms and their exact adjoints.
 * Volumes are (N, 1, D, H, W) row-major; see include/neurofv/vis_ops.h.
 * One work-item per output voxel: these are bandwidth-bound. */

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

/* global: (W, H, N*D).  y[n,z,y,x] = x[n, z-s0, y-s1, x-s2] (0 outside), shift
 * (N, 3) ints; sign = -1 applies the adjoint (shift back). */
__kernel void jitter(__global const float *x, __global float *y, __global const int *shift, int D, int H, int W,
                     int sign)
{
    int ox = get_global_id(0), oy = get_global_id(1), nz = get_global_id(2);
    int n = nz / D, oz = nz - n * D;
    int z = oz - sign * shift[3 * n], y_ = oy - sign * shift[3 * n + 1], x_ = ox - sign * shift[3 * n + 2];
    int inside = z >= 0 && z < D && y_ >= 0 && y_ < H && x_ >= 0 && x_ < W;
    y[(((long)n * D + oz) * H + oy) * W + ox] = inside ? x[(((long)n * D + z) * H + y_) * W + x_] : 0.0f;
}

/* Sample point q = A p + b of output voxel p; m = 12 floats (row-major 3x4).
 * Shared by the warp and its adjoint so both compute the same q. */
inline float3 warp_point(__global const float *m, float pz, float py, float px)
{
    return (float3)(m[0] * pz + m[1] * py + m[2] * px + m[3], m[4] * pz + m[5] * py + m[6] * px + m[7],
                    m[8] * pz + m[9] * py + m[10] * px + m[11]);
}

/* global: (Wo, Ho, N*Do).  y (N,1,Do,Ho,Wo) = trilinear sample of x
 * (N,1,Di,Hi,Wi) at q = A p + b, corners outside x count as 0.
 * mats: (N, 24) floats, per sample the forward 3x4 then the inverse 3x4. */
__kernel void warp_forward(__global const float *x, __global float *y, __global const float *mats, int Di, int Hi,
                           int Wi, int Do, int Ho, int Wo)
{
    int ox = get_global_id(0), oy = get_global_id(1), nz = get_global_id(2);
    int n = nz / Do, oz = nz - n * Do;
    float3 q = warp_point(mats + 24 * n, (float)oz, (float)oy, (float)ox);
    float3 f = floor(q);
    float3 t = q - f;
    int z0 = (int)f.x, y0 = (int)f.y, x0 = (int)f.z;
    __global const float *s = x + (long)n * Di * Hi * Wi;
    float acc = 0.0f;
    for (int c = 0; c < 8; c++) {
        int dz = c >> 2, dy = (c >> 1) & 1, dx = c & 1;
        int z = z0 + dz, yy = y0 + dy, xx = x0 + dx;
        if (z < 0 || z >= Di || yy < 0 || yy >= Hi || xx < 0 || xx >= Wi) continue;
        float w = (dz ? t.x : 1.0f - t.x) * (dy ? t.y : 1.0f - t.y) * (dx ? t.z : 1.0f - t.z);
        acc += w * s[((long)z * Hi + yy) * Wi + xx];
    }
    y[(((long)n * Do + oz) * Ho + oy) * Wo + ox] = acc;
}

/* global: (Wi, Hi, N*Di).  dx (N,1,Di,Hi,Wi) = warp^T dy (N,1,Do,Ho,Wo).
 * The forward gave input voxel v the weight prod_a (1 - |q_a - v_a|) from
 * every output p with |q - v| < 1 on each axis.  Those p lie in
 * A^-1 ((v - 1, v + 1)^3 - b): a parallelepiped whose bounding box is
 * centre c = A^-1 (v - b), half-width h_a = sum_b |A^-1_ab|.  Visiting that box
 * and recomputing q exactly as the forward did gives the exact transpose
 * without atomics. */
__kernel void warp_adjoint(__global const float *dy, __global float *dx, __global const float *mats, int Di, int Hi,
                           int Wi, int Do, int Ho, int Wo)
{
    int vx = get_global_id(0), vy = get_global_id(1), nz = get_global_id(2);
    int n = nz / Di, vz = nz - n * Di;
    __global const float *m = mats + 24 * n;
    __global const float *inv = m + 12;
    float3 v = (float3)((float)vz, (float)vy, (float)vx);
    float3 c = warp_point(inv, v.x, v.y, v.z);
    /* Half-widths, with a little slack for rounding: points on the box edge
     * have weight 0 anyway, the test |q - v| < 1 below is what decides. */
    float3 h = (float3)(fabs(inv[0]) + fabs(inv[1]) + fabs(inv[2]), fabs(inv[4]) + fabs(inv[5]) + fabs(inv[6]),
                        fabs(inv[8]) + fabs(inv[9]) + fabs(inv[10])) + 1e-3f;
    int zlo = max(0, (int)ceil(c.x - h.x)), zhi = min(Do - 1, (int)floor(c.x + h.x));
    int ylo = max(0, (int)ceil(c.y - h.y)), yhi = min(Ho - 1, (int)floor(c.y + h.y));
    int xlo = max(0, (int)ceil(c.z - h.z)), xhi = min(Wo - 1, (int)floor(c.z + h.z));
    __global const float *g = dy + (long)n * Do * Ho * Wo;
    float acc = 0.0f;
    for (int pz = zlo; pz <= zhi; pz++)
        for (int py = ylo; py <= yhi; py++)
            for (int px = xlo; px <= xhi; px++) {
                float3 q = warp_point(m, (float)pz, (float)py, (float)px);
                /* The forward's weight of corner v: 1 - t if v = floor(q), t if v = floor(q) + 1. */
                float3 f = floor(q);
                float3 t = q - f;
                float3 d = v - f;   /* 0 or 1 for the two corners the forward used */
                if (d.x != 0.0f && d.x != 1.0f) continue;
                if (d.y != 0.0f && d.y != 1.0f) continue;
                if (d.z != 0.0f && d.z != 1.0f) continue;
                float w = (d.x != 0.0f ? t.x : 1.0f - t.x) * (d.y != 0.0f ? t.y : 1.0f - t.y) *
                          (d.z != 0.0f ? t.z : 1.0f - t.z);
                acc += w * g[((long)pz * Ho + py) * Wo + px];
            }
    dx[(((long)n * Di + vz) * Hi + vy) * Wi + vx] = acc;
}
