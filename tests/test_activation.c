/* ReLU, LeakyReLU, ELU, Sigmoid forward vs the double reference, backward vs central
 * finite differences, in place, and bad shapes; axpy and scale. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_layers.h"
#include "test.h"

static const struct {
    nfv_activation kind;
    float alpha;
    const char *name;
} KINDS[] = {{NFV_RELU, 0.0f, "relu"}, {NFV_LEAKY_RELU, 0.01f, "leaky_relu 0.01"},
             {NFV_LEAKY_RELU, 0.2f, "leaky_relu 0.2"}, {NFV_ELU, 1.0f, "elu 1"}, {NFV_ELU, 0.7f, "elu 0.7"},
             {NFV_SIGMOID, 0.0f, "sigmoid"}};

/* Shapes whose sizes are not multiples of any vector width, batch 1 and 3, 1/3/8 channels. */
static const int SHAPES[][5] = {{1, 1, 7, 9, 11}, {3, 3, 7, 9, 11}, {3, 8, 5, 6, 7}, {1, 1, 1, 1, 3}};

TEST(activation_forward_matches_reference)
{
    nfv_context *ctx = test_ctx();
    for (size_t ki = 0; ki < sizeof KINDS / sizeof KINDS[0]; ki++)
        for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
            size_t n = nfv_shape_numel(5, SHAPES[si]);
            float *hx = test_random(n, 10 + (unsigned)(ki * 7 + si), -3.0f, 3.0f);
            double *x = rl_to_double(hx, n), *want = malloc(n * sizeof *want);
            ref_activation(KINDS[ki].kind, KINDS[ki].alpha, x, want, n);
            nfv_tensor tx, ty;
            CHECK_OK(test_tensor(&tx, 5, SHAPES[si], hx));
            CHECK_OK(test_tensor(&ty, 5, SHAPES[si], NULL));
            CHECK_OK(nfv_activation_forward(ctx, KINDS[ki].kind, KINDS[ki].alpha, &tx, &ty));
            /* In place: y is x. */
            CHECK_OK(nfv_activation_forward(ctx, KINDS[ki].kind, KINDS[ki].alpha, &tx, &tx));
            float *gy = test_download(&ty), *gx = test_download(&tx);
            char what[80];
            snprintf(what, sizeof what, "%s forward, %zu elements", KINDS[ki].name, n);
            /* One float op (ELU: expm1 within a few ulp): 1e-6 relative. */
            if (gy) CHECK_CLOSE(what, gy, want, n, 1e-7, 1e-6);
            if (gx) CHECK_CLOSE(what, gx, want, n, 1e-7, 1e-6);
            free(hx), free(x), free(want), free(gy), free(gx);
            nfv_tensor_free(&tx), nfv_tensor_free(&ty);
        }
}

typedef struct act_loss {
    nfv_activation kind;
    double alpha;
    const double *w;
    double *y;
    size_t n;
} act_loss;

static double act_loss_fn(const double *x, void *user)
{
    act_loss *l = user;
    ref_activation(l->kind, l->alpha, x, l->y, l->n);
    double s = 0.0;
    for (size_t i = 0; i < l->n; i++) s += l->w[i] * l->y[i];
    return s;
}

TEST(activation_backward_finite_differences)
{
    nfv_context *ctx = test_ctx();
    const double h = 1e-5;
    for (size_t ki = 0; ki < sizeof KINDS / sizeof KINDS[0]; ki++)
        for (size_t si = 0; si < 3; si++) {
            size_t n = nfv_shape_numel(5, SHAPES[si]);
            float *hx = test_random(n, 40 + (unsigned)(ki * 5 + si), -3.0f, 3.0f);
            /* Keep inputs away from the kink at 0 by far more than the FD step. */
            for (size_t i = 0; i < n; i++)
                if (fabsf(hx[i]) < 1e-3f) hx[i] = hx[i] < 0 ? -0.5f : 0.5f;
            float *hdy = test_random(n, 90 + (unsigned)(ki * 5 + si), -1.0f, 1.0f);
            double *x = rl_to_double(hx, n), *w = rl_to_double(hdy, n), *g = malloc(n * sizeof *g);
            act_loss l = {KINDS[ki].kind, KINDS[ki].alpha, w, malloc(n * sizeof(double)), n};
            ref_fd_gradient(act_loss_fn, &l, x, n, h, g);
            nfv_tensor tx, tdy, tdx;
            CHECK_OK(test_tensor(&tx, 5, SHAPES[si], hx));
            CHECK_OK(test_tensor(&tdy, 5, SHAPES[si], hdy));
            CHECK_OK(test_tensor(&tdx, 5, SHAPES[si], NULL));
            CHECK_OK(nfv_activation_backward(ctx, KINDS[ki].kind, KINDS[ki].alpha, &tx, &tdy, &tdx));
            /* In place: dx is dy. */
            CHECK_OK(nfv_activation_backward(ctx, KINDS[ki].kind, KINDS[ki].alpha, &tx, &tdy, &tdy));
            float *gdx = test_download(&tdx), *gdy = test_download(&tdy);
            char what[80];
            snprintf(what, sizeof what, "%s backward vs FD, %zu elements", KINDS[ki].name, n);
            /* FD truncation error h^2 f''' / 6 ~ 1e-10 (ELU), rounding 1e-16/h ~ 1e-11, float 1e-7. */
            if (gdx) CHECK_CLOSE(what, gdx, g, n, 1e-6, 1e-5);
            if (gdy) CHECK_CLOSE(what, gdy, g, n, 1e-6, 1e-5);
            free(hx), free(hdy), free(x), free(w), free(g), free(l.y), free(gdx), free(gdy);
            nfv_tensor_free(&tx), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
        }
}

/* Sigmoid at |x| up to 200 (exp(200) overflows float): forward and backward
 * finite, forward within 1e-6 relative of the double value even where it is
 * ~1e-87 (denormal range flushes to 0 on some devices: 1e-30 absolute). */
TEST(activation_sigmoid_large_inputs_stable)
{
    nfv_context *ctx = test_ctx();
    enum { N = 37 };
    float hx[N], hdy[N];
    for (int i = 0; i < N; i++) {
        hx[i] = -200.0f + (float)i * (400.0f / (N - 1));
        hdy[i] = 1.0f - 0.05f * (float)i;
    }
    int shape[2] = {1, N};
    double *x = rl_to_double(hx, N), *dy = rl_to_double(hdy, N), y[N], dx[N];
    ref_activation(NFV_SIGMOID, 0.0, x, y, N);
    ref_activation_backward(NFV_SIGMOID, 0.0, x, dy, dx, N);
    nfv_tensor tx, tdy, ty;
    CHECK_OK(test_tensor(&tx, 2, shape, hx));
    CHECK_OK(test_tensor(&tdy, 2, shape, hdy));
    CHECK_OK(test_tensor(&ty, 2, shape, NULL));
    CHECK_OK(nfv_activation_forward(ctx, NFV_SIGMOID, 0.0f, &tx, &ty));
    CHECK_OK(nfv_activation_backward(ctx, NFV_SIGMOID, 0.0f, &tx, &tdy, &tdy));
    float *gy = test_download(&ty), *gdx = test_download(&tdy);
    if (gy) CHECK_CLOSE("sigmoid forward, |x| <= 200", gy, y, N, 1e-30, 2e-6);
    if (gdx) CHECK_CLOSE("sigmoid backward, |x| <= 200", gdx, dx, N, 1e-30, 4e-6);
    free(x), free(dy), free(gy), free(gdx);
    nfv_tensor_free(&tx), nfv_tensor_free(&tdy), nfv_tensor_free(&ty);
}

TEST(activation_bad_args_rejected)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor a, b;
    int sa[5] = {1, 3, 7, 9, 11}, sb[5] = {1, 3, 7, 9, 10};
    CHECK_OK(test_tensor(&a, 5, sa, NULL));
    CHECK_OK(test_tensor(&b, 5, sb, NULL));
    CHECK(nfv_activation_forward(ctx, NFV_RELU, 0, &a, &b) == NFV_ERR_INVALID_ARG, "size mismatch rejected");
    CHECK(strstr(nfv_error_message(), "1x3x7x9x10") != NULL, "message names the shape: %s", nfv_error_message());
    CHECK(nfv_activation_backward(ctx, NFV_ELU, 1, &a, &b, &a) == NFV_ERR_INVALID_ARG, "backward mismatch rejected");
    CHECK(nfv_activation_forward(ctx, (nfv_activation)42, 0, &a, &a) == NFV_ERR_INVALID_ARG, "unknown kind rejected");
    CHECK(nfv_axpy(ctx, 1.0f, &a, &b) == NFV_ERR_INVALID_ARG, "axpy size mismatch rejected");
    nfv_tensor_free(&a), nfv_tensor_free(&b);
}

TEST(activation_elementwise_axpy_scale_clamp_abs_accumulate)
{
    nfv_context *ctx = test_ctx();
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        size_t n = nfv_shape_numel(5, SHAPES[si]);
        float *hx = test_random(n, 500 + (unsigned)si, -2.0f, 2.0f), *hy = test_random(n, 600 + (unsigned)si, -2.0f, 2.0f);
        double *want = malloc(n * sizeof *want);
        for (size_t i = 0; i < n; i++) want[i] = -0.75 * (1.5 * (double)hx[i] + hy[i]);
        nfv_tensor tx, ty;
        CHECK_OK(test_tensor(&tx, 5, SHAPES[si], hx));
        CHECK_OK(test_tensor(&ty, 5, SHAPES[si], hy));
        CHECK_OK(nfv_axpy(ctx, 1.5f, &tx, &ty));
        CHECK_OK(nfv_scale(ctx, -0.75f, &ty));
        float *got = test_download(&ty);
        /* Two float roundings per element. */
        if (got) CHECK_CLOSE("axpy then scale", got, want, n, 1e-6, 1e-6);
        free(got);
        /* clamp to [-0.5, 0.25]: exact (comparisons only), odd sizes hit the scalar tail. */
        for (size_t i = 0; i < n; i++) want[i] = hx[i] < -0.5f ? -0.5 : hx[i] > 0.25f ? 0.25 : hx[i];
        CHECK_OK(nfv_clamp(ctx, -0.5f, 0.25f, &tx));
        got = test_download(&tx);
        if (got) CHECK_CLOSE("clamp", got, want, n, 0.0, 0.0);
        CHECK(nfv_clamp(ctx, 1.0f, 0.0f, &tx) == NFV_ERR_INVALID_ARG, "empty clamp range rejected");
        free(got);
        /* abs_accumulate twice into y = hy: one float add per call, rounded as C's float add (exact match). */
        CHECK_OK(nfv_tensor_upload(ctx, &tx, hx));
        CHECK_OK(nfv_tensor_upload(ctx, &ty, hy));
        CHECK_OK(nfv_abs_accumulate(ctx, &tx, &ty));
        CHECK_OK(nfv_abs_accumulate(ctx, &tx, &ty));
        for (size_t i = 0; i < n; i++) {
            float acc = hy[i] + fabsf(hx[i]);
            want[i] = acc + fabsf(hx[i]);
        }
        got = test_download(&ty);
        if (got) CHECK_CLOSE("abs_accumulate", got, want, n, 0.0, 0.0);
        free(hx), free(hy), free(want), free(got);
        nfv_tensor_free(&tx), nfv_tensor_free(&ty);
    }
}
