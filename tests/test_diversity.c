/* Lucid's diversity term (src/vis/diversity.c): its gradient against central
 * finite differences in double, and the loop with --starts 3 --diversity
 * keeps three facets whose images differ more than without the term. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis.h"
#include "neurofv/vis_ops.h"
#include "test.h"

TEST(diversity_gradient_matches_finite_differences)
{
    const int K = 3, C = 4;
    const size_t S = 6, n = (size_t)K * C * S;
    float *af = test_random(n, 41, -1, 1);
    double *a = malloc(n * sizeof *a), *g = malloc(n * sizeof *g), h = 1e-6, worst = 0, big = 0;
    for (size_t i = 0; i < n; i++) a[i] = af[i];
    nfv_diversity_loss(a, K, C, S, 0.7, g);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = a[i];
        a[i] = keep + h;
        double lp = nfv_diversity_loss(a, K, C, S, 0.7, NULL);
        a[i] = keep - h;
        double lm = nfv_diversity_loss(a, K, C, S, 0.7, NULL);
        a[i] = keep;
        double fd = (lp - lm) / (2 * h), d = fabs(fd - g[i]);
        bad += d > 1e-7 + 1e-5 * fabs(fd);
        worst = fmax(worst, d);
        big = fmax(big, fabs(fd));
    }
    printf("  diversity gradient vs FD (double, h 1e-6, atol 1e-7 + rtol 1e-5): worst |diff| %.3g of %zu (largest "
           "|grad| %.3g)\n", worst, n, big);
    CHECK(bad == 0 && big > 1e-3, "diversity gradient vs FD: %d outside tolerance, worst %.3g", bad, worst);
    /* Identical samples: every cosine is 1, loss = w (K - 1). */
    for (size_t i = 0; i < (size_t)C * S; i++) a[C * S + i] = a[2 * C * S + i] = a[i];
    double l = nfv_diversity_loss(a, K, C, S, 0.7, NULL);
    CHECK(fabs(l - 0.7 * (K - 1)) < 1e-12, "identical samples: loss %.15g = w (K - 1)", l);
    free(af);
    free(a);
    free(g);
}

static const int IN_SHAPE[4] = {1, 17, 19, 16}; /* test_vis.c's grid */

/* Mean pairwise Pearson correlation of the facets' images (from small
 * noise the objective alone draws nearly the same picture in every start). */
static double facet_similarity(const nfv_vis_result *r)
{
    size_t vox = nfv_volume_numel(&r->facets[0]);
    double s = 0;
    int pairs = 0;
    for (int i = 0; i < r->facet_count; i++)
        for (int j = i + 1; j < r->facet_count; j++, pairs++)
            s += nfv_ncc_volume(r->facets[i].data, r->facets[j].data, NULL, vox);
    return s / pairs;
}

TEST(diversity_loop_keeps_distinct_facets)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k7,p3) relu flatten linear(1)", IN_SHAPE, 0, NULL,
                                             NFV_HEAD_REGRESSION, 3, &m)))
        return;
    nfv_target *t = NULL;
    int nt = 0;
    double sim[2] = {0, 0};
    if (CHECK_OK(nfv_target_parse(m, "relu1:0", &t, &nt))) {
        for (int d = 0; d < 2; d++) {
            nfv_vis_options o;
            nfv_vis_options_default(&o);
            CHECK_OK(nfv_vis_options_parse(&o, d ? "--init noise=0.01 --starts 3 --steps 30 --diversity 50 --diversity-layer conv1"
                                                 : "--init noise=0.01 --starts 3 --steps 30 --diversity 1e-9"));
            nfv_vis_result *r = NULL;
            if (!CHECK_OK(nfv_visualize(ctx, m, t, nt, &o, NULL, NULL, &r))) continue;
            CHECK(r[0].facet_count == 3, "three facets kept (%d)", r[0].facet_count);
            if (r[0].facet_count == 3) sim[d] = facet_similarity(&r[0]);
            nfv_vis_results_free(r, nt);
        }
        printf("  facets' mean pairwise correlation: %.3f without the term, %.3f with --diversity 50\n", sim[0], sim[1]);
        CHECK(sim[1] < sim[0], "diversity makes the facets less alike (%.3f -> %.3f)", sim[0], sim[1]);
    }
    free(t);
    nfv_model_free(m);
}

/* A target's starts are pushed apart within one batch, so a batch holds
 * whole targets: 3 targets x 3 starts give the same bytes at batch 8 (which
 * would otherwise split the third target 2 + 1) as at batch 3; a batch
 * below --starts is refused, naming both. */
TEST(diversity_batches_hold_whole_targets)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(3,k7,p3) relu flatten linear(1)", IN_SHAPE, 0, NULL,
                                             NFV_HEAD_REGRESSION, 3, &m)))
        return;
    nfv_target *t = NULL;
    int nt = 0;
    nfv_vis_result *r[2] = {NULL, NULL};
    if (CHECK_OK(nfv_target_parse(m, "relu1:all", &t, &nt)) && CHECK(nt == 3, "three targets (%d)", nt)) {
        for (int b = 0; b < 2; b++) {
            nfv_vis_options o;
            nfv_vis_options_default(&o);
            CHECK_OK(nfv_vis_options_parse(&o, "--starts 3 --steps 6 --diversity 50 --diversity-layer conv1"));
            o.batch = b ? 3 : 8;
            CHECK_OK(nfv_visualize(ctx, m, t, nt, &o, NULL, NULL, &r[b]));
        }
        int same = r[0] && r[1];
        for (int i = 0; same && i < nt; i++)
            for (int f = 0; same && f < 3; f++)
                same = r[0][i].facet_count == 3 && r[1][i].facet_count == 3 &&
                       !memcmp(r[0][i].facets[f].data, r[1][i].facets[f].data,
                               sizeof(float) * (size_t)IN_SHAPE[1] * IN_SHAPE[2] * IN_SHAPE[3]);
        CHECK(same, "every facet the same bytes at batch 8 and batch 3");
        nfv_vis_options o;
        nfv_vis_options_default(&o);
        CHECK_OK(nfv_vis_options_parse(&o, "--starts 3 --diversity 1"));
        o.batch = 2;
        nfv_status st = nfv_vis_options_check(&o);
        CHECK(st == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "--batch (2)") &&
                  strstr(nfv_error_message(), "--starts (3)"),
              "batch 2 for 3 starts refused: %s", nfv_error_message());
    }
    for (int b = 0; b < 2; b++)
        if (r[b]) nfv_vis_results_free(r[b], nt);
    free(t);
    nfv_model_free(m);
}

/* CLI: --starts 3 --diversity writes <stem>_facets.png and logs the term;
 * --diversity with one start is refused, naming --starts. */
TEST(diversity_cli_writes_facets)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k7,p3) relu flatten linear(1)", IN_SHAPE, 0, NULL,
                                             NFV_HEAD_REGRESSION, 3, &m)))
        return;
    char model[600], out[600], cmd[2000], path[800];
    snprintf(model, sizeof model, "%s/div.safetensors", test_tmpdir());
    snprintf(out, sizeof out, "%s/div_cli", test_tmpdir());
    CHECK_OK(nfv_model_save(m, model));
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target relu1:0 --starts 3 --diversity 5 --steps 3 "
             "--background none --out %s", test_bin(), model, out);
    CHECK(test_run(cmd, NULL) == 0, "visualize --diversity runs: %s", cmd);
    snprintf(path, sizeof path, "%s/relu1_0_facets.png", out);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "wrote %s", path);
    if (f) fclose(f);
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target relu1:0 --diversity 5 --steps 1 --out %s 2>&1 | "
             "grep -q -- '--starts'", test_bin(), model, out);
    CHECK(test_run(cmd, NULL) == 0, "--diversity with one start is refused, naming --starts");
    nfv_model_free(m);
}
