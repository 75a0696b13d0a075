/* Pictures of volumes: slice panels, orthogonal views, mosaics, grids, PNG.
 *
 * Every panel is sampled in world millimetres: pixel centres map to world
 * points (px_per_mm pixels per mm), then to each volume's voxels through its
 * own affine.  So voxel aspect is always right (anisotropic voxels are
 * stretched), any orientation on disk displays the same, and an overlay and
 * its background need not share a grid.
 *
 * Conventions (world = RAS mm, as the affine gives):
 *   axial    horizontal x, vertical y (anterior up)
 *   coronal  horizontal x, vertical z (superior up)
 *   sagittal horizontal y (posterior left, anterior right), vertical z
 * Neurological by default: the subject's left (x < 0) on the image's left;
 * radiological flips x.  Orientation letters are drawn on each panel.
 *
 * Colours: grey = round(255 * clamp((v - window[0]) / (window[1] - window[0]),
 * 0, 1)) for the grey layer.  With a background, the volume is an overlay:
 * |v| < threshold transparent, v >= threshold "hot" (red -> yellow at
 * +overlay_max), v <= -threshold "cold" (blue -> light blue at -overlay_max). */
#ifndef NEUROFV_RENDER_H
#define NEUROFV_RENDER_H

#include "neurofv/status.h"
#include "neurofv/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An 8-bit RGB image, rows top to bottom, rgb[(y * width + x) * 3 + c]. */
typedef struct nfv_image {
    int width, height;
    unsigned char *rgb;
} nfv_image;

/* Allocate width x height, filled black. */
nfv_status nfv_image_alloc(nfv_image *im, int width, int height);
void nfv_image_free(nfv_image *im);
/* PNG via stb_image_write, to a temporary name then renamed. */
nfv_status nfv_image_write_png(const char *path, const nfv_image *im);

typedef enum nfv_view { NFV_VIEW_SAGITTAL = 0, NFV_VIEW_CORONAL = 1, NFV_VIEW_AXIAL = 2 } nfv_view;

typedef struct nfv_render_options {
    const nfv_volume *background; /* NULL: the volume is shown in grey; else grey underlay, volume = overlay */
    float window[2];    /* grey window; window[0] == window[1]: auto (0 or 0.5th pct .. 99.5th pct of non-zero) */
    float threshold;    /* overlay: |v| below is transparent; < 0: auto (20 % of max |v|) */
    float overlay_max;  /* overlay colour saturates at +-overlay_max; <= 0: max |v| */
    double px_per_mm;   /* <= 0: auto (smallest voxel of the volume = 3 px, at least 1 px/mm) */
    int radiological;   /* 0: neurological (left on the left) */
    int nearest;        /* nearest-neighbour sampling (exact voxel values); else trilinear */
    int annotate;       /* orientation letters, colour bar, captions (default 1) */
} nfv_render_options;

void nfv_render_options_default(nfv_render_options *o);

/* The grey window the renderer picks for v when window[0] == window[1]
 * (0 or the 0.5th percentile .. the 99.5th percentile of non-zero values):
 * to draw several volumes at one scale. */
void nfv_render_window(const nfv_volume *v, float window[2]);

/* The world point (mm) and voxel of v's largest value. */
void nfv_volume_peak(const nfv_volume *v, double world[3], int ijk[3]);

/* One slice panel through world coordinate `coord` (x for sagittal, y for
 * coronal, z for axial) covering v's world bounding box; letters only. */
nfv_status nfv_render_slice(const nfv_volume *v, const nfv_render_options *o, nfv_view view, double coord,
                            nfv_image *out);

/* Sagittal | coronal | axial through world point `at` (mm), colour bar on
 * the right, caption with the point and the convention below. */
nfv_status nfv_render_ortho(const nfv_volume *v, const nfv_render_options *o, const double at[3], nfv_image *out);

/* `count` axial slices evenly spaced over the z range where v (or the
 * background) is non-zero, `cols` per row, each captioned with its z (mm). */
nfv_status nfv_render_mosaic(const nfv_volume *v, const nfv_render_options *o, int count, int cols, nfv_image *out);

/* Several volumes (e.g. one per unit of an `all` sweep): for each, the
 * `view` slice through its own peak, captioned with titles[i] (may be NULL),
 * `cols` per row.  Overlay scale is per volume unless o->overlay_max > 0. */
nfv_status nfv_render_grid(const nfv_volume *const *vols, const char *const *titles, int count, int cols,
                           nfv_view view, const nfv_render_options *o, nfv_image *out);

/* ---- Animated GIF (src/io/gif.c, giflib) ---- */

/* count frames of equal size, frame f shown for delay_cs[f] hundredths of a
 * second, looping forever.  One 256-colour palette for all frames: exact when
 * the frames hold at most 256 distinct colours, else giflib's median cut
 * (GifQuantizeBuffer) over all frames.  Temporary name, then renamed. */
nfv_status nfv_gif_write(const char *path, const nfv_image *frames, int count, const int *delay_cs);

/* An animation of volumes on one grid (e.g. the snapshots of an
 * optimization): frame f is nfv_render_ortho(vols[f], o, at) with labels[f]
 * (may be NULL) drawn in its top-left corner, shown for delay_cs (the last
 * frame for last_delay_cs).  For one colour scale across frames, o should fix
 * window (and for an overlay threshold and overlay_max). */
nfv_status nfv_render_ortho_gif(const char *path, const nfv_volume *const *vols, const char *const *labels, int count,
                                const nfv_render_options *o, const double at[3], int delay_cs, int last_delay_cs);

#ifdef __cplusplus
}
#endif
#endif
