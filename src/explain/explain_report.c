/* The report of an explain run: one row per method (mass in the lesion,
 * pointing game, time), the rank correlations between methods and, on an
 * age cohort, the correlation with the age-effect map; CSV for machines,
 * Markdown for the README, HTML with the pictures.  Each file is written to
 * a temporary name and renamed. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>
#include <unistd.h>

#include "base/fs.h"
#include "neurofv/explain.h"
#include "neurofv/viewer.h"

/* Mean and SD of a sum and a sum of squares over n. */
static void mean_sd(double sum, double sq, int n, double *mean, double *sd)
{
    *mean = n ? sum / n : NAN;
    double var = n > 1 ? (sq - sum * sum / n) / (n - 1) : NAN;
    *sd = var > 0 ? sqrt(var) : (n > 1 ? 0 : NAN);
}

static nfv_status write_csv(const nfv_explain_summary *s, const char *path)
{
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    fprintf(af.f, "method,subjects,seconds_per_subject,scored,mass_in_lesion_mean,mass_in_lesion_sd,pointing_game,"
                  "chance_mass,effect_r,effect_abs_r,effect_mass,effect_chance\n");
    for (int k = 0; k < s->count; k++) {
        double mean, sd;
        mean_sd(s->mass[k], s->mass_sq[k], s->scored, &mean, &sd);
        fprintf(af.f, "%s,%d,%.3f,%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n", nfv_explain_method_name(s->method[k]),
                s->subjects, s->subjects ? s->seconds[k] / s->subjects : NAN, s->scored, mean, sd,
                s->scored ? (double)s->hits[k] / s->scored : NAN, s->scored ? s->chance / s->scored : NAN,
                s->effect_r[k], s->effect_abs_r[k], s->effect_mass[k], s->effect_chance);
    }
    return nfv_atomic_commit(&af);
}

/* The feature visualizations scored against the same truth. */
static void vis_table(FILE *f, const nfv_explain_summary *s, int html)
{
    if (!s->vis_count) return;
    const char *row0 = html ? "<tr><td>" : "| ", *sep = html ? "</td><td>" : " | ", *row1 = html ? "</td></tr>\n" : " |\n";
    fprintf(f, html ? "<h2>Feature visualizations against the same truth</h2>\n<table>\n<tr><th>target</th><th>file</th>"
                      "<th>importance mass in the class's lesion region</th><th>pointing game</th><th>chance (region / brain)</th>"
                      "<th>mass inside the brain</th><th>r with age effect</th><th>mass in age-effect region</th></tr>\n"
                    : "\nFeature visualizations against the same truth (importance: mean |d objective / d image| over the "
                      "optimization; region: the union of the class's lesion masks):\n\n| target | file | importance mass in "
                      "the class's lesion region | pointing game | chance (region / brain) | mass inside the brain | r with age "
                      "effect | mass in age-effect region |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < s->vis_count; i++) {
        const nfv_explain_vis_score *v = &s->vis[i];
        fprintf(f, "%s%s%s%s%s%.3f%s%s%s%.3f%s%.3f%s%.3f%s%.3f", row0, v->target, sep, v->file, sep, v->mass, sep,
                v->hit < 0 ? "n/a" : v->hit ? "hit" : "miss", sep, v->chance, sep, v->brain_mass, sep, v->effect_r, sep,
                v->effect_mass);
        fputs(row1, f);
    }
    if (html) fputs("</table>\n", f);
}

/* The tables, as Markdown (html = 0) or HTML (html = 1). */
static void tables(FILE *f, const nfv_explain_summary *s, int html)
{
    const char *row0 = html ? "<tr><td>" : "| ", *sep = html ? "</td><td>" : " | ", *row1 = html ? "</td></tr>\n" : " |\n";
    int lesion = s->scored > 0, age = 0;
    for (int k = 0; k < s->count; k++) age |= !isnan(s->effect_r[k]);
    fprintf(f, html ? "<table>\n<tr><th>method</th><th>s / subject</th>" : "| method | s / subject");
    if (lesion) fprintf(f, html ? "<th>mass in lesion (mean &plusmn; SD)</th><th>pointing game</th>" : " | mass in lesion (mean ± SD) | pointing game");
    if (age)
        fprintf(f, html ? "<th>r with age effect</th><th>r of |maps|</th><th>mass in age-effect region</th>"
                        : " | r with age effect | r of \\|maps\\| | mass in age-effect region");
    fprintf(f, html ? "</tr>\n" : " |\n");
    if (!html) {
        fprintf(f, "|---|---:");
        if (lesion) fprintf(f, "|---:|---:");
        if (age) fprintf(f, "|---:|---:|---:");
        fprintf(f, "|\n");
    }
    for (int k = 0; k < s->count; k++) {
        fprintf(f, "%s%s%s%.2f", row0, nfv_explain_method_name(s->method[k]), sep,
                s->subjects ? s->seconds[k] / s->subjects : NAN);
        if (lesion) {
            double mean, sd;
            mean_sd(s->mass[k], s->mass_sq[k], s->scored, &mean, &sd);
            fprintf(f, "%s%.3f %s %.3f%s%d/%d (%.0f %%)", sep, mean, html ? "&plusmn;" : "±", sd, sep, s->hits[k],
                    s->scored, 100.0 * s->hits[k] / s->scored);
        }
        if (age) fprintf(f, "%s%.3f%s%.3f%s%.3f", sep, s->effect_r[k], sep, s->effect_abs_r[k], sep, s->effect_mass[k]);
        fputs(row1, f);
    }
    if (html) fputs("</table>\n", f);
    if (lesion)
        fprintf(f, html ? "<p>Chance (lesion voxels / brain voxels): %.4f, over %d subjects with a lesion mask.</p>\n"
                        : "\nChance (lesion voxels / brain voxels): %.4f, over %d subjects with a lesion mask.\n",
                s->chance / s->scored, s->scored);
    if (age)
        fprintf(f, html ? "<p>Chance (age-effect region / brain voxels): %.4f; the region is where |effect| &ge; 20 %% of its maximum.</p>\n"
                        : "\nChance (age-effect region / brain voxels): %.4f; the region is where |effect| >= 20 %% of its maximum.\n",
                s->effect_chance);
    if (s->spearman_n && s->count > 1) {
        fprintf(f, html ? "<h2>Spearman rank correlation of |maps| between methods</h2>\n<table>\n<tr><th></th>"
                        : "\nSpearman rank correlation of |maps| between methods (mean over %d subjects, brain voxels):\n\n| |",
                s->spearman_n);
        for (int k = 0; k < s->count; k++)
            fprintf(f, html ? "<th>%s</th>" : " %s |", nfv_explain_method_name(s->method[k]));
        fputs(html ? "</tr>\n" : "\n|---|", f);
        if (!html) {
            for (int k = 0; k < s->count; k++) fputs("---:|", f);
            fputc('\n', f);
        }
        for (int a = 0; a < s->count; a++) {
            fprintf(f, "%s%s", row0, nfv_explain_method_name(s->method[a]));
            for (int b = 0; b < s->count; b++) fprintf(f, "%s%.2f", sep, s->spearman[a][b] / s->spearman_n);
            fputs(row1, f);
        }
        if (html) fputs("</table>\n", f);
    }
    vis_table(f, s, html);
}

static nfv_status write_md(const nfv_explain_summary *s, const char *path)
{
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    fprintf(af.f, "# Attribution: %s, target %s, %d subjects\n\n", s->model, s->target, s->subjects);
    tables(af.f, s, 0);
    return nfv_atomic_commit(&af);
}

static nfv_status write_html(const nfv_explain_summary *s, const char *path, const char *const *pictures,
                             const char *const *captions, int npictures, int viewer, const nfv_viewer_item *items)
{
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    FILE *f = af.f;
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>neurofv explain</title>\n"
               "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}figure{display:inline-block;margin:8px}"
               "img{max-width:640px}</style></head><body>\n");
    fprintf(f, "<h1>Attribution</h1>\n<p>Model %s, target %s, %d subjects. Scores use |map|: the share of "
               "attribution mass inside the subject's lesion mask (relevance mass accuracy) and whether the largest "
               "|map| voxel lies inside it (pointing game).</p>\n",
            s->model, s->target, s->subjects);
    nfv_viewer_html(f, viewer, items, viewer ? npictures : 1);
    tables(f, s, 1);
    for (int i = 0; i < npictures; i++) {
        fprintf(f, "<figure>");
        if (viewer) fprintf(f, "<a href=\"#%s\">", items[i].id);
        fprintf(f, "<img src=\"%s\" alt=\"%s\">%s<figcaption>%s", pictures[i], captions[i], viewer ? "</a>" : "",
                captions[i]);
        if (viewer) fprintf(f, " (<a href=\"#%s\">view</a>)", items[i].id);
        fprintf(f, "</figcaption></figure>\n");
    }
    fprintf(f, "<p>Files: <a href=\"summary.csv\">summary.csv</a>, <a href=\"subjects.csv\">subjects.csv</a>, "
               "<a href=\"summary.md\">summary.md</a>.</p>\n</body></html>\n");
    return nfv_atomic_commit(&af);
}

static nfv_status write_vis_csv(const nfv_explain_summary *s, const char *path)
{
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    fprintf(af.f, "target,file,mass_in_region,pointing_hit,chance,mass_in_brain,effect_r,effect_mass\n");
    for (int i = 0; i < s->vis_count; i++) {
        const nfv_explain_vis_score *v = &s->vis[i];
        fprintf(af.f, "%s,%s,%.4f,%d,%.4f,%.4f,%.4f,%.4f\n", v->target, v->file, v->mass, v->hit, v->chance, v->brain_mass,
                v->effect_r, v->effect_mass);
    }
    return nfv_atomic_commit(&af);
}

/* The viewer's volumes: each picture's map (<picture>.nii.gz) as
 * <picture>_view.js over its background (the subject, or the mean input),
 * each background once as viewer/bg<N>.js. */
static nfv_status viewer_items(const char *dir, const char *const *pictures, const char *const *captions,
                               const char *const *backgrounds, int n, int *viewer, nfv_viewer_item **items)
{
    *items = NULL;
    NFV_TRY(nfv_viewer_install(dir, viewer));
    if (!*viewer || !n) return NFV_OK;
    nfv_viewer_item *it = *items = calloc((size_t)n, sizeof *it);
    if (!it) return nfv_fail(NFV_ERR_NO_MEMORY, "explain report: out of memory");
    nfv_status st = NFV_OK;
    for (int i = 0; i < n && !st; i++) {
        size_t stem = strlen(pictures[i]) - (strlen(pictures[i]) > 4 ? 4 : 0); /* without .png */
        char path[4400];
        snprintf(it[i].id, sizeof it[i].id, "v%d", i);
        snprintf(it[i].title, sizeof it[i].title, "%s", captions[i]);
        snprintf(it[i].overlay, sizeof it[i].overlay, "%.*s_view.js", (int)stem, pictures[i]);
        snprintf(path, sizeof path, "%s/%.*s.nii.gz", dir, (int)stem, pictures[i]);
        nfv_volume v = {0};
        st = nfv_volume_read(path, &v, NULL);
        if (!st) st = nfv_viewer_write_volume(dir, it[i].overlay, &v);
        nfv_volume_free(&v);
        int same = 0;
        while (same < i && strcmp(backgrounds[same], backgrounds[i])) same++;
        if (same < i) {
            snprintf(it[i].background, sizeof it[i].background, "%s", it[same].background);
            continue;
        }
        snprintf(it[i].background, sizeof it[i].background, "viewer/bg%d.js", i);
        if (!st) st = nfv_volume_read(backgrounds[i], &v, NULL);
        if (!st) st = nfv_viewer_write_volume(dir, it[i].background, &v);
        nfv_volume_free(&v);
    }
    return st ? nfv_fail_context(st, "explain report viewer") : NFV_OK;
}

nfv_status nfv_explain_write_report(const nfv_explain_summary *s, const char *dir, const char *const *pictures,
                                    const char *const *captions, const char *const *backgrounds, int npictures)
{
    char path[4096];
    if (s->vis_count) {
        snprintf(path, sizeof path, "%s/vis_scores.csv", dir);
        NFV_TRY(write_vis_csv(s, path));
    }
    snprintf(path, sizeof path, "%s/summary.csv", dir);
    NFV_TRY(write_csv(s, path));
    snprintf(path, sizeof path, "%s/summary.md", dir);
    NFV_TRY(write_md(s, path));
    int viewer = 0;
    nfv_viewer_item *items = NULL;
    nfv_status st = viewer_items(dir, pictures, captions, backgrounds, npictures, &viewer, &items);
    snprintf(path, sizeof path, "%s/index.html", dir);
    if (!st) st = write_html(s, path, pictures, captions, npictures, viewer, items);
    free(items);
    return st;
}
