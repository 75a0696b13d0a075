/* `neurofv visualize`: optimize input volumes that maximally activate units
 * of a model (feature visualization) and write NIfTI, PNG and JSON outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <errno.h>
#include <unistd.h>

#include "cli.h"
#include "neurofv/dist.h"
#include "neurofv/vis.h"
#include "shard_manifest.h"
#include "vis_setup.h"
#include "base/clock.h"
#include "base/parallel.h"

NFV_COMMAND(visualize, "visualize", "Optimize volumes that maximally activate units (feature visualization)")

typedef struct visualize_args {
    const char *model_path, *out, *device, *shard, *background;
    const char *texts[VIS_SETUP_MAX_MULTI]; /* --target, as given */
    int ntexts;
    int shard_i, shard_n;
    int gif;        /* --gif: <stem>.gif of the snapshots */
    int resume;     /* skip targets whose outputs are complete */
    int auto_batch; /* no --batch: the largest batch that fits the device, at most the default */
    int merge;      /* --merge DIR: the shards' manifests in DIR; replay their line over every target */
    int merging;    /* replaying: every target's outputs must be there already */
    int mpi;        /* under mpirun: the targets split over the ranks, rank 0 writes the grids */
    int quiet;      /* no objective lines, no grids (a rank's part under mpirun) */
    int argc;       /* the command line as given, for a shard's manifest */
    char **argv;
} visualize_args;

/* Keeps the targets of shard I of N (contiguous blocks of the expanded list). */
static void keep_shard(vis_session *s, int shard_i, int shard_n)
{
    int all = s->count, w = 0;
    for (int i = 0; i < all; i++)
        if (nfv_shard_contains(i, all, shard_i, shard_n)) {
            s->targets[w] = s->targets[i];
            s->text_of[w++] = s->text_of[i];
        }
    s->count = w;
    fprintf(stderr, "visualize: shard %d/%d: %d of %d targets (contiguous block)\n", shard_i, shard_n, w, all);
}

/* A grid per target text that expanded to several units, named after the
 * text ("relu1:all" -> relu1_all_grid.png, "-x" -> "mx"); with --resume only
 * those missing or with a target that ran again. */
static nfv_status write_grids(const visualize_args *a, const vis_session *s, const nfv_vis_result *res,
                              const int *done)
{
    for (int t = 0; t < a->ntexts; t++) {
        int first = -1, n = 0, ran = 0;
        for (int i = 0; i < s->count; i++)
            if (s->text_of[i] == t) {
                if (first < 0) first = i;
                n++;
                ran |= !done[i];
            }
        if (n < 2) continue;
        const char *text = a->texts[t];
        char stem[200], path[4400];
        size_t w = 0;
        for (const char *p = text; *p && w + 2 < sizeof stem; p++)
            stem[w++] = (*p == ':' || *p == '@' || *p == ',' || *p == '/') ? '_' : (*p == '-' && p == text) ? 'm' : *p;
        stem[w] = 0;
        if (a->shard_n > 1) snprintf(stem + w, sizeof stem - w, "_shard%dof%d", a->shard_i, a->shard_n);
        snprintf(path, sizeof path, "%s/%s_grid.png", a->out, stem);
        FILE *f = ran ? NULL : fopen(path, "rb");
        if (f) {
            fclose(f);
            continue;
        }
        NFV_TRY(nfv_vis_write_grid(res + first, n, a->out, stem));
    }
    return NFV_OK;
}

/* The targets left to run (all, or with --resume those whose outputs are
 * not complete) through the loop at a batch that fits the device. */
static nfv_status run_targets(const visualize_args *a, vis_session *s, nfv_vis_options *o, const vis_resume *rs,
                              nfv_vis_result **computed)
{
    *computed = NULL;
    if (!rs->ntodo) return NFV_OK;
    NFV_TRY(vis_fit_batch(s, rs->todo, rs->ntodo, o, a->auto_batch, "visualize", NULL));
    if (a->auto_batch) NFV_TRY(vis_pick_batch(s, rs->todo, rs->ntodo, o, "visualize", NULL));
    char label[64];
    snprintf(label, sizeof label, "visualize (%d target(s))", rs->ntodo);
    cli_progress bar;
    cli_progress_start(&bar, label);
    nfv_status st = nfv_visualize(s->ctx, s->m, rs->todo, rs->ntodo, o, vis_on_progress, &bar, computed);
    cli_progress_end(&bar);
    return st;
}

/* One target's files (nfv_vis_write), for nfv_parallel_for: writing them is
 * host work (gzip, rendering, PNG) that took 50 s of a 64-target sweep whose
 * optimization took 15 s on a GPU, so the targets are written at once, one
 * per core. */
typedef struct write_job {
    const nfv_vis_result *res;
    const int *done;
    const nfv_vis_options *o;
    const nfv_volume *background;
    const char *out;
} write_job;

static nfv_status write_target(void *p, int i)
{
    const write_job *j = p;
    return j->done[i] ? NFV_OK : nfv_vis_write(&j->res[i], j->o, j->background, j->out);
}

/* Optimizes, writes every target's outputs and the grids, prints objectives. */
static int optimize_and_write(const visualize_args *a, vis_session *s, nfv_vis_options *o)
{
    vis_resume rs;
    nfv_vis_result *computed = NULL, *res = NULL;
    nfv_status st = vis_resume_scan(&rs, s, s->targets, s->count, o, a->out, a->resume);
    if (!st && a->merging && rs.ntodo)
        st = nfv_fail(NFV_ERR_INVALID_ARG, "%s: %d of %d target(s) have no complete outputs (first: %s); did every "
                      "shard finish?", a->out, rs.ntodo, s->count, rs.todo[0].name);
    if (!st && a->resume && !a->merging)
        fprintf(stderr, "visualize: --resume: %d of %d target(s) complete in %s, %d to run\n", rs.ndone, s->count,
                a->out, rs.ntodo);
    double t0 = nfv_seconds();
    if (!st) st = run_targets(a, s, o, &rs, &computed);
    double t1 = nfv_seconds();
    if (!st) st = vis_resume_results(&rs, s, s->targets, s->count, o, a->out, computed, &res);
    write_job job = {res, rs.done, o, vis_session_overlay(s), a->out};
    if (!st) st = nfv_parallel_for(s->count, 0, write_target, &job);
    for (int i = 0; i < s->count && !st; i++) {
        if (!a->quiet)
            printf("%s: objective %.6g (last step, with transforms), %.6g without transforms\n", res[i].target.name,
                   res[i].objective, res[i].objective_clean);
    }
    if (!st && !a->quiet) st = write_grids(a, s, res, rs.done);
    if (res) nfv_vis_results_free(res, s->count);
    vis_resume_free(&rs);
    if (st) return cli_fail("visualize", st);
    fprintf(stderr, "visualize: %d target(s), %d step(s), %.1f s optimizing, %.1f s writing; outputs in %s\n",
            s->count, o->steps, t1 - t0, nfv_seconds() - t1, a->out);
    return 0;
}

/* Copies of the session's whole target list (keep_shard narrows it in place). */
static nfv_status copy_targets(const vis_session *s, nfv_target **targets, int **text_of)
{
    *targets = malloc((size_t)(s->count + 1) * sizeof **targets);
    *text_of = malloc((size_t)(s->count + 1) * sizeof **text_of);
    if (!*targets || !*text_of) return nfv_fail(NFV_ERR_NO_MEMORY, "visualize: out of memory");
    memcpy(*targets, s->targets, (size_t)s->count * sizeof **targets);
    memcpy(*text_of, s->text_of, (size_t)s->count * sizeof **text_of);
    return NFV_OK;
}

/* DIR/shard-I-of-N.json: this shard's line and model, for --merge. */
static int write_manifest(const visualize_args *a)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/shard-%d-of-%d.json", a->out, a->shard_i, a->shard_n);
    nfv_status st = shard_manifest_write(path, "visualize", a->model_path, NULL, a->shard_i, a->shard_n, a->argc, a->argv);
    return st ? cli_fail("visualize", st) : 0;
}

static int visualize_main(int argc, char **argv, int merging);

/* visualize --merge DIR: every shard-I-of-N.json in DIR (the shards' shared
 * --out) must be shards 1..N of one run; their line runs again over all
 * targets, reading each back, which writes the grids one run writes. */
static int merge_shards(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return cli_failf("visualize", "--merge %s: cannot open: %s", dir, strerror(errno));
    char *paths[4096];
    int n = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        int i, k, len = 0;
        if (sscanf(e->d_name, "shard-%d-of-%d.json%n", &i, &k, &len) != 2 || e->d_name[len]) continue;
        size_t cap = strlen(dir) + strlen(e->d_name) + 2;
        if (n == 4096 || !(paths[n] = malloc(cap))) rc = cli_failf("visualize", "--merge: too many shards");
        else snprintf(paths[n++], cap, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    shard_manifest m;
    memset(&m, 0, sizeof m);
    nfv_status st = rc ? NFV_OK : shard_manifests_check("visualize", (const char *const *)paths, n, &m);
    if (!rc && st) rc = cli_fail("visualize", st);
    char **args = rc ? NULL : calloc((size_t)m.argc + 4, sizeof *args);
    if (!rc && !args) rc = cli_failf("visualize", "out of memory");
    if (!rc) {
        int k = 0;
        args[k++] = "visualize";
        for (int i = 0; i < m.argc; i++) args[k++] = m.argv[i];
        args[k++] = "--resume";
        if (chdir(m.cwd) != 0) rc = cli_failf("visualize", "--merge: cannot enter %s, where the shards ran: %s", m.cwd,
                                              strerror(errno));
        else fprintf(stderr, "visualize: merging %d shard(s) of %s\n", n, m.model);
        if (!rc) rc = visualize_main(k, args, 1);
    }
    free(args);
    shard_manifest_free(&m);
    for (int i = 0; i < n; i++) free(paths[i]);
    return rc;
}

/* After parsing: options, shard, device and model, targets, background, run. */
static int visualize(visualize_args *a, const vis_cli *cli)
{
    if (!a->model_path || !a->out || a->ntexts == 0)
        return cli_failf("visualize", "--model, --target and --out are required (see neurofv visualize --help)");
    if (a->merging) a->resume = 1;
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    nfv_status st = vis_cli_options(cli, &o);
    if (!st && a->gif) nfv_vis_options_gif(&o);
    if (!st) st = nfv_vis_options_check(&o);
    a->shard_i = a->shard_n = 1;
    a->auto_batch = vis_cli_value(cli, "--batch") == NULL;
    a->mpi = nfv_dist_size() > 1;
    if (!st && a->mpi && a->shard)
        st = nfv_fail(NFV_ERR_INVALID_ARG, "--shard splits a run over Slurm array tasks and mpirun over ranks; use one");
    if (!st && a->shard) st = nfv_shard_parse(a->shard, &a->shard_i, &a->shard_n);
    if (a->mpi) a->shard_i = nfv_dist_rank() + 1, a->shard_n = nfv_dist_size();
    if (st) return cli_fail("visualize", st);
    vis_session s;
    memset(&s, 0, sizeof s);
    int rc = 0;
    st = vis_session_open(&s, a->device, a->model_path);
    if (!st && s.m->input_shape[0] != 1)
        st = nfv_fail(NFV_ERR_UNSUPPORTED, "%s: the model takes %d input channels; visualization supports 1",
                      a->model_path, s.m->input_shape[0]);
    if (!st) st = vis_session_targets(&s, a->texts, a->ntexts);
    int all = s.count, *all_text = NULL;
    nfv_target *all_targets = NULL;
    if (!st && a->mpi) st = copy_targets(&s, &all_targets, &all_text);
    if (!st && a->shard_n > 1) keep_shard(&s, a->shard_i, a->shard_n);
    if (!st) st = vis_session_background(&s, a->background);
    a->quiet = a->mpi;
    if (st) rc = cli_fail("visualize", st);
    else if (s.count > 0) rc = optimize_and_write(a, &s, &o);
    /* Under mpirun: once every rank wrote its targets, rank 0 reads them all
     * back (the bytes one process writes) for the objective lines and grids. */
    if (!rc && a->mpi && (st = nfv_dist_barrier())) rc = cli_fail("visualize", st);
    if (!rc && a->mpi && nfv_dist_rank() == 0) {
        memcpy(s.targets, all_targets, (size_t)all * sizeof *all_targets);
        memcpy(s.text_of, all_text, (size_t)all * sizeof *all_text);
        s.count = all;
        a->quiet = 0, a->resume = a->merging = 1, a->shard_n = 1;
        rc = optimize_and_write(a, &s, &o);
    }
    if (!rc && a->shard && a->shard_n > 1) rc = write_manifest(a);
    free(all_targets), free(all_text);
    vis_session_free(&s);
    return rc;
}

int cmd_visualize(int argc, char **argv) { return visualize_main(argc, argv, 0); }

static int visualize_main(int argc, char **argv, int merging)
{
    visualize_args a;
    memset(&a, 0, sizeof a);
    a.background = "template";
    a.merging = merging;
    const char *merge_dir = NULL;
    /* The line as given, for a shard's manifest (the take below reorders argv). */
    char **given = malloc(((size_t)argc + 1) * sizeof *given);
    if (!given) return cli_failf("visualize", "out of memory");
    memcpy(given, argv, (size_t)argc * sizeof *given);
    a.argc = argc, a.argv = given;
    if (vis_take_multi("visualize", "--target", &argc, argv, a.texts, &a.ntexts)) {
        free(given);
        return 2;
    }
    static const char *target_dummy; /* --target was taken out above; listed for --help */
    const cli_option own[] = {
        {"--model", CLI_STRING, &a.model_path, "FILE", "model (.safetensors) (required)"},
        {"--target", CLI_STRING, &target_dummy, "T",
         "unit to visualize, repeatable: LAYER:CHANNEL, LAYER:CHANNEL@z,y,x (or @ = centre), "
         "LAYER (mean a^2), logit:CLASS, logit:CLASS@z,y,x (class evidence of one cell of the map before flatten), "
         "contrast:CLASS[@z,y,x] (logit minus the mean of the others), LAYER:all, logit:all, contrast:all, "
         "output (a regression model's prediction; -output lowers it); '-' prefix minimizes (required)"},
        {"--out", CLI_STRING, &a.out, "DIR", "output directory (required)"},
        {"--shard", CLI_STRING, &a.shard, "I/N|auto",
         "only shard I of N of the targets (contiguous blocks of the expanded list; auto: the Slurm array task); "
         "writes DIR/shard-I-of-N.json for --merge"},
        {"--merge", CLI_STRING, &merge_dir, "DIR",
         "the shards' shared --out: check that its shard-I-of-N.json are all N shards of one run (same model bytes "
         "and options) and write the grids and lines one unsharded run writes, from their outputs"},
        {"--background", CLI_STRING, &a.background, "FILE|template|none",
         "volume under the overlay PNG (default template = Colin27 ch2bet)"},
        {"--device", CLI_STRING, &a.device, "DEV", "OpenCL device (see neurofv devices)"},
        {"--gif", CLI_FLAG, &a.gif, NULL,
         "also write DIR/<target>.gif: the optimization as orthogonal slices through the final volume's peak, "
         "one frame per snapshot (without --snapshots, 16 evenly spaced steps), at the final volume's scale"},
        {"--resume", CLI_FLAG, &a.resume, NULL,
         "skip targets whose outputs in DIR are all there (a pre-empted job run again with the same options)"},
    };
    vis_cli cli;
    if (vis_cli_init(&cli, "visualize", own, (int)(sizeof own / sizeof *own))) {
        free(given);
        return 1;
    }
    int r = cli_parse("visualize", "--model FILE --target T [--target T ...] --out DIR [options]",
                      "Optimize an input volume per target so that the unit's activation is as large as possible "
                      "(or small, with '-'), entirely on the device; write DIR/<target>.nii.gz (the model's "
                      "affine), _ortho.png, _mosaic.png, _overlay.png, <target>.json (objective per step), with --gif <target>.gif, and "
                      "a _grid.png per `all` sweep.  Without --batch, the batch is the largest (at most 8) "
                      "that fits the device's memory, or 1 where a few timed steps show batch 1 cheaper per sample "
                      "(runs of at least ten times the timing's cost; results do not depend on the batch); a batch "
                      "that does not fit is refused before the run.",
                      cli.opts, argc, argv, NULL, 0, NULL);
    int rc = r ? (r == 1 ? 0 : 2) : merge_dir ? merge_shards(merge_dir) : visualize(&a, &cli);
    vis_cli_free(&cli);
    free(given);
    return rc;
}
