/* Bad input, one clear line each, nothing left behind: model files (made by
 * cutting and editing the fixture model's bytes), then the targets and
 * options of `neurofv visualize`, `compare` and `inspect`.  Harness and
 * fixture in tests/test_bad_input.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "neurofv/model.h"
#include "test.h"
#include "test_bad_input.h"

/* The fixture model as header JSON + data section. */
typedef struct st_bytes {
    char *json;           /* NUL-terminated header */
    unsigned char *data;  /* the data section */
    size_t data_len;
} st_bytes;

static int st_split(const char *path, st_bytes *b)
{
    memset(b, 0, sizeof *b);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char len8[8];
    int ok = fread(len8, 1, 8, f) == 8;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    b->json = ok && hlen < (1u << 20) ? calloc(1, (size_t)hlen + 1) : NULL;
    ok = b->json && fread(b->json, 1, (size_t)hlen, f) == hlen;
    size_t cap = 1 << 16;
    b->data = ok ? malloc(cap) : NULL;
    while (b->data && (ok = ok && 1)) {
        size_t got = fread(b->data + b->data_len, 1, cap - b->data_len, f);
        b->data_len += got;
        if (got == 0) break;
        if (b->data_len == cap) b->data = realloc(b->data, cap *= 2);
    }
    fclose(f);
    return ok && b->data;
}

/* Writes name with the header json (length as given in the first 8 bytes
 * unless claim != 0) and the first data_len bytes of the data. */
static const char *st_write(const char *name, const char *json, const unsigned char *data, size_t data_len,
                            uint64_t claim)
{
    static char path[8][600];
    static int next;
    char *p = path[next++ % 8];
    bi_path(p, 600, name);
    size_t jl = strlen(json);
    uint64_t hlen = claim ? claim : jl;
    unsigned char *all = malloc(8 + jl + data_len + 1);
    if (!all) return p;
    for (int i = 0; i < 8; i++) all[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(all + 8, json, jl);
    if (data_len) memcpy(all + 8 + jl, data, data_len);
    CHECK(bi_write(p, all, 8 + jl + data_len), "write %s", p);
    free(all);
    return p;
}

/* The fixture's header with `from` (which must occur) replaced by `to`. */
static const char *st_edit(const st_bytes *b, const char *name, const char *from, const char *to)
{
    const char *at = strstr(b->json, from);
    if (!CHECK(at != NULL, "%s: \"%s\" not in the fixture header %s", name, from, b->json)) return "";
    size_t n = strlen(b->json) - strlen(from) + strlen(to) + 1;
    char *json = malloc(n);
    if (!json) return "";
    snprintf(json, n, "%.*s%s%s", (int)(at - b->json), b->json, to, at + strlen(from));
    const char *p = st_write(name, json, b->data, b->data_len, 0);
    free(json);
    return p;
}

#define ARCH_META "\"arch\":\"" BI_ARCH "\""

/* Every model the loader must refuse: name and the bad file. */
static int bad_models(const st_bytes *b, const char *paths[], int cap)
{
    int n = 0;
    char p[600];
#define ADD(x) do { if (n < cap) paths[n++] = (x); } while (0)
    ADD(strdup(bi_path(p, sizeof p, "no_such_model.safetensors")));
    bi_write(bi_path(p, sizeof p, "empty.safetensors"), "", 0);
    ADD(strdup(p));
    bi_write(bi_path(p, sizeof p, "four_bytes.safetensors"), "\x10\0\0\0", 4);
    ADD(strdup(p));
    ADD(strdup(st_write("huge_header_len.safetensors", b->json, b->data, b->data_len, UINT64_MAX)));
    ADD(strdup(st_write("header_past_end.safetensors", b->json, b->data, 0, 0)));
    ADD(strdup(st_write("truncated.safetensors", b->json, b->data, b->data_len / 2, 0)));
    ADD(strdup(st_write("not_json.safetensors", "{\"a\": [1, 2", b->data, b->data_len, 0)));
    ADD(strdup(st_write("json_array.safetensors", "[1, 2, 3]", b->data, b->data_len, 0)));
    ADD(strdup(st_edit(b, "offset_out_of_range.safetensors", "\"data_offsets\":[0,", "\"data_offsets\":[99999999,")));
    ADD(strdup(st_edit(b, "offset_negative.safetensors", "\"data_offsets\":[0,", "\"data_offsets\":[-8,")));
    ADD(strdup(st_edit(b, "offset_fraction.safetensors", "\"data_offsets\":[0,", "\"data_offsets\":[0.5,")));
    ADD(strdup(st_edit(b, "unknown_dtype.safetensors", "\"dtype\":\"F32\"", "\"dtype\":\"F8_E4M3\"")));
    ADD(strdup(st_edit(b, "integer_weights.safetensors", "\"dtype\":\"F32\"", "\"dtype\":\"I32\"")));
    ADD(strdup(st_edit(b, "shape_negative.safetensors", "\"shape\":[2,", "\"shape\":[-2,")));
    ADD(strdup(st_edit(b, "shape_huge.safetensors", "\"shape\":[2,", "\"shape\":[1e300,")));
    ADD(strdup(st_edit(b, "meta_not_object.safetensors", "\"__metadata__\":{", "\"__metadata__\":7,\"x\":{")));
    ADD(strdup(st_edit(b, "meta_not_string.safetensors", "\"format\":\"neurofv-model-1\"", "\"format\":1")));
    ADD(strdup(st_edit(b, "no_arch.safetensors", ARCH_META, "\"archi\":\"x\"")));
    ADD(strdup(st_edit(b, "arch_syntax.safetensors", ARCH_META, "\"arch\":\"conv((2\"")));
    ADD(strdup(st_edit(b, "arch_absurd.safetensors", ARCH_META, "\"arch\":\"conv(100000000,k3,p1) relu maxpool(2) flatten linear(2)\"")));
    ADD(strdup(st_edit(b, "arch_other.safetensors", ARCH_META, "\"arch\":\"conv(3,k3,p1) relu maxpool(2) flatten linear(2)\"")));
    ADD(strdup(st_edit(b, "input_huge.safetensors", "\"input_shape\":\"1,12,12,12\"", "\"input_shape\":\"1,1000000,1000000,1000000\"")));
    ADD(strdup(st_edit(b, "input_zero.safetensors", "\"input_shape\":\"1,12,12,12\"", "\"input_shape\":\"1,0,12,12\"")));
    ADD(strdup(st_edit(b, "input_text.safetensors", "\"input_shape\":\"1,12,12,12\"", "\"input_shape\":\"1,twelve\"")));
    ADD(strdup(st_edit(b, "voxel_negative.safetensors", "\"voxel_mm\":\"2,2,2\"", "\"voxel_mm\":\"-2,2,2\"")));
    ADD(strdup(st_edit(b, "affine_short.safetensors", "\"affine\":\"", "\"affine\":\"1,2,3\",\"old\":\"")));
    ADD(strdup(st_edit(b, "affine_singular.safetensors", "\"affine\":\"",
                       "\"affine\":\"0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1\",\"old\":\"")));
    ADD(strdup(st_edit(b, "norm_unknown.safetensors", "\"norm\":\"zscore-nonzero\"", "\"norm\":\"whiten\"")));
    ADD(strdup(st_edit(b, "head_unknown.safetensors", "\"head\":\"softmax\"", "\"head\":\"sigmoid\"")));
    ADD(strdup(st_edit(b, "classes_not_json.safetensors", "\"classes\":\"[", "\"classes\":\"{[")));
    ADD(strdup(st_edit(b, "classes_count.safetensors", "\"classes\":\"[\\\"a\\\",\\\"b\\\"]\"",
                       "\"classes\":\"[\\\"a\\\",\\\"b\\\",\\\"c\\\"]\"")));
    ADD(strdup(st_edit(b, "classes_twice.safetensors", "\"classes\":\"[\\\"a\\\",\\\"b\\\"]\"",
                       "\"classes\":\"[\\\"a\\\",\\\"a\\\"]\"")));
    ADD(strdup(st_edit(b, "classes_newline.safetensors", "\"classes\":\"[\\\"a\\\",\\\"b\\\"]\"",
                       "\"classes\":\"[\\\"a\\\",\\\"b\\\\nc\\\"]\"")));
    ADD(strdup(st_edit(b, "stray_tensor.safetensors", "\"0.weight\":", "\"9.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                                                                        "\"data_offsets\":[0,4]},\"0.weight\":")));
#undef ADD
    return n;
}

/* NaN weights: the first float of the data section. */
static const char *nan_weights(const st_bytes *b)
{
    unsigned char *d = malloc(b->data_len);
    if (!d) return "";
    memcpy(d, b->data, b->data_len);
    const float nan = (float)NAN;
    memcpy(d, &nan, sizeof nan);
    const char *p = st_write("nan_weights.safetensors", b->json, d, b->data_len, 0);
    free(d);
    return p;
}

TEST(bad_input_model_files)
{
    if (!bi_model()[0] || !bi_good_csv()[0]) return;
    st_bytes b;
    if (!CHECK(st_split(bi_model(), &b), "read the fixture model %s", bi_model())) return;
    const char *models[64];
    int n = bad_models(&b, models, 63);
    models[n++] = strdup(nan_weights(&b));
    char out[600], dump[600];
    bi_path(out, sizeof out, "model_case_out");
    bi_path(dump, sizeof dump, "model_case_dump.bin");
    for (int i = 0; i < n; i++) {
        BI_REFUSED(models[i], NULL, "inspect '%s'", models[i]);
        if (i % 2 == 0)
            BI_REFUSED(models[i], out, "eval --model '%s' --data '%s' --out '%s'", models[i], bi_good_csv(), out);
    }
    /* the same loader behind eval (every other file), visualize and compare (a sample) */
    for (int i = 0; i < n; i += 5) {
        BI_REFUSED(models[i], out, "visualize --model '%s' --target conv1:0 --steps 1 --out '%s'", models[i], out);
        BI_REFUSED(models[i], out, "compare --model '%s' --target conv1:0 --steps 1 --configs none --out '%s'",
                   models[i], out);
    }
    /* a valid model of two input channels cannot take one volume per subject */
    char two[600];
    bi_path(two, sizeof two, "two_channels.safetensors");
    const int in2[4] = {2, 12, 12, 12};
    nfv_model *m = NULL;
    if (CHECK_OK(nfv_model_create_from_spec(test_ctx(), BI_ARCH, in2, 2, NULL, NFV_HEAD_SOFTMAX, 1, &m)) &&
        CHECK_OK(nfv_model_save(m, two))) {
        BI_REFUSED("two_channels.safetensors|channels", out, "eval --model '%s' --data '%s' --out '%s'", two,
                   bi_good_csv(), out);
        BI_REFUSED("two_channels.safetensors|channel", out, "visualize --model '%s' --target conv1:0 --out '%s'", two,
                   out);
    }
    nfv_model_free(m);
    /* a parameter-free body on a grid of 8e9 voxels: the file is small and
     * consistent, the grid is not */
    char gap[600];
    bi_path(gap, sizeof gap, "gap.safetensors");
    const int in1[4] = {1, 12, 12, 12};
    st_bytes g;
    m = NULL;
    if (CHECK_OK(nfv_model_create_from_spec(test_ctx(), "gap flatten linear(2)", in1, 2, NULL, NFV_HEAD_SOFTMAX, 1, &m)) &&
        CHECK_OK(nfv_model_save(m, gap)) && CHECK(st_split(gap, &g), "read %s", gap)) {
        const char *huge = st_edit(&g, "gap_huge_grid.safetensors", "\"input_shape\":\"1,12,12,12\"",
                                   "\"input_shape\":\"1,2000,2000,2000\"");
        BI_REFUSED("gap_huge_grid.safetensors|input", NULL, "inspect '%s'", huge);
        BI_REFUSED("gap_huge_grid.safetensors|input", out, "eval --model '%s' --data '%s' --out '%s'", huge,
                   bi_good_csv(), out);
        free(g.json);
        free(g.data);
    }
    nfv_model_free(m);
    for (int i = 0; i < n; i++) free((void *)models[i]);
    free(b.json);
    free(b.data);
}

/* Targets and options of visualize: each refused before any output, the
 * message naming the target or option. */
TEST(bad_input_visualize_targets_options)
{
    if (!bi_model()[0]) return;
    char out[600], missing[600];
    bi_path(out, sizeof out, "vis_out");
    bi_path(missing, sizeof missing, "no_such_volume.nii");
    const char *model = bi_model(), *trunc = bi_bad_volume("trunc_data.nii.gz"), *nan = bi_bad_volume("nan_voxels.nii");
    const char *long_target = "conv1:0@11111111111111111111111111111111111111111111111111111111111111111111111111,1,1"
                              "1111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
                              "1111111111111111111111111111111111111111111111111111111111111111111111111111111111111"
                              "1111111111111111111111111111111111111111111111111111111111111111111111111111111111111";
    const char *targets[] = {"conv9", "conv1:5", "conv1:-1", "conv1:x", "conv1:0@99,0,0", "conv1:0@1,2",
                             "conv1:0@a,b,c", "conv1:0@1,2,3,4", "conv1:0@-1,2,3", "logit:zebra", "logit:", "logit:9",
                             "contrast:zebra", "logit:a@9,9,9", "fc:0@1,1,1", "@1,2,3", "-", " ", "::", long_target};
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        char names[400];
        snprintf(names, sizeof names, "target \"%.40s", targets[i]);
        if (!strcmp(targets[i], " ") || !strcmp(targets[i], "-")) snprintf(names, sizeof names, "target");
        BI_REFUSED(names, out, "visualize --model '%s' --target '%s' --steps 1 --out '%s'", model, targets[i], out);
    }
    char init_t[2][700], mask[3][700], bg[2][700];
    snprintf(init_t[0], sizeof init_t[0], "--init template='%s'", trunc);
    snprintf(init_t[1], sizeof init_t[1], "--init template='%s'", nan);
    snprintf(mask[0], sizeof mask[0], "--mask '%s'", trunc);
    snprintf(mask[1], sizeof mask[1], "--mask '%s'", nan);
    snprintf(mask[2], sizeof mask[2], "--mask '%s'", missing);
    snprintf(bg[0], sizeof bg[0], "--background '%s'", trunc);
    snprintf(bg[1], sizeof bg[1], "--background '%s'", missing);
    const struct { const char *opts, *names; } opts[] = {
        {"--steps -1", "--steps"}, {"--steps x", "--steps"}, {"--lr 0", "--lr"}, {"--lr nan", "--lr"},
        {"--lr -0.1", "--lr"}, {"--optimizer rmsprop", "--optimizer"}, {"--momentum 1", "--momentum"},
        {"--weight-decay -1", "--weight-decay"}, {"--seed -1", "--seed"}, {"--starts 0", "--starts"},
        {"--starts 5000", "--starts"}, {"--batch 0", "--batch"}, {"--batch 99999", "--batch"},
        {"--param wavelet", "--param"}, {"--decay -1", "--decay"}, {"--decay 9", "--decay"}, {"--init ones", "--init"},
        {"--init noise=-1", "--init"}, {"--init noise=nan", "--init"}, {"--init template=", "--init"},
        {"--l1 -1", "--l1"}, {"--l2 nan", "--l2"}, {"--tv -1", "--tv"}, {"--tv-eps 0", "--tv-eps"},
        {"--blur -1", "--blur"}, {"--blur 50", "--blur"}, {"--blur-every 0", "--blur-every"}, {"--jitter -1", "--jitter"},
        {"--jitter 100", "--jitter"}, {"--scale 2,1", "--scale"}, {"--scale 0.1", "--scale"}, {"--scale nan", "--scale"},
        {"--rotate -5", "--rotate"}, {"--rotate 500", "--rotate"}, {"--pad -1", "--pad"}, {"--range 1,0", "--range"},
        {"--range nan,1", "--range"}, {"--range 0,1 --param fourier", "--range"}, {"--log-every 0", "--log-every"},
        {"--snapshots -1", "--snapshots"}, {"--snapshots 1,,2", "--snapshots"}, {"--snapshots x", "--snapshots"},
        {"--importance maybe", "--importance"}, {"--shard 0/2", "--shard"}, {"--shard 3/2", "--shard"},
        {"--shard 1/0", "--shard"}, {"--shard a", "--shard"}, {"--bogus 1", "--bogus"},
        {init_t[0], trunc}, {init_t[1], nan}, {mask[0], trunc}, {mask[1], nan}, {mask[2], missing},
        {bg[0], trunc}, {bg[1], missing},
    };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        BI_REFUSED(opts[i].names, out, "visualize --model '%s' --target conv1:0 --steps 1 %s --out '%s'", model,
                   opts[i].opts, out);
    BI_REFUSED("--target", out, "visualize --model '%s' --out '%s'", model, out);
}

/* compare: its own options, configurations and seeds, targets, truth;
 * inspect: architectures, shapes, debug inputs. */
TEST(bad_input_compare_inspect_options)
{
    if (!bi_model()[0]) return;
    char out[600], missing_dir[600], no_shapes[600], raw[4][600], save[600], dump[600];
    bi_path(out, sizeof out, "cmp_out");
    bi_path(missing_dir, sizeof missing_dir, "no_such_cohort");
    bi_path(no_shapes, sizeof no_shapes, "cohort_without_shapes");
    mkdir(no_shapes, 0755);
    const char *model = bi_model(), *trunc = bi_bad_volume("trunc_data.nii.gz");
    char truth[2][700], bg[700];
    snprintf(truth[0], sizeof truth[0], "--truth '%s'", missing_dir);
    snprintf(truth[1], sizeof truth[1], "--truth '%s'", no_shapes);
    snprintf(bg, sizeof bg, "--background '%s'", trunc);
    const struct { const char *opts, *names; } cmp[] = {
        {"--config 'l2=--l2 -1'", "--l2"}, {"--config noeq", "--config"}, {"--config '=--l2 1'", "--config"},
        {"--config 'x=--bogus 1'", "--bogus"}, {"--config 'x=l2 1'", "l2"}, {"--configs nothing", "--configs"},
        {"--seeds 1,,2", "--seeds"}, {"--seeds a", "--seeds"}, {"--seeds 1,1", "--seeds"}, {"--seeds ''", "--seeds"},
        {"--seeds -1", "--seeds"}, {"--lr nan", "--lr"}, {"--steps -2", "--steps"}, {truth[0], missing_dir},
        {truth[1], no_shapes}, {bg, trunc}, {"--target conv1:9", "conv1:9"},
    };
    for (size_t i = 0; i < sizeof cmp / sizeof *cmp; i++)
        BI_REFUSED(cmp[i].names, out, "compare --model '%s' --target conv1:0 --steps 1 --configs none %s --out '%s'",
                   model, cmp[i].opts, out);
    BI_REFUSED("--model", out, "compare --target conv1:0 --out '%s'", out);

    /* inspect: --save must not be written when the request is bad */
    bi_path(save, sizeof save, "inspect_save.safetensors");
    bi_path(dump, sizeof dump, "inspect_dump.bin");
    const struct { const char *opts, *names; } arch[] = {
        {"--arch 'conv('", "--arch"}, {"--arch 'conv(8,k3) bogus'", "--arch"}, {"--arch ''", "--arch"},
        {"--arch 'conv(100000000,k3,p1) flatten linear(2)'", "--arch"}, {"--arch 'conv(8,k99) flatten linear(2)'", "--arch"},
        {"--arch 'linear(2)'", "--arch"}, {"--arch ref4 --shape 0,0,0", "--shape"}, {"--arch ref4 --shape 12,12", "--shape"},
        {"--arch ref4 --shape 12,12,12,1", "--shape"}, {"--arch ref4 --shape 100000,100000,100000", "--shape"},
        {"--arch '" BI_ARCH "' --shape 12,12,12 --classes 0", "--classes"},
        {"--arch '" BI_ARCH "' --shape 12,12,12 --classes -1", "--classes"}, {"--arch ref4 --seed -1", "--seed"},
    };
    for (size_t i = 0; i < sizeof arch / sizeof *arch; i++)
        BI_REFUSED(arch[i].names, save, "inspect %s --save '%s'", arch[i].opts, save);
    BI_REFUSED("MODEL", NULL, "inspect");
    /* tune: its options are checked before any candidate runs */
    BI_REFUSED("--check", NULL, "tune --check eval --dry-run");
    BI_REFUSED("--check-batch", NULL, "tune --check-batch 65 --dry-run");
    BI_REFUSED("--size", NULL, "tune --size 7 --dry-run");
    /* debug inputs: raw float32, 1x12x12x12 per sample */
    float one[12 * 12 * 12] = {0};
    bi_write(bi_path(raw[0], sizeof raw[0], "raw_empty.bin"), "", 0);
    bi_write(bi_path(raw[1], sizeof raw[1], "raw_odd.bin"), "abc", 3);
    bi_write(bi_path(raw[2], sizeof raw[2], "raw_short.bin"), one, 4 * sizeof(float));
    one[5] = (float)NAN;
    bi_write(bi_path(raw[3], sizeof raw[3], "raw_nan.bin"), one, sizeof one);
    for (int i = 0; i < 4; i++)
        BI_REFUSED(raw[i], dump, "inspect '%s' --input '%s' --dump '%s'", model, raw[i], dump);
    one[5] = 0;
    char good_raw[600];
    bi_write(bi_path(good_raw, sizeof good_raw, "raw_good.bin"), one, sizeof one);
    BI_REFUSED("--dump", dump, "inspect '%s' --input '%s'", model, good_raw);
    BI_REFUSED("--grad-class", dump, "inspect '%s' --input '%s' --grad-class 5 --dump '%s'", model, good_raw, dump);
    BI_REFUSED("--grad-class", dump, "inspect '%s' --input '%s' --grad-class -5 --dump '%s'", model, good_raw, dump);
    BI_REFUSED("--labels", dump, "inspect '%s' --input '%s' --labels x --dump '%s'", model, good_raw, dump);
    BI_REFUSED("--labels", dump, "inspect '%s' --input '%s' --labels 0,1 --dump '%s'", model, good_raw, dump);
    BI_REFUSED("--labels", dump, "inspect '%s' --input '%s' --labels 7 --dump '%s'", model, good_raw, dump);
    BI_REFUSED("--input", dump, "inspect '%s' --input '%s' --dump '%s'", model, bi_path(raw[0], sizeof raw[0], "nope.bin"),
               dump);
}
