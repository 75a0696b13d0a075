/* `neurofv compare`: run named regularization configurations on the same
 * targets and seeds and write results.csv, results.md and index.html. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "neurofv/render.h"
#include "neurofv/compare.h"
#include "neurofv/vis.h"

NFV_COMMAND(compare, "compare", "Compare regularization configurations of feature visualization (CSV/MD/HTML report)")

#define MAX_MULTI 256

/* Pull every "--NAME X" / "--NAME=X" out of argv (the option may repeat). */
static int take_multi(const char *name, int *argc, char **argv, const char **vals, int *nvals)
{
    size_t len = strlen(name);
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, name)) {
            if (i + 1 >= *argc) return fprintf(stderr, "neurofv compare: %s needs a value\n", name), 2;
            v = argv[++i];
        } else if (!strncmp(a, name, len) && a[len] == '=') {
            v = a + len + 1;
        }
        if (v) {
            if (*nvals >= MAX_MULTI) return fprintf(stderr, "neurofv compare: too many %s\n", name), 2;
            vals[(*nvals)++] = v;
        } else {
            argv[w++] = argv[i];
        }
    }
    *argc = w;
    return 0;
}

static void on_progress(void *user, int b, int nb, int step, int steps, const float *obj, int n)
{
    cli_progress *p = user;
    double mean = 0;
    for (int i = 0; i < n; i++) mean += obj[i];
    char extra[96];
    snprintf(extra, sizeof extra, "batch %d/%d objective %.4g", b + 1, nb, n ? mean / n : 0.0);
    cli_progress_update(p, (long)b * steps + step, (long)nb * steps, extra);
}

/* DIR/<stem>_match.png: the visualization's orthogonal slices through the
 * world point (mm) where its own shape template matched best. */
static nfv_status write_match_png(const nfv_volume *v, const double at[3], const char *dir, const char *stem)
{
    nfv_render_options ro;
    nfv_render_options_default(&ro);
    nfv_image im;
    memset(&im, 0, sizeof im);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s_match.png", dir, stem);
    nfv_status st = nfv_render_ortho(v, &ro, at, &im);
    if (!st) st = nfv_image_write_png(path, &im);
    nfv_image_free(&im);
    return st ? nfv_fail_context(st, "%s", path) : NFV_OK;
}

/* "1,2,3" -> seeds; NULL -> the one fallback seed. */
static nfv_status parse_seeds(const char *text, unsigned long long fallback, unsigned long long **out, int *n)
{
    *n = 1;
    if (text)
        for (const char *p = text; *p; p++) *n += *p == ',';
    if (*n > 64) return nfv_fail(NFV_ERR_INVALID_ARG, "--seeds: at most 64 seeds, got %d", *n);
    *out = malloc((size_t)*n * sizeof **out);
    if (!*out) return nfv_fail(NFV_ERR_NO_MEMORY, "--seeds: out of memory");
    if (!text) {
        (*out)[0] = fallback;
        return NFV_OK;
    }
    const char *p = text;
    for (int i = 0; i < *n; i++) {
        char *end = NULL;
        errno = 0;
        if (*p >= '0' && *p <= '9') (*out)[i] = strtoull(p, &end, 10);
        if (!end || errno || (*end && *end != ',') || (*end == ',' && i == *n - 1))
            return nfv_fail(NFV_ERR_INVALID_ARG, "--seeds expects S1,S2,... (unsigned integers), got \"%s\"", text);
        for (int j = 0; j < i; j++)
            if ((*out)[j] == (*out)[i])
                return nfv_fail(NFV_ERR_INVALID_ARG, "--seeds: seed %llu is given twice", (*out)[i]);
        p = end + (*end == ',');
    }
    return NFV_OK;
}

int cmd_compare(int argc, char **argv)
{
    const char *model_path = NULL, *out = NULL, *device = NULL, *truth_dir = NULL, *only = NULL,
               *background = "template", *seeds_text = NULL;
    const char *tlist[MAX_MULTI], *clist[MAX_MULTI];
    int ntexts = 0, ncfg_args = 0;
    if (take_multi("--target", &argc, argv, tlist, &ntexts) || take_multi("--config", &argc, argv, clist, &ncfg_args))
        return 2;
    int nvis = 0;
    while (nfv_vis_option_table[nvis].name) nvis++;
    const char **vis_values = calloc((size_t)nvis, sizeof *vis_values);
    cli_option *opts = calloc((size_t)nvis + 17, sizeof *opts);
    if (!vis_values || !opts) return cli_failf("compare", "out of memory");
    static const char *dummy_t, *dummy_c;
    int k = 0;
    opts[k++] = (cli_option){"--model", CLI_STRING, &model_path, "FILE", "model (.safetensors) (required)"};
    opts[k++] = (cli_option){"--target", CLI_STRING, &dummy_t, "T", "target(s), repeatable, as for visualize (required)"};
    opts[k++] = (cli_option){"--out", CLI_STRING, &out, "DIR", "output directory (required)"};
    opts[k++] = (cli_option){"--truth", CLI_STRING, &truth_dir, "SYNTH_DIR",
                             "a `neurofv synth --task lesion` output: score concept recovery of logit:CLASS targets "
                             "against shapes/<CLASS>.nii.gz, the template box inside mask.nii.gz"};
    opts[k++] = (cli_option){"--config", CLI_STRING, &dummy_c, "NAME=OPTIONS",
                             "add or override a configuration, repeatable (e.g. --config 'l2=--l2 0.5'); defaults: "
                             "none, l2, tv, blur, robust, fourier, fourier+robust, all, all-no-mask"};
    opts[k++] = (cli_option){"--configs", CLI_STRING, &only, "A,B,...", "run only these configurations (by name)"};
    opts[k++] = (cli_option){"--seeds", CLI_STRING, &seeds_text, "S1,S2,...",
                             "run every configuration once per seed (outputs in DIR/<config>/seed<S>/); the report "
                             "counts, per configuration, the seeds in which every class is recovered (default: the one "
                             "--seed)"};
    opts[k++] = (cli_option){"--background", CLI_STRING, &background, "FILE|template|none",
                             "volume under the overlay PNGs (default template = Colin27 ch2bet)"};
    opts[k++] = (cli_option){"--device", CLI_STRING, &device, "DEV", "OpenCL device"};
    for (int i = 0; i < nvis; i++)
        opts[k++] = (cli_option){nfv_vis_option_table[i].name, CLI_STRING, &vis_values[i], nfv_vis_option_table[i].meta,
                                 nfv_vis_option_table[i].help};
    int r = cli_parse("compare", "--model FILE --target T [...] --out DIR [--truth SYNTH_DIR] [--config NAME=OPTS ...]",
                      "Run every regularization configuration on the same targets and seeds (the visualization "
                      "options given here apply to all, before each configuration's own), write DIR/<config>/ "
                      "outputs and DIR/results.csv, results.md, index.html: objective reached, objective without "
                      "transforms, high-frequency energy share and, with --truth, concept recovery.",
                      opts, argc, argv, NULL, 0, NULL);
    int rc = 0;
    nfv_context *ctx = NULL;
    nfv_model *m = NULL;
    nfv_target *targets = NULL;
    nfv_compare_config *configs = NULL;
    nfv_compare_row *rows = NULL;
    unsigned long long *seeds = NULL;
    int count = 0, nconfigs = 0, nrows = 0, nseeds = 1;
    nfv_truth truth;
    memset(&truth, 0, sizeof truth);
    nfv_volume bg;
    memset(&bg, 0, sizeof bg);
    nfv_status st;
    if (r) {
        rc = r == 1 ? 0 : 2;
        goto done;
    }
    if (!model_path || !out || !ntexts) {
        rc = cli_failf("compare", "--model, --target and --out are required (see neurofv compare --help)");
        goto done;
    }
    nfv_vis_options base;
    nfv_vis_options_default(&base);
    for (int i = 0; i < nvis; i++)
        if (vis_values[i] && (st = nfv_vis_options_set(&base, nfv_vis_option_table[i].name, vis_values[i]))) {
            rc = cli_fail("compare", st);
            goto done;
        }
    if ((st = parse_seeds(seeds_text, base.seed, &seeds, &nseeds))) {
        rc = cli_fail("compare", st);
        goto done;
    }
    if ((st = nfv_compare_default_configs(&configs, &nconfigs))) {
        rc = cli_fail("compare", st);
        goto done;
    }
    for (int i = 0; i < ncfg_args; i++) {
        const char *eq = strchr(clist[i], '=');
        if (!eq || eq == clist[i] || eq - clist[i] >= 64) {
            rc = cli_failf("compare", "--config expects NAME=OPTIONS (e.g. 'l2=--l2 0.5'), got \"%s\"", clist[i]);
            goto done;
        }
        int c = 0;
        while (c < nconfigs && (strlen(configs[c].name) != (size_t)(eq - clist[i]) ||
                                strncmp(configs[c].name, clist[i], (size_t)(eq - clist[i]))))
            c++;
        if (c == nconfigs) {
            nfv_compare_config *p = realloc(configs, (size_t)(nconfigs + 1) * sizeof *p);
            if (!p) {
                rc = cli_failf("compare", "out of memory");
                goto done;
            }
            configs = p;
            nconfigs++;
            snprintf(configs[c].name, sizeof configs[c].name, "%.*s", (int)(eq - clist[i]), clist[i]);
        }
        snprintf(configs[c].options, sizeof configs[c].options, "%s", eq + 1);
    }
    if (only) {
        int w = 0;
        for (int c = 0; c < nconfigs; c++) {
            const char *p = only;
            int keep = 0;
            size_t len = strlen(configs[c].name);
            while (*p) {
                const char *e = strchr(p, ',');
                size_t l = e ? (size_t)(e - p) : strlen(p);
                keep |= l == len && !strncmp(p, configs[c].name, l);
                p += l + (e ? 1 : 0);
            }
            if (keep) configs[w++] = configs[c];
        }
        if (!w) {
            rc = cli_failf("compare", "--configs %s names no configuration", only);
            goto done;
        }
        nconfigs = w;
    }
    /* Check every configuration's options before any work. */
    for (int c = 0; c < nconfigs; c++) {
        nfv_vis_options o = base;
        if ((st = nfv_vis_options_parse(&o, configs[c].options)) || (st = nfv_vis_options_check(&o))) {
            rc = cli_failf("compare", "configuration %s: %s", configs[c].name, nfv_error_message());
            goto done;
        }
    }
    if ((st = nfv_context_create(device, &ctx)) || (st = nfv_model_load(ctx, model_path, &m))) {
        rc = cli_fail("compare", st);
        goto done;
    }
    for (int i = 0; i < ntexts; i++) {
        nfv_target *t = NULL;
        int n = 0;
        if ((st = nfv_target_parse(m, tlist[i], &t, &n))) {
            rc = cli_fail("compare", st);
            goto done;
        }
        nfv_target *nt = realloc(targets, (size_t)(count + n) * sizeof *nt);
        if (!nt) {
            free(t);
            rc = cli_failf("compare", "out of memory");
            goto done;
        }
        targets = nt;
        memcpy(targets + count, t, (size_t)n * sizeof *t);
        count += n;
        free(t);
    }
    if (truth_dir && (st = nfv_truth_load(m, truth_dir, &truth))) {
        rc = cli_fail("compare", st);
        goto done;
    }
    if (strcmp(background, "none")) {
        const char *bp = strcmp(background, "template") ? background : NFV_DEFAULT_TEMPLATE;
        if ((st = nfv_volume_read(bp, &bg, NULL))) {
            rc = cli_fail("compare", st);
            goto done;
        }
    }
    rows = calloc((size_t)nconfigs * nseeds * count, sizeof *rows);
    double *scores = calloc((size_t)(truth.count ? truth.count : 1), sizeof *scores);
    int(*positions)[3] = calloc((size_t)(truth.count ? truth.count : 1), sizeof *positions);
    if (!rows || !scores || !positions) {
        free(scores);
        free(positions);
        rc = cli_failf("compare", "out of memory");
        goto done;
    }
    for (int run = 0; run < nconfigs * nseeds && !rc; run++) {
        int c = run / nseeds;
        nfv_vis_options o = base;
        nfv_vis_options_parse(&o, configs[c].options);
        /* --seeds replaces any --seed, also one inside a configuration. */
        if (seeds_text) o.seed = seeds[run % nseeds];
        char sub[96], dir[4200], label[128];
        if (nseeds > 1)
            snprintf(sub, sizeof sub, "%s/seed%llu", configs[c].name, o.seed);
        else
            snprintf(sub, sizeof sub, "%s", configs[c].name);
        snprintf(dir, sizeof dir, "%s/%s", out, sub);
        snprintf(label, sizeof label, "compare %s", sub);
        cli_progress bar;
        cli_progress_start(&bar, label);
        nfv_vis_result *res = NULL;
        double t0 = cli_now();
        st = nfv_visualize(ctx, m, targets, count, &o, on_progress, &bar, &res);
        cli_progress_end(&bar);
        if (st) {
            rc = cli_failf("compare", "configuration %s: %s", configs[c].name, nfv_error_message());
            break;
        }
        double secs = cli_now() - t0;
        for (int i = 0; i < count && !rc; i++) {
            nfv_compare_row *row = &rows[nrows++];
            snprintf(row->config, sizeof row->config, "%s", configs[c].name);
            snprintf(row->dir, sizeof row->dir, "%s", sub);
            row->seed = o.seed;
            snprintf(row->target, sizeof row->target, "%s", res[i].target.name);
            nfv_target_stem(&res[i].target, row->stem, sizeof row->stem);
            row->objective = res[i].objective;
            row->objective_clean = res[i].objective_clean;
            row->seconds = res[i].seconds;
            const nfv_volume *shown = res[i].change.nx ? &res[i].change : &res[i].volume;
            if ((st = nfv_vis_write(&res[i], &o, bg.nx ? &bg : NULL, dir)) ||
                (st = nfv_highfreq_share(ctx, shown, 0.25, &row->hf_share))) {
                rc = cli_fail("compare", st);
                break;
            }
            if (truth.count) {
                row->has_truth = 1;
                if ((st = nfv_truth_scores(&truth, shown, scores, positions))) {
                    rc = cli_fail("compare", st);
                    break;
                }
                int best = 0, own = -1;
                for (int s = 0; s < truth.count; s++) {
                    if (scores[s] > scores[best]) best = s;
                    /* The class's own shape: logit:CLASS or contrast:CLASS (@cell or not), CLASS a shape name (maximized). */
                    const char *cls = !strncmp(row->target, "logit:", 6)      ? row->target + 6
                                      : !strncmp(row->target, "contrast:", 9) ? row->target + 9
                                                                              : NULL;
                    size_t len = cls ? strcspn(cls, "@") : 0;
                    if (cls && len == strlen(truth.names[s]) && !strncmp(cls, truth.names[s], len)) own = s;
                }
                snprintf(row->best_shape, sizeof row->best_shape, "%s", truth.names[best]);
                row->best_score = scores[best];
                if (own >= 0) {
                    snprintf(row->truth_class, sizeof row->truth_class, "%s", truth.names[own]);
                    row->own_score = scores[own];
                    row->recovered = own == best;
                    double other = -2.0; /* NCC is in [-1, 1] */
                    for (int s = 0; s < truth.count; s++)
                        if (s != own && scores[s] > other) other = scores[s];
                    row->margin = truth.count > 1 ? scores[own] - other : NAN;
                    const int *p = positions[own];
                    for (int d = 0; d < 3; d++)
                        row->own_mm[d] = shown->affine[d][0] * p[0] + shown->affine[d][1] * p[1] +
                                         shown->affine[d][2] * p[2] + shown->affine[d][3];
                    if ((st = write_match_png(shown, row->own_mm, dir, row->stem))) {
                        rc = cli_fail("compare", st);
                        break;
                    }
                }
            }
        }
        nfv_vis_results_free(res, count);
        if (!rc) {
            int rec = 0, tot = 0;
            double mo = 0, mh = 0;
            for (int i = nrows - count; i < nrows; i++) {
                mo += rows[i].objective;
                mh += rows[i].hf_share;
                if (rows[i].truth_class[0]) {
                    tot++;
                    rec += rows[i].recovered;
                }
            }
            printf("%-16s mean objective %.4g, mean HF share %.3f", sub, mo / count, mh / count);
            if (truth.count) printf(", classes recovered %d/%d", rec, tot);
            printf(" (%.1f s)\n", secs);
            fflush(stdout);
        }
    }
    free(scores);
    free(positions);
    /* Over the seeds: how often each configuration drew every class. */
    for (int c = 0; c < nconfigs && !rc && truth.count && nseeds > 1; c++) {
        char text[512];
        int rec = 0, tot = 0;
        for (int i = 0; i < nrows; i++)
            if (!strcmp(rows[i].config, configs[c].name) && rows[i].truth_class[0]) {
                tot++;
                rec += rows[i].recovered;
            }
        nfv_compare_recovery_text(configs[c].name, rows, nrows, text, sizeof text);
        printf("%-16s %d seeds: classes recovered %d/%d; every class recovered in %s\n", configs[c].name, nseeds, rec,
               tot, text);
    }
    if (!rc && (st = nfv_compare_write_report(out, model_path, configs, nconfigs, rows, nrows)))
        rc = cli_fail("compare", st);
    if (!rc) fprintf(stderr, "compare: wrote %s/index.html, results.csv, results.md\n", out);
done:
    nfv_truth_free(&truth);
    nfv_volume_free(&bg);
    free(rows);
    free(seeds);
    free(configs);
    free(targets);
    if (m) nfv_model_free(m);
    if (ctx) nfv_context_free(ctx);
    free(vis_values);
    free(opts);
    return rc;
}
