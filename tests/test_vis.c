/* The feature-visualization loop on hand-built models whose answer is known:
 * a cube detector (a 7^3 conv whose kernel is +1 on a centred 3^3 cube and a
 * zero-sum negative surround) must yield a cube at its receptive field, its
 * negation must not; objective readouts against a double host reference;
 * the gradient the loop follows against central finite differences; the
 * objective rises for a convex case; same seed -> same bytes, also when a
 * target shares its batch with others. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis.h"
#include "neurofv/vis_ops.h"
#include "test.h"

/* Input (1, 17, 19, 16): odd/prime sizes. */
static const int IN_SHAPE[4] = {1, 17, 19, 16};
#define KS 7

/* Cube detector kernel (7^3): +1 on the centred 3^3 cube, -27/316 on the
 * other 316 taps (zero sum, so a flat input gives 0). */
static void cube_kernel(float *w)
{
    for (int z = 0; z < KS; z++)
        for (int y = 0; y < KS; y++)
            for (int x = 0; x < KS; x++) {
                int in = abs(z - 3) <= 1 && abs(y - 3) <= 1 && abs(x - 3) <= 1;
                w[(z * KS + y) * KS + x] = in ? 1.0f : -27.0f / 316.0f;
            }
}

/* "conv(2,k7,p3) relu": channel 0 the cube detector (bias +1, so the relu is
 * open at a small-noise start), channel 1 random. */
static nfv_model *cube_model(void)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k7,p3) relu flatten linear(1)", IN_SHAPE, 0, NULL, NFV_HEAD_REGRESSION, 3, &m)))
        return NULL;
    float w[2 * KS * KS * KS], b[2] = {1.0f, 0.0f};
    cube_kernel(w);
    float *r = test_random(KS * KS * KS, 5, -0.1f, 0.1f);
    memcpy(w + KS * KS * KS, r, sizeof(float) * KS * KS * KS);
    free(r);
    CHECK_OK(nfv_tensor_upload(ctx, &m->layers[0].param[0], w));
    CHECK_OK(nfv_tensor_upload(ctx, &m->layers[0].param[1], b));
    return m;
}

static nfv_target one_target(nfv_model *m, const char *text)
{
    nfv_target *t = NULL, out;
    int n = 0;
    memset(&out, 0, sizeof out);
    if (CHECK_OK(nfv_target_parse(m, text, &t, &n)) && CHECK(n == 1, "%s is one target", text)) out = t[0];
    free(t);
    return out;
}

/* Best NCC of a 7^3 window holding a 3^3 cube (1 inside, 0 outside) over the volume. */
static double cube_ncc(const nfv_volume *v, int pos[3])
{
    float tmpl[KS * KS * KS];
    for (int z = 0; z < KS; z++)
        for (int y = 0; y < KS; y++)
            for (int x = 0; x < KS; x++)
                tmpl[(z * KS + y) * KS + x] = abs(z - 3) <= 1 && abs(y - 3) <= 1 && abs(x - 3) <= 1;
    int dims[3] = {v->nz, v->ny, v->nx}, td[3] = {KS, KS, KS};
    nfv_ncc_result r;
    if (!CHECK_OK(nfv_ncc_search(v->data, dims, NULL, tmpl, td, &r))) return -2;
    if (pos) memcpy(pos, r.pos, sizeof r.pos);
    return r.score;
}

TEST(vis_cube_detector_gives_a_cube)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    const char *texts[2] = {"relu1:0@8,9,8", "-conv1:0@8,9,8"};
    nfv_target t[2] = {one_target(m, texts[0]), one_target(m, texts[1])};
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    o.steps = 60;
    o.l2 = 0.5f; /* pulls voxels outside the receptive field (no objective gradient) towards 0 */
    nfv_vis_result *r = NULL;
    if (CHECK_OK(nfv_visualize(ctx, m, t, 2, &o, NULL, NULL, &r))) {
        int pos[3];
        double up = cube_ncc(&r[0].volume, pos);
        double down = cube_ncc(&r[1].volume, NULL);
        /* Maximizing a linear unit under Adam moves every receptive-field voxel by
         * the sign of its weight: +1 on the cube, -1 on the surround, i.e. the
         * same two-valued partition as the template, so the NCC is ~1; the
         * start noise (+-0.1 against ~+-3 after 60 steps) costs a few 0.01.
         * 0.9 leaves room for that and fails for anything but a cube. */
        CHECK(up > 0.9, "maximized cube detector: NCC with a cube %.3f > 0.9", up);
        CHECK(pos[0] == 8 && pos[1] == 9 && pos[2] == 8, "cube found at the unit's receptive field (8,9,8): %d,%d,%d",
              pos[0], pos[1], pos[2]);
        /* Minimizing gives the inverted pattern (dark cube, bright shell); the
         * best a 3^3 positive cube finds is a part of the bright shell next to
         * dark voxels: measured ~0.3; a cube would score > 0.9. */
        CHECK(down < 0.6, "minimized cube detector is not a cube: NCC %.3f < 0.6", down);
        CHECK(r[0].objective_clean > 20 && r[1].objective_clean > 20,
              "objectives grew from ~1 (max %.3g, -min %.3g)", r[0].objective_clean, r[1].objective_clean);
        CHECK(r[0].log_count == 60 && r[0].log_step[59] == 60, "objective logged every step (%d entries)", r[0].log_count);
        nfv_vis_results_free(r, 2);
    }
    nfv_model_free(m);
}

/* The importance map of a linear unit is |its weights|: the gradient of
 * conv1:0@8,9,8 with respect to the image is the 7^3 kernel placed at the
 * unit's receptive field, the same at every step, and zero elsewhere.  So the
 * mean |gradient| over the steps must be 1 on the 3^3 cube, 27/316 on the
 * rest of the receptive field and exactly 0 outside it, maximized or
 * minimized alike.  Tolerance: abs 1e-6 + rel 1e-5 (a float sum of 12 equal
 * terms times 1/12). */
TEST(vis_importance_is_the_gradient_magnitude)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    const char *texts[2] = {"conv1:0@8,9,8", "-conv1:0@8,9,8"};
    nfv_target t[2] = {one_target(m, texts[0]), one_target(m, texts[1])};
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    o.steps = 12;
    o.importance = 1;
    nfv_vis_result *r = NULL;
    float w[KS * KS * KS];
    cube_kernel(w);
    int D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3];
    size_t n = (size_t)D * H * W;
    double *want = malloc(n * sizeof *want);
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int dz = z - 8 + 3, dy = y - 9 + 3, dx = x - 8 + 3;
                int in = dz >= 0 && dz < KS && dy >= 0 && dy < KS && dx >= 0 && dx < KS;
                want[((size_t)z * H + y) * W + x] = in ? fabs((double)w[(dz * KS + dy) * KS + dx]) : 0.0;
            }
    if (CHECK_OK(nfv_visualize(ctx, m, t, 2, &o, NULL, NULL, &r))) {
        for (int i = 0; i < 2; i++) {
            if (!CHECK(r[i].importance.nx == W && r[i].importance.ny == H && r[i].importance.nz == D,
                       "%s: importance map on the model grid", texts[i]))
                continue;
            CHECK_CLOSE(texts[i], r[i].importance.data, want, n, 1e-6, 1e-5);
        }
        CHECK(r[0].volume.nx == W, "the volume is still there");
        nfv_vis_results_free(r, 2);
    }
    o.importance = 0;
    if (CHECK_OK(nfv_visualize(ctx, m, t, 1, &o, NULL, NULL, &r))) {
        CHECK(r[0].importance.nx == 0 && r[0].importance.data == NULL, "no importance map unless asked");
        nfv_vis_results_free(r, 1);
    }
    free(want);
    nfv_model_free(m);
}

/* Host reference of conv1 (7^3, pad 3) for channel c at one voxel, double. */
static double conv_ref(const float *img, const float *w, float bias, int z, int y, int x)
{
    int D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3];
    double s = bias;
    for (int a = 0; a < KS; a++)
        for (int b = 0; b < KS; b++)
            for (int c = 0; c < KS; c++) {
                int zz = z + a - 3, yy = y + b - 3, xx = x + c - 3;
                if (zz < 0 || yy < 0 || xx < 0 || zz >= D || yy >= H || xx >= W) continue;
                s += (double)w[(a * KS + b) * KS + c] * img[((size_t)zz * H + yy) * W + xx];
            }
    return s;
}

TEST(vis_objective_matches_host_reference)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    int D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3];
    nfv_volume v;
    CHECK_OK(nfv_volume_alloc(&v, W, H, D, NULL));
    float *r = test_random((size_t)D * H * W, 11, -1.0f, 1.0f);
    memcpy(v.data, r, sizeof(float) * D * H * W);
    free(r);
    float w[KS * KS * KS];
    cube_kernel(w);
    /* channel mean, neuron, layer mean of squares (channel 1 weights downloaded). */
    float *w1 = test_download(&m->layers[0].param[0]);
    double mean0 = 0, neuron = conv_ref(v.data, w, 1.0f, 4, 5, 6), sq = 0;
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double a0 = conv_ref(v.data, w, 1.0f, z, y, x);
                double a1 = w1 ? conv_ref(v.data, w1 + KS * KS * KS, 0.0f, z, y, x) : 0;
                mean0 += a0;
                sq += a0 * a0 + a1 * a1;
            }
    mean0 /= (double)D * H * W;
    sq /= 2.0 * D * H * W;
    free(w1);
    nfv_target t[4] = {one_target(m, "conv1:0"), one_target(m, "conv1:0@4,5,6"), one_target(m, "conv1"),
                       one_target(m, "-conv1")};
    nfv_volume vs[4] = {v, v, v, v};
    float got[4];
    if (CHECK_OK(nfv_vis_objective(ctx, m, t, 4, vs, got))) {
        double want[4] = {mean0, neuron, sq, -sq};
        /* float32 sums of 343 products of O(1) terms: 1e-4 relative is ample. */
        CHECK_CLOSE("objectives: channel mean, neuron, layer mean a^2, negated", got, want, 4, 1e-4, 1e-4);
    }
    nfv_volume_free(&v);
    nfv_model_free(m);
}

/* After one SGD step (momentum 0) from zeros, param = lr * d objective / d image:
 * compare with central differences of the objective (double arithmetic on
 * float forwards) for every target kind. */
TEST(vis_gradient_matches_finite_differences)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    int in[4] = {1, 7, 9, 11};
    const char *names[3] = {"a", "b", "c"};
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(3,k3,p1) elu(1.0) maxpool(2) flatten linear(3)", in, 3, names,
                                             NFV_HEAD_SOFTMAX, 7, &m)))
        return;
    const char *texts[] = {"logit:b", "-logit:c", "conv1:2", "conv1:1@3,4,5", "elu1", "pool1:0",
                           "logit:b@1,2,2", "contrast:c", "-contrast:a@1,2,2"};
    int nt = (int)(sizeof texts / sizeof *texts);
    size_t vox = (size_t)7 * 9 * 11;
    nfv_volume base;
    CHECK_OK(nfv_volume_alloc(&base, 11, 9, 7, NULL));
    float *r = test_random(vox, 21, -1.0f, 1.0f);
    memcpy(base.data, r, vox * sizeof(float));
    free(r);
    for (int i = 0; i < nt; i++) {
        nfv_target t = one_target(m, texts[i]);
        /* Gradient at `base` through the loop: template init = base (norm none), zeros change, SGD lr. */
        char path[512];
        snprintf(path, sizeof path, "%s/vis_fd_base.nii", test_tmpdir());
        if (!CHECK_OK(nfv_volume_write(path, &base))) break;
        m->norm = NFV_NORM_NONE;
        nfv_vis_options o;
        nfv_vis_options_default(&o);
        o.steps = 1;
        o.sgd = 1;
        o.momentum = 0;
        o.lr = 1e-3f;
        o.init = NFV_VIS_INIT_TEMPLATE;
        snprintf(o.init_path, sizeof o.init_path, "%s", path);
        /* The template goes through the model affine: make it the identity-like file affine. */
        memcpy(m->affine, base.affine, sizeof m->affine);
        nfv_vis_result *res = NULL;
        if (!CHECK_OK(nfv_visualize(ctx, m, &t, 1, &o, NULL, NULL, &res))) continue;
        const float *change = res[0].change.data;
        double got[6], want[6];
        float gotf[6];
        /* 235 = (2,3,4) and 346 = (3,4,5) lie in the receptive field of pool cell (1,2,2). */
        int probe[6] = {0, 235, 250, 346, 400, 555}; /* 235, 346: inside the neuron target's field */
        for (int p = 0; p < 6; p++) {
            double h = 1e-3;
            nfv_volume vv[2];
            nfv_volume_clone(&base, &vv[0]);
            nfv_volume_clone(&base, &vv[1]);
            vv[0].data[probe[p]] += (float)h;
            vv[1].data[probe[p]] -= (float)h;
            nfv_target tt[2] = {t, t};
            float f[2];
            CHECK_OK(nfv_vis_objective(ctx, m, tt, 2, vv, f));
            want[p] = ((double)f[0] - f[1]) / (2 * h);
            got[p] = change[probe[p]] / 1e-3;
            gotf[p] = (float)got[p];
            nfv_volume_free(&vv[0]);
            nfv_volume_free(&vv[1]);
        }
        if (getenv("VIS_DEBUG"))
            for (int p = 0; p < 6; p++) fprintf(stderr, "%s probe %d: got %.6g want %.6g\n", texts[i], probe[p], got[p], want[p]);
        char what[128];
        snprintf(what, sizeof what, "d objective / d image, %s", texts[i]);
        /* Central differences with h = 1e-3 in float32 forwards: objectives of
         * O(1) carry ~1e-7 rounding, /2h -> ~1e-4; maxpool/ELU kinks can sit
         * within h of a probe, hence 2e-3 absolute + 2 % relative. */
        CHECK_CLOSE(what, gotf, want, 6, 2e-3, 2e-2);
        nfv_vis_results_free(res, 1);
    }
    nfv_volume_free(&base);
    nfv_model_free(m);
}

TEST(vis_objective_rises_convex_case)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    /* A linear unit (conv pre-activation) with an L2 penalty: a concave
     * objective - penalty, so Adam must climb; mean of the last quarter of the
     * logged objective above the first quarter's. */
    const char *texts[] = {"conv1:0@8,9,8", "conv1:1"};
    for (int k = 0; k < 2; k++) {
        nfv_target t = one_target(m, texts[k]);
        nfv_vis_options o;
        nfv_vis_options_default(&o);
        o.steps = 40;
        o.l2 = 1.0f;
        o.param = k ? NFV_VIS_PARAM_FOURIER : NFV_VIS_PARAM_VOXEL;
        nfv_vis_result *r = NULL;
        if (!CHECK_OK(nfv_visualize(ctx, m, &t, 1, &o, NULL, NULL, &r))) continue;
        int q = r->log_count / 4;
        double first = 0, last = 0;
        for (int i = 0; i < q; i++) {
            first += r->log_objective[i];
            last += r->log_objective[r->log_count - 1 - i];
        }
        CHECK(q > 0 && last / q > first / q, "%s (%s): last quarter %.4g > first quarter %.4g", texts[k],
              k ? "fourier" : "voxel", last / q, first / q);
        CHECK(r->term_count >= 2 && r->term_l2[0] >= 0, "%s: regularizer terms logged (%d)", texts[k], r->term_count);
        nfv_vis_results_free(r, 1);
    }
    nfv_model_free(m);
}

static int same_bytes(const nfv_volume *a, const nfv_volume *b)
{
    return nfv_volume_numel(a) == nfv_volume_numel(b) &&
           !memcmp(a->data, b->data, nfv_volume_numel(a) * sizeof(float));
}

TEST(vis_same_seed_same_bytes)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    CHECK_OK(nfv_vis_options_parse(&o, "--steps 6 --jitter 2 --scale 0.9,1.1 --rotate 10 --pad 2 --param fourier "
                                       "--blur 0.7 --blur-every 2 --tv 0.1 --l1 0.05 --starts 2"));
    nfv_target t[3] = {one_target(m, "relu1:0@8,9,8"), one_target(m, "relu1:1"), one_target(m, "relu1:0")};
    nfv_vis_result *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    CHECK_OK(nfv_visualize(ctx, m, t, 3, &o, NULL, NULL, &a));
    CHECK_OK(nfv_visualize(ctx, m, t, 3, &o, NULL, NULL, &b));
    /* Alone in its batch (as in another shard): the same bytes. */
    CHECK_OK(nfv_visualize(ctx, m, t + 1, 1, &o, NULL, NULL, &c));
    o.seed = 2;
    CHECK_OK(nfv_visualize(ctx, m, t, 1, &o, NULL, NULL, &d));
    if (a && b && c && d) {
        CHECK(same_bytes(&a[0].volume, &b[0].volume) && same_bytes(&a[1].volume, &b[1].volume) &&
                  same_bytes(&a[2].volume, &b[2].volume),
              "same seed, same bytes");
        CHECK(same_bytes(&a[1].volume, &c[0].volume), "same bytes whether batched with others or alone");
        CHECK(!same_bytes(&a[0].volume, &d[0].volume), "another seed, another volume");
    }
    nfv_vis_results_free(a, 3);
    nfv_vis_results_free(b, 3);
    nfv_vis_results_free(c, 1);
    nfv_vis_results_free(d, 1);
    nfv_model_free(m);
}

TEST(vis_options_parse_and_reject)
{
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    CHECK(o.steps == 512 && fabsf(o.lr - 0.05f) < 1e-9f && !o.sgd, "defaults: 512 steps, Adam 0.05");
    CHECK_OK(nfv_vis_options_parse(&o, "--l2 0.5 --scale=0.8,1.2 --init template=/x/y.nii.gz --snapshots 0,8,16 "
                                       "--optimizer sgd --mask brain"));
    CHECK(o.l2 == 0.5f && o.scale_min == 0.8f && o.scale_max == 1.2f && o.init == NFV_VIS_INIT_TEMPLATE &&
              !strcmp(o.init_path, "/x/y.nii.gz") && o.snapshot_count == 3 && o.snapshots[2] == 16 && o.sgd &&
              !strcmp(o.mask, "brain"),
          "options parsed");
    const char *bad[] = {"--l2 -1", "--scale 1.2,0.8", "--param wavelet", "--optimizer rmsprop", "--steps x",
                         "--frobnicate 3", "l2 0.1", "--init gauss"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nfv_vis_options p;
        nfv_vis_options_default(&p);
        nfv_status s = nfv_vis_options_parse(&p, bad[i]);
        CHECK(s == NFV_ERR_INVALID_ARG && strlen(nfv_error_message()) > 10, "\"%s\" rejected: %s", bad[i],
              nfv_error_message());
    }
}

TEST(vis_cli_writes_outputs)
{
    char p[1024];
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    char model[512], cmd[2048], out[512];
    snprintf(model, sizeof model, "%s/vis_cube.safetensors", test_tmpdir());
    snprintf(out, sizeof out, "%s/vis_cli", test_tmpdir());
    CHECK_OK(nfv_model_save(m, model));
    snprintf(cmd, sizeof cmd,
             "%s visualize --model %s --target relu1:all --target 'conv1:0@' --out %s --steps 4 --jitter 1 "
             "--background none --snapshots 0,2",
             test_bin(), model, out);
    CHECK(test_run(cmd, NULL) == 0, "visualize runs: %s", cmd);
    const char *files[] = {"relu1_0.nii.gz", "relu1_0_ortho.png", "relu1_0_mosaic.png", "relu1_0.json",
                           "relu1_1.nii.gz", "relu1_all_grid.png", "conv1_0_at_8_9_8.nii.gz",
                           "conv1_0_at_8_9_8_step2.nii.gz"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        FILE *f = fopen(p, "rb");
        CHECK(f != NULL, "wrote %s", p);
        if (f) fclose(f);
    }
    snprintf(cmd, sizeof cmd,
             "%s visualize --model %s --target 'conv1:0@' --out %s_imp --steps 2 --background none --importance on",
             test_bin(), model, out);
    CHECK(test_run(cmd, NULL) == 0, "visualize --importance on runs: %s", cmd);
    const char *imp_files[] = {"conv1_0_at_8_9_8_importance.nii.gz", "conv1_0_at_8_9_8_importance.png"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s_imp/%s", out, imp_files[i]);
        FILE *f = fopen(p, "rb");
        CHECK(f != NULL, "wrote %s", p);
        if (f) fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target 'conv1:0@' --out %s_imp --steps 1 --importance maybe 2>&1 | grep -q -- '--importance'",
             test_bin(), model, out);
    CHECK(test_run(cmd, NULL) == 0, "a bad --importance value is refused with its name");
    /* The volume carries the model's affine. */
    snprintf(p, sizeof p, "%s/relu1_0.nii.gz", out);
    nfv_volume v;
    if (CHECK_OK(nfv_volume_read(p, &v, NULL))) {
        int same = v.nx == IN_SHAPE[3] && v.ny == IN_SHAPE[2] && v.nz == IN_SHAPE[1];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++) same &= fabs(v.affine[i][j] - m->affine[i][j]) < 1e-4;
        CHECK(same, "output grid and affine are the model's");
        nfv_volume_free(&v);
    }
    /* Two shards of relu1:all (2 channels) write one channel each, together both. */
    for (int shard = 1; shard <= 2; shard++) {
        snprintf(cmd, sizeof cmd, "%s visualize --model %s --target relu1:all --out %s_shard%d --steps 2 --background none "
                 "--shard %d/2", test_bin(), model, out, shard, shard);
        CHECK(test_run(cmd, NULL) == 0, "shard %d/2 runs", shard);
    }
    for (int ch = 0; ch < 2; ch++) {
        int owners = 0;
        for (int shard = 1; shard <= 2; shard++) {
            snprintf(p, sizeof p, "%s_shard%d/relu1_%d.nii.gz", out, shard, ch);
            FILE *f = fopen(p, "rb");
            if (f) owners++, fclose(f);
        }
        CHECK(owners == 1, "relu1:%d written by exactly one shard (%d)", ch, owners);
    }
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target conv7:0 --out %s --steps 1 2>&1 | grep -q 'conv1, relu1'",
             test_bin(), model, out);
    CHECK(test_run(cmd, NULL) == 0, "bad layer: the error lists the layers");
    (void)ctx;
    nfv_model_free(m);
}

TEST(vis_mask_and_template_start)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    int D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3];
    /* A mask file on the model grid: the lower half in z (k < D/2). */
    nfv_volume mask, tmpl;
    CHECK_OK(nfv_volume_alloc(&mask, W, H, D, (const double(*)[4])m->affine));
    for (int z = 0; z < D / 2; z++)
        for (size_t i = 0; i < (size_t)H * W; i++) mask.data[(size_t)z * H * W + i] = 1.0f;
    char mpath[512], tpath[512];
    snprintf(mpath, sizeof mpath, "%s/vis_mask.nii.gz", test_tmpdir());
    CHECK_OK(nfv_volume_write(mpath, &mask));
    /* A template (a ramp) on the model grid; the model does no normalization. */
    CHECK_OK(nfv_volume_clone(&mask, &tmpl));
    for (size_t i = 0; i < nfv_volume_numel(&tmpl); i++) tmpl.data[i] = (float)(i % 7) * 0.1f;
    snprintf(tpath, sizeof tpath, "%s/vis_template.nii.gz", test_tmpdir());
    CHECK_OK(nfv_volume_write(tpath, &tmpl));
    m->norm = NFV_NORM_NONE;
    nfv_target t = one_target(m, "relu1:0@4,9,8");
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    char opts[1200];
    snprintf(opts, sizeof opts, "--steps 10 --mask %s --init template=%s --l1 0.1", mpath, tpath);
    CHECK_OK(nfv_vis_options_parse(&o, opts));
    nfv_vis_result *r = NULL;
    if (CHECK_OK(nfv_visualize(ctx, m, &t, 1, &o, NULL, NULL, &r))) {
        size_t plane = (size_t)H * W, n = nfv_volume_numel(&tmpl);
        int outside_is_template = 1, inside_changed = 0;
        for (size_t i = 0; i < n; i++) {
            /* Trilinear resampling onto the same grid is exact to float rounding. */
            int in_mask = i / plane < (size_t)D / 2;
            if (!in_mask) outside_is_template &= fabsf(r->volume.data[i] - tmpl.data[i]) < 1e-5f;
            else inside_changed |= fabsf(r->volume.data[i] - tmpl.data[i]) > 0.1f;
        }
        CHECK(outside_is_template, "outside the mask the image stays the template");
        CHECK(inside_changed && r->change.nx == W, "inside the mask the change moved it; the change is returned");
        CHECK(r->objective_clean > r->log_objective[0], "objective rose from the template: %.4g -> %.4g",
              r->log_objective[0], r->objective_clean);
        nfv_vis_results_free(r, 1);
    }
    nfv_volume_free(&mask);
    nfv_volume_free(&tmpl);
    nfv_model_free(m);
}

/* --mask ball=R@X,Y,Z: the change moves inside the ball (world mm through
 * the model's affine) and nowhere else.  The centre is off every symmetry
 * of the grid, so a swapped axis would move the ball and fail. */
TEST(vis_ball_mask)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    int D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3], cz = 6, cy = 10, cx = 9;
    double world[3], vox = fabs(m->affine[0][0]) + fabs(m->affine[0][1]) + fabs(m->affine[0][2]), radius = 2.5 * vox;
    for (int r = 0; r < 3; r++)
        world[r] = m->affine[r][0] * cx + m->affine[r][1] * cy + m->affine[r][2] * cz + m->affine[r][3];
    nfv_target t = one_target(m, "conv1:0@6,10,9");
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    char opts[512];
    snprintf(opts, sizeof opts, "--steps 5 --init zeros --mask ball=%.6f@%.6f,%.6f,%.6f", radius, world[0], world[1],
             world[2]);
    CHECK_OK(nfv_vis_options_parse(&o, opts));
    nfv_vis_result *r = NULL;
    if (CHECK_OK(nfv_visualize(ctx, m, &t, 1, &o, NULL, NULL, &r))) {
        int moved_outside = 0, inside = 0, moved_inside = 0;
        for (int z = 0; z < D; z++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int in = (z - cz) * (z - cz) + (y - cy) * (y - cy) + (x - cx) * (x - cx) <= 2.5 * 2.5;
                    float c = r->volume.data[((size_t)z * H + y) * W + x]; /* zeros start: the change */
                    inside += in;
                    moved_inside += in && c != 0.0f;
                    moved_outside += !in && c != 0.0f;
                }
        CHECK(moved_outside == 0, "%d voxels outside the ball changed", moved_outside);
        CHECK(inside == 81 && moved_inside > inside / 2, "%d of the ball's %d voxels changed (want most of 81)",
              moved_inside, inside);
        nfv_vis_results_free(r, 1);
    }
    /* Bad specs and a ball off the grid: one clear error each. */
    const char *bad[] = {"ball=0", "ball=5@1,2", "ball=x", "ball=5@1,2,3,4", "ball=3@1e6,0,0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nfv_vis_options_default(&o);
        snprintf(opts, sizeof opts, "--steps 1 --mask %s", bad[i]);
        CHECK_OK(nfv_vis_options_parse(&o, opts));
        r = NULL;
        nfv_status st = nfv_visualize(ctx, m, &t, 1, &o, NULL, NULL, &r);
        CHECK(st == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "ball"), "--mask %s: status %d, message \"%s\"",
              bad[i], (int)st, nfv_error_message());
        if (!st) nfv_vis_results_free(r, 1);
    }
    nfv_model_free(m);
}

/* --range LO,HI: projected ascent.  For the linear cube detector the box
 * optimum is HI on the 3^3 cube and LO on the rest of its 7^3 receptive field;
 * Adam's steps (lr 0.05, 80 steps, from +-0.1 noise) reach both bounds.
 * Every voxel stays inside [LO, HI], exactly (a clamp, no rounding). */
TEST(vis_range_projects_onto_the_box)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = cube_model();
    if (!m) return;
    nfv_target t = one_target(m, "conv1:0@8,9,8");
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    CHECK_OK(nfv_vis_options_parse(&o, "--steps 80 --range -0.5,2"));
    nfv_vis_result *r = NULL;
    if (CHECK_OK(nfv_visualize(ctx, m, &t, 1, &o, NULL, NULL, &r))) {
        int D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3], outside = 0, wrong = 0;
        for (int z = 0; z < D; z++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float v = r->volume.data[((size_t)z * H + y) * W + x];
                    outside += v < -0.5f || v > 2.0f;
                    int dz = abs(z - 8), dy = abs(y - 9), dx = abs(x - 8);
                    if (dz <= 3 && dy <= 3 && dx <= 3) {
                        float want = dz <= 1 && dy <= 1 && dx <= 1 ? 2.0f : -0.5f;
                        wrong += v != want;
                    }
                }
        CHECK(outside == 0, "%d voxels outside [-0.5, 2]", outside);
        CHECK(wrong == 0, "%d receptive-field voxels not at the box optimum (2 on the cube, -0.5 around)", wrong);
        /* Objective at the optimum: 27 * 2 + 316 * (27/316) * 0.5 + bias 1 = 68.5. */
        CHECK(fabs(r->objective_clean - 68.5) < 1e-3 * 68.5, "objective %.4f = the box optimum 68.5", r->objective_clean);
        nfv_vis_results_free(r, 1);
    }
    nfv_vis_options o2;
    nfv_vis_options_default(&o2);
    CHECK(nfv_vis_options_parse(&o2, "--range 2,1") == NFV_ERR_INVALID_ARG, "--range 2,1 rejected");
    CHECK_OK(nfv_vis_options_parse(&o2, "--range 0,1 --param fourier"));
    CHECK(nfv_vis_options_check(&o2) == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "--param voxel"),
          "--range with fourier rejected: %s", nfv_error_message());
    nfv_model_free(m);
}

/* logit:CLASS@cell sums to the logit: bias + sum over every cell of the map
 * before Flatten; contrast:CLASS = logit - mean of the other logits.  Host
 * arithmetic in double on the device's float objectives: 1e-4 abs + rel. */
TEST(vis_logit_cells_and_contrast_add_up)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    int in[4] = {1, 7, 9, 11};
    const char *names[3] = {"a", "b", "c"};
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(3,k3,p1) relu maxpool(2) flatten dropout(0.5) linear(3)", in, 3,
                                             names, NFV_HEAD_SOFTMAX, 9, &m)))
        return;
    m->norm = NFV_NORM_NONE;
    nfv_volume v;
    CHECK_OK(nfv_volume_alloc(&v, 11, 9, 7, NULL));
    float *r = test_random((size_t)7 * 9 * 11, 31, -1.0f, 1.0f);
    memcpy(v.data, r, sizeof(float) * 7 * 9 * 11);
    free(r);
    float *bias = test_download(&m->layers[m->layer_count - 1].param[1]);
    /* pool1 is 3x(3,4,5): 60 cells. */
    enum { CELLS = 60 };
    nfv_target t[CELLS + 4];
    nfv_volume vs[CELLS + 4];
    int n = 0;
    for (int z = 0; z < 3; z++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 5; x++) {
                char text[64];
                snprintf(text, sizeof text, "logit:b@%d,%d,%d", z, y, x);
                vs[n] = v;
                t[n++] = one_target(m, text);
            }
    const char *whole[4] = {"logit:a", "logit:b", "logit:c", "contrast:b"};
    for (int i = 0; i < 4; i++) {
        vs[n] = v;
        t[n++] = one_target(m, whole[i]);
    }
    CHECK(!strcmp(t[0].name, "logit:b@0,0,0") && !strcmp(t[CELLS + 3].name, "contrast:b"), "canonical names %s, %s",
          t[0].name, t[CELLS + 3].name);
    float got[CELLS + 4];
    if (bias && CHECK_OK(nfv_vis_objective(ctx, m, t, n, vs, got))) {
        double sum = bias[1];
        for (int i = 0; i < CELLS; i++) sum += got[i];
        double la = got[CELLS], lb = got[CELLS + 1], lc = got[CELLS + 2];
        float have[2] = {(float)sum, got[CELLS + 3]};
        double want[2] = {lb, lb - 0.5 * (la + lc)};
        CHECK_CLOSE("bias + sum of cells = logit; contrast = logit - mean of others", have, want, 2, 1e-4, 1e-4);
    }
    free(bias);
    nfv_target *bad = NULL;
    int nb = 0;
    CHECK(nfv_target_parse(m, "logit:b@3,0,0", &bad, &nb) == NFV_ERR_INVALID_ARG &&
              strstr(nfv_error_message(), "outside") != NULL,
          "cell outside the map rejected: %s", nfv_error_message());
    free(bad);
    nfv_volume_free(&v);
    nfv_model_free(m);
}
