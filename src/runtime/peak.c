/* The device's attainable fp32 multiply-add rate (cl/peak.cl), for the
 * "% peak" columns of the benchmarks.  Measured rather than computed from
 * the reported clock: PoCL reports the base clock (2.09 GHz on the 2-vCPU
 * EPYC of the README, whose cores ran at about 3.2), so compute units x
 * clock x lanes x 2 FMA pipes x 2 said 268 GFLOP/s where this kernel
 * reaches about 415, and conv kernels measured "107 % of peak". */
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "neurofv/tensor.h"
#include "runtime/internal.h"

/* Work-items per compute unit: enough to fill a GPU's multiprocessor, and
 * on a CPU about 2 ms of work per core at 400 GFLOP/s per 2 cores. */
#define PEAK_ITEMS_PER_CU 2048
#define PEAK_ITERS 2048
#define PEAK_CHAINS 12 /* cl/peak.cl */
#define PEAK_REPS 5

nfv_status nfv_device_fma_peak(nfv_context *ctx, double *gflops)
{
    *gflops = 0.0;
    const nfv_device_info *info = nfv_context_device_info(ctx);
    const int vec = nfv_context_vector_width(ctx);
    char opts[64];
    snprintf(opts, sizeof opts, "-DVEC=%d -DPEAK_ITERS=%d", vec, PEAK_ITERS);
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "peak", opts, "fma_peak", &k));
    const size_t items = (size_t)(info->compute_units ? info->compute_units : 1) * PEAK_ITEMS_PER_CU;
    nfv_tensor out;
    NFV_TRY(nfv_tensor_create_dims(ctx, &out, 1, (int)items));
    float *host = malloc(items * sizeof *host);
    nfv_status st = host ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "fma_peak: out of memory");
    const float a = 0.5f, b = 1.0f;
    cl_int err;
    if (!st && ((err = clSetKernelArg(k, 0, sizeof out.buf, &out.buf)) || (err = clSetKernelArg(k, 1, sizeof a, &a)) ||
                (err = clSetKernelArg(k, 2, sizeof b, &b))))
        st = nfv_cl_fail(err, "clSetKernelArg", "fma_peak", __FILE__, __LINE__);
    size_t local = 64;
    const size_t *lp = local <= nfv_kernel_max_local(ctx, k) ? &local : NULL;
    double t[PEAK_REPS];
    /* One untimed launch first: the first run of a kernel pays for thread
     * start-up and page faults. */
    for (int r = -1; r < PEAK_REPS && !st; r++) {
        double t0 = nfv_seconds();
        st = nfv_kernel_launch(ctx, k, 1, &items, lp);
        if (!st) st = nfv_finish(ctx);
        if (r >= 0) t[r] = nfv_seconds() - t0;
    }
    if (!st) st = nfv_tensor_download(ctx, &out, host);
    /* Every lane of every chain ends at 2 (cl/peak.cl): anything else means
     * the loop did not run as written. */
    const float want = 2.0f * PEAK_CHAINS * (float)vec;
    for (size_t i = 0; i < items && !st; i++)
        if (host[i] != want)
            st = nfv_fail(NFV_ERR_OPENCL, "fma_peak on %s: work-item %zu gave %g, expected %g", info->name, i,
                          (double)host[i], (double)want);
    if (!st) {
        const double flop = (double)items * PEAK_ITERS * PEAK_CHAINS * vec * 2.0, med = nfv_median_sort(t, PEAK_REPS);
        *gflops = med > 0 ? flop / med * 1e-9 : 0.0;
    }
    free(host);
    nfv_tensor_free(&out);
    return st;
}
