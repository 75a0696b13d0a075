/* The report of `neurofv compare`: results.csv (one row per configuration x
 * seed x target), results.md (a summary per configuration, then every row)
 * and index.html (the summary, then an image table: targets x seeds as rows,
 * configurations as columns).  Rows of several seeds are summarized per
 * configuration: classes recovered over all runs, and per target family
 * (logit:, contrast:, with the same @cell) the number of seeds in which every
 * class with a shape was recovered.  Each file is written atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "neurofv/compare.h"
#include "neurofv/viewer.h"

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
    int mis_pairs;           /* pooled over the configuration's rows */
    double mis_correct;
    double focus;            /* mean focus share over the rows where it is defined */
    int nfocus;
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
        if (rows[i].has_mis) {
            s.mis_pairs += rows[i].mis_pairs;
            s.mis_correct += rows[i].mis_correct;
            if (isfinite(rows[i].focus_share)) s.focus += rows[i].focus_share, s.nfocus++;
        }
        if (rows[i].has_truth && rows[i].truth_class[0]) {
            s.with_truth++;
            s.recovered += rows[i].recovered;
        }
    }
    if (s.nfocus) s.focus /= s.nfocus;
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

/* What every writer needs: the rows and what is derived from them once. */
typedef struct report {
    const char *dir, *model_path;
    const nfv_compare_config *configs;
    int nconfigs;
    const nfv_compare_row *rows;
    int nrows;
    int any_truth;                /* some row has a class with a shape */
    int any_mis;                  /* some row has the --score mis columns */
    unsigned long long seeds[64]; /* in first-seen order */
    int nseeds;
    char seed_list[512];          /* "1, 2, 3" */
    const nfv_volume *background; /* under the viewer's overlays, or NULL */
    const nfv_truth_controls *controls; /* real lesions and masks scored as pictures, or NULL */
    int viewer;                   /* the NiiVue bundle was copied into dir/viewer */
    nfv_viewer_item *items;       /* one per row when viewer */
} report;

static void report_init(report *r)
{
    r->any_truth = r->any_mis = 0;
    for (int i = 0; i < r->nrows; i++) r->any_truth |= r->rows[i].has_truth && r->rows[i].truth_class[0];
    for (int i = 0; i < r->nrows; i++) r->any_mis |= r->rows[i].has_mis;
    r->nseeds = 0;
    for (int i = 0; i < r->nrows; i++) {
        int seen = 0;
        for (int j = 0; j < r->nseeds; j++) seen |= r->seeds[j] == r->rows[i].seed;
        if (!seen && r->nseeds < 64) r->seeds[r->nseeds++] = r->rows[i].seed;
    }
    r->seed_list[0] = 0;
    for (int j = 0, used = 0; j < r->nseeds && used < (int)sizeof r->seed_list; j++)
        used += snprintf(r->seed_list + used, sizeof r->seed_list - (size_t)used, "%s%llu", j ? ", " : "",
                         r->seeds[j]);
}

/* ---- results.csv ---------------------------------------------------------- */

static void write_csv(const report *rp, FILE *f)
{
    fprintf(f, "config,seed,target,objective,objective_without_transforms,hf_share,truth_class,own_ncc,best_shape,"
               "best_ncc,recovered,margin,own_x_mm,own_y_mm,own_z_mm,seconds%s\n",
            rp->any_mis ? ",mis,mis_lo,mis_hi,mis_act,mis_pairs,mis_plain,focus_share,focus_x_mm,focus_y_mm,"
                         "focus_z_mm,stretch"
                       : "");
    for (int i = 0; i < rp->nrows; i++) {
        const nfv_compare_row *r = &rp->rows[i];
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
        fprintf(f, "%.2f", r->seconds);
        if (r->has_mis) {
            fprintf(f, ",%.4f,%.4f,%.4f,%.4f,%d,%.4f,", r->mis, r->mis_lo, r->mis_hi, r->mis_act, r->mis_pairs,
                    r->mis_plain);
            if (isfinite(r->focus_share)) fprintf(f, "%.4f", r->focus_share);
            fprintf(f, ",%.1f,%.1f,%.1f,", r->focus_mm[0], r->focus_mm[1], r->focus_mm[2]);
            if (isfinite(r->stretch)) fprintf(f, "%.4g", r->stretch);
        } else if (rp->any_mis)
            fprintf(f, ",,,,,,,,,,,");
        fputc('\n', f);
    }
}

/* ---- results.md ----------------------------------------------------------- */

static void md_summary(const report *rp, FILE *f)
{
    int any_truth = rp->any_truth;
    fprintf(f, "\n## Summary per configuration\n\n| config | options | %s%smean objective | mean objective without "
               "transforms | mean HF share | seconds |\n|---|---|%s%s---|---|---|---|\n",
            any_truth ? "every class recovered | classes recovered | " : "",
            rp->any_mis ? "MIS [95 % CI] | focus share | " : "", any_truth ? "---|---|" : "", rp->any_mis ? "---|---|" : "");
    for (int c = 0; c < rp->nconfigs; c++) {
        const nfv_compare_config *cfg = &rp->configs[c];
        summary s = summarize(cfg->name, rp->rows, rp->nrows);
        fprintf(f, "| %s | `%s` | ", cfg->name, cfg->options[0] ? cfg->options : "(none)");
        char text[512];
        nfv_compare_recovery_text(cfg->name, rp->rows, rp->nrows, text, sizeof text);
        if (any_truth) fprintf(f, "%s | %d/%d | ", text, s.recovered, s.with_truth);
        if (rp->any_mis) {
            double lo, hi;
            nfv_wilson(s.mis_correct, s.mis_pairs, &lo, &hi);
            if (s.mis_pairs) fprintf(f, "%.3f [%.3f, %.3f] | ", s.mis_correct / s.mis_pairs, lo, hi);
            else fprintf(f, "- | ");
            if (s.nfocus) fprintf(f, "%.3f | ", s.focus);
            else fprintf(f, "- | ");
        }
        fprintf(f, "%.4g | %.4g | %.3f | %.1f |\n", s.obj, s.obj_clean, s.hf, s.secs);
    }
}

static void md_rows(const report *rp, FILE *f)
{
    int any_truth = rp->any_truth;
    fprintf(f, "\n## Per target\n\n| config | seed | target | objective | without transforms | HF share |%s%s\n"
               "|---|---|---|---|---|---|%s%s\n", rp->any_mis ? " MIS [95 % CI] (plain; act) | focus share (at mm) | stretch |" : "",
            any_truth ? " own-shape NCC | best shape (NCC) | margin | recovered | own-shape match at (mm) |" : "",
            rp->any_mis ? "---|---|---|" : "", any_truth ? "---|---|---|---|---|" : "");
    for (int i = 0; i < rp->nrows; i++) {
        const nfv_compare_row *r = &rp->rows[i];
        fprintf(f, "| %s | %llu | %s | %.4g | %.4g | %.3f |", r->config, r->seed, r->target, r->objective,
                r->objective_clean, r->hf_share);
        if (rp->any_mis && r->has_mis)
            fprintf(f, " %.3f [%.3f, %.3f] (%.3f; %.3f) | %s%.3f (%.0f, %.0f, %.0f) |", r->mis, r->mis_lo, r->mis_hi,
                    r->mis_plain, r->mis_act, isfinite(r->focus_share) ? "" : "- ",
                    isfinite(r->focus_share) ? r->focus_share : 0.0, r->focus_mm[0], r->focus_mm[1], r->focus_mm[2]);
        if (rp->any_mis && r->has_mis) {
            if (isfinite(r->stretch)) fprintf(f, " %.3g |", r->stretch);
            else fprintf(f, " - |");
        } else if (rp->any_mis)
            fprintf(f, " | | |");
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
}

/* What the cohort's real lesions score: the margin a perfect picture gets. */
static int reference_rows(const report *rp)
{
    const nfv_truth_controls *c = rp->controls;
    int n = 0;
    for (int i = 0; c && c->truth && c->reference && i < c->truth->count; i++) n += c->reference[i].subjects > 0;
    return n;
}

static int mask_rows(const report *rp)
{
    return rp->controls && rp->controls->truth ? rp->controls->nmasks : 0;
}

/* The shape a mask alone scores best, and its margin over the next. */
static int mask_best(const nfv_truth_controls *c, const nfv_mask_control *mc, double *margin)
{
    int best = 0;
    for (int s = 1; s < c->truth->count; s++)
        if (mc->score[s] > mc->score[best]) best = s;
    double next = -2.0;
    for (int s = 0; s < c->truth->count; s++)
        if (s != best && mc->score[s] > next) next = mc->score[s];
    *margin = c->truth->count > 1 ? mc->score[best] - next : NAN;
    return best;
}

static void md_masks(const report *rp, FILE *f)
{
    if (!mask_rows(rp)) return;
    const nfv_truth_controls *c = rp->controls;
    fprintf(f, "\n## What the mask alone scores\n\nEach configuration's optimization mask (1 inside) scored as if it "
               "were a picture: a class whose own shape the mask alone scores best is recovered by the mask's shape as "
               "much as by the model.\n\n| config | mask |");
    for (int s = 0; s < c->truth->count; s++) fprintf(f, " %s |", c->truth->names[s]);
    fprintf(f, " best (margin) |\n|---|---|");
    for (int s = 0; s <= c->truth->count; s++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (int i = 0; i < c->nmasks; i++) {
        const nfv_mask_control *mc = &c->masks[i];
        double margin;
        int best = mask_best(c, mc, &margin);
        fprintf(f, "| %s | `%s` |", mc->config, mc->mask);
        for (int s = 0; s < c->truth->count; s++) fprintf(f, " %.3f |", mc->score[s]);
        fprintf(f, " %s (%+.3f) |\n", c->truth->names[best], margin);
    }
}

static void md_reference(const report *rp, FILE *f)
{
    if (!reference_rows(rp)) return;
    fprintf(f, "\n## What a real lesion scores\n\nThe cohort's own lesion masks (lesion_masks/, test subjects first), "
               "scored as if they were pictures: a picture's margin reads against these.\n\n"
               "| class | lesions | recovered | margin > %.2f | own NCC (median) | margin (median) | margin (min) |\n"
               "|---|---|---|---|---|---|---|\n",
            NFV_TRUTH_CLEAR_MARGIN);
    for (int i = 0; i < rp->controls->truth->count; i++) {
        const nfv_truth_reference_row *r = &rp->controls->reference[i];
        if (!r->subjects) continue;
        fprintf(f, "| %s | %d | %d/%d | %d/%d | %.3f | %.3f | %.3f |\n", r->name, r->subjects, r->recovered,
                r->subjects, r->clear, r->subjects, r->own_median, r->margin_median, r->margin_min);
    }
}

static void write_markdown(const report *rp, FILE *f)
{
    fprintf(f, "# Regularization comparison\n\nModel: `%s`\n\n", rp->model_path);
    fprintf(f, "HF share = fraction of the spectral energy (DFT of the volume minus its mean) at radius |f| > 0.25 "
               "cycles/voxel, i.e. above half the Nyquist radius.\n");
    if (rp->any_truth)
        fprintf(f, "Concept recovery: for each class target, NCC of the visualization (negated when the cohort's "
                   "lesions are darker than tissue) with each shape template (the cohort's smallest, middle and largest lesion size "
                   "where cohort.json gives them; the best of them), best position with the shape and a one-voxel halo "
                   "inside the brain mask; recovered = the class's own shape scores best; margin = its NCC minus the best "
                   "other shape's.\n");
    fprintf(f, "Seed%s: %s.\n", rp->nseeds == 1 ? "" : "s", rp->seed_list);
    if (rp->any_mis)
        fprintf(f, "MIS = share of pairs of real subjects (one from the top, one from the bottom quartile of the "
                   "target's activation) in which the subject more similar to the visualization (NCC over its "
                   "effective receptive field and earlier-layer feature similarity) is the stronger one; 0.5 = chance; "
                   "[95 %% Wilson interval] over the pooled pairs (pairs share subjects: the interval is optimistic).  "
                   "Contrastive where the run has other targets of the same family: similarity to this picture minus "
                   "the mean similarity to theirs (plain: without that; voxel, act: plain, one term alone).  "
                   "Focus share = the gain in the target's objective when the ball around the picture's densest "
                   "attribution is pasted into the bottom-quartile subjects, over the picture's own gain above them "
                   "(1: one place carries all of it; near 0: fragments spread over the volume; - when the picture "
                   "does not beat those subjects).\n\n");
    if (rp->any_truth)
        fprintf(f, "Every class recovered: per target family, the seeds in which every class's own shape scored "
                   "best; classes recovered counts single targets over all seeds.\n");
    md_summary(rp, f);
    md_reference(rp, f);
    md_masks(rp, f);
    md_rows(rp, f);
}

/* ---- index.html ----------------------------------------------------------- */

static void html_intro(const report *rp, FILE *f)
{
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>neurofv compare</title>\n<style>"
               "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
               "padding:4px;vertical-align:top;font-size:12px}img{max-width:260px}.ok{color:#070}.no{color:#a00}"
               "</style></head><body>\n<h1>Regularization comparison</h1>\n<p>Model: <code>");
    html_escape(f, rp->model_path);
    fprintf(f, "</code>. Tables: <a href=\"results.csv\">results.csv</a>, <a href=\"results.md\">results.md</a>.</p>\n"
               "<p>HF share = fraction of spectral energy (DFT of the volume minus its mean) above half the Nyquist "
               "radius (|f| &gt; 0.25 cycles/voxel).");
    if (rp->any_truth)
        fprintf(f, " Concept recovery: NCC of the visualization (negated for dark lesions) with each shape template (at "
                   "the cohort's smallest, middle and largest lesion size where it gives them; best position with the "
                   "shape and a one-voxel halo in the brain mask); recovered when the class's own shape scores best.");
    fprintf(f, " Seed%s: %s.", rp->nseeds == 1 ? "" : "s", rp->seed_list);
    if (rp->any_truth)
        fprintf(f, " Every class recovered: per target family, the seeds in which every class's own shape scored best.");
    fprintf(f, "</p>\n");
}

static void html_summary(const report *rp, FILE *f)
{
    fprintf(f, "<h2>Summary</h2>\n<table><tr><th>config</th><th>options</th>%s%s<th>mean objective</th>"
               "<th>mean objective without transforms</th><th>mean HF share</th><th>seconds</th></tr>\n",
            rp->any_truth ? "<th>every class recovered</th><th>classes recovered</th>" : "",
            rp->any_mis ? "<th>MIS [95 % CI]</th><th>focus share</th>" : "");
    for (int c = 0; c < rp->nconfigs; c++) {
        const nfv_compare_config *cfg = &rp->configs[c];
        summary s = summarize(cfg->name, rp->rows, rp->nrows);
        fprintf(f, "<tr><td>");
        html_escape(f, cfg->name);
        fprintf(f, "</td><td><code>");
        html_escape(f, cfg->options[0] ? cfg->options : "(none)");
        fprintf(f, "</code></td>");
        if (rp->any_truth) {
            char text[512];
            nfv_compare_recovery_text(cfg->name, rp->rows, rp->nrows, text, sizeof text);
            fprintf(f, "<td>");
            html_escape(f, text);
            fprintf(f, "</td><td>%d/%d</td>", s.recovered, s.with_truth);
        }
        if (rp->any_mis) {
            double lo, hi;
            nfv_wilson(s.mis_correct, s.mis_pairs, &lo, &hi);
            if (s.mis_pairs) fprintf(f, "<td>%.3f [%.3f, %.3f]</td>", s.mis_correct / s.mis_pairs, lo, hi);
            else fprintf(f, "<td>-</td>");
            if (s.nfocus) fprintf(f, "<td>%.3f</td>", s.focus);
            else fprintf(f, "<td>-</td>");
        }
        fprintf(f, "<td>%.4g</td><td>%.4g</td><td>%.3f</td><td>%.1f</td></tr>\n", s.obj, s.obj_clean, s.hf, s.secs);
    }
    fprintf(f, "</table>\n");
}

static void html_reference(const report *rp, FILE *f)
{
    if (!reference_rows(rp)) return;
    fprintf(f, "<h2>What a real lesion scores</h2>\n<p>The cohort's own lesion masks (test subjects first), scored as "
               "if they were pictures: a picture's margin reads against these.</p>\n<table><tr><th>class</th>"
               "<th>lesions</th><th>recovered</th><th>margin &gt; %.2f</th><th>own NCC (median)</th><th>margin "
               "(median)</th><th>margin (min)</th></tr>\n",
            NFV_TRUTH_CLEAR_MARGIN);
    for (int i = 0; i < rp->controls->truth->count; i++) {
        const nfv_truth_reference_row *r = &rp->controls->reference[i];
        if (!r->subjects) continue;
        fprintf(f, "<tr><td>");
        html_escape(f, r->name);
        fprintf(f, "</td><td>%d</td><td>%d/%d</td><td>%d/%d</td><td>%.3f</td><td>%.3f</td><td>%.3f</td></tr>\n",
                r->subjects, r->recovered, r->subjects, r->clear, r->subjects, r->own_median, r->margin_median,
                r->margin_min);
    }
    fprintf(f, "</table>\n");
}

static void html_masks(const report *rp, FILE *f)
{
    if (!mask_rows(rp)) return;
    const nfv_truth_controls *c = rp->controls;
    fprintf(f, "<h2>What the mask alone scores</h2>\n<p>Each configuration's optimization mask (1 inside) scored as if "
               "it were a picture: a class whose own shape the mask alone scores best is recovered by the mask's shape "
               "as much as by the model.</p>\n<table><tr><th>config</th><th>mask</th>");
    for (int s = 0; s < c->truth->count; s++) {
        fprintf(f, "<th>");
        html_escape(f, c->truth->names[s]);
        fprintf(f, "</th>");
    }
    fprintf(f, "<th>best (margin)</th></tr>\n");
    for (int i = 0; i < c->nmasks; i++) {
        const nfv_mask_control *mc = &c->masks[i];
        double margin;
        int best = mask_best(c, mc, &margin);
        fprintf(f, "<tr><td>");
        html_escape(f, mc->config);
        fprintf(f, "</td><td><code>");
        html_escape(f, mc->mask);
        fprintf(f, "</code></td>");
        for (int s = 0; s < c->truth->count; s++) fprintf(f, "<td>%.3f</td>", mc->score[s]);
        fprintf(f, "<td>");
        html_escape(f, c->truth->names[best]);
        fprintf(f, " (%+.3f)</td></tr>\n", margin);
    }
    fprintf(f, "</table>\n");
}

/* One image cell: the slices through the own shape's best match when there
 * is ground truth (what the score saw), else the overlay or the plain
 * slices through the peak; the row's numbers below. */
static void html_cell(const report *rp, const nfv_compare_row *r, FILE *f)
{
    char img[4800];
    snprintf(img, sizeof img, "%s/%s/%s_overlay.png", rp->dir, r->dir, r->stem);
    int has_overlay = access(img, R_OK) == 0;
    snprintf(img, sizeof img, "%s/%s/%s_match.png", rp->dir, r->dir, r->stem);
    int has_match = r->has_truth && r->truth_class[0] && access(img, R_OK) == 0;
    if (rp->viewer)
        fprintf(f, "<a href=\"#%s\" title=\"show in the viewer\">", rp->items[r - rp->rows].id);
    else
        fprintf(f, "<a href=\"%s/%s.nii.gz\">", r->dir, r->stem);
    fprintf(f, "<img src=\"%s/%s_%s.png\" alt=\"%s\"></a><br>", r->dir, r->stem,
            has_match ? "match" : has_overlay ? "overlay" : "ortho", r->stem);
    if (has_match)
        fprintf(f, "%s match at %.0f, %.0f, %.0f mm (<a href=\"%s/%s_%s.png\">peak</a>)<br>", r->truth_class,
                r->own_mm[0], r->own_mm[1], r->own_mm[2], r->dir, r->stem, has_overlay ? "overlay" : "ortho");
    fprintf(f, "obj %.4g, clean %.4g, HF %.3f", r->objective, r->objective_clean, r->hf_share);
    if (r->has_truth && r->truth_class[0])
        fprintf(f, "<br>own NCC %.3f, best %s %.3f <b class=\"%s\">%s</b>", r->own_score, r->best_shape,
                r->best_score, r->recovered ? "ok" : "no", r->recovered ? "recovered" : "not recovered");
    if (r->has_mis) {
        fprintf(f, "<br>MIS %.3f, focus share ", r->mis);
        if (isfinite(r->focus_share)) fprintf(f, "%.2f at %.0f, %.0f, %.0f mm", r->focus_share, r->focus_mm[0],
                                              r->focus_mm[1], r->focus_mm[2]);
        else fprintf(f, "-");
        if (isfinite(r->stretch)) fprintf(f, ", stretch %.3g", r->stretch);
    }
    fprintf(f, "<br><a href=\"%s/%s_mosaic.png\">mosaic</a> <a href=\"%s/%s.json\">log</a> <a href=\"%s/%s.nii.gz\">NIfTI</a>",
            r->dir, r->stem, r->dir, r->stem, r->dir, r->stem);
    if (rp->viewer) fprintf(f, " <a href=\"#%s\">view</a>", rp->items[r - rp->rows].id);
}

/* Configurations as columns; targets in first-seen order, one row per seed. */
static void html_images(const report *rp, FILE *f)
{
    fprintf(f, "<h2>Images</h2>\n<p>Each cell: orthogonal slices through the best match of the class's own "
               "shape template when there is ground truth, else through the peak (overlay on the template when it was "
               "written); numbers below.</p>\n<table><tr><th>target</th>");
    for (int c = 0; c < rp->nconfigs; c++) {
        fprintf(f, "<th>");
        html_escape(f, rp->configs[c].name);
        fprintf(f, "</th>");
    }
    fprintf(f, "</tr>\n");
    const nfv_compare_row *rows = rp->rows;
    for (int i = 0; i < rp->nrows; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= !strcmp(rows[j].target, rows[i].target);
        if (seen) continue;
        for (int sd = 0; sd < rp->nseeds; sd++) {
            fprintf(f, "<tr><th>");
            html_escape(f, rows[i].target);
            if (rp->nseeds > 1) fprintf(f, "<br>seed %llu", rp->seeds[sd]);
            fprintf(f, "</th>");
            for (int c = 0; c < rp->nconfigs; c++) {
                const nfv_compare_row *r = find_row(rows, rp->nrows, rp->configs[c].name, rows[i].target, rp->seeds[sd]);
                fprintf(f, "<td>");
                if (r) html_cell(rp, r, f);
                fprintf(f, "</td>");
            }
            fprintf(f, "</tr>\n");
        }
    }
    fprintf(f, "</table>\n");
}

static void write_html(const report *rp, FILE *f)
{
    html_intro(rp, f);
    nfv_viewer_html(f, rp->viewer, rp->items, rp->viewer ? rp->nrows : 1);
    html_summary(rp, f);
    html_reference(rp, f);
    html_masks(rp, f);
    html_images(rp, f);
    fprintf(f, "</body></html>\n");
}

/* ---- the report ----------------------------------------------------------- */

static nfv_status write_file(const report *rp, const char *name, void (*body)(const report *, FILE *))
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", rp->dir, name);
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    body(rp, af.f);
    return nfv_atomic_commit(&af);
}

/* The viewer's volumes: per row <row dir>/<stem>_view.js (the change from the
 * template when there is one, as the overlay PNG, else the visualization),
 * and viewer/background.js, the background on the first row's grid.  The
 * full-precision NIfTI files stay where the runs wrote them. */
static nfv_status viewer_volumes(report *rp)
{
    NFV_TRY(nfv_viewer_install(rp->dir, &rp->viewer));
    if (!rp->viewer || !rp->nrows) return NFV_OK;
    rp->items = calloc((size_t)rp->nrows, sizeof *rp->items);
    if (!rp->items) return nfv_fail(NFV_ERR_NO_MEMORY, "compare report: out of memory");
    nfv_status st = NFV_OK;
    for (int i = 0; i < rp->nrows && !st; i++) {
        const nfv_compare_row *r = &rp->rows[i];
        nfv_viewer_item *it = &rp->items[i];
        char path[4400];
        snprintf(path, sizeof path, "%s/%s/%s_change.nii.gz", rp->dir, r->dir, r->stem);
        if (access(path, R_OK) != 0) snprintf(path, sizeof path, "%s/%s/%s.nii.gz", rp->dir, r->dir, r->stem);
        nfv_volume v;
        st = nfv_volume_read(path, &v, NULL);
        if (st) break;
        snprintf(it->id, sizeof it->id, "v%d", i);
        snprintf(it->title, sizeof it->title, "%s, seed %llu: %s", r->config, r->seed, r->target);
        snprintf(it->overlay, sizeof it->overlay, "%s/%s_view.js", r->dir, r->stem);
        snprintf(it->background, sizeof it->background, "%s", rp->background ? "viewer/background.js" : it->overlay);
        st = nfv_viewer_write_volume(rp->dir, it->overlay, &v);
        if (!st && i == 0 && rp->background) {
            nfv_volume bg;
            st = nfv_volume_resample_to(rp->background, v.nx, v.ny, v.nz, v.affine, 0, &bg);
            if (!st) st = nfv_viewer_write_volume(rp->dir, "viewer/background.js", &bg);
            nfv_volume_free(&bg);
        }
        nfv_volume_free(&v);
    }
    return st ? nfv_fail_context(st, "compare report viewer") : NFV_OK;
}

nfv_status nfv_compare_write_report(const char *dir, const char *model_path, const nfv_compare_config *configs,
                                    int nconfigs, const nfv_compare_row *rows, int nrows, const nfv_volume *background,
                                    const nfv_truth_controls *controls)
{
    NFV_TRY(nfv_mkdirs(dir));
    report rp = {.dir = dir, .model_path = model_path, .configs = configs, .nconfigs = nconfigs, .rows = rows,
                 .nrows = nrows, .background = background, .controls = controls};
    report_init(&rp);
    nfv_status st = write_file(&rp, "results.csv", write_csv);
    if (!st) st = write_file(&rp, "results.md", write_markdown);
    if (!st) st = viewer_volumes(&rp);
    if (!st) st = write_file(&rp, "index.html", write_html);
    free(rp.items);
    return st;
}
