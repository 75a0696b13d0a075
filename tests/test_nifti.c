/* NIfTI I/O: round trips, every datatype with scaling, files written by
 * nibabel, files we write read by nibabel, the installed templates, and bad
 * inputs (each one clear error, no crash).  Cross-checks go through
 * tests/nifti_check.py run by /usr/bin/python3 (nibabel). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nifti2_io.h>

#include "neurofv/volume.h"
#include "test.h"

#define PY "/usr/bin/python3 tests/nifti_check.py"

static void tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", test_tmpdir(), name);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* An error message must be one line that names the file. */
static void check_one_line_error(nfv_status s, const char *path, const char *what)
{
    const char *msg = nfv_error_message();
    CHECK(s != NFV_OK, "%s: expected an error", what);
    int one_line = strchr(msg, '\n') == NULL;
    CHECK(one_line, "%s: message has several lines: %s", what, nfv_error_message());
    CHECK(strstr(msg, path) != NULL, "%s: message does not name the file: %s", what, msg);
}

/* Affine whose axes are permuted/flipped and scaled, all values exact in
 * float so that NIfTI-1's float32 srow fields keep them exactly. */
static void test_affine(double a[4][4])
{
    double m[4][4] = {{0, 0, -1.5, 33.25}, {2.0, 0, 0, -17.5}, {0, 1.25, 0, 4.0}, {0, 0, 0, 1}};
    memcpy(a, m, sizeof m);
}

/* Compare a volume with a nibabel dump written by nifti_check.py dump. */
static void check_against_nibabel(const char *nii, const nfv_volume *v, double atol, double rtol, int compare_affine)
{
    char bin[512], cmd[1200];
    snprintf(bin, sizeof bin, "%s.nib.bin", nii);
    snprintf(cmd, sizeof cmd, PY " dump '%s' '%s'", nii, bin);
    if (!CHECK(test_run(cmd, NULL) == 0, "nibabel could not read %s (%s)", nii, cmd)) return;
    FILE *f = fopen(bin, "rb");
    if (!CHECK(f != NULL, "no dump %s", bin)) return;
    int32_t dims[3];
    double aff[16];
    int ok = fread(dims, sizeof dims, 1, f) == 1 && fread(aff, sizeof aff, 1, f) == 1;
    CHECK(ok && dims[0] == v->nx && dims[1] == v->ny && dims[2] == v->nz, "%s: nibabel shape %dx%dx%d, ours %dx%dx%d",
          nii, dims[0], dims[1], dims[2], v->nx, v->ny, v->nz);
    if (ok && dims[0] == v->nx && dims[1] == v->ny && dims[2] == v->nz) {
        size_t n = nfv_volume_numel(v);
        double *want = malloc(n * sizeof *want);
        if (fread(want, sizeof *want, n, f) == n)
            CHECK_CLOSE("data vs nibabel", v->data, want, n, atol, rtol);
        else
            CHECK(0, "%s: short dump", bin);
        free(want);
        float ours[16];
        /* Without sform/qform nibabel centres an ANALYZE-style affine with x
         * flipped; we follow nifticlib/the NIfTI spec (method 1: pixdim only),
         * so affines are only compared when the file has a code. */
        if (compare_affine)
        for (int i = 0; i < 16; i++) ours[i] = (float)v->affine[i / 4][i % 4];
        /* NIfTI-1 stores the affine as float32; nibabel widens the same floats. */
        if (compare_affine) CHECK_CLOSE("affine vs nibabel", ours, aff, 16, 1e-5, 1e-6);
    }
    fclose(f);
    remove(bin);
}

TEST(nifti_roundtrip)
{
    const char *names[2] = {"rt.nii", "rt.nii.gz"};
    for (int t = 0; t < 2; t++) {
        char path[512];
        tmp_path(path, sizeof path, names[t]);
        double a[4][4];
        test_affine(a);
        nfv_volume v, r;
        if (!CHECK_OK(nfv_volume_alloc(&v, 7, 9, 11, (const double(*)[4])a))) return;
        float *rnd = test_random(nfv_volume_numel(&v), 11 + t, -1000.0f, 1000.0f);
        memcpy(v.data, rnd, nfv_volume_numel(&v) * sizeof(float));
        free(rnd);
        v.sform_code = 4; /* MNI */
        v.qform_code = 1; /* scanner */
        if (CHECK_OK(nfv_volume_write(path, &v)) && CHECK_OK(nfv_volume_read(path, &r, NULL))) {
            CHECK(r.nx == 7 && r.ny == 9 && r.nz == 11, "%s: read %dx%dx%d", path, r.nx, r.ny, r.nz);
            CHECK(memcmp(r.data, v.data, nfv_volume_numel(&v) * sizeof(float)) == 0, "%s: data differ", path);
            double want[16];
            float got[16];
            for (int i = 0; i < 16; i++) want[i] = a[i / 4][i % 4], got[i] = (float)r.affine[i / 4][i % 4];
            CHECK_CLOSE("affine round trip (exact floats)", got, want, 16, 0.0, 0.0);
            CHECK(r.sform_code == 4 && r.qform_code == 1, "codes %d %d", r.sform_code, r.qform_code);
            check_against_nibabel(path, &v, 0.0, 0.0, 1);
            nfv_volume_free(&r);
        }
        /* No temporary file left next to the output. */
        char cmd[700];
        snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", test_tmpdir());
        CHECK(test_run(cmd, NULL) != 0, "a temporary file was left in %s", test_tmpdir());
        nfv_volume_free(&v);
    }
}

TEST(nifti_default_codes_and_qform)
{
    /* Codes 0 in memory are written as 2 (aligned); the qform derived from a
     * rigid+scale affine must equal it (checked by nifticlib's own qto_xyz). */
    char path[512];
    tmp_path(path, sizeof path, "codes.nii");
    double a[4][4];
    test_affine(a);
    nfv_volume v;
    if (!CHECK_OK(nfv_volume_alloc(&v, 5, 6, 7, (const double(*)[4])a))) return;
    if (CHECK_OK(nfv_volume_write(path, &v))) {
        nifti_image *nim = nifti_image_read(path, 0);
        if (CHECK(nim != NULL, "nifticlib cannot read %s", path)) {
            CHECK(nim->sform_code == 2 && nim->qform_code == 2, "codes %d %d", nim->sform_code, nim->qform_code);
            CHECK(nim->datatype == DT_FLOAT32, "datatype %d", nim->datatype);
            float q[16];
            double want[16];
            for (int i = 0; i < 16; i++) q[i] = (float)nim->qto_xyz.m[i / 4][i % 4], want[i] = a[i / 4][i % 4];
            CHECK_CLOSE("qform = affine", q, want, 16, 1e-5, 1e-6);
            nifti_image_free(nim);
        }
    }
    CHECK(nfv_volume_write("/nonexistent-dir/x.nii", &v) == NFV_ERR_IO, "write into a missing directory must fail");
    CHECK(nfv_volume_write("out.png", &v) == NFV_ERR_INVALID_ARG, "write with a non-NIfTI extension must fail");
    nfv_volume_free(&v);
}

/* Write nx*ny*nz raw voxels of a datatype with nifticlib and the given scaling. */
static int write_typed(const char *path, int dt, double slope, double inter, double (*value)(size_t))
{
    int64_t dims[8] = {3, 5, 4, 3, 1, 1, 1, 1};
    nifti_image *nim = nifti_make_new_nim(dims, dt, 1);
    if (!nim) return 0;
    for (size_t i = 0; i < (size_t)nim->nvox; i++) {
        double x = value(i);
        switch (dt) {
        case DT_UINT8: ((uint8_t *)nim->data)[i] = (uint8_t)x; break;
        case DT_INT8: ((int8_t *)nim->data)[i] = (int8_t)x; break;
        case DT_INT16: ((int16_t *)nim->data)[i] = (int16_t)x; break;
        case DT_UINT16: ((uint16_t *)nim->data)[i] = (uint16_t)x; break;
        case DT_INT32: ((int32_t *)nim->data)[i] = (int32_t)x; break;
        case DT_UINT32: ((uint32_t *)nim->data)[i] = (uint32_t)x; break;
        case DT_INT64: ((int64_t *)nim->data)[i] = (int64_t)x; break;
        case DT_FLOAT32: ((float *)nim->data)[i] = (float)x; break;
        case DT_FLOAT64: ((double *)nim->data)[i] = x; break;
        }
    }
    nim->scl_slope = slope;
    nim->scl_inter = inter;
    nifti_set_filenames(nim, path, 0, 1);
    nifti_image_write(nim);
    nifti_image_free(nim);
    return file_exists(path);
}

static double value_signed(size_t i) { return (double)((long)(i * 37 % 200) - 100); }   /* -100..99 */
static double value_unsigned(size_t i) { return (double)(i * 37 % 250); }                /* 0..249 */
static double value_wide(size_t i) { return (double)((long)(i * 7919 % 60001) - 30000); } /* -30000..30000 */

TEST(nifti_datatypes_scaling)
{
    struct { int dt; double (*value)(size_t); } types[] = {
        {DT_UINT8, value_unsigned}, {DT_INT8, value_signed},  {DT_INT16, value_wide},   {DT_UINT16, value_unsigned},
        {DT_INT32, value_wide},     {DT_UINT32, value_unsigned}, {DT_INT64, value_wide}, {DT_FLOAT32, value_wide},
        {DT_FLOAT64, value_wide},
    };
    /* slope 0 means "no scaling" (NIfTI spec; nibabel agrees). */
    double scalings[3][2] = {{2.5, -1.0}, {0.0, 7.0}, {1.0, 0.0}};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (int s = 0; s < 3; s++) {
            char path[512], name[64];
            snprintf(name, sizeof name, "dt%d_s%d.nii%s", types[t].dt, s, s == 1 ? ".gz" : "");
            tmp_path(path, sizeof path, name);
            double slope = scalings[s][0], inter = scalings[s][1];
            if (!CHECK(write_typed(path, types[t].dt, slope, inter, types[t].value), "cannot write %s", path)) continue;
            nfv_volume v;
            if (!CHECK_OK(nfv_volume_read(path, &v, NULL))) continue;
            size_t n = nfv_volume_numel(&v);
            double *want = malloc(n * sizeof *want);
            for (size_t i = 0; i < n; i++) {
                double raw = types[t].value(i);
                want[i] = slope != 0.0 ? raw * slope + inter : raw;
            }
            char what[128];
            snprintf(what, sizeof what, "%s slope %g inter %g", nifti_datatype_string(types[t].dt), slope, inter);
            /* Exact: every expected value is an integer or half-integer below 2^24. */
            CHECK_CLOSE(what, v.data, want, n, 0.0, 0.0);
            if (s == 0) check_against_nibabel(path, &v, 0.0, 0.0, 0);
            free(want);
            nfv_volume_free(&v);
        }
    }
}

TEST(nifti_nibabel_written_files)
{
    const char *kinds[] = {"lps", "oblique", "nifti2"};
    for (int k = 0; k < 3; k++) {
        char path[512], cmd[800];
        char name[64];
        snprintf(name, sizeof name, "nib_%s.nii", kinds[k]);
        tmp_path(path, sizeof path, name);
        snprintf(cmd, sizeof cmd, PY " make %s '%s'", kinds[k], path);
        if (!CHECK(test_run(cmd, NULL) == 0, "cannot run: %s", cmd)) continue;
        nfv_volume v;
        size_t bad = 99;
        if (!CHECK_OK(nfv_volume_read(path, &v, &bad))) continue;
        CHECK(bad == 0, "%s: %zu non-finite", path, bad);
        /* int16 * 0.5 - 3 and ramps are exact in float. */
        check_against_nibabel(path, &v, 0.0, 0.0, 1);
        if (k == 0) CHECK(v.sform_code == 4 && v.qform_code == 1, "lps codes %d %d", v.sform_code, v.qform_code);
        nfv_volume_free(&v);
    }
}

TEST(nifti_4d_first_volume)
{
    char path[512], cmd[800];
    tmp_path(path, sizeof path, "four.nii.gz");
    snprintf(cmd, sizeof cmd, PY " make 4d '%s'", path);
    if (!CHECK(test_run(cmd, NULL) == 0, "cannot run: %s", cmd)) return;
    nfv_volume v;
    if (!CHECK_OK(nfv_volume_read(path, &v, NULL))) return;
    CHECK(v.nx == 7 && v.ny == 9 && v.nz == 11, "4-D read as %dx%dx%d", v.nx, v.ny, v.nz);
    size_t n = nfv_volume_numel(&v);
    double *want = malloc(n * sizeof *want);
    for (int k = 0; k < 11; k++)
        for (int j = 0; j < 9; j++)
            for (int i = 0; i < 7; i++) want[(k * 9 + j) * 7 + i] = i + 10.0 * j + 100.0 * k; /* t = 0 */
    CHECK_CLOSE("first volume of 4-D", v.data, want, n, 0.0, 0.0);
    free(want);
    nfv_volume_free(&v);
}

TEST(nifti_templates)
{
    const char *dir = "/usr/share/mricron/templates";
    char path[512];
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("note: %s missing (Debian mricron-data not installed): template checks skipped\n", dir);
        return;
    }
    /* ch2bet: uint8 181x217x181, 1 mm, MNI sform. */
    snprintf(path, sizeof path, "%s/ch2bet.nii.gz", dir);
    nfv_volume v;
    if (CHECK(file_exists(path), "mricron-data installs %s", path) && CHECK_OK(nfv_volume_read(path, &v, NULL))) {
        CHECK(v.nx == 181 && v.ny == 217 && v.nz == 181, "ch2bet %dx%dx%d", v.nx, v.ny, v.nz);
        CHECK(v.affine[0][0] == 1.0 && v.affine[1][1] == 1.0 && v.affine[2][2] == 1.0 && v.affine[0][3] == -90.0,
              "ch2bet affine diag %g %g %g offset %g", v.affine[0][0], v.affine[1][1], v.affine[2][2], v.affine[0][3]);
        CHECK(v.sform_code == 4, "ch2bet sform code %d", v.sform_code);
        check_against_nibabel(path, &v, 0.0, 0.0, 1);
        nfv_volume_free(&v);
    }
    /* Harvard-Oxford: negative pixdim[1] -> x axis flipped in the affine. */
    snprintf(path, sizeof path, "%s/HarvardOxford-cort-maxprob-thr0-1mm.nii.gz", dir);
    if (CHECK(file_exists(path), "mricron-data installs %s", path) && CHECK_OK(nfv_volume_read(path, &v, NULL))) {
        CHECK(v.nx == 182 && v.ny == 218 && v.nz == 182, "HO %dx%dx%d", v.nx, v.ny, v.nz);
        CHECK(v.affine[0][0] == -1.0 && v.affine[0][3] == 90.0, "HO affine x %g offset %g", v.affine[0][0],
              v.affine[0][3]);
        check_against_nibabel(path, &v, 0.0, 0.0, 1);
        nfv_volume_free(&v);
    }
    /* ch2better: 0.5 mm. */
    snprintf(path, sizeof path, "%s/ch2better.nii.gz", dir);
    if (CHECK(file_exists(path), "mricron-data installs %s", path) && CHECK_OK(nfv_volume_read(path, &v, NULL))) {
        CHECK(v.nx == 301 && v.ny == 370 && v.nz == 316, "ch2better %dx%dx%d", v.nx, v.ny, v.nz);
        CHECK(v.affine[0][0] == 0.5 && v.affine[1][1] == 0.5 && v.affine[2][2] == 0.5, "ch2better voxel %g %g %g",
              v.affine[0][0], v.affine[1][1], v.affine[2][2]);
        nfv_volume_free(&v);
    }
}

TEST(nifti_nonfinite_zeroed)
{
    char path[512], cmd[800];
    tmp_path(path, sizeof path, "nan.nii");
    snprintf(cmd, sizeof cmd, PY " make nan '%s'", path);
    if (!CHECK(test_run(cmd, NULL) == 0, "cannot run: %s", cmd)) return;
    nfv_volume v;
    size_t bad = 0;
    if (!CHECK_OK(nfv_volume_read(path, &v, &bad))) return;
    CHECK(bad == 5, "expected 3 NaN + 2 Inf counted, got %zu", bad);
    size_t finite = 0;
    for (size_t i = 0; i < nfv_volume_numel(&v); i++) finite += isfinite(v.data[i]) ? 1 : 0;
    CHECK(finite == nfv_volume_numel(&v), "non-finite voxels left");
    CHECK(v.data[0] == 0.0f && v.data[(5 * 9 + 4) * 7 + 3] == 0.0f && v.data[(3 * 9 + 2) * 7 + 1] == 0.0f,
          "NaN/Inf voxels not zeroed");
    CHECK(v.data[1] == 1.0f, "finite voxels must be kept (got %g)", v.data[1]);
    nfv_volume_free(&v);
}

/* Copy the first `keep` bytes of src into dst. */
static int truncate_copy(const char *src, const char *dst, long keep)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    int ok = in && out;
    for (long i = 0; ok && i < keep; i++) {
        int c = fgetc(in);
        if (c == EOF) break;
        fputc(c, out);
    }
    if (in) fclose(in);
    if (out) fclose(out);
    return ok;
}

TEST(nifti_bad_inputs)
{
    char good[512], good_gz[512], path[512], cmd[1200];
    nfv_volume v, r;
    tmp_path(good, sizeof good, "good.nii");
    tmp_path(good_gz, sizeof good_gz, "good.nii.gz");
    if (!CHECK_OK(nfv_volume_alloc(&v, 20, 21, 22, NULL))) return;
    float *rnd = test_random(nfv_volume_numel(&v), 5, 0.0f, 1.0f); /* incompressible */
    memcpy(v.data, rnd, nfv_volume_numel(&v) * sizeof(float));
    free(rnd);
    if (!CHECK_OK(nfv_volume_write(good, &v)) || !CHECK_OK(nfv_volume_write(good_gz, &v))) return;
    nfv_volume_free(&v);

    /* missing file */
    tmp_path(path, sizeof path, "missing.nii");
    check_one_line_error(nfv_volume_read(path, &r, NULL), path, "missing file");

    /* truncated .nii.gz: half the compressed stream */
    struct stat st;
    stat(good_gz, &st);
    tmp_path(path, sizeof path, "trunc_gz.nii.gz");
    truncate_copy(good_gz, path, (long)st.st_size / 2);
    check_one_line_error(nfv_volume_read(path, &r, NULL), path, "truncated .nii.gz");

    /* truncated .nii: header fine, data short */
    tmp_path(path, sizeof path, "trunc_raw.nii");
    truncate_copy(good, path, 352 + 1000);
    check_one_line_error(nfv_volume_read(path, &r, NULL), path, "truncated .nii");

    /* a text file named .nii */
    tmp_path(path, sizeof path, "text.nii");
    FILE *f = fopen(path, "w");
    if (f) {
        for (int i = 0; i < 40; i++) fprintf(f, "this is not a NIfTI file, line %d\n", i);
        fclose(f);
    }
    check_one_line_error(nfv_volume_read(path, &r, NULL), path, "text file named .nii");

    /* header claiming a huge size: dim[1..3] = 30000 (int16 at byte 42) is
     * over the voxel limit; 1000x1000x500 is under it but 2 GB of data
     * cannot come from a 37 KB file, raw or gzip'ed (deflate <= 1032:1). */
    int16_t claims[2][3] = {{30000, 30000, 30000}, {1000, 1000, 500}};
    for (int c = 0; c < 2; c++) {
        char name[64];
        snprintf(name, sizeof name, "huge%d.nii", c);
        tmp_path(path, sizeof path, name);
        truncate_copy(good, path, 1L << 30);
        f = fopen(path, "r+b");
        if (f) {
            fseek(f, 42, SEEK_SET);
            fwrite(claims[c], sizeof claims[c], 1, f);
            fclose(f);
        }
        check_one_line_error(nfv_volume_read(path, &r, NULL), path, "huge header");
        snprintf(cmd, sizeof cmd, "gzip -kf '%s'", path);
        if (c == 1 && CHECK(test_run(cmd, NULL) == 0, "gzip failed")) {
            strcat(path, ".gz");
            check_one_line_error(nfv_volume_read(path, &r, NULL), path, "huge header .gz");
            CHECK(strstr(nfv_error_message(), "compressed") != NULL, "size check should name it: %s",
                  nfv_error_message());
        }
    }

    /* 2-D input */
    tmp_path(path, sizeof path, "flat.nii");
    snprintf(cmd, sizeof cmd, PY " make 2d '%s'", path);
    if (CHECK(test_run(cmd, NULL) == 0, "cannot run: %s", cmd)) {
        nfv_status s = nfv_volume_read(path, &r, NULL);
        check_one_line_error(s, path, "2-D image");
        CHECK(strstr(nfv_error_message(), "3-D") != NULL, "2-D message should say 3-D is needed: %s",
              nfv_error_message());
    }
    /* a single-slice 3-D image is 2-D too */
    int64_t dims[8] = {3, 8, 8, 1, 1, 1, 1, 1};
    nifti_image *nim = nifti_make_new_nim(dims, DT_FLOAT32, 1);
    tmp_path(path, sizeof path, "slice.nii");
    nifti_set_filenames(nim, path, 0, 1);
    nifti_image_write(nim);
    nifti_image_free(nim);
    check_one_line_error(nfv_volume_read(path, &r, NULL), path, "single slice");
    /* complex data is refused, not misread */
    int64_t dims3[8] = {3, 4, 4, 4, 1, 1, 1, 1};
    nim = nifti_make_new_nim(dims3, DT_COMPLEX64, 1);
    tmp_path(path, sizeof path, "complex.nii");
    nifti_set_filenames(nim, path, 0, 1);
    nifti_image_write(nim);
    nifti_image_free(nim);
    check_one_line_error(nfv_volume_read(path, &r, NULL), path, "complex datatype");
}
