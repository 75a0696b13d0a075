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

TEST(mis_stretch_known_answer)
{
    /* Objectives 1, 2, 3, 6: mean 3, strongest 6 (3 above the mean). */
    float objective[4] = {1, 2, 3, 6};
    nfv_mis_cohort c;
    memset(&c, 0, sizeof c);
    c.n = 4;
    c.objective = objective;
    double at_top = nfv_mis_stretch(&c, 6.0), twice = nfv_mis_stretch(&c, 9.0), at_mean = nfv_mis_stretch(&c, 3.0);
    CHECK(fabs(at_top - 1.0) < 1e-12 && fabs(twice - 2.0) < 1e-12 && fabs(at_mean) < 1e-12,
          "stretch at the strongest subject %g (1), at 9 %g (2), at the mean %g (0)", at_top, twice, at_mean);
    CHECK(fabs(nfv_mis_stretch(&c, 0.0) + 1.0) < 1e-12, "below the mean: %g (-1)", nfv_mis_stretch(&c, 0.0));
    for (int i = 0; i < 4; i++) objective[i] = 5.0f;
    CHECK(isnan(nfv_mis_stretch(&c, 9.0)), "a flat cohort has no stretch: %g", nfv_mis_stretch(&c, 9.0));
    c.n = 0;
    CHECK(isnan(nfv_mis_stretch(&c, 9.0)), "an empty cohort has no stretch");
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
        /* No feature layer (-1): conv1's channel means barely see a 3^3 cube in 5,168 voxels. */
        CHECK_OK(nfv_mis_cohort_init(ctx, m, t, vols, n, -1, NULL, 6.0, &c))) {
        int cubes = 0;
        for (int k = 0; k < c.nstrong; k++) cubes += c.strong[k] % 2;
        CHECK(c.nstrong == 10 && cubes == 10, "the top quartile is the cube subjects (%d of %d)", cubes, c.nstrong);
        nfv_mis_result r;
        const float *top = vols + (size_t)c.strong[c.nstrong - 1] * vox;
        if (CHECK_OK(nfv_mis_score(ctx, m, t, &c, top, NULL, 200, 1, NULL, &r)))
            CHECK(r.mis > 0.9 && r.lo > 0.8 && r.pairs == 200,
                  "a strongly activating subject as the visualization: MIS %.3f [%.3f, %.3f]", r.mis, r.lo, r.hi);
        float *rnd = test_random(vox, 77, -0.5f, 0.5f);
        if (CHECK_OK(nfv_mis_score(ctx, m, t, &c, rnd, NULL, 200, 1, NULL, &r)))
            CHECK(fabs(r.mis - 0.5) < 0.25, "a random visualization: MIS %.3f [%.3f, %.3f], near chance", r.mis, r.lo,
                  r.hi);
        printf("  mis: random visualization %.3f [%.3f, %.3f]\n", r.mis, r.lo, r.hi);
        nfv_picture_grad pg;
        nfv_mis_result given;
        if (CHECK_OK(nfv_picture_grad_compute(ctx, m, t, rnd, &pg)) &&
            CHECK_OK(nfv_mis_score(ctx, m, t, &c, rnd, &pg, 200, 1, NULL, &given)))
            CHECK(given.correct == r.correct,
                  "a given gradient scores the same: %.1f vs %.1f correct", given.correct, r.correct);
        nfv_picture_grad_free(&pg);
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

/* The focus share on a linear unit (objective = the sum of the voxels), where
 * it can be computed by hand: the gain of pasting the ball into a weak
 * subject w is the sum over the ball of (v - w), the picture's effect
 * sum(v) - mean_w sum(w).  A picture whose change is one blob: the focus
 * finds the blob and carries nearly all of it; two equal blobs far apart:
 * about half.  The cohort is noise of +-0.01, which the weak subjects'
 * bottom quartile sums below 0: that part of the effect is outside any
 * ball.  Each against the direct sum (relative 1e-3: float sums of
 * 5,168 voxels). */
static double focus_by_hand(const nfv_model *m, const nfv_mis_cohort *c, const float *vis, double radius,
                            const double centre[3])
{
    int nz = IN_SHAPE[1], ny = IN_SHAPE[2], nx = IN_SHAPE[3];
    size_t vox = (size_t)nz * ny * nx;
    double gain = 0, effect = 0, sum_v = 0;
    for (size_t v = 0; v < vox; v++) sum_v += vis[v];
    for (int w = 0; w < c->nweak; w++) {
        const float *s = c->volumes + (size_t)c->weak[w] * vox;
        double sum_w = 0;
        for (int k = 0; k < nz; k++)
            for (int j = 0; j < ny; j++)
                for (int i = 0; i < nx; i++) {
                    size_t v = ((size_t)k * ny + j) * nx + i;
                    double d2 = 0;
                    for (int r = 0; r < 3; r++) {
                        double p = m->affine[r][0] * i + m->affine[r][1] * j + m->affine[r][2] * k + m->affine[r][3];
                        d2 += (p - centre[r]) * (p - centre[r]);
                    }
                    if (d2 <= radius * radius) gain += vis[v] - s[v];
                    sum_w += s[v];
                }
        effect += sum_v - sum_w;
    }
    return gain / effect;
}

static void add_blob(float *vol, int ck, int cj, int ci, int r)
{
    for (int k = ck - r; k <= ck + r; k++)
        for (int j = cj - r; j <= cj + r; j++)
            for (int i = ci - r; i <= ci + r; i++)
                if ((k - ck) * (k - ck) + (j - cj) * (j - cj) + (i - ci) * (i - ci) <= r * r)
                    vol[((size_t)k * IN_SHAPE[2] + j) * IN_SHAPE[3] + i] += 1.0f;
}

/* fc:0 = the sum of every voxel (flatten, Linear(1) with weights 1, bias 0):
 * a global unit with the same gradient everywhere.  NULL on failure. */
static nfv_model *voxel_sum_unit(nfv_context *ctx)
{
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, "flatten linear(1)", IN_SHAPE, 0, NULL, NFV_HEAD_REGRESSION, 3, &m)))
        return NULL;
    size_t vox = (size_t)IN_SHAPE[1] * IN_SHAPE[2] * IN_SHAPE[3];
    float *ones = malloc(vox * sizeof *ones), zero = 0;
    for (size_t v = 0; ones && v < vox; v++) ones[v] = 1.0f;
    if (!CHECK(ones != NULL, "out of memory") || !CHECK_OK(nfv_tensor_upload(ctx, &m->layers[1].param[0], ones)) ||
        !CHECK_OK(nfv_tensor_upload(ctx, &m->layers[1].param[1], &zero))) {
        nfv_model_free(m);
        m = NULL;
    }
    free(ones);
    return m;
}

TEST(focus_share_known_answer_linear_unit)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = voxel_sum_unit(ctx);
    if (!m) return;
    const int n = 16, nz = IN_SHAPE[1], ny = IN_SHAPE[2], nx = IN_SHAPE[3];
    size_t vox = (size_t)nz * ny * nx;
    float *vols = test_random((size_t)n * vox, 41, -0.01f, 0.01f);
    float *one_blob = calloc(vox, sizeof *one_blob), *two_blobs = calloc(vox, sizeof *two_blobs);
    add_blob(one_blob, 6, 12, 5, 2);
    add_blob(two_blobs, 4, 4, 4, 2);
    add_blob(two_blobs, 12, 14, 11, 2);
    nfv_target *t = NULL;
    int nt = 0;
    nfv_mis_cohort c;
    memset(&c, 0, sizeof c);
    const double radius = 6.0; /* mm: 3 voxels of the 2 mm grid, the blobs' radius is 2 */
    if (CHECK_OK(nfv_target_parse(m, "fc:0", &t, &nt)) && CHECK_OK(nfv_mis_cohort_init(ctx, m, t, vols, n, -1, NULL, radius, &c))) {
        nfv_focus_result r;
        if (CHECK_OK(nfv_focus_share(ctx, m, t, &c, one_blob, NULL, radius, &r))) {
            double want = focus_by_hand(m, &c, one_blob, radius, r.centre_mm), centre[3];
            for (int a = 0; a < 3; a++)
                centre[a] = m->affine[a][0] * 5 + m->affine[a][1] * 12 + m->affine[a][2] * 6 + m->affine[a][3];
            /* Every box that holds the whole blob sums the same but for the
             * noise: the centre is the blob's voxel or a neighbour. */
            CHECK(fabs(r.centre_mm[0] - centre[0]) <= 2 && fabs(r.centre_mm[1] - centre[1]) <= 2 &&
                      fabs(r.centre_mm[2] - centre[2]) <= 2,
                  "focus at (%g, %g, %g) mm, the blob is at (%g, %g, %g) (want within a voxel)", r.centre_mm[0], r.centre_mm[1],
                  r.centre_mm[2], centre[0], centre[1], centre[2]);
            CHECK(fabs(r.share - want) <= 1e-3 * fabs(want) && r.share > 0.9,
                  "one blob: share %.6f, by hand %.6f (want > 0.9)", r.share, want);
        }
        /* The picture's gradient computed once and given (what compare does) scores the same. */
        nfv_picture_grad pg;
        nfv_focus_result given;
        if (CHECK_OK(nfv_picture_grad_compute(ctx, m, t, one_blob, &pg)) &&
            CHECK_OK(nfv_focus_share(ctx, m, t, &c, one_blob, &pg, radius, &given)))
            CHECK(given.share == r.share && given.gain == r.gain && given.effect == r.effect,
                  "a given gradient: share %.9g, computed there %.9g", given.share, r.share);
        nfv_picture_grad_free(&pg);
        if (CHECK_OK(nfv_focus_share(ctx, m, t, &c, two_blobs, NULL, radius, &r))) {
            double want = focus_by_hand(m, &c, two_blobs, radius, r.centre_mm);
            CHECK(fabs(r.share - want) <= 1e-3 * fabs(want) && r.share > 0.4 && r.share < 0.6,
                  "two blobs: share %.6f, by hand %.6f (want 0.4-0.6)", r.share, want);
        }
        /* A picture below the weak subjects has no effect to share. */
        float *low = malloc(vox * sizeof *low);
        for (size_t v = 0; v < vox; v++) low[v] = -1.0f;
        if (CHECK_OK(nfv_focus_share(ctx, m, t, &c, low, NULL, radius, &r)))
            CHECK(isnan(r.share) && r.effect < 0, "a picture below the weak subjects: share %g, effect %g", r.share,
                  r.effect);
        CHECK(nfv_focus_share(ctx, m, t, &c, low, NULL, 0.0, &r) == NFV_ERR_INVALID_ARG, "a radius of 0 is refused");
        free(low);
        nfv_mis_cohort_free(&c);
    }
    free(t);
    free(vols);
    free(one_blob);
    free(two_blobs);
    nfv_model_free(m);
}

/* The pattern is found wherever it lies.  A global unit (the sum of every
 * voxel) and 24 subjects: the odd ones carry a blob (radius 2) each at its
 * own place, so they are the strong quartile; the picture has one blob at a
 * place no subject has it.  Its pattern box is searched over each subject:
 * every blob subject beats every plain one, so MIS is 1; a correlation at
 * the picture's own voxels (the score's former voxel term) would see
 * nothing, the blobs being elsewhere.  A picture of noise alone scores near
 * chance. */
TEST(mis_pattern_found_wherever_it_lies)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = voxel_sum_unit(ctx);
    if (!m) return;
    const int n = 24, nz = IN_SHAPE[1], ny = IN_SHAPE[2], nx = IN_SHAPE[3];
    size_t vox = (size_t)nz * ny * nx;
    float *vols = test_random((size_t)n * vox, 61, -0.2f, 0.2f), *picture = test_random(vox, 62, -0.2f, 0.2f);
    float *noise = test_random(vox, 63, -0.2f, 0.2f);
    for (int i = 1; i < n; i += 2) add_blob(vols + (size_t)i * vox, 3 + i % 11, 3 + (5 * i) % 13, 3 + (7 * i) % 10, 2);
    add_blob(picture, 8, 15, 12, 2);
    nfv_target *t = NULL;
    int nt = 0;
    nfv_mis_cohort c;
    memset(&c, 0, sizeof c);
    if (CHECK_OK(nfv_target_parse(m, "fc:0", &t, &nt)) && CHECK_OK(nfv_mis_cohort_init(ctx, m, t, vols, n, -1, NULL, 6.0, &c))) {
        int blobs = 0;
        for (int k = 0; k < c.nstrong; k++) blobs += c.strong[k] % 2;
        CHECK(blobs == c.nstrong, "the strong quartile is blob subjects (%d of %d)", blobs, c.nstrong);
        double *sim = malloc(n * sizeof *sim), *pattern = malloc(n * sizeof *pattern), *act = malloc(n * sizeof *act);
        if (CHECK_OK(nfv_mis_similarity(ctx, m, t, &c, picture, NULL, sim, pattern, act))) {
            double blob_min = 2, plain_max = -2;
            for (int i = 0; i < n; i++)
                if (i % 2) blob_min = fmin(blob_min, pattern[i]);
                else plain_max = fmax(plain_max, pattern[i]);
            CHECK(blob_min > plain_max, "every blob subject's best NCC (min %.3f) above every plain one's (max %.3f)",
                  blob_min, plain_max);
        }
        nfv_mis_result r;
        if (CHECK_OK(nfv_mis_score(ctx, m, t, &c, picture, NULL, 200, 1, NULL, &r)))
            CHECK(r.mis == 1.0, "a blob elsewhere: MIS %.3f (want 1)", r.mis);
        if (CHECK_OK(nfv_mis_score(ctx, m, t, &c, noise, NULL, 200, 1, NULL, &r)))
            CHECK(fabs(r.mis - 0.5) < 0.25, "noise alone: MIS %.3f, near chance", r.mis);
        free(sim);
        free(pattern);
        free(act);
        nfv_mis_cohort_free(&c);
    }
    free(t);
    free(vols);
    free(picture);
    free(noise);
    nfv_model_free(m);
}
