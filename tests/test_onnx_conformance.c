/* ONNX conformance: every test of Debian libonnx-testdata's data/node and
 * data/pytorch-converted (skipped with a message when the package is
 * absent).  Each model is read with its extra graph inputs (input_1.pb ...)
 * fed as constants; one the reader or the model builder refuses as
 * unsupported is counted skipped under its reason; the others are built
 * with nfv_model_from_onnx, run in eval mode on input_0.pb and compared
 * with output_0.pb (|d| <= 1e-4 + 1e-4 |want|).  Ends with ran / passed /
 * skipped and one line per skip reason.  The tests in MUST_RUN may not be
 * skipped. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/model.h"
#include "neurofv/onnx.h"
#include "test.h"
#include "test_onnx.h"

/* Conformance tests neurofv must run (patterns: a trailing '*' matches any
 * ending).  Left out because they cannot be per-sample neurofv graphs: the
 * flatten / concat / logsoftmax tests over axis 0 (the batch) or an axis
 * after the channels, and Gemm with transA=1 (A's batch is its second
 * dimension); see docs of onnx.h. */
static const char *const MUST_RUN[] = {
    "pytorch-converted/test_Conv3d*", "pytorch-converted/test_BatchNorm3d_eval", "pytorch-converted/test_MaxPool3d*",
    "pytorch-converted/test_AvgPool3d*", "node/test_averagepool_3d_default", "node/test_maxpool_3d_default",
    "node/test_globalaveragepool", "node/test_gemm_alpha", "node/test_gemm_beta", "node/test_gemm_default_matrix_bias",
    "node/test_gemm_default_no_bias", "node/test_gemm_default_scalar_bias",
    "node/test_gemm_default_single_elem_vector_bias", "node/test_gemm_default_vector_bias",
    "node/test_gemm_default_zero_bias", "node/test_gemm_transposeB", "node/test_flatten_axis1",
    "node/test_flatten_default_axis", "node/test_flatten_negative_axis3", "node/test_logsoftmax_axis_1",
    "node/test_logsoftmax_example_1", "node/test_logsoftmax_large_number", "node/test_concat_3d_axis_1",
    "node/test_concat_3d_axis_negative_2", "node/test_relu", "node/test_add",
};
#define NMUST ((int)(sizeof MUST_RUN / sizeof MUST_RUN[0]))

static int matches(const char *pat, const char *name)
{
    size_t n = strlen(pat);
    return pat[n - 1] == '*' ? !strncmp(pat, name, n - 1) : !strcmp(pat, name);
}

typedef struct reason {
    char text[160];
    int count;
    char example[96];
} reason;

typedef struct tally {
    int ran, passed, skipped, failed;
    reason reasons[256];
    int nreasons;
    int must_seen[64], must_ran[64];
} tally;

/* The reason of an unsupported-feature message, without the file and node
 * name: "Gemm: transA=1 is not supported ..." */
static void add_reason(tally *t, const char *test, const char *msg)
{
    char key[160];
    const char *op = strstr(msg, "(op ");
    if (op) {
        const char *close = strstr(op, "): ");
        snprintf(key, sizeof key, "%.*s: %s", close ? (int)(close - op - 4) : 0, op + 4, close ? close + 3 : op);
    } else {
        const char *c = strstr(msg, ".onnx: ");
        snprintf(key, sizeof key, "%s", c ? c + 7 : msg);
    }
    char *sup = strstr(key, "; supported: Add, "); /* the op list is the same everywhere */
    if (sup) *sup = 0;
    /* Names in quotes and the .pb file vary per test: "*" and no path. */
    const char *pb = strstr(key, ".pb: ");
    if (pb) memmove(key, pb + 5, strlen(pb + 5) + 1);
    for (char *q = strchr(key, '"'), *e; q && (e = strchr(q + 1, '"')) != NULL; q = strchr(q + 3, '"')) {
        memmove(q + 2, e, strlen(e) + 1);
        q[1] = '*';
    }
    for (int i = 0; i < t->nreasons; i++)
        if (!strcmp(t->reasons[i].text, key)) {
            t->reasons[i].count++;
            return;
        }
    if (t->nreasons == 256) return;
    reason *r = &t->reasons[t->nreasons++];
    snprintf(r->text, sizeof r->text, "%s", key);
    snprintf(r->example, sizeof r->example, "%s", test);
    r->count = 1;
}

/* Forward the model on input_0.pb, compare with output_0.pb; prints a line
 * on failure.  Returns 1 when it matches. */
static int run_model(nfv_model *m, const nfv_onnx_graph *g, const char *dir, const char *test)
{
    char p[1100];
    nfv_onnx_tensor in, want;
    snprintf(p, sizeof p, "%s/test_data_set_0/input_0.pb", dir);
    if (!CHECK_OK(nfv_onnx_read_tensor(p, &in))) return 0;
    snprintf(p, sizeof p, "%s/test_data_set_0/output_0.pb", dir);
    if (!CHECK_OK(nfv_onnx_read_tensor(p, &want))) {
        nfv_onnx_tensor_free(&in);
        return 0;
    }
    nfv_context *ctx = test_ctx();
    /* Models take (N, C, D, H, W); an (N, F) input is (N, F, 1, 1, 1) (its Flatten is in the model). */
    int shape[5] = {(int)in.shape[0], 1, 1, 1, 1}, ndim = 5, ok = 0;
    for (int d = 0; d < g->input_ndim; d++) shape[1 + d] = g->input_shape[d];
    nfv_tensor x = {0};
    float *got = NULL;
    nfv_status st = nfv_tensor_create(ctx, &x, ndim, shape);
    if (st == NFV_OK && x.numel != in.numel) st = nfv_fail(NFV_ERR_FORMAT, "input_0.pb has %zu values, the model takes %zu", in.numel, x.numel);
    if (st == NFV_OK) st = nfv_tensor_upload(ctx, &x, in.data);
    if (st == NFV_OK) st = nfv_model_forward(m, ctx, &x, -1, 0);
    nfv_tensor *y = st == NFV_OK ? nfv_model_activation(m, m->layer_count - 1) : NULL;
    if (st == NFV_OK && (!y || y->numel != want.numel))
        st = nfv_fail(NFV_ERR_FORMAT, "output has %zu values, output_0.pb %zu", y ? y->numel : 0, want.numel);
    if (st == NFV_OK && (got = malloc(y->numel * sizeof *got)) != NULL) st = nfv_tensor_download(ctx, y, got);
    if (st != NFV_OK || !got) {
        printf("conformance %s: FAILED to run: %s\n", test, nfv_error_message());
    } else {
        size_t worst = 0, bad = 0;
        double wd = 0;
        for (size_t i = 0; i < want.numel; i++) {
            double d = fabs((double)got[i] - want.data[i]);
            if (!(d <= 1e-4 + 1e-4 * fabs(want.data[i]))) bad++;
            if (!(d <= wd)) wd = d, worst = i;
        }
        ok = bad == 0;
        if (!ok)
            printf("conformance %s: %zu of %zu values differ; worst at [%zu]: got %.8g want %.8g (diff %.3g)\n", test,
                   bad, want.numel, worst, got[worst], want.data[worst], wd);
    }
    free(got);
    nfv_tensor_free(&x);
    nfv_onnx_tensor_free(&in);
    nfv_onnx_tensor_free(&want);
    return ok;
}

static void one_test(tally *t, const char *dir, const char *test)
{
    int must = -1;
    for (int i = 0; i < NMUST; i++)
        if (matches(MUST_RUN[i], test)) must = i, t->must_seen[i] = 1;
    nfv_onnx_graph g;
    nfv_status st = onnx_read_dir(dir, &g);
    if (st == NFV_ERR_UNSUPPORTED) {
        t->skipped++;
        add_reason(t, test, nfv_error_message());
        if (must >= 0) printf("conformance %s: skipped but must run: %s\n", test, nfv_error_message());
        return;
    }
    if (!CHECK(st == NFV_OK, "conformance %s: read: %s", test, nfv_error_message())) {
        t->failed++;
        return;
    }
    nfv_model *m = NULL;
    st = nfv_model_from_onnx(test_ctx(), &g, &m);
    if (st != NFV_OK) nfv_onnx_free(&g);
    if (st == NFV_ERR_UNSUPPORTED) {
        char key[600];
        snprintf(key, sizeof key, "model: %s", nfv_error_message());
        t->skipped++;
        add_reason(t, test, key);
        if (must >= 0) printf("conformance %s: skipped but must run: %s\n", test, nfv_error_message());
        return;
    }
    if (!CHECK(st == NFV_OK, "conformance %s: nfv_model_from_onnx: %s", test, nfv_error_message())) {
        t->failed++;
        return;
    }
    t->ran++;
    if (must >= 0) t->must_ran[must] = 1;
    if (run_model(m, &g, dir, test)) t->passed++;
    else t->failed++;
    nfv_model_free(m);
    nfv_onnx_free(&g);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void run_suite(tally *t, const char *suite)
{
    char root[512];
    snprintf(root, sizeof root, "%s/%s", ONNX_TESTDATA, suite);
    DIR *d = opendir(root);
    if (!d) return;
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "test_", 5)) continue;
        if (n == cap) names = realloc(names, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (int i = 0; i < n; i++) {
        char dir[1024], test[600];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        snprintf(test, sizeof test, "%s/%s", suite, names[i]);
        one_test(t, dir, test);
        free(names[i]);
    }
    free(names);
}

TEST(onnx_conformance)
{
    if (!onnx_testdata_present("onnx_conformance")) return;
    static tally t;
    memset(&t, 0, sizeof t);
    run_suite(&t, "node");
    run_suite(&t, "pytorch-converted");
    printf("onnx conformance: %d ran, %d passed, %d failed, %d skipped\n", t.ran, t.passed, t.failed, t.skipped);
    for (int i = 0; i < t.nreasons; i++)
        printf("  skipped %3d  %s  (e.g. %s)\n", t.reasons[i].count, t.reasons[i].text, t.reasons[i].example);
    for (int i = 0; i < NMUST; i++)
        CHECK(t.must_seen[i] && t.must_ran[i], "conformance %s did not run", MUST_RUN[i]);
    CHECK(t.failed == 0, "%d conformance tests failed", t.failed);
}
