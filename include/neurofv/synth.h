/* Synthetic cohorts built from one template brain (`neurofv synth`).
 *
 * Every subject is the template (default: Colin27 ch2bet, MNI, 1 mm) seen
 * through a small random affine and a smooth random deformation, composed
 * into one backward map and sampled once (trilinear) onto the output grid,
 * then a multiplicative bias field and Gaussian noise inside the brain.
 * Intensities are template units x 8 rounded to integers (int16-like, so
 * the .nii.gz files compress); outside the brain is exactly 0.
 *
 * Tasks:
 *   lesion  one lesion per subject, shape = label (sphere, cube, cross, ...),
 *           8-14 mm, hypo-intense by 30-60 %, centred in white matter and
 *           axis-aligned on the output grid; optionally a "none" class.
 *   morph   two classes, "control" and "atrophy": atrophy subjects are 3 %
 *           smaller overall and have bilateral hippocampal atrophy (a radial
 *           contraction field, 10 % at the centre, radius ~8 mm); every
 *           subject also varies in scale by +-3 %, so the cue is subtle.
 *
 * Output grid: default 2 mm MNI, 91 x 109 x 91, RAS affine
 * [[2,0,0,-90],[0,2,0,-126],[0,0,2,-72]], sform/qform code 4 (MNI).  Other
 * voxel sizes or shapes keep the same field-of-view centre (0, -18, 18) mm.
 *
 * Files under out_dir: labels.csv (path,label,split), sub-XXXX.nii.gz,
 * mask.nii.gz (template brain on the grid), template.nii.gz (template on
 * the grid, same intensity units), and for the lesion task shapes/<name>.nii.gz
 * (each shape at 11 mm, centred, same voxel size) and
 * lesion_masks/sub-XXXX.nii.gz (0/1).  Same options + seed give the same
 * bytes, whatever the thread count. */
#ifndef NEUROFV_SYNTH_H
#define NEUROFV_SYNTH_H

#include "neurofv/status.h"
#include "neurofv/volume.h"

#ifdef __cplusplus
extern "C" {
#endif


typedef enum nfv_synth_task { NFV_SYNTH_LESION = 0, NFV_SYNTH_MORPH = 1, NFV_SYNTH_AGE = 2 } nfv_synth_task;

/* Lesion shapes, in the order of nfv_synth_shape_names. */
typedef enum nfv_shape {
    NFV_SHAPE_SPHERE = 0,
    NFV_SHAPE_CUBE,
    NFV_SHAPE_CROSS,     /* three orthogonal bars, thickness 0.36 x size */
    NFV_SHAPE_CYLINDER,  /* axis S-I, diameter = height = size */
    NFV_SHAPE_PYRAMID,   /* square base (inferior), apex superior */
    NFV_SHAPE_TORUS,     /* ring in the axial plane */
    NFV_SHAPE_COUNT
} nfv_shape;
extern const char *const nfv_synth_shape_names[NFV_SHAPE_COUNT];
nfv_status nfv_synth_shape_parse(const char *name, nfv_shape *out);

/* Occupancy of a shape of `size_mm` centred at the origin at offset (dx, dy,
 * dz) mm: 1 inside, 0 outside (a point test). */
int nfv_synth_shape_contains(nfv_shape shape, double size_mm, double dx, double dy, double dz);

/* Partial-volume occupancy in [0, 1] of `shape` (size_mm, centred at world
 * point centre_mm) for every voxel of v's grid, written into v->data
 * (4x4x4 sub-samples per voxel; only the shape's bounding box is visited,
 * other voxels are left as they are). */
nfv_status nfv_synth_shape_paint(nfv_volume *v, nfv_shape shape, double size_mm, const double centre_mm[3]);

/* The shape's template volume: odd size n = 2*ceil((size/2 + 3 mm) / voxel) + 1 per
 * axis, voxel_mm isotropic, the shape (size_mm) centred at world (0,0,0). */
nfv_status nfv_synth_shape_template(nfv_shape shape, double size_mm, double voxel_mm, nfv_volume *out);

/* The output grid for a voxel size and optional shape (shape NULL or zeros:
 * cover the MNI box x -90..90, y -126..90, z -72..108).  Allocates *out
 * (zeros) with that affine, sform/qform code 4. */
nfv_status nfv_synth_grid(double voxel_mm, const int shape[3], nfv_volume *out);

typedef struct nfv_synth_options {
    nfv_synth_task task;
    int n;                       /* subjects (>= number of classes) */
    const char *template_path;   /* NULL: NFV_DEFAULT_TEMPLATE (volume.h) */
    double voxel_mm;             /* 2 */
    int shape[3];                /* zeros: from voxel_mm */
    const char *shapes;          /* comma list; NULL: "sphere,cube,cross" */
    int no_lesion_class;         /* add a class "none" without lesion */
    double lesion_size_mm[2];    /* lesion size drawn uniformly in [min, max] mm (default 16-22) */
    double lesion_intensity[2];  /* lesion intensity as a multiple of white matter, in [min, max]:
                                  * > 1 hyper-intense (default 1.5-1.8), < 1 hypo-intense */
    unsigned long long seed;
    double split[3];             /* train/val/test percentages, 70/15/15 */
    int threads;                 /* 0: online CPUs */
    const char *out_dir;
    /* Called after each subject (from any worker, serialized by a mutex). */
    void (*progress)(void *user, int done, int total);
    void *progress_user;
} nfv_synth_options;

void nfv_synth_options_default(nfv_synth_options *o);
/* "70/15/15" (any three non-negative numbers summing to > 0; normalized). */
nfv_status nfv_synth_split_parse(const char *s, double split[3]);
/* Build the whole cohort under o->out_dir (created if missing). */
nfv_status nfv_synth_run(const nfv_synth_options *o);

#ifdef __cplusplus
}
#endif
#endif
