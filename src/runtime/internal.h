/* Definitions shared by the runtime's source files, not part of the public API. */
#ifndef NEUROFV_INTERNAL_H
#define NEUROFV_INTERNAL_H

#include "neurofv/context.h"

/* The context's reusable device scratch buffers (nfv_scratch_get), one named
 * slot per use, so that two users never share a buffer by accident.  A slot's
 * contents live only within one operation, but two slots used by the same
 * operation must differ: conv3d backward-weights pads x into CONV_PADDED
 * while its partial sums sit in CONV_WEIGHT_PARTIALS.  Add a use here, not
 * as a number in the file that uses it. */
typedef enum nfv_scratch_slot {
    NFV_SCRATCH_CONV_PADDED = 0,          /* conv3d: zero-padded x or dy (N, C, D+2p, H+2p, W+2p) */
    NFV_SCRATCH_CONV_FLIPPED_WEIGHTS,     /* conv3d backward-input: weights (CI, CO, kd, kh, kw), flipped */
    NFV_SCRATCH_CONV_WEIGHT_PARTIALS,     /* conv3d backward-weights: partial sums per (n, od) slab */
    NFV_SCRATCH_CONV_BIAS_PARTIALS,       /* conv3d bias gradient: partial sums per slab (slabs, CO) */
    NFV_SCRATCH_CONV_PITCHED_DY,          /* conv3d backward-weights: dy at the padded row pitch (flat kernel)
                                           * or with the channel last (cvec kernel) */
    NFV_SCRATCH_CONV_PHASES,              /* conv3d strided: the phases of x or dx (N, CI*P, L, L, L) */
    NFV_SCRATCH_CONV_PHASE_WEIGHTS,       /* conv3d strided: the phases of w or dw (CO, CI*P, m, m, m) */
    NFV_SCRATCH_CONV_CHANNEL_LAST,        /* conv3d_fwd_cvec: weights (CI, kd, kh, kw, CO) */
    NFV_SCRATCH_VIS_PENALTY_ROWS,         /* regularize: penalty row sums (N*D*H) */
    NFV_SCRATCH_VIS_BLUR_TMP,             /* regularize: one blur pass (N, 1, D, H, W) */
    NFV_SCRATCH_SLOTS                     /* count */
} nfv_scratch_slot;

/* One built program, keyed by embedded program name + build options. */
typedef struct nfv_program_entry {
    char *key;                 /* "program|options" */
    cl_program program;
    int kernel_count;
    struct { char *name; cl_kernel kernel; } *kernels;
} nfv_program_entry;

struct nfv_context {
    nfv_device_info info;
    cl_platform_id platform;
    cl_device_id device;
    cl_context cl;
    cl_command_queue queue;
    nfv_kernel_config kernel_config; /* vector width, reduction chunk, work-group cap */
    nfv_program_entry *programs;
    int program_count, program_cap;
    nfv_cache_stats cache_stats;
    char cache_dir[1024];
    /* Reusable device scratch (src/runtime/scratch.c), by nfv_scratch_slot. */
    cl_mem scratch[NFV_SCRATCH_SLOTS];
    size_t scratch_bytes[NFV_SCRATCH_SLOTS];
    struct nfv_profile_state *profile; /* NEUROFV_PROFILE=1: per-kernel device time (profile.c); else NULL */
    /* Weights derived from weight buffers, kept while frozen (scratch.c). */
    int freeze_depth;
    unsigned long freeze_generation; /* outermost freezes begun: nfv_context_frozen_generation */
    struct nfv_derived *derived;
    int derived_count, derived_cap;
};

/* Kernel profiling (src/runtime/profile.c). */
int nfv_profile_wanted(void);
nfv_status nfv_profile_init(nfv_context *ctx);
cl_event *nfv_profile_slot(nfv_context *ctx, cl_kernel kernel); /* where the next launch's event goes */
void nfv_profile_launched(nfv_context *ctx);                    /* after that launch succeeded */
void nfv_profile_release(nfv_context *ctx);

/* Embedded kernel sources (generated from cl/ files at build time). */
typedef struct nfv_embedded_source {
    const char *name;     /* file name without .cl */
    const char *source;
} nfv_embedded_source;
extern const nfv_embedded_source nfv_embedded_sources[];
extern const int nfv_embedded_source_count;
const char *nfv_embedded_source_find(const char *name);

const char *nfv_error_scope_get(void);


void nfv_programs_release(nfv_context *ctx);

/* A device buffer of at least `bytes` for scratch slot `slot`, kept in the
 * context and reused by later calls: the queue is in order, so work enqueued
 * later sees the buffer only after earlier users finished.  Grows by
 * reallocation (in-flight commands keep the old buffer alive).  Contents are
 * undefined and only valid within one operation: another op may reuse the
 * slot next.  Owned by the context; do not release. */
nfv_status nfv_scratch_get(nfv_context *ctx, nfv_scratch_slot slot, size_t bytes, const char *what, cl_mem *out);
void nfv_scratch_release(nfv_context *ctx);

/* Derived weights.  While the context's weights are frozen
 * (nfv_context_freeze_weights), a copy derived from a weight buffer (kind:
 * conv3d's flipped weights or flipped weight phases for input gradients,
 * its weight phases for a strided forward, the channel-last copy of any of
 * these for conv3d_fwd_cvec)
 * is kept per (source buffer, kind, bytes) and handed back by later calls:
 * *fresh is 1 when the caller must fill it now, 0 when it holds what an
 * earlier call wrote.  Owned by the context, released when the last freeze
 * ends.  nfv_derived_frozen: whether to use it (else: a scratch slot). */
enum { NFV_DERIVED_CONV_FLIP = 1, NFV_DERIVED_CONV_PHASE_FLIP, NFV_DERIVED_CONV_PHASE, NFV_DERIVED_CONV_CHANNEL_LAST,
       NFV_DERIVED_CONV_CHANNEL_LAST_FLIP };
int nfv_derived_frozen(const nfv_context *ctx);
nfv_status nfv_derived_get(nfv_context *ctx, cl_mem source, int kind, size_t bytes, const char *what, cl_mem *out,
                           int *fresh);
void nfv_derived_release(nfv_context *ctx);

#endif
