/* The cohort of `compare --score mis` (compare_mis.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare_mis.h"

nfv_status compare_mis_open(compare_mis *cm, nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                            const char *csv, const char *split, int max_subjects, int pairs)
{
    memset(cm, 0, sizeof *cm);
    cm->pairs = pairs;
    cm->seed = 1;
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
        if (!cm->volumes || !cm->cohorts) st = nfv_fail(NFV_ERR_NO_MEMORY, "mis: out of memory for %d subjects", n);
    }
    for (int i = 0; !st && i < n; i++) {
        const float *v;
        st = nfv_volume_cache_get(cache, rows[(long)i * nrows / n], &v);
        if (!st) memcpy(cm->volumes + (size_t)i * vox, v, vox * sizeof *v);
    }
    cm->n = n;
    for (int t = 0; !st && t < count; t++) {
        st = nfv_mis_cohort_init(ctx, m, &targets[t], cm->volumes, n, nfv_mis_default_layer(m, targets[t].layer),
                                 &cm->cohorts[t]);
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
    nfv_mis_result r;
    NFV_TRY(nfv_mis_score(ctx, m, &targets[t], &cm->cohorts[t], vis->data, cm->pairs, cm->seed, &r));
    row->has_mis = 1;
    row->mis = r.mis;
    row->mis_lo = r.lo;
    row->mis_hi = r.hi;
    row->mis_voxel = r.mis_voxel;
    row->mis_act = r.mis_act;
    row->mis_pairs = r.pairs;
    row->mis_correct = r.correct;
    return NFV_OK;
}

void compare_mis_free(compare_mis *cm)
{
    for (int t = 0; t < cm->count; t++) nfv_mis_cohort_free(&cm->cohorts[t]);
    free(cm->cohorts);
    free(cm->volumes);
    memset(cm, 0, sizeof *cm);
}
