/* Metrics on hand-made prediction sets whose values are worked out in the
 * comments, and the regression metrics against numpy/scipy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "neurofv/metrics.h"
#include "test.h"

TEST(metrics_binary_hand_made)
{
    /* 4 negatives, 2 positives.  Predictions: negatives 0,0,0,1; positives 1,0.
     * accuracy 4/6; recall(0) = 3/4, recall(1) = 1/2 -> balanced 0.625.
     * Scores: negatives 0.1 0.4 0.35 0.8, positives 0.9 0.4 (a tie with a negative).
     * Positive pairs (8): 0.9 beats all 4; 0.4 beats 0.1 and 0.35, ties 0.4 (1/2),
     * loses to 0.8 -> (4 + 2.5) / 8 = 0.8125. */
    int truth[6] = {0, 0, 0, 0, 1, 1}, pred[6] = {0, 0, 0, 1, 1, 0};
    double score[6] = {0.1, 0.4, 0.35, 0.8, 0.9, 0.4};
    nfv_metrics m;
    if (!CHECK_OK(nfv_metrics_compute(6, 2, truth, pred, score, &m))) return;
    CHECK(fabs(m.accuracy - 4.0 / 6) < 1e-12, "accuracy %g", m.accuracy);
    CHECK(fabs(m.balanced_accuracy - 0.625) < 1e-12, "balanced accuracy %g", m.balanced_accuracy);
    CHECK(fabs(m.auc - 0.8125) < 1e-12, "AUC %g", m.auc);
    CHECK(m.confusion[0] == 3 && m.confusion[1] == 1 && m.confusion[2] == 1 && m.confusion[3] == 1,
          "confusion [[%d %d] [%d %d]]", m.confusion[0], m.confusion[1], m.confusion[2], m.confusion[3]);
    nfv_metrics_free(&m);
}

TEST(metrics_multiclass_and_edge_cases)
{
    /* 3 classes; class 2 absent from truth, so balanced accuracy averages the
     * recalls of classes 0 (2/3) and 1 (1/1) as scikit-learn does: 5/6. */
    int truth[4] = {0, 0, 0, 1}, pred[4] = {0, 2, 0, 1};
    nfv_metrics m;
    if (!CHECK_OK(nfv_metrics_compute(4, 3, truth, pred, NULL, &m))) return;
    CHECK(fabs(m.accuracy - 0.75) < 1e-12, "accuracy %g", m.accuracy);
    CHECK(fabs(m.balanced_accuracy - 5.0 / 6) < 1e-12, "balanced accuracy %g", m.balanced_accuracy);
    CHECK(isnan(m.auc), "no AUC for 3 classes");
    CHECK(m.confusion[0 * 3 + 2] == 1, "confusion[0][2] = %d", m.confusion[2]);
    nfv_metrics_free(&m);

    /* Perfect ranking and reversed ranking. */
    int t2[4] = {0, 1, 0, 1};
    double s_good[4] = {0.1, 0.9, 0.2, 0.8}, s_bad[4] = {0.9, 0.1, 0.8, 0.2};
    CHECK(nfv_roc_auc(4, t2, s_good) == 1.0, "perfect AUC = 1");
    CHECK(nfv_roc_auc(4, t2, s_bad) == 0.0, "reversed AUC = 0");
    int t3[3] = {1, 1, 1};
    CHECK(isnan(nfv_roc_auc(3, t3, s_good)), "AUC undefined with one class");
    int bad_pred[1] = {5}, t1[1] = {0};
    CHECK(nfv_metrics_compute(1, 2, t1, bad_pred, NULL, &m) == NFV_ERR_INVALID_ARG, "out-of-range class rejected");
}

TEST(metrics_regression_hand_made)
{
    /* y = 1 2 3 4, p = 1.5 1.5 3.5 5: errors 0.5 -0.5 0.5 1.
     * MAE 2.5/4 = 0.625; mean e^2 = 1.75/4 = 0.4375, RMSE = sqrt(0.4375);
     * bias 1.5/4 = 0.375; sum (y - 2.5)^2 = 5, so R^2 = 1 - 1.75/5 = 0.65;
     * mean p = 2.875, sum dp dy = 6.25, sum dp^2 = 8.6875, so
     * r = 6.25 / sqrt(5 * 8.6875) = 0.94830405226... */
    double y[4] = {1, 2, 3, 4}, p[4] = {1.5, 1.5, 3.5, 5};
    nfv_regression_metrics m;
    if (!CHECK_OK(nfv_regression_metrics_compute(4, y, p, &m))) return;
    CHECK(m.n == 4 && fabs(m.mae - 0.625) < 1e-12 && fabs(m.rmse - sqrt(0.4375)) < 1e-12 &&
              fabs(m.bias - 0.375) < 1e-12 && fabs(m.r2 - 0.65) < 1e-12 && fabs(m.r - 0.9483040522636019) < 1e-12,
          "n %d MAE %.15g RMSE %.15g bias %.15g R2 %.15g r %.15g", m.n, m.mae, m.rmse, m.bias, m.r2, m.r);
    /* Predicting the mean: R^2 = 0, r undefined (constant predictions). */
    double mean[4] = {2.5, 2.5, 2.5, 2.5};
    if (CHECK_OK(nfv_regression_metrics_compute(4, y, mean, &m)))
        CHECK(fabs(m.r2) < 1e-15 && isnan(m.r), "constant prediction: R2 %g (0), r %g (NaN)", m.r2, m.r);
    /* Constant truth: R^2 undefined; no samples: everything NaN; NaN input refused. */
    if (CHECK_OK(nfv_regression_metrics_compute(4, mean, p, &m))) CHECK(isnan(m.r2) && isnan(m.r), "constant truth");
    if (CHECK_OK(nfv_regression_metrics_compute(0, y, p, &m))) CHECK(isnan(m.mae) && isnan(m.r2), "n = 0");
    p[2] = NAN;
    CHECK(nfv_regression_metrics_compute(4, y, p, &m) == NFV_ERR_INVALID_ARG, "a NaN prediction is refused");
}

/* Against numpy (mean |e|, sqrt(mean e^2)), scikit-learn's R^2 formula
 * written in numpy, and scipy.stats.pearsonr, on 57 brain-age-like pairs
 * (ages 45-85, predictions with noise and a shrinkage towards the mean);
 * skipped without /usr/bin/python3 + numpy + scipy.  Both sides in double:
 * agreement to 1e-12 absolute + 1e-10 relative. */
TEST(metrics_regression_matches_numpy_scipy)
{
    if (test_run("/usr/bin/python3 -c 'import numpy, scipy.stats'", NULL) != 0) {
        printf("     skipped: /usr/bin/python3 with numpy and scipy not available\n");
        return;
    }
    enum { N = 57 };
    double y[N], p[N];
    unsigned long long st = 77;
    for (int i = 0; i < N; i++) {
        y[i] = 45 + 40 * test_uniform(&st);
        p[i] = 65 + 0.7 * (y[i] - 65) + 8 * (test_uniform(&st) - 0.5);
    }
    char in[600], out[600], cmd[2400];
    snprintf(in, sizeof in, "%s/regmetrics_in.bin", test_tmpdir());
    snprintf(out, sizeof out, "%s/regmetrics_out.bin", test_tmpdir());
    FILE *f = fopen(in, "wb");
    if (!CHECK(f && fwrite(y, sizeof y, 1, f) == 1 && fwrite(p, sizeof p, 1, f) == 1 && fclose(f) == 0, "write %s",
               in))
        return;
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys, numpy as np, scipy.stats as ss\n"
             "d = np.fromfile('%s', dtype='<f8'); y, p = d[:%d], d[%d:]; e = p - y\n"
             "r2 = 1 - np.sum(e**2) / np.sum((y - y.mean())**2)\n"
             "np.array([np.mean(np.abs(e)), np.sqrt(np.mean(e**2)), np.mean(e), r2, ss.pearsonr(p, y)[0]], "
             "dtype='<f8').tofile('%s')\"",
             in, N, N, out);
    if (!CHECK(test_run(cmd, NULL) == 0, "numpy/scipy script ran")) return;
    double want[5];
    f = fopen(out, "rb");
    int ok = CHECK(f && fread(want, sizeof want, 1, f) == 1, "read %s", out);
    if (f) fclose(f);
    nfv_regression_metrics m;
    if (!ok || !CHECK_OK(nfv_regression_metrics_compute(N, y, p, &m))) return;
    double got[5] = {m.mae, m.rmse, m.bias, m.r2, m.r};
    const char *names[5] = {"MAE", "RMSE", "bias", "R2", "Pearson r"};
    for (int i = 0; i < 5; i++)
        CHECK(fabs(got[i] - want[i]) <= 1e-12 + 1e-10 * fabs(want[i]), "%s %.15g, numpy/scipy %.15g (diff %.3g)",
              names[i], got[i], want[i], got[i] - want[i]);
}
