/* `neurofv tune`: search the kernel configuration for a device, validate
 * every candidate against the reference, store the best in the tuning file
 * next to the kernel cache (src/runtime/tuning.c) for later runs. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "neurofv/tune.h"

NFV_COMMAND(tune, "tune", "Search the kernel configuration for a device and keep the fastest validated one")

/* The check: the step the tuning is for, on the model, in the candidate's
 * context (--check vis: one visualization step of --check-batch starts, the
 * batch `visualize` runs; train: one training step). */
typedef struct tune_check {
    const char *what, *model_path, *arch, *shape;
    int classes, batch, reps;
} tune_check;

static nfv_status check_step(nfv_context *ctx, void *user, double *ms)
{
    const tune_check *c = user;
    nfv_model *m = NULL;
    bench_times t = {0};
    int layer;
    nfv_status st = bench_model_open(ctx, c->model_path, c->arch, c->shape, c->classes, &m);
    if (!st && !strcmp(c->what, "vis")) st = bench_vis_step(ctx, m, "output:0", c->batch, 2, c->reps, &t, &layer);
    else if (!st) st = bench_train_step(ctx, m, c->batch, 2, c->reps, &t);
    if (!st) *ms = 1e3 * bench_median(&t);
    bench_times_free(&t);
    if (m) nfv_model_free(m);
    return st;
}

int cmd_tune(int argc, char **argv)
{
    const char *device = NULL, *only = NULL, *cache = NULL;
    int dry = 0;
    tune_check check = {.what = "vis", .arch = "ref4", .classes = 3, .batch = 0, .reps = 5};
    nfv_tune_options o;
    nfv_tune_options_default(&o);
    const cli_option opts[] = {
        {"--device", CLI_STRING, &device, "DEV", "OpenCL device (see neurofv devices)"},
        {"--size", CLI_INT, &o.size, "S", "edge of the test volume, even (default 24)"},
        {"--batch", CLI_INT, &o.batch, "N", "samples of the test batch (default 2)"},
        {"--reps", CLI_INT, &o.reps, "N", "timed runs per candidate, median (default 21)"},
        {"--candidates", CLI_STRING, &only, "LIST",
         "candidates besides the default, ';'-separated NEUROFV_KERNEL_CONFIG specs (default: vec 4/8/16, chunk "
         "1024/4096/16384, local 64/256, unroll 0/1, then the best of each together)"},
        {"--cache-dir", CLI_STRING, &cache, "DIR", "store the tuning file in DIR (default: the kernel cache folder)"},
        {"--check", CLI_STRING, &check.what, "vis|train|none",
         "time the small workload's fastest candidate against the default on the model's visualization step "
         "(default) or training step too, and keep it only if faster there as well; none: the small workload "
         "decides alone"},
        {"--arch", CLI_STRING, &check.arch, "SPEC", "model of --check: architecture spec or preset (default ref4)"},
        {"--classes", CLI_INT, &check.classes, "K", "outputs of --arch (default 3)"},
        {"--shape", CLI_STRING, &check.shape, "X,Y,Z", "input grid of --arch (default: the preset's)"},
        {"--model", CLI_STRING, &check.model_path, "FILE", "model of --check: a model file instead of --arch"},
        {"--check-batch", CLI_INT, &check.batch, "N", "samples of the --check step (default 8 for vis, 4 for train)"},
        {"--dry-run", CLI_FLAG, &dry, NULL, "measure and print, store nothing"},
        {0},
    };
    int r = cli_parse("tune", "[--device DEV] [options]",
                      "Run a conv3d + maxpool3d + batchnorm3d workload forward and backward under each candidate "
                      "kernel configuration (-DVEC, -DCHUNK, work-group cap, -DKD_UNROLL), check it against the reference kernels, "
                      "time it; time the fastest against the default on a model's visualization step (--check), "
                      "and store the one that won both (the built-in default unless another was faster in "
                      "this run) per device and driver in <cache>/tuning.json.  Later runs use it unless "
                      "NEUROFV_KERNEL_CONFIG is set or NEUROFV_TUNING=off; `neurofv devices` shows it.",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (o.size < 4 || o.size % 2 || o.size > 256) return cli_failf("tune", "--size must be even, 4..256, got %d", o.size);
    if (o.batch < 1 || o.batch > 64) return cli_failf("tune", "--batch must be 1..64, got %d", o.batch);
    if (o.reps < 1 || o.reps > 1000) return cli_failf("tune", "--reps must be 1..1000, got %d", o.reps);
    if (strcmp(check.what, "vis") && strcmp(check.what, "train") && strcmp(check.what, "none"))
        return cli_failf("tune", "--check must be vis, train or none, got \"%s\"", check.what);
    if (!check.batch) check.batch = strcmp(check.what, "vis") ? 4 : 8;
    if (check.batch < 1 || check.batch > 64) return cli_failf("tune", "--check-batch must be 1..64, got %d", check.batch);
    if (strcmp(check.what, "none")) o.check = check_step, o.check_user = &check;
    char buf[1024];
    const char *list[NFV_TUNE_MAX_CANDIDATES];
    if (only) {
        snprintf(buf, sizeof buf, "%s", only);
        char *save = NULL;
        o.ncandidates = 0;
        for (char *t = strtok_r(buf, ";", &save); t && o.ncandidates < NFV_TUNE_MAX_CANDIDATES - 2;
             t = strtok_r(NULL, ";", &save))
            list[o.ncandidates++] = t;
        o.candidates = list;
    }
    nfv_tune_result res;
    nfv_status st = nfv_tune(device, &o, &res);
    if (st) return cli_fail("tune", st);
    printf("tune: %s (%s), workload conv3d 4->8 + maxpool + batchnorm fwd/bwd on %dx4x%d^3, median of %d\n",
           res.device.name, res.device.driver_version, o.batch, o.size, o.reps);
    printf("%-32s %10s %12s  %s\n", "candidate", "ms", "max error", "");
    for (int i = 0; i < res.n; i++) {
        const nfv_tune_candidate *c = &res.cand[i];
        printf("%-32s %10.3f %12.2g  %s%s\n", c->spec[0] ? c->spec : "(default)", c->ms, c->max_err,
               c->valid ? "ok" : c->note, i == res.best ? "  <- chosen" : "");
    }
    if (res.checked)
        printf("check on %s, %s step at batch %d (better of 2 medians of %d): default %.2f ms, %s %.2f ms (%.2fx)\n",
               check.model_path ? check.model_path : check.arch, check.what, check.batch, check.reps,
               res.check_ms[0], res.cand[res.checked].spec, res.check_ms[1], res.check_ms[0] / res.check_ms[1]);
    const nfv_tune_candidate *b = &res.cand[res.best];
    printf("chosen: %s, %.3f ms vs default %.3f ms (%.2fx)%s\n", b->spec[0] ? b->spec : "the default", b->ms,
           res.cand[0].ms, res.cand[0].ms / b->ms,
           res.checked && !res.best ? ", the check's candidate was not faster on the model" : "");
    if (dry) return 0;
    char dir[1024];
    if (cache) snprintf(dir, sizeof dir, "%s", cache);
    else nfv_default_cache_dir(dir, sizeof dir);
    st = nfv_tuning_store(dir, &res.device, b->spec, res.cand[0].ms, b->ms, res.n);
    if (st) return cli_fail("tune", st);
    char path[1200];
    nfv_tuning_path(dir, path, sizeof path);
    printf("stored in %s\n", path);
    return 0;
}
