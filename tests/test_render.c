/* `render`: panel pixels equal the voxel values (through the affine, any
 * orientation, anisotropic voxels), overlay colours, PNG size in IHDR, CLI
 * errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/render.h"
#include "test.h"

/* 7 x 9 x 11 volume, voxels 2 x 3 x 4 mm, values in [0.01, 0.99). */
static int make_volume(nfv_volume *v, unsigned seed)
{
    double a[4][4] = {{2, 0, 0, -7}, {0, 3, 0, -13}, {0, 0, 4, -20}, {0, 0, 0, 1}};
    if (!CHECK_OK(nfv_volume_alloc(v, 7, 9, 11, (const double(*)[4])a))) return 0;
    float *r = test_random(nfv_volume_numel(v), seed, 0.01f, 0.99f);
    memcpy(v->data, r, nfv_volume_numel(v) * sizeof(float));
    free(r);
    return 1;
}

static double grey_of(float v) { return (double)lrintf(255.0f * (v < 0 ? 0 : v > 1 ? 1 : v)); }

/* Check every pixel of a panel against the voxel it falls in. */
static void check_panel(const nfv_volume *v, nfv_view view, int fixed_index, int radiological, const char *what)
{
    nfv_render_options o;
    nfv_render_options_default(&o);
    o.window[0] = 0;
    o.window[1] = 1;
    o.nearest = 1;
    o.annotate = 0;
    o.px_per_mm = 1;
    o.radiological = radiological;
    /* Horizontal/vertical voxel axes and their sizes (mm = px). */
    int h = view == NFV_VIEW_SAGITTAL ? 1 : 0, vert = view == NFV_VIEW_AXIAL ? 1 : 2;
    int f = view == NFV_VIEW_SAGITTAL ? 0 : view == NFV_VIEW_CORONAL ? 1 : 2;
    int n[3] = {v->nx, v->ny, v->nz};
    double vox[3] = {fabs(v->affine[0][0]), fabs(v->affine[1][1]), fabs(v->affine[2][2])};
    /* World coordinate of the fixed voxel index (the affine is diagonal). */
    double coord = v->affine[f][f] * fixed_index + v->affine[f][3];
    nfv_image im;
    if (!CHECK_OK(nfv_render_slice(v, &o, view, coord, &im))) return;
    int want_w = (int)lrint(n[h] * vox[h]), want_h = (int)lrint(n[vert] * vox[vert]);
    CHECK(im.width == want_w && im.height == want_h, "%s: panel %dx%d, want %dx%d (voxel aspect)", what, im.width,
          im.height, want_w, want_h);
    if (im.width != want_w || im.height != want_h) {
        nfv_image_free(&im);
        return;
    }
    size_t np = (size_t)im.width * im.height;
    float *got = malloc(np * 3 * sizeof *got);
    double *want = malloc(np * 3 * sizeof *want);
    for (int y = 0; y < im.height; y++)
        for (int x = 0; x < im.width; x++) {
            /* Image x increases with world h (flipped for radiological x),
             * image y decreases with world vert.  A negative affine entry
             * flips the voxel index. */
            int wx = (int)floor((radiological && h == 0 ? im.width - 1 - x : x) / vox[h]);
            int wy = (int)floor((im.height - 1 - y) / vox[vert]);
            int idx[3];
            idx[f] = fixed_index;
            idx[h] = v->affine[h][h] > 0 ? wx : n[h] - 1 - wx;
            idx[vert] = v->affine[vert][vert] > 0 ? wy : n[vert] - 1 - wy;
            float val = v->data[((size_t)idx[2] * v->ny + idx[1]) * v->nx + idx[0]];
            for (int c = 0; c < 3; c++) {
                got[((size_t)y * im.width + x) * 3 + c] = im.rgb[((size_t)y * im.width + x) * 3 + c];
                want[((size_t)y * im.width + x) * 3 + c] = grey_of(val);
            }
        }
    /* Exact: nearest sampling, pixel centres never on voxel borders. */
    CHECK_CLOSE(what, got, want, np * 3, 0.0, 0.0);
    free(got);
    free(want);
    nfv_image_free(&im);
}

TEST(render_slice_pixels_match_voxels)
{
    nfv_volume v;
    if (!make_volume(&v, 21)) return;
    check_panel(&v, NFV_VIEW_AXIAL, 5, 0, "axial k=5");
    check_panel(&v, NFV_VIEW_AXIAL, 0, 1, "axial k=0 radiological");
    check_panel(&v, NFV_VIEW_CORONAL, 8, 0, "coronal j=8");
    check_panel(&v, NFV_VIEW_SAGITTAL, 3, 0, "sagittal i=3");
    check_panel(&v, NFV_VIEW_SAGITTAL, 6, 1, "sagittal i=6 radiological");

    /* The same anatomy stored left-right flipped (LAS affine): same picture. */
    nfv_volume las;
    if (CHECK_OK(nfv_volume_clone(&v, &las))) {
        for (int k = 0; k < v.nz; k++)
            for (int j = 0; j < v.ny; j++)
                for (int i = 0; i < v.nx; i++)
                    las.data[((size_t)k * v.ny + j) * v.nx + i] = v.data[((size_t)k * v.ny + j) * v.nx + (v.nx - 1 - i)];
        las.affine[0][0] = -2;
        las.affine[0][3] = -7 + 2.0 * (v.nx - 1);
        check_panel(&las, NFV_VIEW_AXIAL, 5, 0, "LAS axial k=5");
        check_panel(&las, NFV_VIEW_CORONAL, 4, 1, "LAS coronal j=4 radiological");
        nfv_render_options o;
        nfv_render_options_default(&o);
        o.nearest = 1, o.annotate = 0, o.px_per_mm = 1, o.window[1] = 1;
        nfv_image a, b;
        if (CHECK_OK(nfv_render_slice(&v, &o, NFV_VIEW_AXIAL, -20 + 4 * 7, &a))) {
            if (CHECK_OK(nfv_render_slice(&las, &o, NFV_VIEW_AXIAL, -20 + 4 * 7, &b))) {
                CHECK(a.width == b.width && a.height == b.height &&
                          !memcmp(a.rgb, b.rgb, (size_t)a.width * a.height * 3),
                      "RAS and LAS storage of the same anatomy render differently");
                nfv_image_free(&b);
            }
            nfv_image_free(&a);
        }
        nfv_volume_free(&las);
    }
    nfv_volume_free(&v);
}

TEST(render_overlay_colours_and_threshold)
{
    nfv_volume bg, ov;
    if (!make_volume(&bg, 5)) return;
    for (size_t i = 0; i < nfv_volume_numel(&bg); i++) bg.data[i] = 0.5f;
    if (!CHECK_OK(nfv_volume_clone(&bg, &ov))) return;
    /* Overlay on a different grid would work too; here values by voxel:
     * +1 (max) in column i=1, +0.6 at i=3, -1 at i=5, 0.1 (under threshold) elsewhere. */
    for (int k = 0; k < ov.nz; k++)
        for (int j = 0; j < ov.ny; j++)
            for (int i = 0; i < ov.nx; i++)
                ov.data[((size_t)k * ov.ny + j) * ov.nx + i] = i == 1 ? 1.0f : i == 3 ? 0.6f : i == 5 ? -1.0f : 0.1f;
    nfv_render_options o;
    nfv_render_options_default(&o);
    o.background = &bg;
    o.threshold = 0.2f;
    o.overlay_max = 1.0f;
    o.window[1] = 1;
    o.nearest = 1, o.annotate = 0, o.px_per_mm = 1;
    nfv_image im;
    if (!CHECK_OK(nfv_render_slice(&ov, &o, NFV_VIEW_AXIAL, -20 + 4 * 3, &im))) return;
    int y = im.height / 2;
    const unsigned char *px = im.rgb + (size_t)y * im.width * 3;
    /* Pixel columns 2*i and 2*i+1 show voxel i (2 mm at 1 px/mm). */
    float t3 = (0.6f - 0.2f) / (1.0f - 0.2f);
    float got[12] = {px[0], px[1], px[2], px[2 * 3], px[2 * 3 + 1], px[2 * 3 + 2], px[6 * 3], px[6 * 3 + 1],
                     px[6 * 3 + 2], px[10 * 3], px[10 * 3 + 1], px[10 * 3 + 2]};
    double want[12] = {128, 128, 128,              /* i=0: 0.1 < threshold -> grey 0.5 */
                       255, 255, 0,                /* i=1: +max -> yellow */
                       255, lrintf(255 * t3), 0,   /* i=3: red -> yellow at t */
                       0, 255, 255};               /* i=5: -max -> light blue */
    CHECK_CLOSE("overlay colours", got, want, 12, 0.0, 0.0);
    nfv_image_free(&im);
    nfv_volume_free(&bg);
    nfv_volume_free(&ov);
}

/* Width and height from a PNG's IHDR; 0 when not a PNG. */
static int png_size(const char *path, int *w, int *h)
{
    unsigned char b[24];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, 24, f);
    fclose(f);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n != 24 || memcmp(b, sig, 8) || memcmp(b + 12, "IHDR", 4)) return 0;
    *w = (b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19];
    *h = (b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23];
    return 1;
}

TEST(render_ortho_mosaic_grid_png)
{
    nfv_volume v;
    if (!make_volume(&v, 9)) return;
    nfv_render_options o;
    nfv_render_options_default(&o);
    o.px_per_mm = 2;
    double at[3];
    int ijk[3];
    nfv_volume_peak(&v, at, ijk);
    size_t best = ((size_t)ijk[2] * v.ny + ijk[1]) * v.nx + ijk[0];
    int is_max = 1;
    for (size_t i = 0; i < nfv_volume_numel(&v); i++) is_max &= v.data[i] <= v.data[best];
    CHECK(is_max, "nfv_volume_peak did not return the maximum");
    CHECK(fabs(at[0] - (2.0 * ijk[0] - 7)) < 1e-9 && fabs(at[2] - (4.0 * ijk[2] - 20)) < 1e-9, "peak world point wrong");

    nfv_image im;
    char path[600];
    if (CHECK_OK(nfv_render_ortho(&v, &o, at, &im))) {
        /* Three panels: sagittal 27x44 mm, coronal 14x44, axial 14x27, at 2 px/mm. */
        CHECK(im.width > 2 * (27 + 14 + 14) && im.height > 2 * 44, "ortho image %dx%d too small", im.width,
              im.height);
        snprintf(path, sizeof path, "%s/ortho.png", test_tmpdir());
        if (CHECK_OK(nfv_image_write_png(path, &im))) {
            int w = 0, h = 0;
            CHECK(png_size(path, &w, &h) && w == im.width && h == im.height, "PNG IHDR %dx%d, image %dx%d", w, h,
                  im.width, im.height);
        }
        nfv_image_free(&im);
    }
    /* Mosaic without annotations: its first cell is the axial panel at the
     * first slice position (z range of non-zero voxels, centre of bin 0). */
    o.annotate = 0;
    o.nearest = 1;
    o.window[1] = 1;
    nfv_image mo, panel;
    if (CHECK_OK(nfv_render_mosaic(&v, &o, 5, 3, &mo))) {
        double zlo = -20, zhi = -20 + 4.0 * (v.nz - 1), z0 = zlo + 0.5 * (zhi - zlo) / 5;
        if (CHECK_OK(nfv_render_slice(&v, &o, NFV_VIEW_AXIAL, z0, &panel))) {
            int same = 1;
            for (int y = 0; y < panel.height; y++)
                for (int x = 0; x < panel.width; x++)
                    for (int c = 0; c < 3; c++)
                        same &= mo.rgb[((size_t)(y + 12) * mo.width + x + 12) * 3 + c] ==
                                panel.rgb[((size_t)y * panel.width + x) * 3 + c];
            CHECK(same, "mosaic cell 0 differs from the axial panel at z=%.1f", z0);
            CHECK(mo.width > 3 * panel.width && mo.height > 2 * panel.height, "mosaic %dx%d for 3x2 cells of %dx%d",
                  mo.width, mo.height, panel.width, panel.height);
            nfv_image_free(&panel);
        }
        nfv_image_free(&mo);
    }
    const nfv_volume *vols[3] = {&v, &v, &v};
    const char *titles[3] = {"conv3:0", "conv3:1", NULL};
    o.annotate = 1;
    if (CHECK_OK(nfv_render_grid(vols, titles, 3, 2, NFV_VIEW_AXIAL, &o, &im))) {
        CHECK(im.width > 2 * 28 && im.height > 2 * 54, "grid %dx%d too small for 2x2 cells", im.width, im.height);
        nfv_image_free(&im);
    }
    CHECK(nfv_render_mosaic(&v, &o, 0, 3, &im) == NFV_ERR_INVALID_ARG, "0-slice mosaic must fail");
    nfv_volume_free(&v);
}

static int one_error_line(const char *log, const char *must_contain)
{
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    int ok = lines == 1 && strstr(buf, "neurofv render:") && strstr(buf, must_contain);
    if (!ok) printf("  output was: %s", buf);
    return ok;
}

TEST(render_cli_outputs_and_errors)
{
    nfv_volume v;
    if (!make_volume(&v, 3)) return;
    char vol[600], png[600], cmd[2048], log[600], flat[600];
    snprintf(vol, sizeof vol, "%s/render_in.nii.gz", test_tmpdir());
    snprintf(png, sizeof png, "%s/render_out.png", test_tmpdir());
    snprintf(log, sizeof log, "%s/render_log.txt", test_tmpdir());
    if (!CHECK_OK(nfv_volume_write(vol, &v))) return;
    snprintf(cmd, sizeof cmd, "%s render %s --out %s --at 3,4,5 --zoom 2", test_bin(), vol, png);
    int w = 0, h = 0;
    CHECK(test_run(cmd, log) == 0 && png_size(png, &w, &h) && w > 100 && h > 88, "render --at: exit/PNG %dx%d", w, h);
    snprintf(cmd, sizeof cmd, "%s render %s --out %s --mosaic --overlay %s", test_bin(), vol, png, vol);
    CHECK(test_run(cmd, log) == 0 && png_size(png, &w, &h), "render --mosaic --overlay failed");

    snprintf(cmd, sizeof cmd, "%s render %s/missing.nii.gz", test_bin(), test_tmpdir());
    CHECK(test_run(cmd, log) != 0 && one_error_line(log, "missing.nii.gz"), "missing volume: want one error line");
    snprintf(cmd, sizeof cmd, "%s render %s --at 3,4,11", test_bin(), vol);
    CHECK(test_run(cmd, log) != 0 && one_error_line(log, "outside"), "bad --at: want one error line");
    snprintf(cmd, sizeof cmd, "%s render %s --at 3,4", test_bin(), vol);
    CHECK(test_run(cmd, log) != 0 && one_error_line(log, "--at"), "malformed --at: want one error line");
    /* A 2-D image (nz = 1). */
    nfv_volume f2;
    if (CHECK_OK(nfv_volume_alloc(&f2, 8, 8, 1, NULL))) {
        snprintf(flat, sizeof flat, "%s/flat.nii", test_tmpdir());
        if (CHECK_OK(nfv_volume_write(flat, &f2))) {
            snprintf(cmd, sizeof cmd, "%s render %s", test_bin(), flat);
            CHECK(test_run(cmd, log) != 0 && one_error_line(log, "flat.nii"), "2-D image: want one error line");
        }
        nfv_volume_free(&f2);
    }
    nfv_volume_free(&v);
}
