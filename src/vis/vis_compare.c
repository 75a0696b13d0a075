/* Comparison of regularization configurations: the default set, the
 * high-frequency energy share, concept recovery against a synthetic cohort's
 * ground truth, and the CSV / Markdown / HTML report. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
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

/* ---- report ---------------------------------------------------------------- */

static void html_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

typedef struct summary {
    int recovered, with_truth, n;
    double obj, obj_clean, hf, secs;
} summary;

static summary summarize(const char *config, const nfv_compare_row *rows, int nrows)
{
    summary s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < nrows; i++) {
        if (strcmp(rows[i].config, config)) continue;
        s.n++;
        s.obj += rows[i].objective;
        s.obj_clean += rows[i].objective_clean;
        s.hf += rows[i].hf_share;
        s.secs += rows[i].seconds;
        if (rows[i].has_truth && rows[i].truth_class[0]) {
            s.with_truth++;
            s.recovered += rows[i].recovered;
        }
    }
    if (s.n) {
        s.obj /= s.n;
        s.obj_clean /= s.n;
        s.hf /= s.n;
    }
    return s;
}

static const nfv_compare_row *find_row(const nfv_compare_row *rows, int nrows, const char *config, const char *target,
                                       unsigned long long seed)
{
    for (int i = 0; i < nrows; i++)
        if (!strcmp(rows[i].config, config) && !strcmp(rows[i].target, target) && rows[i].seed == seed) return &rows[i];
    return NULL;
}

/* The target without its class: "contrast:cube@1,2,2" -> "contrast@1,2,2". */
static void target_family(const char *target, char *buf, size_t cap)
{
    size_t colon = strcspn(target, ":");
    const char *cell = strchr(target, '@');
    snprintf(buf, cap, "%.*s%s", (int)colon, target, cell ? cell : "");
}

void nfv_compare_recovery_text(const char *config, const nfv_compare_row *rows, int nrows, char *buf, size_t cap)
{
    /* Families and seeds of config's class rows, in first-seen order. */
    char fams[64][160];
    unsigned long long seeds[64];
    int nf = 0, ns = 0;
    for (int i = 0; i < nrows; i++) {
        if (strcmp(rows[i].config, config) || !rows[i].truth_class[0]) continue;
        char fam[160];
        target_family(rows[i].target, fam, sizeof fam);
        int f = 0, s = 0;
        while (f < nf && strcmp(fams[f], fam)) f++;
        if (f == nf && nf < 64) snprintf(fams[nf++], sizeof fams[0], "%s", fam);
        while (s < ns && seeds[s] != rows[i].seed) s++;
        if (s == ns && ns < 64) seeds[ns++] = rows[i].seed;
    }
    /* A (family, seed) run is complete when none of its class rows failed. */
    size_t used = 0;
    buf[0] = 0;
    for (int f = 0; f < nf && used < cap; f++) {
        int runs = 0, complete = 0;
        for (int s = 0; s < ns; s++) {
            int present = 0, all = 1;
            for (int i = 0; i < nrows; i++) {
                char fam[160];
                if (strcmp(rows[i].config, config) || !rows[i].truth_class[0] || rows[i].seed != seeds[s]) continue;
                target_family(rows[i].target, fam, sizeof fam);
                if (strcmp(fam, fams[f])) continue;
                present = 1;
                all &= rows[i].recovered;
            }
            runs += present;
            complete += present && all;
        }
        int w = snprintf(buf + used, cap - used, "%s%s %d/%d seed%s", used ? ", " : "", fams[f], complete, runs,
                         runs == 1 ? "" : "s");
        if (w > 0) used += (size_t)w;
    }
    if (!buf[0]) snprintf(buf, cap, "-");
}

nfv_status nfv_compare_write_report(const char *dir, const char *model_path, const nfv_compare_config *configs,
                                    int nconfigs, const nfv_compare_row *rows, int nrows)
{
    char path[4200];
    NFV_TRY(nfv_mkdirs(dir));
    int any_truth = 0;
    for (int i = 0; i < nrows; i++) any_truth |= rows[i].has_truth && rows[i].truth_class[0];

    /* Seeds in first-seen order. */
    unsigned long long seeds[64];
    int nseeds = 0;
    for (int i = 0; i < nrows; i++) {
        int seen = 0;
        for (int j = 0; j < nseeds; j++) seen |= seeds[j] == rows[i].seed;
        if (!seen && nseeds < 64) seeds[nseeds++] = rows[i].seed;
    }
    char seed_list[512] = "";
    for (int j = 0, used = 0; j < nseeds && used < (int)sizeof seed_list; j++)
        used += snprintf(seed_list + used, sizeof seed_list - (size_t)used, "%s%llu", j ? ", " : "", seeds[j]);

    /* CSV */
    snprintf(path, sizeof path, "%s/results.csv", dir);
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    FILE *f = af.f;
    fprintf(f, "config,seed,target,objective,objective_without_transforms,hf_share,truth_class,own_ncc,best_shape,"
               "best_ncc,recovered,margin,own_x_mm,own_y_mm,own_z_mm,seconds\n");
    for (int i = 0; i < nrows; i++) {
        const nfv_compare_row *r = &rows[i];
        fprintf(f, "%s,%llu,%s,%.6g,%.6g,%.4f,%s,", r->config, r->seed, r->target, r->objective, r->objective_clean,
                r->hf_share, r->truth_class);
        if (r->has_truth && r->truth_class[0]) {
            fprintf(f, "%.4f,%s,%.4f,%d,", r->own_score, r->best_shape, r->best_score, r->recovered);
            if (isfinite(r->margin)) fprintf(f, "%.4f", r->margin);
            fprintf(f, ",%.1f,%.1f,%.1f,", r->own_mm[0], r->own_mm[1], r->own_mm[2]);
        } else if (r->has_truth)
            fprintf(f, ",%s,%.4f,,,,,,", r->best_shape, r->best_score);
        else
            fprintf(f, ",,,,,,,,");
        fprintf(f, "%.2f\n", r->seconds);
    }
    NFV_TRY(nfv_atomic_commit(&af));

    /* Markdown */
    snprintf(path, sizeof path, "%s/results.md", dir);
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    f = af.f;
    fprintf(f, "# Regularization comparison\n\nModel: `%s`\n\n", model_path);
    fprintf(f, "HF share = fraction of the spectral energy (DFT of the volume minus its mean) at radius |f| > 0.25 "
               "cycles/voxel, i.e. above half the Nyquist radius.\n");
    if (any_truth)
        fprintf(f, "Concept recovery: for each class target, NCC of the visualization (negated when the cohort's "
                   "lesions are darker than tissue) with each shape template, best position with the template box inside the brain mask; recovered = the class's own "
                   "shape scores best.\n");
    fprintf(f, "Seed%s: %s.\n", nseeds == 1 ? "" : "s", seed_list);
    if (any_truth)
        fprintf(f, "Every class recovered: per target family, the seeds in which every class's own shape scored "
                   "best; classes recovered counts single targets over all seeds.\n");
    fprintf(f, "\n## Summary per configuration\n\n| config | options | %smean objective | mean objective without "
               "transforms | mean HF share | seconds |\n|---|---|%s---|---|---|---|\n",
            any_truth ? "every class recovered | classes recovered | " : "", any_truth ? "---|---|" : "");
    for (int c = 0; c < nconfigs; c++) {
        summary s = summarize(configs[c].name, rows, nrows);
        fprintf(f, "| %s | `%s` | ", configs[c].name, configs[c].options[0] ? configs[c].options : "(none)");
        char text[512];
        nfv_compare_recovery_text(configs[c].name, rows, nrows, text, sizeof text);
        if (any_truth) fprintf(f, "%s | %d/%d | ", text, s.recovered, s.with_truth);
        fprintf(f, "%.4g | %.4g | %.3f | %.1f |\n", s.obj, s.obj_clean, s.hf, s.secs);
    }
    fprintf(f, "\n## Per target\n\n| config | seed | target | objective | without transforms | HF share |%s\n"
               "|---|---|---|---|---|---|%s\n",
            any_truth ? " own-shape NCC | best shape (NCC) | margin | recovered | own-shape match at (mm) |" : "",
            any_truth ? "---|---|---|---|---|" : "");
    for (int i = 0; i < nrows; i++) {
        const nfv_compare_row *r = &rows[i];
        fprintf(f, "| %s | %llu | %s | %.4g | %.4g | %.3f |", r->config, r->seed, r->target, r->objective,
                r->objective_clean, r->hf_share);
        if (any_truth) {
            if (r->has_truth && r->truth_class[0])
                fprintf(f, " %.3f | %s (%.3f) | %+.3f | %s | %.0f, %.0f, %.0f |", r->own_score, r->best_shape,
                        r->best_score, isfinite(r->margin) ? r->margin : 0.0, r->recovered ? "yes" : "no",
                        r->own_mm[0], r->own_mm[1], r->own_mm[2]);
            else
                fprintf(f, " | | | | |");
        }
        fputc('\n', f);
    }
    NFV_TRY(nfv_atomic_commit(&af));

    /* HTML: configurations as columns, targets as rows. */
    snprintf(path, sizeof path, "%s/index.html", dir);
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    f = af.f;
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>neurofv compare</title>\n<style>"
               "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
               "padding:4px;vertical-align:top;font-size:12px}img{max-width:260px}.ok{color:#070}.no{color:#a00}"
               "</style></head><body>\n<h1>Regularization comparison</h1>\n<p>Model: <code>");
    html_escape(f, model_path);
    fprintf(f, "</code>. Tables: <a href=\"results.csv\">results.csv</a>, <a href=\"results.md\">results.md</a>.</p>\n"
               "<p>HF share = fraction of spectral energy (DFT of the volume minus its mean) above half the Nyquist "
               "radius (|f| &gt; 0.25 cycles/voxel).");
    if (any_truth)
        fprintf(f, " Concept recovery: NCC of the visualization (negated for dark lesions) with each shape template (best position with the template box in "
                   "the brain mask); recovered when the class's own shape scores best.");
    fprintf(f, " Seed%s: %s.", nseeds == 1 ? "" : "s", seed_list);
    if (any_truth)
        fprintf(f, " Every class recovered: per target family, the seeds in which every class's own shape scored best.");
    fprintf(f, "</p>\n<h2>Summary</h2>\n<table><tr><th>config</th><th>options</th>%s<th>mean objective</th>"
               "<th>mean objective without transforms</th><th>mean HF share</th><th>seconds</th></tr>\n",
            any_truth ? "<th>every class recovered</th><th>classes recovered</th>" : "");
    for (int c = 0; c < nconfigs; c++) {
        summary s = summarize(configs[c].name, rows, nrows);
        fprintf(f, "<tr><td>");
        html_escape(f, configs[c].name);
        fprintf(f, "</td><td><code>");
        html_escape(f, configs[c].options[0] ? configs[c].options : "(none)");
        fprintf(f, "</code></td>");
        if (any_truth) {
            char text[512];
            nfv_compare_recovery_text(configs[c].name, rows, nrows, text, sizeof text);
            fprintf(f, "<td>");
            html_escape(f, text);
            fprintf(f, "</td><td>%d/%d</td>", s.recovered, s.with_truth);
        }
        fprintf(f, "<td>%.4g</td><td>%.4g</td><td>%.3f</td><td>%.1f</td></tr>\n", s.obj, s.obj_clean, s.hf, s.secs);
    }
    fprintf(f, "</table>\n<h2>Images</h2>\n<p>Each cell: orthogonal slices through the best match of the class's own "
               "shape template when there is ground truth, else through the peak (overlay on the template when it was "
               "written); numbers below.</p>\n<table><tr><th>target</th>");
    for (int c = 0; c < nconfigs; c++) {
        fprintf(f, "<th>");
        html_escape(f, configs[c].name);
        fprintf(f, "</th>");
    }
    fprintf(f, "</tr>\n");
    /* Targets in first-seen order, one row per seed. */
    for (int i = 0; i < nrows; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= !strcmp(rows[j].target, rows[i].target);
        if (seen) continue;
        for (int sd = 0; sd < nseeds; sd++) {
            fprintf(f, "<tr><th>");
            html_escape(f, rows[i].target);
            if (nseeds > 1) fprintf(f, "<br>seed %llu", seeds[sd]);
            fprintf(f, "</th>");
            for (int c = 0; c < nconfigs; c++) {
                const nfv_compare_row *r = find_row(rows, nrows, configs[c].name, rows[i].target, seeds[sd]);
                fprintf(f, "<td>");
                if (r) {
                    char img[600];
                    snprintf(img, sizeof img, "%s/%s/%s_overlay.png", dir, r->dir, r->stem);
                    int has_overlay = access(img, R_OK) == 0;
                    snprintf(img, sizeof img, "%s/%s/%s_match.png", dir, r->dir, r->stem);
                    int has_match = r->has_truth && r->truth_class[0] && access(img, R_OK) == 0;
                    /* With ground truth: the slices through the own shape's best match (what the score saw). */
                    fprintf(f, "<a href=\"%s/%s.nii.gz\"><img src=\"%s/%s_%s.png\" alt=\"%s\"></a><br>", r->dir,
                            r->stem, r->dir, r->stem, has_match ? "match" : has_overlay ? "overlay" : "ortho", r->stem);
                    if (has_match)
                        fprintf(f, "%s match at %.0f, %.0f, %.0f mm (<a href=\"%s/%s_%s.png\">peak</a>)<br>",
                                r->truth_class, r->own_mm[0], r->own_mm[1], r->own_mm[2], r->dir, r->stem,
                                has_overlay ? "overlay" : "ortho");
                    fprintf(f, "obj %.4g, clean %.4g, HF %.3f", r->objective, r->objective_clean, r->hf_share);
                    if (r->has_truth && r->truth_class[0])
                        fprintf(f, "<br>own NCC %.3f, best %s %.3f <b class=\"%s\">%s</b>", r->own_score,
                                r->best_shape, r->best_score, r->recovered ? "ok" : "no",
                                r->recovered ? "recovered" : "not recovered");
                    fprintf(f, "<br><a href=\"%s/%s_mosaic.png\">mosaic</a> <a href=\"%s/%s.json\">log</a>", r->dir,
                            r->stem, r->dir, r->stem);
                }
                fprintf(f, "</td>");
            }
            fprintf(f, "</tr>\n");
        }
    }
    fprintf(f, "</table>\n</body></html>\n");
    return nfv_atomic_commit(&af);
}
