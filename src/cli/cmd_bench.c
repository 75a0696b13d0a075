/* `neurofv bench`: the whole-job benchmark (issue 15).
 *
 * On one model (ref4 at 2 mm with random weights by default, --arch or
 * --model for any other, ONNX-imported graphs included) and one device it
 * times, with medians over --reps repetitions after --warmup untimed ones:
 *   vis b1 / vis b8   one visualization step (forward to the target's layer in
 *                     eval mode, input gradient, Adam on the input) at batch
 *                     1 and 8 (8 random starts of the target in one batch),
 *                     also per target-step;
 *   train b4 / b8     one training step (upload, forward in training mode,
 *                     loss, backward with parameter gradients, Adam);
 *   eval b4           eval-mode outputs of 4 volumes (upload, forward, read);
 *   startup           wall time from exec to the end of the first
 *                     visualization step of a child `neurofv bench
 *                     --startup-child` (device, model, kernel builds, one
 *                     step): warm = with this machine's kernel caches,
 *                     cold = with empty temporary ones (XDG_CACHE_HOME for
 *                     neurofv's program cache, POCL_CACHE_DIR for PoCL's)
 *                     and NVIDIA's off (CUDA_CACHE_DISABLE: on an H200 a
 *                     "cold" start with it on took 0.32 s against 0.26 warm);
 *   memory            the device memory estimate (src/model/memory.c, which
 *                     tests/test_memory.c holds within 20 % of the real
 *                     allocations) of the largest vis and train batch run.
 * FLOPs come from the model's own count (nfv_layer_flops, as `neurofv
 * inspect` prints): a visualization step is 2x the forward FLOPs to the
 * target's layer (forward + input gradient), a training step 3x the forward
 * (forward + input and weight gradients), eval 1x.
 *
 * --profile adds each step's device time per kernel (src/runtime/profile.c).
 *
 * Sections are rows of SECTIONS below: one function each that appends rows
 * to the table; a new measurement (an all-reduce, say) is one more entry. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench.h"
#include "cli.h"
#include "neurofv/dist.h"
#include "neurofv/train.h"
#include "neurofv/vis.h"
#include "base/clock.h"

NFV_COMMAND(bench, "bench", "Time whole steps (visualization, training, eval, start-up) with GFLOP/s and memory")

#define BENCH_MAX_ROWS 32

typedef struct bench_row {
    char name[32];      /* "vis b8" */
    char what[96];      /* one line of what was timed */
    int batch;          /* samples per step (0: not a step) */
    double ms;          /* median wall ms of one repetition */
    double gflop;       /* per repetition (0: not counted) */
    double value;       /* for rows without a step time (memory MiB): the value */
    const char *unit;   /* of value */
    nfv_profile_row *prof; /* --profile: device time per kernel over the timed repetitions */
    int nprof, prof_reps;  /* rows, and the repetitions they cover */
} bench_row;

typedef struct bench_args {
    const char *arch, *model_path, *device, *target, *sections, *shape;
    int classes, reps, warmup, json, no_cold, startup_child, profile, profile_shapes;
    float peak_gflops;
} bench_args;

typedef struct bench_state {
    const bench_args *a;
    nfv_context *ctx;
    nfv_model *m;
    bench_row rows[BENCH_MAX_ROWS];
    int nrows;
    char skipped[BENCH_MAX_ROWS][200]; /* "train: <why>" for sections that could not run */
    int nskipped;
} bench_state;

static bench_row *add_row(bench_state *s, const char *name, int batch, const char *what)
{
    if (s->nrows >= BENCH_MAX_ROWS) return NULL;
    bench_row *r = &s->rows[s->nrows++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->what, sizeof r->what, "%s", what);
    r->batch = batch;
    return r;
}

/* --profile: forget what was recorded before a measurement ... */
static void profile_begin(bench_state *s)
{
    if (s->a->profile) bench_profile_forget(s->ctx);
}

/* ... and give the measurement's kernels to its row. */
static void profile_end(bench_state *s, bench_row *r)
{
    if (!s->a->profile || !r) return;
    int n = nfv_profile_collect(s->ctx, &r->prof, 1);
    r->nprof = n > 0 ? n : 0;
    r->prof_reps = s->a->reps; /* bench_run.c forgets the warm-up's */
}

/* A section that cannot run on this model (a graph without training
 * support, say) is reported and the others go on. */
static void skip(bench_state *s, const char *section, nfv_status st)
{
    if (s->nskipped < BENCH_MAX_ROWS)
        snprintf(s->skipped[s->nskipped++], sizeof s->skipped[0], "%s: %s (%s)", section, nfv_error_message(),
                 nfv_status_name(st));
    if (!s->a->json) fprintf(stderr, "bench: %s skipped: %s\n", section, nfv_error_message());
}

/* ---- sections ------------------------------------------------------------------ */

static nfv_status section_vis(bench_state *s)
{
    static const int batches[2] = {1, 8};
    for (int i = 0; i < 2; i++) {
        bench_times t = {0};
        int layer = -1;
        profile_begin(s);
        nfv_status st = bench_vis_step(s->ctx, s->m, s->a->target, batches[i], s->a->warmup, s->a->reps, &t, &layer);
        if (st) return st;
        char name[32], what[96];
        snprintf(name, sizeof name, "vis b%d", batches[i]);
        snprintf(what, sizeof what, "visualization step, %s, %d sample(s)", s->a->target, batches[i]);
        bench_row *r = add_row(s, name, batches[i], what);
        if (r) r->ms = 1e3 * bench_median(&t), r->gflop = 2.0 * batches[i] * bench_forward_flops(s->m, layer) / 1e9;
        profile_end(s, r);
        /* The profile forgets at the last warm-up step's log, which comes
         * after its forward: it holds that step's backward and the final
         * forward besides the timed steps, i.e. reps + 1 steps' kernels. */
        if (r && r->nprof) r->prof_reps = s->a->reps + 1;
        bench_times_free(&t);
    }
    return NFV_OK;
}

static nfv_status section_train(bench_state *s)
{
    static const int batches[2] = {4, 8};
    for (int i = 0; i < 2; i++) {
        bench_times t = {0};
        profile_begin(s);
        NFV_TRY(bench_train_step(s->ctx, s->m, batches[i], s->a->warmup, s->a->reps, &t));
        char name[32], what[96];
        snprintf(name, sizeof name, "train b%d", batches[i]);
        snprintf(what, sizeof what, "training step, %d volumes, Adam", batches[i]);
        bench_row *r = add_row(s, name, batches[i], what);
        if (r) r->ms = 1e3 * bench_median(&t), r->gflop = 3.0 * batches[i] * bench_forward_flops(s->m, -1) / 1e9;
        profile_end(s, r);
        bench_times_free(&t);
    }
    return NFV_OK;
}

static nfv_status section_eval(bench_state *s)
{
    bench_times t = {0};
    profile_begin(s);
    NFV_TRY(bench_eval(s->ctx, s->m, 4, s->a->warmup, s->a->reps, &t));
    bench_row *r = add_row(s, "eval b4", 4, "eval outputs, 4 volumes (upload, forward, read)");
    if (r) r->ms = 1e3 * bench_median(&t), r->gflop = 4.0 * bench_forward_flops(s->m, -1) / 1e9;
    profile_end(s, r);
    bench_times_free(&t);
    return NFV_OK;
}

static nfv_status section_memory(bench_state *s)
{
    nfv_target *t = NULL;
    int count = 0;
    NFV_TRY(nfv_target_parse(s->m, s->a->target, &t, &count));
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    o.starts = o.batch = 8;
    nfv_memory_estimate e;
    nfv_vis_memory(s->ctx, s->m, t, 1, &o, &e);
    free(t);
    bench_row *r = add_row(s, "memory vis b8", 0, "device memory estimate, visualization batch 8");
    if (r) r->value = (double)e.total / 1048576.0, r->unit = "MiB";
    nfv_train_memory(s->m, s->ctx, NFV_OPT_ADAM, 8, &e);
    r = add_row(s, "memory train b8", 0, "device memory estimate, training batch 8, Adam");
    if (r) r->value = (double)e.total / 1048576.0, r->unit = "MiB";
    return NFV_OK;
}

/* nftw callback of rm -r on the cold cache folder (ours, made by mkdtemp). */
static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Runs `neurofv bench --startup-child ...` and returns its wall seconds;
 * cache_dir non-NULL: both kernel caches point into it (cold). */
static nfv_status time_child(const bench_args *a, const char *cache_dir, double *seconds)
{
    char *argv[20];
    int n = 0;
    argv[n++] = "neurofv", argv[n++] = "bench", argv[n++] = "--startup-child";
    argv[n++] = "--target", argv[n++] = (char *)a->target;
    if (a->model_path) argv[n++] = "--model", argv[n++] = (char *)a->model_path;
    else argv[n++] = "--arch", argv[n++] = (char *)a->arch;
    if (!a->model_path && a->shape) argv[n++] = "--shape", argv[n++] = (char *)a->shape;
    char classes[16];
    snprintf(classes, sizeof classes, "%d", a->classes);
    argv[n++] = "--classes", argv[n++] = classes;
    if (a->device) argv[n++] = "--device", argv[n++] = (char *)a->device;
    argv[n] = NULL;
    fflush(NULL);
    double t0 = nfv_seconds();
    pid_t pid = fork();
    if (pid < 0) return nfv_fail(NFV_ERR_IO, "bench: startup: fork: %s", strerror(errno));
    if (pid == 0) {
        if (cache_dir) {
            char pocl[4200];
            snprintf(pocl, sizeof pocl, "%s/pocl", cache_dir);
            setenv("XDG_CACHE_HOME", cache_dir, 1);
            setenv("POCL_CACHE_DIR", pocl, 1);
            setenv("CUDA_CACHE_DISABLE", "1", 1);
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    *seconds = nfv_seconds() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "bench: startup: the child run failed (exit status %d)",
                        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return NFV_OK;
}

static nfv_status section_startup(bench_state *s)
{
    double sec = 0;
    NFV_TRY(time_child(s->a, NULL, &sec));
    bench_row *r = add_row(s, "startup warm", 0, "exec to end of first vis step, warm kernel caches");
    if (r) r->ms = 1e3 * sec;
    if (s->a->no_cold) return NFV_OK;
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/neurofv-bench-cold-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return nfv_fail(NFV_ERR_IO, "bench: startup: mkdtemp %s: %s", dir, strerror(errno));
    nfv_status st = time_child(s->a, dir, &sec);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    NFV_TRY(st);
    r = add_row(s, "startup cold", 0, "exec to end of first vis step, empty kernel caches");
    if (r) r->ms = 1e3 * sec;
    return NFV_OK;
}

/* The data-parallel cost: one all-reduce of the model's gradient buffer
 * (every parameter, summed in double: 8 bytes each on the wire) between the
 * ranks of an mpirun, median over --reps (nfv_dist_time_sum).  One process
 * has nothing to reduce: run it as mpirun -np 2 build-mpi/neurofv bench
 * --only allreduce. */
static nfv_status section_allreduce(bench_state *s)
{
    if (nfv_dist_size() < 2)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "one process: run `mpirun -np 2 build-mpi/neurofv bench --only allreduce` "
                        "(a build with MPI=1)");
    size_t n = 0;
    for (int i = 0; i < s->m->layer_count; i++)
        for (int p = 0; p < s->m->layers[i].nparams; p++) n += s->m->layers[i].param[p].numel;
    double med = 0;
    NFV_TRY(nfv_dist_time_sum(n, s->a->reps, &med));
    char what[96];
    snprintf(what, sizeof what, "gradient all-reduce, %zu params (%.1f MB in double), %d ranks", n,
             8.0 * (double)n / 1e6, nfv_dist_size());
    bench_row *r = add_row(s, "allreduce", 0, what);
    if (r) r->ms = 1e3 * med;
    return NFV_OK;
}

typedef struct bench_section {
    const char *name;
    nfv_status (*run)(bench_state *s);
} bench_section;

/* In the order they run and print.  "allreduce" runs only when asked
 * (--only allreduce), under mpirun. */
static const bench_section SECTIONS[] = {
    {"vis", section_vis},       {"train", section_train},     {"eval", section_eval},
    {"memory", section_memory}, {"startup", section_startup}, {"allreduce", section_allreduce},
};
#define NSECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

/* ---- output -------------------------------------------------------------------- */

/* What was measured: the --model file or the --arch spec (a preset's
 * arch_label is its expanded graph, too long for a title). */
static const char *model_label(const bench_state *s)
{
    return s->a->model_path ? s->a->model_path : s->a->arch;
}

static int cmp_prof(const void *a, const void *b)
{
    double x = ((const nfv_profile_row *)a)->seconds, y = ((const nfv_profile_row *)b)->seconds;
    return (x < y) - (x > y);
}

static double prof_total(const bench_row *r)
{
    double total = 0;
    for (int k = 0; k < r->nprof; k++) total += r->prof[k].seconds;
    return total;
}

/* --profile: the kernels of one measurement by device time per repetition. */
static void print_profile(const bench_row *r)
{
    if (!r->nprof) return;
    qsort(r->prof, (size_t)r->nprof, sizeof *r->prof, cmp_prof);
    double total = prof_total(r), per = 1e3 / r->prof_reps;
    printf("\nprofile of %s: %.1f ms of kernels per repetition (wall median %.1f ms; the rest is transfers, "
           "CLBlast, host work and launch gaps)\n", r->name, total * per, r->ms);
    for (int k = 0; k < r->nprof && k < 16; k++)
        printf("  %-40s %9.2f ms %6.1f %%  %6.1f launches\n", r->prof[k].name, r->prof[k].seconds * per,
               100.0 * r->prof[k].seconds / total, (double)r->prof[k].launches / r->prof_reps);
}

/* --profile with both visualization rows: each kernel's device time a
 * sample at batch 8 against batch 1 (issue 15 item 2).  What a batch can
 * share is the step's launches and host work (the wall time beyond the
 * kernels) and whatever a kernel does faster per sample with more samples:
 * the first bounds the ratio from below when the kernels' ratios are 1. */
static void print_batch_profile(const bench_row *b1, const bench_row *b8)
{
    if (!b1->nprof || !b8->nprof) return;
    const double k1 = prof_total(b1) * 1e3 / b1->prof_reps, k8 = prof_total(b8) * 1e3 / b8->prof_reps / 8.0;
    printf("\nvis batch 8 against batch 1, a sample: kernels %.2f -> %.2f ms (%.2f), wall %.2f -> %.2f ms (%.2f)\n",
           k1, k8, k8 / k1, b1->ms, b8->ms / 8.0, b8->ms / 8.0 / b1->ms);
    printf("at kernel ratios of 1 a batch saves at most batch 1's %.2f ms beyond its kernels (ratio %.2f)\n",
           b1->ms > k1 ? b1->ms - k1 : 0.0, b1->ms > k1 ? k1 / b1->ms : 1.0);
    for (int k = 0; k < b1->nprof && k < 16; k++) {
        const nfv_profile_row *p1 = &b1->prof[k];
        for (int j = 0; j < b8->nprof; j++)
            if (!strcmp(b8->prof[j].name, p1->name)) {
                const double t1 = p1->seconds * 1e3 / b1->prof_reps, t8 = b8->prof[j].seconds * 1e3 / b8->prof_reps / 8;
                printf("  %-40s %9.2f -> %6.2f ms a sample  %5.2f\n", p1->name, t1, t8, t8 / t1);
            }
    }
}

static void print_table(const bench_state *s, double peak, const char *peak_how)
{
    const nfv_device_info *d = nfv_context_device_info(s->ctx);
    printf("neurofv bench: %s on %s (%s), %d rep(s) after %d warm-up, medians\n", model_label(s), d->name,
           nfv_context_kernel_config(s->ctx)->name, s->a->reps, s->a->warmup);
    if (peak > 0) printf("device peak: %.0f GFLOP/s (%s)\n", peak, peak_how);
    else printf("device peak: %s\n", peak_how);
    printf("\n%-16s %11s %14s %14s %9s %7s  %s\n", "what", "ms", "ms/sample", "samples/s", "GFLOP/s", "%peak",
           "timed");
    for (int i = 0; i < s->nrows; i++) {
        const bench_row *r = &s->rows[i];
        if (r->unit) {
            printf("%-16s %11.1f %-14s %14s %9s %7s  %s\n", r->name, r->value, r->unit, "", "", "", r->what);
            continue;
        }
        char per[32] = "", rate[32] = "", gf[32] = "", share[32] = "";
        if (r->batch > 0) {
            snprintf(per, sizeof per, "%.2f", r->ms / r->batch);
            snprintf(rate, sizeof rate, "%.2f", 1e3 * r->batch / r->ms);
        }
        if (r->gflop > 0) snprintf(gf, sizeof gf, "%.1f", r->gflop / (r->ms * 1e-3));
        if (r->gflop > 0 && peak > 0) snprintf(share, sizeof share, "%.1f", 100.0 * r->gflop / (r->ms * 1e-3) / peak);
        printf("%-16s %11.1f %14s %14s %9s %7s  %s\n", r->name, r->ms, per, rate, gf, share, r->what);
    }
    for (int i = 0; i < s->nrows; i++) /* the batching figure of issue 15 item 2 */
        if (!strcmp(s->rows[i].name, "vis b8"))
            for (int j = 0; j < s->nrows; j++)
                if (!strcmp(s->rows[j].name, "vis b1"))
                    printf("\nvis batch 8 per target-step / batch 1 step: %.2f\n",
                           s->rows[i].ms / 8.0 / s->rows[j].ms);
    for (int i = 0; i < s->nskipped; i++) printf("skipped %s\n", s->skipped[i]);
    for (int i = 0; i < s->nrows; i++) print_profile(&s->rows[i]);
    const bench_row *b1 = NULL, *b8 = NULL;
    for (int i = 0; i < s->nrows; i++) {
        if (!strcmp(s->rows[i].name, "vis b1")) b1 = &s->rows[i];
        if (!strcmp(s->rows[i].name, "vis b8")) b8 = &s->rows[i];
    }
    if (b1 && b8) print_batch_profile(b1, b8);
}

static int print_json(const bench_state *s, double peak, const char *peak_how)
{
    const nfv_device_info *d = nfv_context_device_info(s->ctx);
    cJSON *root = cJSON_CreateObject(), *rows = cJSON_CreateArray(), *sk = cJSON_CreateArray();
    if (!root || !rows || !sk) return cli_failf("bench", "out of memory writing JSON");
    cJSON_AddStringToObject(root, "model", model_label(s));
    cJSON_AddStringToObject(root, "device", d->name);
    cJSON_AddStringToObject(root, "driver", d->driver_version);
    cJSON_AddStringToObject(root, "kernel_config", nfv_context_kernel_config(s->ctx)->name);
    cJSON_AddNumberToObject(root, "reps", s->a->reps);
    cJSON_AddNumberToObject(root, "warmup", s->a->warmup);
    cJSON_AddNumberToObject(root, "peak_gflops", peak);
    cJSON_AddStringToObject(root, "peak_source", peak_how);
    cJSON_AddNumberToObject(root, "forward_gflop_per_sample", bench_forward_flops(s->m, -1) / 1e9);
    for (int i = 0; i < s->nrows; i++) {
        const bench_row *r = &s->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->name);
        cJSON_AddStringToObject(o, "what", r->what);
        if (r->unit) {
            cJSON_AddNumberToObject(o, "value", r->value);
            cJSON_AddStringToObject(o, "unit", r->unit);
        } else {
            cJSON_AddNumberToObject(o, "median_ms", r->ms);
            if (r->batch > 0) {
                cJSON_AddNumberToObject(o, "batch", r->batch);
                cJSON_AddNumberToObject(o, "ms_per_sample", r->ms / r->batch);
                cJSON_AddNumberToObject(o, "samples_per_s", 1e3 * r->batch / r->ms);
            }
            if (r->gflop > 0) {
                cJSON_AddNumberToObject(o, "gflop", r->gflop);
                cJSON_AddNumberToObject(o, "gflops", r->gflop / (r->ms * 1e-3));
                if (peak > 0) cJSON_AddNumberToObject(o, "peak_share", r->gflop / (r->ms * 1e-3) / peak);
            }
        }
        if (r->nprof) {
            cJSON *pa = cJSON_AddArrayToObject(o, "profile");
            for (int k = 0; pa && k < r->nprof; k++) {
                cJSON *po = cJSON_CreateObject();
                cJSON_AddStringToObject(po, "kernel", r->prof[k].name);
                cJSON_AddNumberToObject(po, "ms_per_rep", 1e3 * r->prof[k].seconds / r->prof_reps);
                cJSON_AddNumberToObject(po, "launches_per_rep", (double)r->prof[k].launches / r->prof_reps);
                cJSON_AddItemToArray(pa, po);
            }
        }
        cJSON_AddItemToArray(rows, o);
    }
    for (int i = 0; i < s->nskipped; i++) cJSON_AddItemToArray(sk, cJSON_CreateString(s->skipped[i]));
    cJSON_AddItemToObject(root, "rows", rows);
    cJSON_AddItemToObject(root, "skipped", sk);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return cli_failf("bench", "out of memory writing JSON");
    printf("%s\n", text);
    free(text);
    return 0;
}

/* ---- the command ------------------------------------------------------------------ */

static nfv_status open_model(const bench_args *a, nfv_context **ctx, nfv_model **m)
{
    NFV_TRY(nfv_context_create(a->device, ctx));
    return bench_model_open(*ctx, a->model_path, a->arch, a->shape, a->classes, m);
}

/* "vis,train" -> which sections run; an unknown name is the error. */
static int parse_sections(const char *list, int *on)
{
    /* Without --only: every section but the all-reduce (it needs mpirun). */
    for (int i = 0; i < NSECTIONS; i++) on[i] = list == NULL && strcmp(SECTIONS[i].name, "allreduce");
    if (!list) return 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = 0;
        for (int i = 0; i < NSECTIONS; i++)
            if (strlen(SECTIONS[i].name) == len && !strncmp(p, SECTIONS[i].name, len)) on[i] = found = 1;
        if (!found) {
            char names[200] = "";
            for (int i = 0; i < NSECTIONS; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                         SECTIONS[i].name);
            return cli_failf("bench", "--only: unknown section \"%.*s\" (sections: %s)", (int)len, p, names);
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    bench_args a = {.arch = "ref4", .target = "output:0", .classes = 3, .reps = 5, .warmup = 2};
    const cli_option opts[] = {
        {"--arch", CLI_STRING, &a.arch, "SPEC", "architecture spec or preset with random weights (default ref4)"},
        {"--classes", CLI_INT, &a.classes, "K", "outputs of --arch (default 3)"},
        {"--shape", CLI_STRING, &a.shape, "X,Y,Z", "input grid of --arch (default: the preset's, ref4 91,109,91)"},
        {"--model", CLI_STRING, &a.model_path, "FILE", "a model file instead (.safetensors or imported .onnx)"},
        {"--device", CLI_STRING, &a.device, "DEV", "OpenCL device (see neurofv devices)"},
        {"--target", CLI_STRING, &a.target, "T", "visualization target (default output:0, the first output)"},
        {"--reps", CLI_INT, &a.reps, "N", "timed repetitions per measurement, medians reported (default 5)"},
        {"--warmup", CLI_INT, &a.warmup, "N", "untimed repetitions first, kernel builds included (default 2)"},
        {"--only", CLI_STRING, &a.sections, "LIST", "sections to run: vis,train,eval,memory,startup (default all)"},
        {"--no-cold", CLI_FLAG, &a.no_cold, NULL, "skip the cold-cache start-up (it compiles every kernel: minutes)"},
        {"--peak-gflops", CLI_FLOAT, &a.peak_gflops, "G", "the device's fp32 peak for the %peak column"},
        {"--json", CLI_FLAG, &a.json, NULL, "print JSON instead of the table"},
        {"--profile", CLI_FLAG, &a.profile, NULL,
         "also the device time per kernel of each step (NEUROFV_PROFILE=1: profiling queue, slightly slower)"},
        {"--profile-shapes", CLI_FLAG, &a.profile_shapes, NULL,
         "as --profile, one row per kernel and layer shape (input and output channels, output size, kernel depth "
         "of the conv build)"},
        {"--startup-child", CLI_FLAG, &a.startup_child, NULL, "internal: the timed child of the startup section"},
        {0},
    };
    int r = cli_parse("bench", "[--arch SPEC | --model FILE] [options]",
                      "Time whole steps on one model and device: visualization at batch 1 and 8, training at "
                      "batch 4 and 8, eval, start-up with warm and cold kernel caches, device memory; medians, "
                      "GFLOP/s from the model's FLOP count (as neurofv inspect) and the share of the device's peak.",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (a.reps < 1) return cli_failf("bench", "--reps must be >= 1, got %d", a.reps);
    if (a.warmup < 1) return cli_failf("bench", "--warmup must be >= 1 (the first step builds kernels), got %d", a.warmup);
    if (a.classes < 2) return cli_failf("bench", "--classes must be >= 2, got %d", a.classes);
    if (a.peak_gflops < 0) return cli_failf("bench", "--peak-gflops must be > 0, got %g", a.peak_gflops);
    int on[NSECTIONS];
    if (parse_sections(a.sections, on)) return 2;
    if (a.profile_shapes) a.profile = 1;
    if (a.profile) setenv("NEUROFV_PROFILE", a.profile_shapes ? "shapes" : "1", 1); /* before the context */
    bench_state s;
    memset(&s, 0, sizeof s);
    s.a = &a;
    nfv_status st = open_model(&a, &s.ctx, &s.m);
    if (!st && a.startup_child) { /* one step, then exit: the parent times us */
        bench_times t = {0};
        int layer;
        st = bench_vis_step(s.ctx, s.m, a.target, 1, 1, 0, &t, &layer);
        bench_times_free(&t);
    } else {
        for (int i = 0; !st && i < NSECTIONS; i++) {
            if (!on[i]) continue;
            if (!a.json) fprintf(stderr, "bench: %s ...\n", SECTIONS[i].name);
            nfv_status sst = SECTIONS[i].run(&s);
            /* A bad --target is the user's error; anything else skips the section. */
            if (sst == NFV_ERR_INVALID_ARG) st = sst;
            else if (sst) skip(&s, SECTIONS[i].name, sst);
        }
    }
    int rc = 0;
    if (st) rc = cli_fail("bench", st);
    else if (!a.startup_child) {
        const char *how;
        double peak = bench_device_peak(s.ctx, a.peak_gflops, &how);
        if (a.json) rc = print_json(&s, peak, how);
        else print_table(&s, peak, how);
    }
    for (int i = 0; i < s.nrows; i++) free(s.rows[i].prof);
    if (s.m) nfv_model_free(s.m);
    if (s.ctx) nfv_context_free(s.ctx);
    return rc;
}
