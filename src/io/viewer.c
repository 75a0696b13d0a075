/* The NiiVue viewer in the HTML reports: finding and copying the bundle,
 * viewer volumes as base64 scripts, the panel's HTML (include/neurofv/viewer.h). */
#include "neurofv/viewer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"

#ifndef NFV_VIEWER_DIR
#define NFV_VIEWER_DIR "build/viewer"
#endif

static const char *const bundle_files[] = {"niivue.umd.js", "nfv-viewer.js"};

static int has_bundle(const char *dir)
{
    char path[4200];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bundle_files[i]);
        if (access(path, R_OK) != 0) return 0;
    }
    return 1;
}

int nfv_viewer_bundle_dir(char *buf, size_t cap)
{
    const char *env = getenv("NEUROFV_VIEWER_DIR");
    if (env && *env) { /* when set, the only place looked at */
        snprintf(buf, cap, "%s", env);
        return has_bundle(buf);
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, cap, "%s/viewer", exe);
            if (has_bundle(buf)) return 1;
        }
    }
    snprintf(buf, cap, "%s", NFV_VIEWER_DIR);
    return has_bundle(buf);
}

static nfv_status copy_file(const char *from, const char *to)
{
    char *buf;
    size_t size;
    NFV_TRY(nfv_read_file(from, (size_t)1 << 40, &buf, &size, NULL));
    nfv_atomic_file af;
    nfv_status st = nfv_atomic_open(&af, to, "wb");
    if (!st) {
        fwrite(buf, 1, size, af.f);
        st = nfv_atomic_commit(&af);
    }
    free(buf);
    return st;
}

nfv_status nfv_viewer_install(const char *report_dir, int *available)
{
    char from[4096], dir[4200], src[4300], dst[4300];
    *available = nfv_viewer_bundle_dir(from, sizeof from);
    if (!*available) return NFV_OK;
    snprintf(dir, sizeof dir, "%s/viewer", report_dir);
    NFV_TRY(nfv_mkdirs(dir));
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", from, bundle_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, bundle_files[i]);
        nfv_status st = copy_file(src, dst);
        if (st) return nfv_fail_context(st, "viewer bundle");
    }
    return NFV_OK;
}

static void base64(FILE *f, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        fputc(tab[v >> 18 & 63], f);
        fputc(tab[v >> 12 & 63], f);
        fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? tab[v & 63] : '=', f);
    }
}

nfv_status nfv_viewer_write_volume(const char *report_dir, const char *rel, const nfv_volume *v)
{
    char path[4200], dir[4200], nii[4400];
    snprintf(path, sizeof path, "%s/%s", report_dir, rel);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        NFV_TRY(nfv_mkdirs(dir));
    }
    /* The NIfTI under a temporary name beside the script, then its bytes in base64. */
    char tmp[4300];
    NFV_TRY(nfv_temp_name(path, tmp, sizeof tmp));
    snprintf(nii, sizeof nii, "%s.nii.gz", tmp);
    nfv_status st = nfv_volume_write_int16(nii, v);
    char *bytes = NULL;
    size_t size = 0;
    if (!st) st = nfv_read_file(nii, (size_t)1 << 40, &bytes, &size, NULL);
    unlink(nii);
    if (st) return nfv_fail_context(st, "viewer volume %s", path);
    nfv_atomic_file af;
    st = nfv_atomic_open(&af, path, "w");
    if (!st) {
        fprintf(af.f, "(window.NFV_DATA = window.NFV_DATA || {})[\"%s\"] = \"", rel);
        base64(af.f, (const unsigned char *)bytes, size);
        fprintf(af.f, "\";\n");
        st = nfv_atomic_commit(&af);
    }
    free(bytes);
    return st;
}

/* A JSON string of s (the item fields are file names and target names). */
static void js_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if (*s == '<') fputs("\\u003c", f);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

void nfv_viewer_html(FILE *f, int available, const nfv_viewer_item *items, int count)
{
    if (!available || count == 0) {
        if (count)
            fprintf(f, "<p class=\"nfv-noviewer\">Interactive viewer not bundled (NiiVue not built: run "
                       "tools/install-deps); the pictures below are PNGs.</p>\n");
        return;
    }
    fprintf(f, "<div id=\"nfv-viewer\" style=\"padding:4px 0\">"
               "<div style=\"font-size:13px\"><b id=\"nfv-title\">loading viewer</b> &nbsp; threshold "
               "<input type=\"range\" id=\"nfv-threshold\" min=\"0\" max=\"100\" value=\"20\"> "
               "<span id=\"nfv-threshold-value\"></span> (|value|, hot positive, cold negative) &nbsp; crosshair: "
               "<span id=\"nfv-location\"></span></div>\n<div style=\"width:960px;height:360px\">"
               "<canvas id=\"nfv-canvas\"></canvas></div></div>\n"
               "<script src=\"viewer/niivue.umd.js\"></script>\n<script src=\"viewer/nfv-viewer.js\"></script>\n"
               "<script>NFV.start([\n");
    for (int i = 0; i < count; i++) {
        fprintf(f, "{\"id\":");
        js_string(f, items[i].id);
        fprintf(f, ",\"title\":");
        js_string(f, items[i].title);
        fprintf(f, ",\"background\":");
        js_string(f, items[i].background);
        fprintf(f, ",\"overlay\":");
        js_string(f, items[i].overlay);
        fprintf(f, "}%s\n", i + 1 < count ? "," : "");
    }
    fprintf(f, "]);</script>\n");
}

nfv_status nfv_viewer_write_items(const char *report_dir, const char *const *rels, int n, const nfv_volume *background,
                                  nfv_viewer_item *items)
{
    nfv_status st = NFV_OK;
    for (int i = 0; i < n && !st; i++) {
        nfv_viewer_item *it = &items[i];
        const char *rel = rels[i];
        size_t len = strlen(rel), ext = len > 7 && !strcmp(rel + len - 7, ".nii.gz") ? 7
                                      : len > 4 && !strcmp(rel + len - 4, ".nii")  ? 4
                                                                                    : 0;
        if (!ext) return nfv_fail(NFV_ERR_INVALID_ARG, "viewer: %s is not a .nii or .nii.gz file", rel);
        snprintf(it->id, sizeof it->id, "v%d", i);
        snprintf(it->title, sizeof it->title, "%.*s", (int)(len - ext), rel);
        snprintf(it->overlay, sizeof it->overlay, "%.*s_view.js", (int)(len - ext), rel);
        snprintf(it->background, sizeof it->background, "%s", background ? "viewer/background.js" : it->overlay);
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", report_dir, rel);
        nfv_volume v = {0};
        st = nfv_volume_read(path, &v, NULL);
        if (!st) st = nfv_viewer_write_volume(report_dir, it->overlay, &v);
        if (!st && i == 0 && background) {
            nfv_volume bg = {0};
            st = nfv_volume_resample_to(background, v.nx, v.ny, v.nz, v.affine, 0, &bg);
            if (!st) st = nfv_viewer_write_volume(report_dir, it->background, &bg);
            nfv_volume_free(&bg);
        }
        nfv_volume_free(&v);
    }
    return st;
}
