/* src/base: the one RNG, the affine helpers and atomic file writing. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/affine.h"
#include "base/clock.h"
#include "base/fs.h"
#include "base/parallel.h"
#include "base/rng.h"
#include "test.h"

TEST(rng_splitmix64_matches_published_values)
{
    /* Vigna's reference splitmix64.c seeded with 1234567 (the values the
     * reference implementation prints; also listed by many ports). */
    uint64_t s = 1234567;
    const uint64_t want[3] = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL};
    for (int i = 0; i < 3; i++) {
        uint64_t got = nfv_splitmix64(&s);
        CHECK(got == want[i], "splitmix64 output %d: got %llu want %llu", i, (unsigned long long)got,
              (unsigned long long)want[i]);
    }
    uint64_t t = 1234567;
    CHECK(nfv_mix64(1234567) == nfv_splitmix64(&t), "mix64(x) is one splitmix64 step from state x");
}

TEST(rng_streams_uniform_and_independent)
{
    nfv_rng a, b, c;
    nfv_rng_seed(&a, 7, 1, 0);
    nfv_rng_seed(&b, 7, 1, 0);
    nfv_rng_seed(&c, 7, 1, 1);
    int same = 1, differ = 0;
    double sum = 0, sum2 = 0, mn = 1, mx = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        uint64_t x = nfv_rng_next(&a), y = nfv_rng_next(&b), z = nfv_rng_next(&c);
        same &= x == y;
        differ += x != z;
        double u = (double)(x >> 11) * (1.0 / 9007199254740992.0);
        sum += u, sum2 += u * u, mn = fmin(mn, u), mx = fmax(mx, u);
    }
    CHECK(same, "same (seed, stream, index) gives the same sequence");
    CHECK(differ > n - 5, "another index gives another sequence (%d of %d differ)", differ, n);
    double mean = sum / n, var = sum2 / n - mean * mean;
    /* Uniform [0,1): mean 1/2 (SE 0.002 at n = 20000), variance 1/12. */
    CHECK(fabs(mean - 0.5) < 0.01 && fabs(var - 1.0 / 12) < 0.005 && mn >= 0 && mx < 1,
          "uniform: mean %.4f var %.4f range [%.4f, %.4f)", mean, var, mn, mx);
    int counts[5] = {0};
    double nsum = 0, nsum2 = 0;
    for (int i = 0; i < n; i++) {
        counts[nfv_rng_below(&a, 5)]++;
        double g = nfv_rng_normal(&a);
        nsum += g, nsum2 += g * g;
    }
    for (int k = 0; k < 5; k++) CHECK(abs(counts[k] - n / 5) < 400, "rng_below(5): value %d drawn %d times", k, counts[k]);
    CHECK(fabs(nsum / n) < 0.03 && fabs(nsum2 / n - 1) < 0.05, "normal: mean %.4f, second moment %.4f", nsum / n,
          nsum2 / n);
}

/* The benchmarks' median: odd and even counts, sorted in place, 0 for none. */
TEST(clock_median_sort)
{
    double odd[5] = {5, 1, 4, 2, 3}, even[4] = {9, 1, 8, 2};
    CHECK(nfv_median_sort(odd, 5) == 3.0 && odd[0] == 1 && odd[4] == 5, "odd: %g, sorted %g..%g",
          nfv_median_sort(odd, 5), odd[0], odd[4]);
    CHECK(nfv_median_sort(even, 4) == 5.0, "even: mean of the middle two, got %g", nfv_median_sort(even, 4));
    CHECK(nfv_median_sort(even, 0) == 0.0, "none: 0");
    double t0 = nfv_seconds(), t1 = nfv_seconds();
    CHECK(t1 >= t0 && t0 > 0, "monotonic seconds: %g then %g", t0, t1);
}

/* Items record which index ran them and how often; items at indices listed
 * in fail_at fail with a message naming the index. */
typedef struct parallel_probe {
    int runs[200];
    pthread_t who[200];
    int fail_at[2];
} parallel_probe;

static nfv_status parallel_item(void *p, int i)
{
    parallel_probe *pp = p;
    pp->runs[i]++;
    pp->who[i] = pthread_self();
    volatile double x = 0; /* a little work, so that threads overlap */
    for (int k = 0; k < 20000; k++) x += k * 1e-9;
    if (i == pp->fail_at[0] || i == pp->fail_at[1]) return nfv_fail(NFV_ERR_IO, "item %d failed", i);
    return NFV_OK;
}

TEST(parallel_for_runs_each_item_once_and_reports_the_first_failure)
{
    parallel_probe pp;
    memset(&pp, 0, sizeof pp);
    pp.fail_at[0] = pp.fail_at[1] = -1;
    CHECK_OK(nfv_parallel_for(200, 4, parallel_item, &pp));
    int once = 0, threads = 0;
    for (int i = 0; i < 200; i++) {
        once += pp.runs[i] == 1;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = pthread_equal(pp.who[j], pp.who[i]);
        threads += !seen;
    }
    CHECK(once == 200, "every item ran exactly once: %d of 200", once);
    CHECK(threads >= 1 && threads <= 4, "at most 4 threads ran items: %d", threads);
    CHECK_OK(nfv_parallel_for(0, 4, parallel_item, &pp));

    memset(&pp, 0, sizeof pp);
    pp.fail_at[0] = 7, pp.fail_at[1] = 3;
    nfv_status s = nfv_parallel_for(50, 3, parallel_item, &pp);
    CHECK(s == NFV_ERR_IO && strstr(nfv_error_message(), "item 3 failed"),
          "the lowest failing index's status and message come back: %s, \"%s\"", nfv_status_name(s),
          nfv_error_message());
    int ran = 0;
    for (int i = 0; i < 50; i++) ran += pp.runs[i];
    CHECK(ran < 50, "no new item starts after a failure: %d of 50 ran", ran);
    memset(&pp, 0, sizeof pp);
    pp.fail_at[0] = pp.fail_at[1] = -1;
    CHECK_OK(nfv_parallel_for(5, 1, parallel_item, &pp));
    CHECK(pp.runs[0] == 1 && pp.runs[4] == 1 && pthread_equal(pp.who[4], pthread_self()),
          "threads = 1 runs every item on the calling thread");
}

TEST(affine_inverse_and_product)
{
    const double a[4][4] = {{0, -2, 0.1, 90}, {1.5, 0, 0, -126}, {0, 0.2, 2.5, -72}, {0, 0, 0, 1}};
    double inv[4][4], id[4][4], worst = 0;
    CHECK(nfv_affine_inverse(a, inv), "an oblique, anisotropic affine inverts");
    nfv_affine_mul(a, inv, id);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) worst = fmax(worst, fabs(id[i][j] - (i == j)));
    CHECK(worst < 1e-12, "A * A^-1 = I within 1e-12 (worst %.3g)", worst);
    const double singular[4][4] = {{1, 2, 3, 0}, {2, 4, 6, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    const double zero[4][4] = {{0}};
    const double tiny[4][4] = {{1e-5, 0, 0, 0}, {0, 1e-5, 0, 0}, {0, 0, 1e-5, 0}, {0, 0, 0, 1}};
    double nan_a[4][4] = {{NAN, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    CHECK(!nfv_affine_inverse(singular, inv), "a rank-2 affine is refused");
    CHECK(!nfv_affine_inverse(zero, inv), "a zero affine is refused");
    CHECK(!nfv_affine_inverse((const double(*)[4])nan_a, inv), "a NaN affine is refused");
    CHECK(nfv_affine_inverse(tiny, inv) && fabs(inv[0][0] - 1e5) < 1e-6, "10 um voxels are not singular");
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int count_tmp_files(const char *dir)
{
    char cmd[9000], out[4400];
    snprintf(out, sizeof out, "%s/count.txt", dir);
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '\\.tmp' > '%s'", dir, out);
    if (system(cmd) == -1) return -1;
    FILE *f = fopen(out, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = -1;
        fclose(f);
    }
    remove(out);
    return n;
}

TEST(fs_mkdirs_and_atomic_write)
{
    char dir[4096], path[4200], buf[64] = {0};
    snprintf(dir, sizeof dir, "%s/base_fs/a/b/c", test_tmpdir());
    CHECK_OK(nfv_mkdirs(dir));
    CHECK_OK(nfv_mkdirs(dir)); /* existing is fine */
    snprintf(path, sizeof path, "%s/file.txt", dir);
    CHECK_OK(nfv_write_text_atomic(path, "first\n"));
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(buf, sizeof buf, f) && !strcmp(buf, "first\n"), "the text landed: \"%s\"", buf);
    if (f) fclose(f);
    CHECK(nfv_mkdirs(path) != NFV_OK && strstr(nfv_error_message(), "not a directory"),
          "mkdirs over a file fails naming it: %s", nfv_error_message());

    /* Abort leaves the previous file and no temporary. */
    nfv_atomic_file af;
    CHECK_OK(nfv_atomic_open(&af, path, "w"));
    fputs("partial", af.f);
    nfv_atomic_abort(&af);
    f = fopen(path, "r");
    CHECK(f && fgets(buf, sizeof buf, f) && !strcmp(buf, "first\n"), "abort keeps the previous file: \"%s\"", buf);
    if (f) fclose(f);
    CHECK(count_tmp_files(dir) == 0, "no temporary file is left after abort");

    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.txt", dir);
    CHECK(nfv_write_text_atomic(missing, "x") != NFV_OK && strstr(nfv_error_message(), "x.txt"),
          "writing into a missing folder fails naming the file: %s", nfv_error_message());
}

/* nfv_read_file: bytes (NULs included) with a NUL after them, the size,
 * the limit, a missing file told apart from an unreadable one. */
TEST(fs_read_file)
{
    char path[4200], dir[4200];
    snprintf(path, sizeof path, "%s/read_file.bin", test_tmpdir());
    const char bytes[7] = {'a', 0, 'b', '\n', (char)0xff, 'c', 'd'};
    FILE *f = fopen(path, "wb");
    if (!CHECK(f && fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes, "write %s", path)) return;
    fclose(f);
    char *data = NULL;
    size_t size = 0;
    int missing = -1;
    if (CHECK_OK(nfv_read_file(path, 7, &data, &size, &missing))) {
        CHECK(size == 7 && !memcmp(data, bytes, 7) && data[7] == 0 && missing == 0,
              "read back %zu bytes, want the 7 written and a NUL after them", size);
        free(data);
    }
    CHECK(nfv_read_file(path, 6, &data, &size, &missing) == NFV_ERR_FORMAT && data == NULL && missing == 0 &&
              strstr(nfv_error_message(), "read_file.bin"),
          "a file over the limit is refused naming it: %s", nfv_error_message());
    snprintf(path, sizeof path, "%s/no_such_file", test_tmpdir());
    CHECK(nfv_read_file(path, 100, &data, &size, &missing) == NFV_ERR_IO && missing == 1 && data == NULL,
          "a missing file is NFV_ERR_IO with missing = 1");
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    CHECK(nfv_read_file(dir, 100, &data, &size, &missing) == NFV_ERR_IO && missing == 0,
          "a folder is not read (missing = 0): %s", nfv_error_message());
}

TEST(fs_relative_dir)
{
    char base[4096], a[4300], b[4300], c[4300], rel[4096];
    snprintf(base, sizeof base, "%s/base_rel", test_tmpdir());
    snprintf(a, sizeof a, "%s/demo/report/compare", base);
    snprintf(b, sizeof b, "%s/demo/runs/compare", base);
    snprintf(c, sizeof c, "%s/demo/report/compare/sub", base);
    CHECK_OK(nfv_mkdirs(a));
    CHECK_OK(nfv_mkdirs(b));
    CHECK_OK(nfv_mkdirs(c));
    CHECK_OK(nfv_relative_dir(a, b, rel, sizeof rel));
    CHECK(!strcmp(rel, "../../runs/compare"), "report -> runs: %s", rel);
    CHECK_OK(nfv_relative_dir(a, c, rel, sizeof rel));
    CHECK(!strcmp(rel, "sub"), "into a subfolder: %s", rel);
    CHECK_OK(nfv_relative_dir(c, a, rel, sizeof rel));
    CHECK(!strcmp(rel, ".."), "up: %s", rel);
    CHECK_OK(nfv_relative_dir(a, a, rel, sizeof rel));
    CHECK(!strcmp(rel, "."), "same folder: %s", rel);
    snprintf(c, sizeof c, "%s/demo/report/compare/../../runs/compare/", base);
    CHECK_OK(nfv_relative_dir(a, c, rel, sizeof rel));
    CHECK(!strcmp(rel, "../../runs/compare"), "a path with .. and a trailing slash: %s", rel);
    snprintf(c, sizeof c, "%s/demo/nowhere", base);
    CHECK(nfv_relative_dir(a, c, rel, sizeof rel) != NFV_OK && strstr(nfv_error_message(), "nowhere"),
          "a missing folder fails naming it: %s", nfv_error_message());
}

TEST(fs_full_disk_keeps_previous_file)
{
    /* A child limited to 4 KiB of file size (RLIMIT_FSIZE, the disk-full
     * stand-in) writes 64 KiB through nfv_atomic_file: commit must fail, the
     * previous file must stay and no temporary may be left. */
    char dir[4096], path[4200], buf[64] = {0};
    snprintf(dir, sizeof dir, "%s/base_full", test_tmpdir());
    CHECK_OK(nfv_mkdirs(dir));
    snprintf(path, sizeof path, "%s/out.bin", dir);
    CHECK_OK(nfv_write_text_atomic(path, "previous\n"));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN); /* get EFBIG from write() instead of being killed */
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        nfv_atomic_file af;
        if (nfv_atomic_open(&af, path, "wb") != NFV_OK) _exit(3);
        static char block[65536];
        memset(block, 7, sizeof block);
        fwrite(block, 1, sizeof block, af.f);
        nfv_status s = nfv_atomic_commit(&af);
        _exit(s == NFV_OK ? 0 : (strstr(nfv_error_message(), "out.bin") ? 1 : 2));
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1,
          "commit on a full disk fails with a message naming the file (child status %d)", st);
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(buf, sizeof buf, f) && !strcmp(buf, "previous\n"), "the previous file is intact: \"%s\"", buf);
    if (f) fclose(f);
    CHECK(count_tmp_files(dir) == 0 && file_exists(path), "no temporary file is left");
}
