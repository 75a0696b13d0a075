/* The kernel tuner (src/layers/tune.c; `neurofv tune`).
 *
 * Searches the kernel configuration (NEUROFV_KERNEL_CONFIG settings: -DVEC
 * of the fast conv/pool/norm kernels, -DCHUNK of the BatchNorm reductions,
 * the work-group cap) on one device: every candidate gets its own context,
 * runs a small conv3d + maxpool3d + batchnorm3d workload forward and
 * backward, is validated against the reference (conv: the plain
 * one-output-per-work-item kernels; pool and BatchNorm: host loops) and
 * timed (median of reps).  The built-in default is candidate 0, measured
 * first and again last (its better time kept); the choice is the fastest
 * valid candidate, and the default unless another was measured at least 3 %
 * faster in the same run.
 *
 * That small workload does not stand for every model: on an H200 its choice
 * (vec=8) ran it 1.57x faster and ref4's visualization step 1.4x slower.  So
 * with a `check` (the CLI's: a model's visualization or training step), the
 * fastest valid non-default candidate and the default are both timed on it,
 * alternately, twice each, the better time of each kept, and the candidate
 * is chosen only when it is at least 3 % faster there too. */
#ifndef NEUROFV_TUNE_H
#define NEUROFV_TUNE_H

#include "neurofv/context.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NFV_TUNE_MAX_CANDIDATES 32

/* Times the workload the tuning is for in ctx, a fresh context built with
 * the candidate's configuration: *ms, its median step time. */
typedef nfv_status (*nfv_tune_check_fn)(nfv_context *ctx, void *user, double *ms);

typedef struct nfv_tune_options {
    int size;       /* edge of the test volume (voxels), 24 */
    int batch;      /* samples, 2 */
    int reps;       /* timed repetitions per candidate (median), 21 */
    /* Candidates to try besides the default (NEUROFV_KERNEL_CONFIG syntax);
     * NULL: the built-in list (vec 4/8/16, chunk 1024/4096/16384, local
     * 64/256, unroll 0/1, then the combination of the settings that each beat
     * the default). */
    const char *const *candidates;
    int ncandidates;
    nfv_tune_check_fn check; /* NULL: the small workload alone decides */
    void *check_user;
} nfv_tune_options;

typedef struct nfv_tune_candidate {
    char spec[96];   /* "" = the built-in default */
    double ms;       /* median of the workload; 0 when it did not run */
    double max_err;  /* worst |fast - reference| / (1 + |reference|) over the outputs */
    int valid;       /* ran and matched the reference */
    char note[160];  /* why not valid */
} nfv_tune_candidate;

typedef struct nfv_tune_result {
    nfv_device_info device;
    nfv_tune_candidate cand[NFV_TUNE_MAX_CANDIDATES];
    int n;
    int best;        /* index of the choice; 0 (the default) unless another was faster */
    int checked;     /* index of the candidate timed on the check against the default; 0: none */
    double check_ms[2]; /* the check's times: [0] the default, [1] that candidate */
} nfv_tune_result;

void nfv_tune_options_default(nfv_tune_options *o);
/* Runs the search on `device` (nfv_context_create's spec). */
nfv_status nfv_tune(const char *device, const nfv_tune_options *o, nfv_tune_result *r);

#ifdef __cplusplus
}
#endif
#endif
