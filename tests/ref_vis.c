/* Plain C references for the feature-visualization ops; see ref_vis.h. */
#include "ref_vis.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REF_PI 3.14159265358979323846

double *ref_to_double(const float *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

double ref_dot_f(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Sum of one sample's terms.  TV term at v: m_v * phi(dz^2 + dy^2 + dx^2) with
 * forward differences, 0 on the last plane. */
void ref_penalty(nfv_penalty_kind kind, double eps, const double *x, const double *mask, int mask_per_sample, int n,
                 const int dims[3], double *value, double *grad)
{
    int D = dims[0], H = dims[1], W = dims[2];
    size_t vol = (size_t)D * H * W;
    for (int s = 0; s < n; s++) {
        const double *v = x + s * vol;
        const double *m = mask ? mask + (mask_per_sample ? s * vol : 0) : NULL;
        double *g = grad ? grad + s * vol : NULL;
        if (g) memset(g, 0, vol * sizeof *g);
        double total = 0;
        for (int z = 0; z < D; z++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    size_t i = ((size_t)z * H + y) * W + xx;
                    double w = m ? m[i] : 1.0;
                    if (kind == NFV_PENALTY_L1) {
                        total += w * fabs(v[i]);
                        if (g) g[i] = w * (v[i] > 0 ? 1.0 : v[i] < 0 ? -1.0 : 0.0);
                    } else if (kind == NFV_PENALTY_L2) {
                        total += w * v[i] * v[i];
                        if (g) g[i] = 2 * w * v[i];
                    } else {
                        size_t nb[3] = {z + 1 < D ? i + (size_t)H * W : i, y + 1 < H ? i + W : i,
                                        xx + 1 < W ? i + 1 : i};
                        double d[3], q = 0;
                        for (int a = 0; a < 3; a++) {
                            d[a] = v[nb[a]] - v[i];
                            q += d[a] * d[a];
                        }
                        double phi = kind == NFV_PENALTY_TV ? sqrt(q + eps) : q;
                        double dphi = kind == NFV_PENALTY_TV ? 1.0 / sqrt(q + eps) : 2.0; /* d phi / d d_a per d_a */
                        total += w * phi;
                        if (g)
                            for (int a = 0; a < 3; a++) {
                                if (nb[a] == i) continue;
                                g[nb[a]] += w * dphi * d[a];
                                g[i] -= w * dphi * d[a];
                            }
                    }
                }
        value[s] = total;
    }
}

/* Per-axis blur matrix A (len x len): out[i] = sum_j A[i][j] in[j]. */
static void blur_matrix(double sigma, int replicate, int len, double *A)
{
    int R = (int)ceil(3.0 * sigma);
    double total = 0;
    for (int k = -R; k <= R; k++) total += exp(-0.5 * k * k / (sigma * sigma));
    memset(A, 0, (size_t)len * len * sizeof *A);
    for (int i = 0; i < len; i++)
        for (int k = -R; k <= R; k++) {
            int j = i + k;
            double w = exp(-0.5 * k * k / (sigma * sigma)) / total;
            if (replicate) j = j < 0 ? 0 : j >= len ? len - 1 : j;
            else if (j < 0 || j >= len) continue;
            A[(size_t)i * len + j] += w;
        }
}

void ref_blur(double sigma, int replicate, int adjoint, const double *x, int n, const int dims[3], double *y)
{
    size_t vol = (size_t)dims[0] * dims[1] * dims[2], total = vol * n;
    double *cur = malloc(total * sizeof *cur), *nxt = malloc(total * sizeof *nxt);
    memcpy(cur, x, total * sizeof *cur);
    size_t stride[3] = {(size_t)dims[1] * dims[2], (size_t)dims[2], 1};
    for (int a = 0; a < 3; a++) {
        int len = dims[a];
        double *A = malloc((size_t)len * len * sizeof *A);
        blur_matrix(sigma, replicate, len, A);
        for (size_t g = 0; g < total; g++) {
            int i = (int)((g / stride[a]) % len);
            size_t base = g - (size_t)i * stride[a];
            double acc = 0;
            for (int j = 0; j < len; j++)
                acc += (adjoint ? A[(size_t)j * len + i] : A[(size_t)i * len + j]) * cur[base + (size_t)j * stride[a]];
            nxt[g] = acc;
        }
        free(A);
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    memcpy(y, cur, total * sizeof *y);
    free(cur);
    free(nxt);
}

void ref_pad(const int pad[3], int replicate, double value, const double *x, int n, const int dims[3], double *y)
{
    int D = dims[0], H = dims[1], W = dims[2];
    int Do = D + 2 * pad[0], Ho = H + 2 * pad[1], Wo = W + 2 * pad[2];
    for (int s = 0; s < n; s++)
        for (int z = 0; z < Do; z++)
            for (int yy = 0; yy < Ho; yy++)
                for (int xx = 0; xx < Wo; xx++) {
                    int a = z - pad[0], b = yy - pad[1], c = xx - pad[2];
                    double out;
                    if (replicate) {
                        a = a < 0 ? 0 : a >= D ? D - 1 : a;
                        b = b < 0 ? 0 : b >= H ? H - 1 : b;
                        c = c < 0 ? 0 : c >= W ? W - 1 : c;
                    }
                    if (a >= 0 && a < D && b >= 0 && b < H && c >= 0 && c < W)
                        out = x[(((size_t)s * D + a) * H + b) * W + c];
                    else
                        out = value;
                    y[(((size_t)s * Do + z) * Ho + yy) * Wo + xx] = out;
                }
}

void ref_jitter(const int *shift, const double *x, int n, const int dims[3], double *y)
{
    int D = dims[0], H = dims[1], W = dims[2];
    for (int s = 0; s < n; s++)
        for (int z = 0; z < D; z++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++) {
                    int a = z - shift[3 * s], b = yy - shift[3 * s + 1], c = xx - shift[3 * s + 2];
                    int in = a >= 0 && a < D && b >= 0 && b < H && c >= 0 && c < W;
                    y[(((size_t)s * D + z) * H + yy) * W + xx] = in ? x[(((size_t)s * D + a) * H + b) * W + c] : 0.0;
                }
}

void ref_warp(const float *matrix, const double *x, int n, const int in_dims[3], const int out_dims[3], double *y)
{
    int Di = in_dims[0], Hi = in_dims[1], Wi = in_dims[2], Do = out_dims[0], Ho = out_dims[1], Wo = out_dims[2];
    for (int s = 0; s < n; s++) {
        const float *m = matrix + 12 * s;
        for (int z = 0; z < Do; z++)
            for (int yy = 0; yy < Ho; yy++)
                for (int xx = 0; xx < Wo; xx++) {
                    double p[3] = {z, yy, xx}, q[3];
                    for (int a = 0; a < 3; a++)
                        q[a] = m[4 * a] * p[0] + m[4 * a + 1] * p[1] + m[4 * a + 2] * p[2] + m[4 * a + 3];
                    int f[3];
                    double t[3];
                    for (int a = 0; a < 3; a++) {
                        f[a] = (int)floor(q[a]);
                        t[a] = q[a] - f[a];
                    }
                    double acc = 0;
                    for (int c = 0; c < 8; c++) {
                        int cz = f[0] + (c >> 2), cy = f[1] + ((c >> 1) & 1), cx = f[2] + (c & 1);
                        if (cz < 0 || cz >= Di || cy < 0 || cy >= Hi || cx < 0 || cx >= Wi) continue;
                        double w = ((c >> 2) ? t[0] : 1 - t[0]) * (((c >> 1) & 1) ? t[1] : 1 - t[1]) *
                                   ((c & 1) ? t[2] : 1 - t[2]);
                        acc += w * x[(((size_t)s * Di + cz) * Hi + cy) * Wi + cx];
                    }
                    y[(((size_t)s * Do + z) * Ho + yy) * Wo + xx] = acc;
                }
    }
}

void ref_fourier_basis(nfv_fourier_basis basis, int len, double *B)
{
    for (int k = 0; k < len; k++)
        for (int i = 0; i < len; i++) {
            if (basis == NFV_FOURIER_DFT) {
                double t = 2 * REF_PI * k * i / len;
                B[(size_t)k * len + i] = (cos(t) + sin(t)) / sqrt((double)len);
            } else {
                B[(size_t)k * len + i] =
                    sqrt((k ? 2.0 : 1.0) / len) * cos(REF_PI * k * (2 * i + 1) / (2.0 * len));
            }
        }
}

void ref_fourier_scale(nfv_fourier_basis basis, const int dims[3], double decay, double *s)
{
    int maxdim = dims[0];
    for (int a = 1; a < 3; a++)
        if (dims[a] > maxdim) maxdim = dims[a];
    size_t vol = (size_t)dims[0] * dims[1] * dims[2];
    double sum2 = 0;
    for (size_t i = 0; i < vol; i++) {
        int k[3] = {(int)(i / ((size_t)dims[1] * dims[2])), (int)(i / dims[2] % dims[1]), (int)(i % dims[2])};
        double f2 = 0;
        for (int a = 0; a < 3; a++) {
            double fa = basis == NFV_FOURIER_DFT ? fmin(k[a], dims[a] - k[a]) / dims[a] : k[a] / (2.0 * dims[a]);
            f2 += fa * fa;
        }
        double f = fmax(sqrt(f2), 1.0 / maxdim);
        s[i] = pow(f, -decay);
        sum2 += s[i] * s[i];
    }
    for (size_t i = 0; i < vol; i++) s[i] /= sqrt(sum2 / vol);
}

void ref_fourier_decode(nfv_fourier_basis basis, double decay, const double *param, int n, const int dims[3],
                        double *image)
{
    int D = dims[0], H = dims[1], W = dims[2];
    size_t vol = (size_t)D * H * W;
    double *s = malloc(vol * sizeof *s), *B[3];
    ref_fourier_scale(basis, dims, decay, s);
    for (int a = 0; a < 3; a++) {
        B[a] = malloc((size_t)dims[a] * dims[a] * sizeof *B[a]);
        ref_fourier_basis(basis, dims[a], B[a]);
    }
    /* Direct sum over all coefficients: image[v] = sum_k B_D[kz][z] B_H[ky][y] B_W[kx][x] s[k] p[k]. */
    for (int smp = 0; smp < n; smp++)
        for (int z = 0; z < D; z++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double acc = 0;
                    for (size_t k = 0; k < vol; k++) {
                        int kz = (int)(k / ((size_t)H * W)), ky = (int)(k / W % H), kx = (int)(k % W);
                        acc += B[0][(size_t)kz * D + z] * B[1][(size_t)ky * H + y] * B[2][(size_t)kx * W + x] * s[k] *
                               param[smp * vol + k];
                    }
                    image[smp * vol + ((size_t)z * H + y) * W + x] = acc;
                }
    for (int a = 0; a < 3; a++) free(B[a]);
    free(s);
}
