/* Device memory of a run, counted before it starts; see the "Device memory"
 * section of include/neurofv/model.h.
 *
 * Every count below mirrors one allocation, and names where it happens:
 *   nfv_model_alloc_params (model.c)   parameters + gradients, BN running stats
 *   nfv_model_set_batch (model_run.c)  outputs, argmax / dropout mask / BN
 *                                      statistics, grad_a and grad_b; the
 *                                      conv, BN and ReLU outputs only where a
 *                                      forward writes them (model_run.c)
 *   conv3d.c, conv3d_wgrad.c           scratch slots: padded input (forward,
 *                                      weight gradient) or padded dy (input
 *                                      gradient), flipped weights, partial sums,
 *                                      dy at the padded pitch (flat weight
 *                                      gradient)
 *   batchnorm.c                        per-call partial sums (training only)
 *   train.c                            trainer x, targets, dout, loss, class
 *                                      weights; Adam m, v / SGD velocity;
 *                                      nfv_model_predict's input batch
 * tests/test_memory.c compares these counts with what the OpenCL driver is
 * asked for (clCreateBuffer) in real runs. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "model/model_run.h"
#include "neurofv/dist.h"
#include "neurofv/train.h"

#define MIB (1024.0 * 1024.0)

static const char *const part_names[NFV_MEM_PARTS] = {"weights",     "gradients", "optimizer", "activations",
                                                      "backward",    "batch",     "scratch"};

const char *nfv_memory_part_name(nfv_memory_part p)
{
    return (int)p >= 0 && p < NFV_MEM_PARTS ? part_names[p] : "?";
}

unsigned long long nfv_tensor_bytes(size_t numel) { return ((unsigned long long)numel + 64ULL) * sizeof(float); }

void nfv_memory_add(nfv_memory_estimate *e, nfv_memory_part p, unsigned long long bytes, const char *what, ...)
{
    if ((int)p < 0 || p >= NFV_MEM_PARTS) return;
    e->part[p] += bytes;
    e->total += bytes;
    if (bytes > e->largest) {
        e->largest = bytes;
        va_list ap;
        va_start(ap, what);
        vsnprintf(e->largest_what, sizeof e->largest_what, what, ap);
        va_end(ap);
    }
}

const char *nfv_memory_parts_text(const nfv_memory_estimate *e, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    for (int p = 0; p < NFV_MEM_PARTS && used < cap; p++) {
        if (!e->part[p]) continue;
        int w = snprintf(buf + used, cap - used, "%s%s %.1f", used ? ", " : "", part_names[p], e->part[p] / MIB);
        if (w > 0) used += (size_t)w;
    }
    return buf;
}

/* ---- the model ------------------------------------------------------------ */

/* The largest size each scratch slot or per-call buffer reaches (floats),
 * and what asked for it. */
enum { SL_PADDED, SL_FLIPPED, SL_WPART, SL_BPART, SL_PITCHED, SL_BN, SL_PHASES, SL_PHASE_W, SL_CHANNEL_LAST, SL_COUNT };
typedef struct scratch_max {
    size_t floats[SL_COUNT];
    char what[SL_COUNT][160];
    int frozen;           /* weights frozen (a visualization): flipped weights and weight phases are kept per layer */
    const nfv_kernel_config *kc; /* the context's: which convs take the channels-in-lanes kernels */
    size_t predict_kept_floats;  /* training: what a validation pass (nfv_model_predict, weights frozen)
                                  * keeps on top of the training step's buffers: the forward's weight
                                  * phases and channel-last copies */
    size_t kept_floats;   /* their sum */
} scratch_max;


static void grow(scratch_max *s, int slot, size_t floats, const nfv_layer *l, const char *use)
{
    if (floats <= s->floats[slot]) return;
    s->floats[slot] = floats;
    snprintf(s->what[slot], sizeof s->what[slot], "layer %d (%s) %s", l->index, l->name, use);
}

/* Flipped weights of an input gradient: the scratch slot, or while the
 * weights are frozen a copy kept per layer (nfv_context_freeze_weights). */
static void flipped(scratch_max *s, size_t floats, const nfv_layer *l, const char *use)
{
    if (s->frozen) s->kept_floats += floats;
    else grow(s, SL_FLIPPED, floats, l, use);
}

/* The channel-last copy of a conv's weights (floats) that conv3d_fwd_cvec
 * reads, where nfv_conv3d_channel_last says it runs: the scratch slot, or
 * while the weights are frozen a copy kept per weight. */
static void channel_last(scratch_max *s, int co, const int in[3], const int pad[3], const int out[3],
                         int stride_h, size_t floats, const nfv_layer *l, const char *use, int forward)
{
    if (!nfv_conv3d_channel_last(s->kc, co, in, pad, out, stride_h)) return;
    if (s->frozen) s->kept_floats += floats;
    else grow(s, SL_CHANNEL_LAST, floats, l, use);
    if (!s->frozen && forward) s->predict_kept_floats += floats;
}

/* What conv3d_strided.c takes for a strided layer l (batch n): the conv
 * over phases, whose own fast paths take the rest. */
static void strided_scratch(const nfv_layer *l, int vec, int n, int fwd, int wgrad, int dgrad, scratch_max *s)
{
    const int *k = l->spec.kernel, *st = l->spec.stride, out[3] = {l->out_shape[1], l->out_shape[2], l->out_shape[3]};
    const int co = l->spec.features;
    for (int x_only = 1; x_only >= 0; x_only--) {
        if (x_only ? !(fwd || wgrad) || st[2] == 1 : !dgrad) continue;
        const nfv_conv3d_phase_shape ph =
            nfv_conv3d_phase_shape_of(l->in_shape + 1, k, st, l->spec.padding, out, x_only);
        const int ci = l->in_shape[0] * ph.phases, *m = ph.kernel;
        const size_t data = (size_t)n * ci * ph.len[0] * ph.len[1] * ph.len[2];
        const size_t weights = (size_t)co * ci * m[0] * m[1] * m[2];
        grow(s, SL_PHASES, data, l, x_only ? "input phases" : "input-gradient phases");
        if (x_only && s->frozen) s->kept_floats += weights; /* a visualization's forward keeps them */
        else grow(s, SL_PHASE_W, weights, l, "weight phases");
        if (x_only && !s->frozen && fwd) s->predict_kept_floats += weights; /* and a validation pass's */
        if (x_only && fwd)
            channel_last(s, co, ph.len, ph.pad, out, ph.stride[1], weights, l, "channel-last weight phases", 1);
        if (!x_only) {
            const int tp[3] = {m[0] - 1, m[1] - 1, m[2] - 1};
            channel_last(s, ci, out, tp, ph.len, 1, weights, l, "channel-last flipped weight phases", 0);
        }
        if (x_only) {
            grow(s, SL_PADDED, nfv_conv3d_padded_floats(vec, n, ci, ph.len, ph.pad, m, ph.stride), l,
                 "padded input phases");
            if (wgrad && m[2] <= 5) {
                if (!nfv_conv3d_weights_channel_last(s->kc, co, m, out, ph.len[2] + 2 * ph.pad[2], ph.stride[1]))
                    grow(s, SL_WPART, nfv_conv3d_weight_partial_floats(n, co, ci, m, out), l,
                         "weight-gradient partial sums");
                grow(s, SL_PITCHED,
                     nfv_conv3d_pitched_dy_floats(s->kc, n, co, m, out, ph.len[2] + 2 * ph.pad[2], ph.stride[1]), l,
                     "pitched output gradient");
            }
        } else {
            const int tp[3] = {m[0] - 1, m[1] - 1, m[2] - 1}, one[3] = {1, 1, 1};
            flipped(s, weights, l, "flipped weight phases");
            grow(s, SL_PADDED, nfv_conv3d_padded_floats(vec, n, co, out, tp, m, one), l, "padded output gradient");
        }
    }
}

/* What conv3d.c's fast paths take for layer l (batch n).  fwd: the forward;
 * wgrad: weight (and bias) gradients; dgrad: the input gradient. */
static void conv_scratch(const nfv_layer *l, int vec, int n, int fwd, int wgrad, int dgrad, scratch_max *s)
{
    const nfv_layer_spec *sp = &l->spec;
    const int *k = sp->kernel, *st = sp->stride, *p = sp->padding;
    int ci = l->in_shape[0], co = sp->features, od = l->out_shape[1], oh = l->out_shape[2], ow = l->out_shape[3];
    size_t kvol = (size_t)k[0] * k[1] * k[2];
    size_t xpad = nfv_conv3d_padded_floats(vec, n, ci, l->in_shape + 1, p, k, st);
    const int strided = st[0] != 1 || st[1] != 1 || st[2] != 1;
    if (strided) strided_scratch(l, vec, n, fwd, wgrad && st[2] != 1, dgrad, s);
    if (fwd && st[2] == 1) {
        const int out_dims[3] = {od, oh, ow};
        grow(s, SL_PADDED, xpad, l, "padded input");
        channel_last(s, co, l->in_shape + 1, p, out_dims, st[1], (size_t)co * ci * kvol, l, "channel-last weights",
                     1);
    }
    if (wgrad) {
        if (st[2] == 1 && k[2] <= 5) {
            const int out_dims[3] = {od, oh, ow};
            grow(s, SL_PADDED, xpad, l, "padded input");
            if (!nfv_conv3d_weights_channel_last(s->kc, co, k, out_dims, l->in_shape[3] + 2 * p[2], st[1]))
                grow(s, SL_WPART, nfv_conv3d_weight_partial_floats(n, co, ci, k, out_dims), l,
                     "weight-gradient partial sums");
            grow(s, SL_PITCHED,
                 nfv_conv3d_pitched_dy_floats(s->kc, n, co, k, out_dims, l->in_shape[3] + 2 * p[2], st[1]),
                 l, "pitched output gradient");
        }
        if (sp->bias) grow(s, SL_BPART, (size_t)n * od * co, l, "bias-gradient partial sums");
    }
    int fast = dgrad;
    for (int i = 0; i < 3; i++) fast &= st[i] == 1 && p[i] <= k[i] - 1;
    if (fast) {
        /* A forward over dy (n, co, od, oh, ow) padded by k - 1 - p. */
        int tp[3] = {k[0] - 1 - p[0], k[1] - 1 - p[1], k[2] - 1 - p[2]};
        int dims[3] = {od, oh, ow};
        /* channel-last flipped weights where the channels fill the lanes, else the flipped copy */
        if (nfv_conv3d_channel_last(s->kc, ci, dims, tp, l->in_shape + 1, 1))
            channel_last(s, ci, dims, tp, l->in_shape + 1, 1, (size_t)co * ci * kvol, l,
                         "channel-last flipped weights", 0);
        else flipped(s, (size_t)co * ci * kvol, l, "flipped weights");
        grow(s, SL_PADDED, nfv_conv3d_padded_floats(vec, n, co, dims, tp, k, st), l, "padded output gradient");
    }
}

/* batchnorm.c's per-call partial sums and coefficients (training only). */
static void bn_scratch(const nfv_layer *l, const nfv_context *ctx, int n, scratch_max *s)
{
    size_t c = (size_t)l->in_shape[0], sp = (size_t)l->in_shape[1] * l->in_shape[2] * l->in_shape[3];
    size_t chunk = (size_t)nfv_context_kernel_config(ctx)->reduction_chunk;
    size_t P = (sp + chunk - 1) / chunk;
    /* forward: 3 C N P + 4 C; backward: 2 C N P + 6 C; one call at a time. */
    size_t fwd = 3 * c * n * P + 4 * c, bwd = 2 * c * n * P + 6 * c;
    grow(s, SL_BN, fwd > bwd ? fwd : bwd, l, "batchnorm partial sums");
}

/* Parameters, gradients, BN running statistics: nfv_model_alloc_params. */
static void model_params(const nfv_model *m, nfv_memory_estimate *e)
{
    for (int i = 0; i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        for (int p = 0; p < l->nparams; p++) {
            int sh[5];
            size_t numel = nfv_shape_numel(nfv_model_param_shape(l, p, sh), sh);
            nfv_memory_add(e, NFV_MEM_WEIGHTS, nfv_tensor_bytes(numel), "layer %d (%s) %s", i, l->name,
                           p ? "bias" : "weight");
            nfv_memory_add(e, NFV_MEM_GRADIENTS, nfv_tensor_bytes(numel), "layer %d (%s) %s gradient", i, l->name,
                           p ? "bias" : "weight");
        }
        if (l->spec.kind == NFV_LAYER_BATCHNORM3D)
            nfv_memory_add(e, NFV_MEM_WEIGHTS, 2 * nfv_tensor_bytes((size_t)l->in_shape[0]),
                           "layer %d (%s) running statistics", i, l->name);
    }
}

/* The layers whose output an eval-mode run up to upto writes (fused as
 * nfv_vis_input_gradient runs it: the ends of the fusion groups and the
 * unfused layers upto depends on), as a mask of layer_count bytes; NULL
 * when out of memory. */
static unsigned char *eval_written(const nfv_model *m, const nfv_context *ctx, int upto)
{
    unsigned char *needed = calloc((size_t)m->layer_count, 1), *written = calloc((size_t)m->layer_count, 1);
    if (needed && written) {
        nfv_model_mark_ancestors(m, upto, needed);
        nfv_model fused = *m;
        fused.fuse_eval = 1;
        for (int i = 0; i <= upto; i++) {
            if (!needed[i]) continue;
            i = nfv_fuse_group_end(&fused, ctx, i, upto, 0); /* the group's last layer */
            written[i] = 1;
        }
    } else {
        free(written);
        written = NULL;
    }
    free(needed);
    return written;
}

/* Training writes every output but a BatchNorm's whose ReLU it computes
 * (nfv_train_fuses_bn_relu) and which the validation pass (eval mode,
 * fused) does not write either; NULL when out of memory. */
static unsigned char *train_written(const nfv_model *m, const nfv_context *ctx)
{
    const int last = m->layer_count - 1;
    unsigned char *written = eval_written(m, ctx, last);
    for (int i = 0; written && i <= last; i++) written[i] |= !nfv_train_fuses_bn_relu(m, i, last);
    return written;
}

/* The conv -> BatchNorm [-> ReLU] and conv -> ReLU groups an eval-mode run
 * up to upto fuses (model_fuse.c):
 *   - each conv's weights and bias with the BatchNorm folded in, made on
 *     the first fused forward and kept with the model.  A visualization
 *     fuses the target's ancestors; training's validation pass
 *     (nfv_model_predict) the whole model, so they sit beside the training
 *     step's buffers;
 *   - a visualization's backward (not training's: its validation pass runs
 *     no backward) through a group ending in a ReLU whose conv
 *     cannot gate as it pads (nfv_conv3d_gates_in_place) gates dy (N, CO,
 *     DO, HO, WO) into a temporary for one call, counted at the largest.
 * Without the folded weights ResNet-10's estimates were 10 % under the
 * allocation. */
static void fused_groups(const nfv_model *m, const nfv_context *ctx, int n, int upto, int training,
                         nfv_memory_estimate *e)
{
    unsigned char *needed = calloc((size_t)m->layer_count, 1);
    if (!needed) return;
    nfv_model_mark_ancestors(m, upto, needed);
    nfv_model fused = *m;
    fused.fuse_eval = 1;
    size_t gated = 0;
    int gated_layer = -1;
    for (int i = 0; i <= upto; i++) {
        if (!needed[i]) continue;
        const int end = nfv_fuse_group_end(&fused, ctx, i, upto, 0);
        if (end > i) {
            const nfv_layer *c = &m->layers[i];
            if (m->layers[i + 1].spec.kind == NFV_LAYER_BATCHNORM3D) {
                int sh[5];
                const size_t numel = nfv_shape_numel(nfv_model_param_shape(c, 0, sh), sh);
                nfv_memory_add(e, NFV_MEM_WEIGHTS, nfv_tensor_bytes(numel) + nfv_tensor_bytes((size_t)c->spec.features),
                               "layer %d (%s) weights with BatchNorm folded in", i, c->name);
            }
            nfv_conv3d_params p;
            nfv_layer_conv_params(&c->spec, &p);
            const size_t out = (size_t)n * nfv_shape_numel(c->out_ndim, c->out_shape);
            if (!training && m->layers[end].spec.kind == NFV_LAYER_RELU && !nfv_conv3d_gates_in_place(&p) &&
                out > gated)
                gated = out, gated_layer = i;
        }
        i = end;
    }
    free(needed);
    if (gated_layer >= 0)
        nfv_memory_add(e, NFV_MEM_SCRATCH, nfv_tensor_bytes(gated), "layer %d (%s) gated output gradient, batch %d",
                       gated_layer, m->layers[gated_layer].name, n);
}

/* Outputs, argmax / masks / BN statistics and grad_a, grad_b: nfv_model_set_batch.
 * written: the layers whose (lazy) output the run writes; NULL: all of them
 * (no memory for the mask: counting every output errs high). */
static void model_batch(const nfv_model *m, int n, const unsigned char *written, nfv_memory_estimate *e)
{
    size_t biggest = (size_t)n * nfv_shape_numel(4, m->input_shape);
    for (int i = 0; i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        size_t numel = (size_t)n * nfv_shape_numel(l->out_ndim, l->out_shape);
        if (numel > biggest) biggest = numel;
        if (m->is_graph && l->spec.kind != NFV_LAYER_CONSTANT)
            nfv_memory_add(e, NFV_MEM_BACKWARD, nfv_tensor_bytes(numel), "layer %d (%s) gradient, batch %d", i, l->name,
                           n);
        switch (l->spec.kind) {
        case NFV_LAYER_FLATTEN:
        case NFV_LAYER_RESHAPE:
        case NFV_LAYER_IDENTITY: continue;
        case NFV_LAYER_ADD:
            if (l->in_place) continue;
            break;
        case NFV_LAYER_CONSTANT:
            nfv_memory_add(e, NFV_MEM_WEIGHTS, nfv_tensor_bytes(numel / (size_t)n * (size_t)l->spec.features),
                           "layer %d (%s) value", i, l->name);
            break;
        case NFV_LAYER_GMP:
        case NFV_LAYER_INSTANCENORM:
            nfv_memory_add(e, NFV_MEM_ACTIVATIONS, (l->spec.kind == NFV_LAYER_GMP ? 1 : 2) *
                                                       nfv_tensor_bytes((size_t)n * (size_t)l->in_shape[0]),
                           "layer %d (%s) %s", i, l->name, l->spec.kind == NFV_LAYER_GMP ? "argmax" : "statistics");
            break;
        case NFV_LAYER_MAXPOOL3D:
        case NFV_LAYER_DROPOUT:
            nfv_memory_add(e, NFV_MEM_ACTIVATIONS, nfv_tensor_bytes(numel), "layer %d (%s) %s, batch %d", i, l->name,
                           l->spec.kind == NFV_LAYER_DROPOUT ? "mask" : "argmax", n);
            break;
        case NFV_LAYER_BATCHNORM3D:
            nfv_memory_add(e, NFV_MEM_ACTIVATIONS, 2 * nfv_tensor_bytes((size_t)l->in_shape[0]),
                           "layer %d (%s) batch statistics", i, l->name);
            break;
        default: break;
        }
        if (written && nfv_model_lazy_output(l) && !written[i]) continue;
        nfv_memory_add(e, NFV_MEM_ACTIVATIONS, nfv_tensor_bytes(numel), "layer %d (%s) output, batch %d", i, l->name,
                       n);
    }
    for (int b = 0; b < (m->is_graph ? 1 : 2); b++)
        nfv_memory_add(e, NFV_MEM_BACKWARD, nfv_tensor_bytes(biggest), "backward gradient buffer, batch %d", n);
}

void nfv_model_memory(const nfv_model *m, const nfv_context *ctx, int n, int upto_layer, int training,
                      nfv_memory_estimate *e)
{
    if (upto_layer < 0 || upto_layer >= m->layer_count || training) upto_layer = m->layer_count - 1;
    model_params(m, e);
    fused_groups(m, ctx, n, upto_layer, training, e); /* training: upto_layer is the last layer, as validation's */
    unsigned char *written = training ? train_written(m, ctx) : eval_written(m, ctx, upto_layer);
    model_batch(m, n, written, e);
    free(written);
    scratch_max s;
    memset(&s, 0, sizeof s);
    s.frozen = !training; /* a visualization: nfv_visualize freezes the weights */
    s.kc = nfv_context_kernel_config(ctx);
    int vec = nfv_context_vector_width(ctx);
    for (int i = 0; i <= upto_layer; i++) {
        const nfv_layer *l = &m->layers[i];
        /* Training backward computes no input gradient for layer 0; a visualization's does. */
        int dgrad = training ? i > 0 : 1;
        if (l->spec.kind == NFV_LAYER_CONV3D) conv_scratch(l, vec, n, 1, training, dgrad, &s);
        else if (l->spec.kind == NFV_LAYER_BATCHNORM3D && training) bn_scratch(l, ctx, n, &s);
    }
    for (int k = 0; k < SL_COUNT; k++)
        if (s.floats[k]) nfv_memory_add(e, NFV_MEM_SCRATCH, (unsigned long long)s.floats[k] * sizeof(float), "%s", s.what[k]);
    if (s.kept_floats)
        nfv_memory_add(e, NFV_MEM_SCRATCH, (unsigned long long)s.kept_floats * sizeof(float),
                       "weights kept while frozen (flipped, phases, channel-last)");
    if (s.predict_kept_floats)
        nfv_memory_add(e, NFV_MEM_SCRATCH, (unsigned long long)s.predict_kept_floats * sizeof(float),
                       "weights kept by a validation pass (phases, channel-last)");
}

/* ---- fitting the device --------------------------------------------------- */

int nfv_memory_fits(const nfv_context *ctx, const nfv_memory_estimate *e)
{
    nfv_device_memory d = nfv_context_device_memory(ctx);
    return e->total <= d.global_bytes && e->largest <= d.max_alloc_bytes;
}

int nfv_memory_largest_batch(const nfv_context *ctx, nfv_memory_fn fn, void *user, int max)
{
    int lo = 0, hi = max; /* lo fits (0: nothing yet), everything above hi does not */
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        nfv_memory_estimate e;
        memset(&e, 0, sizeof e);
        fn(user, mid, &e);
        if (nfv_memory_fits(ctx, &e)) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

nfv_status nfv_memory_check_batch(const nfv_context *ctx, const char *what, nfv_memory_fn fn, void *user, int batch,
                                  int auto_batch, int *chosen)
{
    *chosen = batch;
    nfv_memory_estimate e;
    memset(&e, 0, sizeof e);
    fn(user, batch, &e);
    if (nfv_memory_fits(ctx, &e)) return NFV_OK;
    int fit = batch > 1 ? nfv_memory_largest_batch(ctx, fn, user, batch - 1) : 0;
    if (auto_batch && fit > 0) {
        *chosen = fit;
        return NFV_OK;
    }
    nfv_device_memory d = nfv_context_device_memory(ctx);
    const char *dev = nfv_context_device_info(ctx)->name;
    const char *src = d.from_config ? " (from NEUROFV_KERNEL_CONFIG mem=)" : "";
    char parts[256], tail[160], pre[128];
    nfv_memory_parts_text(&e, parts, sizeof parts);
    snprintf(pre, sizeof pre, "%s%s", what ? what : "", what && what[0] ? ": " : "");
    if (fit > 0) {
        nfv_memory_estimate f;
        memset(&f, 0, sizeof f);
        fn(user, fit, &f);
        snprintf(tail, sizeof tail, "the largest batch that fits is %d (%.1f MiB): use --batch %d", fit,
                 f.total / MIB, fit);
    } else {
        snprintf(tail, sizeof tail, "not even a batch of 1 fits this device");
    }
    if (e.total > d.global_bytes)
        return nfv_fail(NFV_ERR_UNSUPPORTED,
                        "%sbatch %d needs %.1f MiB of device memory (%s MiB) but %s has %.1f MiB%s; %s", pre, batch,
                        e.total / MIB, parts, dev, d.global_bytes / MIB, src, tail);
    return nfv_fail(NFV_ERR_UNSUPPORTED,
                    "%sbatch %d needs a buffer of %.1f MiB (%s) but %s allows at most %.1f MiB per buffer "
                    "(CL_DEVICE_MAX_MEM_ALLOC_SIZE%s); %s",
                    pre, batch, e.largest / MIB, e.largest_what, dev, d.max_alloc_bytes / MIB,
                    d.from_config ? ", capped by NEUROFV_KERNEL_CONFIG mem=" : "", tail);
}

/* ---- training --------------------------------------------------------------- */

void nfv_train_memory(const nfv_model *m, const nfv_context *ctx, nfv_optimizer_kind opt, int batch,
                      nfv_memory_estimate *e)
{
    memset(e, 0, sizeof *e);
    nfv_model_memory(m, ctx, batch, -1, 1, e);
    /* Adam m and v (SGD: velocity) per parameter tensor, made by the first step. */
    for (int i = 0; i < m->layer_count; i++) {
        const nfv_layer *l = &m->layers[i];
        for (int p = 0; p < l->nparams; p++) {
            int sh[5];
            size_t numel = nfv_shape_numel(nfv_model_param_shape(l, p, sh), sh);
            for (int j = 0; j < (opt == NFV_OPT_ADAM ? 2 : 1); j++)
                nfv_memory_add(e, NFV_MEM_OPTIMIZER, nfv_tensor_bytes(numel), "layer %d (%s) optimizer state", i,
                               l->name);
        }
    }
    /* The trainer: x, targets, dout (N, K), loss, class weights (K); then
     * validation's input batch (nfv_model_predict) next to it. */
    size_t in = (size_t)batch * nfv_shape_numel(4, m->input_shape);
    size_t k = (size_t)nfv_model_outputs(m);
    nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes(in), "training input batch %d", batch);
    nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes((size_t)batch), "training targets");
    nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes((size_t)batch * k), "output gradient");
    nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes(1) + nfv_tensor_bytes(k), "loss and class weights");
    nfv_memory_add(e, NFV_MEM_BATCH, nfv_tensor_bytes(in), "validation input batch %d", batch);
}

typedef struct train_fit {
    const nfv_model *m;
    const nfv_context *ctx;
    nfv_optimizer_kind opt;
} train_fit;

static void train_fn(void *user, int batch, nfv_memory_estimate *e)
{
    const train_fit *t = user;
    nfv_train_memory(t->m, t->ctx, t->opt, batch, e);
}

/* The layout (no device buffers) of the model a run trains: o's
 * architecture on o's grid, or the checkpoint's.  *m NULL: nothing to check. */
static nfv_status train_layout(const nfv_dataset *ds, const nfv_train_options *o, nfv_model **m,
                               nfv_optimizer_kind *opt)
{
    *m = NULL;
    *opt = o->opt.kind;
    if (!o->resume) {
        int in[4] = {1, o->grid.nz, o->grid.ny, o->grid.nx};
        return nfv_model_new(o->arch, in, o->head == NFV_HEAD_SOFTMAX ? ds->class_count : 1, m);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s.ckpt", o->out);
    nfv_st_file f;
    if (nfv_st_read(path, &f) != NFV_OK) return NFV_OK; /* nfv_train_run reports it */
    const char *arch = nfv_st_meta(&f, "arch"), *shape = nfv_st_meta(&f, "input_shape"),
               *kind = nfv_st_meta(&f, "optim.kind");
    int in[4];
    nfv_status s = NFV_OK;
    if (arch && shape && sscanf(shape, "%d,%d,%d,%d", &in[0], &in[1], &in[2], &in[3]) == 4) {
        if (kind && !strcmp(kind, "sgd")) *opt = NFV_OPT_SGD;
        else if (kind) *opt = NFV_OPT_ADAM;
        s = nfv_model_new(arch, in, 0, m);
    }
    nfv_st_free(&f);
    return s;
}

nfv_status nfv_train_memory_check(const nfv_context *ctx, const nfv_dataset *ds, const nfv_train_options *o)
{
    int ntrain = 0;
    for (int i = 0; i < ds->count; i++) ntrain += ds->rows[i].split == NFV_SPLIT_TRAIN;
    if (ntrain < 1 || o->batch < 1) return NFV_OK; /* nfv_train_run refuses these with its own message */
    int batch = o->batch > ntrain ? ntrain : o->batch;
    /* Data parallelism: each rank's device holds its block of the batch,
     * the largest of which is ceil(batch / ranks) (nfv_dist_block). */
    int ranks = nfv_dist_size();
    if (ranks > 1 && batch >= ranks) batch = (batch + ranks - 1) / ranks;
    train_fit t = {NULL, ctx, o->opt.kind};
    nfv_model *m = NULL;
    NFV_TRY(train_layout(ds, o, &m, &t.opt));
    if (!m) return NFV_OK;
    t.m = m;
    int chosen;
    nfv_status s = nfv_memory_check_batch(ctx, NULL, train_fn, &t, batch, 0, &chosen);
    nfv_model_free(m);
    return s;
}
