/* Max / average / global average pooling against tests/ref_layers.c and
 * central finite differences. */
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
};

static nfv_pool3d_params params_of(const pool_case *t)
{
    nfv_pool3d_params p;
    for (int a = 0; a < 3; a++) {
        int dh = a < 2 && t->kdh > 0;
        p.kernel[a] = dh ? t->kdh : t->k;
        p.stride[a] = dh ? t->sdh : t->s;
        p.padding[a] = dh ? t->pdh : t->p;
    }
    return p;
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

TEST(pool_max_forward_matches_reference)
{
    nfv_context *ctx = test_ctx();
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++) {
        const pool_case *t = &CASES[ci];
        nfv_pool3d_params p = params_of(t);
        int od = ref_pool_out(t->d, p.kernel[0], p.stride[0], p.padding[0]),
            oh = ref_pool_out(t->h, p.kernel[1], p.stride[1], p.padding[1]),
            ow = ref_pool_out(t->w, p.kernel[2], p.stride[2], p.padding[2]);
        int xs[5] = {t->n, t->c, t->d, t->h, t->w}, ys[5] = {t->n, t->c, od, oh, ow};
        size_t nx = nfv_shape_numel(5, xs), ny = nfv_shape_numel(5, ys);
        float *hx = distinct_values(nx, (unsigned)ci + 1);
        double *dx = rl_to_double(hx, nx), *want = malloc(ny * sizeof *want);
        int *want_idx = malloc(ny * sizeof *want_idx);
        ref_maxpool3d(&p, dx, t->n, t->c, t->d, t->h, t->w, want, want_idx);
        nfv_tensor x, y, am, y2;
        CHECK_OK(test_tensor(&x, 5, xs, hx));
        CHECK_OK(test_tensor(&y, 5, ys, NULL));
        CHECK_OK(test_tensor(&am, 5, ys, NULL));
        CHECK_OK(test_tensor(&y2, 5, ys, NULL));
        CHECK_OK(nfv_maxpool3d_forward(ctx, &p, &x, &y, &am));
        CHECK_OK(nfv_maxpool3d_forward(ctx, &p, &x, &y2, NULL));
        float *gy = test_download(&y), *gy2 = test_download(&y2), *gam = test_download(&am);
        char what[128];
        snprintf(what, sizeof what, "maxpool case %zu (%dx%dx%dx%dx%d k%d s%d p%d dh %d/%d/%d)", ci, t->n, t->c, t->d, t->h,
                 t->w, t->k, t->s, t->p, t->kdh, t->sdh, t->pdh);
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
}

TEST(pool_avg_forward_matches_reference)
{
    nfv_context *ctx = test_ctx();
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++) {
        const pool_case *t = &CASES[ci];
        nfv_pool3d_params p = params_of(t);
        int od = ref_pool_out(t->d, p.kernel[0], p.stride[0], p.padding[0]),
            oh = ref_pool_out(t->h, p.kernel[1], p.stride[1], p.padding[1]),
            ow = ref_pool_out(t->w, p.kernel[2], p.stride[2], p.padding[2]);
        int xs[5] = {t->n, t->c, t->d, t->h, t->w}, ys[5] = {t->n, t->c, od, oh, ow};
        size_t nx = nfv_shape_numel(5, xs), ny = nfv_shape_numel(5, ys);
        float *hx = test_random(nx, 100 + (unsigned)ci, -1.0f, 1.0f);
        double *dx = rl_to_double(hx, nx), *want = malloc(ny * sizeof *want);
        ref_avgpool3d(&p, dx, t->n, t->c, t->d, t->h, t->w, want);
        nfv_tensor x, y;
        CHECK_OK(test_tensor(&x, 5, xs, hx));
        CHECK_OK(test_tensor(&y, 5, ys, NULL));
        CHECK_OK(nfv_avgpool3d_forward(ctx, &p, &x, &y));
        float *gy = test_download(&y);
        char what[128];
        snprintf(what, sizeof what, "avgpool case %zu (%dx%dx%dx%dx%d k%d s%d p%d dh %d/%d/%d)", ci, t->n, t->c, t->d, t->h,
                 t->w, t->k, t->s, t->p, t->kdh, t->sdh, t->pdh);
        /* At most 27 float additions of values in [-1, 1]: 1e-6 absolute. */
        if (gy) CHECK_CLOSE(what, gy, want, ny, 1e-6, 1e-6);
        free(gy), free(hx), free(dx), free(want);
        nfv_tensor_free(&x), nfv_tensor_free(&y);
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

static void check_pool_backward(int is_max)
{
    nfv_context *ctx = test_ctx();
    /* Small shapes: finite differences cost one forward per input element. */
    static const pool_case small[] = {{1, 1, 5, 6, 7, 2, 2, 0, 0, 0, 0},  {3, 3, 5, 4, 7, 3, 2, 1, 0, 0, 0},
                                      {1, 8, 3, 5, 4, 3, 1, 1, 0, 0, 0},  {3, 1, 7, 5, 3, 2, 1, 0, 0, 0, 0},
                                      {1, 3, 7, 5, 7, 3, 3, 1, 0, 0, 0},  {1, 3, 5, 4, 35, 2, 2, 0, 0, 0, 0},
                                      {3, 1, 3, 5, 33, 2, 2, 0, 3, 2, 1}};
    for (size_t ci = 0; ci < sizeof small / sizeof small[0]; ci++) {
        const pool_case *t = &small[ci];
        pool_loss l = {t, params_of(t), is_max, NULL, NULL, 0};
        int od = ref_pool_out(t->d, l.p.kernel[0], l.p.stride[0], l.p.padding[0]),
            oh = ref_pool_out(t->h, l.p.kernel[1], l.p.stride[1], l.p.padding[1]),
            ow = ref_pool_out(t->w, l.p.kernel[2], l.p.stride[2], l.p.padding[2]);
        int xs[5] = {t->n, t->c, t->d, t->h, t->w}, ys[5] = {t->n, t->c, od, oh, ow};
        size_t nx = nfv_shape_numel(5, xs), ny = nfv_shape_numel(5, ys);
        float *hx = distinct_values(nx, 50 + (unsigned)ci);
        float *hw = test_random(ny, 60 + (unsigned)ci, -1.0f, 1.0f);
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
            CHECK_OK(nfv_maxpool3d_forward(ctx, &l.p, &tx, &ty, &tam));
            CHECK_OK(nfv_maxpool3d_backward(ctx, &l.p, &tdy, &tam, &tdx));
        } else {
            CHECK_OK(nfv_avgpool3d_backward(ctx, &l.p, &tdy, &tdx));
        }
        float *got = test_download(&tdx);
        char what[128];
        snprintf(what, sizeof what, "%s backward case %zu (%dx%dx%dx%dx%d k%d s%d p%d dh %d/%d/%d) vs FD", is_max ? "maxpool" : "avgpool",
                 ci, t->n, t->c, t->d, t->h, t->w, t->k, t->s, t->p, t->kdh, t->sdh, t->pdh);
        /* Pooling is linear where no tie is crossed, so FD is exact up to
         * rounding of the double loss (~1e-16 / 1e-5) plus float sums of <= 27 terms. */
        if (got) CHECK_CLOSE(what, got, g, nx, 1e-5, 1e-5);
        free(got), free(hx), free(hw), free(x), free(w), free(g), free(l.y);
        nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tam), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
    }
}

TEST(pool_max_backward_finite_differences) { check_pool_backward(1); }
TEST(pool_avg_backward_finite_differences) { check_pool_backward(0); }

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
    nfv_pool3d_params p = {{2, 2, 2}, {2, 2, 2}, {0, 0, 0}};
    CHECK(nfv_maxpool3d_forward(ctx, &p, &x, &y, NULL) == NFV_OK, "7x9x11 / 2 -> 3x4x5 accepted");
    nfv_status s = nfv_maxpool3d_forward(ctx, &p, &x, &wrong, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "wrong output shape rejected: %s", nfv_status_name(s));
    CHECK(strstr(nfv_error_message(), "1x3x3x4x6") != NULL, "message names the shape: %s", nfv_error_message());
    CHECK(nfv_avgpool3d_backward(ctx, &p, &wrong, &x) == NFV_ERR_INVALID_ARG, "avgpool backward wrong dy rejected");
    CHECK(nfv_maxpool3d_backward(ctx, &p, &y, &wrong, &x) == NFV_ERR_INVALID_ARG, "argmax of wrong size rejected");
    nfv_pool3d_params bad_pad = {{2, 2, 2}, {2, 2, 2}, {2, 0, 0}};
    CHECK(nfv_maxpool3d_forward(ctx, &bad_pad, &x, &y, NULL) == NFV_ERR_INVALID_ARG, "padding > kernel/2 rejected");
    nfv_pool3d_params bad_stride = {{2, 2, 2}, {0, 2, 2}, {0, 0, 0}};
    CHECK(nfv_avgpool3d_forward(ctx, &bad_stride, &x, &y) == NFV_ERR_INVALID_ARG, "stride 0 rejected");
    nfv_pool3d_params big = {{3, 3, 3}, {1, 1, 1}, {0, 0, 0}};
    CHECK(nfv_maxpool3d_forward(ctx, &big, &small, &y, NULL) == NFV_ERR_INVALID_ARG, "input smaller than kernel rejected");
    CHECK(nfv_global_avgpool_forward(ctx, &x, &y2) == NFV_ERR_INVALID_ARG, "global pool channel mismatch rejected");
    CHECK(nfv_global_avgpool_forward(ctx, &x, &y) == NFV_ERR_INVALID_ARG, "global pool 5-D output rejected");
    nfv_tensor_free(&x), nfv_tensor_free(&y), nfv_tensor_free(&wrong), nfv_tensor_free(&small), nfv_tensor_free(&y2);
}
