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
    return nfv_model_load(s->ctx, model_path, &s->m);
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
