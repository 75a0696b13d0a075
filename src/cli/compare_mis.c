/* The cohort of `compare --score mis` (compare_mis.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare_mis.h"

nfv_status compare_mis_open(compare_mis *cm, nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                            const char *csv, const char *split, int max_subjects, int pairs, const char *feat_layer,
                            double focus_radius_mm)
{
    memset(cm, 0, sizeof *cm);
    int feat = -1;
    if (feat_layer) {
        feat = nfv_model_find_layer(m, feat_layer);
        if (feat < 0 || m->layers[feat].out_ndim != 4)
            return nfv_fail(NFV_ERR_INVALID_ARG, "--mis-layer %s: %s", feat_layer,
                            feat < 0 ? "no such layer (see neurofv inspect)" : "not a (C, D, H, W) layer");
    }
    cm->pairs = pairs;
    cm->seed = 1;
    cm->focus_radius_mm = focus_radius_mm;
    nfv_split want = NFV_SPLIT_ALL;
    if (split && strcmp(split, "all") && nfv_split_parse(split, &want))
        return nfv_fail(NFV_ERR_INVALID_ARG, "--mis-split expects train, val, test or all, got \"%s\"", split);
    nfv_dataset ds;
    nfv_status st = m->head == NFV_HEAD_REGRESSION ? nfv_dataset_load_numeric(csv, &ds) : nfv_dataset_load(csv, &ds);
    if (st) return st;
    int *rows = malloc((size_t)ds.count * sizeof *rows), nrows = 0;
    if (!rows) st = nfv_fail(NFV_ERR_NO_MEMORY, "mis: out of memory");
    for (int i = 0; !st && i < ds.count; i++)
        if (want == NFV_SPLIT_ALL || ds.rows[i].split == want) rows[nrows++] = i;
    if (!st && nrows == 0)
        for (int i = 0; i < ds.count; i++) rows[nrows++] = i;
    int n = nrows < max_subjects ? nrows : max_subjects;
    size_t vox = (size_t)m->input_shape[1] * m->input_shape[2] * m->input_shape[3];
    nfv_volume_cache *cache = NULL;
    nfv_grid g = {m->input_shape[3], m->input_shape[2], m->input_shape[1],
                  {m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]}, m->norm};
    if (!st) st = nfv_volume_cache_create(&ds, &g, 0, &cache);
    if (!st) {
        cm->volumes = malloc((size_t)n * vox * sizeof *cm->volumes);
        cm->cohorts = calloc((size_t)count, sizeof *cm->cohorts);
        cm->sims = calloc((size_t)count * n + 1, sizeof *cm->sims);
        if (!cm->volumes || !cm->cohorts || !cm->sims) st = nfv_fail(NFV_ERR_NO_MEMORY, "mis: out of memory for %d subjects", n);
    }
    for (int i = 0; !st && i < n; i++) {
        const float *v;
        st = nfv_volume_cache_get(cache, rows[(long)i * nrows / n], &v);
        if (!st) memcpy(cm->volumes + (size_t)i * vox, v, vox * sizeof *v);
    }
    cm->n = n;
    int dims[3] = {m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    if (!st) st = nfv_ncc_bank_create(cm->volumes, n, dims, &cm->bank);
    for (int t = 0; !st && t < count; t++) {
        st = nfv_mis_cohort_init(ctx, m, &targets[t], cm->volumes, n,
                                 feat_layer ? feat : nfv_mis_default_layer(m, targets[t].layer), cm->bank,
                                 focus_radius_mm, &cm->cohorts[t]);
        cm->count = t + 1;
    }
    nfv_volume_cache_free(cache);
    nfv_dataset_free(&ds);
    free(rows);
    if (st) {
        compare_mis_free(cm);
        return nfv_fail_context(st, "--score mis on %s", csv);
    }
    fprintf(stderr, "compare: --score mis: %d subjects of %s, %d pairs per visualization\n", n, csv, pairs);
    return NFV_OK;
}

nfv_status compare_mis_score(const compare_mis *cm, nfv_context *ctx, nfv_model *m, const nfv_target *targets, int t,
                             const nfv_volume *vis, nfv_compare_row *row)
{
    /* One input gradient of the picture for MIS's receptive field and the focus share. */
    nfv_picture_grad pg;
    NFV_TRY(nfv_picture_grad_compute(ctx, m, &targets[t], vis->data, &pg));
    nfv_mis_result r;
    nfv_status st = nfv_mis_score(ctx, m, &targets[t], &cm->cohorts[t], vis->data, &pg, cm->pairs, cm->seed,
                                  cm->sims + (size_t)t * cm->n, &r);
    nfv_focus_result f;
    if (!st) st = nfv_focus_share(ctx, m, &targets[t], &cm->cohorts[t], vis->data, &pg, cm->focus_radius_mm, &f);
    double stretch = nfv_mis_stretch(&cm->cohorts[t], pg.objective);
    nfv_picture_grad_free(&pg);
    if (st) return st;
    row->has_mis = 1;
    row->mis = row->mis_plain = r.mis;
    row->mis_lo = r.lo;
    row->mis_hi = r.hi;
    row->mis_act = r.mis_act;
    row->mis_pairs = r.pairs;
    row->mis_correct = r.correct;
    row->focus_share = f.share;
    memcpy(row->focus_mm, f.centre_mm, sizeof row->focus_mm);
    row->stretch = stretch;
    return NFV_OK;
}

void compare_mis_contrast(const compare_mis *cm, const nfv_target *targets, int count, nfv_compare_row *rows)
{
    for (int r = 0; r < count; r++) {
        int t = -1;
        for (int k = 0; k < count && t < 0; k++)
            if (!strcmp(targets[k].name, rows[r].target)) t = k;
        double correct;
        if (t < 0 || !rows[r].has_mis ||
            nfv_mis_contrastive(&cm->cohorts[t], cm->sims, targets, count, t, cm->pairs, cm->seed, &correct) <= 0)
            continue; /* no references (or no memory): the plain score stays */
        rows[r].mis_correct = correct;
        rows[r].mis = correct / cm->pairs;
        nfv_wilson(correct, cm->pairs, &rows[r].mis_lo, &rows[r].mis_hi);
    }
}

void compare_mis_free(compare_mis *cm)
{
    for (int t = 0; t < cm->count; t++) nfv_mis_cohort_free(&cm->cohorts[t]);
    free(cm->cohorts);
    nfv_ncc_bank_free(cm->bank);
    free(cm->volumes);
    free(cm->sims);
    memset(cm, 0, sizeof *cm);
}
