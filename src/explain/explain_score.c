/* Scores of attribution maps against a planted truth and between methods;
 * definitions in include/neurofv/explain.h.  Sums in double. */
#include <math.h>
#include <stdlib.h>

#include "neurofv/explain.h"

double nfv_explain_mass_in(const float *map, const float *mask, size_t n)
{
    double in = 0, all = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)map[i]);
        all += a;
        if (mask[i] > 0.5f) in += a;
    }
    return all > 0 ? in / all : 0.0;
}

int nfv_explain_pointing(const float *map, const float *mask, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(map[i]) > fabsf(map[best])) best = i;
    return n && mask[best] > 0.5f;
}

typedef struct ranked {
    float v;
    size_t i;
} ranked;

static int by_value(const void *a, const void *b)
{
    float x = ((const ranked *)a)->v, y = ((const ranked *)b)->v;
    return x < y ? -1 : x > y;
}

/* Ranks (1-based, ties averaged) of |v| over the k selected voxels. */
static int ranks_of(const float *v, const size_t *sel, size_t k, double *rank)
{
    ranked *r = malloc((k ? k : 1) * sizeof *r);
    if (!r) return -1;
    for (size_t j = 0; j < k; j++) r[j] = (ranked){fabsf(v[sel[j]]), j};
    qsort(r, k, sizeof *r, by_value);
    for (size_t a = 0; a < k;) {
        size_t b = a;
        while (b + 1 < k && r[b + 1].v == r[a].v) b++;
        double mean = 0.5 * (double)(a + b) + 1.0;
        for (size_t j = a; j <= b; j++) rank[r[j].i] = mean;
        a = b + 1;
    }
    free(r);
    return 0;
}

static double pearson_d(const double *a, const double *b, size_t k)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (size_t j = 0; j < k; j++) ma += a[j], mb += b[j];
    ma /= (double)k, mb /= (double)k;
    for (size_t j = 0; j < k; j++) {
        double da = a[j] - ma, db = b[j] - mb;
        sab += da * db, saa += da * da, sbb += db * db;
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* The indices of the voxels where `where` > 0 (all when NULL). */
static size_t *selection(const float *where, size_t n, size_t *k)
{
    size_t *sel = malloc((n ? n : 1) * sizeof *sel);
    *k = 0;
    if (!sel) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!where || where[i] > 0) sel[(*k)++] = i;
    return sel;
}

double nfv_explain_spearman(const float *a, const float *b, const float *where, size_t n)
{
    size_t k;
    size_t *sel = selection(where, n, &k);
    double *ra = malloc((k ? k : 1) * sizeof *ra), *rb = malloc((k ? k : 1) * sizeof *rb);
    double r = NAN;
    if (sel && ra && rb && k > 1 && !ranks_of(a, sel, k, ra) && !ranks_of(b, sel, k, rb)) r = pearson_d(ra, rb, k);
    free(sel), free(ra), free(rb);
    return r;
}

double nfv_explain_pearson(const float *a, const float *b, const float *where, size_t n)
{
    size_t k;
    size_t *sel = selection(where, n, &k);
    double *da = malloc((k ? k : 1) * sizeof *da), *db = malloc((k ? k : 1) * sizeof *db);
    double r = NAN;
    if (sel && da && db && k > 1) {
        for (size_t j = 0; j < k; j++) da[j] = a[sel[j]], db[j] = b[sel[j]];
        r = pearson_d(da, db, k);
    }
    free(sel), free(da), free(db);
    return r;
}
