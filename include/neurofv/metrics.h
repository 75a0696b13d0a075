/* Metrics on the host.  Classification: accuracy, balanced accuracy, ROC
 * AUC, confusion matrix.  Regression: MAE, RMSE, R^2, Pearson r.  Inputs are
 * per-sample arrays of length n. */
#ifndef NEUROFV_METRICS_H
#define NEUROFV_METRICS_H

#include "neurofv/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nfv_metrics {
    int n, k;                  /* samples, classes */
    double accuracy;           /* share of pred == truth */
    double balanced_accuracy;  /* mean recall over the classes present in truth (as scikit-learn) */
    double auc;                /* ROC AUC for k == 2 with scores given; NaN otherwise */
    int *confusion;            /* k*k, confusion[truth * k + pred]; malloc'ed */
} nfv_metrics;

/* truth, pred: class indices in [0, k).  score: for k == 2, a score that grows
 * with class 1 (probability or logit), or NULL (auc = NaN).  out->confusion
 * is malloc'ed; free with nfv_metrics_free. */
nfv_status nfv_metrics_compute(int n, int k, const int *truth, const int *pred, const double *score, nfv_metrics *out);
void nfv_metrics_free(nfv_metrics *m);

/* ROC AUC of binary truth (0/1) against scores: the Mann-Whitney U statistic
 * with ties counted one half.  NaN when one class is absent. */
double nfv_roc_auc(int n, const int *truth, const double *score);

/* Regression metrics of predictions p against truth y (label units), with
 * e_i = p_i - y_i and means over the n samples:
 *   mae  = mean |e|,  rmse = sqrt(mean e^2),  bias = mean e
 *   r2   = 1 - sum e^2 / sum (y - mean y)^2   (scikit-learn's r2_score: the
 *          share of the label variance explained; 0 for predicting the mean,
 *          negative for worse; NaN when every y is equal)
 *   r    = Pearson correlation of p and y (NaN when either is constant)
 * Every field is NaN for n = 0; sums in double. */
typedef struct nfv_regression_metrics {
    int n;
    double mae, rmse, bias, r2, r;
} nfv_regression_metrics;
nfv_status nfv_regression_metrics_compute(int n, const double *truth, const double *pred, nfv_regression_metrics *out);

#ifdef __cplusplus
}
#endif
#endif
