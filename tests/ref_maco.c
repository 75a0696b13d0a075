/* Plain double references for MACO (see ref_maco.h): direct sums, no
 * blocking, no shared code with src/vis/maco.c or src/vis/fft.c. */
#include "ref_maco.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double cas_basis(int k, int i, int n)
{
    double t = 2.0 * M_PI * (double)((long)k * i % n) / n;
    return (cos(t) + sin(t)) / sqrt((double)n);
}

void ref_hartley(const int dims[3], const double *x, double *out)
{
    int D = dims[0], H = dims[1], W = dims[2];
    size_t vol = (size_t)D * H * W;
    double *a = malloc(vol * sizeof *a), *b = malloc(vol * sizeof *b);
    /* W axis, then H, then D: out[kz,ky,kx] = sum_zyx B[kz,z] B[ky,y] B[kx,x] x[z,y,x]. */
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int k = 0; k < W; k++) {
                double s = 0;
                for (int i = 0; i < W; i++) s += cas_basis(k, i, W) * x[((size_t)z * H + y) * W + i];
                a[((size_t)z * H + y) * W + k] = s;
            }
    for (int z = 0; z < D; z++)
        for (int k = 0; k < H; k++)
            for (int xx = 0; xx < W; xx++) {
                double s = 0;
                for (int i = 0; i < H; i++) s += cas_basis(k, i, H) * a[((size_t)z * H + i) * W + xx];
                b[((size_t)z * H + k) * W + xx] = s;
            }
    for (int k = 0; k < D; k++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++) {
                double s = 0;
                for (int i = 0; i < D; i++) s += cas_basis(k, i, D) * b[((size_t)i * H + y) * W + xx];
                out[((size_t)k * H + y) * W + xx] = s;
            }
    free(a);
    free(b);
}

size_t ref_mirror(const int dims[3], size_t k)
{
    int D = dims[0], H = dims[1], W = dims[2];
    int x = (int)(k % W), y = (int)(k / W % H), z = (int)(k / ((size_t)W * H));
    return ((size_t)((D - z) % D) * H + (H - y) % H) * W + (W - x) % W;
}

static double *coefficients(const int dims[3], const float *amp, const double *phi)
{
    size_t vol = (size_t)dims[0] * dims[1] * dims[2];
    double *c = malloc(vol * sizeof *c);
    for (size_t k = 0; k < vol; k++) {
        double t = 0.5 * (phi[k] - phi[ref_mirror(dims, k)]);
        c[k] = amp[k] * (cos(t) + sin(t));
    }
    return c;
}

void ref_maco_decode(const int dims[3], const float *amp, double lo, double hi, const double *phi, double *image)
{
    size_t vol = (size_t)dims[0] * dims[1] * dims[2];
    double *c = coefficients(dims, amp, phi), mid = 0.5 * (lo + hi), half = 0.5 * (hi - lo);
    ref_hartley(dims, c, image);
    for (size_t i = 0; i < vol; i++) image[i] = mid + half * tanh((image[i] - mid) / half);
    free(c);
}

void ref_maco_grad(const int dims[3], const float *amp, double lo, double hi, const double *phi, const double *w,
                   double *grad)
{
    size_t vol = (size_t)dims[0] * dims[1] * dims[2];
    double *c = coefficients(dims, amp, phi), *raw = malloc(vol * sizeof *raw), *g = calloc(vol, sizeof *g);
    double *gc = malloc(vol * sizeof *gc), *u = malloc(vol * sizeof *u);
    double mid = 0.5 * (lo + hi), half = 0.5 * (hi - lo);
    ref_hartley(dims, c, raw);
    for (size_t i = 0; i < vol; i++) {
        double t = tanh((raw[i] - mid) / half);
        g[i] = w[i] * (1 - t * t); /* d image / d raw */
    }
    ref_hartley(dims, g, gc); /* d / d coeff = B g */
    for (size_t k = 0; k < vol; k++) {
        double t = 0.5 * (phi[k] - phi[ref_mirror(dims, k)]);
        u[k] = gc[k] * amp[k] * (cos(t) - sin(t)); /* d / d t(k) */
    }
    /* t(k) = (phi(k) - phi(-k)) / 2 and t(-k) = (phi(-k) - phi(k)) / 2. */
    for (size_t k = 0; k < vol; k++) grad[k] = 0.5 * (u[k] - u[ref_mirror(dims, k)]);
    free(c);
    free(raw);
    free(g);
    free(gc);
    free(u);
}
