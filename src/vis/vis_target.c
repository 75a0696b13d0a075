/* Feature-visualization targets: parsing, canonical text, file stems, shards.
 * Grammar in include/neurofv/vis.h. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/vis.h"

static int parse_int(const char *s, size_t len, int *out)
{
    if (len == 0 || len > 9) return 0;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static const char *class_name(const nfv_model *m, int i, char *buf, size_t cap)
{
    if (m->class_names && i < m->class_count && m->class_names[i]) return m->class_names[i];
    snprintf(buf, cap, "%d", i);
    return buf;
}

/* Classes addressable as logit:CLASS: softmax K, binary 2 (one logit), regression 1. */
static int logit_classes(const nfv_model *m)
{
    if (m->head == NFV_HEAD_REGRESSION) return 1;
    if (m->head == NFV_HEAD_BINARY) return 2;
    return m->layers[nfv_model_logit_layer(m)].out_shape[0];
}

static void list_classes(const nfv_model *m, char *buf, size_t cap)
{
    size_t used = 0;
    char tmp[16];
    buf[0] = 0;
    for (int i = 0; i < logit_classes(m) && used + 32 < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", class_name(m, i, tmp, sizeof tmp));
}

const char *nfv_target_format(const nfv_model *m, const nfv_target *t, char *buf, size_t cap)
{
    const char *neg = t->minimize ? "-" : "";
    char tmp[16];
    if (t->is_logit && m->head == NFV_HEAD_REGRESSION && t->kind == NFV_TARGET_FEATURE) {
        snprintf(buf, cap, "%soutput", neg); /* the one value: logit:0 and output are the same target */
        return buf;
    }
    if (t->is_logit) {
        /* Binary head: the class is 1 unless the sign was flipped by naming class 0. */
        int cls = t->unit;
        if (m->head == NFV_HEAD_BINARY) cls = ((t->sign < 0) != (t->minimize != 0)) ? 0 : 1;
        snprintf(buf, cap, "%s%s:%s", neg, t->contrast ? "contrast" : "logit", class_name(m, cls, tmp, sizeof tmp));
        if (t->kind == NFV_TARGET_LOGIT_CELL) {
            size_t len = strlen(buf);
            snprintf(buf + len, cap - len, "@%d,%d,%d", t->pos[0], t->pos[1], t->pos[2]);
        }
        return buf;
    }
    const char *lname = m->layers[t->layer].name;
    switch (t->kind) {
    case NFV_TARGET_LAYER: snprintf(buf, cap, "%s%s", neg, lname); break;
    case NFV_TARGET_NEURON:
        snprintf(buf, cap, "%s%s:%d@%d,%d,%d", neg, lname, t->unit, t->pos[0], t->pos[1], t->pos[2]);
        break;
    default: snprintf(buf, cap, "%s%s:%d", neg, lname, t->unit); break;
    }
    return buf;
}

const char *nfv_target_stem(const nfv_target *t, char *buf, size_t cap)
{
    size_t o = 0;
    const char *s = t->name;
    if (*s == '-') {
        o += (size_t)snprintf(buf, cap, "min_");
        s++;
    }
    for (; *s && o + 6 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '@') {
            memcpy(buf + o, "_at_", 4);
            o += 4;
        } else {
            buf[o++] = (isalnum(c) || c == '.' || c == '+') ? (char)c : '_';
        }
    }
    buf[o < cap ? o : cap - 1] = 0;
    return buf;
}

static nfv_status push(nfv_target **arr, int *count, int *cap, const nfv_target *t)
{
    if (*count == *cap) {
        int nc = *cap ? *cap * 2 : 8;
        nfv_target *p = realloc(*arr, (size_t)nc * sizeof *p);
        if (!p) return nfv_fail(NFV_ERR_NO_MEMORY, "target list: out of memory");
        *arr = p;
        *cap = nc;
    }
    (*arr)[(*count)++] = *t;
    return NFV_OK;
}

/* "z,y,x" (or "" = the centre) inside a D x H x W map. */
static nfv_status parse_position(const char *text, const char *pos_txt, const nfv_layer *l, int pos[3])
{
    int D = l->out_shape[1], H = l->out_shape[2], W = l->out_shape[3];
    if (!*pos_txt) {
        pos[0] = D / 2, pos[1] = H / 2, pos[2] = W / 2;
        return NFV_OK;
    }
    const char *q = pos_txt;
    for (int a = 0; a < 3; a++) {
        const char *e = q;
        while (*e && *e != ',') e++;
        if (!parse_int(q, (size_t)(e - q), &pos[a]) || (a < 2 && *e != ',') || (a == 2 && *e))
            return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": position \"%s\" must be z,y,x (three integers)", text,
                            pos_txt);
        q = e + 1;
    }
    if (pos[0] >= D || pos[1] >= H || pos[2] >= W)
        return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": position %d,%d,%d is outside layer %s's %dx%dx%d map", text,
                        pos[0], pos[1], pos[2], l->name, D, H, W);
    return NFV_OK;
}

/* The layer whose (C,D,H,W) map reaches the final Linear through Flatten
 * (and Dropout): ref4's pool4.  -1 when the model has no such layer. */
static int logit_map_layer(const nfv_model *m)
{
    int i = nfv_model_logit_layer(m);
    if (m->layers[i].spec.kind != NFV_LAYER_LINEAR || m->layers[i].n_inputs != 1 || m->layers[i].inputs[0] != i - 1)
        return -1;
    i--;
    while (i >= 0 && m->layers[i].spec.kind == NFV_LAYER_DROPOUT) i--;
    if (i < 1 || m->layers[i].spec.kind != NFV_LAYER_FLATTEN) return -1;
    i--;
    while (i >= 0 && m->layers[i].spec.kind == NFV_LAYER_DROPOUT) i--;
    return i >= 0 && m->layers[i].out_ndim == 4 ? i : -1;
}

static nfv_status finish(const nfv_model *m, nfv_target *t, nfv_target **arr, int *count, int *cap)
{
    nfv_target_format(m, t, t->name, sizeof t->name);
    return push(arr, count, cap, t);
}

/* The parts of a target text: "[-]HEAD[:UNIT][@POS]" (in buf, split in place). */
typedef struct target_text {
    const char *text;  /* as given, for errors */
    const char *head;  /* layer name or index, logit, logits, contrast */
    const char *unit;  /* channel, feature, class or all; NULL when no ':' */
    const char *pos;   /* after '@' ("" = the centre); NULL when no '@' */
} target_text;

/* logit:CLASS, contrast:CLASS (each @z,y,x or not; CLASS may be all). */
static nfv_status parse_logit(const nfv_model *m, const target_text *tt, nfv_target t, nfv_target **arr, int *n,
                              int *cap)
{
    const char *text = tt->text;
    int contrast = !strcmp(tt->head, "contrast");
    if (contrast && m->head != NFV_HEAD_SOFTMAX) contrast = 0; /* binary: the one logit is already the contrast */
    int logits = nfv_model_logit_layer(m);
    const nfv_layer *last = &m->layers[logits];
    if (nfv_shape_numel(last->out_ndim, last->out_shape) != (size_t)last->out_shape[0])
        return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": the model's logits (%s) are not one value per class", text,
                        last->name);
    if (!tt->unit || !*tt->unit) {
        char list[512];
        list_classes(m, list, sizeof list);
        return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": logit needs a class: logit:CLASS (classes: %s; or all)",
                        text, list);
    }
    t.kind = NFV_TARGET_FEATURE; /* (K), or (K, 1, 1, 1) read the same way */
    t.layer = logits;
    t.is_logit = 1;
    t.contrast = contrast;
    if (tt->pos) {
        int map = logit_map_layer(m);
        if (map < 0)
            return nfv_fail(NFV_ERR_INVALID_ARG,
                            "target \"%s\": logit:CLASS@z,y,x needs a spatial map -> flatten -> linear ending; this model's "
                            "last layers are %s, %s",
                            text, logits > 0 ? m->layers[logits - 1].name : "-", last->name);
        t.kind = NFV_TARGET_LOGIT_CELL;
        t.layer = map;
        NFV_TRY(parse_position(text, tt->pos, &m->layers[map], t.pos));
    }
    int K = logit_classes(m), first = 0, last_cls = K - 1;
    if (strcmp(tt->unit, "all")) {
        int cls = -1;
        char tmp[16];
        for (int i = 0; i < K && cls < 0; i++)
            if (!strcmp(tt->unit, class_name(m, i, tmp, sizeof tmp))) cls = i;
        if (cls < 0 && parse_int(tt->unit, strlen(tt->unit), &cls) && cls >= K) cls = -1;
        if (cls < 0) {
            char list[512];
            list_classes(m, list, sizeof list);
            return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": no class \"%s\" in this model (classes: %s; or an index 0-%d, or all)",
                            text, tt->unit, list, K - 1);
        }
        first = last_cls = cls;
    }
    for (int c = first; c <= last_cls; c++) {
        nfv_target u = t;
        if (m->head == NFV_HEAD_BINARY) {
            u.unit = 0;  /* one logit: class 1 maximizes it, class 0 minimizes it */
            if (c == 0) u.sign = -u.sign;
        } else {
            u.unit = c;
        }
        NFV_TRY(finish(m, &u, arr, n, cap));
    }
    return NFV_OK;
}

/* output: a regression model's prediction, the raw (standardized) value of
 * its last layer (maximized; -output minimizes it).  Classifiers have one
 * score per class: logit:CLASS. */
static nfv_status parse_output(const nfv_model *m, const target_text *tt, nfv_target t, nfv_target **arr, int *n,
                               int *cap)
{
    if (m->head != NFV_HEAD_REGRESSION) {
        char list[512];
        list_classes(m, list, sizeof list);
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "target \"%s\": output is the prediction of a regression model; this model has a %s head: use "
                        "logit:CLASS (classes: %s; or all), or output:N for a unit of the last layer",
                        tt->text, nfv_head_name(m->head), list);
    }
    t.kind = NFV_TARGET_FEATURE;
    t.layer = nfv_model_logit_layer(m);
    t.unit = 0;
    t.is_logit = 1;
    return finish(m, &t, arr, n, cap);
}

/* LAYER, LAYER:CHANNEL[@z,y,x], LAYER:all[@z,y,x]. */
static nfv_status parse_layer(const nfv_model *m, const target_text *tt, nfv_target t, nfv_target **arr, int *n,
                              int *cap)
{
    const char *text = tt->text, *unit_txt = tt->unit;
    int layer = nfv_model_find_layer(m, tt->head);
    if (layer < 0) return nfv_fail_context(NFV_ERR_INVALID_ARG, "target \"%s\"", text);
    const nfv_layer *l = &m->layers[layer];
    t.layer = layer;
    int spatial = l->out_ndim == 4;
    int units = l->out_shape[0];
    if (!unit_txt) {
        t.kind = NFV_TARGET_LAYER;
        t.unit = -1;
        return finish(m, &t, arr, n, cap);
    }
    int first = 0, last_unit = units - 1;
    if (strcmp(unit_txt, "all")) {
        int u;
        if (!parse_int(unit_txt, strlen(unit_txt), &u))
            return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": channel \"%s\" is not a number (layer %s has %s 0-%d, or all)",
                            text, unit_txt, l->name, spatial ? "channels" : "features", units - 1);
        if (u >= units)
            return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": layer %s has %d %s (0-%d), not %d", text, l->name,
                            units, spatial ? "channels" : "features", units - 1, u);
        first = last_unit = u;
    }
    t.kind = spatial ? NFV_TARGET_CHANNEL : NFV_TARGET_FEATURE;
    if (tt->pos) {
        if (!spatial)
            return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": layer %s has no spatial map (output %d features), so no @position",
                            text, l->name, units);
        t.kind = NFV_TARGET_NEURON;
        NFV_TRY(parse_position(text, tt->pos, l, t.pos));
    }
    for (int u = first; u <= last_unit; u++) {
        nfv_target v = t;
        v.unit = u;
        NFV_TRY(finish(m, &v, arr, n, cap));
    }
    return NFV_OK;
}

nfv_status nfv_target_parse(const nfv_model *m, const char *text, nfv_target **targets, int *count)
{
    *targets = NULL;
    *count = 0;
    if (!m || !text) return nfv_fail(NFV_ERR_INVALID_ARG, "target: missing model or text");
    const char *s = text;
    while (isspace((unsigned char)*s)) s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len == 0) return nfv_fail(NFV_ERR_INVALID_ARG, "target: empty text (e.g. conv3:5, logit:cube, conv2)");
    char buf[256];
    if (len >= sizeof buf) return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%.40s...\": too long", s);
    memcpy(buf, s, len);
    buf[len] = 0;

    nfv_target t;
    memset(&t, 0, sizeof t);
    t.sign = 1.0f;
    char *p = buf;
    if (*p == '-') {
        t.minimize = 1;
        t.sign = -1.0f;
        p++;
    }
    char *colon = strchr(p, ':');
    char *at = strchr(p, '@');
    if (at && (!colon || at < colon))
        return nfv_fail(NFV_ERR_INVALID_ARG, "target \"%s\": '@' needs LAYER:CHANNEL before it (e.g. conv3:5@10,12,9)",
                        text);
    if (colon) *colon = 0;
    if (at) *at = 0;
    target_text tt = {text, p, colon ? colon + 1 : NULL, at ? at + 1 : NULL};
    nfv_target *arr = NULL;
    int n = 0, cap = 0;
    int logit = !strcmp(p, "logit") || !strcmp(p, "logits") || !strcmp(p, "contrast");
    int output = !strcmp(p, "output") && !colon; /* output:N stays a unit of the last layer */
    nfv_status st = output  ? parse_output(m, &tt, t, &arr, &n, &cap)
                    : logit ? parse_logit(m, &tt, t, &arr, &n, &cap)
                            : parse_layer(m, &tt, t, &arr, &n, &cap);
    if (st) {
        free(arr);
        return st;
    }
    *targets = arr;
    *count = n;
    return NFV_OK;
}

/* A Slurm array variable as a non-negative integer, or -1 when unset or not a number. */
static long slurm_var(const char *name)
{
    const char *v = getenv(name);
    char *end = NULL;
    long x = v && *v ? strtol(v, &end, 10) : -1;
    return v && *v && end && !*end && x >= 0 ? x : -1;
}

/* --shard auto: I and N of a Slurm job array (sbatch --array=MIN-MAX):
 * I = SLURM_ARRAY_TASK_ID - MIN + 1, N = SLURM_ARRAY_TASK_COUNT, else
 * MAX - MIN + 1.  Arrays with a step (--array=0-9:2) number their tasks
 * with gaps and are refused by the checks below. */
static nfv_status shard_from_slurm(int *index, int *count)
{
    long id = slurm_var("SLURM_ARRAY_TASK_ID"), lo = slurm_var("SLURM_ARRAY_TASK_MIN"),
         hi = slurm_var("SLURM_ARRAY_TASK_MAX"), n = slurm_var("SLURM_ARRAY_TASK_COUNT");
    if (id < 0)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--shard auto: SLURM_ARRAY_TASK_ID is not set (not a task of a Slurm job "
                        "array; give --shard I/N)");
    if (lo < 0) lo = 0;
    if (n < 0 && hi >= lo) n = hi - lo + 1;
    if (n < 1 || id < lo || id - lo >= n)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--shard auto: task %ld of an array with MIN %ld and %ld task(s) is not a "
                        "contiguous array task (SLURM_ARRAY_TASK_MIN/MAX/COUNT); give --shard I/N", id, lo, n);
    *index = (int)(id - lo + 1);
    *count = (int)n;
    return NFV_OK;
}

nfv_status nfv_shard_parse(const char *text, int *index, int *count)
{
    int i = 0, n = 0;
    char tail;
    if (text && !strcmp(text, "auto")) return shard_from_slurm(index, count);
    if (!text || sscanf(text, "%d/%d%c", &i, &n, &tail) != 2 || n < 1 || i < 1 || i > n)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--shard expects I/N with 1 <= I <= N (e.g. 2/8) or auto (a Slurm array task), got \"%s\"",
                        text ? text : "");
    *index = i;
    *count = n;
    return NFV_OK;
}

int nfv_shard_contains(int unit, int units, int index, int count)
{
    if (count <= 1) return 1;
    if (units <= 0 || unit < 0 || unit >= units) return 0;
    return (int)((long long)unit * count / units) == index - 1;
}
