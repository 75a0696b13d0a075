/* `neurofv render VOLUME`: PNG pictures of a volume (orthogonal slices or an
 * axial mosaic), optionally as a colour overlay on a background. */
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

int cmd_render(int argc, char **argv)
{
    const char *out = NULL, *at = NULL, *at_mm = NULL, *overlay = NULL, *window = NULL;
    int mosaic = 0, radiological = 0, nearest = 0, slices = 24, cols = 6;
    float threshold = -1.0f, vmax = 0.0f, zoom = 0.0f;
    const cli_option opts[] = {
        {"--out", CLI_STRING, &out, "FILE.png", "output (default: VOLUME's name with .png, or _mosaic.png)"},
        {"--at", CLI_STRING, &at, "I,J,K", "voxel the three slices pass through (default: the volume's peak)"},
        {"--at-mm", CLI_STRING, &at_mm, "X,Y,Z", "the same in world millimetres"},
        {"--mosaic", CLI_FLAG, &mosaic, NULL, "write an axial mosaic instead of the three orthogonal slices"},
        {"--slices", CLI_INT, &slices, "N", "mosaic: number of axial slices (default 24)"},
        {"--cols", CLI_INT, &cols, "N", "mosaic: slices per row (default 6)"},
        {"--overlay", CLI_STRING, &overlay, "BACKGROUND",
         "show VOLUME as a hot/cold overlay on BACKGROUND (a volume, or `template` for Colin27 ch2bet); the two "
         "grids are matched through their affines"},
        {"--threshold", CLI_FLOAT, &threshold, "T", "overlay: hide |value| < T (default 20 % of max |value|)"},
        {"--max", CLI_FLOAT, &vmax, "V", "overlay: colours saturate at +-V (default max |value|)"},
        {"--window", CLI_STRING, &window, "LO,HI", "grey window (default 0..99.5th percentile of non-zero)"},
        {"--radiological", CLI_FLAG, &radiological, NULL, "radiological convention (default neurological: left on left)"},
        {"--nearest", CLI_FLAG, &nearest, NULL, "nearest-neighbour sampling (default trilinear)"},
        {"--zoom", CLI_FLOAT, &zoom, "PX_PER_MM", "pixels per millimetre (default: 3 per smallest voxel)"},
        {0}};
    const char *pos[1];
    int npos = 0;
    int r = cli_parse("render", "VOLUME [options]",
                      "Render VOLUME (.nii/.nii.gz) to PNG: sagittal, coronal and axial slices through a point, or "
                      "an axial mosaic; orientation letters, colour bar and voxel aspect from the affine.",
                      opts, argc, argv, pos, 1, &npos);
    if (r) return r == 1 ? 0 : 2;
    if (npos != 1) return cli_failf("render", "expected one VOLUME (see neurofv render --help)");
    if (at && at_mm) return cli_failf("render", "give --at or --at-mm, not both");

    nfv_volume v, bg;
    memset(&bg, 0, sizeof bg);
    nfv_status s = nfv_volume_read(pos[0], &v, NULL);
    if (s) return cli_fail("render", s);
    int rc = 0;
    if (is_flat(&v)) {
        rc = cli_failf("render", "%s is %dx%dx%d: a 2-D image, render needs a 3-D volume", pos[0], v.nx, v.ny, v.nz);
        goto done;
    }
    if (overlay) {
        const char *bg_path = strcmp(overlay, "template") ? overlay : NFV_DEFAULT_TEMPLATE;
        s = nfv_volume_read(bg_path, &bg, NULL);
        if (s) {
            rc = cli_fail("render", s);
            goto done;
        }
        if (is_flat(&bg)) {
            rc = cli_failf("render", "background %s is a 2-D image (%dx%dx%d)", bg_path, bg.nx, bg.ny, bg.nz);
            goto done;
        }
    }
    nfv_render_options o;
    nfv_render_options_default(&o);
    o.background = overlay ? &bg : NULL;
    o.threshold = threshold;
    o.overlay_max = vmax;
    o.radiological = radiological;
    o.nearest = nearest;
    o.px_per_mm = zoom;
    if (window) {
        char tail;
        if (sscanf(window, "%f,%f%c", &o.window[0], &o.window[1], &tail) != 2 || !(o.window[1] > o.window[0])) {
            rc = cli_failf("render", "--window expects LO,HI with LO < HI, got \"%s\"", window);
            goto done;
        }
    }

    char outbuf[4096];
    if (!out) {
        size_t len = strlen(pos[0]);
        size_t stem = has_suffix(pos[0], ".nii.gz") ? len - 7 : has_suffix(pos[0], ".nii") ? len - 4 : len;
        snprintf(outbuf, sizeof outbuf, "%.*s%s", (int)stem, pos[0], mosaic ? "_mosaic.png" : ".png");
        out = outbuf;
    }

    nfv_image im;
    memset(&im, 0, sizeof im);
    if (mosaic) {
        if (at || at_mm) fprintf(stderr, "neurofv render: note: --at is ignored with --mosaic\n");
        s = nfv_render_mosaic(&v, &o, slices, cols, &im);
    } else {
        double world[3];
        nfv_volume_peak(&v, world, NULL);
        if (at) {
            int ijk[3];
            char tail;
            if (sscanf(at, "%d,%d,%d%c", &ijk[0], &ijk[1], &ijk[2], &tail) != 3) {
                rc = cli_failf("render", "--at expects I,J,K voxel indices, got \"%s\"", at);
                goto done;
            }
            if (ijk[0] < 0 || ijk[1] < 0 || ijk[2] < 0 || ijk[0] >= v.nx || ijk[1] >= v.ny || ijk[2] >= v.nz) {
                rc = cli_failf("render", "--at %d,%d,%d is outside the %dx%dx%d volume %s", ijk[0], ijk[1], ijk[2],
                               v.nx, v.ny, v.nz, pos[0]);
                goto done;
            }
            for (int q = 0; q < 3; q++)
                world[q] = v.affine[q][0] * ijk[0] + v.affine[q][1] * ijk[1] + v.affine[q][2] * ijk[2] + v.affine[q][3];
        } else if (at_mm) {
            char tail;
            if (sscanf(at_mm, "%lf,%lf,%lf%c", &world[0], &world[1], &world[2], &tail) != 3) {
                rc = cli_failf("render", "--at-mm expects X,Y,Z millimetres, got \"%s\"", at_mm);
                goto done;
            }
        }
        s = nfv_render_ortho(&v, &o, world, &im);
    }
    if (s == NFV_OK) s = nfv_image_write_png(out, &im);
    if (s) rc = cli_fail("render", s);
    else fprintf(stderr, "render: wrote %s (%dx%d)\n", out, im.width, im.height);
    nfv_image_free(&im);
done:
    nfv_volume_free(&v);
    nfv_volume_free(&bg);
    return rc;
}
