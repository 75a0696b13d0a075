/* Kernel configurations: the per-device table and NEUROFV_KERNEL_CONFIG.
 *
 * What the table can choose for a device is small and explicit: the vector
 * width of the fast kernels (-DVEC), the BatchNorm reduction chunk (-DCHUNK),
 * a cap on work-group sizes, whether the fast convs unroll all their taps
 * (-DKD_UNROLL), how far the one-output-channel conv marches (-DMARCH) and
 * how many positions the channels-in-lanes convs take (-DCVP).  Any of them can be forced on any device,
 * so the configurations a GPU would get run (and are tested) on the CPU:
 *
 *   NEUROFV_KERNEL_CONFIG=nvidia              a named profile
 *   NEUROFV_KERNEL_CONFIG=vec=4,local=64      single settings
 *   NEUROFV_KERNEL_CONFIG=amd,vec=8           a profile, then overrides
 *   NEUROFV_KERNEL_CONFIG=mem=512M            the memory checks see a device of
 *                                             512 MiB (also at most 512 MiB per
 *                                             buffer); nothing is allocated
 *
 * A setting the device cannot run (a work-group larger than the device
 * allows, __local scratch larger than its local memory) is refused with a
 * message when the context is created, never launched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"

/* The profiles.  local = 0 means "the device's own limit".  The GPU rows are
 * what the table picks for those devices (vector width 4 and a 1024-float
 * BatchNorm chunk on every GPU; work-group caps of the vendors' typical
 * limits: 1024 on NVIDIA, 256 on AMD and Intel).
 * unroll: on PoCL (LLVM 15, x86) unrolling all 27 taps of a 3x3x3 conv let
 * the scheduler hoist every tap's loads and spill the accumulators (900-
 * 2,200 zmm stack moves per kernel in the disassembly); keeping the kd loop
 * removed them and made the ref4 visualization and training steps faster
 * (README, performance).  GPUs keep the full unroll: on an H200 the kd loop
 * ran `neurofv tune`'s workload 5 % slower (0.87 against 0.83 ms).
 * march: the one-output-channel conv (conv1's input gradient) marching
 * through 16 output planes per work-item with its input in channel rows
 * (cl/conv3d.cl, conv3d_fwd_co1): on PoCL 80-90 -> ~200 GFLOP/s.  GPUs keep
 * the row kernel, measured on the H200; a march of MARCH planes per
 * work-item would also leave a GPU MARCH times fewer work-items.
 * cvec: output channels in the lanes for layers of few positions, 16
 * positions per work-item (cl/conv3d_cvec.cl, conv3d_fwd_cvec): on PoCL
 * ResNet-18's training step 1.2-1.4x faster (README, performance).  Not
 * measured on a GPU, where a 2^3 layer at batch 1 would make work-groups of
 * one work-item: GPUs keep the other kernels until `neurofv tune` or a
 * measurement says otherwise. */
static const nfv_kernel_config profiles[] = {
    {"cpu-avx512", 16, 4096, 0, 0, 16, 16, 0},
    {"cpu-avx2", 8, 4096, 0, 0, 16, 16, 0},
    {"gpu", 4, 1024, 0, 1, 0, 0, 0},
    {"nvidia", 4, 1024, 1024, 1, 0, 0, 0},
    {"amd", 4, 1024, 256, 1, 0, 0, 0},
    {"intel", 4, 1024, 256, 1, 0, 0, 0},
};
enum { PROFILE_COUNT = (int)(sizeof profiles / sizeof profiles[0]) };

/* Floats of __local scratch the reduction kernels take per work-item (loss,
 * linear and BatchNorm reductions keep up to three floats each). */
#define LOCAL_FLOATS_PER_ITEM 3

nfv_kernel_config nfv_kernel_config_default(const nfv_device_info *info)
{
    if (info->is_cpu) {
        /* PoCL reports the native SIMD width in floats (16 with AVX-512, 8 with AVX2). */
        return profiles[info->preferred_vector_width_float >= 16 ? 0 : 1];
    }
    return profiles[2];
}

static int is_power_of_two(long v) { return v > 0 && (v & (v - 1)) == 0; }

/* Smallest mem=BYTES accepted: below 1 MiB no model runs, so it is a typo. */
#define MEM_MIN_BYTES (1ULL << 20)

/* mem=BYTES with an optional K, M or G (binary) suffix. */
static nfv_status parse_mem(const char *item, const char *v, unsigned long long *out)
{
    char *end = NULL;
    unsigned long long b = (*v >= '0' && *v <= '9') ? strtoull(v, &end, 10) : 0;
    int shift = 0;
    if (end && (*end == 'K' || *end == 'k')) shift = 10, end++;
    else if (end && (*end == 'M' || *end == 'm')) shift = 20, end++;
    else if (end && (*end == 'G' || *end == 'g')) shift = 30, end++;
    if (!end || end == v || *end || b > (~0ULL >> shift))
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "NEUROFV_KERNEL_CONFIG: \"%s\": mem=BYTES takes a whole number of bytes, optionally with a "
                        "K, M or G suffix (e.g. mem=512M)",
                        item);
    b <<= shift;
    if (b < MEM_MIN_BYTES)
        return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: mem=%llu bytes is below the minimum of 1M", b);
    *out = b;
    return NFV_OK;
}

static nfv_status apply_setting(nfv_kernel_config *c, const char *item)
{
    for (int i = 0; i < PROFILE_COUNT; i++)
        if (!strcmp(item, profiles[i].name)) {
            unsigned long long mem = c->mem_bytes; /* a profile says nothing about memory */
            *c = profiles[i];
            c->mem_bytes = mem;
            return NFV_OK;
        }
    const char *eq = strchr(item, '=');
    if (eq && eq - item == 3 && !strncmp(item, "mem", 3)) return parse_mem(item, eq + 1, &c->mem_bytes);
    char *end = NULL;
    long v = eq ? strtol(eq + 1, &end, 10) : 0;
    if (!eq || end == eq + 1 || *end)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "NEUROFV_KERNEL_CONFIG: \"%s\" is neither a profile (cpu-avx512, cpu-avx2, gpu, nvidia, amd, "
                        "intel) nor vec=N, chunk=N, local=N, unroll=0|1, march=N, cvec=N or mem=BYTES",
                        item);
    size_t key = (size_t)(eq - item);
    if (key == 3 && !strncmp(item, "vec", 3)) {
        if (v != 4 && v != 8 && v != 16)
            return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: vec=%ld (the kernels take 4, 8 or 16)", v);
        c->vector_width = (int)v;
    } else if (key == 5 && !strncmp(item, "chunk", 5)) {
        if (!is_power_of_two(v) || v < 64 || v > 65536)
            return nfv_fail(NFV_ERR_INVALID_ARG,
                            "NEUROFV_KERNEL_CONFIG: chunk=%ld (a power of two from 64 to 65536)", v);
        c->reduction_chunk = (int)v;
    } else if (key == 5 && !strncmp(item, "local", 5)) {
        if (!is_power_of_two(v) || v > 65536)
            return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: local=%ld (a power of two up to 65536)", v);
        c->max_local = (size_t)v;
    } else if (key == 6 && !strncmp(item, "unroll", 6)) {
        if (v != 0 && v != 1)
            return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: unroll=%ld (0 or 1)", v);
        c->conv_unroll = (int)v;
    } else if (key == 5 && !strncmp(item, "march", 5)) {
        if (v < 0 || v > 256)
            return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: march=%ld (0 to 256 output planes)", v);
        c->conv_march = (int)v;
    } else if (key == 4 && !strncmp(item, "cvec", 4)) {
        if (v < 0 || v > 16)
            return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: cvec=%ld (0 = off, or 1 to 16 positions)", v);
        c->conv_cvec = (int)v;
    } else {
        return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: unknown setting \"%.*s\" (vec, chunk, local, unroll, march, cvec, mem)",
                        (int)key, item);
    }
    return NFV_OK;
}

nfv_status nfv_kernel_config_parse(const char *spec, const nfv_device_info *info, nfv_kernel_config *out)
{
    nfv_kernel_config c = nfv_kernel_config_default(info);
    if (spec && *spec) {
        char buf[256];
        if (snprintf(buf, sizeof buf, "%s", spec) >= (int)sizeof buf)
            return nfv_fail(NFV_ERR_INVALID_ARG, "NEUROFV_KERNEL_CONFIG: longer than %zu characters", sizeof buf - 1);
        char *save = NULL;
        for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save))
            NFV_TRY(apply_setting(&c, item));
        snprintf(c.name, sizeof c.name, "%s", spec);
    }
    /* What this device cannot run is refused here, not at launch. */
    size_t device_local = info->max_work_group_size ? info->max_work_group_size : 1;
    if (c.max_local > device_local)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "kernel config %s: work-groups of %zu exceed %s's limit of %zu work-items", c.name,
                        c.max_local, info->name, device_local);
    size_t local = c.max_local ? c.max_local : device_local;
    unsigned long long need = (unsigned long long)local * LOCAL_FLOATS_PER_ITEM * sizeof(float);
    if (info->local_mem_bytes && need > info->local_mem_bytes)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "kernel config %s: work-groups of %zu need %llu bytes of local memory, %s has %llu", c.name,
                        local, need, info->name, info->local_mem_bytes);
    if (c.mem_bytes && info->global_mem_bytes && c.mem_bytes > info->global_mem_bytes)
        return nfv_fail(NFV_ERR_INVALID_ARG, "kernel config %s: mem=%llu bytes is more than %s has (%llu bytes)",
                        c.name, c.mem_bytes, info->name, info->global_mem_bytes);
    *out = c;
    return NFV_OK;
}
