/* `synth`: determinism, balanced labels and stratified splits, lesions inside
 * the brain and shaped as their label, shape templates, bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/synth.h"
#include "test.h"

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* Same bytes for one file in two directories. */
static int same_file(const char *a_dir, const char *b_dir, const char *name)
{
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/%s", a_dir, name);
    snprintf(pb, sizeof pb, "%s/%s", b_dir, name);
    size_t la, lb;
    char *a = read_all(pa, &la), *b = read_all(pb, &lb);
    int same = a && b && la == lb && memcmp(a, b, la) == 0;
    free(a);
    free(b);
    return same;
}

TEST(synth_determinism_same_seed_same_bytes)
{
    char a[512], b[512], c[512], cmd[2048];
    snprintf(a, sizeof a, "%s/synth_a", test_tmpdir());
    snprintf(b, sizeof b, "%s/synth_b", test_tmpdir());
    snprintf(c, sizeof c, "%s/synth_c", test_tmpdir());
    /* Same seed, different thread counts: identical bytes. */
    snprintf(cmd, sizeof cmd, "%s synth --n 12 --voxel 6 --seed 7 --threads 1 --out %s", test_bin(), a);
    CHECK(test_run(cmd, NULL) == 0, "synth run A failed: %s", cmd);
    snprintf(cmd, sizeof cmd, "%s synth --n 12 --voxel 6 --seed 7 --threads 2 --out %s", test_bin(), b);
    CHECK(test_run(cmd, NULL) == 0, "synth run B failed: %s", cmd);
    snprintf(cmd, sizeof cmd, "%s synth --n 12 --voxel 6 --seed 8 --threads 2 --out %s", test_bin(), c);
    CHECK(test_run(cmd, NULL) == 0, "synth run C failed: %s", cmd);
    const char *files[] = {"labels.csv", "mask.nii.gz", "template.nii.gz", "shapes/cube.nii.gz", "shapes/cross.nii.gz",
                           "sub-0001.nii.gz", "sub-0007.nii.gz", "sub-0012.nii.gz", "lesion_masks/sub-0003.nii.gz",
                           "lesion_masks/sub-0012.nii.gz"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        CHECK(same_file(a, b, files[i]), "%s differs between two runs with seed 7", files[i]);
    CHECK(!same_file(a, c, "sub-0001.nii.gz"), "seeds 7 and 8 gave the same sub-0001");
}

typedef struct cohort_row { char path[64], label[32], split[16]; } cohort_row;

static int read_labels(const char *dir, cohort_row *rows, int cap)
{
    char path[8192], line[256];
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        if (n < 0) {
            n = strcmp(line, "path,label,split\n") == 0 ? 0 : -2;
            if (n == -2) break;
            continue;
        }
        if (n >= cap) break;
        if (sscanf(line, "%63[^,],%31[^,],%15[^\n]", rows[n].path, rows[n].label, rows[n].split) == 3) n++;
    }
    fclose(f);
    return n;
}

TEST(synth_labels_balanced_and_splits_stratified)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/synth_split", test_tmpdir());
    nfv_synth_options o;
    nfv_synth_options_default(&o);
    o.n = 43; /* not a multiple of the 4 classes */
    o.voxel_mm = 8;
    o.no_lesion_class = 1;
    o.seed = 3;
    o.out_dir = dir;
    if (!CHECK_OK(nfv_synth_run(&o))) return;
    cohort_row rows[64];
    int n = read_labels(dir, rows, 64);
    CHECK(n == 43, "labels.csv has %d rows, want 43 (header must be path,label,split)", n);
    const char *classes[4] = {"sphere", "cube", "cross", "none"};
    int cmin = 1 << 30, cmax = 0;
    for (int c = 0; c < 4; c++) {
        int m = 0, tr = 0, va = 0, te = 0;
        for (int i = 0; i < n; i++) {
            if (strcmp(rows[i].label, classes[c])) continue;
            m++;
            tr += !strcmp(rows[i].split, "train");
            va += !strcmp(rows[i].split, "val");
            te += !strcmp(rows[i].split, "test");
        }
        if (m < cmin) cmin = m;
        if (m > cmax) cmax = m;
        /* Per class: round(70 %) train, round(15 %) val, the rest test. */
        int want_tr = (int)floor(m * 0.70 + 0.5), want_va = (int)floor(m * 0.15 + 0.5);
        CHECK(tr == want_tr && va == want_va && te == m - want_tr - want_va,
              "class %s (%d subjects): train/val/test %d/%d/%d, want %d/%d/%d", classes[c], m, tr, va, te, want_tr,
              want_va, m - want_tr - want_va);
        char p[8192];
        for (int i = 0; i < n; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, rows[i].path);
            FILE *f = fopen(p, "rb");
            if (!CHECK(f != NULL, "row %d: %s missing", i + 1, p)) break;
            fclose(f);
        }
    }
    CHECK(cmax - cmin <= 1 && cmin > 0, "class sizes %d..%d are not balanced", cmin, cmax);
    /* Labels are shuffled, not in blocks: the first four rows are not all one class. */
    CHECK(strcmp(rows[0].label, rows[1].label) || strcmp(rows[1].label, rows[2].label) ||
              strcmp(rows[2].label, rows[3].label),
          "first rows all have label %s", rows[0].label);
}

/* NCC of a window of `v` centred at voxel c (same size as t) with t. */
static double ncc_at(const nfv_volume *v, const int c[3], const nfv_volume *t)
{
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    int n = 0;
    for (int k = 0; k < t->nz; k++)
        for (int j = 0; j < t->ny; j++)
            for (int i = 0; i < t->nx; i++) {
                int x = c[0] + i - t->nx / 2, y = c[1] + j - t->ny / 2, z = c[2] + k - t->nz / 2;
                double a = 0;
                if (x >= 0 && y >= 0 && z >= 0 && x < v->nx && y < v->ny && z < v->nz)
                    a = v->data[((size_t)z * v->ny + y) * v->nx + x];
                double b = t->data[((size_t)k * t->ny + j) * t->nx + i];
                sa += a, sb += b, saa += a * a, sbb += b * b, sab += a * b, n++;
            }
    double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
    return va > 0 && vb > 0 ? cov / sqrt(va * vb) : 0.0;
}

TEST(synth_lesions_inside_brain_and_shaped_as_label)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/synth_lesion", test_tmpdir());
    nfv_synth_options o;
    nfv_synth_options_default(&o);
    o.n = 9;
    o.voxel_mm = 2;
    o.seed = 11;
    o.out_dir = dir;
    if (!CHECK_OK(nfv_synth_run(&o))) return;
    cohort_row rows[16];
    int n = read_labels(dir, rows, 16);
    CHECK(n == 9, "labels.csv has %d rows, want 9", n);
    char p[8192];
    nfv_volume mask, tmpl, shapes[3];
    const char *names[3] = {"sphere", "cube", "cross"};
    snprintf(p, sizeof p, "%s/mask.nii.gz", dir);
    if (!CHECK_OK(nfv_volume_read(p, &mask, NULL))) return;
    snprintf(p, sizeof p, "%s/template.nii.gz", dir);
    if (!CHECK_OK(nfv_volume_read(p, &tmpl, NULL))) return;
    CHECK(mask.nx == 91 && mask.ny == 109 && mask.nz == 91, "grid %dx%dx%d, want 91x109x91", mask.nx, mask.ny, mask.nz);
    CHECK(mask.affine[0][0] == 2 && mask.affine[0][3] == -90 && mask.affine[1][3] == -126 && mask.affine[2][3] == -72 &&
              mask.sform_code == 4,
          "grid affine/sform code is not the MNI 2 mm one (sform_code %d)", mask.sform_code);
    for (int s = 0; s < 3; s++) {
        snprintf(p, sizeof p, "%s/shapes/%s.nii.gz", dir, names[s]);
        if (!CHECK_OK(nfv_volume_read(p, &shapes[s], NULL))) return;
    }
    for (int i = 0; i < n; i++) {
        nfv_volume les, sub;
        snprintf(p, sizeof p, "%s/lesion_masks/%s", dir, rows[i].path);
        if (!CHECK_OK(nfv_volume_read(p, &les, NULL))) continue;
        snprintf(p, sizeof p, "%s/%s", dir, rows[i].path);
        if (!CHECK_OK(nfv_volume_read(p, &sub, NULL))) {
            nfv_volume_free(&les);
            continue;
        }
        size_t nv = nfv_volume_numel(&les), count = 0, outside = 0;
        double c[3] = {0, 0, 0}, sub_sum = 0, tmpl_sum = 0;
        for (size_t q = 0; q < nv; q++) {
            if (les.data[q] <= 0.5f) continue;
            count++;
            outside += mask.data[q] <= 0.5f;
            c[0] += (double)(q % (size_t)les.nx);
            c[1] += (double)(q / (size_t)les.nx % (size_t)les.ny);
            c[2] += (double)(q / ((size_t)les.nx * les.ny));
            sub_sum += sub.data[q];
            tmpl_sum += tmpl.data[q];
        }
        CHECK(count >= 8, "subject %s (%s): lesion has %zu voxels", rows[i].path, rows[i].label, count);
        CHECK(outside == 0, "subject %s: %zu lesion voxels outside mask.nii.gz", rows[i].path, outside);
        if (count == 0) goto next;
        /* Hyper-intense by default: 1.5-1.8x WM before bias and noise; the
         * template there is mostly WM, so the ratio must be well over 1. */
        CHECK(sub_sum / tmpl_sum > 1.25, "subject %s: lesion/template intensity ratio %.2f, want > 1.25", rows[i].path,
              sub_sum / tmpl_sum);
        int ci[3] = {(int)lrint(c[0] / count), (int)lrint(c[1] / count), (int)lrint(c[2] / count)};
        double best = -2;
        int best_s = -1;
        double score[3];
        for (int s = 0; s < 3; s++) {
            /* Lesions are 8-14 mm: score each shape at the best of its sizes
             * (the 11 mm file and 8..14 mm), and the centroid can sit half a
             * voxel off the shape's centre: best over +-1 voxel. */
            score[s] = -2;
            for (int size = 7; size <= 14; size++) {
                nfv_volume t;
                if (size == 7) t = shapes[s];
                else if (!CHECK_OK(nfv_synth_shape_template((nfv_shape)s, size, 2.0, &t))) continue;
                for (int dz = -1; dz <= 1; dz++)
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++) {
                            int cc[3] = {ci[0] + dx, ci[1] + dy, ci[2] + dz};
                            double r = ncc_at(&les, cc, &t);
                            if (r > score[s]) score[s] = r;
                        }
                if (size != 7) nfv_volume_free(&t);
            }
            if (score[s] > best) best = score[s], best_s = s;
        }
        CHECK(best_s >= 0 && !strcmp(names[best_s], rows[i].label),
              "subject %s labelled %s matches %s best (NCC sphere %.3f cube %.3f cross %.3f)", rows[i].path,
              rows[i].label, best_s >= 0 ? names[best_s] : "?", score[0], score[1], score[2]);
    next:
        nfv_volume_free(&les);
        nfv_volume_free(&sub);
    }
    for (int s = 0; s < 3; s++) nfv_volume_free(&shapes[s]);
    nfv_volume_free(&mask);
    nfv_volume_free(&tmpl);
}

TEST(synth_shape_templates_have_their_volume)
{
    /* Partial-volume sums must match the analytic volume: 4x4x4 sub-sampling
     * of a 11 mm shape on a 1 mm grid is within ~3 %; 5 % tolerance. */
    const double s = 11.0, h = s / 2;
    struct { nfv_shape shape; double volume; } cases[] = {
        {NFV_SHAPE_SPHERE, 4.0 / 3.0 * M_PI * h * h * h},
        {NFV_SHAPE_CUBE, s * s * s},
        {NFV_SHAPE_CYLINDER, M_PI * h * h * s},
        {NFV_SHAPE_PYRAMID, s * s * s / 3.0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nfv_volume v;
        if (!CHECK_OK(nfv_synth_shape_template(cases[c].shape, s, 1.0, &v))) continue;
        double sum = 0;
        for (size_t i = 0; i < nfv_volume_numel(&v); i++) sum += v.data[i];
        CHECK(fabs(sum - cases[c].volume) <= 0.05 * cases[c].volume, "%s: occupancy sum %.1f mm3, want %.1f",
              nfv_synth_shape_names[cases[c].shape], sum, cases[c].volume);
        CHECK(v.nx == 19 && v.nx % 2 == 1, "template size %d, want 19 (odd, centred)", v.nx);
        /* Centred: the centre voxel is inside for every shape but the torus. */
        CHECK(v.data[((size_t)9 * 19 + 9) * 19 + 9] == 1.0f, "%s: centre voxel not fully inside",
              nfv_synth_shape_names[cases[c].shape]);
        nfv_volume_free(&v);
    }
    nfv_shape sh;
    CHECK(nfv_synth_shape_parse("cube", &sh) == NFV_OK && sh == NFV_SHAPE_CUBE, "parse cube");
    CHECK(nfv_synth_shape_parse("blob", &sh) == NFV_ERR_INVALID_ARG, "parse blob must fail");
    CHECK(nfv_synth_shape_contains(NFV_SHAPE_CROSS, 10, 4.9, 0, 0) && !nfv_synth_shape_contains(NFV_SHAPE_CROSS, 10, 4, 4, 0),
          "cross: arm tip inside, corner outside");
}

/* Mean lesion-mask voxel count of each class of a cohort (classes in
 * `names`, counts into `mean`). */
static void lesion_volume_by_class(const char *dir, const char *const *names, int k, double *mean)
{
    cohort_row rows[16];
    int n = read_labels(dir, rows, 16), count[4] = {0};
    for (int c = 0; c < k; c++) mean[c] = 0;
    for (int i = 0; i < n; i++) {
        char p[8192];
        nfv_volume les;
        snprintf(p, sizeof p, "%s/lesion_masks/%s", dir, rows[i].path);
        if (!CHECK_OK(nfv_volume_read(p, &les, NULL))) continue;
        double v = 0;
        for (size_t q = 0; q < nfv_volume_numel(&les); q++) v += les.data[q] > 0.5f;
        for (int c = 0; c < k; c++)
            if (!strcmp(rows[i].label, names[c])) mean[c] += v, count[c]++;
        nfv_volume_free(&les);
    }
    for (int c = 0; c < k; c++) mean[c] = count[c] ? mean[c] / count[c] : 0;
}

TEST(synth_match_volume_gives_every_shape_a_spheres_volume)
{
    /* The scale against the analytic volumes at size 1: sphere pi/6, cube 1,
     * cross 3 t^2 - 2 t^3 with t = 0.36, cylinder pi/4, pyramid 1/3, torus
     * 2 pi^2 R r^2 with r = 1/6, R = 1/3.  128^3 point counts: within 1 %. */
    const double sphere = M_PI / 6, t = 0.36;
    const double unit[NFV_SHAPE_COUNT] = {sphere, 1.0, 3 * t * t - 2 * t * t * t, M_PI / 4, 1.0 / 3,
                                          2 * M_PI * M_PI / 3 / 36};
    for (int s = 0; s < NFV_SHAPE_COUNT; s++) {
        double want = cbrt(sphere / unit[s]), got = nfv_synth_shape_volume_scale((nfv_shape)s);
        CHECK(fabs(got - want) <= 0.01 * want, "%s: volume scale %.4f, want %.4f", nfv_synth_shape_names[s], got, want);
        /* The scaled template holds a 24 mm sphere's volume (5 %: the 4x4x4
         * sub-samples put each face within 1/8 mm of its place). */
        nfv_volume v;
        if (!CHECK_OK(nfv_synth_shape_template((nfv_shape)s, 24.0 * got, 1.0, &v))) continue;
        double sum = 0, ball = sphere * 24 * 24 * 24;
        for (size_t i = 0; i < nfv_volume_numel(&v); i++) sum += v.data[i];
        CHECK(fabs(sum - ball) <= 0.05 * ball, "%s scaled by %.3f: %.0f mm3, want %.0f", nfv_synth_shape_names[s], got,
              sum, ball);
        nfv_volume_free(&v);
    }
    /* A cohort of cubes and crosses at one size: 3.4x apart in volume without
     * --match-volume, within 20 % with it. */
    const char *names[2] = {"cube", "cross"};
    double plain[2], matched[2];
    for (int m = 0; m < 2; m++) {
        char dir[512], cmd[2048];
        snprintf(dir, sizeof dir, "%s/synth_volume_%d", test_tmpdir(), m);
        snprintf(cmd, sizeof cmd, "%s synth --n 6 --voxel 4 --shapes cube,cross --lesion-size 30,30 %s --seed 3 --out %s",
                 test_bin(), m ? "--match-volume" : "", dir);
        if (!CHECK(test_run(cmd, NULL) == 0, "synth failed: %s", cmd)) return;
        lesion_volume_by_class(dir, names, 2, m ? matched : plain);
    }
    CHECK(plain[0] > 2.5 * plain[1], "without --match-volume: cube %.0f voxels, cross %.0f; want cube > 2.5x cross",
          plain[0], plain[1]);
    CHECK(matched[0] > 0 && matched[1] > 0 && fabs(matched[0] / matched[1] - 1) < 0.2,
          "with --match-volume: cube %.0f voxels, cross %.0f; want within 20 %%", matched[0], matched[1]);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s synth --task age --match-volume --n 2 --voxel 6 --out %s/synth_volume_age", test_bin(),
             test_tmpdir());
    CHECK(test_run(cmd, NULL) != 0, "--match-volume with --task age must be refused: %s", cmd);
}

TEST(synth_morph_task_and_bad_input)
{
    char dir[512], cmd[8192], log[600];
    snprintf(dir, sizeof dir, "%s/synth_morph", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s synth --task morph --n 6 --voxel 6 --out %s", test_bin(), dir);
    CHECK(test_run(cmd, NULL) == 0, "morph run failed: %s", cmd);
    cohort_row rows[8];
    int n = read_labels(dir, rows, 8), ctl = 0, atr = 0;
    for (int i = 0; i < n; i++) ctl += !strcmp(rows[i].label, "control"), atr += !strcmp(rows[i].label, "atrophy");
    CHECK(n == 6 && ctl == 3 && atr == 3, "morph labels: %d rows, %d control, %d atrophy", n, ctl, atr);

    snprintf(log, sizeof log, "%s/synth_err.txt", test_tmpdir());
    const char *bad[] = {"--shapes cube,blob", "--split 70/30", "--template /nonexistent/t.nii.gz", "--task sex",
                         "--shapes cube", "--voxel 0"};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        snprintf(cmd, sizeof cmd, "%s synth --n 4 --voxel 8 %s --out %s/bad", test_bin(), bad[b], test_tmpdir());
        int rc = test_run(cmd, log);
        size_t len = 0;
        char *out = read_all(log, &len);
        int lines = 0;
        for (size_t i = 0; out && i < len; i++) lines += out[i] == '\n';
        CHECK(rc != 0 && lines == 1 && out && strstr(out, "neurofv synth:"),
              "%s: exit %d, %d lines of output, want one error line: %s", bad[b], rc, lines, out ? out : "");
        free(out);
    }
}

TEST(synth_cli_full_disk_fails_cleanly_and_keeps_previous_files)
{
    /* A cohort written once; the same command again under a file-size limit
     * (ulimit -f, the stand-in for a disk that fills up) must fail with one
     * line naming a file, leave no temporary file, and leave every file of
     * the first run byte for byte as it was. */
    char dir[600], keep[700], cmd[4096], out[700];
    snprintf(dir, sizeof dir, "%s/synth_full", test_tmpdir());
    snprintf(keep, sizeof keep, "%s/synth_full_copy", test_tmpdir());
    snprintf(out, sizeof out, "%s/synth_full.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "\"%s\" synth --task lesion --n 6 --voxel 4 --threads 1 --out \"%s\"", test_bin(), dir);
    if (!CHECK(test_run(cmd, NULL) == 0, "first cohort written")) return;
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", dir, keep);
    test_run(cmd, NULL);
    /* bash's ulimit -f counts 1024-byte blocks: 8 KiB is less than one subject. */
    snprintf(cmd, sizeof cmd,
             "bash -c 'ulimit -f 8; \"%s\" synth --task lesion --n 6 --voxel 4 --threads 1 --seed 2 --out \"%s\"'",
             test_bin(), dir);
    int rc = test_run(cmd, out);
    CHECK(rc == 1, "synth under a full disk exits 1 (got %d)", rc);
    snprintf(cmd, sizeof cmd, "test $(wc -l < '%s') -eq 1 && grep -q 'sub-0001\\|labels\\|\\.nii' '%s'", out, out);
    CHECK(test_run(cmd, NULL) == 0, "one line on stderr naming the file (see %s)", out);
    snprintf(cmd, sizeof cmd, "! find '%s' -name '*.tmp*' | grep -q .", dir);
    CHECK(test_run(cmd, NULL) == 0, "no temporary file left in %s", dir);
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s'", dir, keep);
    CHECK(test_run(cmd, NULL) == 0, "every file of the first cohort is intact");
}
