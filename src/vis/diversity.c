/* Lucid's diversity objective in 3D: the K starts of one target are
 * optimized together and pushed apart by the negative pairwise cosine
 * similarity of their Gram matrices at a chosen layer, so they show K facets
 * of the unit instead of K copies of its strongest pattern.
 *
 * For sample i with activation a_i (C, S) at the layer (S = D*H*W voxels):
 *   G_i = a_i a_i^T / S                      (C, C), style without position
 *   loss = w / K * sum_{i != j} cos(G_i, G_j)  over the starts of one target
 * (the objective gains -loss, as Lucid's diversity(layer) * w), and
 *   d loss / d G_i = 2 w / K * sum_{j != i} (G_j / (|G_i| |G_j|) - cos_ij G_i / |G_i|^2)
 *   d loss / d a_i = 2 (d loss / d G_i) a_i / S        (G symmetric).
 * The host computes it in double from the downloaded activation (C^2 S per
 * sample: small next to a forward); the gradient is the seed of a second
 * backward pass from the layer to the input, added to the objective's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vis/vis_internal.h"

double nfv_diversity_loss(const double *a, int K, int C, size_t S, double w, double *grad)
{
    size_t cc = (size_t)C * C;
    double *G = calloc((size_t)K * cc + 1, sizeof *G), *dG = calloc((size_t)K * cc + 1, sizeof *dG);
    double *norm = calloc((size_t)K + 1, sizeof *norm);
    if (!G || !dG || !norm) {
        free(G), free(dG), free(norm);
        return NAN;
    }
    for (int i = 0; i < K; i++) {
        const double *ai = a + (size_t)i * C * S;
        double *g = G + (size_t)i * cc, n2 = 0;
        for (int p = 0; p < C; p++)
            for (int q = p; q < C; q++) {
                double s = 0;
                for (size_t v = 0; v < S; v++) s += ai[(size_t)p * S + v] * ai[(size_t)q * S + v];
                g[(size_t)p * C + q] = g[(size_t)q * C + p] = s / (double)S;
            }
        for (size_t e = 0; e < cc; e++) n2 += g[e] * g[e];
        norm[i] = sqrt(n2) > 1e-30 ? sqrt(n2) : 1e-30;
    }
    double loss = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            if (i == j) continue;
            const double *gi = G + (size_t)i * cc, *gj = G + (size_t)j * cc;
            double dot = 0;
            for (size_t e = 0; e < cc; e++) dot += gi[e] * gj[e];
            double cs = dot / (norm[i] * norm[j]);
            loss += w / K * cs;
            /* The (i, j) and (j, i) terms are equal: each adds once here. */
            double *d = dG + (size_t)i * cc;
            for (size_t e = 0; e < cc; e++)
                d[e] += 2.0 * w / K * (gj[e] / (norm[i] * norm[j]) - cs * gi[e] / (norm[i] * norm[i]));
        }
    for (int i = 0; grad && i < K; i++) {
        const double *ai = a + (size_t)i * C * S, *d = dG + (size_t)i * cc;
        double *gr = grad + (size_t)i * C * S;
        for (int p = 0; p < C; p++)
            for (size_t v = 0; v < S; v++) {
                double s = 0;
                for (int q = 0; q < C; q++) s += d[(size_t)p * C + q] * ai[(size_t)q * S + v];
                gr[(size_t)p * S + v] = 2.0 * s / (double)S;
            }
    }
    free(G);
    free(dG);
    free(norm);
    return loss;
}

int vis_diversity_layer(const nfv_model *m, const char *name, int target_layer)
{
    if (name && *name) {
        char *end;
        long v = strtol(name, &end, 10);
        if (!*end && v >= 0 && v < m->layer_count) return (int)v;
        for (int l = 0; l < m->layer_count; l++)
            if (!strcmp(m->layers[l].name, name)) return l;
        return -1;
    }
    for (int l = target_layer - 1; l >= 0; l--)
        if (m->layers[l].out_ndim == 4) return l;
    return -1;
}

void vis_diversity_free(vis_diversity *d)
{
    nfv_tensor_free(&d->seed);
    nfv_tensor_free(&d->dx);
    free(d->host);
    free(d->ad);
    free(d->gd);
    memset(d, 0, sizeof *d);
}

nfv_status vis_diversity_add(vis_diversity *d, nfv_context *ctx, nfv_model *m, const nfv_vis_options *o,
                             const nfv_target *targets, const vis_sample *smp, int N, nfv_tensor *dx)
{
    int target_layer = targets[smp[0].target].layer;
    if (!d->seed.buf) {
        d->layer = vis_diversity_layer(m, o->diversity_layer, target_layer);
        if (d->layer < 0 || d->layer >= target_layer || m->layers[d->layer].out_ndim != 4)
            return nfv_fail(NFV_ERR_INVALID_ARG, "--diversity-layer %s: not a (C, D, H, W) layer before the target's "
                            "layer %s", o->diversity_layer[0] ? o->diversity_layer : "(default)",
                            m->layers[target_layer].name);
        const nfv_layer *l = &m->layers[d->layer];
        int shape[5] = {N, l->out_shape[0], l->out_shape[1], l->out_shape[2], l->out_shape[3]};
        d->per = nfv_shape_numel(4, l->out_shape);
        NFV_TRY(nfv_tensor_create(ctx, &d->seed, 5, shape));
        NFV_TRY(nfv_tensor_create(ctx, &d->dx, dx->ndim, dx->shape));
        d->host = malloc((size_t)N * d->per * sizeof *d->host);
        d->ad = malloc((size_t)N * d->per * sizeof *d->ad);
        d->gd = malloc((size_t)N * d->per * sizeof *d->gd);
        if (!d->host || !d->ad || !d->gd) return nfv_fail(NFV_ERR_NO_MEMORY, "diversity: out of memory");
    }
    const nfv_layer *l = &m->layers[d->layer];
    int C = l->out_shape[0];
    size_t S = d->per / (size_t)C;
    NFV_TRY(nfv_tensor_download(ctx, nfv_model_activation(m, d->layer), d->host));
    memset(d->gd, 0, (size_t)N * d->per * sizeof *d->gd);
    /* Samples of one target are consecutive in a batch (vis_run.c orders them so). */
    for (int i = 0; i < N;) {
        int j = i;
        while (j < N && smp[j].target == smp[i].target) j++;
        if (j - i > 1) {
            for (size_t e = 0; e < (size_t)(j - i) * d->per; e++) d->ad[e] = d->host[(size_t)i * d->per + e];
            nfv_diversity_loss(d->ad, j - i, C, S, o->diversity, d->gd + (size_t)i * d->per);
        }
        i = j;
    }
    for (size_t e = 0; e < (size_t)N * d->per; e++) d->host[e] = (float)d->gd[e];
    NFV_TRY(nfv_tensor_upload(ctx, &d->seed, d->host));
    /* seed = d loss / d a, the loop's convention (-d objective / d a). */
    NFV_TRY(nfv_model_backward(m, ctx, d->layer, &d->seed, 0, &d->dx));
    return nfv_axpy(ctx, 1.0f, &d->dx, dx);
}
