/* The anatomy of a synthetic subject: the output grid, the template's
 * preparation (tissue levels, anti-aliasing), and per subject one backward
 * map from the output grid (nx, ny, nz) to the template's voxels sampled
 * once: p = B * (i, j, k, 1) + D(i, j, k), with B the composed affine
 * (template world->voxel o random affine o grid voxel->world) and D a cubic
 * B-spline displacement field (control spacing 20 mm), evaluated separably in
 * three passes over the grid; then a bias field and noise.  See
 * include/neurofv/synth.h. */
#include "io/synth_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/affine.h"

/* Field-of-view centre of the MNI box (mm) and its extent. */
const double nfv_synth_fov_centre[3] = {0.0, -18.0, 18.0};
static const double fov_extent[3] = {180.0, 216.0, 180.0};

#define CONTROL_SPACING_MM 20.0

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
        a[d][3] = nfv_synth_fov_centre[d] - 0.5 * (n[d] - 1) * voxel_mm;
    }
    a[3][3] = 1.0;
    NFV_TRY(nfv_volume_alloc(out, n[0], n[1], n[2], (const double(*)[4])a));
    out->sform_code = out->qform_code = 4; /* MNI */
    return NFV_OK;
}

int nfv_synth_bspline_axis_init(bspline_axis *b, int n, double voxel_mm)
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

void nfv_synth_bspline_axis_free(bspline_axis *b)
{
    free(b->base);
    free(b->w);
}

float nfv_synth_sample_trilinear(const nfv_volume *t, double px, double py, double pz)
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

nfv_status nfv_synth_prepare_template(synth_shared *sh, const char *tpath)
{
    const nfv_synth_options *o = sh->o;
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
    /* Anti-alias when the output voxel is 1.5x the template's or more. */
    double tvox = INFINITY;
    for (int d = 0; d < 3; d++) {
        double s = sqrt(sh->tmpl.affine[0][d] * sh->tmpl.affine[0][d] + sh->tmpl.affine[1][d] * sh->tmpl.affine[1][d] +
                        sh->tmpl.affine[2][d] * sh->tmpl.affine[2][d]);
        if (s < tvox) tvox = s;
    }
    if (o->voxel_mm >= 1.5 * tvox) NFV_TRY(smooth121(&sh->tmpl));
    return NFV_OK;
}

/* ---- One subject ---------------------------------------------------------- */

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
        const double *c = nfv_synth_fov_centre;
        double lc = l[d][0] * c[0] + l[d][1] * c[1] + l[d][2] * c[2];
        l[d][3] = c[d] - lc + t[d];
    }
    memcpy(world_back, l, sizeof l);
}

/* Hippocampal centres (MNI mm) and radius for the morph task. */
static const double hippo_centre[2][3] = {{-28, -24, -12}, {28, -24, -12}};
#define HIPPO_RADIUS_MM 8.0
#define HIPPO_STRENGTH 0.10
#define MORPH_GLOBAL_SCALE 0.97

/* The B-spline field's control grid, N(0, 2.5 mm) per node and axis drawn
 * from r and mapped into template voxels, then its x and y passes: w->g2
 * (ncz, ny, nx, 3) holds the displacement interpolated in x and y; the z pass
 * is done per output slice by warp_subject. */
static void displacement_xy(const synth_shared *sh, synth_work *w, nfv_rng *r, const bspline_axis ax[3])
{
    int nx = sh->grid.nx, ny = sh->grid.ny;
    /* Displacements (world mm, added after the affine) -> template voxels. */
    double disp_to_tvox[3][3];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) disp_to_tvox[a][b] = sh->tmpl_inv[a][b];
    int ncx = ax[0].nc, ncy = ax[1].nc, ncz = ax[2].nc;
    size_t nctrl = (size_t)ncx * ncy * ncz;
    float *ctrl = w->g1 + 3 * (size_t)ncz * ncy * nx; /* scratch after g1 (sized for it) */
    for (size_t c = 0; c < nctrl; c++) {
        double d[3] = {2.5 * nfv_rng_normal(r), 2.5 * nfv_rng_normal(r), 2.5 * nfv_rng_normal(r)};
        for (int a = 0; a < 3; a++)
            ctrl[3 * c + a] =
                (float)(disp_to_tvox[a][0] * d[0] + disp_to_tvox[a][1] * d[1] + disp_to_tvox[a][2] * d[2]);
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
}

void nfv_synth_warp_subject(const synth_shared *sh, synth_work *w, nfv_rng *r, int morph_atrophy,
                            const synth_age_params *age, const bspline_axis ax[3])
{
    const nfv_volume *g = &sh->grid;
    int nx = g->nx, ny = g->ny, nz = g->nz;
    double world_back[4][4];
    double scale = morph_atrophy ? 1.0 / MORPH_GLOBAL_SCALE : 1.0;
    random_affine(r, scale, world_back);
    /* back: grid voxel -> template voxel (the affine part of the map). */
    double tmp[4][4], back[4][4];
    nfv_affine_mul(world_back, (const double(*)[4])g->affine, tmp);
    nfv_affine_mul(sh->tmpl_inv, tmp, back);
    displacement_xy(sh, w, r, ax);

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
                double px = back[0][0] * x + back[0][1] * y + back[0][2] * z + back[0][3] + d[0];
                double py = back[1][0] * x + back[1][1] * y + back[1][2] * z + back[1][3] + d[1];
                double pz = back[2][0] * x + back[2][1] * y + back[2][2] * z + back[2][3] + d[2];
                if (morph_atrophy) {
                    double vx[3] = {x, y, z}, wpos[3];
                    nfv_synth_affine_apply((const double(*)[4])g->affine, vx, wpos);
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
                if (age) { /* the aged template (synth_age.c) under the subject's warp */
                    int in;
                    w->clean[idx] = nfv_synth_age_sample(sh, age, px, py, pz, &in);
                    w->brain[idx] = (unsigned char)in;
                    continue;
                }
                float v = nfv_synth_sample_trilinear(&sh->tmpl, px, py, pz);
                w->clean[idx] = v;
                w->brain[idx] = v >= sh->brain_level;
            }
    }
}

/* Bias field (smooth, multiplicative) and noise inside the brain; scale and
 * round into w->out. */
void nfv_synth_finish_subject(const synth_shared *sh, synth_work *w, nfv_rng *r)
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
                double u = (g->affine[0][0] * x + g->affine[0][3] - nfv_synth_fov_centre[0]) / 90.0;
                double v = (g->affine[1][1] * y + g->affine[1][3] - nfv_synth_fov_centre[1]) / 90.0;
                double s = (g->affine[2][2] * z + g->affine[2][3] - nfv_synth_fov_centre[2]) / 90.0;
                double b = coef[0] * u + coef[1] * v + coef[2] * s + coef[3] * u * u + coef[4] * v * v +
                           coef[5] * s * s + coef[6] * u * v + coef[7] * u * s + coef[8] * v * s;
                double val = w->clean[idx] * exp(b) + sigma * nfv_rng_normal(r);
                float q = floorf((float)(val * NFV_SYNTH_OUT_SCALE) + 0.5f);
                w->out.data[idx] = q < 1.0f ? 1.0f : q;
            }
}
