/* Definitions shared by the runtime's source files, not part of the public API. */
#ifndef NEUROFV_INTERNAL_H
#define NEUROFV_INTERNAL_H

#include "neurofv/context.h"

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
    int vector_width;
    nfv_program_entry *programs;
    int program_count, program_cap;
    nfv_cache_stats cache_stats;
    char cache_dir[1024];
};

/* Embedded kernel sources (generated from cl/*.cl at build time). */
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

#endif
