/* Choosing the visualization batch by measurement.
 *
 * A run's results do not depend on its batch (each sample draws its own
 * noise and transforms from (seed, target, start)), only its time does, and
 * which batch is cheaper per sample depends on the device: on an H200 a
 * batch of 8 costs 0.40x the batch-1 step per sample; on a 2-core CPU
 * through PoCL 0.96-1.23x, since batch 1 already keeps both cores busy and
 * eight volumes' activations outgrow the L3 cache.  No device type or vendor
 * name predicts it, so when the user gives no --batch, a few steps of the
 * run's own options are timed at batch 1 and at the largest batch that fits,
 * and the cheaper per sample-step is kept. */
#include <string.h>

#include "base/clock.h"
#include "neurofv/vis.h"

enum {
    PROBE_STEPS = 4, /* per batch; the first (buffers, first touch, kernel builds) is not timed */
    PROBE_SETUP = 3, /* what a call's set-up and first step cost beyond a step, in steps (measured: a batch of 8
                      * of ref4 at 2 mm, Fourier parameter, on 2 CPU cores: 0.7 s for 1 step, then 0.2 s a step) */
};

int nfv_vis_batch_probe_cost(int batch) { return (PROBE_STEPS + PROBE_SETUP) * (1 + batch); }

int nfv_vis_batch_worth_probing(int samples, int steps, int batch)
{
    /* Probing only pays when the run is long enough that its cost, at most
     * the cost of the probe's sample-steps, stays under a tenth of it. */
    return batch > 1 && samples > 1 && 10.0 * nfv_vis_batch_probe_cost(batch) <= (double)samples * steps;
}

int nfv_vis_batch_pick(const nfv_vis_batch_probe *p)
{
    /* Batch 1 only when clearly cheaper: within 5 % the larger batch keeps
     * fewer launches and, on a shared machine, less sensitivity to noise. */
    return p->ms_per_sample[0] < 0.95 * p->ms_per_sample[1] ? p->batch[0] : p->batch[1];
}

typedef struct probe_clock {
    double last;
    double *t;
    int n, cap;
} probe_clock;

static void probe_tick(void *user, int b, int nb, int step, int steps, const float *obj, int n)
{
    (void)b, (void)nb, (void)steps, (void)obj, (void)n;
    probe_clock *c = user;
    double now = nfv_seconds();
    if (step > 1 && c->n < c->cap) c->t[c->n++] = now - c->last;
    c->last = now;
}

nfv_status nfv_vis_probe_batch(nfv_context *ctx, nfv_model *m, const nfv_target *target, const nfv_vis_options *o,
                               int batch, nfv_vis_batch_probe *p)
{
    memset(p, 0, sizeof *p);
    p->batch[0] = 1;
    p->batch[1] = batch;
    p->chosen = batch;
    if (batch <= 1) return NFV_OK;
    enum { TIMED = PROBE_STEPS - 1 };
    double times[2][TIMED];
    probe_clock clk[2] = {{0, times[0], 0, TIMED}, {0, times[1], 0, TIMED}};
    for (int k = 0; k < 2; k++) {
        /* The run's options on its first target, `b` starts in one batch;
         * nothing the probe computes is kept. */
        nfv_vis_options po = *o;
        po.steps = PROBE_STEPS;
        po.starts = po.batch = p->batch[k];
        po.diversity = 0;
        po.log_every = 1;
        po.snapshot_count = 0;
        po.gif = 0;
        nfv_vis_result *res = NULL;
        clk[k].last = nfv_seconds();
        nfv_status st = nfv_visualize(ctx, m, target, 1, &po, probe_tick, &clk[k], &res);
        if (res) nfv_vis_results_free(res, 1);
        if (st) return nfv_fail_context(st, "timing batch %d against batch 1", batch);
    }
    for (int k = 0; k < 2; k++) {
        if (clk[k].n < 1)
            return nfv_fail(NFV_ERR_UNSUPPORTED, "timing batch %d: the visualization reported no step", p->batch[k]);
        p->ms_per_sample[k] = 1e3 * nfv_median_sort(clk[k].t, clk[k].n) / p->batch[k];
    }
    p->chosen = nfv_vis_batch_pick(p);
    return NFV_OK;
}
