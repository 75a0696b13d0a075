/* Slice panels, orthogonal views, mosaics and grids of volumes: sampling in
 * world millimetres, grey windows and overlay colours, layout and labels.
 * Images, PNG and text are in render_image.c.  See include/neurofv/render.h
 * for the conventions. */
#include "base/affine.h"
#include "io/render_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char white[3] = {255, 255, 255}, yellow[3] = {255, 230, 90};

/* ---- Geometry and colour ---------------------------------------------------------- */

typedef struct layer {
    const nfv_volume *v;
    double inv[4][4]; /* world -> voxel */
} layer;

typedef struct prep {
    layer grey, over;
    int has_over, over_negative;
    float wlo, whi, thr, omax;
    double ppmm, lo[3], hi[3]; /* world bounding box of the primary volume */
    int radiological, nearest, annotate;
} prep;

/* Value at world point w; 0 with *inside = 0 outside the volume. */
static float sample(const layer *l, const double w[3], int nearest, int *inside)
{
    const nfv_volume *v = l->v;
    double p[3];
    for (int r = 0; r < 3; r++) p[r] = l->inv[r][0] * w[0] + l->inv[r][1] * w[1] + l->inv[r][2] * w[2] + l->inv[r][3];
    int n[3] = {v->nx, v->ny, v->nz};
    for (int d = 0; d < 3; d++)
        if (!(p[d] >= -0.5 && p[d] <= n[d] - 0.5)) {
            *inside = 0;
            return 0.0f;
        }
    *inside = 1;
    if (nearest) {
        int i[3];
        for (int d = 0; d < 3; d++) {
            i[d] = (int)floor(p[d] + 0.5);
            if (i[d] > n[d] - 1) i[d] = n[d] - 1;
            if (i[d] < 0) i[d] = 0;
        }
        return v->data[((size_t)i[2] * v->ny + i[1]) * v->nx + i[0]];
    }
    int i0[3], i1[3];
    float f[3];
    for (int d = 0; d < 3; d++) {
        double q = p[d] < 0 ? 0 : p[d] > n[d] - 1 ? n[d] - 1 : p[d];
        i0[d] = (int)floor(q);
        i1[d] = i0[d] + 1 < n[d] ? i0[d] + 1 : i0[d];
        f[d] = (float)(q - i0[d]);
    }
#define V(i, j, k) v->data[((size_t)(k) * v->ny + (j)) * v->nx + (i)]
    float c00 = V(i0[0], i0[1], i0[2]) + f[0] * (V(i1[0], i0[1], i0[2]) - V(i0[0], i0[1], i0[2]));
    float c10 = V(i0[0], i1[1], i0[2]) + f[0] * (V(i1[0], i1[1], i0[2]) - V(i0[0], i1[1], i0[2]));
    float c01 = V(i0[0], i0[1], i1[2]) + f[0] * (V(i1[0], i0[1], i1[2]) - V(i0[0], i0[1], i1[2]));
    float c11 = V(i0[0], i1[1], i1[2]) + f[0] * (V(i1[0], i1[1], i1[2]) - V(i0[0], i1[1], i1[2]));
#undef V
    float c0 = c00 + f[1] * (c10 - c00), c1 = c01 + f[1] * (c11 - c01);
    return c0 + f[2] * (c1 - c0);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Robust grey window: [0 or 0.5th pct, 99.5th pct] of non-zero values. */
static void auto_window(const nfv_volume *v, float *lo, float *hi)
{
    size_t n = nfv_volume_numel(v), stride = n / 200000 + 1, m = 0;
    float *vals = malloc((n / stride + 1) * sizeof *vals);
    *lo = 0;
    *hi = 1;
    if (!vals) return;
    for (size_t i = 0; i < n; i += stride)
        if (v->data[i] != 0 && isfinite(v->data[i])) vals[m++] = v->data[i];
    if (m > 0) {
        qsort(vals, m, sizeof *vals, cmp_float);
        float p_lo = vals[(size_t)(0.005 * (m - 1))], p_hi = vals[(size_t)(0.995 * (m - 1))];
        *lo = p_lo >= 0 ? 0.0f : p_lo;
        *hi = p_hi;
        if (!(*hi > *lo)) *hi = *lo + 1.0f;
    }
    free(vals);
}

static double voxel_size(const nfv_volume *v, int d)
{
    return sqrt(v->affine[0][d] * v->affine[0][d] + v->affine[1][d] * v->affine[1][d] + v->affine[2][d] * v->affine[2][d]);
}

static nfv_status prepare(const nfv_volume *v, const nfv_render_options *o, prep *p)
{
    memset(p, 0, sizeof *p);
    if (!v || !v->data || nfv_volume_numel(v) == 0) return nfv_fail(NFV_ERR_INVALID_ARG, "render: empty volume");
    if (!nfv_affine_inverse((const double(*)[4])v->affine, p->over.inv))
        return nfv_fail(NFV_ERR_INVALID_ARG, "render: the volume's affine is singular");
    p->over.v = v;
    p->radiological = o->radiological;
    p->nearest = o->nearest;
    p->annotate = o->annotate;
    if (o->background) {
        if (!o->background->data || nfv_volume_numel(o->background) == 0)
            return nfv_fail(NFV_ERR_INVALID_ARG, "render: empty background volume");
        p->grey.v = o->background;
        if (!nfv_affine_inverse((const double(*)[4])o->background->affine, p->grey.inv))
            return nfv_fail(NFV_ERR_INVALID_ARG, "render: the background's affine is singular");
        p->has_over = 1;
        float amax = 0, vmin = 0;
        size_t n = nfv_volume_numel(v);
        for (size_t i = 0; i < n; i++) {
            float a = fabsf(v->data[i]);
            if (a > amax && isfinite(a)) amax = a;
            if (v->data[i] < vmin) vmin = v->data[i];
        }
        p->over_negative = vmin < 0;
        p->omax = o->overlay_max > 0 ? o->overlay_max : (amax > 0 ? amax : 1.0f);
        p->thr = o->threshold >= 0 ? o->threshold : 0.2f * p->omax;
        if (p->thr >= p->omax) p->thr = 0.999f * p->omax;
    } else {
        p->grey = p->over;
    }
    if (o->window[0] != o->window[1]) {
        p->wlo = o->window[0];
        p->whi = o->window[1];
    } else {
        auto_window(p->grey.v, &p->wlo, &p->whi);
    }
    for (int d = 0; d < 3; d++) {
        p->lo[d] = INFINITY;
        p->hi[d] = -INFINITY;
    }
    for (int c = 0; c < 8; c++) {
        double q[3] = {(c & 1) ? v->nx - 0.5 : -0.5, (c & 2) ? v->ny - 0.5 : -0.5, (c & 4) ? v->nz - 0.5 : -0.5};
        for (int r = 0; r < 3; r++) {
            double w = v->affine[r][0] * q[0] + v->affine[r][1] * q[1] + v->affine[r][2] * q[2] + v->affine[r][3];
            if (w < p->lo[r]) p->lo[r] = w;
            if (w > p->hi[r]) p->hi[r] = w;
        }
    }
    if (o->px_per_mm > 0) {
        p->ppmm = o->px_per_mm;
    } else {
        double vs = fmin(voxel_size(v, 0), fmin(voxel_size(v, 1), voxel_size(v, 2)));
        p->ppmm = fmax(1.0, 3.0 / vs);
    }
    for (int d = 0; d < 3; d++)
        if ((p->hi[d] - p->lo[d]) * p->ppmm > 8192)
            return nfv_fail(NFV_ERR_INVALID_ARG, "render: %.0f mm at %.2f px/mm is too large a picture",
                            p->hi[d] - p->lo[d], p->ppmm);
    return NFV_OK;
}

/* FSL-style maps that stay saturated over grey: red -> yellow for positive,
 * blue -> light blue for negative values (t in [0, 1] above the threshold). */
static void hot(float t, unsigned char c[3])
{
    c[0] = 255;
    c[1] = (unsigned char)lrintf(255 * fminf(1, fmaxf(0, t)));
    c[2] = 0;
}

static void cold(float t, unsigned char c[3])
{
    c[0] = 0;
    c[1] = (unsigned char)lrintf(255 * fminf(1, fmaxf(0, t)));
    c[2] = 255;
}

static unsigned char grey_level(const prep *p, float v)
{
    float t = (v - p->wlo) / (p->whi - p->wlo);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return (unsigned char)lrintf(255.0f * t);
}

/* In-plane world axes of a view: horizontal, vertical, fixed. */
static void view_axes(nfv_view view, int *h, int *v, int *f)
{
    switch (view) {
    case NFV_VIEW_SAGITTAL: *h = 1, *v = 2, *f = 0; break;
    case NFV_VIEW_CORONAL: *h = 0, *v = 2, *f = 1; break;
    default: *h = 0, *v = 1, *f = 2; break;
    }
}

static nfv_status render_panel(const prep *p, nfv_view view, double coord, nfv_image *out)
{
    int h, v, f;
    view_axes(view, &h, &v, &f);
    int W = (int)ceil((p->hi[h] - p->lo[h]) * p->ppmm - 1e-6), H = (int)ceil((p->hi[v] - p->lo[v]) * p->ppmm - 1e-6);
    NFV_TRY(nfv_image_alloc(out, W < 1 ? 1 : W, H < 1 ? 1 : H));
    int flip = p->radiological && h == 0;
    for (int y = 0; y < out->height; y++)
        for (int x = 0; x < out->width; x++) {
            double w[3];
            w[f] = coord;
            w[h] = flip ? p->hi[h] - (x + 0.5) / p->ppmm : p->lo[h] + (x + 0.5) / p->ppmm;
            w[v] = p->hi[v] - (y + 0.5) / p->ppmm;
            int in;
            float g = sample(&p->grey, w, p->nearest, &in);
            unsigned char c[3] = {0, 0, 0};
            if (in) c[0] = c[1] = c[2] = grey_level(p, g);
            if (p->has_over) {
                float o = sample(&p->over, w, p->nearest, &in);
                if (in && fabsf(o) >= p->thr && p->thr < p->omax) {
                    float t = (fabsf(o) - p->thr) / (p->omax - p->thr);
                    t = t > 1 ? 1 : t;
                    if (o > 0) hot(t, c);
                    else cold(t, c);
                }
            }
            nfv_image_put(out, x, y, c);
        }
    if (p->annotate) {
        static const char *letters[3][2] = {{"L", "R"}, {"P", "A"}, {"I", "S"}}; /* low, high end of x, y, z */
        const char *left = letters[h][flip ? 1 : 0], *right = letters[h][flip ? 0 : 1];
        const char *top = letters[v][1], *bottom = letters[v][0];
        int s = out->height >= 120 ? 2 : 1, gh = 7 * s, gw = 5 * s;
        if (out->width >= 3 * gw && out->height >= 3 * gh) {
            nfv_image_draw_text(out, 3, (out->height - gh) / 2, left, s, yellow);
            nfv_image_draw_text(out, out->width - gw - 3, (out->height - gh) / 2, right, s, yellow);
            nfv_image_draw_text(out, (out->width - gw) / 2, 3, top, s, yellow);
            nfv_image_draw_text(out, (out->width - gw) / 2, out->height - gh - 3, bottom, s, yellow);
        }
    }
    return NFV_OK;
}

void nfv_render_options_default(nfv_render_options *o)
{
    memset(o, 0, sizeof *o);
    o->threshold = -1.0f;
    o->annotate = 1;
}

void nfv_render_window(const nfv_volume *v, float window[2]) { auto_window(v, &window[0], &window[1]); }

void nfv_volume_peak(const nfv_volume *v, double world[3], int ijk[3])
{
    size_t n = nfv_volume_numel(v), best = 0;
    for (size_t i = 1; i < n; i++)
        if (v->data[i] > v->data[best]) best = i;
    int q[3] = {(int)(best % (size_t)v->nx), (int)(best / (size_t)v->nx % (size_t)v->ny),
                (int)(best / ((size_t)v->nx * v->ny))};
    if (ijk) memcpy(ijk, q, sizeof q);
    if (world)
        for (int r = 0; r < 3; r++) world[r] = v->affine[r][0] * q[0] + v->affine[r][1] * q[1] + v->affine[r][2] * q[2] + v->affine[r][3];
}

nfv_status nfv_render_slice(const nfv_volume *v, const nfv_render_options *o, nfv_view view, double coord,
                            nfv_image *out)
{
    nfv_render_options def;
    if (!o) nfv_render_options_default(&def), o = &def;
    if ((int)view < 0 || view > NFV_VIEW_AXIAL) return nfv_fail(NFV_ERR_INVALID_ARG, "render: unknown view %d", view);
    prep p;
    NFV_TRY(prepare(v, o, &p));
    return render_panel(&p, view, coord, out);
}

/* Colour bar of height h at (x0, y0); returns the width used. */
static int colorbar_width(const prep *p)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%+.3g", p->has_over ? -(double)p->omax : (double)p->wlo);
    int w1 = nfv_image_text_width(buf, 1);
    snprintf(buf, sizeof buf, "%+.3g", p->has_over ? (double)p->omax : (double)p->whi);
    int w2 = nfv_image_text_width(buf, 1);
    snprintf(buf, sizeof buf, "%+.3g", (double)p->thr);
    int w3 = p->has_over ? nfv_image_text_width(buf, 1) : 0;
    int w = w1 > w2 ? w1 : w2;
    return 16 + 4 + (w > w3 ? w : w3) + 4;
}

static void draw_colorbar(nfv_image *im, const prep *p, int x0, int y0, int h)
{
    char buf[64];
    if (h < 20) return;
    for (int y = 0; y < h; y++) {
        float t = 1.0f - (float)y / (float)(h - 1); /* 1 at the top */
        unsigned char c[3];
        if (!p->has_over) {
            c[0] = c[1] = c[2] = (unsigned char)lrintf(255 * t);
        } else if (!p->over_negative) {
            hot(t, c);
        } else if (t >= 0.5f) {
            hot((t - 0.5f) * 2, c);
        } else {
            cold((0.5f - t) * 2, c);
        }
        for (int x = 0; x < 16; x++) nfv_image_put(im, x0 + x, y0 + y, c);
    }
    int tx = x0 + 20;
    if (!p->has_over) {
        snprintf(buf, sizeof buf, "%.3g", (double)p->whi);
        nfv_image_draw_text(im, tx, y0, buf, 1, white);
        snprintf(buf, sizeof buf, "%.3g", (double)p->wlo);
        nfv_image_draw_text(im, tx, y0 + h - 7, buf, 1, white);
    } else if (!p->over_negative) {
        snprintf(buf, sizeof buf, "%.3g", (double)p->omax);
        nfv_image_draw_text(im, tx, y0, buf, 1, white);
        snprintf(buf, sizeof buf, "%.3g", (double)p->thr);
        nfv_image_draw_text(im, tx, y0 + h - 7, buf, 1, white);
    } else {
        snprintf(buf, sizeof buf, "%+.3g", (double)p->omax);
        nfv_image_draw_text(im, tx, y0, buf, 1, white);
        snprintf(buf, sizeof buf, "%+.3g", (double)p->thr);
        nfv_image_draw_text(im, tx, y0 + h / 2 - 9, buf, 1, white);
        snprintf(buf, sizeof buf, "%+.3g", -(double)p->thr);
        nfv_image_draw_text(im, tx, y0 + h / 2 + 2, buf, 1, white);
        snprintf(buf, sizeof buf, "%+.3g", -(double)p->omax);
        nfv_image_draw_text(im, tx, y0 + h - 7, buf, 1, white);
    }
}

#define GAP 12

nfv_status nfv_render_ortho(const nfv_volume *v, const nfv_render_options *o, const double at[3], nfv_image *out)
{
    nfv_render_options def;
    if (!o) nfv_render_options_default(&def), o = &def;
    if (!at) return nfv_fail(NFV_ERR_INVALID_ARG, "render: no point given for the orthogonal view");
    prep p;
    NFV_TRY(prepare(v, o, &p));
    nfv_image panel[3];
    memset(panel, 0, sizeof panel);
    nfv_status s = NFV_OK;
    const nfv_view views[3] = {NFV_VIEW_SAGITTAL, NFV_VIEW_CORONAL, NFV_VIEW_AXIAL};
    for (int i = 0; i < 3 && s == NFV_OK; i++) s = render_panel(&p, views[i], at[i == 0 ? 0 : i == 1 ? 1 : 2], &panel[i]);
    if (s == NFV_OK) {
        int W = GAP, H = 0;
        for (int i = 0; i < 3; i++) {
            W += panel[i].width + GAP;
            if (panel[i].height > H) H = panel[i].height;
        }
        int bar = p.annotate ? colorbar_width(&p) : 0, caption = p.annotate ? 7 + 2 * GAP : 0;
        s = nfv_image_alloc(out, W + bar, GAP + H + GAP + caption);
        if (s == NFV_OK) {
            int x = GAP;
            for (int i = 0; i < 3; i++) {
                nfv_image_blit(out, &panel[i], x, GAP + (H - panel[i].height) / 2);
                x += panel[i].width + GAP;
            }
            if (p.annotate) {
                draw_colorbar(out, &p, x, GAP, H);
                char buf[160];
                snprintf(buf, sizeof buf, "X=%.1f Y=%.1f Z=%.1f MM  %s", at[0], at[1], at[2],
                         p.radiological ? "RADIOLOGICAL (R ON LEFT)" : "NEUROLOGICAL (L ON LEFT)");
                nfv_image_draw_text(out, GAP, GAP + H + GAP + 1, buf, 1, white);
            }
        }
    }
    for (int i = 0; i < 3; i++) nfv_image_free(&panel[i]);
    return s;
}

/* World z range over which v has non-zero voxels (whole range if none). */
static void nonzero_z_range(const nfv_volume *v, const prep *p, double *zlo, double *zhi)
{
    *zlo = INFINITY;
    *zhi = -INFINITY;
    for (int k = 0; k < v->nz; k++)
        for (int j = 0; j < v->ny; j++)
            for (int i = 0; i < v->nx; i++) {
                if (v->data[((size_t)k * v->ny + j) * v->nx + i] == 0) continue;
                double z = v->affine[2][0] * i + v->affine[2][1] * j + v->affine[2][2] * k + v->affine[2][3];
                if (z < *zlo) *zlo = z;
                if (z > *zhi) *zhi = z;
            }
    if (*zlo > *zhi) {
        *zlo = p->lo[2];
        *zhi = p->hi[2];
    }
    if (*zlo < p->lo[2]) *zlo = p->lo[2];
    if (*zhi > p->hi[2]) *zhi = p->hi[2];
}

nfv_status nfv_render_mosaic(const nfv_volume *v, const nfv_render_options *o, int count, int cols, nfv_image *out)
{
    nfv_render_options def;
    if (!o) nfv_render_options_default(&def), o = &def;
    if (count < 1 || count > 400 || cols < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "render mosaic: %d slices in %d columns is not valid", count, cols);
    prep p;
    NFV_TRY(prepare(v, o, &p));
    if (cols > count) cols = count;
    int rows = (count + cols - 1) / cols;
    double zlo, zhi;
    nonzero_z_range(p.has_over ? p.grey.v : v, &p, &zlo, &zhi);
    nfv_image panel;
    memset(&panel, 0, sizeof panel);
    nfv_status s = NFV_OK;
    int cw = 0, ch = 0, bar = p.annotate ? colorbar_width(&p) : 0;
    for (int n = 0; n < count && s == NFV_OK; n++) {
        double z = zlo + (n + 0.5) * (zhi - zlo) / count;
        int keep = p.annotate;
        p.annotate = p.annotate && n == 0; /* letters on the first panel only */
        s = render_panel(&p, NFV_VIEW_AXIAL, z, &panel);
        p.annotate = keep;
        if (s != NFV_OK) break;
        if (n == 0) {
            cw = panel.width;
            ch = panel.height;
            s = nfv_image_alloc(out, GAP + cols * (cw + GAP) + bar, GAP + rows * (ch + GAP));
            if (s != NFV_OK) break;
        }
        int x = GAP + (n % cols) * (cw + GAP), y = GAP + (n / cols) * (ch + GAP);
        nfv_image_blit(out, &panel, x, y);
        if (p.annotate) {
            char buf[32];
            snprintf(buf, sizeof buf, "Z=%.0f", z);
            nfv_image_draw_text(out, x + 2, y + ch - 9, buf, 1, white);
        }
        nfv_image_free(&panel);
    }
    nfv_image_free(&panel);
    if (s == NFV_OK && p.annotate) draw_colorbar(out, &p, GAP + cols * (cw + GAP), GAP, ch);
    if (s != NFV_OK) nfv_image_free(out);
    return s;
}

nfv_status nfv_render_grid(const nfv_volume *const *vols, const char *const *titles, int count, int cols,
                           nfv_view view, const nfv_render_options *o, nfv_image *out)
{
    nfv_render_options def;
    if (!o) nfv_render_options_default(&def), o = &def;
    if (!vols || count < 1 || cols < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "render grid: %d volumes in %d columns is not valid", count, cols);
    if (cols > count) cols = count;
    int rows = (count + cols - 1) / cols;
    nfv_image *panels = calloc((size_t)count, sizeof *panels);
    if (!panels) return nfv_fail(NFV_ERR_NO_MEMORY, "render grid: out of memory");
    nfv_status s = NFV_OK;
    int cw = 0, ch = 0;
    for (int n = 0; n < count && s == NFV_OK; n++) {
        prep p;
        s = prepare(vols[n], o, &p);
        if (s != NFV_OK) {
            s = nfv_fail_context(s, "grid volume %d", n);
            break;
        }
        double at[3];
        nfv_volume_peak(vols[n], at, NULL);
        int h, v, f;
        view_axes(view, &h, &v, &f);
        s = render_panel(&p, view, at[f], &panels[n]);
        if (s == NFV_OK) {
            if (panels[n].width > cw) cw = panels[n].width;
            if (panels[n].height > ch) ch = panels[n].height;
        }
    }
    int caption = o->annotate ? 7 + GAP : 0;
    if (s == NFV_OK) s = nfv_image_alloc(out, GAP + cols * (cw + GAP), GAP + rows * (ch + caption + GAP));
    if (s == NFV_OK)
        for (int n = 0; n < count; n++) {
            int x = GAP + (n % cols) * (cw + GAP), y = GAP + (n / cols) * (ch + caption + GAP);
            nfv_image_blit(out, &panels[n], x + (cw - panels[n].width) / 2, y + (ch - panels[n].height) / 2);
            if (o->annotate && titles && titles[n]) {
                char buf[128];
                snprintf(buf, sizeof buf, "%s", titles[n]);
                int maxc = (cw + 1) / 6;
                if (maxc < (int)sizeof buf && (int)strlen(buf) > maxc) buf[maxc > 0 ? maxc : 0] = '\0';
                nfv_image_draw_text(out, x + (cw - nfv_image_text_width(buf, 1)) / 2, y + ch + 2, buf, 1, white);
            }
        }
    for (int n = 0; n < count; n++) nfv_image_free(&panels[n]);
    free(panels);
    return s;
}

