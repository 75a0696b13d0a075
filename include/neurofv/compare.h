/* Comparison of feature-visualization regularization configurations
 * (`neurofv compare`): the default configurations, the high-frequency energy
 * share of a volume, concept recovery against a synthetic lesion cohort's
 * ground truth, and the CSV / Markdown / HTML report.
 * Configurations, share and truth: src/vis/vis_compare.c; report:
 * src/vis/vis_report.c. */
#ifndef NEUROFV_COMPARE_H
#define NEUROFV_COMPARE_H

#include "neurofv/model.h"
#include "neurofv/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nfv_compare_config {
    char name[64];
    char options[512];  /* as for nfv_vis_options_parse */
} nfv_compare_config;

/* none, l2, tv, blur, robust, fourier, fourier+robust, all, all-no-mask, maco,
 * maco+robust (the last two need the model's spectrum). *out malloc'ed. */
nfv_status nfv_compare_default_configs(nfv_compare_config **out, int *count);

/* Share of high-frequency energy of v (D,H,W): with X the DFT of v minus its
 * mean, sum |X(f)|^2 over |f| > cutoff cycles/voxel divided by the sum over
 * all f != 0 (|f| = Euclidean norm of the per-axis frequencies in [-0.5, 0.5]).
 * cutoff 0.25 = half the Nyquist radius.  Computed with the device's
 * Fourier op (the Hartley energy over a symmetric set equals the DFT's). */
nfv_status nfv_highfreq_share(nfv_context *ctx, const nfv_volume *v, double cutoff, double *share);

/* Ground truth of a `neurofv synth` lesion cohort: shapes/<class>.nii.gz and
 * mask.nii.gz (brought to the model grid when it differs). */
typedef struct nfv_truth {
    int count;
    char **names;          /* shape names (file stems) */
    nfv_volume *shapes;    /* shape templates at the model's voxel size */
    nfv_volume mask;       /* on the model grid */
    int polarity;          /* +1: lesions brighter than tissue, -1: darker (from cohort.json) */
} nfv_truth;
nfv_status nfv_truth_load(const nfv_model *m, const char *dir, nfv_truth *out);
void nfv_truth_free(nfv_truth *t);
/* NCC (nfv_ncc_search inside the mask) of polarity * vis with every shape
 * (a detector of dark lesions draws its shape dark); score[count].  pos
 * (may be NULL): pos[count][3], the voxel (i, j, k) = (x, y, z index) at the
 * centre of each shape's best match. */
nfv_status nfv_truth_scores(const nfv_truth *t, const nfv_volume *vis, double *score, int (*pos)[3]);

typedef struct nfv_compare_row {
    char config[64];
    unsigned long long seed;  /* the visualization seed of this run */
    char dir[512];            /* the run's folder relative to the report: <config> or <config>/seed<S>, under
                                 compare's --runs folder as seen from the report ("../runs/none/seed1") */
    char target[128];
    char stem[128];
    float objective, objective_clean;
    double hf_share;
    int has_truth;
    char truth_class[64];  /* the target class's own shape ("" if none) */
    double own_score;      /* NCC with the own shape */
    char best_shape[64];   /* the best scoring shape */
    double best_score;
    int recovered;         /* own shape scores best */
    double margin;         /* own NCC minus the best other shape's NCC (> 0 iff recovered) */
    double own_mm[3];      /* world (x, y, z) mm of the own shape's best match; <stem>_match.png is drawn through it */
    double seconds;
} nfv_compare_row;

/* Per target family of config's rows ("logit", "contrast", "logit@1,2,2":
 * the target without its class), the number of seeds in which every class with
 * a shape was recovered, as "logit 2/3 seeds, contrast 3/3 seeds" into buf
 * ("-" when no row has a shape). */
void nfv_compare_recovery_text(const char *config, const nfv_compare_row *rows, int nrows, char *buf, size_t cap);

/* Write results.csv, results.md and index.html under dir (images are taken
 * from dir/<row dir>/<stem>_*.png, linked as <row dir>/...: a row dir may
 * lead out of dir, to runs kept elsewhere).  Rows of several seeds are summarized per
 * configuration: classes recovered over all runs, and per target family
 * (logit:, contrast:, with the same @cell) the number of seeds in which every
 * class with a shape was recovered.  index.html embeds the NiiVue viewer
 * (include/neurofv/viewer.h) when its bundle is found: each row's volume as
 * <row dir>/<stem>_view.js (beside the run's files), shown as an overlay on background (NULL: on
 * itself), with the row's picture linking to it. */
nfv_status nfv_compare_write_report(const char *dir, const char *model_path, const nfv_compare_config *configs,
                                    int nconfigs, const nfv_compare_row *rows, int nrows, const nfv_volume *background);

#ifdef __cplusplus
}
#endif
#endif
