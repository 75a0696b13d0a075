/* Graph ops: Add (aliasing), channel Concat (three inputs at offsets 0 and
 * beyond, 5-D and (N, F)), constant Pad (asymmetric, non-zero value) and its
 * crop, Softmax / LogSoftmax over channels (large logits): forward vs the
 * double references (tests/ref_graph.c), backward vs central finite
 * differences of sum(w * forward) and the references, bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_graph.h"
#include "ref_layers.h"
#include "test.h"

/* sum(w * f(x)) for a forward f given as a callback: the loss whose gradient
 * a backward computes when dy = w. */
typedef struct fd_loss {
    void (*fwd)(const double *x, double *y, const void *op);
    const void *op;
    const double *w;
    double *y;
    size_t ny;
} fd_loss;

static double fd_loss_fn(const double *x, void *user)
{
    fd_loss *l = user;
    l->fwd(x, l->y, l->op);
    double s = 0.0;
    for (size_t i = 0; i < l->ny; i++) s += l->w[i] * l->y[i];
    return s;
}

/* The gradient of sum(w * fwd(x)) by central differences (x has nx values). */
static double *fd_grad(void (*fwd)(const double *, double *, const void *), const void *op, double *x, size_t nx,
                       const double *w, size_t ny, double h)
{
    fd_loss l = {fwd, op, w, malloc(ny * sizeof(double)), ny};
    double *g = malloc(nx * sizeof *g);
    ref_fd_gradient(fd_loss_fn, &l, x, nx, h, g);
    free(l.y);
    return g;
}

static size_t numel_of(int ndim, const int *s) { return nfv_shape_numel(ndim, s); }

/* ---- Add --------------------------------------------------------------- */

TEST(graph_add_matches_reference)
{
    nfv_context *ctx = test_ctx();
    static const int shapes[][5] = {{2, 3, 5, 7, 9}, {1, 1, 1, 1, 3}, {3, 17, 1, 1, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int *s = shapes[si];
        size_t n = numel_of(5, s);
        float *ha = test_random(n, 100 + (unsigned)si, -2.0f, 2.0f), *hb = test_random(n, 200 + (unsigned)si, -2.0f, 2.0f);
        double *a = rl_to_double(ha, n), *b = rl_to_double(hb, n), *want = malloc(n * sizeof *want);
        ref_add(a, b, want, n);
        nfv_tensor ta, tb, ty;
        CHECK_OK(test_tensor(&ta, 5, s, ha));
        CHECK_OK(test_tensor(&tb, 5, s, hb));
        CHECK_OK(test_tensor(&ty, 5, s, NULL));
        CHECK_OK(nfv_add_forward(ctx, &ta, &tb, &ty));
        float *gy = test_download(&ty);
        /* One float add: within half an ulp of the exact sum. */
        if (gy) CHECK_CLOSE("add", gy, want, n, 0.0, 6e-8);
        CHECK_OK(nfv_add_forward(ctx, &ta, &tb, &ta)); /* y is a */
        float *g1 = test_download(&ta);
        if (g1) CHECK_CLOSE("add into a", g1, want, n, 0.0, 6e-8);
        CHECK_OK(nfv_tensor_upload(ctx, &ta, ha));
        CHECK_OK(nfv_add_forward(ctx, &ta, &tb, &tb)); /* y is b */
        float *g2 = test_download(&tb);
        if (g2) CHECK_CLOSE("add into b", g2, want, n, 0.0, 6e-8);
        free(ha), free(hb), free(a), free(b), free(want), free(gy), free(g1), free(g2);
        nfv_tensor_free(&ta), nfv_tensor_free(&tb), nfv_tensor_free(&ty);
    }
}

/* ---- Concat ------------------------------------------------------------ */

typedef struct concat_op {
    int n, ci, off, ct;
    size_t s;
} concat_op;

static void concat_fwd(const double *x, double *y, const void *user)
{
    const concat_op *o = user;
    memset(y, 0, (size_t)o->n * o->ct * o->s * sizeof *y);
    ref_concat_channels(x, o->n, o->ci, o->s, o->off, o->ct, y);
}

/* Three inputs of cs[0..2] channels concatenated into y of their sum, then
 * each input's gradient sliced back; shape is (N, C, spatial...) with ndim dims. */
static void check_concat(int ndim, const int *shape, const int cs[3])
{
    nfv_context *ctx = test_ctx();
    int n = shape[0], ct = cs[0] + cs[1] + cs[2], ys[5];
    memcpy(ys, shape, (size_t)ndim * sizeof(int));
    ys[1] = ct;
    size_t s = 1;
    for (int i = 2; i < ndim; i++) s *= (size_t)shape[i];
    size_t ny = (size_t)n * ct * s;
    double *want = malloc(ny * sizeof *want);
    for (size_t i = 0; i < ny; i++) want[i] = -7.0;
    float *hw = test_random(ny, 301, -1.0f, 1.0f);
    double *w = rl_to_double(hw, ny);
    nfv_tensor ty, tdy;
    CHECK_OK(test_tensor(&ty, ndim, ys, NULL));
    CHECK_OK(test_tensor(&tdy, ndim, ys, hw));
    CHECK_OK(nfv_tensor_fill(ctx, &ty, -7.0f));
    float *hx[3];
    double *x[3];
    int off = 0;
    char what[96];
    for (int i = 0; i < 3; off += cs[i], i++) {
        int xs[5];
        memcpy(xs, shape, (size_t)ndim * sizeof(int));
        xs[1] = cs[i];
        size_t nx = numel_of(ndim, xs);
        hx[i] = test_random(nx, 310 + (unsigned)i, -3.0f, 3.0f);
        x[i] = rl_to_double(hx[i], nx);
        ref_concat_channels(x[i], n, cs[i], s, off, ct, want);
        nfv_tensor tx, tdx;
        CHECK_OK(test_tensor(&tx, ndim, xs, hx[i]));
        CHECK_OK(test_tensor(&tdx, ndim, xs, NULL));
        CHECK_OK(nfv_concat_channels_forward(ctx, &tx, off, &ty));
        /* Backward: dx = the slice of dy, against FD of sum(w * concat(x)) and the reference. */
        concat_op o = {n, cs[i], off, ct, s};
        double *fd = fd_grad(concat_fwd, &o, x[i], nx, w, ny, 1e-3), *rdx = malloc(nx * sizeof *rdx);
        ref_concat_channels_backward(w, n, ct, s, off, cs[i], rdx);
        CHECK_OK(nfv_concat_channels_backward(ctx, &tdy, off, &tdx));
        float *gdx = test_download(&tdx);
        snprintf(what, sizeof what, "concat backward, input %d at channel %d of %d (ndim %d)", i, off, ct, ndim);
        /* A copy: exact against the reference; FD of a linear map to rounding. */
        if (gdx) CHECK_CLOSE(what, gdx, rdx, nx, 0.0, 0.0);
        if (gdx) CHECK_CLOSE(what, gdx, fd, nx, 1e-9, 1e-9);
        free(fd), free(rdx), free(gdx);
        nfv_tensor_free(&tx), nfv_tensor_free(&tdx);
    }
    float *gy = test_download(&ty);
    snprintf(what, sizeof what, "concat forward of %d + %d + %d channels (ndim %d)", cs[0], cs[1], cs[2], ndim);
    if (gy) CHECK_CLOSE(what, gy, want, ny, 0.0, 0.0);
    for (int i = 0; i < 3; i++) free(hx[i]), free(x[i]);
    free(want), free(hw), free(w), free(gy);
    nfv_tensor_free(&ty), nfv_tensor_free(&tdy);
}

TEST(graph_concat_forward_backward)
{
    static const int s5[5] = {2, 0, 3, 5, 7}, s2[2] = {2, 0}, s1[5] = {3, 0, 1, 1, 1};
    static const int c5[3] = {2, 3, 1}, c2[3] = {5, 3, 4}, c1[3] = {1, 17, 2};
    check_concat(5, s5, c5);
    check_concat(2, s2, c2);
    check_concat(5, s1, c1);
}

/* ---- Pad --------------------------------------------------------------- */

typedef struct pad_op {
    int planes, d, h, w;
    const int *begin, *end;
    double value;
} pad_op;

static void pad_fwd(const double *x, double *y, const void *user)
{
    const pad_op *o = user;
    ref_pad3d(x, o->planes, o->d, o->h, o->w, o->begin, o->end, o->value, y);
}

static const struct {
    int shape[5], begin[3], end[3];
    float value;
} PADS[] = {
    {{2, 3, 5, 4, 7}, {1, 0, 3}, {2, 4, 0}, -1.5f},
    {{1, 2, 3, 3, 3}, {0, 0, 0}, {0, 0, 0}, 2.0f},
    {{2, 1, 2, 3, 3}, {0, 2, 9}, {1, 0, 17}, 0.25f},
    {{1, 1, 1, 1, 1}, {2, 1, 0}, {0, 3, 5}, 7.0f},
};

TEST(graph_pad_forward_matches_reference)
{
    nfv_context *ctx = test_ctx();
    for (size_t pi = 0; pi < sizeof PADS / sizeof PADS[0]; pi++) {
        const int *s = PADS[pi].shape, *b = PADS[pi].begin, *e = PADS[pi].end;
        int ys[5] = {s[0], s[1], s[2] + b[0] + e[0], s[3] + b[1] + e[1], s[4] + b[2] + e[2]};
        size_t nx = numel_of(5, s), ny = numel_of(5, ys);
        float *hx = test_random(nx, 400 + (unsigned)pi, -3.0f, 3.0f);
        double *x = rl_to_double(hx, nx), *want = malloc(ny * sizeof *want);
        ref_pad3d(x, s[0] * s[1], s[2], s[3], s[4], b, e, PADS[pi].value, want);
        nfv_tensor tx, ty;
        CHECK_OK(test_tensor(&tx, 5, s, hx));
        CHECK_OK(test_tensor(&ty, 5, ys, NULL));
        CHECK_OK(nfv_tensor_fill(ctx, &ty, NAN));
        CHECK_OK(nfv_pad3d_forward(ctx, b, e, PADS[pi].value, &tx, &ty));
        float *gy = test_download(&ty);
        char what[128];
        snprintf(what, sizeof what, "pad3d %dx%dx%dx%dx%d by (%d,%d,%d)/(%d,%d,%d) value %g", s[0], s[1], s[2], s[3],
                 s[4], b[0], b[1], b[2], e[0], e[1], e[2], PADS[pi].value);
        if (gy) CHECK_CLOSE(what, gy, want, ny, 0.0, 0.0); /* a copy: exact */
        free(hx), free(x), free(want), free(gy);
        nfv_tensor_free(&tx), nfv_tensor_free(&ty);
    }
}

TEST(graph_pad_backward_finite_differences)
{
    nfv_context *ctx = test_ctx();
    for (size_t pi = 0; pi < sizeof PADS / sizeof PADS[0]; pi++) {
        const int *s = PADS[pi].shape, *b = PADS[pi].begin, *e = PADS[pi].end;
        int ys[5] = {s[0], s[1], s[2] + b[0] + e[0], s[3] + b[1] + e[1], s[4] + b[2] + e[2]};
        size_t nx = numel_of(5, s), ny = numel_of(5, ys);
        float *hx = test_random(nx, 410 + (unsigned)pi, -3.0f, 3.0f), *hw = test_random(ny, 420 + (unsigned)pi, -1.0f, 1.0f);
        double *x = rl_to_double(hx, nx), *w = rl_to_double(hw, ny), *rdx = malloc(nx * sizeof *rdx);
        pad_op o = {s[0] * s[1], s[2], s[3], s[4], b, e, PADS[pi].value};
        double *fd = fd_grad(pad_fwd, &o, x, nx, w, ny, 1e-3);
        ref_pad3d_backward(w, s[0] * s[1], s[2], s[3], s[4], b, e, rdx);
        nfv_tensor tdy, tdx;
        CHECK_OK(test_tensor(&tdy, 5, ys, hw));
        CHECK_OK(test_tensor(&tdx, 5, s, NULL));
        CHECK_OK(nfv_pad3d_backward(ctx, b, e, &tdy, &tdx));
        float *gdx = test_download(&tdx);
        char what[96];
        snprintf(what, sizeof what, "pad3d backward %dx%dx%dx%dx%d", s[0], s[1], s[2], s[3], s[4]);
        /* A crop: exact against the reference; FD of a linear map to rounding. */
        if (gdx) CHECK_CLOSE(what, gdx, rdx, nx, 0.0, 0.0);
        if (gdx) CHECK_CLOSE(what, gdx, fd, nx, 1e-9, 1e-9);
        free(hx), free(hw), free(x), free(w), free(rdx), free(fd), free(gdx);
        nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
    }
}

/* ---- Softmax ----------------------------------------------------------- */

/* S = 84 (a multiple of 4, not of 8 or 16), 45 (odd), 1 ((N, C)), and one channel. */
static const struct {
    int ndim, shape[5];
} SOFTMAX_SHAPES[] = {{5, {2, 5, 3, 4, 7}}, {5, {2, 7, 3, 5, 3}}, {2, {3, 10}}, {5, {2, 1, 3, 3, 3}}};

static void softmax_run(int use_log, int ndim, const int *s, const float *hx, float **gy)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor tx, ty;
    CHECK_OK(test_tensor(&tx, ndim, s, hx));
    CHECK_OK(test_tensor(&ty, ndim, s, NULL));
    CHECK_OK(nfv_softmax_forward(ctx, use_log, &tx, &ty));
    *gy = test_download(&ty);
    nfv_tensor_free(&tx), nfv_tensor_free(&ty);
}

TEST(graph_softmax_forward_matches_reference)
{
    for (size_t si = 0; si < sizeof SOFTMAX_SHAPES / sizeof SOFTMAX_SHAPES[0]; si++)
        for (int use_log = 0; use_log < 2; use_log++) {
            int ndim = SOFTMAX_SHAPES[si].ndim;
            const int *s = SOFTMAX_SHAPES[si].shape;
            size_t n = numel_of(ndim, s), sp = n / ((size_t)s[0] * s[1]);
            float *hx = test_random(n, 500 + (unsigned)si, -4.0f, 4.0f), *gy;
            double *x = rl_to_double(hx, n), *want = malloc(n * sizeof *want);
            ref_softmax(use_log, x, s[0], s[1], sp, want);
            softmax_run(use_log, ndim, s, hx, &gy);
            char what[96];
            snprintf(what, sizeof what, "%s forward, shape %zu (C %d, S %zu)", use_log ? "log_softmax" : "softmax", si,
                     s[1], sp);
            /* exp and log within a few ulp, sums of <= 10 terms: 1e-6 absolute, 1e-5 relative. */
            if (gy) CHECK_CLOSE(what, gy, want, n, 1e-6, 1e-5);
            free(hx), free(x), free(want), free(gy);
        }
}

/* Logits around +-1e4 and spread 60 apart (exp overflows float past 88): the
 * max subtraction keeps every value finite and accurate. */
TEST(graph_softmax_large_logits_stable)
{
    static const int s[5] = {2, 6, 3, 1, 5};
    size_t n = numel_of(5, s), sp = n / 12;
    float *hx = test_random(n, 600, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) {
        int b = (int)(i / (6 * sp)), c = (int)((i / sp) % 6);
        hx[i] = (b ? -1e4f : 1e4f) + 60.0f * (float)c * (c % 2 ? -1.0f : 1.0f) + 5.0f * hx[i];
    }
    double *x = rl_to_double(hx, n), *want = malloc(n * sizeof *want);
    for (int use_log = 0; use_log < 2; use_log++) {
        float *gy;
        ref_softmax(use_log, x, s[0], s[1], sp, want);
        softmax_run(use_log, 5, s, hx, &gy);
        int finite = 1;
        for (size_t i = 0; gy && i < n; i++) finite &= isfinite(gy[i]) != 0;
        CHECK(gy && finite, "%s of logits near 1e4: every value finite", use_log ? "log_softmax" : "softmax");
        /* x - max is exact here (same binade), so the usual 1e-6 / 1e-5; log-softmax
         * values reach -600, hence the relative part. */
        if (gy) CHECK_CLOSE(use_log ? "log_softmax, large logits" : "softmax, large logits", gy, want, n, 1e-6, 1e-5);
        free(gy);
    }
    free(hx), free(x), free(want);
}

typedef struct softmax_op {
    int use_log, n, c;
    size_t s;
} softmax_op;

static void softmax_fwd(const double *x, double *y, const void *user)
{
    const softmax_op *o = user;
    ref_softmax(o->use_log, x, o->n, o->c, o->s, y);
}

TEST(graph_softmax_backward_finite_differences)
{
    nfv_context *ctx = test_ctx();
    for (size_t si = 0; si < sizeof SOFTMAX_SHAPES / sizeof SOFTMAX_SHAPES[0]; si++)
        for (int use_log = 0; use_log < 2; use_log++) {
            int ndim = SOFTMAX_SHAPES[si].ndim;
            const int *s = SOFTMAX_SHAPES[si].shape;
            size_t n = numel_of(ndim, s), sp = n / ((size_t)s[0] * s[1]);
            float *hx = test_random(n, 700 + (unsigned)si, -3.0f, 3.0f), *hw = test_random(n, 710 + (unsigned)si, -1.0f, 1.0f);
            double *x = rl_to_double(hx, n), *w = rl_to_double(hw, n), *y = malloc(n * sizeof *y),
                   *rdx = malloc(n * sizeof *rdx);
            softmax_op o = {use_log, s[0], s[1], sp};
            /* Smooth: h = 1e-4 gives truncation ~1e-9 and rounding ~1e-12. */
            double *fd = fd_grad(softmax_fwd, &o, x, n, w, n, 1e-4);
            ref_softmax(use_log, x, s[0], s[1], sp, y);
            ref_softmax_backward(use_log, y, w, s[0], s[1], sp, rdx);
            nfv_tensor tx, ty, tdy, tdx;
            CHECK_OK(test_tensor(&tx, ndim, s, hx));
            CHECK_OK(test_tensor(&ty, ndim, s, NULL));
            CHECK_OK(test_tensor(&tdy, ndim, s, hw));
            CHECK_OK(test_tensor(&tdx, ndim, s, NULL));
            CHECK_OK(nfv_softmax_forward(ctx, use_log, &tx, &ty));
            CHECK_OK(nfv_softmax_backward(ctx, use_log, &ty, &tdy, &tdx));
            CHECK_OK(nfv_softmax_backward(ctx, use_log, &ty, &tdy, &tdy)); /* dx is dy */
            float *gdx = test_download(&tdx), *gin = test_download(&tdy);
            char what[96];
            snprintf(what, sizeof what, "%s backward vs FD, shape %zu (C %d, S %zu)",
                     use_log ? "log_softmax" : "softmax", si, s[1], sp);
            /* Products and sums of <= 10 float terms of magnitude <~ 1: 2e-6 absolute, 1e-5 relative. */
            if (gdx) CHECK_CLOSE(what, gdx, fd, n, 2e-6, 1e-5);
            if (gdx) CHECK_CLOSE("vs the analytic reference", gdx, rdx, n, 2e-6, 1e-5);
            if (gin) CHECK_CLOSE("in place (dx is dy)", gin, fd, n, 2e-6, 1e-5);
            free(hx), free(hw), free(x), free(w), free(y), free(rdx), free(fd), free(gdx), free(gin);
            nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
        }
}

/* ---- Bad arguments ----------------------------------------------------- */

static int message_has(const char *a, const char *b)
{
    const char *m = nfv_error_message();
    return strstr(m, a) != NULL && (!b || strstr(m, b) != NULL);
}

TEST(graph_bad_args_rejected)
{
    nfv_context *ctx = test_ctx();
    int s1[5] = {2, 3, 5, 4, 3}, s2[5] = {2, 3, 5, 4, 4}, s3[5] = {2, 6, 5, 4, 3}, s4[5] = {3, 6, 5, 4, 3};
    int f2[2] = {2, 3}, p1[5] = {2, 3, 8, 4, 5};
    nfv_tensor a, b, c6, n3, f, p;
    CHECK_OK(test_tensor(&a, 5, s1, NULL));
    CHECK_OK(test_tensor(&b, 5, s2, NULL));
    CHECK_OK(test_tensor(&c6, 5, s3, NULL));
    CHECK_OK(test_tensor(&n3, 5, s4, NULL));
    CHECK_OK(test_tensor(&f, 2, f2, NULL));
    CHECK_OK(test_tensor(&p, 5, p1, NULL));
    CHECK(nfv_add_forward(ctx, &a, &b, &a) == NFV_ERR_INVALID_ARG, "add of different sizes rejected");
    CHECK(message_has("add", "2x3x5x4x4"), "message names add and the shape: %s", nfv_error_message());
    CHECK(nfv_concat_channels_forward(ctx, &a, 4, &c6) == NFV_ERR_INVALID_ARG, "concat past the last channel rejected");
    CHECK(message_has("concat channels forward", "2x6x5x4x3"), "message names the op and y: %s", nfv_error_message());
    CHECK(nfv_concat_channels_forward(ctx, &a, -1, &c6) == NFV_ERR_INVALID_ARG, "negative offset rejected");
    CHECK(nfv_concat_channels_forward(ctx, &a, 0, &n3) == NFV_ERR_INVALID_ARG, "other batch size rejected");
    CHECK(nfv_concat_channels_forward(ctx, &b, 0, &c6) == NFV_ERR_INVALID_ARG, "other spatial size rejected");
    CHECK(nfv_concat_channels_backward(ctx, &c6, 0, &f) == NFV_ERR_INVALID_ARG, "2-D dx for 5-D dy rejected");
    CHECK(message_has("concat channels backward", "2x3"), "message names the op and dx: %s", nfv_error_message());
    int b0[3] = {1, 0, 1}, e0[3] = {2, 0, 1}, neg[3] = {-1, 0, 0};
    CHECK_OK(nfv_pad3d_forward(ctx, b0, e0, 0.0f, &a, &p));
    CHECK(nfv_pad3d_forward(ctx, b0, b0, 0.0f, &a, &p) == NFV_ERR_INVALID_ARG, "pad to the wrong size rejected");
    CHECK(message_has("pad3d forward", "2x3x8x4x5"), "message names the op and y: %s", nfv_error_message());
    CHECK(nfv_pad3d_forward(ctx, neg, e0, 0.0f, &a, &p) == NFV_ERR_INVALID_ARG, "negative pad rejected");
    CHECK(nfv_pad3d_backward(ctx, b0, e0, &a, &p) == NFV_ERR_INVALID_ARG, "crop of dy smaller than dx rejected");
    CHECK(message_has("pad3d backward", NULL), "message names the op: %s", nfv_error_message());
    CHECK(nfv_softmax_forward(ctx, 0, &a, &b) == NFV_ERR_INVALID_ARG, "softmax into another shape rejected");
    CHECK(message_has("softmax forward", "2x3x5x4x4"), "message names the op and y: %s", nfv_error_message());
    CHECK(nfv_softmax_backward(ctx, 1, &a, &a, &b) == NFV_ERR_INVALID_ARG, "log_softmax dx of another shape rejected");
    CHECK(message_has("log_softmax backward", NULL), "message names the op: %s", nfv_error_message());
    CHECK(nfv_softmax_forward(ctx, 0, &a, NULL) == NFV_ERR_INVALID_ARG, "NULL y rejected");
    nfv_tensor_free(&a), nfv_tensor_free(&b), nfv_tensor_free(&c6), nfv_tensor_free(&n3), nfv_tensor_free(&f);
    nfv_tensor_free(&p);
}
