/* `neurofv explain` end to end: a map written in an oblique, anisotropic
 * subject's own space lands on the blob planted there (world coordinates
 * checked with nibabel, tests/explain_check.py); every method on a small
 * synthetic lesion cohort gives maps, per-class means and the truth table;
 * bad methods, layers, baselines and argument sets give one clear line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/model.h"
#include "neurofv/volume.h"
#include "test.h"

/* The planted blob's world centre (mm) and the subject's affine: voxels
 * 2 x 2.5 x 3.5 mm, rotated 20 degrees about x and 15 about z, the first
 * axis flipped (not RAS on disk). */
static const double BLOB[3] = {8.0, -20.0, 23.0};

static void subject_affine(double a[4][4], int n[3])
{
    double cx = cos(20 * M_PI / 180), sx = sin(20 * M_PI / 180), cz = cos(15 * M_PI / 180), sz = sin(15 * M_PI / 180);
    double rot[3][3] = {{cz, -sz * cx, sz * sx}, {sz, cz * cx, -cz * sx}, {0, sx, cx}};
    double vox[3] = {-2.0, 2.5, 3.5};
    memset(a, 0, 16 * sizeof(double));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) a[r][c] = rot[r][c] * vox[c];
    /* Centre voxel at world (0, -18, 18), the model grid's centre. */
    double centre[3] = {0, -18, 18};
    for (int r = 0; r < 3; r++) {
        a[r][3] = centre[r];
        for (int c = 0; c < 3; c++) a[r][3] -= a[r][c] * (n[c] - 1) / 2.0;
    }
    a[3][3] = 1;
}

TEST(explain_cli_map_lands_on_oblique_subject)
{
    char subj[512], model[512], out[512], cmd[4096], log[512];
    snprintf(subj, sizeof subj, "%s/oblique_subject.nii.gz", test_tmpdir());
    snprintf(model, sizeof model, "%s/explain_linear.safetensors", test_tmpdir());
    snprintf(out, sizeof out, "%s/explain_oblique", test_tmpdir());
    snprintf(log, sizeof log, "%s/explain_oblique.log", test_tmpdir());
    int n[3] = {30, 26, 20};
    double a[4][4];
    subject_affine(a, n);
    nfv_volume v;
    if (!CHECK_OK(nfv_volume_alloc(&v, n[0], n[1], n[2], a))) return;
    v.sform_code = v.qform_code = 1;
    /* A Gaussian blob (sigma 4 mm) at BLOB on a faint constant brain. */
    for (int k = 0; k < n[2]; k++)
        for (int j = 0; j < n[1]; j++)
            for (int i = 0; i < n[0]; i++) {
                double d2 = 0;
                for (int r = 0; r < 3; r++) {
                    double w = a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3] - BLOB[r];
                    d2 += w * w;
                }
                v.data[((size_t)k * n[1] + j) * n[0] + i] = (float)(0.05 + exp(-d2 / (2 * 16.0)));
            }
    CHECK_OK(nfv_volume_write(subj, &v));
    nfv_volume_free(&v);
    /* A linear model with weight 1 everywhere for class "b": gradient x input
     * is then the input on the model grid, whose peak is the blob. */
    const int in[4] = {1, 16, 20, 18};
    const char *names[2] = {"a", "b"};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), "flatten linear(2)", in, 2, names, NFV_HEAD_SOFTMAX, 1, &m)))
        return;
    m->voxel_mm[0] = m->voxel_mm[1] = m->voxel_mm[2] = 3.0;
    nfv_model_default_grid(m);
    m->norm = NFV_NORM_NONE;
    size_t per = 16 * 20 * 18;
    float *w = malloc(2 * per * sizeof *w);
    for (size_t i = 0; i < 2 * per; i++) w[i] = i < per ? 0.0f : 1.0f;
    CHECK_OK(nfv_tensor_upload(test_ctx(), &m->layers[1].param[0], w));
    free(w);
    CHECK_OK(nfv_model_save(m, model));
    nfv_model_free(m);
    snprintf(cmd, sizeof cmd, "%s explain --model %s --input %s --method gradxinput,saliency --target logit:b --out %s",
             test_bin(), model, subj, out);
    if (!CHECK(test_run(cmd, log) == 0, "explain on the oblique subject runs (log %s)", log)) return;
    /* Tolerance: one model voxel (3 mm) plus the half-voxel of the subject's coarsest axis. */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/explain_check.py %s %s/oblique_subject/gradxinput.nii.gz %g %g %g 4.8",
             subj, out, BLOB[0], BLOB[1], BLOB[2]);
    CHECK(test_run(cmd, NULL) == 0, "the map in subject space peaks on the planted blob (nibabel): %s", cmd);
    snprintf(cmd, sizeof cmd, "test -s %s/oblique_subject/gradxinput.png && test -s %s/summary.csv && test -s %s/index.html", out, out, out);
    CHECK(test_run(cmd, NULL) == 0, "overlay PNG and report written under %s", out);
}

/* A 6 mm lesion cohort (12 subjects) and an untrained model on its grid,
 * under the test folder; made once, by whichever test needs them first. */
static int cohort_and_model(char *dir, char *model, size_t cap)
{
    char cmd[2048], log[512];
    snprintf(dir, cap, "%s/explain_cohort", test_tmpdir());
    snprintf(model, cap, "%s/explain_cohort.safetensors", test_tmpdir());
    snprintf(log, sizeof log, "%s/explain_cohort.log", test_tmpdir());
    snprintf(cmd, sizeof cmd, "test -s %s && test -s %s/labels.csv", model, dir);
    if (test_run(cmd, NULL) == 0) return 1;
    snprintf(cmd, sizeof cmd, "%s synth --n 12 --voxel 6 --lesion-size 24,30 --seed 3 --split 50/0/50 --out %s", test_bin(), dir);
    if (!CHECK(test_run(cmd, log) == 0, "synth (log %s)", log)) return 0;
    const int in[4] = {1, 31, 37, 31};
    const char *names[3] = {"cross", "cube", "sphere"};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), "conv(4,k3,p1) relu maxpool(2) conv(4,k3,p1) relu flatten linear(3)",
                                             in, 3, names, NFV_HEAD_SOFTMAX, 2, &m)))
        return 0;
    m->voxel_mm[0] = m->voxel_mm[1] = m->voxel_mm[2] = 6.0;
    nfv_model_default_grid(m);
    int ok = CHECK_OK(nfv_model_save(m, model));
    nfv_model_free(m);
    return ok;
}

/* Every method on the 6 mm lesion cohort with an untrained model: the run
 * completes, writes every file, and its scores are proportions. */
TEST(explain_cli_all_methods_with_truth)
{
    char dir[512], model[512], out[512], cmd[8192], log[512];
    if (!cohort_and_model(dir, model, sizeof dir)) return;
    snprintf(out, sizeof out, "%s/explain_all", test_tmpdir());
    snprintf(log, sizeof log, "%s/explain_all.log", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s explain --model %s --data %s/labels.csv --split test --method all --samples 3 --steps 8 --box 8 --stride 8 "
             "--batch 3 --truth %s --out %s",
             test_bin(), model, dir, dir, out);
    if (!CHECK(test_run(cmd, log) == 0, "explain --method all --truth runs (log %s)", log)) return;
    FILE *f = NULL;
    char path[700], line[1024];
    snprintf(path, sizeof path, "%s/summary.csv", out);
    f = fopen(path, "r");
    int rows = 0, sane = 1;
    if (CHECK(f != NULL, "%s exists", path)) {
        while (fgets(line, sizeof line, f))
            if (rows++) {
                char name[64];
                int subjects, scored;
                double secs, mass, sd, point;
                if (sscanf(line, "%63[^,],%d,%lf,%d,%lf,%lf,%lf", name, &subjects, &secs, &scored, &mass, &sd, &point) != 7 ||
                    subjects != 6 || scored != 6 || !(mass >= 0 && mass <= 1) || !(point >= 0 && point <= 1))
                    sane = 0, printf("     bad row: %s", line);
            }
        fclose(f);
    }
    CHECK(rows == 7 && sane, "summary.csv has 6 methods with proportions over 6 scored subjects (%d lines)", rows);
    snprintf(cmd, sizeof cmd,
             "test -s %s/mean_gradcam_cube.nii.gz && test -s %s/mean_occlusion.png && test -s %s/summary.md && "
             "test $(wc -l < %s/subjects.csv) -eq 37 && ls %s/sub-*/integrated-gradients.nii.gz >/dev/null",
             out, out, out, out, out);
    CHECK(test_run(cmd, NULL) == 0, "mean maps, Markdown, 36 subject rows and subject maps under %s", out);
    /* Feature visualizations of the same model scored against the same truth. */
    snprintf(cmd, sizeof cmd,
             "(%s visualize --model %s --target logit:all --steps 4 --importance on --out %s/vis && "
             "%s explain --model %s --data %s/labels.csv --method saliency --truth %s --vis %s/vis --out %s/with_vis && "
             "test $(wc -l < %s/with_vis/vis_scores.csv) -eq 4 && grep -q 'logit:cube' %s/with_vis/summary.md)",
             test_bin(), model, out, test_bin(), model, dir, dir, out, out, out, out);
    CHECK(test_run(cmd, log) == 0, "explain --vis scores the 3 logit importance maps (log %s)", log);
    /* Two shards: 3 subjects each, own report folders, the maps of all 6. */
    snprintf(cmd, sizeof cmd,
             "(for s in 1/2 2/2; do %s explain --model %s --data %s/labels.csv --method saliency --shard $s --out %s/sharded "
             "|| exit 1; done; test $(wc -l < %s/sharded/shard-1-of-2/summary.csv) -eq 2 && "
             "grep -q '^saliency,3,' %s/sharded/shard-2-of-2/summary.csv && test $(ls -d %s/sharded/sub-* | wc -l) -eq 6)",
             test_bin(), model, dir, out, out, out, out);
    CHECK(test_run(cmd, log) == 0, "explain --shard 1/2 and 2/2 split the subjects and keep their reports apart (log %s)", log);
}

TEST(explain_cli_bad_arguments)
{
    char cmd[2048], log[512], model[512], dir[512];
    if (!cohort_and_model(dir, model, sizeof dir)) return;
    snprintf(log, sizeof log, "%s/explain_bad.log", test_tmpdir());
    struct {
        const char *args, *want;
    } cases[] = {
        {"--method lrp --input x.nii.gz --out %s/explain_bad_out", "unknown attribution method \"lrp\""},
        {"--input x.nii.gz --data y.csv --out %s/explain_bad_out", "one of --input or --data"},
        {"--input %s/explain_cohort/sub-0001.nii.gz --cam-layer nosuch --method gradcam --target logit:cube --out %s/explain_bad_out", "nosuch"},
        {"--input %s/explain_cohort/sub-0001.nii.gz --baseline /nonexistent.nii.gz --method integrated-gradients --target logit:cube --out %s/explain_bad_out", "--baseline"},
        {"--input %s/explain_cohort/sub-0001.nii.gz --target label --out %s/explain_bad_out", "--target label needs --data"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024];
        const char *t = test_tmpdir();
        /* every case names the temporary folder once or twice (input, output) */
        snprintf(args, sizeof args, cases[i].args, t, t);
        snprintf(cmd, sizeof cmd, "%s explain --model %s %s", test_bin(), model, args);
        int rc = test_run(cmd, log);
        char text[4096] = "";
        FILE *f = fopen(log, "r");
        if (f) {
            size_t got = fread(text, 1, sizeof text - 1, f);
            text[got] = 0;
            fclose(f);
        }
        CHECK(rc != 0 && strstr(text, cases[i].want) && !strstr(text, "Segmentation"),
              "explain %s: exit %d, message names \"%s\": %s", args, rc, cases[i].want, text);
    }
}
