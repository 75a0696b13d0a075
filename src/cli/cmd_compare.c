/* `neurofv compare`: run named regularization configurations on the same
 * targets and seeds and write results.csv, results.md and index.html. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "cli.h"
#include "compare_cli.h"
#include "neurofv/dist.h"
#include "neurofv/render.h"
#include "compare_mis.h"
#include "base/clock.h"

NFV_COMMAND(compare, "compare", "Compare regularization configurations of feature visualization (CSV/MD/HTML report)")

/* DIR/<stem>_match.png: the visualization's orthogonal slices through the
 * world point (mm) where its own shape template matched best. */
static nfv_status write_match_png(const nfv_volume *v, const double at[3], const char *dir, const char *stem)
{
    nfv_render_options ro;
    nfv_render_options_default(&ro);
    nfv_image im;
    memset(&im, 0, sizeof im);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s_match.png", dir, stem);
    nfv_status st = nfv_render_ortho(v, &ro, at, &im);
    if (!st) st = nfv_image_write_png(path, &im);
    nfv_image_free(&im);
    return st ? nfv_fail_context(st, "%s", path) : NFV_OK;
}

/* "1,2,3" -> seeds; NULL -> the one fallback seed. */
static nfv_status parse_seeds(const char *text, unsigned long long fallback, unsigned long long **out, int *n)
{
    *n = 1;
    if (text)
        for (const char *p = text; *p; p++) *n += *p == ',';
    if (*n > 64) return nfv_fail(NFV_ERR_INVALID_ARG, "--seeds: at most 64 seeds, got %d", *n);
    *out = malloc((size_t)*n * sizeof **out);
    if (!*out) return nfv_fail(NFV_ERR_NO_MEMORY, "--seeds: out of memory");
    if (!text) {
        (*out)[0] = fallback;
        return NFV_OK;
    }
    const char *p = text;
    for (int i = 0; i < *n; i++) {
        char *end = NULL;
        errno = 0;
        if (*p >= '0' && *p <= '9') (*out)[i] = strtoull(p, &end, 10);
        if (!end || errno || (*end && *end != ',') || (*end == ',' && i == *n - 1))
            return nfv_fail(NFV_ERR_INVALID_ARG, "--seeds expects S1,S2,... (unsigned integers), got \"%s\"", text);
        for (int j = 0; j < i; j++)
            if ((*out)[j] == (*out)[i])
                return nfv_fail(NFV_ERR_INVALID_ARG, "--seeds: seed %llu is given twice", (*out)[i]);
        p = end + (*end == ',');
    }
    return NFV_OK;
}

/* The default configurations, each --config NAME=OPTIONS adding or replacing
 * one, then only those named by --configs.  Returns 0 or 1 (error printed). */
static int select_configs(compare_state *cs)
{
    const compare_args *a = cs->a;
    nfv_status st = nfv_compare_default_configs(&cs->configs, &cs->nconfigs);
    if (st) return cli_fail("compare", st);
    for (int i = 0; i < a->ncfg_args; i++) {
        const char *arg = a->cfg_args[i], *eq = strchr(arg, '=');
        if (!eq || eq == arg || eq - arg >= 64 || strlen(eq + 1) >= sizeof cs->configs[0].options)
            return cli_failf("compare", "--config expects NAME=OPTIONS (name under 64, options under %zu characters, "
                             "e.g. 'l2=--l2 0.5'), got \"%.80s\"", sizeof cs->configs[0].options, arg);
        size_t len = (size_t)(eq - arg);
        int c = 0;
        while (c < cs->nconfigs && (strlen(cs->configs[c].name) != len || strncmp(cs->configs[c].name, arg, len))) c++;
        if (c == cs->nconfigs) {
            nfv_compare_config *p = realloc(cs->configs, (size_t)(cs->nconfigs + 1) * sizeof *p);
            if (!p) return cli_failf("compare", "out of memory");
            cs->configs = p;
            cs->nconfigs++;
            snprintf(cs->configs[c].name, sizeof cs->configs[c].name, "%.*s", (int)len, arg);
        }
        snprintf(cs->configs[c].options, sizeof cs->configs[c].options, "%s", eq + 1);
        /* Checked even when --configs does not select it: it was written. */
        nfv_vis_options o = cs->base;
        st = nfv_vis_options_parse(&o, cs->configs[c].options);
        if (!st) st = nfv_vis_options_check(&o);
        if (st) return cli_failf("compare", "configuration %s: %s", cs->configs[c].name, nfv_error_message());
    }
    if (!a->only) return 0;
    int w = 0;
    for (int c = 0; c < cs->nconfigs; c++) {
        const char *p = a->only;
        int keep = 0;
        size_t len = strlen(cs->configs[c].name);
        while (*p) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            keep |= l == len && !strncmp(p, cs->configs[c].name, l);
            p += l + (e ? 1 : 0);
        }
        if (keep) cs->configs[w++] = cs->configs[c];
    }
    if (!w) return cli_failf("compare", "--configs %s names no configuration", a->only);
    cs->nconfigs = w;
    return 0;
}

/* Without --configs, the MACO configurations are left out for a model with
 * no cohort spectrum (named ones fail with the fix). */
static void drop_maco(compare_state *cs)
{
    int w = 0, dropped = 0;
    for (int c = 0; c < cs->nconfigs; c++)
        if (strstr(cs->configs[c].options, "--param maco")) dropped++;
        else cs->configs[w++] = cs->configs[c];
    cs->nconfigs = w;
    if (dropped)
        fprintf(stderr, "compare: %d MACO configuration(s) left out: %s has no cohort spectrum (add it with neurofv "
                        "spectrum --data CSV --model MODEL)\n", dropped, cs->a->model_path);
}

/* The options of configuration c: compare's own, then the configuration's. */
static nfv_status config_options(const compare_state *cs, int c, nfv_vis_options *o)
{
    *o = cs->base;
    NFV_TRY(nfv_vis_options_parse(o, cs->configs[c].options));
    return nfv_vis_options_check(o);
}

/* Real lesions per class scored by the truth's scorer (their margins are
 * the most a picture's can be expected to reach). */
#define REFERENCE_LESIONS 10

/* What the cohort's real lesions score, printed, for the report. */
static nfv_status truth_reference(compare_state *cs)
{
    cs->reference = calloc((size_t)cs->truth.count, sizeof *cs->reference);
    if (!cs->reference) return nfv_fail(NFV_ERR_NO_MEMORY, "compare: out of memory");
    NFV_TRY(nfv_truth_reference(cs->s.m, &cs->truth, cs->a->truth_dir, REFERENCE_LESIONS, cs->reference));
    for (int c = 0; c < cs->truth.count; c++) {
        const nfv_truth_reference_row *r = &cs->reference[c];
        if (r->subjects)
            printf("real %-10s lesions: %d/%d recovered, %d/%d margin > %.2f; own NCC %.3f, margin %.3f (min %.3f)\n",
                   r->name, r->recovered, r->subjects, r->clear, r->subjects, NFV_TRUTH_CLEAR_MARGIN, r->own_median,
                   r->margin_median, r->margin_min);
    }
    fflush(stdout);
    return NFV_OK;
}

/* What each configuration's mask alone scores (configurations without a
 * mask have none), printed, for the report. */
static nfv_status mask_controls(compare_state *cs)
{
    cs->masks = calloc((size_t)cs->nconfigs, sizeof *cs->masks);
    if (!cs->masks) return nfv_fail(NFV_ERR_NO_MEMORY, "compare: out of memory");
    for (int c = 0; c < cs->nconfigs; c++) {
        nfv_vis_options o;
        NFV_TRY(config_options(cs, c, &o));
        if (!o.mask[0]) continue;
        nfv_mask_control *mc = &cs->masks[cs->nmasks];
        mc->score = calloc((size_t)cs->truth.count, sizeof *mc->score);
        if (!mc->score) return nfv_fail(NFV_ERR_NO_MEMORY, "compare: out of memory");
        cs->nmasks++;
        snprintf(mc->config, sizeof mc->config, "%s", cs->configs[c].name);
        snprintf(mc->mask, sizeof mc->mask, "%s", o.mask);
        NFV_TRY(nfv_truth_mask_control(cs->s.m, &cs->truth, o.mask, mc->score));
        printf("mask alone %-14s (%s):", mc->config, mc->mask);
        for (int s = 0; s < cs->truth.count; s++) printf(" %s %.3f", cs->truth.names[s], mc->score[s]);
        printf("\n");
    }
    fflush(stdout);
    return NFV_OK;
}

/* The class's own shape: logit:CLASS or contrast:CLASS (@cell or not), CLASS
 * a shape name (maximized); -1 when none. */
static int own_shape(const nfv_truth *truth, const char *target)
{
    const char *cls = !strncmp(target, "logit:", 6) ? target + 6 : !strncmp(target, "contrast:", 9) ? target + 9 : NULL;
    size_t len = cls ? strcspn(cls, "@") : 0;
    for (int s = 0; s < truth->count; s++)
        if (cls && len == strlen(truth->names[s]) && !strncmp(cls, truth->names[s], len)) return s;
    return -1;
}

/* Concept recovery of one row: NCC of the shown volume with every shape; for
 * a class with a shape, the margin and (write) the slices through its best match. */
static nfv_status score_truth(compare_state *cs, const nfv_volume *shown, const char *dir, int write,
                              nfv_compare_row *row)
{
    const nfv_truth *truth = &cs->truth;
    const double *scores = cs->scores;
    row->has_truth = 1;
    NFV_TRY(nfv_truth_scores(truth, shown, cs->scores, cs->positions));
    int best = 0, own = own_shape(truth, row->target);
    for (int s = 0; s < truth->count; s++)
        if (scores[s] > scores[best]) best = s;
    snprintf(row->best_shape, sizeof row->best_shape, "%s", truth->names[best]);
    row->best_score = scores[best];
    if (own < 0) return NFV_OK;
    snprintf(row->truth_class, sizeof row->truth_class, "%s", truth->names[own]);
    row->own_score = scores[own];
    row->recovered = own == best;
    double other = -2.0; /* NCC is in [-1, 1] */
    for (int s = 0; s < truth->count; s++)
        if (s != own && scores[s] > other) other = scores[s];
    row->margin = truth->count > 1 ? scores[own] - other : NAN;
    const int *p = cs->positions[own];
    for (int d = 0; d < 3; d++)
        row->own_mm[d] =
            shown->affine[d][0] * p[0] + shown->affine[d][1] * p[1] + shown->affine[d][2] * p[2] + shown->affine[d][3];
    return write ? write_match_png(shown, row->own_mm, dir, row->stem) : NFV_OK;
}

/* One row: the result's numbers, its outputs under dir (write; not for a
 * result read back by --resume), its HF share and, with --truth, concept
 * recovery (of the change for a template start).  rel: dir as seen from the
 * report. */
static nfv_status fill_row(compare_state *cs, int c, const char *rel, const char *dir, const nfv_vis_options *o,
                           const nfv_vis_result *res, int write, nfv_compare_row *row)
{
    snprintf(row->config, sizeof row->config, "%s", cs->configs[c].name);
    if (snprintf(row->dir, sizeof row->dir, "%s", rel) >= (int)sizeof row->dir)
        return nfv_fail(NFV_ERR_INVALID_ARG, "compare: the run folder %s seen from --out is too long (over %zu)", rel,
                        sizeof row->dir - 1);
    row->seed = o->seed;
    snprintf(row->target, sizeof row->target, "%s", res->target.name);
    nfv_target_stem(&res->target, row->stem, sizeof row->stem);
    row->objective = res->objective;
    row->objective_clean = res->objective_clean;
    row->seconds = res->seconds;
    const nfv_volume *shown = res->change.nx ? &res->change : &res->volume;
    if (write) NFV_TRY(nfv_vis_write(res, o, vis_session_overlay(&cs->s), dir));
    NFV_TRY(nfv_highfreq_share(cs->s.ctx, shown, 0.25, &row->hf_share));
    /* The image the model saw (not a template start's change) against the subjects. */
    for (int t = 0; cs->mis.n && t < cs->s.count; t++)
        if (!strcmp(cs->s.targets[t].name, res->target.name))
            NFV_TRY(compare_mis_score(&cs->mis, cs->s.ctx, cs->s.m, cs->s.targets, t, &res->volume, row));
    return cs->truth.count ? score_truth(cs, shown, dir, write, row) : NFV_OK;
}

/* "<sub> mean objective ..., mean HF share ...[, classes recovered k/K] (s)". */
static void print_run(const compare_state *cs, const char *sub, double secs)
{
    int count = cs->s.count, rec = 0, tot = 0;
    double mo = 0, mh = 0;
    for (int i = cs->nrows - count; i < cs->nrows; i++) {
        mo += cs->rows[i].objective;
        mh += cs->rows[i].hf_share;
        if (cs->rows[i].truth_class[0]) {
            tot++;
            rec += cs->rows[i].recovered;
        }
    }
    if (cs->quiet) return;
    printf("%-16s mean objective %.4g, mean HF share %.3f", sub, mo / count, mh / count);
    if (cs->truth.count) printf(", classes recovered %d/%d", rec, tot);
    printf(" (%.1f s)\n", secs);
    fflush(stdout);
}

/* --resume: which targets of one run are complete under dir: all that
 * nfv_vis_write writes and, for a class with its own shape, <stem>_match.png. */
static nfv_status resume_scan(const compare_state *cs, const nfv_vis_options *o, const char *dir, vis_resume *rs)
{
    NFV_TRY(vis_resume_scan(rs, &cs->s, cs->s.targets, cs->s.count, o, dir, cs->a->resume || cs->reread));
    for (int i = 0; i < cs->s.count; i++) {
        if (!rs->done[i] || !cs->truth.count || own_shape(&cs->truth, cs->s.targets[i].name) < 0) continue;
        char stem[160], path[4400];
        nfv_target_stem(&cs->s.targets[i], stem, sizeof stem);
        snprintf(path, sizeof path, "%s/%s_match.png", dir, stem);
        FILE *f = fopen(path, "rb");
        if (f) fclose(f);
        else rs->done[i] = 0;
    }
    return vis_resume_todo(rs, cs->s.targets, cs->s.count);
}

/* Visualizes the targets left to run of one run (all without --resume). */
static nfv_status visualize_todo(compare_state *cs, int run, const char *sub, const nfv_vis_options *o,
                                 const vis_resume *rs, nfv_vis_result **computed)
{
    *computed = NULL;
    if ((cs->a->merging || cs->reread) && rs->ntodo)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %d of %d target(s) have no complete outputs in %s/%s (did every shard "
                        "finish?)", sub, rs->ntodo, cs->s.count, cs->runs, sub);
    if (cs->a->resume && !cs->a->merging)
        fprintf(stderr, "compare: --resume: %s: %d of %d target(s) complete, %d to run\n", sub, rs->ndone,
                cs->s.count, rs->ntodo);
    if (!rs->ntodo) return NFV_OK;
    char label[160];
    snprintf(label, sizeof label, "compare %s (run %d/%d, %d target(s))", sub, run + 1, cs->nconfigs * cs->nseeds,
             rs->ntodo);
    cli_progress bar;
    cli_progress_start(&bar, label);
    /* The first run estimates the whole comparison (runs of other
     * configurations may differ in steps: an approximation); later runs are
     * covered by the ETA line printed after each run. */
    if (run == 0) bar.repeat = cs->nconfigs * cs->nseeds;
    else bar.est.printed = 1;
    nfv_status st = nfv_visualize(cs->s.ctx, cs->s.m, rs->todo, rs->ntodo, o, vis_on_progress, &bar, computed);
    cli_progress_end(&bar);
    return st;
}

/* Run `run` = configuration run / nseeds with seed run % nseeds: visualize
 * every target (with --resume, those not complete), write the outputs under
 * RUNS/<config>[/seed<S>] (RUNS: --runs, else --out), add rows (complete
 * targets' from their files). */
int compare_run_config(compare_state *cs, int run)
{
    int c = run / cs->nseeds;
    nfv_vis_options o;
    (void)config_options(cs, c, &o); /* every configuration was checked before the first run */
    o.batch = cs->batches[c];
    /* --seeds replaces any --seed, also one inside a configuration. */
    if (cs->a->seeds_text) o.seed = cs->seeds[run % cs->nseeds];
    char sub[96], dir[4200], rel[4200];
    if (cs->nseeds > 1) snprintf(sub, sizeof sub, "%s/seed%llu", cs->configs[c].name, o.seed);
    else snprintf(sub, sizeof sub, "%s", cs->configs[c].name);
    snprintf(dir, sizeof dir, "%s/%s", cs->runs, sub);
    if (!strcmp(cs->runs_rel, ".")) snprintf(rel, sizeof rel, "%s", sub);
    else snprintf(rel, sizeof rel, "%s/%s", cs->runs_rel, sub);
    vis_resume rs;
    nfv_vis_result *computed = NULL, *res = NULL;
    double t0 = nfv_seconds();
    nfv_status st = resume_scan(cs, &o, dir, &rs);
    if (!st && rs.ntodo && cs->untimed[c]) {
        /* Once per configuration, when it first has work (not on a resumed
         * run with nothing left): its seeds share the batch. */
        char what[96];
        snprintf(what, sizeof what, "configuration %s", cs->configs[c].name);
        st = vis_pick_batch(&cs->s, rs.todo, rs.ntodo, &o, "compare", what);
        cs->batches[c] = o.batch;
        cs->untimed[c] = 0;
    }
    if (!st) st = visualize_todo(cs, run, sub, &o, &rs, &computed);
    if (!st) st = vis_resume_results(&rs, &cs->s, cs->s.targets, cs->s.count, &o, dir, computed, &res);
    if (st) {
        vis_resume_free(&rs);
        return cli_failf("compare", "configuration %s: %s", cs->configs[c].name, nfv_error_message());
    }
    double secs = nfv_seconds() - t0;
    for (int i = 0; i < cs->s.count && !st; i++)
        st = fill_row(cs, c, rel, dir, &o, &res[i], !rs.done[i], &cs->rows[cs->nrows++]);
    if (!st && cs->mis.n) compare_mis_contrast(&cs->mis, cs->s.targets, cs->s.count, &cs->rows[cs->nrows - cs->s.count]);
    nfv_vis_results_free(res, cs->s.count);
    vis_resume_free(&rs);
    if (st) return cli_fail("compare", st);
    print_run(cs, sub, secs);
    int runs = cs->nconfigs * cs->nseeds;
    double el = nfv_seconds() - cs->t0;
    fprintf(stderr, "compare: %d/%d runs (configuration x seed) done, %.0fs, ETA %.0fs\n", run + 1, runs, el,
            el * (runs - run - 1) / (run + 1));
    return 0;
}

/* Over the seeds: how often each configuration drew every class. */
static void print_seed_summary(const compare_state *cs)
{
    for (int c = 0; c < cs->nconfigs; c++) {
        const char *name = cs->configs[c].name;
        char text[512];
        int rec = 0, tot = 0;
        for (int i = 0; i < cs->nrows; i++)
            if (!strcmp(cs->rows[i].config, name) && cs->rows[i].truth_class[0]) {
                tot++;
                rec += cs->rows[i].recovered;
            }
        nfv_compare_recovery_text(name, cs->rows, cs->nrows, text, sizeof text);
        printf("%-16s %d seeds: classes recovered %d/%d; every class recovered in %s\n", name, cs->nseeds, rec, tot,
               text);
    }
}

/* Options, seeds and configurations (all checked before any work), then the
 * device, model, targets, truth and background. */
static int prepare(compare_state *cs, const vis_cli *cli)
{
    int given_batch = vis_cli_value(cli, "--batch") != NULL;
    const compare_args *a = cs->a;
    nfv_vis_options_default(&cs->base);
    nfv_status st = vis_cli_options(cli, &cs->base);
    if (!st) st = parse_seeds(a->seeds_text, cs->base.seed, &cs->seeds, &cs->nseeds);
    if (st) return cli_fail("compare", st);
    if (select_configs(cs)) return 1;
    for (int c = 0; c < cs->nconfigs; c++) {
        nfv_vis_options o;
        if (config_options(cs, c, &o))
            return cli_failf("compare", "configuration %s: %s", cs->configs[c].name, nfv_error_message());
    }
    st = vis_session_open(&cs->s, a->device, a->model_path);
    if (!st && !cs->s.m->spectrum && !a->only) drop_maco(cs);
    if (!st && cs->s.m->input_shape[0] != 1)
        st = nfv_fail(NFV_ERR_UNSUPPORTED, "%s: the model takes %d input channels; visualization supports 1",
                      a->model_path, cs->s.m->input_shape[0]);
    if (!st) st = vis_session_targets(&cs->s, a->texts, a->ntexts);
    if (!st && a->truth_dir) st = nfv_truth_load(cs->s.m, a->truth_dir, &cs->truth);
    /* The controls only where a report is written (under mpirun, rank 0). */
    int reports = !cs->mpi || nfv_dist_rank() == 0;
    if (!st && cs->truth.count && reports) st = truth_reference(cs);
    if (!st && cs->truth.count && reports) st = mask_controls(cs);
    if (!st) st = vis_session_background(&cs->s, a->background);
    if (!st && a->score)
        st = compare_mis_open(&cs->mis, cs->s.ctx, cs->s.m, cs->s.targets, cs->s.count, a->data, a->mis_split,
                              a->mis_subjects, a->mis_pairs, a->mis_layer, a->focus_radius);
    if (st) return cli_fail("compare", st);
    /* Every configuration's batch against the device before any work:
     * without --batch (here or in the configuration) the largest that fits,
     * and batch 1 instead where it times cheaper (vis_pick_batch, at the
     * configuration's first run). */
    cs->batches = calloc((size_t)cs->nconfigs, sizeof *cs->batches);
    cs->untimed = calloc((size_t)cs->nconfigs, sizeof *cs->untimed);
    if (!cs->batches || !cs->untimed) return cli_failf("compare", "out of memory");
    for (int c = 0; c < cs->nconfigs; c++) {
        nfv_vis_options o;
        char what[96];
        (void)config_options(cs, c, &o);
        snprintf(what, sizeof what, "configuration %s", cs->configs[c].name);
        int auto_batch = !given_batch && !strstr(cs->configs[c].options, "--batch");
        if ((st = vis_fit_batch(&cs->s, cs->s.targets, cs->s.count, &o, auto_batch, "compare", what)))
            return cli_fail("compare", st);
        cs->batches[c] = o.batch;
        cs->untimed[c] = auto_batch;
    }
    /* After every check (a refused run leaves no folder): the report in --out
     * links to the runs by a relative path, so the two folders move together. */
    cs->runs = a->runs ? a->runs : a->out;
    cs->report = a->out;
    if (cs->shard_n > 1 && !cs->mpi) {
        snprintf(cs->report_buf, sizeof cs->report_buf, "%s/shard-%d-of-%d", a->out, cs->shard_i, cs->shard_n);
        cs->report = cs->report_buf;
    }
    st = nfv_mkdirs(cs->report);
    if (!st) st = nfv_mkdirs(cs->runs);
    if (!st) st = nfv_relative_dir(cs->report, cs->runs, cs->runs_rel, sizeof cs->runs_rel);
    if (st) return cli_fail("compare", st);
    size_t shapes = (size_t)(cs->truth.count ? cs->truth.count : 1);
    cs->rows = calloc((size_t)cs->nconfigs * cs->nseeds * cs->s.count, sizeof *cs->rows);
    cs->scores = calloc(shapes, sizeof *cs->scores);
    cs->positions = calloc(shapes, sizeof *cs->positions);
    if (!cs->rows || !cs->scores || !cs->positions) return cli_failf("compare", "out of memory");
    return 0;
}

static int compare(const compare_args *a, const vis_cli *cli)
{
    if (!a->model_path || !a->out || !a->ntexts)
        return cli_failf("compare", "--model, --target and --out are required (see neurofv compare --help)");
    if (a->score && (strcmp(a->score, "mis") || !a->data))
        return cli_failf("compare", "--score expects mis, with --data CSV (the subjects), got \"%s\"%s", a->score,
                         a->data ? "" : " without --data");
    if (!(a->focus_radius > 0))
        return cli_failf("compare", "--focus-radius must be > 0 mm (got %g)", a->focus_radius);
    if (a->mis_subjects < 8 || a->mis_pairs < 1)
        return cli_failf("compare", "--mis-subjects must be >= 8 and --mis-pairs >= 1 (got %d, %d)", a->mis_subjects,
                         a->mis_pairs);
    compare_state cs;
    memset(&cs, 0, sizeof cs);
    cs.a = a;
    int rc = compare_select_shard(&cs);
    if (!rc) rc = prepare(&cs, cli);
    cs.t0 = nfv_seconds();
    int runs = cs.nconfigs * cs.nseeds;
    cs.quiet = cs.mpi;
    for (int run = 0; run < runs && !rc; run++)
        if (nfv_shard_contains(run, runs, cs.shard_i, cs.shard_n)) rc = compare_run_config(&cs, run);
    if (!rc && cs.mpi) rc = compare_mpi_gather_runs(&cs);
    if (!rc && cs.mpi && nfv_dist_rank() != 0) rc = -1; /* rank 0 reports */
    if (!rc && cs.truth.count && cs.nseeds > 1) print_seed_summary(&cs);
    nfv_status st;
    nfv_truth_controls controls = {cs.truth.count ? &cs.truth : NULL, cs.reference, cs.masks, cs.nmasks};
    if (!rc && (st = nfv_compare_write_report(cs.report, a->model_path, cs.configs, cs.nconfigs, cs.rows, cs.nrows,
                                                 vis_session_overlay(&cs.s), &controls)))
        rc = cli_fail("compare", st);
    if (!rc && cs.shard_n > 1 && !cs.mpi) rc = compare_write_manifest(&cs);
    if (!rc) fprintf(stderr, "compare: wrote %s/index.html, results.csv, results.md\n", cs.report);
    if (rc < 0) rc = 0;
    free(cs.scores);
    free(cs.positions);
    nfv_truth_free(&cs.truth);
    free(cs.reference);
    for (int i = 0; i < cs.nmasks; i++) free(cs.masks[i].score);
    free(cs.masks);
    compare_mis_free(&cs.mis);
    vis_session_free(&cs.s);
    free(cs.rows);
    free(cs.seeds);
    free(cs.configs);
    free(cs.batches);
    free(cs.untimed);
    return rc;
}

int cmd_compare(int argc, char **argv) { return compare_main(argc, argv, 0); }

int compare_main(int argc, char **argv, int merging)
{
    compare_args a;
    memset(&a, 0, sizeof a);
    a.background = "template";
    a.merging = merging;
    /* The line as given, for a shard's manifest (the takes below reorder argv). */
    char **given = malloc(((size_t)argc + 1) * sizeof *given);
    if (!given) return cli_failf("compare", "out of memory");
    memcpy(given, argv, (size_t)argc * sizeof *given);
    a.argc = argc, a.argv = given;
    a.mis_subjects = 64;
    a.mis_pairs = 256;
    a.focus_radius = 24;
    a.mis_split = "test";
    if (vis_take_multi("compare", "--target", &argc, argv, a.texts, &a.ntexts) ||
        vis_take_multi("compare", "--config", &argc, argv, a.cfg_args, &a.ncfg_args)) {
        free(given);
        return 2;
    }
    static const char *dummy_t, *dummy_c; /* taken out above; listed for --help */
    const cli_option own[] = {
        {"--model", CLI_STRING, &a.model_path, "FILE", "model (.safetensors) (required)"},
        {"--target", CLI_STRING, &dummy_t, "T", "target(s), repeatable, as for visualize (required)"},
        {"--out", CLI_STRING, &a.out, "DIR", "the report's folder: index.html, results.csv, results.md (required)"},
        {"--runs", CLI_STRING, &a.runs, "RUNS",
         "where each run's outputs go (float32 NIfTI, PNGs, logs, the viewer's scripts), as RUNS/<config>[/seed<S>]/; "
         "the report links to them relatively, so keep both folders together (default: DIR)"},
        {"--truth", CLI_STRING, &a.truth_dir, "SYNTH_DIR",
         "a `neurofv synth --task lesion` output: score concept recovery of logit:CLASS targets "
         "against its shapes (at the cohort's smallest, middle and largest lesion size when cohort.json gives them, "
         "else shapes/<CLASS>.nii.gz), the shape and a one-voxel halo inside mask.nii.gz; prints and reports what "
         "its real lesion masks (lesion_masks/, 10 a class, test subjects first) and each configuration's --mask "
         "alone score the same way"},
        {"--config", CLI_STRING, &dummy_c, "NAME=OPTIONS",
         "add or override a configuration, repeatable (e.g. --config 'l2=--l2 0.5'); defaults: "
         "none, l2, tv, blur, robust, fourier, fourier+robust, all, all-no-mask, maco, maco+robust (maco: the model "
         "needs its cohort spectrum, see neurofv spectrum)"},
        {"--configs", CLI_STRING, &a.only, "A,B,...", "run only these configurations (by name)"},
        {"--seeds", CLI_STRING, &a.seeds_text, "S1,S2,...",
         "run every configuration once per seed (outputs in RUNS/<config>/seed<S>/); the report "
         "counts, per configuration, the seeds in which every class is recovered (default: the one "
         "--seed)"},
        {"--background", CLI_STRING, &a.background, "FILE|template|none",
         "volume under the overlay PNGs (default template = Colin27 ch2bet)"},
        {"--score", CLI_STRING, &a.score, "mis",
         "also score each visualization without ground truth: pairs of real subjects (--data), one from the top and "
         "one from the bottom quartile of the target's activation; the one whose best match anywhere to the pattern "
         "around the picture's focus is closer is predicted to activate more; the share correct (0.5 = chance) "
         "with a Wilson 95 % interval; beside it the focus share and the stretch (the "
         "picture's objective past the cohort's: 1 = as far as its strongest subject)"},
        {"--data", CLI_STRING, &a.data, "CSV", "--score mis: the subjects (path,label[,split])"},
        {"--mis-split", CLI_STRING, &a.mis_split, "SPLIT", "--score mis: rows used: train, val, test, all (default test)"},
        {"--mis-subjects", CLI_INT, &a.mis_subjects, "N", "--score mis: at most N subjects, evenly spaced (default 64)"},
        {"--mis-pairs", CLI_INT, &a.mis_pairs, "P", "--score mis: strong/weak pairs per visualization (default 256)"},
        {"--mis-layer", CLI_STRING, &a.mis_layer, "LAYER",
         "--score mis: the (C, D, H, W) layer whose channel means the reported feature term (mis_act) compares "
         "(default: the last such layer before each target's; a layer at or after a target's: none)"},
        {"--focus-radius", CLI_FLOAT, &a.focus_radius, "MM",
         "--score mis: the focus share's ball (default 24): the share of what a picture does to its unit that the "
         "ball around its densest attribution carries, pasted into the weakly activating subjects; also the "
         "half-side of the box around it that MIS searches for in each subject"},
        {"--device", CLI_STRING, &a.device, "DEV", "OpenCL device"},
        {"--resume", CLI_FLAG, &a.resume, NULL,
         "skip configuration x seed x target runs whose outputs in DIR are all there (a pre-empted job run again "
         "with the same options); the report is the same as an uninterrupted run's"},
        {"--shard", CLI_STRING, &a.shard, "I/N|auto",
         "only shard I of N of the runs (configuration x seed, contiguous blocks; auto: the Slurm array task); "
         "outputs in RUNS as usual, this shard's report and shard.json in DIR/shard-I-of-N/"},
        {"--merge", CLI_FLAG, &a.merge, NULL,
         "compare --merge DIR/shard-1-of-N ... --out OUT: check that the folders are all N shards of one run (same "
         "model bytes and options) and write the report one unsharded run would have written to OUT, from the "
         "shards' outputs (nothing is recomputed)"},
    };
    vis_cli cli;
    if (vis_cli_init(&cli, "compare", own, (int)(sizeof own / sizeof *own))) {
        free(given);
        return 1;
    }
    const char *dirs[64];
    int ndirs = 0;
    int r = cli_parse("compare", "--model FILE --target T [...] --out DIR [--runs RUNS] [--truth SYNTH_DIR] [--config NAME=OPTS ...]",
                      "Run every regularization configuration on the same targets and seeds (the visualization "
                      "options given here apply to all, before each configuration's own), write RUNS/<config>/ "
                      "outputs (RUNS = --runs, else DIR) and DIR/results.csv, results.md, index.html: objective reached, objective without "
                      "transforms, high-frequency energy share and, with --truth, concept recovery.  Under mpirun "
                      "(a build with MPI=1) the runs are split over the ranks and rank 0 writes the report.",
                      cli.opts, argc, argv, dirs, 64, &ndirs);
    int rc;
    if (r) rc = r == 1 ? 0 : 2;
    else if (a.merge) rc = compare_merge_shards(dirs, ndirs, a.out);
    else if (ndirs) rc = cli_failf("compare", "unexpected argument \"%s\" (folders are for --merge)", dirs[0]);
    else rc = compare(&a, &cli);
    vis_cli_free(&cli);
    free(given);
    return rc;
}
