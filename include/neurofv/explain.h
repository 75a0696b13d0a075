/* Attribution: which voxels of one subject's scan drove a model's output
 * (`neurofv explain`), beside feature visualization, which shows what a
 * unit wants in general.  Every method is computed for a batch of subjects
 * (or of perturbed copies of one subject) per device call, on the model
 * grid; src/explain/ files: explain_methods.c (the gradient methods),
 * explain_occlusion.c, explain_gradcam.c, explain_score.c (scores against a
 * planted truth), explain_report.c (CSV, Markdown, HTML).
 *
 * With f(x) the objective of the target (neurofv/vis.h: logit:CLASS,
 * output, LAYER:CHANNEL, ...) at input x (1, D, H, W), each method gives a
 * map A (D, H, W) on the model grid:
 *   saliency      |df/dx|                         (Simonyan et al. 2014; Captum Saliency, abs)
 *   gradxinput    x * df/dx                        (Shrikumar et al. 2016)
 *   smoothgrad    mean_s df/dx at x + e_s, e_s ~ N(0, (noise * (max x - min x))^2)
 *                                                  (Smilkov et al. 2017; MONAI SmoothGrad)
 *   integrated-gradients
 *                 (x - b) * mean_k df/dx at b + (k + 1/2)/K (x - b), k < K
 *                                                  (Sundararajan et al. 2017, midpoint rule;
 *                                                  sum A ~ f(x) - f(b), "completeness")
 *   occlusion     mean over the boxes covering a voxel of f(x) - f(x with the box set
 *                 to the baseline)                 (Zeiler & Fergus 2014; MONAI OcclusionSensitivity)
 *   gradcam       ReLU(sum_c w_c a_c) at a layer's output a (C, d, h, w),
 *                 w_c = mean over (d, h, w) of df/da_c, upsampled trilinearly
 *                 (align_corners = False) to (D, H, W) (Selvaraju et al. 2017;
 *                 MONAI GradCAM before its min-max normalization)
 * Maps are signed where the method is (gradxinput, smoothgrad, IG,
 * occlusion); the scores use |A|. */
#ifndef NEUROFV_EXPLAIN_H
#define NEUROFV_EXPLAIN_H

#include "neurofv/vis.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nfv_explain_method {
    NFV_EXPLAIN_SALIENCY = 0,
    NFV_EXPLAIN_GRADXINPUT,
    NFV_EXPLAIN_SMOOTHGRAD,
    NFV_EXPLAIN_IG,
    NFV_EXPLAIN_OCCLUSION,
    NFV_EXPLAIN_GRADCAM,
    NFV_EXPLAIN_METHODS
} nfv_explain_method;

/* "saliency", "gradxinput", "smoothgrad", "integrated-gradients", "occlusion", "gradcam". */
const char *nfv_explain_method_name(nfv_explain_method m);
/* One name (also "ig"); errors list the names. */
nfv_status nfv_explain_method_parse(const char *s, nfv_explain_method *out);

typedef struct nfv_explain_options {
    int batch;               /* inputs per device call, 8 */
    unsigned long long seed; /* SmoothGrad's noise, 1 */
    int smooth_samples;      /* SmoothGrad samples, 16 */
    float smooth_noise;      /* SmoothGrad noise SD as a fraction of the input's max - min, 0.1 */
    int ig_steps;            /* integrated-gradients steps, 64 */
    int occlusion_box;       /* occlusion box edge (voxels, a cube), 8 */
    int occlusion_stride;    /* occlusion box stride (voxels), 4 */
    int cam_layer;           /* Grad-CAM layer index; -1: the last (C, D, H, W) layer before the target
                              * with more than one voxel (nfv_explain_default_cam_layer) */
} nfv_explain_options;

void nfv_explain_options_default(nfv_explain_options *o);

/* The layer Grad-CAM uses by default for target t: the last node before
 * t's layer, among those t depends on, with a (C, D, H, W) output of more
 * than one voxel per channel; -1 (with an error message) when none. */
int nfv_explain_default_cam_layer(const nfv_model *m, const nfv_target *t);

/* Maps of method for n inputs x (n, 1, D, H, W) (host, on the model grid,
 * preprocessed as the model's training data) and their targets (one per
 * input, all on one layer); baseline (D, H, W) for integrated gradients
 * and occlusion (NULL: zeros).  maps (n, D, H, W) host; objective (n, may
 * be NULL) f(x) of each input. */
nfv_status nfv_explain(nfv_context *ctx, nfv_model *m, nfv_explain_method method, const nfv_target *targets, int n,
                       const float *x, const float *baseline, const nfv_explain_options *o, float *maps,
                       float *objective);

/* ---- Scores against a planted truth (src/explain/explain_score.c) --------
 *
 * Over n voxels of a map A and a truth mask (> 0.5 inside), all on one grid:
 *   mass in mask     sum_{inside} |A| / sum |A|  (relevance mass accuracy,
 *                    Arras et al. 2022; 0 for an all-zero map)
 *   pointing game    1 when the voxel of largest |A| is inside (Zhang et al. 2018)
 * and between two maps over the voxels where `where` > 0 (NULL: all): the
 * Spearman rank correlation of |A| and |B| (ties get their mean rank), and
 * the Pearson correlation of A and B (NaN when either is constant). */
double nfv_explain_mass_in(const float *map, const float *mask, size_t n);
int nfv_explain_pointing(const float *map, const float *mask, size_t n);
double nfv_explain_spearman(const float *a, const float *b, const float *where, size_t n);
double nfv_explain_pearson(const float *a, const float *b, const float *where, size_t n);

/* ---- Feature visualizations against the same truth (src/explain/explain_vis.c)
 *
 * The outputs of `neurofv visualize` in a folder, scored so the two
 * families sit in one report: each <stem>_importance.nii.gz (the mean
 * |d objective / d image| over the optimization) of a logit or contrast
 * target against the region where that class's lesions lie (the union of
 * the explained subjects' lesion masks of the class), and each
 * visualization (<stem>_change.nii.gz when the start was a template, else
 * <stem>.nii.gz) against the age-effect map (Pearson r over the brain, and
 * the share of its |mass| in the region where |effect| >= 20 % of its max). */
typedef struct nfv_explain_vis_score {
    char target[128];        /* logit:cube, output, ... (from the file name) */
    char file[256];          /* the file scored, relative to the folder */
    double mass, chance;     /* importance mass in the class's lesion region; region / brain voxels (NaN: n/a) */
    double brain_mass;       /* importance mass inside the brain (NaN: n/a) */
    int hit;                 /* pointing game in the region (-1: n/a) */
    double effect_r;         /* r with the age-effect map (NaN: n/a) */
    double effect_mass;      /* |mass| in the age-effect region (|effect| >= 20 % of max; NaN: n/a) */
} nfv_explain_vis_score;

/* regions: classes volumes (0/1, any grid; nx = 0: none for that class),
 * brain: 0/1 volume, effect: the age-effect map (nx = 0: none); the volumes
 * are resampled onto each file's grid through their affines.  *out
 * malloc'ed, *count entries (files that match nothing are skipped). */
nfv_status nfv_explain_score_vis(const char *dir, const nfv_volume *regions, const char *const *class_names,
                                 int classes, const nfv_volume *brain, const nfv_volume *effect,
                                 nfv_explain_vis_score **out, int *count);

/* ---- Reports (src/explain/explain_report.c) ------------------------------
 *
 * What `neurofv explain` accumulates over the subjects of a run, one entry
 * per method in the order given, and writes as summary.csv, summary.md and
 * index.html under a folder. */
typedef struct nfv_explain_summary {
    int count;                                   /* methods */
    nfv_explain_method method[NFV_EXPLAIN_METHODS];
    int subjects;                                /* explained */
    double seconds[NFV_EXPLAIN_METHODS];         /* wall time per method, all subjects */
    /* Lesion truth: subjects with a mask, sums of mass in mask, its square, pointing hits. */
    int scored;
    double mass[NFV_EXPLAIN_METHODS], mass_sq[NFV_EXPLAIN_METHODS];
    int hits[NFV_EXPLAIN_METHODS];
    double chance;                               /* sum over scored subjects of lesion / brain voxels */
    /* Mean Spearman correlation between methods (sums over subjects, count). */
    double spearman[NFV_EXPLAIN_METHODS][NFV_EXPLAIN_METHODS];
    int spearman_n;
    /* Age truth: Pearson r of the split's mean map with the age-effect map
     * (signed, and of the absolute values); NaN when none. */
    double effect_r[NFV_EXPLAIN_METHODS], effect_abs_r[NFV_EXPLAIN_METHODS];
    /* ... and the share of the mean map's |mass| in the age-effect region
     * (|effect| >= 20 % of its maximum), with that region's share of the
     * brain as chance. */
    double effect_mass[NFV_EXPLAIN_METHODS], effect_chance;
    char target[128];                            /* the target as given (label, predicted, output, ...) */
    char model[256];
    const nfv_explain_vis_score *vis;            /* feature visualizations scored (nfv_explain_score_vis) */
    int vis_count;
} nfv_explain_summary;

/* summary.csv, summary.md and index.html under dir; pictures (may be NULL)
 * are PNG paths relative to dir shown in the page with their captions.  With
 * the NiiVue bundle (include/neurofv/viewer.h) the page embeds the viewer:
 * picture i's map (the NIfTI beside it, <picture>.nii.gz) over backgrounds[i]
 * (a NIfTI path: the subject, or the mean input). */
nfv_status nfv_explain_write_report(const nfv_explain_summary *s, const char *dir, const char *const *pictures,
                                    const char *const *captions, const char *const *backgrounds, int npictures);

#ifdef __cplusplus
}
#endif
#endif
