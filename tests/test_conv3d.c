/* Conv3d: fast and reference device kernels against the double-precision host
 * reference (tests/ref_conv3d.c) over odd shapes, strides, paddings and kernel
 * sizes; every backward against central finite differences of the host
 * forward; the exact ref4 conv2 shape fast vs reference; bad shapes.  The
 * conv3d_general_* tests do the same for dilation and groups (the general
 * kernels, cl/conv3d_general.cl). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/conv3d_internal.h"
#include "neurofv/ops.h"
#include "ref_conv3d.h"
#include "test.h"

typedef struct conv_case {
    int n, ci, co, d, h, w;
    int k[3], s[3], p[3];
    int bias;
    int dil[3], g; /* 0 means 1: the plain cases leave them out */
} conv_case;

static ref_conv3d_shape case_shape(const conv_case *c)
{
    ref_conv3d_shape s = {.n = c->n, .ci = c->ci, .d = c->d, .h = c->h, .w = c->w, .co = c->co, .g = c->g};
    for (int i = 0; i < 3; i++) s.k[i] = c->k[i], s.s[i] = c->s[i], s.p[i] = c->p[i], s.dil[i] = c->dil[i];
    ref_conv3d_shape_init(&s);
    return s;
}

static nfv_conv3d_params case_params(const conv_case *c)
{
    nfv_conv3d_params p = {.groups = c->g};
    for (int i = 0; i < 3; i++)
        p.kernel[i] = c->k[i], p.stride[i] = c->s[i], p.padding[i] = c->p[i], p.dilation[i] = c->dil[i];
    return p;
}

static const char *case_name(const conv_case *c, char *buf, size_t cap)
{
    int used = snprintf(buf, cap, "n%d %d->%d %dx%dx%d k%dx%dx%d s%dx%dx%d p%dx%dx%d%s", c->n, c->ci, c->co, c->d,
                        c->h, c->w, c->k[0], c->k[1], c->k[2], c->s[0], c->s[1], c->s[2], c->p[0], c->p[1], c->p[2],
                        c->bias ? " bias" : "");
    if (used > 0 && (size_t)used < cap && (c->g || c->dil[0] || c->dil[1] || c->dil[2]))
        snprintf(buf + used, cap - (size_t)used, " dil%dx%dx%d g%d", c->dil[0], c->dil[1], c->dil[2], c->g);
    return buf;
}

/* Device tensors of one case, filled with random data in [-1, 1). */
typedef struct conv_data {
    ref_conv3d_shape s;
    size_t nx, nw, ny;
    float *x, *w, *b, *dy;
    nfv_tensor tx, tw, tb, ty, tdy, tdx, tdw, tdb;
} conv_data;

static int data_init(conv_data *cd, const conv_case *c, unsigned seed)
{
    memset(cd, 0, sizeof *cd);
    cd->s = case_shape(c);
    const ref_conv3d_shape *s = &cd->s;
    cd->nx = (size_t)s->n * s->ci * s->d * s->h * s->w;
    const int cig = s->ci / (s->g > 0 ? s->g : 1); /* weights (CO, CI/G, k) */
    cd->nw = (size_t)s->co * cig * s->k[0] * s->k[1] * s->k[2];
    cd->ny = (size_t)s->n * s->co * s->od * s->oh * s->ow;
    cd->x = test_random(cd->nx, seed, -1, 1);
    cd->w = test_random(cd->nw, seed + 1, -1, 1);
    cd->b = test_random((size_t)s->co, seed + 2, -1, 1);
    cd->dy = test_random(cd->ny, seed + 3, -1, 1);
    int xs[5] = {s->n, s->ci, s->d, s->h, s->w}, ws[5] = {s->co, cig, s->k[0], s->k[1], s->k[2]};
    int ys[5] = {s->n, s->co, s->od, s->oh, s->ow}, bs[1] = {s->co};
    return CHECK_OK(test_tensor(&cd->tx, 5, xs, cd->x)) && CHECK_OK(test_tensor(&cd->tw, 5, ws, cd->w)) &&
           CHECK_OK(test_tensor(&cd->tb, 1, bs, cd->b)) && CHECK_OK(test_tensor(&cd->ty, 5, ys, NULL)) &&
           CHECK_OK(test_tensor(&cd->tdy, 5, ys, cd->dy)) && CHECK_OK(test_tensor(&cd->tdx, 5, xs, NULL)) &&
           CHECK_OK(test_tensor(&cd->tdw, 5, ws, NULL)) && CHECK_OK(test_tensor(&cd->tdb, 1, bs, NULL));
}

static void data_free(conv_data *cd)
{
    free(cd->x), free(cd->w), free(cd->b), free(cd->dy);
    nfv_tensor *ts[] = {&cd->tx, &cd->tw, &cd->tb, &cd->ty, &cd->tdy, &cd->tdx, &cd->tdw, &cd->tdb};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) nfv_tensor_free(ts[i]);
}

/* Fill the outputs with NaN first: a kernel that leaves any element unwritten fails. */
static void poison(nfv_tensor *t)
{
    CHECK_OK(nfv_tensor_fill(test_ctx(), t, NAN));
}

static void check_tensor(const char *what, const char *name, const nfv_tensor *t, const double *want, double atol,
                         double rtol)
{
    float *got = test_download(t);
    if (!got) return;
    char label[256];
    snprintf(label, sizeof label, "%s [%s]", what, name);
    CHECK_CLOSE(label, got, want, t->numel, atol, rtol);
    free(got);
}

/* Tolerances: inputs in [-1, 1); the device sums in float32 over at most
 * CI*KVOL (forward), CO*KVOL (input gradient) or N*DO*HO*WO (weight gradient,
 * <= 2100 here) terms of size <= 1, so rounding stays below ~1e-5 per
 * 100 terms; 1e-4 absolute (3e-4 for the long weight sums) plus 1e-4
 * relative leaves margin yet catches any wrong tap, which moves results by
 * O(0.1). */
static void run_case(const conv_case *c, int reference, unsigned seed)
{
    conv_data cd;
    char name[160];
    case_name(c, name, sizeof name);
    if (reference) strncat(name, " (reference kernels)", sizeof name - strlen(name) - 1);
    nfv_conv3d_params p = case_params(c);
    nfv_context *ctx = test_ctx();
    if (!data_init(&cd, c, seed)) {
        data_free(&cd);
        return;
    }
    const ref_conv3d_shape *s = &cd.s;
    double *y = malloc(cd.ny * sizeof *y), *dx = malloc(cd.nx * sizeof *dx), *dw = malloc(cd.nw * sizeof *dw);
    double *db = malloc((size_t)s->co * sizeof *db);
    ref_conv3d_forward(s, cd.x, cd.w, c->bias ? cd.b : NULL, y);
    ref_conv3d_backward_input(s, cd.dy, cd.w, dx);
    ref_conv3d_backward_weights(s, cd.x, cd.dy, dw, db);

    poison(&cd.ty), poison(&cd.tdx), poison(&cd.tdw), poison(&cd.tdb);
    const nfv_tensor *bias = c->bias ? &cd.tb : NULL;
    if (reference) {
        CHECK_OK(nfv_conv3d_forward_reference(ctx, &p, &cd.tx, &cd.tw, bias, &cd.ty));
        CHECK_OK(nfv_conv3d_backward_input_reference(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        CHECK_OK(nfv_conv3d_backward_weights_reference(ctx, &p, &cd.tx, &cd.tdy, &cd.tdw, &cd.tdb));
    } else {
        CHECK_OK(nfv_conv3d_forward(ctx, &p, &cd.tx, &cd.tw, bias, &cd.ty));
        CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        CHECK_OK(nfv_conv3d_backward_weights(ctx, &p, &cd.tx, &cd.tdy, &cd.tdw, &cd.tdb));
    }
    check_tensor("forward", name, &cd.ty, y, 1e-4, 1e-4);
    check_tensor("backward-input", name, &cd.tdx, dx, 1e-4, 1e-4);
    check_tensor("backward-weights", name, &cd.tdw, dw, 3e-4, 1e-4);
    check_tensor("bias gradient", name, &cd.tdb, db, 3e-4, 1e-4);
    free(y), free(dx), free(dw), free(db);
    data_free(&cd);
}

/* Shapes: odd/prime sizes, 1/3/8 channels (and 2 and 16 for other blockings),
 * batch 1 and 3, stride 1, 2 and 3, padding 0/1/2/3, kernels 1/2/3/7 and non-cubic,
 * rows narrower than, equal to and wider than one vector block. */
static const conv_case CASES[] = {
    {1, 1, 8, 7, 9, 11, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    {3, 3, 3, 7, 9, 11, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}, 0, {0, 0, 0}, 0},
    {1, 8, 1, 5, 6, 7, {3, 3, 3}, {1, 1, 1}, {2, 2, 2}, 1, {0, 0, 0}, 0},
    {3, 3, 8, 9, 7, 11, {3, 1, 2}, {1, 1, 1}, {1, 0, 1}, 1, {0, 0, 0}, 0},
    {1, 8, 3, 11, 9, 7, {2, 2, 2}, {2, 2, 2}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    {3, 1, 3, 7, 9, 11, {3, 3, 3}, {2, 2, 1}, {1, 1, 1}, 0, {0, 0, 0}, 0},
    {1, 3, 16, 7, 9, 11, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, 1, {0, 0, 0}, 0},
    {1, 3, 8, 6, 5, 19, {2, 2, 2}, {1, 1, 1}, {2, 2, 2}, 0, {0, 0, 0}, 0},
    {1, 3, 8, 5, 4, 32, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    /* 1-2 output channels take 4-row blocks (HO = 7 and 6: a partial last block) */
    {1, 3, 1, 9, 7, 32, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    {1, 3, 2, 9, 11, 16, {3, 3, 3}, {1, 2, 1}, {1, 1, 1}, 0, {0, 0, 0}, 0},
    /* one output channel (forward; and the input gradient of 1 input
     * channel) at batch 2: 4-row blocks with a partial last one (H = 5),
     * reads reaching the last sample's slack */
    {2, 1, 4, 6, 5, 13, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    {2, 4, 1, 6, 5, 13, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 0, {0, 0, 0}, 0},
    /* one channel over more planes than a CPU work-item marches through
     * (conv3d_fwd_co1, 16): 37 planes are chunks of 16, 16 and 5 */
    {1, 1, 3, 37, 6, 20, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    {2, 3, 1, 37, 6, 20, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    /* strided convs through the stride-1 kernels (src/layers/conv3d_strided.c):
     * MONAI ResNet's 7^3 stem (its input gradient into one channel: channel
     * rows), a stride-2 3^3 conv on even and odd sizes, a 1^3 shortcut,
     * stride 3 (inputs past the last window), mixed strides with p = k - 1;
     * all three gradients as stride-1 convs over phases */
    {1, 1, 4, 9, 10, 13, {7, 7, 7}, {2, 2, 2}, {3, 3, 3}, 1, {0, 0, 0}, 0},
    {2, 3, 8, 8, 9, 12, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, 0, {0, 0, 0}, 0},
    {1, 8, 16, 7, 8, 9, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}, 1, {0, 0, 0}, 0},
    {1, 2, 3, 8, 7, 11, {3, 3, 3}, {3, 3, 3}, {1, 1, 1}, 0, {0, 0, 0}, 0},
    {1, 3, 5, 7, 9, 17, {3, 2, 3}, {1, 3, 2}, {0, 1, 2}, 1, {0, 0, 0}, 0},
    {2, 2, 3, 6, 7, 9, {2, 2, 2}, {2, 2, 2}, {2, 2, 2}, 1, {0, 0, 0}, 0}, /* padding > kernel - 1 */
    /* ResNet's deep stages: few positions, the output channels in the
     * vector lanes (conv3d_fwd_cvec; conv3d_channel_last_where_lanes_idle
     * checks that these take it): 4^3 planes at batch 2; 2x3x2 at batch 3
     * (36 positions: a partial last block of 16); a stride-2 conv (its x
     * phases with d and h strides 2, and its input gradient's phases); a
     * 1^3 conv */
    {2, 16, 32, 4, 4, 4, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    {3, 32, 16, 2, 3, 2, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 0, {0, 0, 0}, 0},
    {2, 16, 32, 5, 5, 5, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, 1, {0, 0, 0}, 0},
    {2, 16, 16, 4, 3, 4, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, 1, {0, 0, 0}, 0},
};

/* The cases above that are meant to run conv3d_fwd_cvec do under the CPU
 * profiles (16 and 8 lanes, 16 positions a work-item), forward and input
 * gradient (a forward over dy), and the shapes the other kernels fill do
 * not: ref4's conv4 at 2 mm (11x13x11, 74 % of the flat kernel's lanes),
 * channels that do not fill vectors, and the GPU profiles (cvec = 0). */
TEST(conv3d_channel_last_where_lanes_idle)
{
    nfv_device_info cpu = {0};
    cpu.is_cpu = 1, cpu.preferred_vector_width_float = 16, cpu.max_work_group_size = 4096;
    cpu.local_mem_bytes = 512 * 1024;
    nfv_kernel_config k16, k8, gpu;
    if (!CHECK_OK(nfv_kernel_config_parse("cpu-avx512", &cpu, &k16)) ||
        !CHECK_OK(nfv_kernel_config_parse("cpu-avx2", &cpu, &k8)) ||
        !CHECK_OK(nfv_kernel_config_parse("nvidia", &cpu, &gpu)))
        return;
    const int c444[3] = {4, 4, 4}, c232[3] = {2, 3, 2}, c434[3] = {4, 3, 4}, p1[3] = {1, 1, 1}, p0[3] = {0, 0, 0};
    const int p2[3] = {2, 2, 2}, in5[3] = {5, 5, 5}, out3[3] = {3, 3, 3};
    const nfv_kernel_config *cfg[2] = {&k16, &k8};
    for (int i = 0; i < 2; i++) {
        const nfv_kernel_config *kc = cfg[i];
        CHECK(nfv_conv3d_channel_last(kc, 32, c444, p1, c444, 1) && nfv_conv3d_channel_last(kc, 16, c444, p1, c444, 1),
              "%s: 4^3, 16 <-> 32 channels: forward and input gradient", kc->name);
        CHECK(nfv_conv3d_channel_last(kc, 16, c232, p1, c232, 1) && nfv_conv3d_channel_last(kc, 32, c232, p1, c232, 1),
              "%s: 2x3x2, 32 <-> 16 channels", kc->name);
        CHECK(nfv_conv3d_channel_last(kc, 32, in5, p1, out3, 2), "%s: 5^3 -> 3^3, d and h stride 2", kc->name);
        CHECK(nfv_conv3d_channel_last(kc, 16, out3, p2, in5, 1), "%s: its input gradient, dy 3^3 padded by 2 -> 5^3",
              kc->name);
    }
    /* (at 8 lanes the flattened 4x3x4 plane fills 12 of 16: it keeps the flat kernel) */
    CHECK(nfv_conv3d_channel_last(&k16, 16, c434, p0, c434, 1), "cpu-avx512: 4x3x4, 1^3 conv");
    CHECK(!nfv_conv3d_channel_last(&k8, 16, c434, p0, c434, 1), "cpu-avx2: 4x3x4, 1^3 conv keeps the flat kernel");
    const int r4[3] = {11, 13, 11};
    CHECK(!nfv_conv3d_channel_last(&k16, 64, r4, p1, r4, 1), "ref4 conv4 at 2 mm keeps the flattened-plane kernel");
    CHECK(!nfv_conv3d_channel_last(&k16, 24, c444, p1, c444, 1), "24 channels do not fill 16 lanes");
    CHECK(!nfv_conv3d_channel_last(&gpu, 32, c444, p1, c444, 1), "the GPU profiles keep the other kernels");
}

TEST(conv3d_fast_vs_host_reference)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(&CASES[i], 0, 100 + (unsigned)i);
}

TEST(conv3d_reference_kernels_vs_host_reference)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) run_case(&CASES[i], 1, 200 + (unsigned)i);
}

/* L(x, w, b) = sum(conv(x, w, b) * g): its gradients are exactly what the
 * backward kernels compute for dy = g.  Central differences in double with
 * step 1e-3 are exact up to rounding because L is linear in each argument. */
static double loss_d(const ref_conv3d_shape *s, const double *x, const double *w, const double *b, const float *g,
                     double *ybuf, size_t ny)
{
    ref_conv3d_forward_d(s, x, w, b, ybuf);
    double l = 0;
    for (size_t i = 0; i < ny; i++) l += ybuf[i] * g[i];
    return l;
}

static void fd_grad(const ref_conv3d_shape *s, double *x, double *w, double *b, const float *g, size_t ny,
                    double *param, size_t n, double *out)
{
    const double h = 1e-3;
    double *ybuf = malloc(ny * sizeof *ybuf);
    for (size_t i = 0; i < n; i++) {
        double keep = param[i];
        param[i] = keep + h;
        double lp = loss_d(s, x, w, b, g, ybuf, ny);
        param[i] = keep - h;
        double lm = loss_d(s, x, w, b, g, ybuf, ny);
        param[i] = keep;
        out[i] = (lp - lm) / (2 * h);
    }
    free(ybuf);
}

static void run_finite_differences(const conv_case *c, unsigned seed)
{
    conv_data cd;
    char name[160];
    case_name(c, name, sizeof name);
    nfv_conv3d_params p = case_params(c);
    nfv_context *ctx = test_ctx();
    if (!data_init(&cd, c, seed)) {
        data_free(&cd);
        return;
    }
    const ref_conv3d_shape *s = &cd.s;
    double *x = malloc(cd.nx * sizeof *x), *w = malloc(cd.nw * sizeof *w), *b = malloc((size_t)s->co * sizeof *b);
    for (size_t i = 0; i < cd.nx; i++) x[i] = cd.x[i];
    for (size_t i = 0; i < cd.nw; i++) w[i] = cd.w[i];
    for (int i = 0; i < s->co; i++) b[i] = cd.b[i];
    double *gx = malloc(cd.nx * sizeof *gx), *gw = malloc(cd.nw * sizeof *gw), *gb = malloc((size_t)s->co * sizeof *gb);
    fd_grad(s, x, w, b, cd.dy, cd.ny, x, cd.nx, gx);
    fd_grad(s, x, w, b, cd.dy, cd.ny, w, cd.nw, gw);
    fd_grad(s, x, w, b, cd.dy, cd.ny, b, (size_t)s->co, gb);

    /* The host reference backward must agree with the differences too. */
    double *rx = malloc(cd.nx * sizeof *rx), *rw = malloc(cd.nw * sizeof *rw), *rb = malloc((size_t)s->co * sizeof *rb);
    ref_conv3d_backward_input(s, cd.dy, cd.w, rx);
    ref_conv3d_backward_weights(s, cd.x, cd.dy, rw, rb);
    float *f = malloc((cd.nx > cd.nw ? cd.nx : cd.nw) * sizeof *f);
    for (size_t i = 0; i < cd.nx; i++) f[i] = (float)rx[i];
    CHECK_CLOSE("host backward-input vs finite differences", f, gx, cd.nx, 1e-5, 1e-5);
    for (size_t i = 0; i < cd.nw; i++) f[i] = (float)rw[i];
    CHECK_CLOSE("host backward-weights vs finite differences", f, gw, cd.nw, 1e-5, 1e-5);
    free(f);

    /* Device: fast then reference kernels.  Tolerance as in run_case. */
    for (int reference = 0; reference < 2; reference++) {
        char label[320];
        snprintf(label, sizeof label, "%s, %s kernels, vs finite differences", name, reference ? "reference" : "fast");
        poison(&cd.tdx), poison(&cd.tdw), poison(&cd.tdb);
        if (reference) {
            CHECK_OK(nfv_conv3d_backward_input_reference(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
            CHECK_OK(nfv_conv3d_backward_weights_reference(ctx, &p, &cd.tx, &cd.tdy, &cd.tdw, &cd.tdb));
        } else {
            CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
            CHECK_OK(nfv_conv3d_backward_weights(ctx, &p, &cd.tx, &cd.tdy, &cd.tdw, &cd.tdb));
        }
        check_tensor("backward-input", label, &cd.tdx, gx, 1e-4, 1e-4);
        check_tensor("backward-weights", label, &cd.tdw, gw, 3e-4, 1e-4);
        check_tensor("bias gradient", label, &cd.tdb, gb, 3e-4, 1e-4);
    }
    free(x), free(w), free(b), free(gx), free(gw), free(gb), free(rx), free(rw), free(rb);
    data_free(&cd);
}

TEST(conv3d_gradients_vs_finite_differences)
{
    static const conv_case fd_cases[] = {
        {1, 3, 3, 5, 6, 7, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0},
        {3, 1, 8, 4, 5, 6, {2, 3, 1}, {2, 1, 2}, {1, 2, 0}, 1, {0, 0, 0}, 0},
        {1, 8, 1, 3, 5, 7, {3, 1, 2}, {1, 1, 1}, {0, 0, 1}, 1, {0, 0, 0}, 0},
        {2, 16, 16, 2, 2, 3, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0}, /* conv3d_fwd_cvec */
    };
    for (size_t i = 0; i < sizeof fd_cases / sizeof fd_cases[0]; i++) run_finite_differences(&fd_cases[i], 300 + (unsigned)i);
}

/* The shape the program runs: ref4 conv2, 8 -> 16 at 45x54x45, batch 1, fast
 * vs reference kernel.  Tolerances: forward sums 216 terms (as above); the
 * input gradient 432; the weight gradient sums 109,350 products of values in
 * [-1, 1) in float32 in different orders (results ~ +-100), so 2e-3 absolute
 * plus 1e-4 relative. */
TEST(conv3d_ref4_conv2_fast_vs_reference)
{
    conv_case c = {1, 8, 16, 45, 54, 45, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 0};
    conv_data cd;
    nfv_context *ctx = test_ctx();
    nfv_conv3d_params p = case_params(&c);
    if (!data_init(&cd, &c, 400)) {
        data_free(&cd);
        return;
    }
    nfv_tensor ry, rdx, rdw, rdb;
    int ys[5] = {1, 16, 45, 54, 45}, xs[5] = {1, 8, 45, 54, 45}, ws[5] = {16, 8, 3, 3, 3}, bs[1] = {16};
    if (CHECK_OK(test_tensor(&ry, 5, ys, NULL)) && CHECK_OK(test_tensor(&rdx, 5, xs, NULL)) &&
        CHECK_OK(test_tensor(&rdw, 5, ws, NULL)) && CHECK_OK(test_tensor(&rdb, 1, bs, NULL))) {
        poison(&cd.ty), poison(&cd.tdx), poison(&cd.tdw), poison(&cd.tdb);
        CHECK_OK(nfv_conv3d_forward(ctx, &p, &cd.tx, &cd.tw, &cd.tb, &cd.ty));
        CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        CHECK_OK(nfv_conv3d_backward_weights(ctx, &p, &cd.tx, &cd.tdy, &cd.tdw, &cd.tdb));
        CHECK_OK(nfv_conv3d_forward_reference(ctx, &p, &cd.tx, &cd.tw, &cd.tb, &ry));
        CHECK_OK(nfv_conv3d_backward_input_reference(ctx, &p, &cd.tdy, &cd.tw, &rdx));
        CHECK_OK(nfv_conv3d_backward_weights_reference(ctx, &p, &cd.tx, &cd.tdy, &rdw, &rdb));
        struct { const char *what; nfv_tensor *fast, *ref; double atol; } cmp[] = {
            {"ref4 conv2 forward", &cd.ty, &ry, 1e-4},
            {"ref4 conv2 backward-input", &cd.tdx, &rdx, 2e-4},
            {"ref4 conv2 backward-weights", &cd.tdw, &rdw, 2e-3},
            {"ref4 conv2 bias gradient", &cd.tdb, &rdb, 2e-3},
        };
        for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
            float *want_f = test_download(cmp[i].ref);
            if (!want_f) continue;
            double *want = malloc(cmp[i].ref->numel * sizeof *want);
            for (size_t j = 0; j < cmp[i].ref->numel; j++) want[j] = want_f[j];
            check_tensor(cmp[i].what, "fast vs reference kernel", cmp[i].fast, want, cmp[i].atol, 1e-4);
            free(want), free(want_f);
        }
    }
    nfv_tensor_free(&ry), nfv_tensor_free(&rdx), nfv_tensor_free(&rdw), nfv_tensor_free(&rdb);
    data_free(&cd);
}

TEST(conv3d_bad_shapes)
{
    nfv_context *ctx = test_ctx();
    nfv_conv3d_params p = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, 0};
    nfv_tensor x, w, y, ybad, b;
    int xs[5] = {1, 3, 7, 9, 11}, ws_bad[5] = {8, 4, 3, 3, 3}, ws[5] = {8, 3, 3, 3, 3};
    int ys[5] = {1, 8, 7, 9, 11}, ys_bad[5] = {1, 8, 7, 9, 10}, bs[1] = {7};
    if (!CHECK_OK(test_tensor(&x, 5, xs, NULL)) || !CHECK_OK(test_tensor(&w, 5, ws_bad, NULL)) ||
        !CHECK_OK(test_tensor(&y, 5, ys, NULL)) || !CHECK_OK(test_tensor(&ybad, 5, ys_bad, NULL)) ||
        !CHECK_OK(test_tensor(&b, 1, bs, NULL)))
        return;
    /* Channel mismatch: x has 3 channels, w expects 4. */
    nfv_status st = nfv_conv3d_forward(ctx, &p, &x, &w, NULL, &y);
    CHECK(st == NFV_ERR_INVALID_ARG, "channel mismatch rejected, got %s", nfv_status_name(st));
    CHECK(strstr(nfv_error_message(), "1x3x7x9x11") && strstr(nfv_error_message(), "8x4x3x3x3"),
          "message names both shapes: %s", nfv_error_message());
    st = nfv_conv3d_forward_reference(ctx, &p, &x, &w, NULL, &y);
    CHECK(st == NFV_ERR_INVALID_ARG, "reference: channel mismatch rejected, got %s", nfv_status_name(st));
    nfv_tensor_free(&w);
    if (!CHECK_OK(test_tensor(&w, 5, ws, NULL))) return;
    /* Output of the wrong shape. */
    st = nfv_conv3d_forward(ctx, &p, &x, &w, NULL, &ybad);
    CHECK(st == NFV_ERR_INVALID_ARG, "wrong output shape rejected, got %s", nfv_status_name(st));
    CHECK(strstr(nfv_error_message(), "1x8x7x9x10") && strstr(nfv_error_message(), "1x8x7x9x11"),
          "message names the given and expected shapes: %s", nfv_error_message());
    st = nfv_conv3d_backward_input(ctx, &p, &ybad, &w, &x);
    CHECK(st == NFV_ERR_INVALID_ARG, "backward-input: wrong dy shape rejected, got %s", nfv_status_name(st));
    st = nfv_conv3d_backward_weights(ctx, &p, &x, &ybad, &w, NULL);
    CHECK(st == NFV_ERR_INVALID_ARG, "backward-weights: wrong dy shape rejected, got %s", nfv_status_name(st));
    /* Bias of the wrong length. */
    st = nfv_conv3d_forward(ctx, &p, &x, &w, &b, &y);
    CHECK(st == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "bias"), "bias length 7 for 8 channels: %s",
          nfv_error_message());
    /* Bad parameters: zero stride, kernel larger than the padded input. */
    nfv_conv3d_params bad = {{3, 3, 3}, {0, 1, 1}, {1, 1, 1}, {0, 0, 0}, 0};
    st = nfv_conv3d_forward(ctx, &bad, &x, &w, NULL, &y);
    CHECK(st == NFV_ERR_INVALID_ARG, "stride 0 rejected, got %s", nfv_status_name(st));
    CHECK(nfv_conv_out_size(91, 3, 1, 1) == 91 && nfv_conv_out_size(91, 2, 2, 0) == 45 &&
              nfv_conv_out_size(7, 3, 2, 1) == 4 && nfv_conv_out_size(2, 5, 1, 1) == 0,
          "nfv_conv_out_size follows floor((in + 2p - k) / s) + 1");
    nfv_tensor_free(&x), nfv_tensor_free(&w), nfv_tensor_free(&y), nfv_tensor_free(&ybad), nfv_tensor_free(&b);
}

/* ---- dilation and groups (the general kernels) ---------------------------- */

/* Dilation 2 and 1x2x3, groups 2, depthwise (G = CI = CO and CO = 2 CI),
 * everything together with stride and padding, batch 2; a dilated x axis
 * with stride 1 (where the plain conv would take the fast kernels). */
static const conv_case GENERAL_CASES[] = {
    {1, 3, 4, 7, 8, 9, {3, 3, 3}, {1, 1, 1}, {2, 2, 2}, 1, {2, 2, 2}, 0},
    {2, 2, 3, 6, 9, 11, {3, 3, 2}, {1, 1, 1}, {1, 2, 3}, 0, {1, 2, 3}, 0},
    {1, 4, 6, 5, 6, 7, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 2},
    {2, 4, 4, 5, 6, 7, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 4},
    {1, 3, 6, 5, 7, 6, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 0, {0, 0, 0}, 3},
    {2, 4, 6, 9, 8, 10, {3, 2, 3}, {2, 1, 2}, {2, 1, 1}, 1, {2, 3, 1}, 2},
    {1, 2, 2, 5, 5, 12, {1, 1, 3}, {1, 1, 1}, {0, 0, 0}, 1, {1, 1, 4}, 0},
    {2, 6, 4, 7, 6, 9, {2, 3, 3}, {2, 2, 1}, {0, 1, 2}, 1, {3, 1, 2}, 2},
};

/* Tolerances as run_case: at most CI/G*KVOL (<= 81) or CO/G*KVOL terms per
 * forward / input-gradient element, N*DO*HO*WO (<= 320) per weight. */
TEST(conv3d_general_vs_host_reference)
{
    for (size_t i = 0; i < sizeof GENERAL_CASES / sizeof GENERAL_CASES[0]; i++) {
        run_case(&GENERAL_CASES[i], 0, 500 + (unsigned)i);
        run_case(&GENERAL_CASES[i], 1, 520 + (unsigned)i);
    }
}

/* Small shapes: one host forward per element of x, w and b, twice. */
TEST(conv3d_general_gradients_vs_finite_differences)
{
    static const conv_case fd_cases[] = {
        {1, 2, 2, 5, 5, 6, {3, 3, 3}, {1, 1, 1}, {2, 2, 2}, 1, {2, 2, 2}, 0},
        {2, 2, 3, 4, 6, 7, {2, 3, 2}, {1, 1, 1}, {1, 2, 3}, 0, {1, 2, 3}, 0},
        {1, 4, 4, 4, 5, 5, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 4},
        {1, 2, 4, 4, 4, 5, {2, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {0, 0, 0}, 2},
        {2, 4, 2, 6, 5, 7, {3, 2, 3}, {2, 1, 2}, {2, 1, 1}, 1, {2, 2, 1}, 2},
    };
    for (size_t i = 0; i < sizeof fd_cases / sizeof fd_cases[0]; i++)
        run_finite_differences(&fd_cases[i], 600 + (unsigned)i);
}

/* Zero-initialized params and explicit dilation 1 / groups 1 are the plain
 * conv: the fast kernels, bit for bit the same results at ref4's conv4 shape. */
TEST(conv3d_general_plain_params_take_fast_path)
{
    nfv_conv3d_params zero = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, 0};
    nfv_conv3d_params ones = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1};
    nfv_conv3d_params dil = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 2, 1}, 0};
    nfv_conv3d_params grp = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, 2};
    CHECK(!nfv_conv3d_params_general(&zero) && !nfv_conv3d_params_general(&ones), "plain params take the fast path");
    CHECK(nfv_conv3d_params_general(&dil) && nfv_conv3d_params_general(&grp), "dilation or groups take the general path");
    conv_case c = {1, 32, 64, 11, 13, 11, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 1, {1, 1, 1}, 1};
    conv_data cd;
    nfv_context *ctx = test_ctx();
    nfv_conv3d_params p = case_params(&c);
    if (!data_init(&cd, &c, 700)) {
        data_free(&cd);
        return;
    }
    nfv_tensor y0;
    int ys[5] = {1, 64, 11, 13, 11};
    if (CHECK_OK(test_tensor(&y0, 5, ys, NULL))) {
        CHECK_OK(nfv_conv3d_forward(ctx, &zero, &cd.tx, &cd.tw, &cd.tb, &y0));
        CHECK_OK(nfv_conv3d_forward(ctx, &p, &cd.tx, &cd.tw, &cd.tb, &cd.ty));
        float *a = test_download(&y0), *b = test_download(&cd.ty);
        if (a && b) CHECK(!memcmp(a, b, cd.ny * sizeof *a), "explicit dilation 1 / groups 1 gives the zero-params result bit for bit");
        free(a), free(b);
    }
    nfv_tensor_free(&y0);
    data_free(&cd);
}

static int message_has(const char *a, const char *b)
{
    const char *m = nfv_error_message();
    return strstr(m, a) && strstr(m, b);
}

TEST(conv3d_general_bad_shapes)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor x3, x4, w_ok, w_full, w5, y;
    int x3s[5] = {1, 3, 7, 9, 11}, x4s[5] = {1, 4, 7, 9, 11}, wok[5] = {6, 2, 3, 3, 3}, wfull[5] = {6, 4, 3, 3, 3};
    int w5s[5] = {5, 2, 3, 3, 3}, ys[5] = {1, 6, 7, 9, 11};
    if (!CHECK_OK(test_tensor(&x3, 5, x3s, NULL)) || !CHECK_OK(test_tensor(&x4, 5, x4s, NULL)) ||
        !CHECK_OK(test_tensor(&w_ok, 5, wok, NULL)) || !CHECK_OK(test_tensor(&w_full, 5, wfull, NULL)) ||
        !CHECK_OK(test_tensor(&w5, 5, w5s, NULL)) || !CHECK_OK(test_tensor(&y, 5, ys, NULL)))
        return;
    nfv_conv3d_params p = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, 2};
    CHECK_OK(nfv_conv3d_forward(ctx, &p, &x4, &w_ok, NULL, &y));
    nfv_status st = nfv_conv3d_forward(ctx, &p, &x3, &w_ok, NULL, &y);
    CHECK(st == NFV_ERR_INVALID_ARG && message_has("1x3x7x9x11", "6x2x3x3x3") && message_has("groups", "forward"),
          "CI = 3 not a multiple of G = 2: %s", nfv_error_message());
    st = nfv_conv3d_forward(ctx, &p, &x4, &w_full, NULL, &y);
    CHECK(st == NFV_ERR_INVALID_ARG && message_has("1x4x7x9x11", "6x4x3x3x3") && message_has("Ci/G", "forward"),
          "weight (CO, CI) instead of (CO, CI/G): %s", nfv_error_message());
    st = nfv_conv3d_backward_input(ctx, &p, &y, &w5, &x4);
    CHECK(st == NFV_ERR_INVALID_ARG && message_has("1x4x7x9x11", "5x2x3x3x3") && message_has("groups", "backward-input"),
          "CO = 5 not a multiple of G = 2: %s", nfv_error_message());
    st = nfv_conv3d_backward_weights(ctx, &p, &x3, &y, &w_ok, NULL);
    CHECK(st == NFV_ERR_INVALID_ARG && message_has("1x3x7x9x11", "6x2x3x3x3") && message_has("groups", "backward-weights"),
          "backward-weights: CI = 3 with G = 2: %s", nfv_error_message());
    /* Dilation 4 makes a 3-tap kernel span 9 input planes, more than D = 7 (no padding). */
    nfv_conv3d_params wide = {{3, 3, 3}, {1, 1, 1}, {0, 0, 0}, {4, 1, 1}, 2};
    st = nfv_conv3d_forward(ctx, &wide, &x4, &w_ok, NULL, &y);
    CHECK(st == NFV_ERR_INVALID_ARG && message_has("1x4x7x9x11", "dilation"), "dilated kernel larger than the input: %s",
          nfv_error_message());
    /* Dilation 2, padding 1: the output shrinks to 5x7x9, so y (.., 7, 9, 11) is wrong. */
    nfv_conv3d_params d2 = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {2, 2, 2}, 2};
    st = nfv_conv3d_forward(ctx, &d2, &x4, &w_ok, NULL, &y);
    CHECK(st == NFV_ERR_INVALID_ARG && message_has("1x6x7x9x11", "1x6x5x7x9"), "dilated output shape: %s",
          nfv_error_message());
    nfv_conv3d_params neg = {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {-1, 1, 1}, 0};
    CHECK(nfv_conv3d_forward(ctx, &neg, &x4, &w_full, NULL, &y) == NFV_ERR_INVALID_ARG, "negative dilation rejected");
    neg.dilation[0] = 0, neg.groups = -2;
    CHECK(nfv_conv3d_forward(ctx, &neg, &x4, &w_full, NULL, &y) == NFV_ERR_INVALID_ARG, "negative groups rejected");
    CHECK(nfv_conv_out_size_dilated(7, 3, 1, 0, 2) == 3 && nfv_conv_out_size_dilated(9, 3, 2, 2, 2) == 5 &&
              nfv_conv_out_size_dilated(4, 3, 1, 0, 2) == 0 && nfv_conv_out_size_dilated(11, 2, 1, 3, 3) == 14 &&
              nfv_conv_out_size_dilated(91, 3, 1, 1, 1) == nfv_conv_out_size(91, 3, 1, 1),
          "nfv_conv_out_size_dilated follows floor((in + 2p - dil*(k-1) - 1) / s) + 1");
    nfv_tensor_free(&x3), nfv_tensor_free(&x4), nfv_tensor_free(&w_ok), nfv_tensor_free(&w_full);
    nfv_tensor_free(&w5), nfv_tensor_free(&y);
}

/* nfv_context_freeze_weights: while frozen, an input gradient reuses the
 * flipped weights (or flipped weight phases), and a strided forward its
 * weight phases, derived at the first call for that weight buffer; the caller promised the weights do not change, so new
 * weights uploaded meanwhile are not seen (what the contract says) until the
 * outermost freeze ends.  Stride 1 and stride 2 (the phase path). */
TEST(conv3d_frozen_weights_kept_until_unfrozen)
{
    /* The third: few positions and 16 channels, so (under the CPU
     * profiles) its forward reads a kept channel-last copy (conv3d_fwd_cvec). */
    static const conv_case cases[3] = {
        {1, 3, 4, 6, 7, 9, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 0, {0, 0, 0}, 0},
        {1, 3, 4, 8, 7, 9, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, 0, {0, 0, 0}, 0},
        {1, 16, 16, 3, 2, 3, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 0, {0, 0, 0}, 0},
    };
    nfv_context *ctx = test_ctx();
    for (int ci = 0; ci < 3; ci++) {
        conv_data cd;
        char name[160];
        case_name(&cases[ci], name, sizeof name);
        nfv_conv3d_params p = case_params(&cases[ci]);
        if (!data_init(&cd, &cases[ci], 900 + (unsigned)ci)) {
            data_free(&cd);
            continue;
        }
        double *first = malloc(cd.nx * sizeof *first), *second = malloc(cd.nx * sizeof *second);
        float *w2 = test_random(cd.nw, 950 + (unsigned)ci, -1, 1);
        ref_conv3d_backward_input(&cd.s, cd.dy, cd.w, first);
        ref_conv3d_backward_input(&cd.s, cd.dy, w2, second);
        nfv_context_freeze_weights(ctx, 1);
        nfv_context_freeze_weights(ctx, 1); /* nested: the inner end keeps them */
        CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        check_tensor("frozen, first call", name, &cd.tdx, first, 1e-4, 1e-4);
        double *y_first = malloc(cd.ny * sizeof *y_first), *y_second = malloc(cd.ny * sizeof *y_second);
        ref_conv3d_forward(&cd.s, cd.x, cd.w, NULL, y_first);
        ref_conv3d_forward(&cd.s, cd.x, w2, NULL, y_second);
        CHECK_OK(nfv_conv3d_forward(ctx, &p, &cd.tx, &cd.tw, NULL, &cd.ty));
        CHECK_OK(nfv_tensor_upload(ctx, &cd.tw, w2));
        CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        check_tensor("frozen, weights changed against the promise: the kept copy", name, &cd.tdx, first, 1e-4, 1e-4);
        /* A strided forward keeps its weight phases too, and one with the
         * channels in the lanes its channel-last copy; otherwise stride 1
         * reads w itself. */
        const int dims[3] = {cases[ci].d, cases[ci].h, cases[ci].w};
        const nfv_kernel_config *kc = nfv_context_kernel_config(ctx);
        const int cvec = nfv_conv3d_channel_last(kc, cases[ci].co, dims, cases[ci].p, dims, 1);
        CHECK(ci < 2 || cvec || !kc->conv_cvec, "%s takes the channel-last kernel under %s", name, kc->name);
        CHECK_OK(nfv_conv3d_forward(ctx, &p, &cd.tx, &cd.tw, NULL, &cd.ty));
        check_tensor(ci == 1  ? "frozen forward, strided: the kept weight phases"
                     : cvec   ? "frozen forward, channels in the lanes: the kept channel-last copy"
                              : "frozen forward, stride 1: w itself",
                     name, &cd.ty, ci == 1 || cvec ? y_first : y_second, 1e-4, 1e-4);
        free(y_first), free(y_second);
        nfv_context_freeze_weights(ctx, 0);
        CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        check_tensor("inner freeze ended, outer still on: the kept copy", name, &cd.tdx, first, 1e-4, 1e-4);
        nfv_context_freeze_weights(ctx, 0);
        CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        check_tensor("unfrozen: the new weights", name, &cd.tdx, second, 1e-4, 1e-4);
        free(first), free(second), free(w2);
        data_free(&cd);
    }
    nfv_context_freeze_weights(ctx, 0); /* an unmatched end is ignored */
    conv_data cd;
    if (data_init(&cd, &cases[0], 990)) {
        double *want = malloc(cd.nx * sizeof *want);
        ref_conv3d_backward_input(&cd.s, cd.dy, cd.w, want);
        nfv_conv3d_params p = case_params(&cases[0]);
        CHECK_OK(nfv_conv3d_backward_input(ctx, &p, &cd.tdy, &cd.tw, &cd.tdx));
        check_tensor("after an unmatched end: not frozen", "", &cd.tdx, want, 1e-4, 1e-4);
        free(want);
    }
    data_free(&cd);
}
