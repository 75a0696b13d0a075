/* `neurofv train`: train a model on a dataset CSV, validating each epoch,
 * keeping the best model and a resumable checkpoint. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "cli.h"
#include "neurofv/metrics.h"
#include "neurofv/train.h"

NFV_COMMAND(train, "train", "Train a model on a dataset CSV (best model by validation, resumable)")

/* Per-epoch shuffling and augmentation come from hashes of (seed, epoch, ...),
 * not from a running generator, so a resumed run draws exactly what the
 * uninterrupted run would have drawn. */
static void shuffle(int *idx, int n, unsigned long long seed, int epoch)
{
    unsigned long long s = nfv_mix64(seed ^ nfv_mix64(0x5EEDULL + (unsigned long long)epoch));
    for (int i = n - 1; i > 0; i--) {
        s = nfv_mix64(s);
        int j = (int)(s % (unsigned long long)(i + 1));
        int t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
}

/* dst (D, H, W) = src shifted by (dz, dy, dx) voxels, zeros shifted in. */
static void shifted_copy(float *dst, const float *src, int D, int H, int W, int dz, int dy, int dx)
{
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++) {
            float *o = dst + ((size_t)z * H + y) * W;
            int sz = z - dz, sy = y - dy;
            if (sz < 0 || sz >= D || sy < 0 || sy >= H) {
                memset(o, 0, (size_t)W * sizeof *o);
                continue;
            }
            const float *in = src + ((size_t)sz * H + sy) * W;
            for (int x = 0; x < W; x++) {
                int sx = x - dx;
                o[x] = sx >= 0 && sx < W ? in[sx] : 0.0f;
            }
        }
}

/* dst (D, H, W) = src mirrored along x (left-right in RAS-oriented grids). */
static void flip_x_inplace(float *v, int D, int H, int W)
{
    for (size_t r = 0; r < (size_t)D * H; r++) {
        float *row = v + r * W;
        for (int x = 0; x < W / 2; x++) {
            float t = row[x];
            row[x] = row[W - 1 - x], row[W - 1 - x] = t;
        }
    }
}

/* --augment LIST: comma-separated shift=N and flip. */
static int parse_augment(const char *s, int *shift, int *flip)
{
    *shift = 0, *flip = 0;
    if (!s) return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char end;
        if (!strcmp(tok, "flip")) *flip = 1;
        else if (sscanf(tok, "shift=%d%c", shift, &end) != 1 || *shift < 0) return 0;
    }
    return 1;
}

/* Learning rate of an epoch (0-based) under the schedule: constant, or a
 * cosine from base down to base/100 at the last epoch (SGDR without restarts,
 * torch's CosineAnnealingLR with eta_min = base/100, stepped per epoch). */
static float scheduled_lr(const char *schedule, float base, int epoch, int epochs)
{
    if (strcmp(schedule, "cosine") || epochs < 2) return base;
    double floor_lr = base / 100.0, t = (double)epoch / (double)(epochs - 1);
    return (float)(floor_lr + 0.5 * (base - floor_lr) * (1.0 + cos(3.14159265358979323846 * t)));
}

static int parse_shape3(const char *s, int v[3])
{
    return s && sscanf(s, "%d,%d,%d", &v[0], &v[1], &v[2]) == 3 && v[0] > 0 && v[1] > 0 && v[2] > 0;
}

/* Host loss of eval outputs (cross-entropy / BCE), for validation. */
static double host_loss(const nfv_model *m, const float *row, int truth)
{
    double p[64];
    if (m->class_count > 64) return NAN;
    nfv_model_probabilities(m, row, p);
    double q = p[truth] > 1e-12 ? p[truth] : 1e-12;
    return -log(q);
}

typedef struct eval_result {
    double loss;
    nfv_metrics metrics;
} eval_result;

static nfv_status evaluate(nfv_model *m, nfv_context *ctx, nfv_volume_cache *cache, const nfv_dataset *ds,
                           const int *rows, int n, int batch, float *outputs, eval_result *r)
{
    memset(r, 0, sizeof *r);
    NFV_TRY(nfv_model_predict_rows(m, ctx, cache, rows, n, batch, outputs));
    int k = nfv_model_outputs(m);
    int *truth = malloc((size_t)n * sizeof(int)), *pred = malloc((size_t)n * sizeof(int));
    double *score = malloc((size_t)n * sizeof(double));
    if (!truth || !pred || !score) {
        free(truth), free(pred), free(score);
        return nfv_fail(NFV_ERR_NO_MEMORY, "validation: out of memory");
    }
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *row = outputs + (size_t)i * k;
        truth[i] = ds->rows[rows[i]].class_index;
        pred[i] = nfv_model_predict_class(m, row);
        double p[64] = {0};
        nfv_model_probabilities(m, row, p);
        score[i] = p[1];
        loss += host_loss(m, row, truth[i]);
    }
    r->loss = n ? loss / n : NAN;
    nfv_status s = nfv_metrics_compute(n, m->class_count, truth, pred, score, &r->metrics);
    free(truth), free(pred), free(score);
    return s;
}

int cmd_train(int argc, char **argv)
{
    const char *data = NULL, *arch = "ref4", *out = NULL, *optimizer = "adam", *class_weights = NULL, *augment = NULL,
               *device = NULL, *shape = NULL, *norm = "zscore-nonzero", *head_name = "softmax";
    int epochs = 10, batch = 4, resume = 0, quiet = 0, cache_mb = 4096;
    const char *schedule = NULL;
    float lr = NAN, momentum = 0.9f, weight_decay = 0.0f, voxel = 0.0f;
    unsigned long long seed = 1;
    const cli_option opts[] = {
        {"--data", CLI_STRING, &data, "CSV", "dataset CSV path,label[,split] (required)"},
        {"--arch", CLI_STRING, &arch, "SPEC", "architecture spec or preset ref4|notebook (default ref4)"},
        {"--epochs", CLI_INT, &epochs, "N", "epochs (default 10)"},
        {"--batch", CLI_INT, &batch, "N", "mini-batch size (default 4; the last partial batch is dropped)"},
        {"--lr", CLI_FLOAT, &lr, "X", "learning rate (default 0.001; with --resume, replaces the checkpoint's)"},
        {"--schedule", CLI_STRING, &schedule, "constant|cosine",
         "learning-rate schedule over --epochs: constant, or cosine from --lr down to --lr/100 (default constant)"},
        {"--optimizer", CLI_STRING, &optimizer, "adam|sgd", "optimizer (default adam)"},
        {"--momentum", CLI_FLOAT, &momentum, "X", "SGD momentum (default 0.9)"},
        {"--weight-decay", CLI_FLOAT, &weight_decay, "X", "L2 weight decay (default 0)"},
        {"--class-weights", CLI_STRING, &class_weights, "auto|W1,W2,..",
         "loss weights per class; auto = n / (K * count) over the training split (default none)"},
        {"--augment", CLI_STRING, &augment, "shift=N,flip",
         "random shift of up to N voxels per axis and/or random left-right flip (default none)"},
        {"--head", CLI_STRING, &head_name, "softmax|binary", "softmax over K classes or one logit for 2 classes"},
        {"--seed", CLI_U64, &seed, "S", "seed of initialization, shuffling, augmentation, dropout (default 1)"},
        {"--out", CLI_STRING, &out, "MODEL", "output model .safetensors (required); also MODEL.ckpt, MODEL.log.csv"},
        {"--resume", CLI_FLAG, &resume, NULL, "continue from MODEL.ckpt"},
        {"--device", CLI_STRING, &device, "DEV", "OpenCL device (see neurofv devices)"},
        {"--voxel", CLI_FLOAT, &voxel, "MM", "model voxel size (default: the preset's, else 2)"},
        {"--shape", CLI_STRING, &shape, "X,Y,Z", "model grid in voxels (default: the preset's, else 91,109,91)"},
        {"--norm", CLI_STRING, &norm, "METHOD", "intensity normalization (default zscore-nonzero)"},
        {"--cache-mb", CLI_INT, &cache_mb, "MB", "preprocessed volume cache (default 4096)"},
        {"--quiet", CLI_FLAG, &quiet, NULL, "only the final line"},
        {0},
    };
    int r = cli_parse("train", "--data CSV --out MODEL [options]",
                      "Train a 3D CNN.  Per epoch: train loss/accuracy, validation loss/accuracy/balanced accuracy/AUC; "
                      "the best model by validation balanced accuracy (then loss) is written to MODEL, every epoch to "
                      "MODEL.log.csv, and a checkpoint with the optimizer state to MODEL.ckpt for --resume.",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (!data || !out) return cli_failf("train", "--data CSV and --out MODEL are required (see neurofv train --help)");
    if (epochs < 1 || batch < 1) return cli_failf("train", "--epochs and --batch must be >= 1");
    nfv_optim_config opt;
    nfv_optim_config_default(&opt);
    if (!strcmp(optimizer, "sgd")) opt.kind = NFV_OPT_SGD;
    else if (strcmp(optimizer, "adam")) return cli_failf("train", "--optimizer must be adam or sgd, got \"%s\"", optimizer);
    if (!isnan(lr) && !(lr > 0)) return cli_failf("train", "--lr must be > 0, got %g", lr);
    if (schedule && strcmp(schedule, "constant") && strcmp(schedule, "cosine"))
        return cli_failf("train", "--schedule must be constant or cosine, got \"%s\"", schedule);
    opt.lr = isnan(lr) ? 1e-3f : lr, opt.momentum = momentum, opt.weight_decay = weight_decay;
    int shift = 0, flip = 0;
    if (!parse_augment(augment, &shift, &flip))
        return cli_failf("train", "--augment expects a comma-separated list of shift=N and flip, got \"%s\"", augment);
    nfv_head head;
    if (nfv_head_parse(head_name, &head) || head == NFV_HEAD_REGRESSION)
        return cli_failf("train", "--head must be softmax or binary, got \"%s\"", head_name);

    /* Model grid. */
    int in[4] = {1, 109, 91, 91};
    double vox[3] = {2, 2, 2};
    int preset = nfv_arch_preset_input(arch, in, vox);
    if (!preset) in[1] = 91, in[2] = 109, in[3] = 91;
    int xyz[3];
    if (shape) {
        if (!parse_shape3(shape, xyz)) return cli_failf("train", "--shape expects X,Y,Z, got \"%s\"", shape);
        in[1] = xyz[2], in[2] = xyz[1], in[3] = xyz[0];
    }
    if (voxel > 0) vox[0] = vox[1] = vox[2] = voxel;
    nfv_grid grid = {in[3], in[2], in[1], {vox[0], vox[1], vox[2]}, NFV_NORM_ZSCORE_NONZERO};
    if (nfv_norm_method_parse(norm, &grid.norm)) return cli_fail("train", NFV_ERR_INVALID_ARG);

    nfv_dataset ds;
    nfv_status s = nfv_dataset_load(data, &ds);
    if (s) return cli_fail("train", s);
    int *train_rows = malloc((size_t)ds.count * sizeof(int)), *val_rows = malloc((size_t)ds.count * sizeof(int));
    int ntrain = 0, nval = 0;
    for (int i = 0; i < ds.count; i++) {
        if (ds.rows[i].split == NFV_SPLIT_TRAIN) train_rows[ntrain++] = i;
        else if (ds.rows[i].split == NFV_SPLIT_VAL) val_rows[nval++] = i;
    }
    int code = 1;
    nfv_context *ctx = NULL;
    nfv_model *m = NULL;
    nfv_trainer *t = NULL;
    nfv_volume_cache *cache = NULL;
    int *order = NULL;
    float *x = NULL, *targets = NULL, *outputs = NULL, *val_out = NULL, *cw = NULL;
    FILE *log = NULL;
    nfv_st_file meta;
    memset(&meta, 0, sizeof meta);
    char ckpt[4096], logpath[4096];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
    snprintf(logpath, sizeof logpath, "%s.log.csv", out);
    if (ntrain < 1) {
        cli_failf("train", "%s has no training rows", data);
        goto done;
    }
    if (batch > ntrain) batch = ntrain;
    if ((s = nfv_context_create(device, &ctx))) goto fail;

    int start_epoch = 0;
    float base_lr = opt.lr;
    double best_bacc = -1, best_loss = INFINITY;
    if (resume) {
        if ((s = nfv_checkpoint_load(ctx, ckpt, &m, &t, &meta))) goto fail;
        const char *e = nfv_st_meta(&meta, "epoch"), *bb = nfv_st_meta(&meta, "best_bacc"),
                   *bl = nfv_st_meta(&meta, "best_loss"), *sd = nfv_st_meta(&meta, "seed");
        if (!e || !bb || !bl || !sd) {
            s = nfv_fail(NFV_ERR_FORMAT, "%s: checkpoint lacks epoch/best/seed metadata", ckpt);
            goto fail;
        }
        start_epoch = atoi(e);
        /* The schedule and its base rate continue from the checkpoint unless
         * given again; older checkpoints hold only the rate in use. */
        const char *bl_meta = nfv_st_meta(&meta, "base_lr"), *sc_meta = nfv_st_meta(&meta, "schedule");
        base_lr = !isnan(lr) ? lr : bl_meta ? strtof(bl_meta, NULL) : t->opt.lr;
        if (!schedule) schedule = sc_meta && !strcmp(sc_meta, "cosine") ? "cosine" : "constant";
        best_bacc = strtod(bb, NULL), best_loss = strtod(bl, NULL);
        seed = strtoull(sd, NULL, 10);
        if (m->input_shape[1] != in[1] || m->input_shape[2] != in[2] || m->input_shape[3] != in[3]) {
            /* The checkpoint's grid wins: it is what the model was built for. */
            in[1] = m->input_shape[1], in[2] = m->input_shape[2], in[3] = m->input_shape[3];
            grid.nx = in[3], grid.ny = in[2], grid.nz = in[1];
        }
        memcpy(grid.voxel_mm, m->voxel_mm, sizeof grid.voxel_mm);
        grid.norm = m->norm;
        if (m->class_count != ds.class_count) {
            s = nfv_fail(NFV_ERR_INVALID_ARG, "%s has %d classes, the checkpoint %d", data, ds.class_count, m->class_count);
            goto fail;
        }
        if (!quiet) fprintf(stderr, "resuming from %s at epoch %d\n", ckpt, start_epoch + 1);
    } else {
        if (ds.class_count < 2) {
            s = nfv_fail(NFV_ERR_INVALID_ARG, "%s: need at least 2 classes", data);
            goto fail;
        }
        if (head == NFV_HEAD_BINARY && ds.class_count != 2) {
            s = nfv_fail(NFV_ERR_INVALID_ARG, "--head binary needs 2 classes, %s has %d", data, ds.class_count);
            goto fail;
        }
        if ((s = nfv_model_create_from_spec(ctx, arch, in, ds.class_count, (const char *const *)ds.class_names, head,
                                            seed, &m)))
            goto fail;
        m->dropout_seed = nfv_mix64(seed ^ 0xD50ULL);
        memcpy(m->voxel_mm, vox, sizeof vox);
        m->norm = grid.norm;
        /* The model's affine is the preprocessed grid's, so visualizations overlay. */
        nfv_volume v, pv;
        if ((s = nfv_volume_read(ds.rows[train_rows[0]].path, &v, NULL))) goto fail;
        s = nfv_preprocess(&v, &grid, &pv);
        nfv_volume_free(&v);
        if (s) goto fail;
        memcpy(m->affine, pv.affine, sizeof m->affine);
        nfv_volume_free(&pv);
        if (class_weights) {
            cw = calloc((size_t)ds.class_count, sizeof(float));
            if (!strcmp(class_weights, "auto")) {
                for (int i = 0; i < ntrain; i++) cw[ds.rows[train_rows[i]].class_index] += 1;
                for (int c = 0; c < ds.class_count; c++)
                    cw[c] = cw[c] > 0 ? (float)ntrain / ((float)ds.class_count * cw[c]) : 1.0f;
            } else {
                const char *p = class_weights;
                for (int c = 0; c < ds.class_count; c++) {
                    char *end;
                    cw[c] = strtof(p, &end);
                    if (end == p || (c < ds.class_count - 1 && *end != ',') || (c == ds.class_count - 1 && *end)) {
                        s = nfv_fail(NFV_ERR_INVALID_ARG, "--class-weights needs %d comma-separated numbers, got \"%s\"",
                                     ds.class_count, class_weights);
                        goto fail;
                    }
                    p = end + 1;
                }
            }
        }
        if ((s = nfv_trainer_create(ctx, m, &opt, cw, &t))) goto fail;
    }
    if ((s = nfv_volume_cache_create(&ds, &grid, (size_t)cache_mb << 20, &cache))) goto fail;

    size_t per = nfv_shape_numel(4, m->input_shape);
    int k = nfv_model_outputs(m);
    x = malloc((size_t)batch * per * sizeof(float));
    targets = malloc((size_t)batch * sizeof(float));
    outputs = malloc((size_t)batch * (size_t)k * sizeof(float));
    val_out = malloc(((size_t)nval + 1) * (size_t)k * sizeof(float));
    if (!x || !targets || !outputs || !val_out) {
        s = nfv_fail(NFV_ERR_NO_MEMORY, "train: out of memory for batch %d", batch);
        goto fail;
    }
    log = fopen(logpath, resume ? "a" : "w");
    if (!log) {
        s = nfv_fail(NFV_ERR_IO, "%s: cannot write: %s", logpath, strerror(errno));
        goto fail;
    }
    if (!resume) fprintf(log, "epoch,lr,train_loss,train_acc,val_loss,val_acc,val_balanced_acc,val_auc,seconds,saved\n");
    fflush(log);
    if (!quiet && !resume) {
        fprintf(stderr, "model %s: %d layers, %lld parameters, input 1x%dx%dx%d, %d train / %d val subjects, batch %d\n",
                m->arch_spec, m->layer_count, nfv_model_param_count(m), in[1], in[2], in[3], ntrain, nval, batch);
    }
    if (!schedule) schedule = "constant";
    int nbatches = ntrain / batch;
    order = malloc((size_t)ntrain * sizeof(int));
    for (int epoch = start_epoch; epoch < epochs; epoch++) {
        double t0 = cli_now();
        t->opt.lr = scheduled_lr(schedule, base_lr, epoch, epochs);
        memcpy(order, train_rows, (size_t)ntrain * sizeof(int));
        shuffle(order, ntrain, seed, epoch);
        double loss_sum = 0;
        int correct = 0, seen = 0;
        cli_progress prog;
        char label[64];
        snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, epochs);
        if (!quiet) cli_progress_start(&prog, label);
        for (int b = 0; b < nbatches && !s; b++) {
            for (int i = 0; i < batch && !s; i++) {
                int row = order[b * batch + i];
                const float *v;
                if ((s = nfv_volume_cache_get(cache, row, &v))) break;
                int d[3] = {0, 0, 0};
                if (shift > 0) {
                    unsigned long long h = nfv_mix64(seed ^ nfv_mix64(((unsigned long long)epoch << 32) ^ (unsigned)(b * batch + i)));
                    for (int a = 0; a < 3; a++) {
                        h = nfv_mix64(h);
                        d[a] = (int)(h % (unsigned long long)(2 * shift + 1)) - shift;
                    }
                }
                shifted_copy(x + (size_t)i * per, v, in[1], in[2], in[3], d[0], d[1], d[2]);
                if (flip && (nfv_mix64(seed ^ nfv_mix64(((unsigned long long)epoch << 32) ^ 0xF11Full ^
                                                 ((unsigned long long)(b * batch + i) << 8))) & 1))
                    flip_x_inplace(x + (size_t)i * per, in[1], in[2], in[3]);
                targets[i] = (float)ds.rows[row].class_index;
            }
            float loss = 0;
            if (!s) s = nfv_trainer_step(t, x, targets, batch, &loss, outputs);
            if (s) break;
            loss_sum += loss;
            for (int i = 0; i < batch; i++) correct += nfv_model_predict_class(m, outputs + (size_t)i * k) == (int)targets[i];
            seen += batch;
            if (!quiet) {
                char extra[64];
                snprintf(extra, sizeof extra, "loss %.4f acc %.3f", loss_sum / (b + 1), (double)correct / seen);
                cli_progress_update(&prog, b + 1, nbatches, extra);
            }
        }
        if (!quiet) cli_progress_end(&prog);
        if (s) goto fail;
        eval_result ev;
        memset(&ev, 0, sizeof ev);
        ev.loss = NAN, ev.metrics.accuracy = ev.metrics.balanced_accuracy = ev.metrics.auc = NAN;
        int saved = 0;
        if (nval > 0) {
            if ((s = evaluate(m, ctx, cache, &ds, val_rows, nval, batch, val_out, &ev))) goto fail;
            double bacc = ev.metrics.balanced_accuracy;
            if (bacc > best_bacc || (bacc == best_bacc && ev.loss < best_loss)) {
                best_bacc = bacc, best_loss = ev.loss;
                if ((s = nfv_model_save(m, out))) goto fail;
                saved = 1;
            }
            nfv_metrics_free(&ev.metrics);
        } else {
            if ((s = nfv_model_save(m, out))) goto fail;  /* no validation split: keep the latest */
            saved = 1;
        }
        char ebuf[32], bb[32], bl[32], sd[32], blr[32];
        snprintf(ebuf, sizeof ebuf, "%d", epoch + 1);
        snprintf(bb, sizeof bb, "%.17g", best_bacc);
        snprintf(bl, sizeof bl, "%.17g", best_loss);
        snprintf(sd, sizeof sd, "%llu", seed);
        snprintf(blr, sizeof blr, "%.9g", base_lr);
        const char *keys[6] = {"epoch", "best_bacc", "best_loss", "seed", "base_lr", "schedule"},
                   *vals[6] = {ebuf, bb, bl, sd, blr, schedule};
        if ((s = nfv_checkpoint_save(t, ckpt, 6, keys, vals))) goto fail;
        double secs = cli_now() - t0;
        double tl = nbatches ? loss_sum / nbatches : NAN, ta = seen ? (double)correct / seen : NAN;
        fprintf(log, "%d,%.6g,%.6f,%.4f,%.6f,%.4f,%.4f,%.4f,%.1f,%d\n", epoch + 1, t->opt.lr, tl, ta, ev.loss, ev.metrics.accuracy,
                ev.metrics.balanced_accuracy, ev.metrics.auc, secs, saved);
        fflush(log);
        if (!quiet)
            printf("epoch %d/%d  lr %.3g  train loss %.4f acc %.3f  val loss %.4f acc %.3f bacc %.3f auc %.3f  %.1fs%s\n", epoch + 1,
                   epochs, t->opt.lr, tl, ta, ev.loss, ev.metrics.accuracy, ev.metrics.balanced_accuracy, ev.metrics.auc, secs,
                   saved ? "  (saved)" : "");
        fflush(stdout);
    }
    printf("best validation balanced accuracy %.4f (loss %.4f); model %s\n", best_bacc, best_loss, out);
    code = 0;
    goto done;
fail:
    cli_fail("train", s);
done:
    if (log) fclose(log);
    free(x), free(targets), free(outputs), free(val_out), free(cw);
    free(train_rows), free(val_rows), free(order);
    nfv_volume_cache_free(cache);
    nfv_trainer_free(t);
    nfv_model_free(m);
    nfv_st_free(&meta);
    nfv_dataset_free(&ds);
    nfv_context_free(ctx);
    return code;
}
