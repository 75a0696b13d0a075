/* Transforms for transformation robustness: pad, jitter, affine warp.  Each
 * forward against the double reference of ref_vis.c, each adjoint by the
 * dot-product test <T x, y> = <x, T* y> and against the gradient of
 * L(x) = <T_ref x, y> by central finite differences in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "neurofv/vis_ops.h"
#include "ref_vis.h"
#include "test.h"

/* <T x, y> and <x, T* y> agree: both sums are of ~2000 float products of
 * size <= 1, so a relative 1e-5 of the magnitude is float round-off. */
static void check_dot(const char *what, const float *tx, const float *y, size_t ny, const float *x, const float *tty,
                      size_t nx)
{
    double l = ref_dot_f(tx, y, ny), r = ref_dot_f(x, tty, nx), mag = 0;
    for (size_t i = 0; i < ny; i++) mag += fabs((double)tx[i] * y[i]);
    CHECK(fabs(l - r) <= 1e-5 * mag + 1e-7, "%s: <Tx,y> = %.9g, <x,T*y> = %.9g (|diff| %.3g, scale %.3g)", what, l,
          r, fabs(l - r), mag);
}

/* Gradient of L(x) = <T_ref x, y> is T* y: central differences in double of
 * the reference forward, compared with the device adjoint.  T is linear, so
 * the difference is exact up to double round-off; the tolerance is the
 * float round-off of the adjoint. */
typedef void (*ref_forward_fn)(const void *params, const double *x, double *y);
static void check_fd(const char *what, ref_forward_fn fwd, const void *params, const float *x, size_t nx,
                     const float *y, size_t ny, const float *tty)
{
    double *xd = ref_to_double(x, nx), *out = malloc(ny * sizeof *out), *grad = malloc(nx * sizeof *grad);
    const double h = 1e-3;
    for (size_t i = 0; i < nx; i++) {
        double keep = xd[i], lp = 0, lm = 0;
        xd[i] = keep + h;
        fwd(params, xd, out);
        for (size_t j = 0; j < ny; j++) lp += out[j] * y[j];
        xd[i] = keep - h;
        fwd(params, xd, out);
        for (size_t j = 0; j < ny; j++) lm += out[j] * y[j];
        xd[i] = keep;
        grad[i] = (lp - lm) / (2 * h);
    }
    CHECK_CLOSE(what, tty, grad, nx, 1e-5, 1e-5);
    free(xd);
    free(out);
    free(grad);
}

/* ---- pad ---------------------------------------------------------------- */

typedef struct { int pad[3], rep, n, dims[3]; double value; } pad_params;
static void pad_ref_fn(const void *p, const double *x, double *y)
{
    const pad_params *q = p;
    ref_pad(q->pad, q->rep, q->value, x, q->n, q->dims, y);
}
/* The adjoint is of the linear part (the constant does not depend on x). */
static void pad_ref_linear(const void *p, const double *x, double *y)
{
    pad_params q = *(const pad_params *)p;
    q.value = 0;
    pad_ref_fn(&q, x, y);
}

TEST(vis_pad_forward_adjoint)
{
    const int n = 3, pad[3] = {2, 3, 1};
    const int shape[5] = {n, 1, 7, 9, 11}, pshape[5] = {n, 1, 11, 15, 13};
    size_t nx = (size_t)n * 7 * 9 * 11, ny = (size_t)n * 11 * 15 * 13;
    float *x = test_random(nx, 1, -1, 1), *y = test_random(ny, 2, -1, 1);
    nfv_tensor tx, ty, tp, tg;
    CHECK_OK(test_tensor(&tx, 5, shape, x));
    CHECK_OK(test_tensor(&ty, 5, pshape, y));
    CHECK_OK(test_tensor(&tp, 5, pshape, NULL));
    CHECK_OK(test_tensor(&tg, 5, shape, NULL));
    for (int rep = 0; rep < 2; rep++) {
        pad_params pp = {{pad[0], pad[1], pad[2]}, rep, n, {7, 9, 11}, 0.25};
        double *want = malloc(ny * sizeof *want), *xd = ref_to_double(x, nx);
        pad_ref_fn(&pp, xd, want);
        nfv_boundary mode = rep ? NFV_BOUNDARY_REPLICATE : NFV_BOUNDARY_ZERO;
        CHECK_OK(nfv_pad(test_ctx(), pad, mode, 0.25f, &tx, &tp));
        CHECK_OK(nfv_pad_adjoint(test_ctx(), pad, mode, &ty, &tg));
        float *got = test_download(&tp), *tty = test_download(&tg);
        if (got) CHECK_CLOSE(rep ? "pad replicate" : "pad constant", got, want, ny, 0, 0); /* copies: exact */
        if (got && tty) {
            /* Dot test on the linear part: subtract the constant's contribution. */
            double *lin = malloc(ny * sizeof *lin);
            pad_ref_linear(&pp, xd, lin);
            float *linf = malloc(ny * sizeof *linf);
            for (size_t i = 0; i < ny; i++) linf[i] = (float)lin[i];
            check_dot(rep ? "pad replicate dot" : "pad constant dot", linf, y, ny, x, tty, nx);
            check_fd(rep ? "pad replicate adjoint vs FD" : "pad constant adjoint vs FD", pad_ref_linear, &pp, x, nx,
                     y, ny, tty);
            free(lin);
            free(linf);
        }
        free(got);
        free(tty);
        free(want);
        free(xd);
    }
    /* Padding a single-voxel axis with replicate: every copy flows back to it. */
    {
        const int s1[5] = {1, 1, 1, 2, 3}, s2[5] = {1, 1, 5, 2, 3}, p1[3] = {2, 0, 0};
        float ones[30];
        for (int i = 0; i < 30; i++) ones[i] = 1.0f;
        nfv_tensor a, b;
        CHECK_OK(test_tensor(&a, 5, s1, NULL));
        CHECK_OK(test_tensor(&b, 5, s2, ones));
        CHECK_OK(nfv_pad_adjoint(test_ctx(), p1, NFV_BOUNDARY_REPLICATE, &b, &a));
        float *g = test_download(&a);
        double five[6] = {5, 5, 5, 5, 5, 5};
        if (g) CHECK_CLOSE("replicate adjoint on a 1-voxel axis", g, five, 6, 0, 0);
        free(g);
        nfv_tensor_free(&a);
        nfv_tensor_free(&b);
    }
    CHECK(nfv_pad(test_ctx(), pad, NFV_BOUNDARY_ZERO, 0, &tx, &tx) == NFV_ERR_INVALID_ARG, "wrong padded shape rejected");
    free(x);
    free(y);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&ty);
    nfv_tensor_free(&tp);
    nfv_tensor_free(&tg);
}

/* ---- jitter ------------------------------------------------------------- */

typedef struct { const int *shift; int n, dims[3]; } jit_params;
static void jit_ref_fn(const void *p, const double *x, double *y)
{
    const jit_params *q = p;
    ref_jitter(q->shift, x, q->n, q->dims, y);
}

/* Rows of W voxels, n = 3 samples with their own shifts (the first one's
 * along D larger than the axis: everything falls out). */
static void jitter_case(int D, int H, int W)
{
    const int n = 3, dims[3] = {D, H, W}, shape[5] = {n, 1, D, H, W};
    size_t nx = (size_t)n * D * H * W;
    int shift[9];
    uint64_t streams[3] = {42, 43, 44};
    nfv_random_transforms(streams, n, dims, dims, 1, 1, 0, 3, NULL, shift);
    shift[0] = -(D + 1);
    float *x = test_random(nx, 3, -1, 1), *y = test_random(nx, 4, -1, 1);
    double *xd = ref_to_double(x, nx), *want = malloc(nx * sizeof *want);
    jit_params jp = {shift, n, {D, H, W}};
    jit_ref_fn(&jp, xd, want);
    nfv_tensor tx, ty, tj, tg;
    CHECK_OK(test_tensor(&tx, 5, shape, x));
    CHECK_OK(test_tensor(&ty, 5, shape, y));
    CHECK_OK(test_tensor(&tj, 5, shape, NULL));
    CHECK_OK(test_tensor(&tg, 5, shape, NULL));
    CHECK_OK(nfv_jitter(test_ctx(), shift, 0, &tx, &tj));
    CHECK_OK(nfv_jitter(test_ctx(), shift, 1, &ty, &tg));
    float *got = test_download(&tj), *tty = test_download(&tg);
    if (got) CHECK_CLOSE("jitter", got, want, nx, 0, 0); /* copies: exact */
    if (got && tty) {
        check_dot("jitter dot", got, y, nx, x, tty, nx);
        check_fd("jitter adjoint vs FD", jit_ref_fn, &jp, x, nx, y, nx, tty);
    }
    int nonzero = 0;
    for (int i = 3; i < 9; i++) nonzero |= shift[i] != 0;
    CHECK(nonzero, "random shifts are not all zero");
    free(got);
    free(tty);
    free(x);
    free(y);
    free(xd);
    free(want);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&ty);
    nfv_tensor_free(&tj);
    nfv_tensor_free(&tg);
}

/* W = 11: every row narrower than a vector; W = 37: whole vectors (16 or
 * fewer floats) inside rows and partial ones at their ends. */
TEST(vis_jitter_forward_adjoint)
{
    jitter_case(7, 9, 11);
    jitter_case(4, 5, 37);
}

/* ---- affine warp -------------------------------------------------------- */

typedef struct { const float *m; int n, in[3], out[3]; } warp_params;
static void warp_ref_fn(const void *p, const double *x, double *y)
{
    const warp_params *q = p;
    ref_warp(q->m, x, q->n, q->in, q->out, y);
}

static void check_warp(const char *label, const float *mats, int n, const int in[3], const int out[3])
{
    int ishape[5] = {n, 1, in[0], in[1], in[2]}, oshape[5] = {n, 1, out[0], out[1], out[2]};
    size_t nx = (size_t)n * in[0] * in[1] * in[2], ny = (size_t)n * out[0] * out[1] * out[2];
    float *x = test_random(nx, 7, -1, 1), *y = test_random(ny, 8, -1, 1);
    double *xd = ref_to_double(x, nx), *want = malloc(ny * sizeof *want);
    warp_params wp = {mats, n, {in[0], in[1], in[2]}, {out[0], out[1], out[2]}};
    warp_ref_fn(&wp, xd, want);
    nfv_tensor tx, ty, tw, tg;
    CHECK_OK(test_tensor(&tx, 5, ishape, x));
    CHECK_OK(test_tensor(&ty, 5, oshape, y));
    CHECK_OK(test_tensor(&tw, 5, oshape, NULL));
    CHECK_OK(test_tensor(&tg, 5, ishape, NULL));
    CHECK_OK(nfv_affine_warp(test_ctx(), mats, &tx, &tw));
    CHECK_OK(nfv_affine_warp_adjoint(test_ctx(), mats, &ty, &tg, NULL));
    float *got = test_download(&tw), *tty = test_download(&tg);
    /* With a box: the same values inside it (bit for bit), 0 outside; a box
     * past the volume is refused. */
    const int box[6] = {1, in[0] - 1, 2, in[1], 0, in[2] > 3 ? in[2] - 3 : in[2]}, bad[6] = {0, in[0] + 1, 0, 1, 0, 1};
    float *boxed = NULL;
    if (CHECK_OK(nfv_affine_warp_adjoint(test_ctx(), mats, &ty, &tg, box))) boxed = test_download(&tg);
    if (boxed && tty) {
        size_t wrong = 0;
        for (int s = 0; s < n; s++)
            for (int z = 0; z < in[0]; z++)
                for (int yy = 0; yy < in[1]; yy++)
                    for (int xx = 0; xx < in[2]; xx++) {
                        size_t i = (((size_t)s * in[0] + z) * in[1] + yy) * in[2] + xx;
                        int inside = z >= box[0] && z < box[1] && yy >= box[2] && yy < box[3] && xx >= box[4] && xx < box[5];
                        wrong += boxed[i] != (inside ? tty[i] : 0.0f);
                    }
        CHECK(wrong == 0, "%s warp adjoint in a box: %zu of %zu values differ from the whole one (or are not 0 outside)",
              label, wrong, nx);
    }
    free(boxed);
    CHECK(nfv_affine_warp_adjoint(test_ctx(), mats, &ty, &tg, bad) == NFV_ERR_INVALID_ARG, "a box past the volume is refused");
    char what[96];
    /* The device computes q in float: a sample point off by ~1e-6 voxel moves
     * a weight by that much, times values <= 1, over 8 corners. */
    snprintf(what, sizeof what, "%s warp", label);
    if (got) CHECK_CLOSE(what, got, want, ny, 2e-5, 1e-5);
    if (got && tty) {
        snprintf(what, sizeof what, "%s warp dot", label);
        check_dot(what, got, y, ny, x, tty, nx);
        snprintf(what, sizeof what, "%s warp adjoint vs FD", label);
        check_fd(what, warp_ref_fn, &wp, x, nx, y, ny, tty);
    }
    free(got);
    free(tty);
    free(x);
    free(y);
    free(xd);
    free(want);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&ty);
    nfv_tensor_free(&tw);
    nfv_tensor_free(&tg);
}

TEST(vis_affine_warp_forward_adjoint)
{
    const int dims[3] = {7, 9, 11}, n = 3;
    float mats[3 * 12];
    /* Peers' defaults: scale 0.9-1.1, rotation +-10 degrees; a shift too. */
    uint64_t streams[3] = {7, 8, 9};
    nfv_random_transforms(streams, n, dims, dims, 0.9f, 1.1f, (float)(10 * M_PI / 180), 0, mats, NULL);
    mats[3] += 0.37f;
    check_warp("random", mats, n, dims, dims);
    /* Strong: scale 0.6, 35 degrees, into a larger, cropped-and-padded output. */
    const float ang[3] = {0.6f, -0.3f, 0.2f}, sh[3] = {0.5f, -1.25f, 2.0f};
    const int out[3] = {10, 8, 13};
    nfv_affine_about_centre(dims, out, 0.6f, ang, sh, mats);
    check_warp("strong", mats, 1, dims, out);
    /* Rows longer than the vector width (16) and not a multiple of it (37,
     * 35: full blocks plus a tail), batch 2, scale 0.8-1.25, +-15 degrees. */
    const int wide_in[3] = {5, 7, 37}, wide_out[3] = {6, 5, 35};
    uint64_t wide_streams[2] = {11, 12};
    nfv_random_transforms(wide_streams, 2, wide_in, wide_out, 0.8f, 1.25f, (float)(15 * M_PI / 180), 0, mats, NULL);
    check_warp("wide rows", mats, 2, wide_in, wide_out);
    /* Identity is an exact copy. */
    const float zero[3] = {0, 0, 0};
    nfv_affine_about_centre(dims, dims, 1.0f, zero, NULL, mats);
    for (int i = 0; i < 12; i++)
        CHECK(mats[i] == ((i % 5 == 0) ? 1.0f : 0.0f), "identity matrix entry %d = %g", i, (double)mats[i]);
    float singular[12] = {0};
    nfv_tensor a;
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &a, 5, 1, 1, 3, 3, 3));
    nfv_tensor b;
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &b, 5, 1, 1, 3, 3, 3));
    CHECK(nfv_affine_warp(test_ctx(), singular, &a, &b) == NFV_ERR_INVALID_ARG, "singular matrix rejected");
    nfv_tensor_free(&a);
    nfv_tensor_free(&b);
}

/* A quarter turn about each axis equals an exact permutation of the axes on
 * a volume whose rotated plane is square (odd size, so the centre is a voxel). */
TEST(vis_affine_warp_quarter_turn)
{
    const int dims[3] = {9, 9, 9}, shape[5] = {1, 1, 9, 9, 9};
    size_t nx = 729;
    float *x = test_random(nx, 9, -1, 1);
    nfv_tensor tx, ty;
    CHECK_OK(test_tensor(&tx, 5, shape, x));
    CHECK_OK(test_tensor(&ty, 5, shape, NULL));
    for (int axis = 0; axis < 3; axis++) {
        float ang[3] = {0, 0, 0}, m[12];
        ang[axis] = (float)(M_PI / 2);
        nfv_affine_about_centre(dims, dims, 1.0f, ang, NULL, m);
        CHECK_OK(nfv_affine_warp(test_ctx(), m, &tx, &ty));
        float *got = test_download(&ty);
        if (!got) continue;
        /* Output p samples q = R^T (p - c) + c; R maps e_a -> e_b in the
         * turned plane (a < b), so q_a = c + (p_b - c), q_b = c - (p_a - c). */
        int a = axis == 0 ? 1 : 0, b = axis == 2 ? 1 : 2;
        double *want = malloc(nx * sizeof *want);
        for (int z = 0; z < 9; z++)
            for (int y = 0; y < 9; y++)
                for (int xx = 0; xx < 9; xx++) {
                    int p[3] = {z, y, xx}, q[3] = {z, y, xx};
                    q[a] = 4 + (p[b] - 4);
                    q[b] = 4 - (p[a] - 4);
                    want[(z * 9 + y) * 9 + xx] = x[(q[0] * 9 + q[1]) * 9 + q[2]];
                }
        char what[64];
        snprintf(what, sizeof what, "quarter turn about axis %d", axis);
        /* Sample points land on voxels (matrix snapped to integers): exact. */
        CHECK_CLOSE(what, got, want, nx, 0, 0);
        free(want);
        free(got);
    }
    free(x);
    nfv_tensor_free(&tx);
    nfv_tensor_free(&ty);
}

/* The draws the visualization loop makes (it calls nfv_random_transforms):
 * 7 numbers per sample and step from the sample's own stream, whatever
 * outputs are asked for, so a sample draws the same alone as in a batch; the
 * integer shift is also the matrix's translation. */
TEST(vis_random_transforms_per_sample_streams)
{
    const int in[3] = {11, 13, 9}, out[3] = {7, 9, 5};
    const float angle = (float)(10 * M_PI / 180);
    uint64_t batch[3] = {5, 6, 7}, alone = 6, counted = 6;
    float mats[3 * 12], one[12];
    int shift[9], sh1[3];
    nfv_random_transforms(batch, 3, in, out, 0.9f, 1.1f, angle, 2, mats, shift);
    nfv_random_transforms(&alone, 1, in, out, 0.9f, 1.1f, angle, 2, one, sh1);
    CHECK(!memcmp(one, mats + 12, sizeof one) && !memcmp(sh1, shift + 3, sizeof sh1) && alone == batch[1],
          "sample 1 draws the same alone as in a batch of 3");
    for (int i = 0; i < 7; i++) nfv_uniform01(&counted);
    CHECK(alone == counted, "one sample's step advances its stream by 7 draws");
    uint64_t no_outputs = 6;
    nfv_random_transforms(&no_outputs, 1, in, out, 0.9f, 1.1f, angle, 2, NULL, NULL);
    CHECK(no_outputs == counted, "the same 7 draws when no output is asked for");
    int inside = 1;
    for (int i = 0; i < 9; i++) inside &= shift[i] >= -2 && shift[i] <= 2;
    CHECK(inside, "shifts within +-jitter");
    /* Scale 1, no rotation: A = I and b = c_in - c_out - shift. */
    uint64_t plain = 99;
    nfv_random_transforms(&plain, 1, in, out, 1, 1, 0, 3, one, sh1);
    int ok = 1;
    for (int a = 0; a < 3; a++) {
        for (int j = 0; j < 3; j++) ok &= one[4 * a + j] == (a == j ? 1.0f : 0.0f);
        ok &= fabsf(one[4 * a + 3] - (0.5f * (float)(in[a] - out[a]) - (float)sh1[a])) < 1e-6f;
    }
    CHECK(ok, "the matrix translates by the integer shift (%d, %d, %d)", sh1[0], sh1[1], sh1[2]);
}
