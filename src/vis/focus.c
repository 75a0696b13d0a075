/* Focus share: how much of what a visualization does to its unit sits in the
 * one place a reader looks at.  A causal, ground-truth-free companion of the
 * 2AFC score (mis.c), in the spirit of the insertion metric of attribution
 * (Petsiuk et al., RISE, 2018):
 *
 *   focus   the ball of radius R mm centred where the picture's attribution
 *           |d objective / d x (v) * (v - mean subject)| is densest (the
 *           largest sum over a cube of half-side R);
 *   gain    mean over the cohort's weakly activating subjects w (bottom
 *           quartile) of objective(w with the focus replaced by v's voxels)
 *           - objective(w);
 *   effect  objective(v) - the weak subjects' mean objective (pasting all of
 *           v into w gives v itself);
 *   share   gain / effect.
 *
 * 1: everything the picture does to the unit is in one ball a reader can
 * look at; near 0: it works through fragments spread over the volume, which
 * no single view shows.  Not bounded to [0, 1]: a focus can do more than the
 * whole picture (the rest of it works against the unit) or less than nothing.
 * NaN when the picture does not activate the unit more than the weak
 * subjects do (effect <= 0). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/compare.h"
#include "neurofv/vis.h"

/* The voxel (index into (nz, ny, nx)) whose box of half-sides (hz, hy, hx),
 * clipped to the grid, holds the largest sum of a; ties: the first.  A
 * summed-volume table (nz + 1, ny + 1, nx + 1) makes each box O(1). */
static size_t densest_box(const float *a, int nz, int ny, int nx, const int half[3], double *table)
{
    size_t sy = (size_t)nx + 1, sz = sy * ((size_t)ny + 1);
#define T(k, j, i) table[(size_t)(k) * sz + (size_t)(j) * sy + (size_t)(i)]
    memset(table, 0, ((size_t)nz + 1) * sz * sizeof *table);
    for (int k = 0; k < nz; k++)
        for (int j = 0; j < ny; j++)
            for (int i = 0; i < nx; i++)
                T(k + 1, j + 1, i + 1) = a[((size_t)k * ny + j) * nx + i] + T(k, j + 1, i + 1) + T(k + 1, j, i + 1) +
                                         T(k + 1, j + 1, i) - T(k, j, i + 1) - T(k, j + 1, i) - T(k + 1, j, i) +
                                         T(k, j, i);
    size_t best = 0;
    double best_sum = -1;
    for (int k = 0; k < nz; k++)
        for (int j = 0; j < ny; j++)
            for (int i = 0; i < nx; i++) {
                int z0 = k - half[2] < 0 ? 0 : k - half[2], z1 = k + half[2] + 1 > nz ? nz : k + half[2] + 1;
                int y0 = j - half[1] < 0 ? 0 : j - half[1], y1 = j + half[1] + 1 > ny ? ny : j + half[1] + 1;
                int x0 = i - half[0] < 0 ? 0 : i - half[0], x1 = i + half[0] + 1 > nx ? nx : i + half[0] + 1;
                double s = T(z1, y1, x1) - T(z0, y1, x1) - T(z1, y0, x1) - T(z1, y1, x0) + T(z0, y0, x1) +
                           T(z0, y1, x0) + T(z1, y0, x0) - T(z0, y0, x0);
                if (s > best_sum) best_sum = s, best = ((size_t)k * ny + j) * nx + i;
            }
#undef T
    return best;
}

static void world(const nfv_model *m, double i, double j, double k, double out[3])
{
    for (int r = 0; r < 3; r++)
        out[r] = m->affine[r][0] * i + m->affine[r][1] * j + m->affine[r][2] * k + m->affine[r][3];
}

static double objective_of(nfv_context *ctx, nfv_model *m, const nfv_target *t, const float *vol, nfv_status *st)
{
    nfv_volume v;
    memset(&v, 0, sizeof v);
    v.nx = m->input_shape[3], v.ny = m->input_shape[2], v.nz = m->input_shape[1];
    v.data = (float *)vol;
    float o = 0;
    *st = nfv_vis_objective(ctx, m, t, 1, &v, &o);
    return o;
}

nfv_status nfv_focus_centre(const nfv_model *m, const nfv_mis_cohort *c, const float *vis, const float *grad,
                            double radius_mm, int centre[3], int half[3])
{
    int nz = m->input_shape[1], ny = m->input_shape[2], nx = m->input_shape[3];
    size_t vox = (size_t)nz * ny * nx;
    float *att = malloc(vox * sizeof *att);
    double *table = malloc(((size_t)nz + 1) * (ny + 1) * (nx + 1) * sizeof *table);
    if (!att || !table) {
        free(att);
        free(table);
        return nfv_fail(NFV_ERR_NO_MEMORY, "focus: out of memory");
    }
    /* Attribution against the mean subject: where v differs from what the
     * cohort looks like and the unit is sensitive to it. */
    for (size_t i = 0; i < vox; i++) att[i] = fabsf(grad[i] * (vis[i] - c->mean[i]));
    /* Half-sides in voxels (z, y, x): the radius over each axis's voxel size
     * (the affine's column norms; i = x, j = y, k = z). */
    for (int a = 0; a < 3; a++) {
        double size = sqrt(m->affine[0][a] * m->affine[0][a] + m->affine[1][a] * m->affine[1][a] +
                           m->affine[2][a] * m->affine[2][a]);
        half[2 - a] = size > 0 ? (int)(radius_mm / size) : 0;
    }
    int half_xyz[3] = {half[2], half[1], half[0]};
    size_t at = densest_box(att, nz, ny, nx, half_xyz, table);
    centre[0] = (int)(at / ((size_t)ny * nx)), centre[1] = (int)(at / nx % ny), centre[2] = (int)(at % nx);
    free(att);
    free(table);
    return NFV_OK;
}

nfv_status nfv_focus_share(nfv_context *ctx, nfv_model *m, const nfv_target *t, const nfv_mis_cohort *c,
                           const float *vis, const nfv_picture_grad *pg, double radius_mm, nfv_focus_result *r)
{
    memset(r, 0, sizeof *r);
    r->share = NAN;
    if (!(radius_mm > 0)) return nfv_fail(NFV_ERR_INVALID_ARG, "focus share: radius %g mm; it must be > 0", radius_mm);
    if (c->n < 1 || c->nweak < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "focus share: the cohort has no weak subjects");
    int nz = m->input_shape[1], ny = m->input_shape[2], nx = m->input_shape[3];
    size_t vox = (size_t)nz * ny * nx;
    nfv_picture_grad own;
    memset(&own, 0, sizeof own);
    if (!pg) {
        NFV_TRY(nfv_picture_grad_compute(ctx, m, t, vis, &own));
        pg = &own;
    }
    float *pasted = malloc(vox * sizeof *pasted);
    unsigned char *ball = malloc(vox);
    const float obj_v = pg->objective;
    int centre[3], half[3];
    nfv_status st = !pasted || !ball ? nfv_fail(NFV_ERR_NO_MEMORY, "focus share: out of memory")
                                     : nfv_focus_centre(m, c, vis, pg->grad, radius_mm, centre, half);
    if (!st) {
        world(m, centre[2], centre[1], centre[0], r->centre_mm);
        for (int k = 0; k < nz; k++)
            for (int j = 0; j < ny; j++)
                for (int i = 0; i < nx; i++) {
                    double p[3];
                    world(m, i, j, k, p);
                    double d2 = 0;
                    for (int a = 0; a < 3; a++) d2 += (p[a] - r->centre_mm[a]) * (p[a] - r->centre_mm[a]);
                    size_t v = ((size_t)k * ny + j) * nx + i;
                    ball[v] = d2 <= radius_mm * radius_mm;
                    r->voxels += ball[v];
                }
    }
    double gain = 0, base = 0;
    for (int w = 0; !st && w < c->nweak; w++) {
        const float *subject = c->volumes + (size_t)c->weak[w] * vox;
        for (size_t i = 0; i < vox; i++) pasted[i] = ball[i] ? vis[i] : subject[i];
        double o = objective_of(ctx, m, t, pasted, &st);
        gain += o - c->objective[c->weak[w]];
        base += c->objective[c->weak[w]];
    }
    if (!st) {
        r->gain = gain / c->nweak;
        r->effect = obj_v - base / c->nweak;
        r->share = r->effect > 0 ? r->gain / r->effect : NAN;
    }
    free(pasted);
    free(ball);
    nfv_picture_grad_free(&own);
    return st;
}
