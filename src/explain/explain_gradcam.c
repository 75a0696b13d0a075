/* Grad-CAM: the channels of a layer's output a (C, d, h, w) weighted by the
 * spatial mean of the objective's gradient there, summed, ReLU, upsampled
 * to the model grid.  The forward and the backward down to the layer run on
 * the device for B inputs at a time; the weighting is C * d*h*w
 * multiply-adds on the host, negligible beside them. */
#include <stdlib.h>
#include <string.h>

#include "explain/explain_internal.h"

int nfv_explain_default_cam_layer(const nfv_model *m, const nfv_target *t)
{
    unsigned char *anc = calloc((size_t)m->layer_count, 1);
    if (!anc) {
        nfv_fail(NFV_ERR_NO_MEMORY, "gradcam: out of memory");
        return -1;
    }
    nfv_model_mark_ancestors(m, t->layer, anc);
    int best = -1;
    for (int i = t->layer; i >= 0 && best < 0; i--) {
        const nfv_layer *l = &m->layers[i];
        if (anc[i] && l->out_ndim == 4 && (long)l->out_shape[1] * l->out_shape[2] * l->out_shape[3] > 1) best = i;
    }
    free(anc);
    if (best < 0) nfv_fail(NFV_ERR_INVALID_ARG, "gradcam: target %s depends on no (C, D, H, W) layer", t->name);
    return best;
}

/* PyTorch's source coordinate for align_corners=False: (i + 0.5) * in/out
 * - 0.5, clamped below at 0; the upper neighbour clamped to in - 1. */
static void axis_weights(int out_i, int in_n, int out_n, int *i0, int *i1, float *w1)
{
    float src = ((float)out_i + 0.5f) * (float)in_n / (float)out_n - 0.5f;
    if (src < 0) src = 0;
    *i0 = (int)src;
    if (*i0 > in_n - 1) *i0 = in_n - 1;
    *i1 = *i0 + 1 < in_n ? *i0 + 1 : in_n - 1;
    *w1 = src - (float)*i0;
}

void explain_upsample_trilinear(const float *src, int d, int h, int w, float *dst, int D, int H, int W)
{
    for (int z = 0; z < D; z++) {
        int z0, z1;
        float wz;
        axis_weights(z, d, D, &z0, &z1, &wz);
        for (int y = 0; y < H; y++) {
            int y0, y1;
            float wy;
            axis_weights(y, h, H, &y0, &y1, &wy);
            for (int x = 0; x < W; x++) {
                int x0, x1;
                float wx;
                axis_weights(x, w, W, &x0, &x1, &wx);
#define S(a, b, c) src[((size_t)(a) * h + (b)) * w + (c)]
                float c00 = S(z0, y0, x0) * (1 - wx) + S(z0, y0, x1) * wx;
                float c01 = S(z0, y1, x0) * (1 - wx) + S(z0, y1, x1) * wx;
                float c10 = S(z1, y0, x0) * (1 - wx) + S(z1, y0, x1) * wx;
                float c11 = S(z1, y1, x0) * (1 - wx) + S(z1, y1, x1) * wx;
#undef S
                float c0 = c00 * (1 - wy) + c01 * wy, c1 = c10 * (1 - wy) + c11 * wy;
                dst[((size_t)z * H + y) * W + x] = c0 * (1 - wz) + c1 * wz;
            }
        }
    }
}

/* One input's map from its activation a and gradient g (C, d*h*w each). */
static void cam_map(const float *a, const float *g, int C, int d, int h, int w, float *cam, float *map, int D, int H,
                    int W)
{
    size_t sp = (size_t)d * h * w;
    memset(cam, 0, sp * sizeof *cam);
    for (int c = 0; c < C; c++) {
        double wc = 0;
        for (size_t v = 0; v < sp; v++) wc += g[(size_t)c * sp + v];
        wc /= (double)sp;
        for (size_t v = 0; v < sp; v++) cam[v] += (float)wc * a[(size_t)c * sp + v];
    }
    for (size_t v = 0; v < sp; v++) cam[v] = cam[v] > 0 ? cam[v] : 0;
    explain_upsample_trilinear(cam, d, h, w, map, D, H, W);
}

nfv_status explain_gradcam(nfv_context *ctx, nfv_model *m, const nfv_target *targets, int n, const float *x,
                           const nfv_explain_options *o, float *maps, float *objective)
{
    int layer = o->cam_layer >= 0 ? o->cam_layer : nfv_explain_default_cam_layer(m, &targets[0]);
    if (layer < 0) return NFV_ERR_INVALID_ARG; /* the message is recorded */
    if (layer >= m->layer_count)
        return nfv_fail(NFV_ERR_INVALID_ARG, "gradcam: layer %d does not exist (the model has %d)", layer, m->layer_count);
    const nfv_layer *l = &m->layers[layer];
    if (l->out_ndim != 4)
        return nfv_fail(NFV_ERR_INVALID_ARG, "gradcam: layer %d (%s) has no (C, D, H, W) output", layer, l->name);
    const int C = l->out_shape[0], d = l->out_shape[1], h = l->out_shape[2], w = l->out_shape[3];
    const int D = m->input_shape[1], H = m->input_shape[2], W = m->input_shape[3];
    size_t per_act = (size_t)C * d * h * w;
    int B = n < o->batch ? n : o->batch;
    explain_batch b;
    nfv_tensor dact;
    memset(&dact, 0, sizeof dact);
    float *act = malloc((size_t)B * per_act * sizeof *act), *grad = malloc((size_t)B * per_act * sizeof *grad);
    float *cam = malloc((size_t)d * h * w * sizeof *cam);
    nfv_status s = act && grad && cam ? NFV_OK : nfv_fail(NFV_ERR_NO_MEMORY, "gradcam: out of memory");
    if (!s) s = explain_batch_init(&b, ctx, m, B);
    int shape[5] = {B, C, d, h, w};
    if (!s) s = nfv_tensor_create(ctx, &dact, 5, shape);
    for (int i0 = 0; i0 < n && !s; i0 += B) {
        int k = n - i0 < B ? n - i0 : B;
        memcpy(b.host_x, x + (size_t)i0 * b.per, (size_t)k * b.per * sizeof(float));
        memcpy(b.tg, targets + i0, (size_t)k * sizeof *b.tg);
        for (int i = k; i < B; i++) {
            memcpy(b.host_x + (size_t)i * b.per, b.host_x + (size_t)(k - 1) * b.per, b.per * sizeof(float));
            b.tg[i] = b.tg[k - 1];
        }
        s = nfv_tensor_upload(ctx, &b.x, b.host_x);
        if (!s) s = nfv_vis_layer_gradient(ctx, m, b.tg, B, &b.x, layer, b.objective, &dact);
        if (!s) s = nfv_tensor_download(ctx, &dact, grad);
        if (!s) s = nfv_tensor_download(ctx, nfv_model_activation(m, layer), act);
        for (int i = 0; i < k && !s; i++) {
            cam_map(act + (size_t)i * per_act, grad + (size_t)i * per_act, C, d, h, w, cam, maps + (size_t)(i0 + i) * b.per,
                    D, H, W);
            if (objective) objective[i0 + i] = b.objective[i];
        }
    }
    if (s) s = nfv_fail_context(s, "gradcam at layer %d (%s)", layer, l->name);
    nfv_tensor_free(&dact);
    if (b.host_x || b.tg) explain_batch_free(&b);
    free(act), free(grad), free(cam);
    return s;
}
