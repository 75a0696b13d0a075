/* `visualize --resume` and `compare --resume`: a run whose outputs were cut
 * short (one target's files deleted, the report not yet written) continues
 * with only what is missing, and ends with the files an uninterrupted run
 * writes: the same bytes for volumes, pictures and reports, logs equal but
 * for their timing fields.  "Only what is missing" is checked by the
 * progress line and by mtimes: every kept file is set to an old time before
 * the resumed run and must keep it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utime.h>

#include "base/fs.h"
#include "neurofv/synth.h"
#include "neurofv/vis.h"
#include "test.h"

#define OLD_TIME 1000000000 /* 2001: older than anything a run writes */

/* The whole file (malloc'ed, NUL-terminated) or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = buf ? (size_t)n : 0;
    return buf;
}

/* Drops what depends on timing from a file of kind ext: JSON "seconds"
 * lines, the CSV's last (seconds) column, the last cell (seconds) of the
 * report's summary rows in Markdown and HTML. */
static void drop_timing(char *text, const char *ext)
{
    char *w = text;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);
        char tmp[8192];
        snprintf(tmp, sizeof tmp, "%.*s", (int)len, line);
        line += len;
        char *cut = NULL;
        if (!strcmp(ext, ".json") && strstr(tmp, "\"seconds\":")) continue;
        if (!strcmp(ext, ".csv")) cut = strrchr(tmp, ',');
        if (!strcmp(ext, ".html") && strstr(tmp, "<code>") && strstr(tmp, "</td></tr>"))
            for (char *p = tmp; (p = strstr(p, "<td>")) != NULL; p++) cut = p;
        if (!strcmp(ext, ".md") && tmp[0] == '|' && strchr(tmp, '`')) {
            *strrchr(tmp, '|') = 0;
            cut = strrchr(tmp, '|');
        }
        if (cut) strcpy(cut, "\n");
        size_t n = strlen(tmp);
        memmove(w, tmp, n);
        w += n;
    }
    *w = 0;
}

/* Same bytes, or (a log or report) the same text once timing is dropped. */
static int same_content(const char *a, const char *b, const char *ext)
{
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = x && y;
    if (same && ext) {
        drop_timing(x, ext);
        drop_timing(y, ext);
        same = !strcmp(x, y);
    } else if (same) {
        same = la == lb && !memcmp(x, y, la);
    }
    free(x);
    free(y);
    return same;
}

/* ".json", ".csv", ".md", ".html": files with timing; else NULL. */
static const char *timed_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && (!strcmp(dot, ".json") || !strcmp(dot, ".csv") || !strcmp(dot, ".md") || !strcmp(dot, ".html")))
        return dot;
    return NULL;
}

/* Every regular file under a (recursively) is in b with the same content;
 * returns how many files were compared, -1 on a difference. */
static int same_tree(const char *a, const char *b)
{
    DIR *d = opendir(a);
    if (!d) return -1;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) && count >= 0) {
        if (e->d_name[0] == '.') continue;
        char pa[1200], pb[1200];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        struct stat sb;
        if (stat(pa, &sb)) continue;
        if (S_ISDIR(sb.st_mode)) {
            int n = same_tree(pa, pb);
            count = n < 0 ? -1 : count + n;
        } else if (same_content(pa, pb, timed_ext(e->d_name))) {
            count++;
        } else {
            CHECK(0, "%s and %s differ", pa, pb);
            count = -1;
        }
    }
    closedir(d);
    return count;
}

/* Sets every file under dir to OLD_TIME. */
static void age_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb)) continue;
        if (S_ISDIR(sb.st_mode)) age_tree(p);
        struct utimbuf t = {OLD_TIME, OLD_TIME};
        utime(p, &t);
    }
    closedir(d);
}

/* Files under dir whose name starts with prefix: removed (del) or counted
 * as rewritten (mtime newer than OLD_TIME); returns the count. */
static int files_with_prefix(const char *dir, const char *prefix, int del)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (del) n += remove(p) == 0;
        else if (!stat(p, &sb) && S_ISREG(sb.st_mode)) n += sb.st_mtime != OLD_TIME;
    }
    closedir(d);
    return n;
}

/* Files under dir (recursively) rewritten since age_tree. */
static int rewritten(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb)) continue;
        if (S_ISDIR(sb.st_mode)) n += rewritten(p);
        else n += sb.st_mtime != OLD_TIME;
    }
    closedir(d);
    return n;
}

static int log_has(const char *path, const char *needle)
{
    char *text = slurp(path, NULL);
    int has = text && strstr(text, needle);
    free(text);
    return has;
}

static nfv_model *small_model(const char *spec, int classes, const char *const *names, const char *path)
{
    int in[4] = {1, 18, 20, 17};
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(test_ctx(), spec, in, classes, names, NFV_HEAD_SOFTMAX, 11, &m)))
        return NULL;
    CHECK_OK(nfv_model_save(m, path));
    return m;
}

TEST(vis_resume_recomputes_only_what_is_missing)
{
    char model[600], full[600], cut[600], cmd[4000], logp[700], outp[700], outf[700];
    snprintf(model, sizeof model, "%s/resume.safetensors", test_tmpdir());
    nfv_model *m = small_model("conv(3,k3,p1) relu maxpool(2) conv(4,k3,p1) relu flatten linear(2)", 2, NULL, model);
    if (!m) return;
    nfv_model_free(m);
    snprintf(full, sizeof full, "%s/resume_full", test_tmpdir());
    snprintf(cut, sizeof cut, "%s/resume_cut", test_tmpdir());
    snprintf(logp, sizeof logp, "%s/resume.log", test_tmpdir());
    snprintf(outp, sizeof outp, "%s/resume.out", test_tmpdir());
    snprintf(outf, sizeof outf, "%s/resume_full.out", test_tmpdir());
    const char *args = "--target relu2:all --target 'conv1:1@' --steps 3 --jitter 1 --starts 2 --batch 3 "
                       "--snapshots 0,2 --importance on --background none";
    snprintf(cmd, sizeof cmd, "(%s visualize --model %s --out %s %s > %s)", test_bin(), model, full, args, outf);
    CHECK(test_run(cmd, NULL) == 0, "uninterrupted run: %s", cmd);
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --out %s %s", test_bin(), model, cut, args);
    CHECK(test_run(cmd, NULL) == 0, "second run");
    /* Pre-empted: relu2:2 lost every file, conv1:1@ only its mosaic, the sweep its grid. */
    CHECK(files_with_prefix(cut, "relu2_2", 1) == 8, "relu2_2: 8 files (volume, 2 snapshots, importance, 3 PNGs, JSON)");
    snprintf(cmd, sizeof cmd, "%s/conv1_1_at_9_10_8_mosaic.png", cut);
    CHECK(remove(cmd) == 0, "removed %s", cmd);
    snprintf(cmd, sizeof cmd, "%s/relu2_all_grid.png", cut);
    CHECK(remove(cmd) == 0, "removed %s", cmd);
    age_tree(cut);
    snprintf(cmd, sizeof cmd, "(%s visualize --model %s --out %s %s --resume 2> %s > %s)", test_bin(), model, cut, args,
             logp, outp);
    CHECK(test_run(cmd, NULL) == 0, "resumed run: %s", cmd);
    CHECK(log_has(logp, "--resume: 3 of 5 target(s) complete") && log_has(logp, "2 to run"),
          "the progress line says what is left");
    CHECK(files_with_prefix(cut, "relu2_2", 0) == 8 && files_with_prefix(cut, "conv1_1", 0) == 8 &&
              files_with_prefix(cut, "relu2_all_grid", 0) == 1,
          "the two incomplete targets and the sweep's grid were written again");
    CHECK(rewritten(cut) == 17, "nothing else was rewritten (%d files newer than the cut)", rewritten(cut));
    CHECK(same_tree(full, cut) == 41, "every file as in the uninterrupted run (logs but for seconds)");
    CHECK(same_content(outf, outp, NULL), "the objectives printed are the same");
    /* Resuming with other options would mix runs: refused. */
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --out %s %s --resume --lr 0.1", test_bin(), model, cut, args);
    CHECK(test_run(cmd, logp) == 1 && log_has(logp, "other options"), "--resume with other options is refused");
    /* Nothing left: nothing runs, nothing is written. */
    age_tree(cut);
    snprintf(cmd, sizeof cmd, "%s visualize --model %s --out %s %s --resume", test_bin(), model, cut, args);
    CHECK(test_run(cmd, logp) == 0 && log_has(logp, "5 of 5 target(s) complete") && rewritten(cut) == 0,
          "a complete run resumed does nothing");
}

/* A `neurofv synth`-like truth: two shapes and a full mask. */
static void write_truth(const nfv_model *m, const char *dir)
{
    static const char *names[] = {"cube", "sphere"};
    char path[700];
    snprintf(path, sizeof path, "%s/shapes", dir);
    CHECK_OK(nfv_mkdirs(path));
    nfv_shape shapes[2] = {NFV_SHAPE_CUBE, NFV_SHAPE_SPHERE};
    for (int i = 0; i < 2; i++) {
        nfv_volume t;
        if (!CHECK_OK(nfv_synth_shape_template(shapes[i], 9.0, 2.0, &t))) continue;
        snprintf(path, sizeof path, "%s/shapes/%s.nii.gz", dir, names[i]);
        CHECK_OK(nfv_volume_write(path, &t));
        nfv_volume_free(&t);
    }
    nfv_volume mask;
    if (!CHECK_OK(nfv_volume_alloc(&mask, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                                   (const double(*)[4])m->affine)))
        return;
    for (size_t i = 0; i < nfv_volume_numel(&mask); i++) mask.data[i] = 1.0f;
    snprintf(path, sizeof path, "%s/mask.nii.gz", dir);
    CHECK_OK(nfv_volume_write(path, &mask));
    nfv_volume_free(&mask);
}

TEST(vis_resume_compare_continues_to_the_same_report)
{
    static const char *names[] = {"cube", "sphere"};
    char model[600], truth[600], out[600], keep[600], cmd[4000], logp[700], path[800];
    snprintf(model, sizeof model, "%s/resume_cmp.safetensors", test_tmpdir());
    snprintf(truth, sizeof truth, "%s/resume_truth", test_tmpdir());
    nfv_model *m = small_model("conv(2,k3,p1) relu flatten linear(2)", 2, names, model);
    if (!m) return;
    write_truth(m, truth);
    nfv_model_free(m);
    snprintf(out, sizeof out, "%s/resume_cmp", test_tmpdir());
    snprintf(keep, sizeof keep, "%s/resume_cmp_report", test_tmpdir());
    snprintf(logp, sizeof logp, "%s/resume_cmp.log", test_tmpdir());
    /* A stand-in viewer bundle, so the report's viewer files are the same on every machine. */
    char bundle[700];
    snprintf(bundle, sizeof bundle, "%s/resume_bundle", test_tmpdir());
    CHECK_OK(nfv_mkdirs(bundle));
    snprintf(path, sizeof path, "%s/niivue.umd.js", bundle);
    CHECK_OK(nfv_write_text_atomic(path, "var niivue = {};\n"));
    snprintf(path, sizeof path, "%s/nfv-viewer.js", bundle);
    CHECK_OK(nfv_write_text_atomic(path, "var NFV = {};\n"));
    char args[1000];
    snprintf(args, sizeof args, "--target logit:all --steps 2 --background none --configs none,l2 --config 'l2=--l2 0.5' "
                                "--seeds 1,2");
    char bin[900];
    snprintf(bin, sizeof bin, "NEUROFV_VIEWER_DIR=%s %s", bundle, test_bin());
    snprintf(cmd, sizeof cmd, "%s compare --model %s --truth %s --out %s %s", bin, model, truth, out, args);
    CHECK(test_run(cmd, NULL) == 0, "uninterrupted compare: %s", cmd);
    /* The report of the uninterrupted run, kept aside; then the job "stopped"
     * inside l2/seed2 (logit:sphere lost) before writing the report. */
    CHECK_OK(nfv_mkdirs(keep));
    const char *reports[] = {"results.csv", "results.md", "index.html"};
    for (int i = 0; i < 3; i++) {
        char from[900], to[900];
        snprintf(from, sizeof from, "%s/%s", out, reports[i]);
        snprintf(to, sizeof to, "%s/%s", keep, reports[i]);
        CHECK(rename(from, to) == 0, "kept %s", reports[i]);
    }
    snprintf(path, sizeof path, "%s/l2/seed2", out);
    CHECK(files_with_prefix(path, "logit_sphere", 1) == 6,
          "logit:sphere of l2/seed2: 6 files (with its match and its viewer script)");
    age_tree(out);
    snprintf(cmd, sizeof cmd, "%s compare --model %s --truth %s --out %s %s --resume", bin, model, truth, out, args);
    CHECK(test_run(cmd, logp) == 0, "resumed compare: %s", cmd);
    CHECK(log_has(logp, "--resume: l2/seed2: 1 of 2 target(s) complete, 1 to run") &&
              log_has(logp, "--resume: none/seed1: 2 of 2 target(s) complete, 0 to run"),
          "progress lines per configuration x seed");
    /* The report: 3 tables/pages, the 8 rows' viewer scripts (one of them logit:sphere's) and the 2 bundle files. */
    CHECK(files_with_prefix(path, "logit_sphere", 0) == 6 && rewritten(out) == 5 + 3 + 8 + 2,
          "only logit:sphere of l2/seed2 and the report were written (%d files)", rewritten(out));
    for (int i = 0; i < 3; i++) {
        char a[900], b[900];
        snprintf(a, sizeof a, "%s/%s", keep, reports[i]);
        snprintf(b, sizeof b, "%s/%s", out, reports[i]);
        CHECK(same_content(a, b, timed_ext(reports[i])), "%s as the uninterrupted run's (but for seconds)", reports[i]);
    }
    /* A missing match picture alone makes its target incomplete. */
    snprintf(path, sizeof path, "%s/none/seed1/logit_cube_match.png", out);
    CHECK(remove(path) == 0, "removed %s", path);
    snprintf(cmd, sizeof cmd, "%s compare --model %s --truth %s --out %s %s --resume", bin, model, truth, out, args);
    CHECK(test_run(cmd, logp) == 0 && log_has(logp, "none/seed1: 1 of 2 target(s) complete"),
          "a target without its match picture runs again");
}

/* compare --runs: the report in --out, every run's files (and the viewer's
 * scripts) in RUNS, linked from the report by a relative path; --resume
 * reads the runs there and ends with the same report. */
TEST(vis_resume_compare_runs_outside_the_report)
{
    static const char *names[] = {"cube", "sphere"};
    char model[600], truth[600], base[600], report[700], runs[700], cmd[4000], logp[700], path[900], keep[900];
    snprintf(model, sizeof model, "%s/runs_cmp.safetensors", test_tmpdir());
    snprintf(truth, sizeof truth, "%s/runs_truth", test_tmpdir());
    nfv_model *m = small_model("conv(2,k3,p1) relu flatten linear(2)", 2, names, model);
    if (!m) return;
    write_truth(m, truth);
    nfv_model_free(m);
    snprintf(base, sizeof base, "%s/runs_demo", test_tmpdir());
    snprintf(report, sizeof report, "%s/report/compare", base);
    snprintf(runs, sizeof runs, "%s/runs/compare", base);
    snprintf(logp, sizeof logp, "%s/runs_cmp.log", test_tmpdir());
    char bundle[700];
    snprintf(bundle, sizeof bundle, "%s/runs_bundle", test_tmpdir());
    CHECK_OK(nfv_mkdirs(bundle));
    snprintf(path, sizeof path, "%s/niivue.umd.js", bundle);
    CHECK_OK(nfv_write_text_atomic(path, "var niivue = {};\n"));
    snprintf(path, sizeof path, "%s/nfv-viewer.js", bundle);
    CHECK_OK(nfv_write_text_atomic(path, "var NFV = {};\n"));
    snprintf(cmd, sizeof cmd,
             "NEUROFV_VIEWER_DIR=%s %s compare --model %s --truth %s --out %s --runs %s --target logit:all --steps 2 "
             "--background none --configs none --seeds 1,2",
             bundle, test_bin(), model, truth, report, runs);
    CHECK(test_run(cmd, NULL) == 0, "compare --runs: %s", cmd);
    snprintf(path, sizeof path, "%s/index.html", report);
    CHECK(log_has(path, "\"../../runs/compare/none/seed1/logit_cube_match.png\"") &&
              log_has(path, "\"../../runs/compare/none/seed2/logit_sphere_view.js\"") &&
              log_has(path, "\"../../runs/compare/none/seed2/logit_sphere.nii.gz\""),
          "index.html links the runs' pictures, volumes and viewer scripts relatively");
    struct stat sb;
    snprintf(path, sizeof path, "%s/none", report);
    CHECK(stat(path, &sb) != 0, "no run folder inside the report (%s)", path);
    snprintf(path, sizeof path, "%s/none/seed2/logit_sphere_view.js", runs);
    CHECK(log_has(path, "[\"../../runs/compare/none/seed2/logit_sphere_view.js\"]"),
          "the viewer script beside the run's files, keyed by its path as seen from the report");
    snprintf(path, sizeof path, "%s/none/seed2", runs);
    CHECK(files_with_prefix(path, "logit_sphere", 1) == 6, "logit:sphere of none/seed2: 6 files, removed");
    snprintf(path, sizeof path, "%s/index.html", report);
    snprintf(keep, sizeof keep, "%s/index.kept.html", base);
    CHECK(rename(path, keep) == 0, "kept index.html");
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " --resume");
    CHECK(test_run(cmd, logp) == 0 && log_has(logp, "--resume: none/seed2: 1 of 2 target(s) complete, 1 to run") &&
              log_has(logp, "--resume: none/seed1: 2 of 2 target(s) complete, 0 to run"),
          "--resume finds the complete runs under --runs");
    CHECK(same_content(keep, path, ".html"), "the resumed report is the uninterrupted run's (but for seconds)");
}
