/* Attribution methods (src/explain/) against what they must satisfy:
 * saliency = |df/dx| against central finite differences of the double
 * reference model (ref_model.c); gradient x input exact on a linear model;
 * integrated gradients' completeness; occlusion against a direct
 * computation with the reference model; SmoothGrad reproducible by seed and
 * independent of the batch; Grad-CAM's pieces (the gradient at a layer,
 * PyTorch's trilinear upsampling); bad names and layers.  Grad-CAM against
 * PyTorch on the same model: tools/explain_parity.py (make test-torch). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain/explain_internal.h"
#include "ref_model.h"
#include "test.h"

/* (1, 8, 8, 8): small enough for a finite difference at every voxel. */
static const int IN[4] = {1, 8, 8, 8};
#define NV 512
static const char *const NAMES[3] = {"a", "b", "c"};
static const char *const SPEC = "conv(4,k3,p1) relu maxpool(2) conv(4,k3,p1) elu(1.0) flatten linear(3)";

static nfv_model *small_model(const char *spec, unsigned long long seed)
{
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), spec, IN, 3, NAMES, NFV_HEAD_SOFTMAX, seed, &m))) return NULL;
    return m;
}

static nfv_target target_of(nfv_model *m, const char *text)
{
    nfv_target *t = NULL, out;
    int n = 0;
    memset(&out, 0, sizeof out);
    if (CHECK_OK(nfv_target_parse(m, text, &t, &n)) && CHECK(n == 1, "%s is one target", text)) out = t[0];
    free(t);
    return out;
}

/* Logit k of the reference model at x (NV doubles). */
static double ref_logit(const nfv_model *m, const ref_params *rp, const double *x, int k)
{
    double out[3];
    ref_model_forward(m, rp, x, 1, 0, -1, out);
    return out[k];
}

TEST(explain_saliency_matches_finite_differences)
{
    nfv_model *m = small_model(SPEC, 11);
    if (!m) return;
    ref_params rp;
    float *x = test_random(NV, 3, -1, 1), map[NV];
    nfv_target t = target_of(m, "logit:b");
    nfv_explain_options o;
    nfv_explain_options_default(&o);
    /* nfv_explain freezes the weights for its calls and ends the freeze
     * (a context left frozen would keep stale derived copies after training). */
    const int explained = CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_SALIENCY, &t, 1, x, NULL, &o, map, NULL));
    CHECK(nfv_context_frozen_generation(test_ctx()) == 0, "weights no longer frozen after nfv_explain");
    if (explained && CHECK(ref_params_download(test_ctx(), m, &rp), "reference parameters")) {
        double xd[NV], want[NV], h = 1e-4;
        for (int i = 0; i < NV; i++) xd[i] = x[i];
        for (int i = 0; i < NV; i++) {
            xd[i] = x[i] + h;
            double fp = ref_logit(m, &rp, xd, 1);
            xd[i] = x[i] - h;
            double fm = ref_logit(m, &rp, xd, 1);
            xd[i] = x[i];
            want[i] = fabs((fp - fm) / (2 * h));
        }
        /* float device vs double central differences of a piecewise-smooth net */
        CHECK_CLOSE("saliency vs |finite differences|", map, want, NV, 1e-4, 1e-3);
        ref_params_free(&rp);
    }
    free(x);
    nfv_model_free(m);
}

TEST(explain_gradxinput_exact_on_linear_model)
{
    nfv_model *m = small_model("flatten linear(3)", 5);
    if (!m) return;
    float *x = test_random(NV, 4, -2, 2), map[NV], w[3 * NV], b[3], f;
    nfv_target t = target_of(m, "logit:c");
    nfv_explain_options o;
    nfv_explain_options_default(&o);
    if (CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_GRADXINPUT, &t, 1, x, NULL, &o, map, &f)) &&
        CHECK_OK(nfv_tensor_download(test_ctx(), &m->layers[1].param[0], w)) &&
        CHECK_OK(nfv_tensor_download(test_ctx(), &m->layers[1].param[1], b))) {
        double want[NV], sum = 0, msum = 0;
        for (int i = 0; i < NV; i++) want[i] = (double)x[i] * w[2 * NV + i], sum += want[i], msum += map[i];
        CHECK_CLOSE("x * w of class c", map, want, NV, 1e-6, 1e-5);
        /* On a linear model the map sums to f(x) - bias. */
        CHECK(fabs(msum - (f - b[2])) <= 1e-4 + 1e-4 * fabs(sum), "sum of the map %g, f(x) - b %g", msum, (double)(f - b[2]));
    }
    free(x);
    nfv_model_free(m);
}

/* sum A = f(x) - f(baseline) within 1 % at 64 steps, for a zero and a random baseline. */
TEST(explain_integrated_gradients_completeness)
{
    nfv_model *m = small_model(SPEC, 12);
    if (!m) return;
    float *x = test_random(NV, 6, -1, 1), *base = test_random(NV, 7, -0.5f, 0.5f), map[NV];
    nfv_target t = target_of(m, "logit:a");
    nfv_explain_options o;
    nfv_explain_options_default(&o);
    for (int with_base = 0; with_base < 2; with_base++) {
        const float *bl = with_base ? base : NULL;
        float fx, fb;
        float zeros[NV] = {0};
        if (!CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_IG, &t, 1, x, bl, &o, map, &fx)) ||
            !CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_SALIENCY, &t, 1, bl ? bl : zeros, NULL, &o, map + 0, &fb)))
            break;
        /* map was overwritten by the saliency call: run IG again for the sum. */
        if (!CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_IG, &t, 1, x, bl, &o, map, NULL))) break;
        double sum = 0;
        for (int i = 0; i < NV; i++) sum += map[i];
        double want = (double)fx - fb;
        CHECK(fabs(sum - want) <= 0.01 * fabs(want), "%s baseline: sum of IG %g, f(x) - f(b) = %g - %g = %g",
              with_base ? "random" : "zero", sum, (double)fx, (double)fb, want);
    }
    free(x), free(base);
    nfv_model_free(m);
}

/* The direct computation: for every box position (written here from the
 * definition, independently of explain_occlusion.c), the drop of the
 * reference model's logit, averaged per voxel over the boxes covering it. */
TEST(explain_occlusion_matches_direct_computation)
{
    nfv_model *m = small_model(SPEC, 13);
    if (!m) return;
    ref_params rp;
    float *x = test_random(NV, 8, -1, 1), *base = test_random(NV, 9, -0.2f, 0.2f), map[NV];
    nfv_target t = target_of(m, "logit:c");
    nfv_explain_options o;
    nfv_explain_options_default(&o);
    o.occlusion_box = 4, o.occlusion_stride = 2, o.batch = 5; /* boxes at 0, 2, 4 per axis: 27 */
    if (CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_OCCLUSION, &t, 1, x, base, &o, map, NULL)) &&
        CHECK(ref_params_download(test_ctx(), m, &rp), "reference parameters")) {
        double xd[NV], occ[NV], sum[NV] = {0}, cnt[NV] = {0}, want[NV];
        for (int i = 0; i < NV; i++) xd[i] = x[i];
        double f0 = ref_logit(m, &rp, xd, 2);
        for (int bz = 0; bz <= 4; bz += 2)
            for (int by = 0; by <= 4; by += 2)
                for (int bx = 0; bx <= 4; bx += 2) {
                    for (int i = 0; i < NV; i++) {
                        int z = i / 64, y = (i / 8) % 8, xx = i % 8;
                        int in = z >= bz && z < bz + 4 && y >= by && y < by + 4 && xx >= bx && xx < bx + 4;
                        occ[i] = in ? base[i] : x[i];
                    }
                    double drop = f0 - ref_logit(m, &rp, occ, 2);
                    for (int i = 0; i < NV; i++)
                        if (occ[i] != xd[i] || (base[i] == x[i])) {
                            int z = i / 64, y = (i / 8) % 8, xx = i % 8;
                            if (z >= bz && z < bz + 4 && y >= by && y < by + 4 && xx >= bx && xx < bx + 4)
                                sum[i] += drop, cnt[i] += 1;
                        }
                }
        for (int i = 0; i < NV; i++) want[i] = cnt[i] ? sum[i] / cnt[i] : 0;
        CHECK_CLOSE("occlusion vs direct", map, want, NV, 1e-4, 1e-3);
        ref_params_free(&rp);
    }
    free(x), free(base);
    nfv_model_free(m);
}

TEST(explain_smoothgrad_reproducible_by_seed)
{
    nfv_model *m = small_model(SPEC, 14);
    if (!m) return;
    float *x = test_random(2 * NV, 10, -1, 1), a[2 * NV], b[2 * NV], c[2 * NV], g[2 * NV];
    nfv_target t[2] = {target_of(m, "logit:a"), target_of(m, "logit:b")};
    nfv_explain_options o;
    nfv_explain_options_default(&o);
    o.smooth_samples = 7;
    CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_SMOOTHGRAD, t, 2, x, NULL, &o, a, NULL));
    o.batch = 3; /* other batch: the same noise per (seed, input, sample) */
    CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_SMOOTHGRAD, t, 2, x, NULL, &o, b, NULL));
    CHECK(!memcmp(a, b, sizeof a), "SmoothGrad with batch 8 and 3 gives the same bytes");
    o.seed = 2;
    CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_SMOOTHGRAD, t, 2, x, NULL, &o, c, NULL));
    CHECK(memcmp(a, c, sizeof a), "another seed gives another map");
    /* No noise: the mean of identical gradients is the (signed) gradient. */
    o.smooth_noise = 0;
    CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_SMOOTHGRAD, t, 2, x, NULL, &o, c, NULL));
    CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_SALIENCY, t, 2, x, NULL, &o, g, NULL));
    double want[2 * NV];
    for (int i = 0; i < 2 * NV; i++) want[i] = g[i];
    float absc[2 * NV];
    for (int i = 0; i < 2 * NV; i++) absc[i] = fabsf(c[i]);
    CHECK_CLOSE("|smoothgrad without noise| = saliency", absc, want, 2 * NV, 1e-6, 1e-5);
    free(x);
    nfv_model_free(m);
}

/* Backward from the logits to layer L, then from L to the input, gives the
 * same input gradient as one backward: the gradient at L is the one Grad-CAM
 * weights by.  For a chain and a graph (residual adds). */
static void check_backward_to_layer(const char *spec, const int in[4], const char *layer_name)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, spec, in, 3, NAMES, NFV_HEAD_SOFTMAX, 21, &m))) return;
    int L = nfv_model_find_layer(m, layer_name), top = nfv_model_logit_layer(m);
    const nfv_layer *l = nfv_model_layer(m, L);
    size_t per = (size_t)nfv_shape_numel(4, in);
    float *x = test_random(2 * per, 22, -1, 1), *seed = test_random(6, 23, -1, 1);
    nfv_tensor tx, tdx, tseed, tdact, tdx2;
    int xs[5] = {2, in[0], in[1], in[2], in[3]}, ss[2] = {2, 3};
    int as[5] = {2, l->out_shape[0], l->out_shape[1], l->out_shape[2], l->out_shape[3]};
    if (CHECK_OK(test_tensor(&tx, 5, xs, x)) && CHECK_OK(test_tensor(&tdx, 5, xs, NULL)) &&
        CHECK_OK(test_tensor(&tdx2, 5, xs, NULL)) && CHECK_OK(test_tensor(&tseed, 2, ss, seed)) &&
        CHECK_OK(test_tensor(&tdact, l->out_ndim + 1, as, NULL)) && CHECK_OK(nfv_model_forward(m, ctx, &tx, top, 0)) &&
        CHECK_OK(nfv_model_backward(m, ctx, top, &tseed, 0, &tdx)) &&
        CHECK_OK(nfv_model_backward_to_layer(m, ctx, top, &tseed, L, &tdact)) &&
        CHECK_OK(nfv_model_backward(m, ctx, L, &tdact, 0, &tdx2))) {
        float *a = test_download(&tdx), *b = test_download(&tdx2);
        double *want = malloc(2 * per * sizeof *want);
        for (size_t i = 0; a && b && want && i < 2 * per; i++) want[i] = a[i];
        if (a && b && want) CHECK_CLOSE(spec, b, want, 2 * per, 1e-5, 1e-4);
        free(a), free(b), free(want);
    }
    nfv_tensor_free(&tx), nfv_tensor_free(&tdx), nfv_tensor_free(&tdx2), nfv_tensor_free(&tseed), nfv_tensor_free(&tdact);
    free(x), free(seed);
    nfv_model_free(m);
}

TEST(explain_backward_to_layer_composes)
{
    check_backward_to_layer(SPEC, IN, "conv2");
    static const int R[4] = {1, 24, 24, 24};
    check_backward_to_layer("resnet10(8)", R, "maxpool"); /* every path passes through it */
}

/* PyTorch F.interpolate(trilinear, align_corners=False) of (1, 1, 2) to
 * (1, 1, 4) is [0, 0.25, 0.75, 1] x (b - a) + a; a constant stays constant. */
TEST(explain_upsample_like_pytorch)
{
    float src[2] = {1.0f, 3.0f}, dst[4];
    explain_upsample_trilinear(src, 1, 1, 2, dst, 1, 1, 4);
    double want[4] = {1.0, 1.5, 2.5, 3.0};
    CHECK_CLOSE("1x1x2 -> 1x1x4", dst, want, 4, 1e-6, 0);
    float c[8], up[5 * 6 * 7];
    for (int i = 0; i < 8; i++) c[i] = 2.5f;
    explain_upsample_trilinear(c, 2, 2, 2, up, 5, 6, 7);
    double wc[5 * 6 * 7];
    for (int i = 0; i < 5 * 6 * 7; i++) wc[i] = 2.5;
    CHECK_CLOSE("constant", up, wc, 5 * 6 * 7, 1e-6, 0);
}

TEST(explain_gradcam_positive_and_located)
{
    nfv_model *m = small_model(SPEC, 15);
    if (!m) return;
    float *x = test_random(NV, 12, -1, 1), map[NV];
    nfv_target t = target_of(m, "logit:a");
    nfv_explain_options o;
    nfv_explain_options_default(&o);
    int L = nfv_explain_default_cam_layer(m, &t);
    CHECK(L == nfv_model_find_layer(m, "elu1"), "default Grad-CAM layer is the last spatial one (elu1), got %d", L);
    if (CHECK_OK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_GRADCAM, &t, 1, x, NULL, &o, map, NULL))) {
        int neg = 0;
        for (int i = 0; i < NV; i++) neg += map[i] < 0;
        CHECK(neg == 0, "Grad-CAM is a ReLU: %d negative voxels", neg);
    }
    free(x);
    nfv_model_free(m);
}

TEST(explain_bad_names_and_layers)
{
    nfv_explain_method me;
    CHECK(nfv_explain_method_parse("lrp", &me) == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "smoothgrad"),
          "unknown method lists the methods: %s", nfv_error_message());
    CHECK(nfv_explain_method_parse("ig", &me) == NFV_OK && me == NFV_EXPLAIN_IG, "ig is integrated-gradients");
    nfv_model *m = small_model(SPEC, 16);
    if (!m) return;
    float *x = test_random(NV, 13, -1, 1), map[NV];
    nfv_target t = target_of(m, "logit:a");
    nfv_explain_options o;
    nfv_explain_options_default(&o);
    o.cam_layer = nfv_model_find_layer(m, "fc");
    CHECK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_GRADCAM, &t, 1, x, NULL, &o, map, NULL) == NFV_ERR_INVALID_ARG &&
              strstr(nfv_error_message(), "(C, D, H, W)"),
          "Grad-CAM on a Linear layer is refused: %s", nfv_error_message());
    nfv_target t1 = target_of(m, "conv1:0");
    o.cam_layer = nfv_model_find_layer(m, "conv2");
    CHECK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_GRADCAM, &t1, 1, x, NULL, &o, map, NULL) == NFV_ERR_INVALID_ARG &&
              strstr(nfv_error_message(), "does not depend"),
          "Grad-CAM at a layer after the target is refused: %s", nfv_error_message());
    nfv_explain_options_default(&o);
    o.ig_steps = 0;
    CHECK(nfv_explain(test_ctx(), m, NFV_EXPLAIN_IG, &t, 1, x, NULL, &o, map, NULL) == NFV_ERR_INVALID_ARG,
          "0 IG steps refused");
    free(x);
    nfv_model_free(m);
}

/* The scores on cases computed by hand. */
TEST(explain_scores_by_hand)
{
    float map[4] = {1, -2, 3, 0}, mask[4] = {0, 1, 1, 0};
    double mass = nfv_explain_mass_in(map, mask, 4);
    CHECK(fabs(mass - 5.0 / 6.0) < 1e-12, "mass in mask (|-2| + 3) / 6 = %g", mass);
    CHECK(nfv_explain_pointing(map, mask, 4) == 1, "largest |map| (3) is inside");
    float zeros[4] = {0};
    CHECK(nfv_explain_mass_in(zeros, mask, 4) == 0, "an all-zero map has no mass");
    /* |a| ranks 1, 2.5, 2.5, 4 (a tie), b ranks 1..4: r = 4.5 / sqrt(4.5 * 5) */
    float a[4] = {1, -2, 2, 4}, b[4] = {1, 2, 3, 4}, rev[4] = {4, 3, 2, 1};
    double rho = nfv_explain_spearman(a, b, NULL, 4);
    CHECK(fabs(rho - 4.5 / sqrt(22.5)) < 1e-12, "Spearman with a tie %g, want %g", rho, 4.5 / sqrt(22.5));
    CHECK(fabs(nfv_explain_spearman(b, rev, NULL, 4) + 1) < 1e-12, "reversed ranks give -1");
    float where[4] = {1, 0, 1, 1};
    /* over voxels 0, 2, 3: a = 1, 2, 4 and b = 1, 3, 4: Pearson by hand */
    double ma = 7.0 / 3, mb = 8.0 / 3, sab = 0, saa = 0, sbb = 0, va[3] = {1, 2, 4}, vb[3] = {1, 3, 4};
    for (int i = 0; i < 3; i++) sab += (va[i] - ma) * (vb[i] - mb), saa += (va[i] - ma) * (va[i] - ma), sbb += (vb[i] - mb) * (vb[i] - mb);
    double r = nfv_explain_pearson(a, b, where, 4);
    CHECK(fabs(r - sab / sqrt(saa * sbb)) < 1e-12, "Pearson over the selected voxels %g, want %g", r, sab / sqrt(saa * sbb));
    CHECK(isnan(nfv_explain_pearson(zeros, b, NULL, 4)), "a constant map has no correlation");
}
