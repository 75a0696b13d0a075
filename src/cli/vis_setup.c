/* Setup shared by `neurofv visualize` and `neurofv compare`; see vis_setup.h. */
#include "vis_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vis_take_multi(const char *command, const char *name, int *argc, char **argv, const char **vals, int *nvals)
{
    size_t len = strlen(name);
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, name)) {
            if (i + 1 >= *argc) return fprintf(stderr, "neurofv %s: %s needs a value\n", command, name), 2;
            v = argv[++i];
        } else if (!strncmp(a, name, len) && a[len] == '=') {
            v = a + len + 1;
        }
        if (v) {
            if (*nvals >= VIS_SETUP_MAX_MULTI) return fprintf(stderr, "neurofv %s: too many %s\n", command, name), 2;
            vals[(*nvals)++] = v;
        } else {
            argv[w++] = argv[i];
        }
    }
    *argc = w;
    return 0;
}

int vis_cli_init(vis_cli *c, const char *command, const cli_option *own, int nown)
{
    memset(c, 0, sizeof *c);
    while (nfv_vis_option_table[c->nvis].name) c->nvis++;
    c->vis_values = calloc((size_t)c->nvis, sizeof *c->vis_values);
    c->opts = calloc((size_t)(nown + c->nvis + 1), sizeof *c->opts);
    if (!c->vis_values || !c->opts) {
        vis_cli_free(c);
        return cli_failf(command, "out of memory");
    }
    memcpy(c->opts, own, (size_t)nown * sizeof *own);
    for (int i = 0; i < c->nvis; i++) {
        const nfv_vis_option_info *info = &nfv_vis_option_table[i];
        c->opts[nown + i] = (cli_option){info->name, CLI_STRING, &c->vis_values[i], info->meta, info->help};
    }
    return 0;
}

void vis_cli_free(vis_cli *c)
{
    free(c->opts);
    free(c->vis_values);
    memset(c, 0, sizeof *c);
}

nfv_status vis_cli_options(const vis_cli *c, nfv_vis_options *o)
{
    for (int i = 0; i < c->nvis; i++)
        if (c->vis_values[i]) NFV_TRY(nfv_vis_options_set(o, nfv_vis_option_table[i].name, c->vis_values[i]));
    return NFV_OK;
}

nfv_status vis_session_open(vis_session *s, const char *device, const char *model_path)
{
    NFV_TRY(nfv_context_create(device, &s->ctx));
    return nfv_model_open(s->ctx, model_path, &s->m);
}

nfv_status vis_session_targets(vis_session *s, const char *const *texts, int ntexts)
{
    for (int i = 0; i < ntexts; i++) {
        nfv_target *t = NULL;
        int n = 0;
        NFV_TRY(nfv_target_parse(s->m, texts[i], &t, &n));
        nfv_target *nt = realloc(s->targets, (size_t)(s->count + n) * sizeof *nt);
        if (nt) s->targets = nt;
        int *no = nt ? realloc(s->text_of, (size_t)(s->count + n) * sizeof *no) : NULL;
        if (no) s->text_of = no;
        if (!nt || !no) {
            free(t);
            return nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
        }
        memcpy(s->targets + s->count, t, (size_t)n * sizeof *t);
        for (int j = 0; j < n; j++) s->text_of[s->count + j] = i;
        s->count += n;
        free(t);
    }
    return NFV_OK;
}

nfv_status vis_session_background(vis_session *s, const char *background)
{
    if (!strcmp(background, "none")) return NFV_OK;
    const char *path = strcmp(background, "template") ? background : NFV_DEFAULT_TEMPLATE;
    return nfv_volume_read(path, &s->background, NULL);
}

const nfv_volume *vis_session_overlay(const vis_session *s) { return s->background.nx ? &s->background : NULL; }

void vis_session_free(vis_session *s)
{
    free(s->targets);
    free(s->text_of);
    nfv_volume_free(&s->background);
    if (s->m) nfv_model_free(s->m);
    if (s->ctx) nfv_context_free(s->ctx);
    memset(s, 0, sizeof *s);
}

void vis_on_progress(void *user, int b, int nb, int step, int steps, const float *obj, int n)
{
    cli_progress *p = user;
    double mean = 0;
    for (int i = 0; i < n; i++) mean += obj[i];
    char extra[96];
    snprintf(extra, sizeof extra, "batch %d/%d objective %.4g", b + 1, nb, n ? mean / n : 0.0);
    cli_progress_update(p, (long)b * steps + step, (long)nb * steps, extra);
}

nfv_status vis_pick_batch(const vis_session *s, const nfv_target *targets, int count, nfv_vis_options *o,
                          const char *command, const char *what)
{
    /* A batch never holds more than the run's samples: 3 targets time batch 3, not 8. */
    int samples = count * o->starts, batch = o->batch < samples ? o->batch : samples;
    if (o->diversity > 0 || !nfv_vis_batch_worth_probing(samples, o->steps, batch)) return NFV_OK;
    nfv_vis_batch_probe p;
    NFV_TRY(nfv_vis_probe_batch(s->ctx, s->m, &targets[0], o, batch, &p));
    fprintf(stderr,
            "%s: %s%sbatch %d: %.2f ms per sample-step at batch 1, %.2f at batch %d (timed on %s); results do not "
            "depend on the batch, --batch B fixes it\n",
            command, what ? what : "", what ? ": " : "", p.chosen, p.ms_per_sample[0], p.ms_per_sample[1], p.batch[1],
            targets[0].name);
    if (p.chosen == 1) o->batch = 1;
    return NFV_OK;
}

const char *vis_cli_value(const vis_cli *c, const char *name)
{
    for (int i = 0; i < c->nvis; i++)
        if (!strcmp(nfv_vis_option_table[i].name, name)) return c->vis_values[i];
    return NULL;
}

nfv_status vis_fit_batch(const vis_session *s, const nfv_target *targets, int count, nfv_vis_options *o,
                         int auto_batch, const char *command, const char *what)
{
    int asked = o->batch;
    NFV_TRY(nfv_vis_fit_batch(s->ctx, s->m, targets, count, o, auto_batch, what));
    if (o->batch == asked) return NFV_OK;
    nfv_memory_estimate a, b;
    nfv_vis_options ao = *o;
    ao.batch = asked;
    nfv_vis_memory(s->ctx, s->m, targets, count, &ao, &a);
    nfv_vis_memory(s->ctx, s->m, targets, count, o, &b);
    nfv_device_memory d = nfv_context_device_memory(s->ctx);
    double mib = 1024.0 * 1024.0;
    fprintf(stderr,
            "%s: %s%sbatch %d would need %.1f MiB of device memory but %s has %.1f MiB%s: using batch %d (%.1f MiB); "
            "results do not depend on the batch\n",
            command, what ? what : "", what ? ": " : "", asked, a.total / mib, nfv_context_device_info(s->ctx)->name, d.global_bytes / mib,
            d.from_config ? " (from NEUROFV_KERNEL_CONFIG mem=)" : "", o->batch, b.total / mib);
    return NFV_OK;
}

nfv_status vis_resume_todo(vis_resume *r, const nfv_target *targets, int count)
{
    free(r->todo);
    r->todo = malloc((size_t)(count > 0 ? count : 1) * sizeof *r->todo);
    if (!r->todo) return nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
    r->ndone = r->ntodo = 0;
    for (int i = 0; i < count; i++) {
        if (r->done[i]) r->ndone++;
        else r->todo[r->ntodo++] = targets[i];
    }
    return NFV_OK;
}

nfv_status vis_resume_scan(vis_resume *r, const vis_session *s, const nfv_target *targets, int count,
                           const nfv_vis_options *o, const char *dir, int resume)
{
    memset(r, 0, sizeof *r);
    r->done = calloc((size_t)(count > 0 ? count : 1), sizeof *r->done);
    if (!r->done) return nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
    int overlay = vis_session_overlay(s) != NULL;
    for (int i = 0; resume && i < count; i++)
        NFV_TRY(nfv_vis_outputs_complete(&targets[i], o, overlay, dir, &r->done[i]));
    return vis_resume_todo(r, targets, count);
}

nfv_status vis_resume_results(const vis_resume *r, const vis_session *s, const nfv_target *targets, int count,
                              const nfv_vis_options *o, const char *dir, nfv_vis_result *computed,
                              nfv_vis_result **all)
{
    *all = calloc((size_t)(count > 0 ? count : 1), sizeof **all);
    if (!*all) {
        nfv_vis_results_free(computed, r->ntodo);
        return nfv_fail(NFV_ERR_NO_MEMORY, "out of memory");
    }
    for (int i = 0, k = 0; i < count; i++)
        if (!r->done[i] && computed) (*all)[i] = computed[k++]; /* moved: the arrays now belong to *all */
    free(computed);
    nfv_status st = NFV_OK;
    for (int i = 0; i < count && !st; i++)
        if (r->done[i]) st = nfv_vis_result_read(s->m, &targets[i], o, dir, &(*all)[i]);
    if (st) {
        nfv_vis_results_free(*all, count);
        *all = NULL;
    }
    return st;
}

void vis_resume_free(vis_resume *r)
{
    free(r->done);
    free(r->todo);
    memset(r, 0, sizeof *r);
}
