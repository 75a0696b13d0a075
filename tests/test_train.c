/* Training: one optimizer step against the double reference (gradients by
 * central differences of the reference loss), a small cohort learned to
 * >= 90 % validation accuracy through `neurofv train`, resume equivalence,
 * and `neurofv eval`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/train.h"
#include "neurofv/volume.h"
#include "ref_model.h"
#include "test.h"

/* One step of SGD (momentum, weight decay) or Adam on a tiny model in
 * training mode (BN batch statistics); the parameter change must equal the
 * reference update computed from finite-difference gradients. */
static void check_step(const char *spec, nfv_head head, int classes, nfv_optimizer_kind kind, const float *cw)
{
    nfv_context *ctx = test_ctx();
    int in[4] = {2, 4, 5, 6}, n = 3;
    nfv_model *m = NULL;
    nfv_trainer *t = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, spec, in, classes, NULL, head, 17, &m))) return;
    nfv_optim_config opt;
    nfv_optim_config_default(&opt);
    opt.kind = kind;
    opt.lr = kind == NFV_OPT_SGD ? 0.1f : 0.01f;
    opt.weight_decay = 0.01f;
    if (!CHECK_OK(nfv_trainer_create(ctx, m, &opt, cw, &t))) goto out;
    size_t xn = (size_t)n * nfv_shape_numel(4, in);
    float *x = test_random(xn, 3, -1, 1);
    float targets[3] = {0, 1, (float)(classes - 1)};
    double *xd = malloc(xn * sizeof *xd), td[3] = {targets[0], targets[1], targets[2]}, cwd[8];
    for (size_t i = 0; i < xn; i++) xd[i] = x[i];
    for (int i = 0; cw && i < classes; i++) cwd[i] = cw[i];
    ref_params rp;
    ref_params_download(ctx, m, &rp);
    int k = nfv_model_outputs(m);
    double *out = malloc((size_t)n * k * sizeof *out);
    ref_model_forward(m, &rp, xd, n, 1, -1, out);
    double want_loss = ref_head_loss(m, out, td, n, cw ? cwd : NULL);
    float loss = 0;
    if (CHECK_OK(nfv_trainer_step(t, x, targets, n, &loss, NULL))) {
        /* float32 forward vs double: 1e-4 relative. */
        CHECK(fabs(loss - want_loss) <= 1e-5 + 1e-4 * fabs(want_loss), "%s loss %.7f, reference %.7f", spec, loss,
              want_loss);
        for (int li = 0; li < m->layer_count; li++) {
            nfv_layer *l = &m->layers[li];
            for (int p = 0; p < l->nparams; p++) {
                double *w = rp.p[li * 4 + p];
                size_t pn = rp.n[li * 4 + p];
                double *want = malloc(pn * sizeof *want);
                for (size_t e = 0; e < pn; e++) {
                    const double h = 1e-6;
                    double keep = w[e];
                    w[e] = keep + h;
                    ref_model_forward(m, &rp, xd, n, 1, -1, out);
                    double lp = ref_head_loss(m, out, td, n, cw ? cwd : NULL);
                    w[e] = keep - h;
                    ref_model_forward(m, &rp, xd, n, 1, -1, out);
                    double lm = ref_head_loss(m, out, td, n, cw ? cwd : NULL);
                    w[e] = keep;
                    double g = (lp - lm) / (2 * h) + opt.weight_decay * keep;
                    if (kind == NFV_OPT_SGD) {
                        want[e] = keep - opt.lr * g; /* first step: velocity = g */
                    } else {
                        double mh = (1 - opt.beta1) * g / (1 - opt.beta1), vh = (1 - opt.beta2) * g * g / (1 - opt.beta2);
                        want[e] = keep - opt.lr * mh / (sqrt(vh) + opt.eps);
                    }
                }
                float *got = test_download(&l->param[p]);
                char what[160];
                snprintf(what, sizeof what, "%s: %s %s after one %s step", spec, l->name, p ? "bias" : "weight",
                         kind == NFV_OPT_SGD ? "SGD" : "Adam");
                /* SGD: the change lr*g is ~1e-2; float gradients vs double finite
                 * differences agree to ~1e-5 of it.  Adam's first step is
                 * lr*g/|g| per element, so only gradients near 0 (|g| ~ eps) could
                 * flip it; 2e-5 absolute covers float rounding of the parameter. */
                if (got) CHECK_CLOSE(what, got, want, pn, 2e-5, 1e-5);
                free(got);
                free(want);
            }
        }
        for (int li = 0; li < m->layer_count; li++)
            if (m->layers[li].spec.kind == NFV_LAYER_BATCHNORM3D)
                CHECK(m->layers[li].num_batches_tracked == 1, "BN counted one batch");
    }
    free(out);
    ref_params_free(&rp);
    free(xd);
    free(x);
out:
    nfv_trainer_free(t);
    nfv_model_free(m);
}

TEST(train_step_matches_reference)
{
    const char *spec = "conv(3,k3,p1) bn relu maxpool(2) conv(2,k3,s2,p1,nobias) elu(1) flatten linear(3)";
    float cw[3] = {0.5f, 2.0f, 1.0f};
    check_step(spec, NFV_HEAD_SOFTMAX, 3, NFV_OPT_SGD, cw);
    check_step(spec, NFV_HEAD_SOFTMAX, 3, NFV_OPT_ADAM, NULL);
    float pw[2] = {1.0f, 3.0f};
    check_step("conv(4,k3) bn lrelu(0.1) avgpool(2,1) gap flatten linear(1)", NFV_HEAD_BINARY, 2, NFV_OPT_SGD, pw);
}

/* Two Adam steps of model spec with the training forward's BatchNorm ->
 * ReLU fused (the default) and run as two layers (train_unfused): every
 * parameter bit for bit the same; fused lists (layer, 1) for the ReLUs that
 * must have been computed by their BatchNorm. */
static void check_bn_relu_fusion(const char *spec, const int *fused, int nfused)
{
    nfv_context *ctx = test_ctx();
    int in[4] = {1, 7, 9, 11}, n = 3;
    nfv_model *m[2] = {NULL, NULL};
    nfv_trainer *t[2] = {NULL, NULL};
    nfv_optim_config opt;
    nfv_optim_config_default(&opt);
    opt.kind = NFV_OPT_ADAM;
    float *x = test_random((size_t)n * nfv_shape_numel(4, in), 5, -1, 1), targets[3] = {0, 1, 2}, loss;
    for (int k = 0; k < 2; k++) {
        if (!CHECK_OK(nfv_model_create_from_spec(ctx, spec, in, 3, NULL, NFV_HEAD_SOFTMAX, 17, &m[k])) ||
            !CHECK_OK(nfv_trainer_create(ctx, m[k], &opt, NULL, &t[k])))
            goto out;
        m[k]->train_unfused = k;
        for (int step = 0; step < 2; step++)
            if (!CHECK_OK(nfv_trainer_step(t[k], x, targets, n, &loss, NULL))) goto out;
    }
    for (int j = 0; j < nfused; j += 2)
        CHECK(m[0]->layers[fused[j]].relu_in_bn == fused[j + 1] && !m[1]->layers[fused[j]].relu_in_bn,
              "layer %d (%s): computed by its BatchNorm %d (want %d), unfused 0", fused[j], m[0]->layers[fused[j]].name,
              m[0]->layers[fused[j]].relu_in_bn, fused[j + 1]);
    for (int li = 0; li < m[0]->layer_count; li++)
        for (int p = 0; p < m[0]->layers[li].nparams; p++) {
            float *a = test_download(&m[0]->layers[li].param[p]), *b = test_download(&m[1]->layers[li].param[p]);
            const size_t pn = m[0]->layers[li].param[p].numel;
            CHECK(a && b && !memcmp(a, b, pn * sizeof *a), "layer %d (%s) parameter %d after 2 steps: fused != unfused",
                  li, m[0]->layers[li].name, p);
            free(a), free(b);
        }
out:
    for (int k = 0; k < 2; k++) nfv_trainer_free(t[k]), nfv_model_free(m[k]);
    free(x);
}

TEST(train_bn_relu_fused_bitwise_as_separate_layers)
{
    check_bn_relu_fusion("conv(3,k3,p1) bn relu maxpool(2) conv(4,k3,p1) bn relu flatten linear(3)",
                         (int[]){2, 1, 6, 1}, 4);
    /* r0 feeds two nodes (its output is written); r1 is summed into in
     * place by the Add (the BatchNorm's backward gates from its input, not
     * from that output). */
    static const char *const residual =
        "{\"graph\":["
        "{\"op\":\"conv\",\"name\":\"c0\",\"inputs\":[-1],\"f\":4,\"k\":[3,3,3],\"p\":[1,1,1]},"
        "{\"op\":\"bn\",\"name\":\"b0\",\"a\":1e-5},"
        "{\"op\":\"relu\",\"name\":\"r0\"},"
        "{\"op\":\"conv\",\"name\":\"c1\",\"f\":4,\"k\":[3,3,3],\"p\":[1,1,1]},"
        "{\"op\":\"bn\",\"name\":\"b1\",\"a\":1e-5},"
        "{\"op\":\"relu\",\"name\":\"r1\"},"
        "{\"op\":\"add\",\"name\":\"sum\",\"inputs\":[5,2]},"
        "{\"op\":\"gap\",\"name\":\"gap\"},"
        "{\"op\":\"flatten\",\"name\":\"flat\"},"
        "{\"op\":\"linear\",\"name\":\"fc\",\"f\":3,\"b\":1}]}";
    check_bn_relu_fusion(residual, (int[]){2, 1, 5, 1}, 4);
    /* The gradient at a fused BatchNorm's own output is never formed. */
    nfv_context *ctx = test_ctx();
    int in[4] = {1, 7, 9, 11};
    nfv_model *m = NULL;
    float *xf = test_random(nfv_shape_numel(4, in), 6, -1, 1);
    nfv_tensor x, g, d;
    if (CHECK_OK(nfv_model_create_from_spec(ctx, "conv(3,k3,p1) bn relu gap flatten linear(3)", in, 3, NULL,
                                            NFV_HEAD_SOFTMAX, 17, &m)) &&
        CHECK_OK(test_tensor(&x, 5, (int[]){1, 1, 7, 9, 11}, xf)) && CHECK_OK(nfv_model_forward(m, ctx, &x, -1, 1))) {
        CHECK(nfv_model_activation(m, 1) == NULL, "the fused BatchNorm's output was not computed");
        if (CHECK_OK(test_tensor(&g, 2, (int[]){1, 3}, NULL)) &&
            CHECK_OK(test_tensor(&d, 5, (int[]){1, 3, 7, 9, 11}, NULL))) {
            CHECK(nfv_model_backward_to_layer(m, ctx, -1, &g, 1, &d) == NFV_ERR_INVALID_ARG,
                  "a backward to the fused BatchNorm is refused");
            nfv_tensor_free(&g), nfv_tensor_free(&d);
        }
        nfv_tensor_free(&x);
    }
    nfv_model_free(m);
    free(xf);
}

/* ---- end to end through the binary ------------------------------------------ */

/* A 24^3 cohort of 60 subjects: noise, a faint brain-like ball, and a bright
 * lesion that is a cube (class "cube") or a cross of three bars ("cross") of
 * side 9 voxels at a random position; 40 train, 10 val, 10 test. */
static int make_cohort(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    FILE *csv = fopen(path, "w");
    if (!csv) return 0;
    fprintf(csv, "path,label,split\n");
    unsigned long long st = 12345;
    for (int s = 0; s < 60; s++) {
        nfv_volume v;
        if (nfv_volume_alloc(&v, 24, 24, 24, NULL)) return 0;
        int cls = s % 2;
        int cx = 7 + (int)(test_uniform(&st) * 10), cy = 7 + (int)(test_uniform(&st) * 10),
            cz = 7 + (int)(test_uniform(&st) * 10);
        float amp = 1.0f + (float)test_uniform(&st);
        for (int z = 0; z < 24; z++)
            for (int y = 0; y < 24; y++)
                for (int x = 0; x < 24; x++) {
                    double r2 = (x - 11.5) * (x - 11.5) + (y - 11.5) * (y - 11.5) + (z - 11.5) * (z - 11.5);
                    float val = (r2 < 121 ? 1.0f : 0.2f) + 0.3f * (float)(test_uniform(&st) - 0.5);
                    int dx = abs(x - cx), dy = abs(y - cy), dz = abs(z - cz);
                    int in_cube = dx <= 4 && dy <= 4 && dz <= 4;
                    int in_cross = in_cube && ((dx <= 1 && dy <= 1) || (dx <= 1 && dz <= 1) || (dy <= 1 && dz <= 1));
                    if (cls == 0 ? in_cube : in_cross) val += amp;
                    v.data[((size_t)z * 24 + y) * 24 + x] = val;
                }
        snprintf(path, sizeof path, "%s/sub-%02d.nii.gz", dir, s);
        nfv_status st2 = nfv_volume_write(path, &v);
        nfv_volume_free(&v);
        if (st2) return 0;
        fprintf(csv, "sub-%02d.nii.gz,%s,%s\n", s, cls ? "cross" : "cube", s < 40 ? "train" : s < 50 ? "val" : "test");
    }
    return fclose(csv) == 0;
}

static const char *ARCH = "conv(8,k3,p1) bn relu maxpool(2) conv(16,k3,p1) bn relu maxpool(2) conv(16,k3,p1) bn relu "
                          "gap flatten dropout(0.2) linear(2)";

static int train_arch_cmd(const char *arch, const char *dir, const char *out, int epochs, const char *extra,
                          const char *log)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s train --data %s/labels.csv --arch '%s' --shape 24,24,24 --voxel 1 --epochs %d --batch 8 --lr 0.003 "
             "--augment shift=1 --seed 5 --out %s %s",
             test_bin(), dir, arch, epochs, out, extra);
    return test_run(cmd, log);
}

static int train_cmd(const char *dir, const char *out, int epochs, const char *extra, const char *log)
{
    return train_arch_cmd(ARCH, dir, out, epochs, extra, log);
}

/* Best validation accuracy in a model's epoch log; *rows gets its rows. */
static double best_val_accuracy(const char *model, int *rows)
{
    char csv[700];
    snprintf(csv, sizeof csv, "%s.log.csv", model);
    FILE *f = fopen(csv, "r");
    double best = 0;
    *rows = 0;
    if (!f) return -1;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int e;
        double lr, tl, ta, vl, va;
        if (sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf", &e, &lr, &tl, &ta, &vl, &va) == 6) {
            (*rows)++;
            if (va > best) best = va;
        }
    }
    fclose(f);
    return best;
}

/* A graph preset (MONAI's ResNet layout, residual adds) trains through
 * `neurofv train --arch`, and the trained model visualizes a class logit
 * and a residual block's channel through `neurofv visualize`. */
TEST(train_resnet10_learns_and_visualizes)
{
    char dir[512], out[600], log[600], cmd[4096];
    snprintf(dir, sizeof dir, "%s/cohort_resnet", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    test_run(cmd, NULL);
    if (!CHECK(make_cohort(dir), "cohort written")) return;
    snprintf(out, sizeof out, "%s/resnet.safetensors", dir);
    snprintf(log, sizeof log, "%s/train.txt", dir);
    int rc = train_arch_cmd("resnet10(8)", dir, out, 12, "--quiet", log);
    if (!CHECK(rc == 0, "neurofv train --arch resnet10(8) exit %d (log %s)", rc, log)) return;
    int rows;
    double best = best_val_accuracy(out, &rows);
    CHECK(rows == 12 && best >= 0.9, "resnet10: %d epochs, best validation accuracy %.2f >= 0.90", rows, best);
    snprintf(cmd, sizeof cmd,
             "%s visualize --model %s --target logit:cross --target layer2.0:3 --steps 16 --out %s/vis", test_bin(),
             out, dir);
    snprintf(log, sizeof log, "%s/vis.txt", dir);
    rc = test_run(cmd, log);
    CHECK(rc == 0, "visualize a logit and block layer2.0 of the trained resnet10: exit %d (log %s)", rc, log);
    const char *files[2] = {"logit_cross.nii.gz", "layer2.0_3.nii.gz"};
    for (int i = 0; i < 2; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/vis/%s", dir, files[i]);
        nfv_volume v;
        if (CHECK(nfv_volume_read(path, &v, NULL) == NFV_OK, "%s written", path)) {
            double energy = 0;
            for (size_t e = 0; e < nfv_volume_numel(&v); e++) energy += (double)v.data[e] * v.data[e];
            CHECK(v.nx == 24 && energy > 0, "%s: a 24^3 volume that is not empty", files[i]);
            nfv_volume_free(&v);
        }
    }
}

/* Model tensors (no metadata) of two safetensors files equal byte for byte. */
static int same_file_tensors(const char *a, const char *b)
{
    nfv_st_file fa, fb;
    if (nfv_st_read(a, &fa)) return 0;
    if (nfv_st_read(b, &fb)) {
        nfv_st_free(&fa);
        return 0;
    }
    int same = fa.count == fb.count;
    for (int i = 0; same && i < fa.count; i++) {
        const nfv_st_tensor *tb = nfv_st_find(&fb, fa.tensors[i].name);
        same = tb && tb->numel == fa.tensors[i].numel && tb->dtype == fa.tensors[i].dtype &&
               !memcmp(tb->data, fa.tensors[i].data, tb->numel * nfv_st_dtype_size(tb->dtype));
        if (!same) printf("  tensor %s differs\n", fa.tensors[i].name);
    }
    nfv_st_free(&fa);
    nfv_st_free(&fb);
    return same;
}

TEST(train_cohort_learns_resumes_and_evaluates)
{
    char dir[512], out[600], log[600], a[600], b[600], pred[600], cmd[4096];
    snprintf(dir, sizeof dir, "%s/cohort", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    test_run(cmd, NULL);
    if (!CHECK(make_cohort(dir), "cohort written")) return;

    /* 1. learn the task */
    snprintf(out, sizeof out, "%s/m.safetensors", dir);
    snprintf(log, sizeof log, "%s/train.txt", dir);
    int rc = train_cmd(dir, out, 12, "", log);
    if (!CHECK(rc == 0, "neurofv train exit %d (log %s)", rc, log)) return;
    char csv[700];
    snprintf(csv, sizeof csv, "%s.log.csv", out);
    FILE *f = fopen(csv, "r");
    double best = 0;
    int lines = 0;
    if (CHECK(f != NULL, "epoch log %s", csv)) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            int e;
            double lr, tl, ta, vl, va;
            if (sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf", &e, &lr, &tl, &ta, &vl, &va) == 6) {
                lines++;
                if (va > best) best = va;
            }
        }
        fclose(f);
    }
    CHECK(lines == 12, "one log row per epoch, got %d", lines);
    CHECK(best >= 0.9, "best validation accuracy %.2f >= 0.90", best);

    /* 2. eval on the test split with a predictions CSV */
    snprintf(pred, sizeof pred, "%s/pred.csv", dir);
    snprintf(log, sizeof log, "%s/eval.txt", dir);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s/labels.csv --split val --out %s", test_bin(), out, dir, pred);
    rc = test_run(cmd, log);
    CHECK(rc == 0, "neurofv eval exit %d", rc);
    f = fopen(log, "r");
    double acc = -1;
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "accuracy %lf", &acc) == 1) break;
        fclose(f);
    }
    /* The saved model is the best by validation, so eval on val reproduces it. */
    CHECK(fabs(acc - best) < 1e-3, "eval accuracy on val %.3f equals the best logged %.3f", acc, best);
    f = fopen(pred, "r");
    int rows = 0;
    if (CHECK(f != NULL, "predictions CSV written")) {
        char line[1024];
        while (fgets(line, sizeof line, f)) rows++;
        fclose(f);
    }
    CHECK(rows == 11, "predictions: header + 10 rows, got %d lines", rows);

    /* 3. resume: 3 epochs at once == 2 epochs, then --resume to 3 */
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    CHECK(train_cmd(dir, a, 3, "--quiet", NULL) == 0, "uninterrupted run");
    CHECK(train_cmd(dir, b, 2, "--quiet", NULL) == 0, "first part");
    CHECK(train_cmd(dir, b, 3, "--quiet --resume", NULL) == 0, "resumed part");
    char ca[700], cb[700];
    snprintf(ca, sizeof ca, "%s.ckpt", a);
    snprintf(cb, sizeof cb, "%s.ckpt", b);
    CHECK(same_file_tensors(ca, cb), "resumed checkpoint identical to the uninterrupted one (weights, BN, optimizer)");

    /* 4. cosine schedule (with flips): the log's lr column follows
     * base/100 + (base - base/100) (1 + cos(pi e / (E - 1))) / 2, and --lr on
     * --resume replaces the rate (it used to be silently ignored). */
    snprintf(a, sizeof a, "%s/cos.safetensors", dir);
    CHECK(train_cmd(dir, a, 3, "--quiet --schedule cosine --augment shift=1,flip", NULL) == 0, "cosine run");
    CHECK(train_cmd(dir, a, 4, "--quiet --resume --lr 0.0005 --schedule constant", NULL) == 0, "resume with new lr");
    snprintf(csv, sizeof csv, "%s.log.csv", a);
    double want[4] = {0.003, 0.00003 + 0.5 * (0.003 - 0.00003), 0.00003, 0.0005}, got[4] = {-1, -1, -1, -1};
    f = fopen(csv, "r");
    if (CHECK(f != NULL, "epoch log %s", csv)) {
        char line[512];
        int e;
        double lr;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "%d,%lf", &e, &lr) == 2 && e >= 1 && e <= 4) got[e - 1] = lr;
        fclose(f);
    }
    for (int e = 0; e < 4; e++)
        CHECK(fabs(got[e] - want[e]) <= 1e-6 + 1e-4 * want[e], "epoch %d lr %.6g, want %.6g", e + 1, got[e], want[e]);
}

/* The authors' notebook model (1x96x114x96, Linear 6144 -> 100 -> 1) takes a
 * training step: a finite loss that goes down when the same batch is repeated. */
TEST(train_notebook_model_steps)
{
    nfv_context *ctx = test_ctx();
    int in[4];
    double vox[3];
    nfv_arch_preset_input("notebook", in, vox);
    nfv_model *m = NULL;
    nfv_trainer *t = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "notebook", in, 2, NULL, NFV_HEAD_BINARY, 3, &m))) return;
    nfv_optim_config opt;
    nfv_optim_config_default(&opt);
    opt.lr = 1e-4f;
    size_t per = nfv_shape_numel(4, in);
    float *x = test_random(2 * per, 8, 0.0f, 1.0f), y[2] = {0, 1}, l0 = 0, l1 = 0, l2 = 0;
    if (CHECK_OK(nfv_trainer_create(ctx, m, &opt, NULL, &t)) && CHECK_OK(nfv_trainer_step(t, x, y, 2, &l0, NULL)) &&
        CHECK_OK(nfv_trainer_step(t, x, y, 2, &l1, NULL)) && CHECK_OK(nfv_trainer_step(t, x, y, 2, &l2, NULL)))
        CHECK(isfinite(l0) && l2 < l0, "notebook model loss %.5f -> %.5f -> %.5f decreases on a repeated batch", l0, l1,
              l2);
    free(x);
    nfv_trainer_free(t);
    nfv_model_free(m);
}
