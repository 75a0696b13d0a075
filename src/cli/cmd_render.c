/* `neurofv render VOLUME`: PNG pictures of a volume (orthogonal slices or an
 * axial mosaic), optionally as a colour overlay on a background. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "neurofv/render.h"

NFV_COMMAND(render, "render", "Write PNG pictures of a volume: orthogonal slices, mosaic, overlay on a template")

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_flat(const nfv_volume *v) { return v->nx < 2 || v->ny < 2 || v->nz < 2; }

/* Option values beyond their type, checked before any file is read; 0 or
 * the exit code.  Unset floats are NaN (the command line never gives one). */
typedef struct render_args {
    const char *out, *at, *at_mm, *overlay, *window;
    int mosaic, radiological, nearest, slices, cols;
    float threshold, vmax, zoom;
} render_args;

static int check_options(const render_args *a, nfv_render_options *o)
{
    if (a->at && a->at_mm) return cli_failf("render", "give --at or --at-mm, not both");
    if (a->slices < 1 || a->slices > 400) return cli_failf("render", "--slices expects 1..400, got %d", a->slices);
    if (a->cols < 1 || a->cols > 400) return cli_failf("render", "--cols expects 1..400, got %d", a->cols);
    if (!isnan(a->zoom) && !(a->zoom > 0 && a->zoom <= 100))
        return cli_failf("render", "--zoom expects pixels per mm in (0, 100], got %g", a->zoom);
    if (!isnan(a->threshold) && !(a->threshold >= 0))
        return cli_failf("render", "--threshold expects a value >= 0, got %g", a->threshold);
    if (!isnan(a->vmax) && !(a->vmax > 0)) return cli_failf("render", "--max expects a value > 0, got %g", a->vmax);
    nfv_render_options_default(o);
    o->threshold = isnan(a->threshold) ? -1.0f : a->threshold;
    o->overlay_max = isnan(a->vmax) ? 0.0f : a->vmax;
    o->radiological = a->radiological;
    o->nearest = a->nearest;
    o->px_per_mm = isnan(a->zoom) ? 0.0 : a->zoom;
    char tail;
    if (a->window && (sscanf(a->window, "%f,%f%c", &o->window[0], &o->window[1], &tail) != 2 ||
                      !isfinite(o->window[0]) || !isfinite(o->window[1]) || !(o->window[1] > o->window[0])))
        return cli_failf("render", "--window expects LO,HI with LO < HI, got \"%s\"", a->window);
    double mm[3];
    int ijk[3];
    if (a->at && (sscanf(a->at, "%d,%d,%d%c", &ijk[0], &ijk[1], &ijk[2], &tail) != 3 || ijk[0] < 0 || ijk[1] < 0 ||
                  ijk[2] < 0))
        return cli_failf("render", "--at expects I,J,K voxel indices >= 0, got \"%s\"", a->at);
    if (a->at_mm && (sscanf(a->at_mm, "%lf,%lf,%lf%c", &mm[0], &mm[1], &mm[2], &tail) != 3 || !isfinite(mm[0]) ||
                     !isfinite(mm[1]) || !isfinite(mm[2])))
        return cli_failf("render", "--at-mm expects X,Y,Z millimetres, got \"%s\"", a->at_mm);
    return 0;
}

/* The world point the slices pass through: --at, --at-mm or the peak. */
static int slice_point(const render_args *a, const nfv_volume *v, const char *path, double world[3])
{
    nfv_volume_peak(v, world, NULL);
    if (a->at) {
        int ijk[3];
        sscanf(a->at, "%d,%d,%d", &ijk[0], &ijk[1], &ijk[2]);
        if (ijk[0] >= v->nx || ijk[1] >= v->ny || ijk[2] >= v->nz)
            return cli_failf("render", "--at %d,%d,%d is outside the %dx%dx%d volume %s", ijk[0], ijk[1], ijk[2],
                             v->nx, v->ny, v->nz, path);
        for (int q = 0; q < 3; q++)
            world[q] = v->affine[q][0] * ijk[0] + v->affine[q][1] * ijk[1] + v->affine[q][2] * ijk[2] + v->affine[q][3];
    } else if (a->at_mm) {
        sscanf(a->at_mm, "%lf,%lf,%lf", &world[0], &world[1], &world[2]);
    }
    return 0;
}

/* Reads a volume that must be 3-D; 0 or the exit code. */
static int read_3d(const char *path, const char *role, nfv_volume *v)
{
    nfv_status s = nfv_volume_read(path, v, NULL);
    if (s) return cli_fail("render", s);
    if (is_flat(v))
        return cli_failf("render", "%s%s is %dx%dx%d: a 2-D image, render needs a 3-D volume", role, path, v->nx,
                         v->ny, v->nz);
    return 0;
}

int cmd_render(int argc, char **argv)
{
    render_args a = {.slices = 24, .cols = 6, .threshold = NAN, .vmax = NAN, .zoom = NAN};
    const cli_option opts[] = {
        {"--out", CLI_STRING, &a.out, "FILE.png", "output (default: VOLUME's name with .png, or _mosaic.png)"},
        {"--at", CLI_STRING, &a.at, "I,J,K", "voxel the three slices pass through (default: the volume's peak)"},
        {"--at-mm", CLI_STRING, &a.at_mm, "X,Y,Z", "the same in world millimetres"},
        {"--mosaic", CLI_FLAG, &a.mosaic, NULL, "write an axial mosaic instead of the three orthogonal slices"},
        {"--slices", CLI_INT, &a.slices, "N", "mosaic: number of axial slices (default 24)"},
        {"--cols", CLI_INT, &a.cols, "N", "mosaic: slices per row (default 6)"},
        {"--overlay", CLI_STRING, &a.overlay, "BACKGROUND",
         "show VOLUME as a hot/cold overlay on BACKGROUND (a volume, or `template` for Colin27 ch2bet); the two "
         "grids are matched through their affines"},
        {"--threshold", CLI_FLOAT, &a.threshold, "T", "overlay: hide |value| < T (default 20 % of max |value|)"},
        {"--max", CLI_FLOAT, &a.vmax, "V", "overlay: colours saturate at +-V (default max |value|)"},
        {"--window", CLI_STRING, &a.window, "LO,HI", "grey window (default 0..99.5th percentile of non-zero)"},
        {"--radiological", CLI_FLAG, &a.radiological, NULL,
         "radiological convention (default neurological: left on left)"},
        {"--nearest", CLI_FLAG, &a.nearest, NULL, "nearest-neighbour sampling (default trilinear)"},
        {"--zoom", CLI_FLOAT, &a.zoom, "PX_PER_MM", "pixels per millimetre (default: 3 per smallest voxel)"},
        {0}};
    const char *pos[1];
    int npos = 0;
    int r = cli_parse("render", "VOLUME [options]",
                      "Render VOLUME (.nii/.nii.gz) to PNG: sagittal, coronal and axial slices through a point, or "
                      "an axial mosaic; orientation letters, colour bar and voxel aspect from the affine.",
                      opts, argc, argv, pos, 1, &npos);
    if (r) return r == 1 ? 0 : 2;
    if (npos != 1) return cli_failf("render", "expected one VOLUME (see neurofv render --help)");
    nfv_render_options o;
    if ((r = check_options(&a, &o))) return r;

    nfv_volume v, bg;
    memset(&v, 0, sizeof v);
    memset(&bg, 0, sizeof bg);
    const char *bg_path = a.overlay && strcmp(a.overlay, "template") ? a.overlay : NFV_DEFAULT_TEMPLATE;
    int rc = read_3d(pos[0], "", &v);
    if (!rc && a.overlay) rc = read_3d(bg_path, "background ", &bg);
    double world[3];
    if (!rc && !a.mosaic) rc = slice_point(&a, &v, pos[0], world);
    if (rc) goto done;
    o.background = a.overlay ? &bg : NULL;
    char outbuf[4096];
    const char *out = a.out;
    if (!out) {
        size_t len = strlen(pos[0]);
        size_t stem = has_suffix(pos[0], ".nii.gz") ? len - 7 : has_suffix(pos[0], ".nii") ? len - 4 : len;
        snprintf(outbuf, sizeof outbuf, "%.*s%s", (int)stem, pos[0], a.mosaic ? "_mosaic.png" : ".png");
        out = outbuf;
    }
    nfv_image im;
    memset(&im, 0, sizeof im);
    if (a.mosaic && (a.at || a.at_mm)) fprintf(stderr, "neurofv render: note: --at is ignored with --mosaic\n");
    nfv_status s = a.mosaic ? nfv_render_mosaic(&v, &o, a.slices, a.cols, &im) : nfv_render_ortho(&v, &o, world, &im);
    if (s) s = nfv_fail_context(s, "%s", pos[0]);
    if (!s) s = nfv_image_write_png(out, &im);
    if (s) rc = cli_fail("render", s);
    else fprintf(stderr, "render: wrote %s (%dx%d)\n", out, im.width, im.height);
    nfv_image_free(&im);
done:
    nfv_volume_free(&v);
    nfv_volume_free(&bg);
    return rc;
}
