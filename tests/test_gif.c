/* Animated GIFs: nfv_gif_write read back with giflib's decoder (DGifSlurp):
 * frame count, size, delays, the loop extension and every pixel's colour;
 * the animation of volumes against nfv_render_ortho; `visualize --gif` end
 * to end, with --resume. */
#include <dirent.h>
#include <gif_lib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "neurofv/model.h"
#include "neurofv/render.h"
#include "test.h"

/* The decoded file (NULL on failure, counted as a failed check). */
static GifFileType *read_gif(const char *path)
{
    int err = 0;
    GifFileType *g = DGifOpenFileName(path, &err);
    if (!CHECK(g != NULL, "%s: DGifOpenFileName failed (%s)", path, GifErrorString(err))) return NULL;
    if (!CHECK(DGifSlurp(g) == GIF_OK, "%s: DGifSlurp failed (%s)", path, GifErrorString(g->Error))) {
        DGifCloseFile(g, &err);
        return NULL;
    }
    return g;
}

/* Frame f's pixel (x, y) as RGB through its colour map. */
static void gif_rgb(const GifFileType *g, int f, int x, int y, unsigned char c[3])
{
    const SavedImage *im = &g->SavedImages[f];
    const ColorMapObject *map = im->ImageDesc.ColorMap ? im->ImageDesc.ColorMap : g->SColorMap;
    int i = im->RasterBits[(size_t)y * im->ImageDesc.Width + x];
    c[0] = map->Colors[i].Red, c[1] = map->Colors[i].Green, c[2] = map->Colors[i].Blue;
}

/* Largest |channel difference| between frame f of g and image im. */
static int max_diff(const GifFileType *g, int f, const nfv_image *im, double *mean)
{
    int worst = 0;
    double sum = 0;
    for (int y = 0; y < im->height; y++)
        for (int x = 0; x < im->width; x++) {
            unsigned char c[3];
            gif_rgb(g, f, x, y, c);
            for (int k = 0; k < 3; k++) {
                int d = abs((int)c[k] - im->rgb[((size_t)y * im->width + x) * 3 + k]);
                worst = d > worst ? d : worst;
                sum += d;
            }
        }
    if (mean) *mean = sum / (3.0 * im->width * im->height);
    return worst;
}

/* The NETSCAPE2.0 loop block in any extension of the file. */
static int has_loop(const GifFileType *g)
{
    for (int f = 0; f < g->ImageCount; f++)
        for (int e = 0; e < g->SavedImages[f].ExtensionBlockCount; e++) {
            const ExtensionBlock *b = &g->SavedImages[f].ExtensionBlocks[e];
            if (b->ByteCount == 11 && !memcmp(b->Bytes, "NETSCAPE2.0", 11)) return 1;
        }
    for (int e = 0; e < g->ExtensionBlockCount; e++)
        if (g->ExtensionBlocks[e].ByteCount == 11 && !memcmp(g->ExtensionBlocks[e].Bytes, "NETSCAPE2.0", 11)) return 1;
    return 0;
}

TEST(render_gif_round_trip_frames_delays_colours)
{
    /* 3 frames of 37x23: 200 greys and 3 colours (exact palette), then
     * 4 frames with thousands of colours (median cut). */
    enum { W = 37, H = 23 };
    nfv_image fr[4];
    int delays[4] = {10, 20, 150, 7};
    for (int f = 0; f < 4; f++) {
        if (!CHECK_OK(nfv_image_alloc(&fr[f], W, H))) return;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                unsigned char *p = fr[f].rgb + ((size_t)y * W + x) * 3;
                int grey = (x * 7 + y * 3 + f * 11) % 200;
                p[0] = p[1] = p[2] = (unsigned char)grey;
                if ((x + y + f) % 13 == 0) p[0] = 255, p[1] = (unsigned char)(60 * f), p[2] = 0;
            }
    }
    char path[700];
    snprintf(path, sizeof path, "%s/exact.gif", test_tmpdir());
    if (CHECK_OK(nfv_gif_write(path, fr, 3, delays))) {
        GifFileType *g = read_gif(path);
        if (g) {
            CHECK(g->ImageCount == 3 && g->SWidth == W && g->SHeight == H, "%d frames of %dx%d, want 3 of %dx%d",
                  g->ImageCount, g->SWidth, g->SHeight, W, H);
            for (int f = 0; f < g->ImageCount && f < 3; f++) {
                GraphicsControlBlock gcb;
                CHECK(DGifSavedExtensionToGCB(g, f, &gcb) == GIF_OK && gcb.DelayTime == delays[f],
                      "frame %d delay %d cs, want %d", f, gcb.DelayTime, delays[f]);
                CHECK(g->SavedImages[f].ImageDesc.Width == W && g->SavedImages[f].ImageDesc.Height == H,
                      "frame %d covers the screen", f);
                int d = max_diff(g, f, &fr[f], NULL);
                CHECK(d == 0, "frame %d: <= 256 colours must round-trip exactly (max channel difference %d)", f, d);
            }
            CHECK(has_loop(g), "the animation loops (NETSCAPE2.0 block)");
            int err;
            DGifCloseFile(g, &err);
        }
    }
    /* Thousands of colours: a smooth RGB gradient, quantized over all frames. */
    for (int f = 0; f < 4; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                unsigned char *p = fr[f].rgb + ((size_t)y * W + x) * 3;
                p[0] = (unsigned char)(x * 255 / (W - 1)), p[1] = (unsigned char)(y * 255 / (H - 1));
                p[2] = (unsigned char)(f * 80);
            }
    snprintf(path, sizeof path, "%s/quantized.gif", test_tmpdir());
    if (CHECK_OK(nfv_gif_write(path, fr, 4, delays))) {
        GifFileType *g = read_gif(path);
        if (g) {
            CHECK(g->ImageCount == 4, "%d frames, want 4", g->ImageCount);
            for (int f = 0; f < g->ImageCount && f < 4; f++) {
                double mean;
                int d = max_diff(g, f, &fr[f], &mean);
                /* 3404 colours spread over the whole RGB cube in 256 boxes of
                 * giflib's 5-bit-per-channel median cut: measured max 53-67,
                 * mean 8.3-9.4 per channel. */
                CHECK(d <= 80 && mean <= 12, "frame %d quantized: max channel difference %d (<= 80), mean %.2f (<= 12)",
                      f, d, mean);
            }
            int err;
            DGifCloseFile(g, &err);
        }
    }
    /* Refusals: frames of different sizes, a bad delay, an unwritable folder (nothing left behind). */
    nfv_image small;
    if (CHECK_OK(nfv_image_alloc(&small, W, H - 1))) {
        nfv_image mixed[2] = {fr[0], small};
        CHECK(nfv_gif_write(path, mixed, 2, delays) == NFV_ERR_INVALID_ARG, "frames of different sizes refused");
        nfv_image_free(&small);
    }
    int bad[1] = {70000};
    CHECK(nfv_gif_write(path, fr, 1, bad) == NFV_ERR_INVALID_ARG, "a delay over 65535 cs refused");
    snprintf(path, sizeof path, "%s/no/such/dir/x.gif", test_tmpdir());
    CHECK(nfv_gif_write(path, fr, 2, delays) != NFV_OK, "unwritable path fails");
    struct stat sb;
    CHECK(stat(path, &sb) != 0, "no file left under the final name");
    for (int f = 0; f < 4; f++) nfv_image_free(&fr[f]);
}

TEST(render_gif_of_volumes_matches_ortho)
{
    /* 9x10x8 volume of 5 levels: nearest sampling and no colour bar keep the
     * frames under 256 colours, so the GIF must hold nfv_render_ortho's
     * pixels exactly, but for the label in the top margin. */
    double a[4][4] = {{2, 0, 0, -9}, {0, 2, 0, -10}, {0, 0, 2, -8}, {0, 0, 0, 1}};
    nfv_volume v[2];
    for (int k = 0; k < 2; k++) {
        if (!CHECK_OK(nfv_volume_alloc(&v[k], 9, 10, 8, (const double(*)[4])a))) return;
        for (size_t i = 0; i < nfv_volume_numel(&v[k]); i++) v[k].data[i] = (float)((i * (k + 3)) % 5) * 0.25f;
    }
    nfv_render_options o;
    nfv_render_options_default(&o);
    o.nearest = 1;
    o.annotate = 0;
    o.window[0] = 0, o.window[1] = 1;
    double at[3] = {1, 0, 1};
    const nfv_volume *vols[2] = {&v[0], &v[1]};
    const char *labels[2] = {"STEP 0/1", "STEP 1/1"};
    char path[700];
    snprintf(path, sizeof path, "%s/volumes.gif", test_tmpdir());
    if (CHECK_OK(nfv_render_ortho_gif(path, vols, labels, 2, &o, at, 30, 120))) {
        GifFileType *g = read_gif(path);
        for (int f = 0; g && f < 2 && f < g->ImageCount; f++) {
            nfv_image im;
            if (!CHECK_OK(nfv_render_ortho(&v[f], &o, at, &im))) continue;
            CHECK(g->SWidth == im.width && g->SHeight == im.height, "GIF %dx%d, ortho %dx%d", g->SWidth, g->SHeight,
                  im.width, im.height);
            int below = 0, label = 0;
            for (int y = 0; y < im.height && g->SWidth == im.width; y++)
                for (int x = 0; x < im.width; x++) {
                    unsigned char c[3];
                    gif_rgb(g, f, x, y, c);
                    const unsigned char *p = im.rgb + ((size_t)y * im.width + x) * 3;
                    if (y >= 11) below += memcmp(c, p, 3) != 0;
                    else label += c[0] == 255 && c[2] < 100;
                }
            CHECK(below == 0, "frame %d: %d pixels below the label differ from nfv_render_ortho", f, below);
            CHECK(label > 20, "frame %d: the label is drawn (%d yellow pixels)", f, label);
            GraphicsControlBlock gcb;
            CHECK(DGifSavedExtensionToGCB(g, f, &gcb) == GIF_OK && gcb.DelayTime == (f ? 120 : 30),
                  "frame %d delay %d", f, gcb.DelayTime);
            nfv_image_free(&im);
        }
        if (g) {
            CHECK(g->ImageCount == 2, "%d frames, want 2", g->ImageCount);
            int err;
            DGifCloseFile(g, &err);
        }
    }
    for (int k = 0; k < 2; k++) nfv_volume_free(&v[k]);
}

/* Files in dir whose names contain needle. */
static int count_files(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, needle) != NULL;
    closedir(d);
    return n;
}

static int gif_frames(const char *path)
{
    int err = 0, n = -1;
    GifFileType *g = DGifOpenFileName(path, &err);
    if (g && DGifSlurp(g) == GIF_OK) n = g->ImageCount;
    if (g) DGifCloseFile(g, &err);
    return n;
}

TEST(vis_gif_cli_frames_and_resume)
{
    char model[600], out[600], cmd[3000], path[800], logp[700];
    snprintf(model, sizeof model, "%s/gif.safetensors", test_tmpdir());
    snprintf(logp, sizeof logp, "%s/gif.log", test_tmpdir());
    int in[4] = {1, 14, 16, 13};
    static const char *names[] = {"a", "b"};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), "conv(3,k3,p1) relu maxpool(2) flatten linear(2)", in, 2,
                                             names, NFV_HEAD_SOFTMAX, 5, &m)))
        return;
    CHECK_OK(nfv_model_save(m, model));
    nfv_model_free(m);
    /* 40 steps: 16 frames, one per automatic snapshot; no snapshot NIfTIs. */
    snprintf(out, sizeof out, "%s/gif_auto", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target logit:all --steps 40 --background none --gif --out %s",
             test_bin(), model, out);
    CHECK(test_run(cmd, logp) == 0, "visualize --gif: %s", cmd);
    snprintf(path, sizeof path, "%s/logit_a.gif", out);
    CHECK(gif_frames(path) == 16, "%s: %d frames, want 16 (evenly spaced steps 0..40)", path, gif_frames(path));
    snprintf(path, sizeof path, "%s/logit_b.gif", out);
    CHECK(gif_frames(path) == 16, "%s: %d frames, want 16", path, gif_frames(path));
    CHECK(count_files(out, "_step") == 0, "automatic snapshots write no NIfTI (%d files)", count_files(out, "_step"));
    /* 5 steps: 6 frames (every step); given --snapshots: those, and their NIfTIs. */
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target logit:a --steps 5 --background none --gif --out %s",
             test_bin(), model, out);
    CHECK(test_run(cmd, logp) == 0 && gif_frames(path) == 16, "second run in the same folder");
    snprintf(path, sizeof path, "%s/logit_a.gif", out);
    CHECK(gif_frames(path) == 6, "--steps 5: %d frames, want 6", gif_frames(path));
    snprintf(cmd, sizeof cmd,
             "%s visualize --model %s --target logit:a --steps 5 --snapshots 4,0,2 --background none --gif --out %s",
             test_bin(), model, out);
    CHECK(test_run(cmd, logp) == 0 && gif_frames(path) == 3, "--snapshots 4,0,2: %d frames, want 3",
          gif_frames(path));
    CHECK(count_files(out, "logit_a_step") == 3, "given snapshots are also NIfTI");
    /* --resume knows the GIF: without it the target runs again, with it nothing runs. */
    remove(path);
    snprintf(cmd, sizeof cmd,
             "%s visualize --model %s --target logit:a --steps 5 --snapshots 4,0,2 --background none --gif --out %s "
             "--resume",
             test_bin(), model, out);
    CHECK(test_run(cmd, logp) == 0 && gif_frames(path) == 3, "--resume rewrites a missing GIF");
    char *text = NULL;
    FILE *f = fopen(logp, "r");
    if (f) {
        text = calloc(1, 8192);
        if (text && fread(text, 1, 8191, f) == 0) text[0] = 0;
        fclose(f);
    }
    CHECK(text && strstr(text, "0 of 1 target(s) complete"), "the target without its GIF was incomplete");
    free(text);
    CHECK(test_run(cmd, logp) == 0, "resume again");
    f = fopen(logp, "r");
    char buf[8192] = {0};
    if (f) {
        if (fread(buf, 1, sizeof buf - 1, f) == 0) buf[0] = 0;
        fclose(f);
    }
    CHECK(strstr(buf, "1 of 1 target(s) complete") != NULL, "with its GIF the target is complete: %s", buf);
}
