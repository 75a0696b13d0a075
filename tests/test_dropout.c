/* Dropout: the mask is a pure function of (seed, index) matching the host
 * re-derivation, seeds change it, the keep rate is 1 - p within 3 sigma,
 * y = x * mask and the backward applies the same mask. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"
#include "ref_layers.h"
#include "test.h"

static int run_dropout(float p, unsigned long long seed, const int *shape, const float *hx, float **y, float **mask)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor tx, ty, tm;
    int ok = CHECK_OK(test_tensor(&tx, 5, shape, hx)) && CHECK_OK(test_tensor(&ty, 5, shape, NULL)) &&
             CHECK_OK(test_tensor(&tm, 5, shape, NULL)) && CHECK_OK(nfv_dropout_forward(ctx, p, seed, &tx, &ty, &tm));
    *y = ok ? test_download(&ty) : NULL;
    *mask = ok ? test_download(&tm) : NULL;
    nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tm);
    return *y && *mask;
}

TEST(dropout_mask_deterministic_and_rate)
{
    static const int shapes[][5] = {{3, 8, 7, 9, 11}, {1, 3, 7, 9, 11}, {1, 1, 1, 1, 1000}};
    static const float ps[] = {0.5f, 0.2f, 0.9f};
    for (size_t si = 0; si < 3; si++) {
        const int *shape = shapes[si];
        size_t n = nfv_shape_numel(5, shape);
        float *hx = test_random(n, 7 + (unsigned)si, -1.0f, 1.0f);
        for (size_t pi = 0; pi < 3; pi++) {
            float p = ps[pi];
            unsigned long long seed = 0x123456789abcULL + si;
            float *y1, *m1, *y2, *m2, *y3, *m3;
            if (!run_dropout(p, seed, shape, hx, &y1, &m1)) continue;
            if (!run_dropout(p, seed, shape, hx, &y2, &m2)) continue;
            if (!run_dropout(p, seed ^ (1ULL << 40), shape, hx, &y3, &m3)) continue;
            CHECK(memcmp(m1, m2, n * sizeof(float)) == 0, "same seed gives the same mask (n %zu, p %g)", n, p);
            size_t differ = 0, kept = 0, wrong_host = 0, wrong_y = 0, wrong_value = 0;
            float scale = 1.0f / (1.0f - p);
            for (size_t i = 0; i < n; i++) {
                differ += m1[i] != m3[i];
                int keep = m1[i] != 0.0f;
                kept += keep;
                wrong_host += keep != ref_dropout_keep(seed, i, p);
                wrong_value += keep && fabsf(m1[i] - scale) > 1e-6f * scale;
                wrong_y += y1[i] != hx[i] * m1[i];
            }
            CHECK(differ > 0, "a seed differing only in its high word changes the mask (n %zu)", n);
            CHECK(wrong_host == 0, "%zu of %zu keep decisions differ from the host hash", wrong_host, n);
            CHECK(wrong_value == 0, "%zu kept values are not 1/(1-p) = %g", wrong_value, scale);
            CHECK(wrong_y == 0, "%zu outputs differ from x * mask", wrong_y);
            /* Binomial(n, 1-p): within 3 standard deviations. */
            double mean = n * (1.0 - p), sd = sqrt(n * p * (1.0 - p));
            CHECK(fabs((double)kept - mean) <= 3.0 * sd, "kept %zu of %zu, expected %.1f +- %.1f (3 sigma)", kept, n,
                  mean, 3 * sd);
            free(y1), free(m1), free(y2), free(m2), free(y3), free(m3);
        }
        free(hx);
    }
}

TEST(dropout_backward_uses_mask)
{
    nfv_context *ctx = test_ctx();
    int shape[5] = {3, 3, 7, 9, 11};
    size_t n = nfv_shape_numel(5, shape);
    float *hx = test_random(n, 3, -1.0f, 1.0f), *hdy = test_random(n, 4, -1.0f, 1.0f);
    nfv_tensor tx, ty, tm, tdy, tdx;
    CHECK_OK(test_tensor(&tx, 5, shape, hx));
    CHECK_OK(test_tensor(&ty, 5, shape, NULL));
    CHECK_OK(test_tensor(&tm, 5, shape, NULL));
    CHECK_OK(test_tensor(&tdy, 5, shape, hdy));
    CHECK_OK(test_tensor(&tdx, 5, shape, NULL));
    CHECK_OK(nfv_dropout_forward(ctx, 0.3f, 99, &tx, &ty, &tm));
    CHECK_OK(nfv_dropout_backward(ctx, &tdy, &tm, &tdx));
    float *m = test_download(&tm), *dx = test_download(&tdx);
    if (m && dx) {
        /* The op is linear in x: its gradient is dy * mask exactly. */
        double *want = malloc(n * sizeof *want);
        for (size_t i = 0; i < n; i++) want[i] = (double)(hdy[i] * m[i]);
        CHECK_CLOSE("dropout backward", dx, want, n, 0.0, 0.0);
        free(want);
    }
    /* p = 0 is the identity; p = 1 drops everything. */
    CHECK_OK(nfv_dropout_forward(ctx, 0.0f, 5, &tx, &ty, &tm));
    float *y0 = test_download(&ty);
    double *wx = rl_to_double(hx, n);
    if (y0) CHECK_CLOSE("dropout p=0 is identity", y0, wx, n, 0.0, 0.0);
    CHECK_OK(nfv_dropout_forward(ctx, 1.0f, 5, &tx, &ty, &tm));
    float *y1 = test_download(&ty);
    for (size_t i = 0; i < n; i++) wx[i] = 0.0;
    if (y1) CHECK_CLOSE("dropout p=1 drops all", y1, wx, n, 0.0, 0.0);
    CHECK(nfv_dropout_forward(ctx, 1.5f, 5, &tx, &ty, &tm) == NFV_ERR_INVALID_ARG, "p > 1 rejected");
    CHECK(nfv_dropout_forward(ctx, NAN, 5, &tx, &ty, &tm) == NFV_ERR_INVALID_ARG, "p NaN rejected");
    int other[5] = {3, 3, 7, 9, 10};
    nfv_tensor bad;
    CHECK_OK(test_tensor(&bad, 5, other, NULL));
    CHECK(nfv_dropout_forward(ctx, 0.5f, 5, &tx, &ty, &bad) == NFV_ERR_INVALID_ARG, "mask of wrong size rejected");
    CHECK(nfv_dropout_backward(ctx, &tdy, &bad, &tdx) == NFV_ERR_INVALID_ARG, "backward mask of wrong size rejected");
    free(hx), free(hdy), free(m), free(dx), free(y0), free(y1), free(wx);
    nfv_tensor_free(&tx), nfv_tensor_free(&ty), nfv_tensor_free(&tm), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
    nfv_tensor_free(&bad);
}
