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
 *   age     regression: label = age in years, one decimal (labels.csv "47.3"),
 *           stratified uniform in [20, 85] (subject of age rank q of n:
 *           20 + 65 (q + U(0,1)) / n); the split is stratified by groups of
 *           20 consecutive ages.  The model (src/io/synth_age.c):
 *
 *           Biological age b = clip(age + gap, 15, 95), gap ~ N(0, 5^2)
 *           clipped to [-10, 10] years, drawn per subject; the anatomy follows
 *           b, so a perfect predictor of b still has MAE ~4 years against the
 *           label.  Each subject's ventricle volume is also scaled by a factor
 *           F = exp(N(0, 0.2^2)) clipped to [exp(-0.4), exp(0.4)] (healthy
 *           people of one age differ in ventricle size), so the ventricles
 *           alone do not give the age (a quadratic fit of age on the box's CSF
 *           voxel count: MAE ~10 years on 200 subjects at 2 mm).  Both are
 *           the first draws of the subject's stream.  The template is the
 *           anatomy at b = 20.  With t = b - 20,
 *           h = max(0, b - 60) (formulas extend linearly below 20):
 *
 *           Ventricles: target volume ratio R(b) = V(b)/V(20) =
 *             1 + 0.02 t + 0.0006 h^2   (1.40 at 40, 1.80 at 60, 2.68 at 85).
 *             Ventricle mask = template voxels darker than the CSF class
 *             centre (3-class k-means of the template) inside the MNI box
 *             x -28..28, y -50..35, z -5..35 mm, on the 2 mm MNI grid.  S =
 *             that mask smoothed by a Gaussian of sigma 6 mm; the backward map
 *             y <- y + (k/8) grad S(y), 8 Euler steps (a smooth invertible
 *             outward flow of the tissue around the ventricles).  k(b) is
 *             calibrated once per cohort on the template: V(k) = 2 mm voxels in
 *             the box darker than (CSF + GM)/2 after the flow, tabulated for k
 *             = -100, -50, ..., 700 mm^2 and inverted linearly so V(k)/V(0) =
 *             R(b) x F (Colin27: k = 279 mm^2 for R = 2.675; the table ends
 *             at k = 700 mm^2, ratio ~4.0, which caps the rare b ~ 85-95 with
 *             F near its maximum; each Euler step stays invertible up to k =
 *             8 / max|eig Hess S| ~ 975 mm^2).
 *           Tissue: fractional tissue loss L(b) = 0.002 t + 0.00006 h^2
 *             (-0.2 %/year to 60, -0.32 %/year at 70, -0.5 %/year at 85; 8 % at
 *             60, 16.8 % at 85), half of it (a) a global contraction about the
 *             FOV centre (0, -18, 18) mm by the linear factor (1 - L/2)^(1/3)
 *             (0.971 at 85) and half (b) sulcal widening / cortical thinning
 *             as CSF partial volume in the cortical band: w = clamp(2 (1 -
 *             G_5mm * brain), 0, 1) inside the template brain (1 at its edge,
 *             ~0.05 at 1 cm depth), I <- I - c w (I - CSF) where I > CSF, with
 *             c = L / (2 mean_brain(w)) (0.45 at 85 for Colin27), so the band
 *             loses L/2 of the brain's tissue.  The ventricles' growth adds
 *             its CSF on top.
 *           Grey-white contrast: I <- I - C (I - GM) where I > GM, C(b) =
 *             0.003 t (WM - GM contrast -19.5 % at 85).
 *           Order (backward, from the subject's warped position y in template
 *           world): undo the contraction, the ventricle flow, sample the
 *           template (brain = sample >= brain level, as for the other tasks),
 *           contrast, then the band at the flowed point (the band moves with
 *           the tissue).  Then the subject's random affine, B-spline
 *           deformation, bias field and noise exactly as for the other tasks
 *           (the +-3 % scale of the affine is of the order of the
 *           contraction, so brain size alone does not give the age).
 *           age_effect.nii.gz: (I_85 - I_20) / 65 on the output grid, I_b the
 *           model alone at biological age b (no gap, F = 1, affine, deformation,
 *           bias or noise; 0 outside its brain), in the subjects' intensity
 *           units (template x 8) per year.  Negative = darker with age: the
 *           periventricular tissue (becomes CSF), the cortical band, white
 *           matter (contrast); its sum over the brain is negative.  Positive
 *           where the contraction or the flow moves brighter tissue onto a
 *           darker position (grey matter and CSF edges, ~17 % of brain voxels at
 *           2 mm), and at a few hundred voxels just outside mask.nii.gz.
 *
 * Output grid: default 2 mm MNI, 91 x 109 x 91, RAS affine
 * [[2,0,0,-90],[0,2,0,-126],[0,0,2,-72]], sform/qform code 4 (MNI).  Other
 * voxel sizes or shapes keep the same field-of-view centre (0, -18, 18) mm.
 *
 * Files under out_dir: labels.csv (path,label,split), sub-XXXX.nii.gz,
 * mask.nii.gz (template brain on the grid), template.nii.gz (template on
 * the grid, same intensity units), and for the lesion task shapes/<name>.nii.gz
 * (each shape at 11 mm, centred, same voxel size) and
 * lesion_masks/sub-XXXX.nii.gz (0/1), for the age task age_effect.nii.gz;
 * cohort.json (the age task adds the tissue levels and the model's values at
 * 85).  template.nii.gz is the unaged template (biological age 20).  Same
 * options + seed give the same bytes, whatever the thread count. */
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

/* The factor that scales a shape's size so that its volume equals that of a
 * sphere of the unscaled size: (V_sphere(1) / V_shape(1))^(1/3), with the
 * volumes counted from nfv_synth_shape_contains on a 128^3 grid (so the
 * factor matches the shapes as defined; sphere 1, cube 0.806, cross 1.21,
 * torus 1.43).  Used by `synth --match-volume`. */
double nfv_synth_shape_volume_scale(nfv_shape shape);

/* The shape's template volume: odd size n = 2*ceil((size/2 + 3 mm) / voxel) + 1 per
 * axis, voxel_mm isotropic, the shape (size_mm) centred at world (0,0,0). */
nfv_status nfv_synth_shape_template(nfv_shape shape, double size_mm, double voxel_mm, nfv_volume *out);

/* The output grid for a voxel size and optional shape (shape NULL or zeros:
 * cover the MNI box x -90..90, y -126..90, z -72..108).  Allocates *out
 * (zeros) with that affine, sform/qform code 4. */
nfv_status nfv_synth_grid(double voxel_mm, const int shape[3], nfv_volume *out);

typedef struct nfv_synth_options {
    nfv_synth_task task;
    int n;                       /* subjects (>= number of classes; age: >= 1) */
    const char *template_path;   /* NULL: NFV_DEFAULT_TEMPLATE (volume.h) */
    double voxel_mm;             /* 2 */
    int shape[3];                /* zeros: from voxel_mm */
    const char *shapes;          /* comma list; NULL: "sphere,cube,cross" */
    int no_lesion_class;         /* add a class "none" without lesion */
    double lesion_size_mm[2];    /* lesion size drawn uniformly in [min, max] mm (default 16-22) */
    int match_volume;            /* scale each shape's size by nfv_synth_shape_volume_scale, so that every
                                  * class's lesions have the volumes of spheres of lesion_size_mm: then
                                  * the lesion's volume (and so the amount of bright tissue) no longer
                                  * tells the classes apart, only the shape does */
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
