/* One batch of the feature-visualization loop (activation maximization):
 * N samples (targets on one layer x starts) optimized together.  Pipeline and
 * shapes in include/neurofv/vis.h; the building blocks (penalties, blur,
 * pad/jitter/warp, Fourier) in neurofv/vis_ops.h; what each target kind's
 * objective and seed are in vis_objective.c.
 *
 * Reproducibility: every random number (initial noise, transform
 * parameters) comes from a host splitmix64 stream seeded by (seed, target
 * text, start), so a target's result does not depend on which other targets
 * share its batch, on --batch or on --shard, and the same seed gives the same
 * bytes on the same device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "base/rng.h"
#include "neurofv/vis_ops.h"
#include "vis/vis_internal.h"
#include "base/clock.h"


/* The stream of one sample: (seed, target text, start). */
static uint64_t sample_seed(unsigned long long seed, const char *target, int start)
{
    uint64_t h = nfv_hash64(target, strlen(target), NFV_HASH_SEED ^ (seed * 0x9E3779B97F4A7C15ULL));
    h ^= (unsigned long long)(start + 1) * 0xD1B54A32D192ED03ULL;
    nfv_splitmix64(&h);
    return h;
}

/* Phases of a step timed by NEUROFV_VIS_PROFILE=1. */
enum { PH_IMAGE, PH_TRANSFORMS, PH_FORWARD, PH_OBJECTIVE, PH_BACKWARD, PH_ADJOINTS, PH_UPDATE, PH_COUNT };

typedef struct batch_state {
    nfv_context *ctx;
    nfv_model *m;
    const nfv_vis_options *o;
    const nfv_target *targets;
    const vis_sample *smp;
    const vis_progress *progress;
    vis_log *logs;            /* (N) */
    int N, D, H, W;
    int layer;                /* the targets' layer */
    size_t vox;               /* D*H*W */
    /* Every volume below is (N, 1, D, H, W) unless noted. */
    nfv_tensor param, dparam, opt_m, opt_v;
    nfv_tensor change;        /* Fourier: decoded; voxel: unused (param is the change) */
    nfv_tensor image;         /* when mask/template: change x mask + template */
    nfv_tensor templ;         /* template copies */
    nfv_tensor mask;          /* (D, H, W) */
    nfv_tensor padded, shifted, dpadded, dshifted; /* (N, 1, D+2P, H+2P, W+2P) */
    nfv_tensor model_in, dx, dimage_buf;
    nfv_tensor pen_value;     /* (N) */
    nfv_tensor blur_tmp;
    nfv_tensor blur_factor;   /* (D, H, W) Fourier blur as a per-coefficient factor */
    nfv_tensor importance;    /* sum of |d objective / d image| over the steps */
    nfv_fourier *fourier;
    nfv_maco *maco;           /* --param maco: param is the phase, change the decoded image */
    vis_diversity div;        /* --diversity */
    vis_stay stay;            /* --stay */
    vis_objective objective;
    uint64_t *streams;        /* (N) each sample's stream: its start, then its transforms */
    float *matrix;            /* (N, 12) this step's warps */
    int *shift;               /* (N, 3) this step's integer shifts */
    float *obj, *l1, *l2, *tv; /* (N) each: objective and weighted penalties at a logged step */
    int has_mask, has_template, transforms, warp;
    int grad_box[6];          /* the mask's box (z0, z1, y0, y1, x0, x1, half-open) ... */
    int use_grad_box;         /* ... the only part of the warp's adjoint that survives the mask */
    int pdims[3];             /* padded D, H, W */
    int profile;
    double phase[PH_COUNT], phase_t;
} batch_state;

static void batch_free(batch_state *b)
{
    nfv_tensor *ts[] = {&b->param,  &b->dparam,    &b->opt_m,      &b->opt_v,    &b->change,   &b->image,
                        &b->templ,  &b->mask,      &b->padded,     &b->shifted,  &b->dpadded,  &b->dshifted,
                        &b->model_in, &b->dx,      &b->dimage_buf, &b->pen_value, &b->blur_tmp, &b->blur_factor,
                        &b->importance};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) nfv_tensor_free(ts[i]);
    if (b->fourier) nfv_fourier_free(b->fourier);
    b->fourier = NULL;
    nfv_maco_free(b->maco);
    b->maco = NULL;
    vis_diversity_free(&b->div);
    vis_stay_free(&b->stay);
    vis_objective_free(&b->objective);
    free(b->streams);
    free(b->matrix);
    free(b->shift);
    free(b->obj);
    b->streams = NULL;
    b->matrix = NULL;
    b->shift = NULL;
    b->obj = NULL;
}

static nfv_status vol_tensor(nfv_context *ctx, nfv_tensor *t, int n, int d, int h, int w)
{
    int shape[5] = {n, 1, d, h, w};
    return nfv_tensor_create(ctx, t, 5, shape);
}

/* Gaussian blur of sigma voxels as a per-coefficient factor of the Fourier
 * parameter: exp(-2 pi^2 sigma^2 |f|^2), |f| the coefficient's frequency
 * (DFT: min(k, n-k)/n; DCT-II: k/(2n) cycles per voxel). */
static nfv_status fourier_blur_factor(batch_state *b, int dct, float sigma)
{
    float *h = malloc(b->vox * sizeof *h);
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "blur factor: out of memory");
    int dims[3] = {b->D, b->H, b->W};
    double f2[3][1024];
    for (int a = 0; a < 3; a++)
        for (int k = 0; k < dims[a] && k < 1024; k++) {
            double f = dct ? k / (2.0 * dims[a]) : (double)(k < dims[a] - k ? k : dims[a] - k) / dims[a];
            f2[a][k] = f * f;
        }
    for (int z = 0; z < b->D; z++)
        for (int y = 0; y < b->H; y++)
            for (int x = 0; x < b->W; x++)
                h[((size_t)z * b->H + y) * b->W + x] =
                    (float)exp(-2.0 * M_PI * M_PI * sigma * sigma * (f2[0][z] + f2[1][y] + f2[2][x]));
    int shape[3] = {b->D, b->H, b->W};
    nfv_status st = nfv_tensor_create(b->ctx, &b->blur_factor, 3, shape);
    if (!st) st = nfv_tensor_upload(b->ctx, &b->blur_factor, h);
    free(h);
    return st;
}

/* The device buffers of the batch: parameter and optimizer state, gradients,
 * the transforms' intermediates, the Fourier plan. */
static nfv_status batch_alloc(batch_state *b)
{
    nfv_context *ctx = b->ctx;
    const nfv_vis_options *o = b->o;
    int N = b->N, D = b->D, H = b->H, W = b->W, *p = b->pdims;
    NFV_TRY(vol_tensor(ctx, &b->param, N, D, H, W));
    NFV_TRY(vol_tensor(ctx, &b->dparam, N, D, H, W));
    NFV_TRY(vol_tensor(ctx, &b->opt_m, N, D, H, W));
    if (!o->sgd) NFV_TRY(vol_tensor(ctx, &b->opt_v, N, D, H, W));
    NFV_TRY(vol_tensor(ctx, &b->dx, N, D, H, W));
    NFV_TRY(vol_tensor(ctx, &b->dimage_buf, N, D, H, W));
    int one[1] = {N};
    NFV_TRY(nfv_tensor_create(ctx, &b->pen_value, 1, one));
    if (b->has_mask || b->has_template) NFV_TRY(vol_tensor(ctx, &b->image, N, D, H, W));
    if (b->transforms) {
        NFV_TRY(vol_tensor(ctx, &b->model_in, N, D, H, W));
        if (o->pad > 0) {
            NFV_TRY(vol_tensor(ctx, &b->padded, N, p[0], p[1], p[2]));
            NFV_TRY(vol_tensor(ctx, &b->dpadded, N, p[0], p[1], p[2]));
            if (!b->warp) {
                NFV_TRY(vol_tensor(ctx, &b->shifted, N, p[0], p[1], p[2]));
                NFV_TRY(vol_tensor(ctx, &b->dshifted, N, p[0], p[1], p[2]));
            }
        }
    }
    if (o->param == NFV_VIS_PARAM_MACO) {
        const nfv_model *m = b->m;
        NFV_TRY(nfv_maco_create(ctx, D, H, W, m->spectrum, m->spectrum_lo, m->spectrum_hi, &b->maco));
        NFV_TRY(vol_tensor(ctx, &b->change, N, D, H, W));
    } else if (o->param != NFV_VIS_PARAM_VOXEL) {
        nfv_fourier_basis basis = o->param == NFV_VIS_PARAM_DCT ? NFV_FOURIER_DCT : NFV_FOURIER_DFT;
        NFV_TRY(nfv_fourier_create(ctx, basis, D, H, W, o->decay, &b->fourier));
        NFV_TRY(vol_tensor(ctx, &b->change, N, D, H, W));
        if (o->blur_sigma > 0) NFV_TRY(fourier_blur_factor(b, o->param == NFV_VIS_PARAM_DCT, o->blur_sigma));
    } else if (o->blur_sigma > 0) {
        NFV_TRY(vol_tensor(ctx, &b->blur_tmp, N, D, H, W));
    }
    if (o->importance) NFV_TRY(vol_tensor(ctx, &b->importance, N, D, H, W));
    if (b->has_template) NFV_TRY(vol_tensor(ctx, &b->templ, N, D, H, W));
    if (b->has_mask) {
        int shape[3] = {D, H, W};
        NFV_TRY(nfv_tensor_create(ctx, &b->mask, 3, shape));
    }
    b->streams = malloc((size_t)N * sizeof *b->streams);
    b->matrix = malloc((size_t)N * 12 * sizeof *b->matrix);
    b->shift = malloc((size_t)N * 3 * sizeof *b->shift);
    b->obj = malloc((size_t)N * 4 * sizeof *b->obj);
    if (!b->streams || !b->matrix || !b->shift || !b->obj)
        return nfv_fail(NFV_ERR_NO_MEMORY, "visualization: out of memory");
    b->l1 = b->obj + N;
    b->l2 = b->obj + 2 * N;
    b->tv = b->obj + 3 * N;
    return NFV_OK;
}

/* The half-open box (z0, z1, y0, y1, x0, x1) of mask's nonzero voxels
 * (D, H, W); all 0 for an empty mask (nothing survives it). */
static void mask_box(const float *mask, int D, int H, int W, int box[6])
{
    const int dims[3] = {D, H, W};
    for (int a = 0; a < 3; a++) box[2 * a] = dims[a], box[2 * a + 1] = 0;
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                if (mask[((size_t)z * H + y) * W + x] == 0.0f) continue;
                const int at[3] = {z, y, x};
                for (int a = 0; a < 3; a++) {
                    if (at[a] < box[2 * a]) box[2 * a] = at[a];
                    if (at[a] + 1 > box[2 * a + 1]) box[2 * a + 1] = at[a] + 1;
                }
            }
    for (int a = 0; a < 3; a++)
        if (box[2 * a] > box[2 * a + 1]) box[2 * a] = box[2 * a + 1] = 0;
}

/* The start: each sample's stream, then its noise (or zeros) as the
 * parameter; the template copies, the mask, a zero importance sum. */
static nfv_status batch_start(batch_state *b, const float *templ_host, const float *mask_host, float *host)
{
    nfv_context *ctx = b->ctx;
    const nfv_vis_options *o = b->o;
    for (int n = 0; n < b->N; n++) {
        b->streams[n] = sample_seed(o->seed, b->targets[b->smp[n].target].name, b->smp[n].start);
        float *p = host + (size_t)n * b->vox;
        /* A phase (maco) starts uniform in [-pi, pi], as MACO's. */
        double amp = b->maco ? M_PI : o->init_scale;
        if (o->init == NFV_VIS_INIT_NOISE)
            for (size_t i = 0; i < b->vox; i++) p[i] = (float)((2.0 * nfv_uniform01(&b->streams[n]) - 1.0) * amp);
        else
            memset(p, 0, b->vox * sizeof *p);
    }
    NFV_TRY(nfv_tensor_upload(ctx, &b->param, host));
    if (o->has_range) NFV_TRY(nfv_clamp(ctx, o->range_lo, o->range_hi, &b->param));
    if (o->importance) NFV_TRY(nfv_tensor_fill(ctx, &b->importance, 0.0f));
    if (b->has_template) {
        for (int n = 0; n < b->N; n++) memcpy(host + (size_t)n * b->vox, templ_host, b->vox * sizeof *host);
        NFV_TRY(nfv_tensor_upload(ctx, &b->templ, host));
    }
    if (b->has_mask) NFV_TRY(nfv_tensor_upload(ctx, &b->mask, mask_host));
    /* The image gradient is masked right after the transforms' adjoint
     * (update_param), so the warp's adjoint, a gather over every output
     * that may have sampled a voxel, need only cover the mask's box: a
     * 24 mm ball is 2 % of a 2 mm grid.  Not with padding (the warp then
     * runs on the padded grid) nor with --importance (it reads the whole
     * gradient before the mask). */
    b->use_grad_box = b->has_mask && b->warp && o->pad == 0 && !o->importance;
    if (b->use_grad_box) mask_box(mask_host, b->D, b->H, b->W, b->grad_box);
    return NFV_OK;
}

/* The change (what the penalties see): the decoded image or the parameter itself. */
static const nfv_tensor *change_of(const batch_state *b) { return b->fourier || b->maco ? &b->change : &b->param; }

/* image = change x mask + template (or the change itself). */
static nfv_status make_image(batch_state *b, const nfv_tensor **image)
{
    nfv_context *ctx = b->ctx;
    if (b->fourier) NFV_TRY(nfv_fourier_decode(ctx, b->fourier, &b->param, &b->change));
    if (b->maco) NFV_TRY(nfv_maco_decode(ctx, b->maco, &b->param, &b->change));
    const nfv_tensor *ch = change_of(b);
    if (!b->has_mask && !b->has_template) {
        *image = ch;
        return NFV_OK;
    }
    NFV_TRY(nfv_tensor_copy(ctx, &b->image, ch));
    if (b->has_mask) NFV_TRY(nfv_mask_apply(ctx, &b->mask, &b->image));
    if (b->has_template) NFV_TRY(nfv_axpy(ctx, 1.0f, &b->templ, &b->image));
    *image = &b->image;
    return NFV_OK;
}

/* Draw this step's transforms for every sample and build the model input. */
static nfv_status transform_forward(batch_state *b, int step, const nfv_tensor *image, const nfv_tensor **x)
{
    const nfv_vis_options *o = b->o;
    if (!b->transforms) {
        *x = image;
        return NFV_OK;
    }
    int out_dims[3] = {b->D, b->H, b->W};
    float max_angle = (float)(o->rotate_deg * M_PI / 180.0);
    if (o->crop_max > 0) /* MACO's recipe: a crop of shrinking size, resized to the grid */
        nfv_maco_crops(b->streams, b->N, out_dims, nfv_maco_crop_at(o->crop_max, o->crop_min, step, o->steps),
                       b->matrix);
    else
        nfv_random_transforms(b->streams, b->N, b->pdims, out_dims, o->scale_min, o->scale_max, max_angle,
                              o->jitter, b->matrix, b->shift);
    const nfv_tensor *src = image;
    int pad[3] = {o->pad, o->pad, o->pad};
    if (o->pad > 0) {
        NFV_TRY(nfv_pad(b->ctx, pad, NFV_BOUNDARY_REPLICATE, 0.0f, image, &b->padded));
        src = &b->padded;
    }
    if (b->warp) {
        NFV_TRY(nfv_affine_warp(b->ctx, b->matrix, src, &b->model_in));
    } else if (o->pad > 0) {
        NFV_TRY(nfv_jitter(b->ctx, b->shift, 0, src, &b->shifted));
        NFV_TRY(nfv_pad_adjoint(b->ctx, pad, NFV_BOUNDARY_ZERO, &b->shifted, &b->model_in)); /* centre crop */
    } else {
        NFV_TRY(nfv_jitter(b->ctx, b->shift, 0, src, &b->model_in));
    }
    /* Additive: the gradient passes through unchanged. */
    if (o->noise > 0) NFV_TRY(nfv_add_noise(b->ctx, b->streams, b->N, o->noise, &b->model_in));
    *x = &b->model_in;
    return NFV_OK;
}

/* dimage = adjoint of the transforms applied to dx. */
static nfv_status transform_adjoint(batch_state *b, nfv_tensor **dimage)
{
    const nfv_vis_options *o = b->o;
    if (!b->transforms) {
        *dimage = &b->dx;
        return NFV_OK;
    }
    int pad[3] = {o->pad, o->pad, o->pad};
    nfv_tensor *dsrc = o->pad > 0 ? &b->dpadded : &b->dimage_buf;
    if (b->warp) {
        NFV_TRY(nfv_affine_warp_adjoint(b->ctx, b->matrix, &b->dx, dsrc, b->use_grad_box ? b->grad_box : NULL));
    } else if (o->pad > 0) {
        NFV_TRY(nfv_pad(b->ctx, pad, NFV_BOUNDARY_ZERO, 0.0f, &b->dx, &b->dshifted)); /* adjoint of the crop */
        NFV_TRY(nfv_jitter(b->ctx, b->shift, 1, &b->dshifted, dsrc));
    } else {
        NFV_TRY(nfv_jitter(b->ctx, b->shift, 1, &b->dx, dsrc));
    }
    if (o->pad > 0) NFV_TRY(nfv_pad_adjoint(b->ctx, pad, NFV_BOUNDARY_REPLICATE, &b->dpadded, &b->dimage_buf));
    *dimage = &b->dimage_buf;
    return NFV_OK;
}

/* Weighted penalty values per sample (for the log) into b->l1, l2, tv. */
static nfv_status read_terms(batch_state *b)
{
    const nfv_vis_options *o = b->o;
    const nfv_tensor *ch = change_of(b);
    const nfv_tensor *mask = b->has_mask ? &b->mask : NULL;
    float w = 1.0f / (float)b->vox;
    float *outs[3] = {b->l1, b->l2, b->tv};
    float weights[3] = {o->l1, o->l2, o->tv};
    nfv_penalty_kind kinds[3] = {NFV_PENALTY_L1, NFV_PENALTY_L2, NFV_PENALTY_TV};
    for (int k = 0; k < 3; k++) {
        if (weights[k] <= 0) {
            for (int n = 0; n < b->N; n++) outs[k][n] = 0;
            continue;
        }
        NFV_TRY(nfv_penalty(b->ctx, kinds[k], weights[k] * w, o->tv_eps, ch, mask, &b->pen_value, NULL));
        NFV_TRY(vis_read_floats(b->ctx, &b->pen_value, 0, (size_t)b->N, outs[k]));
    }
    return NFV_OK;
}

/* dst[n] = a malloc'ed copy of sample n of t (D*H*W floats), for every n. */
static nfv_status download_samples(batch_state *b, const nfv_tensor *t, float **dst)
{
    float *all = malloc(t->numel * sizeof *all);
    if (!all) return nfv_fail(NFV_ERR_NO_MEMORY, "visualization download: out of memory");
    nfv_status st = nfv_tensor_download(b->ctx, t, all);
    int n = 0;
    for (; !st && n < b->N; n++) {
        dst[n] = malloc(b->vox * sizeof(float));
        if (!dst[n]) st = nfv_fail(NFV_ERR_NO_MEMORY, "visualization download: out of memory");
        else memcpy(dst[n], all + (size_t)n * b->vox, b->vox * sizeof(float));
    }
    if (st)
        while (n-- > 0) free(dst[n]);
    free(all);
    return st;
}

/* The objective of every sample at a logged step (and, every 16th logged
 * step and at the first and last, the penalty terms); then progress. */
static nfv_status log_step(batch_state *b, int step, const nfv_tensor *act)
{
    const nfv_vis_options *o = b->o;
    NFV_TRY(vis_objective_read(&b->objective, act, b->obj));
    for (int n = 0; n < b->N; n++) NFV_TRY(vis_log_push(&b->logs[n], step, b->obj[n]));
    int terms = (o->l1 > 0 || o->l2 > 0 || o->tv > 0) &&
                (step % (16 * o->log_every) == 0 || step == o->steps || step == 1);
    if (terms) {
        NFV_TRY(read_terms(b));
        for (int n = 0; n < b->N; n++) NFV_TRY(vis_log_terms(&b->logs[n], step, b->l1[n], b->l2[n], b->tv[n]));
    }
    const vis_progress *p = b->progress;
    if (p && p->fn) p->fn(p->user, p->batch, p->batches, step, o->steps, b->obj, b->N);
    return NFV_OK;
}

/* Snapshots of the image before step `step` (i.e. after step - 1 updates). */
static nfv_status take_snapshots(batch_state *b, const nfv_tensor *image, int step)
{
    for (int s = 0; s < b->o->snapshot_count; s++)
        if (b->o->snapshots[s] == step - 1) {
            float *snaps[4096];
            NFV_TRY(download_samples(b, image, snaps));
            for (int n = 0; n < b->N; n++) b->logs[n].snap[s] = snaps[n];
        }
    return NFV_OK;
}

/* NEUROFV_VIS_PROFILE=1: wait for the queue and add the time since the last
 * mark to phase i. */
static void phase_mark(batch_state *b, int i)
{
    if (!b->profile) return;
    nfv_finish(b->ctx);
    double t = nfv_seconds();
    b->phase[i] += t - b->phase_t;
    b->phase_t = t;
}

static void phase_report(const batch_state *b)
{
    if (!b->profile) return;
    const double *ph = b->phase;
    int steps = b->o->steps;
    fprintf(stderr,
            "vis profile (N=%d, %d steps, s/step): image %.4f transforms %.4f forward %.4f objective %.4f "
            "backward %.4f adjoints %.4f penalties+step+blur %.4f\n",
            b->N, steps, ph[0] / steps, ph[1] / steps, ph[2] / steps, ph[3] / steps, ph[4] / steps, ph[5] / steps,
            ph[6] / steps);
}

/* dimage += the penalties' gradients; then mask, Fourier adjoint, the
 * optimizer step on the parameter, the periodic blur and the box. */
static nfv_status update_param(batch_state *b, int step, nfv_tensor *dimage)
{
    nfv_context *ctx = b->ctx;
    const nfv_vis_options *o = b->o;
    const nfv_tensor *ch = change_of(b), *mask = b->has_mask ? &b->mask : NULL;
    float inv_vox = 1.0f / (float)b->vox;
    if (o->l1 > 0) NFV_TRY(nfv_penalty(ctx, NFV_PENALTY_L1, o->l1 * inv_vox, 0.0f, ch, mask, NULL, dimage));
    if (o->l2 > 0) NFV_TRY(nfv_penalty(ctx, NFV_PENALTY_L2, o->l2 * inv_vox, 0.0f, ch, mask, NULL, dimage));
    if (o->tv > 0) NFV_TRY(nfv_penalty(ctx, NFV_PENALTY_TV, o->tv * inv_vox, o->tv_eps, ch, mask, NULL, dimage));
    if (b->has_mask) NFV_TRY(nfv_mask_apply(ctx, &b->mask, dimage));
    const nfv_tensor *grad = dimage;
    if (b->fourier) {
        NFV_TRY(nfv_fourier_adjoint(ctx, b->fourier, dimage, &b->dparam));
        grad = &b->dparam;
    }
    if (b->maco) {
        NFV_TRY(nfv_maco_adjoint(ctx, b->maco, &b->param, &b->change, dimage, &b->dparam));
        grad = &b->dparam;
    }
    if (o->sgd) {
        nfv_sgd_params hp = {o->lr, o->momentum, o->weight_decay};
        NFV_TRY(nfv_sgd_step(ctx, &hp, &b->param, grad, &b->opt_m));
    } else {
        nfv_adam_params hp = {o->lr, 0.9f, 0.999f, 1e-8f, o->weight_decay, 0};
        NFV_TRY(nfv_adam_step(ctx, &hp, step, &b->param, grad, &b->opt_m, &b->opt_v));
    }
    if (o->blur_sigma > 0 && step % o->blur_every == 0) {
        if (b->fourier) {
            NFV_TRY(nfv_mask_apply(ctx, &b->blur_factor, &b->param));
        } else {
            NFV_TRY(nfv_gaussian_blur(ctx, o->blur_sigma, NFV_BOUNDARY_REPLICATE, 0, &b->param, &b->blur_tmp));
            NFV_TRY(nfv_tensor_copy(ctx, &b->param, &b->blur_tmp));
        }
    }
    /* Projected gradient ascent: back into the box after every update. */
    if (o->has_range) NFV_TRY(nfv_clamp(ctx, o->range_lo, o->range_hi, &b->param));
    return NFV_OK;
}

/* One step (1-based) from the current image: transforms, forward to the
 * layer, objective seed (and log), backward to the input, adjoints, update. */
static nfv_status take_step(batch_state *b, int step, const nfv_tensor *image)
{
    const nfv_vis_options *o = b->o;
    const nfv_tensor *x;
    phase_mark(b, PH_IMAGE);
    NFV_TRY(transform_forward(b, step, image, &x));
    phase_mark(b, PH_TRANSFORMS);
    NFV_TRY(nfv_model_forward(b->m, b->ctx, x, b->layer, 0));
    phase_mark(b, PH_FORWARD);
    nfv_tensor *act = nfv_model_activation(b->m, b->layer);
    NFV_TRY(vis_objective_step(&b->objective, act));
    if (step % o->log_every == 0 || step == o->steps || step == 1) NFV_TRY(log_step(b, step, act));
    phase_mark(b, PH_OBJECTIVE);
    NFV_TRY(nfv_model_backward(b->m, b->ctx, b->layer, &b->objective.seed, 0, &b->dx));
    if (o->diversity > 0) NFV_TRY(vis_diversity_add(&b->div, b->ctx, b->m, o, b->targets, b->smp, b->N, &b->dx));
    if (o->stay > 0) NFV_TRY(vis_stay_add(&b->stay, b->ctx, b->m, o, &b->dx));
    phase_mark(b, PH_BACKWARD);
    nfv_tensor *dimage;
    NFV_TRY(transform_adjoint(b, &dimage));
    /* The objective's own gradient (the seed is -d objective, the sign does not matter here). */
    if (o->importance) NFV_TRY(nfv_abs_accumulate(b->ctx, dimage, &b->importance));
    phase_mark(b, PH_ADJOINTS);
    NFV_TRY(update_param(b, step, dimage));
    phase_mark(b, PH_UPDATE);
    return NFV_OK;
}

/* After the last step: the final image (and change, importance) of every
 * sample, and its objective without transforms. */
static nfv_status finish(batch_state *b)
{
    int N = b->N;
    vis_log *logs = b->logs;
    for (int n = 0; n < N; n++) logs[n].final_objective = logs[n].count ? logs[n].objective[logs[n].count - 1] : 0.0f;
    const nfv_tensor *image;
    float *vols[4096];
    NFV_TRY(make_image(b, &image));
    NFV_TRY(download_samples(b, image, vols));
    for (int n = 0; n < N; n++) logs[n].image = vols[n];
    if (b->has_template) {
        NFV_TRY(download_samples(b, change_of(b), vols));
        for (int n = 0; n < N; n++) logs[n].change = vols[n];
    }
    if (b->o->importance) {
        if (b->o->steps > 0) NFV_TRY(nfv_scale(b->ctx, 1.0f / (float)b->o->steps, &b->importance));
        NFV_TRY(download_samples(b, &b->importance, vols));
        for (int n = 0; n < N; n++) logs[n].importance = vols[n];
    }
    NFV_TRY(nfv_model_forward(b->m, b->ctx, image, b->layer, 0));
    nfv_tensor *act = nfv_model_activation(b->m, b->layer);
    NFV_TRY(vis_objective_step(&b->objective, act));
    NFV_TRY(vis_objective_read(&b->objective, act, b->obj));
    for (int n = 0; n < N; n++) logs[n].clean_objective = b->obj[n];
    return NFV_OK;
}

static nfv_status optimize(batch_state *b, const float *templ, const float *mask)
{
    NFV_TRY(batch_alloc(b));
    float *host = malloc((size_t)b->N * b->vox * sizeof *host);
    if (!host) return nfv_fail(NFV_ERR_NO_MEMORY, "visualization: out of memory");
    nfv_status st = batch_start(b, templ, mask, host);
    free(host);
    NFV_TRY(st);
    NFV_TRY(vis_objective_init(&b->objective, b->ctx, b->m, b->targets, b->smp, b->N));
    if (b->o->stay > 0) NFV_TRY(vis_stay_init(&b->stay, b->ctx, b->m, b->o, b->layer, &b->templ, &b->dx));
    b->profile = getenv("NEUROFV_VIS_PROFILE") != NULL;
    b->phase_t = nfv_seconds();
    for (int step = 1; step <= b->o->steps + 1; step++) {
        const nfv_tensor *image;
        NFV_TRY(make_image(b, &image));
        NFV_TRY(take_snapshots(b, image, step));
        if (step == b->o->steps + 1) break; /* the final image, for outputs */
        /* Between steps only device buffers are in flight: a safe point. */
        NFV_TRY(nfv_interrupt_check("at step %d of %d", step, b->o->steps));
        NFV_TRY(take_step(b, step, image));
    }
    phase_report(b);
    return finish(b);
}

nfv_status vis_run_batch(nfv_context *ctx, nfv_model *m, const nfv_target *targets, const vis_sample *smp, int N,
                         const nfv_vis_options *o, const float *templ, const float *mask, const vis_progress *progress,
                         vis_log *logs)
{
    batch_state b;
    memset(&b, 0, sizeof b);
    b.ctx = ctx;
    b.m = m;
    b.o = o;
    b.targets = targets;
    b.smp = smp;
    b.progress = progress;
    b.logs = logs;
    b.N = N;
    b.D = m->input_shape[1];
    b.H = m->input_shape[2];
    b.W = m->input_shape[3];
    b.layer = targets[smp[0].target].layer;
    b.vox = (size_t)b.D * b.H * b.W;
    b.has_mask = mask != NULL;
    b.has_template = templ != NULL;
    b.warp = o->scale_min != 1.0f || o->scale_max != 1.0f || o->rotate_deg > 0 || o->crop_max > 0;
    b.transforms = b.warp || o->jitter > 0 || o->pad > 0 || o->noise > 0;
    b.pdims[0] = b.D + 2 * o->pad;
    b.pdims[1] = b.H + 2 * o->pad;
    b.pdims[2] = b.W + 2 * o->pad;
    /* Eval-mode fusion of conv -> BN -> ReLU for the run, with the layers
     * the penalties read (--stay, --diversity) kept; off again after, for
     * callers that read other layers' activations. */
    const int was_fused = m->fuse_eval;
    if (o->stay > 0) nfv_model_keep_activation(m, vis_diversity_layer(m, o->stay_layer, b.layer));
    if (o->diversity > 0) nfv_model_keep_activation(m, vis_diversity_layer(m, o->diversity_layer, b.layer));
    nfv_model_set_fusion(m, 1);
    nfv_status st = optimize(&b, templ, mask);
    nfv_model_set_fusion(m, was_fused);
    batch_free(&b);
    return st;
}
