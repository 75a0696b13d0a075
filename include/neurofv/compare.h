/* Comparison of feature-visualization regularization configurations
 * (`neurofv compare`): the default configurations, the high-frequency energy
 * share of a volume, concept recovery against a synthetic lesion cohort's
 * ground truth, and the CSV / Markdown / HTML report.
 * Configurations, share and truth: src/vis/vis_compare.c; report:
 * src/vis/vis_report.c. */
#ifndef NEUROFV_COMPARE_H
#define NEUROFV_COMPARE_H

#include "neurofv/model.h"
#include "neurofv/vis.h"
#include "neurofv/vis_ops.h"
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

/* Ground truth of a `neurofv synth` lesion cohort (src/vis/truth.c): the
 * shapes (the stems of shapes/ *.nii.gz) and mask.nii.gz (brought to the
 * model grid when it differs).  When cohort.json gives the lesion sizes
 * (lesion_size_mm, size_scale) and every shape is one synth draws, each
 * shape has NFV_TRUTH_SIZES templates, painted at the smallest, middle and
 * largest lesion size on the model's (isotropic) voxel; otherwise one, the
 * file brought to the model's voxel size. */
#define NFV_TRUTH_SIZES 3
typedef struct nfv_truth {
    int count;
    char **names;          /* shape names (file stems) */
    int sizes;             /* templates per shape: NFV_TRUTH_SIZES or 1 */
    nfv_volume *shapes;    /* (count, sizes) shape templates at the model's voxel size */
    double *size_mm;       /* (count, sizes) the lesion size each was painted at; 0 for a file */
    nfv_volume mask;       /* on the model grid */
    int polarity;          /* +1: lesions brighter than tissue, -1: darker (from cohort.json) */
} nfv_truth;
nfv_status nfv_truth_load(const nfv_model *m, const char *dir, nfv_truth *out);
void nfv_truth_free(nfv_truth *t);
/* NCC (nfv_ncc_search inside the mask) of polarity * vis with every shape,
 * the best over its sizes (a detector of dark lesions draws its shape dark);
 * score[count].  pos (may be NULL): pos[count][3], the voxel (i, j, k) =
 * (x, y, z index) at the centre of each shape's best match. */
nfv_status nfv_truth_scores(const nfv_truth *t, const nfv_volume *vis, double *score, int (*pos)[3]);

/* What a perfect picture scores: the cohort's own lesion masks (occupancy)
 * scored by nfv_truth_scores as if they were visualizations.  A margin reads
 * against these: at 3 mm a real cube lesion beats the sphere's template by a
 * median 0.065 only. */
#define NFV_TRUTH_CLEAR_MARGIN 0.05 /* the margin issue 14 asks of a picture */
typedef struct nfv_truth_reference_row {
    char name[64];         /* the class (its shape) */
    int subjects;          /* lesion masks scored */
    int recovered;         /* own shape scored best */
    int clear;             /* margin above NFV_TRUTH_CLEAR_MARGIN */
    double own_median;     /* NCC with the own shape */
    double margin_median, margin_min; /* own minus the best other shape's NCC; NaN without subjects */
} nfv_truth_reference_row;
/* rows[t->count]: per class, the first per_class subjects of DIR/labels.csv
 * (the test split first, then the others) with a DIR/lesion_masks/<file>;
 * a class without any has subjects 0.  Without labels.csv every row is empty. */
nfv_status nfv_truth_reference(const nfv_model *m, const nfv_truth *t, const char *dir, int per_class,
                               nfv_truth_reference_row *rows);

/* What a configuration's optimization mask alone scores: the mask (1 inside,
 * drawn with the cohort's polarity) scored by nfv_truth_scores as if it were
 * a picture; score[t->count].  A class whose own shape the mask alone scores
 * best is recovered by the mask's shape as much as by the model: a 48 mm
 * ball (`--mask ball=24`) scores sphere 0.465, cross 0.467, cube 0.428 on
 * the demo's 3 mm cohort, where the demo's sphere picture scores 0.640. */
nfv_status nfv_truth_mask_control(const nfv_model *m, const nfv_truth *t, const char *mask_spec, double *score);

/* Ground-truth controls for the report (each may be absent): the real-lesion
 * reference (truth->count rows) and the masks' scores. */
typedef struct nfv_mask_control {
    char config[64];
    char mask[1024];       /* the configuration's --mask */
    double *score;         /* (truth count) */
} nfv_mask_control;
typedef struct nfv_truth_controls {
    const nfv_truth *truth;                    /* shape names; NULL: no controls */
    const nfv_truth_reference_row *reference;  /* (truth->count) or NULL */
    const nfv_mask_control *masks;
    int nmasks;
} nfv_truth_controls;

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
    /* --score mis (nfv_mis_score): share of strong/weak subject pairs told
     * apart by similarity to the visualization, its Wilson 95 % interval,
     * the two similarity terms alone, the pairs' count.  mis is contrastive
     * when the run has reference targets (compare_mis_contrast): the
     * similarity to this visualization minus the mean similarity to the
     * other visualizations of the same family in the run; mis_plain is the
     * score without them. */
    int has_mis;
    double mis, mis_lo, mis_hi, mis_act, mis_plain;
    int mis_pairs;
    double mis_correct;
    /* --score mis also gives the focus share (nfv_focus_share): NaN when the
     * picture does not beat the weak subjects; focus_mm its centre. */
    double focus_share, focus_mm[3];
    /* --score mis also gives the stretch (nfv_mis_stretch): how far past the
     * cohort the picture drives its unit; NaN for a flat cohort. */
    double stretch;
} nfv_compare_row;

/* ---- The interpretability score without ground truth (src/vis/mis.c) ----
 *
 * Automated 2AFC (Borowski et al. 2021; MIS, Zimmermann et al. 2024): for a
 * unit (target) and its visualization v, pairs of real subjects, one from the
 * top and one from the bottom quartile of the cohort's objective; the one
 * more similar to v is predicted to activate more.  Similarity: the box of
 * half-side radius_mm around v's focus (nfv_focus_centre) is cut out of v
 * and each subject scores its best NCC with that box at any position (the
 * pattern, wherever it lies in the subject).  The score is the share of
 * correct predictions (ties half); 0.5 = chance.  Reported beside it, not
 * part of it: the same judgement by the cosine of cohort-standardized
 * channel means at feat_layer (the last (C, D, H, W) layer before the
 * target's; -1: none), which any picture that drives the unit passes. */
typedef struct nfv_mis_cohort {
    int n;
    const float *volumes;    /* (n, D, H, W) on the model grid, not owned */
    float *objective;        /* (n) the target's objective of each subject */
    int feat_layer, feat_dim;
    float *feat;             /* (n, C) standardized channel means at feat_layer */
    float *feat_mean, *feat_sd; /* (C) */
    int *order;              /* (n) subjects by rising objective */
    const int *strong, *weak; /* the top and bottom n/4 of order */
    float *mean;             /* (D, H, W) the mean subject (for nfv_focus_centre) */
    int nstrong, nweak;
    double radius_mm;        /* the pattern box's half-side */
    const nfv_ncc_bank *bank; /* the subjects' spectra for the pattern search */
    nfv_ncc_bank *own_bank;  /* bank when nfv_mis_cohort_init built it */
} nfv_mis_cohort;

typedef struct nfv_mis_result {
    int pairs;
    double correct;          /* ties count 0.5 */
    double mis, lo, hi;      /* share correct, Wilson 95 % interval */
    double mis_act;          /* judged by the feature term instead (NaN without a feature layer) */
} nfv_mis_result;

/* A picture's objective and its input gradient d objective / d picture
 * (D, H, W floats on the host, malloc'ed), computed once for the scores
 * that read them: MIS's receptive field and the focus share.  Where a score
 * takes one, NULL computes it there. */
typedef struct nfv_picture_grad {
    float objective;
    float *grad;
} nfv_picture_grad;
nfv_status nfv_picture_grad_compute(nfv_context *ctx, nfv_model *m, const nfv_target *t, const float *vis,
                                    nfv_picture_grad *pg);
void nfv_picture_grad_free(nfv_picture_grad *pg);

/* ---- Focus share (src/vis/focus.c) ----
 *
 * How much of what visualization v does to its unit sits in one place: the
 * focus is the ball of radius_mm around where |d objective / d x (v) *
 * (v - the cohort's mean subject)| is densest; pasted into each of c's weak
 * subjects (bottom quartile), it raises the objective by gain on average;
 * v itself is effect above their mean; share = gain / effect (1: one place
 * carries it all; near 0: fragments spread over the volume; NaN when
 * effect <= 0).  One input gradient and nweak + 1 forwards. */
typedef struct nfv_focus_result {
    double share, gain, effect;
    double centre_mm[3];   /* world (x, y, z) of the focus */
    int voxels;            /* in the ball */
} nfv_focus_result;

nfv_status nfv_focus_share(nfv_context *ctx, nfv_model *m, const nfv_target *t, const nfv_mis_cohort *c,
                           const float *vis, const nfv_picture_grad *pg, double radius_mm, nfv_focus_result *r);
/* The focus alone: centre (z, y, x voxel) of the box of half-sides half
 * (z, y, x; radius_mm over each axis's voxel size) where |grad * (vis - c's
 * mean subject)| sums highest; grad (D, H, W) is d objective / d vis. */
nfv_status nfv_focus_centre(const nfv_model *m, const nfv_mis_cohort *c, const float *vis, const float *grad,
                            double radius_mm, int centre[3], int half[3]);

int nfv_mis_default_layer(const nfv_model *m, int target_layer);
/* One forward per subject (batch 1): objective and features.  bank: the
 * spectra of volumes (nfv_ncc_bank_create, shared by the targets of a run;
 * NULL: built here); radius_mm: the pattern box's half-side (> 0). */
nfv_status nfv_mis_cohort_init(nfv_context *ctx, nfv_model *m, const nfv_target *t, const float *volumes, int n,
                               int feat_layer, const nfv_ncc_bank *bank, double radius_mm, nfv_mis_cohort *c);
void nfv_mis_cohort_free(nfv_mis_cohort *c);

/* How far an input with this objective drives the unit past the cohort c:
 * (objective - the cohort's mean) / (its strongest subject's - the mean).
 * 1: as far as the strongest real subject; >> 1: a super-stimulus; near 1
 * or below: the optimization could not drive the unit past what real
 * subjects do (e.g. a class logit whose evidence lies outside the mask the
 * picture may change), so its picture shows no more than a subject would.
 * NaN when every subject scores the same. */
double nfv_mis_stretch(const nfv_mis_cohort *c, double objective);
/* vis (D, H, W) on the model grid; pairs drawn from seed (the same pairs for
 * every visualization scored with one cohort and seed); sim (n) receives
 * every subject's combined similarity (for nfv_mis_contrastive), or NULL. */
nfv_status nfv_mis_score(nfv_context *ctx, nfv_model *m, const nfv_target *t, const nfv_mis_cohort *c,
                         const float *vis, const nfv_picture_grad *pg, int pairs, unsigned long long seed,
                         double *sim, nfv_mis_result *r);
/* The similarity of every subject of c to vis: sim_pattern (n) each
 * subject's best NCC with the pattern box, sim (n) the same standardized
 * over the subjects (what the judgements use), sim_act (n) the feature
 * term's cosine. */
nfv_status nfv_mis_similarity(nfv_context *ctx, nfv_model *m, const nfv_target *t, const nfv_mis_cohort *c,
                              const float *vis, const nfv_picture_grad *pg, double *sim, double *sim_pattern,
                              double *sim_act);
/* Correct predictions (ties 0.5) over `pairs` strong/weak pairs of c drawn
 * from seed, predicting the subject with the larger sim. */
double nfv_mis_judge(const nfv_mis_cohort *c, const double *sim, int pairs, unsigned long long seed);
/* The contrastive judgement, as the machine observer of Zimmermann et al.
 * (2024) sees a unit's visualization and, as references, those of other
 * units: sims (count, n) holds every target's similarities (from
 * nfv_mis_similarity, all against the same n subjects, c being target t's
 * cohort); a subject counts as similar to t's picture by its similarity to
 * it minus its mean similarity to the pictures of the other targets of t's
 * family (same layer, kind and sign).  That cancels what makes a subject
 * similar to any picture (more structure, a larger lesion).  Returns the
 * number of references (0: *correct untouched; -1: out of memory). */
int nfv_mis_contrastive(const nfv_mis_cohort *c, const double *sims, const nfv_target *targets, int count, int t,
                        int pairs, unsigned long long seed, double *correct);
/* Wilson score interval (95 %) of k successes in n trials. */
void nfv_wilson(double k, int n, double *lo, double *hi);

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
 * itself), with the row's picture linking to it.  controls (may be NULL):
 * the tables "What a real lesion scores" and "What the mask alone scores". */
nfv_status nfv_compare_write_report(const char *dir, const char *model_path, const nfv_compare_config *configs,
                                    int nconfigs, const nfv_compare_row *rows, int nrows, const nfv_volume *background,
                                    const nfv_truth_controls *controls);

#ifdef __cplusplus
}
#endif
#endif
