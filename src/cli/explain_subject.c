/* One subject of `neurofv explain`: read and preprocessed, its target, its
 * maps written in its own space (NIfTI + PNG) and scored against its lesion,
 * added to the per-class means.  The run around it: cmd_explain.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "explain_cli.h"
#include "neurofv/render.h"

/* The model grid as a preprocessing target. */
nfv_grid model_grid(const nfv_model *m)
{
    nfv_grid g = {m->input_shape[3], m->input_shape[2], m->input_shape[1],
                  {m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]}, m->norm};
    return g;
}

nfv_status load_subject(const nfv_model *m, subject *s)
{
    NFV_TRY(nfv_volume_read(s->path, &s->orig, NULL));
    nfv_grid g = model_grid(m);
    nfv_status st = nfv_preprocess(&s->orig, &g, &s->pre);
    return st ? nfv_fail_context(st, "%s", s->path) : NFV_OK;
}

void free_subject(subject *s)
{
    nfv_volume_free(&s->orig);
    nfv_volume_free(&s->pre);
}

/* The target of a subject: "label" (its class), "predicted" (the model's
 * class, from output), or a target text. */
nfv_status resolve_target(explain_run *r, subject *s, const float *output)
{
    const char *t = r->a->target;
    char text[300];
    if (!strcmp(t, "label") || !strcmp(t, "predicted")) {
        if (r->m->head == NFV_HEAD_REGRESSION) {
            snprintf(text, sizeof text, "output");
        } else if (!strcmp(t, "label")) {
            if (!s->label) return nfv_fail(NFV_ERR_INVALID_ARG, "--target label needs --data (a single --input has no label)");
            snprintf(text, sizeof text, "logit:%s", s->label);
        } else {
            snprintf(text, sizeof text, "logit:%s", r->m->class_names[nfv_model_predict_class(r->m, output)]);
        }
    } else {
        snprintf(text, sizeof text, "%s", t);
    }
    nfv_target *ts = NULL;
    int n = 0;
    nfv_status st = nfv_target_parse(r->m, text, &ts, &n);
    if (!st && n != 1) st = nfv_fail(NFV_ERR_INVALID_ARG, "--target %s names %d targets; explain takes one", text, n);
    if (!st) s->target = ts[0];
    free(ts);
    return st ? nfv_fail_context(st, "%s", s->path) : NFV_OK;
}

/* Index of the subject's class for the mean maps (classes = none/unknown). */
int class_of(const explain_run *r, const subject *s)
{
    for (int c = 0; s->label && c < r->m->class_count; c++)
        if (!strcmp(r->m->class_names[c], s->label)) return c;
    return r->classes;
}

nfv_status add_picture(explain_run *r, const char *rel, const char *caption, const char *background)
{
    if (r->npictures == MAX_PICTURES) return NFV_OK;
    r->pictures[r->npictures] = strdup(rel);
    r->captions[r->npictures] = strdup(caption);
    r->backgrounds[r->npictures] = strdup(background);
    if (!r->pictures[r->npictures] || !r->captions[r->npictures] || !r->backgrounds[r->npictures])
        return nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    r->npictures++;
    return NFV_OK;
}

/* Sagittal | coronal | axial through the voxel of largest |v|, v as a hot/cold
 * overlay on background. */
nfv_status explain_overlay_png(const nfv_volume *v, const nfv_volume *background, const char *path)
{
    size_t n = nfv_volume_numel(v), best = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(v->data[i]) > fabsf(v->data[best])) best = i;
    double ijk[3] = {(double)(best % v->nx), (double)((best / v->nx) % v->ny), (double)(best / ((size_t)v->nx * v->ny))};
    double at[3];
    for (int a = 0; a < 3; a++)
        at[a] = v->affine[a][0] * ijk[0] + v->affine[a][1] * ijk[1] + v->affine[a][2] * ijk[2] + v->affine[a][3];
    nfv_render_options ro;
    nfv_render_options_default(&ro);
    ro.background = background;
    nfv_image im = {0, 0, NULL};
    nfv_status st = nfv_render_ortho(v, &ro, at, &im);
    if (!st) st = nfv_image_write_png(path, &im);
    nfv_image_free(&im);
    return st;
}

/* The subject's lesion mask from the synthetic cohort (truth/lesion_masks/
 * <file name>) on the subject's grid; *found = 0 when it has none. */
static nfv_status lesion_mask(const explain_run *r, const subject *s, nfv_volume *mask, int *found)
{
    char path[4096];
    const char *b = strrchr(s->path, '/');
    snprintf(path, sizeof path, "%s/lesion_masks/%s", r->a->truth, b ? b + 1 : s->path);
    *found = access(path, R_OK) == 0;
    if (!*found) return NFV_OK;
    nfv_volume raw;
    NFV_TRY(nfv_volume_read(path, &raw, NULL));
    nfv_status st = nfv_volume_resample_to(&raw, s->orig.nx, s->orig.ny, s->orig.nz, s->orig.affine, 0, mask);
    nfv_volume_free(&raw);
    return st;
}

/* ORs a subject's lesion mask (its grid) into its class's region on the model grid. */
static nfv_status add_region(explain_run *r, const subject *s, const nfv_volume *mask)
{
    int c = class_of(r, s);
    if (!r->regions || c >= r->classes) return NFV_OK;
    nfv_volume *reg = &r->regions[c], on;
    if (!reg->nx) {
        NFV_TRY(nfv_volume_clone(&s->pre, reg));
        memset(reg->data, 0, nfv_volume_numel(reg) * sizeof *reg->data);
    }
    NFV_TRY(nfv_volume_resample_to(mask, reg->nx, reg->ny, reg->nz, reg->affine, 0, &on));
    for (size_t i = 0; i < nfv_volume_numel(reg); i++) reg->data[i] = reg->data[i] > 0.5f || on.data[i] > 0.5f;
    nfv_volume_free(&on);
    return NFV_OK;
}

/* One subject's map of method k: NIfTI and PNG in the subject's space,
 * scores against its lesion, its row of subjects.csv. */
nfv_status subject_outputs(explain_run *r, const subject *s, int k, const float *map, float objective)
{
    const char *name = nfv_explain_method_name(r->a->method[k]);
    nfv_volume grid = s->pre, in_subject;
    grid.data = (float *)map;
    NFV_TRY(nfv_volume_resample_to(&grid, s->orig.nx, s->orig.ny, s->orig.nz, s->orig.affine, 0, &in_subject));
    in_subject.sform_code = s->orig.sform_code, in_subject.qform_code = s->orig.qform_code;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", r->a->out, s->stem);
    nfv_status st = nfv_mkdirs(dir);
    snprintf(path, sizeof path, "%s/%s.nii.gz", dir, name);
    if (!st) st = nfv_volume_write(path, &in_subject);
    snprintf(path, sizeof path, "%s/%s.png", dir, name);
    if (!st) st = explain_overlay_png(&in_subject, &s->orig, path);
    if (!st && s->first) {
        char rel[600], cap[600];
        snprintf(rel, sizeof rel, "%s%s/%s.png", strcmp(r->report_dir, r->a->out) ? "../" : "", s->stem, name);
        snprintf(cap, sizeof cap, "%s: %s, %s", s->stem, name, s->target.name);
        st = add_picture(r, rel, cap, s->path);
    }
    double mass = NAN;
    int hit = -1, found = 0;
    nfv_volume mask = {0};
    if (!st && r->a->truth) st = lesion_mask(r, s, &mask, &found);
    if (!st && found) {
        size_t n = nfv_volume_numel(&in_subject), lesion = 0, brain = 0;
        mass = nfv_explain_mass_in(in_subject.data, mask.data, n);
        hit = nfv_explain_pointing(in_subject.data, mask.data, n);
        for (size_t i = 0; i < n; i++) lesion += mask.data[i] > 0.5f, brain += s->orig.data[i] != 0;
        if (k == 0) {
            r->sum.chance += brain ? (double)lesion / brain : 0, r->sum.scored++;
            st = add_region(r, s, &mask);
        }
        r->sum.mass[k] += mass, r->sum.mass_sq[k] += mass * mass, r->sum.hits[k] += hit;
    }
    if (!st)
        fprintf(r->subjects_csv, "%s,%s,%s,%s,%.6g,%.4f,%d\n", s->path, s->label ? s->label : "", s->target.name, name,
                (double)objective, mass, hit);
    nfv_volume_free(&mask);
    nfv_volume_free(&in_subject);
    return st ? nfv_fail_context(st, "%s of %s", name, s->path) : NFV_OK;
}

/* Spearman correlations of |maps| between every pair of methods for one
 * subject, over its brain voxels on the model grid. */
void add_spearman(explain_run *r, const subject *s, float *const *maps)
{
    size_t n = nfv_volume_numel(&s->pre);
    for (int a = 0; a < r->a->nmethods; a++) {
        r->sum.spearman[a][a] += 1.0;
        for (int b = a + 1; b < r->a->nmethods; b++) {
            double rho = nfv_explain_spearman(maps[a], maps[b], s->pre.data, n);
            r->sum.spearman[a][b] += rho, r->sum.spearman[b][a] += rho;
        }
    }
    r->sum.spearman_n++;
}

/* Adds subject s's map of method k to its class's mean and the overall mean. */
void add_mean(explain_run *r, const subject *s, int k, const float *map)
{
    size_t per = nfv_volume_numel(&s->pre);
    int c = class_of(r, s);
    double *cls = r->mean_sum + ((size_t)k * (r->classes + 1) + c) * per;
    double *all = r->mean_sum + ((size_t)k * (r->classes + 1) + r->classes) * per;
    for (size_t v = 0; v < per; v++) all[v] += map[v];
    if (c < r->classes)
        for (size_t v = 0; v < per; v++) cls[v] += map[v];
}

