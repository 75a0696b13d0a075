/* `neurofv bench-kernels`: time the layer kernels on the ref4 shapes.
 *
 * For each ref4 layer (2 mm grid: 1->8 at 91x109x91, 8->16 at 45x54x45,
 * 16->32 at 22x27x22, 32->64 at 11x13x11; 3x3x3, stride 1, pad 1) and batch:
 * conv3d forward, backward-input, backward-weights (+ bias), then maxpool3d 2
 * forward/backward and batchnorm3d (train) forward/backward on the conv's
 * output.  Each op is warmed up, then timed --reps times, each time enqueued
 * alone and waited for with clFinish; the median is reported. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/rng.h"
#include "bench.h"
#include "cli.h"
#include "neurofv/ops.h"
#include "base/clock.h"

NFV_COMMAND(bench_kernels, "bench-kernels", "time the conv3d, maxpool3d and batchnorm3d kernels on the ref4 shapes")

typedef struct ref4_layer {
    int ci, co, d, h, w;
} ref4_layer;

static const ref4_layer REF4[4] = {
    {1, 8, 91, 109, 91},
    {8, 16, 45, 54, 45},
    {16, 32, 22, 27, 22},
    {32, 64, 11, 13, 11},
};

/* Everything one layer's ops need, allocated once per (layer, batch). */
typedef struct bench_bufs {
    nfv_conv3d_params cp;
    nfv_pool3d_params pp;
    nfv_tensor x, w, b, y, dy, dx, dw, db;
    nfv_tensor pooled, argmax, dpooled, dpool_in;
    nfv_tensor gamma, beta, rmean, rvar, bn_out, smean, sinv, dbn, dgamma, dbeta;
} bench_bufs;

typedef enum op_kind {
    OP_CONV_FWD, OP_CONV_BWD_INPUT, OP_CONV_BWD_INPUT_STAGED, OP_CONV_BWD_WEIGHTS, OP_POOL_FWD, OP_POOL_BWD,
    OP_POOL_BWD_GATED, OP_BN_FWD, OP_BN_BWD
} op_kind;

/* "bwd-input staged": the input gradient's kernel alone, on dy's padded copy
 * as the unstaged op leaves it.  In a visualization or eval-mode backward
 * the max pool's backward writes that copy (nfv_conv3d_stage_input_grad),
 * so this is what the program runs; "bwd-input" adds the padding copy. */
static const char *OP_NAMES[] = {"conv3d fwd", "conv3d bwd-input", "conv3d bwd-input staged", "conv3d bwd-weights",
                                 "maxpool3d fwd", "maxpool3d bwd", "maxpool3d bwd gated", "batchnorm3d fwd",
                                 "batchnorm3d bwd"};

static nfv_status run_op(nfv_context *ctx, bench_bufs *B, op_kind op)
{
    switch (op) {
    case OP_CONV_FWD: return nfv_conv3d_forward(ctx, &B->cp, &B->x, &B->w, &B->b, &B->y);
    case OP_CONV_BWD_INPUT: return nfv_conv3d_backward_input(ctx, &B->cp, &B->dy, &B->w, &B->dx);
    case OP_CONV_BWD_INPUT_STAGED: return nfv_conv3d_backward_input_staged(ctx, &B->cp, &B->dy, &B->w, &B->dx);
    case OP_CONV_BWD_WEIGHTS: return nfv_conv3d_backward_weights(ctx, &B->cp, &B->x, &B->dy, &B->dw, &B->db);
    case OP_POOL_FWD: return nfv_maxpool3d_forward(ctx, &B->pp, &B->y, &B->pooled, &B->argmax);
    case OP_POOL_BWD: return nfv_maxpool3d_backward(ctx, &B->pp, &B->dpooled, &B->argmax, &B->dpool_in);
    case OP_POOL_BWD_GATED: {
        nfv_tensor staged;
        nfv_conv3d_staging layout;
        NFV_TRY(nfv_conv3d_stage_input_grad(ctx, &B->cp, &B->y, &B->w, &B->x, &staged, &layout));
        return nfv_maxpool3d_backward_gated_padded(ctx, &B->pp, &B->dpooled, &B->argmax, &B->y, &layout, &staged);
    }
    case OP_BN_FWD:
        return nfv_batchnorm3d_forward_train(ctx, &B->y, &B->gamma, &B->beta, &B->rmean, &B->rvar, 0.1f, 1e-5f,
                                             &B->bn_out, &B->smean, &B->sinv);
    case OP_BN_BWD:
        return nfv_batchnorm3d_backward_train(ctx, &B->y, &B->dy, &B->gamma, &B->smean, &B->sinv, &B->dbn,
                                              &B->dgamma, &B->dbeta);
    }
    return NFV_ERR_INVALID_ARG;
}

static void bufs_free(bench_bufs *B)
{
    nfv_tensor *all[] = {&B->x,      &B->w,      &B->b,     &B->y,     &B->dy,    &B->dx,     &B->dw,
                         &B->db,     &B->pooled, &B->argmax, &B->dpooled, &B->dpool_in, &B->gamma, &B->beta,
                         &B->rmean,  &B->rvar,   &B->bn_out, &B->smean, &B->sinv,  &B->dbn,    &B->dgamma,
                         &B->dbeta};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nfv_tensor_free(all[i]);
}

static nfv_status fill_random(nfv_context *ctx, nfv_tensor *t, unsigned seed, float lo, float hi)
{
    float *h = malloc(t->numel * sizeof *h);
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "bench-kernels: out of host memory");
    uint64_t s = seed;
    for (size_t i = 0; i < t->numel; i++) h[i] = lo + (hi - lo) * (float)nfv_uniform01(&s);
    nfv_status st = nfv_tensor_upload(ctx, t, h);
    free(h);
    return st;
}

static nfv_status bufs_create(nfv_context *ctx, const ref4_layer *L, int batch, bench_bufs *B)
{
    memset(B, 0, sizeof *B);
    for (int i = 0; i < 3; i++) {
        B->cp.kernel[i] = 3, B->cp.stride[i] = 1, B->cp.padding[i] = 1;
        B->pp.kernel[i] = 2, B->pp.stride[i] = 2, B->pp.padding[i] = 0;
    }
    int xs[5] = {batch, L->ci, L->d, L->h, L->w}, ys[5] = {batch, L->co, L->d, L->h, L->w};
    int ws[5] = {L->co, L->ci, 3, 3, 3}, cs[1] = {L->co};
    int ps[5] = {batch, L->co, L->d / 2, L->h / 2, L->w / 2};
    NFV_TRY(nfv_tensor_create(ctx, &B->x, 5, xs));
    NFV_TRY(nfv_tensor_create(ctx, &B->w, 5, ws));
    NFV_TRY(nfv_tensor_create(ctx, &B->b, 1, cs));
    NFV_TRY(nfv_tensor_create(ctx, &B->y, 5, ys));
    NFV_TRY(nfv_tensor_create(ctx, &B->dy, 5, ys));
    NFV_TRY(nfv_tensor_create(ctx, &B->dx, 5, xs));
    NFV_TRY(nfv_tensor_create(ctx, &B->dw, 5, ws));
    NFV_TRY(nfv_tensor_create(ctx, &B->db, 1, cs));
    NFV_TRY(nfv_tensor_create(ctx, &B->pooled, 5, ps));
    NFV_TRY(nfv_tensor_create(ctx, &B->argmax, 5, ps));
    NFV_TRY(nfv_tensor_create(ctx, &B->dpooled, 5, ps));
    NFV_TRY(nfv_tensor_create(ctx, &B->dpool_in, 5, ys));
    nfv_tensor *per_channel[] = {&B->gamma, &B->beta, &B->rmean, &B->rvar, &B->smean, &B->sinv, &B->dgamma, &B->dbeta};
    for (size_t i = 0; i < sizeof per_channel / sizeof per_channel[0]; i++)
        NFV_TRY(nfv_tensor_create(ctx, per_channel[i], 1, cs));
    NFV_TRY(nfv_tensor_create(ctx, &B->bn_out, 5, ys));
    NFV_TRY(nfv_tensor_create(ctx, &B->dbn, 5, ys));
    NFV_TRY(fill_random(ctx, &B->x, 1, -1, 1));
    NFV_TRY(fill_random(ctx, &B->w, 2, -0.2f, 0.2f));
    NFV_TRY(fill_random(ctx, &B->b, 3, -0.1f, 0.1f));
    NFV_TRY(fill_random(ctx, &B->y, 4, -1, 1));
    NFV_TRY(fill_random(ctx, &B->dy, 5, -1, 1));
    NFV_TRY(fill_random(ctx, &B->dpooled, 6, -1, 1));
    NFV_TRY(nfv_tensor_fill(ctx, &B->gamma, 1.0f));
    NFV_TRY(nfv_tensor_fill(ctx, &B->rvar, 1.0f));
    /* argmax must hold valid indices before the pool backward runs alone. */
    NFV_TRY(nfv_maxpool3d_forward(ctx, &B->pp, &B->y, &B->pooled, &B->argmax));
    NFV_TRY(run_op(ctx, B, OP_BN_FWD));
    return nfv_finish(ctx);
}

/* CPU seconds used by this process, all threads (PoCL's workers included). */
static double cpu_seconds(void)
{
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return 0.0;
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

/* Median wall seconds and median process CPU seconds of reps timed runs after
 * warmup untimed ones.  On a machine shared with other jobs the wall time
 * grows with contention; the CPU time much less, so both are shown. */
static nfv_status time_op(nfv_context *ctx, bench_bufs *B, op_kind op, int warmup, int reps, double *median,
                          double *cpu_median, double *best)
{
    double *t = malloc(2 * (size_t)reps * sizeof *t), *c = t ? t + reps : NULL;
    if (!t) return nfv_fail(NFV_ERR_NO_MEMORY, "bench-kernels: out of host memory");
    /* The staged op reads the padded copy the unstaged one writes into the
     * context's scratch, which every other conv op overwrites. */
    nfv_status st = op == OP_CONV_BWD_INPUT_STAGED ? run_op(ctx, B, OP_CONV_BWD_INPUT) : NFV_OK;
    for (int i = 0; i < warmup && st == NFV_OK; i++) {
        st = run_op(ctx, B, op);
        if (st == NFV_OK) st = nfv_finish(ctx);
    }
    for (int i = 0; i < reps && st == NFV_OK; i++) {
        double t0 = nfv_seconds(), c0 = cpu_seconds();
        st = run_op(ctx, B, op);
        if (st == NFV_OK) st = nfv_finish(ctx);
        t[i] = nfv_seconds() - t0;
        c[i] = cpu_seconds() - c0;
    }
    if (st == NFV_OK) {
        *median = nfv_median_sort(t, reps);
        *cpu_median = nfv_median_sort(c, reps);
        *best = t[0]; /* sorted */
    } else {
        nfv_fail_context(st, "%s", OP_NAMES[op]);
    }
    free(t);
    return st;
}

/* Parse "1,4" into up to max positive ints; 0 on success. */
static int parse_list(const char *s, int *out, int max, int *count)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || n >= max) return 1;
        out[n++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return 1;
    }
    *count = n;
    return n == 0;
}

int cmd_bench_kernels(int argc, char **argv)
{
    const char *device = NULL, *batch_s = "1,4", *layers_s = "1,2,3,4";
    int reps = 10, warmup = 2;
    const cli_option opts[] = {
        {"--device", CLI_STRING, &device, "DEV", "OpenCL device: gpu, cpu, P:D or a name substring (default: $NEUROFV_DEVICE, else first GPU, else CPU)"},
        {"--batch", CLI_STRING, &batch_s, "LIST", "batch sizes, comma-separated (default 1,4)"},
        {"--layers", CLI_STRING, &layers_s, "LIST", "ref4 layers 1-4, comma-separated (default 1,2,3,4)"},
        {"--reps", CLI_INT, &reps, "N", "timed repetitions per op; the median is shown (default 10)"},
        {"--warmup", CLI_INT, &warmup, "N", "untimed runs first, which also build the kernels (default 2)"},
        {NULL, 0, NULL, NULL, NULL},
    };
    int r = cli_parse("bench-kernels", "[options]",
                      "Time conv3d (forward, backward-input with its padding copy and staged, backward-weights),\n"
                      "maxpool3d 2 and batchnorm3d (train) on the ref4 layer shapes at 2 mm (3x3x3 convs,\n"
                      "stride 1, pad 1): 1->8 at 91x109x91, 8->16 at 45x54x45, 16->32 at 22x27x22, 32->64\n"
                      "at 11x13x11.  Each op is timed alone\n"
                      "(enqueue + clFinish); the table shows the median, GFLOP/s (2 x multiply-adds) for conv and\n"
                      "GB/s of compulsory traffic (each tensor read or written once) for pool and batchnorm,\n"
                      "and the share of the device's measured fp32 peak (cl/peak.cl).",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    int batches[8], nb, layers[4], nl;
    if (parse_list(batch_s, batches, 8, &nb))
        return cli_failf("bench-kernels", "--batch %s: expected up to 8 positive integers like 1,4", batch_s);
    if (parse_list(layers_s, layers, 4, &nl))
        return cli_failf("bench-kernels", "--layers %s: expected numbers 1-4 like 1,2", layers_s);
    for (int i = 0; i < nl; i++)
        if (layers[i] > 4) return cli_failf("bench-kernels", "--layers %s: ref4 has layers 1-4", layers_s);
    if (reps < 1 || warmup < 0) return cli_failf("bench-kernels", "--reps must be >= 1 and --warmup >= 0");

    nfv_context *ctx;
    nfv_status st = nfv_context_create(device, &ctx);
    if (st != NFV_OK) return cli_fail("bench-kernels", st);
    const nfv_device_info *di = nfv_context_device_info(ctx);
    const int vec = nfv_context_vector_width(ctx);
    /* Memory bandwidth cannot be queried from OpenCL, so GB/s has no share. */
    const char *peak_how;
    const double peak_gflops = bench_device_peak(ctx, 0.0, &peak_how);
    printf("device: %s (%u compute units, %u MHz, vector width %d)\n", di->name, di->compute_units,
           di->max_clock_mhz, vec);
    if (peak_gflops > 0) printf("fp32 peak: %.0f GFLOP/s (%s)\n", peak_gflops, peak_how);
    else printf("fp32 peak: %s\n", peak_how);
    printf("median of %d runs after %d warm-up runs, each enqueued alone and waited for\n\n", reps, warmup);
    printf("cpu ms: CPU time of this process (all threads) per run, median.  On a machine shared with\n"
           "other jobs the wall time (and the rate computed from it) grows with contention; cpu ms / %u\n"
           "is what the wall time would be with every compute unit to ourselves; min ms (the fastest run)\n"
           "and its rate are the least disturbed figures.  rate and %% peak come from the median.\n\n",
           di->compute_units);
    printf("%-5s %-21s %-23s %10s %9s %15s %7s %8s %8s\n", "batch", "layer", "op", "median ms", "cpu ms", "rate",
           "% peak", "min ms", "min rate");

    int rc = 0;
    for (int bi = 0; bi < nb && !rc; bi++)
        for (int li = 0; li < nl && !rc; li++) {
            const ref4_layer *L = &REF4[layers[li] - 1];
            const int batch = batches[bi];
            bench_bufs B;
            st = bufs_create(ctx, L, batch, &B);
            if (st != NFV_OK) {
                nfv_fail_context(st, "layer %d batch %d", layers[li], batch);
                rc = cli_fail("bench-kernels", st);
                bufs_free(&B);
                break;
            }
            const double vox = (double)L->d * L->h * L->w;
            const double conv_flop = 2.0 * batch * L->co * L->ci * 27.0 * vox;
            const double act = (double)batch * L->co * vox * 4.0; /* bytes of one activation tensor */
            char label[64];
            snprintf(label, sizeof label, "conv%d %d->%d %dx%dx%d", layers[li], L->ci, L->co, L->d, L->h, L->w);
            for (int op = OP_CONV_FWD; op <= OP_BN_BWD; op++) {
                double sec = 0, cpu = 0, best = 0;
                st = time_op(ctx, &B, (op_kind)op, warmup, reps, &sec, &cpu, &best);
                if (st != NFV_OK) {
                    rc = cli_fail("bench-kernels", st);
                    break;
                }
                double rate, work;
                const char *unit;
                const int is_conv = op <= OP_CONV_BWD_WEIGHTS;
                if (is_conv) {
                    work = conv_flop * 1e-9, unit = "GFLOP/s";
                } else {
                    /* Compulsory bytes: pool fwd reads y, writes pooled +
                     * argmax (1/8 each); pool bwd reads dpooled + argmax,
                     * writes dx (gated: the same, dx's padding not counted);
                     * batchnorm fwd reads x, writes y; bwd reads x and dy,
                     * writes dx. */
                    double bytes = op == OP_POOL_FWD || op == OP_POOL_BWD || op == OP_POOL_BWD_GATED
                                       ? act * (1 + 2.0 / 8)
                                   : op == OP_BN_FWD ? act * 2
                                                     : act * 3;
                    work = bytes * 1e-9, unit = "GB/s";
                }
                rate = work / sec;
                char rate_s[32], best_s[32], share[16] = "-";
                snprintf(rate_s, sizeof rate_s, "%.1f %s", rate, unit);
                snprintf(best_s, sizeof best_s, "%.1f", work / best);
                if (is_conv && peak_gflops > 0) snprintf(share, sizeof share, "%.0f%%", 100.0 * rate / peak_gflops);
                printf("%-5d %-21s %-23s %10.3f %9.3f %15s %7s %8.3f %8s\n", batch, label, OP_NAMES[op], sec * 1e3,
                       cpu * 1e3, rate_s, share, best * 1e3, best_s);
                fflush(stdout);
            }
            bufs_free(&B);
        }
    nfv_context_free(ctx);
    return rc;
}
