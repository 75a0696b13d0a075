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

/* nfv_vis_progress_fn drawing on a cli_progress (user): done steps over all
 * batches, with the batch and its mean objective. */
void vis_on_progress(void *user, int b, int nb, int step, int steps, const float *obj, int n);

#endif
