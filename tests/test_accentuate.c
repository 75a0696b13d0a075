/* Feature accentuation (src/vis/accentuate.c): the --stay penalty's
 * gradient against finite differences in double, and the loop from a
 * subject (--init subject=FILE) changes the subject less with --stay than
 * without, while still raising the unit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis.h"
#include "neurofv/vis_ops.h"
#include "test.h"

TEST(accentuate_stay_gradient_matches_finite_differences)
{
    const size_t P = 50;
    float *af = test_random(P, 61, -1, 1), *rf = test_random(P, 62, -1, 1);
    double a[50], r[50], g[50], h = 1e-6, worst = 0;
    for (size_t i = 0; i < P; i++) a[i] = af[i], r[i] = rf[i];
    nfv_stay_loss(a, r, P, 3.0, g);
    for (size_t i = 0; i < P; i++) {
        double keep = a[i];
        a[i] = keep + h;
        double lp = nfv_stay_loss(a, r, P, 3.0, NULL);
        a[i] = keep - h;
        double lm = nfv_stay_loss(a, r, P, 3.0, NULL);
        a[i] = keep;
        worst = fmax(worst, fabs((lp - lm) / (2 * h) - g[i]));
    }
    printf("  stay gradient vs FD (double, h 1e-6): worst |diff| %.3g (atol 1e-8)\n", worst);
    CHECK(worst < 1e-8, "stay gradient vs FD: worst %.3g", worst);
    free(af);
    free(rf);
}

static const int IN_SHAPE[4] = {1, 17, 19, 16}; /* test_vis.c's grid */

TEST(accentuate_subject_start_stays_near)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k7,p3) relu flatten linear(1)", IN_SHAPE, 0, NULL,
                                             NFV_HEAD_REGRESSION, 3, &m)))
        return;
    m->norm = NFV_NORM_NONE; /* the subject's values as written */
    char path[600];
    snprintf(path, sizeof path, "%s/accentuate_subject.nii.gz", test_tmpdir());
    nfv_volume v;
    if (!CHECK_OK(nfv_volume_alloc(&v, IN_SHAPE[3], IN_SHAPE[2], IN_SHAPE[1], (const double(*)[4])m->affine))) return;
    float *r = test_random(nfv_volume_numel(&v), 63, 0.5f, 1.5f);
    memcpy(v.data, r, nfv_volume_numel(&v) * sizeof *r);
    free(r);
    CHECK_OK(nfv_volume_write(path, &v));
    nfv_target *t = NULL;
    int nt = 0;
    double change[2] = {0, 0};
    float gain[2] = {0, 0};
    if (CHECK_OK(nfv_target_parse(m, "relu1:0", &t, &nt))) {
        for (int s = 0; s < 2; s++) {
            nfv_vis_options o;
            nfv_vis_options_default(&o);
            char text[800];
            snprintf(text, sizeof text, "--init subject=%s --steps 20 %s", path, s ? "--stay conv1=100" : "");
            if (!CHECK_OK(nfv_vis_options_parse(&o, text))) continue;
            nfv_vis_result *res = NULL;
            if (!CHECK_OK(nfv_visualize(ctx, m, t, nt, &o, NULL, NULL, &res))) continue;
            size_t n = nfv_volume_numel(&res[0].change);
            CHECK(n == nfv_volume_numel(&v), "the change is kept on the subject's grid");
            for (size_t i = 0; i < n; i++) change[s] += fabs(res[0].change.data[i]) / n;
            /* Started at the subject (change 0): the logged first objective is the subject's. */
            gain[s] = res[0].objective_clean - res[0].log_objective[0];
            nfv_vis_results_free(res, nt);
        }
        printf("  mean |change| from the subject: %.4f without --stay, %.4f with --stay conv1=100 (objective +%.3g, "
               "+%.3g)\n", change[0], change[1], gain[0], gain[1]);
        CHECK(change[1] < change[0] && gain[1] > 0 && gain[0] > 0,
              "--stay keeps the subject closer (%.4f < %.4f) while the unit still rises (+%.3g)", change[1], change[0],
              gain[1]);
    }
    free(t);
    nfv_volume_free(&v);
    nfv_model_free(m);
}
