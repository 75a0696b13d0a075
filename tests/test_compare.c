/* `compare` pieces: the high-frequency energy share against a direct double
 * DFT and on volumes whose answer is known, concept recovery on a planted
 * dark shape, the report files, and the command end to end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "neurofv/synth.h"
#include "base/fs.h"
#include "neurofv/compare.h"
#include "test.h"

/* Direct 3D DFT in double: share of |X|^2 at radius > cutoff among f != 0. */
static double hf_reference(const float *v, int D, int H, int W, double cutoff)
{
    double hi = 0, total = 0;
    for (int kz = 0; kz < D; kz++)
        for (int ky = 0; ky < H; ky++)
            for (int kx = 0; kx < W; kx++) {
                if (!kz && !ky && !kx) continue;
                double re = 0, im = 0;
                for (int z = 0; z < D; z++)
                    for (int y = 0; y < H; y++)
                        for (int x = 0; x < W; x++) {
                            double a = -2 * M_PI * ((double)kz * z / D + (double)ky * y / H + (double)kx * x / W);
                            double s = v[((size_t)z * H + y) * W + x];
                            re += s * cos(a);
                            im += s * sin(a);
                        }
                double e = re * re + im * im;
                double fz = (kz <= D / 2 ? kz : D - kz) / (double)D, fy = (ky <= H / 2 ? ky : H - ky) / (double)H,
                       fx = (kx <= W / 2 ? kx : W - kx) / (double)W;
                total += e;
                if (sqrt(fz * fz + fy * fy + fx * fx) > cutoff) hi += e;
            }
    return hi / total;
}

TEST(compare_highfreq_share)
{
    nfv_context *ctx = test_ctx();
    int D = 7, H = 9, W = 11;
    nfv_volume v;
    CHECK_OK(nfv_volume_alloc(&v, W, H, D, NULL));
    float *r = test_random((size_t)D * H * W, 3, -1, 1);
    memcpy(v.data, r, sizeof(float) * D * H * W);
    free(r);
    double got = -1, want = hf_reference(v.data, D, H, W, 0.25);
    CHECK_OK(nfv_highfreq_share(ctx, &v, 0.25, &got));
    /* Hartley energy over symmetric frequency sets equals the DFT's; float32
     * transform of 693 values: 1e-4 is ample. */
    CHECK(fabs(got - want) < 1e-4, "HF share of noise %.6f vs direct double DFT %.6f", got, want);
    /* A slow cosine (1 cycle across x): no energy above 0.25 cycles/voxel. */
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) v.data[((size_t)z * H + y) * W + x] = (float)cos(2 * M_PI * x / W) + 5.0f;
    CHECK_OK(nfv_highfreq_share(ctx, &v, 0.25, &got));
    CHECK(got < 1e-4, "smooth cosine: HF share %.2g ~ 0", got);
    /* A checkerboard along z and y (0.5 - 1/(2n) cycles/voxel on the odd sizes): all energy high. */
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) v.data[((size_t)z * H + y) * W + x] = ((z + y) & 1) ? 1.0f : -1.0f;
    CHECK_OK(nfv_highfreq_share(ctx, &v, 0.25, &got));
    want = hf_reference(v.data, D, H, W, 0.25);
    CHECK(got > 0.9 && fabs(got - want) < 1e-4, "checkerboard: HF share %.4f (direct %.4f) > 0.9", got, want);
    nfv_volume_free(&v);
}

/* A tiny 2-class model (cube, sphere) on a 2 mm grid, and a truth directory
 * with the two shape templates and an all-brain mask on that grid. */
static nfv_model *shape_model(char *truth_dir, size_t cap)
{
    static const char *names[] = {"cube", "sphere"};
    int in[4] = {1, 20, 22, 19};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), "conv(2,k3,p1) relu flatten linear(2)", in, 2, names,
                                             NFV_HEAD_SOFTMAX, 4, &m)))
        return NULL;
    snprintf(truth_dir, cap, "%s/truth", test_tmpdir());
    char path[600];
    snprintf(path, sizeof path, "%s/shapes", truth_dir);
    CHECK_OK(nfv_mkdirs(path));
    nfv_shape shapes[2] = {NFV_SHAPE_CUBE, NFV_SHAPE_SPHERE};
    for (int i = 0; i < 2; i++) {
        nfv_volume t;
        if (!CHECK_OK(nfv_synth_shape_template(shapes[i], 11.0, 2.0, &t))) continue;
        snprintf(path, sizeof path, "%s/shapes/%s.nii.gz", truth_dir, names[i]);
        CHECK_OK(nfv_volume_write(path, &t));
        nfv_volume_free(&t);
    }
    nfv_volume mask;
    CHECK_OK(nfv_volume_alloc(&mask, in[3], in[2], in[1], (const double(*)[4])m->affine));
    for (size_t i = 0; i < nfv_volume_numel(&mask); i++) mask.data[i] = 1.0f;
    snprintf(path, sizeof path, "%s/mask.nii.gz", truth_dir);
    CHECK_OK(nfv_volume_write(path, &mask));
    nfv_volume_free(&mask);
    /* This cohort's lesions are dark (intensity below white matter), so
     * concept recovery must negate the visualization. */
    snprintf(path, sizeof path, "%s/cohort.json", truth_dir);
    FILE *f = fopen(path, "w");
    if (CHECK(f != NULL, "writing %s", path)) {
        fputs("{\"task\": \"lesion\", \"lesion_intensity\": [0.4, 0.7]}\n", f);
        fclose(f);
    }
    return m;
}

TEST(compare_truth_recovers_planted_shape)
{
    char truth_dir[512];
    nfv_model *m = shape_model(truth_dir, sizeof truth_dir);
    if (!m) return;
    nfv_truth t;
    if (!CHECK_OK(nfv_truth_load(m, truth_dir, &t))) {
        nfv_model_free(m);
        return;
    }
    CHECK(t.count == 2 && !strcmp(t.names[0], "cube") && !strcmp(t.names[1], "sphere"), "two shapes, sorted");
    CHECK(t.polarity == -1, "cohort.json with lesion_intensity < 1 gives polarity -1, got %d", t.polarity);
    nfv_shape shapes[2] = {NFV_SHAPE_CUBE, NFV_SHAPE_SPHERE};
    for (int s = 0; s < 2; s++) {
        /* A dark (negative) shape at a world point off the centre, plus weak noise. */
        nfv_volume v, occ;
        CHECK_OK(nfv_volume_alloc(&v, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                                  (const double(*)[4])m->affine));
        CHECK_OK(nfv_volume_clone(&v, &occ));
        double world[3] = {v.affine[0][3] + 2.0 * 8, v.affine[1][3] + 2.0 * 12, v.affine[2][3] + 2.0 * 9};
        CHECK_OK(nfv_synth_shape_paint(&occ, shapes[s], 11.0, world));
        float *noise = test_random(nfv_volume_numel(&v), 9 + s, -0.05f, 0.05f);
        for (size_t i = 0; i < nfv_volume_numel(&v); i++) v.data[i] = -occ.data[i] + noise[i];
        free(noise);
        double score[2];
        int pos[2][3];
        if (CHECK_OK(nfv_truth_scores(&t, &v, score, pos))) {
            CHECK(score[s] > score[1 - s] && score[s] > 0.8,
                  "planted dark %s: own NCC %.3f beats the other shape's %.3f and exceeds 0.8", t.names[s], score[s],
                  score[1 - s]);
            /* The shape was painted at voxel (8, 12, 9) (2 mm grid, axis-aligned affine). */
            CHECK(pos[s][0] == 8 && pos[s][1] == 12 && pos[s][2] == 9, "planted %s found at voxel %d,%d,%d, want 8,12,9",
                  t.names[s], pos[s][0], pos[s][1], pos[s][2]);
        }
        nfv_volume_free(&v);
        nfv_volume_free(&occ);
    }
    /* The mask alone: a ball of the sphere template's size at voxel (9, 10, 9)
     * scores as a sphere (the ball is 0/1 at voxel centres, the template
     * partial-volume: NCC > 0.9), and as no cube. */
    double world[3] = {m->affine[0][3] + 2.0 * 9, m->affine[1][3] + 2.0 * 10, m->affine[2][3] + 2.0 * 9}, ms[2];
    char spec[160];
    snprintf(spec, sizeof spec, "ball=5.5@%g,%g,%g", world[0], world[1], world[2]);
    if (CHECK_OK(nfv_truth_mask_control(m, &t, spec, ms)))
        CHECK(ms[1] > 0.9 && ms[1] > ms[0], "the mask %s alone: sphere %.3f, cube %.3f", spec, ms[1], ms[0]);
    CHECK(nfv_truth_mask_control(m, &t, "ball=x", ms) == NFV_ERR_INVALID_ARG && strstr(nfv_error_message(), "alone"),
          "a bad mask names the control: %s", nfv_error_message());
    nfv_truth_free(&t);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/nowhere", test_tmpdir());
    CHECK(nfv_truth_load(m, bad, &t) == NFV_ERR_IO && strstr(nfv_error_message(), "shapes"),
          "missing truth dir: %s", nfv_error_message());
    nfv_model_free(m);
}

/* Writes a sized lesion cohort beside shape_model's truth: cohort.json with
 * lesion_size_mm [8, 16] and the cube's volume-matching scale, and per class
 * two subjects (test split) whose lesion masks are the shape at the smallest
 * and the largest size; the subject volumes are the masks themselves. */
static void sized_cohort(const nfv_model *m, const char *truth_dir)
{
    char path[700];
    snprintf(path, sizeof path, "%s/lesion_masks", truth_dir);
    CHECK_OK(nfv_mkdirs(path));
    snprintf(path, sizeof path, "%s/cohort.json", truth_dir);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL, "writing %s", path)) return;
    fputs("{\"task\": \"lesion\", \"lesion_size_mm\": [8, 16], \"lesion_intensity\": [1.5, 1.8], "
          "\"size_scale\": {\"cube\": 0.8063, \"sphere\": 1.0}}\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/labels.csv", truth_dir);
    FILE *csv = fopen(path, "w");
    if (!CHECK(csv != NULL, "writing %s", path)) return;
    fputs("path,label,split\n", csv);
    const char *names[2] = {"cube", "sphere"};
    const nfv_shape shapes[2] = {NFV_SHAPE_CUBE, NFV_SHAPE_SPHERE};
    const double scale[2] = {0.8063, 1.0}, size[2] = {8.0, 16.0};
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < 2; k++) {
            nfv_volume v;
            if (!CHECK_OK(nfv_volume_alloc(&v, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                                           (const double(*)[4])m->affine)))
                continue;
            double world[3] = {v.affine[0][3] + 2.0 * 9, v.affine[1][3] + 2.0 * 10, v.affine[2][3] + 2.0 * 9};
            CHECK_OK(nfv_synth_shape_paint(&v, shapes[c], size[k] * scale[c], world));
            snprintf(path, sizeof path, "%s/lesion_masks/%s%d.nii.gz", truth_dir, names[c], k);
            CHECK_OK(nfv_volume_write(path, &v));
            snprintf(path, sizeof path, "%s/%s%d.nii.gz", truth_dir, names[c], k);
            CHECK_OK(nfv_volume_write(path, &v));
            fprintf(csv, "%s%d.nii.gz,%s,test\n", names[c], k, names[c]);
            nfv_volume_free(&v);
        }
    fclose(csv);
}

TEST(compare_truth_sizes_and_real_lesions)
{
    char truth_dir[512];
    nfv_model *m = shape_model(truth_dir, sizeof truth_dir);
    if (!m) return;
    /* One template per shape (the files) against three sizes: the smallest
     * cube lesion (6.5 mm in an 11 mm template) is found better by the sized truth. */
    nfv_truth one, sized;
    if (!CHECK_OK(nfv_truth_load(m, truth_dir, &one))) {
        nfv_model_free(m);
        return;
    }
    CHECK(one.sizes == 1 && one.size_mm[0] == 0.0, "without lesion sizes in cohort.json: the file, 1 template");
    sized_cohort(m, truth_dir);
    if (CHECK_OK(nfv_truth_load(m, truth_dir, &sized))) {
        CHECK(sized.sizes == NFV_TRUTH_SIZES && fabs(sized.size_mm[0] - 8.0 * 0.8063) < 1e-9 &&
                  fabs(sized.size_mm[1] - 12.0 * 0.8063) < 1e-9 && fabs(sized.size_mm[5] - 16.0) < 1e-9,
              "cohort sizes: %d templates per shape, cube %.3f/%.3f mm, sphere up to %.3f mm", sized.sizes,
              sized.size_mm[0], sized.size_mm[1], sized.size_mm[5]);
        CHECK(sized.polarity == 1, "bright lesions: polarity %d", sized.polarity);
        char path[700];
        snprintf(path, sizeof path, "%s/lesion_masks/cube0.nii.gz", truth_dir);
        nfv_volume small;
        if (CHECK_OK(nfv_volume_read(path, &small, NULL))) {
            double s1[2], s3[2];
            nfv_status st1 = nfv_truth_scores(&sized, &small, s3, NULL);
            /* shape_model's cohort is dark: drawn dark for the one-template truth. */
            for (size_t i = 0; i < nfv_volume_numel(&small); i++) small.data[i] *= (float)one.polarity;
            if (CHECK_OK(st1) && CHECK_OK(nfv_truth_scores(&one, &small, s1, NULL)))
                CHECK(s3[0] > s1[0] + 0.02 && s3[0] > 0.99 && s3[0] - s3[1] > s1[0] - s1[1],
                      "a 6.5 mm cube: own NCC %.3f with sizes (margin %.3f) against %.3f with the middle template "
                      "(margin %.3f)", s3[0], s3[0] - s3[1], s1[0], s1[0] - s1[1]);
            nfv_volume_free(&small);
        }
        /* The real-lesion reference: every mask recovered, as the same scorer sees it. */
        nfv_truth_reference_row ref[2];
        if (CHECK_OK(nfv_truth_reference(m, &sized, truth_dir, 10, ref)))
            for (int c = 0; c < 2; c++)
                CHECK(!strcmp(ref[c].name, sized.names[c]) && ref[c].subjects == 2 && ref[c].recovered == 2 &&
                          ref[c].own_median > 0.95 && ref[c].margin_min > 0.0 &&
                          ref[c].margin_min <= ref[c].margin_median,
                      "%s: %d lesions, %d recovered, own NCC %.3f, margin %.3f (min %.3f)", ref[c].name,
                      ref[c].subjects, ref[c].recovered, ref[c].own_median, ref[c].margin_median, ref[c].margin_min);
        /* At most per_class subjects a class. */
        if (CHECK_OK(nfv_truth_reference(m, &sized, truth_dir, 1, ref)))
            CHECK(ref[0].subjects == 1 && ref[1].subjects == 1, "per_class 1: %d and %d lesions", ref[0].subjects,
                  ref[1].subjects);
        nfv_truth_free(&sized);
    }
    /* A cohort.json that is not JSON is named, not taken as a cohort without one. */
    char path[700];
    snprintf(path, sizeof path, "%s/cohort.json", truth_dir);
    FILE *f = fopen(path, "w");
    if (CHECK(f != NULL, "writing %s", path)) {
        fputs("{\"lesion_size_mm\": [8, ", f);
        fclose(f);
        nfv_truth bad;
        CHECK(nfv_truth_load(m, truth_dir, &bad) == NFV_ERR_FORMAT && strstr(nfv_error_message(), "not valid JSON"),
              "truncated cohort.json: %s", nfv_error_message());
    }
    nfv_truth_free(&one);
    nfv_model_free(m);
}

/* compare --truth on a real synth cohort: the "What a real lesion scores"
 * table (held-out shapes at 6 mm, with the pyramid whose box used to poke out
 * of the brain) against tests/truth_check.py, an independent SciPy scorer. */
TEST(compare_truth_reference_matches_scipy)
{
    char dir[600], model[600], out[600], log[700], cmd[4096];
    snprintf(dir, sizeof dir, "%s/truth_ref_cohort", test_tmpdir());
    snprintf(model, sizeof model, "%s/truth_ref.safetensors", test_tmpdir());
    snprintf(out, sizeof out, "%s/truth_ref_cmp", test_tmpdir());
    snprintf(log, sizeof log, "%s/truth_ref.log", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s synth --n 36 --voxel 6 --lesion-size 24,32 --match-volume --shapes torus,cylinder,pyramid --seed 4 "
             "--split 50/0/50 --out %s",
             test_bin(), dir);
    if (!CHECK(test_run(cmd, log) == 0, "synth (log %s)", log)) return;
    const int in[4] = {1, 31, 37, 31};
    const char *names[3] = {"cylinder", "pyramid", "torus"};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), "conv(2,k3,p1) relu flatten linear(3)", in, 3, names,
                                             NFV_HEAD_SOFTMAX, 2, &m)))
        return;
    m->voxel_mm[0] = m->voxel_mm[1] = m->voxel_mm[2] = 6.0;
    nfv_model_default_grid(m);
    CHECK_OK(nfv_model_save(m, model));
    nfv_model_free(m);
    snprintf(cmd, sizeof cmd,
             "%s compare --model %s --target logit:all --truth %s --out %s --steps 1 --configs none,one-lesion "
             "--background none",
             test_bin(), model, dir, out);
    if (!CHECK(test_run(cmd, log) == 0, "compare --truth runs (log %s)", log)) return;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/truth_check.py %s %s/results.md", dir, out);
    CHECK(test_run(cmd, NULL) == 0, "the real-lesion table agrees with SciPy: %s", cmd);
    snprintf(cmd, sizeof cmd,
             "grep -q 'What a real lesion scores' %s/index.html && grep -q '^real pyramid ' %s && "
             "grep -q '^| one-lesion | `ball=24` |' %s/results.md && grep -q 'What the mask alone scores' %s/index.html "
             "&& test $(sed -n '/^## What the mask alone/,/^## Per target/p' %s/results.md | grep -c '^| [a-z]') -eq 2",
             out, log, out, out, out);
    CHECK(test_run(cmd, NULL) == 0, "the tables are in results.md, index.html and on stdout; none has no mask row (%s)",
          log);
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

TEST(compare_cli_end_to_end)
{
    char truth_dir[512];
    nfv_model *m = shape_model(truth_dir, sizeof truth_dir);
    if (!m) return;
    char model[600], out[600], cmd[3000], path[700];
    snprintf(model, sizeof model, "%s/cmp.safetensors", test_tmpdir());
    snprintf(out, sizeof out, "%s/cmp", test_tmpdir());
    CHECK_OK(nfv_model_save(m, model));
    snprintf(cmd, sizeof cmd,
             "%s compare --model %s --target logit:all --truth %s --out %s --steps 3 --background none "
             "--config 'l2=--l2 0.5' --config 'mine=--tv 0.2 --jitter 1' --configs none,l2,fourier,mine",
             test_bin(), model, truth_dir, out);
    CHECK(test_run(cmd, NULL) == 0, "compare runs: %s", cmd);
    snprintf(path, sizeof path, "%s/results.csv", out);
    /* header + 4 configurations x 2 classes */
    CHECK(count_lines(path) == 9, "results.csv has 1 + 8 lines (%d)", count_lines(path));
    CHECK(file_contains(path, "mine,1,logit:sphere,") && file_contains(path, "l2,1,logit:cube,"),
          "rows per config x target, with the seed");
    snprintf(path, sizeof path, "%s/results.md", out);
    CHECK(file_contains(path, "| l2 | `--l2 0.5` |") && file_contains(path, "/2 |"),
          "results.md: overridden options and k/K recovered in the summary");
    snprintf(path, sizeof path, "%s/index.html", out);
    CHECK(file_contains(path, "<th>fourier</th>") && file_contains(path, "fourier/logit_cube_match.png") &&
              file_contains(path, "fourier/logit_cube_ortho.png"),
          "index.html: configurations as columns with images through the match (and the peak)");
    snprintf(path, sizeof path, "%s/mine/logit_sphere.nii.gz", out);
    struct stat sb;
    CHECK(stat(path, &sb) == 0, "per-configuration volumes written (%s)", path);
    snprintf(path, sizeof path, "%s/mine/logit_sphere_match.png", out);
    CHECK(stat(path, &sb) == 0, "slices through the own shape's match written (%s)", path);
    snprintf(cmd, sizeof cmd, "%s compare --model %s --target logit:all --out %s --config 'x=--l2 -3' 2>&1 | grep -q 'x'",
             test_bin(), model, out);
    CHECK(test_run(cmd, NULL) == 0, "a bad configuration is named in the error");

    /* --seeds: one run per seed in <config>/seed<S>/; seed 1 reproduces the single-seed run above. */
    char out2[600];
    snprintf(out2, sizeof out2, "%s/cmp-seeds", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s compare --model %s --target logit:all --truth %s --out %s --steps 3 --background none "
             "--configs none,l2 --config 'l2=--l2 0.5' --seeds 2,1",
             test_bin(), model, truth_dir, out2);
    CHECK(test_run(cmd, NULL) == 0, "compare --seeds runs: %s", cmd);
    snprintf(path, sizeof path, "%s/results.csv", out2);
    CHECK(count_lines(path) == 9, "results.csv has 1 + 2 configs x 2 seeds x 2 classes lines (%d)", count_lines(path));
    CHECK(file_contains(path, "none,2,logit:cube,") && file_contains(path, "l2,1,logit:sphere,"), "rows per seed");
    nfv_volume a, b;
    char pa[800], pb[800];
    snprintf(pa, sizeof pa, "%s/l2/logit_cube.nii.gz", out);
    snprintf(pb, sizeof pb, "%s/l2/seed1/logit_cube.nii.gz", out2);
    if (CHECK_OK(nfv_volume_read(pa, &a, NULL))) {
        if (CHECK_OK(nfv_volume_read(pb, &b, NULL))) {
            CHECK(nfv_volume_numel(&a) == nfv_volume_numel(&b) &&
                      !memcmp(a.data, b.data, nfv_volume_numel(&a) * sizeof *a.data),
                  "seed 1 of --seeds 2,1 gives the same volume as the single run with --seed 1");
            nfv_volume_free(&b);
        }
        snprintf(pb, sizeof pb, "%s/l2/seed2/logit_cube.nii.gz", out2);
        if (CHECK_OK(nfv_volume_read(pb, &b, NULL))) {
            CHECK(nfv_volume_numel(&a) == nfv_volume_numel(&b) &&
                      memcmp(a.data, b.data, nfv_volume_numel(&a) * sizeof *a.data),
                  "seed 2 gives another volume");
            nfv_volume_free(&b);
        }
        nfv_volume_free(&a);
    }
    snprintf(path, sizeof path, "%s/results.md", out2);
    CHECK(file_contains(path, "Seeds: 2, 1.") && file_contains(path, " seeds | "),
          "results.md names the seeds and counts complete recoveries per family over seeds");
    snprintf(path, sizeof path, "%s/index.html", out2);
    CHECK(file_contains(path, "l2/seed2/logit_cube_ortho.png") && file_contains(path, "<br>seed 1</th>"),
          "index.html: one image row per seed");
    snprintf(cmd, sizeof cmd, "%s compare --model %s --target logit:all --out %s --seeds 1,x,3 2>&1 | grep -q -- '--seeds'",
             test_bin(), model, out2);
    CHECK(test_run(cmd, NULL) == 0, "a malformed --seeds list is refused with its name");
    snprintf(cmd, sizeof cmd, "%s compare --model %s --target logit:all --out %s --seeds 1,1 2>&1 | grep -q 'twice'",
             test_bin(), model, out2);
    CHECK(test_run(cmd, NULL) == 0, "a repeated seed is refused");
    nfv_model_free(m);
}

/* The value of column `name` in CSV line `line` (header `header`), or NAN. */
static double csv_field(const char *header, const char *line, const char *name)
{
    char h[4096], l[4096];
    snprintf(h, sizeof h, "%s", header);
    snprintf(l, sizeof l, "%s", line);
    int want = -1, k = 0;
    char *save = NULL;
    for (char *t = strtok_r(h, ",\n", &save); t; t = strtok_r(NULL, ",\n", &save), k++)
        if (!strcmp(t, name)) want = k;
    if (want < 0) return NAN;
    /* Fields may be empty: split by hand. */
    char *p = l;
    for (k = 0; k < want && p; k++) {
        p = strchr(p, ',');
        if (p) p++;
    }
    return p && *p && *p != ',' ? atof(p) : NAN;
}

/* compare --score mis end to end: eight subjects on the model grid, the
 * columns in results.csv (contrastive mis and mis_plain in [0, 1], the
 * pairs), and a --resume run that rescores every row from the files gives
 * the same numbers. */
TEST(compare_cli_score_mis)
{
    char truth_dir[512];
    nfv_model *m = shape_model(truth_dir, sizeof truth_dir);
    if (!m) return;
    char model[600], out[600], csv[700], cmd[3000], path[800];
    snprintf(model, sizeof model, "%s/mis.safetensors", test_tmpdir());
    snprintf(out, sizeof out, "%s/cmp-mis", test_tmpdir());
    snprintf(csv, sizeof csv, "%s/mis-subjects.csv", test_tmpdir());
    CHECK_OK(nfv_model_save(m, model));
    FILE *f = fopen(csv, "w");
    if (!CHECK(f != NULL, "writing %s", csv)) return;
    fputs("path,label,split\n", f);
    unsigned long long state = 9;
    for (int i = 0; i < 8; i++) {
        nfv_volume v;
        if (!CHECK_OK(nfv_volume_alloc(&v, 19, 22, 20, (const double(*)[4])m->affine))) break;
        for (size_t q = 0; q < nfv_volume_numel(&v); q++) v.data[q] = (float)test_uniform(&state);
        snprintf(path, sizeof path, "%s/mis-sub%d.nii.gz", test_tmpdir(), i);
        CHECK_OK(nfv_volume_write(path, &v));
        nfv_volume_free(&v);
        fprintf(f, "%s,%s,test\n", path, i % 2 ? "cube" : "sphere");
    }
    fclose(f);
    char base[2600];
    snprintf(base, sizeof base,
             "%s compare --model %s --target logit:all --truth %s --out %s --steps 3 --background none "
             "--configs none,l2 --score mis --data %s --mis-pairs 40",
             test_bin(), model, truth_dir, out, csv);
    CHECK(test_run(base, NULL) == 0, "compare --score mis runs: %s", base);
    double first[4][4];
    for (int pass = 0; pass < 2; pass++) {
        if (pass) {
            snprintf(cmd, sizeof cmd, "%s --resume", base);
            CHECK(test_run(cmd, NULL) == 0, "compare --score mis --resume runs: %s", cmd);
        }
        snprintf(path, sizeof path, "%s/results.csv", out);
        f = fopen(path, "r");
        if (!CHECK(f != NULL, "%s", path)) break;
        char header[4096] = "", line[4096];
        int rows = 0;
        if (!fgets(header, sizeof header, f)) header[0] = 0;
        CHECK(strstr(header, ",mis,") && strstr(header, ",mis_plain") && strstr(header, ",focus_share,focus_x_mm") &&
                  strstr(header, ",stretch"),
              "results.csv has mis, mis_plain, the focus share and the stretch: %s", header);
        while (rows < 4 && fgets(line, sizeof line, f)) {
            double mis = csv_field(header, line, "mis"), plain = csv_field(header, line, "mis_plain"),
                   pairs = csv_field(header, line, "mis_pairs");
            CHECK(mis >= 0 && mis <= 1 && plain >= 0 && plain <= 1 && pairs == 40,
                  "row %d: mis %g, mis_plain %g in [0, 1], pairs %g = 40", rows, mis, plain, pairs);
            /* Empty (NaN) only when the picture does not beat the weak subjects. */
            double focus = csv_field(header, line, "focus_share"), fx = csv_field(header, line, "focus_x_mm");
            CHECK(isfinite(fx) && (isnan(focus) || fabs(focus) < 100), "row %d: focus share %g at x %g mm", rows,
                  focus, fx);
            /* The pictures were optimized for their unit: past the cohort's mean subject. */
            double stretch = csv_field(header, line, "stretch");
            CHECK(isfinite(stretch) && stretch > 0, "row %d: stretch %g > 0", rows, stretch);
            if (!pass) first[rows][0] = mis, first[rows][1] = plain, first[rows][2] = focus, first[rows][3] = stretch;
            else
                CHECK(mis == first[rows][0] && plain == first[rows][1] &&
                          (focus == first[rows][2] || (isnan(focus) && isnan(first[rows][2]))) &&
                          stretch == first[rows][3],
                      "row %d rescored by --resume: mis %g / %g, plain %g / %g, focus %g / %g, stretch %g / %g", rows,
                      first[rows][0], mis, first[rows][1], plain, first[rows][2], focus, first[rows][3], stretch);
            rows++;
        }
        fclose(f);
        CHECK(rows == 4, "2 configurations x 2 classes rows (%d)", rows);
    }
    /* --mis-layer: a layer that is not there, or not (C, D, H, W), is refused naming it. */
    snprintf(cmd, sizeof cmd, "%s --mis-layer nope 2>&1 | grep -q 'mis-layer nope: no such layer'", base);
    CHECK(test_run(cmd, NULL) == 0, "an unknown --mis-layer is refused with its name");
    snprintf(cmd, sizeof cmd, "%s --mis-layer %s 2>&1 | grep -q 'not a (C, D, H, W) layer'", base,
             m->layers[m->layer_count - 1].name);
    CHECK(test_run(cmd, NULL) == 0, "a flat --mis-layer is refused");
    snprintf(cmd, sizeof cmd, "%s --focus-radius 0 2>&1 | grep -q 'focus-radius must be > 0'", base);
    CHECK(test_run(cmd, NULL) == 0, "--focus-radius 0 is refused");
    nfv_model_free(m);
}

/* The family summary: per (target family, seed), complete when every class row was recovered. */
TEST(compare_recovery_text_counts_complete_seeds)
{
    nfv_compare_row rows[8];
    memset(rows, 0, sizeof rows);
    const char *targets[4] = {"logit:a", "logit:b", "contrast:a", "contrast:b"};
    /* seed 1: logit a+b recovered, contrast b missed; seed 2: logit b missed, contrast both recovered. */
    int recovered[8] = {1, 1, 1, 0, 1, 0, 1, 1};
    for (int i = 0; i < 8; i++) {
        snprintf(rows[i].config, sizeof rows[i].config, "cfg");
        snprintf(rows[i].target, sizeof rows[i].target, "%s", targets[i % 4]);
        snprintf(rows[i].truth_class, sizeof rows[i].truth_class, "%s", targets[i % 4] + strcspn(targets[i % 4], ":") + 1);
        rows[i].seed = 1 + (unsigned)(i / 4);
        rows[i].has_truth = 1;
        rows[i].recovered = recovered[i];
    }
    char text[256];
    nfv_compare_recovery_text("cfg", rows, 8, text, sizeof text);
    CHECK(!strcmp(text, "logit 1/2 seeds, contrast 1/2 seeds"), "got \"%s\"", text);
    rows[6].recovered = rows[7].recovered = 0;
    rows[3].recovered = 1;
    nfv_compare_recovery_text("cfg", rows, 8, text, sizeof text);
    CHECK(!strcmp(text, "logit 1/2 seeds, contrast 1/2 seeds"), "got \"%s\"", text);
    rows[5].recovered = 1;
    nfv_compare_recovery_text("cfg", rows, 8, text, sizeof text);
    CHECK(!strcmp(text, "logit 2/2 seeds, contrast 1/2 seeds"), "got \"%s\"", text);
    nfv_compare_recovery_text("other", rows, 8, text, sizeof text);
    CHECK(!strcmp(text, "-"), "no rows of the config: got \"%s\"", text);
    snprintf(rows[0].target, sizeof rows[0].target, "logit:a@1,2,3");
    nfv_compare_recovery_text("cfg", rows, 8, text, sizeof text);
    CHECK(!strcmp(text, "logit@1,2,3 1/1 seed, logit 2/2 seeds, contrast 1/2 seeds"), "cells are their own family: \"%s\"", text);
}
