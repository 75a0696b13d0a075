/* `compare --score mis --data CSV`: the cohort of real subjects each
 * visualization is scored against (nfv_mis_score, src/vis/mis.c): read and
 * preprocessed once, and per target its objective and earlier-layer
 * features, computed once for every configuration and seed. */
#ifndef NEUROFV_CLI_COMPARE_MIS_H
#define NEUROFV_CLI_COMPARE_MIS_H

#include "neurofv/compare.h"

typedef struct compare_mis {
    int n;                    /* subjects */
    float *volumes;           /* (n, D, H, W) preprocessed to the model grid */
    nfv_mis_cohort *cohorts;  /* (count) one per target */
    int count;
    int pairs;
    unsigned long long seed;  /* of the pairs: the same for every configuration */
    double *sims;             /* (count, n) the current run's similarities (compare_mis_score) */
    nfv_ncc_bank *bank;       /* the subjects' spectra, for every target's pattern search */
    double focus_radius_mm;   /* nfv_focus_share's ball and the MIS pattern box's half-side */
} compare_mis;

/* feat_layer: the name of the (C, D, H, W) layer of the feature term, or
 * NULL for each target's last such layer before its own (nfv_mis_default_layer);
 * focus_radius_mm: nfv_focus_share's ball and the MIS pattern box's half-side. */
/* The rows of csv in split (NULL or "all": every row; a split without rows:
 * every row), at most max_subjects of them evenly spaced in CSV order. */
nfv_status compare_mis_open(compare_mis *cm, nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                            const char *csv, const char *split, int max_subjects, int pairs, const char *feat_layer,
                            double focus_radius_mm);
/* Fills row->has_mis, the mis fields and the focus share for target index t's visualization. */
nfv_status compare_mis_score(const compare_mis *cm, nfv_context *ctx, nfv_model *m, const nfv_target *targets, int t,
                             const nfv_volume *vis, nfv_compare_row *row);
/* After every target of one run was scored (rows: that run's `count` rows):
 * each row's mis becomes the contrastive score (nfv_mis_contrastive: the
 * run's other targets of the same family as references); rows without
 * references keep the plain score. */
void compare_mis_contrast(const compare_mis *cm, const nfv_target *targets, int count, nfv_compare_row *rows);
void compare_mis_free(compare_mis *cm);

#endif
