/* `neurofv train`: arguments -> nfv_train_run (src/model/train_loop.c), which
 * trains, validates each epoch and keeps the best model and a resumable
 * checkpoint; this file prints its progress. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "neurofv/dist.h"
#include "neurofv/train.h"

NFV_COMMAND(train, "train", "Train a model on a dataset CSV (best model by validation, resumable)")

static int parse_shape3(const char *s, int v[3])
{
    char tail;
    return s && sscanf(s, "%d,%d,%d%c", &v[0], &v[1], &v[2], &tail) == 3 && v[0] > 0 && v[1] > 0 && v[2] > 0 &&
           v[0] <= 4096 && v[1] <= 4096 && v[2] <= 4096;
}

/* Progress bar per epoch on stderr, one line per epoch on stdout. */
typedef struct printer {
    cli_progress prog;
    char label[64]; /* the progress bar keeps a pointer to it */
    cli_estimate_state est; /* the whole run's time from the first epoch's steps */
    int start_epoch, epochs;
} printer;

/* One line on stderr, once, a few training steps into the run: the whole
 * run's time from the measured step time (validation and checkpoints not
 * measured yet, so the line says so). */
static void estimate_run(printer *p, const nfv_train_event *e)
{
    long done = (long)(e->epoch - p->start_epoch) * e->batches + e->batch;
    long total = (long)(p->epochs - p->start_epoch) * e->batches;
    double per, whole, left;
    if (!cli_estimate_update(&p->est, done, total, &per, &whole, &left)) return;
    char w[32], l[32];
    fprintf(stderr, "%strain: estimate: %s in all, %s left (%.3g s per step x %d steps x %d epochs; validation "
            "not included)\n", p->prog.is_tty ? "\r\033[K" : "", cli_duration(whole, w, sizeof w),
            cli_duration(left, l, sizeof l), per, e->batches, p->epochs - p->start_epoch);
}

static void print_event(void *user, const nfv_train_event *e)
{
    printer *p = user;
    const nfv_model *m = e->model;
    const nfv_epoch_result *r = e->result;
    char text[64];
    switch (e->kind) {
    case NFV_TRAIN_START:
        p->start_epoch = e->epoch;
        cli_estimate_start(&p->est);
        if (e->resumed) fprintf(stderr, "resuming from %s at epoch %d\n", e->checkpoint, e->epoch + 1);
        else
            fprintf(stderr, "model %s: %d layers, %lld parameters, input 1x%dx%dx%d, %d train / %d val subjects, batch %d\n",
                    m->arch_label, m->layer_count, nfv_model_param_count(m), m->input_shape[1], m->input_shape[2],
                    m->input_shape[3], e->train_count, e->val_count, e->batch_size);
        break;
    case NFV_TRAIN_EPOCH_BEGIN:
        snprintf(p->label, sizeof p->label, "epoch %d/%d", e->epoch + 1, e->epochs);
        p->epochs = e->epochs;
        cli_progress_start(&p->prog, p->label);
        p->prog.est.printed = 1; /* not per epoch: estimate_run gives the whole run's */
        break;
    case NFV_TRAIN_BATCH:
        if (m->head == NFV_HEAD_REGRESSION) snprintf(text, sizeof text, "loss %.4f mae %.4g", e->loss, e->mae);
        else snprintf(text, sizeof text, "loss %.4f acc %.3f", e->loss, e->acc);
        estimate_run(p, e);
        cli_progress_update(&p->prog, e->batch, e->batches, text);
        break;
    case NFV_TRAIN_BATCHES_END: cli_progress_end(&p->prog); break;
    case NFV_TRAIN_EPOCH_END:
        if (m->head == NFV_HEAD_REGRESSION) {
            printf("epoch %d/%d  lr %.3g  train loss %.4f mae %.4g  val loss %.4f mae %.4g rmse %.4g r2 %.3f  %.1fs%s\n",
                   r->epoch + 1, e->epochs, r->lr, r->train_loss, r->train_mae, r->val_loss, r->val_mae, r->val_rmse,
                   r->val_r2, r->seconds, r->saved ? "  (saved)" : "");
            fflush(stdout);
            break;
        }
        /* ROC AUC is defined for two classes only (nfv_metrics leaves it NaN otherwise). */
        char auc[32] = "";
        if (!isnan(r->val_auc)) snprintf(auc, sizeof auc, " auc %.3f", r->val_auc);
        printf("epoch %d/%d  lr %.3g  train loss %.4f acc %.3f  val loss %.4f acc %.3f bacc %.3f%s  %.1fs%s\n",
               r->epoch + 1, e->epochs, r->lr, r->train_loss, r->train_acc, r->val_loss, r->val_acc, r->val_bacc, auc,
               r->seconds, r->saved ? "  (saved)" : "");
        fflush(stdout);
        break;
    }
}

/* The model grid: the preset's (else 91 x 109 x 91 at 2 mm), then --shape
 * X,Y,Z and --voxel (NaN: not given). */
static int train_grid(const char *arch, const char *shape, float voxel, const char *norm, nfv_grid *grid)
{
    int in[4] = {1, 91, 109, 91};
    double vox[3] = {2, 2, 2};
    nfv_arch_preset_input(arch, in, vox);
    int xyz[3];
    if (shape) {
        if (!parse_shape3(shape, xyz))
            return cli_failf("train", "--shape expects X,Y,Z voxels, each 1..4096, got \"%s\"", shape);
        in[1] = xyz[2], in[2] = xyz[1], in[3] = xyz[0];
    }
    if (!isnan(voxel) && !(voxel > 0 && voxel <= 20))
        return cli_failf("train", "--voxel expects a size in mm in (0, 20], got %g", voxel);
    if (!isnan(voxel)) vox[0] = vox[1] = vox[2] = voxel;
    *grid = (nfv_grid){in[3], in[2], in[1], {vox[0], vox[1], vox[2]}, NFV_NORM_ZSCORE_NONZERO};
    if (nfv_norm_method_parse(norm, &grid->norm) || grid->norm == NFV_NORM_ZSCORE_MASK)
        return cli_failf("train", "--norm expects none, zscore-nonzero, zscore or minmax, got \"%s\"", norm);
    return 0;
}

/* --class-weights: auto, or comma-separated finite weights >= 0, not all 0
 * (their count is checked against the classes once the data are read). */
static int class_weights_ok(const char *s)
{
    if (!strcmp(s, "auto")) return 1;
    double sum = 0;
    for (const char *p = s;;) {
        char *end;
        double w = strtod(p, &end);
        if (end == p || !isfinite(w) || w < 0 || (*end && *end != ',')) return 0;
        sum += w;
        if (!*end) return sum > 0;
        p = end + 1;
    }
}

/* Options that need checking beyond their type; 0 or the exit code. */
static int check_options(nfv_train_options *o, const char *optimizer, const char *schedule, const char *augment,
                         const char *head, const char *loss, int cache_mb)
{
    if (o->epochs < 1) return cli_failf("train", "--epochs must be >= 1, got %d", o->epochs);
    if (o->batch < 1) return cli_failf("train", "--batch must be >= 1, got %d", o->batch);
    if (!strcmp(optimizer, "sgd")) o->opt.kind = NFV_OPT_SGD;
    else if (strcmp(optimizer, "adam")) return cli_failf("train", "--optimizer must be adam or sgd, got \"%s\"", optimizer);
    if (!isnan(o->lr) && !(o->lr > 0)) return cli_failf("train", "--lr must be > 0, got %g", o->lr);
    if (!(o->opt.momentum >= 0 && o->opt.momentum < 1))
        return cli_failf("train", "--momentum must be in [0, 1), got %g", o->opt.momentum);
    if (!(o->opt.weight_decay >= 0)) return cli_failf("train", "--weight-decay must be >= 0, got %g", o->opt.weight_decay);
    if (o->class_weights && !class_weights_ok(o->class_weights))
        return cli_failf("train", "--class-weights expects auto or weights W1,W2,.. >= 0 (not all 0), got \"%s\"",
                         o->class_weights);
    if (schedule && nfv_lr_schedule_parse(schedule, &o->schedule))
        return cli_failf("train", "--schedule must be constant or cosine, got \"%s\"", schedule);
    if (nfv_augment_parse(augment, &o->augment))
        return cli_failf("train", "--augment expects a comma-separated list of shift=N and flip, got \"%s\"", augment);
    if (nfv_head_parse(head, &o->head))
        return cli_failf("train", "--head must be softmax, binary or regression, got \"%s\"", head);
    if (loss && nfv_reg_loss_parse(loss, &o->loss)) return cli_failf("train", "--loss must be mse or huber, got \"%s\"", loss);
    if (loss && o->head != NFV_HEAD_REGRESSION) return cli_failf("train", "--loss is for --head regression");
    if (!isnan(o->huber_delta) && (o->head != NFV_HEAD_REGRESSION || o->loss != NFV_LOSS_HUBER))
        return cli_failf("train", "--huber-delta is for --head regression --loss huber");
    if (!isnan(o->huber_delta) && !(o->huber_delta > 0 && isfinite(o->huber_delta)))
        return cli_failf("train", "--huber-delta must be > 0, got %g", o->huber_delta);
    if (o->class_weights && o->head == NFV_HEAD_REGRESSION)
        return cli_failf("train", "--class-weights: a regression head has no classes");
    if (cache_mb < 0) return cli_failf("train", "--cache-mb must be >= 0, got %d", cache_mb);
    return 0;
}

/* Before any output exists: the architecture on the grid (a new run), and
 * every train and val row's volume read once, so that a bad file is named
 * with its CSV line now and not in the middle of an epoch. */
static nfv_status check_inputs(const nfv_train_options *o, const nfv_dataset *ds)
{
    if (!o->resume) {
        int in[4] = {1, o->grid.nz, o->grid.ny, o->grid.nx}, k = ds->class_count, got = 0;
        int one = o->head != NFV_HEAD_SOFTMAX; /* binary: one logit; regression: one value */
        nfv_status s = nfv_arch_check(o->arch, in, one ? 1 : k, &got);
        if (!s && o->head == NFV_HEAD_REGRESSION && got != 1)
            s = nfv_fail(NFV_ERR_INVALID_ARG, "the last layer gives %d outputs; a regression head needs 1", got);
        /* a softmax spec with one output trains a binary head on 2 classes */
        else if (!s && !(one ? got == 1 : got == k || (got == 1 && k == 2)))
            s = nfv_fail(NFV_ERR_INVALID_ARG, "the last layer gives %d outputs; %s has %d classes (%s head)", got,
                         ds->csv_path, k, nfv_head_name(o->head));
        if (s) return nfv_fail_context(s, "--arch \"%.200s\"", o->arch);
    }
    for (int i = 0; i < ds->count; i++) {
        if (ds->rows[i].split == NFV_SPLIT_TEST) continue;
        nfv_volume v;
        nfv_status s = nfv_volume_read(ds->rows[i].path, &v, NULL);
        if (s) return nfv_fail_context(s, "%s line %d", ds->csv_path, ds->rows[i].csv_line);
        nfv_volume_free(&v);
    }
    return NFV_OK;
}

int cmd_train(int argc, char **argv)
{
    nfv_train_options o;
    nfv_train_options_default(&o);
    const char *data = NULL, *optimizer = "adam", *device = NULL, *shape = NULL, *norm = "zscore-nonzero",
               *head = "softmax", *schedule = NULL, *augment = NULL, *loss = NULL;
    int quiet = 0, cache_mb = 4096;
    float voxel = NAN;
    const cli_option opts[] = {
        {"--data", CLI_STRING, &data, "CSV", "dataset CSV path,label[,split] (required)"},
        {"--arch", CLI_STRING, &o.arch, "SPEC", "architecture spec or preset ref4|ref4-gap|notebook (default ref4)"},
        {"--epochs", CLI_INT, &o.epochs, "N", "epochs (default 10)"},
        {"--batch", CLI_INT, &o.batch, "N", "mini-batch size (default 4; the last partial batch is dropped)"},
        {"--lr", CLI_FLOAT, &o.lr, "X", "learning rate (default 0.001; with --resume, replaces the checkpoint's)"},
        {"--schedule", CLI_STRING, &schedule, "constant|cosine",
         "learning-rate schedule over --epochs: constant, or cosine from --lr down to --lr/100 (default constant)"},
        {"--optimizer", CLI_STRING, &optimizer, "adam|sgd", "optimizer (default adam)"},
        {"--momentum", CLI_FLOAT, &o.opt.momentum, "X", "SGD momentum (default 0.9)"},
        {"--weight-decay", CLI_FLOAT, &o.opt.weight_decay, "X", "L2 weight decay (default 0)"},
        {"--class-weights", CLI_STRING, &o.class_weights, "auto|W1,W2,..",
         "loss weights per class; auto = n / (K * count) over the training split (default none)"},
        {"--augment", CLI_STRING, &augment, "shift=N,flip",
         "random shift of up to N voxels per axis and/or random left-right flip (default none)"},
        {"--head", CLI_STRING, &head, "softmax|binary|regression",
         "softmax over K classes, one logit for 2 classes, or one value for numeric labels (e.g. age)"},
        {"--loss", CLI_STRING, &loss, "mse|huber",
         "regression loss on standardized labels (label - train mean) / train SD (default mse; --resume keeps the checkpoint's)"},
        {"--huber-delta", CLI_FLOAT, &o.huber_delta, "D", "Huber's delta in standardized units (default 1)"},
        {"--seed", CLI_U64, &o.seed, "S", "seed of initialization, shuffling, augmentation, dropout (default 1)"},
        {"--out", CLI_STRING, &o.out, "MODEL", "output model .safetensors (required); also MODEL.ckpt, MODEL.log.csv"},
        {"--resume", CLI_FLAG, &o.resume, NULL, "continue from MODEL.ckpt"},
        {"--device", CLI_STRING, &device, "DEV", "OpenCL device (see neurofv devices)"},
        {"--voxel", CLI_FLOAT, &voxel, "MM", "model voxel size (default: the preset's, else 2)"},
        {"--shape", CLI_STRING, &shape, "X,Y,Z", "model grid in voxels (default: the preset's, else 91,109,91)"},
        {"--norm", CLI_STRING, &norm, "METHOD", "intensity normalization (default zscore-nonzero)"},
        {"--cache-mb", CLI_INT, &cache_mb, "MB", "preprocessed volume cache (default 4096)"},
        {"--quiet", CLI_FLAG, &quiet, NULL, "only the final line"},
        {0},
    };
    int r = cli_parse("train", "--data CSV --out MODEL [options]",
                      "Train a 3D CNN.  Per epoch: train loss/accuracy, validation loss/accuracy/balanced accuracy/AUC "
                      "(regression: loss, MAE, RMSE, R^2 in the label's units); the best model by validation balanced "
                      "accuracy (regression: MAE; then loss) is written to MODEL, every epoch to MODEL.log.csv, and a "
                      "checkpoint with the optimizer state to MODEL.ckpt for --resume (give --head regression again).",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (!data || !o.out) return cli_failf("train", "--data CSV and --out MODEL are required (see neurofv train --help)");
    if ((r = check_options(&o, optimizer, schedule, augment, head, loss, cache_mb))) return r;
    if ((r = train_grid(o.arch, shape, voxel, norm, &o.grid))) return r;
    o.cache_bytes = (size_t)cache_mb << 20;
    printer p;
    memset(&p, 0, sizeof p);
    if (!quiet) o.on_event = print_event, o.user = &p;

    nfv_dataset ds;
    /* Regression labels are numbers (no classes). */
    nfv_status s = o.head == NFV_HEAD_REGRESSION ? nfv_dataset_load_numeric(data, &ds) : nfv_dataset_load(data, &ds);
    if (s) return cli_fail("train", s);
    nfv_context *ctx = NULL;
    nfv_train_result res;
    memset(&res, 0, sizeof res);
    s = check_inputs(&o, &ds);
    if (!s) s = nfv_context_create(device, &ctx);
    /* A run that cannot fit the device is refused here, with the numbers, not inside a kernel. */
    if (!s) s = nfv_train_memory_check(ctx, &ds, &o);
    if (!s) s = nfv_train_run(ctx, &ds, &o, &res);
    nfv_context_free(ctx);
    nfv_dataset_free(&ds);
    /* The cohort's amplitude spectrum for --param maco (visualize), from the
     * training rows, into the best model's file (under mpirun by rank 0,
     * which wrote the model). */
    if (!s && nfv_dist_rank() == 0) s = cli_model_spectrum(o.out, data, "train", device, NULL);
    if (s) return cli_fail("train", s);
    if (o.head == NFV_HEAD_REGRESSION)
        printf("best validation MAE %.4g (loss %.4f); model %s\n", res.best_mae, res.best_loss, o.out);
    else
        printf("best validation balanced accuracy %.4f (loss %.4f); model %s\n", res.best_bacc, res.best_loss, o.out);
    return 0;
}
