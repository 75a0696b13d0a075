/* Eval-mode fusion of conv -> BatchNorm [-> ReLU] (src/model/model_fuse.c,
 * the conv3d_fold_bn, OUT_RELU and conv3d_pad_gated kernels of
 * cl/conv3d.cl): each op against the plain C references, whole fused
 * models against the double reference model and its finite differences,
 * and the rules on which layers stay materialized. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_check.h"
#include "neurofv/model.h"
#include "neurofv/ops.h"
#include "ref_conv3d.h"
#include "test.h"

/* wf = w * s[co], bf = (b - mean) * s + beta, s = gamma / sqrt(var + eps), in double. */
TEST(fuse_fold_batchnorm_vs_host_reference)
{
    enum { CO = 5, PER = 2 * 27 };
    int ws[5] = {CO, 2, 3, 3, 3}, cs[1] = {CO};
    float *w = test_random(CO * PER, 1, -1, 1), *b = test_random(CO, 2, -1, 1), *g = test_random(CO, 3, 0.5f, 1.5f),
          *be = test_random(CO, 4, -0.3f, 0.3f), *mu = test_random(CO, 5, -0.5f, 0.5f), *var = test_random(CO, 6, 0.2f, 2.0f);
    const float eps = 1e-5f;
    nfv_tensor tw, tb, tg, tbe, tmu, tvar, wf, bf;
    memset(&wf, 0, sizeof wf), memset(&bf, 0, sizeof bf);
    if (CHECK_OK(test_tensor(&tw, 5, ws, w)) && CHECK_OK(test_tensor(&tb, 1, cs, b)) &&
        CHECK_OK(test_tensor(&tg, 1, cs, g)) && CHECK_OK(test_tensor(&tbe, 1, cs, be)) &&
        CHECK_OK(test_tensor(&tmu, 1, cs, mu)) && CHECK_OK(test_tensor(&tvar, 1, cs, var)) &&
        CHECK_OK(nfv_tensor_create(test_ctx(), &wf, 5, ws)) && CHECK_OK(nfv_tensor_create(test_ctx(), &bf, 1, cs))) {
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            if (!CHECK_OK(nfv_conv3d_fold_batchnorm(test_ctx(), &tw, with_bias ? &tb : NULL, &tg, &tbe, &tmu, &tvar, eps,
                                                    &wf, &bf)))
                continue;
            double want_w[CO * PER], want_b[CO];
            for (int c = 0; c < CO; c++) {
                double s = g[c] / sqrt((double)var[c] + eps);
                for (int i = 0; i < PER; i++) want_w[c * PER + i] = w[c * PER + i] * s;
                want_b[c] = ((with_bias ? b[c] : 0.0) - mu[c]) * s + be[c];
            }
            float *gw = test_download(&wf), *gb = test_download(&bf);
            if (gw && gb) {
                CHECK_CLOSE(with_bias ? "folded weights (bias)" : "folded weights (no bias)", gw, want_w, CO * PER, 1e-6, 1e-5);
                CHECK_CLOSE(with_bias ? "folded bias" : "folded bias from no bias", gb, want_b, CO, 1e-6, 1e-5);
            }
            free(gw), free(gb);
        }
        /* A per-channel tensor of the wrong length is refused, not read past. */
        int two[1] = {2};
        nfv_tensor shortv;
        if (CHECK_OK(nfv_tensor_create(test_ctx(), &shortv, 1, two))) {
            CHECK(nfv_conv3d_fold_batchnorm(test_ctx(), &tw, NULL, &tg, &tbe, &tmu, &shortv, eps, &wf, &bf) ==
                      NFV_ERR_INVALID_ARG,
                  "fold with a 2-value running variance for 5 channels refused");
            nfv_tensor_free(&shortv);
        }
    }
    nfv_tensor_free(&tw), nfv_tensor_free(&tb), nfv_tensor_free(&tg), nfv_tensor_free(&tbe);
    nfv_tensor_free(&tmu), nfv_tensor_free(&tvar), nfv_tensor_free(&wf), nfv_tensor_free(&bf);
    free(w), free(b), free(g), free(be), free(mu), free(var);
}

/* conv + ReLU on store, and the gated input gradient, against the double
 * reference conv: y = max(conv(x), 0); dx = conv^T(dy * [y > 0]).  Shapes:
 * a fast-path one (stride 1) and a stride-2 one (reference path). */
static void check_relu_and_gate(int stride)
{
    ref_conv3d_shape s;
    memset(&s, 0, sizeof s);
    s.n = 2, s.ci = 3, s.d = 6, s.h = 7, s.w = 19, s.co = 8;
    for (int i = 0; i < 3; i++) s.k[i] = 3, s.s[i] = stride, s.p[i] = 1;
    ref_conv3d_shape_init(&s);
    size_t xn = (size_t)s.n * s.ci * s.d * s.h * s.w, wn = (size_t)s.co * s.ci * 27,
           yn = (size_t)s.n * s.co * s.od * s.oh * s.ow;
    float *x = test_random(xn, 11, -1, 1), *w = test_random(wn, 12, -0.5f, 0.5f), *b = test_random(s.co, 13, -0.2f, 0.2f),
          *dy = test_random(yn, 14, -1, 1);
    double *y = malloc(yn * sizeof *y), *dx = malloc(xn * sizeof *dx);
    float *gated = malloc(yn * sizeof *gated);
    ref_conv3d_forward(&s, x, w, b, y);
    for (size_t i = 0; i < yn; i++) {
        y[i] = y[i] > 0 ? y[i] : 0;
        gated[i] = y[i] > 0 ? dy[i] : 0.0f;
    }
    ref_conv3d_backward_input(&s, gated, w, dx);
    nfv_conv3d_params p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 3; i++) p.kernel[i] = 3, p.stride[i] = stride, p.padding[i] = 1;
    int xs[5] = {s.n, s.ci, s.d, s.h, s.w}, ws[5] = {s.co, s.ci, 3, 3, 3}, ys[5] = {s.n, s.co, s.od, s.oh, s.ow},
        bs[1] = {s.co};
    nfv_tensor tx, tw, tb, ty, tdy, tdx;
    if (CHECK_OK(test_tensor(&tx, 5, xs, x)) && CHECK_OK(test_tensor(&tw, 5, ws, w)) &&
        CHECK_OK(test_tensor(&tb, 1, bs, b)) && CHECK_OK(test_tensor(&tdy, 5, ys, dy)) &&
        CHECK_OK(nfv_tensor_create(test_ctx(), &ty, 5, ys)) && CHECK_OK(nfv_tensor_create(test_ctx(), &tdx, 5, xs))) {
        char what[96];
        if (CHECK_OK(nfv_conv3d_forward_relu(test_ctx(), &p, &tx, &tw, &tb, &ty))) {
            float *gy = test_download(&ty);
            snprintf(what, sizeof what, "conv + ReLU on store, stride %d", stride);
            if (gy) CHECK_CLOSE(what, gy, y, yn, 1e-5, 1e-4);
            free(gy);
        }
        /* The gate is the ReLU output just computed, as in a fused backward. */
        if (CHECK_OK(nfv_conv3d_backward_input_gated(test_ctx(), &p, &tdy, &ty, &tw, &tdx))) {
            float *gdx = test_download(&tdx);
            snprintf(what, sizeof what, "gated input gradient, stride %d", stride);
            if (gdx) CHECK_CLOSE(what, gdx, dx, xn, 1e-5, 1e-4);
            free(gdx);
        }
        CHECK(nfv_conv3d_backward_input_gated(test_ctx(), &p, &tdy, &tx, &tw, &tdx) == NFV_ERR_INVALID_ARG,
              "a gate of another shape is refused (stride %d)", stride);
    }
    nfv_tensor_free(&tx), nfv_tensor_free(&tw), nfv_tensor_free(&tb), nfv_tensor_free(&ty);
    nfv_tensor_free(&tdy), nfv_tensor_free(&tdx);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(gated);
}

TEST(fuse_conv_relu_and_gated_gradient_vs_host_reference)
{
    check_relu_and_gate(1);
    check_relu_and_gate(2);
}

/* Whole models with fusion on: forward and input gradient against the double
 * reference and its finite differences (tests/model_check.c). */
TEST(fuse_models_vs_reference)
{
    int a[4] = {1, 7, 9, 11};
    /* conv-bn-relu (gated), conv-bn without ReLU (plain folded), a strided
     * conv-bn-relu (gated in its phase conv's padding copy) */
    const char *chain = "conv(4,k3,p1) bn relu maxpool(2) conv(4,k3,p1,nobias) bn avgpool(2,1) conv(3,k3,s2,p1) bn "
                        "relu flatten linear(3)";
    check_model_fused(chain, a, 2, 3, NFV_HEAD_SOFTMAX, -1);
    check_model_fused(chain, a, 1, 3, NFV_HEAD_SOFTMAX, 1); /* to bn1: the group ends at the requested layer */
    /* conv -> ReLU without a BatchNorm (as ONNX exports leave them): plain,
     * strided (gated in its phase conv's padding copy) and dilated (gated
     * into a temporary) */
    check_model_fused("conv(4,k3,p1) relu maxpool(2) conv(4,k3,s2,p1) relu conv(3,k3,p2,d2) relu flatten linear(3)",
                      a, 2, 3, NFV_HEAD_SOFTMAX, -1);
    /* A residual graph: r0 feeds two nodes (a group may end there); r1 is
     * summed into in place by the Add, so its group stops at b1 (the gate
     * would be overwritten); a strided conv-bn at the end. */
    static const char *const residual =
        "{\"graph\":["
        "{\"op\":\"conv\",\"name\":\"c0\",\"inputs\":[-1],\"f\":4,\"k\":[3,3,3],\"p\":[1,1,1]},"
        "{\"op\":\"bn\",\"name\":\"b0\"},"
        "{\"op\":\"relu\",\"name\":\"r0\"},"
        "{\"op\":\"conv\",\"name\":\"c1\",\"f\":4,\"k\":[3,3,3],\"p\":[1,1,1]},"
        "{\"op\":\"bn\",\"name\":\"b1\"},"
        "{\"op\":\"relu\",\"name\":\"r1\"},"
        "{\"op\":\"add\",\"name\":\"sum\",\"inputs\":[5,2]},"
        "{\"op\":\"conv\",\"name\":\"c2\",\"f\":2,\"k\":[3,3,3],\"s\":[2,2,2],\"p\":[1,1,1]},"
        "{\"op\":\"bn\",\"name\":\"b2\"},"
        "{\"op\":\"gap\",\"name\":\"gap\"},"
        "{\"op\":\"flatten\",\"name\":\"flat\"},"
        "{\"op\":\"linear\",\"name\":\"fc\",\"f\":3,\"b\":1}]}";
    int g[4] = {1, 9, 8, 7};
    check_model_fused(residual, g, 2, 3, NFV_HEAD_SOFTMAX, -1);
    nfv_model *m = NULL;
    float *xf = test_random(nfv_shape_numel(4, g), 3, -1, 1);
    nfv_tensor x;
    if (CHECK_OK(nfv_model_create_from_spec(test_ctx(), residual, g, 3, NULL, NFV_HEAD_SOFTMAX, 1, &m)) &&
        CHECK_OK(test_tensor(&x, 5, (int[]){1, 1, 9, 8, 7}, xf))) {
        nfv_model_set_fusion(m, 1);
        if (CHECK_OK(nfv_model_forward(m, test_ctx(), &x, -1, 0)))
            CHECK(m->layers[2].fused_with == 2 && m->layers[4].fused_with == 1 && m->layers[5].fused_with == 0 &&
                      m->layers[8].fused_with == 1,
                  "groups: c0-r0, c1-b1 (r1 is summed into in place), c2-b2; got %d %d %d %d", m->layers[2].fused_with,
                  m->layers[4].fused_with, m->layers[5].fused_with, m->layers[8].fused_with);
        nfv_tensor_free(&x);
    }
    nfv_model_free(m);
    free(xf);
    /* conv -> ReLU pairs in a graph: r1 is summed into in place (its pair
     * stays apart: backward gates by r1's output); r0 feeds two nodes. */
    static const char *const relu_pairs =
        "{\"graph\":["
        "{\"op\":\"conv\",\"name\":\"c0\",\"inputs\":[-1],\"f\":4,\"k\":[3,3,3],\"p\":[1,1,1]},"
        "{\"op\":\"relu\",\"name\":\"r0\"},"
        "{\"op\":\"conv\",\"name\":\"c1\",\"f\":4,\"k\":[3,3,3],\"p\":[1,1,1]},"
        "{\"op\":\"relu\",\"name\":\"r1\"},"
        "{\"op\":\"add\",\"name\":\"sum\",\"inputs\":[3,1]},"
        "{\"op\":\"gap\",\"name\":\"gap\"},"
        "{\"op\":\"flatten\",\"name\":\"flat\"},"
        "{\"op\":\"linear\",\"name\":\"fc\",\"f\":3,\"b\":1}]}";
    check_model_fused(relu_pairs, g, 2, 3, NFV_HEAD_SOFTMAX, -1);
    m = NULL;
    xf = test_random(nfv_shape_numel(4, g), 4, -1, 1);
    if (CHECK_OK(nfv_model_create_from_spec(test_ctx(), relu_pairs, g, 3, NULL, NFV_HEAD_SOFTMAX, 1, &m)) &&
        CHECK_OK(test_tensor(&x, 5, (int[]){1, 1, 9, 8, 7}, xf))) {
        nfv_model_set_fusion(m, 1);
        if (CHECK_OK(nfv_model_forward(m, test_ctx(), &x, -1, 0)))
            CHECK(m->layers[1].fused_with == 1 && m->layers[3].fused_with == 0,
                  "groups: c0-r0, not c1-r1 (summed into in place); got %d %d", m->layers[1].fused_with,
                  m->layers[3].fused_with);
        nfv_tensor_free(&x);
    }
    nfv_model_free(m);
    free(xf);
}

/* relu1 (1, 4, 6, 7, 8) of m's forward (malloc'ed); NULL on failure. */
static float *relu_out(nfv_context *ctx, nfv_model *m, const nfv_tensor *x)
{
    return CHECK_OK(nfv_model_forward(m, ctx, x, -1, 0)) ? test_download(nfv_model_activation(m, 2)) : NULL;
}

/* The same in double, as CHECK_CLOSE's reference. */
static double *relu_ref(nfv_context *ctx, nfv_model *m, const nfv_tensor *x, size_t n)
{
    float *f = relu_out(ctx, m, x);
    double *d = f ? malloc(n * sizeof *d) : NULL;
    for (size_t i = 0; d && i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

/* The folded BatchNorm is made once per freeze of the weights, not per
 * forward (it reads and writes every weight: half of ResNet-18's
 * visualization step when done per step), and again in the next freeze or
 * when not frozen.  Shown by changing gamma against the freeze's promise:
 * the frozen forward keeps the first fold. */
TEST(fuse_fold_kept_while_frozen)
{
    nfv_context *ctx = test_ctx();
    int in[4] = {1, 6, 7, 8};
    const size_t n = 4 * 6 * 7 * 8;
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(4,k3,p1) bn relu flatten linear(2)", in, 2, NULL,
                                             NFV_HEAD_SOFTMAX, 3, &m)))
        return;
    randomize_bn(ctx, m, 9);
    float *xf = test_random(nfv_shape_numel(4, in), 4, -1, 1), gamma[4] = {2.0f, -1.5f, 0.5f, 3.0f};
    nfv_tensor x;
    double *before = NULL, *after = NULL;
    float *got = NULL;
    if (CHECK_OK(test_tensor(&x, 5, (int[]){1, 1, 6, 7, 8}, xf))) {
        before = relu_ref(ctx, m, &x, n); /* unfused, the first gamma */
        nfv_model_set_fusion(m, 1);
        nfv_context_freeze_weights(ctx, 1);
        got = relu_out(ctx, m, &x);
        if (got && before) CHECK_CLOSE("frozen, first fused forward", got, before, n, 1e-5, 1e-4);
        free(got);
        CHECK(m->layers[2].fused_with == 2, "conv, bn and relu fused (%d)", m->layers[2].fused_with);
        CHECK_OK(nfv_tensor_upload(ctx, &m->layers[1].param[0], gamma));
        got = relu_out(ctx, m, &x);
        if (got && before)
            CHECK_CLOSE("frozen, gamma changed against the promise: the first fold", got, before, n, 1e-5, 1e-4);
        free(got);
        nfv_context_freeze_weights(ctx, 0);
        nfv_model_set_fusion(m, 0);
        after = relu_ref(ctx, m, &x, n); /* unfused, the new gamma */
        nfv_model_set_fusion(m, 1);
        got = relu_out(ctx, m, &x);
        if (got && after) CHECK_CLOSE("not frozen: folded again", got, after, n, 1e-5, 1e-4);
        free(got);
        nfv_context_freeze_weights(ctx, 1);
        got = relu_out(ctx, m, &x);
        if (got && after) CHECK_CLOSE("a new freeze: folded again", got, after, n, 1e-5, 1e-4);
        free(got);
        nfv_context_freeze_weights(ctx, 0);
        double worst = 0;
        for (size_t i = 0; before && after && i < n; i++) worst = fmax(worst, fabs(before[i] - after[i]));
        CHECK(worst > 0.1, "the two gammas give different outputs (largest difference %g)", worst);
        nfv_tensor_free(&x);
    }
    free(before), free(after), free(xf);
    nfv_model_free(m);
}

/* Which layers exist after a fused forward, and backward's refusal to stop
 * inside a group unless the layer is pinned. */
TEST(fuse_keeps_requested_layers)
{
    nfv_context *ctx = test_ctx();
    int in[4] = {1, 6, 7, 8};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(4,k3,p1) bn relu conv(4,k3,p1) bn relu flatten linear(2)", in, 2,
                                             NULL, NFV_HEAD_SOFTMAX, 3, &m)))
        return;
    randomize_bn(ctx, m, 5);
    float *xf = test_random(nfv_shape_numel(4, in), 7, -1, 1);
    int xs[5] = {1, 1, 6, 7, 8}, ys[5] = {1, 4, 6, 7, 8};
    nfv_tensor x, g, dact;
    if (CHECK_OK(test_tensor(&x, 5, xs, xf)) && CHECK_OK(nfv_tensor_create(ctx, &g, 2, (int[]){1, 2})) &&
        CHECK_OK(nfv_tensor_create(ctx, &dact, 5, ys))) {
        nfv_tensor_fill(ctx, &g, 1.0f);
        /* Unfused reference of the first block's gradient. */
        float *want = NULL;
        if (CHECK_OK(nfv_model_forward(m, ctx, &x, -1, 0)) &&
            CHECK_OK(nfv_model_backward_to_layer(m, ctx, m->layer_count - 1, &g, 2, &dact)))
            want = test_download(&dact);
        nfv_model_set_fusion(m, 1);
        if (CHECK_OK(nfv_model_forward(m, ctx, &x, -1, 0))) {
            CHECK(!nfv_model_activation(m, 0) && !nfv_model_activation(m, 1) && nfv_model_activation(m, 2),
                  "fused: conv1 and bn1 not materialized, relu1 is");
            CHECK(m->layers[2].fused_with == 2 && m->layers[5].fused_with == 2, "both blocks fused");
            CHECK(nfv_model_backward_to_layer(m, ctx, m->layer_count - 1, &g, 1, &dact) != NFV_OK,
                  "backward to a fused-away layer is refused");
            if (CHECK_OK(nfv_model_backward_to_layer(m, ctx, m->layer_count - 1, &g, 2, &dact)) && want) {
                float *got = test_download(&dact);
                double wd[4 * 6 * 7 * 8];
                for (size_t i = 0; i < sizeof wd / sizeof *wd; i++) wd[i] = want[i];
                if (got) CHECK_CLOSE("gradient at relu1, fused vs unfused", got, wd, sizeof wd / sizeof *wd, 1e-5, 1e-4);
                free(got);
            }
        }
        nfv_model_keep_activation(m, 1);
        if (CHECK_OK(nfv_model_forward(m, ctx, &x, -1, 0)))
            CHECK(nfv_model_activation(m, 1) && !nfv_model_activation(m, 0) && m->layers[1].fused_with == 1 &&
                      m->layers[2].fused_with == 0 && m->layers[5].fused_with == 2,
                  "pinned bn1 ends its group (conv1 + bn1), relu1 runs alone, the second block is still fused");
        free(want);
        nfv_tensor_free(&g), nfv_tensor_free(&dact);
    }
    nfv_tensor_free(&x);
    free(xf);
    nfv_model_free(m);
}


/* The max pool's gradient gated by its output and written padded, planar
 * and in channel rows (nfv_conv3d_staging), against the plain pool backward
 * (tested in test_pool.c) gated and padded here. */
TEST(fuse_pool_backward_gated_padded_vs_plain)
{
    nfv_context *ctx = test_ctx();
    enum { N = 2, C = 3, D = 5, H = 6, W = 21 };
    const int OD = 2, OH = 3, OW = 10;
    nfv_pool3d_params p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 3; i++) p.kernel[i] = 2, p.stride[i] = 2;
    const nfv_conv3d_staging planar = {{1, 2, 1}, 0}, rows = {{1, 2, 1}, C};
    const int *pad = planar.pad;
    int xs[5] = {N, C, D, H, W}, ys[5] = {N, C, OD, OH, OW};
    const int PD = D + 2 * pad[0], PH = H + 2 * pad[1], PW = W + 2 * pad[2];
    int ps[5] = {N, C, PD, PH, PW};
    size_t xn = (size_t)N * C * D * H * W, yn = (size_t)N * C * OD * OH * OW, pn = (size_t)N * C * PD * PH * PW;
    /* ReLU outputs: most below 0.3 zeroed, so some windows' max is 0 (gated off). */
    float *x = test_random(xn, 21, -1, 1), *dy = test_random(yn, 22, -1, 1);
    for (size_t i = 0; i < xn; i++) x[i] = x[i] > 0.3f ? x[i] : 0.0f;
    nfv_tensor tx, ty, ta, tdy, tdx, tp;
    if (CHECK_OK(test_tensor(&tx, 5, xs, x)) && CHECK_OK(nfv_tensor_create(ctx, &ty, 5, ys)) &&
        CHECK_OK(nfv_tensor_create(ctx, &ta, 5, ys)) && CHECK_OK(test_tensor(&tdy, 5, ys, dy)) &&
        CHECK_OK(nfv_tensor_create(ctx, &tdx, 5, xs)) && CHECK_OK(nfv_tensor_create(ctx, &tp, 5, ps))) {
        CHECK(nfv_maxpool3d_has_gated_padded_backward(ctx, &p, &tx, &ty), "kernel 2 stride 2 has the fused backward");
        float *dx = NULL;
        if (CHECK_OK(nfv_maxpool3d_forward(ctx, &p, &tx, &ty, &ta)) &&
            CHECK_OK(nfv_maxpool3d_backward(ctx, &p, &tdy, &ta, &tdx)))
            dx = test_download(&tdx);
        /* The gated arg max, as the fused conv + ReLU + pool forward writes
         * it: -1 where the window's max (the ReLU output) is not > 0. */
        float *y = dx ? test_download(&ty) : NULL;
        int *a = y ? (int *)test_download(&ta) : NULL;
        for (size_t e = 0; a && e < yn; e++)
            if (!(y[e] > 0)) a[e] = -1;
        if (a && !CHECK_OK(nfv_tensor_upload(ctx, &ta, (const float *)(const void *)a))) free(dx), dx = NULL;
        free(y), free(a);
        for (int layout = 0; dx && layout < 2; layout++) {
            const nfv_conv3d_staging *st = layout ? &rows : &planar;
            nfv_tensor_fill(ctx, &tp, 7.0f); /* every element must be written */
            if (!CHECK_OK(nfv_maxpool3d_backward_gated_padded(ctx, &p, &tdy, &ta, &tx, st, &tp))) continue;
            float *got = test_download(&tp);
            double *want = calloc(pn, sizeof *want);
            int gated_off = 0;
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++)
                    for (int d = 0; d < D; d++)
                        for (int h = 0; h < H; h++)
                            for (int w = 0; w < W; w++) {
                                /* the gradient lands on the arg max: its window's max is > 0 iff x > 0 there */
                                size_t i = ((((size_t)n * C + c) * D + d) * H + h) * W + w;
                                const size_t pd = (size_t)d + pad[0], ph = (size_t)h + pad[1];
                                size_t row = layout ? (((size_t)n * PD + pd) * PH + ph) * C + c
                                                    : (((size_t)n * C + c) * PD + pd) * PH + ph;
                                gated_off += x[i] <= 0 && dx[i] != 0;
                                want[row * PW + w + pad[2]] = x[i] > 0 ? dx[i] : 0.0;
                            }
            CHECK(gated_off > 0, "the test reaches windows whose max is 0 (%d)", gated_off);
            if (got) CHECK_CLOSE(layout ? "pool backward, gated and padded in channel rows"
                                        : "pool backward, gated and padded", got, want, pn, 0, 0);
            free(got), free(want);
        }
        free(dx);
        const nfv_conv3d_staging bad = {{1, 2, 3}, 0}, bad_rows = {{1, 2, 1}, C + 1};
        CHECK(nfv_maxpool3d_backward_gated_padded(ctx, &p, &tdy, &ta, &tx, &bad, &tp) == NFV_ERR_INVALID_ARG,
              "a padded buffer too small for the padding is refused");
        CHECK(nfv_maxpool3d_backward_gated_padded(ctx, &p, &tdy, &ta, &tx, &bad_rows, &tp) == NFV_ERR_INVALID_ARG,
              "channel rows of another channel count are refused");
        nfv_tensor_free(&ty), nfv_tensor_free(&ta), nfv_tensor_free(&tdy), nfv_tensor_free(&tdx), nfv_tensor_free(&tp);
    }
    nfv_tensor_free(&tx);
    free(x), free(dy);
}

/* conv + ReLU + 2x2x2 max pool in one kernel against the host reference
 * conv, ReLU and pooling (and the plain pool's arg max, which backward
 * reads): odd sizes (the last plane, row and column are not pooled), 8
 * output channels in blocks of 4. */
TEST(fuse_conv_relu_pool_vs_host_reference)
{
    nfv_context *ctx = test_ctx();
    ref_conv3d_shape s;
    memset(&s, 0, sizeof s);
    s.n = 2, s.ci = 2, s.d = 7, s.h = 9, s.w = 37, s.co = 8;
    for (int i = 0; i < 3; i++) s.k[i] = 3, s.s[i] = 1, s.p[i] = 1;
    ref_conv3d_shape_init(&s);
    const int pd = s.od / 2, ph = s.oh / 2, pw = s.ow / 2;
    size_t xn = (size_t)s.n * s.ci * s.d * s.h * s.w, wn = (size_t)s.co * s.ci * 27,
           yn = (size_t)s.n * s.co * s.od * s.oh * s.ow, pn = (size_t)s.n * s.co * pd * ph * pw;
    float *x = test_random(xn, 31, -1, 1), *w = test_random(wn, 32, -0.5f, 0.5f), *b = test_random(s.co, 33, -0.3f, 0.1f);
    double *y = malloc(yn * sizeof *y), *want = malloc(pn * sizeof *want);
    ref_conv3d_forward(&s, x, w, b, y);
    for (int nc = 0; nc < s.n * s.co; nc++)
        for (int d = 0; d < pd; d++)
            for (int h = 0; h < ph; h++)
                for (int v = 0; v < pw; v++) {
                    double m = 0; /* max of ReLU outputs >= 0 */
                    for (int k = 0; k < 8; k++) {
                        double t = y[(((size_t)nc * s.od + 2 * d + (k >> 2)) * s.oh + 2 * h + ((k >> 1) & 1)) * s.ow +
                                     2 * v + (k & 1)];
                        if (t > m) m = t;
                    }
                    want[(((size_t)nc * pd + d) * ph + h) * pw + v] = m;
                }
    nfv_conv3d_params p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 3; i++) p.kernel[i] = 3, p.stride[i] = 1, p.padding[i] = 1;
    nfv_pool3d_params pp;
    memset(&pp, 0, sizeof pp);
    for (int i = 0; i < 3; i++) pp.kernel[i] = 2, pp.stride[i] = 2;
    int xs[5] = {s.n, s.ci, s.d, s.h, s.w}, ws[5] = {s.co, s.ci, 3, 3, 3}, bs[1] = {s.co},
        fs[5] = {s.n, s.co, s.od, s.oh, s.ow}, ps[5] = {s.n, s.co, pd, ph, pw};
    nfv_tensor tx, tw, tb, tf, tpool, tidx, tp2, tidx2;
    CHECK(nfv_conv3d_has_relu_maxpool2(ctx, &p), "a plain 3x3x3 conv has the fused pool kernel");
    if (CHECK_OK(test_tensor(&tx, 5, xs, x)) && CHECK_OK(test_tensor(&tw, 5, ws, w)) &&
        CHECK_OK(test_tensor(&tb, 1, bs, b)) && CHECK_OK(nfv_tensor_create(ctx, &tf, 5, fs)) &&
        CHECK_OK(nfv_tensor_create(ctx, &tpool, 5, ps)) && CHECK_OK(nfv_tensor_create(ctx, &tidx, 5, ps)) &&
        CHECK_OK(nfv_tensor_create(ctx, &tp2, 5, ps)) && CHECK_OK(nfv_tensor_create(ctx, &tidx2, 5, ps))) {
        if (CHECK_OK(nfv_conv3d_forward_relu_maxpool2(ctx, &p, &tx, &tw, &tb, &tp2, &tidx2)) &&
            CHECK_OK(nfv_conv3d_forward_relu(ctx, &p, &tx, &tw, &tb, &tf)) &&
            CHECK_OK(nfv_maxpool3d_forward(ctx, &pp, &tf, &tpool, &tidx))) {
            float *got = test_download(&tp2);
            if (got) CHECK_CLOSE("conv + ReLU + max pool vs host reference", got, want, pn, 1e-5, 1e-4);
            /* Where the max is > 0 (the only windows backward passes
             * gradient through) the arg max is the plain pool's choice and
             * holds the max; elsewhere it is -1 (gated off). */
            int *i1 = (int *)test_download(&tidx2), *i0 = (int *)test_download(&tidx);
            float *full = test_download(&tf);
            size_t bad = 0, positive = 0, plane = (size_t)s.od * s.oh * s.ow;
            for (size_t e = 0; got && i0 && i1 && full && e < pn; e++) {
                size_t nc = e / ((size_t)pd * ph * pw);
                if (!(got[e] > 0)) {
                    bad += i1[e] != -1;
                    continue;
                }
                positive++;
                if (i1[e] < 0 || (size_t)i1[e] >= plane || full[nc * plane + i1[e]] != got[e] || i1[e] != i0[e]) bad++;
            }
            CHECK(bad == 0 && positive > pn / 4 && positive < pn, "arg max: %zu wrong of %zu (%zu windows > 0)", bad,
                  pn, positive);
            free(got), free(i1), free(i0), free(full);
        }
        int wrong[5] = {s.n, s.co, pd + 1, ph, pw};
        nfv_tensor tw2;
        if (CHECK_OK(nfv_tensor_create(ctx, &tw2, 5, wrong))) {
            CHECK(nfv_conv3d_forward_relu_maxpool2(ctx, &p, &tx, &tw, &tb, &tw2, &tidx2) == NFV_ERR_INVALID_ARG,
                  "a pooled output of the wrong shape is refused");
            nfv_tensor_free(&tw2);
        }
        nfv_tensor_free(&tf), nfv_tensor_free(&tpool), nfv_tensor_free(&tidx), nfv_tensor_free(&tp2);
        nfv_tensor_free(&tidx2);
    }
    nfv_tensor_free(&tx), nfv_tensor_free(&tw), nfv_tensor_free(&tb);
    free(x), free(w), free(b), free(y), free(want);
}
