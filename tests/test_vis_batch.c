/* Choosing the visualization batch by measurement (src/vis/vis_batch.c):
 * the rule on given times, when a run is long enough to be worth timing,
 * the probe's numbers, and `visualize` without --batch: the line that says
 * what was measured and chosen, and the same bytes as any fixed batch (the
 * choice depends on the clock, the results must not). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis.h"
#include "test.h"

TEST(vis_batch_rule_on_given_times)
{
    nfv_vis_batch_probe p = {{1, 8}, {10.0, 11.0}, 0};
    CHECK(nfv_vis_batch_pick(&p) == 1, "batch 1 at 10 ms a sample against 11: batch 1");
    p.ms_per_sample[0] = 10.6;
    CHECK(nfv_vis_batch_pick(&p) == 8, "batch 1 under 5 %% cheaper (10.6 against 11): the batch of 8");
    p.ms_per_sample[0] = 12.0, p.ms_per_sample[1] = 4.0;
    CHECK(nfv_vis_batch_pick(&p) == 8, "batch 8 cheaper per sample: batch 8");
    int cost = nfv_vis_batch_probe_cost(8);
    CHECK(cost > 9 && cost < 200, "the probe of batch 8 runs a few steps of 1 + 8 samples (%d sample-steps)", cost);
    CHECK(nfv_vis_batch_worth_probing(2, 512, 8), "2 targets x 512 steps: timed");
    CHECK(!nfv_vis_batch_worth_probing(8, 32, 8), "8 x 32 sample-steps: not worth timing");
    CHECK(nfv_vis_batch_worth_probing(10 * cost, 1, 8) && !nfv_vis_batch_worth_probing(10 * cost - 1, 1, 8),
          "timed from ten times the probe's cost on");
    CHECK(!nfv_vis_batch_worth_probing(1, 100000, 8), "one sample: nothing to batch");
    CHECK(!nfv_vis_batch_worth_probing(100, 512, 1), "batch 1 already: nothing to time");
}

/* "conv(2,k3,p1) relu flatten linear(1)" on (1, 12, 13, 11), random weights. */
static nfv_model *small_model(void)
{
    static const int shape[4] = {1, 12, 13, 11};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), "conv(2,k3,p1) relu flatten linear(1)", shape, 0, NULL,
                                             NFV_HEAD_REGRESSION, 3, &m)))
        return NULL;
    return m;
}

TEST(vis_batch_probe_times_both)
{
    nfv_model *m = small_model();
    if (!m) return;
    nfv_target *t = NULL;
    int n = 0;
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    CHECK_OK(nfv_vis_options_parse(&o, "--steps 40 --jitter 1 --param fourier --starts 3"));
    nfv_vis_options before = o;
    nfv_vis_batch_probe p;
    if (CHECK_OK(nfv_target_parse(m, "relu1:1", &t, &n)) && CHECK_OK(nfv_vis_probe_batch(test_ctx(), m, t, &o, 4, &p))) {
        CHECK(p.batch[0] == 1 && p.batch[1] == 4, "batch 1 against 4 (%d, %d)", p.batch[0], p.batch[1]);
        CHECK(isfinite(p.ms_per_sample[0]) && p.ms_per_sample[0] > 0 && isfinite(p.ms_per_sample[1]) &&
                  p.ms_per_sample[1] > 0,
              "both timed (%.3f, %.3f ms a sample-step)", p.ms_per_sample[0], p.ms_per_sample[1]);
        CHECK(p.chosen == nfv_vis_batch_pick(&p), "the choice is the rule's on the times (%d)", p.chosen);
        CHECK(!memcmp(&o, &before, sizeof o), "the run's options are left as they were");
    }
    if (t) CHECK_OK(nfv_vis_probe_batch(test_ctx(), m, t, &o, 1, &p));
    CHECK(p.chosen == 1 && p.ms_per_sample[0] == 0, "batch 1 asked: nothing timed");
    free(t);
    nfv_model_free(m);
}

static int file_has(const char *path, const char *text)
{
    char buf[8192];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    return strstr(buf, text) != NULL;
}

static int same_file(const char *a, const char *b)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return test_run(cmd, NULL) == 0;
}

TEST(vis_batch_chosen_without_batch_same_bytes)
{
    nfv_model *m = small_model();
    if (!m) return;
    char model[512], cmd[2400], log[600], a[700], b[700];
    snprintf(model, sizeof model, "%s/vis_batch.safetensors", test_tmpdir());
    if (!CHECK_OK(nfv_model_save(m, model))) {
        nfv_model_free(m);
        return;
    }
    nfv_model_free(m);
    /* 2 targets x 4 starts x 80 steps: long enough to be timed. */
    const char *run = "--target relu1:all --starts 4 --steps 80 --jitter 1 --background none";
    snprintf(log, sizeof log, "%s/vis_batch_auto.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s visualize --model %s %s --out %s/vb_auto 2>&1", test_bin(), model, run,
             test_tmpdir());
    CHECK(test_run(cmd, log) == 0, "visualize without --batch runs: %s", cmd);
    CHECK(file_has(log, "ms per sample-step at batch 1") && file_has(log, "at batch 8 (timed on relu1:0)"),
          "it says what it timed and chose (%s)", log);
    snprintf(cmd, sizeof cmd, "%s visualize --model %s %s --batch 3 --out %s/vb_3 2>&1", test_bin(), model, run,
             test_tmpdir());
    CHECK(test_run(cmd, log) == 0, "visualize --batch 3 runs");
    CHECK(!file_has(log, "ms per sample-step"), "--batch given: nothing timed");
    for (int c = 0; c < 2; c++) {
        snprintf(a, sizeof a, "%s/vb_auto/relu1_%d.nii.gz", test_tmpdir(), c);
        snprintf(b, sizeof b, "%s/vb_3/relu1_%d.nii.gz", test_tmpdir(), c);
        CHECK(same_file(a, b), "relu1:%d: the same bytes with the chosen batch as with --batch 3", c);
    }
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --target relu1:all --steps 8 --out %s/vb_short 2>&1",
             test_bin(), model, test_tmpdir());
    CHECK(test_run(cmd, log) == 0 && !file_has(log, "ms per sample-step"), "a short run is not timed");
}
