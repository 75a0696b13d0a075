/* InstanceNorm3d: forward vs the double reference (with and without affine,
 * saved statistics, in place, planes larger than a work-group, float
 * accuracy on offset data), backward vs central finite differences and the
 * analytic reference, optional outputs, bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_graph.h"
#include "ref_layers.h"
#include "test.h"

#define EPS 1e-5f

/* x = offset * (p % 3 - 1) + (0.5 + 0.25 * (p % 4)) * U(-1, 1) per plane p, so planes differ. */
static float *in_input(const int *s, unsigned seed, float offset)
{
    size_t n = nfv_shape_numel(5, s), plane = n / ((size_t)s[0] * s[1]);
    float *x = test_random(n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        int p = (int)(i / plane);
        x[i] = offset * (float)(p % 3 - 1) + (0.5f + 0.25f * (float)(p % 4)) * x[i];
    }
    return x;
}

static void check_forward(const int *s, int affine, float offset, double ytol, const char *label)
{
    nfv_context *ctx = test_ctx();
    int n = s[0], c = s[1], planes = n * c;
    size_t nx = nfv_shape_numel(5, s), sp = nx / (size_t)planes;
    float *hx = in_input(s, 7 + (unsigned)nx, offset);
    float *hg = test_random((size_t)c, 61, 0.5f, 1.5f), *hb = test_random((size_t)c, 62, -0.5f, 0.5f);
    double *x = rl_to_double(hx, nx), *g = rl_to_double(hg, c), *b = rl_to_double(hb, c);
    double *y = malloc(nx * sizeof *y), *mean = malloc(planes * sizeof *mean), *invstd = malloc(planes * sizeof *invstd);
    ref_instancenorm(x, n, c, sp, affine ? g : NULL, affine ? b : NULL, EPS, y, mean, invstd);
    int cs[1] = {c}, ps[2] = {n, c};
    nfv_tensor tx, ty, tg, tb, tsm, tsi;
    CHECK_OK(test_tensor(&tx, 5, s, hx));
    CHECK_OK(test_tensor(&ty, 5, s, NULL));
    CHECK_OK(test_tensor(&tg, 1, cs, hg));
    CHECK_OK(test_tensor(&tb, 1, cs, hb));
    CHECK_OK(test_tensor(&tsm, 2, ps, NULL));
    CHECK_OK(test_tensor(&tsi, 2, ps, NULL));
    const nfv_tensor *pg = affine ? &tg : NULL, *pb = affine ? &tb : NULL;
    CHECK_OK(nfv_instancenorm3d_forward(ctx, &tx, pg, pb, EPS, &ty, &tsm, &tsi));
    float *gy = test_download(&ty), *gsm = test_download(&tsm), *gsi = test_download(&tsi);
    char what[128];
    snprintf(what, sizeof what, "%s%s %dx%dx%dx%dx%d", label, affine ? " (affine)" : "", s[0], s[1], s[2], s[3], s[4]);
    if (gy) CHECK_CLOSE(what, gy, y, nx, ytol, ytol);
    /* Float sums of up to 3e4 values: the mean to ~1e-6 of the data's magnitude,
     * invstd (centred second pass) to ~1e-5. */
    if (gsm) CHECK_CLOSE("save_mean", gsm, mean, (size_t)planes, 2e-6 * (1 + fabs(offset)), 1e-5);
    if (gsi) CHECK_CLOSE("save_invstd", gsi, invstd, (size_t)planes, 0.0, 2e-5);
    /* In place and without saved statistics: the same y. */
    CHECK_OK(nfv_instancenorm3d_forward(ctx, &tx, pg, pb, EPS, &tx, NULL, NULL));
    float *gx = test_download(&tx);
    if (gx) CHECK_CLOSE("in place, no saved statistics", gx, y, nx, ytol, ytol);
    free(gy), free(gsm), free(gsi), free(gx), free(hx), free(hg), free(hb), free(x), free(g), free(b), free(y),
        free(mean), free(invstd);
    nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tg), nfv_tensor_free(&tb);
    nfv_tensor_free(&tsm), nfv_tensor_free(&tsi);
}

TEST(instancenorm_forward_matches_reference)
{
    /* Odd sizes, batch 2; 17x19x23 = 7429 values per plane: more than any work-group. */
    static const int shapes[][5] = {{2, 3, 5, 4, 3}, {1, 1, 7, 9, 11}, {2, 2, 17, 19, 23}, {2, 3, 1, 1, 1}};
    /* y = gamma * xhat + beta with |xhat| <~ 2 (0 for one value per plane): 1e-5 absolute and relative. */
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int affine = 0; affine < 2; affine++)
            check_forward(shapes[i], affine, 1.0f, 1e-5, "instancenorm forward");
}

/* Values 1000 +- 1 over 31^3 per plane: E[x^2] - E[x]^2 in float would lose
 * every digit of the variance, and x * a + b (or a float mean alone, half an
 * ulp of 1000 = 3e-5 times invstd ~ 3.5) would miss y by ~1e-4; the two-pass
 * statistics with the mean's rounding carried (cl/instancenorm.cl) keep y to
 * 2e-5 (1e-6 measured on PoCL). */
TEST(instancenorm_forward_accurate_with_offset)
{
    static const int s[5] = {2, 3, 31, 31, 31};
    check_forward(s, 1, 1000.0f, 2e-5, "instancenorm forward, offset 1000");
}

/* Loss = sum(w * in(x; gamma, beta)) in double; `which` is the perturbed
 * array (0 x, 1 gamma, 2 beta). */
typedef struct in_loss {
    int which, n, c, affine;
    size_t s;
    const double *x, *gamma, *beta, *w;
    double *y;
} in_loss;

static double in_loss_fn(const double *v, void *user)
{
    in_loss *l = user;
    const double *x = l->which == 0 ? v : l->x, *g = l->which == 1 ? v : l->gamma, *b = l->which == 2 ? v : l->beta;
    ref_instancenorm(x, l->n, l->c, l->s, l->affine ? g : NULL, l->affine ? b : NULL, EPS, l->y, NULL, NULL);
    double sum = 0.0;
    size_t nx = (size_t)l->n * l->c * l->s;
    for (size_t i = 0; i < nx; i++) sum += l->w[i] * l->y[i];
    return sum;
}

/* Device backward of one shape against central differences of in_loss_fn. */
static void check_backward(const int *s, int affine)
{
    nfv_context *ctx = test_ctx();
    int c = s[1], planes = s[0] * c;
    size_t nx = nfv_shape_numel(5, s), sp = nx / (size_t)planes;
    float *hx = in_input(s, 71 + (unsigned)affine, 1.0f), *hw = test_random(nx, 72, -1.0f, 1.0f),
          *hg = test_random((size_t)c, 73, 0.5f, 1.5f), *hb = test_random((size_t)c, 74, -0.5f, 0.5f);
    double *x = rl_to_double(hx, nx), *w = rl_to_double(hw, nx), *g = rl_to_double(hg, c), *b = rl_to_double(hb, c);
    in_loss l = {0, s[0], c, affine, sp, x, g, b, w, malloc(nx * sizeof(double))};
    double *fdx = malloc(nx * sizeof *fdx), *fdg = malloc(c * sizeof *fdg), *fdb = malloc(c * sizeof *fdb);
    double *rdx = malloc(nx * sizeof *rdx), *rdg = malloc(c * sizeof *rdg), *rdb = malloc(c * sizeof *rdb);
    /* Smooth loss: h = 1e-4 gives truncation ~1e-8, rounding ~1e-12.  dgamma and
     * dbeta do not depend on gamma and beta, so FD runs with affine on for them. */
    ref_fd_gradient(in_loss_fn, &l, x, nx, 1e-4, fdx);
    l.affine = 1;
    l.which = 1;
    ref_fd_gradient(in_loss_fn, &l, g, (size_t)c, 1e-4, fdg);
    l.which = 2;
    ref_fd_gradient(in_loss_fn, &l, b, (size_t)c, 1e-4, fdb);
    ref_instancenorm_backward(x, w, s[0], c, sp, affine ? g : NULL, EPS, rdx, rdg, rdb);

    int cs[1] = {c}, ps[2] = {s[0], c};
    nfv_tensor tx, ty, tg, tb, tsm, tsi, tdy, tdx, tdg, tdb;
    CHECK_OK(test_tensor(&tx, 5, s, hx));
    CHECK_OK(test_tensor(&ty, 5, s, NULL));
    CHECK_OK(test_tensor(&tg, 1, cs, hg));
    CHECK_OK(test_tensor(&tb, 1, cs, hb));
    CHECK_OK(test_tensor(&tsm, 2, ps, NULL));
    CHECK_OK(test_tensor(&tsi, 2, ps, NULL));
    CHECK_OK(test_tensor(&tdy, 5, s, hw));
    CHECK_OK(test_tensor(&tdx, 5, s, NULL));
    CHECK_OK(test_tensor(&tdg, 1, cs, NULL));
    CHECK_OK(test_tensor(&tdb, 1, cs, NULL));
    const nfv_tensor *pg = affine ? &tg : NULL, *pb = affine ? &tb : NULL;
    CHECK_OK(nfv_instancenorm3d_forward(ctx, &tx, pg, pb, EPS, &ty, &tsm, &tsi));
    CHECK_OK(nfv_instancenorm3d_backward(ctx, &tx, &tdy, pg, &tsm, &tsi, &tdx, &tdg, &tdb));
    float *gdx = test_download(&tdx), *gdg = test_download(&tdg), *gdb = test_download(&tdb);
    char what[96];
    snprintf(what, sizeof what, "instancenorm backward%s %dx%dx%dx%dx%d vs FD", affine ? " (affine)" : "", s[0], s[1],
             s[2], s[3], s[4]);
    /* dx is a difference of O(1) terms computed in float: 2e-5 absolute, 1e-4 relative. */
    if (gdx) CHECK_CLOSE(what, gdx, fdx, nx, 2e-5, 1e-4);
    if (gdx) CHECK_CLOSE("dx vs the analytic reference", gdx, rdx, nx, 2e-5, 1e-4);
    /* dgamma, dbeta: float sums of N*S terms of magnitude <~ 2. */
    if (gdg) CHECK_CLOSE("dgamma vs FD", gdg, fdg, (size_t)c, 1e-4, 1e-4);
    if (gdb) CHECK_CLOSE("dbeta vs FD", gdb, fdb, (size_t)c, 1e-4, 1e-4);
    if (gdg) CHECK_CLOSE("dgamma vs the analytic reference", gdg, rdg, (size_t)c, 1e-4, 1e-4);

    /* Optional outputs: dx alone written over dy (in place), then dbeta alone. */
    CHECK_OK(nfv_instancenorm3d_backward(ctx, &tx, &tdy, pg, &tsm, &tsi, &tdy, NULL, NULL));
    float *gdx2 = test_download(&tdy);
    if (gdx2) CHECK_CLOSE("dx alone, in place over dy", gdx2, fdx, nx, 2e-5, 1e-4);
    CHECK_OK(nfv_tensor_upload(ctx, &tdy, hw));
    CHECK_OK(nfv_tensor_fill(ctx, &tdb, 0.0f));
    CHECK_OK(nfv_instancenorm3d_backward(ctx, &tx, &tdy, pg, &tsm, &tsi, NULL, NULL, &tdb));
    float *gdb2 = test_download(&tdb);
    if (gdb2) CHECK_CLOSE("dbeta alone", gdb2, fdb, (size_t)c, 1e-4, 1e-4);
    free(gdx), free(gdg), free(gdb), free(gdx2), free(gdb2);
    free(hx), free(hw), free(hg), free(hb), free(x), free(w), free(g), free(b), free(l.y);
    free(fdx), free(fdg), free(fdb), free(rdx), free(rdg), free(rdb);
    nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tg), nfv_tensor_free(&tb), nfv_tensor_free(&tsm);
    nfv_tensor_free(&tsi), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx), nfv_tensor_free(&tdg), nfv_tensor_free(&tdb);
}

TEST(instancenorm_backward_finite_differences)
{
    static const int shapes[][5] = {{2, 3, 5, 4, 3}, {1, 2, 7, 3, 5}, {2, 1, 9, 1, 11}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int affine = 0; affine < 2; affine++) check_backward(shapes[i], affine);
}

TEST(instancenorm_bad_args_rejected)
{
    nfv_context *ctx = test_ctx();
    int xs[5] = {2, 3, 5, 4, 3}, ys[5] = {2, 3, 5, 4, 4}, x4[4] = {2, 3, 5, 4}, c3[1] = {3}, c4[1] = {4};
    int p6[2] = {2, 3}, p3[1] = {3};
    nfv_tensor x, y, bad_y, xq, g, g4, sm, si, sm3;
    CHECK_OK(test_tensor(&x, 5, xs, NULL));
    CHECK_OK(test_tensor(&y, 5, xs, NULL));
    CHECK_OK(test_tensor(&bad_y, 5, ys, NULL));
    CHECK_OK(test_tensor(&xq, 4, x4, NULL));
    CHECK_OK(test_tensor(&g, 1, c3, NULL));
    CHECK_OK(test_tensor(&g4, 1, c4, NULL));
    CHECK_OK(test_tensor(&sm, 2, p6, NULL));
    CHECK_OK(test_tensor(&si, 2, p6, NULL));
    CHECK_OK(test_tensor(&sm3, 1, p3, NULL));
    CHECK(nfv_instancenorm3d_forward(ctx, &x, &g4, &g, EPS, &y, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "gamma of 4 for 3 channels rejected");
    CHECK(strstr(nfv_error_message(), "instancenorm3d forward") && strstr(nfv_error_message(), "gamma"),
          "message names the op and gamma: %s", nfv_error_message());
    CHECK(nfv_instancenorm3d_forward(ctx, &x, NULL, NULL, EPS, &bad_y, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "y of another shape rejected");
    CHECK(strstr(nfv_error_message(), "2x3x5x4x4") && strstr(nfv_error_message(), "2x3x5x4x3"),
          "message names both shapes: %s", nfv_error_message());
    CHECK(nfv_instancenorm3d_forward(ctx, &xq, NULL, NULL, EPS, &xq, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "4-D input rejected");
    CHECK(nfv_instancenorm3d_forward(ctx, &x, &g, NULL, EPS, &y, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "gamma without beta rejected");
    CHECK(nfv_instancenorm3d_forward(ctx, &x, NULL, NULL, EPS, &y, &sm3, NULL) == NFV_ERR_INVALID_ARG,
          "save_mean of one value per channel rejected");
    CHECK(nfv_instancenorm3d_forward(ctx, &x, NULL, NULL, 0.0f, &y, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "eps 0 rejected");
    CHECK(nfv_instancenorm3d_backward(ctx, &x, &bad_y, NULL, &sm, &si, &y, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "dy of another shape rejected");
    CHECK(nfv_instancenorm3d_backward(ctx, &x, &y, NULL, &sm3, &si, &y, NULL, NULL) == NFV_ERR_INVALID_ARG,
          "save_mean of the wrong size rejected in backward");
    CHECK(nfv_instancenorm3d_backward(ctx, &x, &y, NULL, &sm, &si, NULL, &g4, NULL) == NFV_ERR_INVALID_ARG,
          "dgamma of the wrong size rejected");
    nfv_tensor_free(&x), nfv_tensor_free(&y), nfv_tensor_free(&bad_y), nfv_tensor_free(&xq), nfv_tensor_free(&g);
    nfv_tensor_free(&g4), nfv_tensor_free(&sm), nfv_tensor_free(&si), nfv_tensor_free(&sm3);
}
