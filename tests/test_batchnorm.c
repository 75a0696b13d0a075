/* BatchNorm3d: train/eval forward vs the double reference (including the
 * PyTorch running-stat update and float accuracy on offset data), train and
 * eval backward vs central finite differences, optional outputs, bad shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_layers.h"
#include "test.h"

#define EPS 1e-5f
#define MOMENTUM 0.1f

/* Per-channel offset and spread so channels differ: x = offset[c] + spread[c] * U(-1, 1). */
static float *bn_input(const int *s, unsigned seed, float offset_scale)
{
    size_t n = nfv_shape_numel(5, s), plane = n / ((size_t)s[0] * s[1]);
    float *x = test_random(n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        int c = (int)((i / plane) % (size_t)s[1]);
        x[i] = offset_scale * (float)(c - 1) + (0.5f + 0.25f * (float)c) * x[i];
    }
    return x;
}

static void check_train_forward(const int *s, float offset_scale, double ytol, const char *label)
{
    nfv_context *ctx = test_ctx();
    int n = s[0], c = s[1];
    size_t nx = nfv_shape_numel(5, s), plane = nx / ((size_t)n * c);
    float *hx = bn_input(s, 11 + (unsigned)nx, offset_scale);
    float *hg = test_random((size_t)c, 21, 0.5f, 1.5f), *hb = test_random((size_t)c, 22, -0.5f, 0.5f);
    float *hrm = test_random((size_t)c, 23, -1.0f, 1.0f), *hrv = test_random((size_t)c, 24, 0.5f, 2.0f);
    double *x = rl_to_double(hx, nx), *g = rl_to_double(hg, (size_t)c), *b = rl_to_double(hb, (size_t)c);
    double *y = malloc(nx * sizeof *y), *mean = malloc(c * sizeof *mean), *var = malloc(c * sizeof *var),
           *varu = malloc(c * sizeof *varu), *invstd = malloc(c * sizeof *invstd), *rm = malloc(c * sizeof *rm),
           *rv = malloc(c * sizeof *rv);
    ref_batchnorm_train(x, n, c, plane, g, b, EPS, y, mean, var, varu);
    for (int i = 0; i < c; i++) {
        invstd[i] = 1.0 / sqrt(var[i] + EPS);
        rm[i] = (1.0 - MOMENTUM) * hrm[i] + MOMENTUM * mean[i];
        rv[i] = (1.0 - MOMENTUM) * hrv[i] + MOMENTUM * varu[i];
    }
    int cs[1] = {c};
    nfv_tensor tx, ty, tg, tb, trm, trv, tsm, tsi;
    CHECK_OK(test_tensor(&tx, 5, s, hx));
    CHECK_OK(test_tensor(&ty, 5, s, NULL));
    CHECK_OK(test_tensor(&tg, 1, cs, hg));
    CHECK_OK(test_tensor(&tb, 1, cs, hb));
    CHECK_OK(test_tensor(&trm, 1, cs, hrm));
    CHECK_OK(test_tensor(&trv, 1, cs, hrv));
    CHECK_OK(test_tensor(&tsm, 1, cs, NULL));
    CHECK_OK(test_tensor(&tsi, 1, cs, NULL));
    CHECK_OK(nfv_batchnorm3d_forward_train(ctx, &tx, &tg, &tb, &trm, &trv, MOMENTUM, EPS, &ty, &tsm, &tsi));
    float *gy = test_download(&ty), *gsm = test_download(&tsm), *gsi = test_download(&tsi),
          *grm = test_download(&trm), *grv = test_download(&trv);
    char what[128];
    snprintf(what, sizeof what, "%s %dx%dx%dx%dx%d", label, s[0], s[1], s[2], s[3], s[4]);
    if (gy) CHECK_CLOSE(what, gy, y, nx, ytol, ytol);
    /* Statistics: float sums of up to 4e4 values; the mean to ~1e-6 of the
     * data's magnitude, the variance (centred, no cancellation) to ~1e-5. */
    if (gsm) CHECK_CLOSE("save_mean", gsm, mean, (size_t)c, 2e-6 * (1 + fabs(offset_scale) * c), 1e-5);
    if (gsi) CHECK_CLOSE("save_invstd", gsi, invstd, (size_t)c, 0.0, 2e-5);
    if (grm) CHECK_CLOSE("running_mean", grm, rm, (size_t)c, 2e-6 * (1 + fabs(offset_scale) * c), 1e-5);
    if (grv) CHECK_CLOSE("running_var", grv, rv, (size_t)c, 0.0, 2e-5);

    /* Without running stats or saved outputs y is the same. */
    CHECK_OK(nfv_tensor_fill(ctx, &ty, 0.0f));
    CHECK_OK(nfv_batchnorm3d_forward_train(ctx, &tx, &tg, &tb, NULL, NULL, MOMENTUM, EPS, &ty, NULL, NULL));
    float *gy2 = test_download(&ty);
    if (gy2) CHECK_CLOSE("train forward without running stats", gy2, y, nx, ytol, ytol);
    free(gy), free(gy2), free(gsm), free(gsi), free(grm), free(grv);
    free(hx), free(hg), free(hb), free(hrm), free(hrv), free(x), free(g), free(b), free(y), free(mean), free(var),
        free(varu), free(invstd), free(rm), free(rv);
    nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tg), nfv_tensor_free(&tb);
    nfv_tensor_free(&trm), nfv_tensor_free(&trv), nfv_tensor_free(&tsm), nfv_tensor_free(&tsi);
}

TEST(batchnorm_train_forward_matches_reference)
{
    static const int shapes[][5] = {{1, 1, 7, 9, 11}, {3, 3, 7, 9, 11}, {3, 8, 5, 6, 7}, {2, 3, 17, 19, 23}};
    /* y = gamma * xhat + beta with |xhat| <~ 2: 1e-5 absolute and relative. */
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_train_forward(shapes[i], 1.0f, 1e-5, "batchnorm train forward");
}

/* Values 1000 +- 1 over 2 x 31^3 per channel: E[x^2] - E[x]^2 in float would
 * lose every digit of the variance (1/3 against 1e6); the centred chunk
 * statistics must keep it to 1e-5. */
TEST(batchnorm_train_forward_accurate_with_offset)
{
    static const int s[5] = {2, 3, 31, 31, 31};
    check_train_forward(s, 1000.0f, 2e-4, "batchnorm train forward, offset 1000");
}

TEST(batchnorm_eval_forward_matches_reference)
{
    nfv_context *ctx = test_ctx();
    static const int shapes[][5] = {{1, 1, 7, 9, 11}, {3, 3, 7, 9, 11}, {3, 8, 5, 6, 7}};
    for (size_t si = 0; si < 3; si++) {
        const int *s = shapes[si];
        int c = s[1];
        size_t nx = nfv_shape_numel(5, s), plane = nx / ((size_t)s[0] * c);
        float *hx = bn_input(s, 31, 1.0f), *hg = test_random((size_t)c, 32, 0.5f, 1.5f),
              *hb = test_random((size_t)c, 33, -0.5f, 0.5f), *hrm = test_random((size_t)c, 34, -1.0f, 1.0f),
              *hrv = test_random((size_t)c, 35, 0.5f, 2.0f);
        double *x = rl_to_double(hx, nx), *g = rl_to_double(hg, c), *b = rl_to_double(hb, c),
               *rm = rl_to_double(hrm, c), *rv = rl_to_double(hrv, c), *y = malloc(nx * sizeof *y);
        ref_batchnorm_eval(x, s[0], c, plane, g, b, rm, rv, EPS, y);
        int cs[1] = {c};
        nfv_tensor tx, ty, tg, tb, trm, trv;
        CHECK_OK(test_tensor(&tx, 5, s, hx));
        CHECK_OK(test_tensor(&ty, 5, s, NULL));
        CHECK_OK(test_tensor(&tg, 1, cs, hg));
        CHECK_OK(test_tensor(&tb, 1, cs, hb));
        CHECK_OK(test_tensor(&trm, 1, cs, hrm));
        CHECK_OK(test_tensor(&trv, 1, cs, hrv));
        CHECK_OK(nfv_batchnorm3d_forward_eval(ctx, &tx, &tg, &tb, &trm, &trv, EPS, &ty));
        CHECK_OK(nfv_batchnorm3d_forward_eval(ctx, &tx, &tg, &tb, &trm, &trv, EPS, &tx)); /* in place */
        float *gy = test_download(&ty), *gx = test_download(&tx);
        /* Two float roundings of values <~ 5. */
        if (gy) CHECK_CLOSE("batchnorm eval forward", gy, y, nx, 2e-6, 2e-6);
        if (gx) CHECK_CLOSE("batchnorm eval forward in place", gx, y, nx, 2e-6, 2e-6);
        free(hx), free(hg), free(hb), free(hrm), free(hrv), free(x), free(g), free(b), free(rm), free(rv), free(y),
            free(gy), free(gx);
        nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tg), nfv_tensor_free(&tb);
        nfv_tensor_free(&trm), nfv_tensor_free(&trv);
    }
}

/* Loss = sum(w * bn(x; gamma, beta)) in double; `which` names the perturbed
 * array (0 x, 1 gamma, 2 beta), the others are taken from the struct. */
typedef struct bn_loss {
    int which, n, c, eval;
    size_t s;
    const double *x, *gamma, *beta, *w, *rm, *rv;
    double *y;
} bn_loss;

static double bn_loss_fn(const double *v, void *user)
{
    bn_loss *l = user;
    const double *x = l->which == 0 ? v : l->x, *g = l->which == 1 ? v : l->gamma, *b = l->which == 2 ? v : l->beta;
    if (l->eval) ref_batchnorm_eval(x, l->n, l->c, l->s, g, b, l->rm, l->rv, EPS, l->y);
    else ref_batchnorm_train(x, l->n, l->c, l->s, g, b, EPS, l->y, NULL, NULL, NULL);
    double sum = 0.0;
    size_t nx = (size_t)l->n * l->c * l->s;
    for (size_t i = 0; i < nx; i++) sum += l->w[i] * l->y[i];
    return sum;
}

TEST(batchnorm_train_backward_finite_differences)
{
    nfv_context *ctx = test_ctx();
    static const int shapes[][5] = {{3, 3, 5, 4, 7}, {1, 8, 3, 5, 4}, {3, 1, 7, 5, 3}, {1, 1, 7, 9, 11}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int *s = shapes[si];
        int c = s[1];
        size_t nx = nfv_shape_numel(5, s), plane = nx / ((size_t)s[0] * c);
        float *hx = bn_input(s, 41 + (unsigned)si, 1.0f), *hw = test_random(nx, 42 + (unsigned)si, -1.0f, 1.0f),
              *hg = test_random((size_t)c, 43, 0.5f, 1.5f), *hb = test_random((size_t)c, 44, -0.5f, 0.5f);
        double *x = rl_to_double(hx, nx), *w = rl_to_double(hw, nx), *g = rl_to_double(hg, c),
               *b = rl_to_double(hb, c);
        bn_loss l = {0, s[0], c, 0, plane, x, g, b, w, NULL, NULL, malloc(nx * sizeof(double))};
        double *fdx = malloc(nx * sizeof *fdx), *fdg = malloc(c * sizeof *fdg), *fdb = malloc(c * sizeof *fdb);
        /* The loss is smooth; h = 1e-4 gives truncation ~1e-8 and rounding ~1e-12. */
        l.which = 0;
        ref_fd_gradient(bn_loss_fn, &l, x, nx, 1e-4, fdx);
        l.which = 1;
        ref_fd_gradient(bn_loss_fn, &l, g, (size_t)c, 1e-4, fdg);
        l.which = 2;
        ref_fd_gradient(bn_loss_fn, &l, b, (size_t)c, 1e-4, fdb);

        int cs[1] = {c};
        nfv_tensor tx, ty, tg, tb, tsm, tsi, tdy, tdx, tdg, tdb;
        CHECK_OK(test_tensor(&tx, 5, s, hx));
        CHECK_OK(test_tensor(&ty, 5, s, NULL));
        CHECK_OK(test_tensor(&tg, 1, cs, hg));
        CHECK_OK(test_tensor(&tb, 1, cs, hb));
        CHECK_OK(test_tensor(&tsm, 1, cs, NULL));
        CHECK_OK(test_tensor(&tsi, 1, cs, NULL));
        CHECK_OK(test_tensor(&tdy, 5, s, hw));
        CHECK_OK(test_tensor(&tdx, 5, s, NULL));
        CHECK_OK(test_tensor(&tdg, 1, cs, NULL));
        CHECK_OK(test_tensor(&tdb, 1, cs, NULL));
        CHECK_OK(nfv_batchnorm3d_forward_train(ctx, &tx, &tg, &tb, NULL, NULL, MOMENTUM, EPS, &ty, &tsm, &tsi));
        CHECK_OK(nfv_batchnorm3d_backward_train(ctx, &tx, &tdy, &tg, &tsm, &tsi, &tdx, &tdg, &tdb));
        float *gdx = test_download(&tdx), *gdg = test_download(&tdg), *gdb = test_download(&tdb);
        char what[96];
        snprintf(what, sizeof what, "batchnorm train backward %dx%dx%dx%dx%d", s[0], s[1], s[2], s[3], s[4]);
        /* dx is a difference of O(1) terms computed in float: 2e-5 absolute. */
        if (gdx) CHECK_CLOSE(what, gdx, fdx, nx, 2e-5, 1e-4);
        /* dgamma, dbeta: float sums of up to 420 terms of magnitude <~ 2. */
        if (gdg) CHECK_CLOSE("dgamma vs FD", gdg, fdg, (size_t)c, 1e-4, 1e-4);
        if (gdb) CHECK_CLOSE("dbeta vs FD", gdb, fdb, (size_t)c, 1e-4, 1e-4);

        /* Optional outputs: dx alone, then the parameter gradients alone. */
        CHECK_OK(nfv_tensor_fill(ctx, &tdx, 0.0f));
        CHECK_OK(nfv_batchnorm3d_backward_train(ctx, &tx, &tdy, &tg, &tsm, &tsi, &tdx, NULL, NULL));
        float *gdx2 = test_download(&tdx);
        if (gdx2) CHECK_CLOSE("dx alone", gdx2, fdx, nx, 2e-5, 1e-4);
        CHECK_OK(nfv_tensor_fill(ctx, &tdg, 0.0f));
        CHECK_OK(nfv_batchnorm3d_backward_train(ctx, &tx, &tdy, &tg, &tsm, &tsi, NULL, &tdg, NULL));
        float *gdg2 = test_download(&tdg);
        if (gdg2) CHECK_CLOSE("dgamma alone", gdg2, fdg, (size_t)c, 1e-4, 1e-4);
        free(gdx), free(gdg), free(gdb), free(gdx2), free(gdg2);
        free(hx), free(hw), free(hg), free(hb), free(x), free(w), free(g), free(b), free(l.y), free(fdx), free(fdg),
            free(fdb);
        nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tg), nfv_tensor_free(&tb), nfv_tensor_free(&tsm);
        nfv_tensor_free(&tsi), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx), nfv_tensor_free(&tdg), nfv_tensor_free(&tdb);
    }
}

TEST(batchnorm_eval_backward_finite_differences)
{
    nfv_context *ctx = test_ctx();
    static const int s[5] = {3, 3, 5, 4, 7};
    int c = s[1];
    size_t nx = nfv_shape_numel(5, s), plane = nx / ((size_t)s[0] * c);
    float *hx = bn_input(s, 51, 1.0f), *hw = test_random(nx, 52, -1.0f, 1.0f),
          *hg = test_random((size_t)c, 53, 0.5f, 1.5f), *hb = test_random((size_t)c, 54, -0.5f, 0.5f),
          *hrm = test_random((size_t)c, 55, -1.0f, 1.0f), *hrv = test_random((size_t)c, 56, 0.5f, 2.0f);
    double *x = rl_to_double(hx, nx), *w = rl_to_double(hw, nx), *g = rl_to_double(hg, c), *b = rl_to_double(hb, c),
           *rm = rl_to_double(hrm, c), *rv = rl_to_double(hrv, c), *fdx = malloc(nx * sizeof *fdx);
    bn_loss l = {0, s[0], c, 1, plane, x, g, b, w, rm, rv, malloc(nx * sizeof(double))};
    ref_fd_gradient(bn_loss_fn, &l, x, nx, 1e-4, fdx);
    int cs[1] = {c};
    nfv_tensor tdy, tdx, tg, trv;
    CHECK_OK(test_tensor(&tdy, 5, s, hw));
    CHECK_OK(test_tensor(&tdx, 5, s, NULL));
    CHECK_OK(test_tensor(&tg, 1, cs, hg));
    CHECK_OK(test_tensor(&trv, 1, cs, hrv));
    CHECK_OK(nfv_batchnorm3d_backward_eval(ctx, &tdy, &tg, &trv, EPS, &tdx));
    float *got = test_download(&tdx);
    /* Linear map: FD exact up to rounding; one float product. */
    if (got) CHECK_CLOSE("batchnorm eval backward vs FD", got, fdx, nx, 1e-6, 1e-5);
    free(got), free(hx), free(hw), free(hg), free(hb), free(hrm), free(hrv), free(x), free(w), free(g), free(b),
        free(rm), free(rv), free(fdx), free(l.y);
    nfv_tensor_free(&tdy), nfv_tensor_free(&tdx), nfv_tensor_free(&tg), nfv_tensor_free(&trv);
}

/* Training BatchNorm -> ReLU in one pass each way (a training forward's
 * BN -> ReLU, src/model/model_run.c) against the two layers run apart: y,
 * dx, dgamma and dbeta bit for bit (the separate layers are checked against
 * the reference and finite differences above).  Lane tails (W = 33), and a
 * bias that closes the ReLU's gate on about half of the values. */
TEST(batchnorm_relu_train_matches_separate_layers_bitwise)
{
    nfv_context *ctx = test_ctx();
    static const int shapes[][5] = {{3, 3, 5, 4, 7}, {2, 8, 9, 10, 33}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int *s = shapes[si];
        const int c = s[1], cs[1] = {c};
        const size_t nx = nfv_shape_numel(5, s);
        float *hx = bn_input(s, 61 + (unsigned)si, 1.0f), *hdy = test_random(nx, 62, -1.0f, 1.0f),
              *hg = test_random((size_t)c, 63, 0.5f, 1.5f), *hb = test_random((size_t)c, 64, -0.5f, 0.5f);
        /* [0]: BatchNorm, then ReLU; [1]: the fused calls */
        nfv_tensor tx, tg, tb, tdy, ybn, r[2], dz, dx[2], dg[2], db[2], sm[2], sd[2];
        nfv_tensor *all[] = {&tx, &tg, &tb, &tdy, &ybn, &dz, &r[0], &r[1], &dx[0], &dx[1], &dg[0], &dg[1],
                             &db[0], &db[1], &sm[0], &sm[1], &sd[0], &sd[1]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) memset(all[i], 0, sizeof *all[i]);
        int ok = CHECK_OK(test_tensor(&tx, 5, s, hx)) && CHECK_OK(test_tensor(&tg, 1, cs, hg)) &&
                 CHECK_OK(test_tensor(&tb, 1, cs, hb)) && CHECK_OK(test_tensor(&tdy, 5, s, hdy)) &&
                 CHECK_OK(test_tensor(&ybn, 5, s, NULL)) && CHECK_OK(test_tensor(&dz, 5, s, NULL));
        for (int k = 0; ok && k < 2; k++)
            ok = CHECK_OK(test_tensor(&r[k], 5, s, NULL)) && CHECK_OK(test_tensor(&dx[k], 5, s, NULL)) &&
                 CHECK_OK(test_tensor(&dg[k], 1, cs, NULL)) && CHECK_OK(test_tensor(&db[k], 1, cs, NULL)) &&
                 CHECK_OK(test_tensor(&sm[k], 1, cs, NULL)) && CHECK_OK(test_tensor(&sd[k], 1, cs, NULL));
        ok = ok &&
             CHECK_OK(nfv_batchnorm3d_forward_train(ctx, &tx, &tg, &tb, NULL, NULL, MOMENTUM, EPS, &ybn, &sm[0],
                                                    &sd[0])) &&
             CHECK_OK(nfv_activation_forward(ctx, NFV_RELU, 0.0f, &ybn, &r[0])) &&
             CHECK_OK(nfv_activation_backward(ctx, NFV_RELU, 0.0f, &ybn, &tdy, &dz)) &&
             CHECK_OK(nfv_batchnorm3d_backward_train(ctx, &tx, &dz, &tg, &sm[0], &sd[0], &dx[0], &dg[0], &db[0])) &&
             CHECK_OK(nfv_batchnorm3d_relu_forward_train_dist(ctx, &tx, &tg, &tb, NULL, NULL, MOMENTUM, EPS, &r[1],
                                                              &sm[1], &sd[1], NULL)) &&
             CHECK_OK(nfv_batchnorm3d_relu_backward_train_dist(ctx, &tx, &tdy, &tg, &tb, &sm[1], &sd[1], &dx[1], &dg[1],
                                                               &db[1], NULL));
        const nfv_tensor *pairs[][2] = {{&r[0], &r[1]}, {&dx[0], &dx[1]}, {&dg[0], &dg[1]}, {&db[0], &db[1]}};
        static const char *names[] = {"ReLU(BN(x))", "dx", "dgamma", "dbeta"};
        for (int p = 0; ok && p < 4; p++) {
            float *want = test_download(pairs[p][0]), *got = test_download(pairs[p][1]);
            size_t n = pairs[p][0]->numel, differ = 0, zeros = 0;
            for (size_t i = 0; want && got && i < n; i++) differ += memcmp(&want[i], &got[i], sizeof(float)) != 0;
            for (size_t i = 0; p == 0 && want && i < n; i++) zeros += want[i] == 0.0f;
            CHECK(want && got && differ == 0, "%s %dx%dx%dx%dx%d: %zu of %zu values differ from the separate layers'",
                  names[p], s[0], s[1], s[2], s[3], s[4], differ, n);
            if (p == 0) CHECK(zeros > n / 5 && zeros < 4 * n / 5, "the gate closes on %zu of %zu values", zeros, n);
            free(want), free(got);
        }
        CHECK(nfv_batchnorm3d_relu_backward_train_dist(ctx, &tx, &tdy, &tg, NULL, &sm[1], &sd[1], &dx[1], NULL, NULL,
                                                       NULL) == NFV_ERR_INVALID_ARG,
              "the gated backward without beta is refused");
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nfv_tensor_free(all[i]);
        free(hx), free(hdy), free(hg), free(hb);
    }
}

TEST(batchnorm_bad_shapes_rejected)
{
    nfv_context *ctx = test_ctx();
    int xs[5] = {2, 3, 5, 6, 7}, ys[5] = {2, 3, 5, 6, 8}, x4[4] = {2, 3, 5, 6}, one[5] = {1, 2, 1, 1, 1};
    int c3[1] = {3}, c4[1] = {4}, c2[1] = {2};
    nfv_tensor x, y, bad_y, xq, g, b, g4, rm, rv, xo, yo, g2;
    CHECK_OK(test_tensor(&x, 5, xs, NULL));
    CHECK_OK(test_tensor(&y, 5, xs, NULL));
    CHECK_OK(test_tensor(&bad_y, 5, ys, NULL));
    CHECK_OK(test_tensor(&xq, 4, x4, NULL));
    CHECK_OK(test_tensor(&g, 1, c3, NULL));
    CHECK_OK(test_tensor(&b, 1, c3, NULL));
    CHECK_OK(test_tensor(&g4, 1, c4, NULL));
    CHECK_OK(test_tensor(&rm, 1, c3, NULL));
    CHECK_OK(test_tensor(&rv, 1, c3, NULL));
    CHECK_OK(test_tensor(&xo, 5, one, NULL));
    CHECK_OK(test_tensor(&yo, 5, one, NULL));
    CHECK_OK(test_tensor(&g2, 1, c2, NULL));
    nfv_status s = nfv_batchnorm3d_forward_train(ctx, &x, &g4, &b, &rm, &rv, MOMENTUM, EPS, &y, NULL, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "gamma of 4 for 3 channels rejected");
    CHECK(strstr(nfv_error_message(), "gamma") != NULL, "message names gamma: %s", nfv_error_message());
    CHECK(nfv_batchnorm3d_forward_train(ctx, &x, &g, &b, &rm, &rv, MOMENTUM, EPS, &bad_y, NULL, NULL) ==
              NFV_ERR_INVALID_ARG, "y of another shape rejected");
    CHECK(nfv_batchnorm3d_forward_train(ctx, &xq, &g, &b, &rm, &rv, MOMENTUM, EPS, &xq, NULL, NULL) ==
              NFV_ERR_INVALID_ARG, "4-D input rejected");
    CHECK(nfv_batchnorm3d_forward_train(ctx, &x, &g, &b, &rm, NULL, MOMENTUM, EPS, &y, NULL, NULL) ==
              NFV_ERR_INVALID_ARG, "running_mean without running_var rejected");
    CHECK(nfv_batchnorm3d_forward_train(ctx, &xo, &g2, &g2, NULL, NULL, MOMENTUM, EPS, &yo, NULL, NULL) ==
              NFV_ERR_INVALID_ARG, "one value per channel rejected in training");
    CHECK(nfv_batchnorm3d_forward_eval(ctx, &x, &g, &b, &rm, &g4, EPS, &y) == NFV_ERR_INVALID_ARG,
          "eval running_var of wrong size rejected");
    CHECK(nfv_batchnorm3d_backward_train(ctx, &x, &bad_y, &g, &rm, &rv, &y, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "dy of another shape rejected");
    CHECK(nfv_batchnorm3d_backward_eval(ctx, &x, &g4, &rv, EPS, &y) == NFV_ERR_INVALID_ARG,
          "eval backward gamma of wrong size rejected");
    nfv_tensor *all[] = {&x, &y, &bad_y, &xq, &g, &b, &g4, &rm, &rv, &xo, &yo, &g2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nfv_tensor_free(all[i]);
}
