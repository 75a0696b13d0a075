/* The test runner: runs every TEST in tests/ files (or those whose name contains
 * one of the command-line arguments) and ends with "N passed, N failed". */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/rng.h"
#include "test.h"

#undef TEST
#define X(name) void test_##name(void);
#define TEST(name) X(name)
#include "test_list.h"
#undef TEST
#undef X

static struct { const char *name; void (*fn)(void); } tests[] = {
#define TEST(name) {#name, test_##name},
#include "test_list.h"
#undef TEST
};

static int passed, failed;
static const char *current_test = "";
static nfv_context *shared_ctx;
static char tmpdir[256];

int nfv_test_check(int cond, const char *file, int line, const char *fmt, ...)
{
    if (cond) {
        passed++;
        return 1;
    }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s (%s:%d): ", current_test, file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    return 0;
}

int nfv_test_check_status(nfv_status s, const char *expr, const char *file, int line)
{
    return nfv_test_check(s == NFV_OK, file, line, "%s returned %s: %s", expr, nfv_status_name(s),
                          nfv_error_message());
}

int nfv_test_check_close(const char *what, const float *got, const double *want, size_t n, double atol, double rtol,
                         const char *file, int line)
{
    size_t worst = 0, bad = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        double tol = atol + rtol * fabs(want[i]);
        double diff = fabs((double)got[i] - want[i]);
        if (!(diff <= tol)) bad++; /* also catches NaN */
        double excess = isnan(diff) ? INFINITY : diff - tol;
        if (excess > worst_excess || i == 0) {
            worst_excess = excess;
            worst = i;
        }
    }
    if (!got || n == 0)
        return nfv_test_check(0, file, line, "%s: nothing to compare", what);
    return nfv_test_check(bad == 0, file, line,
                          "%s: %zu of %zu values outside |d| <= %g + %g*|want|; worst at [%zu]: got %.8g want %.8g "
                          "(diff %.3g)",
                          what, bad, n, atol, rtol, worst, (double)got[worst], want[worst],
                          fabs((double)got[worst] - want[worst]));
}

nfv_context *test_ctx(void)
{
    if (!shared_ctx) {
        if (nfv_context_create(NULL, &shared_ctx) != NFV_OK) {
            printf("FATAL: cannot open an OpenCL device: %s\n", nfv_error_message());
            exit(2);
        }
    }
    return shared_ctx;
}

double test_uniform(unsigned long long *s)
{
    uint64_t state = *s;
    double u = nfv_uniform01(&state);
    *s = state;
    return u;
}

float *test_random(size_t n, unsigned seed, float lo, float hi)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    unsigned long long s = seed * 0x2545F4914F6CDD1DULL + 1;
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)test_uniform(&s);
    return p;
}

static void remove_tmpdir(void)
{
    if (tmpdir[0] && !getenv("NEUROFV_KEEP_TEST_DIR")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    }
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/nfv-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            printf("FATAL: mkdtemp failed\n");
            exit(2);
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

const char *test_bin(void)
{
    const char *b = getenv("NEUROFV_BIN");
    return b && b[0] ? b : "build/neurofv";
}

int test_run(const char *cmd, const char *out_path)
{
    char full[8192];
    if (out_path) snprintf(full, sizeof full, "%s > '%s' 2>&1", cmd, out_path);
    else snprintf(full, sizeof full, "%s > /dev/null 2>&1", cmd);
    int st = system(full);
    if (st == -1) return 255;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

nfv_status test_tensor(nfv_tensor *t, int ndim, const int *shape, const float *host)
{
    NFV_TRY(nfv_tensor_create(test_ctx(), t, ndim, shape));
    return host ? nfv_tensor_upload(test_ctx(), t, host) : NFV_OK;
}

float *test_download(const nfv_tensor *t)
{
    float *p = malloc(t->numel * sizeof *p);
    if (!p || !CHECK_OK(nfv_tensor_download(test_ctx(), t, p))) {
        free(p);
        return NULL;
    }
    return p;
}

static int selected(const char *name, int argc, char **argv)
{
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* --list: the test names in run order, one per line (for running groups
     * of them in parallel, tools/gpu-check.sh). */
    if (argc == 2 && !strcmp(argv[1], "--list")) {
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    int ran = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!selected(tests[i].name, argc, argv)) continue;
        current_test = tests[i].name;
        int before = failed, checks = passed + failed;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        fprintf(stderr, "%-4s %-48s %6.2fs %6d checks\n", failed == before ? "ok" : "FAIL", tests[i].name, s,
                passed + failed - checks);
        ran++;
    }
    if (ran == 0) {
        printf("no test matched\n");
        return 2;
    }
    nfv_context_free(shared_ctx);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
