/* `neurofv compare`'s state, shared by src/cli/cmd_compare.c (options,
 * runs, report) and src/cli/compare_shards.c (Slurm shards, their merge and
 * the split over MPI ranks). */
#ifndef NEUROFV_CLI_COMPARE_CLI_H
#define NEUROFV_CLI_COMPARE_CLI_H

#include "neurofv/compare.h"
#include "neurofv/vis.h"
#include "compare_mis.h"
#include "vis_setup.h"

typedef struct compare_args {
    const char *model_path, *out, *runs, *device, *truth_dir, *only, *background, *seeds_text;
    const char *texts[VIS_SETUP_MAX_MULTI];    /* --target */
    const char *cfg_args[VIS_SETUP_MAX_MULTI]; /* --config NAME=OPTIONS */
    int ntexts, ncfg_args;
    int resume;                                /* skip (configuration, seed, target)s whose outputs are complete */
    const char *score, *data, *mis_split;      /* --score mis --data CSV [--mis-split S] */
    const char *mis_layer;                     /* --mis-layer NAME: the feature term's layer (NULL: default) */
    int mis_subjects, mis_pairs;
    float focus_radius;                        /* --focus-radius MM: the focus share's ball */
    const char *shard;                         /* --shard I/N|auto */
    int merge;                                 /* --merge DIR...: the positional folders are shards' reports */
    int merging;                               /* replaying shards' command line: every result must be on disk */
    int argc;                                  /* the command line as given (for a shard's manifest) */
    char **argv;
} compare_args;

/* Everything a run of the configurations reads and fills. */
typedef struct compare_state {
    const compare_args *a;
    nfv_vis_options base;          /* the options given to compare itself */
    nfv_compare_config *configs;
    int nconfigs;
    int *batches;                  /* (nconfigs) the batch of each configuration, fitted to the device */
    int *untimed;                  /* (nconfigs) 1: no --batch given and the batch not yet timed (vis_pick_batch
                                    * at the configuration's first run with targets to do) */
    unsigned long long *seeds;
    int nseeds;
    vis_session s;
    nfv_truth truth;
    nfv_truth_reference_row *reference; /* (truth.count) what the cohort's real lesions score */
    nfv_mask_control *masks;            /* what each configuration's mask alone scores */
    int nmasks;
    nfv_compare_row *rows;         /* (nconfigs x nseeds x targets) */
    int nrows;
    double *scores;                /* (truth.count) NCC of one volume with each shape */
    int (*positions)[3];           /* (truth.count) voxel of each shape's best match */
    double t0;                     /* when the first run started (nfv_seconds) */
    const char *runs;              /* where the runs' outputs go: --runs, else --out */
    char runs_rel[4096];           /* runs as seen from --out ("." when the same) */
    compare_mis mis;               /* --score mis: the subjects (n = 0: off) */
    const char *report;            /* where the report goes: --out, or --out/shard-I-of-N for a shard */
    char report_buf[4200];
    int shard_i, shard_n;          /* the runs (configuration x seed) of shard I of N; 1/1: all */
    int mpi;                       /* under mpirun: shard = rank, then rank 0 reports over every run */
    int reread;                    /* read every run back from its outputs (after the ranks' shards) */
    int quiet;                     /* no per-run lines (a rank's shard pass under mpirun) */
} compare_state;

/* Run `run` (configuration run / nseeds, seed run % nseeds): visualize or
 * read back its targets, add its rows.  0 or 1 (error printed). */
int compare_run_config(compare_state *cs, int run);
/* The whole command on argv (merging: replaying shards, every result must be on disk). */
int compare_main(int argc, char **argv, int merging);

/* compare_shards.c */
int compare_select_shard(compare_state *cs);
int compare_mpi_gather_runs(compare_state *cs);
int compare_write_manifest(const compare_state *cs);
int compare_merge_shards(const char *const *dirs, int ndirs, const char *out);

#endif
