/* Setup shared by `neurofv visualize` and `neurofv compare`: repeatable
 * options, the option table (the command's own options, then every option of
 * the visualization loop), the loop options from it, the device and model,
 * the targets, the background volume, and progress. */
#ifndef NEUROFV_CLI_VIS_SETUP_H
#define NEUROFV_CLI_VIS_SETUP_H

#include "cli.h"
#include "neurofv/vis.h"

/* At most this many values of one repeatable option (--target, --config). */
#define VIS_SETUP_MAX_MULTI 256

/* Pulls every "NAME X" / "NAME=X" out of argv (argc shrinks), values into
 * vals.  Returns 0, or 2 after printing the usage error. */
int vis_take_multi(const char *command, const char *name, int *argc, char **argv, const char **vals, int *nvals);

/* The option table of a command: its own options, then one string option
 * per entry of nfv_vis_option_table (vis_values[i], NULL when not given). */
typedef struct vis_cli {
    cli_option *opts;         /* ends with {NULL} */
    const char **vis_values;
    int nvis;
} vis_cli;

/* Returns 0, or 1 after printing "out of memory". */
int vis_cli_init(vis_cli *c, const char *command, const cli_option *own, int nown);
void vis_cli_free(vis_cli *c);
/* The loop options given on the command line, set onto o (not checked). */
nfv_status vis_cli_options(const vis_cli *c, nfv_vis_options *o);

/* What both commands load once the arguments are parsed. */
typedef struct vis_session {
    nfv_context *ctx;
    nfv_model *m;
    nfv_target *targets;   /* every target text expanded, in order */
    int *text_of;          /* (count) the index of the text each target came from */
    int count;
    nfv_volume background; /* under overlay PNGs; nx = 0: none */
} vis_session;

/* The OpenCL device (NULL: the default) and the model. */
nfv_status vis_session_open(vis_session *s, const char *device, const char *model_path);
/* Parses and expands every target text (LAYER:all, logit:all, ...). */
nfv_status vis_session_targets(vis_session *s, const char *const *texts, int ntexts);
/* "none", "template" (NFV_DEFAULT_TEMPLATE) or a volume file. */
nfv_status vis_session_background(vis_session *s, const char *background);
/* The background for nfv_vis_write: NULL when none. */
const nfv_volume *vis_session_overlay(const vis_session *s);
void vis_session_free(vis_session *s);

/* The value given for loop option `name` ("--batch"), or NULL. */
const char *vis_cli_value(const vis_cli *c, const char *name);

/* The device memory check before a run (nfv_vis_fit_batch): auto_batch
 * (no --batch given) lowers o->batch to the largest that fits and says so on
 * stderr with the numbers ("<command>: [<what>: ]batch 8 would need ...");
 * else a batch that does not fit is the error.  what may be NULL. */
nfv_status vis_fit_batch(const vis_session *s, const nfv_target *targets, int count, nfv_vis_options *o,
                         int auto_batch, const char *command, const char *what);
/* No --batch given, after vis_fit_batch: when the run is long enough
 * (nfv_vis_batch_worth_probing), time batch 1 against o->batch on the
 * options and the first target (nfv_vis_probe_batch), keep the cheaper and
 * say so on stderr with the numbers.  Not with --diversity, whose starts are
 * pushed apart within a batch. */
nfv_status vis_pick_batch(const vis_session *s, const nfv_target *targets, int count, nfv_vis_options *o,
                          const char *command, const char *what);

/* --resume: which targets' outputs under a directory are complete (read
 * back, not run) and which are left to run. */
typedef struct vis_resume {
    int *done;          /* (count) 1: complete */
    nfv_target *todo;   /* the others, in order */
    int ndone, ntodo;
} vis_resume;
/* Scans dir for every target (nothing is complete when resume is 0). */
nfv_status vis_resume_scan(vis_resume *r, const vis_session *s, const nfv_target *targets, int count,
                           const nfv_vis_options *o, const char *dir, int resume);
/* Rebuilds todo / ndone / ntodo after done[] changed. */
nfv_status vis_resume_todo(vis_resume *r, const nfv_target *targets, int count);
/* *all (count results, nfv_vis_results_free): the computed results of the
 * todo targets (moved out of computed, which is freed) and the complete
 * ones read back from dir. */
nfv_status vis_resume_results(const vis_resume *r, const vis_session *s, const nfv_target *targets, int count,
                              const nfv_vis_options *o, const char *dir, nfv_vis_result *computed,
                              nfv_vis_result **all);
void vis_resume_free(vis_resume *r);

/* nfv_vis_progress_fn drawing on a cli_progress (user): done steps over all
 * batches, with the batch and its mean objective. */
void vis_on_progress(void *user, int b, int nb, int step, int steps, const float *obj, int n);

#endif
