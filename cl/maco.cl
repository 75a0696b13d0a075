/* MACO (magnitude-constrained phase) parameterization, src/vis/maco.c.
 *
 * The spectrum is the separable Hartley basis of src/vis/fft.c.  A real
 * volume's complex DFT F(k) = A(k) e^{i t(k)} with Hermitian symmetry
 * (t(-k) = -t(k), A(-k) = A(k)) has Hartley coefficients
 *   c(k) = Re F(k) - Im F(k) = A(k) (cos t(k) + sin t(k))   (t = -phase),
 * so with amplitude A fixed and the parameter phi (one per coefficient), the
 * antisymmetric phase t(k) = (phi(k) - phi(-k)) / 2 gives
 *   c(k) = A(k) cas(t(k)),   cas = cos + sin,
 * whose complex magnitude is exactly A(k).  -k is the mirror index
 * ((D - z) % D, (H - y) % H, (W - x) % W); coefficients that are their own
 * mirror (DC, Nyquist) have t = 0.
 *
 * Shapes: phi, coeff, dcoeff, dphi (N, 1, D, H, W); amp (D, H, W) broadcast
 * over the batch.  global: (N * D * H * W). */

#include "common.cl"

static long mirror_index(long g, int D, int H, int W)
{
    long vol = (long)D * H * W;
    long n = g / vol, r = g % vol;
    int x = (int)(r % W), y = (int)((r / W) % H), z = (int)(r / ((long)W * H));
    int mz = (D - z) % D, my = (H - y) % H, mx = (W - x) % W;
    return n * vol + ((long)mz * H + my) * W + mx;
}

/* coeff = amp * cas((phi - phi[mirror]) / 2). */
__kernel void maco_coeff(__global const float *phi, __global const float *amp, __global float *coeff, int D, int H,
                         int W)
{
    long g = get_global_id(0), vol = (long)D * H * W;
    float t = 0.5f * (phi[g] - phi[mirror_index(g, D, H, W)]);
    coeff[g] = amp[g % vol] * (cos(t) + sin(t));
}

/* dphi(k) = (u(k) - u(-k)) / 2 with u(j) = dcoeff(j) amp(j) cas'(t(j)),
 * cas' = cos - sin, and t(-k) = -t(k). */
__kernel void maco_coeff_adjoint(__global const float *phi, __global const float *amp, __global const float *dcoeff,
                                 __global float *dphi, int D, int H, int W)
{
    long g = get_global_id(0), vol = (long)D * H * W;
    long m = mirror_index(g, D, H, W);
    float t = 0.5f * (phi[g] - phi[m]);
    float c = cos(t), s = sin(t);
    float uk = dcoeff[g] * amp[g % vol] * (c - s);
    float um = dcoeff[m] * amp[m % vol] * (c + s);
    dphi[g] = 0.5f * (uk - um);
}

/* In place: x = mid + hw tanh((x - mid) / hw), a smooth map into
 * (mid - hw, mid + hw), the training data's intensity range. */
__kernel void maco_range(__global float *x, float mid, float hw)
{
    long g = get_global_id(0);
    x[g] = mid + hw * tanh((x[g] - mid) / hw);
}

/* grad *= d range / d x = 1 - tanh^2, from the mapped y = mid + hw tanh. */
__kernel void maco_range_adjoint(__global const float *y, __global float *grad, float mid, float hw)
{
    long g = get_global_id(0);
    float t = (y[g] - mid) / hw;
    grad[g] *= 1.0f - t * t;
}
