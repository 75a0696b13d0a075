/* Shared by synth's source files, not part of the public API:
 *   synth.c          options, threads, cohort files (labels, cohort.json, template, masks)
 *   synth_anatomy.c  output grid, template preparation, per-subject warp, bias and noise
 *   synth_lesion.c   lesion shapes (point test, partial-volume paint) and planting
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
    int *label;                      /* class per subject */
    int *split;                      /* split per subject */

    pthread_mutex_t mu;
    int next, done, failed;
    nfv_status status;
    char message[1024];
} synth_shared;

/* One worker thread's buffers for one subject at a time. */
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
 * (+ hippocampal atrophy when morph_atrophy) into w->clean, brain mask
 * into w->brain; draws from r. */
void nfv_synth_warp_subject(const synth_shared *sh, synth_work *w, nfv_rng *r, int morph_atrophy,
                            const bspline_axis ax[3]);

/* Bias field and noise inside the brain, scaled and rounded into w->out. */
void nfv_synth_finish_subject(const synth_shared *sh, synth_work *w, nfv_rng *r);

/* ---- synth_lesion.c ---- */

/* Plants one lesion of `shape` into w->clean (in white matter of w and of
 * sh->common_mask) and its 0/1 mask into w->lesion; draws from r. */
void nfv_synth_plant_lesion(const synth_shared *sh, synth_work *w, nfv_rng *r, nfv_shape shape);

#endif
