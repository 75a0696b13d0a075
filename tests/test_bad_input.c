/* Bad input, one clear line each, nothing left behind: the harness (see
 * tests/test_bad_input.h) and the volume corpus.  Every malformed NIfTI file
 * is written here at test time (hand-made NIfTI-1 headers, no checked-in
 * binaries) and given to `neurofv render`, the command that only reads a
 * volume; the other commands reach the same reader (nfv_volume_read), and
 * tests/test_bad_input_data.c / _model.c give them a sample of these files
 * through their own options.  Legal but unusual files (scaled integers,
 * float64, byte-swapped, 4-D, LPS, oblique, qform only, no transform) must be
 * accepted. */
#include "test_bad_input.h"

#include <glob.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <nifti2_io.h>

#include "neurofv/model.h"
#include "neurofv/volume.h"
#include "test.h"

/* ---- harness ------------------------------------------------------------- */

const char *bi_dir(void)
{
    static char dir[512];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/bad_input", test_tmpdir());
        mkdir(dir, 0755);
    }
    return dir;
}

char *bi_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", bi_dir(), name);
    return buf;
}

int bi_write(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(bytes, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

int bi_write_text(const char *path, const char *text) { return bi_write(path, text, strlen(text)); }

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap + 1);
    if (f && buf)
        for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;) {
            n += got;
            if (n == cap) {
                char *g = realloc(buf, 2 * cap + 1);
                if (!g) break;
                buf = g, cap *= 2;
            }
        }
    if (f) fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* Nothing named out or out<anything> exists. */
static int nothing_left(const char *out, char *found, size_t cap)
{
    struct stat st;
    if (stat(out, &st) == 0) return snprintf(found, cap, "%s", out), 0;
    char pattern[1100];
    snprintf(pattern, sizeof pattern, "%s*", out);
    glob_t g;
    int r = glob(pattern, 0, NULL, &g);
    int none = r == GLOB_NOMATCH;
    if (r == 0) snprintf(found, cap, "%s", g.gl_pathv[0]);
    globfree(&g);
    return none;
}

/* rm -rf path and everything whose name starts with it. */
static void remove_tree(const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'*", path, path);
    test_run(cmd, NULL);
}

/* Runs the binary with args; stderr into *err (malloc'ed), stdout dropped. */
static int run_args(const char *args, char **err, size_t *err_len)
{
    char errpath[600];
    bi_path(errpath, sizeof errpath, "stderr.txt");
    size_t cap = strlen(args) + 1400;
    char *cmd = malloc(cap);
    if (!cmd) return 255;
    /* The subshell's own stderr goes to the file; test_run's redirection
     * applies outside it. */
    snprintf(cmd, cap, "(%s %s 2>'%s')", test_bin(), args, errpath);
    remove(errpath);
    int rc = test_run(cmd, NULL);
    free(cmd);
    *err = slurp(errpath, err_len);
    return rc;
}

static int count_lines(const char *s, size_t n)
{
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += s[i] == '\n';
    return lines + (n > 0 && s[n - 1] != '\n');
}

void bi_refused_at(const char *file, int line, const char *names, const char *out, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (out) remove_tree(out); /* a leftover of an earlier case is not this one's */
    char *err = NULL;
    size_t n = 0;
    int rc = run_args(args, &err, &n);
    const char *e = err ? err : "";
    int lines = count_lines(e, n);
    nfv_test_check(rc == 1 || rc == 2, file, line, "`%.300s`: exit %d, want 1 or 2; stderr: %.600s", args, rc, e);
    nfv_test_check(lines == 1 && strlen(e) == n, file, line, "`%.300s`: want one line on stderr, got %d: %.600s",
                   args, lines, e);
    for (const char *p = names; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        char want[1024];
        snprintf(want, sizeof want, "%.*s", (int)len, p);
        nfv_test_check(strstr(e, want) != NULL, file, line, "`%.300s`: stderr does not name \"%s\": %.600s", args,
                       want, e);
        p += len + (bar ? 1 : 0);
    }
    char found[1100] = "";
    if (out)
        nfv_test_check(nothing_left(out, found, sizeof found), file, line, "`%.300s`: %s was left behind", args,
                       found);
    free(err);
}

void bi_accepted_at(const char *file, int line, const char *out, int max_lines, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *err = NULL;
    size_t n = 0;
    int rc = run_args(args, &err, &n);
    const char *e = err ? err : "";
    struct stat st;
    nfv_test_check(rc == 0, file, line, "`%.300s`: exit %d, want 0; stderr: %.600s", args, rc, e);
    nfv_test_check(count_lines(e, n) <= max_lines, file, line, "`%.300s`: more than %d lines on stderr: %.600s", args,
                   max_lines, e);
    if (out) nfv_test_check(stat(out, &st) == 0, file, line, "`%.300s`: no %s written", args, out);
    free(err);
}

/* ---- NIfTI files by hand --------------------------------------------------- */

static int bits_of(int datatype)
{
    switch (datatype) {
    case DT_UINT8: case DT_INT8: return 8;
    case DT_INT16: case DT_UINT16: return 16;
    case DT_FLOAT64: case DT_INT64: case DT_UINT64: case DT_COMPLEX64: return 64;
    case DT_RGB24: return 24;
    case DT_COMPLEX128: case DT_FLOAT128: return 128;
    case DT_BINARY: return 1;
    default: return 32;
    }
}

void bi_header(struct nifti_1_header *h, int nx, int ny, int nz, int datatype)
{
    memset(h, 0, sizeof *h);
    h->sizeof_hdr = 348;
    h->dim[0] = 3, h->dim[1] = (short)nx, h->dim[2] = (short)ny, h->dim[3] = (short)nz;
    for (int i = 4; i < 8; i++) h->dim[i] = 1;
    h->datatype = (short)datatype;
    h->bitpix = (short)bits_of(datatype);
    for (int i = 0; i < 8; i++) h->pixdim[i] = 1.0f;
    h->vox_offset = 352.0f;
    h->xyzt_units = NIFTI_UNITS_MM;
    h->sform_code = 1;
    h->srow_x[0] = h->srow_y[1] = h->srow_z[2] = 1.0f;
    memcpy(h->magic, "n+1", 4);
}

int bi_nifti(const char *path, const struct nifti_1_header *h, const void *data, size_t bytes, long keep)
{
    size_t n = sizeof *h + 4 + bytes;
    unsigned char *all = calloc(1, n);
    if (!all) return 0;
    memcpy(all, h, sizeof *h);
    if (bytes) memcpy(all + sizeof *h + 4, data, bytes);
    if (keep >= 0 && (size_t)keep < n) n = (size_t)keep;
    size_t len = strlen(path);
    int ok;
    if (len > 3 && !strcmp(path + len - 3, ".gz")) {
        gzFile gz = gzopen(path, "wb");
        ok = gz && gzwrite(gz, all, (unsigned)n) == (int)n;
        if (gz) ok = gzclose(gz) == Z_OK && ok;
    } else {
        ok = bi_write(path, all, n);
    }
    free(all);
    return ok;
}

int bi_float_volume(const char *path, int n)
{
    nfv_volume v;
    if (nfv_volume_alloc(&v, n, n, n, NULL)) return 0;
    for (int z = 0; z < n; z++)
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++) {
                double c = 0.5 * (n - 1), r2 = (x - c) * (x - c) + (y - c) * (y - c) + (z - c) * (z - c);
                v.data[((size_t)z * n + y) * n + x] = (r2 < 0.2 * n * n ? 100.0f : 10.0f) + (float)x;
            }
    nfv_status s = nfv_volume_write(path, &v);
    nfv_volume_free(&v);
    return s == NFV_OK;
}

/* ---- the shared model and dataset ------------------------------------------ */

const char *bi_good_volume(void)
{
    static char path[600];
    if (!path[0]) {
        bi_path(path, sizeof path, "good.nii");
        if (!CHECK(bi_float_volume(path, 12), "fixture %s", path)) path[0] = 0;
    }
    return path;
}

const char *bi_good_csv(void)
{
    static char path[600];
    if (!path[0] && bi_good_volume()[0]) {
        bi_path(path, sizeof path, "labels.csv");
        const char *text = "path,label,split\ngood.nii,a,train\ngood.nii,b,train\ngood.nii,a,train\ngood.nii,b,train\n"
                           "good.nii,a,val\ngood.nii,b,val\ngood.nii,a,test\ngood.nii,b,test\n";
        if (!CHECK(bi_write_text(path, text), "fixture %s", path)) path[0] = 0;
    }
    return path;
}

const char *bi_model(void)
{
    static char path[600];
    if (!path[0]) {
        bi_path(path, sizeof path, "model.safetensors");
        const int in[4] = {1, 12, 12, 12};
        const char *names[2] = {"a", "b"};
        nfv_model *m = NULL;
        if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), BI_ARCH, in, 2,
                                                 names, NFV_HEAD_SOFTMAX, 1, &m)) ||
            !CHECK_OK(nfv_model_save(m, path)))
            path[0] = 0;
        nfv_model_free(m);
    }
    return path;
}

/* ---- the volume corpus ----------------------------------------------------- */

#define VN 8 /* corpus volumes are VN^3 */

typedef void (*header_edit)(struct nifti_1_header *h);
static void h_none(struct nifti_1_header *h) { (void)h; }
static void h_huge(struct nifti_1_header *h) { h->dim[1] = h->dim[2] = h->dim[3] = 30000; }
/* Under the voxel limit, but 2 GB cannot come from this file. */
static void h_big(struct nifti_1_header *h) { h->dim[1] = 1000, h->dim[2] = 1000, h->dim[3] = 500; }
/* 32767^3 float64: 2.8e14 bytes, terabytes. */
static void h_terabytes(struct nifti_1_header *h)
{
    h->dim[1] = h->dim[2] = h->dim[3] = 32767;
    h->datatype = DT_FLOAT64, h->bitpix = 64;
}
static void h_negative(struct nifti_1_header *h) { h->dim[2] = -5; }
static void h_zero(struct nifti_1_header *h) { h->dim[3] = 0; }
static void h_ndim0(struct nifti_1_header *h) { h->dim[0] = 0; }
static void h_ndim9(struct nifti_1_header *h) { h->dim[0] = 9; }
static void h_4d_zero(struct nifti_1_header *h) { h->dim[0] = 4, h->dim[4] = 0; }
static void h_offset_past(struct nifti_1_header *h) { h->vox_offset = 1.0e6f; }
static void h_offset_negative(struct nifti_1_header *h) { h->vox_offset = -352.0f; }
static void h_offset_nan(struct nifti_1_header *h) { h->vox_offset = NAN; }
static void h_complex(struct nifti_1_header *h) { h->datatype = DT_COMPLEX64, h->bitpix = 64; }
static void h_rgb(struct nifti_1_header *h) { h->datatype = DT_RGB24, h->bitpix = 24; }
static void h_binary(struct nifti_1_header *h) { h->datatype = DT_BINARY, h->bitpix = 1; }
static void h_unknown_type(struct nifti_1_header *h) { h->datatype = 999, h->bitpix = 32; }
static void h_singular(struct nifti_1_header *h) /* two voxel axes map to the same world axis */
{
    h->srow_x[0] = 1, h->srow_x[1] = 1, h->srow_y[0] = 1, h->srow_y[1] = 1, h->srow_y[2] = 0;
}
static void h_zero_affine(struct nifti_1_header *h)
{
    memset(h->srow_x, 0, sizeof h->srow_x), memset(h->srow_y, 0, sizeof h->srow_y);
    memset(h->srow_z, 0, sizeof h->srow_z);
}
static void h_nan_affine(struct nifti_1_header *h) { h->srow_y[3] = NAN; }
/* int16 scaled beyond float: every voxel becomes Inf. */
static void h_scale_overflow(struct nifti_1_header *h) { h->scl_slope = 3.0e38f; }

typedef struct bad_volume {
    const char *file;
    header_edit edit;
    long keep;       /* cut the file to this many bytes (< 0: whole) */
    int nonfinite;   /* float32 data with NaN and Inf voxels */
} bad_volume;

static const bad_volume BAD_HEADERS[] = {
    {"trunc_data.nii", h_none, 352 + 1000, 0},
    {"trunc_data.nii.gz", h_none, 352 + 1000, 0},
    {"trunc_header.nii", h_none, 200, 0},
    {"header_only.nii", h_none, 348, 0},
    {"huge.nii", h_huge, -1, 0},
    {"big.nii.gz", h_big, -1, 0},
    {"terabytes.nii", h_terabytes, -1, 0},
    {"negative_dim.nii", h_negative, -1, 0},
    {"zero_dim.nii", h_zero, -1, 0},
    {"ndim0.nii", h_ndim0, -1, 0},
    {"ndim9.nii", h_ndim9, -1, 0},
    {"zero_volumes.nii", h_4d_zero, -1, 0},
    {"offset_past_end.nii", h_offset_past, -1, 0},
    {"offset_negative.nii", h_offset_negative, -1, 0},
    {"offset_nan.nii", h_offset_nan, -1, 0},
    {"complex.nii", h_complex, -1, 0},
    {"rgb.nii", h_rgb, -1, 0},
    {"binary.nii", h_binary, -1, 0},
    {"unknown_type.nii", h_unknown_type, -1, 0},
    {"singular_affine.nii", h_singular, -1, 0},
    {"zero_affine.nii", h_zero_affine, -1, 0},
    {"nan_affine.nii", h_nan_affine, -1, 0},
    {"nan_voxels.nii", h_none, -1, 1},
    {"nan_voxels.nii.gz", h_none, -1, 1},
};

/* VN^3 float32 voxels (value = index + 1); with nonfinite, 3 NaN and 2 Inf. */
static int write_bad_header(const char *path, const bad_volume *b)
{
    struct nifti_1_header h;
    bi_header(&h, VN, VN, VN, DT_FLOAT32);
    b->edit(&h);
    float data[VN * VN * VN];
    for (int i = 0; i < VN * VN * VN; i++) data[i] = (float)(i + 1);
    if (b->nonfinite) data[0] = data[17] = data[300] = NAN, data[5] = INFINITY, data[400] = -INFINITY;
    size_t bytes = sizeof data;
    if (b->edit == h_scale_overflow) { /* int16 data for the scaling case */
        int16_t *s = (int16_t *)data;
        for (int i = 0; i < VN * VN * VN; i++) s[i] = (int16_t)(i % 100 + 1);
        bytes = VN * VN * VN * sizeof(int16_t);
    }
    return bi_nifti(path, &h, data, bytes, b->keep);
}

const char *bi_bad_volume(const char *file)
{
    static char path[8][600];
    static int next;
    char *p = path[next++ % 8];
    bi_path(p, 600, file);
    for (size_t i = 0; i < sizeof BAD_HEADERS / sizeof *BAD_HEADERS; i++)
        if (!strcmp(BAD_HEADERS[i].file, file)) CHECK(write_bad_header(p, &BAD_HEADERS[i]), "corpus file %s", p);
    return p;
}

/* Files that are not NIfTI at all. */
static void write_not_nifti(void)
{
    char p[600];
    bi_write(bi_path(p, sizeof p, "empty.nii"), "", 0);
    bi_write_text(bi_path(p, sizeof p, "text.nii"), "path,label\nthis is a CSV, not a NIfTI file\n");
    unsigned char junk[3000];
    unsigned long long s = 99;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(test_uniform(&s) * 256);
    bi_write(bi_path(p, sizeof p, "random.nii"), junk, sizeof junk);
    /* A gzip member header, then bytes that are no deflate stream. */
    memcpy(junk, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
    bi_write(bi_path(p, sizeof p, "corrupt.nii.gz"), junk, sizeof junk);
    bi_write(bi_path(p, sizeof p, "png.nii"), "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    mkdir(bi_path(p, sizeof p, "directory.nii"), 0755);
}

TEST(bad_input_volume_render)
{
    char out[600], vol[600];
    bi_path(out, sizeof out, "render_out.png");
    write_not_nifti();
    const char *not_nifti[] = {"missing.nii", "empty.nii", "text.nii", "random.nii", "corrupt.nii.gz", "png.nii",
                               "directory.nii"};
    for (size_t i = 0; i < sizeof not_nifti / sizeof *not_nifti; i++) {
        bi_path(vol, sizeof vol, not_nifti[i]);
        BI_REFUSED(vol, out, "render '%s' --out '%s'", vol, out);
    }
    for (size_t i = 0; i < sizeof BAD_HEADERS / sizeof *BAD_HEADERS; i++) {
        const char *p = bi_bad_volume(BAD_HEADERS[i].file);
        BI_REFUSED(p, out, "render '%s' --out '%s'", p, out);
    }
    /* NaN/Inf voxels are refused with their count. */
    const char *nan = bi_bad_volume("nan_voxels.nii");
    BI_REFUSED("5 voxels", out, "render '%s' --out '%s'", nan, out);
    /* A bad background names the background. */
    const char *trunc = bi_bad_volume("trunc_data.nii.gz");
    BI_REFUSED(trunc, out, "render '%s' --overlay '%s' --out '%s'", bi_good_volume(), trunc, out);
}

TEST(bad_input_render_options)
{
    char out[600];
    bi_path(out, sizeof out, "render_opt.png");
    const char *v = bi_good_volume();
    const struct { const char *opts, *names; } cases[] = {
        {"--window 5,1", "--window"},       {"--window nan,1", "--window"},   {"--window 1", "--window"},
        {"--at -1,0,0", "--at"},            {"--at 1,2", "--at"},             {"--at 99,0,0", "--at"},
        {"--at-mm nan,0,0", "--at-mm"},     {"--at-mm 1,2", "--at-mm"},       {"--at 1,1,1 --at-mm 0,0,0", "--at"},
        {"--mosaic --slices 0", "--slices"}, {"--mosaic --slices -3", "--slices"}, {"--mosaic --cols 0", "--cols"},
        {"--mosaic --cols x", "--cols"},    {"--zoom -1", "--zoom"},          {"--zoom nan", "--zoom"},
        {"--zoom 1e9", "--zoom"},           {"--threshold nan --overlay template", "--threshold"},
        {"--max -1 --overlay template", "--max"}, {"--max inf --overlay template", "--max"},
        {"--bogus 1", "--bogus"},           {"--slices", "--slices"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        BI_REFUSED(cases[i].names, out, "render '%s' %s --out '%s'", v, cases[i].opts, out);
    BI_REFUSED("VOLUME", out, "render --out '%s'", out);
}

/* ---- legal but unusual volumes ----------------------------------------------- */

/* VN^3 int16 raw values (i % 50) - 20. */
static void int16_ramp(int16_t *d)
{
    for (int i = 0; i < VN * VN * VN; i++) d[i] = (int16_t)(i % 50 - 20);
}

/* Writes the legal files and checks what the library reads from two of them. */
void bi_legal_volumes(void)
{
    char p[600];
    struct nifti_1_header h;
    int16_t s16[VN * VN * VN];
    int16_ramp(s16);
    /* int16 with scaling, LPS (x and y flipped) */
    bi_header(&h, VN, VN, VN, DT_INT16);
    h.scl_slope = 2.0f, h.scl_inter = -100.0f;
    h.srow_x[0] = -2, h.srow_y[1] = -2, h.srow_z[2] = 2, h.srow_x[3] = 20, h.srow_y[3] = 20;
    bi_nifti(bi_path(p, sizeof p, "legal_int16_lps.nii"), &h, s16, sizeof s16, -1);
    nfv_volume v;
    if (CHECK_OK(nfv_volume_read(p, &v, NULL))) {
        CHECK(v.data[7] == -13 * 2 - 100 + 0.0f && v.affine[0][0] == -2, "int16 scaled: %g, affine %g", v.data[7],
              v.affine[0][0]);
        nfv_volume_free(&v);
    }
    /* uint8 with scaling, oblique: 30 degrees about z */
    uint8_t u8[VN * VN * VN];
    for (int i = 0; i < VN * VN * VN; i++) u8[i] = (uint8_t)(i % 200);
    bi_header(&h, VN, VN, VN, DT_UINT8);
    h.scl_slope = 0.5f, h.scl_inter = 10.0f;
    h.srow_x[0] = 0.8660254f, h.srow_x[1] = -0.5f, h.srow_y[0] = 0.5f, h.srow_y[1] = 0.8660254f;
    bi_nifti(bi_path(p, sizeof p, "legal_uint8_oblique.nii.gz"), &h, u8, sizeof u8, -1);
    /* float64, qform only (90 degrees about z: quatern_d = sin 45) */
    double f64[VN * VN * VN];
    for (int i = 0; i < VN * VN * VN; i++) f64[i] = 0.25 * i;
    bi_header(&h, VN, VN, VN, DT_FLOAT64);
    h.sform_code = 0, h.qform_code = 1, h.quatern_d = 0.70710678f, h.pixdim[0] = 1;
    bi_nifti(bi_path(p, sizeof p, "legal_float64_qform.nii"), &h, f64, sizeof f64, -1);
    /* no transform at all (ANALYZE-style: pixdim only), data after a padded offset */
    bi_header(&h, VN, VN, VN, DT_INT16);
    h.sform_code = 0, h.pixdim[1] = h.pixdim[2] = h.pixdim[3] = 2;
    h.vox_offset = 352 + 96;
    int16_t padded[48 + VN * VN * VN] = {0};
    int16_ramp(padded + 48);
    bi_nifti(bi_path(p, sizeof p, "legal_no_transform_offset.nii"), &h, padded, sizeof padded, -1);
    /* big-endian (byte-swapped header and data) */
    bi_header(&h, VN, VN, VN, DT_INT16);
    h.scl_slope = 1.0f;
    int16_t swapped[VN * VN * VN];
    for (int i = 0; i < VN * VN * VN; i++) swapped[i] = (int16_t)(((uint16_t)s16[i] >> 8) | ((uint16_t)s16[i] << 8));
    nifti_swap_as_nifti1(&h);
    bi_nifti(bi_path(p, sizeof p, "legal_big_endian.nii"), &h, swapped, sizeof swapped, -1);
    if (CHECK_OK(nfv_volume_read(p, &v, NULL))) {
        CHECK(v.nx == VN && v.data[7] == -13.0f, "big-endian: %dx.. voxel 7 = %g", v.nx, v.data[7]);
        nfv_volume_free(&v);
    }
    /* 4-D: three volumes, the first is used (with a warning) */
    float f4[3 * VN * VN * VN];
    for (int i = 0; i < 3 * VN * VN * VN; i++) f4[i] = (float)(i % 97);
    bi_header(&h, VN, VN, VN, DT_FLOAT32);
    h.dim[0] = 4, h.dim[4] = 3;
    bi_nifti(bi_path(p, sizeof p, "legal_4d.nii.gz"), &h, f4, sizeof f4, -1);
}

TEST(bad_input_volume_legal_unusual)
{
    bi_legal_volumes();
    const char *files[] = {"legal_int16_lps.nii", "legal_uint8_oblique.nii.gz", "legal_float64_qform.nii",
                           "legal_no_transform_offset.nii", "legal_big_endian.nii", "legal_4d.nii.gz"};
    char in[600], out[600];
    bi_path(out, sizeof out, "legal.png");
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        remove(out);
        bi_path(in, sizeof in, files[i]);
        /* the 4-D file adds its one warning line */
        BI_ACCEPTED(out, 2, "render '%s' --out '%s'", in, out);
    }
}
