/* Feature-visualization outputs scored against the truth attribution maps
 * are scored against; see include/neurofv/explain.h. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/explain.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted names of dir's files ending in suffix. */
static nfv_status list_files(const char *dir, const char *suffix, char ***names, int *count)
{
    *names = NULL, *count = 0;
    DIR *d = opendir(dir);
    if (!d) return nfv_fail(NFV_ERR_IO, "--vis %s: cannot open the folder", dir);
    int cap = 0;
    nfv_status st = NFV_OK;
    for (struct dirent *e; (e = readdir(d)) && !st;) {
        if (!ends_with(e->d_name, suffix)) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            char **n = realloc(*names, (size_t)cap * sizeof *n);
            if (!n) st = nfv_fail(NFV_ERR_NO_MEMORY, "--vis: out of memory");
            else *names = n;
        }
        if (!st && !((*names)[(*count)++] = strdup(e->d_name))) st = nfv_fail(NFV_ERR_NO_MEMORY, "--vis: out of memory");
    }
    closedir(d);
    if (*count) qsort(*names, (size_t)*count, sizeof **names, by_name);
    return st;
}

static void free_names(char **names, int count)
{
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

/* src resampled onto grid's voxels (through the affines), > 0.5 -> 1. */
static nfv_status on_grid(const nfv_volume *src, const nfv_volume *grid, int binary, nfv_volume *out)
{
    NFV_TRY(nfv_volume_resample_to(src, grid->nx, grid->ny, grid->nz, grid->affine, 0, out));
    if (binary)
        for (size_t i = 0; i < nfv_volume_numel(out); i++) out->data[i] = out->data[i] > 0.5f;
    return NFV_OK;
}

/* The class a stem "logit_<name>" / "contrast_<name>" names, or -1. */
static int stem_class(const char *stem, const char *const *names, int classes)
{
    const char *p = !strncmp(stem, "logit_", 6) ? stem + 6 : !strncmp(stem, "contrast_", 9) ? stem + 9 : NULL;
    for (int c = 0; p && c < classes; c++)
        if (!strcmp(p, names[c])) return c;
    return -1;
}

/* "logit_cube" -> "logit:cube", "min_output" -> "-output". */
static void target_text(const char *stem, char *out, size_t cap)
{
    const char *s = stem;
    int neg = !strncmp(s, "min_", 4);
    if (neg) s += 4;
    snprintf(out, cap, "%s%s", neg ? "-" : "", s);
    char *u = strchr(out, '_');
    if (u) *u = ':';
}

static nfv_status score_importance(const char *dir, const char *name, const nfv_volume *regions,
                                   const char *const *class_names, int classes, const nfv_volume *brain,
                                   nfv_explain_vis_score *sc, int *used)
{
    char stem[256], path[4400];
    snprintf(stem, sizeof stem, "%.*s", (int)(strlen(name) - strlen("_importance.nii.gz")), name);
    int c = stem_class(stem, class_names, classes);
    *used = 0;
    if (c < 0 || !regions[c].nx) return NFV_OK;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    nfv_volume imp = {0}, reg = {0}, br = {0};
    nfv_status st = nfv_volume_read(path, &imp, NULL);
    if (!st) st = on_grid(&regions[c], &imp, 1, &reg);
    if (!st) st = on_grid(brain, &imp, 1, &br);
    if (!st) {
        size_t n = nfv_volume_numel(&imp), in = 0, all = 0;
        for (size_t i = 0; i < n; i++) in += reg.data[i] > 0.5f, all += br.data[i] > 0.5f;
        memset(sc, 0, sizeof *sc);
        target_text(stem, sc->target, sizeof sc->target);
        snprintf(sc->file, sizeof sc->file, "%s", name);
        sc->mass = nfv_explain_mass_in(imp.data, reg.data, n);
        sc->hit = nfv_explain_pointing(imp.data, reg.data, n);
        sc->chance = all ? (double)in / all : NAN;
        sc->brain_mass = nfv_explain_mass_in(imp.data, br.data, n);
        sc->effect_r = sc->effect_mass = NAN;
        *used = 1;
    }
    nfv_volume_free(&imp), nfv_volume_free(&reg), nfv_volume_free(&br);
    return st ? nfv_fail_context(st, "--vis %s", path) : NFV_OK;
}

/* A visualization's r with the age effect: its _change file when there is one. */
static nfv_status score_effect(const char *dir, const char *name, const nfv_volume *brain, const nfv_volume *effect,
                               nfv_explain_vis_score *sc, int *used)
{
    char stem[256], path[4400];
    *used = 0;
    if (ends_with(name, "_importance.nii.gz") || strstr(name, "_step") || ends_with(name, "_change.nii.gz")) return NFV_OK;
    snprintf(stem, sizeof stem, "%.*s", (int)(strlen(name) - strlen(".nii.gz")), name);
    snprintf(path, sizeof path, "%s/%s_change.nii.gz", dir, stem);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    else snprintf(path, sizeof path, "%s/%s", dir, name);
    nfv_volume v = {0}, eff = {0}, br = {0};
    nfv_status st = nfv_volume_read(path, &v, NULL);
    if (!st) st = on_grid(effect, &v, 0, &eff);
    if (!st) st = on_grid(brain, &v, 1, &br);
    if (!st) {
        memset(sc, 0, sizeof *sc);
        target_text(stem, sc->target, sizeof sc->target);
        snprintf(sc->file, sizeof sc->file, "%s", strrchr(path, '/') + 1);
        sc->mass = sc->chance = sc->brain_mass = NAN;
        sc->hit = -1;
        size_t n = nfv_volume_numel(&v);
        sc->effect_r = nfv_explain_pearson(v.data, eff.data, br.data, n);
        /* |mass| inside the brain that falls where |effect| >= 20 % of its max */
        float emax = 0;
        for (size_t i = 0; i < n; i++) emax = br.data[i] > 0.5f && fabsf(eff.data[i]) > emax ? fabsf(eff.data[i]) : emax;
        for (size_t i = 0; i < n; i++) {
            int inb = br.data[i] > 0.5f;
            eff.data[i] = inb && fabsf(eff.data[i]) >= 0.2f * emax;
            if (!inb) v.data[i] = 0;
        }
        sc->effect_mass = nfv_explain_mass_in(v.data, eff.data, n);
        *used = 1;
    }
    nfv_volume_free(&v), nfv_volume_free(&eff), nfv_volume_free(&br);
    return st ? nfv_fail_context(st, "--vis %s", path) : NFV_OK;
}

nfv_status nfv_explain_score_vis(const char *dir, const nfv_volume *regions, const char *const *class_names,
                                 int classes, const nfv_volume *brain, const nfv_volume *effect,
                                 nfv_explain_vis_score **out, int *count)
{
    char **names;
    int n;
    *out = NULL, *count = 0;
    NFV_TRY(list_files(dir, ".nii.gz", &names, &n));
    nfv_explain_vis_score *sc = calloc((size_t)n + 1, sizeof *sc);
    nfv_status st = sc ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "--vis: out of memory");
    for (int i = 0; i < n && !st; i++) {
        int used = 0;
        if (ends_with(names[i], "_importance.nii.gz"))
            st = score_importance(dir, names[i], regions, class_names, classes, brain, &sc[*count], &used);
        else if (effect && effect->nx)
            st = score_effect(dir, names[i], brain, effect, &sc[*count], &used);
        *count += used;
    }
    free_names(names, n);
    if (!st && !*count)
        st = nfv_fail(NFV_ERR_INVALID_ARG, "--vis %s: no visualization to score (need <stem>_importance.nii.gz of logit "
                      "targets with a lesion truth, or visualizations with an age-effect truth)", dir);
    if (st) free(sc), *count = 0;
    else *out = sc;
    return st;
}
