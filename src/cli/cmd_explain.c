/* `neurofv explain`: attribution maps of single subjects (saliency, gradient
 * x input, SmoothGrad, integrated gradients, occlusion, Grad-CAM), written
 * in each subject's own space, with per-class mean maps and, given the
 * synthetic cohort's folder, scores against its planted truth.  The methods
 * are in src/explain/ (include/neurofv/explain.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "explain_cli.h"
#include "neurofv/render.h"
#include "base/clock.h"

NFV_COMMAND(explain, "explain", "Attribution maps of single subjects, scored against a planted truth")

static nfv_status parse_methods(explain_args *a)
{
    const char *s = a->methods;
    if (!strcmp(s, "all")) s = "saliency,gradxinput,smoothgrad,integrated-gradients,occlusion,gradcam";
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    a->nmethods = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (a->nmethods == NFV_EXPLAIN_METHODS) return nfv_fail(NFV_ERR_INVALID_ARG, "--method: at most %d methods", NFV_EXPLAIN_METHODS);
        NFV_TRY(nfv_explain_method_parse(tok, &a->method[a->nmethods]));
        for (int k = 0; k < a->nmethods; k++)
            if (a->method[k] == a->method[a->nmethods]) return nfv_fail(NFV_ERR_INVALID_ARG, "--method: %s given twice", tok);
        a->nmethods++;
    }
    return a->nmethods ? NFV_OK : nfv_fail(NFV_ERR_INVALID_ARG, "--method: no method given");
}

/* The file name without folders and .nii[.gz]. */
static void stem_of(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/');
    snprintf(out, cap, "%s", b ? b + 1 : path);
    char *e = strstr(out, ".nii");
    if (e) *e = 0;
}

/* Explain a chunk of subjects with every method. */
static nfv_status explain_chunk(explain_run *r, subject *subs, int n, cli_progress *bar, long *done, long total)
{
    size_t per = nfv_volume_numel(&subs[0].pre);
    float *x = malloc((size_t)n * per * sizeof *x), *out = malloc((size_t)n * (nfv_model_outputs(r->m) + 1) * sizeof *out);
    float *maps[NFV_EXPLAIN_METHODS] = {0}, *objs[NFV_EXPLAIN_METHODS] = {0};
    nfv_target *tg = malloc((size_t)n * sizeof *tg);
    nfv_status st = x && out && tg ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    for (int i = 0; i < n && !st; i++) memcpy(x + (size_t)i * per, subs[i].pre.data, per * sizeof *x);
    if (!st && !strcmp(r->a->target, "predicted")) st = nfv_model_predict(r->m, r->ctx, x, n, r->a->o.batch, out);
    for (int i = 0; i < n && !st; i++) {
        st = resolve_target(r, &subs[i], out + (size_t)i * nfv_model_outputs(r->m));
        tg[i] = subs[i].target;
    }
    for (int k = 0; k < r->a->nmethods && !st; k++) {
        maps[k] = malloc((size_t)n * per * sizeof *maps[k]);
        objs[k] = malloc((size_t)n * sizeof *objs[k]);
        if (!maps[k] || !objs[k]) st = nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
        double t0 = nfv_seconds();
        if (!st) st = nfv_explain(r->ctx, r->m, r->a->method[k], tg, n, x, r->baseline, &r->a->o, maps[k], objs[k]);
        r->sum.seconds[k] += nfv_seconds() - t0;
        *done += n;
        cli_progress_update(bar, *done, total, nfv_explain_method_name(r->a->method[k]));
    }
    /* Subject by subject, method by method: the rows of subjects.csv come in
     * subject order whatever the batch (or the ranks under mpirun). */
    for (int i = 0; i < n && !st; i++)
        for (int k = 0; k < r->a->nmethods && !st; k++) {
            st = subject_outputs(r, &subs[i], k, maps[k] + (size_t)i * per, objs[k][i]);
            add_mean(r, &subs[i], k, maps[k] + (size_t)i * per);
        }
    for (int i = 0; i < n && !st; i++) {
        float *m_i[NFV_EXPLAIN_METHODS];
        for (int k = 0; k < r->a->nmethods; k++) m_i[k] = maps[k] + (size_t)i * per;
        if (r->a->nmethods > 1) add_spearman(r, &subs[i], m_i);
        int c = class_of(r, &subs[i]);
        r->mean_n[c] += c < r->classes, r->mean_n[r->classes]++;
        r->sum.subjects++;
    }
    for (int k = 0; k < NFV_EXPLAIN_METHODS; k++) free(maps[k]), free(objs[k]);
    free(x), free(out), free(tg);
    return st;
}

/* mean_<method>[_<class>].nii.gz and .png on the model grid (the first
 * subject's grid); correlation of the overall mean with the age effect. */
static nfv_status write_means(explain_run *r, const nfv_volume *grid, const nfv_volume *mean_input, const float *brain)
{
    size_t per = nfv_volume_numel(grid);
    nfv_volume v = *grid;
    v.data = malloc(per * sizeof *v.data);
    if (!v.data) return nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    nfv_status st = NFV_OK;
    for (int k = 0; k < r->a->nmethods && !st; k++) {
        const char *name = nfv_explain_method_name(r->a->method[k]);
        r->sum.effect_r[k] = r->sum.effect_abs_r[k] = r->sum.effect_mass[k] = NAN;
        for (int c = 0; c <= r->classes && !st; c++) {
            if (!r->mean_n[c]) continue;
            const double *src = r->mean_sum + ((size_t)k * (r->classes + 1) + c) * per;
            for (size_t i = 0; i < per; i++) v.data[i] = (float)(src[i] / r->mean_n[c]);
            char base[4400], path[4500];
            if (c < r->classes) snprintf(base, sizeof base, "%s/mean_%s_%s", r->report_dir, name, r->m->class_names[c]);
            else snprintf(base, sizeof base, "%s/mean_%s", r->report_dir, name);
            snprintf(path, sizeof path, "%s.nii.gz", base);
            st = nfv_volume_write(path, &v);
            snprintf(path, sizeof path, "%s.png", base);
            if (!st) st = explain_overlay_png(&v, mean_input, path);
            if (!st && (c < r->classes || !r->classes)) {
                char rel[600], cap[600];
                snprintf(rel, sizeof rel, "%s", strrchr(path, '/') + 1);
                snprintf(cap, sizeof cap, "mean %s%s%s over %d subjects", name, c < r->classes ? ", class " : "",
                         c < r->classes ? r->m->class_names[c] : "", r->mean_n[c]);
                snprintf(path, sizeof path, "%s/mean_input.nii.gz", r->report_dir);
                st = add_picture(r, rel, cap, path);
            }
            if (!st && c == r->classes && r->effect.nx) {
                float *absm = malloc(per * sizeof *absm), *abse = malloc(per * sizeof *abse);
                if (!absm || !abse) st = nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
                for (size_t i = 0; i < per && !st; i++) absm[i] = fabsf(v.data[i]), abse[i] = fabsf(r->effect.data[i]);
                if (!st) {
                    r->sum.effect_r[k] = nfv_explain_pearson(v.data, r->effect.data, brain, per);
                    r->sum.effect_abs_r[k] = nfv_explain_pearson(absm, abse, brain, per);
                    /* The region where the age effect is strong, inside the brain. */
                    float emax = 0;
                    size_t in = 0, all = 0;
                    for (size_t i = 0; i < per; i++) emax = brain[i] && abse[i] > emax ? abse[i] : emax;
                    for (size_t i = 0; i < per; i++) {
                        abse[i] = brain[i] && abse[i] >= 0.2f * emax;
                        in += abse[i] > 0, all += brain[i] > 0;
                        if (!brain[i]) absm[i] = 0;
                    }
                    r->sum.effect_mass[k] = nfv_explain_mass_in(absm, abse, per);
                    r->sum.effect_chance = all ? (double)in / all : NAN;
                }
                free(absm), free(abse);
            }
        }
    }
    free(v.data);
    return st;
}

/* --baseline zeros | template | FILE on the model grid (NULL: zeros). */
static nfv_status load_baseline(explain_run *r)
{
    const char *b = r->a->baseline;
    if (!strcmp(b, "zeros")) return NFV_OK;
    nfv_volume v = {0};
    if (!strcmp(b, "template")) {
        NFV_TRY(nfv_vis_template_on_grid(r->m, NULL, &v, NULL));
    } else {
        nfv_volume raw;
        nfv_status st = nfv_volume_read(b, &raw, NULL);
        if (st) return nfv_fail_context(st, "--baseline (zeros, template or a NIfTI file)");
        nfv_grid g = model_grid(r->m);
        st = nfv_preprocess(&raw, &g, &v);
        nfv_volume_free(&raw);
        if (st) return nfv_fail_context(st, "--baseline %s", b);
    }
    r->baseline = v.data; /* owned now */
    return NFV_OK;
}

/* The age-effect map of an age cohort (truth/age_effect.nii.gz) on grid. */
static nfv_status load_effect(explain_run *r, const nfv_volume *grid)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/age_effect.nii.gz", r->a->truth);
    if (access(path, R_OK)) return NFV_OK;
    nfv_volume raw;
    NFV_TRY(nfv_volume_read(path, &raw, NULL));
    nfv_status st = nfv_volume_resample_to(&raw, grid->nx, grid->ny, grid->nz, grid->affine, 0, &r->effect);
    nfv_volume_free(&raw);
    return st;
}

/* The subjects of the run: --input, or the split of --data, of this shard. */
static nfv_status list_subjects(explain_args *a, nfv_dataset *ds, subject **subs, int *count)
{
    *count = 0;
    *subs = calloc(a->input ? 1 : (size_t)ds->count + 1, sizeof **subs);
    if (!*subs) return nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    if (a->input) {
        (*subs)[0].path = a->input;
        stem_of(a->input, (*subs)[0].stem, sizeof (*subs)[0].stem);
        (*subs)[0].first = 1;
        *count = 1;
        return NFV_OK;
    }
    nfv_split split;
    if (nfv_split_parse(a->split_name, &split)) return nfv_fail(NFV_ERR_INVALID_ARG, "--split expects train, val, test or all, got \"%s\"", a->split_name);
    int total = 0, si = 1, sn = 1;
    if (a->shard) NFV_TRY(nfv_shard_parse(a->shard, &si, &sn));
    for (int i = 0; i < ds->count; i++) total += split == NFV_SPLIT_ALL || ds->rows[i].split == split;
    for (int i = 0, j = 0; i < ds->count; i++) {
        if (split != NFV_SPLIT_ALL && ds->rows[i].split != split) continue;
        if (nfv_shard_contains(j++, total, si, sn)) {
            subject *s = &(*subs)[(*count)++];
            s->path = ds->rows[i].path, s->label = ds->rows[i].label;
            s->first = *count == 1 && nfv_dist_rank() == 0; /* under mpirun: the first of all */
            stem_of(s->path, s->stem, sizeof s->stem);
        }
    }
    if (!*count) return nfv_fail(NFV_ERR_INVALID_ARG, "%s has no rows in split %s%s%s", ds->csv_path, a->split_name, a->shard ? " shard " : "", a->shard ? a->shard : "");
    return NFV_OK;
}

static nfv_status run_explain(explain_run *r, subject *subs, int count)
{
    explain_args *a = r->a;
    int si = 1, sn = 1;
    if (a->shard && a->data) nfv_shard_parse(a->shard, &si, &sn); /* validated by list_subjects */
    const int mpi = nfv_dist_size() > 1;
    if (sn > 1 && !mpi) snprintf(r->report_dir, sizeof r->report_dir, "%s/shard-%d-of-%d", a->out, si, sn);
    else snprintf(r->report_dir, sizeof r->report_dir, "%s", a->out);
    nfv_status st = nfv_mkdirs(r->report_dir);
    if (!st) st = load_baseline(r);
    r->classes = r->m->head == NFV_HEAD_REGRESSION ? 0 : r->m->class_count;
    size_t per = (size_t)nfv_shape_numel(4, r->m->input_shape);
    r->mean_sum = calloc((size_t)a->nmethods * (r->classes + 1) * per, sizeof *r->mean_sum);
    r->mean_n = calloc((size_t)r->classes + 1, sizeof *r->mean_n);
    double *input_sum = calloc(per, sizeof *input_sum);
    if (a->vis && r->classes) {
        r->regions = calloc((size_t)r->classes, sizeof *r->regions);
        if (!r->regions) st = nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    }
    float *brain = calloc(per, sizeof *brain);
    if (!st && (!r->mean_sum || !r->mean_n || !input_sum || !brain)) st = nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/subjects.csv", r->report_dir);
    if (mpi) explain_subjects_part(r, nfv_dist_rank(), path, sizeof path); /* joined by rank 0 */
    if (!st) st = nfv_atomic_open(&r->subjects_af, path, "w");
    if (!st) {
        r->subjects_csv = r->subjects_af.f;
        if (nfv_dist_rank() == 0)
            fprintf(r->subjects_csv, "path,label,target,method,objective,mass_in_lesion,pointing_hit\n");
    }
    nfv_volume grid = {0};
    cli_progress bar;
    cli_progress_start(&bar, "explain");
    long done = 0, total = (long)count * a->nmethods;
    for (int i0 = 0; i0 < count && !st; i0 += a->o.batch) {
        int n = count - i0 < a->o.batch ? count - i0 : a->o.batch;
        for (int i = 0; i < n && !st; i++) {
            subject *s = &subs[i0 + i];
            st = load_subject(r->m, s);
            if (!st && !grid.nx) st = nfv_volume_clone(&s->pre, &grid);
            if (!st && i0 + i == 0 && a->truth) st = load_effect(r, &grid);
            for (size_t v = 0; v < per && !st; v++) input_sum[v] += s->pre.data[v], brain[v] = brain[v] || s->pre.data[v] != 0;
        }
        if (!st) st = explain_chunk(r, subs + i0, n, &bar, &done, total);
        for (int i = 0; i < n; i++) free_subject(&subs[i0 + i]);
    }
    cli_progress_end(&bar);
    if (!st) st = nfv_atomic_commit(&r->subjects_af);
    else if (r->subjects_csv) nfv_atomic_abort(&r->subjects_af);
    /* Under mpirun: the sums of every rank, then rank 0 alone reports. */
    if (!st && mpi) st = explain_reduce_ranks(r, input_sum, brain, per, &count, &grid);
    if (!st && mpi && nfv_dist_rank() == 0) st = explain_join_subjects(r);
    if (!st && mpi && nfv_dist_rank() != 0) {
        nfv_volume_free(&grid);
        free(input_sum), free(brain);
        return NFV_OK;
    }
    nfv_volume mean_input = grid;
    if (!st) {
        mean_input.data = malloc(per * sizeof *mean_input.data);
        if (!mean_input.data) st = nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
        for (size_t v = 0; v < per && !st; v++) mean_input.data[v] = (float)(input_sum[v] / count);
    }
    char mean_path[4200];
    snprintf(mean_path, sizeof mean_path, "%s/mean_input.nii.gz", r->report_dir);
    if (!st) st = nfv_volume_write(mean_path, &mean_input); /* under the mean maps in the viewer */
    if (!st) st = write_means(r, &grid, &mean_input, brain);
    nfv_explain_vis_score *vis = NULL;
    if (!st && a->vis) {
        nfv_volume bv = grid;
        bv.data = brain;
        st = nfv_explain_score_vis(a->vis, r->regions, (const char *const *)r->m->class_names, r->classes, &bv,
                                   &r->effect, &vis, &r->sum.vis_count);
        r->sum.vis = vis;
    }
    if (!st) {
        snprintf(r->sum.target, sizeof r->sum.target, "%s", a->target);
        snprintf(r->sum.model, sizeof r->sum.model, "%s", a->model_path);
        st = nfv_explain_write_report(&r->sum, r->report_dir, (const char *const *)r->pictures,
                                      (const char *const *)r->captions, (const char *const *)r->backgrounds,
                                      r->npictures);
    }
    if (mean_input.data != grid.data) free(mean_input.data);
    nfv_volume_free(&grid);
    free(vis);
    r->sum.vis = NULL;
    free(input_sum), free(brain);
    return st;
}

static void print_summary(const explain_run *r)
{
    const nfv_explain_summary *s = &r->sum;
    printf("%d subjects, target %s\n%-22s %10s", s->subjects, s->target, "method", "s/subject");
    if (s->scored) printf(" %16s %14s", "mass in lesion", "pointing game");
    int age = 0;
    for (int k = 0; k < s->count; k++) age |= !isnan(s->effect_r[k]);
    if (age) printf(" %12s %18s", "r age effect", "mass effect region");
    printf("\n");
    for (int k = 0; k < s->count; k++) {
        printf("%-22s %10.2f", nfv_explain_method_name(s->method[k]), s->seconds[k] / s->subjects);
        if (s->scored) printf(" %16.3f %8d/%-5d", s->mass[k] / s->scored, s->hits[k], s->scored);
        if (age) printf(" %12.3f %18.3f", s->effect_r[k], s->effect_mass[k]);
        printf("\n");
    }
    if (s->scored) printf("chance mass (lesion / brain voxels): %.4f\n", s->chance / s->scored);
    if (age) printf("chance mass (age-effect region / brain voxels): %.4f\n", s->effect_chance);
    printf("report: %s/index.html\n", r->report_dir);
}

int cmd_explain(int argc, char **argv)
{
    explain_args a;
    memset(&a, 0, sizeof a);
    nfv_explain_options_default(&a.o);
    a.split_name = "test", a.target = "label", a.methods = "saliency", a.baseline = "zeros";
    const cli_option opts[] = {
        {"--model", CLI_STRING, &a.model_path, "MODEL", "model .safetensors or .onnx (required)"},
        {"--input", CLI_STRING, &a.input, "NIFTI", "one subject's scan (any orientation and voxel size)"},
        {"--data", CLI_STRING, &a.data, "CSV", "dataset CSV (path,label[,split]); explains the rows of --split"},
        {"--split", CLI_STRING, &a.split_name, "SPLIT", "train|val|test|all (default test)"},
        {"--target", CLI_STRING, &a.target, "T",
         "label (each subject's class; default), predicted (the model's class), output (regression), or any "
         "visualize target: logit:CLASS, LAYER:CHANNEL, ..."},
        {"--method", CLI_STRING, &a.methods, "M[,M..]",
         "saliency|gradxinput|smoothgrad|integrated-gradients|occlusion|gradcam, comma list or all (default saliency)"},
        {"--out", CLI_STRING, &a.out, "DIR", "output folder (required)"},
        {"--samples", CLI_INT, &a.o.smooth_samples, "N", "SmoothGrad samples (default 16)"},
        {"--noise", CLI_FLOAT, &a.o.smooth_noise, "F", "SmoothGrad noise SD as a fraction of the input's range (default 0.1)"},
        {"--steps", CLI_INT, &a.o.ig_steps, "N", "integrated-gradients steps (default 64)"},
        {"--baseline", CLI_STRING, &a.baseline, "B",
         "integrated gradients and occlusion baseline: zeros (the normalized mean), template (Colin27 on the grid) or a NIfTI file"},
        {"--box", CLI_INT, &a.o.occlusion_box, "N", "occlusion box edge in voxels (default 8)"},
        {"--stride", CLI_INT, &a.o.occlusion_stride, "N", "occlusion stride in voxels (default 4)"},
        {"--cam-layer", CLI_STRING, &a.cam_layer, "LAYER", "Grad-CAM layer (default: the last spatial layer before the target)"},
        {"--batch", CLI_INT, &a.o.batch, "N", "inputs per device call (default 8)"},
        {"--seed", CLI_U64, &a.o.seed, "N", "SmoothGrad noise seed (default 1)"},
        {"--truth", CLI_STRING, &a.truth, "DIR",
         "a neurofv synth folder: score maps against its lesion_masks/ (lesion task) or age_effect.nii.gz (age task)"},
        {"--vis", CLI_STRING, &a.vis, "DIR",
         "with --truth: also score the feature visualizations of a `neurofv visualize` folder (importance maps of "
         "logit targets against the class's lesion region; visualizations against the age-effect map)"},
        {"--shard", CLI_STRING, &a.shard, "I/N|auto",
         "only shard I of N of the subjects (contiguous blocks; auto: the Slurm array task); its means and report go "
         "to DIR/shard-I-of-N/ (under mpirun each rank is a shard)"},
        {"--device", CLI_STRING, &a.device, "DEV", "OpenCL device (see neurofv devices)"},
        {0},
    };
    int pr = cli_parse("explain", "--model MODEL (--input NIFTI | --data CSV [--split test]) --out DIR [--method all] [--truth SYNTH_DIR]",
                       "Attribution maps: which voxels of each subject drove the model's output. Maps are written in "
                       "each subject's own space (DIR/<subject>/<method>.nii.gz, overlaying on the scan as read) with a "
                       "PNG over the scan; mean maps per class on the model grid; with --truth, the share of "
                       "attribution mass in each subject's lesion and the pointing game (lesion cohorts) or the "
                       "correlation of the mean map with the age-effect map (age cohorts); summary.csv, summary.md, "
                       "index.html.",
                       opts, argc, argv, NULL, 0, NULL);
    if (pr) return pr == 1 ? 0 : 2;
    if (!a.model_path || !a.out || !a.input == !a.data)
        return cli_failf("explain", "--model, --out and one of --input or --data are required (see neurofv explain --help)");
    if (parse_methods(&a)) return cli_fail("explain", NFV_ERR_INVALID_ARG);
    /* Under mpirun each rank is one shard of the subjects: the maps land in
     * DIR as one process writes them; the sums are added over the ranks and
     * rank 0 writes the one report (src/cli/explain_dist.c). */
    static char rank_shard[32];
    if (nfv_dist_size() > 1) {
        if (a.shard) return cli_failf("explain", "--shard splits over Slurm array tasks and mpirun over ranks; use one");
        if (!a.data) return cli_failf("explain", "under mpirun give --data (the ranks split its subjects)");
        snprintf(rank_shard, sizeof rank_shard, "%d/%d", nfv_dist_rank() + 1, nfv_dist_size());
        a.shard = rank_shard; /* then rank 0 reports over all (explain_dist.c) */
    }
    if (a.vis && !a.truth) return cli_failf("explain", "--vis scores against a truth: give --truth SYNTH_DIR too");
    explain_run r;
    memset(&r, 0, sizeof r);
    r.a = &a;
    r.sum.count = a.nmethods;
    r.sum.effect_chance = NAN;
    memcpy(r.sum.method, a.method, sizeof a.method);
    nfv_dataset ds;
    memset(&ds, 0, sizeof ds);
    subject *subs = NULL;
    int count = 0;
    nfv_status st = a.data ? nfv_dataset_load(a.data, &ds) : NFV_OK;
    if (!st) st = list_subjects(&a, &ds, &subs, &count);
    if (!st) st = nfv_context_create(a.device, &r.ctx);
    if (!st) st = nfv_model_open(r.ctx, a.model_path, &r.m);
    if (!st && a.cam_layer) {
        a.o.cam_layer = nfv_model_find_layer(r.m, a.cam_layer);
        if (a.o.cam_layer < 0) st = nfv_fail_context(NFV_ERR_INVALID_ARG, "--cam-layer");
    }
    if (!st) st = run_explain(&r, subs, count);
    if (!st) print_summary(&r);
    for (int i = 0; i < r.npictures; i++) free(r.pictures[i]), free(r.captions[i]), free(r.backgrounds[i]);
    free(subs), free(r.baseline), free(r.mean_sum), free(r.mean_n);
    nfv_volume_free(&r.effect);
    for (int c = 0; r.regions && c < r.classes; c++) nfv_volume_free(&r.regions[c]);
    free(r.regions);
    nfv_model_free(r.m);
    nfv_context_free(r.ctx);
    nfv_dataset_free(&ds);
    return st ? cli_fail("explain", st) : 0;
}
