/* The bounded volume cache of datasets (preprocessed volumes on demand, LRU
 * eviction); see include/neurofv/volume.h.  Split from dataset.c, which
 * parses the CSV. */
#include "neurofv/volume.h"

#include <stdlib.h>
#include <string.h>

#include "neurofv/status.h"

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- volume cache ---------------------------------------------------------- */

struct nfv_volume_cache {
    nfv_grid grid;
    size_t cap_bytes, used_bytes, entry_bytes;
    int count;                     /* rows */
    char **paths;                  /* copies: the dataset may be freed first */
    int *csv_lines;
    float **entries;               /* NULL when not resident */
    unsigned long long *last_use;  /* LRU clock per row */
    unsigned long long clock;
    int resident;
    long hits, misses;
    char *csv_path;
};

void nfv_volume_cache_free(nfv_volume_cache *c)
{
    if (!c) return;
    for (int i = 0; i < c->count; i++) {
        if (c->paths) free(c->paths[i]);
        if (c->entries) free(c->entries[i]);
    }
    free(c->paths);
    free(c->entries);
    free(c->csv_lines);
    free(c->last_use);
    free(c->csv_path);
    free(c);
}

nfv_status nfv_volume_cache_create(const nfv_dataset *ds, const nfv_grid *grid, size_t cap_bytes,
                                   nfv_volume_cache **out)
{
    if (!out) return nfv_fail(NFV_ERR_INVALID_ARG, "volume cache: NULL output");
    *out = NULL;
    if (!ds || !grid || ds->count < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "volume cache: empty dataset");
    if (grid->nx < 1 || grid->ny < 1 || grid->nz < 1)
        return nfv_fail(NFV_ERR_INVALID_ARG, "volume cache: invalid grid %dx%dx%d", grid->nx, grid->ny, grid->nz);
    nfv_volume_cache *c = calloc(1, sizeof *c);
    if (!c) return nfv_fail(NFV_ERR_NO_MEMORY, "volume cache: out of memory");
    c->grid = *grid;
    c->cap_bytes = cap_bytes;
    c->entry_bytes = (size_t)grid->nx * grid->ny * grid->nz * sizeof(float);
    c->count = ds->count;
    c->paths = calloc((size_t)ds->count, sizeof *c->paths);
    c->csv_lines = calloc((size_t)ds->count, sizeof *c->csv_lines);
    c->entries = calloc((size_t)ds->count, sizeof *c->entries);
    c->last_use = calloc((size_t)ds->count, sizeof *c->last_use);
    c->csv_path = dup_string(ds->csv_path ? ds->csv_path : "dataset");
    int ok = c->paths && c->csv_lines && c->entries && c->last_use && c->csv_path;
    for (int i = 0; ok && i < ds->count; i++) {
        c->paths[i] = dup_string(ds->rows[i].path);
        c->csv_lines[i] = ds->rows[i].csv_line;
        ok = c->paths[i] != NULL;
    }
    if (!ok) {
        nfv_volume_cache_free(c);
        return nfv_fail(NFV_ERR_NO_MEMORY, "volume cache: out of memory");
    }
    *out = c;
    return NFV_OK;
}

nfv_status nfv_volume_cache_get(nfv_volume_cache *c, int row, const float **data)
{
    if (!c || !data) return nfv_fail(NFV_ERR_INVALID_ARG, "volume cache: NULL argument");
    if (row < 0 || row >= c->count)
        return nfv_fail(NFV_ERR_INVALID_ARG, "volume cache: row %d out of range (0..%d)", row, c->count - 1);
    c->clock++;
    if (c->entries[row]) {
        c->hits++;
        c->last_use[row] = c->clock;
        *data = c->entries[row];
        return NFV_OK;
    }
    c->misses++;
    nfv_volume raw, pre;
    nfv_status s = nfv_volume_read(c->paths[row], &raw, NULL);
    if (s == NFV_OK) {
        s = nfv_preprocess(&raw, &c->grid, &pre);
        nfv_volume_free(&raw);
    }
    if (s != NFV_OK) return nfv_fail_context(s, "%s line %d", c->csv_path, c->csv_lines[row]);
    /* Evict least recently used volumes until the new one fits; the cap may
     * be smaller than one volume, then only the newest stays. */
    while (c->resident > 0 && c->used_bytes + c->entry_bytes > c->cap_bytes) {
        int victim = -1;
        for (int i = 0; i < c->count; i++)
            if (c->entries[i] && (victim < 0 || c->last_use[i] < c->last_use[victim])) victim = i;
        free(c->entries[victim]);
        c->entries[victim] = NULL;
        c->used_bytes -= c->entry_bytes;
        c->resident--;
    }
    c->entries[row] = pre.data; /* ownership moves to the cache */
    c->last_use[row] = c->clock;
    c->used_bytes += c->entry_bytes;
    c->resident++;
    *data = pre.data;
    return NFV_OK;
}

void nfv_volume_cache_get_stats(const nfv_volume_cache *c, nfv_volume_cache_stats *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!c) return;
    out->bytes = c->used_bytes;
    out->cap_bytes = c->cap_bytes;
    out->resident = c->resident;
    out->hits = c->hits;
    out->misses = c->misses;
}
