/* `neurofv explain`'s run state and its per-subject work, shared by
 * src/cli/cmd_explain.c (arguments, the run, the summary) and
 * src/cli/explain_subject.c (one subject: load, target, outputs in its own
 * space, scores, means). */
#ifndef NEUROFV_CLI_EXPLAIN_CLI_H
#define NEUROFV_CLI_EXPLAIN_CLI_H

#include "cli.h"
#include "neurofv/explain.h"
#include "neurofv/train.h"

#define MAX_PICTURES 16

typedef struct explain_args {
    const char *model_path, *input, *data, *split_name, *target, *methods, *out, *baseline, *cam_layer, *shard;
    const char *truth, *device, *vis;
    nfv_explain_options o;
    nfv_explain_method method[NFV_EXPLAIN_METHODS];
    int nmethods;
} explain_args;

/* One subject: the scan as read, on the model grid, its label and target. */
typedef struct subject {
    const char *path, *label;   /* label NULL: none (--input) */
    char stem[256];
    nfv_volume orig, pre;       /* pre: on the model grid (x of the model), its own affine */
    nfv_target target;
    int first;                  /* the first subject: its pictures go into the report */
} subject;

/* The run's state beyond the arguments. */
typedef struct explain_run {
    explain_args *a;
    nfv_context *ctx;
    nfv_model *m;
    float *baseline;            /* (D, H, W) or NULL: zeros */
    nfv_volume effect;          /* age-effect map on the model grid, nx = 0: none */
    nfv_volume *regions;        /* (classes) union of the class's lesion masks on the model grid (--vis) */
    double *mean_sum;           /* (methods, classes + 1, D*H*W): per class, last = all */
    int *mean_n;                /* (classes + 1) */
    int classes;
    nfv_explain_summary sum;
    FILE *subjects_csv;
    nfv_atomic_file subjects_af;
    char *pictures[MAX_PICTURES], *captions[MAX_PICTURES], *backgrounds[MAX_PICTURES]; /* backgrounds: NIfTI under the picture */
    int npictures;
    char report_dir[4096];      /* --out, or --out/shard-I-of-N: a shard's means and report do not clobber another's */
} explain_run;

/* Under mpirun (src/cli/explain_dist.c): where rank `rank` writes its rows
 * of subjects.csv; every rank's sums added over the ranks (count: subjects;
 * grid: this rank's model grid, nx = 0 when it explained none); rank 0
 * joins the rows in rank order into subjects.csv. */
void explain_subjects_part(const explain_run *r, int rank, char *path, size_t cap);
nfv_status explain_reduce_ranks(explain_run *r, double *input_sum, float *brain, size_t per, int *count,
                                const nfv_volume *grid);
nfv_status explain_join_subjects(const explain_run *r);

/* The model grid as a preprocessing target. */
nfv_grid model_grid(const nfv_model *m);
/* Read s->path and bring it to the model grid (s->orig, s->pre). */
nfv_status load_subject(const nfv_model *m, subject *s);
void free_subject(subject *s);
/* s->target from --target: "label", "predicted" (from output, the model's
 * outputs for s), "output" on regression, or a target text. */
nfv_status resolve_target(explain_run *r, subject *s, const float *output);
/* The subject's class index for the mean maps (r->classes: none). */
int class_of(const explain_run *r, const subject *s);
/* A picture (relative to the report folder) with its caption and the NIfTI under it in the viewer. */
nfv_status add_picture(explain_run *r, const char *rel, const char *caption, const char *background);
/* One subject's map of method k (D, H, W on the model grid): NIfTI and PNG
 * in its own space, scores against its lesion, its row of subjects.csv. */
nfv_status subject_outputs(explain_run *r, const subject *s, int k, const float *map, float objective);
/* Spearman of |maps| between every pair of methods for one subject. */
void add_spearman(explain_run *r, const subject *s, float *const *maps);
/* Adds a subject's map of method k to its class's and the overall mean. */
void add_mean(explain_run *r, const subject *s, int k, const float *map);
/* Sagittal | coronal | axial through the largest |v|, over background. */
nfv_status explain_overlay_png(const nfv_volume *v, const nfv_volume *background, const char *path);

#endif
