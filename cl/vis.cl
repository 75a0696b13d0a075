/* Feature-visualization penalties, brain mask and separable Gaussian blur.
 * Volumes are (N, 1, D, H, W) row-major; see include/neurofv/vis_ops.h.
 *
 * The penalties are bandwidth-bound and cheap next to the model: one
 * work-item per row (n, z, y) walks the W voxels of that row VEC at a time
 * (float vectors, borders by masks), accumulates the gradient in place and
 * writes the row's partial penalty; penalty_reduce then sums the rows of
 * each sample (Kahan-compensated, no fp64 needed). */

/* The penalty kind, mask and gradient presence are run-time arguments, not
 * -D options: the branches are uniform across the launch (free next to the
 * memory traffic) and one program serves every combination instead of 16
 * compiled variants (1-4 s each on PoCL). */
enum { PEN_L1 = 0, PEN_L2 = 1, PEN_TV = 2, PEN_TV_SQ = 3 };

#ifndef VEC
#define VEC 16
#endif
#include "common.cl"

/* VEC floats of a row of length W from x0: a vector load when the block is
 * whole, else a gather with clamped addresses (lanes past W are never stored). */
inline floatv load_block(__global const float *row, int x0, int W)
{
    if (x0 + VEC <= W) return VLOAD(0, row + x0);
    return GATHER(row, min(x0 + LANES, (intv)(W - 1)));
}

/* Not store_lanes: the same test as load_block's lets the compiler merge the
 * two branches of a load-modify-store. */
inline void store_block(__global float *row, int x0, int W, floatv v)
{
    if (x0 + VEC <= W) {
        VSTORE(v, 0, row + x0);
    } else {
        float t[VEC];
        VSTORE(v, 0, t);
        for (int i = 0; i < W - x0; i++) row[x0 + i] = t[i];
    }
}

/* Row (z, y) of one sample at x, shifted loads for the +-1 neighbours:
 * a vector load when the block lies inside the row, else a gather with
 * clamped addresses (lanes reading outside are masked by the caller). */
inline floatv load_at(__global const float *row, int x, int W)
{
    if (x >= 0 && x + VEC <= W) return VLOAD(0, row + x);
    return GATHER(row, clamp(x + LANES, (intv)(0), (intv)(W - 1)));
}

/* d(term)/d(difference) per unit difference: 1/t for smooth TV, 2 for squared. */
inline floatv tv_factor(int kind, floatv dz, floatv dy, floatv dx, float eps)
{
    return kind == PEN_TV ? rsqrt(dz * dz + dy * dy + dx * dx + eps) : (floatv)2.0f;
}

inline floatv tv_value(int kind, floatv dz, floatv dy, floatv dx, float eps)
{
    floatv q = dz * dz + dy * dy + dx * dx;
    return kind == PEN_TV ? sqrt(q + eps) : q;
}

/* global: N*D*H rounded up to the local size (one row each).  x, grad (N, 1,
 * D, H, W); rows (N*D*H) partial sums.  TV uses forward differences, zero on
 * the last plane of each axis; the term at v depends on x[v] and its three
 * forward neighbours, and x[v] is also the forward neighbour of the terms at
 * v - ez, v - ey, v - ex, which the gradient at v collects. */
__kernel void penalty_rows(int kind, __global const float *x, __global const float *mask, int has_mask,
                           int mask_per_sample, __global float *grad, int has_grad, __global float *rows, int D,
                           int H, int W, float weight, float eps, int N)
{
    long r = get_global_id(0);
    if (r >= (long)N * D * H) return;
    int nz = (int)(r / H), y = (int)(r - (long)nz * H);
    int n = nz / D, z = nz - n * D;
    long vol = (long)D * H * W, HW = (long)H * W;
    __global const float *s = x + n * vol;
    __global const float *ms = mask + (mask_per_sample ? n * vol : 0);
    long row = ((long)z * H + y) * W;
    /* Neighbour rows, clamped into the volume; their terms are masked below. */
    long rzp = ((long)min(z + 1, D - 1) * H + y) * W, rzm = ((long)max(z - 1, 0) * H + y) * W;
    long ryp = ((long)z * H + min(y + 1, H - 1)) * W, rym = ((long)z * H + max(y - 1, 0)) * W;
    long rzm_yp = ((long)max(z - 1, 0) * H + min(y + 1, H - 1)) * W;
    long rzp_ym = ((long)min(z + 1, D - 1) * H + max(y - 1, 0)) * W;
    float hz = z + 1 < D ? 1.0f : 0.0f, hy = y + 1 < H ? 1.0f : 0.0f;
    floatv sum = 0.0f;
    for (int x0 = 0; x0 < W; x0 += VEC) {
        intv xi = x0 + LANES;
        intv valid = xi < W;
        floatv m = has_mask ? load_at(ms + row, x0, W) : (floatv)1.0f;
        floatv c = load_at(s + row, x0, W);
        floatv g, term;
        if (kind == PEN_L1) {
            term = m * fabs(c);
            g = m * sign(c);
        } else if (kind == PEN_L2) {
            term = m * c * c;
            g = 2.0f * m * c;
        } else {
            floatv zero = 0.0f;
            intv xin = xi + 1 < W;
            floatv dz = hz * (load_at(s + rzp, x0, W) - c), dy = hy * (load_at(s + ryp, x0, W) - c);
            floatv dx = select(zero, load_at(s + row, x0 + 1, W) - c, xin);
            floatv f = m * tv_factor(kind, dz, dy, dx, eps);
            term = m * tv_value(kind, dz, dy, dx, eps);
            g = -f * (dz + dy + dx);
            if (z > 0) {
                /* Term at (z-1, y, x): its dz is c - a. */
                floatv a = load_at(s + rzm, x0, W);
                floatv ez = c - a, ey = hy * (load_at(s + rzm_yp, x0, W) - a);
                floatv ex = select(zero, load_at(s + rzm, x0 + 1, W) - a, xin);
                floatv ma = has_mask ? load_at(ms + rzm, x0, W) : (floatv)1.0f;
                g += ma * tv_factor(kind, ez, ey, ex, eps) * ez;
            }
            if (y > 0) {
                /* Term at (z, y-1, x): its dy is c - b. */
                floatv b = load_at(s + rym, x0, W);
                floatv ez = hz * (load_at(s + rzp_ym, x0, W) - b), ey = c - b;
                floatv ex = select(zero, load_at(s + rym, x0 + 1, W) - b, xin);
                floatv mb = has_mask ? load_at(ms + rym, x0, W) : (floatv)1.0f;
                g += mb * tv_factor(kind, ez, ey, ex, eps) * ey;
            }
            {
                /* Term at (z, y, x-1) for x > 0: its dx is c - l. */
                floatv l = load_at(s + row, x0 - 1, W);
                floatv ez = hz * (load_at(s + rzp, x0 - 1, W) - l), ey = hy * (load_at(s + ryp, x0 - 1, W) - l);
                floatv ex = c - l;
                floatv ml = has_mask ? load_at(ms + row, x0 - 1, W) : (floatv)1.0f;
                g += select(zero, ml * tv_factor(kind, ez, ey, ex, eps) * ex, xi > 0);
            }
        }
        sum += select((floatv)0.0f, term, valid);
        if (has_grad) {
            __global float *gr = grad + n * vol + row;
            store_block(gr, x0, W, load_block(gr, x0, W) + weight * g);
        }
    }
    /* Lanes summed in a fixed order: deterministic. */
    float t[VEC];
    VSTORE(sum, 0, t);
    float total = 0.0f;
    for (int i = 0; i < VEC; i++) total += t[i];
    rows[r] = total;
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

/* global: (ceil(vol / VEC), N).  t (N, 1, D, H, W) *= mask (vol or N*vol
 * floats), VEC values per work-item (one per value with a 64-bit modulo
 * took 0.7 ms a launch on a 2 mm volume). */
__kernel void mask_apply(__global float *t, __global const float *mask, int vol, int mask_per_sample)
{
    const int i0 = get_global_id(0) * VEC;
    const long base = (long)get_global_id(1) * vol;
    __global float *ts = t + base + i0;
    __global const float *ms = mask + (mask_per_sample ? base : 0) + i0;
    if (i0 + VEC <= vol) {
        VSTORE(VLOAD(0, ts) * VLOAD(0, ms), 0, ts);
        return;
    }
    for (int i = 0; i < vol - i0; i++) ts[i] *= ms[i];
}

/* ---- separable Gaussian blur ------------------------------------------- */

/* One axis of the separable blur.  coef = weights w[0..2R] (w[R] at offset
 * 0) followed by their prefix sums cum[0..2R+1] (cum[0] = 0, cum[m+1] =
 * w[0..m]).  Along an axis of length len, output i gets from source j:
 *   forward:  out[i] = sum_k w[k] in[b(i + k)]  (b = clamp or zero outside)
 *   adjoint:  out[j] = sum_i A[i][j] in[i], A the forward's matrix; only the
 *             replicate edges differ from the forward: A[i][0] collects every
 *             k with i + k <= 0, A[i][len-1] every k with i + k >= len-1, so
 *             output 0 takes cum[R+1-j] from source j and output len-1 takes
 *             cum[2R+1] - cum[len-1-j+R].
 * Both kernels sum the taps in the order k = -R..R. */

/* Weight of tap k (source j = i + k, an address is clamp(j)) for output i. */
inline float blur_tap(__global const float *w, __global const float *cum, int R, int len, int replicate,
                      int adjoint, int i, int k)
{
    int j = i + k;
    int inside = j >= 0 && j < len;
    if (replicate && adjoint && (i == 0 || i == len - 1)) {
        if (!inside) return 0.0f;
        if (len == 1) return 1.0f;
        return i == 0 ? cum[R + 1 - j] : cum[2 * R + 1] - cum[len - 1 - j + R];
    }
    if (replicate && !adjoint) return w[k + R];
    return inside ? w[k + R] : 0.0f;
}

/* global: N*D*H*ceil(W / VEC) (FLAT_BLOCK).  The D (axis 0) or H (axis 1) pass of x,
 * y (N, 1, D, H, W): each work-item VEC consecutive x of one row; the output
 * index i along the axis is the same for all lanes, so the tap weights are
 * scalars and every tap is a vector load of a whole source row. */
__kernel void blur_cols(__global const float *in, __global float *out, __global const float *coef, int R, int D,
                        int H, int W, int axis, int replicate, int adjoint, int N)
{
    FLAT_BLOCK(W, H, N, D, x0, y, nz);
    int n = nz / D, z = nz - n * D;
    int i = axis == 0 ? z : y, len = axis == 0 ? D : H;
    long stride = axis == 0 ? (long)H * W : W;
    long base = (((long)n * D + z) * H + y) * W - (long)i * stride;
    __global const float *w = coef, *cum = coef + 2 * R + 1;
    floatv acc = 0.0f;
    for (int k = -R; k <= R; k++) {
        float wk = blur_tap(w, cum, R, len, replicate, adjoint, i, k);
        int j = clamp(i + k, 0, len - 1);
        acc += wk * load_block(in + base + (long)j * stride, x0, W);
    }
    store_block(out + base + (long)i * stride, x0, W, acc);
}

/* global: N*D*H*ceil(W / VEC) (FLAT_BLOCK).  The W pass: VEC consecutive outputs of
 * one row.  Blocks at least R from both row ends take every tap as one
 * unaligned vector load; the others gather clamped addresses and weight each
 * lane by its own tap (w, or 0 outside, or the replicate adjoint's edge sums). */
__kernel void blur_rows(__global const float *in, __global float *out, __global const float *coef, int R, int D,
                        int H, int W, int replicate, int adjoint, int N)
{
    FLAT_BLOCK(W, H, N, D, x0, y, nz);
    long base = ((long)nz * H + y) * W;
    __global const float *row = in + base;
    __global const float *w = coef, *cum = coef + 2 * R + 1;
    floatv acc = 0.0f;
    if (x0 - R >= 0 && x0 + VEC + R <= W) {
        for (int k = -R; k <= R; k++) acc += w[k + R] * VLOAD(0, row + x0 + k);
    } else {
        intv i = x0 + LANES;
        intv left = i == 0, right = i == W - 1;
        intv edge = (replicate && adjoint) ? (left || right) : (intv)0;
        for (int k = -R; k <= R; k++) {
            intv j = i + k;
            intv inside = j >= 0 && j < W;
            float wk = w[k + R];
            floatv wl = (replicate && !adjoint) ? (floatv)wk : select((floatv)0.0f, (floatv)wk, inside);
            if (replicate && adjoint) {
                /* Edge lanes (outputs 0 and W-1) weight source j by their prefix sums. */
                floatv a = W == 1 ? (floatv)1.0f
                                  : select(GATHER(cum, clamp(R + 1 - j, (intv)(0), (intv)(2 * R + 1))),
                                           cum[2 * R + 1] - GATHER(cum, clamp(W - 1 - j + R, (intv)(0), (intv)(2 * R + 1))), right);
                wl = select(wl, select((floatv)0.0f, a, inside), edge);
            }
            acc += wl * GATHER(row, clamp(j, (intv)(0), (intv)(W - 1)));
        }
    }
    store_block(out + base, x0, W, acc);
}
