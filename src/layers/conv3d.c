/* Conv3d forward and backward to the input (cl/conv3d.cl); see
 * include/neurofv/ops.h.
 *
 * Fast path (what the program runs):
 *   forward          conv3d_pad (zero-padded staging copy of x) + conv3d_fwd_fast,
 *                    when the x stride is 1;
 *   backward-input   for stride 1 and pad <= k - 1: the same two kernels on dy
 *                    padded by k - 1 - pad, with weights transposed over
 *                    channels and flipped (conv3d_flip_weights);
 *   backward-weights src/layers/conv3d_wgrad.c (cl/conv3d_wgrad.cl), on the
 *                    padded copy and blocking defined here
 *                    (conv3d_internal.h).
 * Eval-mode fusion (src/model/model_fuse.c) adds nfv_conv3d_forward_relu
 * (the fast forwards built with -DOUT_RELU=1), nfv_conv3d_backward_input_gated
 * (conv3d_pad_gated instead of conv3d_pad), nfv_conv3d_fold_batchnorm, and
 * the staged input gradient (a max pool's backward writes dy's padded copy).
 * Convs of few output positions (ResNet's 4^3 and 2^3 stages) run with
 * the output channels in the vector lanes instead, forward, input and weight
 * gradients (src/layers/conv3d_cvec.c, cl/conv3d_cvec.cl; chosen here,
 * conv3d_fast_config's cvp).
 * Strided convs run as stride-1 convs over phases through the same fast
 * kernels (src/layers/conv3d_strided.c).
 * Every other shape runs the *_ref kernels (src/layers/conv3d_ref.c,
 * cl/conv3d_ref.cl; one output per work-item).  Dilation or groups other
 * than 1 run the general kernels instead (src/layers/conv3d_general.c,
 * cl/conv3d_general.cl), also one output per work-item.  The shape checks
 * of all three paths are in src/layers/conv3d_shapes.c.
 *
 * Scratch buffers (padded copies, flipped weights, partial sums) are the
 * context's reusable scratch slots: fresh buffers per call cost more than the
 * kernels (page faults on tens of MB).  The queue is in order, so reuse is safe. */
#include <stdio.h>
#include <string.h>

#include "layers/conv3d_internal.h"

/* Scratch slots: NFV_SCRATCH_CONV_* of nfv_scratch_slot (src/runtime/internal.h). */

/* Options of the one shape-independent build of cl/conv3d.cl (padding,
 * weight flip, BatchNorm folding) and cl/conv3d_wgrad.cl (partial sums,
 * bias), shared by all layers. */
const char *conv3d_generic_options(const nfv_context *ctx, char *buf, size_t cap)
{
    snprintf(buf, cap, "-DVEC=%d", nfv_context_vector_width(ctx));
    return buf;
}

/* ---- fast path ------------------------------------------------------------ */

/* Largest divisor of n that is <= cap. */
static int divisor_at_most(int n, int cap)
{
    for (int c = cap; c > 1; c--)
        if (n % c == 0) return c;
    return 1;
}

/* Output planes per weight-gradient slab: ~4096 positions or more each
 * (horizontal sums and partial stores amortized), at most all of DO. */
static int planes_per_slab(const conv_dims *d)
{
    int plane = d->oh * d->ow, odc = (4096 + plane - 1) / plane;
    return odc < d->od ? odc : d->od;
}

int conv3d_slab_count(const conv_dims *d)
{
    int odc = planes_per_slab(d);
    return d->n * ((d->od + odc - 1) / odc);
}

/* Whether rows of ow outputs take the flattened-plane kernels: h stride 1
 * and the row kernels would waste more than 10 % of their lanes (11 of 16
 * used at WO = 11, 22 of 32 at WO = 22). */
int conv3d_flat_rows(int vec, int ow, int stride_h)
{
    const int row_lanes = (ow + vec - 1) / vec * vec;
    return stride_h == 1 && 10 * ow < 9 * row_lanes;
}

/* Forward blocking (c->cob, c->rows, c->flat) for d at vector width c->vec:
 * ≲24 vector accumulators (docs/ARCHITECTURE.md, performance notes): up to
 * 8 channels x 2 rows.  8 x 2 rather than 16 x 1: per tap 2 input loads
 * (fewer where rows share them) and 8 weight broadcasts feed 16 FMAs, where
 * 16 x 1 loads 17 for 16 and was load-bound: measured on PoCL (AVX-512)
 * with bench-kernels, conv3 forward 205-246 -> 239-269 GFLOP/s, conv4's
 * input gradient 131-171 -> 153-177, conv2 unchanged. */
static void forward_blocking(fast_config *c, const conv_dims *d)
{
    c->cob = divisor_at_most(d->co, 8), c->rows = 2;
    /* Few output channels (the input gradient of a 1-channel first layer):
     * each loaded vector feeds only cob FMAs, so take 4 rows, whose input
     * rows overlap and are loaded once. */
    if (c->cob <= 2) c->rows = 4;
    if (d->oh < 2) c->rows = 1;
    /* The flattened-plane kernel (h stride 1) wastes fewer lanes on narrow
     * rows (11 of 16 used at WO = 11, 22 of 32 at WO = 22) but stores rows
     * that cross a vector lane by lane; use it only when the row kernel
     * would waste more than 10 % of its lanes. */
    c->flat = conv3d_flat_rows(c->vec, d->ow, d->s[1]);
}

/* The share of the lanes the row or flattened-plane forward computes that
 * hold outputs (slack lanes and rows are computed and thrown away). */
static double lane_use(const fast_config *c, const conv_dims *d)
{
    const size_t per = (size_t)c->vec * c->rows;
    if (c->flat) {
        const size_t wp = (size_t)d->w + 2 * d->p[2], flat = (size_t)d->oh * wp;
        return (double)d->oh * d->ow / ((flat + per - 1) / per * per);
    }
    const size_t row = ((size_t)d->ow + c->vec - 1) / c->vec * c->vec;
    const size_t rows = ((size_t)d->oh + c->rows - 1) / c->rows * c->rows;
    return (double)d->oh * d->ow / (row * rows);
}

/* Output channels in the lanes (conv3d_fwd_cvec) where the channels fill
 * whole vectors and the row or flattened-plane kernel would compute more
 * than 40 % slack lanes.  Measured on ResNet-18 at 64^3 (PoCL, AVX-512,
 * `neurofv bench --profile`, a visualization step at batch 1 / 8): its 2^3
 * stage (12.5 % of the flat kernel's lanes used) 11.3 / 84.8 ms -> 7.8 /
 * 23.2 ms, the 4^3 stage (50 %) 5.7 / 44.0 -> 4.9 / 28.8 ms; the 8^3 stage
 * (67 %) gained nothing (8.4 / 69.2 -> 7.8 / 68.2 ms) and two of the strided
 * convs' phase convs at 67-70 % lost (2.0 -> 2.8 ms), hence 60 %.  16
 * positions per work-item (the CPU profiles' conv_cvec): 8 gave 9.6 / 40.8
 * ms on the 2^3 stage, 12 gave 9.4 / 29.6. */
#define CVEC_MAX_LANE_USE 0.6

/* The positions per work-item where d takes conv3d_fwd_cvec (the kernel
 * configuration's conv_cvec, 16 on CPUs), else 0. */
static int cvec_positions(const fast_config *c, const conv_dims *d, int conv_cvec)
{
    return conv_cvec > 0 && c->vec > 1 && d->co % c->vec == 0 && lane_use(c, d) < CVEC_MAX_LANE_USE ? conv_cvec : 0;
}

int nfv_conv3d_channel_last(const nfv_kernel_config *kc, int co, const int in_dims[3], const int pad[3],
                            const int out_dims[3], int stride_h)
{
    conv_dims d = {.n = 1, .ci = 1, .co = co, .d = in_dims[0], .h = in_dims[1], .w = in_dims[2], .od = out_dims[0],
                   .oh = out_dims[1], .ow = out_dims[2]};
    for (int i = 0; i < 3; i++) d.p[i] = pad[i], d.s[i] = 1;
    d.s[1] = stride_h;
    fast_config c = {.vec = kc->vector_width};
    forward_blocking(&c, &d);
    return cvec_positions(&c, &d, kc->conv_cvec) > 0;
}

fast_config conv3d_fast_config(const nfv_context *ctx, const conv_dims *d)
{
    fast_config c;
    c.vec = nfv_context_vector_width(ctx);
    forward_blocking(&c, d);
    int acc_cap = d->k[2] <= 1 ? 16 : 24 / d->k[2];
    c.bw_cob = divisor_at_most(d->co, acc_cap < 16 ? acc_cap : 16);
    c.odc = planes_per_slab(d);
    c.unroll = nfv_context_kernel_config(ctx)->conv_unroll;
    /* One output channel (a first layer's input gradient): the marching
     * kernel on channel rows (cl/conv3d.cl, conv3d_fwd_co1), where the
     * configuration asks for it. */
    c.march = d->co == 1 && d->s[0] == 1 && d->s[1] == 1 ? nfv_context_kernel_config(ctx)->conv_march : 0;
    if (c.march) c.flat = 0;
    c.cvp = c.march ? 0 : cvec_positions(&c, d, nfv_context_kernel_config(ctx)->conv_cvec);
    return c;
}

/* Build options of the fast program for one layer configuration.  Everything
 * a kernel's loop bounds or addressing depends on is compiled in. */
void conv3d_fast_options(const fast_config *c, const conv_dims *d, int relu, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "-DODC=%d -DVEC=%d -DCOB=%d -DROWS=%d -DBW_COB=%d -DCI=%d -DCO=%d -DKD=%d -DKH=%d -DKW=%d -DSD=%d "
             "-DSH=%d -DID=%d -DIH=%d -DIW=%d -DPD=%d -DPH=%d -DPW=%d -DDO=%d -DHO=%d -DWO=%d -DKD_UNROLL=%d "
             "-DMARCH=%d%s",
             c->odc, c->vec, c->cob, c->rows, c->bw_cob, d->ci, d->co, d->k[0], d->k[1], d->k[2], d->s[0], d->s[1],
             d->d, d->h, d->w, d->p[0], d->p[1], d->p[2], d->od, d->oh, d->ow, c->unroll, c->march,
             relu ? " -DOUT_RELU=1" : "");
    if (c->cvp) { /* only its builds carry conv3d_fwd_cvec */
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, " -DCVP=%d -DKHW=%d", c->cvp, d->k[1] * d->k[2]);
    }
}

nfv_status conv3d_scratch(nfv_context *ctx, int slot, size_t floats, const char *what, cl_mem *out)
{
    return nfv_scratch_get(ctx, slot, floats * sizeof(float), what, out);
}

size_t nfv_conv3d_padded_floats(int vec, int n, int c, const int dims[3], const int pad[3], const int kernel[3],
                                const int stride[3])
{
    size_t dp = (size_t)dims[0] + 2 * pad[0], hp = (size_t)dims[1] + 2 * pad[1], wp = (size_t)dims[2] + 2 * pad[2];
    /* Slack after the body: up to 3 rows past HO (4-row blocks; rows of c
     * channel rows in conv3d_fwd_co1's layout), lanes past WO, 4 vectors
     * past the plane (flat kernel) and the kw shifts read up to here;
     * zero-filled so every value read is finite. */
    size_t slack = (size_t)(4 * stride[1] + kernel[1] + 1) * wp * c + 4 * (size_t)vec + kernel[2] + 64;
    return (size_t)n * c * dp * hp * wp + slack;
}

/* The padded staging copy of d's input (N, CI, D+2p, H+2p, W+2p): its
 * floats, slack included (padded_floats), and the body alone. */
static size_t padded_floats(const nfv_context *ctx, const conv_dims *d)
{
    const int dims[3] = {d->d, d->h, d->w};
    return nfv_conv3d_padded_floats(nfv_context_vector_width(ctx), d->n, d->ci, dims, d->p, d->k, d->s);
}

static size_t padded_body(const conv_dims *d)
{
    return (size_t)d->n * d->ci * (d->d + 2 * d->p[0]) * (d->h + 2 * d->p[1]) * (d->w + 2 * d->p[2]);
}

nfv_status conv3d_padded_scratch(nfv_context *ctx, const conv_dims *d, cl_mem *xp)
{
    const size_t total = padded_floats(ctx, d), body = padded_body(d);
    NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PADDED, total, "conv3d padded input", xp));
    float zero = 0.0f;
    cl_int err = clEnqueueFillBuffer(nfv_context_queue(ctx), *xp, &zero, sizeof zero, body * sizeof(float),
                                     (total - body) * sizeof(float), 0, NULL, NULL);
    return err == CL_SUCCESS ? NFV_OK
                             : nfv_cl_fail(err, "clEnqueueFillBuffer", "conv3d padded input slack", __FILE__, __LINE__);
}

/* Enqueue the zero-padded staging copy of src (N, CI, D, H, W) into the
 * padded-input scratch slot; gate (same shape, or NULL): copy src only
 * where gate > 0 (conv3d_pad_gated). */
nfv_status conv3d_pad_input(nfv_context *ctx, const conv_dims *d, cl_mem src, cl_mem gate, int channel_rows,
                            cl_mem *out)
{
    cl_mem xp;
    NFV_TRY(conv3d_padded_scratch(ctx, d, &xp));
    cl_kernel k;
    nfv_status st = NFV_OK;
    cl_int err;
    char go[32];
    const char *name = gate ? "conv3d_pad_gated" : "conv3d_pad";
    if (st == NFV_OK) st = nfv_kernel_get(ctx, "conv3d", conv3d_generic_options(ctx, go, sizeof go), name, &k);
    if (st == NFV_OK) {
        size_t global[2] = {(size_t)d->h + 2 * d->p[1], (size_t)d->n * d->ci * (d->d + 2 * d->p[0])};
        size_t local[2] = {global[0], 1}; /* one padded plane per work-group */
        cl_int a[7] = {d->d, d->h, d->w, d->p[0], d->p[1], d->p[2], channel_rows ? d->ci : 0};
        int arg = 0;
        err = clSetKernelArg(k, arg++, sizeof src, &src);
        if (err == CL_SUCCESS && gate) err = clSetKernelArg(k, arg++, sizeof gate, &gate);
        if (err == CL_SUCCESS) err = clSetKernelArg(k, arg++, sizeof xp, &xp);
        for (int i = 0; i < 7 && err == CL_SUCCESS; i++) err = clSetKernelArg(k, arg++, sizeof a[i], &a[i]);
        if (err != CL_SUCCESS) st = nfv_cl_fail(err, "clSetKernelArg", name, __FILE__, __LINE__);
        else st = nfv_kernel_launch(ctx, k, 2, global, global[0] <= nfv_kernel_max_local(ctx, k) ? local : NULL);
    }
    if (st != NFV_OK) return st;
    *out = xp;
    return NFV_OK;
}

/* conv3d_forward_fast; wl: where d takes conv3d_fwd_cvec, its channel-last
 * weights already derived (w is then not read), or NULL. */
static nfv_status forward_fast(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem gate, cl_mem w, cl_mem wl,
                               cl_mem bias, int relu, cl_mem y)
{
    const fast_config c = conv3d_fast_config(ctx, d);
    char opts[512];
    conv3d_fast_options(&c, d, relu, opts, sizeof opts);
    const int vec = c.vec, cob = c.cob, rows = c.rows;
    const int flat = c.flat;
    cl_kernel k;
    if (c.cvp) return conv3d_forward_cvec(ctx, d, &c, relu, x, gate, w, wl, bias, y);
    const char *name = c.march ? "conv3d_fwd_co1" : flat ? "conv3d_fwd_flat" : "conv3d_fwd_fast";
    NFV_TRY(nfv_kernel_get(ctx, "conv3d", opts, name, &k));
    cl_mem xp;
    if (x) NFV_TRY(conv3d_pad_input(ctx, d, x, gate, c.march > 0, &xp));
    else NFV_TRY(conv3d_scratch(ctx, NFV_SCRATCH_CONV_PADDED, padded_floats(ctx, d), "conv3d padded input",
                                &xp)); /* staged by the caller */
    cl_int has_bias = bias != NULL;
    cl_mem b = bias ? bias : w;
    nfv_status st = NFV_OK;
    cl_int err;
    if ((err = clSetKernelArg(k, 0, sizeof xp, &xp)) != CL_SUCCESS || (err = clSetKernelArg(k, 1, sizeof w, &w)) ||
        (err = clSetKernelArg(k, 2, sizeof b, &b)) || (err = clSetKernelArg(k, 3, sizeof y, &y)) ||
        (err = clSetKernelArg(k, 4, sizeof has_bias, &has_bias)))
        st = nfv_cl_fail(err, "clSetKernelArg", name, __FILE__, __LINE__);
    if (st == NFV_OK) {
        size_t wp = (size_t)d->w + 2 * d->p[2];
        size_t global[3] = {(size_t)(d->ow + vec - 1) / vec, (size_t)(d->oh + rows - 1) / rows,
                            (size_t)d->n * (d->co / cob) * d->od};
        if (flat) global[0] = (d->oh * wp + (size_t)vec * rows - 1) / ((size_t)vec * rows), global[1] = 1;
        if (c.march) global[2] = (size_t)d->n * ((d->od + c.march - 1) / c.march);
        /* One output plane per work-group (PoCL pays per work-group, so few
         * big ones), else one row of it where the device allows less. */
        size_t max_local = nfv_kernel_max_local(ctx, k);
        size_t local[3] = {global[0], global[1], 1};
        if (global[0] * global[1] > max_local) local[1] = 1;
        st = nfv_kernel_launch(ctx, k, 3, global, global[0] * local[1] <= max_local ? local : NULL);
    }
    return st;
}

nfv_status conv3d_forward_fast(nfv_context *ctx, const conv_dims *d, cl_mem x, cl_mem gate, cl_mem w, cl_mem bias,
                               int relu, cl_mem y)
{
    return forward_fast(ctx, d, x, gate, w, NULL, bias, relu, y);
}

nfv_status nfv_conv3d_forward(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                              const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y)
{
    conv_dims d;
    NFV_TRY(conv3d_check_shapes("conv3d forward", p, x, w, b, y, &d));
    if (conv3d_dims_general(&d)) return nfv_conv3d_general_forward(ctx, &d, x->buf, w->buf, b ? b->buf : NULL, y->buf);
    if (d.s[2] != 1) return conv3d_forward_strided(ctx, &d, x->buf, w->buf, b ? b->buf : NULL, 0, y->buf);
    return conv3d_forward_fast(ctx, &d, x->buf, NULL, w->buf, b ? b->buf : NULL, 0, y->buf);
}

nfv_status nfv_conv3d_forward_relu(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                   const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y)
{
    conv_dims d;
    NFV_TRY(conv3d_check_shapes("conv3d forward (ReLU)", p, x, w, b, y, &d));
    if (conv3d_dims_general(&d)) {
        NFV_TRY(nfv_conv3d_forward(ctx, p, x, w, b, y));
        return nfv_activation_forward(ctx, NFV_RELU, 0.0f, y, y);
    }
    if (d.s[2] != 1) return conv3d_forward_strided(ctx, &d, x->buf, w->buf, b ? b->buf : NULL, 1, y->buf);
    return conv3d_forward_fast(ctx, &d, x->buf, NULL, w->buf, b ? b->buf : NULL, 1, y->buf);
}

nfv_status conv3d_flip_into(nfv_context *ctx, const conv_dims *d, cl_mem w, cl_mem wt)
{
    const int kvol = d->k[0] * d->k[1] * d->k[2];
    cl_kernel k;
    char go[32];
    NFV_TRY(nfv_kernel_get(ctx, "conv3d", conv3d_generic_options(ctx, go, sizeof go), "conv3d_flip_weights", &k));
    cl_int co = d->co, ci = d->ci, kv = kvol, err;
    if ((err = clSetKernelArg(k, 0, sizeof w, &w)) || (err = clSetKernelArg(k, 1, sizeof wt, &wt)) ||
        (err = clSetKernelArg(k, 2, sizeof co, &co)) || (err = clSetKernelArg(k, 3, sizeof ci, &ci)) ||
        (err = clSetKernelArg(k, 4, sizeof kv, &kv)))
        return nfv_cl_fail(err, "clSetKernelArg", "conv3d_flip_weights", __FILE__, __LINE__);
    size_t global = (size_t)d->co * d->ci;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status conv3d_derived_weights(nfv_context *ctx, cl_mem w, int kind, int slot, size_t floats, const char *what,
                                  cl_mem *out, int *fresh)
{
    if (!nfv_derived_frozen(ctx)) {
        *fresh = 1;
        return conv3d_scratch(ctx, slot, floats, what, out);
    }
    return nfv_derived_get(ctx, w, kind, floats * sizeof(float), what, out, fresh);
}

nfv_status conv3d_flip(nfv_context *ctx, const conv_dims *d, cl_mem w, cl_mem *wt)
{
    const size_t floats = (size_t)d->co * d->ci * d->k[0] * d->k[1] * d->k[2];
    int fresh;
    NFV_TRY(conv3d_derived_weights(ctx, w, NFV_DERIVED_CONV_FLIP, NFV_SCRATCH_CONV_FLIPPED_WEIGHTS, floats,
                                   "conv3d flipped weights", wt, &fresh));
    return fresh ? conv3d_flip_into(ctx, d, w, *wt) : NFV_OK;
}

conv_dims conv3d_transposed_dims(const conv_dims *d)
{
    conv_dims t = *d;
    t.ci = d->co, t.co = d->ci;
    t.d = d->od, t.h = d->oh, t.w = d->ow;
    t.od = d->d, t.oh = d->h, t.ow = d->w;
    for (int i = 0; i < 3; i++) t.p[i] = d->k[i] - 1 - d->p[i];
    return t;
}

int nfv_conv3d_has_staged_input_grad(const nfv_conv3d_params *p)
{
    if (!p || nfv_conv3d_params_general(p)) return 0;
    for (int i = 0; i < 3; i++)
        if (p->kernel[i] < 1 || p->stride[i] != 1 || p->padding[i] < 0 || p->padding[i] > p->kernel[i] - 1) return 0;
    return 1;
}

int nfv_conv3d_gates_in_place(const nfv_conv3d_params *p)
{
    if (!p || nfv_conv3d_params_general(p)) return 0;
    for (int i = 0; i < 3; i++)
        if (p->stride[i] != 1) return 1; /* conv3d_backward_input_strided */
    return nfv_conv3d_has_staged_input_grad(p);
}

nfv_status nfv_conv3d_stage_input_grad(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                       const nfv_tensor *w, const nfv_tensor *dx, nfv_tensor *staged,
                                       nfv_conv3d_staging *layout)
{
    conv_dims d;
    NFV_TRY(conv3d_check_shapes("conv3d staged input gradient", p, dx, w, NULL, dy, &d));
    if (!nfv_conv3d_has_staged_input_grad(p))
        return nfv_fail(NFV_ERR_UNSUPPORTED, "conv3d staged input gradient: needs stride 1, padding <= kernel - 1, "
                                             "no dilation or groups");
    conv_dims t = conv3d_transposed_dims(&d);
    cl_mem xp;
    NFV_TRY(conv3d_padded_scratch(ctx, &t, &xp));
    memset(staged, 0, sizeof *staged);
    const int shape[5] = {t.n, t.ci, t.d + 2 * t.p[0], t.h + 2 * t.p[1], t.w + 2 * t.p[2]};
    staged->buf = xp;
    staged->ndim = 5;
    for (int i = 0; i < 5; i++) staged->shape[i] = shape[i];
    staged->numel = padded_body(&t);
    staged->is_view = 1;
    for (int i = 0; i < 3; i++) layout->pad[i] = t.p[i];
    const fast_config c = conv3d_fast_config(ctx, &t); /* what backward_input_staged will read */
    layout->channel_rows = c.march ? t.ci : 0;
    return NFV_OK;
}

/* dx from dy (times [gate > 0] where gate is given, same shape as dy);
 * staged: dy's padded copy is already in the staging buffer
 * (nfv_conv3d_stage_input_grad), dy gives only the shape. */
static nfv_status backward_input(nfv_context *ctx, const char *op, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                 const nfv_tensor *gate, int staged, const nfv_tensor *w, nfv_tensor *dx)
{
    conv_dims d;
    if (!dx) return NFV_OK;
    NFV_TRY(conv3d_check_shapes(op, p, dx, w, NULL, dy, &d));
    if (gate && gate->numel != dy->numel) {
        char sg[64], sy[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: gate %s and output gradient %s differ", op, conv3d_shape_str(gate, sg, 64),
                        conv3d_shape_str(dy, sy, 64));
    }
    const int plain = !conv3d_dims_general(&d);
    int pad_ok = 1, strided = 0;
    for (int i = 0; i < 3; i++) pad_ok &= d.p[i] <= d.k[i] - 1, strided |= d.s[i] != 1;
    const int fast = plain && pad_ok && !strided;
    if (staged && !fast) return nfv_fail(NFV_ERR_UNSUPPORTED, "%s: no staged input gradient for this conv", op);
    if (!fast) {
        if (plain && strided) /* gated, if at all, in the phase conv's padding copy */
            return conv3d_backward_input_strided(ctx, &d, dy->buf, gate ? gate->buf : NULL, w->buf, dx->buf);
        if (!gate)
            return !plain ? nfv_conv3d_general_backward_input(ctx, &d, dy->buf, w->buf, dx->buf)
                          : nfv_conv3d_backward_input_reference(ctx, p, dy, w, dx);
        /* Shapes no fast path covers (nfv_conv3d_gates_in_place 0): gate into a temporary first. */
        nfv_tensor g;
        NFV_TRY(nfv_tensor_create(ctx, &g, dy->ndim, dy->shape));
        nfv_status st = nfv_activation_backward(ctx, NFV_RELU, 0.0f, gate, dy, &g);
        if (!st) st = backward_input(ctx, op, p, &g, NULL, 0, w, dx);
        nfv_tensor_free(&g);
        return st;
    }

    /* dx = conv(dy padded by k-1-p, wt) with wt (CI, CO, k) flipped: a forward
     * whose input is dy (N, CO, DO, HO, WO) and output dx (N, CI, D, H, W). */
    conv_dims t = conv3d_transposed_dims(&d);
    cl_mem wt;
    if (conv3d_fast_config(ctx, &t).cvp) { /* channel-last straight from w, no flipped copy */
        NFV_TRY(conv3d_channel_last_weights(ctx, &d, w->buf, 1, &wt));
        return forward_fast(ctx, &t, staged ? NULL : dy->buf, gate ? gate->buf : NULL, NULL, wt, NULL, 0, dx->buf);
    }
    NFV_TRY(conv3d_flip(ctx, &d, w->buf, &wt));
    return conv3d_forward_fast(ctx, &t, staged ? NULL : dy->buf, gate ? gate->buf : NULL, wt, NULL, 0, dx->buf);
}

nfv_status nfv_conv3d_backward_input(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                     const nfv_tensor *w, nfv_tensor *dx)
{
    return backward_input(ctx, "conv3d backward-input", p, dy, NULL, 0, w, dx);
}

nfv_status nfv_conv3d_backward_input_gated(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                           const nfv_tensor *gate, const nfv_tensor *w, nfv_tensor *dx)
{
    if (!gate) return nfv_fail(NFV_ERR_INVALID_ARG, "conv3d backward-input (gated): NULL gate");
    return backward_input(ctx, "conv3d backward-input (gated)", p, dy, gate, 0, w, dx);
}

nfv_status nfv_conv3d_backward_input_staged(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *dy,
                                            const nfv_tensor *w, nfv_tensor *dx)
{
    return backward_input(ctx, "conv3d backward-input (staged)", p, dy, NULL, 1, w, dx);
}

int nfv_conv3d_has_relu_maxpool2(const nfv_context *ctx, const nfv_conv3d_params *p)
{
    const int vec = nfv_context_vector_width(ctx);
    return p && !nfv_conv3d_params_general(p) && p->stride[2] == 1 && (vec == 4 || vec == 8 || vec == 16);
}

nfv_status nfv_conv3d_forward_relu_maxpool2(nfv_context *ctx, const nfv_conv3d_params *p, const nfv_tensor *x,
                                            const nfv_tensor *w, const nfv_tensor *b, nfv_tensor *y,
                                            nfv_tensor *argmax)
{
    const char *op = "conv3d forward (ReLU, max pool 2)";
    char sx[64], sy[64];
    if (!p || !x || !w || !y || !argmax || x->ndim != 5 || w->ndim != 5)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL or not 5-D tensor", op);
    if (!nfv_conv3d_has_relu_maxpool2(ctx, p))
        return nfv_fail(NFV_ERR_UNSUPPORTED, "%s: needs a plain conv with x stride 1 (nfv_conv3d_has_relu_maxpool2)", op);
    /* The conv's output geometry: a header with its shape, never allocated. */
    nfv_tensor full;
    memset(&full, 0, sizeof full);
    full.ndim = 5;
    full.shape[0] = x->shape[0], full.shape[1] = w->shape[0];
    for (int i = 0; i < 3; i++)
        full.shape[2 + i] = nfv_conv_out_size_dilated(x->shape[2 + i], p->kernel[i], p->stride[i], p->padding[i], 1);
    conv_dims d;
    NFV_TRY(conv3d_check_shapes(op, p, x, w, b, &full, &d));
    if (d.od < 2 || d.oh < 2 || d.ow < 2 || y->ndim != 5 || y->shape[0] != d.n || y->shape[1] != d.co ||
        y->shape[2] != d.od / 2 || y->shape[3] != d.oh / 2 || y->shape[4] != d.ow / 2 || argmax->numel != y->numel)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: pooled output %s (argmax %zu values) for input %s, expected %dx%dx%dx%dx%d",
                        op, nfv_shape_str(y, sy, sizeof sy), argmax->numel, nfv_shape_str(x, sx, sizeof sx), d.n, d.co,
                        d.od / 2, d.oh / 2, d.ow / 2);
    const fast_config c = conv3d_fast_config(ctx, &d);
    const int pcob = divisor_at_most(d.co, 4);
    char opts[512];
    conv3d_fast_options(&c, &d, 1, opts, sizeof opts);
    size_t used = strlen(opts);
    snprintf(opts + used, sizeof opts - used, " -DPCOB=%d", pcob);
    const char *name = "conv3d_fwd_relu_pool2";
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "conv3d", opts, name, &k));
    cl_mem xp;
    NFV_TRY(conv3d_pad_input(ctx, &d, x->buf, NULL, 0, &xp));
    cl_int has_bias = b != NULL;
    cl_mem bb = b ? b->buf : w->buf;
    NFV_ARG(k, name, 0, xp);
    NFV_ARG(k, name, 1, w->buf);
    NFV_ARG(k, name, 2, bb);
    NFV_ARG(k, name, 3, y->buf);
    NFV_ARG(k, name, 4, argmax->buf);
    NFV_ARG(k, name, 5, has_bias);
    size_t global[3] = {(size_t)(d.ow + c.vec - 1) / c.vec, (size_t)d.oh / 2, (size_t)d.n * (d.co / pcob) * (d.od / 2)};
    /* One pooled plane per work-group, as forward_fast. */
    size_t max_local = nfv_kernel_max_local(ctx, k), local[3] = {global[0], global[1], 1};
    if (global[0] * global[1] > max_local) local[1] = 1;
    return nfv_kernel_launch(ctx, k, 3, global, global[0] * local[1] <= max_local ? local : NULL);
}

nfv_status nfv_conv3d_fold_batchnorm(nfv_context *ctx, const nfv_tensor *w, const nfv_tensor *b,
                                     const nfv_tensor *gamma, const nfv_tensor *beta, const nfv_tensor *mean,
                                     const nfv_tensor *var, float eps, nfv_tensor *wf, nfv_tensor *bf)
{
    if (!w || !gamma || !beta || !mean || !var || !wf || !bf || w->ndim != 5)
        return nfv_fail(NFV_ERR_INVALID_ARG, "conv3d BatchNorm fold: NULL tensor or weight not 5-D");
    const int co = w->shape[0], per = (int)(w->numel / (size_t)co);
    const nfv_tensor *cv[] = {gamma, beta, mean, var, bf};
    for (int i = 0; i < 5; i++)
        if (cv[i]->numel != (size_t)co)
            return nfv_fail(NFV_ERR_INVALID_ARG, "conv3d BatchNorm fold: a per-channel tensor has %zu values, the conv %d channels",
                            cv[i]->numel, co);
    if (wf->numel != w->numel || (b && b->numel != (size_t)co))
        return nfv_fail(NFV_ERR_INVALID_ARG, "conv3d BatchNorm fold: folded weight or bias does not match the conv");
    cl_kernel k;
    char go[32];
    NFV_TRY(nfv_kernel_get(ctx, "conv3d", conv3d_generic_options(ctx, go, sizeof go), "conv3d_fold_bn", &k));
    cl_int has_bias = b != NULL, n_co = co, n_per = per;
    cl_mem bb = b ? b->buf : w->buf; /* never read without bias */
    int a = 0;
    NFV_ARG(k, "conv3d_fold_bn", a++, w->buf);
    NFV_ARG(k, "conv3d_fold_bn", a++, bb);
    NFV_ARG(k, "conv3d_fold_bn", a++, has_bias);
    NFV_ARG(k, "conv3d_fold_bn", a++, gamma->buf);
    NFV_ARG(k, "conv3d_fold_bn", a++, beta->buf);
    NFV_ARG(k, "conv3d_fold_bn", a++, mean->buf);
    NFV_ARG(k, "conv3d_fold_bn", a++, var->buf);
    NFV_ARG(k, "conv3d_fold_bn", a++, eps);
    NFV_ARG(k, "conv3d_fold_bn", a++, wf->buf);
    NFV_ARG(k, "conv3d_fold_bn", a++, bf->buf);
    NFV_ARG(k, "conv3d_fold_bn", a++, n_co);
    NFV_ARG(k, "conv3d_fold_bn", a++, n_per);
    size_t global = w->numel;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}
