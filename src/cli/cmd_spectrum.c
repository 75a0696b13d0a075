/* `neurofv spectrum`: the training cohort's mean amplitude spectrum and
 * intensity range, written into a model file for `--param maco`
 * (src/vis/maco.c).  `train` calls cli_model_spectrum on its own output, so
 * only imported models need the command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "neurofv/vis_ops.h"
#include "neurofv/vis.h"

NFV_COMMAND(spectrum, "spectrum", "Store the training cohort's amplitude spectrum in a model (for --param maco)")

/* The model at model_path gets the spectrum of the rows of csv in `split`
 * (preprocessed to its grid), written back atomically (a temporary file,
 * then rename: nfv_st_writer_write). *used receives the subject count. */
nfv_status cli_model_spectrum(const char *model_path, const char *csv, const char *split, const char *device,
                              int *used)
{
    nfv_split want = NFV_SPLIT_TRAIN;
    if (split && nfv_split_parse(split, &want) && strcmp(split, "all"))
        return nfv_fail(NFV_ERR_INVALID_ARG, "--split expects train, val, test or all, got \"%s\"", split);
    if (split && !strcmp(split, "all")) want = NFV_SPLIT_ALL;
    nfv_context *ctx = NULL;
    nfv_model *m = NULL;
    nfv_dataset ds;
    memset(&ds, 0, sizeof ds);
    nfv_volume_cache *cache = NULL;
    nfv_spectrum_acc *acc = NULL;
    nfv_status st = nfv_context_create(device, &ctx);
    if (!st) st = nfv_model_load(ctx, model_path, &m);
    /* The labels do not matter here; a regression model's are numbers. */
    if (!st) st = m->head == NFV_HEAD_REGRESSION ? nfv_dataset_load_numeric(csv, &ds) : nfv_dataset_load(csv, &ds);
    nfv_grid g = {0};
    if (!st) {
        g = (nfv_grid){m->input_shape[3], m->input_shape[2], m->input_shape[1],
                       {m->voxel_mm[0], m->voxel_mm[1], m->voxel_mm[2]}, m->norm};
        st = nfv_volume_cache_create(&ds, &g, 0, &cache);
    }
    if (!st) st = nfv_spectrum_begin(ctx, m->input_shape[1], m->input_shape[2], m->input_shape[3], &acc);
    for (int i = 0; !st && i < ds.count; i++) {
        if (want != NFV_SPLIT_ALL && ds.rows[i].split != want) continue;
        const float *v;
        st = nfv_volume_cache_get(cache, i, &v);
        if (!st) st = nfv_spectrum_add(acc, v);
    }
    if (!st) {
        size_t vol = (size_t)m->input_shape[1] * m->input_shape[2] * m->input_shape[3];
        free(m->spectrum);
        m->spectrum = malloc(vol * sizeof *m->spectrum);
        if (!m->spectrum) st = nfv_fail(NFV_ERR_NO_MEMORY, "spectrum: out of memory");
    }
    if (!st) {
        st = nfv_spectrum_end(acc, m->spectrum, &m->spectrum_lo, &m->spectrum_hi, &m->spectrum_subjects);
        if (st == NFV_ERR_INVALID_ARG && m->spectrum_subjects == 0)
            st = nfv_fail(NFV_ERR_INVALID_ARG, "%s has no %s rows to compute the spectrum from", csv,
                          split ? split : "train");
    }
    if (!st) st = nfv_model_save(m, model_path);
    if (!st && used) *used = m->spectrum_subjects;
    nfv_spectrum_free(acc);
    nfv_volume_cache_free(cache);
    nfv_dataset_free(&ds);
    nfv_model_free(m);
    nfv_context_free(ctx);
    return st;
}

int cmd_spectrum(int argc, char **argv)
{
    const char *data = NULL, *model = NULL, *split = "train", *device = NULL;
    const cli_option opts[] = {
        {"--data", CLI_STRING, &data, "CSV", "dataset CSV path,label[,split] of the training cohort (required)"},
        {"--model", CLI_STRING, &model, "MODEL", "model .safetensors to add the spectrum to, in place (required)"},
        {"--split", CLI_STRING, &split, "train|val|test|all", "rows used (default train; no split column = train)"},
        {"--device", CLI_STRING, &device, "DEV", "OpenCL device (see neurofv devices)"},
        {0},
    };
    int r = cli_parse("spectrum", "--data CSV --model MODEL [options]",
                      "Compute the mean amplitude spectrum |F(k)| of the cohort's volumes, preprocessed to the model's "
                      "grid and normalization, and their intensity range, and store both in MODEL (tensor "
                      "maco.amplitude, metadata maco_range) for visualize/compare --param maco.  The file is "
                      "rewritten atomically.  `neurofv train` does this itself.",
                      opts, argc, argv, NULL, 0, NULL);
    if (r) return r == 1 ? 0 : 2;
    if (!data || !model) return cli_failf("spectrum", "--data CSV and --model MODEL are required");
    int used = 0;
    nfv_status s = cli_model_spectrum(model, data, split, device, &used);
    if (s) return cli_fail("spectrum", s);
    printf("spectrum of %d subjects stored in %s\n", used, model);
    return 0;
}
