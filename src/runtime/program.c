/* Program building with an on-disk binary cache, and the kernel lookup cache.
 *
 * Cache file: $XDG_CACHE_HOME/neurofv/<key>.bin where key hashes the device
 * name, driver version, platform, program source and build options, so a
 * driver upgrade or an edited kernel never reuses an old binary.  Layout:
 *   8 bytes  magic "NFVBIN01"
 *   8 bytes  payload size (little-endian u64)
 *   8 bytes  FNV-1a hash of the payload
 *   payload  the binary from CL_PROGRAM_BINARIES
 * A file whose size, hash or clBuildProgram fails is rejected and rebuilt. */
#include "base/fs.h"
#include "base/rng.h"
#include "runtime/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char CACHE_MAGIC[8] = {'N', 'F', 'V', 'B', 'I', 'N', '0', '1'};

const char *nfv_embedded_source_find(const char *name)
{
    for (int i = 0; i < nfv_embedded_source_count; i++)
        if (!strcmp(nfv_embedded_sources[i].name, name)) return nfv_embedded_sources[i].source;
    return NULL;
}

static unsigned long long cache_key(const nfv_context *ctx, const char *source, const char *options)
{
    unsigned long long h = NFV_HASH_SEED;
    const char *parts[] = {ctx->info.platform_name, ctx->info.name, ctx->info.driver_version,
                           ctx->info.device_version, source, options ? options : ""};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        h = nfv_hash64(parts[i], strlen(parts[i]) + 1, h);
    }
    return h;
}

static unsigned char *read_cache(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char head[24];
    unsigned char *payload = NULL;
    if (fread(head, 1, 24, f) != 24 || memcmp(head, CACHE_MAGIC, 8) != 0) goto bad;
    unsigned long long n = 0, hash = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | head[8 + i];
    for (int i = 7; i >= 0; i--) hash = (hash << 8) | head[16 + i];
    if (fseek(f, 0, SEEK_END) != 0) goto bad;
    long total = ftell(f);
    if (total < 24 || (unsigned long long)(total - 24) != n || n == 0) goto bad;
    if (fseek(f, 24, SEEK_SET) != 0) goto bad;
    payload = malloc(n);
    if (!payload || fread(payload, 1, n, f) != n) goto bad;
    if (nfv_hash64(payload, n, NFV_HASH_SEED) != hash) goto bad;
    fclose(f);
    *size = n;
    return payload;
bad:
    free(payload);
    fclose(f);
    *size = (size_t)-1; /* marks "present but rejected" */
    return NULL;
}

/* Best effort: a cache that cannot be written only costs a rebuild next run. */
static void write_cache(const nfv_context *ctx, const char *path, cl_program prog)
{
    size_t n = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) != CL_SUCCESS || n == 0) return;
    unsigned char *bin = malloc(n);
    if (!bin) return;
    unsigned char *ptrs[1] = {bin};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof ptrs, ptrs, NULL) != CL_SUCCESS) {
        free(bin);
        return;
    }
    /* The cache is an optimization: a failure to write it costs a rebuild
     * next run, never this run, so errors here are not reported. */
    nfv_atomic_file af;
    if (nfv_mkdirs(ctx->cache_dir) == NFV_OK && nfv_atomic_open(&af, path, "wb") == NFV_OK) {
        FILE *f = af.f;
        unsigned char head[24];
        memcpy(head, CACHE_MAGIC, 8);
        unsigned long long hash = nfv_hash64(bin, n, NFV_HASH_SEED), len = n;
        for (int i = 0; i < 8; i++) head[8 + i] = (unsigned char)(len >> (8 * i));
        for (int i = 0; i < 8; i++) head[16 + i] = (unsigned char)(hash >> (8 * i));
        if (fwrite(head, 1, 24, f) == 24 && fwrite(bin, 1, n, f) == n) (void)nfv_atomic_commit(&af);
        else nfv_atomic_abort(&af);
    }
    free(bin);
}

static nfv_status build_log_fail(nfv_context *ctx, cl_program prog, const char *label, const char *options,
                                 cl_int err)
{
    size_t n = 0;
    clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = malloc(n + 1);
    if (log) {
        log[0] = '\0';
        clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
        log[n] = '\0';
    }
    nfv_status s = nfv_fail(NFV_ERR_BUILD, "clBuildProgram(%s) with options \"%s\" on %s: %s; build log:\n%s", label,
                            options ? options : "", ctx->info.name, nfv_cl_error_name(err), log ? log : "(none)");
    free(log);
    return s;
}

nfv_status nfv_program_build_source(nfv_context *ctx, const char *label, const char *source, const char *options,
                                    cl_program *out)
{
    *out = NULL;
    char opts[1024];
    /* -cl-std pins the language level: kernels are OpenCL C 1.2.  NFV_FMA:
     * MAC() of cl/common.cl becomes fma(). */
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s%s", ctx->info.has_fma ? "-DNFV_FMA=1 " : "",
             options ? options : "");
    char path[1200] = "";
    if (ctx->cache_dir[0]) {
        snprintf(path, sizeof path, "%s/%016llx.bin", ctx->cache_dir, cache_key(ctx, source, opts));
        size_t n = 0;
        unsigned char *bin = read_cache(path, &n);
        if (bin) {
            cl_int err, status;
            const unsigned char *bins[1] = {bin};
            cl_program prog = clCreateProgramWithBinary(ctx->cl, 1, &ctx->device, &n, bins, &status, &err);
            int built = err == CL_SUCCESS && status == CL_SUCCESS &&
                        clBuildProgram(prog, 1, &ctx->device, opts, NULL, NULL) == CL_SUCCESS;
            free(bin); /* after the build: a driver may read the binary until then */
            if (built) {
                ctx->cache_stats.loaded_from_disk++;
                *out = prog;
                return NFV_OK;
            }
            if (prog) clReleaseProgram(prog);
            ctx->cache_stats.rejected_entries++;
        } else if (n == (size_t)-1) {
            ctx->cache_stats.rejected_entries++;
        }
    }
    cl_int err;
    size_t len = strlen(source);
    cl_program prog = clCreateProgramWithSource(ctx->cl, 1, &source, &len, &err);
    NFV_CL_CHECK(err, "clCreateProgramWithSource", label);
    err = clBuildProgram(prog, 1, &ctx->device, opts, NULL, NULL);
    if (err != CL_SUCCESS) {
        nfv_status s = build_log_fail(ctx, prog, label, opts, err);
        clReleaseProgram(prog);
        return s;
    }
    ctx->cache_stats.built_from_source++;
    if (path[0]) write_cache(ctx, path, prog);
    *out = prog;
    return NFV_OK;
}

nfv_status nfv_kernel_get(nfv_context *ctx, const char *program, const char *options, const char *kernel_name,
                          cl_kernel *out)
{
    *out = NULL;
    char key[1200];
    snprintf(key, sizeof key, "%s|%s", program, options ? options : "");
    nfv_program_entry *e = NULL;
    for (int i = 0; i < ctx->program_count; i++)
        if (!strcmp(ctx->programs[i].key, key)) e = &ctx->programs[i];
    if (!e) {
        const char *src = nfv_embedded_source_find(program);
        if (!src) return nfv_fail(NFV_ERR_INVALID_ARG, "no embedded kernel program \"%s\" (cl/%s.cl)", program, program);
        cl_program prog;
        char label[160];
        snprintf(label, sizeof label, "cl/%s.cl", program);
        NFV_TRY(nfv_program_build_source(ctx, label, src, options, &prog));
        if (ctx->program_count == ctx->program_cap) {
            int cap = ctx->program_cap ? 2 * ctx->program_cap : 16;
            nfv_program_entry *p = realloc(ctx->programs, cap * sizeof *p);
            if (!p) {
                clReleaseProgram(prog);
                return nfv_fail(NFV_ERR_NO_MEMORY, "program table: out of memory");
            }
            ctx->programs = p;
            ctx->program_cap = cap;
        }
        e = &ctx->programs[ctx->program_count++];
        memset(e, 0, sizeof *e);
        e->key = strdup(key);
        e->program = prog;
    }
    for (int i = 0; i < e->kernel_count; i++)
        if (!strcmp(e->kernels[i].name, kernel_name)) {
            *out = e->kernels[i].kernel;
            return NFV_OK;
        }
    cl_int err;
    cl_kernel k = clCreateKernel(e->program, kernel_name, &err);
    if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateKernel", kernel_name, __FILE__, __LINE__);
    void *grown = realloc(e->kernels, (e->kernel_count + 1) * sizeof *e->kernels);
    if (!grown) {
        clReleaseKernel(k);
        return nfv_fail(NFV_ERR_NO_MEMORY, "kernel table: out of memory");
    }
    e->kernels = grown;
    e->kernels[e->kernel_count].name = strdup(kernel_name);
    e->kernels[e->kernel_count].kernel = k;
    e->kernel_count++;
    *out = k;
    return NFV_OK;
}

void nfv_programs_release(nfv_context *ctx)
{
    for (int i = 0; i < ctx->program_count; i++) {
        nfv_program_entry *e = &ctx->programs[i];
        for (int j = 0; j < e->kernel_count; j++) {
            clReleaseKernel(e->kernels[j].kernel);
            free(e->kernels[j].name);
        }
        free(e->kernels);
        clReleaseProgram(e->program);
        free(e->key);
    }
    free(ctx->programs);
    ctx->programs = NULL;
    ctx->program_count = ctx->program_cap = 0;
}
