/* Definitions shared by the runtime's source files, not part of the public API. */
#ifndef NEUROFV_INTERNAL_H
#define NEUROFV_INTERNAL_H

#include "neurofv/context.h"

#define NFV_SCRATCH_SLOTS 8

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
    /* Reusable device scratch (src/scratch.c): padded copies, partial sums. */
    cl_mem scratch[NFV_SCRATCH_SLOTS];
    size_t scratch_bytes[NFV_SCRATCH_SLOTS];
};

/* Embedded kernel sources (generated from cl/ files at build time). */
typedef struct nfv_embedded_source {
    const char *name;     /* file name without .cl */
    const char *source;
} nfv_embedded_source;
extern const nfv_embedded_source nfv_embedded_sources[];
extern const int nfv_embedded_source_count;
const char *nfv_embedded_source_find(const char *name);

const char *nfv_error_scope_get(void);

/* 64-bit FNV-1a, used for cache keys and checksums. */
unsigned long long nfv_hash64(const void *data, size_t n, unsigned long long seed);
#define NFV_HASH_SEED 1469598103934665603ULL

void nfv_programs_release(nfv_context *ctx);

/* A device buffer of at least `bytes` for scratch slot `slot` (< NFV_SCRATCH_SLOTS),
 * kept in the context and reused by later calls: the queue is in order, so
 * work enqueued later sees the buffer only after earlier users finished.
 * Grows by reallocation (in-flight commands keep the old buffer alive).
 * Contents are undefined and only valid within one operation: another op
 * may reuse the slot next.  In use: 0-3 conv3d, 6-7 regularize.
 * Owned by the context; do not release. */
nfv_status nfv_scratch_get(nfv_context *ctx, int slot, size_t bytes, const char *what, cl_mem *out);
void nfv_scratch_release(nfv_context *ctx);

#endif
