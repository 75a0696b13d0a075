/* `neurofv visualize`: optimize input volumes that maximally activate units
 * of a model (feature visualization) and write NIfTI, PNG and JSON outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "neurofv/vis.h"

NFV_COMMAND(visualize, "visualize", "Optimize volumes that maximally activate units (feature visualization)")

#define MAX_TARGET_ARGS 256

static void on_progress(void *user, int b, int nb, int step, int steps, const float *obj, int n)
{
    cli_progress *p = user;
    double mean = 0;
    for (int i = 0; i < n; i++) mean += obj[i];
    char extra[96];
    snprintf(extra, sizeof extra, "batch %d/%d objective %.4g", b + 1, nb, n ? mean / n : 0.0);
    cli_progress_update(p, (long)b * steps + step, (long)nb * steps, extra);
}

/* Pull every "--target X" / "--target=X" out of argv (it may repeat). */
static int take_targets(int *argc, char **argv, const char **targets, int *ntargets)
{
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "--target")) {
            if (i + 1 >= *argc) return fprintf(stderr, "neurofv visualize: --target needs a value\n"), 2;
            v = argv[++i];
        } else if (!strncmp(a, "--target=", 9)) {
            v = a + 9;
        }
        if (v) {
            if (*ntargets >= MAX_TARGET_ARGS) return fprintf(stderr, "neurofv visualize: too many --target\n"), 2;
            targets[(*ntargets)++] = v;
        } else {
            argv[w++] = argv[i];
        }
    }
    *argc = w;
    return 0;
}

int cmd_visualize(int argc, char **argv)
{
    const char *model_path = NULL, *out = NULL, *device = NULL, *shard = NULL, *background = "template";
    const char *tlist[MAX_TARGET_ARGS];
    int ntexts = 0;
    if (take_targets(&argc, argv, tlist, &ntexts)) return 2;

    /* The loop's options come from the library's table, as strings. */
    int nvis = 0;
    while (nfv_vis_option_table[nvis].name) nvis++;
    const char **vis_values = calloc((size_t)nvis, sizeof *vis_values);
    cli_option *opts = calloc((size_t)nvis + 16, sizeof *opts);
    if (!vis_values || !opts) return cli_failf("visualize", "out of memory");
    static const char *target_dummy;
    int k = 0;
    opts[k++] = (cli_option){"--model", CLI_STRING, &model_path, "FILE", "model (.safetensors) (required)"};
    opts[k++] = (cli_option){"--target", CLI_STRING, &target_dummy, "T",
                             "unit to visualize, repeatable: LAYER:CHANNEL, LAYER:CHANNEL@z,y,x (or @ = centre), "
                             "LAYER (mean a^2), logit:CLASS, logit:CLASS@z,y,x (class evidence of one cell of the map before flatten), "
                             "contrast:CLASS[@z,y,x] (logit minus the mean of the others), LAYER:all, logit:all, contrast:all; "
                             "'-' prefix minimizes (required)"};
    opts[k++] = (cli_option){"--out", CLI_STRING, &out, "DIR", "output directory (required)"};
    opts[k++] = (cli_option){"--shard", CLI_STRING, &shard, "I/N",
                             "only shard I of N of the targets (contiguous blocks of the expanded list)"};
    opts[k++] = (cli_option){"--background", CLI_STRING, &background, "FILE|template|none",
                             "volume under the overlay PNG (default template = Colin27 ch2bet)"};
    opts[k++] = (cli_option){"--device", CLI_STRING, &device, "DEV", "OpenCL device (see neurofv devices)"};
    for (int i = 0; i < nvis; i++)
        opts[k++] = (cli_option){nfv_vis_option_table[i].name, CLI_STRING, &vis_values[i], nfv_vis_option_table[i].meta,
                                 nfv_vis_option_table[i].help};
    int r = cli_parse("visualize", "--model FILE --target T [--target T ...] --out DIR [options]",
                      "Optimize an input volume per target so that the unit's activation is as large as possible "
                      "(or small, with '-'), entirely on the device; write DIR/<target>.nii.gz (the model's "
                      "affine), _ortho.png, _mosaic.png, _overlay.png, <target>.json (objective per step) and "
                      "a _grid.png per `all` sweep.",
                      opts, argc, argv, NULL, 0, NULL);
    int rc = 0;
    nfv_context *ctx = NULL;
    nfv_model *m = NULL;
    nfv_target *targets = NULL;
    nfv_vis_result *res = NULL;
    int *spec_of = NULL;
    int count = 0;
    nfv_volume bg;
    memset(&bg, 0, sizeof bg);
    nfv_status st;
    if (r) {
        rc = r == 1 ? 0 : 2;
        goto done;
    }
    if (!model_path || !out || ntexts == 0) {
        rc = cli_failf("visualize", "--model, --target and --out are required (see neurofv visualize --help)");
        goto done;
    }
    nfv_vis_options o;
    nfv_vis_options_default(&o);
    for (int i = 0; i < nvis; i++)
        if (vis_values[i] && (st = nfv_vis_options_set(&o, nfv_vis_option_table[i].name, vis_values[i]))) {
            rc = cli_fail("visualize", st);
            goto done;
        }
    if ((st = nfv_vis_options_check(&o))) {
        rc = cli_fail("visualize", st);
        goto done;
    }
    int shard_i = 1, shard_n = 1;
    if (shard && (st = nfv_shard_parse(shard, &shard_i, &shard_n))) {
        rc = cli_fail("visualize", st);
        goto done;
    }
    if ((st = nfv_context_create(device, &ctx)) || (st = nfv_model_load(ctx, model_path, &m))) {
        rc = cli_fail("visualize", st);
        goto done;
    }
    /* Expand every target text; remember which text each came from (for grids). */
    for (int i = 0; i < ntexts; i++) {
        nfv_target *t = NULL;
        int n = 0;
        if ((st = nfv_target_parse(m, tlist[i], &t, &n))) {
            rc = cli_fail("visualize", st);
            goto done;
        }
        nfv_target *nt = realloc(targets, (size_t)(count + n) * sizeof *nt);
        int *ns = realloc(spec_of, (size_t)(count + n) * sizeof *ns);
        if (!nt || !ns) {
            free(t);
            free(nt ? nt : targets);
            targets = NULL;
            rc = cli_failf("visualize", "out of memory");
            goto done;
        }
        targets = nt;
        spec_of = ns;
        memcpy(targets + count, t, (size_t)n * sizeof *t);
        for (int j = 0; j < n; j++) spec_of[count + j] = i;
        count += n;
        free(t);
    }
    int all = count;
    if (shard_n > 1) {
        int w = 0;
        for (int i = 0; i < all; i++)
            if (nfv_shard_contains(i, all, shard_i, shard_n)) {
                targets[w] = targets[i];
                spec_of[w++] = spec_of[i];
            }
        count = w;
        fprintf(stderr, "visualize: shard %d/%d: %d of %d targets (contiguous block)\n", shard_i, shard_n, count, all);
        if (count == 0) goto done;
    }
    if (strcmp(background, "none")) {
        const char *bp = strcmp(background, "template") ? background : NFV_DEFAULT_TEMPLATE;
        if ((st = nfv_volume_read(bp, &bg, NULL))) {
            rc = cli_fail("visualize", st);
            goto done;
        }
    }
    cli_progress bar;
    cli_progress_start(&bar, "visualize");
    double t0 = cli_now();
    st = nfv_visualize(ctx, m, targets, count, &o, on_progress, &bar, &res);
    cli_progress_end(&bar);
    if (st) {
        rc = cli_fail("visualize", st);
        goto done;
    }
    double t1 = cli_now();
    for (int i = 0; i < count; i++) {
        if ((st = nfv_vis_write(&res[i], &o, bg.nx ? &bg : NULL, out))) {
            rc = cli_fail("visualize", st);
            goto done;
        }
        printf("%s: objective %.6g (last step, with transforms), %.6g without transforms\n", res[i].target.name,
               res[i].objective, res[i].objective_clean);
    }
    /* A grid per target text that expanded to several units. */
    for (int s = 0; s < ntexts; s++) {
        int first = -1, n = 0;
        for (int i = 0; i < count; i++)
            if (spec_of[i] == s) {
                if (first < 0) first = i;
                n++;
            }
        if (n < 2) continue;
        char stem[200];
        size_t w = 0;
        for (const char *p = tlist[s]; *p && w + 2 < sizeof stem; p++)
            stem[w++] = (*p == ':' || *p == '@' || *p == ',' || *p == '/') ? '_' : (*p == '-' && p == tlist[s]) ? 'm' : *p;
        stem[w] = 0;
        if (shard_n > 1) snprintf(stem + w, sizeof stem - w, "_shard%dof%d", shard_i, shard_n);
        if ((st = nfv_vis_write_grid(res + first, n, out, stem))) {
            rc = cli_fail("visualize", st);
            goto done;
        }
    }
    fprintf(stderr, "visualize: %d target(s), %d step(s), %.1f s optimizing, %.1f s writing; outputs in %s\n", count,
            o.steps, t1 - t0, cli_now() - t1, out);
done:
    nfv_vis_results_free(res, count);
    free(targets);
    free(spec_of);
    nfv_volume_free(&bg);
    if (m) nfv_model_free(m);
    if (ctx) nfv_context_free(ctx);
    free(vis_values);
    free(opts);
    return rc;
}
