/* Concept recovery against a synthetic lesion cohort's ground truth
 * (`compare --truth DIR`): the shape templates, the NCC score of a picture
 * against each, and what the cohort's real lesions score (the reference a
 * picture's margin is read against).  See include/neurofv/compare.h. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/parallel.h"
#include "neurofv/compare.h"
#include "neurofv/synth.h"
#include "neurofv/vis_ops.h"
#include "vis/vis_internal.h"

void nfv_truth_free(nfv_truth *t)
{
    for (int i = 0; i < t->count; i++) free(t->names[i]);
    for (int i = 0; t->shapes && i < t->count * t->sizes; i++) nfv_volume_free(&t->shapes[i]);
    free(t->names);
    free(t->shapes);
    free(t->size_mm);
    nfv_volume_free(&t->mask);
    memset(t, 0, sizeof *t);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* DIR/cohort.json, parsed; *out NULL when there is none (a cohort from
 * another generator may have none). */
static nfv_status cohort_json(const char *dir, cJSON **out)
{
    *out = NULL;
    char path[4096], *text = NULL;
    snprintf(path, sizeof path, "%s/cohort.json", dir);
    int missing = 0;
    nfv_status st = nfv_read_file(path, 1 << 20, &text, NULL, &missing);
    if (st) return missing ? NFV_OK : st;
    *out = cJSON_Parse(text);
    free(text);
    return *out ? NFV_OK : nfv_fail(NFV_ERR_FORMAT, "--truth: %s is not valid JSON", path);
}

/* A [lo, hi] number pair of j, or 0. */
static int number_pair(const cJSON *j, const char *key, double out[2])
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(a, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(a, 1)))
        return 0;
    out[0] = cJSON_GetArrayItem(a, 0)->valuedouble;
    out[1] = cJSON_GetArrayItem(a, 1)->valuedouble;
    return 1;
}

/* The templates of shape i: with the cohort's lesion size range (mm;
 * times cohort.json's size_scale[name]) the synth shape painted at the
 * smallest, middle and largest size on the model's isotropic voxel; without
 * it (range NULL) shapes/<name>.nii.gz brought to the model's voxel size. */
static nfv_status load_templates(const nfv_model *m, const char *dir, const cJSON *cohort, const double *range,
                                 nfv_truth *t, int i)
{
    nfv_volume *out = &t->shapes[(size_t)i * t->sizes];
    double *size = &t->size_mm[(size_t)i * t->sizes];
    if (range) {
        nfv_shape shape;
        NFV_TRY(nfv_synth_shape_parse(t->names[i], &shape));
        const cJSON *scale = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cohort, "size_scale"),
                                                              t->names[i]);
        double f = cJSON_IsNumber(scale) ? scale->valuedouble : 1.0;
        for (int k = 0; k < t->sizes; k++) {
            size[k] = f * (range[0] + (range[1] - range[0]) * k / (t->sizes - 1));
            NFV_TRY(nfv_synth_shape_template(shape, size[k], m->voxel_mm[0], &out[k]));
        }
        return NFV_OK;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/shapes/%s.nii.gz", dir, t->names[i]);
    nfv_volume v;
    NFV_TRY(nfv_volume_read(path, &v, NULL));
    size[0] = 0.0;
    /* The template at the model's voxel size (synth writes the cohort's). */
    double vx = fabs(v.affine[0][0]) + fabs(v.affine[1][0]) + fabs(v.affine[2][0]);
    if (fabs(vx - m->voxel_mm[0]) <= 1e-3) {
        *out = v;
        return NFV_OK;
    }
    nfv_status st = nfv_volume_resample(&v, m->voxel_mm, out);
    nfv_volume_free(&v);
    return st;
}

/* The shape names: the stems of DIR/shapes/ *.nii.gz, sorted. */
static nfv_status shape_names(const char *dir, nfv_truth *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shapes", dir);
    DIR *d = opendir(path);
    if (!d)
        return nfv_fail(NFV_ERR_IO, "--truth %s: no shapes/ directory (%s); expected a `neurofv synth --task lesion` output",
                        dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 7 || strcmp(e->d_name + len - 7, ".nii.gz")) continue;
        char **p = realloc(out->names, (size_t)(out->count + 1) * sizeof *p);
        char *name = malloc(len - 6);
        if (!p || !name) {
            if (p) out->names = p;
            free(name);
            closedir(d);
            return nfv_fail(NFV_ERR_NO_MEMORY, "truth: out of memory");
        }
        out->names = p;
        memcpy(name, e->d_name, len - 7);
        name[len - 7] = 0;
        out->names[out->count++] = name;
    }
    closedir(d);
    if (out->count == 0) return nfv_fail(NFV_ERR_FORMAT, "--truth %s: shapes/ holds no .nii.gz shape templates", dir);
    qsort(out->names, (size_t)out->count, sizeof *out->names, cmp_str);
    return NFV_OK;
}

nfv_status nfv_truth_load(const nfv_model *m, const char *dir, nfv_truth *out)
{
    memset(out, 0, sizeof *out);
    nfv_status st = shape_names(dir, out);
    if (st) {
        nfv_truth_free(out);
        return st;
    }
    cJSON *cohort = NULL;
    st = cohort_json(dir, &cohort);
    if (st) {
        nfv_truth_free(out);
        return st;
    }
    /* Polarity from cohort.json's lesion_intensity (multiples of the
     * white-matter intensity): +1 when their mean is >= 1 (bright lesions,
     * synth's default), else -1.  A cohort without cohort.json is taken as bright. */
    double pair[2];
    out->polarity = number_pair(cohort, "lesion_intensity", pair) && 0.5 * (pair[0] + pair[1]) < 1.0 ? -1 : 1;
    /* Lesions of several sizes are scored against templates of several
     * sizes: one middle-sized template scored real 19-26 mm cube lesions
     * (3 mm grid) below the sphere's template in 7 of 20. */
    double range[2];
    int sized = number_pair(cohort, "lesion_size_mm", range) && range[0] > 0 && range[1] > range[0] &&
                fabs(m->voxel_mm[1] - m->voxel_mm[0]) < 1e-3 && fabs(m->voxel_mm[2] - m->voxel_mm[0]) < 1e-3;
    for (int i = 0; i < out->count && sized; i++) {
        nfv_shape shape; /* a shape synth does not draw (another generator's) keeps its file */
        sized = nfv_synth_shape_parse(out->names[i], &shape) == NFV_OK;
    }
    out->sizes = sized ? NFV_TRUTH_SIZES : 1;
    out->shapes = calloc((size_t)out->count * out->sizes, sizeof *out->shapes);
    out->size_mm = calloc((size_t)out->count * out->sizes, sizeof *out->size_mm);
    if (!out->shapes || !out->size_mm) st = nfv_fail(NFV_ERR_NO_MEMORY, "truth: out of memory");
    for (int i = 0; i < out->count && !st; i++) st = load_templates(m, dir, cohort, sized ? range : NULL, out, i);
    cJSON_Delete(cohort);
    if (!st) {
        nfv_volume mk;
        char path[4096];
        snprintf(path, sizeof path, "%s/mask.nii.gz", dir);
        st = nfv_volume_read(path, &mk, NULL);
        if (!st) {
            st = nfv_volume_resample_to(&mk, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                                        (const double(*)[4])m->affine, 0.0f, &out->mask);
            nfv_volume_free(&mk);
        }
    }
    if (st) {
        nfv_truth_free(out);
        return nfv_fail_context(st, "--truth %s", dir);
    }
    for (size_t i = 0; i < nfv_volume_numel(&out->mask); i++) out->mask.data[i] = out->mask.data[i] > 0.5f;
    return NFV_OK;
}

/* One template's search, for nfv_parallel_for over (shape, size). */
typedef struct template_search {
    const nfv_truth *t;
    const float *vol; /* polarity * picture (D, H, W) */
    int dims[3];
    nfv_ncc_result *res; /* (count, sizes) */
} template_search;

static nfv_status search_one(void *ctx, int index)
{
    template_search *ts = ctx;
    const nfv_volume *s = &ts->t->shapes[index];
    int td[3] = {s->nz, s->ny, s->nx};
    return nfv_ncc_search(ts->vol, ts->dims, ts->t->mask.data, s->data, td, &ts->res[index]);
}

nfv_status nfv_truth_scores(const nfv_truth *t, const nfv_volume *vis, double *score, int (*pos)[3])
{
    size_t n = nfv_volume_numel(vis);
    if (n != nfv_volume_numel(&t->mask))
        return nfv_fail(NFV_ERR_INVALID_ARG, "truth scores: the visualization (%dx%dx%d) is not on the mask's grid",
                        vis->nx, vis->ny, vis->nz);
    int ntemplates = t->count * t->sizes;
    float *neg = malloc(n * sizeof *neg);
    nfv_ncc_result *res = malloc((size_t)ntemplates * sizeof *res);
    if (!neg || !res) {
        free(neg);
        free(res);
        return nfv_fail(NFV_ERR_NO_MEMORY, "truth scores: out of memory");
    }
    for (size_t i = 0; i < n; i++) neg[i] = (float)t->polarity * vis->data[i];
    /* Every (shape, size) search on its own core: 9 searches of a 2 mm
     * picture take seconds on one. */
    template_search ts = {t, neg, {vis->nz, vis->ny, vis->nx}, res};
    nfv_status st = nfv_parallel_for(ntemplates, 0, search_one, &ts);
    for (int i = 0; i < t->count && !st; i++) {
        score[i] = -3.0; /* below nfv_ncc_search's -2 for "no valid position": the first size always sets pos */
        for (int k = 0; k < t->sizes; k++) {
            const nfv_ncc_result *r = &res[i * t->sizes + k];
            if (r->score <= score[i]) continue;
            score[i] = r->score;
            if (pos) {
                /* nfv_ncc_search reports (z, y, x) = (k, j, i). */
                pos[i][0] = r->pos[2];
                pos[i][1] = r->pos[1];
                pos[i][2] = r->pos[0];
            }
        }
    }
    free(neg);
    free(res);
    return st;
}

/* Scores one subject's lesion mask (DIR/lesion_masks/<file name>) as a
 * picture; *found = 0 when the cohort has none for it. */
static nfv_status score_lesion(const nfv_model *m, const nfv_truth *t, const char *dir, const char *subject,
                               double *score, int *found)
{
    char path[4200];
    const char *b = strrchr(subject, '/');
    snprintf(path, sizeof path, "%s/lesion_masks/%s", dir, b ? b + 1 : subject);
    *found = access(path, R_OK) == 0;
    if (!*found) return NFV_OK;
    nfv_volume raw, on;
    NFV_TRY(nfv_volume_read(path, &raw, NULL));
    nfv_status st = nfv_volume_resample_to(&raw, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                                           (const double(*)[4])m->affine, 0.0f, &on);
    nfv_volume_free(&raw);
    if (st) return nfv_fail_context(st, "lesion mask %s", path);
    /* The scorer multiplies by the polarity: a dark cohort's mask is drawn dark. */
    for (size_t i = 0; i < nfv_volume_numel(&on); i++) on.data[i] *= (float)t->polarity;
    st = nfv_truth_scores(t, &on, score, NULL);
    nfv_volume_free(&on);
    return st;
}

nfv_status nfv_truth_reference(const nfv_model *m, const nfv_truth *t, const char *dir, int per_class,
                               nfv_truth_reference_row *rows)
{
    for (int c = 0; c < t->count; c++) {
        memset(&rows[c], 0, sizeof rows[c]);
        snprintf(rows[c].name, sizeof rows[c].name, "%s", t->names[c]);
        rows[c].own_median = rows[c].margin_median = rows[c].margin_min = NAN;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    if (access(path, R_OK) != 0 || t->count < 2) return NFV_OK;
    nfv_dataset ds;
    nfv_status lst = nfv_dataset_load(path, &ds);
    if (lst) return nfv_fail_context(lst, "--truth %s: real-lesion reference", dir);
    size_t cap = (size_t)t->count * (size_t)per_class;
    double *own = malloc(cap * sizeof *own), *margin = malloc(cap * sizeof *margin);
    double *score = malloc((size_t)t->count * sizeof *score);
    nfv_status st = own && margin && score ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "truth reference: out of memory");
    /* The test split first (subjects no model trained on), then the others. */
    for (int pass = 0; pass < 2 && !st; pass++)
        for (int r = 0; r < ds.count && !st; r++) {
            if ((ds.rows[r].split == NFV_SPLIT_TEST) != (pass == 0)) continue;
            int c = 0;
            while (c < t->count && strcmp(t->names[c], ds.rows[r].label)) c++;
            if (c == t->count || rows[c].subjects >= per_class) continue;
            int found;
            st = score_lesion(m, t, dir, ds.rows[r].path, score, &found);
            if (st || !found) continue;
            double other = -2.0;
            for (int s = 0; s < t->count; s++)
                if (s != c && score[s] > other) other = score[s];
            size_t at = (size_t)c * per_class + (size_t)rows[c].subjects++;
            own[at] = score[c];
            margin[at] = score[c] - other;
            rows[c].recovered += margin[at] > 0;
            rows[c].clear += margin[at] > NFV_TRUTH_CLEAR_MARGIN;
        }
    for (int c = 0; c < t->count && !st; c++) {
        double *mo = own + (size_t)c * per_class, *mm = margin + (size_t)c * per_class;
        int n = rows[c].subjects;
        if (!n) continue;
        rows[c].own_median = nfv_median_sort(mo, n);
        rows[c].margin_median = nfv_median_sort(mm, n);
        rows[c].margin_min = mm[0]; /* sorted by nfv_median_sort */
    }
    free(own);
    free(margin);
    free(score);
    nfv_dataset_free(&ds);
    return st ? nfv_fail_context(st, "--truth %s: real-lesion reference", dir) : NFV_OK;
}

nfv_status nfv_truth_mask_control(const nfv_model *m, const nfv_truth *t, const char *mask_spec, double *score)
{
    float *mask = NULL;
    nfv_status mst = vis_mask_on_grid(m, mask_spec, &mask);
    if (mst) return nfv_fail_context(mst, "the mask %s alone", mask_spec);
    nfv_volume v;
    nfv_status st = nfv_volume_alloc(&v, m->input_shape[3], m->input_shape[2], m->input_shape[1],
                                     (const double(*)[4])m->affine);
    if (!st) {
        for (size_t i = 0; i < nfv_volume_numel(&v); i++) v.data[i] = (float)t->polarity * mask[i];
        st = nfv_truth_scores(t, &v, score, NULL);
        nfv_volume_free(&v);
    }
    free(mask);
    return st ? nfv_fail_context(st, "the mask %s alone", mask_spec) : NFV_OK;
}
