/* Preprocessing: reorientation to RAS is an exact permutation that keeps each
 * value at its world coordinate; trilinear resampling reproduces a function
 * that is linear in world coordinates (trilinear interpolation is exact on
 * it); crop/pad move data without changing world positions; normalization
 * against a double-precision reference; the pipeline output, written to
 * NIfTI and read back, overlays on the input in world space. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "neurofv/volume.h"
#include "test.h"

/* world = A * (i, j, k, 1) */
static void voxel_to_world(const double a[4][4], double i, double j, double k, double w[3])
{
    for (int r = 0; r < 3; r++) w[r] = a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3];
}

/* Solve A * (i, j, k, 1) = w for the voxel coordinate (Cramer on the 3x3). */
static void world_to_voxel(const double a[4][4], const double w[3], double v[3])
{
    double b[3] = {w[0] - a[0][3], w[1] - a[1][3], w[2] - a[2][3]};
    double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                 a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    for (int c = 0; c < 3; c++) {
        double m[3][3];
        for (int r = 0; r < 3; r++)
            for (int cc = 0; cc < 3; cc++) m[r][cc] = cc == c ? b[r] : a[r][cc];
        v[c] = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])) /
               det;
    }
}

/* A function linear in world mm. */
static double ramp(const double w[3]) { return 0.3 * w[0] - 0.7 * w[1] + 1.1 * w[2] + 5.0; }

static void fill_ramp(nfv_volume *v)
{
    for (int k = 0; k < v->nz; k++)
        for (int j = 0; j < v->ny; j++)
            for (int i = 0; i < v->nx; i++) {
                double w[3];
                voxel_to_world(v->affine, i, j, k, w);
                v->data[((size_t)k * v->ny + j) * v->nx + i] = (float)ramp(w);
            }
}

/* Left-posterior-superior, anisotropic, with axes permuted: voxel i runs
 * toward -y (posterior, 1.5 mm), j toward +z (2 mm), k toward -x (left, 2.5 mm). */
static const double lps_perm_affine[4][4] = {
    {0, 0, -2.5, 40.0}, {-1.5, 0, 0, 20.0}, {0, 2.0, 0, -30.0}, {0, 0, 0, 1}};

TEST(preprocess_reorient_ras_exact)
{
    const double affines[3][4][4] = {
        {{-2.0, 0, 0, 30}, {0, -2.0, 0, 40}, {0, 0, 2.5, -20}, {0, 0, 0, 1}}, /* plain LPS */
        {{0, 0, -2.5, 40.0}, {-1.5, 0, 0, 20.0}, {0, 2.0, 0, -30.0}, {0, 0, 0, 1}},
        /* slightly oblique (10 degrees about z) and flipped in z */
        {{0.98480775, -0.17364818, 0, 1}, {0.17364818, 0.98480775, 0, 2}, {0, 0, -1.2, 3}, {0, 0, 0, 1}},
    };
    for (int t = 0; t < 3; t++) {
        nfv_volume in, out;
        if (!CHECK_OK(nfv_volume_alloc(&in, 7, 9, 11, affines[t]))) return;
        float *r = test_random(nfv_volume_numel(&in), 100 + t, -5.0f, 5.0f);
        memcpy(in.data, r, nfv_volume_numel(&in) * sizeof(float));
        free(r);
        in.sform_code = 4;
        if (!CHECK_OK(nfv_volume_reorient_ras(&in, &out))) return;
        CHECK(nfv_volume_numel(&out) == nfv_volume_numel(&in), "voxel count changed");
        CHECK(out.sform_code == 4, "sform code lost");
        /* Each output axis points to +R, +A, +S: positive diagonal dominant. */
        for (int w = 0; w < 3; w++) {
            double norm = sqrt(out.affine[0][w] * out.affine[0][w] + out.affine[1][w] * out.affine[1][w] +
                               out.affine[2][w] * out.affine[2][w]);
            CHECK(out.affine[w][w] > 0.9 * norm, "case %d: output axis %d not along +%c (%g of %g)", t, w, "RAS"[w],
                  out.affine[w][w], norm);
        }
        /* Same value at the same world point: the input voxel under every
         * output voxel centre is an integer voxel holding the same value. */
        size_t mismatches = 0, off_grid = 0;
        for (int k = 0; k < out.nz; k++)
            for (int j = 0; j < out.ny; j++)
                for (int i = 0; i < out.nx; i++) {
                    double w[3], v[3];
                    voxel_to_world(out.affine, i, j, k, w);
                    world_to_voxel(in.affine, w, v);
                    int vi = (int)lround(v[0]), vj = (int)lround(v[1]), vk = (int)lround(v[2]);
                    if (fabs(v[0] - vi) > 1e-9 || fabs(v[1] - vj) > 1e-9 || fabs(v[2] - vk) > 1e-9 || vi < 0 ||
                        vj < 0 || vk < 0 || vi >= in.nx || vj >= in.ny || vk >= in.nz) {
                        off_grid++;
                        continue;
                    }
                    if (out.data[((size_t)k * out.ny + j) * out.nx + i] != in.data[((size_t)vk * in.ny + vj) * in.nx + vi])
                        mismatches++;
                }
        CHECK(off_grid == 0 && mismatches == 0, "case %d: %zu voxels off grid, %zu values moved", t, off_grid, mismatches);
        nfv_volume_free(&in);
        nfv_volume_free(&out);
    }
}

/* Compare a resampled ramp with the ramp at each output voxel's world
 * coordinate, where the voxel lies inside the input's voxel-centre hull (no
 * edge extension).  Returns the number of voxels compared. */
static size_t check_ramp(const nfv_volume *in, const nfv_volume *out, const char *what)
{
    size_t n = nfv_volume_numel(out), used = 0;
    float *got = malloc(n * sizeof *got);
    double *want = malloc(n * sizeof *want);
    for (int k = 0; k < out->nz; k++)
        for (int j = 0; j < out->ny; j++)
            for (int i = 0; i < out->nx; i++) {
                double w[3], v[3];
                voxel_to_world(out->affine, i, j, k, w);
                world_to_voxel(in->affine, w, v);
                if (v[0] < -1e-9 || v[1] < -1e-9 || v[2] < -1e-9 || v[0] > in->nx - 1 + 1e-9 ||
                    v[1] > in->ny - 1 + 1e-9 || v[2] > in->nz - 1 + 1e-9)
                    continue;
                got[used] = out->data[((size_t)k * out->ny + j) * out->nx + i];
                want[used++] = ramp(w);
            }
    /* Values are O(100) stored as float32 (~1e-5 rounding) and interpolated
     * in double: 2e-4 absolute covers rounding with margin, while a
     * half-voxel shift would be off by ~0.5. */
    if (used) CHECK_CLOSE(what, got, want, used, 2e-4, 1e-6);
    else CHECK(0, "%s: no voxel inside to compare", what);
    free(got);
    free(want);
    return used;
}

TEST(preprocess_resample_ramp_exact)
{
    nfv_volume in, out;
    if (!CHECK_OK(nfv_volume_alloc(&in, 11, 13, 9, lps_perm_affine))) return;
    fill_ramp(&in);
    const double sizes[3][3] = {{1.0, 1.0, 1.0}, {2.3, 2.3, 2.3}, {1.5, 3.0, 0.7}};
    for (int s = 0; s < 3; s++) {
        if (!CHECK_OK(nfv_volume_resample(&in, sizes[s], &out))) continue;
        char what[64];
        snprintf(what, sizeof what, "ramp resampled to %g/%g/%g mm", sizes[s][0], sizes[s][1], sizes[s][2]);
        size_t used = check_ramp(&in, &out, what);
        CHECK(used > nfv_volume_numel(&out) / 3, "%s: only %zu voxels inside", what, used);
        /* Voxel sizes and the field-of-view centre are kept. */
        double c_in[3], c_out[3];
        voxel_to_world(in.affine, (in.nx - 1) / 2.0, (in.ny - 1) / 2.0, (in.nz - 1) / 2.0, c_in);
        voxel_to_world(out.affine, (out.nx - 1) / 2.0, (out.ny - 1) / 2.0, (out.nz - 1) / 2.0, c_out);
        CHECK(fabs(c_in[0] - c_out[0]) < 1e-9 && fabs(c_in[1] - c_out[1]) < 1e-9 && fabs(c_in[2] - c_out[2]) < 1e-9,
              "%s: centre moved", what);
        for (int c = 0; c < 3; c++) {
            double norm = sqrt(out.affine[0][c] * out.affine[0][c] + out.affine[1][c] * out.affine[1][c] +
                               out.affine[2][c] * out.affine[2][c]);
            CHECK(fabs(norm - sizes[s][c]) < 1e-9, "%s: axis %d voxel %g mm", what, c, norm);
        }
        nfv_volume_free(&out);
    }
    /* 1 mm -> 2 mm on an odd grid: 181 -> 91 with voxel 0 on voxel 0 (MNI grids). */
    nfv_volume big;
    double one_mm[4][4] = {{1, 0, 0, -90}, {0, 1, 0, -126}, {0, 0, 1, -72}, {0, 0, 0, 1}};
    if (CHECK_OK(nfv_volume_alloc(&big, 31, 29, 7, one_mm))) {
        const double two[3] = {2, 2, 2};
        if (CHECK_OK(nfv_volume_resample(&big, two, &out))) {
            CHECK(out.nx == 16 && out.ny == 15 && out.nz == 4, "31x29x7 at 2 mm gave %dx%dx%d", out.nx, out.ny, out.nz);
            CHECK(out.affine[0][3] == -90 && out.affine[1][3] == -126, "odd sizes: voxel 0 moved to %g %g",
                  out.affine[0][3], out.affine[1][3]);
            nfv_volume_free(&out);
        }
        nfv_volume_free(&big);
    }
    /* Same voxel size: the very same grid and data. */
    const double same[3] = {1.5, 2.0, 2.5};
    if (CHECK_OK(nfv_volume_resample(&in, same, &out))) {
        CHECK(out.nx == in.nx && out.ny == in.ny && out.nz == in.nz &&
                  !memcmp(out.data, in.data, nfv_volume_numel(&in) * sizeof(float)) &&
                  !memcmp(out.affine, in.affine, sizeof in.affine),
              "resampling to the same voxel size must be the identity");
        nfv_volume_free(&out);
    }
    const double bad[3] = {1.0, 0.0, 1.0};
    CHECK(nfv_volume_resample(&in, bad, &out) == NFV_ERR_INVALID_ARG, "0 mm voxels must be rejected");
    nfv_volume_free(&in);
}

TEST(preprocess_resample_to_rotated_grid)
{
    nfv_volume in, out;
    if (!CHECK_OK(nfv_volume_alloc(&in, 9, 7, 11, lps_perm_affine))) return;
    fill_ramp(&in);
    /* Target: 30 degrees about z, 1.7 mm voxels, larger than the input so
     * that part of it falls outside. */
    double c = cos(M_PI / 6), s = sin(M_PI / 6), h = 1.7;
    double target[4][4] = {{h * c, -h * s, 0, 5}, {h * s, h * c, 0, -5}, {0, 0, h, -38}, {0, 0, 0, 1}};
    const float fill = -999.0f;
    if (!CHECK_OK(nfv_volume_resample_to(&in, 17, 15, 19, target, fill, &out))) return;
    check_ramp(&in, &out, "ramp on a rotated grid");
    size_t outside = 0, wrong_fill = 0;
    for (int k = 0; k < out.nz; k++)
        for (int j = 0; j < out.ny; j++)
            for (int i = 0; i < out.nx; i++) {
                double w[3], v[3];
                voxel_to_world(out.affine, i, j, k, w);
                world_to_voxel(in.affine, w, v);
                int far = v[0] < -0.6 || v[1] < -0.6 || v[2] < -0.6 || v[0] > in.nx - 0.4 || v[1] > in.ny - 0.4 ||
                          v[2] > in.nz - 0.4;
                if (!far) continue;
                outside++;
                if (out.data[((size_t)k * out.ny + j) * out.nx + i] != fill) wrong_fill++;
            }
    CHECK(outside > 100 && wrong_fill == 0, "%zu voxels outside, %zu without the fill value", outside, wrong_fill);
    nfv_volume_free(&in);
    nfv_volume_free(&out);
}

TEST(preprocess_crop_pad_keeps_world)
{
    nfv_volume in, small, back;
    if (!CHECK_OK(nfv_volume_alloc(&in, 10, 9, 12, lps_perm_affine))) return;
    fill_ramp(&in);
    /* Crop on one axis, pad on another, keep the third (odd and even sizes). */
    if (!CHECK_OK(nfv_volume_crop_pad(&in, 7, 12, 12, &small))) return;
    check_ramp(&in, &small, "crop/pad keeps world positions");
    size_t zeros = 0;
    for (size_t i = 0; i < nfv_volume_numel(&small); i++) zeros += small.data[i] == 0.0f;
    CHECK(zeros == (size_t)7 * 3 * 12, "padding should add 7x3x12 zeros, found %zu", zeros);
    /* Pad back 7 -> 10 and crop 12 -> 9: the original where it was kept. */
    if (CHECK_OK(nfv_volume_crop_pad(&small, 10, 9, 12, &back))) {
        CHECK(!memcmp(back.affine, in.affine, sizeof in.affine), "crop then pad must restore the affine");
        size_t diff = 0;
        for (int k = 0; k < 12; k++)
            for (int j = 0; j < 9; j++)
                for (int i = 1; i < 8; i++) /* i = 1..7 kept by the 10 -> 7 crop */
                    diff += back.data[(k * 9 + j) * 10 + i] != in.data[(k * 9 + j) * 10 + i];
        CHECK(diff == 0, "%zu kept voxels changed", diff);
        nfv_volume_free(&back);
    }
    nfv_volume_free(&small);
    nfv_volume_free(&in);
}

TEST(preprocess_normalize)
{
    nfv_volume v, m;
    if (!CHECK_OK(nfv_volume_alloc(&v, 7, 9, 11, NULL)) || !CHECK_OK(nfv_volume_alloc(&m, 7, 9, 11, NULL))) return;
    size_t n = nfv_volume_numel(&v);
    float *r = test_random(n, 7, 10.0f, 200.0f);
    for (size_t i = 0; i < n; i++) {
        v.data[i] = i % 3 == 0 ? 0.0f : r[i]; /* a third is background */
        m.data[i] = i % 5 == 0 ? 1.0f : 0.0f;
    }
    free(r);
    float *orig = malloc(n * sizeof *orig);
    memcpy(orig, v.data, n * sizeof *orig);
    double *want = malloc(n * sizeof *want);
    for (int method = NFV_NORM_ZSCORE_NONZERO; method <= NFV_NORM_MINMAX; method++) {
        memcpy(v.data, orig, n * sizeof *orig);
        double sum = 0, sq = 0, cnt = 0, lo = 1e300, hi = -1e300;
        for (size_t i = 0; i < n; i++) {
            int in = method == NFV_NORM_ZSCORE_MASK ? m.data[i] > 0.5f : orig[i] != 0.0f;
            if (in) sum += orig[i], cnt++;
            lo = fmin(lo, orig[i]);
            hi = fmax(hi, orig[i]);
        }
        double mean = sum / cnt;
        for (size_t i = 0; i < n; i++) {
            int in = method == NFV_NORM_ZSCORE_MASK ? m.data[i] > 0.5f : orig[i] != 0.0f;
            if (in) sq += (orig[i] - mean) * (orig[i] - mean);
        }
        double sd = sqrt(sq / cnt);
        for (size_t i = 0; i < n; i++) {
            int in = method == NFV_NORM_ZSCORE_MASK ? m.data[i] > 0.5f : orig[i] != 0.0f;
            want[i] = method == NFV_NORM_MINMAX ? (orig[i] - lo) / (hi - lo) : in ? (orig[i] - mean) / sd : 0.0;
        }
        if (!CHECK_OK(nfv_volume_normalize(&v, (nfv_norm_method)method, &m))) continue;
        /* float32 results of O(1): 1e-5 absolute is float rounding with margin. */
        CHECK_CLOSE(nfv_norm_method_name((nfv_norm_method)method), v.data, want, n, 1e-5, 1e-5);
        nfv_norm_method back;
        CHECK(nfv_norm_method_parse(nfv_norm_method_name((nfv_norm_method)method), &back) == NFV_OK &&
                  back == (nfv_norm_method)method,
              "name/parse round trip for %d", method);
    }
    nfv_norm_method x;
    CHECK(nfv_norm_method_parse("zscor", &x) == NFV_ERR_INVALID_ARG, "unknown method name must fail");
    memset(v.data, 0, n * sizeof(float));
    CHECK(nfv_volume_normalize(&v, NFV_NORM_ZSCORE_NONZERO, NULL) == NFV_ERR_INVALID_ARG,
          "all-zero volume has no brain to z-score");
    CHECK(nfv_volume_normalize(&v, NFV_NORM_ZSCORE_MASK, NULL) == NFV_ERR_INVALID_ARG, "zscore-mask needs a mask");
    nfv_volume small;
    if (CHECK_OK(nfv_volume_alloc(&small, 3, 3, 3, NULL))) {
        CHECK(nfv_volume_normalize(&v, NFV_NORM_ZSCORE_MASK, &small) == NFV_ERR_INVALID_ARG, "mask size mismatch");
        nfv_volume_free(&small);
    }
    free(orig);
    free(want);
    nfv_volume_free(&v);
    nfv_volume_free(&m);
}

TEST(preprocess_pipeline_overlays_input)
{
    /* LPS, permuted, anisotropic input -> RAS 2 mm 13x11x9 grid; written to
     * NIfTI and read back, every voxel holds the input's value at its world
     * coordinate (ramp), and nibabel sees the same affine. */
    nfv_volume in, out, back;
    if (!CHECK_OK(nfv_volume_alloc(&in, 12, 10, 8, lps_perm_affine))) return;
    fill_ramp(&in);
    in.sform_code = 4;
    nfv_grid grid = {13, 11, 9, {2.0, 2.0, 2.0}, NFV_NORM_NONE};
    if (!CHECK_OK(nfv_preprocess(&in, &grid, &out))) return;
    CHECK(out.nx == 13 && out.ny == 11 && out.nz == 9, "grid %dx%dx%d", out.nx, out.ny, out.nz);
    char path[512];
    snprintf(path, sizeof path, "%s/pre.nii.gz", test_tmpdir());
    if (CHECK_OK(nfv_volume_write(path, &out)) && CHECK_OK(nfv_volume_read(path, &back, NULL))) {
        CHECK(back.sform_code == 4, "sform code %d", back.sform_code);
        check_ramp(&in, &back, "preprocessed volume read back, at world coordinates");
        for (int c = 0; c < 3; c++)
            CHECK(back.affine[c][c] == 2.0, "axis %d not +2 mm in RAS: %g", c, back.affine[c][c]);
        nfv_volume_free(&back);
    }
    grid.norm = NFV_NORM_ZSCORE_MASK;
    CHECK(nfv_preprocess(&in, &grid, &back) == NFV_ERR_INVALID_ARG, "zscore-mask needs a mask in preprocess");
    nfv_volume_free(&out);
    nfv_volume_free(&in);
}

TEST(preprocess_template_to_ref4_grid)
{
    const char *path = "/usr/share/mricron/templates/ch2bet.nii.gz";
    struct stat st;
    if (stat("/usr/share/mricron/templates", &st) != 0) {
        printf("note: mricron-data not installed: template preprocessing skipped\n");
        return;
    }
    nfv_volume in, out;
    if (!CHECK(stat(path, &st) == 0, "mricron-data installs %s", path) || !CHECK_OK(nfv_volume_read(path, &in, NULL)))
        return;
    nfv_grid grid = {91, 109, 91, {2.0, 2.0, 2.0}, NFV_NORM_ZSCORE_NONZERO};
    if (CHECK_OK(nfv_preprocess(&in, &grid, &out))) {
        CHECK(out.nx == 91 && out.ny == 109 && out.nz == 91, "ref4 grid %dx%dx%d", out.nx, out.ny, out.nz);
        /* 181 -> 91 at 2 mm keeps voxel 0: same origin as the 1 mm template. */
        CHECK(out.affine[0][3] == in.affine[0][3] && out.affine[2][3] == in.affine[2][3], "origin %g %g",
              out.affine[0][3], out.affine[2][3]);
        double sum = 0, sq = 0;
        size_t cnt = 0;
        for (size_t i = 0; i < nfv_volume_numel(&out); i++)
            if (out.data[i] != 0.0f) sum += out.data[i], sq += (double)out.data[i] * out.data[i], cnt++;
        double mean = sum / cnt, sd = sqrt(sq / cnt - mean * mean);
        CHECK(cnt > 100000 && fabs(mean) < 1e-3 && fabs(sd - 1.0) < 1e-3, "brain %zu voxels, mean %g sd %g", cnt, mean,
              sd);
        nfv_volume_free(&out);
    }
    nfv_volume_free(&in);
}

TEST(preprocess_reorient_matches_nibabel)
{
    /* nibabel's as_closest_canonical on files nibabel wrote (LPS int16 with
     * scaling; permuted axes with a flip) must give our array and affine. */
    const char *kinds[] = {"lps", "oblique"};
    for (int t = 0; t < 2; t++) {
        char path[600], bin[700], cmd[2600];
        snprintf(path, sizeof path, "%s/canon_%s.nii", test_tmpdir(), kinds[t]);
        snprintf(bin, sizeof bin, "%s.bin", path);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/nifti_check.py make %s '%s' && "
                 "/usr/bin/python3 tests/nifti_check.py canonical '%s' '%s'", kinds[t], path, path, bin);
        if (!CHECK(test_run(cmd, NULL) == 0, "cannot run: %s", cmd)) continue;
        nfv_volume in, out;
        if (!CHECK_OK(nfv_volume_read(path, &in, NULL))) continue;
        if (CHECK_OK(nfv_volume_reorient_ras(&in, &out))) {
            FILE *f = fopen(bin, "rb");
            int dims[3];
            double aff[16];
            if (CHECK(f && fread(dims, sizeof dims, 1, f) == 1 && fread(aff, sizeof aff, 1, f) == 1, "bad %s", bin) &&
                CHECK(dims[0] == out.nx && dims[1] == out.ny && dims[2] == out.nz, "%s: nibabel %dx%dx%d, ours %dx%dx%d",
                      kinds[t], dims[0], dims[1], dims[2], out.nx, out.ny, out.nz)) {
                size_t n = nfv_volume_numel(&out);
                double *want = malloc(n * sizeof *want);
                if (fread(want, sizeof *want, n, f) == n) CHECK_CLOSE("reoriented data vs nibabel", out.data, want, n, 0, 0);
                free(want);
                float ours[16];
                for (int i = 0; i < 16; i++) ours[i] = (float)out.affine[i / 4][i % 4];
                /* float32 header fields on both sides */
                CHECK_CLOSE("reoriented affine vs nibabel", ours, aff, 16, 1e-5, 1e-6);
            }
            if (f) fclose(f);
            nfv_volume_free(&out);
        }
        nfv_volume_free(&in);
    }
}
