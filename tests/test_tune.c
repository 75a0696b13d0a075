/* The kernel tuner (src/layers/tune.c) and the tuning file
 * (src/runtime/tuning.c): the choice is validated and never slower than the
 * default measured in the same run; a stored entry is used by new contexts;
 * with a check (the model step), the check decides between the fastest
 * candidate and the default; a corrupt file is ignored with one warning line.  Small shapes and few
 * candidates keep it quick; no timing is asserted, only the tuner's logic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/tune.h"
#include "test.h"

TEST(tune_choice_is_validated_and_not_slower_than_default)
{
    nfv_tune_options o;
    nfv_tune_options_default(&o);
    o.size = 8, o.batch = 1, o.reps = 2;
    /* chunk=1024 rebuilds the BatchNorm reductions, local=256 caps every
     * work-group; vec=N would rebuild every program (minutes cold on a
     * 2-core machine), `neurofv tune` tries those. */
    const char *cands[] = {"chunk=1024", "local=256"};
    o.candidates = cands, o.ncandidates = 2;
    nfv_tune_result r;
    if (!CHECK_OK(nfv_tune(NULL, &o, &r))) return;
    CHECK(r.n >= 2, "tried %d candidates, want the default and at least one other", r.n);
    CHECK(r.cand[0].spec[0] == '\0' && r.cand[0].valid, "candidate 0 is the default and valid (%s)", r.cand[0].note);
    CHECK(r.best >= 0 && r.best < r.n && r.cand[r.best].valid, "the choice %d is a valid candidate", r.best);
    CHECK(r.cand[r.best].ms <= r.cand[0].ms, "chosen %.3f ms, default %.3f ms: the choice may not be slower",
          r.cand[r.best].ms, r.cand[0].ms);
    for (int i = 0; i < r.n; i++) {
        CHECK(r.cand[i].valid, "candidate \"%s\" runs and matches the reference: %s", r.cand[i].spec, r.cand[i].note);
        CHECK(r.cand[i].max_err <= 2e-3, "candidate \"%s\": error %.3g vs the reference", r.cand[i].spec,
              r.cand[i].max_err);
    }
}

/* A stand-in for the model step of `neurofv tune --check`: the default
 * configuration takes 10 ms, any other cand_ms. */
typedef struct fake_check {
    nfv_kernel_config def;
    double cand_ms;
    int calls, fail;
} fake_check;

static nfv_status fake_step(nfv_context *ctx, void *user, double *ms)
{
    fake_check *f = user;
    f->calls++;
    if (f->fail) return nfv_fail(NFV_ERR_IO, "planted check failure");
    const nfv_kernel_config *k = nfv_context_kernel_config(ctx);
    int is_default = k->max_local == f->def.max_local && k->reduction_chunk == f->def.reduction_chunk &&
                     k->vector_width == f->def.vector_width && k->conv_unroll == f->def.conv_unroll;
    *ms = is_default ? 10.0 : f->cand_ms;
    return NFV_OK;
}

TEST(tune_check_decides_between_the_fastest_and_the_default)
{
    fake_check f;
    memset(&f, 0, sizeof f);
    nfv_context *probe = NULL;
    if (!CHECK_OK(nfv_context_create_with_config(NULL, "", &probe))) return;
    f.def = *nfv_context_kernel_config(probe);
    nfv_context_free(probe);
    nfv_tune_options o;
    nfv_tune_options_default(&o);
    o.size = 8, o.batch = 1, o.reps = 1;
    /* one candidate that differs from the default on any device */
    const char *cands[] = {f.def.max_local == 64 ? "local=256" : "local=64"};
    o.candidates = cands, o.ncandidates = 1;
    o.check = fake_step, o.check_user = &f;
    nfv_tune_result r;
    f.cand_ms = 5.0;
    if (CHECK_OK(nfv_tune(NULL, &o, &r))) {
        CHECK(r.checked == 1 && r.best == 1, "2x faster on the check: chosen (checked %d, best %d), whatever the small "
              "workload said (%.3f vs %.3f ms)", r.checked, r.best, r.cand[1].ms, r.cand[0].ms);
        CHECK(r.check_ms[0] == 10.0 && r.check_ms[1] == 5.0 && f.calls == 4,
              "each timed twice on the check, better time kept: %g / %g ms, %d calls", r.check_ms[0], r.check_ms[1],
              f.calls);
    }
    f.cand_ms = 9.8, f.calls = 0;
    if (CHECK_OK(nfv_tune(NULL, &o, &r)))
        CHECK(r.checked == 1 && r.best == 0, "2 %% faster on the check is within the margin: the default stays "
              "(best %d)", r.best);
    f.cand_ms = 20.0;
    if (CHECK_OK(nfv_tune(NULL, &o, &r)))
        CHECK(r.best == 0, "slower on the check: the default stays (best %d)", r.best);
    f.fail = 1;
    nfv_status st = nfv_tune(NULL, &o, &r);
    CHECK(st == NFV_ERR_IO && strstr(nfv_error_message(), "planted check failure") &&
              strstr(nfv_error_message(), "tune: the check"),
          "a failing check is the tuner's error, named: %s \"%s\"", nfv_status_name(st), nfv_error_message());
}

/* The command with its check on a small model: the check's line, the
 * choice, and the tuning file. */
TEST(tune_cli_checks_on_a_model_and_stores)
{
    char dir[600], out[700], cmd[2000];
    snprintf(dir, sizeof dir, "%s/tune-cli", test_tmpdir());
    snprintf(out, sizeof out, "%s/tune-cli.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s tune --size 8 --batch 1 --reps 1 --candidates local=64 --check vis --arch 'conv(2,k3,p1) relu "
             "maxpool(2) flatten linear(2)' --classes 2 --shape 12,12,12 --check-batch 2 --cache-dir '%s'",
             test_bin(), dir);
    if (!CHECK(test_run(cmd, out) == 0, "tune ran (see %s): %s", out, cmd)) return;
    FILE *f = fopen(out, "r");
    char text[8192] = "";
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
    }
    CHECK(strstr(text, "check on conv(2,k3,p1)") && strstr(text, "vis step at batch 2"),
          "the check's line names the model and step:\n%s", text);
    CHECK(strstr(text, "chosen: ") != NULL, "the choice is printed:\n%s", text);
    char path[800];
    snprintf(path, sizeof path, "%s/tuning.json", dir);
    f = fopen(path, "r");
    CHECK(f != NULL, "the tuning file %s is written", path);
    if (f) fclose(f);
}

TEST(tune_rejects_bad_options)
{
    nfv_tune_options o;
    nfv_tune_options_default(&o);
    o.size = 7;
    nfv_tune_result r;
    CHECK(nfv_tune(NULL, &o, &r) == NFV_ERR_INVALID_ARG, "odd size refused");
}

/* Stores an entry and checks that a new context picks it up (unless
 * NEUROFV_KERNEL_CONFIG forces a configuration, as make test-configs does). */
TEST(tune_file_is_used_by_new_contexts)
{
    char cache[512], dir[600];
    snprintf(cache, sizeof cache, "%s/tune-cache", test_tmpdir());
    snprintf(dir, sizeof dir, "%s/neurofv", cache);
    const nfv_device_info *info = nfv_context_device_info(test_ctx());
    CHECK_OK(nfv_tuning_store(dir, info, "vec=8,chunk=1024", 2.0, 1.5, 3));
    char spec[128] = "", why[1400] = "";
    CHECK(nfv_tuning_lookup(dir, info, spec, sizeof spec, why, sizeof why) == 1, "entry found (%s)", why);
    CHECK(!strcmp(spec, "vec=8,chunk=1024"), "spec read back: \"%s\"", spec);
    /* A second device's entry is kept beside it. */
    nfv_device_info other = *info;
    snprintf(other.name, sizeof other.name, "some other device");
    CHECK_OK(nfv_tuning_store(dir, &other, "", 1.0, 1.0, 1));
    CHECK(nfv_tuning_lookup(dir, info, spec, sizeof spec, why, sizeof why) == 1 && !strcmp(spec, "vec=8,chunk=1024"),
          "first entry kept after storing another device's");
    const char *forced = getenv("NEUROFV_KERNEL_CONFIG");
    if (forced && forced[0]) return;
    char *old = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    setenv("XDG_CACHE_HOME", cache, 1);
    nfv_context *ctx = NULL;
    if (CHECK_OK(nfv_context_create(NULL, &ctx))) {
        const nfv_kernel_config *kc = nfv_context_kernel_config(ctx);
        CHECK(kc->vector_width == 8 && kc->reduction_chunk == 1024, "tuned config used: vec %d chunk %d",
              kc->vector_width, kc->reduction_chunk);
        CHECK(!strncmp(kc->name, "tuned", 5), "config named as tuned: \"%s\"", kc->name);
        nfv_context_free(ctx);
    }
    /* The table's default on request (what the tuner measures as candidate 0). */
    if (CHECK_OK(nfv_context_create_with_config(NULL, "", &ctx))) {
        CHECK(strncmp(nfv_context_kernel_config(ctx)->name, "tuned", 5) != 0, "\"\" gives the table's default");
        nfv_context_free(ctx);
    }
    if (old) setenv("XDG_CACHE_HOME", old, 1);
    else unsetenv("XDG_CACHE_HOME");
    free(old);
}

TEST(tune_corrupt_file_is_ignored_with_a_warning)
{
    char cache[512], dir[600], path[700], cmd[2400], out[700];
    snprintf(cache, sizeof cache, "%s/tune-corrupt", test_tmpdir());
    snprintf(dir, sizeof dir, "%s/neurofv", cache);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    CHECK(test_run(cmd, NULL) == 0, "mkdir %s", dir);
    nfv_tuning_path(dir, path, sizeof path);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL, "write %s", path)) return;
    fputs("{\"devices\": {\"x\": [1, 2", f); /* cut off mid-write */
    fclose(f);
    char spec[128], why[1400] = "";
    CHECK(nfv_tuning_lookup(dir, nfv_context_device_info(test_ctx()), spec, sizeof spec, why, sizeof why) == -1,
          "corrupt file reported");
    CHECK(strstr(why, path) != NULL, "the reason names the file: %s", why);
    /* A command still runs, with the defaults and one warning line on stderr. */
    snprintf(out, sizeof out, "%s/tune-corrupt.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "env -u NEUROFV_KERNEL_CONFIG XDG_CACHE_HOME='%s' %s bench --only memory --warmup 1 --reps 1 "
             ">/dev/null 2>'%s' && test $(grep -c 'warning: ignoring the tuning file' '%s') = 1",
             cache, test_bin(), out, out);
    CHECK(test_run(cmd, NULL) == 0, "one warning and exit 0 (see %s)", out);
    snprintf(cmd, sizeof cmd, "env -u NEUROFV_KERNEL_CONFIG XDG_CACHE_HOME='%s' %s devices | grep -q 'tuning file ignored'",
             cache, test_bin());
    CHECK(test_run(cmd, NULL) == 0, "devices says the tuning file is ignored");
    /* The next store replaces it. */
    CHECK_OK(nfv_tuning_store(dir, nfv_context_device_info(test_ctx()), "", 1.0, 1.0, 1));
    CHECK(nfv_tuning_lookup(dir, nfv_context_device_info(test_ctx()), spec, sizeof spec, why, sizeof why) == 1,
          "a store over a corrupt file writes a valid one");
}
