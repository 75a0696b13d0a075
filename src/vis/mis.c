/* An interpretability score without ground truth: the 2AFC task of Borowski
 * et al. (ICLR 2021), automated as in the Machine Interpretability Score of
 * Zimmermann, Klindt & Brendel (NeurIPS 2024).  For a unit and its
 * visualization: draw pairs of real subjects, one strongly activating (top
 * quartile of the cohort's objective) and one weakly (bottom quartile), and
 * predict that the one more similar to the visualization activates more.
 * The score is the share of correct predictions (0.5 = chance).
 *
 * Similarity of a subject s to the visualization v: how well the pattern v
 * shows where the model looks in it appears anywhere in s, as a person doing
 * the task would look for it:
 *   pattern: the box of half-side R mm (the focus share's radius, 24 mm by
 *            default) around v's focus (nfv_focus_centre: where |d objective
 *            / d x (v) * (v - mean subject)| is densest) is cut out of v, and
 *            s scores its best Pearson correlation (NCC) with that box at any
 *            position (nfv_ncc_bank_search).
 * Shift-invariant because a unit (a class logit, a late channel) answers to
 * its pattern wherever it lies; the synthetic lesions and real findings lie
 * in a different place in every subject.  An earlier version correlated s
 * and v voxel by voxel inside v's receptive field at v's own positions: on
 * make demo's 36 runs (12 configurations x 3 seeds, 3 mm) that term judged
 * 0.49-0.55 of the pairs, chance, in every configuration.
 *
 * Also reported, not part of the score, the feature term:
 *   act:     cosine of the channel means at an earlier layer (the last
 *            (C, D, H, W) layer before the target's), each channel
 *            standardized by the cohort's mean and SD: "does s excite the
 *            same earlier features as v", blind to where they are.  Any
 *            picture that drives the unit passes it (0.74-1.00 on the same
 *            runs, whether or not the picture shows the class's shape), so
 *            it measures activation, not what a reader can see.
 * A tie counts half.  The confidence interval is Wilson's (95 %) on the
 * pairs; pairs share subjects, so it is narrower than a bootstrap over
 * subjects would be. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "neurofv/compare.h"
#include "neurofv/vis_ops.h"

void nfv_wilson(double k, int n, double *lo, double *hi)
{
    if (n <= 0) {
        *lo = 0, *hi = 1;
        return;
    }
    const double z = 1.959964;
    double p = k / n, z2 = z * z / n, den = 1 + z2;
    double centre = (p + z2 / 2) / den, half = z * sqrt(p * (1 - p) / n + z2 / (4.0 * n)) / den;
    *lo = fmax(0.0, centre - half);
    *hi = fmin(1.0, centre + half);
}

int nfv_mis_default_layer(const nfv_model *m, int target_layer)
{
    for (int l = target_layer - 1; l >= 0; l--)
        if (m->layers[l].out_ndim == 4) return l;
    return -1;
}

void nfv_mis_cohort_free(nfv_mis_cohort *c)
{
    free(c->objective);
    free(c->feat);
    free(c->feat_mean);
    free(c->feat_sd);
    free(c->order);
    free(c->mean);
    nfv_ncc_bank_free(c->own_bank);
    memset(c, 0, sizeof *c);
}

/* Channel means of layer l's activation for the single sample last run
 * forward, into out (C). */
static nfv_status channel_means(nfv_context *ctx, nfv_model *m, int l, float *host, double *out)
{
    const nfv_layer *ly = &m->layers[l];
    int C = ly->out_shape[0];
    size_t sp = (size_t)ly->out_shape[1] * ly->out_shape[2] * ly->out_shape[3];
    NFV_TRY(nfv_tensor_download(ctx, nfv_model_activation(m, l), host));
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (size_t i = 0; i < sp; i++) s += host[(size_t)c * sp + i];
        out[c] = s / (double)sp;
    }
    return NFV_OK;
}

static int by_objective(const void *a, const void *b, void *ctx)
{
    const float *o = ctx;
    float x = o[*(const int *)a], y = o[*(const int *)b];
    return x < y ? -1 : x > y;
}

/* One volume forward to the target's layer: its objective and (feat_layer
 * >= 0) the channel means there. */
static nfv_status run_one(nfv_context *ctx, nfv_model *m, const nfv_target *t, int feat_layer, nfv_tensor *x,
                          const float *vol, float *host, float *objective, double *means)
{
    NFV_TRY(nfv_tensor_upload(ctx, x, vol));
    nfv_volume v;
    memset(&v, 0, sizeof v);
    v.nx = m->input_shape[3], v.ny = m->input_shape[2], v.nz = m->input_shape[1];
    v.data = (float *)vol;
    NFV_TRY(nfv_vis_objective(ctx, m, t, 1, &v, objective));
    if (feat_layer < 0) return NFV_OK;
    NFV_TRY(nfv_model_forward(m, ctx, x, feat_layer, 0));
    return channel_means(ctx, m, feat_layer, host, means);
}

static size_t largest_activation(const nfv_model *m, int feat_layer)
{
    return feat_layer < 0 ? 1 : nfv_shape_numel(m->layers[feat_layer].out_ndim, m->layers[feat_layer].out_shape);
}

nfv_status nfv_mis_cohort_init(nfv_context *ctx, nfv_model *m, const nfv_target *t, const float *volumes, int n,
                               int feat_layer, const nfv_ncc_bank *bank, double radius_mm, nfv_mis_cohort *c)
{
    memset(c, 0, sizeof *c);
    if (n < 4) return nfv_fail(NFV_ERR_INVALID_ARG, "mis: %d subjects; at least 4 are needed for strong/weak pairs", n);
    if (!(radius_mm > 0)) return nfv_fail(NFV_ERR_INVALID_ARG, "mis: pattern radius %g mm; it must be > 0", radius_mm);
    if (feat_layer >= t->layer) feat_layer = -1;
    size_t vox = (size_t)m->input_shape[1] * m->input_shape[2] * m->input_shape[3];
    int C = feat_layer >= 0 ? m->layers[feat_layer].out_shape[0] : 0;
    c->n = n;
    c->volumes = volumes;
    c->radius_mm = radius_mm;
    c->bank = bank;
    int dims[3] = {m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    if (!bank) {
        NFV_TRY(nfv_ncc_bank_create(volumes, n, dims, &c->own_bank));
        c->bank = c->own_bank;
    }
    c->feat_layer = feat_layer;
    c->feat_dim = C;
    c->objective = malloc((size_t)n * sizeof *c->objective);
    c->feat = malloc(((size_t)n * C + 1) * sizeof *c->feat);
    c->feat_mean = calloc((size_t)C + 1, sizeof *c->feat_mean);
    c->feat_sd = calloc((size_t)C + 1, sizeof *c->feat_sd);
    c->order = malloc((size_t)n * sizeof *c->order);
    c->mean = calloc(vox, sizeof *c->mean);
    double *means = malloc(((size_t)C + 1) * sizeof *means);
    float *host = malloc(largest_activation(m, feat_layer) * sizeof *host);
    nfv_tensor x;
    memset(&x, 0, sizeof x);
    int shape[5] = {1, 1, m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    int missing = !c->objective || !c->feat || !c->feat_mean || !c->feat_sd || !c->order || !c->mean || !means || !host;
    nfv_status st = missing ? nfv_fail(NFV_ERR_NO_MEMORY, "mis: out of memory") : nfv_tensor_create(ctx, &x, 5, shape);
    for (int i = 0; !st && i < n; i++) {
        st = run_one(ctx, m, t, feat_layer, &x, volumes + (size_t)i * vox, host, &c->objective[i], means);
        for (int k = 0; !st && k < C; k++) c->feat[(size_t)i * C + k] = (float)means[k];
    }
    if (!st) {
        double *sum = calloc(vox, sizeof *sum); /* in double: hundreds of subjects */
        if (!sum) st = nfv_fail(NFV_ERR_NO_MEMORY, "mis: out of memory");
        for (int i = 0; !st && i < n; i++)
            for (size_t v = 0; v < vox; v++) sum[v] += volumes[(size_t)i * vox + v];
        for (size_t v = 0; !st && v < vox; v++) c->mean[v] = (float)(sum[v] / n);
        free(sum);
    }
    /* Standardize each channel over the cohort. */
    for (int k = 0; !st && k < C; k++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < n; i++) s += c->feat[(size_t)i * C + k];
        s /= n;
        for (int i = 0; i < n; i++) s2 += (c->feat[(size_t)i * C + k] - s) * (c->feat[(size_t)i * C + k] - s);
        double sd = sqrt(s2 / n);
        c->feat_mean[k] = (float)s;
        c->feat_sd[k] = (float)(sd > 1e-12 ? sd : 1.0);
        for (int i = 0; i < n; i++)
            c->feat[(size_t)i * C + k] = (float)((c->feat[(size_t)i * C + k] - s) / c->feat_sd[k]);
    }
    /* Quartiles by objective: strong = the top n/4, weak = the bottom n/4. */
    if (!st) {
        for (int i = 0; i < n; i++) c->order[i] = i;
        qsort_r(c->order, (size_t)n, sizeof *c->order, by_objective, c->objective);
        c->nweak = c->nstrong = n / 4;
        c->weak = c->order;                  /* the first n/4: lowest */
        c->strong = c->order + (n - n / 4);  /* the last n/4: highest */
    }
    free(means);
    free(host);
    nfv_tensor_free(&x);
    if (st) nfv_mis_cohort_free(c);
    return st;
}

double nfv_mis_stretch(const nfv_mis_cohort *c, double objective)
{
    if (!c->n) return NAN;
    double mean = 0, top = c->objective[0];
    for (int i = 0; i < c->n; i++) {
        mean += c->objective[i];
        if (c->objective[i] > top) top = c->objective[i];
    }
    mean /= c->n;
    /* Relative to the spread, so a flat cohort (no spread in float) is NaN, not a huge ratio. */
    return top - mean > 1e-6 * (fabs(top) + fabs(mean)) ? (objective - mean) / (top - mean) : NAN;
}

nfv_status nfv_picture_grad_compute(nfv_context *ctx, nfv_model *m, const nfv_target *t, const float *vis,
                                    nfv_picture_grad *pg)
{
    memset(pg, 0, sizeof *pg);
    int shape[5] = {1, 1, m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    size_t vox = (size_t)shape[2] * shape[3] * shape[4];
    nfv_tensor x, dx;
    memset(&x, 0, sizeof x);
    memset(&dx, 0, sizeof dx);
    pg->grad = malloc(vox * sizeof *pg->grad);
    nfv_status st = pg->grad ? nfv_tensor_create(ctx, &x, 5, shape)
                             : nfv_fail(NFV_ERR_NO_MEMORY, "picture gradient: out of memory");
    if (!st) st = nfv_tensor_create(ctx, &dx, 5, shape);
    if (!st) st = nfv_tensor_upload(ctx, &x, vis);
    if (!st) st = nfv_vis_input_gradient(ctx, m, t, 1, &x, &pg->objective, &dx);
    if (!st) st = nfv_tensor_download(ctx, &dx, pg->grad);
    nfv_tensor_free(&x);
    nfv_tensor_free(&dx);
    if (st) nfv_picture_grad_free(pg);
    return st;
}

void nfv_picture_grad_free(nfv_picture_grad *pg)
{
    free(pg->grad);
    memset(pg, 0, sizeof *pg);
}

/* z = (x - mean) / SD over n values (SD 0: all 0). */
static void standardize(const double *x, int n, double *z)
{
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    double sd = sqrt(v / n);
    for (int i = 0; i < n; i++) z[i] = sd > 1e-12 ? (x[i] - m) / sd : 0.0;
}

/* Cut the box of half-sides half (z, y, x) around centre out of vis (D, H,
 * W), shifted to lie inside the grid and no larger than it; box (dims)
 * receives its size. */
static void cut_box(const float *vis, const int dims[3], const int centre[3], const int half[3], float *out,
                    int box[3])
{
    int lo[3];
    for (int a = 0; a < 3; a++) {
        box[a] = 2 * half[a] + 1 < dims[a] ? 2 * half[a] + 1 : dims[a];
        lo[a] = centre[a] - half[a];
        if (lo[a] > dims[a] - box[a]) lo[a] = dims[a] - box[a];
        if (lo[a] < 0) lo[a] = 0;
    }
    for (int z = 0; z < box[0]; z++)
        for (int y = 0; y < box[1]; y++)
            memcpy(out + ((size_t)z * box[1] + y) * box[2],
                   vis + ((size_t)(lo[0] + z) * dims[1] + lo[1] + y) * dims[2] + lo[2], (size_t)box[2] * sizeof *out);
}

nfv_status nfv_mis_similarity(nfv_context *ctx, nfv_model *m, const nfv_target *t, const nfv_mis_cohort *c,
                              const float *vis, const nfv_picture_grad *pg, double *sim, double *sim_pattern,
                              double *sim_act)
{
    nfv_picture_grad own;
    memset(&own, 0, sizeof own);
    if (!pg) {
        NFV_TRY(nfv_picture_grad_compute(ctx, m, t, vis, &own));
        pg = &own;
    }
    int dims[3] = {m->input_shape[1], m->input_shape[2], m->input_shape[3]};
    size_t vox = (size_t)dims[0] * dims[1] * dims[2];
    int C = c->feat_dim, n = c->n;
    float *box = malloc(vox * sizeof *box), *host = malloc(largest_activation(m, c->feat_layer) * sizeof *host);
    double *vm = malloc(((size_t)C + 1) * sizeof *vm);
    nfv_tensor x;
    memset(&x, 0, sizeof x);
    int shape[5] = {1, 1, dims[0], dims[1], dims[2]}, centre[3], half[3], bdims[3];
    nfv_status st = !box || !host || !vm ? nfv_fail(NFV_ERR_NO_MEMORY, "mis: out of memory")
                                         : nfv_focus_centre(m, c, vis, pg->grad, c->radius_mm, centre, half);
    if (!st) {
        cut_box(vis, dims, centre, half, box, bdims);
        st = nfv_ncc_bank_search(c->bank, box, bdims, sim_pattern);
    }
    float obj;
    if (!st && C) st = nfv_tensor_create(ctx, &x, 5, shape);
    if (!st && C) st = run_one(ctx, m, t, c->feat_layer, &x, vis, host, &obj, vm);
    if (!st) {
        double vn = 0;
        for (int k = 0; k < C; k++) {
            vm[k] = (vm[k] - c->feat_mean[k]) / c->feat_sd[k];
            vn += vm[k] * vm[k];
        }
        for (int i = 0; i < n; i++) {
            double dot = 0, sn = 0;
            for (int k = 0; k < C; k++) {
                double f = c->feat[(size_t)i * C + k];
                dot += f * vm[k];
                sn += f * f;
            }
            sim_act[i] = C && vn > 0 && sn > 0 ? dot / sqrt(vn * sn) : 0.0;
        }
        /* Standardized over the subjects, so that a reference picture's
         * similarities (nfv_mis_contrastive) weigh the same whatever the
         * spread of its NCCs. */
        standardize(sim_pattern, n, sim);
    }
    free(box);
    free(host);
    free(vm);
    nfv_tensor_free(&x);
    nfv_picture_grad_free(&own);
    return st;
}

double nfv_mis_judge(const nfv_mis_cohort *c, const double *sim, int pairs, unsigned long long seed)
{
    /* The same pairs for every visualization of this cohort and seed. */
    double right = 0;
    for (int p = 0; p < pairs; p++) {
        uint64_t h = nfv_mix64(seed * 0x9E3779B97F4A7C15ULL + (uint64_t)p);
        int s = c->strong[h % (uint64_t)c->nstrong], w = c->weak[nfv_mix64(h) % (uint64_t)c->nweak];
        right += sim[s] > sim[w] ? 1.0 : sim[s] == sim[w] ? 0.5 : 0.0;
    }
    return right;
}

nfv_status nfv_mis_score(nfv_context *ctx, nfv_model *m, const nfv_target *t, const nfv_mis_cohort *c,
                         const float *vis, const nfv_picture_grad *pg, int pairs, unsigned long long seed,
                         double *sim_out, nfv_mis_result *r)
{
    memset(r, 0, sizeof *r);
    int n = c->n;
    double *sim = sim_out ? sim_out : malloc((size_t)n * sizeof *sim), *sv = malloc((size_t)n * sizeof *sv);
    double *sa = malloc((size_t)n * sizeof *sa);
    nfv_status st = !sim || !sv || !sa ? nfv_fail(NFV_ERR_NO_MEMORY, "mis: out of memory")
                                       : nfv_mis_similarity(ctx, m, t, c, vis, pg, sim, sv, sa);
    if (!st) {
        r->pairs = pairs;
        r->correct = nfv_mis_judge(c, sim, pairs, seed);
        r->mis = pairs ? r->correct / pairs : NAN;
        r->mis_act = pairs && c->feat_dim ? nfv_mis_judge(c, sa, pairs, seed) / pairs : NAN;
        nfv_wilson(r->correct, pairs, &r->lo, &r->hi);
    }
    if (!sim_out) free(sim);
    free(sv);
    free(sa);
    return st;
}

/* Same layer, kind and sign: the units a machine observer is shown beside
 * the target as references (the other classes of logit:/contrast:, the
 * other channels of a layer). */
static int same_family(const nfv_target *a, const nfv_target *b)
{
    return a->kind == b->kind && a->layer == b->layer && a->is_logit == b->is_logit && a->contrast == b->contrast &&
           a->minimize == b->minimize;
}

int nfv_mis_contrastive(const nfv_mis_cohort *c, const double *sims, const nfv_target *targets, int count, int t,
                        int pairs, unsigned long long seed, double *correct)
{
    int n = c->n, refs = 0;
    double *sim = calloc((size_t)n + 1, sizeof *sim);
    if (!sim) return -1;
    for (int u = 0; u < count; u++)
        if (u != t && same_family(&targets[u], &targets[t])) {
            refs++;
            for (int i = 0; i < n; i++) sim[i] += sims[(size_t)u * n + i];
        }
    if (refs) {
        for (int i = 0; i < n; i++) sim[i] = sims[(size_t)t * n + i] - sim[i] / refs;
        *correct = nfv_mis_judge(c, sim, pairs, seed);
    }
    free(sim);
    return refs;
}
