/* The gradient methods (saliency, gradient x input, SmoothGrad, integrated
 * gradients), the batch they share, and nfv_explain's dispatch; formulas
 * in include/neurofv/explain.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "explain/explain_internal.h"

static const char *const method_names[NFV_EXPLAIN_METHODS] = {
    "saliency", "gradxinput", "smoothgrad", "integrated-gradients", "occlusion", "gradcam"};

const char *nfv_explain_method_name(nfv_explain_method m)
{
    return (unsigned)m < NFV_EXPLAIN_METHODS ? method_names[m] : "?";
}

nfv_status nfv_explain_method_parse(const char *s, nfv_explain_method *out)
{
    for (int i = 0; i < NFV_EXPLAIN_METHODS; i++)
        if (s && !strcmp(s, method_names[i])) return *out = (nfv_explain_method)i, NFV_OK;
    if (s && !strcmp(s, "ig")) return *out = NFV_EXPLAIN_IG, NFV_OK;
    return nfv_fail(NFV_ERR_INVALID_ARG,
                    "unknown attribution method \"%s\" (saliency, gradxinput, smoothgrad, integrated-gradients, occlusion, gradcam)",
                    s ? s : "(null)");
}

void nfv_explain_options_default(nfv_explain_options *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 8;
    o->seed = 1;
    o->smooth_samples = 16;
    o->smooth_noise = 0.1f;
    o->ig_steps = 64;
    o->occlusion_box = 8;
    o->occlusion_stride = 4;
    o->cam_layer = -1;
}

/* ---- the batch ---------------------------------------------------------- */

nfv_status explain_batch_init(explain_batch *b, nfv_context *ctx, nfv_model *m, int B)
{
    memset(b, 0, sizeof *b);
    b->ctx = ctx, b->m = m, b->B = B;
    b->per = (size_t)nfv_shape_numel(4, m->input_shape);
    int shape[5] = {B, m->input_shape[0], m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    b->host_x = malloc((size_t)B * b->per * sizeof(float));
    b->host_dx = malloc((size_t)B * b->per * sizeof(float));
    b->objective = malloc((size_t)B * sizeof(float));
    b->tg = calloc((size_t)B, sizeof *b->tg);
    if (!b->host_x || !b->host_dx || !b->objective || !b->tg)
        return nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory for a batch of %d", B);
    NFV_TRY(nfv_tensor_create(ctx, &b->x, 5, shape));
    return nfv_tensor_create(ctx, &b->dx, 5, shape);
}

void explain_batch_free(explain_batch *b)
{
    nfv_tensor_free(&b->x);
    nfv_tensor_free(&b->dx);
    free(b->host_x), free(b->host_dx), free(b->objective), free(b->tg);
    memset(b, 0, sizeof *b);
}

nfv_status explain_batch_run(explain_batch *b, int k, int want_grad)
{
    for (int i = k; i < b->B; i++) {
        memcpy(b->host_x + (size_t)i * b->per, b->host_x + (size_t)(k - 1) * b->per, b->per * sizeof(float));
        b->tg[i] = b->tg[k - 1];
    }
    NFV_TRY(nfv_tensor_upload(b->ctx, &b->x, b->host_x));
    NFV_TRY(nfv_vis_input_gradient(b->ctx, b->m, b->tg, b->B, &b->x, b->objective, want_grad ? &b->dx : NULL));
    return want_grad ? nfv_tensor_download(b->ctx, &b->dx, b->host_dx) : NFV_OK;
}

/* ---- methods ------------------------------------------------------------ */

/* Saliency and gradient x input: the inputs themselves, B at a time. */
static nfv_status plain_gradients(explain_batch *b, nfv_explain_method method, const nfv_target *targets, int n,
                                  const float *x, float *maps, float *objective)
{
    for (int i0 = 0; i0 < n; i0 += b->B) {
        int k = n - i0 < b->B ? n - i0 : b->B;
        memcpy(b->host_x, x + (size_t)i0 * b->per, (size_t)k * b->per * sizeof(float));
        memcpy(b->tg, targets + i0, (size_t)k * sizeof *b->tg);
        NFV_TRY(explain_batch_run(b, k, 1));
        for (int i = 0; i < k; i++) {
            const float *g = b->host_dx + (size_t)i * b->per, *xi = x + (size_t)(i0 + i) * b->per;
            float *a = maps + (size_t)(i0 + i) * b->per;
            for (size_t v = 0; v < b->per; v++) a[v] = method == NFV_EXPLAIN_SALIENCY ? fabsf(g[v]) : xi[v] * g[v];
            if (objective) objective[i0 + i] = b->objective[i];
        }
    }
    return NFV_OK;
}

/* max - min of one input. */
static float value_range(const float *x, size_t n)
{
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    return hi - lo;
}

/* SmoothGrad (samples noisy copies) or integrated gradients (steps points
 * on the path from the baseline) of one input: the mean gradient over the
 * copies, B copies per device call, into map; IG then multiplies by x - b. */
static nfv_status averaged_gradient(explain_batch *b, nfv_explain_method method, const nfv_target *t,
                                    const float *x, const float *baseline, const nfv_explain_options *o, float *map)
{
    int total = method == NFV_EXPLAIN_SMOOTHGRAD ? o->smooth_samples : o->ig_steps;
    double *sum = calloc(b->per, sizeof *sum);
    if (!sum) return nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    float sd = o->smooth_noise * value_range(x, b->per);
    /* The noise stream is keyed by the input's bytes, so a subject gets the
     * same map whichever batch or shard it is explained in. */
    uint64_t stream = nfv_hash64(x, b->per * sizeof *x, 0);
    nfv_status s = NFV_OK;
    for (int c0 = 0; c0 < total && !s; c0 += b->B) {
        int k = total - c0 < b->B ? total - c0 : b->B;
        for (int c = 0; c < k; c++) {
            float *row = b->host_x + (size_t)c * b->per;
            b->tg[c] = *t;
            if (method == NFV_EXPLAIN_SMOOTHGRAD) {
                /* One stream per (seed, input, sample): the same map whatever the batch. */
                nfv_rng r;
                nfv_rng_seed(&r, o->seed, stream, (uint64_t)(c0 + c));
                for (size_t v = 0; v < b->per; v++) row[v] = x[v] + sd * (float)nfv_rng_normal(&r);
            } else {
                float alpha = ((float)(c0 + c) + 0.5f) / (float)total;
                for (size_t v = 0; v < b->per; v++) {
                    float base = baseline ? baseline[v] : 0.0f;
                    row[v] = base + alpha * (x[v] - base);
                }
            }
        }
        s = explain_batch_run(b, k, 1);
        for (int c = 0; c < k && !s; c++)
            for (size_t v = 0; v < b->per; v++) sum[v] += b->host_dx[(size_t)c * b->per + v];
    }
    for (size_t v = 0; v < b->per && !s; v++) {
        double g = sum[v] / total;
        map[v] = (float)(method == NFV_EXPLAIN_IG ? (x[v] - (baseline ? baseline[v] : 0.0f)) * g : g);
    }
    free(sum);
    return s;
}

/* f(x) of each input, B at a time. */
static nfv_status objectives(explain_batch *b, const nfv_target *targets, int n, const float *x, float *objective)
{
    for (int i0 = 0; i0 < n; i0 += b->B) {
        int k = n - i0 < b->B ? n - i0 : b->B;
        memcpy(b->host_x, x + (size_t)i0 * b->per, (size_t)k * b->per * sizeof(float));
        memcpy(b->tg, targets + i0, (size_t)k * sizeof *b->tg);
        NFV_TRY(explain_batch_run(b, k, 0));
        memcpy(objective + i0, b->objective, (size_t)k * sizeof *objective);
    }
    return NFV_OK;
}

static nfv_status check_options(const nfv_model *m, const nfv_explain_options *o)
{
    if (m->input_shape[0] != 1)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "explain: the model takes %d input channels; attribution maps need 1",
                        m->input_shape[0]);
    if (o->batch < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "explain: batch %d must be >= 1", o->batch);
    if (o->smooth_samples < 1 || !(o->smooth_noise >= 0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "explain: smoothgrad needs samples >= 1 and noise >= 0 (got %d, %g)",
                        o->smooth_samples, (double)o->smooth_noise);
    if (o->ig_steps < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "explain: integrated gradients need steps >= 1 (got %d)", o->ig_steps);
    if (o->occlusion_box < 1 || o->occlusion_stride < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "explain: occlusion box and stride must be >= 1 voxel (got %d, %d)",
                        o->occlusion_box, o->occlusion_stride);
    return NFV_OK;
}

/* nfv_explain, with the weights frozen. */
static nfv_status explain_frozen(nfv_context *ctx, nfv_model *m, nfv_explain_method method, const nfv_target *targets,
                                 int n, const float *x, const float *baseline, const nfv_explain_options *o,
                                 float *maps, float *objective)
{
    if (method == NFV_EXPLAIN_GRADCAM) return explain_gradcam(ctx, m, targets, n, x, o, maps, objective);
    int B = method == NFV_EXPLAIN_SALIENCY || method == NFV_EXPLAIN_GRADXINPUT ? (n < o->batch ? n : o->batch) : o->batch;
    explain_batch b;
    nfv_status s = explain_batch_init(&b, ctx, m, B);
    if (!s && (method == NFV_EXPLAIN_SALIENCY || method == NFV_EXPLAIN_GRADXINPUT))
        s = plain_gradients(&b, method, targets, n, x, maps, objective);
    else if (!s && method == NFV_EXPLAIN_OCCLUSION)
        for (int i = 0; i < n && !s; i++)
            s = explain_occlusion(&b, &targets[i], x + (size_t)i * b.per, baseline, o, maps + (size_t)i * b.per,
                                  objective ? &objective[i] : NULL);
    else if (!s) {
        for (int i = 0; i < n && !s; i++)
            s = averaged_gradient(&b, method, &targets[i], x + (size_t)i * b.per, baseline, o,
                                  maps + (size_t)i * b.per);
        if (!s && objective) s = objectives(&b, targets, n, x, objective);
    }
    explain_batch_free(&b);
    return s;
}

nfv_status nfv_explain(nfv_context *ctx, nfv_model *m, nfv_explain_method method, const nfv_target *targets, int n,
                       const float *x, const float *baseline, const nfv_explain_options *o, float *maps,
                       float *objective)
{
    NFV_TRY(check_options(m, o));
    if (n < 1) return NFV_OK;
    if ((unsigned)method >= NFV_EXPLAIN_METHODS)
        return nfv_fail(NFV_ERR_INVALID_ARG, "explain: method %d is not a method", (int)method);
    /* Every method runs the model many times (integrated gradients' steps,
     * SmoothGrad's samples, occlusion's boxes) with the same weights: what
     * is derived from them (folded BatchNorms, flipped and channel-last
     * copies) is made once, as nfv_visualize does. */
    nfv_context_freeze_weights(ctx, 1);
    nfv_status s = explain_frozen(ctx, m, method, targets, n, x, baseline, o, maps, objective);
    nfv_context_freeze_weights(ctx, 0);
    return s;
}
