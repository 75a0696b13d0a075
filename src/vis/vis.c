/* The feature-visualization loop (activation maximization) and its options.
 * Pipeline and shapes in include/neurofv/vis.h; the building blocks
 * (penalties, blur, pad/jitter/warp, Fourier) are in vis_ops.h.
 *
 * Reproducibility: every random number (initial noise, transform
 * parameters) comes from a host splitmix64 stream seeded by (seed, target
 * text, start), so a target's result does not depend on which other targets
 * share its batch, on --batch or on --shard, and the same seed gives the same
 * bytes on the same device. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "neurofv/vis.h"
#include "neurofv/vis_ops.h"

/* ---- options ------------------------------------------------------------- */

const nfv_vis_option_info nfv_vis_option_table[] = {
    {"--steps", "N", "optimization steps (default 512)"},
    {"--lr", "LR", "learning rate (default 0.05)"},
    {"--optimizer", "adam|sgd", "optimizer on the parameter (default adam)"},
    {"--momentum", "M", "SGD momentum (default 0.9)"},
    {"--weight-decay", "W", "weight decay added to the gradient, as PyTorch (default 0)"},
    {"--seed", "S", "random seed for the start and the transforms (default 1)"},
    {"--starts", "K", "random starts per target; the best (objective without transforms) is kept (default 1)"},
    {"--batch", "B", "samples (targets x starts) optimized together in one device batch (default 8)"},
    {"--param", "voxel|fourier|dct", "parameterization: voxels, or Fourier coefficients with 1/f scaling "
                                     "(fourier: periodic DFT/Hartley basis; dct: DCT-II basis) (default voxel)"},
    {"--decay", "D", "Fourier 1/f^D scaling exponent (default 1)"},
    {"--init", "noise[=A]|zeros|template[=FILE]",
     "start: uniform noise in [-A, A] (A default 0.1), zeros, or a template (default Colin27) on the model grid, "
     "normalized like the training data: the parameter is then the change (default noise)"},
    {"--l1", "W", "L1 penalty W x mean|change| (default 0 = off)"},
    {"--l2", "W", "L2 penalty W x mean change^2 (default 0 = off)"},
    {"--tv", "W", "3D total variation W x mean sqrt(dz^2+dy^2+dx^2+eps) (default 0 = off)"},
    {"--tv-eps", "E", "TV smoothing eps (default 1e-4)"},
    {"--blur", "SIGMA", "Gaussian blur of the parameter, sigma in voxels (default 0 = off)"},
    {"--blur-every", "K", "blur every K steps (default 4)"},
    {"--jitter", "N", "random shift of up to +-N voxels per axis each step (default 0 = off)"},
    {"--scale", "LO,HI", "random scale in [LO, HI] each step (default 1,1 = off)"},
    {"--rotate", "DEG", "random rotation of up to +-DEG degrees about each axis each step (default 0 = off)"},
    {"--pad", "P", "replicate the edges by P voxels before the transforms (default 0)"},
    {"--range", "LO,HI", "keep every voxel of the change in [LO, HI] (projected steps, voxel parameterization; "
                         "e.g. 0,4 = only brighten, by at most 4 SD) (default off)"},
    {"--mask", "FILE|brain|none", "optimize only inside a mask (brain: Colin27 > 0 on the model grid) (default none)"},
    {"--log-every", "K", "read the objective every K steps (default 1)"},
    {"--snapshots", "S1,S2,...", "also keep the volume at these steps (0 = the start)"},
    {"--importance", "on|off", "also write <stem>_importance.nii.gz/.png: the mean |d objective / d voxel| over the "
                               "steps, where the unit looked while its image was drawn (default off)"},
    {NULL, NULL, NULL}};

void nfv_vis_options_default(nfv_vis_options *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 512;
    o->lr = 0.05f;
    o->momentum = 0.9f;
    o->seed = 1;
    o->starts = 1;
    o->batch = 8;
    o->param = NFV_VIS_PARAM_VOXEL;
    o->decay = 1.0f;
    o->init = NFV_VIS_INIT_NOISE;
    o->init_scale = 0.1f;
    o->tv_eps = 1e-4f;
    o->blur_every = 4;
    o->scale_min = o->scale_max = 1.0f;
    o->log_every = 1;
}

static int parse_float(const char *v, float *out)
{
    char *end;
    if (!v || !*v) return 0;
    float x = strtof(v, &end);
    if (*end || !isfinite(x)) return 0;
    *out = x;
    return 1;
}

static int parse_intv(const char *v, int *out)
{
    char *end;
    if (!v || !*v) return 0;
    long x = strtol(v, &end, 10);
    if (*end || x < -1000000000L || x > 1000000000L) return 0;
    *out = (int)x;
    return 1;
}

#define BAD(name, v, what) nfv_fail(NFV_ERR_INVALID_ARG, "%s expects %s, got \"%s\"", name, what, v ? v : "")

nfv_status nfv_vis_options_set(nfv_vis_options *o, const char *name, const char *v)
{
    if (!name) return nfv_fail(NFV_ERR_INVALID_ARG, "visualization option: no name");
    if (!v) return nfv_fail(NFV_ERR_INVALID_ARG, "%s needs a value", name);
    if (!strcmp(name, "--steps")) {
        if (!parse_intv(v, &o->steps) || o->steps < 0) return BAD(name, v, "a step count >= 0");
    } else if (!strcmp(name, "--lr")) {
        if (!parse_float(v, &o->lr) || !(o->lr > 0)) return BAD(name, v, "a learning rate > 0");
    } else if (!strcmp(name, "--optimizer")) {
        if (!strcmp(v, "adam")) o->sgd = 0;
        else if (!strcmp(v, "sgd")) o->sgd = 1;
        else return BAD(name, v, "adam or sgd");
    } else if (!strcmp(name, "--momentum")) {
        if (!parse_float(v, &o->momentum) || o->momentum < 0 || o->momentum >= 1) return BAD(name, v, "M in [0, 1)");
    } else if (!strcmp(name, "--weight-decay")) {
        if (!parse_float(v, &o->weight_decay) || o->weight_decay < 0) return BAD(name, v, "a weight decay >= 0");
    } else if (!strcmp(name, "--seed")) {
        char *end;
        if (!*v || !isdigit((unsigned char)*v)) return BAD(name, v, "a non-negative integer");
        o->seed = strtoull(v, &end, 10);
        if (*end) return BAD(name, v, "a non-negative integer");
    } else if (!strcmp(name, "--starts")) {
        if (!parse_intv(v, &o->starts) || o->starts < 1 || o->starts > 1024) return BAD(name, v, "an integer 1-1024");
    } else if (!strcmp(name, "--batch")) {
        if (!parse_intv(v, &o->batch) || o->batch < 1 || o->batch > 4096) return BAD(name, v, "an integer >= 1");
    } else if (!strcmp(name, "--param")) {
        if (!strcmp(v, "voxel")) o->param = NFV_VIS_PARAM_VOXEL;
        else if (!strcmp(v, "fourier") || !strcmp(v, "fft") || !strcmp(v, "dft")) o->param = NFV_VIS_PARAM_FOURIER;
        else if (!strcmp(v, "dct")) o->param = NFV_VIS_PARAM_DCT;
        else return BAD(name, v, "voxel, fourier or dct");
    } else if (!strcmp(name, "--decay")) {
        if (!parse_float(v, &o->decay) || o->decay < 0 || o->decay > 4) return BAD(name, v, "an exponent in [0, 4]");
    } else if (!strcmp(name, "--init")) {
        if (!strcmp(v, "zeros")) {
            o->init = NFV_VIS_INIT_ZEROS;
        } else if (!strncmp(v, "noise", 5) && (v[5] == 0 || v[5] == '=')) {
            o->init = NFV_VIS_INIT_NOISE;
            if (v[5] == '=' && (!parse_float(v + 6, &o->init_scale) || !(o->init_scale > 0)))
                return BAD(name, v, "noise=A with A > 0");
        } else if (!strncmp(v, "template", 8) && (v[8] == 0 || v[8] == '=')) {
            o->init = NFV_VIS_INIT_TEMPLATE;
            snprintf(o->init_path, sizeof o->init_path, "%s", v[8] == '=' ? v + 9 : "template");
            if (!o->init_path[0]) return BAD(name, v, "template=FILE");
        } else {
            return BAD(name, v, "noise[=A], zeros or template[=FILE]");
        }
    } else if (!strcmp(name, "--l1")) {
        if (!parse_float(v, &o->l1) || o->l1 < 0) return BAD(name, v, "a weight >= 0");
    } else if (!strcmp(name, "--l2")) {
        if (!parse_float(v, &o->l2) || o->l2 < 0) return BAD(name, v, "a weight >= 0");
    } else if (!strcmp(name, "--tv")) {
        if (!parse_float(v, &o->tv) || o->tv < 0) return BAD(name, v, "a weight >= 0");
    } else if (!strcmp(name, "--tv-eps")) {
        if (!parse_float(v, &o->tv_eps) || !(o->tv_eps > 0)) return BAD(name, v, "eps > 0");
    } else if (!strcmp(name, "--blur")) {
        if (!parse_float(v, &o->blur_sigma) || o->blur_sigma < 0 || o->blur_sigma > 20)
            return BAD(name, v, "sigma in voxels, 0-20 (0 = off)");
    } else if (!strcmp(name, "--blur-every")) {
        if (!parse_intv(v, &o->blur_every) || o->blur_every < 1) return BAD(name, v, "an integer >= 1");
    } else if (!strcmp(name, "--jitter")) {
        if (!parse_intv(v, &o->jitter) || o->jitter < 0 || o->jitter > 64) return BAD(name, v, "voxels 0-64");
    } else if (!strcmp(name, "--range")) {
        char tail;
        float a, b;
        if (sscanf(v, "%f,%f%c", &a, &b, &tail) == 2 && isfinite(a) && isfinite(b) && a < b) {
            o->range_lo = a, o->range_hi = b, o->has_range = 1;
            return NFV_OK;
        }
        if (!strcmp(v, "off") || !strcmp(v, "none")) {
            o->has_range = 0;
            return NFV_OK;
        }
        return nfv_fail(NFV_ERR_INVALID_ARG, "--range expects LO,HI with LO < HI (or off), got \"%s\"", v);
    } else if (!strcmp(name, "--scale")) {
        char tail;
        float a, b;
        if (sscanf(v, "%f,%f%c", &a, &b, &tail) == 2 && a > 0.2f && b >= a && b < 5.0f) {
            o->scale_min = a;
            o->scale_max = b;
        } else if (parse_float(v, &a) && a > 0.2f && a < 5.0f) {
            o->scale_min = o->scale_max = a;
        } else {
            return BAD(name, v, "LO,HI with 0.2 < LO <= HI < 5 (e.g. 0.9,1.1)");
        }
    } else if (!strcmp(name, "--rotate")) {
        if (!parse_float(v, &o->rotate_deg) || o->rotate_deg < 0 || o->rotate_deg > 180)
            return BAD(name, v, "degrees 0-180");
    } else if (!strcmp(name, "--pad")) {
        if (!parse_intv(v, &o->pad) || o->pad < 0 || o->pad > 64) return BAD(name, v, "voxels 0-64");
    } else if (!strcmp(name, "--mask")) {
        snprintf(o->mask, sizeof o->mask, "%s", strcmp(v, "none") ? v : "");
    } else if (!strcmp(name, "--log-every")) {
        if (!parse_intv(v, &o->log_every) || o->log_every < 1) return BAD(name, v, "an integer >= 1");
    } else if (!strcmp(name, "--importance")) {
        if (!strcmp(v, "on")) o->importance = 1;
        else if (!strcmp(v, "off")) o->importance = 0;
        else return BAD(name, v, "on or off");
    } else if (!strcmp(name, "--snapshots")) {
        o->snapshot_count = 0;
        const char *p = v;
        while (*p) {
            char *end;
            long s = strtol(p, &end, 10);
            if (end == p || s < 0 || (*end && *end != ',') || o->snapshot_count >= NFV_VIS_MAX_SNAPSHOTS)
                return BAD(name, v, "up to 16 comma-separated steps >= 0 (e.g. 0,64,256)");
            o->snapshots[o->snapshot_count++] = (int)s;
            p = *end ? end + 1 : end;
        }
    } else {
        char list[1024];
        size_t used = 0;
        for (const nfv_vis_option_info *i = nfv_vis_option_table; i->name && used + 32 < sizeof list; i++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? " " : "", i->name);
        return nfv_fail(NFV_ERR_INVALID_ARG, "unknown visualization option %s (options: %s)", name, list);
    }
    return NFV_OK;
}

nfv_status nfv_vis_options_parse(nfv_vis_options *o, const char *text)
{
    if (!text) return NFV_OK;
    char *copy = malloc(strlen(text) + 1);
    if (!copy) return nfv_fail(NFV_ERR_NO_MEMORY, "options: out of memory");
    strcpy(copy, text);
    nfv_status st = NFV_OK;
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t\n", &save); w && !st; w = strtok_r(NULL, " \t\n", &save)) {
        char *eq = strchr(w, '=');
        if (w[0] != '-' || w[1] != '-') {
            st = nfv_fail(NFV_ERR_INVALID_ARG, "options \"%s\": expected --option, got \"%s\"", text, w);
        } else if (eq && strncmp(w, "--init", 6)) {
            *eq = 0;
            st = nfv_vis_options_set(o, w, eq + 1);
        } else if (eq) { /* --init=template=FILE */
            *eq = 0;
            st = nfv_vis_options_set(o, w, eq + 1);
        } else {
            char *val = strtok_r(NULL, " \t\n", &save);
            st = nfv_vis_options_set(o, w, val);
        }
    }
    free(copy);
    if (st) return nfv_fail_context(st, "options \"%s\"", text);
    return NFV_OK;
}

nfv_status nfv_vis_options_check(const nfv_vis_options *o)
{
    if (o->steps < 0) return nfv_fail(NFV_ERR_INVALID_ARG, "--steps must be >= 0");
    if (o->starts < 1 || o->batch < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "--starts and --batch must be >= 1");
    if (o->scale_min > o->scale_max) return nfv_fail(NFV_ERR_INVALID_ARG, "--scale LO must be <= HI");
    if (o->has_range && o->param != NFV_VIS_PARAM_VOXEL)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--range bounds voxels of the change: it needs --param voxel");
    return NFV_OK;
}

/* ---- helpers --------------------------------------------------------------- */

static unsigned long long hash_str(const char *s, unsigned long long h)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The stream of one sample: (seed, target text, start). */
static uint64_t sample_seed(unsigned long long seed, const char *target, int start)
{
    uint64_t h = hash_str(target, 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL));
    h ^= (unsigned long long)(start + 1) * 0xD1B54A32D192ED03ULL;
    nfv_splitmix64(&h);
    return h;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static nfv_status read_floats(nfv_context *ctx, const nfv_tensor *t, size_t offset, size_t count, float *out)
{
    NFV_CL_CHECK(clEnqueueReadBuffer(nfv_context_queue(ctx), t->buf, CL_TRUE, offset * sizeof(float),
                                     count * sizeof(float), out, 0, NULL, NULL),
                 "clEnqueueReadBuffer", "visualization objective");
    return NFV_OK;
}

nfv_status nfv_vis_template_on_grid(const nfv_model *m, const char *path, nfv_volume *normalized, nfv_volume *raw)
{
    if (!path || !*path || !strcmp(path, "template")) path = NFV_DEFAULT_TEMPLATE;
    nfv_volume src, grid;
    NFV_TRY(nfv_volume_read(path, &src, NULL));
    int nx = m->input_shape[3], ny = m->input_shape[2], nz = m->input_shape[1];
    nfv_status st = nfv_volume_resample_to(&src, nx, ny, nz, (const double(*)[4])m->affine, 0.0f, &grid);
    nfv_volume_free(&src);
    if (st) return nfv_fail_context(st, "template %s onto the model grid", path);
    grid.sform_code = grid.qform_code = 4;
    if (raw) {
        st = nfv_volume_clone(&grid, raw);
        if (st) {
            nfv_volume_free(&grid);
            return st;
        }
    }
    if (normalized) {
        st = nfv_volume_normalize(&grid, m->norm, NULL);
        if (st) {
            nfv_volume_free(&grid);
            if (raw) nfv_volume_free(raw);
            return nfv_fail_context(st, "template %s", path);
        }
        *normalized = grid;
    } else {
        nfv_volume_free(&grid);
    }
    return NFV_OK;
}

static nfv_status load_mask(const nfv_model *m, const char *spec, float **out)
{
    int nx = m->input_shape[3], ny = m->input_shape[2], nz = m->input_shape[1];
    size_t n = (size_t)nx * ny * nz;
    nfv_volume v;
    memset(&v, 0, sizeof v);
    if (!strcmp(spec, "brain")) {
        NFV_TRY(nfv_vis_template_on_grid(m, NULL, NULL, &v));
    } else {
        nfv_volume f;
        NFV_TRY(nfv_volume_read(spec, &f, NULL));
        nfv_status st = nfv_volume_resample_to(&f, nx, ny, nz, (const double(*)[4])m->affine, 0.0f, &v);
        nfv_volume_free(&f);
        if (st) return nfv_fail_context(st, "mask %s onto the model grid", spec);
    }
    float *mask = malloc(n * sizeof *mask);
    if (!mask) {
        nfv_volume_free(&v);
        return nfv_fail(NFV_ERR_NO_MEMORY, "mask: out of memory");
    }
    size_t inside = 0;
    for (size_t i = 0; i < n; i++) {
        mask[i] = v.data[i] > 0.5f * (strcmp(spec, "brain") ? 1.0f : 0.0f) && v.data[i] > 0.0f ? 1.0f : 0.0f;
        inside += mask[i] > 0;
    }
    nfv_volume_free(&v);
    if (!inside) {
        free(mask);
        return nfv_fail(NFV_ERR_INVALID_ARG, "mask %s has no voxel inside on the model grid", spec);
    }
    *out = mask;
    return NFV_OK;
}

/* ---- one batch ------------------------------------------------------------- */

typedef struct sample {
    int target;   /* index into targets */
    int start;
} sample;

/* Per-sample log, filled during the loop. */
typedef struct sample_log {
    int count, cap;
    int *step;
    float *objective;
    int term_count;
    int *term_step;
    float *l1, *l2, *tv;
    float final_objective;
    float clean_objective;
    float *image;       /* D*H*W, the final image */
    float *change;      /* template init: the final change */
    float *importance;  /* --importance: mean |d objective / d image| over the steps */
    float *snap[NFV_VIS_MAX_SNAPSHOTS];
} sample_log;

typedef struct batch_state {
    nfv_context *ctx;
    nfv_model *m;
    const nfv_vis_options *o;
    int N, D, H, W;
    size_t vox;
    nfv_tensor param, dparam, opt_m, opt_v;
    nfv_tensor change;        /* Fourier: decoded; voxel: unused (param is the change) */
    nfv_tensor image;         /* when mask/template: change x mask + template */
    nfv_tensor templ;         /* (N,1,D,H,W) template copies */
    nfv_tensor mask;          /* (D,H,W) */
    nfv_tensor padded, shifted, model_in, dx, dpadded, dshifted, dimage_buf;
    nfv_tensor seed, value;   /* seed like the target activation; value (N) for the layer objective */
    nfv_tensor pen_value;     /* (N) */
    nfv_tensor blur_tmp, blur_factor;
    nfv_tensor importance;    /* (N,1,D,H,W) sum of |d objective / d image| over the steps */
    nfv_fourier *fourier;
    float *seed_host;         /* the constant seed on the host ((N, per) floats) */
    int has_mask, has_template, transforms, warp;
    int pdims[3];
} batch_state;

static void batch_free(batch_state *b)
{
    nfv_tensor *ts[] = {&b->param, &b->dparam, &b->opt_m, &b->opt_v, &b->change, &b->image, &b->templ, &b->mask,
                        &b->padded, &b->shifted, &b->model_in, &b->dx, &b->dpadded, &b->dshifted, &b->dimage_buf,
                        &b->seed, &b->value, &b->pen_value, &b->blur_tmp, &b->blur_factor, &b->importance};
    free(b->seed_host);
    b->seed_host = NULL;
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) nfv_tensor_free(ts[i]);
    if (b->fourier) nfv_fourier_free(b->fourier);
    b->fourier = NULL;
}

static nfv_status vol_tensor(nfv_context *ctx, nfv_tensor *t, int n, int d, int h, int w)
{
    int shape[5] = {n, 1, d, h, w};
    return nfv_tensor_create(ctx, t, 5, shape);
}

/* The change (what the penalties see): the decoded image or the parameter itself. */
static const nfv_tensor *change_of(const batch_state *b) { return b->fourier ? &b->change : &b->param; }

/* image = change x mask + template (or the change itself). */
static nfv_status make_image(batch_state *b, const nfv_tensor **image)
{
    nfv_context *ctx = b->ctx;
    if (b->fourier) NFV_TRY(nfv_fourier_decode(ctx, b->fourier, &b->param, &b->change));
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
static nfv_status transform_forward(batch_state *b, const nfv_tensor *image, uint64_t *streams, float *matrix,
                                    int *shift, const nfv_tensor **x)
{
    const nfv_vis_options *o = b->o;
    if (!b->transforms) {
        *x = image;
        return NFV_OK;
    }
    int out_dims[3] = {b->D, b->H, b->W};
    float max_angle = (float)(o->rotate_deg * M_PI / 180.0);
    for (int n = 0; n < b->N; n++) {
        uint64_t *s = &streams[n];
        /* Always draw the same count of numbers per step. */
        float sc = (float)(o->scale_min + (o->scale_max - o->scale_min) * nfv_uniform01(s));
        float ang[3], sh[3];
        for (int a = 0; a < 3; a++) ang[a] = (float)((2.0 * nfv_uniform01(s) - 1.0) * max_angle);
        for (int a = 0; a < 3; a++) {
            int v = (int)floor(nfv_uniform01(s) * (2 * o->jitter + 1)) - o->jitter;
            if (v > o->jitter) v = o->jitter;
            shift[3 * n + a] = v;
            sh[a] = (float)v;
        }
        nfv_affine_about_centre(b->pdims, out_dims, sc, ang, sh, matrix + 12 * n);
    }
    const nfv_tensor *src = image;
    int pad[3] = {o->pad, o->pad, o->pad};
    if (o->pad > 0) {
        NFV_TRY(nfv_pad(b->ctx, pad, NFV_BOUNDARY_REPLICATE, 0.0f, image, &b->padded));
        src = &b->padded;
    }
    if (b->warp) {
        NFV_TRY(nfv_affine_warp(b->ctx, matrix, src, &b->model_in));
    } else if (o->pad > 0) {
        NFV_TRY(nfv_jitter(b->ctx, shift, 0, src, &b->shifted));
        NFV_TRY(nfv_pad_adjoint(b->ctx, pad, NFV_BOUNDARY_ZERO, &b->shifted, &b->model_in)); /* centre crop */
    } else {
        NFV_TRY(nfv_jitter(b->ctx, shift, 0, src, &b->model_in));
    }
    *x = &b->model_in;
    return NFV_OK;
}

/* dimage = adjoint of the transforms applied to dx. */
static nfv_status transform_adjoint(batch_state *b, const float *matrix, const int *shift, nfv_tensor **dimage)
{
    const nfv_vis_options *o = b->o;
    if (!b->transforms) {
        *dimage = &b->dx;
        return NFV_OK;
    }
    int pad[3] = {o->pad, o->pad, o->pad};
    nfv_tensor *dsrc = o->pad > 0 ? &b->dpadded : &b->dimage_buf;
    if (b->warp) {
        NFV_TRY(nfv_affine_warp_adjoint(b->ctx, matrix, &b->dx, dsrc));
    } else if (o->pad > 0) {
        NFV_TRY(nfv_pad(b->ctx, pad, NFV_BOUNDARY_ZERO, 0.0f, &b->dx, &b->dshifted)); /* adjoint of the crop */
        NFV_TRY(nfv_jitter(b->ctx, shift, 1, &b->dshifted, dsrc));
    } else {
        NFV_TRY(nfv_jitter(b->ctx, shift, 1, &b->dx, dsrc));
    }
    if (o->pad > 0) NFV_TRY(nfv_pad_adjoint(b->ctx, pad, NFV_BOUNDARY_REPLICATE, &b->dpadded, &b->dimage_buf));
    *dimage = &b->dimage_buf;
    return NFV_OK;
}

/* Weight of logit k in a logit target: 1 for its class; contrast targets
 * also -1/(K-1) for every other class. */
static float class_coef(const nfv_target *t, int K, int k)
{
    if (k == t->unit) return 1.0f;
    return t->contrast && K > 1 ? -1.0f / (float)(K - 1) : 0.0f;
}

/* The constant objective seed (minus d objective / d activation) for
 * channel, neuron and feature targets; the layer objective adds its own. */
static nfv_status build_seed(batch_state *b, const nfv_target *targets, const sample *smp, const nfv_layer *l,
                             float **host_out)
{
    size_t per = l->out_ndim == 4 ? (size_t)l->out_shape[0] * l->out_shape[1] * l->out_shape[2] * l->out_shape[3]
                                  : (size_t)l->out_shape[0];
    float *h = calloc((size_t)b->N * per, sizeof *h), *fc_w = NULL;
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "objective seed: out of memory");
    for (int n = 0; n < b->N; n++) {
        const nfv_target *t = &targets[smp[n].target];
        float *row = h + (size_t)n * per;
        if (t->kind == NFV_TARGET_LOGIT_CELL) {
            /* The final Linear's weights W (K, F), F = C*D*H*W in Flatten's
             * (channel, z, y, x) order: the seed is -sign W[unit, :, cell]. */
            const nfv_layer *fc = &b->m->layers[b->m->layer_count - 1];
            if (!fc_w) {
                if (fc->param[0].numel != (size_t)fc->out_shape[0] * per) {
                    free(h);
                    return nfv_fail(NFV_ERR_INVALID_ARG, "%s: layer %s (%zu features) does not feed %s (%zu weights)",
                                    t->name, l->name, per, fc->name, fc->param[0].numel);
                }
                fc_w = malloc(fc->param[0].numel * sizeof *fc_w);
                nfv_status st = fc_w ? nfv_tensor_download(b->ctx, &fc->param[0], fc_w)
                                     : nfv_fail(NFV_ERR_NO_MEMORY, "objective seed: out of memory");
                if (st) {
                    free(h), free(fc_w);
                    return st;
                }
            }
            size_t sp = (size_t)l->out_shape[1] * l->out_shape[2] * l->out_shape[3];
            size_t cell = ((size_t)t->pos[0] * l->out_shape[2] + t->pos[1]) * l->out_shape[3] + t->pos[2];
            int K = fc->out_shape[0];
            for (int k = 0; k < K; k++) {
                float a = class_coef(t, K, k);
                if (a == 0.0f) continue;
                for (int c = 0; c < l->out_shape[0]; c++)
                    row[(size_t)c * sp + cell] -= t->sign * a * fc_w[(size_t)k * per + (size_t)c * sp + cell];
            }
        } else if (t->kind == NFV_TARGET_FEATURE) {
            if (t->contrast)
                for (size_t k = 0; k < per; k++) row[k] = -t->sign * class_coef(t, (int)per, (int)k);
            else
                row[t->unit] = -t->sign;
        } else if (t->kind == NFV_TARGET_CHANNEL) {
            size_t sp = (size_t)l->out_shape[1] * l->out_shape[2] * l->out_shape[3];
            for (size_t i = 0; i < sp; i++) row[(size_t)t->unit * sp + i] = -t->sign / (float)sp;
        } else if (t->kind == NFV_TARGET_NEURON) {
            size_t idx = (((size_t)t->unit * l->out_shape[1] + t->pos[0]) * l->out_shape[2] + t->pos[1]) *
                             l->out_shape[3] + t->pos[2];
            row[idx] = -t->sign;
        }
    }
    free(fc_w);
    *host_out = h;
    return NFV_OK;
}

/* Objective of every sample from the current activation (and value for the
 * layer objective).  Reads only what it needs: one float, one channel or N. */
static nfv_status read_objective(batch_state *b, const nfv_target *targets, const sample *smp, const nfv_layer *l,
                                 const nfv_tensor *act, float *obj, float *scratch)
{
    size_t per = l->out_ndim == 4 ? (size_t)l->out_shape[0] * l->out_shape[1] * l->out_shape[2] * l->out_shape[3]
                                  : (size_t)l->out_shape[0];
    size_t sp = l->out_ndim == 4 ? (size_t)l->out_shape[1] * l->out_shape[2] * l->out_shape[3] : 1;
    if (targets[smp[0].target].kind == NFV_TARGET_LAYER) {
        NFV_TRY(read_floats(b->ctx, &b->value, 0, (size_t)b->N, obj));
        for (int n = 0; n < b->N; n++) obj[n] = -obj[n]; /* value = -sign mean(a^2) */
        return NFV_OK;
    }
    for (int n = 0; n < b->N; n++) {
        const nfv_target *t = &targets[smp[n].target];
        size_t base = (size_t)n * per;
        if (t->kind == NFV_TARGET_LOGIT_CELL || t->contrast) {
            /* Linear in the activation: objective = sum of (-seed) x act over
             * the seed's support (scratch holds a whole sample: K logits, or
             * C*D*H*W for a cell). */
            NFV_TRY(read_floats(b->ctx, act, base, per, scratch));
            const float *seed = b->seed_host + base;
            double s = 0;
            for (size_t i = 0; i < per; i++)
                if (seed[i] != 0.0f) s -= (double)seed[i] * scratch[i];
            obj[n] = (float)s;
        } else if (t->kind == NFV_TARGET_FEATURE) {
            NFV_TRY(read_floats(b->ctx, act, base + (size_t)t->unit, 1, &obj[n]));
            obj[n] *= t->sign;
        } else if (t->kind == NFV_TARGET_NEURON) {
            size_t idx = (((size_t)t->unit * l->out_shape[1] + t->pos[0]) * l->out_shape[2] + t->pos[1]) *
                             l->out_shape[3] + t->pos[2];
            NFV_TRY(read_floats(b->ctx, act, base + idx, 1, &obj[n]));
            obj[n] *= t->sign;
        } else {
            NFV_TRY(read_floats(b->ctx, act, base + (size_t)t->unit * sp, sp, scratch));
            double s = 0;
            for (size_t i = 0; i < sp; i++) s += scratch[i];
            obj[n] = (float)(t->sign * s / (double)sp);
        }
    }
    return NFV_OK;
}

/* Seed for this step: the constant part, plus 2 a / numel (times -sign) for the layer objective. */
static nfv_status step_seed(batch_state *b, const nfv_target *t0, const nfv_layer *l, nfv_tensor *act,
                            const nfv_tensor *seed_const)
{
    if (t0->kind != NFV_TARGET_LAYER) {
        (void)seed_const;
        return NFV_OK; /* b->seed holds the constant seed already */
    }
    size_t per = act->numel / (size_t)b->N;
    nfv_tensor av, sv;
    int shape[5] = {b->N, 1, 1, 1, (int)per};
    if (l->out_ndim == 4) {
        shape[2] = l->out_shape[0] * l->out_shape[1];
        shape[3] = l->out_shape[2];
        shape[4] = l->out_shape[3];
    }
    NFV_TRY(nfv_tensor_view(act, &av, 5, shape));
    NFV_TRY(nfv_tensor_view(&b->seed, &sv, 5, shape));
    NFV_TRY(nfv_tensor_fill(b->ctx, &b->seed, 0.0f));
    return nfv_penalty(b->ctx, NFV_PENALTY_L2, -t0->sign / (float)per, 0.0f, &av, NULL, &b->value, &sv);
}

static nfv_status log_push(sample_log *lg, int step, float obj)
{
    if (lg->count == lg->cap) {
        int nc = lg->cap ? lg->cap * 2 : 64;
        int *s = realloc(lg->step, (size_t)nc * sizeof *s);
        if (!s) return nfv_fail(NFV_ERR_NO_MEMORY, "objective log: out of memory");
        lg->step = s;
        float *f = realloc(lg->objective, (size_t)nc * sizeof *f);
        if (!f) return nfv_fail(NFV_ERR_NO_MEMORY, "objective log: out of memory");
        lg->objective = f;
        lg->cap = nc;
    }
    lg->step[lg->count] = step;
    lg->objective[lg->count++] = obj;
    return NFV_OK;
}

static nfv_status term_push(sample_log *lg, int step, float l1, float l2, float tv)
{
    int n = lg->term_count + 1;
    int *s = realloc(lg->term_step, (size_t)n * sizeof *s);
    if (!s) return nfv_fail(NFV_ERR_NO_MEMORY, "term log: out of memory");
    lg->term_step = s;
    float **arrs[3] = {&lg->l1, &lg->l2, &lg->tv};
    float vals[3] = {l1, l2, tv};
    for (int k = 0; k < 3; k++) {
        float *p = realloc(*arrs[k], (size_t)n * sizeof *p);
        if (!p) return nfv_fail(NFV_ERR_NO_MEMORY, "term log: out of memory");
        *arrs[k] = p;
        p[n - 1] = vals[k];
    }
    lg->term_step[n - 1] = step;
    lg->term_count = n;
    return NFV_OK;
}

/* Weighted penalty values per sample (for the log). */
static nfv_status read_terms(batch_state *b, float *l1, float *l2, float *tv)
{
    const nfv_vis_options *o = b->o;
    const nfv_tensor *ch = change_of(b);
    const nfv_tensor *mask = b->has_mask ? &b->mask : NULL;
    float w = 1.0f / (float)b->vox;
    float *outs[3] = {l1, l2, tv};
    float weights[3] = {o->l1, o->l2, o->tv};
    nfv_penalty_kind kinds[3] = {NFV_PENALTY_L1, NFV_PENALTY_L2, NFV_PENALTY_TV};
    for (int k = 0; k < 3; k++) {
        if (weights[k] <= 0) {
            for (int n = 0; n < b->N; n++) outs[k][n] = 0;
            continue;
        }
        NFV_TRY(nfv_penalty(b->ctx, kinds[k], weights[k] * w, o->tv_eps, ch, mask, &b->pen_value, NULL));
        NFV_TRY(read_floats(b->ctx, &b->pen_value, 0, (size_t)b->N, outs[k]));
    }
    return NFV_OK;
}

static nfv_status download_samples(batch_state *b, const nfv_tensor *t, float **dst)
{
    float *all = malloc(t->numel * sizeof *all);
    if (!all) return nfv_fail(NFV_ERR_NO_MEMORY, "visualization download: out of memory");
    nfv_status st = nfv_tensor_download(b->ctx, t, all);
    for (int n = 0; !st && n < b->N; n++) {
        dst[n] = malloc(b->vox * sizeof(float));
        if (!dst[n]) st = nfv_fail(NFV_ERR_NO_MEMORY, "visualization download: out of memory");
        else memcpy(dst[n], all + (size_t)n * b->vox, b->vox * sizeof(float));
    }
    free(all);
    return st;
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

static nfv_status run_batch(nfv_context *ctx, nfv_model *m, const nfv_target *targets, const sample *smp, int N,
                            const nfv_vis_options *o, const float *templ_host, const float *mask_host,
                            nfv_vis_progress_fn progress, void *user, int bi, int nb, sample_log *logs)
{
    batch_state b;
    memset(&b, 0, sizeof b);
    b.ctx = ctx;
    b.m = m;
    b.o = o;
    b.N = N;
    b.D = m->input_shape[1];
    b.H = m->input_shape[2];
    b.W = m->input_shape[3];
    b.vox = (size_t)b.D * b.H * b.W;
    b.has_mask = mask_host != NULL;
    b.has_template = templ_host != NULL;
    b.warp = o->scale_min != 1.0f || o->scale_max != 1.0f || o->rotate_deg > 0;
    b.transforms = b.warp || o->jitter > 0 || o->pad > 0;
    b.pdims[0] = b.D + 2 * o->pad;
    b.pdims[1] = b.H + 2 * o->pad;
    b.pdims[2] = b.W + 2 * o->pad;
    const nfv_target *t0 = &targets[smp[0].target];
    const nfv_layer *l = &m->layers[t0->layer];
    float *host = NULL, *matrix = NULL, *obj = NULL, *scratch = NULL, *tl1 = NULL, *tl2 = NULL, *ttv = NULL;
    int *shift = NULL;
    uint64_t *streams = NULL;
    nfv_status st = NFV_OK;
    double t_start = now_s();

#define T(x)                                                                                                       \
    do {                                                                                                           \
        st = (x);                                                                                                  \
        if (st) goto done;                                                                                         \
    } while (0)

    T(vol_tensor(ctx, &b.param, N, b.D, b.H, b.W));
    T(vol_tensor(ctx, &b.dparam, N, b.D, b.H, b.W));
    T(vol_tensor(ctx, &b.opt_m, N, b.D, b.H, b.W));
    if (!o->sgd) T(vol_tensor(ctx, &b.opt_v, N, b.D, b.H, b.W));
    T(vol_tensor(ctx, &b.dx, N, b.D, b.H, b.W));
    T(vol_tensor(ctx, &b.dimage_buf, N, b.D, b.H, b.W));
    int one[1] = {N};
    T(nfv_tensor_create(ctx, &b.value, 1, one));
    T(nfv_tensor_create(ctx, &b.pen_value, 1, one));
    if (b.has_mask || b.has_template) T(vol_tensor(ctx, &b.image, N, b.D, b.H, b.W));
    if (b.transforms) {
        T(vol_tensor(ctx, &b.model_in, N, b.D, b.H, b.W));
        if (o->pad > 0) {
            T(vol_tensor(ctx, &b.padded, N, b.pdims[0], b.pdims[1], b.pdims[2]));
            T(vol_tensor(ctx, &b.dpadded, N, b.pdims[0], b.pdims[1], b.pdims[2]));
            if (!b.warp) {
                T(vol_tensor(ctx, &b.shifted, N, b.pdims[0], b.pdims[1], b.pdims[2]));
                T(vol_tensor(ctx, &b.dshifted, N, b.pdims[0], b.pdims[1], b.pdims[2]));
            }
        }
    }
    if (o->param != NFV_VIS_PARAM_VOXEL) {
        T(nfv_fourier_create(ctx, o->param == NFV_VIS_PARAM_DCT ? NFV_FOURIER_DCT : NFV_FOURIER_DFT, b.D, b.H, b.W,
                             o->decay, &b.fourier));
        T(vol_tensor(ctx, &b.change, N, b.D, b.H, b.W));
        if (o->blur_sigma > 0) T(fourier_blur_factor(&b, o->param == NFV_VIS_PARAM_DCT, o->blur_sigma));
    } else if (o->blur_sigma > 0) {
        T(vol_tensor(ctx, &b.blur_tmp, N, b.D, b.H, b.W));
    }
    if (b.has_mask) {
        int shape[3] = {b.D, b.H, b.W};
        T(nfv_tensor_create(ctx, &b.mask, 3, shape));
        T(nfv_tensor_upload(ctx, &b.mask, mask_host));
    }

    /* Host-side start: noise / zeros per sample; template copies. */
    host = malloc((size_t)N * b.vox * sizeof *host);
    streams = malloc((size_t)N * sizeof *streams);
    matrix = malloc((size_t)N * 12 * sizeof *matrix);
    shift = malloc((size_t)N * 3 * sizeof *shift);
    obj = malloc((size_t)N * 4 * sizeof *obj);
    tl1 = obj + N;
    tl2 = obj + 2 * N;
    ttv = obj + 3 * N;
    /* Scratch for read_objective: one channel map, or a whole sample for logit cells. */
    size_t per_act = l->out_ndim == 4 ? (size_t)l->out_shape[1] * l->out_shape[2] * l->out_shape[3] : 1;
    for (int n = 0; n < N; n++)
        if (targets[smp[n].target].kind == NFV_TARGET_LOGIT_CELL || targets[smp[n].target].contrast) per_act = nfv_shape_numel(l->out_ndim, l->out_shape);
    scratch = malloc(per_act * sizeof *scratch);
    if (!host || !streams || !matrix || !shift || !obj || !scratch) {
        st = nfv_fail(NFV_ERR_NO_MEMORY, "visualization: out of memory");
        goto done;
    }
    for (int n = 0; n < N; n++) {
        streams[n] = sample_seed(o->seed, targets[smp[n].target].name, smp[n].start);
        float *p = host + (size_t)n * b.vox;
        if (o->init == NFV_VIS_INIT_NOISE)
            for (size_t i = 0; i < b.vox; i++) p[i] = (float)((2.0 * nfv_uniform01(&streams[n]) - 1.0) * o->init_scale);
        else
            memset(p, 0, b.vox * sizeof *p);
    }
    T(nfv_tensor_upload(ctx, &b.param, host));
    if (o->has_range) T(nfv_clamp(ctx, o->range_lo, o->range_hi, &b.param));
    if (o->importance) {
        T(vol_tensor(ctx, &b.importance, N, b.D, b.H, b.W));
        memset(host, 0, (size_t)N * b.vox * sizeof *host);
        T(nfv_tensor_upload(ctx, &b.importance, host));
    }
    if (b.has_template) {
        T(vol_tensor(ctx, &b.templ, N, b.D, b.H, b.W));
        for (int n = 0; n < N; n++) memcpy(host + (size_t)n * b.vox, templ_host, b.vox * sizeof *host);
        T(nfv_tensor_upload(ctx, &b.templ, host));
    }

    /* Constant seed (layer objective: rebuilt each step). */
    nfv_tensor *act = NULL;
    {
        float *seed_host = NULL;
        T(build_seed(&b, targets, smp, l, &seed_host));
        int shape[5] = {N, l->out_shape[0], l->out_shape[1], l->out_shape[2], l->out_shape[3]};
        st = nfv_tensor_create(ctx, &b.seed, l->out_ndim + 1, shape);
        if (!st) st = nfv_tensor_upload(ctx, &b.seed, seed_host);
        b.seed_host = seed_host; /* read_objective of logit cells uses it */
        if (st) goto done;
    }

    const nfv_tensor *mask = b.has_mask ? &b.mask : NULL;
    float inv_vox = 1.0f / (float)b.vox;
    /* NEUROFV_VIS_PROFILE=1: wait after each phase and print where a step's time goes. */
    int profile = getenv("NEUROFV_VIS_PROFILE") != NULL;
    double ph[8] = {0}, tp = now_s();
#define PHASE(i)                                                                                                   \
    do {                                                                                                           \
        if (profile) {                                                                                             \
            nfv_finish(ctx);                                                                                       \
            double tn = now_s();                                                                                   \
            ph[i] += tn - tp;                                                                                      \
            tp = tn;                                                                                               \
        }                                                                                                          \
    } while (0)
    for (int step = 1; step <= o->steps + 1; step++) {
        const nfv_tensor *image, *x;
        T(make_image(&b, &image));
        /* Snapshots of the image before step `step` (i.e. after step - 1 updates). */
        for (int s = 0; s < o->snapshot_count; s++)
            if (o->snapshots[s] == step - 1) {
                float *snaps[4096];
                T(download_samples(&b, image, snaps));
                for (int n = 0; n < N; n++) logs[n].snap[s] = snaps[n];
            }
        if (step == o->steps + 1) break; /* the final image, for outputs */

        PHASE(0);
        T(transform_forward(&b, image, streams, matrix, shift, &x));
        PHASE(1);
        T(nfv_model_forward(m, ctx, x, t0->layer, 0));
        PHASE(2);
        act = nfv_model_activation(m, t0->layer);
        T(step_seed(&b, t0, l, act, &b.seed));
        int do_log = step % o->log_every == 0 || step == o->steps || step == 1;
        if (do_log) {
            T(read_objective(&b, targets, smp, l, act, obj, scratch));
            for (int n = 0; n < N; n++) T(log_push(&logs[n], step, obj[n]));
            int do_terms = (o->l1 > 0 || o->l2 > 0 || o->tv > 0) && (step % (16 * o->log_every) == 0 || step == o->steps || step == 1);
            if (do_terms) {
                T(read_terms(&b, tl1, tl2, ttv));
                for (int n = 0; n < N; n++) T(term_push(&logs[n], step, tl1[n], tl2[n], ttv[n]));
            }
            if (progress) progress(user, bi, nb, step, o->steps, obj, N);
        }
        PHASE(3);
        T(nfv_model_backward(m, ctx, t0->layer, &b.seed, 0, &b.dx));
        PHASE(4);
        nfv_tensor *dimage;
        T(transform_adjoint(&b, matrix, shift, &dimage));
        /* The objective's own gradient (the seed is -d objective, the sign does not matter here). */
        if (o->importance) T(nfv_abs_accumulate(ctx, dimage, &b.importance));
        PHASE(5);
        const nfv_tensor *ch = change_of(&b);
        if (o->l1 > 0) T(nfv_penalty(ctx, NFV_PENALTY_L1, o->l1 * inv_vox, 0.0f, ch, mask, NULL, dimage));
        if (o->l2 > 0) T(nfv_penalty(ctx, NFV_PENALTY_L2, o->l2 * inv_vox, 0.0f, ch, mask, NULL, dimage));
        if (o->tv > 0) T(nfv_penalty(ctx, NFV_PENALTY_TV, o->tv * inv_vox, o->tv_eps, ch, mask, NULL, dimage));
        if (b.has_mask) T(nfv_mask_apply(ctx, &b.mask, dimage));
        const nfv_tensor *grad = dimage;
        if (b.fourier) {
            T(nfv_fourier_adjoint(ctx, b.fourier, dimage, &b.dparam));
            grad = &b.dparam;
        }
        if (o->sgd) {
            nfv_sgd_params hp = {o->lr, o->momentum, o->weight_decay};
            T(nfv_sgd_step(ctx, &hp, &b.param, grad, &b.opt_m));
        } else {
            nfv_adam_params hp = {o->lr, 0.9f, 0.999f, 1e-8f, o->weight_decay, 0};
            T(nfv_adam_step(ctx, &hp, step, &b.param, grad, &b.opt_m, &b.opt_v));
        }
        if (o->blur_sigma > 0 && step % o->blur_every == 0) {
            if (b.fourier) {
                T(nfv_mask_apply(ctx, &b.blur_factor, &b.param));
            } else {
                T(nfv_gaussian_blur(ctx, o->blur_sigma, NFV_BOUNDARY_REPLICATE, 0, &b.param, &b.blur_tmp));
                T(nfv_tensor_copy(ctx, &b.param, &b.blur_tmp));
            }
        }
        /* Projected gradient ascent: back into the box after every update. */
        if (o->has_range) T(nfv_clamp(ctx, o->range_lo, o->range_hi, &b.param));
        PHASE(6);
    }
    if (profile)
        fprintf(stderr,
                "vis profile (N=%d, %d steps, s/step): image %.4f transforms %.4f forward %.4f objective %.4f "
                "backward %.4f adjoints %.4f penalties+step+blur %.4f\n",
                N, o->steps, ph[0] / o->steps, ph[1] / o->steps, ph[2] / o->steps, ph[3] / o->steps,
                ph[4] / o->steps, ph[5] / o->steps, ph[6] / o->steps);
#undef PHASE
    /* Final objective (last logged) and the final image / change. */
    for (int n = 0; n < N; n++) logs[n].final_objective = logs[n].count ? logs[n].objective[logs[n].count - 1] : 0.0f;
    {
        const nfv_tensor *image;
        T(make_image(&b, &image));
        float *imgs[4096];
        T(download_samples(&b, image, imgs));
        for (int n = 0; n < N; n++) logs[n].image = imgs[n];
        if (b.has_template) {
            float *chs[4096];
            T(download_samples(&b, change_of(&b), chs));
            for (int n = 0; n < N; n++) logs[n].change = chs[n];
        }
        if (o->importance) {
            float *imp[4096];
            if (o->steps > 0) T(nfv_scale(ctx, 1.0f / (float)o->steps, &b.importance));
            T(download_samples(&b, &b.importance, imp));
            for (int n = 0; n < N; n++) logs[n].importance = imp[n];
        }
        /* The same volumes without transforms. */
        T(nfv_model_forward(m, ctx, image, t0->layer, 0));
        act = nfv_model_activation(m, t0->layer);
        T(step_seed(&b, t0, l, act, &b.seed));
        T(read_objective(&b, targets, smp, l, act, obj, scratch));
        for (int n = 0; n < N; n++) logs[n].clean_objective = obj[n];
    }
    (void)t_start;
done:
#undef T
    batch_free(&b);
    free(host);
    free(streams);
    free(matrix);
    free(shift);
    free(obj);
    free(scratch);
    return st;
}

/* ---- public entry points --------------------------------------------------- */

void nfv_vis_results_free(nfv_vis_result *r, int count)
{
    if (!r) return;
    for (int i = 0; i < count; i++) {
        nfv_volume_free(&r[i].volume);
        nfv_volume_free(&r[i].change);
        nfv_volume_free(&r[i].importance);
        free(r[i].start_objective);
        free(r[i].log_step);
        free(r[i].log_objective);
        free(r[i].term_step);
        free(r[i].term_l1);
        free(r[i].term_l2);
        free(r[i].term_tv);
        for (int s = 0; s < r[i].snapshot_count; s++) nfv_volume_free(&r[i].snapshot[s]);
    }
    free(r);
}

static void log_free(sample_log *lg)
{
    free(lg->step);
    free(lg->objective);
    free(lg->term_step);
    free(lg->l1);
    free(lg->l2);
    free(lg->tv);
    free(lg->image);
    free(lg->change);
    free(lg->importance);
    for (int s = 0; s < NFV_VIS_MAX_SNAPSHOTS; s++) free(lg->snap[s]);
    memset(lg, 0, sizeof *lg);
}

static nfv_status volume_from(const nfv_model *m, const float *data, nfv_volume *v)
{
    NFV_TRY(nfv_volume_alloc(v, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                             (const double(*)[4])m->affine));
    memcpy(v->data, data, nfv_volume_numel(v) * sizeof(float));
    v->sform_code = v->qform_code = 4; /* the model metadata affine is MNI */
    return NFV_OK;
}

/* Batch key: targets must share the layer; the layer objective also its sign. */
static int same_group(const nfv_target *a, const nfv_target *b)
{
    if (a->layer != b->layer) return 0;
    int la = a->kind == NFV_TARGET_LAYER, lb = b->kind == NFV_TARGET_LAYER;
    if (la != lb) return 0;
    return !la || a->sign == b->sign;
}

nfv_status nfv_visualize(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                         const nfv_vis_options *o, nfv_vis_progress_fn progress, void *user,
                         nfv_vis_result **results)
{
    *results = NULL;
    if (count <= 0) return nfv_fail(NFV_ERR_INVALID_ARG, "visualize: no targets");
    NFV_TRY(nfv_vis_options_check(o));
    if (m->input_shape[0] != 1)
        return nfv_fail(NFV_ERR_UNSUPPORTED, "visualize: the model takes %d input channels; only 1 is supported",
                        m->input_shape[0]);
    if (o->batch > 4096) return nfv_fail(NFV_ERR_INVALID_ARG, "visualize: --batch at most 4096");
    for (int i = 0; i < count; i++)
        if (targets[i].layer < 0 || targets[i].layer >= m->layer_count)
            return nfv_fail(NFV_ERR_INVALID_ARG, "visualize: target %s names layer %d of %d", targets[i].name,
                            targets[i].layer, m->layer_count);

    float *templ = NULL, *mask = NULL;
    nfv_status st = NFV_OK;
    if (o->init == NFV_VIS_INIT_TEMPLATE) {
        nfv_volume tv;
        NFV_TRY(nfv_vis_template_on_grid(m, o->init_path, &tv, NULL));
        templ = tv.data; /* take ownership of the data */
        tv.data = NULL;
    }
    if (o->mask[0]) {
        st = load_mask(m, o->mask, &mask);
        if (st) {
            free(templ);
            return st;
        }
    }

    int total = count * o->starts;
    sample *order = malloc((size_t)total * sizeof *order);
    sample_log *logs = calloc((size_t)total, sizeof *logs);
    int *group_of = malloc((size_t)count * sizeof *group_of);
    nfv_vis_result *res = calloc((size_t)count, sizeof *res);
    if (!order || !logs || !group_of || !res) {
        st = nfv_fail(NFV_ERR_NO_MEMORY, "visualize: out of memory");
        goto out;
    }
    /* Order samples group by group (first appearance), target by target, start by start. */
    int ngroups = 0;
    for (int i = 0; i < count; i++) {
        group_of[i] = -1;
        for (int j = 0; j < i && group_of[i] < 0; j++)
            if (same_group(&targets[i], &targets[j])) group_of[i] = group_of[j];
        if (group_of[i] < 0) group_of[i] = ngroups++;
    }
    int k = 0;
    for (int g = 0; g < ngroups; g++)
        for (int i = 0; i < count; i++)
            if (group_of[i] == g)
                for (int s = 0; s < o->starts; s++) order[k++] = (sample){i, s};
    /* Batches: contiguous runs of at most o->batch samples inside a group. */
    int nb = 0;
    for (int i = 0; i < total;) {
        int j = i + 1;
        while (j < total && j - i < o->batch && group_of[order[j].target] == group_of[order[i].target]) j++;
        nb++;
        i = j;
    }
    int bi = 0;
    for (int i = 0; i < total && !st; bi++) {
        int j = i + 1;
        while (j < total && j - i < o->batch && group_of[order[j].target] == group_of[order[i].target]) j++;
        double t0 = now_s();
        st = run_batch(ctx, m, targets, order + i, j - i, o, templ, mask, progress, user, bi, nb, logs + i);
        if (st) {
            st = nfv_fail_context(st, "visualizing %s", targets[order[i].target].name);
            break;
        }
        double per = (now_s() - t0) / (double)(j - i);
        for (int q = i; q < j; q++) res[order[q].target].seconds += per;
        i = j;
    }
    /* Keep the best start of each target (objective without transforms). */
    for (int t = 0; t < count && !st; t++) {
        nfv_vis_result *r = &res[t];
        r->target = targets[t];
        r->start_count = o->starts;
        r->start_objective = malloc((size_t)o->starts * sizeof(float));
        if (!r->start_objective) {
            st = nfv_fail(NFV_ERR_NO_MEMORY, "visualize: out of memory");
            break;
        }
        int best = -1;
        for (int q = 0; q < total; q++)
            if (order[q].target == t) {
                r->start_objective[order[q].start] = logs[q].clean_objective;
                if (best < 0 || logs[q].clean_objective > logs[best].clean_objective) best = q;
            }
        sample_log *lg = &logs[best];
        r->best_start = order[best].start;
        r->objective = lg->final_objective;
        r->objective_clean = lg->clean_objective;
        st = volume_from(m, lg->image, &r->volume);
        if (!st && lg->change) st = volume_from(m, lg->change, &r->change);
        if (!st && lg->importance) st = volume_from(m, lg->importance, &r->importance);
        r->log_count = lg->count;
        r->log_step = lg->step;
        r->log_objective = lg->objective;
        lg->step = NULL;
        lg->objective = NULL;
        r->term_count = lg->term_count;
        r->term_step = lg->term_step;
        r->term_l1 = lg->l1;
        r->term_l2 = lg->l2;
        r->term_tv = lg->tv;
        lg->term_step = NULL;
        lg->l1 = lg->l2 = lg->tv = NULL;
        for (int s = 0; !st && s < o->snapshot_count; s++)
            if (lg->snap[s]) {
                r->snapshot_step[r->snapshot_count] = o->snapshots[s];
                st = volume_from(m, lg->snap[s], &r->snapshot[r->snapshot_count]);
                if (!st) r->snapshot_count++;
            }
    }
out:
    if (logs)
        for (int q = 0; q < total; q++) log_free(&logs[q]);
    free(logs);
    free(order);
    free(group_of);
    free(templ);
    free(mask);
    if (st) {
        nfv_vis_results_free(res, count);
        return st;
    }
    *results = res;
    return NFV_OK;
}

nfv_status nfv_vis_objective(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int count,
                             const nfv_volume *images, float *objective)
{
    /* One target at a time through the same path as the loop's final evaluation: steps = 0. */
    for (int i = 0; i < count; i++) {
        batch_state b;
        memset(&b, 0, sizeof b);
        const nfv_target *t = &targets[i];
        const nfv_layer *l = &m->layers[t->layer];
        nfv_vis_options o;
        nfv_vis_options_default(&o);
        b.ctx = ctx;
        b.m = m;
        b.o = &o;
        b.N = 1;
        b.D = m->input_shape[1];
        b.H = m->input_shape[2];
        b.W = m->input_shape[3];
        b.vox = (size_t)b.D * b.H * b.W;
        if (nfv_volume_numel(&images[i]) != b.vox)
            return nfv_fail(NFV_ERR_INVALID_ARG, "objective of %s: volume %dx%dx%d is not the model grid %dx%dx%d",
                            t->name, images[i].nx, images[i].ny, images[i].nz, b.W, b.H, b.D);
        sample smp = {i, 0};
        nfv_tensor x;
        float *seed_host = NULL, *scratch = NULL;
        nfv_status st = vol_tensor(ctx, &x, 1, b.D, b.H, b.W);
        if (!st) st = nfv_tensor_upload(ctx, &x, images[i].data);
        int one[1] = {1};
        if (!st) st = nfv_tensor_create(ctx, &b.value, 1, one);
        if (!st) st = build_seed(&b, targets, &smp, l, &seed_host);
        if (!st) {
            int shape[5] = {1, l->out_shape[0], l->out_shape[1], l->out_shape[2], l->out_shape[3]};
            st = nfv_tensor_create(ctx, &b.seed, l->out_ndim + 1, shape);
        }
        if (!st) st = nfv_model_forward(m, ctx, &x, t->layer, 0);
        nfv_tensor *act = st ? NULL : nfv_model_activation(m, t->layer);
        if (!st) st = step_seed(&b, t, l, act, &b.seed);
        size_t sp = l->out_ndim == 4 ? (size_t)l->out_shape[1] * l->out_shape[2] * l->out_shape[3] : 1;
        if (t->kind == NFV_TARGET_LOGIT_CELL || t->contrast) sp = nfv_shape_numel(l->out_ndim, l->out_shape);
        b.seed_host = seed_host;
        seed_host = NULL;
        scratch = st ? NULL : malloc(sp * sizeof *scratch);
        if (!st && !scratch) st = nfv_fail(NFV_ERR_NO_MEMORY, "objective: out of memory");
        if (!st) st = read_objective(&b, t - i, &smp, l, act, &objective[i], scratch);
        free(seed_host);
        free(scratch);
        nfv_tensor_free(&x);
        batch_free(&b);
        if (st) return st;
    }
    return NFV_OK;
}
