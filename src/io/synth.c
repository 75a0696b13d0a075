/* Synthetic cohorts from one template brain; see include/neurofv/synth.h.
 *
 * This file runs the cohort: options, labels and stratified splits, the
 * worker threads and the files (labels.csv, cohort.json, template, mask,
 * shape templates, one volume and lesion mask per subject).  The anatomy of
 * each subject is made in synth_anatomy.c, its lesion in synth_lesion.c.
 * Subjects are spread over threads; each draws its randomness from its own
 * stream (seed, subject index), so bytes do not depend on the thread count. */
#include "base/interrupt.h"
#include "io/synth_internal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/affine.h"
#include "base/fs.h"
#include "base/parallel.h"

/* Streams of the one host RNG (base/rng.h) per subject, labels and split. */
enum { STREAM_SUBJECT = 1, STREAM_LABELS = 2, STREAM_SPLIT = 3 };

/* ---- Options ---------------------------------------------------------------- */

void nfv_synth_options_default(nfv_synth_options *o)
{
    memset(o, 0, sizeof *o);
    o->task = NFV_SYNTH_LESION;
    o->n = 600;
    o->voxel_mm = 2.0;
    o->seed = 1;
    /* Lesions 16-22 mm at 1.5-1.8x the white-matter intensity.  Measured:
     * with 8-14 mm lesions 30-60 % darker than white matter (the first
     * version), and with 16-22 mm lesions 50-80 % darker, ref4 on 420
     * training subjects stayed at chance, in neurofv and in PyTorch alike: a
     * dark blob in a T1 looks like CSF or a sulcus.  A hyper-intense lesion
     * is unique in the brain, so the network can find it and learn its
     * shape (--lesion-intensity 0.2,0.5 gives the dark kind). */
    o->lesion_size_mm[0] = 16.0;
    o->lesion_size_mm[1] = 22.0;
    o->lesion_intensity[0] = 1.5;
    o->lesion_intensity[1] = 1.8;
    o->split[0] = 70;
    o->split[1] = 15;
    o->split[2] = 15;
}

nfv_status nfv_synth_split_parse(const char *s, double split[3])
{
    double v[3];
    char tail;
    if (!s || sscanf(s, "%lf/%lf/%lf%c", &v[0], &v[1], &v[2], &tail) != 3 || v[0] < 0 || v[1] < 0 || v[2] < 0 ||
        !(v[0] + v[1] + v[2] > 0) || !isfinite(v[0] + v[1] + v[2]))
        return nfv_fail(NFV_ERR_INVALID_ARG, "split \"%s\" is not TRAIN/VAL/TEST (e.g. 70/15/15)", s ? s : "");
    for (int i = 0; i < 3; i++) split[i] = v[i];
    return NFV_OK;
}

/* nfv_volume_write compresses at zlib's default level 6, which costs ~4x
 * level 1 on noisy volumes and dominated the run time; so write a plain .nii
 * through it (temporary name) and gzip that at level 1 into place. zlib's
 * gzip header has mtime 0, so the bytes stay deterministic. */
static nfv_status write_volume_fast(const char *path, const nfv_volume *v)
{
    size_t len = strlen(path);
    if (len < 7 || strcmp(path + len - 7, ".nii.gz") != 0) return nfv_volume_write(path, v);
    char plain[4200], gz[4200];
    snprintf(plain, sizeof plain, "%.*s.plain%ld_%lx.nii", (int)(len - 7), path, (long)getpid(),
             (unsigned long)pthread_self());
    snprintf(gz, sizeof gz, "%s.tmp%ld_%lx", path, (long)getpid(), (unsigned long)pthread_self());
    NFV_TRY(nfv_volume_write(plain, v));
    nfv_status s = NFV_OK;
    FILE *in = fopen(plain, "rb");
    gzFile out = in ? gzopen(gz, "wb1") : NULL;
    if (!in || !out) {
        s = nfv_fail(NFV_ERR_IO, "cannot write %s: %s", in ? gz : plain, strerror(errno));
    } else {
        static _Thread_local char buf[1 << 16];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, in)) > 0)
            if (gzwrite(out, buf, (unsigned)got) != (int)got) {
                s = nfv_fail(NFV_ERR_IO, "writing %s failed (disk full?)", gz);
                break;
            }
        if (s == NFV_OK && ferror(in)) s = nfv_fail(NFV_ERR_IO, "reading back %s failed", plain);
    }
    if (in) fclose(in);
    if (out && gzclose(out) != Z_OK && s == NFV_OK) s = nfv_fail(NFV_ERR_IO, "writing %s failed (disk full?)", gz);
    unlink(plain);
    return nfv_rename_into_place(s, gz, path);
}

static void subject_path(char *buf, size_t cap, const char *dir, const char *sub, int index)
{
    if (sub) snprintf(buf, cap, "%s/%s/sub-%04d.nii.gz", dir, sub, index + 1);
    else snprintf(buf, cap, "%s/sub-%04d.nii.gz", dir, index + 1);
}

static nfv_status make_subject(const synth_shared *sh, synth_work *w, int index, const bspline_axis ax[3])
{
    const nfv_synth_options *o = sh->o;
    nfv_rng r;
    nfv_rng_seed(&r, o->seed, STREAM_SUBJECT, (uint64_t)index);
    int cls = sh->label[index];
    synth_age_params age, *agep = NULL;
    if (o->task == NFV_SYNTH_AGE) { /* gap and ventricle factor: the stream's first draws */
        nfv_synth_age_subject(sh, &r, sh->age_years[index], &age);
        agep = &age;
    }
    nfv_synth_warp_subject(sh, w, &r, o->task == NFV_SYNTH_MORPH && cls == 1, agep, ax);
    char path[4096];
    if (o->task == NFV_SYNTH_LESION) {
        memset(w->lesion.data, 0, nfv_volume_numel(&w->lesion) * sizeof(float));
        if (sh->class_shape[cls] != NFV_SHAPE_COUNT) nfv_synth_plant_lesion(sh, w, &r, sh->class_shape[cls]);
        subject_path(path, sizeof path, o->out_dir, "lesion_masks", index);
        NFV_TRY(write_volume_fast(path, &w->lesion));
    }
    nfv_synth_finish_subject(sh, w, &r);
    subject_path(path, sizeof path, o->out_dir, NULL, index);
    return write_volume_fast(path, &w->out);
}

static void work_free(synth_work *w)
{
    free(w->clean);
    free(w->brain);
    free(w->wm);
    free(w->wm_eroded);
    free(w->candidates);
    free(w->g1);
    free(w->g2);
    free(w->disp);
    nfv_volume_free(&w->out);
    nfv_volume_free(&w->lesion);
}

static nfv_status work_alloc(const synth_shared *sh, synth_work *w, const bspline_axis ax[3])
{
    memset(w, 0, sizeof *w);
    const nfv_volume *g = &sh->grid;
    size_t n = nfv_volume_numel(g), plane = (size_t)g->nx * g->ny;
    size_t g1 = 3 * (size_t)ax[2].nc * ax[1].nc * g->nx + 3 * (size_t)ax[0].nc * ax[1].nc * ax[2].nc;
    w->clean = malloc(n * sizeof *w->clean);
    w->brain = malloc(n);
    w->wm = malloc(n);
    w->wm_eroded = malloc(n);
    w->candidates = malloc(n * sizeof *w->candidates);
    w->g1 = malloc(g1 * sizeof *w->g1);
    w->g2 = malloc(3 * (size_t)ax[2].nc * plane * sizeof *w->g2);
    w->disp = malloc(3 * plane * sizeof *w->disp);
    if (!w->clean || !w->brain || !w->wm || !w->wm_eroded || !w->candidates || !w->g1 || !w->g2 || !w->disp) {
        work_free(w);
        return nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory for a subject's buffers");
    }
    nfv_status s = nfv_volume_clone(g, &w->out);
    if (s == NFV_OK) s = nfv_volume_clone(g, &w->lesion);
    if (s != NFV_OK) work_free(w);
    return s;
}

/* One subject, with buffers of its own (a few MB, small next to the
 * subject's work), for nfv_parallel_for. */
typedef struct subject_job {
    synth_shared *sh;
    const bspline_axis *ax;
} subject_job;

static nfv_status make_one_subject(void *p, int index)
{
    const subject_job *job = p;
    synth_shared *sh = job->sh;
    /* Between subjects no file is open: a safe point to stop. */
    if (nfv_interrupted()) {
        pthread_mutex_lock(&sh->mu);
        int done = sh->done;
        pthread_mutex_unlock(&sh->mu);
        return nfv_interrupt_check("after %d of %d subjects (labels.csv not written)", done, sh->o->n);
    }
    synth_work w;
    NFV_TRY(work_alloc(sh, &w, job->ax));
    nfv_status s = make_subject(sh, &w, index, job->ax);
    work_free(&w);
    if (s != NFV_OK) return nfv_fail_context(s, "subject %d", index + 1);
    pthread_mutex_lock(&sh->mu);
    sh->done++;
    if (sh->o->progress) sh->o->progress(sh->o->progress_user, sh->done, sh->o->n);
    pthread_mutex_unlock(&sh->mu);
    return NFV_OK;
}

/* ---- Cohort-level files ------------------------------------------------------ */

static nfv_status write_labels(const synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    char path[4096];
    snprintf(path, sizeof path, "%s/labels.csv", o->out_dir);
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    FILE *f = af.f;
    static const char *split_names[3] = {"train", "val", "test"};
    fprintf(f, "path,label,split\n");
    for (int i = 0; i < o->n; i++) {
        if (o->task == NFV_SYNTH_AGE)
            fprintf(f, "sub-%04d.nii.gz,%.1f,%s\n", i + 1, sh->age_years[i], split_names[sh->split[i]]);
        else
            fprintf(f, "sub-%04d.nii.gz,%s,%s\n", i + 1, sh->class_names[sh->label[i]], split_names[sh->split[i]]);
    }
    return nfv_atomic_commit(&af);
}

/* cohort.json: the settings a later step needs to interpret the cohort
 * (compare reads lesion_intensity to know whether lesions are bright or dark). */
static nfv_status write_cohort_json(const synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    char path[4096];
    snprintf(path, sizeof path, "%s/cohort.json", o->out_dir);
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, path, "w"));
    FILE *f = af.f;
    static const char *task_names[3] = {"lesion", "morph", "age"};
    fprintf(f, "{\n  \"task\": \"%s\",\n  \"n\": %d,\n  \"seed\": %llu,\n  \"voxel_mm\": %g,\n",
            task_names[o->task], o->n, o->seed, o->voxel_mm);
    if (o->task == NFV_SYNTH_AGE) {
        /* Regression: no classes; the age range, the gap and the model's levels. */
        synth_age_params p85;
        nfv_synth_age_params(sh, AGE_MAX, 1.0, &p85);
        fprintf(f, "  \"label\": \"age\",\n  \"age_range\": [%g, %g],\n  \"brain_age_gap_sd\": 5,\n"
                   "  \"levels\": {\"csf\": %.2f, \"gm\": %.2f, \"wm\": %.2f},\n"
                   "  \"at_85\": {\"ventricle_ratio_target\": %.3f, \"ventricle_ratio_calibrated\": %.3f, "
                   "\"flow_k_mm2\": %.1f, \"linear_shrink\": %.4f, \"cortex_fraction\": %.4f, "
                   "\"contrast_loss\": %.3f}\n}\n",
                AGE_MIN, AGE_MAX, sh->csf_level * NFV_SYNTH_OUT_SCALE, sh->gm_level * NFV_SYNTH_OUT_SCALE,
                sh->wm_level * NFV_SYNTH_OUT_SCALE, nfv_synth_age_ventricle_ratio(AGE_MAX),
                nfv_synth_age_ventricle_ratio_model(sh, AGE_MAX), p85.k, p85.shrink, p85.cortex, p85.contrast);
        return nfv_atomic_commit(&af);
    }
    fprintf(f, "  \"classes\": [");
    for (int c = 0; c < sh->class_count; c++) fprintf(f, "%s\"%s\"", c ? ", " : "", sh->class_names[c]);
    fprintf(f, "],\n  \"lesion_size_mm\": [%g, %g],\n  \"lesion_intensity\": [%g, %g]", o->lesion_size_mm[0],
            o->lesion_size_mm[1], o->lesion_intensity[0], o->lesion_intensity[1]);
    if (o->match_volume) {
        /* The size each class's lesions were drawn at: lesion_size_mm x scale. */
        fprintf(f, ",\n  \"match_volume\": true,\n  \"size_scale\": {");
        for (int c = 0, k = 0; c < sh->class_count; c++)
            if (sh->class_shape[c] != NFV_SHAPE_COUNT)
                fprintf(f, "%s\"%s\": %.4f", k++ ? ", " : "", sh->class_names[c], sh->size_scale[sh->class_shape[c]]);
        fprintf(f, "}");
    }
    fprintf(f, "\n}\n");
    return nfv_atomic_commit(&af);
}

/* Balanced labels (counts differ by at most one), shuffled, or the age
 * task's ages; stratified split. */
static void assign_labels(synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    nfv_rng r;
    nfv_rng_seed(&r, o->seed, STREAM_LABELS, 0);
    if (o->task == NFV_SYNTH_AGE) {
        nfv_synth_age_draw(sh, &r); /* label = age group: the split is stratified by age */
    } else {
        for (int i = 0; i < o->n; i++) sh->label[i] = i % sh->class_count;
        for (int i = o->n - 1; i > 0; i--) {
            int j = nfv_rng_below(&r, i + 1), t = sh->label[i];
            sh->label[i] = sh->label[j];
            sh->label[j] = t;
        }
    }
    nfv_rng_seed(&r, o->seed, STREAM_SPLIT, 0);
    double total = o->split[0] + o->split[1] + o->split[2];
    int *members = malloc((size_t)o->n * sizeof *members);
    if (!members) return; /* caller checked n; allocation of n ints cannot fail in practice */
    for (int c = 0; c < sh->class_count; c++) {
        int m = 0;
        for (int i = 0; i < o->n; i++)
            if (sh->label[i] == c) members[m++] = i;
        for (int i = m - 1; i > 0; i--) {
            int j = nfv_rng_below(&r, i + 1), t = members[i];
            members[i] = members[j];
            members[j] = t;
        }
        int ntrain = (int)floor(m * o->split[0] / total + 0.5), nval = (int)floor(m * o->split[1] / total + 0.5);
        if (ntrain > m) ntrain = m;
        if (nval > m - ntrain) nval = m - ntrain;
        for (int q = 0; q < m; q++) sh->split[members[q]] = q < ntrain ? 0 : q < ntrain + nval ? 1 : 2;
    }
    free(members);
}

static nfv_status parse_shapes(synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    const char *list = o->shapes && o->shapes[0] ? o->shapes : "sphere,cube,cross";
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--shapes list too long");
    sh->class_count = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        nfv_shape s;
        NFV_TRY(nfv_synth_shape_parse(tok, &s));
        for (int c = 0; c < sh->class_count; c++)
            if (sh->class_shape[c] == s) return nfv_fail(NFV_ERR_INVALID_ARG, "shape \"%s\" listed twice", tok);
        sh->class_shape[sh->class_count] = s;
        sh->class_names[sh->class_count++] = nfv_synth_shape_names[s];
    }
    for (int s = 0; s < NFV_SHAPE_COUNT; s++) sh->size_scale[s] = 1.0;
    for (int c = 0; o->match_volume && c < sh->class_count; c++)
        sh->size_scale[sh->class_shape[c]] = nfv_synth_shape_volume_scale(sh->class_shape[c]);
    if (o->no_lesion_class) {
        sh->class_shape[sh->class_count] = NFV_SHAPE_COUNT;
        sh->class_names[sh->class_count++] = "none";
    }
    if (sh->class_count < 2)
        return nfv_fail(NFV_ERR_INVALID_ARG, "the lesion task needs at least 2 classes (got %d; add shapes or "
                                             "--no-lesion-class)", sh->class_count);
    return NFV_OK;
}

/* Template onto the grid with the identity map: template.nii.gz, mask.nii.gz
 * and the common brain mask. */
static nfv_status write_grid_template(synth_shared *sh)
{
    nfv_volume *g = &sh->grid;
    double back[4][4];
    nfv_affine_mul(sh->tmpl_inv, (const double(*)[4])g->affine, back);
    size_t n = nfv_volume_numel(g), plane = (size_t)g->nx * g->ny;
    nfv_volume mask;
    NFV_TRY(nfv_volume_clone(g, &mask));
    for (int z = 0; z < g->nz; z++)
        for (int y = 0; y < g->ny; y++)
            for (int x = 0; x < g->nx; x++) {
                size_t idx = (size_t)z * plane + (size_t)y * g->nx + x;
                float v = nfv_synth_sample_trilinear(&sh->tmpl, back[0][0] * x + back[0][1] * y + back[0][2] * z + back[0][3],
                                           back[1][0] * x + back[1][1] * y + back[1][2] * z + back[1][3],
                                           back[2][0] * x + back[2][1] * y + back[2][2] * z + back[2][3]);
                int in = v >= sh->brain_level;
                sh->common_mask[idx] = (unsigned char)in;
                mask.data[idx] = in ? 1.0f : 0.0f;
                g->data[idx] = in ? floorf(v * NFV_SYNTH_OUT_SCALE + 0.5f) : 0.0f;
            }
    (void)n;
    char path[4096];
    snprintf(path, sizeof path, "%s/mask.nii.gz", sh->o->out_dir);
    nfv_status s = nfv_volume_write(path, &mask);
    nfv_volume_free(&mask);
    NFV_TRY(s);
    snprintf(path, sizeof path, "%s/template.nii.gz", sh->o->out_dir);
    return nfv_volume_write(path, g);
}

static nfv_status write_shape_templates(const synth_shared *sh)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/shapes", sh->o->out_dir);
    NFV_TRY(nfv_mkdirs(dir));
    for (int c = 0; c < sh->class_count; c++) {
        if (sh->class_shape[c] == NFV_SHAPE_COUNT) continue;
        nfv_volume v;
        double size = 0.5 * (sh->o->lesion_size_mm[0] + sh->o->lesion_size_mm[1]) * sh->size_scale[sh->class_shape[c]];
        NFV_TRY(nfv_synth_shape_template(sh->class_shape[c], size, sh->o->voxel_mm, &v));
        snprintf(path, sizeof path, "%s/%s.nii.gz", dir, sh->class_names[c]);
        nfv_status s = nfv_volume_write(path, &v);
        nfv_volume_free(&v);
        NFV_TRY(s);
    }
    return NFV_OK;
}

static void shared_free(synth_shared *sh)
{
    nfv_volume_free(&sh->tmpl);
    nfv_volume_free(&sh->grid);
    free(sh->common_mask);
    free(sh->label);
    free(sh->split);
    free(sh->age_years);
    nfv_synth_age_free(sh->age);
}

/* Every subject, on o->threads threads (0: all CPUs) including the caller. */
static nfv_status make_subjects(synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    bspline_axis ax[3];
    memset(ax, 0, sizeof ax);
    nfv_status s = NFV_OK;
    for (int d = 0; d < 3 && s == NFV_OK; d++)
        if (nfv_synth_bspline_axis_init(&ax[d], d == 0 ? sh->grid.nx : d == 1 ? sh->grid.ny : sh->grid.nz, o->voxel_mm))
            s = nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory");
    if (s == NFV_OK) {
        pthread_mutex_init(&sh->mu, NULL);
        subject_job job = {sh, ax};
        s = nfv_parallel_for(o->n, o->threads, make_one_subject, &job);
        pthread_mutex_destroy(&sh->mu);
    }
    for (int d = 0; d < 3; d++) nfv_synth_bspline_axis_free(&ax[d]);
    return s;
}

static nfv_status run_inner(synth_shared *sh)
{
    const nfv_synth_options *o = sh->o;
    if (o->task == NFV_SYNTH_LESION) {
        NFV_TRY(parse_shapes(sh));
    } else if (o->task == NFV_SYNTH_AGE) {
        sh->class_count = (o->n + AGE_SPLIT_GROUP - 1) / AGE_SPLIT_GROUP; /* split groups; any n >= 1 */
    } else {
        sh->class_count = 2;
        sh->class_names[0] = "control";
        sh->class_names[1] = "atrophy";
    }
    if (o->task != NFV_SYNTH_AGE && o->n < sh->class_count)
        return nfv_fail(NFV_ERR_INVALID_ARG, "--n %d is smaller than the number of classes (%d)", o->n,
                        sh->class_count);
    NFV_TRY(nfv_synth_grid(o->voxel_mm, o->shape, &sh->grid));

    const char *tpath = o->template_path ? o->template_path : NFV_DEFAULT_TEMPLATE;
    NFV_TRY(nfv_synth_prepare_template(sh, tpath));
    if (o->task == NFV_SYNTH_AGE) NFV_TRY(nfv_synth_age_prepare(sh));

    size_t n = nfv_volume_numel(&sh->grid);
    sh->common_mask = malloc(n);
    sh->label = malloc((size_t)o->n * sizeof *sh->label);
    sh->split = malloc((size_t)o->n * sizeof *sh->split);
    sh->age_years = malloc((size_t)o->n * sizeof *sh->age_years);
    if (!sh->common_mask || !sh->label || !sh->split || !sh->age_years)
        return nfv_fail(NFV_ERR_NO_MEMORY, "synth: out of memory");
    assign_labels(sh);

    NFV_TRY(nfv_mkdirs(o->out_dir));
    if (o->task == NFV_SYNTH_LESION) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/lesion_masks", o->out_dir);
        NFV_TRY(nfv_mkdirs(dir));
        NFV_TRY(write_shape_templates(sh));
    }
    NFV_TRY(write_grid_template(sh));
    if (o->task == NFV_SYNTH_AGE) NFV_TRY(nfv_synth_age_write_effect(sh));

    NFV_TRY(make_subjects(sh));
    NFV_TRY(write_cohort_json(sh));
    return write_labels(sh);
}

nfv_status nfv_synth_run(const nfv_synth_options *o)
{
    if (!o || !o->out_dir || !o->out_dir[0]) return nfv_fail(NFV_ERR_INVALID_ARG, "synth: no output directory");
    if (o->n < 1 || o->n > 1000000) return nfv_fail(NFV_ERR_INVALID_ARG, "synth: --n %d is out of range", o->n);
    if (o->task != NFV_SYNTH_LESION && o->task != NFV_SYNTH_MORPH && o->task != NFV_SYNTH_AGE)
        return nfv_fail(NFV_ERR_INVALID_ARG, "synth: unknown task");
    if (!(o->split[0] >= 0 && o->split[1] >= 0 && o->split[2] >= 0 && o->split[0] + o->split[1] + o->split[2] > 0))
        return nfv_fail(NFV_ERR_INVALID_ARG, "synth: split fractions must be >= 0 and not all 0");
    synth_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.o = o;
    nfv_status s = run_inner(&sh);
    shared_free(&sh);
    return s;
}

