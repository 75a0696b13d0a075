/* Minimal test framework.  A test is `TEST(name) { ... }` in any tests/ files
 * file (the Makefile collects them).  CHECK* macros count one check each; a
 * failing check prints one line with file:line and the reason.  The runner
 * ends with "N passed, N failed" and exits non-zero on any failure.
 * Run a subset: build/neurofv-tests conv3d pool   (substring match). */
#ifndef NEUROFV_TEST_H
#define NEUROFV_TEST_H

#include <stddef.h>

#include "neurofv/context.h"
#include "neurofv/status.h"
#include "neurofv/tensor.h"

#define TEST(name) void test_##name(void)

/* Record one check; returns cond. */
int nfv_test_check(int cond, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#define CHECK(cond, ...) nfv_test_check((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)
/* A call returning nfv_status must succeed; on failure prints the message. */
#define CHECK_OK(expr) nfv_test_check_status((expr), #expr, __FILE__, __LINE__)
int nfv_test_check_status(nfv_status s, const char *expr, const char *file, int line);

/* Compare got[i] with want[i] for all i: pass when every
 * |got - want| <= atol + rtol * |want|.  On failure prints the worst index,
 * both values and the tolerance.  One check. */
#define CHECK_CLOSE(what, got, want, n, atol, rtol) \
    nfv_test_check_close((what), (got), (want), (n), (atol), (rtol), __FILE__, __LINE__)
int nfv_test_check_close(const char *what, const float *got, const double *want, size_t n, double atol, double rtol,
                         const char *file, int line);

/* The shared OpenCL context for tests ($NEUROFV_DEVICE, else the default). */
nfv_context *test_ctx(void);

/* Deterministic uniform random floats in [lo, hi) (malloc'ed). */
float *test_random(size_t n, unsigned seed, float lo, float hi);
double test_uniform(unsigned long long *state); /* in [0, 1) */

/* A per-run scratch directory (created once, removed at exit unless
 * NEUROFV_KEEP_TEST_DIR is set). */
const char *test_tmpdir(void);

/* Path of the neurofv binary under test ($NEUROFV_BIN, else build/neurofv). */
const char *test_bin(void);

/* Run a shell command; returns its exit status (0-255), output to the given
 * file if out_path is not NULL. */
int test_run(const char *cmd, const char *out_path);

/* Upload host data into a new tensor. */
nfv_status test_tensor(nfv_tensor *t, int ndim, const int *shape, const float *host);
/* Download a tensor into a malloc'ed float array (NULL on failure, counted as a failed check). */
float *test_download(const nfv_tensor *t);

#endif
