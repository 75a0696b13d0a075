/* Fourier parameterization: decode against the direct double sum over every
 * basis function (ref_vis.c), the adjoint by the dot-product test and by
 * finite differences of the reference decode, a single coefficient decodes to
 * the expected cosine, and the 1/f scale is normalized.
 *
 * Timing is never asserted here; measured figures are in the comment at the
 * top of src/fft.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis_ops.h"
#include "ref_vis.h"
#include "test.h"

static const char *basis_name(nfv_fourier_basis b) { return b == NFV_FOURIER_DFT ? "DFT" : "DCT"; }

static void check_basis(nfv_fourier_basis basis, const int dims[3], int n, float decay)
{
    size_t vol = (size_t)dims[0] * dims[1] * dims[2], numel = vol * n;
    int shape[5] = {n, 1, dims[0], dims[1], dims[2]};
    nfv_fourier *f = NULL;
    if (!CHECK_OK(nfv_fourier_create(test_ctx(), basis, dims[0], dims[1], dims[2], decay, &f))) return;
    float *p = test_random(numel, 51, -1, 1), *y = test_random(numel, 52, -1, 1);
    double *pd = ref_to_double(p, numel), *want = malloc(numel * sizeof *want);
    ref_fourier_decode(basis, decay, pd, n, dims, want);
    nfv_tensor tp, ti, ty, tg;
    CHECK_OK(test_tensor(&tp, 5, shape, p));
    CHECK_OK(test_tensor(&ti, 5, shape, NULL));
    CHECK_OK(test_tensor(&ty, 5, shape, y));
    CHECK_OK(test_tensor(&tg, 5, shape, NULL));
    CHECK_OK(nfv_fourier_decode(test_ctx(), f, &tp, &ti));
    CHECK_OK(nfv_fourier_adjoint(test_ctx(), f, &ty, &tg));
    float *img = test_download(&ti), *g = test_download(&tg);
    char what[96];
    /* Each output is a float sum of ~3 x 11 products of basis values <= 0.6
     * and scaled coefficients <= ~10 (decay 1 puts weight on DC): 1e-5 relative
     * to the largest value. */
    double big = 0;
    for (size_t i = 0; i < numel; i++) big = fmax(big, fabs(want[i]));
    snprintf(what, sizeof what, "%s %dx%dx%d n=%d decode", basis_name(basis), dims[0], dims[1], dims[2], n);
    if (img) CHECK_CLOSE(what, img, want, numel, 2e-5 * big, 1e-5);
    if (img && g) {
        double l = ref_dot_f(img, y, numel), r = ref_dot_f(p, g, numel), mag = 0;
        for (size_t i = 0; i < numel; i++) mag += fabs((double)img[i] * y[i]);
        CHECK(fabs(l - r) <= 1e-5 * mag, "%s dot test: <Fp,y> %.9g, <p,F*y> %.9g (scale %.3g)", what, l, r, mag);
        /* Adjoint = gradient of <decode(p), y>: central differences in double
         * on the first sample's coefficients (linear, so exact up to
         * round-off); the first 20 and every 13th after (each costs two
         * O(vol^2) reference decodes). */
        double *out = malloc(numel * sizeof *out), *fd = malloc(vol * sizeof *fd);
        float *gsub = malloc(vol * sizeof *gsub);
        size_t count = 0;
        for (size_t i = 0; i < vol; i += i < 20 ? 1 : 13) {
            double keep = pd[i], lp = 0, lm = 0, h = 1e-3;
            pd[i] = keep + h;
            ref_fourier_decode(basis, decay, pd, 1, dims, out);
            for (size_t j = 0; j < vol; j++) lp += out[j] * y[j];
            pd[i] = keep - h;
            ref_fourier_decode(basis, decay, pd, 1, dims, out);
            for (size_t j = 0; j < vol; j++) lm += out[j] * y[j];
            pd[i] = keep;
            fd[count] = (lp - lm) / (2 * h);
            gsub[count++] = g[i];
        }
        snprintf(what, sizeof what, "%s adjoint vs FD", basis_name(basis));
        CHECK_CLOSE(what, gsub, fd, count, 1e-4, 1e-5);
        free(gsub);
        free(out);
        free(fd);
    }
    /* mean(s^2) = 1 and the scale matches the reference. */
    const float *s = nfv_fourier_scale(f);
    double *sref = malloc(vol * sizeof *sref), m2 = 0;
    ref_fourier_scale(basis, dims, decay, sref);
    for (size_t i = 0; i < vol; i++) m2 += (double)s[i] * s[i];
    CHECK(fabs(m2 / vol - 1) < 1e-5, "%s scale normalized: mean s^2 = %.7f", basis_name(basis), m2 / vol);
    CHECK_CLOSE("scale", s, sref, vol, 0, 1e-6);
    free(sref);
    free(img);
    free(g);
    free(p);
    free(y);
    free(pd);
    free(want);
    nfv_tensor_free(&tp);
    nfv_tensor_free(&ti);
    nfv_tensor_free(&ty);
    nfv_tensor_free(&tg);
    nfv_fourier_free(f);
}

TEST(vis_fourier_decode_adjoint)
{
    const int odd[3] = {7, 9, 11}, prime[3] = {5, 13, 3};
    check_basis(NFV_FOURIER_DFT, odd, 3, 1.0f);
    check_basis(NFV_FOURIER_DCT, odd, 3, 1.0f);
    check_basis(NFV_FOURIER_DFT, prime, 1, 0.5f);
    check_basis(NFV_FOURIER_DCT, prime, 1, 2.0f);
    /* rows and planes past one work-item's 2 vectors (2 x 16 floats on
     * AVX-512) and 6 rows, with partial blocks on every axis */
    const int wide[3] = {3, 5, 37};
    check_basis(NFV_FOURIER_DFT, wide, 2, 1.0f);
}

/* One coefficient (kz, ky, kx) = (0, 2, 0) (the only non-zero parameter)
 * decodes to s * cas(2 pi 2 y / H) / sqrt(D H W) for the DFT basis, and
 * s * sqrt(2/H) cos(pi 2 (2y + 1) / (2H)) / sqrt(D W) for the DCT: a plane
 * wave along y, constant along z and x. */
TEST(vis_fourier_single_coefficient)
{
    const int D = 5, H = 12, W = 7, ky = 2, shape[5] = {1, 1, 5, 12, 7};
    size_t vol = (size_t)D * H * W;
    for (int b = 0; b < 2; b++) {
        nfv_fourier_basis basis = b ? NFV_FOURIER_DCT : NFV_FOURIER_DFT;
        nfv_fourier *f = NULL;
        if (!CHECK_OK(nfv_fourier_create(test_ctx(), basis, D, H, W, 1.0f, &f))) continue;
        float *p = calloc(vol, sizeof *p);
        size_t k = (size_t)ky * W; /* index of (0, ky, 0) */
        p[k] = 1.0f;
        double s = nfv_fourier_scale(f)[k], *want = malloc(vol * sizeof *want);
        for (size_t i = 0; i < vol; i++) {
            int y = (int)(i / W % H);
            double wave = basis == NFV_FOURIER_DFT
                              ? (cos(2 * M_PI * ky * y / H) + sin(2 * M_PI * ky * y / H)) / sqrt((double)vol)
                              : sqrt(2.0 / H) * cos(M_PI * ky * (2 * y + 1) / (2.0 * H)) / sqrt((double)D * W);
            want[i] = s * wave;
        }
        nfv_tensor tp, ti;
        CHECK_OK(test_tensor(&tp, 5, shape, p));
        CHECK_OK(test_tensor(&ti, 5, shape, NULL));
        CHECK_OK(nfv_fourier_decode(test_ctx(), f, &tp, &ti));
        float *img = test_download(&ti);
        /* A handful of float products: 1e-6 of values of order 0.1-1. */
        if (img) CHECK_CLOSE(basis == NFV_FOURIER_DFT ? "DFT single coefficient" : "DCT single coefficient", img,
                             want, vol, 1e-6, 1e-5);
        /* The 1/f scale: |f| = ky/H (DFT) or ky/(2H) (DCT), decay 1. */
        double fr = basis == NFV_FOURIER_DFT ? (double)ky / H : ky / (2.0 * H);
        double s_dc = nfv_fourier_scale(f)[0];
        CHECK(fabs(s_dc / s - fr / (1.0 / H)) < 1e-4 * (fr * H), "%s: s(DC) / s(k) = %.6f, expected %.6f",
              basis_name(basis), s_dc / s, fr * H);
        free(img);
        free(p);
        free(want);
        nfv_tensor_free(&tp);
        nfv_tensor_free(&ti);
        nfv_fourier_free(f);
    }
}

TEST(vis_fourier_rejects_bad_input)
{
    nfv_fourier *f = NULL;
    CHECK(nfv_fourier_create(test_ctx(), NFV_FOURIER_DFT, 0, 3, 3, 1.0f, &f) == NFV_ERR_INVALID_ARG && !f,
          "empty volume rejected");
    if (!CHECK_OK(nfv_fourier_create(test_ctx(), NFV_FOURIER_DFT, 4, 5, 6, 1.0f, &f))) return;
    nfv_tensor a, b;
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &a, 5, 2, 1, 4, 5, 6));
    CHECK_OK(nfv_tensor_create_dims(test_ctx(), &b, 5, 2, 1, 4, 6, 5));
    CHECK(nfv_fourier_decode(test_ctx(), f, &a, &b) == NFV_ERR_INVALID_ARG, "wrong image shape rejected");
    CHECK(strstr(nfv_error_message(), "4, 5, 6") != NULL, "message gives the expected shape: %s",
          nfv_error_message());
    nfv_tensor_free(&a);
    nfv_tensor_free(&b);
    nfv_fourier_free(f);
}
