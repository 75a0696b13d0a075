/* Outputs of a visualization: the volume as NIfTI (the model's affine),
 * orthogonal slices, an axial mosaic, an overlay on the template, a grid for
 * sweeps, and a JSON log.  Every file goes to a temporary name, then rename(). */
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
    static const char *params[] = {"voxel", "fourier", "dct"};
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
    if (o->init == NFV_VIS_INIT_TEMPLATE) cJSON_AddStringToObject(j, "init_template", o->init_path);
    cJSON_AddNumberToObject(j, "l1", o->l1);
    cJSON_AddNumberToObject(j, "l2", o->l2);
    cJSON_AddNumberToObject(j, "tv", o->tv);
    cJSON_AddNumberToObject(j, "blur", o->blur_sigma);
    cJSON_AddNumberToObject(j, "blur_every", o->blur_every);
    cJSON_AddNumberToObject(j, "jitter", o->jitter);
    cJSON_AddNumberToObject(j, "scale_min", o->scale_min);
    cJSON_AddNumberToObject(j, "scale_max", o->scale_max);
    cJSON_AddNumberToObject(j, "rotate_deg", o->rotate_deg);
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
    for (int s = 0; s < r->snapshot_count; s++) {
        snprintf(path, sizeof path, "%s/%s_step%d.nii.gz", dir, stem, r->snapshot_step[s]);
        NFV_TRY(nfv_volume_write(path, &r->snapshot[s]));
    }

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
