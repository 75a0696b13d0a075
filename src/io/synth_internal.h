/* Shared by synth's source files, not part of the public API:
 *   synth.c          options, threads, cohort files (labels, cohort.json, template, masks)
 *   synth_anatomy.c  output grid, template preparation, per-subject warp, bias and noise
 *   synth_lesion.c   lesion shapes (point test, partial-volume paint) and planting
 *   synth_age.c      the age task: ageing model (fields, calibration), ages, age-effect map
 * Volumes are (nz, ny, nx) arrays, x fastest; affines map voxel (i, j, k) to world mm. */
#ifndef NEUROFV_SYNTH_INTERNAL_H
#define NEUROFV_SYNTH_INTERNAL_H

#include <pthread.h>

#include "base/rng.h"
#include "neurofv/synth.h"

/* Field-of-view centre of the MNI box (mm). */
extern const double nfv_synth_fov_centre[3];

/* Intensity scale of the written volumes (template units x 8, integers). */
#define NFV_SYNTH_OUT_SCALE 8.0f

/* out = a * (p, 1) for a 4x4 affine (the first three rows). */
static inline void nfv_synth_affine_apply(const double a[4][4], const double p[3], double out[3])
{
    for (int r = 0; r < 3; r++) out[r] = a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3];
}

/* The age model's fields and calibration (synth_age.c). */
typedef struct synth_age_model synth_age_model;
#define AGE_MIN 20.0
#define AGE_MAX 85.0
#define AGE_SPLIT_GROUP 20 /* the split is stratified by groups of 20 consecutive ages */
#define AGE_CAL_N 17  /* calibration table entries, k = -100, -50, ..., 700 mm^2 */

/* One biological age's parameters of the model (synth.h states them). */
typedef struct synth_age_params {
    double bio_age;   /* years */
    double k;         /* ventricle flow amplitude, mm^2 */
    double shrink;    /* linear contraction factor (1 - L/2)^(1/3) */
    double cortex;    /* cortical band's CSF partial-volume fraction */
    double contrast;  /* fraction of (I - GM) removed above the GM level */
} synth_age_params;

/* The cohort being built, read by every worker thread. */
typedef struct synth_shared {
    const nfv_synth_options *o;
    nfv_volume tmpl;                 /* template, float, smoothed when downsampling */
    double tmpl_inv[4][4];           /* world -> template voxel */
    double csf_level, gm_level, wm_level; /* class centres (template units) */
    double brain_level, wm_threshold;
    nfv_volume grid;                 /* output grid; data = template on the grid */
    unsigned char *common_mask;      /* template brain on the grid */
    int class_count;
    const char *class_names[NFV_SHAPE_COUNT + 1];
    nfv_shape class_shape[NFV_SHAPE_COUNT + 1]; /* lesion task; NFV_SHAPE_COUNT = no lesion */
    double size_scale[NFV_SHAPE_COUNT];         /* per shape: 1, or nfv_synth_shape_volume_scale (--match-volume) */
    int *label;                      /* class per subject (age task: split group) */
    double *age_years;               /* age task: chronological age per subject (the label) */
    synth_age_model *age;            /* age task: the model; NULL otherwise */
    int *split;                      /* split per subject */

    pthread_mutex_t mu;
    int done; /* subjects written, for the progress callback */
} synth_shared;

/* One subject's buffers (make_one_subject allocates them per subject). */
typedef struct synth_work {
    float *clean;                 /* warped template, template units (nz, ny, nx) */
    unsigned char *brain, *wm, *wm_eroded;
    int *candidates;
    float *g1, *g2, *disp;        /* B-spline passes */
    float *occ;                   /* lesion occupancy box */
    nfv_volume out, lesion;
} synth_work;


/* B-spline weights per axis of the output grid. */
typedef struct bspline_axis {
    int n, nc;
    int *base;
    float *w; /* n x 4 */
} bspline_axis;


/* ---- synth_anatomy.c ---- */

/* Per-axis weights of the cubic B-spline displacement field (control points
 * every 20 mm) for an axis of n voxels; 0 or -1 when out of memory. */
int nfv_synth_bspline_axis_init(bspline_axis *b, int n, double voxel_mm);
void nfv_synth_bspline_axis_free(bspline_axis *b);

/* Trilinear value of t at voxel coordinates (px, py, pz); 0 outside. */
float nfv_synth_sample_trilinear(const nfv_volume *t, double px, double py, double pz);

/* Reads the template tpath into sh->tmpl and sets tmpl_inv, the tissue
 * levels (csf/gm/wm, brain_level, wm_threshold), and smooths the template
 * when the output grid is much coarser.  sh->o must be set. */
nfv_status nfv_synth_prepare_template(synth_shared *sh, const char *tpath);

/* The template warped by subject-specific random affine + B-spline field
 * (+ hippocampal atrophy when morph_atrophy; sampling the aged template
 * when age is not NULL) into w->clean, brain mask into w->brain; draws from r. */
void nfv_synth_warp_subject(const synth_shared *sh, synth_work *w, nfv_rng *r, int morph_atrophy,
                            const synth_age_params *age, const bspline_axis ax[3]);

/* Bias field and noise inside the brain, scaled and rounded into w->out. */
void nfv_synth_finish_subject(const synth_shared *sh, synth_work *w, nfv_rng *r);

/* ---- synth_lesion.c ---- */

/* Plants one lesion of `shape` into w->clean (in white matter of w and of
 * sh->common_mask) and its 0/1 mask into w->lesion; draws from r. */
void nfv_synth_plant_lesion(const synth_shared *sh, synth_work *w, nfv_rng *r, nfv_shape shape);

/* ---- synth_age.c ---- */

/* Box (MNI mm, per axis [min, max]) that holds the lateral ventricles. */
extern const double nfv_synth_age_box[3][2];

/* Model curves of biological age b (synth.h): target ventricle volume ratio
 * R(b), tissue loss fraction L(b), grey-white contrast loss C(b). */
double nfv_synth_age_ventricle_ratio(double b);
double nfv_synth_age_tissue_loss(double b);
double nfv_synth_age_contrast_loss(double b);

/* Builds sh->age from sh->tmpl (after nfv_synth_prepare_template). */
nfv_status nfv_synth_age_prepare(synth_shared *sh);
void nfv_synth_age_free(synth_age_model *m);
/* Parameters at biological age b with the ventricle ratio R(b) x vent_factor. */
void nfv_synth_age_params(const synth_shared *sh, double bio_age, double vent_factor, synth_age_params *p);
/* The ventricle ratio the calibrated flow gives at b (the table, interpolated). */
double nfv_synth_age_ventricle_ratio_model(const synth_shared *sh, double b);
/* One subject's parameters: biological age b = clip(age + gap, 15, 95), gap ~
 * N(0, 5^2) clipped to +-10, and ventricle factor exp(N(0, 0.2^2)) clipped
 * to [exp(-0.4), exp(0.4)]; draws both from r. */
void nfv_synth_age_subject(const synth_shared *sh, nfv_rng *r, double age, synth_age_params *p);
/* The aged template at template voxel (px, py, pz); *in_brain from the geometry. */
float nfv_synth_age_sample(const synth_shared *sh, const synth_age_params *p, double px, double py, double pz,
                           int *in_brain);
/* Ages into sh->age_years, age rank / AGE_SPLIT_GROUP into sh->label; draws from r. */
void nfv_synth_age_draw(synth_shared *sh, nfv_rng *r);
/* out_dir/age_effect.nii.gz: (I(85) - I(20)) / 65 on the grid, output units per year. */
nfv_status nfv_synth_age_write_effect(const synth_shared *sh);

#endif
