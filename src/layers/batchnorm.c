/* BatchNorm3d forward (train / eval) and backward; kernels in cl/norm.cl,
 * whose header explains the two-level, cancellation-free statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neurofv/ops.h"

/* Floats per statistics work-item: long enough that the partials are few,
 * short enough that the second (centring) pass over a chunk hits cache. */
static int bn_chunk(nfv_context *ctx) { return nfv_context_kernel_config(ctx)->reduction_chunk; }

static nfv_status bn_kernel(nfv_context *ctx, const char *name, cl_kernel *k)
{
    char opts[64];
    snprintf(opts, sizeof opts, "-DVEC=%d -DCHUNK=%d", nfv_context_vector_width(ctx), bn_chunk(ctx));
    return nfv_kernel_get(ctx, "norm", opts, name, k);
}

/* Sizes of one call: x (N, C, D, H, W), S = D*H*W. */
typedef struct bn_geom {
    cl_uint n, c, s;
} bn_geom;

static nfv_status check_x(const char *op, const nfv_tensor *x, bn_geom *g)
{
    char sx[64];
    if (!x || !x->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL input", op);
    if (x->ndim != 5) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %s is not (N, C, D, H, W)", op, nfv_shape_str(x, sx, sizeof sx));
    size_t s = (size_t)x->shape[2] * x->shape[3] * x->shape[4];
    if (s > 0x7fffffffULL) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: volume %s too large", op, nfv_shape_str(x, sx, sizeof sx));
    g->n = (cl_uint)x->shape[0];
    g->c = (cl_uint)x->shape[1];
    g->s = (cl_uint)s;
    return NFV_OK;
}

/* t must exist and hold one value per channel. */
static nfv_status check_channel(const char *op, const char *what, const nfv_tensor *t, const bn_geom *g)
{
    if (!t || !t->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    if (t->numel != g->c) {
        char st[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected %u values (one per channel)", op, what,
                        nfv_shape_str(t, st, sizeof st), g->c);
    }
    return NFV_OK;
}

static nfv_status check_like_x(const char *op, const char *what, const nfv_tensor *t, const nfv_tensor *x)
{
    if (!t || !t->buf) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    int same = t->ndim == x->ndim;
    for (int i = 0; same && i < x->ndim; i++) same = t->shape[i] == x->shape[i];
    if (!same) {
        char st[64], sx[64];
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s", op, what, nfv_shape_str(t, st, sizeof st),
                        nfv_shape_str(x, sx, sizeof sx));
    }
    return NFV_OK;
}

/* A device scratch buffer for one call.  Released right after the launches
 * are queued: OpenCL frees it only once the commands using it finish. */
static nfv_status scratch(nfv_context *ctx, size_t floats, const char *what, cl_mem *out)
{
    cl_int err;
    *out = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_WRITE, floats * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) return nfv_cl_fail(err, "clCreateBuffer", what, __FILE__, __LINE__);
    return NFV_OK;
}

static size_t reduction_local_size(nfv_context *ctx, cl_kernel k)
{
    size_t limit = nfv_kernel_max_local(ctx, k), l = 1;
    while (l * 2 <= limit && l * 2 <= 256) l *= 2;
    return l;
}

static nfv_status copy_channels(nfv_context *ctx, cl_mem coef, int slot, const bn_geom *g, nfv_tensor *dst,
                                const char *what)
{
    if (!dst) return NFV_OK;
    NFV_CL_CHECK(clEnqueueCopyBuffer(nfv_context_queue(ctx), coef, dst->buf, (size_t)slot * g->c * sizeof(float), 0,
                                     g->c * sizeof(float), 0, NULL, NULL),
                 "clEnqueueCopyBuffer", what);
    return NFV_OK;
}

/* Queue the per-plane elementwise kernel k over x's geometry. */
static nfv_status launch_planes(nfv_context *ctx, cl_kernel k, const bn_geom *g)
{
    size_t vec = (size_t)nfv_context_vector_width(ctx);
    size_t global[2] = {(g->s + vec - 1) / vec, (size_t)g->n * g->c};
    return nfv_kernel_launch(ctx, k, 2, global, NULL);
}

/* Synchronized BatchNorm: every rank's per-chunk partials (`stride` floats
 * each, laid out [(c * N + n) * P + p] over its own N samples) gathered into
 * *global, a new device buffer laid out the same over the whole batch, so
 * the finalize kernels merge exactly what one process would. */
static nfv_status gather_partials(nfv_context *ctx, cl_mem part, int stride, const bn_geom *g, cl_uint P,
                                  const nfv_dist_batch *db, cl_mem *global)
{
    const size_t per_sample = (size_t)stride * g->c * P, total = per_sample * (size_t)db->total;
    float *mine = malloc(per_sample * g->n * sizeof(float)), *all = malloc(total * sizeof(float)),
          *ordered = malloc(total * sizeof(float));
    int *counts = malloc((size_t)db->size * sizeof(int));
    nfv_status s = mine && all && ordered && counts ? NFV_OK
                                                    : nfv_fail(NFV_ERR_NO_MEMORY, "batchnorm: out of memory for %zu partials", total);
    if (!s) {
        cl_int err = clEnqueueReadBuffer(nfv_context_queue(ctx), part, CL_TRUE, 0, per_sample * g->n * sizeof(float),
                                         mine, 0, NULL, NULL);
        if (err != CL_SUCCESS) s = nfv_cl_fail(err, "clEnqueueReadBuffer", "batchnorm partials", __FILE__, __LINE__);
    }
    for (int r = 0; !s && r < db->size; r++) counts[r] = (int)(per_sample * (size_t)nfv_dist_batch_count(db, r));
    if (!s) s = nfv_dist_gather_floats(mine, counts, all);
    /* Rank r's block is [c][its n][p][stride]; the whole batch's is [c][first_r + n][p][stride]. */
    size_t at = 0;
    for (int r = 0; !s && r < db->size; r++) {
        int first, nr;
        nfv_dist_block(db->total, r, db->size, &first, &nr);
        for (cl_uint c = 0; c < g->c; c++)
            for (int n = 0; n < nr; n++) {
                size_t src = at + ((size_t)c * nr + n) * P * stride, dst = ((size_t)c * db->total + first + n) * P * stride;
                memcpy(ordered + dst, all + src, (size_t)P * stride * sizeof(float));
            }
        at += (size_t)counts[r];
    }
    if (!s) {
        cl_int err;
        *global = clCreateBuffer(nfv_context_cl(ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, total * sizeof(float),
                                 ordered, &err);
        if (err != CL_SUCCESS) s = nfv_cl_fail(err, "clCreateBuffer", "batchnorm gathered partials", __FILE__, __LINE__);
    }
    free(mine), free(all), free(ordered), free(counts);
    return s;
}

/* A split over several ranks (else the one-process path). */
static int synced(const nfv_dist_batch *db) { return db && db->size > 1; }

static nfv_status check_split(const char *op, const bn_geom *g, const nfv_dist_batch *db)
{
    if (synced(db) && (db->count != (int)g->n || db->total < db->count))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: this rank holds %u samples but the split gives it %d of %d", op, g->n,
                        db->count, db->total);
    return NFV_OK;
}

static nfv_status finalize_and_apply(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                     const nfv_tensor *beta, nfv_tensor *running_mean, nfv_tensor *running_var,
                                     float momentum, float eps, nfv_tensor *y, nfv_tensor *save_mean,
                                     nfv_tensor *save_invstd, const bn_geom *g, cl_mem part, cl_uint nparts,
                                     cl_mem coef, int relu);

static nfv_status forward_train(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                const nfv_tensor *beta, nfv_tensor *running_mean, nfv_tensor *running_var,
                                float momentum, float eps, nfv_tensor *y, nfv_tensor *save_mean,
                                nfv_tensor *save_invstd, const bn_geom *g, cl_mem part, cl_mem coef,
                                const nfv_dist_batch *db, int relu)
{
    cl_uint chunk = (cl_uint)bn_chunk(ctx), P = (g->s + chunk - 1) / chunk, nparts = g->n * P;
    cl_kernel k;
    NFV_TRY(bn_kernel(ctx, "bn_stats_partial", &k));
    NFV_ARG(k, "bn_stats_partial", 0, x->buf);
    NFV_ARG(k, "bn_stats_partial", 1, part);
    NFV_ARG(k, "bn_stats_partial", 2, g->s);
    NFV_ARG(k, "bn_stats_partial", 3, g->c);
    NFV_ARG(k, "bn_stats_partial", 4, g->n);
    NFV_ARG(k, "bn_stats_partial", 5, P);
    size_t gp[2] = {P, (size_t)g->n * g->c};
    NFV_TRY(nfv_kernel_launch(ctx, k, 2, gp, NULL));
    cl_mem merged = part;
    if (synced(db)) {
        NFV_TRY(gather_partials(ctx, part, 3, g, P, db, &merged));
        nparts = (cl_uint)db->total * P;
    }
    nfv_status st = finalize_and_apply(ctx, x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean,
                                       save_invstd, g, merged, nparts, coef, relu);
    if (merged != part) clReleaseMemObject(merged);
    return st;
}

/* bn_stats_finalize over nparts partials, then y = a * x + b (relu: its ReLU). */
static nfv_status finalize_and_apply(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                     const nfv_tensor *beta, nfv_tensor *running_mean, nfv_tensor *running_var,
                                     float momentum, float eps, nfv_tensor *y, nfv_tensor *save_mean,
                                     nfv_tensor *save_invstd, const bn_geom *g, cl_mem part, cl_uint nparts,
                                     cl_mem coef, int relu)
{
    cl_kernel k;
    NFV_TRY(bn_kernel(ctx, "bn_stats_finalize", &k));
    cl_int update = running_mean != NULL;
    /* Without running stats the kernel never touches them; any buffer will do. */
    cl_mem rm = update ? running_mean->buf : coef, rv = update ? running_var->buf : coef;
    size_t local = reduction_local_size(ctx, k);
    NFV_ARG(k, "bn_stats_finalize", 0, part);
    NFV_ARG(k, "bn_stats_finalize", 1, nparts);
    NFV_ARG(k, "bn_stats_finalize", 2, gamma->buf);
    NFV_ARG(k, "bn_stats_finalize", 3, beta->buf);
    NFV_ARG(k, "bn_stats_finalize", 4, rm);
    NFV_ARG(k, "bn_stats_finalize", 5, rv);
    NFV_ARG(k, "bn_stats_finalize", 6, update);
    NFV_ARG(k, "bn_stats_finalize", 7, momentum);
    NFV_ARG(k, "bn_stats_finalize", 8, eps);
    NFV_ARG(k, "bn_stats_finalize", 9, coef);
    for (cl_uint i = 10; i < 13; i++)
        NFV_CL_CHECK(clSetKernelArg(k, i, local * sizeof(float), NULL), "clSetKernelArg", "bn_stats_finalize");
    size_t gf = local * g->c;
    NFV_TRY(nfv_kernel_launch(ctx, k, 1, &gf, &local));

    const char *apply = relu ? "bn_apply_relu" : "bn_apply";
    NFV_TRY(bn_kernel(ctx, apply, &k));
    NFV_ARG(k, apply, 0, x->buf);
    NFV_ARG(k, apply, 1, y->buf);
    NFV_ARG(k, apply, 2, coef);
    NFV_ARG(k, apply, 3, g->s);
    NFV_ARG(k, apply, 4, g->c);
    NFV_TRY(launch_planes(ctx, k, g));
    NFV_TRY(copy_channels(ctx, coef, 0, g, save_mean, "batchnorm save_mean"));
    return copy_channels(ctx, coef, 1, g, save_invstd, "batchnorm save_invstd");
}

nfv_status nfv_batchnorm3d_forward_train(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                         const nfv_tensor *beta, nfv_tensor *running_mean, nfv_tensor *running_var,
                                         float momentum, float eps, nfv_tensor *y, nfv_tensor *save_mean,
                                         nfv_tensor *save_invstd)
{
    return nfv_batchnorm3d_forward_train_dist(ctx, x, gamma, beta, running_mean, running_var, momentum, eps, y,
                                              save_mean, save_invstd, NULL);
}

static nfv_status forward_train_checked(nfv_context *ctx, const char *op, const nfv_tensor *x,
                                        const nfv_tensor *gamma, const nfv_tensor *beta, nfv_tensor *running_mean,
                                        nfv_tensor *running_var, float momentum, float eps, nfv_tensor *y,
                                        nfv_tensor *save_mean, nfv_tensor *save_invstd, const nfv_dist_batch *db,
                                        int relu)
{
    bn_geom g;
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_x(op, x, &g));
    NFV_TRY(check_like_x(op, "y", y, x));
    NFV_TRY(check_channel(op, "gamma", gamma, &g));
    NFV_TRY(check_channel(op, "beta", beta, &g));
    if ((running_mean == NULL) != (running_var == NULL))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: running_mean and running_var must both be given or both NULL", op);
    if (running_mean) {
        NFV_TRY(check_channel(op, "running_mean", running_mean, &g));
        NFV_TRY(check_channel(op, "running_var", running_var, &g));
    }
    if (save_mean) NFV_TRY(check_channel(op, "save_mean", save_mean, &g));
    if (save_invstd) NFV_TRY(check_channel(op, "save_invstd", save_invstd, &g));
    NFV_TRY(check_split(op, &g, db));
    if ((size_t)(synced(db) ? (cl_uint)db->total : g.n) * g.s < 2)
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: input %dx%dx%dx%dx%d has one value per channel (need more to train)",
                        op, x->shape[0], x->shape[1], x->shape[2], x->shape[3], x->shape[4]);
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return nfv_fail(NFV_ERR_INVALID_ARG, "%s: eps %g must be > 0 and momentum %g in [0, 1]", op, eps, momentum);
    cl_uint chunk = (cl_uint)bn_chunk(ctx), P = (g.s + chunk - 1) / chunk;
    cl_mem part = NULL, coef = NULL;
    NFV_TRY(scratch(ctx, 3 * (size_t)g.c * g.n * P, "batchnorm partial statistics", &part));
    nfv_status st = scratch(ctx, 4 * (size_t)g.c, "batchnorm coefficients", &coef);
    if (st == NFV_OK)
        st = forward_train(ctx, x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean, save_invstd,
                           &g, part, coef, db, relu);
    clReleaseMemObject(part);
    if (coef) clReleaseMemObject(coef);
    return st;
}

nfv_status nfv_batchnorm3d_forward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                              const nfv_tensor *beta, nfv_tensor *running_mean,
                                              nfv_tensor *running_var, float momentum, float eps, nfv_tensor *y,
                                              nfv_tensor *save_mean, nfv_tensor *save_invstd,
                                              const nfv_dist_batch *db)
{
    return forward_train_checked(ctx, "batchnorm3d forward (train)", x, gamma, beta, running_mean, running_var,
                                 momentum, eps, y, save_mean, save_invstd, db, 0);
}

nfv_status nfv_batchnorm3d_relu_forward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                                   const nfv_tensor *beta, nfv_tensor *running_mean,
                                                   nfv_tensor *running_var, float momentum, float eps, nfv_tensor *y,
                                                   nfv_tensor *save_mean, nfv_tensor *save_invstd,
                                                   const nfv_dist_batch *db)
{
    return forward_train_checked(ctx, "batchnorm3d + ReLU forward (train)", x, gamma, beta, running_mean,
                                 running_var, momentum, eps, y, save_mean, save_invstd, db, 1);
}

nfv_status nfv_batchnorm3d_forward_eval(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *gamma,
                                        const nfv_tensor *beta, const nfv_tensor *running_mean,
                                        const nfv_tensor *running_var, float eps, nfv_tensor *y)
{
    static const char *op = "batchnorm3d forward (eval)";
    bn_geom g;
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_x(op, x, &g));
    NFV_TRY(check_like_x(op, "y", y, x));
    NFV_TRY(check_channel(op, "gamma", gamma, &g));
    NFV_TRY(check_channel(op, "beta", beta, &g));
    NFV_TRY(check_channel(op, "running_mean", running_mean, &g));
    NFV_TRY(check_channel(op, "running_var", running_var, &g));
    if (!(eps > 0.0f)) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: eps %g must be > 0", op, eps);
    cl_kernel k;
    NFV_TRY(bn_kernel(ctx, "bn_eval_forward", &k));
    NFV_ARG(k, "bn_eval_forward", 0, x->buf);
    NFV_ARG(k, "bn_eval_forward", 1, y->buf);
    NFV_ARG(k, "bn_eval_forward", 2, gamma->buf);
    NFV_ARG(k, "bn_eval_forward", 3, beta->buf);
    NFV_ARG(k, "bn_eval_forward", 4, running_mean->buf);
    NFV_ARG(k, "bn_eval_forward", 5, running_var->buf);
    NFV_ARG(k, "bn_eval_forward", 6, eps);
    NFV_ARG(k, "bn_eval_forward", 7, g.s);
    NFV_ARG(k, "bn_eval_forward", 8, g.c);
    return launch_planes(ctx, k, &g);
}

static nfv_status backward_finalize(nfv_context *ctx, cl_mem part, cl_uint nparts, float M, const nfv_tensor *gamma,
                                    const nfv_tensor *save_mean, const nfv_tensor *save_invstd, cl_mem coef);

/* The ReLU gate's arguments of bn_relu_backward_partial and _apply, from first on. */
static nfv_status relu_gate_args(cl_kernel k, const char *name, cl_uint first, const nfv_tensor *gamma,
                                 const nfv_tensor *beta, const nfv_tensor *save_invstd)
{
    NFV_ARG(k, name, first, gamma->buf);
    NFV_ARG(k, name, first + 1, beta->buf);
    NFV_ARG(k, name, first + 2, save_invstd->buf);
    return NFV_OK;
}

/* relu_beta: NULL, or with a ReLU after the BatchNorm (dy its output's
 * gradient) the BatchNorm's beta, for the gate's kernels. */
static nfv_status backward_train(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                 const nfv_tensor *gamma, const nfv_tensor *relu_beta, const nfv_tensor *save_mean,
                                 const nfv_tensor *save_invstd, nfv_tensor *dx, nfv_tensor *dgamma, nfv_tensor *dbeta,
                                 const bn_geom *g, cl_mem part, cl_mem coef, const nfv_dist_batch *db)
{
    cl_uint chunk = (cl_uint)bn_chunk(ctx), P = (g->s + chunk - 1) / chunk, nparts = g->n * P;
    cl_kernel k;
    const char *partial = relu_beta ? "bn_relu_backward_partial" : "bn_backward_partial";
    NFV_TRY(bn_kernel(ctx, partial, &k));
    NFV_ARG(k, partial, 0, x->buf);
    NFV_ARG(k, partial, 1, dy->buf);
    NFV_ARG(k, partial, 2, save_mean->buf);
    NFV_ARG(k, partial, 3, part);
    NFV_ARG(k, partial, 4, g->s);
    NFV_ARG(k, partial, 5, g->c);
    NFV_ARG(k, partial, 6, g->n);
    NFV_ARG(k, partial, 7, P);
    if (relu_beta) NFV_TRY(relu_gate_args(k, partial, 8, gamma, relu_beta, save_invstd));
    size_t gp[2] = {P, (size_t)g->n * g->c};
    NFV_TRY(nfv_kernel_launch(ctx, k, 2, gp, NULL));
    /* dgamma and dbeta: this rank's sums (the gradient all-reduce adds the
     * ranks' shares); dx: the whole batch's (gathered partials). */
    NFV_TRY(backward_finalize(ctx, part, nparts, (float)((double)g->n * g->s), gamma, save_mean, save_invstd, coef));
    NFV_TRY(copy_channels(ctx, coef, 0, g, dgamma, "batchnorm dgamma"));
    NFV_TRY(copy_channels(ctx, coef, 1, g, dbeta, "batchnorm dbeta"));
    if (!dx) return NFV_OK;
    if (synced(db)) {
        cl_mem merged;
        NFV_TRY(gather_partials(ctx, part, 2, g, P, db, &merged));
        nfv_status st = backward_finalize(ctx, merged, (cl_uint)db->total * P, (float)((double)db->total * g->s), gamma,
                                          save_mean, save_invstd, coef);
        clReleaseMemObject(merged);
        NFV_TRY(st);
    }
    const char *apply = relu_beta ? "bn_relu_backward_apply" : "bn_backward_apply";
    NFV_TRY(bn_kernel(ctx, apply, &k));
    NFV_ARG(k, apply, 0, x->buf);
    NFV_ARG(k, apply, 1, dy->buf);
    NFV_ARG(k, apply, 2, dx->buf);
    NFV_ARG(k, apply, 3, coef);
    NFV_ARG(k, apply, 4, g->s);
    NFV_ARG(k, apply, 5, g->c);
    if (relu_beta) NFV_TRY(relu_gate_args(k, apply, 6, gamma, relu_beta, save_invstd));
    return launch_planes(ctx, k, g);
}

/* bn_backward_finalize over nparts partials of M values per channel into coef. */
static nfv_status backward_finalize(nfv_context *ctx, cl_mem part, cl_uint nparts, float M, const nfv_tensor *gamma,
                                    const nfv_tensor *save_mean, const nfv_tensor *save_invstd, cl_mem coef)
{
    cl_kernel k;
    NFV_TRY(bn_kernel(ctx, "bn_backward_finalize", &k));
    size_t local = reduction_local_size(ctx, k);
    const cl_uint C = (cl_uint)gamma->numel;
    NFV_ARG(k, "bn_backward_finalize", 0, part);
    NFV_ARG(k, "bn_backward_finalize", 1, nparts);
    NFV_ARG(k, "bn_backward_finalize", 2, M);
    NFV_ARG(k, "bn_backward_finalize", 3, gamma->buf);
    NFV_ARG(k, "bn_backward_finalize", 4, save_mean->buf);
    NFV_ARG(k, "bn_backward_finalize", 5, save_invstd->buf);
    NFV_ARG(k, "bn_backward_finalize", 6, coef);
    for (cl_uint i = 7; i < 9; i++)
        NFV_CL_CHECK(clSetKernelArg(k, i, local * sizeof(float), NULL), "clSetKernelArg", "bn_backward_finalize");
    size_t gf = local * C;
    return nfv_kernel_launch(ctx, k, 1, &gf, &local);
}

nfv_status nfv_batchnorm3d_backward_train(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                          const nfv_tensor *gamma, const nfv_tensor *save_mean,
                                          const nfv_tensor *save_invstd, nfv_tensor *dx, nfv_tensor *dgamma,
                                          nfv_tensor *dbeta)
{
    return nfv_batchnorm3d_backward_train_dist(ctx, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, NULL);
}

static nfv_status backward_train_checked(nfv_context *ctx, const char *op, const nfv_tensor *x, const nfv_tensor *dy,
                                         const nfv_tensor *gamma, const nfv_tensor *relu_beta,
                                         const nfv_tensor *save_mean, const nfv_tensor *save_invstd, nfv_tensor *dx,
                                         nfv_tensor *dgamma, nfv_tensor *dbeta, const nfv_dist_batch *db)
{
    bn_geom g;
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_x(op, x, &g));
    NFV_TRY(check_like_x(op, "dy", dy, x));
    if (dx) NFV_TRY(check_like_x(op, "dx", dx, x));
    NFV_TRY(check_channel(op, "gamma", gamma, &g));
    if (relu_beta) NFV_TRY(check_channel(op, "beta", relu_beta, &g));
    NFV_TRY(check_channel(op, "save_mean", save_mean, &g));
    NFV_TRY(check_channel(op, "save_invstd", save_invstd, &g));
    if (dgamma) NFV_TRY(check_channel(op, "dgamma", dgamma, &g));
    if (dbeta) NFV_TRY(check_channel(op, "dbeta", dbeta, &g));
    if (!dx && !dgamma && !dbeta) return NFV_OK;
    NFV_TRY(check_split(op, &g, db));
    cl_uint chunk = (cl_uint)bn_chunk(ctx), P = (g.s + chunk - 1) / chunk;
    cl_mem part = NULL, coef = NULL;
    NFV_TRY(scratch(ctx, 2 * (size_t)g.c * g.n * P, "batchnorm backward partial sums", &part));
    nfv_status st = scratch(ctx, 6 * (size_t)g.c, "batchnorm backward coefficients", &coef);
    if (st == NFV_OK)
        st = backward_train(ctx, x, dy, gamma, relu_beta, save_mean, save_invstd, dx, dgamma, dbeta, &g, part, coef,
                            db);
    clReleaseMemObject(part);
    if (coef) clReleaseMemObject(coef);
    return st;
}

nfv_status nfv_batchnorm3d_backward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                               const nfv_tensor *gamma, const nfv_tensor *save_mean,
                                               const nfv_tensor *save_invstd, nfv_tensor *dx, nfv_tensor *dgamma,
                                               nfv_tensor *dbeta, const nfv_dist_batch *db)
{
    return backward_train_checked(ctx, "batchnorm3d backward (train)", x, dy, gamma, NULL, save_mean, save_invstd, dx,
                                  dgamma, dbeta, db);
}

nfv_status nfv_batchnorm3d_relu_backward_train_dist(nfv_context *ctx, const nfv_tensor *x, const nfv_tensor *dy,
                                                    const nfv_tensor *gamma, const nfv_tensor *beta,
                                                    const nfv_tensor *save_mean, const nfv_tensor *save_invstd,
                                                    nfv_tensor *dx, nfv_tensor *dgamma, nfv_tensor *dbeta,
                                                    const nfv_dist_batch *db)
{
    if (!beta) return nfv_fail(NFV_ERR_INVALID_ARG, "batchnorm3d + ReLU backward (train): beta is NULL");
    return backward_train_checked(ctx, "batchnorm3d + ReLU backward (train)", x, dy, gamma, beta, save_mean,
                                  save_invstd, dx, dgamma, dbeta, db);
}

nfv_status nfv_batchnorm3d_backward_eval(nfv_context *ctx, const nfv_tensor *dy, const nfv_tensor *gamma,
                                         const nfv_tensor *running_var, float eps, nfv_tensor *dx)
{
    static const char *op = "batchnorm3d backward (eval)";
    bn_geom g;
    if (!ctx) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: NULL context", op);
    NFV_TRY(check_x(op, dy, &g));
    NFV_TRY(check_like_x(op, "dx", dx, dy));
    NFV_TRY(check_channel(op, "gamma", gamma, &g));
    NFV_TRY(check_channel(op, "running_var", running_var, &g));
    if (!(eps > 0.0f)) return nfv_fail(NFV_ERR_INVALID_ARG, "%s: eps %g must be > 0", op, eps);
    cl_kernel k;
    NFV_TRY(bn_kernel(ctx, "bn_eval_backward", &k));
    NFV_ARG(k, "bn_eval_backward", 0, dy->buf);
    NFV_ARG(k, "bn_eval_backward", 1, dx->buf);
    NFV_ARG(k, "bn_eval_backward", 2, gamma->buf);
    NFV_ARG(k, "bn_eval_backward", 3, running_var->buf);
    NFV_ARG(k, "bn_eval_backward", 4, eps);
    NFV_ARG(k, "bn_eval_backward", 5, g.s);
    NFV_ARG(k, "bn_eval_backward", 6, g.c);
    return launch_planes(ctx, k, &g);
}
