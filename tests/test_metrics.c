/* Metrics on hand-made prediction sets whose values are worked out in the comments. */
#include <math.h>
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
