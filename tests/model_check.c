/* Whole-model checks against the double reference; see model_check.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_check.h"
#include "ref_model.h"
#include "test.h"

/* Random BN running statistics so eval mode is not the identity. */
void randomize_bn(nfv_context *ctx, nfv_model *m, unsigned seed)
{
    for (int i = 0; i < m->layer_count; i++) {
        nfv_layer *l = &m->layers[i];
        if (l->spec.kind != NFV_LAYER_BATCHNORM3D && l->spec.kind != NFV_LAYER_INSTANCENORM) continue;
        int is_bn = l->spec.kind == NFV_LAYER_BATCHNORM3D;
        int c = (int)l->param[0].numel;
        float *a = test_random((size_t)c, seed + 1, -0.5f, 0.5f), *b = test_random((size_t)c, seed + 2, 0.5f, 2.0f);
        float *g = test_random((size_t)c, seed + 3, 0.5f, 1.5f), *be = test_random((size_t)c, seed + 4, -0.3f, 0.3f);
        if (is_bn) {
            nfv_tensor_upload(ctx, &l->running_mean, a);
            nfv_tensor_upload(ctx, &l->running_var, b);
        }
        nfv_tensor_upload(ctx, &l->param[0], g);
        nfv_tensor_upload(ctx, &l->param[1], be);
        free(a), free(b), free(g), free(be);
    }
}

/* Forward to layer `upto` and the input gradient of sum(g * output) against
 * the reference and its central finite differences. */
static void check_model_impl(const char *spec, const int in[4], int n, int classes, nfv_head head, int training,
                             int upto, int fuse)
{
    nfv_context *ctx = test_ctx();
    nfv_model *m = NULL;
    if (!CHECK_OK(nfv_model_create_from_spec(ctx, spec, in, classes, NULL, head, 7, &m))) return;
    randomize_bn(ctx, m, 11);
    nfv_model_set_fusion(m, fuse);
    if (upto < 0) upto = m->layer_count - 1;
    size_t xn = (size_t)n * nfv_shape_numel(4, in);
    float *xf = test_random(xn, 5, -1.0f, 1.0f);
    int xs[5] = {n, in[0], in[1], in[2], in[3]};
    nfv_tensor x, dx, g;
    CHECK_OK(test_tensor(&x, 5, xs, xf));
    CHECK_OK(nfv_tensor_create(ctx, &dx, 5, xs));
    ref_params rp;
    CHECK(ref_params_download(ctx, m, &rp), "parameters download");
    if (!CHECK_OK(nfv_model_forward(m, ctx, &x, upto, training))) goto out0;
    nfv_tensor *y = nfv_model_activation(m, upto);
    if (fuse) {
        int fused = 0;
        for (int i = 0; i < m->layer_count; i++) fused += m->layers[i].fused_with > 0;
        CHECK(fused > 0, "%s: fusion on, but no conv -> BN group was fused up to layer %d", spec, upto);
    }
    size_t yn = y->numel;
    float *yf = test_download(y);
    double *xd = malloc(xn * sizeof *xd), *yd = malloc(yn * sizeof *yd), *yp = malloc(yn * sizeof *yd),
           *ym = malloc(yn * sizeof *yd), *dxd = malloc(xn * sizeof *dxd);
    for (size_t i = 0; i < xn; i++) xd[i] = xf[i];
    ref_model_forward(m, &rp, xd, n, training, upto, yd);
    char what[256];
    snprintf(what, sizeof what, "%s forward to layer %d (%s mode%s, N=%d)", spec, upto, training ? "train" : "eval",
             fuse ? ", fused" : "", n);
    /* float32 kernels vs double: sums of up to a few hundred terms of O(1), so
     * 1e-4 absolute + 1e-3 relative is a few hundred ulps of headroom. */
    CHECK_CLOSE(what, yf, yd, yn, 1e-4, 1e-3);

    float *gf = test_random(yn, 9, -1.0f, 1.0f);
    CHECK_OK(test_tensor(&g, y->ndim, y->shape, gf));
    if (CHECK_OK(nfv_model_backward(m, ctx, upto, &g, 0, &dx))) {
        float *dxf = test_download(&dx);
        /* Central differences of sum(g * y(x)) in double at up to 160 evenly
         * spread inputs (all of them would take seconds); h small against the
         * distance to ReLU/max-pool kinks for random inputs. */
        const double h = 1e-6;
        size_t count = xn < 160 ? xn : 160;
        float *got = malloc(count * sizeof *got);
        for (size_t k = 0; k < count; k++) {
            size_t i = k * xn / count;
            double keep = xd[i];
            xd[i] = keep + h;
            ref_model_forward(m, &rp, xd, n, training, upto, yp);
            xd[i] = keep - h;
            ref_model_forward(m, &rp, xd, n, training, upto, ym);
            xd[i] = keep;
            double s = 0;
            for (size_t j = 0; j < yn; j++) s += gf[j] * (yp[j] - ym[j]);
            dxd[k] = s / (2 * h);
            got[k] = dxf[i];
        }
        snprintf(what, sizeof what, "%s input gradient from layer %d (%s mode%s)", spec, upto,
                 training ? "train" : "eval", fuse ? ", fused" : "");
        /* float32 backward vs a double finite difference: 1e-3 abs + 1e-2 rel. */
        CHECK_CLOSE(what, got, dxd, count, 1e-3, 1e-2);
        free(got);
        free(dxf);
    }
    nfv_tensor_free(&g);
    free(gf);
    free(yf), free(yd), free(yp), free(ym), free(dxd), free(xd);
out0:
    ref_params_free(&rp);
    nfv_tensor_free(&x), nfv_tensor_free(&dx);
    free(xf);
    nfv_model_free(m);
}


void check_model(const char *spec, const int in[4], int n, int classes, nfv_head head, int training, int upto)
{
    check_model_impl(spec, in, n, classes, head, training, upto, 0);
}

void check_model_fused(const char *spec, const int in[4], int n, int classes, nfv_head head, int upto)
{
    check_model_impl(spec, in, n, classes, head, 0, upto, 1);
}
