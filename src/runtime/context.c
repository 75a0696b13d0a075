/* Device enumeration and selection; see include/neurofv/context.h. */
#include "runtime/internal.h"

#include <clblast_c.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "neurofv/dist.h"

const char *nfv_cl_error_name(cl_int err)
{
    switch (err) {
#define E(x) case x: return #x;
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET) E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE) E(CL_LINK_PROGRAM_FAILURE)
    E(CL_DEVICE_PARTITION_FAILED) E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) E(CL_INVALID_VALUE)
    E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT)
    E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
    E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR) E(CL_INVALID_IMAGE_SIZE)
    E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME) E(CL_INVALID_KERNEL_DEFINITION)
    E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE)
    E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT) E(CL_INVALID_BUFFER_SIZE)
    E(CL_INVALID_MIP_LEVEL) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_INVALID_PROPERTY)
    E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS) E(CL_INVALID_LINKER_OPTIONS)
    E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL platform: is an ICD such as pocl-opencl-icd installed?)";
    }
    return "CL_UNKNOWN_ERROR";
}

nfv_status nfv_cl_fail(cl_int err, const char *call, const char *what, const char *file, int line)
{
    const char *scope = nfv_error_scope_get();
    return nfv_fail(NFV_ERR_OPENCL, "%s(%s)%s%s: %s (%d) at %s:%d", call, what ? what : "",
                    scope[0] ? " in " : "", scope, nfv_cl_error_name(err), (int)err, file, line);
}

static void info_string(cl_device_id d, cl_device_info what, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (clGetDeviceInfo(d, what, cap, dst, NULL) != CL_SUCCESS) dst[0] = '\0';
    dst[cap - 1] = '\0';
}

static void fill_info(cl_platform_id p, cl_device_id d, int pi, int di, nfv_device_info *o)
{
    memset(o, 0, sizeof *o);
    o->platform_index = pi;
    o->device_index = di;
    if (clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof o->platform_name, o->platform_name, NULL) != CL_SUCCESS)
        o->platform_name[0] = '\0';
    info_string(d, CL_DEVICE_NAME, o->name, sizeof o->name);
    info_string(d, CL_DEVICE_VENDOR, o->vendor, sizeof o->vendor);
    info_string(d, CL_DRIVER_VERSION, o->driver_version, sizeof o->driver_version);
    info_string(d, CL_DEVICE_VERSION, o->device_version, sizeof o->device_version);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    o->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    o->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    cl_uint u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof u, &u, NULL);
    o->compute_units = u;
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof u, &u, NULL);
    o->preferred_vector_width_float = u;
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(d, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
    o->has_fma = (fp & CL_FP_FMA) && !(fp & CL_FP_SOFT_FLOAT);
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof u, &u, NULL);
    o->max_clock_mhz = u;
    size_t s = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof s, &s, NULL);
    o->max_work_group_size = s;
    cl_ulong l = 0;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof l, &l, NULL);
    o->global_mem_bytes = l;
    l = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof l, &l, NULL);
    o->max_mem_alloc_bytes = l;
    l = 0;
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof l, &l, NULL);
    o->local_mem_bytes = l;
}

/* Enumerate every (platform, device); ids optional. */
static nfv_status enumerate(nfv_device_info **out, cl_platform_id **pids, cl_device_id **dids, int *count)
{
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &np);
    if (err == -1001 || np == 0)
        return nfv_fail(NFV_ERR_NO_DEVICE, "no OpenCL platform found (install pocl-opencl-icd for the CPU, "
                                           "or your GPU vendor's OpenCL driver)");
    NFV_CL_CHECK(err, "clGetPlatformIDs", "count");
    cl_platform_id plats[16];
    if (np > 16) np = 16;
    NFV_CL_CHECK(clGetPlatformIDs(np, plats, NULL), "clGetPlatformIDs", "list");
    int cap = 64, n = 0;
    nfv_device_info *list = calloc(cap, sizeof *list);
    cl_platform_id *pl = calloc(cap, sizeof *pl);
    cl_device_id *dl = calloc(cap, sizeof *dl);
    if (!list || !pl || !dl) {
        free(list); free(pl); free(dl);
        return nfv_fail(NFV_ERR_NO_MEMORY, "device enumeration: out of memory");
    }
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS) continue;
        cl_device_id devs[32];
        if (nd > 32) nd = 32;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL) != CL_SUCCESS) continue;
        for (cl_uint d = 0; d < nd && n < cap; d++) {
            fill_info(plats[p], devs[d], (int)p, (int)d, &list[n]);
            pl[n] = plats[p];
            dl[n] = devs[d];
            n++;
        }
    }
    if (n == 0) {
        free(list); free(pl); free(dl);
        return nfv_fail(NFV_ERR_NO_DEVICE, "OpenCL platforms found but no devices");
    }
    /* Default: first GPU, else first CPU, else first device. */
    int def = -1;
    for (int i = 0; i < n && def < 0; i++) if (list[i].is_gpu) def = i;
    for (int i = 0; i < n && def < 0; i++) if (list[i].is_cpu) def = i;
    if (def < 0) def = 0;
    list[def].is_default = 1;
    *out = list;
    *count = n;
    if (pids) *pids = pl; else free(pl);
    if (dids) *dids = dl; else free(dl);
    return NFV_OK;
}

nfv_status nfv_devices_list(nfv_device_info **out, int *count)
{
    return enumerate(out, NULL, NULL, count);
}

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return 1;
    }
    return n == 0;
}

/* Index into list chosen by spec, or -1 with an error recorded. */
static int choose(const nfv_device_info *list, int n, const char *spec)
{
    /* Several ranks on one node (mpirun): rank r of the node takes GPU
     * r mod (the node's GPUs), so 4 ranks on a 4-GPU node use all four. */
    int gpus = 0;
    for (int i = 0; i < n; i++) gpus += list[i].is_gpu;
    if ((!spec || !spec[0] || !strcmp(spec, "gpu")) && gpus > 0 && nfv_dist_local_size() > 1) {
        int want = nfv_dist_local_rank() % gpus;
        for (int i = 0; i < n; i++)
            if (list[i].is_gpu && want-- == 0) return i;
    }
    if (!spec || !spec[0]) {
        for (int i = 0; i < n; i++) if (list[i].is_default) return i;
        return 0;
    }
    if (!strcmp(spec, "gpu") || !strcmp(spec, "cpu")) {
        int want_gpu = spec[0] == 'g';
        for (int i = 0; i < n; i++)
            if (want_gpu ? list[i].is_gpu : list[i].is_cpu) return i;
        nfv_fail(NFV_ERR_NO_DEVICE, "--device %s: no %s device found (see `neurofv devices`)", spec,
                 want_gpu ? "GPU" : "CPU");
        return -1;
    }
    int p, d;
    char tail;
    if (sscanf(spec, "%d:%d%c", &p, &d, &tail) == 2) {
        for (int i = 0; i < n; i++)
            if (list[i].platform_index == p && list[i].device_index == d) return i;
        nfv_fail(NFV_ERR_NO_DEVICE, "--device %s: no device at platform %d, device %d (see `neurofv devices`)",
                 spec, p, d);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (contains_nocase(list[i].name, spec)) return i;
    nfv_fail(NFV_ERR_NO_DEVICE, "--device %s: no device name contains \"%s\" (see `neurofv devices`)", spec, spec);
    return -1;
}

void nfv_default_cache_dir(char *dir, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg && xdg[0]) snprintf(dir, cap, "%s/neurofv", xdg);
    else if (home && home[0]) snprintf(dir, cap, "%s/.cache/neurofv", home);
    else if (cap) dir[0] = '\0';
}

/* The kernel configuration of a new context (see nfv_context_create_with_config).
 * A tuning entry the device cannot run, or a corrupt file, is a warning and
 * the defaults: a stale file must not stop every command. */
static nfv_status choose_config(nfv_context *ctx, const char *forced)
{
    const char *env = getenv("NEUROFV_KERNEL_CONFIG");
    if (forced) return nfv_kernel_config_parse(forced, &ctx->info, &ctx->kernel_config);
    if (env && env[0]) return nfv_kernel_config_parse(env, &ctx->info, &ctx->kernel_config);
    NFV_TRY(nfv_kernel_config_parse(NULL, &ctx->info, &ctx->kernel_config));
    const char *off = getenv("NEUROFV_TUNING");
    if (off && !strcmp(off, "off")) return NFV_OK;
    char spec[128], why[1400], path[1200];
    int found = nfv_tuning_lookup(ctx->cache_dir, &ctx->info, spec, sizeof spec, why, sizeof why);
    if (found < 0) {
        fprintf(stderr, "neurofv: warning: ignoring the tuning file: %s; using the built-in kernel defaults\n", why);
        return NFV_OK;
    }
    if (found == 0 || !spec[0]) return NFV_OK; /* "" = the tuner kept the defaults */
    nfv_kernel_config tuned;
    if (nfv_kernel_config_parse(spec, &ctx->info, &tuned) != NFV_OK) {
        nfv_tuning_path(ctx->cache_dir, path, sizeof path);
        fprintf(stderr, "neurofv: warning: ignoring the tuning file %s: %s; using the built-in kernel defaults\n",
                path, nfv_error_message());
        return NFV_OK;
    }
    snprintf(tuned.name, sizeof tuned.name, "tuned: %.56s", spec);
    ctx->kernel_config = tuned;
    return NFV_OK;
}

nfv_status nfv_context_create(const char *spec, nfv_context **out)
{
    return nfv_context_create_with_config(spec, NULL, out);
}

nfv_status nfv_context_create_with_config(const char *spec, const char *kernel_config, nfv_context **out)
{
    *out = NULL;
    if (!spec || !spec[0]) spec = getenv("NEUROFV_DEVICE");
    /* PoCL's worker threads compete with the host thread; pinning them was
     * measured to cut a conv from 5.9 to 3.6 ms (docs/ARCHITECTURE.md,
     * performance notes).  Ignored by other drivers; a user's own setting wins. */
    /* Several ranks sharing one node's CPU device would each start a worker
     * per core and pin them to the same cores: give each rank its share of
     * the cores, unpinned.  PoCL reads these; other drivers ignore them. */
    if (nfv_dist_local_size() > 1) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN), share = cores / nfv_dist_local_size();
        char v[32];
        snprintf(v, sizeof v, "%ld", share > 1 ? share : 1);
        setenv("POCL_MAX_PTHREAD_COUNT", v, 0);
    } else {
        setenv("POCL_AFFINITY", "1", 0);
    }

    nfv_device_info *list;
    cl_platform_id *pids;
    cl_device_id *dids;
    int n;
    NFV_TRY(enumerate(&list, &pids, &dids, &n));
    int i = choose(list, n, spec);
    if (i < 0) {
        free(list); free(pids); free(dids);
        return NFV_ERR_NO_DEVICE;
    }
    nfv_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        free(list); free(pids); free(dids);
        return nfv_fail(NFV_ERR_NO_MEMORY, "context: out of memory");
    }
    ctx->info = list[i];
    ctx->platform = pids[i];
    ctx->device = dids[i];
    free(list); free(pids); free(dids);

    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
    ctx->cl = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        free(ctx);
        return nfv_cl_fail(err, "clCreateContext", "", __FILE__, __LINE__);
    }
    int profile = nfv_profile_wanted();
    ctx->queue = clCreateCommandQueue(ctx->cl, ctx->device, profile ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (err != CL_SUCCESS) {
        clReleaseContext(ctx->cl);
        free(ctx);
        return nfv_cl_fail(err, "clCreateCommandQueue", "", __FILE__, __LINE__);
    }
    nfv_default_cache_dir(ctx->cache_dir, sizeof ctx->cache_dir);
    nfv_status st = profile ? nfv_profile_init(ctx) : NFV_OK;
    if (!st) st = choose_config(ctx, kernel_config);
    if (st != NFV_OK) {
        nfv_context_free(ctx);
        return st;
    }
    *out = ctx;
    return NFV_OK;
}

void nfv_context_free(nfv_context *ctx)
{
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    nfv_profile_release(ctx);
    /* CLBlast (the dense layers) keeps its programs per cl_context in a
     * global cache that it would otherwise release at process exit, after
     * the OpenCL runtime's own thread-local state is gone (oclgrind then
     * writes to freed memory and aborts): release them with the context. */
    CLBlastClearCache();
    nfv_programs_release(ctx);
    nfv_scratch_release(ctx);
    nfv_derived_release(ctx);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl) clReleaseContext(ctx->cl);
    free(ctx);
}

const nfv_device_info *nfv_context_device_info(const nfv_context *ctx) { return &ctx->info; }
cl_context nfv_context_cl(const nfv_context *ctx) { return ctx->cl; }
cl_command_queue nfv_context_queue(const nfv_context *ctx) { return ctx->queue; }
cl_device_id nfv_context_device(const nfv_context *ctx) { return ctx->device; }
int nfv_context_vector_width(const nfv_context *ctx) { return ctx->kernel_config.vector_width; }
const nfv_kernel_config *nfv_context_kernel_config(const nfv_context *ctx) { return &ctx->kernel_config; }

size_t nfv_context_max_local(const nfv_context *ctx)
{
    size_t device = ctx->info.max_work_group_size ? ctx->info.max_work_group_size : 1;
    size_t cap = ctx->kernel_config.max_local;
    return cap && cap < device ? cap : device;
}
nfv_device_memory nfv_context_device_memory(const nfv_context *ctx)
{
    nfv_device_memory d = {ctx->info.global_mem_bytes, ctx->info.max_mem_alloc_bytes, 0};
    /* A device that does not report a buffer limit: OpenCL's minimum is a quarter of the memory. */
    if (!d.max_alloc_bytes) d.max_alloc_bytes = d.global_bytes / 4;
    unsigned long long mem = ctx->kernel_config.mem_bytes;
    if (mem) {
        d.global_bytes = mem;
        if (d.max_alloc_bytes > mem || !d.max_alloc_bytes) d.max_alloc_bytes = mem;
        d.from_config = 1;
    }
    return d;
}

nfv_cache_stats nfv_context_cache_stats(const nfv_context *ctx) { return ctx->cache_stats; }
const char *nfv_context_cache_dir(const nfv_context *ctx) { return ctx->cache_dir; }

nfv_status nfv_finish(nfv_context *ctx)
{
    NFV_CL_CHECK(clFinish(ctx->queue), "clFinish", "queue");
    return NFV_OK;
}

size_t nfv_kernel_max_local(nfv_context *ctx, cl_kernel kernel)
{
    size_t s = 0;
    if (clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof s, &s, NULL) != CL_SUCCESS)
        s = 1;
    size_t cap = nfv_context_max_local(ctx);
    return s == 0 ? 1 : s < cap ? s : cap;
}

nfv_status nfv_kernel_launch(nfv_context *ctx, cl_kernel kernel, cl_uint dims, const size_t *global,
                             const size_t *local)
{
    for (cl_uint i = 0; i < dims; i++)
        if (global[i] == 0) return NFV_OK; /* empty launch: nothing to do */
    cl_event *ev = ctx->profile ? nfv_profile_slot(ctx, kernel) : NULL;
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0, NULL, ev);
    if (ev && err == CL_SUCCESS) {
        /* Profiling runs each kernel alone: queued behind each other, PoCL's
         * START..END intervals overlapped and their sum exceeded the wall
         * time of the step. */
        nfv_profile_launched(ctx);
        clWaitForEvents(1, ev);
    }
    if (err != CL_SUCCESS) {
        char name[128] = "?";
        clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL);
        name[sizeof name - 1] = '\0';
        return nfv_cl_fail(err, "clEnqueueNDRangeKernel", name, __FILE__, __LINE__);
    }
    return NFV_OK;
}
