/* Double-precision reference forward of a sequential model; see ref_model.h. */
#include "ref_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ref_params_download(nfv_context *ctx, const nfv_model *m, ref_params *out)
{
    out->layers = m->layer_count;
    out->p = calloc((size_t)m->layer_count * 4, sizeof(double *));
    out->n = calloc((size_t)m->layer_count * 4, sizeof(size_t));
    for (int i = 0; i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        const nfv_tensor *t[4] = {l->nparams > 0 ? &l->param[0] : NULL, l->nparams > 1 ? &l->param[1] : NULL,
                                  l->running_mean.buf ? &l->running_mean : NULL,
                                  l->running_var.buf ? &l->running_var : NULL};
        for (int j = 0; j < 4; j++) {
            if (!t[j]) continue;
            float *f = malloc(t[j]->numel * sizeof *f);
            if (nfv_tensor_download(ctx, t[j], f)) {
                free(f);
                return 0;
            }
            out->p[i * 4 + j] = malloc(t[j]->numel * sizeof(double));
            out->n[i * 4 + j] = t[j]->numel;
            for (size_t e = 0; e < t[j]->numel; e++) out->p[i * 4 + j][e] = f[e];
            free(f);
        }
    }
    return 1;
}

void ref_params_free(ref_params *rp)
{
    for (int i = 0; i < rp->layers * 4; i++) free(rp->p[i]);
    free(rp->p);
    free(rp->n);
    memset(rp, 0, sizeof *rp);
}

static void conv(const nfv_layer *l, const double *w, const double *b, const double *x, int n, double *y)
{
    int ci = l->in_shape[0], D = l->in_shape[1], H = l->in_shape[2], W = l->in_shape[3];
    int co = l->out_shape[0], Do = l->out_shape[1], Ho = l->out_shape[2], Wo = l->out_shape[3];
    const int *k = l->spec.kernel, *s = l->spec.stride, *p = l->spec.padding;
    int G = l->spec.groups > 1 ? l->spec.groups : 1, cig = ci / G, cog = co / G;
    int dl[3];
    for (int a = 0; a < 3; a++) dl[a] = l->spec.dilation[a] > 1 ? l->spec.dilation[a] : 1;
    for (int s0 = 0; s0 < n; s0++)
        for (int o = 0; o < co; o++)
            for (int z = 0; z < Do; z++)
                for (int yy = 0; yy < Ho; yy++)
                    for (int xx = 0; xx < Wo; xx++) {
                        double acc = b ? b[o] : 0;
                        for (int cg = 0; cg < cig; cg++) {
                            int c = (o / cog) * cig + cg;
                            for (int a = 0; a < k[0]; a++)
                                for (int bb = 0; bb < k[1]; bb++)
                                    for (int cc = 0; cc < k[2]; cc++) {
                                        int iz = z * s[0] - p[0] + a * dl[0], iy = yy * s[1] - p[1] + bb * dl[1],
                                            ix = xx * s[2] - p[2] + cc * dl[2];
                                        if (iz < 0 || iy < 0 || ix < 0 || iz >= D || iy >= H || ix >= W) continue;
                                        acc += w[(((size_t)o * cig + cg) * k[0] + a) * k[1] * k[2] + bb * k[2] + cc] *
                                               x[(((size_t)s0 * ci + c) * D + iz) * H * W + (size_t)iy * W + ix];
                                    }
                        }
                        y[(((size_t)s0 * co + o) * Do + z) * Ho * Wo + (size_t)yy * Wo + xx] = acc;
                    }
}

/* PyTorch's pooling windows: start = o*s - p, end = min(start + k, in + p)
 * (the divisor with count_include_pad), then clipped to the input (the
 * divisor without it; ONNX count_include_pad=0). */
static void pool(const nfv_layer *l, int is_max, const double *x, int n, double *y)
{
    int C = l->in_shape[0], in[3] = {l->in_shape[1], l->in_shape[2], l->in_shape[3]};
    int out[3] = {l->out_shape[1], l->out_shape[2], l->out_shape[3]};
    const int *k = l->spec.kernel, *s = l->spec.stride, *p = l->spec.padding;
    for (int sc = 0; sc < n * C; sc++)
        for (int z = 0; z < out[0]; z++)
            for (int yy = 0; yy < out[1]; yy++)
                for (int xx = 0; xx < out[2]; xx++) {
                    int o[3] = {z, yy, xx}, lo[3], hi[3];
                    double padded = 1, real = 1;
                    for (int a = 0; a < 3; a++) {
                        int start = o[a] * s[a] - p[a], end = start + k[a];
                        if (end > in[a] + p[a]) end = in[a] + p[a];
                        padded *= end - start;
                        lo[a] = start < 0 ? 0 : start;
                        hi[a] = end > in[a] ? in[a] : end;
                        real *= hi[a] - lo[a];
                    }
                    double acc = is_max ? -INFINITY : 0;
                    for (int a = lo[0]; a < hi[0]; a++)
                        for (int b = lo[1]; b < hi[1]; b++)
                            for (int c = lo[2]; c < hi[2]; c++) {
                                double v = x[((size_t)sc * in[0] + a) * in[1] * in[2] + (size_t)b * in[2] + c];
                                if (is_max) acc = v > acc ? v : acc;
                                else acc += v;
                            }
                    if (!is_max) acc /= l->spec.exclude_pad ? real : padded;
                    y[((size_t)sc * out[0] + z) * out[1] * out[2] + (size_t)yy * out[2] + xx] = acc;
                }
}

/* Graph ops: several inputs ins[0..n_inputs) of node l. */
static void graph_op(const nfv_layer *l, const nfv_model *m, double *const *ins, const double *cur, int n,
                     double *const *p, double *y)
{
    size_t on = (size_t)n * nfv_shape_numel(l->out_ndim, l->out_shape);
    int C = l->in_shape[0];
    size_t sp = l->in_ndim == 4 ? nfv_shape_numel(3, l->in_shape + 1) : 1;
    switch (l->spec.kind) {
    case NFV_LAYER_ADD:
        memset(y, 0, on * sizeof *y);
        for (int k = 0; k < l->n_inputs; k++)
            for (size_t e = 0; e < on; e++) y[e] += ins[k][e];
        break;
    case NFV_LAYER_CONCAT: {
        int ct = l->out_shape[0], off = 0;
        size_t osp = l->out_ndim == 4 ? nfv_shape_numel(3, l->out_shape + 1) : 1;
        for (int k = 0; k < l->n_inputs; k++) {
            int j = l->inputs[k], ck = j < 0 ? m->input_shape[0] : m->layers[j].out_shape[0];
            for (int b = 0; b < n; b++)
                memcpy(y + ((size_t)b * ct + off) * osp, ins[k] + (size_t)b * ck * osp, (size_t)ck * osp * sizeof *y);
            off += ck;
        }
        break;
    }
    case NFV_LAYER_SIGMOID:
        for (size_t e = 0; e < on; e++) y[e] = 1 / (1 + exp(-cur[e]));
        break;
    case NFV_LAYER_SOFTMAX:
    case NFV_LAYER_LOGSOFTMAX:
        for (int b = 0; b < n; b++)
            for (size_t e = 0; e < sp; e++) {
                double mx = -INFINITY, sum = 0;
                for (int c = 0; c < C; c++) mx = fmax(mx, cur[((size_t)b * C + c) * sp + e]);
                for (int c = 0; c < C; c++) sum += exp(cur[((size_t)b * C + c) * sp + e] - mx);
                for (int c = 0; c < C; c++) {
                    double v = cur[((size_t)b * C + c) * sp + e] - mx;
                    y[((size_t)b * C + c) * sp + e] = l->spec.kind == NFV_LAYER_LOGSOFTMAX ? v - log(sum) : exp(v) / sum;
                }
            }
        break;
    case NFV_LAYER_GMP:
        for (size_t bc = 0; bc < (size_t)n * C; bc++) {
            double mx = -INFINITY;
            for (size_t e = 0; e < sp; e++) mx = fmax(mx, cur[bc * sp + e]);
            y[bc] = mx;
        }
        break;
    case NFV_LAYER_INSTANCENORM:
        for (size_t bc = 0; bc < (size_t)n * C; bc++) {
            double mean = 0, var = 0;
            for (size_t e = 0; e < sp; e++) mean += cur[bc * sp + e];
            mean /= (double)sp;
            for (size_t e = 0; e < sp; e++) var += (cur[bc * sp + e] - mean) * (cur[bc * sp + e] - mean);
            double inv = 1 / sqrt(var / (double)sp + l->spec.alpha);
            int c = (int)(bc % (size_t)C);
            for (size_t e = 0; e < sp; e++) y[bc * sp + e] = p[0][c] * (cur[bc * sp + e] - mean) * inv + p[1][c];
        }
        break;
    case NFV_LAYER_PAD: {
        const int *in = l->in_shape + 1, *o = l->out_shape + 1, *bg = l->spec.padding;
        for (size_t e = 0; e < on; e++) y[e] = l->spec.alpha;
        for (size_t bc = 0; bc < (size_t)n * C; bc++)
            for (int a = 0; a < in[0]; a++)
                for (int b = 0; b < in[1]; b++)
                    for (int c = 0; c < in[2]; c++)
                        y[((bc * o[0] + a + bg[0]) * o[1] + b + bg[1]) * o[2] + c + bg[2]] =
                            cur[((bc * in[0] + a) * in[1] + b) * in[2] + c];
        break;
    }
    case NFV_LAYER_IDENTITY:
    case NFV_LAYER_RESHAPE: memcpy(y, cur, on * sizeof *y); break;
    default: fprintf(stderr, "ref_model: layer kind %d has no reference\n", (int)l->spec.kind); abort();
    }
}

void ref_model_forward(const nfv_model *m, const ref_params *rp, const double *x, int n, int training, int upto,
                       double *out)
{
    if (upto < 0) upto = m->layer_count - 1;
    /* Every node's output (a graph may read any earlier one). */
    double **outs = calloc((size_t)upto + 1, sizeof *outs);
    for (int i = 0; i <= upto; i++) {
        const nfv_layer *l = &m->layers[i];
        size_t on = (size_t)n * nfv_shape_numel(l->out_ndim, l->out_shape);
        double *y = malloc(on * sizeof *y);
        double *const *p = rp->p + i * 4;
        double *ins[NFV_NODE_MAX_INPUTS];
        for (int k = 0; k < l->n_inputs; k++) ins[k] = l->inputs[k] < 0 ? (double *)x : outs[l->inputs[k]];
        const double *cur = l->n_inputs ? ins[0] : x;
        double alpha = l->spec.alpha;
        switch (l->spec.kind) {
        case NFV_LAYER_CONV3D: conv(l, p[0], l->spec.bias ? p[1] : NULL, cur, n, y); break;
        case NFV_LAYER_MAXPOOL3D: pool(l, 1, cur, n, y); break;
        case NFV_LAYER_AVGPOOL3D: pool(l, 0, cur, n, y); break;
        case NFV_LAYER_BATCHNORM3D: {
            int C = l->in_shape[0];
            size_t sp = nfv_shape_numel(3, l->in_shape + 1);
            for (int c = 0; c < C; c++) {
                double mean = p[2][c], var = p[3][c];
                if (training) {
                    double s = 0, s2 = 0;
                    for (int b = 0; b < n; b++)
                        for (size_t e = 0; e < sp; e++) s += cur[((size_t)b * C + c) * sp + e];
                    mean = s / ((double)n * sp);
                    for (int b = 0; b < n; b++)
                        for (size_t e = 0; e < sp; e++) {
                            double d = cur[((size_t)b * C + c) * sp + e] - mean;
                            s2 += d * d;
                        }
                    var = s2 / ((double)n * sp);
                }
                double inv = 1.0 / sqrt(var + alpha);
                for (int b = 0; b < n; b++)
                    for (size_t e = 0; e < sp; e++) {
                        size_t idx = ((size_t)b * C + c) * sp + e;
                        y[idx] = p[0][c] * (cur[idx] - mean) * inv + p[1][c];
                    }
            }
            break;
        }
        case NFV_LAYER_RELU:
            for (size_t e = 0; e < on; e++) y[e] = cur[e] > 0 ? cur[e] : 0;
            break;
        case NFV_LAYER_LEAKY_RELU:
            for (size_t e = 0; e < on; e++) y[e] = cur[e] > 0 ? cur[e] : alpha * cur[e];
            break;
        case NFV_LAYER_ELU:
            for (size_t e = 0; e < on; e++) y[e] = cur[e] > 0 ? cur[e] : alpha * (exp(cur[e]) - 1);
            break;
        case NFV_LAYER_DROPOUT:
        case NFV_LAYER_FLATTEN: memcpy(y, cur, on * sizeof *y); break;
        case NFV_LAYER_GAP: {
            size_t sp = nfv_shape_numel(3, l->in_shape + 1);
            for (size_t sc = 0; sc < on; sc++) {
                double s = 0;
                for (size_t e = 0; e < sp; e++) s += cur[sc * sp + e];
                y[sc] = s / (double)sp;
            }
            break;
        }
        case NFV_LAYER_LINEAR: {
            int in = l->in_shape[0], o = l->out_shape[0];
            for (int b = 0; b < n; b++)
                for (int j = 0; j < o; j++) {
                    double acc = l->spec.bias ? p[1][j] : 0;
                    for (int e = 0; e < in; e++) acc += p[0][(size_t)j * in + e] * cur[(size_t)b * in + e];
                    y[(size_t)b * o + j] = acc;
                }
            break;
        }
        default: graph_op(l, m, ins, cur, n, p, y); break;
        }
        outs[i] = y;
    }
    const nfv_layer *last = &m->layers[upto];
    memcpy(out, outs[upto], (size_t)n * nfv_shape_numel(last->out_ndim, last->out_shape) * sizeof *out);
    for (int i = 0; i <= upto; i++) free(outs[i]);
    free(outs);
}

double ref_head_loss(const nfv_model *m, const double *out, const double *targets, int n, const double *cw)
{
    const nfv_layer *last = &m->layers[m->layer_count - 1];
    int k = (int)nfv_shape_numel(last->out_ndim, last->out_shape);
    double total = 0, wsum = 0;
    for (int i = 0; i < n; i++) {
        const double *row = out + (size_t)i * k;
        double t = targets[i];
        if (m->head == NFV_HEAD_SOFTMAX) {
            double mx = row[0], s = 0;
            for (int j = 1; j < k; j++) mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < k; j++) s += exp(row[j] - mx);
            double w = cw ? cw[(int)t] : 1;
            total += w * (log(s) + mx - row[(int)t]);
            wsum += w;
        } else if (m->head == NFV_HEAD_BINARY) {
            double z = row[0], pw = cw ? cw[1] / cw[0] : 1;
            /* -(pw * t * log(sigmoid z) + (1 - t) log(1 - sigmoid z)) */
            double log_sig = z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z));
            double log_1m = log_sig - z;
            total += -(pw * t * log_sig + (1 - t) * log_1m);
            wsum += 1;
        } else {
            total += (row[0] - t) * (row[0] - t);
            wsum += 1;
        }
    }
    return total / wsum;
}
