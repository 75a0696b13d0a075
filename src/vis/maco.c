/* MACO in 3D (Fel et al., NeurIPS 2023: "Unlocking feature visualization for
 * deeper networks with magnitude constrained optimization"): the image is
 * decoded from a spectrum whose magnitude is fixed to the training cohort's
 * mean amplitude spectrum; only its phase is optimized.  The magnitude keeps
 * the picture's power at each frequency where real brains have it (no
 * high-frequency adversarial texture, no runaway contrast), so the unit has
 * to be driven by *where* structure is (phase), not by how much of it.
 *
 * Decode, for the parameter phi (N, 1, D, H, W):
 *   coeff = A * cas((phi - phi[-k]) / 2)       cl/maco.cl maco_coeff
 *   raw   = B^T coeff                          the Hartley basis of fft.c (decay 0, so no 1/f scale)
 *   image = mid + half tanh((raw - mid) / half) the training data's range (lo, hi)
 * A (D, H, W) is the model's spectrum (nfv_model.spectrum); cl/maco.cl says
 * why cas() of the antisymmetric phase has complex magnitude exactly A.
 * The adjoint runs the same chain backwards (range, B, coefficient).
 *
 * Also here: the cohort spectrum itself (mean |F(k)| of preprocessed
 * volumes, through the same orthonormal Hartley plan: |F(k)|^2 =
 * (H(k)^2 + H(-k)^2) / 2), MACO's transformation recipe (random crops of
 * shrinking size, resized to the model grid, plus Gaussian noise). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "neurofv/vis_ops.h"

struct nfv_maco {
    int dims[3];
    nfv_fourier *f;     /* DFT basis, decay 0: decode = B^T, adjoint = B */
    nfv_tensor amp;     /* (D, H, W) */
    nfv_tensor coeff;   /* (N, 1, D, H, W), sized on first use */
    float mid, half;
};

void nfv_maco_free(nfv_maco *mc)
{
    if (!mc) return;
    if (mc->f) nfv_fourier_free(mc->f);
    nfv_tensor_free(&mc->amp);
    nfv_tensor_free(&mc->coeff);
    free(mc);
}

nfv_status nfv_maco_create(nfv_context *ctx, int D, int H, int W, const float *amplitude, float lo, float hi,
                           nfv_maco **out)
{
    *out = NULL;
    if (!amplitude) return nfv_fail(NFV_ERR_INVALID_ARG, "maco: no amplitude spectrum");
    if (!(lo < hi) || !isfinite(lo) || !isfinite(hi))
        return nfv_fail(NFV_ERR_INVALID_ARG, "maco: intensity range [%g, %g] is empty", (double)lo, (double)hi);
    nfv_maco *mc = calloc(1, sizeof *mc);
    if (!mc) return nfv_fail(NFV_ERR_NO_MEMORY, "maco: out of memory");
    mc->dims[0] = D, mc->dims[1] = H, mc->dims[2] = W;
    mc->mid = 0.5f * (lo + hi);
    mc->half = 0.5f * (hi - lo);
    int shape[3] = {D, H, W};
    nfv_status st = nfv_fourier_create(ctx, NFV_FOURIER_DFT, D, H, W, 0.0f, &mc->f);
    if (!st) st = nfv_tensor_create(ctx, &mc->amp, 3, shape);
    if (!st) st = nfv_tensor_upload(ctx, &mc->amp, amplitude);
    if (st) {
        nfv_maco_free(mc);
        return st;
    }
    *out = mc;
    return NFV_OK;
}

static nfv_status ensure_coeff(nfv_context *ctx, nfv_maco *mc, const nfv_tensor *like)
{
    if (mc->coeff.buf && mc->coeff.numel == like->numel) return NFV_OK;
    nfv_tensor_free(&mc->coeff);
    return nfv_tensor_create(ctx, &mc->coeff, like->ndim, like->shape);
}

static nfv_status check_param(const nfv_maco *mc, const nfv_tensor *t, const char *what)
{
    size_t vol = (size_t)mc->dims[0] * mc->dims[1] * mc->dims[2];
    if (!t || !t->buf || t->ndim != 5 || t->shape[1] != 1 || t->shape[2] != mc->dims[0] ||
        t->shape[3] != mc->dims[1] || t->shape[4] != mc->dims[2] || t->numel % vol)
        return nfv_fail(NFV_ERR_INVALID_ARG, "maco: %s must be (N, 1, %d, %d, %d)", what, mc->dims[0], mc->dims[1],
                        mc->dims[2]);
    return NFV_OK;
}

static nfv_status coeff_kernel(nfv_context *ctx, nfv_maco *mc, const char *name, const nfv_tensor *phi,
                               const nfv_tensor *dcoeff, nfv_tensor *out)
{
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "maco", "", name, &k));
    int a = 0;
    NFV_ARG(k, name, a++, phi->buf);
    NFV_ARG(k, name, a++, mc->amp.buf);
    if (dcoeff) NFV_ARG(k, name, a++, dcoeff->buf);
    NFV_ARG(k, name, a++, out->buf);
    for (int i = 0; i < 3; i++) NFV_ARG(k, name, a++, mc->dims[i]);
    size_t global = phi->numel;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_maco_decode(nfv_context *ctx, nfv_maco *mc, const nfv_tensor *phi, nfv_tensor *image)
{
    NFV_TRY(check_param(mc, phi, "phi"));
    NFV_TRY(check_param(mc, image, "image"));
    NFV_TRY(ensure_coeff(ctx, mc, phi));
    NFV_TRY(coeff_kernel(ctx, mc, "maco_coeff", phi, NULL, &mc->coeff));
    NFV_TRY(nfv_fourier_decode(ctx, mc->f, &mc->coeff, image));
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "maco", "", "maco_range", &k));
    NFV_ARG(k, "maco_range", 0, image->buf);
    NFV_ARG(k, "maco_range", 1, mc->mid);
    NFV_ARG(k, "maco_range", 2, mc->half);
    size_t global = image->numel;
    return nfv_kernel_launch(ctx, k, 1, &global, NULL);
}

nfv_status nfv_maco_adjoint(nfv_context *ctx, nfv_maco *mc, const nfv_tensor *phi, const nfv_tensor *image,
                            nfv_tensor *dimage, nfv_tensor *dphi)
{
    NFV_TRY(check_param(mc, phi, "phi"));
    NFV_TRY(check_param(mc, dimage, "dimage"));
    NFV_TRY(check_param(mc, dphi, "dphi"));
    NFV_TRY(ensure_coeff(ctx, mc, phi));
    cl_kernel k;
    NFV_TRY(nfv_kernel_get(ctx, "maco", "", "maco_range_adjoint", &k));
    NFV_ARG(k, "maco_range_adjoint", 0, image->buf);
    NFV_ARG(k, "maco_range_adjoint", 1, dimage->buf);
    NFV_ARG(k, "maco_range_adjoint", 2, mc->mid);
    NFV_ARG(k, "maco_range_adjoint", 3, mc->half);
    size_t global = dimage->numel;
    NFV_TRY(nfv_kernel_launch(ctx, k, 1, &global, NULL));
    NFV_TRY(nfv_fourier_adjoint(ctx, mc->f, dimage, &mc->coeff)); /* decay 0: plain B */
    return coeff_kernel(ctx, mc, "maco_coeff_adjoint", phi, &mc->coeff, dphi);
}

/* ---- The cohort spectrum ------------------------------------------------ */

struct nfv_spectrum_acc {
    nfv_context *ctx;
    int dims[3];
    nfv_fourier *f;
    nfv_tensor x, c;     /* (1, 1, D, H, W) */
    float *host;         /* D*H*W */
    double *sum;         /* D*H*W: sum of |F(k)| */
    double lo, hi;       /* sums of the volumes' minima and maxima */
    int count;
};

void nfv_spectrum_free(nfv_spectrum_acc *a)
{
    if (!a) return;
    if (a->f) nfv_fourier_free(a->f);
    nfv_tensor_free(&a->x);
    nfv_tensor_free(&a->c);
    free(a->host);
    free(a->sum);
    free(a);
}

nfv_status nfv_spectrum_begin(nfv_context *ctx, int D, int H, int W, nfv_spectrum_acc **out)
{
    *out = NULL;
    nfv_spectrum_acc *a = calloc(1, sizeof *a);
    size_t vol = (size_t)D * H * W;
    if (a) {
        a->host = malloc(vol * sizeof *a->host);
        a->sum = calloc(vol, sizeof *a->sum);
    }
    if (!a || !a->host || !a->sum) {
        nfv_spectrum_free(a);
        return nfv_fail(NFV_ERR_NO_MEMORY, "spectrum: out of memory");
    }
    a->ctx = ctx;
    a->dims[0] = D, a->dims[1] = H, a->dims[2] = W;
    int shape[5] = {1, 1, D, H, W};
    nfv_status st = nfv_fourier_create(ctx, NFV_FOURIER_DFT, D, H, W, 0.0f, &a->f);
    if (!st) st = nfv_tensor_create(ctx, &a->x, 5, shape);
    if (!st) st = nfv_tensor_create(ctx, &a->c, 5, shape);
    if (st) {
        nfv_spectrum_free(a);
        return st;
    }
    *out = a;
    return NFV_OK;
}

nfv_status nfv_spectrum_add(nfv_spectrum_acc *a, const float *volume)
{
    int D = a->dims[0], H = a->dims[1], W = a->dims[2];
    size_t vol = (size_t)D * H * W;
    float mn = volume[0], mx = volume[0];
    for (size_t i = 1; i < vol; i++) {
        if (volume[i] < mn) mn = volume[i];
        if (volume[i] > mx) mx = volume[i];
    }
    NFV_TRY(nfv_tensor_upload(a->ctx, &a->x, volume));
    NFV_TRY(nfv_fourier_adjoint(a->ctx, a->f, &a->x, &a->c)); /* Hartley coefficients H = B x */
    NFV_TRY(nfv_tensor_download(a->ctx, &a->c, a->host));
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                size_t k = ((size_t)z * H + y) * W + x;
                size_t m = ((size_t)((D - z) % D) * H + (H - y) % H) * W + (W - x) % W;
                double hk = a->host[k], hm = a->host[m];
                a->sum[k] += sqrt(0.5 * (hk * hk + hm * hm));
            }
    a->lo += mn;
    a->hi += mx;
    a->count++;
    return NFV_OK;
}

nfv_status nfv_spectrum_end(nfv_spectrum_acc *a, float *amplitude, float *lo, float *hi, int *count)
{
    if (a->count < 1) return nfv_fail(NFV_ERR_INVALID_ARG, "spectrum: no volumes");
    size_t vol = (size_t)a->dims[0] * a->dims[1] * a->dims[2];
    for (size_t i = 0; i < vol; i++) amplitude[i] = (float)(a->sum[i] / a->count);
    *lo = (float)(a->lo / a->count);
    *hi = (float)(a->hi / a->count);
    if (!(*lo < *hi)) return nfv_fail(NFV_ERR_INVALID_ARG, "spectrum: the volumes are constant (min = max = %g)", *lo);
    *count = a->count;
    return NFV_OK;
}

/* ---- MACO's transforms -------------------------------------------------- */

float nfv_maco_crop_at(float crop_max, float crop_min, int step, int steps)
{
    if (steps <= 1) return crop_max;
    double t = (double)(step - 1) / (double)(steps - 1);
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    return (float)(crop_max + (crop_min - crop_max) * t);
}

void nfv_maco_crops(uint64_t *streams, int n, const int dims[3], float crop, float *matrix)
{
    for (int i = 0; i < n; i++) {
        float *a = matrix + 12 * i;
        memset(a, 0, 12 * sizeof *a);
        for (int ax = 0; ax < 3; ax++) {
            /* Output voxel p samples q = s + crop p: a box of edge crop (D - 1)
             * voxels starting at s, kept inside the volume. */
            double room = (1.0 - crop) * (dims[ax] - 1);
            double s = nfv_uniform01(&streams[i]) * (room > 0 ? room : 0);
            a[4 * ax + ax] = crop;
            a[4 * ax + 3] = (float)s;
        }
    }
}

nfv_status nfv_add_noise(nfv_context *ctx, uint64_t *streams, int n, float sigma, nfv_tensor *x)
{
    if (sigma <= 0) return NFV_OK;
    float *h = malloc(x->numel * sizeof *h);
    if (!h) return nfv_fail(NFV_ERR_NO_MEMORY, "noise: out of memory");
    size_t per = x->numel / (size_t)n;
    nfv_status st = nfv_tensor_download(ctx, x, h);
    for (int i = 0; !st && i < n; i++)
        for (size_t j = 0; j < per; j += 2) {
            /* Box-Muller: two normals per pair of uniforms (u1 in (0, 1]). */
            double u1 = 1.0 - nfv_uniform01(&streams[i]), u2 = nfv_uniform01(&streams[i]);
            double r = sqrt(-2.0 * log(u1)) * sigma;
            h[i * per + j] += (float)(r * cos(2 * M_PI * u2));
            if (j + 1 < per) h[i * per + j + 1] += (float)(r * sin(2 * M_PI * u2));
        }
    if (!st) st = nfv_tensor_upload(ctx, x, h);
    free(h);
    return st;
}
