/* Plain C references for pooling, activations, batch norm and dropout. */
#include "ref_layers.h"

#include <math.h>
#include <stdlib.h>

int ref_pool_out(int in, int k, int s, int p) { return in + 2 * p < k ? 0 : (in + 2 * p - k) / s + 1; }

int ref_pool_out_mode(int in, int k, int s, int p, int ceil_mode)
{
    if (!ceil_mode) return ref_pool_out(in, k, s, p);
    if (in + 2 * p < k) return 0;
    int out = (int)ceil((double)(in + 2 * p - k) / s) + 1;
    if ((out - 1) * s >= in + p) out--;
    return out;
}

/* First maximum wins ties, as PyTorch's CPU kernel. */
void ref_maxpool3d(const nfv_pool3d_params *p, const double *x, int n, int c, int d, int h, int w, double *y,
                   int *argmax)
{
    int od = ref_pool_out_mode(d, p->kernel[0], p->stride[0], p->padding[0], p->ceil_mode);
    int oh = ref_pool_out_mode(h, p->kernel[1], p->stride[1], p->padding[1], p->ceil_mode);
    int ow = ref_pool_out_mode(w, p->kernel[2], p->stride[2], p->padding[2], p->ceil_mode);
    for (int pl = 0; pl < n * c; pl++) {
        const double *xp = x + (size_t)pl * d * h * w;
        for (int a = 0; a < od; a++)
            for (int b = 0; b < oh; b++)
                for (int e = 0; e < ow; e++) {
                    double best = -INFINITY;
                    int bi = -1;
                    for (int kd = 0; kd < p->kernel[0]; kd++)
                        for (int kh = 0; kh < p->kernel[1]; kh++)
                            for (int kw = 0; kw < p->kernel[2]; kw++) {
                                int zd = a * p->stride[0] - p->padding[0] + kd;
                                int zh = b * p->stride[1] - p->padding[1] + kh;
                                int zw = e * p->stride[2] - p->padding[2] + kw;
                                if (zd < 0 || zd >= d || zh < 0 || zh >= h || zw < 0 || zw >= w) continue;
                                int i = (zd * h + zh) * w + zw;
                                if (bi < 0 || xp[i] > best) {
                                    best = xp[i];
                                    bi = i;
                                }
                            }
                    size_t o = (((size_t)pl * od + a) * oh + b) * ow + e;
                    y[o] = best;
                    if (argmax) argmax[o] = bi;
                }
    }
}

void ref_avgpool3d(const nfv_pool3d_params *p, const double *x, int n, int c, int d, int h, int w, double *y)
{
    int od = ref_pool_out_mode(d, p->kernel[0], p->stride[0], p->padding[0], p->ceil_mode);
    int oh = ref_pool_out_mode(h, p->kernel[1], p->stride[1], p->padding[1], p->ceil_mode);
    int ow = ref_pool_out_mode(w, p->kernel[2], p->stride[2], p->padding[2], p->ceil_mode);
    for (int pl = 0; pl < n * c; pl++) {
        const double *xp = x + (size_t)pl * d * h * w;
        for (int a = 0; a < od; a++)
            for (int b = 0; b < oh; b++)
                for (int e = 0; e < ow; e++) {
                    double acc = 0.0;
                    int real = 0, st[3] = {a, b, e}, clipped = 1;
                    /* Window extent clipped to the padded input, per axis. */
                    for (int ax = 0; ax < 3; ax++) {
                        int start = st[ax] * p->stride[ax] - p->padding[ax];
                        int end = start + p->kernel[ax], lim = (ax == 0 ? d : ax == 1 ? h : w) + p->padding[ax];
                        clipped *= (end < lim ? end : lim) - start;
                    }
                    for (int kd = 0; kd < p->kernel[0]; kd++)
                        for (int kh = 0; kh < p->kernel[1]; kh++)
                            for (int kw = 0; kw < p->kernel[2]; kw++) {
                                int zd = a * p->stride[0] - p->padding[0] + kd;
                                int zh = b * p->stride[1] - p->padding[1] + kh;
                                int zw = e * p->stride[2] - p->padding[2] + kw;
                                if (zd < 0 || zd >= d || zh < 0 || zh >= h || zw < 0 || zw >= w) continue;
                                acc += xp[(zd * h + zh) * w + zw];
                                real++;
                            }
                    y[(((size_t)pl * od + a) * oh + b) * ow + e] = acc / (p->exclude_pad ? real : clipped);
                }
    }
}

void ref_global_avgpool(const double *x, int planes, size_t size, double *y)
{
    for (int pl = 0; pl < planes; pl++) {
        double acc = 0.0;
        for (size_t i = 0; i < size; i++) acc += x[(size_t)pl * size + i];
        y[pl] = acc / (double)size;
    }
}

void ref_global_maxpool(const double *x, int planes, size_t size, double *y, int *argmax)
{
    for (int pl = 0; pl < planes; pl++) {
        const double *xp = x + (size_t)pl * size;
        size_t bi = 0;
        for (size_t i = 1; i < size; i++)
            if (xp[i] > xp[bi]) bi = i;
        y[pl] = xp[bi];
        if (argmax) argmax[pl] = (int)bi;
    }
}

static double act(nfv_activation kind, double alpha, double v)
{
    if (kind == NFV_SIGMOID) return v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));
    if (v > 0) return v;
    switch (kind) {
    case NFV_RELU: return 0.0;
    case NFV_LEAKY_RELU: return alpha * v;
    case NFV_ELU: return alpha * expm1(v);
    case NFV_SIGMOID: break;
    }
    return NAN;
}

static double act_grad(nfv_activation kind, double alpha, double v)
{
    if (kind == NFV_SIGMOID) {
        double e = exp(-fabs(v));
        return e / ((1.0 + e) * (1.0 + e));
    }
    if (v > 0) return 1.0;
    switch (kind) {
    case NFV_RELU: return 0.0;
    case NFV_LEAKY_RELU: return alpha;
    case NFV_ELU: return alpha * exp(v);
    case NFV_SIGMOID: break;
    }
    return NAN;
}

void ref_activation(nfv_activation kind, double alpha, const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = act(kind, alpha, x[i]);
}

void ref_activation_backward(nfv_activation kind, double alpha, const double *x, const double *dy, double *dx,
                             size_t n)
{
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * act_grad(kind, alpha, x[i]);
}

/* Two-pass (mean, then centred squares) in double. */
static void channel_stats(const double *x, int n, int c, size_t s, int ch, double *mean, double *m2)
{
    double sum = 0.0;
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < s; i++) sum += x[((size_t)b * c + ch) * s + i];
    double m = sum / ((double)n * s), acc = 0.0;
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < s; i++) {
            double dlt = x[((size_t)b * c + ch) * s + i] - m;
            acc += dlt * dlt;
        }
    *mean = m;
    *m2 = acc;
}

void ref_batchnorm_train(const double *x, int n, int c, size_t s, const double *gamma, const double *beta,
                         double eps, double *y, double *mean, double *var, double *var_unbiased)
{
    double count = (double)n * s;
    for (int ch = 0; ch < c; ch++) {
        double m, m2;
        channel_stats(x, n, c, s, ch, &m, &m2);
        double v = m2 / count, inv = 1.0 / sqrt(v + eps);
        if (mean) mean[ch] = m;
        if (var) var[ch] = v;
        if (var_unbiased) var_unbiased[ch] = m2 / (count - 1.0);
        if (y)
            for (int b = 0; b < n; b++)
                for (size_t i = 0; i < s; i++) {
                    size_t k = ((size_t)b * c + ch) * s + i;
                    y[k] = gamma[ch] * (x[k] - m) * inv + beta[ch];
                }
    }
}

void ref_batchnorm_eval(const double *x, int n, int c, size_t s, const double *gamma, const double *beta,
                        const double *running_mean, const double *running_var, double eps, double *y)
{
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            double inv = 1.0 / sqrt(running_var[ch] + eps);
            for (size_t i = 0; i < s; i++) {
                size_t k = ((size_t)b * c + ch) * s + i;
                y[k] = gamma[ch] * (x[k] - running_mean[ch]) * inv + beta[ch];
            }
        }
}

static unsigned mix(unsigned h)
{
    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    h *= 0x846ca68bU;
    h ^= h >> 16;
    return h;
}

int ref_dropout_keep(unsigned long long seed, unsigned long long index, float p)
{
    unsigned threshold = (unsigned)floor((double)p * 16777216.0 + 0.5);
    unsigned h = mix(mix((unsigned)seed ^ 0x9e3779b9U) ^ (unsigned)(seed >> 32));
    h = mix(mix(h ^ (unsigned)index) ^ (unsigned)(index >> 32));
    return (h >> 8) >= threshold;
}

void ref_fd_gradient(ref_scalar_fn f, void *user, double *x, size_t n, double h, double *g)
{
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double up = f(x, user);
        x[i] = keep - h;
        double down = f(x, user);
        x[i] = keep;
        g[i] = (up - down) / (2.0 * h);
    }
}

double *rl_to_double(const float *x, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (d)
        for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

float *rl_to_float(const double *x, size_t n)
{
    float *f = malloc((n ? n : 1) * sizeof *f);
    if (f)
        for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}
