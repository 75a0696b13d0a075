/* Comparison of regularization configurations: the default set, the
 * high-frequency energy share and concept recovery against a synthetic
 * cohort's ground truth.  The report is written by vis_report.c. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
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

void nfv_truth_free(nfv_truth *t)
{
    for (int i = 0; i < t->count; i++) {
        free(t->names[i]);
        nfv_volume_free(&t->shapes[i]);
    }
    free(t->names);
    free(t->shapes);
    nfv_volume_free(&t->mask);
    memset(t, 0, sizeof *t);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Lesion polarity from DIR/cohort.json's lesion_intensity (multiples of the
 * white-matter intensity): +1 when their mean is >= 1 (bright lesions, synth's
 * default), else -1.  A cohort without cohort.json is taken as bright. */
static nfv_status truth_polarity(const char *dir, int *polarity)
{
    *polarity = 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/cohort.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return NFV_OK;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    if (!j) return nfv_fail(NFV_ERR_FORMAT, "--truth: %s is not valid JSON", path);
    const cJSON *li = cJSON_GetObjectItemCaseSensitive(j, "lesion_intensity");
    if (cJSON_IsArray(li) && cJSON_GetArraySize(li) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(li, 0)) &&
        cJSON_IsNumber(cJSON_GetArrayItem(li, 1))) {
        double mean = 0.5 * (cJSON_GetArrayItem(li, 0)->valuedouble + cJSON_GetArrayItem(li, 1)->valuedouble);
        *polarity = mean >= 1.0 ? 1 : -1;
    }
    cJSON_Delete(j);
    return NFV_OK;
}

nfv_status nfv_truth_load(const nfv_model *m, const char *dir, nfv_truth *out)
{
    memset(out, 0, sizeof *out);
    char path[4096];
    snprintf(path, sizeof path, "%s/shapes", dir);
    DIR *d = opendir(path);
    if (!d)
        return nfv_fail(NFV_ERR_IO, "--truth %s: no shapes/ directory (%s); expected a `neurofv synth --task lesion` output",
                        dir, strerror(errno));
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 7 && !strcmp(e->d_name + len - 7, ".nii.gz")) {
            char **p = realloc(names, (size_t)(n + 1) * sizeof *p);
            if (!p) break;
            names = p;
            names[n] = malloc(len - 6);
            if (!names[n]) break;
            memcpy(names[n], e->d_name, len - 7);
            names[n][len - 7] = 0;
            n++;
        }
    }
    closedir(d);
    if (n == 0) {
        free(names);
        return nfv_fail(NFV_ERR_FORMAT, "--truth %s: shapes/ holds no .nii.gz shape templates", dir);
    }
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    out->names = names;
    out->count = n;
    out->shapes = calloc((size_t)n, sizeof *out->shapes);
    if (!out->shapes) {
        nfv_truth_free(out);
        return nfv_fail(NFV_ERR_NO_MEMORY, "truth: out of memory");
    }
    nfv_status st = NFV_OK;
    for (int i = 0; i < n && !st; i++) {
        nfv_volume v;
        snprintf(path, sizeof path, "%s/shapes/%s.nii.gz", dir, names[i]);
        st = nfv_volume_read(path, &v, NULL);
        if (st) break;
        /* The template at the model's voxel size (synth writes the cohort's). */
        double vx = fabs(v.affine[0][0]) + fabs(v.affine[1][0]) + fabs(v.affine[2][0]);
        if (fabs(vx - m->voxel_mm[0]) > 1e-3) {
            st = nfv_volume_resample(&v, m->voxel_mm, &out->shapes[i]);
            nfv_volume_free(&v);
        } else {
            out->shapes[i] = v;
        }
    }
    if (!st) {
        nfv_volume mk;
        snprintf(path, sizeof path, "%s/mask.nii.gz", dir);
        st = nfv_volume_read(path, &mk, NULL);
        if (!st) {
            st = nfv_volume_resample_to(&mk, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                                        (const double(*)[4])m->affine, 0.0f, &out->mask);
            nfv_volume_free(&mk);
        }
    }
    if (st) {
        nfv_truth_free(out);
        return nfv_fail_context(st, "--truth %s", dir);
    }
    for (size_t i = 0; i < nfv_volume_numel(&out->mask); i++) out->mask.data[i] = out->mask.data[i] > 0.5f;
    return truth_polarity(dir, &out->polarity);
}

nfv_status nfv_truth_scores(const nfv_truth *t, const nfv_volume *vis, double *score, int (*pos)[3])
{
    size_t n = nfv_volume_numel(vis);
    if (n != nfv_volume_numel(&t->mask))
        return nfv_fail(NFV_ERR_INVALID_ARG, "truth scores: the visualization (%dx%dx%d) is not on the mask's grid",
                        vis->nx, vis->ny, vis->nz);
    float *neg = malloc(n * sizeof *neg);
    if (!neg) return nfv_fail(NFV_ERR_NO_MEMORY, "truth scores: out of memory");
    for (size_t i = 0; i < n; i++) neg[i] = (float)t->polarity * vis->data[i];
    int dims[3] = {vis->nz, vis->ny, vis->nx};
    nfv_status st = NFV_OK;
    for (int i = 0; i < t->count && !st; i++) {
        const nfv_volume *s = &t->shapes[i];
        int td[3] = {s->nz, s->ny, s->nx};
        nfv_ncc_result r;
        st = nfv_ncc_search(neg, dims, t->mask.data, s->data, td, &r);
        score[i] = r.score;
        if (pos) {
            /* nfv_ncc_search reports (z, y, x) = (k, j, i). */
            pos[i][0] = r.pos[2];
            pos[i][1] = r.pos[1];
            pos[i][2] = r.pos[0];
        }
    }
    free(neg);
    return st;
}
