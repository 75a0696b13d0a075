/* Classification and regression metrics; see include/neurofv/metrics.h. */
#include "neurofv/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct scored { double score; int truth; } scored;

static int by_score(const void *a, const void *b)
{
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

double nfv_roc_auc(int n, const int *truth, const double *score)
{
    long long pos = 0, neg = 0;
    for (int i = 0; i < n; i++) truth[i] ? pos++ : neg++;
    if (!pos || !neg) return NAN;
    scored *s = malloc((size_t)n * sizeof *s);
    if (!s) return NAN;
    for (int i = 0; i < n; i++) s[i].score = score[i], s[i].truth = truth[i] != 0;
    qsort(s, (size_t)n, sizeof *s, by_score);
    /* Sum of the (average, 1-based) ranks of the positives over tied groups. */
    double rank_sum = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && s[j].score == s[i].score) j++;
        double avg_rank = 0.5 * (double)(i + 1 + j);
        for (int t = i; t < j; t++)
            if (s[t].truth) rank_sum += avg_rank;
        i = j;
    }
    free(s);
    return (rank_sum - (double)pos * (double)(pos + 1) / 2.0) / ((double)pos * (double)neg);
}

void nfv_metrics_free(nfv_metrics *m)
{
    if (!m) return;
    free(m->confusion);
    m->confusion = NULL;
}

nfv_status nfv_metrics_compute(int n, int k, const int *truth, const int *pred, const double *score, nfv_metrics *out)
{
    memset(out, 0, sizeof *out);
    out->auc = NAN;
    out->accuracy = out->balanced_accuracy = NAN;
    if (n < 0 || k < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "metrics: %d samples, %d classes", n, k);
    out->n = n, out->k = k;
    out->confusion = calloc((size_t)k * (size_t)k, sizeof(int));
    if (!out->confusion) return nfv_fail(NFV_ERR_NO_MEMORY, "metrics: out of memory");
    int correct = 0;
    for (int i = 0; i < n; i++) {
        if (truth[i] < 0 || truth[i] >= k || pred[i] < 0 || pred[i] >= k) {
            nfv_metrics_free(out);
            return nfv_fail(NFV_ERR_INVALID_ARG, "metrics: sample %d has class %d / prediction %d outside 0-%d", i,
                            truth[i], pred[i], k - 1);
        }
        out->confusion[truth[i] * k + pred[i]]++;
        correct += truth[i] == pred[i];
    }
    if (n) out->accuracy = (double)correct / n;
    double recall_sum = 0;
    int present = 0;
    for (int c = 0; c < k; c++) {
        int support = 0;
        for (int p = 0; p < k; p++) support += out->confusion[c * k + p];
        if (!support) continue;
        present++;
        recall_sum += (double)out->confusion[c * k + c] / support;
    }
    if (present) out->balanced_accuracy = recall_sum / present;
    if (k == 2 && score) out->auc = nfv_roc_auc(n, truth, score);
    return NFV_OK;
}

nfv_status nfv_regression_metrics_compute(int n, const double *truth, const double *pred, nfv_regression_metrics *out)
{
    out->n = n;
    out->mae = out->rmse = out->bias = out->r2 = out->r = NAN;
    if (n < 0) return nfv_fail(NFV_ERR_INVALID_ARG, "regression metrics: %d samples", n);
    if (n == 0) return NFV_OK;
    /* Two passes (means first): the centred sums do not cancel the way
     * sum y^2 - n mean^2 does for ages ~70 with a spread of a few years. */
    double my = 0, mp = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(truth[i]) || !isfinite(pred[i]))
            return nfv_fail(NFV_ERR_INVALID_ARG, "regression metrics: sample %d has label %g, prediction %g", i,
                            truth[i], pred[i]);
        my += truth[i], mp += pred[i];
    }
    my /= n, mp /= n;
    double abs_sum = 0, sq_sum = 0, err_sum = 0, syy = 0, spp = 0, spy = 0;
    for (int i = 0; i < n; i++) {
        double e = pred[i] - truth[i], dy = truth[i] - my, dp = pred[i] - mp;
        abs_sum += fabs(e), sq_sum += e * e, err_sum += e;
        syy += dy * dy, spp += dp * dp, spy += dp * dy;
    }
    out->mae = abs_sum / n;
    out->rmse = sqrt(sq_sum / n);
    out->bias = err_sum / n;
    if (syy > 0) out->r2 = 1.0 - sq_sum / syy;
    if (syy > 0 && spp > 0) out->r = spy / sqrt(syy * spp);
    return NFV_OK;
}
