/* Outputs of a visualization: the volume as NIfTI (the model's affine),
 * orthogonal slices, an axial mosaic, an overlay on the template, a grid for
 * sweeps, and a JSON log.  Every file goes to a temporary name, then rename().
 * For --resume: whether a target's outputs are all there, and its result
 * read back from them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "neurofv/render.h"
#include "base/fs.h"
#include "neurofv/vis.h"

static cJSON *options_json(const nfv_vis_options *o)
{
    static const char *params[] = {"voxel", "fourier", "dct", "maco"};
    static const char *inits[] = {"noise", "zeros", "template"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "steps", o->steps);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddStringToObject(j, "optimizer", o->sgd ? "sgd" : "adam");
    cJSON_AddNumberToObject(j, "weight_decay", o->weight_decay);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "starts", o->starts);
    cJSON_AddStringToObject(j, "param", params[o->param]);
    cJSON_AddNumberToObject(j, "decay", o->decay);
    cJSON_AddStringToObject(j, "init", inits[o->init]);
    if (o->init == NFV_VIS_INIT_NOISE) cJSON_AddNumberToObject(j, "init_scale", o->init_scale);
    if (o->init == NFV_VIS_INIT_TEMPLATE)
        cJSON_AddStringToObject(j, o->init_subject ? "init_subject" : "init_template", o->init_path);
    if (o->stay > 0) {
        cJSON_AddStringToObject(j, "stay_layer", o->stay_layer);
        cJSON_AddNumberToObject(j, "stay", o->stay);
    }
    cJSON_AddNumberToObject(j, "l1", o->l1);
    cJSON_AddNumberToObject(j, "l2", o->l2);
    cJSON_AddNumberToObject(j, "tv", o->tv);
    cJSON_AddNumberToObject(j, "blur", o->blur_sigma);
    cJSON_AddNumberToObject(j, "blur_every", o->blur_every);
    cJSON_AddNumberToObject(j, "jitter", o->jitter);
    cJSON_AddNumberToObject(j, "scale_min", o->scale_min);
    cJSON_AddNumberToObject(j, "scale_max", o->scale_max);
    cJSON_AddNumberToObject(j, "rotate_deg", o->rotate_deg);
    if (o->crop_max > 0) {
        cJSON_AddNumberToObject(j, "crop_max", o->crop_max);
        cJSON_AddNumberToObject(j, "crop_min", o->crop_min);
    }
    if (o->noise > 0) cJSON_AddNumberToObject(j, "noise", o->noise);
    if (o->diversity > 0) {
        cJSON_AddNumberToObject(j, "diversity", o->diversity);
        cJSON_AddStringToObject(j, "diversity_layer", o->diversity_layer[0] ? o->diversity_layer : "default");
    }
    cJSON_AddNumberToObject(j, "pad", o->pad);
    cJSON_AddStringToObject(j, "mask", o->mask[0] ? o->mask : "none");
    cJSON_AddBoolToObject(j, "importance", o->importance);
    return j;
}

static nfv_status write_png(const char *dir, const char *stem, const char *suffix, const nfv_image *im)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, stem, suffix);
    return nfv_image_write_png(path, im);
}

/* dir/<stem>.gif: the snapshots in step order, orthogonal slices through
 * the final volume's peak at its grey window, the step on each frame. */
static nfv_status write_gif(const nfv_vis_result *r, const nfv_vis_options *o, const char *dir, const char *stem)
{
    int n = r->snapshot_count, order[NFV_VIS_MAX_SNAPSHOTS];
    if (n < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "--gif: no snapshot of %s was taken (steps 0-%d)", r->target.name, o->steps);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort by step */
        for (int k = i; k > 0 && r->snapshot_step[order[k]] < r->snapshot_step[order[k - 1]]; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    const nfv_volume *vols[NFV_VIS_MAX_SNAPSHOTS];
    char text[NFV_VIS_MAX_SNAPSHOTS][224];
    const char *labels[NFV_VIS_MAX_SNAPSHOTS];
    for (int i = 0; i < n; i++) {
        vols[i] = &r->snapshot[order[i]];
        snprintf(text[i], sizeof text[i], "%s  STEP %d/%d", r->target.name, r->snapshot_step[order[i]], o->steps);
        labels[i] = text[i];
    }
    nfv_render_options ro;
    nfv_render_options_default(&ro);
    nfv_render_window(&r->volume, ro.window); /* the final frame's scale for every frame */
    double at[3];
    nfv_volume_peak(&r->volume, at, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.gif", dir, stem);
    return nfv_render_ortho_gif(path, vols, labels, n, &ro, at, 25, 150);
}

/* --diversity: <stem>_facets.png, one axial slice through each start's
 * peak, titled with the start and its objective without transforms. */
static nfv_status write_facets(const nfv_vis_result *r, const char *dir, const char *stem)
{
    int n = r->facet_count;
    const nfv_volume **vols = malloc((size_t)n * sizeof *vols);
    const char **titles = malloc((size_t)n * sizeof *titles);
    char(*text)[64] = malloc((size_t)n * sizeof *text);
    nfv_status st = vols && titles && text ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "facets: out of memory");
    for (int i = 0; !st && i < n; i++) {
        vols[i] = &r->facets[i];
        snprintf(text[i], sizeof text[i], "start %d: %.4g%s", i, r->start_objective ? r->start_objective[i] : 0.0f,
                 i == r->best_start ? " (kept)" : "");
        titles[i] = text[i];
    }
    nfv_render_options ro;
    nfv_render_options_default(&ro);
    nfv_image im;
    memset(&im, 0, sizeof im);
    if (!st) st = nfv_render_grid(vols, titles, n, n < 8 ? n : 8, NFV_VIEW_AXIAL, &ro, &im);
    if (!st) st = write_png(dir, stem, "_facets.png", &im);
    nfv_image_free(&im);
    free(vols);
    free(titles);
    free(text);
    return st;
}

nfv_status nfv_vis_write(const nfv_vis_result *r, const nfv_vis_options *o, const nfv_volume *background,
                         const char *dir)
{
    char stem[160], path[4200];
    nfv_target_stem(&r->target, stem, sizeof stem);
    NFV_TRY(nfv_mkdirs(dir));
    snprintf(path, sizeof path, "%s/%s.nii.gz", dir, stem);
    NFV_TRY(nfv_volume_write(path, &r->volume));
    if (r->change.nx) {
        snprintf(path, sizeof path, "%s/%s_change.nii.gz", dir, stem);
        NFV_TRY(nfv_volume_write(path, &r->change));
    }
    if (r->importance.nx) {
        snprintf(path, sizeof path, "%s/%s_importance.nii.gz", dir, stem);
        NFV_TRY(nfv_volume_write(path, &r->importance));
    }
    for (int s = 0; s < r->snapshot_count && !o->snapshots_auto; s++) {
        snprintf(path, sizeof path, "%s/%s_step%d.nii.gz", dir, stem, r->snapshot_step[s]);
        NFV_TRY(nfv_volume_write(path, &r->snapshot[s]));
    }
    if (r->facet_count > 1) NFV_TRY(write_facets(r, dir, stem));

    nfv_render_options ro;
    nfv_render_options_default(&ro);
    nfv_image im;
    memset(&im, 0, sizeof im);
    double at[3];
    nfv_volume_peak(&r->volume, at, NULL);
    nfv_status st = nfv_render_ortho(&r->volume, &ro, at, &im);
    if (!st) st = write_png(dir, stem, "_ortho.png", &im);
    nfv_image_free(&im);
    if (!st) st = nfv_render_mosaic(&r->volume, &ro, 24, 6, &im);
    if (!st) st = write_png(dir, stem, "_mosaic.png", &im);
    nfv_image_free(&im);
    if (!st && background) {
        /* The overlay shows the change when the start was a template (else the image). */
        const nfv_volume *ov = r->change.nx ? &r->change : &r->volume;
        nfv_render_options bo = ro;
        bo.background = background;
        nfv_volume_peak(ov, at, NULL);
        st = nfv_render_ortho(ov, &bo, at, &im);
        if (!st) st = write_png(dir, stem, "_overlay.png", &im);
        nfv_image_free(&im);
    }
    if (!st && r->importance.nx) {
        /* Slices through the most important voxel: hot overlay on the background when there is one. */
        nfv_render_options io = ro;
        io.background = background;
        nfv_volume_peak(&r->importance, at, NULL);
        st = nfv_render_ortho(&r->importance, &io, at, &im);
        if (!st) st = write_png(dir, stem, "_importance.png", &im);
        nfv_image_free(&im);
    }
    if (!st && o->gif) st = write_gif(r, o, dir, stem);
    if (st) return nfv_fail_context(st, "outputs of %s", r->target.name);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "target", r->target.name);
    cJSON_AddNumberToObject(j, "layer", r->target.layer);
    cJSON_AddNumberToObject(j, "objective", r->objective);
    cJSON_AddNumberToObject(j, "objective_without_transforms", r->objective_clean);
    cJSON_AddNumberToObject(j, "best_start", r->best_start);
    cJSON *so = cJSON_AddArrayToObject(j, "start_objectives_without_transforms");
    for (int s = 0; s < r->start_count; s++) cJSON_AddItemToArray(so, cJSON_CreateNumber(r->start_objective[s]));
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddItemToObject(j, "options", options_json(o));
    cJSON *steps = cJSON_AddArrayToObject(j, "log_step");
    cJSON *objs = cJSON_AddArrayToObject(j, "log_objective");
    for (int i = 0; i < r->log_count; i++) {
        cJSON_AddItemToArray(steps, cJSON_CreateNumber(r->log_step[i]));
        cJSON_AddItemToArray(objs, cJSON_CreateNumber(r->log_objective[i]));
    }
    cJSON *terms = cJSON_AddArrayToObject(j, "regularizer_terms");
    for (int i = 0; i < r->term_count; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "step", r->term_step[i]);
        cJSON_AddNumberToObject(t, "l1", r->term_l1[i]);
        cJSON_AddNumberToObject(t, "l2", r->term_l2[i]);
        cJSON_AddNumberToObject(t, "tv", r->term_tv[i]);
        cJSON_AddItemToArray(terms, t);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return nfv_fail(NFV_ERR_NO_MEMORY, "JSON log of %s: out of memory", r->target.name);
    snprintf(path, sizeof path, "%s/%s.json", dir, stem);
    st = nfv_write_text_atomic(path, text);
    free(text);
    return st;
}

nfv_status nfv_vis_write_grid(const nfv_vis_result *r, int count, const char *dir, const char *stem)
{
    if (count <= 0) return NFV_OK;
    const nfv_volume **vols = malloc((size_t)count * sizeof *vols);
    const char **titles = malloc((size_t)count * sizeof *titles);
    if (!vols || !titles) {
        free(vols);
        free(titles);
        return nfv_fail(NFV_ERR_NO_MEMORY, "grid: out of memory");
    }
    for (int i = 0; i < count; i++) {
        vols[i] = r[i].change.nx ? &r[i].change : &r[i].volume;
        titles[i] = r[i].target.name;
    }
    nfv_render_options ro;
    nfv_render_options_default(&ro);
    nfv_image im;
    memset(&im, 0, sizeof im);
    int cols = count < 8 ? count : 8;
    nfv_status st = nfv_render_grid(vols, titles, count, cols, NFV_VIEW_AXIAL, &ro, &im);
    free(vols);
    free(titles);
    if (!st) st = write_png(dir, stem, "_grid.png", &im);
    nfv_image_free(&im);
    return st;
}

/* ---- resuming ----------------------------------------------------------------- */

/* The whole file at path, NUL-terminated (malloc'ed), or NULL (a JSON log
 * is a few kB; 64 MiB bounds a corrupt one). */
static char *read_text(const char *path)
{
    char *text;
    return nfv_read_file(path, (size_t)1 << 26, &text, NULL, NULL) == NFV_OK ? text : NULL;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

nfv_status nfv_vis_outputs_complete(const nfv_target *t, const nfv_vis_options *o, int with_overlay, const char *dir,
                                    int *complete)
{
    char stem[160], path[4200];
    nfv_target_stem(t, stem, sizeof stem);
    *complete = 0;
    /* What nfv_vis_write writes for this target and these options, the JSON log last. */
    const char *always[] = {".nii.gz", "_ortho.png", "_mosaic.png", ".json"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, stem, always[i]);
        if (!exists(path)) return NFV_OK;
    }
    const char *optional[] = {"_change.nii.gz", "_overlay.png", "_importance.nii.gz", "_importance.png"};
    int wanted[] = {o->init == NFV_VIS_INIT_TEMPLATE, with_overlay, o->importance, o->importance};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, stem, optional[i]);
        if (wanted[i] && !exists(path)) return NFV_OK;
    }
    snprintf(path, sizeof path, "%s/%s.gif", dir, stem);
    if (o->gif && !exists(path)) return NFV_OK;
    for (int s = 0; s < o->snapshot_count && !o->snapshots_auto; s++) {
        if (o->snapshots[s] < 0 || o->snapshots[s] > o->steps) continue; /* never taken */
        snprintf(path, sizeof path, "%s/%s_step%d.nii.gz", dir, stem, o->snapshots[s]);
        if (!exists(path)) return NFV_OK;
    }
    /* Complete; but outputs of another target or other options are not this run's. */
    snprintf(path, sizeof path, "%s/%s.json", dir, stem);
    char *text = read_text(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) return nfv_fail(NFV_ERR_FORMAT, "--resume: %s is not a visualization log (not JSON)", path);
    const cJSON *tg = cJSON_GetObjectItemCaseSensitive(j, "target");
    cJSON *want = options_json(o);
    int same_target = cJSON_IsString(tg) && !strcmp(tg->valuestring, t->name);
    int same_options = want && cJSON_Compare(cJSON_GetObjectItemCaseSensitive(j, "options"), want, 1);
    cJSON_Delete(want);
    cJSON_Delete(j);
    if (!same_target || !same_options)
        return nfv_fail(NFV_ERR_INVALID_ARG,
                        "--resume: %s was written %s; resume with the options of the interrupted run, or write to "
                        "another --out",
                        path, same_target ? "with other options" : "for another target");
    *complete = 1;
    return NFV_OK;
}

static double json_number(const cJSON *j, const char *key, const char *path, nfv_status *st)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (cJSON_IsNumber(v)) return v->valuedouble;
    if (!*st) *st = nfv_fail(NFV_ERR_FORMAT, "--resume: %s has no number \"%s\"", path, key);
    return 0.0;
}

/* dir/<stem><suffix> into v, on the model grid with the model's affine. */
static nfv_status read_volume(const nfv_model *m, const char *dir, const char *stem, const char *suffix, nfv_volume *v)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, stem, suffix);
    NFV_TRY(nfv_volume_read(path, v, NULL));
    if (v->nx != m->input_shape[3] || v->ny != m->input_shape[2] || v->nz != m->input_shape[1]) {
        nfv_volume_free(v);
        return nfv_fail(NFV_ERR_FORMAT, "--resume: %s is %dx%dx%d, not the model grid %dx%dx%d", path, v->nx, v->ny,
                        v->nz, m->input_shape[3], m->input_shape[2], m->input_shape[1]);
    }
    /* The file's affine went through the header; the run's was the model's. */
    memcpy(v->affine, m->affine, sizeof v->affine);
    return NFV_OK;
}

nfv_status nfv_vis_result_read(const nfv_model *m, const nfv_target *t, const nfv_vis_options *o, const char *dir,
                               nfv_vis_result *r)
{
    char stem[160], path[4200];
    memset(r, 0, sizeof *r);
    r->target = *t;
    nfv_target_stem(t, stem, sizeof stem);
    snprintf(path, sizeof path, "%s/%s.json", dir, stem);
    char *text = read_text(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) return nfv_fail(NFV_ERR_FORMAT, "--resume: cannot read %s as JSON", path);
    nfv_status st = NFV_OK;
    /* The log's numbers are the floats' exact values (cJSON prints 17 digits when 15 do not round-trip). */
    r->objective = (float)json_number(j, "objective", path, &st);
    r->objective_clean = (float)json_number(j, "objective_without_transforms", path, &st);
    r->best_start = (int)json_number(j, "best_start", path, &st);
    r->seconds = json_number(j, "seconds", path, &st);
    cJSON_Delete(j);
    if (!st) st = read_volume(m, dir, stem, ".nii.gz", &r->volume);
    if (!st && o->init == NFV_VIS_INIT_TEMPLATE) st = read_volume(m, dir, stem, "_change.nii.gz", &r->change);
    if (st) {
        nfv_volume_free(&r->volume);
        nfv_volume_free(&r->change);
    }
    return st;
}
