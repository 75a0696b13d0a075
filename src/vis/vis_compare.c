/* Comparison of regularization configurations: the default set and the
 * high-frequency energy share.  Concept recovery against a synthetic
 * cohort's ground truth is in truth.c; the report is written by
 * vis_report.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/compare.h"
#include "neurofv/vis_ops.h"

/* Shared transformation-robustness settings (Lucid's defaults, the authors'
 * jitter): pad 4, jitter +-3 voxels, scale 0.9-1.1, rotation +-10 degrees. */
#define ROBUST "--pad 4 --jitter 3 --scale 0.9,1.1 --rotate 10"

/* Penalty weights: on a ref4 lesion model (4 mm) after 40 steps, logit ~44
 * unregularized; --l2 W --tv W with W = 1 cost ~3 % of it, W = 30 about half,
 * W = 300 all: 5 alone (2 each in `all`) is a clear but not crushing prior. */
static const nfv_compare_config default_configs[] = {
    {"none", ""},
    {"l2", "--l2 5"},
    {"tv", "--tv 5"},
    {"blur", "--blur 1 --blur-every 4"},
    {"robust", ROBUST},
    {"fourier", "--param fourier --decay 1"},
    {"fourier+robust", "--param fourier --decay 1 " ROBUST},
    {"all", "--param fourier --decay 1 " ROBUST " --l2 2 --tv 2 --blur 1 --blur-every 4 --mask brain"},
    /* `all` without the brain mask: what the mask prior itself adds or costs. */
    {"all-no-mask", "--param fourier --decay 1 " ROBUST " --l2 2 --tv 2 --blur 1 --blur-every 4"},
    /* MACO (needs the model's cohort spectrum): the phase only, with MACO's
     * own transforms (crops shrinking from 0.9 to 0.6 of the grid, noise
     * 0.05 SD), or with Lucid's robustness set instead.  lr 0.1: a phase
     * moves in radians. */
    {"maco", "--param maco --lr 0.1 --crop 0.9,0.6 --noise 0.05"},
    {"maco+robust", "--param maco --lr 0.1 " ROBUST},
    /* One lesion-sized object: the change only inside a 48 mm ball in deep
     * white matter (its centre from the template, no labels), Fourier with
     * milder robustness (a ball jittered by 3 voxels at 4 mm leaves its
     * place) and light L2 + TV.  A class logit of a translation-invariant
     * model otherwise tiles the volume with fragments of its evidence, which
     * no single shape matches.  Chosen on one volume-matched cohort (sphere,
     * cube, cross) and then run on a held-out one (README). */
    {"one-lesion", "--param fourier --decay 1 --jitter 2 --scale 0.95,1.05 --rotate 5 --mask ball=24 --l2 0.5 --tv 0.5"},
};

nfv_status nfv_compare_default_configs(nfv_compare_config **out, int *count)
{
    int n = (int)(sizeof default_configs / sizeof *default_configs);
    *out = malloc(sizeof default_configs);
    if (!*out) return nfv_fail(NFV_ERR_NO_MEMORY, "configs: out of memory");
    memcpy(*out, default_configs, sizeof default_configs);
    *count = n;
    return NFV_OK;
}

nfv_status nfv_highfreq_share(nfv_context *ctx, const nfv_volume *v, double cutoff, double *share)
{
    int D = v->nz, H = v->ny, W = v->nx;
    size_t n = nfv_volume_numel(v);
    nfv_fourier *f = NULL;
    nfv_tensor x, c;
    memset(&x, 0, sizeof x);
    memset(&c, 0, sizeof c);
    int shape[5] = {1, 1, D, H, W};
    /* decay 0: the scale is 1 everywhere, so the adjoint is the plain orthonormal Hartley transform. */
    nfv_status st = nfv_fourier_create(ctx, NFV_FOURIER_DFT, D, H, W, 0.0f, &f);
    if (!st) st = nfv_tensor_create(ctx, &x, 5, shape);
    if (!st) st = nfv_tensor_create(ctx, &c, 5, shape);
    if (!st) st = nfv_tensor_upload(ctx, &x, v->data);
    if (!st) st = nfv_fourier_adjoint(ctx, f, &x, &c);
    float *coef = st ? NULL : malloc(n * sizeof *coef);
    if (!st && !coef) st = nfv_fail(NFV_ERR_NO_MEMORY, "high-frequency share: out of memory");
    if (!st) st = nfv_tensor_download(ctx, &c, coef);
    if (!st) {
        double hi = 0, total = 0;
        for (int z = 0; z < D; z++) {
            double fz = (double)(z < D - z ? z : D - z) / D;
            for (int y = 0; y < H; y++) {
                double fy = (double)(y < H - y ? y : H - y) / H;
                for (int xx = 0; xx < W; xx++) {
                    if (!z && !y && !xx) continue; /* the mean */
                    double fx = (double)(xx < W - xx ? xx : W - xx) / W;
                    double e = (double)coef[((size_t)z * H + y) * W + xx];
                    e *= e;
                    total += e;
                    if (sqrt(fz * fz + fy * fy + fx * fx) > cutoff) hi += e;
                }
            }
        }
        *share = total > 0 ? hi / total : 0.0;
    }
    free(coef);
    nfv_tensor_free(&x);
    nfv_tensor_free(&c);
    if (f) nfv_fourier_free(f);
    return st;
}
