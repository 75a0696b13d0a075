/* Lesion shapes: the point test, partial-volume painting onto any grid, the
 * shape templates, and planting one lesion per subject in white matter.
 * See include/neurofv/synth.h. */
#include "io/synth_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/affine.h"

const char *const nfv_synth_shape_names[NFV_SHAPE_COUNT] = {"sphere", "cube", "cross", "cylinder", "pyramid", "torus"};

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
        nfv_synth_affine_apply(ainv, w, p);
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

double nfv_synth_shape_volume_scale(nfv_shape shape)
{
    enum { N = 128 };
    long count[2] = {0, 0};
    const nfv_shape which[2] = {NFV_SHAPE_SPHERE, shape};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < N; k++)
            for (int j = 0; j < N; j++)
                for (int i = 0; i < N; i++)
                    count[s] += nfv_synth_shape_contains(which[s], 1.0, (i + 0.5) / N - 0.5, (j + 0.5) / N - 0.5,
                                                         (k + 0.5) / N - 0.5);
    return count[1] > 0 ? cbrt((double)count[0] / (double)count[1]) : 1.0;
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
                nfv_synth_affine_apply(a, p, w);
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
void nfv_synth_plant_lesion(const synth_shared *sh, synth_work *w, nfv_rng *r, nfv_shape shape)
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

    double size = nfv_rng_range(r, sh->o->lesion_size_mm[0], sh->o->lesion_size_mm[1]) * sh->size_scale[shape];
    double intensity = nfv_rng_range(r, sh->o->lesion_intensity[0], sh->o->lesion_intensity[1]);
    double inv[4][4];
    nfv_affine_inverse((const double(*)[4])g->affine, inv);

    double best_score = -1, best_centre[3] = {0, 0, 0};
    for (int attempt = 0; attempt < 64 && ncand > 0; attempt++) {
        int c = w->candidates[nfv_rng_below(r, ncand)];
        double vox[3] = {c % nx + nfv_rng_range(r, -0.5, 0.5), (c / nx) % ny + nfv_rng_range(r, -0.5, 0.5),
                         (double)(c / (int)plane) + nfv_rng_range(r, -0.5, 0.5)};
        double centre[3];
        nfv_synth_affine_apply((const double(*)[4])g->affine, vox, centre);
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

