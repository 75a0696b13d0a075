/* Plain C references for InstanceNorm3d and the graph ops; see ref_graph.h. */
#include "ref_graph.h"

#include <math.h>
#include <string.h>

void ref_instancenorm(const double *x, int n, int c, size_t s, const double *gamma, const double *beta, double eps,
                      double *y, double *mean, double *invstd)
{
    for (int p = 0; p < n * c; p++) {
        const double *xp = x + (size_t)p * s;
        double sum = 0.0, m2 = 0.0;
        for (size_t i = 0; i < s; i++) sum += xp[i];
        double m = sum / (double)s;
        for (size_t i = 0; i < s; i++) m2 += (xp[i] - m) * (xp[i] - m);
        double is = 1.0 / sqrt(m2 / (double)s + eps);
        double g = gamma ? gamma[p % c] : 1.0, b = beta ? beta[p % c] : 0.0;
        if (y)
            for (size_t i = 0; i < s; i++) y[(size_t)p * s + i] = g * (xp[i] - m) * is + b;
        if (mean) mean[p] = m;
        if (invstd) invstd[p] = is;
    }
}

void ref_instancenorm_backward(const double *x, const double *dy, int n, int c, size_t s, const double *gamma,
                               double eps, double *dx, double *dgamma, double *dbeta)
{
    if (dgamma) memset(dgamma, 0, (size_t)c * sizeof *dgamma);
    if (dbeta) memset(dbeta, 0, (size_t)c * sizeof *dbeta);
    for (int p = 0; p < n * c; p++) {
        const double *xp = x + (size_t)p * s, *gp = dy + (size_t)p * s;
        double m, is;
        ref_instancenorm(xp, 1, 1, s, NULL, NULL, eps, NULL, &m, &is);
        double sg = 0.0, sgx = 0.0;
        for (size_t i = 0; i < s; i++) {
            sg += gp[i];
            sgx += gp[i] * (xp[i] - m) * is;
        }
        if (dgamma) dgamma[p % c] += sgx;
        if (dbeta) dbeta[p % c] += sg;
        if (!dx) continue;
        double k = (gamma ? gamma[p % c] : 1.0) * is;
        for (size_t i = 0; i < s; i++)
            dx[(size_t)p * s + i] = k * (gp[i] - sg / (double)s - (xp[i] - m) * is * sgx / (double)s);
    }
}

void ref_add(const double *a, const double *b, double *y, size_t count)
{
    for (size_t i = 0; i < count; i++) y[i] = a[i] + b[i];
}

void ref_concat_channels(const double *x, int n, int ci, size_t s, int off, int ct, double *y)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < ci; ch++)
            for (size_t i = 0; i < s; i++)
                y[((size_t)b * ct + off + ch) * s + i] = x[((size_t)b * ci + ch) * s + i];
}

void ref_concat_channels_backward(const double *dy, int n, int ct, size_t s, int off, int ci, double *dx)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < ci; ch++)
            for (size_t i = 0; i < s; i++)
                dx[((size_t)b * ci + ch) * s + i] = dy[((size_t)b * ct + off + ch) * s + i];
}

void ref_pad3d(const double *x, int planes, int d, int h, int w, const int begin[3], const int end[3], double value,
               double *y)
{
    int od = d + begin[0] + end[0], oh = h + begin[1] + end[1], ow = w + begin[2] + end[2];
    for (int p = 0; p < planes; p++)
        for (int z = 0; z < od; z++)
            for (int r = 0; r < oh; r++)
                for (int q = 0; q < ow; q++) {
                    int iz = z - begin[0], ir = r - begin[1], iq = q - begin[2];
                    int inside = iz >= 0 && iz < d && ir >= 0 && ir < h && iq >= 0 && iq < w;
                    y[(((size_t)p * od + z) * oh + r) * ow + q] =
                        inside ? x[(((size_t)p * d + iz) * h + ir) * w + iq] : value;
                }
}

void ref_pad3d_backward(const double *dy, int planes, int d, int h, int w, const int begin[3], const int end[3],
                        double *dx)
{
    int od = d + begin[0] + end[0], oh = h + begin[1] + end[1], ow = w + begin[2] + end[2];
    for (int p = 0; p < planes; p++)
        for (int z = 0; z < d; z++)
            for (int r = 0; r < h; r++)
                for (int q = 0; q < w; q++)
                    dx[(((size_t)p * d + z) * h + r) * w + q] =
                        dy[(((size_t)p * od + z + begin[0]) * oh + r + begin[1]) * ow + q + begin[2]];
}

void ref_softmax(int use_log, const double *x, int n, int c, size_t s, double *y)
{
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < s; i++) {
            const double *xp = x + (size_t)b * c * s + i;
            double *yp = y + (size_t)b * c * s + i;
            double m = -INFINITY, sum = 0.0;
            for (int ch = 0; ch < c; ch++) m = fmax(m, xp[ch * s]);
            for (int ch = 0; ch < c; ch++) sum += exp(xp[ch * s] - m);
            for (int ch = 0; ch < c; ch++)
                yp[ch * s] = use_log ? xp[ch * s] - m - log(sum) : exp(xp[ch * s] - m) / sum;
        }
}

void ref_softmax_backward(int use_log, const double *y, const double *dy, int n, int c, size_t s, double *dx)
{
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < s; i++) {
            size_t o = (size_t)b * c * s + i;
            double acc = 0.0;
            for (int ch = 0; ch < c; ch++) acc += use_log ? dy[o + ch * s] : dy[o + ch * s] * y[o + ch * s];
            for (int ch = 0; ch < c; ch++) {
                size_t j = o + ch * s;
                dx[j] = use_log ? dy[j] - exp(y[j]) * acc : y[j] * (dy[j] - acc);
            }
        }
}
