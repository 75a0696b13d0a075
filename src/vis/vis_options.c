/* Options of the feature-visualization loop: the table the CLI shows, the
 * defaults, setting one option from its command-line text, parsing an option
 * string (as `neurofv compare` configurations are written) and the checks of
 * combinations.  The fields are documented in include/neurofv/vis.h. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis.h"

const nfv_vis_option_info nfv_vis_option_table[] = {
    {"--steps", "N", "optimization steps (default 512)"},
    {"--lr", "LR", "learning rate (default 0.05)"},
    {"--optimizer", "adam|sgd", "optimizer on the parameter (default adam)"},
    {"--momentum", "M", "SGD momentum (default 0.9)"},
    {"--weight-decay", "W", "weight decay added to the gradient, as PyTorch (default 0)"},
    {"--seed", "S", "random seed for the start and the transforms (default 1)"},
    {"--starts", "K", "random starts per target; the best (objective without transforms) is kept (default 1)"},
    {"--batch", "B", "samples (targets x starts) optimized together in one device batch (default: the largest up to 8 "
                        "that fits the device, or 1 where a few timed steps show it cheaper per sample)"},
    {"--param", "voxel|fourier|dct|maco", "parameterization: voxels, or Fourier coefficients with 1/f scaling "
                                          "(fourier: periodic DFT/Hartley basis; dct: DCT-II basis), or maco: only "
                                          "the phase, magnitude = the training cohort's spectrum (neurofv "
                                          "spectrum) (default voxel)"},
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
    {"--crop", "MAX,MIN", "MACO's transforms: a random crop of edge MAX (fraction of the grid) shrinking to MIN over "
                          "the steps, resized to the grid, each step (default off)"},
    {"--noise", "SD", "Gaussian noise of SD on the model input each step (MACO's transforms) (default 0 = off)"},
    {"--range", "LO,HI", "keep every voxel of the change in [LO, HI] (projected steps, voxel parameterization; "
                         "e.g. 0,4 = only brighten, by at most 4 SD) (default off)"},
    {"--mask", "FILE|brain|ball=R[@X,Y,Z]|none",
     "optimize only inside a mask (brain: Colin27 > 0 on the model grid; ball: a ball of radius R mm centred at "
     "world X,Y,Z mm, by default in the template's deep white matter, so that a class is drawn as one lesion-sized "
     "object) (default none)"},
    {"--diversity", "W", "optimize the --starts of each target together, pushed apart by Lucid's diversity term "
                         "(W x negative cosine of Gram matrices at --diversity-layer); <stem>_facets.png shows them "
                         "(default 0 = off)"},
    {"--diversity-layer", "LAYER", "layer of the diversity term (default: the last conv-shaped layer before the "
                                   "target's)"},
    {"--stay", "LAYER=W", "feature accentuation (with --init subject=FILE): W x mean squared difference of the "
                          "activations at LAYER from the subject's (default off)"},
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

/* --init noise[=A] | zeros | template[=FILE]. */
static nfv_status set_init(nfv_vis_options *o, const char *name, const char *v)
{
    if (!strcmp(v, "zeros")) {
        o->init = NFV_VIS_INIT_ZEROS;
    } else if (!strncmp(v, "noise", 5) && (v[5] == 0 || v[5] == '=')) {
        o->init = NFV_VIS_INIT_NOISE;
        if (v[5] == '=' && (!parse_float(v + 6, &o->init_scale) || !(o->init_scale > 0)))
            return BAD(name, v, "noise=A with A > 0");
    } else if (!strncmp(v, "subject=", 8) && v[8]) {
        o->init = NFV_VIS_INIT_TEMPLATE;
        o->init_subject = 1;
        snprintf(o->init_path, sizeof o->init_path, "%s", v + 8);
    } else if (!strncmp(v, "template", 8) && (v[8] == 0 || v[8] == '=')) {
        o->init = NFV_VIS_INIT_TEMPLATE;
        o->init_subject = 0;
        snprintf(o->init_path, sizeof o->init_path, "%s", v[8] == '=' ? v + 9 : "template");
        if (!o->init_path[0]) return BAD(name, v, "template=FILE");
    } else {
        return BAD(name, v, "noise[=A], zeros, template[=FILE] or subject=FILE");
    }
    return NFV_OK;
}

/* --range LO,HI | off | none. */
static nfv_status set_range(nfv_vis_options *o, const char *v)
{
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
}

/* --scale LO,HI or one factor S (= S,S). */
static nfv_status set_scale(nfv_vis_options *o, const char *name, const char *v)
{
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
    return NFV_OK;
}

/* --crop MAX,MIN (0.1 <= MIN <= MAX <= 1), one fraction F (= F,F), or off. */
static nfv_status set_crop(nfv_vis_options *o, const char *name, const char *v)
{
    char tail;
    float a, b;
    if (!strcmp(v, "off") || !strcmp(v, "none")) {
        o->crop_max = o->crop_min = 0;
        return NFV_OK;
    }
    if (sscanf(v, "%f,%f%c", &a, &b, &tail) != 2) {
        if (!parse_float(v, &a)) return BAD(name, v, "MAX,MIN with 0.1 <= MIN <= MAX <= 1 (e.g. 0.9,0.5) or off");
        b = a;
    }
    if (!(b >= 0.1f && a >= b && a <= 1.0f))
        return BAD(name, v, "MAX,MIN with 0.1 <= MIN <= MAX <= 1 (e.g. 0.9,0.5) or off");
    o->crop_max = a, o->crop_min = b;
    return NFV_OK;
}

/* --snapshots S1,S2,... (up to NFV_VIS_MAX_SNAPSHOTS steps >= 0). */
static nfv_status set_snapshots(nfv_vis_options *o, const char *name, const char *v)
{
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
    return NFV_OK;
}

/* The error for a name not in the table lists every option. */
static nfv_status unknown_option(const char *name)
{
    char list[1024];
    size_t used = 0;
    for (const nfv_vis_option_info *i = nfv_vis_option_table; i->name && used + 32 < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? " " : "", i->name);
    return nfv_fail(NFV_ERR_INVALID_ARG, "unknown visualization option %s (options: %s)", name, list);
}

/* A two-word choice: 0 for the word `off`, 1 for `on`, -1 for anything else. */
static int choice(const char *v, const char *off, const char *on)
{
    return !strcmp(v, off) ? 0 : !strcmp(v, on) ? 1 : -1;
}

/* The options of the optimizer and the start: steps, lr, optimizer, momentum,
 * weight decay, seed, starts, batch.  Returns 1 when name is one of them. */
static int set_optimizer(nfv_vis_options *o, const char *name, const char *v, nfv_status *st)
{
    int c;
    if (!strcmp(name, "--steps")) {
        if (!parse_intv(v, &o->steps) || o->steps < 0) *st = BAD(name, v, "a step count >= 0");
    } else if (!strcmp(name, "--lr")) {
        if (!parse_float(v, &o->lr) || !(o->lr > 0)) *st = BAD(name, v, "a learning rate > 0");
    } else if (!strcmp(name, "--optimizer")) {
        if ((c = choice(v, "adam", "sgd")) < 0) *st = BAD(name, v, "adam or sgd");
        else o->sgd = c;
    } else if (!strcmp(name, "--momentum")) {
        if (!parse_float(v, &o->momentum) || o->momentum < 0 || o->momentum >= 1) *st = BAD(name, v, "M in [0, 1)");
    } else if (!strcmp(name, "--weight-decay")) {
        if (!parse_float(v, &o->weight_decay) || o->weight_decay < 0) *st = BAD(name, v, "a weight decay >= 0");
    } else if (!strcmp(name, "--seed")) {
        char *end = NULL;
        if (isdigit((unsigned char)*v)) o->seed = strtoull(v, &end, 10);
        if (!end || *end) *st = BAD(name, v, "a non-negative integer");
    } else if (!strcmp(name, "--starts")) {
        if (!parse_intv(v, &o->starts) || o->starts < 1 || o->starts > 1024) *st = BAD(name, v, "an integer 1-1024");
    } else if (!strcmp(name, "--batch")) {
        if (!parse_intv(v, &o->batch) || o->batch < 1 || o->batch > 4096) *st = BAD(name, v, "an integer >= 1");
    } else {
        return 0;
    }
    return 1;
}

/* The parameterization, the start and the priors: param, decay, init,
 * penalties, blur, mask.  Returns 1 when name is one of them. */
static int set_prior(nfv_vis_options *o, const char *name, const char *v, nfv_status *st)
{
    if (!strcmp(name, "--param")) {
        if (!strcmp(v, "voxel")) o->param = NFV_VIS_PARAM_VOXEL;
        else if (!strcmp(v, "fourier") || !strcmp(v, "fft") || !strcmp(v, "dft")) o->param = NFV_VIS_PARAM_FOURIER;
        else if (!strcmp(v, "dct")) o->param = NFV_VIS_PARAM_DCT;
        else if (!strcmp(v, "maco")) o->param = NFV_VIS_PARAM_MACO;
        else *st = BAD(name, v, "voxel, fourier, dct or maco");
    } else if (!strcmp(name, "--decay")) {
        if (!parse_float(v, &o->decay) || o->decay < 0 || o->decay > 4) *st = BAD(name, v, "an exponent in [0, 4]");
    } else if (!strcmp(name, "--init")) {
        *st = set_init(o, name, v);
    } else if (!strcmp(name, "--l1")) {
        if (!parse_float(v, &o->l1) || o->l1 < 0) *st = BAD(name, v, "a weight >= 0");
    } else if (!strcmp(name, "--l2")) {
        if (!parse_float(v, &o->l2) || o->l2 < 0) *st = BAD(name, v, "a weight >= 0");
    } else if (!strcmp(name, "--tv")) {
        if (!parse_float(v, &o->tv) || o->tv < 0) *st = BAD(name, v, "a weight >= 0");
    } else if (!strcmp(name, "--tv-eps")) {
        if (!parse_float(v, &o->tv_eps) || !(o->tv_eps > 0)) *st = BAD(name, v, "eps > 0");
    } else if (!strcmp(name, "--blur")) {
        if (!parse_float(v, &o->blur_sigma) || o->blur_sigma < 0 || o->blur_sigma > 20)
            *st = BAD(name, v, "sigma in voxels, 0-20 (0 = off)");
    } else if (!strcmp(name, "--blur-every")) {
        if (!parse_intv(v, &o->blur_every) || o->blur_every < 1) *st = BAD(name, v, "an integer >= 1");
    } else if (!strcmp(name, "--range")) {
        *st = set_range(o, v);
    } else if (!strcmp(name, "--mask")) {
        snprintf(o->mask, sizeof o->mask, "%s", strcmp(v, "none") ? v : "");
    } else {
        return 0;
    }
    return 1;
}

/* The transforms and the outputs: jitter, scale, rotate, pad, log-every,
 * importance, snapshots.  Returns 1 when name is one of them. */
static int set_transform_or_output(nfv_vis_options *o, const char *name, const char *v, nfv_status *st)
{
    int c;
    if (!strcmp(name, "--jitter")) {
        if (!parse_intv(v, &o->jitter) || o->jitter < 0 || o->jitter > 64) *st = BAD(name, v, "voxels 0-64");
    } else if (!strcmp(name, "--scale")) {
        *st = set_scale(o, name, v);
    } else if (!strcmp(name, "--rotate")) {
        if (!parse_float(v, &o->rotate_deg) || o->rotate_deg < 0 || o->rotate_deg > 180)
            *st = BAD(name, v, "degrees 0-180");
    } else if (!strcmp(name, "--pad")) {
        if (!parse_intv(v, &o->pad) || o->pad < 0 || o->pad > 64) *st = BAD(name, v, "voxels 0-64");
    } else if (!strcmp(name, "--crop")) {
        *st = set_crop(o, name, v);
    } else if (!strcmp(name, "--noise")) {
        if (!parse_float(v, &o->noise) || o->noise < 0 || o->noise > 100) *st = BAD(name, v, "an SD in [0, 100]");
    } else if (!strcmp(name, "--diversity")) {
        if (!parse_float(v, &o->diversity) || o->diversity < 0 || o->diversity > 1e6) *st = BAD(name, v, "a weight >= 0");
    } else if (!strcmp(name, "--diversity-layer")) {
        if (!*v || strlen(v) >= sizeof o->diversity_layer) *st = BAD(name, v, "a layer name or index");
        else snprintf(o->diversity_layer, sizeof o->diversity_layer, "%s", v);
    } else if (!strcmp(name, "--stay")) {
        const char *eq = strrchr(v, '=');
        if (!eq || eq == v || (size_t)(eq - v) >= sizeof o->stay_layer || !parse_float(eq + 1, &o->stay) ||
            o->stay < 0)
            *st = BAD(name, v, "LAYER=W with a weight W >= 0 (e.g. relu3=1)");
        else snprintf(o->stay_layer, sizeof o->stay_layer, "%.*s", (int)(eq - v), v);
    } else if (!strcmp(name, "--log-every")) {
        if (!parse_intv(v, &o->log_every) || o->log_every < 1) *st = BAD(name, v, "an integer >= 1");
    } else if (!strcmp(name, "--importance")) {
        if ((c = choice(v, "off", "on")) < 0) *st = BAD(name, v, "on or off");
        else o->importance = c;
    } else if (!strcmp(name, "--snapshots")) {
        *st = set_snapshots(o, name, v);
    } else {
        return 0;
    }
    return 1;
}

void nfv_vis_options_gif(nfv_vis_options *o)
{
    o->gif = 1;
    if (o->snapshot_count > 0) return;
    int n = o->steps + 1 < NFV_VIS_MAX_SNAPSHOTS ? o->steps + 1 : NFV_VIS_MAX_SNAPSHOTS;
    for (int i = 0; i < n; i++) o->snapshots[i] = n == 1 ? 0 : (int)((long)i * o->steps / (n - 1));
    o->snapshot_count = n;
    o->snapshots_auto = 1;
}

nfv_status nfv_vis_options_set(nfv_vis_options *o, const char *name, const char *v)
{
    if (!name) return nfv_fail(NFV_ERR_INVALID_ARG, "visualization option: no name");
    if (!v) return nfv_fail(NFV_ERR_INVALID_ARG, "%s needs a value", name);
    nfv_status st = NFV_OK;
    if (set_optimizer(o, name, v, &st) || set_prior(o, name, v, &st) || set_transform_or_output(o, name, v, &st))
        return st;
    return unknown_option(name);
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
        } else if (eq) { /* split at the first '=': --init=template=FILE */
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
    if (o->crop_max > 0 && (o->jitter > 0 || o->scale_min != 1.0f || o->scale_max != 1.0f || o->rotate_deg > 0 ||
                            o->pad > 0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "--crop (MACO's transforms) replaces --jitter/--scale/--rotate/--pad: "
                                             "give one recipe");
    if (o->stay > 0 && !o->init_subject)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--stay keeps activations near a subject's: it needs --init subject=FILE");
    if (o->diversity > 0 && o->starts < 2)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--diversity pushes the starts of a target apart: it needs --starts >= 2");
    if (o->diversity > 0 && o->batch < o->starts)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "--diversity pushes a target's starts apart within one batch: --batch (%d) must be at least "
                        "--starts (%d)",
                        o->batch, o->starts);
    if (o->param == NFV_VIS_PARAM_MACO && o->blur_sigma > 0)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--blur smooths a spectrum's magnitude, which --param maco fixes: drop one");
    if (o->param == NFV_VIS_PARAM_MACO && o->init == NFV_VIS_INIT_TEMPLATE)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--param maco draws the whole image from the spectrum: it has no "
                                             "--init template (use --init noise)");
    return NFV_OK;
}

