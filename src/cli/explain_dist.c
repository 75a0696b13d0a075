/* `neurofv explain` under mpirun: each rank explains a contiguous block of
 * the subjects (its maps land where one process puts them), then every
 * rank's sums (mean maps, scores, counts, lesion regions) are added over the
 * ranks and rank 0 writes the one report: subjects.csv joined from the
 * ranks' parts in rank order (= subject order), the means, the summary.
 * The sums are in double, added rank by rank: the means can differ from one
 * process's in the last bit of a float where a double rounds differently. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "explain_cli.h"
#include "neurofv/dist.h"

void explain_subjects_part(const explain_run *r, int rank, char *path, size_t cap)
{
    snprintf(path, cap, "%s/.subjects.rank%d.csv", r->report_dir, rank);
}

/* The lesion regions of --vis: a class's region exists on a rank only when
 * it met a subject of that class; every rank makes the same ones, then ORs. */
static nfv_status reduce_regions(explain_run *r, const nfv_volume *grid)
{
    if (!r->regions) return NFV_OK;
    double *have = calloc((size_t)r->classes + 1, sizeof *have);
    if (!have) return nfv_fail(NFV_ERR_NO_MEMORY, "explain: out of memory");
    for (int c = 0; c < r->classes; c++) have[c] = r->regions[c].nx > 0;
    nfv_status st = nfv_dist_sum_doubles(have, (size_t)r->classes);
    for (int c = 0; c < r->classes && !st; c++) {
        if (have[c] == 0) continue;
        nfv_volume *reg = &r->regions[c];
        if (!reg->nx) {
            if (!grid->nx) {
                st = nfv_fail(NFV_ERR_INVALID_ARG, "explain: rank %d explained no subject", nfv_dist_rank());
                break;
            }
            if ((st = nfv_volume_clone(grid, reg))) break;
            memset(reg->data, 0, nfv_volume_numel(reg) * sizeof *reg->data);
        }
        st = nfv_dist_sum_floats(reg->data, nfv_volume_numel(reg));
        for (size_t i = 0; !st && i < nfv_volume_numel(reg); i++) reg->data[i] = reg->data[i] > 0.5f;
    }
    free(have);
    return st;
}

nfv_status explain_reduce_ranks(explain_run *r, double *input_sum, float *brain, size_t per, int *count,
                                const nfv_volume *grid)
{
    nfv_explain_summary *s = &r->sum;
    size_t means = (size_t)r->a->nmethods * (r->classes + 1) * per;
    NFV_TRY(nfv_dist_sum_doubles(r->mean_sum, means));
    NFV_TRY(nfv_dist_sum_doubles(input_sum, per));
    NFV_TRY(nfv_dist_sum_floats(brain, per));
    for (size_t v = 0; v < per; v++) brain[v] = brain[v] > 0;
    /* Counts and score sums, one buffer. */
    enum { M = NFV_EXPLAIN_METHODS };
    double buf[6 + (4 + M) * M + 2 * 64];
    int nc = r->classes + 1 <= 64 ? r->classes + 1 : 64, at = 0;
    buf[at++] = *count, buf[at++] = s->subjects, buf[at++] = s->scored, buf[at++] = s->chance;
    buf[at++] = s->spearman_n;
    for (int k = 0; k < M; k++) buf[at++] = s->seconds[k], buf[at++] = s->mass[k], buf[at++] = s->mass_sq[k],
                                buf[at++] = s->hits[k];
    for (int a = 0; a < M; a++)
        for (int b = 0; b < M; b++) buf[at++] = s->spearman[a][b];
    for (int c = 0; c < nc; c++) buf[at++] = r->mean_n[c];
    NFV_TRY(nfv_dist_sum_doubles(buf, (size_t)at));
    at = 0;
    *count = (int)buf[at++], s->subjects = (int)buf[at++], s->scored = (int)buf[at++], s->chance = buf[at++];
    s->spearman_n = (int)buf[at++];
    for (int k = 0; k < M; k++) s->seconds[k] = buf[at++], s->mass[k] = buf[at++], s->mass_sq[k] = buf[at++],
                                s->hits[k] = (int)buf[at++];
    for (int a = 0; a < M; a++)
        for (int b = 0; b < M; b++) s->spearman[a][b] = buf[at++];
    for (int c = 0; c < nc; c++) r->mean_n[c] = (int)buf[at++];
    return reduce_regions(r, grid);
}

nfv_status explain_join_subjects(const explain_run *r)
{
    char final[4200], part[4200];
    snprintf(final, sizeof final, "%s/subjects.csv", r->report_dir);
    nfv_atomic_file af;
    NFV_TRY(nfv_atomic_open(&af, final, "w"));
    nfv_status st = NFV_OK;
    char buf[1 << 15];
    for (int rank = 0; rank < nfv_dist_size() && !st; rank++) {
        explain_subjects_part(r, rank, part, sizeof part);
        FILE *f = fopen(part, "rb");
        if (!f) {
            st = nfv_fail(NFV_ERR_IO, "%s: cannot open rank %d's rows: %s", part, rank, strerror(errno));
            break;
        }
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, af.f);
        fclose(f);
    }
    if (st) {
        nfv_atomic_abort(&af);
        return st;
    }
    NFV_TRY(nfv_atomic_commit(&af));
    for (int rank = 0; rank < nfv_dist_size(); rank++) {
        explain_subjects_part(r, rank, part, sizeof part);
        unlink(part);
    }
    return NFV_OK;
}
