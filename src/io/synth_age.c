/* The age task's anatomy model (`neurofv synth --task age`); the formulas
 * and magnitudes are stated in include/neurofv/synth.h.
 *
 * The template is taken as the anatomy at biological age 20.  Ageing is a
 * backward map from "aged template" world space to template world space
 * (global contraction, then the ventricles' outward flow) followed by two
 * intensity changes at the sampled point (grey-white contrast, cortical CSF
 * partial volume).  Every field the model needs is built once per cohort on
 * the fixed 2 mm MNI grid (91 x 109 x 91, whatever --voxel is), single
 * threaded, so subjects and thread counts cannot change it:
 *   vel[3]  gradient of the smoothed ventricle mask (1/mm), the flow's velocity
 *   band    cortical band weight in [0, 1]
 * and a table of ventricle volume ratio against flow amplitude k, inverted
 * per subject to hit the target ratio R(b). */
#include "io/synth_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/affine.h"

/* Box that holds the lateral ventricles in MNI mm (x, y, z ranges). */
const double nfv_synth_age_box[3][2] = {{-28, 28}, {-50, 35}, {-5, 35}};

#define VENT_SIGMA_MM 6.0   /* smoothing of the ventricle mask: the flow's reach */
#define BAND_SIGMA_MM 5.0   /* smoothing of the brain mask: the cortical band's depth */
#define FLOW_STEPS 8        /* Euler steps of the stationary flow */
#define CAL_K0 (-100.0)     /* calibration table of k (mm^2): -100, -50, ..., 700 */
#define CAL_DK 50.0
#define GAP_SD 5.0
#define GAP_CLIP 10.0
#define VENT_LOG_SD 0.2     /* subject's ventricle volume factor exp(N(0, 0.2^2)), clipped to +-2 sd */

struct synth_age_model {
    nfv_volume vel[3];        /* (91, 109, 91) each, 2 mm MNI grid */
    nfv_volume band;
    double inv[4][4];         /* world -> 2 mm grid voxel */
    double lo[3], hi[3];      /* world box where vel is non-zero (flow skipped outside) */
    double mean_band;         /* mean band weight over the template brain */
    double cal_ratio[AGE_CAL_N];
};

/* ---- Model functions of biological age b (years) ------------------------------------ */

static double lin_t(double b) { return b - 20.0; }
static double hinge(double b) { return b > 60.0 ? b - 60.0 : 0.0; }

double nfv_synth_age_ventricle_ratio(double b) { return 1.0 + 0.02 * lin_t(b) + 0.0006 * hinge(b) * hinge(b); }
double nfv_synth_age_tissue_loss(double b) { return 0.002 * lin_t(b) + 0.00006 * hinge(b) * hinge(b); }
double nfv_synth_age_contrast_loss(double b) { return 0.003 * lin_t(b); }

/* ---- Fields --------------------------------------------------------------------------- */

/* Separable Gaussian (sigma in voxels, radius 3 sigma, zero outside) in place. */
static nfv_status gauss3(nfv_volume *v, double sigma)
{
    int r = (int)ceil(3 * sigma);
    float k[64];
    if (r > 31) r = 31;
    double sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = (float)exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] = (float)(k[i] / sum);
    size_t n = nfv_volume_numel(v);
    float *tmp = malloc(n * sizeof *tmp);
    if (!tmp) return nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory smoothing the age fields");
    int dims[3] = {v->nx, v->ny, v->nz};
    size_t stride[3] = {1, (size_t)v->nx, (size_t)v->nx * v->ny};
    for (int ax = 0; ax < 3; ax++) {
        memcpy(tmp, v->data, n * sizeof *tmp);
        for (int z = 0; z < v->nz; z++)
            for (int y = 0; y < v->ny; y++)
                for (int x = 0; x < v->nx; x++) {
                    int c[3] = {x, y, z};
                    size_t idx = (size_t)z * stride[2] + (size_t)y * stride[1] + x;
                    float acc = 0;
                    for (int i = -r; i <= r; i++) {
                        int q = c[ax] + i;
                        if (q >= 0 && q < dims[ax])
                            acc += k[i + r] * tmp[(ptrdiff_t)idx + (ptrdiff_t)i * (ptrdiff_t)stride[ax]];
                    }
                    v->data[idx] = acc;
                }
    }
    free(tmp);
    return NFV_OK;
}

static int in_box(const double w[3])
{
    for (int d = 0; d < 3; d++)
        if (w[d] < nfv_synth_age_box[d][0] || w[d] > nfv_synth_age_box[d][1]) return 0;
    return 1;
}

/* World point y moved by the ventricles' backward flow of amplitude k (mm^2). */
static void flow_back(const synth_age_model *m, double k, double y[3])
{
    if (k == 0) return;
    for (int s = 0; s < FLOW_STEPS; s++) {
        if (y[0] < m->lo[0] || y[1] < m->lo[1] || y[2] < m->lo[2] || y[0] > m->hi[0] || y[1] > m->hi[1] ||
            y[2] > m->hi[2])
            return;
        double g[3];
        nfv_synth_affine_apply((const double(*)[4])m->inv, y, g);
        double v[3];
        for (int d = 0; d < 3; d++) v[d] = nfv_synth_sample_trilinear(&m->vel[d], g[0], g[1], g[2]);
        for (int d = 0; d < 3; d++) y[d] += k / FLOW_STEPS * v[d];
    }
}

static float sample_world(const synth_shared *sh, const double y[3])
{
    double t[3];
    nfv_synth_affine_apply((const double(*)[4])sh->tmpl_inv, y, t);
    return nfv_synth_sample_trilinear(&sh->tmpl, t[0], t[1], t[2]);
}

/* CSF voxels (< (csf + gm) / 2; the darkest ventricle voxels fall below the
 * brain level and are 0 in the subjects, so they count too) of the template
 * flowed by k, on the 2 mm grid inside the box: the ventricle volume the model
 * calibrates, measured as the tests measure it on the images. */
static double ventricle_count(const synth_shared *sh, const synth_age_model *m, const nfv_volume *g2, double k)
{
    double thr = 0.5 * (sh->csf_level + sh->gm_level), count = 0;
    for (int z = 0; z < g2->nz; z++)
        for (int y = 0; y < g2->ny; y++)
            for (int x = 0; x < g2->nx; x++) {
                double vx[3] = {x, y, z}, w[3];
                nfv_synth_affine_apply((const double(*)[4])g2->affine, vx, w);
                if (!in_box(w)) continue;
                flow_back(m, k, w);
                float v = sample_world(sh, w);
                count += v < thr;
            }
    return count;
}

/* vel = gradient (central differences, 1/mm) of the ventricle mask smoothed
 * by VENT_SIGMA_MM; lo/hi = the world box where it is not negligible. */
static nfv_status build_velocity(const synth_shared *sh, synth_age_model *m, const nfv_volume *t2)
{
    nfv_volume s;
    NFV_TRY(nfv_volume_clone(t2, &s));
    int nx = s.nx, ny = s.ny, nz = s.nz;
    size_t plane = (size_t)nx * ny;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double vx[3] = {x, y, z}, w[3];
                nfv_synth_affine_apply((const double(*)[4])s.affine, vx, w);
                size_t i = (size_t)z * plane + (size_t)y * nx + x;
                float v = t2->data[i];
                s.data[i] = in_box(w) && v < sh->csf_level ? 1.0f : 0.0f;
            }
    nfv_status st = gauss3(&s, VENT_SIGMA_MM / 2.0);
    for (int d = 0; d < 3 && st == NFV_OK; d++) st = nfv_volume_clone(&s, &m->vel[d]);
    if (st != NFV_OK) {
        nfv_volume_free(&s);
        return st;
    }
    int lo[3] = {nx, ny, nz}, hi[3] = {-1, -1, -1};
    size_t step[3] = {1, (size_t)nx, plane};
    int dims[3] = {nx, ny, nz};
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                int c[3] = {x, y, z};
                size_t i = (size_t)z * plane + (size_t)y * nx + x;
                int live = 0;
                for (int d = 0; d < 3; d++) {
                    float a = c[d] > 0 ? s.data[i - step[d]] : s.data[i];
                    float b = c[d] < dims[d] - 1 ? s.data[i + step[d]] : s.data[i];
                    float gd = (b - a) / (float)((c[d] > 0) + (c[d] < dims[d] - 1)) / 2.0f; /* voxel 2 mm */
                    m->vel[d].data[i] = gd;
                    live |= fabsf(gd) > 1e-7f;
                }
                for (int d = 0; live && d < 3; d++) {
                    if (c[d] < lo[d]) lo[d] = c[d];
                    if (c[d] > hi[d]) hi[d] = c[d];
                }
            }
    for (int d = 0; d < 3; d++) {
        /* Grid is axis-aligned: voxel bounds -> world bounds, one voxel margin. */
        m->lo[d] = s.affine[d][d] * (lo[d] - 1) + s.affine[d][3];
        m->hi[d] = s.affine[d][d] * (hi[d] + 1) + s.affine[d][3];
    }
    nfv_volume_free(&s);
    return NFV_OK;
}

/* band = clamp(2 (1 - G_3mm * brain), 0, 1) inside the brain, 0 outside. */
static nfv_status build_band(const synth_shared *sh, synth_age_model *m, const nfv_volume *t2)
{
    NFV_TRY(nfv_volume_clone(t2, &m->band));
    size_t n = nfv_volume_numel(t2);
    for (size_t i = 0; i < n; i++) m->band.data[i] = t2->data[i] >= sh->brain_level ? 1.0f : 0.0f;
    NFV_TRY(gauss3(&m->band, BAND_SIGMA_MM / 2.0));
    double sum = 0, cnt = 0;
    for (size_t i = 0; i < n; i++) {
        int in = t2->data[i] >= sh->brain_level;
        float w = in ? 2.0f * (1.0f - m->band.data[i]) : 0.0f;
        m->band.data[i] = w < 0 ? 0.0f : w > 1 ? 1.0f : w;
        sum += m->band.data[i];
        cnt += in;
    }
    m->mean_band = cnt > 0 ? sum / cnt : 1.0;
    return NFV_OK;
}

nfv_status nfv_synth_age_prepare(synth_shared *sh)
{
    synth_age_model *m = calloc(1, sizeof *m);
    if (!m) return nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory for the age model");
    sh->age = m;
    nfv_volume t2;
    NFV_TRY(nfv_synth_grid(2.0, NULL, &t2));
    if (!nfv_affine_inverse((const double(*)[4])t2.affine, m->inv)) {
        nfv_volume_free(&t2);
        return nfv_fail(NFV_ERR_INVALID_ARG, "synth: singular age grid");
    }
    size_t plane = (size_t)t2.nx * t2.ny;
    for (int z = 0; z < t2.nz; z++)
        for (int y = 0; y < t2.ny; y++)
            for (int x = 0; x < t2.nx; x++) {
                double vx[3] = {x, y, z}, w[3];
                nfv_synth_affine_apply((const double(*)[4])t2.affine, vx, w);
                t2.data[(size_t)z * plane + (size_t)y * t2.nx + x] = sample_world(sh, w);
            }
    nfv_status s = build_velocity(sh, m, &t2);
    if (s == NFV_OK) s = build_band(sh, m, &t2);
    if (s == NFV_OK) {
        double base = ventricle_count(sh, m, &t2, 0.0);
        if (!(base > 0)) s = nfv_fail(NFV_ERR_FORMAT, "synth --task age: the template has no CSF in the ventricle box");
        for (int j = 0; j < AGE_CAL_N && s == NFV_OK; j++)
            m->cal_ratio[j] = ventricle_count(sh, m, &t2, CAL_K0 + CAL_DK * j) / base;
    }
    nfv_volume_free(&t2);
    return s;
}

void nfv_synth_age_free(synth_age_model *m)
{
    if (!m) return;
    for (int d = 0; d < 3; d++) nfv_volume_free(&m->vel[d]);
    nfv_volume_free(&m->band);
    free(m);
}

/* ---- Per subject ------------------------------------------------------------------------ */

/* k with cal_ratio(k) = want: the first crossing from k = 0 outward, linear
 * between table entries; the table's end when never reached. */
static double flow_amplitude(const synth_age_model *m, double want)
{
    int j0 = (int)lrint(-CAL_K0 / CAL_DK); /* the k = 0 entry */
    int dir = want >= 1.0 ? 1 : -1;
    for (int j = j0; j + dir >= 0 && j + dir < AGE_CAL_N; j += dir) {
        double a = m->cal_ratio[j], b = m->cal_ratio[j + dir];
        if ((want - a) * (want - b) <= 0 && a != b) {
            double f = (want - a) / (b - a);
            return CAL_K0 + CAL_DK * (j + dir * f);
        }
    }
    return dir > 0 ? CAL_K0 + CAL_DK * (AGE_CAL_N - 1) : CAL_K0;
}

void nfv_synth_age_params(const synth_shared *sh, double b, double vent_factor, synth_age_params *p)
{
    const synth_age_model *m = sh->age;
    p->bio_age = b;
    p->k = flow_amplitude(m, nfv_synth_age_ventricle_ratio(b) * vent_factor);
    double loss = nfv_synth_age_tissue_loss(b);
    p->shrink = cbrt(1.0 - 0.5 * loss);
    p->cortex = 0.5 * loss / m->mean_band;
    if (p->cortex > 0.9) p->cortex = 0.9;
    p->contrast = nfv_synth_age_contrast_loss(b);
}

double nfv_synth_age_ventricle_ratio_model(const synth_shared *sh, double b)
{
    const synth_age_model *m = sh->age;
    double k = flow_amplitude(m, nfv_synth_age_ventricle_ratio(b)), f = (k - CAL_K0) / CAL_DK;
    int j = (int)floor(f);
    if (j < 0) return m->cal_ratio[0];
    if (j >= AGE_CAL_N - 1) return m->cal_ratio[AGE_CAL_N - 1];
    return m->cal_ratio[j] + (f - j) * (m->cal_ratio[j + 1] - m->cal_ratio[j]);
}

static double clip(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

void nfv_synth_age_subject(const synth_shared *sh, nfv_rng *r, double age, synth_age_params *p)
{
    /* Brain-age gap: the anatomy's age differs from the label. */
    double b = clip(age + clip(GAP_SD * nfv_rng_normal(r), -GAP_CLIP, GAP_CLIP), 15.0, 95.0);
    /* Ventricle size varies between healthy people of one age (CV ~ 20-40 %):
     * without it the ventricles alone would read the age to the gap's floor. */
    double vent = exp(clip(VENT_LOG_SD * nfv_rng_normal(r), -2 * VENT_LOG_SD, 2 * VENT_LOG_SD));
    nfv_synth_age_params(sh, b, vent, p);
}

float nfv_synth_age_sample(const synth_shared *sh, const synth_age_params *p, double px, double py, double pz,
                           int *in_brain)
{
    const synth_age_model *m = sh->age;
    const double *c = nfv_synth_fov_centre;
    double t[3] = {px, py, pz}, y[3];
    nfv_synth_affine_apply((const double(*)[4])sh->tmpl.affine, t, y);
    for (int d = 0; d < 3; d++) y[d] = c[d] + (y[d] - c[d]) / p->shrink; /* undo the contraction */
    flow_back(m, p->k, y);
    float v = sample_world(sh, y);
    *in_brain = v >= sh->brain_level;
    if (!*in_brain) return v;
    double val = v;
    if (val > sh->gm_level) val -= p->contrast * (val - sh->gm_level);
    double g[3];
    nfv_synth_affine_apply((const double(*)[4])m->inv, y, g);
    double band = nfv_synth_sample_trilinear(&m->band, g[0], g[1], g[2]);
    if (val > sh->csf_level) val -= p->cortex * band * (val - sh->csf_level);
    return (float)val;
}

/* ---- Cohort -------------------------------------------------------------------------------- */

void nfv_synth_age_draw(synth_shared *sh, nfv_rng *r)
{
    int n = sh->o->n;
    /* Stratified uniform: subject i gets stratum perm[i] of n equal strata of
     * [20, 85) and a uniform point in it, so every cohort covers the range
     * evenly; one decimal, the label as written. */
    for (int i = 0; i < n; i++) sh->label[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = nfv_rng_below(r, i + 1), t = sh->label[i];
        sh->label[i] = sh->label[j];
        sh->label[j] = t;
    }
    for (int i = 0; i < n; i++) {
        int stratum = sh->label[i]; /* = the subject's age rank */
        double a = AGE_MIN + (AGE_MAX - AGE_MIN) * (stratum + nfv_rng_uniform(r)) / n;
        sh->age_years[i] = floor(a * 10.0 + 0.5) / 10.0;
        sh->label[i] = stratum / AGE_SPLIT_GROUP; /* groups of consecutive ages stratify the split */
    }
}

nfv_status nfv_synth_age_write_effect(const synth_shared *sh)
{
    const nfv_volume *g = &sh->grid;
    double back[4][4];
    nfv_affine_mul(sh->tmpl_inv, (const double(*)[4])g->affine, back);
    synth_age_params old, young;
    nfv_synth_age_params(sh, AGE_MAX, 1.0, &old);
    nfv_synth_age_params(sh, AGE_MIN, 1.0, &young);
    nfv_volume e;
    NFV_TRY(nfv_volume_clone(g, &e));
    size_t plane = (size_t)g->nx * g->ny;
    for (int z = 0; z < g->nz; z++)
        for (int y = 0; y < g->ny; y++)
            for (int x = 0; x < g->nx; x++) {
                double vx[3] = {x, y, z}, p[3];
                nfv_synth_affine_apply((const double(*)[4])back, vx, p);
                int in_old, in_young;
                float a = nfv_synth_age_sample(sh, &old, p[0], p[1], p[2], &in_old);
                float b = nfv_synth_age_sample(sh, &young, p[0], p[1], p[2], &in_young);
                double d = (in_old ? a : 0.0) - (in_young ? b : 0.0);
                e.data[(size_t)z * plane + (size_t)y * g->nx + x] =
                    (float)(d * NFV_SYNTH_OUT_SCALE / (AGE_MAX - AGE_MIN));
            }
    char path[4096];
    snprintf(path, sizeof path, "%s/age_effect.nii.gz", sh->o->out_dir);
    nfv_status s = nfv_volume_write(path, &e);
    nfv_volume_free(&e);
    return s;
}
