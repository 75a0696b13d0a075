/* Max / average / global average and max pooling against tests/ref_layers.c
 * and central finite differences, floor and ceil mode, average divisors with
 * and without the padding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_layers.h"
#include "test.h"

/* k, s, p apply to all axes unless kdh > 0: then D and H use kernel kdh,
 * stride sdh, padding pdh (W keeps k, s, p). */
typedef struct pool_case {
    int n, c, d, h, w, k, s, p, kdh, sdh, pdh;
} pool_case;

/* Odd/prime sizes, 1/3/8 channels, batch 1 and 3, kernels 2 and 3, strides
 * 1/2/3, padding 0/1. */
static const pool_case CASES[] = {
    {1, 1, 7, 9, 11, 2, 2, 0, 0, 0, 0}, {3, 3, 7, 9, 11, 3, 2, 1, 0, 0, 0}, {1, 8, 7, 9, 11, 3, 1, 1, 0, 0, 0}, {3, 1, 7, 9, 11, 2, 1, 0, 0, 0, 0},
    {1, 3, 7, 9, 11, 3, 3, 0, 0, 0, 0}, {3, 8, 5, 6, 7, 2, 2, 1, 0, 0, 0}, {1, 3, 13, 5, 17, 3, 3, 1, 0, 0, 0}, {1, 1, 2, 2, 2, 2, 2, 0, 0, 0, 0},
    /* W kernel 2 stride 2 without padding takes the vectorized kernels: rows
     * long enough for full vectors plus a scalar tail, odd W. */
    {3, 3, 7, 9, 37, 2, 2, 0, 0, 0, 0}, {1, 8, 5, 11, 33, 2, 2, 0, 0, 0, 0}, {3, 1, 7, 5, 35, 2, 2, 0, 3, 1, 1},
    {1, 3, 9, 7, 31, 2, 2, 0, 3, 2, 1},
    /* W kernel 3 stride 2 padding 1 (ResNet stems) takes the vectorized
     * forward: odd W (the last window's right column is padding), even W,
     * rows of full vectors plus a tail, other D/H geometries. */
    {3, 3, 7, 9, 37, 3, 2, 1, 0, 0, 0}, {1, 8, 5, 11, 34, 3, 2, 1, 0, 0, 0}, {3, 1, 7, 5, 35, 3, 2, 1, 2, 1, 0},
    {1, 3, 9, 7, 17, 3, 2, 1, 3, 2, 1},
};

static nfv_pool3d_params params_of(const pool_case *t)
{
    nfv_pool3d_params p = {.ceil_mode = 0};
    for (int a = 0; a < 3; a++) {
        int dh = a < 2 && t->kdh > 0;
        p.kernel[a] = dh ? t->kdh : t->k;
        p.stride[a] = dh ? t->sdh : t->s;
        p.padding[a] = dh ? t->pdh : t->p;
    }
    return p;
}

/* x (N, C, D, H, W) and the pooled shape for p (its ceil_mode). */
static void shapes_of(const pool_case *t, const nfv_pool3d_params *p, int xs[5], int ys[5])
{
    const int in[3] = {t->d, t->h, t->w};
    xs[0] = ys[0] = t->n, xs[1] = ys[1] = t->c;
    for (int a = 0; a < 3; a++) {
        xs[2 + a] = in[a];
        ys[2 + a] = ref_pool_out_mode(in[a], p->kernel[a], p->stride[a], p->padding[a], p->ceil_mode);
    }
}

static void case_label(char *buf, size_t cap, const char *kind, size_t ci, const pool_case *t, const nfv_pool3d_params *p)
{
    snprintf(buf, cap, "%s case %zu (%dx%dx%dx%dx%d k%d s%d p%d dh %d/%d/%d%s%s)", kind, ci, t->n, t->c, t->d, t->h, t->w,
             t->k, t->s, t->p, t->kdh, t->sdh, t->pdh, p->ceil_mode ? " ceil" : "", p->exclude_pad ? " exclude_pad" : "");
}

/* Values distinct by at least ~1e-3 (a shuffled ramp plus small noise), so
 * max pooling has no ties and finite differences with h = 1e-5 never cross one. */
static float *distinct_values(size_t n, unsigned seed)
{
    float *v = malloc(n * sizeof *v);
    unsigned long long st = seed * 7919ULL + 3;
    for (size_t i = 0; i < n; i++) v[i] = (float)((double)i / (double)n * 4.0 - 2.0);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(test_uniform(&st) * (double)(i + 1));
        float t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    return v;
}

/* ties: values from {0, 1, 2} only, so most windows hold ties, which the
 * first voxel in scan order (d, h, w) wins, as in the reference. */
static void max_forward_case(const pool_case *t, const nfv_pool3d_params *p, size_t ci, unsigned seed, int ties)
{
    nfv_context *ctx = test_ctx();
    int xs[5], ys[5];
    shapes_of(t, p, xs, ys);
    size_t nx = nfv_shape_numel(5, xs), ny = nfv_shape_numel(5, ys);
    float *hx = distinct_values(nx, seed);
    for (size_t i = 0; ties && i < nx; i++) hx[i] = floorf(hx[i] * 0.75f + 1.5f); /* [-2, 2) -> {0, 1, 2} */
    double *dx = rl_to_double(hx, nx), *want = malloc(ny * sizeof *want);
    int *want_idx = malloc(ny * sizeof *want_idx);
    ref_maxpool3d(p, dx, t->n, t->c, t->d, t->h, t->w, want, want_idx);
    nfv_tensor x, y, am, y2;
    CHECK_OK(test_tensor(&x, 5, xs, hx));
    CHECK_OK(test_tensor(&y, 5, ys, NULL));
    CHECK_OK(test_tensor(&am, 5, ys, NULL));
    CHECK_OK(test_tensor(&y2, 5, ys, NULL));
    CHECK_OK(nfv_maxpool3d_forward(ctx, p, &x, &y, &am));
    CHECK_OK(nfv_maxpool3d_forward(ctx, p, &x, &y2, NULL));
    float *gy = test_download(&y), *gy2 = test_download(&y2), *gam = test_download(&am);
    char what[160];
    case_label(what, sizeof what, ties ? "maxpool (ties)" : "maxpool", ci, t, p);
    /* A max returns one of its inputs: exact. */
    if (gy && gy2) {
        CHECK_CLOSE(what, gy, want, ny, 0.0, 0.0);
        CHECK_CLOSE(what, gy2, want, ny, 0.0, 0.0);
    }
    if (gam) {
        size_t bad = 0;
        for (size_t i = 0; i < ny; i++) {
            int got;
            memcpy(&got, &gam[i], sizeof got);
            bad += got != want_idx[i];
        }
        CHECK(bad == 0, "%s: %zu argmax indices differ", what, bad);
    }
    free(gy), free(gy2), free(gam), free(hx), free(dx), free(want), free(want_idx);
    nfv_tensor_free(&x), nfv_tensor_free(&y), nfv_tensor_free(&am), nfv_tensor_free(&y2);
}

static void avg_forward_case(const pool_case *t, const nfv_pool3d_params *p, size_t ci, unsigned seed)
{
    nfv_context *ctx = test_ctx();
    int xs[5], ys[5];
    shapes_of(t, p, xs, ys);
    size_t nx = nfv_shape_numel(5, xs), ny = nfv_shape_numel(5, ys);
    float *hx = test_random(nx, seed, -1.0f, 1.0f);
    double *dx = rl_to_double(hx, nx), *want = malloc(ny * sizeof *want);
    ref_avgpool3d(p, dx, t->n, t->c, t->d, t->h, t->w, want);
    nfv_tensor x, y;
    CHECK_OK(test_tensor(&x, 5, xs, hx));
    CHECK_OK(test_tensor(&y, 5, ys, NULL));
    CHECK_OK(nfv_avgpool3d_forward(ctx, p, &x, &y));
    float *gy = test_download(&y);
    char what[160];
    case_label(what, sizeof what, "avgpool", ci, t, p);
    /* At most 27 float additions of values in [-1, 1]: 1e-6 absolute. */
    if (gy) CHECK_CLOSE(what, gy, want, ny, 1e-6, 1e-6);
    free(gy), free(hx), free(dx), free(want);
    nfv_tensor_free(&x), nfv_tensor_free(&y);
}

TEST(pool_max_forward_matches_reference)
{
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++) {
        nfv_pool3d_params p = params_of(&CASES[ci]);
        max_forward_case(&CASES[ci], &p, ci, (unsigned)ci + 1, 0);
        max_forward_case(&CASES[ci], &p, ci, (unsigned)ci + 31, 1);
    }
}

TEST(pool_avg_forward_matches_reference)
{
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++) {
        nfv_pool3d_params p = params_of(&CASES[ci]);
        avg_forward_case(&CASES[ci], &p, ci, 100 + (unsigned)ci);
    }
}

/* Loss = sum(w * pool(x)) in double, for finite differences. */
typedef struct pool_loss {
    const pool_case *t;
    nfv_pool3d_params p;
    int is_max;
    const double *w;
    double *y;
    size_t ny;
} pool_loss;

static double pool_loss_fn(const double *x, void *user)
{
    pool_loss *l = user;
    const pool_case *t = l->t;
    if (l->is_max) ref_maxpool3d(&l->p, x, t->n, t->c, t->d, t->h, t->w, l->y, NULL);
    else ref_avgpool3d(&l->p, x, t->n, t->c, t->d, t->h, t->w, l->y);
    double s = 0.0;
    for (size_t i = 0; i < l->ny; i++) s += l->w[i] * l->y[i];
    return s;
}

static void backward_case(int is_max, const pool_case *t, const nfv_pool3d_params *p, size_t ci, unsigned seed)
{
    nfv_context *ctx = test_ctx();
    pool_loss l = {t, *p, is_max, NULL, NULL, 0};
    int xs[5], ys[5];
    shapes_of(t, p, xs, ys);
    size_t nx = nfv_shape_numel(5, xs), ny = nfv_shape_numel(5, ys);
    float *hx = distinct_values(nx, seed);
    float *hw = test_random(ny, seed + 10, -1.0f, 1.0f);
    double *x = rl_to_double(hx, nx), *w = rl_to_double(hw, ny), *g = malloc(nx * sizeof *g);
    l.w = w;
    l.y = malloc(ny * sizeof *l.y);
    l.ny = ny;
    ref_fd_gradient(pool_loss_fn, &l, x, nx, 1e-5, g);

    nfv_tensor tx, ty, tam, tdy, tdx;
    CHECK_OK(test_tensor(&tx, 5, xs, hx));
    CHECK_OK(test_tensor(&ty, 5, ys, NULL));
    CHECK_OK(test_tensor(&tam, 5, ys, NULL));
    CHECK_OK(test_tensor(&tdy, 5, ys, hw));
    CHECK_OK(test_tensor(&tdx, 5, xs, NULL));
    CHECK_OK(nfv_tensor_fill(ctx, &tdx, 123.0f)); /* must be overwritten, not accumulated into */
    if (is_max) {
        CHECK_OK(nfv_maxpool3d_forward(ctx, p, &tx, &ty, &tam));
        CHECK_OK(nfv_maxpool3d_backward(ctx, p, &tdy, &tam, &tdx));
    } else {
        CHECK_OK(nfv_avgpool3d_backward(ctx, p, &tdy, &tdx));
    }
    float *got = test_download(&tdx);
    char what[192];
    case_label(what, sizeof what, is_max ? "maxpool backward" : "avgpool backward", ci, t, p);
    strncat(what, " vs FD", sizeof what - strlen(what) - 1);
    /* Pooling is linear where no tie is crossed, so FD is exact up to
     * rounding of the double loss (~1e-16 / 1e-5) plus float sums of <= 27 terms. */
    if (got) CHECK_CLOSE(what, got, g, nx, 1e-5, 1e-5);
    free(got), free(hx), free(hw), free(x), free(w), free(g), free(l.y);
    nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tam), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
}

static void check_pool_backward(int is_max)
{
    /* Small shapes: finite differences cost one forward per input element. */
    static const pool_case small[] = {{1, 1, 5, 6, 7, 2, 2, 0, 0, 0, 0},  {3, 3, 5, 4, 7, 3, 2, 1, 0, 0, 0},
                                      {1, 8, 3, 5, 4, 3, 1, 1, 0, 0, 0},  {3, 1, 7, 5, 3, 2, 1, 0, 0, 0, 0},
                                      {1, 3, 7, 5, 7, 3, 3, 1, 0, 0, 0},  {1, 3, 5, 4, 35, 2, 2, 0, 0, 0, 0},
                                      {3, 1, 3, 5, 33, 2, 2, 0, 3, 2, 1}};
    for (size_t ci = 0; ci < sizeof small / sizeof small[0]; ci++) {
        nfv_pool3d_params p = params_of(&small[ci]);
        backward_case(is_max, &small[ci], &p, ci, 50 + (unsigned)ci);
    }
}

TEST(pool_max_backward_finite_differences) { check_pool_backward(1); }
TEST(pool_avg_backward_finite_differences) { check_pool_backward(0); }

/* ---- ceil_mode and exclude_pad -------------------------------------------- */

typedef struct mode_case {
    pool_case t;
    int ceil_mode, exclude_pad;
} mode_case;

/* Sizes where ceil_mode adds a last window on every axis (7, 9, 11 by 2;
 * 8, 6, 10 by k3 s2 p1 (8 and 6 also on D and H beside a k2 s2 W), whose last window hangs past the right padding, so
 * the include-pad divisor shrinks), one where PyTorch's rule drops it again
 * (5 by k2 s2 p1: ceil(5/2)+1 = 4, but window 3 would start at 5 = in + p),
 * k2 s2 along W with ceil on D and H only (the vectorized max kernels) and
 * an odd W with ceil (the scalar ones); exclude_pad with padding; both. */
static const mode_case MODE_CASES[] = {
    {{1, 2, 7, 9, 11, 2, 2, 0, 0, 0, 0}, 1, 0},  {{3, 1, 8, 6, 10, 3, 2, 1, 0, 0, 0}, 1, 0},
    {{1, 2, 5, 7, 6, 2, 2, 1, 0, 0, 0}, 1, 0},   {{1, 3, 8, 6, 36, 2, 2, 0, 3, 2, 1}, 1, 0},
    {{1, 2, 5, 5, 33, 2, 2, 0, 0, 0, 0}, 1, 0},  {{3, 2, 7, 9, 11, 3, 2, 1, 0, 0, 0}, 0, 1},
    {{1, 3, 6, 5, 7, 3, 1, 1, 0, 0, 0}, 0, 1},   {{1, 3, 8, 6, 10, 3, 2, 1, 0, 0, 0}, 1, 1},
    {{2, 2, 7, 8, 9, 2, 3, 1, 3, 2, 1}, 1, 1},
};
#define MODE_COUNT (sizeof MODE_CASES / sizeof MODE_CASES[0])

static nfv_pool3d_params mode_params(const mode_case *m)
{
    nfv_pool3d_params p = params_of(&m->t);
    p.ceil_mode = m->ceil_mode, p.exclude_pad = m->exclude_pad;
    return p;
}

TEST(pool_out_size_ceil_rule)
{
    CHECK(nfv_pool_out_size(7, 2, 2, 0, 0) == 3 && nfv_pool_out_size(7, 2, 2, 0, 1) == 4, "7 by k2 s2: floor 3, ceil 4");
    CHECK(nfv_pool_out_size(8, 3, 2, 1, 0) == 4 && nfv_pool_out_size(8, 3, 2, 1, 1) == 5, "8 by k3 s2 p1: 4, ceil 5");
    CHECK(nfv_pool_out_size(5, 2, 2, 1, 1) == 3 && nfv_pool_out_size(5, 2, 2, 1, 0) == 3,
          "5 by k2 s2 p1: ceil 4 dropped to 3 (the last window would start in the right padding)");
    CHECK(nfv_pool_out_size(6, 2, 2, 0, 1) == 3 && nfv_pool_out_size(1, 2, 2, 0, 1) == 0,
          "exact fit unchanged by ceil; a window larger than the input does not fit");
    for (int in = 2; in < 30; in++)
        for (int k = 1; k <= 4; k++)
            for (int st = 1; st <= 3; st++)
                for (int pad = 0; 2 * pad <= k; pad++)
                    for (int c = 0; c < 2; c++)
                        if (nfv_pool_out_size(in, k, st, pad, c) != ref_pool_out_mode(in, k, st, pad, c))
                            CHECK(0, "nfv_pool_out_size(%d, %d, %d, %d, %d) = %d, reference %d", in, k, st, pad, c,
                                  nfv_pool_out_size(in, k, st, pad, c), ref_pool_out_mode(in, k, st, pad, c));
}

TEST(pool_ceil_exclude_pad_forward_matches_reference)
{
    for (size_t ci = 0; ci < MODE_COUNT; ci++) {
        nfv_pool3d_params p = mode_params(&MODE_CASES[ci]);
        max_forward_case(&MODE_CASES[ci].t, &p, ci, 700 + (unsigned)ci, 0);
        avg_forward_case(&MODE_CASES[ci].t, &p, ci, 720 + (unsigned)ci);
    }
}

TEST(pool_ceil_exclude_pad_backward_finite_differences)
{
    for (size_t ci = 0; ci < MODE_COUNT; ci++) {
        nfv_pool3d_params p = mode_params(&MODE_CASES[ci]);
        backward_case(1, &MODE_CASES[ci].t, &p, ci, 740 + (unsigned)ci);
        backward_case(0, &MODE_CASES[ci].t, &p, ci, 760 + (unsigned)ci);
    }
}

/* Hand-computed divisors, independent of the reference: x of ones, 1-D along
 * W = 8, k3 s2 p1 ceil (windows start at -1, 1, 3, 5, 7).  Include-pad:
 * the first four count 3 (padding included), the last clips at W + p = 9 to
 * 2 and holds one real voxel: 2/3, 1, 1, 1, 1/2.  exclude_pad: 2/2, 1, 1, 1, 1/1. */
TEST(pool_avg_divisor_by_hand)
{
    nfv_context *ctx = test_ctx();
    int xs[5] = {1, 1, 1, 1, 8}, ys[5] = {1, 1, 1, 1, 5};
    float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    const double inc[5] = {2.0 / 3, 1, 1, 1, 0.5}, exc[5] = {1, 1, 1, 1, 1};
    nfv_tensor x, y;
    if (!CHECK_OK(test_tensor(&x, 5, xs, ones)) || !CHECK_OK(test_tensor(&y, 5, ys, NULL))) return;
    for (int e = 0; e < 2; e++) {
        nfv_pool3d_params p = {{1, 1, 3}, {1, 1, 2}, {0, 0, 1}, 1, e};
        CHECK_OK(nfv_avgpool3d_forward(ctx, &p, &x, &y));
        float *got = test_download(&y);
        if (got) CHECK_CLOSE(e ? "exclude_pad divisors" : "include-pad ceil divisors", got, e ? exc : inc, 5, 1e-7, 1e-6);
        free(got);
    }
    nfv_tensor_free(&x), nfv_tensor_free(&y);
}

TEST(pool_global_avg_forward_backward)
{
    nfv_context *ctx = test_ctx();
    static const int shapes[][5] = {{1, 1, 7, 9, 11}, {3, 3, 7, 9, 11}, {3, 8, 5, 6, 7}, {1, 3, 31, 29, 23}, {3, 1, 1, 1, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int *xs = shapes[si];
        int ys[2] = {xs[0], xs[1]};
        size_t nx = nfv_shape_numel(5, xs), ny = nfv_shape_numel(2, ys), s = nx / ny;
        float *hx = test_random(nx, 200 + (unsigned)si, -1.0f, 3.0f);
        float *hdy = test_random(ny, 300 + (unsigned)si, -1.0f, 1.0f);
        double *x = rl_to_double(hx, nx), *want = malloc(ny * sizeof *want), *wdx = malloc(nx * sizeof *wdx);
        ref_global_avgpool(x, (int)ny, s, want);
        /* The mean is linear: its gradient is dy / S everywhere. */
        for (size_t i = 0; i < nx; i++) wdx[i] = hdy[i / s] / (double)s;
        nfv_tensor tx, ty, tdy, tdx;
        CHECK_OK(test_tensor(&tx, 5, xs, hx));
        CHECK_OK(test_tensor(&ty, 2, ys, NULL));
        CHECK_OK(test_tensor(&tdy, 2, ys, hdy));
        CHECK_OK(test_tensor(&tdx, 5, xs, NULL));
        CHECK_OK(nfv_global_avgpool_forward(ctx, &tx, &ty));
        CHECK_OK(nfv_global_avgpool_backward(ctx, &tdy, &tdx));
        float *gy = test_download(&ty), *gdx = test_download(&tdx);
        /* Tree sums of up to 21k floats of magnitude <= 3: 1e-5 relative. */
        if (gy) CHECK_CLOSE("global avgpool forward", gy, want, ny, 1e-6, 1e-5);
        if (gdx) CHECK_CLOSE("global avgpool backward", gdx, wdx, nx, 1e-9, 1e-6);
        free(hx), free(hdy), free(x), free(want), free(wdx), free(gy), free(gdx);
        nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
    }
}

TEST(pool_bad_shapes_rejected)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor x, y, wrong, small, y2;
    int xs[5] = {1, 3, 7, 9, 11}, ys[5] = {1, 3, 3, 4, 5}, ws[5] = {1, 3, 3, 4, 6}, ss[5] = {1, 3, 1, 9, 11};
    int y2s[2] = {1, 2};
    CHECK_OK(test_tensor(&x, 5, xs, NULL));
    CHECK_OK(test_tensor(&y, 5, ys, NULL));
    CHECK_OK(test_tensor(&wrong, 5, ws, NULL));
    CHECK_OK(test_tensor(&small, 5, ss, NULL));
    CHECK_OK(test_tensor(&y2, 2, y2s, NULL));
    nfv_pool3d_params p = {{2, 2, 2}, {2, 2, 2}, {0, 0, 0}, 0, 0};
    CHECK(nfv_maxpool3d_forward(ctx, &p, &x, &y, NULL) == NFV_OK, "7x9x11 / 2 -> 3x4x5 accepted");
    nfv_status s = nfv_maxpool3d_forward(ctx, &p, &x, &wrong, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "wrong output shape rejected: %s", nfv_status_name(s));
    CHECK(strstr(nfv_error_message(), "1x3x3x4x6") != NULL, "message names the shape: %s", nfv_error_message());
    CHECK(nfv_avgpool3d_backward(ctx, &p, &wrong, &x) == NFV_ERR_INVALID_ARG, "avgpool backward wrong dy rejected");
    CHECK(nfv_maxpool3d_backward(ctx, &p, &y, &wrong, &x) == NFV_ERR_INVALID_ARG, "argmax of wrong size rejected");
    nfv_pool3d_params bad_pad = {{2, 2, 2}, {2, 2, 2}, {2, 0, 0}, 0, 0};
    CHECK(nfv_maxpool3d_forward(ctx, &bad_pad, &x, &y, NULL) == NFV_ERR_INVALID_ARG, "padding > kernel/2 rejected");
    nfv_pool3d_params bad_stride = {{2, 2, 2}, {0, 2, 2}, {0, 0, 0}, 0, 0};
    CHECK(nfv_avgpool3d_forward(ctx, &bad_stride, &x, &y) == NFV_ERR_INVALID_ARG, "stride 0 rejected");
    nfv_pool3d_params big = {{3, 3, 3}, {1, 1, 1}, {0, 0, 0}, 0, 0};
    CHECK(nfv_maxpool3d_forward(ctx, &big, &small, &y, NULL) == NFV_ERR_INVALID_ARG, "input smaller than kernel rejected");
    CHECK(nfv_global_avgpool_forward(ctx, &x, &y2) == NFV_ERR_INVALID_ARG, "global pool channel mismatch rejected");
    CHECK(nfv_global_avgpool_forward(ctx, &x, &y) == NFV_ERR_INVALID_ARG, "global pool 5-D output rejected");
    nfv_tensor_free(&x), nfv_tensor_free(&y), nfv_tensor_free(&wrong), nfv_tensor_free(&small), nfv_tensor_free(&y2);
}

/* Global max pooling on 2x3x5x4x3 (planes of 60): plane 1 has its maximum
 * twice (indices 7 and 50, argmax must be 7), plane 4 at 3 and 59 (first and
 * last work-items of the reduction), plane 5 is constant (argmax 0).  y both
 * (N, C) and (N, C, 1, 1, 1).  Backward: dx = dy at the argmax, else 0, and
 * against finite differences where there are no ties. */
TEST(pool_global_max_forward_backward)
{
    nfv_context *ctx = test_ctx();
    int xs[5] = {2, 3, 5, 4, 3}, ys[2] = {2, 3}, y5[5] = {2, 3, 1, 1, 1};
    const size_t nx = 360, ny = 6, s = 60;
    float *hx = distinct_values(nx, 900), *hdy = test_random(ny, 901, -1.0f, 1.0f);
    const int ties[2][2] = {{7, 50}, {3, 59}}, tie_planes[2] = {1, 4};
    for (int t = 0; t < 2; t++)
        for (int j = 0; j < 2; j++) hx[tie_planes[t] * s + (size_t)ties[t][j]] = 3.0f;
    for (size_t i = 0; i < s; i++) hx[5 * s + i] = 0.5f;
    double *x = rl_to_double(hx, nx), *want = malloc(ny * sizeof *want), *wdx = calloc(nx, sizeof *wdx);
    int want_idx[6];
    ref_global_maxpool(x, (int)ny, s, want, want_idx);
    CHECK(want_idx[1] == 7 && want_idx[4] == 3 && want_idx[5] == 0, "reference argmax takes the first tie");
    for (size_t pl = 0; pl < ny; pl++) wdx[pl * s + (size_t)want_idx[pl]] = hdy[pl];
    nfv_tensor tx, ty, ty5, tam, tdy, tdx;
    CHECK_OK(test_tensor(&tx, 5, xs, hx));
    CHECK_OK(test_tensor(&ty, 2, ys, NULL));
    CHECK_OK(test_tensor(&ty5, 5, y5, NULL));
    CHECK_OK(test_tensor(&tam, 2, ys, NULL));
    CHECK_OK(test_tensor(&tdy, 2, ys, hdy));
    CHECK_OK(test_tensor(&tdx, 5, xs, NULL));
    CHECK_OK(nfv_tensor_fill(ctx, &tdx, 123.0f)); /* must be overwritten */
    CHECK_OK(nfv_global_maxpool_forward(ctx, &tx, &ty5, NULL));
    CHECK_OK(nfv_global_maxpool_forward(ctx, &tx, &ty, &tam));
    CHECK_OK(nfv_global_maxpool_backward(ctx, &tdy, &tam, &tdx));
    float *gy = test_download(&ty), *gy5 = test_download(&ty5), *gam = test_download(&tam), *gdx = test_download(&tdx);
    /* A max is one of its inputs, the backward a copy: exact. */
    if (gy && gy5) {
        CHECK_CLOSE("global maxpool forward (N, C)", gy, want, ny, 0.0, 0.0);
        CHECK_CLOSE("global maxpool forward (N, C, 1, 1, 1)", gy5, want, ny, 0.0, 0.0);
    }
    if (gam) {
        int got[6];
        memcpy(got, gam, sizeof got);
        int bad = 0;
        for (size_t i = 0; i < ny; i++) bad += got[i] != want_idx[i];
        CHECK(bad == 0, "global maxpool argmax: %d differ (plane 1: %d want 7, plane 4: %d want 3, plane 5: %d want 0)",
              bad, got[1], got[4], got[5]);
    }
    if (gdx) CHECK_CLOSE("global maxpool backward", gdx, wdx, nx, 0.0, 0.0);
    free(gy), free(gy5), free(gam), free(gdx);

    /* Finite differences of sum(dy * gmp(x)) on tie-free values, h = 1e-5
     * (values differ by >= ~1e-2): exact up to the double loss's rounding. */
    free(hx);
    hx = distinct_values(nx, 902);
    for (size_t i = 0; i < nx; i++) x[i] = hx[i];
    double *g = malloc(nx * sizeof *g), *w = rl_to_double(hdy, ny);
    const double h = 1e-5;
    for (size_t i = 0; i < nx; i++) {
        double keep = x[i], l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            x[i] = keep + (sgn ? -h : h);
            ref_global_maxpool(x, (int)ny, s, want, NULL);
            l[sgn] = 0;
            for (size_t pl = 0; pl < ny; pl++) l[sgn] += w[pl] * want[pl];
        }
        x[i] = keep;
        g[i] = (l[0] - l[1]) / (2 * h);
    }
    nfv_tensor_free(&tx);
    CHECK_OK(test_tensor(&tx, 5, xs, hx));
    CHECK_OK(nfv_global_maxpool_forward(ctx, &tx, &ty, &tam));
    CHECK_OK(nfv_global_maxpool_backward(ctx, &tdy, &tam, &tdx));
    gdx = test_download(&tdx);
    if (gdx) CHECK_CLOSE("global maxpool backward vs finite differences", gdx, g, nx, 1e-7, 1e-7);
    free(gdx), free(g), free(w);

    /* Shapes: y (N, C+1) and an argmax of the wrong size are rejected, naming them. */
    nfv_tensor bad_y, bad_am;
    int bys[2] = {2, 4}, bas[2] = {2, 2};
    CHECK_OK(test_tensor(&bad_y, 2, bys, NULL));
    CHECK_OK(test_tensor(&bad_am, 2, bas, NULL));
    nfv_status st = nfv_global_maxpool_forward(ctx, &tx, &bad_y, NULL);
    CHECK(st == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "2x3x5x4x3") && strstr(nfv_error_message(), "2x4"),
          "global maxpool y (N, C+1) rejected: %s", nfv_error_message());
    st = nfv_global_maxpool_forward(ctx, &tx, &ty, &bad_am);
    CHECK(st == NFV_ERR_INVALID_ARG, "global maxpool argmax of 4 for 6 rejected: %s", nfv_status_name(st));
    st = nfv_global_maxpool_backward(ctx, &tdy, &bad_am, &tdx);
    CHECK(st == NFV_ERR_INVALID_ARG, "global maxpool backward argmax of 4 rejected: %s", nfv_status_name(st));
    nfv_tensor_free(&bad_y), nfv_tensor_free(&bad_am);
    free(hx), free(hdy), free(x), free(want), free(wdx);
    nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&ty5), nfv_tensor_free(&tam), nfv_tensor_free(&tdy);
    nfv_tensor_free(&tdx);
}
