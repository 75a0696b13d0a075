/* Feature-visualization penalties, brain mask and separable Gaussian blur.
 * Volumes are (N, 1, D, H, W) row-major; see include/neurofv/vis_ops.h.
 *
 * The penalties are bandwidth-bound and cheap next to the model: one
 * work-item per row (n, z, y) walks the W voxels of that row, accumulates the
 * gradient in place and writes the row's partial penalty; penalty_reduce then
 * sums the rows of each sample (Kahan-compensated, no fp64 needed). */

/* The penalty kind, mask and gradient presence are run-time arguments, not
 * -D options: the branches are uniform across the launch (free next to the
 * memory traffic) and one program serves every combination instead of 16
 * compiled variants (1-4 s each on PoCL). */
enum { PEN_L1 = 0, PEN_L2 = 1, PEN_TV = 2, PEN_TV_SQ = 3 };

/* Mask weight of voxel v (index inside one sample) of sample n. */
inline float mask_at(__global const float *mask, int has_mask, int mask_per_sample, long vol, int n, long v)
{
    return has_mask ? mask[(mask_per_sample ? (long)n * vol : 0) + v] : 1.0f;
}

/* Forward differences at (z, y, x) of one sample (base = its first voxel),
 * zero on the last plane of each axis. */
inline float3 tv_diffs(__global const float *s, int D, int H, int W, int z, int y, int x)
{
    long v = ((long)z * H + y) * W + x;
    float c = s[v];
    float dz = z + 1 < D ? s[v + (long)H * W] - c : 0.0f;
    float dy = y + 1 < H ? s[v + W] - c : 0.0f;
    float dx = x + 1 < W ? s[v + 1] - c : 0.0f;
    return (float3)(dz, dy, dx);
}

/* d(term)/d(difference) per unit difference: 1/t for smooth TV, 2 for squared. */
inline float tv_factor(int kind, float3 d, float eps)
{
    return kind == PEN_TV ? rsqrt(dot(d, d) + eps) : 2.0f;
}

inline float tv_value(int kind, float3 d, float eps)
{
    return kind == PEN_TV ? sqrt(dot(d, d) + eps) : dot(d, d);
}

/* global: (H, D, N).  x, grad (N, 1, D, H, W); rows (N*D*H) partial sums. */
__kernel void penalty_rows(int kind, __global const float *x, __global const float *mask, int has_mask,
                           int mask_per_sample, __global float *grad, int has_grad, __global float *rows, int D,
                           int H, int W, float weight, float eps)
{
    int y = get_global_id(0), z = get_global_id(1), n = get_global_id(2);
    long vol = (long)D * H * W;
    __global const float *s = x + n * vol;
    long row = ((long)z * H + y) * W;
    float sum = 0.0f;
    for (int i = 0; i < W; i++) {
        long v = row + i;
        float m = mask_at(mask, has_mask, mask_per_sample, vol, n, v);
        float g;
        if (kind == PEN_L1) {
            float xv = s[v];
            sum += m * fabs(xv);
            g = m * (xv > 0.0f ? 1.0f : (xv < 0.0f ? -1.0f : 0.0f));
        } else if (kind == PEN_L2) {
            float xv = s[v];
            sum += m * xv * xv;
            g = 2.0f * m * xv;
        } else {
            /* Term at v depends on x[v] and its three forward neighbours; x[v]
             * is also the forward neighbour of the terms at v - ez, v - ey, v - ex. */
            float3 d = tv_diffs(s, D, H, W, z, y, i);
            float f = m * tv_factor(kind, d, eps);
            sum += m * tv_value(kind, d, eps);
            g = -f * (d.x + d.y + d.z);
            if (z > 0) {
                float3 e = tv_diffs(s, D, H, W, z - 1, y, i);
                g += mask_at(mask, has_mask, mask_per_sample, vol, n, v - (long)H * W) *
                     tv_factor(kind, e, eps) * e.x;
            }
            if (y > 0) {
                float3 e = tv_diffs(s, D, H, W, z, y - 1, i);
                g += mask_at(mask, has_mask, mask_per_sample, vol, n, v - W) * tv_factor(kind, e, eps) * e.y;
            }
            if (i > 0) {
                float3 e = tv_diffs(s, D, H, W, z, y, i - 1);
                g += mask_at(mask, has_mask, mask_per_sample, vol, n, v - 1) * tv_factor(kind, e, eps) * e.z;
            }
        }
        if (has_grad) grad[n * vol + v] += weight * g;
    }
    rows[((long)n * D + z) * H + y] = sum;
}

/* global: (outputs).  value[o] = weight * sum of rows[o*count .. o*count + count). */
__kernel void penalty_reduce(__global const float *rows, int count, float weight, __global float *value)
{
    int o = get_global_id(0);
    __global const float *r = rows + (long)o * count;
    float sum = 0.0f, carry = 0.0f;
    for (int i = 0; i < count; i++) {
        float t = r[i] - carry;
        float s = sum + t;
        carry = (s - sum) - t;
        sum = s;
    }
    value[o] = weight * sum;
}

/* global: (numel).  t (N, 1, D, H, W) *= mask (vol or N*vol floats). */
__kernel void mask_apply(__global float *t, __global const float *mask, long vol, int mask_per_sample)
{
    long i = get_global_id(0);
    t[i] *= mask[mask_per_sample ? i : i % vol];
}

/* One axis of the separable blur.  global: (numel).  The axis has length len
 * and stride `stride` (elements).  coef = weights w[0..2R] (w[R] at offset 0)
 * followed by their prefix sums cum[0..2R+1] (cum[0] = 0, cum[m+1] = w[0..m]).
 *   forward:  out[i] = sum_k w[k] in[b(i + k)]  (b = clamp or zero outside)
 *   adjoint:  out[j] = sum_i A[i][j] in[i], A the forward's matrix; only the
 *             replicate edges differ from the forward (A[i][0] collects every
 *             k with i + k <= 0, A[i][len-1] every k with i + k >= len-1). */
__kernel void blur_axis(__global const float *in, __global float *out, __global const float *coef, int R,
                        int len, long stride, int replicate, int adjoint)
{
    long g = get_global_id(0);
    int i = (int)((g / stride) % len);
    long base = g - (long)i * stride;
    __global const float *w = coef;
    __global const float *cum = coef + 2 * R + 1;
    float acc = 0.0f;
    if (!replicate || (adjoint && i > 0 && i < len - 1)) {
        /* Zero boundary (self-adjoint) or an interior voxel of the replicate adjoint. */
        for (int k = -R; k <= R; k++) {
            int j = i + k;
            if (j >= 0 && j < len) acc += w[k + R] * in[base + (long)j * stride];
        }
    } else if (!adjoint) {
        for (int k = -R; k <= R; k++) {
            int j = clamp(i + k, 0, len - 1);
            acc += w[k + R] * in[base + (long)j * stride];
        }
    } else {
        /* Replicate adjoint at an edge voxel i (0 or len-1). */
        int lo = max(0, i - R), hi = min(len - 1, i + R);
        for (int j = lo; j <= hi; j++) {
            float a;
            if (len == 1) a = 1.0f;
            else if (i == 0) a = cum[min(R, -j) + R + 1];                 /* k in [-R, min(R, -j)] */
            else a = cum[2 * R + 1] - cum[max(-R, len - 1 - j) + R];      /* k in [max(-R, len-1-j), R] */
            acc += a * in[base + (long)j * stride];
        }
    }
    out[g] = acc;
}
