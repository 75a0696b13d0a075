/* Runtime: device selection, build-log errors, the program binary cache. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/context.h"
#include "neurofv/ops.h"
#include "test.h"

TEST(runtime_device_selection)
{
    nfv_device_info *list;
    int n;
    if (!CHECK_OK(nfv_devices_list(&list, &n))) return;
    int defaults = 0, has_cpu = 0;
    for (int i = 0; i < n; i++) {
        defaults += list[i].is_default;
        has_cpu |= list[i].is_cpu;
    }
    CHECK(defaults == 1, "exactly one default device, got %d", defaults);
    CHECK(has_cpu, "the CPU (PoCL) device is listed");

    nfv_context *ctx = NULL;
    char spec[32];
    snprintf(spec, sizeof spec, "%d:%d", list[0].platform_index, list[0].device_index);
    if (CHECK_OK(nfv_context_create(spec, &ctx)))
        CHECK(!strcmp(nfv_context_device_info(ctx)->name, list[0].name), "P:D selects %s", list[0].name);
    nfv_context_free(ctx);
    ctx = NULL;
    if (has_cpu && CHECK_OK(nfv_context_create("cpu", &ctx)))
        CHECK(nfv_context_device_info(ctx)->is_cpu, "\"cpu\" selects a CPU device");
    nfv_context_free(ctx);

    /* A name substring, case-insensitive. */
    char sub[8];
    snprintf(sub, sizeof sub, "%.4s", list[0].name);
    for (char *p = sub; *p; p++) *p = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    ctx = NULL;
    if (CHECK_OK(nfv_context_create(sub, &ctx)))
        CHECK(strstr(nfv_context_device_info(ctx)->name, list[0].name) != NULL ||
                  nfv_context_device_info(ctx)->name[0] != 0,
              "substring selects a device");
    nfv_context_free(ctx);

    ctx = NULL;
    nfv_status s = nfv_context_create("no-such-device-xyz", &ctx);
    CHECK(s == NFV_ERR_NO_DEVICE && ctx == NULL, "unknown device name rejected");
    CHECK(strstr(nfv_error_message(), "no-such-device-xyz") != NULL, "message names the request: %s",
          nfv_error_message());
    s = nfv_context_create("7:9", &ctx);
    CHECK(s == NFV_ERR_NO_DEVICE, "out-of-range P:D rejected");
    free(list);
}

TEST(runtime_build_log_on_failure)
{
    nfv_context *ctx = test_ctx();
    cl_program prog = NULL;
    const char *broken = "__kernel void broken_kernel(__global float *x) { x[0] = undefined_symbol_q; }\n";
    nfv_status s = nfv_program_build_source(ctx, "broken.cl", broken, "", &prog);
    CHECK(s == NFV_ERR_BUILD, "broken source fails with NFV_ERR_BUILD, got %s", nfv_status_name(s));
    CHECK(strstr(nfv_error_message(), "broken.cl") != NULL, "message names the program: %.200s", nfv_error_message());
    CHECK(strstr(nfv_error_message(), "undefined_symbol_q") != NULL, "message carries the build log: %.400s",
          nfv_error_message());
    if (prog) clReleaseProgram(prog);
}

static int build_counting(const char *src, nfv_cache_stats *stats)
{
    nfv_context *ctx = NULL;
    if (!CHECK_OK(nfv_context_create(NULL, &ctx))) return 0;
    cl_program prog = NULL;
    int ok = CHECK_OK(nfv_program_build_source(ctx, "cache-test", src, "-DCACHE_TEST=1", &prog));
    if (prog) clReleaseProgram(prog);
    *stats = nfv_context_cache_stats(ctx);
    nfv_context_free(ctx);
    return ok;
}

TEST(runtime_binary_cache)
{
    char dir[512], cmd[1200];
    snprintf(dir, sizeof dir, "%s/cache", test_tmpdir());
    const char *old = getenv("XDG_CACHE_HOME");
    char *saved = old ? strdup(old) : NULL;
    setenv("XDG_CACHE_HOME", dir, 1);
    char src[256];
    snprintf(src, sizeof src, "__kernel void add_one(__global float *x) { x[get_global_id(0)] += 1.0f; } /* %d */\n",
             rand());
    nfv_cache_stats st;
    if (build_counting(src, &st))
        CHECK(st.built_from_source == 1 && st.loaded_from_disk == 0, "first run builds from source (%d, %d)",
              st.built_from_source, st.loaded_from_disk);
    if (build_counting(src, &st))
        CHECK(st.loaded_from_disk == 1 && st.built_from_source == 0, "second run loads the cached binary (%d, %d)",
              st.built_from_source, st.loaded_from_disk);
    /* Corrupt every cache file: flip bytes in the payload. */
    snprintf(cmd, sizeof cmd,
             "for f in '%s'/neurofv/*.bin; do printf 'garbage' | dd of=\"$f\" bs=1 seek=40 conv=notrunc; done", dir);
    CHECK(test_run(cmd, NULL) == 0, "corrupting the cache files");
    if (build_counting(src, &st))
        CHECK(st.rejected_entries == 1 && st.built_from_source == 1, "corrupt entry rejected and rebuilt (%d, %d)",
              st.rejected_entries, st.built_from_source);
    /* Truncated file. */
    snprintf(cmd, sizeof cmd, "for f in '%s'/neurofv/*.bin; do truncate -s 30 \"$f\"; done", dir);
    CHECK(test_run(cmd, NULL) == 0, "truncating the cache files");
    if (build_counting(src, &st))
        CHECK(st.rejected_entries == 1 && st.built_from_source == 1, "truncated entry rejected and rebuilt (%d, %d)",
              st.rejected_entries, st.built_from_source);
    if (build_counting(src, &st))
        CHECK(st.loaded_from_disk == 1, "rebuilt entry is used again (%d)", st.loaded_from_disk);
    if (saved) {
        setenv("XDG_CACHE_HOME", saved, 1);
        free(saved);
    } else {
        unsetenv("XDG_CACHE_HOME");
    }
}

/* nfv_device_fma_peak builds cl/peak.cl, checks every work-item's result
 * (a chain that did not run as written is an error) and returns a rate: no
 * threshold on it, speed is the benchmarks' business. */
TEST(runtime_fma_peak_measures_a_checked_rate)
{
    nfv_context *ctx = test_ctx();
    double gflops = -1;
    if (CHECK_OK(nfv_device_fma_peak(ctx, &gflops)))
        CHECK(gflops > 0 && isfinite(gflops), "a positive, finite rate: %g GFLOP/s", gflops);
}

/* MAC() of cl/common.cl is one rounding where the device reports hardware
 * fused multiply-add (the host builds with -DNFV_FMA=1), as the conv
 * kernels' speed depends on: with a = x = 1 + 2^-23 and y = -(1 + 2^-22),
 * a * x + y is 2^-46 exactly, and 0 when the product is rounded first.
 * Checked through axpy (y = MAC(a, x, y)), on whole vectors and on the
 * scalar tail. */
TEST(runtime_mac_is_fused_where_the_device_has_fma)
{
    nfv_context *ctx = test_ctx();
    const float a = 1.0f + 0x1p-23f;
    enum { N = 37 };
    float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = a, y[i] = -(1.0f + 0x1p-22f);
    int shape[1] = {N};
    nfv_tensor tx, ty;
    memset(&tx, 0, sizeof tx), memset(&ty, 0, sizeof ty);
    if (CHECK_OK(test_tensor(&tx, 1, shape, x)) && CHECK_OK(test_tensor(&ty, 1, shape, y)) &&
        CHECK_OK(nfv_axpy(ctx, a, &tx, &ty))) {
        float *got = test_download(&ty);
        const float fused = 0x1p-46f;
        const int fma = nfv_context_device_info(ctx)->has_fma;
        int bad = 0, first = -1;
        for (int i = 0; got && i < N; i++)
            if (fma ? got[i] != fused : (got[i] != fused && got[i] != 0.0f)) bad++, first = first < 0 ? i : first;
        CHECK(got && bad == 0, "%d of %d elements wrong, first [%d] = %g; want %g%s", bad, N, first,
              first >= 0 ? got[first] : 0.0, fused, fma ? " (the device has fma)" : " or 0");
        free(got);
    }
    nfv_tensor_free(&tx), nfv_tensor_free(&ty);
}

TEST(runtime_tensor_roundtrip_and_errors)
{
    nfv_context *ctx = test_ctx();
    nfv_tensor t;
    int shape[5] = {2, 3, 7, 9, 11};
    if (!CHECK_OK(nfv_tensor_create(ctx, &t, 5, shape))) return;
    float *h = test_random(t.numel, 1, -1, 1);
    float *back = malloc(t.numel * sizeof *back);
    CHECK_OK(nfv_tensor_upload(ctx, &t, h));
    CHECK_OK(nfv_tensor_download(ctx, &t, back));
    CHECK(memcmp(h, back, t.numel * sizeof *h) == 0, "upload/download round trip is exact");
    CHECK_OK(nfv_tensor_fill(ctx, &t, 2.5f));
    CHECK_OK(nfv_tensor_download(ctx, &t, back));
    int all = 1;
    for (size_t i = 0; i < t.numel; i++) all &= back[i] == 2.5f;
    CHECK(all, "fill sets every element");
    nfv_tensor v;
    int flat[2] = {2, 3 * 7 * 9 * 11};
    CHECK_OK(nfv_tensor_view(&t, &v, 2, flat));
    int bad[2] = {5, 5};
    CHECK(nfv_tensor_view(&t, &v, 2, bad) == NFV_ERR_INVALID_ARG, "view of wrong numel rejected");
    int zero[1] = {0};
    nfv_tensor z;
    CHECK(nfv_tensor_create(ctx, &z, 1, zero) == NFV_ERR_INVALID_ARG, "zero-size tensor rejected");
    nfv_tensor_free(&t);
    free(h);
    free(back);
}

TEST(runtime_devices_command)
{
    char cmd[600], out[600];
    snprintf(out, sizeof out, "%s/devices.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s devices", test_bin());
    CHECK(test_run(cmd, out) == 0, "neurofv devices exits 0");
    FILE *f = fopen(out, "r");
    char buf[4096] = "";
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    CHECK(strchr(buf, '*') != NULL && strstr(buf, "CPU") != NULL, "devices marks a default and lists the CPU: %s",
          buf);
    snprintf(cmd, sizeof cmd, "%s no-such-command", test_bin());
    CHECK(test_run(cmd, NULL) == 2, "unknown command exits 2");
    snprintf(cmd, sizeof cmd, "%s devices --help", test_bin());
    CHECK(test_run(cmd, NULL) == 0, "devices --help exits 0");
}

TEST(runtime_kernel_config_profiles_and_refusals)
{
    nfv_device_info cpu = {0}, gpu = {0};
    snprintf(cpu.name, sizeof cpu.name, "test CPU");
    cpu.is_cpu = 1, cpu.preferred_vector_width_float = 8, cpu.max_work_group_size = 4096;
    cpu.local_mem_bytes = 512 * 1024;
    snprintf(gpu.name, sizeof gpu.name, "test GPU");
    gpu.is_gpu = 1, gpu.preferred_vector_width_float = 1, gpu.max_work_group_size = 256;
    gpu.local_mem_bytes = 32 * 1024;
    nfv_kernel_config c;
    CHECK_OK(nfv_kernel_config_parse(NULL, &cpu, &c));
    CHECK(c.vector_width == 8 && c.reduction_chunk == 4096 && c.max_local == 0 && c.conv_unroll == 0 &&
              c.conv_march == 16 && c.conv_cvec == 16,
          "AVX2 CPU default: vec %d chunk %d unroll %d march %d cvec %d", c.vector_width, c.reduction_chunk,
          c.conv_unroll, c.conv_march, c.conv_cvec);
    CHECK_OK(nfv_kernel_config_parse("", &gpu, &c));
    CHECK(c.vector_width == 4 && c.reduction_chunk == 1024 && c.conv_unroll == 1 && c.conv_march == 0 &&
              c.conv_cvec == 0,
          "GPU default: vec %d chunk %d unroll %d march %d cvec %d", c.vector_width, c.reduction_chunk, c.conv_unroll,
          c.conv_march, c.conv_cvec);
    CHECK_OK(nfv_kernel_config_parse("amd,unroll=0,march=4,cvec=8", &gpu, &c));
    CHECK(c.conv_unroll == 0 && c.max_local == 256 && c.conv_march == 4 && c.conv_cvec == 8,
          "unroll=0,march=4,cvec=8 after a profile: unroll %d local %zu march %d cvec %d", c.conv_unroll, c.max_local,
          c.conv_march, c.conv_cvec);
    CHECK_OK(nfv_kernel_config_parse("amd,vec=16,chunk=256", &cpu, &c));
    CHECK(c.vector_width == 16 && c.reduction_chunk == 256 && c.max_local == 256,
          "profile then overrides: vec %d chunk %d local %zu", c.vector_width, c.reduction_chunk, c.max_local);
    const char *bad[] = {"vec=5", "vec=", "chunk=100", "local=3", "tpu", "vec=4,speed=9", "local=-4", "unroll=2",
                         "march=-1", "march=257", "cvec=-1", "cvec=17"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(nfv_kernel_config_parse(bad[i], &cpu, &c) == NFV_ERR_INVALID_ARG &&
                  strstr(nfv_error_message(), "NEUROFV_KERNEL_CONFIG"),
              "\"%s\" is refused naming the variable: %s", bad[i], nfv_error_message());
    /* What the device cannot run is refused before any launch. */
    CHECK(nfv_kernel_config_parse("nvidia", &gpu, &c) == NFV_ERR_INVALID_ARG &&
              strstr(nfv_error_message(), "1024") && strstr(nfv_error_message(), "test GPU"),
          "work-groups of 1024 on a 256 device are refused: %s", nfv_error_message());
    gpu.local_mem_bytes = 1024;
    CHECK(nfv_kernel_config_parse("amd", &gpu, &c) == NFV_ERR_INVALID_ARG &&
              strstr(nfv_error_message(), "local memory"),
          "work-groups whose __local scratch exceeds local memory are refused: %s", nfv_error_message());
}
