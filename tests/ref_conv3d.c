/* Plain C double-precision Conv3d reference; see ref_conv3d.h.  Written as the
 * textbook sums, one output at a time, with explicit bounds checks. */
#include "ref_conv3d.h"

#include <stdlib.h>
#include <string.h>

static int dil(const ref_conv3d_shape *s, int a) { return s->dil[a] > 0 ? s->dil[a] : 1; }
static int groups(const ref_conv3d_shape *s) { return s->g > 0 ? s->g : 1; }
/* Input channels per group (the weights' second axis). */
static int cig(const ref_conv3d_shape *s) { return s->ci / groups(s); }
/* First input channel of output channel co's group. */
static int ci0(const ref_conv3d_shape *s, int co) { return co / (s->co / groups(s)) * cig(s); }

void ref_conv3d_shape_init(ref_conv3d_shape *s)
{
    /* The receptive field along an axis spans dil*(k-1)+1 input positions. */
    s->od = (s->d + 2 * s->p[0] - dil(s, 0) * (s->k[0] - 1) - 1) / s->s[0] + 1;
    s->oh = (s->h + 2 * s->p[1] - dil(s, 1) * (s->k[1] - 1) - 1) / s->s[1] + 1;
    s->ow = (s->w + 2 * s->p[2] - dil(s, 2) * (s->k[2] - 1) - 1) / s->s[2] + 1;
}

static size_t xi(const ref_conv3d_shape *s, int n, int c, int d, int h, int w)
{
    return (((size_t)(n * s->ci + c) * s->d + d) * s->h + h) * s->w + w;
}
static size_t yi(const ref_conv3d_shape *s, int n, int c, int d, int h, int w)
{
    return (((size_t)(n * s->co + c) * s->od + d) * s->oh + h) * s->ow + w;
}
/* ci is the channel within the group (0 .. CI/G - 1). */
static size_t wi(const ref_conv3d_shape *s, int co, int ci, int kd, int kh, int kw)
{
    return (((size_t)(co * cig(s) + ci) * s->k[0] + kd) * s->k[1] + kh) * s->k[2] + kw;
}

/* Input position of output o at tap k along axis a, or -1 when in the padding. */
static int in_pos(const ref_conv3d_shape *s, int a, int o, int k, int size)
{
    int i = o * s->s[a] - s->p[a] + k * dil(s, a);
    return i >= 0 && i < size ? i : -1;
}

void ref_conv3d_forward_d(const ref_conv3d_shape *s, const double *x, const double *w, const double *b, double *y)
{
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->co; co++)
            for (int od = 0; od < s->od; od++)
                for (int oh = 0; oh < s->oh; oh++)
                    for (int ow = 0; ow < s->ow; ow++) {
                        double acc = b ? b[co] : 0.0;
                        for (int ci = 0; ci < cig(s); ci++)
                            for (int kd = 0; kd < s->k[0]; kd++) {
                                int d = in_pos(s, 0, od, kd, s->d);
                                if (d < 0) continue;
                                for (int kh = 0; kh < s->k[1]; kh++) {
                                    int h = in_pos(s, 1, oh, kh, s->h);
                                    if (h < 0) continue;
                                    for (int kw = 0; kw < s->k[2]; kw++) {
                                        int ww = in_pos(s, 2, ow, kw, s->w);
                                        if (ww < 0) continue;
                                        acc += w[wi(s, co, ci, kd, kh, kw)] * x[xi(s, n, ci0(s, co) + ci, d, h, ww)];
                                    }
                                }
                            }
                        y[yi(s, n, co, od, oh, ow)] = acc;
                    }
}

static double *to_double(const float *p, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}

void ref_conv3d_forward(const ref_conv3d_shape *s, const float *x, const float *w, const float *b, double *y)
{
    size_t nx = (size_t)s->n * s->ci * s->d * s->h * s->w;
    size_t nw = (size_t)s->co * cig(s) * s->k[0] * s->k[1] * s->k[2];
    double *xd = to_double(x, nx), *wd = to_double(w, nw), *bd = b ? to_double(b, (size_t)s->co) : NULL;
    ref_conv3d_forward_d(s, xd, wd, bd, y);
    free(xd);
    free(wd);
    free(bd);
}

/* Scatter form: every (output, tap) pair adds its product to the input it read. */
void ref_conv3d_backward_input(const ref_conv3d_shape *s, const float *dy, const float *w, double *dx)
{
    memset(dx, 0, (size_t)s->n * s->ci * s->d * s->h * s->w * sizeof *dx);
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->co; co++)
            for (int od = 0; od < s->od; od++)
                for (int oh = 0; oh < s->oh; oh++)
                    for (int ow = 0; ow < s->ow; ow++) {
                        double g = dy[yi(s, n, co, od, oh, ow)];
                        for (int ci = 0; ci < cig(s); ci++)
                            for (int kd = 0; kd < s->k[0]; kd++) {
                                int d = in_pos(s, 0, od, kd, s->d);
                                if (d < 0) continue;
                                for (int kh = 0; kh < s->k[1]; kh++) {
                                    int h = in_pos(s, 1, oh, kh, s->h);
                                    if (h < 0) continue;
                                    for (int kw = 0; kw < s->k[2]; kw++) {
                                        int ww = in_pos(s, 2, ow, kw, s->w);
                                        if (ww < 0) continue;
                                        dx[xi(s, n, ci0(s, co) + ci, d, h, ww)] += g * w[wi(s, co, ci, kd, kh, kw)];
                                    }
                                }
                            }
                    }
}

void ref_conv3d_backward_weights(const ref_conv3d_shape *s, const float *x, const float *dy, double *dw, double *db)
{
    if (dw) memset(dw, 0, (size_t)s->co * cig(s) * s->k[0] * s->k[1] * s->k[2] * sizeof *dw);
    if (db) memset(db, 0, (size_t)s->co * sizeof *db);
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->co; co++)
            for (int od = 0; od < s->od; od++)
                for (int oh = 0; oh < s->oh; oh++)
                    for (int ow = 0; ow < s->ow; ow++) {
                        double g = dy[yi(s, n, co, od, oh, ow)];
                        if (db) db[co] += g;
                        if (!dw) continue;
                        for (int ci = 0; ci < cig(s); ci++)
                            for (int kd = 0; kd < s->k[0]; kd++) {
                                int d = in_pos(s, 0, od, kd, s->d);
                                if (d < 0) continue;
                                for (int kh = 0; kh < s->k[1]; kh++) {
                                    int h = in_pos(s, 1, oh, kh, s->h);
                                    if (h < 0) continue;
                                    for (int kw = 0; kw < s->k[2]; kw++) {
                                        int ww = in_pos(s, 2, ow, kw, s->w);
                                        if (ww < 0) continue;
                                        dw[wi(s, co, ci, kd, kh, kw)] += g * x[xi(s, n, ci0(s, co) + ci, d, h, ww)];
                                    }
                                }
                            }
                    }
}
