/* `neurofv eval`: metrics and per-subject predictions of a model on a dataset
 * split: accuracy, balanced accuracy, AUC and the confusion matrix for
 * classifiers; MAE, RMSE, R^2 and Pearson r (per split) for regression. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "cli.h"
#include "neurofv/dist.h"
#include "neurofv/metrics.h"
#include "neurofv/train.h"
#include "base/clock.h"

NFV_COMMAND(eval, "eval", "Evaluate a model on a dataset split: accuracy, balanced accuracy, AUC, confusion; MAE, RMSE, R^2, r")

/* CSV field with quotes when it needs them. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Classification predictions: path,label,prediction,correct,p_CLASS... */
static nfv_status write_class_csv(const char *out, const nfv_model *m, const nfv_dataset *ds, const int *rows,
                                  const int *truth, const int *pred, const double *prob, int n)
{
    int k = m->class_count;
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, out, "w"));
    FILE *f = af.f;
    fprintf(f, "path,label,prediction,correct");
    for (int j = 0; j < k; j++) {
        fputs(",p_", f);
        csv_field(f, m->class_names[j]);
    }
    fprintf(f, "\n");
    for (int i = 0; i < n; i++) {
        csv_field(f, ds->rows[rows[i]].path);
        fputc(',', f);
        csv_field(f, m->class_names[truth[i]]);
        fputc(',', f);
        csv_field(f, m->class_names[pred[i]]);
        fprintf(f, ",%d", pred[i] == truth[i]);
        for (int j = 0; j < k; j++) fprintf(f, ",%.6f", prob[(size_t)i * k + j]);
        fprintf(f, "\n");
    }
    NFV_TRY(nfv_atomic_commit(&af));
    printf("predictions: %s\n", out);
    return NFV_OK;
}

/* Regression metrics of the rows[0..n) whose split is `split` (NFV_SPLIT_ALL:
 * every row), one line. */
static nfv_status print_regression_split(const nfv_dataset *ds, const int *rows, const double *y, const double *p, int n,
                                         nfv_split split, double *ys, double *ps)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (split == NFV_SPLIT_ALL || ds->rows[rows[i]].split == split) ys[k] = y[i], ps[k++] = p[i];
    if (!k) return NFV_OK;
    nfv_regression_metrics met;
    NFV_TRY(nfv_regression_metrics_compute(k, ys, ps, &met));
    printf("%-6s %5d %10.4g %10.4g %8.4f %8.4f %10.4g\n", nfv_split_name(split), k, met.mae, met.rmse, met.r2, met.r,
           met.bias);
    return NFV_OK;
}

/* Regression: predictions in the label's units (nfv_model_predict
 * de-standardizes them), metrics per split (--split all: each split present,
 * then all), predictions CSV path,label,prediction,error (prediction - label). */
static nfv_status eval_regression(nfv_model *m, nfv_context *ctx, const nfv_dataset *ds, const int *rows, int n,
                                  int batch, const char *split_name, nfv_split split, const char *out)
{
    nfv_grid grid = {m->input_shape[3], m->input_shape[2], m->input_shape[1],
                     {m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]}, m->norm};
    nfv_volume_cache *cache = NULL;
    float *outputs = malloc((size_t)n * sizeof(float));
    double *y = malloc((size_t)n * 4 * sizeof(double)), *p = y ? y + n : NULL;
    nfv_status s = outputs && y ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "eval: out of memory");
    if (!s) s = nfv_volume_cache_create(ds, &grid, (size_t)256 << 20, &cache);
    double t0 = nfv_seconds();
    if (!s) s = nfv_model_predict_rows_dist(m, ctx, cache, rows, n, batch, outputs);
    if (!s) {
        for (int i = 0; i < n; i++) y[i] = ds->rows[rows[i]].value, p[i] = outputs[i];
        printf("split %s: %d subjects, %.1f s; label mean %.4g SD %.4g in training\n", split_name, n, nfv_seconds() - t0,
               m->target_mean, m->target_sd);
        printf("%-6s %5s %10s %10s %8s %8s %10s\n", "split", "n", "MAE", "RMSE", "R^2", "r", "mean error");
        for (int sp = NFV_SPLIT_TRAIN; !s && split == NFV_SPLIT_ALL && sp <= NFV_SPLIT_TEST; sp++)
            s = print_regression_split(ds, rows, y, p, n, (nfv_split)sp, p + n, p + 2 * n);
        if (!s) s = print_regression_split(ds, rows, y, p, n, split, p + n, p + 2 * n);
    }
    nfv_atomic_file af;
    /* Under mpirun every rank holds every prediction; rank 0 writes them. */
    if (!s && out && nfv_dist_rank() == 0 && !(s = nfv_atomic_open(&af, out, "w"))) {
        fprintf(af.f, "path,label,prediction,error\n");
        for (int i = 0; i < n; i++) {
            csv_field(af.f, ds->rows[rows[i]].path);
            fprintf(af.f, ",%.9g,%.9g,%.9g\n", y[i], p[i], p[i] - y[i]);
        }
        s = nfv_atomic_commit(&af);
        if (!s) printf("predictions: %s\n", out);
    }
    free(outputs), free(y);
    nfv_volume_cache_free(cache);
    return s;
}

int cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *data = NULL, *split_name = "test", *out = NULL, *device = NULL;
    int batch = 4;
    const cli_option opts[] = {
        {"--model", CLI_STRING, &model_path, "MODEL", "model .safetensors (required)"},
        {"--data", CLI_STRING, &data, "CSV", "dataset CSV (required)"},
        {"--split", CLI_STRING, &split_name, "SPLIT", "train|val|test|all (default test)"},
        {"--out", CLI_STRING, &out, "CSV",
         "per-subject predictions CSV (path,label,prediction,correct,p_CLASS...; regression: path,label,prediction,error)"},
        {"--batch", CLI_INT, &batch, "N", "batch size (default 4)"},
        {"--device", CLI_STRING, &device, "DEV", "OpenCL device (see neurofv devices)"},
        {0},
    };
    int r = cli_parse("eval", "--model MODEL --data CSV [--split test] [--out predictions.csv]",
                      "Predict every subject of a split with the model's preprocessing (grid, voxel size, "
                      "normalization from the model file) and report accuracy, balanced accuracy, ROC AUC (2 classes) "
                      "and the confusion matrix; for a regression model (numeric labels), n, MAE, RMSE, R^2, Pearson r "
                      "and the mean error per split, in the label's units.",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (!model_path || !data) return cli_failf("eval", "--model and --data are required (see neurofv eval --help)");
    nfv_split split;
    if (nfv_split_parse(split_name, &split))
        return cli_failf("eval", "--split expects train, val, test or all, got \"%s\"", split_name);
    if (batch < 1) return cli_failf("eval", "--batch must be >= 1, got %d", batch);

    int code = 1;
    nfv_status s;
    nfv_context *ctx = NULL;
    nfv_model *m = NULL;
    nfv_volume_cache *cache = NULL;
    nfv_dataset ds;
    memset(&ds, 0, sizeof ds);
    int *rows = NULL, *truth = NULL, *pred = NULL;
    float *outputs = NULL;
    double *score = NULL, *prob = NULL;
    nfv_metrics met;
    memset(&met, 0, sizeof met);
    /* The model first: its head says whether the labels are classes or numbers. */
    if ((s = nfv_context_create(device, &ctx))) goto fail;
    if ((s = nfv_model_open(ctx, model_path, &m))) goto fail;
    s = m->head == NFV_HEAD_REGRESSION ? nfv_dataset_load_numeric(data, &ds) : nfv_dataset_load(data, &ds);
    if (s) goto fail;
    /* one volume per subject: a multi-channel input cannot be filled */
    if (m->input_shape[0] != 1) {
        s = nfv_fail(NFV_ERR_UNSUPPORTED, "%s: the model takes %d input channels; eval gives it one volume per subject",
                     model_path, m->input_shape[0]);
        goto fail;
    }
    /* Dataset labels are mapped to the model's classes by name. */
    int n = 0, k = m->class_count, nout = nfv_model_outputs(m), regression = m->head == NFV_HEAD_REGRESSION;
    rows = malloc(((size_t)ds.count + 1) * sizeof(int));
    truth = malloc(((size_t)ds.count + 1) * sizeof(int));
    if (!rows || !truth) {
        s = nfv_fail(NFV_ERR_NO_MEMORY, "eval: out of memory");
        goto fail;
    }
    for (int i = 0; i < ds.count; i++) {
        if (split != NFV_SPLIT_ALL && ds.rows[i].split != split) continue;
        if (regression) {
            rows[n++] = i;
            continue;
        }
        int c = -1;
        for (int j = 0; j < k; j++)
            if (!strcmp(m->class_names[j], ds.rows[i].label)) c = j;
        if (c < 0) {
            s = nfv_fail(NFV_ERR_INVALID_ARG, "%s line %d: label \"%s\" is not a class of the model", data,
                         ds.rows[i].csv_line, ds.rows[i].label);
            goto fail;
        }
        truth[n] = c;
        rows[n++] = i;
    }
    if (!n) {
        s = nfv_fail(NFV_ERR_INVALID_ARG, "%s has no rows in split %s", data, split_name);
        goto fail;
    }
    if (regression) {
        if ((s = eval_regression(m, ctx, &ds, rows, n, batch, split_name, split, out))) goto fail;
        code = 0;
        goto done;
    }
    nfv_grid grid = {m->input_shape[3], m->input_shape[2], m->input_shape[1],
                     {m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]}, m->norm};
    if ((s = nfv_volume_cache_create(&ds, &grid, (size_t)256 << 20, &cache))) goto fail;
    outputs = malloc((size_t)n * (size_t)nout * sizeof(float));
    pred = malloc((size_t)n * sizeof(int));
    score = malloc((size_t)n * sizeof(double));
    prob = malloc((size_t)n * (size_t)k * sizeof(double));
    if (!outputs || !pred || !score || !prob || !rows || !truth) {
        s = nfv_fail(NFV_ERR_NO_MEMORY, "eval: out of memory");
        goto fail;
    }
    double t0 = nfv_seconds();
    if ((s = nfv_model_predict_rows_dist(m, ctx, cache, rows, n, batch, outputs))) goto fail;
    double secs = nfv_seconds() - t0;
    for (int i = 0; i < n; i++) {
        pred[i] = nfv_model_predict_class(m, outputs + (size_t)i * nout);
        nfv_model_probabilities(m, outputs + (size_t)i * nout, prob + (size_t)i * k);
        score[i] = k == 2 ? prob[(size_t)i * k + 1] : 0;
    }
    if ((s = nfv_metrics_compute(n, k, truth, pred, k == 2 ? score : NULL, &met))) goto fail;
    printf("split %s: %d subjects, %.1f s\n", split_name, n, secs);
    printf("accuracy           %.4f\n", met.accuracy);
    printf("balanced accuracy  %.4f\n", met.balanced_accuracy);
    if (k == 2) printf("ROC AUC            %.4f\n", met.auc);
    printf("confusion (rows: truth, columns: prediction)\n%-12s", "");
    for (int j = 0; j < k; j++) printf(" %10.10s", m->class_names[j]);
    printf("\n");
    for (int i = 0; i < k; i++) {
        printf("%-12.12s", m->class_names[i]);
        for (int j = 0; j < k; j++) printf(" %10d", met.confusion[i * k + j]);
        printf("\n");
    }
    if (out && nfv_dist_rank() == 0 && (s = write_class_csv(out, m, &ds, rows, truth, pred, prob, n))) goto fail;
    code = 0;
    goto done;
fail:
    cli_fail("eval", s);
done:
    nfv_metrics_free(&met);
    free(rows), free(truth), free(pred), free(outputs), free(score), free(prob);
    nfv_volume_cache_free(cache);
    nfv_model_free(m);
    nfv_dataset_free(&ds);
    nfv_context_free(ctx);
    return code;
}
