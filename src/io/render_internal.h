/* Drawing into images, shared by render.c (panels and layouts) and
 * render_image.c (images, PNG, text); not part of the public API.  Pixels are
 * RGB, rows top to bottom; everything drawn outside the image is clipped. */
#ifndef NEUROFV_RENDER_INTERNAL_H
#define NEUROFV_RENDER_INTERNAL_H

#include <stddef.h>

#include "neurofv/render.h"

/* One pixel of colour c at (x, y); inline: panels set every pixel this way. */
static inline void nfv_image_put(nfv_image *im, int x, int y, const unsigned char c[3])
{
    if (x < 0 || y < 0 || x >= im->width || y >= im->height) return;
    unsigned char *p = im->rgb + ((size_t)y * im->width + x) * 3;
    p[0] = c[0];
    p[1] = c[1];
    p[2] = c[2];
}

/* src copied into dst with its top-left corner at (x0, y0). */
void nfv_image_blit(nfv_image *dst, const nfv_image *src, int x0, int y0);

/* Width in pixels of s in the 5x7 font at scale (6 * scale per character, no
 * trailing gap); height is 7 * scale. */
int nfv_image_text_width(const char *s, int scale);

/* s with its top-left corner at (x0, y0), each font pixel scale x scale, in
 * colour with a one-pixel black outline so it reads on any background.
 * Lower case is drawn as upper case, unknown characters as '?'. */
void nfv_image_draw_text(nfv_image *im, int x0, int y0, const char *s, int scale, const unsigned char colour[3]);

#endif
