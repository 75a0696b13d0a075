/* Feature-visualization targets: parsing, canonical text round trips,
 * `all` expansion, clear errors for bad targets, shards partition exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis.h"
#include "neurofv/train.h"
#include "test.h"

/* ref4-like but small: conv1 bn1 relu1 pool1 conv2 relu2 gap flatten fc (3 classes). */
static nfv_model *small_model(nfv_head head, int classes)
{
    static const char *names3[] = {"cube", "sphere", "cross"};
    static const char *names2[] = {"control", "atrophy"};
    int in[4] = {1, 9, 11, 7};
    nfv_model *m = NULL;
    const char *spec = head == NFV_HEAD_SOFTMAX ? "conv(4,k3,p1) bn relu maxpool(2) conv(5,k3,p1) relu gap flatten linear(3)"
                                                : "conv(4,k3,p1) bn relu maxpool(2) conv(5,k3,p1) relu gap flatten linear(1)";
    CHECK_OK(nfv_model_create_from_spec(test_ctx(), spec, in, classes, head == NFV_HEAD_SOFTMAX ? names3 : names2, head, 1,
                                        &m));
    return m;
}

TEST(vis_target_parse_round_trip)
{
    nfv_model *m = small_model(NFV_HEAD_SOFTMAX, 3);
    if (!m) return;
    struct {
        const char *text, *canonical;
        nfv_target_kind kind;
        int layer, unit;
        float sign;
    } cases[] = {
        {"conv2:3", "conv2:3", NFV_TARGET_CHANNEL, 4, 3, 1},
        {"4:3", "conv2:3", NFV_TARGET_CHANNEL, 4, 3, 1},
        {"-relu1:0", "-relu1:0", NFV_TARGET_CHANNEL, 2, 0, -1},
        {"conv1:2@1,2,3", "conv1:2@1,2,3", NFV_TARGET_NEURON, 0, 2, 1},
        {"conv1:2@", "conv1:2@4,5,3", NFV_TARGET_NEURON, 0, 2, 1},
        {"relu2", "relu2", NFV_TARGET_LAYER, 5, -1, 1},
        {" -pool1 ", "-pool1", NFV_TARGET_LAYER, 3, -1, -1},
        {"logit:sphere", "logit:sphere", NFV_TARGET_FEATURE, 8, 1, 1},
        {"logit:2", "logit:cross", NFV_TARGET_FEATURE, 8, 2, 1},
        {"-logit:cube", "-logit:cube", NFV_TARGET_FEATURE, 8, 0, -1},
        {"fc:1", "fc:1", NFV_TARGET_FEATURE, 8, 1, 1},
        {"gap:4", "gap:4", NFV_TARGET_CHANNEL, 6, 4, 1},
        {"flatten:2", "flatten:2", NFV_TARGET_FEATURE, 7, 2, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nfv_target *t = NULL, *u = NULL;
        int n = 0, k = 0;
        if (!CHECK_OK(nfv_target_parse(m, cases[i].text, &t, &n))) continue;
        CHECK(n == 1 && !strcmp(t[0].name, cases[i].canonical) && t[0].kind == cases[i].kind &&
                  t[0].layer == cases[i].layer && t[0].unit == cases[i].unit && t[0].sign == cases[i].sign,
              "\"%s\" -> \"%s\" kind %d layer %d unit %d sign %g (want \"%s\" %d %d %d %g)", cases[i].text, t[0].name,
              t[0].kind, t[0].layer, t[0].unit, (double)t[0].sign, cases[i].canonical, cases[i].kind, cases[i].layer,
              cases[i].unit, (double)cases[i].sign);
        /* The canonical text parses back to the same target. */
        if (CHECK_OK(nfv_target_parse(m, t[0].name, &u, &k)))
            CHECK(k == 1 && !memcmp(&t[0], &u[0], sizeof t[0]), "\"%s\" round trips", t[0].name);
        free(t);
        free(u);
    }
    nfv_target *t = NULL;
    int n = 0;
    if (CHECK_OK(nfv_target_parse(m, "conv2:all", &t, &n))) {
        CHECK(n == 5 && !strcmp(t[0].name, "conv2:0") && !strcmp(t[4].name, "conv2:4"), "conv2:all -> 5 channels (%d)", n);
        free(t);
    }
    if (CHECK_OK(nfv_target_parse(m, "-logit:all", &t, &n))) {
        CHECK(n == 3 && !strcmp(t[2].name, "-logit:cross") && t[2].sign == -1, "-logit:all -> 3 classes, minimized");
        free(t);
    }
    char stem[128];
    nfv_target x;
    memset(&x, 0, sizeof x);
    snprintf(x.name, sizeof x.name, "-conv1:2@1,2,3");
    CHECK(!strcmp(nfv_target_stem(&x, stem, sizeof stem), "min_conv1_2_at_1_2_3"), "stem %s", stem);
    nfv_model_free(m);
}

TEST(vis_target_binary_head)
{
    nfv_model *m = small_model(NFV_HEAD_BINARY, 2);
    if (!m) return;
    nfv_target *t = NULL;
    int n = 0;
    if (CHECK_OK(nfv_target_parse(m, "logit:all", &t, &n))) {
        /* One logit: class 1 (atrophy) maximizes it, class 0 (control) minimizes it. */
        CHECK(n == 2 && t[0].unit == 0 && t[0].sign == -1 && !strcmp(t[0].name, "logit:control") && t[1].sign == 1 &&
                  !strcmp(t[1].name, "logit:atrophy"),
              "binary logit:all: %s (%g), %s (%g)", n > 0 ? t[0].name : "", n > 0 ? t[0].sign : 0.0,
              n > 1 ? t[1].name : "", n > 1 ? t[1].sign : 0.0);
        for (int i = 0; i < n; i++) {
            nfv_target *u = NULL;
            int k = 0;
            if (CHECK_OK(nfv_target_parse(m, t[i].name, &u, &k)))
                CHECK(k == 1 && u[0].sign == t[i].sign, "%s round trips", t[i].name);
            free(u);
        }
        free(t);
    }
    if (CHECK_OK(nfv_target_parse(m, "-logit:control", &t, &n))) {
        CHECK(n == 1 && t[0].sign == 1 && !strcmp(t[0].name, "-logit:control"), "-logit:control = +logit (%s)", t[0].name);
        free(t);
    }
    nfv_model_free(m);
}

TEST(vis_target_errors_name_what_exists)
{
    nfv_model *m = small_model(NFV_HEAD_SOFTMAX, 3);
    if (!m) return;
    struct {
        const char *text, *must_contain;
    } bad[] = {
        {"conv9:1", "conv1, bn1, relu1"},   /* unknown layer: lists the layers */
        {"conv2:5", "0-4"},                 /* channel out of range: gives the range */
        {"conv2:x", "0-4"},
        {"logit:banana", "cube, sphere, cross"}, /* unknown class: lists the classes */
        {"logit:3", "cube, sphere, cross"},
        {"logit", "classes: cube"},
        {"fc:1@1,2,3", "no spatial map"},
        {"conv1:1@9,0,0", "outside"},
        {"conv1:1@1,2", "z,y,x"},
        {"@1,2,3", "LAYER:CHANNEL"},
        {"", "empty"},
        {"99:0", "0-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nfv_target *t = NULL;
        int n = 0;
        nfv_status s = nfv_target_parse(m, bad[i].text, &t, &n);
        CHECK(s == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), bad[i].must_contain) && t == NULL && n == 0,
              "\"%s\" rejected with a message containing \"%s\": %s", bad[i].text, bad[i].must_contain,
              nfv_error_message());
    }
    nfv_model_free(m);
}

TEST(vis_shards_partition_exactly)
{
    int sizes[] = {1, 2, 7, 10, 64, 97};
    int shard_counts[] = {1, 2, 3, 8, 13};
    for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++)
        for (size_t b = 0; b < sizeof shard_counts / sizeof *shard_counts; b++) {
            int units = sizes[a], N = shard_counts[b], ok = 1, min = units, max = 0;
            for (int i = 1; i <= N; i++) {
                int c = 0;
                for (int u = 0; u < units; u++) c += nfv_shard_contains(u, units, i, N);
                if (c < min) min = c;
                if (c > max) max = c;
            }
            for (int u = 0; u < units; u++) {
                int owners = 0, last = -1;
                for (int i = 1; i <= N; i++)
                    if (nfv_shard_contains(u, units, i, N)) owners++, last = i;
                ok &= owners == 1;
                /* contiguous: owner never decreases with u */
                static int prev;
                if (u == 0) prev = 0;
                ok &= last >= prev;
                prev = last;
            }
            CHECK(ok && max - min <= 1, "%d units in %d shards: each in exactly one, contiguous, sizes %d-%d", units, N,
                  min, max);
        }
    int i, n;
    CHECK(nfv_shard_parse("3/8", &i, &n) == NFV_OK && i == 3 && n == 8, "3/8 parsed");
    const char *bad[] = {"0/4", "5/4", "1", "1/0", "a/b", "2/4x"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        CHECK(nfv_shard_parse(bad[k], &i, &n) == NFV_ERR_INVALID_ARG, "shard \"%s\" rejected", bad[k]);
}

/* output / -output on a regression model: the raw (standardized) value of
 * the last layer, maximized or minimized; the same target as logit:0; on a
 * classifier an error that points to logit:CLASS.  The objective of output
 * on an image equals the model's raw output ((prediction - target_mean) /
 * target_sd) and -output's is its negation. */
TEST(vis_target_regression_output)
{
    int in[4] = {1, 9, 11, 7};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), "conv(4,k3,p1) bn relu maxpool(2) conv(5,k3,p1) relu gap flatten linear(1)",
                                             in, 0, NULL, NFV_HEAD_REGRESSION, 3, &m)))
        return;
    m->target_mean = 50, m->target_sd = 10;
    struct {
        const char *text, *canonical, *stem;
        float sign;
    } cases[] = {{"output", "output", "output", 1}, {"-output", "-output", "min_output", -1}, {"logit:0", "output", "output", 1}};
    nfv_target tg[2];
    for (int i = 0; i < 3; i++) {
        nfv_target *t = NULL, *u = NULL;
        int n = 0, k = 0;
        char stem[64];
        if (!CHECK_OK(nfv_target_parse(m, cases[i].text, &t, &n))) continue;
        CHECK(n == 1 && !strcmp(t[0].name, cases[i].canonical) && t[0].kind == NFV_TARGET_FEATURE && t[0].layer == 8 &&
                  t[0].unit == 0 && t[0].sign == cases[i].sign && !strcmp(nfv_target_stem(&t[0], stem, sizeof stem), cases[i].stem),
              "\"%s\" -> \"%s\" layer %d unit %d sign %g stem %s", cases[i].text, t[0].name, t[0].layer, t[0].unit,
              (double)t[0].sign, stem);
        if (CHECK_OK(nfv_target_parse(m, t[0].name, &u, &k)))
            CHECK(k == 1 && !memcmp(&t[0], &u[0], sizeof t[0]), "\"%s\" round trips", t[0].name);
        if (i < 2) tg[i] = t[0];
        free(t), free(u);
    }
    nfv_volume v;
    if (CHECK_OK(nfv_volume_alloc(&v, 7, 11, 9, NULL))) {
        float *r = test_random(nfv_volume_numel(&v), 5, -1, 1), got[2], pred;
        memcpy(v.data, r, nfv_volume_numel(&v) * sizeof(float));
        free(r);
        nfv_volume vs[2] = {v, v};
        if (CHECK_OK(nfv_vis_objective(test_ctx(), m, tg, 2, vs, got)) &&
            CHECK_OK(nfv_model_predict(m, test_ctx(), v.data, 1, 1, &pred))) {
            /* Both in float32 from the same forward: equal to rounding. */
            double want[2] = {(pred - 50.0) / 10.0, -(pred - 50.0) / 10.0};
            CHECK_CLOSE("output / -output objective = +-(prediction - mean) / sd", got, want, 2, 1e-5, 1e-4);
            CHECK(got[0] == -got[1], "-output is exactly the opposite of output (%g, %g)", got[0], got[1]);
        }
        nfv_volume_free(&v);
    }
    nfv_model_free(m);

    nfv_model *c = small_model(NFV_HEAD_SOFTMAX, 3);
    if (!c) return;
    const char *bad[2] = {"output", "-output"};
    for (int i = 0; i < 2; i++) {
        nfv_target *t = NULL;
        int n = 0;
        nfv_status s = nfv_target_parse(c, bad[i], &t, &n);
        CHECK(s == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "logit:CLASS") &&
                  strstr(nfv_error_message(), "cube, sphere, cross") && !t,
              "\"%s\" on a classifier: %s", bad[i], nfv_error_message());
    }
    nfv_target *t = NULL;
    int n = 0;
    if (CHECK_OK(nfv_target_parse(c, "output:2", &t, &n)))
        CHECK(n == 1 && !strcmp(t[0].name, "fc:2"), "output:2 is unit 2 of the last layer (%s)", t[0].name);
    free(t);
    nfv_model_free(c);
}
