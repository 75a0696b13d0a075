/* Strided Conv3d (stride > 1 along an axis; no dilation or groups) as a
 * stride-1 conv over phases, through the fast kernels of src/layers/conv3d.c
 * (cl/conv3d.cl, conv3d_phase_*).
 *
 * Until these, a strided conv ran the *_ref kernels (one output per
 * work-item): MONAI's ResNet-18 at 64^3 spent 94 % of its eval forward and
 * 95 % of a visualization step in its seven strided convs (the 7^3 stem and
 * the stride-2 convs and 1^3 shortcuts), at 1-4 GFLOP/s.
 *
 * Along an axis of stride s, kernel K and padding p, output o reads the
 * padded input at s*o + t for taps t < K.  Write t = s*m + f: phase f of the
 * input (positions s*i + f, i < L = O + ceil(K/s) - 1) and phase f of the
 * kernel (taps s*m + f, zero past K) make a stride-1 conv along that axis
 * with kernel ceil(K/s) and no padding whose output is exactly O long, with
 * nf = min(s, K) phases per axis as input channels (space to depth; phases
 * no tap reads are left out, so a 1^3 stride-2 conv is a subsampling).
 * Forward, input gradient and weight gradient are then the fast paths of the
 * phase conv, between cheap copies:
 *
 *   forward          split along x only (the fast kernels take d and h
 *                    strides): conv3d_phase_split(x), conv3d_phase_weights(w),
 *                    the conv;
 *   backward-input   split along every strided axis: the stride-1 input
 *                    gradient of the phase conv (its weights flipped), then
 *                    conv3d_phase_merge back to x's layout;
 *   backward-weights split along x only: conv3d_phase_split(x), the phase
 *                    conv's weight gradient (kernels up to 5 along x),
 *                    conv3d_phase_weights_merge.
 *
 * FLOPs are nf * ceil(K/s) / K times the conv's along each split axis:
 * 4/3 for a 3^3 stride-2 conv (2.37x when all three axes are split), 8/7
 * for the 7^3 stem (1.49x), 1x for 1^3 and 2^3 stride 2.
 * Tested against the host reference (tests/test_conv3d.c). */
#include <string.h>

#include "layers/conv3d_internal.h"

typedef struct phase_geom {
    conv_dims u;  /* the phase conv: CI * P channels, kernel m, output O */
    int ss[3];    /* per axis the stride split into phases (1: the axis is not split) */
    int sp[3];    /* the padding the split applies (0 where not split: u keeps p) */
    int nf[3];    /* phases per axis */
    int phases;   /* P */
} phase_geom;

/* The phase conv of d, split along the axes with a stride > 1 (x only when
 * x_only: the fast forward and weight-gradient kernels take d and h strides
 * themselves, so the other axes keep their stride, padding and kernel). */
static phase_geom phase_geometry(const conv_dims *d, int x_only)
{
    phase_geom g;
    g.u = *d;
    g.phases = 1;
    const int in[3] = {d->d, d->h, d->w}, out[3] = {d->od, d->oh, d->ow};
    int len[3];
    for (int i = 0; i < 3; i++) {
        const int split = d->s[i] > 1 && (!x_only || i == 2);
        g.ss[i] = split ? d->s[i] : 1;
        g.sp[i] = split ? d->p[i] : 0;
        g.nf[i] = split ? (d->s[i] < d->k[i] ? d->s[i] : d->k[i]) : 1;
        g.phases *= g.nf[i];
        if (split) {
            g.u.k[i] = (d->k[i] + d->s[i] - 1) / d->s[i];
            len[i] = out[i] + g.u.k[i] - 1;
            g.u.s[i] = 1, g.u.p[i] = 0;
        } else {
            len[i] = in[i];
        }
    }
    g.u.ci = d->ci * g.phases;
    g.u.d = len[0], g.u.h = len[1], g.u.w = len[2];
    return g;
}

/* One conv3d_phase_* kernel: buffers a -> b, then the int arguments and
 * the phase geometry; global work size of dims dimensions. */
static nfv_status phase_launch(nfv_context *ctx, const char *name, cl_mem a, cl_mem b, const int *args, int nargs,
                               const phase_geom *g, int dims, const size_t *global)
{
    cl_kernel k;
    char go[32];
    NFV_TRY(nfv_kernel_get(ctx, "conv3d", conv3d_generic_options(ctx, go, sizeof go), name, &k));
    cl_int v[16], err;
    int n = 0;
    for (int i = 0; i < nargs; i++) v[n++] = args[i];
    for (int i = 0; i < 3; i++) v[n++] = g->ss[i];
    for (int i = 0; i < 3; i++) v[n++] = g->nf[i];
    for (int i = 0; i < 3; i++) v[n++] = g->sp[i];
    if ((err = clSetKernelArg(k, 0, sizeof a, &a)) || (err = clSetKernelArg(k, 1, sizeof b, &b)))
        return nfv_cl_fail(err, "clSetKernelArg", name, __FILE__, __LINE__);
    for (int i = 0; i < n; i++)
        if ((err = clSetKernelArg(k, 2 + i, sizeof v[i], &v[i])) != CL_SUCCESS)
            return nfv_cl_fail(err, "clSetKernelArg", name, __FILE__, __LINE__);
    return nfv_kernel_launch(ctx, k, dims, global, NULL);
}

/* x (N, CI, D, H, W) <-> xs (N, CI*P, L^3): split (to_phases) or merge. */
static nfv_status phase_data(nfv_context *ctx, const conv_dims *d, const phase_geom *g, int to_phases, cl_mem from,
                             cl_mem to)
{
    const int args[6] = {d->d, d->h, d->w, g->u.d, g->u.h, g->u.w};
    if (to_phases) {
        size_t global[2] = {(size_t)g->u.h, (size_t)d->n * g->u.ci * g->u.d}; /* a row per work-item */
        return phase_launch(ctx, "conv3d_phase_split", from, to, args, 6, g, 2, global);
    }
    size_t global[2] = {(size_t)d->h, (size_t)d->n * d->ci * d->d}; /* a row per work-item */
    return phase_launch(ctx, "conv3d_phase_merge", from, to, args, 6, g, 2, global);
}

/* w (CO, CI, K) <-> ws (CO, CI*P, m): split (to_phases) or merge. */
static nfv_status phase_weights(nfv_context *ctx, const conv_dims *d, const phase_geom *g, int to_phases, cl_mem from,
                                cl_mem to)
{
    const int args[6] = {d->k[0], d->k[1], d->k[2], g->u.k[0], g->u.k[1], g->u.k[2]};
    size_t global = (size_t)d->co * d->ci; /* one (co, ci) kernel per work-item */
    return phase_launch(ctx, to_phases ? "conv3d_phase_weights" : "conv3d_phase_weights_merge", from, to, args, 6, g,
                        1, &global);
}

static size_t phase_data_floats(const conv_dims *d, const phase_geom *g)
{
    return (size_t)d->n * g->u.ci * g->u.d * g->u.h * g->u.w;
}

static size_t phase_weight_floats(const conv_dims *d, const phase_geom *g)
{
    return (size_t)d->co * g->u.ci * g->u.k[0] * g->u.k[1] * g->u.k[2];
}

nfv_status conv3d_forward_strided(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem w, cl_mem bias, int relu,
                                  cl_mem y)
{
    const phase_geom g = phase_geometry(d, 1);
    cl_mem xs, ws;
    int fresh;
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PHASES, phase_data_floats(d, &g), "conv3d input phases", &xs));
    NFV_TRY(conv3d_derived_weights(ctx, w, NFV_DERIVED_CONV_PHASE, NFV_SCRATCH_CONV_PHASE_WEIGHTS,
                                   phase_weight_floats(d, &g), "conv3d weight phases", &ws, &fresh));
    NFV_TRY(phase_data(ctx, d, &g, 1, x, xs));
    if (fresh) NFV_TRY(phase_weights(ctx, d, &g, 1, w, ws));
    return conv3d_forward_fast(ctx, &g.u, xs, NULL, ws, bias, relu, y);
}

nfv_status conv3d_backward_input_strided(nfv_context *ctx, const conv_dims *d, cl_mem dy, cl_mem gate, cl_mem w,
                                        cl_mem dx)
{
    const phase_geom g = phase_geometry(d, 0);
    const size_t wfloats = phase_weight_floats(d, &g);
    cl_mem ws, wt, dxs;
    int fresh;
    NFV_TRY(conv3d_derived_weights(ctx, w, NFV_DERIVED_CONV_PHASE_FLIP, NFV_SCRATCH_CONV_FLIPPED_WEIGHTS, wfloats,
                                   "conv3d flipped weight phases", &wt, &fresh));
    if (fresh) {
        NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PHASE_WEIGHTS, wfloats, "conv3d weight phases", &ws));
        NFV_TRY(phase_weights(ctx, d, &g, 1, w, ws));
        NFV_TRY(conv3d_flip_into(ctx, &g.u, ws, wt));
    }
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PHASES, phase_data_floats(d, &g), "conv3d input-gradient phases",
                           &dxs));
    /* The phase conv's input gradient: a forward over dy padded by m - 1,
     * gated in that padding copy (no temporary of dy's size). */
    conv_dims t = conv3d_transposed_dims(&g.u);
    NFV_TRY(conv3d_forward_fast(ctx, &t, dy, gate, wt, NULL, 0, dxs));
    return phase_data(ctx, d, &g, 0, dxs, dx);
}

int conv3d_has_strided_weights(const conv_dims *d) { return phase_geometry(d, 1).u.k[2] <= 5; }

nfv_status conv3d_backward_weights_strided(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem dy, cl_mem dw)
{
    const phase_geom g = phase_geometry(d, 1);
    cl_mem xs, dws;
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PHASES, phase_data_floats(d, &g), "conv3d input phases", &xs));
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PHASE_WEIGHTS, phase_weight_floats(d, &g),
                           "conv3d weight-gradient phases", &dws));
    NFV_TRY(phase_data(ctx, d, &g, 1, x, xs));
    NFV_TRY(conv3d_weights_fast(ctx, &g.u, xs, dy, dws));
    return phase_weights(ctx, d, &g, 0, dws, dw);
}

nfv_conv3d_phase_shape nfv_conv3d_phase_shape_of(const int in_dims[3], const int kernel[3], const int stride[3],
                                                 const int pad[3], const int out_dims[3], int x_only)
{
    conv_dims d = {.n = 1, .ci = 1, .co = 1, .d = in_dims[0], .h = in_dims[1], .w = in_dims[2], .od = out_dims[0],
                   .oh = out_dims[1], .ow = out_dims[2]};
    for (int i = 0; i < 3; i++) d.k[i] = kernel[i], d.s[i] = stride[i], d.p[i] = pad[i];
    const phase_geom g = phase_geometry(&d, x_only);
    nfv_conv3d_phase_shape r = {g.phases, {g.u.d, g.u.h, g.u.w}, {g.u.k[0], g.u.k[1], g.u.k[2]},
                                {g.u.s[0], g.u.s[1], g.u.s[2]}, {g.u.p[0], g.u.p[1], g.u.p[2]}};
    return r;
}
