/* The ONNX reader (src/model/onnx_*.c): the node lists it makes of real
 * conformance models (Debian libonnx-testdata) and of graphs built here with
 * protobuf-c the way torch.onnx.export writes them, and one clear error, no
 * crash, for malformed files: truncations, byte flips, wrong dtypes, cycles,
 * missing inputs, huge shapes, unsupported ops.  No device needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gen/onnx.pb-c.h"
#include "neurofv/onnx.h"
#include "test.h"
#include "onnx_build.h"
#include "test_onnx.h"

/* A torch-like model: Conv (asymmetric pads) -> Relu -> residual Add ->
 * MaxPool -> x.view(x.size(0), -1) -> MatMul + Add -> Gemm; input
 * (N, 2, 6, 6, 6) with N symbolic. */
static void torch_like(mb *b)
{
    mb_init(b, 13);
    long long in[5] = {0, 2, 6, 6, 6}, w[5] = {2, 2, 3, 3, 3}, c2[1] = {2};
    mb_input(b, "input", 5, in);
    mb_tensor(b, "conv1.weight", 1, 5, w, NULL);
    mb_tensor(b, "conv1.bias", 1, 1, c2, NULL);
    Onnx__NodeProto *n = mb_node(b, "Conv", "/features/conv1/Conv", "input,conv1.weight,conv1.bias", "/features/conv1/Conv_output_0");
    long long pads[6] = {1, 1, 1, 1, 1, 2}, ones[3] = {1, 1, 1}, k3[3] = {3, 3, 3};
    mb_ints(b, n, "pads", 6, pads);
    mb_ints(b, n, "strides", 3, ones);
    mb_ints(b, n, "dilations", 3, ones);
    mb_ints(b, n, "kernel_shape", 3, k3);
    mb_int(b, n, "group", 1);
    mb_node(b, "Relu", "/features/relu/Relu", "/features/conv1/Conv_output_0", "r");
    mb_node(b, "Add", "/features/Add", "r,input", "s"); /* conv output (2, 6, 6, 7): not the input's shape */
}

/* ---- helpers ----------------------------------------------------------- */

static int one_line_error(nfv_status st, const char *path)
{
    const char *m = nfv_error_message();
    return st != NFV_OK && m[0] && !strchr(m, '\n') && strstr(m, path) != NULL;
}

static const char *kinds(const nfv_onnx_graph *g, char *buf, size_t cap)
{
    static const char *const W[NFV_LAYER_KIND_COUNT] = {
        "conv", "maxpool", "avgpool", "bn", "relu", "lrelu", "elu", "dropout", "flatten", "linear", "gap", "add",
        "concat", "pad", "gmp", "instancenorm", "sigmoid", "softmax", "logsoftmax", "identity", "reshape", "constant"};
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < g->arch.count && n < cap; i++) {
        int k = g->arch.layers[i].kind;
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? " " : "", k >= 0 && k < NFV_LAYER_KIND_COUNT ? W[k] : "?");
    }
    return buf;
}

/* ---- conformance models ------------------------------------------------ */

TEST(onnx_read_conv3d_dilated)
{
    if (!onnx_testdata_present("onnx_read_conv3d_dilated")) return;
    nfv_onnx_graph g;
    if (!CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/pytorch-converted/test_Conv3d_dilated", &g))) return;
    CHECK(g.arch.count == 1, "1 node, got %d", g.arch.count);
    const nfv_layer_spec *l = &g.arch.layers[0];
    CHECK(l->kind == NFV_LAYER_CONV3D && l->features == 4 && l->bias == 1, "conv 4 with bias");
    for (int d = 0; d < 3; d++)
        CHECK(l->kernel[d] == 2 && l->dilation[d] == 2 && l->stride[d] == 1 && l->padding[d] == 0, "k2 d2 s1 p0");
    CHECK(l->n_inputs == 1 && l->inputs[0] == NFV_INPUT_NODE, "reads the input");
    CHECK(!strcmp(l->tensor_names[0], "1") && !strcmp(l->tensor_names[1], "2"), "tensor names %s %s",
          l->tensor_names[0], l->tensor_names[1]);
    const nfv_onnx_tensor *w = nfv_onnx_find_tensor(&g, "1");
    CHECK(w && w->ndim == 5 && w->shape[0] == 4 && w->shape[1] == 3 && w->shape[4] == 2 && w->numel == 96, "weight");
    CHECK(g.input_ndim == 4 && g.input_shape[0] == 3 && g.input_shape[1] == 5 && g.input_shape[3] == 5, "input");
    CHECK(g.batch == 2 && g.onnx_input_rank == 5 && g.opset == 6, "batch %lld opset %lld", g.batch, g.opset);
    CHECK(!strcmp(g.producer, "pytorch 0.3") && !strcmp(g.input_name, "0") && !strcmp(g.output_name, "3"),
          "producer \"%s\" input %s output %s", g.producer, g.input_name, g.output_name);
    nfv_onnx_free(&g);
}

TEST(onnx_read_batchnorm_pool)
{
    if (!onnx_testdata_present("onnx_read_batchnorm_pool")) return;
    nfv_onnx_graph g;
    if (CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/pytorch-converted/test_BatchNorm3d_eval", &g))) {
        const nfv_layer_spec *l = &g.arch.layers[0];
        CHECK(g.arch.count == 1 && l->kind == NFV_LAYER_BATCHNORM3D && l->alpha > 0.9e-5f && l->alpha < 1.1e-5f,
              "bn eps 1e-5");
        for (int j = 0; j < 4; j++) {
            char want[4];
            snprintf(want, sizeof want, "%d", j + 1);
            CHECK(!strcmp(l->tensor_names[j], want), "tensor %d is %s", j, l->tensor_names[j]);
        }
        nfv_onnx_free(&g);
    }
    if (CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/node/test_maxpool_3d_default", &g))) {
        const nfv_layer_spec *l = &g.arch.layers[0];
        CHECK(g.arch.count == 1 && l->kind == NFV_LAYER_MAXPOOL3D && l->kernel[0] == 2 && l->stride[2] == 1 &&
                  l->padding[1] == 0 && !l->ceil_mode, "maxpool k2 s1");
        nfv_onnx_free(&g);
    }
    if (CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/pytorch-converted/test_AvgPool2d", &g))) {
        const nfv_layer_spec *l = &g.arch.layers[0];
        CHECK(l->kind == NFV_LAYER_AVGPOOL3D && l->kernel[0] == 1 && l->stride[0] == 1 && l->kernel[1] == l->kernel[2],
              "2-D pool: unit depth");
        CHECK(g.input_ndim == 4 && g.input_shape[1] == 1 && g.onnx_input_rank == 4, "(C, 1, H, W)");
        nfv_onnx_free(&g);
    }
}

TEST(onnx_read_dense_and_pad)
{
    if (!onnx_testdata_present("onnx_read_dense_and_pad")) return;
    nfv_onnx_graph g;
    char buf[256];
    if (CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/pytorch-converted/test_Linear", &g))) {
        const nfv_onnx_tensor *w = nfv_onnx_find_tensor(&g, g.arch.layers[0].tensor_names[0]);
        CHECK(g.arch.count == 1 && g.arch.layers[0].kind == NFV_LAYER_LINEAR && g.arch.layers[0].features == 8 &&
                  g.arch.layers[0].bias, "linear 8");
        CHECK(w && w->ndim == 2 && w->shape[0] == 8 && w->shape[1] == 10, "weight (8, 10)");
        CHECK(g.input_ndim == 1 && g.input_shape[0] == 10, "input (10)");
        nfv_onnx_free(&g);
    }
    /* C of shape (M, N) = (batch, out): Linear, a constant of 3 samples, Add. */
    if (CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/node/test_gemm_default_matrix_bias", &g))) {
        CHECK(!strcmp(kinds(&g, buf, sizeof buf), "linear constant add"), "got %s", buf);
        const nfv_layer_spec *k = &g.arch.layers[1];
        CHECK(k->features == 3 && k->reshape_ndim == 1 && k->reshape[0] == 4 && !strcmp(k->tensor_names[0], "c"),
              "constant (3, 4) \"c\"");
        CHECK(g.arch.layers[2].n_inputs == 2 && g.arch.layers[2].inputs[0] == 0 && g.arch.layers[2].inputs[1] == 1,
              "add of nodes 0 and 1");
        /* transB = 0: the weight is B transposed. */
        const nfv_onnx_tensor *w = nfv_onnx_find_tensor(&g, "b");
        CHECK(w && w->shape[0] == 4 && w->shape[1] == 6, "weight (4, 6)");
        nfv_onnx_free(&g);
    }
    if (CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/pytorch-converted/test_ZeroPad2d", &g))) {
        const nfv_layer_spec *l = &g.arch.layers[0];
        CHECK(l->kind == NFV_LAYER_PAD && l->padding[0] == 0 && l->padding[1] == 3 && l->padding[2] == 1 &&
                  l->pad_end[0] == 0 && l->pad_end[1] == 4 && l->pad_end[2] == 2 && l->alpha == 0.0f,
              "pad (0,3,1) / (0,4,2)");
        nfv_onnx_free(&g);
    }
    if (CHECK_OK(onnx_read_dir(ONNX_TESTDATA "/node/test_add_bcast", &g))) {
        CHECK(!strcmp(kinds(&g, buf, sizeof buf), "constant add"), "got %s", buf);
        const nfv_layer_spec *k = &g.arch.layers[0];
        CHECK(k->features == 1 && k->reshape_ndim == 4 && k->reshape[0] == 4 && k->reshape[3] == 5, "(1, 4, 1, 1, 5)");
        nfv_onnx_free(&g);
    }
}

TEST(onnx_read_tensor_files)
{
    if (!onnx_testdata_present("onnx_read_tensor_files")) return;
    nfv_onnx_tensor t;
    if (CHECK_OK(nfv_onnx_read_tensor(ONNX_TESTDATA "/pytorch-converted/test_Conv3d_dilated/test_data_set_0/input_0.pb", &t))) {
        CHECK(t.ndim == 5 && t.shape[0] == 2 && t.shape[1] == 3 && t.numel == 750 && t.data, "(2, 3, 5, 5, 5)");
        nfv_onnx_tensor_free(&t);
    }
    if (CHECK_OK(nfv_onnx_read_tensor(ONNX_TESTDATA "/node/test_reshape_zero_dim/test_data_set_0/input_1.pb", &t))) {
        CHECK(t.ndim == 1 && t.numel == 4 && !strcmp(t.name, "shape"), "int64 shape tensor");
        nfv_onnx_tensor_free(&t);
    }
    const char *p = ONNX_TESTDATA "/node/test_gemm_default_matrix_bias/model.onnx"; /* not a TensorProto */
    nfv_status st = nfv_onnx_read_tensor(p, &t);
    if (st == NFV_OK) nfv_onnx_tensor_free(&t);
    else CHECK(one_line_error(st, p), "model as tensor: %s", nfv_error_message());
}

/* ---- torch-style graphs ------------------------------------------------ */

TEST(onnx_read_torch_style)
{
    mb b;
    torch_like(&b);
    /* The residual Add has mismatched shapes: one clear error. */
    const char *p = mb_write(&b, "bad_add.onnx");
    nfv_onnx_graph g;
    nfv_status st = nfv_onnx_read(p, NULL, &g);
    CHECK(one_line_error(st, p) && strstr(nfv_error_message(), "node \"/features/Add\" (op Add)"), "add: %s",
          nfv_error_message());
    mb_free(&b);

    torch_like(&b);
    b.g.n_node = 2; /* up to the Relu */
    Onnx__NodeProto *n = mb_node(&b, "MaxPool", "/features/pool/MaxPool", "r", "m");
    long long k2[3] = {2, 2, 2}, neg1[1] = {-1}, zero[1] = {0}, ax0[1] = {0}, wl[2] = {54, 5}, bl[1] = {5},
              wg[2] = {3, 5}, bg[1] = {3};
    mb_ints(&b, n, "kernel_shape", 3, k2);
    mb_ints(&b, n, "strides", 3, k2);
    mb_node(&b, "Shape", "/Shape", "m", "shape");
    mb_tensor(&b, "idx0", 7, 0, NULL, zero);
    mb_node(&b, "Gather", "/Gather", "shape,idx0", "n");
    mb_tensor(&b, "axes0", 7, 1, (long long[]){1}, ax0);
    mb_node(&b, "Unsqueeze", "/Unsqueeze", "n,axes0", "n1");
    mb_tensor(&b, "minus1", 7, 1, (long long[]){1}, neg1);
    n = mb_node(&b, "Concat", "/Concat", "n1,minus1", "target");
    mb_int(&b, n, "axis", 0);
    mb_node(&b, "Reshape", "/Reshape", "m,target", "flat");
    mb_tensor(&b, "fc1.weight_t", 1, 2, wl, NULL);
    mb_tensor(&b, "fc1.bias", 1, 1, bl, NULL);
    mb_node(&b, "MatMul", "/fc1/MatMul", "flat,fc1.weight_t", "mm");
    mb_node(&b, "Add", "/fc1/Add", "mm,fc1.bias", "fc1");
    mb_tensor(&b, "fc2.weight", 1, 2, wg, NULL);
    mb_tensor(&b, "fc2.bias", 1, 1, bg, NULL);
    n = mb_node(&b, "Gemm", "/fc2/Gemm", "fc1,fc2.weight,fc2.bias", "logits");
    mb_int(&b, n, "transB", 1);
    mb_output(&b, "logits");
    /* Put the nodes out of order: the reader sorts them. */
    Onnx__NodeProto *t = b.nodes[0];
    b.nodes[0] = b.nodes[b.g.n_node - 1], b.nodes[b.g.n_node - 1] = t;
    p = mb_write(&b, "torch_like.onnx");
    if (CHECK_OK(nfv_onnx_read(p, NULL, &g))) {
        char buf[256];
        CHECK(!strcmp(kinds(&g, buf, sizeof buf), "pad conv relu maxpool reshape linear linear"), "got %s", buf);
        const char *names[] = {"features.conv1.pad", "features.conv1", "features.relu", "features.pool", "flat",
                               "fc1", "fc2"};
        for (int i = 0; i < g.arch.count && i < 7; i++)
            CHECK(!strcmp(g.arch.layers[i].name, names[i]), "node %d is \"%s\", want \"%s\"", i,
                  g.arch.layers[i].name, names[i]);
        const nfv_layer_spec *pad = &g.arch.layers[0], *conv = &g.arch.layers[1], *r = &g.arch.layers[4];
        CHECK(pad->pad_end[2] == 1 && pad->padding[2] == 0 && pad->pad_end[0] == 0 && conv->padding[2] == 1,
              "asymmetric pad: 1 more at the end of w in the Pad node");
        CHECK(conv->n_inputs == 1 && conv->inputs[0] == 0, "conv reads the pad");
        CHECK(r->reshape_ndim == 1 && r->reshape[0] == 54, "reshape to (54), got %d dims %d", r->reshape_ndim,
              r->reshape[0]);
        CHECK(g.arch.layers[5].bias && !strcmp(g.arch.layers[5].tensor_names[1], "fc1.bias"), "MatMul + Add: bias");
        const nfv_onnx_tensor *w = nfv_onnx_find_tensor(&g, "fc1.weight_t");
        CHECK(w && w->shape[0] == 5 && w->shape[1] == 54 && w->data[1] == 0.01f * 5, "MatMul weight transposed");
        CHECK(g.batch == 0 && !strcmp(g.producer, "pytorch 1.13.1") && g.opset == 13, "symbolic batch");
        nfv_onnx_free(&g);
    }
    mb_free(&b);
}

/* ---- malformed files --------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = malloc(1 << 20);
    *n = b ? fread(b, 1, 1 << 20, f) : 0;
    fclose(f);
    return b;
}

static int write_bytes(const char *path, const unsigned char *b, size_t n)
{
    remove(path); /* a new file: rewriting one in place makes ext4 flush it each time */
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(b, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* Every prefix of a real model, and seeded random byte flips: each read
 * succeeds or gives one line naming the file; nothing crashes. */
TEST(onnx_read_truncated_and_flipped)
{
    if (!onnx_testdata_present("onnx_read_truncated_and_flipped")) return;
    const char *src[] = {ONNX_TESTDATA "/pytorch-converted/test_Conv3d_dilated/model.onnx",
                         ONNX_TESTDATA "/pytorch-converted/test_BatchNorm3d_eval/model.onnx"};
    char p[600];
    snprintf(p, sizeof p, "%s/cut.onnx", test_tmpdir());
    int bad = 0, failed = 0, runs = 0;
    for (int s = 0; s < 2; s++) {
        size_t n = 0;
        unsigned char *b = slurp(src[s], &n);
        if (!CHECK(b && n > 100, "read %s", src[s])) continue;
        for (size_t cut = 0; cut < n; cut++) {
            nfv_onnx_graph g;
            write_bytes(p, b, cut);
            nfv_status st = nfv_onnx_read(p, NULL, &g);
            runs++;
            if (st == NFV_OK) nfv_onnx_free(&g);
            else if (!one_line_error(st, p) && bad++ < 3) printf("cut %zu: \"%s\"\n", cut, nfv_error_message());
            failed += st != NFV_OK;
        }
        unsigned long long rs = 12345 + (unsigned)s;
        unsigned char *c = malloc(n);
        for (int k = 0; k < 300; k++) {
            memcpy(c, b, n);
            int flips = 1 + (int)(test_uniform(&rs) * 4);
            for (int f = 0; f < flips; f++) c[(size_t)(test_uniform(&rs) * (double)n)] ^= (unsigned char)(1 + test_uniform(&rs) * 255);
            write_bytes(p, c, n);
            nfv_onnx_graph g;
            nfv_status st = nfv_onnx_read(p, NULL, &g);
            runs++;
            if (st == NFV_OK) nfv_onnx_free(&g);
            else if (!one_line_error(st, p) && bad++ < 3) printf("flip %d: \"%s\"\n", k, nfv_error_message());
            failed += st != NFV_OK;
        }
        free(c);
        free(b);
    }
    CHECK(bad == 0, "%d of %d malformed reads gave no one-line error naming the file", bad, runs);
    CHECK(failed > runs / 2, "most malformed files fail (%d of %d)", failed, runs);
}

/* One crafted defect per model: the read fails with a message holding want. */
static void expect_error(mb *b, const char *name, const char *want)
{
    const char *p = mb_write(b, name);
    nfv_onnx_graph g;
    nfv_status st = nfv_onnx_read(p, NULL, &g);
    if (st == NFV_OK) nfv_onnx_free(&g);
    CHECK(one_line_error(st, p) && strstr(nfv_error_message(), want), "%s: want \"%s\" in: %s", name, want,
          st == NFV_OK ? "(read fine)" : nfv_error_message());
    mb_free(b);
}

/* A model input -> Relu "r" -> Relu "y" model to edit. */
static void simple(mb *b)
{
    mb_init(b, 13);
    long long in[5] = {1, 1, 4, 4, 4};
    mb_input(b, "x", 5, in);
    mb_node(b, "Relu", "/relu1/Relu", "x", "r");
    mb_node(b, "Relu", "/relu2/Relu", "r", "y");
    mb_output(b, "y");
}

TEST(onnx_read_bad_models)
{
    mb b;
    simple(&b);
    const char *p = mb_write(&b, "simple.onnx");
    nfv_onnx_graph g;
    if (CHECK_OK(nfv_onnx_read(p, NULL, &g))) {
        CHECK(g.arch.count == 2 && !strcmp(g.arch.layers[0].name, "relu1") && !strcmp(g.arch.layers[1].name, "relu2"),
              "names relu1 relu2");
        nfv_onnx_free(&g);
    }
    mb_free(&b);

    simple(&b);
    mb_node(&b, "Foo", "/layer1/Foo", "y", "z");
    expect_error(&b, "unsupported_op.onnx", "node \"/layer1/Foo\" (op Foo): unsupported op; supported: Add, ");

    simple(&b);
    b.nodes[0]->input[0] = "y"; /* relu1 reads relu2's output: a cycle */
    expect_error(&b, "cycle.onnx", "cycle");

    simple(&b);
    b.nodes[1]->input[0] = "nowhere";
    expect_error(&b, "missing_input.onnx", "input \"nowhere\" is not produced by any node");

    simple(&b);
    long long w[5] = {1, 1, 1, 1, 1};
    mb_tensor(&b, "w", 11, 5, w, NULL); /* DOUBLE */
    mb_node(&b, "Conv", "/conv/Conv", "y,w", "z");
    expect_error(&b, "double.onnx", "dtype DOUBLE; supported: FLOAT (float32)");

    simple(&b);
    long long huge[2] = {1000000, 1000000};
    mb_tensor(&b, "huge", 1, 2, huge, NULL);
    expect_error(&b, "huge.onnx", "2^31 elements");

    simple(&b);
    long long w1[5] = {1, 1, 1, 1, 1};
    Onnx__TensorProto *t = mb_tensor(&b, "w1", 1, 5, w1, NULL);
    t->has_raw_data = 0, t->has_data_location = 1, t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    expect_error(&b, "external.onnx", "external file");

    simple(&b);
    t = mb_tensor(&b, "w2", 1, 5, w1, NULL);
    t->raw_data.len = 3; /* 3 bytes for 1 float */
    expect_error(&b, "short_data.onnx", "3 bytes of data for 1 elements");

    simple(&b);
    mb_tensor(&b, "w3", 1, 5, w1, NULL);
    Onnx__NodeProto *n = mb_node(&b, "Conv", "/conv/Conv", "y,w3", "z");
    mb_string(&b, n, "auto_pad", "SAME_UPPER");
    expect_error(&b, "auto_pad.onnx", "auto_pad SAME_UPPER is not supported");

    simple(&b);
    n = mb_node(&b, "Relu", "/relu3/Relu", "y", "z");
    mb_int(&b, n, "frobnicate", 1);
    expect_error(&b, "attr.onnx", "unsupported attribute \"frobnicate\"");

    simple(&b);
    b.inputs[0]->type->tensor_type->shape->dim[3]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    b.inputs[0]->type->tensor_type->shape->dim[3]->dim_param = "H";
    expect_error(&b, "symbolic_h.onnx", "dimension 3 is not known (symbolic \"H\")");

    simple(&b);
    mb_node(&b, "Relu", "/again/Relu", "x", "r"); /* r written twice */
    expect_error(&b, "twice.onnx", "already written");

    simple(&b);
    b.opset.version = 18;
    expect_error(&b, "opset.onnx", "opset 18");

    simple(&b);
    n = mb_node(&b, "Softmax", "/sm/Softmax", "y", "z");
    mb_int(&b, n, "axis", 2);
    expect_error(&b, "softmax_axis.onnx", "supported: the channel axis 1");
}
