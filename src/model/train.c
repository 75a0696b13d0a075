/* Training steps, prediction and checkpoints; see include/neurofv/train.h. */
#include "neurofv/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nfv_optim_config_default(nfv_optim_config *c)
{
    memset(c, 0, sizeof *c);
    c->kind = NFV_OPT_ADAM;
    c->lr = 1e-3f;
    c->beta1 = 0.9f, c->beta2 = 0.999f, c->eps = 1e-8f;
    c->momentum = 0.9f;
}

const char *nfv_reg_loss_name(nfv_reg_loss l) { return l == NFV_LOSS_HUBER ? "huber" : "mse"; }

nfv_status nfv_reg_loss_parse(const char *s, nfv_reg_loss *out)
{
    if (s && !strcmp(s, "mse")) *out = NFV_LOSS_MSE;
    else if (s && !strcmp(s, "huber")) *out = NFV_LOSS_HUBER;
    else return nfv_fail(NFV_ERR_INVALID_ARG, "unknown loss \"%s\" (expected mse or huber)", s ? s : "");
    return NFV_OK;
}

static void free_batch(nfv_trainer *t)
{
    nfv_tensor_free(&t->x);
    nfv_tensor_free(&t->targets);
    nfv_tensor_free(&t->dout);
    t->batch = 0;
}

void nfv_trainer_free(nfv_trainer *t)
{
    if (!t) return;
    free_batch(t);
    nfv_tensor_free(&t->loss);
    nfv_tensor_free(&t->weights);
    free(t->class_weights);
    free(t);
}

nfv_status nfv_trainer_create(nfv_context *ctx, nfv_model *model, const nfv_optim_config *opt,
                              const float *class_weights, nfv_trainer **out)
{
    *out = NULL;
    if (!(opt->lr > 0)) return nfv_fail(NFV_ERR_INVALID_ARG, "training: learning rate %g must be > 0", opt->lr);
    nfv_trainer *t = calloc(1, sizeof *t);
    if (!t) return nfv_fail(NFV_ERR_NO_MEMORY, "training: out of memory");
    t->model = model, t->ctx = ctx, t->opt = *opt;
    t->huber_delta = 1.0f;
    int one = 1;
    nfv_status s = nfv_tensor_create(ctx, &t->loss, 1, &one);
    if (!s && class_weights && model->head != NFV_HEAD_REGRESSION) {
        int k = model->class_count;
        t->class_weights = malloc((size_t)k * sizeof(float));
        if (!t->class_weights) s = nfv_fail(NFV_ERR_NO_MEMORY, "training: out of memory");
        else memcpy(t->class_weights, class_weights, (size_t)k * sizeof(float));
        for (int i = 0; !s && i < k; i++)
            if (!(class_weights[i] > 0) || !isfinite(class_weights[i]))
                s = nfv_fail(NFV_ERR_INVALID_ARG, "training: class weight %d is %g (must be > 0)", i, class_weights[i]);
        if (!s && model->head == NFV_HEAD_SOFTMAX) {
            s = nfv_tensor_create(ctx, &t->weights, 1, &k);
            if (!s) s = nfv_tensor_upload(ctx, &t->weights, class_weights);
        }
    }
    if (s) {
        nfv_trainer_free(t);
        return s;
    }
    *out = t;
    return NFV_OK;
}

static nfv_status ensure_batch(nfv_trainer *t, int n)
{
    if (t->batch == n) return NFV_OK;
    free_batch(t);
    nfv_model *m = t->model;
    int xs[5] = {n, m->input_shape[0], m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    int os[2] = {n, nfv_model_outputs(m)};
    NFV_TRY(nfv_tensor_create(t->ctx, &t->x, 5, xs));
    NFV_TRY(nfv_tensor_create(t->ctx, &t->targets, 1, &n));
    NFV_TRY(nfv_tensor_create(t->ctx, &t->dout, 2, os));
    t->batch = n;
    return NFV_OK;
}

/* The head's loss and its gradient w.r.t. the outputs (N, K). */
static nfv_status head_loss(nfv_trainer *t, const nfv_tensor *outputs)
{
    nfv_model *m = t->model;
    nfv_context *ctx = t->ctx;
    int os[2] = {t->batch, nfv_model_outputs(m)};
    nfv_tensor logits = *outputs;
    logits.ndim = 2, logits.shape[0] = os[0], logits.shape[1] = os[1], logits.is_view = 1;
    switch (m->head) {
    case NFV_HEAD_SOFTMAX:
        return nfv_softmax_cross_entropy(ctx, &logits, &t->targets, t->class_weights ? &t->weights : NULL, &t->loss,
                                         &t->dout);
    case NFV_HEAD_BINARY: {
        /* Class weights (w0, w1) become BCE's pos_weight w1/w0, which weighs the
         * positive terms relative to the negative ones as the pair does. */
        float pw = t->class_weights ? t->class_weights[1] / t->class_weights[0] : 1.0f;
        return nfv_bce_with_logits(ctx, &logits, &t->targets, pw, &t->loss, &t->dout);
    }
    case NFV_HEAD_REGRESSION:
        if (t->reg_loss == NFV_LOSS_HUBER)
            return nfv_huber_loss(ctx, &logits, &t->targets, t->huber_delta, &t->loss, &t->dout);
        return nfv_mse_loss(ctx, &logits, &t->targets, &t->loss, &t->dout);
    }
    return nfv_fail(NFV_ERR_INVALID_ARG, "training: unknown head");
}

static nfv_status optimizer_update(nfv_trainer *t)
{
    nfv_model *m = t->model;
    nfv_context *ctx = t->ctx;
    int step = t->step + 1;
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        for (int p = 0; p < l->nparams; p++) {
            if (!l->opt_m[p].buf) NFV_TRY(nfv_tensor_create(ctx, &l->opt_m[p], l->param[p].ndim, l->param[p].shape));
            nfv_status s;
            if (t->opt.kind == NFV_OPT_ADAM) {
                if (!l->opt_v[p].buf)
                    NFV_TRY(nfv_tensor_create(ctx, &l->opt_v[p], l->param[p].ndim, l->param[p].shape));
                nfv_adam_params hp = {t->opt.lr, t->opt.beta1, t->opt.beta2, t->opt.eps, t->opt.weight_decay, 0};
                s = nfv_adam_step(ctx, &hp, step, &l->param[p], &l->grad[p], &l->opt_m[p], &l->opt_v[p]);
            } else {
                nfv_sgd_params hp = {t->opt.lr, t->opt.momentum, t->opt.weight_decay};
                s = nfv_sgd_step(ctx, &hp, &l->param[p], &l->grad[p], &l->opt_m[p]);
            }
            if (s) return nfv_fail_context(s, "optimizer, layer %d (%s) %s", i, l->name, p ? "bias" : "weight");
        }
    }
    t->step = step;
    return NFV_OK;
}

nfv_status nfv_trainer_step(nfv_trainer *t, const float *x, const float *targets, int n, float *loss, float *outputs)
{
    nfv_model *m = t->model;
    nfv_context *ctx = t->ctx;
    if (n < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "training step: empty batch");
    if (m->head != NFV_HEAD_REGRESSION)
        for (int i = 0; i < n; i++)
            if (targets[i] < 0 || targets[i] >= (float)m->class_count || targets[i] != floorf(targets[i]))
                return nfv_fail(NFV_ERR_INVALID_ARG, "training step: sample %d has class %g (0-%d)", i, targets[i],
                                m->class_count - 1);
    NFV_TRY(ensure_batch(t, n));
    NFV_TRY(nfv_tensor_upload(ctx, &t->x, x));
    NFV_TRY(nfv_tensor_upload(ctx, &t->targets, targets));
    NFV_TRY(nfv_model_forward(m, ctx, &t->x, -1, 1));
    nfv_tensor *out = nfv_model_activation(m, m->layer_count - 1);
    NFV_TRY(head_loss(t, out));
    if (outputs) NFV_TRY(nfv_tensor_download(ctx, out, outputs));
    if (loss) NFV_TRY(nfv_tensor_download(ctx, &t->loss, loss));
    NFV_TRY(nfv_model_backward(m, ctx, -1, &t->dout, 1, NULL));
    return optimizer_update(t);
}

/* The share of the global batch's loss normaliser this rank's samples
 * carry: the head's loss is a mean over N (weighted by w[y] for a softmax
 * with class weights), so this rank's loss and dlogits, computed as a mean
 * over its own samples, times this share are its terms of the global mean. */
static double loss_share(const nfv_trainer *t, const float *targets, const nfv_dist_batch *db)
{
    if (t->model->head != NFV_HEAD_SOFTMAX || !t->class_weights) return (double)db->count / db->total;
    double mine = 0, all = 0;
    for (int i = 0; i < db->total; i++) {
        double w = t->class_weights[(int)targets[i]];
        all += w;
        if (i >= db->offset && i < db->offset + db->count) mine += w;
    }
    return mine / all;
}

/* Sums every parameter gradient over the ranks: one fused host buffer, one
 * all-reduce per step. */
static nfv_status sum_gradients(nfv_trainer *t)
{
    nfv_model *m = t->model;
    size_t total = 0;
    for (int i = 0; i < m->layer_count; i++)
        for (int p = 0; p < m->layers[i].nparams; p++) total += m->layers[i].grad[p].numel;
    float *h = malloc((total ? total : 1) * sizeof(float));
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "gradient all-reduce: out of memory for %zu floats", total);
    nfv_status s = NFV_OK;
    size_t at = 0;
    for (int i = 0; i < m->layer_count && !s; i++)
        for (int p = 0; p < m->layers[i].nparams && !s; p++) {
            s = nfv_tensor_download(t->ctx, &m->layers[i].grad[p], h + at);
            at += m->layers[i].grad[p].numel;
        }
    if (!s) s = nfv_dist_sum_floats(h, total);
    at = 0;
    for (int i = 0; i < m->layer_count && !s; i++)
        for (int p = 0; p < m->layers[i].nparams && !s; p++) {
            s = nfv_tensor_upload(t->ctx, &m->layers[i].grad[p], h + at);
            at += m->layers[i].grad[p].numel;
        }
    free(h);
    return s ? nfv_fail_context(s, "gradient all-reduce (%zu floats)", total) : NFV_OK;
}

nfv_status nfv_trainer_step_dist(nfv_trainer *t, const float *x, const float *targets, const nfv_dist_batch *db,
                                 float *loss, float *outputs)
{
    if (!db || db->size <= 1) return nfv_trainer_step(t, x, targets, db ? db->total : 0, loss, outputs);
    nfv_model *m = t->model;
    nfv_context *ctx = t->ctx;
    const int n = db->count;
    if (n < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "training step: rank %d of %d has no sample of the batch of %d", db->rank,
                        db->size, db->total);
    if (m->head != NFV_HEAD_REGRESSION)
        for (int i = 0; i < db->total; i++)
            if (targets[i] < 0 || targets[i] >= (float)m->class_count || targets[i] != floorf(targets[i]))
                return nfv_fail(NFV_ERR_INVALID_ARG, "training step: sample %d has class %g (0-%d)", i, targets[i],
                                m->class_count - 1);
    NFV_TRY(ensure_batch(t, n));
    NFV_TRY(nfv_tensor_upload(ctx, &t->x, x));
    NFV_TRY(nfv_tensor_upload(ctx, &t->targets, targets + db->offset));
    m->dist = db;
    nfv_status s = nfv_model_forward(m, ctx, &t->x, -1, 1);
    nfv_tensor *out = nfv_model_activation(m, m->layer_count - 1);
    double share = loss_share(t, targets, db);
    if (!s) s = head_loss(t, out);
    if (!s) s = nfv_scale(ctx, (float)share, &t->dout);
    if (!s && outputs) s = nfv_tensor_download(ctx, out, outputs);
    float mine = 0;
    if (!s) s = nfv_tensor_download(ctx, &t->loss, &mine);
    if (!s) s = nfv_model_backward(m, ctx, -1, &t->dout, 1, NULL);
    m->dist = NULL;
    NFV_TRY(s);
    /* The batch loss: the ranks' shares of the global mean, summed. */
    double l = share * mine;
    NFV_TRY(nfv_dist_sum_doubles(&l, 1));
    if (loss) *loss = (float)l;
    NFV_TRY(sum_gradients(t));
    return optimizer_update(t);
}

nfv_status nfv_model_predict(nfv_model *m, nfv_context *ctx, const float *x, int n, int batch, float *outputs)
{
    if (batch < 1) batch = 1;
    size_t per = nfv_shape_numel(4, m->input_shape);
    int k = nfv_model_outputs(m);
    int xs[5] = {batch, m->input_shape[0], m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    nfv_tensor xt;
    NFV_TRY(nfv_tensor_create(ctx, &xt, 5, xs));
    float *staging = calloc((size_t)batch * per, sizeof(float));
    float *out = malloc((size_t)batch * (size_t)k * sizeof(float));
    nfv_status s = staging && out ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "predict: out of memory");
    /* Only the output is read: conv -> BN -> ReLU -> pool run fused (model.h).
     * The weights do not change here: weights derived from them (flipped,
     * phases, channel-last) are derived once for all the chunks. */
    const int was_fused = m->fuse_eval;
    nfv_model_set_fusion(m, 1);
    nfv_context_freeze_weights(ctx, 1);
    for (int i0 = 0; !s && i0 < n; i0 += batch) {
        int cnt = n - i0 < batch ? n - i0 : batch;
        /* A short last chunk is zero-padded: in eval mode samples are independent. */
        memcpy(staging, x + (size_t)i0 * per, (size_t)cnt * per * sizeof(float));
        if (cnt < batch) memset(staging + (size_t)cnt * per, 0, (size_t)(batch - cnt) * per * sizeof(float));
        s = nfv_tensor_upload(ctx, &xt, staging);
        if (!s) s = nfv_model_forward(m, ctx, &xt, -1, 0);
        if (!s) s = nfv_tensor_download(ctx, nfv_model_activation(m, m->layer_count - 1), out);
        if (!s) memcpy(outputs + (size_t)i0 * k, out, (size_t)cnt * (size_t)k * sizeof(float));
    }
    nfv_context_freeze_weights(ctx, 0);
    nfv_model_set_fusion(m, was_fused);
    /* The one place a regression output leaves SD units: the raw output z
     * (trained on (y - mean) / sd) becomes mean + sd * z in the label's
     * units (model.h, target_mean).  Computed in double, rounded once. */
    if (!s && m->head == NFV_HEAD_REGRESSION)
        for (int i = 0; i < n; i++) outputs[i] = (float)(m->target_mean + m->target_sd * (double)outputs[i]);
    free(staging);
    free(out);
    nfv_tensor_free(&xt);
    return s;
}

/* ---- checkpoints -------------------------------------------------------- */

#define OPT_PREFIX "optim."

nfv_status nfv_checkpoint_save(const nfv_trainer *t, const char *path, int n_extra, const char *const *keys,
                               const char *const *values)
{
    const nfv_model *m = t->model;
    nfv_st_writer w;
    nfv_st_writer_init(&w);
    nfv_status s = nfv_model_to_writer(m, &w);
    char name[96], buf[256];
    float *h = NULL;
    for (int i = 0; !s && i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        for (int p = 0; !s && p < l->nparams; p++) {
            const nfv_tensor *st[2] = {&l->opt_m[p], &l->opt_v[p]};
            for (int j = 0; !s && j < 2; j++) {
                if (!st[j]->buf) continue;
                free(h);
                h = malloc(st[j]->numel * sizeof(float));
                if (!h) {
                    s = nfv_fail(NFV_ERR_NO_MEMORY, "checkpoint: out of memory");
                    break;
                }
                s = nfv_tensor_download(t->ctx, st[j], h);
                long long sh[NFV_MAX_DIMS];
                for (int d = 0; d < st[j]->ndim; d++) sh[d] = st[j]->shape[d];
                snprintf(name, sizeof name, OPT_PREFIX "%d.%s.%s", i, p ? "bias" : "weight", j ? "v" : "m");
                if (!s) s = nfv_st_writer_add(&w, name, NFV_ST_F32, st[j]->ndim, sh, h);
            }
        }
    }
    free(h);
    if (!s) {
        snprintf(buf, sizeof buf, "%s", t->opt.kind == NFV_OPT_ADAM ? "adam" : "sgd");
        s = nfv_st_writer_meta(&w, "optim.kind", buf);
        snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g,%.9g,%.9g,%.9g", t->opt.lr, t->opt.weight_decay, t->opt.beta1,
                 t->opt.beta2, t->opt.eps, t->opt.momentum);
        if (!s) s = nfv_st_writer_meta(&w, "optim.hparams", buf);
        snprintf(buf, sizeof buf, "%d", t->step);
        if (!s) s = nfv_st_writer_meta(&w, "optim.step", buf);
        snprintf(buf, sizeof buf, "%llu", m->dropout_seed);
        if (!s) s = nfv_st_writer_meta(&w, "dropout_seed", buf);
        if (!s && m->head == NFV_HEAD_REGRESSION) {
            s = nfv_st_writer_meta(&w, "loss", nfv_reg_loss_name(t->reg_loss));
            snprintf(buf, sizeof buf, "%.9g", t->huber_delta);
            if (!s) s = nfv_st_writer_meta(&w, "huber_delta", buf);
        }
        if (!s && t->class_weights) {
            size_t u = 0;
            for (int i = 0; i < m->class_count && u < sizeof buf; i++)
                u += (size_t)snprintf(buf + u, sizeof buf - u, "%s%.9g", i ? "," : "", t->class_weights[i]);
            s = nfv_st_writer_meta(&w, "class_weights", buf);
        }
    }
    for (int i = 0; !s && i < n_extra; i++) s = nfv_st_writer_meta(&w, keys[i], values[i]);
    if (!s) s = nfv_st_writer_write(&w, path);
    nfv_st_writer_free(&w);
    if (s) return nfv_fail_context(s, "checkpoint %s", path);
    return NFV_OK;
}

nfv_status nfv_checkpoint_load(nfv_context *ctx, const char *path, nfv_model **model, nfv_trainer **trainer,
                               nfv_st_file *meta)
{
    *model = NULL, *trainer = NULL;
    NFV_TRY(nfv_st_read(path, meta));
    nfv_status s = nfv_model_from_file(ctx, meta, OPT_PREFIX, model);
    nfv_optim_config opt;
    nfv_optim_config_default(&opt);
    const char *kind = nfv_st_meta(meta, "optim.kind"), *hp = nfv_st_meta(meta, "optim.hparams"),
               *step = nfv_st_meta(meta, "optim.step"), *seed = nfv_st_meta(meta, "dropout_seed"),
               *cw = nfv_st_meta(meta, "class_weights"), *lk = nfv_st_meta(meta, "loss"),
               *hd = nfv_st_meta(meta, "huber_delta");
    if (!s && (!kind || !hp || !step || !seed))
        s = nfv_fail(NFV_ERR_FORMAT, "%s: not a training checkpoint (no optimizer state)", path);
    if (!s) {
        opt.kind = !strcmp(kind, "sgd") ? NFV_OPT_SGD : NFV_OPT_ADAM;
        if (sscanf(hp, "%g,%g,%g,%g,%g,%g", &opt.lr, &opt.weight_decay, &opt.beta1, &opt.beta2, &opt.eps,
                   &opt.momentum) != 6)
            s = nfv_fail(NFV_ERR_FORMAT, "%s: bad optim.hparams \"%s\"", path, hp);
    }
    float *weights = NULL;
    if (!s && cw) {
        int k = (*model)->class_count;
        weights = calloc((size_t)k + 1, sizeof(float));
        const char *p = cw;
        for (int i = 0; weights && i < k; i++) {
            char *end;
            weights[i] = strtof(p, &end);
            if (end == p) {
                s = nfv_fail(NFV_ERR_FORMAT, "%s: bad class_weights \"%s\"", path, cw);
                break;
            }
            p = *end == ',' ? end + 1 : end;
        }
    }
    if (!s) s = nfv_trainer_create(ctx, *model, &opt, weights, trainer);
    free(weights);
    if (!s) {
        (*trainer)->step = atoi(step);
        (*model)->dropout_seed = strtoull(seed, NULL, 10);
        if (lk && nfv_reg_loss_parse(lk, &(*trainer)->reg_loss))
            s = nfv_fail(NFV_ERR_FORMAT, "%s: bad loss \"%.40s\"", path, lk);
        if (!s && hd) {
            char *end;
            (*trainer)->huber_delta = strtof(hd, &end);
            if (end == hd || !((*trainer)->huber_delta > 0))
                s = nfv_fail(NFV_ERR_FORMAT, "%s: bad huber_delta \"%.40s\"", path, hd);
        }
    }
    char name[96];
    for (int i = 0; !s && i < (*model)->layer_count; i++) {
        nfv_layer *l = &(*model)->layers[i];
        for (int p = 0; !s && p < l->nparams; p++) {
            nfv_tensor *st[2] = {&l->opt_m[p], &l->opt_v[p]};
            for (int j = 0; !s && j < 2; j++) {
                snprintf(name, sizeof name, OPT_PREFIX "%d.%s.%s", i, p ? "bias" : "weight", j ? "v" : "m");
                const nfv_st_tensor *t = nfv_st_find(meta, name);
                if (!t) continue;
                if (t->dtype != NFV_ST_F32 || t->numel != l->param[p].numel) {
                    s = nfv_fail(NFV_ERR_FORMAT, "%s: optimizer tensor \"%s\" does not match its parameter", path, name);
                    break;
                }
                s = nfv_tensor_create(ctx, st[j], l->param[p].ndim, l->param[p].shape);
                float *h = s ? NULL : malloc(t->numel * sizeof(float));
                if (!s && !h) s = nfv_fail(NFV_ERR_NO_MEMORY, "checkpoint: out of memory");
                if (!s) {
                    nfv_st_to_float(t, h);
                    s = nfv_tensor_upload(ctx, st[j], h);
                }
                free(h);
            }
        }
    }
    if (s) {
        nfv_trainer_free(*trainer);
        nfv_model_free(*model);
        *trainer = NULL, *model = NULL;
        nfv_st_free(meta);
    }
    return s;
}

nfv_status nfv_model_predict_rows(nfv_model *m, nfv_context *ctx, nfv_volume_cache *cache, const int *rows, int n,
                                  int batch, float *outputs)
{
    if (n <= 0) return NFV_OK;
    if (batch < 1) batch = 1;

    size_t per = nfv_shape_numel(4, m->input_shape);
    int k = nfv_model_outputs(m);
    float *x = malloc((size_t)batch * per * sizeof(float));
    if (!x) return nfv_fail(NFV_ERR_NO_MEMORY, "predict: out of memory");
    nfv_status s = NFV_OK;
    nfv_context_freeze_weights(ctx, 1); /* across the chunks (nfv_model_predict) */
    for (int i0 = 0; !s && i0 < n; i0 += batch) {
        int cnt = n - i0 < batch ? n - i0 : batch;
        for (int i = 0; !s && i < cnt; i++) {
            const float *v;
            s = nfv_volume_cache_get(cache, rows[i0 + i], &v);
            if (!s) memcpy(x + (size_t)i * per, v, per * sizeof(float));
        }
        /* nfv_model_predict pads a short last chunk to `batch`, so the model
         * keeps one batch allocation. */
        if (!s) s = nfv_model_predict(m, ctx, x, cnt, batch, outputs + (size_t)i0 * k);
    }
    nfv_context_freeze_weights(ctx, 0);
    free(x);
    return s;
}

nfv_status nfv_model_predict_rows_dist(nfv_model *m, nfv_context *ctx, nfv_volume_cache *cache, const int *rows,
                                       int n, int batch, float *outputs)
{
    int size = nfv_dist_size(), rank = nfv_dist_rank(), k = nfv_model_outputs(m), first, count;
    if (size == 1) return nfv_model_predict_rows(m, ctx, cache, rows, n, batch, outputs);
    nfv_dist_block(n, rank, size, &first, &count);
    int *counts = malloc((size_t)size * sizeof *counts);
    float *mine = malloc(((size_t)count + 1) * (size_t)k * sizeof(float));
    nfv_status s = counts && mine ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "predict: out of memory");
    /* Eval mode: samples are independent, so each rank's rows give the bytes one process gives. */
    if (!s) s = nfv_model_predict_rows(m, ctx, cache, rows + first, count, batch, mine);
    for (int r = 0; !s && r < size; r++) {
        int f, c;
        nfv_dist_block(n, r, size, &f, &c);
        counts[r] = c * k;
    }
    if (!s) s = nfv_dist_gather_floats(mine, counts, outputs);
    free(counts);
    free(mine);
    return s;
}

void nfv_model_probabilities(const nfv_model *m, const float *row, double *prob)
{
    if (m->head == NFV_HEAD_SOFTMAX) {
        int k = m->class_count;
        double mx = row[0], sum = 0;
        for (int j = 1; j < k; j++) mx = row[j] > mx ? row[j] : mx;
        for (int j = 0; j < k; j++) sum += prob[j] = exp((double)row[j] - mx);
        for (int j = 0; j < k; j++) prob[j] /= sum;
    } else if (m->head == NFV_HEAD_BINARY) {
        double s = 1.0 / (1.0 + exp(-(double)row[0]));
        prob[0] = 1 - s, prob[1] = s;
    }
}
