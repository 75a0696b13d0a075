/* The interpretability score without ground truth (src/vis/mis.c) on a case
 * whose answer is known: a cube detector neuron and a cohort where half the
 * subjects carry a cube in its receptive field.  A visualization equal to
 * the most strongly activating subject tells strong from weak subjects
 * (score near 1); a random one does not (near 0.5).  And Wilson's interval. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/compare.h"
#include "neurofv/vis.h"
#include "test.h"

static const int IN_SHAPE[4] = {1, 17, 19, 16}; /* the grid of test_vis.c's cube detector */

TEST(mis_wilson_interval)
{
    double lo, hi;
    nfv_wilson(50, 100, &lo, &hi);
    /* Wilson 95 % for 50/100: 0.4038 to 0.5962. */
    CHECK(fabs(lo - 0.4038) < 1e-3 && fabs(hi - 0.5962) < 1e-3, "50/100: [%.4f, %.4f]", lo, hi);
    nfv_wilson(20, 20, &lo, &hi);
    CHECK(fabs(lo - 0.8389) < 1e-3 && hi == 1.0, "20/20: [%.4f, %.4f]", lo, hi);
}

TEST(mis_known_answer_cube_detector)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "conv(2,k7,p3) relu flatten linear(1)", IN_SHAPE, 0, NULL,
                                             NFV_HEAD_REGRESSION, 3, &m)))
        return;
    float w[2 * 343], b[2] = {1.0f, 0.0f};
    for (int z = 0; z < 7; z++)
        for (int y = 0; y < 7; y++)
            for (int x = 0; x < 7; x++)
                w[(z * 7 + y) * 7 + x] = abs(z - 3) <= 1 && abs(y - 3) <= 1 && abs(x - 3) <= 1 ? 1.0f : -27.0f / 316.0f;
    memset(w + 343, 0, 343 * sizeof(float));
    CHECK_OK(nfv_tensor_upload(ctx, &m->layers[0].param[0], w));
    CHECK_OK(nfv_tensor_upload(ctx, &m->layers[0].param[1], b));
    const int n = 40, D = IN_SHAPE[1], H = IN_SHAPE[2], W = IN_SHAPE[3];
    size_t vox = (size_t)D * H * W;
    /* Noise (SD ~0.3) everywhere; the odd subjects add a cube of 1-2 at the centre neuron's voxel (8, 9, 8). */
    float *vols = test_random((size_t)n * vox, 31, -0.5f, 0.5f);
    for (int i = 1; i < n; i += 2)
        for (int z = 7; z <= 9; z++)
            for (int y = 8; y <= 10; y++)
                for (int x = 7; x <= 9; x++) vols[(size_t)i * vox + ((size_t)z * H + y) * W + x] += 1.0f + i / (float)n;
    nfv_target *t = NULL;
    int nt = 0;
    nfv_mis_cohort c;
    memset(&c, 0, sizeof c);
    if (CHECK_OK(nfv_target_parse(m, "relu1:0@", &t, &nt)) &&
        CHECK(nfv_mis_default_layer(m, t->layer) == 0, "relu1's earlier layer is conv1") &&
        /* The voxel term alone: conv1's channel means barely see a 3^3 cube in 5,168 voxels. */
        CHECK_OK(nfv_mis_cohort_init(ctx, m, t, vols, n, -1, &c))) {
        int cubes = 0;
        for (int k = 0; k < c.nstrong; k++) cubes += c.strong[k] % 2;
        CHECK(c.nstrong == 10 && cubes == 10, "the top quartile is the cube subjects (%d of %d)", cubes, c.nstrong);
        nfv_mis_result r;
        const float *top = vols + (size_t)c.strong[c.nstrong - 1] * vox;
        if (CHECK_OK(nfv_mis_score(ctx, m, t, &c, top, 200, 1, NULL, &r)))
            CHECK(r.mis > 0.9 && r.lo > 0.8 && r.pairs == 200,
                  "a strongly activating subject as the visualization: MIS %.3f [%.3f, %.3f]", r.mis, r.lo, r.hi);
        float *rnd = test_random(vox, 77, -0.5f, 0.5f);
        if (CHECK_OK(nfv_mis_score(ctx, m, t, &c, rnd, 200, 1, NULL, &r)))
            CHECK(fabs(r.mis - 0.5) < 0.25, "a random visualization: MIS %.3f [%.3f, %.3f], near chance", r.mis, r.lo,
                  r.hi);
        printf("  mis: random visualization %.3f [%.3f, %.3f]\n", r.mis, r.lo, r.hi);
        free(rnd);
        nfv_mis_cohort_free(&c);
    }
    free(t);
    free(vols);
    nfv_model_free(m);
}

/* The contrastive judgement cancels what makes a subject similar to every
 * picture.  40 subjects, the first 10 strong and the last 10 weak for target
 * 0; every weak subject carries an offset of +2 in its similarity to any
 * picture (as a subject with more structure does), and target 0's picture
 * adds +0.5 for the strong ones.  Plain: the weak always look more similar
 * (score 0); against the two other logits' pictures as references: 1.
 * A fourth target of another family (a channel, whose similarities would
 * flip the answer) is not a reference. */
TEST(mis_contrastive_cancels_a_common_offset)
{
    enum { N = 40, T = 4 };
    int order[N];
    for (int i = 0; i < N; i++) order[i] = i;
    nfv_mis_cohort c;
    memset(&c, 0, sizeof c);
    c.n = N;
    c.strong = order;
    c.nstrong = 10;
    c.weak = order + 30;
    c.nweak = 10;
    nfv_target targets[T];
    memset(targets, 0, sizeof targets);
    for (int t = 0; t < T; t++) {
        targets[t].kind = NFV_TARGET_CHANNEL;
        targets[t].layer = 7;
        targets[t].unit = t;
        targets[t].is_logit = t < 3;
        targets[t].sign = 1;
    }
    double sims[T * N];
    unsigned long long state = 5;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            double offset = i >= 30 ? 2.0 : 0.0, noise = 0.05 * (test_uniform(&state) - 0.5);
            sims[t * N + i] = t == 3 ? -10.0 * (i < 10) : offset + noise + (t == 0 && i < 10 ? 0.5 : 0.0);
        }
    double plain = nfv_mis_judge(&c, sims, 200, 1) / 200, correct = -1;
    int refs = nfv_mis_contrastive(&c, sims, targets, T, 0, 200, 1, &correct);
    CHECK(plain < 0.05, "plain score %.3f: the offset should mislead it (want < 0.05)", plain);
    CHECK(refs == 2, "references %d, want the 2 other logits (not the channel)", refs);
    CHECK(correct / 200 > 0.95, "contrastive score %.3f, want > 0.95", correct / 200);
    /* A target alone in its family has no references. */
    CHECK(nfv_mis_contrastive(&c, sims, targets, T, 3, 200, 1, &correct) == 0, "the channel has no reference");
}
