/* The training loop of the library (src/model/train_loop.c, train_schedule.c)
 * without the binary: shuffles are permutations drawn from (seed, epoch)
 * alone, the cosine schedule's values, augmentation reproducible per (seed,
 * epoch, sample), events, and a 2-epoch run byte-identical to 1 epoch + a
 * resume for 1 more on a tiny cohort. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "base/interrupt.h"
#include "neurofv/train.h"
#include "neurofv/volume.h"
#include "test.h"

TEST(train_loop_shuffle_is_a_deterministic_permutation)
{
    enum { N = 37 };
    int a[N], b[N], seen[N];
    int differs_by_epoch = 0, differs_by_seed = 0;
    for (int epoch = 0; epoch < 4; epoch++) {
        for (int i = 0; i < N; i++) a[i] = b[i] = 100 + i;
        nfv_train_shuffle(a, N, 5, epoch);
        nfv_train_shuffle(b, N, 5, epoch);
        CHECK(!memcmp(a, b, sizeof a), "epoch %d: the same (seed, epoch) gives the same order", epoch);
        memset(seen, 0, sizeof seen);
        int ok = 1;
        for (int i = 0; i < N; i++) {
            int v = a[i] - 100;
            if (v < 0 || v >= N || seen[v]++) ok = 0;
        }
        CHECK(ok, "epoch %d: the order is a permutation of the rows", epoch);
        int c[N];
        for (int i = 0; i < N; i++) c[i] = 100 + i;
        nfv_train_shuffle(c, N, 5, epoch + 1);
        differs_by_epoch += memcmp(a, c, sizeof a) != 0;
        for (int i = 0; i < N; i++) c[i] = 100 + i;
        nfv_train_shuffle(c, N, 6, epoch);
        differs_by_seed += memcmp(a, c, sizeof a) != 0;
    }
    CHECK(differs_by_epoch == 4 && differs_by_seed == 4, "another epoch (%d/4) or seed (%d/4) gives another order",
          differs_by_epoch, differs_by_seed);
    int one = 7;
    nfv_train_shuffle(&one, 1, 5, 0);
    nfv_train_shuffle(NULL, 0, 5, 0);
    CHECK(one == 7, "one row stays");
}

TEST(train_loop_lr_schedule_values)
{
    const float base = 0.003f;
    const double fl = base / 100.0;
    /* cosine over 3 epochs: base, the midpoint, base/100; over 5, epoch 1 is at pi/4. */
    double want3[3] = {base, fl + 0.5 * (base - fl), fl};
    for (int e = 0; e < 3; e++) {
        double got = nfv_train_lr(NFV_LR_COSINE, base, e, 3);
        CHECK(fabs(got - want3[e]) <= 1e-7 * base, "cosine epoch %d of 3: %.9g, want %.9g", e, got, want3[e]);
    }
    double want5 = fl + 0.5 * (base - fl) * (1 + cos(3.14159265358979323846 / 4));
    CHECK(fabs(nfv_train_lr(NFV_LR_COSINE, base, 1, 5) - want5) <= 1e-7 * base, "cosine epoch 1 of 5");
    CHECK(nfv_train_lr(NFV_LR_COSINE, base, 0, 1) == base, "cosine over one epoch keeps the base rate");
    for (int e = 0; e < 4; e++)
        CHECK(nfv_train_lr(NFV_LR_CONSTANT, base, e, 4) == base && nfv_train_lr(NFV_LR_DEFAULT, base, e, 4) == base,
              "constant (and default) epoch %d", e);
    nfv_lr_schedule s = NFV_LR_DEFAULT;
    CHECK(!nfv_lr_schedule_parse("cosine", &s) && s == NFV_LR_COSINE, "parse cosine");
    CHECK(!nfv_lr_schedule_parse("constant", &s) && s == NFV_LR_CONSTANT, "parse constant");
    CHECK(nfv_lr_schedule_parse("linear", &s) == NFV_ERR_INVALID_ARG, "linear is not a schedule");
    CHECK(!strcmp(nfv_lr_schedule_name(NFV_LR_COSINE), "cosine") &&
              !strcmp(nfv_lr_schedule_name(NFV_LR_DEFAULT), "constant"),
          "schedule names (as written into checkpoints)");
}

/* Whether dst is src (D, H, W) shifted by (dz, dy, dx), zeros shifted in,
 * then mirrored along x if flip. */
static int is_shift_of(const float *dst, const float *src, int D, int H, int W, int dz, int dy, int dx, int flip)
{
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) - dx, sy = y - dy, sz = z - dz;
                float want = sx >= 0 && sx < W && sy >= 0 && sy < H && sz >= 0 && sz < D
                                 ? src[((size_t)sz * H + sy) * W + sx]
                                 : 0.0f;
                if (dst[((size_t)z * H + y) * W + x] != want) return 0;
            }
    return 1;
}

TEST(train_loop_augment_reproducible)
{
    enum { D = 6, H = 7, W = 8, V = D * H * W };
    float src[V], a[V], b[V];
    for (int i = 0; i < V; i++) src[i] = (float)(i + 1);
    nfv_augment none = {0, 0}, shift = {2, 0}, flip = {0, 1}, both = {1, 1};
    nfv_train_augment(&none, 5, 0, 3, src, a, D, H, W);
    CHECK(!memcmp(a, src, sizeof a), "no augmentation: a copy");
    nfv_train_augment(NULL, 5, 0, 3, src, a, D, H, W);
    CHECK(!memcmp(a, src, sizeof a), "NULL augmentation: a copy");

    int shifts_seen = 0, flips = 0, identical_runs = 1, explained = 1;
    float first[V];
    for (int sample = 0; sample < 24; sample++) {
        nfv_train_augment(&shift, 5, 2, sample, src, a, D, H, W);
        nfv_train_augment(&shift, 5, 2, sample, src, b, D, H, W);
        identical_runs &= !memcmp(a, b, sizeof a);
        int found = 0;
        for (int dz = -2; dz <= 2 && !found; dz++)
            for (int dy = -2; dy <= 2 && !found; dy++)
                for (int dx = -2; dx <= 2 && !found; dx++) found = is_shift_of(a, src, D, H, W, dz, dy, dx, 0);
        explained &= found;
        if (sample == 0) memcpy(first, a, sizeof a);
        else shifts_seen += memcmp(first, a, sizeof a) != 0;

        nfv_train_augment(&flip, 5, 2, sample, src, a, D, H, W);
        int flipped = is_shift_of(a, src, D, H, W, 0, 0, 0, 1);
        explained &= flipped || !memcmp(a, src, sizeof a);
        flips += flipped;

        nfv_train_augment(&both, 5, 2, sample, src, a, D, H, W);
        nfv_train_augment(&both, 5, 2, sample, src, b, D, H, W);
        identical_runs &= !memcmp(a, b, sizeof a);
    }
    CHECK(identical_runs, "the same (seed, epoch, sample) gives the same volume");
    CHECK(explained, "every augmented volume is a shift within +-2 voxels, or the volume or its x mirror");
    CHECK(shifts_seen > 10, "different samples get different shifts (%d of 23 differ from the first)", shifts_seen);
    CHECK(flips > 4 && flips < 20, "about half the samples are flipped (%d of 24)", flips);
    nfv_train_augment(&shift, 5, 2, 0, src, a, D, H, W);
    nfv_train_augment(&shift, 5, 3, 0, src, b, D, H, W);
    float c[V];
    nfv_train_augment(&shift, 6, 2, 0, src, c, D, H, W);
    CHECK(memcmp(a, b, sizeof a) || memcmp(a, c, sizeof a), "the epoch and the seed enter the draw");

    nfv_augment p;
    CHECK(!nfv_augment_parse("shift=2,flip", &p) && p.shift == 2 && p.flip == 1, "parse shift=2,flip");
    CHECK(!nfv_augment_parse("flip", &p) && p.shift == 0 && p.flip == 1, "parse flip");
    CHECK(!nfv_augment_parse(NULL, &p) && p.shift == 0 && p.flip == 0, "parse NULL: none");
    CHECK(nfv_augment_parse("shift=-1", &p) && nfv_augment_parse("rot", &p) && nfv_augment_parse("shift=2x", &p),
          "shift=-1, rot and shift=2x are rejected");
}

/* 16 subjects of 24^3 (12 train, 4 val): noise over a faint ball, with a
 * bright 7-voxel cube (class "cube") or without ("none"). */
static int make_cohort(const char *dir, char *csv_path, size_t cap)
{
    snprintf(csv_path, cap, "%s/labels.csv", dir);
    FILE *csv = fopen(csv_path, "w");
    if (!csv) return 0;
    fprintf(csv, "path,label,split\n");
    unsigned long long st = 777;
    for (int s = 0; s < 16; s++) {
        nfv_volume v;
        if (nfv_volume_alloc(&v, 24, 24, 24, NULL)) return 0;
        int cls = s % 2, cx = 8 + (int)(test_uniform(&st) * 8), cy = 8 + (int)(test_uniform(&st) * 8),
            cz = 8 + (int)(test_uniform(&st) * 8);
        for (int z = 0; z < 24; z++)
            for (int y = 0; y < 24; y++)
                for (int x = 0; x < 24; x++) {
                    double r2 = (x - 11.5) * (x - 11.5) + (y - 11.5) * (y - 11.5) + (z - 11.5) * (z - 11.5);
                    float val = (r2 < 100 ? 1.0f : 0.2f) + 0.3f * (float)(test_uniform(&st) - 0.5);
                    if (cls == 0 && abs(x - cx) <= 3 && abs(y - cy) <= 3 && abs(z - cz) <= 3) val += 1.5f;
                    v.data[((size_t)z * 24 + y) * 24 + x] = val;
                }
        char path[1024];
        snprintf(path, sizeof path, "%s/sub-%02d.nii.gz", dir, s);
        nfv_status ws = nfv_volume_write(path, &v);
        nfv_volume_free(&v);
        if (ws) return 0;
        fprintf(csv, "sub-%02d.nii.gz,%s,%s\n", s, cls ? "none" : "cube", s < 12 ? "train" : "val");
    }
    return fclose(csv) == 0;
}

/* The cohort in a fresh folder test_tmpdir()/name (its path into dir). */
static int cohort_in(const char *name, char *dir, size_t dir_cap, char *csv_path, size_t csv_cap)
{
    snprintf(dir, dir_cap, "%s/%s", test_tmpdir(), name);
    return nfv_mkdirs(dir) == NFV_OK && make_cohort(dir, csv_path, csv_cap);
}

typedef struct event_log {
    int count[NFV_TRAIN_EPOCH_END + 1];
    int last_batches, start_epoch, resumed;
    float lr[4];
} event_log;

static void record(void *user, const nfv_train_event *e)
{
    event_log *l = user;
    l->count[e->kind]++;
    if (e->kind == NFV_TRAIN_START) l->start_epoch = e->epoch, l->resumed = e->resumed;
    if (e->kind == NFV_TRAIN_BATCH) l->last_batches = e->batches;
    if (e->kind == NFV_TRAIN_EPOCH_END && e->result->epoch < 4) l->lr[e->result->epoch] = e->result->lr;
}

/* Whole files equal byte for byte. */
static int same_bytes(const char *a, const char *b)
{
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return test_run(cmd, NULL) == 0;
}

static void loop_options(nfv_train_options *o, const char *out, int epochs, int resume, event_log *log)
{
    nfv_train_options_default(o);
    o->arch = "conv(4,k3,p1) bn relu maxpool(2) conv(8,k3,p1) bn relu gap flatten dropout(0.2) linear(2)";
    o->grid = (nfv_grid){24, 24, 24, {1, 1, 1}, NFV_NORM_ZSCORE_NONZERO};
    o->lr = 0.003f;
    o->schedule = NFV_LR_COSINE;
    o->augment = (nfv_augment){1, 1};
    o->epochs = epochs, o->batch = 4, o->seed = 5;
    o->out = out, o->resume = resume;
    o->cache_bytes = 64 << 20;
    o->on_event = record, o->user = log;
}

TEST(train_loop_resume_equals_uninterrupted)
{
    char dir[512], csv[600], a[600], b[600], ca[700], cb[700], cmd[2000];
    if (!CHECK(cohort_in("loop_cohort", dir, sizeof dir, csv, sizeof csv), "cohort written")) return;
    nfv_dataset ds;
    if (!CHECK_OK(nfv_dataset_load(csv, &ds))) return;
    nfv_context *ctx = test_ctx();
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    nfv_train_options o;
    nfv_train_result r;
    event_log la, lb, lc;
    memset(&la, 0, sizeof la), memset(&lb, 0, sizeof lb), memset(&lc, 0, sizeof lc);

    loop_options(&o, a, 2, 0, &la);
    if (CHECK_OK(nfv_train_run(ctx, &ds, &o, &r))) {
        CHECK(r.start_epoch == 0 && r.epochs_run == 2, "2 epochs run (from %d: %d)", r.start_epoch, r.epochs_run);
        CHECK(r.best_bacc >= 0 && r.best_bacc <= 1 && isfinite(r.best_loss), "best bacc %.3f, loss %.4f", r.best_bacc,
              r.best_loss);
        /* 12 train rows in batches of 4: 3 steps per epoch. */
        CHECK(la.count[NFV_TRAIN_START] == 1 && la.count[NFV_TRAIN_EPOCH_BEGIN] == 2 && la.count[NFV_TRAIN_BATCH] == 6 &&
                  la.count[NFV_TRAIN_BATCHES_END] == 2 && la.count[NFV_TRAIN_EPOCH_END] == 2 && la.last_batches == 3,
              "events: start %d, epochs %d/%d/%d, batches %d of %d", la.count[NFV_TRAIN_START],
              la.count[NFV_TRAIN_EPOCH_BEGIN], la.count[NFV_TRAIN_BATCHES_END], la.count[NFV_TRAIN_EPOCH_END],
              la.count[NFV_TRAIN_BATCH], la.last_batches);
        CHECK(la.lr[0] == nfv_train_lr(NFV_LR_COSINE, 0.003f, 0, 2) && la.lr[1] == nfv_train_lr(NFV_LR_COSINE, 0.003f, 1, 2),
              "epoch rates follow the schedule: %g, %g", la.lr[0], la.lr[1]);
    }
    loop_options(&o, b, 1, 0, &lb);
    CHECK_OK(nfv_train_run(ctx, &ds, &o, &r));
    /* The resumed part takes seed, schedule and rate from the checkpoint. */
    loop_options(&o, b, 2, 1, &lc);
    o.seed = 99, o.lr = NAN, o.schedule = NFV_LR_DEFAULT;
    if (CHECK_OK(nfv_train_run(ctx, &ds, &o, &r))) {
        CHECK(r.start_epoch == 1 && r.epochs_run == 1 && lc.resumed && lc.start_epoch == 1,
              "resumed at epoch %d, ran %d", r.start_epoch, r.epochs_run);
        CHECK(lc.lr[1] == la.lr[1], "the resumed epoch's rate %g equals the uninterrupted run's %g", lc.lr[1], la.lr[1]);
    }
    CHECK(same_bytes(a, b), "model file of 1 epoch + resume is byte-identical to 2 epochs (%s, %s)", a, b);
    snprintf(ca, sizeof ca, "%s.ckpt", a);
    snprintf(cb, sizeof cb, "%s.ckpt", b);
    CHECK(same_bytes(ca, cb), "checkpoints byte-identical (weights, BN, optimizer state, metadata)");
    snprintf(ca, sizeof ca, "%s.log.csv", a);
    snprintf(cb, sizeof cb, "%s.log.csv", b);
    snprintf(cmd, sizeof cmd, "test $(wc -l < '%s') -eq 3 && test $(wc -l < '%s') -eq 3", ca, cb);
    CHECK(test_run(cmd, NULL) == 0, "both epoch logs have a header and 2 rows");
    nfv_dataset_free(&ds);
}

TEST(train_loop_errors_name_the_problem)
{
    nfv_train_options o;
    nfv_train_options_default(&o);
    nfv_train_result r;
    char p0[] = "a.nii", p1[] = "b.nii", la[] = "x", lb[] = "y", name[] = "val_only.csv";
    char *classes[2] = {la, lb};
    nfv_dataset_row rows[2] = {{p0, la, 0, NFV_SPLIT_VAL, 2, 0}, {p1, lb, 1, NFV_SPLIT_VAL, 3, 0}};
    nfv_dataset ds = {rows, 2, classes, 2, name};
    CHECK(nfv_train_run(test_ctx(), &ds, &o, &r) == NFV_ERR_INVALID_ARG, "no output path");
    o.out = "/nonexistent/m.safetensors";
    CHECK(nfv_train_run(test_ctx(), &ds, &o, &r) == NFV_ERR_INVALID_ARG &&
              strstr(nfv_error_message(), "val_only.csv has no training rows"),
          "no train rows: %s", nfv_error_message());
    rows[0].split = NFV_SPLIT_TRAIN;
    o.resume = 1;
    CHECK(nfv_train_run(test_ctx(), &ds, &o, &r) != NFV_OK && strstr(nfv_error_message(), "m.safetensors.ckpt"),
          "resume without a checkpoint names it: %s", nfv_error_message());
    o.resume = 0, o.epochs = 0;
    CHECK(nfv_train_run(test_ctx(), &ds, &o, &r) == NFV_ERR_INVALID_ARG, "0 epochs");
}

/* Sends SIGTERM to this process when the given batch of the given epoch
 * (0-based epoch, 1-based batch) has finished. */
typedef struct kill_at {
    event_log log;
    int epoch, batch;
} kill_at;

static void term_at(void *user, const nfv_train_event *e)
{
    kill_at *k = user;
    record(&k->log, e);
    if (e->kind == NFV_TRAIN_BATCH && e->epoch == k->epoch && e->batch == k->batch) raise(SIGTERM);
}

static int no_temp_files(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "! ls -a '%s' | grep -q '\\.tmp'", dir);
    return test_run(cmd, NULL) == 0;
}

TEST(train_loop_sigterm_stops_cleanly_and_resumes_exactly)
{
    char dir[512], csv[600], a[600], b[600], ckpt[700], saved[700], cmd[2000];
    if (!CHECK(cohort_in("loop_term", dir, sizeof dir, csv, sizeof csv), "cohort written")) return;
    nfv_dataset ds;
    if (!CHECK_OK(nfv_dataset_load(csv, &ds))) return;
    nfv_context *ctx = test_ctx();
    snprintf(a, sizeof a, "%s/whole.safetensors", dir);
    snprintf(b, sizeof b, "%s/cut.safetensors", dir);
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", b);
    snprintf(saved, sizeof saved, "%s/epoch1.ckpt", dir);
    nfv_train_options o;
    nfv_train_result r;
    event_log whole;
    memset(&whole, 0, sizeof whole);
    loop_options(&o, a, 3, 0, &whole);
    CHECK_OK(nfv_train_run(ctx, &ds, &o, &r));

    /* SIGTERM after batch 2 of epoch 2 (of 3): the run stops there, names
     * where, leaves no temporary file and the epoch-1 checkpoint as it was. */
    nfv_interrupt_install();
    event_log first;
    memset(&first, 0, sizeof first);
    loop_options(&o, b, 1, 0, &first); /* 1 epoch, to keep a copy of its checkpoint */
    CHECK_OK(nfv_train_run(ctx, &ds, &o, &r));
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ckpt, saved);
    CHECK(test_run(cmd, NULL) == 0, "checkpoint after epoch 1 copied");
    kill_at k = {.epoch = 1, .batch = 2};
    memset(&k.log, 0, sizeof k.log);
    loop_options(&o, b, 3, 1, &first);
    o.on_event = term_at, o.user = &k;
    nfv_status s = nfv_train_run(ctx, &ds, &o, &r);
    CHECK(s == NFV_ERR_INTERRUPTED && strstr(nfv_error_message(), "SIGTERM") &&
              strstr(nfv_error_message(), "epoch 2, batch 3 of 3") && strstr(nfv_error_message(), "--resume"),
          "stopped with %s: %s", nfv_status_name(s), nfv_error_message());
    CHECK(same_bytes(ckpt, saved), "the checkpoint still holds epoch 1");
    CHECK(no_temp_files(dir), "no temporary file left in %s", dir);
    nfv_interrupt_reset();

    /* Resume: the same final model, checkpoint and best as never stopping. */
    loop_options(&o, b, 3, 1, &first);
    CHECK_OK(nfv_train_run(ctx, &ds, &o, &r));
    CHECK(same_bytes(a, b), "interrupted + resumed model is byte-identical to the uninterrupted one");
    char ca[700];
    snprintf(ca, sizeof ca, "%s.ckpt", a);
    CHECK(same_bytes(ca, ckpt), "and so is the final checkpoint");
    nfv_dataset_free(&ds);
}

TEST(train_loop_divergence_stops_and_keeps_the_last_good_epoch)
{
    char dir[512], csv[600], m[600], ckpt[700], saved[700], cmd[2000];
    if (!CHECK(cohort_in("loop_nan", dir, sizeof dir, csv, sizeof csv), "cohort written")) return;
    nfv_dataset ds;
    if (!CHECK_OK(nfv_dataset_load(csv, &ds))) return;
    nfv_context *ctx = test_ctx();
    snprintf(m, sizeof m, "%s/m.safetensors", dir);
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", m);
    snprintf(saved, sizeof saved, "%s/good.ckpt", dir);
    nfv_train_options o;
    nfv_train_result r;
    event_log log;
    memset(&log, 0, sizeof log);
    loop_options(&o, m, 1, 0, &log);
    CHECK_OK(nfv_train_run(ctx, &ds, &o, &r));
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ckpt, saved);
    CHECK(test_run(cmd, NULL) == 0, "good checkpoint copied");
    /* Adam moves every weight by about lr: a step of 3e38 (near FLT_MAX)
     * overflows the logits, whatever BatchNorm normalizes, so the loss is Inf
     * or NaN within a batch or two. */
    loop_options(&o, m, 3, 1, &log);
    o.lr = 3e38f;
    nfv_status s = nfv_train_run(ctx, &ds, &o, &r);
    CHECK(s == NFV_ERR_DIVERGED && strstr(nfv_error_message(), "epoch 2, batch") &&
              strstr(nfv_error_message(), "--lr"),
          "divergence stops the run naming epoch and batch: %s: %s", nfv_status_name(s), nfv_error_message());
    CHECK(same_bytes(ckpt, saved), "the checkpoint keeps the last good epoch");
    nfv_dataset_free(&ds);
}

/* ---- The binary under signals: SIGTERM stops cleanly, kill -9 resumes ---- */

#define CLI_ARCH "conv(4,k3,p1) bn relu maxpool(2) conv(8,k3,p1) bn relu gap flatten dropout(0.2) linear(2)"

/* Runs `neurofv train` on the cohort into model, for epochs, in the
 * background; when its epoch log has `lines` lines (header + epochs), sends
 * signal sig; writes "rc=N" (the exit status) after the command's output to
 * out.  resume: pass --resume.  Returns test_run's status of the script. */
static int train_and_signal(const char *csv, const char *model, int epochs, int resume, int lines, const char *sig,
                            const char *out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "bash -c '\"%s\" train --data \"%s\" --arch \"" CLI_ARCH "\" --shape 24,24,24 --voxel 1 --lr 0.003 "
             "--schedule cosine --augment shift=1,flip --epochs %d --batch 4 --seed 5 --quiet --out \"%s\" %s & pid=$!; "
             "if [ %d -gt 0 ]; then for i in $(seq 1 1200); do "
             "[ \"$(cat \"%s.log.csv\" 2>/dev/null | wc -l)\" -ge %d ] && break; "
             "kill -0 $pid 2>/dev/null || break; sleep 0.02; done; kill -%s $pid 2>/dev/null; fi; "
             "wait $pid; echo rc=$?'",
             test_bin(), csv, epochs, model, resume ? "--resume" : "", lines, model, lines, sig);
    return test_run(cmd, out);
}

static int read_rc(const char *out)
{
    FILE *f = fopen(out, "r");
    char line[4096];
    int rc = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "rc=", 3)) rc = atoi(line + 3);
    if (f) fclose(f);
    return rc;
}

static int file_contains(const char *path, const char *text)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "grep -q -- '%s' '%s'", text, path);
    return test_run(cmd, NULL) == 0;
}

TEST(train_cli_sigterm_and_kill9_resume_byte_identical)
{
    char dir[512], csv[600], ref[700], m[700], out[700], a[800], b[800];
    if (!CHECK(cohort_in("cli_kill", dir, sizeof dir, csv, sizeof csv), "cohort written")) return;
    snprintf(ref, sizeof ref, "%s/ref.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    const int epochs = 4;
    train_and_signal(csv, ref, epochs, 0, 0, "TERM", out);
    if (!CHECK(read_rc(out) == 0, "the uninterrupted run succeeds (rc %d)", read_rc(out))) return;

    /* SIGTERM in the middle: exit 128 + 15, one line saying where, no
     * temporary files; --resume then finishes byte-identical to ref. */
    snprintf(m, sizeof m, "%s/term.safetensors", dir);
    train_and_signal(csv, m, 400, 0, 3, "TERM", out);
    CHECK(read_rc(out) == 143 && file_contains(out, "interrupted by SIGTERM during epoch") &&
              file_contains(out, "--resume"),
          "SIGTERM stops train with exit 143 and says where (rc %d; see %s)", read_rc(out), out);
    CHECK(no_temp_files(dir), "no temporary file after SIGTERM");

    /* kill -9 at several points (before the first checkpoint, after epoch
     * 1, after epoch 2, late in the run): rerunning (with --resume once a
     * checkpoint exists) gives the model and checkpoint of the
     * uninterrupted run, byte for byte. */
    const int kill_lines[4] = {1, 2, 3, 4};
    for (int k = 0; k < 4; k++) {
        snprintf(m, sizeof m, "%s/kill%d.safetensors", dir, k);
        train_and_signal(csv, m, epochs, 0, kill_lines[k], "KILL", out);
        int rc = read_rc(out);
        snprintf(a, sizeof a, "%s.ckpt", m);
        struct stat st;
        int has_ckpt = stat(a, &st) == 0;
        if (rc != 0) train_and_signal(csv, m, epochs, has_ckpt, 0, "TERM", out);
        CHECK(read_rc(out) == 0, "kill -9 at log line %d (rc %d), then %s: the rerun succeeds (rc %d)",
              kill_lines[k], rc, has_ckpt ? "--resume" : "a fresh start", read_rc(out));
        CHECK(same_bytes(ref, m), "kill -9 at log line %d: model byte-identical to the uninterrupted run",
              kill_lines[k]);
        snprintf(b, sizeof b, "%s.ckpt", ref);
        CHECK(same_bytes(b, a), "kill -9 at log line %d: checkpoint byte-identical", kill_lines[k]);
    }
}

/* Runs cmd in the background, sends SIGTERM once path exists (or after 10 s;
 * path NULL: after 2 s), and writes its output and "rc=N" to out. */
static void run_and_term_when(const char *cmd, const char *path, const char *out)
{
    char script[6000];
    snprintf(script, sizeof script,
             "bash -c '%s & pid=$!; for i in $(seq 1 500); do [ -e \"%s\" ] && break; "
             "kill -0 $pid 2>/dev/null || break; sleep 0.02; done; sleep 0.3; kill -TERM $pid 2>/dev/null; "
             "wait $pid; echo rc=$?'",
             cmd, path ? path : "/nonexistent");
    if (!path) {
        snprintf(script, sizeof script, "bash -c '%s & pid=$!; sleep 2; kill -TERM $pid 2>/dev/null; wait $pid; "
                 "echo rc=$?'", cmd);
    }
    test_run(script, out);
}

TEST(cli_sigterm_visualize_compare_synth_leave_nothing_partial)
{
    char dir[512], csv[600], m[700], out[700], vis[700], syn[700], cmd[4096], probe[800];
    if (!CHECK(cohort_in("cli_term2", dir, sizeof dir, csv, sizeof csv), "cohort written")) return;
    snprintf(m, sizeof m, "%s/m.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    train_and_signal(csv, m, 1, 0, 0, "TERM", out);
    if (!CHECK(read_rc(out) == 0, "model trained (rc %d)", read_rc(out))) return;

    /* visualize: SIGTERM during the optimization (its progress line on
     * stderr shows it started) stops at a step, writes no volume. */
    snprintf(vis, sizeof vis, "%s/vis", dir);
    snprintf(cmd, sizeof cmd,
             "\"%s\" visualize --model \"%s\" --target logit:cube --steps 1000000 --background none --out \"%s\"",
             test_bin(), m, vis);
    run_and_term_when(cmd, NULL, out);
    CHECK(read_rc(out) == 143 && file_contains(out, "interrupted by SIGTERM at step"),
          "visualize: exit 143 naming the step (rc %d; see %s)", read_rc(out), out);
    snprintf(cmd, sizeof cmd, "! ls '%s' 2>/dev/null | grep -q 'nii\\|tmp'", vis);
    CHECK(test_run(cmd, NULL) == 0, "visualize: no volume or temporary file in %s", vis);

    /* compare: the same stop inside its visualizations; no report written. */
    char cmpdir[700];
    snprintf(cmpdir, sizeof cmpdir, "%s/cmp", dir);
    snprintf(cmd, sizeof cmd,
             "\"%s\" compare --model \"%s\" --target logit:cube --steps 1000000 --background none --configs none "
             "--out \"%s\"",
             test_bin(), m, cmpdir);
    run_and_term_when(cmd, NULL, out);
    CHECK(read_rc(out) == 143 && file_contains(out, "interrupted by SIGTERM at step"),
          "compare: exit 143 naming the step (rc %d; see %s)", read_rc(out), out);
    snprintf(cmd, sizeof cmd, "test ! -e '%s/results.csv' && ! find '%s' -name '*tmp*' 2>/dev/null | grep -q .",
             cmpdir, cmpdir);
    CHECK(test_run(cmd, NULL) == 0, "compare: no report and no temporary file in %s", cmpdir);

    /* synth: SIGTERM while subjects are written: exit 143, every subject
     * file complete, no labels.csv (the cohort is not usable half-made). */
    snprintf(syn, sizeof syn, "%s/syn", dir);
    snprintf(probe, sizeof probe, "%s/sub-0001.nii.gz", syn);
    snprintf(cmd, sizeof cmd, "\"%s\" synth --task lesion --n 5000 --voxel 4 --threads 1 --out \"%s\"", test_bin(),
             syn);
    run_and_term_when(cmd, probe, out);
    CHECK(read_rc(out) == 143 && file_contains(out, "interrupted by SIGTERM after"),
          "synth: exit 143 saying how far it got (rc %d; see %s)", read_rc(out), out);
    snprintf(cmd, sizeof cmd, "test ! -e '%s/labels.csv' && ! ls '%s' | grep -q tmp", syn, syn);
    CHECK(test_run(cmd, NULL) == 0, "synth: no labels.csv and no temporary file in %s", syn);
    snprintf(cmd, sizeof cmd, "for f in '%s'/sub-*.nii.gz; do gzip -t \"$f\" || exit 1; done", syn);
    CHECK(test_run(cmd, NULL) == 0, "synth: every subject file written is complete");
}
