/* Graph models: the residual and dense presets and a graph using every graph
 * op, forward and input gradient against the double reference; parameter
 * gradients by finite differences; gradients summed where a tensor feeds
 * several nodes; file round trips; a model file saved before graphs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_check.h"
#include "neurofv/model.h"
#include "ref_model.h"
#include "test.h"

/* (C, D, H, W): the presets' three stride-2 stages leave 1 voxel or more. */
static const int PRESET_INPUT[4] = {1, 24, 24, 24}; /* the grid of test_train.c's cohort */

TEST(model_graph_presets_vs_reference)
{
    /* One input size for every preset test: PoCL compiles a program per
     * layer geometry, so shared shapes keep a cold run short. */
    const int *r = PRESET_INPUT;
    /* resnet10(8): the model test_train.c trains, so its kernels are built once. */
    check_model("resnet10(8)", r, 2, 3, NFV_HEAD_SOFTMAX, 0, -1); /* eval: visualization of a logit */
    check_model("resnet10(8)", r, 3, 3, NFV_HEAD_SOFTMAX, 1, -1); /* training-mode BN through residual adds */
    nfv_model *m = NULL;
    if (CHECK_OK(nfv_model_create_from_spec(test_ctx(), "resnet10(8)", r, 3, NULL, NFV_HEAD_SOFTMAX, 1, &m))) {
        int block = nfv_model_find_layer(m, "layer2.0"), conv = nfv_model_find_layer(m, "layer2.0.conv1");
        CHECK(block > 0 && conv > 0, "resnet10 names its blocks: %s", nfv_error_message());
        CHECK(m->layers[block - 1].spec.kind == NFV_LAYER_ADD && m->layers[block - 1].in_place, "the block's Add sums in place");
        nfv_model_free(m);
        check_model("resnet10(8)", r, 1, 3, NFV_HEAD_SOFTMAX, 0, block); /* a block's output unit */
    }
    /* One layer per dense block: every layer is its own conv geometry to build. */
    check_model("densenet(4,8,1)", r, 2, 2, NFV_HEAD_SOFTMAX, 0, -1);
}

/* Every graph op in one model; the input and node "r" each feed three
 * nodes, so their gradients are sums.  Shapes per sample:
 * input 1x9x8x7 -> conv 4 -> relu r -> conv (dilated, grouped) -> add(r, c, r)
 * -> concat(add, conv0, input) 9 ch -> pad -> instancenorm -> sigmoid
 * -> maxpool ceil / avgpool ceil exclude-pad -> gap, gmp -> concat -> flatten
 * -> linear 3 -> logsoftmax. */
static const char *const ALL_OPS =
    "{\"graph\":["
    "{\"op\":\"conv\",\"name\":\"c0\",\"inputs\":[-1],\"f\":4,\"k\":[3,3,3],\"p\":[1,1,1]},"
    "{\"op\":\"relu\",\"name\":\"r\"},"
    "{\"op\":\"conv\",\"name\":\"c1\",\"f\":4,\"k\":[3,3,3],\"p\":[2,2,2],\"d\":[2,2,2],\"g\":2,\"b\":1},"
    "{\"op\":\"add\",\"name\":\"sum\",\"inputs\":[1,2,1]},"
    "{\"op\":\"concat\",\"name\":\"cat\",\"inputs\":[3,0,-1]},"
    "{\"op\":\"pad\",\"name\":\"pad\",\"p\":[1,0,2],\"pe\":[0,1,1],\"a\":0.5},"
    "{\"op\":\"instancenorm\",\"name\":\"in\",\"a\":1e-5},"
    "{\"op\":\"sigmoid\",\"name\":\"sig\"},"
    "{\"op\":\"maxpool\",\"name\":\"mp\",\"k\":[2,2,2],\"s\":[2,2,2],\"ceil\":1},"
    "{\"op\":\"avgpool\",\"name\":\"ap\",\"k\":[3,3,3],\"s\":[2,2,2],\"p\":[1,1,1],\"ceil\":1,\"xpad\":1},"
    "{\"op\":\"gap\",\"name\":\"gap\"},"
    "{\"op\":\"gmp\",\"name\":\"gmp\",\"inputs\":[9]},"
    "{\"op\":\"concat\",\"name\":\"pooled\",\"inputs\":[10,11]},"
    "{\"op\":\"flatten\",\"name\":\"flat\"},"
    "{\"op\":\"identity\",\"name\":\"id\"},"
    "{\"op\":\"linear\",\"name\":\"fc\",\"f\":3,\"b\":1},"
    "{\"op\":\"logsoftmax\",\"name\":\"out\"}]}";

TEST(model_graph_all_ops_vs_reference)
{
    int in[4] = {1, 9, 8, 7};
    check_model(ALL_OPS, in, 2, 3, NFV_HEAD_SOFTMAX, 0, -1);
    check_model(ALL_OPS, in, 2, 3, NFV_HEAD_SOFTMAX, 1, -1);
    check_model(ALL_OPS, in, 1, 3, NFV_HEAD_SOFTMAX, 0, 4); /* the concat, fed by the input itself */
    nfv_model *m = NULL;
    if (CHECK_OK(nfv_model_create_from_spec(test_ctx(), ALL_OPS, in, 3, NULL, NFV_HEAD_SOFTMAX, 1, &m))) {
        CHECK(m->is_graph && m->layers[1].consumers == 3, "node r feeds 3 nodes (got %d)", m->layers[1].consumers);
        CHECK(m->layers[4].out_shape[0] == 9 && m->layers[5].out_shape[1] == 10 && m->layers[5].out_shape[3] == 10,
              "concat 4+4+1 channels, pad (1,0)/(0,1)/(2,1) gives 9x10x9x10: %dx%dx%dx%d", m->layers[5].out_shape[0],
              m->layers[5].out_shape[1], m->layers[5].out_shape[2], m->layers[5].out_shape[3]);
        nfv_model_free(m);
    }
}

/* Loss sum(g * output) of the reference in training mode. */
static double ref_loss(const nfv_model *m, const ref_params *rp, const double *x, int n, const float *g, double *y)
{
    ref_model_forward(m, rp, x, n, 1, -1, y);
    double s = 0;
    for (int i = 0; i < n * nfv_model_outputs(m); i++) s += g[i] * y[i];
    return s;
}

/* Parameter gradients of a training step (BN batch statistics, residual
 * adds, concatenation) against central differences of the reference. */
static void check_param_grads(const char *spec, const int in[4], int n)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, spec, in, 2, NULL, NFV_HEAD_SOFTMAX, 3, &m))) return;
    randomize_bn(ctx, m, 5);
    size_t xn = (size_t)n * nfv_shape_numel(4, in);
    float *xf = test_random(xn, 8, -1, 1);
    int xs[5] = {n, in[0], in[1], in[2], in[3]}, gs[2] = {n, nfv_model_outputs(m)};
    float *gf = test_random((size_t)gs[0] * gs[1], 9, -1, 1);
    nfv_tensor x, g;
    CHECK_OK(test_tensor(&x, 5, xs, xf));
    CHECK_OK(test_tensor(&g, 2, gs, gf));
    ref_params rp;
    CHECK(ref_params_download(ctx, m, &rp), "parameters download");
    double *xd = malloc(xn * sizeof *xd), *y = malloc((size_t)gs[0] * gs[1] * sizeof *y);
    for (size_t i = 0; i < xn; i++) xd[i] = xf[i];
    if (CHECK_OK(nfv_model_forward(m, ctx, &x, -1, 1)) && CHECK_OK(nfv_model_backward(m, ctx, -1, &g, 1, NULL))) {
        for (int i = 0; i < m->layer_count; i++) {
            nfv_layer *l = &m->layers[i];
            for (int p = 0; p < l->nparams; p++) {
                float *got = test_download(&l->grad[p]);
                size_t count = l->grad[p].numel < 6 ? l->grad[p].numel : 6;
                float pick[6];
                double want[6];
                for (size_t k = 0; k < count; k++) {
                    size_t e = k * l->grad[p].numel / count;
                    /* h small: a weight moves every activation after it, and
                     * training-mode BN over a batch of 2 at 1x1x1 makes the
                     * ReLU kinks close (h = 1e-4 and 1e-5 cross some). */
                    double *w = &rp.p[i * 4 + p][e], keep = *w, h = 1e-6;
                    *w = keep + h;
                    double lp = ref_loss(m, &rp, xd, n, gf, y);
                    *w = keep - h;
                    double lm = ref_loss(m, &rp, xd, n, gf, y);
                    *w = keep;
                    want[k] = (lp - lm) / (2 * h);
                    pick[k] = got[e];
                }
                char what[160];
                snprintf(what, sizeof what, "%s: gradient of %s tensor %d", spec, l->name, p);
                /* float32 sums over a batch vs double differences: 1e-3 abs + 1e-2 rel. */
                CHECK_CLOSE(what, pick, want, count, 1e-3, 1e-2);
                free(got);
            }
        }
    }
    ref_params_free(&rp);
    free(xd), free(y), free(xf), free(gf);
    nfv_tensor_free(&x), nfv_tensor_free(&g);
    nfv_model_free(m);
}

TEST(model_graph_parameter_gradients)
{
    /* The DenseNet's concatenations are checked by input gradients in
     * model_graph_presets_vs_reference and ALL_OPS; its parameter gradients
     * would only add programs to build. */
    check_param_grads("resnet10(8)", PRESET_INPUT, 2);
}

/* Same outputs of two models on the same input, bit for bit. */
static int same_outputs(nfv_context *ctx, nfv_model *a, nfv_model *b, const int in[4])
{
    int xs[5] = {2, in[0], in[1], in[2], in[3]};
    float *xf = test_random(nfv_shape_numel(5, xs), 3, -1, 1);
    nfv_tensor x;
    int same = !test_tensor(&x, 5, xs, xf) && !nfv_model_forward(a, ctx, &x, -1, 0);
    float *ya = same ? test_download(nfv_model_activation(a, a->layer_count - 1)) : NULL;
    same = same && !nfv_model_forward(b, ctx, &x, -1, 0);
    float *yb = same ? test_download(nfv_model_activation(b, b->layer_count - 1)) : NULL;
    same = same && !memcmp(ya, yb, (size_t)2 * nfv_model_outputs(a) * sizeof(float));
    free(ya), free(yb), free(xf);
    nfv_tensor_free(&x);
    return same;
}

TEST(model_graph_model_file_round_trip)
{
    nfv_context *ctx = test_ctx();
    const int *in = PRESET_INPUT;
    const char *specs[3] = {"resnet10(8)", "densenet(4,8,1)", ALL_OPS};
    for (int k = 0; k < 3; k++) {
        nfv_model *m = NULL, *l = NULL;
        if (!CHECK_OK(nfv_model_create_from_spec(ctx, specs[k], in, 3, NULL, NFV_HEAD_SOFTMAX, 5, &m))) continue;
        randomize_bn(ctx, m, 2);
        char path[512];
        snprintf(path, sizeof path, "%s/graph%d.safetensors", test_tmpdir(), k);
        if (CHECK_OK(nfv_model_save(m, path)) && CHECK_OK(nfv_model_load(ctx, path, &l))) {
            CHECK(!strcmp(m->arch_spec, l->arch_spec), "%.20s: the graph reads back the same", specs[k]);
            CHECK(l->is_graph && l->layer_count == m->layer_count, "%.20s: a graph of %d nodes", specs[k],
                  m->layer_count);
            CHECK(same_outputs(ctx, m, l, in), "%.20s: same outputs after save + load", specs[k]);
            nfv_model_free(l);
        }
        nfv_model_free(m);
    }
    /* State-dict names: a torch module's keys. */
    nfv_model *m = NULL;
    if (CHECK_OK(nfv_model_create_from_spec(ctx, "resnet10(8)", in, 3, NULL, NFV_HEAD_SOFTMAX, 5, &m))) {
        char path[512];
        snprintf(path, sizeof path, "%s/graph_names.safetensors", test_tmpdir());
        nfv_st_file f;
        if (CHECK_OK(nfv_model_save(m, path)) && CHECK_OK(nfv_st_read(path, &f))) {
            CHECK(nfv_st_find(&f, "layer2.0.downsample.1.running_var") && nfv_st_find(&f, "fc.bias") &&
                      nfv_st_find(&f, "bn1.num_batches_tracked"),
                  "tensors under MONAI's state_dict names");
            nfv_st_free(&f);
        }
        nfv_model_free(m);
    }
}

/* tests/data/legacy-seq-v1.safetensors was written by neurofv before graph
 * models (commit 37f9b5a): `inspect --arch "conv(4,k3,p1) bn relu
 * maxpool(2) conv(6,k3,s2,p1,nobias) elu(1) gap flatten dropout(0.5)
 * linear(3)" --shape 12,10,8 --classes 3 --seed 7`; its logits for
 * x[i] = sin(0.37 i), batch 2, were recorded then. */
TEST(model_file_from_before_graphs_loads)
{
    static const double want[6] = {0.350788116, 0.131999642, -0.130837485, 0.370058566, 0.115975387, -0.144871473};
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_load(ctx, "tests/data/legacy-seq-v1.safetensors", &m))) return;
    CHECK(!m->is_graph && m->layer_count == 10, "a sequential model of 10 layers");
    int xs[5] = {2, 1, 8, 10, 12};
    size_t n = nfv_shape_numel(5, xs);
    float *xf = malloc(n * sizeof *xf);
    for (size_t i = 0; i < n; i++) xf[i] = (float)sin(0.37 * (double)i);
    nfv_tensor x;
    if (CHECK_OK(test_tensor(&x, 5, xs, xf)) && CHECK_OK(nfv_model_forward(m, ctx, &x, -1, 0))) {
        float *y = test_download(nfv_model_activation(m, m->layer_count - 1));
        CHECK_CLOSE("logits of the pre-graph model file", y, want, 6, 1e-6, 1e-5);
        free(y);
    }
    nfv_tensor_free(&x);
    free(xf);
    nfv_model_free(m);
}
