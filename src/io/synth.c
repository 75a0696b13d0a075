/* Synthetic cohorts from one template brain; see include/neurofv/synth.h.
 *
 * Per subject, one backward map from the output grid (nx, ny, nz) to the
 * template's voxels is sampled once: p = B * (i, j, k, 1) + D(i, j, k), with B
 * the composed affine (template world->voxel o random affine o grid
 * voxel->world) and D a cubic B-spline displacement field (control spacing
 * 20 mm), evaluated separably in three passes over the grid.  Subjects are
 * spread over threads; each draws its randomness from its own stream
 * (seed, subject index), so bytes do not depend on the thread count. */
#include "base/affine.h"
#include "base/rng.h"
#include "neurofv/synth.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/fs.h"
#include "neurofv/status.h"

const char *const nfv_synth_shape_names[NFV_SHAPE_COUNT] = {"sphere", "cube", "cross", "cylinder", "pyramid", "torus"};

/* Field-of-view centre of the MNI box (mm) and its extent. */
static const double fov_centre[3] = {0.0, -18.0, 18.0};
static const double fov_extent[3] = {180.0, 216.0, 180.0};

/* Intensity scale of the written volumes (template units x 8, integers). */
#define OUT_SCALE 8.0f
#define CONTROL_SPACING_MM 20.0

/* Streams of the one host RNG (base/rng.h) per subject, labels and split. */
enum { STREAM_SUBJECT = 1, STREAM_LABELS = 2, STREAM_SPLIT = 3 };

/* ---- Small matrix helpers (4x4 affine; product and inverse in base/affine.h) */

static void affine_apply(const double a[4][4], const double p[3], double out[3])
{
    for (int r = 0; r < 3; r++) out[r] = a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3];
}

/* ---- Shapes ---------------------------------------------------------------- */

nfv_status nfv_synth_shape_parse(const char *name, nfv_shape *out)
{
    for (int i = 0; i < NFV_SHAPE_COUNT; i++)
        if (name && !strcmp(name, nfv_synth_shape_names[i])) {
            *out = (nfv_shape)i;
            return NFV_OK;
        }
    return nfv_fail(NFV_ERR_INVALID_ARG,
                    "unknown lesion shape \"%s\" (known: sphere, cube, cross, cylinder, pyramid, torus)",
                    name ? name : "");
}

int nfv_synth_shape_contains(nfv_shape shape, double s, double dx, double dy, double dz)
{
    double h = 0.5 * s, ax = fabs(dx), ay = fabs(dy), az = fabs(dz);
    switch (shape) {
    case NFV_SHAPE_SPHERE: return dx * dx + dy * dy + dz * dz <= h * h;
    case NFV_SHAPE_CUBE: return ax <= h && ay <= h && az <= h;
    case NFV_SHAPE_CROSS: {
        double t = 0.18 * s; /* half thickness: bars 0.36 x size thick */
        if (ax > h || ay > h || az > h) return 0;
        return (ax <= t) + (ay <= t) + (az <= t) >= 2;
    }
    case NFV_SHAPE_CYLINDER: return dx * dx + dy * dy <= h * h && az <= h;
    case NFV_SHAPE_PYRAMID: {
        if (az > h) return 0;
        double half_base = h * (h - dz) / s; /* h at the base (dz = -h), 0 at the apex */
        return ax <= half_base && ay <= half_base;
    }
    case NFV_SHAPE_TORUS: {
        double minor = s / 6.0, major = h - minor;
        double q = sqrt(dx * dx + dy * dy) - major;
        return q * q + dz * dz <= minor * minor;
    }
    default: return 0;
    }
}

/* Voxel bounding box (inclusive, clamped) of a cube of side size_mm + one
 * voxel around centre, for a grid with affine a. Returns 0 when empty. */
static int shape_bbox(const double a[4][4], const double ainv[4][4], const int dims[3], double size_mm,
                      const double centre[3], int lo[3], int hi[3])
{
    double vox[3];
    for (int d = 0; d < 3; d++) vox[d] = sqrt(a[0][d] * a[0][d] + a[1][d] * a[1][d] + a[2][d] * a[2][d]);
    double r = 0.5 * size_mm;
    for (int d = 0; d < 3; d++) {
        lo[d] = dims[d];
        hi[d] = -1;
    }
    for (int corner = 0; corner < 8; corner++) {
        double w[3] = {centre[0] + ((corner & 1) ? r : -r), centre[1] + ((corner & 2) ? r : -r),
                       centre[2] + ((corner & 4) ? r : -r)};
        double p[3];
        affine_apply(ainv, w, p);
        for (int d = 0; d < 3; d++) {
            int l = (int)floor(p[d] - 1.0), h = (int)ceil(p[d] + 1.0);
            if (l < lo[d]) lo[d] = l;
            if (h > hi[d]) hi[d] = h;
        }
    }
    (void)vox;
    for (int d = 0; d < 3; d++) {
        if (lo[d] < 0) lo[d] = 0;
        if (hi[d] > dims[d] - 1) hi[d] = dims[d] - 1;
        if (lo[d] > hi[d]) return 0;
    }
    return 1;
}

/* Occupancy (4^3 sub-samples) of one voxel. */
static float voxel_occupancy(const double a[4][4], nfv_shape shape, double size_mm, const double centre[3], int i,
                             int j, int k)
{
    int inside = 0;
    for (int c = 0; c < 4; c++)
        for (int b = 0; b < 4; b++)
            for (int q = 0; q < 4; q++) {
                double p[3] = {i - 0.375 + 0.25 * q, j - 0.375 + 0.25 * b, k - 0.375 + 0.25 * c}, w[3];
                affine_apply(a, p, w);
                inside += nfv_synth_shape_contains(shape, size_mm, w[0] - centre[0], w[1] - centre[1], w[2] - centre[2]);
            }
    return (float)inside / 64.0f;
}

nfv_status nfv_synth_shape_paint(nfv_volume *v, nfv_shape shape, double size_mm, const double centre_mm[3])
{
    if (!v || !v->data || (int)shape < 0 || shape >= NFV_SHAPE_COUNT || !(size_mm > 0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "shape paint: empty volume, unknown shape or size <= 0");
    double inv[4][4];
    if (!nfv_affine_inverse((const double(*)[4])v->affine, inv))
        return nfv_fail(NFV_ERR_INVALID_ARG, "shape paint: the volume's affine is singular");
    int dims[3] = {v->nx, v->ny, v->nz}, lo[3], hi[3];
    if (!shape_bbox((const double(*)[4])v->affine, inv, dims, size_mm, centre_mm, lo, hi)) return NFV_OK;
    for (int k = lo[2]; k <= hi[2]; k++)
        for (int j = lo[1]; j <= hi[1]; j++)
            for (int i = lo[0]; i <= hi[0]; i++)
                v->data[((size_t)k * v->ny + j) * v->nx + i] =
                    voxel_occupancy((const double(*)[4])v->affine, shape, size_mm, centre_mm, i, j, k);
    return NFV_OK;
}

nfv_status nfv_synth_shape_template(nfv_shape shape, double size_mm, double voxel_mm, nfv_volume *out)
{
    if (!(voxel_mm > 0) || !(size_mm > 0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "shape template: voxel %g mm and size %g mm must be > 0", voxel_mm,
                        size_mm);
    /* Half-width: the shape's half size plus ~3 mm of background, so NCC
     * sees the shape's border. */
    int n = 2 * (int)ceil((0.5 * size_mm + 3.0) / voxel_mm) + 1;
    double a[4][4] = {{voxel_mm, 0, 0, -0.5 * (n - 1) * voxel_mm},
                      {0, voxel_mm, 0, -0.5 * (n - 1) * voxel_mm},
                      {0, 0, voxel_mm, -0.5 * (n - 1) * voxel_mm},
                      {0, 0, 0, 1}};
    NFV_TRY(nfv_volume_alloc(out, n, n, n, (const double(*)[4])a));
    out->sform_code = out->qform_code = 2;
    const double centre[3] = {0, 0, 0};
    return nfv_synth_shape_paint(out, shape, size_mm, centre);
}

/* ---- Grid ------------------------------------------------------------------ */

nfv_status nfv_synth_grid(double voxel_mm, const int shape[3], nfv_volume *out)
{
    if (!(voxel_mm >= 0.25 && voxel_mm <= 20.0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "voxel size %g mm is outside 0.25..20", voxel_mm);
    int n[3];
    for (int d = 0; d < 3; d++) {
        n[d] = shape && shape[d] > 0 ? shape[d] : (int)floor(fov_extent[d] / voxel_mm + 1e-9) + 1;
        if (shape && shape[d] < 0) return nfv_fail(NFV_ERR_INVALID_ARG, "grid shape %d is negative", shape[d]);
        if (n[d] < 4 || n[d] > 2048)
            return nfv_fail(NFV_ERR_INVALID_ARG, "grid axis %d has %d voxels (allowed 4..2048)", d, n[d]);
    }
    double a[4][4] = {{0}};
    for (int d = 0; d < 3; d++) {
        a[d][d] = voxel_mm;
        a[d][3] = fov_centre[d] - 0.5 * (n[d] - 1) * voxel_mm;
    }
    a[3][3] = 1.0;
    NFV_TRY(nfv_volume_alloc(out, n[0], n[1], n[2], (const double(*)[4])a));
    out->sform_code = out->qform_code = 4; /* MNI */
    return NFV_OK;
}

/* ---- Options ---------------------------------------------------------------- */

void nfv_synth_options_default(nfv_synth_options *o)
{
    memset(o, 0, sizeof *o);
    o->task = NFV_SYNTH_LESION;
    o->n = 600;
    o->voxel_mm = 2.0;
    o->seed = 1;
    /* Lesions 16-22 mm at 1.5-1.8x the white-matter intensity.  Measured:
     * with 8-14 mm lesions 30-60 % darker than white matter (the first
     * version), and with 16-22 mm lesions 50-80 % darker, ref4 on 420
     * training subjects stayed at chance, in neurofv and in PyTorch alike: a
     * dark blob in a T1 looks like CSF or a sulcus.  A hyper-intense lesion
     * is unique in the brain, so the network can find it and learn its
     * shape (--lesion-intensity 0.2,0.5 gives the dark kind). */
    o->lesion_size_mm[0] = 16.0;
    o->lesion_size_mm[1] = 22.0;
    o->lesion_intensity[0] = 1.5;
    o->lesion_intensity[1] = 1.8;
    o->split[0] = 70;
    o->split[1] = 15;
    o->split[2] = 15;
}

nfv_status nfv_synth_split_parse(const char *s, double split[3])
{
    double v[3];
    char tail;
    if (!s || sscanf(s, "%lf/%lf/%lf%c", &v[0], &v[1], &v[2], &tail) != 3 || v[0] < 0 || v[1] < 0 || v[2] < 0 ||
        !(v[0] + v[1] + v[2] > 0) || !isfinite(v[0] + v[1] + v[2]))
        return nfv_fail(NFV_ERR_INVALID_ARG, "split \"%s\" is not TRAIN/VAL/TEST (e.g. 70/15/15)", s ? s : "");
    for (int i = 0; i < 3; i++) split[i] = v[i];
    return NFV_OK;
}

/* ---- Shared state and per-thread work -------------------------------------- */

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

static int bspline_axis_init(bspline_axis *b, int n, double voxel_mm)
{
    b->n = n;
    b->nc = (int)floor((n - 1) * voxel_mm / CONTROL_SPACING_MM) + 4;
    b->base = malloc((size_t)n * sizeof *b->base);
    b->w = malloc((size_t)n * 4 * sizeof *b->w);
    if (!b->base || !b->w) return -1;
    for (int i = 0; i < n; i++) {
        double t = i * voxel_mm / CONTROL_SPACING_MM, f;
        int base = (int)floor(t);
        f = t - base;
        b->base[i] = base;
        b->w[4 * i + 0] = (float)((1 - f) * (1 - f) * (1 - f) / 6.0);
        b->w[4 * i + 1] = (float)((3 * f * f * f - 6 * f * f + 4) / 6.0);
        b->w[4 * i + 2] = (float)((-3 * f * f * f + 3 * f * f + 3 * f + 1) / 6.0);
        b->w[4 * i + 3] = (float)(f * f * f / 6.0);
    }
    return 0;
}

static void bspline_axis_free(bspline_axis *b)
{
    free(b->base);
    free(b->w);
}

static float sample_trilinear(const nfv_volume *t, double px, double py, double pz)
{
    if (!(px >= 0 && py >= 0 && pz >= 0 && px <= t->nx - 1 && py <= t->ny - 1 && pz <= t->nz - 1)) return 0.0f;
    int i = (int)px, j = (int)py, k = (int)pz;
    if (i > t->nx - 2) i = t->nx - 2;
    if (j > t->ny - 2) j = t->ny - 2;
    if (k > t->nz - 2) k = t->nz - 2;
    if (i < 0 || j < 0 || k < 0) return 0.0f; /* a 1-voxel axis */
    float fx = (float)(px - i), fy = (float)(py - j), fz = (float)(pz - k);
    size_t sx = 1, sy = (size_t)t->nx, sz = (size_t)t->nx * t->ny;
    const float *p = t->data + (size_t)k * sz + (size_t)j * sy + i;
    float c00 = p[0] + fx * (p[sx] - p[0]);
    float c10 = p[sy] + fx * (p[sy + sx] - p[sy]);
    float c01 = p[sz] + fx * (p[sz + sx] - p[sz]);
    float c11 = p[sz + sy] + fx * (p[sz + sy + sx] - p[sz + sy]);
    float c0 = c00 + fy * (c10 - c00), c1 = c01 + fy * (c11 - c01);
    return c0 + fz * (c1 - c0);
}

/* ---- Template preparation ------------------------------------------------ */

/* 3-class k-means on the brain's intensities (values > 0): CSF, GM, WM. */
static void intensity_classes(const nfv_volume *t, double centre[3])
{
    size_t n = nfv_volume_numel(t);
    float mx = 0;
    for (size_t i = 0; i < n; i++)
        if (t->data[i] > mx) mx = t->data[i];
    enum { BINS = 512 };
    double hist[BINS] = {0};
    for (size_t i = 0; i < n; i++)
        if (t->data[i] > 0) {
            int b = (int)(t->data[i] / mx * (BINS - 1));
            hist[b] += 1;
        }
    double c[3] = {0.25 * mx, 0.55 * mx, 0.85 * mx};
    for (int it = 0; it < 100; it++) {
        double sum[3] = {0}, cnt[3] = {0};
        for (int b = 0; b < BINS; b++) {
            double x = (b + 0.5) / (BINS - 1) * mx;
            int best = 0;
            for (int q = 1; q < 3; q++)
                if (fabs(x - c[q]) < fabs(x - c[best])) best = q;
            sum[best] += hist[b] * x;
            cnt[best] += hist[b];
        }
        for (int q = 0; q < 3; q++)
            if (cnt[q] > 0) c[q] = sum[q] / cnt[q];
    }
    for (int q = 0; q < 3; q++) centre[q] = c[q];
}

/* [1 2 1]/4 along each axis (anti-aliasing before downsampling). */
static nfv_status smooth121(nfv_volume *v)
{
    size_t n = nfv_volume_numel(v);
    float *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory smoothing the template");
    int dims[3] = {v->nx, v->ny, v->nz};
    size_t stride[3] = {1, (size_t)v->nx, (size_t)v->nx * v->ny};
    for (int ax = 0; ax < 3; ax++) {
        memcpy(tmp, v->data, n * sizeof *tmp);
        for (int k = 0; k < v->nz; k++)
            for (int j = 0; j < v->ny; j++)
                for (int i = 0; i < v->nx; i++) {
                    int c[3] = {i, j, k};
                    size_t idx = (size_t)k * stride[2] + (size_t)j * stride[1] + i;
                    float l = c[ax] > 0 ? tmp[idx - stride[ax]] : tmp[idx];
                    float r = c[ax] < dims[ax] - 1 ? tmp[idx + stride[ax]] : tmp[idx];
                    v->data[idx] = 0.25f * l + 0.5f * tmp[idx] + 0.25f * r;
                }
    }
    free(tmp);
    return NFV_OK;
}

/* ---- One subject ---------------------------------------------------------- */

typedef struct subject_params {
    double back[4][4];      /* grid voxel -> template voxel (affine part) */
    double disp_to_tvox[3][3]; /* world mm displacement -> template voxels (after the affine) */
    double bias[9];
    double noise_sigma;
    int morph_atrophy;
} subject_params;

/* Rotation about the FOV centre, anisotropic scale, translation: a world->
 * world backward map x_template = c + L (x - c) + t. */
static void random_affine(nfv_rng *r, double scale, double world_back[4][4])
{
    const double deg = 3.141592653589793 / 180.0;
    double ax = nfv_rng_range(r, -4, 4) * deg, ay = nfv_rng_range(r, -4, 4) * deg, az = nfv_rng_range(r, -4, 4) * deg;
    double s[3];
    double g = nfv_rng_range(r, 0.97, 1.03);
    for (int d = 0; d < 3; d++) s[d] = scale / (g * nfv_rng_range(r, 0.98, 1.02));
    double t[3] = {nfv_rng_range(r, -3, 3), nfv_rng_range(r, -3, 3), nfv_rng_range(r, -3, 3)};
    double rx[4][4] = {{1, 0, 0, 0}, {0, cos(ax), -sin(ax), 0}, {0, sin(ax), cos(ax), 0}, {0, 0, 0, 1}};
    double ry[4][4] = {{cos(ay), 0, sin(ay), 0}, {0, 1, 0, 0}, {-sin(ay), 0, cos(ay), 0}, {0, 0, 0, 1}};
    double rz[4][4] = {{cos(az), -sin(az), 0, 0}, {sin(az), cos(az), 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    double sc[4][4] = {{s[0], 0, 0, 0}, {0, s[1], 0, 0}, {0, 0, s[2], 0}, {0, 0, 0, 1}};
    double l[4][4];
    nfv_affine_mul(rz, ry, l);
    nfv_affine_mul(l, rx, l);
    nfv_affine_mul(l, sc, l);
    /* x_t = c + L (x - c) + t  =>  translation column c - L c + t */
    for (int d = 0; d < 3; d++) {
        double lc = l[d][0] * fov_centre[0] + l[d][1] * fov_centre[1] + l[d][2] * fov_centre[2];
        l[d][3] = fov_centre[d] - lc + t[d];
    }
    memcpy(world_back, l, sizeof l);
}

/* Hippocampal centres (MNI mm) and radius for the morph task. */
static const double hippo_centre[2][3] = {{-28, -24, -12}, {28, -24, -12}};
#define HIPPO_RADIUS_MM 8.0
#define HIPPO_STRENGTH 0.10
#define MORPH_GLOBAL_SCALE 0.97

/* Warp the template into w->clean with the subject's map; brain mask. */
static void warp_subject(const synth_shared *sh, synth_work *w, nfv_rng *r, subject_params *sp, const bspline_axis ax[3])
{
    const nfv_volume *g = &sh->grid;
    int nx = g->nx, ny = g->ny, nz = g->nz;
    double world_back[4][4];
    double scale = sp->morph_atrophy ? 1.0 / MORPH_GLOBAL_SCALE : 1.0;
    random_affine(r, scale, world_back);
    double tmp[4][4];
    nfv_affine_mul(world_back, (const double(*)[4])g->affine, tmp);
    nfv_affine_mul(sh->tmpl_inv, tmp, sp->back);
    /* Displacements (world mm, added after the affine) -> template voxels. */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) sp->disp_to_tvox[a][b] = sh->tmpl_inv[a][b];

    /* Control grid: N(0, 2.5 mm) per node and axis, in template voxel units. */
    int ncx = ax[0].nc, ncy = ax[1].nc, ncz = ax[2].nc;
    size_t nctrl = (size_t)ncx * ncy * ncz;
    float *ctrl = w->g1 + 3 * (size_t)ncz * ncy * nx; /* scratch after g1 (sized for it) */
    for (size_t c = 0; c < nctrl; c++) {
        double d[3] = {2.5 * nfv_rng_normal(r), 2.5 * nfv_rng_normal(r), 2.5 * nfv_rng_normal(r)};
        for (int a = 0; a < 3; a++)
            ctrl[3 * c + a] = (float)(sp->disp_to_tvox[a][0] * d[0] + sp->disp_to_tvox[a][1] * d[1] +
                                      sp->disp_to_tvox[a][2] * d[2]);
    }
    /* Pass x: g1[cz][cy][x][3] */
    for (size_t zy = 0; zy < (size_t)ncz * ncy; zy++)
        for (int x = 0; x < nx; x++) {
            const float *wx = ax[0].w + 4 * x;
            const float *src = ctrl + 3 * (zy * ncx + ax[0].base[x]);
            float *dst = w->g1 + 3 * (zy * nx + x);
            for (int a = 0; a < 3; a++)
                dst[a] = wx[0] * src[a] + wx[1] * src[3 + a] + wx[2] * src[6 + a] + wx[3] * src[9 + a];
        }
    /* Pass y: g2[cz][y][x][3] */
    for (int cz = 0; cz < ncz; cz++)
        for (int y = 0; y < ny; y++) {
            const float *wy = ax[1].w + 4 * y;
            const float *s0 = w->g1 + 3 * (((size_t)cz * ncy + ax[1].base[y]) * nx);
            float *dst = w->g2 + 3 * (((size_t)cz * ny + y) * nx);
            size_t row = 3 * (size_t)nx;
            for (size_t q = 0; q < row; q++)
                dst[q] = wy[0] * s0[q] + wy[1] * s0[row + q] + wy[2] * s0[2 * row + q] + wy[3] * s0[3 * row + q];
        }

    /* Morph: radial contraction around each hippocampus, in subject world
     * space, mapped through the affine's linear part into template voxels. */
    double lin[3][3];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double s = 0;
            for (int q = 0; q < 3; q++) s += sh->tmpl_inv[a][q] * world_back[q][b];
            lin[a][b] = s;
        }

    size_t plane = (size_t)nx * ny;
    for (int z = 0; z < nz; z++) {
        const float *wz = ax[2].w + 4 * z;
        const float *s0 = w->g2 + 3 * ((size_t)ax[2].base[z] * plane);
        size_t slab = 3 * plane;
        for (size_t q = 0; q < slab; q++)
            w->disp[q] = wz[0] * s0[q] + wz[1] * s0[slab + q] + wz[2] * s0[2 * slab + q] + wz[3] * s0[3 * slab + q];
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                const float *d = w->disp + 3 * ((size_t)y * nx + x);
                double px = sp->back[0][0] * x + sp->back[0][1] * y + sp->back[0][2] * z + sp->back[0][3] + d[0];
                double py = sp->back[1][0] * x + sp->back[1][1] * y + sp->back[1][2] * z + sp->back[1][3] + d[1];
                double pz = sp->back[2][0] * x + sp->back[2][1] * y + sp->back[2][2] * z + sp->back[2][3] + d[2];
                if (sp->morph_atrophy) {
                    double vx[3] = {x, y, z}, wpos[3];
                    affine_apply((const double(*)[4])g->affine, vx, wpos);
                    for (int h = 0; h < 2; h++) {
                        double dd[3], r2 = 0;
                        for (int a = 0; a < 3; a++) {
                            dd[a] = wpos[a] - hippo_centre[h][a];
                            r2 += dd[a] * dd[a];
                        }
                        if (r2 > 9 * HIPPO_RADIUS_MM * HIPPO_RADIUS_MM) continue;
                        double f = HIPPO_STRENGTH * exp(-r2 / (2 * HIPPO_RADIUS_MM * HIPPO_RADIUS_MM));
                        px += f * (lin[0][0] * dd[0] + lin[0][1] * dd[1] + lin[0][2] * dd[2]);
                        py += f * (lin[1][0] * dd[0] + lin[1][1] * dd[1] + lin[1][2] * dd[2]);
                        pz += f * (lin[2][0] * dd[0] + lin[2][1] * dd[1] + lin[2][2] * dd[2]);
                    }
                }
                size_t idx = (size_t)z * plane + (size_t)y * nx + x;
                float v = sample_trilinear(&sh->tmpl, px, py, pz);
                w->clean[idx] = v;
                w->brain[idx] = v >= sh->brain_level;
            }
    }
}

static void erode6(const unsigned char *in, unsigned char *out, int nx, int ny, int nz)
{
    size_t plane = (size_t)nx * ny;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                size_t i = (size_t)z * plane + (size_t)y * nx + x;
                out[i] = in[i] && x > 0 && x < nx - 1 && y > 0 && y < ny - 1 && z > 0 && z < nz - 1 && in[i - 1] &&
                         in[i + 1] && in[i - nx] && in[i + nx] && in[i - plane] && in[i + plane];
            }
}

/* Plant one lesion of the subject's class shape; fills w->lesion (0/1). */
static void plant_lesion(const synth_shared *sh, synth_work *w, nfv_rng *r, nfv_shape shape)
{
    const nfv_volume *g = &sh->grid;
    int nx = g->nx, ny = g->ny, nz = g->nz, dims[3] = {nx, ny, nz};
    size_t n = nfv_volume_numel(g), plane = (size_t)nx * ny;
    for (size_t i = 0; i < n; i++) w->wm[i] = w->clean[i] >= sh->wm_threshold;
    erode6(w->wm, w->wm_eroded, nx, ny, nz);
    int ncand = 0;
    for (size_t i = 0; i < n; i++)
        if (w->wm_eroded[i] && sh->common_mask[i]) w->candidates[ncand++] = (int)i;
    if (ncand == 0) /* tiny or odd grids: any brain voxel */
        for (size_t i = 0; i < n; i++)
            if (w->brain[i] && sh->common_mask[i]) w->candidates[ncand++] = (int)i;

    double size = nfv_rng_range(r, sh->o->lesion_size_mm[0], sh->o->lesion_size_mm[1]);
    double intensity = nfv_rng_range(r, sh->o->lesion_intensity[0], sh->o->lesion_intensity[1]);
    double inv[4][4];
    nfv_affine_inverse((const double(*)[4])g->affine, inv);

    double best_score = -1, best_centre[3] = {0, 0, 0};
    for (int attempt = 0; attempt < 64 && ncand > 0; attempt++) {
        int c = w->candidates[nfv_rng_below(r, ncand)];
        double vox[3] = {c % nx + nfv_rng_range(r, -0.5, 0.5), (c / nx) % ny + nfv_rng_range(r, -0.5, 0.5),
                         (double)(c / (int)plane) + nfv_rng_range(r, -0.5, 0.5)};
        double centre[3];
        affine_apply((const double(*)[4])g->affine, vox, centre);
        int lo[3], hi[3];
        if (!shape_bbox((const double(*)[4])g->affine, inv, dims, size, centre, lo, hi)) continue;
        int in_lesion = 0, in_wm = 0, outside = 0;
        for (int k = lo[2]; k <= hi[2]; k++)
            for (int j = lo[1]; j <= hi[1]; j++)
                for (int i = lo[0]; i <= hi[0]; i++) {
                    if (!nfv_synth_shape_contains(shape, size, g->affine[0][0] * i + g->affine[0][3] - centre[0],
                                                  g->affine[1][1] * j + g->affine[1][3] - centre[1],
                                                  g->affine[2][2] * k + g->affine[2][3] - centre[2]))
                        continue;
                    size_t idx = (size_t)k * plane + (size_t)j * nx + i;
                    in_lesion++;
                    in_wm += w->wm[idx];
                    outside += !(w->brain[idx] && sh->common_mask[idx]);
                }
        double score = in_lesion ? (double)in_wm / in_lesion - (outside ? 1.0 : 0.0) : -0.5;
        if (score > best_score) {
            best_score = score;
            memcpy(best_centre, centre, sizeof centre);
        }
        if (score >= 0.85) break;
    }

    double target = sh->wm_level * intensity;
    int lo[3], hi[3];
    if (!shape_bbox((const double(*)[4])g->affine, inv, dims, size, best_centre, lo, hi)) return;
    for (int k = lo[2]; k <= hi[2]; k++)
        for (int j = lo[1]; j <= hi[1]; j++)
            for (int i = lo[0]; i <= hi[0]; i++) {
                float occ = voxel_occupancy((const double(*)[4])g->affine, shape, size, best_centre, i, j, k);
                if (occ <= 0) continue;
                size_t idx = (size_t)k * plane + (size_t)j * nx + i;
                if (!(w->brain[idx] && sh->common_mask[idx])) continue;
                /* Replace (not scale) toward a fixed fraction of the WM level, so the
                 * lesion is uniformly 30-60 % darker than white matter even where it
                 * touches grey matter. */
                w->clean[idx] += occ * ((float)target - w->clean[idx]);
                if (occ >= 0.5f) w->lesion.data[idx] = 1.0f;
            }
}

/* Bias field (smooth, multiplicative) and noise inside the brain; scale and
 * round into w->out. */
static void finish_subject(const synth_shared *sh, synth_work *w, nfv_rng *r)
{
    const nfv_volume *g = &sh->grid;
    double coef[9];
    for (int q = 0; q < 9; q++) coef[q] = nfv_rng_range(r, -0.08, 0.08);
    double sigma = nfv_rng_range(r, 0.015, 0.04) * sh->wm_level;
    size_t plane = (size_t)g->nx * g->ny;
    for (int z = 0; z < g->nz; z++)
        for (int y = 0; y < g->ny; y++)
            for (int x = 0; x < g->nx; x++) {
                size_t idx = (size_t)z * plane + (size_t)y * g->nx + x;
                if (!w->brain[idx]) {
                    w->out.data[idx] = 0.0f;
                    continue;
                }
                double u = (g->affine[0][0] * x + g->affine[0][3] - fov_centre[0]) / 90.0;
                double v = (g->affine[1][1] * y + g->affine[1][3] - fov_centre[1]) / 90.0;
                double s = (g->affine[2][2] * z + g->affine[2][3] - fov_centre[2]) / 90.0;
                double b = coef[0] * u + coef[1] * v + coef[2] * s + coef[3] * u * u + coef[4] * v * v +
                           coef[5] * s * s + coef[6] * u * v + coef[7] * u * s + coef[8] * v * s;
                double val = w->clean[idx] * exp(b) + sigma * nfv_rng_normal(r);
                float q = floorf((float)(val * OUT_SCALE) + 0.5f);
                w->out.data[idx] = q < 1.0f ? 1.0f : q;
            }
}

/* nfv_volume_write compresses at zlib's default level 6, which costs ~4x
 * level 1 on noisy volumes and dominated the run time; so write a plain .nii
 * through it (temporary name) and gzip that at level 1 into place. zlib's
 * gzip header has mtime 0, so the bytes stay deterministic. */
static nfv_status write_volume_fast(const char *path, const nfv_volume *v)
{
    size_t len = strlen(path);
    if (len < 7 || strcmp(path + len - 7, ".nii.gz") != 0) return nfv_volume_write(path, v);
    char plain[4200], gz[4200];
    snprintf(plain, sizeof plain, "%.*s.plain%ld_%lx.nii", (int)(len - 7), path, (long)getpid(),
             (unsigned long)pthread_self());
    snprintf(gz, sizeof gz, "%s.tmp%ld_%lx", path, (long)getpid(), (unsigned long)pthread_self());
    NFV_TRY(nfv_volume_write(plain, v));
    nfv_status s = NFV_OK;
    FILE *in = fopen(plain, "rb");
    gzFile out = in ? gzopen(gz, "wb1") : NULL;
    if (!in || !out) {
        s = nfv_fail(NFV_ERR_IO, "cannot write %s: %s", in ? gz : plain, strerror(errno));
    } else {
        static _Thread_local char buf[1 << 16];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, in)) > 0)
            if (gzwrite(out, buf, (unsigned)got) != (int)got) {
                s = nfv_fail(NFV_ERR_IO, "writing %s failed (disk full?)", gz);
                break;
            }
        if (s == NFV_OK && ferror(in)) s = nfv_fail(NFV_ERR_IO, "reading back %s failed", plain);
    }
    if (in) fclose(in);
    if (out && gzclose(out) != Z_OK && s == NFV_OK) s = nfv_fail(NFV_ERR_IO, "writing %s failed (disk full?)", gz);
    unlink(plain);
    return nfv_rename_into_place(s, gz, path);
}

static void subject_path(char *buf, size_t cap, const char *dir, const char *sub, int index)
{
    if (sub) snprintf(buf, cap, "%s/%s/sub-%04d.nii.gz", dir, sub, index + 1);
    else snprintf(buf, cap, "%s/sub-%04d.nii.gz", dir, index + 1);
}

static nfv_status make_subject(const synth_shared *sh, synth_work *w, int index, const bspline_axis ax[3])
{
    const nfv_synth_options *o = sh->o;
    nfv_rng r;
    nfv_rng_seed(&r, o->seed, STREAM_SUBJECT, (uint64_t)index);
    subject_params sp;
    memset(&sp, 0, sizeof sp);
    int cls = sh->label[index];
    sp.morph_atrophy = o->task == NFV_SYNTH_MORPH && cls == 1;
    warp_subject(sh, w, &r, &sp, ax);
    char path[4096];
    if (o->task == NFV_SYNTH_LESION) {
        memset(w->lesion.data, 0, nfv_volume_numel(&w->lesion) * sizeof(float));
        if (sh->class_shape[cls] != NFV_SHAPE_COUNT) plant_lesion(sh, w, &r, sh->class_shape[cls]);
        subject_path(path, sizeof path, o->out_dir, "lesion_masks", index);
        NFV_TRY(write_volume_fast(path, &w->lesion));
    }
    finish_subject(sh, w, &r);
    subject_path(path, sizeof path, o->out_dir, NULL, index);
    return write_volume_fast(path, &w->out);
}

static void work_free(synth_work *w)
{
    free(w->clean);
    free(w->brain);
    free(w->wm);
    free(w->wm_eroded);
    free(w->candidates);
    free(w->g1);
    free(w->g2);
    free(w->disp);
    nfv_volume_free(&w->out);
    nfv_volume_free(&w->lesion);
}

static nfv_status work_alloc(const synth_shared *sh, synth_work *w, const bspline_axis ax[3])
{
    memset(w, 0, sizeof *w);
    const nfv_volume *g = &sh->grid;
    size_t n = nfv_volume_numel(g), plane = (size_t)g->nx * g->ny;
    size_t g1 = 3 * (size_t)ax[2].nc * ax[1].nc * g->nx + 3 * (size_t)ax[0].nc * ax[1].nc * ax[2].nc;
    w->clean = malloc(n * sizeof *w->clean);
    w->brain = malloc(n);
    w->wm = malloc(n);
    w->wm_eroded = malloc(n);
    w->candidates = malloc(n * sizeof *w->candidates);
    w->g1 = malloc(g1 * sizeof *w->g1);
    w->g2 = malloc(3 * (size_t)ax[2].nc * plane * sizeof *w->g2);
    w->disp = malloc(3 * plane * sizeof *w->disp);
    if (!w->clean || !w->brain || !w->wm || !w->wm_eroded || !w->candidates || !w->g1 || !w->g2 || !w->disp) {
        work_free(w);
        return nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory for a subject's buffers");
    }
    nfv_status s = nfv_volume_clone(g, &w->out);
    if (s == NFV_OK) s = nfv_volume_clone(g, &w->lesion);
    if (s != NFV_OK) work_free(w);
    return s;
}

typedef struct worker_arg {
    synth_shared *sh;
    const bspline_axis *ax;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *wa = p;
    synth_shared *sh = wa->sh;
    synth_work w;
    nfv_status s = work_alloc(sh, &w, wa->ax);
    if (s != NFV_OK) {
        pthread_mutex_lock(&sh->mu);
        if (!sh->failed) {
            sh->failed = 1;
            sh->status = s;
            snprintf(sh->message, sizeof sh->message, "%s", nfv_error_message());
        }
        pthread_mutex_unlock(&sh->mu);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&sh->mu);
        int index = sh->failed ? sh->o->n : sh->next++;
        pthread_mutex_unlock(&sh->mu);
        if (index >= sh->o->n) break;
        s = make_subject(sh, &w, index, wa->ax);
        pthread_mutex_lock(&sh->mu);
        if (s != NFV_OK && !sh->failed) {
            sh->failed = 1;
            sh->status = s;
            snprintf(sh->message, sizeof sh->message, "subject %d: %s", index + 1, nfv_error_message());
        }
        if (s == NFV_OK) {
            sh->done++;
            if (sh->o->progress) sh->o->progress(sh->o->progress_user, sh->done, sh->o->n);
        }
        pthread_mutex_unlock(&sh->mu);
    }
    work_free(&w);
    return NULL;
}

/* ---- Cohort-level files ------------------------------------------------------ */

static nfv_status write_labels(const synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    char path[4096];
    snprintf(path, sizeof path, "%s/labels.csv", o->out_dir);
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    FILE *f = af.f;
    static const char *split_names[3] = {"train", "val", "test"};
    fprintf(f, "path,label,split\n");
    for (int i = 0; i < o->n; i++)
        fprintf(f, "sub-%04d.nii.gz,%s,%s\n", i + 1, sh->class_names[sh->label[i]], split_names[sh->split[i]]);
    return nfv_atomic_commit(&af);
}

/* cohort.json: the settings a later step needs to interpret the cohort
 * (compare reads lesion_intensity to know whether lesions are bright or dark). */
static nfv_status write_cohort_json(const synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    char path[4096];
    snprintf(path, sizeof path, "%s/cohort.json", o->out_dir);
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    FILE *f = af.f;
    fprintf(f, "{\n  \"task\": \"%s\",\n  \"n\": %d,\n  \"seed\": %llu,\n  \"voxel_mm\": %g,\n  \"classes\": [",
            o->task == NFV_SYNTH_LESION ? "lesion" : "morph", o->n, o->seed, o->voxel_mm);
    for (int c = 0; c < sh->class_count; c++) fprintf(f, "%s\"%s\"", c ? ", " : "", sh->class_names[c]);
    fprintf(f, "],\n  \"lesion_size_mm\": [%g, %g],\n  \"lesion_intensity\": [%g, %g]\n}\n", o->lesion_size_mm[0],
            o->lesion_size_mm[1], o->lesion_intensity[0], o->lesion_intensity[1]);
    return nfv_atomic_commit(&af);
}

/* Balanced labels (counts differ by at most one), shuffled; stratified split. */
static void assign_labels(synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    nfv_rng r;
    nfv_rng_seed(&r, o->seed, STREAM_LABELS, 0);
    for (int i = 0; i < o->n; i++) sh->label[i] = i % sh->class_count;
    for (int i = o->n - 1; i > 0; i--) {
        int j = nfv_rng_below(&r, i + 1), t = sh->label[i];
        sh->label[i] = sh->label[j];
        sh->label[j] = t;
    }
    nfv_rng_seed(&r, o->seed, STREAM_SPLIT, 0);
    double total = o->split[0] + o->split[1] + o->split[2];
    int *members = malloc((size_t)o->n * sizeof *members);
    if (!members) return; /* caller checked n; allocation of n ints cannot fail in practice */
    for (int c = 0; c < sh->class_count; c++) {
        int m = 0;
        for (int i = 0; i < o->n; i++)
            if (sh->label[i] == c) members[m++] = i;
        for (int i = m - 1; i > 0; i--) {
            int j = nfv_rng_below(&r, i + 1), t = members[i];
            members[i] = members[j];
            members[j] = t;
        }
        int ntrain = (int)floor(m * o->split[0] / total + 0.5), nval = (int)floor(m * o->split[1] / total + 0.5);
        if (ntrain > m) ntrain = m;
        if (nval > m - ntrain) nval = m - ntrain;
        for (int q = 0; q < m; q++) sh->split[members[q]] = q < ntrain ? 0 : q < ntrain + nval ? 1 : 2;
    }
    free(members);
}

static nfv_status parse_shapes(synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    const char *list = o->shapes && o->shapes[0] ? o->shapes : "sphere,cube,cross";
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--shapes list too long");
    sh->class_count = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        nfv_shape s;
        NFV_TRY(nfv_synth_shape_parse(tok, &s));
        for (int c = 0; c < sh->class_count; c++)
            if (sh->class_shape[c] == s) return nfv_fail(NFV_ERR_INVALID_ARG, "shape \"%s\" listed twice", tok);
        sh->class_shape[sh->class_count] = s;
        sh->class_names[sh->class_count++] = nfv_synth_shape_names[s];
    }
    if (o->no_lesion_class) {
        sh->class_shape[sh->class_count] = NFV_SHAPE_COUNT;
        sh->class_names[sh->class_count++] = "none";
    }
    if (sh->class_count < 2)
        return nfv_fail(NFV_ERR_INVALID_ARG, "the lesion task needs at least 2 classes (got %d; add shapes or "
                                             "--no-lesion-class)", sh->class_count);
    return NFV_OK;
}

/* Template onto the grid with the identity map: template.nii.gz, mask.nii.gz
 * and the common brain mask. */
static nfv_status write_grid_template(synth_shared *sh)
{
    nfv_volume *g = &sh->grid;
    double back[4][4];
    nfv_affine_mul(sh->tmpl_inv, (const double(*)[4])g->affine, back);
    size_t n = nfv_volume_numel(g), plane = (size_t)g->nx * g->ny;
    nfv_volume mask;
    NFV_TRY(nfv_volume_clone(g, &mask));
    for (int z = 0; z < g->nz; z++)
        for (int y = 0; y < g->ny; y++)
            for (int x = 0; x < g->nx; x++) {
                size_t idx = (size_t)z * plane + (size_t)y * g->nx + x;
                float v = sample_trilinear(&sh->tmpl, back[0][0] * x + back[0][1] * y + back[0][2] * z + back[0][3],
                                           back[1][0] * x + back[1][1] * y + back[1][2] * z + back[1][3],
                                           back[2][0] * x + back[2][1] * y + back[2][2] * z + back[2][3]);
                int in = v >= sh->brain_level;
                sh->common_mask[idx] = (unsigned char)in;
                mask.data[idx] = in ? 1.0f : 0.0f;
                g->data[idx] = in ? floorf(v * OUT_SCALE + 0.5f) : 0.0f;
            }
    (void)n;
    char path[4096];
    snprintf(path, sizeof path, "%s/mask.nii.gz", sh->o->out_dir);
    nfv_status s = nfv_volume_write(path, &mask);
    nfv_volume_free(&mask);
    NFV_TRY(s);
    snprintf(path, sizeof path, "%s/template.nii.gz", sh->o->out_dir);
    return nfv_volume_write(path, g);
}

static nfv_status write_shape_templates(const synth_shared *sh)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/shapes", sh->o->out_dir);
    NFV_TRY(nfv_mkdirs(dir));
    for (int c = 0; c < sh->class_count; c++) {
        if (sh->class_shape[c] == NFV_SHAPE_COUNT) continue;
        nfv_volume v;
        NFV_TRY(nfv_synth_shape_template(sh->class_shape[c], 0.5 * (sh->o->lesion_size_mm[0] + sh->o->lesion_size_mm[1]), sh->o->voxel_mm, &v));
        snprintf(path, sizeof path, "%s/%s.nii.gz", dir, sh->class_names[c]);
        nfv_status s = nfv_volume_write(path, &v);
        nfv_volume_free(&v);
        NFV_TRY(s);
    }
    return NFV_OK;
}

static void shared_free(synth_shared *sh)
{
    nfv_volume_free(&sh->tmpl);
    nfv_volume_free(&sh->grid);
    free(sh->common_mask);
    free(sh->label);
    free(sh->split);
}

static nfv_status run_inner(synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    if (o->task == NFV_SYNTH_LESION) {
        NFV_TRY(parse_shapes(sh));
    } else {
        sh->class_count = 2;
        sh->class_names[0] = "control";
        sh->class_names[1] = "atrophy";
    }
    if (o->n < sh->class_count)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--n %d is smaller than the number of classes (%d)", o->n,
                        sh->class_count);
    NFV_TRY(nfv_synth_grid(o->voxel_mm, o->shape, &sh->grid));

    const char *tpath = o->template_path ? o->template_path : NFV_SYNTH_DEFAULT_TEMPLATE;
    NFV_TRY(nfv_volume_read(tpath, &sh->tmpl, NULL));
    if (!nfv_affine_inverse((const double(*)[4])sh->tmpl.affine, sh->tmpl_inv))
        return nfv_fail(NFV_ERR_FORMAT, "%s: the template's affine is singular", tpath);
    double cls[3];
    intensity_classes(&sh->tmpl, cls);
    sh->csf_level = cls[0];
    sh->gm_level = cls[1];
    sh->wm_level = cls[2];
    if (!(sh->wm_level > 0))
        return nfv_fail(NFV_ERR_FORMAT, "%s: no positive intensities (not a brain-extracted T1?)", tpath);
    sh->brain_level = 0.5 * sh->csf_level;
    sh->wm_threshold = 0.5 * (sh->gm_level + sh->wm_level);
    double tvox = INFINITY;
    for (int d = 0; d < 3; d++) {
        double s = sqrt(sh->tmpl.affine[0][d] * sh->tmpl.affine[0][d] + sh->tmpl.affine[1][d] * sh->tmpl.affine[1][d] +
                        sh->tmpl.affine[2][d] * sh->tmpl.affine[2][d]);
        if (s < tvox) tvox = s;
    }
    if (o->voxel_mm >= 1.5 * tvox) NFV_TRY(smooth121(&sh->tmpl));

    size_t n = nfv_volume_numel(&sh->grid);
    sh->common_mask = malloc(n);
    sh->label = malloc((size_t)o->n * sizeof *sh->label);
    sh->split = malloc((size_t)o->n * sizeof *sh->split);
    if (!sh->common_mask || !sh->label || !sh->split) return nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory");
    assign_labels(sh);

    NFV_TRY(nfv_mkdirs(o->out_dir));
    if (o->task == NFV_SYNTH_LESION) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/lesion_masks", o->out_dir);
        NFV_TRY(nfv_mkdirs(dir));
        NFV_TRY(write_shape_templates(sh));
    }
    NFV_TRY(write_grid_template(sh));

    bspline_axis ax[3];
    memset(ax, 0, sizeof ax);
    nfv_status s = NFV_OK;
    for (int d = 0; d < 3 && s == NFV_OK; d++)
        if (bspline_axis_init(&ax[d], d == 0 ? sh->grid.nx : d == 1 ? sh->grid.ny : sh->grid.nz, o->voxel_mm))
            s = nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory");
    if (s == NFV_OK) {
        int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (threads < 1) threads = 1;
        if (threads > o->n) threads = o->n;
        if (threads > 64) threads = 64;
        pthread_mutex_init(&sh->mu, NULL);
        pthread_t tid[64];
        worker_arg wa = {sh, ax};
        int started = 0;
        for (int t = 1; t < threads; t++)
            if (pthread_create(&tid[started], NULL, worker, &wa) == 0) started++;
        worker(&wa); /* the calling thread works too */
        for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
        pthread_mutex_destroy(&sh->mu);
        if (sh->failed) s = nfv_fail(sh->status, "%s", sh->message);
    }
    for (int d = 0; d < 3; d++) bspline_axis_free(&ax[d]);
    NFV_TRY(s);
    NFV_TRY(write_cohort_json(sh));
    return write_labels(sh);
}

nfv_status nfv_synth_run(const nfv_synth_options *o)
{
    if (!o || !o->out_dir || !o->out_dir[0]) return nfv_fail(NFV_ERR_INVALID_ARG, "synth: no output directory");
    if (o->n < 1 || o->n > 1000000) return nfv_fail(NFV_ERR_INVALID_ARG, "synth: --n %d is out of range", o->n);
    if (o->task != NFV_SYNTH_LESION && o->task != NFV_SYNTH_MORPH)
        return nfv_fail(NFV_ERR_INVALID_ARG, "synth: unknown task");
    if (!(o->split[0] >= 0 && o->split[1] >= 0 && o->split[2] >= 0 && o->split[0] + o->split[1] + o->split[2] > 0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "synth: split fractions must be >= 0 and not all 0");
    synth_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.o = o;
    nfv_status s = run_inner(&sh);
    shared_free(&sh);
    return s;
}
