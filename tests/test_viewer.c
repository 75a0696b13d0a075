/* The report viewer's files (src/io/viewer.c): scaled-int16 NIfTI within half
 * a step of the float data, volume scripts that decode back to it, finding
 * and copying the bundle, the PNG fallback line.  The pages themselves are
 * tested in Chromium by `make test-browser`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "test.h"
#include "neurofv/viewer.h"

static int make_volume(nfv_volume *v)
{
    double aff[4][4] = {{-3, 0, 0, 90}, {0, 3, 0, -126}, {0, 0, 3, -72}, {0, 0, 0, 1}};
    if (!CHECK_OK(nfv_volume_alloc(v, 7, 9, 5, aff))) return 0;
    float *r = test_random(nfv_volume_numel(v), 17, -2.5f, 4.0f);
    memcpy(v->data, r, nfv_volume_numel(v) * sizeof *r);
    free(r);
    return 1;
}

/* Every voxel within half a quantization step (max |v| / 32767 / 2, and the
 * float32 slope's rounding), the same affine. */
static void check_quantized(const nfv_volume *got, const nfv_volume *want, const char *what)
{
    size_t n = nfv_volume_numel(want);
    double big = 0, worst = 0;
    for (size_t i = 0; i < n; i++) big = fmax(big, fabs(want->data[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got->data[i] - want->data[i]));
    double half = big / 32767 / 2;
    CHECK(got->nx == want->nx && got->ny == want->ny && got->nz == want->nz, "%s: shape", what);
    CHECK(worst <= half * 1.0001 && worst > 0, "%s: max |diff| %.3g within half a step %.3g", what, worst, half);
    CHECK(fabs(got->affine[0][0] + 3) < 1e-6 && fabs(got->affine[1][3] + 126) < 1e-4, "%s: affine kept", what);
}

TEST(viewer_int16_nifti_within_half_step)
{
    nfv_volume v, back;
    if (!make_volume(&v)) return;
    char path[600];
    snprintf(path, sizeof path, "%s/q16.nii.gz", test_tmpdir());
    if (CHECK_OK(nfv_volume_write_int16(path, &v)) && CHECK_OK(nfv_volume_read(path, &back, NULL))) {
        check_quantized(&back, &v, "int16 NIfTI");
        nfv_volume_free(&back);
    }
    nfv_volume_free(&v);
}

static int b64(int c)
{
    const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(tab, c) : NULL;
    return p ? (int)(p - tab) : -1;
}

TEST(viewer_volume_script_decodes_to_the_volume)
{
    nfv_volume v, back;
    if (!make_volume(&v)) return;
    const char *dir = test_tmpdir();
    if (!CHECK_OK(nfv_viewer_write_volume(dir, "sub/vol_view.js", &v))) {
        nfv_volume_free(&v);
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/sub/vol_view.js", dir);
    FILE *f = fopen(path, "r");
    static char text[1 << 20];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    const char *head = "(window.NFV_DATA = window.NFV_DATA || {})[\"sub/vol_view.js\"] = \"";
    int ok = CHECK(!strncmp(text, head, strlen(head)) && n > 3 && !strcmp(text + n - 3, "\";\n"),
                   "the script sets NFV_DATA[its path] to a string");
    /* Decode the base64 into a .nii.gz and read it back. */
    unsigned char *bytes = malloc(n);
    size_t m = 0;
    const char *s = text + strlen(head);
    for (; ok && s[0] != '"'; s += 4) {
        int a = b64(s[0]), b = b64(s[1]), c = b64(s[2]), d = b64(s[3]);
        if (!CHECK(a >= 0 && b >= 0 && (c >= 0 || s[2] == '=') && (d >= 0 || s[3] == '='), "base64 at %zu",
                   (size_t)(s - text)))
            ok = 0;
        unsigned w = (unsigned)a << 18 | (unsigned)b << 12 | (c > 0 ? (unsigned)c : 0) << 6 | (d > 0 ? (unsigned)d : 0);
        bytes[m++] = (unsigned char)(w >> 16);
        if (s[2] != '=') bytes[m++] = (unsigned char)(w >> 8);
        if (s[3] != '=') bytes[m++] = (unsigned char)w;
    }
    snprintf(path, sizeof path, "%s/decoded.nii.gz", dir);
    f = ok ? fopen(path, "wb") : NULL;
    if (f) fwrite(bytes, 1, m, f), fclose(f);
    if (f && CHECK_OK(nfv_volume_read(path, &back, NULL))) {
        check_quantized(&back, &v, "decoded script");
        nfv_volume_free(&back);
    }
    free(bytes);
    nfv_volume_free(&v);
}

TEST(viewer_bundle_found_copied_or_fallback_line)
{
    char dir[600], file[700], report[600], found[4096];
    snprintf(dir, sizeof dir, "%s/fake_bundle", test_tmpdir());
    snprintf(report, sizeof report, "%s/fake_report", test_tmpdir());
    CHECK_OK(nfv_mkdirs(dir));
    snprintf(file, sizeof file, "%s/niivue.umd.js", dir);
    CHECK_OK(nfv_write_text_atomic(file, "var niivue = {};\n"));
    const char *old = getenv("NEUROFV_VIEWER_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("NEUROFV_VIEWER_DIR", dir, 1);
    int available = 1;
    CHECK(!nfv_viewer_bundle_dir(found, sizeof found), "half a bundle is no bundle");
    CHECK_OK(nfv_viewer_install(report, &available));
    CHECK(available == 0, "no bundle: not available");
    snprintf(file, sizeof file, "%s/nfv-viewer.js", dir);
    CHECK_OK(nfv_write_text_atomic(file, "var NFV = {};\n"));
    CHECK(nfv_viewer_bundle_dir(found, sizeof found) && !strcmp(found, dir), "$NEUROFV_VIEWER_DIR is used");
    CHECK_OK(nfv_viewer_install(report, &available));
    snprintf(file, sizeof file, "%s/viewer/nfv-viewer.js", report);
    FILE *f = fopen(file, "r");
    char line[64] = "";
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        fclose(f);
    }
    CHECK(available == 1 && !strcmp(line, "var NFV = {};\n"), "the bundle is copied into the report's viewer/");
    if (saved) setenv("NEUROFV_VIEWER_DIR", saved, 1), free(saved);
    else unsetenv("NEUROFV_VIEWER_DIR");

    /* The page's HTML: one line without the bundle; the panel and items with it. */
    nfv_viewer_item it = {"v0", "a \"title\"", "viewer/background.js", "x/a_view.js"};
    char *buf = NULL;
    size_t len = 0;
    f = open_memstream(&buf, &len);
    nfv_viewer_html(f, 0, &it, 1);
    fclose(f);
    CHECK(strstr(buf, "Interactive viewer not bundled") && !strstr(buf, "<script"), "fallback: one line, no scripts");
    free(buf);
    f = open_memstream(&buf, &len);
    nfv_viewer_html(f, 1, &it, 1);
    fclose(f);
    CHECK(strstr(buf, "<canvas id=\"nfv-canvas\"") && strstr(buf, "id=\"nfv-threshold\"") &&
              strstr(buf, "<script src=\"viewer/niivue.umd.js\"></script>") &&
              strstr(buf, "\"title\":\"a \\\"title\\\"\"") && strstr(buf, "\"overlay\":\"x/a_view.js\""),
          "panel: canvas, slider, scripts, items as JSON (%s)", buf);
    free(buf);
}

/* `neurofv viewer`: the panel for a page written elsewhere; without the
 * bundle the one fallback line; refuses a missing --html and a non-NIfTI. */
TEST(viewer_cli_panel_and_errors)
{
    nfv_volume v;
    if (!make_volume(&v)) return;
    char dir[600], path[800], cmd[3000], log[700];
    snprintf(dir, sizeof dir, "%s/viewer_cli", test_tmpdir());
    snprintf(path, sizeof path, "%s/maps/a.nii.gz", dir);
    CHECK_OK(nfv_mkdirs(dir));
    snprintf(cmd, sizeof cmd, "%s/maps", dir);
    CHECK_OK(nfv_mkdirs(cmd));
    CHECK_OK(nfv_volume_write(path, &v));
    nfv_volume_free(&v);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    snprintf(cmd, sizeof cmd, "NEUROFV_VIEWER_DIR=%s/fake_bundle %s viewer --report %s --html %s/panel.html maps/a.nii.gz",
             test_tmpdir(), test_bin(), dir, dir);
    int with = 0;
    snprintf(path, sizeof path, "%s/fake_bundle/nfv-viewer.js", test_tmpdir());
    FILE *f = fopen(path, "r");
    if (f) with = 1, fclose(f);
    if (!with) { /* the bundle test makes it; stand alone, make it here */
        snprintf(path, sizeof path, "%s/fake_bundle", test_tmpdir());
        CHECK_OK(nfv_mkdirs(path));
        snprintf(path, sizeof path, "%s/fake_bundle/nfv-viewer.js", test_tmpdir());
        CHECK_OK(nfv_write_text_atomic(path, "var NFV = {};\n"));
        snprintf(path, sizeof path, "%s/fake_bundle/niivue.umd.js", test_tmpdir());
        CHECK_OK(nfv_write_text_atomic(path, "var niivue = {};\n"));
    }
    CHECK(test_run(cmd, log) == 0, "viewer runs: %s", cmd);
    snprintf(path, sizeof path, "%s/maps/a_view.js", dir);
    f = fopen(path, "r");
    CHECK(f != NULL, "wrote %s", path);
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/viewer/nfv-viewer.js", dir);
    f = fopen(path, "r");
    CHECK(f != NULL, "copied the bundle to %s", path);
    if (f) fclose(f);
    snprintf(cmd, sizeof cmd, "grep -q '\"overlay\":\"maps/a_view.js\"' %s/panel.html", dir);
    CHECK(test_run(cmd, NULL) == 0, "panel.html lists maps/a.nii.gz's script");
    snprintf(cmd, sizeof cmd, "NEUROFV_VIEWER_DIR=/nonexistent %s viewer --report %s --html %s/none.html maps/a.nii.gz && "
             "grep -c . %s/none.html | grep -qx 1 && grep -q 'not bundled' %s/none.html", test_bin(), dir, dir, dir, dir);
    CHECK(test_run(cmd, log) == 0, "no bundle: panel is the one fallback line");
    snprintf(cmd, sizeof cmd, "%s viewer --report %s maps/a.nii.gz", test_bin(), dir);
    CHECK(test_run(cmd, log) != 0, "--html is required");
    snprintf(cmd, sizeof cmd, "NEUROFV_VIEWER_DIR=%s/fake_bundle %s viewer --report %s --html %s/x.html maps/a.png 2>&1 | "
             "grep -q 'maps/a.png is not a .nii'", test_tmpdir(), test_bin(), dir, dir);
    CHECK(test_run(cmd, NULL) == 0, "a non-NIfTI is refused, naming it");
}
