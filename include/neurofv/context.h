/* OpenCL device selection, program building and kernel launching.
 *
 * One nfv_context holds the chosen device, its queue and every program built
 * in this run.  There is no global state: pass the context by pointer. */
#ifndef NEUROFV_CONTEXT_H
#define NEUROFV_CONTEXT_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stddef.h>

#include "neurofv/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nfv_context nfv_context;

/* What the runtime knows about one device. */
typedef struct nfv_device_info {
    int platform_index, device_index;    /* the "P:D" address */
    char platform_name[128];
    char name[128];
    char vendor[128];
    char driver_version[128];
    char device_version[128];
    int is_gpu, is_cpu;
    unsigned compute_units;
    size_t max_work_group_size;
    unsigned long long global_mem_bytes;     /* CL_DEVICE_GLOBAL_MEM_SIZE */
    unsigned long long max_mem_alloc_bytes;  /* CL_DEVICE_MAX_MEM_ALLOC_SIZE: the largest single buffer */
    unsigned long long local_mem_bytes;
    unsigned preferred_vector_width_float; /* from the device, used for -DVEC */
    int has_fma;                         /* CL_FP_FMA in hardware: kernels built with -DNFV_FMA=1 */
    unsigned max_clock_mhz;
    int is_default;                      /* what a plain run would choose */
} nfv_device_info;

/* Every OpenCL device on this machine.  *out is malloc'ed; free() it. */
nfv_status nfv_devices_list(nfv_device_info **out, int *count);

/* Open a context on the device named by spec:
 *   NULL or ""  -> $NEUROFV_DEVICE if set, else first GPU, else first CPU device
 *   "gpu"/"cpu" -> first device of that type
 *   "P:D"       -> platform P, device D (indices as `neurofv devices` shows)
 *   other       -> first device whose name contains spec (case-insensitive) */
nfv_status nfv_context_create(const char *spec, nfv_context **out);
void nfv_context_free(nfv_context *ctx);
/* on 1: the caller promises that no weight tensor used on ctx changes
 * until the matching call with 0 (nested calls count): copies derived from
 * weights (conv3d's flipped weights for input gradients, a strided conv's
 * weight phases) are then kept per
 * weight buffer and reused instead of derived again each call; 0 frees
 * them when the outermost freeze ends.  nfv_visualize freezes for its
 * duration (one flip per conv for the whole optimization, not per step). */
void nfv_context_freeze_weights(nfv_context *ctx, int on);
/* 0 while the weights are not frozen; while they are, a number that
 * differs between any two outermost freezes of ctx: what a layer derived
 * from its weights in this freeze (model_fuse.c's folded BatchNorm) can be
 * reused while it stays the same. */
unsigned long nfv_context_frozen_generation(const nfv_context *ctx);

const nfv_device_info *nfv_context_device_info(const nfv_context *ctx);
cl_context nfv_context_cl(const nfv_context *ctx);
cl_command_queue nfv_context_queue(const nfv_context *ctx);
cl_device_id nfv_context_device(const nfv_context *ctx);

/* The choices the kernels make per device (src/runtime/kernel_config.c).
 * Defaults come from the device; $NEUROFV_KERNEL_CONFIG forces a profile
 * ("cpu-avx512", "cpu-avx2", "gpu", "nvidia", "amd", "intel") and/or single
 * settings ("vec=4,local=64", "unroll=1", "march=0", "cvec=16"), so a GPU's configuration runs on the CPU.
 * "mem=BYTES" (suffix K, M or G for KiB, MiB, GiB) makes the memory checks
 * see a device of BYTES global memory, at most BYTES per buffer (tests, or
 * to keep room for another process); it allocates nothing. */
typedef struct nfv_kernel_config {
    char name[64];         /* the profile or the forcing string */
    int vector_width;      /* -DVEC of the fast kernels: 4, 8 or 16 floats */
    int reduction_chunk;   /* -DCHUNK of the BatchNorm reductions (elements per work-item) */
    size_t max_local;      /* cap on work-group sizes; 0: the device's limit */
    int conv_unroll;       /* -DKD_UNROLL of the fast convs: 1 unrolls all KD*KH*KW taps, 0 keeps the
                            * kd loop (PoCL's x86 scheduler then spills no accumulators) */
    int conv_march;        /* -DMARCH: output planes per work-item of the one-output-channel conv
                            * (conv3d_fwd_co1, its input in channel rows); 0: the row kernel */
    int conv_cvec;         /* -DCVP: output positions per work-item of the convs with the output channels
                            * in the lanes (conv3d_fwd_cvec, conv3d_bwd_weights_cvec), taken by layers
                            * of few positions (nfv_conv3d_channel_last); 0: never */
    unsigned long long mem_bytes; /* mem=BYTES: the device memory the checks see; 0: the device's own */
} nfv_kernel_config;

/* The table's choice for a device. */
nfv_kernel_config nfv_kernel_config_default(const nfv_device_info *info);
/* The default with spec applied (NULL or "": the default), refused with a
 * message when the device cannot run it. */
nfv_status nfv_kernel_config_parse(const char *spec, const nfv_device_info *info, nfv_kernel_config *out);
const nfv_kernel_config *nfv_context_kernel_config(const nfv_context *ctx);

/* Like nfv_context_create, with the kernel configuration given: NULL does
 * what nfv_context_create does ($NEUROFV_KERNEL_CONFIG when set, else the
 * tuning file's entry for this device and driver, else the table), "" the
 * table's default only, anything else that spec (NEUROFV_KERNEL_CONFIG
 * syntax).  `neurofv tune` opens one context per candidate this way. */
nfv_status nfv_context_create_with_config(const char *spec, const char *kernel_config, nfv_context **out);

/* ---- The tuning file (src/runtime/tuning.c, written by `neurofv tune`) ----
 * <cache dir>/tuning.json holds per device + driver + platform (the key) the
 * kernel configuration found best.  Contexts created with no forced config
 * use it; $NEUROFV_TUNING=off ignores it.  A file that cannot be parsed is
 * ignored with one warning line on stderr (the built-in defaults run). */
void nfv_tuning_key(const nfv_device_info *info, char *key, size_t cap);
void nfv_tuning_path(const char *cache_dir, char *path, size_t cap);
/* 1: found, spec receives the config; 0: no file or no entry for the
 * device; -1: the file or the entry is corrupt, why receives one line. */
int nfv_tuning_lookup(const char *cache_dir, const nfv_device_info *info, char *spec, size_t cap, char *why,
                      size_t why_cap);
/* Sets this device's entry (others kept; a corrupt file is replaced), atomically. */
nfv_status nfv_tuning_store(const char *cache_dir, const nfv_device_info *info, const char *spec, double default_ms,
                            double tuned_ms, int candidates);
/* The cache folder a context on this machine uses ($XDG_CACHE_HOME/neurofv,
 * else ~/.cache/neurofv; "" when neither is set) into dir. */
void nfv_default_cache_dir(char *dir, size_t cap);

/* Kernel profiling: contexts created with NEUROFV_PROFILE=1 record each
 * launch's device time (src/runtime/profile.c).  nfv_profile_collect waits
 * for the queue, then gives the time per kernel name since the last reset
 * (*rows malloc'ed, free()); returns the row count, or -1 when profiling is
 * off.  CLBlast's launches and transfers are not counted. */
typedef struct nfv_profile_row {
    char name[64];
    double seconds;
    long launches;
} nfv_profile_row;
int nfv_profile_collect(nfv_context *ctx, nfv_profile_row **rows, int reset);

/* The device memory the memory checks (nfv_memory_check) compare a run's
 * needs with: the device's global memory and largest single buffer, or
 * mem=BYTES of the kernel config (then the buffer limit is at most BYTES). */
typedef struct nfv_device_memory {
    unsigned long long global_bytes;    /* CL_DEVICE_GLOBAL_MEM_SIZE or mem=BYTES */
    unsigned long long max_alloc_bytes; /* CL_DEVICE_MAX_MEM_ALLOC_SIZE, capped by mem=BYTES */
    int from_config;                    /* 1: mem=BYTES of NEUROFV_KERNEL_CONFIG */
} nfv_device_memory;
nfv_device_memory nfv_context_device_memory(const nfv_context *ctx);

/* Vector width (floats) the fast kernels use on this device: 16 for AVX-512
 * CPUs, 8 for AVX2, 4 for GPUs unless the kernel config says otherwise. */
int nfv_context_vector_width(const nfv_context *ctx);

/* Largest work-group size any kernel may use here: the device's limit or the
 * kernel config's cap, whichever is smaller. */
size_t nfv_context_max_local(const nfv_context *ctx);

/* Wait for all queued work. */
nfv_status nfv_finish(nfv_context *ctx);

/* Get a kernel from the embedded program cl/<program>.cl built with the given
 * build options (e.g. "-DVEC=16").  Programs are built once per context and
 * cached on disk per device + driver + source + options under
 * $XDG_CACHE_HOME/neurofv (else ~/.cache/neurofv); a stale or corrupt cache
 * entry is rebuilt.  Build failures return NFV_ERR_BUILD with the full log. */
nfv_status nfv_kernel_get(nfv_context *ctx, const char *program, const char *options,
                          const char *kernel_name, cl_kernel *out);

/* Build a program from explicit source (not the embedded set), cached like the
 * above.  Used by tests (broken sources) and tools. */
nfv_status nfv_program_build_source(nfv_context *ctx, const char *label, const char *source,
                                    const char *options, cl_program *out);

/* Enqueue a kernel without waiting; local may be NULL.  Errors name the
 * kernel and the current error scope. */
nfv_status nfv_kernel_launch(nfv_context *ctx, cl_kernel kernel, cl_uint dims,
                             const size_t *global, const size_t *local);

/* The device's attainable fp32 rate in GFLOP/s, measured (cl/peak.cl: 12
 * independent VEC-wide multiply-add chains per work-item, 2,048 work-items
 * per compute unit, median of 5 launches, a few ms on a CPU): the "% peak"
 * of the benchmarks.  The result is checked, so a kernel that did not run
 * as written is an error, not a fast device. */
nfv_status nfv_device_fma_peak(nfv_context *ctx, double *gflops);

/* Largest work-group size this kernel may use on this device. */
size_t nfv_kernel_max_local(nfv_context *ctx, cl_kernel kernel);

/* Statistics of the program cache for this context (tests use them). */
typedef struct nfv_cache_stats {
    int built_from_source, loaded_from_disk, rejected_entries;
} nfv_cache_stats;
nfv_cache_stats nfv_context_cache_stats(const nfv_context *ctx);

/* Path of the on-disk cache directory in use (for tests and `devices`). */
const char *nfv_context_cache_dir(const nfv_context *ctx);

/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"). */
const char *nfv_cl_error_name(cl_int err);

/* Record "call(what) in <scope>: CL_NAME (file:line)" and return NFV_ERR_OPENCL. */
nfv_status nfv_cl_fail(cl_int err, const char *call, const char *what, const char *file, int line);

/* Check an OpenCL return code inside a function returning nfv_status. */
#define NFV_CL_CHECK(expr, call, what)                                           \
    do {                                                                          \
        cl_int nfv_cl_err_ = (expr);                                              \
        if (nfv_cl_err_ != CL_SUCCESS)                                            \
            return nfv_cl_fail(nfv_cl_err_, call, what, __FILE__, __LINE__);      \
    } while (0)

/* Set kernel argument `index` to `value` (an lvalue), checked. */
#define NFV_ARG(kernel, kname, index, value)                                     \
    NFV_CL_CHECK(clSetKernelArg((kernel), (index), sizeof(value), &(value)),      \
                 "clSetKernelArg", kname)

#ifdef __cplusplus
}
#endif
#endif
