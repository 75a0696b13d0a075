/* Plain C references for tests/test_linear.c, test_loss.c, test_optim.c:
 * straightforward loops in double, written from PyTorch's documented formulas
 * and independently of the kernels. */
#include "ref_dense.h"

#include <math.h>
#include <stddef.h>

void ref_linear_forward(int n, int in, int out, const double *x, const double *w, const double *b, double *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int j = 0; j < in; j++) acc += x[(size_t)i * in + j] * w[(size_t)o * in + j];
            y[(size_t)i * out + o] = acc;
        }
}

void ref_linear_backward(int n, int in, int out, const double *x, const double *w, const double *dy, double *dx,
                         double *dw, double *db)
{
    if (dx)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < in; j++) {
                double acc = 0.0;
                for (int o = 0; o < out; o++) acc += dy[(size_t)i * out + o] * w[(size_t)o * in + j];
                dx[(size_t)i * in + j] = acc;
            }
    if (dw)
        for (int o = 0; o < out; o++)
            for (int j = 0; j < in; j++) {
                double acc = 0.0;
                for (int i = 0; i < n; i++) acc += dy[(size_t)i * out + o] * x[(size_t)i * in + j];
                dw[(size_t)o * in + j] = acc;
            }
    if (db)
        for (int o = 0; o < out; o++) {
            double acc = 0.0;
            for (int i = 0; i < n; i++) acc += dy[(size_t)i * out + o];
            db[o] = acc;
        }
}

double ref_softmax_cross_entropy(int n, int k, const double *logits, const int *labels, const double *class_weights,
                                 double *dlogits)
{
    double sum_wl = 0.0, sum_w = 0.0;
    for (int i = 0; i < n; i++) {
        const double *z = logits + (size_t)i * k;
        double zmax = z[0], s = 0.0;
        for (int j = 1; j < k; j++) zmax = fmax(zmax, z[j]);
        for (int j = 0; j < k; j++) s += exp(z[j] - zmax);
        const double lse = zmax + log(s);
        const double w = class_weights ? class_weights[labels[i]] : 1.0;
        sum_wl += w * (lse - z[labels[i]]);
        sum_w += w;
    }
    if (dlogits)
        for (int i = 0; i < n; i++) {
            const double *z = logits + (size_t)i * k;
            double zmax = z[0], s = 0.0;
            for (int j = 1; j < k; j++) zmax = fmax(zmax, z[j]);
            for (int j = 0; j < k; j++) s += exp(z[j] - zmax);
            const double w = class_weights ? class_weights[labels[i]] : 1.0;
            for (int j = 0; j < k; j++)
                dlogits[(size_t)i * k + j] = w / sum_w * (exp(z[j] - zmax) / s - (j == labels[i] ? 1.0 : 0.0));
        }
    return sum_wl / sum_w;
}

/* log(1 + exp(z)) for any z. */
static double softplus(double z)
{
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

double ref_bce_with_logits(int n, const double *logits, const double *targets, double pos_weight, double *dlogits)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const double x = logits[i], t = targets[i];
        /* -[p t log s(x) + (1 - t) log(1 - s(x))], log s(x) = -softplus(-x). */
        sum += pos_weight * t * softplus(-x) + (1.0 - t) * softplus(x);
        if (dlogits) {
            const double sig = 1.0 / (1.0 + exp(-x));
            dlogits[i] = (pos_weight * t * (sig - 1.0) + (1.0 - t) * sig) / n;
        }
    }
    return sum / n;
}

double ref_mse_loss(int n, const double *pred, const double *targets, double *dpred)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const double d = pred[i] - targets[i];
        sum += d * d;
        if (dpred) dpred[i] = 2.0 * d / n;
    }
    return sum / n;
}

double ref_huber_loss(int n, const double *pred, const double *targets, double delta, double *dpred)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const double d = pred[i] - targets[i], a = fabs(d);
        sum += a <= delta ? 0.5 * d * d : delta * (a - 0.5 * delta);
        if (dpred) dpred[i] = (d < -delta ? -delta : d > delta ? delta : d) / n;
    }
    return sum / n;
}

void ref_adam_step(int count, double lr, double beta1, double beta2, double eps, double weight_decay, int decoupled,
                   int step, double *param, const double *grad, double *m, double *v)
{
    const double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    for (int i = 0; i < count; i++) {
        double g = grad[i];
        if (decoupled) param[i] *= 1.0 - lr * weight_decay;
        else g += weight_decay * param[i];
        m[i] = beta1 * m[i] + (1.0 - beta1) * g;
        v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
        /* torch: denom = sqrt(v) / sqrt(bc2) + eps; p -= lr / bc1 * m / denom. */
        param[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

void ref_sgd_step(int count, double lr, double momentum, double weight_decay, double *param, const double *grad,
                  double *velocity)
{
    for (int i = 0; i < count; i++) {
        double g = grad[i] + weight_decay * param[i];
        if (momentum != 0.0) {
            velocity[i] = momentum * velocity[i] + g;
            g = velocity[i];
        }
        param[i] -= lr * g;
    }
}
