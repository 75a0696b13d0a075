/* `neurofv bench` end to end on a tiny model: every section gives its rows
 * in --json with positive medians and FLOP counts; bad options give one
 * line and exit 2.  No timing is asserted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "test.h"

#define TINY "--arch 'conv(2,k3,p1) relu maxpool(2) flatten linear(2)' --classes 2 --shape 12,12,12"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

TEST(bench_cli_json_has_every_row)
{
    char out[600], cmd[1600];
    snprintf(out, sizeof out, "%s/bench.json", test_tmpdir());
    /* stdout only: progress goes to stderr (test_run sends both to out). */
    snprintf(cmd, sizeof cmd, "(%s bench " TINY " --reps 2 --warmup 2 --no-cold --json --peak-gflops 100 2>/dev/null)",
             test_bin());
    if (!CHECK(test_run(cmd, out) == 0, "bench ran: %s", cmd)) return;
    char *text = slurp(out);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    if (!CHECK(root != NULL, "bench --json prints JSON (%s)", out)) return;
    CHECK(cJSON_GetObjectItem(root, "peak_gflops")->valuedouble == 100.0, "--peak-gflops is used");
    const char *want[] = {"vis b1", "vis b8", "train b4", "train b8", "eval b4", "memory vis b8", "memory train b8",
                          "startup warm"};
    cJSON *rows = cJSON_GetObjectItem(root, "rows");
    for (size_t w = 0; w < sizeof want / sizeof *want; w++) {
        cJSON *found = NULL, *r;
        cJSON_ArrayForEach(r, rows) if (!strcmp(cJSON_GetObjectItem(r, "name")->valuestring, want[w])) found = r;
        if (!CHECK(found != NULL, "row \"%s\" present", want[w])) continue;
        cJSON *ms = cJSON_GetObjectItem(found, "median_ms"), *val = cJSON_GetObjectItem(found, "value");
        CHECK((ms && ms->valuedouble > 0) || (val && val->valuedouble > 0), "row \"%s\" has a positive figure",
              want[w]);
        if (!strncmp(want[w], "vis", 3) || !strncmp(want[w], "train", 5) || !strncmp(want[w], "eval", 4)) {
            cJSON *g = cJSON_GetObjectItem(found, "gflop"), *p = cJSON_GetObjectItem(found, "peak_share");
            CHECK(g && g->valuedouble > 0 && p && p->valuedouble > 0, "row \"%s\" has FLOPs and a share of peak",
                  want[w]);
        }
    }
    cJSON *sk = cJSON_GetObjectItem(root, "skipped");
    CHECK(cJSON_GetArraySize(sk) == 0, "no section skipped");
    cJSON_Delete(root);
}

TEST(bench_cli_profile_lists_kernels)
{
    char out[600], cmd[1600];
    snprintf(out, sizeof out, "%s/bench-profile.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s bench " TINY " --only vis --reps 1 --warmup 2 --profile", test_bin());
    if (!CHECK(test_run(cmd, out) == 0, "bench --profile ran: %s", cmd)) return;
    char *text = slurp(out);
    CHECK(text && strstr(text, "profile of vis b1") && strstr(text, "conv3d_"), "profile names the conv kernels: %s",
          text ? text : "(no output)");
    CHECK(text && !strstr(text, " ci1 co"), "without --profile-shapes, no shapes: %s", text ? text : "(no output)");
    /* Per layer shape: the tiny model's first conv (1 input channel) has its own row. */
    snprintf(cmd, sizeof cmd, "%s bench " TINY " --only vis --reps 1 --warmup 2 --profile-shapes", test_bin());
    if (!CHECK(test_run(cmd, out) == 0, "bench --profile-shapes ran: %s", cmd)) return;
    text = slurp(out);
    CHECK(text && strstr(text, "profile of vis b1") && strstr(text, "conv3d_") && strstr(text, " ci1 co"),
          "profile rows name the conv builds' shapes: %s", text ? text : "(no output)");
}

TEST(bench_cli_bad_options)
{
    const char *bad[] = {"--only nope", "--reps 0", "--warmup 0", "--shape 1,2", "--target nolayer:0 --only vis " TINY};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char cmd[1200], out[600];
        snprintf(out, sizeof out, "%s/bench-bad.txt", test_tmpdir());
        snprintf(cmd, sizeof cmd, "%s bench %s", test_bin(), bad[i]);
        int rc = test_run(cmd, out);
        char *text = slurp(out);
        int lines = 0;
        for (const char *p = text ? text : ""; *p; p++) lines += *p == '\n';
        /* --only vis prints its "bench: vis ..." progress line before the error. */
        CHECK(rc == 1 || rc == 2, "`bench %s`: exit %d, want 1 or 2", bad[i], rc);
        CHECK(text && strstr(text, "neurofv bench: ") && lines <= 2, "`bench %s`: one error line, got: %s", bad[i],
              text ? text : "");
    }
}
