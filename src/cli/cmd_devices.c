/* `neurofv devices`: list OpenCL devices and mark the default. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "neurofv/context.h"
#include "neurofv/dist.h"

NFV_COMMAND(devices, "devices", "List OpenCL devices and mark the one a plain run uses")

/* Under mpirun: one line per rank, in rank order, naming the device that
 * rank's context takes (node rank mod the node's GPUs, else the CPU). */
static int print_rank_devices(const char *spec)
{
    nfv_context *ctx = NULL;
    nfv_status s = nfv_context_create(spec, &ctx);
    int failed = nfv_dist_any_failed(s != NFV_OK);
    for (int r = 0; r < nfv_dist_size(); r++) {
        if (r == nfv_dist_rank()) {
            if (ctx) {
                const nfv_device_info *d = nfv_context_device_info(ctx);
                printf("rank %d of %d (node rank %d of %d): %d:%d %s %s\n", r, nfv_dist_size(), nfv_dist_local_rank(),
                       nfv_dist_local_size(), d->platform_index, d->device_index,
                       d->is_gpu ? "GPU" : d->is_cpu ? "CPU" : "ACC", d->name);
            } else {
                printf("rank %d of %d: no device: %s\n", r, nfv_dist_size(), nfv_error_message());
            }
            fflush(stdout);
        }
        nfv_dist_barrier();
    }
    nfv_context_free(ctx);
    return failed ? 1 : 0;
}

int cmd_devices(int argc, char **argv)
{
    const char *device = NULL;
    const cli_option opts[] = {{"--device", CLI_STRING, &device, "DEV",
                                "under mpirun: the device each rank would take for this --device"},
                               {0}};
    int r = cli_parse("devices", "", "List every OpenCL platform/device as P:D; '*' marks the default "
                                     "(first GPU, else the CPU device).  Choose another with --device P:D, "
                                     "gpu, cpu or a name substring, or NEUROFV_DEVICE.  The kernel line shows "
                                     "what the kernels use there; NEUROFV_KERNEL_CONFIG forces a profile (cpu-avx512, "
                                     "cpu-avx2, gpu, nvidia, amd, intel) and/or vec=4|8|16, chunk=N, local=N.  Under mpirun "
                                     "(a build with MPI=1) each rank prints the device it takes: its rank on the node "
                                     "modulo the node's GPUs, else the CPU device.",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (nfv_dist_size() > 1) return print_rank_devices(device);
    nfv_device_info *list;
    int n;
    nfv_status s = nfv_devices_list(&list, &n);
    if (s) return cli_fail("devices", s);
    char cache[1024], path[1200];
    nfv_default_cache_dir(cache, sizeof cache);
    nfv_tuning_path(cache, path, sizeof path);
    for (int i = 0; i < n; i++) {
        const nfv_device_info *d = &list[i];
        printf("%c %d:%d  %-4s %s  [%s; %s]\n", d->is_default ? '*' : ' ', d->platform_index, d->device_index,
               d->is_gpu ? "GPU" : d->is_cpu ? "CPU" : "ACC", d->name, d->platform_name, d->device_version);
        printf("        %u compute units, %.1f GiB global (%.1f GiB per buffer), %llu KiB local, max work-group %zu, "
               "float vector %u, %s\n",
               d->compute_units, (double)d->global_mem_bytes / (1024.0 * 1024 * 1024),
               (double)d->max_mem_alloc_bytes / (1024.0 * 1024 * 1024), d->local_mem_bytes / 1024,
               d->max_work_group_size, d->preferred_vector_width_float,
               d->has_fma ? "fused multiply-add" : "no hardware fused multiply-add (kernels use mad)");
        nfv_kernel_config kc;
        char spec[128], why[1400], line[1600];
        int tuned = nfv_tuning_lookup(cache, d, spec, sizeof spec, why, sizeof why);
        if (tuned > 0) snprintf(line, sizeof line, "tuned: %s (%s)", spec[0] ? spec : "the defaults were fastest", path);
        else if (tuned == 0) snprintf(line, sizeof line, "not tuned (neurofv tune --device %d:%d)", d->platform_index,
                                      d->device_index);
        else snprintf(line, sizeof line, "tuning file ignored: %s", why);
        printf("        %s\n", line);
        /* What a run uses: NEUROFV_KERNEL_CONFIG, else the tuned entry, else the table. */
        const char *env = getenv("NEUROFV_KERNEL_CONFIG");
        const char *use = env && env[0] ? env : tuned > 0 && spec[0] ? spec : NULL;
        if (nfv_kernel_config_parse(use, d, &kc) == NFV_OK)
            printf("        kernels: %s (vec %d, chunk %d, work-groups up to %zu, conv taps %s, 1-channel conv %s, "
                   "few-position convs %s)\n",
                   kc.name, kc.vector_width, kc.reduction_chunk, kc.max_local ? kc.max_local : d->max_work_group_size,
                   kc.conv_unroll ? "all unrolled" : "unrolled per kd plane", kc.conv_march ? "marching" : "by rows",
                   kc.conv_cvec ? "channels in lanes" : "by rows");
        else
            printf("        kernels: %s\n", nfv_error_message());
    }
    free(list);
    return 0;
}
