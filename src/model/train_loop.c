/* The epoch loop over a dataset: setup of a new or resumed run, batches,
 * validation, the best model, checkpoints and the epoch log.  See
 * include/neurofv/train.h for what one epoch does; the per-epoch draws are
 * in train_schedule.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "neurofv/metrics.h"
#include "base/interrupt.h"
#include "neurofv/train.h"
#include "base/clock.h"

void nfv_train_options_default(nfv_train_options *o)
{
    memset(o, 0, sizeof *o);
    o->arch = "ref4";
    o->grid = (nfv_grid){91, 109, 91, {2, 2, 2}, NFV_NORM_ZSCORE_NONZERO};
    o->head = NFV_HEAD_SOFTMAX;
    nfv_optim_config_default(&o->opt);
    o->seed = 1;
    o->lr = NAN;
    o->huber_delta = NAN;
    o->schedule = NFV_LR_DEFAULT;
    o->epochs = 10;
    o->batch = 4;
    o->cache_bytes = (size_t)4096 << 20;
}

/* One run's state, from setup to the last epoch. */
typedef struct train_run {
    nfv_context *ctx;
    const nfv_dataset *ds;
    const nfv_train_options *o;
    nfv_model *m;
    nfv_trainer *t;
    nfv_volume_cache *cache;
    nfv_grid grid;
    int *train_rows, *val_rows, *order;
    int ntrain, nval, batch;
    float *x, *targets, *outputs, *val_out;  /* x (batch, 1, D, H, W); outputs (batch, K); val_out (nval, K) */
    int regression;                          /* the model's head is NFV_HEAD_REGRESSION */
    FILE *log;
    char ckpt[4096], logpath[4096];
    int start_epoch;
    float base_lr;
    nfv_lr_schedule schedule;
    unsigned long long seed;
    double best_bacc, best_loss, best_mae;
    double target_mean, target_sd;           /* regression, new runs: of the train split */
} train_run;


/* Events are reported by rank 0 alone: under mpirun one rank prints. */
static void emit(const train_run *r, nfv_train_event *e)
{
    if (!r->o->on_event || nfv_dist_rank() != 0) return;
    e->model = r->m;
    e->resumed = r->o->resume;
    e->epochs = r->o->epochs;
    e->train_count = r->ntrain, e->val_count = r->nval, e->batch_size = r->batch;
    e->checkpoint = r->ckpt;
    r->o->on_event(r->o->user, e);
}

/* The dataset's name in messages. */
static const char *ds_name(const nfv_dataset *ds) { return ds->csv_path ? ds->csv_path : "dataset"; }

/* Row indices of the train and val splits. */
static nfv_status split_rows(train_run *r)
{
    const nfv_dataset *ds = r->ds;
    r->train_rows = malloc(((size_t)ds->count + 1) * sizeof(int));
    r->val_rows = malloc(((size_t)ds->count + 1) * sizeof(int));
    if (!r->train_rows || !r->val_rows) return nfv_fail(NFV_ERR_NO_MEMORY, "train: out of memory");
    for (int i = 0; i < ds->count; i++) {
        if (ds->rows[i].split == NFV_SPLIT_TRAIN) r->train_rows[r->ntrain++] = i;
        else if (ds->rows[i].split == NFV_SPLIT_VAL) r->val_rows[r->nval++] = i;
    }
    if (r->ntrain < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "%s has no training rows", ds_name(ds));
    return NFV_OK;
}

/* Class weights of a new run into *out (K floats, malloc'ed; NULL for none). */
static nfv_status class_weights(const train_run *r, float **out)
{
    const char *spec = r->o->class_weights;
    const nfv_dataset *ds = r->ds;
    *out = NULL;
    if (!spec) return NFV_OK;
    if (r->regression) return nfv_fail(NFV_ERR_INVALID_ARG, "--class-weights: a regression head has no classes");
    float *cw = calloc((size_t)ds->class_count, sizeof(float));
    if (!cw) return nfv_fail(NFV_ERR_NO_MEMORY, "train: out of memory");
    if (!strcmp(spec, "auto")) {
        for (int i = 0; i < r->ntrain; i++) cw[ds->rows[r->train_rows[i]].class_index] += 1;
        for (int c = 0; c < ds->class_count; c++)
            cw[c] = cw[c] > 0 ? (float)r->ntrain / ((float)ds->class_count * cw[c]) : 1.0f;
    } else {
        const char *p = spec;
        for (int c = 0; c < ds->class_count; c++) {
            char *end;
            cw[c] = strtof(p, &end);
            if (end == p || (c < ds->class_count - 1 && *end != ',') || (c == ds->class_count - 1 && *end)) {
                free(cw);
                return nfv_fail(NFV_ERR_INVALID_ARG, "--class-weights needs %d comma-separated numbers, got \"%s\"",
                                ds->class_count, spec);
            }
            p = end + 1;
        }
    }
    *out = cw;
    return NFV_OK;
}

/* Regression: the labels must be numbers (ds from nfv_dataset_load_numeric);
 * mean and population SD of the train split's labels, which standardize
 * the targets (the SD must be > 0: a constant label cannot be learned). */
static nfv_status target_scale(train_run *r)
{
    const nfv_dataset *ds = r->ds;
    if (ds->class_count > 0)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s was read as class labels; a regression head needs numeric labels",
                        ds_name(ds));
    double sum = 0, sq = 0;
    for (int i = 0; i < r->ntrain; i++) sum += ds->rows[r->train_rows[i]].value;
    double mean = sum / r->ntrain;
    for (int i = 0; i < r->ntrain; i++) {
        double d = ds->rows[r->train_rows[i]].value - mean;
        sq += d * d;
    }
    double sd = sqrt(sq / r->ntrain);
    if (!isfinite(mean) || !(sd > 0) || !isfinite(sd))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: the %d train labels have mean %g and SD %g; regression needs labels "
                        "that vary", ds_name(ds), r->ntrain, mean, sd);
    r->target_mean = mean, r->target_sd = sd;
    return NFV_OK;
}

/* A new model and trainer.  The model's affine is the preprocessed grid's
 * (of the first train volume), so visualizations overlay on the data. */
static nfv_status start_new(train_run *r)
{
    const nfv_train_options *o = r->o;
    const nfv_dataset *ds = r->ds;
    r->regression = o->head == NFV_HEAD_REGRESSION;
    if (r->regression) NFV_TRY(target_scale(r));
    else if (ds->class_count < 2) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: need at least 2 classes", ds_name(ds));
    if (o->head == NFV_HEAD_BINARY && ds->class_count != 2)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--head binary needs 2 classes, %s has %d", ds_name(ds), ds->class_count);
    r->grid = o->grid;
    r->seed = o->seed;
    r->base_lr = isnan(o->lr) ? 1e-3f : o->lr;
    r->schedule = o->schedule == NFV_LR_DEFAULT ? NFV_LR_CONSTANT : o->schedule;
    int in[4] = {1, r->grid.nz, r->grid.ny, r->grid.nx};
    NFV_TRY(nfv_model_create_from_spec(r->ctx, o->arch, in, ds->class_count, (const char *const *)ds->class_names,
                                       o->head, r->seed, &r->m));
    nfv_model *m = r->m;
    m->target_mean = r->target_mean, m->target_sd = r->target_sd;
    m->dropout_seed = nfv_mix64(r->seed ^ 0xD50ULL);
    memcpy(m->voxel_mm, r->grid.voxel_mm, sizeof m->voxel_mm);
    m->norm = r->grid.norm;
    nfv_volume v, pv;
    NFV_TRY(nfv_volume_read(ds->rows[r->train_rows[0]].path, &v, NULL));
    nfv_status s = nfv_preprocess(&v, &r->grid, &pv);
    nfv_volume_free(&v);
    NFV_TRY(s);
    memcpy(m->affine, pv.affine, sizeof m->affine);
    nfv_volume_free(&pv);
    float *cw;
    NFV_TRY(class_weights(r, &cw));
    nfv_optim_config opt = o->opt;
    opt.lr = r->base_lr;
    s = nfv_trainer_create(r->ctx, m, &opt, cw, &r->t);
    free(cw);
    if (!s && r->regression) {
        r->t->reg_loss = o->loss;
        if (!isnan(o->huber_delta)) r->t->huber_delta = o->huber_delta;
        if (!(r->t->huber_delta > 0) || isinf(r->t->huber_delta))
            s = nfv_fail(NFV_ERR_INVALID_ARG, "--huber-delta must be a number > 0, got %g", (double)o->huber_delta);
    }
    return s;
}

/* Model, trainer, epoch, best, seed and schedule from the checkpoint.  The
 * schedule and its base rate continue unless given again; older checkpoints
 * hold only the rate in use.  The checkpoint's grid wins over o->grid: it is
 * what the model was built for. */
static nfv_status start_resume(train_run *r)
{
    const nfv_train_options *o = r->o;
    nfv_st_file meta;
    NFV_TRY(nfv_checkpoint_load(r->ctx, r->ckpt, &r->m, &r->t, &meta));
    r->regression = r->m->head == NFV_HEAD_REGRESSION;
    const char *e = nfv_st_meta(&meta, "epoch"), *bb = nfv_st_meta(&meta, r->regression ? "best_mae" : "best_bacc"),
               *bl = nfv_st_meta(&meta, "best_loss"), *sd = nfv_st_meta(&meta, "seed"),
               *bl_meta = nfv_st_meta(&meta, "base_lr"), *sc_meta = nfv_st_meta(&meta, "schedule");
    nfv_status s = NFV_OK;
    if (!e || !bb || !bl || !sd) {
        s = nfv_fail(NFV_ERR_FORMAT, "%s: checkpoint lacks epoch/best/seed metadata", r->ckpt);
    } else {
        r->start_epoch = atoi(e);
        r->base_lr = !isnan(o->lr) ? o->lr : bl_meta ? strtof(bl_meta, NULL) : r->t->opt.lr;
        if (o->schedule != NFV_LR_DEFAULT) r->schedule = o->schedule;
        else r->schedule = sc_meta && !strcmp(sc_meta, "cosine") ? NFV_LR_COSINE : NFV_LR_CONSTANT;
        *(r->regression ? &r->best_mae : &r->best_bacc) = strtod(bb, NULL);
        r->best_loss = strtod(bl, NULL);
        r->seed = strtoull(sd, NULL, 10);
    }
    nfv_st_free(&meta);
    NFV_TRY(s);
    const nfv_model *m = r->m;
    r->grid = (nfv_grid){m->input_shape[3], m->input_shape[2], m->input_shape[1],
                         {m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]}, m->norm};
    if (r->regression != (r->ds->class_count == 0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "the checkpoint %s is a %s model but %s was read %s (--head %s)", r->ckpt,
                        nfv_head_name(m->head), ds_name(r->ds), r->regression ? "as classes" : "as numbers",
                        r->regression ? "regression" : "softmax|binary");
    if (m->class_count != r->ds->class_count)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s has %d classes, the checkpoint %d", ds_name(r->ds),
                        r->ds->class_count, m->class_count);
    return NFV_OK;
}

/* Volume cache and host batch buffers.  The epoch log is opened with the
 * first epoch's row (log_epoch), so a run that fails before finishing an
 * epoch leaves no file behind. */
static nfv_status open_run(train_run *r)
{
    NFV_TRY(nfv_volume_cache_create(r->ds, &r->grid, r->o->cache_bytes, &r->cache));
    size_t per = nfv_shape_numel(4, r->m->input_shape);
    int k = nfv_model_outputs(r->m);
    r->x = malloc((size_t)r->batch * per * sizeof(float));
    r->targets = malloc((size_t)r->batch * sizeof(float));
    r->outputs = malloc((size_t)r->batch * (size_t)k * sizeof(float));
    r->val_out = malloc(((size_t)r->nval + 1) * (size_t)k * sizeof(float));
    r->order = malloc((size_t)r->ntrain * sizeof(int));
    if (!r->x || !r->targets || !r->outputs || !r->val_out || !r->order)
        return nfv_fail(NFV_ERR_NO_MEMORY, "train: out of memory for batch %d", r->batch);
    return NFV_OK;
}

/* One row of the epoch log (appended on resume; a new run starts it with the
 * header). */
static nfv_status log_epoch(train_run *r, const nfv_epoch_result *res)
{
    if (!r->log) {
        r->log = fopen(r->logpath, r->o->resume ? "a" : "w");
        if (!r->log) return nfv_fail(NFV_ERR_IO, "%s: cannot write: %s", r->logpath, strerror(errno));
        if (!r->o->resume && r->regression)
            fprintf(r->log, "epoch,lr,train_loss,train_mae,val_loss,val_mae,val_rmse,val_r2,seconds,saved\n");
        else if (!r->o->resume)
            fprintf(r->log, "epoch,lr,train_loss,train_acc,val_loss,val_acc,val_balanced_acc,val_auc,seconds,saved\n");
    }
    if (r->regression)
        fprintf(r->log, "%d,%.6g,%.6f,%.6g,%.6f,%.6g,%.6g,%.4f,%.1f,%d\n", res->epoch + 1, res->lr, res->train_loss,
                res->train_mae, res->val_loss, res->val_mae, res->val_rmse, res->val_r2, res->seconds, res->saved);
    else
        fprintf(r->log, "%d,%.6g,%.6f,%.4f,%.6f,%.4f,%.4f,%.4f,%.1f,%d\n", res->epoch + 1, res->lr, res->train_loss,
                res->train_acc, res->val_loss, res->val_acc, res->val_bacc, res->val_auc, res->seconds, res->saved);
    if (fflush(r->log) != 0 || ferror(r->log))
        return nfv_fail(NFV_ERR_IO, "%s: write failed: %s", r->logpath, strerror(errno));
    return NFV_OK;
}

/* Every rank's outputs (its block of outputs, at its offset) on every rank. */
static nfv_status gather_outputs(const nfv_dist_batch *db, int k, float *outputs)
{
    int counts[256];
    if (db->size > 256) return nfv_fail(NFV_ERR_UNSUPPORTED, "training: at most 256 ranks (%d)", db->size);
    for (int r = 0; r < db->size; r++) counts[r] = nfv_dist_batch_count(db, r) * k;
    float *mine = malloc(((size_t)db->count * k + 1) * sizeof(float));
    if (!mine) return nfv_fail(NFV_ERR_NO_MEMORY, "training: out of memory");
    memcpy(mine, outputs + (size_t)db->offset * k, (size_t)db->count * k * sizeof(float));
    nfv_status s = nfv_dist_gather_floats(mine, counts, outputs);
    free(mine);
    return s;
}

/* One epoch's batches: shuffled rows, augmented volumes, one step each. */
static nfv_status train_batches(train_run *r, int epoch, nfv_epoch_result *res)
{
    const nfv_train_options *o = r->o;
    const int *in = r->m->input_shape;
    size_t per = nfv_shape_numel(4, in);
    int k = nfv_model_outputs(r->m), nbatches = r->ntrain / r->batch;
    memcpy(r->order, r->train_rows, (size_t)r->ntrain * sizeof(int));
    nfv_train_shuffle(r->order, r->ntrain, r->seed, epoch);
    nfv_train_event ev = {.kind = NFV_TRAIN_EPOCH_BEGIN, .epoch = epoch, .batches = nbatches};
    emit(r, &ev);
    double loss_sum = 0, abs_err = 0; /* abs_err: regression, label units */
    int correct = 0, seen = 0;
    const nfv_model *m = r->m;
    nfv_status s = NFV_OK;
    /* Data parallelism: this rank loads and steps its block of each batch
     * (all of it in one process); targets are the whole batch's. */
    const nfv_dist_batch db = nfv_dist_batch_of(r->batch);
    for (int b = 0; b < nbatches && !s; b++) {
        /* Between steps nothing is being written: a safe point to stop.  The
         * checkpoint still holds the last finished epoch. */
        s = nfv_interrupt_check("during epoch %d, batch %d of %d; %s holds the last finished epoch: continue with "
                                "--resume", epoch + 1, b + 1, nbatches, r->ckpt);
        for (int i = 0; i < r->batch && !s; i++) {
            int row = r->order[b * r->batch + i];
            /* Regression targets in SD units (model.h, target_mean). */
            r->targets[i] = r->regression ? (float)((r->ds->rows[row].value - m->target_mean) / m->target_sd)
                                          : (float)r->ds->rows[row].class_index;
            if (i < db.offset || i >= db.offset + db.count) continue;
            const float *v;
            if ((s = nfv_volume_cache_get(r->cache, row, &v))) break;
            nfv_train_augment(&o->augment, r->seed, epoch, b * r->batch + i, v, r->x + (size_t)(i - db.offset) * per,
                              in[1], in[2], in[3]);
        }
        float loss = 0;
        if (!s) s = nfv_trainer_step_dist(r->t, r->x, r->targets, &db, &loss, r->outputs + (size_t)db.offset * k);
        if (!s && db.size > 1) s = gather_outputs(&db, k, r->outputs);
        /* A NaN or Inf loss poisons the weights from here on: stop before
         * this epoch is saved, so the checkpoint keeps the last good one. */
        if (!s && !isfinite(loss))
            s = nfv_fail(NFV_ERR_DIVERGED,
                         "training diverged: loss %g at epoch %d, batch %d of %d (try a lower --lr); %s keeps the last "
                         "good epoch",
                         (double)loss, epoch + 1, b + 1, nbatches, r->ckpt);
        if (s) break;
        loss_sum += loss;
        for (int i = 0; i < r->batch; i++) {
            if (r->regression) abs_err += m->target_sd * fabs((double)r->outputs[i] - r->targets[i]);
            else correct += nfv_model_predict_class(m, r->outputs + (size_t)i * k) == (int)r->targets[i];
        }
        seen += r->batch;
        ev = (nfv_train_event){.kind = NFV_TRAIN_BATCH, .epoch = epoch, .batch = b + 1, .batches = nbatches,
                               .loss = loss_sum / (b + 1), .acc = r->regression ? NAN : (double)correct / seen,
                               .mae = r->regression ? abs_err / seen : NAN};
        emit(r, &ev);
    }
    ev = (nfv_train_event){.kind = NFV_TRAIN_BATCHES_END, .epoch = epoch, .batches = nbatches};
    emit(r, &ev);
    res->train_loss = nbatches ? loss_sum / nbatches : NAN;
    res->train_acc = seen && !r->regression ? (double)correct / seen : NAN;
    res->train_mae = seen && r->regression ? abs_err / seen : NAN;
    return s;
}

/* Cross-entropy of one output row against the true class, on the host. */
static double host_loss(const nfv_model *m, const float *row, int truth)
{
    double p[64];
    if (m->class_count > 64) return NAN;
    nfv_model_probabilities(m, row, p);
    double q = p[truth] > 1e-12 ? p[truth] : 1e-12;
    return -log(q);
}

/* Regression validation: predictions (label units, nfv_model_predict) give
 * MAE, RMSE, R^2; the loss is the training loss on standardized values, so
 * it compares with the train loss. */
static nfv_status validate_regression(train_run *r, nfv_epoch_result *res)
{
    const nfv_model *m = r->m;
    int n = r->nval;
    double *y = malloc((size_t)n * sizeof(double)), *p = malloc((size_t)n * sizeof(double)), loss = 0;
    if (!y || !p) {
        free(y), free(p);
        return nfv_fail(NFV_ERR_NO_MEMORY, "validation: out of memory");
    }
    const double delta = r->t->huber_delta;
    for (int i = 0; i < n; i++) {
        y[i] = r->ds->rows[r->val_rows[i]].value, p[i] = r->val_out[i];
        double d = (p[i] - y[i]) / m->target_sd, a = fabs(d);
        loss += r->t->reg_loss == NFV_LOSS_HUBER ? (a <= delta ? 0.5 * d * d : delta * (a - 0.5 * delta)) : d * d;
    }
    nfv_regression_metrics met;
    nfv_status s = nfv_regression_metrics_compute(n, y, p, &met);
    free(y), free(p);
    res->val_loss = n ? loss / n : NAN;
    res->val_mae = met.mae, res->val_rmse = met.rmse, res->val_r2 = met.r2;
    return s ? nfv_fail_context(s, "validation on %d rows of %s", n, ds_name(r->ds)) : NFV_OK;
}

/* Eval-mode loss and metrics on the val rows into res. */
static nfv_status validate(train_run *r, nfv_epoch_result *res)
{
    nfv_model *m = r->m;
    int n = r->nval;
    NFV_TRY(nfv_model_predict_rows_dist(m, r->ctx, r->cache, r->val_rows, n, r->batch, r->val_out));
    if (r->regression) return validate_regression(r, res);
    int k = nfv_model_outputs(m);
    int *truth = malloc((size_t)n * sizeof(int)), *pred = malloc((size_t)n * sizeof(int));
    double *score = malloc((size_t)n * sizeof(double));
    if (!truth || !pred || !score) {
        free(truth), free(pred), free(score);
        return nfv_fail(NFV_ERR_NO_MEMORY, "validation: out of memory");
    }
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *row = r->val_out + (size_t)i * k;
        truth[i] = r->ds->rows[r->val_rows[i]].class_index;
        pred[i] = nfv_model_predict_class(m, row);
        double p[64] = {0};
        nfv_model_probabilities(m, row, p);
        score[i] = p[1];
        loss += host_loss(m, row, truth[i]);
    }
    nfv_metrics met;
    memset(&met, 0, sizeof met);
    nfv_status s = nfv_metrics_compute(n, m->class_count, truth, pred, score, &met);
    free(truth), free(pred), free(score);
    res->val_loss = n ? loss / n : NAN;
    res->val_acc = met.accuracy, res->val_bacc = met.balanced_accuracy, res->val_auc = met.auc;
    nfv_metrics_free(&met);
    return s;
}

/* The model file when validation improved (or always without a val split),
 * then the checkpoint with what a resume needs. */
static nfv_status save_epoch(train_run *r, int epoch, nfv_epoch_result *res)
{
    res->saved = 0;
    if (r->nval > 0) {
        NFV_TRY(validate(r, res));
        double bacc = res->val_bacc, mae = res->val_mae;
        int better = r->regression ? mae < r->best_mae || (mae == r->best_mae && res->val_loss < r->best_loss)
                                   : bacc > r->best_bacc || (bacc == r->best_bacc && res->val_loss < r->best_loss);
        if (better) {
            if (r->regression) r->best_mae = mae;
            else r->best_bacc = bacc;
            r->best_loss = res->val_loss;
            if (nfv_dist_rank() == 0) NFV_TRY(nfv_model_save(r->m, r->o->out));
            res->saved = 1;
        }
    } else {
        if (nfv_dist_rank() == 0) NFV_TRY(nfv_model_save(r->m, r->o->out)); /* no validation split: keep the latest */
        res->saved = 1;
    }
    char ebuf[32], bb[32], bl[32], sd[32], blr[32];
    snprintf(ebuf, sizeof ebuf, "%d", epoch + 1);
    snprintf(bb, sizeof bb, "%.17g", r->regression ? r->best_mae : r->best_bacc);
    snprintf(bl, sizeof bl, "%.17g", r->best_loss);
    snprintf(sd, sizeof sd, "%llu", r->seed);
    snprintf(blr, sizeof blr, "%.9g", r->base_lr);
    const char *keys[6] = {"epoch", r->regression ? "best_mae" : "best_bacc", "best_loss", "seed", "base_lr", "schedule"},
               *vals[6] = {ebuf, bb, bl, sd, blr, nfv_lr_schedule_name(r->schedule)};
    /* Every rank holds the same model and optimizer state; rank 0 writes them. */
    return nfv_dist_rank() == 0 ? nfv_checkpoint_save(r->t, r->ckpt, 6, keys, vals) : NFV_OK;
}

static nfv_status run_epoch(train_run *r, int epoch)
{
    double t0 = nfv_seconds();
    nfv_epoch_result res = {.epoch = epoch, .val_loss = NAN, .val_acc = NAN, .val_bacc = NAN, .val_auc = NAN,
                            .train_mae = NAN, .val_mae = NAN, .val_rmse = NAN, .val_r2 = NAN};
    res.lr = r->t->opt.lr = nfv_train_lr(r->schedule, r->base_lr, epoch, r->o->epochs);
    NFV_TRY(train_batches(r, epoch, &res));
    NFV_TRY(save_epoch(r, epoch, &res));
    res.seconds = nfv_seconds() - t0;
    if (nfv_dist_rank() == 0) NFV_TRY(log_epoch(r, &res));
    nfv_train_event ev = {.kind = NFV_TRAIN_EPOCH_END, .epoch = epoch, .result = &res};
    emit(r, &ev);
    return NFV_OK;
}

static nfv_status run(train_run *r, nfv_train_result *result)
{
    NFV_TRY(split_rows(r));
    r->batch = r->o->batch > r->ntrain ? r->ntrain : r->o->batch;
    if (r->batch < nfv_dist_size())
        return nfv_fail(NFV_ERR_INVALID_ARG, "train: the batch of %d is split over %d ranks; give --batch >= %d",
                        r->batch, nfv_dist_size(), nfv_dist_size());
    NFV_TRY(r->o->resume ? start_resume(r) : start_new(r));
    NFV_TRY(open_run(r));
    nfv_train_event ev = {.kind = NFV_TRAIN_START, .epoch = r->start_epoch};
    emit(r, &ev);
    for (int epoch = r->start_epoch; epoch < r->o->epochs; epoch++) {
        NFV_TRY(run_epoch(r, epoch));
        if (result) result->epochs_run++;
    }
    return NFV_OK;
}

nfv_status nfv_train_run(nfv_context *ctx, const nfv_dataset *ds, const nfv_train_options *o, nfv_train_result *result)
{
    if (!o || !o->out || !o->out[0]) return nfv_fail(NFV_ERR_INVALID_ARG, "train: no output model path");
    if (o->epochs < 1 || o->batch < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "train: epochs (%d) and batch (%d) must be >= 1", o->epochs, o->batch);
    train_run r = {.ctx = ctx, .ds = ds, .o = o, .best_bacc = -1, .best_loss = INFINITY, .best_mae = INFINITY};
    snprintf(r.ckpt, sizeof r.ckpt, "%s.ckpt", o->out);
    snprintf(r.logpath, sizeof r.logpath, "%s.log.csv", o->out);
    if (result) memset(result, 0, sizeof *result);
    nfv_status s = run(&r, result);
    if (result) {
        result->best_bacc = r.best_bacc, result->best_loss = r.best_loss, result->best_mae = r.best_mae;
        result->start_epoch = r.start_epoch;
    }
    if (r.log) fclose(r.log);
    free(r.x), free(r.targets), free(r.outputs), free(r.val_out);
    free(r.train_rows), free(r.val_rows), free(r.order);
    nfv_volume_cache_free(r.cache);
    nfv_trainer_free(r.t);
    nfv_model_free(r.m);
    return s;
}
