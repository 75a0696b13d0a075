/* Animated GIFs through giflib: frames of RGB images with one 256-colour
 * palette for the whole animation, and the animation of volumes (snapshots
 * of an optimization) drawn as orthogonal slices at one colour scale.  See
 * include/neurofv/render.h. */
#include "io/render_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <gif_lib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"

/* ---- The palette ----------------------------------------------------------- */

/* Exact palette when the frames hold at most 256 distinct colours: colours
 * in pal (as 0xRRGGBB), *n of them, and each pixel's index in idx.  Returns 0
 * when there are more (idx is then incomplete). */
static int exact_palette(const nfv_image *frames, int count, unsigned *pal, int *n, unsigned char *idx)
{
    /* Open addressing, 1024 slots for at most 256 colours. */
    enum { SLOTS = 1024 };
    unsigned key[SLOTS];
    short val[SLOTS];
    memset(val, -1, sizeof val);
    *n = 0;
    size_t px = (size_t)frames[0].width * frames[0].height, o = 0;
    for (int f = 0; f < count; f++)
        for (size_t i = 0; i < px; i++, o++) {
            const unsigned char *p = frames[f].rgb + 3 * i;
            unsigned c = (unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2];
            unsigned h = (c * 2654435761u) >> 22; /* 10 bits */
            while (val[h] >= 0 && key[h] != c) h = (h + 1) & (SLOTS - 1);
            if (val[h] < 0) {
                if (*n == 256) return 0;
                key[h] = c;
                val[h] = (short)*n;
                pal[(*n)++] = c;
            }
            idx[o] = (unsigned char)val[h];
        }
    return 1;
}

/* The palette of the whole animation into map and each pixel's index into
 * idx (count * width * height): exact when there are at most 256 colours,
 * else giflib's median cut (GifQuantizeBuffer) over every frame at once, so
 * a colour maps to the same entry in every frame. */
static nfv_status build_palette(const nfv_image *frames, int count, ColorMapObject **map, unsigned char *idx)
{
    unsigned pal[256];
    int n = 0;
    if (exact_palette(frames, count, pal, &n, idx)) {
        *map = GifMakeMapObject(256, NULL);
        if (!*map) return nfv_fail(NFV_ERR_NO_MEMORY, "GIF: cannot allocate the palette");
        for (int i = 0; i < 256; i++) {
            unsigned c = i < n ? pal[i] : 0;
            (*map)->Colors[i] = (GifColorType){(GifByteType)(c >> 16), (GifByteType)(c >> 8 & 255), (GifByteType)(c & 255)};
        }
        return NFV_OK;
    }
    size_t px = (size_t)frames[0].width * frames[0].height, total = px * (size_t)count;
    if (total > 0x7fffffff / 2) return nfv_fail(NFV_ERR_INVALID_ARG, "GIF: %d frames of %zu pixels are too many to quantize", count, px);
    GifByteType *r = malloc(total), *g = malloc(total), *b = malloc(total);
    *map = GifMakeMapObject(256, NULL);
    nfv_status st = NFV_OK;
    if (!r || !g || !b || !*map) {
        st = nfv_fail(NFV_ERR_NO_MEMORY, "GIF: cannot allocate the palette of %d frames", count);
    } else {
        for (int f = 0; f < count; f++)
            for (size_t i = 0; i < px; i++) {
                const unsigned char *p = frames[f].rgb + 3 * i;
                r[f * px + i] = p[0], g[f * px + i] = p[1], b[f * px + i] = p[2];
            }
        int size = 256;
        /* One "image" of width x (height * count): the quantizer only sees pixels. */
        if (GifQuantizeBuffer((unsigned)frames[0].width, (unsigned)(frames[0].height * count), &size, r, g, b, idx,
                              (*map)->Colors) != GIF_OK)
            st = nfv_fail(NFV_ERR_INVALID_ARG, "GIF: giflib could not quantize %d frames to 256 colours", count);
    }
    free(r), free(g), free(b);
    if (st && *map) GifFreeMapObject(*map), *map = NULL;
    return st;
}

/* ---- Writing ---------------------------------------------------------------- */

static nfv_status gif_error(const char *path, const char *what, int code)
{
    const char *msg = GifErrorString(code);
    return nfv_fail(NFV_ERR_IO, "%s: GIF %s failed (%s)", path, what, msg ? msg : "unknown giflib error");
}

/* Everything after the screen descriptor: the loop extension, then per frame
 * its delay and its rows of palette indices. */
static int put_frames(GifFileType *gif, const nfv_image *frames, int count, const int *delay_cs,
                      const unsigned char *idx, const char **what)
{
    /* NETSCAPE2.0 application extension: loop forever. */
    static const GifByteType loop[3] = {1, 0, 0};
    *what = "loop extension";
    if (EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE) != GIF_OK ||
        EGifPutExtensionBlock(gif, 11, "NETSCAPE2.0") != GIF_OK || EGifPutExtensionBlock(gif, 3, loop) != GIF_OK ||
        EGifPutExtensionTrailer(gif) != GIF_OK)
        return 0;
    int w = frames[0].width, h = frames[0].height;
    for (int f = 0; f < count; f++) {
        GraphicsControlBlock gcb = {.DisposalMode = DISPOSE_DO_NOT, .UserInputFlag = false,
                                    .DelayTime = delay_cs[f], .TransparentColor = NO_TRANSPARENT_COLOR};
        GifByteType ext[4];
        size_t len = EGifGCBToExtension(&gcb, ext);
        *what = "frame";
        if (EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, (int)len, ext) != GIF_OK ||
            EGifPutImageDesc(gif, 0, 0, w, h, false, NULL) != GIF_OK)
            return 0;
        for (int y = 0; y < h; y++)
            if (EGifPutLine(gif, (GifPixelType *)(idx + ((size_t)f * h + y) * w), w) != GIF_OK) return 0;
    }
    return 1;
}

nfv_status nfv_gif_write(const char *path, const nfv_image *frames, int count, const int *delay_cs)
{
    if (!path || !frames || !delay_cs || count < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "GIF write: no frames, delays or path");
    for (int f = 0; f < count; f++) {
        if (!frames[f].rgb || frames[f].width != frames[0].width || frames[f].height != frames[0].height)
            return nfv_fail(NFV_ERR_INVALID_ARG, "%s: GIF frame %d is %dx%d, frame 0 %dx%d (all must match)", path, f,
                            frames[f].width, frames[f].height, frames[0].width, frames[0].height);
        if (delay_cs[f] < 0 || delay_cs[f] > 65535)
            return nfv_fail(NFV_ERR_INVALID_ARG, "%s: GIF frame %d delay %d cs is not in 0-65535", path, f, delay_cs[f]);
    }
    if (frames[0].width > 65535 || frames[0].height > 65535)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %dx%d is larger than a GIF can hold", path, frames[0].width,
                        frames[0].height);
    unsigned char *idx = malloc((size_t)frames[0].width * frames[0].height * count);
    if (!idx) return nfv_fail(NFV_ERR_NO_MEMORY, "%s: cannot allocate %d GIF frames", path, count);
    ColorMapObject *map = NULL;
    nfv_status st = build_palette(frames, count, &map, idx);
    char tmp[4160];
    if (!st) st = nfv_temp_name(path, tmp, sizeof tmp);
    if (st) {
        free(idx);
        if (map) GifFreeMapObject(map);
        return st;
    }
    int err = 0;
    /* Opened here: EGifOpenFileName creates files 0600, PNGs and NIfTIs are 0666 less the umask. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    GifFileType *gif = fd >= 0 ? EGifOpenFileHandle(fd, &err) : NULL;
    if (fd < 0) {
        st = nfv_fail(NFV_ERR_IO, "%s: cannot create the GIF (%s)", path, strerror(errno));
    } else if (!gif) {
        close(fd);
        st = gif_error(path, "open", err);
    } else {
        const char *what = "screen descriptor";
        EGifSetGifVersion(gif, true); /* GIF89a: delays and the loop */
        int ok = EGifPutScreenDesc(gif, frames[0].width, frames[0].height, 8, 0, map) == GIF_OK &&
                 put_frames(gif, frames, count, delay_cs, idx, &what);
        if (!ok) st = gif_error(path, what, gif->Error);
        if (EGifCloseFile(gif, &err) != GIF_OK && !st) st = gif_error(path, "close", err);
    }
    free(idx);
    GifFreeMapObject(map);
    return nfv_rename_into_place(st, tmp, path);
}

/* ---- Animations of volumes --------------------------------------------------- */

nfv_status nfv_render_ortho_gif(const char *path, const nfv_volume *const *vols, const char *const *labels, int count,
                                const nfv_render_options *o, const double at[3], int delay_cs, int last_delay_cs)
{
    if (!vols || count < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: an animation needs at least one volume", path);
    nfv_image *frames = calloc((size_t)count, sizeof *frames);
    int *delays = malloc((size_t)count * sizeof *delays);
    nfv_status st = NFV_OK;
    if (!frames || !delays) st = nfv_fail(NFV_ERR_NO_MEMORY, "%s: cannot allocate %d frames", path, count);
    static const unsigned char yellow[3] = {255, 230, 60};
    for (int f = 0; f < count && !st; f++) {
        st = nfv_render_ortho(vols[f], o, at, &frames[f]);
        if (!st && labels && labels[f]) nfv_image_draw_text(&frames[f], 14, 2, labels[f], 1, yellow);
        if (!st && f > 0 && (frames[f].width != frames[0].width || frames[f].height != frames[0].height))
            st = nfv_fail(NFV_ERR_INVALID_ARG, "%s: volume %d draws %dx%d, volume 0 %dx%d (same grid needed)", path, f,
                          frames[f].width, frames[f].height, frames[0].width, frames[0].height);
        if (!st) delays[f] = f == count - 1 ? last_delay_cs : delay_cs;
    }
    if (!st) st = nfv_gif_write(path, frames, count, delays);
    if (frames)
        for (int f = 0; f < count; f++) nfv_image_free(&frames[f]);
    free(frames);
    free(delays);
    return st;
}
