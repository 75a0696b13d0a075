/* Linear layer (src/linear.c: CLBlast SGEMM or the direct small-batch
 * kernels of cl/dense.cl) against the double reference in tests/ref_dense.c
 * and against central finite differences.  Every test runs both paths
 * (NEUROFV_LINEAR=clblast / direct).  CLBlast compiles each new GEMM shape
 * on first use (seconds on PoCL), so the CLBlast cases cover batch 1 and 3
 * and In/Out in {1, 7, 64} with few distinct shapes; the direct path adds
 * In = 37 (several vector chunks plus a partial one). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_dense.h"
#include "test.h"

typedef struct linear_case { int n, in, out; } linear_case;
static const linear_case CASES[] = {{1, 7, 64}, {3, 64, 7}, {3, 1, 1}, {3, 37, 5}};
#define CASE_COUNT (sizeof CASES / sizeof CASES[0])
static const char *PATHS[] = {"clblast", "direct"};

/* Select the path; the last case runs only on the direct path (cheap shapes). */
static size_t select_path(int p)
{
    setenv("NEUROFV_LINEAR", PATHS[p], 1);
    return p == 0 ? CASE_COUNT - 1 : CASE_COUNT;
}

/* "dx (direct, N=3 In=64 Out=7)" for check messages (static buffer). */
static const char *label(const char *what, int n, int in, int out)
{
    static char buf[160];
    const char *path = getenv("NEUROFV_LINEAR");
    snprintf(buf, sizeof buf, "linear %s (%s, N=%d In=%d Out=%d)", what, path ? path : "default", n, in, out);
    return buf;
}

static double *to_double(const float *f, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

TEST(linear_forward_matches_reference)
{
    nfv_context *ctx = test_ctx();
    for (int path = 0; path < 2; path++)
    for (size_t c = 0, cases = select_path(path); c < cases; c++) {
        const int n = CASES[c].n, in = CASES[c].in, out = CASES[c].out;
        float *xf = test_random((size_t)n * in, 11 + c, -1, 1);
        float *wf = test_random((size_t)out * in, 12 + c, -1, 1);
        float *bf = test_random((size_t)out, 13 + c, -1, 1);
        double *x = to_double(xf, (size_t)n * in), *w = to_double(wf, (size_t)out * in), *b = to_double(bf, out);
        double *want = malloc((size_t)n * out * sizeof *want), *want_nb = malloc((size_t)n * out * sizeof *want_nb);
        ref_linear_forward(n, in, out, x, w, b, want);
        ref_linear_forward(n, in, out, x, w, NULL, want_nb);

        nfv_tensor tx, tw, tb, ty;
        int sx[2] = {n, in}, sw[2] = {out, in}, sb[1] = {out}, sy[2] = {n, out};
        if (CHECK_OK(test_tensor(&tx, 2, sx, xf)) && CHECK_OK(test_tensor(&tw, 2, sw, wf)) &&
            CHECK_OK(test_tensor(&tb, 1, sb, bf)) && CHECK_OK(test_tensor(&ty, 2, sy, NULL))) {
            /* float32 sums of up to 64 products of values in [-1, 1]: rounding
             * stays below ~64 * 6e-8 * 64; 1e-4 leaves room for any order. */
            if (CHECK_OK(nfv_linear_forward(ctx, &tx, &tw, &tb, &ty))) {
                float *y = test_download(&ty);
                if (y) CHECK_CLOSE(label("y with bias", n, in, out), y, want, (size_t)n * out, 1e-4, 1e-4);
                free(y);
            }
            if (CHECK_OK(nfv_linear_forward(ctx, &tx, &tw, NULL, &ty))) {
                float *y = test_download(&ty);
                if (y) CHECK_CLOSE(label("y without bias", n, in, out), y, want_nb, (size_t)n * out, 1e-4, 1e-4);
                free(y);
            }
        }
        nfv_tensor_free(&tx);
        nfv_tensor_free(&tw);
        nfv_tensor_free(&tb);
        nfv_tensor_free(&ty);
        free(xf), free(wf), free(bf), free(x), free(w), free(b), free(want), free(want_nb);
    }
    unsetenv("NEUROFV_LINEAR");
}

TEST(linear_backward_matches_reference)
{
    nfv_context *ctx = test_ctx();
    for (int path = 0; path < 2; path++)
    for (size_t c = 0, cases = select_path(path); c < cases; c++) {
        const int n = CASES[c].n, in = CASES[c].in, out = CASES[c].out;
        float *xf = test_random((size_t)n * in, 21 + c, -1, 1);
        float *wf = test_random((size_t)out * in, 22 + c, -1, 1);
        float *dyf = test_random((size_t)n * out, 23 + c, -1, 1);
        double *x = to_double(xf, (size_t)n * in), *w = to_double(wf, (size_t)out * in);
        double *dy = to_double(dyf, (size_t)n * out);
        double *dx = malloc((size_t)n * in * sizeof *dx), *dw = malloc((size_t)out * in * sizeof *dw);
        double *db = malloc((size_t)out * sizeof *db);
        ref_linear_backward(n, in, out, x, w, dy, dx, dw, db);

        nfv_tensor tx, tw, tdy, tdx, tdw, tdb;
        int sx[2] = {n, in}, sw[2] = {out, in}, sdy[2] = {n, out}, sb[1] = {out};
        if (CHECK_OK(test_tensor(&tx, 2, sx, xf)) && CHECK_OK(test_tensor(&tw, 2, sw, wf)) &&
            CHECK_OK(test_tensor(&tdy, 2, sdy, dyf)) && CHECK_OK(test_tensor(&tdx, 2, sx, NULL)) &&
            CHECK_OK(test_tensor(&tdw, 2, sw, NULL)) && CHECK_OK(test_tensor(&tdb, 1, sb, NULL)) &&
            CHECK_OK(nfv_linear_backward(ctx, &tx, &tw, &tdy, &tdx, &tdw, &tdb))) {
            float *gx = test_download(&tdx), *gw = test_download(&tdw), *gb = test_download(&tdb);
            /* Same float32 rounding budget as the forward (sums of <= 64 terms). */
            if (gx) CHECK_CLOSE(label("dx", n, in, out), gx, dx, (size_t)n * in, 1e-4, 1e-4);
            if (gw) CHECK_CLOSE(label("dw", n, in, out), gw, dw, (size_t)out * in, 1e-4, 1e-4);
            if (gb) CHECK_CLOSE(label("db", n, in, out), gb, db, (size_t)out, 1e-5, 1e-5);
            free(gx), free(gw), free(gb);

            /* Only dx (the visualization path): dw, db and x may be NULL and
             * the others are then left alone. */
            CHECK_OK(nfv_tensor_fill(ctx, &tdw, 123.0f));
            if (CHECK_OK(nfv_linear_backward(ctx, NULL, &tw, &tdy, &tdx, NULL, NULL))) {
                gx = test_download(&tdx);
                gw = test_download(&tdw);
                if (gx) CHECK_CLOSE(label("dx only", n, in, out), gx, dx, (size_t)n * in, 1e-4, 1e-4);
                if (gw) CHECK(gw[0] == 123.0f, "dw untouched when NULL is passed");
                free(gx), free(gw);
            }
        }
        nfv_tensor_free(&tx), nfv_tensor_free(&tw), nfv_tensor_free(&tdy);
        nfv_tensor_free(&tdx), nfv_tensor_free(&tdw), nfv_tensor_free(&tdb);
        free(xf), free(wf), free(dyf), free(x), free(w), free(dy), free(dx), free(dw), free(db);
    }
    unsetenv("NEUROFV_LINEAR");
}

/* Objective L = sum(g * linear(x, w, b)) in double through the reference
 * forward, so its central differences give dL/dx, dL/dw, dL/db. */
static double objective(int n, int in, int out, const double *x, const double *w, const double *b, const double *g)
{
    double *y = malloc((size_t)n * out * sizeof *y), s = 0.0;
    ref_linear_forward(n, in, out, x, w, b, y);
    for (int i = 0; i < n * out; i++) s += g[i] * y[i];
    free(y);
    return s;
}

/* Central differences of `objective` with respect to every entry of p. */
static void finite_diff(int n, int in, int out, double *x, double *w, double *b, const double *g, double *p,
                        size_t count, double *grad)
{
    const double h = 1e-3; /* L is linear in each entry: only rounding error remains */
    for (size_t i = 0; i < count; i++) {
        const double keep = p[i];
        p[i] = keep + h;
        const double up = objective(n, in, out, x, w, b, g);
        p[i] = keep - h;
        const double down = objective(n, in, out, x, w, b, g);
        p[i] = keep;
        grad[i] = (up - down) / (2 * h);
    }
}

TEST(linear_backward_finite_differences)
{
    nfv_context *ctx = test_ctx();
    const int n = 3, in = 64, out = 7; /* a shape already compiled above */
    float *xf = test_random((size_t)n * in, 31, -1, 1), *wf = test_random((size_t)out * in, 32, -1, 1);
    float *bf = test_random(out, 33, -1, 1), *gf = test_random((size_t)n * out, 34, -1, 1);
    double *x = to_double(xf, (size_t)n * in), *w = to_double(wf, (size_t)out * in), *b = to_double(bf, out);
    double *g = to_double(gf, (size_t)n * out);
    double *fx = malloc((size_t)n * in * sizeof *fx), *fw = malloc((size_t)out * in * sizeof *fw);
    double *fb = malloc((size_t)out * sizeof *fb);
    finite_diff(n, in, out, x, w, b, g, x, (size_t)n * in, fx);
    finite_diff(n, in, out, x, w, b, g, w, (size_t)out * in, fw);
    finite_diff(n, in, out, x, w, b, g, b, (size_t)out, fb);

    for (int path = 0; path < 2; path++) {
        select_path(path);
        nfv_tensor tx, tw, tdy, tdx, tdw, tdb;
        int sx[2] = {n, in}, sw[2] = {out, in}, sdy[2] = {n, out}, sb[1] = {out};
        if (CHECK_OK(test_tensor(&tx, 2, sx, xf)) && CHECK_OK(test_tensor(&tw, 2, sw, wf)) &&
            CHECK_OK(test_tensor(&tdy, 2, sdy, gf)) && CHECK_OK(test_tensor(&tdx, 2, sx, NULL)) &&
            CHECK_OK(test_tensor(&tdw, 2, sw, NULL)) && CHECK_OK(test_tensor(&tdb, 1, sb, NULL)) &&
            CHECK_OK(nfv_linear_backward(ctx, &tx, &tw, &tdy, &tdx, &tdw, &tdb))) {
            float *gx = test_download(&tdx), *gw = test_download(&tdw), *gb = test_download(&tdb);
            /* float32 GEMM vs exact derivatives of a linear map: 1e-4 as above. */
            if (gx) CHECK_CLOSE(label("dx vs finite differences", n, in, out), gx, fx, (size_t)n * in, 1e-4, 1e-4);
            if (gw) CHECK_CLOSE(label("dw vs finite differences", n, in, out), gw, fw, (size_t)out * in, 1e-4, 1e-4);
            if (gb) CHECK_CLOSE(label("db vs finite differences", n, in, out), gb, fb, (size_t)out, 1e-4, 1e-4);
            free(gx), free(gw), free(gb);
        }
        nfv_tensor_free(&tx), nfv_tensor_free(&tw), nfv_tensor_free(&tdy);
        nfv_tensor_free(&tdx), nfv_tensor_free(&tdw), nfv_tensor_free(&tdb);
    }
    unsetenv("NEUROFV_LINEAR");
    free(xf), free(wf), free(bf), free(gf), free(x), free(w), free(b), free(g), free(fx), free(fw), free(fb);
}

TEST(linear_bad_shapes)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor x, w, w_bad, b_bad, y, y_bad, dw_bad, dy;
    int sx[2] = {3, 7}, sw[2] = {64, 7}, swb[2] = {64, 8}, sbb[1] = {63}, sy[2] = {3, 64}, syb[2] = {2, 64},
        sdwb[2] = {7, 64};
    if (!CHECK_OK(test_tensor(&x, 2, sx, NULL)) || !CHECK_OK(test_tensor(&w, 2, sw, NULL)) ||
        !CHECK_OK(test_tensor(&w_bad, 2, swb, NULL)) || !CHECK_OK(test_tensor(&b_bad, 1, sbb, NULL)) ||
        !CHECK_OK(test_tensor(&y, 2, sy, NULL)) || !CHECK_OK(test_tensor(&y_bad, 2, syb, NULL)) ||
        !CHECK_OK(test_tensor(&dw_bad, 2, sdwb, NULL)) || !CHECK_OK(test_tensor(&dy, 2, sy, NULL)))
        return;
    nfv_status s = nfv_linear_forward(ctx, &x, &w_bad, NULL, &y);
    CHECK(s == NFV_ERR_INVALID_ARG, "In mismatch rejected, got %s", nfv_status_name(s));
    CHECK(strstr(nfv_error_message(), "linear forward") && strstr(nfv_error_message(), "3x7"),
          "message names the op and the shape: %s", nfv_error_message());
    s = nfv_linear_forward(ctx, &x, &w, &b_bad, &y);
    CHECK(s == NFV_ERR_INVALID_ARG, "bias length mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_linear_forward(ctx, &x, &w, NULL, &y_bad);
    CHECK(s == NFV_ERR_INVALID_ARG, "output batch mismatch rejected, got %s", nfv_status_name(s));
    s = nfv_linear_backward(ctx, &x, &w, &dy, NULL, &dw_bad, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "transposed dw rejected, got %s", nfv_status_name(s));
    s = nfv_linear_backward(ctx, NULL, &w, &dy, NULL, &w, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "dw without x rejected, got %s", nfv_status_name(s));
    s = nfv_linear_backward(ctx, &x, &w, &y_bad, &x, NULL, NULL);
    CHECK(s == NFV_ERR_INVALID_ARG, "dy batch mismatch rejected, got %s", nfv_status_name(s));
    nfv_tensor_free(&x), nfv_tensor_free(&w), nfv_tensor_free(&w_bad), nfv_tensor_free(&b_bad);
    nfv_tensor_free(&y), nfv_tensor_free(&y_bad), nfv_tensor_free(&dw_bad), nfv_tensor_free(&dy);
}
