/* Models: spec parsing, shapes and names, forward and input gradient against
 * the double reference (tests/ref_model.c), file round trip, corrupt files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/model.h"
#include "model_check.h"
#include "ref_model.h"
#include "test.h"

TEST(model_spec_round_trip)
{
    const char *specs[] = {
        "ref4",
        "ref4-gap",
        "notebook",
        "conv(8,k3,p1) bn relu maxpool(2) conv(16, k3, s2, p1, nobias) elu(1.0) avgpool(2,1) gap flatten dropout(0.25) "
        "linear(7,nobias) lrelu(0.01) linear(3)",
        "conv(4,k3x5x1,s1x2x1,p1x2x0) bn(0.001) maxpool(3,2,1) avgpool(2x2x1) flatten linear(2)",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        nfv_arch a, b;
        char t1[2048], t2[2048];
        if (!CHECK_OK(nfv_arch_parse(specs[i], 2, &a))) continue;
        nfv_arch_print(&a, t1, sizeof t1);
        if (CHECK_OK(nfv_arch_parse(t1, 0, &b))) {
            nfv_arch_print(&b, t2, sizeof t2);
            CHECK(!strcmp(t1, t2), "spec %zu prints back the same: \"%s\" vs \"%s\"", i, t1, t2);
            CHECK(a.count == b.count && !memcmp(a.layers, b.layers, (size_t)a.count * sizeof *a.layers),
                  "spec %zu: same layers after a round trip", i);
            nfv_arch_free(&b);
        }
        nfv_arch_free(&a);
    }
    const char *bad[] = {"conv(8,k3", "foo", "conv(0,k3)", "conv(8,q3)", "maxpool()", "dropout(1.5)", "linear(classes)",
                         "relu(3)", "", "conv(8) ) relu"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nfv_arch a;
        nfv_status s = nfv_arch_parse(bad[i], 0, &a);
        CHECK(s == NFV_ERR_INVALID_ARG, "bad spec \"%s\" rejected (%s)", bad[i], nfv_error_message());
        if (!s) nfv_arch_free(&a);
    }
}

TEST(model_presets_shapes_and_names)
{
    nfv_context *ctx = test_ctx();
    int in[4];
    double vox[3];
    CHECK(nfv_arch_preset_input("ref4", in, vox) && in[1] == 91 && in[2] == 109 && in[3] == 91 && vox[0] == 2.0,
          "ref4 input 1x91x109x91 at 2 mm");
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "ref4", in, 3, NULL, NFV_HEAD_SOFTMAX, 1, &m))) return;
    CHECK(m->layer_count == 19, "ref4 has 19 modules, got %d", m->layer_count);
    const nfv_layer *fc = &m->layers[m->layer_count - 1];
    CHECK(fc->in_shape[0] == 64 * 5 * 6 * 5 && fc->out_shape[0] == 3, "ref4 Linear %d -> %d (want 9600 -> 3)",
          fc->in_shape[0], fc->out_shape[0]);
    CHECK(!strcmp(m->layers[0].name, "conv1") && !strcmp(m->layers[1].name, "bn1") && !strcmp(m->layers[2].name, "relu1") &&
              !strcmp(m->layers[3].name, "pool1") && !strcmp(m->layers[12].name, "conv4") && !strcmp(fc->name, "fc"),
          "layer names conv1 bn1 relu1 pool1 ... conv4 ... fc");
    CHECK(nfv_model_find_layer(m, "conv3") == 8 && nfv_model_find_layer(m, "7") == 7 &&
              nfv_model_find_layer(m, "logits") == 18,
          "find_layer by name, index and 'logits'");
    CHECK(nfv_model_find_layer(m, "conv9") == -1 && strstr(nfv_error_message(), "conv9"), "missing layer named: %s",
          nfv_error_message());
    /* Parameters: convs 8*27+8, 16*8*27+16, 32*16*27+32, 64*32*27+64; BNs 2*(8+16+32+64); fc 9600*3+3. */
    long long want = 224 + 3472 + 13856 + 55360 + 240 + 28803;
    CHECK(nfv_model_param_count(m) == want, "ref4 parameters %lld, want %lld", nfv_model_param_count(m), want);
    nfv_model_free(m);
    m = NULL;
    /* ref4-gap: the same convs and BNs; conv4's map 64x11x13x11 averaged to 64, then Linear 64 -> 3. */
    CHECK(nfv_arch_preset_input("ref4-gap", in, vox) && in[1] == 91 && in[2] == 109 && in[3] == 91 && vox[0] == 2.0,
          "ref4-gap input 1x91x109x91 at 2 mm");
    if (CHECK_OK(nfv_model_create_from_spec(ctx, "ref4-gap", in, 3, NULL, NFV_HEAD_SOFTMAX, 1, &m))) {
        const nfv_layer *last = &m->layers[m->layer_count - 1];
        int conv4 = nfv_model_find_layer(m, "conv4");
        CHECK(conv4 >= 0 && m->layers[conv4].out_shape[1] == 11 && m->layers[conv4].out_shape[2] == 13,
              "ref4-gap conv4 at 11x13x11");
        CHECK(last->in_shape[0] == 64 && last->out_shape[0] == 3, "ref4-gap Linear %d -> %d (want 64 -> 3)",
              last->in_shape[0], last->out_shape[0]);
        long long gap_want = 224 + 3472 + 13856 + 55360 + 240 + 64 * 3 + 3;
        CHECK(nfv_model_param_count(m) == gap_want, "ref4-gap parameters %lld, want %lld", nfv_model_param_count(m),
              gap_want);
        nfv_model_free(m);
    }

    CHECK(nfv_arch_preset_input("notebook", in, vox), "notebook preset input");
    if (CHECK_OK(nfv_model_create_from_spec(ctx, "notebook", in, 2, NULL, NFV_HEAD_BINARY, 1, &m))) {
        int fc1 = nfv_model_find_layer(m, "fc1");
        CHECK(fc1 >= 0 && m->layers[fc1].in_shape[0] == 6144 && m->layers[fc1].out_shape[0] == 100,
              "notebook Linear 6144 -> 100");
        CHECK(m->layers[m->layer_count - 1].out_shape[0] == 1 && m->head == NFV_HEAD_BINARY, "notebook ends in 1 logit");
        nfv_model_free(m);
    }
    int small[4] = {1, 8, 8, 8};
    CHECK(nfv_model_create_from_spec(ctx, "flatten conv(4)", small, 2, NULL, NFV_HEAD_SOFTMAX, 1, &m) ==
              NFV_ERR_INVALID_ARG,
          "conv after flatten rejected");
    CHECK(nfv_model_create_from_spec(ctx, "conv(4,k9) flatten linear(2)", small, 2, NULL, NFV_HEAD_SOFTMAX, 1, &m) ==
              NFV_ERR_INVALID_ARG,
          "kernel larger than the input rejected: %s", nfv_error_message());
}

TEST(model_forward_backward_vs_reference)
{
    int a[4] = {1, 7, 9, 11};
    const char *mixed = "conv(3,k3,p1) bn relu maxpool(2) conv(4,k3,s2,p1,nobias) elu(1) avgpool(2,1) flatten "
                        "dropout(0.3) linear(5) lrelu(0.1) linear(3)";
    check_model(mixed, a, 3, 3, NFV_HEAD_SOFTMAX, 0, -1);   /* eval, whole model, batch 3 */
    check_model(mixed, a, 1, 3, NFV_HEAD_SOFTMAX, 0, 4);    /* eval, to conv2: visualization of a unit */
    int b[4] = {3, 5, 6, 7};
    const char *bn_train = "conv(8,k3,p1) bn lrelu(0.2) avgpool(2) conv(2,k1) gap flatten linear(1)";
    check_model(bn_train, b, 3, 2, NFV_HEAD_BINARY, 1, -1); /* training-mode BN, 3 channels, batch 3 */
}

/* Every tensor of two models equal bit for bit. */
static int same_tensors(nfv_context *ctx, const nfv_model *a, const nfv_model *b)
{
    if (a->layer_count != b->layer_count) return 0;
    int same = 1;
    for (int i = 0; i < a->layer_count; i++) {
        const nfv_layer *la = &a->layers[i], *lb = &b->layers[i];
        const nfv_tensor *ta[4] = {&la->param[0], &la->param[1], &la->running_mean, &la->running_var};
        const nfv_tensor *tb[4] = {&lb->param[0], &lb->param[1], &lb->running_mean, &lb->running_var};
        for (int j = 0; j < 4; j++) {
            if (!ta[j]->buf && !tb[j]->buf) continue;
            if (!ta[j]->buf || !tb[j]->buf || ta[j]->numel != tb[j]->numel) return 0;
            float *x = malloc(ta[j]->numel * 4), *y = malloc(ta[j]->numel * 4);
            nfv_tensor_download(ctx, ta[j], x);
            nfv_tensor_download(ctx, tb[j], y);
            same &= !memcmp(x, y, ta[j]->numel * 4);
            free(x), free(y);
        }
        same &= la->num_batches_tracked == lb->num_batches_tracked;
    }
    return same;
}

TEST(model_file_round_trip)
{
    nfv_context *ctx = test_ctx();
    int in[4] = {1, 9, 8, 7};
    const char *names[3] = {"cube", "sphere", "a \"quoted\", name"};
    nfv_model *m = NULL, *l = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(4,k3,p1) bn elu(0.5) maxpool(2) flatten linear(3,nobias)", in, 3,
                                             names, NFV_HEAD_SOFTMAX, 3, &m)))
        return;
    randomize_bn(ctx, m, 4);
    m->layers[1].num_batches_tracked = 42;
    m->voxel_mm[0] = 1.5, m->voxel_mm[1] = 2, m->voxel_mm[2] = 2.5;
    m->affine[0][3] = -90.25, m->affine[1][3] = 126.5, m->affine[2][1] = 0.125;
    m->norm = NFV_NORM_MINMAX;
    char path[512];
    snprintf(path, sizeof path, "%s/round.safetensors", test_tmpdir());
    if (CHECK_OK(nfv_model_save(m, path)) && CHECK_OK(nfv_model_load(ctx, path, &l))) {
        CHECK(same_tensors(ctx, m, l), "every tensor identical after save + load");
        CHECK(!strcmp(m->arch_spec, l->arch_spec), "arch %s vs %s", m->arch_spec, l->arch_spec);
        CHECK(!memcmp(m->input_shape, l->input_shape, sizeof m->input_shape), "input shape");
        CHECK(!memcmp(m->voxel_mm, l->voxel_mm, sizeof m->voxel_mm) && !memcmp(m->affine, l->affine, sizeof m->affine),
              "voxel size and affine exact");
        CHECK(l->norm == NFV_NORM_MINMAX && l->head == NFV_HEAD_SOFTMAX, "norm and head");
        int names_ok = l->class_count == 3;
        for (int i = 0; names_ok && i < 3; i++) names_ok = !strcmp(l->class_names[i], names[i]);
        CHECK(names_ok, "class names (with quotes and commas) kept");
        nfv_model_free(l);
    }
    nfv_model_free(m);
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static void expect_rejected(const char *path, nfv_status want, const char *what, const char *needle)
{
    nfv_model *m = NULL;
    nfv_status s = nfv_model_load(test_ctx(), path, &m);
    CHECK(s == want && m == NULL, "%s: rejected with %s (got %s: %s)", what, nfv_status_name(want), nfv_status_name(s),
          nfv_error_message());
    CHECK(strstr(nfv_error_message(), needle) != NULL, "%s: message mentions \"%s\": %s", what, needle,
          nfv_error_message());
    nfv_model_free(m);
}

TEST(model_file_corrupt_rejected)
{
    nfv_context *ctx = test_ctx();
    int in[4] = {1, 6, 6, 6};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k3) bn relu flatten linear(2)", in, 2, NULL, NFV_HEAD_SOFTMAX,
                                             1, &m)))
        return;
    char good[512], p[512];
    snprintf(good, sizeof good, "%s/good.safetensors", test_tmpdir());
    if (!CHECK_OK(nfv_model_save(m, good))) return;
    size_t n = 0;
    unsigned char *b = read_bytes(good, &n);
    if (!CHECK(b && n > 64, "read back the good file")) return;

    snprintf(p, sizeof p, "%s/truncated.safetensors", test_tmpdir());
    write_bytes(p, b, n - 10);
    expect_rejected(p, NFV_ERR_FORMAT, "truncated data", "truncated.safetensors");
    write_bytes(p, b, 5);
    expect_rejected(p, NFV_ERR_FORMAT, "5-byte file", "8-byte");

    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    c[5] = 0x7f; /* header length ~ 2^47 */
    snprintf(p, sizeof p, "%s/hlen.safetensors", test_tmpdir());
    write_bytes(p, c, n);
    expect_rejected(p, NFV_ERR_FORMAT, "header length beyond the file", "header length");

    memcpy(c, b, n);
    char *dt = memmem(c, n, "\"F32\"", 5);
    if (dt) memcpy(dt, "\"Q32\"", 5);
    snprintf(p, sizeof p, "%s/dtype.safetensors", test_tmpdir());
    write_bytes(p, c, n);
    expect_rejected(p, NFV_ERR_FORMAT, "unknown dtype", "Q32");

    memcpy(c, b, n);
    c[9] = '#'; /* breaks the JSON */
    snprintf(p, sizeof p, "%s/json.safetensors", test_tmpdir());
    write_bytes(p, c, n);
    expect_rejected(p, NFV_ERR_FORMAT, "broken JSON", "JSON");
    free(c);

    /* A well-formed file whose tensor has the wrong shape for its architecture. */
    nfv_st_file f;
    if (CHECK_OK(nfv_st_read(good, &f))) {
        nfv_st_writer w;
        nfv_st_writer_init(&w);
        for (int i = 0; i < f.meta_count; i++) nfv_st_writer_meta(&w, f.meta_keys[i], f.meta_values[i]);
        for (int i = 0; i < f.count; i++) {
            const nfv_st_tensor *t = &f.tensors[i];
            long long sh[8];
            memcpy(sh, t->shape, sizeof sh);
            if (!strcmp(t->name, "0.weight")) {
                sh[0] = 1, sh[1] = 2; /* (2,1,3,3,3) -> (1,2,3,3,3): same bytes, wrong shape */
            }
            nfv_st_writer_add(&w, t->name, t->dtype, t->ndim, sh, t->data);
        }
        snprintf(p, sizeof p, "%s/shape.safetensors", test_tmpdir());
        CHECK_OK(nfv_st_writer_write(&w, p));
        expect_rejected(p, NFV_ERR_FORMAT, "wrong tensor shape", "0.weight");
        for (int i = 0; i < w.count; i++)
            if (!strcmp(w.tensors[i].name, "0.weight")) w.tensors[i].shape[0] = 2, w.tensors[i].shape[1] = 1;
        float extra = 1;
        long long one = 1;
        nfv_st_writer_add(&w, "9.weight", NFV_ST_F32, 1, &one, &extra);
        snprintf(p, sizeof p, "%s/extra.safetensors", test_tmpdir());
        CHECK_OK(nfv_st_writer_write(&w, p));
        expect_rejected(p, NFV_ERR_FORMAT, "tensor from another architecture", "9.weight");
        nfv_st_writer_free(&w);
        nfv_st_free(&f);
    }
    snprintf(p, sizeof p, "%s/none.safetensors", test_tmpdir());
    expect_rejected(p, NFV_ERR_IO, "missing file", "none.safetensors");
    free(b);
    nfv_model_free(m);
}

/* 300 files with random bytes of the header changed or the file cut at a
 * random length: every load returns (an error, or success when the change
 * was harmless, e.g. in the padding) and never reads out of bounds (run
 * under `make asan`). */
TEST(model_file_mutations_never_crash)
{
    nfv_context *ctx = test_ctx();
    int in[4] = {1, 5, 5, 5};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k3) bn relu flatten linear(2)", in, 2, NULL, NFV_HEAD_SOFTMAX,
                                             1, &m)))
        return;
    char good[512], p[512];
    snprintf(good, sizeof good, "%s/fuzz-good.safetensors", test_tmpdir());
    snprintf(p, sizeof p, "%s/fuzz.safetensors", test_tmpdir());
    if (!CHECK_OK(nfv_model_save(m, good))) return;
    nfv_model_free(m);
    size_t n = 0;
    unsigned char *b = read_bytes(good, &n);
    if (!CHECK(b && n > 16, "read back")) return;
    size_t hlen = b[0] | (size_t)b[1] << 8;
    unsigned char *c = malloc(n);
    unsigned long long st = 99;
    int errors = 0, loads = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(c, b, n);
        size_t len = n;
        if (it % 3 == 2) {
            len = (size_t)(test_uniform(&st) * (double)n);
        } else {
            int flips = 1 + it % 4;
            for (int k = 0; k < flips; k++) {
                size_t at = (size_t)(test_uniform(&st) * (double)(8 + hlen));
                c[at] = (unsigned char)(test_uniform(&st) * 256);
            }
        }
        write_bytes(p, c, len);
        nfv_model *l = NULL;
        nfv_status s = nfv_model_load(ctx, p, &l);
        if (s) {
            errors++;
            if (!CHECK(l == NULL && nfv_error_message()[0], "iteration %d: error without message", it)) break;
        } else {
            loads++;
        }
        nfv_model_free(l);
    }
    CHECK(errors > 150, "most mutations rejected (%d rejected, %d loaded)", errors, loads);
    free(c);
    free(b);
}

/* `neurofv inspect --arch ref4`: every layer listed with its output shape; a
 * broken spec fails with one line naming the word. */
TEST(model_inspect_command)
{
    char out[600], cmd[1200];
    snprintf(out, sizeof out, "%s/inspect.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s inspect --arch ref4 --classes 3", test_bin());
    if (!CHECK(test_run(cmd, out) == 0, "inspect ref4 exit 0")) return;
    FILE *f = fopen(out, "r");
    char line[512];
    int conv4 = 0, fc = 0, total = 0;
    while (f && fgets(line, sizeof line, f)) {
        conv4 |= strstr(line, "conv4") && strstr(line, "64x11x13x11") && strstr(line, "55360");
        fc |= strstr(line, " fc ") && strstr(line, "linear(3)") && strstr(line, "28803");
        total |= strstr(line, "101955 parameters") != NULL;
    }
    if (f) fclose(f);
    CHECK(conv4 && fc && total, "inspect lists conv4 64x11x13x11 (55360 params), fc linear(3), 101955 in total");
    snprintf(cmd, sizeof cmd, "%s inspect --arch 'conv(8,k3) bogus(2)'", test_bin());
    CHECK(test_run(cmd, out) == 1, "a bad spec exits 1");
    f = fopen(out, "r");
    int named = 0;
    while (f && fgets(line, sizeof line, f)) named |= strstr(line, "bogus") != NULL;
    if (f) fclose(f);
    CHECK(named, "the error names the bad word");
}
